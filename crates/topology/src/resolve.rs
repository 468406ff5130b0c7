//! Resolving a topology file: filling in defaults (ids, placements, UUIDs, minors, bus ids) and
//! checking every rule, with errors that name what is wrong and where.

use std::collections::{BTreeMap, BTreeSet};

use crate::devices::{FRONTEND_MAJOR, MAX_COMPUTE_INSTANCES, MAX_GPUS, MAX_GPU_INSTANCES};
use crate::file::{ComputeInstanceFile, TopologyFile};
use crate::load::TopologyError;
use crate::models;
use crate::naming::{is_nvml_bus_id, is_uuid, stable_uuid};
use crate::resolved::{ComputeInstance, Gpu, GpuInstance, Topology};

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
