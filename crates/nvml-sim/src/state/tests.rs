//! Unit tests of the simulated state: handles, lookups, lost GPUs, call faults and device-node
//! visibility.

use migcage_topology::Visibility;

use super::*;
use crate::visibility::{probe, Access, Node};

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
