//! The pipeline's on-demand part (`[allocation] create_on_demand`): a profile item that finds
//! no free instance gets one made ([`OnDemand`]) at a container start, under the lease lock;
//! a dry run (`explain`) says where it would go. The refusals, one line each.

use serde::Serialize;

use super::PipelineError;
use crate::config::Config;
use crate::core::plan::allocate::{self, AllocationError, Choice, Short, Wanted};
use crate::core::plan::PlanError;
use crate::host::inventory::Inventory;
use crate::host::lease::{self, Lease, Locked, State};
use crate::host::mig::demand::{DemandError, OnDemand};

/// Where a container starting now would have an instance made for it (a dry run's answer: its
/// device nodes exist only once it is made, so there is no plan to show yet).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{asked}: no free instance; a container starting now would have migcage create a {profile} instance on GPU {gpu} ({gpu_uuid}) at placement start {start} ([allocation] create_on_demand)")]
pub struct WouldCreate {
    #[serde(skip)]
    pub asked: String,
    pub gpu: u32,
    pub gpu_uuid: String,
    pub profile: String,
    pub start: u32,
}

/// The dry run's answer to `error` (a choice against the live leases that failed): where the
/// instance would be made ([`PipelineError::WouldCreate`]), or the refusal a start would get.
pub(super) fn dry_run_refusal(
    config: &Config,
    inv: &Inventory,
    live: &[Lease],
    wanted: &Wanted<'_>,
    error: AllocationError,
) -> PipelineError {
    let Some(short) = error.short().cloned() else {
        return error.into();
    };
    if !config.allocation.create_on_demand {
        return off(inv, &short, error);
    }
    let mut demand = OnDemand::new(config);
    match demand.site(live, (short.profile.as_str(), short.gpu)) {
        Ok(site) => PipelineError::WouldCreate(Box::new(WouldCreate {
            asked: format!("{} asks for {}", wanted.origin, short.asked),
            gpu: site.gpu,
            gpu_uuid: site.gpu_uuid,
            profile: site.profile.name.to_string(),
            start: site.placement.start,
        })),
        Err(e) => refusal(wanted.origin, short, &error, e),
    }
}

/// The refusal with `create_on_demand` off: with the key to turn on where that could help.
fn off(inv: &Inventory, short: &Short, error: AllocationError) -> PipelineError {
    if model_has_profile(inv, short) {
        PipelineError::OnDemandOff {
            error: Box::new(error),
        }
    } else {
        error.into()
    }
}

/// The refusal when no instance could be made for `short`.
fn refusal(origin: &str, short: Short, error: &AllocationError, e: DemandError) -> PipelineError {
    match e {
        DemandError::NoRoom(room) if room.unknown_profile => PipelineError::NoSuchProfile {
            asked: format!("{origin} asks for {}", short.asked),
            profile: short.profile,
            why: room.why,
        },
        DemandError::NoRoom(room) => PipelineError::NoRoom {
            asked: short_text(error),
            room: room.why,
        },
        e => e.into(),
    }
}

/// The most instances one container start makes on demand (a bound on the loop, not a policy:
/// no GPU has more than seven).
const MAX_CREATED_PER_START: usize = 64;

/// [`allocate::choose`] against `state`'s live leases; when a profile item is short and
/// `create_on_demand` is on, make an instance for it and choose again. Records that an earlier
/// run left are settled first. The inventory the choice was made against, and the choice.
pub(super) fn choose_or_create(
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
            return Err(off(&inv, &short, error));
        }
        let (container, now) = (wanted.container.unwrap_or(""), lease::now_unix());
        let target = (short.profile.as_str(), short.gpu);
        match demand.create(locked, state, &live, target, container, now) {
            Ok(_) => inv = crate::host::mig::layout_changed(config)?,
            Err(e) => return Err(refusal(wanted.origin, short, &error, e)),
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
                let gi_name = m.gpu_instance_profile();
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
