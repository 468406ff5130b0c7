//! The NVML calls nvml-wrapper does not wrap, made through the symbol table it already loaded
//! (`Nvml::lib`), so that they talk to the one initialized NVML session: the inventory's only
//! raw FFI, and the MIG management calls of `migcage mig` and create-on-demand ([`MigAdmin`]).

use nvml_wrapper::error::{nvml_sym, nvml_try, NvmlError};
use nvml_wrapper::{Device, Nvml};
use nvml_wrapper_sys::bindings::{
    nvmlComputeInstanceInfo_t, nvmlComputeInstance_t, nvmlDevice_t, nvmlGpuInstanceInfo_t,
    nvmlGpuInstancePlacement_t, nvmlGpuInstance_t,
};

/// The two MIG calls nvml-wrapper does not wrap, for one MIG device, made through the symbols
/// nvml-wrapper loaded.
pub struct MigIds<'d, 'n> {
    nvml: &'n Nvml,
    device: &'d Device<'n>,
}

impl<'d, 'n> MigIds<'d, 'n> {
    /// `None` where NVML answered with a null handle: no MIG device at that index.
    pub fn of(nvml: &'n Nvml, device: &'d Device<'n>) -> Option<MigIds<'d, 'n>> {
        // SAFETY: `handle` only copies the raw pointer out to compare it with null.
        let handle = unsafe { device.handle() };
        (!handle.is_null()).then_some(MigIds { nvml, device })
    }

    pub fn gpu_instance_id(&self) -> Result<u32, NvmlError> {
        let sym = nvml_sym(self.nvml.lib().nvmlDeviceGetGpuInstanceId.as_ref())?;
        let mut id = 0;
        // SAFETY: `handle` only copies the raw pointer out; `device` borrows `nvml`, so the NVML
        // session the handle belongs to is alive for the call below.
        let handle = unsafe { self.device.handle() };
        // SAFETY: `handle` is a live MIG device handle of the initialized NVML session; `id` is
        // a valid out-pointer for the duration of the call.
        nvml_try(unsafe { sym(handle, &mut id) })?;
        Ok(id)
    }

    pub fn compute_instance_id(&self) -> Result<u32, NvmlError> {
        let sym = nvml_sym(self.nvml.lib().nvmlDeviceGetComputeInstanceId.as_ref())?;
        let mut id = 0;
        // SAFETY: as in `gpu_instance_id`.
        let handle = unsafe { self.device.handle() };
        // SAFETY: `handle` is a live MIG device handle of the initialized NVML session; `id` is
        // a valid out-pointer for the duration of the call.
        nvml_try(unsafe { sym(handle, &mut id) })?;
        Ok(id)
    }
}

/// A GPU instance handle of the initialized NVML session.
#[derive(Debug, Clone, Copy)]
pub struct GiHandle(nvmlGpuInstance_t);

/// What `nvmlGpuInstanceGetInfo` says: id, profile id, placement start and size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GiInfo {
    pub id: u32,
    pub profile_id: u32,
    pub start: u32,
    pub size: u32,
}

/// The MIG management calls nvml-wrapper does not wrap (GPU instances: list and look up;
/// GPU and compute instances: create and destroy; placements and remaining capacity), on one physical GPU, through the symbols
/// nvml-wrapper loaded. Each `unsafe` block is one NVML call with live handles of the session
/// `device` borrows and valid out-pointers.
pub struct MigAdmin<'d, 'n> {
    nvml: &'n Nvml,
    device: &'d Device<'n>,
}

impl<'d, 'n> MigAdmin<'d, 'n> {
    pub fn new(nvml: &'n Nvml, device: &'d Device<'n>) -> MigAdmin<'d, 'n> {
        MigAdmin { nvml, device }
    }

    fn raw(&self) -> nvmlDevice_t {
        // SAFETY: `handle` only copies the raw pointer out; `device` borrows the live session.
        unsafe { self.device.handle() }
    }

    /// The GPU instances of `profile_id` (at most `max`, the profile's instance count).
    pub fn gpu_instances(&self, profile_id: u32, max: u32) -> Result<Vec<GiHandle>, NvmlError> {
        let sym = nvml_sym(self.nvml.lib().nvmlDeviceGetGpuInstances.as_ref())?;
        let mut handles: Vec<nvmlGpuInstance_t> = vec![std::ptr::null_mut(); max.max(1) as usize];
        let mut count = 0;
        // SAFETY: the array holds `max` handles, the profile's instance count (NVML contract).
        nvml_try(unsafe { sym(self.raw(), profile_id, handles.as_mut_ptr(), &mut count) })?;
        handles.truncate(count as usize);
        Ok(handles.into_iter().map(GiHandle).collect())
    }

    pub fn gpu_instance_info(&self, gi: GiHandle) -> Result<GiInfo, NvmlError> {
        let sym = nvml_sym(self.nvml.lib().nvmlGpuInstanceGetInfo.as_ref())?;
        let mut info = nvmlGpuInstanceInfo_t {
            device: std::ptr::null_mut(),
            id: 0,
            profileId: 0,
            placement: nvmlGpuInstancePlacement_t { start: 0, size: 0 },
        };
        // SAFETY: a GPU instance handle of this session and an out-pointer for its info.
        nvml_try(unsafe { sym(gi.0, &mut info) })?;
        Ok(GiInfo {
            id: info.id,
            profile_id: info.profileId,
            start: info.placement.start,
            size: info.placement.size,
        })
    }

    pub fn gpu_instance_by_id(&self, id: u32) -> Result<GiHandle, NvmlError> {
        let sym = nvml_sym(self.nvml.lib().nvmlDeviceGetGpuInstanceById.as_ref())?;
        let mut gi: nvmlGpuInstance_t = std::ptr::null_mut();
        // SAFETY: a live device handle and an out-pointer for one handle.
        nvml_try(unsafe { sym(self.raw(), id, &mut gi) })?;
        Ok(GiHandle(gi))
    }

    /// `nvmlDeviceCreateGpuInstanceWithPlacement`: the new GPU instance's id.
    pub fn create_gpu_instance(
        &self,
        profile_id: u32,
        start: u32,
        size: u32,
    ) -> Result<u32, NvmlError> {
        let sym = nvml_sym(
            self.nvml
                .lib()
                .nvmlDeviceCreateGpuInstanceWithPlacement
                .as_ref(),
        )?;
        let placement = nvmlGpuInstancePlacement_t { start, size };
        let mut gi: nvmlGpuInstance_t = std::ptr::null_mut();
        // SAFETY: a live device handle, a placement that outlives the call, an out-pointer.
        nvml_try(unsafe { sym(self.raw(), profile_id, &placement, &mut gi) })?;
        Ok(self.gpu_instance_info(GiHandle(gi))?.id)
    }

    /// `nvmlGpuInstanceCreateComputeInstance`: the new compute instance's id.
    pub fn create_compute_instance(
        &self,
        gi: GiHandle,
        ci_profile_id: u32,
    ) -> Result<u32, NvmlError> {
        let create = nvml_sym(
            self.nvml
                .lib()
                .nvmlGpuInstanceCreateComputeInstance
                .as_ref(),
        )?;
        let info = nvml_sym(self.nvml.lib().nvmlComputeInstanceGetInfo_v2.as_ref())?;
        let mut ci: nvmlComputeInstance_t = std::ptr::null_mut();
        // SAFETY: a GPU instance handle of this session and an out-pointer for one handle.
        nvml_try(unsafe { create(gi.0, ci_profile_id, &mut ci) })?;
        // SAFETY: all-zero is a valid value of this plain C struct (pointers and integers).
        let mut out: nvmlComputeInstanceInfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: the compute instance just made and an out-pointer for its info.
        nvml_try(unsafe { info(ci, &mut out) })?;
        Ok(out.id)
    }

    pub fn destroy_compute_instance(&self, gi: GiHandle, ci_id: u32) -> Result<(), NvmlError> {
        let by_id = nvml_sym(
            self.nvml
                .lib()
                .nvmlGpuInstanceGetComputeInstanceById
                .as_ref(),
        )?;
        let destroy = nvml_sym(self.nvml.lib().nvmlComputeInstanceDestroy.as_ref())?;
        let mut ci: nvmlComputeInstance_t = std::ptr::null_mut();
        // SAFETY: a GPU instance handle of this session and an out-pointer for one handle.
        nvml_try(unsafe { by_id(gi.0, ci_id, &mut ci) })?;
        // SAFETY: the compute instance handle just looked up.
        nvml_try(unsafe { destroy(ci) })
    }

    pub fn destroy_gpu_instance(&self, gi: GiHandle) -> Result<(), NvmlError> {
        let sym = nvml_sym(self.nvml.lib().nvmlGpuInstanceDestroy.as_ref())?;
        // SAFETY: a GPU instance handle of this session.
        nvml_try(unsafe { sym(gi.0) })
    }

    /// `nvmlDeviceGetGpuInstanceRemainingCapacity`.
    pub fn remaining_capacity(&self, profile_id: u32) -> Result<u32, NvmlError> {
        let sym = nvml_sym(
            self.nvml
                .lib()
                .nvmlDeviceGetGpuInstanceRemainingCapacity
                .as_ref(),
        )?;
        let mut count = 0;
        // SAFETY: a live device handle and an out-pointer for a count.
        nvml_try(unsafe { sym(self.raw(), profile_id, &mut count) })?;
        Ok(count)
    }

    /// `nvmlDeviceGetGpuInstancePossiblePlacements_v2`: (start, size) of each.
    pub fn possible_placements(&self, profile_id: u32) -> Result<Vec<(u32, u32)>, NvmlError> {
        let sym = nvml_sym(
            self.nvml
                .lib()
                .nvmlDeviceGetGpuInstancePossiblePlacements_v2
                .as_ref(),
        )?;
        let mut count = 0;
        // SAFETY: a NULL array asks for the count only (NVML contract); a valid count pointer.
        nvml_try(unsafe { sym(self.raw(), profile_id, std::ptr::null_mut(), &mut count) })?;
        let mut out = vec![nvmlGpuInstancePlacement_t { start: 0, size: 0 }; count as usize];
        if count > 0 {
            // SAFETY: the array holds the `count` placements NVML said there are.
            nvml_try(unsafe { sym(self.raw(), profile_id, out.as_mut_ptr(), &mut count) })?;
        }
        out.truncate(count as usize);
        Ok(out.into_iter().map(|p| (p.start, p.size)).collect())
    }
}
