//! States no runtime sends, fed to the real `migcage hook`: a pid in the hook's own mount
//! namespace, a pid in the root device cgroup, an id that is not a plain name, a bundle whose
//! root is the host's `/`. Each is refused with one line naming it, and the host is exactly as
//! before: the same mount table, the same rules in the root devices cgroup, the same lease
//! directory. Every bundle asks for a MIG instance by profile, so a hook that obeyed would lease
//! one, make nodes and grant them.

mod common;

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use common::{FakeInit, SimHost, MIGCAGE};
use serde_json::json;

/// What a forged state could change on the host.
#[derive(Debug, PartialEq, Eq)]
struct HostView {
    mountinfo: Vec<String>,
    root_device_rules: String,
    lease_dir: Vec<(String, Vec<u8>)>,
}

fn host_view(state_dir: &Path) -> HostView {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let root_device_rules =
        std::fs::read_to_string("/sys/fs/cgroup/devices/devices.list").unwrap_or_default();
    let mut lease_dir: Vec<(String, Vec<u8>)> = std::fs::read_dir(state_dir)
        .map(|d| {
            d.flatten()
                .map(|e| {
                    let bytes = std::fs::read(e.path()).unwrap_or_default();
                    (e.file_name().to_string_lossy().into_owned(), bytes)
                })
                .collect()
        })
        .unwrap_or_default();
    lease_dir.sort();
    HostView {
        mountinfo,
        root_device_rules,
        lease_dir,
    }
}

/// Run `migcage hook STAGE` with `state` on stdin: (exit code, stderr).
fn hook(host: &SimHost, stage: &str, state: &serde_json::Value) -> (i32, String) {
    let mut child = Command::new(MIGCAGE)
        .args(["hook", stage])
        .env("MIGCAGE_CONFIG", host.config())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&serde_json::to_vec(state).unwrap())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.stdout.is_empty(), "a hook's stdout is the runtime's");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A bundle asking for one 1g.5gb instance, with its root at `root` (relative to the bundle
/// unless absolute).
fn bundle(dir: &Path, root: &str) {
    std::fs::create_dir_all(dir.join("rootfs/dev")).unwrap();
    let config = json!({
        "ociVersion": "1.0.2",
        "process": {"env": ["PATH=/bin", "NVIDIA_VISIBLE_DEVICES=profile:1g.5gb"]},
        "root": {"path": root},
        "mounts": [{"destination": "/dev", "type": "tmpfs", "source": "tmpfs"}],
        "linux": {"namespaces": [{"type": "mount"}, {"type": "pid"}]}
    });
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_vec_pretty(&config).unwrap(),
    )
    .unwrap();
}

#[test]
fn forged_states_are_refused_and_touch_nothing() {
    let test = "forged_states_are_refused_and_touch_nothing";
    if common::skip_unless(
        common::is_root() && common::have("unshare"),
        test,
        "needs root and unshare (simulated nodes, mount namespaces, cgroups)",
    ) {
        return;
    }
    let host = SimHost::new("a100-7x1g");
    let state_dir = migcage_simulate::config::state_dir(host.dir.path());
    let good = tempfile::tempdir().unwrap();
    bundle(good.path(), "rootfs");
    let slash = tempfile::tempdir().unwrap();
    bundle(slash.path(), "/");
    let linked = tempfile::tempdir().unwrap();
    bundle(linked.path(), "host");
    std::os::unix::fs::symlink("/", linked.path().join("host")).unwrap();

    // A process with a mount namespace of its own, in the root device cgroup (v1 devices and
    // the cgroup2 root, whichever this host uses for devices).
    let in_root = FakeInit::new("");
    for procs in [
        "/sys/fs/cgroup/devices/cgroup.procs",
        "/sys/fs/cgroup/unified/cgroup.procs",
        "/sys/fs/cgroup/cgroup.procs",
    ] {
        let _ = std::fs::write(procs, in_root.pid.to_string());
    }
    // One a runtime could send: its own mount namespace and devices cgroup.
    let container = FakeInit::new("");
    let me = std::process::id() as i32;

    let state = |id: &str, pid: i32, bundle: &Path| {
        json!({"ociVersion": "1.0.2", "id": id, "status": "created", "pid": pid,
               "bundle": bundle})
    };
    let cases: Vec<(&str, &str, serde_json::Value, String)> = vec![
        (
            "pid in the hook's mount namespace",
            "prestart",
            state("forged-ns", me, good.path()),
            format!("pid {me}, which is in migcage's own mount namespace"),
        ),
        (
            "pid in the root cgroup",
            "prestart",
            state("forged-cg", in_root.pid, good.path()),
            format!(
                "pid {}, whose device cgroup is the root cgroup",
                in_root.pid
            ),
        ),
        (
            "id ..",
            "prestart",
            state("..", container.pid, good.path()),
            "has id \"..\"".into(),
        ),
        (
            "id .",
            "createRuntime",
            state(".", container.pid, good.path()),
            "has id \".\"".into(),
        ),
        (
            "id with a slash",
            "prestart",
            state("a/../b", container.pid, good.path()),
            "has id \"a/../b\"".into(),
        ),
        (
            "empty id",
            "prestart",
            state("", container.pid, good.path()),
            "has id \"\"".into(),
        ),
        (
            "id .. at poststop",
            "poststop",
            state("..", container.pid, good.path()),
            "has id \"..\"".into(),
        ),
        (
            "root.path /",
            "prestart",
            state("forged-root", container.pid, slash.path()),
            "root.path \"/\" resolves to the host's /".into(),
        ),
        (
            "root.path a link to /",
            "createRuntime",
            state("forged-link", container.pid, linked.path()),
            "resolves to the host's /".into(),
        ),
    ];
    // An id with NUL is not JSON a serde_json::Value can make with json!: written by hand.
    let nul = format!(
        r#"{{"ociVersion":"1.0.2","id":"a\u0000b","pid":{},"bundle":"{}"}}"#,
        container.pid,
        good.path().display()
    );
    let before = host_view(&state_dir);
    for (what, stage, state, want) in &cases {
        let (code, stderr) = hook(&host, stage, state);
        assert_eq!(code, 1, "{what}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{what}: one line: {stderr}");
        assert!(
            stderr.starts_with("migcage: ") && stderr.contains(want.as_str()),
            "{what}: {stderr}"
        );
        assert_eq!(host_view(&state_dir), before, "{what}: the host changed");
    }
    let value: serde_json::Value = serde_json::from_str(&nul).unwrap();
    let (code, stderr) = hook(&host, "prestart", &value);
    assert_eq!(code, 1, "NUL id: {stderr}");
    assert!(stderr.contains("a plain name"), "NUL id: {stderr}");
    assert_eq!(host_view(&state_dir), before, "NUL id: the host changed");
    // Nothing was granted to the stand-in container by the forged states.
    if let Some(cg) = &container.cgroup {
        assert_eq!(
            std::fs::read_to_string(cg.join("devices.list")).unwrap(),
            "",
            "the stand-in container's cgroup"
        );
    }
    // The control: the stand-in container's state passes the checks, and the same bundle then
    // leases an instance and grants its nodes, which the comparisons above would have seen.
    let (code, stderr) = hook(
        &host,
        "prestart",
        &state("legit", container.pid, good.path()),
    );
    assert_eq!((code, stderr.as_str()), (0, ""), "a runtime's state");
    assert_eq!(common::live_leases(&state_dir, "legit").len(), 1);
    assert_ne!(host_view(&state_dir).lease_dir, before.lease_dir);
    if let Some(cg) = &container.cgroup {
        let rules = std::fs::read_to_string(cg.join("devices.list")).unwrap();
        assert!(rules.contains("c 195:255 rw"), "granted: {rules}");
    }
}
