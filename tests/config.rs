//! `migcage config set KEY VALUE` on a file: `--dry-run` prints the diff and leaves the file as
//! it was; without it the file changes in place, comments kept, and `config get` reads it back;
//! a value migcage would refuse changes nothing and fails with one line.

mod common;

use std::process::{Command, Output};

use common::MIGCAGE;

fn config(file: &std::path::Path, args: &[&str]) -> Output {
    Command::new(MIGCAGE)
        .arg("--config")
        .arg(file)
        .arg("config")
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn set_edits_the_file_and_dry_run_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.toml");
    let before = "# the operator's note\n[log]\nlevel = \"info\"\n";
    std::fs::write(&file, before).unwrap();

    let out = config(&file, &["set", "log.level", "debug", "--dry-run"]);
    assert!(out.status.success(), "{out:?}");
    let diff = String::from_utf8_lossy(&out.stdout);
    assert!(
        diff.contains("-level = \"info\"\n+level = \"debug\"\n"),
        "{diff}"
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), before);

    let out = config(&file, &["set", "log.level", "debug"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "# the operator's note\n[log]\nlevel = \"debug\"\n"
    );
    let out = config(&file, &["get", "log.level"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "debug\n");

    let out = config(&file, &["set", "host.dev_char_dir", "dev/char"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("migcage: ") && stderr.contains("not an absolute path"),
        "{stderr}"
    );
    assert!(!std::fs::read_to_string(&file)
        .unwrap()
        .contains("dev_char_dir"));
}
