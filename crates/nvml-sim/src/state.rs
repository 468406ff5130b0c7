//! The simulated driver state built at `nvmlInit`: which GPUs, GPU instances, compute instances
//! and MIG devices are visible, the handle objects that stand for them, and the faults to inject.
//!
//! A handle is the address of a small heap object owned by the [`Sim`]; it stays put for as long
//! as the state lives. Every handle a caller passes in is looked up in a table of live handles,
//! so a stale, foreign or NULL pointer is never dereferenced: it is `INVALID_ARGUMENT`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use migcage_topology::{ComputeInstance, Gpu, GpuInstance, MigDeviceRef, Topology, Visibility};

use crate::describe::PciAddr;
use crate::errors::{self, NvResult, Ret};
use crate::visibility::{Access, DevNodes, Node};

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

/// The object a handle points at. Never read through a handle: only its address matters, and it
/// is not zero-sized so that every handle has its own address.
struct Slot {
    _tag: u64,
}

fn slot() -> Box<Slot> {
    Box::new(Slot {
        _tag: 0x6e76_6d6c_5f73_696d,
    })
}

fn addr(slot: &Slot) -> usize {
    slot as *const Slot as usize
}

/// A visible GPU.
pub struct GpuView {
    /// Position in `topology.gpus`.
    pub topo: usize,
    slot: Box<Slot>,
    /// Visible GPU instances, in topology order.
    pub gis: Vec<GiView>,
    /// Visible MIG devices, in NVML MIG index order.
    pub migs: Vec<MigView>,
}

/// A visible GPU instance.
pub struct GiView {
    /// Position in the topology GPU's `gpu_instances`.
    pub pos: usize,
    slot: Box<Slot>,
    pub cis: Vec<CiView>,
}

/// A visible compute instance.
pub struct CiView {
    /// Position in the topology GPU instance's `compute_instances`.
    pub pos: usize,
    slot: Box<Slot>,
}

/// A visible MIG device: a visible compute instance of a visible GPU instance.
pub struct MigView {
    /// Index into the GPU's `gis`.
    pub gi: usize,
    /// Index into that GPU instance's `cis`.
    pub ci: usize,
    slot: Box<Slot>,
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
    /// Build the state for a topology, probing device nodes with `probe` when the topology asks
    /// for [`Visibility::DeviceNodes`]. Does not apply `faults.init_error` / `init_delay_ms`:
    /// those belong to `nvmlInit` itself.
    pub fn build(topo: Topology, probe: &dyn Fn(&Node) -> Access) -> Result<Sim, InitError> {
        let mut call_faults = BTreeMap::new();
        for (name, error) in &topo.faults.calls {
            let code = errors::code_from_name(error).ok_or_else(|| InitError {
                code: errors::DRIVER_NOT_LOADED,
                message: Some(format!(
                    "topology {}: faults.calls.{name} = {error:?} is not an NVML error name such as UNKNOWN or GPU_IS_LOST",
                    topo.name
                )),
            })?;
            // nvmlErrorString returns a string, not a code: it cannot be made to fail.
            if !crate::ffi::EXPORTED.contains(&name.as_str()) || name == "nvmlErrorString" {
                return Err(InitError {
                    code: errors::DRIVER_NOT_LOADED,
                    message: Some(format!("topology {}: faults.calls names {name:?}, which this library does not export as a function returning nvmlReturn_t", topo.name)),
                });
            }
            call_faults.insert(name.clone(), code);
        }
        let nodes = DevNodes::new(topo.dev_root.as_deref(), topo.majors.caps);
        let filter = topo.visibility == Visibility::DeviceNodes;
        if filter {
            // The real library opens nvidiactl first; what that open says decides init.
            match probe(&nodes.ctl()) {
                Access::Accessible => {}
                Access::Missing => {
                    return Err(InitError {
                        code: errors::DRIVER_NOT_LOADED,
                        message: None,
                    })
                }
                Access::NoPermission => {
                    return Err(InitError {
                        code: errors::NO_PERMISSION,
                        message: None,
                    })
                }
                // EPERM from the device cgroup is the famous "Failed to initialize NVML: Unknown Error".
                Access::Denied | Access::WrongDevice | Access::Other => {
                    return Err(InitError {
                        code: errors::UNKNOWN,
                        message: None,
                    })
                }
            }
        }
        let visible = |node: &Node| !filter || probe(node).ok();

        let mut gpus = Vec::new();
        let mut handles = HashMap::new();
        for (topo_pos, gpu) in topo.gpus.iter().enumerate() {
            if !visible(&nodes.gpu(gpu.minor)) {
                continue;
            }
            let g = gpus.len();
            let mut view = GpuView {
                topo: topo_pos,
                slot: slot(),
                gis: Vec::new(),
                migs: Vec::new(),
            };
            handles.insert(addr(&view.slot), Target::Gpu(g));
            if gpu.mig {
                for (gi_pos, gi) in gpu.gpu_instances.iter().enumerate() {
                    if !visible(&nodes.gi(gpu.minor, gi.id)) {
                        continue;
                    }
                    let gi_index = view.gis.len();
                    let mut gi_view = GiView {
                        pos: gi_pos,
                        slot: slot(),
                        cis: Vec::new(),
                    };
                    handles.insert(addr(&gi_view.slot), Target::Gi(g, gi_index));
                    for (ci_pos, ci) in gi.compute_instances.iter().enumerate() {
                        if !visible(&nodes.ci(gpu.minor, gi.id, ci.id)) {
                            continue;
                        }
                        let ci_index = gi_view.cis.len();
                        let ci_view = CiView {
                            pos: ci_pos,
                            slot: slot(),
                        };
                        handles.insert(addr(&ci_view.slot), Target::Ci(g, gi_index, ci_index));
                        gi_view.cis.push(ci_view);
                        let mig = MigView {
                            gi: gi_index,
                            ci: ci_index,
                            slot: slot(),
                        };
                        handles.insert(addr(&mig.slot), Target::Mig(g, view.migs.len()));
                        view.migs.push(mig);
                    }
                    view.gis.push(gi_view);
                }
            }
            gpus.push(view);
        }
        let lost = topo.faults.lost_gpus.iter().copied().collect();
        Ok(Sim {
            topo,
            gpus,
            handles,
            call_faults,
            lost,
        })
    }

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
            Target::Gpu(g) => addr(&self.gpus[g].slot),
            Target::Mig(g, m) => addr(&self.gpus[g].migs[m].slot),
            Target::Gi(g, gi) => addr(&self.gpus[g].gis[gi].slot),
            Target::Ci(g, gi, ci) => addr(&self.gpus[g].gis[gi].cis[ci].slot),
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
mod tests {
    use super::*;
    use crate::visibility::probe;

    fn sim(name: &str) -> Sim {
        Sim::build(Topology::load(name).unwrap(), &probe).unwrap()
    }

    #[test]
    fn all_visibility_shows_every_device_with_distinct_handles() {
        let s = sim("dgx-8x7");
        assert_eq!(s.gpu_count(), 8);
        let mut seen = BTreeSet::new();
        for g in 0..8 {
            assert!(seen.insert(s.handle(Target::Gpu(g))));
            assert_eq!(s.view(g).migs.len(), 7);
            for m in 0..7 {
                let h = s.handle(Target::Mig(g, m));
                assert!(seen.insert(h));
                assert_eq!(s.device(h), Ok(Dev::Mig(g, m)));
                assert_eq!(s.mig(g, m).index, m as u32);
            }
        }
        assert_eq!(seen.len(), 8 + 56);
    }

    #[test]
    fn handles_are_validated_by_kind() {
        let s = sim("two-gpus-one-mig");
        let gpu = s.handle(Target::Gpu(0));
        let gi = s.handle(Target::Gi(0, 0));
        let ci = s.handle(Target::Ci(0, 0, 0));
        let mig = s.handle(Target::Mig(0, 0));
        assert_eq!(s.device(0), Err(errors::INVALID_ARGUMENT));
        assert_eq!(s.device(gpu + 1), Err(errors::INVALID_ARGUMENT));
        assert_eq!(s.device(gi), Err(errors::INVALID_ARGUMENT));
        assert_eq!(s.device(ci), Err(errors::INVALID_ARGUMENT));
        assert_eq!(s.physical_gpu(mig), Err(errors::INVALID_ARGUMENT));
        assert_eq!(s.physical_gpu(gpu), Ok(0));
        assert_eq!(s.gpu_instance(gi), Ok((0, 0)));
        assert_eq!(s.gpu_instance(gpu), Err(errors::INVALID_ARGUMENT));
        assert_eq!(s.compute_instance(ci), Ok((0, 0, 0)));
        assert_eq!(s.compute_instance(mig), Err(errors::INVALID_ARGUMENT));
        assert_eq!(s.by_index(2), Err(errors::INVALID_ARGUMENT));
        assert_eq!(s.by_index(1).unwrap().0, s.handle(Target::Gpu(1)));
    }

    #[test]
    fn lookups_by_uuid_and_bus_id() {
        let s = sim("two-gpus-one-mig");
        let t = s.topology().clone();
        assert_eq!(
            s.by_uuid(&t.gpus[1].uuid).unwrap().0,
            s.handle(Target::Gpu(1))
        );
        let mig_uuid = &t.gpus[0].gpu_instances[2].compute_instances[0].uuid;
        assert_eq!(s.by_uuid(mig_uuid).unwrap().0, s.handle(Target::Mig(0, 2)));
        assert_eq!(
            s.by_uuid("GPU-00000000-0000-0000-0000-000000000000"),
            Err(errors::NOT_FOUND)
        );
        for id in ["0000:0f:00.0", "00000000:0F:00.0", "0f:00.0"] {
            assert_eq!(
                s.by_pci_bus_id(id).unwrap().0,
                s.handle(Target::Gpu(1)),
                "{id}"
            );
        }
        assert_eq!(s.by_pci_bus_id("0000:10:00.0"), Err(errors::NOT_FOUND));
        assert_eq!(
            s.by_pci_bus_id("not a bus id"),
            Err(errors::INVALID_ARGUMENT)
        );
    }

    #[test]
    fn lost_gpus_fail_every_call_on_them_and_their_instances() {
        let mut t = Topology::load("two-gpus-one-mig").unwrap();
        t.faults.lost_gpus = vec![0];
        let s = Sim::build(t, &probe).unwrap();
        let (h, status) = s.by_index(0).unwrap();
        assert_eq!(status, Err(errors::GPU_IS_LOST));
        assert_eq!(s.device(h), Err(errors::GPU_IS_LOST));
        assert_eq!(
            s.device(s.handle(Target::Mig(0, 1))),
            Err(errors::GPU_IS_LOST)
        );
        assert_eq!(
            s.gpu_instance(s.handle(Target::Gi(0, 1))),
            Err(errors::GPU_IS_LOST)
        );
        assert_eq!(
            s.compute_instance(s.handle(Target::Ci(0, 1, 0))),
            Err(errors::GPU_IS_LOST)
        );
        assert_eq!(s.by_index(1).unwrap().1, Ok(()));
        assert_eq!(s.device(s.handle(Target::Gpu(1))), Ok(Dev::Gpu(1)));
        assert_eq!(s.gpu_count(), 2);
    }

    #[test]
    fn call_faults_are_checked_at_build() {
        let mut t = Topology::load("a100-nomig").unwrap();
        t.faults
            .calls
            .insert("nvmlDeviceGetUUID".into(), "unknown".into());
        let s = Sim::build(t.clone(), &probe).unwrap();
        assert_eq!(s.fault("nvmlDeviceGetUUID"), Err(errors::UNKNOWN));
        assert_eq!(s.fault("nvmlDeviceGetName"), Ok(()));

        t.faults
            .calls
            .insert("nvmlDeviceGetName".into(), "NOPE".into());
        let e = Sim::build(t.clone(), &probe).err().unwrap();
        assert_eq!(e.code, errors::DRIVER_NOT_LOADED);
        assert!(e.message.unwrap().contains("\"NOPE\""));

        t.faults.calls.remove("nvmlDeviceGetName");
        t.faults
            .calls
            .insert("nvmlDeviceGetNmae".into(), "UNKNOWN".into());
        let e = Sim::build(t, &probe).err().unwrap();
        assert!(e.message.unwrap().contains("nvmlDeviceGetNmae"));
    }

    /// A dev tree: a char node 195:<minor> (opening it gives ENXIO: no driver here), nothing for
    /// hidden ones.
    struct DevTree {
        dir: tempfile::TempDir,
    }

    impl DevTree {
        fn new() -> DevTree {
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir(dir.path().join("nvidia-caps")).unwrap();
            DevTree { dir }
        }

        fn node(&self, rel: &str, major: u32, minor: u32) {
            let path = self.dir.path().join(rel);
            let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
            // SAFETY: `c` is a valid NUL-terminated path; mknod only reads it.
            let rc = unsafe {
                libc::mknod(
                    c.as_ptr(),
                    libc::S_IFCHR | 0o666,
                    libc::makedev(major, minor),
                )
            };
            if rc != 0 {
                // SAFETY: geteuid has no preconditions.
                let root = unsafe { libc::geteuid() } == 0;
                assert!(
                    !root,
                    "mknod {} as root: {}",
                    path.display(),
                    std::io::Error::last_os_error()
                );
                // Not root: a regular file opens just as well.
                std::fs::write(&path, b"").unwrap();
            }
        }

        fn topology(&self, name: &str) -> Topology {
            let mut t = Topology::load(name).unwrap();
            t.visibility = Visibility::DeviceNodes;
            t.dev_root = Some(self.dir.path().to_str().unwrap().to_string());
            t
        }
    }

    #[test]
    fn device_nodes_visibility_renumbers_what_can_be_opened() {
        let tree = DevTree::new();
        let t = tree.topology("two-gpus-one-mig");
        // Without nvidiactl the driver is "not loaded".
        assert_eq!(
            Sim::build(t.clone(), &probe).err().unwrap().code,
            errors::DRIVER_NOT_LOADED
        );
        tree.node("nvidiactl", 195, 255);
        // nvidiactl but no GPU node: no devices.
        assert_eq!(Sim::build(t.clone(), &probe).unwrap().gpu_count(), 0);

        // Only GPU 1 (minor 1): it becomes index 0.
        tree.node("nvidia1", 195, 1);
        let s = Sim::build(t.clone(), &probe).unwrap();
        assert_eq!(s.gpu_count(), 1);
        assert_eq!(s.gpu(0).uuid, t.gpus[1].uuid);
        assert_eq!(s.by_uuid(&t.gpus[0].uuid), Err(errors::NOT_FOUND));

        // GPU 0 with the caps of its second GPU instance only (GI/CI caps both needed).
        tree.node("nvidia0", 195, 0);
        let gi = &t.gpus[0].gpu_instances[1];
        let gi_minor = migcage_topology::gi_access_minor(0, gi.id);
        tree.node(&format!("nvidia-caps/nvidia-cap{gi_minor}"), 509, gi_minor);
        let s = Sim::build(t.clone(), &probe).unwrap();
        assert_eq!(s.gpu_count(), 2);
        assert_eq!(
            s.view(0).gis.len(),
            1,
            "GI cap alone shows the GPU instance"
        );
        assert_eq!(
            s.view(0).migs.len(),
            0,
            "but no MIG device without the CI cap"
        );
        let ci_minor = migcage_topology::ci_access_minor(0, gi.id, 0);
        tree.node(&format!("nvidia-caps/nvidia-cap{ci_minor}"), 509, ci_minor);
        let s = Sim::build(t.clone(), &probe).unwrap();
        assert_eq!(s.view(0).migs.len(), 1);
        let m = s.mig(0, 0);
        assert_eq!(
            (m.index, m.gi.id, &m.ci.uuid),
            (0, gi.id, &gi.compute_instances[0].uuid)
        );
        assert_eq!(
            s.by_uuid(&t.gpus[0].gpu_instances[0].compute_instances[0].uuid),
            Err(errors::NOT_FOUND)
        );

        // A CI cap without its GI cap does not show the MIG device.
        let other = &t.gpus[0].gpu_instances[2];
        let ci_minor = migcage_topology::ci_access_minor(0, other.id, 0);
        tree.node(&format!("nvidia-caps/nvidia-cap{ci_minor}"), 509, ci_minor);
        assert_eq!(Sim::build(t.clone(), &probe).unwrap().view(0).migs.len(), 1);

        // A GI cap node carrying another minor is another capability: still hidden.
        let gi_minor = migcage_topology::gi_access_minor(0, other.id);
        let rel = format!("nvidia-caps/nvidia-cap{gi_minor}");
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            tree.node(&rel, 509, gi_minor + 1);
            assert_eq!(Sim::build(t.clone(), &probe).unwrap().view(0).migs.len(), 1);
            std::fs::remove_file(tree.dir.path().join(&rel)).unwrap();
        }
        tree.node(&rel, 509, gi_minor);
        assert_eq!(Sim::build(t, &probe).unwrap().view(0).migs.len(), 2);
    }

    #[test]
    fn nvidiactl_errors_decide_init() {
        let t = DevTree::new().topology("a100-nomig");
        let code = |a: Access| {
            Sim::build(t.clone(), &move |_: &Node| a)
                .err()
                .map(|e| e.code)
        };
        assert_eq!(code(Access::Denied), Some(errors::UNKNOWN));
        assert_eq!(code(Access::NoPermission), Some(errors::NO_PERMISSION));
        assert_eq!(code(Access::Missing), Some(errors::DRIVER_NOT_LOADED));
        assert_eq!(code(Access::Accessible), None);
        // EPERM on a GPU node hides just that GPU.
        let s = Sim::build(t, &|n: &Node| {
            if n.path.ends_with("nvidia0") {
                Access::Denied
            } else {
                Access::Accessible
            }
        })
        .unwrap();
        assert_eq!(s.gpu_count(), 0);
    }
}
