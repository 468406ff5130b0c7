//! The request parser's tests: the helpers every test file shares, and the device list forms.

mod agreement;
mod malformed;
mod sources;

use serde_json::json;

use super::*;

const GPU0: &str = "GPU-a1b2c3d4-e5f6-0718-293a-4b5c6d7e8f90";
const MIG0: &str = "MIG-5c89852c-d268-c3f3-1b07-005d5ae1dc3f";
const MIG1: &str = "MIG-0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9";

/// A spec with these env entries, annotations, mount destinations and privilege.
fn spec(env: &[&str], annotations: &[(&str, &str)], mounts: &[&str], privileged: bool) -> Value {
    let mut caps = vec!["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"];
    if privileged {
        caps.push("CAP_SYS_ADMIN");
    }
    let ann: serde_json::Map<String, Value> = annotations
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    let mounts: Vec<Value> = mounts
        .iter()
        .map(|d| json!({"destination": d, "type": "bind", "source": "/dev/null", "options": ["rbind", "ro"]}))
        .collect();
    json!({
        "ociVersion": "1.1.0",
        "process": {"args": ["sh"], "cwd": "/", "env": env, "capabilities": {"bounding": caps}},
        "root": {"path": "rootfs"},
        "annotations": ann,
        "mounts": mounts,
    })
}

fn env(vars: &[&str]) -> Value {
    spec(vars, &[], &[], false)
}

fn ok(s: &Value) -> Request {
    parse(s, &RequestPolicy::default()).unwrap_or_else(|e| panic!("{e}"))
}

fn err(s: &Value) -> String {
    let e = parse(s, &RequestPolicy::default()).expect_err("should be refused");
    let msg = e.to_string();
    assert!(!msg.contains('\n'), "one line: {msg}");
    msg
}

fn selected(list: &[DeviceSelector]) -> Devices {
    Devices::Selected(list.to_vec())
}

fn profile(gpu: Option<u32>, name: &str, count: u32) -> DeviceSelector {
    DeviceSelector::Profile {
        gpu,
        profile: name.into(),
        count,
    }
}

/// Found by the `request_sources` fuzz target: a CDI annotation key with a carriage return
fn policy(
    accept_env: bool,
    env_privileged_only: bool,
    accept_annotations: bool,
    accept_volume_mounts: bool,
) -> RequestPolicy {
    RequestPolicy {
        accept_env,
        env_privileged_only,
        accept_annotations,
        accept_volume_mounts,
    }
}

/// made the error two lines.
#[test]
fn a_control_character_in_a_cdi_annotation_key_is_refused_on_one_line() {
    for key in ["cdi.k8s.io/a\rb", "cdi.k8s.io/x\n", "cdi.k8s.io/\0"] {
        let spec = json!({"annotations": {key: "nvidia.com/mi"}});
        let e = parse(&spec, &RequestPolicy::default())
            .unwrap_err()
            .to_string();
        assert!(!e.contains(['\n', '\r', '\0']), "{e:?}");
        assert!(e.contains("has a control character"), "{e}");
    }
}

#[test]
fn visible_devices_every_form() {
    use DeviceSelector::*;
    let spaced = format!(" 0:1 , {MIG1} ,1");
    let cases: Vec<(&str, Devices)> = vec![
        ("0", selected(&[GpuIndex(0)])),
        ("0:1", selected(&[MigIndex { gpu: 0, mig: 1 }])),
        (
            "3:0,0:6",
            selected(&[MigIndex { gpu: 3, mig: 0 }, MigIndex { gpu: 0, mig: 6 }]),
        ),
        (GPU0, selected(&[GpuUuid(GPU0.into())])),
        (MIG0, selected(&[MigUuid(MIG0.into())])),
        (
            "MIG-GPU-a1b2c3d4-e5f6-0718-293a-4b5c6d7e8f90/1/0",
            selected(&[MigUuid(
                "MIG-GPU-a1b2c3d4-e5f6-0718-293a-4b5c6d7e8f90/1/0".into(),
            )]),
        ),
        ("all", selected(&[All])),
        (" all ", selected(&[All])),
        ("none", Devices::DriverOnly),
        ("void", Devices::Untouched),
        ("", Devices::Untouched),
        ("   ", Devices::Untouched),
        ("profile:1g.5gb", selected(&[profile(None, "1g.5gb", 1)])),
        ("profile:1g.5gb*2", selected(&[profile(None, "1g.5gb", 2)])),
        (
            "profile:0/1g.5gb",
            selected(&[profile(Some(0), "1g.5gb", 1)]),
        ),
        (
            "profile:1/3g.40gb*2",
            selected(&[profile(Some(1), "3g.40gb", 2)]),
        ),
        (
            "profile:1g.10gb+me",
            selected(&[profile(None, "1g.10gb+me", 1)]),
        ),
        (
            "profile:1c.3g.20gb",
            selected(&[profile(None, "1c.3g.20gb", 1)]),
        ),
        (
            "profile:1g.5gb,profile:0/1g.5gb",
            selected(&[profile(None, "1g.5gb", 1), profile(Some(0), "1g.5gb", 1)]),
        ),
        (
            &spaced,
            selected(&[
                MigIndex { gpu: 0, mig: 1 },
                MigUuid(MIG1.into()),
                GpuIndex(1),
            ]),
        ),
        ("255:255", selected(&[MigIndex { gpu: 255, mig: 255 }])),
    ];
    for (value, want) in cases {
        let r = ok(&env(&[&format!("NVIDIA_VISIBLE_DEVICES={value}")]));
        assert_eq!(r.devices, want, "{value:?}");
        assert_eq!(r.is_noop(), want == Devices::Untouched, "{value:?}");
        let want_sources = if want == Devices::Untouched {
            vec![]
        } else {
            vec![Source::Env]
        };
        assert_eq!(r.sources, want_sources, "{value:?}");
    }
}

#[test]
fn uuids_are_normalised_to_lower_case() {
    let upper = "GPU-A1B2C3D4-E5F6-0718-293A-4B5C6D7E8F90";
    let r = ok(&env(&[&format!("NVIDIA_VISIBLE_DEVICES={upper}")]));
    assert_eq!(r.devices, selected(&[DeviceSelector::GpuUuid(GPU0.into())]));
}

#[test]
fn unset_is_untouched_even_in_a_cuda_image() {
    let r = ok(&env(&["CUDA_VERSION=12.4.1", "PATH=/bin"]));
    assert!(r.is_noop());
    assert!(r.sources.is_empty());
    assert!(
        r.notes
            .iter()
            .any(|n| n.contains("never hands out GPUs implicitly")),
        "{:?}",
        r.notes
    );
    // No process at all, or no env: nothing.
    assert!(ok(&json!({"ociVersion": "1.1.0", "root": {"path": "rootfs"}})).is_noop());
    assert!(ok(&json!({"process": {"args": ["sh"]}})).is_noop());
}

#[test]
fn untouched_container_ignores_other_variables() {
    // Unprivileged with a MIG config request and a bogus capability: still left alone.
    let r = ok(&env(&[
        "NVIDIA_VISIBLE_DEVICES=void",
        "NVIDIA_MIG_CONFIG_DEVICES=all",
        "NVIDIA_DRIVER_CAPABILITIES=bogus",
    ]));
    assert!(r.is_noop());
    assert_eq!(r.mig_config, None);
    assert_eq!(r.notes.len(), 2, "{:?}", r.notes);
    assert!(r
        .notes
        .iter()
        .all(|n| n.contains("ignored: no device is requested")));
}

#[test]
fn last_env_entry_wins() {
    let r = ok(&env(&[
        "NVIDIA_VISIBLE_DEVICES=all",
        "PATH=/bin",
        "NVIDIA_VISIBLE_DEVICES=0:1",
    ]));
    assert_eq!(
        r.devices,
        selected(&[DeviceSelector::MigIndex { gpu: 0, mig: 1 }])
    );
    let r = ok(&env(&[
        "NVIDIA_VISIBLE_DEVICES=0",
        "NVIDIA_VISIBLE_DEVICES=",
    ]));
    assert!(r.is_noop());
    let r = ok(&env(&[
        "NVIDIA_VISIBLE_DEVICES=bogus",
        "NVIDIA_VISIBLE_DEVICES=none",
    ]));
    assert_eq!(r.devices, Devices::DriverOnly);
    // An entry without "=" is not a variable.
    let r = ok(&env(&[
        "NVIDIA_VISIBLE_DEVICES=1",
        "NVIDIA_VISIBLE_DEVICES",
    ]));
    assert_eq!(r.devices, selected(&[DeviceSelector::GpuIndex(1)]));
    // Values may hold "=".
    assert_eq!(
        ok(&env(&["NVIDIA_VISIBLE_DEVICES=0", "X=a=b"])).devices,
        selected(&[DeviceSelector::GpuIndex(0)])
    );
}

#[test]
fn selector_display_round_trips() {
    use DeviceSelector::*;
    let all = [
        All,
        GpuIndex(0),
        GpuIndex(255),
        MigIndex { gpu: 2, mig: 13 },
        GpuUuid(GPU0.into()),
        MigUuid(MIG0.into()),
        MigUuid("MIG-GPU-a1b2c3d4-e5f6-0718-293a-4b5c6d7e8f90/7/0".into()),
        profile(None, "1g.5gb", 1),
        profile(None, "1g.5gb", 7),
        profile(Some(3), "2g.10gb", 1),
        profile(Some(0), "1g.12gb+me", 2),
    ];
    let texts: Vec<String> = all.iter().map(|d| d.to_string()).collect();
    assert_eq!(texts[3], "2:13");
    assert_eq!(texts[8], "profile:1g.5gb*7");
    assert_eq!(texts[9], "profile:3/2g.10gb");
    for (d, text) in all.iter().zip(&texts) {
        assert_eq!(&text.parse::<DeviceSelector>().unwrap(), d, "{text}");
        let json = serde_json::to_string(d).unwrap();
        assert_eq!(json, format!("\"{text}\""));
        assert_eq!(&serde_json::from_str::<DeviceSelector>(&json).unwrap(), d);
    }
    // A whole list round-trips through the env var too (all but `all`, and one count of
    // the unplaced 1g.5gb profile: those may not share a list).
    let list: Vec<usize> = (1..all.len()).filter(|&i| i != 8).collect();
    let value: Vec<&str> = list.iter().map(|&i| texts[i].as_str()).collect();
    let r = ok(&env(&[&format!(
        "NVIDIA_VISIBLE_DEVICES={}",
        value.join(",")
    )]));
    let want: Vec<DeviceSelector> = list.iter().map(|&i| all[i].clone()).collect();
    assert_eq!(r.selectors(), want.as_slice());
    assert_eq!(
        Request::selectors(&ok(&env(&["NVIDIA_VISIBLE_DEVICES=none"]))),
        &[]
    );
    assert!("none".parse::<DeviceSelector>().is_err());
    assert!("void".parse::<DeviceSelector>().is_err());
}
