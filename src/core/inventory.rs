//! The inventory as data: one host's GPUs, MIG devices, device majors and caps minors, as
//! migcage sees them. [`crate::host::inventory`] discovers it (NVML, procfs, the snapshot); the
//! plan works on it.

use serde::{Deserialize, Serialize};

/// One host's GPUs as migcage sees them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    /// Driver version, `550.54.15`, from /proc/driver/nvidia/version (checked against NVML).
    pub driver_version: String,
    /// CUDA driver version as NVML encodes it (12040 = 12.4).
    pub cuda_driver_version: i32,
    pub majors: Majors,
    /// GPUs in NVML index order.
    pub gpus: Vec<Gpu>,
    /// Caps minors of `mig/config` and `mig/monitor`, when the driver has them.
    pub mig_config_minor: Option<u32>,
    pub mig_monitor_minor: Option<u32>,
}

/// Character device majors from /proc/devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Majors {
    /// `nvidia-frontend` (195): /dev/nvidia<minor>, /dev/nvidiactl (255), /dev/nvidia-modeset (254).
    pub frontend: u32,
    /// `nvidia-uvm`: /dev/nvidia-uvm (0) and /dev/nvidia-uvm-tools (1).
    pub uvm: Option<u32>,
    /// `nvidia-caps`: /dev/nvidia-caps/nvidia-cap<minor>.
    pub caps: Option<u32>,
}

/// A physical GPU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gpu {
    /// NVML index.
    pub index: u32,
    /// Device minor: /dev/nvidia<minor>, and the `gpu<minor>` of the caps paths.
    pub minor: u32,
    /// `GPU-...`
    pub uuid: String,
    pub name: String,
    /// NVML form, `00000000:07:00.0`.
    pub pci_bus_id: String,
    /// Current MIG mode.
    pub mig_enabled: bool,
    pub memory_mib: u64,
    /// MIG devices in NVML order (empty when MIG is off).
    pub mig_devices: Vec<MigDevice>,
}

/// A MIG device (one compute instance of one GPU instance).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigDevice {
    /// Index among its GPU's MIG devices (the `1` of `0:1`).
    pub index: u32,
    /// NVML index of the parent GPU.
    pub gpu_index: u32,
    /// `MIG-...`
    pub uuid: String,
    pub gpu_instance_id: u32,
    pub compute_instance_id: u32,
    /// Profile as nvidia-smi prints it, `1g.5gb`.
    pub profile: String,
    pub memory_mib: u64,
    /// Caps minor of `gpu<minor>/gi<G>/access`.
    pub gi_caps_minor: u32,
    /// Caps minor of `gpu<minor>/gi<G>/ci<C>/access`.
    pub ci_caps_minor: u32,
}

/// The GPU instance profile that a MIG profile name belongs to: a compute instance's profile
/// (`1c.3g.20gb`, nvidia-smi's form) names its GPU instance's after the `<n>c.` prefix; a GPU
/// instance's own (`3g.20gb`) is itself.
pub fn gpu_instance_profile(profile: &str) -> &str {
    match profile.split_once("c.") {
        Some((n, rest)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => rest,
        _ => profile,
    }
}

impl MigDevice {
    /// See [`gpu_instance_profile`].
    pub fn gpu_instance_profile(&self) -> &str {
        gpu_instance_profile(&self.profile)
    }
}

impl Gpu {
    /// `/proc/driver/nvidia/gpus/<dir>`: the bus id with a 4-digit domain, lower case.
    pub fn proc_bus_id(&self) -> String {
        migcage_topology::proc_bus_id(&self.pci_bus_id)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_compute_instance_profile_names_its_gpu_instances() {
        use super::gpu_instance_profile as gi;
        assert_eq!(gi("1c.3g.20gb"), "3g.20gb");
        assert_eq!(gi("3g.20gb"), "3g.20gb");
        assert_eq!(gi("1g.10gb+me"), "1g.10gb+me");
        assert_eq!(gi("c.3g.20gb"), "c.3g.20gb");
    }
}
