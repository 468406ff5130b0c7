//! nvml-wrapper 0.13, unmodified, against the simulated library: what migcage's inventory
//! calls, MIG devices included, plus the raw MIG call it has to make through `Nvml::lib()`
//! (nvml-wrapper 0.13 has no wrapper for `nvmlDeviceGetGpuInstanceId`).
//!
//! One test function: the library state and MIGCAGE_SIM_TOPOLOGY are process-wide.

mod common;

use std::ffi::CStr;

use migcage_topology::Topology;
use nvml_wrapper::Nvml;

#[test]
fn nvml_wrapper_enumerates_every_shipped_topology() {
    let so = common::cdylib();
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "a100-7x1g",
        "h100-mixed",
        "dgx-8x7",
        "a100-nomig",
        "two-gpus-one-mig",
    ] {
        let t = Topology::load(name).unwrap();
        std::env::set_var(
            "MIGCAGE_SIM_TOPOLOGY",
            common::write_topology(dir.path(), &t),
        );
        let nvml = Nvml::builder()
            .lib_path(so.as_os_str())
            .init()
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(nvml.sys_driver_version().unwrap(), t.driver_version);
        assert_eq!(
            nvml.sys_cuda_driver_version().unwrap(),
            t.cuda_driver_version
        );
        assert_eq!(nvml.device_count().unwrap(), t.gpus.len() as u32);
        let raw = nvml.lib();
        for g in &t.gpus {
            let dev = nvml.device_by_index(g.index).unwrap();
            assert_eq!(dev.uuid().unwrap(), g.uuid);
            assert_eq!(dev.name().unwrap(), g.model.name);
            assert_eq!(dev.minor_number().unwrap(), g.minor);
            let pci = dev.pci_info().unwrap();
            assert_eq!(pci.bus_id, common::bus_ids(&g.pci_bus_id).0);
            assert_eq!(pci.pci_device_id, g.model.pci_device_id);
            assert_eq!(pci.pci_sub_system_id, Some(g.model.pci_subsystem_id));
            assert_eq!(dev.memory_info().unwrap().total, g.model.memory_mib << 20);
            let mode = dev.mig_mode().unwrap();
            assert_eq!(
                (mode.current, mode.pending),
                (u32::from(g.mig), u32::from(g.mig))
            );

            for m in g.mig_devices() {
                let mig = dev
                    .mig_device_by_index(m.index)
                    .unwrap_or_else(|e| panic!("{name} gpu {} mig {}: {e}", g.index, m.index));
                assert_eq!(mig.uuid().unwrap(), m.ci.uuid);
                assert_eq!(mig.name().unwrap(), m.name());
                assert_eq!(
                    mig.memory_info().unwrap().total,
                    m.gi.profile.memory_mib << 20
                );
                let mut gi = 0;
                let sym = raw.nvmlDeviceGetGpuInstanceId.as_ref().unwrap();
                // SAFETY: `handle` copies out the pointer of a live MIG device of this session.
                let handle = unsafe { mig.handle() };
                // SAFETY: a live MIG handle and a valid out-pointer.
                assert_eq!(unsafe { sym(handle, &mut gi) }, 0);
                assert_eq!(gi, m.gi.id);
            }
        }
        // By UUID, MIG UUIDs included.
        if let Some(m) = t.mig_devices().first() {
            let d = nvml.device_by_uuid(m.ci.uuid.as_str()).unwrap();
            assert_eq!(d.uuid().unwrap(), m.ci.uuid);
        }
        let e = nvml.device_by_index(t.gpus.len() as u32).unwrap_err();
        assert!(
            matches!(e, nvml_wrapper::error::NvmlError::InvalidArg),
            "{e:?}"
        );
        let sym = raw.nvmlErrorString.as_ref().unwrap();
        // SAFETY: nvmlErrorString returns a static string for any code.
        let s = unsafe { CStr::from_ptr(sym(9)) };
        assert_eq!(s.to_str().unwrap(), "Driver Not Loaded");
        nvml.shutdown().unwrap();
    }
}
