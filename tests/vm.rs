//! migcage on a real systemd host: a throw-away QEMU VM (Debian 12, systemd 252 as PID 1, pure
//! cgroup v2; `scripts/vm/image.sh` builds and caches the image, `scripts/vm/run.sh` boots it)
//! runs `tests/vm/scenarios.sh`: for each runtime and engine mode, a container asking for MIG
//! device 0:1 of a simulated a100-7x1g probes its device access before and after
//! `systemctl daemon-reload`. Every `VM-RESULT` line must match [`EXPECTED`]; a mode that differs
//! in either direction (a regression, or a known failure that now passes) fails the test, so the
//! table is kept true. Rootless Podman (a non-root user with a systemd user session, crun) is
//! probed by what is in its container (no device cgroup exists there), and a rootless request
//! by profile must be refused with the line naming `state_dir`.
//!
//! In the same boot, the end-to-end tests of crun on cgroup v2 (`*_crun_cgroup_v2`, `#[ignore]`d
//! on the hosts that lack CAP_SYS_RESOURCE, see `tests/common`'s `Mode::CrunV2`) run from their
//! test binaries, built here: the repository (and the target directory) are shared with the VM
//! at their own paths, so the binaries find migcage where cargo built it. Each of
//! [`CRUN_V2_TESTS`] must pass there, and none may skip.
//!
//! It takes minutes (software emulation: KVM is not usable on these machines) and needs root,
//! qemu-system-x86 and debootstrap, so it is `#[ignore]`d: run it with
//! `cargo test --test vm -- --ignored --nocapture`. `MIGCAGE_VM_CACHE` moves the image cache
//! (default /var/cache/migcage-vm), `MIGCAGE_VM_TIMEOUT` bounds the VM (seconds, default 1500).

mod common;

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
    ("runc-systemd-hook-no-openat2", Ok, Ok),
    ("runc-systemd-runtime", Ok, Ok),
    ("runc-systemd-runtime-devchar", Ok, Ok),
    ("runc-cgroupfs-hook", Ok, Ok),
    ("crun-systemd-hook", Ok, Ok),
    ("crun-cgroupfs-hook", Ok, Ok),
    ("podman-hooksd-runc", Ok, Ok),
    ("podman-hooksd-crun", Ok, Ok),
    ("podman-cdi-runc", Ok, Ok),
    ("podman-runtime-runc", Ok, Ok),
    ("rootless-podman-cdi-crun", Ok, Ok),
    ("rootless-podman-hooksd-crun", Ok, Ok),
    // A refusal: the container must not start, and its verdict fills both columns.
    ("rootless-podman-profile-refused", Ok, Ok),
    ("docker-gpus", Ok, Ok),
    ("docker-runtime", Ok, Ok),
    // Not a container: the CDI spec's path unit regenerates it on a driver change, before and
    // after `daemon-reload`.
    ("cdi-path-unit", Ok, Ok),
];

/// The test binaries and tests that run only in the VM (crun on cgroup v2).
const CRUN_V2_TESTS: &[(&str, &[&str])] = &[
    (
        "hook_e2e",
        &[
            "every_form_crun_cgroup_v2",
            "bad_requests_crun_cgroup_v2",
            "hook_is_idempotent_across_stages_crun_cgroup_v2",
        ],
    ),
    (
        "runtime_e2e",
        &[
            "runtime_crun_cgroup_v2",
            "profile_lease_follows_the_container_crun_cgroup_v2",
        ],
    ),
    (
        "driver_e2e",
        &[
            "capability_sets_crun_cgroup_v2",
            "nvidia_smi_sees_only_its_device_crun_cgroup_v2",
            "none_gives_driver_files_but_no_device_crun_cgroup_v2",
            "read_only_rootfs_works_crun_cgroup_v2",
        ],
    ),
    (
        "hostile_e2e",
        &[
            "library_dir_symlinked_out_crun_cgroup_v2",
            "dev_symlinked_to_root_crun_cgroup_v2",
            "library_target_symlinked_up_crun_cgroup_v2",
            "nvidia_caps_symlinked_crun_cgroup_v2",
            "image_ldconfig_is_never_run_crun_cgroup_v2",
            "image_ld_cache_hostile_crun_cgroup_v2",
        ],
    ),
    ("fault_e2e", &["killed_at_every_step_crun_cgroup_v2"]),
    (
        "userns_e2e",
        &["hook_crun_cgroup_v2", "runtime_crun_cgroup_v2"],
    ),
];

/// The differences between the VM's run of [`CRUN_V2_TESTS`] (its output) and what must be,
/// one line each: every test `ok`, every binary exited 0, no skip.
fn compare_cargo_tests(output: &str, skips: &str) -> Vec<String> {
    let mut problems = Vec::new();
    for (binary, tests) in CRUN_V2_TESTS {
        let end = format!("VM-CARGO-TEST-END {binary} rc=");
        match output.lines().find_map(|l| l.strip_prefix(&end)) {
            Some("0") => {}
            Some(rc) => problems.push(format!("{binary} in the VM exited {rc}")),
            None => problems.push(format!("{binary} did not run in the VM")),
        }
        for t in *tests {
            if !output
                .lines()
                .any(|l| l.trim() == format!("test {t} ... ok"))
            {
                problems.push(format!("{binary}: {t} did not pass in the VM"));
            }
        }
    }
    problems.extend(skips.lines().map(|l| format!("skipped in the VM: {l}")));
    problems
}

#[test]
fn cargo_test_results_are_read_strictly() {
    let mut good = String::new();
    for (binary, tests) in CRUN_V2_TESTS {
        for t in *tests {
            good += &format!("test {t} ... ok\n");
        }
        good += &format!("VM-CARGO-TEST-END {binary} rc=0\n");
    }
    assert_eq!(compare_cargo_tests(&good, ""), Vec::<String>::new());
    let failed = good.replace(
        "test every_form_crun_cgroup_v2 ... ok",
        "test every_form_crun_cgroup_v2 ... FAILED",
    );
    assert_eq!(compare_cargo_tests(&failed, "").len(), 1);
    let exited = good.replace("hook_e2e rc=0", "hook_e2e rc=101");
    assert_eq!(compare_cargo_tests(&exited, "").len(), 1);
    assert_eq!(compare_cargo_tests(&good, "SKIP x: y\n").len(), 1);
    assert_eq!(
        compare_cargo_tests("", "").len(),
        CRUN_V2_TESTS
            .iter()
            .map(|(_, t)| t.len() + 1)
            .sum::<usize>()
    );
}

/// The test executables of [`CRUN_V2_TESTS`] (name, path), built by cargo here.
fn crun_v2_test_binaries(repo: &Path) -> Vec<(String, String)> {
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args(["test", "--no-run", "--message-format=json"]);
    for (binary, _) in CRUN_V2_TESTS {
        cmd.args(["--test", binary]);
    }
    let out = cmd.current_dir(repo).output().unwrap();
    assert!(
        out.status.success(),
        "cargo test --no-run failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut found = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(v) = serde_json::from_str::<serde_json::Value>(line).ok() else {
            continue;
        };
        let (Some(name), Some(exe)) = (v["target"]["name"].as_str(), v["executable"].as_str())
        else {
            continue;
        };
        if CRUN_V2_TESTS.iter().any(|(b, _)| *b == name) {
            found.push((name.to_string(), exe.to_string()));
        }
    }
    assert_eq!(found.len(), CRUN_V2_TESTS.len(), "test binaries: {found:?}");
    found
}

/// What the guest runs: mount the extra shares at their paths, the scenarios, then the crun on
/// cgroup v2 tests from their binaries, one binary at a time and two tests at a time (as cargo
/// runs them here; the VM has two CPUs, and one at a time took about 500 s of its 960).
const GUEST_RUN: &str = r#"share=$(pwd)
while read -r tag dir; do
  mkdir -p "$dir"
  mount -t 9p -o trans=virtio,version=9p2000.L,msize=1048576,cache=loose "$tag" "$dir" ||
    { echo "cannot mount the share $tag on $dir"; exit 1; }
done <extra-shares
bash ./scenarios.sh
rc=$?
: >"$share/skips"
while read -r name exe; do
  echo "VM-CARGO-TEST-BEGIN $name"
  (cd "$(cat "$share/repo")" && MIGCAGE_SKIP_LOG="$share/skips" MIGCAGE_TEST_DLPROBE="$share/dlprobe"     "$exe" crun_cgroup_v2 --ignored --test-threads=2 2>&1)
  echo "VM-CARGO-TEST-END $name rc=$?"
done <cargo-tests
exit $rc
"#;

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
    std::fs::create_dir_all(s.join("units")).unwrap();
    for unit in ["migcage-cdi.service", "migcage-cdi.path"] {
        copy(
            &repo.join("packaging").join(unit),
            &s.join("units").join(unit),
        );
    }
    // MIGCAGE_VM_MODES (scenarios.sh) narrows a run by hand; the comparison then fails on the
    // modes left out.
    let modes = std::env::var("MIGCAGE_VM_MODES").unwrap_or_default();
    let modes = modes
        .split_whitespace()
        .filter(|m| m.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        .collect::<Vec<_>>()
        .join(" ");
    std::fs::write(
        s.join("run.sh"),
        format!("export MIGCAGE_VM_MODES='{modes}'\n{GUEST_RUN}"),
    )
    .unwrap();
    // The crun-on-cgroup-v2 tests: their binaries, the dlopen probe they would compile (the VM
    // has no compiler), and the directories the binaries name, shared at the same paths.
    let tests: String = crun_v2_test_binaries(repo)
        .iter()
        .map(|(n, e)| format!("{n} {e}\n"))
        .collect();
    std::fs::write(s.join("cargo-tests"), tests).unwrap();
    std::fs::write(s.join("repo"), repo.to_str().unwrap()).unwrap();
    let probe = common::driver::build_dlprobe(&s.join("dlprobe-build"));
    copy(&probe, &s.join("dlprobe"));
    let target = bin_dir.parent().unwrap();
    let mut shares = repo.display().to_string();
    if !target.starts_with(repo) {
        shares += &format!(" {}", target.display());
    }

    let out = Command::new(repo.join("scripts/vm/run.sh"))
        .arg(s)
        .env("MIGCAGE_VM_SHARES", shares)
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
    let skips = std::fs::read_to_string(s.join("skips")).unwrap_or_default();
    let mut problems = compare(&log, EXPECTED);
    problems.extend(compare_cargo_tests(&log, &skips));
    assert!(
        problems.is_empty(),
        "VM results differ from EXPECTED in tests/vm.rs:\n{}",
        problems.join("\n")
    );
}
