//! Allocation's tests, and the inventory and lease helpers the lease store's tests share.

use super::*;
use crate::core::inventory::Majors;

const P1: &str = "1g.5gb";

fn uuid(g: u32, m: u32) -> String {
    format!("MIG-{g:08x}-{m:04x}-0000-0000-000000000000")
}

/// GPU 0: four 1g.5gb and one 2g.10gb; GPU 1: three 1g.5gb; GPU 2: MIG off.
fn inv() -> Inventory {
    let mig = |g: u32, i: u32, profile: &str| MigDevice {
        index: i,
        gpu_index: g,
        uuid: uuid(g, i),
        gpu_instance_id: i + 7,
        compute_instance_id: 0,
        profile: profile.into(),
        memory_mib: 4864,
        gi_caps_minor: 100 * g + 2 * i,
        ci_caps_minor: 100 * g + 2 * i + 1,
    };
    let gpu = |g: u32, migs: Vec<MigDevice>, on: bool| Gpu {
        index: g,
        minor: g,
        uuid: format!("GPU-{g:08x}-0000-0000-0000-000000000000"),
        name: "NVIDIA A100-SXM4-40GB".into(),
        pci_bus_id: format!("00000000:0{g}:00.0"),
        mig_enabled: on,
        memory_mib: 40960,
        mig_devices: migs,
    };
    Inventory {
        driver_version: "550.54.15".into(),
        cuda_driver_version: 12040,
        majors: Majors {
            frontend: 195,
            uvm: Some(510),
            caps: Some(509),
        },
        gpus: vec![
            gpu(
                0,
                vec![
                    mig(0, 0, P1),
                    mig(0, 1, P1),
                    mig(0, 2, "2g.10gb"),
                    mig(0, 3, P1),
                    mig(0, 4, P1),
                ],
                true,
            ),
            gpu(1, (0..3).map(|i| mig(1, i, P1)).collect(), true),
            gpu(2, vec![], false),
        ],
        mig_config_minor: Some(1),
        mig_monitor_minor: Some(2),
    }
}

/// A profile lease on instance `g:m` of [`inv`], held by `container`.
pub(crate) fn lease(g: u32, m: u32, container: &str) -> Lease {
    Lease {
        uuid: uuid(g, m),
        container: container.into(),
        pid: 100,
        start_time: 5000,
        since: 1_764_058_555,
        kind: LeaseKind::Profile,
        asked: "profile:1g.5gb".into(),
    }
}

fn sels(text: &str) -> Vec<DeviceSelector> {
    text.split(',').map(|s| s.parse().unwrap()).collect()
}

fn run(
    me: Option<&str>,
    text: &str,
    leases: &[Lease],
    policy: ExplicitPolicy,
) -> Result<Choice, AllocationError> {
    let s = sels(text);
    let w = Wanted {
        container: me,
        origin: "NVIDIA_VISIBLE_DEVICES",
        selectors: &s,
        explicit: policy,
    };
    choose(&w, &inv(), leases)
}

fn ok(me: &str, text: &str, leases: &[Lease]) -> Vec<String> {
    run(Some(me), text, leases, ExplicitPolicy::Exclusive)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .selectors
        .iter()
        .map(ToString::to_string)
        .collect()
}

fn err(me: &str, text: &str, leases: &[Lease], policy: ExplicitPolicy) -> String {
    let e = run(Some(me), text, leases, policy)
        .expect_err(text)
        .to_string();
    assert!(!e.contains('\n'), "{e}");
    e
}

#[test]
fn first_fit_in_nvml_order() {
    assert_eq!(ok("c", "profile:1g.5gb", &[]), [uuid(0, 0)]);
    // Held ones are skipped, in NVML order, and other profiles never match.
    let held = [lease(0, 0, "a"), lease(0, 1, "b")];
    assert_eq!(ok("c", "profile:1g.5gb", &held), [uuid(0, 3)]);
    assert_eq!(ok("c", "profile:2g.10gb", &held), [uuid(0, 2)]);
    // GPU 0 full: GPU 1's first.
    let full: Vec<Lease> = [0, 1, 3, 4].iter().map(|&m| lease(0, m, "x")).collect();
    assert_eq!(ok("c", "profile:1g.5gb", &full), [uuid(1, 0)]);
}

#[test]
fn a_count_takes_several_in_place() {
    assert_eq!(
        ok("c", "0:2,profile:1g.5gb*3,1:2", &[]),
        [
            "0:2".to_string(),
            uuid(0, 0),
            uuid(0, 1),
            uuid(0, 3),
            "1:2".to_string()
        ]
    );
    // Across GPUs when one GPU has too few.
    let held = [lease(0, 0, "a"), lease(0, 1, "a"), lease(0, 3, "a")];
    assert_eq!(
        ok("c", "profile:1g.5gb*3", &held),
        [uuid(0, 4), uuid(1, 0), uuid(1, 1)]
    );
}

#[test]
fn a_named_gpu_limits_the_choice_and_is_served_first() {
    assert_eq!(ok("c", "profile:1/1g.5gb", &[]), [uuid(1, 0)]);
    // GPU 1 has one free left: the any-GPU item must not take it first.
    let held = [lease(1, 0, "a"), lease(1, 1, "a")];
    assert_eq!(
        ok("c", "profile:1g.5gb,profile:1/1g.5gb", &held),
        [uuid(0, 0), uuid(1, 2)]
    );
    let e = err("c", "profile:2/1g.5gb", &[], ExplicitPolicy::Exclusive);
    assert!(e.contains("GPU 2 is not in MIG mode"), "{e}");
    let e = err("c", "profile:7/1g.5gb", &[], ExplicitPolicy::Exclusive);
    assert!(
        e.contains("there is no GPU 7, this host has GPUs 0 to 2"),
        "{e}"
    );
}

#[test]
fn the_same_container_gets_the_same_instances_again() {
    // A later hook stage (or a runtime wrapper's lease handed to the hook): 0:4 and 1:1 are
    // this container's already, though 0:0 is free.
    let mine = [lease(0, 4, "c"), lease(1, 1, "c")];
    assert_eq!(ok("c", "profile:1g.5gb*2", &mine), [uuid(0, 4), uuid(1, 1)]);
    // Another container gets the first free one.
    assert_eq!(ok("d", "profile:1g.5gb", &mine), [uuid(0, 0)]);
}

#[test]
fn nothing_free_lists_every_instance_and_its_holder() {
    let all: Vec<Lease> = [(0, 0), (0, 1), (0, 3), (0, 4), (1, 0), (1, 1), (1, 2)]
        .iter()
        .enumerate()
        .map(|(i, &(g, m))| lease(g, m, &format!("ctr{i}")))
        .collect();
    let e = err("c", "profile:1g.5gb", &all, ExplicitPolicy::Exclusive);
    assert!(
        e.starts_with("NVIDIA_VISIBLE_DEVICES asks for profile:1g.5gb: all 7 MIG devices of profile 1g.5gb are in use: 0:0 MIG-00000000-0000-0000-0000-000000000000 by container ctr0 since 2025-11-25T08:15:55Z, 0:1 "),
        "{e}"
    );
    for i in 0..7 {
        assert!(e.contains(&format!("container ctr{i} since")), "{e}");
    }
    assert!(e.contains("wait for a container to stop"), "{e}");
    // Too few for a count: says how many are free, and which.
    let e = err(
        "c",
        "profile:1/1g.5gb*3",
        &all[4..5],
        ExplicitPolicy::Exclusive,
    );
    assert!(
        e.contains("3 MIG devices of profile 1g.5gb on GPU 1 are needed but only 2 of 3 are free (1:1, 1:2)"),
        "{e}"
    );
    assert!(
        e.contains("1:0 MIG-00000001-0000-0000-0000-000000000000 by container ctr4"),
        "{e}"
    );
    // More than exist at all: no empty "in use" list.
    let e = err("c", "profile:1/1g.5gb*4", &[], ExplicitPolicy::Exclusive);
    assert!(
        e.contains("4 MIG devices of profile 1g.5gb on GPU 1 are needed but only 3 exist (1:0, 1:1, 1:2), none in use"),
        "{e}"
    );
    assert!(!e.contains("in use: ;"), "{e}");
}

#[test]
fn unknown_profile_names_the_profiles_there_are() {
    let e = err("c", "profile:3g.20gb", &[], ExplicitPolicy::Exclusive);
    assert!(
        e.contains("asks for profile:3g.20gb: this host has no MIG device of profile 3g.20gb (profiles here: 1g.5gb, 2g.10gb)"),
        "{e}"
    );
    let e = err("c", "profile:1/2g.10gb", &[], ExplicitPolicy::Exclusive);
    assert!(
        e.contains("GPU 1 has no MIG device of profile 2g.10gb (profiles here: 1g.5gb)"),
        "{e}"
    );
}

#[test]
fn explicit_requests_against_leases() {
    let held = [lease(0, 1, "a")];
    // Exclusive: refused, naming the holder.
    for text in ["0:1", &uuid(0, 1), &uuid(0, 1).to_uppercase()] {
        let e = err("c", text, &held, ExplicitPolicy::Exclusive);
        assert!(
            e.contains(&format!(
                "MIG device 0:1 ({}) is held by container a since 2025-11-25T08:15:55Z",
                uuid(0, 1)
            )),
            "{e}"
        );
        assert!(
            e.contains("profile:1g.5gb") && e.contains("explicit = \"shared\""),
            "{e}"
        );
    }
    // Shared: allowed, and leased.
    let c = run(Some("c"), "0:1", &held, ExplicitPolicy::Shared).unwrap();
    assert_eq!(
        c.taken,
        [Taken {
            uuid: uuid(0, 1),
            kind: LeaseKind::Explicit,
            asked: "0:1".into()
        }]
    );
    assert_eq!(c.selectors, sels("0:1"));
    // Held by the container itself: fine in either mode.
    assert_eq!(ok("a", "0:1", &held), ["0:1"]);
    // Free: leased as explicit.
    let c = run(Some("c"), "0:3", &held, ExplicitPolicy::Exclusive).unwrap();
    assert_eq!(c.taken[0].kind, LeaseKind::Explicit);
}

#[test]
fn profiles_avoid_named_instances() {
    // Someone named 0:0 (explicitly, shared or not): a profile request never gets it.
    let mut named = lease(0, 0, "a");
    named.kind = LeaseKind::Explicit;
    assert_eq!(ok("c", "profile:1g.5gb", &[named]), [uuid(0, 1)]);
    // Nor one this container names itself in the same request.
    assert_eq!(
        ok("c", "0:0,profile:1g.5gb", &[]),
        ["0:0".to_string(), uuid(0, 1)]
    );
}

#[test]
fn whole_gpus_all_and_unknown_names_take_no_lease() {
    for text in [
        "all",
        "2",
        "GPU-00000000-0000-0000-0000-000000000000",
        "0:9",
        "MIG-99999999-9999-9999-9999-999999999999",
    ] {
        let c = run(
            Some("c"),
            text,
            &[lease(0, 0, "a")],
            ExplicitPolicy::Exclusive,
        )
        .unwrap();
        assert!(c.taken.is_empty(), "{text}");
        assert_eq!(c.selectors, sels(text), "{text}");
    }
    assert!(!needs_leases(&sels("all,2")));
    assert!(needs_leases(&sels("0:1")) && needs_leases(&sels("profile:1g.5gb")));
    assert!(!has_profile(&sels("0:1")) && has_profile(&sels("2,profile:1g.5gb")));
}

#[test]
fn a_dry_run_holds_nothing() {
    // explain: nothing is "mine", so an instance held by anyone is taken.
    let held = [lease(0, 0, "c")];
    let c = run(None, "profile:1g.5gb", &held, ExplicitPolicy::Exclusive).unwrap();
    assert_eq!(c.selectors, [DeviceSelector::MigUuid(uuid(0, 1))]);
    assert!(run(None, "0:0", &held, ExplicitPolicy::Exclusive).is_err());
}

#[test]
fn errors_take_nothing() {
    // The first item fits, the second does not: no partial choice comes back.
    let all_gpu1: Vec<Lease> = (0..3).map(|m| lease(1, m, "x")).collect();
    assert!(run(
        Some("c"),
        "profile:1g.5gb,profile:1/1g.5gb",
        &all_gpu1,
        ExplicitPolicy::Exclusive
    )
    .is_err());
}

#[test]
fn merge_replaces_only_the_holders_leases() {
    let live = [lease(0, 0, "a"), lease(0, 1, "c"), lease(0, 3, "c")];
    let taken = [
        Taken {
            uuid: uuid(0, 1),
            kind: LeaseKind::Profile,
            asked: "profile:1g.5gb".into(),
        },
        Taken {
            uuid: uuid(0, 4),
            kind: LeaseKind::Explicit,
            asked: "0:4".into(),
        },
    ];
    let out = merge(&live, "c", 4242, 777, 2_000_000_000, &taken);
    assert_eq!(out.len(), 3);
    assert_eq!(out[0], live[0]);
    // Kept: its time stays, its holder process is the new one.
    assert_eq!(
        (
            out[1].uuid.as_str(),
            out[1].since,
            out[1].pid,
            out[1].start_time
        ),
        (uuid(0, 1).as_str(), 1_764_058_555, 4242, 777)
    );
    // New: taken now.
    assert_eq!(
        (out[2].since, out[2].kind),
        (2_000_000_000, LeaseKind::Explicit)
    );
    // 0:3 is no longer the container's.
    assert!(!out.iter().any(|l| l.uuid == uuid(0, 3)));
}

#[test]
fn times_are_utc_rfc3339() {
    assert_eq!(format_time(0), "1970-01-01T00:00:00Z");
    assert_eq!(format_time(951_782_400), "2000-02-29T00:00:00Z");
    assert_eq!(format_time(1_764_058_555), "2025-11-25T08:15:55Z");
    assert_eq!(format_time(4_107_542_399), "2100-02-28T23:59:59Z");
}
