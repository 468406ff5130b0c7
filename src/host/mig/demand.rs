//! Instances made on demand, the side effects: making one for a container, and settling the
//! records a crash or an ended lease left ([`crate::core::mig::demand`] decides; this carries
//! it out through a [`MigDriver`]).
//!
//! Every call here runs under the lease store's lock, which the caller holds from reading the
//! leases to writing them back: no other migcage chooses, creates or destroys meanwhile. The
//! record of an instance is written *before* it is made, so a run killed at any point leaves a
//! record the next run settles ([`OnDemand::reconcile`]): an instance that was never made is
//! forgotten, one left without its compute instance is finished (or destroyed), and one that no
//! lease holds is destroyed with `destroy_on_release`, else kept as a free instance. No instance
//! is leased twice: a lease is only ever written for an instance that exists, under the lock.

use crate::config::Config;
use crate::core::mig::demand::{self, Created, NoRoom};
use crate::core::mig::plan::Plan;
use crate::core::mig::GpuLayout;
use crate::host::lease::{Lease, LeaseError, Locked, State};
use crate::sys::mig::{MigDriver, MigError, NvmlMig};

use super::{attach_holders, execute, ApplyError};

/// Why an instance could not be made or a record settled; one line each.
#[derive(Debug, thiserror::Error)]
pub enum DemandError {
    #[error(transparent)]
    Mig(#[from] MigError),
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error(transparent)]
    Lease(#[from] LeaseError),
    #[error("{0}")]
    NoRoom(#[from] NoRoom),
}

/// How the driver is reached: NVML, opened on the first call that needs it (a container start
/// that finds a free instance never loads it).
type Opener<'c> = Box<dyn Fn() -> Result<Box<dyn MigDriver>, MigError> + 'c>;

/// On-demand work for one allocation, under the caller's lock.
pub struct OnDemand<'c> {
    open: Opener<'c>,
    driver: Option<Box<dyn MigDriver>>,
    destroy_unheld: bool,
    /// Whether a GPU's layout was changed (the caller then rediscovers).
    pub changed: bool,
}

impl<'c> OnDemand<'c> {
    /// Through the NVML library of `config`, with its `[allocation]` settings.
    pub fn new(config: &'c Config) -> OnDemand<'c> {
        let library = config.nvml_library.clone();
        OnDemand::with_driver(
            Box::new(move || Ok(Box::new(NvmlMig::open(&library)?) as Box<dyn MigDriver>)),
            config.allocation.destroy_on_release,
        )
    }

    /// Through the driver `open` returns (tests pass their own).
    pub fn with_driver(open: Opener<'c>, destroy_unheld: bool) -> OnDemand<'c> {
        OnDemand {
            open,
            driver: None,
            destroy_unheld,
            changed: false,
        }
    }

    fn driver(&mut self) -> Result<&dyn MigDriver, MigError> {
        if self.driver.is_none() {
            self.driver = Some((self.open)()?);
        }
        Ok(self.driver.as_deref().expect("opened above"))
    }

    /// Today's layouts with the holders of `live` attached.
    fn layouts(&mut self, live: &[Lease]) -> Result<Vec<GpuLayout>, MigError> {
        let mut layouts = self.driver()?.layouts()?;
        attach_holders(&mut layouts, live);
        Ok(layouts)
    }

    /// Settle the records of `state` against the GPUs (see the module's doc), when any needs it;
    /// `state.created` is updated in place (the caller writes it).
    pub fn reconcile(&mut self, state: &mut State, live: &[Lease]) -> Result<(), DemandError> {
        let held: Vec<&str> = live.iter().map(|l| l.uuid.as_str()).collect();
        if !demand::needs_reconcile(&state.created, &held, self.destroy_unheld) {
            return Ok(());
        }
        let layouts = self.layouts(live)?;
        let (steps, keep) = demand::reconcile(&state.created, &layouts, self.destroy_unheld);
        if !steps.is_empty() {
            self.changed = true;
            let result = execute(self.driver()?, &Plan { steps }, &mut |s| {
                tracing::info!(step = %s, "settled an instance made on demand");
            });
            // What was done is done: the records follow the layout as it is now.
            let layouts = self.layouts(live)?;
            state.created = demand::reconcile(&keep, &layouts, false).1;
            result?;
        } else {
            state.created = keep;
        }
        Ok(())
    }

    /// Where an instance of `profile` (on GPU `gpu` when given) would be made now; changes
    /// nothing (`explain`).
    pub fn site(
        &mut self,
        live: &[Lease],
        (profile, gpu): (&str, Option<u32>),
    ) -> Result<demand::Site, DemandError> {
        Ok(demand::choose_site(&self.layouts(live)?, profile, gpu)?)
    }

    /// Make one instance of `profile` (on GPU `gpu` when given) for container `by`, and record
    /// it in `state`: the record is written through `locked` first, then the instance made, then
    /// the record completed in `state` (the caller writes it with the lease). The new record.
    pub fn create(
        &mut self,
        locked: &Locked<'_>,
        state: &mut State,
        live: &[Lease],
        (profile, gpu): (&str, Option<u32>),
        by: &str,
        now: u64,
    ) -> Result<Created, DemandError> {
        let site = demand::choose_site(&self.layouts(live)?, profile, gpu)?;
        state.created.push(Created {
            gpu_uuid: site.gpu_uuid.clone(),
            gpu: site.gpu,
            profile: site.profile.name.to_string(),
            start: site.placement.start,
            gi: None,
            uuid: None,
            by: by.to_string(),
            since: now,
        });
        locked.write_state(state)?;
        crate::faultpoint::hit("demand-after-record");
        let step = site.step();
        let made = execute(self.driver()?, &Plan { steps: vec![step] }, &mut |_| {});
        self.changed = true;
        if let Err(e) = made {
            // Nothing made, or a GPU instance without its compute instance: settle the record now
            // (forgotten, or the half-made instance finished or destroyed).
            self.reconcile(state, live)?;
            return Err(e.into());
        }
        crate::faultpoint::hit("demand-after-create");
        let layouts = self.layouts(live)?;
        let last = state.created.pop().expect("pushed above");
        let (_, filled) = demand::reconcile(std::slice::from_ref(&last), &layouts, false);
        let record = filled.into_iter().next().filter(|r| r.uuid.is_some());
        match record {
            Some(r) => {
                tracing::info!(gpu = r.gpu, profile = %r.profile, start = r.start, uuid = r.uuid.as_deref().unwrap_or(""), container = by, "MIG instance created on demand");
                state.created.push(r.clone());
                Ok(r)
            }
            None => {
                state.created.push(last);
                Err(DemandError::NoRoom(NoRoom {
                    why: format!(
                        "GPU {} ({}): the new {profile} instance does not show in NVML's layout",
                        site.gpu, site.gpu_uuid
                    ),
                    unknown_profile: false,
                }))
            }
        }
    }
}

#[cfg(test)]
mod tests;
