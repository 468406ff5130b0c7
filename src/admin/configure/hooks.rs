//! Podman and CRI-O: the OCI hooks.d file running `migcage hook prestart`.

use std::path::Path;

use serde_json::{json, Value};

/// The hooks.d file (hooks schema 1.0.0) running `migcage hook prestart` for every container
/// (migcage reads no driver state for a container that asks for nothing). `config` is migcage's
/// configuration file when not the default one.
pub fn hook_json(migcage: &Path, config: Option<&Path>) -> String {
    let hook = crate::core::edits::Hook::migcage(migcage, "prestart", config);
    let doc = json!({
        "version": "1.0.0",
        "hook": hook,
        "when": {"always": true},
        "stages": ["prestart"],
    });
    serde_json::to_string_pretty(&doc).expect("a Value serializes") + "\n"
}

/// The hook file to write: `old` itself when it already says what [`hook_json`] would (perhaps
/// formatted differently), otherwise [`hook_json`]'s text.
pub fn hook_edit(old: &str, migcage: &Path, config: Option<&Path>) -> String {
    let want = hook_json(migcage, config);
    // Already there, perhaps formatted differently: leave it.
    let same = serde_json::from_str::<Value>(old).ok() == serde_json::from_str::<Value>(&want).ok();
    if same {
        old.to_string()
    } else {
        want
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_hook_file_is_what_configure_writes() {
        let shipped = include_str!("../../../hooks/oci-migcage-hook.json");
        assert_eq!(hook_json(Path::new("/usr/bin/migcage"), None), shipped);
        let v: Value = serde_json::from_str(shipped).unwrap();
        assert_eq!(v["version"], "1.0.0");
        assert_eq!(v["stages"], json!(["prestart"]));
        assert_eq!(v["hook"]["args"], json!(["migcage", "hook", "prestart"]));
        let with = hook_json(Path::new("/opt/migcage"), Some(Path::new("/etc/sim.toml")));
        let v: Value = serde_json::from_str(&with).unwrap();
        assert_eq!(v["hook"]["env"], json!(["MIGCAGE_CONFIG=/etc/sim.toml"]));
    }
}
