//! Instances made when a container asks for a size (`[allocation] create_on_demand`), the pure
//! part: where a new instance goes ([`choose_site`]), the record migcage keeps of what it made
//! ([`Created`]), and how the next run settles records that a crash or a released lease left
//! behind ([`reconcile`]). The side effects live in [`crate::host::mig::demand`].
//!
//! # Where a new instance goes
//!
//! Of every GPU in MIG mode whose model has the profile (only the GPU the request names, for
//! `profile:1/3g.20gb`), the placement [`placement::choose`] picks on that GPU (the one that
//! leaves that GPU the most room for the largest profiles). Between GPUs, the one whose room
//! shrinks least, compared largest profile first (how many more instances of each profile could
//! be created there, before minus after), then the lowest index. So a GPU that is already split
//! is split further before a whole one is touched: a `1g.5gb` goes next to other small
//! instances, and a GPU that can still take a `7g.40gb` keeps it as long as another GPU has
//! room.

use std::collections::BTreeMap;

use migcage_topology::{placement, GiProfile, Placed, Placement};
use serde::{Deserialize, Serialize};

use super::plan::Step;
use super::{GiState, GpuLayout};

/// One instance migcage made on demand, as the lease store records it. Written before the
/// instance is made (with `gi` and `uuid` unset), so that a run killed half way leaves a record
/// the next run can settle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Created {
    /// The parent GPU's UUID (`GPU-...`).
    pub gpu_uuid: String,
    /// Its NVML index when the instance was made (for messages).
    pub gpu: u32,
    /// The GPU instance profile, `3g.20gb`.
    pub profile: String,
    /// The first memory slice of its placement.
    pub start: u32,
    /// The GPU instance's id, once it exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gi: Option<u32>,
    /// The MIG device's UUID, once its compute instance exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    /// The container it was made for.
    pub by: String,
    /// When (seconds since the epoch).
    pub since: u64,
}

/// Where a new instance goes: GPU, profile and placement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    pub gpu: u32,
    pub gpu_uuid: String,
    pub profile: &'static GiProfile,
    pub placement: Placement,
}

impl Site {
    /// The step that makes it.
    pub fn step(&self) -> Step {
        Step::CreateGi {
            gpu: self.gpu,
            profile: self.profile,
            start: self.placement.start,
        }
    }
}

/// No GPU has room for the profile: one clause per GPU considered, saying why
/// (`GPU 0 (A100-SXM4-40GB): has 1g.5gb x7, fits nothing more`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{why}")]
pub struct NoRoom {
    pub why: String,
    /// No GPU considered is of a model that has the profile at all (bad input, not a full GPU).
    pub unknown_profile: bool,
}

fn placed(instances: &[GiState]) -> Vec<Placed> {
    instances.iter().map(GiState::placed).collect()
}

/// `1g.5gb x2, 2g.10gb x1`, or `none`.
fn counts_text(counts: &BTreeMap<String, u32>) -> String {
    if counts.is_empty() {
        return "none".into();
    }
    counts
        .iter()
        .map(|(p, n)| format!("{p} x{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What still fits on a GPU, profile by profile (`3g.20gb x1, 1g.5gb x3`), or `nothing more`.
fn fits_text(gpu: &GpuLayout) -> String {
    let now = placed(&gpu.instances);
    let fits: Vec<String> = gpu
        .model
        .gi_profiles
        .iter()
        .filter_map(|p| {
            let n = placement::remaining_capacity(p, &now);
            (n > 0).then(|| format!("{} x{n}", p.name))
        })
        .collect();
    if fits.is_empty() {
        "nothing more".into()
    } else {
        fits.join(", ")
    }
}

/// Where an instance of `profile` goes (see the module's doc); `gpu` limits the choice to that
/// GPU. Pure.
pub fn choose_site(layouts: &[GpuLayout], profile: &str, gpu: Option<u32>) -> Result<Site, NoRoom> {
    let mut best: Option<(Vec<u32>, Site)> = None;
    let mut why: Vec<String> = Vec::new();
    let mut known = false;
    for g in layouts.iter().filter(|g| gpu.is_none_or(|i| i == g.index)) {
        let name = format!("GPU {} ({})", g.index, g.model.name);
        if !g.mig_enabled {
            why.push(format!("{name}: MIG mode is off"));
            continue;
        }
        let Some(p) = g.model.gi_profile(profile) else {
            let names: Vec<&str> = g.model.gi_profiles.iter().map(|p| p.name).collect();
            why.push(format!(
                "{name}: its model has no profile {profile} (its profiles: {})",
                names.join(", ")
            ));
            continue;
        };
        known = true;
        let now = placed(&g.instances);
        let Some(at) = placement::choose(g.model, p, &now) else {
            why.push(format!(
                "{name}: has {}, fits {}",
                counts_text(&g.counts()),
                fits_text(g)
            ));
            continue;
        };
        let before = placement::room(g.model, &now);
        let mut after_placed = now.clone();
        after_placed.push(Placed {
            profile: p,
            placement: at,
        });
        let after = placement::room(g.model, &after_placed);
        let loss: Vec<u32> = before
            .iter()
            .zip(&after)
            .map(|(b, a)| b.saturating_sub(*a))
            .collect();
        // Strictly less loss wins; of equals, the first (lowest index) stays.
        if best.as_ref().is_none_or(|(l, _)| loss < *l) {
            best = Some((
                loss,
                Site {
                    gpu: g.index,
                    gpu_uuid: g.uuid.clone(),
                    profile: p,
                    placement: at,
                },
            ));
        }
    }
    match best {
        Some((_, site)) => Ok(site),
        None if why.is_empty() => Err(NoRoom {
            why: match gpu {
                Some(i) => format!("there is no GPU {i}"),
                None => "this host has no GPU".into(),
            },
            unknown_profile: false,
        }),
        None => Err(NoRoom {
            why: why.join("; "),
            unknown_profile: !known,
        }),
    }
}

/// The GPU instance a record names, if it still exists: same GPU, start and profile, and (once
/// the record knows it) the same MIG device.
fn find<'a>(r: &Created, layouts: &'a [GpuLayout]) -> Option<(&'a GpuLayout, &'a GiState)> {
    let g = layouts.iter().find(|g| g.uuid == r.gpu_uuid)?;
    let gi = g.instances.iter().find(|gi| {
        gi.start == r.start
            && gi.profile.name == r.profile
            && r.gi.is_none_or(|id| id == gi.id)
            && r.uuid.as_ref().is_none_or(|u| {
                gi.compute_instances.is_empty() || gi.compute_instances.iter().any(|c| &c.uuid == u)
            })
    })?;
    Some((g, gi))
}

/// What the next run does with the records (`layouts` with their holders attached): the steps to
/// carry out, and the records to keep (with what the layout told of them filled in). Pure.
///
/// - A record whose instance is gone (never made: killed before the create; or destroyed since,
///   by `migcage mig apply` or by hand) is forgotten.
/// - A GPU instance without its compute instance (killed between the two creates) gets it, or
///   with `destroy_unheld` is destroyed.
/// - An instance nobody holds is destroyed with `destroy_unheld` (`destroy_on_release`: its
///   lease ended, or its container never got it), else kept: it is free, and given to the next
///   request of its profile (adopted).
pub fn reconcile(
    records: &[Created],
    layouts: &[GpuLayout],
    destroy_unheld: bool,
) -> (Vec<Step>, Vec<Created>) {
    let mut steps = Vec::new();
    let mut keep = Vec::new();
    for r in records {
        let Some((g, gi)) = find(r, layouts) else {
            continue;
        };
        if gi.held_by.is_none() && destroy_unheld {
            for ci in &gi.compute_instances {
                steps.push(Step::DestroyCi {
                    gpu: g.index,
                    gi: gi.id,
                    ci: ci.id,
                });
            }
            steps.push(Step::DestroyGi {
                gpu: g.index,
                gi: gi.id,
                profile: gi.profile,
                start: gi.start,
            });
            continue;
        }
        if gi.compute_instances.is_empty() {
            steps.push(Step::CreateCi {
                gpu: g.index,
                gi: gi.id,
                profile: gi.profile,
            });
        }
        let mut r = r.clone();
        r.gi = Some(gi.id);
        r.uuid = gi.compute_instances.first().map(|c| c.uuid.clone());
        keep.push(r);
    }
    (steps, keep)
}

/// Whether the records need a look at the GPUs (NVML) before the next allocation: one was left
/// half-made, or (with `destroy_unheld`) names an instance no lease in `held` holds. Pure and
/// cheap: the container-start path asks this first, and opens NVML only when it says yes.
pub fn needs_reconcile(records: &[Created], held: &[&str], destroy_unheld: bool) -> bool {
    records.iter().any(|r| match &r.uuid {
        None => true,
        Some(u) => destroy_unheld && !held.contains(&u.as_str()),
    })
}

#[cfg(test)]
mod tests;
