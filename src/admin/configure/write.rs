//! Making the change `configure` decided on: the `migcage-runtime` link, a timestamped backup of
//! the file, then the file itself, replaced atomically.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::host::files::write_atomically;

use super::{ConfigureError, Outcome};

/// `t` in UTC as the backup files' `YYYYMMDDTHHMMSSZ` (RFC 3339 without its separators).
pub fn backup_stamp(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t)
        .to_string()
        .replace(['-', ':'], "")
}

/// `FILE.migcage-backup-<UTC time>`, with `.1`, `.2`, ... when that name is taken.
fn backup_name(path: &Path, now: SystemTime) -> PathBuf {
    let base = format!("{}.migcage-backup-{}", path.display(), backup_stamp(now));
    let mut candidate = PathBuf::from(&base);
    let mut n = 1;
    while candidate.symlink_metadata().is_ok() {
        candidate = PathBuf::from(format!("{base}.{n}"));
        n += 1;
    }
    candidate
}

/// Make `out`'s link, then (when the file changes) back up the old file (`existed`) or make its
/// directory, and write `new_text` over it. Records the backup in `out`.
pub(super) fn apply(
    out: &mut Outcome,
    existed: bool,
    new_text: &str,
) -> Result<(), ConfigureError> {
    let file = out.file.clone();
    if let Some(link) = &out.link {
        let target = std::env::current_exe()
            .ok()
            .and_then(|p| p.file_name().map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("migcage"));
        std::os::unix::fs::symlink(&target, link).map_err(|source| ConfigureError::Write {
            path: link.clone(),
            source,
        })?;
    }
    if !out.changed {
        return Ok(());
    }
    if existed {
        let backup = backup_name(&file, SystemTime::now());
        std::fs::copy(&file, &backup).map_err(|source| ConfigureError::Backup {
            path: file.clone(),
            backup: backup.clone(),
            source,
        })?;
        out.backup = Some(backup);
    } else if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| ConfigureError::Write {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    write_atomically(&file, new_text.as_bytes()).map_err(|source| ConfigureError::Write {
        path: file.clone(),
        source,
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn backup_stamps() {
        let t = |secs: u64| backup_stamp(UNIX_EPOCH + Duration::from_secs(secs));
        assert_eq!(t(0), "19700101T000000Z");
        assert_eq!(t(951_782_400), "20000229T000000Z");
        assert_eq!(t(1_795_594_555), "20261125T081555Z");
        assert_eq!(t(4_107_542_399), "21000228T235959Z");
    }

    #[test]
    fn backup_names_do_not_collide() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("daemon.json");
        let now = UNIX_EPOCH + Duration::from_secs(1_795_594_555);
        let first = backup_name(&f, now);
        assert_eq!(
            first,
            d.path().join("daemon.json.migcage-backup-20261125T081555Z")
        );
        std::fs::write(&first, "").unwrap();
        assert_eq!(
            backup_name(&f, now),
            d.path()
                .join("daemon.json.migcage-backup-20261125T081555Z.1")
        );
    }
}
