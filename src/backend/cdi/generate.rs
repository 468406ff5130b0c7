//! `cdi generate`: the spec of every device on the host, from the plan of a container asking
//! for exactly that device, and where it is written.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::spec::{
    minimum_version, valid_device_name, Device, Format, Kind, Spec, SpecEdits, SpecHook,
};
use super::{CdiError, DEFAULT_DIR, DEVICE_LIST_HOST_PATH, HOOK_STAGE, POSTSTOP_STAGE};
use crate::core::driver_files::DriverFiles;
use crate::core::edits::{ContainerEdits, Hook, Mount};
use crate::core::plan::{self, nodes::common_nodes, PlanError};
use crate::core::request::{
    DeviceSelector, Devices, DriverCapabilities, Request, DEVICE_LIST_DIR, VISIBLE_DEVICES,
};
use crate::host::inventory::Inventory;

/// What `cdi generate` is told.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    pub kind: Kind,
    /// The migcage binary the engine runs as the hook (absolute).
    pub hook_path: PathBuf,
    /// The configuration the hook must read (`MIGCAGE_CONFIG` in the hook's environment); `None`
    /// for the default file.
    pub config_path: Option<PathBuf>,
    /// Which driver files the devices come with.
    pub driver_capabilities: DriverCapabilities,
    /// The driver's files on this host: those `driver_capabilities` picks are the spec's mounts
    /// (empty: a spec without driver files).
    pub driver_files: DriverFiles,
}

/// A spec and what was left out of it, for the user.
#[derive(Debug, Clone)]
pub struct Generated {
    pub spec: Spec,
    /// One line each: names that CDI cannot express.
    pub notes: Vec<String>,
}

/// One device of the host as the spec names it.
struct Entry {
    /// `0`, `0:1`.
    index: String,
    /// `GPU-...`, `MIG-...`; `all` for all.
    id: String,
    selector: DeviceSelector,
}

fn entries(inv: &Inventory, kind: &Kind) -> Vec<Entry> {
    let mut out = Vec::new();
    for g in &inv.gpus {
        if kind.whole_gpus() {
            out.push(Entry {
                index: g.index.to_string(),
                id: g.uuid.clone(),
                selector: DeviceSelector::GpuIndex(g.index),
            });
        }
        for m in &g.mig_devices {
            out.push(Entry {
                index: format!("{}:{}", g.index, m.index),
                id: m.uuid.clone(),
                selector: DeviceSelector::MigIndex {
                    gpu: g.index,
                    mig: m.index,
                },
            });
        }
    }
    if kind.whole_gpus() && !inv.gpus.is_empty() {
        out.push(Entry {
            index: "all".into(),
            id: "all".into(),
            selector: DeviceSelector::All,
        });
    }
    out
}

/// The plan of a container that asks for exactly `selector`.
fn plan_one(
    selector: &DeviceSelector,
    inv: &Inventory,
    dev_root: &Path,
    caps: DriverCapabilities,
) -> Result<plan::Plan, PlanError> {
    let request = Request {
        devices: Devices::Selected(vec![selector.clone()]),
        sources: Vec::new(),
        driver_capabilities: caps,
        mig_config: None,
        mig_monitor: None,
        privileged: false,
        notes: Vec::new(),
        must_agree: Vec::new(),
    };
    plan::resolve(&request, inv, dev_root)
}

/// The mount that tells the hook which device a container was given.
pub fn device_list_mount(id: &str) -> Mount {
    Mount {
        host_path: DEVICE_LIST_HOST_PATH.into(),
        container_path: format!("{DEVICE_LIST_DIR}/{id}"),
        options: ["ro", "nosuid", "nodev", "bind"].map(String::from).to_vec(),
    }
}

/// Build the spec of every device on the host.
pub fn generate(
    inv: &Inventory,
    dev_root: &Path,
    opts: &GenerateOptions,
) -> Result<Generated, CdiError> {
    let entries = entries(inv, &opts.kind);
    if entries.is_empty() {
        return Err(CdiError::NoDevices {
            kind: opts.kind.to_string(),
            why: if inv.gpus.is_empty() {
                "this host has no GPU".into()
            } else {
                "the class mig offers MIG devices only, and this host has none".into()
            },
        });
    }
    let mut planned = Vec::with_capacity(entries.len());
    for e in &entries {
        let p =
            plan_one(&e.selector, inv, dev_root, opts.driver_capabilities).map_err(|source| {
                CdiError::Plan {
                    name: format!("{}={}", opts.kind, e.index),
                    source: Box::new(source),
                }
            })?;
        planned.push(p.edits);
    }
    let (mut top, own) = split_shared(inv, dev_root, &planned);
    // The driver's files are mounts every engine makes itself, with the hook's options; their
    // links and ld cache entries have no CDI field and stay the hook's work.
    let driver = plan::driver::driver_edits(
        plan::driver::caps_of(opts.driver_capabilities),
        &opts.driver_files,
    );
    top.mounts.extend(driver.mounts);

    let mut notes = Vec::new();
    let mut devices = Vec::new();
    for (e, mut edits) in entries.iter().zip(own) {
        // The request parser takes one path component per device: an R450-style MIG UUID
        // (`MIG-GPU-<uuid>/<gi>/<ci>`) has slashes, so such a device is named by its index.
        let id = if e.id.contains('/') { &e.index } else { &e.id };
        edits.mounts.push(device_list_mount(id));
        let container_edits = SpecEdits::from_plan(&edits, Vec::new());
        let mut names = vec![e.index.clone()];
        if e.id != e.index {
            names.push(e.id.clone());
        }
        for name in names {
            if !valid_device_name(&name) {
                notes.push(format!(
                    "{}: {name:?} is not a valid CDI device name; ask for it as {}={}",
                    opts.kind, opts.kind, e.index
                ));
                continue;
            }
            devices.push(Device {
                name,
                annotations: BTreeMap::new(),
                container_edits: container_edits.clone(),
            });
        }
    }

    let config = opts.config_path.as_deref();
    let hooks = vec![
        SpecHook::new(
            HOOK_STAGE,
            Hook::migcage(&opts.hook_path, HOOK_STAGE, config),
        ),
        // The container's leases go with it (`podman run --rm`), not when found stale.
        SpecHook::new(
            POSTSTOP_STAGE,
            Hook::migcage(&opts.hook_path, POSTSTOP_STAGE, config),
        ),
    ];
    let mut spec = Spec {
        cdi_version: String::new(),
        kind: opts.kind.to_string(),
        annotations: BTreeMap::new(),
        devices,
        container_edits: SpecEdits::from_plan(&top, hooks),
    };
    spec.cdi_version = minimum_version(&spec).to_string();
    Ok(Generated { spec, notes })
}

/// The edits of the spec's top level, and each device's own (in the order of `planned`, one per
/// device). Edits every device's plan has (mounts and environment) go to the top level once;
/// nodes by the plan's own rule for what every device needs. The device list variable is the
/// top level's alone: `NVIDIA_VISIBLE_DEVICES` names the directory of the devices' mounts.
fn split_shared(
    inv: &Inventory,
    dev_root: &Path,
    planned: &[ContainerEdits],
) -> (ContainerEdits, Vec<ContainerEdits>) {
    let common: BTreeSet<String> = common_nodes(inv, dev_root)
        .into_iter()
        .map(|n| n.path)
        .collect();
    let shared_mounts: Vec<Mount> = planned[0]
        .mounts
        .iter()
        .filter(|m| planned.iter().all(|p| p.mounts.contains(m)))
        .cloned()
        .collect();
    let visible = format!("{VISIBLE_DEVICES}=");
    let shared_env: Vec<String> = planned[0]
        .env
        .iter()
        .filter(|v| !v.starts_with(&visible) && planned.iter().all(|p| p.env.contains(v)))
        .cloned()
        .collect();
    let mut top = ContainerEdits {
        env: vec![format!("{VISIBLE_DEVICES}={DEVICE_LIST_DIR}")],
        mounts: shared_mounts.clone(),
        ..ContainerEdits::default()
    };
    top.env.extend(shared_env.iter().cloned());
    for n in planned
        .iter()
        .flat_map(|p| &p.device_nodes)
        .filter(|n| common.contains(&n.path))
    {
        if !top.device_nodes.iter().any(|t| t.path == n.path) {
            top.device_nodes.push(n.clone());
        }
    }
    let own = planned
        .iter()
        .map(|p| ContainerEdits {
            env: p
                .env
                .iter()
                .filter(|v| !v.starts_with(&visible) && !shared_env.contains(v))
                .cloned()
                .collect(),
            device_nodes: p
                .device_nodes
                .iter()
                .filter(|n| !common.contains(&n.path))
                .cloned()
                .collect(),
            mounts: p
                .mounts
                .iter()
                .filter(|m| !shared_mounts.contains(m))
                .cloned()
                .collect(),
            ..ContainerEdits::default()
        })
        .collect();
    (top, own)
}

/// Where `cdi generate` writes: `None` is standard output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub path: Option<PathBuf>,
    pub format: Format,
}

/// Resolve `--output` and `--format`: a directory (existing, or written with a trailing `/`)
/// gets `<vendor>-<class>.<ext>`; a file's extension gives the format; `-` is standard output.
pub fn destination(
    output: Option<&Path>,
    format: Option<Format>,
    kind: &Kind,
) -> Result<Destination, CdiError> {
    let (output, default) = match output {
        Some(o) => (o, false),
        None => (Path::new(DEFAULT_DIR), true),
    };
    if output == Path::new("-") {
        return Ok(Destination {
            path: None,
            format: format.unwrap_or(Format::Yaml),
        });
    }
    let is_dir = default || output.is_dir() || output.as_os_str().to_string_lossy().ends_with('/');
    if is_dir {
        let format = format.unwrap_or(Format::Yaml);
        return Ok(Destination {
            path: Some(output.join(format!("{}.{}", kind.file_stem(), format.extension()))),
            format,
        });
    }
    let by_name = Format::of_path(output);
    match (by_name, format) {
        (None, _) => Err(CdiError::Output {
            path: output.to_path_buf(),
            why: "CDI engines read only .json, .yaml and .yml files; name the file so, or give a directory".into(),
        }),
        (Some(n), Some(f)) if n != f => Err(CdiError::Output {
            path: output.to_path_buf(),
            why: format!(
                "--format {} disagrees with the file's extension; drop --format or rename the file",
                f.extension()
            ),
        }),
        (Some(n), _) => Ok(Destination {
            path: Some(output.to_path_buf()),
            format: n,
        }),
    }
}

/// Write `text` to `path` atomically (a temporary file in the same directory, then rename), mode
/// 0644, making the directory when missing: an engine watching the directory never reads half a
/// spec.
pub fn write_atomic(path: &Path, text: &str) -> Result<(), CdiError> {
    crate::host::files::AtomicWrite {
        mode: 0o644,
        create_dir: true,
        durable: true,
    }
    .write(path, text.as_bytes())
    .map_err(|source| CdiError::Write {
        path: path.to_path_buf(),
        source,
    })
}
