//! MIG management: MIG mode, placements, remaining capacity, and creating and destroying GPU
//! and compute instances, with `nvml.h`'s signatures and the codes a driver returns
//! (`INSUFFICIENT_RESOURCES` when an instance does not fit, `IN_USE` for a GPU instance that
//! still has compute instances, `NOT_SUPPORTED` with MIG disabled). Changes persist across
//! processes and show in the simulated driver tree (see [`crate::persist`]).
//!
//! Choices where `nvml.h` leaves it open: a MIG mode change takes effect at once (a real GPU
//! needs a reset, so its pending mode differs until then); a MIG device handle where a GPU is
//! needed is `INVALID_ARGUMENT`; inside a container every change is `NO_PERMISSION`.

use std::ffi::c_uint;

use migcage_topology::{ci_placements, ci_remaining_capacity, placement, GiProfile};
use nvml_wrapper_sys::bindings::{
    nvmlComputeInstancePlacement_t, nvmlComputeInstance_t, nvmlDevice_t,
    nvmlGpuInstancePlacement_t, nvmlGpuInstance_t, nvmlReturn_t, NVML_DEVICE_MIG_DISABLE,
    NVML_DEVICE_MIG_ENABLE, NVML_GPU_INSTANCE_PROFILE_COUNT,
};

use super::{call, handle_addr, handle_ptr, put, put_all};
use crate::describe::ci_profile_slices;
use crate::errors::{self, NvResult};
use crate::global;
use crate::handles::{handle, Key};
use crate::state::Sim;

/// A GPU handle's visible index, its position in the topology and its UUID.
fn gpu_of(sim: &Sim, device: nvmlDevice_t) -> NvResult<(usize, usize, String)> {
    let g = sim.physical_gpu(handle_addr(device))?;
    Ok((g, sim.view(g).topo, sim.gpu(g).uuid.clone()))
}

/// A profile of the GPU's model, MIG mode aside (placements are listed "regardless of whether
/// MIG is enabled or not", `nvml.h`).
fn model_profile(sim: &Sim, g: usize, profile: c_uint) -> NvResult<&'static GiProfile> {
    if profile >= NVML_GPU_INSTANCE_PROFILE_COUNT {
        return Err(errors::INVALID_ARGUMENT);
    }
    sim.gpu(g)
        .model
        .gi_profile_by_id(profile)
        .ok_or(errors::NOT_SUPPORTED)
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceSetMigMode(
    device: nvmlDevice_t,
    mode: c_uint,
    activation_status: *mut nvmlReturn_t,
) -> nvmlReturn_t {
    call("nvmlDeviceSetMigMode", |sim| {
        let (_, topo, _) = gpu_of(sim, device)?;
        let enabled = match mode {
            NVML_DEVICE_MIG_ENABLE => true,
            NVML_DEVICE_MIG_DISABLE => false,
            _ => return Err(errors::INVALID_ARGUMENT),
        };
        if activation_status.is_null() {
            return Err(errors::INVALID_ARGUMENT);
        }
        global::mutate(|t| t.set_mig_mode(topo, enabled).map_err(errors::from_mig))?;
        // SAFETY: out-pointer valid for an nvmlReturn_t (NVML contract).
        unsafe { put(activation_status, errors::SUCCESS) }
    })
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetGpuInstancePossiblePlacements_v2(
    device: nvmlDevice_t,
    profile_id: c_uint,
    placements: *mut nvmlGpuInstancePlacement_t,
    count: *mut c_uint,
) -> nvmlReturn_t {
    call("nvmlDeviceGetGpuInstancePossiblePlacements_v2", |sim| {
        let (g, _, _) = gpu_of(sim, device)?;
        let p = model_profile(sim, g, profile_id)?;
        if count.is_null() {
            return Err(errors::INVALID_ARGUMENT);
        }
        let all: Vec<nvmlGpuInstancePlacement_t> = p
            .placements()
            .iter()
            .map(|pl| nvmlGpuInstancePlacement_t {
                start: pl.start,
                size: pl.size,
            })
            .collect();
        if !placements.is_null() {
            // SAFETY: a non-NULL array holds every placement of the profile (NVML contract).
            unsafe { put_all(placements, &all) }?;
        }
        // SAFETY: out-pointer valid for a c_uint (NVML contract).
        unsafe { put(count, all.len() as c_uint) }
    })
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetGpuInstanceRemainingCapacity(
    device: nvmlDevice_t,
    profile_id: c_uint,
    count: *mut c_uint,
) -> nvmlReturn_t {
    call("nvmlDeviceGetGpuInstanceRemainingCapacity", |sim| {
        let (g, _, _) = gpu_of(sim, device)?;
        let p = model_profile(sim, g, profile_id)?;
        if !sim.gpu(g).mig {
            return Err(errors::NOT_SUPPORTED);
        }
        let left = placement::remaining_capacity(p, &sim.gpu(g).placed());
        // SAFETY: out-pointer valid for a c_uint (NVML contract).
        unsafe { put(count, left) }
    })
}

/// Both GPU instance creates: at `start`, or where the placement rule puts it.
fn create_gi(
    sim: &Sim,
    device: nvmlDevice_t,
    profile_id: c_uint,
    start: Option<nvmlGpuInstancePlacement_t>,
    out: *mut nvmlGpuInstance_t,
) -> NvResult<()> {
    let (g, topo, uuid) = gpu_of(sim, device)?;
    let p = model_profile(sim, g, profile_id)?;
    if out.is_null() || start.is_some_and(|s| s.size != p.placement_size) {
        return Err(errors::INVALID_ARGUMENT);
    }
    let id = global::mutate(|t| {
        t.create_gpu_instance(topo, profile_id, start.map(|s| s.start))
            .map_err(errors::from_mig)
    })?;
    // SAFETY: out-pointer valid for a handle (NVML contract of the callers).
    unsafe { put(out, handle_ptr(handle(Key::Gi(uuid, id)))) }
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceCreateGpuInstance(
    device: nvmlDevice_t,
    profile_id: c_uint,
    gpu_instance: *mut nvmlGpuInstance_t,
) -> nvmlReturn_t {
    call("nvmlDeviceCreateGpuInstance", |sim| {
        create_gi(sim, device, profile_id, None, gpu_instance)
    })
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceCreateGpuInstanceWithPlacement(
    device: nvmlDevice_t,
    profile_id: c_uint,
    placement: *const nvmlGpuInstancePlacement_t,
    gpu_instance: *mut nvmlGpuInstance_t,
) -> nvmlReturn_t {
    call("nvmlDeviceCreateGpuInstanceWithPlacement", |sim| {
        if placement.is_null() {
            return Err(errors::INVALID_ARGUMENT);
        }
        // SAFETY: non-NULL and valid for a read of a placement (NVML contract).
        let at = unsafe { placement.read_unaligned() };
        create_gi(sim, device, profile_id, Some(at), gpu_instance)
    })
}

#[no_mangle]
pub unsafe extern "C" fn nvmlGpuInstanceDestroy(gpu_instance: nvmlGpuInstance_t) -> nvmlReturn_t {
    call("nvmlGpuInstanceDestroy", |sim| {
        let (g, gi) = sim.gpu_instance(handle_addr(gpu_instance))?;
        let (topo, id) = (sim.view(g).topo, sim.gi(g, gi).id);
        global::mutate(|t| t.destroy_gpu_instance(topo, id).map_err(errors::from_mig))
    })
}

/// A GPU instance handle's GPU position, UUID, id and compute slices of `profile_id`'s compute
/// instances (which must fit the GPU instance, else `NOT_SUPPORTED`).
fn ci_target(
    sim: &Sim,
    gpu_instance: nvmlGpuInstance_t,
    profile_id: c_uint,
) -> NvResult<(usize, usize, u32, u32)> {
    let (g, gi) = sim.gpu_instance(handle_addr(gpu_instance))?;
    let inst = sim.gi(g, gi);
    let slices = ci_profile_slices(profile_id).ok_or(errors::INVALID_ARGUMENT)?;
    if slices > inst.profile.slices {
        return Err(errors::NOT_SUPPORTED);
    }
    Ok((g, gi, inst.id, slices))
}

#[no_mangle]
pub unsafe extern "C" fn nvmlGpuInstanceGetComputeInstanceRemainingCapacity(
    gpu_instance: nvmlGpuInstance_t,
    profile_id: c_uint,
    count: *mut c_uint,
) -> nvmlReturn_t {
    call(
        "nvmlGpuInstanceGetComputeInstanceRemainingCapacity",
        |sim| {
            let (g, gi, _, slices) = ci_target(sim, gpu_instance, profile_id)?;
            // SAFETY: out-pointer valid for a c_uint (NVML contract).
            unsafe { put(count, ci_remaining_capacity(sim.gi(g, gi), slices)) }
        },
    )
}

#[no_mangle]
pub unsafe extern "C" fn nvmlGpuInstanceGetComputeInstancePossiblePlacements(
    gpu_instance: nvmlGpuInstance_t,
    profile_id: c_uint,
    placements: *mut nvmlComputeInstancePlacement_t,
    count: *mut c_uint,
) -> nvmlReturn_t {
    call(
        "nvmlGpuInstanceGetComputeInstancePossiblePlacements",
        |sim| {
            let (g, gi, _, slices) = ci_target(sim, gpu_instance, profile_id)?;
            if count.is_null() {
                return Err(errors::INVALID_ARGUMENT);
            }
            let all: Vec<nvmlComputeInstancePlacement_t> =
                ci_placements(sim.gi(g, gi).profile.slices, slices)
                    .into_iter()
                    .map(|start| nvmlComputeInstancePlacement_t {
                        start,
                        size: slices,
                    })
                    .collect();
            if !placements.is_null() {
                // SAFETY: a non-NULL array holds every placement of the profile (NVML contract).
                unsafe { put_all(placements, &all) }?;
            }
            // SAFETY: out-pointer valid for a c_uint (NVML contract).
            unsafe { put(count, all.len() as c_uint) }
        },
    )
}

/// Both compute instance creates.
fn create_ci(
    sim: &Sim,
    gpu_instance: nvmlGpuInstance_t,
    profile_id: c_uint,
    start: Option<nvmlComputeInstancePlacement_t>,
    out: *mut nvmlComputeInstance_t,
) -> NvResult<()> {
    let (g, _, gi_id, slices) = ci_target(sim, gpu_instance, profile_id)?;
    if out.is_null() || start.is_some_and(|s| s.size != slices) {
        return Err(errors::INVALID_ARGUMENT);
    }
    let (topo, uuid) = (sim.view(g).topo, sim.gpu(g).uuid.clone());
    let id = global::mutate(|t| {
        t.create_compute_instance(topo, gi_id, slices, start.map(|s| s.start))
            .map_err(errors::from_mig)
    })?;
    // SAFETY: out-pointer valid for a handle (NVML contract of the callers).
    unsafe { put(out, handle_ptr(handle(Key::Ci(uuid, gi_id, id)))) }
}

#[no_mangle]
pub unsafe extern "C" fn nvmlGpuInstanceCreateComputeInstance(
    gpu_instance: nvmlGpuInstance_t,
    profile_id: c_uint,
    compute_instance: *mut nvmlComputeInstance_t,
) -> nvmlReturn_t {
    call("nvmlGpuInstanceCreateComputeInstance", |sim| {
        create_ci(sim, gpu_instance, profile_id, None, compute_instance)
    })
}

#[no_mangle]
pub unsafe extern "C" fn nvmlGpuInstanceCreateComputeInstanceWithPlacement(
    gpu_instance: nvmlGpuInstance_t,
    profile_id: c_uint,
    placement: *const nvmlComputeInstancePlacement_t,
    compute_instance: *mut nvmlComputeInstance_t,
) -> nvmlReturn_t {
    call("nvmlGpuInstanceCreateComputeInstanceWithPlacement", |sim| {
        if placement.is_null() {
            return Err(errors::INVALID_ARGUMENT);
        }
        // SAFETY: non-NULL and valid for a read of a placement (NVML contract).
        let at = unsafe { placement.read_unaligned() };
        create_ci(sim, gpu_instance, profile_id, Some(at), compute_instance)
    })
}

#[no_mangle]
pub unsafe extern "C" fn nvmlComputeInstanceDestroy(
    compute_instance: nvmlComputeInstance_t,
) -> nvmlReturn_t {
    call("nvmlComputeInstanceDestroy", |sim| {
        let (g, gi, ci) = sim.compute_instance(handle_addr(compute_instance))?;
        let (topo, gi_id, ci_id) = (sim.view(g).topo, sim.gi(g, gi).id, sim.ci(g, gi, ci).id);
        global::mutate(|t| {
            t.destroy_compute_instance(topo, gi_id, ci_id)
                .map_err(errors::from_mig)
        })
    })
}
