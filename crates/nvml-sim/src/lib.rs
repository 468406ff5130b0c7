//! A simulated `libnvidia-ml.so.1`: a C-ABI drop-in for NVML that answers from a migcage
//! topology file, so unmodified NVML clients (nvml-wrapper, C programs, the `nvidia-smi`
//! stand-in of this crate) enumerate the GPUs, MIG devices, GPU instances and compute instances
//! the topology describes.
//!
//! - Topology: `$MIGCAGE_SIM_TOPOLOGY`, else `nvidia-sim-topology.toml` beside the library file.
//!   Neither, or a bad file: `nvmlInit` answers `NVML_ERROR_DRIVER_NOT_LOADED` and says why in
//!   one line on stderr.
//! - Faults (`[faults]` of the topology): `init_error`, `init_delay_ms`, `calls` (function name
//!   -> error name) and `lost_gpus` (every call on those GPUs is `NVML_ERROR_GPU_IS_LOST`).
//! - Visibility `device-nodes`: only GPUs whose `/dev/nvidia<minor>` (under `dev_root`) can be
//!   opened, and MIG devices whose GI and CI caps nodes can, are shown; indexes are renumbered.
//!
//! Modules: [`ffi`] (the exports), [`global`] (init refcount, topology lookup), [`state`]
//! (handles and visibility), [`visibility`] (node probing), [`describe`] (numbers), [`errors`].

pub mod describe;
pub mod errors;
pub mod ffi;
pub mod global;
pub mod handles;
pub mod persist;
pub mod state;
pub mod visibility;
