//! [`RecordingBpf`]: a double of [`BpfSyscall`] for unit tests. It keeps a small model of the
//! kernel's device programs per cgroup, records every call (with its outcome) and fails the calls
//! a test names with the errno it names. No root, no bpf(2).

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use super::{Attached, BpfSyscall, BPF_F_ALLOW_MULTI, BPF_F_REPLACE};
use crate::sys::double::{Handles, Recorder};

/// One call the code under test made, with its arguments as the double understood them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BpfCall {
    OpenCgroup(PathBuf),
    /// `BPF_PROG_LOAD`; `log` when a verifier log buffer was given.
    ProgLoad {
        log: bool,
    },
    ProgQuery(PathBuf),
    ProgFdById(u32),
    ProgId(u32),
    Attach {
        cgroup: PathBuf,
        prog: u32,
        flags: u32,
        replace: Option<u32>,
    },
    Detach {
        cgroup: PathBuf,
        prog: u32,
    },
}

/// What an fd handed out by the double stands for.
#[derive(Debug, Clone)]
enum Object {
    Cgroup(PathBuf),
    Prog(u32),
}

#[derive(Default)]
struct State {
    cgroups: HashMap<PathBuf, Attached>,
    /// Each cgroup's attached ids, after every change.
    history: HashMap<PathBuf, Vec<Vec<u32>>>,
    known: Vec<u32>,
    next_id: u32,
    detached_meanwhile: Vec<u32>,
}

/// The recording double of [`BpfSyscall`].
pub struct RecordingBpf {
    state: RefCell<State>,
    rec: RefCell<Recorder<BpfCall, i32>>,
    fds: Handles<Object>,
}

impl Default for RecordingBpf {
    fn default() -> Self {
        Self::new()
    }
}

fn errno(e: i32) -> io::Error {
    io::Error::from_raw_os_error(e)
}

impl RecordingBpf {
    /// No cgroup has a program; loaded programs get ids from 100 up.
    pub fn new() -> RecordingBpf {
        RecordingBpf {
            state: RefCell::new(State {
                next_id: 100,
                ..State::default()
            }),
            rec: RefCell::default(),
            fds: Handles::default(),
        }
    }

    /// `cgroup` starts with programs `ids` attached with `flags` (the runtime's).
    pub fn with_attached(self, cgroup: &Path, flags: u32, ids: &[u32]) -> RecordingBpf {
        {
            let mut s = self.state.borrow_mut();
            s.known.extend_from_slice(ids);
            s.cgroups.insert(
                cgroup.to_path_buf(),
                Attached {
                    flags,
                    ids: ids.to_vec(),
                },
            );
            s.history.insert(cgroup.to_path_buf(), vec![ids.to_vec()]);
        }
        self
    }

    /// Every call `when` matches fails with `errno` (and changes nothing).
    pub fn fail(self, errno: i32, when: impl Fn(&BpfCall) -> bool + 'static) -> RecordingBpf {
        self.rec.borrow_mut().fail(errno, when);
        self
    }

    /// Program `id` is detached by another process just before ours tries to.
    pub fn detached_meanwhile(self, id: u32) -> RecordingBpf {
        self.state.borrow_mut().detached_meanwhile.push(id);
        self
    }

    /// Every call made, in order, failed ones included.
    pub fn calls(&self) -> Vec<BpfCall> {
        self.rec.borrow().calls()
    }

    /// Every call made with its outcome (`Err(errno)` for the failed ones).
    pub fn log(&self) -> Vec<(BpfCall, Result<(), i32>)> {
        self.rec.borrow().log()
    }

    /// The programs attached to `cgroup` now.
    pub fn attached(&self, cgroup: &Path) -> Vec<u32> {
        let s = self.state.borrow();
        s.cgroups
            .get(cgroup)
            .map(|a| a.ids.clone())
            .unwrap_or_default()
    }

    /// The programs attached to `cgroup` at the start and after every change, in order.
    pub fn history(&self, cgroup: &Path) -> Vec<Vec<u32>> {
        let s = self.state.borrow();
        s.history.get(cgroup).cloned().unwrap_or_default()
    }

    fn cgroup_of(&self, fd: BorrowedFd<'_>) -> PathBuf {
        match self.fds.get(fd) {
            Object::Cgroup(p) => p,
            other => panic!("not a cgroup fd: {other:?}"),
        }
    }

    fn prog_of(&self, fd: BorrowedFd<'_>) -> u32 {
        match self.fds.get(fd) {
            Object::Prog(id) => id,
            other => panic!("not a program fd: {other:?}"),
        }
    }

    /// Record `call`; fail it when a fault matches, else run `op` on the model.
    fn call<T>(
        &self,
        call: BpfCall,
        op: impl FnOnce(&mut State) -> Result<T, i32>,
    ) -> io::Result<T> {
        self.rec
            .borrow_mut()
            .run(call, || op(&mut self.state.borrow_mut()))
            .map_err(errno)
    }
}

impl State {
    fn changed(&mut self, cgroup: &Path) {
        let ids = self
            .cgroups
            .get(cgroup)
            .map(|a| a.ids.clone())
            .unwrap_or_default();
        self.history
            .entry(cgroup.to_path_buf())
            .or_default()
            .push(ids);
    }

    /// The kernel's rules for `BPF_PROG_ATTACH` of device programs, as far as migcage needs.
    fn attach(
        &mut self,
        cgroup: &Path,
        prog: u32,
        flags: u32,
        replace: Option<u32>,
    ) -> Result<(), i32> {
        let cg = self
            .cgroups
            .entry(cgroup.to_path_buf())
            .or_insert(Attached {
                flags: 0,
                ids: vec![],
            });
        let flags_kept = flags & !BPF_F_REPLACE;
        if cg.ids.is_empty() {
            cg.flags = flags_kept;
            cg.ids = vec![prog];
        } else if cg.flags != flags_kept {
            return Err(libc::EPERM);
        } else if cg.flags & BPF_F_ALLOW_MULTI == 0 {
            cg.ids = vec![prog];
        } else if cg.ids.contains(&prog) {
            return Err(libc::EEXIST);
        } else if flags & BPF_F_REPLACE != 0 {
            let old = replace.ok_or(libc::EINVAL)?;
            let slot = cg
                .ids
                .iter_mut()
                .find(|id| **id == old)
                .ok_or(libc::ENOENT)?;
            *slot = prog;
        } else {
            cg.ids.push(prog);
        }
        self.changed(cgroup);
        Ok(())
    }

    fn detach(&mut self, cgroup: &Path, prog: u32) -> Result<(), i32> {
        if let Some(i) = self.detached_meanwhile.iter().position(|&id| id == prog) {
            self.detached_meanwhile.remove(i);
            self.remove(cgroup, prog);
        }
        if self.remove(cgroup, prog) {
            Ok(())
        } else {
            Err(libc::ENOENT)
        }
    }

    fn remove(&mut self, cgroup: &Path, prog: u32) -> bool {
        let Some(cg) = self.cgroups.get_mut(cgroup) else {
            return false;
        };
        let Some(i) = cg.ids.iter().position(|&id| id == prog) else {
            return false;
        };
        cg.ids.remove(i);
        if cg.ids.is_empty() {
            cg.flags = 0;
        }
        self.changed(cgroup);
        true
    }
}

impl BpfSyscall for RecordingBpf {
    fn open_cgroup(&self, path: &Path) -> io::Result<OwnedFd> {
        self.call(BpfCall::OpenCgroup(path.to_path_buf()), |_| Ok(()))?;
        Ok(self.fds.hand_out(Object::Cgroup(path.to_path_buf())))
    }

    fn prog_load(&self, _insns: &[u8], _count: u32, log: Option<&mut [u8]>) -> io::Result<OwnedFd> {
        let id = self.call(BpfCall::ProgLoad { log: log.is_some() }, |s| {
            let id = s.next_id;
            s.next_id += 1;
            s.known.push(id);
            Ok(id)
        })?;
        Ok(self.fds.hand_out(Object::Prog(id)))
    }

    fn prog_query(&self, cgroup: BorrowedFd<'_>) -> io::Result<Attached> {
        let path = self.cgroup_of(cgroup);
        self.call(BpfCall::ProgQuery(path.clone()), |s| {
            Ok(s.cgroups.get(&path).cloned().unwrap_or(Attached {
                flags: 0,
                ids: vec![],
            }))
        })
    }

    fn prog_fd_by_id(&self, id: u32) -> io::Result<OwnedFd> {
        self.call(BpfCall::ProgFdById(id), |s| {
            if s.known.contains(&id) {
                Ok(())
            } else {
                Err(libc::ENOENT)
            }
        })?;
        Ok(self.fds.hand_out(Object::Prog(id)))
    }

    fn prog_id(&self, prog: BorrowedFd<'_>) -> io::Result<u32> {
        let id = self.prog_of(prog);
        self.call(BpfCall::ProgId(id), |_| Ok(id))
    }

    fn prog_attach(
        &self,
        cgroup: BorrowedFd<'_>,
        prog: BorrowedFd<'_>,
        flags: u32,
        replace: Option<BorrowedFd<'_>>,
    ) -> io::Result<()> {
        let (path, id) = (self.cgroup_of(cgroup), self.prog_of(prog));
        let replace = replace.map(|fd| self.prog_of(fd));
        let call = BpfCall::Attach {
            cgroup: path.clone(),
            prog: id,
            flags,
            replace,
        };
        self.call(call, |s| s.attach(&path, id, flags, replace))
    }

    fn prog_detach(&self, cgroup: BorrowedFd<'_>, prog: BorrowedFd<'_>) -> io::Result<()> {
        let (path, id) = (self.cgroup_of(cgroup), self.prog_of(prog));
        let call = BpfCall::Detach {
            cgroup: path.clone(),
            prog: id,
        };
        self.call(call, |s| s.detach(&path, id))
    }
}
