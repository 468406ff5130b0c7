//! Mounting inside the rootfs: a tmpfs, bind mounts of host objects, read-only remounts.

use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

use nix::fcntl::OFlag;
use nix::mount::MsFlags;
use nix::sys::stat::SFlag;

use super::{kind_name, MountFlags, Rootfs, RootfsError};

/// Where a bind mount comes from.
#[derive(Clone, Copy)]
enum Source<'a> {
    /// A host path, bind-mounted (`mount --bind`).
    Host(&'a Path),
    /// A detached copy of the host path, attached (`move_mount`).
    Tree(BorrowedFd<'a>, &'a Path),
}

impl Rootfs<'_> {
    /// Mount a fresh tmpfs at `path` (a directory, created when missing).
    pub fn mount_tmpfs(&self, path: &str, options: &str) -> Result<(), RootfsError> {
        let target = self.dir_all(path, 0o755)?;
        let mounted = self.sys.mount(
            Some(Path::new("tmpfs")),
            target.as_fd(),
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            Some(options),
        );
        // The directory and what was under it are covered now.
        self.forget_dirs();
        mounted.map_err(self.op_err("mount tmpfs on", path))?;
        // migcage's own tmpfs: files may be made in it.
        self.allow_writes_in(path)
    }

    /// Bind-mount the host object `source` at `path` inside the rootfs, creating the target (a
    /// directory or an empty file, matching the source), then remount it nosuid and, as `flags`
    /// say, read-only, nodev and noexec. A symlink at `path` itself is refused (its target is
    /// never mounted over). Returns false, doing nothing, when `path` already is `source` (an
    /// earlier run's mount, or the runtime's from the same spec).
    pub fn bind_mount(
        &self,
        source: &Path,
        path: &str,
        flags: MountFlags,
    ) -> Result<bool, RootfsError> {
        self.mount_source(Source::Host(source), path, flags)
    }

    /// [`Rootfs::bind_mount`] of `tree`, a detached copy of the host object `source`
    /// ([`super::clone_tree`], made in the host's mount namespace), attached with `move_mount`:
    /// from inside a container's mount namespace, where a bind mount of a host object is
    /// refused.
    pub fn bind_tree(
        &self,
        tree: BorrowedFd<'_>,
        source: &Path,
        path: &str,
        flags: MountFlags,
    ) -> Result<bool, RootfsError> {
        self.mount_source(Source::Tree(tree, source), path, flags)
    }

    fn mount_source(
        &self,
        from: Source<'_>,
        path: &str,
        flags: MountFlags,
    ) -> Result<bool, RootfsError> {
        let source = match from {
            Source::Host(p) | Source::Tree(_, p) => p,
        };
        let src = match from {
            Source::Host(p) => self.sys.stat_host(p),
            Source::Tree(fd, _) => self.sys.fstat(fd),
        }
        .map_err(|errno| RootfsError::Op {
            op: "stat host source for",
            path: format!("{path} ({})", source.display()),
            root: self.path.clone(),
            errno,
        })?;
        let src_is_dir = src.is(SFlag::S_IFDIR);
        if src_is_dir {
            self.mkdir_all(path, 0o755)?;
        } else {
            self.ensure_file(path, 0o644)?;
        }
        let target = self.resolve(path, OFlag::O_PATH | OFlag::O_NOFOLLOW)?;
        let st = self
            .sys
            .fstat(target.as_fd())
            .map_err(self.op_err("stat", path))?;
        if st.is(SFlag::S_IFLNK) || st.is(SFlag::S_IFDIR) != src_is_dir {
            let wanted = if src_is_dir { "a directory" } else { "a file" };
            return Err(self.conflict(path, kind_name(st.mode), wanted));
        }
        if (st.dev, st.ino) == (src.dev, src.ino) {
            return Ok(false);
        }
        let mounted = match from {
            Source::Host(p) => {
                self.sys
                    .mount(Some(p), target.as_fd(), None, MsFlags::MS_BIND, None)
            }
            Source::Tree(fd, _) => self.sys.move_mount(fd, target.as_fd()),
        };
        if src_is_dir {
            // The directory and what was under it are covered now (a file mounted over a file
            // changes no directory).
            self.forget_dirs();
        }
        mounted.map_err(self.op_err("bind mount onto", path))?;
        // The descriptor above names the object under the new mount: resolve again for the mount.
        let mounted = self.resolve(path, OFlag::O_PATH | OFlag::O_NOFOLLOW)?;
        let mut remount = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_NOSUID;
        if flags.noexec {
            remount |= MsFlags::MS_NOEXEC;
        }
        if flags.readonly {
            remount |= MsFlags::MS_RDONLY;
        }
        if flags.nodev {
            remount |= MsFlags::MS_NODEV;
        }
        self.sys
            .mount(None, mounted.as_fd(), None, remount, None)
            .map_err(self.op_err("remount", path))?;
        Ok(true)
    }

    /// Remount the mount at `path` read-only (keeping nosuid, nodev, noexec).
    pub fn remount_readonly(&self, path: &str) -> Result<(), RootfsError> {
        let fd = self.resolve(path, OFlag::O_PATH | OFlag::O_DIRECTORY)?;
        let flags = MsFlags::MS_REMOUNT
            | MsFlags::MS_RDONLY
            | MsFlags::MS_NOSUID
            | MsFlags::MS_NODEV
            | MsFlags::MS_NOEXEC;
        self.sys
            .mount(None, fd.as_fd(), None, flags, None)
            .map_err(self.op_err("remount read-only", path))
    }
}
