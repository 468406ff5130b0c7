//! Building the simulated state at `nvmlInit`: the injected call faults checked, nvidiactl
//! probed, and a handle made for every visible GPU, GPU instance, compute instance and MIG
//! device.

use std::collections::{BTreeMap, HashMap};

use migcage_topology::{Gpu, Topology, Visibility};

use super::{CiView, GiView, GpuView, InitError, MigView, Sim, Target};
use crate::errors::{self, Ret};
use crate::handles::{handle, Key};
use crate::visibility::{Access, DevNodes, Node};

impl Sim {
    /// Build the state for a topology, probing device nodes with `probe` when the topology asks
    /// for [`Visibility::DeviceNodes`]. Does not apply `faults.init_error` / `init_delay_ms`:
    /// those belong to `nvmlInit` itself.
    pub fn build(topo: Topology, probe: &dyn Fn(&Node) -> Access) -> Result<Sim, InitError> {
        let call_faults = call_faults(&topo)?;
        let nodes = DevNodes::new(topo.dev_root.as_deref(), topo.majors.caps);
        let filter = topo.visibility == Visibility::DeviceNodes;
        if filter {
            // The real library opens nvidiactl first; what that open says decides init.
            ctl_decides_init(probe(&nodes.ctl()))?;
        }
        let visible = |node: &Node| !filter || probe(node).ok();

        let mut gpus = Vec::new();
        let mut handles = HashMap::new();
        for (topo_pos, gpu) in topo.gpus.iter().enumerate() {
            if !visible(&nodes.gpu(gpu.minor)) {
                continue;
            }
            let view = gpu_view(topo_pos, gpu, gpus.len(), &nodes, &visible, &mut handles);
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
}

/// The topology's `faults.calls` as codes, each checked to name an NVML error and a function
/// this library exports that returns `nvmlReturn_t`.
fn call_faults(topo: &Topology) -> Result<BTreeMap<String, Ret>, InitError> {
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
    Ok(call_faults)
}

/// What opening nvidiactl says about `nvmlInit`: it goes on only when the node is accessible.
fn ctl_decides_init(access: Access) -> Result<(), InitError> {
    match access {
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
    Ok(())
}

/// The view of GPU `gpu` (`topo.gpus[topo_pos]`), visible GPU `g`: its visible GPU instances,
/// compute instances and MIG devices, each with a handle in `handles`.
fn gpu_view(
    topo_pos: usize,
    gpu: &Gpu,
    g: usize,
    nodes: &DevNodes,
    visible: &dyn Fn(&Node) -> bool,
    handles: &mut HashMap<usize, Target>,
) -> GpuView {
    let uuid = &gpu.uuid;
    let mut view = GpuView {
        topo: topo_pos,
        slot: handle(Key::Gpu(uuid.clone())),
        gis: Vec::new(),
        migs: Vec::new(),
    };
    handles.insert(view.slot, Target::Gpu(g));
    if gpu.mig {
        for (gi_pos, gi) in gpu.gpu_instances.iter().enumerate() {
            if !visible(&nodes.gi(gpu.minor, gi.id)) {
                continue;
            }
            let gi_index = view.gis.len();
            let mut gi_view = GiView {
                pos: gi_pos,
                slot: handle(Key::Gi(uuid.clone(), gi.id)),
                cis: Vec::new(),
            };
            handles.insert(gi_view.slot, Target::Gi(g, gi_index));
            for (ci_pos, ci) in gi.compute_instances.iter().enumerate() {
                if !visible(&nodes.ci(gpu.minor, gi.id, ci.id)) {
                    continue;
                }
                let ci_index = gi_view.cis.len();
                let ci_view = CiView {
                    pos: ci_pos,
                    slot: handle(Key::Ci(uuid.clone(), gi.id, ci.id)),
                };
                handles.insert(ci_view.slot, Target::Ci(g, gi_index, ci_index));
                gi_view.cis.push(ci_view);
                let mig = MigView {
                    gi: gi_index,
                    ci: ci_index,
                    slot: handle(Key::Mig(uuid.clone(), gi.id, ci.id)),
                };
                handles.insert(mig.slot, Target::Mig(g, view.migs.len()));
                view.migs.push(mig);
            }
            view.gis.push(gi_view);
        }
    }
    view
}
