//! End to end: real runc and crun run busybox containers with `migcage hook` on cgroup v1 and v2,
//! against simulated MIG hosts; a probe inside each container proves what it can reach.

mod common;

use common::{Bundle, Mode, SimHost, PROBE};
use serde_json::{json, Value};

/// Run a container asking with `env` / `annotations` / `mounts` and check it sees exactly the
/// devices `names`.
fn check(
    mode: Mode,
    host: &SimHost,
    listing: &Value,
    what: &str,
    setup: impl Fn(&mut Bundle),
    names: &[&str],
) {
    let mut b = Bundle::new(host, &[], PROBE);
    setup(&mut b);
    b.write();
    let run = common::run(mode, &b, host);
    let ctx = format!("{mode:?} {} {what} ({})", host.topology, run.id);
    assert!(run.ok(), "{ctx}: container failed: {}", run.stderr());
    common::assert_sees_exactly(&run, host, listing, names, &ctx);
}

fn every_form(mode: Mode) {
    if let Some(why) = mode.unavailable() {
        common::skip(&format!("every_form {mode:?}: {why}"));
        return;
    }
    let host = SimHost::new("a100-7x1g");
    let l = host.list();
    let all: Vec<String> = std::iter::once("0".to_string())
        .chain((0..7).map(|i| format!("0:{i}")))
        .collect();
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    let uuid3 = common::uuid_of(&l, "0:3");
    let gpu_uuid = l["gpus"][0]["uuid"].as_str().unwrap().to_string();
    check(
        mode,
        &host,
        &l,
        "index 0:1",
        common::visible_devices("0:1"),
        &["0:1"],
    );
    check(
        mode,
        &host,
        &l,
        "MIG uuid",
        common::visible_devices(&uuid3),
        &["0:3"],
    );
    check(
        mode,
        &host,
        &l,
        "GPU uuid",
        common::visible_devices(&gpu_uuid),
        &["0"],
    );
    check(mode, &host, &l, "all", common::visible_devices("all"), &all);
    check(
        mode,
        &host,
        &l,
        "none",
        common::visible_devices("none"),
        &[],
    );
    check(
        mode,
        &host,
        &l,
        "void",
        common::visible_devices("void"),
        &[],
    );
    check(mode, &host, &l, "unset", |_| {}, &[]);
    let uuid5 = common::uuid_of(&l, "0:5");
    check(
        mode,
        &host,
        &l,
        "CDI annotation",
        |b| {
            b.config["annotations"] =
                json!({"cdi.k8s.io/nvidia-device-plugin_abc": format!("nvidia.com/mig={uuid5}")})
        },
        &["0:5"],
    );
    check(
        mode,
        &host,
        &l,
        "migcage annotation",
        |b| b.config["annotations"] = json!({"migcage.io/devices": "0:6"}),
        &["0:6"],
    );
    let uuid2 = common::uuid_of(&l, "0:2");
    check(
        mode,
        &host,
        &l,
        "volume mounts",
        |b| {
            common::visible_devices("/var/run/nvidia-container-devices")(b);
            b.config["mounts"].as_array_mut().unwrap().push(json!({
                "destination": format!("/var/run/nvidia-container-devices/{uuid2}"),
                "type": "bind", "source": "/dev/null", "options": ["bind", "ro"]
            }));
        },
        &["0:2"],
    );

    let two = SimHost::new("two-gpus-one-mig");
    let l2 = two.list();
    check(
        mode,
        &two,
        &l2,
        "whole non-MIG GPU",
        common::visible_devices("1"),
        &["1"],
    );
    check(
        mode,
        &two,
        &l2,
        "MIG device 0:2",
        common::visible_devices("0:2"),
        &["0:2"],
    );
    let g0 = l2["gpus"][0]["uuid"].as_str().unwrap().to_string();
    check(
        mode,
        &two,
        &l2,
        "whole MIG-mode GPU by uuid",
        common::visible_devices(&g0),
        &["0"],
    );
    check(
        mode,
        &two,
        &l2,
        "MIG device and other GPU",
        common::visible_devices("0:1,1"),
        &["0:1", "1"],
    );
}

#[test]
fn every_form_runc_cgroup_v1() {
    every_form(Mode::RuncV1);
}

#[test]
fn every_form_runc_cgroup_v2() {
    every_form(Mode::RuncV2);
}

#[test]
fn every_form_crun_cgroup_v1() {
    every_form(Mode::CrunV1);
}

#[test]
#[ignore = "crun on cgroup v2 needs CAP_SYS_RESOURCE: tests/vm.rs runs it in the systemd VM"]
fn every_form_crun_cgroup_v2() {
    every_form(Mode::CrunV2);
}

fn bad_requests(mode: Mode) {
    if let Some(why) = mode.unavailable() {
        common::skip(&format!("bad_requests {mode:?}: {why}"));
        return;
    }
    let host = SimHost::new("two-gpus-one-mig");
    let cases: &[(&[&str], &str)] = &[
        (
            &["NVIDIA_VISIBLE_DEVICES=MIG-deadbeef-0000-0000-0000-000000000000"],
            "no MIG device has that UUID",
        ),
        (
            &["NVIDIA_VISIBLE_DEVICES=7"],
            "there is no GPU 7, this host has GPUs 0 to 1",
        ),
        (
            &["NVIDIA_VISIBLE_DEVICES=0:9"],
            "GPU 0 has MIG devices 0:0 to 0:2",
        ),
        (&["NVIDIA_VISIBLE_DEVICES=1:0"], "GPU 1 is not in MIG mode"),
        (
            &[
                "NVIDIA_VISIBLE_DEVICES=0:0",
                "NVIDIA_MIG_CONFIG_DEVICES=all",
            ],
            "requires a privileged container (CAP_SYS_ADMIN)",
        ),
        (
            &["NVIDIA_VISIBLE_DEVICES=0:x"],
            "NVIDIA_VISIBLE_DEVICES=\"0:x\"",
        ),
        (
            &["NVIDIA_VISIBLE_DEVICES=0,,1"],
            "NVIDIA_VISIBLE_DEVICES=\"0,,1\"",
        ),
    ];
    for (env, want) in cases {
        let mut b = Bundle::new(&host, env, "echo STARTED");
        // crun drops a hook's stderr unless this annotation names a file for it.
        let hook_stderr = b.path().join("hook-stderr");
        if mode.is_crun() {
            b.config["annotations"] =
                json!({"run.oci.hooks.stderr": hook_stderr.display().to_string()});
            b.write();
        }
        let run = common::run(mode, &b, &host);
        let ctx = format!("{mode:?} {env:?} ({})", run.id);
        assert!(!run.ok(), "{ctx}: the container started");
        assert!(
            !run.stdout().contains("STARTED"),
            "{ctx}: the container's process ran"
        );
        // runc quotes the hook's stderr inside its own message: undo its escaping.
        let mut stderr = run.stderr().replace("\\\"", "\"");
        if mode.is_crun() {
            stderr = std::fs::read_to_string(&hook_stderr).unwrap_or_default();
            assert_eq!(stderr.lines().count(), 1, "{ctx}: one line: {stderr}");
        }
        let line = stderr
            .lines()
            .find(|l| l.contains("migcage:"))
            .map(str::to_string);
        let line = line.unwrap_or_else(|| {
            panic!(
                "{ctx}: no migcage line in the runtime's error: {}",
                run.stderr()
            )
        });
        assert!(line.contains(want), "{ctx}: {line}");
    }
}

#[test]
fn bad_requests_runc_cgroup_v1() {
    bad_requests(Mode::RuncV1);
}

#[test]
fn bad_requests_runc_cgroup_v2() {
    bad_requests(Mode::RuncV2);
}

#[test]
fn bad_requests_crun_cgroup_v1() {
    bad_requests(Mode::CrunV1);
}

#[test]
#[ignore = "crun on cgroup v2 needs CAP_SYS_RESOURCE: tests/vm.rs runs it in the systemd VM"]
fn bad_requests_crun_cgroup_v2() {
    bad_requests(Mode::CrunV2);
}

/// The hook registered at three points runs three times; the container gets each node once and
/// the cgroup v2 program is still exactly one.
fn hook_is_idempotent_across_stages_in(modes: &[Mode]) {
    for &mode in modes {
        if let Some(why) = mode.unavailable() {
            common::skip(&format!("hook_is_idempotent_across_stages {mode:?}: {why}"));
            continue;
        }
        let host = SimHost::new("a100-7x1g");
        let l = host.list();
        let mut b = Bundle::new(&host, &["NVIDIA_VISIBLE_DEVICES=0:4"], PROBE);
        let hook = b.config["hooks"]["prestart"][0].clone();
        for stage in ["createRuntime", "createContainer"] {
            let mut h = hook.clone();
            h["args"] = json!(["migcage", "hook", stage]);
            b.config["hooks"][stage] = json!([h]);
        }
        b.write();
        let run = common::run(mode, &b, &host);
        assert!(run.ok(), "{mode:?}: {}", run.stderr());
        assert_eq!(run.nodes(), common::sees(&l, &["0:4"]).nodes, "{mode:?}");
        assert_eq!(run.prefixed("GPU ").len(), 1, "{mode:?}");
    }
}

#[test]
fn hook_is_idempotent_across_stages() {
    hook_is_idempotent_across_stages_in(&Mode::OUTSIDE_VM);
}

#[test]
#[ignore = "crun on cgroup v2 needs CAP_SYS_RESOURCE: tests/vm.rs runs it in the systemd VM"]
fn hook_is_idempotent_across_stages_crun_cgroup_v2() {
    hook_is_idempotent_across_stages_in(&[Mode::CrunV2]);
}

/// What opening /dev/net/tun (bind-mounted on /hosttun) gave inside a runc container on cgroup
/// v2 with the hook granting 0:1, under `host`'s config: `EBADFD` when the cgroup allows it (tun
/// opens, and a read before its ioctl fails so), `EPERM` when it refuses it.
fn tun_in_runc_v2(host: &common::SimHost) -> String {
    let script = "out=$(cat /hosttun 2>&1 </dev/null); case \"$out\" in *'bad state'*) echo TUN EBADFD;; *'not permitted'*) echo TUN EPERM;; *) echo \"TUN OTHER $out\";; esac";
    let mut b = Bundle::new(host, &["NVIDIA_VISIBLE_DEVICES=0:1"], script);
    b.config["mounts"].as_array_mut().unwrap().push(json!({
        "destination": "/hosttun", "type": "bind", "source": "/dev/net/tun", "options": ["bind"]
    }));
    b.write();
    let run = common::run(Mode::RuncV2, &b, host);
    assert!(run.ok(), "{}: container failed: {}", run.id, run.stderr());
    run.prefixed("TUN ").join(" ")
}

#[test]
fn a_stated_runc_version_keeps_its_default_tun_rule_on_cgroup_v2() {
    if let Some(why) = Mode::RuncV2.unavailable() {
        common::skip(&format!("tun RuncV2: {why}"));
        return;
    }
    if !std::path::Path::new("/dev/net/tun").exists() {
        common::skip("tun RuncV2: this host has no /dev/net/tun (modprobe tun)");
        return;
    }
    // Unstated, the hook cannot tell runc 1.1 (whose defaults allow tun) from 1.2.0-1.2.3
    // (whose do not), and rebuilds only the rules every version adds.
    let host = common::SimHost::new("a100-7x1g");
    assert_eq!(tun_in_runc_v2(&host), "EPERM");
    // host.runtime_versions states it: runc 1.1's own rules come back, tun among them.
    let text = std::fs::read_to_string(host.config()).unwrap();
    assert!(text.contains("runtime_versions = []"), "{text}");
    let stated = text.replace(
        "runtime_versions = []",
        "runtime_versions = [\"runc 1.1.5\"]",
    );
    std::fs::write(host.config(), stated).unwrap();
    assert_eq!(tun_in_runc_v2(&host), "EBADFD");
}
