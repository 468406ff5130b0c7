//! Checks of the device nodes, their `/dev/char` links, the caps table and the cgroup.

use std::path::{Path, PathBuf};

use crate::host::cgroup::DeviceCgroup;
use crate::host::inventory;

use super::super::facts::*;
use super::Check;

pub(super) fn node_problem(n: &NodeFact) -> Option<String> {
    let want = format!("{}:{}", n.major, n.minor);
    match &n.found {
        NodeState::CharDevice { major, minor } if (*major, *minor) == (n.major, n.minor) => None,
        NodeState::CharDevice { major, minor } => Some(format!(
            "{} ({}) is char {major}:{minor}, the driver says {want}",
            n.path.display(),
            n.what
        )),
        NodeState::Missing => Some(format!(
            "{} ({}, {want}) is missing",
            n.path.display(),
            n.what
        )),
        NodeState::NotCharDevice(kind) => Some(format!(
            "{} ({}) is {kind}, not character device {want}",
            n.path.display(),
            n.what
        )),
        NodeState::Unreadable(e) => Some(format!("cannot stat {}: {e}", n.path.display())),
    }
}

pub(super) fn node_fix(n: &NodeFact) -> String {
    let rm = if matches!(n.found, NodeState::Missing) {
        String::new()
    } else {
        format!("rm {} && ", n.path.display())
    };
    if n.caps {
        format!(
            "{rm}nvidia-modprobe -f -c {} (or mknod -m 444 {} c {} {}); the hook checks a node's number before it binds it into a container with a user namespace, and CDI runtimes read it",
            n.minor,
            n.path.display(),
            n.major,
            n.minor
        )
    } else {
        format!(
            "{rm}nvidia-modprobe -c {} -u (or mknod -m 666 {} c {} {})",
            n.minor,
            n.path.display(),
            n.major,
            n.minor
        )
    }
}

pub(super) fn check_nodes(f: &Facts) -> Vec<Check> {
    let DriverFact::Loaded(_) = &f.driver else {
        return vec![Check::warn(
            "device nodes",
            "not checked: the driver's procfs could not be read",
            "fix the driver line first",
        )];
    };
    let mut out = Vec::new();
    for m in &f.cap_mismatches {
        let table = match m.table_minor {
            Some(t) => format!("maps it to {t}"),
            None => "has no such entry".into(),
        };
        out.push(Check::fail(
            "caps table",
            format!(
                "{} says DeviceFileMinor {} but {} {table} (`{}`)",
                m.file.display(),
                m.file_minor,
                inventory::mig_minors_path(&f.roots).display(),
                m.entry
            ),
            "the driver's procfs is inconsistent, or proc_root mixes two hosts; reload nvidia-caps",
        ));
    }
    for caps in [false, true] {
        let name = if caps { "caps nodes" } else { "GPU nodes" };
        let of_kind: Vec<&NodeFact> = f.nodes.iter().filter(|n| n.caps == caps).collect();
        let bad: Vec<(&NodeFact, String)> = of_kind
            .iter()
            .filter_map(|n| node_problem(n).map(|p| (*n, p)))
            .collect();
        for (n, problem) in &bad {
            out.push(Check::fail(
                if caps { "caps node" } else { "GPU node" },
                problem.clone(),
                node_fix(n),
            ));
        }
        if bad.is_empty() {
            let dir = if caps {
                f.roots.dev_path("nvidia-caps")
            } else {
                f.roots.dev_root.clone()
            };
            let src = if caps {
                format!(
                    "the capability files of {} and {}",
                    f.roots.proc_path("driver/nvidia/capabilities").display(),
                    inventory::mig_minors_path(&f.roots).display()
                )
            } else {
                format!(
                    "{} and the GPUs' information files",
                    inventory::devices_path(&f.roots).display()
                )
            };
            out.push(Check::ok(
                name,
                format!("{} node(s) in {} match {src}", of_kind.len(), dir.display()),
            ));
        }
    }
    out
}

pub(super) fn check_cgroup(f: &Facts) -> Check {
    let c = &f.cgroup;
    let init = if c.systemd_init {
        "systemd is init: runtimes may use the systemd cgroup driver"
    } else {
        "systemd is not init: runtimes use the cgroupfs driver"
    };
    let drivers: Vec<String> = f
        .runtimes
        .iter()
        .flat_map(|r| {
            r.configs.iter().filter_map(move |(p, c)| {
                let d = c.as_ref().ok()?.cgroup_driver.as_ref()?;
                Some(format!("{} {d} ({})", r.name, p.display()))
            })
        })
        .collect();
    let drivers = if drivers.is_empty() {
        String::new()
    } else {
        format!("; set explicitly: {}", drivers.join(", "))
    };
    match &c.devices {
        Ok(DeviceCgroup::V1(dir)) => {
            let hybrid = if c.cgroup2_mounts.is_empty() {
                String::new()
            } else {
                format!(
                    " (hybrid: cgroup2 also at {}; devices stay on v1)",
                    c.cgroup2_mounts
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            Check::ok(
                "cgroup",
                format!(
                    "v1 devices controller at {}{hybrid}; {init}{drivers}",
                    dir.display()
                ),
            )
        }
        Ok(DeviceCgroup::V2(dir)) => Check::ok(
            "cgroup",
            format!(
                "v2 (eBPF device programs) at {}; {init}{drivers}",
                dir.display()
            ),
        ),
        Err(e) => Check::fail(
            "cgroup",
            format!("no device cgroup: {e}"),
            "mount the cgroup v1 devices controller or cgroup2 on /sys/fs/cgroup",
        ),
    }
}

pub(super) fn check_char_links(f: &Facts) -> Vec<Check> {
    if f.nodes.is_empty() {
        return Vec::new();
    }
    let missing: Vec<&NodeFact> = f
        .nodes
        .iter()
        .filter(|n| matches!(n.found, NodeState::CharDevice { .. }) && !n.char_link_ok)
        .collect();
    // The host's /dev/char (gather puts every link there), the one runc and systemd read.
    let dir = f.nodes[0]
        .char_link
        .parent()
        .map_or_else(|| PathBuf::from("/dev/char"), Path::to_path_buf);
    if missing.is_empty() {
        return vec![Check::ok(
            "/dev/char links",
            format!(
                "{} link(s) in {} (the /dev/char runc and systemd read) lead to the NVIDIA nodes",
                f.nodes.len(),
                dir.display()
            ),
        )];
    }
    let first = missing[0];
    let rel = pathdiff(&first.path, &dir);
    let example = format!("ln -s {rel} {}", first.char_link.display());
    let found = format!(
        "{} of {} NVIDIA node(s) lack their {}/<major>:<minor> link in the /dev/char runc and systemd read (first: {} for {})",
        missing.len(),
        f.nodes.len(),
        dir.display(),
        first.char_link.display(),
        first.path.display()
    );
    if f.cgroup.systemd_init {
        vec![Check::fail(
            "/dev/char links",
            found,
            format!("with the systemd cgroup driver, runc turns device rules into DeviceAllow=/dev/char/<major>:<minor> and a systemctl daemon-reload then drops access to nodes without a link (\"Failed to initialize NVML: Unknown Error\"); create them (`migcage system create-dev-char-links`, or {example}, one per node) or use the cgroupfs driver"),
        )]
    } else {
        vec![Check::warn(
            "/dev/char links",
            found,
            format!("harmless while systemd is not init; before switching a runtime to the systemd cgroup driver, create them (`migcage system create-dev-char-links`, or {example}, one per node)"),
        )]
    }
}

/// `target` relative to `dir` when it is a sibling path (`../nvidia-caps/nvidia-cap12`).
fn pathdiff(target: &Path, dir: &Path) -> String {
    match (target.parent(), dir.parent()) {
        (Some(tp), Some(dp)) if tp == dp => {
            format!(
                "../{}",
                target.file_name().unwrap_or_default().to_string_lossy()
            )
        }
        (Some(tp), Some(dp)) if tp.parent() == Some(dp) => format!(
            "../{}/{}",
            tp.file_name().unwrap_or_default().to_string_lossy(),
            target.file_name().unwrap_or_default().to_string_lossy()
        ),
        _ => target.display().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_link_targets() {
        assert_eq!(
            pathdiff(Path::new("/dev/nvidia0"), Path::new("/dev/char")),
            "../nvidia0"
        );
        assert_eq!(
            pathdiff(
                Path::new("/dev/nvidia-caps/nvidia-cap12"),
                Path::new("/dev/char")
            ),
            "../nvidia-caps/nvidia-cap12"
        );
    }
}
