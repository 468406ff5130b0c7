//! The OCI container state a runtime passes to a hook on stdin, and the bundle it names.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Largest state document accepted on stdin.
pub const MAX_STATE_BYTES: u64 = 1 << 20;
pub use crate::backend::spec::MAX_CONFIG_BYTES;

/// An error reading the state or the bundle.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read the container state on stdin: {0}; migcage hook must be run by an OCI runtime (runc, crun) as a hook")]
    Read(std::io::Error),
    #[error("the container state on stdin is empty; migcage hook must be run by an OCI runtime (runc, crun) as a hook, which passes the state on stdin")]
    Empty,
    #[error("the container state on stdin is larger than {MAX_STATE_BYTES} bytes; this is not an OCI state document")]
    TooLarge,
    #[error("the container state on stdin is not valid OCI state JSON ({0}); check the runtime's hook configuration")]
    Parse(String),
    #[error("the container state on stdin has {field} {value:?}: {why}")]
    Invalid {
        field: &'static str,
        value: String,
        why: &'static str,
    },
    #[error(
        "cannot read the bundle's config {path}: {source}; is the bundle path in the state right?"
    )]
    Config {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the bundle's config {path} is larger than {MAX_CONFIG_BYTES} bytes")]
    ConfigTooLarge { path: PathBuf },
    #[error("the bundle's config {path} is not valid JSON ({message}); the runtime wrote a broken config.json")]
    ConfigParse { path: PathBuf, message: String },
}

/// The parts of the OCI state migcage uses.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct State {
    #[serde(rename = "ociVersion", default)]
    pub oci_version: String,
    pub id: String,
    #[serde(default)]
    pub status: String,
    /// The container's init process, in the runtime's pid namespace (absent once stopped).
    #[serde(default)]
    pub pid: Option<i64>,
    pub bundle: PathBuf,
}

impl State {
    /// Parse and check a state document.
    pub fn parse(bytes: &[u8]) -> Result<State, StateError> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(StateError::Empty);
        }
        let mut s: State =
            serde_json::from_slice(bytes).map_err(|e| StateError::Parse(e.to_string()))?;
        if s.id.is_empty() || s.id.len() > 1024 || s.id.contains(['/', '\0', '\n']) {
            return Err(StateError::Invalid {
                field: "id",
                value: s.id,
                why: "a container id is 1 to 1024 characters without '/' or newlines",
            });
        }
        if !s.bundle.is_absolute() {
            return Err(StateError::Invalid {
                field: "bundle",
                value: s.bundle.display().to_string(),
                why: "the bundle must be an absolute path",
            });
        }
        // crun passes `"pid": 0` to createContainer and poststop hooks: no process to name.
        if s.pid == Some(0) {
            s.pid = None;
        }
        if let Some(pid) = s.pid {
            if pid < 0 || pid > i64::from(i32::MAX) {
                return Err(StateError::Invalid {
                    field: "pid",
                    value: pid.to_string(),
                    why: "a pid is a positive 32-bit number",
                });
            }
        }
        Ok(s)
    }

    /// Read and parse the state from a reader (stdin).
    pub fn read(mut input: impl Read) -> Result<State, StateError> {
        let mut buf = Vec::new();
        input
            .by_ref()
            .take(MAX_STATE_BYTES + 1)
            .read_to_end(&mut buf)
            .map_err(StateError::Read)?;
        if buf.len() as u64 > MAX_STATE_BYTES {
            return Err(StateError::TooLarge);
        }
        State::parse(&buf)
    }

    /// The pid, which a hook that must reach the container needs.
    pub fn require_pid(&self) -> Result<i32, StateError> {
        match self.pid {
            Some(p) => Ok(p as i32),
            None => Err(StateError::Invalid { field: "pid", value: "none".into(), why: "the container has no process yet; run migcage as a prestart, createRuntime or createContainer hook" }),
        }
    }
}

/// Read the bundle's config.json as JSON (a `Value`, so that fields migcage does not know survive),
/// through the one reader ([`crate::backend::spec`]), in the hook's words.
pub fn read_config(bundle: &Path) -> Result<serde_json::Value, StateError> {
    use crate::backend::spec::{self, SpecError};
    match spec::read_bundle(bundle) {
        Ok(c) => Ok(c.value),
        Err(SpecError::Read { path, source }) => Err(StateError::Config { path, source }),
        Err(SpecError::TooLarge { path }) => Err(StateError::ConfigTooLarge { path }),
        Err(SpecError::Parse { path, message }) => Err(StateError::ConfigParse { path, message }),
    }
}

/// The rootfs path of a bundle's config (`root.path`, relative to the bundle unless absolute).
pub fn rootfs_path(bundle: &Path, config: &serde_json::Value) -> Option<PathBuf> {
    let p = config.get("root")?.get("path")?.as_str()?;
    if p.is_empty() {
        return None;
    }
    Some(if Path::new(p).is_absolute() {
        PathBuf::from(p)
    } else {
        bundle.join(p)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_runc_state() {
        let s = State::parse(br#"{"ociVersion":"1.0.2","id":"c1","status":"created","pid":4242,"bundle":"/run/b","annotations":{}}"#).unwrap();
        assert_eq!(
            (s.id.as_str(), s.pid, s.bundle.as_path()),
            ("c1", Some(4242), Path::new("/run/b"))
        );
        assert_eq!(s.require_pid().unwrap(), 4242);
        // crun's createContainer and poststop states carry pid 0: no process.
        let s = State::parse(br#"{"id":"c1","status":"stopped","pid":0,"bundle":"/b"}"#).unwrap();
        assert_eq!(s.pid, None);
    }

    #[test]
    fn refuses_bad_states_with_one_line() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "is empty"),
            (b"  \n", "is empty"),
            (
                b"{\"id\":\"c1\",\"bundle\":\"/b\"",
                "not valid OCI state JSON",
            ),
            (b"[1,2]", "not valid OCI state JSON"),
            (b"{\"id\":\"\",\"bundle\":\"/b\"}", "has id \"\""),
            (b"{\"id\":\"a/b\",\"bundle\":\"/b\"}", "has id \"a/b\""),
            (
                b"{\"id\":\"c\",\"bundle\":\"rel\"}",
                "bundle must be an absolute path",
            ),
            (
                b"{\"id\":\"c\",\"bundle\":\"/b\",\"pid\":-3}",
                "has pid \"-3\"",
            ),
            (
                b"{\"id\":\"c\",\"bundle\":\"/b\",\"pid\":99999999999}",
                "positive 32-bit",
            ),
            (b"{\"bundle\":\"/b\"}", "missing field `id`"),
        ];
        for (input, want) in cases {
            let e = State::parse(input).unwrap_err().to_string();
            assert!(
                e.contains(want),
                "{:?}: {e}",
                String::from_utf8_lossy(input)
            );
            assert!(!e.contains('\n'), "{e}");
        }
        let s = State::parse(b"{\"id\":\"c\",\"bundle\":\"/b\"}").unwrap();
        assert!(s
            .require_pid()
            .unwrap_err()
            .to_string()
            .contains("no process"));
        let big = vec![b' '; (MAX_STATE_BYTES + 10) as usize];
        assert!(matches!(State::read(&big[..]), Err(StateError::TooLarge)));
    }

    #[test]
    fn config_and_rootfs() {
        let d = tempfile::tempdir().unwrap();
        let e = read_config(d.path()).unwrap_err().to_string();
        assert!(
            e.contains("config.json") && e.contains("No such file"),
            "{e}"
        );
        std::fs::write(
            d.path().join("config.json"),
            b"{\"root\":{\"path\":\"rootfs\"}",
        )
        .unwrap();
        assert!(read_config(d.path())
            .unwrap_err()
            .to_string()
            .contains("not valid JSON"));
        std::fs::write(
            d.path().join("config.json"),
            b"{\"root\":{\"path\":\"rootfs\"}}",
        )
        .unwrap();
        let v = read_config(d.path()).unwrap();
        assert_eq!(rootfs_path(d.path(), &v).unwrap(), d.path().join("rootfs"));
        let abs = serde_json::json!({"root": {"path": "/x/rootfs"}});
        assert_eq!(rootfs_path(d.path(), &abs).unwrap(), Path::new("/x/rootfs"));
        assert!(rootfs_path(d.path(), &serde_json::json!({})).is_none());
    }
}
