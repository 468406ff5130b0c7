//! Leases: which running container holds which MIG instance, so that a request by profile
//! (`NVIDIA_VISIBLE_DEVICES=profile:1g.5gb`) gets an instance nobody else is using.
//!
//! # The store
//!
//! One JSON file, `<state_dir>/leases/leases.json`, next to a lock file `<state_dir>/leases/lock`.
//! `state_dir` is `/run/migcage` by default: a tmpfs, so a reboot frees every lease. There is no
//! daemon: every migcage that changes the file holds an exclusive `flock` on the lock file from
//! reading the file to writing it back (read, choose, write), and writes it atomically (a temp file
//! renamed over it). Readers that change nothing (`migcage list`, `explain`) read without the
//! lock: a rename never shows them half a file.
//!
//! # A lease
//!
//! Each lease names the MIG instance (UUID), the container (its id), the container's init process
//! as the host sees it (pid and start time, field 22 of `/proc/<pid>/stat`), when it was taken, and
//! what the container asked for. It ends when:
//! - the `poststop` hook runs for the container (`migcage hook poststop`, on `runc delete`), or an
//!   operator runs `migcage release <container-id>`; or
//! - the next allocation finds it **stale**: the pid is gone, is a zombie, or now belongs to a
//!   process with another start time (pid reuse). A container killed without its poststop hook
//!   (SIGKILL of the runtime, Docker's `--gpus`, which registers no poststop) therefore frees its
//!   instance as soon as its init is gone.
//!
//! A container's id names its leases: the hook run again at a later stage (prestart, then
//! createContainer) for the same container gets the same instances back, and the lease follows
//! the new holder process it names (so a runtime wrapper can lease at `create` under its own pid
//! and the container's first hook hands the lease to the container's init).
//!
//! # Choosing
//!
//! [`choose`] is pure. A request by profile gets the **first free instances in NVML order** (GPU
//! index, then MIG device index): instances the container already holds first, then instances
//! nobody holds. migcage packs instead of spreading across GPUs: MIG already isolates compute,
//! memory and bandwidth between instances, so spreading buys little, while packing is predictable
//! (`0:0` is given first, always) and keeps whole GPUs idle, which is what an operator needs to
//! re-partition or service a GPU without stopping anyone. Items that name a GPU
//! (`profile:0/1g.5gb`) are served before items that may use any GPU, so a mixed request is not
//! refused for lack of an instance that a free-choice item took first.
//!
//! Explicit MIG requests (`0:1`, `MIG-...`) are leased too, so that a request by profile never
//! gets an instance someone named. When another live container already holds the instance,
//! `[leases] explicit` decides: `exclusive` (the default) refuses naming the holder, `shared`
//! allows it and `migcage list` shows the instance as shared. Whole GPUs and `all` take no lease:
//! `all` is for administrative containers (monitoring), which must not block allocation.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::config::ExplicitPolicy;
use crate::core::plan::{self, PlanError};
use crate::core::request::DeviceSelector;
use crate::host::inventory::{Gpu, Inventory, MigDevice};

/// The directory under `state_dir` that holds the store.
pub const LEASE_DIR: &str = "leases";
/// The lease file in [`LEASE_DIR`].
pub const LEASE_FILE: &str = "leases.json";
/// The lock file in [`LEASE_DIR`].
pub const LOCK_FILE: &str = "lock";
/// The version of the lease file's format.
pub const FORMAT_VERSION: u32 = 1;
/// How long an allocation waits for another migcage's lock before it gives up.
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(10);
/// Process information always comes from the real procfs (`proc_root` only redirects the
/// driver's files).
pub const PROCESS_PROC: &str = "/proc";
/// The most instances an error message lists one by one.
const MAX_LISTED: usize = 16;
/// Largest lease file accepted (a 56-instance host with shared leases is a few tens of KiB).
const MAX_FILE_BYTES: u64 = 16 << 20;

/// Why a lease could not be taken, read or released. One line each.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// Not enough free instances of a profile.
    #[error("{origin} asks for {asked}: {problem}; wait for a container to stop (or 'migcage release <container-id>' one that is gone), or ask for another profile ('migcage list' shows every instance and its holder)")]
    Exhausted {
        origin: String,
        asked: String,
        /// How many are needed and free, then every instance in use and its holder.
        problem: String,
    },
    /// `[leases] explicit = "exclusive"` and someone else holds the named instance.
    #[error(transparent)]
    Held(Box<HeldError>),
    #[error("container {container}: the runtime passed no pid, so migcage cannot tell when the container is gone; run migcage as a prestart, createRuntime or createContainer hook")]
    NoProcess { container: String },
    #[error("container {container}: cannot read {path}: {error}; its process is gone, or migcage does not run in the host's pid namespace")]
    Process {
        container: String,
        path: PathBuf,
        /// Not `source`: the message already says it, and a source would print it twice.
        error: io::Error,
    },
    #[error("cannot {what} {path}: {error}; check state_dir in the migcage config and that migcage runs as root")]
    Io {
        what: &'static str,
        path: PathBuf,
        /// Not `source`: the message already says it, and a source would print it twice.
        error: io::Error,
    },
    #[error("lease file {path} is not valid ({message}); restore it, or remove it to forget every lease (running containers keep their devices, but their instances may then be given again)")]
    Corrupt { path: PathBuf, message: String },
    #[error("lease store {path} stayed locked by another migcage for {secs} s; a migcage process is stuck holding it (find it with: fuser {path})")]
    LockTimeout { path: PathBuf, secs: f64 },
}

/// A named instance that another container holds (boxed in [`LeaseError::Held`]).
#[derive(Debug, thiserror::Error)]
#[error("{origin} asks for {asked}: MIG device {index} ({uuid}) is held by {holders}; ask by profile (profile:{profile}) for a free one, wait for it to stop, or set [leases] explicit = \"shared\" in the migcage config to let containers share named instances")]
pub struct HeldError {
    pub origin: String,
    pub asked: String,
    pub index: String,
    pub uuid: String,
    pub profile: String,
    /// `container a since 2026-11-25T08:15:55Z`, joined with `and`.
    pub holders: String,
}

/// How a lease was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaseKind {
    /// Allocated for a request by profile.
    Profile,
    /// The container named the instance (`0:1`, `MIG-...`).
    Explicit,
}

/// One container's hold on one MIG instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The instance, `MIG-...`.
    pub uuid: String,
    /// The container's id, as the runtime names it.
    pub container: String,
    /// The container's init process, in the host's pid namespace.
    pub pid: i32,
    /// That process's start time (clock ticks after boot, field 22 of /proc/<pid>/stat): a pid
    /// reused by another process has another start time.
    pub start_time: u64,
    /// When the lease was taken (seconds since the epoch).
    pub since: u64,
    pub kind: LeaseKind,
    /// The request item it was given for: `profile:1g.5gb`, `0:1`, `MIG-...`.
    pub asked: String,
}

/// The lease file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct LeaseFile {
    version: u32,
    leases: Vec<Lease>,
}

/// Who asks: a container and its init process (host pid), when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub container: String,
    pub pid: Option<i32>,
}

/// What a container wants, for [`choose`].
#[derive(Debug, Clone, Copy)]
pub struct Wanted<'a> {
    /// The asking container's id; `None` for a dry run (`explain`), which holds nothing.
    pub container: Option<&'a str>,
    /// Where the request came from (`NVIDIA_VISIBLE_DEVICES`), for messages.
    pub origin: &'a str,
    pub selectors: &'a [DeviceSelector],
    pub explicit: ExplicitPolicy,
}

/// One instance [`choose`] gives the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taken {
    pub uuid: String,
    pub kind: LeaseKind,
    pub asked: String,
}

/// The outcome of [`choose`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    /// The request's selectors with every profile item replaced by the `MigUuid`s chosen for it
    /// (in place), ready for the pure [`plan::resolve`].
    pub selectors: Vec<DeviceSelector>,
    /// The instances the container holds after this choice (profile and explicit).
    pub taken: Vec<Taken>,
}

/// Whether a request needs the lease store: it names MIG instances (by profile or explicitly).
pub fn needs_leases(selectors: &[DeviceSelector]) -> bool {
    selectors.iter().any(|s| {
        matches!(
            s,
            DeviceSelector::Profile { .. }
                | DeviceSelector::MigIndex { .. }
                | DeviceSelector::MigUuid(_)
        )
    })
}

/// Whether the request asks by profile (and so cannot be resolved without choosing).
pub fn has_profile(selectors: &[DeviceSelector]) -> bool {
    selectors
        .iter()
        .any(|s| matches!(s, DeviceSelector::Profile { .. }))
}

/// The MIG device an explicit selector names, if the inventory has it.
fn named_instance<'a>(
    sel: &DeviceSelector,
    inv: &'a Inventory,
) -> Option<(&'a Gpu, &'a MigDevice)> {
    let mut all = inv
        .gpus
        .iter()
        .flat_map(|g| g.mig_devices.iter().map(move |m| (g, m)));
    match sel {
        DeviceSelector::MigIndex { gpu, mig } => {
            all.find(|(g, m)| g.index == *gpu && m.index == *mig)
        }
        DeviceSelector::MigUuid(u) => all.find(|(_, m)| m.uuid.eq_ignore_ascii_case(u)),
        _ => None,
    }
}

/// `c1 since 2026-11-25T08:15:55Z`.
fn holder_text(l: &Lease) -> String {
    format!("container {} since {}", l.container, format_time(l.since))
}

/// Choose the instances for `wanted` given the live `leases` (stale ones already dropped). Pure.
///
/// Profile items get the first instances in NVML order that the container already holds or that
/// nobody holds; explicit MIG items are checked against other containers' leases as
/// `wanted.explicit` says. All or nothing: an error takes nothing.
pub fn choose(
    wanted: &Wanted<'_>,
    inv: &Inventory,
    leases: &[Lease],
) -> Result<Choice, LeaseError> {
    let mine = |l: &Lease| wanted.container == Some(l.container.as_str());
    let mut taken: Vec<Taken> = Vec::new();

    // Named instances first: a profile item must not be given one the container also names.
    for sel in wanted.selectors {
        let Some((gpu, m)) = named_instance(sel, inv) else {
            continue;
        };
        if taken.iter().any(|t| t.uuid == m.uuid) {
            continue;
        }
        let others: Vec<&Lease> = leases
            .iter()
            .filter(|l| l.uuid == m.uuid && !mine(l))
            .collect();
        if !others.is_empty() && wanted.explicit == ExplicitPolicy::Exclusive {
            return Err(LeaseError::Held(Box::new(HeldError {
                origin: wanted.origin.to_string(),
                asked: sel.to_string(),
                index: format!("{}:{}", gpu.index, m.index),
                uuid: m.uuid.clone(),
                profile: m.profile.clone(),
                holders: others
                    .iter()
                    .map(|l| holder_text(l))
                    .collect::<Vec<_>>()
                    .join(" and "),
            })));
        }
        taken.push(Taken {
            uuid: m.uuid.clone(),
            kind: LeaseKind::Explicit,
            asked: sel.to_string(),
        });
    }

    // Profile items: those naming a GPU first (they have fewer choices), output in request order.
    let mut order: Vec<usize> = (0..wanted.selectors.len()).collect();
    order.sort_by_key(|&i| match &wanted.selectors[i] {
        DeviceSelector::Profile { gpu: Some(_), .. } => 0,
        _ => 1,
    });
    let mut chosen: Vec<Option<Vec<String>>> = vec![None; wanted.selectors.len()];
    for i in order {
        let sel = &wanted.selectors[i];
        let DeviceSelector::Profile {
            gpu,
            profile,
            count,
        } = sel
        else {
            continue;
        };
        let asked = sel.to_string();
        let candidates = plan::profile_candidates(*gpu, profile, &asked, inv, wanted.origin)?;
        let free_of = |m: &MigDevice, held_ok: bool| {
            !taken.iter().any(|t| t.uuid == m.uuid)
                && leases
                    .iter()
                    .filter(|l| l.uuid == m.uuid)
                    .all(|l| held_ok && mine(l))
        };
        // Already held by this container (an earlier hook stage), then held by nobody.
        let mut picks: Vec<String> = Vec::new();
        for pass_held in [true, false] {
            for (_, m) in &candidates {
                if picks.len() as u32 == *count {
                    break;
                }
                let held_by_me = leases.iter().any(|l| l.uuid == m.uuid && mine(l));
                if held_by_me == pass_held && free_of(m, pass_held) && !picks.contains(&m.uuid) {
                    picks.push(m.uuid.clone());
                }
            }
        }
        if (picks.len() as u32) < *count {
            return Err(exhausted(
                wanted,
                &asked,
                profile,
                *gpu,
                *count,
                &candidates,
                leases,
                &taken,
            ));
        }
        for u in &picks {
            taken.push(Taken {
                uuid: u.clone(),
                kind: LeaseKind::Profile,
                asked: asked.clone(),
            });
        }
        chosen[i] = Some(picks);
    }

    let mut selectors = Vec::with_capacity(wanted.selectors.len());
    for (sel, picks) in wanted.selectors.iter().zip(chosen) {
        match picks {
            Some(p) => selectors.extend(p.into_iter().map(DeviceSelector::MigUuid)),
            None => selectors.push(sel.clone()),
        }
    }
    Ok(Choice { selectors, taken })
}

/// The "nothing free" error: every instance of the profile and who holds it.
#[allow(clippy::too_many_arguments)]
fn exhausted(
    wanted: &Wanted<'_>,
    asked: &str,
    profile: &str,
    gpu: Option<u32>,
    count: u32,
    candidates: &[(&Gpu, &MigDevice)],
    leases: &[Lease],
    taken: &[Taken],
) -> LeaseError {
    let place = match gpu {
        Some(g) => format!(" on GPU {g}"),
        None => String::new(),
    };
    let mut free = Vec::new();
    let mut held = Vec::new();
    for (g, m) in candidates {
        let index = format!("{}:{}", g.index, m.index);
        let holders: Vec<String> = leases
            .iter()
            .filter(|l| l.uuid == m.uuid)
            .map(holder_text)
            .collect();
        if taken.iter().any(|t| t.uuid == m.uuid) {
            held.push(format!(
                "{index} {} by this container's other items",
                m.uuid
            ));
        } else if holders.is_empty() {
            free.push(index);
        } else {
            held.push(format!("{index} {} by {}", m.uuid, holders.join(" and ")));
        }
    }
    let total = candidates.len();
    let mut problem = if free.is_empty() {
        format!("all {total} MIG devices of profile {profile}{place} are in use: ")
    } else if held.is_empty() {
        // More asked for than exist at all (profile:1g.5gb*8 on seven).
        format!(
            "{count} MIG devices of profile {profile}{place} are needed but only {total} exist ({}), none in use",
            free.join(", ")
        )
    } else {
        format!(
            "{count} MIG devices of profile {profile}{place} are needed but only {} of {total} are free ({}), in use: ",
            free.len(),
            free.join(", ")
        )
    };
    problem.push_str(
        &held
            .iter()
            .take(MAX_LISTED)
            .cloned()
            .collect::<Vec<_>>()
            .join(", "),
    );
    if held.len() > MAX_LISTED {
        let _ = write!(problem, ", ... ({} in all)", held.len());
    }
    LeaseError::Exhausted {
        origin: wanted.origin.to_string(),
        asked: asked.to_string(),
        problem,
    }
}

/// The leases after `holder` took `taken`: its earlier leases are replaced (keeping the time of
/// those it keeps), everybody else's are kept. Pure.
pub fn merge(
    live: &[Lease],
    container: &str,
    pid: i32,
    start_time: u64,
    now: u64,
    taken: &[Taken],
) -> Vec<Lease> {
    let mut out: Vec<Lease> = live
        .iter()
        .filter(|l| l.container != container)
        .cloned()
        .collect();
    for t in taken {
        let since = live
            .iter()
            .find(|l| l.container == container && l.uuid == t.uuid)
            .map_or(now, |l| l.since);
        out.push(Lease {
            uuid: t.uuid.clone(),
            container: container.to_string(),
            pid,
            start_time,
            since,
            kind: t.kind,
            asked: t.asked.clone(),
        });
    }
    out
}

/// What `/proc/<pid>/stat` says about a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// Field 3: `R`, `S`, `Z`, ...
    pub state: char,
    /// Field 4.
    pub ppid: i32,
    /// Field 22: start time in clock ticks after boot.
    pub start_time: u64,
}

impl ProcStat {
    /// A zombie (or dead) process has ended: its container is gone.
    pub fn ended(&self) -> bool {
        matches!(self.state, 'Z' | 'X' | 'x')
    }
}

/// Parse `/proc/<pid>/stat`. The command name (field 2) may hold spaces and parentheses, so the
/// fields are counted from its last `)`.
pub fn parse_stat(text: &str) -> Option<ProcStat> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state).
    let state = fields.first()?.chars().next()?;
    Some(ProcStat {
        state,
        ppid: fields.get(1)?.parse().ok()?,
        start_time: fields.get(19)?.parse().ok()?,
    })
}

/// Read `<proc>/<pid>/stat` (`pid` may be `self`). `Ok(None)` when the process does not exist.
pub fn read_stat(proc: &Path, pid: &str) -> io::Result<Option<ProcStat>> {
    let path = proc.join(pid).join("stat");
    match std::fs::read_to_string(&path) {
        Ok(text) => parse_stat(&text).map(Some).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "unexpected format: {:?}",
                    text.chars().take(80).collect::<String>()
                ),
            )
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether a lease's holder still runs: its pid exists, is not a zombie and started when the
/// lease says. Pure: `now` is what procfs says of the pid now.
pub fn is_live(lease: &Lease, now: Option<ProcStat>) -> bool {
    now.is_some_and(|s| !s.ended() && s.start_time == lease.start_time)
}

/// Split leases into (live, stale) by asking `proc` about each holder.
pub fn partition_live(leases: Vec<Lease>, proc: &Path) -> (Vec<Lease>, Vec<Lease>) {
    leases.into_iter().partition(|l| {
        // A procfs that cannot be read keeps the lease: fail closed, never hand out twice.
        match read_stat(proc, &l.pid.to_string()) {
            Ok(now) => is_live(l, now),
            Err(_) => true,
        }
    })
}

/// The time now, in seconds since the epoch.
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `2026-11-25T08:15:55Z` (UTC).
pub fn format_time(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    )
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
        let path = self.file();
        let file = match OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => {
                return Err(LeaseError::Io {
                    what: "open",
                    path,
                    error,
                })
            }
        };
        let mut buf = Vec::new();
        file.take(MAX_FILE_BYTES + 1)
            .read_to_end(&mut buf)
            .map_err(|error| LeaseError::Io {
                what: "read",
                path: path.clone(),
                error,
            })?;
        if buf.is_empty() {
            // Never written so: a crash between create and write on a disk state_dir, after
            // which no container of before the crash runs any more.
            return Ok(Vec::new());
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
        Ok(parsed.leases)
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
        let locked = self.lock()?;
        let all = locked.read()?;
        let (gone, kept): (Vec<Lease>, Vec<Lease>) =
            all.into_iter().partition(|l| l.container == container);
        if !gone.is_empty() {
            locked.write(&kept)?;
        }
        Ok(gone)
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
            leases: leases.to_vec(),
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
mod tests {
    use super::*;
    use crate::host::inventory::Majors;
    use std::time::Instant;

    const P1: &str = "1g.5gb";

    fn uuid(g: u32, m: u32) -> String {
        format!("MIG-{g:08x}-{m:04x}-0000-0000-000000000000")
    }

    /// GPU 0: four 1g.5gb and one 2g.10gb; GPU 1: three 1g.5gb; GPU 2: MIG off.
    fn inv() -> Inventory {
        let mig = |g: u32, i: u32, profile: &str| MigDevice {
            index: i,
            gpu_index: g,
            uuid: uuid(g, i),
            gpu_instance_id: i + 7,
            compute_instance_id: 0,
            profile: profile.into(),
            memory_mib: 4864,
            gi_caps_minor: 100 * g + 2 * i,
            ci_caps_minor: 100 * g + 2 * i + 1,
        };
        let gpu = |g: u32, migs: Vec<MigDevice>, on: bool| Gpu {
            index: g,
            minor: g,
            uuid: format!("GPU-{g:08x}-0000-0000-0000-000000000000"),
            name: "NVIDIA A100-SXM4-40GB".into(),
            pci_bus_id: format!("00000000:0{g}:00.0"),
            mig_enabled: on,
            memory_mib: 40960,
            mig_devices: migs,
        };
        Inventory {
            driver_version: "550.54.15".into(),
            cuda_driver_version: 12040,
            majors: Majors {
                frontend: 195,
                uvm: Some(510),
                caps: Some(509),
            },
            gpus: vec![
                gpu(
                    0,
                    vec![
                        mig(0, 0, P1),
                        mig(0, 1, P1),
                        mig(0, 2, "2g.10gb"),
                        mig(0, 3, P1),
                        mig(0, 4, P1),
                    ],
                    true,
                ),
                gpu(1, (0..3).map(|i| mig(1, i, P1)).collect(), true),
                gpu(2, vec![], false),
            ],
            mig_config_minor: Some(1),
            mig_monitor_minor: Some(2),
        }
    }

    fn lease(g: u32, m: u32, container: &str) -> Lease {
        Lease {
            uuid: uuid(g, m),
            container: container.into(),
            pid: 100,
            start_time: 5000,
            since: 1_764_058_555,
            kind: LeaseKind::Profile,
            asked: "profile:1g.5gb".into(),
        }
    }

    fn sels(text: &str) -> Vec<DeviceSelector> {
        text.split(',').map(|s| s.parse().unwrap()).collect()
    }

    fn run(
        me: Option<&str>,
        text: &str,
        leases: &[Lease],
        policy: ExplicitPolicy,
    ) -> Result<Choice, LeaseError> {
        let s = sels(text);
        let w = Wanted {
            container: me,
            origin: "NVIDIA_VISIBLE_DEVICES",
            selectors: &s,
            explicit: policy,
        };
        choose(&w, &inv(), leases)
    }

    fn ok(me: &str, text: &str, leases: &[Lease]) -> Vec<String> {
        run(Some(me), text, leases, ExplicitPolicy::Exclusive)
            .unwrap_or_else(|e| panic!("{text}: {e}"))
            .selectors
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    fn err(me: &str, text: &str, leases: &[Lease], policy: ExplicitPolicy) -> String {
        let e = run(Some(me), text, leases, policy)
            .expect_err(text)
            .to_string();
        assert!(!e.contains('\n'), "{e}");
        e
    }

    #[test]
    fn first_fit_in_nvml_order() {
        assert_eq!(ok("c", "profile:1g.5gb", &[]), [uuid(0, 0)]);
        // Held ones are skipped, in NVML order, and other profiles never match.
        let held = [lease(0, 0, "a"), lease(0, 1, "b")];
        assert_eq!(ok("c", "profile:1g.5gb", &held), [uuid(0, 3)]);
        assert_eq!(ok("c", "profile:2g.10gb", &held), [uuid(0, 2)]);
        // GPU 0 full: GPU 1's first.
        let full: Vec<Lease> = [0, 1, 3, 4].iter().map(|&m| lease(0, m, "x")).collect();
        assert_eq!(ok("c", "profile:1g.5gb", &full), [uuid(1, 0)]);
    }

    #[test]
    fn a_count_takes_several_in_place() {
        assert_eq!(
            ok("c", "0:2,profile:1g.5gb*3,1:2", &[]),
            [
                "0:2".to_string(),
                uuid(0, 0),
                uuid(0, 1),
                uuid(0, 3),
                "1:2".to_string()
            ]
        );
        // Across GPUs when one GPU has too few.
        let held = [lease(0, 0, "a"), lease(0, 1, "a"), lease(0, 3, "a")];
        assert_eq!(
            ok("c", "profile:1g.5gb*3", &held),
            [uuid(0, 4), uuid(1, 0), uuid(1, 1)]
        );
    }

    #[test]
    fn a_named_gpu_limits_the_choice_and_is_served_first() {
        assert_eq!(ok("c", "profile:1/1g.5gb", &[]), [uuid(1, 0)]);
        // GPU 1 has one free left: the any-GPU item must not take it first.
        let held = [lease(1, 0, "a"), lease(1, 1, "a")];
        assert_eq!(
            ok("c", "profile:1g.5gb,profile:1/1g.5gb", &held),
            [uuid(0, 0), uuid(1, 2)]
        );
        let e = err("c", "profile:2/1g.5gb", &[], ExplicitPolicy::Exclusive);
        assert!(e.contains("GPU 2 is not in MIG mode"), "{e}");
        let e = err("c", "profile:7/1g.5gb", &[], ExplicitPolicy::Exclusive);
        assert!(
            e.contains("there is no GPU 7, this host has GPUs 0 to 2"),
            "{e}"
        );
    }

    #[test]
    fn the_same_container_gets_the_same_instances_again() {
        // A later hook stage (or a runtime wrapper's lease handed to the hook): 0:4 and 1:1 are
        // this container's already, though 0:0 is free.
        let mine = [lease(0, 4, "c"), lease(1, 1, "c")];
        assert_eq!(ok("c", "profile:1g.5gb*2", &mine), [uuid(0, 4), uuid(1, 1)]);
        // Another container gets the first free one.
        assert_eq!(ok("d", "profile:1g.5gb", &mine), [uuid(0, 0)]);
    }

    #[test]
    fn nothing_free_lists_every_instance_and_its_holder() {
        let all: Vec<Lease> = [(0, 0), (0, 1), (0, 3), (0, 4), (1, 0), (1, 1), (1, 2)]
            .iter()
            .enumerate()
            .map(|(i, &(g, m))| lease(g, m, &format!("ctr{i}")))
            .collect();
        let e = err("c", "profile:1g.5gb", &all, ExplicitPolicy::Exclusive);
        assert!(
            e.starts_with("NVIDIA_VISIBLE_DEVICES asks for profile:1g.5gb: all 7 MIG devices of profile 1g.5gb are in use: 0:0 MIG-00000000-0000-0000-0000-000000000000 by container ctr0 since 2025-11-25T08:15:55Z, 0:1 "),
            "{e}"
        );
        for i in 0..7 {
            assert!(e.contains(&format!("container ctr{i} since")), "{e}");
        }
        assert!(e.contains("wait for a container to stop"), "{e}");
        // Too few for a count: says how many are free, and which.
        let e = err(
            "c",
            "profile:1/1g.5gb*3",
            &all[4..5],
            ExplicitPolicy::Exclusive,
        );
        assert!(
            e.contains("3 MIG devices of profile 1g.5gb on GPU 1 are needed but only 2 of 3 are free (1:1, 1:2)"),
            "{e}"
        );
        assert!(
            e.contains("1:0 MIG-00000001-0000-0000-0000-000000000000 by container ctr4"),
            "{e}"
        );
        // More than exist at all: no empty "in use" list.
        let e = err("c", "profile:1/1g.5gb*4", &[], ExplicitPolicy::Exclusive);
        assert!(
            e.contains("4 MIG devices of profile 1g.5gb on GPU 1 are needed but only 3 exist (1:0, 1:1, 1:2), none in use"),
            "{e}"
        );
        assert!(!e.contains("in use: ;"), "{e}");
    }

    #[test]
    fn unknown_profile_names_the_profiles_there_are() {
        let e = err("c", "profile:3g.20gb", &[], ExplicitPolicy::Exclusive);
        assert!(
            e.contains("asks for profile:3g.20gb: this host has no MIG device of profile 3g.20gb (profiles here: 1g.5gb, 2g.10gb)"),
            "{e}"
        );
        let e = err("c", "profile:1/2g.10gb", &[], ExplicitPolicy::Exclusive);
        assert!(
            e.contains("GPU 1 has no MIG device of profile 2g.10gb (profiles here: 1g.5gb)"),
            "{e}"
        );
    }

    #[test]
    fn explicit_requests_against_leases() {
        let held = [lease(0, 1, "a")];
        // Exclusive: refused, naming the holder.
        for text in ["0:1", &uuid(0, 1), &uuid(0, 1).to_uppercase()] {
            let e = err("c", text, &held, ExplicitPolicy::Exclusive);
            assert!(
                e.contains(&format!(
                    "MIG device 0:1 ({}) is held by container a since 2025-11-25T08:15:55Z",
                    uuid(0, 1)
                )),
                "{e}"
            );
            assert!(
                e.contains("profile:1g.5gb") && e.contains("explicit = \"shared\""),
                "{e}"
            );
        }
        // Shared: allowed, and leased.
        let c = run(Some("c"), "0:1", &held, ExplicitPolicy::Shared).unwrap();
        assert_eq!(
            c.taken,
            [Taken {
                uuid: uuid(0, 1),
                kind: LeaseKind::Explicit,
                asked: "0:1".into()
            }]
        );
        assert_eq!(c.selectors, sels("0:1"));
        // Held by the container itself: fine in either mode.
        assert_eq!(ok("a", "0:1", &held), ["0:1"]);
        // Free: leased as explicit.
        let c = run(Some("c"), "0:3", &held, ExplicitPolicy::Exclusive).unwrap();
        assert_eq!(c.taken[0].kind, LeaseKind::Explicit);
    }

    #[test]
    fn profiles_avoid_named_instances() {
        // Someone named 0:0 (explicitly, shared or not): a profile request never gets it.
        let mut named = lease(0, 0, "a");
        named.kind = LeaseKind::Explicit;
        assert_eq!(ok("c", "profile:1g.5gb", &[named]), [uuid(0, 1)]);
        // Nor one this container names itself in the same request.
        assert_eq!(
            ok("c", "0:0,profile:1g.5gb", &[]),
            ["0:0".to_string(), uuid(0, 1)]
        );
    }

    #[test]
    fn whole_gpus_all_and_unknown_names_take_no_lease() {
        for text in [
            "all",
            "2",
            "GPU-00000000-0000-0000-0000-000000000000",
            "0:9",
            "MIG-99999999-9999-9999-9999-999999999999",
        ] {
            let c = run(
                Some("c"),
                text,
                &[lease(0, 0, "a")],
                ExplicitPolicy::Exclusive,
            )
            .unwrap();
            assert!(c.taken.is_empty(), "{text}");
            assert_eq!(c.selectors, sels(text), "{text}");
        }
        assert!(!needs_leases(&sels("all,2")));
        assert!(needs_leases(&sels("0:1")) && needs_leases(&sels("profile:1g.5gb")));
        assert!(!has_profile(&sels("0:1")) && has_profile(&sels("2,profile:1g.5gb")));
    }

    #[test]
    fn a_dry_run_holds_nothing() {
        // explain: nothing is "mine", so an instance held by anyone is taken.
        let held = [lease(0, 0, "c")];
        let c = run(None, "profile:1g.5gb", &held, ExplicitPolicy::Exclusive).unwrap();
        assert_eq!(c.selectors, [DeviceSelector::MigUuid(uuid(0, 1))]);
        assert!(run(None, "0:0", &held, ExplicitPolicy::Exclusive).is_err());
    }

    #[test]
    fn errors_take_nothing() {
        // The first item fits, the second does not: no partial choice comes back.
        let all_gpu1: Vec<Lease> = (0..3).map(|m| lease(1, m, "x")).collect();
        assert!(run(
            Some("c"),
            "profile:1g.5gb,profile:1/1g.5gb",
            &all_gpu1,
            ExplicitPolicy::Exclusive
        )
        .is_err());
    }

    #[test]
    fn merge_replaces_only_the_holders_leases() {
        let live = [lease(0, 0, "a"), lease(0, 1, "c"), lease(0, 3, "c")];
        let taken = [
            Taken {
                uuid: uuid(0, 1),
                kind: LeaseKind::Profile,
                asked: "profile:1g.5gb".into(),
            },
            Taken {
                uuid: uuid(0, 4),
                kind: LeaseKind::Explicit,
                asked: "0:4".into(),
            },
        ];
        let out = merge(&live, "c", 4242, 777, 2_000_000_000, &taken);
        assert_eq!(out.len(), 3);
        assert_eq!(out[0], live[0]);
        // Kept: its time stays, its holder process is the new one.
        assert_eq!(
            (
                out[1].uuid.as_str(),
                out[1].since,
                out[1].pid,
                out[1].start_time
            ),
            (uuid(0, 1).as_str(), 1_764_058_555, 4242, 777)
        );
        // New: taken now.
        assert_eq!(
            (out[2].since, out[2].kind),
            (2_000_000_000, LeaseKind::Explicit)
        );
        // 0:3 is no longer the container's.
        assert!(!out.iter().any(|l| l.uuid == uuid(0, 3)));
    }

    #[test]
    fn stat_parsing_and_staleness() {
        let line = "4242 (sh (x) y) S 4100 4242 4242 0 -1 4194560 99 0 0 0 0 0 0 0 20 0 1 0 987654 2224128 218 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        let s = parse_stat(line).unwrap();
        assert_eq!(
            s,
            ProcStat {
                state: 'S',
                ppid: 4100,
                start_time: 987654
            }
        );
        assert!(parse_stat("garbage").is_none());
        assert!(parse_stat("1 (x) S 0").is_none());
        let mut l = lease(0, 0, "a");
        l.start_time = 987654;
        assert!(is_live(&l, Some(s)));
        // Gone, reused (another start time), or a zombie: stale.
        assert!(!is_live(&l, None));
        assert!(!is_live(&l, Some(ProcStat { start_time: 1, ..s })));
        assert!(!is_live(&l, Some(ProcStat { state: 'Z', ..s })));
    }

    #[test]
    fn this_process_is_live_and_a_dead_child_is_not() {
        let proc = Path::new(PROCESS_PROC);
        let me = read_stat(proc, &std::process::id().to_string())
            .unwrap()
            .unwrap();
        let mut l = lease(0, 0, "a");
        l.pid = std::process::id() as i32;
        l.start_time = me.start_time;
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let child_pid = child.id() as i32;
        child.wait().unwrap();
        let mut dead = l.clone();
        dead.pid = child_pid;
        let mut reused = l.clone();
        reused.start_time += 1;
        let (live, stale) = partition_live(vec![l.clone(), dead.clone(), reused.clone()], proc);
        assert_eq!(live, [l]);
        assert_eq!(stale, [dead, reused]);
        assert_eq!(read_stat(proc, "999999999").unwrap(), None);
    }

    #[test]
    fn times_are_utc_rfc3339() {
        assert_eq!(format_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_time(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(format_time(1_764_058_555), "2025-11-25T08:15:55Z");
        assert_eq!(format_time(4_107_542_399), "2100-02-28T23:59:59Z");
    }

    #[test]
    fn store_round_trip_release_and_atomic_write() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::new(d.path());
        // No store: no lease, and release creates nothing.
        assert!(store.read().unwrap().is_empty());
        assert!(store.release("a").unwrap().is_empty());
        assert!(!store.dir().exists());
        let leases = vec![lease(0, 0, "a"), lease(0, 1, "b"), lease(1, 0, "a")];
        {
            let locked = store.lock().unwrap();
            locked.write(&leases).unwrap();
            assert_eq!(locked.read().unwrap(), leases);
        }
        assert_eq!(store.read().unwrap(), leases);
        let names: Vec<String> = std::fs::read_dir(store.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(!names.iter().any(|n| n.ends_with(".tmp")), "{names:?}");
        let gone = store.release("a").unwrap();
        assert_eq!(gone, [leases[0].clone(), leases[2].clone()]);
        assert_eq!(store.read().unwrap(), [leases[1].clone()]);
        assert!(store.release("nobody").unwrap().is_empty());
        // A broken file is an error naming it, never an empty store.
        std::fs::write(store.file(), b"{\"version\":1,\"leases\":[{").unwrap();
        let e = store.read().unwrap_err().to_string();
        assert!(
            e.contains("leases.json is not valid") && !e.contains('\n'),
            "{e}"
        );
        std::fs::write(store.file(), b"").unwrap();
        assert!(store.read().unwrap().is_empty());
        std::fs::write(store.file(), b"{\"version\":9,\"leases\":[]}").unwrap();
        assert!(store
            .read()
            .unwrap_err()
            .to_string()
            .contains("format version 9"));
    }

    #[test]
    fn the_lock_excludes_and_times_out_cleanly() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::new(d.path());
        let held = store.lock().unwrap();
        // A second lock from another open file description waits; a thread shows it blocks
        // until the first is dropped.
        let s2 = store.clone();
        let waiter = std::thread::spawn(move || {
            let t = Instant::now();
            let _l = s2.lock().unwrap();
            t.elapsed()
        });
        std::thread::sleep(Duration::from_millis(200));
        // Meanwhile a short wait gives up with a one-line error naming the lock.
        let e = store
            .lock_within(Duration::from_millis(50))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("leases/lock stayed locked by another migcage for 0.05 s")
                && !e.contains('\n'),
            "{e}"
        );
        drop(held);
        let waited = waiter.join().unwrap();
        assert!(waited >= Duration::from_millis(150), "{waited:?}");
        // The lock that timed out is not kept by its waiting thread.
        std::thread::sleep(Duration::from_millis(50));
        drop(store.lock_within(Duration::from_millis(500)).unwrap());
    }

    #[test]
    fn concurrent_writers_never_lose_a_lease() {
        // 8 threads x 25 read-modify-write cycles under the lock: every append survives.
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().to_path_buf();
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let dir = dir.clone();
                std::thread::spawn(move || {
                    let store = Store::new(&dir);
                    for i in 0..25 {
                        let locked = store.lock().unwrap();
                        let mut all = locked.read().unwrap();
                        all.push(lease(t, i, &format!("t{t}-{i}")));
                        locked.write(&all).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(Store::new(&dir).read().unwrap().len(), 200);
    }
}
