//! The device nodes the driver says should exist, their `/dev/char` links, and the capability
//! files whose minors disagree with mig-minors.
//!
//! The links are looked for in the `/dev/char` runc and systemd read (the host root's), not in
//! the configuration's dev_root: a simulated tree's own `dev/char` keeps no container's access
//! across a daemon-reload.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::core::plan::nodes::NVIDIACTL_MINOR;
use crate::host::inventory::procfs::{self, MigMinors};
use crate::host::inventory::{self, ProcfsInfo};

use super::super::facts::*;

fn node_state(path: &Path) -> NodeState {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => NodeState::Missing,
        Err(e) => NodeState::Unreadable(e.to_string()),
        Ok(m) => {
            let ft = m.file_type();
            if ft.is_char_device() {
                NodeState::CharDevice {
                    major: nix::sys::stat::major(m.rdev()) as u32,
                    minor: nix::sys::stat::minor(m.rdev()) as u32,
                }
            } else {
                let kind = if ft.is_dir() {
                    "a directory"
                } else if ft.is_symlink() {
                    "a symlink"
                } else if ft.is_block_device() {
                    "a block device"
                } else if ft.is_file() {
                    "a regular file"
                } else {
                    "not a device"
                };
                NodeState::NotCharDevice(kind.to_string())
            }
        }
    }
}

/// Whether `<char_dir>/<major>:<minor>` leads to a char device with that number.
fn char_link_ok(link: &Path, major: u32, minor: u32) -> bool {
    std::fs::symlink_metadata(link).is_ok_and(|m| m.file_type().is_symlink())
        && std::fs::metadata(link).is_ok_and(|m| {
            m.file_type().is_char_device()
                && nix::sys::stat::major(m.rdev()) as u32 == major
                && nix::sys::stat::minor(m.rdev()) as u32 == minor
        })
}

/// Where the nodes are (the configuration) and where their links must be.
struct Dirs<'a> {
    config: &'a Config,
    char_dir: &'a Path,
}

fn node_fact(dirs: &Dirs, rel: &str, what: String, caps: bool, major: u32, minor: u32) -> NodeFact {
    let path = dirs.config.dev_path(rel);
    let char_link = dirs.char_dir.join(format!("{major}:{minor}"));
    NodeFact {
        found: node_state(&path),
        char_link_ok: char_link_ok(&char_link, major, minor),
        path,
        what,
        caps,
        major,
        minor,
        char_link,
    }
}

/// The capability files of the driver's procfs: (file, mig-minors entry name, minor in it).
fn capability_files(config: &Config) -> Vec<(PathBuf, String, Result<u32, String>)> {
    let base = config.proc_path("driver/nvidia/capabilities");
    let mut out = Vec::new();
    let read = |path: &Path| -> Result<u32, String> {
        inventory::read_cap_access(path)
            .map_err(|e| e.to_string())
            .and_then(|a| a.map(|a| a.minor).ok_or_else(|| "vanished".to_string()))
    };
    for name in ["config", "monitor"] {
        let p = base.join("mig").join(name);
        if p.is_file() {
            out.push((p.clone(), name.to_string(), read(&p)));
        }
    }
    let sorted_dirs = |dir: &Path, prefix: &str| -> Vec<(u32, PathBuf)> {
        let mut v: Vec<(u32, PathBuf)> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_str()?.to_string();
                let n = name.strip_prefix(prefix)?.parse::<u32>().ok()?;
                e.path().is_dir().then_some((n, e.path()))
            })
            .collect();
        v.sort();
        v
    };
    for (gpu, gdir) in sorted_dirs(&base, "gpu") {
        for (gi, gidir) in sorted_dirs(&gdir.join("mig"), "gi") {
            let p = gidir.join("access");
            if p.is_file() {
                out.push((p.clone(), procfs::gi_access_name(gpu, gi), read(&p)));
            }
            for (ci, cidir) in sorted_dirs(&gidir, "ci") {
                let p = cidir.join("access");
                if p.is_file() {
                    out.push((p.clone(), procfs::ci_access_name(gpu, gi, ci), read(&p)));
                }
            }
        }
    }
    out
}

fn table_minor(table: &MigMinors, entry: &str) -> Option<u32> {
    match entry {
        "config" => table.config,
        "monitor" => table.monitor,
        _ => {
            let parts: Vec<&str> = entry.split('/').collect();
            let num = |s: &str, p: &str| s.strip_prefix(p)?.parse::<u32>().ok();
            match parts.as_slice() {
                [g, gi, "access"] => table.gi(num(g, "gpu")?, num(gi, "gi")?),
                [g, gi, ci, "access"] => table.ci(num(g, "gpu")?, num(gi, "gi")?, num(ci, "ci")?),
                _ => table.other.get(entry).copied(),
            }
        }
    }
}

/// The nodes (under the configuration's dev_root) with their links in `char_dir` (the host's
/// `/dev/char`), and the caps files whose minors disagree with the table.
pub(super) fn gather_nodes(
    config: &Config,
    char_dir: &Path,
    proc: &ProcfsInfo,
) -> (Vec<NodeFact>, Vec<CapMismatch>) {
    let dirs = Dirs { config, char_dir };
    let m = proc.majors;
    let mut nodes = vec![node_fact(
        &dirs,
        "nvidiactl",
        "nvidiactl".into(),
        false,
        m.frontend,
        NVIDIACTL_MINOR,
    )];
    for info in proc.gpus.values() {
        nodes.push(node_fact(
            &dirs,
            &format!("nvidia{}", info.minor),
            format!("GPU {} (minor {})", info.bus_location, info.minor),
            false,
            m.frontend,
            info.minor,
        ));
    }
    if let Some(uvm) = m.uvm {
        nodes.push(node_fact(
            &dirs,
            "nvidia-uvm",
            "nvidia-uvm".into(),
            false,
            uvm,
            0,
        ));
        nodes.push(node_fact(
            &dirs,
            "nvidia-uvm-tools",
            "nvidia-uvm-tools".into(),
            false,
            uvm,
            1,
        ));
    }
    let mut mismatches = Vec::new();
    for (file, entry, minor) in capability_files(config) {
        let Ok(minor) = minor else { continue };
        let in_table = proc
            .mig_minors
            .as_ref()
            .and_then(|t| table_minor(t, &entry));
        if in_table != Some(minor) {
            mismatches.push(CapMismatch {
                file: file.clone(),
                entry: entry.clone(),
                file_minor: minor,
                table_minor: in_table,
            });
        }
        if let Some(caps) = m.caps {
            nodes.push(node_fact(
                &dirs,
                &format!("nvidia-caps/nvidia-cap{minor}"),
                entry,
                true,
                caps,
                minor,
            ));
        }
    }
    (nodes, mismatches)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_entries() {
        let t = procfs::parse_mig_minors(
            "config 1\nmonitor 2\ngpu0/gi1/access 12\ngpu0/gi1/ci0/access 13\n",
            Path::new("m"),
        )
        .unwrap();
        assert_eq!(table_minor(&t, "config"), Some(1));
        assert_eq!(table_minor(&t, "gpu0/gi1/access"), Some(12));
        assert_eq!(table_minor(&t, "gpu0/gi1/ci0/access"), Some(13));
        assert_eq!(table_minor(&t, "gpu0/gi2/access"), None);
    }
}
