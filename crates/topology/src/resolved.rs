//! A resolved topology (every field filled in and checked), its MIG devices in NVML order, and
//! its way back to the file form.

use crate::file::{
    ComputeInstanceFile, Faults, GpuFile, GpuInstanceFile, Majors, TopologyFile, Visibility,
};
use crate::models::{GiProfile, Model};
use crate::naming::proc_bus_id;

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
    pub sim_root: Option<String>,
    pub serial: u64,
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
    /// First compute slice within its GPU instance.
    pub placement_start: u32,
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
                                        placement_start: Some(ci.placement_start),
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
            sim_root: self.sim_root.clone(),
            serial: self.serial,
        }
    }

    /// The container's copy of the topology as `migcage simulate` writes it (see
    /// [`Topology::for_container`]), with a header saying what it is.
    pub fn container_toml(&self, container_name: &str) -> String {
        format!(
            "# migcage simulate: the topology the simulated NVML reads inside a container\n\
             # (mounted there as {container_name}); a real driver has no such file.\n{}",
            self.for_container().to_toml()
        )
    }

    /// The topology as TOML, every default written out.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(&self.to_file()).expect("a topology always serializes")
    }
}
