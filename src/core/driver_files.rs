//! The NVIDIA driver's user-space files, as data: the table lives in the `migcage-driver-files`
//! crate, which the simulator shares; this path is the one migcage code uses.

pub use migcage_driver_files::*;
