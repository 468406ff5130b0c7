//! `migcage list`: every GPU and MIG device with the names users type and the exact device nodes
//! a container asking for it would get. Pure rendering of an [`Inventory`].

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::edits::DeviceNode;
use crate::inventory::Inventory;
use crate::plan::nodes::{common_nodes, device_nodes, Target};

/// A device node as listed.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct NodeView {
    pub path: String,
    pub major: u32,
    pub minor: u32,
    pub mode: String,
}

impl From<&DeviceNode> for NodeView {
    fn from(n: &DeviceNode) -> Self {
        NodeView {
            path: n.path.clone(),
            major: n.major,
            minor: n.minor,
            mode: format!("{:04o}", n.file_mode),
        }
    }
}

/// One MIG device as listed.
#[derive(Debug, Serialize)]
pub struct MigView {
    /// `0:1`
    pub index: String,
    pub uuid: String,
    pub profile: String,
    pub gpu_instance_id: u32,
    pub compute_instance_id: u32,
    pub memory_mib: u64,
    pub gi_caps_minor: u32,
    pub ci_caps_minor: u32,
    /// Every name a request may use for it.
    pub names: Vec<String>,
    /// The device-specific nodes (plus the common nodes listed once at the top).
    pub nodes: Vec<NodeView>,
}

/// One GPU as listed.
#[derive(Debug, Serialize)]
pub struct GpuView {
    pub index: u32,
    pub minor: u32,
    pub uuid: String,
    pub name: String,
    pub pci_bus_id: String,
    pub mig_enabled: bool,
    pub memory_mib: u64,
    pub names: Vec<String>,
    pub nodes: Vec<NodeView>,
    pub mig_devices: Vec<MigView>,
}

/// The whole listing (`--json`).
#[derive(Debug, Serialize)]
pub struct Listing {
    pub driver_version: String,
    pub cuda_driver_version: String,
    /// Nodes every container with a device gets.
    pub common_nodes: Vec<NodeView>,
    pub gpus: Vec<GpuView>,
}

/// Build the listing.
pub fn listing(inv: &Inventory, dev_root: &Path) -> Listing {
    let views = |nodes: Option<Vec<DeviceNode>>| -> Vec<NodeView> {
        nodes
            .unwrap_or_default()
            .iter()
            .map(NodeView::from)
            .collect()
    };
    let gpus = inv
        .gpus
        .iter()
        .map(|g| GpuView {
            index: g.index,
            minor: g.minor,
            uuid: g.uuid.clone(),
            name: g.name.clone(),
            pci_bus_id: g.pci_bus_id.clone(),
            mig_enabled: g.mig_enabled,
            memory_mib: g.memory_mib,
            names: vec![g.index.to_string(), g.uuid.clone()],
            nodes: views(device_nodes(&Target::Gpu(g), inv, dev_root)),
            mig_devices: g
                .mig_devices
                .iter()
                .map(|m| {
                    let t = Target::Mig { gpu: g, mig: m };
                    MigView {
                        index: t.index_name(),
                        uuid: m.uuid.clone(),
                        profile: m.profile.clone(),
                        gpu_instance_id: m.gpu_instance_id,
                        compute_instance_id: m.compute_instance_id,
                        memory_mib: m.memory_mib,
                        gi_caps_minor: m.gi_caps_minor,
                        ci_caps_minor: m.ci_caps_minor,
                        names: vec![t.index_name(), m.uuid.clone()],
                        nodes: views(device_nodes(&t, inv, dev_root)),
                    }
                })
                .collect(),
        })
        .collect();
    Listing {
        driver_version: inv.driver_version.clone(),
        cuda_driver_version: format!(
            "{}.{}",
            inv.cuda_driver_version / 1000,
            (inv.cuda_driver_version % 1000) / 10
        ),
        common_nodes: common_nodes(inv, dev_root)
            .iter()
            .map(NodeView::from)
            .collect(),
        gpus,
    }
}

fn node_list(nodes: &[NodeView]) -> String {
    nodes
        .iter()
        .map(|n| format!("{} ({}:{})", n.path, n.major, n.minor))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The table for people.
pub fn render_table(l: &Listing) -> String {
    let mut s = String::new();
    let mig_count: usize = l.gpus.iter().map(|g| g.mig_devices.len()).sum();
    let _ = writeln!(
        s,
        "Driver {}, CUDA {}: {} GPU(s), {} MIG device(s)",
        l.driver_version,
        l.cuda_driver_version,
        l.gpus.len(),
        mig_count
    );
    let _ = writeln!(
        s,
        "Every container with a device also gets: {}",
        node_list(&l.common_nodes)
    );
    for g in &l.gpus {
        let _ = writeln!(s);
        let mode = if g.mig_enabled {
            "MIG enabled"
        } else {
            "MIG disabled"
        };
        let _ = writeln!(
            s,
            "GPU {}  {}  {}  {}  {}",
            g.index, g.name, g.uuid, g.pci_bus_id, mode
        );
        let _ = writeln!(s, "  whole GPU -> {}", node_list(&g.nodes));
        if g.mig_enabled && g.mig_devices.is_empty() {
            let _ = writeln!(
                s,
                "  no MIG devices: create some with nvidia-smi mig -cgi <profiles> -C"
            );
        }
        for m in &g.mig_devices {
            let _ = writeln!(
                s,
                "  {:<5} {}  {:<10} GI {:<2} CI {}  {:>6} MiB -> {}",
                m.index,
                m.uuid,
                m.profile,
                m.gpu_instance_id,
                m.compute_instance_id,
                m.memory_mib,
                node_list(&m.nodes[1..])
            );
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::nodes::tests::inventory;

    #[test]
    fn listing_names_every_form_and_node() {
        let inv = inventory();
        let l = listing(&inv, Path::new("/dev"));
        assert_eq!(l.cuda_driver_version, "12.4");
        assert_eq!(
            l.gpus[0].names,
            vec!["0", "GPU-00000000-0000-0000-0000-000000000000"]
        );
        let m = &l.gpus[0].mig_devices[1];
        assert_eq!(
            m.names,
            vec!["0:1", "MIG-22222222-2222-2222-2222-222222222222"]
        );
        let paths: Vec<&str> = m.nodes.iter().map(|n| n.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/dev/nvidia0",
                "/dev/nvidia-caps/nvidia-cap21",
                "/dev/nvidia-caps/nvidia-cap22"
            ]
        );
        assert_eq!(m.nodes[1].mode, "0444");
        assert!(l.gpus[1].mig_devices.is_empty());
    }

    #[test]
    fn table_shows_each_device_once() {
        let inv = inventory();
        let t = render_table(&listing(&inv, Path::new("/dev")));
        assert!(
            t.starts_with("Driver 550.54.15, CUDA 12.4: 2 GPU(s), 2 MIG device(s)\n"),
            "{t}"
        );
        assert!(t.contains("GPU 1  NVIDIA A100-SXM4-40GB"));
        assert_eq!(t.matches("MIG-22222222").count(), 1);
        assert!(t.contains("0:1   MIG-22222222-2222-2222-2222-222222222222  3g.20gb    GI 2  CI 0   19968 MiB -> /dev/nvidia-caps/nvidia-cap21 (509:21)"), "{t}");
    }
}
