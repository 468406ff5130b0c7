//! [`LinuxBpf`]: the real `bpf(2)` calls behind [`BpfSyscall`], and every `unsafe` they need.

use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use super::{Attached, BpfSyscall, BPF_CGROUP_DEVICE};

const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_PROG_ATTACH: libc::c_int = 8;
const BPF_PROG_DETACH: libc::c_int = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_int = 13;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_int = 15;
const BPF_PROG_QUERY: libc::c_int = 16;

const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;

/// The license string of migcage's programs. Device programs call no helper, let alone a
/// GPL-only one, so the kernel accepts any license.
const LICENSE: &[u8] = b"Apache-2.0\0";
const PROG_NAME: &[u8] = b"migcage_dev";

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

/// The kernel's `bpf(2)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct LinuxBpf;

impl BpfSyscall for LinuxBpf {
    fn open_cgroup(&self, path: &Path) -> io::Result<OwnedFd> {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(path)
            .map(OwnedFd::from)
    }

    fn prog_load(&self, insns: &[u8], count: u32, log: Option<&mut [u8]>) -> io::Result<OwnedFd> {
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
            // license is NUL-terminated and the log buffer (if any) is `log_size` writable
            // bytes; all outlive the call.
            match unsafe { sys_bpf(BPF_PROG_LOAD, &mut attr) } {
                Ok(fd) => return Ok(owned(fd)),
                // The verifier may ask to be retried (libbpf does the same).
                Err(e) if e.raw_os_error() == Some(libc::EAGAIN) && tries < 5 => tries += 1,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn prog_query(&self, cgroup: BorrowedFd<'_>) -> io::Result<Attached> {
        let mut ids = vec![0u32; 16];
        loop {
            let mut attr = QueryAttr {
                target_fd: fd_u32(cgroup),
                attach_type: BPF_CGROUP_DEVICE,
                prog_ids: ids.as_mut_ptr() as u64,
                prog_cnt: u32::try_from(ids.len()).expect("small"),
                ..Default::default()
            };
            // SAFETY: `attr` is BPF_PROG_QUERY's struct; `prog_ids` points to `prog_cnt`
            // writable u32s that outlive the call.
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
                Err(e) => return Err(e),
            }
        }
    }

    fn prog_fd_by_id(&self, id: u32) -> io::Result<OwnedFd> {
        let mut attr = GetFdByIdAttr {
            prog_id: id,
            ..Default::default()
        };
        // SAFETY: `attr` is BPF_PROG_GET_FD_BY_ID's struct and holds no pointers.
        unsafe { sys_bpf(BPF_PROG_GET_FD_BY_ID, &mut attr) }.map(owned)
    }

    fn prog_id(&self, prog: BorrowedFd<'_>) -> io::Result<u32> {
        let mut info = ProgInfoHead::default();
        let mut attr = InfoAttr {
            bpf_fd: fd_u32(prog),
            info_len: u32::try_from(size_of::<ProgInfoHead>()).expect("small"),
            info: std::ptr::addr_of_mut!(info) as u64,
        };
        // SAFETY: `attr` is BPF_OBJ_GET_INFO_BY_FD's struct; `info` points to `info_len`
        // writable bytes that outlive the call (the kernel writes at most `info_len`).
        unsafe { sys_bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr) }.map(|_| info.id)
    }

    fn prog_attach(
        &self,
        cgroup: BorrowedFd<'_>,
        prog: BorrowedFd<'_>,
        flags: u32,
        replace: Option<BorrowedFd<'_>>,
    ) -> io::Result<()> {
        let mut attr = AttachAttr {
            target_fd: fd_u32(cgroup),
            attach_bpf_fd: fd_u32(prog),
            attach_type: BPF_CGROUP_DEVICE,
            attach_flags: flags,
            replace_bpf_fd: replace.map(fd_u32).unwrap_or(0),
        };
        // SAFETY: `attr` is BPF_PROG_ATTACH's struct and holds no pointers.
        unsafe { sys_bpf(BPF_PROG_ATTACH, &mut attr) }.map(|_| ())
    }

    fn prog_detach(&self, cgroup: BorrowedFd<'_>, prog: BorrowedFd<'_>) -> io::Result<()> {
        let mut attr = AttachAttr {
            target_fd: fd_u32(cgroup),
            attach_bpf_fd: fd_u32(prog),
            attach_type: BPF_CGROUP_DEVICE,
            ..Default::default()
        };
        // SAFETY: `attr` is BPF_PROG_DETACH's struct (shared with attach) and holds no pointers.
        unsafe { sys_bpf(BPF_PROG_DETACH, &mut attr) }.map(|_| ())
    }
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
}
