//! The placement rules per model against the MIG user guide's tables, the placement choice, and
//! a property test of random create/destroy sequences.

use proptest::prelude::*;

use super::*;
use crate::models::{model, MODELS};

fn m(key: &str) -> &'static Model {
    model(key).unwrap()
}

fn p(model: &'static Model, name: &str) -> &'static GiProfile {
    model.gi_profile(name).unwrap()
}

fn at(profile: &'static GiProfile, start: u32) -> Placed {
    Placed {
        profile,
        placement: profile.placement_at(start).unwrap(),
    }
}

/// `nvidia-smi mig -lgipp` on an empty GPU, per model: profile -> placements, as the guide
/// lists them (nvidia-smi's `{starts}:size`).
const GUIDE: &[(&str, &[(&str, &str)])] = &[
    (
        "a100-sxm4-40gb",
        &[
            ("1g.5gb", "{0,1,2,3,4,5,6}:1"),
            ("1g.5gb+me", "{0,1,2,3,4,5,6}:1"),
            ("1g.10gb", "{0,2,4,6}:2"),
            ("2g.10gb", "{0,2,4}:2"),
            ("3g.20gb", "{0,4}:4"),
            ("4g.20gb", "{0}:4"),
            ("7g.40gb", "{0}:8"),
        ],
    ),
    (
        "a100-sxm4-80gb",
        &[
            ("1g.10gb", "{0,1,2,3,4,5,6}:1"),
            ("1g.10gb+me", "{0,1,2,3,4,5,6}:1"),
            ("1g.20gb", "{0,2,4,6}:2"),
            ("2g.20gb", "{0,2,4}:2"),
            ("3g.40gb", "{0,4}:4"),
            ("4g.40gb", "{0}:4"),
            ("7g.80gb", "{0}:8"),
        ],
    ),
    (
        "a30-24gb",
        &[
            ("1g.6gb", "{0,1,2,3}:1"),
            ("1g.6gb+me", "{0,1,2,3}:1"),
            ("2g.12gb", "{0,2}:2"),
            ("2g.12gb+me", "{0,2}:2"),
            ("4g.24gb", "{0}:4"),
        ],
    ),
    (
        "h100-sxm5-80gb",
        &[
            ("1g.10gb", "{0,1,2,3,4,5,6}:1"),
            ("1g.10gb+me", "{0,1,2,3,4,5,6}:1"),
            ("1g.20gb", "{0,2,4,6}:2"),
            ("2g.20gb", "{0,2,4}:2"),
            ("3g.40gb", "{0,4}:4"),
            ("4g.40gb", "{0}:4"),
            ("7g.80gb", "{0}:8"),
        ],
    ),
    (
        "h200-sxm5-141gb",
        &[
            ("1g.18gb", "{0,1,2,3,4,5,6}:1"),
            ("1g.18gb+me", "{0,1,2,3,4,5,6}:1"),
            ("1g.35gb", "{0,2,4,6}:2"),
            ("2g.35gb", "{0,2,4}:2"),
            ("3g.71gb", "{0,4}:4"),
            ("4g.71gb", "{0}:4"),
            ("7g.141gb", "{0}:8"),
        ],
    ),
];

/// The guide's "number of instances available" per profile on an empty GPU.
const INSTANCES: &[(&str, &[(&str, u32)])] = &[
    (
        "a100-sxm4-40gb",
        &[
            ("1g.5gb", 7),
            ("1g.5gb+me", 1),
            ("1g.10gb", 4),
            ("2g.10gb", 3),
            ("3g.20gb", 2),
            ("4g.20gb", 1),
            ("7g.40gb", 1),
        ],
    ),
    (
        "a30-24gb",
        &[
            ("1g.6gb", 4),
            ("1g.6gb+me", 1),
            ("2g.12gb", 2),
            ("2g.12gb+me", 1),
            ("4g.24gb", 1),
        ],
    ),
    (
        "h200-sxm5-141gb",
        &[
            ("1g.18gb", 7),
            ("1g.35gb", 4),
            ("2g.35gb", 3),
            ("3g.71gb", 2),
            ("7g.141gb", 1),
        ],
    ),
];

#[test]
fn every_model_has_exactly_the_guides_placements() {
    assert_eq!(GUIDE.len(), MODELS.len(), "a model without a guide table");
    for (key, table) in GUIDE {
        let model = m(key);
        assert_eq!(table.len(), model.gi_profiles.len(), "{key}");
        for (name, want) in *table {
            assert_eq!(placements_text(p(model, name)), *want, "{key} {name}");
        }
    }
}

#[test]
fn an_empty_gpu_has_the_guides_instance_counts() {
    for (key, table) in INSTANCES {
        let model = m(key);
        for (name, want) in *table {
            let profile = p(model, name);
            assert_eq!(remaining_capacity(profile, &[]), *want, "{key} {name}");
            assert_eq!(profile.instance_count, *want, "{key} {name}");
        }
    }
}

#[test]
fn placements_fit_the_gpu_and_use_at_most_its_compute_slices() {
    for model in MODELS {
        for profile in model.gi_profiles {
            for pl in profile.placements() {
                assert!(pl.end() <= model.memory_slices, "{} {pl}", profile.name);
            }
        }
    }
}

#[test]
fn the_guides_example_layouts_fit_and_others_do_not() {
    let a100 = m("a100-sxm4-40gb");
    let three = p(a100, "3g.20gb");
    let two = p(a100, "2g.10gb");
    let one = p(a100, "1g.5gb");
    let four = p(a100, "4g.20gb");
    // 3g.20gb + 2g.10gb + 1g.5gb + 1g.5gb, and 4g.20gb + 3g.20gb.
    assert!(fit_all(a100, &[], &[three, two, one, one]).is_some());
    assert!(fit_all(a100, &[], &[four, three]).is_some());
    assert!(fit_all(a100, &[], &[three, three]).is_some());
    // Three 3g.20gb, or 4g.20gb + two 2g.10gb + 1g.5gb (9 memory slices), do not.
    assert!(fit_all(a100, &[], &[three, three, one]).is_none());
    assert!(fit_all(a100, &[], &[four, two, two, one]).is_none());
    let a30 = m("a30-24gb");
    let a30_two = p(a30, "2g.12gb");
    let a30_one = p(a30, "1g.6gb");
    assert!(fit_all(a30, &[], &[a30_two, a30_one, a30_one]).is_some());
    assert!(fit_all(a30, &[], &[a30_two, a30_two, a30_one]).is_none());
}

#[test]
fn a_3g_after_four_1g_fits_only_where_a_half_is_free() {
    let a100 = m("a100-sxm4-40gb");
    let one = p(a100, "1g.5gb");
    let three = p(a100, "3g.20gb");
    // Four 1g.5gb where the rule puts them (6, 5, 4, 3): memory slices 0..3 stay free.
    let mut placed = Vec::new();
    for _ in 0..4 {
        let pl = choose(a100, one, &placed).unwrap();
        placed.push(Placed {
            profile: one,
            placement: pl,
        });
    }
    let starts: Vec<u32> = placed.iter().map(|x| x.placement.start).collect();
    assert_eq!(starts, vec![6, 5, 4, 3]);
    assert_eq!(choose(a100, three, &placed), None);
    // Four 1g.5gb at 0, 2, 4 and 6: no half is free.
    let spread: Vec<Placed> = [0, 2, 4, 6].iter().map(|&s| at(one, s)).collect();
    assert_eq!(remaining_capacity(three, &spread), 0);
    // Four at 0..=3: the upper half is free.
    let low: Vec<Placed> = (0..4).map(|s| at(one, s)).collect();
    assert_eq!(
        choose(a100, three, &low),
        Some(Placement { start: 4, size: 4 })
    );
}

#[test]
fn the_choice_keeps_room_for_the_largest_profiles() {
    let a100 = m("a100-sxm4-40gb");
    let one = p(a100, "1g.5gb");
    let three = p(a100, "3g.20gb");
    let two = p(a100, "2g.10gb");
    // A 1g.5gb next to a 3g.20gb at 0 goes into the other half, which is all that is left; a
    // 2g.10gb next to a 1g.5gb at 6 goes to 4, leaving the lower half for a 4g or 3g.
    let pl = choose(a100, two, &[at(one, 6)]).unwrap();
    assert_eq!(pl.start, 4);
    let pl = choose(a100, one, &[at(three, 0)]).unwrap();
    assert!(pl.start >= 4);
    // Seven 1g.5gb fill 0..=6 from the top.
    let mut placed = Vec::new();
    while let Some(pl) = choose(a100, one, &placed) {
        placed.push(Placed {
            profile: one,
            placement: pl,
        });
    }
    assert_eq!(placed.len(), 7);
    assert_eq!(placed[0].placement.start, 6);
    assert_eq!(placed[6].placement.start, 0);
}

#[test]
fn check_names_what_is_wrong() {
    let a100 = m("a100-sxm4-40gb");
    let two = p(a100, "2g.10gb");
    let three = p(a100, "3g.20gb");
    let bad = Placed {
        profile: two,
        placement: Placement { start: 6, size: 2 },
    };
    let e = check(a100, &[bad]).unwrap_err().to_string();
    assert_eq!(
        e,
        "2g.10gb cannot be placed at 6:2 on NVIDIA A100-SXM4-40GB; its placements are {0,2,4}:2"
    );
    let e = check(a100, &[at(three, 4), at(two, 4)])
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "3g.20gb at 4:4 and 2g.10gb at 4:2 overlap in memory slices"
    );
    let me = p(a100, "1g.5gb+me");
    let e = check(a100, &[at(me, 0), at(me, 1)])
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("2 instances of 1g.5gb+me"), "{e}");
}

/// One step of a random sequence: create an instance of the model's `profile`-th profile (at
/// its `placement`-th possible placement, or where [`choose`] puts it), or destroy the
/// `victim`-th existing instance.
#[derive(Debug, Clone)]
enum Step {
    Create {
        profile: usize,
        placement: Option<usize>,
    },
    Destroy {
        victim: usize,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (0usize..8, proptest::option::of(0usize..8))
            .prop_map(|(profile, placement)| Step::Create { profile, placement }),
        1 => (0usize..8).prop_map(|victim| Step::Destroy { victim }),
    ]
}

/// Apply `step` the way the simulator does: a create succeeds only at a free placement, with
/// the remaining capacity falling by exactly one.
fn apply(model: &'static Model, placed: &mut Vec<Placed>, step: &Step) {
    match *step {
        Step::Create { profile, placement } => {
            let profile = &model.gi_profiles[profile % model.gi_profiles.len()];
            let before = remaining_capacity(profile, placed);
            let free = free_placements(profile, placed);
            let target = match placement {
                Some(i) => profile.placements().get(i).copied(),
                None => choose(model, profile, placed),
            };
            match target {
                Some(pl) if free.contains(&pl) => {
                    assert!(before > 0, "a free placement with no capacity");
                    placed.push(Placed {
                        profile,
                        placement: pl,
                    });
                    assert_eq!(remaining_capacity(profile, placed), before - 1);
                }
                _ => assert!(placement.is_some() || before == 0, "choose found nothing"),
            }
        }
        Step::Destroy { victim } => {
            if !placed.is_empty() {
                placed.remove(victim % placed.len());
            }
        }
    }
}

proptest! {
    #[test]
    fn random_sequences_never_exceed_capacity_or_break_placements(
        model_index in 0..MODELS.len(),
        steps in proptest::collection::vec(step(), 1..40),
    ) {
        let model = &MODELS[model_index];
        let mut placed = Vec::new();
        for s in &steps {
            apply(model, &mut placed, s);
            prop_assert!(check(model, &placed).is_ok(), "{:?}", check(model, &placed));
            let memory: u32 = placed.iter().map(|x| x.placement.size).sum();
            let compute: u32 = placed.iter().map(|x| x.profile.slices).sum();
            prop_assert!(memory <= model.memory_slices);
            prop_assert!(compute <= model.compute_slices);
            for profile in model.gi_profiles {
                let n = placed.iter().filter(|x| x.profile.id == profile.id).count() as u32;
                prop_assert!(n + remaining_capacity(profile, &placed) <= profile.instance_count);
            }
        }
    }
}
