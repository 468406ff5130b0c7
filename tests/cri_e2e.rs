//! Kubernetes' path to migcage, for real: a private containerd (Debian's 1.6) with its CRI
//! plugin, configured by `migcage configure containerd`, driven through the CRI API as the
//! kubelet drives it (RunPodSandbox, CreateContainer, StartContainer with the `migcage` runtime
//! handler), with what the NVIDIA device plugin's strategies put in a container, in an image
//! that carries `NVIDIA_VISIBLE_DEVICES=all` as the CUDA images do. Each container runs the
//! isolation probe and must see exactly the instances it was allocated.
//!
//! The daemon has its own root, state, sockets and config, runs its pods in the node's network
//! namespace (no CNI here), under a cgroup parent of the test's; the sandbox image is a static C
//! pause program built and imported by the test (no registry is reachable).

mod common;
mod cri;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Instant;

use common::{SimHost, MIGCAGE};
use cri::client::{ContainerSpec, Cri};
use cri::daemon::{private_config, with_cdi_spec_dir, Containerd};
use cri::image;
use cri::pod::{annotation, env, Case, CgroupParent, Runner, Scenario};

/// One private containerd at a time: they share the runc shim's /run/containerd.
static SERIAL: Mutex<()> = Mutex::new(());

const HANDLER: &str = "migcage";

fn needs(test: &str) -> bool {
    common::need_programs(
        test,
        &[
            ("containerd", "containerd"),
            ("ctr", "containerd"),
            ("runc", "runc"),
            ("busybox", "busybox-static"),
            ("cc", "gcc"),
        ],
    )
}

/// `migcage configure containerd` on `file`, registering `link`.
fn configure(file: &Path, link: &Path) {
    configure_with(file, &["--binary", link.to_str().unwrap()], Path::new(""));
}

/// `migcage configure containerd ARGS` on `file`, with `bin`'s containerd first on the PATH
/// (the one whose version configure asks).
fn configure_with(file: &Path, args: &[&str], bin: &Path) {
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new(MIGCAGE)
        .args(["configure", "containerd", "--config-file"])
        .arg(file)
        .args(args)
        .env_remove("MIGCAGE_CONFIG")
        .env("PATH", path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "configure containerd: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The runtime link, configure's result on `original` (None: no file), and containerd started
/// on it as a private instance.
fn configured_node(dir: &Path, original: Option<&str>, env: &[(&str, &Path)]) -> Containerd {
    let link = dir.join("bin/migcage-runtime");
    std::fs::create_dir_all(link.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(MIGCAGE, &link).unwrap();
    let file = dir.join("config.toml");
    if let Some(text) = original {
        std::fs::write(&file, text).unwrap();
    }
    configure(&file, &link);
    let configured = std::fs::read_to_string(&file).unwrap();
    let private = dir.join("private.toml");
    std::fs::write(&private, private_config(&configured, dir, image::PAUSE)).unwrap();
    Containerd::start(dir, &private, env)
}

/// `containerd config dump` of the running instance's file.
fn config_dump(c: &Containerd) -> String {
    let out = Command::new(c.bin.join("containerd"))
        .arg("--config")
        .arg(c.dir.join("private.toml"))
        .args(["config", "dump"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn configure_leaves_a_node_whose_cri_plugin_loads() {
    if !needs("configure_leaves_a_node_whose_cri_plugin_loads") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let fixture = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/configure/containerd-1.6-default.toml"),
    )
    .unwrap();
    let with_kata = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.kata]\n  runtime_type = \"io.containerd.kata.v2\"\n";
    for (case, original) in [
        ("empty file", Some("")),
        ("missing file", None),
        ("containerd 1.6's default config", Some(fixture.as_str())),
        (
            "version 2 with another runtime and no runc",
            Some(with_kata),
        ),
    ] {
        let dir = tempfile::Builder::new()
            .prefix("migcage-cri-")
            .tempdir()
            .unwrap();
        let c = configured_node(dir.path(), original, &[]);
        assert_eq!(
            c.cri_plugin_state(),
            "ok",
            "{case}: CRI plugin\n{}",
            c.log()
        );
        let dump = config_dump(&c);
        let runtimes = "[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes";
        for rt in ["runc", "migcage"] {
            assert!(
                dump.contains(&format!("{runtimes}.{rt}]")),
                "{case}: no {rt} in\n{dump}"
            );
        }
        assert!(
            dump.contains("default_runtime_name = \"runc\""),
            "{case}:\n{dump}"
        );
        let entry = dump.split(&format!("{runtimes}.migcage]")).nth(1).unwrap();
        let entry = entry.split("[plugins.").next().unwrap();
        assert!(
            entry.contains("container_annotations = [\"cdi.k8s.io/*\", \"migcage.io/*\"]")
                && entry.contains("pod_annotations = [\"migcage.io/*\"]"),
            "{case}: {entry}"
        );
        drop(c);
    }
}

/// The same promise on containerd 1.7 and 2.x, whose CRI plugin reads config version 3 (2.x)
/// and has CDI: every configure case, `--cdi` among them, is started for real, its CRI plugin
/// must load and its `config dump` still have runc (and migcage's entry, or CDI on).
#[test]
fn configure_leaves_containerd_1_7_and_2_nodes_whose_cri_plugin_loads() {
    let test = "configure_leaves_containerd_1_7_and_2_nodes_whose_cri_plugin_loads";
    if !needs(test) {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let v3 = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/configure/containerd-2.0-v3.toml"),
    )
    .unwrap();
    let with_kata = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.kata]\n  runtime_type = \"io.containerd.kata.v2\"\n";
    for (suite, series, layout) in [("trixie", "1.7.", 2), ("sid", "2.", 3)] {
        let bin = common::engine_release(suite).join("usr/bin");
        if !bin.join("containerd").is_file() {
            common::skip(&format!("{test}: no containerd {series}x in {} (scripts/engine-releases.sh, run by scripts/deps.sh, fetches Debian {suite}'s)", bin.display()));
            continue;
        }
        let mut cases = vec![
            ("empty file", Some(""), false),
            ("missing file", None, false),
            (
                "version 2 with another runtime and no runc",
                Some(with_kata),
                false,
            ),
            ("empty file, --cdi", Some(""), true),
        ];
        if layout == 3 {
            cases.push((
                "containerd 2.0's version 3 config",
                Some(v3.as_str()),
                false,
            ));
        }
        for (case, original, cdi) in cases {
            let ctx = format!("containerd {suite}, {case}");
            let dir = tempfile::Builder::new()
                .prefix("migcage-cri-")
                .tempdir()
                .unwrap();
            let link = dir.path().join("bin/migcage-runtime");
            std::fs::create_dir_all(link.parent().unwrap()).unwrap();
            std::os::unix::fs::symlink(MIGCAGE, &link).unwrap();
            let file = dir.path().join("config.toml");
            if let Some(text) = original {
                std::fs::write(&file, text).unwrap();
            }
            let args: &[&str] = if cdi {
                &["--cdi"]
            } else {
                &["--binary", link.to_str().unwrap()]
            };
            configure_with(&file, args, &bin);
            let configured = std::fs::read_to_string(&file).unwrap();
            if original.is_none_or(|o| o.is_empty()) {
                assert!(
                    configured.starts_with(&format!("version = {layout}\n")),
                    "{ctx}: {configured}"
                );
            }
            let private = dir.path().join("private.toml");
            std::fs::write(
                &private,
                private_config(&configured, dir.path(), image::PAUSE),
            )
            .unwrap();
            let c = Containerd::start_release(&bin, dir.path(), &private, &[]);
            let version = c.ctr(&["version"]).stdout();
            assert!(
                version.contains(&format!("Version:  {series}")),
                "{ctx}: {version}"
            );
            assert_eq!(c.cri_plugin_state(), "ok", "{ctx}: CRI plugin\n{}", c.log());
            let dump: toml::Table = config_dump(&c).parse().unwrap();
            let plugin = if layout == 3 {
                "io.containerd.cri.v1.runtime"
            } else {
                "io.containerd.grpc.v1.cri"
            };
            let cri = &dump["plugins"][plugin];
            let runtimes = &cri["containerd"]["runtimes"];
            assert!(runtimes["runc"].is_table(), "{ctx}: no runc in {cri}");
            assert_eq!(
                cri["containerd"]["default_runtime_name"].as_str(),
                Some("runc"),
                "{ctx}"
            );
            if cdi {
                assert_eq!(cri["enable_cdi"].as_bool(), Some(true), "{ctx}: {cri}");
            } else {
                let m = &runtimes["migcage"];
                assert_eq!(
                    m["options"]["BinaryName"].as_str(),
                    link.to_str(),
                    "{ctx}: {m}"
                );
                assert_eq!(
                    m["container_annotations"].as_array().map(Vec::len),
                    Some(2),
                    "{ctx}: {m}"
                );
            }
            eprintln!("CRI {ctx}: CRI plugin ok, runc kept");
            drop(c);
        }
    }
}

#[test]
fn the_kubelet_path_gives_each_container_exactly_its_instances() {
    if !needs("the_kubelet_path_gives_each_container_exactly_its_instances") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let t0 = Instant::now();
    // Dropped last: after containerd has stopped every pod.
    let parent = CgroupParent(common::unique("migcage-cri"));
    let single = SimHost::new("a100-7x1g");
    let mixed = SimHost::new("a100-mixed");
    let dir = tempfile::Builder::new()
        .prefix("migcage-cri-")
        .tempdir()
        .unwrap();
    // migcage reads the host through this link: the test points it at one host or the other.
    let active: PathBuf = dir.path().join("migcage.toml");
    let point_at = |h: &SimHost| {
        let _ = std::fs::remove_file(&active);
        std::os::unix::fs::symlink(h.config(), &active).unwrap();
    };
    point_at(&single);
    let ctd = configured_node(dir.path(), None, &[("MIGCAGE_CONFIG", &active)]);
    ctd.import(&image::pause_archive(dir.path()));
    ctd.import(&image::busybox_cuda_archive(dir.path()));
    let mut cri = Cri::connect(&ctd.socket(), &dir.path().join("logs"));
    let cg_parent = format!("/{}", parent.0);
    let runner = Runner {
        handler: HANDLER,
        cgroup_parent: &cg_parent,
        check: "",
        expect: &[],
    };
    let setup = t0.elapsed();

    let l1 = single.list();
    let u = |i: &str| common::uuid_of(&l1, i);
    let l2 = mixed.list();
    let two_g = common::uuid_of(&l2, "0:1");
    let volume = format!("{}/{}", "/var/run/nvidia-container-devices", u("0:5"));
    let cdi_uuid = format!("k8s.device-plugin.nvidia.com/gpu={}", u("0:2"));
    let cdi_key = "cdi.k8s.io/nvidia-device-plugin_0a1b2c3d";
    let c = |name, envs, annotations, sees| Case {
        container: ContainerSpec {
            name,
            envs,
            annotations,
            ..Default::default()
        },
        sees,
    };
    let scenarios: Vec<Scenario> = vec![
        (
            &single,
            "envvar, single strategy (MIG UUID)",
            vec![],
            vec![c("cuda", env(&u("0:3")), vec![], vec!["0:3"])],
        ),
        (
            &mixed,
            "envvar, mixed strategy (2g.10gb UUID)",
            vec![],
            vec![c("cuda", env(&two_g), vec![], vec!["0:1"])],
        ),
        (
            &single,
            "volume-mounts",
            vec![],
            vec![Case {
                container: ContainerSpec {
                    name: "cuda",
                    envs: env("/var/run/nvidia-container-devices"),
                    mounts: vec![(PathBuf::from("/dev/null"), volume.clone())],
                    ..Default::default()
                },
                sees: vec!["0:5"],
            }],
        ),
        (
            &single,
            "cdi-annotations, one device by UUID",
            vec![],
            vec![c(
                "cuda",
                vec![],
                annotation(cdi_key, &cdi_uuid),
                vec!["0:2"],
            )],
        ),
        (
            &single,
            "cdi-annotations, two devices by index",
            vec![],
            vec![c(
                "cuda",
                vec![],
                annotation(cdi_key, "nvidia.com/gpu=0:1,nvidia.com/gpu=0:4"),
                vec!["0:1", "0:4"],
            )],
        ),
        (
            &single,
            "two containers, one instance each",
            vec![],
            vec![
                c("first", env(&u("0:0")), vec![], vec!["0:0"]),
                c(
                    "second",
                    vec![],
                    annotation(cdi_key, "nvidia.com/mig=0:6"),
                    vec!["0:6"],
                ),
            ],
        ),
        // containerd gives the pod's annotations to its sandbox too: the sandbox must not
        // lease the host's only 1g.5gb before the container asks for it.
        (
            &mixed,
            "pod annotation migcage.io/profile (pod-wide)",
            vec![("migcage.io/profile", "1g.5gb")],
            vec![c("cuda", vec![], vec![], vec!["0:2"])],
        ),
        (
            &mixed,
            "pod annotation migcage.io/profile.worker",
            vec![("migcage.io/profile.worker", "1g.5gb")],
            vec![
                c("worker", vec![], vec![], vec!["0:2"]),
                // No allocation: the image's NVIDIA_VISIBLE_DEVICES=all is all it has, and it gets
                // the whole GPU (unless requests.env_privileged_only), as with NVIDIA's toolkit.
                c("sidecar", vec![], vec![], vec!["0", "0:0", "0:1", "0:2"]),
            ],
        ),
    ];
    for (host, label, pod_annotations, cases) in scenarios {
        point_at(host);
        runner.run(&mut cri, host, label, &pod_annotations, cases);
    }
    eprintln!(
        "CRI part: {:.1} s in all ({:.1} s to build, import and start; {} over CRI)",
        t0.elapsed().as_secs_f64(),
        setup.as_secs_f64(),
        cri.version()
    );
}

/// Containerd's own CDI injection, with no migcage runtime handler at all: `configure --cdi` on an
/// empty file, migcage's spec in `cdi_spec_dirs`, pods on the default runc. The devices come
/// from CRI's `CDI_devices` field (what the kubelet sends for a device plugin's or DRA driver's
/// CDI devices) or the `cdi.k8s.io/*` annotation (the device plugin's cdi-annotations strategy),
/// the driver files from the spec's mounts, the library links and ld cache from its
/// createRuntime hook.
#[test]
fn containerd_1_7_and_2_inject_migcage_cdi_devices_into_plain_runc_pods() {
    let test = "containerd_1_7_and_2_inject_migcage_cdi_devices_into_plain_runc_pods";
    if !needs(test) {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let parent = CgroupParent(common::unique("migcage-cri-cdi"));
    let cg_parent = format!("/{}", parent.0);
    let host = SimHost::new("a100-7x1g");
    let listing = host.list();
    let u = |i: &str| common::uuid_of(&listing, i);
    // What only the spec gives a container that no migcage hook or runtime touches.
    let lib = "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so";
    let check = format!(
        "[ -f {lib}.550.54.15 ] && echo SPEC-MOUNT-OK; [ -L {lib}.1 ] && echo HOOK-LINK-OK; [ -x /usr/bin/nvidia-smi ] && echo SMI-OK"
    );
    let runner = Runner {
        handler: "",
        cgroup_parent: &cg_parent,
        check: &check,
        expect: &["SPEC-MOUNT-OK", "HOOK-LINK-OK", "SMI-OK"],
    };
    for (suite, series) in [("trixie", "1.7."), ("sid", "2.")] {
        let bin = common::engine_release(suite).join("usr/bin");
        if !bin.join("containerd").is_file() {
            common::skip(&format!("{test}: no containerd {series}x in {} (scripts/engine-releases.sh, run by scripts/deps.sh, fetches Debian {suite}'s)", bin.display()));
            continue;
        }
        let t0 = Instant::now();
        let dir = tempfile::Builder::new()
            .prefix("migcage-cri-cdi-")
            .tempdir()
            .unwrap();
        let file = dir.path().join("config.toml");
        std::fs::write(&file, "").unwrap();
        configure_with(&file, &["--cdi"], &bin);
        let spec_dir = dir.path().join("cdi");
        host.cdi_generate(&["--output", &format!("{}/", spec_dir.display())]);
        let configured = std::fs::read_to_string(&file).unwrap();
        let private = dir.path().join("private.toml");
        std::fs::write(
            &private,
            with_cdi_spec_dir(
                &private_config(&configured, dir.path(), image::PAUSE),
                &spec_dir,
            ),
        )
        .unwrap();
        let ctd = Containerd::start_release(&bin, dir.path(), &private, &[]);
        assert_eq!(ctd.cri_plugin_state(), "ok", "{suite}: {}", ctd.log());
        ctd.import(&image::pause_archive(dir.path()));
        ctd.import(&image::busybox_cuda_archive(dir.path()));
        let mut cri = Cri::connect(&ctd.socket(), &dir.path().join("logs"));
        let version = cri.version();
        assert!(version.contains(&format!(" {series}")), "{version}");
        let by_field = |name, devices: &[String], sees| Case {
            container: ContainerSpec {
                name,
                cdi_devices: devices.to_vec(),
                ..Default::default()
            },
            sees,
        };
        let by_annotation = |name, value: &str, sees| Case {
            container: ContainerSpec {
                name,
                annotations: annotation("cdi.k8s.io/nvidia-device-plugin_0a1b2c3d", value),
                ..Default::default()
            },
            sees,
        };
        let two = format!("nvidia.com/gpu={},nvidia.com/gpu=0:4", u("0:2"));
        let scenarios: Vec<(String, Vec<Case>)> = vec![
            (
                format!("{version}, CDI_devices, one by index"),
                vec![by_field(
                    "cuda",
                    &["nvidia.com/gpu=0:1".into()],
                    vec!["0:1"],
                )],
            ),
            (
                format!("{version}, CDI_devices, two by UUID"),
                vec![by_field(
                    "cuda",
                    &[
                        format!("nvidia.com/gpu={}", u("0:3")),
                        format!("nvidia.com/gpu={}", u("0:5")),
                    ],
                    vec!["0:3", "0:5"],
                )],
            ),
            (
                format!("{version}, cdi.k8s.io annotation, two"),
                vec![by_annotation("cuda", &two, vec!["0:2", "0:4"])],
            ),
            (
                format!("{version}, two containers, one each"),
                vec![
                    by_field("first", &["nvidia.com/gpu=0:0".into()], vec!["0:0"]),
                    by_annotation("second", "nvidia.com/gpu=0:6", vec!["0:6"]),
                ],
            ),
        ];
        for (label, cases) in scenarios {
            runner.run(&mut cri, &host, &label, &[], cases);
        }
        drop(cri);
        drop(ctd);
        eprintln!("CRI {suite} CDI part: {:.1} s", t0.elapsed().as_secs_f64());
    }
    // The spec's poststop hook gave back every lease its createRuntime hook took.
    host.assert_no_leases("containerd CDI pods");
}
