//! The lease file and its lock: read without the lock, change only under it, written
//! atomically through [`crate::host::files`].

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::core::mig::demand::Created;

use super::{Lease, LeaseError, FORMAT_VERSION, LEASE_DIR, LEASE_FILE, LOCK_FILE, LOCK_TIMEOUT};

/// Largest lease file accepted (a 56-instance host with shared leases is a few tens of KiB).
const MAX_FILE_BYTES: u64 = 16 << 20;

/// The lease file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct LeaseFile {
    version: u32,
    leases: Vec<Lease>,
    /// Absent in files without any (what migcage wrote before `create_on_demand`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    created: Vec<Created>,
}

/// What the lease file holds: the leases, and the instances migcage made on demand (see
/// [`crate::core::mig::demand`]), kept in one file so that one rename changes both.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    pub leases: Vec<Lease>,
    pub created: Vec<Created>,
}

/// The lease store of a state directory.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

/// The store, locked: the only way to change it.
#[derive(Debug)]
pub struct Locked<'a> {
    store: &'a Store,
    _lock: Flock<File>,
}

impl Store {
    /// The store under `state_dir` (nothing is created until it is locked).
    pub fn new(state_dir: &Path) -> Store {
        Store {
            dir: state_dir.join(LEASE_DIR),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn file(&self) -> PathBuf {
        self.dir.join(LEASE_FILE)
    }

    /// Read every lease (live or not) without the lock. No store yet means no lease.
    pub fn read(&self) -> Result<Vec<Lease>, LeaseError> {
        Ok(self.read_state()?.leases)
    }

    /// The whole file: leases and the records of instances made on demand.
    pub fn read_state(&self) -> Result<State, LeaseError> {
        let path = self.file();
        let file = match OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(State::default()),
            Err(error) => {
                return Err(LeaseError::Io {
                    what: "open",
                    path,
                    error,
                })
            }
        };
        let buf = crate::sys::read::read_capped(file, MAX_FILE_BYTES).map_err(|error| {
            LeaseError::Io {
                what: "read",
                path: path.clone(),
                error,
            }
        })?;
        if buf.is_empty() {
            // Never written so: a crash between create and write on a disk state_dir, after
            // which no container of before the crash runs any more.
            return Ok(State::default());
        }
        if buf.len() as u64 > MAX_FILE_BYTES {
            return Err(LeaseError::Corrupt {
                path,
                message: format!("larger than {MAX_FILE_BYTES} bytes"),
            });
        }
        let parsed: LeaseFile = serde_json::from_slice(&buf).map_err(|e| LeaseError::Corrupt {
            path: path.clone(),
            message: e.to_string(),
        })?;
        if parsed.version != FORMAT_VERSION {
            return Err(LeaseError::Corrupt {
                path,
                message: format!(
                    "format version {} where this migcage writes {FORMAT_VERSION}",
                    parsed.version
                ),
            });
        }
        Ok(State {
            leases: parsed.leases,
            created: parsed.created,
        })
    }

    /// Take the store's lock (creating the directory), waiting up to [`LOCK_TIMEOUT`].
    pub fn lock(&self) -> Result<Locked<'_>, LeaseError> {
        self.lock_within(LOCK_TIMEOUT)
    }

    /// [`Store::lock`], waiting up to `timeout`.
    pub fn lock_within(&self, timeout: Duration) -> Result<Locked<'_>, LeaseError> {
        std::fs::create_dir_all(&self.dir).map_err(|error| LeaseError::Io {
            what: "create directory",
            path: self.dir.clone(),
            error,
        })?;
        let path = self.dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(|error| LeaseError::Io {
                what: "open",
                path: path.clone(),
                error,
            })?;
        let lock_error = |errno: nix::errno::Errno, path: PathBuf| LeaseError::Io {
            what: "lock",
            path,
            error: io::Error::from(errno),
        };
        // Free (the usual case): no thread.
        let file = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => {
                return Ok(Locked {
                    store: self,
                    _lock: lock,
                })
            }
            Err((f, nix::errno::Errno::EWOULDBLOCK)) => f,
            Err((_, errno)) => return Err(lock_error(errno, path)),
        };
        // Held: wait in the kernel (woken the moment it is unlocked), on a thread, so that a
        // stuck holder costs a timeout and not a hung container start. If the wait times out, the
        // thread's late lock is dropped (unlocked) when it finds nobody listening.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut file = file;
            let result = loop {
                match Flock::lock(file, FlockArg::LockExclusive) {
                    Err((f, nix::errno::Errno::EINTR)) => file = f,
                    other => break other.map_err(|(_, errno)| errno),
                }
            };
            let _ = tx.send(result);
        });
        match rx.recv_timeout(timeout) {
            Ok(Ok(lock)) => Ok(Locked {
                store: self,
                _lock: lock,
            }),
            Ok(Err(errno)) => Err(lock_error(errno, path)),
            Err(_) => Err(LeaseError::LockTimeout {
                path,
                secs: timeout.as_secs_f64(),
            }),
        }
    }

    /// Remove every lease of `container` (poststop, `migcage release`); the leases removed.
    pub fn release(&self, container: &str) -> Result<Vec<Lease>, LeaseError> {
        if !self.file().exists() {
            // Nobody ever leased here: nothing to release, and nothing to create.
            return Ok(Vec::new());
        }
        // Read first without the lock (the file is only ever replaced whole, by rename, so a
        // read sees one version): a container that holds nothing here, the most common case,
        // takes no lock and needs no write access (a rootless engine's poststop hook has none).
        if !self.read()?.iter().any(|l| l.container == container) {
            return Ok(Vec::new());
        }
        let locked = self.lock()?;
        let mut state = locked.read_state()?;
        let (gone, kept): (Vec<Lease>, Vec<Lease>) = std::mem::take(&mut state.leases)
            .into_iter()
            .partition(|l| l.container == container);
        if !gone.is_empty() {
            state.leases = kept;
            locked.write_state(&state)?;
        }
        Ok(gone)
    }
    /// Whether `container` holds a lease here, read without the lock (a rename never shows half
    /// a file): false when the store does not exist.
    pub fn holds(&self, container: &str) -> Result<bool, LeaseError> {
        if !self.file().exists() {
            return Ok(false);
        }
        Ok(self.read()?.iter().any(|l| l.container == container))
    }

    /// Make process `pid` (started at `start_time`) the holder of every lease of `container`: a
    /// runtime wrapper leases at `create` under its own pid and hands the leases to the
    /// container's init once the runtime has made it. Returns how many leases changed holder;
    /// takes no lock when the container holds none.
    pub fn hand_over(
        &self,
        container: &str,
        pid: i32,
        start_time: u64,
    ) -> Result<usize, LeaseError> {
        if !self.holds(container)? {
            return Ok(0);
        }
        let locked = self.lock()?;
        let mut state = locked.read_state()?;
        let mut changed = 0;
        for l in state.leases.iter_mut().filter(|l| l.container == container) {
            if (l.pid, l.start_time) != (pid, start_time) {
                (l.pid, l.start_time) = (pid, start_time);
                changed += 1;
            }
        }
        if changed > 0 {
            locked.write_state(&state)?;
        }
        Ok(changed)
    }
}

impl Locked<'_> {
    /// Read every lease (under the lock).
    pub fn read(&self) -> Result<Vec<Lease>, LeaseError> {
        self.store.read()
    }

    /// Replace the lease file atomically: a temp file renamed over it. Not synced to disk: leases
    /// mean nothing after a reboot (every container is gone), and a file a crash left empty
    /// reads as no lease.
    pub fn write(&self, leases: &[Lease]) -> Result<(), LeaseError> {
        let created = self.store.read_state()?.created;
        self.write_state(&State {
            leases: leases.to_vec(),
            created,
        })
    }

    /// Read the whole file (under the lock).
    pub fn read_state(&self) -> Result<State, LeaseError> {
        self.store.read_state()
    }

    /// Replace the whole file atomically, as [`Locked::write`] does.
    pub fn write_state(&self, state: &State) -> Result<(), LeaseError> {
        let path = self.store.file();
        let io_err = |what: &'static str, p: &Path| {
            let p = p.to_path_buf();
            move |error| LeaseError::Io {
                what,
                path: p,
                error,
            }
        };
        let doc = LeaseFile {
            version: FORMAT_VERSION,
            leases: state.leases.clone(),
            created: state.created.clone(),
        };
        let mut bytes = serde_json::to_vec_pretty(&doc).map_err(|e| LeaseError::Corrupt {
            path: path.clone(),
            message: e.to_string(),
        })?;
        bytes.push(b'\n');
        crate::host::files::AtomicWrite {
            mode: 0o644,
            create_dir: false,
            durable: false,
        }
        .write(&path, &bytes)
        .map_err(io_err("write", &path))
    }
}

#[cfg(test)]
mod tests;
