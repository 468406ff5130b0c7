//! Malformed values and spec shapes: each refused on one line that names the field.

use serde_json::json;

use super::*;

/// (env entries, annotations, mounts, privileged, parts the message must contain)
type BadCase = (
    Vec<String>,
    Vec<(&'static str, String)>,
    Vec<String>,
    bool,
    Vec<&'static str>,
);

fn vd(value: &str, parts: Vec<&'static str>) -> BadCase {
    (
        vec![format!("NVIDIA_VISIBLE_DEVICES={value}")],
        vec![],
        vec![],
        false,
        parts,
    )
}

const VD: &str = "NVIDIA_VISIBLE_DEVICES=";
const HINT: &str = "use GPU:MIG such as 0:1, a MIG-/GPU- UUID";

/// Bad values of `NVIDIA_VISIBLE_DEVICES`.
fn visible_devices_cases() -> Vec<BadCase> {
    vec![
        vd(
            "0:x",
            vec![
                r#"NVIDIA_VISIBLE_DEVICES="0:x": "x" is not a MIG device index; use GPU:MIG such as 0:1"#,
            ],
        ),
        vd("x:1", vec![VD, r#""x" is not a GPU index"#, HINT]),
        vd("0:1:2", vec![VD, r#""0:1:2" has more than one ":""#, HINT]),
        vd(
            "0,,1",
            vec![r#"NVIDIA_VISIBLE_DEVICES="0,,1""#, "empty item", HINT],
        ),
        vd("0,", vec![r#"NVIDIA_VISIBLE_DEVICES="0,""#, "empty item"]),
        vd(",", vec!["empty item"]),
        vd("0, 0", vec![r#""0" appears twice"#, HINT]),
        vd(&format!("{MIG0},{MIG0}"), vec![r#"appears twice"#, MIG0]),
        vd(
            "all,0",
            vec![r#""all" cannot be combined with other items"#, HINT],
        ),
        vd("none,0:1", vec![r#""none" cannot be combined"#]),
        vd("0,void", vec![r#""void" cannot be combined"#]),
        vd("all,none", vec![r#""none" cannot be combined"#]),
        vd(
            "256",
            vec![r#""256" is larger than 255, the largest GPU index migcage accepts"#],
        ),
        vd(
            "0:300",
            vec![r#""300" is larger than 255, the largest MIG device index"#],
        ),
        vd("99999999999999999999", vec!["is larger than 255"]),
        vd("01", vec![r#""01" has a leading zero; write 1"#]),
        vd("0:00", vec![r#""00" has a leading zero; write 0"#]),
        vd(
            "GPU-1234",
            vec![r#""GPU-1234" is not a GPU UUID (GPU- then hex digits as 8-4-4-4-12)"#],
        ),
        vd(
            "GPU-a1b2c3d4-e5f6-0718-293a-4b5c6d7e8f9g",
            vec!["is not a GPU UUID"],
        ),
        vd(
            "MIG-5c89852c-d268-c3f3-1b07",
            vec!["is not a MIG UUID", "MIG-GPU-<uuid>/<gi>/<ci>"],
        ),
        vd(
            "MIG-GPU-a1b2c3d4-e5f6-0718-293a-4b5c6d7e8f90/x/0",
            vec!["is not a MIG UUID"],
        ),
        vd(&MIG0.to_lowercase(), vec!["upper-case GPU- or MIG-"]),
        vd("foo", vec![r#""foo" is not a device"#, HINT]),
        vd("ALL", vec![r#""ALL" is not a device"#]),
        vd("-1", vec![r#""-1" is not a device"#]),
        vd("+1", vec![r#""+1" is not a device"#]),
        vd("0 1", vec![r#""0 1" is not a GPU index"#]),
        vd("profile:", vec!["names no profile", "profile:1g.5gb"]),
        vd("profile:1g", vec![r#""1g" is not a MIG profile name"#]),
        vd("profile:1g.5", vec![r#""1g.5" is not a MIG profile name"#]),
        vd("profile:1g.5gb+", vec!["is not a MIG profile name"]),
        vd(
            "profile:1g.5gb*0",
            vec![r#""0" is not a device count (1 to 64)"#],
        ),
        vd("profile:1g.5gb*x", vec![r#""x" is not a device count"#]),
        vd("profile:1g.5gb*65", vec![r#""65" is more than 64 devices"#]),
        vd("profile:x/1g.5gb", vec![r#""x" is not a GPU index"#]),
        vd(
            "profile:1g.5gb,profile:1g.5gb*2",
            vec!["ask for the same profile twice; write one item with a count, such as 1g.5gb*2"],
        ),
        vd(
            "profile:0/1g.5gb,profile:0/1g.5gb",
            vec!["such as 0/1g.5gb*2"],
        ),
        vd("a\nb", vec![r#"NVIDIA_VISIBLE_DEVICES="a\nb""#]),
        (
            vec![format!("NVIDIA_VISIBLE_DEVICES=0,{}", "9".repeat(500))],
            vec![],
            vec![],
            false,
            vec!["...: ", "is larger than 255"],
        ),
    ]
}

/// Bad annotations and mounts.
fn annotation_and_mount_cases() -> Vec<BadCase> {
    let cdi = |v: &str| -> BadCase {
        (
            vec![],
            vec![("cdi.k8s.io/nvidia-device-plugin_x", v.to_string())],
            vec![],
            false,
            vec![],
        )
    };
    vec![
        // CDI annotations.
        (cdi("nvidia.com/gpu=").0, cdi("nvidia.com/gpu=").1, vec![], false, vec!["annotation cdi.k8s.io/nvidia-device-plugin_x=\"nvidia.com/gpu=\"", "empty item", "(after nvidia.com/gpu=)"]),
        (vec![], cdi("nvidia.com/gpu").1, vec![], false, vec![r#""nvidia.com/gpu" is not a fully qualified CDI device name (vendor/class=id)"#]),
        (vec![], cdi("nvidia.com/mig=0").1, vec![], false, vec![r#""0" is a whole GPU, not a MIG device"#, "the class gpu for whole GPUs (after nvidia.com/mig=)"]),
        (vec![], cdi(&format!("nvidia.com/mig={GPU0}")).1, vec![], false, vec!["is a whole GPU, not a MIG device"]),
        (vec![], cdi("nvidia.com/mig=all").1, vec![], false, vec![r#""all" names whole GPUs"#]),
        (vec![], cdi("nvidia.com/gpu=profile:1g.5gb").1, vec![], false, vec!["asks for a profile, which only NVIDIA_VISIBLE_DEVICES, migcage.io/devices and migcage.io/profile accept"]),
        (vec![], cdi("nvidia.com/gpu=none").1, vec![], false, vec![r#"in "nvidia.com/gpu=none": "none" is not a device"#]),
        (vec![], cdi("nvidia.com/gpu=0,nvidia.com/gpu=0").1, vec![], false, vec![r#""0" appears twice"#]),
        (vec![], cdi("nvidia.com/gpu=0:x").1, vec![], false, vec![r#""x" is not a MIG device index"#]),
        (
            vec![],
            vec![("cdi.k8s.io/a", "nvidia.com/gpu=all".into()), ("cdi.k8s.io/b", "nvidia.com/gpu=0".into())],
            vec![],
            false,
            vec![r#"annotations cdi.k8s.io/a and cdi.k8s.io/b="nvidia.com/gpu=all,nvidia.com/gpu=0": "all" cannot be combined"#],
        ),
        // migcage annotations.
        (vec![], vec![("migcage.io/profile", "1g.5gb*0".into())], vec![], false, vec![r#"annotation migcage.io/profile="1g.5gb*0": "0" is not a device count"#, "use a MIG profile such as 1g.5gb"]),
        (vec![], vec![("migcage.io/profile", "profile:1g.5gb".into())], vec![], false, vec![r#""profile:1g.5gb" has the prefix "profile:", which migcage.io/profile does not take; write "1g.5gb""#]),
        (vec![], vec![("migcage.io/devices", "0:1,0:1".into())], vec![], false, vec![r#"annotation migcage.io/devices="0:1,0:1": "0:1" appears twice"#]),
        (vec![], vec![("migcage.io/devices", "/var/run/nvidia-container-devices".into())], vec![], false, vec!["is not a device"]),
        // Mounts.
        (vec![], vec![], vec!["/var/run/nvidia-container-devices/0:x".into()], false, vec![r#"mount destination="/var/run/nvidia-container-devices/0:x": "x" is not a MIG device index"#, "as the last path component"]),
        (vec![], vec![], vec!["/run/nvidia-container-devices/a/b".into()], false, vec![r#""a/b" is not one device id"#]),
        (vec![], vec![], vec!["/var/run/nvidia-container-devices/none".into()], false, vec![r#""none" is not a device"#]),
        (
            vec![],
            vec![],
            vec!["/var/run/nvidia-container-devices/all".into(), "/var/run/nvidia-container-devices/0".into()],
            false,
            vec![r#""all" cannot be combined"#],
        ),
    ]
}

/// Bad values of the other variables, and the mounts marker without mounts.
fn other_variable_cases() -> Vec<BadCase> {
    vec![
        // Driver capabilities.
        (
            vec![
                format!("{VD}0"),
                "NVIDIA_DRIVER_CAPABILITIES=compute,foo".into(),
            ],
            vec![],
            vec![],
            false,
            vec![
                r#"NVIDIA_DRIVER_CAPABILITIES="compute,foo": "foo" is not a driver capability"#,
                "use a comma list of compute,utility,video,graphics,display,ngx,compat32 or all",
            ],
        ),
        (
            vec![
                format!("{VD}0"),
                "NVIDIA_DRIVER_CAPABILITIES=compute,,utility".into(),
            ],
            vec![],
            vec![],
            false,
            vec!["empty item"],
        ),
        (
            vec![
                format!("{VD}0"),
                "NVIDIA_DRIVER_CAPABILITIES=Compute".into(),
            ],
            vec![],
            vec![],
            false,
            vec![r#""Compute" is not a driver capability"#],
        ),
        // MIG config / monitor.
        (
            vec![format!("{VD}0"), "NVIDIA_MIG_MONITOR_DEVICES=all".into()],
            vec![],
            vec![],
            false,
            vec![
                r#"NVIDIA_MIG_MONITOR_DEVICES="all" requires a privileged container (CAP_SYS_ADMIN), but the container does not have CAP_SYS_ADMIN in its bounding set; unset NVIDIA_MIG_MONITOR_DEVICES"#,
            ],
        ),
        (
            vec![format!("{VD}0"), "NVIDIA_MIG_CONFIG_DEVICES=0".into()],
            vec![],
            vec![],
            false,
            vec!["NVIDIA_MIG_CONFIG_DEVICES=\"0\" requires a privileged container"],
        ),
        (
            vec![format!("{VD}0"), "NVIDIA_MIG_CONFIG_DEVICES=0:1".into()],
            vec![],
            vec![],
            true,
            vec![
                r#"NVIDIA_MIG_CONFIG_DEVICES="0:1": "0:1" is a MIG device; the MIG capabilities are per GPU"#,
                "use all or a comma list of GPU indexes",
            ],
        ),
        (
            vec![
                format!("{VD}0"),
                format!("NVIDIA_MIG_CONFIG_DEVICES={MIG0}"),
            ],
            vec![],
            vec![],
            true,
            vec!["is a MIG device"],
        ),
        (
            vec![format!("{VD}0"), "NVIDIA_MIG_CONFIG_DEVICES=none".into()],
            vec![],
            vec![],
            true,
            vec![r#""none" is not a device"#],
        ),
        (
            vec![format!("{VD}0"), "NVIDIA_MIG_MONITOR_DEVICES=all,0".into()],
            vec![],
            vec![],
            true,
            vec![r#""all" cannot be combined"#],
        ),
        // The volume-mounts marker without mounts.
        (
            vec![format!("{VD}/var/run/nvidia-container-devices")],
            vec![],
            vec![],
            false,
            vec![
                r#"NVIDIA_VISIBLE_DEVICES="/var/run/nvidia-container-devices" says the device list is in mounts"#,
                "mount /dev/null on",
            ],
        ),
    ]
}

#[test]
fn malformed_inputs_are_refused_with_a_useful_line() {
    let mut cases: Vec<BadCase> = visible_devices_cases();
    cases.extend(annotation_and_mount_cases());
    cases.extend(other_variable_cases());
    cases.push(vd("profile:0/x/1g.5gb", vec!["is not a MIG profile name"]));
    assert!(cases.len() >= 60, "{}", cases.len());
    let mut seen = std::collections::BTreeSet::new();
    for (env, ann, mounts, privileged, parts) in &cases {
        let env: Vec<&str> = env.iter().map(String::as_str).collect();
        let ann: Vec<(&str, &str)> = ann.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let mounts: Vec<&str> = mounts.iter().map(String::as_str).collect();
        let s = spec(&env, &ann, &mounts, *privileged);
        let e = parse(&s, &RequestPolicy::default())
            .err()
            .unwrap_or_else(|| panic!("accepted: {env:?} {ann:?} {mounts:?}"));
        let msg = e.to_string();
        assert!(!msg.contains('\n'), "{msg}");
        assert!(!parts.is_empty());
        for part in parts {
            assert!(msg.contains(part), "message {msg:?} lacks {part:?}");
        }
        // Every message says what to write instead.
        assert!(
            msg.contains("; use ")
                || msg.contains("; write ")
                || msg.contains("; unset ")
                || msg.contains("; mount "),
            "{msg}"
        );
        assert!(
            seen.insert(msg.clone()),
            "two cases give the same message: {msg}"
        );
    }
}

#[test]
fn spec_shape_errors_name_the_field() {
    let cases = [
        (json!([]), "config.json (top level)"),
        (
            json!({"process": "x"}),
            "config.json process: is not an object",
        ),
        (
            json!({"process": {"env": "A=b"}}),
            "config.json process.env: is not an array",
        ),
        (
            json!({"process": {"env": [1]}}),
            "config.json process.env: holds a non-string",
        ),
        (
            json!({"process": {"capabilities": {"bounding": "CAP_SYS_ADMIN"}}}),
            "process.capabilities.bounding: is not an array",
        ),
        (
            json!({"annotations": []}),
            "config.json annotations: is not an object",
        ),
        (
            json!({"annotations": {"a": 1}}),
            "config.json annotations: holds a non-string value",
        ),
        (json!({"mounts": {}}), "config.json mounts: is not an array"),
        (
            json!({"mounts": [{"source": "/x"}]}),
            "config.json mounts: holds a mount without a string destination",
        ),
    ];
    for (s, want) in cases {
        let msg = err(&s);
        assert!(
            msg.contains(want) && msg.contains("; write it as the OCI runtime spec says"),
            "{msg}"
        );
    }
    // null fields are absent fields.
    assert!(ok(&json!({"process": null, "annotations": null, "mounts": null})).is_noop());
}
