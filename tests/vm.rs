//! migcage on a real systemd host: a throw-away QEMU VM (Debian 12, systemd 252 as PID 1, pure
//! cgroup v2; `scripts/vm/image.sh` builds and caches the image, `scripts/vm/run.sh` boots it)
//! runs `tests/vm/scenarios.sh`: for each runtime and engine mode, a container asking for MIG
//! device 0:1 of a simulated a100-7x1g probes its device access before and after
//! `systemctl daemon-reload`. Every `VM-RESULT` line must match [`EXPECTED`]; a mode that differs
//! in either direction (a regression, or a known failure that now passes) fails the test, so the
//! table is kept true.
//!
//! It takes minutes (software emulation: KVM is not usable on these machines) and needs root,
//! qemu-system-x86 and debootstrap, so it is `#[ignore]`d: run it with
//! `cargo test --test vm -- --ignored --nocapture`. `MIGCAGE_VM_CACHE` moves the image cache
//! (default /var/cache/migcage-vm), `MIGCAGE_VM_TIMEOUT` bounds the VM (seconds, default 900).

use std::path::Path;
use std::process::Command;

/// What a probe must say: `Ok`, or a failure known today, with its reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Ok,
    KnownFail(&'static str),
}
use Expect::{KnownFail, Ok};

/// Mode (as scenarios.sh names it) -> expected result before and after `systemctl daemon-reload`.
/// The one place to update when a mode's behaviour changes.
const EXPECTED: &[Row] = &[
    ("runc-systemd-hook", Ok, Ok),
    ("runc-systemd-runtime", Ok, Ok),
    ("runc-systemd-runtime-devchar", Ok, Ok),
    ("runc-cgroupfs-hook", Ok, Ok),
    ("crun-systemd-hook", Ok, Ok),
    ("crun-cgroupfs-hook", Ok, Ok),
    ("podman-hooksd-runc", Ok, Ok),
    ("podman-hooksd-crun", Ok, Ok),
    ("podman-cdi-runc", Ok, Ok),
    ("podman-runtime-runc", Ok, Ok),
    ("docker-gpus", Ok, Ok),
    ("docker-runtime", Ok, Ok),
];

/// A row of [`EXPECTED`].
type Row = (&'static str, Expect, Expect);

/// The differences between `output`'s VM-RESULT lines and `expected` (the table [`EXPECTED`]),
/// one line each.
fn compare(output: &str, expected: &[Row]) -> Vec<String> {
    let mut got = std::collections::BTreeMap::new();
    let mut problems = Vec::new();
    for line in output.lines().filter_map(|l| l.strip_prefix("VM-RESULT ")) {
        let parsed = line.split_once(" before=").and_then(|(mode, rest)| {
            let (before, after) = rest.split_once(" after=")?;
            Some((mode.to_string(), before.to_string(), after.to_string()))
        });
        match parsed {
            Some((mode, before, after)) => {
                if got.insert(mode.clone(), (before, after)).is_some() {
                    problems.push(format!("{mode}: reported twice"));
                }
            }
            None => problems.push(format!("unparsable result line: VM-RESULT {line}")),
        }
    }
    for (mode, want_before, want_after) in expected {
        let Some((before, after)) = got.remove(*mode) else {
            problems.push(format!("{mode}: no result"));
            continue;
        };
        for (when, want, result) in [
            ("before", want_before, before),
            ("after", want_after, after),
        ] {
            match (want, result.as_str()) {
                (Ok, "ok") => {}
                (Ok, r) => problems.push(format!("{mode} {when} daemon-reload: {r} (expected ok)")),
                (KnownFail(_), r) if r.starts_with("FAIL") => {}
                (KnownFail(why), r) => problems.push(format!(
                    "{mode} {when} daemon-reload: {r}, expected the known failure ({why}): \
                     update EXPECTED in tests/vm.rs"
                )),
            }
        }
    }
    for mode in got.keys() {
        problems.push(format!("{mode}: a result for a mode not in EXPECTED"));
    }
    problems
}

#[test]
fn expectations_compare_both_ways() {
    // A table with a known failure, as EXPECTED may hold one again.
    let mut table = EXPECTED.to_vec();
    table.push(("known-broken", Ok, KnownFail("the reason")));
    let all_as_expected: String = table
        .iter()
        .map(|(m, b, a)| {
            let r = |e: &Expect| if *e == Ok { "ok" } else { "FAIL: x" };
            format!("VM-RESULT {m} before={} after={}\n", r(b), r(a))
        })
        .collect();
    assert_eq!(compare(&all_as_expected, &table), Vec::<String>::new());
    let fixed = all_as_expected.replace(
        "known-broken before=ok after=FAIL: x",
        "known-broken before=ok after=ok",
    );
    let p = compare(&fixed, &table);
    assert!(p.len() == 1 && p[0].contains("update EXPECTED"), "{p:?}");
    let broken = all_as_expected.replace(
        "crun-systemd-hook before=ok",
        "crun-systemd-hook before=FAIL: own 0/6",
    );
    assert_eq!(compare(&broken, &table).len(), 1);
    assert_eq!(compare("", &table).len(), table.len());
}

fn copy(from: &Path, to: &Path) {
    std::fs::copy(from, to).unwrap_or_else(|e| panic!("copy {}: {e}", from.display()));
}

#[test]
#[ignore = "boots a QEMU VM for minutes: cargo test --test vm -- --ignored"]
fn systemd_host_scenarios() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    // The share needs the simulated NVML library and nvidia-smi too (other workspace crates).
    let build = Command::new(env!("CARGO"))
        .args(["build", "--workspace", "--quiet"])
        .current_dir(repo)
        .status()
        .unwrap();
    assert!(build.success(), "cargo build --workspace failed");
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_migcage")).parent().unwrap();
    let share = tempfile::Builder::new()
        .prefix("migcage-vm-share-")
        .tempdir()
        .unwrap();
    let s = share.path();
    std::fs::create_dir_all(s.join("bin")).unwrap();
    std::fs::create_dir_all(s.join("hooks")).unwrap();
    for f in ["migcage", "libnvidia_ml_sim.so", "nvidia-smi"] {
        copy(&bin_dir.join(f), &s.join("bin").join(f));
    }
    copy(
        &repo.join("hooks/oci-migcage-hook.json"),
        &s.join("hooks/oci-migcage-hook.json"),
    );
    copy(&repo.join("tests/vm/scenarios.sh"), &s.join("scenarios.sh"));
    std::fs::write(s.join("run.sh"), "exec bash ./scenarios.sh\n").unwrap();

    let out = Command::new(repo.join("scripts/vm/run.sh"))
        .arg(s)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let log = std::fs::read_to_string(s.join("output.log")).unwrap_or_default();
    eprintln!("{stderr}");
    println!("{log}");
    assert!(
        out.status.success(),
        "scripts/vm/run.sh failed ({}): {stderr}",
        out.status
    );
    let problems = compare(&log, EXPECTED);
    assert!(
        problems.is_empty(),
        "VM results differ from EXPECTED in tests/vm.rs:\n{}",
        problems.join("\n")
    );
}
