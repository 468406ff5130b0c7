//! What the unit tests share: the skip line of tests/common's `skip`, so that a unit test that
//! cannot run here is counted by scripts/check-skips.sh like an integration test; and, for
//! tests only, a bundle whose container asks for nothing.

use std::ffi::OsString;
use std::io::Write;

/// Say that a test did not run, and why: on stderr past the test harness's capture, and appended
/// to `$MIGCAGE_SKIP_LOG` (scripts/test.sh fails on any skip not on tests/skips.allow).
pub fn skip(line: &str) {
    skip_to(std::env::var_os("MIGCAGE_SKIP_LOG"), line);
}

fn skip_to(log: Option<OsString>, line: &str) {
    let text = format!("SKIP {line}\n");
    let _ = std::io::stderr().write_all(text.as_bytes());
    if let Some(log) = log.filter(|v| !v.is_empty()) {
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
        {
            let _ = f.write_all(text.as_bytes());
        }
    }
}

/// A bundle whose config.json asks for no device, and the runtime's state (container `c1`,
/// pid 1) that names it: what a hook gets for a container it must leave untouched.
#[cfg(test)]
pub fn untouched_bundle() -> (tempfile::TempDir, String) {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(
        d.path().join("config.json"),
        br#"{"ociVersion":"1.0.2","process":{"env":["PATH=/bin"]},"root":{"path":"rootfs"}}"#,
    )
    .unwrap();
    let state = format!(
        r#"{{"ociVersion":"1.0.2","id":"c1","status":"created","pid":1,"bundle":"{}"}}"#,
        d.path().display()
    );
    (d, state)
}

/// A character device node of the plan at `path` (`c major:minor`, mode 0666, root's), whose
/// host node is `/sim<path>` (a simulated host's).
#[cfg(test)]
pub fn char_node(path: &str, major: u32, minor: u32) -> crate::core::edits::DeviceNode {
    crate::core::edits::DeviceNode {
        path: path.into(),
        host_path: format!("/sim{path}"),
        kind: 'c',
        major,
        minor,
        file_mode: 0o666,
        uid: 0,
        gid: 0,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_skip_is_appended_to_the_skip_log() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("skips");
        std::fs::write(&log, "SKIP earlier: reason\n").unwrap();
        super::skip_to(Some(log.clone().into()), "this_test: a reason");
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            "SKIP earlier: reason\nSKIP this_test: a reason\n"
        );
    }
}
