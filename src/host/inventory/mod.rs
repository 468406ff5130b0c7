//! What the host has: GPUs, MIG devices, device majors, caps minors, driver version.
//!
//! Everything that touches NVML or the driver's procfs lives in this module and nowhere else.
//! `discover` reads NVML (through nvml-wrapper, with the configured library) and procfs (through
//! the configured roots), cross-checks the two, and returns one [`Inventory`] value that the pure
//! planning code works on.

pub mod nvml;
pub mod procfs;
pub mod snapshot;

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::Config;
use procfs::{CapAccess, GpuInformation, MigMinors, ParseError};

/// One host's GPUs as migcage sees them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    /// Driver version, `550.54.15`, from /proc/driver/nvidia/version (checked against NVML).
    pub driver_version: String,
    /// CUDA driver version as NVML encodes it (12040 = 12.4).
    pub cuda_driver_version: i32,
    pub majors: Majors,
    /// GPUs in NVML index order.
    pub gpus: Vec<Gpu>,
    /// Caps minors of `mig/config` and `mig/monitor`, when the driver has them.
    pub mig_config_minor: Option<u32>,
    pub mig_monitor_minor: Option<u32>,
}

/// Character device majors from /proc/devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Majors {
    /// `nvidia-frontend` (195): /dev/nvidia<minor>, /dev/nvidiactl (255), /dev/nvidia-modeset (254).
    pub frontend: u32,
    /// `nvidia-uvm`: /dev/nvidia-uvm (0) and /dev/nvidia-uvm-tools (1).
    pub uvm: Option<u32>,
    /// `nvidia-caps`: /dev/nvidia-caps/nvidia-cap<minor>.
    pub caps: Option<u32>,
}

/// A physical GPU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gpu {
    /// NVML index.
    pub index: u32,
    /// Device minor: /dev/nvidia<minor>, and the `gpu<minor>` of the caps paths.
    pub minor: u32,
    /// `GPU-...`
    pub uuid: String,
    pub name: String,
    /// NVML form, `00000000:07:00.0`.
    pub pci_bus_id: String,
    /// Current MIG mode.
    pub mig_enabled: bool,
    pub memory_mib: u64,
    /// MIG devices in NVML order (empty when MIG is off).
    pub mig_devices: Vec<MigDevice>,
}

/// A MIG device (one compute instance of one GPU instance).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigDevice {
    /// Index among its GPU's MIG devices (the `1` of `0:1`).
    pub index: u32,
    /// NVML index of the parent GPU.
    pub gpu_index: u32,
    /// `MIG-...`
    pub uuid: String,
    pub gpu_instance_id: u32,
    pub compute_instance_id: u32,
    /// Profile as nvidia-smi prints it, `1g.5gb`.
    pub profile: String,
    pub memory_mib: u64,
    /// Caps minor of `gpu<minor>/gi<G>/access`.
    pub gi_caps_minor: u32,
    /// Caps minor of `gpu<minor>/gi<G>/ci<C>/access`.
    pub ci_caps_minor: u32,
}

impl Gpu {
    /// `/proc/driver/nvidia/gpus/<dir>`: the bus id with a 4-digit domain, lower case.
    pub fn proc_bus_id(&self) -> String {
        migcage_topology::proc_bus_id(&self.pci_bus_id)
    }
}

/// The fix for a wrong NVML library, shared by the NVML errors.
const NVML_FIX: &str =
    "install the driver's libnvidia-ml.so.1 or set nvml_library in the migcage config";
/// The explanation of a procfs entry that disagrees with NVML.
const RACE_OR_ROOT: &str = "the MIG instance changed while migcage read it, or proc_root is wrong";

/// Why the host could not be discovered. Every message is one line naming what failed, where,
/// and what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("NVIDIA driver not loaded ({} missing): load the nvidia kernel module, or set proc_root in the migcage config (now {})", path.display(), proc_root.display())]
    NoDriver { path: PathBuf, proc_root: PathBuf },
    #[error("cannot read {}: {source}: run migcage as root, or check proc_root in the migcage config", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Parse(#[from] ParseError),
    #[error("{} has no character device `{name}`: {why}", path.display())]
    MissingMajor {
        path: PathBuf,
        name: &'static str,
        why: String,
    },
    #[error("cannot initialize NVML from {}: {message}: {NVML_FIX}", library.display())]
    NvmlInit { library: PathBuf, message: String },
    #[error("NVML ({}) did not answer within {timeout_ms} ms: its start-up can stall, most often without persistence mode; enable it (nvidia-smi -pm 1, or run nvidia-persistenced), check `nvidia-smi` and dmesg, or raise nvml_timeout_ms in the migcage config", library.display())]
    NvmlTimeout { library: PathBuf, timeout_ms: u64 },
    #[error("NVML ({}) {call} failed for {target}: {message}: check `nvidia-smi` and the kernel log (dmesg) for this GPU", library.display())]
    NvmlCall {
        library: PathBuf,
        call: &'static str,
        target: String,
        message: String,
    },
    #[error("NVML names MIG device {uuid} {name:?}, which lacks the `MIG <profile>` part: the NVML library ({NVML_FIX}) is not one migcage knows")]
    MigName { uuid: String, name: String },
    #[error("driver version mismatch: {} says {proc_version} but NVML ({}) says {nvml_version}: the kernel module and the user-space driver differ; install matching versions, or {NVML_FIX}", proc_file.display(), library.display())]
    DriverVersion {
        proc_file: PathBuf,
        proc_version: String,
        library: PathBuf,
        nvml_version: String,
    },
    #[error("NVML reports GPU {index} ({uuid}, bus {pci_bus_id}) but {} is missing: the GPU went away while migcage read it, or proc_root is wrong", path.display())]
    ProcGpuMissing {
        index: u32,
        uuid: String,
        pci_bus_id: String,
        path: PathBuf,
    },
    #[error("NVML reports GPU {index} with {field} {nvml} but {} says {proc}: proc_root belongs to another host, or the GPU changed while migcage read it", path.display())]
    ProcGpuDiffers {
        index: u32,
        field: &'static str,
        nvml: String,
        path: PathBuf,
        proc: String,
    },
    #[error("NVML reports MIG device {uuid} (GPU {gpu}, GI {gi}, CI {ci}) but {} is missing: load nvidia-caps (nvidia-modprobe -f -c0), or set proc_root", path.display())]
    MigMinorsMissing {
        uuid: String,
        gpu: u32,
        gi: u32,
        ci: u32,
        path: PathBuf,
    },
    #[error("NVML reports MIG device {uuid} (GPU {gpu}, GI {gi}, CI {ci}) but {} has no `{entry}`: the driver's caps table is unlike this one's, or proc_root is wrong", path.display())]
    MigMinorsEntry {
        uuid: String,
        gpu: u32,
        gi: u32,
        ci: u32,
        path: PathBuf,
        entry: String,
    },
    #[error("NVML reports {uuid} (GPU {gpu}, GI {gi}, CI {ci}) but {} is missing: {RACE_OR_ROOT}", path.display())]
    CapMissing {
        uuid: String,
        gpu: u32,
        gi: u32,
        ci: u32,
        path: PathBuf,
    },
    #[error("{} says DeviceFileMinor {file_minor} but {} maps `{entry}` to {expected}: {RACE_OR_ROOT}", path.display(), minors_path.display())]
    CapMinor {
        path: PathBuf,
        file_minor: u32,
        minors_path: PathBuf,
        entry: String,
        expected: u32,
    },
    #[error("the inventory says {what} is {inventory} but {} now says {now}: the driver changed since the inventory was taken; discover again", path.display())]
    Changed {
        what: String,
        inventory: String,
        path: PathBuf,
        now: String,
    },
}

/// Everything migcage reads of the driver's procfs, without NVML: cheap enough to read on every
/// container start to check a cached inventory with [`verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcfsInfo {
    /// Driver version from `driver/nvidia/version`.
    pub driver_version: String,
    /// Majors from `devices`.
    pub majors: Majors,
    /// `driver/nvidia-caps/mig-minors`; `None` when the file does not exist (nvidia-caps not
    /// loaded, or a driver older than MIG).
    pub mig_minors: Option<MigMinors>,
    /// `driver/nvidia/gpus/<bus>/information`, by directory name (`0000:07:00.0`).
    pub gpus: BTreeMap<String, GpuInformation>,
}

/// `<proc_root>/driver/nvidia/version`.
pub fn version_path(config: &Config) -> PathBuf {
    config.proc_path("driver/nvidia/version")
}

/// `<proc_root>/devices`.
pub fn devices_path(config: &Config) -> PathBuf {
    config.proc_path("devices")
}

/// `<proc_root>/driver/nvidia-caps/mig-minors`.
pub fn mig_minors_path(config: &Config) -> PathBuf {
    config.proc_path("driver/nvidia-caps/mig-minors")
}

/// `<proc_root>/driver/nvidia/gpus/<bus>/information`.
pub fn gpu_information_path(config: &Config, proc_bus_id: &str) -> PathBuf {
    config.proc_path(&format!("driver/nvidia/gpus/{proc_bus_id}/information"))
}

/// `<proc_root>/driver/nvidia/capabilities/gpu<minor>/mig/gi<G>/access`.
pub fn gi_access_path(config: &Config, gpu_minor: u32, gi: u32) -> PathBuf {
    config.proc_path(&format!(
        "driver/nvidia/capabilities/gpu{gpu_minor}/mig/gi{gi}/access"
    ))
}

/// `<proc_root>/driver/nvidia/capabilities/gpu<minor>/mig/gi<G>/ci<C>/access`.
pub fn ci_access_path(config: &Config, gpu_minor: u32, gi: u32, ci: u32) -> PathBuf {
    config.proc_path(&format!(
        "driver/nvidia/capabilities/gpu{gpu_minor}/mig/gi{gi}/ci{ci}/access"
    ))
}

/// `<proc_root>/driver/nvidia/capabilities/mig/<name>` (`config`, `monitor`).
pub fn mig_cap_path(config: &Config, name: &str) -> PathBuf {
    config.proc_path(&format!("driver/nvidia/capabilities/mig/{name}"))
}

/// Read a file; `Ok(None)` when it does not exist.
fn read_optional(path: &Path) -> Result<Option<String>, InventoryError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(InventoryError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn read_required(path: &Path) -> Result<String, InventoryError> {
    std::fs::read_to_string(path).map_err(|source| InventoryError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Read and parse a capability access file; `Ok(None)` when it does not exist.
pub fn read_cap_access(path: &Path) -> Result<Option<CapAccess>, InventoryError> {
    match read_optional(path)? {
        Some(text) => Ok(Some(procfs::parse_cap_access(&text, path)?)),
        None => Ok(None),
    }
}

/// Read the driver's procfs: majors, driver version, mig-minors and every GPU's information.
pub fn read_procfs(config: &Config) -> Result<ProcfsInfo, InventoryError> {
    let mut proc = read_procfs_except_mig_minors(config)?;
    proc.mig_minors = read_mig_minors(config)?;
    Ok(proc)
}

/// Read and parse `driver/nvidia-caps/mig-minors`; `None` when it does not exist.
pub fn read_mig_minors(config: &Config) -> Result<Option<MigMinors>, InventoryError> {
    let minors = mig_minors_path(config);
    match read_optional(&minors)? {
        Some(text) => Ok(Some(procfs::parse_mig_minors(&text, &minors)?)),
        None => Ok(None),
    }
}

/// [`read_procfs`] without mig-minors (`mig_minors` is `None`): that file lists every capability
/// the driver could ever make (4322 lines for 8 GPUs) and is the costliest to parse, while it
/// never changes as long as the driver stays loaded. A snapshot that knows the file is unchanged
/// supplies the entries it uses instead (see [`snapshot`]).
pub fn read_procfs_except_mig_minors(config: &Config) -> Result<ProcfsInfo, InventoryError> {
    let driver_dir = config.proc_path("driver/nvidia");
    match std::fs::metadata(&driver_dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(InventoryError::NoDriver {
                path: driver_dir,
                proc_root: config.proc_root.clone(),
            })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(InventoryError::NoDriver {
                path: driver_dir,
                proc_root: config.proc_root.clone(),
            })
        }
        Err(source) => {
            return Err(InventoryError::Read {
                path: driver_dir,
                source,
            })
        }
    }

    let devices = devices_path(config);
    let found = procfs::parse_devices(&read_required(&devices)?, &devices)?;
    let frontend = found.frontend.ok_or_else(|| InventoryError::MissingMajor {
        path: devices.clone(),
        name: "nvidia-frontend",
        why: "the nvidia module is not loaded, or proc_root is wrong".into(),
    })?;
    let majors = Majors {
        frontend,
        uvm: found.uvm,
        caps: found.caps,
    };

    let version = version_path(config);
    let driver_version = procfs::parse_version(&read_required(&version)?, &version)?;

    let gpus_dir = config.proc_path("driver/nvidia/gpus");
    let mut gpus = BTreeMap::new();
    let entries = match std::fs::read_dir(&gpus_dir) {
        Ok(entries) => Some(entries),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(source) => {
            return Err(InventoryError::Read {
                path: gpus_dir,
                source,
            })
        }
    };
    for entry in entries.into_iter().flatten() {
        let entry = entry.map_err(|source| InventoryError::Read {
            path: gpus_dir.clone(),
            source,
        })?;
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        let path = entry.path().join("information");
        if let Some(text) = read_optional(&path)? {
            gpus.insert(name, procfs::parse_gpu_information(&text, &path)?);
        }
    }
    Ok(ProcfsInfo {
        driver_version,
        majors,
        mig_minors: None,
        gpus,
    })
}

/// Discover the host: read procfs and NVML, cross-check them, and return the inventory.
pub fn discover(config: &Config) -> Result<Inventory, InventoryError> {
    let proc = read_procfs(config)?;
    discover_with(config, &proc)
}

/// [`discover`] with procfs already read, so that a caller that has just read it (to check a
/// snapshot) does not read it again. NVML is read within `config.nvml_timeout_ms`.
pub fn discover_with(config: &Config, proc: &ProcfsInfo) -> Result<Inventory, InventoryError> {
    let nvml = read_nvml_bounded(
        &config.nvml_library,
        Duration::from_millis(config.nvml_timeout_ms),
    )?;
    if nvml.driver_version != proc.driver_version {
        return Err(InventoryError::DriverVersion {
            proc_file: version_path(config),
            proc_version: proc.driver_version.clone(),
            library: config.nvml_library.clone(),
            nvml_version: nvml.driver_version,
        });
    }
    let inventory = assemble(config, nvml, proc)?;
    verify(config, &inventory, proc)?;
    Ok(inventory)
}

/// Read NVML in a thread of its own and give up after `timeout` (zero: wait as long as it takes).
///
/// NVML's initialization can hang (no persistence daemon, a wedged GPU). On expiry the thread is
/// left behind, still blocked in NVML: the command fails with one line and exits, which ends it.
pub fn read_nvml_bounded(
    library: &Path,
    timeout: Duration,
) -> Result<nvml::NvmlInfo, InventoryError> {
    if timeout.is_zero() {
        return nvml::read(library);
    }
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let lib = library.to_path_buf();
    std::thread::Builder::new()
        .name("nvml".into())
        .spawn(move || {
            // The receiver is gone only when the caller gave up waiting.
            let _ = tx.send(nvml::read(&lib));
        })
        .map_err(|e| InventoryError::NvmlInit {
            library: library.to_path_buf(),
            message: format!("cannot start a thread to read it: {e}"),
        })?;
    match rx.recv_timeout(timeout) {
        Ok(result) => result,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Err(InventoryError::NvmlTimeout {
            library: library.to_path_buf(),
            timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        }),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(InventoryError::NvmlInit {
            library: library.to_path_buf(),
            message: "the thread reading it panicked".into(),
        }),
    }
}

/// Join NVML's view with procfs's caps minors.
fn assemble(
    config: &Config,
    nvml: nvml::NvmlInfo,
    proc: &ProcfsInfo,
) -> Result<Inventory, InventoryError> {
    let minors_path = mig_minors_path(config);
    let mut gpus = Vec::with_capacity(nvml.gpus.len());
    for g in nvml.gpus {
        let mut mig_devices = Vec::with_capacity(g.mig_devices.len());
        for m in g.mig_devices {
            let (gi, ci) = (m.gpu_instance_id, m.compute_instance_id);
            let Some(table) = &proc.mig_minors else {
                return Err(InventoryError::MigMinorsMissing {
                    uuid: m.uuid,
                    gpu: g.index,
                    gi,
                    ci,
                    path: minors_path,
                });
            };
            let entry_error = |entry: String| InventoryError::MigMinorsEntry {
                uuid: m.uuid.clone(),
                gpu: g.index,
                gi,
                ci,
                path: minors_path.clone(),
                entry,
            };
            let gi_caps_minor = table
                .gi(g.minor, gi)
                .ok_or_else(|| entry_error(procfs::gi_access_name(g.minor, gi)))?;
            let ci_caps_minor = table
                .ci(g.minor, gi, ci)
                .ok_or_else(|| entry_error(procfs::ci_access_name(g.minor, gi, ci)))?;
            mig_devices.push(MigDevice {
                index: m.index,
                gpu_index: g.index,
                uuid: m.uuid,
                gpu_instance_id: gi,
                compute_instance_id: ci,
                profile: m.profile,
                memory_mib: m.memory_mib,
                gi_caps_minor,
                ci_caps_minor,
            });
        }
        gpus.push(Gpu {
            index: g.index,
            minor: g.minor,
            uuid: g.uuid,
            name: g.name,
            pci_bus_id: g.pci_bus_id,
            mig_enabled: g.mig_enabled,
            memory_mib: g.memory_mib,
            mig_devices,
        });
    }
    let table = proc.mig_minors.as_ref();
    Ok(Inventory {
        driver_version: nvml.driver_version,
        cuda_driver_version: nvml.cuda_driver_version,
        majors: proc.majors,
        gpus,
        mig_config_minor: table.and_then(|t| t.config),
        mig_monitor_minor: table.and_then(|t| t.monitor),
    })
}

/// Check an inventory against procfs: the driver version and majors are the same; every GPU has
/// its `information` with the same UUID and minor; every MIG device has its GI and CI access
/// files, whose `DeviceFileMinor` equals both mig-minors' entry and the inventory's caps minor.
///
/// `discover` runs this on what it has just read; a cached inventory snapshot can be checked the
/// same way with a fresh [`read_procfs`], without NVML.
pub fn verify(
    config: &Config,
    inventory: &Inventory,
    proc: &ProcfsInfo,
) -> Result<(), InventoryError> {
    verify_with(config, inventory, proc, AccessFiles::Read)
}

/// Whether [`verify_with`] reads the capability access files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessFiles {
    /// Read each one and check its `DeviceFileMinor`.
    Read,
    /// The caller has checked that every access file is the very file (same inode, unchanged
    /// since) that an earlier `verify` read: their contents cannot differ, so they are not read
    /// again. The inventory snapshot's identity check is such a caller.
    Unchanged,
}

/// [`verify`], reading the access files or not (see [`AccessFiles`]).
pub fn verify_with(
    config: &Config,
    inventory: &Inventory,
    proc: &ProcfsInfo,
    access_files: AccessFiles,
) -> Result<(), InventoryError> {
    let changed =
        |what: &str, inventory: String, path: PathBuf, now: String| InventoryError::Changed {
            what: what.to_string(),
            inventory,
            path,
            now,
        };
    if inventory.driver_version != proc.driver_version {
        return Err(changed(
            "the driver version",
            inventory.driver_version.clone(),
            version_path(config),
            proc.driver_version.clone(),
        ));
    }
    if inventory.majors != proc.majors {
        return Err(changed(
            "the device majors",
            format!("{:?}", inventory.majors),
            devices_path(config),
            format!("{:?}", proc.majors),
        ));
    }
    let has_mig = inventory.gpus.iter().any(|g| !g.mig_devices.is_empty());
    if has_mig && proc.majors.caps.is_none() {
        return Err(InventoryError::MissingMajor {
            path: devices_path(config),
            name: "nvidia-caps",
            why: "NVML reports MIG devices, whose access needs it; load nvidia-caps (nvidia-modprobe -f -c0)".into(),
        });
    }
    let minors_path = mig_minors_path(config);
    if let Some(table) = &proc.mig_minors {
        for (name, inv, now) in [
            (
                "the mig/config caps minor",
                inventory.mig_config_minor,
                table.config,
            ),
            (
                "the mig/monitor caps minor",
                inventory.mig_monitor_minor,
                table.monitor,
            ),
        ] {
            if inv != now {
                return Err(changed(
                    name,
                    format!("{inv:?}"),
                    minors_path.clone(),
                    format!("{now:?}"),
                ));
            }
        }
    }
    for (name, minor) in [
        ("config", inventory.mig_config_minor),
        ("monitor", inventory.mig_monitor_minor),
    ] {
        if access_files == AccessFiles::Unchanged {
            continue;
        }
        let path = mig_cap_path(config, name);
        if let (Some(expected), Some(access)) = (minor, read_cap_access(&path)?) {
            if access.minor != expected {
                return Err(InventoryError::CapMinor {
                    path,
                    file_minor: access.minor,
                    minors_path: minors_path.clone(),
                    entry: name.to_string(),
                    expected,
                });
            }
        }
    }

    for gpu in &inventory.gpus {
        let bus = gpu.proc_bus_id();
        let info_path = gpu_information_path(config, &bus);
        let Some(info) = proc.gpus.get(&bus) else {
            return Err(InventoryError::ProcGpuMissing {
                index: gpu.index,
                uuid: gpu.uuid.clone(),
                pci_bus_id: gpu.pci_bus_id.clone(),
                path: info_path,
            });
        };
        let differs =
            |field: &'static str, nvml: String, proc: String| InventoryError::ProcGpuDiffers {
                index: gpu.index,
                field,
                nvml,
                path: info_path.clone(),
                proc,
            };
        if let Some(uuid) = &info.uuid {
            if !uuid.eq_ignore_ascii_case(&gpu.uuid) {
                return Err(differs("UUID", gpu.uuid.clone(), uuid.clone()));
            }
        }
        if info.minor != gpu.minor {
            return Err(differs(
                "device minor",
                gpu.minor.to_string(),
                info.minor.to_string(),
            ));
        }
        for m in &gpu.mig_devices {
            verify_mig_device(config, gpu, m, proc.mig_minors.as_ref(), access_files)?;
        }
    }
    Ok(())
}

fn verify_mig_device(
    config: &Config,
    gpu: &Gpu,
    m: &MigDevice,
    table: Option<&MigMinors>,
    access_files: AccessFiles,
) -> Result<(), InventoryError> {
    let (gi, ci) = (m.gpu_instance_id, m.compute_instance_id);
    let minors_path = mig_minors_path(config);
    let Some(table) = table else {
        return Err(InventoryError::MigMinorsMissing {
            uuid: m.uuid.clone(),
            gpu: gpu.index,
            gi,
            ci,
            path: minors_path,
        });
    };
    let checks = [
        (
            gi_access_path(config, gpu.minor, gi),
            procfs::gi_access_name(gpu.minor, gi),
            table.gi(gpu.minor, gi),
            m.gi_caps_minor,
        ),
        (
            ci_access_path(config, gpu.minor, gi, ci),
            procfs::ci_access_name(gpu.minor, gi, ci),
            table.ci(gpu.minor, gi, ci),
            m.ci_caps_minor,
        ),
    ];
    for (path, entry, in_table, in_inventory) in checks {
        let Some(expected) = in_table else {
            return Err(InventoryError::MigMinorsEntry {
                uuid: m.uuid.clone(),
                gpu: gpu.index,
                gi,
                ci,
                path: minors_path,
                entry,
            });
        };
        if expected != in_inventory {
            return Err(InventoryError::Changed {
                what: format!("the caps minor of {} ({entry})", m.uuid),
                inventory: in_inventory.to_string(),
                path: minors_path,
                now: expected.to_string(),
            });
        }
        if access_files == AccessFiles::Unchanged {
            continue;
        }
        let Some(access) = read_cap_access(&path)? else {
            return Err(InventoryError::CapMissing {
                uuid: m.uuid.clone(),
                gpu: gpu.index,
                gi,
                ci,
                path,
            });
        };
        if access.minor != expected {
            return Err(InventoryError::CapMinor {
                path,
                file_minor: access.minor,
                minors_path,
                entry,
                expected,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::nvml::{NvmlGpu, NvmlInfo, NvmlMigDevice};
    use super::*;
    use migcage_topology::Topology;

    /// A procfs tree in the driver's formats for `topo`, and what NVML would say about it.
    struct Fixture {
        _dir: tempfile::TempDir,
        config: Config,
        nvml: NvmlInfo,
    }

    fn write(path: PathBuf, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn access(minor: u32) -> String {
        format!("DeviceFileMinor: {minor}\nDeviceFileMode: 292\nDeviceFileModify: 1\n")
    }

    fn fixture(name: &str) -> Fixture {
        let topo = Topology::load(name).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            proc_root: dir.path().join("proc"),
            nvml_library: dir.path().join("libnvidia-ml.so.1"),
            ..Config::default()
        };
        write(
            devices_path(&config),
            &format!(
                "Character devices:\n  1 mem\n195 nvidia-frontend\n{} nvidia-caps\n{} nvidia-uvm\n\nBlock devices:\n  8 sd\n",
                topo.majors.caps, topo.majors.uvm
            ),
        );
        write(
            version_path(&config),
            &format!(
                "NVRM version: NVIDIA UNIX x86_64 Kernel Module  {}  Tue Mar  5 22:23:56 UTC 2024\nGCC version:  gcc 12\n",
                topo.driver_version
            ),
        );
        write(
            mig_minors_path(&config),
            &migcage_topology::mig_minors_file(),
        );
        write(mig_cap_path(&config, "config"), &access(1));
        write(mig_cap_path(&config, "monitor"), &access(2));
        let mut gpus = Vec::new();
        for g in &topo.gpus {
            write(
                gpu_information_path(&config, &g.proc_bus_id()),
                &format!(
                    "Model: \t\t {}\nIRQ:   \t\t 100\nGPU UUID: \t {}\nBus Location: \t {}\nDevice Minor: \t {}\nGPU Excluded:\t No\n",
                    g.model.name,
                    g.uuid,
                    g.proc_bus_id(),
                    g.minor
                ),
            );
            let mut mig_devices = Vec::new();
            for m in g.mig_devices() {
                let gi = m.gi.id;
                let ci = m.ci.id;
                write(
                    gi_access_path(&config, g.minor, gi),
                    &access(migcage_topology::gi_access_minor(g.minor, gi)),
                );
                write(
                    ci_access_path(&config, g.minor, gi, ci),
                    &access(migcage_topology::ci_access_minor(g.minor, gi, ci)),
                );
                mig_devices.push(NvmlMigDevice {
                    index: m.index,
                    uuid: m.ci.uuid.clone(),
                    name: m.name(),
                    profile: m.profile_name(),
                    gpu_instance_id: gi,
                    compute_instance_id: ci,
                    memory_mib: m.gi.profile.memory_mib,
                });
            }
            gpus.push(NvmlGpu {
                index: g.index,
                minor: g.minor,
                uuid: g.uuid.clone(),
                name: g.model.name.to_string(),
                pci_bus_id: g.pci_bus_id.clone(),
                mig_enabled: g.mig,
                memory_mib: g.model.memory_mib,
                mig_devices,
            });
        }
        let nvml = NvmlInfo {
            driver_version: topo.driver_version.clone(),
            cuda_driver_version: topo.cuda_driver_version,
            gpus,
        };
        Fixture {
            _dir: dir,
            config,
            nvml,
        }
    }

    fn assembled(f: &Fixture) -> (ProcfsInfo, Result<Inventory, InventoryError>) {
        let proc = read_procfs(&f.config).unwrap();
        let inv = assemble(&f.config, f.nvml.clone(), &proc);
        (proc, inv)
    }

    #[test]
    fn procfs_of_a_mig_host() {
        let f = fixture("two-gpus-one-mig");
        let proc = read_procfs(&f.config).unwrap();
        assert_eq!(proc.driver_version, "550.54.15");
        assert_eq!(
            proc.majors,
            Majors {
                frontend: 195,
                uvm: Some(migcage_topology::DEFAULT_UVM_MAJOR),
                caps: Some(migcage_topology::DEFAULT_CAPS_MAJOR)
            }
        );
        assert_eq!(
            proc.gpus.keys().collect::<Vec<_>>(),
            ["0000:07:00.0", "0000:0f:00.0"]
        );
        assert_eq!(proc.gpus["0000:0f:00.0"].minor, 1);
        assert_eq!(proc.mig_minors.as_ref().unwrap().gi(0, 1), Some(12));
    }

    #[test]
    fn assemble_takes_caps_minors_from_mig_minors_and_verifies() {
        for name in migcage_topology::builtin_names() {
            let f = fixture(name);
            let (proc, inv) = assembled(&f);
            let inv = inv.unwrap_or_else(|e| panic!("{name}: {e}"));
            verify(&f.config, &inv, &proc).unwrap_or_else(|e| panic!("{name}: {e}"));
            let topo = Topology::load(name).unwrap();
            assert_eq!(inv.mig_config_minor, Some(1));
            assert_eq!(inv.mig_monitor_minor, Some(2));
            let mut count = 0;
            for (g, tg) in inv.gpus.iter().zip(&topo.gpus) {
                for (m, tm) in g.mig_devices.iter().zip(tg.mig_devices()) {
                    assert_eq!(
                        m.gi_caps_minor,
                        migcage_topology::gi_access_minor(tg.minor, tm.gi.id)
                    );
                    assert_eq!(
                        m.ci_caps_minor,
                        migcage_topology::ci_access_minor(tg.minor, tm.gi.id, tm.ci.id)
                    );
                    assert_eq!(m.gpu_index, g.index);
                    count += 1;
                }
            }
            assert_eq!(count, topo.mig_devices().len(), "{name}");
        }
    }

    #[test]
    fn no_driver_names_the_directory_and_the_fix() {
        let f = fixture("a100-7x1g");
        std::fs::remove_dir_all(f.config.proc_path("driver/nvidia")).unwrap();
        let e = read_procfs(&f.config).unwrap_err();
        let s = e.to_string();
        assert!(matches!(e, InventoryError::NoDriver { .. }), "{s}");
        assert!(
            s.contains(&f.config.proc_path("driver/nvidia").display().to_string()),
            "{s}"
        );
        assert!(
            s.contains("load the nvidia kernel module") && s.contains("proc_root"),
            "{s}"
        );
    }

    #[test]
    fn missing_frontend_major() {
        let f = fixture("a100-nomig");
        write(devices_path(&f.config), "Character devices:\n  1 mem\n");
        let e = read_procfs(&f.config).unwrap_err();
        assert!(e.to_string().contains("nvidia-frontend"), "{e}");
    }

    #[test]
    fn malformed_files_name_file_and_line() {
        let f = fixture("a100-mixed");
        write(
            mig_minors_path(&f.config),
            "config 1\nmonitor 2\ngpu0/gi1/access twelve\n",
        );
        let e = read_procfs(&f.config).unwrap_err();
        let s = e.to_string();
        assert!(matches!(e, InventoryError::Parse(_)), "{s}");
        assert!(s.contains("mig-minors") && s.contains("line 3"), "{s}");

        let f = fixture("a100-mixed");
        write(gi_access_path(&f.config, 0, 1), "DeviceFileMinor: x\n");
        let (proc, inv) = assembled(&f);
        let e = verify(&f.config, &inv.unwrap(), &proc).unwrap_err();
        assert!(
            e.to_string().contains("gi1/access") && e.to_string().contains("line 1"),
            "{e}"
        );
    }

    #[test]
    fn missing_access_file_names_both_sides() {
        let f = fixture("a100-7x1g");
        let path = ci_access_path(&f.config, 0, 9, 0);
        std::fs::remove_file(&path).unwrap();
        let (proc, inv) = assembled(&f);
        let inv = inv.unwrap();
        let uuid = &inv.gpus[0]
            .mig_devices
            .iter()
            .find(|m| m.gpu_instance_id == 9)
            .unwrap()
            .uuid;
        let e = verify(&f.config, &inv, &proc).unwrap_err();
        let s = e.to_string();
        assert!(matches!(e, InventoryError::CapMissing { .. }), "{s}");
        assert!(
            s.contains(uuid.as_str())
                && s.contains("GI 9, CI 0")
                && s.contains(&path.display().to_string()),
            "{s}"
        );
        assert!(s.contains("changed while migcage read it"), "{s}");
    }

    #[test]
    fn access_minor_disagreeing_with_mig_minors() {
        let f = fixture("a100-7x1g");
        let path = gi_access_path(&f.config, 0, 7);
        write(path.clone(), &access(999));
        let (proc, inv) = assembled(&f);
        let e = verify(&f.config, &inv.unwrap(), &proc).unwrap_err();
        let s = e.to_string();
        assert!(
            s.contains(&path.display().to_string())
                && s.contains("999")
                && s.contains("mig-minors"),
            "{s}"
        );
        assert!(
            s.contains("gpu0/gi7/access")
                && s.contains(&migcage_topology::gi_access_minor(0, 7).to_string()),
            "{s}"
        );
    }

    #[test]
    fn mig_minors_missing_or_incomplete() {
        let f = fixture("a100-mixed");
        std::fs::remove_file(mig_minors_path(&f.config)).unwrap();
        let (proc, inv) = assembled(&f);
        assert_eq!(proc.mig_minors, None);
        let s = inv.unwrap_err().to_string();
        assert!(
            s.contains("mig-minors is missing") && s.contains("MIG-"),
            "{s}"
        );

        let f = fixture("a100-mixed");
        write(mig_minors_path(&f.config), "config 1\nmonitor 2\n");
        let s = assembled(&f).1.unwrap_err().to_string();
        assert!(s.contains("has no `gpu0/gi"), "{s}");

        // Without MIG devices, no mig-minors is fine.
        let f = fixture("a100-nomig");
        std::fs::remove_file(mig_minors_path(&f.config)).unwrap();
        let (proc, inv) = assembled(&f);
        let inv = inv.unwrap();
        assert_eq!(inv.mig_config_minor, None);
        verify(&f.config, &inv, &proc).unwrap();
    }

    #[test]
    fn gpu_information_disagreeing_with_nvml() {
        let f = fixture("two-gpus-one-mig");
        let path = gpu_information_path(&f.config, "0000:0f:00.0");
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("Device Minor: \t 1", "Device Minor: \t 5");
        write(path.clone(), &text);
        let (proc, inv) = assembled(&f);
        let s = verify(&f.config, &inv.unwrap(), &proc)
            .unwrap_err()
            .to_string();
        assert!(
            s.contains("GPU 1 with device minor 1")
                && s.contains("says 5")
                && s.contains(&path.display().to_string()),
            "{s}"
        );

        let f = fixture("two-gpus-one-mig");
        let mut nvml = f.nvml.clone();
        nvml.gpus[0].uuid = "GPU-00000000-0000-0000-0000-000000000000".into();
        let proc = read_procfs(&f.config).unwrap();
        let s = verify(&f.config, &assemble(&f.config, nvml, &proc).unwrap(), &proc)
            .unwrap_err()
            .to_string();
        assert!(
            s.contains("UUID GPU-00000000") && s.contains("0000:07:00.0/information"),
            "{s}"
        );

        let f = fixture("two-gpus-one-mig");
        std::fs::remove_dir_all(f.config.proc_path("driver/nvidia/gpus/0000:0f:00.0")).unwrap();
        let (proc, inv) = assembled(&f);
        let s = verify(&f.config, &inv.unwrap(), &proc)
            .unwrap_err()
            .to_string();
        assert!(
            s.contains("NVML reports GPU 1") && s.contains("0000:0f:00.0/information is missing"),
            "{s}"
        );
    }

    #[test]
    fn snapshot_checks_catch_driver_changes() {
        let f = fixture("a100-mixed");
        let (_, inv) = assembled(&f);
        let inv = inv.unwrap();
        // The driver was reloaded with another caps major.
        write(
            devices_path(&f.config),
            "Character devices:\n195 nvidia-frontend\n500 nvidia-caps\n510 nvidia-uvm\n",
        );
        let proc = read_procfs(&f.config).unwrap();
        let s = verify(&f.config, &inv, &proc).unwrap_err().to_string();
        assert!(
            s.contains("device majors") && s.contains("discover again"),
            "{s}"
        );
        // Or upgraded.
        let f = fixture("a100-mixed");
        let (_, inv) = assembled(&f);
        write(
            version_path(&f.config),
            "NVRM version: NVIDIA UNIX x86_64 Kernel Module  560.35.03  Fri Aug 16\n",
        );
        let proc = read_procfs(&f.config).unwrap();
        let s = verify(&f.config, &inv.unwrap(), &proc)
            .unwrap_err()
            .to_string();
        assert!(s.contains("550.54.15") && s.contains("560.35.03"), "{s}");
    }

    #[test]
    fn mig_without_caps_major() {
        let f = fixture("a100-mixed");
        write(
            devices_path(&f.config),
            "Character devices:\n195 nvidia-frontend\n510 nvidia-uvm\n",
        );
        let (proc, inv) = assembled(&f);
        let s = verify(&f.config, &inv.unwrap(), &proc)
            .unwrap_err()
            .to_string();
        assert!(
            s.contains("nvidia-caps") && s.contains("MIG devices"),
            "{s}"
        );
    }

    #[test]
    fn errors_are_one_line() {
        let f = fixture("a100-7x1g");
        std::fs::remove_file(version_path(&f.config)).unwrap();
        let e = read_procfs(&f.config).unwrap_err();
        let s = e.to_string();
        assert!(
            matches!(e, InventoryError::Read { .. }) && s.contains("driver/nvidia/version"),
            "{s}"
        );
        assert!(!s.contains('\n'), "{s}");
    }
}
