//! Which device nodes a process can open: the real driver's rule for what NVML shows inside a
//! container. A GPU is visible when `/dev/nvidia<minor>` opens; a MIG device when its GPU
//! instance and compute instance capability nodes (`/dev/nvidia-caps/nvidia-cap<N>`) open too.
//!
//! A node that opens, or fails with ENXIO (a char node with no driver behind it, which is what
//! the simulated tree holds), counts as accessible; ENOENT (not there), EPERM (the device cgroup
//! refused it) and EACCES (file permissions) do not. A char node whose major:minor is not the
//! one its name promises does not count either: on a real host it would open another device
//! (or capability) than the one asked for. Regular files are accepted as stand-ins.

use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::PathBuf;

use migcage_topology::{ci_access_minor, gi_access_minor, FRONTEND_MAJOR};

/// What opening a device node found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Opened, or ENXIO: the node is there and the process may use it.
    Accessible,
    /// ENOENT: no such node.
    Missing,
    /// EPERM: the device cgroup denied it.
    Denied,
    /// EACCES: file permissions denied it.
    NoPermission,
    /// A char device with another major:minor than expected.
    WrongDevice,
    /// Any other error.
    Other,
}

impl Access {
    pub fn ok(self) -> bool {
        self == Access::Accessible
    }
}

/// A device node and the char device numbers it must carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub path: PathBuf,
    pub major: u32,
    pub minor: u32,
}

/// Whether the driver's client opens `node` for writing: the frontend nodes (`nvidiactl`,
/// `nvidia<minor>`) read-write, the capability nodes read-only (the driver makes them mode 0444,
/// so an unprivileged process without CAP_DAC_OVERRIDE could not open them for writing).
pub fn opened_for_writing(node: &Node) -> bool {
    node.major == FRONTEND_MAJOR
}

/// Check the node's device numbers, open it the way the driver's client does, and classify the
/// outcome.
pub fn probe(node: &Node) -> Access {
    if let Ok(meta) = std::fs::metadata(&node.path) {
        if meta.file_type().is_char_device() && meta.rdev() != libc::makedev(node.major, node.minor)
        {
            return Access::WrongDevice;
        }
    }
    match OpenOptions::new()
        .read(true)
        .write(opened_for_writing(node))
        .open(&node.path)
    {
        Ok(_) => Access::Accessible,
        Err(e) => classify(&e),
    }
}

fn classify(e: &io::Error) -> Access {
    match e.raw_os_error() {
        Some(libc::ENXIO) => Access::Accessible,
        Some(libc::ENOENT) => Access::Missing,
        Some(libc::EPERM) => Access::Denied,
        Some(libc::EACCES) => Access::NoPermission,
        _ => Access::Other,
    }
}

/// The device nodes the simulated library checks, under one dev root.
#[derive(Debug, Clone)]
pub struct DevNodes {
    root: PathBuf,
    caps_major: u32,
}

impl DevNodes {
    /// `dev_root` from the topology (`/dev` when it has none) and its nvidia-caps major.
    pub fn new(dev_root: Option<&str>, caps_major: u32) -> DevNodes {
        DevNodes {
            root: PathBuf::from(dev_root.unwrap_or("/dev")),
            caps_major,
        }
    }

    pub fn ctl(&self) -> Node {
        Node {
            path: self.root.join("nvidiactl"),
            major: FRONTEND_MAJOR,
            minor: 255,
        }
    }

    pub fn gpu(&self, minor: u32) -> Node {
        Node {
            path: self.root.join(format!("nvidia{minor}")),
            major: FRONTEND_MAJOR,
            minor,
        }
    }

    pub fn gi(&self, gpu_minor: u32, gi: u32) -> Node {
        self.cap(gi_access_minor(gpu_minor, gi))
    }

    pub fn ci(&self, gpu_minor: u32, gi: u32, ci: u32) -> Node {
        self.cap(ci_access_minor(gpu_minor, gi, ci))
    }

    fn cap(&self, minor: u32) -> Node {
        Node {
            path: self
                .root
                .join("nvidia-caps")
                .join(format!("nvidia-cap{minor}")),
            major: self.caps_major,
            minor,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn outcomes_are_classified_like_the_driver() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain");
        std::fs::write(&file, b"").unwrap();
        let node = |path: PathBuf| Node {
            path,
            major: 195,
            minor: 0,
        };
        assert_eq!(probe(&node(file)), Access::Accessible);
        assert_eq!(probe(&node(dir.path().join("absent"))), Access::Missing);
        assert_eq!(
            classify(&io::Error::from_raw_os_error(libc::ENXIO)),
            Access::Accessible
        );
        assert_eq!(
            classify(&io::Error::from_raw_os_error(libc::EPERM)),
            Access::Denied
        );
        assert_eq!(
            classify(&io::Error::from_raw_os_error(libc::EACCES)),
            Access::NoPermission
        );
        assert_eq!(
            classify(&io::Error::from_raw_os_error(libc::EIO)),
            Access::Other
        );
    }

    #[test]
    fn a_char_node_without_a_driver_is_accessible() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return; // mknod needs root; the ENXIO mapping itself is covered above.
        }
        let dir = tempfile::tempdir().unwrap();
        let node = dir.path().join("nvidia0");
        let c = std::ffi::CString::new(node.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: `c` is a valid NUL-terminated path; mknod only reads it.
        let rc = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(195, 0)) };
        assert_eq!(rc, 0, "{}", io::Error::last_os_error());
        let e = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&node)
            .unwrap_err();
        assert_eq!(
            e.raw_os_error(),
            Some(libc::ENXIO),
            "no nvidia driver on this machine"
        );
        assert_eq!(
            probe(&Node {
                path: node.clone(),
                major: 195,
                minor: 0
            }),
            Access::Accessible
        );
        assert_eq!(
            probe(&Node {
                path: node,
                major: 195,
                minor: 1
            }),
            Access::WrongDevice
        );
    }

    #[test]
    fn node_paths_follow_the_caps_minors() {
        let n = DevNodes::new(Some("/x/dev"), 509);
        let node = |p: &str, major, minor| Node {
            path: PathBuf::from(p),
            major,
            minor,
        };
        assert_eq!(n.gpu(3), node("/x/dev/nvidia3", 195, 3));
        assert_eq!(n.ctl(), node("/x/dev/nvidiactl", 195, 255));
        assert_eq!(n.gi(0, 1), node("/x/dev/nvidia-caps/nvidia-cap12", 509, 12));
        assert!(opened_for_writing(&n.gpu(3)) && opened_for_writing(&n.ctl()));
        assert!(
            !opened_for_writing(&n.gi(0, 1)),
            "caps nodes are 0444: read-only"
        );
        assert_eq!(
            n.ci(0, 1, 0),
            node("/x/dev/nvidia-caps/nvidia-cap13", 509, 13)
        );
        assert_eq!(
            DevNodes::new(None, 509).gpu(0).path,
            Path::new("/dev/nvidia0")
        );
    }
}
