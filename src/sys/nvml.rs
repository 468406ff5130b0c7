//! The NVML calls nvml-wrapper does not wrap, made through the symbol table it already loaded
//! (`Nvml::lib`), so that they talk to the one initialized NVML session: the inventory's only
//! raw FFI.

use nvml_wrapper::error::{nvml_sym, nvml_try, NvmlError};
use nvml_wrapper::{Device, Nvml};

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
