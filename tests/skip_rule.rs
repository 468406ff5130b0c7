//! The skip rule: a test that cannot run says so visibly and in $MIGCAGE_SKIP_LOG, and
//! scripts/check-skips.sh (run by scripts/test.sh) fails on a skip not on tests/skips.allow.

mod common;

use std::path::Path;
use std::process::Command;

/// An allow-list as tests/skips.allow writes one (the real list is empty when every mode runs).
const ALLOW: &str = "# crun on cgroup v2, where CAP_SYS_RESOURCE is missing.\n\n^SKIP .*CrunV2.*: crun on cgroup v2 needs CAP_SYS_RESOURCE to raise RLIMIT_MEMLOCK, not granted here$\n";

/// The CrunV2 skip line, as `Mode::CrunV2` words it where CAP_SYS_RESOURCE is missing.
const CRUN_V2_SKIP: &str = "SKIP every_form CrunV2: crun on cgroup v2 needs CAP_SYS_RESOURCE to raise RLIMIT_MEMLOCK, not granted here\n";

/// scripts/check-skips.sh on `log`, with `allow` as its allow-list (None: tests/skips.allow).
fn check_with(log: &Path, allow: Option<&Path>) -> std::process::Output {
    let mut cmd = Command::new("bash");
    cmd.arg(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/check-skips.sh"
    ))
    .arg(log);
    if let Some(a) = allow {
        cmd.arg(a);
    }
    cmd.output().unwrap()
}

/// scripts/check-skips.sh on `log`, with [`ALLOW`] as its allow-list.
fn check(log: &Path) -> std::process::Output {
    let allow = log.with_file_name("skips.allow");
    std::fs::write(&allow, ALLOW).unwrap();
    check_with(log, Some(&allow))
}

#[test]
fn the_shipped_list_allows_no_skip_of_a_mode() {
    // Every cgroup mode runs in CI (crun on cgroup v2 in the systemd VM): a skip of one fails.
    let d = tempfile::tempdir().unwrap();
    let log = d.path().join("skips");
    std::fs::write(&log, CRUN_V2_SKIP).unwrap();
    assert_eq!(check_with(&log, None).status.code(), Some(1));
}

#[test]
fn an_allowed_skip_passes_and_is_printed() {
    let d = tempfile::tempdir().unwrap();
    let log = d.path().join("skips");
    std::fs::write(&log, CRUN_V2_SKIP).unwrap();
    let out = check(&log);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("skip (allowed): SKIP every_form CrunV2"),
        "{stdout}"
    );
}

#[test]
fn a_skip_not_on_the_list_fails_the_suite() {
    let d = tempfile::tempdir().unwrap();
    let log = d.path().join("skips");
    std::fs::write(
        &log,
        "SKIP every_form RuncV1: needs root (runtimes, mknod, cgroups)\n",
    )
    .unwrap();
    let out = check(&log);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("skip (NOT ALLOWED): SKIP every_form RuncV1"),
        "{stdout}"
    );
    // The allow-list entry is anchored: the same reason under another mode does not pass.
    std::fs::write(
        &log,
        "SKIP every_form RuncV2: crun on cgroup v2 needs CAP_SYS_RESOURCE to raise RLIMIT_MEMLOCK, not granted here\n",
    )
    .unwrap();
    assert_eq!(check(&log).status.code(), Some(1));
}

#[test]
fn no_skips_passes() {
    let d = tempfile::tempdir().unwrap();
    let log = d.path().join("skips");
    std::fs::write(&log, "").unwrap();
    let out = check(&log);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("skips: none"));
}

#[test]
fn skip_writes_the_log_line() {
    let d = tempfile::tempdir().unwrap();
    let log = d.path().join("skips");
    // This test binary run again for the one helper test, with the log set for it alone and
    // libtest's capture on (no --nocapture), as under `cargo test`.
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "skip_helper_child"])
        .env("MIGCAGE_SKIP_LOG", &log)
        .env("MIGCAGE_SKIP_RULE_CHILD", "1")
        .output()
        .unwrap();
    assert!(child.status.success());
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(text, "SKIP skip_helper_child: a reason\n");
    // And it reached stderr although the harness captures eprintln! output.
    assert!(String::from_utf8_lossy(&child.stderr).contains("SKIP skip_helper_child: a reason"));
}

/// Runs only as the child of `skip_writes_the_log_line`.
#[test]
fn skip_helper_child() {
    if std::env::var_os("MIGCAGE_SKIP_RULE_CHILD").is_some() {
        common::skip(&format!("{}: a reason", common::test_name()));
    }
}
