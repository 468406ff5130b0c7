//! Dynamic MIG, the side effects: today's layout with who holds each instance, and carrying a
//! plan out through a [`MigDriver`]. The plan itself is pure ([`crate::core::mig::plan`]).
//!
//! Callers hold the lease store's lock from reading the leases to the last step, so that no
//! container is given an instance while it is being destroyed, and no two changes interleave.

pub mod demand;

use crate::config::Config;
use crate::core::inventory::Inventory;
use crate::core::mig::plan::{Plan, Step};
use crate::core::mig::GpuLayout;
use crate::host::inventory::InventoryError;
use crate::host::lease::Lease;
use crate::sys::mig::{MigDriver, MigError, ModeChange};

/// The file in `state_dir` that migcage touches after it changed a GPU's layout (`mig apply`,
/// an instance made or destroyed on demand): `migcage-cdi.path` watches it and regenerates the
/// CDI spec. Not the snapshot itself, which every full discovery (`cdi generate` too) rewrites.
pub const LAYOUT_STAMP: &str = "mig-layout-changed";

/// After a layout change: rediscover (the snapshot of the old layout must never be used again;
/// a snapshot that cannot be written is only warned about, procfs would reject it anyway) and
/// touch [`LAYOUT_STAMP`] for the CDI unit. The new inventory.
pub fn layout_changed(config: &Config) -> Result<Inventory, InventoryError> {
    let found = crate::host::inventory::snapshot::discover_and_save(config)?;
    if let Err(e) = &found.saved {
        tracing::warn!(error = %e, "inventory snapshot not rewritten after a MIG layout change");
    }
    let stamp = config.state_dir.join(LAYOUT_STAMP);
    let when = crate::host::lease::now_unix().to_string();
    if let Err(e) = std::fs::write(&stamp, when + "\n") {
        tracing::warn!(path = %stamp.display(), error = %e, "cannot touch the MIG layout stamp; regenerate CDI specs by hand ('migcage cdi generate')");
    }
    Ok(found.inventory)
}

/// Mark each instance that a live lease names with its holder.
pub fn attach_holders(layouts: &mut [GpuLayout], live: &[Lease]) {
    for gi in layouts.iter_mut().flat_map(|g| g.instances.iter_mut()) {
        gi.held_by = gi
            .compute_instances
            .iter()
            .find_map(|ci| live.iter().find(|l| l.uuid == ci.uuid))
            .map(|l| l.container.clone());
    }
}

/// Why a plan was not carried out to the end; one line each.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("step {n} of {total} ({step}) failed: {source}; {done} steps done before it; run the command again to finish from the layout as it is now")]
    Step {
        n: usize,
        total: usize,
        step: String,
        done: usize,
        source: Box<MigError>,
    },
    #[error("GPU {gpu}: MIG mode changes only after a GPU reset, which needs an idle GPU: stop every process on it, run 'nvidia-smi --gpu-reset -i {gpu}', then run the command again")]
    PendingReset { gpu: u32 },
}

/// Carry out `plan` step by step, calling `progress` after each. A failed step stops the rest;
/// what was done stays done, and a plan made again from the layout as it is then finishes it
/// (a GPU instance left without its compute instance gets one).
pub fn execute(
    driver: &dyn MigDriver,
    plan: &Plan,
    progress: &mut dyn FnMut(&Step),
) -> Result<(), ApplyError> {
    let total = plan.steps.len();
    for (i, step) in plan.steps.iter().enumerate() {
        let failed = |source| ApplyError::Step {
            n: i + 1,
            total,
            step: step.to_string(),
            done: i,
            source: Box::new(source),
        };
        match *step {
            Step::SetMigMode { gpu, enabled } => {
                if driver.set_mig_mode(gpu, enabled).map_err(failed)? == ModeChange::PendingReset {
                    return Err(ApplyError::PendingReset { gpu });
                }
            }
            Step::DestroyCi { gpu, gi, ci } => driver
                .destroy_compute_instance(gpu, gi, ci)
                .map_err(failed)?,
            Step::DestroyGi { gpu, gi, .. } => {
                driver.destroy_gpu_instance(gpu, gi).map_err(failed)?;
                crate::faultpoint::hit("mig-after-destroy");
            }
            Step::CreateGi {
                gpu,
                profile,
                start,
            } => {
                let gi = driver
                    .create_gpu_instance(gpu, profile, start)
                    .map_err(failed)?;
                crate::faultpoint::hit("mig-after-create-gi");
                driver
                    .create_compute_instance(gpu, gi, profile)
                    .map_err(failed)?;
            }
            Step::CreateCi { gpu, gi, profile } => {
                driver
                    .create_compute_instance(gpu, gi, profile)
                    .map_err(failed)?;
            }
        }
        progress(step);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
