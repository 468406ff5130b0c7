//! Discovery: NVML read within a time limit, joined with procfs's caps minors and checked.

use std::path::Path;
use std::time::Duration;

use super::{mig_minors_path, nvml, procfs, read_procfs, verify, version_path};
use super::{Gpu, Inventory, InventoryError, MigDevice, ProcfsInfo};
use crate::config::Config;

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
    crate::profile::mark("nvml");
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
    crate::profile::mark("verify");
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
pub(super) fn assemble(
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
