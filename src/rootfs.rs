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
}

/// A container root filesystem, held by a file descriptor.
#[derive(Debug)]
pub struct Rootfs {
    root: OwnedFd,
    path: PathBuf,
}

/// What to do with a mount once it is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MountFlags {
    pub readonly: bool,
    pub nodev: bool,
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
        Ok(Rootfs {
            root: owned(fd),
            path: path.to_path_buf(),
        })
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
        .map_err(self.op_err("mount tmpfs on", path))
    }

    /// Bind-mount the host object `source` at `path` inside the rootfs, creating the target (a
    /// directory or an empty file, matching the source), then remount it nosuid, noexec and
    /// optionally read-only and nodev.
    pub fn bind_mount(
        &self,
        source: &Path,
        path: &str,
        flags: MountFlags,
    ) -> Result<(), RootfsError> {
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
        if target_is_dir != src_meta.is_dir() {
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
        let mut remount =
            MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC;
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
        .map_err(self.op_err("remount", path))
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
