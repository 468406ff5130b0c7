//! User-namespaced containers end to end: real runc runs busybox containers with a user
//! namespace of their own (uid and gid 0 mapped to 100000 on the host), with `migcage hook` and
//! with `migcage runtime`. A container with `CAP_SYS_ADMIN` only inside its user namespace is refused the MIG
//! config and monitor capabilities.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;

use common::{Bundle, Mode, SimHost, MIGCAGE, PROBE};
use serde_json::json;

/// The host ids the container's root is mapped to.
const HOST_ID: u32 = 100000;

/// Give the bundle's container a user namespace of its own: uid/gid 0..65536 mapped to
/// 100000..165536, its rootfs owned by its root, and the paths its mounts come from reachable by
/// that root (the kernel checks a bind source as the container's root, and temporary
/// directories are 0700).
fn in_user_namespace(b: &mut Bundle, host: &SimHost) {
    b.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"}));
    let map = json!([{"containerID": 0, "hostID": HOST_ID, "size": 65536}]);
    b.config["linux"]["uidMappings"] = map.clone();
    b.config["linux"]["gidMappings"] = map;
    b.write();
    let out = Command::new("chown")
        .args(["-R", &format!("{HOST_ID}:{HOST_ID}")])
        .arg(b.path().join("rootfs"))
        .output()
        .unwrap();
    assert!(out.status.success(), "chown: {out:?}");
    for dir in [b.path(), host.dir.path()] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

/// `host`'s config with `runtime` set: what the runtime wrapper is run with.
fn wrapper_config(host: &SimHost, runtime: &str) -> PathBuf {
    let mut t: toml::Table = std::fs::read_to_string(host.config())
        .unwrap()
        .parse()
        .unwrap();
    t.insert("runtime".into(), toml::Value::String(runtime.into()));
    let path = host.dir.path().join(format!("config-{runtime}.toml"));
    std::fs::write(&path, toml::to_string(&t).unwrap()).unwrap();
    path
}

/// How a container is started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    /// `migcage hook prestart` in the bundle's spec.
    Hook,
    /// `migcage runtime` wrapping the runtime, the bundle without a hook.
    Runtime,
}

/// A user-namespaced busybox bundle running `script` with `env`, started `via`.
fn bundle(host: &SimHost, via: Via, env: &[&str], script: &str) -> Bundle {
    let mut b = Bundle::new(host, env, script);
    if via == Via::Runtime {
        b.config.as_object_mut().unwrap().remove("hooks");
    }
    in_user_namespace(&mut b, host);
    b
}

fn run(mode: Mode, via: Via, b: &Bundle, host: &SimHost) -> common::Run {
    match via {
        Via::Hook => common::run(mode, b, host),
        Via::Runtime => {
            let id = common::unique("mcns");
            let script = format!(
                "exec {MIGCAGE} --config {} runtime run --bundle {} {id}",
                wrapper_config(host, mode.runtime()).display(),
                b.path().display()
            );
            common::run_script(mode, b, host, &id, &script)
        }
    }
}

/// `CAP_SYS_ADMIN` inside the container's own user namespace is no privilege on the host: MIG
/// config and monitor are refused with the reason, in hook and runtime mode; the same
/// container without the user namespace gets them.
#[test]
fn cap_sys_admin_in_a_user_namespace_gets_no_mig_config_or_monitor() {
    let test = "cap_sys_admin_in_a_user_namespace_gets_no_mig_config_or_monitor";
    if let Some(why) = Mode::RuncV1.unavailable() {
        common::skip(&format!("{test}: {why}"));
        return;
    }
    let host = SimHost::new("a100-7x1g");
    let env = [
        "NVIDIA_VISIBLE_DEVICES=0:1",
        "NVIDIA_MIG_CONFIG_DEVICES=all",
        "NVIDIA_MIG_MONITOR_DEVICES=all",
    ];
    let privileged = |b: &mut Bundle| {
        for set in ["bounding", "effective", "permitted"] {
            b.config["process"]["capabilities"][set]
                .as_array_mut()
                .unwrap()
                .push(json!("CAP_SYS_ADMIN"));
        }
        b.write();
    };
    for via in [Via::Hook, Via::Runtime] {
        let mut b = bundle(&host, via, &env, "echo STARTED");
        privileged(&mut b);
        let r = run(Mode::RuncV1, via, &b, &host);
        let ctx = format!("{test} {via:?} ({})", r.id);
        assert!(!r.ok(), "{ctx}: the container started");
        assert!(!r.stdout().contains("STARTED"), "{ctx}");
        let stderr = r.stderr().replace("\\\"", "\"");
        assert!(
            stderr.contains("requires a privileged container (CAP_SYS_ADMIN), but the container has CAP_SYS_ADMIN only inside its own user namespace"),
            "{ctx}: {stderr}"
        );
    }
    // The control: host privilege (no user namespace) gets the config and monitor nodes.
    let (config, monitor) = {
        let text =
            std::fs::read_to_string(host.dir.path().join("proc/driver/nvidia-caps/mig-minors"))
                .unwrap();
        let minor = |name: &str| -> u32 {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
                .unwrap()
        };
        (minor("config"), minor("monitor"))
    };
    let mut b = Bundle::new(&host, &env, PROBE);
    privileged(&mut b);
    let r = common::run(Mode::RuncV1, &b, &host);
    assert!(r.ok(), "{test}: host-privileged: {}", r.stderr());
    let opens = r.opens();
    for minor in [config, monitor] {
        let path = format!("/hostdev/nvidia-caps/nvidia-cap{minor}");
        assert_eq!(
            opens.get(&path).map(String::as_str),
            Some("ENXIO"),
            "{test}: {path}"
        );
    }
}
