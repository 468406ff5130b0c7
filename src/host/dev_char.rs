//! `/dev/char/<major>:<minor>` links for the NVIDIA device nodes.
//!
//! runc under the systemd cgroup driver gives systemd `DeviceAllow=` only for devices it can stat
//! under `/dev/char/M:m`; the NVIDIA driver's nodes (made by nvidia-modprobe, not udev) have no
//! such link, and a `systemctl daemon-reload` then drops access to them. This makes the links:
//! `migcage system create-dev-char-links` for every node on the host, the hook for the nodes it
//! grants. An existing entry that leads elsewhere is never replaced.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

use crate::config::Config;
use crate::core::edits::DeviceNode;
use crate::host::inventory::{self, procfs};

/// Where runc and systemd look, unless `host.dev_char_dir` says otherwise.
pub const DEV_CHAR: &str = crate::config::DEFAULT_DEV_CHAR_DIR;

/// A device node on the host and its number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub path: PathBuf,
    pub major: u32,
    pub minor: u32,
}

/// What happened (or, in a dry run, would happen) to one node's link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkAction {
    /// Made, pointing at `target`.
    Created {
        target: PathBuf,
    },
    /// A dry run: would be made, pointing at `target`.
    WouldCreate {
        target: PathBuf,
    },
    /// Already leads to the node.
    Present,
    /// Something else is there (a link elsewhere, a file): left alone.
    Foreign {
        found: String,
    },
    Failed {
        error: String,
    },
}

/// One node's link and what was done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkResult {
    pub link: PathBuf,
    pub node: PathBuf,
    pub action: LinkAction,
}

impl std::fmt::Display for LinkResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (link, node) = (self.link.display(), self.node.display());
        match &self.action {
            LinkAction::Created { target } => {
                write!(f, "created {link} -> {}", target.display())
            }
            LinkAction::WouldCreate { target } => {
                write!(f, "would create {link} -> {}", target.display())
            }
            LinkAction::Present => write!(f, "ok {link} leads to {node}"),
            LinkAction::Foreign { found } => write!(
                f,
                "warning: {link} is {found}, not a link to {node}: left alone; remove it and run again to make the link"
            ),
            LinkAction::Failed { error } => {
                write!(f, "error: cannot create {link} -> {node}: {error}")
            }
        }
    }
}

/// An error finding the host's NVIDIA nodes.
#[derive(Debug, thiserror::Error)]
pub enum DevCharError {
    #[error("cannot read {path} for the NVIDIA majors: {message}; is the NVIDIA driver loaded?")]
    Majors { path: PathBuf, message: String },
    #[error("{path} has no nvidia-frontend (or nvidia) character major: the NVIDIA driver is not loaded")]
    NoFrontend { path: PathBuf },
}

/// `<dir>/<major>:<minor>`.
pub fn link_path(dir: &Path, major: u32, minor: u32) -> PathBuf {
    dir.join(format!("{major}:{minor}"))
}

/// What the link should hold: `../nvidia0` when the node lies under the link directory's parent
/// (as udev writes them), else the node's absolute path.
pub fn link_target(dir: &Path, node: &Path) -> PathBuf {
    match dir.parent().and_then(|p| node.strip_prefix(p).ok()) {
        Some(rest)
            if !rest.as_os_str().is_empty()
                && rest.components().all(|c| matches!(c, Component::Normal(_))) =>
        {
            Path::new("..").join(rest)
        }
        _ => node.to_path_buf(),
    }
}

fn char_number(m: &std::fs::Metadata) -> Option<(u32, u32)> {
    m.file_type().is_char_device().then(|| {
        (
            nix::sys::stat::major(m.rdev()) as u32,
            nix::sys::stat::minor(m.rdev()) as u32,
        )
    })
}

/// What is at `link` now, for `node`: None when nothing is there.
fn existing(link: &Path, node: &Node) -> Option<LinkAction> {
    let meta = std::fs::symlink_metadata(link).ok()?;
    if !meta.file_type().is_symlink() {
        return Some(LinkAction::Foreign {
            found: "not a symbolic link".into(),
        });
    }
    let target = std::fs::read_link(link)
        .map(|t| t.display().to_string())
        .unwrap_or_else(|e| format!("an unreadable link ({e})"));
    // Leads to a char device with the node's number (wherever it is): what runc and systemd need.
    let leads = std::fs::metadata(link).ok().as_ref().and_then(char_number)
        == Some((node.major, node.minor));
    Some(if leads {
        LinkAction::Present
    } else {
        LinkAction::Foreign {
            found: format!("a link to {target}"),
        }
    })
}

/// Make the link in `dir` for each of `nodes` that lacks one (`dry_run`: only say so). `dir` is
/// created when missing. Never replaces anything that is there.
pub fn ensure_links(dir: &Path, nodes: &[Node], dry_run: bool) -> Vec<LinkResult> {
    let mut out = Vec::new();
    for node in nodes {
        let link = link_path(dir, node.major, node.minor);
        let target = link_target(dir, &node.path);
        let action = match existing(&link, node) {
            Some(a) => a,
            None if dry_run => LinkAction::WouldCreate { target },
            None => match std::fs::create_dir_all(dir)
                .and_then(|()| std::os::unix::fs::symlink(&target, &link))
            {
                Ok(()) => LinkAction::Created { target },
                // Someone made it meanwhile (a second hook, udev): judge what is there now.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => existing(&link, node)
                    .unwrap_or(LinkAction::Failed {
                        error: e.to_string(),
                    }),
                Err(e) => LinkAction::Failed {
                    error: e.to_string(),
                },
            },
        };
        out.push(LinkResult {
            link,
            node: node.path.clone(),
            action,
        });
    }
    out
}

/// The char device at `path`, when it is one with a major in `majors`.
fn node_at(path: PathBuf, majors: &[u32]) -> Option<Node> {
    let (major, minor) = char_number(&std::fs::symlink_metadata(&path).ok()?)?;
    majors
        .contains(&major)
        .then_some(Node { path, major, minor })
}

fn numbered(name: &str, prefix: &str) -> bool {
    name.strip_prefix(prefix)
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

fn sorted_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    names
}

/// Every NVIDIA node under the configuration's dev_root (nvidiactl, nvidia-modeset, nvidia<N>,
/// nvidia-uvm, nvidia-uvm-tools, nvidia-caps/nvidia-cap<N>) that is a character device with the
/// driver's major from /proc/devices for its kind.
pub fn host_nodes(config: &Config) -> Result<Vec<Node>, DevCharError> {
    let devices = inventory::devices_path(config);
    let text = crate::sys::read::read_text(&devices).map_err(|e| DevCharError::Majors {
        path: devices.clone(),
        message: e.to_string(),
    })?;
    let majors = procfs::parse_devices(&text, &devices).map_err(|e| DevCharError::Majors {
        path: devices.clone(),
        message: e.to_string(),
    })?;
    let frontend = majors
        .frontend
        .ok_or(DevCharError::NoFrontend { path: devices })?;
    let mut nodes = Vec::new();
    for name in sorted_names(&config.dev_root) {
        let kind = match name.as_str() {
            "nvidiactl" | "nvidia-modeset" => Some(frontend),
            "nvidia-uvm" | "nvidia-uvm-tools" => majors.uvm,
            n if numbered(n, "nvidia") => Some(frontend),
            _ => None,
        };
        if let Some(node) = kind.and_then(|m| node_at(config.dev_path(&name), &[m])) {
            nodes.push(node);
        }
    }
    if let Some(caps) = majors.caps {
        let dir = config.dev_path("nvidia-caps");
        for name in sorted_names(&dir)
            .into_iter()
            .filter(|n| numbered(n, "nvidia-cap"))
        {
            nodes.extend(node_at(dir.join(name), &[caps]));
        }
    }
    Ok(nodes)
}

/// Make the `/dev/char` links of the granted `nodes` that are missing, in `dir`. Failures and
/// foreign entries are warnings, never errors: the container's own cgroup rules do not need the
/// links (they matter to runc's systemd driver and to `doctor`). Returns how many were made.
pub fn link_granted(dir: &Path, nodes: &[DeviceNode]) -> usize {
    let nodes: Vec<Node> = nodes
        .iter()
        .filter(|n| n.kind == 'c')
        .map(|n| Node {
            path: n.host_path.clone().into(),
            major: n.major,
            minor: n.minor,
        })
        .collect();
    let mut created = 0;
    for r in ensure_links(dir, &nodes, false) {
        match r.action {
            LinkAction::Created { .. } => created += 1,
            LinkAction::Foreign { .. } | LinkAction::Failed { .. } => {
                tracing::warn!(link = %r.link.display(), "{r}")
            }
            LinkAction::Present | LinkAction::WouldCreate { .. } => {}
        }
    }
    created
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_relative_under_the_same_dev() {
        let dir = Path::new("/dev/char");
        assert_eq!(
            link_target(dir, Path::new("/dev/nvidia0")),
            Path::new("../nvidia0")
        );
        assert_eq!(
            link_target(dir, Path::new("/dev/nvidia-caps/nvidia-cap1")),
            Path::new("../nvidia-caps/nvidia-cap1")
        );
        assert_eq!(
            link_target(dir, Path::new("/srv/sim/dev/nvidia0")),
            Path::new("/srv/sim/dev/nvidia0")
        );
        assert_eq!(link_path(dir, 195, 255), Path::new("/dev/char/195:255"));
    }

    #[test]
    fn numbered_names() {
        assert!(numbered("nvidia0", "nvidia"));
        assert!(numbered("nvidia-cap12", "nvidia-cap"));
        assert!(!numbered("nvidia", "nvidia"));
        assert!(!numbered("nvidiactl", "nvidia"));
        assert!(!numbered("nvidia-uvm", "nvidia"));
    }

    #[test]
    fn a_link_to_the_wrong_place_is_foreign_and_kept() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("char");
        std::fs::create_dir(&dir).unwrap();
        std::os::unix::fs::symlink("/nonexistent", dir.join("195:0")).unwrap();
        std::fs::write(dir.join("195:1"), "").unwrap();
        let nodes = [0, 1].map(|minor| Node {
            path: d.path().join(format!("nvidia{minor}")),
            major: 195,
            minor,
        });
        let r = ensure_links(&dir, &nodes, false);
        assert!(
            matches!(&r[0].action, LinkAction::Foreign { found } if found == "a link to /nonexistent"),
            "{:?}",
            r[0]
        );
        assert!(matches!(r[1].action, LinkAction::Foreign { .. }));
        assert!(r[0].to_string().starts_with("warning: "), "{}", r[0]);
        assert_eq!(
            std::fs::read_link(dir.join("195:0")).unwrap(),
            Path::new("/nonexistent")
        );
    }

    #[test]
    fn granted_nodes_get_their_links_once() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("char");
        // /dev/null stands for a granted node: a char device (1:3) every host has.
        let null = DeviceNode {
            path: "/dev/null".into(),
            host_path: "/dev/null".into(),
            kind: 'c',
            major: 1,
            minor: 3,
            file_mode: 0o666,
            uid: 0,
            gid: 0,
        };
        assert_eq!(link_granted(&dir, std::slice::from_ref(&null)), 1);
        assert_eq!(
            std::fs::read_link(dir.join("1:3")).unwrap(),
            Path::new("/dev/null")
        );
        assert_eq!(link_granted(&dir, &[null]), 0, "already there");
    }

    #[test]
    fn a_dry_run_makes_nothing() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("char");
        let node = Node {
            path: d.path().join("nvidia0"),
            major: 195,
            minor: 0,
        };
        let r = ensure_links(&dir, &[node], true);
        assert!(matches!(r[0].action, LinkAction::WouldCreate { .. }));
        assert!(!dir.exists());
    }
}
