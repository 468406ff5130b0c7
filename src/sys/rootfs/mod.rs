//! Safe operations on paths inside a container's root filesystem, which an image author controls.
//!
//! Every path is resolved through a file descriptor of the root with `openat2(RESOLVE_IN_ROOT |
//! RESOLVE_NO_MAGICLINKS)`: a symlink in the image (absolute or `../..`) is resolved as if the
//! rootfs were `/`, so it can never lead out of it. Where openat2 is missing (kernels before 5.6)
//! or a seccomp filter refuses it, `walk.rs` does the same lookup one `O_PATH | O_NOFOLLOW`
//! component at a time; which one a process uses is decided once, on its first lookup. Objects are created with the `*at` calls
//! relative to a resolved parent directory and a single-component name, and mounts target the
//! resolved descriptor (`/proc/self/fd/N`), never a joined path string that was checked and then
//! used.
//!
//! The raw calls are behind [`RootfsSyscall`]: [`LinuxRootfs`] makes them; the recording double in
//! `test.rs` (unit tests only) models a small tree, records every call and fails the ones a test
//! names. This file holds [`Rootfs`] itself and path resolution; `make.rs` creates directories,
//! nodes and symlinks, `files.rs` reads and writes files, `mounts.rs` mounts.

#[cfg(test)]
mod double_tests;
mod files;
mod linux;
mod make;
mod mounts;
mod syscall;
#[cfg(test)]
pub mod test;
#[cfg(test)]
mod tests;
mod walk;
#[cfg(test)]
mod walk_tests;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use nix::errno::Errno;
use nix::fcntl::{OFlag, ResolveFlag};
use nix::sys::stat::SFlag;
use nix::sys::statfs::FsType;

pub use linux::{clone_tree, mount_api_available, LinuxRootfs};
pub use syscall::{RootfsSyscall, Stat};

/// An error on a path inside the rootfs.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("cannot open container rootfs {path}: {errno}")]
    OpenRoot { path: PathBuf, errno: Errno },
    #[error("{op} {path} inside the container rootfs {root}: {errno}")]
    Op {
        op: &'static str,
        path: String,
        root: PathBuf,
        errno: Errno,
    },
    #[error("{path} inside the container rootfs {root} already exists and is {found}, not {wanted}: remove it from the image")]
    Conflict {
        path: String,
        root: PathBuf,
        found: String,
        wanted: String,
    },
    #[error("{path} is not a clean absolute path inside the container (no '..', no empty name)")]
    BadPath { path: String },
    #[error("{path} inside the container rootfs {root} is on a mount that is not the container's own (a bind mount from the host?): migcage writes only to the container's root filesystem, its /dev tmpfs and its own mounts; remove that mount from the spec")]
    ForeignMount { path: String, root: PathBuf },
}

/// A container root filesystem, held by a file descriptor.
pub struct Rootfs<'s> {
    sys: &'s dyn RootfsSyscall,
    root: OwnedFd,
    path: PathBuf,
    /// Mount ids migcage may create files in: the rootfs's own, and those [`Rootfs::allow_writes_in`]
    /// and [`Rootfs::mount_tmpfs`] add. A directory on any other mount (a host directory the spec
    /// bind-mounts into the container) is never written to.
    writable: RefCell<Vec<u64>>,
    /// The directories already resolved or made, by their clean path relative to the root
    /// (`""` the root itself). A container start makes most of its objects in a few directories
    /// (/dev, /dev/nvidia-caps, the procfs view's); without this, each object's directory would
    /// be resolved again from the root, one `openat2` per component, and its mount read again
    /// (#18). Emptied by whatever could change what a cached path resolves to
    /// ([`Rootfs::forget_dirs`]).
    dirs: RefCell<HashMap<String, Rc<Dir>>>,
    /// Tests only: walk in userspace even where openat2 works.
    force_walk: bool,
    /// Make objects as their directory's owner ([`Rootfs::creating_as_owner`]).
    as_owner: bool,
}

impl std::fmt::Debug for Rootfs<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rootfs")
            .field("root", &self.root)
            .field("path", &self.path)
            .field("writable", &self.writable)
            .finish()
    }
}

/// A directory inside the rootfs, held by an `O_PATH` descriptor, with the id of the mount it is
/// on once that was asked for.
pub(super) struct Dir {
    fd: OwnedFd,
    mount: Cell<Option<u64>>,
}

impl AsFd for Dir {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// The id of the mount `fd` is on (`mnt_id` of /proc/self/fdinfo), which tells two bind mounts
/// of the same filesystem apart where `st_dev` cannot.
pub fn mount_id(fd: &OwnedFd) -> Result<u64, Errno> {
    linux::mount_id(fd.as_fd())
}

/// Run `f` with the process's umask at 0, so that what it creates has exactly the modes asked
/// for; the umask is restored after.
pub fn with_umask_cleared<T>(f: impl FnOnce() -> T) -> T {
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::empty());
    let result = f();
    nix::sys::stat::umask(old);
    result
}

/// What to do with a mount once it is made (`nosuid` always).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MountFlags {
    pub readonly: bool,
    pub nodev: bool,
    /// False only for what must run or be mapped executable (driver binaries and libraries).
    pub noexec: bool,
}

/// Split a container path into clean components: absolute, no `..`, no empty or `.` names.
pub fn components(path: &str) -> Result<Vec<&str>, RootfsError> {
    let bad = || RootfsError::BadPath {
        path: path.to_string(),
    };
    let rest = path.strip_prefix('/').ok_or_else(bad)?;
    let parts: Vec<&str> = rest.split('/').filter(|p| !p.is_empty()).collect();
    if parts.is_empty() || parts.iter().any(|p| *p == "." || *p == "..") || path.contains('\0') {
        return Err(bad());
    }
    Ok(parts)
}

/// The errno of an I/O error (EIO when it has none).
fn io_errno(e: &std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

fn kind_name(mode: u32) -> &'static str {
    match SFlag::from_bits_truncate(mode & SFlag::S_IFMT.bits()) {
        SFlag::S_IFDIR => "a directory",
        SFlag::S_IFREG => "a regular file",
        SFlag::S_IFLNK => "a symlink",
        SFlag::S_IFCHR => "a character device",
        SFlag::S_IFBLK => "a block device",
        SFlag::S_IFIFO => "a fifo",
        SFlag::S_IFSOCK => "a socket",
        _ => "something unknown",
    }
}

impl Rootfs<'static> {
    /// Open the rootfs directory at `path` (a host path).
    pub fn open(path: &Path) -> Result<Rootfs<'static>, RootfsError> {
        Rootfs::open_on(&LinuxRootfs, path)
    }
}

impl<'s> Rootfs<'s> {
    /// [`Rootfs::open`] through `sys` (the kernel's calls, or the recording double).
    pub fn open_on(sys: &'s dyn RootfsSyscall, path: &Path) -> Result<Rootfs<'s>, RootfsError> {
        let open_err = |errno| RootfsError::OpenRoot {
            path: path.to_path_buf(),
            errno,
        };
        let root = sys.open_root(path).map_err(open_err)?;
        let id = sys.mount_id(root.as_fd()).map_err(open_err)?;
        Ok(Rootfs {
            sys,
            root,
            path: path.to_path_buf(),
            writable: RefCell::new(vec![id]),
            dirs: RefCell::default(),
            force_walk: false,
            as_owner: false,
        })
    }

    /// Make every object as the owner of the directory it goes in (`setfsuid`/`setfsgid`), not
    /// only where the filesystem cannot own the caller's ids: for work done from the host on a
    /// user-namespaced container's rootfs before its runtime runs, which then makes its own
    /// files there as the container's root.
    pub fn creating_as_owner(mut self) -> Self {
        self.as_owner = true;
        self
    }

    /// Tests only: resolve every path with the userspace walk, as on a kernel without openat2.
    #[cfg(test)]
    pub fn force_walk(mut self) -> Self {
        self.force_walk = true;
        self
    }

    /// Allow creating files on the mount that holds the directory `path` (the container's /dev
    /// tmpfs, once the caller has checked it is one).
    pub fn allow_writes_in(&self, path: &str) -> Result<(), RootfsError> {
        let fd = self.resolve(path, OFlag::O_PATH | OFlag::O_DIRECTORY)?;
        let id = self
            .sys
            .mount_id(fd.as_fd())
            .map_err(self.op_err("read the mount of", path))?;
        self.writable.borrow_mut().push(id);
        Ok(())
    }

    /// Refuse to create anything in `dir` (which names `path`) unless it is on a writable mount.
    fn check_writable(&self, dir: &Dir, path: &str) -> Result<(), RootfsError> {
        let id = match dir.mount.get() {
            Some(id) => id,
            None => {
                let id = self
                    .sys
                    .mount_id(dir.as_fd())
                    .map_err(self.op_err("read the mount of", path))?;
                dir.mount.set(Some(id));
                id
            }
        };
        if self.writable.borrow().contains(&id) {
            Ok(())
        } else {
            Err(RootfsError::ForeignMount {
                path: path.to_string(),
                root: self.path.clone(),
            })
        }
    }

    /// The cached directory at `rel` (a clean relative path), or `open`'s descriptor for it,
    /// remembered.
    fn dir_at(
        &self,
        rel: &str,
        open: impl FnOnce() -> Result<OwnedFd, Errno>,
    ) -> Result<Rc<Dir>, Errno> {
        if let Some(dir) = self.dirs.borrow().get(rel) {
            return Ok(Rc::clone(dir));
        }
        let dir = Rc::new(Dir {
            fd: open()?,
            mount: Cell::new(None),
        });
        self.dirs
            .borrow_mut()
            .insert(rel.to_string(), Rc::clone(&dir));
        Ok(dir)
    }

    /// The directory at `rel` (a clean relative path; `""` the root), resolved once.
    fn cached_dir(&self, rel: &str) -> Result<Rc<Dir>, Errno> {
        self.dir_at(rel, || {
            self.resolve_rel(rel, OFlag::O_PATH | OFlag::O_DIRECTORY)
        })
    }

    /// Forget every cached directory: after a mount over a directory, or a name replaced by a
    /// rename (a symlink, a file), a path may resolve to something else than it did.
    fn forget_dirs(&self) {
        self.dirs.borrow_mut().clear();
    }

    /// The host path the rootfs was opened at.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn op_err(&self, op: &'static str, path: &str) -> impl Fn(Errno) -> RootfsError + '_ {
        let path = path.to_string();
        move |errno| RootfsError::Op {
            op,
            path: path.clone(),
            root: self.path.clone(),
            errno,
        }
    }

    fn conflict(
        &self,
        path: &str,
        found: impl Into<String>,
        wanted: impl Into<String>,
    ) -> RootfsError {
        RootfsError::Conflict {
            path: path.to_string(),
            root: self.path.clone(),
            found: found.into(),
            wanted: wanted.into(),
        }
    }

    /// Run `create`, a call that makes an object in `dir`. Where it fails with EOVERFLOW (`dir`
    /// is on a filesystem mounted in the container's user namespace, say the /dev tmpfs of a
    /// user-namespaced container, which cannot own a file of the hook's ids, unmapped there), it
    /// runs once more as `dir`'s owner (`setfsuid`/`setfsgid`; the ids are the hook's own again
    /// after it): the object is then the container's, as if its root had made it.
    pub(super) fn create_in<T>(
        &self,
        dir: &impl AsFd,
        mut create: impl FnMut() -> Result<T, Errno>,
    ) -> Result<T, Errno> {
        if !self.as_owner {
            match create() {
                Err(Errno::EOVERFLOW) => {}
                other => return other,
            }
        }
        let owner = self.sys.fstat(dir.as_fd())?;
        if self.as_owner
            && (owner.uid, owner.gid)
                == (
                    nix::unistd::geteuid().as_raw(),
                    nix::unistd::getegid().as_raw(),
                )
        {
            return create();
        }
        let (uid, gid) = self.sys.set_fs_ids(owner.uid, owner.gid)?;
        let result = create();
        self.sys.set_fs_ids(uid, gid)?;
        result
    }

    /// Resolve `path` (absolute, inside the container) to a descriptor, never leaving the rootfs.
    pub fn resolve(&self, path: &str, flags: OFlag) -> Result<OwnedFd, RootfsError> {
        let rel: String = components(path)?.join("/");
        self.resolve_rel(&rel, flags)
            .map_err(self.op_err("open", path))
    }

    fn resolve_rel(&self, rel: &str, flags: OFlag) -> Result<OwnedFd, Errno> {
        // openat2 refuses O_PATH combined with anything but O_DIRECTORY, O_NOFOLLOW, O_CLOEXEC.
        let extra = if flags.contains(OFlag::O_PATH) {
            OFlag::O_CLOEXEC
        } else {
            OFlag::O_CLOEXEC | OFlag::O_NOCTTY
        };
        let verdict = self.sys.openat2_verdict();
        if self.force_walk || verdict.get() == Some(&false) {
            return walk::walk(self.sys, self.root.as_fd(), rel, flags | extra);
        }
        let target = if rel.is_empty() { "." } else { rel };
        match self.openat2(target, flags | extra) {
            Err(e @ (Errno::ENOSYS | Errno::EPERM)) if verdict.get().is_none() => {
                if e == Errno::EPERM && !self.openat2_refused() {
                    let _ = verdict.set(true);
                    return Err(e);
                }
                let _ = verdict.set(false);
                tracing::debug!(errno = %e, "openat2 is not usable here: rootfs paths are resolved one component at a time instead");
                walk::walk(self.sys, self.root.as_fd(), rel, flags | extra)
            }
            Ok(fd) => {
                let _ = verdict.set(true);
                Ok(fd)
            }
            Err(e) => Err(e),
        }
    }

    fn openat2(&self, target: &str, flags: OFlag) -> Result<OwnedFd, Errno> {
        let resolve = ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS;
        self.sys.openat2(self.root.as_fd(), target, flags, resolve)
    }

    /// Is an EPERM from openat2 the syscall itself being refused (a seccomp filter that returns
    /// EPERM for what it does not know, as older Docker and libseccomp profiles do) rather than
    /// the file's own answer (an immutable file opened for writing)? An `O_PATH` open of the
    /// root itself cannot be refused for the file's sake, so if that fails too, it is the call.
    fn openat2_refused(&self) -> bool {
        matches!(
            self.openat2(".", OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC),
            Err(Errno::EPERM | Errno::ENOSYS)
        )
    }

    /// Does `path` exist inside the rootfs (following in-root symlinks)?
    pub fn exists(&self, path: &str) -> Result<bool, RootfsError> {
        match self.resolve(path, OFlag::O_PATH) {
            Ok(_) => Ok(true),
            Err(RootfsError::Op {
                errno: Errno::ENOENT,
                ..
            }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Is `path` (following in-root symlinks) a character device? False when it cannot be
    /// resolved.
    pub fn is_char_device(&self, path: &str) -> bool {
        self.resolve(path, OFlag::O_PATH)
            .ok()
            .and_then(|fd| self.sys.fstat(fd.as_fd()).ok())
            .is_some_and(|st| st.is(SFlag::S_IFCHR))
    }

    /// The type of the filesystem the directory `path` is on; None when it cannot be resolved.
    pub fn fs_type(&self, path: &str) -> Option<FsType> {
        let fd = self
            .resolve(path, OFlag::O_PATH | OFlag::O_DIRECTORY)
            .ok()?;
        self.sys.fstatfs(fd.as_fd()).ok()
    }
}
