//! What the hook's container work takes from the host before it enters a container whose root
//! is already its own ([`HostObjects`]).

use std::path::{Path, PathBuf};

use crate::core::edits::DeviceNode;
use crate::sys::host_nodes::check_host_node;
use crate::sys::rootfs::{MountFlags, Rootfs};

use super::container::{ContainerWork, VIEW_FILES};

/// What the work takes from the host, taken from the host's mount namespace before the work
/// enters a container whose root is already its own (after `pivot_root`), where host paths are
/// out of reach and a bind mount of a host object is refused: detached copies of what it
/// bind-mounts ([`crate::sys::rootfs::clone_tree`]) and the driver files it reads, by the host
/// path the work names them by. Empty for the hook, which works before `pivot_root` and reads
/// and bind-mounts host paths.
#[derive(Debug, Default)]
pub struct HostObjects {
    trees: std::collections::HashMap<PathBuf, std::os::fd::OwnedFd>,
    /// A file's text, or None when the host has no such file.
    files: std::collections::HashMap<PathBuf, Option<String>>,
}

impl HostObjects {
    /// Everything `work` takes from the host: the procfs view's files, GPU directories and
    /// capability files, and nodes bound from the host. Run in the host's mount namespace.
    pub fn of(work: &ContainerWork) -> Result<HostObjects, String> {
        let mut sources: Vec<PathBuf> = Vec::new();
        let mut out = HostObjects::default();
        if let Some(v) = &work.proc_view {
            sources.extend(v.gpus.iter().map(|b| v.host_dir.join("gpus").join(b)));
            sources.extend(v.caps.iter().map(|c| v.host_dir.join(c)));
            for name in VIEW_FILES {
                let p = v.host_dir.join(name);
                let text = crate::sys::read::read_text(&p).ok();
                out.files.insert(p, text);
            }
        }
        if work.bind_nodes {
            for n in &work.nodes {
                check_host_node(n)?;
                sources.push(PathBuf::from(&n.host_path));
            }
        }
        for s in sources {
            let fd = crate::sys::rootfs::clone_tree(&s).map_err(|e| {
                format!(
                    "cannot copy the mount of {} to attach it in the container: {e}",
                    s.display()
                )
            })?;
            out.trees.insert(s, fd);
        }
        Ok(out)
    }

    /// Bind-mount `source` at `path`: its detached copy when there is one, else the host path.
    pub(super) fn bind(
        &self,
        root: &Rootfs,
        source: &Path,
        path: &str,
        flags: MountFlags,
    ) -> Result<bool, crate::sys::rootfs::RootfsError> {
        match self.trees.get(source) {
            Some(fd) => root.bind_tree(std::os::fd::AsFd::as_fd(fd), source, path, flags),
            None => root.bind_mount(source, path, flags),
        }
    }

    /// The text of the host file `path`: as taken, or read now.
    pub(super) fn read(&self, path: &Path) -> std::io::Result<String> {
        match self.files.get(path) {
            Some(Some(text)) => Ok(text.clone()),
            Some(None) => Err(std::io::ErrorKind::NotFound.into()),
            None => crate::sys::read::read_text(path),
        }
    }

    /// [`check_host_node`], unless the node was checked when its copy was taken.
    pub(super) fn check_node(&self, node: &DeviceNode) -> Result<(), String> {
        if self.trees.contains_key(Path::new(&node.host_path)) {
            return Ok(());
        }
        check_host_node(node)
    }
}
