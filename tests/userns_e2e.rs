//! User-namespaced containers end to end: real runc (cgroup v1 and v2) runs busybox containers
//! with a user namespace of their own (uid and gid 0 mapped to 100000 on the host, the usual /dev
//! tmpfs, which the kernel then owns to the container's user namespace), with `migcage hook` and
//! with `migcage runtime`. There `mknod` is impossible and the hook's own ids cannot own a file
//! in the container's /dev (EOVERFLOW): the hook bind-mounts the host's checked nodes, making
//! the mount targets as the container's root. The probe proves the container has exactly its
//! device. A container with `CAP_SYS_ADMIN` only inside its user namespace is refused the MIG
//! config and monitor capabilities.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use common::{Bundle, Mode, SimHost, PROBE};
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

/// How a container is started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    /// `migcage hook prestart` in the bundle's spec.
    Hook,
    /// `migcage runtime run` wrapping the runtime, the bundle without a hook.
    Runtime,
    /// `migcage runtime create`, `start`, `delete`, as engines send them: no hook at all.
    Created,
}

/// A user-namespaced busybox bundle running `script` with `env`, started `via`.
fn bundle(host: &SimHost, via: Via, env: &[&str], script: &str) -> Bundle {
    let mut b = Bundle::new(host, env, script);
    if via != Via::Hook {
        b.config.as_object_mut().unwrap().remove("hooks");
    }
    in_user_namespace(&mut b, host);
    b
}

fn run(mode: Mode, via: Via, b: &Bundle, host: &SimHost) -> common::Run {
    match via {
        Via::Hook => common::run(mode, b, host),
        Via::Runtime => common::wrapper::run(mode, b, host, "mcns"),
        Via::Created => common::wrapper::create_start_delete(mode, b, host, "mcnc"),
    }
}

/// `r` with the probe's EACCES on a host node that others may not read (`/hostdev/...`) counted
/// as the refusal it is. In a user namespace the container's root is nobody to the host's nodes
/// (owned by the host's root), so the file mode refuses such a node before the cgroup is asked;
/// every other node of the host must still be refused by the cgroup (EPERM).
fn mode_refusals_as_eperm(r: common::Run, host: &SimHost) -> common::Run {
    use std::os::unix::fs::MetadataExt;
    let text = r.stdout();
    let mut out = String::new();
    for line in text.lines() {
        let denied_by_mode = line
            .strip_prefix("OPEN /hostdev/")
            .and_then(|l| l.strip_suffix(" EACCES"))
            .and_then(|rel| std::fs::metadata(host.dev().join(rel)).ok())
            .is_some_and(|m| m.mode() & 0o004 == 0);
        if denied_by_mode {
            out.push_str(&line.replace(" EACCES", " EPERM"));
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    let mut output = r.output;
    output.stdout = out.into_bytes();
    common::Run { id: r.id, output }
}

/// The probe in a user-namespaced container asking for `0:1`, then for `0:3` and the whole
/// GPU 1 of another host: exactly those devices, every other node refused, on the first try.
fn gets_exactly_its_device(mode: Mode, via: Via) {
    let test = format!("gets_exactly_its_device {mode:?} {via:?}");
    if let Some(why) = mode.unavailable() {
        common::skip(&format!("{test}: {why}"));
        return;
    }
    let host = SimHost::new("a100-7x1g");
    let listing = host.list();
    for (ask, names) in [("0:1", vec!["0:1"]), ("0:3,0:5", vec!["0:3", "0:5"])] {
        let b = bundle(
            &host,
            via,
            &[&format!("NVIDIA_VISIBLE_DEVICES={ask}")],
            PROBE,
        );
        let r = mode_refusals_as_eperm(run(mode, via, &b, &host), &host);
        let ctx = format!("{test} {ask} ({})", r.id);
        assert!(r.ok(), "{ctx}: container failed: {}", r.stderr());
        common::assert_sees_exactly(&r, &host, &listing, &names, &ctx);
    }
    let two = SimHost::new("two-gpus-one-mig");
    let l2 = two.list();
    let b = bundle(&two, via, &["NVIDIA_VISIBLE_DEVICES=1"], PROBE);
    let r = mode_refusals_as_eperm(run(mode, via, &b, &two), &two);
    let ctx = format!("{test} whole GPU 1 ({})", r.id);
    assert!(r.ok(), "{ctx}: container failed: {}", r.stderr());
    common::assert_sees_exactly(&r, &two, &l2, &["1"], &ctx);
}

#[test]
fn hook_runc_cgroup_v1() {
    gets_exactly_its_device(Mode::RuncV1, Via::Hook);
}

#[test]
fn hook_runc_cgroup_v2() {
    gets_exactly_its_device(Mode::RuncV2, Via::Hook);
}

#[test]
fn runtime_runc_cgroup_v1() {
    gets_exactly_its_device(Mode::RuncV1, Via::Runtime);
}

#[test]
fn runtime_runc_cgroup_v2() {
    gets_exactly_its_device(Mode::RuncV2, Via::Runtime);
}

#[test]
fn created_runc_cgroup_v1() {
    gets_exactly_its_device(Mode::RuncV1, Via::Created);
}

#[test]
fn created_runc_cgroup_v2() {
    gets_exactly_its_device(Mode::RuncV2, Via::Created);
}

#[test]
fn created_crun_cgroup_v1() {
    gets_exactly_its_device(Mode::CrunV1, Via::Created);
}

/// The nodes in the container are the host's own (bind mounts, not nodes the hook made), and
/// what the hook made in the container's /dev (the nvidia-caps directory) belongs to the
/// container's root; the host's nodes stay as they were.
#[test]
fn the_nodes_are_the_hosts_and_the_directories_the_containers() {
    let test = "the_nodes_are_the_hosts_and_the_directories_the_containers";
    if let Some(why) = Mode::RuncV1.unavailable() {
        common::skip(&format!("{test}: {why}"));
        return;
    }
    let host = SimHost::new("a100-7x1g");
    let before = host.all_nodes();
    let script = "stat -c 'OWNER %n %u:%g' /dev/nvidia-caps /dev/nvidiactl; grep ' /dev/nvidia' /proc/self/mountinfo | sed 's/^/MOUNT /'";
    let b = bundle(&host, Via::Hook, &["NVIDIA_VISIBLE_DEVICES=0:1"], script);
    let r = common::run(Mode::RuncV1, &b, &host);
    assert!(r.ok(), "{test}: {}", r.stderr());
    let owners = r.prefixed("OWNER ");
    // The directory the hook made is the container root's; the node is the host's, whose
    // owner (host root) the user namespace does not map.
    assert_eq!(
        owners,
        ["/dev/nvidia-caps 0:0", "/dev/nvidiactl 65534:65534"],
        "{test}"
    );
    let mounts = r.prefixed("MOUNT ");
    for node in ["/dev/nvidiactl", "/dev/nvidia0", "/dev/nvidia-uvm"] {
        let line = mounts
            .iter()
            .find(|l| l.split_whitespace().nth(4) == Some(node))
            .unwrap_or_else(|| panic!("{test}: {node} is not a mount: {mounts:?}"));
        let opts = line.split_whitespace().nth(5).unwrap();
        for flag in ["ro", "nosuid", "noexec"] {
            assert!(opts.split(',').any(|o| o == flag), "{test}: {line}");
        }
    }
    assert_eq!(host.all_nodes(), before, "{test}: the host's nodes");
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

#[test]
fn hook_crun_cgroup_v1() {
    gets_exactly_its_device(Mode::CrunV1, Via::Hook);
}

#[test]
fn runtime_crun_cgroup_v1() {
    gets_exactly_its_device(Mode::CrunV1, Via::Runtime);
}

#[test]
#[ignore = "crun on cgroup v2 needs CAP_SYS_RESOURCE: tests/vm.rs runs it in the systemd VM"]
fn hook_crun_cgroup_v2() {
    gets_exactly_its_device(Mode::CrunV2, Via::Hook);
}

#[test]
#[ignore = "crun on cgroup v2 needs CAP_SYS_RESOURCE: tests/vm.rs runs it in the systemd VM"]
fn runtime_crun_cgroup_v2() {
    gets_exactly_its_device(Mode::CrunV2, Via::Runtime);
}
