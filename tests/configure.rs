//! `migcage configure` on real-shaped files of each engine: what it writes, that the rest of the
//! file survives, that a second run changes nothing, that `--dry-run` changes nothing, and that
//! the file it changes is backed up first.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::configure::{configure, ok};

use serde_json::{json, Value};

use common::MIGCAGE;

fn fixture(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/configure")
            .join(name),
    )
    .unwrap()
}

fn backups(file: &Path) -> Vec<PathBuf> {
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    let mut v: Vec<PathBuf> = std::fs::read_dir(file.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(&format!("{name}.migcage-backup-"))
        })
        .collect();
    v.sort();
    v
}

/// A stand-in for the runtime link: `--binary` must exist.
fn binary(dir: &Path) -> PathBuf {
    let b = dir.join("migcage-runtime");
    std::os::unix::fs::symlink(MIGCAGE, &b).unwrap();
    b
}

/// Run configure on `file` (holding `original`) and check the common promises: the change, the
/// backup, a second run changing nothing, and a dry run on the original changing nothing.
fn check_edit(target: &str, file: &Path, original: &str, extra: &[&str]) -> String {
    let file_arg = file.to_str().unwrap();
    // Dry run first: prints a diff, changes nothing.
    let out = ok(&configure(
        &[&[target, "--config-file", file_arg, "--dry-run"], extra].concat(),
    ));
    assert!(
        out.contains(&format!("--- {file_arg}\n+++ {file_arg}\n@@ ")),
        "{target} dry run: {out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with('+') && l.contains("migcage")),
        "{out}"
    );
    assert_eq!(
        std::fs::read_to_string(file).unwrap(),
        original,
        "{target}: dry run wrote"
    );
    assert!(backups(file).is_empty(), "{target}: dry run made a backup");

    let out = ok(&configure(
        &[&[target, "--config-file", file_arg], extra].concat(),
    ));
    assert!(out.contains("registered migcage"), "{out}");
    let b = backups(file);
    assert_eq!(b.len(), 1, "{target}: backups {b:?}");
    assert!(out.contains(&format!("backup {}", b[0].display())), "{out}");
    assert_eq!(
        std::fs::read_to_string(&b[0]).unwrap(),
        original,
        "{target}: backup content"
    );
    let edited = std::fs::read_to_string(file).unwrap();
    assert_ne!(edited, original);

    // Idempotent: nothing changes, no new backup.
    let out = ok(&configure(
        &[&[target, "--config-file", file_arg], extra].concat(),
    ));
    assert!(
        out.contains("nothing changed"),
        "{target} second run: {out}"
    );
    assert_eq!(std::fs::read_to_string(file).unwrap(), edited);
    assert_eq!(backups(file).len(), 1);
    let out = ok(&configure(
        &[&[target, "--config-file", file_arg, "--dry-run"], extra].concat(),
    ));
    assert!(out.contains("no change"), "{out}");
    edited
}

#[test]
fn docker_daemon_json() {
    let d = tempfile::tempdir().unwrap();
    let bin = binary(d.path());
    let file = d.path().join("daemon.json");
    let original = fixture("daemon.json");
    std::fs::write(&file, &original).unwrap();
    let edited = check_edit(
        "docker",
        &file,
        &original,
        &["--binary", bin.to_str().unwrap()],
    );
    let before: Value = serde_json::from_str(&original).unwrap();
    let mut after: Value = serde_json::from_str(&edited).unwrap();
    assert_eq!(
        after["runtimes"]["migcage"],
        json!({"path": bin.display().to_string()})
    );
    // Everything else is as it was, in its place.
    after["runtimes"].as_object_mut().unwrap().remove("migcage");
    assert_eq!(after, before);
    assert!(edited.starts_with("{\n  \"data-root\": \"/var/lib/docker\",\n  \"exec-opts\": [\"native.cgroupdriver=systemd\"],"), "{edited}");

    // --set-default then adds only default-runtime.
    let out = ok(&configure(&[
        "docker",
        "--config-file",
        file.to_str().unwrap(),
        "--binary",
        bin.to_str().unwrap(),
        "--set-default",
    ]));
    assert!(out.contains("registered"), "{out}");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(v["default-runtime"], "migcage");
    assert_eq!(backups(&file).len(), 2);
}

#[test]
fn docker_without_a_file_creates_it() {
    let d = tempfile::tempdir().unwrap();
    let bin = binary(d.path());
    let file = d.path().join("etc/docker/daemon.json");
    let out = ok(&configure(&[
        "docker",
        "--config-file",
        file.to_str().unwrap(),
        "--binary",
        bin.to_str().unwrap(),
    ]));
    assert!(out.contains("new file"), "{out}");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(
        v,
        json!({"runtimes": {"migcage": {"path": bin.display().to_string()}}})
    );
    assert!(backups(&file).is_empty());
}

#[test]
fn docker_default_binary_is_the_runtime_link_beside_migcage() {
    let d = tempfile::tempdir().unwrap();
    let file = d.path().join("daemon.json");
    // May already exist from an earlier run: either way, afterwards it is a link to migcage.
    let link = Path::new(MIGCAGE).with_file_name("migcage-runtime");
    let out = ok(&configure(&[
        "docker",
        "--config-file",
        file.to_str().unwrap(),
    ]));
    let meta = std::fs::symlink_metadata(&link).unwrap();
    assert!(meta.file_type().is_symlink(), "{}", link.display());
    assert_eq!(
        std::fs::canonicalize(&link).unwrap(),
        std::fs::canonicalize(MIGCAGE).unwrap()
    );
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(
        v["runtimes"]["migcage"]["path"],
        link.display().to_string(),
        "{out}"
    );
    // The link runs migcage as the runtime wrapper: runc's own version comes back.
    if !(Path::new("/usr/sbin/runc").exists() || Path::new("/usr/bin/runc").exists()) {
        common::skip("docker_default_binary_is_the_runtime_link_beside_migcage (running the link): runc is not installed (scripts/deps.sh installs it)");
    } else {
        let out = Command::new(&link).arg("--version").output().unwrap();
        // migcage's own version line, then runc's.
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.starts_with("migcage-runtime version")
                && text.lines().any(|l| l.starts_with("runc version")),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn containerd_version_2() {
    let d = tempfile::tempdir().unwrap();
    let bin = binary(d.path());
    let file = d.path().join("config.toml");
    let original = fixture("containerd-1.6-default.toml");
    std::fs::write(&file, &original).unwrap();
    let edited = check_edit(
        "containerd",
        &file,
        &original,
        &["--binary", bin.to_str().unwrap()],
    );
    // Every original line is still there, in order (comments, layout, values).
    let mut rest = edited.as_str();
    for line in original.lines() {
        let at = rest
            .find(line)
            .unwrap_or_else(|| panic!("lost line {line:?}"));
        rest = &rest[at + line.len()..];
    }
    let doc: toml::Table = edited.parse().unwrap();
    let rt = &doc["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"]["migcage"];
    assert_eq!(rt["runtime_type"].as_str(), Some("io.containerd.runc.v2"));
    assert_eq!(rt["options"]["BinaryName"].as_str(), bin.to_str());
    assert_eq!(rt["options"]["SystemdCgroup"].as_bool(), Some(false));
    // runc's entry is untouched.
    assert_eq!(
        doc["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"]["runc"]["options"]
            ["BinaryName"]
            .as_str(),
        Some("")
    );
    // containerd itself reads the result and sees the runtime.
    if std::process::Command::new("containerd")
        .arg("--version")
        .output()
        .is_err()
    {
        common::skip("containerd_version_2 (config dump): containerd is not installed (scripts/deps.sh installs it)");
        return;
    }
    let dump = Command::new("containerd")
        .args(["--config", file.to_str().unwrap(), "config", "dump"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&dump.stdout);
    assert!(
        dump.status.success(),
        "{}",
        String::from_utf8_lossy(&dump.stderr)
    );
    assert!(
        text.contains(
            "[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.migcage.options]"
        ),
        "{text}"
    );
    assert!(
        text.contains(&format!("BinaryName = \"{}\"", bin.display())),
        "{text}"
    );
}

#[test]
fn containerd_version_3() {
    let d = tempfile::tempdir().unwrap();
    let bin = binary(d.path());
    let file = d.path().join("config.toml");
    let original = fixture("containerd-2.0-v3.toml");
    std::fs::write(&file, &original).unwrap();
    let edited = check_edit(
        "containerd",
        &file,
        &original,
        &["--binary", bin.to_str().unwrap(), "--set-default"],
    );
    assert!(
        edited.starts_with("# containerd 2.0 (config version 3)"),
        "{edited}"
    );
    let doc: toml::Table = edited.parse().unwrap();
    let c = &doc["plugins"]["io.containerd.cri.v1.runtime"]["containerd"];
    assert_eq!(c["default_runtime_name"].as_str(), Some("migcage"));
    let rt = &c["runtimes"]["migcage"];
    assert_eq!(rt["runtime_type"].as_str(), Some("io.containerd.runc.v2"));
    assert_eq!(rt["options"]["BinaryName"].as_str(), bin.to_str());
    // runc's settings carry over: the systemd cgroup driver, the sandboxer.
    assert_eq!(rt["options"]["SystemdCgroup"].as_bool(), Some(true));
    assert_eq!(rt["sandboxer"].as_str(), Some("podsandbox"));
    // Nothing was added under the version 2 name.
    assert!(doc["plugins"].get("io.containerd.grpc.v1.cri").is_none());
}

#[test]
fn containerd_without_a_file_gets_a_version_2_config() {
    let d = tempfile::tempdir().unwrap();
    let bin = binary(d.path());
    let file = d.path().join("config.toml");
    ok(&configure(&[
        "containerd",
        "--config-file",
        file.to_str().unwrap(),
        "--binary",
        bin.to_str().unwrap(),
    ]));
    let doc: toml::Table = std::fs::read_to_string(&file).unwrap().parse().unwrap();
    assert_eq!(doc["version"].as_integer(), Some(2));
    assert_eq!(
        doc["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"]["migcage"]["options"]
            ["BinaryName"]
            .as_str(),
        bin.to_str()
    );
}

fn hook_file_checks(target: &str) {
    let d = tempfile::tempdir().unwrap();
    let hooks = d.path().join("hooks.d");
    // Into a directory (made when missing), with migcage's own config passed on to the hook.
    let config = d.path().join("sim.toml");
    std::fs::write(&config, "").unwrap();
    let out = Command::new(MIGCAGE)
        .arg("--config")
        .arg(&config)
        .args(["configure", target, "--hooks-dir"])
        .arg(&hooks)
        .output()
        .unwrap();
    let text = ok(&out);
    assert!(text.contains("new file"), "{text}");
    let file = hooks.join("oci-migcage-hook.json");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let me = std::fs::canonicalize(MIGCAGE).unwrap();
    assert_eq!(
        v,
        json!({
            "version": "1.0.0",
            "hook": {"path": me.display().to_string(), "args": ["migcage", "hook", "prestart"],
                     "env": [format!("MIGCAGE_CONFIG={}", config.display())]},
            "when": {"always": true},
            "stages": ["prestart"]
        })
    );
    // The shipped file, for /usr/bin/migcage and the default config, with --config-file.
    let shipped = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("hooks/oci-migcage-hook.json"),
    )
    .unwrap();
    let usr_bin = d.path().join("usr-bin-migcage");
    std::os::unix::fs::symlink(MIGCAGE, &usr_bin).unwrap();
    let file2 = d.path().join("other.json");
    let old = "{\"version\": \"1.0.0\", \"hook\": {\"path\": \"/old/migcage\"}}\n";
    std::fs::write(&file2, old).unwrap();
    let edited = check_edit(
        target,
        &file2,
        old,
        &["--binary", usr_bin.to_str().unwrap()],
    );
    assert_eq!(
        edited,
        shipped.replace("/usr/bin/migcage", usr_bin.to_str().unwrap())
    );
}

#[test]
fn podman_hooks_d() {
    hook_file_checks("podman");
}

#[test]
fn crio_hooks_d() {
    hook_file_checks("crio");
}

#[test]
fn errors_are_one_line_and_change_nothing() {
    let d = tempfile::tempdir().unwrap();
    let bin = binary(d.path());
    let file = d.path().join("daemon.json");
    std::fs::write(&file, "{\"runtimes\": [1]}\n").unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "docker".into(),
                "--config-file".into(),
                file.display().to_string(),
                "--binary".into(),
                bin.display().to_string(),
            ],
            "\"runtimes\" is not an object",
        ),
        (
            vec!["docker".into(), "--hooks-dir".into(), "/tmp".into()],
            "--hooks-dir is for podman and crio",
        ),
        (
            vec![
                "podman".into(),
                "--set-default".into(),
                "--hooks-dir".into(),
                d.path().display().to_string(),
            ],
            "--set-default is for docker and containerd",
        ),
        (
            vec![
                "docker".into(),
                "--config-file".into(),
                file.display().to_string(),
                "--binary".into(),
                "/nonexistent/migcage-runtime".into(),
            ],
            "does not exist",
        ),
        (
            vec![
                "docker".into(),
                "--config-file".into(),
                file.display().to_string(),
                "--binary".into(),
                "relative".into(),
            ],
            "absolute path",
        ),
    ];
    for (args, want) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = configure(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(
            err.starts_with("migcage: ") && err.contains(want),
            "{args:?}: {err}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "{\"runtimes\": [1]}\n"
    );
    assert!(backups(&file).is_empty());
}
