//! After the cgroup grant: tell systemd about the granted nodes, so that access survives
//! `systemctl daemon-reload` (their `/dev/char` links: [`crate::host::dev_char::link_granted`]).
//!
//! When the container's cgroup is a systemd unit (`system.slice/runc-<id>.scope`, ...), a
//! daemon-reload makes systemd rebuild the unit's device program from its own `DeviceAllow=`
//! list, which knows nothing of the rules [`super::cgroup`] put in place. So the hook adds the
//! plan's nodes, exactly those, to the unit's `DeviceAllow=` at runtime.
//!
//! **A failed registration is a warning in the log, not an error.** The eBPF program (or v1
//! rules) the hook just installed is what enforces the plan, and it is already exact: the
//! container has its nodes and nothing more whether or not systemd heard of them. What a failure
//! costs is that a later daemon-reload may take the nodes away (fail closed: less access, never
//! more). Failing the container's start instead, because a bus was slow or a unit refused the
//! property, would turn that possible later loss into a certain one now; the warning names the
//! unit and the `systemctl set-property --runtime` line that does it by hand.

use std::path::Path;

use crate::core::edits::DeviceRule;
use crate::core::systemd::{device_allow_entries, set_property_command, Manager};
use crate::host::systemd::{self as host_systemd, SystemdUnits};

/// systemd as the hook sees it: running or not, and its client.
pub struct SystemdHost<'a> {
    /// Whether systemd is the host's init (`/run/systemd/system` exists).
    pub running: bool,
    pub units: &'a dyn SystemdUnits,
}

/// What [`register`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registration {
    /// systemd is not the host's init: nothing to tell.
    NoSystemd,
    /// The container's cgroup is no unit (the cgroupfs driver): no daemon-reload touches it.
    NotAUnit {
        cgroup: Option<String>,
    },
    /// A unit of a user's manager (rootless): it has no device program to rebuild.
    UserManager {
        unit: String,
        uid: u32,
    },
    /// No device rule to register (`none`: driver files only).
    NothingToRegister,
    /// systemd does not restrict the unit's devices (`DevicePolicy=auto`, no `DeviceAllow=`, as
    /// crun's scopes): a reload keeps the hook's rules, and entries would switch a restriction on.
    NoDevicePolicy {
        unit: String,
    },
    Registered {
        unit: String,
        entries: usize,
    },
    Failed {
        unit: String,
        error: String,
    },
}

impl std::fmt::Display for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Registration::NoSystemd => f.write_str("no systemd"),
            Registration::NotAUnit { cgroup } => write!(
                f,
                "cgroup {} is no systemd unit",
                cgroup.as_deref().unwrap_or("(none)")
            ),
            Registration::UserManager { unit, uid } => {
                write!(f, "{unit} belongs to user {uid}'s manager: not registered")
            }
            Registration::NothingToRegister => f.write_str("no device to register"),
            Registration::NoDevicePolicy { unit } => {
                write!(f, "{unit} has no device policy: nothing to register")
            }
            Registration::Registered { unit, entries } => {
                write!(f, "DeviceAllow= +{entries} on {unit}")
            }
            Registration::Failed { unit, error } => {
                write!(f, "DeviceAllow= on {unit} failed: {error}")
            }
        }
    }
}

/// Give the systemd unit that is process `pid`'s cgroup (read from `<proc_root>/<pid>/cgroup`)
/// `DeviceAllow=` entries for exactly `rules`, when systemd runs and restricts that unit's
/// devices (runc's scopes are `DevicePolicy=strict`). Calling it again sends the same
/// entries, which systemd merges into the ones it has: idempotent.
pub fn register(
    host: &SystemdHost,
    proc_root: &Path,
    pid: u32,
    rules: &[DeviceRule],
) -> Registration {
    if !host.running {
        return Registration::NoSystemd;
    }
    if rules.is_empty() {
        return Registration::NothingToRegister;
    }
    let (cgroup, unit) = match host_systemd::unit_of_process(proc_root, pid) {
        Ok(found) => found,
        Err(e) => {
            return Registration::Failed {
                unit: format!("(the unit of pid {pid})"),
                error: e.to_string(),
            }
        }
    };
    let Some(unit) = unit else {
        return Registration::NotAUnit {
            cgroup: cgroup.map(|p| p.display().to_string()),
        };
    };
    if let Manager::User { uid } = unit.manager {
        return Registration::UserManager {
            unit: unit.name,
            uid,
        };
    }
    let entries = match device_allow_entries(rules) {
        Ok(e) => e,
        Err(e) => {
            return Registration::Failed {
                unit: unit.name,
                error: e.to_string(),
            }
        }
    };
    match host.units.device_policy(&unit.name) {
        Ok(p) if !p.restricts() => return Registration::NoDevicePolicy { unit: unit.name },
        Ok(_) => {}
        Err(e) => {
            return Registration::Failed {
                error: format!(
                    "{e}; a daemon-reload may drop the container's GPU access (by hand: {})",
                    set_property_command(&unit.name, &entries)
                ),
                unit: unit.name,
            }
        }
    }
    match host.units.add_device_allow(&unit.name, &entries) {
        Ok(()) => Registration::Registered {
            unit: unit.name,
            entries: entries.len(),
        },
        Err(e) => Registration::Failed {
            error: format!(
                "{e}; until it is done a daemon-reload drops the container's GPU access (by hand: {})",
                set_property_command(&unit.name, &entries)
            ),
            unit: unit.name,
        },
    }
}

/// Is systemd this host's init (`/run/systemd/system`)?
pub fn running() -> bool {
    host_systemd::systemd_running(Path::new("/"))
}

/// systemd's manager on the configured system bus (`host.systemd_bus`), each call bounded by
/// `host.systemd_timeout_ms`.
pub fn system_bus(host: &crate::config::HostConfig) -> host_systemd::dbus::DbusSystemd {
    host_systemd::dbus::DbusSystemd::new(
        &host.systemd_bus,
        std::time::Duration::from_millis(host.systemd_timeout_ms),
    )
}

/// [`register`], with a warning in the log when it failed.
pub fn register_logged(
    host: &SystemdHost,
    proc_root: &Path,
    pid: u32,
    rules: &[DeviceRule],
) -> Registration {
    let r = register(host, proc_root, pid, rules);
    if let Registration::Failed { .. } = r {
        tracing::warn!(systemd = %r, "granted, but not registered with systemd");
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::edits::{Access, DeviceType};
    use crate::core::systemd::DeviceAllow;
    use crate::host::systemd::test::{RecordingSystemd, SetDeviceAllow};

    fn rule(major: u32, minor: u32, access: Access) -> DeviceRule {
        DeviceRule {
            allow: true,
            kind: DeviceType::Char,
            major: Some(major),
            minor: Some(minor),
            access,
        }
    }

    fn rules() -> Vec<DeviceRule> {
        vec![
            rule(195, 255, Access::RW),
            rule(195, 0, Access::RW),
            rule(
                511,
                13,
                Access {
                    read: true,
                    ..Access::default()
                },
            ),
        ]
    }

    /// A procfs with one process, 42, in `cgroup`.
    fn proc_with(cgroup: &str) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("42")).unwrap();
        std::fs::write(d.path().join("42/cgroup"), cgroup).unwrap();
        d
    }

    fn entry(path: &str, access: &str) -> DeviceAllow {
        DeviceAllow {
            path: path.into(),
            access: access.into(),
        }
    }

    #[test]
    fn a_scope_gets_exactly_the_granted_nodes() {
        let proc = proc_with("0::/system.slice/runc-c1.scope\n");
        let double = RecordingSystemd::new();
        let host = SystemdHost {
            running: true,
            units: &double,
        };
        let r = register(&host, proc.path(), 42, &rules());
        assert_eq!(
            r,
            Registration::Registered {
                unit: "runc-c1.scope".into(),
                entries: 3
            }
        );
        let want = SetDeviceAllow {
            unit: "runc-c1.scope".into(),
            entries: vec![
                entry("/dev/char/195:255", "rw"),
                entry("/dev/char/195:0", "rw"),
                entry("/dev/char/511:13", "r"),
            ],
        };
        assert_eq!(double.calls(), std::slice::from_ref(&want));
        assert_eq!(double.queried(), ["runc-c1.scope"]);
        // A second stage (or a rerun) sends the same entries again, nothing more.
        register(&host, proc.path(), 42, &rules());
        assert_eq!(double.calls(), [want.clone(), want]);
    }

    #[test]
    fn without_systemd_nothing_is_sent() {
        let proc = proc_with("0::/system.slice/runc-c1.scope\n");
        let double = RecordingSystemd::new();
        let host = SystemdHost {
            running: false,
            units: &double,
        };
        assert_eq!(
            register(&host, proc.path(), 42, &rules()),
            Registration::NoSystemd
        );
        assert!(double.calls().is_empty());
    }

    #[test]
    fn the_bus_and_its_bound_come_from_the_config() {
        let host = crate::config::HostConfig {
            systemd_bus: "/elsewhere/bus".into(),
            systemd_timeout_ms: 300,
            ..Default::default()
        };
        let bus = system_bus(&host);
        assert_eq!(bus.socket, Path::new("/elsewhere/bus"));
        assert_eq!(bus.timeout, std::time::Duration::from_millis(300));
    }

    #[test]
    fn this_test_host_has_no_systemd_so_the_hook_changes_nothing() {
        // The machines the suite runs on have no systemd as init: the hook's registration is a
        // no-op there, before any bus is touched.
        if Path::new("/run/systemd/system").exists() {
            eprintln!("skip: systemd runs here");
            return;
        }
        let units = system_bus(&crate::config::HostConfig::default());
        let host = SystemdHost {
            running: running(),
            units: &units,
        };
        let r = register_logged(&host, Path::new("/proc"), std::process::id(), &rules());
        assert_eq!(r, Registration::NoSystemd);
    }

    #[test]
    fn non_units_rootless_and_empty_plans_send_nothing() {
        let double = RecordingSystemd::new();
        let host = SystemdHost {
            running: true,
            units: &double,
        };
        let cgroupfs = proc_with("0::/docker/0123\n");
        assert!(matches!(
            register(&host, cgroupfs.path(), 42, &rules()),
            Registration::NotAUnit { .. }
        ));
        let inside = proc_with("0::/system.slice/docker.service/docker/0123\n");
        assert!(matches!(
            register(&host, inside.path(), 42, &rules()),
            Registration::NotAUnit { .. }
        ));
        let rootless = proc_with(
            "0::/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-ab.scope/container\n",
        );
        assert!(matches!(
            register(&host, rootless.path(), 42, &rules()),
            Registration::UserManager { uid: 1000, .. }
        ));
        let scope = proc_with("0::/system.slice/runc-c1.scope\n");
        assert_eq!(
            register(&host, scope.path(), 42, &[]),
            Registration::NothingToRegister
        );
        assert!(double.calls().is_empty());
    }

    #[test]
    fn a_unit_without_a_device_policy_is_left_as_it_is() {
        let proc = proc_with("0::/machine.slice/libpod-ab.scope/container\n");
        let double = RecordingSystemd::new().with_policy("libpod-ab.scope", "auto", &[]);
        let host = SystemdHost {
            running: true,
            units: &double,
        };
        assert_eq!(
            register(&host, proc.path(), 42, &rules()),
            Registration::NoDevicePolicy {
                unit: "libpod-ab.scope".into()
            }
        );
        assert_eq!(double.queried(), ["libpod-ab.scope"]);
        assert!(double.calls().is_empty());
    }

    #[test]
    fn a_refusal_is_reported_with_the_manual_command() {
        let proc = proc_with("1:name=systemd:/system.slice/docker-ab.scope\n");
        let double = RecordingSystemd::refusing("docker-ab.scope");
        let host = SystemdHost {
            running: true,
            units: &double,
        };
        let r = register(&host, proc.path(), 42, &rules());
        let Registration::Failed { unit, error } = &r else {
            panic!("{r:?}")
        };
        assert_eq!(unit, "docker-ab.scope");
        assert!(error.contains("not loaded"), "{error}");
        assert!(
            error.contains("systemctl set-property --runtime docker-ab.scope 'DeviceAllow=/dev/char/195:255 rw'"),
            "{error}"
        );
        assert_eq!(double.queried(), ["docker-ab.scope"]);
        assert!(double.calls().is_empty());
    }

    #[test]
    fn a_wildcard_rule_is_never_registered() {
        let proc = proc_with("0::/system.slice/runc-c1.scope\n");
        let double = RecordingSystemd::new();
        let host = SystemdHost {
            running: true,
            units: &double,
        };
        let mut wide = rules();
        wide.push(DeviceRule {
            allow: true,
            kind: DeviceType::All,
            major: None,
            minor: None,
            access: Access::ALL,
        });
        assert!(matches!(
            register(&host, proc.path(), 42, &wide),
            Registration::Failed { .. }
        ));
        assert!(double.calls().is_empty());
    }
}
