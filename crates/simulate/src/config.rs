//! The `config.toml` that points migcage at a simulated tree.
//!
//! The simulator does not depend on migcage, so it writes the file from a mirror of migcage's
//! `Config`: every key, in the same order and layout as `toml::to_string_pretty(&Config)`, the
//! roots pointing into the tree, `simulated_driver = true`, and every other key at migcage's
//! built-in default. migcage's tests check that its `Config` parses the text to exactly that
//! (`src/config.rs`), so the mirror cannot drift from the real thing unnoticed.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::libs::NVML_SONAME;
use crate::SimulateError;

/// migcage's `Config`, as the simulator writes it.
#[derive(Debug, Serialize)]
struct SimConfig {
    driver_root: PathBuf,
    dev_root: PathBuf,
    proc_root: PathBuf,
    nvml_library: PathBuf,
    state_dir: PathBuf,
    nvml_timeout_ms: u64,
    runtime: &'static str,
    simulated_driver: bool,
    requests: Requests,
    log: Log,
    leases: Leases,
    allocation: Allocation,
    host: Host,
}

#[derive(Debug, Serialize)]
struct Requests {
    accept_env: bool,
    env_privileged_only: bool,
    accept_annotations: bool,
    accept_volume_mounts: bool,
}

#[derive(Debug, Serialize)]
struct Log {
    file: String,
    level: &'static str,
}

#[derive(Debug, Serialize)]
struct Leases {
    explicit: &'static str,
}

#[derive(Debug, Serialize)]
struct Allocation {
    create_on_demand: bool,
    destroy_on_release: bool,
}

/// The host's own, as on any host: the system bus and the runtimes are the machine's, and
/// migcage makes `/dev/char` links only for a `dev_root` of `/dev`, never for a simulated tree.
#[derive(Debug, Serialize)]
struct Host {
    dev_char_dir: &'static str,
    systemd_bus: &'static str,
    systemd_timeout_ms: u64,
    runtime_versions: Vec<String>,
}

/// Where migcage keeps its state in a tree under `root`.
pub fn state_dir(root: &Path) -> PathBuf {
    root.join("run/migcage")
}

/// The text of the configuration that points migcage at a simulated tree under `root`.
pub fn config_text(root: &Path) -> Result<String, SimulateError> {
    let config = SimConfig {
        driver_root: root.to_path_buf(),
        dev_root: root.join("dev"),
        proc_root: root.join("proc"),
        nvml_library: root
            .join(migcage_driver_files::LIBRARY_DIR.trim_start_matches('/'))
            .join(NVML_SONAME),
        state_dir: state_dir(root),
        nvml_timeout_ms: 10_000,
        runtime: "runc",
        simulated_driver: true,
        requests: Requests {
            accept_env: true,
            env_privileged_only: false,
            accept_annotations: true,
            accept_volume_mounts: true,
        },
        log: Log {
            file: root.join("migcage.log").display().to_string(),
            level: "info",
        },
        leases: Leases {
            explicit: "exclusive",
        },
        allocation: Allocation {
            create_on_demand: false,
            destroy_on_release: false,
        },
        host: Host {
            dev_char_dir: "/dev/char",
            systemd_bus: "/run/dbus/system_bus_socket",
            systemd_timeout_ms: 2_000,
            runtime_versions: Vec::new(),
        },
    };
    toml::to_string_pretty(&config).map_err(|e| SimulateError::Serialize {
        what: "config.toml",
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_points_at_the_tree() {
        let text = config_text(Path::new("/sim")).unwrap();
        let v: toml::Table = toml::from_str(&text).unwrap();
        let s = |k: &str| v[k].as_str().unwrap().to_string();
        assert_eq!(s("driver_root"), "/sim");
        assert_eq!(s("dev_root"), "/sim/dev");
        assert_eq!(s("proc_root"), "/sim/proc");
        assert_eq!(
            s("nvml_library"),
            "/sim/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1"
        );
        assert_eq!(s("state_dir"), "/sim/run/migcage");
        assert_eq!(v["simulated_driver"].as_bool(), Some(true));
        assert_eq!(v["log"]["file"].as_str(), Some("/sim/migcage.log"));
    }
}
