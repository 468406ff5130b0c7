//! `inventory::discover` against simulated driver trees: every shipped topology is discovered as
//! the topology says, and broken hosts fail with errors that name what, where and what to do.
//!
//! Each tree is made by the real binary (`migcage simulate --topology <name> --root <dir>`), which
//! writes `<dir>/config.toml` pointing at its proc, dev and simulated NVML library. Making device
//! nodes needs root: without it these tests print a skip line and pass.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;

use migcage::config::Config;
use migcage::host::inventory::{self, Inventory, InventoryError, Majors};
use migcage_topology::Topology;

/// NVML is process-wide state: one discovery at a time.
static NVML: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    NVML.lock().unwrap_or_else(|e| e.into_inner())
}

fn root_or_skip(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    eprintln!("skipping {test}: needs root (the simulated driver tree has real device nodes)");
    false
}

/// A simulated host of the named topology, and the configuration that points at it.
struct Host {
    dir: tempfile::TempDir,
    config: Config,
}

fn simulate(topology: &str) -> Host {
    let dir = tempfile::tempdir().expect("temporary directory");
    let out = Command::new(env!("CARGO_BIN_EXE_migcage"))
        .args(["simulate", "--topology", topology, "--root"])
        .arg(dir.path())
        .env_remove("MIGCAGE_CONFIG")
        .output()
        .expect("run migcage simulate");
    assert!(
        out.status.success(),
        "migcage simulate --topology {topology} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let path = dir.path().join("config.toml");
    let (config, _) = Config::load(Some(&path)).unwrap_or_else(|e| panic!("{topology}: {e}"));
    Host { dir, config }
}

fn discover(host: &Host) -> Result<Inventory, InventoryError> {
    let _nvml = serial();
    inventory::discover(&host.config)
}

/// The inventory says what the topology says, field by field.
fn check_against_topology(name: &str) {
    let topo = Topology::load(name).unwrap();
    let host = simulate(name);
    let inv = discover(&host).unwrap_or_else(|e| panic!("{name}: {e}"));

    assert_eq!(inv.driver_version, topo.driver_version, "{name}");
    assert_eq!(inv.cuda_driver_version, topo.cuda_driver_version, "{name}");
    assert_eq!(
        inv.majors,
        Majors {
            frontend: migcage_topology::FRONTEND_MAJOR,
            uvm: Some(topo.majors.uvm),
            caps: Some(topo.majors.caps)
        },
        "{name}"
    );
    assert_eq!(
        inv.mig_config_minor,
        Some(migcage_topology::MIG_CONFIG_MINOR),
        "{name}"
    );
    assert_eq!(
        inv.mig_monitor_minor,
        Some(migcage_topology::MIG_MONITOR_MINOR),
        "{name}"
    );
    assert_eq!(inv.gpus.len(), topo.gpus.len(), "{name}");

    let mut uuids = BTreeSet::new();
    for (g, t) in inv.gpus.iter().zip(&topo.gpus) {
        let at = format!("{name} GPU {}", t.index);
        assert_eq!(g.index, t.index, "{at}");
        assert_eq!(g.minor, t.minor, "{at}");
        assert_eq!(g.uuid, t.uuid, "{at}");
        assert_eq!(g.name, t.model.name, "{at}");
        assert!(
            g.pci_bus_id.eq_ignore_ascii_case(&t.pci_bus_id),
            "{at}: {} vs {}",
            g.pci_bus_id,
            t.pci_bus_id
        );
        assert_eq!(g.proc_bus_id(), t.proc_bus_id(), "{at}");
        assert_eq!(g.mig_enabled, t.mig, "{at}");
        assert_eq!(g.memory_mib, t.model.memory_mib, "{at}");
        assert!(uuids.insert(g.uuid.clone()), "{at}: UUID repeats");

        let expected = t.mig_devices();
        assert_eq!(g.mig_devices.len(), expected.len(), "{at}");
        for (m, e) in g.mig_devices.iter().zip(&expected) {
            let at = format!("{at} MIG {}", e.index);
            assert_eq!(m.index, e.index, "{at}");
            assert_eq!(m.gpu_index, t.index, "{at}");
            assert_eq!(m.uuid, e.ci.uuid, "{at}");
            assert_eq!(m.gpu_instance_id, e.gi.id, "{at}");
            assert_eq!(m.compute_instance_id, e.ci.id, "{at}");
            assert_eq!(m.profile, e.profile_name(), "{at}");
            assert_eq!(m.memory_mib, e.gi.profile.memory_mib, "{at}");
            assert_eq!(
                m.gi_caps_minor,
                migcage_topology::gi_access_minor(t.minor, e.gi.id),
                "{at}"
            );
            assert_eq!(
                m.ci_caps_minor,
                migcage_topology::ci_access_minor(t.minor, e.gi.id, e.ci.id),
                "{at}"
            );
            assert!(uuids.insert(m.uuid.clone()), "{at}: UUID repeats");
        }
    }
    assert_eq!(
        uuids.len(),
        topo.gpus.len() + topo.mig_devices().len(),
        "{name}"
    );

    // The same inventory, checked again against a fresh read of /proc alone (what a cached
    // snapshot gets on container start), still holds.
    let proc = inventory::read_procfs(&host.config).unwrap();
    inventory::verify(&host.config, &inv, &proc).unwrap_or_else(|e| panic!("{name}: {e}"));
}

#[test]
fn a100_7x1g() {
    if root_or_skip("a100_7x1g") {
        check_against_topology("a100-7x1g");
    }
}

#[test]
fn a100_mixed() {
    if root_or_skip("a100_mixed") {
        check_against_topology("a100-mixed");
    }
}

#[test]
fn h100_mixed() {
    if root_or_skip("h100_mixed") {
        check_against_topology("h100-mixed");
    }
}

#[test]
fn dgx_8x7_has_56_unique_mig_devices() {
    if !root_or_skip("dgx_8x7_has_56_unique_mig_devices") {
        return;
    }
    check_against_topology("dgx-8x7");
    let host = simulate("dgx-8x7");
    let inv = discover(&host).unwrap();
    let migs: Vec<_> = inv.gpus.iter().flat_map(|g| &g.mig_devices).collect();
    assert_eq!(migs.len(), 56);
    assert_eq!(
        migs.iter().map(|m| &m.uuid).collect::<BTreeSet<_>>().len(),
        56
    );
    let minors: BTreeSet<_> = migs
        .iter()
        .flat_map(|m| [m.gi_caps_minor, m.ci_caps_minor])
        .collect();
    assert_eq!(
        minors.len(),
        112,
        "every GI and CI access has its own caps minor"
    );
}

#[test]
fn a100_nomig() {
    if root_or_skip("a100_nomig") {
        check_against_topology("a100-nomig");
    }
}

#[test]
fn two_gpus_one_mig() {
    if root_or_skip("two_gpus_one_mig") {
        check_against_topology("two-gpus-one-mig");
    }
}

/// MIG enabled and no instance yet (what `migcage mig apply` starts from): every GPU is found,
/// MIG on, with no MIG device.
#[test]
fn empty_mig_gpus() {
    if !root_or_skip("empty_mig_gpus") {
        return;
    }
    for (name, gpus) in [("a100-empty", 1), ("h100-empty", 1), ("dgx-8x-empty", 8)] {
        check_against_topology(name);
        let inv = discover(&simulate(name)).unwrap();
        assert_eq!(inv.gpus.len(), gpus, "{name}");
        for g in &inv.gpus {
            assert!(g.mig_enabled, "{name}: GPU {} has MIG off", g.index);
            assert!(g.mig_devices.is_empty(), "{name}: GPU {}", g.index);
        }
    }
}

#[test]
fn every_shipped_topology_is_covered() {
    let covered = [
        "a100-7x1g",
        "a100-mixed",
        "h100-mixed",
        "dgx-8x7",
        "a100-nomig",
        "two-gpus-one-mig",
        "a100-empty",
        "h100-empty",
        "dgx-8x-empty",
    ];
    for name in migcage_topology::builtin_names() {
        assert!(
            covered.contains(&name),
            "shipped topology {name} has no discovery test here"
        );
    }
}

fn one_line(e: &InventoryError) -> String {
    let s = e.to_string();
    assert!(!s.contains('\n'), "error spans lines: {s}");
    s
}

#[test]
fn driver_not_loaded() {
    if !root_or_skip("driver_not_loaded") {
        return;
    }
    let host = simulate("a100-7x1g");
    let driver = host.config.proc_path("driver/nvidia");
    std::fs::remove_dir_all(&driver).unwrap();
    let e = discover(&host).unwrap_err();
    let s = one_line(&e);
    assert!(matches!(e, InventoryError::NoDriver { .. }), "{s}");
    assert!(
        s.contains("NVIDIA driver not loaded") && s.contains(&driver.display().to_string()),
        "{s}"
    );
    assert!(
        s.contains("load the nvidia kernel module") && s.contains("proc_root"),
        "{s}"
    );
}

#[test]
fn missing_access_file_names_nvml_and_proc() {
    if !root_or_skip("missing_access_file_names_nvml_and_proc") {
        return;
    }
    let name = "a100-7x1g";
    let topo = Topology::load(name).unwrap();
    let victim = topo.mig_devices()[2];
    let host = simulate(name);
    let path = host.config.proc_path(&format!(
        "driver/nvidia/capabilities/gpu{}/mig/gi{}/ci{}/access",
        victim.gpu.minor, victim.gi.id, victim.ci.id
    ));
    std::fs::remove_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let e = discover(&host).unwrap_err();
    let s = one_line(&e);
    assert!(matches!(e, InventoryError::CapMissing { .. }), "{s}");
    assert!(s.contains(&victim.ci.uuid), "names NVML's side: {s}");
    assert!(
        s.contains(&format!("GI {}, CI {}", victim.gi.id, victim.ci.id)),
        "{s}"
    );
    assert!(
        s.contains(&path.display().to_string()),
        "names the proc side: {s}"
    );
    assert!(
        s.contains("changed while migcage read it") && s.contains("proc_root"),
        "{s}"
    );
}

#[test]
fn malformed_mig_minors_names_file_and_line() {
    if !root_or_skip("malformed_mig_minors_names_file_and_line") {
        return;
    }
    let host = simulate("a100-mixed");
    let path = host.config.proc_path("driver/nvidia-caps/mig-minors");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines[4] = "gpu0/gi0/ci1/access four";
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let e = discover(&host).unwrap_err();
    let s = one_line(&e);
    assert!(matches!(e, InventoryError::Parse(_)), "{s}");
    assert!(
        s.contains(&path.display().to_string()) && s.contains("line 5"),
        "{s}"
    );
    assert!(s.contains("gpu0/gi0/ci1/access four"), "{s}");
}

#[test]
fn wrong_nvml_library_names_path_and_fix() {
    if !root_or_skip("wrong_nvml_library_names_path_and_fix") {
        return;
    }
    let mut host = simulate("a100-mixed");
    let wrong = host.dir.path().join("no-such-dir/libnvidia-ml.so.1");
    host.config.nvml_library = wrong.clone();
    let e = discover(&host).unwrap_err();
    let s = one_line(&e);
    assert!(matches!(e, InventoryError::NvmlInit { .. }), "{s}");
    assert!(s.contains(&wrong.display().to_string()), "{s}");
    assert!(
        s.contains("libnvidia-ml.so.1") && s.contains("nvml_library"),
        "{s}"
    );
}

#[test]
fn driver_version_mismatch_names_both() {
    if !root_or_skip("driver_version_mismatch_names_both") {
        return;
    }
    let host = simulate("a100-7x1g");
    let path = host.config.proc_path("driver/nvidia/version");
    std::fs::write(&path, "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.104.05  Sat Aug 19 01:13:34 UTC 2023\n")
        .unwrap();
    let e = discover(&host).unwrap_err();
    let s = one_line(&e);
    assert!(matches!(e, InventoryError::DriverVersion { .. }), "{s}");
    assert!(
        s.contains("535.104.05")
            && s.contains("550.54.15")
            && s.contains(&path.display().to_string()),
        "{s}"
    );
}

#[test]
fn gpu_information_disagreeing_with_nvml() {
    if !root_or_skip("gpu_information_disagreeing_with_nvml") {
        return;
    }
    let host = simulate("two-gpus-one-mig");
    let topo = Topology::load("two-gpus-one-mig").unwrap();
    let gpu = &topo.gpus[1];
    let path = host.config.proc_path(&format!(
        "driver/nvidia/gpus/{}/information",
        gpu.proc_bus_id()
    ));
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(&gpu.uuid), "{text}");
    std::fs::write(
        &path,
        text.replace(&gpu.uuid, "GPU-00000000-1111-2222-3333-444444444444"),
    )
    .unwrap();
    let s = one_line(&discover(&host).unwrap_err());
    assert!(
        s.contains(&gpu.uuid)
            && s.contains("GPU-00000000-1111")
            && s.contains(&path.display().to_string()),
        "{s}"
    );
}

#[test]
fn procfs_alone_reads_without_nvml() {
    if !root_or_skip("procfs_alone_reads_without_nvml") {
        return;
    }
    let mut host = simulate("dgx-8x7");
    // No NVML is needed to read /proc.
    host.config.nvml_library = Path::new("/nonexistent/libnvidia-ml.so.1").to_path_buf();
    let proc = inventory::read_procfs(&host.config).unwrap();
    let topo = Topology::load("dgx-8x7").unwrap();
    assert_eq!(proc.driver_version, topo.driver_version);
    assert_eq!(proc.gpus.len(), 8);
    for g in &topo.gpus {
        let info = &proc.gpus[&g.proc_bus_id()];
        assert_eq!(info.uuid.as_deref(), Some(g.uuid.as_str()));
        assert_eq!(info.minor, g.minor);
    }
    let minors = proc.mig_minors.unwrap();
    assert_eq!(
        minors.gi(7, 13),
        Some(migcage_topology::gi_access_minor(7, 13))
    );
}
