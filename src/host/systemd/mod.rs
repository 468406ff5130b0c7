//! systemd on the host: is it running, which unit is a process's cgroup, and giving a unit
//! `DeviceAllow=` entries over its D-Bus API.
//!
//! The D-Bus client is behind [`SystemdUnits`]: [`dbus::DbusSystemd`] talks to the system bus,
//! the recording double ([`test::RecordingSystemd`], unit tests only) logs each call. The pure
//! parts (the unit a cgroup path names, the entries for a rule list) are in
//! [`crate::core::systemd`]; the D-Bus encoding of the call is [`set_unit_properties_body`].

#[cfg(test)]
mod bus_tests;
pub mod dbus;
#[cfg(test)]
pub mod test;

use std::path::{Path, PathBuf};
use std::time::Duration;

use zbus::zvariant::Value;

use crate::core::systemd::{unit_for_cgroup_path, DeviceAllow, DevicePolicy, Unit};
use crate::host::cgroup::{parse_proc_cgroup, CgroupLine, FindError};

/// Exists (a directory) exactly when systemd is the running init (sd_booted(3)).
pub const RUNNING_MARKER: &str = "run/systemd/system";

/// The system bus, where systemd's manager answers, unless `host.systemd_bus` says otherwise.
pub const SYSTEM_BUS_SOCKET: &str = crate::config::DEFAULT_SYSTEMD_BUS;

/// How long the hook waits for systemd: it is on the container's start path.
pub const CALL_TIMEOUT: Duration = Duration::from_millis(crate::config::DEFAULT_SYSTEMD_TIMEOUT_MS);

/// systemd's manager object, interface and method.
pub const DESTINATION: &str = "org.freedesktop.systemd1";
pub const OBJECT_PATH: &str = "/org/freedesktop/systemd1";
pub const MANAGER_INTERFACE: &str = "org.freedesktop.systemd1.Manager";
pub const SET_UNIT_PROPERTIES: &str = "SetUnitProperties";
pub const GET_UNIT: &str = "GetUnit";
pub const PROPERTIES_INTERFACE: &str = "org.freedesktop.DBus.Properties";

/// The interface that holds a unit's cgroup properties: `org.freedesktop.systemd1.Scope` for a
/// `.scope`, `...Service` for a `.service`.
pub fn unit_interface(unit: &str) -> &'static str {
    if unit.ends_with(".service") {
        "org.freedesktop.systemd1.Service"
    } else {
        "org.freedesktop.systemd1.Scope"
    }
}

/// An error talking to systemd; each names the unit and the socket.
#[derive(Debug, thiserror::Error)]
pub enum SystemdError {
    #[error("cannot connect to the system bus at {socket} to give {unit} DeviceAllow=: {message}")]
    Connect {
        socket: PathBuf,
        unit: String,
        message: String,
    },
    #[error("systemd refused DeviceAllow= for {unit} (via {socket}): {message}")]
    Call {
        socket: PathBuf,
        unit: String,
        message: String,
    },
    #[error("systemd did not answer within {ms} ms on {socket} when giving {unit} DeviceAllow=; gave up so the container can start")]
    Timeout {
        socket: PathBuf,
        unit: String,
        ms: u128,
    },
    #[error("refusing to send an empty DeviceAllow= list for {unit}: systemd would clear the unit's whole list")]
    Empty { unit: String },
}

/// systemd's unit properties, as far as migcage reads and changes them.
pub trait SystemdUnits {
    /// `unit`'s `DevicePolicy=` and `DeviceAllow=` (`GetUnit`, then the scope's or service's
    /// properties).
    fn device_policy(&self, unit: &str) -> Result<DevicePolicy, SystemdError>;

    /// Add `entries` to `unit`'s `DeviceAllow=` at runtime (`SetUnitProperties(unit, true,
    /// [("DeviceAllow", ...)])`). systemd updates an entry whose path it already has, so sending
    /// the same entries again changes nothing.
    fn add_device_allow(&self, unit: &str, entries: &[DeviceAllow]) -> Result<(), SystemdError>;
}

/// The body of `SetUnitProperties`: `(s unit, b runtime, a(sv) properties)`, with the one
/// property `DeviceAllow` as a variant holding `a(ss)` (path, access) pairs.
pub type SetUnitPropertiesBody<'a> = (&'a str, bool, Vec<(&'static str, Value<'a>)>);

/// [`SetUnitPropertiesBody`] for `unit` and `entries`, runtime-only (gone with the unit, never
/// written to /etc).
pub fn set_unit_properties_body<'a>(
    unit: &'a str,
    entries: &'a [DeviceAllow],
) -> SetUnitPropertiesBody<'a> {
    let pairs: Vec<(&str, &str)> = entries
        .iter()
        .map(|e| (e.path.as_str(), e.access.as_str()))
        .collect();
    (unit, true, vec![("DeviceAllow", Value::from(pairs))])
}

/// Is systemd the running init of the host whose root is `root` (`/` on a host)?
pub fn systemd_running(root: &Path) -> bool {
    root.join(RUNNING_MARKER).is_dir()
}

/// The cgroup path systemd manages for a process: the `name=systemd` hierarchy's line on a
/// cgroup v1 or hybrid host, the unified `0::` line otherwise.
pub fn systemd_cgroup_path(lines: &[CgroupLine]) -> Option<&Path> {
    let named = lines
        .iter()
        .find(|l| l.controllers.iter().any(|c| c == "name=systemd"));
    let unified = || {
        lines
            .iter()
            .find(|l| l.hierarchy_id == 0 && l.controllers.is_empty())
    };
    named.or_else(unified).map(|l| l.path.as_path())
}

/// The cgroup path of process `pid` (from `<proc_root>/<pid>/cgroup`) and the unit it is, if
/// any.
pub fn unit_of_process(
    proc_root: &Path,
    pid: u32,
) -> Result<(Option<PathBuf>, Option<Unit>), FindError> {
    let file = proc_root.join(pid.to_string()).join("cgroup");
    let text = crate::sys::read::read_text(&file).map_err(|source| FindError::Read {
        path: file.clone(),
        source,
    })?;
    let lines = parse_proc_cgroup(&text, &file)?;
    let path = systemd_cgroup_path(&lines);
    Ok((
        path.map(Path::to_path_buf),
        path.and_then(unit_for_cgroup_path),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries() -> Vec<DeviceAllow> {
        vec![
            DeviceAllow {
                path: "/dev/char/195:255".into(),
                access: "rw".into(),
            },
            DeviceAllow {
                path: "/dev/char/511:13".into(),
                access: "r".into(),
            },
        ]
    }

    #[test]
    fn the_call_encodes_as_systemds_signature() {
        let entries = entries();
        let body = set_unit_properties_body("runc-c1.scope", &entries);
        let msg = zbus::Message::method_call(OBJECT_PATH, SET_UNIT_PROPERTIES)
            .unwrap()
            .destination(DESTINATION)
            .unwrap()
            .interface(MANAGER_INTERFACE)
            .unwrap()
            .build(&body)
            .unwrap();
        let b = msg.body();
        // systemd's `SetUnitProperties(in s name, in b runtime, in a(sv) properties)`; zvariant
        // shows a body's arguments as one struct.
        assert_eq!(b.signature().to_string(), "(sba(sv))");
        let (unit, runtime, props): (String, bool, Vec<(String, zbus::zvariant::OwnedValue)>) =
            b.deserialize().unwrap();
        assert_eq!(unit, "runc-c1.scope");
        assert!(runtime, "runtime only: never persisted to /etc");
        assert_eq!(props.len(), 1);
        assert_eq!(props[0].0, "DeviceAllow");
        assert_eq!(props[0].1.value_signature().to_string(), "a(ss)");
        let pairs: Vec<(String, String)> = props[0].1.try_clone().unwrap().try_into().unwrap();
        assert_eq!(
            pairs,
            [
                ("/dev/char/195:255".to_string(), "rw".to_string()),
                ("/dev/char/511:13".to_string(), "r".to_string()),
            ]
        );
    }

    fn lines(text: &str) -> Vec<CgroupLine> {
        parse_proc_cgroup(text, Path::new("cgroup")).unwrap()
    }

    #[test]
    fn the_systemd_hierarchy_is_preferred_then_the_unified_one() {
        let hybrid = lines(
            "12:devices:/system.slice/runc-c1.scope\n1:name=systemd:/system.slice/runc-c1.scope\n0::/system.slice/runc-c1.scope\n",
        );
        assert_eq!(
            systemd_cgroup_path(&hybrid),
            Some(Path::new("/system.slice/runc-c1.scope"))
        );
        let v2 = lines("0::/machine.slice/libpod-ab.scope/container\n");
        assert_eq!(
            systemd_cgroup_path(&v2),
            Some(Path::new("/machine.slice/libpod-ab.scope/container"))
        );
        let v1_only = lines("4:devices:/c1\n");
        assert_eq!(systemd_cgroup_path(&v1_only), None);
    }

    #[test]
    fn a_process_cgroup_file_names_its_unit() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("42")).unwrap();
        std::fs::write(
            d.path().join("42/cgroup"),
            "0::/system.slice/runc-c1.scope\n",
        )
        .unwrap();
        let (path, unit) = unit_of_process(d.path(), 42).unwrap();
        assert_eq!(path.unwrap(), Path::new("/system.slice/runc-c1.scope"));
        assert_eq!(unit.unwrap().name, "runc-c1.scope");
        assert!(unit_of_process(d.path(), 43).is_err());
    }

    #[test]
    fn systemd_runs_only_with_its_marker_directory() {
        let d = tempfile::tempdir().unwrap();
        assert!(!systemd_running(d.path()));
        std::fs::create_dir_all(d.path().join(RUNNING_MARKER)).unwrap();
        assert!(systemd_running(d.path()));
    }
}
