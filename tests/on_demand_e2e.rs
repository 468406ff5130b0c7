//! End to end: instances made when a container asks for a size (`[allocation]
//! create_on_demand`, `destroy_on_release`). Real runc runs busybox containers with `migcage
//! hook` at prestart and poststop ([`common::lab`]) on simulated GPUs that start with MIG
//! enabled and no instance; the simulated NVML is partitioned for real (its state file), and
//! what a container got is read from inside it.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use common::lab::{migcage_line, Lab, Opts, WITH_POSTSTOP};
use serde_json::Value;

const ON_DEMAND: &[&str] = &["allocation.create_on_demand=true"];
const AND_DESTROY: &[&str] = common::lab::CREATE_AND_DESTROY;

fn profile(p: &str) -> String {
    format!("NVIDIA_VISIBLE_DEVICES=profile:{p}")
}

/// Skips (visibly) where runc cannot run here.
fn unavailable(test: &str) -> bool {
    match common::Mode::RuncV1.unavailable() {
        Some(why) => {
            common::skip(&format!("{test}: {why}"));
            true
        }
        None => false,
    }
}

fn ids(n: usize) -> Vec<String> {
    (0..n).map(|_| common::unique("demand")).collect()
}

/// Every MIG device now: UUID -> (index, profile, created.by, live holders).
fn devices(lab: &Lab) -> BTreeMap<String, (String, String, Option<String>, Vec<String>)> {
    let l = lab.host.list();
    let mut out = BTreeMap::new();
    for g in l["gpus"].as_array().unwrap() {
        for m in g["mig_devices"].as_array().unwrap() {
            let holders = m["leases"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|x| x["stale"] == false)
                .map(|x| x["container"].as_str().unwrap().to_string())
                .collect();
            out.insert(
                m["uuid"].as_str().unwrap().to_string(),
                (
                    m["index"].as_str().unwrap().to_string(),
                    m["profile"].as_str().unwrap().to_string(),
                    m["created"]["by"].as_str().map(str::to_string),
                    holders,
                ),
            );
        }
    }
    out
}

/// The records of instances made on demand in the lease file.
fn records(lab: &Lab) -> Vec<Value> {
    let p = lab.host.dir.path().join("run/migcage/leases/leases.json");
    match std::fs::read(&p) {
        Ok(b) => serde_json::from_slice::<Value>(&b).unwrap()["created"]
            .as_array()
            .cloned()
            .unwrap_or_default(),
        Err(_) => Vec::new(),
    }
}

/// What the C test client (crates/nvml-sim/tests/nvml_client.c, raw `dlopen` and nvml.h calls)
/// enumerates through the lab's simulated `libnvidia-ml.so.1`: MIG device UUID -> name.
fn raw_nvml_mig_devices(lab: &Lab) -> BTreeMap<String, String> {
    let root = env!("CARGO_MANIFEST_DIR");
    let exe = lab.bundles.path().join("nvml_client");
    let cc = Command::new("cc")
        .args(["-std=c99", "-Wall", "-Werror", "-o"])
        .arg(&exe)
        .arg(format!("{root}/crates/nvml-sim/tests/nvml_client.c"))
        .arg("-ldl")
        .output()
        .expect("run cc");
    assert!(
        cc.status.success(),
        "cc: {}",
        String::from_utf8_lossy(&cc.stderr)
    );
    let lib = lab
        .host
        .dir
        .path()
        .join("usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1");
    let out = Command::new(&exe)
        .arg(&lib)
        .arg("enumerate")
        .env_remove("MIGCAGE_SIM_TOPOLOGY")
        .output()
        .unwrap();
    assert!(out.status.success(), "nvml_client: {out:?}");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("mig "))
        .map(|l| {
            let field = |key: &str| l.split(key).nth(1).unwrap().to_string();
            let uuid = field(" uuid=").split(' ').next().unwrap().to_string();
            let name = field(" name=").split(" gi=").next().unwrap().to_string();
            (uuid, name)
        })
        .collect()
}

/// `migcage mig capacity`'s line for `profile` on GPU 0 (NVML's own remaining capacity).
fn nvml_remaining(lab: &Lab, profile: &str) -> u32 {
    let out = lab.migcage(&["mig", "capacity"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("GPU 0 {profile}:")))
        .unwrap_or_else(|| panic!("no {profile} line in {text}"));
    line.rsplit("remaining ")
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn seven_at_once_on_an_empty_a100_get_seven_new_instances_and_the_eighth_is_refused() {
    if unavailable(
        "seven_at_once_on_an_empty_a100_get_seven_new_instances_and_the_eighth_is_refused",
    ) {
        return;
    }
    let lab = Lab::on("a100-empty", ON_DEMAND);
    assert!(devices(&lab).is_empty(), "a100-empty has instances");
    let seven = ids(7);
    // From inside: seven different instances, each exactly one, its own caps nodes open (ENXIO:
    // no driver behind a simulated node) and every other one refused (EPERM).
    let got = lab.start_isolated(&seven, &profile("1g.5gb"));
    // `list`: seven 1g.5gb, each made for the container that holds it.
    let now = devices(&lab);
    assert_eq!(now.len(), 7, "{now:?}");
    for (uuid, (index, prof, by, holders)) in &now {
        assert_eq!(prof, "1g.5gb", "{index}");
        assert_eq!(by.as_ref(), Some(&got[uuid]), "{index}: made for");
        assert_eq!(holders, &[got[uuid].clone()], "{index}: held by");
    }
    let table = String::from_utf8(lab.migcage(&["list"]).stdout).unwrap();
    for id in &seven {
        let made = format!("created on demand for container {id} at ");
        assert_eq!(table.matches(&made).count(), 1, "{table}");
    }
    assert_eq!(records(&lab).len(), 7);
    assert_eq!(nvml_remaining(&lab, "1g.5gb"), 0);

    // The eighth: one line saying what exists and that nothing more fits.
    let eighth = common::unique("demand");
    let e = lab
        .start(&eighth, &profile("1g.5gb"), WITH_POSTSTOP)
        .unwrap_err();
    let line = migcage_line(&e);
    assert!(
        line.contains("NVIDIA_VISIBLE_DEVICES asks for profile:1g.5gb: all 7 MIG devices of profile 1g.5gb are in use: 0:0 MIG-"),
        "{line}"
    );
    assert!(
        line.contains("; no GPU has room to create another (GPU 0 (NVIDIA A100-SXM4-40GB): has 1g.5gb x7, fits nothing more)"),
        "{line}"
    );
    for (uuid, id) in &got {
        assert!(
            line.contains(&format!("{uuid} by container {id} since ")),
            "{line}"
        );
    }
    let _ = Command::new("runc")
        .args(["delete", "-f", &eighth])
        .output();
    // A program that knows only nvml.h's ABI sees the seven new instances, as a CUDA job or
    // nvidia-smi on the host would.
    let raw = raw_nvml_mig_devices(&lab);
    let want: BTreeMap<String, String> = got
        .keys()
        .map(|u| (u.clone(), "NVIDIA A100-SXM4-40GB MIG 1g.5gb".to_string()))
        .collect();
    assert_eq!(raw, want, "raw NVML's MIG devices");
    assert_eq!(lab.lease_file().len(), 7, "the refused one took a lease");
    assert_eq!(records(&lab).len(), 7, "the refused one left a record");

    // Without destroy_on_release the instances stay, free, for the next request.
    for id in &seven {
        lab.stop(id);
    }
    assert!(lab.lease_file().is_empty());
    let after = devices(&lab);
    assert_eq!(after.len(), 7);
    assert!(after.values().all(|d| d.3.is_empty()), "{after:?}");
    let next = common::unique("demand");
    lab.start(&next, &profile("1g.5gb"), WITH_POSTSTOP).unwrap();
    let (_, uuid) = lab.instance_of(&next, &lab.report(&next));
    assert!(
        got.contains_key(&uuid),
        "a free instance is given, not a new one made"
    );
    assert_eq!(devices(&lab).len(), 7);
    lab.stop(&next);
}

#[test]
fn a_3g_after_four_1g_only_where_a_placement_really_exists() {
    if unavailable("a_3g_after_four_1g_only_where_a_placement_really_exists") {
        return;
    }
    let lab = Lab::on("a100-empty", AND_DESTROY);
    let four = ids(4);
    for id in &four {
        lab.start(id, &profile("1g.5gb"), WITH_POSTSTOP).unwrap();
    }
    // Placed from the top (slices 6, 5, 4, 3): both 3g.20gb placements (0:4, 4:4) are cut.
    assert_eq!(nvml_remaining(&lab, "3g.20gb"), 0);
    let big = common::unique("demand");
    let e = lab
        .start(&big, &profile("3g.20gb"), WITH_POSTSTOP)
        .unwrap_err();
    let line = migcage_line(&e);
    assert!(
        line.contains("asks for profile:3g.20gb: GPU")
            || line.contains(
                "asks for profile:3g.20gb: this host has no MIG device of profile 3g.20gb"
            ),
        "{line}"
    );
    assert!(
        line.contains("no GPU has room to create another (GPU 0 (NVIDIA A100-SXM4-40GB): has 1g.5gb x4, fits 1g.5gb x3, 1g.5gb+me x1, 1g.10gb x1, 2g.10gb x1)"),
        "{line}"
    );
    let _ = Command::new("runc").args(["delete", "-f", &big]).output();
    assert_eq!(devices(&lab).len(), 4, "the refusal changed the layout");
    // The fourth leaves (its instance, at slice 3, is destroyed): now the lower half is free.
    lab.stop(&four[3]);
    assert_eq!(devices(&lab).len(), 3);
    assert_eq!(nvml_remaining(&lab, "3g.20gb"), 1);
    let big = common::unique("demand");
    lab.start(&big, &profile("3g.20gb"), WITH_POSTSTOP).unwrap();
    let (_, uuid) = lab.instance_of(&big, &lab.report(&big));
    assert_eq!(devices(&lab)[&uuid].1, "3g.20gb");
    for id in four.iter().take(3).chain([&big]) {
        lab.stop(id);
    }
    assert!(
        devices(&lab).is_empty(),
        "destroy_on_release left {:?}",
        devices(&lab)
    );
}

#[test]
fn destroy_on_release_leaves_the_gpu_empty_after_poststop_release_and_a_lost_container() {
    if unavailable(
        "destroy_on_release_leaves_the_gpu_empty_after_poststop_release_and_a_lost_container",
    ) {
        return;
    }
    let lab = Lab::on("a100-empty", AND_DESTROY);
    let [lost, stopped, released] = [0, 1, 2].map(|_| common::unique("demand"));
    let no_poststop = Opts {
        poststop: false,
        ..Opts::plain()
    };
    lab.start(&lost, &profile("1g.5gb"), no_poststop).unwrap();
    lab.start(&stopped, &profile("2g.10gb"), WITH_POSTSTOP)
        .unwrap();
    lab.start(&released, &profile("3g.20gb"), no_poststop)
        .unwrap();
    let made: BTreeSet<String> = devices(&lab).values().map(|d| d.1.clone()).collect();
    assert_eq!(
        made,
        ["1g.5gb", "2g.10gb", "3g.20gb"].map(String::from).into()
    );
    // Lost: gone without its poststop hook; its lease goes stale and stays until a release or
    // an allocation settles it.
    lab.stop(&lost);
    assert_eq!(devices(&lab).len(), 3);
    // Stopped with poststop: its instance is destroyed, and so is the lost one's.
    lab.stop(&stopped);
    let left: Vec<String> = devices(&lab).values().map(|d| d.1.clone()).collect();
    assert_eq!(left, ["3g.20gb"]);
    // `migcage release` of a container whose poststop never ran.
    lab.stop(&released);
    let out = lab.migcage(&["release", &released]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(devices(&lab).is_empty(), "left: {:?}", devices(&lab));
    assert!(lab.lease_file().is_empty());
    assert!(records(&lab).is_empty(), "{:?}", records(&lab));
    assert_eq!(nvml_remaining(&lab, "7g.40gb"), 1, "the GPU is whole again");
}

/// SIGKILL of the hook at each step of an on-demand creation: the next start settles what it
/// left (an instance never made is forgotten, a half-made one finished or destroyed, an unleased
/// one destroyed or given out), and no instance is ever leased twice.
#[test]
fn a_creation_killed_at_each_step_is_settled_by_the_next_start() {
    if unavailable("a_creation_killed_at_each_step_is_settled_by_the_next_start") {
        return;
    }
    if common::skip_unless(
        migcage::faultpoint::ENABLED,
        &common::test_name(),
        common::FAULT_POINTS_OUT,
    ) {
        return;
    }
    for step in migcage::faultpoint::DEMAND_STEPS {
        for config in [ON_DEMAND, AND_DESTROY] {
            let ctx = format!("{step}, {}", config.join(" "));
            let lab = Lab::on("a100-empty", config);
            let killed = common::unique("demand");
            let opts = Opts {
                kill_at: Some(step),
                ..Opts::plain()
            };
            assert!(
                lab.start(&killed, &profile("2g.10gb"), opts).is_err(),
                "{ctx}: not killed"
            );
            let _ = Command::new("runc")
                .args(["delete", "-f", &killed])
                .output();
            assert_eq!(records(&lab).len(), 1, "{ctx}: no record before the work");
            let next = common::unique("demand");
            lab.start(&next, &profile("2g.10gb"), WITH_POSTSTOP)
                .unwrap_or_else(|e| panic!("{ctx}: the next start failed: {e}"));
            let (_, uuid) = lab.instance_of(&next, &lab.report(&next));
            // One instance on the GPU, held by the next container alone, recorded once.
            let now = devices(&lab);
            assert_eq!(now.len(), 1, "{ctx}: {now:?}");
            assert_eq!(now[&uuid].3, std::slice::from_ref(&next), "{ctx}");
            let leases: Vec<String> = lab
                .lease_file()
                .iter()
                .map(|l| l["uuid"].as_str().unwrap().to_string())
                .collect();
            assert_eq!(leases, std::slice::from_ref(&uuid), "{ctx}");
            let recs = records(&lab);
            assert_eq!(recs.len(), 1, "{ctx}: {recs:?}");
            assert_eq!(recs[0]["uuid"], uuid.as_str(), "{ctx}");
            lab.stop(&next);
            let expect = if config == AND_DESTROY { 0 } else { 1 };
            assert_eq!(devices(&lab).len(), expect, "{ctx}: after the stop");
        }
    }
}

#[test]
fn with_create_on_demand_off_the_refusal_names_the_key() {
    if unavailable("with_create_on_demand_off_the_refusal_names_the_key") {
        return;
    }
    let lab = Lab::on("a100-empty", &[]);
    let id = common::unique("demand");
    let e = lab
        .start(&id, &profile("3g.20gb"), WITH_POSTSTOP)
        .unwrap_err();
    let line = migcage_line(&e);
    assert!(
        line.contains("or set [allocation] create_on_demand = true in the migcage config to have migcage create one in free capacity"),
        "{line}"
    );
    let _ = Command::new("runc").args(["delete", "-f", &id]).output();
    // A profile the model does not have: no hint that would not help.
    let id = common::unique("demand");
    let e = lab
        .start(&id, &profile("3g.40gb"), WITH_POSTSTOP)
        .unwrap_err();
    let line = migcage_line(&e);
    assert!(!line.contains("create_on_demand"), "{line}");
    let _ = Command::new("runc").args(["delete", "-f", &id]).output();
    assert!(devices(&lab).is_empty());
    assert!(lab.lease_file().is_empty());
}

/// `explain` of a profile that no free instance has: where the instance would be made, the
/// same place a container start then makes it, and nothing changed by the explain itself. With
/// `create_on_demand` off, the refusal a start would get, with the key.
#[test]
fn explain_says_where_the_instance_would_be_made_and_makes_nothing() {
    if unavailable("explain_says_where_the_instance_would_be_made_and_makes_nothing") {
        return;
    }
    let lab = Lab::on("a100-empty", ON_DEMAND);
    let spec = lab.bundles.path().join("explain.json");
    let env = profile("3g.20gb");
    std::fs::write(
        &spec,
        serde_json::json!({"process": {"env": [env]}, "root": {"path": "rootfs"}}).to_string(),
    )
    .unwrap();
    let spec = spec.to_str().unwrap();
    let out = lab.migcage(&["explain", "--spec", spec, "--json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "explain: {stderr}");
    let e: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(e["plan"].is_null(), "{e}");
    let w = &e["would_create"];
    assert_eq!(
        (w["gpu"].as_u64(), w["profile"].as_str()),
        (Some(0), Some("3g.20gb")),
        "{e}"
    );
    let text = lab.migcage(&["explain", "--spec", spec]);
    let text = String::from_utf8(text.stdout).unwrap();
    let want = format!(
        "No free 3g.20gb instance: a container starting now would have migcage create one on GPU 0 ({}) at placement start {}",
        w["gpu_uuid"].as_str().unwrap(),
        w["start"]
    );
    assert!(text.contains(&want), "{text}");
    assert!(devices(&lab).is_empty(), "explain made an instance");
    assert!(records(&lab).is_empty(), "explain wrote a record");
    // A start makes it where explain said.
    let id = common::unique("demand");
    lab.start(&id, &env, WITH_POSTSTOP).unwrap();
    let recs = records(&lab);
    assert_eq!(recs.len(), 1, "{recs:?}");
    assert_eq!(
        (&recs[0]["gpu_uuid"], &recs[0]["start"]),
        (&w["gpu_uuid"], &w["start"])
    );
    lab.stop(&id);

    let off = Lab::on("a100-empty", &[]);
    let out = off.migcage(&["explain", "--spec", spec]);
    assert!(!out.status.success());
    let line = migcage_line(&String::from_utf8_lossy(&out.stderr));
    assert!(
        line.contains("or set [allocation] create_on_demand = true"),
        "{line}"
    );
}

/// Everything else follows a layout change: an instance made on demand, and one `mig apply`
/// destroys, each rewrite `state_dir/mig-layout-changed` (what `migcage-cdi.path` watches; the
/// VM scenario `cdi-path-unit` checks that touching it regenerates the spec), and a CDI spec
/// written before the change is flagged stale by `cdi list --check` until it is generated again.
#[test]
fn a_layout_change_is_stamped_and_flags_the_cdi_spec_stale() {
    if unavailable("a_layout_change_is_stamped_and_flags_the_cdi_spec_stale") {
        return;
    }
    let lab = Lab::on("a100-empty", ON_DEMAND);
    let stamp = lab.host.dir.path().join("run/migcage/mig-layout-changed");
    let cdi = lab.bundles.path().join("cdi");
    std::fs::create_dir_all(&cdi).unwrap();
    let cdi = cdi.to_str().unwrap();
    let check = |ctx: &str, fresh: bool| {
        let out = lab.migcage(&["cdi", "list", "--check", "--spec", cdi]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.success(),
            fresh,
            "{ctx}: cdi list --check: {err}"
        );
        if !fresh {
            assert!(err.contains("migcage: warning: "), "{ctx}: {err}");
        }
    };
    lab.host.cdi_generate(&["--output", cdi]);
    check("before any change", true);
    assert!(!stamp.exists(), "stamped before any change");

    let id = common::unique("demand");
    lab.start(&id, &profile("1g.5gb"), WITH_POSTSTOP).unwrap();
    assert!(stamp.exists(), "an instance made on demand left no stamp");
    check("after an instance was made", false);
    lab.host.cdi_generate(&["--output", cdi]);
    check("generated again", true);
    lab.stop(&id);

    std::fs::remove_file(&stamp).unwrap();
    let file = lab.bundles.path().join("mig-parted.yaml");
    std::fs::write(
        &file,
        "version: v1\nmig-configs:\n  empty:\n    - devices: all\n      mig-enabled: true\n",
    )
    .unwrap();
    let out = lab.migcage(&["mig", "apply", "-f", file.to_str().unwrap(), "-c", "empty"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(devices(&lab).is_empty(), "apply left an instance");
    assert!(stamp.exists(), "mig apply left no stamp");
    check("after mig apply destroyed it", false);
}
