//! The cross-check of an inventory (NVML's view) against what procfs says now.

use std::path::PathBuf;

use super::procfs::{self, MigMinors};
use super::{
    ci_access_path, devices_path, gi_access_path, gpu_information_path, mig_cap_path,
    mig_minors_path, read_cap_access, version_path,
};
use super::{Gpu, Inventory, InventoryError, MigDevice, ProcfsInfo};
use crate::config::Config;

/// Check an inventory against procfs: the driver version and majors are the same; every GPU has
/// its `information` with the same UUID and minor; every MIG device has its GI and CI access
/// files, whose `DeviceFileMinor` equals both mig-minors' entry and the inventory's caps minor.
///
/// `discover` runs this on what it has just read; a cached inventory snapshot can be checked the
/// same way with a fresh [`super::read_procfs`], without NVML.
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
    verify_scoped(config, inventory, proc, access_files, |_| true)
}

/// [`verify_with`] for the host-wide part and the GPUs `scope` keeps (whose `information`
/// `proc` must hold): what a container start checks of a snapshot when its request depends on
/// only some GPUs ([`crate::core::plan::gpus_named`]).
pub fn verify_scoped(
    config: &Config,
    inventory: &Inventory,
    proc: &ProcfsInfo,
    access_files: AccessFiles,
    scope: impl Fn(&Gpu) -> bool,
) -> Result<(), InventoryError> {
    verify_host(config, inventory, proc, access_files)?;

    for gpu in inventory.gpus.iter().filter(|g| scope(g)) {
        verify_gpu(config, gpu, proc, access_files)?;
    }
    Ok(())
}

/// The host-wide part: driver version, majors, and the mig/config and mig/monitor caps minors.
fn verify_host(
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
    Ok(())
}

/// One GPU of the inventory against its `information` file and its MIG devices' caps.
fn verify_gpu(
    config: &Config,
    gpu: &Gpu,
    proc: &ProcfsInfo,
    access_files: AccessFiles,
) -> Result<(), InventoryError> {
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
