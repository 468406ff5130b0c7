//! Pure parts of registering a container's nodes with systemd: which systemd unit a cgroup path
//! names, and the `DeviceAllow=` entries for the plan's device rules.
//!
//! Under the systemd cgroup driver the container's cgroup is a transient unit
//! (`system.slice/runc-<id>.scope`, `machine.slice/libpod-<id>.scope`,
//! `system.slice/docker-<id>.scope`). On `systemctl daemon-reload` systemd rebuilds that unit's
//! device program from its own `DeviceAllow=` list, which knows nothing of the rules migcage put
//! in the cgroup. Adding the granted nodes to the unit's `DeviceAllow=` keeps them.

use std::path::Path;

use crate::core::edits::{DeviceRule, DeviceType};

/// Which systemd instance manages a unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Manager {
    /// PID 1, on the system bus.
    System,
    /// A user's manager (`user@<uid>.service`), as for rootless Podman.
    User { uid: u32 },
}

/// The systemd unit a container's cgroup is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    /// `runc-<id>.scope`
    pub name: String,
    pub manager: Manager,
}

/// crun's (and Podman's) sub-cgroup of the container's scope, where the container's processes
/// live when the scope itself must stay free of processes (cgroup v2's no-internal-process rule).
const CONTAINER_SUBGROUP: &str = "container";

fn is_unit_name(name: &str) -> bool {
    let stem = name
        .strip_suffix(".scope")
        .or_else(|| name.strip_suffix(".service"));
    stem.is_some_and(|s| !s.is_empty())
}

/// The unit whose cgroup `path` (from `/proc/<pid>/cgroup`) is: its last component when that is a
/// `*.scope` or `*.service`, or the scope whose `container` sub-cgroup it is.
///
/// Only the container's own cgroup counts: a path under a unit but deeper than that
/// (`system.slice/docker.service/docker/<id>`, the cgroupfs driver inside a service) names no
/// unit, because giving that service `DeviceAllow=` would grant the nodes to everything in it
/// (and switch on a device policy for a service that had none).
pub fn unit_for_cgroup_path(path: &Path) -> Option<Unit> {
    let parts: Vec<&str> = path
        .to_str()?
        .split('/')
        .filter(|c| !c.is_empty())
        .collect();
    let (last, rest) = parts.split_last()?;
    let (name, above) = if is_unit_name(last) {
        (*last, rest)
    } else if *last == CONTAINER_SUBGROUP {
        let (scope, above) = rest.split_last()?;
        if !scope.ends_with(".scope") || !is_unit_name(scope) {
            return None;
        }
        (*scope, above)
    } else {
        return None;
    };
    let manager = above
        .iter()
        .rev()
        .find_map(|c| {
            c.strip_prefix("user@")?
                .strip_suffix(".service")?
                .parse()
                .ok()
        })
        .map_or(Manager::System, |uid| Manager::User { uid });
    Some(Unit {
        name: name.to_string(),
        manager,
    })
}

/// One `DeviceAllow=` entry: a device path systemd parses itself and its access (`r`, `rw`,
/// `rwm`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DeviceAllow {
    /// `/dev/char/<major>:<minor>`: systemd takes the numbers from the path's name, with or
    /// without a real link there.
    pub path: String,
    pub access: String,
}

/// A unit's device access as systemd holds it (`DevicePolicy=` and `DeviceAllow=`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevicePolicy {
    /// `auto`, `closed` or `strict`.
    pub policy: String,
    pub allow: Vec<DeviceAllow>,
}

impl DevicePolicy {
    /// Does systemd restrict the unit's devices (and so rebuild a device program for it on
    /// daemon-reload)? Not under `auto` with an empty list: then systemd attaches no program and
    /// a reload leaves the runtime's (crun's) and the hook's alone. Adding entries there would
    /// switch a restriction on: the unit would lose every device the runtime allowed that is not
    /// in the list.
    pub fn restricts(&self) -> bool {
        self.policy != "auto" || !self.allow.is_empty()
    }
}

/// Why a rule cannot become a `DeviceAllow=` entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceAllowError {
    #[error("device rule {rule:?} is not a concrete character or block device allow rule with access; migcage only registers the nodes it made")]
    NotConcrete { rule: DeviceRule },
}

/// The `DeviceAllow=` entries for `rules` (the plan's own allow rules, one per node), in their
/// order. Every rule must be a concrete allow rule with some access: a wildcard would give the
/// unit more than the plan, so it is an error, never widened or dropped.
pub fn device_allow_entries(rules: &[DeviceRule]) -> Result<Vec<DeviceAllow>, DeviceAllowError> {
    rules
        .iter()
        .map(|rule| {
            let not_concrete = || DeviceAllowError::NotConcrete { rule: *rule };
            let dir = match rule.kind {
                DeviceType::Char => "char",
                DeviceType::Block => "block",
                DeviceType::All => return Err(not_concrete()),
            };
            let (true, Some(major), Some(minor)) = (rule.allow, rule.major, rule.minor) else {
                return Err(not_concrete());
            };
            let access = rule.access.to_string();
            if access.is_empty() {
                return Err(not_concrete());
            }
            Ok(DeviceAllow {
                path: format!("/dev/{dir}/{major}:{minor}"),
                access,
            })
        })
        .collect()
}

/// The `systemctl set-property --runtime` line that does the same by hand (for messages).
pub fn set_property_command(unit: &str, entries: &[DeviceAllow]) -> String {
    let values: Vec<String> = entries
        .iter()
        .map(|e| format!("'DeviceAllow={} {}'", e.path, e.access))
        .collect();
    format!(
        "systemctl set-property --runtime {unit} {}",
        values.join(" ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::edits::Access;

    fn unit(path: &str) -> Option<Unit> {
        unit_for_cgroup_path(Path::new(path))
    }

    fn system(name: &str) -> Option<Unit> {
        Some(Unit {
            name: name.into(),
            manager: Manager::System,
        })
    }

    #[test]
    fn container_scopes_name_their_unit() {
        assert_eq!(unit("/system.slice/runc-c1.scope"), system("runc-c1.scope"));
        assert_eq!(
            unit("/machine.slice/libpod-0123abcd.scope"),
            system("libpod-0123abcd.scope")
        );
        assert_eq!(
            unit("/system.slice/docker-0123abcd.scope/"),
            system("docker-0123abcd.scope")
        );
        assert_eq!(
            unit("/machine.slice/libpod-ab.scope/container"),
            system("libpod-ab.scope")
        );
        assert_eq!(unit("/system.slice/job.service"), system("job.service"));
    }

    #[test]
    fn rootless_scopes_belong_to_the_users_manager() {
        assert_eq!(
            unit("/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-ab.scope"),
            Some(Unit {
                name: "libpod-ab.scope".into(),
                manager: Manager::User { uid: 1000 },
            })
        );
    }

    #[test]
    fn other_cgroups_name_no_unit() {
        for path in [
            "/",
            "",
            "/c1",
            "/docker/0123abcd",
            "/system.slice/docker.service/docker/0123abcd",
            "/system.slice",
            "/machine.slice/libpod-ab.scope/other",
            "/system.slice/job.service/container",
            "/system.slice/.scope",
            "/container",
        ] {
            assert_eq!(unit(path), None, "{path:?}");
        }
    }

    fn rule(kind: DeviceType, major: Option<u32>, minor: Option<u32>, access: &str) -> DeviceRule {
        DeviceRule {
            allow: true,
            kind,
            major,
            minor,
            access: Access::parse(access).unwrap_or_default(),
        }
    }

    #[test]
    fn entries_use_dev_char_paths_and_the_rules_access() {
        let rules = [
            rule(DeviceType::Char, Some(195), Some(255), "rw"),
            rule(DeviceType::Char, Some(511), Some(13), "r"),
            rule(DeviceType::Char, Some(195), Some(0), "rwm"),
            rule(DeviceType::Block, Some(8), Some(1), "w"),
        ];
        let e = device_allow_entries(&rules).unwrap();
        let got: Vec<(&str, &str)> = e
            .iter()
            .map(|e| (e.path.as_str(), e.access.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("/dev/char/195:255", "rw"),
                ("/dev/char/511:13", "r"),
                ("/dev/char/195:0", "rwm"),
                ("/dev/block/8:1", "w"),
            ]
        );
        assert_eq!(device_allow_entries(&[]).unwrap(), []);
    }

    #[test]
    fn wildcards_and_denies_are_refused() {
        let mut deny = rule(DeviceType::Char, Some(195), Some(0), "rw");
        deny.allow = false;
        for bad in [
            rule(DeviceType::All, None, None, "rwm"),
            rule(DeviceType::Char, Some(195), None, "rw"),
            rule(DeviceType::Char, None, Some(0), "rw"),
            rule(DeviceType::Char, Some(195), Some(0), ""),
            deny,
        ] {
            let good = rule(DeviceType::Char, Some(195), Some(255), "rw");
            assert!(device_allow_entries(&[good, bad]).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn only_a_unit_systemd_restricts_needs_the_entries() {
        let policy = |p: &str, allow: &[(&str, &str)]| DevicePolicy {
            policy: p.into(),
            allow: allow
                .iter()
                .map(|(path, access)| DeviceAllow {
                    path: (*path).into(),
                    access: (*access).into(),
                })
                .collect(),
        };
        // runc's scopes: strict, with its default devices.
        assert!(policy("strict", &[("/dev/null", "rwm")]).restricts());
        assert!(policy("closed", &[]).restricts());
        assert!(policy("auto", &[("char-pts", "rwm")]).restricts());
        // No device policy at all (crun's scopes): systemd leaves the device programs alone.
        assert!(!policy("auto", &[]).restricts());
    }

    #[test]
    fn the_manual_command_quotes_each_entry() {
        let e = device_allow_entries(&[rule(DeviceType::Char, Some(195), Some(0), "rw")]).unwrap();
        assert_eq!(
            set_property_command("runc-c1.scope", &e),
            "systemctl set-property --runtime runc-c1.scope 'DeviceAllow=/dev/char/195:0 rw'"
        );
    }
}
