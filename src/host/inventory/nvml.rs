//! Reading GPUs and MIG devices through NVML.
//!
//! nvml-wrapper does the work where it has a wrapper, MIG device enumeration included. The two
//! MIG calls it lacks (`nvmlDeviceGetGpuInstanceId`, `nvmlDeviceGetComputeInstanceId`) are made
//! through the symbol table nvml-wrapper has already loaded, so both talk to the one
//! initialized NVML; their `unsafe` lives in [`crate::sys::nvml`].
//!
//! [`NvmlInfo`] is NVML's raw answer, before it is cross-checked against procfs and joined with
//! the caps minors: the checked, assembled view is [`super::Inventory`].

use std::path::Path;

use nvml_wrapper::error::NvmlError;
use nvml_wrapper::{Device, Nvml};

use super::InventoryError;
use crate::sys::nvml::MigIds;

const MIB: u64 = 1024 * 1024;

/// What NVML says about the host: its raw answer, before the cross-check against procfs and the
/// caps minors that make an [`super::Inventory`]. Kept apart because it is a different thing: it
/// exists where the cross-check fails (doctor reports both), and its GPUs carry no caps minors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NvmlInfo {
    /// `nvmlSystemGetDriverVersion`, `550.54.15`.
    pub driver_version: String,
    /// `nvmlSystemGetCudaDriverVersion_v2`, 12040 for 12.4.
    pub cuda_driver_version: i32,
    /// GPUs in NVML index order.
    pub gpus: Vec<NvmlGpu>,
}

/// A physical GPU as NVML reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NvmlGpu {
    pub index: u32,
    /// `nvmlDeviceGetMinorNumber`.
    pub minor: u32,
    pub uuid: String,
    pub name: String,
    /// `00000000:07:00.0`.
    pub pci_bus_id: String,
    /// Current (not pending) MIG mode; false where the GPU does not support MIG.
    pub mig_enabled: bool,
    pub memory_mib: u64,
    pub mig_devices: Vec<NvmlMigDevice>,
}

/// A MIG device as NVML reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NvmlMigDevice {
    /// The index passed to `nvmlDeviceGetMigDeviceHandleByIndex`.
    pub index: u32,
    pub uuid: String,
    /// `NVIDIA A100-SXM4-40GB MIG 1g.5gb`.
    pub name: String,
    /// The name's part after `MIG `: `1g.5gb`, `1c.3g.20gb`.
    pub profile: String,
    pub gpu_instance_id: u32,
    pub compute_instance_id: u32,
    pub memory_mib: u64,
}

/// The profile in a MIG device's name: `NVIDIA A100-SXM4-40GB MIG 1g.5gb` -> `1g.5gb`.
pub fn profile_from_name(name: &str) -> Option<&str> {
    let (_, profile) = name.rsplit_once("MIG ")?;
    let profile = profile.trim();
    (!profile.is_empty() && !profile.contains(char::is_whitespace)).then_some(profile)
}

/// `NVML_DEVICE_MIG_ENABLE` of nvml.h: MIG mode on.
const NVML_DEVICE_MIG_ENABLE: u32 = 1;

/// Initialize NVML from `library` and read every GPU and MIG device.
pub fn read(library: &Path) -> Result<NvmlInfo, InventoryError> {
    let nvml = Nvml::builder()
        .lib_path(library.as_os_str())
        .init()
        .map_err(|e| InventoryError::NvmlInit {
            library: library.to_path_buf(),
            message: e.to_string(),
        })?;
    let lib = library.to_path_buf();
    let sys = || "the system".to_string();
    let driver_version =
        nvml.sys_driver_version()
            .map_err(call_error(&lib, "nvmlSystemGetDriverVersion", sys))?;
    let cuda_driver_version = nvml.sys_cuda_driver_version().map_err(call_error(
        &lib,
        "nvmlSystemGetCudaDriverVersion_v2",
        sys,
    ))?;
    let count = nvml
        .device_count()
        .map_err(call_error(&lib, "nvmlDeviceGetCount_v2", sys))?;
    let mut gpus = Vec::with_capacity(count as usize);
    for index in 0..count {
        gpus.push(read_gpu(&nvml, &lib, index)?);
    }
    Ok(NvmlInfo {
        driver_version,
        cuda_driver_version,
        gpus,
    })
}

/// The GPU at NVML index `index`, with its MIG devices when MIG is on.
fn read_gpu(nvml: &Nvml, lib: &Path, index: u32) -> Result<NvmlGpu, InventoryError> {
    let at = || format!("GPU {index}");
    let device = nvml.device_by_index(index).map_err(call_error(
        lib,
        "nvmlDeviceGetHandleByIndex_v2",
        at,
    ))?;
    let uuid = device
        .uuid()
        .map_err(call_error(lib, "nvmlDeviceGetUUID", at))?;
    let at = || format!("GPU {index} ({uuid})");
    let name = device
        .name()
        .map_err(call_error(lib, "nvmlDeviceGetName", at))?;
    let pci_bus_id = device
        .pci_info()
        .map_err(call_error(lib, "nvmlDeviceGetPciInfo_v3", at))?
        .bus_id;
    let minor = device
        .minor_number()
        .map_err(call_error(lib, "nvmlDeviceGetMinorNumber", at))?;
    let memory_mib = device
        .memory_info()
        .map_err(call_error(lib, "nvmlDeviceGetMemoryInfo_v2", at))?
        .total
        / MIB;
    let mig_enabled = match device.mig_mode() {
        Ok(mode) => mode.current == NVML_DEVICE_MIG_ENABLE,
        Err(NvmlError::NotSupported) => false,
        Err(e) => return Err(call_error(lib, "nvmlDeviceGetMigMode", at)(e)),
    };
    let mig_devices = if mig_enabled {
        read_mig_devices(nvml, lib, &device, &at())?
    } else {
        Vec::new()
    };
    Ok(NvmlGpu {
        index,
        minor,
        uuid,
        name,
        pci_bus_id,
        mig_enabled,
        memory_mib,
        mig_devices,
    })
}

/// The MIG devices of one GPU, in index order. Indexes without a device (NVML answers
/// `NOT_FOUND`) are skipped: after instances are destroyed the populated indexes need not be
/// contiguous.
fn read_mig_devices(
    nvml: &Nvml,
    lib: &Path,
    gpu: &Device<'_>,
    at: &str,
) -> Result<Vec<NvmlMigDevice>, InventoryError> {
    let gpu_at = || at.to_string();
    let max = gpu.mig_device_count().map_err(call_error(
        lib,
        "nvmlDeviceGetMaxMigDeviceCount",
        gpu_at,
    ))?;
    let mut out = Vec::new();
    for index in 0..max {
        let mig_at = || format!("MIG device {index} of {at}");
        let device = match gpu.mig_device_by_index(index) {
            Ok(device) => device,
            Err(NvmlError::NotFound) => continue,
            Err(e) => {
                return Err(call_error(
                    lib,
                    "nvmlDeviceGetMigDeviceHandleByIndex",
                    mig_at,
                )(e))
            }
        };
        let Some(ids) = MigIds::of(nvml, &device) else {
            continue;
        };
        out.push(read_mig_device(lib, &device, &ids, index, at)?);
    }
    Ok(out)
}

/// One MIG device's UUID, name, profile, memory and instance ids.
fn read_mig_device(
    lib: &Path,
    device: &Device<'_>,
    ids: &MigIds<'_, '_>,
    index: u32,
    at: &str,
) -> Result<NvmlMigDevice, InventoryError> {
    let mig_at = || format!("MIG device {index} of {at}");
    let uuid = device
        .uuid()
        .map_err(call_error(lib, "nvmlDeviceGetUUID", mig_at))?;
    let mig_at = || format!("{uuid} (MIG device {index} of {at})");
    let name = device
        .name()
        .map_err(call_error(lib, "nvmlDeviceGetName", mig_at))?;
    let memory_mib = device
        .memory_info()
        .map_err(call_error(lib, "nvmlDeviceGetMemoryInfo_v2", mig_at))?
        .total
        / MIB;
    let gpu_instance_id =
        ids.gpu_instance_id()
            .map_err(call_error(lib, "nvmlDeviceGetGpuInstanceId", mig_at))?;
    let compute_instance_id = ids.compute_instance_id().map_err(call_error(
        lib,
        "nvmlDeviceGetComputeInstanceId",
        mig_at,
    ))?;
    let profile = profile_from_name(&name)
        .ok_or_else(|| InventoryError::MigName {
            uuid: uuid.clone(),
            name: name.clone(),
        })?
        .to_string();
    Ok(NvmlMigDevice {
        index,
        uuid,
        name,
        profile,
        gpu_instance_id,
        compute_instance_id,
        memory_mib,
    })
}

/// Turn an NVML error of one call into an [`InventoryError`] naming the call and its target.
fn call_error<'a, F: FnOnce() -> String + 'a>(
    library: &'a Path,
    call: &'static str,
    target: F,
) -> impl FnOnce(NvmlError) -> InventoryError + 'a {
    move |e| InventoryError::NvmlCall {
        library: library.to_path_buf(),
        call,
        target: target(),
        message: e.to_string(),
    }
}

#[cfg(test)]
impl NvmlInfo {
    /// What NVML answers for a simulated topology (the simulator's own naming), for tests.
    pub(crate) fn simulated(t: &migcage_topology::Topology) -> NvmlInfo {
        NvmlInfo {
            driver_version: t.driver_version.clone(),
            cuda_driver_version: t.cuda_driver_version,
            gpus: t
                .gpus
                .iter()
                .map(|g| NvmlGpu {
                    index: g.index,
                    minor: g.minor,
                    uuid: g.uuid.clone(),
                    name: g.model.name.to_string(),
                    pci_bus_id: g.pci_bus_id.clone(),
                    mig_enabled: g.mig,
                    memory_mib: g.model.memory_mib,
                    mig_devices: g
                        .mig_devices()
                        .iter()
                        .map(|m| NvmlMigDevice {
                            index: m.index,
                            uuid: m.ci.uuid.clone(),
                            name: m.name(),
                            profile: m.profile_name(),
                            gpu_instance_id: m.gi.id,
                            compute_instance_id: m.ci.id,
                            memory_mib: m.gi.profile.memory_mib,
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn profile_is_the_part_after_mig() {
        assert_eq!(
            profile_from_name("NVIDIA A100-SXM4-40GB MIG 1g.5gb"),
            Some("1g.5gb")
        );
        assert_eq!(
            profile_from_name("NVIDIA H100 80GB HBM3 MIG 1g.10gb+me"),
            Some("1g.10gb+me")
        );
        assert_eq!(
            profile_from_name("NVIDIA A100-SXM4-40GB MIG 1c.3g.20gb"),
            Some("1c.3g.20gb")
        );
        assert_eq!(profile_from_name("NVIDIA A100-SXM4-40GB"), None);
        assert_eq!(profile_from_name("NVIDIA A100-SXM4-40GB MIG "), None);
    }

    #[test]
    fn missing_library_names_the_path_and_the_fix() {
        let e = read(Path::new("/nonexistent/libnvidia-ml.so.1")).unwrap_err();
        let s = e.to_string();
        assert!(matches!(e, InventoryError::NvmlInit { .. }), "{s}");
        assert!(
            s.contains("/nonexistent/libnvidia-ml.so.1") && s.contains("nvml_library"),
            "{s}"
        );
        assert!(!s.contains('\n'), "{s}");
    }

    #[test]
    fn call_errors_name_call_and_target() {
        let lib = PathBuf::from("/x/libnvidia-ml.so.1");
        let e = call_error(&lib, "nvmlDeviceGetUUID", || "GPU 3".to_string())(NvmlError::GpuLost);
        let s = e.to_string();
        assert!(
            s.contains("nvmlDeviceGetUUID")
                && s.contains("GPU 3")
                && s.contains("/x/libnvidia-ml.so.1"),
            "{s}"
        );
    }
}
