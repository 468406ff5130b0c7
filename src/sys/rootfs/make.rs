//! Creating directories, device nodes and symlinks inside the rootfs.

use std::os::fd::AsFd;
use std::rc::Rc;

use nix::errno::Errno;
use nix::sys::stat::{makedev, Mode, SFlag};

use super::{components, kind_name, Dir, Rootfs, RootfsError};

impl Rootfs<'_> {
    /// Create every missing directory of `path` (mode `mode`).
    pub fn mkdir_all(&self, path: &str, mode: u32) -> Result<(), RootfsError> {
        self.dir_all(path, mode).map(drop)
    }

    /// [`Rootfs::mkdir_all`], returning the last directory. A directory that is already there
    /// (the common case) takes one lookup, or none when it was looked up before; a missing one
    /// is made one component at a time from the deepest that exists.
    pub(super) fn dir_all(&self, path: &str, mode: u32) -> Result<Rc<Dir>, RootfsError> {
        let parts = components(path)?;
        let err = self.op_err("create directory", path);
        match self.cached_dir(&parts.join("/")) {
            Ok(dir) => return Ok(dir),
            Err(Errno::ENOENT) => {}
            Err(e) => return Err(err(e)),
        }
        let mut dir = self.cached_dir("").map_err(&err)?;
        for i in 0..parts.len() {
            let prefix = parts[..=i].join("/");
            dir = match self.cached_dir(&prefix) {
                Ok(dir) => dir,
                Err(Errno::ENOENT) => {
                    let at = if i == 0 {
                        "/".to_string()
                    } else {
                        format!("/{}", parts[..i].join("/"))
                    };
                    self.check_writable(&dir, &at)?;
                    let mode = Mode::from_bits_truncate(mode);
                    match self.create_in(&dir, || self.sys.mkdirat(dir.as_fd(), parts[i], mode)) {
                        Ok(()) | Err(Errno::EEXIST) => {}
                        Err(e) => return Err(err(e)),
                    }
                    match self.cached_dir(&prefix) {
                        Ok(dir) => dir,
                        // mkdirat found a name there, yet it resolves to nothing: a symlink whose
                        // target does not exist inside the rootfs.
                        Err(Errno::ENOENT) => {
                            return Err(self.conflict(
                                &format!("/{prefix}"),
                                "a symlink to nothing inside the container",
                                "a directory",
                            ))
                        }
                        Err(e) => return Err(err(e)),
                    }
                }
                Err(e) => return Err(err(e)),
            };
        }
        Ok(dir)
    }

    /// The parent directory of `path` (created when missing) and the final name.
    pub(super) fn parent<'p>(&self, path: &'p str) -> Result<(Rc<Dir>, &'p str), RootfsError> {
        let parts = components(path)?;
        let name = parts[parts.len() - 1];
        let dir = if parts.len() == 1 {
            self.cached_dir("").map_err(self.op_err("open", "/"))?
        } else {
            self.dir_all(&format!("/{}", parts[..parts.len() - 1].join("/")), 0o755)?
        };
        self.check_writable(&dir, path)?;
        Ok((dir, name))
    }

    /// Create the character device `path` with `major:minor`, `mode` and owner; an existing node
    /// with the same device number is kept (idempotent), anything else there is a conflict.
    /// Returns true when it created the node.
    pub fn mknod_char(
        &self,
        path: &str,
        major: u32,
        minor: u32,
        mode: u32,
        uid: u32,
        gid: u32,
    ) -> Result<bool, RootfsError> {
        let (dir, name) = self.parent(path)?;
        let dev = makedev(u64::from(major), u64::from(minor));
        let mode = Mode::from_bits_truncate(mode);
        let created = match self.create_in(&dir, || {
            self.sys
                .mknodat(dir.as_fd(), name, SFlag::S_IFCHR, mode, dev)
        }) {
            Ok(()) => true,
            Err(Errno::EEXIST) => {
                let st = self
                    .sys
                    .lstatat(dir.as_fd(), name)
                    .map_err(self.op_err("stat", path))?;
                let is_char = st.is(SFlag::S_IFCHR);
                if !is_char || st.rdev != dev {
                    let found = if is_char {
                        format!(
                            "device {}:{}",
                            nix::sys::stat::major(st.rdev),
                            nix::sys::stat::minor(st.rdev)
                        )
                    } else {
                        kind_name(st.mode).to_string()
                    };
                    return Err(self.conflict(
                        path,
                        found,
                        format!("character device {major}:{minor}"),
                    ));
                }
                false
            }
            Err(e) => return Err(self.op_err("create device node", path)(e)),
        };
        self.sys
            .lchownat(dir.as_fd(), name, uid, gid)
            .map_err(self.op_err("chown", path))?;
        Ok(created)
    }

    /// Create an empty regular file (a bind-mount target) unless something is already there.
    pub fn ensure_file(&self, path: &str, mode: u32) -> Result<(), RootfsError> {
        let (dir, name) = self.parent(path)?;
        match self.create_excl(&dir, name, mode) {
            Ok(fd) => {
                drop(fd);
                Ok(())
            }
            Err(Errno::EEXIST) => Ok(()),
            Err(e) => Err(self.op_err("create file", path)(e)),
        }
    }

    /// Make `path` a symbolic link to `target`: created under a temporary name in the resolved
    /// parent directory and renamed over whatever file or link was there (never a directory),
    /// so that the name is never missing or half made. Returns false when `path` already was
    /// exactly that link.
    pub fn symlink(&self, path: &str, target: &str) -> Result<bool, RootfsError> {
        let (dir, name) = self.parent(path)?;
        match self.sys.lstatat(dir.as_fd(), name) {
            Ok(st) => {
                if st.is(SFlag::S_IFLNK) {
                    let existing = self
                        .sys
                        .readlinkat(dir.as_fd(), name)
                        .map_err(self.op_err("read symlink", path))?;
                    if existing.as_encoded_bytes() == target.as_bytes() {
                        return Ok(false);
                    }
                } else if st.is(SFlag::S_IFDIR) {
                    return Err(self.conflict(
                        path,
                        kind_name(st.mode),
                        format!("a symlink to {target}"),
                    ));
                }
            }
            Err(Errno::ENOENT) => {}
            Err(e) => return Err(self.op_err("stat", path)(e)),
        }
        let tmp = Self::temp_name(name);
        self.clear_temp(&dir, &tmp);
        self.create_in(&dir, || {
            self.sys.symlinkat(target, dir.as_fd(), tmp.as_str())
        })
        .map_err(self.op_err("create symlink", path))?;
        let renamed = self.sys.renameat(dir.as_fd(), tmp.as_str(), name);
        // The name may have been a symlink some cached directory was resolved through.
        self.forget_dirs();
        if let Err(e) = renamed {
            self.clear_temp(&dir, &tmp);
            return Err(self.op_err("rename symlink into place at", path)(e));
        }
        Ok(true)
    }
}
