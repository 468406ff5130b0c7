//! A C program that knows only nvml.h's ABI (tests/nvml_client.c) dlopens the built cdylib and
//! enumerates it with raw NVML calls; its output must match the topology line for line.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use migcage_topology::Topology;

/// Compile nvml_client.c into `dir`.
fn compile(dir: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/nvml_client.c");
    let exe = dir.join("nvml_client");
    let out = Command::new("cc")
        .args(["-std=c99", "-Wall", "-Werror", "-o"])
        .arg(&exe)
        .arg(&src)
        .arg("-ldl")
        .output()
        .expect("run cc");
    assert!(
        out.status.success(),
        "cc failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    exe
}

struct Run {
    stdout: String,
    stderr: String,
}

/// Run the client in `mode` against the cdylib with this topology (or none).
fn run(topo: Option<&Topology>, mode: &str) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let exe = compile(dir.path());
    let mut cmd = Command::new(&exe);
    cmd.arg(common::cdylib())
        .arg(mode)
        .env_remove("MIGCAGE_SIM_TOPOLOGY");
    if let Some(t) = topo {
        cmd.env(
            "MIGCAGE_SIM_TOPOLOGY",
            common::write_topology(dir.path(), t),
        );
    }
    let out = cmd.output().expect("run nvml_client");
    assert!(
        out.status.success(),
        "nvml_client {mode} exited {:?}",
        out.status
    );
    Run {
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// `NVML_COMPUTE_INSTANCE_PROFILE_*` id -> compute slices, per nvml.h.
const CI_PROFILE_SLICES: [(u32, u32); 7] = [(0, 1), (1, 2), (2, 3), (3, 4), (4, 7), (5, 8), (6, 6)];

/// What nvml_client prints for a topology, derived from the topology alone.
fn expected(t: &Topology) -> Vec<String> {
    let mut out = vec![
        "init 0 Success".to_string(),
        format!("driver {}", t.driver_version),
        format!("nvml 12.{}", t.driver_version),
        format!("cuda {0} {0}", t.cuda_driver_version),
        format!("count 0 {}", t.gpus.len()),
    ];
    for (i, g) in t.gpus.iter().enumerate() {
        if t.faults.lost_gpus.contains(&g.index) {
            out.push(format!("gpu {i} handle error 15"));
            continue;
        }
        let m = &g.model;
        let (bus_id, legacy) = common::bus_ids(&g.pci_bus_id);
        let fields: Vec<u32> = bus_id
            .split([':', '.'])
            .map(|f| u32::from_str_radix(f, 16).unwrap())
            .collect();
        let mem = m.memory_mib << 20;
        let mig = u32::from(g.mig);
        out.push(format!(
            "gpu {i} index={i} uuid={} name={} brand=14 minor={} pci={bus_id} legacy={legacy} domain={} bus={} dev={} \
             pciid={:08x} subsys={:08x} mig={mig}/{mig} mem={mem}/{mem} mem2=0/{mem} arch={} cc={}.{} maxmig={} \
             byuuid=ok bypci=ok/ok",
            g.uuid,
            m.name,
            g.minor,
            fields[0],
            fields[1],
            fields[2],
            m.pci_device_id,
            m.pci_subsystem_id,
            m.architecture,
            m.compute_capability.0,
            m.compute_capability.1,
            if g.mig { m.max_mig_devices } else { 0 },
        ));
        for (idx, d) in g.mig_devices().iter().enumerate() {
            let p = d.gi.profile;
            out.push(format!(
                "mig {i} {idx} uuid={} name={} MIG {} gi={} ci={} mem={} ismig=1 parent=ok byuuid=ok attrs={}/{}/{}/{}/{}",
                d.ci.uuid,
                m.name,
                d.profile_name(),
                d.gi.id,
                d.ci.id,
                p.memory_mib << 20,
                p.multiprocessors * d.ci.slices / p.slices,
                p.slices,
                d.ci.slices,
                p.copy_engines,
                p.memory_mib,
            ));
        }
        if !g.mig {
            continue;
        }
        let mut profiles: Vec<_> = m.gi_profiles.iter().collect();
        profiles.sort_by_key(|p| p.id);
        for p in profiles {
            for gi in g.gpu_instances.iter().filter(|gi| gi.profile.id == p.id) {
                out.push(format!(
                    "gi {i} id={} profile={} start={} size={} pname=MIG {} pslices={} pcount={} pmem={} parent=ok byid=ok",
                    gi.id,
                    p.id,
                    gi.placement_start,
                    p.placement_size,
                    p.name,
                    p.slices,
                    p.instance_count,
                    p.memory_mib,
                ));
                for (cp, slices) in CI_PROFILE_SLICES.iter().filter(|(_, s)| *s <= p.slices) {
                    let mut start = 0;
                    for ci in &gi.compute_instances {
                        if ci.slices == *slices {
                            let pname = if *slices == p.slices {
                                p.name.to_string()
                            } else {
                                format!("{slices}c.{}", p.name)
                            };
                            out.push(format!(
                                "ci {i} gi={} id={} profile={cp} start={start} size={slices} pname=MIG {pname} \
                                 pslices={slices} pcount={} parent=ok gi_handle=ok byid=ok",
                                gi.id,
                                ci.id,
                                p.slices / slices,
                            ));
                        }
                        start += ci.slices;
                    }
                }
            }
        }
    }
    out.push("shutdown 0".to_string());
    out
}

fn assert_lines(actual: &str, want: &[String]) {
    let got: Vec<&str> = actual.lines().collect();
    for (n, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g, w, "line {} differs\nfull output:\n{actual}", n + 1);
    }
    assert_eq!(
        got.len(),
        want.len(),
        "line count differs\nfull output:\n{actual}"
    );
    assert!(!actual.contains("MISMATCH"));
}

fn enumerate_matches(name: &str) {
    let t = Topology::load(name).unwrap();
    let want = expected(&t);
    // Sanity: the expectation covers every GPU and MIG device of the topology.
    assert_eq!(
        want.iter().filter(|l| l.starts_with("gpu ")).count(),
        t.gpus.len()
    );
    assert_eq!(
        want.iter().filter(|l| l.starts_with("mig ")).count(),
        t.mig_devices().len()
    );
    assert_eq!(
        want.iter().filter(|l| l.starts_with("ci ")).count(),
        t.mig_devices().len()
    );
    let r = run(Some(&t), "enumerate");
    assert_lines(&r.stdout, &want);
}

/// Instances made by one process through raw NVML calls are what the next process enumerates:
/// a 3g.20gb, a 1g.5gb and a 2g.10gb on `a100-empty`, where the placement rule puts them, then a
/// 4g.20gb that no longer fits; the enumeration matches the persisted state line for line.
#[test]
fn instances_created_through_raw_nvml_are_seen_by_the_next_process() {
    let dir = tempfile::tempdir().unwrap();
    let exe = compile(dir.path());
    let t = Topology::load("a100-empty").unwrap();
    let topo_path = common::write_topology(dir.path(), &t);
    let client = |args: &[&str]| {
        let out = Command::new(&exe)
            .arg(common::cdylib())
            .args(args)
            .env("MIGCAGE_SIM_TOPOLOGY", &topo_path)
            .output()
            .expect("run nvml_client");
        assert!(out.status.success(), "nvml_client {args:?}: {:?}", out);
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(
        client(&["create", "2", "2"]),
        "created gi=1 start=4 size=4 ci=0 left_before=2\n"
    );
    assert_eq!(
        client(&["create", "0", "0"]),
        "created gi=7 start=3 size=1 ci=0 left_before=4\n"
    );
    assert_eq!(
        client(&["create", "1", "1"]),
        "created gi=3 start=0 size=2 ci=0 left_before=1\n"
    );
    // 4g.20gb no longer fits: INSUFFICIENT_RESOURCES (23), nothing left.
    assert_eq!(client(&["create", "3", "3"]), "create_gi 23 left=0\n");
    let state = std::fs::read_to_string(dir.path().join("nvidia-sim-state.toml")).unwrap();
    let now = Topology::parse(&state, false, "state").unwrap();
    assert_eq!(now.mig_devices().len(), 3);
    assert_lines(&client(&["enumerate"]), &expected(&now));
}

#[test]
fn a100_7x1g() {
    enumerate_matches("a100-7x1g");
}

#[test]
fn h100_mixed_with_split_compute_instances() {
    enumerate_matches("h100-mixed");
}

#[test]
fn dgx_8x7() {
    enumerate_matches("dgx-8x7");
}

#[test]
fn a100_nomig() {
    enumerate_matches("a100-nomig");
}

#[test]
fn two_gpus_one_mig() {
    enumerate_matches("two-gpus-one-mig");
}

#[test]
fn a100_mixed() {
    enumerate_matches("a100-mixed");
}

#[test]
fn init_error_fault() {
    for (name, line) in [
        ("DRIVER_NOT_LOADED", "init 9 Driver Not Loaded"),
        ("UNKNOWN", "init 999 Unknown Error"),
    ] {
        let mut t = Topology::load("a100-7x1g").unwrap();
        t.faults.init_error = Some(name.into());
        let r = run(Some(&t), "enumerate");
        assert_eq!(r.stdout.lines().collect::<Vec<_>>(), vec![line], "{name}");
        assert_eq!(
            r.stderr, "",
            "a simulated driver error is not a configuration problem"
        );
    }
}

#[test]
fn call_fault_and_lost_gpu() {
    let mut t = Topology::load("two-gpus-one-mig").unwrap();
    t.faults.lost_gpus = vec![0];
    let r = run(Some(&t), "enumerate");
    assert_lines(&r.stdout, &expected(&t));
    assert!(r.stdout.contains("gpu 0 handle error 15"));

    t.faults.lost_gpus.clear();
    t.faults
        .calls
        .insert("nvmlDeviceGetCount_v2".into(), "UNKNOWN".into());
    let r = run(Some(&t), "enumerate");
    assert!(r.stdout.lines().any(|l| l == "count 999 0"), "{}", r.stdout);
}

#[test]
fn init_delay_fault_delays() {
    let mut t = Topology::load("a100-nomig").unwrap();
    t.faults.init_delay_ms = 300;
    let start = std::time::Instant::now();
    let r = run(Some(&t), "enumerate");
    assert!(start.elapsed().as_millis() >= 300);
    assert_lines(&r.stdout, &expected(&t));
}

#[test]
fn bad_handles_and_misuse() {
    let t = Topology::load("two-gpus-one-mig").unwrap();
    let r = run(Some(&t), "errors");
    let want = [
        "before_init 1",         // UNINITIALIZED
        "init 0",                //
        "null_handle 2",         // INVALID_ARGUMENT
        "bogus_handle 2",        // a pointer that is no handle
        "gi_as_device 2",        // a GPU instance handle is not a device
        "device_as_gi 2",        // nor the other way round
        "null_out 2",            //
        "short_buffer 7",        // INSUFFICIENT_SIZE
        "index_out_of_range 2",  //
        "unknown_uuid 6",        // NOT_FOUND
        "nomig_mig_by_index 6",  // MIG disabled: no MIG device at any index
        "nomig_gpu_instances 3", // NOT_SUPPORTED
        "nomig_profile_info 3",  //
        "nomig_gi_id 3",         // a GPU is not a MIG device
        "mig_minor 3",           // a MIG device has no node of its own
        "mig_pci 3",             //
        "mig_as_parent 2",       //
        "profile_out_of_range 2",
        "bad_version 25", // ARGUMENT_VERSION_MISMATCH
        "init_again 0",   // refcounted...
        "shutdown 0",
        "still_initialized 0", // ...so one shutdown leaves it up
        "shutdown 0",
        "stale_handle 1", // UNINITIALIZED after the last shutdown
        "shutdown_extra 1",
    ];
    assert_eq!(r.stdout.lines().collect::<Vec<_>>(), want, "{}", r.stdout);
}

#[test]
fn missing_or_bad_topology_fails_init_with_one_line() {
    let r = run(None, "enumerate");
    assert_eq!(r.stdout.trim(), "init 9 Driver Not Loaded");
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("MIGCAGE_SIM_TOPOLOGY") && r.stderr.contains("nvidia-sim-topology.toml"),
        "{}",
        r.stderr
    );

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "name = \"x\"\n[[gpus]]\nmodel = \"rtx-9090\"\n").unwrap();
    let out = Command::new(compile(dir.path()))
        .arg(common::cdylib())
        .arg("enumerate")
        .env("MIGCAGE_SIM_TOPOLOGY", &bad)
        .output()
        .unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        "init 9 Driver Not Loaded"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("rtx-9090"), "{stderr}");
}

#[test]
fn every_listed_function_is_exported() {
    let so = common::cdylib();
    let path = std::ffi::CString::new(so.to_str().unwrap()).unwrap();
    // SAFETY: a NUL-terminated path; loading the library only runs Rust's static initializers.
    let lib = unsafe { libc::dlopen(path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    assert!(!lib.is_null());
    for name in nvidia_ml_sim::ffi::EXPORTED {
        let c = std::ffi::CString::new(*name).unwrap();
        // SAFETY: `lib` is a live dlopen handle and `c` a NUL-terminated name.
        let p = unsafe { libc::dlsym(lib, c.as_ptr()) };
        assert!(!p.is_null(), "{name} is not exported");
    }
    let out = Command::new("readelf")
        .arg("-d")
        .arg(&so)
        .output()
        .expect("readelf");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Library soname: [libnvidia-ml.so.1]"),
        "{text}"
    );
}

/// Make a char node (root only; opening it gives ENXIO, which the driver's rule accepts).
fn mknod(path: &Path, major: u32, minor: u32) {
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: `c` is a NUL-terminated path; mknod only reads it.
    let rc = unsafe {
        libc::mknod(
            c.as_ptr(),
            libc::S_IFCHR | 0o666,
            libc::makedev(major, minor),
        )
    };
    assert_eq!(
        rc,
        0,
        "mknod {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
}

#[test]
fn device_nodes_visibility_through_the_library() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: mknod needs root");
        return;
    }
    let mut t = Topology::load("two-gpus-one-mig").unwrap();
    let dev = tempfile::tempdir().unwrap();
    std::fs::create_dir(dev.path().join("nvidia-caps")).unwrap();
    mknod(&dev.path().join("nvidiactl"), 195, 255);
    mknod(&dev.path().join("nvidia0"), 195, 0);
    // Only the second GPU instance of GPU 0 (GI and CI caps), and not GPU 1 at all.
    let gi = t.gpus[0].gpu_instances[1].id;
    for minor in [
        migcage_topology::gi_access_minor(0, gi),
        migcage_topology::ci_access_minor(0, gi, 0),
    ] {
        mknod(
            &dev.path().join(format!("nvidia-caps/nvidia-cap{minor}")),
            t.majors.caps,
            minor,
        );
    }
    t.visibility = migcage_topology::Visibility::DeviceNodes;
    t.dev_root = Some(dev.path().to_str().unwrap().to_string());

    // What a container with those nodes must see: one GPU, one GPU instance, one MIG device.
    let mut visible = t.clone();
    visible.gpus.truncate(1);
    visible.gpus[0].gpu_instances.retain(|g| g.id == gi);
    let r = run(Some(&t), "enumerate");
    assert_lines(&r.stdout, &expected(&visible));
    assert!(r.stdout.contains("count 0 1\n"));
    assert_eq!(
        r.stdout.lines().filter(|l| l.starts_with("mig ")).count(),
        1
    );
}
