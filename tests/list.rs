//! `migcage simulate` + `migcage list --json` for every shipped topology, checked against the
//! topology file itself: every GPU and MIG device under each name users type, with its caps
//! minors and the exact nodes a container gets.

mod common;

use std::collections::BTreeSet;
use std::process::Command;

use common::{SimHost, MIGCAGE};
use migcage_topology::{builtin_names, ci_access_minor, gi_access_minor, Topology};

#[test]
fn list_json_matches_every_shipped_topology() {
    if !common::is_root() {
        common::skip("list_json_matches_every_shipped_topology: simulate needs root (CAP_MKNOD)");
        return;
    }
    for name in builtin_names() {
        let topo = Topology::load(name).unwrap();
        let host = SimHost::new(name);
        let l = host.list();
        assert_eq!(l["driver_version"], topo.driver_version.as_str(), "{name}");
        let gpus = l["gpus"].as_array().unwrap();
        assert_eq!(gpus.len(), topo.gpus.len(), "{name}: GPUs");
        let mut uuids = BTreeSet::new();
        for (g, want) in gpus.iter().zip(&topo.gpus) {
            let ctx = format!("{name} GPU {}", want.index);
            assert_eq!(g["index"], want.index, "{ctx}");
            assert_eq!(g["minor"], want.minor, "{ctx}");
            assert_eq!(g["uuid"], want.uuid.as_str(), "{ctx}");
            assert_eq!(g["name"], want.model.name, "{ctx}");
            assert_eq!(g["pci_bus_id"], want.pci_bus_id.as_str(), "{ctx}");
            assert_eq!(g["mig_enabled"], want.mig, "{ctx}");
            assert_eq!(
                g["names"],
                serde_json::json!([want.index.to_string(), want.uuid]),
                "{ctx}"
            );
            let node = &g["nodes"][0];
            assert_eq!(node["path"], format!("/dev/nvidia{}", want.minor), "{ctx}");
            assert_eq!(
                (node["major"].as_u64(), node["minor"].as_u64()),
                (Some(195), Some(u64::from(want.minor))),
                "{ctx}"
            );
            let migs = g["mig_devices"].as_array().unwrap();
            let want_migs = want.mig_devices();
            assert_eq!(migs.len(), want_migs.len(), "{ctx}: MIG devices");
            for (m, w) in migs.iter().zip(&want_migs) {
                let index = format!("{}:{}", want.index, w.index);
                let ctx = format!("{name} {index}");
                assert_eq!(m["index"], index.as_str(), "{ctx}");
                assert_eq!(m["uuid"], w.ci.uuid.as_str(), "{ctx}");
                assert_eq!(m["profile"], w.profile_name().as_str(), "{ctx}");
                assert_eq!(m["gpu_instance_id"], w.gi.id, "{ctx}");
                assert_eq!(m["compute_instance_id"], w.ci.id, "{ctx}");
                let (gi, ci) = (
                    gi_access_minor(want.minor, w.gi.id),
                    ci_access_minor(want.minor, w.gi.id, w.ci.id),
                );
                assert_eq!(
                    (m["gi_caps_minor"].as_u64(), m["ci_caps_minor"].as_u64()),
                    (Some(u64::from(gi)), Some(u64::from(ci))),
                    "{ctx}"
                );
                let paths: Vec<&str> = m["nodes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|n| n["path"].as_str().unwrap())
                    .collect();
                let (p0, p1, p2) = (
                    format!("/dev/nvidia{}", want.minor),
                    format!("/dev/nvidia-caps/nvidia-cap{gi}"),
                    format!("/dev/nvidia-caps/nvidia-cap{ci}"),
                );
                assert_eq!(paths, [p0.as_str(), p1.as_str(), p2.as_str()], "{ctx}");
                assert_eq!(
                    m["nodes"][1]["major"].as_u64(),
                    Some(u64::from(topo.majors.caps)),
                    "{ctx}"
                );
                assert_eq!(m["names"], serde_json::json!([index, w.ci.uuid]), "{ctx}");
                assert!(uuids.insert(w.ci.uuid.clone()), "{ctx}: UUID repeats");
            }
        }
        let common_paths: Vec<&str> = l["common_nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["path"].as_str().unwrap())
            .collect();
        assert_eq!(
            common_paths,
            ["/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools"],
            "{name}"
        );
        // The table for people names every MIG device once.
        let table = Command::new(MIGCAGE)
            .arg("--config")
            .arg(host.config())
            .arg("list")
            .output()
            .unwrap();
        assert!(table.status.success());
        let table = String::from_utf8_lossy(&table.stdout);
        for u in &uuids {
            assert_eq!(
                table.matches(u.as_str()).count(),
                1,
                "{name}: {u} in the table"
            );
        }
        if name == "dgx-8x7" {
            assert_eq!(
                uuids.len(),
                56,
                "dgx-8x7 has 56 MIG devices with unique UUIDs"
            );
        }
    }
}
