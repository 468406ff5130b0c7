//! Reading and writing regular files inside the rootfs.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::{Mode, SFlag};

use super::{io_errno, kind_name, Rootfs, RootfsError};

impl Rootfs<'_> {
    /// `openat(dir, name, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, mode)`, as
    /// `dir`'s owner where the hook's ids cannot own a file there ([`Rootfs::create_in`]).
    pub(super) fn create_excl(
        &self,
        dir: &impl AsFd,
        name: &str,
        mode: u32,
    ) -> Result<OwnedFd, Errno> {
        let flags =
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let mode = Mode::from_bits_truncate(mode);
        self.create_in(dir, || self.sys.openat(dir.as_fd(), name, flags, mode))
    }

    /// A name for a temporary sibling of `name`, private to this process.
    pub(super) fn temp_name(name: &str) -> String {
        format!(".{name}.migcage-{}", std::process::id())
    }

    /// Remove a leftover temporary file of an earlier, interrupted run of this process id.
    pub(super) fn clear_temp(&self, dir: &impl AsFd, tmp: &str) {
        let _ = self.sys.unlinkat(dir.as_fd(), tmp);
    }

    /// Write a new regular file with `contents` (it must not exist).
    pub fn write_file(&self, path: &str, contents: &[u8], mode: u32) -> Result<(), RootfsError> {
        let (dir, name) = self.parent(path)?;
        let fd = self
            .create_excl(&dir, name, mode)
            .map_err(self.op_err("create file", path))?;
        let mut f = File::from(fd);
        f.write_all(contents)
            .map_err(|e| self.op_err("write", path)(io_errno(&e)))
    }

    /// Read the regular file at `path` (following symlinks inside the rootfs only), at most
    /// `max` bytes; `None` when nothing is there. Anything but a regular file (a fifo that would
    /// block, a device) is a conflict, and is never opened for reading.
    pub fn read_file(&self, path: &str, max: usize) -> Result<Option<Vec<u8>>, RootfsError> {
        let fd = match self.resolve(path, OFlag::O_PATH) {
            Ok(fd) => fd,
            Err(RootfsError::Op {
                errno: Errno::ENOENT,
                ..
            }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let st = self
            .sys
            .fstat(fd.as_fd())
            .map_err(self.op_err("stat", path))?;
        if !st.is(SFlag::S_IFREG) {
            return Err(self.conflict(path, kind_name(st.mode), "a regular file"));
        }
        if st.size < 0 || st.size as u64 > max as u64 {
            return Err(self.conflict(
                path,
                format!("a file of {} bytes", st.size),
                format!("at most {max} bytes"),
            ));
        }
        // Reopen the very object the descriptor names, for reading.
        let file = self
            .sys
            .reopen(
                fd.as_fd(),
                OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOCTTY,
            )
            .map_err(self.op_err("open", path))?;
        let bytes = crate::sys::read::read_capped(File::from(file), max as u64)
            .map_err(|e| self.op_err("read", path)(io_errno(&e)))?;
        if bytes.len() > max {
            return Err(self.conflict(
                path,
                "a file that grew while it was read",
                format!("at most {max} bytes"),
            ));
        }
        Ok(Some(bytes))
    }

    /// Replace the file at `path` with `contents` atomically: written under a temporary name in
    /// the resolved parent directory, synced, then renamed over the old name (a symlink there is
    /// replaced, never written through).
    pub fn replace_file(&self, path: &str, contents: &[u8], mode: u32) -> Result<(), RootfsError> {
        let (dir, name) = self.parent(path)?;
        let tmp = Self::temp_name(name);
        self.clear_temp(&dir, &tmp);
        let fd = self
            .create_excl(&dir, &tmp, mode)
            .map_err(self.op_err("create file", path))?;
        let mut f = File::from(fd);
        let written = f
            .write_all(contents)
            .and_then(|()| f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(mode)))
            .and_then(|()| f.sync_all());
        drop(f);
        if let Err(e) = written {
            self.clear_temp(&dir, &tmp);
            return Err(self.op_err("write", path)(io_errno(&e)));
        }
        let renamed = self.sys.renameat(dir.as_fd(), tmp.as_str(), name);
        // The name may have been a symlink some cached directory was resolved through.
        self.forget_dirs();
        if let Err(e) = renamed {
            self.clear_temp(&dir, &tmp);
            return Err(self.op_err("rename into place at", path)(e));
        }
        Ok(())
    }
}
