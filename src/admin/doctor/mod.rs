//! `migcage doctor`: check a host the way an admin would, one line per finding.
//!
//! Two halves kept apart: [`gather`] reads the host (procfs, NVML with a bounded wait, device
//! nodes, cgroup mounts, the runtimes' configuration files, hooks.d, the state directory) into
//! plain [`Facts`], and [`evaluate`] turns facts into [`Check`]s without any I/O. Tests build
//! broken hosts by editing a `migcage simulate` tree, or build facts by hand.
//!
//! Every line reads `OK|WARN|FAIL <check>: <what was found>; <fix>`. A FAIL is something that
//! stops containers from getting their devices (or gives them the wrong ones); a WARN is
//! something that works today but breaks a documented use (user namespaces, podman, a systemd
//! daemon-reload). Doctor only reads: it never creates, edits or loads anything but NVML.

use std::fmt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::backend::cdi;
use crate::config::{Config, ConfigError};
use crate::core::plan::nodes::NVIDIACTL_MINOR;
use crate::host::cgroup::DeviceCgroup;
use crate::host::inventory::procfs::{self, MigMinors};
use crate::host::inventory::{self, InventoryError, ProcfsInfo};

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Ok => "OK",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        })
    }
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub status: Status,
    /// What was checked: `driver`, `NVML`, `MIG mode (GPU 0)`, `caps node`, ...
    pub check: String,
    /// What was found.
    pub found: String,
    /// What to do about it; empty when nothing needs doing.
    pub fix: String,
}

impl Check {
    fn new(status: Status, check: impl Into<String>, found: impl Into<String>) -> Check {
        Check {
            status,
            check: check.into(),
            found: found.into(),
            fix: String::new(),
        }
    }

    fn ok(check: impl Into<String>, found: impl Into<String>) -> Check {
        Check::new(Status::Ok, check, found)
    }

    fn warn(check: impl Into<String>, found: impl Into<String>, fix: impl Into<String>) -> Check {
        Check::new(Status::Warn, check, found).fix(fix)
    }

    fn fail(check: impl Into<String>, found: impl Into<String>, fix: impl Into<String>) -> Check {
        Check::new(Status::Fail, check, found).fix(fix)
    }

    fn fix(mut self, fix: impl Into<String>) -> Check {
        self.fix = fix.into();
        self
    }
}

impl fmt::Display for Check {
    /// `OK driver: loaded, version 550.54.15; fix` (no `; ` part when there is no fix).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status, self.check, self.found)?;
        if !self.fix.is_empty() {
            write!(f, "; {}", self.fix)?;
        }
        Ok(())
    }
}

/// Everything doctor found, in the order it checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// True when no check failed.
    pub ok: bool,
    pub checks: Vec<Check>,
}

impl Report {
    pub fn new(checks: Vec<Check>) -> Report {
        Report {
            ok: !checks.iter().any(|c| c.status == Status::Fail),
            checks,
        }
    }

    pub fn count(&self, status: Status) -> usize {
        self.checks.iter().filter(|c| c.status == status).count()
    }

    /// One line per check.
    pub fn render(&self) -> String {
        self.checks.iter().map(|c| format!("{c}\n")).collect()
    }
}

// ------------------------------------------------------------------------------------------------
// Facts

/// Where doctor looks, besides the configuration's roots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatherOptions {
    /// Root of the host's own files: `/etc` (runtime configuration), hooks.d, CDI spec
    /// directories, `/run/systemd/system`, the standard binary directories. `/` on a host.
    pub host_root: PathBuf,
    /// Directories searched for runtime binaries besides `host_root`'s standard ones (`$PATH`).
    pub path: Vec<PathBuf>,
}

impl Default for GatherOptions {
    fn default() -> Self {
        GatherOptions {
            host_root: PathBuf::from("/"),
            path: std::env::var_os("PATH")
                .map(|p| std::env::split_paths(&p).collect())
                .unwrap_or_default(),
        }
    }
}

impl GatherOptions {
    fn host(&self, abs: &str) -> PathBuf {
        self.host_root.join(abs.trim_start_matches('/'))
    }
}

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

/// A GPU as NVML reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NvmlGpuFact {
    pub index: u32,
    pub minor: u32,
    pub name: String,
    pub uuid: String,
    pub mig_enabled: bool,
    /// `index (profile)` of each MIG device.
    pub mig_devices: Vec<String>,
}

/// NVML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NvmlFact {
    Loaded {
        library: PathBuf,
        driver_version: String,
        gpus: Vec<NvmlGpuFact>,
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
    /// `<dev_root>/char/<major>:<minor>`.
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
        /// Where it no longer matches the host ([`cdi::staleness`]); `None`: not checked (no
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

/// Everything [`gather`] read.
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

/// The OCI hooks directories podman and cri-o read by default.
pub const HOOK_DIRS: &[&str] = &[
    "/usr/share/containers/oci/hooks.d",
    "/etc/containers/oci/hooks.d",
];
/// The CDI spec directories (static and dynamic), as the CDI specification names them.
pub const CDI_DIRS: &[&str] = &["/etc/cdi", "/var/run/cdi"];
/// The directory whose `nvidia-container-runtime-hook` link `docker run --gpus` finds when it is
/// on dockerd's PATH.
pub const DOCKER_HOOK_DIR: &str = "/usr/lib/migcage/bin";

/// Read the host. `loaded` is the result of loading the configuration file; a broken file is a
/// finding, and doctor goes on with the defaults.
pub fn gather(
    loaded: Result<(Config, Option<PathBuf>), ConfigError>,
    opts: &GatherOptions,
) -> Facts {
    let (config, config_fact) = match loaded {
        Ok((c, path)) => (c, ConfigFact::Loaded(path)),
        Err(e) => (Config::default(), ConfigFact::Broken(e.to_string())),
    };
    let driver = match inventory::read_procfs(&config) {
        Ok(p) => DriverFact::Loaded(p),
        Err(InventoryError::NoDriver { path, .. }) => DriverFact::NotLoaded { path },
        Err(e) => DriverFact::Unreadable(e.to_string()),
    };
    let (nvml, inventory) = gather_nvml(&config, &driver);
    let (nodes, cap_mismatches) = match &driver {
        DriverFact::Loaded(p) => gather_nodes(&config, p),
        _ => (Vec::new(), Vec::new()),
    };
    let hook_dirs: Vec<PathBuf> = HOOK_DIRS.iter().map(|d| opts.host(d)).collect();
    let cdi_dirs: Vec<PathBuf> = CDI_DIRS.iter().map(|d| opts.host(d)).collect();
    let log_dir = (!config.log.file.is_empty()).then(|| {
        let file = PathBuf::from(&config.log.file);
        let dir = file
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        let w = writable(&dir);
        (file, w)
    });
    let runtimes = gather_runtimes(opts);
    let docker_hooks = if runtimes
        .iter()
        .any(|r| r.name == "docker" && r.binary.is_some())
    {
        gather_docker_hooks(opts)
    } else {
        Vec::new()
    };
    let inv = inventory.as_ref().and_then(|r| r.as_ref().ok());
    Facts {
        cdi_specs: gather_cdi(&cdi_dirs, inv, &config.dev_root),
        config: config_fact,
        driver,
        nvml,
        inventory,
        nodes,
        cap_mismatches,
        cgroup: gather_cgroup(opts),
        runtimes,
        docker_hooks,
        hook_files: gather_hook_files(&hook_dirs),
        hook_dirs,
        cdi_dirs,
        state_dir: writable(&config.state_dir),
        log_dir,
        roots: config,
    }
}

type InventoryFact = Option<Result<inventory::Inventory, String>>;

fn gather_nvml(config: &Config, driver: &DriverFact) -> (NvmlFact, InventoryFact) {
    let library = config.nvml_library.clone();
    let timeout = Duration::from_millis(config.nvml_timeout_ms);
    let start = Instant::now();
    let info = match inventory::read_nvml_bounded(&library, timeout) {
        Ok(info) => info,
        Err(InventoryError::NvmlTimeout {
            library,
            timeout_ms,
        }) => {
            return (
                NvmlFact::TimedOut {
                    library,
                    timeout_ms,
                },
                None,
            )
        }
        Err(e) => return (NvmlFact::Failed(e.to_string()), None),
    };
    let elapsed = start.elapsed();
    let gpus = info
        .gpus
        .iter()
        .map(|g| NvmlGpuFact {
            index: g.index,
            minor: g.minor,
            name: g.name.clone(),
            uuid: g.uuid.clone(),
            mig_enabled: g.mig_enabled,
            mig_devices: g
                .mig_devices
                .iter()
                .map(|m| format!("{}:{} ({})", g.index, m.index, m.profile))
                .collect(),
        })
        .collect();
    // The cross-check discovery makes: NVML answered quickly once, so a second read is cheap
    // (and it is the code path a container start takes).
    let cross = match driver {
        DriverFact::Loaded(proc) => {
            Some(inventory::discover_with(config, proc).map_err(|e| e.to_string()))
        }
        _ => None,
    };
    (
        NvmlFact::Loaded {
            library,
            driver_version: info.driver_version,
            gpus,
            elapsed,
        },
        cross,
    )
}

fn node_state(path: &Path) -> NodeState {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => NodeState::Missing,
        Err(e) => NodeState::Unreadable(e.to_string()),
        Ok(m) => {
            let ft = m.file_type();
            if ft.is_char_device() {
                NodeState::CharDevice {
                    major: nix::sys::stat::major(m.rdev()) as u32,
                    minor: nix::sys::stat::minor(m.rdev()) as u32,
                }
            } else {
                let kind = if ft.is_dir() {
                    "a directory"
                } else if ft.is_symlink() {
                    "a symlink"
                } else if ft.is_block_device() {
                    "a block device"
                } else if ft.is_file() {
                    "a regular file"
                } else {
                    "not a device"
                };
                NodeState::NotCharDevice(kind.to_string())
            }
        }
    }
}

/// Whether `<dev_root>/char/<major>:<minor>` leads to a char device with that number.
fn char_link_ok(link: &Path, major: u32, minor: u32) -> bool {
    std::fs::symlink_metadata(link).is_ok_and(|m| m.file_type().is_symlink())
        && std::fs::metadata(link).is_ok_and(|m| {
            m.file_type().is_char_device()
                && nix::sys::stat::major(m.rdev()) as u32 == major
                && nix::sys::stat::minor(m.rdev()) as u32 == minor
        })
}

fn node_fact(
    config: &Config,
    rel: &str,
    what: String,
    caps: bool,
    major: u32,
    minor: u32,
) -> NodeFact {
    let path = config.dev_path(rel);
    let char_link = config.dev_path(&format!("char/{major}:{minor}"));
    NodeFact {
        found: node_state(&path),
        char_link_ok: char_link_ok(&char_link, major, minor),
        path,
        what,
        caps,
        major,
        minor,
        char_link,
    }
}

/// The capability files of the driver's procfs: (file, mig-minors entry name, minor in it).
fn capability_files(config: &Config) -> Vec<(PathBuf, String, Result<u32, String>)> {
    let base = config.proc_path("driver/nvidia/capabilities");
    let mut out = Vec::new();
    let read = |path: &Path| -> Result<u32, String> {
        inventory::read_cap_access(path)
            .map_err(|e| e.to_string())
            .and_then(|a| a.map(|a| a.minor).ok_or_else(|| "vanished".to_string()))
    };
    for name in ["config", "monitor"] {
        let p = base.join("mig").join(name);
        if p.is_file() {
            out.push((p.clone(), name.to_string(), read(&p)));
        }
    }
    let sorted_dirs = |dir: &Path, prefix: &str| -> Vec<(u32, PathBuf)> {
        let mut v: Vec<(u32, PathBuf)> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_str()?.to_string();
                let n = name.strip_prefix(prefix)?.parse::<u32>().ok()?;
                e.path().is_dir().then_some((n, e.path()))
            })
            .collect();
        v.sort();
        v
    };
    for (gpu, gdir) in sorted_dirs(&base, "gpu") {
        for (gi, gidir) in sorted_dirs(&gdir.join("mig"), "gi") {
            let p = gidir.join("access");
            if p.is_file() {
                out.push((p.clone(), procfs::gi_access_name(gpu, gi), read(&p)));
            }
            for (ci, cidir) in sorted_dirs(&gidir, "ci") {
                let p = cidir.join("access");
                if p.is_file() {
                    out.push((p.clone(), procfs::ci_access_name(gpu, gi, ci), read(&p)));
                }
            }
        }
    }
    out
}

fn table_minor(table: &MigMinors, entry: &str) -> Option<u32> {
    match entry {
        "config" => table.config,
        "monitor" => table.monitor,
        _ => {
            let parts: Vec<&str> = entry.split('/').collect();
            let num = |s: &str, p: &str| s.strip_prefix(p)?.parse::<u32>().ok();
            match parts.as_slice() {
                [g, gi, "access"] => table.gi(num(g, "gpu")?, num(gi, "gi")?),
                [g, gi, ci, "access"] => table.ci(num(g, "gpu")?, num(gi, "gi")?, num(ci, "ci")?),
                _ => table.other.get(entry).copied(),
            }
        }
    }
}

fn gather_nodes(config: &Config, proc: &ProcfsInfo) -> (Vec<NodeFact>, Vec<CapMismatch>) {
    let m = proc.majors;
    let mut nodes = vec![node_fact(
        config,
        "nvidiactl",
        "nvidiactl".into(),
        false,
        m.frontend,
        NVIDIACTL_MINOR,
    )];
    for info in proc.gpus.values() {
        nodes.push(node_fact(
            config,
            &format!("nvidia{}", info.minor),
            format!("GPU {} (minor {})", info.bus_location, info.minor),
            false,
            m.frontend,
            info.minor,
        ));
    }
    if let Some(uvm) = m.uvm {
        nodes.push(node_fact(
            config,
            "nvidia-uvm",
            "nvidia-uvm".into(),
            false,
            uvm,
            0,
        ));
        nodes.push(node_fact(
            config,
            "nvidia-uvm-tools",
            "nvidia-uvm-tools".into(),
            false,
            uvm,
            1,
        ));
    }
    let mut mismatches = Vec::new();
    for (file, entry, minor) in capability_files(config) {
        let Ok(minor) = minor else { continue };
        let in_table = proc
            .mig_minors
            .as_ref()
            .and_then(|t| table_minor(t, &entry));
        if in_table != Some(minor) {
            mismatches.push(CapMismatch {
                file: file.clone(),
                entry: entry.clone(),
                file_minor: minor,
                table_minor: in_table,
            });
        }
        if let Some(caps) = m.caps {
            nodes.push(node_fact(
                config,
                &format!("nvidia-caps/nvidia-cap{minor}"),
                entry,
                true,
                caps,
                minor,
            ));
        }
    }
    (nodes, mismatches)
}

fn gather_cgroup(opts: &GatherOptions) -> CgroupFact {
    let proc = Path::new(crate::backend::hook::PROCESS_PROC);
    let devices = crate::host::cgroup::find_device_cgroup(proc, std::process::id())
        .map_err(|e| e.to_string());
    let mountinfo = proc.join("self/mountinfo");
    let cgroup2_mounts = std::fs::read_to_string(&mountinfo)
        .ok()
        .and_then(|t| crate::host::cgroup::parse_mountinfo(&t, &mountinfo).ok())
        .map(|mounts| {
            crate::host::cgroup::visible_mounts(&mounts)
                .into_iter()
                .filter(|m| m.fs_type == "cgroup2")
                .map(|m| m.mount_point.clone())
                .collect()
        })
        .unwrap_or_default();
    CgroupFact {
        devices,
        cgroup2_mounts,
        systemd_init: opts.host("/run/systemd/system").is_dir(),
    }
}

/// Where each runtime's binary and configuration files are.
const RUNTIMES: &[(&str, &[&str], &[&str])] = &[
    ("runc", &["runc"], &[]),
    ("crun", &["crun"], &[]),
    ("docker", &["dockerd"], &["/etc/docker/daemon.json"]),
    (
        "podman",
        &["podman"],
        &[
            "/usr/share/containers/containers.conf",
            "/etc/containers/containers.conf",
        ],
    ),
    (
        "containerd",
        &["containerd"],
        &["/etc/containerd/config.toml"],
    ),
    ("cri-o", &["crio"], &["/etc/crio/crio.conf"]),
];

fn find_binary(opts: &GatherOptions, names: &[&str]) -> Option<PathBuf> {
    let standard = [
        "/usr/local/sbin",
        "/usr/local/bin",
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
    ]
    .map(|d| opts.host(d));
    let dirs: Vec<PathBuf> = if opts.host_root == Path::new("/") {
        opts.path.iter().cloned().chain(standard).collect()
    } else {
        standard
            .into_iter()
            .chain(opts.path.iter().cloned())
            .collect()
    };
    names.iter().find_map(|n| {
        dirs.iter()
            .map(|d| d.join(n))
            .find(|p| p.is_file() && is_executable(p))
    })
}

fn is_executable(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.mode() & 0o111 != 0)
}

/// Whether a configured path names migcage: its file name starts with `migcage`
/// (`migcage`, `migcage-runtime`), or it resolves to such a file.
pub fn names_migcage(path: &str) -> bool {
    let named = |p: &Path| {
        p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("migcage"))
    };
    let p = Path::new(path);
    named(p) || std::fs::canonicalize(p).is_ok_and(|c| named(&c))
}

fn gather_runtimes(opts: &GatherOptions) -> Vec<RuntimeFact> {
    RUNTIMES
        .iter()
        .map(|(name, bins, configs)| {
            let mut files: Vec<PathBuf> = configs.iter().map(|c| opts.host(c)).collect();
            if *name == "cri-o" {
                files.extend(sorted_entries(&opts.host("/etc/crio/crio.conf.d"), ".conf"));
            }
            let configs = files
                .into_iter()
                .filter(|p| p.exists())
                .map(|p| {
                    let parsed = std::fs::read_to_string(&p)
                        .map_err(|e| format!("cannot read it: {e}"))
                        .and_then(|text| parse_runtime_config(name, &text));
                    (p, parsed)
                })
                .collect();
            RuntimeFact {
                name,
                binary: find_binary(opts, bins),
                configs,
            }
        })
        .collect()
}

fn sorted_entries(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_str().is_some_and(|s| s.ends_with(suffix)))
        .collect();
    v.sort();
    v
}

/// Every table (at any depth) of a TOML document, with its dotted path.
fn toml_tables<'a>(prefix: String, t: &'a toml::Table, out: &mut Vec<(String, &'a toml::Table)>) {
    out.push((prefix.clone(), t));
    for (k, v) in t {
        if let toml::Value::Table(sub) = v {
            let p = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            toml_tables(p, sub, out);
        }
    }
}

/// What a runtime's configuration file says about migcage. Pure: the file's text in, findings
/// out; an unparsable file is an error naming the problem.
pub fn parse_runtime_config(runtime: &str, text: &str) -> Result<RuntimeConfig, String> {
    let mut rc = RuntimeConfig::default();
    match runtime {
        "docker" => {
            if text.trim().is_empty() {
                return Ok(rc);
            }
            let v: serde_json::Value =
                serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
            if let Some(rts) = v.get("runtimes").and_then(|r| r.as_object()) {
                for (name, r) in rts {
                    let path = r.get("path").and_then(|p| p.as_str()).unwrap_or_default();
                    if names_migcage(path) {
                        rc.migcage_runtimes
                            .push(format!("runtimes.{name} = {path}"));
                    }
                }
            }
            rc.default_runtime = v
                .get("default-runtime")
                .and_then(|d| d.as_str())
                .map(str::to_string);
            rc.cgroup_driver = v
                .get("exec-opts")
                .and_then(|o| o.as_array())
                .into_iter()
                .flatten()
                .filter_map(|o| o.as_str()?.strip_prefix("native.cgroupdriver="))
                .next_back()
                .map(str::to_string);
        }
        "podman" | "containerd" | "cri-o" => {
            let doc: toml::Table = text
                .parse()
                .map_err(|e: toml::de::Error| format!("not valid TOML: {}", e.message()))?;
            let mut tables = Vec::new();
            toml_tables(String::new(), &doc, &mut tables);
            for (path, t) in tables {
                let s = |k: &str| t.get(k).and_then(|v| v.as_str());
                match runtime {
                    "podman" => {
                        if path == "engine.runtimes" {
                            for (name, v) in t {
                                let paths: Vec<&str> = v
                                    .as_array()
                                    .into_iter()
                                    .flatten()
                                    .filter_map(|p| p.as_str())
                                    .collect();
                                if let Some(p) = paths.iter().find(|p| names_migcage(p)) {
                                    rc.migcage_runtimes
                                        .push(format!("engine.runtimes.{name} = {p}"));
                                }
                            }
                        }
                        if path == "engine" {
                            rc.default_runtime = s("runtime").map(str::to_string);
                            rc.cgroup_driver = s("cgroup_manager").map(str::to_string);
                        }
                    }
                    "containerd" => {
                        if let Some(bin) = s("BinaryName").filter(|b| names_migcage(b)) {
                            rc.migcage_runtimes
                                .push(format!("{path}.BinaryName = {bin}"));
                        }
                        if let Some(b) = t.get("SystemdCgroup").and_then(|v| v.as_bool()) {
                            rc.cgroup_driver = Some(if b { "systemd" } else { "cgroupfs" }.into());
                        }
                        if let Some(b) = t.get("enable_cdi").and_then(|v| v.as_bool()) {
                            rc.cdi = Some(b);
                        }
                        if let Some(d) = s("default_runtime_name") {
                            rc.default_runtime = Some(d.to_string());
                        }
                    }
                    _ => {
                        if let Some(bin) = s("runtime_path").filter(|b| names_migcage(b)) {
                            rc.migcage_runtimes
                                .push(format!("{path}.runtime_path = {bin}"));
                        }
                        if path == "crio.runtime" {
                            rc.default_runtime = s("default_runtime").map(str::to_string);
                            rc.cgroup_driver = s("cgroup_manager").map(str::to_string);
                        }
                    }
                }
            }
        }
        _ => {}
    }
    Ok(rc)
}

/// Parse a hooks.d file (the OCI hooks configuration podman and cri-o read).
pub fn parse_hook_file(text: &str) -> Result<(PathBuf, Vec<String>), String> {
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
    let version = v
        .get("version")
        .and_then(|s| s.as_str())
        .unwrap_or_default();
    if version != "1.0.0" {
        return Err(format!(
            "version {version:?}, podman and cri-o read only \"1.0.0\""
        ));
    }
    let path = v
        .pointer("/hook/path")
        .and_then(|p| p.as_str())
        .ok_or("no hook.path")?;
    let stages: Vec<String> = v
        .get("stages")
        .and_then(|s| s.as_array())
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect();
    if stages.is_empty() {
        return Err("no stages".into());
    }
    Ok((PathBuf::from(path), stages))
}

fn gather_hook_files(dirs: &[PathBuf]) -> Vec<HookFileFact> {
    let mut out = Vec::new();
    for dir in dirs {
        for path in sorted_entries(dir, ".json") {
            let hook = std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read it: {e}"))
                .and_then(|t| parse_hook_file(&t));
            let hook = match hook {
                Ok((hook_path, stages)) => {
                    let name = hook_path
                        .file_name()
                        .and_then(|n| n.to_str())
                        .unwrap_or_default()
                        .to_string();
                    let is_migcage = names_migcage(&hook_path.to_string_lossy());
                    // Only files about GPUs: migcage's, and NVIDIA's own (they would both act).
                    if !is_migcage && !name.starts_with("nvidia-container") {
                        continue;
                    }
                    Ok(HookFile {
                        executable: is_executable(&hook_path),
                        hook_path,
                        stages,
                        is_migcage,
                    })
                }
                Err(e) => {
                    let named = path
                        .file_name()
                        .and_then(|n| n.to_str())
                        .unwrap_or_default();
                    if !named.contains("migcage") {
                        continue;
                    }
                    Err(e)
                }
            };
            out.push(HookFileFact { path, hook });
        }
    }
    out
}

fn gather_cdi(
    dirs: &[PathBuf],
    inv: Option<&inventory::Inventory>,
    dev_root: &Path,
) -> Vec<CdiFact> {
    let mut out = Vec::new();
    for dir in dirs {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_file() && cdi::Format::of_path(p).is_some())
            .collect();
        files.sort();
        for path in files {
            let spec = cdi::read(&path).map_err(|e| e.to_string()).map(|spec| {
                if !cdi::is_migcage_spec(&spec) {
                    return CdiSpecFact::Other { kind: spec.kind };
                }
                // The spec the host would get now, made as `cdi generate` made this one.
                let now = inv
                    .zip(spec.kind.parse::<cdi::Kind>().ok())
                    .and_then(|(inv, kind)| {
                        let hook_path = spec
                            .container_edits
                            .hooks
                            .first()
                            .map(|h| PathBuf::from(&h.path))
                            .unwrap_or_default();
                        let opts = cdi::GenerateOptions {
                            kind,
                            hook_path,
                            config_path: None,
                            driver_capabilities: crate::core::request::DriverCapabilities::DEFAULT,
                        };
                        cdi::generate(inv, dev_root, &opts).ok()
                    });
                CdiSpecFact::Migcage {
                    kind: spec.kind.clone(),
                    devices: spec.devices.len(),
                    stale: now.map(|now| cdi::staleness(&spec, &now.spec)),
                }
            });
            out.push(CdiFact { path, spec });
        }
    }
    out
}

/// `nvidia-container-runtime-hook` as `docker run --gpus` finds it: on each running dockerd's
/// PATH (from its environment: the daemon looks the hook up on its own PATH), or, with no dockerd
/// running, on the PATH systemd gives services.
fn gather_docker_hooks(opts: &GatherOptions) -> Vec<DockerHookFact> {
    const SERVICE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
    let mut paths: Vec<(String, String)> = Vec::new();
    if opts.host_root == Path::new("/") {
        let mut pids: Vec<u32> = std::fs::read_dir(crate::backend::hook::PROCESS_PROC)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .collect();
        pids.sort_unstable();
        for pid in pids {
            let dir = Path::new(crate::backend::hook::PROCESS_PROC).join(pid.to_string());
            let is_dockerd =
                std::fs::read_to_string(dir.join("comm")).is_ok_and(|c| c.trim_end() == "dockerd");
            if !is_dockerd {
                continue;
            }
            let path = std::fs::read(dir.join("environ")).ok().and_then(|env| {
                env.split(|b| *b == 0)
                    .find_map(|kv| kv.strip_prefix(b"PATH="))
                    .map(|p| String::from_utf8_lossy(p).into_owned())
            });
            paths.push(match path {
                Some(p) => (format!("PATH of the running dockerd (pid {pid})"), p),
                None => (
                    format!("running dockerd's (pid {pid}) default PATH"),
                    SERVICE_PATH.to_string(),
                ),
            });
        }
    }
    if paths.is_empty() {
        paths.push((
            "PATH systemd gives services (dockerd is not running)".into(),
            SERVICE_PATH.into(),
        ));
    }
    paths
        .into_iter()
        .map(|(path_from, path)| {
            let found = std::env::split_paths(&path)
                .filter(|d| d.is_absolute())
                .map(|d| {
                    opts.host(&d.display().to_string())
                        .join("nvidia-container-runtime-hook")
                })
                .find(|p| is_executable(p))
                .map(|p| {
                    let is_migcage = names_migcage(&p.display().to_string());
                    (p, is_migcage)
                });
            DockerHookFact { path_from, found }
        })
        .collect()
}

/// Whether `dir` is a directory this process can create files in: tried for real (a file made
/// and removed), since permission bits say little to root and nothing about read-only mounts.
pub fn writable(dir: &Path) -> WritableFact {
    match std::fs::metadata(dir) {
        Ok(m) if !m.is_dir() => WritableFact::NotADirectory,
        Ok(_) => {
            let probe = dir.join(format!(".migcage-doctor-{}", std::process::id()));
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&probe)
            {
                Ok(_) => {
                    let _ = std::fs::remove_file(&probe);
                    WritableFact::Writable
                }
                Err(e) => WritableFact::NotWritable(e.to_string()),
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut anc = dir.parent();
            while let Some(a) = anc {
                match std::fs::metadata(a) {
                    Ok(m) => {
                        let creatable = m.is_dir()
                            && nix::unistd::access(a, nix::unistd::AccessFlags::W_OK).is_ok();
                        return WritableFact::Missing {
                            creatable,
                            ancestor: a.to_path_buf(),
                        };
                    }
                    Err(_) => anc = a.parent(),
                }
            }
            WritableFact::Missing {
                creatable: false,
                ancestor: PathBuf::from("/"),
            }
        }
        // ENOTDIR: a component of the path is a file.
        Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => WritableFact::NotADirectory,
        Err(e) => WritableFact::NotWritable(e.to_string()),
    }
}

// ------------------------------------------------------------------------------------------------
// Checks: pure functions of the facts.

/// Every check, in the order an admin would go through them.
pub fn evaluate(f: &Facts) -> Vec<Check> {
    let mut out = vec![check_config(f)];
    out.push(check_driver(f));
    out.extend(check_nvml(f));
    out.extend(check_nodes(f));
    out.push(check_cgroup(f));
    out.extend(check_char_links(f));
    out.extend(check_runtimes(f));
    out.extend(check_hook_files(f));
    out.extend(check_cdi(f));
    out.push(check_state_dir(f));
    out.push(check_log(f));
    out
}

fn check_config(f: &Facts) -> Check {
    match &f.config {
        ConfigFact::Loaded(Some(p)) => Check::ok("config", format!("{}", p.display())),
        ConfigFact::Loaded(None) => Check::ok(
            "config",
            format!(
                "no {}: built-in defaults (the real host's /dev, /proc, libnvidia-ml.so.1)",
                crate::config::DEFAULT_CONFIG_PATH
            ),
        ),
        ConfigFact::Broken(e) => Check::fail(
            "config",
            e.clone(),
            "fix the file (`migcage config` prints the keys in effect; the package ships a documented default); doctor went on with the defaults",
        ),
    }
}

fn check_driver(f: &Facts) -> Check {
    let proc_root = f.roots.proc_root.display();
    match &f.driver {
        DriverFact::Loaded(p) => {
            let mut found = format!(
                "loaded, version {} ({}), {} GPU(s) in {}",
                p.driver_version,
                inventory::version_path(&f.roots).display(),
                p.gpus.len(),
                f.roots.proc_path("driver/nvidia/gpus").display()
            );
            found.push_str(&match (p.majors.uvm, p.majors.caps) {
                (Some(u), Some(c)) => format!("; majors frontend {}, uvm {u}, caps {c}", p.majors.frontend),
                _ => format!("; majors frontend {}", p.majors.frontend),
            });
            if p.majors.uvm.is_none() {
                return Check::warn(
                    "driver",
                    format!("{found}; nvidia-uvm is not loaded (no nvidia-uvm in /proc/devices)"),
                    "CUDA needs it: modprobe nvidia-uvm (or nvidia-modprobe -u -c0)",
                );
            }
            if p.mig_minors.is_none() || p.majors.caps.is_none() {
                return Check::warn(
                    "driver",
                    format!("{found}; nvidia-caps is not loaded (no {} or no nvidia-caps major)", inventory::mig_minors_path(&f.roots).display()),
                    "MIG devices need it: load a driver with MIG support (R450 or later) and run nvidia-modprobe -f -c0",
                );
            }
            Check::ok("driver", found)
        }
        DriverFact::NotLoaded { path } => Check::fail(
            "driver",
            format!("not loaded: {} is missing", path.display()),
            format!("load the nvidia kernel module (modprobe nvidia), or set proc_root in the migcage config (now {proc_root})"),
        ),
        DriverFact::Unreadable(e) => Check::fail(
            "driver",
            e.clone(),
            "check that the driver's procfs is complete, or set proc_root in the migcage config",
        ),
    }
}

fn check_nvml(f: &Facts) -> Vec<Check> {
    let mut out = Vec::new();
    match &f.nvml {
        NvmlFact::Loaded {
            library,
            driver_version,
            gpus,
            elapsed,
        } => {
            let found = format!(
                "{} loaded in {} ms: driver {driver_version}, {} GPU(s)",
                library.display(),
                elapsed.as_millis(),
                gpus.len()
            );
            let slow = elapsed.as_millis() * 2 > u128::from(f.roots.nvml_timeout_ms);
            out.push(if slow {
                Check::warn(
                    "NVML",
                    format!("{found}, more than half of nvml_timeout_ms ({} ms)", f.roots.nvml_timeout_ms),
                    "enable persistence mode (nvidia-smi -pm 1, or run nvidia-persistenced) so that container starts do not wait for NVML",
                )
            } else {
                Check::ok("NVML", found)
            });
            match &f.inventory {
                Some(Ok(inv)) => out.push(Check::ok(
                    "inventory",
                    format!(
                        "NVML and {} agree: {} MIG device(s)",
                        f.roots.proc_root.display(),
                        inv.gpus.iter().map(|g| g.mig_devices.len()).sum::<usize>()
                    ),
                )),
                Some(Err(e)) => out.push(Check::fail(
                    "inventory",
                    e.clone(),
                    "containers that ask for a device fail until NVML and the driver's procfs agree",
                )),
                None => {}
            }
            for g in gpus {
                let check = format!("MIG mode (GPU {})", g.index);
                let what = format!("{} {} (minor {})", g.name, g.uuid, g.minor);
                out.push(match (g.mig_enabled, g.mig_devices.len()) {
                    (false, _) => Check::ok(check, format!("{what}: MIG disabled; containers get the whole GPU")),
                    (true, 0) => Check::warn(
                        check,
                        format!("{what}: MIG enabled but no MIG devices exist"),
                        format!("create instances: nvidia-smi mig -i {} -cgi <profiles> -C", g.index),
                    ),
                    (true, n) => Check::ok(
                        check,
                        format!("{what}: MIG enabled, {n} MIG device(s): {}", g.mig_devices.join(", ")),
                    ),
                });
            }
        }
        NvmlFact::TimedOut { library, timeout_ms } => out.push(Check::fail(
            "NVML",
            format!("{} did not answer within {timeout_ms} ms (nvml_timeout_ms)", library.display()),
            "NVML start-up stalls without persistence mode or with a wedged GPU: enable it (nvidia-smi -pm 1, or nvidia-persistenced), check dmesg, or raise nvml_timeout_ms",
        )),
        NvmlFact::Failed(e) => out.push(Check::fail(
            "NVML",
            e.clone(),
            format!("now: nvml_library = {}", f.roots.nvml_library.display()),
        )),
    }
    out
}

fn node_problem(n: &NodeFact) -> Option<String> {
    let want = format!("{}:{}", n.major, n.minor);
    match &n.found {
        NodeState::CharDevice { major, minor } if (*major, *minor) == (n.major, n.minor) => None,
        NodeState::CharDevice { major, minor } => Some(format!(
            "{} ({}) is char {major}:{minor}, the driver says {want}",
            n.path.display(),
            n.what
        )),
        NodeState::Missing => Some(format!(
            "{} ({}, {want}) is missing",
            n.path.display(),
            n.what
        )),
        NodeState::NotCharDevice(kind) => Some(format!(
            "{} ({}) is {kind}, not character device {want}",
            n.path.display(),
            n.what
        )),
        NodeState::Unreadable(e) => Some(format!("cannot stat {}: {e}", n.path.display())),
    }
}

fn node_fix(n: &NodeFact) -> String {
    let rm = if matches!(n.found, NodeState::Missing) {
        String::new()
    } else {
        format!("rm {} && ", n.path.display())
    };
    if n.caps {
        format!(
            "{rm}nvidia-modprobe -f -c {} (or mknod -m 444 {} c {} {}); the hook checks a node's number before it binds it into a container with a user namespace, and CDI runtimes read it",
            n.minor,
            n.path.display(),
            n.major,
            n.minor
        )
    } else {
        format!(
            "{rm}nvidia-modprobe -c {} -u (or mknod -m 666 {} c {} {})",
            n.minor,
            n.path.display(),
            n.major,
            n.minor
        )
    }
}

fn check_nodes(f: &Facts) -> Vec<Check> {
    let DriverFact::Loaded(_) = &f.driver else {
        return vec![Check::warn(
            "device nodes",
            "not checked: the driver's procfs could not be read",
            "fix the driver line first",
        )];
    };
    let mut out = Vec::new();
    for m in &f.cap_mismatches {
        let table = match m.table_minor {
            Some(t) => format!("maps it to {t}"),
            None => "has no such entry".into(),
        };
        out.push(Check::fail(
            "caps table",
            format!(
                "{} says DeviceFileMinor {} but {} {table} (`{}`)",
                m.file.display(),
                m.file_minor,
                inventory::mig_minors_path(&f.roots).display(),
                m.entry
            ),
            "the driver's procfs is inconsistent, or proc_root mixes two hosts; reload nvidia-caps",
        ));
    }
    for caps in [false, true] {
        let name = if caps { "caps nodes" } else { "GPU nodes" };
        let of_kind: Vec<&NodeFact> = f.nodes.iter().filter(|n| n.caps == caps).collect();
        let bad: Vec<(&NodeFact, String)> = of_kind
            .iter()
            .filter_map(|n| node_problem(n).map(|p| (*n, p)))
            .collect();
        for (n, problem) in &bad {
            out.push(Check::fail(
                if caps { "caps node" } else { "GPU node" },
                problem.clone(),
                node_fix(n),
            ));
        }
        if bad.is_empty() {
            let dir = if caps {
                f.roots.dev_path("nvidia-caps")
            } else {
                f.roots.dev_root.clone()
            };
            let src = if caps {
                format!(
                    "the capability files of {} and {}",
                    f.roots.proc_path("driver/nvidia/capabilities").display(),
                    inventory::mig_minors_path(&f.roots).display()
                )
            } else {
                format!(
                    "{} and the GPUs' information files",
                    inventory::devices_path(&f.roots).display()
                )
            };
            out.push(Check::ok(
                name,
                format!("{} node(s) in {} match {src}", of_kind.len(), dir.display()),
            ));
        }
    }
    out
}

fn check_cgroup(f: &Facts) -> Check {
    let c = &f.cgroup;
    let init = if c.systemd_init {
        "systemd is init: runtimes may use the systemd cgroup driver"
    } else {
        "systemd is not init: runtimes use the cgroupfs driver"
    };
    let drivers: Vec<String> = f
        .runtimes
        .iter()
        .flat_map(|r| {
            r.configs.iter().filter_map(move |(p, c)| {
                let d = c.as_ref().ok()?.cgroup_driver.as_ref()?;
                Some(format!("{} {d} ({})", r.name, p.display()))
            })
        })
        .collect();
    let drivers = if drivers.is_empty() {
        String::new()
    } else {
        format!("; set explicitly: {}", drivers.join(", "))
    };
    match &c.devices {
        Ok(DeviceCgroup::V1(dir)) => {
            let hybrid = if c.cgroup2_mounts.is_empty() {
                String::new()
            } else {
                format!(
                    " (hybrid: cgroup2 also at {}; devices stay on v1)",
                    c.cgroup2_mounts
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            Check::ok(
                "cgroup",
                format!(
                    "v1 devices controller at {}{hybrid}; {init}{drivers}",
                    dir.display()
                ),
            )
        }
        Ok(DeviceCgroup::V2(dir)) => Check::ok(
            "cgroup",
            format!(
                "v2 (eBPF device programs) at {}; {init}{drivers}",
                dir.display()
            ),
        ),
        Err(e) => Check::fail(
            "cgroup",
            format!("no device cgroup: {e}"),
            "mount the cgroup v1 devices controller or cgroup2 on /sys/fs/cgroup",
        ),
    }
}

fn check_char_links(f: &Facts) -> Vec<Check> {
    if f.nodes.is_empty() {
        return Vec::new();
    }
    let missing: Vec<&NodeFact> = f
        .nodes
        .iter()
        .filter(|n| matches!(n.found, NodeState::CharDevice { .. }) && !n.char_link_ok)
        .collect();
    let dir = f.roots.dev_path("char");
    if missing.is_empty() {
        return vec![Check::ok(
            "/dev/char links",
            format!(
                "{} link(s) in {} lead to the NVIDIA nodes",
                f.nodes.len(),
                dir.display()
            ),
        )];
    }
    let first = missing[0];
    let rel = pathdiff(&first.path, &dir);
    let example = format!("ln -s {rel} {}", first.char_link.display());
    let found = format!(
        "{} of {} NVIDIA node(s) lack their {}/<major>:<minor> link (first: {} for {})",
        missing.len(),
        f.nodes.len(),
        dir.display(),
        first.char_link.display(),
        first.path.display()
    );
    if f.cgroup.systemd_init {
        vec![Check::fail(
            "/dev/char links",
            found,
            format!("with the systemd cgroup driver, runc turns device rules into DeviceAllow=/dev/char/<major>:<minor> and a systemctl daemon-reload then drops access to nodes without a link (\"Failed to initialize NVML: Unknown Error\"); create them ({example}, one per node) or use the cgroupfs driver"),
        )]
    } else {
        vec![Check::warn(
            "/dev/char links",
            found,
            format!("harmless while systemd is not init; before switching a runtime to the systemd cgroup driver, create them ({example}, one per node)"),
        )]
    }
}

/// `target` relative to `dir` when it is a sibling path (`../nvidia-caps/nvidia-cap12`).
fn pathdiff(target: &Path, dir: &Path) -> String {
    match (target.parent(), dir.parent()) {
        (Some(tp), Some(dp)) if tp == dp => {
            format!(
                "../{}",
                target.file_name().unwrap_or_default().to_string_lossy()
            )
        }
        (Some(tp), Some(dp)) if tp.parent() == Some(dp) => format!(
            "../{}/{}",
            tp.file_name().unwrap_or_default().to_string_lossy(),
            target.file_name().unwrap_or_default().to_string_lossy()
        ),
        _ => target.display().to_string(),
    }
}

/// How to configure `runtime` for migcage (`migcage configure`, src/configure.rs).
fn configure_fix(runtime: &str) -> String {
    match runtime {
        "docker" => format!("run migcage configure docker (registers the {RUNTIME} runtime: docker run --runtime {RUNTIME}), or put {DOCKER_HOOK_DIR} on dockerd's PATH for docker run --gpus"),
        "podman" => "run migcage configure podman (installs the hooks.d file), or generate a CDI spec (migcage cdi generate) for podman run --device nvidia.com/gpu=...".into(),
        "containerd" => format!("run migcage configure containerd (registers the {RUNTIME} runtime, for ctr --runtime or a Kubernetes RuntimeClass)"),
        "cri-o" => "run migcage configure crio (installs the hooks.d file)".into(),
        _ => String::new(),
    }
}

const RUNTIME: &str = crate::admin::configure::RUNTIME_NAME;

fn check_runtimes(f: &Facts) -> Vec<Check> {
    let installed: Vec<String> = f
        .runtimes
        .iter()
        .filter_map(|r| Some(format!("{} ({})", r.name, r.binary.as_ref()?.display())))
        .collect();
    let absent: Vec<&str> = f
        .runtimes
        .iter()
        .filter(|r| r.binary.is_none())
        .map(|r| r.name)
        .collect();
    let mut out = vec![if installed.is_empty() {
        Check::warn(
            "runtimes",
            format!("none installed (looked for {})", absent.join(", ")),
            "install runc or crun (and an engine such as docker, podman or containerd)",
        )
    } else {
        let absent = if absent.is_empty() {
            String::new()
        } else {
            format!("; not installed: {}", absent.join(", "))
        };
        Check::ok(
            "runtimes",
            format!("installed: {}{absent}", installed.join(", ")),
        )
    }];
    let migcage_hooks: Vec<&HookFileFact> = f
        .hook_files
        .iter()
        .filter(|h| h.hook.as_ref().is_ok_and(|h| h.is_migcage && h.executable))
        .collect();
    let cdi_ok = f.cdi_specs.iter().any(|c| match &c.spec {
        // A spec that could not be compared still configures the engine.
        Ok(CdiSpecFact::Migcage { stale: None, .. }) => true,
        Ok(CdiSpecFact::Migcage {
            stale: Some(lines), ..
        }) => lines.is_empty(),
        _ => false,
    });
    for r in f.runtimes.iter().filter(|r| r.binary.is_some()) {
        let check = format!("runtime {}", r.name);
        let mut ways: Vec<String> = Vec::new();
        let mut notes: Vec<String> = Vec::new();
        for (path, parsed) in &r.configs {
            match parsed {
                Ok(c) => {
                    ways.extend(
                        c.migcage_runtimes
                            .iter()
                            .map(|w| format!("{} {w}", path.display())),
                    );
                    if c.cdi == Some(true) && cdi_ok {
                        ways.push(format!(
                            "{} enable_cdi with migcage's CDI spec",
                            path.display()
                        ));
                    }
                    if let Some(d) = c.default_runtime.as_deref().filter(|d| *d == RUNTIME) {
                        ways.push(format!("{d} is the default runtime"));
                    }
                }
                Err(e) => notes.push(format!("{}: {e}", path.display())),
            }
        }
        if matches!(r.name, "podman" | "cri-o") {
            ways.extend(
                migcage_hooks
                    .iter()
                    .map(|h| format!("hooks.d {}", h.path.display())),
            );
        }
        if r.name == "podman" && cdi_ok {
            ways.push("migcage's CDI spec (podman run --device nvidia.com/gpu=...)".into());
        }
        if r.name == "docker" {
            for DockerHookFact { path_from, found } in &f.docker_hooks {
                match found {
                    Some((p, true)) => ways.push(format!(
                        "docker run --gpus runs {} (migcage), found on the {path_from}",
                        p.display()
                    )),
                    Some((p, false)) => notes.push(format!(
                        "docker run --gpus runs NVIDIA's {} (on the {path_from}), not migcage",
                        p.display()
                    )),
                    None => {}
                }
            }
        }
        let parse_errors: Vec<&String> = notes
            .iter()
            .filter(|n| !n.contains("docker run --gpus"))
            .collect();
        if !parse_errors.is_empty() {
            out.push(Check::fail(
                check,
                notes.join("; "),
                format!("fix the file: {} refuses to start with it", r.name),
            ));
            continue;
        }
        out.push(match r.name {
            "runc" | "crun" => Check::ok(
                check,
                "hooks come from each container's config.json (engines add them through hooks.d, migcage-runtime or CDI)",
            ),
            _ if !notes.is_empty() => Check::warn(
                check,
                format!("{}{}", notes.join("; "), if ways.is_empty() { String::new() } else { format!("; configured: {}", ways.join("; ")) }),
                format!("remove NVIDIA's nvidia-container-runtime-hook from dockerd's PATH or put {DOCKER_HOOK_DIR} before it, then restart dockerd"),
            ),
            _ if !ways.is_empty() => Check::ok(check, format!("configured: {}", ways.join("; "))),
            _ => Check::warn(
                check,
                "installed but not configured for migcage",
                configure_fix(r.name),
            ),
        });
    }
    out
}

fn check_hook_files(f: &Facts) -> Vec<Check> {
    let dirs = f
        .hook_dirs
        .iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(" or ");
    let mut out = Vec::new();
    for h in &f.hook_files {
        match &h.hook {
            Err(e) => out.push(Check::fail(
                "hooks.d",
                format!("{}: {e}", h.path.display()),
                "podman and cri-o skip a broken hook file: run migcage configure podman (or reinstall the package) to rewrite it",
            )),
            Ok(hook) if !hook.is_migcage => out.push(Check::warn(
                "hooks.d",
                format!("{} runs NVIDIA's {}", h.path.display(), hook.hook_path.display()),
                "two GPU hooks would both act on every GPU container: remove NVIDIA's hook file, or migcage's",
            )),
            Ok(hook) if !hook.executable => out.push(Check::fail(
                "hooks.d",
                format!(
                    "{} runs {}, which is not an executable file",
                    h.path.display(),
                    hook.hook_path.display()
                ),
                "every container under podman and cri-o fails to start: reinstall migcage, or fix hook.path",
            )),
            Ok(hook) => out.push(Check::ok(
                "hooks.d",
                format!(
                    "{} runs {} at {}",
                    h.path.display(),
                    hook.hook_path.display(),
                    hook.stages.join(", ")
                ),
            )),
        }
    }
    if !f
        .hook_files
        .iter()
        .any(|h| h.hook.as_ref().is_ok_and(|h| h.is_migcage))
    {
        out.push(Check::warn(
            "hooks.d",
            format!("no migcage hook file in {dirs}"),
            "only podman and cri-o need it: migcage configure podman installs it",
        ));
    }
    out
}

fn check_cdi(f: &Facts) -> Vec<Check> {
    let dirs = f
        .cdi_dirs
        .iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(" or ");
    let ours = f
        .cdi_specs
        .iter()
        .filter(|c| matches!(c.spec, Ok(CdiSpecFact::Migcage { .. })))
        .count();
    let mut out = Vec::new();
    for c in &f.cdi_specs {
        let p = c.path.display();
        out.push(match &c.spec {
            Err(e) => Check::warn(
                "CDI spec",
                e.clone(),
                "CDI engines skip an invalid spec: fix or remove it (migcage cdi generate rewrites migcage's)",
            ),
            Ok(CdiSpecFact::Other { kind }) if kind.starts_with("nvidia.com/") && ours > 0 => Check::warn(
                "CDI spec",
                format!("{p} (kind {kind}) is not migcage's and declares NVIDIA devices too"),
                "engines refuse device names two specs declare: keep one (NVIDIA's toolkit writes /etc/cdi/nvidia.yaml)",
            ),
            Ok(CdiSpecFact::Other { kind }) => Check::ok("CDI spec", format!("{p} (kind {kind}) is not migcage's")),
            Ok(CdiSpecFact::Migcage { kind, devices, stale: None }) => Check::warn(
                "CDI spec",
                format!("{p} (kind {kind}, {devices} device names) could not be compared with the host (no inventory, see above)"),
                "fix NVML and the driver first",
            ),
            Ok(CdiSpecFact::Migcage { kind, devices, stale: Some(lines) }) if lines.is_empty() => Check::ok(
                "CDI spec",
                format!("{p} (kind {kind}, {devices} device names) matches the host"),
            ),
            Ok(CdiSpecFact::Migcage { kind, stale: Some(lines), .. }) => Check::fail(
                "CDI spec",
                format!("{p} (kind {kind}) is stale: {}{}", lines[0], if lines.len() > 1 { format!(" (and {} more: migcage cdi list)", lines.len() - 1) } else { String::new() }),
                "containers asking for those names fail to start: run migcage cdi generate (or systemctl restart migcage-cdi) after changing MIG instances",
            ),
        });
    }
    if ours == 0 {
        out.push(Check::ok(
            "CDI spec",
            format!("no migcage spec in {dirs}; only CDI users (podman --device nvidia.com/gpu=..., containerd enable_cdi) need one: migcage cdi generate"),
        ));
    }
    out
}

fn check_state_dir(f: &Facts) -> Check {
    let p = f.roots.state_dir.display();
    match &f.state_dir {
        WritableFact::Writable => Check::ok("state dir", format!("{p} is writable")),
        WritableFact::Missing { creatable: true, ancestor } => Check::ok(
            "state dir",
            format!("{p} does not exist yet; migcage creates it ({} is writable)", ancestor.display()),
        ),
        WritableFact::Missing { creatable: false, ancestor } => Check::fail(
            "state dir",
            format!("{p} does not exist and {} is not a writable directory", ancestor.display()),
            "create it (mkdir -p, owned by root), or set state_dir in the migcage config",
        ),
        WritableFact::NotADirectory => Check::fail(
            "state dir",
            format!("{p} (or a directory above it) is not a directory"),
            "remove what is in the way, or set state_dir in the migcage config",
        ),
        WritableFact::NotWritable(e) => Check::fail(
            "state dir",
            format!("cannot create a file in {p}: {e}"),
            "leases and the inventory snapshot live there: run as root, remount it read-write, or set state_dir",
        ),
    }
}

fn check_log(f: &Facts) -> Check {
    let Some((file, w)) = &f.log_dir else {
        return Check::ok("log", "off (log.file is empty)");
    };
    if f.roots
        .log
        .level
        .parse::<tracing_subscriber::filter::LevelFilter>()
        .is_err()
    {
        return Check::warn(
            "log",
            format!(
                "log.level {:?} is not a level; info is used",
                f.roots.log.level
            ),
            "write error, warn, info, debug or trace",
        );
    }
    let fix = "the hook then runs without a log: create the directory, or set log.file in the migcage config";
    match w {
        WritableFact::Writable => Check::ok(
            "log",
            format!(
                "{} (JSON lines, appended; level {})",
                file.display(),
                f.roots.log.level
            ),
        ),
        WritableFact::Missing { .. } | WritableFact::NotADirectory => Check::warn(
            "log",
            format!("the directory of {} does not exist", file.display()),
            fix,
        ),
        WritableFact::NotWritable(e) => Check::warn(
            "log",
            format!("cannot write next to {}: {e}", file.display()),
            fix,
        ),
    }
}

/// Gather and evaluate.
pub fn run(loaded: Result<(Config, Option<PathBuf>), ConfigError>, opts: &GatherOptions) -> Report {
    Report::new(evaluate(&gather(loaded, opts)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_format() {
        let c = Check::fail("driver", "not loaded", "modprobe nvidia");
        assert_eq!(c.to_string(), "FAIL driver: not loaded; modprobe nvidia");
        assert_eq!(Check::ok("x", "fine").to_string(), "OK x: fine");
        let r = Report::new(vec![Check::ok("a", "b"), Check::warn("c", "d", "e")]);
        assert!(r.ok);
        assert_eq!(r.render(), "OK a: b\nWARN c: d; e\n");
        let j = serde_json::to_value(&r).unwrap();
        assert_eq!(j["checks"][1]["status"], "WARN");
        assert!(!Report::new(vec![c]).ok);
    }

    #[test]
    fn docker_config() {
        let c = parse_runtime_config(
            "docker",
            r#"{"runtimes": {"migcage": {"path": "/usr/bin/migcage-runtime"}, "nvidia": {"path": "nvidia-container-runtime"}},
                "default-runtime": "runc", "exec-opts": ["native.cgroupdriver=systemd"]}"#,
        )
        .unwrap();
        assert_eq!(
            c.migcage_runtimes,
            ["runtimes.migcage = /usr/bin/migcage-runtime"]
        );
        assert_eq!(c.default_runtime.as_deref(), Some("runc"));
        assert_eq!(c.cgroup_driver.as_deref(), Some("systemd"));
        assert_eq!(
            parse_runtime_config("docker", "").unwrap(),
            RuntimeConfig::default()
        );
        assert!(parse_runtime_config("docker", "{")
            .unwrap_err()
            .contains("not valid JSON"));
    }

    #[test]
    fn containerd_and_crio_and_podman_config() {
        let c = parse_runtime_config(
            "containerd",
            r#"version = 2
[plugins."io.containerd.grpc.v1.cri"]
  enable_cdi = true
[plugins."io.containerd.grpc.v1.cri".containerd]
  default_runtime_name = "migcage"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.migcage]
  runtime_type = "io.containerd.runc.v2"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.migcage.options]
  BinaryName = "/usr/bin/migcage-runtime"
  SystemdCgroup = true
"#,
        )
        .unwrap();
        assert_eq!(c.migcage_runtimes.len(), 1, "{c:?}");
        assert!(c.migcage_runtimes[0]
            .ends_with("runtimes.migcage.options.BinaryName = /usr/bin/migcage-runtime"));
        assert_eq!(c.cdi, Some(true));
        assert_eq!(c.cgroup_driver.as_deref(), Some("systemd"));
        assert_eq!(c.default_runtime.as_deref(), Some("migcage"));

        let c = parse_runtime_config(
            "cri-o",
            "[crio.runtime]\ndefault_runtime = \"migcage\"\ncgroup_manager = \"cgroupfs\"\n[crio.runtime.runtimes.migcage]\nruntime_path = \"/usr/bin/migcage-runtime\"\n",
        )
        .unwrap();
        assert_eq!(
            c.migcage_runtimes,
            ["crio.runtime.runtimes.migcage.runtime_path = /usr/bin/migcage-runtime"]
        );
        assert_eq!(c.cgroup_driver.as_deref(), Some("cgroupfs"));

        let c = parse_runtime_config(
            "podman",
            "[engine]\ncgroup_manager = \"systemd\"\n[engine.runtimes]\nmigcage = [\"/usr/bin/migcage-runtime\"]\nrunc = [\"/usr/bin/runc\"]\n",
        )
        .unwrap();
        assert_eq!(
            c.migcage_runtimes,
            ["engine.runtimes.migcage = /usr/bin/migcage-runtime"]
        );
        assert!(parse_runtime_config("podman", "[engine")
            .unwrap_err()
            .contains("not valid TOML"));
    }

    #[test]
    fn hook_file_parsing() {
        let (p, s) = parse_hook_file(
            r#"{"version": "1.0.0", "hook": {"path": "/usr/bin/migcage", "args": ["migcage", "hook", "prestart"]}, "when": {"always": true}, "stages": ["prestart"]}"#,
        )
        .unwrap();
        assert_eq!(
            (p, s),
            (
                PathBuf::from("/usr/bin/migcage"),
                vec!["prestart".to_string()]
            )
        );
        assert!(parse_hook_file(
            r#"{"version": "2", "hook": {"path": "/x"}, "stages": ["prestart"]}"#
        )
        .unwrap_err()
        .contains("1.0.0"));
        assert!(parse_hook_file(r#"{"version": "1.0.0", "hook": {"path": "/x"}}"#).is_err());
    }

    #[test]
    fn writable_probe() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(writable(d.path()), WritableFact::Writable);
        assert_eq!(
            std::fs::read_dir(d.path()).unwrap().count(),
            0,
            "probe file removed"
        );
        assert_eq!(
            writable(&d.path().join("a/b")),
            WritableFact::Missing {
                creatable: true,
                ancestor: d.path().to_path_buf()
            }
        );
        std::fs::write(d.path().join("f"), "").unwrap();
        assert_eq!(writable(&d.path().join("f")), WritableFact::NotADirectory);
        assert_eq!(
            writable(&d.path().join("f/state")),
            WritableFact::NotADirectory
        );
    }

    #[test]
    fn table_entries() {
        let t = procfs::parse_mig_minors(
            "config 1\nmonitor 2\ngpu0/gi1/access 12\ngpu0/gi1/ci0/access 13\n",
            Path::new("m"),
        )
        .unwrap();
        assert_eq!(table_minor(&t, "config"), Some(1));
        assert_eq!(table_minor(&t, "gpu0/gi1/access"), Some(12));
        assert_eq!(table_minor(&t, "gpu0/gi1/ci0/access"), Some(13));
        assert_eq!(table_minor(&t, "gpu0/gi2/access"), None);
    }

    #[test]
    fn relative_link_targets() {
        assert_eq!(
            pathdiff(Path::new("/dev/nvidia0"), Path::new("/dev/char")),
            "../nvidia0"
        );
        assert_eq!(
            pathdiff(
                Path::new("/dev/nvidia-caps/nvidia-cap12"),
                Path::new("/dev/char")
            ),
            "../nvidia-caps/nvidia-cap12"
        );
    }
}
