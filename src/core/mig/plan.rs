//! The plan that takes GPUs from their layout to a declared one: incremental, and never
//! destructive of work.
//!
//! Per GPU that the configuration names (the first entry naming it wins; GPUs it does not name
//! are left alone):
//! - every instance a container holds is kept where it is; when the target has no room for it
//!   (its profile is not wanted, or more of it are held than wanted), the plan is refused with
//!   one line naming the instance and its holder;
//! - free instances of a wanted profile are kept too, up to the wanted count, and the missing
//!   ones are placed around them ([`placement::fit_all`]: largest first, each where it leaves
//!   the most room); when they do not fit around the kept free ones, those are destroyed and
//!   everything not held is placed again; when they do not fit around the held ones either, the
//!   plan is refused naming the held instances in the way;
//! - a kept GPU instance without a compute instance (a create cut short) gets its compute
//!   instance;
//! - destroys come first, then creates, each at an explicit placement.
//!
//! A target that does not fit an empty GPU of that model is bad input, whatever is held.

use std::collections::BTreeMap;
use std::fmt;

use migcage_topology::{placement, GiProfile, Placed, Placement};

use super::config::DeviceSpec;
use super::{GiState, GpuLayout};

/// One change to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    SetMigMode {
        gpu: u32,
        enabled: bool,
    },
    DestroyCi {
        gpu: u32,
        gi: u32,
        ci: u32,
    },
    DestroyGi {
        gpu: u32,
        gi: u32,
        profile: &'static GiProfile,
        start: u32,
    },
    /// A GPU instance and its one full compute instance.
    CreateGi {
        gpu: u32,
        profile: &'static GiProfile,
        start: u32,
    },
    /// The full compute instance of an existing GPU instance that has none.
    CreateCi {
        gpu: u32,
        gi: u32,
        profile: &'static GiProfile,
    },
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = |p: &GiProfile, start: u32| Placement {
            start,
            size: p.placement_size,
        };
        match self {
            Step::SetMigMode { gpu, enabled } => write!(
                f,
                "GPU {gpu}: turn MIG mode {}",
                if *enabled { "on" } else { "off" }
            ),
            Step::DestroyCi { gpu, gi, ci } => {
                write!(
                    f,
                    "GPU {gpu}: destroy compute instance {ci} of GPU instance {gi}"
                )
            }
            Step::DestroyGi {
                gpu,
                gi,
                profile,
                start,
            } => write!(
                f,
                "GPU {gpu}: destroy {} GPU instance {gi} at {}",
                profile.name,
                at(profile, *start)
            ),
            Step::CreateGi {
                gpu,
                profile,
                start,
            } => write!(
                f,
                "GPU {gpu}: create {} at {} with its compute instance",
                profile.name,
                at(profile, *start)
            ),
            Step::CreateCi { gpu, gi, profile } => write!(
                f,
                "GPU {gpu}: create the compute instance of {} GPU instance {gi}",
                profile.name
            ),
        }
    }
}

/// Why a configuration cannot be reached; one line each.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("GPU {gpu} ({model}) has no MIG profile {profile:?}; it has: {known}")]
    UnknownProfile {
        gpu: u32,
        model: &'static str,
        profile: String,
        known: String,
    },
    #[error("GPU {gpu} ({model}): {wanted} does not fit; at most (each alone): {fits}")]
    DoesNotFit {
        gpu: u32,
        model: &'static str,
        wanted: String,
        fits: String,
    },
    #[error("GPU {gpu}: reaching {config} would destroy or move {what}; release it (migcage release CONTAINER) or choose a layout that keeps it")]
    Held {
        gpu: u32,
        config: String,
        what: String,
    },
    #[error("the configuration names GPU {index}, but {}; name one of those", crate::core::plan::host_gpus(*count))]
    NoGpu { index: u32, count: usize },
}

/// What to do, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub steps: Vec<Step>,
}

impl Plan {
    /// Whether any MIG mode changes: on real hardware that needs an idle GPU and a reset.
    pub fn changes_mig_mode(&self) -> bool {
        self.steps
            .iter()
            .any(|s| matches!(s, Step::SetMigMode { .. }))
    }
}

/// The plan that takes `gpus` to configuration `name` (its entries `specs`).
pub fn plan(name: &str, specs: &[DeviceSpec], gpus: &[GpuLayout]) -> Result<Plan, PlanError> {
    for spec in specs {
        if let super::config::Devices::List(v) = &spec.devices {
            if let Some(&index) = v.iter().find(|i| **i as usize >= gpus.len()) {
                return Err(PlanError::NoGpu {
                    index,
                    count: gpus.len(),
                });
            }
        }
    }
    let mut steps = Vec::new();
    for gpu in gpus {
        let pci = gpu.model.pci_device_id;
        if let Some(spec) = specs.iter().find(|s| s.names(gpu.index, pci)) {
            steps.extend(plan_gpu(name, spec, gpu)?);
        }
    }
    // Destroys first (compute instances before their GPU instance), then mode, then creates.
    let rank = |s: &Step| match s {
        Step::DestroyCi { .. } => 0,
        Step::DestroyGi { .. } => 1,
        Step::SetMigMode { .. } => 2,
        Step::CreateCi { .. } => 3,
        Step::CreateGi { .. } => 4,
    };
    steps.sort_by_key(|s| rank(s));
    Ok(Plan { steps })
}

/// The profiles `spec` wants on `gpu`, each as often as wanted, largest first.
fn wanted(spec: &DeviceSpec, gpu: &GpuLayout) -> Result<Vec<&'static GiProfile>, PlanError> {
    let mut out = Vec::new();
    for (name, count) in &spec.mig_devices {
        let p = gpu
            .model
            .gi_profile(name)
            .ok_or_else(|| PlanError::UnknownProfile {
                gpu: gpu.index,
                model: gpu.model.name,
                profile: name.clone(),
                known: gpu
                    .model
                    .gi_profiles
                    .iter()
                    .map(|p| p.name)
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
        out.extend(std::iter::repeat_n(p, *count as usize));
    }
    Ok(out)
}

fn counts_text(profiles: &[&'static GiProfile]) -> String {
    let mut counts: BTreeMap<&str, u32> = BTreeMap::new();
    for p in profiles {
        *counts.entry(p.name).or_insert(0) += 1;
    }
    counts
        .iter()
        .map(|(n, c)| format!("{c}x {n}"))
        .collect::<Vec<_>>()
        .join(" + ")
}

fn destroy(gpu: u32, gi: &GiState) -> Vec<Step> {
    let mut out: Vec<Step> = gi
        .compute_instances
        .iter()
        .map(|ci| Step::DestroyCi {
            gpu,
            gi: gi.id,
            ci: ci.id,
        })
        .collect();
    out.push(Step::DestroyGi {
        gpu,
        gi: gi.id,
        profile: gi.profile,
        start: gi.start,
    });
    out
}

fn held_text(gi: &GiState) -> String {
    let uuid = gi
        .compute_instances
        .first()
        .map(|c| format!(" ({})", c.uuid))
        .unwrap_or_default();
    format!(
        "{} GPU instance {}{uuid}, held by container {}",
        gi.profile.name,
        gi.id,
        gi.held_by.as_deref().unwrap_or("?")
    )
}

/// Remove one `profile` from `wanted`; false when none is left.
fn take(wanted: &mut Vec<&'static GiProfile>, profile: &GiProfile) -> bool {
    match wanted.iter().position(|p| p.id == profile.id) {
        Some(i) => {
            wanted.remove(i);
            true
        }
        None => false,
    }
}

/// A GPU that is to have MIG off: refused while anything on it is held.
fn plan_disabled(name: &str, gpu: &GpuLayout, held: &[&GiState]) -> Result<Vec<Step>, PlanError> {
    let g = gpu.index;
    if let Some(h) = held.first() {
        return Err(PlanError::Held {
            gpu: g,
            config: name.into(),
            what: held_text(h),
        });
    }
    let mut steps: Vec<Step> = gpu.instances.iter().flat_map(|i| destroy(g, i)).collect();
    if gpu.mig_enabled {
        steps.push(Step::SetMigMode {
            gpu: g,
            enabled: false,
        });
    }
    Ok(steps)
}

/// Bad input: `want` does not fit even an empty GPU of this model.
fn check_fits(gpu: &GpuLayout, want: &[&'static GiProfile]) -> Result<(), PlanError> {
    if placement::fit_all(gpu.model, &[], want).is_some() {
        return Ok(());
    }
    let fits = gpu
        .model
        .gi_profiles
        .iter()
        .map(|p| format!("{}x {}", placement::remaining_capacity(p, &[]), p.name))
        .collect::<Vec<_>>()
        .join(", ");
    Err(PlanError::DoesNotFit {
        gpu: gpu.index,
        model: gpu.model.name,
        wanted: counts_text(want),
        fits,
    })
}

fn plan_gpu(name: &str, spec: &DeviceSpec, gpu: &GpuLayout) -> Result<Vec<Step>, PlanError> {
    let g = gpu.index;
    let held: Vec<&GiState> = gpu
        .instances
        .iter()
        .filter(|i| i.held_by.is_some())
        .collect();
    if !spec.mig_enabled {
        return plan_disabled(name, gpu, &held);
    }
    let mut want = wanted(spec, gpu)?;
    check_fits(gpu, &want)?;
    let mut steps = Vec::new();
    if !gpu.mig_enabled {
        steps.push(Step::SetMigMode {
            gpu: g,
            enabled: true,
        });
    }
    for h in &held {
        if !take(&mut want, h.profile) {
            return Err(PlanError::Held {
                gpu: g,
                config: name.into(),
                what: held_text(h),
            });
        }
    }
    let fixed: Vec<Placed> = held.iter().map(|h| h.placed()).collect();
    let mut free: Vec<&GiState> = gpu
        .instances
        .iter()
        .filter(|i| i.held_by.is_none())
        .collect();
    // Complete instances first, then by id: those are the ones worth keeping.
    free.sort_by_key(|i| (i.compute_instances.is_empty(), i.id));
    let mut rest = want.clone();
    let kept: Vec<&GiState> = free
        .iter()
        .copied()
        .filter(|i| take(&mut rest, i.profile))
        .collect();
    let mut around = fixed.clone();
    around.extend(kept.iter().map(|k| k.placed()));
    let (keep, create, placements) = match placement::fit_all(gpu.model, &around, &rest) {
        Some(p) => (kept, rest, p),
        None => match placement::fit_all(gpu.model, &fixed, &want) {
            Some(p) => (Vec::new(), want, p),
            None => {
                return Err(PlanError::Held {
                    gpu: g,
                    config: name.into(),
                    what: held
                        .iter()
                        .map(|h| held_text(h))
                        .collect::<Vec<_>>()
                        .join("; "),
                })
            }
        },
    };
    for f in &free {
        if !keep.iter().any(|k| k.id == f.id) {
            steps.extend(destroy(g, f));
        }
    }
    for k in keep.iter().chain(held.iter()) {
        if k.compute_instances.is_empty() {
            steps.push(Step::CreateCi {
                gpu: g,
                gi: k.id,
                profile: k.profile,
            });
        }
    }
    for (profile, at) in create.iter().zip(placements) {
        steps.push(Step::CreateGi {
            gpu: g,
            profile,
            start: at.start,
        });
    }
    Ok(steps)
}

#[cfg(test)]
mod tests;
