//! The runtime's `--log` file: migcage's error there, in the line format runc writes its own.

use std::io::Write;
use std::path::Path;

use serde_json::json;

use super::{RuntimeArgs, RuntimeError};
use crate::config::Config;
use crate::logging::{ContainerRecord, RUNTIME_STAGE};

/// The time as RFC 3339 UTC with seconds (`2026-11-25T08:15:55Z`).
pub fn rfc3339_utc(t: std::time::SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Append `message` to the runtime's `--log` file in its format, as runc would log its own
/// error: containerd's shim and Docker show the last error there as the reason a create failed.
pub fn write_runtime_log(path: &Path, format: Option<&str>, message: &str) -> std::io::Result<()> {
    let time = rfc3339_utc(std::time::SystemTime::now());
    let line = if format == Some("json") {
        json!({"level": "error", "msg": message, "time": time}).to_string()
    } else {
        // logrus' text format, which runc writes by default.
        let quoted = serde_json::to_string(message).expect("a string serializes");
        format!("time=\"{time}\" level=error msg={quoted}")
    };
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    f.write_all(format!("{line}\n").as_bytes())
}

/// The container record of a create or run the wrapper stopped, in migcage's own log: the fields
/// of the hook's failure record (container, bundle, outcome `error`, the error line, what was
/// asked when the spec could be read), stage [`RUNTIME_STAGE`]. A configuration that failed to
/// load leaves the built-in log settings.
pub fn log_failure(
    explicit_config: Option<&Path>,
    parsed: &RuntimeArgs,
    err: &RuntimeError,
    start: std::time::Instant,
) {
    let config = Config::load(explicit_config)
        .map(|(c, _)| c)
        .unwrap_or_default();
    // A no-op when the wrapper already installed the logger.
    crate::logging::init(&config.log);
    let cwd = std::env::current_dir().unwrap_or_default();
    let mut record = ContainerRecord::failed_at(
        RUNTIME_STAGE,
        parsed
            .container_id
            .as_ref()
            .map(|c| c.to_string_lossy().into_owned()),
        Some(&parsed.bundle_dir(&cwd)),
        err.to_string(),
        u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX),
    );
    let request = crate::backend::spec::read(&parsed.spec_path(&cwd))
        .ok()
        .and_then(|spec| crate::core::request::parse(&spec.value, &config.requests).ok());
    if let Some(req) = &request {
        record.set_request(req);
    }
    record.emit();
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn rfc3339_with_seconds_in_utc() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_795_594_555);
        assert_eq!(rfc3339_utc(t), "2026-11-25T08:15:55Z");
    }

    #[test]
    fn runtime_log_lines_in_both_formats() {
        let d = tempfile::tempdir().unwrap();
        let json_log = d.path().join("log.json");
        write_runtime_log(&json_log, Some("json"), "migcage: \"x\" failed").unwrap();
        let line: Value =
            serde_json::from_str(std::fs::read_to_string(&json_log).unwrap().trim()).unwrap();
        assert_eq!(line["level"], "error");
        assert_eq!(line["msg"], "migcage: \"x\" failed");
        assert!(line["time"].as_str().unwrap().ends_with('Z'));
        let text_log = d.path().join("log");
        write_runtime_log(&text_log, None, "migcage: \"x\" failed").unwrap();
        let text = std::fs::read_to_string(&text_log).unwrap();
        assert!(
            text.starts_with("time=\"")
                && text.contains(" level=error msg=\"migcage: \\\"x\\\" failed\"\n"),
            "{text}"
        );
    }
}
