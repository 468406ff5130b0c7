//! The hook's work inside the container's root filesystem: device nodes, and the isolated view
//! of the driver's procfs. Runs inside the container's mount namespace (see `nsenter`).

use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::sys::stat::{makedev, umask, Mode};
use nix::sys::statfs::{fstatfs, PROC_SUPER_MAGIC, TMPFS_MAGIC};
use serde::{Deserialize, Serialize};

use crate::edits::DeviceNode;
use crate::rootfs::{MountFlags, Rootfs};

/// What the container's /proc/driver/nvidia shows: only its own GPUs and MIG capabilities.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProcView {
    /// The host's `<proc_root>/driver/nvidia`.
    pub host_dir: PathBuf,
    /// `gpus/<bus id>` directories to expose, such as `0000:07:00.0`.
    pub gpus: Vec<String>,
    /// Capability files to expose, relative to the driver dir, such as
    /// `capabilities/gpu0/mig/gi7/access`.
    pub caps: Vec<String>,
}

/// Everything the hook does inside the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContainerWork {
    /// The rootfs, as a path in the container's mount namespace before pivot_root.
    pub rootfs: PathBuf,
    pub nodes: Vec<DeviceNode>,
    /// The container has its own user namespace: bind-mount the host nodes instead of mknod
    /// (a tmpfs mounted in a user namespace ignores device nodes).
    pub bind_nodes: bool,
    pub proc_view: Option<ProcView>,
}

/// The driver's `params` as a container must see it: `ModifyDeviceFiles: 0`, so that the
/// libraries in the container never try to create device nodes themselves.
pub fn container_params(host_params: &str) -> String {
    let mut out = String::with_capacity(host_params.len());
    let mut seen = false;
    for line in host_params.lines() {
        if line.split(':').next().map(str::trim) == Some("ModifyDeviceFiles") {
            out.push_str("ModifyDeviceFiles: 0\n");
            seen = true;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    if !seen {
        out.push_str("ModifyDeviceFiles: 0\n");
    }
    out
}

fn check_host_node(node: &DeviceNode) -> Result<(), String> {
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

/// Make the device nodes. Returns how many were created (0 on a re-run).
fn apply_nodes(root: &Rootfs, work: &ContainerWork) -> Result<usize, String> {
    let mut made = 0;
    for n in &work.nodes {
        if work.bind_nodes {
            check_host_node(n)?;
            if root.exists(&n.path).map_err(|e| e.to_string())? && is_mountpoint_dev(root, &n.path)
            {
                continue;
            }
            root.bind_mount(
                Path::new(&n.host_path),
                &n.path,
                MountFlags {
                    readonly: false,
                    nodev: false,
                },
            )
            .map_err(|e| e.to_string())?;
            made += 1;
        } else if root
            .mknod_char(&n.path, n.major, n.minor, n.file_mode, n.uid, n.gid)
            .map_err(|e| e.to_string())?
        {
            made += 1;
        }
    }
    Ok(made)
}

fn is_mountpoint_dev(root: &Rootfs, path: &str) -> bool {
    root.resolve(path, OFlag::O_PATH)
        .ok()
        .and_then(|fd| nix::sys::stat::fstat(std::os::fd::AsRawFd::as_raw_fd(&fd)).ok())
        .is_some_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFCHR)
}

fn fs_magic(root: &Rootfs, path: &str) -> Option<nix::sys::statfs::FsType> {
    let fd = root
        .resolve(path, OFlag::O_PATH | OFlag::O_DIRECTORY)
        .ok()?;
    fstatfs(fd.as_fd()).ok().map(|s| s.filesystem_type())
}

/// Build the container's /proc/driver/nvidia. On a real host the container's procfs has the
/// driver's directory and a tmpfs covers it; on a simulated host it does not (the simulated
/// driver lives in files, not in the kernel), so the tmpfs covers /proc/driver instead and holds
/// the same `nvidia` tree. Returns false when nothing was done (no procfs at /proc, or already
/// done by an earlier run).
fn apply_proc_view(root: &Rootfs, view: &ProcView) -> Result<bool, String> {
    if fs_magic(root, "/proc") != Some(PROC_SUPER_MAGIC) {
        return Ok(false);
    }
    let (mountpoint, dir) = if root
        .exists("/proc/driver/nvidia")
        .map_err(|e| e.to_string())?
    {
        ("/proc/driver/nvidia", "/proc/driver/nvidia".to_string())
    } else if root.exists("/proc/driver").map_err(|e| e.to_string())? {
        ("/proc/driver", "/proc/driver/nvidia".to_string())
    } else {
        return Ok(false);
    };
    if fs_magic(root, mountpoint) == Some(TMPFS_MAGIC) {
        return Ok(false);
    }
    root.mount_tmpfs(mountpoint, "mode=0555,size=1m,nr_inodes=4096")
        .map_err(|e| e.to_string())?;
    let host = &view.host_dir;
    let read = |name: &str| std::fs::read_to_string(host.join(name));
    match read("params") {
        Ok(p) => root.write_file(
            &format!("{dir}/params"),
            container_params(&p).as_bytes(),
            0o444,
        ),
        Err(_) => root.write_file(&format!("{dir}/params"), b"ModifyDeviceFiles: 0\n", 0o444),
    }
    .map_err(|e| e.to_string())?;
    for name in ["version", "registry"] {
        if let Ok(text) = read(name) {
            root.write_file(&format!("{dir}/{name}"), text.as_bytes(), 0o444)
                .map_err(|e| e.to_string())?;
        }
    }
    let ro = MountFlags {
        readonly: true,
        nodev: true,
    };
    for bus in &view.gpus {
        let src = host.join("gpus").join(bus);
        root.bind_mount(&src, &format!("{dir}/gpus/{bus}"), ro)
            .map_err(|e| e.to_string())?;
    }
    for cap in &view.caps {
        root.bind_mount(&host.join(cap), &format!("{dir}/{cap}"), ro)
            .map_err(|e| e.to_string())?;
    }
    root.remount_readonly(mountpoint)
        .map_err(|e| e.to_string())?;
    Ok(true)
}

/// What `apply` did, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Applied {
    pub nodes_created: usize,
    pub proc_view: bool,
}

/// Do the work. Must run in the container's mount namespace.
pub fn apply(work: &ContainerWork) -> Result<Applied, String> {
    // Modes are exactly the planned ones.
    let old = umask(Mode::empty());
    let result = (|| {
        let root = Rootfs::open(&work.rootfs).map_err(|e| e.to_string())?;
        let nodes_created = apply_nodes(&root, work)?;
        let proc_view = match &work.proc_view {
            Some(v) => apply_proc_view(&root, v)?,
            None => false,
        };
        Ok(Applied {
            nodes_created,
            proc_view,
        })
    })();
    umask(old);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_turn_off_device_file_creation() {
        let host = "ResmanDebugLevel: 4294967295\nModifyDeviceFiles: 1\nDeviceFileUID: 0\n";
        assert_eq!(
            container_params(host),
            "ResmanDebugLevel: 4294967295\nModifyDeviceFiles: 0\nDeviceFileUID: 0\n"
        );
        assert_eq!(container_params("A: 1\n"), "A: 1\nModifyDeviceFiles: 0\n");
    }

    #[test]
    fn nodes_are_made_once_in_a_plain_directory() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("SKIP nodes_are_made_once_in_a_plain_directory: needs root (CAP_MKNOD)");
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let node = DeviceNode {
            path: "/dev/nvidia-caps/nvidia-cap12".into(),
            host_path: "/nonexistent".into(),
            kind: 'c',
            major: 509,
            minor: 12,
            file_mode: 0o444,
            uid: 0,
            gid: 0,
        };
        let work = ContainerWork {
            rootfs: d.path().into(),
            nodes: vec![node],
            bind_nodes: false,
            proc_view: None,
        };
        assert_eq!(
            apply(&work).unwrap(),
            Applied {
                nodes_created: 1,
                proc_view: false
            }
        );
        assert_eq!(
            apply(&work).unwrap(),
            Applied {
                nodes_created: 0,
                proc_view: false
            }
        );
        let m = std::fs::metadata(d.path().join("dev/nvidia-caps/nvidia-cap12")).unwrap();
        assert_eq!(m.mode() & 0o7777, 0o444);
        assert_eq!(m.rdev(), makedev(509, 12));
    }

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
}
