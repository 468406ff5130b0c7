//! `migcage configure --cdi`: the engine's own CDI turned on where its version has it, refused
//! with one line (and nothing written) where it does not; and the layout of a new containerd file
//! following the containerd version (3 for 2.x).

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::configure::{configure, ok};

use common::MIGCAGE;

/// The one error line; the directory holds only what it held before.
fn refused(out: &Output, dir: &Path, before: usize) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(std::fs::read_dir(dir).unwrap().count(), before, "{err}");
    err
}

#[test]
fn this_machines_containerd_1_6_is_refused_cdi() {
    let version = Command::new("containerd").arg("--version").output();
    let Ok(version) = version else {
        common::skip("this_machines_containerd_1_6_is_refused_cdi: containerd is not installed (scripts/deps.sh installs it)");
        return;
    };
    let printed = String::from_utf8_lossy(&version.stdout).into_owned();
    let d = tempfile::tempdir().unwrap();
    let file = d.path().join("config.toml");
    std::fs::write(&file, "version = 2\n").unwrap();
    let out = configure(&[
        "containerd",
        "--cdi",
        "--config-file",
        file.to_str().unwrap(),
    ]);
    if printed.contains(" 1.6.") {
        let err = refused(&out, d.path(), 1);
        assert!(
            err.starts_with("migcage: containerd 1.6.")
                && err.contains("has no CDI (it came in containerd 1.7)"),
            "{err}"
        );
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "version = 2\n");
    } else {
        // A newer containerd on this machine: the edit goes through.
        ok(&out);
    }
    // A stated 1.6 is refused whatever is installed, and no file is made.
    let missing = d.path().join("new.toml");
    let out = configure(&[
        "containerd",
        "--cdi",
        "--engine-version",
        "1.6.20",
        "--config-file",
        missing.to_str().unwrap(),
    ]);
    let err = refused(&out, d.path(), 1);
    assert!(err.contains("containerd 1.6.20 has no CDI"), "{err}");
}

#[test]
fn cdi_for_containerd_1_7_and_2() {
    let d = tempfile::tempdir().unwrap();
    let v2 = d.path().join("v2.toml");
    let fixture = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/configure/containerd-1.6-default.toml"),
    )
    .unwrap();
    std::fs::write(&v2, &fixture).unwrap();
    let f = v2.to_str().unwrap();
    let report = ok(&configure(&[
        "containerd",
        "--cdi",
        "--engine-version",
        "1.7.24",
        "--config-file",
        f,
    ]));
    assert!(report.contains("turned on CDI; backup "), "{report}");
    let doc: toml::Table = std::fs::read_to_string(&v2).unwrap().parse().unwrap();
    let cri = &doc["plugins"]["io.containerd.grpc.v1.cri"];
    assert_eq!(cri["enable_cdi"].as_bool(), Some(true));
    assert_eq!(
        cri["cdi_spec_dirs"],
        toml::Value::Array(vec!["/etc/cdi".into(), "/var/run/cdi".into()])
    );
    // Nothing else changed: no runtime entry is registered with --cdi.
    assert!(cri["containerd"]["runtimes"].get("migcage").is_none());
    let again = ok(&configure(&[
        "containerd",
        "--cdi",
        "--engine-version",
        "1.7.24",
        "--config-file",
        f,
    ]));
    assert!(
        again.contains("already turns on CDI; nothing changed"),
        "{again}"
    );

    // containerd 2.x and no file: a version 3 file, CDI in the runtime plugin's table.
    let v3 = d.path().join("v3.toml");
    ok(&configure(&[
        "containerd",
        "--cdi",
        "--engine-version",
        "2.1.9",
        "--config-file",
        v3.to_str().unwrap(),
    ]));
    let doc: toml::Table = std::fs::read_to_string(&v3).unwrap().parse().unwrap();
    assert_eq!(doc["version"].as_integer(), Some(3));
    assert_eq!(
        doc["plugins"]["io.containerd.cri.v1.runtime"]["enable_cdi"].as_bool(),
        Some(true)
    );
}

#[test]
fn a_new_containerd_file_follows_the_stated_version() {
    let d = tempfile::tempdir().unwrap();
    let bin = d.path().join("migcage-runtime");
    std::os::unix::fs::symlink(MIGCAGE, &bin).unwrap();
    for (version, layout, plugin) in [
        ("1.7.24", 2, "io.containerd.grpc.v1.cri"),
        ("2.1.9", 3, "io.containerd.cri.v1.runtime"),
    ] {
        let file = d.path().join(format!("{version}.toml"));
        ok(&configure(&[
            "containerd",
            "--engine-version",
            version,
            "--binary",
            bin.to_str().unwrap(),
            "--config-file",
            file.to_str().unwrap(),
        ]));
        let doc: toml::Table = std::fs::read_to_string(&file).unwrap().parse().unwrap();
        assert_eq!(doc["version"].as_integer(), Some(layout), "{version}");
        let rt = &doc["plugins"][plugin]["containerd"]["runtimes"];
        assert!(
            rt["runc"].is_table() && rt["migcage"].is_table(),
            "{version}"
        );
    }
}

#[test]
fn docker_cdi_from_25_and_bad_flags() {
    let d = tempfile::tempdir().unwrap();
    let file = d.path().join("daemon.json");
    let f = file.to_str().unwrap();
    let err = refused(
        &configure(&[
            "docker",
            "--cdi",
            "--engine-version",
            "24.0.9",
            "--config-file",
            f,
        ]),
        d.path(),
        0,
    );
    assert!(
        err.starts_with("migcage: Docker 24.0.9 has no CDI (it came in Docker 25.0)"),
        "{err}"
    );
    ok(&configure(&[
        "docker",
        "--cdi",
        "--engine-version",
        "25.0.3",
        "--config-file",
        f,
    ]));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(v, serde_json::json!({"features": {"cdi": true}}));
    for (args, want) in [
        (
            vec!["podman", "--cdi"],
            "--cdi is for docker and containerd",
        ),
        (
            vec!["docker", "--cdi", "--set-default", "--config-file", f],
            "--set-default has none to make the default",
        ),
        (
            vec!["containerd", "--engine-version", "new", "--config-file", f],
            "--engine-version \"new\" is not a version",
        ),
    ] {
        let err = refused(&configure(&args), d.path(), 1);
        assert!(err.contains(want), "{args:?}: {err}");
    }
}
