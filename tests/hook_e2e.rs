//! End to end: real runc and crun run busybox containers with `migcage hook` on cgroup v1 and v2,
//! against simulated MIG hosts; a probe inside each container proves what it can reach.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{Bundle, Mode, SimHost, PROBE};
use serde_json::{json, Value};

/// What a container given `devices` (entries of `list --json`) must see.
struct Expected {
    /// Container path -> (major, minor, mode as stat prints it).
    nodes: BTreeMap<String, (u32, u32, String)>,
    gpus: BTreeSet<String>,
    caps: BTreeSet<String>,
}

fn proc_bus(nvml: &str) -> String {
    let lower = nvml.to_ascii_lowercase();
    let (domain, rest) = lower.split_once(':').unwrap();
    format!("{}:{rest}", &domain[domain.len() - 4..])
}

fn node_map(list: &[Value]) -> BTreeMap<String, (u32, u32, String)> {
    list.iter()
        .map(|n| {
            let mode = u32::from_str_radix(n["mode"].as_str().unwrap(), 8).unwrap();
            (
                n["path"].as_str().unwrap().to_string(),
                (
                    n["major"].as_u64().unwrap() as u32,
                    n["minor"].as_u64().unwrap() as u32,
                    format!("{mode:o}"),
                ),
            )
        })
        .collect()
}

/// Entries of `list --json`: GPUs by index, MIG devices by `g:m`.
fn expected(listing: &Value, names: &[&str]) -> Expected {
    let mut e = Expected {
        nodes: BTreeMap::new(),
        gpus: BTreeSet::new(),
        caps: BTreeSet::new(),
    };
    if names.is_empty() {
        return e;
    }
    e.nodes
        .extend(node_map(listing["common_nodes"].as_array().unwrap()));
    for g in listing["gpus"].as_array().unwrap() {
        let minor = g["minor"].as_u64().unwrap();
        let bus = proc_bus(g["pci_bus_id"].as_str().unwrap());
        if names.contains(&g["index"].to_string().as_str()) {
            e.nodes.extend(node_map(g["nodes"].as_array().unwrap()));
            e.gpus.insert(bus.clone());
        }
        for m in g["mig_devices"].as_array().unwrap() {
            if names.contains(&m["index"].as_str().unwrap()) {
                e.nodes.extend(node_map(m["nodes"].as_array().unwrap()));
                e.gpus.insert(bus.clone());
                let (gi, ci) = (
                    m["gpu_instance_id"].as_u64().unwrap(),
                    m["compute_instance_id"].as_u64().unwrap(),
                );
                e.caps.insert(format!(
                    "/proc/driver/nvidia/capabilities/gpu{minor}/mig/gi{gi}/access"
                ));
                e.caps.insert(format!(
                    "/proc/driver/nvidia/capabilities/gpu{minor}/mig/gi{gi}/ci{ci}/access"
                ));
            }
        }
    }
    e
}

/// Run a container asking with `env` / `annotations` / `mounts` and check it sees exactly the
/// devices `names`.
fn check(
    mode: Mode,
    host: &SimHost,
    listing: &Value,
    what: &str,
    setup: impl Fn(&mut Bundle),
    names: &[&str],
) {
    let mut b = Bundle::new(host, &[], PROBE);
    setup(&mut b);
    b.write();
    let run = common::run(mode, &b, host);
    let ctx = format!("{mode:?} {} {what} ({})", host.topology, run.id);
    assert!(run.ok(), "{ctx}: container failed: {}", run.stderr());
    assert!(
        run.stdout().contains("PROBE-DONE"),
        "{ctx}: probe did not finish: {}",
        run.stdout()
    );
    let want = expected(listing, names);
    assert_eq!(run.nodes(), want.nodes, "{ctx}: device nodes");
    let opens = run.opens();
    let allowed: BTreeSet<(u32, u32)> = want.nodes.values().map(|(a, b, _)| (*a, *b)).collect();
    for (rel, (major, minor)) in host.all_nodes() {
        let path = format!("/hostdev/{rel}");
        let want_result = if allowed.contains(&(major, minor)) {
            "ENXIO"
        } else {
            "EPERM"
        };
        assert_eq!(
            opens.get(&path).map(String::as_str),
            Some(want_result),
            "{ctx}: open {path} ({major}:{minor})"
        );
    }
    for path in want.nodes.keys() {
        assert_eq!(
            opens.get(path).map(String::as_str),
            Some("ENXIO"),
            "{ctx}: open {path}"
        );
    }
    let gpus: BTreeSet<String> = run.prefixed("GPU ").into_iter().collect();
    assert_eq!(gpus, want.gpus, "{ctx}: /proc/driver/nvidia/gpus");
    let caps: BTreeSet<String> = run.prefixed("CAP ").into_iter().collect();
    assert_eq!(caps, want.caps, "{ctx}: capabilities");
    if names.is_empty() {
        assert!(
            run.prefixed("PARAM ").is_empty(),
            "{ctx}: untouched container has a driver procfs"
        );
    } else {
        assert_eq!(
            run.prefixed("PARAM "),
            ["ModifyDeviceFiles: 0"],
            "{ctx}: params"
        );
    }
}

fn env(value: &str) -> impl Fn(&mut Bundle) + '_ {
    move |b: &mut Bundle| {
        b.config["process"]["env"]
            .as_array_mut()
            .unwrap()
            .push(json!(format!("NVIDIA_VISIBLE_DEVICES={value}")));
    }
}

fn mig_uuid(listing: &Value, gpu: usize, mig: usize) -> String {
    listing["gpus"][gpu]["mig_devices"][mig]["uuid"]
        .as_str()
        .unwrap()
        .to_string()
}

fn every_form(mode: Mode) {
    if let Some(why) = mode.unavailable() {
        eprintln!("SKIP every_form {mode:?}: {why}");
        return;
    }
    let host = SimHost::new("a100-7x1g");
    let l = host.list();
    let all: Vec<String> = std::iter::once("0".to_string())
        .chain((0..7).map(|i| format!("0:{i}")))
        .collect();
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    let uuid3 = mig_uuid(&l, 0, 3);
    let gpu_uuid = l["gpus"][0]["uuid"].as_str().unwrap().to_string();
    check(mode, &host, &l, "index 0:1", env("0:1"), &["0:1"]);
    check(mode, &host, &l, "MIG uuid", env(&uuid3), &["0:3"]);
    check(mode, &host, &l, "GPU uuid", env(&gpu_uuid), &["0"]);
    check(mode, &host, &l, "all", env("all"), &all);
    check(mode, &host, &l, "none", env("none"), &[]);
    check(mode, &host, &l, "void", env("void"), &[]);
    check(mode, &host, &l, "unset", |_| {}, &[]);
    let uuid5 = mig_uuid(&l, 0, 5);
    check(
        mode,
        &host,
        &l,
        "CDI annotation",
        |b| {
            b.config["annotations"] =
                json!({"cdi.k8s.io/nvidia-device-plugin_abc": format!("nvidia.com/mig={uuid5}")})
        },
        &["0:5"],
    );
    check(
        mode,
        &host,
        &l,
        "migcage annotation",
        |b| b.config["annotations"] = json!({"migcage.io/devices": "0:6"}),
        &["0:6"],
    );
    let uuid2 = mig_uuid(&l, 0, 2);
    check(
        mode,
        &host,
        &l,
        "volume mounts",
        |b| {
            env("/var/run/nvidia-container-devices")(b);
            b.config["mounts"].as_array_mut().unwrap().push(json!({
                "destination": format!("/var/run/nvidia-container-devices/{uuid2}"),
                "type": "bind", "source": "/dev/null", "options": ["bind", "ro"]
            }));
        },
        &["0:2"],
    );

    let two = SimHost::new("two-gpus-one-mig");
    let l2 = two.list();
    check(mode, &two, &l2, "whole non-MIG GPU", env("1"), &["1"]);
    check(mode, &two, &l2, "MIG device 0:2", env("0:2"), &["0:2"]);
    let g0 = l2["gpus"][0]["uuid"].as_str().unwrap().to_string();
    check(
        mode,
        &two,
        &l2,
        "whole MIG-mode GPU by uuid",
        env(&g0),
        &["0"],
    );
    check(
        mode,
        &two,
        &l2,
        "MIG device and other GPU",
        env("0:1,1"),
        &["0:1", "1"],
    );
}

#[test]
fn every_form_runc_cgroup_v1() {
    every_form(Mode::RuncV1);
}

#[test]
fn every_form_runc_cgroup_v2() {
    every_form(Mode::RuncV2);
}

#[test]
fn every_form_crun_cgroup_v1() {
    every_form(Mode::CrunV1);
}

#[test]
fn crun_cgroup_v2_cannot_run_here() {
    // crun raises RLIMIT_MEMLOCK before loading its own eBPF program, and these machines lack
    // CAP_SYS_RESOURCE (root cannot raise the hard limit): see README "Tests that skip".
    eprintln!("SKIP crun on cgroup v2: crun needs CAP_SYS_RESOURCE to raise RLIMIT_MEMLOCK, which this machine does not grant");
}

fn bad_requests(mode: Mode) {
    if let Some(why) = mode.unavailable() {
        eprintln!("SKIP bad_requests {mode:?}: {why}");
        return;
    }
    let host = SimHost::new("two-gpus-one-mig");
    let cases: &[(&[&str], &str)] = &[
        (
            &["NVIDIA_VISIBLE_DEVICES=MIG-deadbeef-0000-0000-0000-000000000000"],
            "no MIG device has that UUID",
        ),
        (
            &["NVIDIA_VISIBLE_DEVICES=7"],
            "there is no GPU 7, this host has GPUs 0 to 1",
        ),
        (
            &["NVIDIA_VISIBLE_DEVICES=0:9"],
            "GPU 0 has MIG devices 0:0 to 0:2",
        ),
        (&["NVIDIA_VISIBLE_DEVICES=1:0"], "GPU 1 is not in MIG mode"),
        (
            &[
                "NVIDIA_VISIBLE_DEVICES=0:0",
                "NVIDIA_MIG_CONFIG_DEVICES=all",
            ],
            "requires a privileged container (CAP_SYS_ADMIN)",
        ),
        (
            &["NVIDIA_VISIBLE_DEVICES=0:x"],
            "NVIDIA_VISIBLE_DEVICES=\"0:x\"",
        ),
        (
            &["NVIDIA_VISIBLE_DEVICES=0,,1"],
            "NVIDIA_VISIBLE_DEVICES=\"0,,1\"",
        ),
    ];
    for (env, want) in cases {
        let mut b = Bundle::new(&host, env, "echo STARTED");
        // crun drops a hook's stderr unless this annotation names a file for it.
        let hook_stderr = b.path().join("hook-stderr");
        if mode == Mode::CrunV1 {
            b.config["annotations"] =
                json!({"run.oci.hooks.stderr": hook_stderr.display().to_string()});
            b.write();
        }
        let run = common::run(mode, &b, &host);
        let ctx = format!("{mode:?} {env:?} ({})", run.id);
        assert!(!run.ok(), "{ctx}: the container started");
        assert!(
            !run.stdout().contains("STARTED"),
            "{ctx}: the container's process ran"
        );
        // runc quotes the hook's stderr inside its own message: undo its escaping.
        let mut stderr = run.stderr().replace("\\\"", "\"");
        if mode == Mode::CrunV1 {
            stderr = std::fs::read_to_string(&hook_stderr).unwrap_or_default();
            assert_eq!(stderr.lines().count(), 1, "{ctx}: one line: {stderr}");
        }
        let line = stderr
            .lines()
            .find(|l| l.contains("migcage:"))
            .map(str::to_string);
        let line = line.unwrap_or_else(|| {
            panic!(
                "{ctx}: no migcage line in the runtime's error: {}",
                run.stderr()
            )
        });
        assert!(line.contains(want), "{ctx}: {line}");
    }
}

#[test]
fn bad_requests_runc_cgroup_v1() {
    bad_requests(Mode::RuncV1);
}

#[test]
fn bad_requests_runc_cgroup_v2() {
    bad_requests(Mode::RuncV2);
}

#[test]
fn bad_requests_crun_cgroup_v1() {
    bad_requests(Mode::CrunV1);
}

/// The hook registered at three points runs three times; the container gets each node once and
/// the cgroup v2 program is still exactly one.
#[test]
fn hook_is_idempotent_across_stages() {
    for mode in [Mode::RuncV1, Mode::RuncV2] {
        if let Some(why) = mode.unavailable() {
            eprintln!("SKIP hook_is_idempotent_across_stages {mode:?}: {why}");
            return;
        }
        let host = SimHost::new("a100-7x1g");
        let l = host.list();
        let mut b = Bundle::new(&host, &["NVIDIA_VISIBLE_DEVICES=0:4"], PROBE);
        let hook = b.config["hooks"]["prestart"][0].clone();
        for stage in ["createRuntime", "createContainer"] {
            let mut h = hook.clone();
            h["args"] = json!(["migcage", "hook", stage]);
            b.config["hooks"][stage] = json!([h]);
        }
        b.write();
        let run = common::run(mode, &b, &host);
        assert!(run.ok(), "{mode:?}: {}", run.stderr());
        assert_eq!(run.nodes(), expected(&l, &["0:4"]).nodes, "{mode:?}");
        assert_eq!(run.prefixed("GPU ").len(), 1, "{mode:?}");
    }
}
