//! What reads and changes a GPU's MIG layout: one trait, [`MigDriver`], and its one real
//! implementation over nvml-wrapper, [`NvmlMig`] (the calls nvml-wrapper lacks are
//! [`super::nvml::MigAdmin`]'s). The simulator is just the libnvidia-ml this loads: the tests
//! run this same code against it, and the executor's own tests replace the trait.

use std::path::{Path, PathBuf};

use migcage_topology::models::{ci_profile_id_for_slices, model_by_name, MODELS};
use migcage_topology::{GiProfile, Placement};
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::{Device, Nvml};

use super::nvml::{GiHandle, MigAdmin, MigIds};
use crate::core::mig::{CiState, GiState, GpuLayout};

/// Why NVML could not read or change a layout; one line each.
#[derive(Debug, thiserror::Error)]
pub enum MigError {
    #[error("cannot load NVML from {}: {message}; check nvml_library in the migcage config", library.display())]
    Init { library: PathBuf, message: String },
    #[error("{call} on {target}: {error}; {hint}")]
    Call {
        call: &'static str,
        target: String,
        /// The error's text ([`describe`]).
        error: String,
        hint: &'static str,
    },
    #[error("GPU {gpu} is a {name}, whose MIG profiles migcage does not know (it knows: {known}); migcage mig needs one of those")]
    UnknownModel {
        gpu: u32,
        name: String,
        known: String,
    },
}

/// `NVML_ERROR_INSUFFICIENT_RESOURCES` of nvml.h, which nvml-wrapper 0.13 has no variant for.
const NVML_ERROR_INSUFFICIENT_RESOURCES: u32 = 23;

/// An NVML error's text: nvml-wrapper's, or nvml.h's name where nvml-wrapper has none.
fn describe(e: &NvmlError) -> String {
    match e {
        NvmlError::UnexpectedVariant(NVML_ERROR_INSUFFICIENT_RESOURCES) => {
            "NVML_ERROR_INSUFFICIENT_RESOURCES".to_string()
        }
        e => e.to_string(),
    }
}

/// What to do about an NVML error, by its code.
fn hint(e: &NvmlError) -> &'static str {
    match e {
        NvmlError::UnexpectedVariant(NVML_ERROR_INSUFFICIENT_RESOURCES) => {
            "that placement is taken or the GPU is full; 'migcage mig export' shows the layout"
        }
        NvmlError::InUse => "a process still uses it; stop the container or process first",
        NvmlError::NoPermission => "run migcage as root on the host, not in a container",
        NvmlError::NotSupported => "this GPU or driver does not support it",
        _ => "check the GPU with nvidia-smi",
    }
}

/// Whether a MIG mode change took effect or waits for a GPU reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModeChange {
    Active,
    /// Real hardware: the GPU must be idle and reset before the new mode is current.
    PendingReset,
}

/// The calls `migcage mig` makes; GPUs by NVML index, instances by id.
pub trait MigDriver {
    /// Every GPU's layout, in index order, with no holders (leases are not NVML's).
    fn layouts(&self) -> Result<Vec<GpuLayout>, MigError>;
    fn set_mig_mode(&self, gpu: u32, enabled: bool) -> Result<ModeChange, MigError>;
    /// A GPU instance at `start`: its id.
    fn create_gpu_instance(
        &self,
        gpu: u32,
        profile: &GiProfile,
        start: u32,
    ) -> Result<u32, MigError>;
    /// The compute instance spanning GPU instance `gi` whole: its id.
    fn create_compute_instance(
        &self,
        gpu: u32,
        gi: u32,
        profile: &GiProfile,
    ) -> Result<u32, MigError>;
    fn destroy_compute_instance(&self, gpu: u32, gi: u32, ci: u32) -> Result<(), MigError>;
    fn destroy_gpu_instance(&self, gpu: u32, gi: u32) -> Result<(), MigError>;
    /// What NVML says of `profile` on GPU `gpu`, changing nothing: its possible placements
    /// and its remaining capacity.
    fn capacity(&self, gpu: u32, profile: &GiProfile) -> Result<(Vec<Placement>, u32), MigError>;
}

/// [`MigDriver`] through the NVML library `library` (the real one, or the simulator).
pub struct NvmlMig {
    nvml: Nvml,
}

impl NvmlMig {
    pub fn open(library: &Path) -> Result<NvmlMig, MigError> {
        let nvml = Nvml::builder()
            .lib_path(library.as_os_str())
            .init()
            .map_err(|e| MigError::Init {
                library: library.to_path_buf(),
                message: e.to_string(),
            })?;
        Ok(NvmlMig { nvml })
    }

    fn device(&self, gpu: u32) -> Result<Device<'_>, MigError> {
        self.nvml
            .device_by_index(gpu)
            .map_err(call("nvmlDeviceGetHandleByIndex_v2", || {
                format!("GPU {gpu}")
            }))
    }

    fn layout(&self, index: u32) -> Result<GpuLayout, MigError> {
        let device = self.device(index)?;
        let at = || format!("GPU {index}");
        let uuid = device.uuid().map_err(call("nvmlDeviceGetUUID", at))?;
        let name = device.name().map_err(call("nvmlDeviceGetName", at))?;
        let model = model_by_name(&name).ok_or_else(|| MigError::UnknownModel {
            gpu: index,
            name: name.clone(),
            known: MODELS.iter().map(|m| m.name).collect::<Vec<_>>().join(", "),
        })?;
        let mig_enabled = match device.mig_mode() {
            Ok(m) => m.current == 1,
            Err(NvmlError::NotSupported) => false,
            Err(e) => return Err(call("nvmlDeviceGetMigMode", at)(e)),
        };
        let instances = if mig_enabled {
            self.instances(&device, index, model.gi_profiles)?
        } else {
            Vec::new()
        };
        Ok(GpuLayout {
            index,
            uuid,
            model,
            mig_enabled,
            instances,
        })
    }

    /// The GPU instances of `device`, each with its compute instances (from the MIG devices,
    /// which carry the UUIDs leases name), by id.
    fn instances(
        &self,
        device: &Device<'_>,
        index: u32,
        profiles: &'static [GiProfile],
    ) -> Result<Vec<GiState>, MigError> {
        let at = || format!("GPU {index}");
        let admin = MigAdmin::new(&self.nvml, device);
        let cis = self.mig_devices(device, index)?;
        let mut out = Vec::new();
        for p in profiles {
            let handles = match admin.gpu_instances(p.id, p.instance_count) {
                Ok(h) => h,
                Err(NvmlError::NotSupported) => continue,
                Err(e) => return Err(call("nvmlDeviceGetGpuInstances", at)(e)),
            };
            for h in handles {
                let info = admin
                    .gpu_instance_info(h)
                    .map_err(call("nvmlGpuInstanceGetInfo", at))?;
                out.push(GiState {
                    id: info.id,
                    profile: p,
                    start: info.start,
                    compute_instances: cis
                        .iter()
                        .filter(|(gi, _)| *gi == info.id)
                        .map(|(_, ci)| ci.clone())
                        .collect(),
                    held_by: None,
                });
            }
        }
        out.sort_by_key(|g| g.id);
        Ok(out)
    }

    /// (GPU instance id, compute instance) of every MIG device of `device`.
    fn mig_devices(
        &self,
        device: &Device<'_>,
        index: u32,
    ) -> Result<Vec<(u32, CiState)>, MigError> {
        let at = || format!("GPU {index}");
        let max = device
            .mig_device_count()
            .map_err(call("nvmlDeviceGetMaxMigDeviceCount", at))?;
        let mut out = Vec::new();
        for i in 0..max {
            let mig = match device.mig_device_by_index(i) {
                Ok(d) => d,
                Err(NvmlError::NotFound) => continue,
                Err(e) => return Err(call("nvmlDeviceGetMigDeviceHandleByIndex", at)(e)),
            };
            let Some(ids) = MigIds::of(&self.nvml, &mig) else {
                continue;
            };
            let mig_at = || format!("MIG device {i} of GPU {index}");
            let gi = ids
                .gpu_instance_id()
                .map_err(call("nvmlDeviceGetGpuInstanceId", mig_at))?;
            let id = ids
                .compute_instance_id()
                .map_err(call("nvmlDeviceGetComputeInstanceId", mig_at))?;
            let uuid = mig.uuid().map_err(call("nvmlDeviceGetUUID", mig_at))?;
            out.push((gi, CiState { id, uuid }));
        }
        Ok(out)
    }
}

impl MigDriver for NvmlMig {
    fn layouts(&self) -> Result<Vec<GpuLayout>, MigError> {
        let count = self
            .nvml
            .device_count()
            .map_err(call("nvmlDeviceGetCount_v2", || "the system".into()))?;
        (0..count).map(|i| self.layout(i)).collect()
    }

    fn set_mig_mode(&self, gpu: u32, enabled: bool) -> Result<ModeChange, MigError> {
        let device = self.device(gpu)?;
        let at = || format!("GPU {gpu}");
        device
            .set_mig_mode(enabled)
            .map_err(call("nvmlDeviceSetMigMode", at))?;
        let mode = device
            .mig_mode()
            .map_err(call("nvmlDeviceGetMigMode", at))?;
        Ok(if (mode.current == 1) == enabled {
            ModeChange::Active
        } else {
            ModeChange::PendingReset
        })
    }

    fn create_gpu_instance(
        &self,
        gpu: u32,
        profile: &GiProfile,
        start: u32,
    ) -> Result<u32, MigError> {
        let device = self.device(gpu)?;
        MigAdmin::new(&self.nvml, &device)
            .create_gpu_instance(profile.id, start, profile.placement_size)
            .map_err(call("nvmlDeviceCreateGpuInstanceWithPlacement", || {
                format!("GPU {gpu} ({} at slice {start})", profile.name)
            }))
    }

    fn create_compute_instance(
        &self,
        gpu: u32,
        gi: u32,
        profile: &GiProfile,
    ) -> Result<u32, MigError> {
        let at = || format!("GPU {gpu} GPU instance {gi}");
        let ci_profile = ci_profile_id_for_slices(profile.slices).ok_or(MigError::Call {
            call: "nvmlGpuInstanceCreateComputeInstance",
            target: at(),
            error: format!(
                "no compute instance profile spans {} slices",
                profile.slices
            ),
            hint: "migcage knows no compute instance profile of that size",
        })?;
        self.on_gpu_instance(gpu, gi, at, |admin, h| {
            admin
                .create_compute_instance(h, ci_profile)
                .map_err(call("nvmlGpuInstanceCreateComputeInstance", at))
        })
    }

    fn destroy_compute_instance(&self, gpu: u32, gi: u32, ci: u32) -> Result<(), MigError> {
        let at = || format!("GPU {gpu} GPU instance {gi} compute instance {ci}");
        self.on_gpu_instance(gpu, gi, at, |admin, h| {
            admin
                .destroy_compute_instance(h, ci)
                .map_err(call("nvmlComputeInstanceDestroy", at))
        })
    }

    fn capacity(&self, gpu: u32, profile: &GiProfile) -> Result<(Vec<Placement>, u32), MigError> {
        self.read_capacity(gpu, profile)
    }

    fn destroy_gpu_instance(&self, gpu: u32, gi: u32) -> Result<(), MigError> {
        let at = || format!("GPU {gpu} GPU instance {gi}");
        self.on_gpu_instance(gpu, gi, at, |admin, h| {
            admin
                .destroy_gpu_instance(h)
                .map_err(call("nvmlGpuInstanceDestroy", at))
        })
    }
}

impl NvmlMig {
    fn read_capacity(
        &self,
        gpu: u32,
        profile: &GiProfile,
    ) -> Result<(Vec<Placement>, u32), MigError> {
        let device = self.device(gpu)?;
        let admin = MigAdmin::new(&self.nvml, &device);
        let at = || format!("GPU {gpu} profile {}", profile.name);
        let placements = admin
            .possible_placements(profile.id)
            .map_err(call("nvmlDeviceGetGpuInstancePossiblePlacements_v2", at))?
            .into_iter()
            .map(|(start, size)| Placement { start, size })
            .collect();
        let remaining = admin
            .remaining_capacity(profile.id)
            .map_err(call("nvmlDeviceGetGpuInstanceRemainingCapacity", at))?;
        Ok((placements, remaining))
    }

    /// `f` on GPU instance `gi` of GPU `gpu`, looked up by id (`at` names it in errors).
    fn on_gpu_instance<T>(
        &self,
        gpu: u32,
        gi: u32,
        at: impl Fn() -> String,
        f: impl FnOnce(&MigAdmin<'_, '_>, GiHandle) -> Result<T, MigError>,
    ) -> Result<T, MigError> {
        let device = self.device(gpu)?;
        let admin = MigAdmin::new(&self.nvml, &device);
        let handle = admin
            .gpu_instance_by_id(gi)
            .map_err(call("nvmlDeviceGetGpuInstanceById", at))?;
        f(&admin, handle)
    }
}

/// An NVML error of one call on one target, with what to do about it.
fn call<F: FnOnce() -> String>(
    call: &'static str,
    target: F,
) -> impl FnOnce(NvmlError) -> MigError {
    move |error| MigError::Call {
        call,
        target: target(),
        hint: hint(&error),
        error: describe(&error),
    }
}
