//! Writing a file on the host atomically: the one writer every part of migcage uses (the
//! runtime wrapper's config.json, CDI specs, the inventory snapshot, the lease store, the files
//! `configure` edits).
//!
//! The bytes go to a temporary file beside the target (same directory, so the rename cannot
//! cross file systems), opened with `O_CREAT | O_EXCL | O_NOFOLLOW`, then renamed over the
//! target: a reader sees the old file or the new one, never half of one. An existing target's
//! mode and owner are kept; a new one gets [`AtomicWrite::mode`]. The temporary file is removed
//! on any error.
//!
//! [`rewrite_in_place`] is the one exception, for a file no process reads while it is written.

use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// How [`AtomicWrite::write`] writes.
#[derive(Debug, Clone, Copy)]
pub struct AtomicWrite {
    /// The mode of a file that does not exist yet (an existing file keeps its own).
    pub mode: u32,
    /// Make the parent directory (and its parents) when it is missing.
    pub create_dir: bool,
    /// `fsync` the file before the rename: for files whose loss after a crash matters more than
    /// a millisecond (config files, specs). Files rewritten on every container start (leases,
    /// the snapshot) skip it: a crash loses at most what the next start rebuilds.
    pub durable: bool,
}

impl Default for AtomicWrite {
    fn default() -> AtomicWrite {
        AtomicWrite {
            mode: 0o644,
            create_dir: false,
            durable: true,
        }
    }
}

impl AtomicWrite {
    /// Replace `path` with `bytes`.
    pub fn write(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if self.create_dir {
            std::fs::create_dir_all(dir)?;
        }
        let old = std::fs::metadata(path).ok();
        let mode = old
            .as_ref()
            .map_or(self.mode, |m| m.permissions().mode() & 0o7777);
        let tmp = temporary_name(dir, path);
        let result = (|| {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&tmp)?;
            f.write_all(bytes)?;
            // The umask may have narrowed the mode given to open.
            f.set_permissions(std::fs::Permissions::from_mode(mode))?;
            if let Some(m) = &old {
                let mine = f.metadata()?;
                if mine.uid() != m.uid() || mine.gid() != m.gid() {
                    std::os::unix::fs::fchown(&f, Some(m.uid()), Some(m.gid()))?;
                }
            }
            if self.durable {
                f.sync_all()?;
            }
            drop(f);
            std::fs::rename(&tmp, path)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }
}

/// Replace `path` with `bytes`, durably, keeping an existing file's mode and owner (0644 for a
/// new one); the parent directory must exist.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    AtomicWrite::default().write(path, bytes)
}

/// Overwrite the regular file at `path` with `bytes` in place (write, then cut to length),
/// keeping its inode, mode and owner; `Ok(false)`, touching nothing, where it is not a regular
/// file with one link (a symlink, a file shared by another name), which only a rename may
/// replace.
///
/// Not atomic: a reader during the write, or after a crash in it, sees a mix of old and new.
/// It is for the runtime wrapper's config.json, which only the runtime it starts afterwards
/// reads, and whose loss loses only that container. A rename instead makes a new inode and
/// frees the old one, and on ext4 (`auto_da_alloc`) writes the new file's data out at once:
/// about 170 µs against 8 µs in place on a VM's disk (#18; Podman keeps bundles on /var/lib).
pub fn rewrite_in_place(path: &Path, bytes: &[u8]) -> io::Result<bool> {
    let mut f = match std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Ok(false),
        Err(e) => return Err(e),
    };
    let meta = f.metadata()?;
    if !meta.is_file() || meta.nlink() != 1 {
        return Ok(false);
    }
    f.write_all(bytes)?;
    if meta.len() > bytes.len() as u64 {
        f.set_len(bytes.len() as u64)?;
    }
    Ok(true)
}

/// `.<name>.<pid>.<n>.migcage.tmp` in `dir`: unique within the process (a counter) and across
/// processes (the pid), hidden, and recognisable as migcage's.
fn temporary_name(dir: &Path, path: &Path) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let n = N.fetch_add(1, Ordering::Relaxed);
    dir.join(format!(".{name}.{}.{n}.migcage.tmp", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn new_file_gets_the_mode_and_leaves_no_temporary() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.json");
        let w = AtomicWrite {
            mode: 0o600,
            ..AtomicWrite::default()
        };
        w.write(&p, b"one").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"one");
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(names(d.path()), ["a.json"]);
    }

    #[test]
    fn rewrite_in_place_keeps_the_inode_and_cuts_to_length() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("config.json");
        std::fs::write(&p, b"a longer old text").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        let ino = std::fs::metadata(&p).unwrap().ino();
        assert!(rewrite_in_place(&p, b"short").unwrap());
        assert_eq!(std::fs::read(&p).unwrap(), b"short");
        assert!(rewrite_in_place(&p, b"a text longer than before").unwrap());
        assert_eq!(std::fs::read(&p).unwrap(), b"a text longer than before");
        let meta = std::fs::metadata(&p).unwrap();
        assert_eq!(meta.ino(), ino);
        assert_eq!(meta.permissions().mode() & 0o777, 0o640);
        assert_eq!(names(d.path()), ["config.json"]);
    }

    #[test]
    fn rewrite_in_place_leaves_links_and_odd_files_to_a_rename() {
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("elsewhere.json");
        std::fs::write(&target, b"not mine").unwrap();
        let link = d.path().join("config.json");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(!rewrite_in_place(&link, b"new").unwrap());
        let shared = d.path().join("shared.json");
        std::fs::hard_link(&target, &shared).unwrap();
        assert!(!rewrite_in_place(&shared, b"new").unwrap());
        assert_eq!(std::fs::read(&target).unwrap(), b"not mine");
        let missing = rewrite_in_place(&d.path().join("missing"), b"x").unwrap_err();
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn existing_file_keeps_its_mode() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("config.json");
        std::fs::write(&p, b"old").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        write_atomically(&p, b"new").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o640
        );
        assert_eq!(names(d.path()), ["config.json"]);
    }

    #[test]
    fn missing_directory_is_made_only_when_asked() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("cdi/spec.json");
        let e = write_atomically(&p, b"x").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        AtomicWrite {
            create_dir: true,
            ..AtomicWrite::default()
        }
        .write(&p, b"x")
        .unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"x");
    }

    #[test]
    fn a_failed_rename_removes_the_temporary() {
        let d = tempfile::tempdir().unwrap();
        // A directory in the target's place: the rename fails (EISDIR / ENOTEMPTY).
        let p = d.path().join("taken");
        std::fs::create_dir(&p).unwrap();
        std::fs::write(p.join("inside"), b"").unwrap();
        assert!(write_atomically(&p, b"x").is_err());
        assert_eq!(names(d.path()), ["taken"]);
    }

    #[test]
    fn temporary_names_differ_within_a_process() {
        let d = Path::new("/x");
        let a = temporary_name(d, Path::new("/x/f"));
        let b = temporary_name(d, Path::new("/x/f"));
        assert_ne!(a, b);
        assert!(a.file_name().unwrap().to_string_lossy().starts_with(".f."));
    }
}
