//! The plan: `resolve(request, inventory) -> Plan` (the `ContainerEdits` plus what the hook shows
//! of the driver's procfs). Pure, no I/O, and the one place that decides what a container gets.

pub mod allocate;
pub mod driver;
pub mod nodes;

use std::collections::BTreeSet;
use std::path::Path;

use serde::Serialize;

use crate::core::edits::{Access, ContainerEdits};
use crate::core::request::{DeviceSelector, Devices, Request, Source, SourceSelection};
use crate::host::inventory::{Gpu, Inventory, MigDevice};
use nodes::{allow_rules, common_nodes, device_nodes, mig_admin_node, push_unique, Target};

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
    /// A request by profile reached `resolve` without being allocated (only the pipeline, which
    /// holds the lease store, turns profiles into instances).
    /// Two honoured sources that name different devices, found once both were resolved.
    #[error("{first}={first_value:?} and {second}={second_value:?} name different devices; remove one of them or make them name the same devices")]
    Conflict {
        first: String,
        first_value: String,
        second: String,
        second_value: String,
    },
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

fn find_targets<'a>(
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
                0 => "this host has no GPU".into(),
                n => format!("there is no GPU {i}, this host has GPUs 0 to {}", n - 1),
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
/// is the lease module's business; this only checks the request against the host. `asked` and
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

/// GPUs named by `NVIDIA_MIG_CONFIG_DEVICES` / `NVIDIA_MIG_MONITOR_DEVICES`.
fn admin_gpus<'a>(
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
    // Sources that named devices in different words must mean the same devices.
    if let Some((first, rest)) = req.must_agree.split_first() {
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
    }
    let mut nodes = Vec::new();
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
    if !targets.is_empty() {
        push_unique(&mut nodes, common_nodes(inv, dev_root));
    }
    for t in &targets {
        let device = device_nodes(t, inv, dev_root).ok_or_else(|| PlanError::NoCaps {
            origin: source.clone(),
            asked: t.uuid().to_string(),
        })?;
        push_unique(&mut nodes, device);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RequestPolicy;
    use nodes::tests::inventory;
    use serde_json::json;

    fn request(env: &[&str]) -> Request {
        let spec = json!({
            "ociVersion": "1.0.2",
            "process": {"env": env, "capabilities": {"bounding": ["CAP_SYS_ADMIN"]}},
            "root": {"path": "rootfs"},
        });
        crate::core::request::parse(&spec, &RequestPolicy::default()).unwrap()
    }

    fn plan(env: &[&str]) -> Result<Plan, PlanError> {
        resolve(&request(env), &inventory(), Path::new("/dev"))
    }

    /// The env var and migcage's annotation naming devices, each in its own words.
    fn plan_with_annotation(env: &str, annotation: &str) -> Result<Plan, PlanError> {
        let spec = json!({
            "process": {"env": [format!("NVIDIA_VISIBLE_DEVICES={env}")]},
            "annotations": {"migcage.io/devices": annotation},
            "root": {"path": "rootfs"},
        });
        let req = crate::core::request::parse(&spec, &RequestPolicy::default()).unwrap();
        resolve(&req, &inventory(), Path::new("/dev"))
    }

    #[test]
    fn sources_agree_when_they_name_the_same_devices_differently() {
        // MIG-2222... is 0:1 on this host: the same device, named two ways.
        let p = plan_with_annotation("MIG-22222222-2222-2222-2222-222222222222", "0:1").unwrap();
        assert_eq!(p.devices.len(), 1);
        assert_eq!(p.devices[0].index, "0:1");
        let p = plan_with_annotation(
            "GPU-11111111-0000-0000-0000-000000000000,0:0",
            "1,MIG-11111111-1111-1111-1111-111111111111",
        )
        .unwrap();
        assert_eq!(p.devices.len(), 2);
        // MIG-1111... is 0:0, not 0:1.
        let e = plan_with_annotation("MIG-11111111-1111-1111-1111-111111111111", "0:1")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "annotation migcage.io/devices=\"0:1\" and NVIDIA_VISIBLE_DEVICES=\"MIG-11111111-1111-1111-1111-111111111111\" name different devices; remove one of them or make them name the same devices"
        );
        // A source naming a device the host lacks says so, naming that source.
        let e = plan_with_annotation("MIG-99999999-9999-9999-9999-999999999999", "0:1")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("NVIDIA_VISIBLE_DEVICES asks for MIG-9999"),
            "{e}"
        );
    }

    fn paths(p: &Plan) -> Vec<&str> {
        p.edits
            .device_nodes
            .iter()
            .map(|n| n.path.as_str())
            .collect()
    }

    const COMMON: [&str; 3] = ["/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools"];

    #[test]
    fn nothing_asked_changes_nothing() {
        for env in [
            vec![],
            vec!["NVIDIA_VISIBLE_DEVICES=void"],
            vec!["NVIDIA_VISIBLE_DEVICES="],
        ] {
            assert_eq!(plan(&env).unwrap(), Plan::default(), "{env:?}");
        }
    }

    #[test]
    fn none_gives_no_nodes_but_says_so() {
        let p = plan(&["NVIDIA_VISIBLE_DEVICES=none"]).unwrap();
        assert!(p.edits.device_nodes.is_empty() && p.edits.device_rules.is_empty());
        assert!(p
            .edits
            .env
            .contains(&"NVIDIA_VISIBLE_DEVICES=none".to_string()));
    }

    #[test]
    fn each_form_names_exactly_its_nodes() {
        let cap = |n: u32| format!("/dev/nvidia-caps/nvidia-cap{n}");
        let (gi2, ci2) = (
            migcage_topology::gi_access_minor(0, 2),
            migcage_topology::ci_access_minor(0, 2, 0),
        );
        let mig1 = {
            let mut v: Vec<String> = COMMON.iter().map(|s| s.to_string()).collect();
            v.extend(["/dev/nvidia0".to_string(), cap(gi2), cap(ci2)]);
            v
        };
        for value in ["0:1", "MIG-22222222-2222-2222-2222-222222222222"] {
            let p = plan(&[&format!("NVIDIA_VISIBLE_DEVICES={value}")]).unwrap();
            assert_eq!(paths(&p), mig1, "{value}");
            assert_eq!(p.devices[0].index, "0:1");
            assert_eq!(p.proc_gpus, ["0000:07:00.0"]);
            assert_eq!(
                p.proc_caps,
                [
                    "capabilities/gpu0/mig/gi2/access",
                    "capabilities/gpu0/mig/gi2/ci0/access"
                ]
            );
            assert_eq!(p.edits.device_rules.len(), 6);
        }
        for value in ["1", "GPU-11111111-0000-0000-0000-000000000000"] {
            let p = plan(&[&format!("NVIDIA_VISIBLE_DEVICES={value}")]).unwrap();
            assert_eq!(
                paths(&p),
                [COMMON.as_slice(), &["/dev/nvidia1"]].concat(),
                "{value}"
            );
            assert!(p.proc_caps.is_empty());
        }
        // A whole GPU in MIG mode: its GPU node, no MIG capability.
        let p = plan(&["NVIDIA_VISIBLE_DEVICES=0"]).unwrap();
        assert_eq!(paths(&p), [COMMON.as_slice(), &["/dev/nvidia0"]].concat());
        // all: both GPUs and every MIG device.
        let p = plan(&["NVIDIA_VISIBLE_DEVICES=all"]).unwrap();
        assert_eq!(p.devices.len(), 4);
        assert_eq!(p.edits.device_nodes.len(), 3 + 2 + 4);
    }

    #[test]
    fn the_same_device_twice_is_given_once() {
        let p =
            plan(&["NVIDIA_VISIBLE_DEVICES=0:0,MIG-11111111-1111-1111-1111-111111111111"]).unwrap();
        assert_eq!(p.devices.len(), 1);
        assert_eq!(p.edits.device_nodes.len(), 6);
    }

    #[test]
    fn rules_allow_exactly_the_nodes() {
        let p = plan(&["NVIDIA_VISIBLE_DEVICES=0:1"]).unwrap();
        for (n, r) in p.edits.device_nodes.iter().zip(&p.edits.device_rules) {
            assert_eq!(
                (r.major, r.minor, r.allow),
                (Some(n.major), Some(n.minor), true)
            );
            assert_eq!(r.access, Access::RW);
        }
    }

    #[test]
    fn errors_say_what_was_asked_and_what_exists() {
        let cases = [
            ("NVIDIA_VISIBLE_DEVICES=5", "asks for 5: there is no GPU 5, this host has GPUs 0 to 1"),
            ("NVIDIA_VISIBLE_DEVICES=0:7", "asks for 0:7: GPU 0 has MIG devices 0:0 to 0:1"),
            ("NVIDIA_VISIBLE_DEVICES=1:0", "GPU 1 is not in MIG mode"),
            ("NVIDIA_VISIBLE_DEVICES=MIG-99999999-9999-9999-9999-999999999999", "no MIG device has that UUID; it may have been destroyed or re-created (MIG devices now: MIG-11111111"),
            ("NVIDIA_VISIBLE_DEVICES=GPU-99999999-9999-9999-9999-999999999999", "no GPU has that UUID"),
            ("NVIDIA_VISIBLE_DEVICES=profile:1g.5gb", "this host has no MIG device of profile 1g.5gb (profiles here: 3g.20gb); ask for a profile listed"),
            ("NVIDIA_VISIBLE_DEVICES=profile:1/3g.20gb", "GPU 1 is not in MIG mode"),
            ("NVIDIA_VISIBLE_DEVICES=profile:4/3g.20gb", "there is no GPU 4, this host has GPUs 0 to 1"),
            ("NVIDIA_VISIBLE_DEVICES=profile:3g.20gb", "a request by profile is allocated when the container starts"),
        ];
        for (env, want) in cases {
            let e = plan(&[env]).unwrap_err().to_string();
            assert!(e.contains(want), "{env}: {e}");
            assert!(
                e.starts_with("NVIDIA_VISIBLE_DEVICES asks for"),
                "{env}: {e}"
            );
            assert!(!e.contains('\n'));
        }
    }

    #[test]
    fn mig_config_adds_the_config_cap_and_the_gpu() {
        let p = plan(&[
            "NVIDIA_VISIBLE_DEVICES=0:0",
            "NVIDIA_MIG_CONFIG_DEVICES=all",
        ])
        .unwrap();
        assert!(paths(&p).contains(&"/dev/nvidia-caps/nvidia-cap1"));
        assert!(p.proc_caps.contains(&"capabilities/mig/config".to_string()));
        let p = plan(&["NVIDIA_VISIBLE_DEVICES=0:0", "NVIDIA_MIG_MONITOR_DEVICES=0"]).unwrap();
        assert!(paths(&p).contains(&"/dev/nvidia-caps/nvidia-cap2"));
        let e = plan(&["NVIDIA_VISIBLE_DEVICES=0:0", "NVIDIA_MIG_CONFIG_DEVICES=1"]).unwrap_err();
        assert!(e.to_string().contains("GPU 1 is not in MIG mode"), "{e}");
    }

    #[test]
    fn missing_caps_driver_refuses_mig_devices() {
        let mut inv = inventory();
        inv.majors.caps = None;
        let e = resolve(
            &request(&["NVIDIA_VISIBLE_DEVICES=0:0"]),
            &inv,
            Path::new("/dev"),
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("nvidia-caps driver is not loaded"),
            "{e}"
        );
    }
}
