//! Leases: which running container holds which MIG instance, so that a request by profile
//! (`NVIDIA_VISIBLE_DEVICES=profile:1g.5gb`) gets an instance nobody else is using.
//!
//! # The store
//!
//! One JSON file, `<state_dir>/leases/leases.json`, next to a lock file `<state_dir>/leases/lock`.
//! `state_dir` is `/run/migcage` by default: a tmpfs, so a reboot frees every lease. There is no
//! daemon: every migcage that changes the file holds an exclusive `flock` on the lock file from
//! reading the file to writing it back (read, choose, write), and writes it atomically (a temp file
//! renamed over it). Readers that change nothing (`migcage list`, `explain`) read without the
//! lock: a rename never shows them half a file.
//!
//! # A lease
//!
//! Each lease names the MIG instance (UUID), the container (its id), the container's init process
//! as the host sees it (pid and start time, field 22 of `/proc/<pid>/stat`), when it was taken, and
//! what the container asked for. It ends when:
//! - the `poststop` hook runs for the container (`migcage hook poststop`, on `runc delete`), or an
//!   operator runs `migcage release <container-id>`; or
//! - the next allocation finds it **stale**: the pid is gone, is a zombie, or now belongs to a
//!   process with another start time (pid reuse). A container killed without its poststop hook
//!   (SIGKILL of the runtime, Docker's `--gpus`, which registers no poststop) therefore frees its
//!   instance as soon as its init is gone.
//!
//! A container's id names its leases: the hook run again at a later stage (prestart, then
//! createContainer) for the same container gets the same instances back, and the lease follows
//! the new holder process it names (so a runtime wrapper can lease at `create` under its own pid
//! and the container's first hook hands the lease to the container's init).
//!
//! # Choosing
//!
//! Which instances a request gets is pure and lives in [`crate::core::plan::allocate`]; this
//! module holds what touches the host: the store ([`Store`]) and whether a holder still runs
//! ([`partition_live`]).

mod process;
mod store;

use std::io;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use crate::core::plan::allocate::{format_time, Holder, Lease, LeaseKind};
pub use process::{is_live, parse_stat, partition_live, read_stat, ProcStat};
pub use store::{Locked, State, Store};

/// The directory under `state_dir` that holds the store.
pub const LEASE_DIR: &str = "leases";
/// The lease file in [`LEASE_DIR`].
pub const LEASE_FILE: &str = "leases.json";
/// The lock file in [`LEASE_DIR`].
pub const LOCK_FILE: &str = "lock";
/// The version of the lease file's format.
pub const FORMAT_VERSION: u32 = 1;
/// How long an allocation waits for another migcage's lock before it gives up.
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(10);
/// Process information always comes from the real procfs (`proc_root` only redirects the
/// driver's files).
pub const PROCESS_PROC: &str = "/proc";

/// Why the lease store could not be read or changed, or a holder's process not be read. One
/// line each.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("container {container}: the runtime passed no pid, so migcage cannot tell when the container is gone; run migcage as a prestart, createRuntime or createContainer hook")]
    NoProcess { container: String },
    #[error("container {container}: cannot read {path}: {error}; its process is gone, or migcage does not run in the host's pid namespace")]
    Process {
        container: String,
        path: PathBuf,
        /// Not `source`: the message already says it, and a source would print it twice.
        error: io::Error,
    },
    #[error("cannot {what} {path}: {error}; check state_dir in the migcage config and that migcage runs as root")]
    Io {
        what: &'static str,
        path: PathBuf,
        /// Not `source`: the message already says it, and a source would print it twice.
        error: io::Error,
    },
    #[error("lease file {path} is not valid ({message}); restore it, or remove it to forget every lease (running containers keep their devices, but their instances may then be given again)")]
    Corrupt { path: PathBuf, message: String },
    #[error("lease store {path} stayed locked by another migcage for {secs} s; a migcage process is stuck holding it (find it with: fuser {path})")]
    LockTimeout { path: PathBuf, secs: f64 },
}

/// The time now, in seconds since the epoch.
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
