//! Privilege end to end: real runc containers on a simulated A100, probed from inside.
//!
//! - Under the default policy, an unprivileged container cannot get the MIG config or monitor
//!   capability: asking for it stops the container, and no request (not even `all`) hands out
//!   their nodes. A privileged container that asks gets them (so the probe can see them).
//! - With `env_privileged_only = true`, an unprivileged container's `NVIDIA_VISIBLE_DEVICES`
//!   gives it nothing (every GPU node refused), while a privileged one, and the kubelet's
//!   annotation, still get their device.
//! - A hostile spec or image cannot make migcage (root, on the host) reach a host path: bind
//!   mounts of host directories over `/dev/nvidia-caps`, `/proc/driver` and
//!   `/proc/driver/nvidia`, and rootfs symlinks (`/dev` and `/dev/nvidia-caps` pointing at host
//!   directories, absolute and with `..`): the host directories stay exactly as they were, and the
//!   container gets no device it did not ask for.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{Bundle, Mode, SimHost, PROBE};
use serde_json::{json, Value};

/// The caps minors of `mig/config` and `mig/monitor` on a simulated host (from mig-minors).
fn config_monitor_minors(host: &SimHost) -> (u32, u32) {
    let text = std::fs::read_to_string(host.dir.path().join("proc/driver/nvidia-caps/mig-minors"))
        .unwrap();
    let find = |name: &str| {
        text.lines()
            .find_map(|l| {
                l.strip_prefix(name)
                    .and_then(|r| r.strip_prefix(' '))
                    .and_then(|m| m.trim().parse().ok())
            })
            .unwrap()
    };
    (find("config"), find("monitor"))
}

fn make_privileged(b: &mut Bundle) {
    for set in ["bounding", "effective", "permitted"] {
        b.config["process"]["capabilities"][set]
            .as_array_mut()
            .unwrap()
            .push(json!("CAP_SYS_ADMIN"));
    }
}

/// The probe's verdict on the host's caps node `nvidia-cap<minor>` (via /hostdev), and whether
/// the container has a node of that number.
fn caps_access(run: &common::Run, caps_major: u32, minor: u32) -> (String, bool) {
    let open = run
        .opens()
        .get(&format!("/hostdev/nvidia-caps/nvidia-cap{minor}"))
        .cloned()
        .unwrap_or_default();
    let has = run
        .nodes()
        .values()
        .any(|(ma, mi, _)| *ma == caps_major && *mi == minor);
    (open, has)
}

fn caps_major(host: &SimHost) -> u32 {
    let text = std::fs::read_to_string(host.dir.path().join("proc/devices")).unwrap();
    text.lines()
        .find_map(|l| {
            l.strip_suffix(" nvidia-caps")
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap()
}

#[test]
fn unprivileged_containers_never_get_mig_config_or_monitor() {
    for mode in [Mode::RuncV1, Mode::RuncV2] {
        if let Some(why) = mode.unavailable() {
            common::skip(&format!(
                "unprivileged_containers_never_get_mig_config_or_monitor {mode:?}: {why}"
            ));
            return;
        }
        let host = SimHost::new("a100-7x1g");
        let (config, monitor) = config_monitor_minors(&host);
        let major = caps_major(&host);

        // Asking for them stops the container.
        for var in [
            "NVIDIA_MIG_CONFIG_DEVICES=all",
            "NVIDIA_MIG_MONITOR_DEVICES=0",
        ] {
            let b = Bundle::new(&host, &["NVIDIA_VISIBLE_DEVICES=0:1", var], "echo STARTED");
            let run = common::run(mode, &b, &host);
            assert!(
                !run.ok(),
                "{mode:?} {var}: an unprivileged container started"
            );
            assert!(!run.stdout().contains("STARTED"), "{mode:?} {var}");
            assert!(
                run.stderr()
                    .contains("requires a privileged container (CAP_SYS_ADMIN)"),
                "{mode:?} {var}: {}",
                run.stderr()
            );
        }

        // No request hands their nodes out: not `all`, not a GPU by UUID.
        let gpu_uuid = host.list()["gpus"][0]["uuid"].as_str().unwrap().to_string();
        for ask in ["all", "0", gpu_uuid.as_str()] {
            let b = Bundle::new(&host, &[&format!("NVIDIA_VISIBLE_DEVICES={ask}")], PROBE);
            let run = common::run(mode, &b, &host);
            assert!(run.ok(), "{mode:?} {ask}: {}", run.stderr());
            assert!(run.stdout().contains("PROBE-DONE"), "{mode:?} {ask}");
            for minor in [config, monitor] {
                assert_eq!(
                    caps_access(&run, major, minor),
                    ("EPERM".to_string(), false),
                    "{mode:?} {ask}: caps minor {minor}"
                );
            }
        }

        // A privileged container that asks gets exactly what it asked for.
        let mut b = Bundle::new(
            &host,
            &[
                "NVIDIA_VISIBLE_DEVICES=0:1",
                "NVIDIA_MIG_CONFIG_DEVICES=all",
            ],
            PROBE,
        );
        make_privileged(&mut b);
        b.write();
        let run = common::run(mode, &b, &host);
        assert!(run.ok(), "{mode:?} privileged: {}", run.stderr());
        assert_eq!(
            caps_access(&run, major, config),
            ("ENXIO".to_string(), true),
            "{mode:?} privileged: config"
        );
        assert_eq!(
            caps_access(&run, major, monitor),
            ("EPERM".to_string(), false),
            "{mode:?} privileged: monitor was not asked for"
        );
    }
}

/// Every GPU node of the host refused, and none in the container's /dev.
fn assert_no_gpu(run: &common::Run, host: &SimHost, ctx: &str) {
    assert!(run.ok(), "{ctx}: {}", run.stderr());
    assert!(
        run.stdout().contains("PROBE-DONE"),
        "{ctx}: {}",
        run.stdout()
    );
    assert!(run.nodes().is_empty(), "{ctx}: nodes {:?}", run.nodes());
    let opens = run.opens();
    for rel in host.all_nodes().keys() {
        assert_eq!(
            opens.get(&format!("/hostdev/{rel}")).map(String::as_str),
            Some("EPERM"),
            "{ctx}: /hostdev/{rel}"
        );
    }
}

/// The container's own node for `0:1` opens (ENXIO: allowed, no driver behind it).
fn assert_got_0_1(run: &common::Run, listing: &Value, ctx: &str) {
    assert!(run.ok(), "{ctx}: {}", run.stderr());
    let want: Vec<String> = listing["gpus"][0]["mig_devices"][1]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["path"].as_str().unwrap().to_string())
        .collect();
    let opens = run.opens();
    for p in &want {
        assert_eq!(
            opens.get(p).map(String::as_str),
            Some("ENXIO"),
            "{ctx}: {p}"
        );
    }
}

#[test]
fn env_privileged_only_keeps_the_env_from_unprivileged_containers() {
    let mode = Mode::RuncV1;
    if let Some(why) = mode.unavailable() {
        common::skip(&format!(
            "env_privileged_only_keeps_the_env_from_unprivileged_containers: {why}"
        ));
        return;
    }
    let host = SimHost::new("a100-7x1g");
    let listing = host.list();
    let text = std::fs::read_to_string(host.config()).unwrap();
    let secured = text.replace("env_privileged_only = false", "env_privileged_only = true");
    assert_ne!(
        secured, text,
        "the simulated config has no env_privileged_only line"
    );
    std::fs::write(host.config(), secured).unwrap();

    // Unprivileged, by the env var: nothing (the container starts, untouched).
    for ask in ["0:1", "all", "0"] {
        let b = Bundle::new(&host, &[&format!("NVIDIA_VISIBLE_DEVICES={ask}")], PROBE);
        let run = common::run(mode, &b, &host);
        assert_no_gpu(&run, &host, &format!("unprivileged env {ask}"));
    }
    // CAP_SYS_ADMIN only where it does not count (effective and permitted, not the bounding
    // set, which is what the container keeps across exec): still unprivileged.
    let mut b = Bundle::new(&host, &["NVIDIA_VISIBLE_DEVICES=0:1"], PROBE);
    for set in ["effective", "permitted"] {
        b.config["process"]["capabilities"][set]
            .as_array_mut()
            .unwrap()
            .push(json!("CAP_SYS_ADMIN"));
    }
    b.write();
    let run = common::run(mode, &b, &host);
    if run.ok() {
        assert_no_gpu(&run, &host, "CAP_SYS_ADMIN outside the bounding set");
    }

    // Privileged, by the env var: its device.
    let mut b = Bundle::new(&host, &["NVIDIA_VISIBLE_DEVICES=0:1"], PROBE);
    make_privileged(&mut b);
    b.write();
    assert_got_0_1(&common::run(mode, &b, &host), &listing, "privileged env");

    // Unprivileged, by the kubelet's annotation: its device.
    let mut b = Bundle::new(&host, &[], PROBE);
    b.config["annotations"] = json!({"cdi.k8s.io/device-plugin": "nvidia.com/mig=0:1"});
    b.write();
    assert_got_0_1(
        &common::run(mode, &b, &host),
        &listing,
        "unprivileged annotation",
    );
}

/// Every entry under `dir` (recursively) with its type and device number: what a host
/// directory holds.
fn tree(dir: &Path) -> BTreeMap<String, String> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let m = std::fs::symlink_metadata(e.path()).unwrap();
            let t = m.file_type();
            let kind = if t.is_dir() {
                stack.push(e.path());
                "dir".to_string()
            } else if t.is_char_device() {
                format!("char {}", m.rdev())
            } else if t.is_symlink() {
                format!("link {:?}", std::fs::read_link(e.path()).unwrap())
            } else {
                format!("file {}", m.len())
            };
            out.insert(
                e.path().strip_prefix(dir).unwrap().display().to_string(),
                kind,
            );
        }
    }
    out
}

/// What a hostile container is made of: its bundle, given the request and the host directory it
/// aims at.
type Hostile<'a> = &'a dyn Fn(&str, &Path) -> Bundle;

/// A hostile container, run twice against fresh copies of a host directory: once asking for no
/// device (`void`: the hook does nothing; what changes is the runtime's own doing, as runc and
/// crun follow some of these paths themselves) and once asking for `0:1`. migcage must add
/// nothing to what the runtime did, leave no mount on the directory, and give the container no
/// node it did not ask for. Returns what went wrong (every case runs, so one report shows every
/// hole).
fn hostile(
    mode: Mode,
    host: &SimHost,
    what: &str,
    victims: &Path,
    make: Hostile,
    asked: &[(u32, u32)],
) -> Vec<String> {
    let mut problems = Vec::new();
    let mut added = Vec::new();
    for ask in ["void", "0:1"] {
        let victim = victims.join(format!(
            "{}-{ask}",
            what.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
        ));
        std::fs::create_dir_all(victim.join("sub")).unwrap();
        std::fs::write(victim.join("keep"), b"host data").unwrap();
        let before = tree(&victim);
        let b = make(ask, &victim);
        let run = common::run(mode, &b, host);
        let ctx = format!("{mode:?} {what} asking {ask} ({})", run.id);
        let after = tree(&victim);
        added.push(
            after
                .into_iter()
                .filter(|(k, _)| !before.contains_key(k))
                .collect::<BTreeMap<_, _>>(),
        );
        let left = common::mounts_under(&[&victim]);
        if !left.is_empty() {
            problems.push(format!("{ctx}: mounts left on the host: {left:?}"));
        }
        if run.ok() {
            if !run.stdout().contains("PROBE-DONE") {
                problems.push(format!("{ctx}: the probe did not finish: {}", run.stdout()));
            }
            let opens = run.opens();
            for (rel, (major, minor)) in host.all_nodes() {
                let want = if ask != "void" && asked.contains(&(major, minor)) {
                    "ENXIO"
                } else {
                    "EPERM"
                };
                let got = opens.get(&format!("/hostdev/{rel}")).map(String::as_str);
                if got != Some(want) {
                    problems.push(format!(
                        "{ctx}: /hostdev/{rel} opens with {got:?}, want {want}"
                    ));
                }
            }
        } else if run.stdout().contains("PROBE-DONE") {
            problems.push(format!("{ctx}: failed, yet its process ran"));
        } else {
            // Failing closed is fine.
            eprintln!(
                "{ctx}: the container did not start: {}",
                run.stderr().trim()
            );
        }
    }
    let by_migcage: Vec<_> = added[1]
        .iter()
        .filter(|(k, v)| added[0].get(*k) != Some(*v))
        .collect();
    if !by_migcage.is_empty() {
        problems.push(format!(
            "{mode:?} {what}: migcage wrote into the host directory: {by_migcage:?}"
        ));
    }
    problems
}

/// The (major, minor) of every node a request for `0:1` gets.
fn nodes_of_0_1(listing: &Value) -> Vec<(u32, u32)> {
    listing["common_nodes"]
        .as_array()
        .unwrap()
        .iter()
        .chain(
            listing["gpus"][0]["mig_devices"][1]["nodes"]
                .as_array()
                .unwrap(),
        )
        .map(|n| {
            (
                n["major"].as_u64().unwrap() as u32,
                n["minor"].as_u64().unwrap() as u32,
            )
        })
        .collect()
}

#[test]
fn spec_mounts_and_rootfs_symlinks_do_not_reach_the_host() {
    let mut problems = Vec::new();
    for mode in [Mode::RuncV1, Mode::CrunV1] {
        if let Some(why) = mode.unavailable() {
            common::skip(&format!(
                "spec_mounts_and_rootfs_symlinks_do_not_reach_the_host {mode:?}: {why}"
            ));
            return;
        }
        let host = SimHost::new("a100-7x1g");
        let listing = host.list();
        let asked = nodes_of_0_1(&listing);
        let scratch = tempfile::Builder::new()
            .prefix("migcage-victim-")
            .tempdir()
            .unwrap();
        let bundle =
            |ask: &str| Bundle::new(&host, &[&format!("NVIDIA_VISIBLE_DEVICES={ask}")], PROBE);

        // Spec bind mounts of host directories over the paths migcage writes to (a bind on /dev
        // replaces the runtime's tmpfs).
        for (dest, ro) in [
            ("/dev", false),
            ("/dev/nvidia-caps", false),
            ("/dev/nvidia-caps", true),
            ("/proc/driver", false),
            ("/proc/driver/nvidia", false),
            ("/proc/driver/nvidia/capabilities", false),
        ] {
            let make = |ask: &str, victim: &Path| {
                let mut b = bundle(ask);
                let mounts = b.config["mounts"].as_array_mut().unwrap();
                if dest == "/dev" {
                    mounts.retain(|m| m["destination"] != "/dev");
                }
                let mut options = vec!["rbind"];
                if ro {
                    options.push("ro");
                }
                let at = mounts
                    .iter()
                    .position(|m| m["destination"] == "/dev")
                    .map_or(mounts.len(), |i| i + 1);
                let at = if dest == "/dev" { 1 } else { at };
                mounts.insert(
                    at,
                    json!({
                        "destination": dest, "type": "bind",
                        "source": victim.display().to_string(), "options": options
                    }),
                );
                b.write();
                b
            };
            problems.extend(hostile(
                mode,
                &host,
                &format!("bind mount of a host directory on {dest} (ro {ro})"),
                scratch.path(),
                &make,
                &asked,
            ));
        }

        // Rootfs symlinks out of the rootfs. Without the spec's /dev tmpfs, the image's /dev is
        // the container's.
        for (link, absolute) in [
            ("dev", true),
            ("dev", false),
            ("dev/nvidia-caps", true),
            ("dev/nvidia-caps", false),
        ] {
            let make = |ask: &str, victim: &Path| {
                let mut b = bundle(ask);
                b.config["mounts"].as_array_mut().unwrap().retain(|m| {
                    m["destination"] != "/dev"
                        && m["destination"] != "/dev/pts"
                        && m["destination"] != "/dev/shm"
                });
                b.write();
                let at = b.path().join("rootfs").join(link);
                let _ = std::fs::remove_dir_all(&at);
                std::fs::create_dir_all(at.parent().unwrap()).unwrap();
                let target = if absolute {
                    victim.display().to_string()
                } else {
                    let rel = victim.display().to_string();
                    format!("{}{}", "../".repeat(24), rel.trim_start_matches('/'))
                };
                std::os::unix::fs::symlink(&target, &at).unwrap();
                b
            };
            let how = if absolute { "absolute" } else { "../.." };
            problems.extend(hostile(
                mode,
                &host,
                &format!("rootfs symlink /{link} to a host directory ({how})"),
                scratch.path(),
                &make,
                &asked,
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "migcage reached the host through the spec or the image:\n  {}",
        problems.join("\n  ")
    );
}
