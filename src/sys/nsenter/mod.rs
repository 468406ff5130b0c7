//! Running a piece of work inside a container's mount namespace.
//!
//! A single-threaded process (the hook) enters the namespace itself, does the work and returns to
//! where it was (its own mount namespace, root and working directory): no fork, no copy of its
//! memory, no child to wait for. `setns(CLONE_NEWNS)` refuses a multi-threaded caller (EINVAL: a
//! thread left blocked in NVML, or the test harness), and then the work runs in a forked child
//! that enters the namespace, does it, and reports back through a pipe. `linux.rs` holds the
//! only `fork` in migcage, behind [`NsSyscall`]; the recording double in `test.rs` (unit tests
//! only) runs the child's part inline instead.

mod linux;
#[cfg(test)]
pub mod test;
#[cfg(test)]
mod tests;

use std::os::fd::{BorrowedFd, OwnedFd};
use std::panic::AssertUnwindSafe;

use nix::errno::Errno;
use nix::sys::wait::WaitStatus;
use serde::de::DeserializeOwned;
use serde::Serialize;

pub use linux::LinuxNs;

/// An error entering the namespace or doing the work there.
#[derive(Debug, thiserror::Error)]
pub enum NsError {
    #[error("cannot open the mount namespace of container process {pid} ({path}): {source}; did the container exit?")]
    Open {
        pid: i32,
        path: String,
        source: std::io::Error,
    },
    #[error("cannot fork to enter the container's mount namespace: {0}")]
    Fork(nix::errno::Errno),
    /// The work failed; the message is the work's own.
    #[error("{0}")]
    Work(String),
    #[error("the helper that entered the container's mount namespace died: {0}")]
    Died(String),
}

/// Where this process is before it enters another mount namespace: its own namespace, root and
/// working directory, as open files ([`NsSyscall::save_place`], [`NsSyscall::return_to`]).
pub struct Place {
    pub ns: OwnedFd,
    pub root: OwnedFd,
    /// None when the working directory cannot be opened (removed): it becomes the root.
    pub cwd: Option<OwnedFd>,
}

/// The child's part of a fork: it returns the exit code and the report to send back.
pub type Child<'a> = Box<dyn FnOnce() -> (i32, String) + 'a>;

/// The raw calls of entering a mount namespace.
pub trait NsSyscall {
    /// The identity (`st_dev`, `st_ino`) of the namespace file at `path`.
    fn ns_identity(&self, path: &str) -> std::io::Result<(u64, u64)>;
    /// Open the namespace file at `path`.
    fn open_ns(&self, path: &str) -> std::io::Result<OwnedFd>;
    /// `setns(ns, CLONE_NEWNS)`.
    fn setns_mount(&self, ns: BorrowedFd<'_>) -> Result<(), Errno>;
    /// Open what [`NsSyscall::return_to`] needs to come back to where this process is now.
    fn save_place(&self) -> std::io::Result<Place>;
    /// Come back to `place` (`setns` to its namespace, then its root and working directory). A
    /// process that cannot come back would go on with the host's work inside a container, so
    /// the real call ends the process (one line, exit 1) when that fails: it does not return.
    fn return_to(&self, place: Place);
    /// Make a pipe, fork, run `child` in the child and leave with its code (`_exit`), sending
    /// its report through the pipe; in the parent, read the report and wait for the child.
    /// Errors: [`NsError::Fork`] for the pipe or the fork, [`NsError::Died`] for the wait.
    fn fork_run(&self, child: Child<'_>) -> Result<(WaitStatus, String), NsError>;
}

/// Is `pid` in another mount namespace than this process? (Then the work needs `setns`.)
fn other_namespace(sys: &dyn NsSyscall, pid: i32) -> Result<bool, NsError> {
    let path = format!("/proc/{pid}/ns/mnt");
    let theirs = sys.ns_identity(&path).map_err(|source| NsError::Open {
        pid,
        path: path.clone(),
        source,
    })?;
    let ours = sys
        .ns_identity("/proc/self/ns/mnt")
        .map_err(|source| NsError::Open {
            pid: std::process::id() as i32,
            path: "/proc/self/ns/mnt".into(),
            source,
        })?;
    Ok(theirs != ours)
}

/// Run `work` in the mount namespace of process `pid` (in this process when it already is there)
/// and return its result. From a child, the result comes back as JSON through a pipe: `O` and the
/// value, or `E` and the error message.
pub fn in_mount_namespace<T: Serialize + DeserializeOwned>(
    pid: i32,
    work: impl FnOnce() -> Result<T, String>,
) -> Result<T, NsError> {
    in_mount_namespace_on(&LinuxNs, pid, work)
}

/// [`in_mount_namespace`] through `sys` (the kernel's calls, or the recording double).
pub fn in_mount_namespace_on<T: Serialize + DeserializeOwned>(
    sys: &dyn NsSyscall,
    pid: i32,
    work: impl FnOnce() -> Result<T, String>,
) -> Result<T, NsError> {
    if !other_namespace(sys, pid)? {
        return work().map_err(NsError::Work);
    }
    let path = format!("/proc/{pid}/ns/mnt");
    let ns = sys
        .open_ns(&path)
        .map_err(|source| NsError::Open { pid, path, source })?;
    let refused = |e: Errno| format!("cannot enter the container's mount namespace: {e}");
    let enter = || sys.setns_mount(std::os::fd::AsFd::as_fd(&ns));
    // In this process, unless it has threads (EINVAL): no fork.
    if let Ok(place) = sys.save_place() {
        match enter() {
            Err(Errno::EINVAL) => {}
            Err(e) => return Err(NsError::Work(refused(e))),
            Ok(()) => {
                let result = std::panic::catch_unwind(AssertUnwindSafe(work));
                sys.return_to(place);
                return match result {
                    Ok(done) => done.map_err(NsError::Work),
                    Err(panic) => std::panic::resume_unwind(panic),
                };
            }
        }
    }
    let child: Child<'_> = Box::new(|| {
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
            enter().map_err(refused)?;
            work()
        }));
        match result {
            Ok(Ok(value)) => match serde_json::to_string(&value) {
                Ok(json) => (0, format!("O{json}")),
                Err(e) => (1, format!("Einternal error: cannot encode the result: {e}")),
            },
            Ok(Err(m)) => (1, format!("E{m}")),
            Err(_) => (
                1,
                "Einternal error: the namespace helper panicked".to_string(),
            ),
        }
    });
    let (status, report) = sys.fork_run(child)?;
    match (status, report.split_at_checked(1)) {
        (WaitStatus::Exited(_, 0), Some(("O", json))) => {
            serde_json::from_str(json).map_err(|e| NsError::Died(format!("unreadable report: {e}")))
        }
        (WaitStatus::Exited(_, _), Some(("E", message))) => Err(NsError::Work(message.to_string())),
        (other, _) => Err(NsError::Died(format!("{other:?}"))),
    }
}
