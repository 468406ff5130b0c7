//! MIG: mode, MIG device handles, GPU instances and compute instances.
//!
//! Where `nvml.h` does not say what a call answers for a handle of the wrong kind, the choice
//! made here is written next to the function.

use std::ffi::c_uint;

use migcage_topology::GiProfile;
use nvml_wrapper_sys::bindings::{
    nvmlComputeInstanceInfo_t, nvmlComputeInstancePlacement_t, nvmlComputeInstanceProfileInfo_t,
    nvmlComputeInstanceProfileInfo_v2_t, nvmlComputeInstanceProfileInfo_v3_t,
    nvmlComputeInstance_t, nvmlDeviceAttributes_t, nvmlDevice_t, nvmlGpuInstanceInfo_t,
    nvmlGpuInstancePlacement_t, nvmlGpuInstanceProfileInfo_t, nvmlGpuInstanceProfileInfo_v2_t,
    nvmlGpuInstanceProfileInfo_v3_t, nvmlGpuInstance_t, nvmlReturn_t,
    NVML_COMPUTE_INSTANCE_ENGINE_PROFILE_COUNT, NVML_COMPUTE_INSTANCE_PROFILE_COUNT,
    NVML_DEVICE_MIG_DISABLE, NVML_DEVICE_MIG_ENABLE, NVML_GPU_INSTANCE_PROFILE_COUNT,
};

use super::{call, fill, get_version, handle_addr, handle_ptr, put, put_all};
use crate::describe::{
    ci_multiprocessors, ci_placement_start, ci_profile_id, ci_profile_name, ci_profile_slices,
    struct_version,
};
use crate::errors::{self, NvResult};
use crate::state::{Dev, Sim, Target};

/// Current and pending MIG mode of a GPU (the simulator never has a pending change). A MIG
/// device handle has no MIG mode of its own: `NOT_SUPPORTED` (choice).
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetMigMode(
    device: nvmlDevice_t,
    current_mode: *mut c_uint,
    pending_mode: *mut c_uint,
) -> nvmlReturn_t {
    call("nvmlDeviceGetMigMode", |sim| {
        let g = match sim.device(handle_addr(device))? {
            Dev::Gpu(g) => g,
            Dev::Mig(..) => return Err(errors::NOT_SUPPORTED),
        };
        let mode = if sim.gpu(g).mig {
            NVML_DEVICE_MIG_ENABLE
        } else {
            NVML_DEVICE_MIG_DISABLE
        };
        if current_mode.is_null() || pending_mode.is_null() {
            return Err(errors::INVALID_ARGUMENT);
        }
        // SAFETY: out-pointer valid for a c_uint (NVML contract).
        unsafe { put(current_mode, mode) }?;
        // SAFETY: out-pointer valid for a c_uint (NVML contract).
        unsafe { put(pending_mode, mode) }
    })
}

/// "Returns zero if MIG is not supported or enabled" (`nvml.h`).
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetMaxMigDeviceCount(
    device: nvmlDevice_t,
    count: *mut c_uint,
) -> nvmlReturn_t {
    call("nvmlDeviceGetMaxMigDeviceCount", |sim| {
        let g = sim.physical_gpu(handle_addr(device))?;
        let gpu = sim.gpu(g);
        let max = if gpu.mig {
            gpu.model.max_mig_devices
        } else {
            0
        };
        // SAFETY: out-pointer valid for a c_uint (NVML contract).
        unsafe { put(count, max) }
    })
}

/// MIG device `index` of a GPU, indexes renumbered over the visible MIG devices. An index past
/// the GPU's maximum is `INVALID_ARGUMENT`; an index with no MIG device, or any index on a GPU
/// with MIG disabled, is `NOT_FOUND` (clients probe 0..max and skip `NOT_FOUND`).
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetMigDeviceHandleByIndex(
    device: nvmlDevice_t,
    index: c_uint,
    mig_device: *mut nvmlDevice_t,
) -> nvmlReturn_t {
    call("nvmlDeviceGetMigDeviceHandleByIndex", |sim| {
        let g = sim.physical_gpu(handle_addr(device))?;
        let gpu = sim.gpu(g);
        if !gpu.mig {
            return Err(errors::NOT_FOUND);
        }
        if index >= gpu.model.max_mig_devices {
            return Err(errors::INVALID_ARGUMENT);
        }
        let m = index as usize;
        if m >= sim.view(g).migs.len() {
            return Err(errors::NOT_FOUND);
        }
        // SAFETY: out-pointer valid for a handle (NVML contract).
        unsafe { put(mig_device, handle_ptr(sim.handle(Target::Mig(g, m)))) }
    })
}

/// The parent GPU of a MIG device. Given a GPU handle: `INVALID_ARGUMENT` (choice: it is not a
/// MIG device handle, the one argument this call takes).
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetDeviceHandleFromMigDeviceHandle(
    mig_device: nvmlDevice_t,
    device: *mut nvmlDevice_t,
) -> nvmlReturn_t {
    call(
        "nvmlDeviceGetDeviceHandleFromMigDeviceHandle",
        |sim| match sim.device(handle_addr(mig_device))? {
            // SAFETY: out-pointer valid for a handle (NVML contract).
            Dev::Mig(g, _) => unsafe { put(device, handle_ptr(sim.handle(Target::Gpu(g)))) },
            Dev::Gpu(_) => Err(errors::INVALID_ARGUMENT),
        },
    )
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceIsMigDeviceHandle(
    device: nvmlDevice_t,
    is_mig_device: *mut c_uint,
) -> nvmlReturn_t {
    call("nvmlDeviceIsMigDeviceHandle", |sim| {
        let is_mig = matches!(sim.device(handle_addr(device))?, Dev::Mig(..));
        // SAFETY: out-pointer valid for a c_uint (NVML contract).
        unsafe { put(is_mig_device, c_uint::from(is_mig)) }
    })
}

/// GPU instance id of a MIG device; a GPU handle is `NOT_SUPPORTED` (as `nvml.h` documents for
/// devices that are not MIG devices).
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetGpuInstanceId(
    device: nvmlDevice_t,
    id: *mut c_uint,
) -> nvmlReturn_t {
    call("nvmlDeviceGetGpuInstanceId", |sim| {
        match sim.device(handle_addr(device))? {
            // SAFETY: out-pointer valid for a c_uint (NVML contract).
            Dev::Mig(g, m) => unsafe { put(id, sim.mig(g, m).gi.id) },
            Dev::Gpu(_) => Err(errors::NOT_SUPPORTED),
        }
    })
}

/// Compute instance id of a MIG device; a GPU handle is `NOT_SUPPORTED`.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetComputeInstanceId(
    device: nvmlDevice_t,
    id: *mut c_uint,
) -> nvmlReturn_t {
    call("nvmlDeviceGetComputeInstanceId", |sim| {
        match sim.device(handle_addr(device))? {
            // SAFETY: out-pointer valid for a c_uint (NVML contract).
            Dev::Mig(g, m) => unsafe { put(id, sim.mig(g, m).ci.id) },
            Dev::Gpu(_) => Err(errors::NOT_SUPPORTED),
        }
    })
}

/// "This API currently only supports MIG device handles" (`nvml.h`): a GPU is `NOT_SUPPORTED`.
///
/// # Safety
/// `out` is NULL or valid for a write of an `nvmlDeviceAttributes_t`.
unsafe fn attributes(
    sim: &Sim,
    device: nvmlDevice_t,
    out: *mut nvmlDeviceAttributes_t,
) -> NvResult<()> {
    let (g, m) = match sim.device(handle_addr(device))? {
        Dev::Mig(g, m) => (g, m),
        Dev::Gpu(_) => return Err(errors::NOT_SUPPORTED),
    };
    let mig = sim.mig(g, m);
    let p = mig.gi.profile;
    let value = nvmlDeviceAttributes_t {
        multiprocessorCount: ci_multiprocessors(p, mig.ci.slices),
        sharedCopyEngineCount: p.copy_engines,
        sharedDecoderCount: p.decoders,
        sharedEncoderCount: p.encoders,
        sharedJpegCount: p.jpegs,
        sharedOfaCount: p.ofas,
        gpuInstanceSliceCount: p.slices,
        computeInstanceSliceCount: mig.ci.slices,
        memorySizeMB: p.memory_mib,
    };
    // SAFETY: out-pointer valid for an nvmlDeviceAttributes_t (NVML contract of the callers).
    unsafe { put(out, value) }
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetAttributes_v2(
    device: nvmlDevice_t,
    attributes_out: *mut nvmlDeviceAttributes_t,
) -> nvmlReturn_t {
    // SAFETY: `attributes_out` is the caller's, under NVML's contract.
    call("nvmlDeviceGetAttributes_v2", |sim| unsafe {
        attributes(sim, device, attributes_out)
    })
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetAttributes(
    device: nvmlDevice_t,
    attributes_out: *mut nvmlDeviceAttributes_t,
) -> nvmlReturn_t {
    // SAFETY: `attributes_out` is the caller's, under NVML's contract.
    call("nvmlDeviceGetAttributes", |sim| unsafe {
        attributes(sim, device, attributes_out)
    })
}

/// The GPU instance profile `profile` of a GPU in MIG mode. Out-of-range ids are
/// `INVALID_ARGUMENT`; MIG disabled, a MIG device handle's parent questions, and profiles the
/// model lacks are `NOT_SUPPORTED`, as on the real library.
fn gi_profile(
    sim: &Sim,
    device: nvmlDevice_t,
    profile: c_uint,
) -> NvResult<(usize, &'static GiProfile)> {
    let g = sim.physical_gpu(handle_addr(device))?;
    if profile >= NVML_GPU_INSTANCE_PROFILE_COUNT {
        return Err(errors::INVALID_ARGUMENT);
    }
    let gpu = sim.gpu(g);
    if !gpu.mig {
        return Err(errors::NOT_SUPPORTED);
    }
    Ok((
        g,
        gpu.model
            .gi_profile_by_id(profile)
            .ok_or(errors::NOT_SUPPORTED)?,
    ))
}

fn gi_profile_info(p: &GiProfile) -> nvmlGpuInstanceProfileInfo_t {
    nvmlGpuInstanceProfileInfo_t {
        id: p.id,
        isP2pSupported: 0,
        sliceCount: p.slices,
        instanceCount: p.instance_count,
        multiprocessorCount: p.multiprocessors,
        copyEngineCount: p.copy_engines,
        decoderCount: p.decoders,
        encoderCount: p.encoders,
        jpegCount: p.jpegs,
        ofaCount: p.ofas,
        memorySizeMB: p.memory_mib,
    }
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetGpuInstanceProfileInfo(
    device: nvmlDevice_t,
    profile: c_uint,
    info: *mut nvmlGpuInstanceProfileInfo_t,
) -> nvmlReturn_t {
    call("nvmlDeviceGetGpuInstanceProfileInfo", |sim| {
        let (_, p) = gi_profile(sim, device, profile)?;
        // SAFETY: out-pointer valid for an nvmlGpuInstanceProfileInfo_t (NVML contract).
        unsafe { put(info, gi_profile_info(p)) }
    })
}

/// Versioned: `info->version` is `nvmlGpuInstanceProfileInfo_v2` or `_v3`; the struct written
/// is the one that version names (v3 drops `isP2pSupported` and adds `capabilities`).
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetGpuInstanceProfileInfoV(
    device: nvmlDevice_t,
    profile: c_uint,
    info: *mut nvmlGpuInstanceProfileInfo_v2_t,
) -> nvmlReturn_t {
    call("nvmlDeviceGetGpuInstanceProfileInfoV", |sim| {
        let (_, p) = gi_profile(sim, device, profile)?;
        // SAFETY: `info` is NULL or a readable versioned struct (NVML contract).
        let version = unsafe { get_version(info) }?;
        let v1 = gi_profile_info(p);
        let name = format!("MIG {}", p.name);
        if version == struct_version(size_of::<nvmlGpuInstanceProfileInfo_v2_t>(), 2) {
            let mut v = nvmlGpuInstanceProfileInfo_v2_t {
                version,
                id: v1.id,
                isP2pSupported: v1.isP2pSupported,
                sliceCount: v1.sliceCount,
                instanceCount: v1.instanceCount,
                multiprocessorCount: v1.multiprocessorCount,
                copyEngineCount: v1.copyEngineCount,
                decoderCount: v1.decoderCount,
                encoderCount: v1.encoderCount,
                jpegCount: v1.jpegCount,
                ofaCount: v1.ofaCount,
                memorySizeMB: v1.memorySizeMB,
                name: [0; 96],
            };
            fill(&mut v.name, &name);
            // SAFETY: the caller declared a v2 struct by its version field.
            unsafe { put(info, v) }
        } else if version == struct_version(size_of::<nvmlGpuInstanceProfileInfo_v3_t>(), 3) {
            let mut v = nvmlGpuInstanceProfileInfo_v3_t {
                version,
                id: v1.id,
                sliceCount: v1.sliceCount,
                instanceCount: v1.instanceCount,
                multiprocessorCount: v1.multiprocessorCount,
                copyEngineCount: v1.copyEngineCount,
                decoderCount: v1.decoderCount,
                encoderCount: v1.encoderCount,
                jpegCount: v1.jpegCount,
                ofaCount: v1.ofaCount,
                memorySizeMB: v1.memorySizeMB,
                name: [0; 96],
                capabilities: 0,
            };
            fill(&mut v.name, &name);
            // SAFETY: the caller declared a v3 struct by its version field.
            unsafe { put(info.cast::<nvmlGpuInstanceProfileInfo_v3_t>(), v) }
        } else {
            Err(errors::ARGUMENT_VERSION_MISMATCH)
        }
    })
}

/// The existing GPU instances of a profile. The array must hold the profile's `instanceCount`
/// (NVML's contract); never more than that many are written.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetGpuInstances(
    device: nvmlDevice_t,
    profile_id: c_uint,
    gpu_instances: *mut nvmlGpuInstance_t,
    count: *mut c_uint,
) -> nvmlReturn_t {
    call("nvmlDeviceGetGpuInstances", |sim| {
        let (g, p) = gi_profile(sim, device, profile_id)?;
        if count.is_null() {
            return Err(errors::INVALID_ARGUMENT);
        }
        let handles: Vec<nvmlGpuInstance_t> = sim
            .gis_with_profile(g, profile_id)
            .into_iter()
            .take(p.instance_count as usize)
            .map(|gi| handle_ptr(sim.handle(Target::Gi(g, gi))))
            .collect();
        // SAFETY: the array holds the profile's instanceCount handles (NVML contract).
        unsafe { put_all(gpu_instances, &handles) }?;
        // SAFETY: out-pointer valid for a c_uint (NVML contract).
        unsafe { put(count, handles.len() as c_uint) }
    })
}

/// A GPU instance by id: `NOT_SUPPORTED` with MIG disabled, `NOT_FOUND` when there is none.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetGpuInstanceById(
    device: nvmlDevice_t,
    id: c_uint,
    gpu_instance: *mut nvmlGpuInstance_t,
) -> nvmlReturn_t {
    call("nvmlDeviceGetGpuInstanceById", |sim| {
        let g = sim.physical_gpu(handle_addr(device))?;
        if !sim.gpu(g).mig {
            return Err(errors::NOT_SUPPORTED);
        }
        let gi = sim.gi_by_id(g, id).ok_or(errors::NOT_FOUND)?;
        // SAFETY: out-pointer valid for a handle (NVML contract).
        unsafe { put(gpu_instance, handle_ptr(sim.handle(Target::Gi(g, gi)))) }
    })
}

/// Parent device, id, profile and placement (in memory slices) of a GPU instance.
#[no_mangle]
pub unsafe extern "C" fn nvmlGpuInstanceGetInfo(
    gpu_instance: nvmlGpuInstance_t,
    info: *mut nvmlGpuInstanceInfo_t,
) -> nvmlReturn_t {
    call("nvmlGpuInstanceGetInfo", |sim| {
        let (g, gi) = sim.gpu_instance(handle_addr(gpu_instance))?;
        let inst = sim.gi(g, gi);
        let value = nvmlGpuInstanceInfo_t {
            device: handle_ptr(sim.handle(Target::Gpu(g))),
            id: inst.id,
            profileId: inst.profile.id,
            placement: nvmlGpuInstancePlacement_t {
                start: inst.placement_start,
                size: inst.profile.placement_size,
            },
        };
        // SAFETY: out-pointer valid for an nvmlGpuInstanceInfo_t (NVML contract).
        unsafe { put(info, value) }
    })
}

/// A compute instance profile of a GPU instance: its slices must fit the GPU instance, else
/// `NOT_SUPPORTED`; out-of-range profile or engine profile ids are `INVALID_ARGUMENT`.
fn ci_profile(
    sim: &Sim,
    gpu_instance: nvmlGpuInstance_t,
    profile: c_uint,
    eng_profile: c_uint,
) -> NvResult<nvmlComputeInstanceProfileInfo_t> {
    let (g, gi) = sim.gpu_instance(handle_addr(gpu_instance))?;
    if profile >= NVML_COMPUTE_INSTANCE_PROFILE_COUNT
        || eng_profile >= NVML_COMPUTE_INSTANCE_ENGINE_PROFILE_COUNT
    {
        return Err(errors::INVALID_ARGUMENT);
    }
    let p = sim.gi(g, gi).profile;
    let slices = ci_profile_slices(profile)
        .filter(|s| *s <= p.slices)
        .ok_or(errors::NOT_SUPPORTED)?;
    Ok(nvmlComputeInstanceProfileInfo_t {
        id: profile,
        sliceCount: slices,
        instanceCount: p.slices / slices,
        multiprocessorCount: ci_multiprocessors(p, slices),
        sharedCopyEngineCount: p.copy_engines,
        sharedDecoderCount: p.decoders,
        sharedEncoderCount: p.encoders,
        sharedJpegCount: p.jpegs,
        sharedOfaCount: p.ofas,
    })
}

#[no_mangle]
pub unsafe extern "C" fn nvmlGpuInstanceGetComputeInstanceProfileInfo(
    gpu_instance: nvmlGpuInstance_t,
    profile: c_uint,
    eng_profile: c_uint,
    info: *mut nvmlComputeInstanceProfileInfo_t,
) -> nvmlReturn_t {
    call("nvmlGpuInstanceGetComputeInstanceProfileInfo", |sim| {
        let value = ci_profile(sim, gpu_instance, profile, eng_profile)?;
        // SAFETY: out-pointer valid for an nvmlComputeInstanceProfileInfo_t (NVML contract).
        unsafe { put(info, value) }
    })
}

/// Versioned like `nvmlDeviceGetGpuInstanceProfileInfoV` (v2 or v3 by `info->version`).
#[no_mangle]
pub unsafe extern "C" fn nvmlGpuInstanceGetComputeInstanceProfileInfoV(
    gpu_instance: nvmlGpuInstance_t,
    profile: c_uint,
    eng_profile: c_uint,
    info: *mut nvmlComputeInstanceProfileInfo_v2_t,
) -> nvmlReturn_t {
    call("nvmlGpuInstanceGetComputeInstanceProfileInfoV", |sim| {
        let v1 = ci_profile(sim, gpu_instance, profile, eng_profile)?;
        let (g, gi) = sim.gpu_instance(handle_addr(gpu_instance))?;
        let name = format!(
            "MIG {}",
            ci_profile_name(sim.gi(g, gi).profile, v1.sliceCount)
        );
        // SAFETY: `info` is NULL or a readable versioned struct (NVML contract).
        let version = unsafe { get_version(info) }?;
        if version == struct_version(size_of::<nvmlComputeInstanceProfileInfo_v2_t>(), 2) {
            let mut v = nvmlComputeInstanceProfileInfo_v2_t {
                version,
                id: v1.id,
                sliceCount: v1.sliceCount,
                instanceCount: v1.instanceCount,
                multiprocessorCount: v1.multiprocessorCount,
                sharedCopyEngineCount: v1.sharedCopyEngineCount,
                sharedDecoderCount: v1.sharedDecoderCount,
                sharedEncoderCount: v1.sharedEncoderCount,
                sharedJpegCount: v1.sharedJpegCount,
                sharedOfaCount: v1.sharedOfaCount,
                name: [0; 96],
            };
            fill(&mut v.name, &name);
            // SAFETY: the caller declared a v2 struct by its version field.
            unsafe { put(info, v) }
        } else if version == struct_version(size_of::<nvmlComputeInstanceProfileInfo_v3_t>(), 3) {
            let mut v = nvmlComputeInstanceProfileInfo_v3_t {
                version,
                id: v1.id,
                sliceCount: v1.sliceCount,
                instanceCount: v1.instanceCount,
                multiprocessorCount: v1.multiprocessorCount,
                sharedCopyEngineCount: v1.sharedCopyEngineCount,
                sharedDecoderCount: v1.sharedDecoderCount,
                sharedEncoderCount: v1.sharedEncoderCount,
                sharedJpegCount: v1.sharedJpegCount,
                sharedOfaCount: v1.sharedOfaCount,
                name: [0; 96],
                capabilities: 0,
            };
            fill(&mut v.name, &name);
            // SAFETY: the caller declared a v3 struct by its version field.
            unsafe { put(info.cast::<nvmlComputeInstanceProfileInfo_v3_t>(), v) }
        } else {
            Err(errors::ARGUMENT_VERSION_MISMATCH)
        }
    })
}

/// The existing compute instances of a profile in a GPU instance. The array must hold the
/// profile's `instanceCount` (NVML's contract); never more than that many are written.
#[no_mangle]
pub unsafe extern "C" fn nvmlGpuInstanceGetComputeInstances(
    gpu_instance: nvmlGpuInstance_t,
    profile_id: c_uint,
    compute_instances: *mut nvmlComputeInstance_t,
    count: *mut c_uint,
) -> nvmlReturn_t {
    call("nvmlGpuInstanceGetComputeInstances", |sim| {
        let p = ci_profile(sim, gpu_instance, profile_id, 0)?;
        let (g, gi) = sim.gpu_instance(handle_addr(gpu_instance))?;
        if count.is_null() {
            return Err(errors::INVALID_ARGUMENT);
        }
        let handles: Vec<nvmlComputeInstance_t> = sim
            .cis_with_slices(g, gi, p.sliceCount)
            .into_iter()
            .take(p.instanceCount as usize)
            .map(|ci| handle_ptr(sim.handle(Target::Ci(g, gi, ci))))
            .collect();
        // SAFETY: the array holds the profile's instanceCount handles (NVML contract).
        unsafe { put_all(compute_instances, &handles) }?;
        // SAFETY: out-pointer valid for a c_uint (NVML contract).
        unsafe { put(count, handles.len() as c_uint) }
    })
}

#[no_mangle]
pub unsafe extern "C" fn nvmlGpuInstanceGetComputeInstanceById(
    gpu_instance: nvmlGpuInstance_t,
    id: c_uint,
    compute_instance: *mut nvmlComputeInstance_t,
) -> nvmlReturn_t {
    call("nvmlGpuInstanceGetComputeInstanceById", |sim| {
        let (g, gi) = sim.gpu_instance(handle_addr(gpu_instance))?;
        let ci = sim.ci_by_id(g, gi, id).ok_or(errors::NOT_FOUND)?;
        // SAFETY: out-pointer valid for a handle (NVML contract).
        unsafe {
            put(
                compute_instance,
                handle_ptr(sim.handle(Target::Ci(g, gi, ci))),
            )
        }
    })
}

/// Parent device (the GPU), parent GPU instance, id, profile and placement (compute slices
/// within the GPU instance) of a compute instance.
///
/// # Safety
/// `info` is NULL or valid for a write of an `nvmlComputeInstanceInfo_t`.
unsafe fn ci_info(
    sim: &Sim,
    compute_instance: nvmlComputeInstance_t,
    info: *mut nvmlComputeInstanceInfo_t,
) -> NvResult<()> {
    let (g, gi, ci) = sim.compute_instance(handle_addr(compute_instance))?;
    let inst = sim.ci(g, gi, ci);
    let value = nvmlComputeInstanceInfo_t {
        device: handle_ptr(sim.handle(Target::Gpu(g))),
        gpuInstance: handle_ptr(sim.handle(Target::Gi(g, gi))),
        id: inst.id,
        profileId: ci_profile_id(inst),
        placement: nvmlComputeInstancePlacement_t {
            start: ci_placement_start(sim.gi(g, gi), sim.view(g).gis[gi].cis[ci].pos),
            size: inst.slices,
        },
    };
    // SAFETY: out-pointer valid for an nvmlComputeInstanceInfo_t (NVML contract of the callers).
    unsafe { put(info, value) }
}

#[no_mangle]
pub unsafe extern "C" fn nvmlComputeInstanceGetInfo_v2(
    compute_instance: nvmlComputeInstance_t,
    info: *mut nvmlComputeInstanceInfo_t,
) -> nvmlReturn_t {
    // SAFETY: `info` is the caller's, under NVML's contract.
    call("nvmlComputeInstanceGetInfo_v2", |sim| unsafe {
        ci_info(sim, compute_instance, info)
    })
}

#[no_mangle]
pub unsafe extern "C" fn nvmlComputeInstanceGetInfo(
    compute_instance: nvmlComputeInstance_t,
    info: *mut nvmlComputeInstanceInfo_t,
) -> nvmlReturn_t {
    // SAFETY: `info` is the caller's, under NVML's contract.
    call("nvmlComputeInstanceGetInfo", |sim| unsafe {
        ci_info(sim, compute_instance, info)
    })
}
