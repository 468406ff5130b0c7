//! [`LinuxRootfs`]: the real calls behind [`RootfsSyscall`], and the `unsafe` they need.

use std::ffi::OsString;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::sync::OnceLock;

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::mount::MsFlags;
use nix::sys::stat::{FileStat, Mode, SFlag};
use nix::sys::statfs::FsType;

use super::io_errno;
use super::syscall::{RootfsSyscall, Stat};

/// The kernel's calls.
#[derive(Debug, Clone, Copy, Default)]
pub struct LinuxRootfs;

fn owned(fd: RawFd) -> OwnedFd {
    // SAFETY: `fd` was just returned by a successful open call and is owned by nobody else.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

fn fd_path(fd: BorrowedFd<'_>) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

fn stat(st: &FileStat) -> Stat {
    Stat {
        mode: st.st_mode,
        rdev: st.st_rdev,
        dev: st.st_dev,
        ino: st.st_ino,
        size: st.st_size,
        uid: st.st_uid,
        gid: st.st_gid,
    }
}

/// The id of the mount `fd` is on, which tells two bind mounts of the same filesystem apart
/// where `st_dev` cannot: `statx`'s `stx_mnt_id` (Linux 5.8), one call where `mnt_id` of
/// /proc/self/fdinfo, the fallback for older kernels, takes three and a parse (a hook with driver
/// files asks about 60 times).
pub fn mount_id(fd: BorrowedFd<'_>) -> Result<u64, Errno> {
    match statx_mount_id(fd) {
        Some(id) => Ok(id),
        None => fdinfo_mount_id(fd),
    }
}

fn statx_mount_id(fd: BorrowedFd<'_>) -> Option<u64> {
    let mut st = std::mem::MaybeUninit::<libc::statx>::zeroed();
    // SAFETY: the path is a valid NUL-terminated empty string, `fd` is open (AT_EMPTY_PATH
    // makes statx describe it, O_PATH descriptors included), and `st` is a writable buffer of
    // the struct's size, which the kernel fills on success.
    let rc = unsafe {
        libc::statx(
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            libc::STATX_MNT_ID,
            st.as_mut_ptr(),
        )
    };
    if rc != 0 {
        return None;
    }
    // SAFETY: statx succeeded, so it wrote the struct (zeroed before, so no field is undefined).
    let st = unsafe { st.assume_init() };
    (st.stx_mask & libc::STATX_MNT_ID != 0).then_some(st.stx_mnt_id)
}

fn fdinfo_mount_id(fd: BorrowedFd<'_>) -> Result<u64, Errno> {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd()))
        .map_err(|e| io_errno(&e))?;
    info.lines()
        .find_map(|l| l.strip_prefix("mnt_id:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or(Errno::EINVAL)
}

/// Whether this kernel (and this process's seccomp filter) lets openat2 through: decided once.
static OPENAT2: OnceLock<bool> = OnceLock::new();

/// Tests only, as the fault points are (src/faultpoint.rs): in a build with debug assertions
/// (what `cargo test` runs), `MIGCAGE_TEST_NO_OPENAT2=1` in the hook's environment makes openat2
/// fail with ENOSYS as on a kernel before 5.6, so the end-to-end tests (tests/hostile_e2e.rs)
/// run the userspace walk against real runtimes. A release build has neither the check nor the
/// name.
#[cfg(debug_assertions)]
fn openat2_missing_for_tests() -> bool {
    static MISSING: OnceLock<bool> = OnceLock::new();
    *MISSING.get_or_init(|| std::env::var_os("MIGCAGE_TEST_NO_OPENAT2").is_some_and(|v| v == "1"))
}

impl RootfsSyscall for LinuxRootfs {
    fn openat2_verdict(&self) -> &OnceLock<bool> {
        &OPENAT2
    }

    fn open_root(&self, path: &Path) -> Result<OwnedFd, Errno> {
        nix::fcntl::open(
            path,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map(owned)
    }

    fn mount_id(&self, fd: BorrowedFd<'_>) -> Result<u64, Errno> {
        mount_id(fd)
    }

    fn openat2(
        &self,
        dir: BorrowedFd<'_>,
        path: &str,
        flags: OFlag,
        resolve: ResolveFlag,
    ) -> Result<OwnedFd, Errno> {
        #[cfg(debug_assertions)]
        if openat2_missing_for_tests() {
            return Err(Errno::ENOSYS);
        }
        let how = OpenHow::new().flags(flags).resolve(resolve);
        nix::fcntl::openat2(dir.as_raw_fd(), path, how).map(owned)
    }

    fn openat(
        &self,
        dir: BorrowedFd<'_>,
        name: &str,
        flags: OFlag,
        mode: Mode,
    ) -> Result<OwnedFd, Errno> {
        nix::fcntl::openat(Some(dir.as_raw_fd()), name, flags, mode).map(owned)
    }

    fn reopen(&self, fd: BorrowedFd<'_>, flags: OFlag) -> Result<OwnedFd, Errno> {
        nix::fcntl::open(fd_path(fd).as_str(), flags, Mode::empty()).map(owned)
    }

    fn mkdirat(&self, dir: BorrowedFd<'_>, name: &str, mode: Mode) -> Result<(), Errno> {
        nix::sys::stat::mkdirat(Some(dir.as_raw_fd()), name, mode)
    }

    fn mknodat(
        &self,
        dir: BorrowedFd<'_>,
        name: &str,
        kind: SFlag,
        mode: Mode,
        dev: u64,
    ) -> Result<(), Errno> {
        nix::sys::stat::mknodat(Some(dir.as_raw_fd()), name, kind, mode, dev)
    }

    fn lstatat(&self, dir: BorrowedFd<'_>, name: &str) -> Result<Stat, Errno> {
        nix::sys::stat::fstatat(Some(dir.as_raw_fd()), name, AtFlags::AT_SYMLINK_NOFOLLOW)
            .map(|st| stat(&st))
    }

    fn fstat(&self, fd: BorrowedFd<'_>) -> Result<Stat, Errno> {
        nix::sys::stat::fstat(fd.as_raw_fd()).map(|st| stat(&st))
    }

    fn fstatfs(&self, fd: BorrowedFd<'_>) -> Result<FsType, Errno> {
        nix::sys::statfs::fstatfs(fd).map(|s| s.filesystem_type())
    }

    fn stat_host(&self, path: &Path) -> Result<Stat, Errno> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path).map_err(|e| io_errno(&e))?;
        Ok(Stat {
            mode: m.mode(),
            rdev: m.rdev(),
            dev: m.dev(),
            ino: m.ino(),
            size: i64::try_from(m.size()).unwrap_or(i64::MAX),
            uid: m.uid(),
            gid: m.gid(),
        })
    }

    fn lchownat(&self, dir: BorrowedFd<'_>, name: &str, uid: u32, gid: u32) -> Result<(), Errno> {
        nix::unistd::fchownat(
            Some(dir.as_raw_fd()),
            name,
            Some(nix::unistd::Uid::from_raw(uid)),
            Some(nix::unistd::Gid::from_raw(gid)),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
    }

    fn readlinkat(&self, dir: BorrowedFd<'_>, name: &str) -> Result<OsString, Errno> {
        nix::fcntl::readlinkat(Some(dir.as_raw_fd()), name)
    }

    fn symlinkat(&self, target: &str, dir: BorrowedFd<'_>, name: &str) -> Result<(), Errno> {
        nix::unistd::symlinkat(target, Some(dir.as_raw_fd()), name)
    }

    fn renameat(&self, dir: BorrowedFd<'_>, from: &str, to: &str) -> Result<(), Errno> {
        let raw = dir.as_raw_fd();
        nix::fcntl::renameat(Some(raw), from, Some(raw), to)
    }

    fn unlinkat(&self, dir: BorrowedFd<'_>, name: &str) -> Result<(), Errno> {
        nix::unistd::unlinkat(
            Some(dir.as_raw_fd()),
            name,
            nix::unistd::UnlinkatFlags::NoRemoveDir,
        )
    }

    fn set_fs_ids(&self, uid: u32, gid: u32) -> Result<(u32, u32), Errno> {
        use nix::unistd::{setfsgid, setfsuid, Gid, Uid};
        // Both calls return the previous id whether or not they worked; asking again (with an
        // id that is never valid, which changes nothing) says whether the new one took.
        let old_gid = setfsgid(Gid::from_raw(gid)).as_raw();
        let old_uid = setfsuid(Uid::from_raw(uid)).as_raw();
        let now_gid = setfsgid(Gid::from_raw(u32::MAX)).as_raw();
        let now_uid = setfsuid(Uid::from_raw(u32::MAX)).as_raw();
        if (now_uid, now_gid) != (uid, gid) {
            setfsgid(Gid::from_raw(old_gid));
            setfsuid(Uid::from_raw(old_uid));
            return Err(Errno::EPERM);
        }
        Ok((old_uid, old_gid))
    }

    fn mount(
        &self,
        source: Option<&Path>,
        target: BorrowedFd<'_>,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> Result<(), Errno> {
        nix::mount::mount(source, fd_path(target).as_str(), fstype, flags, data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    /// statx and /proc/self/fdinfo name the same mount, for a directory, an O_PATH descriptor
    /// and a file on another filesystem (procfs).
    #[test]
    fn statx_and_fdinfo_agree_on_the_mount_id() {
        for (path, flags) in [
            ("/", OFlag::O_RDONLY | OFlag::O_DIRECTORY),
            ("/tmp", OFlag::O_PATH | OFlag::O_DIRECTORY),
            ("/proc/self/status", OFlag::O_RDONLY),
        ] {
            let fd =
                owned(nix::fcntl::open(path, flags | OFlag::O_CLOEXEC, Mode::empty()).unwrap());
            let fdinfo = fdinfo_mount_id(fd.as_fd()).unwrap();
            match statx_mount_id(fd.as_fd()) {
                Some(id) => assert_eq!(id, fdinfo, "{path}"),
                None => crate::testing::skip("statx_and_fdinfo_agree_on_the_mount_id: this kernel's statx has no STATX_MNT_ID (Linux < 5.8)"),
            }
            assert_eq!(mount_id(fd.as_fd()).unwrap(), fdinfo, "{path}");
        }
        let proc_fd = owned(nix::fcntl::open("/proc", OFlag::O_PATH, Mode::empty()).unwrap());
        let root_fd = owned(nix::fcntl::open("/", OFlag::O_PATH, Mode::empty()).unwrap());
        assert_ne!(
            mount_id(proc_fd.as_fd()).unwrap(),
            mount_id(root_fd.as_fd()).unwrap()
        );
    }
}
