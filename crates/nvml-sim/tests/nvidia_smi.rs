//! The nvidia-smi stand-in, finding the simulated library by soname through LD_LIBRARY_PATH.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use migcage_topology::Topology;

/// A directory with `libnvidia-ml.so.1` -> the built cdylib, as a driver install has it.
fn lib_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(common::cdylib(), dir.path().join("libnvidia-ml.so.1")).unwrap();
    dir
}

fn smi(lib_dir: &Path, topology: Option<&Path>, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nvidia-smi"));
    cmd.args(args)
        .env("LD_LIBRARY_PATH", lib_dir)
        .env_remove("MIGCAGE_SIM_TOPOLOGY");
    if let Some(t) = topology {
        cmd.env("MIGCAGE_SIM_TOPOLOGY", t);
    }
    cmd.output().expect("run nvidia-smi")
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn a100_7x1g_listing(t: &Topology) -> String {
    let mut want = format!("GPU 0: NVIDIA A100-SXM4-40GB (UUID: {})\n", t.gpus[0].uuid);
    for (i, m) in t.gpus[0].mig_devices().iter().enumerate() {
        want.push_str(&format!(
            "  MIG 1g.5gb      Device  {i}: (UUID: {})\n",
            m.ci.uuid
        ));
    }
    want
}

#[test]
fn list_a100_7x1g_exactly() {
    let t = Topology::load("a100-7x1g").unwrap();
    let dir = lib_dir();
    let topo = common::write_topology(dir.path(), &t);
    let out = smi(dir.path(), Some(&topo), &["-L"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout(&out), a100_7x1g_listing(&t));
    assert_eq!(stdout(&out).lines().count(), 8);
}

#[test]
fn topology_beside_the_library_is_found_without_the_env() {
    let t = Topology::load("a100-7x1g").unwrap();
    let dir = lib_dir();
    std::fs::write(dir.path().join("nvidia-sim-topology.toml"), t.to_toml()).unwrap();
    let out = smi(dir.path(), None, &["-L"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout(&out), a100_7x1g_listing(&t));
}

#[test]
fn list_mixed_profiles_pads_like_the_real_tool() {
    let t = Topology::load("h100-mixed").unwrap();
    let dir = lib_dir();
    let topo = common::write_topology(dir.path(), &t);
    let out = smi(dir.path(), Some(&topo), &["-L"]);
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        format!("GPU 0: NVIDIA H100 80GB HBM3 (UUID: {})", t.gpus[0].uuid)
    );
    let migs = t.mig_devices();
    assert_eq!(
        lines[1],
        format!("  MIG 2c.3g.40gb  Device  0: (UUID: {})", migs[0].ci.uuid)
    );
    assert_eq!(
        lines[2],
        format!("  MIG 1c.3g.40gb  Device  1: (UUID: {})", migs[1].ci.uuid)
    );
    assert_eq!(
        lines[3],
        format!("  MIG 2g.20gb     Device  2: (UUID: {})", migs[2].ci.uuid)
    );
    assert_eq!(lines.len(), 1 + migs.len());
}

#[test]
fn version_and_summary_show_the_driver() {
    let t = Topology::load("two-gpus-one-mig").unwrap();
    let dir = lib_dir();
    let topo = common::write_topology(dir.path(), &t);
    let out = smi(dir.path(), Some(&topo), &["--version"]);
    assert!(out.status.success());
    assert_eq!(
        stdout(&out),
        "NVIDIA-SMI version  : 550.54.15\nNVML version        : 12.550.54.15\nDRIVER version      : 550.54.15\nCUDA Version        : 12.4\n"
    );
    let out = smi(dir.path(), Some(&topo), &[]);
    assert!(out.status.success());
    let text = stdout(&out);
    assert!(
        text.contains("Driver Version: 550.54.15") && text.contains("CUDA Version: 12.4"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "GPU 1: NVIDIA A100-SXM4-40GB (UUID: {})",
            t.gpus[1].uuid
        )),
        "{text}"
    );
}

#[test]
fn init_failures_print_and_exit_like_the_real_tool() {
    let dir = lib_dir();
    let mut t = Topology::load("a100-nomig").unwrap();
    t.faults.init_error = Some("DRIVER_NOT_LOADED".into());
    let topo = common::write_topology(dir.path(), &t);
    let out = smi(dir.path(), Some(&topo), &["-L"]);
    assert_eq!(out.status.code(), Some(9));
    assert!(stdout(&out).starts_with(
        "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver."
    ));

    t.faults.init_error = Some("UNKNOWN".into());
    let topo = common::write_topology(dir.path(), &t);
    let out = smi(dir.path(), Some(&topo), &["-L"]);
    assert_eq!(out.status.code(), Some(255));
    assert_eq!(stdout(&out), "Failed to initialize NVML: Unknown Error\n");

    let out = smi(dir.path(), Some(&topo), &["--bogus"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn no_library_exits_12() {
    let have_real = Command::new("ldconfig")
        .arg("-p")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("libnvidia-ml.so.1"))
        .unwrap_or(false);
    if have_real {
        return; // a real driver is installed: the linker would find it
    }
    let empty = tempfile::tempdir().unwrap();
    let out = smi(empty.path(), None, &["-L"]);
    assert_eq!(out.status.code(), Some(12));
    assert!(stdout(&out).starts_with("NVIDIA-SMI couldn't find libnvidia-ml.so library"));
}
