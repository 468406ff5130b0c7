//! [`RootfsSyscall`]: the raw calls [`super::Rootfs`] makes, one method each, so that a recording
//! double can stand in for the kernel in tests.

use std::ffi::OsString;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::OnceLock;

use nix::errno::Errno;
use nix::fcntl::{OFlag, ResolveFlag};
use nix::mount::MsFlags;
use nix::sys::stat::{Mode, SFlag};
use nix::sys::statfs::FsType;

/// The fields of `struct stat` the rootfs code looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stat {
    /// File type and permission bits (`st_mode`).
    pub mode: u32,
    /// The device number of a device node (`st_rdev`).
    pub rdev: u64,
    /// The device the object is on (`st_dev`).
    pub dev: u64,
    pub ino: u64,
    pub size: i64,
    /// The owner (`st_uid`, `st_gid`), as this process's user namespace names them.
    pub uid: u32,
    pub gid: u32,
}

impl Stat {
    /// The file type bits (`st_mode & S_IFMT`).
    pub fn kind(&self) -> u32 {
        self.mode & SFlag::S_IFMT.bits()
    }

    /// Is it of type `kind` (`S_IFDIR`, `S_IFCHR`, ...)?
    pub fn is(&self, kind: SFlag) -> bool {
        self.kind() == kind.bits()
    }
}

/// The raw calls on a container's rootfs. `dir` arguments are directories opened by
/// [`RootfsSyscall::openat2`] or [`RootfsSyscall::open_root`]; `name` arguments are a single
/// path component. Errors are the bare errno.
pub trait RootfsSyscall {
    /// Where the verdict on openat2 is kept once the first lookup has decided it (true: it works;
    /// false: missing or refused, so paths are walked in userspace). The kernel's is one per
    /// process; each double has its own.
    fn openat2_verdict(&self) -> &OnceLock<bool>;
    /// `open(path, O_PATH | O_DIRECTORY | O_CLOEXEC)` of a host directory.
    fn open_root(&self, path: &Path) -> Result<OwnedFd, Errno>;
    /// The id of the mount `fd` is on (`mnt_id` of /proc/self/fdinfo).
    fn mount_id(&self, fd: BorrowedFd<'_>) -> Result<u64, Errno>;
    /// `openat2(dir, path, {flags, resolve})`.
    fn openat2(
        &self,
        dir: BorrowedFd<'_>,
        path: &str,
        flags: OFlag,
        resolve: ResolveFlag,
    ) -> Result<OwnedFd, Errno>;
    /// `openat(dir, name, flags, mode)`.
    fn openat(
        &self,
        dir: BorrowedFd<'_>,
        name: &str,
        flags: OFlag,
        mode: Mode,
    ) -> Result<OwnedFd, Errno>;
    /// Open the object `fd` names (an `O_PATH` descriptor) again with `flags`
    /// (`/proc/self/fd/N`).
    fn reopen(&self, fd: BorrowedFd<'_>, flags: OFlag) -> Result<OwnedFd, Errno>;
    /// `mkdirat(dir, name, mode)`.
    fn mkdirat(&self, dir: BorrowedFd<'_>, name: &str, mode: Mode) -> Result<(), Errno>;
    /// `mknodat(dir, name, kind | mode, dev)`.
    fn mknodat(
        &self,
        dir: BorrowedFd<'_>,
        name: &str,
        kind: SFlag,
        mode: Mode,
        dev: u64,
    ) -> Result<(), Errno>;
    /// `fstatat(dir, name, AT_SYMLINK_NOFOLLOW)`.
    fn lstatat(&self, dir: BorrowedFd<'_>, name: &str) -> Result<Stat, Errno>;
    /// `fstat(fd)`.
    fn fstat(&self, fd: BorrowedFd<'_>) -> Result<Stat, Errno>;
    /// `fstatfs(fd)`: the type of the filesystem `fd` is on.
    fn fstatfs(&self, fd: BorrowedFd<'_>) -> Result<FsType, Errno>;
    /// `stat(path)` of a host path (following symlinks).
    fn stat_host(&self, path: &Path) -> Result<Stat, Errno>;
    /// `fchownat(dir, name, uid, gid, AT_SYMLINK_NOFOLLOW)`.
    fn lchownat(&self, dir: BorrowedFd<'_>, name: &str, uid: u32, gid: u32) -> Result<(), Errno>;
    /// `readlinkat(dir, name)`.
    fn readlinkat(&self, dir: BorrowedFd<'_>, name: &str) -> Result<OsString, Errno>;
    /// `symlinkat(target, dir, name)`.
    fn symlinkat(&self, target: &str, dir: BorrowedFd<'_>, name: &str) -> Result<(), Errno>;
    /// `renameat(dir, from, dir, to)`: a rename within one directory.
    fn renameat(&self, dir: BorrowedFd<'_>, from: &str, to: &str) -> Result<(), Errno>;
    /// `unlinkat(dir, name, 0)`: remove a file (never a directory).
    fn unlinkat(&self, dir: BorrowedFd<'_>, name: &str) -> Result<(), Errno>;
    /// `setfsgid(gid)` then `setfsuid(uid)`: the ids this thread creates files as. Returns the
    /// ids it had; fails (EPERM) when the kernel kept them.
    fn set_fs_ids(&self, uid: u32, gid: u32) -> Result<(u32, u32), Errno>;
    /// `mount(source, /proc/self/fd/<target>, fstype, flags, data)`: a mount onto the object
    /// `target` names.
    fn mount(
        &self,
        source: Option<&Path>,
        target: BorrowedFd<'_>,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> Result<(), Errno>;
    /// `move_mount(tree, "", target, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH)`:
    /// attach the detached mount `tree` (a [`super::clone_tree`]) onto the object `target`
    /// names. Unlike a bind mount, the source may come from another mount namespace.
    fn move_mount(&self, tree: BorrowedFd<'_>, target: BorrowedFd<'_>) -> Result<(), Errno>;
}
