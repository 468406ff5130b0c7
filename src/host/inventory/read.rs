//! Reading the driver's procfs (through the configured `proc_root`) into [`ProcfsInfo`].

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};

use super::procfs::{self, CapAccess, GpuInformation, MigMinors};
use super::{InventoryError, Majors};
use crate::config::Config;

/// Everything migcage reads of the driver's procfs, without NVML: cheap enough to read on every
/// container start to check a cached inventory with [`super::verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcfsInfo {
    /// Driver version from `driver/nvidia/version`.
    pub driver_version: String,
    /// Majors from `devices`.
    pub majors: Majors,
    /// `driver/nvidia-caps/mig-minors`; `None` when the file does not exist (nvidia-caps not
    /// loaded, or a driver older than MIG).
    pub mig_minors: Option<MigMinors>,
    /// `driver/nvidia/gpus/<bus>/information`, by directory name (`0000:07:00.0`): of every
    /// GPU, or of those a scoped read ([`read_procfs_scoped`]) was asked for.
    pub gpus: BTreeMap<String, GpuInformation>,
    /// Every directory name under `driver/nvidia/gpus`, sorted, its `information` read or not.
    pub gpu_dirs: Vec<String>,
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
    match crate::sys::read::read_text(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(InventoryError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn read_required(path: &Path) -> Result<String, InventoryError> {
    crate::sys::read::read_text(path).map_err(|source| InventoryError::Read {
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
/// supplies the entries it uses instead (see [`super::snapshot`]).
pub fn read_procfs_except_mig_minors(config: &Config) -> Result<ProcfsInfo, InventoryError> {
    read_procfs_scoped(config, None)
}

/// [`read_procfs_except_mig_minors`], reading the `information` of only the GPU directories in
/// `only` (every one when `None`); [`ProcfsInfo::gpu_dirs`] still lists them all.
pub fn read_procfs_scoped(
    config: &Config,
    only: Option<&BTreeSet<String>>,
) -> Result<ProcfsInfo, InventoryError> {
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
    let mut gpu_dirs = Vec::new();
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
        gpu_dirs.push(name.clone());
        if only.is_some_and(|only| !only.contains(&name)) {
            continue;
        }
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
        gpu_dirs: {
            gpu_dirs.sort_unstable();
            gpu_dirs
        },
    })
}
