//! Unit tests of the hook's own steps (mod.rs).

use super::*;
use serde_json::json;

#[test]
fn a_host_directory_bound_on_dev_is_found() {
    let spec = |m: serde_json::Value| json!({"mounts": [m]});
    let bind = spec(json!({"destination": "/dev/", "type": "bind", "source": "/srv/x"}));
    assert_eq!(dev_bind_source(&bind).as_deref(), Some("/srv/x"));
    let rbind = spec(
        json!({"destination": "/dev", "type": "none", "source": "/srv/y", "options": ["rbind", "ro"]}),
    );
    assert_eq!(dev_bind_source(&rbind).as_deref(), Some("/srv/y"));
    let tmpfs = spec(json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs"}));
    assert_eq!(dev_bind_source(&tmpfs), None);
    let other = spec(json!({"destination": "/data", "type": "bind", "source": "/srv/z"}));
    assert_eq!(dev_bind_source(&other), None);
}

#[test]
fn user_namespace_detection() {
    assert!(has_user_namespace(
        &json!({"linux": {"namespaces": [{"type": "pid"}, {"type": "user"}]}})
    ));
    assert!(!has_user_namespace(
        &json!({"linux": {"namespaces": [{"type": "mount"}]}})
    ));
    assert!(!has_user_namespace(&json!({})));
}

#[test]
fn untouched_container_needs_no_driver() {
    let (_bundle, state) = crate::testing::untouched_bundle();
    // A config pointing at nothing: no driver is read when nothing is asked for.
    let config = Config {
        proc_root: "/nonexistent".into(),
        ..Config::default()
    };
    let out = run(&config, Stage::Prestart, state.as_bytes()).unwrap();
    assert!(out.plan.is_none());
    assert!(out.request.unwrap().is_noop());
}

fn granting_plan() -> Plan {
    use crate::core::edits::{Access, DeviceRule, DeviceType};
    let mut plan = Plan::default();
    plan.edits.device_rules = [(195, 255), (195, 0)]
        .map(|(major, minor)| DeviceRule {
            allow: true,
            kind: DeviceType::Char,
            major: Some(major),
            minor: Some(minor),
            access: Access::RW,
        })
        .to_vec();
    plan
}

/// after_grant, as the hook runs it after the cgroup grant, with systemd `running` or not,
/// for a container whose cgroup is runc's scope: the double's calls and the outcome's line.
fn after_grant_with(
    running: bool,
) -> (
    Vec<crate::host::systemd::test::SetDeviceAllow>,
    Option<String>,
) {
    let proc = tempfile::tempdir().unwrap();
    std::fs::create_dir(proc.path().join("42")).unwrap();
    std::fs::write(
        proc.path().join("42/cgroup"),
        "0::/system.slice/runc-c1.scope\n",
    )
    .unwrap();
    let dev = tempfile::tempdir().unwrap();
    let config = Config {
        dev_root: dev.path().to_path_buf(),
        ..Config::default()
    };
    let state = State::read(&br#"{"id":"c1","pid":42,"bundle":"/b"}"#[..]).unwrap();
    let double = crate::host::systemd::test::RecordingSystemd::new();
    let host = systemd::SystemdHost {
        running,
        units: &double,
    };
    let mut outcome = Outcome::nothing_yet("c1", Stage::Prestart);
    let process = ProcessRef {
        proc_root: proc.path(),
        pid: 42,
    };
    after_grant(
        &config,
        Stage::Prestart,
        &state,
        &process,
        &granting_plan(),
        &host,
        &mut outcome,
    );
    // A simulated dev_root: no /dev/char link is made on the host.
    assert_eq!(outcome.dev_char_links, 0);
    (double.calls(), outcome.systemd)
}

#[test]
fn the_hook_registers_the_granted_nodes_with_systemd() {
    let (calls, line) = after_grant_with(true);
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].unit, "runc-c1.scope");
    let entries: Vec<(&str, &str)> = calls[0]
        .entries
        .iter()
        .map(|e| (e.path.as_str(), e.access.as_str()))
        .collect();
    assert_eq!(
        entries,
        [("/dev/char/195:255", "rw"), ("/dev/char/195:0", "rw")]
    );
    assert_eq!(line.as_deref(), Some("DeviceAllow= +2 on runc-c1.scope"));
}

#[test]
fn without_systemd_the_hook_tells_no_one() {
    let (calls, line) = after_grant_with(false);
    assert!(calls.is_empty(), "{calls:?}");
    assert_eq!(line.as_deref(), Some("no systemd"));
}

#[test]
fn poststop_reads_only_the_state() {
    let d = tempfile::tempdir().unwrap();
    let config = Config {
        state_dir: d.path().join("state"),
        ..Config::default()
    };
    let out = run(
        &config,
        Stage::Poststop,
        &br#"{"id":"c1","bundle":"/nonexistent"}"#[..],
    )
    .unwrap();
    assert_eq!(out.container, "c1");
    assert!(out.released.is_empty());
    // No lease was ever taken: poststop creates nothing.
    assert!(!d.path().join("state").exists());
    assert!(run(&config, Stage::Poststop, &b"junk"[..]).is_err());
}

#[test]
fn poststop_releases_the_containers_leases() {
    use crate::host::lease::{Lease, LeaseKind, Store};
    let d = tempfile::tempdir().unwrap();
    let config = Config {
        state_dir: d.path().to_path_buf(),
        ..Config::default()
    };
    let lease = |uuid: &str, container: &str| Lease {
        uuid: uuid.into(),
        container: container.into(),
        pid: 1,
        start_time: 1,
        since: 1,
        kind: LeaseKind::Profile,
        asked: "profile:1g.5gb".into(),
    };
    let store = Store::new(d.path());
    store
        .lock()
        .unwrap()
        .write(&[
            lease("MIG-a", "c1"),
            lease("MIG-b", "c2"),
            lease("MIG-c", "c1"),
        ])
        .unwrap();
    let out = run(
        &config,
        Stage::Poststop,
        &br#"{"id":"c1","status":"stopped","bundle":"/nonexistent"}"#[..],
    )
    .unwrap();
    assert_eq!(out.released, ["MIG-a", "MIG-c"]);
    assert_eq!(store.read().unwrap(), [lease("MIG-b", "c2")]);
}
