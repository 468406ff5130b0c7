//! Unit tests of the topology format: built-ins, UUIDs, round trips, caps minors and errors.

use std::collections::BTreeSet;

use super::*;
use crate::naming::is_uuid;

/// Found by the `topology` fuzz target: toml quotes the offending line, and a lone carriage
/// return in it made the message two lines.
#[test]
fn a_carriage_return_in_the_file_stays_on_one_line() {
    let e = Topology::parse("\r\0", false, "t.toml")
        .unwrap_err()
        .to_string();
    assert!(!e.contains(['\n', '\r']), "{e:?}");
    assert!(e.starts_with("topology file t.toml: "), "{e:?}");
    // Found by the same target: serde_json quotes an unknown JSON key with its newline.
    let e = Topology::parse("{\"na\\nme\": 1}", true, "t.json")
        .unwrap_err()
        .to_string();
    assert!(!e.contains(['\n', '\r']), "{e:?}");
    assert!(e.contains("na\\nme"), "{e:?}");
}

#[test]
fn every_builtin_resolves() {
    for name in builtin_names() {
        let t = Topology::load(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(t.name, name);
    }
}

#[test]
fn builtin_shapes() {
    let t = Topology::load("a100-7x1g").unwrap();
    assert_eq!(t.mig_devices().len(), 7);
    let ids: Vec<u32> = t.gpus[0].gpu_instances.iter().map(|g| g.id).collect();
    assert_eq!(ids, vec![7, 8, 9, 10, 11, 12, 13]);
    let dgx = Topology::load("dgx-8x7").unwrap();
    assert_eq!(dgx.gpus.len(), 8);
    assert_eq!(dgx.mig_devices().len(), 56);
    let uuids: BTreeSet<_> = dgx
        .mig_devices()
        .iter()
        .map(|m| m.ci.uuid.clone())
        .collect();
    assert_eq!(uuids.len(), 56);
    assert!(Topology::load("a100-nomig")
        .unwrap()
        .mig_devices()
        .is_empty());
    let two = Topology::load("two-gpus-one-mig").unwrap();
    assert!(two.gpus[0].mig && !two.gpus[1].mig);
}

#[test]
fn uuids_are_stable_and_well_formed() {
    let a = Topology::load("a100-mixed").unwrap();
    let b = Topology::load("a100-mixed").unwrap();
    assert_eq!(a, b);
    for m in a.mig_devices() {
        assert!(is_uuid("MIG", &m.ci.uuid), "{}", m.ci.uuid);
    }
    assert!(is_uuid("GPU", &a.gpus[0].uuid));
    assert_ne!(stable_uuid("MIG", "x"), stable_uuid("MIG", "y"));
}

#[test]
fn round_trip_through_toml() {
    for name in builtin_names() {
        let t = Topology::load(name).unwrap();
        let again = Topology::parse(&t.to_toml(), false, "round trip").unwrap();
        assert_eq!(t, again, "{name}");
    }
}

#[test]
fn caps_minors_follow_the_driver() {
    assert_eq!(gi_access_minor(0, 0), 3);
    assert_eq!(ci_access_minor(0, 0, 0), 4);
    assert_eq!(gi_access_minor(0, 1), 12);
    assert_eq!(ci_access_minor(0, 1, 0), 13);
    assert_eq!(gi_access_minor(1, 0), 138);
    let text = mig_minors_file();
    assert!(text.starts_with("config 1\nmonitor 2\ngpu0/gi0/access 3\ngpu0/gi0/ci0/access 4\n"));
    assert_eq!(text.lines().count(), 2 + 32 * 15 * 9);
}

#[test]
fn proc_bus_id_form() {
    assert_eq!(proc_bus_id("00000000:07:00.0"), "0000:07:00.0");
    assert_eq!(proc_bus_id("00000000:B7:00.0"), "0000:b7:00.0");
}

fn err(text: &str) -> String {
    Topology::parse(text, false, "t.toml")
        .unwrap_err()
        .to_string()
}

#[test]
fn errors_name_what_and_where() {
    assert!(err("name = \"x\"\ngpus = []\n").contains("has no GPUs"));
    assert!(
        err("name = \"x\"\n[[gpus]]\nmodel = \"rtx\"\n").contains("gpus[0]: unknown model \"rtx\"")
    );
    let e = err("name = \"x\"\n[[gpus]]\nmodel = \"a100-sxm4-40gb\"\nmig = true\ngpu_instances = [{profile = \"9g.99gb\"}]\n");
    assert!(
        e.contains("gpus[0].gpu_instances[0]: profile \"9g.99gb\" does not exist"),
        "{e}"
    );
    let e = err("name = \"x\"\n[[gpus]]\nmodel = \"a100-sxm4-40gb\"\nmig = true\ngpu_instances = [{profile = \"4g.20gb\"}, {profile = \"4g.20gb\"}]\n");
    assert!(e.contains("4g.20gb does not fit"), "{e}");
    let e = err("name = \"x\"\n[[gpus]]\nmodel = \"a100-sxm4-40gb\"\nbogus = 1\n");
    assert!(e.contains("t.toml") && e.contains("bogus"), "{e}");
    let e = err("name = \"x\"\n[[gpus]]\nmodel = \"a100-sxm4-40gb\"\ngpu_instances = [{profile = \"1g.5gb\"}]\n");
    assert!(e.contains("mig = false"), "{e}");
    let e = err("name = \"x\"\n[faults]\nlost_gpus = [3]\n[[gpus]]\nmodel = \"a100-sxm4-40gb\"\n");
    assert!(e.contains("lost_gpus names GPU 3"), "{e}");
    assert!(Topology::load("no-such-topology")
        .unwrap_err()
        .to_string()
        .contains("a100-7x1g"));
}

/// Found by the topology fuzz target: a name with a TOML `\n` escape made the error two lines.
#[test]
fn an_invalid_name_with_a_newline_is_still_one_line() {
    let shipped = include_str!("../topologies/a100-nomig.toml");
    let text = shipped.replace("name = \"a100-nomig\"", "name = \"a100\\nsecond line\"");
    assert_ne!(text, shipped);
    let e = crate::Topology::parse(&text, false, "fuzz.toml")
        .unwrap_err()
        .to_string();
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(e.starts_with("topology \"a100\\nsecond line\": "), "{e}");
}
