//! Structured logs: JSON lines appended to the configured file.
//!
//! stdout stays clean (a hook's stdout belongs to the runtime) and stderr carries only the one
//! line a user sees. The file is opened in append mode by each run (O_APPEND: every line is one
//! `write`, so concurrent hooks do not interleave, and a logrotate rename is safe without
//! copytruncate: the next run opens the new file). A log file that cannot be opened never fails
//! the command.
//!
//! The hook writes one flat record per container ([`ContainerRecord`]): every field at the top
//! level of the JSON object, scalar values only, so that `jq 'select(.container == "x")'` and
//! log shippers need no nested parsing.

use std::fs::OpenOptions;
use std::path::Path;
use std::sync::Mutex;

use serde::Serialize;
use tracing_subscriber::filter::LevelFilter;

use crate::backend::hook::{Outcome, Stage};
use crate::config::LogConfig;
use crate::core::request::{Devices, Request};

/// The hook's entry point lives with the hook; this name keeps `main`'s call working.
pub use crate::backend::hook::entry::run_logged as run_hook_logged;

/// The `message` of a container record.
pub const CONTAINER_MESSAGE: &str = "container";

/// The `stage` of the record `migcage runtime` writes when it stops a container's create or run.
pub const RUNTIME_STAGE: &str = "runtime";

/// journald's socket for native messages: anyone may send to it.
pub const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";

/// Install the JSON file logger; returns false when logging is off. A file that cannot be
/// opened (a rootless engine's hook may not write root's log) sends the same records to the
/// journal instead, as `SYSLOG_IDENTIFIER=migcage`, where one is running: the runtime does not
/// show a hook's stderr everywhere (crun under Podman drops it), and the one line must reach
/// someone.
pub fn init(cfg: &LogConfig) -> bool {
    if cfg.file.is_empty() {
        return false;
    }
    let level: LevelFilter = cfg.level.parse().unwrap_or(LevelFilter::INFO);
    let builder = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_max_level(level)
        .with_current_span(false)
        .with_span_list(false)
        .with_target(false);
    match OpenOptions::new().create(true).append(true).open(&cfg.file) {
        Ok(file) => builder.with_writer(Mutex::new(file)).try_init().is_ok(),
        Err(_) if Path::new(JOURNAL_SOCKET).exists() => builder
            .with_writer(Mutex::new(JournalWriter::new(JOURNAL_SOCKET)))
            .try_init()
            .is_ok(),
        Err(_) => false,
    }
}

/// Lines written to it go to journald, one native datagram per line: the line as `MESSAGE`
/// (a JSON record holds no newline), `SYSLOG_IDENTIFIER=migcage`. A send that fails is dropped,
/// as a log file that cannot be written is.
pub struct JournalWriter {
    socket: std::path::PathBuf,
    line: Vec<u8>,
}

impl JournalWriter {
    pub fn new(socket: impl Into<std::path::PathBuf>) -> JournalWriter {
        JournalWriter {
            socket: socket.into(),
            line: Vec::new(),
        }
    }

    fn send(&self, line: &[u8]) {
        let mut datagram = b"SYSLOG_IDENTIFIER=migcage\nMESSAGE=".to_vec();
        datagram.extend_from_slice(line);
        datagram.push(b'\n');
        if let Ok(sock) = std::os::unix::net::UnixDatagram::unbound() {
            let _ = sock.send_to(&datagram, &self.socket);
        }
    }
}

impl std::io::Write for JournalWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.line.extend_from_slice(buf);
        while let Some(end) = self.line.iter().position(|&b| b == b'\n') {
            let rest = self.line.split_off(end + 1);
            let line = std::mem::replace(&mut self.line, rest);
            self.send(&line[..end]);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.send(&line);
        }
        Ok(())
    }
}

/// One container, as the log records it. Lists are comma-separated strings (the record stays
/// flat); absent values are left out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ContainerRecord {
    /// The container id from the runtime's state.
    pub container: Option<String>,
    /// `prestart`, `createRuntime`, `createContainer`, `poststop`, or `runtime` (the wrapper).
    pub stage: String,
    pub bundle: Option<String>,
    /// `ok` or `error`.
    pub outcome: &'static str,
    /// What was asked, in the user's syntax: `0:1`, `MIG-...`, `all`, `none`; empty when nothing.
    pub request: String,
    /// Where the ask came from: `NVIDIA_VISIBLE_DEVICES`, `annotation cdi.k8s.io/x`, ...
    pub source: String,
    /// Resolved devices by index (`0:1,1`).
    pub devices: String,
    /// Their UUIDs, in the same order.
    pub uuids: String,
    /// Device nodes made in the container.
    pub nodes: u64,
    /// The container's device cgroup as granted.
    pub cgroup: Option<String>,
    /// What systemd was told: `DeviceAllow= +6 on runc-<id>.scope`, `no systemd`, ...
    pub systemd: Option<String>,
    /// The one-line error the runtime showed the user.
    pub error: Option<String>,
    pub duration_us: u64,
}

impl ContainerRecord {
    /// The record of a hook run that succeeded.
    pub fn from_outcome(o: &Outcome, bundle: Option<&Path>) -> ContainerRecord {
        let mut r = ContainerRecord {
            container: Some(o.container.clone()),
            stage: stage_name(o.stage),
            bundle: bundle.map(|b| b.display().to_string()),
            outcome: "ok",
            nodes: o.nodes_created as u64,
            cgroup: o.cgroup.clone(),
            systemd: o.systemd.clone(),
            duration_us: u64::try_from(o.duration_us).unwrap_or(u64::MAX),
            ..ContainerRecord::default()
        };
        if let Some(req) = &o.request {
            r.set_request(req);
        }
        if let Some(plan) = &o.plan {
            r.devices = plan
                .devices
                .iter()
                .map(|d| d.index.as_str())
                .collect::<Vec<_>>()
                .join(",");
            r.uuids = plan
                .devices
                .iter()
                .map(|d| d.uuid.as_str())
                .collect::<Vec<_>>()
                .join(",");
        }
        r
    }

    /// Fill in what was asked and where it came from.
    pub fn set_request(&mut self, req: &Request) {
        self.request = match &req.devices {
            Devices::Untouched => String::new(),
            Devices::DriverOnly => "none".into(),
            Devices::Selected(s) => s
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(","),
        };
        self.source = req
            .sources
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join(",");
    }

    /// The record of a hook run that failed with `error` (what is known of the container).
    pub fn failed(
        stage: Stage,
        container: Option<String>,
        bundle: Option<&Path>,
        error: String,
        duration_us: u64,
    ) -> ContainerRecord {
        ContainerRecord::failed_at(&stage_name(stage), container, bundle, error, duration_us)
    }

    /// The record of a failure at `stage` (a hook stage, or [`RUNTIME_STAGE`]).
    pub fn failed_at(
        stage: &str,
        container: Option<String>,
        bundle: Option<&Path>,
        error: String,
        duration_us: u64,
    ) -> ContainerRecord {
        ContainerRecord {
            container,
            stage: stage.to_string(),
            bundle: bundle.map(|b| b.display().to_string()),
            outcome: "error",
            error: Some(error),
            duration_us,
            ..ContainerRecord::default()
        }
    }

    /// Whether the container asked for anything (records of untouched containers are debug-level).
    pub fn asked(&self) -> bool {
        !self.request.is_empty() || self.error.is_some()
    }

    /// Write the record to the log: info for a container that asked for devices, error for a
    /// failure, debug for a container left untouched.
    pub fn emit(&self) {
        macro_rules! event {
            ($level:expr) => {
                tracing::event!(
                    $level,
                    container = self.container.as_deref(),
                    stage = self.stage.as_str(),
                    bundle = self.bundle.as_deref(),
                    outcome = self.outcome,
                    request = self.request.as_str(),
                    source = self.source.as_str(),
                    devices = self.devices.as_str(),
                    uuids = self.uuids.as_str(),
                    nodes = self.nodes,
                    cgroup = self.cgroup.as_deref(),
                    systemd = self.systemd.as_deref(),
                    error = self.error.as_deref(),
                    duration_us = self.duration_us,
                    "{}",
                    CONTAINER_MESSAGE
                )
            };
        }
        if self.error.is_some() {
            event!(tracing::Level::ERROR);
        } else if self.asked() {
            event!(tracing::Level::INFO);
        } else {
            event!(tracing::Level::DEBUG);
        }
    }
}

fn stage_name(stage: Stage) -> String {
    serde_json::to_value(stage)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_names_are_the_oci_ones() {
        assert_eq!(stage_name(Stage::CreateContainer), "createContainer");
        assert_eq!(stage_name(Stage::Prestart), "prestart");
    }

    #[test]
    fn untouched_container_record() {
        let (_bundle, state) = crate::testing::untouched_bundle();
        let o = crate::backend::hook::run(
            &crate::config::Config::default(),
            Stage::Prestart,
            state.as_bytes(),
        )
        .unwrap();
        let r = ContainerRecord::from_outcome(&o, Some(Path::new("/b")));
        assert_eq!(r.container.as_deref(), Some("c1"));
        assert_eq!(r.bundle.as_deref(), Some("/b"));
        assert_eq!(
            (r.outcome, r.request.as_str(), r.asked()),
            ("ok", "", false)
        );
        assert_eq!(r.duration_us, o.duration_us as u64);
        let f = ContainerRecord::failed(Stage::Poststop, None, None, "boom".into(), 7);
        assert!(f.asked());
        assert_eq!((f.stage.as_str(), f.outcome), ("poststop", "error"));
    }

    #[test]
    fn journal_writer_sends_one_datagram_per_line() {
        use std::io::Write;
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("socket");
        let server = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        let mut w = JournalWriter::new(&path);
        w.write_all(b"{\"a\":1}\n{\"b\"").unwrap();
        w.write_all(b":2}\n{\"c\":3}").unwrap();
        w.flush().unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 256];
        for _ in 0..3 {
            let n = server.recv(&mut buf).unwrap();
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        let msg = |m: &str| format!("SYSLOG_IDENTIFIER=migcage\nMESSAGE={m}\n");
        assert_eq!(got, [msg("{\"a\":1}"), msg("{\"b\":2}"), msg("{\"c\":3}")]);
        // No socket: the line is dropped, never an error.
        let mut gone = JournalWriter::new(d.path().join("none"));
        assert!(gone.write_all(b"x\n").is_ok());
    }
}
