//! Annotations, volume mounts, and the policy that decides which sources count.

use super::*;

#[test]
fn annotations_cdi_and_migcage() {
    use DeviceSelector::*;
    let cases: Vec<(Vec<(&str, String)>, Devices)> = vec![
        (
            vec![("cdi.k8s.io/x", format!("nvidia.com/gpu={MIG0}"))],
            selected(&[MigUuid(MIG0.into())]),
        ),
        (
            vec![("cdi.k8s.io/x", "nvidia.com/gpu=0".into())],
            selected(&[GpuIndex(0)]),
        ),
        (
            vec![("cdi.k8s.io/x", "nvidia.com/mig=1:2".into())],
            selected(&[MigIndex { gpu: 1, mig: 2 }]),
        ),
        (
            vec![("cdi.k8s.io/x", "migcage.io/gpu=all".into())],
            selected(&[All]),
        ),
        (
            vec![(
                "cdi.k8s.io/x",
                format!("k8s.device-plugin.nvidia.com/gpu={GPU0}"),
            )],
            selected(&[GpuUuid(GPU0.into())]),
        ),
        (
            vec![(
                "cdi.k8s.io/x",
                format!(" vendor.com/fpga=0 , nvidia.com/gpu={MIG0},nvidia.com/gpu=0:1 "),
            )],
            selected(&[MigUuid(MIG0.into()), MigIndex { gpu: 0, mig: 1 }]),
        ),
        // Two CDI annotations add up; the same device in both counts once.
        (
            vec![
                ("cdi.k8s.io/a", "nvidia.com/gpu=0:0".into()),
                (
                    "cdi.k8s.io/b",
                    "nvidia.com/gpu=0:1,nvidia.com/gpu=0:0".into(),
                ),
            ],
            selected(&[MigIndex { gpu: 0, mig: 0 }, MigIndex { gpu: 0, mig: 1 }]),
        ),
        (
            vec![("migcage.io/devices", "0:1".into())],
            selected(&[MigIndex { gpu: 0, mig: 1 }]),
        ),
        (
            vec![("migcage.io/devices", "none".into())],
            Devices::DriverOnly,
        ),
        (
            vec![("migcage.io/devices", "void".into())],
            Devices::Untouched,
        ),
        (
            vec![("migcage.io/profile", "1g.5gb".into())],
            selected(&[profile(None, "1g.5gb", 1)]),
        ),
        (
            vec![("migcage.io/profile", "1g.5gb*2".into())],
            selected(&[profile(None, "1g.5gb", 2)]),
        ),
        (
            vec![("migcage.io/profile", "0/1g.5gb".into())],
            selected(&[profile(Some(0), "1g.5gb", 1)]),
        ),
        (
            vec![
                ("migcage.io/devices", "0:1".into()),
                ("migcage.io/profile", "2g.10gb".into()),
            ],
            selected(&[MigIndex { gpu: 0, mig: 1 }, profile(None, "2g.10gb", 1)]),
        ),
        // Only other vendors' devices, or unrelated annotations: nothing.
        (
            vec![("cdi.k8s.io/x", "vendor.com/fpga=0".into())],
            Devices::Untouched,
        ),
        (
            vec![("io.kubernetes.cri.container-type", "container".into())],
            Devices::Untouched,
        ),
        (vec![("nvidia.com/gpu", "0".into())], Devices::Untouched),
    ];
    for (ann, want) in cases {
        let a: Vec<(&str, &str)> = ann.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = ok(&spec(&[], &a, &[], false));
        assert_eq!(r.devices, want, "{ann:?}");
        if want != Devices::Untouched {
            assert!(r.sources.iter().all(|s| matches!(
                s,
                Source::CdiAnnotation { .. } | Source::MigcageAnnotation { .. }
            )));
            assert!(!r.sources.is_empty());
        }
    }
}

#[test]
fn other_classes_are_noted_and_repeated_devices_counted_once() {
    // Other classes of NVIDIA's vendors are noted, not ours.
    let r = ok(&spec(
        &[],
        &[("cdi.k8s.io/x", "nvidia.com/gds=all,nvidia.com/gpu=0")],
        &[],
        false,
    ));
    assert_eq!(r.devices, selected(&[DeviceSelector::GpuIndex(0)]));
    assert!(
        r.notes
            .iter()
            .any(|n| n.contains("\"nvidia.com/gds=all\"") && n.contains("class \"gds\"")),
        "{:?}",
        r.notes
    );
    let r = ok(&spec(
        &[],
        &[
            ("cdi.k8s.io/a", "nvidia.com/gpu=0"),
            ("cdi.k8s.io/b", "nvidia.com/gpu=0"),
        ],
        &[],
        false,
    ));
    assert_eq!(
        r.sources,
        vec![
            Source::CdiAnnotation {
                key: "cdi.k8s.io/a".into()
            },
            Source::CdiAnnotation {
                key: "cdi.k8s.io/b".into()
            }
        ]
    );
    assert!(r.notes.iter().any(|n| n.contains("counted once")));
}

#[test]
fn migcage_annotations_that_contradict_are_refused() {
    // devices=none next to a profile contradicts itself.
    let msg = err(&spec(
        &[],
        &[
            ("migcage.io/devices", "none"),
            ("migcage.io/profile", "1g.5gb"),
        ],
        &[],
        false,
    ));
    assert!(msg.contains(r#"annotation migcage.io/devices="none" and annotation migcage.io/profile="1g.5gb" name different devices"#), "{msg}");
    let msg = err(&spec(
        &[],
        &[
            ("migcage.io/devices", "all"),
            ("migcage.io/profile", "1g.5gb"),
        ],
        &[],
        false,
    ));
    assert!(msg.contains(r#""all" cannot be combined"#), "{msg}");
    let msg = err(&spec(
        &[],
        &[
            ("migcage.io/devices", "profile:1g.5gb"),
            ("migcage.io/profile", "1g.5gb*3"),
        ],
        &[],
        false,
    ));
    assert!(msg.contains("ask for the same profile twice"), "{msg}");
}

#[test]
fn volume_mounts() {
    use DeviceSelector::*;
    let dir = DEVICE_LIST_DIR;
    let cases: Vec<(Vec<String>, Devices)> = vec![
        (
            vec![format!("{dir}/{MIG0}")],
            selected(&[MigUuid(MIG0.into())]),
        ),
        (
            vec![format!("/run/nvidia-container-devices/{MIG0}/")],
            selected(&[MigUuid(MIG0.into())]),
        ),
        (
            vec![format!("{dir}/0:1"), format!("{dir}/1")],
            selected(&[MigIndex { gpu: 0, mig: 1 }, GpuIndex(1)]),
        ),
        (vec![format!("{dir}/all")], selected(&[All])),
        (
            vec![format!("{dir}/0"), format!("{dir}/0")],
            selected(&[GpuIndex(0)]),
        ),
        // The directory itself, or a look-alike, is not a device.
        (vec![dir.into(), format!("{dir}/")], Devices::Untouched),
        (
            vec![
                format!("{dir}-x/0"),
                "/var/run/nvidia-container-devicesX".into(),
            ],
            Devices::Untouched,
        ),
    ];
    for (mounts, want) in cases {
        let m: Vec<&str> = mounts.iter().map(String::as_str).collect();
        let r = ok(&spec(&[], &[], &m, false));
        assert_eq!(r.devices, want, "{mounts:?}");
        let want_sources = if want == Devices::Untouched {
            vec![]
        } else {
            vec![Source::VolumeMounts]
        };
        assert_eq!(r.sources, want_sources);
    }
    // The marker plus mounts: the mounts are the list; the marker is no source of its own.
    let r = ok(&spec(
        &["NVIDIA_VISIBLE_DEVICES=/var/run/nvidia-container-devices"],
        &[],
        &[&format!("{dir}/0:0")],
        false,
    ));
    assert_eq!(r.devices, selected(&[MigIndex { gpu: 0, mig: 0 }]));
    assert_eq!(r.sources, vec![Source::VolumeMounts]);
}

#[test]
fn policy_decides_which_sources_count() {
    let mount = format!("{DEVICE_LIST_DIR}/0:2");
    let full = spec(
        &["NVIDIA_VISIBLE_DEVICES=0:1"],
        &[("cdi.k8s.io/x", "nvidia.com/gpu=0:3")],
        &[&mount],
        false,
    );
    let mig = |g, m| selected(&[DeviceSelector::MigIndex { gpu: g, mig: m }]);
    // (policy, expected devices, expected note fragments)
    let cases: Vec<(RequestPolicy, Devices, Vec<&str>)> = vec![
        (
            policy(true, false, false, false),
            mig(0, 1),
            vec!["accept_annotations = false", "accept_volume_mounts = false"],
        ),
        (
            policy(false, false, true, false),
            mig(0, 3),
            vec!["accept_env = false", "accept_volume_mounts = false"],
        ),
        (
            policy(false, false, false, true),
            mig(0, 2),
            vec!["accept_env = false", "accept_annotations = false"],
        ),
        (
            policy(true, true, false, false),
            Devices::Untouched,
            vec!["not privileged", "env_privileged_only = true"],
        ),
        (
            policy(false, false, false, false),
            Devices::Untouched,
            vec!["accept_env = false"],
        ),
    ];
    for (p, want, notes) in cases {
        let r = parse(&full, &p).unwrap_or_else(|e| panic!("{p:?}: {e}"));
        assert_eq!(r.devices, want, "{p:?}");
        for n in notes {
            assert!(
                r.notes.iter().any(|x| x.contains(n)),
                "{p:?}: no note {n:?} in {:?}",
                r.notes
            );
        }
    }
    // Everything accepted: three different lists conflict.
    let msg = parse(&full, &RequestPolicy::default())
        .unwrap_err()
        .to_string();
    assert!(msg.contains("name different devices"), "{msg}");
}

#[test]
fn env_privileged_only_and_what_an_ignored_source_leaves() {
    let mount = format!("{DEVICE_LIST_DIR}/0:2");
    let mig = |g, m| selected(&[DeviceSelector::MigIndex { gpu: g, mig: m }]);
    // env_privileged_only: honoured for a privileged container, ignored otherwise.
    let p = policy(true, true, true, true);
    let vars = ["NVIDIA_VISIBLE_DEVICES=0:1"];
    assert_eq!(
        parse(&spec(&vars, &[], &[], true), &p).unwrap().devices,
        mig(0, 1)
    );
    let r = parse(&spec(&vars, &[], &[], false), &p).unwrap();
    assert!(r.is_noop());
    assert_eq!(r.notes.len(), 1);
    assert!(
        r.notes[0].starts_with("NVIDIA_VISIBLE_DEVICES=\"0:1\" ignored"),
        "{:?}",
        r.notes
    );
    // An ignored variable is not even parsed.
    assert!(parse(
        &spec(&["NVIDIA_VISIBLE_DEVICES=garbage"], &[], &[], false),
        &p
    )
    .unwrap()
    .is_noop());
    // ... and the device plugin's list still counts for that container.
    let r = parse(
        &spec(&vars, &[("cdi.k8s.io/x", "nvidia.com/gpu=0:3")], &[], false),
        &p,
    )
    .unwrap();
    assert_eq!(r.devices, mig(0, 3));

    // MIG config with the environment not accepted: noted, not granted.
    let r = parse(
        &spec(
            &["NVIDIA_MIG_CONFIG_DEVICES=all"],
            &[("migcage.io/devices", "0:0")],
            &[],
            true,
        ),
        &policy(false, false, true, true),
    )
    .unwrap();
    assert_eq!(r.mig_config, None);
    assert!(r
        .notes
        .iter()
        .any(|n| n.starts_with("NVIDIA_MIG_CONFIG_DEVICES ignored")));

    // The marker with mounts not accepted: noted, nothing.
    let r = parse(
        &spec(
            &["NVIDIA_VISIBLE_DEVICES=/var/run/nvidia-container-devices"],
            &[],
            &[&mount],
            false,
        ),
        &policy(true, false, true, false),
    )
    .unwrap();
    assert!(r.is_noop());
    assert!(
        r.notes.iter().any(|n| n.contains("points at mounts")),
        "{:?}",
        r.notes
    );
}
