//! Which inodes the MIG capability tree is: recorded at discovery, compared at container start.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::caps_dir;
use crate::config::Config;
use crate::host::inventory::InventoryError;

/// Which inode a procfs entry is, and for a directory how many subdirectories it has: the inode
/// number, its change time and its link count. A re-created entry has another inode and change
/// time (procfs stamps a new inode's times when it makes it; on a regular file system, as in the
/// simulator, any write or re-creation changes the change time).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub ino: u64,
    pub ctime: i64,
    pub ctime_nsec: i64,
    pub nlink: u64,
}

impl Identity {
    fn of(meta: &std::fs::Metadata) -> Identity {
        Identity {
            ino: meta.ino(),
            ctime: meta.ctime(),
            ctime_nsec: meta.ctime_nsec(),
            nlink: meta.nlink(),
        }
    }
}

/// The identity of `path` now; `None` when it does not exist.
pub fn identity(path: &Path) -> Result<Option<Identity>, InventoryError> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) => Ok(Some(Identity::of(&meta))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(InventoryError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// `(name, is a directory)` of each entry of `dir`; `None` when it does not exist.
fn read_dir_names(dir: &Path) -> Result<Option<Vec<(String, bool)>>, InventoryError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(InventoryError::Read {
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| InventoryError::Read {
            path: dir.to_path_buf(),
            source,
        })?;
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        // A name that is not UTF-8 is nothing the driver makes; it still counts as a change.
        out.push((entry.file_name().to_string_lossy().into_owned(), is_dir));
    }
    Ok(Some(out))
}

/// The capability tree now, walked in full (at discovery): the directory itself (`.`),
/// `mig/config` and `mig/monitor`, every `gpu<N>/mig` directory (or `gpu<N>` without one), every
/// GPU-instance directory in it and its `access`, and every compute instance's `access` (or its
/// directory, when it has none). A compute-instance directory holds only its `access`, so a new
/// one shows in its GPU instance's link count, and a re-made one in its `access`.
pub fn caps_tree(config: &Config) -> Result<BTreeMap<String, Identity>, InventoryError> {
    let root = caps_dir(config);
    let mut tree = BTreeMap::new();
    let record = |tree: &mut BTreeMap<String, Identity>, rel: String| {
        let found = identity(&root.join(&rel))?;
        if let Some(id) = found {
            tree.insert(rel, id);
        }
        Ok::<_, InventoryError>(found.is_some())
    };
    if !record(&mut tree, ".".into())? {
        return Ok(tree);
    }
    record(&mut tree, "mig/config".into())?;
    record(&mut tree, "mig/monitor".into())?;
    for (gpu, is_dir) in read_dir_names(&root)?.unwrap_or_default() {
        if !is_dir || !gpu.starts_with("gpu") {
            continue;
        }
        let mig = format!("{gpu}/mig");
        if !record(&mut tree, mig.clone())? {
            record(&mut tree, gpu)?;
            continue;
        }
        for (gi, is_dir) in read_dir_names(&root.join(&mig))?.unwrap_or_default() {
            let gi = format!("{mig}/{gi}");
            record(&mut tree, gi.clone())?;
            if !is_dir {
                continue;
            }
            for (entry, is_dir) in read_dir_names(&root.join(&gi))?.unwrap_or_default() {
                let rel = format!("{gi}/{entry}");
                if is_dir {
                    if !record(&mut tree, format!("{rel}/access"))? {
                        record(&mut tree, rel)?;
                    }
                } else {
                    record(&mut tree, rel)?;
                }
            }
        }
    }
    Ok(tree)
}

/// A directory opened for lookups relative to it only (`O_PATH`); `None` when it does not exist.
fn open_dir(path: &Path) -> io::Result<Option<std::fs::File>> {
    Ok(crate::sys::dirfd::open_dir_path(path)?.map(std::fs::File::from))
}

/// The identity of `rel` under the open directory `dir` (not following a final symlink).
// `st_nlink` is a u64 on x86_64 and a u32 on other Linux targets.
#[allow(clippy::useless_conversion)]
fn identity_at(dir: &std::fs::File, rel: &str) -> io::Result<Option<Identity>> {
    Ok(
        crate::sys::dirfd::lstat_at(dir.as_fd(), rel)?.map(|st| Identity {
            ino: st.st_ino,
            ctime: st.st_ctime,
            ctime_nsec: st.st_ctime_nsec,
            nlink: u64::from(st.st_nlink),
        }),
    )
}

/// The GPU minor of a capability tree entry (`gpu3/mig/gi1/access`: 3); `None` for the
/// host-wide entries (`.`, `mig/config`, `mig/monitor`).
fn entry_gpu(rel: &str) -> Option<u32> {
    let first = rel.split('/').next()?;
    first.strip_prefix("gpu")?.parse().ok()
}

/// Compare the recorded capability tree with what is there now, entry by entry (one `fstatat`
/// each, relative to its GPU's open `mig` directory so that each lookup walks one to three
/// names; no directory listing): the first difference, as a sentence. Only the host-wide
/// entries and those of the GPUs (by minor) `gpus` keeps are compared.
pub fn check_caps_tree(
    config: &Config,
    recorded: &BTreeMap<String, Identity>,
    gpus: impl Fn(u32) -> bool,
) -> Result<(), String> {
    let root = caps_dir(config);
    let read_error = |path: &Path, e: io::Error| {
        InventoryError::Read {
            path: path.to_path_buf(),
            source: e,
        }
        .to_string()
    };
    let root_dir = open_dir(&root).map_err(|e| read_error(&root, e))?;
    let changed = |rel: &str, what: &str| {
        let path = if rel == "." {
            root.clone()
        } else {
            root.join(rel)
        };
        format!("the MIG instances changed: {} {what}", path.display())
    };
    let Some(root_dir) = root_dir else {
        // No capability tree then (no MIG support loaded) is fine only if there is none now.
        return match recorded.is_empty() {
            true => Ok(()),
            false => Err(changed(".", "is gone")),
        };
    };
    if recorded.is_empty() {
        return Err(changed(".", "appeared"));
    }
    // The `gpu<N>/mig` directory open now, with its key and a slash.
    let mut mig: Option<(String, std::fs::File)> = None;
    let kept = recorded
        .iter()
        .filter(|(rel, _)| entry_gpu(rel).is_none_or(&gpus));
    for (rel, then) in kept {
        let is_mig_dir = rel
            .split_once('/')
            .is_some_and(|(gpu, rest)| gpu.starts_with("gpu") && rest == "mig");
        let now = if rel == "." {
            root_dir.metadata().map(|m| Some(Identity::of(&m)))
        } else if is_mig_dir {
            mig = None;
            match open_dir(&root.join(rel)) {
                Ok(Some(dir)) => {
                    let id = dir.metadata().map(|m| Some(Identity::of(&m)));
                    mig = Some((format!("{rel}/"), dir));
                    id
                }
                Ok(None) => Ok(None),
                Err(e) => Err(e),
            }
        } else {
            match &mig {
                Some((prefix, dir)) if rel.starts_with(prefix.as_str()) => {
                    identity_at(dir, &rel[prefix.len()..])
                }
                _ => identity_at(&root_dir, rel),
            }
        };
        let what = match now {
            Ok(Some(now)) if now == *then => continue,
            Ok(Some(now)) if now.ino == then.ino && now.nlink != then.nlink => {
                "has more or fewer entries"
            }
            Ok(Some(_)) => "was re-created or changed",
            Ok(None) => "is gone",
            Err(e) => return Err(read_error(&root.join(rel), e)),
        };
        return Err(changed(rel, what));
    }
    Ok(())
}
