//! The one reader of a bundle's `config.json` (the OCI runtime spec), for the hook, the runtime
//! wrapper and `explain`: bounded in size, parsed as a `serde_json::Value` (so that fields
//! migcage does not know survive an edit), and checked to be a JSON object.
//!
//! Each back end words the errors its own way (the hook names "the bundle's config", the wrapper
//! "the container spec"): [`SpecError`] carries what went wrong, the callers say it.

use std::path::{Path, PathBuf};

/// Largest config.json accepted.
pub const MAX_CONFIG_BYTES: u64 = 32 << 20;

/// Why a config.json could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is larger than {MAX_CONFIG_BYTES} bytes")]
    TooLarge { path: PathBuf },
    /// Not JSON, or JSON whose top level is not an object (`message` says which).
    #[error("{path} is not valid JSON ({message})")]
    Parse { path: PathBuf, message: String },
}

/// A config.json as read: its bytes (whose style an edit keeps) and its JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigJson {
    pub bytes: Vec<u8>,
    pub value: serde_json::Value,
}

/// Read and check the spec file at `path`.
pub fn read(path: &Path) -> Result<ConfigJson, SpecError> {
    let read_err = |source| SpecError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_err)?;
    let bytes = crate::sys::read::read_capped(file, MAX_CONFIG_BYTES).map_err(read_err)?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(SpecError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| SpecError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    if !value.is_object() {
        return Err(SpecError::Parse {
            path: path.to_path_buf(),
            message: "the top level is not an object".into(),
        });
    }
    Ok(ConfigJson { bytes, value })
}

/// Read the config.json of `bundle`.
pub fn read_bundle(bundle: &Path) -> Result<ConfigJson, SpecError> {
    read(&bundle.join("config.json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_checks_and_keeps_the_bytes() {
        let d = tempfile::tempdir().unwrap();
        let e = read_bundle(d.path()).unwrap_err();
        assert!(matches!(e, SpecError::Read { .. }), "{e}");
        let p = d.path().join("config.json");
        for (text, want) in [
            ("{", "EOF while parsing"),
            ("[1]", "the top level is not an object"),
        ] {
            std::fs::write(&p, text).unwrap();
            let e = read(&p).unwrap_err().to_string();
            assert!(e.contains("not valid JSON") && e.contains(want), "{e}");
        }
        std::fs::write(&p, "{\"a\": 1}\n").unwrap();
        let c = read(&p).unwrap();
        assert_eq!(c.bytes, b"{\"a\": 1}\n");
        assert_eq!(c.value["a"], 1);
    }
}
