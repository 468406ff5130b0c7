//! The topology of a simulated MIG host: which GPUs it has, which are in MIG mode, which GPU and
//! compute instances exist, and which faults to inject.
//!
//! One file format (TOML, or JSON when the file name ends in `.json`) read by both the simulated
//! NVML library and `migcage simulate`, so the two can never disagree. Fields a person rarely
//! cares about (UUIDs, instance ids, placements, minors) may be left out and are then filled in
//! deterministically: the same topology always yields the same UUIDs.

pub mod models;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Serialize};

pub use models::{GiProfile, Model};

/// Default character device majors the simulator uses for the dynamically numbered drivers.
pub const DEFAULT_UVM_MAJOR: u32 = 510;
pub const DEFAULT_CAPS_MAJOR: u32 = 509;
/// The nvidia frontend major is fixed by the driver.
pub const FRONTEND_MAJOR: u32 = 195;

/// Caps minors of `/proc/driver/nvidia-caps/mig-minors`.
pub const MIG_CONFIG_MINOR: u32 = 1;
pub const MIG_MONITOR_MINOR: u32 = 2;
/// The driver reserves this many GPUs, GPU instances per GPU and compute instances per GPU
/// instance in mig-minors.
pub const MAX_GPUS: u32 = 32;
pub const MAX_GPU_INSTANCES: u32 = 15;
pub const MAX_COMPUTE_INSTANCES: u32 = 8;

/// Caps minor of `gpu<gpu_minor>/gi<gi>/access`.
pub fn gi_access_minor(gpu_minor: u32, gi: u32) -> u32 {
    3 + gpu_minor * MAX_GPU_INSTANCES * (1 + MAX_COMPUTE_INSTANCES)
        + gi * (1 + MAX_COMPUTE_INSTANCES)
}

/// Caps minor of `gpu<gpu_minor>/gi<gi>/ci<ci>/access`.
pub fn ci_access_minor(gpu_minor: u32, gi: u32, ci: u32) -> u32 {
    gi_access_minor(gpu_minor, gi) + 1 + ci
}

/// The whole text of `/proc/driver/nvidia-caps/mig-minors` as the driver writes it.
pub fn mig_minors_file() -> String {
    let mut s = String::with_capacity(128 * 1024);
    s.push_str(&format!(
        "config {MIG_CONFIG_MINOR}\nmonitor {MIG_MONITOR_MINOR}\n"
    ));
    for g in 0..MAX_GPUS {
        for gi in 0..MAX_GPU_INSTANCES {
            s.push_str(&format!(
                "gpu{g}/gi{gi}/access {}\n",
                gi_access_minor(g, gi)
            ));
            for ci in 0..MAX_COMPUTE_INSTANCES {
                s.push_str(&format!(
                    "gpu{g}/gi{gi}/ci{ci}/access {}\n",
                    ci_access_minor(g, gi, ci)
                ));
            }
        }
    }
    s
}

/// An error in a topology file.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    #[error("cannot read topology file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("topology file {path}: {message}")]
    Parse { path: String, message: String },
    #[error("topology {name}: {message}")]
    Invalid { name: String, message: String },
    #[error("unknown topology {0:?}: give a file path or one of {names}", names = builtin_names().join(", "))]
    UnknownBuiltin(String),
}

/// What a topology file says, before defaults are filled in.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TopologyFile {
    pub name: String,
    #[serde(default = "default_driver_version")]
    pub driver_version: String,
    /// CUDA driver version as NVML encodes it (12040 = 12.4).
    #[serde(default = "default_cuda_version")]
    pub cuda_driver_version: i32,
    #[serde(default)]
    pub majors: Option<Majors>,
    pub gpus: Vec<GpuFile>,
    #[serde(default)]
    pub faults: Faults,
    /// Where the simulated library looks for device nodes when it filters what is visible
    /// (see [`Visibility`]). Written by `migcage simulate`.
    #[serde(default)]
    pub dev_root: Option<String>,
    #[serde(default)]
    pub visibility: Visibility,
}

/// Which devices the simulated NVML library reports.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Visibility {
    /// Every device in the topology (a host).
    #[default]
    All,
    /// Only devices whose nodes under `dev_root` can be opened (or fail with ENXIO, which is what
    /// a node with no driver behind it does): the driver's own rule inside a container.
    DeviceNodes,
}

fn default_driver_version() -> String {
    "550.54.15".to_string()
}

fn default_cuda_version() -> i32 {
    12040
}

/// Character device majors.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Majors {
    pub uvm: u32,
    pub caps: u32,
}

impl Default for Majors {
    fn default() -> Self {
        Majors {
            uvm: DEFAULT_UVM_MAJOR,
            caps: DEFAULT_CAPS_MAJOR,
        }
    }
}

/// A GPU as written in a topology file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GpuFile {
    /// Key of [`models::MODELS`], such as `a100-sxm4-40gb`.
    pub model: String,
    #[serde(default)]
    pub uuid: Option<String>,
    /// `/dev/nvidia<minor>`; defaults to the GPU's index.
    #[serde(default)]
    pub minor: Option<u32>,
    /// NVML form, `00000000:07:00.0`; defaults to one derived from the index.
    #[serde(default)]
    pub pci_bus_id: Option<String>,
    #[serde(default)]
    pub mig: bool,
    #[serde(default)]
    pub gpu_instances: Vec<GpuInstanceFile>,
}

/// A GPU instance as written in a topology file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GpuInstanceFile {
    /// GPU instance profile name, such as `1g.5gb`.
    pub profile: String,
    #[serde(default)]
    pub id: Option<u32>,
    #[serde(default)]
    pub placement_start: Option<u32>,
    /// Compute instances; when left out, one compute instance (id 0) spanning the whole GPU
    /// instance, which is what `nvidia-smi mig -cgi ... -C` makes.
    #[serde(default)]
    pub compute_instances: Option<Vec<ComputeInstanceFile>>,
}

/// A compute instance as written in a topology file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ComputeInstanceFile {
    #[serde(default)]
    pub id: Option<u32>,
    /// Compute slices; defaults to the whole GPU instance.
    #[serde(default)]
    pub slices: Option<u32>,
    #[serde(default)]
    pub uuid: Option<String>,
}

/// Failures to inject, for reliability tests.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Faults {
    /// `nvmlInit*` returns this error (an NVML error name such as `DRIVER_NOT_LOADED`).
    #[serde(default)]
    pub init_error: Option<String>,
    /// `nvmlInit*` sleeps this long first.
    #[serde(default)]
    pub init_delay_ms: u64,
    /// Function name -> NVML error name it returns, such as `nvmlDeviceGetUUID = "UNKNOWN"`.
    #[serde(default)]
    pub calls: BTreeMap<String, String>,
    /// NVML indexes of GPUs that have fallen off the bus: every call on them (and on their MIG
    /// devices) returns `GPU_IS_LOST`.
    #[serde(default)]
    pub lost_gpus: Vec<u32>,
}

/// A resolved topology: every field filled in and checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Topology {
    pub name: String,
    pub driver_version: String,
    pub cuda_driver_version: i32,
    pub majors: Majors,
    pub gpus: Vec<Gpu>,
    pub faults: Faults,
    pub dev_root: Option<String>,
    pub visibility: Visibility,
}

/// A GPU of a resolved topology.
#[derive(Debug, Clone, PartialEq)]
pub struct Gpu {
    /// NVML index.
    pub index: u32,
    pub minor: u32,
    pub uuid: String,
    pub model: &'static Model,
    /// NVML form, `00000000:07:00.0`.
    pub pci_bus_id: String,
    pub mig: bool,
    pub gpu_instances: Vec<GpuInstance>,
}

/// A GPU instance of a resolved topology.
#[derive(Debug, Clone, PartialEq)]
pub struct GpuInstance {
    pub id: u32,
    pub profile: &'static GiProfile,
    pub placement_start: u32,
    pub compute_instances: Vec<ComputeInstance>,
}

/// A compute instance, which is what NVML calls a MIG device.
#[derive(Debug, Clone, PartialEq)]
pub struct ComputeInstance {
    pub id: u32,
    pub slices: u32,
    pub uuid: String,
}

/// A MIG device in NVML order, with everything needed to describe it.
#[derive(Debug, Clone, Copy)]
pub struct MigDeviceRef<'a> {
    pub gpu: &'a Gpu,
    pub gi: &'a GpuInstance,
    pub ci: &'a ComputeInstance,
    /// Index among the GPU's MIG devices (`nvmlDeviceGetMigDeviceHandleByIndex`).
    pub index: u32,
}

impl MigDeviceRef<'_> {
    /// Profile name as nvidia-smi prints it: the GI profile, prefixed with the CI slices when the
    /// compute instance is smaller than its GPU instance (`1c.3g.20gb`).
    pub fn profile_name(&self) -> String {
        if self.ci.slices == self.gi.profile.slices {
            self.gi.profile.name.to_string()
        } else {
            format!("{}c.{}", self.ci.slices, self.gi.profile.name)
        }
    }

    /// Device name as NVML reports it.
    pub fn name(&self) -> String {
        format!("{} MIG {}", self.gpu.model.name, self.profile_name())
    }
}

impl Gpu {
    /// The GPU's MIG devices in NVML index order.
    pub fn mig_devices(&self) -> Vec<MigDeviceRef<'_>> {
        let mut out = Vec::new();
        if !self.mig {
            return out;
        }
        for gi in &self.gpu_instances {
            for ci in &gi.compute_instances {
                let index = out.len() as u32;
                out.push(MigDeviceRef {
                    gpu: self,
                    gi,
                    ci,
                    index,
                });
            }
        }
        out
    }

    /// `/proc/driver/nvidia/gpus/<dir>`: the bus id with a 4-digit domain, lower case.
    pub fn proc_bus_id(&self) -> String {
        proc_bus_id(&self.pci_bus_id)
    }
}

/// Convert NVML's `00000000:07:00.0` to the driver's procfs form `0000:07:00.0`.
pub fn proc_bus_id(nvml_bus_id: &str) -> String {
    let lower = nvml_bus_id.to_ascii_lowercase();
    match lower.split_once(':') {
        Some((domain, rest)) if domain.len() > 4 => {
            format!("{}:{rest}", &domain[domain.len() - 4..])
        }
        _ => lower,
    }
}

impl Topology {
    /// Every MIG device of every GPU, GPU by GPU in NVML order.
    pub fn mig_devices(&self) -> Vec<MigDeviceRef<'_>> {
        self.gpus.iter().flat_map(|g| g.mig_devices()).collect()
    }

    /// Serialize back to the file form, with every default written out.
    pub fn to_file(&self) -> TopologyFile {
        TopologyFile {
            name: self.name.clone(),
            driver_version: self.driver_version.clone(),
            cuda_driver_version: self.cuda_driver_version,
            majors: Some(self.majors),
            gpus: self
                .gpus
                .iter()
                .map(|g| GpuFile {
                    model: g.model.key.to_string(),
                    uuid: Some(g.uuid.clone()),
                    minor: Some(g.minor),
                    pci_bus_id: Some(g.pci_bus_id.clone()),
                    mig: g.mig,
                    gpu_instances: g
                        .gpu_instances
                        .iter()
                        .map(|gi| GpuInstanceFile {
                            profile: gi.profile.name.to_string(),
                            id: Some(gi.id),
                            placement_start: Some(gi.placement_start),
                            compute_instances: Some(
                                gi.compute_instances
                                    .iter()
                                    .map(|ci| ComputeInstanceFile {
                                        id: Some(ci.id),
                                        slices: Some(ci.slices),
                                        uuid: Some(ci.uuid.clone()),
                                    })
                                    .collect(),
                            ),
                        })
                        .collect(),
                })
                .collect(),
            faults: self.faults.clone(),
            dev_root: self.dev_root.clone(),
            visibility: self.visibility,
        }
    }

    /// The topology as TOML, every default written out.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(&self.to_file()).expect("a topology always serializes")
    }

    /// Read a topology from a file (TOML, or JSON for `*.json`).
    pub fn from_path(path: &Path) -> Result<Topology, TopologyError> {
        let text = std::fs::read_to_string(path).map_err(|source| TopologyError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let json = path.extension().is_some_and(|e| e == "json");
        Topology::parse(&text, json, &path.display().to_string())
    }

    /// Parse topology text; `origin` names it in errors.
    pub fn parse(text: &str, json: bool, origin: &str) -> Result<Topology, TopologyError> {
        let file: TopologyFile = if json {
            serde_json::from_str(text).map_err(|e| TopologyError::Parse {
                path: origin.to_string(),
                // serde_json quotes an unknown key as it is, control characters and all.
                message: e.to_string().replace('\n', "\\n").replace('\r', "\\r"),
            })?
        } else {
            toml::from_str(text).map_err(|e| TopologyError::Parse {
                path: origin.to_string(),
                // Not lines(): a lone '\r' the error quotes from the file would start a new line.
                message: e
                    .to_string()
                    .split(['\n', '\r'])
                    .collect::<Vec<_>>()
                    .join(" "),
            })?
        };
        file.resolve()
    }

    /// A shipped topology by name, or a file when `name_or_path` is not one.
    pub fn load(name_or_path: &str) -> Result<Topology, TopologyError> {
        if let Some(text) = builtin(name_or_path) {
            return Topology::parse(text, false, &format!("built-in topology {name_or_path}"));
        }
        let path = Path::new(name_or_path);
        if path.exists() || name_or_path.contains('/') || name_or_path.contains('.') {
            return Topology::from_path(path);
        }
        Err(TopologyError::UnknownBuiltin(name_or_path.to_string()))
    }
}

/// GPU instance ids and placements the driver hands out, per slice count, in order.
fn default_gi_slots(slices: u32) -> &'static [(u32, u32)] {
    match slices {
        7 | 8 => &[(0, 0)],
        4 => &[(1, 0)],
        3 => &[(1, 4), (2, 0)],
        2 => &[(3, 4), (4, 2), (5, 0)],
        1 => &[(7, 6), (8, 5), (9, 4), (10, 3), (11, 2), (12, 1), (13, 0)],
        _ => &[],
    }
}

/// A deterministic UUID-shaped string from a seed (not random: topologies are reproducible).
pub fn stable_uuid(prefix: &str, seed: &str) -> String {
    let mut a: u64 = 0xcbf2_9ce4_8422_2325;
    for b in seed.bytes() {
        a ^= u64::from(b);
        a = a.wrapping_mul(0x0100_0000_01b3);
    }
    let mix = |mut z: u64| {
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let hi = mix(a);
    let lo = mix(a ^ 0x9e37_79b9_7f4a_7c15);
    format!(
        "{prefix}-{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        hi >> 32,
        (hi >> 16) & 0xffff,
        hi & 0xffff,
        lo >> 48,
        lo & 0xffff_ffff_ffff
    )
}

fn is_uuid(prefix: &str, s: &str) -> bool {
    let Some(rest) = s.strip_prefix(prefix).and_then(|r| r.strip_prefix('-')) else {
        return false;
    };
    let groups: Vec<&str> = rest.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn is_nvml_bus_id(s: &str) -> bool {
    // dddddddd:bb:dd.f
    let b = s.as_bytes();
    b.len() == 16
        && b[8] == b':'
        && b[11] == b':'
        && b[14] == b'.'
        && s.chars()
            .enumerate()
            .all(|(i, c)| matches!(i, 8 | 11 | 14) || c.is_ascii_hexdigit())
}

impl TopologyFile {
    /// Fill in defaults and check every rule; the error names what is wrong and where.
    pub fn resolve(self) -> Result<Topology, TopologyError> {
        let name = self.name.clone();
        let bad = |message: String| TopologyError::Invalid {
            name: name.clone(),
            message,
        };
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        {
            return Err(bad(format!(
                "name {name:?} must be non-empty letters, digits, '-', '_' or '.'"
            )));
        }
        let dv: Vec<&str> = self.driver_version.split('.').collect();
        if dv.len() < 2
            || !dv
                .iter()
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(bad(format!(
                "driver_version {:?} is not like 550.54.15",
                self.driver_version
            )));
        }
        if self.gpus.is_empty() {
            return Err(bad("has no GPUs: add at least one [[gpus]] table".into()));
        }
        if self.gpus.len() > MAX_GPUS as usize {
            return Err(bad(format!(
                "has {} GPUs, the driver supports at most {MAX_GPUS}",
                self.gpus.len()
            )));
        }
        let majors = self.majors.unwrap_or_default();
        if majors.uvm == FRONTEND_MAJOR
            || majors.caps == FRONTEND_MAJOR
            || majors.uvm == majors.caps
        {
            return Err(bad(format!(
                "majors uvm={} caps={} must differ from each other and from {FRONTEND_MAJOR}",
                majors.uvm, majors.caps
            )));
        }
        let mut uuids = BTreeSet::new();
        let mut minors = BTreeSet::new();
        let mut buses = BTreeSet::new();
        let mut gpus = Vec::new();
        for (index, g) in self.gpus.iter().enumerate() {
            let index = index as u32;
            let at = format!("gpus[{index}]");
            let model = models::model(&g.model).ok_or_else(|| {
                let keys: Vec<&str> = models::MODELS.iter().map(|m| m.key).collect();
                bad(format!(
                    "{at}: unknown model {:?}, known models: {}",
                    g.model,
                    keys.join(", ")
                ))
            })?;
            let uuid = g
                .uuid
                .clone()
                .unwrap_or_else(|| stable_uuid("GPU", &format!("{name}/gpu{index}")));
            if !is_uuid("GPU", &uuid) {
                return Err(bad(format!(
                    "{at}: uuid {uuid:?} is not GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"
                )));
            }
            let minor = g.minor.unwrap_or(index);
            if minor >= MAX_GPUS {
                return Err(bad(format!(
                    "{at}: minor {minor} is out of range 0..{MAX_GPUS}"
                )));
            }
            let pci_bus_id = g
                .pci_bus_id
                .clone()
                .unwrap_or_else(|| format!("00000000:{:02X}:00.0", 0x07 + index * 8));
            if !is_nvml_bus_id(&pci_bus_id) {
                return Err(bad(format!(
                    "{at}: pci_bus_id {pci_bus_id:?} is not like 00000000:07:00.0"
                )));
            }
            if !uuids.insert(uuid.clone())
                || !minors.insert(minor)
                || !buses.insert(pci_bus_id.to_ascii_lowercase())
            {
                return Err(bad(format!(
                    "{at}: uuid, minor or pci_bus_id repeats another GPU's"
                )));
            }
            if !g.mig && !g.gpu_instances.is_empty() {
                return Err(bad(format!(
                    "{at}: has gpu_instances but mig = false; set mig = true or remove them"
                )));
            }
            let mut gis: Vec<GpuInstance> = Vec::new();
            let mut used_slices = 0;
            let mut used_ids = BTreeSet::new();
            let mut used_slots: BTreeMap<u32, usize> = BTreeMap::new();
            for (gi_pos, gf) in g.gpu_instances.iter().enumerate() {
                let at = format!("{at}.gpu_instances[{gi_pos}]");
                let profile = model.gi_profile(&gf.profile).ok_or_else(|| {
                    let names: Vec<&str> = model.gi_profiles.iter().map(|p| p.name).collect();
                    bad(format!(
                        "{at}: profile {:?} does not exist on {}, it has: {}",
                        gf.profile,
                        model.name,
                        names.join(", ")
                    ))
                })?;
                used_slices += profile.slices;
                if used_slices > 7 {
                    return Err(bad(format!(
                        "{at}: {} does not fit, the GPU's 7 compute slices are used up",
                        profile.name
                    )));
                }
                let slot_index = used_slots.entry(profile.slices).or_insert(0);
                let slot = default_gi_slots(profile.slices).get(*slot_index).copied();
                *slot_index += 1;
                let id = match (gf.id, slot) {
                    (Some(id), _) => id,
                    (None, Some((id, _))) => id,
                    (None, None) => {
                        return Err(bad(format!(
                            "{at}: too many {} instances; give ids explicitly",
                            profile.name
                        )))
                    }
                };
                if id >= MAX_GPU_INSTANCES || !used_ids.insert(id) {
                    return Err(bad(format!("{at}: GPU instance id {id} is out of range 0..{MAX_GPU_INSTANCES} or used twice")));
                }
                let placement_start = gf.placement_start.or(slot.map(|s| s.1)).unwrap_or(0);
                let cis_file = gf.compute_instances.clone().unwrap_or_else(|| {
                    vec![ComputeInstanceFile {
                        id: Some(0),
                        slices: None,
                        uuid: None,
                    }]
                });
                if cis_file.is_empty() {
                    return Err(bad(format!("{at}: compute_instances is empty; leave it out for one full compute instance")));
                }
                let mut cis = Vec::new();
                let mut ci_ids = BTreeSet::new();
                let mut ci_slices = 0;
                for (ci_pos, cf) in cis_file.iter().enumerate() {
                    let at = format!("{at}.compute_instances[{ci_pos}]");
                    let id = cf.id.unwrap_or(ci_pos as u32);
                    if id >= MAX_COMPUTE_INSTANCES || !ci_ids.insert(id) {
                        return Err(bad(format!("{at}: compute instance id {id} is out of range 0..{MAX_COMPUTE_INSTANCES} or used twice")));
                    }
                    let slices = cf.slices.unwrap_or(profile.slices);
                    ci_slices += slices;
                    if slices == 0 || ci_slices > profile.slices {
                        return Err(bad(format!(
                            "{at}: compute instances use more than the {} slices of {}",
                            profile.slices, profile.name
                        )));
                    }
                    let uuid = cf.uuid.clone().unwrap_or_else(|| {
                        stable_uuid("MIG", &format!("{name}/gpu{index}/gi{}/ci{id}", gis.len()))
                    });
                    if !is_uuid("MIG", &uuid) || !uuids.insert(uuid.clone()) {
                        return Err(bad(format!("{at}: uuid {uuid:?} is not MIG-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx or repeats another")));
                    }
                    cis.push(ComputeInstance { id, slices, uuid });
                }
                gis.push(GpuInstance {
                    id,
                    profile,
                    placement_start,
                    compute_instances: cis,
                });
            }
            if gis
                .iter()
                .map(|gi| gi.compute_instances.len())
                .sum::<usize>()
                > model.max_mig_devices as usize
            {
                return Err(bad(format!(
                    "{at}: more MIG devices than the {} of a {}",
                    model.max_mig_devices, model.name
                )));
            }
            gpus.push(Gpu {
                index,
                minor,
                uuid,
                model,
                pci_bus_id,
                mig: g.mig,
                gpu_instances: gis,
            });
        }
        for gpu in &self.faults.lost_gpus {
            if *gpu as usize >= gpus.len() {
                return Err(bad(format!(
                    "faults.lost_gpus names GPU {gpu}, which does not exist"
                )));
            }
        }
        Ok(Topology {
            name: self.name,
            driver_version: self.driver_version,
            cuda_driver_version: self.cuda_driver_version,
            majors,
            gpus,
            faults: self.faults,
            dev_root: self.dev_root,
            visibility: self.visibility,
        })
    }
}

const BUILTINS: &[(&str, &str)] = &[
    ("a100-7x1g", include_str!("../topologies/a100-7x1g.toml")),
    ("a100-mixed", include_str!("../topologies/a100-mixed.toml")),
    ("h100-mixed", include_str!("../topologies/h100-mixed.toml")),
    ("dgx-8x7", include_str!("../topologies/dgx-8x7.toml")),
    ("a100-nomig", include_str!("../topologies/a100-nomig.toml")),
    (
        "two-gpus-one-mig",
        include_str!("../topologies/two-gpus-one-mig.toml"),
    ),
];

/// The text of a shipped topology.
pub fn builtin(name: &str) -> Option<&'static str> {
    BUILTINS.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

/// Names of the shipped topologies.
pub fn builtin_names() -> Vec<&'static str> {
    BUILTINS.iter().map(|(n, _)| *n).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `topology` fuzz target: toml quotes the offending line, and a lone carriage
    /// return in it made the message two lines.
    #[test]
    fn a_carriage_return_in_the_file_stays_on_one_line() {
        let e = Topology::parse("\r\0", false, "t.toml")
            .unwrap_err()
            .to_string();
        assert!(!e.contains(['\n', '\r']), "{e:?}");
        assert!(e.starts_with("topology file t.toml: "), "{e:?}");
        // Found by the same target: serde_json quotes an unknown JSON key with its newline.
        let e = Topology::parse("{\"na\\nme\": 1}", true, "t.json")
            .unwrap_err()
            .to_string();
        assert!(!e.contains(['\n', '\r']), "{e:?}");
        assert!(e.contains("na\\nme"), "{e:?}");
    }

    #[test]
    fn every_builtin_resolves() {
        for name in builtin_names() {
            let t = Topology::load(name).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(t.name, name);
        }
    }

    #[test]
    fn builtin_shapes() {
        let t = Topology::load("a100-7x1g").unwrap();
        assert_eq!(t.mig_devices().len(), 7);
        let ids: Vec<u32> = t.gpus[0].gpu_instances.iter().map(|g| g.id).collect();
        assert_eq!(ids, vec![7, 8, 9, 10, 11, 12, 13]);
        let dgx = Topology::load("dgx-8x7").unwrap();
        assert_eq!(dgx.gpus.len(), 8);
        assert_eq!(dgx.mig_devices().len(), 56);
        let uuids: BTreeSet<_> = dgx
            .mig_devices()
            .iter()
            .map(|m| m.ci.uuid.clone())
            .collect();
        assert_eq!(uuids.len(), 56);
        assert!(Topology::load("a100-nomig")
            .unwrap()
            .mig_devices()
            .is_empty());
        let two = Topology::load("two-gpus-one-mig").unwrap();
        assert!(two.gpus[0].mig && !two.gpus[1].mig);
    }

    #[test]
    fn uuids_are_stable_and_well_formed() {
        let a = Topology::load("a100-mixed").unwrap();
        let b = Topology::load("a100-mixed").unwrap();
        assert_eq!(a, b);
        for m in a.mig_devices() {
            assert!(is_uuid("MIG", &m.ci.uuid), "{}", m.ci.uuid);
        }
        assert!(is_uuid("GPU", &a.gpus[0].uuid));
        assert_ne!(stable_uuid("MIG", "x"), stable_uuid("MIG", "y"));
    }

    #[test]
    fn round_trip_through_toml() {
        for name in builtin_names() {
            let t = Topology::load(name).unwrap();
            let again = Topology::parse(&t.to_toml(), false, "round trip").unwrap();
            assert_eq!(t, again, "{name}");
        }
    }

    #[test]
    fn caps_minors_follow_the_driver() {
        assert_eq!(gi_access_minor(0, 0), 3);
        assert_eq!(ci_access_minor(0, 0, 0), 4);
        assert_eq!(gi_access_minor(0, 1), 12);
        assert_eq!(ci_access_minor(0, 1, 0), 13);
        assert_eq!(gi_access_minor(1, 0), 138);
        let text = mig_minors_file();
        assert!(text.starts_with("config 1\nmonitor 2\ngpu0/gi0/access 3\ngpu0/gi0/ci0/access 4\n"));
        assert_eq!(text.lines().count(), 2 + 32 * 15 * 9);
    }

    #[test]
    fn proc_bus_id_form() {
        assert_eq!(proc_bus_id("00000000:07:00.0"), "0000:07:00.0");
        assert_eq!(proc_bus_id("00000000:B7:00.0"), "0000:b7:00.0");
    }

    fn err(text: &str) -> String {
        Topology::parse(text, false, "t.toml")
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn errors_name_what_and_where() {
        assert!(err("name = \"x\"\ngpus = []\n").contains("has no GPUs"));
        assert!(err("name = \"x\"\n[[gpus]]\nmodel = \"rtx\"\n")
            .contains("gpus[0]: unknown model \"rtx\""));
        let e = err("name = \"x\"\n[[gpus]]\nmodel = \"a100-sxm4-40gb\"\nmig = true\ngpu_instances = [{profile = \"9g.99gb\"}]\n");
        assert!(
            e.contains("gpus[0].gpu_instances[0]: profile \"9g.99gb\" does not exist"),
            "{e}"
        );
        let e = err("name = \"x\"\n[[gpus]]\nmodel = \"a100-sxm4-40gb\"\nmig = true\ngpu_instances = [{profile = \"4g.20gb\"}, {profile = \"4g.20gb\"}]\n");
        assert!(e.contains("4g.20gb does not fit"), "{e}");
        let e = err("name = \"x\"\n[[gpus]]\nmodel = \"a100-sxm4-40gb\"\nbogus = 1\n");
        assert!(e.contains("t.toml") && e.contains("bogus"), "{e}");
        let e = err("name = \"x\"\n[[gpus]]\nmodel = \"a100-sxm4-40gb\"\ngpu_instances = [{profile = \"1g.5gb\"}]\n");
        assert!(e.contains("mig = false"), "{e}");
        let e =
            err("name = \"x\"\n[faults]\nlost_gpus = [3]\n[[gpus]]\nmodel = \"a100-sxm4-40gb\"\n");
        assert!(e.contains("lost_gpus names GPU 3"), "{e}");
        assert!(Topology::load("no-such-topology")
            .unwrap_err()
            .to_string()
            .contains("a100-7x1g"));
    }
}
