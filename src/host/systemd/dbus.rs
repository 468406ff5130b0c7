//! [`SystemdUnits`] over the system bus, with zbus's blocking API.
//!
//! The call runs on a thread of its own and the caller waits at most the timeout for it: a bus
//! that accepts the connection and never answers (a wedged dbus-daemon, systemd busy in a
//! reload) costs the container's start that long and no more. A thread left waiting dies with
//! the hook's process. The hook asks twice (the unit's policy, then its new `DeviceAllow=`): both
//! go over one connection, made on the first call (authentication and `Hello` are most of a
//! call's cost).

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use super::*;

/// The connection, once made (shared with the thread that makes each call).
type Shared = Arc<Mutex<Option<zbus::blocking::Connection>>>;

/// systemd's manager on the bus at `socket`.
#[derive(Debug, Clone)]
pub struct DbusSystemd {
    pub socket: PathBuf,
    /// The bound on each call, connecting included.
    pub timeout: Duration,
    connection: Shared,
}

impl DbusSystemd {
    /// The bus at `socket` (the host's system bus is [`SYSTEM_BUS_SOCKET`]), each call bounded
    /// by `timeout` ([`CALL_TIMEOUT`] unless `host.systemd_timeout_ms` says otherwise).
    pub fn new(socket: &Path, timeout: Duration) -> Self {
        DbusSystemd {
            socket: socket.to_path_buf(),
            timeout,
            connection: Shared::default(),
        }
    }

    /// [`DbusSystemd::new`] with [`CALL_TIMEOUT`].
    pub fn at(socket: &Path) -> Self {
        DbusSystemd::new(socket, CALL_TIMEOUT)
    }
}

impl SystemdUnits for DbusSystemd {
    fn device_policy(&self, unit: &str) -> Result<DevicePolicy, SystemdError> {
        self.bounded(unit, read_policy)
    }

    fn add_device_allow(&self, unit: &str, entries: &[DeviceAllow]) -> Result<(), SystemdError> {
        if entries.is_empty() {
            return Err(SystemdError::Empty { unit: unit.into() });
        }
        let owned = entries.to_vec();
        self.bounded(unit, move |conn, socket, unit| {
            call(conn, socket, unit, &owned)
        })
    }
}

impl DbusSystemd {
    /// Run `op` (connection, socket, unit) on a thread of its own, connecting first unless an
    /// earlier call did; wait for it at most the timeout.
    fn bounded<T: Send + 'static>(
        &self,
        unit: &str,
        op: impl FnOnce(&zbus::blocking::Connection, &Path, &str) -> Result<T, SystemdError>
            + Send
            + 'static,
    ) -> Result<T, SystemdError> {
        let (tx, rx) = mpsc::channel();
        let (socket, owned_unit) = (self.socket.clone(), unit.to_string());
        let timeout = self.timeout;
        let shared = Arc::clone(&self.connection);
        let spawned = std::thread::Builder::new()
            .name("systemd-dbus".into())
            .spawn(move || {
                let result = connected(&shared, &socket, &owned_unit, timeout)
                    .and_then(|conn| op(&conn, &socket, &owned_unit));
                let _ = tx.send(result);
            });
        if let Err(e) = spawned {
            return Err(SystemdError::Connect {
                socket: self.socket.clone(),
                unit: unit.into(),
                message: format!("cannot start a thread for the call: {e}"),
            });
        }
        match rx.recv_timeout(self.timeout) {
            Ok(result) => result,
            Err(_) => Err(SystemdError::Timeout {
                socket: self.socket.clone(),
                unit: unit.into(),
                ms: self.timeout.as_millis(),
            }),
        }
    }
}

/// The shared connection, made now unless an earlier call made it.
fn connected(
    shared: &Shared,
    socket: &Path,
    unit: &str,
    timeout: Duration,
) -> Result<zbus::blocking::Connection, SystemdError> {
    // A thread that timed out may still hold the lock: it is then the one connecting, and this
    // call waits for it under its own bound (in `bounded`).
    let mut slot = shared.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(conn) = slot.as_ref() {
        return Ok(conn.clone());
    }
    let conn = connect(socket, unit, timeout)?;
    *slot = Some(conn.clone());
    Ok(conn)
}

/// Connect and authenticate.
fn connect(
    socket: &Path,
    unit: &str,
    timeout: Duration,
) -> Result<zbus::blocking::Connection, SystemdError> {
    let connect_err = |message: String| SystemdError::Connect {
        socket: socket.to_path_buf(),
        unit: unit.into(),
        message,
    };
    let stream = UnixStream::connect(socket).map_err(|e| connect_err(e.to_string()))?;
    zbus::blocking::connection::Builder::unix_stream(stream)
        .method_timeout(timeout)
        .build()
        .map_err(|e| connect_err(e.to_string()))
}

/// `GetUnit`, then the unit's `DevicePolicy` and `DeviceAllow` properties.
fn read_policy(
    conn: &zbus::blocking::Connection,
    socket: &Path,
    unit: &str,
) -> Result<DevicePolicy, SystemdError> {
    let call_err = |e: zbus::Error| SystemdError::Call {
        socket: socket.to_path_buf(),
        unit: unit.into(),
        message: e.to_string(),
    };
    let reply = conn
        .call_method(
            Some(DESTINATION),
            OBJECT_PATH,
            Some(MANAGER_INTERFACE),
            GET_UNIT,
            &(unit,),
        )
        .map_err(call_err)?;
    let path: zbus::zvariant::OwnedObjectPath = reply.body().deserialize().map_err(call_err)?;
    let get = |name: &str| -> Result<zbus::zvariant::OwnedValue, SystemdError> {
        let reply = conn
            .call_method(
                Some(DESTINATION),
                path.as_str(),
                Some(PROPERTIES_INTERFACE),
                "Get",
                &(unit_interface(unit), name),
            )
            .map_err(call_err)?;
        reply.body().deserialize().map_err(call_err)
    };
    let bad = |what: &str, e: zbus::zvariant::Error| SystemdError::Call {
        socket: socket.to_path_buf(),
        unit: unit.into(),
        message: format!("{what} is not what systemd documents: {e}"),
    };
    let policy: String = get("DevicePolicy")?
        .try_into()
        .map_err(|e| bad("DevicePolicy", e))?;
    let allow: Vec<(String, String)> = get("DeviceAllow")?
        .try_into()
        .map_err(|e| bad("DeviceAllow", e))?;
    Ok(DevicePolicy {
        policy,
        allow: allow
            .into_iter()
            .map(|(path, access)| DeviceAllow { path, access })
            .collect(),
    })
}

/// `SetUnitProperties(unit, runtime, DeviceAllow=...)`.
fn call(
    conn: &zbus::blocking::Connection,
    socket: &Path,
    unit: &str,
    entries: &[DeviceAllow],
) -> Result<(), SystemdError> {
    conn.call_method(
        Some(DESTINATION),
        OBJECT_PATH,
        Some(MANAGER_INTERFACE),
        SET_UNIT_PROPERTIES,
        &set_unit_properties_body(unit, entries),
    )
    .map_err(|e| SystemdError::Call {
        socket: socket.to_path_buf(),
        unit: unit.into(),
        message: e.to_string(),
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn entry() -> Vec<DeviceAllow> {
        vec![DeviceAllow {
            path: "/dev/char/195:0".into(),
            access: "rw".into(),
        }]
    }

    #[test]
    fn a_missing_bus_is_a_connect_error() {
        let d = tempfile::tempdir().unwrap();
        let s = DbusSystemd::new(&d.path().join("none"), Duration::from_millis(500));
        let e = s.add_device_allow("runc-c1.scope", &entry()).unwrap_err();
        assert!(matches!(e, SystemdError::Connect { .. }), "{e}");
        assert!(e.to_string().contains("runc-c1.scope"), "{e}");
    }

    #[test]
    fn a_bus_that_never_answers_costs_the_timeout_and_no_more() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("bus");
        // Accepts the connection (the kernel's backlog does) and never says a word.
        let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let s = DbusSystemd::new(&path, Duration::from_millis(300));
        let start = Instant::now();
        let e = s.add_device_allow("runc-c1.scope", &entry()).unwrap_err();
        assert!(matches!(e, SystemdError::Timeout { ms: 300, .. }), "{e}");
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn an_empty_list_is_never_sent() {
        let s = DbusSystemd::at(Path::new(SYSTEM_BUS_SOCKET));
        assert!(matches!(
            s.add_device_allow("runc-c1.scope", &[]),
            Err(SystemdError::Empty { .. })
        ));
    }
}
