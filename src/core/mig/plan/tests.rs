//! The plan against the placement rules: from empty, twice (a no-op), around held instances,
//! and each refusal.

use super::*;
use crate::core::mig::config::{select, Devices};
use crate::core::mig::CiState;

/// GPU 0, an A100-40GB with `instances` (profile, start, holder); GI ids from 20.
fn a100(instances: &[(&str, u32, Option<&str>)]) -> GpuLayout {
    crate::core::mig::testing::layout(0, "a100-sxm4-40gb", 20, |i| format!("MIG-{i}"), instances)
}

fn spec(devices: &[(&str, u32)]) -> Vec<DeviceSpec> {
    vec![DeviceSpec {
        devices: Devices::List(vec![0]),
        device_filter: None,
        mig_enabled: true,
        mig_devices: devices.iter().map(|(n, c)| (n.to_string(), *c)).collect(),
    }]
}

/// The layout after `plan` ran: what the driver would have.
fn after(mut gpu: GpuLayout, plan: &Plan) -> GpuLayout {
    let mut next_id = 100;
    for step in &plan.steps {
        match step {
            Step::SetMigMode { enabled, .. } => gpu.mig_enabled = *enabled,
            Step::DestroyCi { gi, ci, .. } => {
                let g = gpu.instances.iter_mut().find(|i| i.id == *gi).unwrap();
                g.compute_instances.retain(|c| c.id != *ci);
            }
            Step::DestroyGi { gi, .. } => {
                let g = gpu.instances.iter().find(|i| i.id == *gi).unwrap();
                assert!(
                    g.compute_instances.is_empty(),
                    "destroyed with compute instances"
                );
                gpu.instances.retain(|i| i.id != *gi);
            }
            Step::CreateGi { profile, start, .. } => {
                next_id += 1;
                gpu.instances.push(GiState {
                    id: next_id,
                    profile,
                    start: *start,
                    compute_instances: vec![CiState {
                        id: 0,
                        uuid: format!("MIG-new{next_id}"),
                    }],
                    held_by: None,
                });
            }
            Step::CreateCi { gi, .. } => {
                let g = gpu.instances.iter_mut().find(|i| i.id == *gi).unwrap();
                g.compute_instances.push(CiState {
                    id: 0,
                    uuid: "MIG-ci".into(),
                });
            }
        }
        let placed: Vec<Placed> = gpu.instances.iter().map(|i| i.placed()).collect();
        placement::check(gpu.model, &placed).unwrap_or_else(|e| panic!("after {step}: {e}"));
    }
    gpu
}

#[test]
fn from_empty_then_again_is_a_no_op() {
    let empty = a100(&[]);
    let target = spec(&[("3g.20gb", 1), ("2g.10gb", 1), ("1g.5gb", 2)]);
    let p = plan("mixed", &target, std::slice::from_ref(&empty)).unwrap();
    assert_eq!(p.steps.len(), 4);
    assert!(p.steps.iter().all(|s| matches!(s, Step::CreateGi { .. })));
    let done = after(empty, &p);
    assert_eq!(done.counts().values().sum::<u32>(), 4);
    let again = plan("mixed", &target, &[done]).unwrap();
    assert_eq!(again, Plan::default());
}

#[test]
fn held_instances_are_kept_and_the_rest_placed_around_them() {
    let gpu = a100(&[
        ("1g.5gb", 0, Some("web")),
        ("1g.5gb", 3, None),
        ("2g.10gb", 4, None),
    ]);
    let p = plan(
        "all-1g",
        &spec(&[("1g.5gb", 7)]),
        std::slice::from_ref(&gpu),
    )
    .unwrap();
    // The 2g.10gb goes, the free 1g.5gb stays, five are made.
    let destroys = p
        .steps
        .iter()
        .filter(|s| matches!(s, Step::DestroyGi { .. }))
        .count();
    let creates = p
        .steps
        .iter()
        .filter(|s| matches!(s, Step::CreateGi { .. }))
        .count();
    assert_eq!((destroys, creates), (1, 5));
    let done = after(gpu, &p);
    assert!(done
        .instances
        .iter()
        .any(|i| i.held_by.as_deref() == Some("web") && i.start == 0));
    assert_eq!(done.counts()["1g.5gb"], 7);
}

#[test]
fn free_instances_in_the_way_are_moved_but_held_ones_never() {
    // A free 1g.5gb at 2 blocks 3g.20gb at 0; a held one at 6 leaves room for one 3g at 0.
    let gpu = a100(&[("1g.5gb", 2, None), ("1g.5gb", 6, Some("db"))]);
    let target = spec(&[("3g.20gb", 1), ("1g.5gb", 2)]);
    let p = plan("x", &target, std::slice::from_ref(&gpu)).unwrap();
    let done = after(gpu, &p);
    assert_eq!(done.counts()["3g.20gb"], 1);
    assert!(done
        .instances
        .iter()
        .any(|i| i.held_by.is_some() && i.start == 6));
}

#[test]
fn a_held_instance_in_the_way_is_refused_naming_its_holder() {
    let gpu = a100(&[("1g.5gb", 2, Some("trainer"))]);
    let e = plan(
        "two-3g",
        &spec(&[("3g.20gb", 2)]),
        std::slice::from_ref(&gpu),
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        e,
        "GPU 0: reaching two-3g would destroy or move 1g.5gb GPU instance 20 (MIG-0), held by container trainer; release it (migcage release CONTAINER) or choose a layout that keeps it"
    );
    let e = plan(
        "one-7g",
        &spec(&[("7g.40gb", 1)]),
        std::slice::from_ref(&gpu),
    )
    .unwrap_err();
    assert!(matches!(e, PlanError::Held { .. }), "{e}");
    let mut off = spec(&[]);
    off[0].mig_enabled = false;
    assert!(matches!(
        plan("off", &off, &[gpu]).unwrap_err(),
        PlanError::Held { .. }
    ));
}

#[test]
fn bad_targets_say_what_fits() {
    let gpu = a100(&[]);
    let e = plan("x", &spec(&[("1g.5gb", 8)]), std::slice::from_ref(&gpu))
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("GPU 0 (NVIDIA A100-SXM4-40GB): 8x 1g.5gb does not fit; at most (each alone): 7x 1g.5gb"), "{e}");
    let e = plan(
        "x",
        &spec(&[("1g.10gb+me", 1), ("9g.99gb", 1)]),
        std::slice::from_ref(&gpu),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("has no MIG profile \"1g.10gb+me\"") || e.contains("\"9g.99gb\""),
        "{e}"
    );
    let mut far = spec(&[("1g.5gb", 1)]);
    far[0].devices = Devices::List(vec![3]);
    let e = plan("x", &far, &[gpu]).unwrap_err().to_string();
    assert_eq!(
        e,
        "the configuration names GPU 3, but this host has only GPU 0; name one of those"
    );
}

#[test]
fn mig_mode_and_a_cut_short_create() {
    let mut gpu = a100(&[]);
    gpu.mig_enabled = false;
    let p = plan("x", &spec(&[("7g.40gb", 1)]), std::slice::from_ref(&gpu)).unwrap();
    assert!(p.changes_mig_mode());
    assert_eq!(p.steps[0].to_string(), "GPU 0: turn MIG mode on");
    assert_eq!(
        p.steps[1].to_string(),
        "GPU 0: create 7g.40gb at 0:8 with its compute instance"
    );
    // A GPU instance whose compute instance was never made gets it, and is kept.
    let mut half = a100(&[("3g.20gb", 4, None)]);
    half.instances[0].compute_instances.clear();
    let p = plan("x", &spec(&[("3g.20gb", 1)]), &[half]).unwrap();
    assert_eq!(p.steps.len(), 1);
    assert!(matches!(p.steps[0], Step::CreateCi { gi: 20, .. }));
}

#[test]
fn a_whole_dgx_from_a_mig_parted_file() {
    let text = "version: v1\nmig-configs:\n  all-1g.5gb:\n    - devices: all\n      mig-enabled: true\n      mig-devices:\n        \"1g.5gb\": 7\n";
    let specs = select(text, "f.yaml", "all-1g.5gb").unwrap();
    let gpus: Vec<GpuLayout> = (0..8)
        .map(|i| {
            let mut g = a100(&[]);
            g.index = i;
            g
        })
        .collect();
    let p = plan("all-1g.5gb", &specs, &gpus).unwrap();
    assert_eq!(p.steps.len(), 56);
}
