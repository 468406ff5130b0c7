//! Changing a topology's MIG layout the way the driver does: MIG mode, creating and destroying
//! GPU and compute instances under the placement rules. Pure: the simulated NVML persists and
//! mirrors what these do.
//!
//! Errors are the NVML codes a driver returns for the same call (`nvml.h`): `NOT_SUPPORTED`
//! for MIG disabled or a profile the model lacks, `INSUFFICIENT_RESOURCES` when the instance does
//! not fit (or not at the requested placement), `IN_USE` for a GPU instance that still has
//! compute instances (or a GPU that still has GPU instances when MIG is turned off),
//! `NOT_FOUND` for an instance that does not exist, `INVALID_ARGUMENT` for an index out of range.
//!
//! Ids: a new GPU instance takes the first free id of the driver's order for its slice count
//! (a 1-slice instance 7, 8, ..., 13; see `resolve`), else the lowest free id; a new compute
//! instance the lowest free id. New MIG devices get UUIDs seeded by the topology's `serial`.
//! Compute instances are placed at their size's alignment, lowest free start first.

use crate::devices::{MAX_COMPUTE_INSTANCES, MAX_GPU_INSTANCES};
use crate::models::GiProfile;
use crate::naming::stable_uuid;
use crate::placement::{self, Placed, Placement};
use crate::resolve::default_gi_ids;
use crate::resolved::{ComputeInstance, Gpu, GpuInstance, Topology};

/// Why a MIG change was refused, as NVML names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MigOpError {
    InvalidArgument,
    NotSupported,
    InsufficientResources,
    InUse,
    NotFound,
}

type Result<T> = std::result::Result<T, MigOpError>;

impl Gpu {
    /// The GPU's instances as placements.
    pub fn placed(&self) -> Vec<Placed> {
        self.gpu_instances
            .iter()
            .map(|gi| Placed {
                profile: gi.profile,
                placement: Placement {
                    start: gi.placement_start,
                    size: gi.profile.placement_size,
                },
            })
            .collect()
    }

    fn mig_profile(&self, profile_id: u32) -> Result<&'static GiProfile> {
        if !self.mig {
            return Err(MigOpError::NotSupported);
        }
        self.model
            .gi_profile_by_id(profile_id)
            .ok_or(MigOpError::NotSupported)
    }

    fn gi_mut(&mut self, gi_id: u32) -> Result<&mut GpuInstance> {
        self.gpu_instances
            .iter_mut()
            .find(|gi| gi.id == gi_id)
            .ok_or(MigOpError::NotFound)
    }
}

/// Compute instance placements of `slices` in a GPU instance of `gi_slices`: aligned to their
/// size, within the GPU instance.
pub fn ci_placements(gi_slices: u32, slices: u32) -> Vec<u32> {
    if slices == 0 || slices > gi_slices {
        return Vec::new();
    }
    (0..gi_slices)
        .step_by(slices as usize)
        .filter(|s| s + slices <= gi_slices)
        .collect()
}

/// The free compute instance placements of `slices` in `gi`.
pub fn free_ci_placements(gi: &GpuInstance, slices: u32) -> Vec<u32> {
    ci_placements(gi.profile.slices, slices)
        .into_iter()
        .filter(|&start| {
            gi.compute_instances.iter().all(|c| {
                start + slices <= c.placement_start || c.placement_start + c.slices <= start
            })
        })
        .collect()
}

/// How many more compute instances of `slices` fit in `gi`.
pub fn ci_remaining_capacity(gi: &GpuInstance, slices: u32) -> u32 {
    let mut taken: Vec<u32> = Vec::new();
    for start in free_ci_placements(gi, slices) {
        if taken.iter().all(|t| start >= t + slices) {
            taken.push(start);
        }
    }
    taken.len() as u32
}

impl Topology {
    fn gpu_mut(&mut self, gpu: usize) -> Result<&mut Gpu> {
        self.gpus.get_mut(gpu).ok_or(MigOpError::InvalidArgument)
    }

    /// `nvmlDeviceSetMigMode`. Turning MIG off with GPU instances left is `IN_USE`.
    pub fn set_mig_mode(&mut self, gpu: usize, enabled: bool) -> Result<()> {
        let g = self.gpu_mut(gpu)?;
        if !enabled && !g.gpu_instances.is_empty() {
            return Err(MigOpError::InUse);
        }
        g.mig = enabled;
        Ok(())
    }

    /// `nvmlDeviceCreateGpuInstance(WithPlacement)`: the new GPU instance's id. Without a start,
    /// where [`placement::choose`] puts it.
    pub fn create_gpu_instance(
        &mut self,
        gpu: usize,
        profile_id: u32,
        start: Option<u32>,
    ) -> Result<u32> {
        let g = self.gpus.get(gpu).ok_or(MigOpError::InvalidArgument)?;
        let profile = g.mig_profile(profile_id)?;
        let placed = g.placed();
        let placement = match start {
            Some(start) => {
                let p = profile
                    .placement_at(start)
                    .ok_or(MigOpError::InvalidArgument)?;
                if !placement::free_placements(profile, &placed).contains(&p) {
                    return Err(MigOpError::InsufficientResources);
                }
                p
            }
            None => placement::choose(g.model, profile, &placed)
                .ok_or(MigOpError::InsufficientResources)?,
        };
        let used: Vec<u32> = g.gpu_instances.iter().map(|gi| gi.id).collect();
        let id = default_gi_ids(profile.slices)
            .into_iter()
            .chain(1..MAX_GPU_INSTANCES)
            .find(|id| !used.contains(id))
            .ok_or(MigOpError::InsufficientResources)?;
        let g = self.gpu_mut(gpu)?;
        g.gpu_instances.push(GpuInstance {
            id,
            profile,
            placement_start: placement.start,
            compute_instances: Vec::new(),
        });
        g.gpu_instances.sort_by_key(|gi| gi.id);
        Ok(id)
    }

    /// `nvmlGpuInstanceDestroy`: `IN_USE` while it has compute instances.
    pub fn destroy_gpu_instance(&mut self, gpu: usize, gi_id: u32) -> Result<()> {
        let g = self.gpu_mut(gpu)?;
        if !g.gi_mut(gi_id)?.compute_instances.is_empty() {
            return Err(MigOpError::InUse);
        }
        g.gpu_instances.retain(|gi| gi.id != gi_id);
        Ok(())
    }

    /// `nvmlGpuInstanceCreateComputeInstance(WithPlacement)` with a compute instance of `slices`:
    /// the new compute instance's id.
    pub fn create_compute_instance(
        &mut self,
        gpu: usize,
        gi_id: u32,
        slices: u32,
        start: Option<u32>,
    ) -> Result<u32> {
        let name = self.name.clone();
        self.serial += 1;
        let serial = self.serial;
        let index = self.gpus.get(gpu).ok_or(MigOpError::InvalidArgument)?.index;
        let taken_uuids: Vec<String> = self
            .mig_devices()
            .iter()
            .map(|m| m.ci.uuid.clone())
            .collect();
        let uuid = (0..)
            .map(|n| stable_uuid("MIG", &format!("{name}/gpu{index}/serial{serial}/{n}")))
            .find(|u| !taken_uuids.contains(u))
            .expect("an unused UUID");
        let gi = self.gpu_mut(gpu)?.gi_mut(gi_id)?;
        if ci_placements(gi.profile.slices, slices).is_empty() {
            return Err(MigOpError::NotSupported);
        }
        let free = free_ci_placements(gi, slices);
        let start = match start {
            Some(s) if free.contains(&s) => s,
            Some(s) if ci_placements(gi.profile.slices, slices).contains(&s) => {
                return Err(MigOpError::InsufficientResources)
            }
            Some(_) => return Err(MigOpError::InvalidArgument),
            None => *free.first().ok_or(MigOpError::InsufficientResources)?,
        };
        let id = (0..MAX_COMPUTE_INSTANCES)
            .find(|id| gi.compute_instances.iter().all(|c| c.id != *id))
            .ok_or(MigOpError::InsufficientResources)?;
        gi.compute_instances.push(ComputeInstance {
            id,
            slices,
            placement_start: start,
            uuid,
        });
        gi.compute_instances.sort_by_key(|c| c.id);
        Ok(id)
    }

    /// `nvmlComputeInstanceDestroy`.
    pub fn destroy_compute_instance(&mut self, gpu: usize, gi_id: u32, ci_id: u32) -> Result<()> {
        let gi = self.gpu_mut(gpu)?.gi_mut(gi_id)?;
        let before = gi.compute_instances.len();
        gi.compute_instances.retain(|c| c.id != ci_id);
        if gi.compute_instances.len() == before {
            return Err(MigOpError::NotFound);
        }
        Ok(())
    }

    /// The topology as a container's simulated NVML must see it: only the devices whose nodes
    /// under the container's `/dev` open (the real driver's rule), and no simulated root (a
    /// container never changes the layout).
    pub fn for_container(&self) -> Topology {
        let mut t = self.clone();
        t.visibility = crate::file::Visibility::DeviceNodes;
        t.dev_root = Some("/dev".into());
        t.sim_root = None;
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_and_destroy_follow_the_placement_rules() {
        let mut t = Topology::load("a100-empty").unwrap();
        // 1g.5gb seven times, ids in the driver's order; the eighth does not fit.
        for want in 7..14 {
            assert_eq!(t.create_gpu_instance(0, 0, None), Ok(want));
        }
        assert_eq!(
            t.create_gpu_instance(0, 0, None),
            Err(MigOpError::InsufficientResources)
        );
        assert_eq!(t.create_compute_instance(0, 7, 1, None), Ok(0));
        assert_eq!(t.destroy_gpu_instance(0, 7), Err(MigOpError::InUse));
        assert_eq!(
            t.create_compute_instance(0, 7, 1, None),
            Err(MigOpError::InsufficientResources)
        );
        assert_eq!(t.destroy_compute_instance(0, 7, 0), Ok(()));
        assert_eq!(
            t.destroy_compute_instance(0, 7, 0),
            Err(MigOpError::NotFound)
        );
        for id in 7..14 {
            t.destroy_gpu_instance(0, id).unwrap();
        }
        assert_eq!(
            t.create_gpu_instance(0, 2, Some(2)),
            Err(MigOpError::InvalidArgument)
        );
        assert_eq!(t.create_gpu_instance(0, 2, Some(0)), Ok(1));
        assert_eq!(
            t.create_gpu_instance(0, 3, Some(0)),
            Err(MigOpError::InsufficientResources)
        );
        assert_eq!(
            t.create_gpu_instance(0, 99, None),
            Err(MigOpError::NotSupported)
        );
        assert_eq!(t.set_mig_mode(0, false), Err(MigOpError::InUse));
        assert_eq!(
            t.create_gpu_instance(5, 0, None),
            Err(MigOpError::InvalidArgument)
        );
    }

    #[test]
    fn compute_instances_are_aligned_and_get_fresh_uuids() {
        let mut t = Topology::load("a100-empty").unwrap();
        let gi = t.create_gpu_instance(0, 2, None).unwrap();
        assert_eq!(ci_placements(3, 1), vec![0, 1, 2]);
        assert_eq!(ci_placements(3, 2), vec![0]);
        assert_eq!(ci_placements(7, 3), vec![0, 3]);
        assert_eq!(t.create_compute_instance(0, gi, 2, None), Ok(0));
        assert_eq!(
            t.create_compute_instance(0, gi, 1, Some(0)),
            Err(MigOpError::InsufficientResources)
        );
        assert_eq!(t.create_compute_instance(0, gi, 1, None), Ok(1));
        let first = t.mig_devices()[0].ci.uuid.clone();
        t.destroy_compute_instance(0, gi, 0).unwrap();
        t.create_compute_instance(0, gi, 2, None).unwrap();
        let uuids: Vec<String> = t.mig_devices().iter().map(|m| m.ci.uuid.clone()).collect();
        assert!(
            !uuids.contains(&first),
            "a recreated instance reused {first}"
        );
        // The result is still a valid topology.
        t.to_file().resolve().unwrap();
    }
}
