//! A CDI spec file's types, as engines read them and as `cdi generate` writes them, and their
//! text (JSON or YAML).
//!
//! These types spell the CDI schema, not migcage's edits: what a container gets is
//! [`edits::ContainerEdits`], the plan's one representation, and [`SpecEdits::from_plan`] is the
//! one place it is written in CDI's words. A spec file needs its own types because `cdi list`
//! reads what is on disk, written by any tool (another vendor, an older migcage, a hand edit):
//! every field the schema leaves optional is optional here, and a spec read back must equal the
//! one written (staleness compares a spec on disk with the host's spec now in this form).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::CdiError;
use crate::core::edits;
use crate::core::request::DEVICE_LIST_DIR;

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
        skip_serializing_if = "SpecEdits::is_empty"
    )]
    pub container_edits: SpecEdits,
}

/// One device a container may ask for as `kind=name`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    pub name: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(rename = "containerEdits", default)]
    pub container_edits: SpecEdits,
}

/// CDI's `containerEdits` as a spec file spells them (see the module doc for why this is not a
/// second [`edits::ContainerEdits`]: CDI has hooks and no cgroup rules, symlinks or ld cache).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SpecEdits {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    #[serde(rename = "deviceNodes", default, skip_serializing_if = "Vec::is_empty")]
    pub device_nodes: Vec<SpecNode>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<SpecMount>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<SpecHook>,
}

impl SpecEdits {
    /// The plan's edits in CDI's words, with `hooks`. The plan's cgroup rules need no field (the
    /// engine grants each node it makes), and its symlinks and ld cache entries have none (they
    /// are the hook's work inside the container).
    pub fn from_plan(e: &edits::ContainerEdits, hooks: Vec<SpecHook>) -> SpecEdits {
        SpecEdits {
            env: e.env.clone(),
            device_nodes: e.device_nodes.iter().map(SpecNode::from_plan).collect(),
            mounts: e.mounts.iter().map(SpecMount::from).collect(),
            hooks,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.env.is_empty()
            && self.device_nodes.is_empty()
            && self.mounts.is_empty()
            && self.hooks.is_empty()
    }
}

/// CDI's `deviceNodes[]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpecNode {
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

impl SpecNode {
    /// The node as the plan made it, with the cgroup permissions a container gets (`rw`: it may
    /// use the node, never make new ones).
    pub fn from_plan(n: &edits::DeviceNode) -> SpecNode {
        SpecNode {
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

    pub(crate) fn key(&self) -> (String, Option<i64>, Option<i64>) {
        (self.path.clone(), self.major, self.minor)
    }
}

/// CDI's `mounts[]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpecMount {
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

impl From<&edits::Mount> for SpecMount {
    fn from(m: &edits::Mount) -> SpecMount {
        SpecMount {
            host_path: m.host_path.clone(),
            container_path: m.container_path.clone(),
            kind: None,
            options: m.options.clone(),
        }
    }
}

/// CDI's `hooks[]`: an [`edits::Hook`] with the stage it runs at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpecHook {
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

impl SpecHook {
    /// `hook` run at `stage` (`createRuntime`), without a timeout.
    pub fn new(stage: &str, hook: edits::Hook) -> SpecHook {
        SpecHook {
            hook_name: stage.to_string(),
            path: hook.path,
            args: hook.args,
            env: hook.env,
            timeout: None,
        }
    }

    /// Whether it runs `migcage hook` (whatever the binary's path).
    pub fn runs_migcage(&self) -> bool {
        self.args.len() >= 2 && self.args[0] == "migcage" && self.args[1] == "hook"
    }
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

/// The device a CDI device's edits give, as its mount under `/var/run/nvidia-container-devices`
/// names it (`MIG-...`, `GPU-...`, `all`).
pub fn device_id(edits: &SpecEdits) -> Option<&str> {
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
        .any(SpecHook::runs_migcage)
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

/// The spec as text.
pub fn to_text(spec: &Spec, format: Format) -> Result<String, CdiError> {
    match format {
        Format::Json => serde_json::to_string_pretty(spec)
            .map(|s| s + "\n")
            .map_err(|e| CdiError::Serialize(e.to_string())),
        Format::Yaml => serde_json::to_string(spec)
            .map(|json| super::yaml::from_json(&json))
            .map_err(|e| CdiError::Serialize(e.to_string())),
    }
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
