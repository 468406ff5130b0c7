//! The device nodes of a topology: which ones (pure) and making them (mknod).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use migcage_topology::{Topology, FRONTEND_MAJOR, MIG_CONFIG_MINOR, MIG_MONITOR_MINOR};
use nix::sys::stat::{makedev, mknod, Mode, SFlag};

use super::{io, SimulateError};

/// `/dev/nvidiactl`'s minor.
pub const CTL_MINOR: u32 = 255;
/// `/dev/nvidia-modeset`'s minor.
pub const MODESET_MINOR: u32 = 254;
/// The directory of the capability nodes, below the dev root.
pub const CAPS_DIR: &str = "nvidia-caps";

/// A character device node to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Path relative to the dev root (`nvidia0`, `nvidia-caps/nvidia-cap66`).
    pub path: String,
    pub major: u32,
    pub minor: u32,
    /// Permission bits.
    pub mode: u32,
}

/// Every node of a topology: the control, modeset, UVM and GPU nodes, and the capability nodes of
/// the MIG config/monitor capabilities and of every existing GPU and compute instance.
pub fn nodes(t: &Topology) -> Vec<Node> {
    let node = |path: String, major: u32, minor: u32, mode: u32| Node {
        path,
        major,
        minor,
        mode,
    };
    let mut out = vec![
        node("nvidiactl".into(), FRONTEND_MAJOR, CTL_MINOR, 0o666),
        node(
            "nvidia-modeset".into(),
            FRONTEND_MAJOR,
            MODESET_MINOR,
            0o666,
        ),
    ];
    for gpu in &t.gpus {
        out.push(node(
            format!("nvidia{}", gpu.minor),
            FRONTEND_MAJOR,
            gpu.minor,
            0o666,
        ));
    }
    out.push(node("nvidia-uvm".into(), t.majors.uvm, 0, 0o666));
    out.push(node("nvidia-uvm-tools".into(), t.majors.uvm, 1, 0o666));
    let cap = |minor: u32, mode: u32| {
        node(
            format!("{CAPS_DIR}/nvidia-cap{minor}"),
            t.majors.caps,
            minor,
            mode,
        )
    };
    out.push(cap(MIG_CONFIG_MINOR, 0o400));
    out.push(cap(MIG_MONITOR_MINOR, 0o444));
    for gpu in t.gpus.iter().filter(|g| g.mig) {
        for gi in &gpu.gpu_instances {
            out.push(cap(
                migcage_topology::gi_access_minor(gpu.minor, gi.id),
                0o444,
            ));
            for ci in &gi.compute_instances {
                out.push(cap(
                    migcage_topology::ci_access_minor(gpu.minor, gi.id, ci.id),
                    0o444,
                ));
            }
        }
    }
    out
}

/// The target of the `/dev/char/<major>:<minor>` symlink of a node, relative to `dev/char` as
/// udev writes it (`../nvidia0`).
pub fn char_link_target(node: &Node) -> String {
    format!("../{}", node.path)
}

/// Create the nodes under `dev` (which must exist), with `dev/nvidia-caps` and `dev/char`.
pub fn create(dev: &Path, nodes: &[Node]) -> Result<(), SimulateError> {
    let caps_dir = dev.join(CAPS_DIR);
    std::fs::create_dir_all(&caps_dir).map_err(io("create directory", &caps_dir))?;
    std::fs::set_permissions(&caps_dir, std::fs::Permissions::from_mode(0o755))
        .map_err(io("chmod", &caps_dir))?;
    let char_dir = dev.join("char");
    std::fs::create_dir_all(&char_dir).map_err(io("create directory", &char_dir))?;
    for n in nodes {
        let path = dev.join(&n.path);
        let dev_t = makedev(u64::from(n.major), u64::from(n.minor));
        mknod(
            &path,
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(n.mode),
            dev_t,
        )
        .map_err(|e| SimulateError::Io {
            op: "mknod",
            path: path.clone(),
            source: e.into(),
        })?;
        // mknod applies the umask; set the mode the driver gives the node.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(n.mode))
            .map_err(io("chmod", &path))?;
        let link = char_dir.join(format!("{}:{}", n.major, n.minor));
        std::os::unix::fs::symlink(char_link_target(n), &link).map_err(io("symlink", &link))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_of_a100_7x1g() {
        let t = Topology::load("a100-7x1g").unwrap();
        let nodes = nodes(&t);
        let find = |p: &str| nodes.iter().find(|n| n.path == p).cloned();
        assert_eq!(
            find("nvidiactl").unwrap(),
            Node {
                path: "nvidiactl".into(),
                major: 195,
                minor: 255,
                mode: 0o666
            }
        );
        assert_eq!(find("nvidia0").unwrap().minor, 0);
        assert_eq!(
            find("nvidia-uvm-tools").unwrap(),
            Node {
                path: "nvidia-uvm-tools".into(),
                major: 510,
                minor: 1,
                mode: 0o666
            }
        );
        assert_eq!(find("nvidia-caps/nvidia-cap1").unwrap().mode, 0o400);
        assert_eq!(find("nvidia-caps/nvidia-cap2").unwrap().mode, 0o444);
        let gi7 = find("nvidia-caps/nvidia-cap66").unwrap();
        assert_eq!((gi7.major, gi7.minor, gi7.mode), (509, 66, 0o444));
        assert!(find("nvidia-caps/nvidia-cap67").is_some(), "gi7/ci0");
        // 2 frontend + 1 GPU + 2 UVM + config + monitor + 7 x (GI + CI).
        assert_eq!(nodes.len(), 2 + 1 + 2 + 2 + 14);
        assert_eq!(char_link_target(&gi7), "../nvidia-caps/nvidia-cap66");
    }

    #[test]
    fn no_caps_nodes_for_gpus_without_mig() {
        let t = Topology::load("a100-nomig").unwrap();
        let nodes = nodes(&t);
        let caps: Vec<&str> = nodes
            .iter()
            .filter(|n| n.major == t.majors.caps)
            .map(|n| n.path.as_str())
            .collect();
        assert_eq!(caps, ["nvidia-caps/nvidia-cap1", "nvidia-caps/nvidia-cap2"]);
    }
}
