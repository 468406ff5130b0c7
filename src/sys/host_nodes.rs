//! The host's device nodes a container gets bind-mounted where it cannot `mknod` (a user
//! namespace): made when missing, with the driver's numbers, and checked before each mount.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use nix::sys::stat::makedev;

use crate::core::edits::DeviceNode;

/// The host node of `node` is a character device with the driver's numbers (`st_rdev`), or
/// `invalid device node`.
pub fn check_host_node(node: &DeviceNode) -> Result<(), String> {
    let m = std::fs::metadata(&node.host_path)
        .map_err(|e| format!("host device node {} for {}: {e}", node.host_path, node.path))?;
    if !m.file_type().is_char_device()
        || m.rdev() != makedev(u64::from(node.major), u64::from(node.minor))
    {
        return Err(format!(
            "invalid device node {}: expected character device {}:{}; the host's /dev does not match the driver",
            node.host_path, node.major, node.minor
        ));
    }
    Ok(())
}

/// Make each of `nodes`' host node (`host_path`) that is missing, with the driver's numbers,
/// mode and owner, as the driver itself would (`ModifyDeviceFiles`): a container that cannot
/// `mknod` gets the host's node bind-mounted, so it must exist. Run on the host, before the
/// hook enters the container. An existing node is left as it is ([`check_host_node`] then
/// checks its numbers). Returns how many were made.
pub fn ensure_host_nodes(nodes: &[DeviceNode]) -> Result<usize, String> {
    use nix::sys::stat::{mknod, Mode, SFlag};
    let mut made = 0;
    for n in nodes {
        let path = Path::new(&n.host_path);
        if std::fs::symlink_metadata(path).is_ok() {
            continue;
        }
        let failed = |what: &str, e: &dyn std::fmt::Display| {
            format!(
                "cannot {what} the missing host device node {} ({}:{}) for {}: {e}",
                n.host_path, n.major, n.minor, n.path
            )
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| failed("make the directory of", &e))?;
        }
        let dev = makedev(u64::from(n.major), u64::from(n.minor));
        crate::sys::rootfs::with_umask_cleared(|| {
            mknod(
                path,
                SFlag::S_IFCHR,
                Mode::from_bits_truncate(n.file_mode),
                dev,
            )
        })
        .map_err(|e| failed("make", &e))?;
        std::os::unix::fs::lchown(path, Some(n.uid), Some(n.gid))
            .map_err(|e| failed("chown", &e))?;
        made += 1;
    }
    Ok(made)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_nodes_check_the_host_node() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("fake"), b"").unwrap();
        let node = DeviceNode {
            path: "/dev/nvidia0".into(),
            host_path: d.path().join("fake").display().to_string(),
            kind: 'c',
            major: 195,
            minor: 0,
            file_mode: 0o666,
            uid: 0,
            gid: 0,
        };
        let e = check_host_node(&node).unwrap_err();
        assert!(
            e.starts_with("invalid device node") && e.contains("195:0"),
            "{e}"
        );
    }

    #[test]
    fn missing_host_nodes_are_made_and_existing_ones_left_alone() {
        if !nix::unistd::geteuid().is_root() {
            crate::testing::skip(
                "missing_host_nodes_are_made_and_existing_ones_left_alone: needs root (CAP_MKNOD)",
            );
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let node = |host: &str, minor: u32| DeviceNode {
            path: format!("/dev/nvidia-caps/nvidia-cap{minor}"),
            host_path: d.path().join(host).display().to_string(),
            kind: 'c',
            major: 509,
            minor,
            file_mode: 0o444,
            uid: 0,
            gid: 0,
        };
        std::fs::write(d.path().join("file"), b"").unwrap();
        let nodes = [node("dev/nvidia-caps/nvidia-cap12", 12), node("file", 13)];
        assert_eq!(ensure_host_nodes(&nodes).unwrap(), 1);
        let m = std::fs::metadata(&nodes[0].host_path).unwrap();
        assert!(m.file_type().is_char_device());
        assert_eq!((m.rdev(), m.mode() & 0o7777), (makedev(509, 12), 0o444));
        assert!(check_host_node(&nodes[0]).is_ok());
        // Made once; what is there already is checked, never replaced.
        assert_eq!(ensure_host_nodes(&nodes).unwrap(), 0);
        assert!(check_host_node(&nodes[1])
            .unwrap_err()
            .starts_with("invalid device node"));
    }
}
