//! [`DbusSystemd`] against a real dbus-daemon (a private one, in a temporary directory) with a
//! stand-in for systemd's manager served by zbus: the wire form of the calls, `GetUnit` and the
//! property reads, end to end. Where dbus-daemon is not installed the test says `SKIP` the way
//! tests/common's `skip` does (stderr, and $MIGCAGE_SKIP_LOG, which scripts/test.sh checks).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use zbus::zvariant::{OwnedObjectPath, OwnedValue};

use super::dbus::DbusSystemd;
use super::SystemdUnits;
use crate::core::systemd::DeviceAllow;

type Calls = Arc<Mutex<Vec<(String, bool, Vec<(String, String)>)>>>;

struct Manager {
    calls: Calls,
}

#[zbus::interface(name = "org.freedesktop.systemd1.Manager")]
impl Manager {
    fn get_unit(&self, name: &str) -> zbus::fdo::Result<OwnedObjectPath> {
        if name != "runc-c1.scope" {
            return Err(zbus::fdo::Error::Failed(format!("Unit {name} not loaded.")));
        }
        Ok(OwnedObjectPath::try_from("/org/freedesktop/systemd1/unit/runc_2dc1_2escope").unwrap())
    }

    fn set_unit_properties(
        &self,
        name: &str,
        runtime: bool,
        properties: Vec<(String, OwnedValue)>,
    ) -> zbus::fdo::Result<()> {
        for (key, value) in properties {
            assert_eq!(key, "DeviceAllow");
            let pairs: Vec<(String, String)> = value
                .try_into()
                .map_err(|e: zbus::zvariant::Error| zbus::fdo::Error::InvalidArgs(e.to_string()))?;
            self.calls
                .lock()
                .unwrap()
                .push((name.to_string(), runtime, pairs));
        }
        Ok(())
    }
}

struct Scope;

#[zbus::interface(name = "org.freedesktop.systemd1.Scope")]
impl Scope {
    #[zbus(property)]
    fn device_policy(&self) -> String {
        "strict".into()
    }

    #[zbus(property)]
    fn device_allow(&self) -> Vec<(String, String)> {
        vec![("/dev/null".into(), "rwm".into())]
    }
}

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_bus(socket: &Path) -> Option<Daemon> {
    let child = Command::new("dbus-daemon")
        .args(["--session", "--nofork", "--nopidfile"])
        .arg(format!("--address=unix:path={}", socket.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let daemon = Daemon(child);
    let start = Instant::now();
    while !socket.exists() {
        if start.elapsed() > Duration::from_secs(5) {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Some(daemon)
}

#[test]
fn the_client_talks_to_a_manager_on_a_real_bus() {
    let d = tempfile::tempdir().unwrap();
    let socket = d.path().join("bus");
    let Some(_daemon) = start_bus(&socket) else {
        crate::testing::skip(
            "the_client_talks_to_a_manager_on_a_real_bus: no dbus-daemon to run (package dbus)",
        );
        return;
    };
    let calls = Calls::default();
    let _server = zbus::blocking::connection::Builder::address(
        format!("unix:path={}", socket.display()).as_str(),
    )
    .unwrap()
    .name("org.freedesktop.systemd1")
    .unwrap()
    .serve_at(
        "/org/freedesktop/systemd1",
        Manager {
            calls: calls.clone(),
        },
    )
    .unwrap()
    .serve_at("/org/freedesktop/systemd1/unit/runc_2dc1_2escope", Scope)
    .unwrap()
    .build()
    .unwrap();

    let client = DbusSystemd::new(&socket, Duration::from_secs(5));
    let policy = client.device_policy("runc-c1.scope").unwrap();
    assert_eq!(policy.policy, "strict");
    assert_eq!(
        policy.allow,
        [DeviceAllow {
            path: "/dev/null".into(),
            access: "rwm".into()
        }]
    );
    assert!(policy.restricts());
    let entries = [
        DeviceAllow {
            path: "/dev/char/195:255".into(),
            access: "rw".into(),
        },
        DeviceAllow {
            path: "/dev/char/511:13".into(),
            access: "r".into(),
        },
    ];
    client.add_device_allow("runc-c1.scope", &entries).unwrap();
    assert_eq!(
        *calls.lock().unwrap(),
        [(
            "runc-c1.scope".to_string(),
            true,
            vec![
                ("/dev/char/195:255".to_string(), "rw".to_string()),
                ("/dev/char/511:13".to_string(), "r".to_string()),
            ]
        )]
    );
    // An unknown unit: systemd's error comes back as one line naming the unit.
    let e = client.device_policy("runc-c2.scope").unwrap_err();
    assert!(e.to_string().contains("runc-c2.scope"), "{e}");
    assert!(e.to_string().contains("not loaded"), "{e}");
}
