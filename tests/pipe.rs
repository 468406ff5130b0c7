//! Every command that writes to stdout behaves in a pipe: when the reader has gone
//! (`migcage list | head -c1`), it ends quietly as `cat` does (killed by SIGPIPE: status 141 in
//! the shell), with nothing on stderr: no panic, no stack trace. And every error, clap's parser
//! errors included, is one line with the one prefix `migcage: `.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};

use common::{SimHost, MIGCAGE};

/// The argument lists of every command that reports something, on the simulated host at `dir`.
fn commands(host: &SimHost, dir: &Path) -> Vec<Vec<String>> {
    let config = host.config().display().to_string();
    let spec = dir.join("config.json");
    std::fs::write(
        &spec,
        r#"{"ociVersion":"1.0.2","process":{"env":["NVIDIA_VISIBLE_DEVICES=0:1"],"args":["sh"],"cwd":"/"},"root":{"path":"rootfs"}}"#,
    )
    .unwrap();
    let cdi = dir.join("cdi");
    std::fs::create_dir_all(&cdi).unwrap();
    let d = |name: &str| dir.join(name).display().to_string();
    let spec = spec.display().to_string();
    let mut lists: Vec<Vec<String>> = vec![
        vec!["--help".into()],
        vec!["--version".into()],
        vec!["list".into(), "--help".into()],
        vec!["config".into()],
        vec!["config".into(), "default".into()],
        vec![
            "simulate".into(),
            "--topology".into(),
            "a100-7x1g".into(),
            "--root".into(),
            d("sim"),
        ],
        vec!["list".into()],
        vec!["list".into(), "--json".into()],
        vec!["config".into(), "get".into(), "dev_root".into()],
        vec![
            "config".into(),
            "set".into(),
            "log.level".into(),
            "debug".into(),
            "--dry-run".into(),
        ],
        vec!["refresh".into()],
        vec!["doctor".into()],
        vec!["doctor".into(), "--json".into()],
        vec!["explain".into(), "--spec".into(), spec.clone()],
        vec!["explain".into(), "--spec".into(), spec, "--json".into()],
        vec![
            "cdi".into(),
            "generate".into(),
            "--output".into(),
            "-".into(),
        ],
        vec!["cdi".into(), "generate".into(), "--output".into(), d("cdi")],
        vec!["cdi".into(), "list".into(), "--spec".into(), d("cdi")],
        vec![
            "cdi".into(),
            "list".into(),
            "--spec".into(),
            d("cdi"),
            "--json".into(),
        ],
        vec![
            "configure".into(),
            "podman".into(),
            "--hooks-dir".into(),
            d("hooks"),
            "--dry-run".into(),
        ],
        vec![
            "system".into(),
            "create-dev-char-links".into(),
            "--dry-run".into(),
            "--dev-char-dir".into(),
            d("char"),
        ],
        vec!["generate".into(), "completions".into(), "bash".into()],
        vec!["mig".into(), "export".into()],
        vec!["mig".into(), "export".into(), "--json".into()],
        vec!["mig".into(), "capacity".into()],
        vec!["mig".into(), "capacity".into(), "--json".into()],
    ];
    // a100-7x1g has `seven`; `one-7g` is a plan of 15 steps.
    let parted = dir.join("mig-parted.yaml");
    std::fs::write(
        &parted,
        "version: v1\nmig-configs:\n  seven:\n    - devices: all\n      mig-enabled: true\n      mig-devices: { \"1g.5gb\": 7 }\n  one-7g:\n    - devices: all\n      mig-enabled: true\n      mig-devices: { \"7g.40gb\": 1 }\n",
    )
    .unwrap();
    let parted = parted.display().to_string();
    for (verb, name, extra) in [
        ("assert", "seven", None),
        ("assert", "seven", Some("--json")),
        ("apply", "one-7g", Some("--dry-run")),
    ] {
        let mut l: Vec<String> = ["mig", verb, "-f", &parted, "-c", name]
            .map(String::from)
            .to_vec();
        l.extend(extra.map(String::from));
        lists.push(l);
    }
    lists.push(
        [
            "mig",
            "apply",
            "-f",
            &parted,
            "-c",
            "one-7g",
            "--dry-run",
            "--json",
        ]
        .map(String::from)
        .to_vec(),
    );
    if common::have("runc") {
        lists.push(vec!["runtime".into(), "--version".into()]);
        lists.push(vec!["runtime".into(), "--help".into()]);
    }
    for l in &mut lists {
        l.splice(0..0, ["--config".to_string(), config.clone()]);
    }
    lists
}

#[test]
fn every_command_ends_quietly_when_its_reader_is_gone() {
    if common::skip_unless(
        common::is_root(),
        "every_command_ends_quietly_when_its_reader_is_gone",
        "simulate needs root (CAP_MKNOD)",
    ) {
        return;
    }
    let host = SimHost::new("a100-7x1g");
    let dir = tempfile::tempdir().unwrap();
    for args in commands(&host, dir.path()) {
        // The read end closed before the command writes: its first write gets EPIPE.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = Command::new(MIGCAGE)
            .args(&args)
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let ctx = format!(
            "migcage {}: {:?}, stderr {stderr:?}",
            args[2..].join(" "),
            out.status
        );
        assert_eq!(out.status.signal(), Some(libc::SIGPIPE), "{ctx}");
        assert!(
            !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
            "{ctx}"
        );
        assert!(stderr.lines().all(|l| l.starts_with("migcage: ")), "{ctx}");
    }
}

#[test]
fn head_c1_takes_one_byte_and_the_shell_sees_a_unix_status() {
    if common::skip_unless(
        common::is_root(),
        "head_c1_takes_one_byte_and_the_shell_sees_a_unix_status",
        "simulate needs root (CAP_MKNOD)",
    ) {
        return;
    }
    let host = SimHost::new("dgx-8x7");
    let dir = tempfile::tempdir().unwrap();
    for args in commands(&host, dir.path()) {
        let out = Command::new("bash")
            .arg("-c")
            .arg(r#""$@" | head -c1; echo " ${PIPESTATUS[0]}""#)
            .arg("bash")
            .arg(MIGCAGE)
            .args(&args)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let ctx = format!(
            "migcage {}: stdout {stdout:?}, stderr {stderr:?}",
            args[2..].join(" ")
        );
        // One byte, then the status: 141 when the command was still writing, 0 when everything
        // fit in the pipe before head left; 1 for doctor's verdict on a host with failures.
        let (byte, status) = stdout.split_at(1);
        assert!(!byte.trim().is_empty(), "{ctx}");
        let status = status.trim();
        assert!(["0", "1", "141"].contains(&status), "{ctx}");
        assert!(status != "1" || args[2] == "doctor", "{ctx}");
        assert!(!stderr.contains("panicked"), "{ctx}");
        assert!(stderr.lines().all(|l| l.starts_with("migcage: ")), "{ctx}");
    }
}

#[test]
fn every_parser_error_is_one_line_with_the_one_prefix() {
    let cases: &[&[&str]] = &[
        &[],
        &["nosuch"],
        &["list", "--nosuch"],
        &["hook", "nostage"],
        &["explain"],
        &["explain", "--spec", "a", "--bundle", "b"],
        &["cdi"],
        &["cdi", "list", "--nosuch"],
        &["configure", "nosuch"],
        &["system"],
    ];
    for args in cases {
        let out = Command::new(MIGCAGE).args(*args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let ctx = format!("migcage {}: {stderr:?}", args.join(" "));
        assert_eq!(out.status.code(), Some(2), "{ctx}");
        assert!(out.stdout.is_empty(), "{ctx}");
        assert_eq!(stderr.lines().count(), 1, "{ctx}");
        assert!(
            stderr.starts_with("migcage: ") && !stderr.contains("error:"),
            "{ctx}"
        );
        assert!(stderr.trim_end().ends_with("--help'"), "{ctx}");
    }
    // explain names both of its inputs.
    let out = Command::new(MIGCAGE).arg("explain").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--bundle") && stderr.contains("--spec"),
        "{stderr}"
    );
}

#[test]
fn an_empty_override_is_ignored_with_a_warning() {
    let out = Command::new(MIGCAGE)
        .arg("config")
        .env("MIGCAGE_CONFIG", "")
        .env("MIGCAGE_SIM_ARTIFACTS", "")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("dev_root"));
    assert_eq!(
        stderr.lines().collect::<Vec<_>>(),
        [
            "migcage: warning: MIGCAGE_CONFIG is set but empty: ignored (unset it, or name a file)",
            "migcage: warning: MIGCAGE_SIM_ARTIFACTS is set but empty: ignored (unset it, or name a file)"
        ]
    );
}
