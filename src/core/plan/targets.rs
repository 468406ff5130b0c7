//! What a selector names on this host: the GPUs and MIG devices it resolves to, and the
//! candidates of a request by profile.

use std::collections::BTreeSet;

use crate::core::inventory::{Gpu, Inventory, MigDevice};
use crate::core::request::{DeviceSelector, Request};

use super::nodes::Target;
use super::PlanError;

/// A comma list of at most `limit` items (`none` when empty), for messages.
fn uuid_list(items: impl Iterator<Item = String>, limit: usize) -> String {
    let all: Vec<String> = items.collect();
    if all.is_empty() {
        return "none".into();
    }
    let mut s = all
        .iter()
        .take(limit)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if all.len() > limit {
        s.push_str(&format!(", ... ({} in all)", all.len()));
    }
    s
}

/// The GPUs and MIG devices one selector names (`source` names the request in errors).
pub(super) fn find_targets<'a>(
    sel: &DeviceSelector,
    inv: &'a Inventory,
    source: &str,
) -> Result<Vec<Target<'a>>, PlanError> {
    let asked = sel.to_string();
    let not_found = |found: String| PlanError::NotFound {
        origin: source.to_string(),
        asked: asked.clone(),
        found,
    };
    let gpu_by_index = |i: u32| -> Result<&'a Gpu, PlanError> {
        inv.gpus.iter().find(|g| g.index == i).ok_or_else(|| {
            not_found(match inv.gpus.len() {
                0 => host_gpus(0),
                n => format!("there is no GPU {i}, {}", host_gpus(n)),
            })
        })
    };
    match sel {
        DeviceSelector::All => {
            let mut out = Vec::new();
            for g in &inv.gpus {
                out.push(Target::Gpu(g));
                out.extend(g.mig_devices.iter().map(|m| Target::Mig { gpu: g, mig: m }));
            }
            if out.is_empty() {
                return Err(not_found("this host has no GPU".into()));
            }
            Ok(out)
        }
        DeviceSelector::GpuIndex(i) => Ok(vec![Target::Gpu(gpu_by_index(*i)?)]),
        DeviceSelector::MigIndex { gpu, mig } => {
            let g = gpu_by_index(*gpu)?;
            if !g.mig_enabled {
                return Err(PlanError::NotMig {
                    origin: source.to_string(),
                    asked,
                    gpu: *gpu,
                });
            }
            match g.mig_devices.iter().find(|m| m.index == *mig) {
                Some(m) => Ok(vec![Target::Mig { gpu: g, mig: m }]),
                None => Err(not_found(match g.mig_devices.len() {
                    0 => format!("GPU {gpu} has no MIG devices"),
                    1 => format!("GPU {gpu} has only MIG device {gpu}:0"),
                    n => format!("GPU {gpu} has MIG devices {gpu}:0 to {gpu}:{}", n - 1),
                })),
            }
        }
        DeviceSelector::GpuUuid(u) => inv
            .gpus
            .iter()
            .find(|g| g.uuid.eq_ignore_ascii_case(u))
            .map(|g| vec![Target::Gpu(g)])
            .ok_or_else(|| {
                not_found(format!(
                    "no GPU has that UUID (GPUs: {})",
                    uuid_list(inv.gpus.iter().map(|g| g.uuid.clone()), 8)
                ))
            }),
        DeviceSelector::MigUuid(u) => {
            for g in &inv.gpus {
                if let Some(m) = g
                    .mig_devices
                    .iter()
                    .find(|m| m.uuid.eq_ignore_ascii_case(u))
                {
                    return Ok(vec![Target::Mig { gpu: g, mig: m }]);
                }
            }
            let all = inv
                .gpus
                .iter()
                .flat_map(|g| g.mig_devices.iter().map(|m| m.uuid.clone()));
            Err(not_found(format!(
                "no MIG device has that UUID; it may have been destroyed or re-created (MIG devices now: {})",
                uuid_list(all, 8)
            )))
        }
        DeviceSelector::Profile { gpu, profile, .. } => {
            // Checked first, so that an unknown profile gets its own message here too.
            profile_candidates(*gpu, profile, &asked, inv, source)?;
            Err(PlanError::NotAllocated {
                origin: source.to_string(),
                asked,
            })
        }
        // The selector enum may grow; an unknown kind is never granted.
        #[allow(unreachable_patterns)]
        _ => Err(not_found(
            "migcage does not know this kind of device".into(),
        )),
    }
}

/// The MIG devices a request by profile may be given: every MIG device of `profile` on GPU `gpu`
/// (any GPU when `None`), in NVML order (GPU index, then MIG device index). Which of them are free
/// is [`super::allocate`]'s business; this only checks the request against the host. `asked` and
/// `origin` name the request in errors, which list the profiles that exist.
pub fn profile_candidates<'a>(
    gpu: Option<u32>,
    profile: &str,
    asked: &str,
    inv: &'a Inventory,
    origin: &str,
) -> Result<Vec<(&'a Gpu, &'a MigDevice)>, PlanError> {
    let gpus: Vec<&Gpu> = match gpu {
        Some(i) => {
            let g = inv
                .gpus
                .iter()
                .find(|g| g.index == i)
                .ok_or_else(|| PlanError::NotFound {
                    origin: origin.to_string(),
                    asked: asked.to_string(),
                    found: match inv.gpus.len() {
                        0 => "this host has no GPU".into(),
                        1 => format!("there is no GPU {i}, this host has only GPU 0"),
                        n => format!("there is no GPU {i}, this host has GPUs 0 to {}", n - 1),
                    },
                })?;
            if !g.mig_enabled {
                return Err(PlanError::NotMig {
                    origin: origin.to_string(),
                    asked: asked.to_string(),
                    gpu: i,
                });
            }
            vec![g]
        }
        None => inv.gpus.iter().collect(),
    };
    let out: Vec<(&Gpu, &MigDevice)> = gpus
        .iter()
        .flat_map(|g| g.mig_devices.iter().map(move |m| (*g, m)))
        .filter(|(_, m)| m.profile.eq_ignore_ascii_case(profile))
        .collect();
    if out.is_empty() {
        let mut known: Vec<&str> = Vec::new();
        for g in &gpus {
            for m in &g.mig_devices {
                if !known.contains(&m.profile.as_str()) {
                    known.push(&m.profile);
                }
            }
        }
        known.sort_unstable();
        let place = match gpu {
            Some(i) => format!("GPU {i}"),
            None => "this host".into(),
        };
        let known = if known.is_empty() {
            "it has no MIG devices".into()
        } else {
            format!("profiles here: {}", known.join(", "))
        };
        return Err(PlanError::UnknownProfile {
            origin: origin.to_string(),
            asked: asked.to_string(),
            profile: profile.to_string(),
            found: format!("{place} has no MIG device of profile {profile} ({known})"),
        });
    }
    Ok(out)
}

/// The GPUs (by index) whose state decides what `req` gets, when that is fewer than every GPU:
/// each selector names its GPU (by index or UUID, a MIG device by index or UUID, a profile on
/// one GPU), in the devices, in every source that must agree, and in the MIG admin variables.
/// `None` (every GPU counts) for `all`, a profile on any GPU, and a selector `inv` does not
/// resolve: only a check of every GPU can tell a stale inventory from a wrong request.
pub fn gpus_named(req: &Request, inv: &Inventory) -> Option<BTreeSet<u32>> {
    let admin = [&req.mig_config, &req.mig_monitor];
    let agree = req.must_agree.iter().map(|s| s.selectors.as_slice());
    let all = std::iter::once(req.selectors())
        .chain(agree)
        .chain(admin.into_iter().flatten().map(Vec::as_slice));
    let mut out = BTreeSet::new();
    for sel in all.flatten() {
        match sel {
            DeviceSelector::All | DeviceSelector::Profile { gpu: None, .. } => return None,
            DeviceSelector::Profile { gpu: Some(i), .. } => {
                inv.gpus.iter().find(|g| g.index == *i)?;
                out.insert(*i);
            }
            _ => {
                let targets = find_targets(sel, inv, "").ok()?;
                out.extend(targets.iter().map(|t| t.gpu().index));
            }
        }
    }
    Some(out)
}

/// GPUs named by `NVIDIA_MIG_CONFIG_DEVICES` / `NVIDIA_MIG_MONITOR_DEVICES`.
pub(super) fn admin_gpus<'a>(
    sels: &[DeviceSelector],
    inv: &'a Inventory,
    var: &str,
) -> Result<Vec<&'a Gpu>, PlanError> {
    let mut out: Vec<&Gpu> = Vec::new();
    for sel in sels {
        let found: Vec<&Gpu> = match sel {
            DeviceSelector::All => inv.gpus.iter().filter(|g| g.mig_enabled).collect(),
            _ => find_targets(sel, inv, var)?
                .into_iter()
                .filter_map(|t| {
                    if let Target::Gpu(g) = t {
                        Some(g)
                    } else {
                        None
                    }
                })
                .collect(),
        };
        for g in found {
            if !g.mig_enabled {
                return Err(PlanError::NotMig {
                    origin: var.to_string(),
                    asked: sel.to_string(),
                    gpu: g.index,
                });
            }
            if !out.iter().any(|o| o.index == g.index) {
                out.push(g);
            }
        }
    }
    Ok(out)
}

/// Which GPU indexes a host with `n` GPUs has, as the errors say it: "this host has no GPU",
/// "this host has only GPU 0", "this host has GPUs 0 to 7".
pub fn host_gpus(n: usize) -> String {
    match n {
        0 => "this host has no GPU".into(),
        1 => "this host has only GPU 0".into(),
        n => format!("this host has GPUs 0 to {}", n - 1),
    }
}
