//! The plan's tests: requests resolved against the shared test inventory.

use super::nodes::tests::inventory;
use super::*;
use crate::config::RequestPolicy;
use serde_json::json;

fn request(env: &[&str]) -> Request {
    let spec = json!({
        "ociVersion": "1.0.2",
        "process": {"env": env, "capabilities": {"bounding": ["CAP_SYS_ADMIN"]}},
        "root": {"path": "rootfs"},
    });
    crate::core::request::parse(&spec, &RequestPolicy::default()).unwrap()
}

fn plan(env: &[&str]) -> Result<Plan, PlanError> {
    resolve(&request(env), &inventory(), Path::new("/dev"))
}

/// The env var and migcage's annotation naming devices, each in its own words.
fn plan_with_annotation(env: &str, annotation: &str) -> Result<Plan, PlanError> {
    let spec = json!({
        "process": {"env": [format!("NVIDIA_VISIBLE_DEVICES={env}")]},
        "annotations": {"migcage.io/devices": annotation},
        "root": {"path": "rootfs"},
    });
    let req = crate::core::request::parse(&spec, &RequestPolicy::default()).unwrap();
    resolve(&req, &inventory(), Path::new("/dev"))
}

#[test]
fn sources_agree_when_they_name_the_same_devices_differently() {
    // MIG-2222... is 0:1 on this host: the same device, named two ways.
    let p = plan_with_annotation("MIG-22222222-2222-2222-2222-222222222222", "0:1").unwrap();
    assert_eq!(p.devices.len(), 1);
    assert_eq!(p.devices[0].index, "0:1");
    let p = plan_with_annotation(
        "GPU-11111111-0000-0000-0000-000000000000,0:0",
        "1,MIG-11111111-1111-1111-1111-111111111111",
    )
    .unwrap();
    assert_eq!(p.devices.len(), 2);
    // MIG-1111... is 0:0, not 0:1.
    let e = plan_with_annotation("MIG-11111111-1111-1111-1111-111111111111", "0:1")
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "annotation migcage.io/devices=\"0:1\" and NVIDIA_VISIBLE_DEVICES=\"MIG-11111111-1111-1111-1111-111111111111\" name different devices; remove one of them or make them name the same devices"
    );
    // A source naming a device the host lacks says so, naming that source.
    let e = plan_with_annotation("MIG-99999999-9999-9999-9999-999999999999", "0:1")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("NVIDIA_VISIBLE_DEVICES asks for MIG-9999"),
        "{e}"
    );
}

fn paths(p: &Plan) -> Vec<&str> {
    p.edits
        .device_nodes
        .iter()
        .map(|n| n.path.as_str())
        .collect()
}

const COMMON: [&str; 3] = ["/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools"];

#[test]
fn nothing_asked_changes_nothing() {
    for env in [
        vec![],
        vec!["NVIDIA_VISIBLE_DEVICES=void"],
        vec!["NVIDIA_VISIBLE_DEVICES="],
    ] {
        assert_eq!(plan(&env).unwrap(), Plan::default(), "{env:?}");
    }
}

#[test]
fn none_gives_no_nodes_but_says_so() {
    let p = plan(&["NVIDIA_VISIBLE_DEVICES=none"]).unwrap();
    assert!(p.edits.device_nodes.is_empty() && p.edits.device_rules.is_empty());
    assert!(p
        .edits
        .env
        .contains(&"NVIDIA_VISIBLE_DEVICES=none".to_string()));
}

#[test]
fn each_form_names_exactly_its_nodes() {
    let cap = |n: u32| format!("/dev/nvidia-caps/nvidia-cap{n}");
    let (gi2, ci2) = (
        migcage_topology::gi_access_minor(0, 2),
        migcage_topology::ci_access_minor(0, 2, 0),
    );
    let mig1 = {
        let mut v: Vec<String> = COMMON.iter().map(|s| s.to_string()).collect();
        v.extend(["/dev/nvidia0".to_string(), cap(gi2), cap(ci2)]);
        v
    };
    for value in ["0:1", "MIG-22222222-2222-2222-2222-222222222222"] {
        let p = plan(&[&format!("NVIDIA_VISIBLE_DEVICES={value}")]).unwrap();
        assert_eq!(paths(&p), mig1, "{value}");
        assert_eq!(p.devices[0].index, "0:1");
        assert_eq!(p.proc_gpus, ["0000:07:00.0"]);
        assert_eq!(
            p.proc_caps,
            [
                "capabilities/gpu0/mig/gi2/access",
                "capabilities/gpu0/mig/gi2/ci0/access"
            ]
        );
        assert_eq!(p.edits.device_rules.len(), 6);
    }
    for value in ["1", "GPU-11111111-0000-0000-0000-000000000000"] {
        let p = plan(&[&format!("NVIDIA_VISIBLE_DEVICES={value}")]).unwrap();
        assert_eq!(
            paths(&p),
            [COMMON.as_slice(), &["/dev/nvidia1"]].concat(),
            "{value}"
        );
        assert!(p.proc_caps.is_empty());
    }
    // A whole GPU in MIG mode: its GPU node, no MIG capability.
    let p = plan(&["NVIDIA_VISIBLE_DEVICES=0"]).unwrap();
    assert_eq!(paths(&p), [COMMON.as_slice(), &["/dev/nvidia0"]].concat());
    // all: both GPUs and every MIG device.
    let p = plan(&["NVIDIA_VISIBLE_DEVICES=all"]).unwrap();
    assert_eq!(p.devices.len(), 4);
    assert_eq!(p.edits.device_nodes.len(), 3 + 2 + 4);
}

#[test]
fn the_same_device_twice_is_given_once() {
    let p = plan(&["NVIDIA_VISIBLE_DEVICES=0:0,MIG-11111111-1111-1111-1111-111111111111"]).unwrap();
    assert_eq!(p.devices.len(), 1);
    assert_eq!(p.edits.device_nodes.len(), 6);
}

#[test]
fn rules_allow_exactly_the_nodes() {
    let p = plan(&["NVIDIA_VISIBLE_DEVICES=0:1"]).unwrap();
    for (n, r) in p.edits.device_nodes.iter().zip(&p.edits.device_rules) {
        assert_eq!(
            (r.major, r.minor, r.allow),
            (Some(n.major), Some(n.minor), true)
        );
        assert_eq!(r.access, Access::RW);
    }
}

#[test]
fn errors_say_what_was_asked_and_what_exists() {
    let cases = [
        ("NVIDIA_VISIBLE_DEVICES=5", "asks for 5: there is no GPU 5, this host has GPUs 0 to 1"),
        ("NVIDIA_VISIBLE_DEVICES=0:7", "asks for 0:7: GPU 0 has MIG devices 0:0 to 0:1"),
        ("NVIDIA_VISIBLE_DEVICES=1:0", "GPU 1 is not in MIG mode"),
        ("NVIDIA_VISIBLE_DEVICES=MIG-99999999-9999-9999-9999-999999999999", "no MIG device has that UUID; it may have been destroyed or re-created (MIG devices now: MIG-11111111"),
        ("NVIDIA_VISIBLE_DEVICES=GPU-99999999-9999-9999-9999-999999999999", "no GPU has that UUID"),
        ("NVIDIA_VISIBLE_DEVICES=profile:1g.5gb", "this host has no MIG device of profile 1g.5gb (profiles here: 3g.20gb); ask for a profile listed"),
        ("NVIDIA_VISIBLE_DEVICES=profile:1/3g.20gb", "GPU 1 is not in MIG mode"),
        ("NVIDIA_VISIBLE_DEVICES=profile:4/3g.20gb", "there is no GPU 4, this host has GPUs 0 to 1"),
        ("NVIDIA_VISIBLE_DEVICES=profile:3g.20gb", "a request by profile is allocated when the container starts"),
    ];
    for (env, want) in cases {
        let e = plan(&[env]).unwrap_err().to_string();
        assert!(e.contains(want), "{env}: {e}");
        assert!(
            e.starts_with("NVIDIA_VISIBLE_DEVICES asks for"),
            "{env}: {e}"
        );
        assert!(!e.contains('\n'));
    }
}

#[test]
fn mig_config_adds_the_config_cap_and_the_gpu() {
    let p = plan(&[
        "NVIDIA_VISIBLE_DEVICES=0:0",
        "NVIDIA_MIG_CONFIG_DEVICES=all",
    ])
    .unwrap();
    assert!(paths(&p).contains(&"/dev/nvidia-caps/nvidia-cap1"));
    assert!(p.proc_caps.contains(&"capabilities/mig/config".to_string()));
    let p = plan(&["NVIDIA_VISIBLE_DEVICES=0:0", "NVIDIA_MIG_MONITOR_DEVICES=0"]).unwrap();
    assert!(paths(&p).contains(&"/dev/nvidia-caps/nvidia-cap2"));
    let e = plan(&["NVIDIA_VISIBLE_DEVICES=0:0", "NVIDIA_MIG_CONFIG_DEVICES=1"]).unwrap_err();
    assert!(e.to_string().contains("GPU 1 is not in MIG mode"), "{e}");
}

#[test]
fn missing_caps_driver_refuses_mig_devices() {
    let mut inv = inventory();
    inv.majors.caps = None;
    let e = resolve(
        &request(&["NVIDIA_VISIBLE_DEVICES=0:0"]),
        &inv,
        Path::new("/dev"),
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("nvidia-caps driver is not loaded"),
        "{e}"
    );
}

#[test]
fn a_request_names_the_gpus_whose_state_it_depends_on() {
    let inv = inventory();
    let named = |env: &[&str]| gpus_named(&request(env), &inv);
    let set = |v: &[u32]| Some(v.iter().copied().collect::<BTreeSet<u32>>());
    // Each form that names a device names its GPU.
    assert_eq!(named(&["NVIDIA_VISIBLE_DEVICES=0:1"]), set(&[0]));
    assert_eq!(named(&["NVIDIA_VISIBLE_DEVICES=1"]), set(&[1]));
    assert_eq!(
        named(&["NVIDIA_VISIBLE_DEVICES=MIG-22222222-2222-2222-2222-222222222222,GPU-11111111-0000-0000-0000-000000000000"]),
        set(&[0, 1])
    );
    // `none` (driver files only) depends on no GPU.
    assert_eq!(named(&["NVIDIA_VISIBLE_DEVICES=none"]), set(&[]));
    // A profile on one GPU: that GPU.
    assert_eq!(
        named(&["NVIDIA_VISIBLE_DEVICES=profile:0/3g.20gb"]),
        set(&[0])
    );
    // The MIG admin variables' GPUs count too.
    assert_eq!(
        named(&["NVIDIA_VISIBLE_DEVICES=1", "NVIDIA_MIG_CONFIG_DEVICES=0"]),
        set(&[0, 1])
    );
    // Every GPU counts for `all`, a profile on any GPU, and what this inventory does not have
    // (a MIG device made since, or a wrong request: only a full check tells which).
    for env in [
        "NVIDIA_VISIBLE_DEVICES=all",
        "NVIDIA_VISIBLE_DEVICES=profile:3g.20gb",
        "NVIDIA_VISIBLE_DEVICES=0:7",
        "NVIDIA_VISIBLE_DEVICES=MIG-99999999-9999-9999-9999-999999999999",
        "NVIDIA_VISIBLE_DEVICES=5",
    ] {
        assert_eq!(named(&[env]), None, "{env}");
    }
}
