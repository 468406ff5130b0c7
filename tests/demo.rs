//! `scripts/demo.sh`, the README's first command, runs here as a user runs it (with the binary
//! this build made, so it does not build again) and its verdict is asserted: the container got
//! exactly MIG device 0:1's six nodes and opened them, was refused every other NVIDIA node of the
//! simulated host, and left no lease behind. And a demo whose hook does nothing must fail.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use common::MIGCAGE;

fn demo(bin: &Path) -> Output {
    let artifacts = Path::new(MIGCAGE).parent().unwrap();
    Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/demo.sh"))
        .env("MIGCAGE_DEMO_BIN", bin)
        .env("MIGCAGE_SIM_ARTIFACTS", artifacts)
        .env_remove("MIGCAGE_CONFIG")
        .env_remove("MIGCAGE_DEMO_DIR")
        .output()
        .unwrap()
}

fn can_run(test: &str) -> bool {
    common::need_programs(test, &[("runc", "runc"), ("busybox", "busybox-static")])
}

#[test]
fn the_demo_proves_isolation_and_cleans_up() {
    if !can_run("the_demo_proves_isolation_and_cleans_up") {
        return;
    }
    let out = demo(Path::new(MIGCAGE));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let ctx = format!("{stdout}\nstderr: {}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{ctx}");
    let line = |word: &str| {
        stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(word))
            .unwrap_or_else(|| panic!("no '{word}' line: {ctx}"))
            .split_whitespace()
            .skip(1)
            .collect::<Vec<_>>()
    };
    let own = [
        "nvidia-caps/nvidia-cap75",
        "nvidia-caps/nvidia-cap76",
        "nvidia-uvm",
        "nvidia-uvm-tools",
        "nvidia0",
        "nvidiactl",
    ];
    assert_eq!(line("given")[0], "6", "{ctx}");
    assert_eq!(line("given")[1..], own, "{ctx}");
    assert_eq!(line("opened")[0], "6", "{ctx}");
    assert_eq!(line("opened")[1..7], own, "{ctx}");
    // a100-7x1g has 21 NVIDIA nodes: 15 are someone else's.
    assert_eq!(line("refused")[0], "15", "{ctx}");
    assert!(
        stdout.lines().last().unwrap_or("").starts_with("demo: OK"),
        "{ctx}"
    );
    // No container of the demo is left in runc's list.
    let list = Command::new("runc").arg("list").output().unwrap();
    assert!(
        !String::from_utf8_lossy(&list.stdout).contains("migcage-demo-"),
        "{ctx}"
    );
}

#[test]
fn a_demo_whose_hook_does_nothing_fails_and_says_why() {
    if !can_run("a_demo_whose_hook_does_nothing_fails_and_says_why") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("migcage");
    std::fs::write(
        &fake,
        format!("#!/bin/sh\n[ \"$1\" = hook ] && exit 0\nexec {MIGCAGE} \"$@\"\n"),
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = demo(&fake);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("demo: FAILED: the container was given -, not exactly"),
        "{stderr}"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("demo: OK"));
}
