//! Running a piece of work inside a container's mount namespace.
//!
//! `setns(CLONE_NEWNS)` refuses a multi-threaded caller and would change the whole process, so the
//! work runs in a forked child that enters the namespace, does it, and reports an error string
//! back through a pipe. This file holds the only `fork` in migcage.

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::panic::AssertUnwindSafe;

use nix::sched::{setns, CloneFlags};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, pipe, ForkResult};
use serde::de::DeserializeOwned;
use serde::Serialize;

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

/// Is `pid` in another mount namespace than this process? (Then the work needs `setns`.)
fn other_namespace(pid: i32) -> Result<bool, NsError> {
    let path = format!("/proc/{pid}/ns/mnt");
    let theirs = std::fs::metadata(&path).map_err(|source| NsError::Open {
        pid,
        path: path.clone(),
        source,
    })?;
    let ours = std::fs::metadata("/proc/self/ns/mnt").map_err(|source| NsError::Open {
        pid: std::process::id() as i32,
        path: "/proc/self/ns/mnt".into(),
        source,
    })?;
    Ok((theirs.dev(), theirs.ino()) != (ours.dev(), ours.ino()))
}

/// Run `work` in the mount namespace of process `pid` (in this process when it already is there)
/// and return its result. From a child, the result comes back as JSON through a pipe: `O` and the
/// value, or `E` and the error message.
pub fn in_mount_namespace<T: Serialize + DeserializeOwned>(
    pid: i32,
    work: impl FnOnce() -> Result<T, String>,
) -> Result<T, NsError> {
    if !other_namespace(pid)? {
        return work().map_err(NsError::Work);
    }
    let path = format!("/proc/{pid}/ns/mnt");
    let ns: OwnedFd = std::fs::File::open(&path)
        .map_err(|source| NsError::Open { pid, path, source })?
        .into();
    let (rd, wr) = pipe().map_err(NsError::Fork)?;
    // SAFETY: the child only enters a namespace, runs `work` (plain syscalls and allocation, which
    // glibc keeps fork-safe) and leaves with `_exit`, never returning into the parent's code.
    match unsafe { fork() }.map_err(NsError::Fork)? {
        ForkResult::Child => {
            drop(rd);
            let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
                setns(ns.as_fd(), CloneFlags::CLONE_NEWNS)
                    .map_err(|e| format!("cannot enter the container's mount namespace: {e}"))?;
                work()
            }));
            let (code, report) = match result {
                Ok(Ok(value)) => match serde_json::to_string(&value) {
                    Ok(json) => (0, format!("O{json}")),
                    Err(e) => (1, format!("Einternal error: cannot encode the result: {e}")),
                },
                Ok(Err(m)) => (1, format!("E{m}")),
                Err(_) => (
                    1,
                    "Einternal error: the namespace helper panicked".to_string(),
                ),
            };
            let mut w = std::fs::File::from(wr);
            let _ = w.write_all(report.as_bytes());
            drop(w);
            // SAFETY: `_exit` ends the child without running the parent's atexit handlers or
            // destructors, which belong to the parent.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => {
            drop(wr);
            let mut report = String::new();
            let _ = std::fs::File::from(rd).read_to_string(&mut report);
            let status = waitpid(child, None).map_err(|e| NsError::Died(e.to_string()))?;
            match (status, report.split_at_checked(1)) {
                (WaitStatus::Exited(_, 0), Some(("O", json))) => serde_json::from_str(json)
                    .map_err(|e| NsError::Died(format!("unreadable report: {e}"))),
                (WaitStatus::Exited(_, _), Some(("E", message))) => {
                    Err(NsError::Work(message.to_string()))
                }
                (other, _) => Err(NsError::Died(format!("{other:?}"))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_namespace_runs_inline() {
        let me = std::process::id() as i32;
        let mut ran = false;
        in_mount_namespace(me, || {
            ran = true;
            Ok(())
        })
        .unwrap();
        assert!(ran);
        let e = in_mount_namespace::<()>(me, || Err("no good".into())).unwrap_err();
        assert_eq!(e.to_string(), "no good");
    }

    #[test]
    fn missing_process_is_a_clear_error() {
        let e = in_mount_namespace(i32::MAX - 7, || Ok(()))
            .unwrap_err()
            .to_string();
        let _: &str = &e;
        assert!(e.contains("did the container exit"), "{e}");
    }

    #[test]
    fn other_namespace_work_runs_in_a_child_and_reports_back() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!(
                "SKIP other_namespace_work_runs_in_a_child_and_reports_back: needs root (unshare)"
            );
            return;
        }
        // A process in a private mount namespace with a tmpfs only it can see.
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c"])
            .arg(format!(
                "mount -t tmpfs none {0} && touch {0}/only-here && sleep 30",
                dir.path().display()
            ))
            .spawn()
            .unwrap();
        let marker = dir.path().join("only-here");
        let pid = child.id() as i32;
        // Wait for the namespace to be set up (the unshare'd sh is the same pid after exec).
        for _ in 0..200 {
            if other_namespace(pid).unwrap_or(false) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(
            !marker.exists(),
            "the marker is only visible inside the namespace"
        );
        let m = marker.clone();
        let seen = in_mount_namespace(pid, move || {
            if m.exists() {
                Ok(42u32)
            } else {
                Err("marker not seen".into())
            }
        });
        let failing = in_mount_namespace::<u32>(pid, || Err("work failed inside".into()));
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(seen.unwrap(), 42);
        assert_eq!(failing.unwrap_err().to_string(), "work failed inside");
    }
}
