//! End to end with Podman 4.3 from Debian: a container asking through the OCI hooks directory
//! (`--hooks-dir` with migcage's hooks.d JSON, `-e NVIDIA_VISIBLE_DEVICES=...`) and through CDI
//! (`--device nvidia.com/gpu=0:1` from `migcage cdi generate`) gets exactly its instance.
//!
//! Each Podman here has its own storage (`--root`, `--runroot`, `--tmpdir` in a temporary
//! directory, vfs), runc, cgroupfs, no network. Podman 4.3 reads CDI specs only from /etc/cdi
//! and /var/run/cdi (it has no `cdi_spec_dirs` setting): every podman command runs in a private
//! mount namespace where the test's spec directory is bind-mounted on /var/run/cdi, so the host's
//! CDI directories are never touched.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use common::{assert_sees_exactly, Run, SimHost, MIGCAGE, PROBE};
use serde_json::{json, Value};

/// /run/cdi, the mount point of the test's spec directories.
const CDI_MOUNTPOINT: &str = "/run/cdi";
/// The parent cgroup Podman's cgroupfs manager makes (with `conmon` inside) in every hierarchy.
const PODMAN_CGROUP: &str = "libpod_parent";

/// What the tests of this file share on the host: /run/cdi and Podman's parent cgroups, made by
/// the first test when the host has none, removed by the last one.
struct Shared {
    users: usize,
    made_mountpoint: bool,
    cgroups_before: Vec<PathBuf>,
}

static SHARED: Mutex<Shared> = Mutex::new(Shared {
    users: 0,
    made_mountpoint: false,
    cgroups_before: Vec::new(),
});

struct HostGuard;

impl HostGuard {
    fn take() -> HostGuard {
        let mut g = SHARED.lock().unwrap_or_else(|e| e.into_inner());
        if g.users == 0 {
            // Made (again, if something else removes it meanwhile) by each podman command.
            g.made_mountpoint = !Path::new(CDI_MOUNTPOINT).exists();
            g.cgroups_before = common::cgroups_named(PODMAN_CGROUP);
        }
        g.users += 1;
        HostGuard
    }
}

impl Drop for HostGuard {
    fn drop(&mut self) {
        let mut g = SHARED.lock().unwrap_or_else(|e| e.into_inner());
        g.users -= 1;
        if g.users > 0 {
            return;
        }
        if g.made_mountpoint {
            let _ = std::fs::remove_dir(CDI_MOUNTPOINT);
            g.made_mountpoint = false;
        }
        for cg in common::cgroups_named(PODMAN_CGROUP) {
            if !g.cgroups_before.contains(&cg) {
                let _ = std::fs::remove_dir(cg.join("conmon"));
                let _ = std::fs::remove_dir(&cg);
            }
        }
    }
}

/// A Podman with its own storage, state, hooks and CDI directories.
struct Podman {
    dir: tempfile::TempDir,
    _host: HostGuard,
}

const IMAGE: &str = "localhost/busybox:migcage";

impl Podman {
    fn new(test: &str) -> Option<Podman> {
        if !common::need_programs(
            test,
            &[
                ("podman", "podman"),
                ("runc", "runc"),
                ("busybox", "busybox-static"),
                ("unshare", "util-linux"),
            ],
        ) {
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("migcage-podman-")
            .tempdir()
            .unwrap();
        for d in ["cdi", "hooks.d", "tmp"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        let p = Podman {
            dir,
            _host: HostGuard::take(),
        };
        let tar = common::busybox_tar(p.dir.path());
        let out = p.podman(&["import", tar.to_str().unwrap(), IMAGE]);
        assert!(out.ok(), "podman import: {}", out.stderr());
        Some(p)
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// `podman <global flags> ARGS`, in a private mount namespace with the test's CDI directory on
    /// /var/run/cdi.
    fn podman(&self, args: &[&str]) -> Run {
        let d = self.dir.path().display();
        let mut cmd = format!(
            "mkdir -p {CDI_MOUNTPOINT} && mount --bind {d}/cdi {CDI_MOUNTPOINT} && exec podman --root {d}/root --runroot {d}/runroot --tmpdir {d}/libpod --storage-driver vfs --cgroup-manager cgroupfs --events-backend none --runtime runc --hooks-dir {d}/hooks.d"
        );
        for a in args {
            cmd.push(' ');
            cmd.push_str(&shell_quote(a));
        }
        let output = Command::new("timeout")
            .args([
                "90",
                "unshare",
                "-m",
                "--propagation",
                "private",
                "sh",
                "-c",
            ])
            .arg(&cmd)
            .env("TMPDIR", self.path("tmp"))
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        Run {
            id: args.join(" "),
            output,
        }
    }

    /// `podman run` of the probe with `extra` flags and the host's nodes on /hostdev.
    fn run_probe(&self, host: &SimHost, extra: &[&str]) -> Run {
        let hostdev = format!("{}:/hostdev:ro", host.dev().display());
        let mut args = vec![
            "run",
            "--rm",
            "--network=none",
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=1024:1024",
            "-v",
            &hostdev,
        ];
        args.extend_from_slice(extra);
        args.extend_from_slice(&[IMAGE, "sh", "-c", PROBE]);
        self.podman(&args)
    }

    /// migcage's hooks.d file (hooks/oci-migcage-hook.json) with this build's binary and the
    /// simulated host's configuration.
    fn install_hook(&self, host: &SimHost) {
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("hooks/oci-migcage-hook.json");
        let mut hook: Value = serde_json::from_slice(&std::fs::read(&shipped).unwrap()).unwrap();
        assert_eq!(hook["hook"]["args"], json!(["migcage", "hook", "prestart"]));
        hook["hook"]["path"] = json!(MIGCAGE);
        hook["hook"]["env"] = json!([format!("MIGCAGE_CONFIG={}", host.config().display())]);
        std::fs::write(
            self.path("hooks.d/oci-migcage-hook.json"),
            serde_json::to_vec_pretty(&hook).unwrap(),
        )
        .unwrap();
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.podman(&["rm", "--all", "--force", "--time", "0"]);
        let left = common::mounts_under(&[self.dir.path()]);
        for m in left.iter().rev() {
            let _ = Command::new("umount").args(["-l", m]).output();
        }
        if !std::thread::panicking() {
            assert!(left.is_empty(), "podman left mounts: {left:?}");
        }
    }
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[test]
fn hooks_dir_gives_the_asked_instance() {
    let Some(podman) = Podman::new("hooks_dir_gives_the_asked_instance") else {
        return;
    };
    let host = SimHost::new("a100-7x1g");
    let listing = host.list();
    podman.install_hook(&host);
    let uuid = common::uuid_of(&listing, "0:4");
    let by_uuid = format!("NVIDIA_VISIBLE_DEVICES={uuid}");
    for (env, names) in [
        ("NVIDIA_VISIBLE_DEVICES=0:1", vec!["0:1"]),
        (by_uuid.as_str(), vec!["0:4"]),
        ("NVIDIA_VISIBLE_DEVICES=void", vec![]),
    ] {
        let run = podman.run_probe(&host, &["-e", env]);
        let ctx = format!("podman --hooks-dir, {env}");
        assert!(run.ok(), "{ctx}: {}", run.stderr());
        assert_sees_exactly(&run, &host, &listing, &names, &ctx);
    }
    // Without the variable the hook (registered for every container) leaves it untouched.
    let run = podman.run_probe(&host, &[]);
    assert!(run.ok(), "{}", run.stderr());
    assert_sees_exactly(&run, &host, &listing, &[], "podman --hooks-dir, no request");
    // A bad request stops the container with migcage's line.
    let run = podman.run_probe(&host, &["-e", "NVIDIA_VISIBLE_DEVICES=0:9"]);
    assert!(!run.ok(), "a container asking for 0:9 started");
    let err = run.stderr().replace("\\\"", "\"");
    assert!(
        err.contains(
            "migcage: NVIDIA_VISIBLE_DEVICES asks for 0:9: GPU 0 has MIG devices 0:0 to 0:6"
        ),
        "{err}"
    );
}

#[test]
fn cdi_devices_give_the_named_instances() {
    let Some(podman) = Podman::new("cdi_devices_give_the_named_instances") else {
        return;
    };
    let host = SimHost::new("a100-7x1g");
    let listing = host.list();
    // The default YAML spec (kind nvidia.com/gpu) and a JSON one of the class mig.
    let cdi = podman.path("cdi");
    host.cdi_generate(&["--output", &format!("{}/", cdi.display())]);
    host.cdi_generate(&[
        "--kind",
        "nvidia.com/mig",
        "--output",
        cdi.join("nvidia.com-mig.json").to_str().unwrap(),
    ]);
    assert!(cdi.join("nvidia.com-gpu.yaml").is_file());
    let uuid3 = common::uuid_of(&listing, "0:3");
    let gpu = format!("nvidia.com/gpu={uuid3}");
    let all: Vec<String> = std::iter::once("0".to_string())
        .chain((0..7).map(|i| format!("0:{i}")))
        .collect();
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (vec!["--device", "nvidia.com/gpu=0:1"], vec!["0:1"]),
        (vec!["--device", &gpu], vec!["0:3"]),
        (vec!["--device", "nvidia.com/mig=0:4"], vec!["0:4"]),
        // Two devices: each one's mount reaches the hook (an env edit would keep only the last).
        (
            vec![
                "--device",
                "nvidia.com/gpu=0:2",
                "--device",
                "nvidia.com/gpu=0:5",
            ],
            vec!["0:2", "0:5"],
        ),
        (vec!["--device", "nvidia.com/gpu=all"], all),
        // The image's NVIDIA_VISIBLE_DEVICES=all (as in nvidia/cuda) gives way to the CDI device.
        (
            vec![
                "-e",
                "NVIDIA_VISIBLE_DEVICES=all",
                "--device",
                "nvidia.com/gpu=0:6",
            ],
            vec!["0:6"],
        ),
    ];
    for (flags, names) in &cases {
        let run = podman.run_probe(&host, flags);
        let ctx = format!("podman {}", flags.join(" "));
        assert!(run.ok(), "{ctx}: {}", run.stderr());
        assert_sees_exactly(&run, &host, &listing, names, &ctx);
    }
    // A device the spec does not have: Podman refuses it before anything runs.
    let run = podman.run_probe(&host, &["--device", "nvidia.com/gpu=0:7"]);
    assert!(!run.ok());
    assert!(
        run.stderr()
            .contains("unresolvable CDI devices nvidia.com/gpu=0:7"),
        "{}",
        run.stderr()
    );
}

const UUIDS: [&str; 3] = [
    "MIG-aaaaaaaa-0000-4000-8000-00000000000a",
    "MIG-bbbbbbbb-0000-4000-8000-00000000000b",
    "MIG-cccccccc-0000-4000-8000-00000000000c",
];

fn topology(second: &str) -> String {
    format!(
        "name = \"podman-stale\"\ndriver_version = \"550.54.15\"\n\n[[gpus]]\nmodel = \"a100-sxm4-40gb\"\npci_bus_id = \"00000000:07:00.0\"\nmig = true\ngpu_instances = [\n  {{ profile = \"1g.5gb\", compute_instances = [{{ uuid = \"{}\" }}] }},\n  {{ profile = \"1g.5gb\", compute_instances = [{{ uuid = \"{second}\" }}] }},\n]\n",
        UUIDS[0]
    )
}

/// A spec generated before an instance was re-created names it by index, but the index stays
/// pinned to the old instance's UUID: the container does not start (it never gets the new
/// instance by accident), and `cdi list --check` says why.
#[test]
fn stale_cdi_index_is_refused() {
    let Some(podman) = Podman::new("stale_cdi_index_is_refused") else {
        return;
    };
    let topo = podman.path("topology.toml");
    let root = podman.path("sim");
    let simulate = || {
        let out = Command::new(MIGCAGE)
            .args([
                "simulate",
                "--topology",
                topo.to_str().unwrap(),
                "--root",
                root.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    std::fs::write(&topo, topology(UUIDS[1])).unwrap();
    simulate();
    let config = root.join("config.toml");
    let out = Command::new(MIGCAGE)
        .arg("--config")
        .arg(&config)
        .args([
            "cdi",
            "generate",
            "--output",
            podman.path("cdi/nvidia.com-gpu.yaml").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = podman.podman(&[
        "run",
        "--rm",
        "--network=none",
        "--ulimit",
        "nofile=1024:1024",
        "--ulimit",
        "nproc=1024:1024",
        "--device",
        "nvidia.com/gpu=0:1",
        IMAGE,
        "true",
    ]);
    assert!(run.ok(), "before the change: {}", run.stderr());

    std::fs::write(&topo, topology(UUIDS[2])).unwrap();
    simulate();
    let run = podman.podman(&[
        "run",
        "--rm",
        "--network=none",
        "--ulimit",
        "nofile=1024:1024",
        "--ulimit",
        "nproc=1024:1024",
        "--device",
        "nvidia.com/gpu=0:1",
        IMAGE,
        "sh",
        "-c",
        "echo STARTED",
    ]);
    assert!(!run.ok(), "a stale index started: {}", run.stdout());
    assert!(!run.stdout().contains("STARTED"));
    let err = run.stderr().replace("\\\"", "\"");
    assert!(
        err.contains(&format!(
            "asks for {}: no MIG device has that UUID; it may have been destroyed or re-created",
            UUIDS[1]
        )),
        "{err}"
    );
    let out = Command::new(MIGCAGE)
        .arg("--config")
        .arg(&config)
        .args([
            "cdi",
            "list",
            "--check",
            "--spec",
            podman.path("cdi").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("0:1 is now {}", UUIDS[2])), "{err}");
}

/// Every lease in the simulated host's store, live or not: (container, UUID).
fn all_leases(host: &SimHost) -> Vec<(String, String)> {
    let state_dir = migcage_simulate::config::state_dir(host.dir.path());
    migcage::host::lease::Store::new(&state_dir)
        .read()
        .unwrap_or_else(|e| panic!("lease store {}: {e}", state_dir.display()))
        .into_iter()
        .map(|l| (l.container, l.uuid))
        .collect()
}

/// The CDI spec's poststop hook gives a container's lease back when the container goes:
/// `podman run --rm` leaves no lease (not even one whose holder is gone, waiting to be found
/// stale), and a detached container holds its instance until `podman rm`.
#[test]
fn cdi_containers_leave_no_lease() {
    let Some(podman) = Podman::new("cdi_containers_leave_no_lease") else {
        return;
    };
    let host = SimHost::new("a100-7x1g");
    let listing = host.list();
    let cdi = podman.path("cdi");
    host.cdi_generate(&["--output", &format!("{}/", cdi.display())]);
    let run = podman.run_probe(&host, &["--device", "nvidia.com/gpu=0:1"]);
    assert!(run.ok(), "run --rm: {}", run.stderr());
    assert_sees_exactly(&run, &host, &listing, &["0:1"], "podman run --rm");
    assert_eq!(all_leases(&host), [], "after podman run --rm");

    let flags = [
        "run",
        "-d",
        "--name",
        "migcage-lease",
        "--network=none",
        "--ulimit",
        "nofile=1024:1024",
        "--ulimit",
        "nproc=1024:1024",
        "--device",
        "nvidia.com/gpu=0:2",
        IMAGE,
        "sleep",
        "60",
    ];
    let run = podman.podman(&flags);
    assert!(run.ok(), "run -d: {}", run.stderr());
    let uuid = common::uuid_of(&listing, "0:2");
    let held = all_leases(&host);
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[0].1, uuid, "the running container holds 0:2");
    let run = podman.podman(&["rm", "--force", "--time", "0", "migcage-lease"]);
    assert!(run.ok(), "rm: {}", run.stderr());
    assert_eq!(all_leases(&host), [], "after podman rm");
}

/// The driver files' container paths in the spec's top level, in `dir`'s nvidia.com-gpu.yaml.
fn driver_mounts(spec: &Value) -> Vec<String> {
    spec["containerEdits"]["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["containerPath"].as_str().unwrap().to_string())
        .collect()
}

/// A CDI consumer without migcage (no hooks.d file, and the spec's own hook taken out) gets the
/// driver's files from the spec's mounts alone; with the spec's hook, each is mounted once (the
/// hook finds them in place).
#[test]
fn the_cdi_spec_alone_gives_the_driver_files() {
    let Some(podman) = Podman::new("the_cdi_spec_alone_gives_the_driver_files") else {
        return;
    };
    let host = SimHost::new("a100-7x1g");
    let file = podman.path("cdi/nvidia.com-gpu.json");
    host.cdi_generate(&["--output", file.to_str().unwrap()]);
    let full: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let files = driver_mounts(&full);
    assert!(
        files.iter().any(|f| f.contains("libcuda.so."))
            && files.iter().any(|f| f.ends_with("/nvidia-smi")),
        "the spec has no driver files: {files:?}"
    );
    let mut script = String::new();
    for f in &files {
        script.push_str(&format!(
            "[ -f {f} ] && echo \"FILE {f} $(grep -c ' {f} ' /proc/self/mountinfo)\"; "
        ));
    }
    assert!(std::fs::read_dir(podman.path("hooks.d"))
        .unwrap()
        .next()
        .is_none());
    let mut alone = full.clone();
    alone["containerEdits"]
        .as_object_mut()
        .unwrap()
        .remove("hooks");
    for (label, spec) in [("without a hook", &alone), ("with the spec's hook", &full)] {
        std::fs::write(&file, serde_json::to_vec_pretty(spec).unwrap()).unwrap();
        let run = podman.podman(&[
            "run",
            "--rm",
            "--network=none",
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=1024:1024",
            "--device",
            "nvidia.com/gpu=0:1",
            IMAGE,
            "sh",
            "-c",
            &script,
        ]);
        assert!(run.ok(), "{label}: {}", run.stderr());
        let seen = run.prefixed("FILE ");
        let want: Vec<String> = files.iter().map(|f| format!("{f} 1")).collect();
        assert_eq!(
            seen, want,
            "{label}: driver files in the container (path, mounts)"
        );
    }
}
