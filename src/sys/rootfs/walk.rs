//! The userspace stand-in for `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`, for kernels
//! without openat2 (before 5.6: RHEL 8's 4.18) and for seccomp filters that refuse it.
//!
//! One component at a time from the root descriptor, each opened `O_PATH | O_NOFOLLOW`, so the
//! kernel never follows a symlink for us: a symlink is read with `readlinkat` and its target is
//! resolved here, inside the root (an absolute target starts again at the root, `..` never
//! climbs above it), at most [`MAX_LINKS`] symlinks per lookup (then `ELOOP`, as the kernel). A
//! symlink on procfs is refused with `ELOOP` (what `RESOLVE_NO_MAGICLINKS` does for the magic
//! ones, `/proc/self/root`, `/proc/<pid>/fd/N`): telling a magic link from procfs's plain ones
//! (`/proc/self`) from userspace is not reliable, and migcage never needs either. `..` pops the
//! directories this walk opened, so it is the parent of the directory the walk reached (through
//! symlinks, as the kernel's `..` is), never a path string joined and then trusted.

use std::collections::VecDeque;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::{Mode, SFlag};
use nix::sys::statfs::PROC_SUPER_MAGIC;

use super::syscall::RootfsSyscall;

/// Symlinks one lookup may follow (the kernel's `MAXSYMLINKS`).
pub const MAX_LINKS: usize = 40;

/// `openat2(root, rel, flags, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`, walked in userspace.
pub fn walk(
    sys: &dyn RootfsSyscall,
    root: BorrowedFd<'_>,
    rel: &str,
    flags: OFlag,
) -> Result<OwnedFd, Errno> {
    let lookup = OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    // The directories below the root the walk is in; empty: at the root.
    let mut dirs: Vec<OwnedFd> = Vec::new();
    let mut todo: VecDeque<String> = rel.split('/').map(str::to_string).collect();
    let mut links = 0;
    while let Some(name) = todo.pop_front() {
        match name.as_str() {
            "" | "." => continue,
            ".." => {
                dirs.pop();
                continue;
            }
            _ => {}
        }
        let last = todo.iter().all(|p| p.is_empty() || p == ".");
        let at = dirs.last().map_or(root, AsFd::as_fd);
        let fd = match sys.openat(at, &name, lookup, Mode::empty()) {
            Err(Errno::ENOENT) if last && flags.contains(OFlag::O_CREAT) => {
                return sys.openat(at, &name, flags | OFlag::O_NOFOLLOW, Mode::empty());
            }
            r => r?,
        };
        let st = sys.fstat(fd.as_fd())?;
        if st.is(SFlag::S_IFLNK) {
            if last && flags.contains(OFlag::O_CREAT | OFlag::O_EXCL) {
                // O_EXCL never follows a final link: it exists.
                return Err(Errno::EEXIST);
            }
            if last && flags.contains(OFlag::O_NOFOLLOW) {
                // The link itself, as openat2 gives it: only as an O_PATH descriptor.
                return if flags.contains(OFlag::O_PATH) {
                    Ok(fd)
                } else {
                    Err(Errno::ELOOP)
                };
            }
            links += 1;
            if links > MAX_LINKS || sys.fstatfs(fd.as_fd())? == PROC_SUPER_MAGIC {
                return Err(Errno::ELOOP);
            }
            let target = sys.readlinkat(fd.as_fd(), "")?;
            // Every path migcage handles is UTF-8; a link that is not is refused, not guessed.
            let target = target.to_str().ok_or(Errno::EINVAL)?;
            if target.starts_with('/') {
                dirs.clear();
            }
            for part in target.rsplit('/') {
                todo.push_front(part.to_string());
            }
        } else if st.is(SFlag::S_IFDIR) {
            dirs.push(fd);
        } else if !last || flags.contains(OFlag::O_DIRECTORY) {
            return Err(Errno::ENOTDIR);
        } else if flags.contains(OFlag::O_PATH) {
            return Ok(fd);
        } else {
            // Opened for real by name again: had it become a symlink since, O_NOFOLLOW fails it.
            return sys.openat(at, &name, flags | OFlag::O_NOFOLLOW, Mode::empty());
        }
    }
    // The walk ended on a directory (the root itself when `dirs` is empty).
    let at = dirs.last().map_or(root, AsFd::as_fd);
    sys.openat(at, ".", flags, Mode::empty())
}
