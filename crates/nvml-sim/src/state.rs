//! The simulated driver state built at `nvmlInit`: which GPUs, GPU instances, compute instances
//! and MIG devices are visible, the handle objects that stand for them, and the faults to inject.
//!
//! A handle is the address of a small object of [`crate::handles`], one per identity, so it
//! stays valid across a change of the MIG layout. Every handle a caller passes in is looked up in a table of live handles,
//! so a stale, foreign or NULL pointer is never dereferenced: it is `INVALID_ARGUMENT`.
//!
//! This file holds what the state is and how a handle a caller passes in is looked up; the
//! `build` module makes the state at init (call faults, nvidiactl, the views and their handles).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use migcage_topology::{ComputeInstance, Gpu, GpuInstance, MigDeviceRef, Topology};

use crate::describe::PciAddr;
use crate::errors::{self, NvResult, Ret};

mod build;

/// What a handle stands for. Indexes are into [`Sim`]'s visible lists, not the topology's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A physical GPU: `gpus[g]`.
    Gpu(usize),
    /// A MIG device: `gpus[g].migs[m]`.
    Mig(usize, usize),
    /// A GPU instance: `gpus[g].gis[gi]`.
    Gi(usize, usize),
    /// A compute instance: `gpus[g].gis[gi].cis[ci]`.
    Ci(usize, usize, usize),
}

/// A device handle's referent: `nvmlDevice_t` is either a GPU or a MIG device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dev {
    Gpu(usize),
    Mig(usize, usize),
}

/// A visible GPU.
pub struct GpuView {
    /// Position in `topology.gpus`.
    pub topo: usize,
    slot: usize,
    /// Visible GPU instances, in topology order.
    pub gis: Vec<GiView>,
    /// Visible MIG devices, in NVML MIG index order.
    pub migs: Vec<MigView>,
}

/// A visible GPU instance.
pub struct GiView {
    /// Position in the topology GPU's `gpu_instances`.
    pub pos: usize,
    slot: usize,
    pub cis: Vec<CiView>,
}

/// A visible compute instance.
pub struct CiView {
    /// Position in the topology GPU instance's `compute_instances`.
    pub pos: usize,
    slot: usize,
}

/// A visible MIG device: a visible compute instance of a visible GPU instance.
pub struct MigView {
    /// Index into the GPU's `gis`.
    pub gi: usize,
    /// Index into that GPU instance's `cis`.
    pub ci: usize,
    slot: usize,
}

/// Why `nvmlInit` fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitError {
    pub code: Ret,
    /// A line for stderr, for failures a person must fix (not for simulated driver errors).
    pub message: Option<String>,
}

/// The state of an initialized simulated NVML.
pub struct Sim {
    topo: Topology,
    gpus: Vec<GpuView>,
    handles: HashMap<usize, Target>,
    call_faults: BTreeMap<String, Ret>,
    /// Topology indexes of GPUs that have fallen off the bus.
    lost: BTreeSet<u32>,
}

impl Sim {
    pub fn topology(&self) -> &Topology {
        &self.topo
    }

    /// The error an injected fault makes `function` return, if any.
    pub fn fault(&self, function: &str) -> NvResult<()> {
        match self.call_faults.get(function) {
            Some(code) => Err(*code),
            None => Ok(()),
        }
    }

    /// Visible GPUs, lost ones included (the real driver counts them too).
    pub fn gpu_count(&self) -> u32 {
        self.gpus.len() as u32
    }

    pub fn view(&self, g: usize) -> &GpuView {
        &self.gpus[g]
    }

    /// The topology's GPU for visible GPU `g`.
    pub fn gpu(&self, g: usize) -> &Gpu {
        &self.topo.gpus[self.gpus[g].topo]
    }

    pub fn gi(&self, g: usize, gi: usize) -> &GpuInstance {
        &self.gpu(g).gpu_instances[self.gpus[g].gis[gi].pos]
    }

    pub fn ci(&self, g: usize, gi: usize, ci: usize) -> &ComputeInstance {
        &self.gi(g, gi).compute_instances[self.gpus[g].gis[gi].cis[ci].pos]
    }

    /// MIG device `m` of visible GPU `g`, its index renumbered over what is visible.
    pub fn mig(&self, g: usize, m: usize) -> MigDeviceRef<'_> {
        let v = &self.gpus[g].migs[m];
        MigDeviceRef {
            gpu: self.gpu(g),
            gi: self.gi(g, v.gi),
            ci: self.ci(g, v.gi, v.ci),
            index: m as u32,
        }
    }

    /// The handle value (an address) of a target.
    pub fn handle(&self, target: Target) -> usize {
        match target {
            Target::Gpu(g) => self.gpus[g].slot,
            Target::Mig(g, m) => self.gpus[g].migs[m].slot,
            Target::Gi(g, gi) => self.gpus[g].gis[gi].slot,
            Target::Ci(g, gi, ci) => self.gpus[g].gis[gi].cis[ci].slot,
        }
    }

    fn is_lost(&self, g: usize) -> bool {
        self.lost.contains(&self.gpu(g).index)
    }

    /// `GPU_IS_LOST` when visible GPU `g` has fallen off the bus.
    pub fn alive(&self, g: usize) -> NvResult<()> {
        if self.is_lost(g) {
            Err(errors::GPU_IS_LOST)
        } else {
            Ok(())
        }
    }

    fn target(&self, handle: usize) -> NvResult<Target> {
        self.handles
            .get(&handle)
            .copied()
            .ok_or(errors::INVALID_ARGUMENT)
    }

    /// Validate a device handle (GPU or MIG device) and check its GPU is not lost.
    pub fn device(&self, handle: usize) -> NvResult<Dev> {
        let dev = match self.target(handle)? {
            Target::Gpu(g) => Dev::Gpu(g),
            Target::Mig(g, m) => Dev::Mig(g, m),
            Target::Gi(..) | Target::Ci(..) => return Err(errors::INVALID_ARGUMENT),
        };
        let (Dev::Gpu(g) | Dev::Mig(g, _)) = dev;
        self.alive(g)?;
        Ok(dev)
    }

    /// Validate a handle that must be a physical GPU. A MIG device handle where a GPU is needed
    /// is `INVALID_ARGUMENT`, which is what the real library answers for MIG-management calls
    /// given a MIG device.
    pub fn physical_gpu(&self, handle: usize) -> NvResult<usize> {
        match self.device(handle)? {
            Dev::Gpu(g) => Ok(g),
            Dev::Mig(..) => Err(errors::INVALID_ARGUMENT),
        }
    }

    /// Validate a GPU instance handle.
    pub fn gpu_instance(&self, handle: usize) -> NvResult<(usize, usize)> {
        match self.target(handle)? {
            Target::Gi(g, gi) => {
                self.alive(g)?;
                Ok((g, gi))
            }
            _ => Err(errors::INVALID_ARGUMENT),
        }
    }

    /// Validate a compute instance handle.
    pub fn compute_instance(&self, handle: usize) -> NvResult<(usize, usize, usize)> {
        match self.target(handle)? {
            Target::Ci(g, gi, ci) => {
                self.alive(g)?;
                Ok((g, gi, ci))
            }
            _ => Err(errors::INVALID_ARGUMENT),
        }
    }

    /// `nvmlDeviceGetHandleByIndex`: the handle, and whether using it is an error (the real
    /// library answers `GPU_IS_LOST` for a lost GPU; the simulator still hands the handle out so
    /// that a client that carries on sees `GPU_IS_LOST` from every call on it).
    pub fn by_index(&self, index: u32) -> NvResult<(usize, NvResult<()>)> {
        let g = index as usize;
        if g >= self.gpus.len() {
            return Err(errors::INVALID_ARGUMENT);
        }
        Ok((self.handle(Target::Gpu(g)), self.alive(g)))
    }

    /// `nvmlDeviceGetHandleByUUID`: GPU and MIG UUIDs, exact match as the real library does.
    pub fn by_uuid(&self, uuid: &str) -> NvResult<(usize, NvResult<()>)> {
        for g in 0..self.gpus.len() {
            if self.gpu(g).uuid == uuid {
                return Ok((self.handle(Target::Gpu(g)), self.alive(g)));
            }
            for m in 0..self.gpus[g].migs.len() {
                if self.mig(g, m).ci.uuid == uuid {
                    return Ok((self.handle(Target::Mig(g, m)), self.alive(g)));
                }
            }
        }
        Err(errors::NOT_FOUND)
    }

    /// `nvmlDeviceGetHandleByPciBusId`: any case, 4- or 8-digit domain, or none.
    pub fn by_pci_bus_id(&self, bus_id: &str) -> NvResult<(usize, NvResult<()>)> {
        let want = PciAddr::parse(bus_id).ok_or(errors::INVALID_ARGUMENT)?;
        for g in 0..self.gpus.len() {
            if PciAddr::parse(&self.gpu(g).pci_bus_id) == Some(want) {
                return Ok((self.handle(Target::Gpu(g)), self.alive(g)));
            }
        }
        Err(errors::NOT_FOUND)
    }

    /// Visible GPU instances of GPU `g` with this NVML profile id.
    pub fn gis_with_profile(&self, g: usize, profile_id: u32) -> Vec<usize> {
        (0..self.gpus[g].gis.len())
            .filter(|gi| self.gi(g, *gi).profile.id == profile_id)
            .collect()
    }

    /// Visible GPU instance `id` of GPU `g`.
    pub fn gi_by_id(&self, g: usize, id: u32) -> Option<usize> {
        (0..self.gpus[g].gis.len()).find(|gi| self.gi(g, *gi).id == id)
    }

    /// Visible compute instances of a GPU instance with `slices` compute slices.
    pub fn cis_with_slices(&self, g: usize, gi: usize, slices: u32) -> Vec<usize> {
        (0..self.gpus[g].gis[gi].cis.len())
            .filter(|ci| self.ci(g, gi, *ci).slices == slices)
            .collect()
    }

    /// Visible compute instance `id` of a GPU instance.
    pub fn ci_by_id(&self, g: usize, gi: usize, id: u32) -> Option<usize> {
        (0..self.gpus[g].gis[gi].cis.len()).find(|ci| self.ci(g, gi, *ci).id == id)
    }

    /// The MIG device that is this compute instance.
    pub fn mig_of_ci(&self, g: usize, gi: usize, ci: usize) -> Option<usize> {
        self.gpus[g]
            .migs
            .iter()
            .position(|m| m.gi == gi && m.ci == ci)
    }
}

#[cfg(test)]
mod tests;
