//! Every `bpf(2)` call migcage makes, for cgroup device programs. Nothing else in migcage calls
//! bpf(2).
//!
//! Programs are attached with `BPF_PROG_ATTACH` (they stay attached when migcage exits), never
//! through a bpf_link (which dies with the process that holds it). RLIMIT_MEMLOCK is never raised:
//! since Linux 5.11 eBPF memory is charged to the memory cgroup; before, a load that fails with
//! EPERM says so in its error.

use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use crate::core::cgroup::program::{to_bytes, Insn};

const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_PROG_ATTACH: libc::c_int = 8;
const BPF_PROG_DETACH: libc::c_int = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_int = 13;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_int = 15;
const BPF_PROG_QUERY: libc::c_int = 16;

const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
/// `BPF_CGROUP_DEVICE`, the attach type of device programs.
pub const BPF_CGROUP_DEVICE: u32 = 6;

/// `BPF_F_ALLOW_OVERRIDE`
pub const BPF_F_ALLOW_OVERRIDE: u32 = 1;
/// `BPF_F_ALLOW_MULTI`
pub const BPF_F_ALLOW_MULTI: u32 = 2;
/// `BPF_F_REPLACE` (Linux 5.5+)
pub const BPF_F_REPLACE: u32 = 4;

/// The license string of migcage's programs. Device programs call no helper, let alone a
/// GPL-only one, so the kernel accepts any license.
const LICENSE: &[u8] = b"Apache-2.0\0";
const PROG_NAME: &[u8] = b"migcage_dev";

/// A failed bpf(2) call; each carries the cgroup it was for and the errno.
#[derive(Debug, thiserror::Error)]
pub enum BpfError {
    #[error("cannot open cgroup directory {path}: {source}")]
    OpenCgroup { path: PathBuf, source: io::Error },
    #[error("bpf({op}) for cgroup {path}: {source}")]
    Syscall {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
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

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

#[repr(C)]
#[derive(Default)]
struct QueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    pad: u32,
}

#[repr(C)]
#[derive(Default)]
struct GetFdByIdAttr {
    prog_id: u32,
    next_id: u32,
    open_flags: u32,
}

#[repr(C)]
#[derive(Default)]
struct AttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

#[repr(C)]
#[derive(Default)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// The first fields of `struct bpf_prog_info`.
#[repr(C)]
#[derive(Default)]
struct ProgInfoHead {
    prog_type: u32,
    id: u32,
}

/// bpf(2).
///
/// # Safety
/// `attr` must be the attribute struct of `cmd` (a prefix of `union bpf_attr`), and every
/// pointer in it must point to memory valid for the access the kernel makes during the call.
unsafe fn sys_bpf<T>(cmd: libc::c_int, attr: &mut T) -> io::Result<libc::c_long> {
    let size = libc::c_uint::try_from(size_of::<T>()).expect("attribute structs are small");
    let ptr: *mut T = attr;
    // SAFETY: `ptr` is a live, exclusive reference to `size` bytes; the caller vouches for the
    // pointers inside it. The kernel reads and writes the struct only during the call.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, ptr, size) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Take ownership of a file descriptor bpf(2) just returned.
fn owned(r: libc::c_long) -> OwnedFd {
    let fd = RawFd::try_from(r).expect("bpf(2) returns an fd that fits a c_int");
    // SAFETY: the kernel just created `fd` for this process and nothing else refers to it.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

fn fd_u32(fd: BorrowedFd<'_>) -> u32 {
    u32::try_from(fd.as_raw_fd()).expect("an open fd is not negative")
}

fn sys_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> BpfError + 'a {
    move |source| BpfError::Syscall {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Open a cgroup directory for the attach calls.
pub fn open_cgroup(path: &Path) -> Result<OwnedFd, BpfError> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(path)
        .map(OwnedFd::from)
        .map_err(|source| BpfError::OpenCgroup {
            path: path.to_path_buf(),
            source,
        })
}

fn prog_load(insns: &[u8], count: u32, log: Option<&mut [u8]>) -> io::Result<OwnedFd> {
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: count,
        insns: insns.as_ptr() as u64,
        license: LICENSE.as_ptr() as u64,
        ..Default::default()
    };
    attr.prog_name[..PROG_NAME.len()].copy_from_slice(PROG_NAME);
    if let Some(buf) = log {
        attr.log_level = 1;
        attr.log_size = u32::try_from(buf.len()).expect("log buffer under 4 GiB");
        attr.log_buf = buf.as_mut_ptr() as u64;
    }
    let mut tries = 0;
    loop {
        // SAFETY: `attr` is BPF_PROG_LOAD's struct; `insns` holds `count` instructions, the
        // license is NUL-terminated and the log buffer (if any) is `log_size` writable bytes; all
        // outlive the call.
        match unsafe { sys_bpf(BPF_PROG_LOAD, &mut attr) } {
            Ok(fd) => return Ok(owned(fd)),
            // The verifier may ask to be retried (libbpf does the same).
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) && tries < 5 => tries += 1,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Load a `BPF_PROG_TYPE_CGROUP_DEVICE` program; `cgroup` names the cgroup it is for in errors.
/// On failure the verifier's log is in the error.
pub fn load_device_program(prog: &[Insn], cgroup: &Path) -> Result<OwnedFd, BpfError> {
    let bytes = to_bytes(prog);
    let count = u32::try_from(prog.len()).map_err(|_| BpfError::Load {
        path: cgroup.to_path_buf(),
        source: io::Error::from_raw_os_error(libc::E2BIG),
        detail: String::new(),
    })?;
    let source = match prog_load(&bytes, count, None) {
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
        if let Err(e) = prog_load(&bytes, count, Some(&mut log)) {
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

/// The device programs attached directly to a cgroup and the flags they were attached with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attached {
    /// `BPF_F_ALLOW_MULTI`, `BPF_F_ALLOW_OVERRIDE` or 0.
    pub flags: u32,
    pub ids: Vec<u32>,
}

/// `BPF_PROG_QUERY` for the device programs attached directly to `cgroup_fd`.
pub fn query_device_programs(
    cgroup_fd: BorrowedFd<'_>,
    cgroup: &Path,
) -> Result<Attached, BpfError> {
    let mut ids = vec![0u32; 16];
    loop {
        let mut attr = QueryAttr {
            target_fd: fd_u32(cgroup_fd),
            attach_type: BPF_CGROUP_DEVICE,
            prog_ids: ids.as_mut_ptr() as u64,
            prog_cnt: u32::try_from(ids.len()).expect("small"),
            ..Default::default()
        };
        // SAFETY: `attr` is BPF_PROG_QUERY's struct; `prog_ids` points to `prog_cnt` writable
        // u32s that outlive the call.
        match unsafe { sys_bpf(BPF_PROG_QUERY, &mut attr) } {
            Ok(_) => {
                ids.truncate(usize::try_from(attr.prog_cnt).expect("u32 fits usize"));
                return Ok(Attached {
                    flags: attr.attach_flags,
                    ids,
                });
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => {
                ids = vec![0u32; usize::try_from(attr.prog_cnt).expect("u32 fits usize") + 1];
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(sys_err("BPF_PROG_QUERY", cgroup)(e)),
        }
    }
}

/// `BPF_PROG_GET_FD_BY_ID`.
pub fn program_fd_by_id(id: u32, cgroup: &Path) -> Result<OwnedFd, BpfError> {
    let mut attr = GetFdByIdAttr {
        prog_id: id,
        ..Default::default()
    };
    // SAFETY: `attr` is BPF_PROG_GET_FD_BY_ID's struct and holds no pointers.
    let r = unsafe { sys_bpf(BPF_PROG_GET_FD_BY_ID, &mut attr) };
    r.map(owned)
        .map_err(sys_err("BPF_PROG_GET_FD_BY_ID", cgroup))
}

/// The kernel's id of a loaded program (`BPF_OBJ_GET_INFO_BY_FD`).
pub fn program_id(prog: BorrowedFd<'_>, cgroup: &Path) -> Result<u32, BpfError> {
    let mut info = ProgInfoHead::default();
    let mut attr = InfoAttr {
        bpf_fd: fd_u32(prog),
        info_len: u32::try_from(size_of::<ProgInfoHead>()).expect("small"),
        info: std::ptr::addr_of_mut!(info) as u64,
    };
    // SAFETY: `attr` is BPF_OBJ_GET_INFO_BY_FD's struct; `info` points to `info_len` writable
    // bytes that outlive the call (the kernel writes at most `info_len`).
    let r = unsafe { sys_bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr) };
    r.map(|_| info.id)
        .map_err(sys_err("BPF_OBJ_GET_INFO_BY_FD", cgroup))
}

/// `BPF_PROG_ATTACH` of a device program with `flags`; with `replace`, `BPF_F_REPLACE` swaps
/// that program for `prog` atomically (the caller includes `BPF_F_REPLACE` in `flags`).
pub fn attach_device_program(
    cgroup_fd: BorrowedFd<'_>,
    prog: BorrowedFd<'_>,
    flags: u32,
    replace: Option<BorrowedFd<'_>>,
    cgroup: &Path,
) -> Result<(), BpfError> {
    let mut attr = AttachAttr {
        target_fd: fd_u32(cgroup_fd),
        attach_bpf_fd: fd_u32(prog),
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: flags,
        replace_bpf_fd: replace.map(fd_u32).unwrap_or(0),
    };
    // SAFETY: `attr` is BPF_PROG_ATTACH's struct and holds no pointers.
    let r = unsafe { sys_bpf(BPF_PROG_ATTACH, &mut attr) };
    r.map(|_| ()).map_err(sys_err("BPF_PROG_ATTACH", cgroup))
}

/// `BPF_PROG_DETACH` of one device program.
pub fn detach_device_program(
    cgroup_fd: BorrowedFd<'_>,
    prog: BorrowedFd<'_>,
    cgroup: &Path,
) -> Result<(), BpfError> {
    let mut attr = AttachAttr {
        target_fd: fd_u32(cgroup_fd),
        attach_bpf_fd: fd_u32(prog),
        attach_type: BPF_CGROUP_DEVICE,
        ..Default::default()
    };
    // SAFETY: `attr` is BPF_PROG_DETACH's struct (shared with attach) and holds no pointers.
    let r = unsafe { sys_bpf(BPF_PROG_DETACH, &mut attr) };
    r.map(|_| ()).map_err(sys_err("BPF_PROG_DETACH", cgroup))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::offset_of;

    #[test]
    fn attribute_layouts_match_union_bpf_attr() {
        assert_eq!(offset_of!(ProgLoadAttr, insns), 8);
        assert_eq!(offset_of!(ProgLoadAttr, log_buf), 32);
        assert_eq!(offset_of!(ProgLoadAttr, prog_name), 48);
        assert_eq!(offset_of!(ProgLoadAttr, expected_attach_type), 68);
        assert_eq!(offset_of!(QueryAttr, prog_ids), 16);
        assert_eq!(offset_of!(QueryAttr, prog_cnt), 24);
        assert_eq!(offset_of!(AttachAttr, replace_bpf_fd), 16);
        assert_eq!(offset_of!(InfoAttr, info), 8);
    }

    #[test]
    fn errors_carry_the_cgroup_and_errno() {
        let e = open_cgroup(Path::new("/nonexistent/cg")).unwrap_err();
        assert_eq!(e.errno(), Some(libc::ENOENT));
        assert!(e.to_string().contains("/nonexistent/cg"));
    }
}
