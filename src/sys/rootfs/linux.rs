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
    let info = crate::sys::read::read_text(format!("/proc/self/fdinfo/{}", fd.as_raw_fd()))
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
        match nix::mount::mount(source, fd_path(target).as_str(), fstype, flags, data) {
            // /proc/self/fd is not there: inside a container after pivot_root, whose /proc is its
            // own procfs, where this process has no entry. A new tmpfs and a remount need no
            // path: the mount API takes the descriptor itself.
            Err(Errno::ENOENT) if source.is_none() || fstype == Some("tmpfs") => {
                mount_by_fd(target, fstype, flags, data)
            }
            other => other,
        }
    }

    fn move_mount(&self, tree: BorrowedFd<'_>, target: BorrowedFd<'_>) -> Result<(), Errno> {
        const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
        const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x40;
        // SAFETY: both descriptors are open for the call and the paths are NUL-terminated
        // empty strings; the kernel reads nothing else.
        let r = unsafe {
            libc::syscall(
                libc::SYS_move_mount,
                tree.as_raw_fd(),
                c"".as_ptr(),
                target.as_raw_fd(),
                c"".as_ptr(),
                MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
            )
        };
        Errno::result(r).map(drop)
    }
}

/// `MOUNT_ATTR_*` of the per-mount flags in `flags`.
fn mount_attrs(flags: MsFlags) -> u64 {
    const MOUNT_ATTR_RDONLY: u64 = 0x1;
    const MOUNT_ATTR_NOSUID: u64 = 0x2;
    const MOUNT_ATTR_NODEV: u64 = 0x4;
    const MOUNT_ATTR_NOEXEC: u64 = 0x8;
    [
        (MsFlags::MS_RDONLY, MOUNT_ATTR_RDONLY),
        (MsFlags::MS_NOSUID, MOUNT_ATTR_NOSUID),
        (MsFlags::MS_NODEV, MOUNT_ATTR_NODEV),
        (MsFlags::MS_NOEXEC, MOUNT_ATTR_NOEXEC),
    ]
    .iter()
    .filter(|(f, _)| flags.contains(*f))
    .fold(0, |acc, (_, a)| acc | a)
}

/// [`RootfsSyscall::mount`] of a new tmpfs or a remount through the mount API (Linux 5.12):
/// `fsopen`, `fsconfig`, `fsmount` and `move_mount` onto `target`, or `mount_setattr` of
/// `target`'s mount (the per-mount flags exactly as `flags` has them, as a bind remount sets them).
fn mount_by_fd(
    target: BorrowedFd<'_>,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<(), Errno> {
    const FSOPEN_CLOEXEC: libc::c_uint = 1;
    const FSCONFIG_SET_STRING: libc::c_uint = 1;
    const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
    const FSMOUNT_CLOEXEC: libc::c_uint = 1;
    const ALL_ATTRS: u64 = 0xf;
    let cstr = |s: &str| std::ffi::CString::new(s).map_err(|_| Errno::EINVAL);
    if flags.contains(MsFlags::MS_REMOUNT) {
        #[repr(C)]
        struct MountAttr {
            attr_set: u64,
            attr_clr: u64,
            propagation: u64,
            userns_fd: u64,
        }
        let set = mount_attrs(flags);
        let attr = MountAttr {
            attr_set: set,
            attr_clr: ALL_ATTRS & !set,
            propagation: 0,
            userns_fd: 0,
        };
        // SAFETY: `attr` is a valid mount_attr of the size passed, alive for the call; the path
        // is an empty NUL-terminated string and `target` is open.
        let r = unsafe {
            libc::syscall(
                libc::SYS_mount_setattr,
                target.as_raw_fd(),
                c"".as_ptr(),
                libc::AT_EMPTY_PATH,
                &attr as *const MountAttr,
                std::mem::size_of::<MountAttr>(),
            )
        };
        return Errno::result(r).map(drop);
    }
    let fstype = cstr(fstype.ok_or(Errno::EINVAL)?)?;
    // SAFETY: `fstype` is NUL-terminated and outlives the call.
    let fs = unsafe { libc::syscall(libc::SYS_fsopen, fstype.as_ptr(), FSOPEN_CLOEXEC) };
    let fs = owned(RawFd::try_from(Errno::result(fs)?).map_err(|_| Errno::EBADF)?);
    for option in data.unwrap_or("").split(',').filter(|o| !o.is_empty()) {
        let (key, value) = option.split_once('=').ok_or(Errno::EINVAL)?;
        let (key, value) = (cstr(key)?, cstr(value)?);
        // SAFETY: `fs` is open; `key` and `value` are NUL-terminated and outlive the call.
        let r = unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                fs.as_raw_fd(),
                FSCONFIG_SET_STRING,
                key.as_ptr(),
                value.as_ptr(),
                0,
            )
        };
        Errno::result(r)?;
    }
    // SAFETY: `fs` is open; no pointer is passed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_void>(),
            0,
        )
    };
    Errno::result(r)?;
    // SAFETY: `fs` is open and configured; the result is a new descriptor or -1.
    let mnt = unsafe {
        libc::syscall(
            libc::SYS_fsmount,
            fs.as_raw_fd(),
            FSMOUNT_CLOEXEC,
            mount_attrs(flags),
        )
    };
    let mnt = owned(RawFd::try_from(Errno::result(mnt)?).map_err(|_| Errno::EBADF)?);
    use std::os::fd::AsFd;
    LinuxRootfs.move_mount(mnt.as_fd(), target)
}

/// Whether the running kernel has the mount API [`clone_tree`] and the descriptor mounts use
/// (`open_tree`, `move_mount`, `fsopen`: 5.2; `mount_setattr`: 5.12).
pub fn mount_api_available() -> bool {
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    kernel_at_least(&release, (5, 12))
}

/// Whether a kernel release string (`6.1.0-18-amd64`) is at least `want` (major, minor).
pub fn kernel_at_least(release: &str, want: (u32, u32)) -> bool {
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(major), Some(minor)) => (major, minor) >= want,
        _ => false,
    }
}

/// A detached copy of the mount at `path` (`open_tree(OPEN_TREE_CLONE)`, Linux 5.2): a bind
/// mount made in this mount namespace that [`RootfsSyscall::move_mount`] can attach in another
/// (`mount --bind` refuses a source from another namespace). Closing it unmounts it.
pub fn clone_tree(path: &Path) -> Result<OwnedFd, Errno> {
    use std::os::unix::ffi::OsStrExt;
    const OPEN_TREE_CLONE: libc::c_uint = 1;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL)?;
    // SAFETY: `c` is a NUL-terminated path that outlives the call; the result is a new
    // descriptor or -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            c.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint,
        )
    };
    let fd = Errno::result(fd)?;
    Ok(owned(RawFd::try_from(fd).map_err(|_| Errno::EBADF)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn kernel_releases_compare_by_major_and_minor() {
        assert!(kernel_at_least("6.1.0-18-amd64", (5, 12)));
        assert!(kernel_at_least("5.12.0", (5, 12)));
        assert!(kernel_at_least("6.18.44-fc-v1147", (5, 12)));
        assert!(!kernel_at_least("5.10.0-28-amd64", (5, 12)));
        assert!(!kernel_at_least("4.19.0", (5, 12)));
        assert!(!kernel_at_least("", (5, 12)));
        assert!(!kernel_at_least("garbage", (5, 12)));
    }

    /// A tmpfs and a read-only remount by descriptor (the mount API), where no /proc/self
    /// path is used: in a private mount namespace of a forked child.
    #[test]
    fn a_tmpfs_and_a_remount_by_descriptor() {
        if !nix::unistd::geteuid().is_root() || !mount_api_available() {
            crate::testing::skip("a_tmpfs_and_a_remount_by_descriptor: needs root and Linux 5.12");
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().to_path_buf();
        let status = std::process::Command::new("unshare")
            .args(["-m", "--propagation", "private", "true"])
            .status();
        if !status.is_ok_and(|s| s.success()) {
            crate::testing::skip(
                "a_tmpfs_and_a_remount_by_descriptor: unshare -m does not work here",
            );
            return;
        }
        // In a child: unshare the mount namespace, mount, check, all gone with the child.
        // SAFETY: the child makes syscalls and small allocations only (glibc's fork handlers
        // keep malloc usable), then `_exit`s without returning into the test harness.
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                let code = (|| -> Result<(), String> {
                    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
                        .map_err(|e| e.to_string())?;
                    nix::mount::mount(
                        None::<&str>,
                        "/",
                        None::<&str>,
                        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                        None::<&str>,
                    )
                    .map_err(|e| e.to_string())?;
                    let fd: OwnedFd = std::fs::File::open(&dir).map_err(|e| e.to_string())?.into();
                    mount_by_fd(
                        fd.as_fd(),
                        Some("tmpfs"),
                        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                        Some("mode=0555,size=1m"),
                    )
                    .map_err(|e| e.to_string())?;
                    let m = std::fs::metadata(&dir).map_err(|e| e.to_string())?;
                    use std::os::unix::fs::PermissionsExt;
                    if m.permissions().mode() & 0o7777 != 0o555 {
                        return Err(format!("mode {:o}", m.permissions().mode()));
                    }
                    std::fs::write(dir.join("f"), b"x").map_err(|e| e.to_string())?;
                    let top: OwnedFd = std::fs::File::open(&dir).map_err(|e| e.to_string())?.into();
                    mount_by_fd(
                        top.as_fd(),
                        None,
                        MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY,
                        None,
                    )
                    .map_err(|e| e.to_string())?;
                    match std::fs::write(dir.join("g"), b"x") {
                        Err(e) if e.raw_os_error() == Some(libc::EROFS) => Ok(()),
                        other => Err(format!("a write after the read-only remount: {other:?}")),
                    }
                })();
                if let Err(e) = &code {
                    eprintln!("{e}");
                }
                // SAFETY: ends the forked child at once, running nothing of the harness's.
                unsafe { libc::_exit(i32::from(code.is_err())) }
            }
            nix::unistd::ForkResult::Parent { child } => {
                let st = nix::sys::wait::waitpid(child, None).unwrap();
                assert_eq!(st, nix::sys::wait::WaitStatus::Exited(child, 0));
            }
        }
        // Nothing mounted here outside the child's namespace.
        assert!(std::fs::read_dir(d.path()).unwrap().next().is_none());
    }

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
