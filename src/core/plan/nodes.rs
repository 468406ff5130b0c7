//! Which device nodes a GPU or MIG device needs, and the cgroup rules for exactly those nodes.
//!
//! Pure: everything comes from the [`Inventory`]; the host's dev root is only used to name where
//! each node lives on the host (for bind mounts and CDI `hostPath`).

use std::path::Path;

use crate::core::edits::{Access, DeviceNode, DeviceRule, DeviceType};
use crate::core::inventory::{Gpu, Inventory, MigDevice};

/// Minor of /dev/nvidiactl on the frontend major.
pub const NVIDIACTL_MINOR: u32 = 255;
/// Mode of the driver's GPU nodes (the driver's default `DeviceFileMode: 438`).
pub const GPU_NODE_MODE: u32 = 0o666;
/// Mode of the MIG access capability nodes (`DeviceFileMode: 292`).
pub const CAPS_ACCESS_MODE: u32 = 0o444;
/// Mode of the mig/config capability node (`DeviceFileMode: 256`).
pub const CAPS_CONFIG_MODE: u32 = 0o400;

/// One device a container is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    /// A whole GPU (also one in MIG mode: then its whole GPU node, as the reference toolkit does).
    Gpu(&'a Gpu),
    /// One MIG device of a GPU.
    Mig { gpu: &'a Gpu, mig: &'a MigDevice },
}

impl Target<'_> {
    /// The UUID of the device (`GPU-...` or `MIG-...`).
    pub fn uuid(&self) -> &str {
        match self {
            Target::Gpu(g) => &g.uuid,
            Target::Mig { mig, .. } => &mig.uuid,
        }
    }

    /// The parent GPU.
    pub fn gpu(&self) -> &Gpu {
        match self {
            Target::Gpu(g) | Target::Mig { gpu: g, .. } => g,
        }
    }

    /// The index form users type: `0` or `0:1`.
    pub fn index_name(&self) -> String {
        match self {
            Target::Gpu(g) => g.index.to_string(),
            Target::Mig { gpu, mig } => format!("{}:{}", gpu.index, mig.index),
        }
    }
}

fn node(dev_root: &Path, rel: &str, major: u32, minor: u32, mode: u32) -> DeviceNode {
    DeviceNode {
        path: format!("/dev/{rel}"),
        host_path: dev_root.join(rel).display().to_string(),
        kind: 'c',
        major,
        minor,
        file_mode: mode,
        uid: 0,
        gid: 0,
    }
}

/// The nodes every container with at least one device needs: nvidiactl, nvidia-uvm and
/// nvidia-uvm-tools (the last two only when the uvm driver is loaded).
pub fn common_nodes(inv: &Inventory, dev_root: &Path) -> Vec<DeviceNode> {
    let mut out = vec![node(
        dev_root,
        "nvidiactl",
        inv.majors.frontend,
        NVIDIACTL_MINOR,
        GPU_NODE_MODE,
    )];
    if let Some(uvm) = inv.majors.uvm {
        out.push(node(dev_root, "nvidia-uvm", uvm, 0, GPU_NODE_MODE));
        out.push(node(dev_root, "nvidia-uvm-tools", uvm, 1, GPU_NODE_MODE));
    }
    out
}

/// The nodes of one device: the GPU node, and for a MIG device its GPU instance and compute
/// instance access capabilities. `None` when the caps driver is missing for a MIG device.
pub fn device_nodes(
    target: &Target<'_>,
    inv: &Inventory,
    dev_root: &Path,
) -> Option<Vec<DeviceNode>> {
    let gpu = target.gpu();
    let mut out = vec![node(
        dev_root,
        &format!("nvidia{}", gpu.minor),
        inv.majors.frontend,
        gpu.minor,
        GPU_NODE_MODE,
    )];
    if let Target::Mig { mig, .. } = target {
        let caps = inv.majors.caps?;
        for minor in [mig.gi_caps_minor, mig.ci_caps_minor] {
            out.push(node(
                dev_root,
                &format!("nvidia-caps/nvidia-cap{minor}"),
                caps,
                minor,
                CAPS_ACCESS_MODE,
            ));
        }
    }
    Some(out)
}

/// The caps node of `mig/config` (mode 0400) or `mig/monitor` (0444).
pub fn mig_admin_node(inv: &Inventory, dev_root: &Path, config: bool) -> Option<DeviceNode> {
    let caps = inv.majors.caps?;
    let (minor, mode) = if config {
        (inv.mig_config_minor?, CAPS_CONFIG_MODE)
    } else {
        (inv.mig_monitor_minor?, CAPS_ACCESS_MODE)
    };
    Some(node(
        dev_root,
        &format!("nvidia-caps/nvidia-cap{minor}"),
        caps,
        minor,
        mode,
    ))
}

/// One allow rule per node, for exactly that node: never a wildcard.
pub fn allow_rules(nodes: &[DeviceNode], access: Access) -> Vec<DeviceRule> {
    let mut rules: Vec<DeviceRule> = Vec::with_capacity(nodes.len());
    for n in nodes {
        let rule = DeviceRule {
            allow: true,
            kind: DeviceType::Char,
            major: Some(n.major),
            minor: Some(n.minor),
            access,
        };
        if !rules.contains(&rule) {
            rules.push(rule);
        }
    }
    rules
}

/// Append `nodes` to `out`, skipping any path already there.
pub fn push_unique(out: &mut Vec<DeviceNode>, nodes: impl IntoIterator<Item = DeviceNode>) {
    for n in nodes {
        if !out.iter().any(|o| o.path == n.path) {
            out.push(n);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::core::inventory::Majors;

    /// A small inventory: GPU 0 in MIG mode with two MIG devices, GPU 1 whole.
    pub(crate) fn inventory() -> Inventory {
        let mig = |index, gi, ci, uuid: &str| MigDevice {
            index,
            gpu_index: 0,
            uuid: uuid.to_string(),
            gpu_instance_id: gi,
            compute_instance_id: 0,
            profile: "3g.20gb".into(),
            memory_mib: 19968,
            gi_caps_minor: migcage_topology::gi_access_minor(0, gi),
            ci_caps_minor: migcage_topology::ci_access_minor(0, gi, ci),
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
                Gpu {
                    index: 0,
                    minor: 0,
                    uuid: "GPU-00000000-0000-0000-0000-000000000000".into(),
                    name: "NVIDIA A100-SXM4-40GB".into(),
                    pci_bus_id: "00000000:07:00.0".into(),
                    mig_enabled: true,
                    memory_mib: 40960,
                    mig_devices: vec![
                        mig(0, 1, 0, "MIG-11111111-1111-1111-1111-111111111111"),
                        mig(1, 2, 0, "MIG-22222222-2222-2222-2222-222222222222"),
                    ],
                },
                Gpu {
                    index: 1,
                    minor: 1,
                    uuid: "GPU-11111111-0000-0000-0000-000000000000".into(),
                    name: "NVIDIA A100-SXM4-40GB".into(),
                    pci_bus_id: "00000000:0F:00.0".into(),
                    mig_enabled: false,
                    memory_mib: 40960,
                    mig_devices: vec![],
                },
            ],
            mig_config_minor: Some(1),
            mig_monitor_minor: Some(2),
        }
    }

    #[test]
    fn mig_device_gets_parent_and_its_two_caps() {
        let inv = inventory();
        let t = Target::Mig {
            gpu: &inv.gpus[0],
            mig: &inv.gpus[0].mig_devices[1],
        };
        let nodes = device_nodes(&t, &inv, Path::new("/sim/dev")).unwrap();
        let got: Vec<(String, u32, u32, u32)> = nodes
            .iter()
            .map(|n| (n.path.clone(), n.major, n.minor, n.file_mode))
            .collect();
        assert_eq!(
            got,
            vec![
                ("/dev/nvidia0".into(), 195, 0, 0o666),
                ("/dev/nvidia-caps/nvidia-cap21".into(), 509, 21, 0o444),
                ("/dev/nvidia-caps/nvidia-cap22".into(), 509, 22, 0o444),
            ]
        );
        assert_eq!(nodes[1].host_path, "/sim/dev/nvidia-caps/nvidia-cap21");
        assert_eq!(t.index_name(), "0:1");
    }

    #[test]
    fn whole_gpu_gets_only_its_node() {
        let inv = inventory();
        let nodes = device_nodes(&Target::Gpu(&inv.gpus[1]), &inv, Path::new("/dev")).unwrap();
        assert_eq!(nodes.len(), 1);
        assert_eq!(
            (nodes[0].path.as_str(), nodes[0].minor),
            ("/dev/nvidia1", 1)
        );
    }

    #[test]
    fn common_nodes_follow_loaded_drivers() {
        let mut inv = inventory();
        let paths: Vec<String> = common_nodes(&inv, Path::new("/dev"))
            .into_iter()
            .map(|n| n.path)
            .collect();
        assert_eq!(
            paths,
            ["/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools"]
        );
        inv.majors.uvm = None;
        assert_eq!(common_nodes(&inv, Path::new("/dev")).len(), 1);
        inv.majors.caps = None;
        let t = Target::Mig {
            gpu: &inv.gpus[0],
            mig: &inv.gpus[0].mig_devices[0],
        };
        assert!(device_nodes(&t, &inv, Path::new("/dev")).is_none());
    }

    #[test]
    fn rules_are_exact_and_deduplicated() {
        let inv = inventory();
        let mut nodes = common_nodes(&inv, Path::new("/dev"));
        push_unique(
            &mut nodes,
            device_nodes(&Target::Gpu(&inv.gpus[0]), &inv, Path::new("/dev")).unwrap(),
        );
        push_unique(
            &mut nodes,
            device_nodes(&Target::Gpu(&inv.gpus[0]), &inv, Path::new("/dev")).unwrap(),
        );
        let rules = allow_rules(&nodes, Access::RW);
        assert_eq!(rules.len(), 4);
        assert!(rules
            .iter()
            .all(|r| r.allow && r.major.is_some() && r.minor.is_some() && !r.access.mknod));
    }

    #[test]
    fn admin_nodes() {
        let inv = inventory();
        let c = mig_admin_node(&inv, Path::new("/dev"), true).unwrap();
        assert_eq!(
            (c.path.as_str(), c.minor, c.file_mode),
            ("/dev/nvidia-caps/nvidia-cap1", 1, 0o400)
        );
        let m = mig_admin_node(&inv, Path::new("/dev"), false).unwrap();
        assert_eq!((m.minor, m.file_mode), (2, 0o444));
    }
}
