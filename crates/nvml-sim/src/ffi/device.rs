//! Device enumeration and per-device queries (GPUs and MIG devices alike where NVML allows).

use std::ffi::{c_char, c_int, c_uint};

use nvml_wrapper_sys::bindings::{
    nvmlBrandType_enum_NVML_BRAND_NVIDIA, nvmlBrandType_t, nvmlDeviceArchitecture_t, nvmlDevice_t,
    nvmlMemory_t, nvmlMemory_v2_t, nvmlPciInfo_t, nvmlReturn_t,
};

use super::{call, get_str, get_version, handle_addr, handle_ptr, put, put_str};
use crate::describe::{struct_version, PciAddr};
use crate::errors::{self, NvResult};
use crate::state::{Dev, Sim};

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetCount_v2(device_count: *mut c_uint) -> nvmlReturn_t {
    call("nvmlDeviceGetCount_v2", |sim| {
        // SAFETY: out-pointer valid for a c_uint (NVML contract).
        unsafe { put(device_count, sim.gpu_count()) }
    })
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetCount(device_count: *mut c_uint) -> nvmlReturn_t {
    call("nvmlDeviceGetCount", |sim| {
        // SAFETY: out-pointer valid for a c_uint (NVML contract).
        unsafe { put(device_count, sim.gpu_count()) }
    })
}

/// Hand a looked-up handle out, then report the lookup's status (`GPU_IS_LOST` for a lost GPU
/// still writes the handle, so that a client that carries on gets `GPU_IS_LOST` everywhere).
///
/// # Safety
/// `device` is NULL or valid for a write of a handle.
unsafe fn hand_out(device: *mut nvmlDevice_t, found: (usize, NvResult<()>)) -> NvResult<()> {
    // SAFETY: forwarded contract.
    unsafe { put(device, handle_ptr(found.0)) }?;
    found.1
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetHandleByIndex_v2(
    index: c_uint,
    device: *mut nvmlDevice_t,
) -> nvmlReturn_t {
    call("nvmlDeviceGetHandleByIndex_v2", |sim| {
        let found = sim.by_index(index)?;
        // SAFETY: out-pointer valid for a handle (NVML contract).
        unsafe { hand_out(device, found) }
    })
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetHandleByIndex(
    index: c_uint,
    device: *mut nvmlDevice_t,
) -> nvmlReturn_t {
    call("nvmlDeviceGetHandleByIndex", |sim| {
        let found = sim.by_index(index)?;
        // SAFETY: out-pointer valid for a handle (NVML contract).
        unsafe { hand_out(device, found) }
    })
}

/// `GPU-...` and `MIG-...` UUIDs, as on the real library.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetHandleByUUID(
    uuid: *const c_char,
    device: *mut nvmlDevice_t,
) -> nvmlReturn_t {
    call("nvmlDeviceGetHandleByUUID", |sim| {
        // SAFETY: NUL-terminated input string (NVML contract).
        let uuid = unsafe { get_str(uuid) }?;
        let found = sim.by_uuid(uuid.to_str().map_err(|_| errors::NOT_FOUND)?)?;
        // SAFETY: out-pointer valid for a handle (NVML contract).
        unsafe { hand_out(device, found) }
    })
}

/// # Safety
/// `bus_id` is NULL or NUL-terminated; `device` is NULL or valid for a write of a handle.
unsafe fn by_bus_id(sim: &Sim, bus_id: *const c_char, device: *mut nvmlDevice_t) -> NvResult<()> {
    // SAFETY: NUL-terminated input string (NVML contract of the exported callers).
    let bus_id = unsafe { get_str(bus_id) }?;
    let found = sim.by_pci_bus_id(bus_id.to_str().map_err(|_| errors::INVALID_ARGUMENT)?)?;
    // SAFETY: out-pointer valid for a handle (NVML contract of the exported callers).
    unsafe { hand_out(device, found) }
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetHandleByPciBusId_v2(
    pci_bus_id: *const c_char,
    device: *mut nvmlDevice_t,
) -> nvmlReturn_t {
    // SAFETY: the arguments are the caller's, under NVML's contract.
    call("nvmlDeviceGetHandleByPciBusId_v2", |sim| unsafe {
        by_bus_id(sim, pci_bus_id, device)
    })
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetHandleByPciBusId(
    pci_bus_id: *const c_char,
    device: *mut nvmlDevice_t,
) -> nvmlReturn_t {
    // SAFETY: the arguments are the caller's, under NVML's contract.
    call("nvmlDeviceGetHandleByPciBusId", |sim| unsafe {
        by_bus_id(sim, pci_bus_id, device)
    })
}

/// GPU index over what is visible. A MIG device has no NVML index: `NOT_SUPPORTED` (MIG
/// devices are reached through their parent and `nvmlDeviceGetMigDeviceHandleByIndex`).
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetIndex(
    device: nvmlDevice_t,
    index: *mut c_uint,
) -> nvmlReturn_t {
    call("nvmlDeviceGetIndex", |sim| {
        match sim.device(handle_addr(device))? {
            // SAFETY: out-pointer valid for a c_uint (NVML contract).
            Dev::Gpu(g) => unsafe { put(index, g as c_uint) },
            // nvml.h: for a MIG device handle, the MIG device's index within its parent.
            // SAFETY: out-pointer valid for a c_uint (NVML contract).
            Dev::Mig(_, m) => unsafe { put(index, m as c_uint) },
        }
    })
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetUUID(
    device: nvmlDevice_t,
    uuid: *mut c_char,
    length: c_uint,
) -> nvmlReturn_t {
    call("nvmlDeviceGetUUID", |sim| {
        let value = match sim.device(handle_addr(device))? {
            Dev::Gpu(g) => sim.gpu(g).uuid.clone(),
            Dev::Mig(g, m) => sim.mig(g, m).ci.uuid.clone(),
        };
        // SAFETY: `uuid` holds `length` bytes (NVML contract).
        unsafe { put_str(uuid, length, &value) }
    })
}

/// `NVIDIA A100-SXM4-40GB`, or `NVIDIA A100-SXM4-40GB MIG 1g.5gb` for a MIG device.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetName(
    device: nvmlDevice_t,
    name: *mut c_char,
    length: c_uint,
) -> nvmlReturn_t {
    call("nvmlDeviceGetName", |sim| {
        let value = match sim.device(handle_addr(device))? {
            Dev::Gpu(g) => sim.gpu(g).model.name.to_string(),
            Dev::Mig(g, m) => sim.mig(g, m).name(),
        };
        // SAFETY: `name` holds `length` bytes (NVML contract).
        unsafe { put_str(name, length, &value) }
    })
}

/// Data-center GPUs report `NVML_BRAND_NVIDIA` ("Product Brand: NVIDIA" in nvidia-smi -q).
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetBrand(
    device: nvmlDevice_t,
    brand: *mut nvmlBrandType_t,
) -> nvmlReturn_t {
    call("nvmlDeviceGetBrand", |sim| {
        sim.device(handle_addr(device))?;
        // SAFETY: out-pointer valid for an nvmlBrandType_t (NVML contract).
        unsafe { put(brand, nvmlBrandType_enum_NVML_BRAND_NVIDIA) }
    })
}

/// `/dev/nvidia<minor>`. A MIG device has no device node of its own; the real library answers
/// `NOT_SUPPORTED` and clients take the parent's minor.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetMinorNumber(
    device: nvmlDevice_t,
    minor: *mut c_uint,
) -> nvmlReturn_t {
    call("nvmlDeviceGetMinorNumber", |sim| {
        match sim.device(handle_addr(device))? {
            // SAFETY: out-pointer valid for a c_uint (NVML contract).
            Dev::Gpu(g) => unsafe { put(minor, sim.gpu(g).minor) },
            Dev::Mig(..) => Err(errors::NOT_SUPPORTED),
        }
    })
}

/// PCI information of a GPU. A MIG device is not a PCI function: `NOT_SUPPORTED` (the choice
/// here; clients that want the bus id go through the parent handle).
///
/// # Safety
/// `out` is NULL or valid for a write of an `nvmlPciInfo_t`.
unsafe fn pci_info(sim: &Sim, device: nvmlDevice_t, out: *mut nvmlPciInfo_t) -> NvResult<()> {
    let g = match sim.device(handle_addr(device))? {
        Dev::Gpu(g) => g,
        Dev::Mig(..) => return Err(errors::NOT_SUPPORTED),
    };
    let gpu = sim.gpu(g);
    let addr = PciAddr::parse(&gpu.pci_bus_id).ok_or(errors::UNKNOWN)?;
    let mut info = nvmlPciInfo_t {
        busIdLegacy: [0; 16],
        domain: addr.domain,
        bus: addr.bus,
        device: addr.device,
        pciDeviceId: gpu.model.pci_device_id,
        pciSubSystemId: gpu.model.pci_subsystem_id,
        busId: [0; 32],
    };
    super::fill(&mut info.busIdLegacy, &addr.bus_id_legacy());
    super::fill(&mut info.busId, &addr.bus_id());
    // SAFETY: out-pointer valid for an nvmlPciInfo_t (NVML contract of the exported callers).
    unsafe { put(out, info) }
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetPciInfo_v3(
    device: nvmlDevice_t,
    pci: *mut nvmlPciInfo_t,
) -> nvmlReturn_t {
    // SAFETY: `pci` is the caller's, under NVML's contract.
    call("nvmlDeviceGetPciInfo_v3", |sim| unsafe {
        pci_info(sim, device, pci)
    })
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetPciInfo_v2(
    device: nvmlDevice_t,
    pci: *mut nvmlPciInfo_t,
) -> nvmlReturn_t {
    // SAFETY: `pci` is the caller's, under NVML's contract.
    call("nvmlDeviceGetPciInfo_v2", |sim| unsafe {
        pci_info(sim, device, pci)
    })
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetPciInfo(
    device: nvmlDevice_t,
    pci: *mut nvmlPciInfo_t,
) -> nvmlReturn_t {
    // SAFETY: `pci` is the caller's, under NVML's contract.
    call("nvmlDeviceGetPciInfo", |sim| unsafe {
        pci_info(sim, device, pci)
    })
}

/// Framebuffer bytes: the whole GPU's, or the GPU instance's for a MIG device (compute instances
/// of one GPU instance share its memory). Nothing runs on a simulated GPU, so all of it is free.
fn memory_bytes(sim: &Sim, device: nvmlDevice_t) -> NvResult<u64> {
    let mib = match sim.device(handle_addr(device))? {
        Dev::Gpu(g) => sim.gpu(g).model.memory_mib,
        Dev::Mig(g, m) => sim.mig(g, m).gi.profile.memory_mib,
    };
    Ok(mib << 20)
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetMemoryInfo(
    device: nvmlDevice_t,
    memory: *mut nvmlMemory_t,
) -> nvmlReturn_t {
    call("nvmlDeviceGetMemoryInfo", |sim| {
        let total = memory_bytes(sim, device)?;
        // SAFETY: out-pointer valid for an nvmlMemory_t (NVML contract).
        unsafe {
            put(
                memory,
                nvmlMemory_t {
                    total,
                    free: total,
                    used: 0,
                },
            )
        }
    })
}

/// Versioned: the caller sets `version` to `nvmlMemory_v2` (`sizeof | 2 << 24`).
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetMemoryInfo_v2(
    device: nvmlDevice_t,
    memory: *mut nvmlMemory_v2_t,
) -> nvmlReturn_t {
    call("nvmlDeviceGetMemoryInfo_v2", |sim| {
        let total = memory_bytes(sim, device)?;
        // SAFETY: `memory` is NULL or a readable nvmlMemory_v2_t (NVML contract).
        let version = unsafe { get_version(memory) }?;
        if version != struct_version(size_of::<nvmlMemory_v2_t>(), 2) {
            return Err(errors::ARGUMENT_VERSION_MISMATCH);
        }
        let value = nvmlMemory_v2_t {
            version,
            total,
            reserved: 0,
            free: total,
            used: 0,
        };
        // SAFETY: out-pointer valid for an nvmlMemory_v2_t (NVML contract).
        unsafe { put(memory, value) }
    })
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetArchitecture(
    device: nvmlDevice_t,
    arch: *mut nvmlDeviceArchitecture_t,
) -> nvmlReturn_t {
    call("nvmlDeviceGetArchitecture", |sim| {
        let (Dev::Gpu(g) | Dev::Mig(g, _)) = sim.device(handle_addr(device))?;
        // SAFETY: out-pointer valid for an nvmlDeviceArchitecture_t (NVML contract).
        unsafe { put(arch, sim.gpu(g).model.architecture) }
    })
}

/// The parent's compute capability, for MIG devices too (CUDA reports the same on them).
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetCudaComputeCapability(
    device: nvmlDevice_t,
    major: *mut c_int,
    minor: *mut c_int,
) -> nvmlReturn_t {
    call("nvmlDeviceGetCudaComputeCapability", |sim| {
        let (Dev::Gpu(g) | Dev::Mig(g, _)) = sim.device(handle_addr(device))?;
        let (ma, mi) = sim.gpu(g).model.compute_capability;
        if major.is_null() || minor.is_null() {
            return Err(errors::INVALID_ARGUMENT);
        }
        // SAFETY: out-pointer valid for a c_int (NVML contract).
        unsafe { put(major, ma) }?;
        // SAFETY: out-pointer valid for a c_int (NVML contract).
        unsafe { put(minor, mi) }
    })
}
