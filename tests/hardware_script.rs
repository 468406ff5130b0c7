//! tests/hardware/run.sh is meant for a machine with a real NVIDIA driver. Here it runs against a
//! simulated host (its nvidia-smi stand-in, its config), so the script itself is known to work
//! before anyone carries it to real hardware.

mod common;

use std::process::Command;

use common::{Mode, SimHost, MIGCAGE};

#[test]
fn hardware_script_passes_on_a_simulated_host() {
    if let Some(why) = Mode::RuncV1.unavailable() {
        common::skip(&format!(
            "hardware_script_passes_on_a_simulated_host: {why}"
        ));
        return;
    }
    let host = SimHost::new("a100-7x1g");
    let root = host.dir.path();
    // The stand-in finds its NVML through the loader, like the real nvidia-smi does.
    let smi = root.join("nvidia-smi-host");
    std::fs::write(
        &smi,
        format!(
            "#!/bin/sh\nLD_LIBRARY_PATH={0}/usr/lib/x86_64-linux-gnu exec {0}/usr/bin/nvidia-smi \"$@\"\n",
            root.display()
        ),
    )
    .unwrap();
    Command::new("chmod").arg("755").arg(&smi).status().unwrap();
    let report = root.join("report.md");
    let out = Command::new("bash")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/hardware/run.sh"
        ))
        .args(["--migcage", MIGCAGE, "--runc"])
        .arg(common::which("runc"))
        .arg("--busybox")
        .arg(common::which("busybox"))
        .arg("--config")
        .arg(host.config())
        .arg("--out")
        .arg(&report)
        .env("NVIDIA_SMI", &smi)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "run.sh failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&report).unwrap();
    for check in [
        "PASS migcage doctor",
        "PASS list matches nvidia-smi -L (8 UUIDs)",
        "PASS container with NVIDIA_VISIBLE_DEVICES=0 runs nvidia-smi -L",
        "PASS container without a request sees no GPU node",
        "- driver: 550.54.15",
        "failures: 0",
    ] {
        assert!(text.contains(check), "report lacks {check:?}:\n{text}");
    }
    assert!(!text.contains("FAIL"), "{text}");
}
