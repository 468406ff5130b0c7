//! End to end: the driver's files inside real runc and crun containers (cgroup v1 and v2) on a
//! simulated host. For each `NVIDIA_DRIVER_CAPABILITIES` set the container gets exactly the
//! expected files (read-only, nosuid, nodev mounts), symlinks and ld cache entries; a program
//! in it dlopens libcuda.so.1 and libnvidia-ml.so.1 by soname through the container's ld cache;
//! and nvidia-smi inside a container given one MIG device lists exactly that one.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::driver::{self, LIB};
use common::{Bundle, Mode, SimHost};
use serde_json::json;

const VER: &str = "550.54.15";

/// A driver library of the simulated tree: file stem, soname suffix (`None`: the soname is the
/// versioned file name), whether it gets the development link, its capability.
struct Lib {
    stem: &'static str,
    soname: Option<&'static str>,
    dev_link: bool,
    vdpau: bool,
    cap: &'static str,
}

const fn lib(stem: &'static str, soname: Option<&'static str>, cap: &'static str) -> Lib {
    Lib {
        stem,
        soname,
        dev_link: false,
        vdpau: false,
        cap,
    }
}

/// The driver's libraries and which capability brings each (the spec this test checks the
/// hook against, written out independently of crates/driver-files).
const LIBS: &[Lib] = &[
    Lib {
        dev_link: true,
        ..lib("libnvidia-ml", Some("1"), "utility")
    },
    lib("libnvidia-cfg", Some("1"), "utility"),
    Lib {
        dev_link: true,
        ..lib("libcuda", Some("1"), "compute")
    },
    lib("libcudadebugger", Some("1"), "compute"),
    lib("libnvidia-opencl", Some("1"), "compute"),
    lib("libnvidia-gpucomp", None, "compute"),
    lib("libnvidia-ptxjitcompiler", Some("1"), "compute"),
    lib("libnvidia-allocator", Some("1"), "compute"),
    lib("libnvidia-nvvm", Some("4"), "compute"),
    Lib {
        vdpau: true,
        ..lib("libvdpau_nvidia", Some("1"), "video")
    },
    lib("libnvidia-encode", Some("1"), "video"),
    lib("libnvidia-opticalflow", Some("1"), "video"),
    lib("libnvcuvid", Some("1"), "video"),
    lib("libnvidia-eglcore", None, "graphics"),
    lib("libnvidia-glcore", None, "graphics"),
    lib("libnvidia-tls", None, "graphics"),
    lib("libnvidia-glsi", None, "graphics"),
    lib("libnvidia-fbc", Some("1"), "graphics"),
    lib("libnvidia-rtcore", None, "graphics"),
    lib("libnvoptix", Some("1"), "graphics"),
    lib("libGLX_nvidia", Some("0"), "graphics"),
    lib("libEGL_nvidia", Some("0"), "graphics"),
    lib("libGLESv2_nvidia", Some("2"), "graphics"),
    lib("libGLESv1_CM_nvidia", Some("1"), "graphics"),
    lib("libnvidia-glvkspirv", None, "graphics"),
    lib("libnvidia-ngx", Some("1"), "ngx"),
];

const BINARIES: &[(&str, &str)] = &[
    ("nvidia-smi", "utility"),
    ("nvidia-debugdump", "utility"),
    ("nvidia-persistenced", "utility"),
    ("nvidia-cuda-mps-control", "compute"),
    ("nvidia-cuda-mps-server", "compute"),
];

const CONFIGS: &[&str] = &[
    "/usr/share/vulkan/icd.d/nvidia_icd.json",
    "/usr/share/glvnd/egl_vendor.d/10_nvidia.json",
    "/usr/share/egl/egl_external_platform.d/10_nvidia_wayland.json",
];

/// What a container asking for `caps` must have.
#[derive(Debug, Default)]
struct Expected {
    /// Mounted files -> whether executable (no noexec).
    files: BTreeMap<String, bool>,
    links: BTreeMap<String, String>,
    /// (soname, path) the ld cache gains.
    cache: BTreeSet<(String, String)>,
}

fn expected(caps: &str) -> Expected {
    let caps: BTreeSet<&str> = if caps == "all" {
        [
            "utility", "compute", "video", "graphics", "display", "ngx", "compat32",
        ]
        .into()
    } else {
        caps.split(',').collect()
    };
    let mut e = Expected::default();
    for l in LIBS.iter().filter(|l| caps.contains(l.cap)) {
        let dir = if l.vdpau {
            format!("{LIB}/vdpau")
        } else {
            LIB.to_string()
        };
        let file = format!("{}.so.{VER}", l.stem);
        e.files.insert(format!("{dir}/{file}"), true);
        let soname = match l.soname {
            Some(s) => {
                let soname = format!("{}.so.{s}", l.stem);
                e.links.insert(format!("{dir}/{soname}"), file.clone());
                soname
            }
            None => file.clone(),
        };
        if !l.vdpau {
            e.cache.insert((soname.clone(), format!("{dir}/{soname}")));
        }
        if l.dev_link {
            let dev = format!("{}.so", l.stem);
            e.links.insert(format!("{dir}/{dev}"), soname.clone());
            e.cache.insert((dev.clone(), format!("{dir}/{dev}")));
        }
    }
    for (b, cap) in BINARIES {
        if caps.contains(cap) {
            e.files.insert(format!("/usr/bin/{b}"), true);
        }
    }
    if caps.contains("graphics") || caps.contains("display") {
        for c in CONFIGS {
            e.files.insert(c.to_string(), false);
        }
    }
    // Firmware goes with every request.
    for fw in ["gsp_ga10x.bin", "gsp_tu10x.bin"] {
        e.files
            .insert(format!("/lib/firmware/nvidia/{VER}/{fw}"), false);
    }
    // Sim-only: the containers' topology for the simulated NVML, next to it.
    if caps.contains("utility") {
        e.files
            .insert(format!("{LIB}/nvidia-sim-topology.toml"), false);
    }
    e
}

fn env_bundle(host: &SimHost, env: &[&str]) -> Bundle {
    let b = Bundle::new(host, env, driver::DRIVER_PROBE);
    driver::prepare(&b, host.dir.path(), true);
    b
}

/// The image's own ld cache entries (made by `prepare` with the host's ldconfig).
fn image_cache(b: &Bundle) -> BTreeSet<(String, String, String)> {
    driver::ld_cache_entries(&b.path().join("rootfs/etc/ld.so.cache"))
}

fn capability_sets(mode: Mode) {
    if let Some(why) = mode.unavailable() {
        common::skip(&format!("capability_sets {mode:?}: {why}"));
        return;
    }
    let host = SimHost::new("a100-7x1g");
    for caps in [
        "utility",
        "compute",
        "utility,compute",
        "video",
        "graphics",
        "all",
    ] {
        let b = env_bundle(
            &host,
            &[
                "NVIDIA_VISIBLE_DEVICES=0:1",
                &format!("NVIDIA_DRIVER_CAPABILITIES={caps}"),
            ],
        );
        let before = image_cache(&b);
        assert!(
            before.iter().any(|(n, _, _)| n == "libc.so.6"),
            "the image has a cache of its own: {before:?}"
        );
        let run = common::run(mode, &b, &host);
        let ctx = format!("{mode:?} {caps} ({})", run.id);
        assert!(run.ok(), "{ctx}: {}", run.stderr());
        assert!(
            run.stdout().contains("PROBE-DONE"),
            "{ctx}: {}",
            run.stdout()
        );
        let want = expected(caps);
        let seen = driver::seen(&run);
        let files: BTreeSet<&String> = want.files.keys().collect();
        assert_eq!(
            seen.files.iter().collect::<BTreeSet<_>>(),
            files,
            "{ctx}: files"
        );
        assert_eq!(seen.links, want.links, "{ctx}: symlinks");
        for (path, exec) in &want.files {
            let opts = seen
                .mounts
                .get(path)
                .unwrap_or_else(|| panic!("{ctx}: {path} is not a mount point"));
            let o: BTreeSet<&str> = opts.split(',').collect();
            for needed in ["ro", "nosuid", "nodev"] {
                assert!(o.contains(needed), "{ctx}: {path} mounted {opts}");
            }
            assert_eq!(!o.contains("noexec"), *exec, "{ctx}: {path} mounted {opts}");
        }
        // The ld cache, read on the host by glibc's own reader: the image's entries plus ours.
        let after = image_cache(&b);
        let mut want_cache = before.clone();
        for (soname, path) in &want.cache {
            want_cache.insert((soname.clone(), "libc6,x86-64".into(), path.clone()));
        }
        assert_eq!(after, want_cache, "{ctx}: ld cache");
        // And the directory for a later ldconfig in the container.
        let conf = std::fs::read_to_string(
            b.path()
                .join("rootfs/etc/ld.so.conf.d/000-migcage-nvidia.conf"),
        )
        .unwrap_or_default();
        let dirs: Vec<&str> = conf.lines().filter(|l| !l.starts_with('#')).collect();
        let want_dirs: Vec<&str> = if want.cache.is_empty() {
            vec![]
        } else {
            vec![LIB]
        };
        assert_eq!(dirs, want_dirs, "{ctx}: ld.so.conf.d entry");
        // dlopen by soname, through that cache.
        let has = |c: &str| caps == "all" || caps.split(',').any(|x| x == c);
        for (soname, cap) in [
            ("libcuda.so.1", "compute"),
            ("libnvidia-ml.so.1", "utility"),
        ] {
            let ok = seen
                .dl
                .iter()
                .any(|l| l.starts_with(&format!("DLOPEN {soname} OK")));
            assert_eq!(ok, has(cap), "{ctx}: dlopen {soname}: {:?}", seen.dl);
            if has(cap) {
                assert!(
                    seen.found_through_cache(soname, LIB),
                    "{ctx}: {soname} not found through the ld cache: {:?}",
                    seen.dl
                );
            }
        }
        if has("compute") {
            assert!(
                seen.dl
                    .iter()
                    .any(|l| l == "DLOPEN libcuda.so.1 OK cuInit=0"),
                "{ctx}: {:?}",
                seen.dl
            );
        }
    }
}

#[test]
fn capability_sets_runc_cgroup_v1() {
    capability_sets(Mode::RuncV1);
}

#[test]
fn capability_sets_runc_cgroup_v2() {
    capability_sets(Mode::RuncV2);
}

#[test]
fn capability_sets_crun_cgroup_v1() {
    capability_sets(Mode::CrunV1);
}

#[test]
#[ignore = "crun on cgroup v2 needs CAP_SYS_RESOURCE: tests/vm.rs runs it in the systemd VM"]
fn capability_sets_crun_cgroup_v2() {
    capability_sets(Mode::CrunV2);
}

/// `nvidia-smi -L` on the host (with the tree's libraries) lists all seven MIG devices; inside a
/// container given 0:3 it lists exactly that one, by the simulated NVML's own device-node rule.
fn nvidia_smi_sees_only_its_device(mode: Mode) {
    if let Some(why) = mode.unavailable() {
        common::skip(&format!("nvidia_smi_sees_only_its_device {mode:?}: {why}"));
        return;
    }
    let host = SimHost::new("a100-7x1g");
    let listing = host.list();
    let sim_lib = host.dir.path().join(LIB.trim_start_matches('/'));
    let out = std::process::Command::new(host.dir.path().join("usr/bin/nvidia-smi"))
        .arg("-L")
        .env("LD_LIBRARY_PATH", &sim_lib)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let host_lines = String::from_utf8_lossy(&out.stdout).into_owned();
    let host_migs: Vec<&str> = host_lines.lines().filter(|l| l.contains("MIG ")).collect();
    assert_eq!(host_migs.len(), 7, "host: {host_lines}");

    let uuid3 = common::uuid_of(&listing, "0:3");
    for (value, want) in [("0:3", uuid3.clone()), (uuid3.as_str(), uuid3.clone())] {
        let b = env_bundle(
            &host,
            &[
                &format!("NVIDIA_VISIBLE_DEVICES={value}"),
                "NVIDIA_DRIVER_CAPABILITIES=utility,compute",
            ],
        );
        let run = common::run(mode, &b, &host);
        let ctx = format!("{mode:?} {value} ({})", run.id);
        assert!(run.ok(), "{ctx}: {}", run.stderr());
        let seen = driver::seen(&run);
        assert!(run.stdout().contains("SMI-EXIT 0"), "{ctx}: {:?}", seen.smi);
        let migs: Vec<&String> = seen.smi.iter().filter(|l| l.contains("MIG ")).collect();
        assert_eq!(migs.len(), 1, "{ctx}: {:?}", seen.smi);
        assert!(
            migs[0].contains(&format!("(UUID: {want})")),
            "{ctx}: {:?}",
            seen.smi
        );
        let gpus: Vec<&String> = seen.smi.iter().filter(|l| l.starts_with("GPU ")).collect();
        assert_eq!(gpus.len(), 1, "{ctx}: {:?}", seen.smi);
        assert!(
            seen.dl
                .iter()
                .any(|l| l == "DLOPEN libnvidia-ml.so.1 OK init=0 count=0:1"),
            "{ctx}: {:?}",
            seen.dl
        );
    }
}

#[test]
fn nvidia_smi_sees_only_its_device_runc_cgroup_v1() {
    nvidia_smi_sees_only_its_device(Mode::RuncV1);
}

#[test]
fn nvidia_smi_sees_only_its_device_runc_cgroup_v2() {
    nvidia_smi_sees_only_its_device(Mode::RuncV2);
}

#[test]
fn nvidia_smi_sees_only_its_device_crun_cgroup_v1() {
    nvidia_smi_sees_only_its_device(Mode::CrunV1);
}

#[test]
#[ignore = "crun on cgroup v2 needs CAP_SYS_RESOURCE: tests/vm.rs runs it in the systemd VM"]
fn nvidia_smi_sees_only_its_device_crun_cgroup_v2() {
    nvidia_smi_sees_only_its_device(Mode::CrunV2);
}

/// `none`: the driver's files, no device. nvidia-smi is there and says there is no driver
/// to talk to, as on a real host without device nodes.
fn none_gives_driver_files_but_no_device_in(modes: &[Mode]) {
    for &mode in modes {
        if let Some(why) = mode.unavailable() {
            common::skip(&format!(
                "none_gives_driver_files_but_no_device {mode:?}: {why}"
            ));
            continue;
        }
        let host = SimHost::new("a100-7x1g");
        let b = env_bundle(&host, &["NVIDIA_VISIBLE_DEVICES=none"]);
        let run = common::run(mode, &b, &host);
        let ctx = format!("{mode:?} none ({})", run.id);
        assert!(run.ok(), "{ctx}: {}", run.stderr());
        let seen = driver::seen(&run);
        let want = expected("utility,compute");
        assert_eq!(
            seen.files.iter().collect::<BTreeSet<_>>(),
            want.files.keys().collect::<BTreeSet<_>>(),
            "{ctx}: the default capabilities' files"
        );
        assert!(
            !run.stdout().contains("/dev/nvidia"),
            "{ctx}: no device node: {}",
            run.stdout()
        );
        assert!(
            seen.dl
                .iter()
                .any(|l| l.starts_with("DLOPEN libcuda.so.1 OK")),
            "{ctx}: {:?}",
            seen.dl
        );
        assert!(
            !run.stdout().contains("SMI-EXIT 0"),
            "{ctx}: {:?}",
            seen.smi
        );
    }
}

#[test]
fn none_gives_driver_files_but_no_device() {
    none_gives_driver_files_but_no_device_in(&Mode::OUTSIDE_VM);
}

#[test]
#[ignore = "crun on cgroup v2 needs CAP_SYS_RESOURCE: tests/vm.rs runs it in the systemd VM"]
fn none_gives_driver_files_but_no_device_crun_cgroup_v2() {
    none_gives_driver_files_but_no_device_in(&[Mode::CrunV2]);
}

/// `root.readonly: true`: runc and crun make the root read-only only after the hooks ran (runc:
/// finalizeRootfs after pivot_root; the hooks run before), so the mount targets and the ld cache
/// can still be written, and the container sees a read-only root with working driver files.
fn read_only_rootfs_works_in(modes: &[Mode]) {
    for &mode in modes {
        if let Some(why) = mode.unavailable() {
            common::skip(&format!("read_only_rootfs_works {mode:?}: {why}"));
            continue;
        }
        let host = SimHost::new("a100-7x1g");
        let script = format!(
            "{}\nif touch /rootfs-is-writable 2>/dev/null; then echo ROOT-RW; else echo ROOT-RO; fi\n",
            driver::DRIVER_PROBE
        );
        let mut b = Bundle::new(
            &host,
            &[
                "NVIDIA_VISIBLE_DEVICES=0:2",
                "NVIDIA_DRIVER_CAPABILITIES=compute,utility",
            ],
            &script,
        );
        driver::prepare(&b, host.dir.path(), true);
        b.config["root"]["readonly"] = json!(true);
        b.write();
        let run = common::run(mode, &b, &host);
        let ctx = format!("{mode:?} read-only root ({})", run.id);
        assert!(run.ok(), "{ctx}: {}", run.stderr());
        assert!(run.stdout().contains("ROOT-RO"), "{ctx}: {}", run.stdout());
        let seen = driver::seen(&run);
        assert!(
            seen.dl
                .iter()
                .any(|l| l == "DLOPEN libcuda.so.1 OK cuInit=0"),
            "{ctx}: {:?}",
            seen.dl
        );
        assert!(
            seen.found_through_cache("libcuda.so.1", LIB),
            "{ctx}: {:?}",
            seen.dl
        );
        assert!(run.stdout().contains("SMI-EXIT 0"), "{ctx}: {:?}", seen.smi);
    }
}

#[test]
fn read_only_rootfs_works() {
    read_only_rootfs_works_in(&Mode::OUTSIDE_VM);
}

#[test]
#[ignore = "crun on cgroup v2 needs CAP_SYS_RESOURCE: tests/vm.rs runs it in the systemd VM"]
fn read_only_rootfs_works_crun_cgroup_v2() {
    read_only_rootfs_works_in(&[Mode::CrunV2]);
}

/// The hook at three stages: each file is mounted once, each link and cache entry made once.
#[test]
fn driver_injection_is_idempotent_across_stages() {
    for mode in [Mode::RuncV1, Mode::RuncV2] {
        if let Some(why) = mode.unavailable() {
            common::skip(&format!(
                "driver_injection_is_idempotent_across_stages {mode:?}: {why}"
            ));
            return;
        }
        let host = SimHost::new("a100-7x1g");
        let mut b = env_bundle(&host, &["NVIDIA_VISIBLE_DEVICES=0:4"]);
        let before = image_cache(&b);
        let hook = b.config["hooks"]["prestart"][0].clone();
        for stage in ["createRuntime", "createContainer"] {
            let mut h = hook.clone();
            h["args"] = json!(["migcage", "hook", stage]);
            b.config["hooks"][stage] = json!([h]);
        }
        b.write();
        let run = common::run(mode, &b, &host);
        let ctx = format!("{mode:?} ({})", run.id);
        assert!(run.ok(), "{ctx}: {}", run.stderr());
        let want = expected("utility,compute");
        let mountinfo: Vec<String> = run.prefixed("MOUNT ");
        for path in want.files.keys() {
            let n = mountinfo
                .iter()
                .filter(|l| l.split(' ').next() == Some(path.as_str()))
                .count();
            assert_eq!(n, 1, "{ctx}: {path} mounted {n} times");
        }
        assert_eq!(
            image_cache(&b).len(),
            before.len() + want.cache.len(),
            "{ctx}: each entry once"
        );
    }
}
