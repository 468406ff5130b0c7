//! The plan: `resolve(request, inventory) -> Plan` (the `ContainerEdits` plus what the hook shows
//! of the driver's procfs). Pure, no I/O, and the one place that decides what a container gets.

pub mod allocate;
pub mod driver;
pub mod nodes;
mod targets;

use std::collections::BTreeSet;
use std::path::Path;

use serde::Serialize;

use crate::core::edits::{Access, ContainerEdits, DeviceNode};
use crate::core::inventory::Inventory;
use crate::core::request::{Devices, Request, Source, SourceSelection};
use nodes::{allow_rules, common_nodes, device_nodes, mig_admin_node, push_unique, Target};
use targets::{admin_gpus, find_targets};

pub use targets::{gpus_named, host_gpus, profile_candidates};

/// Why a request cannot be resolved on this host. One line each: what was asked (and by which
/// source), what the host has, what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("{origin} asks for {asked}: {found}; run 'migcage list' to see this host's devices")]
    NotFound {
        origin: String,
        asked: String,
        found: String,
    },
    #[error("{origin} asks for {asked}: GPU {gpu} is not in MIG mode, so it has no MIG devices; ask for the whole GPU ({gpu}) or enable MIG on it")]
    NotMig {
        origin: String,
        asked: String,
        gpu: u32,
    },
    #[error("{origin} asks for {asked}: the nvidia-caps driver is not loaded (no nvidia-caps in /proc/devices); load nvidia with MIG support or ask for a whole GPU")]
    NoCaps { origin: String, asked: String },
    /// A request by profile for a profile that no MIG device has (on the named GPU, or at all).
    #[error("{origin} asks for {asked}: {found}; ask for a profile listed, or create such an instance (nvidia-smi mig -cgi {profile} -C)")]
    UnknownProfile {
        origin: String,
        asked: String,
        profile: String,
        /// `GPU 0 has no MIG device of profile 2g.10gb (profiles here: 1g.5gb, 3g.20gb)`.
        found: String,
    },
    /// Two honoured sources that name different devices, found once both were resolved.
    #[error("{first}={first_value:?} and {second}={second_value:?} name different devices; remove one of them or make them name the same devices")]
    Conflict {
        first: String,
        first_value: String,
        second: String,
        second_value: String,
    },
    /// A request by profile reached `resolve` without being allocated (only the pipeline, which
    /// holds the lease store, turns profiles into instances).
    #[error("{origin} asks for {asked}: a request by profile is allocated when the container starts (by the migcage hook or runtime), which this caller does not do; name a MIG device instead (0:1 or MIG-..., see 'migcage list')")]
    NotAllocated { origin: String, asked: String },
}

/// One device the container gets, as resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResolvedDevice {
    /// `0` or `0:1`.
    pub index: String,
    pub uuid: String,
    /// `GPU` (whole GPU) or the MIG profile, such as `1g.5gb`.
    pub kind: String,
    pub gpu_uuid: String,
}

/// Everything migcage will do to a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct Plan {
    pub devices: Vec<ResolvedDevice>,
    pub edits: ContainerEdits,
    /// `gpus/<bus id>` entries of the driver's procfs the container sees.
    pub proc_gpus: Vec<String>,
    /// Capability files (relative to the driver's procfs dir) the container sees.
    pub proc_caps: Vec<String>,
}

/// Where a request came from, for messages: `NVIDIA_VISIBLE_DEVICES`, `annotation ...`.
pub fn source_name(req: &Request) -> String {
    if req.sources.is_empty() {
        return "the request".into();
    }
    req.sources
        .iter()
        .map(Source::to_string)
        .collect::<Vec<_>>()
        .join(" and ")
}

/// Resolve a request against the host. `dev_root` names where host nodes live.
pub fn resolve(req: &Request, inv: &Inventory, dev_root: &Path) -> Result<Plan, PlanError> {
    let mut plan = Plan::default();
    if matches!(req.devices, Devices::Untouched) {
        return Ok(plan);
    }
    let source = source_name(req);
    let mut targets: Vec<Target<'_>> = Vec::new();
    for sel in req.selectors() {
        for t in find_targets(sel, inv, &source)? {
            if !targets.iter().any(|o| o.uuid() == t.uuid()) {
                targets.push(t);
            }
        }
    }
    check_agreement(&req.must_agree, inv)?;
    let admin = admin_nodes(req, inv, dev_root, &mut targets)?;
    let mut nodes = Vec::new();
    if !targets.is_empty() {
        push_unique(&mut nodes, common_nodes(inv, dev_root));
    }
    for t in &targets {
        let device = device_nodes(t, inv, dev_root).ok_or_else(|| PlanError::NoCaps {
            origin: source.clone(),
            asked: t.uuid().to_string(),
        })?;
        push_unique(&mut nodes, device);
        add_target(&mut plan, t);
    }
    for (node, cap) in admin {
        push_unique(&mut nodes, [node]);
        plan.proc_caps.push(cap.to_string());
    }
    plan.edits.device_rules = allow_rules(&nodes, Access::RW);
    plan.edits.device_nodes = nodes;
    let visible = if plan.devices.is_empty() {
        "none".to_string()
    } else {
        plan.devices
            .iter()
            .map(|d| d.uuid.as_str())
            .collect::<Vec<_>>()
            .join(",")
    };
    plan.edits
        .env
        .push(format!("NVIDIA_VISIBLE_DEVICES={visible}"));
    plan.edits.env.push(format!(
        "NVIDIA_DRIVER_CAPABILITIES={}",
        req.driver_capabilities
    ));
    Ok(plan)
}

/// Sources that named devices in different words must mean the same devices.
fn check_agreement(must_agree: &[SourceSelection], inv: &Inventory) -> Result<(), PlanError> {
    let Some((first, rest)) = must_agree.split_first() else {
        return Ok(());
    };
    let uuids = |s: &SourceSelection| -> Result<BTreeSet<String>, PlanError> {
        let mut out = BTreeSet::new();
        for sel in &s.selectors {
            out.extend(
                find_targets(sel, inv, &s.label)?
                    .iter()
                    .map(|t| t.uuid().to_string()),
            );
        }
        Ok(out)
    };
    let want = uuids(first)?;
    for other in rest {
        if uuids(other)? != want {
            return Err(PlanError::Conflict {
                first: first.label.clone(),
                first_value: first.value.clone(),
                second: other.label.clone(),
                second_value: other.value.clone(),
            });
        }
    }
    Ok(())
}

/// The mig/config and mig/monitor capability nodes the request asks for, each with the procfs
/// file it shows; the GPUs they name are added to `targets`.
fn admin_nodes<'a>(
    req: &Request,
    inv: &'a Inventory,
    dev_root: &Path,
    targets: &mut Vec<Target<'a>>,
) -> Result<Vec<(DeviceNode, &'static str)>, PlanError> {
    let mut admin = Vec::new();
    for (var, sels, config) in [
        ("NVIDIA_MIG_CONFIG_DEVICES", &req.mig_config, true),
        ("NVIDIA_MIG_MONITOR_DEVICES", &req.mig_monitor, false),
    ] {
        let Some(sels) = sels else { continue };
        let gpus = admin_gpus(sels, inv, var)?;
        if gpus.is_empty() {
            continue;
        }
        let node = mig_admin_node(inv, dev_root, config).ok_or_else(|| PlanError::NoCaps {
            origin: var.to_string(),
            asked: "mig/config or mig/monitor".into(),
        })?;
        admin.push((
            node,
            if config {
                "capabilities/mig/config"
            } else {
                "capabilities/mig/monitor"
            },
        ));
        for g in gpus {
            if !targets.iter().any(|t| t.uuid() == g.uuid) {
                targets.push(Target::Gpu(g));
            }
        }
    }
    Ok(admin)
}

/// Record one target in the plan: its procfs entries and the device the container gets.
fn add_target(plan: &mut Plan, t: &Target<'_>) {
    let gpu = t.gpu();
    let bus = gpu.proc_bus_id();
    if !plan.proc_gpus.contains(&bus) {
        plan.proc_gpus.push(bus);
    }
    if let Target::Mig { mig, .. } = t {
        let gi = format!(
            "capabilities/gpu{}/mig/gi{}/access",
            gpu.minor, mig.gpu_instance_id
        );
        let ci = format!(
            "capabilities/gpu{}/mig/gi{}/ci{}/access",
            gpu.minor, mig.gpu_instance_id, mig.compute_instance_id
        );
        for c in [gi, ci] {
            if !plan.proc_caps.contains(&c) {
                plan.proc_caps.push(c);
            }
        }
    }
    plan.devices.push(ResolvedDevice {
        index: t.index_name(),
        uuid: t.uuid().to_string(),
        kind: match t {
            Target::Gpu(_) => "GPU".into(),
            Target::Mig { mig, .. } => mig.profile.clone(),
        },
        gpu_uuid: gpu.uuid.clone(),
    });
}

#[cfg(test)]
mod tests;
