//! What a topology file says, field by field, before defaults are filled in.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::devices::{DEFAULT_CAPS_MAJOR, DEFAULT_UVM_MAJOR};

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
    /// The root of the simulated driver tree this topology belongs to (written by `migcage
    /// simulate`): where the simulated NVML keeps its MIG state and mirrors changes to it.
    #[serde(default)]
    pub sim_root: Option<String>,
    /// Bumped by every simulated MIG create; seeds the UUIDs of new MIG devices so that a
    /// recreated instance never gets an old UUID.
    #[serde(default)]
    pub serial: u64,
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
    /// Key of [`models::MODELS`](crate::models::MODELS), such as `a100-sxm4-40gb`.
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
    /// instance, which is what `nvidia-smi mig -cgi ... -C` makes; `[]` for none.
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
    /// First compute slice within the GPU instance; defaults to right after the compute
    /// instances listed before it.
    #[serde(default)]
    pub placement_start: Option<u32>,
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
