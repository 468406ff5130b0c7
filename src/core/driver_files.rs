//! The NVIDIA driver's user-space files, as data: the table (in the `migcage-driver-files`
//! crate, which the simulator shares; this path is the one migcage code uses) and what
//! [`crate::host::driver_discovery`] found of it on this host ([`DriverFiles`]), which the plan
//! maps onto a container.

pub use migcage_driver_files::*;

use std::path::PathBuf;

use serde::Serialize;

use crate::core::edits::LibArch;

/// What a discovered library is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Library {
    /// DT_SONAME, the name programs ask for (`libcuda.so.1`).
    pub soname: String,
    pub arch: LibArch,
    /// The development symlink's name (`libcuda.so`), for the libraries that get one.
    pub dev_link: Option<String>,
    /// Whether the ld cache lists it (libraries in subdirectories such as `vdpau/` are loaded by
    /// path, and ldconfig does not list them on a host either).
    pub in_ld_cache: bool,
}

/// One of the driver's files, found on this host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostFile {
    pub kind: FileKind,
    /// The capabilities it belongs to.
    pub caps: Caps,
    /// Where it is on this machine (under the driver root, symlinks resolved): the mount source.
    pub host_path: PathBuf,
    /// Where it goes in the container: its path on a real host (`/usr/bin/nvidia-smi`).
    pub path: String,
    pub library: Option<Library>,
    /// A file of the simulated tree only (`SIM_ONLY_FILES`, with `simulated_driver = true`).
    pub sim_only: bool,
}

/// The driver's files on this host, for one driver version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct DriverFiles {
    pub driver_version: String,
    pub files: Vec<HostFile>,
    /// Table entries that were not found, or were found at another version, and why.
    pub missing: Vec<String>,
}
