//! Lookups relative to an `O_PATH` directory descriptor on the host, never following a symlink:
//! for code that checks a host tree entry by entry (the inventory snapshot's capability tree).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::AtFlags;
use nix::sys::stat::FileStat;

/// Open the directory `path` for lookups relative to it only (`O_PATH | O_DIRECTORY |
/// O_NOFOLLOW | O_CLOEXEC`); `None` when it does not exist. A symlink at `path` is an error.
pub fn open_dir_path(path: &Path) -> io::Result<Option<OwnedFd>> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
    {
        Ok(f) => Ok(Some(OwnedFd::from(f))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// `fstatat(dir, rel, AT_SYMLINK_NOFOLLOW)`; `None` when nothing is there.
pub fn lstat_at(dir: BorrowedFd<'_>, rel: &str) -> io::Result<Option<FileStat>> {
    match nix::sys::stat::fstatat(Some(dir.as_raw_fd()), rel, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(Errno::ENOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    use super::*;

    #[test]
    fn lookups_never_follow_a_symlink() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("gpu0")).unwrap();
        std::os::unix::fs::symlink("gpu0", d.path().join("link")).unwrap();
        let dir = open_dir_path(d.path()).unwrap().unwrap();
        let st = lstat_at(dir.as_fd(), "link").unwrap().unwrap();
        assert_eq!(st.st_mode & libc::S_IFMT, libc::S_IFLNK);
        let st = lstat_at(dir.as_fd(), "gpu0").unwrap().unwrap();
        assert_eq!(st.st_mode & libc::S_IFMT, libc::S_IFDIR);
        assert!(lstat_at(dir.as_fd(), "gone").unwrap().is_none());
        assert!(open_dir_path(&d.path().join("gone")).unwrap().is_none());
        assert!(open_dir_path(&d.path().join("link")).is_err());
    }
}
