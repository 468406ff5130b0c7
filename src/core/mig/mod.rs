//! Dynamic MIG, the pure part: mig-parted's configuration format ([`config`]), the layout a
//! GPU has now ([`GpuLayout`]), and the plan that takes it to a declared layout without
//! destroying an instance a container holds ([`plan`]). The side effects live in
//! [`crate::host::mig`]; the command in `admin::mig`.
//!
//! The placement rules are the topology crate's ([`migcage_topology::placement`]), the same
//! code the simulated NVML enforces.

pub mod config;
pub mod demand;
pub mod plan;
#[cfg(test)]
pub(crate) mod testing;

use std::collections::BTreeMap;
use std::fmt;

use migcage_topology::{placement, GiProfile, Model, Placed, Placement};

/// A compute instance as it exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CiState {
    pub id: u32,
    /// The MIG device's UUID (what leases name).
    pub uuid: String,
}

/// A GPU instance as it exists, with who holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GiState {
    pub id: u32,
    pub profile: &'static GiProfile,
    pub start: u32,
    pub compute_instances: Vec<CiState>,
    /// The container holding one of its MIG devices, if any.
    pub held_by: Option<String>,
}

impl GiState {
    pub fn placed(&self) -> Placed {
        Placed {
            profile: self.profile,
            placement: Placement {
                start: self.start,
                size: self.profile.placement_size,
            },
        }
    }
}

/// A GPU's MIG layout now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuLayout {
    /// NVML index.
    pub index: u32,
    pub uuid: String,
    pub model: &'static Model,
    pub mig_enabled: bool,
    pub instances: Vec<GiState>,
}

impl GpuLayout {
    /// How many GPU instances of each profile exist, by profile name.
    pub fn counts(&self) -> BTreeMap<String, u32> {
        let mut out = BTreeMap::new();
        for gi in &self.instances {
            *out.entry(gi.profile.name.to_string()).or_insert(0) += 1;
        }
        out
    }

    /// Today's layout as a mig-parted entry for this GPU alone.
    pub fn to_spec(&self) -> config::DeviceSpec {
        config::DeviceSpec {
            devices: config::Devices::List(vec![self.index]),
            device_filter: None,
            mig_enabled: self.mig_enabled,
            mig_devices: self.counts(),
        }
    }
}

/// Today's layout of every GPU as one mig-parted configuration: GPUs with the same layout share
/// an entry.
pub fn export(gpus: &[GpuLayout]) -> Vec<config::DeviceSpec> {
    let mut out: Vec<config::DeviceSpec> = Vec::new();
    for g in gpus {
        let spec = g.to_spec();
        match out
            .iter_mut()
            .find(|s| s.mig_enabled == spec.mig_enabled && s.mig_devices == spec.mig_devices)
        {
            Some(s) => {
                if let config::Devices::List(v) = &mut s.devices {
                    v.push(g.index);
                }
            }
            None => out.push(spec),
        }
    }
    out
}

/// One profile on one GPU: what NVML says of it and what migcage's placement model says, for
/// `migcage mig capacity`, the read-only check of the model against a real driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capacity {
    pub gpu: u32,
    pub profile: &'static GiProfile,
    /// `nvmlDeviceGetGpuInstancePossiblePlacements_v2`.
    pub nvml_placements: Vec<Placement>,
    /// `nvmlDeviceGetGpuInstanceRemainingCapacity`.
    pub nvml_remaining: u32,
    /// [`placement::remaining_capacity`] next to the GPU's instances.
    pub model_remaining: u32,
}

impl Capacity {
    pub fn new(
        gpu: &GpuLayout,
        profile: &'static GiProfile,
        nvml_placements: Vec<Placement>,
        nvml_remaining: u32,
    ) -> Capacity {
        let placed: Vec<Placed> = gpu.instances.iter().map(GiState::placed).collect();
        Capacity {
            gpu: gpu.index,
            profile,
            nvml_placements,
            nvml_remaining,
            model_remaining: placement::remaining_capacity(profile, &placed),
        }
    }

    /// Whether NVML and the model agree on both.
    pub fn agrees(&self) -> bool {
        self.nvml_placements == self.profile.placements()
            && self.nvml_remaining == self.model_remaining
    }
}

impl fmt::Display for Capacity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |v: &[Placement]| {
            v.iter()
                .map(Placement::to_string)
                .collect::<Vec<_>>()
                .join(" ")
        };
        write!(
            f,
            "GPU {} {}: placements {}, remaining {}",
            self.gpu,
            self.profile.name,
            list(&self.nvml_placements),
            self.nvml_remaining
        )?;
        if !self.agrees() {
            write!(
                f,
                "  DIFFERS: migcage's model has placements {}, remaining {}",
                list(&self.profile.placements()),
                self.model_remaining
            )?;
        }
        Ok(())
    }
}
