//! `migcage cdi`: the CDI back end. A Container Device Interface spec describes every device of
//! the host so that a CDI-aware engine (Podman, CRI-O, containerd 1.7+) injects it with
//! `--device nvidia.com/gpu=0:1`; and `cdi list` tells whether the spec on disk still matches the
//! hardware.
//!
//! # What the spec holds
//!
//! Each device's edits come from the plan ([`plan::resolve`] of a request for exactly that
//! device), the same plan the hook and the runtime wrapper apply, so no back end can differ in
//! what a device is:
//!
//! * one device per GPU, named by index (`0`) and by UUID (`GPU-...`), one per MIG device, named
//!   by index (`0:1`) and by UUID (`MIG-...`), and `all` (with the class `mig`: MIG devices only);
//! * in each device's `containerEdits`: its own device nodes (path, hostPath, type, major, minor,
//!   fileMode, cgroup permissions `rw`), and one bind mount of `/dev/null` on
//!   `/var/run/nvidia-container-devices/<UUID>` (`.../all` for `all`);
//! * in the spec's top-level `containerEdits`, once: the nodes every device needs (nvidiactl,
//!   nvidia-uvm, nvidia-uvm-tools), the plan's mounts and environment common to every device (the
//!   driver files, once the plan produces them), `NVIDIA_VISIBLE_DEVICES=/var/run/nvidia-container-devices`,
//!   and a `createContainer` hook running `migcage hook createContainer` for what only the hook
//!   can do inside the container: the isolated `/proc/driver/nvidia` view. The hook is idempotent:
//!   the engine has already made the nodes and their cgroup rules, which it leaves as they are.
//!
//! The plan's symbolic links and ld cache entries have no CDI field: they are the hook's work
//! inside the container, which plans the container again from its spec.
//!
//! The hook learns which devices it serves from the mounts, the Kubernetes device plugin's
//! volume-mounts convention that the request parser already reads. Not from an environment
//! variable per device: CDI engines merge `env` edits by name, so with two devices only the last
//! `NVIDIA_VISIBLE_DEVICES` would survive, while every device's mount does. Mounts are honoured
//! also under `requests.env_privileged_only`, and each names its device by UUID, so a device named
//! by index in the spec stays pinned to the instance it was generated for: if the instance was
//! re-created since, the hook stops the container ("no MIG device has that UUID") instead of
//! handing out whatever holds that index now.
//!
//! # Version
//!
//! `cdiVersion` is the lowest version that expresses the spec ([`minimum_version`], the rules of
//! the CDI Go library's `MinimumRequiredVersion`): device names starting with a digit and
//! `hostPath` on device nodes need 0.5.0, which is what migcage writes. Podman 4.3 (Debian 12)
//! reads specs up to 0.5.0 and drops a 0.6.0 spec as invalid ("unresolvable CDI devices").
//!
//! # Files
//!
//! `migcage cdi generate` writes `/etc/cdi/<vendor>-<class>.yaml` (`/etc/cdi/nvidia.com-gpu.yaml`),
//! the CDI Go library's naming for a vendor's spec, and does not collide with the NVIDIA toolkit's
//! `/etc/cdi/nvidia.yaml`. Both declare `nvidia.com/gpu`: keep one of them on a host, or engines
//! refuse the device names both declare.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::core::edits;
use crate::core::plan::{self, nodes::common_nodes, PlanError};
use crate::core::request::{
    DeviceSelector, Devices, DriverCapabilities, Request, DEVICE_LIST_DIR, VISIBLE_DEVICES,
};
use crate::host::inventory::Inventory;

/// The directory CDI engines read first; `cdi generate` writes there by default.
pub const DEFAULT_DIR: &str = "/etc/cdi";
/// The directories CDI engines read (in rising priority); `cdi list` looks in both.
pub const SPEC_DIRS: [&str; 2] = ["/etc/cdi", "/var/run/cdi"];
/// The kind `cdi generate` writes unless told otherwise.
pub const DEFAULT_KIND: &str = "nvidia.com/gpu";
/// What each device's mount binds on `/var/run/nvidia-container-devices/<UUID>`.
pub const DEVICE_LIST_HOST_PATH: &str = "/dev/null";
/// The stage of the hook in the spec.
pub const HOOK_STAGE: &str = "createContainer";

/// Why a CDI spec cannot be generated, written, read or trusted. One line each.
#[derive(Debug, thiserror::Error)]
pub enum CdiError {
    #[error("CDI kind {kind:?}: {why}; write VENDOR/CLASS with the class gpu or mig, such as nvidia.com/gpu")]
    Kind { kind: String, why: String },
    #[error("cannot plan CDI device {name}: {source}")]
    Plan {
        name: String,
        source: Box<PlanError>,
    },
    #[error("kind {kind}: {why}, so the spec would have no device; check 'migcage list'")]
    NoDevices { kind: String, why: String },
    #[error("{}: {why}", path.display())]
    Output { path: PathBuf, why: String },
    #[error("cannot write CDI spec {}: {source}; run as root, or choose another --output", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read CDI spec {}: {source}; check the path, or write the spec with 'migcage cdi generate'", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("CDI spec {} does not parse: {message}; regenerate it with 'migcage cdi generate'", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("cannot serialize the CDI spec: {0}")]
    Serialize(String),
    #[error("no CDI spec made by migcage in {dirs}; write one with 'migcage cdi generate'")]
    NoSpec { dirs: String },
}

/// A CDI spec (`cdiVersion` 0.3.0 to 0.8.0 fields that migcage writes or reads).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spec {
    #[serde(rename = "cdiVersion")]
    pub cdi_version: String,
    pub kind: String,
    /// Needs 0.6.0; migcage writes none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    pub devices: Vec<Device>,
    #[serde(
        rename = "containerEdits",
        default,
        skip_serializing_if = "ContainerEdits::is_empty"
    )]
    pub container_edits: ContainerEdits,
}

/// One device a container may ask for as `kind=name`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    pub name: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(rename = "containerEdits", default)]
    pub container_edits: ContainerEdits,
}

/// CDI's `containerEdits`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ContainerEdits {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    #[serde(rename = "deviceNodes", default, skip_serializing_if = "Vec::is_empty")]
    pub device_nodes: Vec<DeviceNode>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<Mount>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<Hook>,
}

impl ContainerEdits {
    pub fn is_empty(&self) -> bool {
        self.env.is_empty()
            && self.device_nodes.is_empty()
            && self.mounts.is_empty()
            && self.hooks.is_empty()
    }
}

/// CDI's `deviceNodes[]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceNode {
    pub path: String,
    #[serde(rename = "hostPath", default, skip_serializing_if = "Option::is_none")]
    pub host_path: Option<String>,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub major: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minor: Option<i64>,
    #[serde(rename = "fileMode", default, skip_serializing_if = "Option::is_none")]
    pub file_mode: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
}

impl DeviceNode {
    /// The node as the plan made it, with the cgroup permissions a container gets (`rw`: it may
    /// use the node, never make new ones).
    pub fn from_plan(n: &edits::DeviceNode) -> DeviceNode {
        DeviceNode {
            path: n.path.clone(),
            host_path: Some(n.host_path.clone()),
            kind: Some(n.kind.to_string()),
            major: Some(i64::from(n.major)),
            minor: Some(i64::from(n.minor)),
            file_mode: Some(n.file_mode),
            permissions: Some(edits::Access::RW.to_string()),
            uid: (n.uid != 0).then_some(n.uid),
            gid: (n.gid != 0).then_some(n.gid),
        }
    }

    /// `path (major:minor)`, for messages.
    pub fn describe(&self) -> String {
        match (self.major, self.minor) {
            (Some(a), Some(b)) => format!("{} ({a}:{b})", self.path),
            _ => self.path.clone(),
        }
    }

    fn key(&self) -> (String, Option<i64>, Option<i64>) {
        (self.path.clone(), self.major, self.minor)
    }
}

/// CDI's `mounts[]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    #[serde(rename = "hostPath")]
    pub host_path: String,
    #[serde(rename = "containerPath")]
    pub container_path: String,
    /// Needs 0.4.0; migcage leaves it out (bind mounts are told by their options).
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

impl From<&edits::Mount> for Mount {
    fn from(m: &edits::Mount) -> Mount {
        Mount {
            host_path: m.host_path.clone(),
            container_path: m.container_path.clone(),
            kind: None,
            options: m.options.clone(),
        }
    }
}

/// CDI's `hooks[]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hook {
    #[serde(rename = "hookName")]
    pub hook_name: String,
    pub path: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u32>,
}

/// A CDI kind: `vendor/class`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kind {
    pub vendor: String,
    /// `gpu` (every GPU, MIG device and `all`) or `mig` (MIG devices only).
    pub class: String,
}

impl Kind {
    /// Whether the spec offers whole GPUs and `all` (class `gpu`) or MIG devices only (`mig`).
    pub fn whole_gpus(&self) -> bool {
        self.class == "gpu"
    }

    /// `<vendor>-<class>`: the file name (without extension) `cdi generate` writes.
    pub fn file_stem(&self) -> String {
        format!("{}-{}", self.vendor, self.class)
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.vendor, self.class)
    }
}

impl std::str::FromStr for Kind {
    type Err = CdiError;

    fn from_str(s: &str) -> Result<Kind, CdiError> {
        let bad = |why: &str| CdiError::Kind {
            kind: s.to_string(),
            why: why.to_string(),
        };
        let (vendor, class) = s.split_once('/').ok_or_else(|| bad("it has no \"/\""))?;
        if !valid_vendor(vendor) {
            return Err(bad("the vendor must start with a letter, end with a letter or digit, and hold only letters, digits, '.', '-' and '_'"));
        }
        if class != "gpu" && class != "mig" {
            return Err(bad("migcage serves the classes gpu and mig only"));
        }
        Ok(Kind {
            vendor: vendor.to_string(),
            class: class.to_string(),
        })
    }
}

fn valid_vendor(v: &str) -> bool {
    let b = v.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphabetic()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'_'))
}

/// Whether `name` is a valid CDI device name: letters, digits, `_ - . :`, starting and ending
/// with a letter or digit. (The R450 MIG UUID form `MIG-GPU-<uuid>/<gi>/<ci>` is not.)
pub fn valid_device_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.' | b':'))
}

/// The lowest `cdiVersion` whose schema has every field `spec` uses (the rules of the CDI Go
/// library's `MinimumRequiredVersion`, for the fields migcage models).
pub fn minimum_version(spec: &Spec) -> &'static str {
    let edits = || {
        std::iter::once(&spec.container_edits)
            .chain(spec.devices.iter().map(|d| &d.container_edits))
    };
    let class_has_dot = spec
        .kind
        .split_once('/')
        .is_some_and(|(_, class)| class.contains('.'));
    if !spec.annotations.is_empty()
        || spec.devices.iter().any(|d| !d.annotations.is_empty())
        || class_has_dot
    {
        return "0.6.0";
    }
    let digit_name = spec.devices.iter().any(|d| {
        d.name
            .chars()
            .next()
            .is_some_and(|c| !c.is_ascii_alphabetic())
    });
    if digit_name || edits().any(|e| e.device_nodes.iter().any(|n| n.host_path.is_some())) {
        return "0.5.0";
    }
    if edits().any(|e| e.mounts.iter().any(|m| m.kind.is_some())) {
        return "0.4.0";
    }
    "0.3.0"
}

/// What `cdi generate` is told.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    pub kind: Kind,
    /// The migcage binary the engine runs as the hook (absolute).
    pub hook_path: PathBuf,
    /// The configuration the hook must read (`MIGCAGE_CONFIG` in the hook's environment); `None`
    /// for the default file.
    pub config_path: Option<PathBuf>,
    /// Which driver files the devices come with (once the plan mounts driver files).
    pub driver_capabilities: DriverCapabilities,
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
        kind: None,
        options: ["ro", "nosuid", "nodev", "bind"].map(String::from).to_vec(),
    }
}

/// The device a CDI device's edits give, as its mount under `/var/run/nvidia-container-devices`
/// names it (`MIG-...`, `GPU-...`, `all`).
pub fn device_id(edits: &ContainerEdits) -> Option<&str> {
    edits.mounts.iter().find_map(|m| {
        m.container_path
            .strip_prefix(DEVICE_LIST_DIR)
            .and_then(|rest| rest.strip_prefix('/'))
            .filter(|id| !id.is_empty() && !id.contains('/'))
    })
}

/// Whether a spec was made by migcage: its top-level hook runs `migcage hook`.
pub fn is_migcage_spec(spec: &Spec) -> bool {
    spec.container_edits
        .hooks
        .iter()
        .any(|h| h.args.len() >= 2 && h.args[0] == "migcage" && h.args[1] == "hook")
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
    let common: BTreeSet<String> = common_nodes(inv, dev_root)
        .into_iter()
        .map(|n| n.path)
        .collect();
    let mut notes = Vec::new();
    let mut planned = Vec::with_capacity(entries.len());
    for e in &entries {
        let p =
            plan_one(&e.selector, inv, dev_root, opts.driver_capabilities).map_err(|source| {
                CdiError::Plan {
                    name: format!("{}={}", opts.kind, e.index),
                    source: Box::new(source),
                }
            })?;
        planned.push(p);
    }

    // Edits every device's plan has (mounts and environment) go to the top level once; nodes
    // by the plan's own rule for what every device needs.
    let shared_mounts: Vec<edits::Mount> = planned[0]
        .edits
        .mounts
        .iter()
        .filter(|m| planned.iter().all(|p| p.edits.mounts.contains(m)))
        .cloned()
        .collect();
    let visible = format!("{VISIBLE_DEVICES}=");
    let shared_env: Vec<String> = planned[0]
        .edits
        .env
        .iter()
        .filter(|v| !v.starts_with(&visible) && planned.iter().all(|p| p.edits.env.contains(v)))
        .cloned()
        .collect();
    let mut top_nodes: Vec<DeviceNode> = Vec::new();
    for p in &planned {
        for n in p
            .edits
            .device_nodes
            .iter()
            .filter(|n| common.contains(&n.path))
        {
            if !top_nodes.iter().any(|t| t.path == n.path) {
                top_nodes.push(DeviceNode::from_plan(n));
            }
        }
    }

    let mut devices = Vec::new();
    for (e, p) in entries.iter().zip(&planned) {
        let mut edits = ContainerEdits {
            env: p
                .edits
                .env
                .iter()
                .filter(|v| !v.starts_with(&visible) && !shared_env.contains(v))
                .cloned()
                .collect(),
            device_nodes: p
                .edits
                .device_nodes
                .iter()
                .filter(|n| !common.contains(&n.path))
                .map(DeviceNode::from_plan)
                .collect(),
            mounts: p
                .edits
                .mounts
                .iter()
                .filter(|m| !shared_mounts.contains(m))
                .map(Mount::from)
                .collect(),
            hooks: Vec::new(),
        };
        // The request parser takes one path component per device: an R450-style MIG UUID
        // (`MIG-GPU-<uuid>/<gi>/<ci>`) has slashes, so such a device is named by its index.
        let id = if e.id.contains('/') { &e.index } else { &e.id };
        edits.mounts.push(device_list_mount(id));
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
                container_edits: edits.clone(),
            });
        }
    }

    let mut env = vec![format!("{VISIBLE_DEVICES}={DEVICE_LIST_DIR}")];
    env.extend(shared_env);
    let hook = Hook {
        hook_name: HOOK_STAGE.into(),
        path: opts.hook_path.display().to_string(),
        args: vec!["migcage".into(), "hook".into(), HOOK_STAGE.into()],
        env: opts
            .config_path
            .iter()
            .map(|p| format!("{}={}", crate::config::CONFIG_ENV, p.display()))
            .collect(),
        timeout: None,
    };
    let mut spec = Spec {
        cdi_version: String::new(),
        kind: opts.kind.to_string(),
        annotations: BTreeMap::new(),
        devices,
        container_edits: ContainerEdits {
            env,
            device_nodes: top_nodes,
            mounts: shared_mounts.iter().map(Mount::from).collect(),
            hooks: vec![hook],
        },
    };
    spec.cdi_version = minimum_version(&spec).to_string();
    Ok(Generated { spec, notes })
}

/// JSON or YAML.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Json,
    Yaml,
}

impl Format {
    pub fn extension(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Yaml => "yaml",
        }
    }

    /// The format CDI engines read a file of this name in (they read `.json`, `.yaml`, `.yml`).
    pub fn of_path(path: &Path) -> Option<Format> {
        match path.extension().and_then(|e| e.to_str()) {
            Some("json") => Some(Format::Json),
            Some("yaml" | "yml") => Some(Format::Yaml),
            _ => None,
        }
    }
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

/// The spec as text.
pub fn to_text(spec: &Spec, format: Format) -> Result<String, CdiError> {
    match format {
        Format::Json => serde_json::to_string_pretty(spec)
            .map(|s| s + "\n")
            .map_err(|e| CdiError::Serialize(e.to_string())),
        Format::Yaml => serde_yaml::to_string(spec)
            .map(|y| quote_index_names(&y))
            .map_err(|e| CdiError::Serialize(e.to_string())),
    }
}

/// Quote device names like `1:5`. serde_yaml writes them plain, as YAML 1.2 allows, but YAML 1.1
/// parsers (PyYAML, and tools built on it) read a plain `1:5` as the base-60 integer 65. Device
/// names are the only values at the start of a line (`- name: ...` items of the top-level
/// `devices` sequence): block scalars' lines are indented, so nothing else is touched.
fn quote_index_names(yaml: &str) -> String {
    let mut out = String::with_capacity(yaml.len() + 64);
    for line in yaml.lines() {
        match line.strip_prefix("- name: ") {
            Some(v) if v.contains(':') && v.chars().all(|c| c.is_ascii_digit() || c == ':') => {
                out.push_str("- name: '");
                out.push_str(v);
                out.push('\'');
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// Parse a spec; `.json` files as JSON, everything else as YAML (of which JSON is a subset).
pub fn parse(text: &str, path: &Path) -> Result<Spec, CdiError> {
    let err = |message: String| CdiError::Parse {
        path: path.to_path_buf(),
        message: message.lines().next().unwrap_or_default().to_string(),
    };
    match Format::of_path(path) {
        Some(Format::Json) => serde_json::from_str(text).map_err(|e| err(e.to_string())),
        _ => serde_yaml::from_str(text).map_err(|e| err(e.to_string())),
    }
}

/// Read and parse a spec file.
pub fn read(path: &Path) -> Result<Spec, CdiError> {
    let text = std::fs::read_to_string(path).map_err(|source| CdiError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, path)
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

/// migcage's specs among the `.json` / `.yaml` / `.yml` files of `dirs` (files that are not
/// CDI specs, or are other vendors', are skipped), sorted by path.
pub fn find_specs(dirs: &[PathBuf]) -> Vec<(PathBuf, Spec)> {
    let mut out = Vec::new();
    for dir in dirs {
        let Ok(rd) = std::fs::read_dir(dir) else {
            continue;
        };
        let mut paths: Vec<PathBuf> = rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_file() && Format::of_path(p).is_some())
            .collect();
        paths.sort();
        for p in paths {
            if let Ok(spec) = read(&p) {
                if is_migcage_spec(&spec) {
                    out.push((p, spec));
                }
            }
        }
    }
    out
}

/// One device of a spec, grouped by what it gives: all its names, the device it is, its nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Offer {
    /// Fully qualified: `nvidia.com/gpu=0:1`, `nvidia.com/gpu=MIG-...`.
    pub names: Vec<String>,
    /// `MIG-...`, `GPU-...`, `all`; `None` when the edits do not say.
    pub device: Option<String>,
    /// `path (major:minor)` of the device's own nodes.
    pub nodes: Vec<String>,
}

/// What a spec on disk offers, and where it no longer matches the host.
#[derive(Debug, Clone, Serialize)]
pub struct SpecReport {
    pub path: PathBuf,
    pub kind: String,
    pub cdi_version: String,
    pub offers: Vec<Offer>,
    /// Nodes every device comes with.
    pub common_nodes: Vec<String>,
    /// `path args...` of the hooks.
    pub hooks: Vec<String>,
    /// One line each.
    pub warnings: Vec<String>,
}

fn node_set(e: &ContainerEdits) -> BTreeSet<(String, Option<i64>, Option<i64>)> {
    e.device_nodes.iter().map(DeviceNode::key).collect()
}

fn node_list(e: &ContainerEdits) -> String {
    if e.device_nodes.is_empty() {
        return "no nodes".into();
    }
    e.device_nodes
        .iter()
        .map(DeviceNode::describe)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The devices of `spec` grouped by the device they give (their `/var/run/nvidia-container-devices`
/// mount); devices without one stand alone under their name.
fn offers(spec: &Spec) -> Vec<(Option<String>, Vec<&Device>)> {
    let mut out: Vec<(Option<String>, Vec<&Device>)> = Vec::new();
    for d in &spec.devices {
        let id = device_id(&d.container_edits).map(str::to_string);
        match out.iter_mut().find(|(i, _)| i.is_some() && *i == id) {
            Some((_, v)) => v.push(d),
            None => out.push((id, vec![d])),
        }
    }
    out
}

fn is_index_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_digit() || c == ':')
}

/// Where `disk` (a spec read from a file) no longer matches `now` (the spec of the host as it is
/// now, generated with the same kind). One line each, naming the device, what the spec says, what
/// the host has, and what to do.
pub fn staleness(disk: &Spec, now: &Spec) -> Vec<String> {
    const FIX: &str = "regenerate the spec with 'migcage cdi generate'";
    let mut out = Vec::new();
    let disk_offers = offers(disk);
    let now_offers = offers(now);
    let now_by_id: BTreeMap<&str, &Vec<&Device>> = now_offers
        .iter()
        .filter_map(|(id, v)| id.as_deref().map(|i| (i, v)))
        .collect();
    // Index name -> the device that holds it now.
    let now_index: BTreeMap<&str, &str> = now_offers
        .iter()
        .filter_map(|(id, v)| id.as_deref().map(|i| (i, v)))
        .flat_map(|(id, v)| {
            v.iter()
                .filter(|d| is_index_name(&d.name))
                .map(move |d| (d.name.as_str(), id))
        })
        .collect();
    let mut accounted: BTreeSet<&str> = BTreeSet::new();
    let kind = &disk.kind;
    for (id, devs) in &disk_offers {
        let names: Vec<&str> = devs.iter().map(|d| d.name.as_str()).collect();
        let shown = names.join(", ");
        let Some(id) = id.as_deref() else {
            out.push(format!(
                "{kind}={shown}: has no {DEVICE_LIST_DIR} mount, so migcage cannot tell which device it gives; {FIX}"
            ));
            continue;
        };
        accounted.insert(id);
        match now_by_id.get(id) {
            Some(now_devs) => {
                let (d, n) = (&devs[0].container_edits, &now_devs[0].container_edits);
                if node_set(d) != node_set(n) {
                    out.push(format!(
                        "{kind}={shown} ({id}): the spec gives {}, the host now has {}; {FIX}",
                        node_list(d),
                        node_list(n)
                    ));
                }
                let now_names: BTreeSet<&str> = now_devs.iter().map(|d| d.name.as_str()).collect();
                for name in names.iter().filter(|n| is_index_name(n)) {
                    if !now_names.contains(name) {
                        let holder = match now_index.get(name) {
                            Some(other) => format!("{name} is now {other}"),
                            None => format!("there is no {name} now"),
                        };
                        out.push(format!(
                            "{kind}={name}: the spec names {id} {name}, but the host now calls it {}; {holder}; {FIX}",
                            now_devs
                                .iter()
                                .find(|d| is_index_name(&d.name))
                                .map(|d| d.name.as_str())
                                .unwrap_or("by UUID only")
                        ));
                    }
                }
            }
            None => {
                let mut line = format!(
                    "{kind}={shown}: {id} is gone from this host (destroyed, or destroyed and re-created with a new UUID, since the spec was generated)"
                );
                for name in names.iter().filter(|n| is_index_name(n)) {
                    match now_index.get(name) {
                        Some(other) => {
                            let _ = write!(line, "; {name} is now {other}");
                            accounted.insert(other);
                        }
                        None => {
                            let _ = write!(line, "; there is no {name} now");
                        }
                    }
                }
                let _ = write!(line, "; {FIX}");
                out.push(line);
            }
        }
    }
    for (id, devs) in &now_offers {
        let Some(id) = id.as_deref() else { continue };
        if accounted.contains(id) {
            continue;
        }
        let names: Vec<&str> = devs.iter().map(|d| d.name.as_str()).collect();
        out.push(format!(
            "{kind}={}: {id} is on this host but not in the spec; {FIX}",
            names.join(", ")
        ));
    }
    if node_set(&disk.container_edits) != node_set(&now.container_edits) {
        out.push(format!(
            "{kind}: every device comes with {}, but the host now has {}; {FIX}",
            node_list(&disk.container_edits),
            node_list(&now.container_edits)
        ));
    }
    let migcage_hooks = disk
        .container_edits
        .hooks
        .iter()
        .filter(|h| h.args.len() >= 2 && h.args[0] == "migcage" && h.args[1] == "hook");
    for h in migcage_hooks {
        if !Path::new(&h.path).is_file() {
            out.push(format!(
                "{kind}: the hook {} does not exist, so every container asking for a device fails to start; reinstall migcage, or {FIX} --hook-path",
                h.path
            ));
        }
    }
    out
}

/// What a spec offers, with its staleness against `now`.
pub fn report(path: &Path, disk: &Spec, now: Option<&Spec>) -> SpecReport {
    SpecReport {
        path: path.to_path_buf(),
        kind: disk.kind.clone(),
        cdi_version: disk.cdi_version.clone(),
        offers: offers(disk)
            .into_iter()
            .map(|(id, devs)| Offer {
                names: devs
                    .iter()
                    .map(|d| format!("{}={}", disk.kind, d.name))
                    .collect(),
                device: id,
                nodes: devs[0]
                    .container_edits
                    .device_nodes
                    .iter()
                    .map(DeviceNode::describe)
                    .collect(),
            })
            .collect(),
        common_nodes: disk
            .container_edits
            .device_nodes
            .iter()
            .map(DeviceNode::describe)
            .collect(),
        hooks: disk
            .container_edits
            .hooks
            .iter()
            .map(|h| {
                let mut s = format!("{} ({})", h.path, h.hook_name);
                if h.args.len() > 1 {
                    let _ = write!(s, ": {}", h.args[1..].join(" "));
                }
                s
            })
            .collect(),
        warnings: now.map(|n| staleness(disk, n)).unwrap_or_default(),
    }
}

/// The report for people (the warnings are printed separately, on standard error).
pub fn render(r: &SpecReport) -> String {
    let mut s = String::new();
    let count: usize = r.offers.iter().map(|o| o.names.len()).sum();
    let _ = writeln!(
        s,
        "{}: kind {}, cdiVersion {}, {count} device names",
        r.path.display(),
        r.kind,
        r.cdi_version
    );
    if !r.common_nodes.is_empty() {
        let _ = writeln!(s, "  every device also gets: {}", r.common_nodes.join(", "));
    }
    for h in &r.hooks {
        let _ = writeln!(s, "  hook: {h}");
    }
    for o in &r.offers {
        let nodes = if o.nodes.is_empty() {
            String::new()
        } else {
            format!(" -> {}", o.nodes.join(", "))
        };
        let _ = writeln!(
            s,
            "  {}  [{}]{nodes}",
            o.names.join(" | "),
            o.device.as_deref().unwrap_or("unknown device")
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::plan::nodes::tests::inventory;

    fn opts(kind: &str) -> GenerateOptions {
        GenerateOptions {
            kind: kind.parse().unwrap(),
            hook_path: "/usr/bin/migcage".into(),
            config_path: None,
            driver_capabilities: DriverCapabilities::DEFAULT,
        }
    }

    fn gen(inv: &Inventory, kind: &str) -> Spec {
        generate(inv, Path::new("/dev"), &opts(kind)).unwrap().spec
    }

    fn names(spec: &Spec) -> Vec<&str> {
        spec.devices.iter().map(|d| d.name.as_str()).collect()
    }

    fn device<'a>(spec: &'a Spec, name: &str) -> &'a Device {
        spec.devices.iter().find(|d| d.name == name).unwrap()
    }

    fn paths(e: &ContainerEdits) -> Vec<&str> {
        e.device_nodes.iter().map(|n| n.path.as_str()).collect()
    }

    const MIG0: &str = "MIG-11111111-1111-1111-1111-111111111111";
    const MIG1: &str = "MIG-22222222-2222-2222-2222-222222222222";
    const GPU0: &str = "GPU-00000000-0000-0000-0000-000000000000";
    const GPU1: &str = "GPU-11111111-0000-0000-0000-000000000000";

    #[test]
    fn every_device_by_index_and_uuid_plus_all() {
        let spec = gen(&inventory(), "nvidia.com/gpu");
        assert_eq!(spec.kind, "nvidia.com/gpu");
        assert_eq!(spec.cdi_version, "0.5.0");
        assert_eq!(
            names(&spec),
            ["0", GPU0, "0:0", MIG0, "0:1", MIG1, "1", GPU1, "all"]
        );
        let m = &device(&spec, "0:1").container_edits;
        assert_eq!(
            paths(m),
            [
                "/dev/nvidia0",
                "/dev/nvidia-caps/nvidia-cap21",
                "/dev/nvidia-caps/nvidia-cap22"
            ]
        );
        assert_eq!(device(&spec, MIG1).container_edits, *m);
        assert_eq!(device_id(m), Some(MIG1));
        assert!(m.env.is_empty() && m.hooks.is_empty());
        let n = &m.device_nodes[1];
        assert_eq!(
            (
                n.kind.as_deref(),
                n.major,
                n.minor,
                n.file_mode,
                n.permissions.as_deref()
            ),
            (Some("c"), Some(509), Some(21), Some(0o444), Some("rw"))
        );
        assert_eq!(
            n.host_path.as_deref(),
            Some("/dev/nvidia-caps/nvidia-cap21")
        );
        assert_eq!((n.uid, n.gid), (None, None));
        assert_eq!(paths(&device(&spec, "1").container_edits), ["/dev/nvidia1"]);
        assert_eq!(device_id(&device(&spec, "1").container_edits), Some(GPU1));
        let all = &device(&spec, "all").container_edits;
        assert_eq!(device_id(all), Some("all"));
        assert_eq!(all.device_nodes.len(), 2 + 4);
    }

    #[test]
    fn common_edits_are_written_once() {
        let spec = gen(&inventory(), "nvidia.com/gpu");
        let top = &spec.container_edits;
        assert_eq!(
            paths(top),
            ["/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools"]
        );
        for d in &spec.devices {
            for p in paths(top) {
                assert!(!paths(&d.container_edits).contains(&p), "{} {p}", d.name);
            }
        }
        assert_eq!(
            top.env,
            [
                "NVIDIA_VISIBLE_DEVICES=/var/run/nvidia-container-devices",
                "NVIDIA_DRIVER_CAPABILITIES=compute,utility"
            ]
        );
        assert_eq!(top.hooks.len(), 1);
        let h = &top.hooks[0];
        assert_eq!(
            (h.hook_name.as_str(), h.path.as_str(), h.args.join(" ")),
            (
                "createContainer",
                "/usr/bin/migcage",
                "migcage hook createContainer".into()
            )
        );
        assert!(h.env.is_empty());
        assert!(is_migcage_spec(&spec));
    }

    #[test]
    fn hook_is_told_a_non_default_config() {
        let mut o = opts("nvidia.com/gpu");
        o.config_path = Some("/sim/config.toml".into());
        let spec = generate(&inventory(), Path::new("/dev"), &o).unwrap().spec;
        assert_eq!(
            spec.container_edits.hooks[0].env,
            ["MIGCAGE_CONFIG=/sim/config.toml"]
        );
    }

    #[test]
    fn class_mig_offers_mig_devices_only() {
        let spec = gen(&inventory(), "nvidia.com/mig");
        assert_eq!(spec.kind, "nvidia.com/mig");
        assert_eq!(names(&spec), ["0:0", MIG0, "0:1", MIG1]);
    }

    #[test]
    fn kinds_are_checked() {
        for bad in [
            "nvidia.com",
            "nvidia.com/gds",
            "/gpu",
            "-x.com/gpu",
            "a b/gpu",
        ] {
            let e = bad.parse::<Kind>().unwrap_err().to_string();
            assert!(e.starts_with(&format!("CDI kind {bad:?}")), "{e}");
            assert!(!e.contains('\n'));
        }
        let k: Kind = "k8s.device-plugin.nvidia.com/gpu".parse().unwrap();
        assert_eq!(k.file_stem(), "k8s.device-plugin.nvidia.com-gpu");
    }

    #[test]
    fn device_names_follow_cdi_rules() {
        for ok in ["0", "0:1", "all", MIG0, "GPU-abc_d.e"] {
            assert!(valid_device_name(ok), "{ok}");
        }
        for bad in ["", ":0", "0:", "MIG-GPU-1234/1/0", "a b", "-a"] {
            assert!(!valid_device_name(bad), "{bad}");
        }
        // An R450-style MIG UUID cannot be a name: the device stays reachable by index.
        let mut inv = inventory();
        inv.gpus[0].mig_devices[0].uuid = "MIG-GPU-00000000-0000-0000-0000-000000000000/1/0".into();
        let g = generate(&inv, Path::new("/dev"), &opts("nvidia.com/gpu")).unwrap();
        assert!(names(&g.spec).contains(&"0:0"));
        assert!(!names(&g.spec).iter().any(|n| n.contains('/')));
        assert_eq!(g.notes.len(), 1);
        assert_eq!(
            device_id(&device(&g.spec, "0:0").container_edits),
            Some("0:0")
        );
        assert!(
            g.notes[0].contains("ask for it as nvidia.com/gpu=0:0"),
            "{:?}",
            g.notes
        );
    }

    #[test]
    fn version_is_the_lowest_that_expresses_the_spec() {
        let mut spec = gen(&inventory(), "nvidia.com/gpu");
        assert_eq!(minimum_version(&spec), "0.5.0");
        // Names starting with a letter, no hostPath: 0.3.0; a mount type: 0.4.0.
        spec.devices
            .retain(|d| d.name.starts_with(|c: char| c.is_ascii_alphabetic()));
        for e in std::iter::once(&mut spec.container_edits)
            .chain(spec.devices.iter_mut().map(|d| &mut d.container_edits))
        {
            for n in &mut e.device_nodes {
                n.host_path = None;
            }
        }
        assert_eq!(minimum_version(&spec), "0.3.0");
        spec.devices[0].container_edits.mounts[0].kind = Some("bind".into());
        assert_eq!(minimum_version(&spec), "0.4.0");
        spec.devices[0].name = "0".into();
        assert_eq!(minimum_version(&spec), "0.5.0");
        spec.annotations.insert("a".into(), "b".into());
        assert_eq!(minimum_version(&spec), "0.6.0");
    }

    #[test]
    fn json_and_yaml_round_trip() {
        let spec = gen(&inventory(), "nvidia.com/gpu");
        for (f, name) in [(Format::Json, "s.json"), (Format::Yaml, "s.yaml")] {
            let text = to_text(&spec, f).unwrap();
            assert_eq!(parse(&text, Path::new(name)).unwrap(), spec, "{f:?}");
        }
        let yaml = to_text(&spec, Format::Yaml).unwrap();
        assert!(yaml.contains("\n- name: '0:1'\n"), "{yaml}");
        assert!(yaml.contains("\n- name: '0'\n"), "{yaml}");
        let mut odd = spec.clone();
        odd.container_edits
            .env
            .push("X=a\n- name: 1:5\nname: 2:3".into());
        let text = to_text(&odd, Format::Yaml).unwrap();
        assert_eq!(parse(&text, Path::new("s.yaml")).unwrap(), odd, "{text}");
        assert!(
            yaml.starts_with("cdiVersion: 0.5.0\nkind: nvidia.com/gpu\n"),
            "{yaml}"
        );
        let e = parse("cdiVersion: [", Path::new("/etc/cdi/x.yaml")).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("CDI spec /etc/cdi/x.yaml does not parse"),
            "{e}"
        );
    }

    #[test]
    fn destinations() {
        let k: Kind = "nvidia.com/gpu".parse().unwrap();
        let d = destination(None, None, &k).unwrap();
        assert_eq!(
            d.path.as_deref(),
            Some(Path::new("/etc/cdi/nvidia.com-gpu.yaml"))
        );
        assert_eq!(d.format, Format::Yaml);
        let d = destination(Some(Path::new("/x/")), Some(Format::Json), &k).unwrap();
        assert_eq!(d.path.as_deref(), Some(Path::new("/x/nvidia.com-gpu.json")));
        let d = destination(Some(Path::new("/x/s.json")), None, &k).unwrap();
        assert_eq!(d.format, Format::Json);
        let d = destination(Some(Path::new("/x/s.yml")), Some(Format::Yaml), &k).unwrap();
        assert_eq!(d.format, Format::Yaml);
        let d = destination(Some(Path::new("-")), None, &k).unwrap();
        assert_eq!(
            d,
            Destination {
                path: None,
                format: Format::Yaml
            }
        );
        let e = destination(Some(Path::new("/x/s.txt")), None, &k).unwrap_err();
        assert!(
            e.to_string().contains("read only .json, .yaml and .yml"),
            "{e}"
        );
        let e = destination(Some(Path::new("/x/s.yaml")), Some(Format::Json), &k).unwrap_err();
        assert!(e.to_string().contains("disagrees"), "{e}");
    }

    #[test]
    fn a_fresh_spec_is_not_stale() {
        let spec = gen(&inventory(), "nvidia.com/gpu");
        let w = staleness(&spec, &spec);
        // The hook path of the test spec does not exist here; nothing else differs.
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].contains("the hook /usr/bin/migcage does not exist"),
            "{w:?}"
        );
    }

    fn without_hook_warning(w: Vec<String>) -> Vec<String> {
        w.into_iter().filter(|l| !l.contains("the hook ")).collect()
    }

    #[test]
    fn recreated_instance_is_reported_once() {
        let inv = inventory();
        let disk = gen(&inv, "nvidia.com/mig");
        let mut now_inv = inv.clone();
        now_inv.gpus[0].mig_devices[1].uuid = "MIG-33333333-3333-3333-3333-333333333333".into();
        let now = gen(&now_inv, "nvidia.com/mig");
        let w = without_hook_warning(staleness(&disk, &now));
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].starts_with(&format!(
                "nvidia.com/mig=0:1, {MIG1}: {MIG1} is gone from this host"
            )),
            "{w:?}"
        );
        assert!(
            w[0].contains("0:1 is now MIG-33333333-3333-3333-3333-333333333333"),
            "{w:?}"
        );
        assert!(!w[0].contains('\n'));
    }

    #[test]
    fn destroyed_instance_shifts_the_indexes() {
        let inv = inventory();
        let disk = gen(&inv, "nvidia.com/gpu");
        let mut now_inv = inv.clone();
        now_inv.gpus[0].mig_devices.remove(0);
        now_inv.gpus[0].mig_devices[0].index = 0;
        let now = gen(&now_inv, "nvidia.com/gpu");
        let w = without_hook_warning(staleness(&disk, &now));
        assert!(
            w.iter().any(|l| l.contains(&format!("{MIG0} is gone"))
                && l.contains(&format!("0:0 is now {MIG1}"))),
            "{w:?}"
        );
        assert!(
            w.iter()
                .any(|l| l.starts_with("nvidia.com/gpu=0:1: the spec names")
                    && l.contains("the host now calls it 0:0")),
            "{w:?}"
        );
        assert!(
            w.iter().any(|l| l.starts_with("nvidia.com/gpu=all")),
            "{w:?}"
        );
    }

    #[test]
    fn changed_nodes_and_new_devices_are_reported() {
        let inv = inventory();
        let disk = gen(&inv, "nvidia.com/gpu");
        let mut now_inv = inv.clone();
        now_inv.majors.caps = Some(508);
        now_inv.majors.uvm = Some(511);
        let mut extra = now_inv.gpus[0].mig_devices[1].clone();
        extra.index = 2;
        extra.gpu_instance_id = 9;
        extra.gi_caps_minor = 84;
        extra.ci_caps_minor = 85;
        extra.uuid = "MIG-44444444-4444-4444-4444-444444444444".into();
        now_inv.gpus[0].mig_devices.push(extra);
        let now = gen(&now_inv, "nvidia.com/gpu");
        let w = without_hook_warning(staleness(&disk, &now));
        assert!(
            w.iter().any(|l| l.starts_with(&format!(
                "nvidia.com/gpu=0:1, {MIG1} ({MIG1}): the spec gives"
            )) && l.contains("(508:21)")),
            "{w:?}"
        );
        assert!(
            w.iter().any(|l| l.contains(
                "MIG-44444444-4444-4444-4444-444444444444 is on this host but not in the spec"
            )),
            "{w:?}"
        );
        assert!(
            w.iter()
                .any(|l| l.starts_with("nvidia.com/gpu: every device comes with")
                    && l.contains("(511:0)")),
            "{w:?}"
        );
    }

    #[test]
    fn report_groups_names_of_one_device() {
        let spec = gen(&inventory(), "nvidia.com/gpu");
        let r = report(Path::new("/etc/cdi/nvidia.com-gpu.yaml"), &spec, None);
        assert_eq!(r.offers.len(), 5);
        assert_eq!(
            r.offers[1].names,
            [
                "nvidia.com/gpu=0:0".to_string(),
                format!("nvidia.com/gpu={MIG0}")
            ]
        );
        let text = render(&r);
        assert!(text.starts_with("/etc/cdi/nvidia.com-gpu.yaml: kind nvidia.com/gpu, cdiVersion 0.5.0, 9 device names\n"), "{text}");
        assert!(text.contains(&format!("  nvidia.com/gpu=0:1 | nvidia.com/gpu={MIG1}  [{MIG1}] -> /dev/nvidia0 (195:0), /dev/nvidia-caps/nvidia-cap21 (509:21), /dev/nvidia-caps/nvidia-cap22 (509:22)")), "{text}");
        assert!(
            text.contains("hook: /usr/bin/migcage (createContainer): hook createContainer"),
            "{text}"
        );
    }

    #[test]
    fn written_atomically_and_found_by_its_hook() {
        let d = tempfile::tempdir().unwrap();
        let spec = gen(&inventory(), "nvidia.com/gpu");
        let p = d.path().join("sub/nvidia.com-gpu.yaml");
        write_atomic(&p, &to_text(&spec, Format::Yaml).unwrap()).unwrap();
        std::fs::write(
            d.path().join("sub/other.json"),
            r#"{"cdiVersion":"0.5.0","kind":"x.com/y","devices":[]}"#,
        )
        .unwrap();
        std::fs::write(d.path().join("sub/junk.yaml"), "::: not yaml").unwrap();
        let found = find_specs(&[d.path().join("sub"), d.path().join("missing")]);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, p);
        assert_eq!(found[0].1, spec);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o644
        );
        let left: Vec<_> = std::fs::read_dir(d.path().join("sub"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left.len(), 3, "{left:?}");
    }
}
