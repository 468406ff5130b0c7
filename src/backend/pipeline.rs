//! From a container's spec to its plan, with the host I/O that takes: the one entry point the
//! back ends share (the hook, `explain`, the runtime wrapper).
//!
//! request (pure) -> inventory (NVML + /proc) -> plan (pure). Host state that a request needs
//! beyond the inventory (such as which instances are already handed out) is read here too, so
//! that the back ends never differ in what a container gets.

use std::path::Path;

use crate::config::Config;
use crate::core::plan::allocate::{self, AllocationError, Choice, Short, Wanted};
use crate::core::plan::{self, Plan, PlanError};
use crate::core::request::{self, Devices, Request, RequestError};
use crate::host::inventory::{self, Inventory, InventoryError};
use crate::host::lease::{self, Holder, Lease, LeaseError, Locked, ProcStat, State};
use crate::host::mig::demand::{DemandError, OnDemand};

/// Why a spec cannot be planned. One line each.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error(transparent)]
    Inventory(#[from] InventoryError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Allocation(#[from] AllocationError),
    #[error(transparent)]
    Lease(#[from] LeaseError),
    #[error(transparent)]
    DriverFiles(#[from] crate::host::driver_discovery::DiscoveryError),
    #[error(transparent)]
    Demand(#[from] DemandError),
    /// No free instance, and `create_on_demand` is off where the GPUs' model has the profile.
    #[error("{error}, or set [allocation] create_on_demand = true in the migcage config to have migcage create one in free capacity")]
    OnDemandOff { error: Box<AllocationError> },
    /// `create_on_demand` asked for a profile that no GPU's model has.
    #[error("{asked}: no GPU here can have a {profile} instance ({why}); ask for one of the profiles listed")]
    NoSuchProfile {
        asked: String,
        profile: String,
        why: String,
    },
    /// No free instance, and no room to create one.
    #[error("{asked}; no GPU has room to create another ({room}); wait for a container to stop, or ask for a profile that still fits ('migcage mig capacity' shows what does)")]
    NoRoom { asked: String, room: String },
    #[error("{asked}: a request by profile takes a lease in state_dir {dir}, which migcage cannot write here: it runs in a user namespace (a rootless engine, host uid {host_uid}); ask for an instance by index or UUID instead (NVIDIA_VISIBLE_DEVICES=0:1), or set state_dir in the migcage config to a directory this user can write (its leases are then this user's alone)")]
    RootlessLeases {
        asked: String,
        dir: String,
        host_uid: u32,
    },
}

/// The request a spec makes and, unless it asks for nothing, its plan on this host. A container
/// that asks for nothing never reaches the driver (no NVML, no /proc reads).
///
/// This takes no lease: it is what `explain` shows. A request by profile resolves to the
/// instances a container starting now would get; a named instance that another container holds
/// is refused as it would be at start (`[leases] explicit = "exclusive"`).
pub fn plan_for_spec(
    config: &Config,
    spec: &serde_json::Value,
) -> Result<(Request, Option<Plan>), PipelineError> {
    plan_with_leases(config, spec, None)
}

/// [`plan_for_spec`] for a container that is starting: the MIG instances it gets (by profile,
/// or named) are leased to it, under the lease store's lock, before this returns. The returned
/// request is the container's own (profile items unchanged); the plan names the chosen instances.
///
/// `holder` is the container's id and the host pid of a process that lives as long as the
/// container: the hook passes the container's init. A runtime wrapper calls this at `create`
/// with its own pid (`std::process::id()`; exec into the runtime keeps the pid and its start
/// time), which holds the lease while `runc create` runs; the container's first migcage hook
/// (`createRuntime` or `prestart`, same container id) gets the same instances and hands the
/// lease to the container's init. At `delete` it calls [`release_container`] (or leaves
/// `migcage hook poststop` in the spec). A lease whose holder is gone is freed by the next
/// allocation anyway.
pub fn plan_for_container(
    config: &Config,
    spec: &serde_json::Value,
    holder: &Holder,
) -> Result<(Request, Option<Plan>), PipelineError> {
    plan_with_leases(config, spec, Some(holder))
}

/// Release every lease of container `id` (poststop, a runtime wrapper's `delete`, `migcage
/// release`): the leases it held. Touches nothing when the store does not exist.
///
/// With `[allocation] destroy_on_release`, the instances migcage made on demand that no other
/// lease holds are destroyed too, under the same lock. A destroy that fails (a process still
/// uses the instance) is warned about and left to the next allocation: the lease is gone either
/// way, so the container's stop never fails for it.
pub fn release_container(config: &Config, id: &str) -> Result<Vec<Lease>, PipelineError> {
    let store = lease::Store::new(&config.state_dir);
    if !config.allocation.destroy_on_release {
        return Ok(store.release(id)?);
    }
    if !store.file().exists() || !store.read()?.iter().any(|l| l.container == id) {
        return Ok(Vec::new());
    }
    let locked = store.lock()?;
    let all = locked.read_state()?;
    let (gone, kept): (Vec<Lease>, Vec<Lease>) =
        all.leases.iter().cloned().partition(|l| l.container == id);
    // Stale leases go too, as at an allocation: their instances may be destroyed below.
    let (live, _) = lease::partition_live(kept, Path::new(lease::PROCESS_PROC));
    let mut state = State {
        leases: live.clone(),
        created: all.created.clone(),
    };
    let mut demand = OnDemand::new(config);
    if let Err(e) = demand.reconcile(&mut state, &live) {
        tracing::warn!(container = id, error = %e, "instances made on demand were not destroyed at release; the next allocation tries again");
    }
    if state != all {
        locked.write_state(&state)?;
    }
    drop(locked);
    if demand.changed {
        crate::host::mig::layout_changed(config)?;
    }
    Ok(gone)
}

/// One spec's way through: request, inventory, driver files, then the plan (with instances
/// chosen, and leased for a holder, when the request names MIG instances).
fn plan_with_leases(
    config: &Config,
    spec: &serde_json::Value,
    holder: Option<&Holder>,
) -> Result<(Request, Option<Plan>), PipelineError> {
    let request = request::parse(spec, &config.requests)?;
    if request.is_noop() {
        return Ok((request, None));
    }
    // The validated snapshot when there is one (no NVML on the container-start path), else full
    // discovery, which rewrites it.
    let (inv, _source) = inventory::snapshot::inventory(config)?;
    // The driver's files for NVIDIA_DRIVER_CAPABILITIES (also for `none`: driver files only).
    // Found before leasing, so that a container that fails here holds no lease.
    let driver = crate::host::driver_discovery::discover(config, &inv.driver_version)?;
    let mut plan = match holder {
        _ if !allocate::needs_leases(request.selectors()) => {
            plan::resolve(&request, &inv, &config.dev_root)?
        }
        None => dry_run_plan(config, &request, &inv)?,
        Some(holder) => match leased_plan(config, &request, inv.clone(), holder) {
            // Rootless, by index or UUID: the instance is checked against the leases others
            // hold, but this user cannot record its own (the one line is for profiles, which
            // need a lease to choose at all).
            Err(PipelineError::RootlessLeases { dir, host_uid, .. })
                if !allocate::has_profile(request.selectors()) =>
            {
                tracing::warn!(
                    state_dir = dir,
                    host_uid,
                    "rootless: the named instances are not leased (state_dir is not writable here); they are still refused when another container holds them"
                );
                dry_run_plan(config, &request, &inv)?
            }
            other => other?,
        },
    };
    plan::driver::add(&mut plan, request.driver_capabilities, &driver);
    Ok((request, Some(plan)))
}

/// What the request asks of the allocator, for `container` (`None`: a dry run).
fn wanted<'a>(
    config: &Config,
    request: &'a Request,
    origin: &'a str,
    container: Option<&'a str>,
) -> Wanted<'a> {
    Wanted {
        container,
        origin,
        selectors: request.selectors(),
        explicit: config.leases.explicit,
    }
}

/// The plan of the request with the chosen instances in place of its profile items.
fn resolve_choice(
    config: &Config,
    request: &Request,
    inv: &Inventory,
    choice: &Choice,
) -> Result<Plan, PlanError> {
    let mut chosen = request.clone();
    chosen.devices = Devices::Selected(choice.selectors.clone());
    plan::resolve(&chosen, inv, &config.dev_root)
}

/// The plan a container starting now would get, against the live leases; takes no lease and
/// no lock.
fn dry_run_plan(
    config: &Config,
    request: &Request,
    inv: &Inventory,
) -> Result<Plan, PipelineError> {
    let store = lease::Store::new(&config.state_dir);
    let (live, _stale) = lease::partition_live(store.read()?, Path::new(lease::PROCESS_PROC));
    let origin = plan::source_name(request);
    let choice = allocate::choose(&wanted(config, request, &origin, None), inv, &live)?;
    Ok(resolve_choice(config, request, inv, &choice)?)
}

/// A lease store this process may not write, in a rootless engine's user namespace: the one
/// line that says why and what to do, instead of the bare EACCES.
fn rootless_refusal(config: &Config, asked: &str, e: LeaseError) -> PipelineError {
    let denied = matches!(&e, LeaseError::Io { error, .. }
        if error.kind() == std::io::ErrorKind::PermissionDenied);
    match crate::host::userns::current(Path::new(lease::PROCESS_PROC)) {
        crate::host::userns::UserNamespace::Child { host_uid } if denied => {
            PipelineError::RootlessLeases {
                asked: asked.to_string(),
                dir: config.state_dir.display().to_string(),
                host_uid,
            }
        }
        _ => e.into(),
    }
}

/// Choose the request's MIG instances against the leases, resolve the request with the chosen
/// instances in place of its profile items, and record the holder's leases: read, choose,
/// resolve and write under one lock, so that two containers starting at once never get one
/// instance. With `[allocation] create_on_demand`, a profile item that finds no free instance
/// gets one made ([`OnDemand`]), still under the lock.
fn leased_plan(
    config: &Config,
    request: &Request,
    inv: Inventory,
    holder: &Holder,
) -> Result<Plan, PipelineError> {
    let proc = Path::new(lease::PROCESS_PROC);
    let (pid, stat) = holder_process(holder, proc)?;
    let store = lease::Store::new(&config.state_dir);
    let origin = plan::source_name(request);
    let locked = store
        .lock()
        .map_err(|e| rootless_refusal(config, &origin, e))?;
    let all = locked.read_state()?;
    let (live, stale) = lease::partition_live(all.leases.clone(), proc);
    let mut state = State {
        leases: live.clone(),
        created: all.created.clone(),
    };
    let wanted = wanted(config, request, &origin, Some(&holder.container));
    let mut demand = OnDemand::new(config);
    let outcome = choose_or_create(config, &mut demand, &locked, &mut state, &wanted, inv)
        .and_then(|(inv, choice)| Ok((resolve_choice(config, request, &inv, &choice)?, choice)));
    if let Ok((_, choice)) = &outcome {
        state.leases = allocate::merge(
            &live,
            &holder.container,
            pid,
            stat.start_time,
            lease::now_unix(),
            &choice.taken,
        );
    }
    // Else nothing taken; stale leases are still dropped, records kept as settled.
    if state != all {
        locked.write_state(&state)?;
    }
    drop(locked);
    for l in &stale {
        tracing::info!(container = %l.container, uuid = %l.uuid, pid = l.pid, "stale lease dropped: its holder process is gone");
    }
    outcome.map(|(plan, _)| plan)
}

/// The most instances one container start makes on demand (a bound on the loop, not a policy:
/// no GPU has more than seven).
const MAX_CREATED_PER_START: usize = 64;

/// [`allocate::choose`] against `state`'s live leases; when a profile item is short and
/// `create_on_demand` is on, make an instance for it and choose again. Records that an earlier
/// run left are settled first. The inventory the choice was made against, and the choice.
fn choose_or_create(
    config: &Config,
    demand: &mut OnDemand<'_>,
    locked: &Locked<'_>,
    state: &mut State,
    wanted: &Wanted<'_>,
    mut inv: Inventory,
) -> Result<(Inventory, Choice), PipelineError> {
    let live = state.leases.clone();
    if !state.created.is_empty() {
        // A container start does not fail for a record it cannot settle: leases are only ever
        // given for instances that exist, so an unsettled record costs room, never isolation.
        if let Err(e) = demand.reconcile(state, &live) {
            tracing::warn!(error = %e, "instances made on demand could not be settled; the next start tries again");
        }
        if demand.changed {
            inv = crate::host::mig::layout_changed(config)?;
        }
    }
    for _ in 0..MAX_CREATED_PER_START {
        let error = match allocate::choose(wanted, &inv, &live) {
            Ok(choice) => return Ok((inv, choice)),
            Err(e) => e,
        };
        let Some(short) = error.short().cloned() else {
            return Err(error.into());
        };
        if !config.allocation.create_on_demand {
            return Err(if model_has_profile(&inv, &short) {
                PipelineError::OnDemandOff {
                    error: Box::new(error),
                }
            } else {
                error.into()
            });
        }
        let (container, now) = (wanted.container.unwrap_or(""), lease::now_unix());
        let target = (short.profile.as_str(), short.gpu);
        match demand.create(locked, state, &live, target, container, now) {
            Ok(_) => inv = crate::host::mig::layout_changed(config)?,
            Err(DemandError::NoRoom(room)) if room.unknown_profile => {
                return Err(PipelineError::NoSuchProfile {
                    asked: format!("{} asks for {}", wanted.origin, short.asked),
                    profile: short.profile,
                    why: room.why,
                })
            }
            Err(DemandError::NoRoom(room)) => {
                return Err(PipelineError::NoRoom {
                    asked: short_text(&error),
                    room: room.why,
                })
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(PipelineError::NoRoom {
        asked: wanted.origin.to_string(),
        room: format!("{MAX_CREATED_PER_START} instances made for one start and still short"),
    })
}

/// Whether a GPU in MIG mode that the short item may use has the profile in its model and
/// enough free memory slices for one (counted from the inventory's instances, without NVML: a
/// necessary condition, not a placement), so that the hint to turn `create_on_demand` on is
/// given only where it could help.
fn model_has_profile(inv: &Inventory, short: &Short) -> bool {
    inv.gpus
        .iter()
        .filter(|g| g.mig_enabled && short.gpu.is_none_or(|i| i == g.index))
        .any(|g| {
            let Some(model) = migcage_topology::models::model_by_name(&g.name) else {
                return false;
            };
            let Some(wanted) = model.gi_profile(&short.profile) else {
                return false;
            };
            let slices = |p: &migcage_topology::GiProfile| p.placement_size;
            let total = model.gi_profiles.iter().map(slices).max().unwrap_or(0);
            let mut gis: Vec<u32> = Vec::new();
            let (mut used, mut same) = (0, 0);
            for m in &g.mig_devices {
                if gis.contains(&m.gpu_instance_id) {
                    continue;
                }
                gis.push(m.gpu_instance_id);
                // A compute instance's profile (`1c.3g.20gb`) names its GPU instance's after the
                // first dot.
                let gi_name = match m.profile.split_once("c.") {
                    Some((n, rest)) if n.chars().all(|c| c.is_ascii_digit()) => rest,
                    _ => m.profile.as_str(),
                };
                used += model.gi_profile(gi_name).map_or(total, slices);
                same += u32::from(gi_name == wanted.name);
            }
            used + wanted.placement_size <= total && same < wanted.instance_count
        })
}

/// What the short item found, without the error's own advice: `NVIDIA_VISIBLE_DEVICES asks
/// for profile:1g.5gb: all 7 MIG devices of profile 1g.5gb are in use: ...`.
fn short_text(e: &AllocationError) -> String {
    match e {
        AllocationError::Exhausted {
            origin,
            asked,
            problem,
            ..
        } => format!("{origin} asks for {asked}: {problem}"),
        AllocationError::NoInstance { error, .. } => match error.as_ref() {
            PlanError::UnknownProfile {
                origin,
                asked,
                found,
                ..
            } => format!("{origin} asks for {asked}: {found}"),
            other => other.to_string(),
        },
        other => other.to_string(),
    }
}

/// The holder's pid and what procfs says of it: it must run (a lease needs a process to outlive).
fn holder_process(holder: &Holder, proc: &Path) -> Result<(i32, ProcStat), LeaseError> {
    let pid = holder.pid.ok_or_else(|| LeaseError::NoProcess {
        container: holder.container.clone(),
    })?;
    let process_error = |error| LeaseError::Process {
        container: holder.container.clone(),
        path: proc.join(pid.to_string()).join("stat"),
        error,
    };
    let stat = lease::read_stat(proc, &pid.to_string())
        .map_err(process_error)?
        .filter(|s| !s.ended())
        .ok_or_else(|| process_error(std::io::ErrorKind::NotFound.into()))?;
    Ok((pid, stat))
}
