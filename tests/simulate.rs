//! `migcage simulate` end to end: the built binary materializes driver trees, and what it wrote is
//! checked the way a consumer sees it (stat of the nodes, the procfs text, the ELF sonames, the ld
//! cache through the system's ldconfig, a dlopen of a library).
//!
//! Needs root (CAP_MKNOD) and the simulated NVML and nvidia-smi next to the migcage binary, which
//! `cargo build --workspace` puts there.

use std::ffi::CString;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use migcage::core::driver_files::{driver_files, FileKind};
use migcage_simulate::elf::read_soname;
use migcage_topology::{builtin_names, Topology};

const BIN: &str = env!("CARGO_BIN_EXE_migcage");
const CAP_MKNOD_BIT: u32 = 27;

fn bin_dir() -> PathBuf {
    Path::new(BIN).parent().unwrap().to_path_buf()
}

/// The real nvml-sim build outputs must be there: this test is about the real tree.
fn require_artifacts() {
    let dir = bin_dir();
    for name in ["libnvidia_ml_sim.so", "nvidia-smi"] {
        assert!(
            dir.join(name).is_file(),
            "{} is missing: run `cargo build --workspace` before these tests",
            dir.join(name).display()
        );
    }
}

fn simulate_cmd(topology: &str, root: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.args(["simulate", "--topology", topology, "--root"])
        .arg(root);
    c.env_remove("MIGCAGE_SIM_ARTIFACTS")
        .env_remove("MIGCAGE_CONFIG");
    c
}

fn run_ok(mut c: Command) -> Output {
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{c:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn simulate(topology: &str, root: &Path) -> String {
    require_artifacts();
    String::from_utf8(run_ok(simulate_cmd(topology, root)).stdout).unwrap()
}

fn assert_node(path: &Path, major: u64, minor: u64, mode: u32) {
    let meta =
        std::fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        meta.file_type().is_char_device(),
        "{} is not a char device",
        path.display()
    );
    assert_eq!(
        meta.rdev(),
        libc::makedev(major as u32, minor as u32),
        "{}",
        path.display()
    );
    assert_eq!(meta.mode() & 0o7777, mode, "{}", path.display());
    // udev's /dev/char/<major>:<minor> link leads to the same node.
    let link = path
        .parent()
        .unwrap()
        .ancestors()
        .find(|p| p.ends_with("dev"))
        .unwrap();
    let by_number = link.join(format!("char/{major}:{minor}"));
    let target =
        std::fs::metadata(&by_number).unwrap_or_else(|e| panic!("{}: {e}", by_number.display()));
    assert_eq!(
        target.ino(),
        meta.ino(),
        "{} points elsewhere",
        by_number.display()
    );
}

fn ldconfig() -> PathBuf {
    ["/sbin/ldconfig", "/usr/sbin/ldconfig"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .expect("ldconfig")
}

fn ld_cache_listing(root: &Path) -> String {
    let mut c = Command::new(ldconfig());
    c.arg("-r").arg(root).arg("-p");
    String::from_utf8(run_ok(c).stdout).unwrap()
}

fn read(root: &Path, rel: &str) -> String {
    std::fs::read_to_string(root.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// dlopen a library of the tree by path and call a function of no arguments returning int.
fn dlopen_call(path: &Path, symbol: &str) -> i32 {
    let cpath = CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: cpath is NUL-terminated; the simulated library has no constructors.
    let handle = unsafe { libc::dlopen(cpath.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    assert!(!handle.is_null(), "dlopen {} failed", path.display());
    let csym = CString::new(symbol).unwrap();
    // SAFETY: handle is from a successful dlopen; csym is NUL-terminated.
    let f = unsafe { libc::dlsym(handle, csym.as_ptr()) };
    assert!(!f.is_null(), "{symbol} not found in {}", path.display());
    // SAFETY: the simulator's functions are `xor eax, eax; ret`: no arguments, an int result.
    let f: extern "C" fn() -> i32 = unsafe { std::mem::transmute(f) };
    let ret = f();
    // SAFETY: handle is from dlopen; nothing of the library is used after this.
    unsafe { libc::dlclose(handle) };
    ret
}

#[test]
fn a100_7x1g_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("sim");
    let summary = simulate("a100-7x1g", &root);
    assert!(
        summary.contains("1 GPU (1 in MIG mode), 7 MIG devices"),
        "{summary}"
    );
    assert!(
        summary.contains(&format!(
            "MIGCAGE_CONFIG={}/config.toml migcage list",
            root.display()
        )),
        "{summary}"
    );
    let t = Topology::load("a100-7x1g").unwrap();

    // Device nodes.
    let dev = root.join("dev");
    assert_node(&dev.join("nvidiactl"), 195, 255, 0o666);
    assert_node(&dev.join("nvidia-modeset"), 195, 254, 0o666);
    assert_node(&dev.join("nvidia0"), 195, 0, 0o666);
    assert_node(&dev.join("nvidia-uvm"), 510, 0, 0o666);
    assert_node(&dev.join("nvidia-uvm-tools"), 510, 1, 0o666);
    assert_node(&dev.join("nvidia-caps/nvidia-cap1"), 509, 1, 0o400);
    assert_node(&dev.join("nvidia-caps/nvidia-cap2"), 509, 2, 0o444);
    let caps_dir = std::fs::metadata(dev.join("nvidia-caps")).unwrap();
    assert!(caps_dir.is_dir() && caps_dir.mode() & 0o7777 == 0o755);
    for gi in &t.gpus[0].gpu_instances {
        let gi_minor = migcage_topology::gi_access_minor(0, gi.id);
        assert_node(
            &dev.join(format!("nvidia-caps/nvidia-cap{gi_minor}")),
            509,
            gi_minor.into(),
            0o444,
        );
        let ci_minor = migcage_topology::ci_access_minor(0, gi.id, 0);
        assert_node(
            &dev.join(format!("nvidia-caps/nvidia-cap{ci_minor}")),
            509,
            ci_minor.into(),
            0o444,
        );
    }
    assert_eq!(
        std::fs::read_dir(dev.join("nvidia-caps")).unwrap().count(),
        2 + 14
    );

    // procfs.
    let devices = read(&root, "proc/devices");
    assert!(devices.starts_with("Character devices:\n"));
    for line in [
        "195 nvidia-frontend",
        "509 nvidia-caps",
        "510 nvidia-uvm",
        "\nBlock devices:\n",
    ] {
        assert!(devices.contains(line), "{line:?} not in {devices}");
    }
    let version = read(&root, "proc/driver/nvidia/version");
    assert!(
        version.starts_with("NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15  "),
        "{version}"
    );
    assert!(
        version.contains("\nGCC version:  gcc version "),
        "{version}"
    );
    let params = read(&root, "proc/driver/nvidia/params");
    for line in [
        "ModifyDeviceFiles: 1",
        "DeviceFileUID: 0",
        "DeviceFileGID: 0",
        "DeviceFileMode: 438",
    ] {
        assert!(params.lines().any(|l| l == line), "{line} not in {params}");
    }
    let info = read(&root, "proc/driver/nvidia/gpus/0000:07:00.0/information");
    assert!(
        info.starts_with("Model: \t\t NVIDIA A100-SXM4-40GB\nIRQ:   \t\t "),
        "{info}"
    );
    assert!(
        info.contains(&format!("GPU UUID: \t {}\n", t.gpus[0].uuid)),
        "{info}"
    );
    assert!(
        info.contains("Bus Location: \t 0000:07:00.0\nDevice Minor: \t 0\n"),
        "{info}"
    );
    assert!(info.ends_with("GPU Excluded:\t No\n"), "{info}");
    assert_eq!(
        read(&root, "proc/driver/nvidia/capabilities/mig/config"),
        "DeviceFileMinor: 1\nDeviceFileMode: 256\nDeviceFileModify: 1\n"
    );
    assert_eq!(
        read(&root, "proc/driver/nvidia/capabilities/mig/monitor"),
        "DeviceFileMinor: 2\nDeviceFileMode: 292\nDeviceFileModify: 1\n"
    );
    assert_eq!(
        read(&root, "proc/driver/nvidia/capabilities/gpu0/mig/gi7/access"),
        "DeviceFileMinor: 66\nDeviceFileMode: 292\nDeviceFileModify: 1\n"
    );
    assert_eq!(
        read(
            &root,
            "proc/driver/nvidia/capabilities/gpu0/mig/gi7/ci0/access"
        ),
        "DeviceFileMinor: 67\nDeviceFileMode: 292\nDeviceFileModify: 1\n"
    );
    assert_eq!(
        read(&root, "proc/driver/nvidia-caps/mig-minors"),
        migcage_topology::mig_minors_file()
    );

    // Libraries: every one of the table, under its soname, with that soname inside.
    let lib_dir = root.join("usr/lib/x86_64-linux-gnu");
    let listing = ld_cache_listing(&root);
    for f in driver_files("550.54.15")
        .into_iter()
        .filter(|f| f.kind == FileKind::Library)
    {
        let soname = f.soname.clone().unwrap();
        let dir = match f.subdir {
            Some(sub) => lib_dir.join(sub),
            None => lib_dir.clone(),
        };
        let file = dir.join(&f.name);
        let bytes = std::fs::read(dir.join(&soname)).unwrap_or_else(|e| panic!("{soname}: {e}"));
        assert_eq!(
            read_soname(&bytes).as_deref(),
            Some(soname.as_str()),
            "{}",
            file.display()
        );
        assert_eq!(
            bytes,
            std::fs::read(&file).unwrap(),
            "{soname} is a link to {}",
            f.name
        );
        if f.subdir.is_none() {
            let entry =
                format!("\t{soname} (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/{soname}\n");
            assert!(
                listing.contains(&entry),
                "{entry:?} not in the ld cache:\n{listing}"
            );
        }
    }
    assert_eq!(
        std::fs::read_link(lib_dir.join("libcuda.so")).unwrap(),
        Path::new("libcuda.so.1")
    );
    assert_eq!(
        std::fs::read_link(lib_dir.join("libnvidia-ml.so")).unwrap(),
        Path::new("libnvidia-ml.so.1")
    );
    // The NVML is the simulated one, byte for byte.
    let nvml = std::fs::read(lib_dir.join("libnvidia-ml.so.550.54.15")).unwrap();
    assert_eq!(
        nvml,
        std::fs::read(bin_dir().join("libnvidia_ml_sim.so")).unwrap()
    );
    assert_eq!(
        std::fs::read(root.join("usr/bin/nvidia-smi")).unwrap(),
        std::fs::read(bin_dir().join("nvidia-smi")).unwrap()
    );
    // libcuda loads and cuInit is callable.
    assert_eq!(dlopen_call(&lib_dir.join("libcuda.so.1"), "cuInit"), 0);
    // readelf, when installed, agrees on the soname.
    if let Ok(out) = Command::new("readelf")
        .arg("-d")
        .arg(lib_dir.join("libcuda.so.1"))
        .output()
    {
        assert!(String::from_utf8_lossy(&out.stdout).contains("Library soname: [libcuda.so.1]"));
    }

    // The topology beside the NVML, with dev_root pointing into the tree.
    let beside = Topology::from_path(&lib_dir.join("nvidia-sim-topology.toml")).unwrap();
    assert_eq!(beside.dev_root.as_deref(), Some(dev.to_str().unwrap()));
    assert_eq!(beside.gpus, t.gpus);
    assert_eq!(
        Topology::from_path(&root.join("topology.toml")).unwrap(),
        beside
    );

    // The configuration.
    let config_path = root.join("config.toml");
    let config = migcage::config::Config::parse(&read(&root, "config.toml"), &config_path).unwrap();
    assert_eq!(config.driver_root, root);
    assert_eq!(config.dev_root, dev);
    assert_eq!(config.proc_root, root.join("proc"));
    assert_eq!(config.nvml_library, lib_dir.join("libnvidia-ml.so.1"));
    assert_eq!(config.state_dir, root.join("run/migcage"));
    assert_eq!(config.log.file, root.join("migcage.log").to_str().unwrap());
    assert!(root.join(".migcage-sim").is_file());
}

#[test]
fn rerun_removes_a_deleted_instance() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("sim");
    simulate("a100-7x1g", &root);
    let gone_node = root.join("dev/nvidia-caps/nvidia-cap121");
    let gone_proc = root.join("proc/driver/nvidia/capabilities/gpu0/mig/gi13");
    assert!(gone_node.exists() && gone_proc.join("ci0/access").exists());
    std::fs::write(root.join("stale-extra-file"), "from an earlier run").unwrap();

    // The same topology without its last GPU instance (GI 13: caps minors 120 and 121).
    let mut file = Topology::load("a100-7x1g").unwrap().to_file();
    let removed = file.gpus[0].gpu_instances.pop().unwrap();
    assert_eq!(removed.id, Some(13));
    let topo_path = tmp.path().join("six.toml");
    std::fs::write(&topo_path, toml::to_string(&file).unwrap()).unwrap();
    let summary = simulate(topo_path.to_str().unwrap(), &root);
    assert!(summary.contains("6 MIG devices"), "{summary}");

    for p in [
        &gone_node,
        &root.join("dev/nvidia-caps/nvidia-cap120"),
        &root.join("dev/char/509:121"),
        &gone_proc,
    ] {
        assert!(
            std::fs::symlink_metadata(p).is_err(),
            "{} survived the re-run",
            p.display()
        );
    }
    assert!(!root.join("stale-extra-file").exists());
    assert_node(&root.join("dev/nvidia-caps/nvidia-cap112"), 509, 112, 0o444);
    assert!(root
        .join("proc/driver/nvidia/capabilities/gpu0/mig/gi12/ci0/access")
        .is_file());
    assert!(ld_cache_listing(&root).contains("libcuda.so.1 "));
}

#[test]
fn refuses_a_directory_it_did_not_make() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("precious.txt"), "do not delete").unwrap();
    let out = simulate_cmd("a100-7x1g", tmp.path()).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(
        err.contains("refusing") && err.contains(tmp.path().to_str().unwrap()),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("precious.txt")).unwrap(),
        "do not delete"
    );
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);
}

/// The effective capabilities of a process run through `wrapper`.
fn effective_caps(wrapper: &[&str]) -> u64 {
    let out = run_ok({
        let mut c = Command::new(wrapper[0]);
        c.args(&wrapper[1..])
            .args(["/bin/grep", "CapEff", "/proc/self/status"]);
        c
    });
    let text = String::from_utf8(out.stdout).unwrap();
    u64::from_str_radix(text.split_whitespace().nth(1).unwrap(), 16).unwrap()
}

#[test]
fn without_cap_mknod_it_refuses_and_writes_nothing() {
    require_artifacts();
    // util-linux setpriv (always on Debian), else libcap's capsh: drop CAP_MKNOD from the bounding
    // and inheritable sets, so the exec'd program (root or not) cannot have it.
    let wrapper: Vec<&str> = if Path::new("/usr/bin/setpriv").exists() {
        vec![
            "/usr/bin/setpriv",
            "--bounding-set",
            "-mknod",
            "--inh-caps",
            "-mknod",
            "--",
        ]
    } else {
        vec![
            "/usr/sbin/capsh",
            "--drop=cap_mknod",
            "--",
            "-c",
            "exec \"$@\"",
            "capsh",
        ]
    };
    assert_eq!(
        effective_caps(&wrapper) & (1 << CAP_MKNOD_BIT),
        0,
        "CAP_MKNOD is still effective"
    );

    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("sim");
    let mut c = Command::new(wrapper[0]);
    c.args(&wrapper[1..])
        .args([BIN, "simulate", "--topology", "a100-7x1g", "--root"])
        .arg(&root);
    c.env_remove("MIGCAGE_SIM_ARTIFACTS");
    let out = c.output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(err.contains("CAP_MKNOD"), "{err}");
    assert!(!root.exists(), "nothing may be written without CAP_MKNOD");
}

#[test]
fn every_shipped_topology_materializes() {
    let tmp = tempfile::tempdir().unwrap();
    for name in builtin_names() {
        let root = tmp.path().join(name);
        let summary = simulate(name, &root);
        let t = Topology::load(name).unwrap();
        assert!(
            summary.contains(&format!("{} MIG device", t.mig_devices().len())),
            "{name}: {summary}"
        );
        for gpu in &t.gpus {
            assert_node(
                &root.join(format!("dev/nvidia{}", gpu.minor)),
                195,
                gpu.minor.into(),
                0o666,
            );
            let info = root.join(format!(
                "proc/driver/nvidia/gpus/{}/information",
                gpu.proc_bus_id()
            ));
            assert!(
                read(&root, info.strip_prefix(&root).unwrap().to_str().unwrap())
                    .contains(&gpu.uuid)
            );
        }
        for m in t.mig_devices() {
            let minor = migcage_topology::ci_access_minor(m.gpu.minor, m.gi.id, m.ci.id);
            assert_node(
                &root.join(format!("dev/nvidia-caps/nvidia-cap{minor}")),
                t.majors.caps.into(),
                minor.into(),
                0o444,
            );
            let access = format!(
                "proc/driver/nvidia/capabilities/gpu{}/mig/gi{}/ci{}/access",
                m.gpu.minor, m.gi.id, m.ci.id
            );
            assert!(
                read(&root, &access).starts_with(&format!("DeviceFileMinor: {minor}\n")),
                "{name}: {access}"
            );
        }
        let caps_nodes = std::fs::read_dir(root.join("dev/nvidia-caps"))
            .unwrap()
            .count();
        let gis: usize = t
            .gpus
            .iter()
            .filter(|g| g.mig)
            .map(|g| g.gpu_instances.len())
            .sum();
        assert_eq!(caps_nodes, 2 + gis + t.mig_devices().len(), "{name}");
        assert!(
            ld_cache_listing(&root).contains("libnvidia-ml.so.1 "),
            "{name}"
        );
    }
}
