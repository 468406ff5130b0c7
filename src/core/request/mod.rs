//! What a container asks for: its OCI spec (env, annotations, mounts) parsed into a typed
//! [`Request`]. Pure: no I/O, no host state; the request is resolved against the host's
//! inventory later, by the plan.
//!
//! # Input
//!
//! [`parse`] takes the bundle's `config.json` as a [`serde_json::Value`], not as
//! `oci_spec::runtime::Spec`: oci-spec refuses documents with values it does not model (a newer
//! runtime-spec field of a known type, a capability name it does not know) and the hook must not
//! fail a container over a field it never reads. The runtime wrapper round-trips config.json as a
//! `Value` anyway, so one parse serves both. Only the fields read here are checked, and only for
//! their shape: `process.env`, `process.capabilities.bounding`, `annotations`,
//! `mounts[].destination`.
//!
//! # Where the device list comes from
//!
//! * `NVIDIA_VISIBLE_DEVICES` in `process.env` (the last occurrence wins, as in the process's
//!   environment): a comma list of items, whitespace around items ignored:
//!   - `0` (GPU index), `0:1` (GPU index : MIG device index),
//!   - `GPU-<uuid>`, `MIG-<uuid>` (8-4-4-4-12 hex digits; the R450 form
//!     `MIG-GPU-<uuid>/<gi>/<ci>` too),
//!   - `profile:1g.5gb`, `profile:1g.5gb*2`, `profile:0/1g.5gb` (allocation by MIG profile,
//!     optionally on one GPU, optionally several; resolved by the plan),
//!   - `all` (alone),
//!   - `none` (alone: no device, but the driver capabilities still apply),
//!   - `void`, an empty value or no variable at all: nothing, the container is left untouched,
//!   - `/var/run/nvidia-container-devices` (or `/run/...`): the list is given as mounts (the
//!     Kubernetes device plugin's volume-mounts strategy).
//!
//!   Indexes are decimal without a sign or leading zero and at most [`MAX_INDEX`]. Empty items,
//!   duplicates, and `all` / `none` / `void` next to other items are errors.
//!
//!   Unlike the reference toolkit's rule for legacy images (`CUDA_VERSION` set and
//!   `NVIDIA_VISIBLE_DEVICES` unset means all GPUs), migcage never hands out GPUs implicitly: such
//!   a container gets nothing (a note says why).
//! * Annotations (the kubelet's, through the CRI runtime):
//!   - `cdi.k8s.io/<anything>`: a comma list of fully qualified CDI device names. Names of the
//!     vendors `nvidia.com`, `k8s.device-plugin.nvidia.com` and `migcage.io` with the class `gpu`
//!     or `mig` are migcage's: `nvidia.com/gpu=<id>` where id is `0`, `0:1`, a `GPU-`/`MIG-`
//!     UUID or `all` (the class `mig` takes MIG ids only). Names of other vendors, and other
//!     classes of those vendors (`nvidia.com/gds`), are left to the runtime's CDI injection.
//!   - `migcage.io/devices`: the syntax of `NVIDIA_VISIBLE_DEVICES` (without the mounts marker).
//!   - `migcage.io/profile`: `1g.5gb`, `1g.5gb*2`, `0/1g.5gb` (a comma list of those).
//! * Mounts whose destination is `/var/run/nvidia-container-devices/<id>` (or `/run/...`): each
//!   one names one device, with the ids of CDI names; `.../all` means all GPUs.
//!
//! [`RequestPolicy`] says which of these sources are honoured (the environment only for
//! privileged containers, when `env_privileged_only` is set: an ignored variable is noted in
//! [`Request::notes`], never an error). When two honoured sources name different sets of devices,
//! parsing fails naming both; lists written in different words (a UUID in one, an index in the
//! other) go to [`Request::must_agree`] and the plan compares them once resolved. One
//! exception: `NVIDIA_VISIBLE_DEVICES=all` next to a source the kubelet sets (annotations or mounts) is ignored in favour of the kubelet's list, because the
//! nvidia/cuda base images bake `ENV NVIDIA_VISIBLE_DEVICES=all` into every container.
//!
//! # The rest of the request
//!
//! * Privileged: `CAP_SYS_ADMIN` in `process.capabilities.bounding` (the reference toolkit's
//!   rule).
//! * `NVIDIA_MIG_CONFIG_DEVICES` / `NVIDIA_MIG_MONITOR_DEVICES`: `all` or a comma list of GPU
//!   indexes and `GPU-` UUIDs; a non-empty value needs a privileged container.
//! * `NVIDIA_DRIVER_CAPABILITIES`: a comma list of `compute`, `utility`, `video`, `graphics`,
//!   `display`, `ngx`, `compat32`, `all`; `utility,compute` when unset or empty. It is read
//!   whatever the policy says about the environment: it picks driver files, never devices.
//! * `NVIDIA_REQUIRE_*` and `NVIDIA_DISABLE_REQUIRE` (CUDA / driver / architecture constraints
//!   checked by the reference toolkit) are ignored by migcage.
//!
//! When nothing selects a device ([`Request::is_noop`]), the container is left untouched and the
//! other variables are not even parsed (as the reference toolkit does): a stray
//! `NVIDIA_DRIVER_CAPABILITIES` in an image without GPUs must not break it.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::config::RequestPolicy;

/// The device list variable.
pub const VISIBLE_DEVICES: &str = "NVIDIA_VISIBLE_DEVICES";
/// The driver capabilities variable.
pub const DRIVER_CAPABILITIES: &str = "NVIDIA_DRIVER_CAPABILITIES";
/// GPUs whose MIG configuration the container may change (mig/config capability).
pub const MIG_CONFIG_DEVICES: &str = "NVIDIA_MIG_CONFIG_DEVICES";
/// GPUs whose MIG devices the container may monitor (mig/monitor capability).
pub const MIG_MONITOR_DEVICES: &str = "NVIDIA_MIG_MONITOR_DEVICES";
/// Set by the nvidia/cuda images; only used for a note.
pub const CUDA_VERSION: &str = "CUDA_VERSION";
/// The directory of the volume-mounts strategy, and the value of `NVIDIA_VISIBLE_DEVICES` that
/// points at it.
pub const DEVICE_LIST_DIR: &str = "/var/run/nvidia-container-devices";
/// The same directory through `/run` (`/var/run` is a symlink to it on current distributions).
pub const DEVICE_LIST_DIR_RUN: &str = "/run/nvidia-container-devices";
/// Prefix of the annotations the kubelet sets for CDI devices.
pub const CDI_ANNOTATION_PREFIX: &str = "cdi.k8s.io/";
/// migcage's own device list annotation.
pub const DEVICES_ANNOTATION: &str = "migcage.io/devices";
/// migcage's own profile annotation.
pub const PROFILE_ANNOTATION: &str = "migcage.io/profile";
/// CDI vendors whose `gpu` / `mig` devices migcage serves.
pub const CDI_VENDORS: [&str; 3] = ["nvidia.com", "k8s.device-plugin.nvidia.com", "migcage.io"];
/// The largest GPU or MIG device index accepted (the driver's device minors stop at 254).
pub const MAX_INDEX: u32 = 255;
/// The most MIG devices one profile item may ask for.
pub const MAX_PROFILE_COUNT: u32 = 64;

const CAP_SYS_ADMIN: &str = "CAP_SYS_ADMIN";
/// Values longer than this are cut in messages (an error stays one readable line).
const MAX_SHOWN: usize = 200;

/// One device (or set of devices) a container names.
///
/// `Display` writes it in the user's syntax (`0`, `0:1`, `GPU-...`, `MIG-...`, `all`,
/// `profile:0/1g.5gb*2`) and [`FromStr`] reads that back. UUIDs are kept with their prefix and
/// with lower-case hex digits, as NVML prints them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum DeviceSelector {
    /// Every GPU (every MIG device of MIG-enabled GPUs).
    All,
    /// A GPU by NVML index.
    GpuIndex(u32),
    /// A MIG device by parent GPU index and index among that GPU's MIG devices.
    MigIndex { gpu: u32, mig: u32 },
    /// `GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
    GpuUuid(String),
    /// `MIG-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` (or the R450 form `MIG-GPU-<uuid>/<gi>/<ci>`).
    MigUuid(String),
    /// `count` MIG devices of `profile` (`1g.5gb`), on GPU `gpu` or any GPU.
    Profile {
        gpu: Option<u32>,
        profile: String,
        count: u32,
    },
}

impl DeviceSelector {
    /// Whether this names one or more MIG devices (as opposed to whole GPUs or all).
    pub fn is_mig(&self) -> bool {
        matches!(
            self,
            DeviceSelector::MigIndex { .. }
                | DeviceSelector::MigUuid(_)
                | DeviceSelector::Profile { .. }
        )
    }
}

impl fmt::Display for DeviceSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSelector::All => f.write_str("all"),
            DeviceSelector::GpuIndex(i) => write!(f, "{i}"),
            DeviceSelector::MigIndex { gpu, mig } => write!(f, "{gpu}:{mig}"),
            DeviceSelector::GpuUuid(u) | DeviceSelector::MigUuid(u) => f.write_str(u),
            DeviceSelector::Profile {
                gpu,
                profile,
                count,
            } => {
                f.write_str("profile:")?;
                if let Some(g) = gpu {
                    write!(f, "{g}/")?;
                }
                f.write_str(profile)?;
                if *count != 1 {
                    write!(f, "*{count}")?;
                }
                Ok(())
            }
        }
    }
}

impl FromStr for DeviceSelector {
    type Err = String;

    /// One item of `NVIDIA_VISIBLE_DEVICES` (not `none` or `void`, which select no device).
    fn from_str(s: &str) -> Result<Self, String> {
        match parse_item(s.trim(), Syntax::Env)? {
            Item::Device(d) => Ok(d),
            Item::NoDevices | Item::Void => Err(format!(
                "{} selects no device; {}",
                shown(s),
                Syntax::Env.hint()
            )),
        }
    }
}

impl Serialize for DeviceSelector {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DeviceSelector {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// What the container's device selection amounts to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "selectors", rename_all = "snake_case")]
pub enum Devices {
    /// Nothing asked for (`void`, empty, unset, or every source ignored by policy): leave the
    /// container untouched.
    Untouched,
    /// `none`: no device, but the driver files of the driver capabilities.
    DriverOnly,
    /// These devices (never empty; `All` only alone).
    Selected(Vec<DeviceSelector>),
}

/// Where a device selection came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Source {
    /// `NVIDIA_VISIBLE_DEVICES` in the process environment.
    Env,
    /// A `cdi.k8s.io/*` annotation.
    CdiAnnotation { key: String },
    /// `migcage.io/devices` or `migcage.io/profile`.
    MigcageAnnotation { key: String },
    /// Mounts under /var/run/nvidia-container-devices.
    VolumeMounts,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Env => f.write_str(VISIBLE_DEVICES),
            Source::CdiAnnotation { key } | Source::MigcageAnnotation { key } => {
                write!(f, "annotation {key}")
            }
            Source::VolumeMounts => write!(f, "mounts under {DEVICE_LIST_DIR}"),
        }
    }
}

/// A set of driver capabilities (`NVIDIA_DRIVER_CAPABILITIES`): which driver files a container
/// gets. `Display` and `Serialize` write the names in a fixed order.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct DriverCapabilities(u8);

impl DriverCapabilities {
    /// CUDA and OpenCL.
    pub const COMPUTE: Self = Self(1);
    /// nvidia-smi and NVML.
    pub const UTILITY: Self = Self(1 << 1);
    /// Video codec SDK.
    pub const VIDEO: Self = Self(1 << 2);
    /// OpenGL and Vulkan.
    pub const GRAPHICS: Self = Self(1 << 3);
    /// X11 display.
    pub const DISPLAY: Self = Self(1 << 4);
    /// NGX (DLSS).
    pub const NGX: Self = Self(1 << 5);
    /// 32-bit libraries.
    pub const COMPAT32: Self = Self(1 << 6);
    /// Every capability.
    pub const ALL: Self = Self((1 << 7) - 1);
    /// What a container gets when the variable is unset or empty.
    pub const DEFAULT: Self = Self(Self::UTILITY.0 | Self::COMPUTE.0);
    /// The names, in display order.
    pub const NAMES: [(&'static str, Self); 7] = [
        ("compute", Self::COMPUTE),
        ("utility", Self::UTILITY),
        ("video", Self::VIDEO),
        ("graphics", Self::GRAPHICS),
        ("display", Self::DISPLAY),
        ("ngx", Self::NGX),
        ("compat32", Self::COMPAT32),
    ];

    /// No capability.
    pub const fn empty() -> Self {
        Self(0)
    }

    /// Whether every capability of `other` is in `self`.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The names of the capabilities in the set, in display order.
    pub fn names(self) -> Vec<&'static str> {
        Self::NAMES
            .iter()
            .filter(|(_, c)| self.contains(*c))
            .map(|(n, _)| *n)
            .collect()
    }
}

impl std::ops::BitOr for DriverCapabilities {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

impl std::ops::BitOrAssign for DriverCapabilities {
    fn bitor_assign(&mut self, rhs: Self) {
        self.0 |= rhs.0;
    }
}

impl fmt::Display for DriverCapabilities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.names().join(","))
    }
}

impl fmt::Debug for DriverCapabilities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DriverCapabilities({self})")
    }
}

impl FromStr for DriverCapabilities {
    type Err = String;

    /// A value of `NVIDIA_DRIVER_CAPABILITIES`; empty means the default. The error is the
    /// problem, without the variable's name.
    fn from_str(value: &str) -> Result<Self, String> {
        if value.trim().is_empty() {
            return Ok(Self::DEFAULT);
        }
        let mut caps = Self::empty();
        for item in value.split(',').map(str::trim) {
            if item.is_empty() {
                return Err("empty item (a stray comma?)".into());
            }
            caps |= match item {
                "all" => Self::ALL,
                _ => match Self::NAMES.iter().find(|(n, _)| *n == item) {
                    Some((_, c)) => *c,
                    None => return Err(format!("{} is not a driver capability", shown(item))),
                },
            };
        }
        Ok(caps)
    }
}

impl Serialize for DriverCapabilities {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.names().serialize(s)
    }
}

/// What a container asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Request {
    pub devices: Devices,
    /// The sources the selection came from (empty when [`Devices::Untouched`]).
    pub sources: Vec<Source>,
    /// Which driver files the container gets ([`DriverCapabilities::DEFAULT`] when untouched).
    pub driver_capabilities: DriverCapabilities,
    /// `NVIDIA_MIG_CONFIG_DEVICES`: `All`, `GpuIndex` and `GpuUuid` selectors only.
    pub mig_config: Option<Vec<DeviceSelector>>,
    /// `NVIDIA_MIG_MONITOR_DEVICES`: `All`, `GpuIndex` and `GpuUuid` selectors only.
    pub mig_monitor: Option<Vec<DeviceSelector>>,
    /// CAP_SYS_ADMIN in the bounding set.
    pub privileged: bool,
    /// What was ignored and why, for `migcage explain` and the log.
    pub notes: Vec<String>,
    /// When several honoured sources name devices in different words (`MIG-...` in one, `0:1`
    /// in another), whether they mean the same devices is only known once they are resolved
    /// against the host: every such source, for the plan to compare. Empty otherwise.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub must_agree: Vec<SourceSelection>,
}

/// One honoured source's device list, kept for the plan's agreement check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceSelection {
    /// `NVIDIA_VISIBLE_DEVICES`, `annotation cdi.k8s.io/x`, `mounts under ...`
    pub label: String,
    /// The value as written, for messages.
    pub value: String,
    pub selectors: Vec<DeviceSelector>,
}

impl Request {
    /// Nothing requested: leave the container untouched.
    pub fn is_noop(&self) -> bool {
        self.devices == Devices::Untouched
    }

    /// The selected devices (empty for `none` and for untouched).
    pub fn selectors(&self) -> &[DeviceSelector] {
        match &self.devices {
            Devices::Selected(s) => s,
            Devices::Untouched | Devices::DriverOnly => &[],
        }
    }
}

/// Why a container's request cannot be honoured. Every message is one line naming the source,
/// the value found, and what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// A value that does not parse.
    #[error("{origin}={}: {problem}; {hint}", shown(.value))]
    Invalid {
        /// `NVIDIA_VISIBLE_DEVICES`, `annotation cdi.k8s.io/x`, `mount destination`, ...
        origin: String,
        value: String,
        problem: String,
        hint: String,
    },
    /// Two honoured sources name different devices.
    #[error(
        "{first}={} and {second}={} name different devices; remove one of them or make them name the same devices",
        shown(.first_value),
        shown(.second_value)
    )]
    Conflict {
        first: String,
        first_value: String,
        second: String,
        second_value: String,
    },
    /// MIG config / monitor asked for by an unprivileged container.
    #[error(
        "{var}={} requires a privileged container (CAP_SYS_ADMIN); unset {var} or run the container privileged",
        shown(.value)
    )]
    NeedsPrivileged { var: &'static str, value: String },
    /// The env var points at the volume-mounts list, but there is none.
    #[error(
        "{VISIBLE_DEVICES}={} says the device list is in mounts under {DEVICE_LIST_DIR}, but no mount is there; mount /dev/null on {DEVICE_LIST_DIR}/<id> for each device, or set {VISIBLE_DEVICES} to the list itself",
        shown(.value)
    )]
    NoDeviceMounts { value: String },
    /// A field of config.json migcage reads has the wrong shape.
    #[error("config.json {field}: {problem}; write it as the OCI runtime spec says ({expected})")]
    Spec {
        field: &'static str,
        problem: String,
        expected: &'static str,
    },
}

/// A value quoted and escaped for a one-line message, cut when very long.
fn shown(s: &str) -> String {
    if s.chars().count() <= MAX_SHOWN {
        format!("{s:?}")
    } else {
        let cut: String = s.chars().take(MAX_SHOWN).collect();
        format!("{cut:?}...")
    }
}

/// Which item syntax a value is parsed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Syntax {
    /// `NVIDIA_VISIBLE_DEVICES` and `migcage.io/devices`: everything.
    Env,
    /// The id of a CDI name or of a mount: index, `0:1`, UUID, `all`.
    Id,
    /// The id of a CDI name of class `mig`: `0:1`, MIG UUID.
    MigId,
    /// `migcage.io/profile`: `[gpu/]profile[*count]`.
    Profile,
    /// `NVIDIA_MIG_*_DEVICES`: `all`, GPU index, GPU UUID.
    Gpus,
}

impl Syntax {
    fn hint(self) -> &'static str {
        match self {
            Syntax::Env => "use GPU:MIG such as 0:1, a MIG-/GPU- UUID, a GPU index such as 0, profile:1g.5gb (profile:0/1g.5gb*2), all, none or void",
            Syntax::Id => "use a device id: GPU:MIG such as 0:1, a MIG-/GPU- UUID, a GPU index such as 0, or all",
            Syntax::MigId => "use a MIG device id: GPU:MIG such as 0:1 or a MIG- UUID, or the class gpu for whole GPUs",
            Syntax::Profile => "use a MIG profile such as 1g.5gb, 1g.5gb*2 (two devices) or 0/1g.5gb (on GPU 0)",
            Syntax::Gpus => "use all or a comma list of GPU indexes such as 0 and GPU- UUIDs",
        }
    }
}

/// One parsed item of a list.
enum Item {
    Device(DeviceSelector),
    NoDevices,
    Void,
}

/// A decimal index: digits only, no leading zero, at most [`MAX_INDEX`].
fn parse_index(s: &str, what: &str) -> Result<u32, String> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{} is not a {what}", shown(s)));
    }
    if s.len() > 1 && s.starts_with('0') {
        let plain = s.trim_start_matches('0');
        let plain = if plain.is_empty() { "0" } else { plain };
        return Err(format!("{} has a leading zero; write {plain}", shown(s)));
    }
    match s.parse::<u32>() {
        Ok(n) if n <= MAX_INDEX => Ok(n),
        _ => Err(format!(
            "{} is larger than {MAX_INDEX}, the largest {what} migcage accepts",
            shown(s)
        )),
    }
}

/// 8-4-4-4-12 hex digits.
fn is_uuid_body(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn parse_gpu_uuid(item: &str) -> Result<String, String> {
    match item.strip_prefix("GPU-") {
        Some(body) if is_uuid_body(body) => Ok(format!("GPU-{}", body.to_ascii_lowercase())),
        _ => Err(format!(
            "{} is not a GPU UUID (GPU- then hex digits as 8-4-4-4-12)",
            shown(item)
        )),
    }
}

fn parse_mig_uuid(item: &str) -> Result<String, String> {
    let bad = || {
        format!(
            "{} is not a MIG UUID (MIG- then hex digits as 8-4-4-4-12, or MIG-GPU-<uuid>/<gi>/<ci>)",
            shown(item)
        )
    };
    let body = item.strip_prefix("MIG-").ok_or_else(bad)?;
    if is_uuid_body(body) {
        return Ok(format!("MIG-{}", body.to_ascii_lowercase()));
    }
    // R450's form: MIG-GPU-<gpu uuid>/<gpu instance id>/<compute instance id>.
    let mut parts = body.split('/');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(gpu), Some(gi), Some(ci), None) => {
            let gpu = parse_gpu_uuid(gpu).map_err(|_| bad())?;
            let gi = parse_index(gi, "GPU instance id").map_err(|_| bad())?;
            let ci = parse_index(ci, "compute instance id").map_err(|_| bad())?;
            Ok(format!("MIG-{gpu}/{gi}/{ci}"))
        }
        _ => Err(bad()),
    }
}

/// A MIG profile name as nvidia-smi prints it: `[<n>c.]<n>g.<n>gb[+me|-me|+gfx|...]`.
fn is_profile_name(name: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let core_end = name.find(['+', '-']).unwrap_or(name.len());
    let (core, suffix) = name.split_at(core_end);
    let core = match core.split_once("c.") {
        Some((n, rest)) if digits(n) => rest,
        _ => core,
    };
    let core_ok = match core.split_once("g.") {
        Some((slices, mem)) => digits(slices) && mem.strip_suffix("gb").is_some_and(digits),
        None => false,
    };
    let suffix_ok = suffix.is_empty()
        || suffix[1..].split(['+', '-']).all(|seg| {
            !seg.is_empty()
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.')
        });
    core_ok && suffix_ok
}

/// `[gpu/]profile[*count]`.
fn parse_profile(spec: &str) -> Result<DeviceSelector, String> {
    if spec.is_empty() {
        return Err("names no profile".into());
    }
    let (gpu, rest) = match spec.split_once('/') {
        Some((g, rest)) => (Some(parse_index(g, "GPU index")?), rest),
        None => (None, spec),
    };
    let (name, count) = match rest.split_once('*') {
        Some((name, c)) => {
            let count = match c.parse::<u32>() {
                Ok(n) if c.bytes().all(|b| b.is_ascii_digit()) && !c.starts_with('0') => n,
                _ => {
                    return Err(format!(
                        "{} is not a device count (1 to {MAX_PROFILE_COUNT})",
                        shown(c)
                    ))
                }
            };
            if count > MAX_PROFILE_COUNT {
                return Err(format!(
                    "{} is more than {MAX_PROFILE_COUNT} devices",
                    shown(c)
                ));
            }
            (name, count)
        }
        None => (rest, 1),
    };
    if !is_profile_name(name) {
        return Err(format!(
            "{} is not a MIG profile name (such as 1g.5gb, 1g.10gb+me, 1c.3g.20gb)",
            shown(name)
        ));
    }
    Ok(DeviceSelector::Profile {
        gpu,
        profile: name.to_string(),
        count,
    })
}

/// One trimmed item.
fn parse_item(item: &str, syntax: Syntax) -> Result<Item, String> {
    if item.is_empty() {
        return Err("empty item (a stray comma?)".into());
    }
    if syntax == Syntax::Profile {
        if let Some(rest) = item.strip_prefix("profile:") {
            return Err(format!(
                "{} has the prefix \"profile:\", which {PROFILE_ANNOTATION} does not take; write {}",
                shown(item),
                shown(rest)
            ));
        }
        return parse_profile(item).map(Item::Device);
    }
    match (item, syntax) {
        ("all", Syntax::MigId) => {
            return Err("\"all\" names whole GPUs; use the class gpu for all".into())
        }
        ("all", _) => return Ok(Item::Device(DeviceSelector::All)),
        ("none", Syntax::Env) => return Ok(Item::NoDevices),
        ("void", Syntax::Env) => return Ok(Item::Void),
        _ => {}
    }
    if let Some(spec) = item.strip_prefix("profile:") {
        return match syntax {
            Syntax::Env => parse_profile(spec).map(Item::Device),
            _ => Err(format!(
                "{} asks for a profile, which only {VISIBLE_DEVICES}, {DEVICES_ANNOTATION} and {PROFILE_ANNOTATION} accept",
                shown(item)
            )),
        };
    }
    let whole_gpu = |what: &str| match syntax {
        Syntax::MigId => Err(format!("{} is {what}, not a MIG device", shown(item))),
        _ => Ok(()),
    };
    let mig_dev = || match syntax {
        Syntax::Gpus => Err(format!(
            "{} is a MIG device; the MIG capabilities are per GPU",
            shown(item)
        )),
        _ => Ok(()),
    };
    if item.starts_with("GPU-") {
        whole_gpu("a whole GPU")?;
        return parse_gpu_uuid(item).map(|u| Item::Device(DeviceSelector::GpuUuid(u)));
    }
    if item.starts_with("MIG-") {
        mig_dev()?;
        return parse_mig_uuid(item).map(|u| Item::Device(DeviceSelector::MigUuid(u)));
    }
    let lower = item.to_ascii_lowercase();
    if lower.starts_with("gpu-") || lower.starts_with("mig-") {
        return Err(format!(
            "{} is not a UUID: UUIDs start with upper-case GPU- or MIG-",
            shown(item)
        ));
    }
    if let Some((gpu, mig)) = item.split_once(':') {
        if mig.contains(':') {
            return Err(format!("{} has more than one \":\"", shown(item)));
        }
        let gpu = parse_index(gpu, "GPU index")?;
        let mig = parse_index(mig, "MIG device index")?;
        mig_dev()?;
        return Ok(Item::Device(DeviceSelector::MigIndex { gpu, mig }));
    }
    if item.starts_with(|c: char| c.is_ascii_digit()) {
        let index = parse_index(item, "GPU index")?;
        whole_gpu("a whole GPU")?;
        return Ok(Item::Device(DeviceSelector::GpuIndex(index)));
    }
    Err(format!("{} is not a device", shown(item)))
}

/// One device id (of a CDI name or a mount): `none` and `void` are not devices there.
fn parse_id(id: &str, syntax: Syntax) -> Result<DeviceSelector, String> {
    match parse_item(id, syntax)? {
        Item::Device(d) => Ok(d),
        Item::NoDevices | Item::Void => Err(format!("{} is not a device", shown(id))),
    }
}

/// A comma list. Empty (after trimming) is [`Devices::Untouched`].
fn parse_list(value: &str, syntax: Syntax) -> Result<Devices, String> {
    if value.trim().is_empty() {
        return Ok(Devices::Untouched);
    }
    let items: Vec<&str> = value.split(',').map(str::trim).collect();
    let (mut selected, mut none, mut void) = (Vec::new(), false, false);
    for item in &items {
        match parse_item(item, syntax)? {
            Item::Device(d) => {
                if let Some(prev) = selected.iter().find(|p| same_device(p, &d)) {
                    return Err(duplicate_problem(prev, &d));
                }
                selected.push(d);
            }
            Item::NoDevices => none = true,
            Item::Void => void = true,
        }
    }
    if items.len() > 1 {
        for (flag, word) in [
            (void, "void"),
            (none, "none"),
            (selected.contains(&DeviceSelector::All), "all"),
        ] {
            if flag {
                return Err(format!("\"{word}\" cannot be combined with other items"));
            }
        }
    }
    Ok(if void {
        Devices::Untouched
    } else if none {
        Devices::DriverOnly
    } else {
        Devices::Selected(selected)
    })
}

/// Equal, or two counts of one profile on one GPU.
fn same_device(a: &DeviceSelector, b: &DeviceSelector) -> bool {
    match (a, b) {
        (
            DeviceSelector::Profile {
                gpu: ga,
                profile: pa,
                ..
            },
            DeviceSelector::Profile {
                gpu: gb,
                profile: pb,
                ..
            },
        ) => ga == gb && pa == pb,
        _ => a == b,
    }
}

fn duplicate_problem(prev: &DeviceSelector, d: &DeviceSelector) -> String {
    match d {
        DeviceSelector::Profile { gpu, profile, .. } => {
            let on = gpu.map(|g| format!("{g}/")).unwrap_or_default();
            format!(
                "{} and {} ask for the same profile twice; write one item with a count, such as {on}{profile}*2",
                shown(&prev.to_string()),
                shown(&d.to_string())
            )
        }
        _ => format!("{} appears twice", shown(&d.to_string())),
    }
}

/// The fields of config.json this module reads.
struct SpecView {
    /// The last value of each variable.
    env: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    destinations: Vec<String>,
    privileged: bool,
}

impl SpecView {
    fn read(spec: &Value) -> Result<SpecView, RequestError> {
        let bad = |field, problem: &str, expected| RequestError::Spec {
            field,
            problem: problem.to_string(),
            expected,
        };
        if !spec.is_object() {
            return Err(bad("(top level)", "is not a JSON object", "an object"));
        }
        let process = spec.get("process").filter(|v| !v.is_null());
        if process.is_some_and(|p| !p.is_object()) {
            return Err(bad("process", "is not an object", "an object"));
        }
        let mut env = BTreeMap::new();
        if let Some(list) = process.and_then(|p| p.get("env")).filter(|v| !v.is_null()) {
            let list = list.as_array().ok_or_else(|| {
                bad(
                    "process.env",
                    "is not an array",
                    "an array of \"KEY=value\" strings",
                )
            })?;
            for entry in list {
                let entry = entry.as_str().ok_or_else(|| {
                    bad(
                        "process.env",
                        "holds a non-string",
                        "an array of \"KEY=value\" strings",
                    )
                })?;
                // An entry without "=" is not a variable (execve passes it on; getenv never sees
                // it).
                if let Some((k, v)) = entry.split_once('=') {
                    env.insert(k.to_string(), v.to_string());
                }
            }
        }
        let bounding = process
            .and_then(|p| p.get("capabilities"))
            .and_then(|c| c.get("bounding"))
            .filter(|v| !v.is_null());
        let privileged = match bounding {
            None => false,
            Some(b) => b
                .as_array()
                .ok_or_else(|| {
                    bad(
                        "process.capabilities.bounding",
                        "is not an array",
                        "an array of capability names such as \"CAP_SYS_ADMIN\"",
                    )
                })?
                .iter()
                .any(|c| c.as_str() == Some(CAP_SYS_ADMIN)),
        };
        let mut annotations = BTreeMap::new();
        if let Some(map) = spec.get("annotations").filter(|v| !v.is_null()) {
            let map = map
                .as_object()
                .ok_or_else(|| bad("annotations", "is not an object", "an object of strings"))?;
            for (k, v) in map {
                let v = v.as_str().ok_or_else(|| {
                    bad(
                        "annotations",
                        "holds a non-string value",
                        "an object of strings",
                    )
                })?;
                annotations.insert(k.clone(), v.to_string());
            }
        }
        let mut destinations = Vec::new();
        if let Some(list) = spec.get("mounts").filter(|v| !v.is_null()) {
            let list = list.as_array().ok_or_else(|| {
                bad(
                    "mounts",
                    "is not an array",
                    "an array of objects with a \"destination\"",
                )
            })?;
            for m in list {
                let d = m
                    .get("destination")
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        bad(
                            "mounts",
                            "holds a mount without a string destination",
                            "an array of objects with a \"destination\"",
                        )
                    })?;
                destinations.push(d.to_string());
            }
        }
        Ok(SpecView {
            env,
            annotations,
            destinations,
            privileged,
        })
    }
}

/// One honoured source (or several of one kind) and what it selects.
struct Group {
    /// For messages: `NVIDIA_VISIBLE_DEVICES`, `annotation cdi.k8s.io/x`, ...
    label: String,
    value: String,
    devices: Devices,
    sources: Vec<Source>,
    /// Set by the kubelet (annotations, mounts) rather than by the image or the user.
    kubelet: bool,
}

impl Group {
    fn selection(&self) -> SourceSelection {
        SourceSelection {
            label: self.label.clone(),
            value: self.value.clone(),
            selectors: match &self.devices {
                Devices::Selected(s) => s.clone(),
                _ => Vec::new(),
            },
        }
    }

    /// The selection as a sorted set, for comparing sources.
    fn canonical(&self) -> (bool, Vec<DeviceSelector>) {
        match &self.devices {
            Devices::Selected(s) => {
                let mut s = s.clone();
                s.sort();
                (true, s)
            }
            _ => (false, Vec::new()),
        }
    }
}

/// Add `more` to `into`; duplicates (across several annotations or mounts) are dropped.
fn merge(into: &mut Vec<DeviceSelector>, more: Vec<DeviceSelector>) -> bool {
    let mut dropped = false;
    for d in more {
        if into.contains(&d) {
            dropped = true;
        } else {
            into.push(d);
        }
    }
    dropped
}

/// Fails when `all` ends up next to other devices after merging several annotations or mounts.
fn check_merged(
    label: &str,
    value: &str,
    devices: &[DeviceSelector],
    hint: Syntax,
) -> Result<(), RequestError> {
    if devices.len() > 1 && devices.contains(&DeviceSelector::All) {
        return Err(RequestError::Invalid {
            origin: label.to_string(),
            value: value.to_string(),
            problem: "\"all\" cannot be combined with other devices".into(),
            hint: hint.hint().into(),
        });
    }
    Ok(())
}

fn join_labels(kind: &str, keys: &[String]) -> String {
    if keys.len() == 1 {
        format!("{kind} {}", keys[0])
    } else {
        format!("{kind}s {}", keys.join(" and "))
    }
}

/// The CDI names in a `cdi.k8s.io/*` annotation that are migcage's; ignored names are noted.
fn parse_cdi_annotation(
    key: &str,
    value: &str,
    notes: &mut Vec<String>,
) -> Result<Vec<DeviceSelector>, RequestError> {
    let origin = format!("annotation {key}");
    let invalid = |problem: String, syntax: Syntax| RequestError::Invalid {
        origin: origin.clone(),
        value: value.to_string(),
        problem,
        hint: match syntax {
            Syntax::MigId => format!("{} (after nvidia.com/mig=)", syntax.hint()),
            _ => format!("{} (after nvidia.com/gpu=)", syntax.hint()),
        },
    };
    let mut out = Vec::new();
    for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let ours = |vendor: &str| CDI_VENDORS.contains(&vendor);
        let Some((kind, id)) = name.split_once('=') else {
            if CDI_VENDORS
                .iter()
                .any(|v| name.starts_with(&format!("{v}/")))
            {
                return Err(invalid(
                    format!(
                        "{} is not a fully qualified CDI device name (vendor/class=id)",
                        shown(name)
                    ),
                    Syntax::Id,
                ));
            }
            notes.push(format!(
                "annotation {key}: ignored {} (not a CDI device name of migcage's)",
                shown(name)
            ));
            continue;
        };
        let (vendor, class) = kind.split_once('/').unwrap_or((kind, ""));
        if !ours(vendor) {
            continue; // another vendor's device: the runtime's CDI injection handles it
        }
        let syntax = match class {
            "gpu" => Syntax::Id,
            "mig" => Syntax::MigId,
            _ => {
                notes.push(format!(
                    "annotation {key}: ignored {} (class {} is not gpu or mig)",
                    shown(name),
                    shown(class)
                ));
                continue;
            }
        };
        let d = parse_id(id.trim(), syntax)
            .map_err(|p| invalid(format!("in {}: {p}", shown(name)), syntax))?;
        if out.contains(&d) {
            return Err(invalid(
                format!("{} appears twice", shown(&d.to_string())),
                syntax,
            ));
        }
        out.push(d);
    }
    Ok(out)
}

/// The device id of a mount destination under the device list directory, if it is one.
fn mount_id(destination: &str) -> Option<&str> {
    let rest = destination
        .strip_prefix(DEVICE_LIST_DIR)
        .or_else(|| destination.strip_prefix(DEVICE_LIST_DIR_RUN))?;
    let id = rest.strip_prefix('/')?.trim_end_matches('/');
    (!id.is_empty()).then_some(id)
}

fn is_list_marker(value: &str) -> bool {
    let v = value.trim().trim_end_matches('/');
    v == DEVICE_LIST_DIR || v == DEVICE_LIST_DIR_RUN
}

/// Parse a container's request from its config.json under a policy. See the module docs for the
/// syntax and the rules.
pub fn parse(spec: &Value, policy: &RequestPolicy) -> Result<Request, RequestError> {
    let view = SpecView::read(spec)?;
    let mut notes = Vec::new();
    let privileged = view.privileged;

    // Groups in the order their list wins when they agree: mounts, CDI, migcage, env.
    let mut groups: Vec<Group> = Vec::new();

    // Mounts under /var/run/nvidia-container-devices.
    let mount_ids: Vec<(&str, &str)> = view
        .destinations
        .iter()
        .filter_map(|d| mount_id(d).map(|id| (d.as_str(), id)))
        .collect();
    if !mount_ids.is_empty() && !policy.accept_volume_mounts {
        notes.push(format!(
            "{} mount(s) under {DEVICE_LIST_DIR} ignored: the configuration does not accept them (requests.accept_volume_mounts = false)",
            mount_ids.len()
        ));
    } else if !mount_ids.is_empty() {
        let mut selected = Vec::new();
        for (dest, id) in &mount_ids {
            let invalid = |problem: String| RequestError::Invalid {
                origin: "mount destination".into(),
                value: dest.to_string(),
                problem,
                hint: format!("{} as the last path component", Syntax::Id.hint()),
            };
            if id.contains('/') {
                return Err(invalid(format!(
                    "{} is not one device id (it has a \"/\")",
                    shown(id)
                )));
            }
            let d = parse_id(id, Syntax::Id).map_err(invalid)?;
            if merge(&mut selected, vec![d]) {
                notes.push(format!(
                    "mount {dest} names a device already mounted; counted once"
                ));
            }
        }
        let value = mount_ids
            .iter()
            .map(|(_, id)| *id)
            .collect::<Vec<_>>()
            .join(",");
        check_merged("mounts under", DEVICE_LIST_DIR, &selected, Syntax::Id)?;
        groups.push(Group {
            label: format!("mounts under {DEVICE_LIST_DIR}"),
            value,
            devices: Devices::Selected(selected),
            sources: vec![Source::VolumeMounts],
            kubelet: true,
        });
    }

    // cdi.k8s.io/* annotations.
    let mut cdi: Vec<DeviceSelector> = Vec::new();
    let (mut cdi_keys, mut cdi_values) = (Vec::new(), Vec::new());
    for (key, value) in view
        .annotations
        .iter()
        .filter(|(k, _)| k.starts_with(CDI_ANNOTATION_PREFIX))
    {
        // The key is shown in messages, notes and the log: a control character in it would
        // break the one-line rule (the kubelet never writes one).
        if key.chars().any(char::is_control) {
            return Err(RequestError::Spec {
                field: "annotations",
                problem: format!("key {} has a control character", shown(key)),
                expected: "annotation keys without control characters",
            });
        }
        let mut cdi_notes = Vec::new();
        let found = parse_cdi_annotation(key, value, &mut cdi_notes)?;
        if found.is_empty() {
            notes.extend(cdi_notes);
            continue;
        }
        if !policy.accept_annotations {
            notes.push(format!(
                "annotation {key} ignored: the configuration does not accept annotations (requests.accept_annotations = false)"
            ));
            continue;
        }
        notes.extend(cdi_notes);
        if merge(&mut cdi, found) {
            notes.push(format!(
                "annotation {key} repeats devices of another CDI annotation; counted once"
            ));
        }
        cdi_keys.push(key.clone());
        cdi_values.push(value.clone());
    }
    if !cdi.is_empty() {
        let label = join_labels("annotation", &cdi_keys);
        let value = cdi_values.join(",");
        check_merged(&label, &value, &cdi, Syntax::Id)?;
        groups.push(Group {
            label,
            value,
            devices: Devices::Selected(cdi),
            sources: cdi_keys
                .into_iter()
                .map(|key| Source::CdiAnnotation { key })
                .collect(),
            kubelet: true,
        });
    }

    // migcage.io/devices and migcage.io/profile.
    let mut own: Vec<(String, String, Devices)> = Vec::new();
    for (key, syntax) in [
        (DEVICES_ANNOTATION, Syntax::Env),
        (PROFILE_ANNOTATION, Syntax::Profile),
    ] {
        let Some(value) = view.annotations.get(key) else {
            continue;
        };
        if !policy.accept_annotations {
            if !value.trim().is_empty() {
                notes.push(format!(
                    "annotation {key} ignored: the configuration does not accept annotations (requests.accept_annotations = false)"
                ));
            }
            continue;
        }
        let devices = parse_list(value, syntax).map_err(|problem| RequestError::Invalid {
            origin: format!("annotation {key}"),
            value: value.clone(),
            problem,
            hint: syntax.hint().into(),
        })?;
        if devices != Devices::Untouched {
            own.push((key.to_string(), value.clone(), devices));
        }
    }
    if !own.is_empty() {
        let keys: Vec<String> = own.iter().map(|(k, _, _)| k.clone()).collect();
        let label = join_labels("annotation", &keys);
        let value = own
            .iter()
            .map(|(_, v, _)| v.as_str())
            .collect::<Vec<_>>()
            .join(",");
        let devices = match own.as_slice() {
            [(_, _, d)] => d.clone(),
            [(k1, v1, d1), (k2, v2, d2)] => match (d1, d2) {
                (Devices::Selected(a), Devices::Selected(b)) => {
                    let mut all = a.clone();
                    for d in b {
                        if let Some(prev) = all.iter().find(|p| same_device(p, d)) {
                            return Err(RequestError::Invalid {
                                origin: label,
                                value,
                                problem: duplicate_problem(prev, d),
                                hint: Syntax::Env.hint().into(),
                            });
                        }
                        all.push(d.clone());
                    }
                    check_merged(&label, &value, &all, Syntax::Env)?;
                    Devices::Selected(all)
                }
                _ => {
                    return Err(RequestError::Conflict {
                        first: format!("annotation {k1}"),
                        first_value: v1.clone(),
                        second: format!("annotation {k2}"),
                        second_value: v2.clone(),
                    })
                }
            },
            _ => unreachable!("two annotation keys at most"),
        };
        groups.push(Group {
            label,
            value,
            devices,
            sources: keys
                .into_iter()
                .map(|key| Source::MigcageAnnotation { key })
                .collect(),
            kubelet: true,
        });
    }

    // NVIDIA_VISIBLE_DEVICES.
    let env_honoured = policy.accept_env && (privileged || !policy.env_privileged_only);
    let mut list_marker = None;
    match view.env.get(VISIBLE_DEVICES) {
        None => {
            if view.env.contains_key(CUDA_VERSION) {
                notes.push(format!(
                    "{CUDA_VERSION} is set but {VISIBLE_DEVICES} is not: migcage never hands out GPUs implicitly (set {VISIBLE_DEVICES} to ask for one)"
                ));
            }
        }
        Some(value) if value.trim().is_empty() => {}
        Some(value) if !env_honoured => {
            let why = if policy.accept_env {
                "the container is not privileged and the configuration has requests.env_privileged_only = true"
            } else {
                "the configuration does not accept it (requests.accept_env = false)"
            };
            notes.push(format!("{VISIBLE_DEVICES}={} ignored: {why}", shown(value)));
        }
        Some(value) if is_list_marker(value) => list_marker = Some(value.clone()),
        Some(value) => {
            let devices =
                parse_list(value, Syntax::Env).map_err(|problem| RequestError::Invalid {
                    origin: VISIBLE_DEVICES.into(),
                    value: value.clone(),
                    problem,
                    hint: Syntax::Env.hint().into(),
                })?;
            let is_all = devices == Devices::Selected(vec![DeviceSelector::All]);
            let kubelet = groups.iter().find(|g| g.kubelet).map(|g| g.label.clone());
            match (devices, kubelet) {
                (Devices::Untouched, _) => {}
                (_, Some(kubelet)) if is_all => notes.push(format!(
                    "{VISIBLE_DEVICES}=\"all\" ignored in favour of {kubelet}: it is the default the nvidia/cuda base images bake in, not a request"
                )),
                (devices, _) => groups.push(Group {
                    label: VISIBLE_DEVICES.into(),
                    value: value.clone(),
                    devices,
                    sources: vec![Source::Env],
                    kubelet: false,
                }),
            }
        }
    }
    if let Some(value) = list_marker {
        if !policy.accept_volume_mounts {
            notes.push(format!(
                "{VISIBLE_DEVICES}={} points at mounts, which the configuration does not accept (requests.accept_volume_mounts = false)",
                shown(&value)
            ));
        } else if groups.is_empty() {
            return Err(RequestError::NoDeviceMounts { value });
        }
    }

    // Honoured sources must agree. Two device lists that differ only in how they name devices
    // (a UUID against an index) can only be compared once resolved: the plan does that. Lists
    // of another kind (none, a profile to allocate) must be the same here.
    let mut must_agree = Vec::new();
    if let Some((first, rest)) = groups.split_first() {
        for other in rest {
            if other.canonical() == first.canonical() {
                continue;
            }
            let comparable = |g: &Group| match &g.devices {
                Devices::Selected(s) => !s
                    .iter()
                    .any(|d| matches!(d, DeviceSelector::Profile { .. })),
                _ => false,
            };
            // Lists written in the same one form (indexes against indexes, UUIDs against UUIDs)
            // differ in devices too: no host is needed to say so.
            let form = |g: &Group| -> Option<u8> {
                let Devices::Selected(s) = &g.devices else {
                    return None;
                };
                let forms: std::collections::BTreeSet<u8> = s
                    .iter()
                    .map(|d| match d {
                        DeviceSelector::GpuIndex(_) | DeviceSelector::MigIndex { .. } => 0,
                        DeviceSelector::GpuUuid(_) | DeviceSelector::MigUuid(_) => 1,
                        _ => 2,
                    })
                    .collect();
                (forms.len() == 1).then(|| forms.into_iter().next().unwrap_or(2))
            };
            let same_form = form(first).is_some() && form(first) == form(other);
            if same_form || !(comparable(first) && comparable(other)) {
                return Err(RequestError::Conflict {
                    first: first.label.clone(),
                    first_value: first.value.clone(),
                    second: other.label.clone(),
                    second_value: other.value.clone(),
                });
            }
            if must_agree.is_empty() {
                must_agree.push(first.selection());
            }
            must_agree.push(other.selection());
        }
    }
    let devices = groups
        .first()
        .map_or(Devices::Untouched, |g| g.devices.clone());
    let sources: Vec<Source> = groups.into_iter().flat_map(|g| g.sources).collect();

    if devices == Devices::Untouched {
        for var in [DRIVER_CAPABILITIES, MIG_CONFIG_DEVICES, MIG_MONITOR_DEVICES] {
            if view.env.get(var).is_some_and(|v| !v.trim().is_empty()) {
                notes.push(format!("{var} ignored: no device is requested"));
            }
        }
        return Ok(Request {
            devices,
            sources,
            driver_capabilities: DriverCapabilities::DEFAULT,
            mig_config: None,
            mig_monitor: None,
            privileged,
            notes,
            must_agree: Vec::new(),
        });
    }

    let caps_value = view.env.get(DRIVER_CAPABILITIES).map_or("", String::as_str);
    let driver_capabilities: DriverCapabilities =
        caps_value
            .parse()
            .map_err(|problem| RequestError::Invalid {
                origin: DRIVER_CAPABILITIES.into(),
                value: caps_value.to_string(),
                problem,
                hint: format!(
                    "use a comma list of {} or all (unset means utility,compute)",
                    DriverCapabilities::ALL
                ),
            })?;

    let mut mig = |var: &'static str| -> Result<Option<Vec<DeviceSelector>>, RequestError> {
        let value = match view.env.get(var) {
            Some(v) if !v.trim().is_empty() => v,
            _ => return Ok(None),
        };
        if !policy.accept_env {
            notes.push(format!(
                "{var} ignored: the configuration does not accept the environment (requests.accept_env = false)"
            ));
            return Ok(None);
        }
        if !privileged {
            return Err(RequestError::NeedsPrivileged {
                var,
                value: value.clone(),
            });
        }
        match parse_list(value, Syntax::Gpus) {
            Ok(Devices::Selected(list)) => Ok(Some(list)),
            Ok(_) => Ok(None),
            Err(problem) => Err(RequestError::Invalid {
                origin: var.into(),
                value: value.clone(),
                problem,
                hint: Syntax::Gpus.hint().into(),
            }),
        }
    };
    let mig_config = mig(MIG_CONFIG_DEVICES)?;
    let mig_monitor = mig(MIG_MONITOR_DEVICES)?;

    Ok(Request {
        devices,
        sources,
        driver_capabilities,
        mig_config,
        mig_monitor,
        privileged,
        notes,
        must_agree,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const GPU0: &str = "GPU-a1b2c3d4-e5f6-0718-293a-4b5c6d7e8f90";
    const MIG0: &str = "MIG-5c89852c-d268-c3f3-1b07-005d5ae1dc3f";
    const MIG1: &str = "MIG-0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9";

    /// A spec with these env entries, annotations, mount destinations and privilege.
    fn spec(
        env: &[&str],
        annotations: &[(&str, &str)],
        mounts: &[&str],
        privileged: bool,
    ) -> Value {
        let mut caps = vec!["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"];
        if privileged {
            caps.push("CAP_SYS_ADMIN");
        }
        let ann: serde_json::Map<String, Value> = annotations
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        let mounts: Vec<Value> = mounts
            .iter()
            .map(|d| json!({"destination": d, "type": "bind", "source": "/dev/null", "options": ["rbind", "ro"]}))
            .collect();
        json!({
            "ociVersion": "1.1.0",
            "process": {"args": ["sh"], "cwd": "/", "env": env, "capabilities": {"bounding": caps}},
            "root": {"path": "rootfs"},
            "annotations": ann,
            "mounts": mounts,
        })
    }

    fn env(vars: &[&str]) -> Value {
        spec(vars, &[], &[], false)
    }

    fn ok(s: &Value) -> Request {
        parse(s, &RequestPolicy::default()).unwrap_or_else(|e| panic!("{e}"))
    }

    fn err(s: &Value) -> String {
        let e = parse(s, &RequestPolicy::default()).expect_err("should be refused");
        let msg = e.to_string();
        assert!(!msg.contains('\n'), "one line: {msg}");
        msg
    }

    fn selected(list: &[DeviceSelector]) -> Devices {
        Devices::Selected(list.to_vec())
    }

    fn profile(gpu: Option<u32>, name: &str, count: u32) -> DeviceSelector {
        DeviceSelector::Profile {
            gpu,
            profile: name.into(),
            count,
        }
    }

    /// Found by the `request_sources` fuzz target: a CDI annotation key with a carriage return
    /// made the error two lines.
    #[test]
    fn a_control_character_in_a_cdi_annotation_key_is_refused_on_one_line() {
        for key in ["cdi.k8s.io/a\rb", "cdi.k8s.io/x\n", "cdi.k8s.io/\0"] {
            let spec = json!({"annotations": {key: "nvidia.com/mi"}});
            let e = parse(&spec, &RequestPolicy::default())
                .unwrap_err()
                .to_string();
            assert!(!e.contains(['\n', '\r', '\0']), "{e:?}");
            assert!(e.contains("has a control character"), "{e}");
        }
    }

    #[test]
    fn visible_devices_every_form() {
        use DeviceSelector::*;
        let spaced = format!(" 0:1 , {MIG1} ,1");
        let cases: Vec<(&str, Devices)> = vec![
            ("0", selected(&[GpuIndex(0)])),
            ("0:1", selected(&[MigIndex { gpu: 0, mig: 1 }])),
            (
                "3:0,0:6",
                selected(&[MigIndex { gpu: 3, mig: 0 }, MigIndex { gpu: 0, mig: 6 }]),
            ),
            (GPU0, selected(&[GpuUuid(GPU0.into())])),
            (MIG0, selected(&[MigUuid(MIG0.into())])),
            (
                "MIG-GPU-a1b2c3d4-e5f6-0718-293a-4b5c6d7e8f90/1/0",
                selected(&[MigUuid(
                    "MIG-GPU-a1b2c3d4-e5f6-0718-293a-4b5c6d7e8f90/1/0".into(),
                )]),
            ),
            ("all", selected(&[All])),
            (" all ", selected(&[All])),
            ("none", Devices::DriverOnly),
            ("void", Devices::Untouched),
            ("", Devices::Untouched),
            ("   ", Devices::Untouched),
            ("profile:1g.5gb", selected(&[profile(None, "1g.5gb", 1)])),
            ("profile:1g.5gb*2", selected(&[profile(None, "1g.5gb", 2)])),
            (
                "profile:0/1g.5gb",
                selected(&[profile(Some(0), "1g.5gb", 1)]),
            ),
            (
                "profile:1/3g.40gb*2",
                selected(&[profile(Some(1), "3g.40gb", 2)]),
            ),
            (
                "profile:1g.10gb+me",
                selected(&[profile(None, "1g.10gb+me", 1)]),
            ),
            (
                "profile:1c.3g.20gb",
                selected(&[profile(None, "1c.3g.20gb", 1)]),
            ),
            (
                "profile:1g.5gb,profile:0/1g.5gb",
                selected(&[profile(None, "1g.5gb", 1), profile(Some(0), "1g.5gb", 1)]),
            ),
            (
                &spaced,
                selected(&[
                    MigIndex { gpu: 0, mig: 1 },
                    MigUuid(MIG1.into()),
                    GpuIndex(1),
                ]),
            ),
            ("255:255", selected(&[MigIndex { gpu: 255, mig: 255 }])),
        ];
        for (value, want) in cases {
            let r = ok(&env(&[&format!("NVIDIA_VISIBLE_DEVICES={value}")]));
            assert_eq!(r.devices, want, "{value:?}");
            assert_eq!(r.is_noop(), want == Devices::Untouched, "{value:?}");
            let want_sources = if want == Devices::Untouched {
                vec![]
            } else {
                vec![Source::Env]
            };
            assert_eq!(r.sources, want_sources, "{value:?}");
        }
    }

    #[test]
    fn uuids_are_normalised_to_lower_case() {
        let upper = "GPU-A1B2C3D4-E5F6-0718-293A-4B5C6D7E8F90";
        let r = ok(&env(&[&format!("NVIDIA_VISIBLE_DEVICES={upper}")]));
        assert_eq!(r.devices, selected(&[DeviceSelector::GpuUuid(GPU0.into())]));
    }

    #[test]
    fn unset_is_untouched_even_in_a_cuda_image() {
        let r = ok(&env(&["CUDA_VERSION=12.4.1", "PATH=/bin"]));
        assert!(r.is_noop());
        assert!(r.sources.is_empty());
        assert!(
            r.notes
                .iter()
                .any(|n| n.contains("never hands out GPUs implicitly")),
            "{:?}",
            r.notes
        );
        // No process at all, or no env: nothing.
        assert!(ok(&json!({"ociVersion": "1.1.0", "root": {"path": "rootfs"}})).is_noop());
        assert!(ok(&json!({"process": {"args": ["sh"]}})).is_noop());
    }

    #[test]
    fn untouched_container_ignores_other_variables() {
        // Unprivileged with a MIG config request and a bogus capability: still left alone.
        let r = ok(&env(&[
            "NVIDIA_VISIBLE_DEVICES=void",
            "NVIDIA_MIG_CONFIG_DEVICES=all",
            "NVIDIA_DRIVER_CAPABILITIES=bogus",
        ]));
        assert!(r.is_noop());
        assert_eq!(r.mig_config, None);
        assert_eq!(r.notes.len(), 2, "{:?}", r.notes);
        assert!(r
            .notes
            .iter()
            .all(|n| n.contains("ignored: no device is requested")));
    }

    #[test]
    fn last_env_entry_wins() {
        let r = ok(&env(&[
            "NVIDIA_VISIBLE_DEVICES=all",
            "PATH=/bin",
            "NVIDIA_VISIBLE_DEVICES=0:1",
        ]));
        assert_eq!(
            r.devices,
            selected(&[DeviceSelector::MigIndex { gpu: 0, mig: 1 }])
        );
        let r = ok(&env(&[
            "NVIDIA_VISIBLE_DEVICES=0",
            "NVIDIA_VISIBLE_DEVICES=",
        ]));
        assert!(r.is_noop());
        let r = ok(&env(&[
            "NVIDIA_VISIBLE_DEVICES=bogus",
            "NVIDIA_VISIBLE_DEVICES=none",
        ]));
        assert_eq!(r.devices, Devices::DriverOnly);
        // An entry without "=" is not a variable.
        let r = ok(&env(&[
            "NVIDIA_VISIBLE_DEVICES=1",
            "NVIDIA_VISIBLE_DEVICES",
        ]));
        assert_eq!(r.devices, selected(&[DeviceSelector::GpuIndex(1)]));
        // Values may hold "=".
        assert_eq!(
            ok(&env(&["NVIDIA_VISIBLE_DEVICES=0", "X=a=b"])).devices,
            selected(&[DeviceSelector::GpuIndex(0)])
        );
    }

    #[test]
    fn selector_display_round_trips() {
        use DeviceSelector::*;
        let all = [
            All,
            GpuIndex(0),
            GpuIndex(255),
            MigIndex { gpu: 2, mig: 13 },
            GpuUuid(GPU0.into()),
            MigUuid(MIG0.into()),
            MigUuid("MIG-GPU-a1b2c3d4-e5f6-0718-293a-4b5c6d7e8f90/7/0".into()),
            profile(None, "1g.5gb", 1),
            profile(None, "1g.5gb", 7),
            profile(Some(3), "2g.10gb", 1),
            profile(Some(0), "1g.12gb+me", 2),
        ];
        let texts: Vec<String> = all.iter().map(|d| d.to_string()).collect();
        assert_eq!(texts[3], "2:13");
        assert_eq!(texts[8], "profile:1g.5gb*7");
        assert_eq!(texts[9], "profile:3/2g.10gb");
        for (d, text) in all.iter().zip(&texts) {
            assert_eq!(&text.parse::<DeviceSelector>().unwrap(), d, "{text}");
            let json = serde_json::to_string(d).unwrap();
            assert_eq!(json, format!("\"{text}\""));
            assert_eq!(&serde_json::from_str::<DeviceSelector>(&json).unwrap(), d);
        }
        // A whole list round-trips through the env var too (all but `all`, and one count of
        // the unplaced 1g.5gb profile: those may not share a list).
        let list: Vec<usize> = (1..all.len()).filter(|&i| i != 8).collect();
        let value: Vec<&str> = list.iter().map(|&i| texts[i].as_str()).collect();
        let r = ok(&env(&[&format!(
            "NVIDIA_VISIBLE_DEVICES={}",
            value.join(",")
        )]));
        let want: Vec<DeviceSelector> = list.iter().map(|&i| all[i].clone()).collect();
        assert_eq!(r.selectors(), want.as_slice());
        assert_eq!(
            Request::selectors(&ok(&env(&["NVIDIA_VISIBLE_DEVICES=none"]))),
            &[]
        );
        assert!("none".parse::<DeviceSelector>().is_err());
        assert!("void".parse::<DeviceSelector>().is_err());
    }

    /// (env entries, annotations, mounts, privileged, parts the message must contain)
    type BadCase = (
        Vec<String>,
        Vec<(&'static str, String)>,
        Vec<String>,
        bool,
        Vec<&'static str>,
    );

    fn vd(value: &str, parts: Vec<&'static str>) -> BadCase {
        (
            vec![format!("NVIDIA_VISIBLE_DEVICES={value}")],
            vec![],
            vec![],
            false,
            parts,
        )
    }

    #[test]
    fn malformed_inputs_are_refused_with_a_useful_line() {
        const VD: &str = "NVIDIA_VISIBLE_DEVICES=";
        const HINT: &str = "use GPU:MIG such as 0:1, a MIG-/GPU- UUID";
        let cdi = |v: &str| -> BadCase {
            (
                vec![],
                vec![("cdi.k8s.io/nvidia-device-plugin_x", v.to_string())],
                vec![],
                false,
                vec![],
            )
        };
        let mut cases: Vec<BadCase> = vec![
            vd("0:x", vec![r#"NVIDIA_VISIBLE_DEVICES="0:x": "x" is not a MIG device index; use GPU:MIG such as 0:1"#]),
            vd("x:1", vec![VD, r#""x" is not a GPU index"#, HINT]),
            vd("0:1:2", vec![VD, r#""0:1:2" has more than one ":""#, HINT]),
            vd("0,,1", vec![r#"NVIDIA_VISIBLE_DEVICES="0,,1""#, "empty item", HINT]),
            vd("0,", vec![r#"NVIDIA_VISIBLE_DEVICES="0,""#, "empty item"]),
            vd(",", vec!["empty item"]),
            vd("0, 0", vec![r#""0" appears twice"#, HINT]),
            vd(&format!("{MIG0},{MIG0}"), vec![r#"appears twice"#, MIG0]),
            vd("all,0", vec![r#""all" cannot be combined with other items"#, HINT]),
            vd("none,0:1", vec![r#""none" cannot be combined"#]),
            vd("0,void", vec![r#""void" cannot be combined"#]),
            vd("all,none", vec![r#""none" cannot be combined"#]),
            vd("256", vec![r#""256" is larger than 255, the largest GPU index migcage accepts"#]),
            vd("0:300", vec![r#""300" is larger than 255, the largest MIG device index"#]),
            vd("99999999999999999999", vec!["is larger than 255"]),
            vd("01", vec![r#""01" has a leading zero; write 1"#]),
            vd("0:00", vec![r#""00" has a leading zero; write 0"#]),
            vd("GPU-1234", vec![r#""GPU-1234" is not a GPU UUID (GPU- then hex digits as 8-4-4-4-12)"#]),
            vd("GPU-a1b2c3d4-e5f6-0718-293a-4b5c6d7e8f9g", vec!["is not a GPU UUID"]),
            vd("MIG-5c89852c-d268-c3f3-1b07", vec!["is not a MIG UUID", "MIG-GPU-<uuid>/<gi>/<ci>"]),
            vd("MIG-GPU-a1b2c3d4-e5f6-0718-293a-4b5c6d7e8f90/x/0", vec!["is not a MIG UUID"]),
            vd(&MIG0.to_lowercase(), vec!["upper-case GPU- or MIG-"]),
            vd("foo", vec![r#""foo" is not a device"#, HINT]),
            vd("ALL", vec![r#""ALL" is not a device"#]),
            vd("-1", vec![r#""-1" is not a device"#]),
            vd("+1", vec![r#""+1" is not a device"#]),
            vd("0 1", vec![r#""0 1" is not a GPU index"#]),
            vd("profile:", vec!["names no profile", "profile:1g.5gb"]),
            vd("profile:1g", vec![r#""1g" is not a MIG profile name"#]),
            vd("profile:1g.5", vec![r#""1g.5" is not a MIG profile name"#]),
            vd("profile:1g.5gb+", vec!["is not a MIG profile name"]),
            vd("profile:1g.5gb*0", vec![r#""0" is not a device count (1 to 64)"#]),
            vd("profile:1g.5gb*x", vec![r#""x" is not a device count"#]),
            vd("profile:1g.5gb*65", vec![r#""65" is more than 64 devices"#]),
            vd("profile:x/1g.5gb", vec![r#""x" is not a GPU index"#]),
            vd(
                "profile:1g.5gb,profile:1g.5gb*2",
                vec!["ask for the same profile twice; write one item with a count, such as 1g.5gb*2"],
            ),
            vd("profile:0/1g.5gb,profile:0/1g.5gb", vec!["such as 0/1g.5gb*2"]),
            vd("a\nb", vec![r#"NVIDIA_VISIBLE_DEVICES="a\nb""#]),
            (
                vec![format!("NVIDIA_VISIBLE_DEVICES=0,{}", "9".repeat(500))],
                vec![],
                vec![],
                false,
                vec!["...: ", "is larger than 255"],
            ),
            // CDI annotations.
            (cdi("nvidia.com/gpu=").0, cdi("nvidia.com/gpu=").1, vec![], false, vec!["annotation cdi.k8s.io/nvidia-device-plugin_x=\"nvidia.com/gpu=\"", "empty item", "(after nvidia.com/gpu=)"]),
            (vec![], cdi("nvidia.com/gpu").1, vec![], false, vec![r#""nvidia.com/gpu" is not a fully qualified CDI device name (vendor/class=id)"#]),
            (vec![], cdi("nvidia.com/mig=0").1, vec![], false, vec![r#""0" is a whole GPU, not a MIG device"#, "the class gpu for whole GPUs (after nvidia.com/mig=)"]),
            (vec![], cdi(&format!("nvidia.com/mig={GPU0}")).1, vec![], false, vec!["is a whole GPU, not a MIG device"]),
            (vec![], cdi("nvidia.com/mig=all").1, vec![], false, vec![r#""all" names whole GPUs"#]),
            (vec![], cdi("nvidia.com/gpu=profile:1g.5gb").1, vec![], false, vec!["asks for a profile, which only NVIDIA_VISIBLE_DEVICES, migcage.io/devices and migcage.io/profile accept"]),
            (vec![], cdi("nvidia.com/gpu=none").1, vec![], false, vec![r#"in "nvidia.com/gpu=none": "none" is not a device"#]),
            (vec![], cdi("nvidia.com/gpu=0,nvidia.com/gpu=0").1, vec![], false, vec![r#""0" appears twice"#]),
            (vec![], cdi("nvidia.com/gpu=0:x").1, vec![], false, vec![r#""x" is not a MIG device index"#]),
            (
                vec![],
                vec![("cdi.k8s.io/a", "nvidia.com/gpu=all".into()), ("cdi.k8s.io/b", "nvidia.com/gpu=0".into())],
                vec![],
                false,
                vec![r#"annotations cdi.k8s.io/a and cdi.k8s.io/b="nvidia.com/gpu=all,nvidia.com/gpu=0": "all" cannot be combined"#],
            ),
            // migcage annotations.
            (vec![], vec![("migcage.io/profile", "1g.5gb*0".into())], vec![], false, vec![r#"annotation migcage.io/profile="1g.5gb*0": "0" is not a device count"#, "use a MIG profile such as 1g.5gb"]),
            (vec![], vec![("migcage.io/profile", "profile:1g.5gb".into())], vec![], false, vec![r#""profile:1g.5gb" has the prefix "profile:", which migcage.io/profile does not take; write "1g.5gb""#]),
            (vec![], vec![("migcage.io/devices", "0:1,0:1".into())], vec![], false, vec![r#"annotation migcage.io/devices="0:1,0:1": "0:1" appears twice"#]),
            (vec![], vec![("migcage.io/devices", "/var/run/nvidia-container-devices".into())], vec![], false, vec!["is not a device"]),
            // Mounts.
            (vec![], vec![], vec!["/var/run/nvidia-container-devices/0:x".into()], false, vec![r#"mount destination="/var/run/nvidia-container-devices/0:x": "x" is not a MIG device index"#, "as the last path component"]),
            (vec![], vec![], vec!["/run/nvidia-container-devices/a/b".into()], false, vec![r#""a/b" is not one device id"#]),
            (vec![], vec![], vec!["/var/run/nvidia-container-devices/none".into()], false, vec![r#""none" is not a device"#]),
            (
                vec![],
                vec![],
                vec!["/var/run/nvidia-container-devices/all".into(), "/var/run/nvidia-container-devices/0".into()],
                false,
                vec![r#""all" cannot be combined"#],
            ),
            // Driver capabilities.
            (
                vec![format!("{VD}0"), "NVIDIA_DRIVER_CAPABILITIES=compute,foo".into()],
                vec![],
                vec![],
                false,
                vec![
                    r#"NVIDIA_DRIVER_CAPABILITIES="compute,foo": "foo" is not a driver capability"#,
                    "use a comma list of compute,utility,video,graphics,display,ngx,compat32 or all",
                ],
            ),
            (vec![format!("{VD}0"), "NVIDIA_DRIVER_CAPABILITIES=compute,,utility".into()], vec![], vec![], false, vec!["empty item"]),
            (vec![format!("{VD}0"), "NVIDIA_DRIVER_CAPABILITIES=Compute".into()], vec![], vec![], false, vec![r#""Compute" is not a driver capability"#]),
            // MIG config / monitor.
            (
                vec![format!("{VD}0"), "NVIDIA_MIG_MONITOR_DEVICES=all".into()],
                vec![],
                vec![],
                false,
                vec![r#"NVIDIA_MIG_MONITOR_DEVICES="all" requires a privileged container (CAP_SYS_ADMIN); unset NVIDIA_MIG_MONITOR_DEVICES"#],
            ),
            (vec![format!("{VD}0"), "NVIDIA_MIG_CONFIG_DEVICES=0".into()], vec![], vec![], false, vec!["NVIDIA_MIG_CONFIG_DEVICES=\"0\" requires a privileged container"]),
            (vec![format!("{VD}0"), "NVIDIA_MIG_CONFIG_DEVICES=0:1".into()], vec![], vec![], true, vec![r#"NVIDIA_MIG_CONFIG_DEVICES="0:1": "0:1" is a MIG device; the MIG capabilities are per GPU"#, "use all or a comma list of GPU indexes"]),
            (vec![format!("{VD}0"), format!("NVIDIA_MIG_CONFIG_DEVICES={MIG0}")], vec![], vec![], true, vec!["is a MIG device"]),
            (vec![format!("{VD}0"), "NVIDIA_MIG_CONFIG_DEVICES=none".into()], vec![], vec![], true, vec![r#""none" is not a device"#]),
            (vec![format!("{VD}0"), "NVIDIA_MIG_MONITOR_DEVICES=all,0".into()], vec![], vec![], true, vec![r#""all" cannot be combined"#]),
            // The volume-mounts marker without mounts.
            (
                vec![format!("{VD}/var/run/nvidia-container-devices")],
                vec![],
                vec![],
                false,
                vec![r#"NVIDIA_VISIBLE_DEVICES="/var/run/nvidia-container-devices" says the device list is in mounts"#, "mount /dev/null on"],
            ),
        ];
        cases.push(vd("profile:0/x/1g.5gb", vec!["is not a MIG profile name"]));
        assert!(cases.len() >= 60, "{}", cases.len());
        let mut seen = std::collections::BTreeSet::new();
        for (env, ann, mounts, privileged, parts) in &cases {
            let env: Vec<&str> = env.iter().map(String::as_str).collect();
            let ann: Vec<(&str, &str)> = ann.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let mounts: Vec<&str> = mounts.iter().map(String::as_str).collect();
            let s = spec(&env, &ann, &mounts, *privileged);
            let e = parse(&s, &RequestPolicy::default())
                .err()
                .unwrap_or_else(|| panic!("accepted: {env:?} {ann:?} {mounts:?}"));
            let msg = e.to_string();
            assert!(!msg.contains('\n'), "{msg}");
            assert!(!parts.is_empty());
            for part in parts {
                assert!(msg.contains(part), "message {msg:?} lacks {part:?}");
            }
            // Every message says what to write instead.
            assert!(
                msg.contains("; use ")
                    || msg.contains("; write ")
                    || msg.contains("; unset ")
                    || msg.contains("; mount "),
                "{msg}"
            );
            assert!(
                seen.insert(msg.clone()),
                "two cases give the same message: {msg}"
            );
        }
    }

    #[test]
    fn spec_shape_errors_name_the_field() {
        let cases = [
            (json!([]), "config.json (top level)"),
            (
                json!({"process": "x"}),
                "config.json process: is not an object",
            ),
            (
                json!({"process": {"env": "A=b"}}),
                "config.json process.env: is not an array",
            ),
            (
                json!({"process": {"env": [1]}}),
                "config.json process.env: holds a non-string",
            ),
            (
                json!({"process": {"capabilities": {"bounding": "CAP_SYS_ADMIN"}}}),
                "process.capabilities.bounding: is not an array",
            ),
            (
                json!({"annotations": []}),
                "config.json annotations: is not an object",
            ),
            (
                json!({"annotations": {"a": 1}}),
                "config.json annotations: holds a non-string value",
            ),
            (json!({"mounts": {}}), "config.json mounts: is not an array"),
            (
                json!({"mounts": [{"source": "/x"}]}),
                "config.json mounts: holds a mount without a string destination",
            ),
        ];
        for (s, want) in cases {
            let msg = err(&s);
            assert!(
                msg.contains(want) && msg.contains("; write it as the OCI runtime spec says"),
                "{msg}"
            );
        }
        // null fields are absent fields.
        assert!(ok(&json!({"process": null, "annotations": null, "mounts": null})).is_noop());
    }

    #[test]
    fn annotations_cdi_and_migcage() {
        use DeviceSelector::*;
        let cases: Vec<(Vec<(&str, String)>, Devices)> = vec![
            (
                vec![("cdi.k8s.io/x", format!("nvidia.com/gpu={MIG0}"))],
                selected(&[MigUuid(MIG0.into())]),
            ),
            (
                vec![("cdi.k8s.io/x", "nvidia.com/gpu=0".into())],
                selected(&[GpuIndex(0)]),
            ),
            (
                vec![("cdi.k8s.io/x", "nvidia.com/mig=1:2".into())],
                selected(&[MigIndex { gpu: 1, mig: 2 }]),
            ),
            (
                vec![("cdi.k8s.io/x", "migcage.io/gpu=all".into())],
                selected(&[All]),
            ),
            (
                vec![(
                    "cdi.k8s.io/x",
                    format!("k8s.device-plugin.nvidia.com/gpu={GPU0}"),
                )],
                selected(&[GpuUuid(GPU0.into())]),
            ),
            (
                vec![(
                    "cdi.k8s.io/x",
                    format!(" vendor.com/fpga=0 , nvidia.com/gpu={MIG0},nvidia.com/gpu=0:1 "),
                )],
                selected(&[MigUuid(MIG0.into()), MigIndex { gpu: 0, mig: 1 }]),
            ),
            // Two CDI annotations add up; the same device in both counts once.
            (
                vec![
                    ("cdi.k8s.io/a", "nvidia.com/gpu=0:0".into()),
                    (
                        "cdi.k8s.io/b",
                        "nvidia.com/gpu=0:1,nvidia.com/gpu=0:0".into(),
                    ),
                ],
                selected(&[MigIndex { gpu: 0, mig: 0 }, MigIndex { gpu: 0, mig: 1 }]),
            ),
            (
                vec![("migcage.io/devices", "0:1".into())],
                selected(&[MigIndex { gpu: 0, mig: 1 }]),
            ),
            (
                vec![("migcage.io/devices", "none".into())],
                Devices::DriverOnly,
            ),
            (
                vec![("migcage.io/devices", "void".into())],
                Devices::Untouched,
            ),
            (
                vec![("migcage.io/profile", "1g.5gb".into())],
                selected(&[profile(None, "1g.5gb", 1)]),
            ),
            (
                vec![("migcage.io/profile", "1g.5gb*2".into())],
                selected(&[profile(None, "1g.5gb", 2)]),
            ),
            (
                vec![("migcage.io/profile", "0/1g.5gb".into())],
                selected(&[profile(Some(0), "1g.5gb", 1)]),
            ),
            (
                vec![
                    ("migcage.io/devices", "0:1".into()),
                    ("migcage.io/profile", "2g.10gb".into()),
                ],
                selected(&[MigIndex { gpu: 0, mig: 1 }, profile(None, "2g.10gb", 1)]),
            ),
            // Only other vendors' devices, or unrelated annotations: nothing.
            (
                vec![("cdi.k8s.io/x", "vendor.com/fpga=0".into())],
                Devices::Untouched,
            ),
            (
                vec![("io.kubernetes.cri.container-type", "container".into())],
                Devices::Untouched,
            ),
            (vec![("nvidia.com/gpu", "0".into())], Devices::Untouched),
        ];
        for (ann, want) in cases {
            let a: Vec<(&str, &str)> = ann.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let r = ok(&spec(&[], &a, &[], false));
            assert_eq!(r.devices, want, "{ann:?}");
            if want != Devices::Untouched {
                assert!(r.sources.iter().all(|s| matches!(
                    s,
                    Source::CdiAnnotation { .. } | Source::MigcageAnnotation { .. }
                )));
                assert!(!r.sources.is_empty());
            }
        }
        // Other classes of NVIDIA's vendors are noted, not ours.
        let r = ok(&spec(
            &[],
            &[("cdi.k8s.io/x", "nvidia.com/gds=all,nvidia.com/gpu=0")],
            &[],
            false,
        ));
        assert_eq!(r.devices, selected(&[GpuIndex(0)]));
        assert!(
            r.notes
                .iter()
                .any(|n| n.contains("\"nvidia.com/gds=all\"") && n.contains("class \"gds\"")),
            "{:?}",
            r.notes
        );
        let r = ok(&spec(
            &[],
            &[
                ("cdi.k8s.io/a", "nvidia.com/gpu=0"),
                ("cdi.k8s.io/b", "nvidia.com/gpu=0"),
            ],
            &[],
            false,
        ));
        assert_eq!(
            r.sources,
            vec![
                Source::CdiAnnotation {
                    key: "cdi.k8s.io/a".into()
                },
                Source::CdiAnnotation {
                    key: "cdi.k8s.io/b".into()
                }
            ]
        );
        assert!(r.notes.iter().any(|n| n.contains("counted once")));
        // devices=none next to a profile contradicts itself.
        let msg = err(&spec(
            &[],
            &[
                ("migcage.io/devices", "none"),
                ("migcage.io/profile", "1g.5gb"),
            ],
            &[],
            false,
        ));
        assert!(msg.contains(r#"annotation migcage.io/devices="none" and annotation migcage.io/profile="1g.5gb" name different devices"#), "{msg}");
        let msg = err(&spec(
            &[],
            &[
                ("migcage.io/devices", "all"),
                ("migcage.io/profile", "1g.5gb"),
            ],
            &[],
            false,
        ));
        assert!(msg.contains(r#""all" cannot be combined"#), "{msg}");
        let msg = err(&spec(
            &[],
            &[
                ("migcage.io/devices", "profile:1g.5gb"),
                ("migcage.io/profile", "1g.5gb*3"),
            ],
            &[],
            false,
        ));
        assert!(msg.contains("ask for the same profile twice"), "{msg}");
    }

    #[test]
    fn volume_mounts() {
        use DeviceSelector::*;
        let dir = DEVICE_LIST_DIR;
        let cases: Vec<(Vec<String>, Devices)> = vec![
            (
                vec![format!("{dir}/{MIG0}")],
                selected(&[MigUuid(MIG0.into())]),
            ),
            (
                vec![format!("/run/nvidia-container-devices/{MIG0}/")],
                selected(&[MigUuid(MIG0.into())]),
            ),
            (
                vec![format!("{dir}/0:1"), format!("{dir}/1")],
                selected(&[MigIndex { gpu: 0, mig: 1 }, GpuIndex(1)]),
            ),
            (vec![format!("{dir}/all")], selected(&[All])),
            (
                vec![format!("{dir}/0"), format!("{dir}/0")],
                selected(&[GpuIndex(0)]),
            ),
            // The directory itself, or a look-alike, is not a device.
            (vec![dir.into(), format!("{dir}/")], Devices::Untouched),
            (
                vec![
                    format!("{dir}-x/0"),
                    "/var/run/nvidia-container-devicesX".into(),
                ],
                Devices::Untouched,
            ),
        ];
        for (mounts, want) in cases {
            let m: Vec<&str> = mounts.iter().map(String::as_str).collect();
            let r = ok(&spec(&[], &[], &m, false));
            assert_eq!(r.devices, want, "{mounts:?}");
            let want_sources = if want == Devices::Untouched {
                vec![]
            } else {
                vec![Source::VolumeMounts]
            };
            assert_eq!(r.sources, want_sources);
        }
        // The marker plus mounts: the mounts are the list; the marker is no source of its own.
        let r = ok(&spec(
            &["NVIDIA_VISIBLE_DEVICES=/var/run/nvidia-container-devices"],
            &[],
            &[&format!("{dir}/0:0")],
            false,
        ));
        assert_eq!(r.devices, selected(&[MigIndex { gpu: 0, mig: 0 }]));
        assert_eq!(r.sources, vec![Source::VolumeMounts]);
    }

    fn policy(
        accept_env: bool,
        env_privileged_only: bool,
        accept_annotations: bool,
        accept_volume_mounts: bool,
    ) -> RequestPolicy {
        RequestPolicy {
            accept_env,
            env_privileged_only,
            accept_annotations,
            accept_volume_mounts,
        }
    }

    #[test]
    fn policy_decides_which_sources_count() {
        let mount = format!("{DEVICE_LIST_DIR}/0:2");
        let full = spec(
            &["NVIDIA_VISIBLE_DEVICES=0:1"],
            &[("cdi.k8s.io/x", "nvidia.com/gpu=0:3")],
            &[&mount],
            false,
        );
        let mig = |g, m| selected(&[DeviceSelector::MigIndex { gpu: g, mig: m }]);
        // (policy, expected devices, expected note fragments)
        let cases: Vec<(RequestPolicy, Devices, Vec<&str>)> = vec![
            (
                policy(true, false, false, false),
                mig(0, 1),
                vec!["accept_annotations = false", "accept_volume_mounts = false"],
            ),
            (
                policy(false, false, true, false),
                mig(0, 3),
                vec!["accept_env = false", "accept_volume_mounts = false"],
            ),
            (
                policy(false, false, false, true),
                mig(0, 2),
                vec!["accept_env = false", "accept_annotations = false"],
            ),
            (
                policy(true, true, false, false),
                Devices::Untouched,
                vec!["not privileged", "env_privileged_only = true"],
            ),
            (
                policy(false, false, false, false),
                Devices::Untouched,
                vec!["accept_env = false"],
            ),
        ];
        for (p, want, notes) in cases {
            let r = parse(&full, &p).unwrap_or_else(|e| panic!("{p:?}: {e}"));
            assert_eq!(r.devices, want, "{p:?}");
            for n in notes {
                assert!(
                    r.notes.iter().any(|x| x.contains(n)),
                    "{p:?}: no note {n:?} in {:?}",
                    r.notes
                );
            }
        }
        // Everything accepted: three different lists conflict.
        let msg = parse(&full, &RequestPolicy::default())
            .unwrap_err()
            .to_string();
        assert!(msg.contains("name different devices"), "{msg}");

        // env_privileged_only: honoured for a privileged container, ignored otherwise.
        let p = policy(true, true, true, true);
        let vars = ["NVIDIA_VISIBLE_DEVICES=0:1"];
        assert_eq!(
            parse(&spec(&vars, &[], &[], true), &p).unwrap().devices,
            mig(0, 1)
        );
        let r = parse(&spec(&vars, &[], &[], false), &p).unwrap();
        assert!(r.is_noop());
        assert_eq!(r.notes.len(), 1);
        assert!(
            r.notes[0].starts_with("NVIDIA_VISIBLE_DEVICES=\"0:1\" ignored"),
            "{:?}",
            r.notes
        );
        // An ignored variable is not even parsed.
        assert!(parse(
            &spec(&["NVIDIA_VISIBLE_DEVICES=garbage"], &[], &[], false),
            &p
        )
        .unwrap()
        .is_noop());
        // ... and the device plugin's list still counts for that container.
        let r = parse(
            &spec(&vars, &[("cdi.k8s.io/x", "nvidia.com/gpu=0:3")], &[], false),
            &p,
        )
        .unwrap();
        assert_eq!(r.devices, mig(0, 3));

        // MIG config with the environment not accepted: noted, not granted.
        let r = parse(
            &spec(
                &["NVIDIA_MIG_CONFIG_DEVICES=all"],
                &[("migcage.io/devices", "0:0")],
                &[],
                true,
            ),
            &policy(false, false, true, true),
        )
        .unwrap();
        assert_eq!(r.mig_config, None);
        assert!(r
            .notes
            .iter()
            .any(|n| n.starts_with("NVIDIA_MIG_CONFIG_DEVICES ignored")));

        // The marker with mounts not accepted: noted, nothing.
        let r = parse(
            &spec(
                &["NVIDIA_VISIBLE_DEVICES=/var/run/nvidia-container-devices"],
                &[],
                &[&mount],
                false,
            ),
            &policy(true, false, true, false),
        )
        .unwrap();
        assert!(r.is_noop());
        assert!(
            r.notes.iter().any(|n| n.contains("points at mounts")),
            "{:?}",
            r.notes
        );
    }

    #[test]
    fn lists_in_different_words_are_left_for_the_plan_to_compare() {
        let r = ok(&spec(
            &[&format!("NVIDIA_VISIBLE_DEVICES={MIG0}")],
            &[("migcage.io/devices", "0:1")],
            &[],
            false,
        ));
        let labels: Vec<&str> = r.must_agree.iter().map(|s| s.label.as_str()).collect();
        assert_eq!(
            labels,
            ["annotation migcage.io/devices", "NVIDIA_VISIBLE_DEVICES"]
        );
        assert_eq!(r.must_agree[1].value, MIG0);
        // Sources that agree word for word need no check.
        let r = ok(&spec(
            &["NVIDIA_VISIBLE_DEVICES=0:1"],
            &[("migcage.io/devices", "0:1")],
            &[],
            false,
        ));
        assert!(r.must_agree.is_empty());
    }

    #[test]
    fn conflicts_name_both_sources_and_values() {
        let cases: Vec<(Value, Vec<&str>)> = vec![
            (
                spec(
                    &["NVIDIA_VISIBLE_DEVICES=0:1"],
                    &[("cdi.k8s.io/k", "nvidia.com/gpu=0:2")],
                    &[],
                    false,
                ),
                vec![
                    r#"annotation cdi.k8s.io/k="nvidia.com/gpu=0:2" and NVIDIA_VISIBLE_DEVICES="0:1" name different devices; remove one of them"#,
                ],
            ),
            (
                spec(
                    &["NVIDIA_VISIBLE_DEVICES=none"],
                    &[("cdi.k8s.io/k", "nvidia.com/gpu=0:2")],
                    &[],
                    false,
                ),
                vec![
                    r#"NVIDIA_VISIBLE_DEVICES="none""#,
                    "annotation cdi.k8s.io/k",
                ],
            ),
            (
                spec(
                    &[],
                    &[("cdi.k8s.io/k", "nvidia.com/gpu=0:2")],
                    &["/var/run/nvidia-container-devices/0:1"],
                    false,
                ),
                vec![
                    r#"mounts under /var/run/nvidia-container-devices="0:1" and annotation cdi.k8s.io/k="nvidia.com/gpu=0:2""#,
                ],
            ),
            (
                spec(
                    &[],
                    &[
                        ("cdi.k8s.io/k", "nvidia.com/gpu=0:2"),
                        ("migcage.io/devices", "0:1"),
                    ],
                    &[],
                    false,
                ),
                vec![
                    r#"annotation cdi.k8s.io/k="nvidia.com/gpu=0:2" and annotation migcage.io/devices="0:1""#,
                ],
            ),
            (
                spec(
                    &["NVIDIA_VISIBLE_DEVICES=0:1,0:2"],
                    &[("migcage.io/devices", "0:1")],
                    &[],
                    false,
                ),
                vec![r#"NVIDIA_VISIBLE_DEVICES="0:1,0:2""#],
            ),
        ];
        for (s, parts) in cases {
            let msg = err(&s);
            for p in parts {
                assert!(msg.contains(p), "{msg:?} lacks {p:?}");
            }
        }
        // Sources that agree (in any order, any spelling of the same list) are fine and all recorded.
        let r = ok(&spec(
            &["NVIDIA_VISIBLE_DEVICES=0:2, 0:1"],
            &[("cdi.k8s.io/k", "nvidia.com/gpu=0:1,nvidia.com/mig=0:2")],
            &[],
            false,
        ));
        assert_eq!(
            r.sources,
            vec![
                Source::CdiAnnotation {
                    key: "cdi.k8s.io/k".into()
                },
                Source::Env
            ]
        );
        assert_eq!(
            r.devices,
            selected(&[
                DeviceSelector::MigIndex { gpu: 0, mig: 1 },
                DeviceSelector::MigIndex { gpu: 0, mig: 2 }
            ])
        );
    }

    #[test]
    fn cuda_image_all_gives_way_to_the_kubelet() {
        for (ann, mounts) in [
            (
                vec![("cdi.k8s.io/k", format!("nvidia.com/gpu={MIG0}"))],
                vec![],
            ),
            (vec![], vec![format!("{DEVICE_LIST_DIR}/{MIG0}")]),
            (vec![("migcage.io/devices", MIG0.to_string())], vec![]),
        ] {
            let a: Vec<(&str, &str)> = ann.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let m: Vec<&str> = mounts.iter().map(String::as_str).collect();
            let r = ok(&spec(&["NVIDIA_VISIBLE_DEVICES=all"], &a, &m, false));
            assert_eq!(r.devices, selected(&[DeviceSelector::MigUuid(MIG0.into())]));
            assert!(!r.sources.contains(&Source::Env));
            assert!(
                r.notes
                    .iter()
                    .any(|n| n.contains("nvidia/cuda base images")),
                "{:?}",
                r.notes
            );
        }
        // `all` alone is honoured; `all` against `all` agrees.
        assert_eq!(
            ok(&env(&["NVIDIA_VISIBLE_DEVICES=all"])).devices,
            selected(&[DeviceSelector::All])
        );
        let r = ok(&spec(
            &["NVIDIA_VISIBLE_DEVICES=all"],
            &[("cdi.k8s.io/k", "nvidia.com/gpu=all")],
            &[],
            false,
        ));
        assert_eq!(r.devices, selected(&[DeviceSelector::All]));
        // The exception is for `all` only: an explicit env list still conflicts.
        assert!(err(&spec(
            &["NVIDIA_VISIBLE_DEVICES=0"],
            &[("cdi.k8s.io/k", "nvidia.com/gpu=1")],
            &[],
            false
        ))
        .contains("name different devices"));
    }

    #[test]
    fn privileged_is_cap_sys_admin_in_the_bounding_set() {
        assert!(ok(&spec(&[], &[], &[], true)).privileged);
        assert!(!ok(&spec(&[], &[], &[], false)).privileged);
        // Effective or permitted alone do not count; the bounding set is what the process can ever get.
        let s = json!({"process": {"capabilities": {"effective": ["CAP_SYS_ADMIN"], "permitted": ["CAP_SYS_ADMIN"], "bounding": ["CAP_KILL"]}}});
        assert!(!ok(&s).privileged);
        assert!(!ok(&json!({"process": {"args": ["sh"]}})).privileged);
        assert!(
            !ok(
                &json!({"process": {"capabilities": {"bounding": ["cap_sys_admin", "SYS_ADMIN"]}}})
            )
            .privileged
        );
    }

    #[test]
    fn mig_config_and_monitor() {
        use DeviceSelector::*;
        let r = ok(&spec(
            &[
                "NVIDIA_VISIBLE_DEVICES=0",
                "NVIDIA_MIG_CONFIG_DEVICES=all",
                &format!("NVIDIA_MIG_MONITOR_DEVICES=0, {GPU0}"),
            ],
            &[],
            &[],
            true,
        ));
        assert_eq!(r.mig_config, Some(vec![All]));
        assert_eq!(r.mig_monitor, Some(vec![GpuIndex(0), GpuUuid(GPU0.into())]));
        // Empty is unset, also for an unprivileged container.
        let r = ok(&env(&[
            "NVIDIA_VISIBLE_DEVICES=0",
            "NVIDIA_MIG_CONFIG_DEVICES=",
            "NVIDIA_MIG_MONITOR_DEVICES= ",
        ]));
        assert_eq!((r.mig_config, r.mig_monitor), (None, None));
        // `none` devices still carries MIG monitor for a privileged container.
        let r = ok(&spec(
            &[
                "NVIDIA_VISIBLE_DEVICES=none",
                "NVIDIA_MIG_MONITOR_DEVICES=1",
            ],
            &[],
            &[],
            true,
        ));
        assert_eq!(r.devices, Devices::DriverOnly);
        assert_eq!(r.mig_monitor, Some(vec![GpuIndex(1)]));
    }

    #[test]
    fn driver_capabilities() {
        type C = DriverCapabilities;
        let cases = [
            (None, C::DEFAULT),
            (Some(""), C::DEFAULT),
            (Some("  "), C::DEFAULT),
            (Some("compute"), C::COMPUTE),
            (Some("utility, video"), C::UTILITY | C::VIDEO),
            (
                Some("graphics,display,ngx,compat32"),
                C::GRAPHICS | C::DISPLAY | C::NGX | C::COMPAT32,
            ),
            (Some("all"), C::ALL),
            (Some("compute,all"), C::ALL),
            (Some("compute,compute"), C::COMPUTE),
        ];
        for (value, want) in cases {
            let mut vars = vec!["NVIDIA_VISIBLE_DEVICES=none".to_string()];
            if let Some(v) = value {
                vars.push(format!("NVIDIA_DRIVER_CAPABILITIES={v}"));
            }
            let vars: Vec<&str> = vars.iter().map(String::as_str).collect();
            assert_eq!(ok(&env(&vars)).driver_capabilities, want, "{value:?}");
        }
        assert_eq!(C::DEFAULT.to_string(), "compute,utility");
        assert_eq!(C::ALL.names().len(), 7);
        assert!(C::ALL.contains(C::NGX) && !C::DEFAULT.contains(C::VIDEO) && C::empty().is_empty());
        assert_eq!(
            serde_json::to_value(C::UTILITY | C::COMPUTE).unwrap(),
            json!(["compute", "utility"])
        );
        assert_eq!(format!("{:?}", C::VIDEO), "DriverCapabilities(video)");
    }

    #[test]
    fn request_serializes_for_explain() {
        let r = ok(&spec(
            &["NVIDIA_VISIBLE_DEVICES=all"],
            &[("cdi.k8s.io/k", &format!("nvidia.com/gpu={MIG0}"))],
            &[],
            false,
        ));
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(
            v["devices"],
            json!({"kind": "selected", "selectors": [MIG0]})
        );
        assert_eq!(
            v["sources"],
            json!([{"kind": "cdi_annotation", "key": "cdi.k8s.io/k"}])
        );
        assert_eq!(v["driver_capabilities"], json!(["compute", "utility"]));
        assert_eq!(v["privileged"], json!(false));
        assert_eq!(v["notes"].as_array().unwrap().len(), 1);
        let v = serde_json::to_value(ok(&env(&["NVIDIA_VISIBLE_DEVICES=none"]))).unwrap();
        assert_eq!(v["devices"], json!({"kind": "driver_only"}));
        assert_eq!(v["sources"], json!([{"kind": "env"}]));
        assert_eq!(
            Source::VolumeMounts.to_string(),
            "mounts under /var/run/nvidia-container-devices"
        );
    }

    const K8S_MIG: &str = "MIG-5c89852c-d268-c3f3-1b07-005d5ae1dc3f";

    fn fixture(text: &str) -> Value {
        let v: Value = serde_json::from_str(text).unwrap();
        // The fixtures are real-shaped: oci-spec reads them as runtime specs.
        serde_json::from_value::<oci_spec::runtime::Spec>(v.clone()).unwrap();
        v
    }

    #[test]
    fn k8s_device_plugin_envvar_strategy() {
        let s = fixture(include_str!("../../../tests/fixtures/k8s/envvar.json"));
        let r = ok(&s);
        assert_eq!(
            r.devices,
            selected(&[DeviceSelector::MigUuid(K8S_MIG.into())])
        );
        assert_eq!(r.sources, vec![Source::Env]);
        assert_eq!(r.driver_capabilities, DriverCapabilities::DEFAULT);
        assert!(!r.privileged);
        assert!(r.notes.is_empty(), "{:?}", r.notes);
        // A secure cluster that honours the environment only for privileged containers gives this
        // pod nothing.
        let r = parse(&s, &policy(true, true, true, true)).unwrap();
        assert!(r.is_noop());
    }

    #[test]
    fn k8s_device_plugin_volume_mounts_strategy() {
        let s = fixture(include_str!(
            "../../../tests/fixtures/k8s/volume-mounts.json"
        ));
        for p in [
            RequestPolicy::default(),
            policy(false, false, false, true),
            policy(true, true, false, true),
        ] {
            let r = parse(&s, &p).unwrap();
            assert_eq!(
                r.devices,
                selected(&[DeviceSelector::MigUuid(K8S_MIG.into())]),
                "{p:?}"
            );
            assert_eq!(r.sources, vec![Source::VolumeMounts]);
        }
        // Mounts not accepted: the env var only points at them, so nothing.
        let r = parse(&s, &policy(true, false, true, false)).unwrap();
        assert!(r.is_noop());
    }

    #[test]
    fn k8s_device_plugin_cdi_annotations_strategy() {
        let s = fixture(include_str!(
            "../../../tests/fixtures/k8s/cdi-annotations.json"
        ));
        let r = ok(&s);
        assert_eq!(
            r.devices,
            selected(&[DeviceSelector::MigUuid(K8S_MIG.into())])
        );
        assert_eq!(
            r.sources,
            vec![Source::CdiAnnotation {
                key: "cdi.k8s.io/nvidia-device-plugin_2b9d4f61-7c3e-4a85-9f0d-6e1a2b3c4d5e".into()
            }]
        );
        // The image's baked-in NVIDIA_VISIBLE_DEVICES=all gave way, and says so.
        assert_eq!(r.notes.len(), 1, "{:?}", r.notes);
        assert!(r.notes[0].contains("nvidia/cuda base images"));
        // Without annotations accepted, the image default is all that is left.
        let r = parse(&s, &policy(true, false, false, true)).unwrap();
        assert_eq!(r.devices, selected(&[DeviceSelector::All]));
    }
}
