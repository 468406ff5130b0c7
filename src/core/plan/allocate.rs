//! Choosing MIG instances for a request against the live leases: which instances a container
//! gets and the leases that result. Pure: no file, no clock, no /proc (the lease store and the
//! liveness of holders are [`crate::host::lease`]'s).
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

use serde::{Deserialize, Serialize};

use crate::config::ExplicitPolicy;
use crate::core::inventory::{Gpu, Inventory, MigDevice};
use crate::core::plan::{self, PlanError};
use crate::core::request::DeviceSelector;

/// The most instances an error message lists one by one.
const MAX_LISTED: usize = 16;

/// Why instances could not be chosen for a request. One line each.
#[derive(Debug, thiserror::Error)]
pub enum AllocationError {
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("{origin} asks for {asked}: {problem}; wait for a container to stop (or 'migcage release <container-id>' one that is gone), or ask for another profile ('migcage list' shows every instance and its holder)")]
    Exhausted {
        origin: String,
        asked: String,
        /// How many are needed and free, then every instance in use and its holder.
        problem: String,
        /// The item that is short, for `create_on_demand`.
        short: Box<Short>,
    },
    /// No MIG device of the asked profile exists (on that GPU).
    #[error("{error}")]
    NoInstance {
        short: Box<Short>,
        error: Box<PlanError>,
    },
    /// `[leases] explicit = "exclusive"` and someone else holds the named instance.
    #[error(transparent)]
    Held(Box<HeldError>),
}

/// A named instance that another container holds (boxed in [`AllocationError::Held`]).
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

/// A profile item that no free instance serves: what `[allocation] create_on_demand` makes
/// one of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Short {
    /// The GPU it names (`profile:1/3g.20gb`), if any.
    pub gpu: Option<u32>,
    pub profile: String,
    /// The item as asked (`profile:3g.20gb`).
    pub asked: String,
}

impl AllocationError {
    /// The profile item that found no free instance, when that is the whole reason.
    pub fn short(&self) -> Option<&Short> {
        match self {
            AllocationError::Exhausted { short, .. }
            | AllocationError::NoInstance { short, .. } => Some(short),
            _ => None,
        }
    }
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
    /// That process's start time (clock ticks after boot, field 22 of `/proc/<pid>/stat`): a pid
    /// reused by another process has another start time.
    pub start_time: u64,
    /// When the lease was taken (seconds since the epoch).
    pub since: u64,
    pub kind: LeaseKind,
    /// The request item it was given for: `profile:1g.5gb`, `0:1`, `MIG-...`.
    pub asked: String,
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

/// Whether a lease is held by the asking container.
fn mine(wanted: &Wanted<'_>, l: &Lease) -> bool {
    wanted.container == Some(l.container.as_str())
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
) -> Result<Choice, AllocationError> {
    // Named instances first: a profile item must not be given one the container also names.
    let mut taken = take_named(wanted, inv, leases)?;
    let chosen = take_profiles(wanted, inv, leases, &mut taken)?;
    let mut selectors = Vec::with_capacity(wanted.selectors.len());
    for (sel, picks) in wanted.selectors.iter().zip(chosen) {
        match picks {
            Some(p) => selectors.extend(p.into_iter().map(DeviceSelector::MigUuid)),
            None => selectors.push(sel.clone()),
        }
    }
    Ok(Choice { selectors, taken })
}

/// The instances the request names (`0:1`, `MIG-...`), checked against other containers'
/// leases as `wanted.explicit` says.
fn take_named(
    wanted: &Wanted<'_>,
    inv: &Inventory,
    leases: &[Lease],
) -> Result<Vec<Taken>, AllocationError> {
    let mut taken: Vec<Taken> = Vec::new();
    for sel in wanted.selectors {
        let Some((gpu, m)) = named_instance(sel, inv) else {
            continue;
        };
        if taken.iter().any(|t| t.uuid == m.uuid) {
            continue;
        }
        let others: Vec<&Lease> = leases
            .iter()
            .filter(|l| l.uuid == m.uuid && !mine(wanted, l))
            .collect();
        if !others.is_empty() && wanted.explicit == ExplicitPolicy::Exclusive {
            return Err(AllocationError::Held(Box::new(HeldError {
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
    Ok(taken)
}

/// The instances of each profile item (in request order; `None` for other items), added to
/// `taken`. Items naming a GPU are served first: they have fewer choices.
fn take_profiles(
    wanted: &Wanted<'_>,
    inv: &Inventory,
    leases: &[Lease],
    taken: &mut Vec<Taken>,
) -> Result<Vec<Option<Vec<String>>>, AllocationError> {
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
        let short = || Short {
            gpu: *gpu,
            profile: profile.clone(),
            asked: asked.clone(),
        };
        let candidates = match plan::profile_candidates(*gpu, profile, &asked, inv, wanted.origin) {
            Ok(c) => c,
            Err(error @ PlanError::UnknownProfile { .. }) => {
                return Err(AllocationError::NoInstance {
                    short: Box::new(short()),
                    error: Box::new(error),
                })
            }
            Err(e) => return Err(e.into()),
        };
        let picks = pick(wanted, &candidates, leases, taken, *count);
        if (picks.len() as u32) < *count {
            return Err(exhausted(
                wanted,
                short(),
                profile,
                *gpu,
                *count,
                &candidates,
                leases,
                taken,
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
    Ok(chosen)
}

/// Up to `count` of `candidates`: those this container already holds (an earlier hook stage),
/// then those held by nobody, skipping what it has taken already.
fn pick(
    wanted: &Wanted<'_>,
    candidates: &[(&Gpu, &MigDevice)],
    leases: &[Lease],
    taken: &[Taken],
    count: u32,
) -> Vec<String> {
    let free_of = |m: &MigDevice, held_ok: bool| {
        !taken.iter().any(|t| t.uuid == m.uuid)
            && leases
                .iter()
                .filter(|l| l.uuid == m.uuid)
                .all(|l| held_ok && mine(wanted, l))
    };
    let mut picks: Vec<String> = Vec::new();
    for pass_held in [true, false] {
        for (_, m) in candidates {
            if picks.len() as u32 == count {
                break;
            }
            let held_by_me = leases.iter().any(|l| l.uuid == m.uuid && mine(wanted, l));
            if held_by_me == pass_held && free_of(m, pass_held) && !picks.contains(&m.uuid) {
                picks.push(m.uuid.clone());
            }
        }
    }
    picks
}

/// The "nothing free" error: every instance of the profile and who holds it.
#[allow(clippy::too_many_arguments)]
fn exhausted(
    wanted: &Wanted<'_>,
    short: Short,
    profile: &str,
    gpu: Option<u32>,
    count: u32,
    candidates: &[(&Gpu, &MigDevice)],
    leases: &[Lease],
    taken: &[Taken],
) -> AllocationError {
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
    AllocationError::Exhausted {
        origin: wanted.origin.to_string(),
        asked: short.asked.clone(),
        problem,
        short: Box::new(short),
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

/// `2026-11-25T08:15:55Z` (UTC).
pub fn format_time(unix: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix);
    humantime::format_rfc3339_seconds(t).to_string()
}

#[cfg(test)]
pub(crate) mod tests;
