//! What doctor found on the host, as plain data: [`gather`](super::gather()) fills it in,
//! [`evaluate`](super::evaluate) judges it.

use std::path::PathBuf;
use std::time::Duration;

use crate::config::Config;
use crate::host::cgroup::DeviceCgroup;
use crate::host::inventory::{self, ProcfsInfo};

/// The configuration file as loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigFact {
    /// Loaded from this file; `None`: no file, built-in defaults.
    Loaded(Option<PathBuf>),
    /// The file could not be read or parsed (doctor goes on with the defaults).
    Broken(String),
}

/// The driver's procfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DriverFact {
    Loaded(ProcfsInfo),
    /// `<proc_root>/driver/nvidia` does not exist.
    NotLoaded {
        path: PathBuf,
    },
    /// It exists but something in it could not be read or parsed.
    Unreadable(String),
}

/// NVML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NvmlFact {
    Loaded {
        library: PathBuf,
        driver_version: String,
        /// NVML's raw answer (before the cross-check with procfs): what doctor reports even
        /// when that check fails.
        gpus: Vec<crate::host::inventory::nvml::NvmlGpu>,
        elapsed: Duration,
    },
    /// It did not answer within `nvml_timeout_ms`.
    TimedOut {
        library: PathBuf,
        timeout_ms: u64,
    },
    Failed(String),
}

/// What was found at a device node's path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeState {
    Missing,
    /// Something other than a character device (`regular file`, `symlink`, ...).
    NotCharDevice(String),
    CharDevice {
        major: u32,
        minor: u32,
    },
    Unreadable(String),
}

/// A device node the driver says should exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeFact {
    pub path: PathBuf,
    /// What it is: `nvidiactl`, `GPU minor 0`, `gpu0/gi1/ci0/access`.
    pub what: String,
    /// A caps node (`/dev/nvidia-caps/...`) rather than a GPU/control node.
    pub caps: bool,
    pub major: u32,
    pub minor: u32,
    pub found: NodeState,
    /// `<host_root>/dev/char/<major>:<minor>`: the link runc and systemd look for.
    pub char_link: PathBuf,
    /// Whether that link exists and leads to a char device with this number.
    pub char_link_ok: bool,
}

/// A capability file whose minor disagrees with mig-minors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapMismatch {
    pub file: PathBuf,
    pub entry: String,
    pub file_minor: u32,
    /// What mig-minors says; `None` when it lacks the entry.
    pub table_minor: Option<u32>,
}

/// The cgroup side of the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupFact {
    /// The cgroup that governs device access for a process started here (this one).
    pub devices: Result<DeviceCgroup, String>,
    /// Every visible cgroup2 mount point (a v1 host with one is hybrid).
    pub cgroup2_mounts: Vec<PathBuf>,
    /// systemd is the init system (`/run/systemd/system` exists, as `sd_booted()` checks).
    pub systemd_init: bool,
}

/// A container runtime or engine migcage works with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeFact {
    /// `runc`, `crun`, `docker`, `podman`, `containerd`, `cri-o`.
    pub name: &'static str,
    /// Where its binary is; `None`: not installed.
    pub binary: Option<PathBuf>,
    /// Its configuration files that exist, and what migcage found in each.
    pub configs: Vec<(PathBuf, Result<RuntimeConfig, String>)>,
}

/// What a runtime's configuration file says about migcage.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeConfig {
    /// Runtimes registered under a name that run migcage: `migcage -> /usr/bin/migcage-runtime`.
    pub migcage_runtimes: Vec<String>,
    /// The default runtime, when the file sets one.
    pub default_runtime: Option<String>,
    /// `systemd` or `cgroupfs`, when the file sets it.
    pub cgroup_driver: Option<String>,
    /// CDI enabled (containerd's `enable_cdi`), when the file sets it.
    pub cdi: Option<bool>,
    /// What in the file breaks migcage's path (containerd: a default runtime it does not
    /// define, a migcage entry that drops the annotations migcage reads).
    pub problems: Vec<String>,
}

/// An OCI hooks.d file (podman, cri-o) that runs migcage or NVIDIA's hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookFileFact {
    pub path: PathBuf,
    /// The parsed hook, or why it is unusable.
    pub hook: Result<HookFile, String>,
}

/// What a hooks.d file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookFile {
    pub hook_path: PathBuf,
    pub stages: Vec<String>,
    /// The hook path leads to migcage (itself or a link to it).
    pub is_migcage: bool,
    /// The hook path exists and is executable.
    pub executable: bool,
}

/// A CDI spec file of the CDI spec directories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CdiFact {
    pub path: PathBuf,
    /// What it is, or why it could not be read.
    pub spec: Result<CdiSpecFact, String>,
}

/// What a CDI spec file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CdiSpecFact {
    /// Made by `migcage cdi generate`.
    Migcage {
        kind: String,
        devices: usize,
        /// Where it no longer matches the host ([`crate::backend::cdi::staleness`]); `None`: not checked (no
        /// inventory, or a kind migcage does not generate).
        stale: Option<Vec<String>>,
    },
    /// Another vendor's or NVIDIA's own spec.
    Other { kind: String },
}

/// `nvidia-container-runtime-hook` as `docker run --gpus` would find it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerHookFact {
    /// Where the PATH searched came from: a running dockerd's environment, or the default.
    pub path_from: String,
    /// The hook found on that PATH, and whether it is migcage.
    pub found: Option<(PathBuf, bool)>,
    /// Why the dockerd's PATH could not be read (its environment is root's alone): doctor then
    /// cannot tell which hook `docker run --gpus` runs, and says so.
    pub unreadable: Option<String>,
}

/// Whether a directory (or a file's directory) can be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WritableFact {
    Writable,
    /// Absent; `creatable` when its nearest existing ancestor is a writable directory.
    Missing {
        creatable: bool,
        ancestor: PathBuf,
    },
    NotADirectory,
    NotWritable(String),
}

/// Everything [`gather`](super::gather()) read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    pub config: ConfigFact,
    /// The configuration in effect (the defaults when the file is broken).
    pub roots: Config,
    pub driver: DriverFact,
    pub nvml: NvmlFact,
    /// NVML and procfs agree (what `discover` checks); `None` when either could not be read.
    pub inventory: Option<Result<inventory::Inventory, String>>,
    pub nodes: Vec<NodeFact>,
    pub cap_mismatches: Vec<CapMismatch>,
    pub cgroup: CgroupFact,
    pub runtimes: Vec<RuntimeFact>,
    /// One per running dockerd (or one for the PATH a started one would get); empty when docker
    /// is not installed.
    pub docker_hooks: Vec<DockerHookFact>,
    pub hook_files: Vec<HookFileFact>,
    pub hook_dirs: Vec<PathBuf>,
    pub cdi_specs: Vec<CdiFact>,
    pub cdi_dirs: Vec<PathBuf>,
    pub state_dir: WritableFact,
    /// `None` when logging is off.
    pub log_dir: Option<(PathBuf, WritableFact)>,
}
