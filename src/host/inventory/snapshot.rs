//! The inventory snapshot: NVML kept off the container-start path.
//!
//! Full discovery initializes NVML: tens of milliseconds on a healthy host, seconds without
//! persistence mode. What it finds changes only when an administrator changes the GPUs (MIG
//! instances created or destroyed, the driver reloaded). So every full discovery (`migcage list`,
//! `migcage refresh`, `cdi generate`, and a container start that found no valid snapshot) writes
//! the inventory to `<state_dir>/inventory.json`, and a container start loads it and checks it
//! against procfs, without NVML:
//!
//! - the **identity** of the MIG capability tree `driver/nvidia/capabilities`: the inode number,
//!   change time and link count of the tree's root, of every `gpu<N>/mig` and GPU-instance
//!   directory, and of every `access` file (GPU and compute instances, `mig/config` and
//!   `mig/monitor`). A MIG device's UUID is nowhere in procfs, but destroying an instance removes
//!   its entries and creating one makes new ones, which are new inodes with new change times
//!   (procfs stamps an inode's times when it makes it). So an instance destroyed and re-created
//!   under the same ids, with a new UUID, never passes for the old one. An instance created
//!   anywhere adds a directory, which raises its parent's link count (2 plus its subdirectories,
//!   on procfs as on other file systems);
//! - what procfs says, through [`super::verify_with`]: driver version, device majors, every GPU's
//!   `information` (UUID, minor), and the caps minors. The access files are not read again (their
//!   identity is unchanged, so is their text), and neither is mig-minors when its own identity is
//!   unchanged: it lists every capability the driver could ever make (4322 lines for 8 GPUs),
//!   never changes while the driver stays loaded, and parsing it was the largest part of this
//!   check; the entries the inventory took from it stand in for it;
//! - the names of the GPU directories under `driver/nvidia/gpus`;
//! - the proc root and NVML library it was discovered with, and the migcage version.
//!
//! Anything different, missing, unreadable or not owned by us means full discovery, which
//! rewrites the snapshot. Only the opposite mistake (a stale mapping handed out) would be unsafe,
//! so every doubt counts as a difference. A spurious difference (procfs may drop a cached inode
//! under memory pressure and make it anew) costs one discovery, never a wrong device. An entry
//! re-made with the same inode number within the same clock tick as the old one would pass; on
//! procfs a new inode's times are those of its first lookup after the instance was made, so this
//! cannot happen to a destroyed-and-created instance.
//!
//! The identities are taken *before* NVML is read (and mig-minors' before it is read): a change
//! while NVML is being read makes the new snapshot differ from procfs at once, so it is discarded
//! at its first use.

mod identity;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::procfs::MigMinors;
use super::{AccessFiles, Gpu, Inventory, InventoryError, ProcfsInfo};
use crate::config::Config;
pub use identity::{caps_tree, check_caps_tree, identity, Identity};

/// The snapshot's file name in `state_dir`.
pub const FILE_NAME: &str = "inventory.json";
/// The layout of the file; a snapshot of another layout is ignored (and rewritten).
pub const FORMAT: u32 = 2;

/// `<state_dir>/inventory.json`.
pub fn path(config: &Config) -> PathBuf {
    config.state_dir.join(FILE_NAME)
}

/// The capability tree whose identity a snapshot records: `<proc_root>/driver/nvidia/capabilities`.
pub fn caps_dir(config: &Config) -> PathBuf {
    config.proc_path("driver/nvidia/capabilities")
}

/// What a snapshot was discovered from, and what a container start checks it against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Basis {
    pub proc_root: PathBuf,
    pub nvml_library: PathBuf,
    /// Directory names under `driver/nvidia/gpus` (`0000:07:00.0`).
    pub gpu_dirs: Vec<String>,
    /// `driver/nvidia-caps/mig-minors`, taken before it was read; `None` when it did not exist.
    pub mig_minors: Option<Identity>,
    /// The capability tree, relative to [`caps_dir`] (`.` is the directory itself): directories
    /// and access files, as [`caps_tree`] records them.
    pub caps_tree: BTreeMap<String, Identity>,
}

/// The file `<state_dir>/inventory.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub format: u32,
    /// The migcage that wrote it; another version discovers again.
    pub migcage_version: String,
    pub basis: Basis,
    pub inventory: Inventory,
}

/// Where an inventory came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A snapshot that matched procfs: NVML was not touched.
    Snapshot,
    /// Full discovery through NVML; `why` tells why the snapshot could not answer.
    Discovered { why: String },
}

/// Writing the snapshot failed. One line.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("cannot write the inventory snapshot {}: {source}: run migcage as root, or set state_dir in the migcage config to a writable directory", path.display())]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot serialize the inventory snapshot: {0}")]
    Serialize(String),
}

/// A full discovery, and whether its snapshot was written.
#[derive(Debug)]
pub struct Discovery {
    pub inventory: Inventory,
    /// Where the snapshot went, or why it could not be written (the inventory is good either way).
    pub saved: Result<PathBuf, SnapshotError>,
}

impl Snapshot {
    /// A snapshot of `inventory`, discovered with `proc`, mig-minors of identity `mig_minors`
    /// and the capability tree `caps_tree`, each taken before NVML was read.
    pub fn new(
        config: &Config,
        inventory: Inventory,
        proc: &ProcfsInfo,
        mig_minors: Option<Identity>,
        caps_tree: BTreeMap<String, Identity>,
    ) -> Snapshot {
        Snapshot {
            format: FORMAT,
            migcage_version: env!("CARGO_PKG_VERSION").to_string(),
            basis: Basis {
                proc_root: config.proc_root.clone(),
                nvml_library: config.nvml_library.clone(),
                gpu_dirs: proc.gpu_dirs.clone(),
                mig_minors,
                caps_tree,
            },
            inventory,
        }
    }

    /// The mig-minors entries the inventory was assembled from (and checked against): what
    /// [`super::verify`] needs of the file, when the file is known to be unchanged.
    pub fn mig_minors_entries(&self) -> MigMinors {
        let inv = &self.inventory;
        let mut t = MigMinors {
            config: inv.mig_config_minor,
            monitor: inv.mig_monitor_minor,
            ..MigMinors::default()
        };
        for g in &inv.gpus {
            for m in &g.mig_devices {
                t.gi_access
                    .insert((g.minor, m.gpu_instance_id), m.gi_caps_minor);
                t.ci_access.insert(
                    (g.minor, m.gpu_instance_id, m.compute_instance_id),
                    m.ci_caps_minor,
                );
            }
        }
        t
    }

    /// Why this snapshot cannot answer for the host as `proc` shows it now (its mig-minors
    /// as read, or as [`Snapshot::mig_minors_entries`] when unchanged); `Ok` when it can.
    pub fn check(&self, config: &Config, proc: &ProcfsInfo) -> Result<(), String> {
        self.check_scoped(config, proc, None)
    }

    /// [`Snapshot::check`] for a request that depends on only the GPUs `scope` names (indexes in
    /// this snapshot's inventory; `None`: every GPU): the host-wide facts (driver version,
    /// majors, the GPU directories, the tree's root, mig/config and mig/monitor) and those GPUs'
    /// `information` and capability entries. A change on another GPU cannot change what this
    /// request gets; the next request that names that GPU finds it.
    pub fn check_scoped(
        &self,
        config: &Config,
        proc: &ProcfsInfo,
        scope: Option<&BTreeSet<u32>>,
    ) -> Result<(), String> {
        if self.format != FORMAT {
            return Err(format!(
                "the snapshot has format {}, this migcage writes {FORMAT}",
                self.format
            ));
        }
        if self.migcage_version != env!("CARGO_PKG_VERSION") {
            return Err(format!(
                "the snapshot was written by migcage {}, this is {}",
                self.migcage_version,
                env!("CARGO_PKG_VERSION")
            ));
        }
        let b = &self.basis;
        if b.proc_root != config.proc_root || b.nvml_library != config.nvml_library {
            return Err(format!(
                "the snapshot was taken with proc_root {} and nvml_library {}, the config now says {} and {}",
                b.proc_root.display(),
                b.nvml_library.display(),
                config.proc_root.display(),
                config.nvml_library.display()
            ));
        }
        if b.gpu_dirs != proc.gpu_dirs {
            return Err(format!(
                "the GPUs under {} changed: {:?} then, {:?} now",
                config.proc_path("driver/nvidia/gpus").display(),
                b.gpu_dirs,
                proc.gpu_dirs
            ));
        }
        let in_scope = |g: &Gpu| scope.is_none_or(|s| s.contains(&g.index));
        let minors: BTreeSet<u32> = self
            .inventory
            .gpus
            .iter()
            .filter(|g| in_scope(g))
            .map(|g| g.minor)
            .collect();
        // Identity first: it is what lets verify skip the access files.
        check_caps_tree(config, &b.caps_tree, |minor| {
            scope.is_none() || minors.contains(&minor)
        })?;
        super::verify_scoped(
            config,
            &self.inventory,
            proc,
            AccessFiles::Unchanged,
            in_scope,
        )
        .map_err(|e| e.to_string())
    }
}

/// Load the snapshot, if there is one this process may trust: a regular file owned by this
/// user (root on a host) and writable by no one else. `Err` says why not.
pub fn load(config: &Config) -> Result<Snapshot, String> {
    let path = path(config);
    // sys: the O_NOFOLLOW open (libc flags) belongs behind a safe function in src/sys/.
    let mut file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(format!("no snapshot at {}", path.display()))
        }
        Err(e) => return Err(format!("cannot open {}: {e}", path.display())),
    };
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot stat {}: {e}", path.display()))?;
    let euid = nix::unistd::geteuid().as_raw();
    if !meta.is_file() || meta.uid() != euid || meta.mode() & 0o022 != 0 {
        return Err(format!(
            "{} is not a regular file owned by uid {euid} and writable only by it; not trusted",
            path.display()
        ));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    serde_json::from_slice(&bytes).map_err(|e| {
        format!(
            "{} is not a snapshot this migcage reads: {e}",
            path.display()
        )
    })
}

/// Write the snapshot atomically: a new file in `state_dir`, renamed over the old one. Readers
/// see the old snapshot or the new one, never a part. Not synced to disk: `state_dir` is a tmpfs
/// on a host, and a torn file after a crash fails to parse, which only means a discovery.
pub fn save(config: &Config, snapshot: &Snapshot) -> Result<PathBuf, SnapshotError> {
    let path = path(config);
    let write_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SnapshotError::Write { path, source }
    };
    let json = serde_json::to_vec(snapshot).map_err(|e| SnapshotError::Serialize(e.to_string()))?;
    std::fs::create_dir_all(&config.state_dir).map_err(write_error(&config.state_dir))?;
    let written = crate::host::files::AtomicWrite {
        mode: 0o644,
        create_dir: false,
        durable: false,
    }
    .write(&path, &json);
    if let Err(source) = written {
        return Err(SnapshotError::Write { path, source });
    }
    Ok(path)
}

/// Full discovery (NVML, bounded by `nvml_timeout_ms`) with `proc` already read in full (after
/// mig-minors' identity `mig_minors` was taken), then the snapshot written. The capability tree
/// is walked here, before NVML.
fn discover_from(
    config: &Config,
    proc: &ProcfsInfo,
    mig_minors: Option<Identity>,
) -> Result<Discovery, InventoryError> {
    let tree = caps_tree(config)?;
    crate::profile::mark("caps-tree");
    let inventory = super::discover_with(config, proc)?;
    let saved = save(
        config,
        &Snapshot::new(config, inventory.clone(), proc, mig_minors, tree),
    );
    crate::profile::mark("snapshot-save");
    Ok(Discovery { inventory, saved })
}

/// Full discovery, and the snapshot rewritten: what `list`, `refresh` and `cdi generate` do.
pub fn discover_and_save(config: &Config) -> Result<Discovery, InventoryError> {
    let minors = identity(&super::mig_minors_path(config))?;
    let proc = super::read_procfs(config)?;
    crate::profile::mark("procfs");
    discover_from(config, &proc, minors)
}

/// The inventory for a container start: the snapshot when it matches procfs (no NVML), else full
/// discovery, which rewrites it.
pub fn inventory(config: &Config) -> Result<(Inventory, Source), InventoryError> {
    inventory_for(config, |_| None)
}

/// [`inventory`] for a request that depends on only some GPUs: `scope_of` names them (indexes,
/// [`crate::core::plan::gpus_named`]) in the snapshot's inventory, and only they are checked
/// ([`Snapshot::check_scoped`]); `None` checks every GPU. On the snapshot's path each procfs
/// file is read at most once, and the `information` of GPUs out of scope not at all.
pub fn inventory_for(
    config: &Config,
    scope_of: impl FnOnce(&Inventory) -> Option<BTreeSet<u32>>,
) -> Result<(Inventory, Source), InventoryError> {
    let minors = identity(&super::mig_minors_path(config))?;
    let loaded = load(config);
    crate::profile::mark("snapshot-read");
    let why = match loaded {
        Ok(snapshot) => {
            let scope = scope_of(&snapshot.inventory);
            let buses: Option<BTreeSet<String>> = scope.as_ref().map(|s| {
                let gpus = snapshot.inventory.gpus.iter();
                gpus.filter(|g| s.contains(&g.index))
                    .map(Gpu::proc_bus_id)
                    .collect()
            });
            let mut proc = super::read_procfs_scoped(config, buses.as_ref())?;
            let unchanged = minors.is_some() && snapshot.basis.mig_minors == minors;
            proc.mig_minors = if unchanged {
                Some(snapshot.mig_minors_entries())
            } else {
                super::read_mig_minors(config)?
            };
            match snapshot.check_scoped(config, &proc, scope.as_ref()) {
                Ok(()) => {
                    tracing::debug!("inventory from the snapshot");
                    return Ok((snapshot.inventory, Source::Snapshot));
                }
                Err(why) => why,
            }
        }
        Err(why) => why,
    };
    tracing::info!(why = %why, "inventory snapshot not usable: full discovery");
    // Discovery assembles from every GPU's information and the whole mig-minors table.
    let mut proc = super::read_procfs_except_mig_minors(config)?;
    proc.mig_minors = super::read_mig_minors(config)?;
    let d = discover_from(config, &proc, minors)?;
    if let Err(e) = &d.saved {
        tracing::warn!(error = %e, "inventory snapshot not written");
    }
    Ok((d.inventory, Source::Discovered { why }))
}

#[cfg(test)]
mod tests;
