//! Sources that must agree, privilege, the MIG and capability variables, and the k8s fixtures.

use serde_json::json;

use super::*;

#[test]
fn lists_in_different_words_are_left_for_the_plan_to_compare() {
    let r = ok(&spec(
        &[&format!("NVIDIA_VISIBLE_DEVICES={MIG0}")],
        &[("migcage.io/devices", "0:1")],
        &[],
        false,
    ));
    let labels: Vec<&str> = r.must_agree.iter().map(|s| s.label.as_str()).collect();
    assert_eq!(
        labels,
        ["annotation migcage.io/devices", "NVIDIA_VISIBLE_DEVICES"]
    );
    assert_eq!(r.must_agree[1].value, MIG0);
    // Sources that agree word for word need no check.
    let r = ok(&spec(
        &["NVIDIA_VISIBLE_DEVICES=0:1"],
        &[("migcage.io/devices", "0:1")],
        &[],
        false,
    ));
    assert!(r.must_agree.is_empty());
}

#[test]
fn conflicts_name_both_sources_and_values() {
    let cases: Vec<(Value, Vec<&str>)> = vec![
        (
            spec(
                &["NVIDIA_VISIBLE_DEVICES=0:1"],
                &[("cdi.k8s.io/k", "nvidia.com/gpu=0:2")],
                &[],
                false,
            ),
            vec![
                r#"annotation cdi.k8s.io/k="nvidia.com/gpu=0:2" and NVIDIA_VISIBLE_DEVICES="0:1" name different devices; remove one of them"#,
            ],
        ),
        (
            spec(
                &["NVIDIA_VISIBLE_DEVICES=none"],
                &[("cdi.k8s.io/k", "nvidia.com/gpu=0:2")],
                &[],
                false,
            ),
            vec![
                r#"NVIDIA_VISIBLE_DEVICES="none""#,
                "annotation cdi.k8s.io/k",
            ],
        ),
        (
            spec(
                &[],
                &[("cdi.k8s.io/k", "nvidia.com/gpu=0:2")],
                &["/var/run/nvidia-container-devices/0:1"],
                false,
            ),
            vec![
                r#"mounts under /var/run/nvidia-container-devices="0:1" and annotation cdi.k8s.io/k="nvidia.com/gpu=0:2""#,
            ],
        ),
        (
            spec(
                &[],
                &[
                    ("cdi.k8s.io/k", "nvidia.com/gpu=0:2"),
                    ("migcage.io/devices", "0:1"),
                ],
                &[],
                false,
            ),
            vec![
                r#"annotation cdi.k8s.io/k="nvidia.com/gpu=0:2" and annotation migcage.io/devices="0:1""#,
            ],
        ),
        (
            spec(
                &["NVIDIA_VISIBLE_DEVICES=0:1,0:2"],
                &[("migcage.io/devices", "0:1")],
                &[],
                false,
            ),
            vec![r#"NVIDIA_VISIBLE_DEVICES="0:1,0:2""#],
        ),
    ];
    for (s, parts) in cases {
        let msg = err(&s);
        for p in parts {
            assert!(msg.contains(p), "{msg:?} lacks {p:?}");
        }
    }
    // Sources that agree (in any order, any spelling of the same list) are fine and all recorded.
    let r = ok(&spec(
        &["NVIDIA_VISIBLE_DEVICES=0:2, 0:1"],
        &[("cdi.k8s.io/k", "nvidia.com/gpu=0:1,nvidia.com/mig=0:2")],
        &[],
        false,
    ));
    assert_eq!(
        r.sources,
        vec![
            Source::CdiAnnotation {
                key: "cdi.k8s.io/k".into()
            },
            Source::Env
        ]
    );
    assert_eq!(
        r.devices,
        selected(&[
            DeviceSelector::MigIndex { gpu: 0, mig: 1 },
            DeviceSelector::MigIndex { gpu: 0, mig: 2 }
        ])
    );
}

#[test]
fn cuda_image_all_gives_way_to_the_kubelet() {
    for (ann, mounts) in [
        (
            vec![("cdi.k8s.io/k", format!("nvidia.com/gpu={MIG0}"))],
            vec![],
        ),
        (vec![], vec![format!("{DEVICE_LIST_DIR}/{MIG0}")]),
        (vec![("migcage.io/devices", MIG0.to_string())], vec![]),
    ] {
        let a: Vec<(&str, &str)> = ann.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let m: Vec<&str> = mounts.iter().map(String::as_str).collect();
        let r = ok(&spec(&["NVIDIA_VISIBLE_DEVICES=all"], &a, &m, false));
        assert_eq!(r.devices, selected(&[DeviceSelector::MigUuid(MIG0.into())]));
        assert!(!r.sources.contains(&Source::Env));
        assert!(
            r.notes
                .iter()
                .any(|n| n.contains("nvidia/cuda base images")),
            "{:?}",
            r.notes
        );
    }
    // `all` alone is honoured; `all` against `all` agrees.
    assert_eq!(
        ok(&env(&["NVIDIA_VISIBLE_DEVICES=all"])).devices,
        selected(&[DeviceSelector::All])
    );
    let r = ok(&spec(
        &["NVIDIA_VISIBLE_DEVICES=all"],
        &[("cdi.k8s.io/k", "nvidia.com/gpu=all")],
        &[],
        false,
    ));
    assert_eq!(r.devices, selected(&[DeviceSelector::All]));
    // The exception is for `all` only: an explicit env list still conflicts.
    assert!(err(&spec(
        &["NVIDIA_VISIBLE_DEVICES=0"],
        &[("cdi.k8s.io/k", "nvidia.com/gpu=1")],
        &[],
        false
    ))
    .contains("name different devices"));
}

#[test]
fn privileged_is_cap_sys_admin_in_the_bounding_set() {
    assert!(ok(&spec(&[], &[], &[], true)).privileged);
    assert!(!ok(&spec(&[], &[], &[], false)).privileged);
    // Effective or permitted alone do not count; the bounding set is what the process can ever get.
    let s = json!({"process": {"capabilities": {"effective": ["CAP_SYS_ADMIN"], "permitted": ["CAP_SYS_ADMIN"], "bounding": ["CAP_KILL"]}}});
    assert!(!ok(&s).privileged);
    assert!(!ok(&json!({"process": {"args": ["sh"]}})).privileged);
    assert!(
        !ok(&json!({"process": {"capabilities": {"bounding": ["cap_sys_admin", "SYS_ADMIN"]}}}))
            .privileged
    );
}

/// `spec` with a user namespace of its own (and uid/gid mappings, as runc needs).
fn in_user_namespace(mut s: Value) -> Value {
    s["linux"] = json!({
        "namespaces": [{"type": "pid"}, {"type": "user"}, {"type": "mount"}],
        "uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
        "gidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}]
    });
    s
}

#[test]
fn cap_sys_admin_in_a_user_namespace_is_not_privilege() {
    assert!(!ok(&in_user_namespace(spec(&[], &[], &[], true))).privileged);
    // Joining an existing user namespace is one too.
    let mut s = spec(&[], &[], &[], true);
    s["linux"] = json!({"namespaces": [{"type": "user", "path": "/proc/42/ns/user"}]});
    assert!(!ok(&s).privileged);
    // Other namespaces leave the host's privilege alone.
    s["linux"] = json!({"namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "network"}]});
    assert!(ok(&s).privileged);
    // A namespace list of the wrong shape is no proof of the host's user namespace.
    for bad in [json!("user"), json!([1]), json!({"type": "user"})] {
        s["linux"] = json!({ "namespaces": bad });
        assert!(!ok(&s).privileged, "{bad}");
        assert!(has_user_namespace(&s), "{bad}");
    }
    s["linux"] = json!({"namespaces": null});
    assert!(ok(&s).privileged);
}

#[test]
fn mig_config_and_monitor_need_host_privilege() {
    for var in [
        "NVIDIA_MIG_CONFIG_DEVICES=all",
        "NVIDIA_MIG_MONITOR_DEVICES=all",
    ] {
        let s = in_user_namespace(spec(&["NVIDIA_VISIBLE_DEVICES=0:1", var], &[], &[], true));
        let e = parse(&s, &RequestPolicy::default()).unwrap_err();
        assert!(
            matches!(e, RequestError::NeedsPrivileged { why, .. } if why == spec_view::OWN_USER_NAMESPACE),
            "{var}: {e}"
        );
        let line = e.to_string();
        assert!(
            line.contains("requires a privileged container (CAP_SYS_ADMIN), but the container has CAP_SYS_ADMIN only inside its own user namespace"),
            "{line}"
        );
        assert!(
            line.contains("without a user namespace") && !line.contains('\n'),
            "{line}"
        );
        // The same spec without the user namespace is honoured.
        let mut host = s.clone();
        host["linux"] = json!({"namespaces": [{"type": "pid"}, {"type": "mount"}]});
        assert!(parse(&host, &RequestPolicy::default()).is_ok(), "{var}");
    }
}

#[test]
fn mig_config_and_monitor() {
    use DeviceSelector::*;
    let r = ok(&spec(
        &[
            "NVIDIA_VISIBLE_DEVICES=0",
            "NVIDIA_MIG_CONFIG_DEVICES=all",
            &format!("NVIDIA_MIG_MONITOR_DEVICES=0, {GPU0}"),
        ],
        &[],
        &[],
        true,
    ));
    assert_eq!(r.mig_config, Some(vec![All]));
    assert_eq!(r.mig_monitor, Some(vec![GpuIndex(0), GpuUuid(GPU0.into())]));
    // Empty is unset, also for an unprivileged container.
    let r = ok(&env(&[
        "NVIDIA_VISIBLE_DEVICES=0",
        "NVIDIA_MIG_CONFIG_DEVICES=",
        "NVIDIA_MIG_MONITOR_DEVICES= ",
    ]));
    assert_eq!((r.mig_config, r.mig_monitor), (None, None));
    // `none` devices still carries MIG monitor for a privileged container.
    let r = ok(&spec(
        &[
            "NVIDIA_VISIBLE_DEVICES=none",
            "NVIDIA_MIG_MONITOR_DEVICES=1",
        ],
        &[],
        &[],
        true,
    ));
    assert_eq!(r.devices, Devices::DriverOnly);
    assert_eq!(r.mig_monitor, Some(vec![GpuIndex(1)]));
}

#[test]
fn driver_capabilities() {
    type C = DriverCapabilities;
    let cases = [
        (None, C::DEFAULT),
        (Some(""), C::DEFAULT),
        (Some("  "), C::DEFAULT),
        (Some("compute"), C::COMPUTE),
        (Some("utility, video"), C::UTILITY | C::VIDEO),
        (
            Some("graphics,display,ngx,compat32"),
            C::GRAPHICS | C::DISPLAY | C::NGX | C::COMPAT32,
        ),
        (Some("all"), C::ALL),
        (Some("compute,all"), C::ALL),
        (Some("compute,compute"), C::COMPUTE),
    ];
    for (value, want) in cases {
        let mut vars = vec!["NVIDIA_VISIBLE_DEVICES=none".to_string()];
        if let Some(v) = value {
            vars.push(format!("NVIDIA_DRIVER_CAPABILITIES={v}"));
        }
        let vars: Vec<&str> = vars.iter().map(String::as_str).collect();
        assert_eq!(ok(&env(&vars)).driver_capabilities, want, "{value:?}");
    }
    assert_eq!(C::DEFAULT.to_string(), "compute,utility");
    assert_eq!(C::ALL.names().len(), 7);
    assert!(C::ALL.contains(C::NGX) && !C::DEFAULT.contains(C::VIDEO) && C::empty().is_empty());
    assert_eq!(
        serde_json::to_value(C::UTILITY | C::COMPUTE).unwrap(),
        json!(["compute", "utility"])
    );
    assert_eq!(format!("{:?}", C::VIDEO), "DriverCapabilities(video)");
}

#[test]
fn request_serializes_for_explain() {
    let r = ok(&spec(
        &["NVIDIA_VISIBLE_DEVICES=all"],
        &[("cdi.k8s.io/k", &format!("nvidia.com/gpu={MIG0}"))],
        &[],
        false,
    ));
    let v = serde_json::to_value(&r).unwrap();
    assert_eq!(
        v["devices"],
        json!({"kind": "selected", "selectors": [MIG0]})
    );
    assert_eq!(
        v["sources"],
        json!([{"kind": "cdi_annotation", "key": "cdi.k8s.io/k"}])
    );
    assert_eq!(v["driver_capabilities"], json!(["compute", "utility"]));
    assert_eq!(v["privileged"], json!(false));
    assert_eq!(v["notes"].as_array().unwrap().len(), 1);
    let v = serde_json::to_value(ok(&env(&["NVIDIA_VISIBLE_DEVICES=none"]))).unwrap();
    assert_eq!(v["devices"], json!({"kind": "driver_only"}));
    assert_eq!(v["sources"], json!([{"kind": "env"}]));
    assert_eq!(
        Source::VolumeMounts.to_string(),
        "mounts under /var/run/nvidia-container-devices"
    );
}

const K8S_MIG: &str = "MIG-5c89852c-d268-c3f3-1b07-005d5ae1dc3f";

fn fixture(text: &str) -> Value {
    let v: Value = serde_json::from_str(text).unwrap();
    // The fixtures are real-shaped: oci-spec reads them as runtime specs.
    serde_json::from_value::<oci_spec::runtime::Spec>(v.clone()).unwrap();
    v
}

#[test]
fn k8s_device_plugin_envvar_strategy() {
    let s = fixture(include_str!("../../../../tests/fixtures/k8s/envvar.json"));
    let r = ok(&s);
    assert_eq!(
        r.devices,
        selected(&[DeviceSelector::MigUuid(K8S_MIG.into())])
    );
    assert_eq!(r.sources, vec![Source::Env]);
    assert_eq!(r.driver_capabilities, DriverCapabilities::DEFAULT);
    assert!(!r.privileged);
    assert!(r.notes.is_empty(), "{:?}", r.notes);
    // A secure cluster that honours the environment only for privileged containers gives this
    // pod nothing.
    let r = parse(&s, &policy(true, true, true, true)).unwrap();
    assert!(r.is_noop());
}

#[test]
fn k8s_device_plugin_volume_mounts_strategy() {
    let s = fixture(include_str!(
        "../../../../tests/fixtures/k8s/volume-mounts.json"
    ));
    for p in [
        RequestPolicy::default(),
        policy(false, false, false, true),
        policy(true, true, false, true),
    ] {
        let r = parse(&s, &p).unwrap();
        assert_eq!(
            r.devices,
            selected(&[DeviceSelector::MigUuid(K8S_MIG.into())]),
            "{p:?}"
        );
        assert_eq!(r.sources, vec![Source::VolumeMounts]);
    }
    // Mounts not accepted: the env var only points at them, so nothing.
    let r = parse(&s, &policy(true, false, true, false)).unwrap();
    assert!(r.is_noop());
}

#[test]
fn k8s_device_plugin_cdi_annotations_strategy() {
    let s = fixture(include_str!(
        "../../../../tests/fixtures/k8s/cdi-annotations.json"
    ));
    let r = ok(&s);
    assert_eq!(
        r.devices,
        selected(&[DeviceSelector::MigUuid(K8S_MIG.into())])
    );
    assert_eq!(
        r.sources,
        vec![Source::CdiAnnotation {
            key: "cdi.k8s.io/nvidia-device-plugin_2b9d4f61-7c3e-4a85-9f0d-6e1a2b3c4d5e".into()
        }]
    );
    // The image's baked-in NVIDIA_VISIBLE_DEVICES=all gave way, and says so.
    assert_eq!(r.notes.len(), 1, "{:?}", r.notes);
    assert!(r.notes[0].contains("nvidia/cuda base images"));
    // Without annotations accepted, the image default is all that is left.
    let r = parse(&s, &policy(true, false, false, true)).unwrap();
    assert_eq!(r.devices, selected(&[DeviceSelector::All]));
}
