//! The device-name grammar: one [`DeviceSelector`] and the comma lists of them, in each
//! source's syntax.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::errors::shown;
use super::{
    Devices, DEVICES_ANNOTATION, MAX_INDEX, MAX_PROFILE_COUNT, PROFILE_ANNOTATION, VISIBLE_DEVICES,
};

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

/// Which item syntax a value is parsed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Syntax {
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
    pub(super) fn hint(self) -> &'static str {
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
    let core = crate::core::inventory::gpu_instance_profile(core);
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
pub(super) fn parse_id(id: &str, syntax: Syntax) -> Result<DeviceSelector, String> {
    match parse_item(id, syntax)? {
        Item::Device(d) => Ok(d),
        Item::NoDevices | Item::Void => Err(format!("{} is not a device", shown(id))),
    }
}

/// A comma list. Empty (after trimming) is [`Devices::Untouched`].
pub(super) fn parse_list(value: &str, syntax: Syntax) -> Result<Devices, String> {
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
pub(super) fn same_device(a: &DeviceSelector, b: &DeviceSelector) -> bool {
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

pub(super) fn duplicate_problem(prev: &DeviceSelector, d: &DeviceSelector) -> String {
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
