//! [`LinuxNs`]: the real calls behind [`NsSyscall`], with the only `fork` in migcage.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt;

use nix::errno::Errno;
use nix::sched::{setns, CloneFlags};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, pipe, ForkResult};

use super::{Child, NsError, NsSyscall, Place};

/// The kernel's calls.
#[derive(Debug, Clone, Copy, Default)]
pub struct LinuxNs;

impl NsSyscall for LinuxNs {
    fn ns_identity(&self, path: &str) -> std::io::Result<(u64, u64)> {
        let m = std::fs::metadata(path)?;
        Ok((m.dev(), m.ino()))
    }

    fn open_ns(&self, path: &str) -> std::io::Result<OwnedFd> {
        Ok(std::fs::File::open(path)?.into())
    }

    fn setns_mount(&self, ns: BorrowedFd<'_>) -> Result<(), Errno> {
        setns(ns, CloneFlags::CLONE_NEWNS)
    }

    fn save_place(&self) -> std::io::Result<Place> {
        let dir = |path: &str| -> std::io::Result<OwnedFd> {
            use std::os::unix::fs::OpenOptionsExt;
            Ok(std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
                .open(path)?
                .into())
        };
        Ok(Place {
            ns: std::fs::File::open("/proc/self/ns/mnt")?.into(),
            root: dir("/")?,
            cwd: dir(".").ok(),
        })
    }

    fn return_to(&self, place: Place) {
        let back = || -> Result<(), Errno> {
            setns(&place.ns, CloneFlags::CLONE_NEWNS)?;
            nix::unistd::fchdir(place.root.as_raw_fd())?;
            nix::unistd::chroot(".")?;
            nix::unistd::fchdir(place.cwd.as_ref().unwrap_or(&place.root).as_raw_fd())
        };
        if let Err(e) = back() {
            eprintln!(
                "migcage: cannot return to the hook's own mount namespace after the container's: {e}; \
                 stopping here, the container must not start (report this as a bug)"
            );
            // SAFETY: `_exit` ends the process at once: nothing more may run in a namespace
            // that is not the host's.
            unsafe { libc::_exit(1) }
        }
    }

    fn fork_run(&self, child: Child<'_>) -> Result<(WaitStatus, String), NsError> {
        let (rd, wr) = pipe().map_err(NsError::Fork)?;
        // SAFETY: the child only enters a namespace, runs the work (plain syscalls and
        // allocation, which glibc keeps fork-safe) and leaves with `_exit`, never returning into
        // the parent's code.
        match unsafe { fork() }.map_err(NsError::Fork)? {
            ForkResult::Child => {
                drop(rd);
                let (code, report) = child();
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
                Ok((status, report))
            }
        }
    }
}
