//! Where on-demand instances go, against the placement rules, and how records are settled.

use super::*;
use crate::core::mig::CiState;

/// GPU `index` of `model_key` with `instances` (profile, start, holder); GI ids from 10.
fn gpu(index: u32, model_key: &str, instances: &[(&str, u32, Option<&str>)]) -> GpuLayout {
    crate::core::mig::testing::layout(
        index,
        model_key,
        10,
        |i| format!("MIG-{index}-{i}"),
        instances,
    )
}

fn a100(index: u32, instances: &[(&str, u32, Option<&str>)]) -> GpuLayout {
    gpu(index, "a100-sxm4-40gb", instances)
}

/// The GPU after the instance is made at `site`.
fn with(mut g: GpuLayout, site: &Site) -> GpuLayout {
    let n = g.instances.len();
    g.instances.push(GiState {
        id: 10 + n as u32,
        profile: site.profile,
        start: site.placement.start,
        compute_instances: vec![CiState {
            id: 0,
            uuid: format!("MIG-{}-{n}", g.index),
        }],
        held_by: None,
    });
    g
}

#[test]
fn seven_1g_fill_an_a100_from_the_top_and_the_eighth_finds_no_room() {
    let mut g = a100(0, &[]);
    let mut starts = Vec::new();
    for _ in 0..7 {
        let site = choose_site(std::slice::from_ref(&g), "1g.5gb", None).unwrap();
        starts.push(site.placement.start);
        g = with(g, &site);
    }
    assert_eq!(starts, [6, 5, 4, 3, 2, 1, 0]);
    migcage_topology::placement::check(g.model, &placed(&g.instances)).unwrap();
    let e = choose_site(&[g], "1g.5gb", None).unwrap_err();
    assert_eq!(
        e.to_string(),
        "GPU 0 (NVIDIA A100-SXM4-40GB): has 1g.5gb x7, fits nothing more"
    );
}

#[test]
fn a_3g_fits_after_three_1g_but_not_after_four() {
    let three = a100(
        0,
        &[
            ("1g.5gb", 6, None),
            ("1g.5gb", 5, None),
            ("1g.5gb", 4, None),
        ],
    );
    let site = choose_site(std::slice::from_ref(&three), "3g.20gb", None).unwrap();
    assert_eq!((site.placement.start, site.placement.size), (0, 4));
    let four = a100(
        0,
        &[
            ("1g.5gb", 6, None),
            ("1g.5gb", 5, None),
            ("1g.5gb", 4, None),
            ("1g.5gb", 3, None),
        ],
    );
    let e = choose_site(std::slice::from_ref(&four), "3g.20gb", None).unwrap_err();
    assert!(
        e.to_string().contains("has 1g.5gb x4, fits 1g.5gb x3"),
        "{e}"
    );
    // Four 1g.5gb at the bottom leave the top half, where a 3g.20gb goes.
    let low = a100(
        0,
        &[
            ("1g.5gb", 0, None),
            ("1g.5gb", 1, None),
            ("1g.5gb", 2, None),
            ("1g.5gb", 3, None),
        ],
    );
    let site = choose_site(&[low], "3g.20gb", None).unwrap();
    assert_eq!(site.placement.start, 4);
}

#[test]
fn a_split_gpu_is_split_further_before_a_whole_one() {
    let gpus = [a100(0, &[]), a100(1, &[("1g.5gb", 6, Some("c"))])];
    let site = choose_site(&gpus, "1g.5gb", None).unwrap();
    assert_eq!((site.gpu, site.gpu_uuid.as_str()), (1, "GPU-1"));
    // Of two equal GPUs, the lower index.
    let gpus = [a100(0, &[]), a100(1, &[])];
    assert_eq!(choose_site(&gpus, "2g.10gb", None).unwrap().gpu, 0);
    // A full GPU 1: GPU 0 takes it.
    let full = a100(1, &[("7g.40gb", 0, None)]);
    let gpus = [a100(0, &[]), full];
    assert_eq!(choose_site(&gpus, "1g.5gb", None).unwrap().gpu, 0);
}

#[test]
fn a_named_gpu_is_the_only_choice() {
    let gpus = [a100(0, &[]), a100(1, &[("7g.40gb", 0, None)])];
    let e = choose_site(&gpus, "1g.5gb", Some(1)).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("GPU 1 (NVIDIA A100-SXM4-40GB): has 7g.40gb x1"),
        "{e}"
    );
    assert_eq!(choose_site(&gpus, "1g.5gb", Some(0)).unwrap().gpu, 0);
    let e = choose_site(&gpus, "1g.5gb", Some(4)).unwrap_err();
    assert_eq!(e.to_string(), "there is no GPU 4");
}

#[test]
fn gpus_without_the_profile_or_mig_say_why() {
    let mut off = a100(0, &[]);
    off.mig_enabled = false;
    let h100 = gpu(1, "h100-sxm5-80gb", &[]);
    let e = choose_site(&[off, h100], "1g.5gb", None).unwrap_err();
    assert_eq!(
        e.to_string(),
        "GPU 0 (NVIDIA A100-SXM4-40GB): MIG mode is off; GPU 1 (NVIDIA H100 80GB HBM3): its model has no profile 1g.5gb (its profiles: 1g.10gb, 1g.10gb+me, 1g.20gb, 2g.20gb, 3g.40gb, 4g.40gb, 7g.80gb)"
    );
    assert!(e.unknown_profile);
    let full = a100(0, &[("7g.40gb", 0, None)]);
    assert!(
        !choose_site(&[full], "1g.5gb", None)
            .unwrap_err()
            .unknown_profile
    );
}

/// Random sequences of on-demand creates and destroys never break the placement rules, and a
/// create fails only when the model says no instance of the profile fits.
#[test]
fn random_creates_and_destroys_keep_the_rules() {
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    };
    for key in [
        "a100-sxm4-40gb",
        "a100-sxm4-80gb",
        "a30-24gb",
        "h100-sxm5-80gb",
        "h200-sxm5-141gb",
    ] {
        let mut g = gpu(0, key, &[]);
        let profiles = g.model.gi_profiles;
        for _ in 0..400 {
            if !g.instances.is_empty() && next(3) == 0 {
                let i = next(g.instances.len());
                g.instances.remove(i);
                continue;
            }
            let p = &profiles[next(profiles.len())];
            let now = placed(&g.instances);
            match choose_site(std::slice::from_ref(&g), p.name, None) {
                Ok(site) => {
                    assert!(placement::remaining_capacity(p, &now) > 0);
                    g = with(g, &site);
                    migcage_topology::placement::check(g.model, &placed(&g.instances))
                        .unwrap_or_else(|e| panic!("{key}: {e}"));
                }
                Err(_) => assert_eq!(
                    placement::remaining_capacity(p, &now),
                    0,
                    "{key} {}",
                    p.name
                ),
            }
        }
    }
}

fn record(start: u32, gi: Option<u32>, uuid: Option<&str>) -> Created {
    Created {
        gpu_uuid: "GPU-0".into(),
        gpu: 0,
        profile: "1g.5gb".into(),
        start,
        gi,
        uuid: uuid.map(str::to_string),
        by: "c1".into(),
        since: 1,
    }
}

#[test]
fn reconcile_forgets_what_is_gone_and_destroys_or_adopts_what_nobody_holds() {
    // 0:6 held, 0:5 free, 0:4 a GPU instance without its compute instance.
    let mut g = a100(
        0,
        &[
            ("1g.5gb", 6, Some("c1")),
            ("1g.5gb", 5, None),
            ("1g.5gb", 4, None),
        ],
    );
    g.instances[2].compute_instances.clear();
    let layouts = [g];
    let records = [
        record(6, Some(10), Some("MIG-0-0")),
        record(5, None, None),
        record(4, None, None),
        // Never made (killed before the create), and one destroyed since.
        record(3, None, None),
        record(2, Some(40), Some("MIG-gone")),
    ];
    let (steps, keep) = reconcile(&records, &layouts, false);
    assert_eq!(
        steps.iter().map(ToString::to_string).collect::<Vec<_>>(),
        ["GPU 0: create the compute instance of 1g.5gb GPU instance 12"]
    );
    assert_eq!(
        keep.iter()
            .map(|r| (r.start, r.gi, r.uuid.clone()))
            .collect::<Vec<_>>(),
        [
            (6, Some(10), Some("MIG-0-0".to_string())),
            (5, Some(11), Some("MIG-0-1".to_string())),
            (4, Some(12), None),
        ]
    );
    let (steps, keep) = reconcile(&records, &layouts, true);
    assert_eq!(
        steps.iter().map(ToString::to_string).collect::<Vec<_>>(),
        [
            "GPU 0: destroy compute instance 0 of GPU instance 11",
            "GPU 0: destroy 1g.5gb GPU instance 11 at 5:1",
            "GPU 0: destroy 1g.5gb GPU instance 12 at 4:1",
        ]
    );
    assert_eq!(keep.len(), 1);
    assert_eq!(keep[0].uuid.as_deref(), Some("MIG-0-0"));
}

#[test]
fn an_instance_made_again_by_someone_else_is_not_ours() {
    // The record's MIG device is gone; another one now sits at its placement.
    let layouts = [a100(0, &[("1g.5gb", 6, None)])];
    let (steps, keep) = reconcile(&[record(6, Some(10), Some("MIG-old"))], &layouts, true);
    assert!(steps.is_empty() && keep.is_empty(), "{steps:?} {keep:?}");
}

#[test]
fn only_half_made_or_unheld_records_need_nvml() {
    let made = record(6, Some(10), Some("MIG-a"));
    assert!(!needs_reconcile(std::slice::from_ref(&made), &[], false));
    assert!(needs_reconcile(std::slice::from_ref(&made), &[], true));
    assert!(!needs_reconcile(
        std::slice::from_ref(&made),
        &["MIG-a"],
        true
    ));
    assert!(needs_reconcile(&[record(5, None, None)], &["MIG-a"], false));
    assert!(!needs_reconcile(&[], &[], true));
}
