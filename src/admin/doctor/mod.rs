//! `migcage doctor`: check a host the way an admin would, one line per finding.
//!
//! Two halves kept apart: [`gather`] reads the host (procfs, NVML with a bounded wait, device
//! nodes, cgroup mounts, the runtimes' configuration files, hooks.d, the state directory) into
//! plain [`Facts`], and [`evaluate`] turns facts into [`Check`]s without any I/O. Tests build
//! broken hosts by editing a `migcage simulate` tree, or build facts by hand.
//!
//! Every line reads `OK|WARN|FAIL <check>: <what was found>; <fix>`. A FAIL is something that
//! stops containers from getting their devices (or gives them the wrong ones); a WARN is
//! something that works today but breaks a documented use (user namespaces, podman, a systemd
//! daemon-reload). Doctor only reads: it never creates, edits or loads anything but NVML.

pub mod checks;
pub mod facts;
pub mod gather;
pub mod render;

use std::path::PathBuf;

use crate::config::{Config, ConfigError};

pub use checks::{evaluate, Check, Status};
pub use facts::*;
pub use gather::{
    gather, names_migcage, parse_hook_file, parse_runtime_config, writable, GatherOptions,
    CDI_DIRS, DOCKER_HOOK_DIR, HOOK_DIRS,
};
pub use render::Report;

/// Gather and evaluate.
pub fn run(loaded: Result<(Config, Option<PathBuf>), ConfigError>, opts: &GatherOptions) -> Report {
    Report::new(evaluate(&gather(loaded, opts)))
}
