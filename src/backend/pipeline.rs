//! From a container's spec to its plan, with the host I/O that takes: the one entry point the
//! back ends share (the hook, `explain`, the runtime wrapper).
//!
//! request (pure) -> inventory (NVML + /proc) -> plan (pure). Host state that a request needs
//! beyond the inventory (such as which instances are already handed out) is read here too, so
//! that the back ends never differ in what a container gets.

use std::path::Path;

use crate::config::Config;
use crate::core::plan::allocate::{self, AllocationError, Choice, Wanted};
use crate::core::plan::{self, Plan, PlanError};
use crate::core::request::{self, Devices, Request, RequestError};
use crate::host::inventory::{self, Inventory, InventoryError};
use crate::host::lease::{self, Holder, Lease, LeaseError, ProcStat, State};
use crate::host::mig::demand::{DemandError, OnDemand};

mod on_demand;
pub use on_demand::WouldCreate;

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
    /// A dry run (`explain`) of a request that a container start would meet by making an
    /// instance: where it would go.
    #[error(transparent)]
    WouldCreate(Box<WouldCreate>),
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

/// Hand container `id`'s leases to process `pid` (its init, once the runtime has made it): the
/// runtime wrapper's `create` leases under its own pid, which ends when the wrapper does.
/// Returns how many leases changed holder.
pub fn hand_over(config: &Config, id: &str, pid: i32) -> Result<usize, PipelineError> {
    let holder = Holder {
        container: id.to_string(),
        pid: Some(pid),
    };
    let (pid, stat) = holder_process(&holder, Path::new(lease::PROCESS_PROC))?;
    Ok(lease::Store::new(&config.state_dir).hand_over(id, pid, stat.start_time)?)
}

/// One spec's way through: request, inventory, driver files, then the plan (with instances
/// chosen, and leased for a holder, when the request names MIG instances).
fn plan_with_leases(
    config: &Config,
    spec: &serde_json::Value,
    holder: Option<&Holder>,
) -> Result<(Request, Option<Plan>), PipelineError> {
    let request = request::parse(spec, &config.requests)?;
    crate::profile::mark("request");
    if request.is_noop() {
        return Ok((request, None));
    }
    // The validated snapshot when there is one (no NVML on the container-start path), else full
    // discovery, which rewrites it.
    // Checked for the GPUs the request depends on: on a host of eight GPUs, a container that
    // asks for one MIG device of GPU 0 checks GPU 0, not the other seven.
    let (inv, _source) =
        inventory::snapshot::inventory_for(config, |inv| plan::gpus_named(&request, inv))?;
    crate::profile::mark("snapshot");
    // The driver's files for NVIDIA_DRIVER_CAPABILITIES (also for `none`: driver files only).
    // Found before leasing, so that a container that fails here holds no lease.
    let driver = crate::host::driver_discovery::discover_for(
        config,
        &inv.driver_version,
        plan::driver::caps_of(request.driver_capabilities),
    )?;
    crate::profile::mark("driver-files");
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
    crate::profile::mark("plan");
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
    let wanted = wanted(config, request, &origin, None);
    match allocate::choose(&wanted, inv, &live) {
        Ok(choice) => Ok(resolve_choice(config, request, inv, &choice)?),
        Err(e) => Err(on_demand::dry_run_refusal(config, inv, &live, &wanted, e)),
    }
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
    let outcome =
        on_demand::choose_or_create(config, &mut demand, &locked, &mut state, &wanted, inv)
            .and_then(|(inv, choice)| {
                Ok((resolve_choice(config, request, &inv, &choice)?, choice))
            });
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
