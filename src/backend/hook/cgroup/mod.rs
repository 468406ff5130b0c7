//! Device access for a container's cgroup: the cgroup v1 devices controller and the cgroup v2
//! eBPF device program.
//!
//! - [`crate::host::cgroup`] decides, from `/proc/<pid>/cgroup` and `/proc/self/mountinfo`, which of the two
//!   governs the container's devices and where its cgroup directory is.
//! - [`v1`] appends allow rules to `devices.allow`.
//! - On cgroup v2 more than one attached device program only ever *restricts*, so access is
//!   granted by *replacing* the runtime's program: [`crate::core::cgroup::rules`] rebuilds the full rule list the
//!   runtime put in its program (from config.json plus that runtime's implicit defaults, per
//!   [`crate::core::cgroup::defaults`]; the runtime is told by [`crate::host::runtime`], and
//!   when it is not known the defaults are those every known runtime adds), [`crate::core::cgroup::program`] turns a rule
//!   list into eBPF bytecode (pure), [`crate::sys::bpf`] holds every `bpf(2)` call, and [`v2`] attaches the
//!   new program and detaches the old ones (the window in between is the intersection).
//!
//! [`grant_devices`] ties it together for the hook.

pub mod v1;
pub mod v2;

use std::path::{Path, PathBuf};

pub use crate::core::cgroup::defaults::Runtime;
use crate::core::edits::DeviceRule;

pub use crate::core::cgroup::rules::{self, RulesError};
pub use crate::host::cgroup::{find_device_cgroup, DeviceCgroup, FindError};
pub use v1::V1Error;
pub use v2::Replaced;

/// An error granting devices to a container's cgroup.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error(transparent)]
    Find(#[from] FindError),
    #[error(transparent)]
    V1(#[from] V1Error),
    #[error(transparent)]
    Rules(#[from] RulesError),
    #[error(transparent)]
    Bpf(#[from] crate::sys::bpf::BpfError),
}

/// What [`grant_devices`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Granted {
    /// Rules appended to `<dir>/devices.allow`.
    V1 { dir: PathBuf, rules: usize },
    /// The device program of the cgroup v2 directory `dir` was replaced; `runtime` is whose
    /// implicit rules the new program carries.
    V2 {
        dir: PathBuf,
        runtime: Runtime,
        replaced: Replaced,
    },
}

/// The log's `cgroup` field: `v1 /sys/fs/cgroup/devices/c1: 6 rules appended`, `v2
/// /sys/fs/cgroup/c1: device program 42 replaced 41`.
impl std::fmt::Display for Granted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Granted::V1 { dir, rules } => {
                write!(f, "v1 {}: {rules} rules appended", dir.display())
            }
            Granted::V2 { dir, replaced, .. } => {
                let old: Vec<String> = replaced.old_ids.iter().map(u32::to_string).collect();
                let old = if old.is_empty() {
                    "none".into()
                } else {
                    old.join(",")
                };
                write!(
                    f,
                    "v2 {}: device program {} replaced {old}",
                    dir.display(),
                    replaced.prog_id
                )
            }
        }
    }
}

/// Grant `ours` (allow rules for exactly migcage's device nodes) to the container whose init
/// process is `pid`, on whichever cgroup version governs its devices.
///
/// `spec` is the bundle's config.json: on cgroup v2 the runtime's program is rebuilt from it (the
/// spec's `linux.resources.devices` plus `runtime`'s implicit defaults) with `ours` appended, and
/// replaces the runtime's program. On v1, `ours` is appended to `devices.allow` and `spec` is not
/// needed (the runtime's rules stay in place).
pub fn grant_devices(
    proc_root: &Path,
    pid: u32,
    spec: &serde_json::Value,
    runtime: Runtime,
    ours: &[DeviceRule],
) -> Result<Granted, CgroupError> {
    grant_devices_at(find_device_cgroup(proc_root, pid)?, spec, runtime, ours)
}

/// [`grant_devices`] on a device cgroup already found (by the hook's check of the container's
/// process, which reads the same files).
pub fn grant_devices_at(
    cgroup: DeviceCgroup,
    spec: &serde_json::Value,
    runtime: Runtime,
    ours: &[DeviceRule],
) -> Result<Granted, CgroupError> {
    match cgroup {
        DeviceCgroup::V1(dir) => {
            v1::allow_devices(&dir, ours)?;
            Ok(Granted::V1 {
                dir,
                rules: ours.len(),
            })
        }
        DeviceCgroup::V2(dir) => {
            let full = rules::effective_rules_for_with(spec, runtime, ours)?;
            let replaced = v2::replace_device_program(&dir, &full)?;
            Ok(Granted::V2 {
                dir,
                runtime,
                replaced,
            })
        }
    }
}
