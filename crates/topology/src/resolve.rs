//! Resolving a topology file: filling in defaults (ids, placements, UUIDs, minors, bus ids) and
//! checking every rule, with errors that name what is wrong and where.

use std::collections::{BTreeMap, BTreeSet};

use crate::devices::{FRONTEND_MAJOR, MAX_COMPUTE_INSTANCES, MAX_GPUS, MAX_GPU_INSTANCES};
use crate::file::{ComputeInstanceFile, GpuFile, GpuInstanceFile, Majors, TopologyFile};
use crate::load::TopologyError;
use crate::models::{self, GiProfile, Model};
use crate::naming::{is_nvml_bus_id, is_uuid, stable_uuid};
use crate::placement::{self, Placed, Placement};
use crate::resolved::{ComputeInstance, Gpu, GpuInstance, Topology};

impl TopologyFile {
    /// Fill in defaults and check every rule; the error names what is wrong and where.
    pub fn resolve(self) -> Result<Topology, TopologyError> {
        let mut r = Resolver {
            name: self.name.clone(),
            uuids: BTreeSet::new(),
            minors: BTreeSet::new(),
            buses: BTreeSet::new(),
        };
        let majors = self.check_top_level(&r)?;
        let mut gpus = Vec::new();
        for (index, g) in self.gpus.iter().enumerate() {
            gpus.push(r.gpu(index as u32, g)?);
        }
        for gpu in &self.faults.lost_gpus {
            if *gpu as usize >= gpus.len() {
                return Err(r.bad(format!(
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
            sim_root: self.sim_root,
            serial: self.serial,
        })
    }

    /// The rules on the file as a whole (name, driver version, GPU count, majors), checked
    /// before any GPU; the majors with their defaults.
    fn check_top_level(&self, r: &Resolver) -> Result<Majors, TopologyError> {
        let name = &self.name;
        let bad = |message: String| r.bad(message);
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
        Ok(majors)
    }
}

/// What resolving remembers from GPU to GPU: the topology's name (for errors and UUID seeds)
/// and the UUIDs, minors and bus ids already taken.
struct Resolver {
    name: String,
    /// GPU and MIG UUIDs alike: no two may be the same.
    uuids: BTreeSet<String>,
    minors: BTreeSet<u32>,
    /// Bus ids in lower case.
    buses: BTreeSet<String>,
}

/// What resolving one GPU remembers from GPU instance to GPU instance.
#[derive(Default)]
struct GpuInstances {
    /// The GPU instances resolved so far.
    list: Vec<GpuInstance>,
    used_slices: u32,
    used_ids: BTreeSet<u32>,
    /// Slice count -> how many default slots of that size are taken.
    used_slots: BTreeMap<u32, usize>,
}

impl Resolver {
    /// An error in this topology.
    fn bad(&self, message: String) -> TopologyError {
        TopologyError::Invalid {
            name: self.name.clone(),
            message,
        }
    }

    /// GPU `index` of the file, with its defaults filled in and its GPU instances resolved.
    fn gpu(&mut self, index: u32, g: &GpuFile) -> Result<Gpu, TopologyError> {
        let name = &self.name;
        let at = format!("gpus[{index}]");
        let model = models::model(&g.model).ok_or_else(|| {
            let keys: Vec<&str> = models::MODELS.iter().map(|m| m.key).collect();
            self.bad(format!(
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
            return Err(self.bad(format!(
                "{at}: uuid {uuid:?} is not GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"
            )));
        }
        let minor = g.minor.unwrap_or(index);
        if minor >= MAX_GPUS {
            return Err(self.bad(format!("{at}: minor {minor} is out of range 0..{MAX_GPUS}")));
        }
        let pci_bus_id = g
            .pci_bus_id
            .clone()
            .unwrap_or_else(|| format!("00000000:{:02X}:00.0", 0x07 + index * 8));
        if !is_nvml_bus_id(&pci_bus_id) {
            return Err(self.bad(format!(
                "{at}: pci_bus_id {pci_bus_id:?} is not like 00000000:07:00.0"
            )));
        }
        if !self.uuids.insert(uuid.clone())
            || !self.minors.insert(minor)
            || !self.buses.insert(pci_bus_id.to_ascii_lowercase())
        {
            return Err(self.bad(format!(
                "{at}: uuid, minor or pci_bus_id repeats another GPU's"
            )));
        }
        if !g.mig && !g.gpu_instances.is_empty() {
            return Err(self.bad(format!(
                "{at}: has gpu_instances but mig = false; set mig = true or remove them"
            )));
        }
        let mut gis = GpuInstances::default();
        for (gi_pos, gf) in g.gpu_instances.iter().enumerate() {
            self.gpu_instance(index, &at, model, gi_pos, gf, &mut gis)?;
        }
        let gis = gis.list;
        if gis
            .iter()
            .map(|gi| gi.compute_instances.len())
            .sum::<usize>()
            > model.max_mig_devices as usize
        {
            return Err(self.bad(format!(
                "{at}: more MIG devices than the {} of a {}",
                model.max_mig_devices, model.name
            )));
        }
        Ok(Gpu {
            index,
            minor,
            uuid,
            model,
            pci_bus_id,
            mig: g.mig,
            gpu_instances: gis,
        })
    }

    /// GPU instance `gi_pos` of GPU `index` (`gpu_at` in errors), resolved and added to `gis`.
    fn gpu_instance(
        &mut self,
        index: u32,
        gpu_at: &str,
        model: &'static Model,
        gi_pos: usize,
        gf: &GpuInstanceFile,
        gis: &mut GpuInstances,
    ) -> Result<(), TopologyError> {
        let at = format!("{gpu_at}.gpu_instances[{gi_pos}]");
        let profile = model.gi_profile(&gf.profile).ok_or_else(|| {
            let names: Vec<&str> = model.gi_profiles.iter().map(|p| p.name).collect();
            self.bad(format!(
                "{at}: profile {:?} does not exist on {}, it has: {}",
                gf.profile,
                model.name,
                names.join(", ")
            ))
        })?;
        gis.used_slices += profile.slices;
        if gis.used_slices > model.compute_slices {
            return Err(self.bad(format!(
                "{at}: {} does not fit, the GPU's {} compute slices are used up",
                profile.name, model.compute_slices
            )));
        }
        let slot_index = gis.used_slots.entry(profile.slices).or_insert(0);
        let slot = default_gi_slots(profile.slices).get(*slot_index).copied();
        *slot_index += 1;
        let id = match (gf.id, slot) {
            (Some(id), _) => id,
            (None, Some((id, _))) => id,
            (None, None) => {
                return Err(self.bad(format!(
                    "{at}: too many {} instances; give ids explicitly",
                    profile.name
                )))
            }
        };
        if id >= MAX_GPU_INSTANCES || !gis.used_ids.insert(id) {
            return Err(self.bad(format!(
                "{at}: GPU instance id {id} is out of range 0..{MAX_GPU_INSTANCES} or used twice"
            )));
        }
        let placement_start = self.gi_placement(&at, model, profile, gf, gis)?;
        let cis = self.compute_instances(index, &at, gis.list.len(), profile, gf)?;
        gis.list.push(GpuInstance {
            id,
            profile,
            placement_start,
            compute_instances: cis,
        });
        Ok(())
    }

    /// Where GPU instance `gf` (`at` in errors) sits: its `placement_start`, checked against the
    /// model's placement rules and the instances before it, or where the driver's rule would put
    /// it next to them ([`placement::choose`]).
    fn gi_placement(
        &self,
        at: &str,
        model: &'static Model,
        profile: &'static GiProfile,
        gf: &GpuInstanceFile,
        gis: &GpuInstances,
    ) -> Result<u32, TopologyError> {
        let placed: Vec<Placed> = gis
            .list
            .iter()
            .map(|gi| Placed {
                profile: gi.profile,
                placement: Placement {
                    start: gi.placement_start,
                    size: gi.profile.placement_size,
                },
            })
            .collect();
        let chosen = match gf.placement_start {
            Some(start) => Placement {
                start,
                size: profile.placement_size,
            },
            None => placement::choose(model, profile, &placed).ok_or_else(|| {
                self.bad(format!(
                    "{at}: {} does not fit next to the GPU instances before it (placements {})",
                    profile.name,
                    placement::placements_text(profile)
                ))
            })?,
        };
        let mut all = placed;
        all.push(Placed {
            profile,
            placement: chosen,
        });
        placement::check(model, &all).map_err(|e| self.bad(format!("{at}: {e}")))?;
        Ok(chosen.start)
    }

    /// The compute instances of GPU instance `gf`, the `gi_number`th of GPU `index` (`at` in
    /// errors): one spanning it when the file leaves them out.
    fn compute_instances(
        &mut self,
        index: u32,
        at: &str,
        gi_number: usize,
        profile: &'static GiProfile,
        gf: &GpuInstanceFile,
    ) -> Result<Vec<ComputeInstance>, TopologyError> {
        let name = &self.name;
        let cis_file = gf.compute_instances.clone().unwrap_or_else(|| {
            vec![ComputeInstanceFile {
                id: Some(0),
                slices: None,
                placement_start: None,
                uuid: None,
            }]
        });
        // An empty list is a GPU instance without compute instances (`nvidia-smi mig -cgi`
        // without `-C`, or one whose compute instances were destroyed): it has no MIG device.
        let mut cis = Vec::new();
        let mut ci_ids = BTreeSet::new();
        let mut ci_slices = 0;
        let mut taken: Vec<(u32, u32)> = Vec::new();
        for (ci_pos, cf) in cis_file.iter().enumerate() {
            let at = format!("{at}.compute_instances[{ci_pos}]");
            let id = cf.id.unwrap_or(ci_pos as u32);
            if id >= MAX_COMPUTE_INSTANCES || !ci_ids.insert(id) {
                return Err(self.bad(format!("{at}: compute instance id {id} is out of range 0..{MAX_COMPUTE_INSTANCES} or used twice")));
            }
            let slices = cf.slices.unwrap_or(profile.slices);
            let start = cf.placement_start.unwrap_or(ci_slices);
            ci_slices += slices;
            if slices == 0 || ci_slices > profile.slices {
                return Err(self.bad(format!(
                    "{at}: compute instances use more than the {} slices of {}",
                    profile.slices, profile.name
                )));
            }
            if start + slices > profile.slices
                || taken
                    .iter()
                    .any(|(s, n)| start < s + n && *s < start + slices)
            {
                return Err(self.bad(format!(
                    "{at}: compute slices {start}..{} overlap another compute instance or leave {}",
                    start + slices,
                    profile.name
                )));
            }
            taken.push((start, slices));
            let uuid = cf.uuid.clone().unwrap_or_else(|| {
                stable_uuid("MIG", &format!("{name}/gpu{index}/gi{gi_number}/ci{id}"))
            });
            if !is_uuid("MIG", &uuid) || !self.uuids.insert(uuid.clone()) {
                return Err(self.bad(format!("{at}: uuid {uuid:?} is not MIG-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx or repeats another")));
            }
            cis.push(ComputeInstance {
                id,
                slices,
                placement_start: start,
                uuid,
            });
        }
        Ok(cis)
    }
}

/// The GPU instance ids the driver hands out for a slice count, in its order.
pub(crate) fn default_gi_ids(slices: u32) -> Vec<u32> {
    default_gi_slots(slices).iter().map(|s| s.0).collect()
}

/// GPU instance ids the driver hands out, per slice count, in order (with the placement each had
/// on an A100 when it was the first of its kind; placements are now chosen by the rules).
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
