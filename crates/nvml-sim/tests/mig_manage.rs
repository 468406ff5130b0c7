//! MIG management through raw NVML calls (nvml-wrapper's `Nvml::lib()`, which has no wrappers
//! for them): create and destroy GPU and compute instances on `a100-empty`, the codes a driver
//! returns, and the state surviving a shutdown and a new init (it is persisted beside the
//! topology file).
//!
//! One test function: the library state and MIGCAGE_SIM_TOPOLOGY are process-wide.

mod common;

use std::mem::MaybeUninit;

use migcage_topology::Topology;
use nvml_wrapper::Nvml;
use wrapper_sys::bindings::{
    nvmlComputeInstance_t, nvmlDevice_t, nvmlGpuInstancePlacement_t, nvmlGpuInstance_t,
    nvmlReturn_enum_NVML_ERROR_INSUFFICIENT_RESOURCES as INSUFFICIENT_RESOURCES,
    nvmlReturn_enum_NVML_ERROR_INVALID_ARGUMENT as INVALID_ARGUMENT,
    nvmlReturn_enum_NVML_ERROR_IN_USE as IN_USE, nvmlReturn_enum_NVML_SUCCESS as SUCCESS, NvmlLib,
};

const P_1G: u32 = 0;
const P_3G: u32 = 2;
const CI_1SLICE: u32 = 0;
const CI_3SLICE: u32 = 2;

fn create_gi(raw: &NvmlLib, dev: nvmlDevice_t, profile: u32) -> Result<nvmlGpuInstance_t, u32> {
    let mut gi = MaybeUninit::<nvmlGpuInstance_t>::uninit();
    // SAFETY: a live device handle and an out-pointer for one handle.
    match unsafe { raw.nvmlDeviceCreateGpuInstance(dev, profile, gi.as_mut_ptr()) } {
        // SAFETY: SUCCESS wrote the handle.
        SUCCESS => Ok(unsafe { gi.assume_init() }),
        code => Err(code),
    }
}

fn create_ci(raw: &NvmlLib, gi: nvmlGpuInstance_t, profile: u32) -> nvmlComputeInstance_t {
    let mut ci = MaybeUninit::<nvmlComputeInstance_t>::uninit();
    // SAFETY: a live GPU instance handle and an out-pointer for one handle.
    let rc = unsafe { raw.nvmlGpuInstanceCreateComputeInstance(gi, profile, ci.as_mut_ptr()) };
    assert_eq!(rc, SUCCESS);
    // SAFETY: SUCCESS wrote the handle.
    unsafe { ci.assume_init() }
}

fn remaining(raw: &NvmlLib, dev: nvmlDevice_t, profile: u32) -> u32 {
    let mut n = 0;
    // SAFETY: a live device handle and an out-pointer for a count.
    let rc = unsafe { raw.nvmlDeviceGetGpuInstanceRemainingCapacity(dev, profile, &mut n) };
    assert_eq!(rc, SUCCESS);
    n
}

/// MIG devices that exist (`mig_device_count` is the maximum, not what exists).
fn existing_mig_devices(dev: &nvml_wrapper::Device) -> u32 {
    (0..7)
        .filter(|i| dev.mig_device_by_index(*i).is_ok())
        .count() as u32
}

#[test]
fn create_and_destroy_instances_through_raw_nvml() {
    let so = common::cdylib();
    let dir = tempfile::tempdir().unwrap();
    let t = Topology::load("a100-empty").unwrap();
    std::env::set_var(
        "MIGCAGE_SIM_TOPOLOGY",
        common::write_topology(dir.path(), &t),
    );
    let nvml = Nvml::builder().lib_path(so.as_os_str()).init().unwrap();
    let raw = nvml.lib();
    let dev = nvml.device_by_index(0).unwrap();
    // SAFETY: nvml-wrapper's own live handle, used only while `nvml` lives.
    let h = unsafe { dev.handle() };

    let mut placements = [nvmlGpuInstancePlacement_t { start: 0, size: 0 }; 2];
    let mut count = 0;
    // SAFETY: an array of two placements (a 3g.20gb has two) and a count.
    let rc = unsafe {
        raw.nvmlDeviceGetGpuInstancePossiblePlacements_v2(
            h,
            P_3G,
            placements.as_mut_ptr(),
            &mut count,
        )
    };
    assert_eq!((rc, count), (SUCCESS, 2));
    assert_eq!((placements[0].start, placements[1].start), (0, 4));
    assert_eq!(placements[0].size, 4);
    assert_eq!(remaining(raw, h, P_1G), 7);

    // Seven 1g.5gb with their compute instances; the eighth does not fit.
    let gis: Vec<nvmlGpuInstance_t> = (0..7)
        .map(|_| {
            let gi = create_gi(raw, h, P_1G).unwrap();
            create_ci(raw, gi, CI_1SLICE);
            gi
        })
        .collect();
    assert_eq!(create_gi(raw, h, P_1G), Err(INSUFFICIENT_RESOURCES));
    assert_eq!(remaining(raw, h, P_1G), 0);
    assert_eq!(remaining(raw, h, P_3G), 0);
    // SAFETY: a GPU instance handle that still has a compute instance.
    assert_eq!(unsafe { raw.nvmlGpuInstanceDestroy(gis[0]) }, IN_USE);
    // The original device handle still works, and nvml-wrapper sees the MIG devices.
    assert_eq!(existing_mig_devices(&dev), 7);
    for i in 0..7 {
        let mig = dev.mig_device_by_index(i).unwrap();
        assert_eq!(
            mig.index().unwrap(),
            i,
            "nvmlDeviceGetIndex on a MIG handle"
        );
        assert!(mig.uuid().unwrap().starts_with("MIG-"));
    }
    // A placement of the wrong size is refused before anything changes.
    let bad = nvmlGpuInstancePlacement_t { start: 0, size: 1 };
    let mut gi = MaybeUninit::<nvmlGpuInstance_t>::uninit();
    // SAFETY: live handle, a placement and an out-pointer.
    let rc =
        unsafe { raw.nvmlDeviceCreateGpuInstanceWithPlacement(h, P_3G, &bad, gi.as_mut_ptr()) };
    assert_eq!(rc, INVALID_ARGUMENT);
    drop(nvml);
    destroy_all_then_place_a_3g(&so, dir.path());
}

/// After a new init (which reads the persisted state): destroy the seven, then place a 3g.20gb
/// at 4 and check the state file.
fn destroy_all_then_place_a_3g(so: &std::path::Path, dir: &std::path::Path) {
    // A new init reads the persisted state.
    let nvml = Nvml::builder().lib_path(so.as_os_str()).init().unwrap();
    let raw = nvml.lib();
    let dev = nvml.device_by_index(0).unwrap();
    assert_eq!(existing_mig_devices(&dev), 7);
    // SAFETY: nvml-wrapper's own live handle.
    let h = unsafe { dev.handle() };
    for i in 0..7 {
        let mig = dev.mig_device_by_index(0).unwrap();
        let mut gi_id = 0;
        // SAFETY: a live MIG device handle and an out-pointer for an id.
        let rc = unsafe { raw.nvmlDeviceGetGpuInstanceId(mig.handle(), &mut gi_id) };
        assert_eq!(rc, SUCCESS, "{i}");
        let mut gi = MaybeUninit::<nvmlGpuInstance_t>::uninit();
        let mut ci = MaybeUninit::<nvmlComputeInstance_t>::uninit();
        // SAFETY: live handles and out-pointers for one handle each.
        unsafe {
            assert_eq!(
                raw.nvmlDeviceGetGpuInstanceById(h, gi_id, gi.as_mut_ptr()),
                SUCCESS
            );
            let gi = gi.assume_init();
            assert_eq!(
                raw.nvmlGpuInstanceGetComputeInstanceById(gi, 0, ci.as_mut_ptr()),
                SUCCESS
            );
            assert_eq!(raw.nvmlComputeInstanceDestroy(ci.assume_init()), SUCCESS);
            assert_eq!(raw.nvmlGpuInstanceDestroy(gi), SUCCESS);
        }
    }
    assert_eq!(existing_mig_devices(&dev), 0);
    assert_eq!(remaining(raw, h, P_3G), 2);
    // A 3g.20gb at placement 4 and its compute instance.
    let at = nvmlGpuInstancePlacement_t { start: 4, size: 4 };
    let mut gi = MaybeUninit::<nvmlGpuInstance_t>::uninit();
    // SAFETY: live handle, a placement and an out-pointer.
    let rc = unsafe { raw.nvmlDeviceCreateGpuInstanceWithPlacement(h, P_3G, &at, gi.as_mut_ptr()) };
    assert_eq!(rc, SUCCESS);
    // SAFETY: SUCCESS wrote the handle.
    create_ci(raw, unsafe { gi.assume_init() }, CI_3SLICE);
    let state = std::fs::read_to_string(dir.join("nvidia-sim-state.toml")).unwrap();
    let saved = Topology::parse(&state, false, "state").unwrap();
    assert_eq!(saved.gpus[0].gpu_instances.len(), 1);
    assert_eq!(saved.gpus[0].gpu_instances[0].placement_start, 4);
    assert_eq!(saved.gpus[0].gpu_instances[0].profile.name, "3g.20gb");
}
