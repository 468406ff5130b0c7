//! End to end with the container specs Kubernetes makes: each fixture in tests/fixtures/k8s is a
//! config.json as kubelet + containerd wrote it for a pod given MIG devices by the NVIDIA device
//! plugin (device-list strategies envvar, volume-mounts and cdi-annotations; MIG strategies
//! single and mixed; see tests/fixtures/k8s/README.md). Each runs as a runc bundle with migcage's
//! hook on a simulated node whose MIG devices have the fixtures' UUIDs, and the probe proves the
//! container gets exactly the instances the device plugin named.
//!
//! What the test changes in a fixture, only to run it here: the root filesystem and the command
//! (busybox and the probe), the sources of the kubelet's bind mounts (files of the pod's
//! directories on a real node; stand-ins in the bundle), the sandbox's namespace paths (there is
//! no pause container), the cgroup path (runc's default, so that the test can check it is gone),
//! the AppArmor profile (this kernel has no AppArmor), the abridged seccomp profile, and the
//! resources other than the device rules (see `bundle`). The environment, the annotations, the
//! device mounts and the device lists stay as they are, and the probe's view of the host's nodes
//! is one more read-only bind mount.

mod common;

use std::path::Path;

use common::{assert_sees_exactly, Bundle, Mode, SimHost, MIGCAGE, PROBE};
use serde_json::{json, Value};

/// Fixture -> the devices (as `migcage list` names them on the fixtures' node) it must give.
const FIXTURES: [(&str, &[&str]); 6] = [
    ("envvar.json", &["0:2"]),
    ("volume-mounts.json", &["0:2"]),
    ("cdi-annotations.json", &["0:2"]),
    ("mig-single-envvar.json", &["0:4", "0:5"]),
    ("mig-mixed-volume-mounts.json", &["0:3"]),
    ("mig-mixed-cdi-annotations.json", &["0:6"]),
];

fn fixtures_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/k8s")
}

/// Kubelet bind mounts whose source is a directory (the others are files).
const DIR_MOUNTS: [&str; 2] = ["/dev/shm", "/var/run/secrets/kubernetes.io/serviceaccount"];

/// The fixture as a runnable busybox bundle with migcage's prestart hook.
fn bundle(name: &str, host: &SimHost) -> Bundle {
    let text = std::fs::read_to_string(fixtures_dir().join(name)).unwrap();
    let mut spec: Value = serde_json::from_str(&text).unwrap();
    let dir = tempfile::Builder::new()
        .prefix("migcage-k8s-")
        .tempdir()
        .unwrap();
    common::busybox_rootfs(&dir.path().join("rootfs"));
    spec["root"] = json!({"path": "rootfs", "readonly": false});
    spec["process"]["args"] = json!(["sh", "-c", PROBE]);
    spec["process"]
        .as_object_mut()
        .unwrap()
        .remove("apparmorProfile");
    let stand_ins = dir.path().join("kubelet");
    std::fs::create_dir_all(&stand_ins).unwrap();
    for (i, m) in spec["mounts"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .enumerate()
    {
        let source = m["source"].as_str().unwrap_or_default().to_string();
        if m["type"] != "bind" || !source.starts_with('/') || source == "/dev/null" {
            continue;
        }
        let stand_in = stand_ins.join(i.to_string());
        if DIR_MOUNTS.contains(&m["destination"].as_str().unwrap()) {
            std::fs::create_dir_all(&stand_in).unwrap();
        } else {
            std::fs::write(&stand_in, b"").unwrap();
        }
        m["source"] = json!(stand_in.display().to_string());
    }
    spec["mounts"].as_array_mut().unwrap().push(json!({
        "destination": "/hostdev", "type": "bind",
        "source": host.dev().display().to_string(), "options": ["rbind", "ro"]
    }));
    let linux = spec["linux"].as_object_mut().unwrap();
    linux.remove("cgroupsPath");
    for ns in linux["namespaces"].as_array_mut().unwrap() {
        ns.as_object_mut().unwrap().remove("path");
    }
    // The fixtures' seccomp profile is an abridged one that runc's own init does not pass.
    linux.remove("seccomp");
    // Only the device rules of the resources: a BestEffort pod's cpu.shares of 2 starves the
    // probe on a busy 2-core machine, `unified` is for cgroup v2 only, and this hybrid host's
    // cgroup2 has no cpu or memory controller.
    linux["resources"]
        .as_object_mut()
        .unwrap()
        .retain(|k, _| k == "devices");
    spec["hooks"] = json!({"prestart": [{
        "path": MIGCAGE,
        "args": ["migcage", "hook", "prestart"],
        "env": [format!("MIGCAGE_CONFIG={}", host.config().display())]
    }]});
    let b = Bundle { dir, config: spec };
    b.write();
    b
}

fn fixtures_give_the_named_instances(mode: Mode) {
    if let Some(why) = mode.unavailable() {
        common::skip(&format!(
            "fixtures_give_the_named_instances {mode:?}: {why}"
        ));
        return;
    }
    let host = SimHost::new(fixtures_dir().join("topology.toml").to_str().unwrap());
    let listing = host.list();
    for (name, names) in FIXTURES {
        let b = bundle(name, &host);
        let run = common::run(mode, &b, &host);
        let ctx = format!("{mode:?} {name} ({})", run.id);
        assert!(run.ok(), "{ctx}: container failed: {}", run.stderr());
        assert_sees_exactly(&run, &host, &listing, names, &ctx);
    }
}

#[test]
fn fixtures_give_the_named_instances_runc_cgroup_v1() {
    fixtures_give_the_named_instances(Mode::RuncV1);
}

#[test]
fn fixtures_give_the_named_instances_runc_cgroup_v2() {
    fixtures_give_the_named_instances(Mode::RuncV2);
}

#[test]
fn every_fixture_is_tested() {
    let mut on_disk: Vec<String> = std::fs::read_dir(fixtures_dir())
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|n| n.ends_with(".json"))
        .collect();
    on_disk.sort();
    let mut tested: Vec<String> = FIXTURES.iter().map(|(n, _)| n.to_string()).collect();
    tested.sort();
    assert_eq!(on_disk, tested);
}
