//! [`RecordingNs`]: a double of [`NsSyscall`] for unit tests. It records every call, fails the
//! ones a test names, and runs the child's part of a fork inline, in the test process. It stands
//! for a single-threaded process (setns in place) unless [`RecordingNs::threaded`].

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::os::fd::{BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::sys::wait::WaitStatus;
use nix::unistd::Pid;

use super::{Child, NsError, NsSyscall, Place};
use crate::sys::double::{Handles, Recorder};

/// One call the code under test made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NsCall {
    NsIdentity(String),
    OpenNs(String),
    /// `setns` of the namespace file opened at this path.
    SetnsMount(String),
    SavePlace,
    /// Back to the namespace, root and working directory saved.
    ReturnTo,
    Fork,
}

/// The recording double of [`NsSyscall`].
#[derive(Default)]
pub struct RecordingNs {
    /// Namespace identities by path; a path not here has the identity (1, 1).
    ids: HashMap<String, (u64, u64)>,
    killed: Option<Signal>,
    threaded: bool,
    in_child: Cell<bool>,
    rec: RefCell<Recorder<NsCall, Errno>>,
    fds: Handles<String>,
}

impl RecordingNs {
    pub fn new() -> RecordingNs {
        RecordingNs::default()
    }

    /// Process `pid` is in a mount namespace of its own.
    pub fn elsewhere(mut self, pid: i32) -> RecordingNs {
        self.ids.insert(format!("/proc/{pid}/ns/mnt"), (1, 2));
        self
    }

    /// Every call `when` matches fails with `errno`.
    pub fn fail(self, errno: Errno, when: impl Fn(&NsCall) -> bool + 'static) -> RecordingNs {
        self.rec.borrow_mut().fail(errno, when);
        self
    }

    /// The process has threads: `setns` refuses it (EINVAL) outside a forked child.
    pub fn threaded(mut self) -> RecordingNs {
        self.threaded = true;
        self
    }

    /// The forked child is killed by `signal` before it does anything.
    pub fn child_killed(mut self, signal: Signal) -> RecordingNs {
        self.killed = Some(signal);
        self
    }

    /// Every call made, in order, failed ones included.
    pub fn calls(&self) -> Vec<NsCall> {
        self.rec.borrow().calls()
    }
}

impl NsSyscall for RecordingNs {
    fn ns_identity(&self, path: &str) -> std::io::Result<(u64, u64)> {
        let id = self.ids.get(path).copied().unwrap_or((1, 1));
        let call = NsCall::NsIdentity(path.to_string());
        Ok(self.rec.borrow_mut().run(call, || Ok(id))?)
    }

    fn open_ns(&self, path: &str) -> std::io::Result<OwnedFd> {
        self.rec
            .borrow_mut()
            .run(NsCall::OpenNs(path.to_string()), || Ok(()))?;
        Ok(self.fds.hand_out(path.to_string()))
    }

    fn setns_mount(&self, ns: BorrowedFd<'_>) -> Result<(), Errno> {
        let call = NsCall::SetnsMount(self.fds.get(ns));
        let threaded = self.threaded && !self.in_child.get();
        self.rec
            .borrow_mut()
            .run(call, || if threaded { Err(Errno::EINVAL) } else { Ok(()) })
    }

    fn save_place(&self) -> std::io::Result<Place> {
        self.rec.borrow_mut().run(NsCall::SavePlace, || Ok(()))?;
        Ok(Place {
            ns: self.fds.hand_out("/proc/self/ns/mnt".into()),
            root: self.fds.hand_out("/".into()),
            cwd: Some(self.fds.hand_out(".".into())),
        })
    }

    fn return_to(&self, _place: Place) {
        let _ = self.rec.borrow_mut().run(NsCall::ReturnTo, || Ok(()));
    }

    fn fork_run(&self, child: Child<'_>) -> Result<(WaitStatus, String), NsError> {
        self.rec
            .borrow_mut()
            .run(NsCall::Fork, || Ok(()))
            .map_err(NsError::Fork)?;
        let pid = Pid::from_raw(4242);
        if let Some(signal) = self.killed {
            return Ok((WaitStatus::Signaled(pid, signal, false), String::new()));
        }
        self.in_child.set(true);
        let (code, report) = child();
        self.in_child.set(false);
        Ok((WaitStatus::Exited(pid, code), report))
    }
}
