//! Safe operations on paths inside a container's root filesystem, which an image author controls.
//!
//! Every path is resolved through a file descriptor of the root with `openat2(RESOLVE_IN_ROOT |
//! RESOLVE_NO_MAGICLINKS)`: a symlink in the image (absolute or `../..`) is resolved as if the
//! rootfs were `/`, so it can never lead out of it. Objects are created with the `*at` calls
//! relative to a resolved parent directory and a single-component name, and mounts target the
//! resolved descriptor (`/proc/self/fd/N`), never a joined path string that was checked and then
//! used.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, openat2, OFlag, OpenHow, ResolveFlag};
use nix::mount::{mount, MsFlags};
use nix::sys::stat::{fstat, fstatat, makedev, mkdirat, mknodat, Mode, SFlag};
use nix::unistd::{fchownat, Gid, Uid};

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
#[derive(Debug)]
pub struct Rootfs {
    root: OwnedFd,
    path: PathBuf,
    /// Mount ids migcage may create files in: the rootfs's own, and those [`Rootfs::allow_writes_in`]
    /// and [`Rootfs::mount_tmpfs`] add. A directory on any other mount (a host directory the spec
    /// bind-mounts into the container) is never written to.
    writable: std::cell::RefCell<Vec<u64>>,
}

/// The id of the mount `fd` is on (`mnt_id` of /proc/self/fdinfo), which tells two bind mounts
/// of the same filesystem apart where `st_dev` cannot.
pub fn mount_id(fd: &OwnedFd) -> Result<u64, Errno> {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd()))
        .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))?;
    info.lines()
        .find_map(|l| l.strip_prefix("mnt_id:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or(Errno::EINVAL)
}

/// What to do with a mount once it is made (`nosuid` always).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MountFlags {
    pub readonly: bool,
    pub nodev: bool,
    /// False only for what must run or be mapped executable (driver binaries and libraries).
    pub noexec: bool,
}

fn owned(fd: std::os::fd::RawFd) -> OwnedFd {
    // SAFETY: `fd` was just returned by a successful open call and is owned by nobody else.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

fn fd_path(fd: &OwnedFd) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
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

impl Rootfs {
    /// Open the rootfs directory at `path` (a host path).
    pub fn open(path: &Path) -> Result<Rootfs, RootfsError> {
        let fd = nix::fcntl::open(
            path,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|errno| RootfsError::OpenRoot {
            path: path.to_path_buf(),
            errno,
        })?;
        let root = owned(fd);
        let id = mount_id(&root).map_err(|errno| RootfsError::OpenRoot {
            path: path.to_path_buf(),
            errno,
        })?;
        Ok(Rootfs {
            root,
            path: path.to_path_buf(),
            writable: std::cell::RefCell::new(vec![id]),
        })
    }

    /// Allow creating files on the mount that holds the directory `path` (the container's /dev
    /// tmpfs, once the caller has checked it is one).
    pub fn allow_writes_in(&self, path: &str) -> Result<(), RootfsError> {
        let fd = self.resolve(path, OFlag::O_PATH | OFlag::O_DIRECTORY)?;
        let id = mount_id(&fd).map_err(self.op_err("read the mount of", path))?;
        self.writable.borrow_mut().push(id);
        Ok(())
    }

    /// Refuse to create anything in `dir` (which names `path`) unless it is on a writable mount.
    fn check_writable(&self, dir: &OwnedFd, path: &str) -> Result<(), RootfsError> {
        let id = mount_id(dir).map_err(self.op_err("read the mount of", path))?;
        if self.writable.borrow().contains(&id) {
            Ok(())
        } else {
            Err(RootfsError::ForeignMount {
                path: path.to_string(),
                root: self.path.clone(),
            })
        }
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
        let how = OpenHow::new()
            .flags(flags | extra)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
        let target = if rel.is_empty() { "." } else { rel };
        openat2(self.root.as_raw_fd(), target, how).map(owned)
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

    /// Create every missing directory of `path` (mode `mode`) and return the last one.
    pub fn mkdir_all(&self, path: &str, mode: u32) -> Result<OwnedFd, RootfsError> {
        let parts = components(path)?;
        let err = self.op_err("create directory", path);
        let mut dir = self
            .resolve_rel("", OFlag::O_PATH | OFlag::O_DIRECTORY)
            .map_err(&err)?;
        for i in 0..parts.len() {
            let prefix = parts[..=i].join("/");
            dir = match self.resolve_rel(&prefix, OFlag::O_PATH | OFlag::O_DIRECTORY) {
                Ok(fd) => fd,
                Err(Errno::ENOENT) => {
                    let at = if i == 0 {
                        "/".to_string()
                    } else {
                        format!("/{}", parts[..i].join("/"))
                    };
                    self.check_writable(&dir, &at)?;
                    match mkdirat(
                        Some(dir.as_raw_fd()),
                        parts[i],
                        Mode::from_bits_truncate(mode),
                    ) {
                        Ok(()) | Err(Errno::EEXIST) => {}
                        Err(e) => return Err(err(e)),
                    }
                    match self.resolve_rel(&prefix, OFlag::O_PATH | OFlag::O_DIRECTORY) {
                        Ok(fd) => fd,
                        // mkdirat found a name there, yet it resolves to nothing: a symlink whose
                        // target does not exist inside the rootfs.
                        Err(Errno::ENOENT) => {
                            return Err(RootfsError::Conflict {
                                path: format!("/{prefix}"),
                                root: self.path.clone(),
                                found: "a symlink to nothing inside the container".into(),
                                wanted: "a directory".into(),
                            })
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
    fn parent<'p>(&self, path: &'p str) -> Result<(OwnedFd, &'p str), RootfsError> {
        let parts = components(path)?;
        let name = parts[parts.len() - 1];
        let dir = if parts.len() == 1 {
            self.resolve_rel("", OFlag::O_PATH | OFlag::O_DIRECTORY)
                .map_err(self.op_err("open", "/"))?
        } else {
            self.mkdir_all(&format!("/{}", parts[..parts.len() - 1].join("/")), 0o755)?
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
        let created = match mknodat(
            Some(dir.as_raw_fd()),
            name,
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(mode),
            dev,
        ) {
            Ok(()) => true,
            Err(Errno::EEXIST) => {
                let st = fstatat(
                    Some(dir.as_raw_fd()),
                    name,
                    nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
                )
                .map_err(self.op_err("stat", path))?;
                let is_char = st.st_mode & SFlag::S_IFMT.bits() == SFlag::S_IFCHR.bits();
                if !is_char || st.st_rdev != dev {
                    return Err(RootfsError::Conflict {
                        path: path.to_string(),
                        root: self.path.clone(),
                        found: if is_char {
                            format!(
                                "device {}:{}",
                                nix::sys::stat::major(st.st_rdev),
                                nix::sys::stat::minor(st.st_rdev)
                            )
                        } else {
                            kind_name(st.st_mode).to_string()
                        },
                        wanted: format!("character device {major}:{minor}"),
                    });
                }
                false
            }
            Err(e) => return Err(self.op_err("create device node", path)(e)),
        };
        fchownat(
            Some(dir.as_raw_fd()),
            name,
            Some(Uid::from_raw(uid)),
            Some(Gid::from_raw(gid)),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(self.op_err("chown", path))?;
        Ok(created)
    }

    /// Create an empty regular file (a bind-mount target) unless something is already there.
    pub fn ensure_file(&self, path: &str, mode: u32) -> Result<(), RootfsError> {
        let (dir, name) = self.parent(path)?;
        match openat(
            Some(dir.as_raw_fd()),
            name,
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(mode),
        ) {
            Ok(fd) => {
                drop(owned(fd));
                Ok(())
            }
            Err(Errno::EEXIST) => Ok(()),
            Err(e) => Err(self.op_err("create file", path)(e)),
        }
    }

    /// Write a new regular file with `contents` (it must not exist).
    pub fn write_file(&self, path: &str, contents: &[u8], mode: u32) -> Result<(), RootfsError> {
        let (dir, name) = self.parent(path)?;
        let fd = openat(
            Some(dir.as_raw_fd()),
            name,
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(mode),
        )
        .map_err(self.op_err("create file", path))?;
        let mut f = File::from(owned(fd));
        f.write_all(contents).map_err(|e| {
            self.op_err("write", path)(Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))
        })
    }

    /// Mount a fresh tmpfs at `path` (a directory, created when missing).
    pub fn mount_tmpfs(&self, path: &str, options: &str) -> Result<(), RootfsError> {
        let target = self.mkdir_all(path, 0o755)?;
        mount(
            Some("tmpfs"),
            fd_path(&target).as_str(),
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            Some(options),
        )
        .map_err(self.op_err("mount tmpfs on", path))?;
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
        let src_meta = std::fs::metadata(source).map_err(|e| RootfsError::Op {
            op: "stat host source for",
            path: format!("{path} ({})", source.display()),
            root: self.path.clone(),
            errno: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
        })?;
        if src_meta.is_dir() {
            self.mkdir_all(path, 0o755)?;
        } else {
            self.ensure_file(path, 0o644)?;
        }
        let target = self.resolve(path, OFlag::O_PATH | OFlag::O_NOFOLLOW)?;
        let st = fstat(target.as_fd().as_raw_fd()).map_err(self.op_err("stat", path))?;
        let target_is_dir = st.st_mode & SFlag::S_IFMT.bits() == SFlag::S_IFDIR.bits();
        let target_is_link = st.st_mode & SFlag::S_IFMT.bits() == SFlag::S_IFLNK.bits();
        if target_is_link || target_is_dir != src_meta.is_dir() {
            return Err(RootfsError::Conflict {
                path: path.to_string(),
                root: self.path.clone(),
                found: kind_name(st.st_mode).to_string(),
                wanted: if src_meta.is_dir() {
                    "a directory".into()
                } else {
                    "a file".into()
                },
            });
        }
        {
            use std::os::unix::fs::MetadataExt;
            if (st.st_dev, st.st_ino) == (src_meta.dev(), src_meta.ino()) {
                return Ok(false);
            }
        }
        mount(
            Some(source),
            fd_path(&target).as_str(),
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(self.op_err("bind mount onto", path))?;
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
        mount(
            None::<&str>,
            fd_path(&mounted).as_str(),
            None::<&str>,
            remount,
            None::<&str>,
        )
        .map_err(self.op_err("remount", path))?;
        Ok(true)
    }

    /// A name for a temporary sibling of `name`, private to this process.
    fn temp_name(name: &str) -> String {
        format!(".{name}.migcage-{}", std::process::id())
    }

    /// Remove a leftover temporary file of an earlier, interrupted run of this process id.
    fn clear_temp(dir: &OwnedFd, tmp: &str) {
        let _ = nix::unistd::unlinkat(
            Some(dir.as_raw_fd()),
            tmp,
            nix::unistd::UnlinkatFlags::NoRemoveDir,
        );
    }

    /// Make `path` a symbolic link to `target`: created under a temporary name in the resolved
    /// parent directory and renamed over whatever file or link was there (never a directory),
    /// so that the name is never missing or half made. Returns false when `path` already was
    /// exactly that link.
    pub fn symlink(&self, path: &str, target: &str) -> Result<bool, RootfsError> {
        let (dir, name) = self.parent(path)?;
        let raw = dir.as_raw_fd();
        match fstatat(Some(raw), name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => {
                let fmt = st.st_mode & SFlag::S_IFMT.bits();
                if fmt == SFlag::S_IFLNK.bits() {
                    let existing = nix::fcntl::readlinkat(Some(raw), name)
                        .map_err(self.op_err("read symlink", path))?;
                    if existing.as_os_str().as_encoded_bytes() == target.as_bytes() {
                        return Ok(false);
                    }
                } else if fmt == SFlag::S_IFDIR.bits() {
                    return Err(RootfsError::Conflict {
                        path: path.to_string(),
                        root: self.path.clone(),
                        found: kind_name(st.st_mode).to_string(),
                        wanted: format!("a symlink to {target}"),
                    });
                }
            }
            Err(Errno::ENOENT) => {}
            Err(e) => return Err(self.op_err("stat", path)(e)),
        }
        let tmp = Self::temp_name(name);
        Self::clear_temp(&dir, &tmp);
        nix::unistd::symlinkat(target, Some(raw), tmp.as_str())
            .map_err(self.op_err("create symlink", path))?;
        if let Err(e) = nix::fcntl::renameat(Some(raw), tmp.as_str(), Some(raw), name) {
            Self::clear_temp(&dir, &tmp);
            return Err(self.op_err("rename symlink into place at", path)(e));
        }
        Ok(true)
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
        let st = fstat(fd.as_raw_fd()).map_err(self.op_err("stat", path))?;
        if st.st_mode & SFlag::S_IFMT.bits() != SFlag::S_IFREG.bits() {
            return Err(RootfsError::Conflict {
                path: path.to_string(),
                root: self.path.clone(),
                found: kind_name(st.st_mode).to_string(),
                wanted: "a regular file".into(),
            });
        }
        if st.st_size < 0 || st.st_size as u64 > max as u64 {
            return Err(RootfsError::Conflict {
                path: path.to_string(),
                root: self.path.clone(),
                found: format!("a file of {} bytes", st.st_size),
                wanted: format!("at most {max} bytes"),
            });
        }
        // Reopen the very object the descriptor names, for reading.
        let file = nix::fcntl::open(
            fd_path(&fd).as_str(),
            OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOCTTY,
            Mode::empty(),
        )
        .map_err(self.op_err("open", path))?;
        let mut bytes = Vec::new();
        use std::io::Read;
        File::from(owned(file))
            .take(max as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| {
                self.op_err("read", path)(Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))
            })?;
        if bytes.len() > max {
            return Err(RootfsError::Conflict {
                path: path.to_string(),
                root: self.path.clone(),
                found: "a file that grew while it was read".into(),
                wanted: format!("at most {max} bytes"),
            });
        }
        Ok(Some(bytes))
    }

    /// Replace the file at `path` with `contents` atomically: written under a temporary name in
    /// the resolved parent directory, synced, then renamed over the old name (a symlink there is
    /// replaced, never written through).
    pub fn replace_file(&self, path: &str, contents: &[u8], mode: u32) -> Result<(), RootfsError> {
        let (dir, name) = self.parent(path)?;
        let raw = dir.as_raw_fd();
        let tmp = Self::temp_name(name);
        Self::clear_temp(&dir, &tmp);
        let fd = openat(
            Some(raw),
            tmp.as_str(),
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(mode),
        )
        .map_err(self.op_err("create file", path))?;
        let mut f = File::from(owned(fd));
        let written = f
            .write_all(contents)
            .and_then(|()| f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(mode)))
            .and_then(|()| f.sync_all());
        drop(f);
        if let Err(e) = written {
            Self::clear_temp(&dir, &tmp);
            return Err(self.op_err("write", path)(Errno::from_raw(
                e.raw_os_error().unwrap_or(libc::EIO),
            )));
        }
        if let Err(e) = nix::fcntl::renameat(Some(raw), tmp.as_str(), Some(raw), name) {
            Self::clear_temp(&dir, &tmp);
            return Err(self.op_err("rename into place at", path)(e));
        }
        Ok(())
    }

    /// Remount the mount at `path` read-only (keeping nosuid, nodev, noexec).
    pub fn remount_readonly(&self, path: &str) -> Result<(), RootfsError> {
        let fd = self.resolve(path, OFlag::O_PATH | OFlag::O_DIRECTORY)?;
        mount(
            None::<&str>,
            fd_path(&fd).as_str(),
            None::<&str>,
            MsFlags::MS_REMOUNT
                | MsFlags::MS_RDONLY
                | MsFlags::MS_NOSUID
                | MsFlags::MS_NODEV
                | MsFlags::MS_NOEXEC,
            None::<&str>,
        )
        .map_err(self.op_err("remount read-only", path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, FileTypeExt, MetadataExt};

    fn tmp() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    #[test]
    fn components_refuse_escapes() {
        assert_eq!(components("/dev/nvidia0").unwrap(), vec!["dev", "nvidia0"]);
        assert_eq!(components("//dev//x/").unwrap(), vec!["dev", "x"]);
        for bad in ["dev/x", "/", "/dev/../etc", "/./x", ""] {
            assert!(components(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn mkdir_all_follows_symlinks_only_inside_the_root() {
        let outside = tmp();
        let root = tmp();
        // An image whose /usr/lib64 points at a host directory, absolutely and relatively.
        std::fs::create_dir(root.path().join("usr")).unwrap();
        symlink(outside.path(), root.path().join("usr/lib64")).unwrap();
        symlink("../../../../../../..", root.path().join("usr/up")).unwrap();
        let r = Rootfs::open(root.path()).unwrap();
        // The absolute symlink is resolved as if the rootfs were /: its target does not exist
        // there, so this is a clear error, not a directory on the host.
        let e = r.mkdir_all("/usr/lib64/nvidia", 0o755).unwrap_err();
        assert!(
            e.to_string()
                .contains("/usr/lib64 inside the container rootfs"),
            "{e}"
        );
        assert!(e.to_string().contains("a symlink to nothing"), "{e}");
        // `..` past the top stays at the top.
        r.mkdir_all("/usr/up/etc/escape", 0o755).unwrap();
        assert_eq!(
            std::fs::read_dir(outside.path()).unwrap().count(),
            0,
            "nothing may appear outside"
        );
        assert!(root.path().join("etc/escape").is_dir());
        // Once the target exists inside the rootfs, the symlink is followed there.
        std::fs::create_dir_all(root.path().join(outside.path().strip_prefix("/").unwrap()))
            .unwrap();
        r.mkdir_all("/usr/lib64/nvidia", 0o755).unwrap();
        assert!(root
            .path()
            .join(outside.path().strip_prefix("/").unwrap())
            .join("nvidia")
            .is_dir());
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    }

    #[test]
    fn write_file_refuses_an_existing_symlink() {
        let outside = tmp();
        let root = tmp();
        std::fs::create_dir(root.path().join("etc")).unwrap();
        symlink(outside.path().join("marker"), root.path().join("etc/x")).unwrap();
        let r = Rootfs::open(root.path()).unwrap();
        assert!(r.write_file("/etc/x", b"hi", 0o644).is_err());
        assert!(!outside.path().join("marker").exists());
        r.write_file("/etc/y", b"hi", 0o644).unwrap();
        assert_eq!(std::fs::read(root.path().join("etc/y")).unwrap(), b"hi");
    }

    fn is_root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    #[test]
    fn mknod_is_idempotent_and_detects_conflicts() {
        if !is_root() {
            eprintln!("SKIP mknod_is_idempotent_and_detects_conflicts: needs root (CAP_MKNOD)");
            return;
        }
        let root = tmp();
        let r = Rootfs::open(root.path()).unwrap();
        let old = nix::sys::stat::umask(Mode::empty());
        assert!(r
            .mknod_char("/dev/nvidia-caps/nvidia-cap12", 509, 12, 0o444, 0, 0)
            .unwrap());
        assert!(!r
            .mknod_char("/dev/nvidia-caps/nvidia-cap12", 509, 12, 0o444, 0, 0)
            .unwrap());
        nix::sys::stat::umask(old);
        let m =
            std::fs::symlink_metadata(root.path().join("dev/nvidia-caps/nvidia-cap12")).unwrap();
        assert!(m.file_type().is_char_device());
        assert_eq!(m.rdev(), makedev(509, 12));
        assert_eq!(m.mode() & 0o777, 0o444);
        let e = r
            .mknod_char("/dev/nvidia-caps/nvidia-cap12", 509, 13, 0o444, 0, 0)
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("device 509:12, not character device 509:13"),
            "{e}"
        );
        std::fs::write(root.path().join("dev/nvidia0"), b"").unwrap();
        let e = r
            .mknod_char("/dev/nvidia0", 195, 0, 0o666, 0, 0)
            .unwrap_err();
        assert!(e.to_string().contains("a regular file"), "{e}");
    }

    #[test]
    fn symlinks_replace_files_and_links_never_directories() {
        let outside = tmp();
        let root = tmp();
        let r = Rootfs::open(root.path()).unwrap();
        let lib = "/usr/lib/x86_64-linux-gnu";
        assert!(r
            .symlink(&format!("{lib}/libcuda.so.1"), "libcuda.so.550")
            .unwrap());
        assert!(
            !r.symlink(&format!("{lib}/libcuda.so.1"), "libcuda.so.550")
                .unwrap(),
            "the same link again is left alone"
        );
        let host = root.path().join("usr/lib/x86_64-linux-gnu");
        assert_eq!(
            std::fs::read_link(host.join("libcuda.so.1")).unwrap(),
            Path::new("libcuda.so.550")
        );
        // A hostile link at the name is replaced, not followed.
        symlink(outside.path().join("victim"), host.join("libcuda.so")).unwrap();
        assert!(r
            .symlink(&format!("{lib}/libcuda.so"), "libcuda.so.1")
            .unwrap());
        assert_eq!(
            std::fs::read_link(host.join("libcuda.so")).unwrap(),
            Path::new("libcuda.so.1")
        );
        // A regular file of the image is replaced.
        std::fs::write(host.join("libnvidia-ml.so.1"), b"stub").unwrap();
        assert!(r
            .symlink(&format!("{lib}/libnvidia-ml.so.1"), "libnvidia-ml.so.550")
            .unwrap());
        assert!(std::fs::symlink_metadata(host.join("libnvidia-ml.so.1"))
            .unwrap()
            .file_type()
            .is_symlink());
        // A directory is a conflict.
        std::fs::create_dir(host.join("libdir.so.1")).unwrap();
        let e = r
            .symlink(&format!("{lib}/libdir.so.1"), "x")
            .unwrap_err()
            .to_string();
        assert!(e.contains("is a directory, not a symlink to x"), "{e}");
        // No temporary names are left behind.
        let leftovers: Vec<_> = std::fs::read_dir(&host)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains("migcage"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_symlinked_parent_keeps_links_inside() {
        let outside = tmp();
        let root = tmp();
        std::fs::create_dir_all(root.path().join("usr/lib")).unwrap();
        // The library directory points at a host directory that also exists inside the rootfs.
        let inside_twin = root.path().join(outside.path().strip_prefix("/").unwrap());
        std::fs::create_dir_all(&inside_twin).unwrap();
        symlink(outside.path(), root.path().join("usr/lib/x86_64-linux-gnu")).unwrap();
        let r = Rootfs::open(root.path()).unwrap();
        r.symlink("/usr/lib/x86_64-linux-gnu/libcuda.so.1", "libcuda.so.550")
            .unwrap();
        assert!(inside_twin.join("libcuda.so.1").is_symlink());
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    }

    #[test]
    fn read_file_reads_only_regular_files_inside() {
        let outside = tmp();
        let root = tmp();
        std::fs::create_dir(root.path().join("etc")).unwrap();
        let r = Rootfs::open(root.path()).unwrap();
        assert_eq!(r.read_file("/etc/ld.so.cache", 100).unwrap(), None);
        std::fs::write(root.path().join("etc/real"), b"inside").unwrap();
        std::fs::write(outside.path().join("real"), b"outside").unwrap();
        // An absolute symlink resolves inside the rootfs.
        symlink(
            outside.path().join("real"),
            root.path().join("etc/ld.so.cache"),
        )
        .unwrap();
        assert_eq!(r.read_file("/etc/ld.so.cache", 100).unwrap(), None);
        std::fs::remove_file(root.path().join("etc/ld.so.cache")).unwrap();
        symlink("../../../../etc/real", root.path().join("etc/ld.so.cache")).unwrap();
        assert_eq!(
            r.read_file("/etc/ld.so.cache", 100).unwrap().as_deref(),
            Some(&b"inside"[..])
        );
        let e = r.read_file("/etc/real", 3).unwrap_err().to_string();
        assert!(e.contains("at most 3 bytes"), "{e}");
        // A fifo is refused without blocking on it.
        nix::unistd::mkfifo(
            &root.path().join("etc/fifo"),
            Mode::from_bits_truncate(0o644),
        )
        .unwrap();
        let e = r.read_file("/etc/fifo", 100).unwrap_err().to_string();
        assert!(e.contains("is a fifo, not a regular file"), "{e}");
    }

    #[test]
    fn replace_file_is_atomic_and_never_writes_through_a_link() {
        let outside = tmp();
        let root = tmp();
        std::fs::create_dir(root.path().join("etc")).unwrap();
        std::fs::write(outside.path().join("victim"), b"keep").unwrap();
        symlink(
            outside.path().join("victim"),
            root.path().join("etc/ld.so.cache"),
        )
        .unwrap();
        let r = Rootfs::open(root.path()).unwrap();
        r.replace_file("/etc/ld.so.cache", b"new cache", 0o644)
            .unwrap();
        let m = std::fs::symlink_metadata(root.path().join("etc/ld.so.cache")).unwrap();
        assert!(m.is_file());
        assert_eq!(m.mode() & 0o777, 0o644);
        assert_eq!(
            std::fs::read(root.path().join("etc/ld.so.cache")).unwrap(),
            b"new cache"
        );
        assert_eq!(
            std::fs::read(outside.path().join("victim")).unwrap(),
            b"keep"
        );
        r.replace_file("/etc/ld.so.cache", b"newer", 0o644).unwrap();
        assert_eq!(
            std::fs::read(root.path().join("etc/ld.so.cache")).unwrap(),
            b"newer"
        );
        assert_eq!(
            std::fs::read_dir(root.path().join("etc")).unwrap().count(),
            1
        );
        std::fs::create_dir(root.path().join("etc/dir")).unwrap();
        assert!(r.replace_file("/etc/dir", b"x", 0o644).is_err());
    }

    #[test]
    fn bind_mount_refuses_a_symlink_target_and_is_idempotent() {
        if !is_root() {
            eprintln!(
                "SKIP bind_mount_refuses_a_symlink_target_and_is_idempotent: needs root (mount)"
            );
            return;
        }
        let outside = tmp();
        let src = tmp();
        std::fs::write(src.path().join("libx.so.1"), b"lib").unwrap();
        let root = tmp();
        std::fs::create_dir(root.path().join("lib")).unwrap();
        symlink(
            format!("../../../..{}", outside.path().display()),
            root.path().join("lib/hostile.so"),
        )
        .unwrap();
        let (root_path, src_path) = (root.path().to_path_buf(), src.path().join("libx.so.1"));
        // In a thread of its own that leaves for a private mount namespace: its mounts die with
        // it, and the rest of the test process never sees them.
        let worker = std::thread::spawn(move || in_private_namespace(&root_path, &src_path));
        worker.join().unwrap();
        assert_eq!(
            std::fs::read(root.path().join("lib/libx.so.1")).unwrap(),
            b"",
            "outside the private namespace the target is the empty file, not the mount"
        );
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    }

    fn in_private_namespace(root: &Path, src: &Path) {
        // CLONE_NEWNS implies CLONE_FS: only this thread moves.
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).unwrap();
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            None::<&str>,
        )
        .unwrap();
        let r = Rootfs::open(root).unwrap();
        let flags = MountFlags {
            readonly: true,
            nodev: true,
            noexec: false,
        };
        let e = r
            .bind_mount(src, "/lib/hostile.so", flags)
            .unwrap_err()
            .to_string();
        assert!(e.contains("is a symlink, not a file"), "{e}");
        assert!(r.bind_mount(src, "/lib/libx.so.1", flags).unwrap());
        assert!(
            !r.bind_mount(src, "/lib/libx.so.1", flags).unwrap(),
            "a second run finds its own mount"
        );
        let mounted = root.join("lib/libx.so.1");
        assert_eq!(std::fs::read(&mounted).unwrap(), b"lib");
        // unshare() moved only this thread: its mounts are in thread-self.
        let info = std::fs::read_to_string("/proc/thread-self/mountinfo").unwrap();
        let line = info
            .lines()
            .find(|l| l.split(' ').nth(4) == Some(mounted.to_str().unwrap()))
            .unwrap_or_else(|| {
                panic!(
                    "{} not in mountinfo: {}",
                    mounted.display(),
                    info.lines()
                        .filter(|l| l.contains("libx"))
                        .collect::<Vec<_>>()
                        .join("\n")
                )
            });
        let opts = line.split(' ').nth(5).unwrap();
        assert!(opts.starts_with("ro,") && opts.contains("nosuid") && opts.contains("nodev"));
        assert!(!opts.contains("noexec"), "{opts}");
    }

    #[test]
    fn mknod_through_a_dev_symlink_stays_inside() {
        if !is_root() {
            eprintln!("SKIP mknod_through_a_dev_symlink_stays_inside: needs root (CAP_MKNOD)");
            return;
        }
        let root = tmp();
        // /dev -> / : the node lands at the rootfs's top, never in the host's /.
        symlink("/", root.path().join("dev")).unwrap();
        let r = Rootfs::open(root.path()).unwrap();
        r.mknod_char("/dev/nvidia-test-node-xyz", 195, 0, 0o666, 0, 0)
            .unwrap();
        assert!(root.path().join("nvidia-test-node-xyz").exists());
        assert!(!Path::new("/nvidia-test-node-xyz").exists());
    }
}
