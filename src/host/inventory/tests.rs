//! Tests of discovery and the cross-check on procfs fixtures in the driver's formats.

use super::nvml::NvmlInfo;
use super::*;
use crate::config::Config;
use migcage_topology::Topology;
use std::path::PathBuf;

/// A procfs tree in the driver's formats for `topo`, and what NVML would say about it.
struct Fixture {
    _dir: tempfile::TempDir,
    config: Config,
    nvml: NvmlInfo,
}

fn write(path: PathBuf, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn access(minor: u32) -> String {
    format!("DeviceFileMinor: {minor}\nDeviceFileMode: 292\nDeviceFileModify: 1\n")
}

fn fixture(name: &str) -> Fixture {
    let topo = Topology::load(name).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        proc_root: dir.path().join("proc"),
        nvml_library: dir.path().join("libnvidia-ml.so.1"),
        ..Config::default()
    };
    write(
        devices_path(&config),
        &format!(
            "Character devices:\n  1 mem\n195 nvidia-frontend\n{} nvidia-caps\n{} nvidia-uvm\n\nBlock devices:\n  8 sd\n",
            topo.majors.caps, topo.majors.uvm
        ),
    );
    write(
        version_path(&config),
        &format!(
            "NVRM version: NVIDIA UNIX x86_64 Kernel Module  {}  Tue Mar  5 22:23:56 UTC 2024\nGCC version:  gcc 12\n",
            topo.driver_version
        ),
    );
    write(
        mig_minors_path(&config),
        &migcage_topology::mig_minors_file(),
    );
    write(mig_cap_path(&config, "config"), &access(1));
    write(mig_cap_path(&config, "monitor"), &access(2));
    for g in &topo.gpus {
        write(
            gpu_information_path(&config, &g.proc_bus_id()),
            &format!(
                "Model: \t\t {}\nIRQ:   \t\t 100\nGPU UUID: \t {}\nBus Location: \t {}\nDevice Minor: \t {}\nGPU Excluded:\t No\n",
                g.model.name,
                g.uuid,
                g.proc_bus_id(),
                g.minor
            ),
        );
        for m in g.mig_devices() {
            let gi = m.gi.id;
            let ci = m.ci.id;
            write(
                gi_access_path(&config, g.minor, gi),
                &access(migcage_topology::gi_access_minor(g.minor, gi)),
            );
            write(
                ci_access_path(&config, g.minor, gi, ci),
                &access(migcage_topology::ci_access_minor(g.minor, gi, ci)),
            );
        }
    }
    let nvml = NvmlInfo::simulated(&topo);
    Fixture {
        _dir: dir,
        config,
        nvml,
    }
}

fn assembled(f: &Fixture) -> (ProcfsInfo, Result<Inventory, InventoryError>) {
    let proc = read_procfs(&f.config).unwrap();
    let inv = assemble(&f.config, f.nvml.clone(), &proc);
    (proc, inv)
}

#[test]
fn procfs_of_a_mig_host() {
    let f = fixture("two-gpus-one-mig");
    let proc = read_procfs(&f.config).unwrap();
    assert_eq!(proc.driver_version, "550.54.15");
    assert_eq!(
        proc.majors,
        Majors {
            frontend: 195,
            uvm: Some(migcage_topology::DEFAULT_UVM_MAJOR),
            caps: Some(migcage_topology::DEFAULT_CAPS_MAJOR)
        }
    );
    assert_eq!(
        proc.gpus.keys().collect::<Vec<_>>(),
        ["0000:07:00.0", "0000:0f:00.0"]
    );
    assert_eq!(proc.gpus["0000:0f:00.0"].minor, 1);
    assert_eq!(proc.mig_minors.as_ref().unwrap().gi(0, 1), Some(12));
}

#[test]
fn assemble_takes_caps_minors_from_mig_minors_and_verifies() {
    for name in migcage_topology::builtin_names() {
        let f = fixture(name);
        let (proc, inv) = assembled(&f);
        let inv = inv.unwrap_or_else(|e| panic!("{name}: {e}"));
        verify(&f.config, &inv, &proc).unwrap_or_else(|e| panic!("{name}: {e}"));
        let topo = Topology::load(name).unwrap();
        assert_eq!(inv.mig_config_minor, Some(1));
        assert_eq!(inv.mig_monitor_minor, Some(2));
        let mut count = 0;
        for (g, tg) in inv.gpus.iter().zip(&topo.gpus) {
            for (m, tm) in g.mig_devices.iter().zip(tg.mig_devices()) {
                assert_eq!(
                    m.gi_caps_minor,
                    migcage_topology::gi_access_minor(tg.minor, tm.gi.id)
                );
                assert_eq!(
                    m.ci_caps_minor,
                    migcage_topology::ci_access_minor(tg.minor, tm.gi.id, tm.ci.id)
                );
                assert_eq!(m.gpu_index, g.index);
                count += 1;
            }
        }
        assert_eq!(count, topo.mig_devices().len(), "{name}");
    }
}

#[test]
fn no_driver_names_the_directory_and_the_fix() {
    let f = fixture("a100-7x1g");
    std::fs::remove_dir_all(f.config.proc_path("driver/nvidia")).unwrap();
    let e = read_procfs(&f.config).unwrap_err();
    let s = e.to_string();
    assert!(matches!(e, InventoryError::NoDriver { .. }), "{s}");
    assert!(
        s.contains(&f.config.proc_path("driver/nvidia").display().to_string()),
        "{s}"
    );
    assert!(
        s.contains("load the nvidia kernel module") && s.contains("proc_root"),
        "{s}"
    );
}

#[test]
fn missing_frontend_major() {
    let f = fixture("a100-nomig");
    write(devices_path(&f.config), "Character devices:\n  1 mem\n");
    let e = read_procfs(&f.config).unwrap_err();
    assert!(e.to_string().contains("nvidia-frontend"), "{e}");
}

#[test]
fn malformed_files_name_file_and_line() {
    let f = fixture("a100-mixed");
    write(
        mig_minors_path(&f.config),
        "config 1\nmonitor 2\ngpu0/gi1/access twelve\n",
    );
    let e = read_procfs(&f.config).unwrap_err();
    let s = e.to_string();
    assert!(matches!(e, InventoryError::Parse(_)), "{s}");
    assert!(s.contains("mig-minors") && s.contains("line 3"), "{s}");

    let f = fixture("a100-mixed");
    write(gi_access_path(&f.config, 0, 1), "DeviceFileMinor: x\n");
    let (proc, inv) = assembled(&f);
    let e = verify(&f.config, &inv.unwrap(), &proc).unwrap_err();
    assert!(
        e.to_string().contains("gi1/access") && e.to_string().contains("line 1"),
        "{e}"
    );
}

#[test]
fn missing_access_file_names_both_sides() {
    let f = fixture("a100-7x1g");
    let path = ci_access_path(&f.config, 0, 9, 0);
    std::fs::remove_file(&path).unwrap();
    let (proc, inv) = assembled(&f);
    let inv = inv.unwrap();
    let uuid = &inv.gpus[0]
        .mig_devices
        .iter()
        .find(|m| m.gpu_instance_id == 9)
        .unwrap()
        .uuid;
    let e = verify(&f.config, &inv, &proc).unwrap_err();
    let s = e.to_string();
    assert!(matches!(e, InventoryError::CapMissing { .. }), "{s}");
    assert!(
        s.contains(uuid.as_str())
            && s.contains("GI 9, CI 0")
            && s.contains(&path.display().to_string()),
        "{s}"
    );
    assert!(s.contains("changed while migcage read it"), "{s}");
}

#[test]
fn access_minor_disagreeing_with_mig_minors() {
    let f = fixture("a100-7x1g");
    let path = gi_access_path(&f.config, 0, 7);
    write(path.clone(), &access(999));
    let (proc, inv) = assembled(&f);
    let e = verify(&f.config, &inv.unwrap(), &proc).unwrap_err();
    let s = e.to_string();
    assert!(
        s.contains(&path.display().to_string()) && s.contains("999") && s.contains("mig-minors"),
        "{s}"
    );
    assert!(
        s.contains("gpu0/gi7/access")
            && s.contains(&migcage_topology::gi_access_minor(0, 7).to_string()),
        "{s}"
    );
}

#[test]
fn mig_minors_missing_or_incomplete() {
    let f = fixture("a100-mixed");
    std::fs::remove_file(mig_minors_path(&f.config)).unwrap();
    let (proc, inv) = assembled(&f);
    assert_eq!(proc.mig_minors, None);
    let s = inv.unwrap_err().to_string();
    assert!(
        s.contains("mig-minors is missing") && s.contains("MIG-"),
        "{s}"
    );

    let f = fixture("a100-mixed");
    write(mig_minors_path(&f.config), "config 1\nmonitor 2\n");
    let s = assembled(&f).1.unwrap_err().to_string();
    assert!(s.contains("has no `gpu0/gi"), "{s}");

    // Without MIG devices, no mig-minors is fine.
    let f = fixture("a100-nomig");
    std::fs::remove_file(mig_minors_path(&f.config)).unwrap();
    let (proc, inv) = assembled(&f);
    let inv = inv.unwrap();
    assert_eq!(inv.mig_config_minor, None);
    verify(&f.config, &inv, &proc).unwrap();
}

#[test]
fn gpu_information_disagreeing_with_nvml() {
    let f = fixture("two-gpus-one-mig");
    let path = gpu_information_path(&f.config, "0000:0f:00.0");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("Device Minor: \t 1", "Device Minor: \t 5");
    write(path.clone(), &text);
    let (proc, inv) = assembled(&f);
    let s = verify(&f.config, &inv.unwrap(), &proc)
        .unwrap_err()
        .to_string();
    assert!(
        s.contains("GPU 1 with device minor 1")
            && s.contains("says 5")
            && s.contains(&path.display().to_string()),
        "{s}"
    );

    let f = fixture("two-gpus-one-mig");
    let mut nvml = f.nvml.clone();
    nvml.gpus[0].uuid = "GPU-00000000-0000-0000-0000-000000000000".into();
    let proc = read_procfs(&f.config).unwrap();
    let s = verify(&f.config, &assemble(&f.config, nvml, &proc).unwrap(), &proc)
        .unwrap_err()
        .to_string();
    assert!(
        s.contains("UUID GPU-00000000") && s.contains("0000:07:00.0/information"),
        "{s}"
    );

    let f = fixture("two-gpus-one-mig");
    std::fs::remove_dir_all(f.config.proc_path("driver/nvidia/gpus/0000:0f:00.0")).unwrap();
    let (proc, inv) = assembled(&f);
    let s = verify(&f.config, &inv.unwrap(), &proc)
        .unwrap_err()
        .to_string();
    assert!(
        s.contains("NVML reports GPU 1") && s.contains("0000:0f:00.0/information is missing"),
        "{s}"
    );
}

#[test]
fn snapshot_checks_catch_driver_changes() {
    let f = fixture("a100-mixed");
    let (_, inv) = assembled(&f);
    let inv = inv.unwrap();
    // The driver was reloaded with another caps major.
    write(
        devices_path(&f.config),
        "Character devices:\n195 nvidia-frontend\n500 nvidia-caps\n510 nvidia-uvm\n",
    );
    let proc = read_procfs(&f.config).unwrap();
    let s = verify(&f.config, &inv, &proc).unwrap_err().to_string();
    assert!(
        s.contains("device majors") && s.contains("discover again"),
        "{s}"
    );
    // Or upgraded.
    let f = fixture("a100-mixed");
    let (_, inv) = assembled(&f);
    write(
        version_path(&f.config),
        "NVRM version: NVIDIA UNIX x86_64 Kernel Module  560.35.03  Fri Aug 16\n",
    );
    let proc = read_procfs(&f.config).unwrap();
    let s = verify(&f.config, &inv.unwrap(), &proc)
        .unwrap_err()
        .to_string();
    assert!(s.contains("550.54.15") && s.contains("560.35.03"), "{s}");
}

#[test]
fn mig_without_caps_major() {
    let f = fixture("a100-mixed");
    write(
        devices_path(&f.config),
        "Character devices:\n195 nvidia-frontend\n510 nvidia-uvm\n",
    );
    let (proc, inv) = assembled(&f);
    let s = verify(&f.config, &inv.unwrap(), &proc)
        .unwrap_err()
        .to_string();
    assert!(
        s.contains("nvidia-caps") && s.contains("MIG devices"),
        "{s}"
    );
}

#[test]
fn errors_are_one_line() {
    let f = fixture("a100-7x1g");
    std::fs::remove_file(version_path(&f.config)).unwrap();
    let e = read_procfs(&f.config).unwrap_err();
    let s = e.to_string();
    assert!(
        matches!(e, InventoryError::Read { .. }) && s.contains("driver/nvidia/version"),
        "{s}"
    );
    assert!(!s.contains('\n'), "{s}");
}
