//! Every `bpf(2)` call migcage makes, for cgroup device programs. Nothing else in migcage calls
//! bpf(2).
//!
//! Programs are attached with `BPF_PROG_ATTACH` (they stay attached when migcage exits), never
//! through a bpf_link (which dies with the process that holds it). RLIMIT_MEMLOCK is never raised:
//! since Linux 5.11 eBPF memory is charged to the memory cgroup; before, a load that fails with
//! EPERM says so in its error.
//!
//! The raw calls are behind [`BpfSyscall`]: [`LinuxBpf`] makes them, the recording double in
//! `test.rs` (unit tests only) records them and fails the ones a test names. [`Bpf`] turns their
//! errnos into [`BpfError`]s that name the cgroup, the same for both.

mod linux;
#[cfg(test)]
pub mod test;

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use crate::core::cgroup::program::{to_bytes, Insn};

pub use linux::LinuxBpf;

/// `BPF_CGROUP_DEVICE`, the attach type of device programs.
pub const BPF_CGROUP_DEVICE: u32 = 6;

/// `BPF_F_ALLOW_OVERRIDE`
pub const BPF_F_ALLOW_OVERRIDE: u32 = 1;
/// `BPF_F_ALLOW_MULTI`
pub const BPF_F_ALLOW_MULTI: u32 = 2;
/// `BPF_F_REPLACE` (Linux 5.5+)
pub const BPF_F_REPLACE: u32 = 4;

/// A failed bpf(2) call; each carries the cgroup it was for and the errno.
#[derive(Debug, thiserror::Error)]
pub enum BpfError {
    #[error("cannot open cgroup directory {path}: {source}")]
    OpenCgroup { path: PathBuf, source: io::Error },
    #[error("bpf({op}) for cgroup {path}: {source}{hint}")]
    Syscall {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
        /// What to do, where the errno says more than itself (EPERM: see [`refused_hint`]).
        hint: &'static str,
    },
    #[error("loading the device program for cgroup {path}: {source}{detail}")]
    Load {
        path: PathBuf,
        source: io::Error,
        detail: String,
    },
    #[error("cgroup {path}: after the replacement the attached device programs are {attached:?}, expected only ours ({ours})")]
    NotReplaced {
        path: PathBuf,
        ours: u32,
        attached: Vec<u32>,
    },
}

impl BpfError {
    /// The errno of the failed call, when there was one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            BpfError::OpenCgroup { source, .. }
            | BpfError::Syscall { source, .. }
            | BpfError::Load { source, .. } => source.raw_os_error(),
            BpfError::NotReplaced { .. } => None,
        }
    }
}

/// The device programs attached directly to a cgroup and the flags they were attached with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attached {
    /// `BPF_F_ALLOW_MULTI`, `BPF_F_ALLOW_OVERRIDE` or 0.
    pub flags: u32,
    pub ids: Vec<u32>,
}

/// The raw calls, one method per `bpf(2)` command migcage uses (plus the open of the cgroup
/// directory the attach calls target). Errors are the bare errno; retries the kernel asks for
/// (EINTR, EAGAIN from the verifier, ENOSPC from a query's short buffer) happen inside.
pub trait BpfSyscall {
    /// Open a cgroup directory (`O_DIRECTORY | O_CLOEXEC`).
    fn open_cgroup(&self, path: &Path) -> io::Result<OwnedFd>;
    /// `BPF_PROG_LOAD` of `count` instructions `insns` as a `BPF_PROG_TYPE_CGROUP_DEVICE`
    /// program, with the verifier's log in `log` when given.
    fn prog_load(&self, insns: &[u8], count: u32, log: Option<&mut [u8]>) -> io::Result<OwnedFd>;
    /// `BPF_PROG_QUERY` for the device programs attached directly to `cgroup`.
    fn prog_query(&self, cgroup: BorrowedFd<'_>) -> io::Result<Attached>;
    /// `BPF_PROG_GET_FD_BY_ID`.
    fn prog_fd_by_id(&self, id: u32) -> io::Result<OwnedFd>;
    /// `BPF_OBJ_GET_INFO_BY_FD`: the kernel's id of a loaded program.
    fn prog_id(&self, prog: BorrowedFd<'_>) -> io::Result<u32>;
    /// `BPF_PROG_ATTACH` with `BPF_CGROUP_DEVICE`, `flags` and, for `BPF_F_REPLACE`, the
    /// program to replace.
    fn prog_attach(
        &self,
        cgroup: BorrowedFd<'_>,
        prog: BorrowedFd<'_>,
        flags: u32,
        replace: Option<BorrowedFd<'_>>,
    ) -> io::Result<()>;
    /// `BPF_PROG_DETACH` of one device program.
    fn prog_detach(&self, cgroup: BorrowedFd<'_>, prog: BorrowedFd<'_>) -> io::Result<()>;
}

/// The operations of [`BpfSyscall`] with errors that say which cgroup and which call.
#[derive(Clone, Copy)]
pub struct Bpf<'s> {
    sys: &'s dyn BpfSyscall,
}

impl Bpf<'static> {
    /// The kernel's bpf(2).
    pub fn linux() -> Bpf<'static> {
        Bpf { sys: &LinuxBpf }
    }
}

/// What an EPERM from the calls that read or change a cgroup's device programs means: the hook
/// lacks CAP_SYS_ADMIN in the host's user namespace (a nested container, a rootless runtime) or
/// an LSM refuses bpf(2). migcage then changes nothing: the container keeps the runtime's own
/// program, never one that allows everything, so its GPU nodes stay denied.
pub fn refused_hint(errno: Option<i32>) -> &'static str {
    if errno == Some(libc::EPERM) {
        " (the hook needs CAP_SYS_ADMIN in the host's user namespace and bpf(2) allowed by any LSM; in a nested container or a rootless runtime it has neither: the container keeps the runtime's device program and gets no GPU node; run the hook from the host's runtime, or use migcage's runtime mode)"
    } else {
        ""
    }
}

fn sys_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> BpfError + 'a {
    move |source| BpfError::Syscall {
        op,
        path: path.to_path_buf(),
        hint: refused_hint(source.raw_os_error()),
        source,
    }
}

impl<'s> Bpf<'s> {
    /// Over `sys` (the recording double in tests).
    pub fn new(sys: &'s dyn BpfSyscall) -> Bpf<'s> {
        Bpf { sys }
    }

    /// Open a cgroup directory for the attach calls.
    pub fn open_cgroup(&self, path: &Path) -> Result<OwnedFd, BpfError> {
        self.sys
            .open_cgroup(path)
            .map_err(|source| BpfError::OpenCgroup {
                path: path.to_path_buf(),
                source,
            })
    }

    /// Load a `BPF_PROG_TYPE_CGROUP_DEVICE` program; `cgroup` names the cgroup it is for in
    /// errors. On failure the verifier's log is in the error.
    pub fn load_device_program(&self, prog: &[Insn], cgroup: &Path) -> Result<OwnedFd, BpfError> {
        let bytes = to_bytes(prog);
        let count = u32::try_from(prog.len()).map_err(|_| BpfError::Load {
            path: cgroup.to_path_buf(),
            source: io::Error::from_raw_os_error(libc::E2BIG),
            detail: String::new(),
        })?;
        let source = match self.sys.prog_load(&bytes, count, None) {
            Ok(fd) => return Ok(fd),
            Err(e) => e,
        };
        let mut detail = String::new();
        if source.raw_os_error() == Some(libc::EPERM) {
            detail.push_str(
                " (needs CAP_SYS_ADMIN or CAP_BPF; before Linux 5.11 also RLIMIT_MEMLOCK room, which migcage does not raise)",
            );
        } else {
            let mut log = vec![0u8; 1 << 16];
            if let Err(e) = self.sys.prog_load(&bytes, count, Some(&mut log)) {
                let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
                let text = String::from_utf8_lossy(&log[..end]);
                let text = text.trim();
                if !text.is_empty() {
                    detail = format!("; verifier: {}", text.replace('\n', " | "));
                } else if e.raw_os_error() != source.raw_os_error() {
                    detail = format!("; with a log: {e}");
                }
            }
        }
        Err(BpfError::Load {
            path: cgroup.to_path_buf(),
            source,
            detail,
        })
    }

    /// `BPF_PROG_QUERY` for the device programs attached directly to `cgroup_fd`.
    pub fn query_device_programs(
        &self,
        cgroup_fd: BorrowedFd<'_>,
        cgroup: &Path,
    ) -> Result<Attached, BpfError> {
        self.sys
            .prog_query(cgroup_fd)
            .map_err(sys_err("BPF_PROG_QUERY", cgroup))
    }

    /// `BPF_PROG_GET_FD_BY_ID`.
    pub fn program_fd_by_id(&self, id: u32, cgroup: &Path) -> Result<OwnedFd, BpfError> {
        self.sys
            .prog_fd_by_id(id)
            .map_err(sys_err("BPF_PROG_GET_FD_BY_ID", cgroup))
    }

    /// The kernel's id of a loaded program (`BPF_OBJ_GET_INFO_BY_FD`).
    pub fn program_id(&self, prog: BorrowedFd<'_>, cgroup: &Path) -> Result<u32, BpfError> {
        self.sys
            .prog_id(prog)
            .map_err(sys_err("BPF_OBJ_GET_INFO_BY_FD", cgroup))
    }

    /// `BPF_PROG_ATTACH` of a device program with `flags`; with `replace`, `BPF_F_REPLACE`
    /// swaps that program for `prog` atomically (the caller includes `BPF_F_REPLACE` in
    /// `flags`).
    pub fn attach_device_program(
        &self,
        cgroup_fd: BorrowedFd<'_>,
        prog: BorrowedFd<'_>,
        flags: u32,
        replace: Option<BorrowedFd<'_>>,
        cgroup: &Path,
    ) -> Result<(), BpfError> {
        self.sys
            .prog_attach(cgroup_fd, prog, flags, replace)
            .map_err(sys_err("BPF_PROG_ATTACH", cgroup))
    }

    /// `BPF_PROG_DETACH` of one device program.
    pub fn detach_device_program(
        &self,
        cgroup_fd: BorrowedFd<'_>,
        prog: BorrowedFd<'_>,
        cgroup: &Path,
    ) -> Result<(), BpfError> {
        self.sys
            .prog_detach(cgroup_fd, prog)
            .map_err(sys_err("BPF_PROG_DETACH", cgroup))
    }
}

// The kernel's calls as free functions, for tests/cgroup.rs (which stands in for runc).

/// [`Bpf::open_cgroup`] on the kernel.
pub fn open_cgroup(path: &Path) -> Result<OwnedFd, BpfError> {
    Bpf::linux().open_cgroup(path)
}

/// [`Bpf::load_device_program`] on the kernel.
pub fn load_device_program(prog: &[Insn], cgroup: &Path) -> Result<OwnedFd, BpfError> {
    Bpf::linux().load_device_program(prog, cgroup)
}

/// [`Bpf::program_id`] on the kernel.
pub fn program_id(prog: BorrowedFd<'_>, cgroup: &Path) -> Result<u32, BpfError> {
    Bpf::linux().program_id(prog, cgroup)
}

/// [`Bpf::attach_device_program`] on the kernel.
pub fn attach_device_program(
    cgroup_fd: BorrowedFd<'_>,
    prog: BorrowedFd<'_>,
    flags: u32,
    replace: Option<BorrowedFd<'_>>,
    cgroup: &Path,
) -> Result<(), BpfError> {
    Bpf::linux().attach_device_program(cgroup_fd, prog, flags, replace, cgroup)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_carry_the_cgroup_and_errno() {
        let e = open_cgroup(Path::new("/nonexistent/cg")).unwrap_err();
        assert_eq!(e.errno(), Some(libc::ENOENT));
        assert!(e.to_string().contains("/nonexistent/cg"));
    }
}
