//! End to end with Docker 20.10 from Debian: `docker run --gpus device=...` (migcage installed as
//! `nvidia-container-runtime-hook` on the daemon's PATH) and `docker run --runtime=migcage` (the
//! runtime wrapper registered with `--add-runtime`) each give a container exactly its MIG
//! instance; seven containers started at once on an A100 split seven ways each get their own.
//!
//! Each test starts its own dockerd: own data root, exec root, socket, pidfile and (empty)
//! daemon.json, vfs storage, no iptables, no bridge. It runs in a private mount namespace with a
//! tmpfs on /etc/docker (dockerd 20.10 always writes its key.json there), so every mount it makes
//! dies with it. The daemon is stopped and its directories removed by a Drop guard, also when a
//! test fails.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;

use common::{assert_sees_exactly, Run, SimHost, MIGCAGE, PROBE};

const IMAGE: &str = "migcage-busybox:test";
/// The parent cgroup dockerd's cgroupfs driver makes in every hierarchy.
const DOCKER_CGROUP: &str = "docker";

/// Docker's parent cgroups that were there before the first daemon of this file started.
static SHARED: Mutex<(usize, Vec<PathBuf>)> = Mutex::new((0, Vec::new()));

/// Whether Docker can run here; prints the skip line when not.
fn available(test: &str) -> bool {
    common::need_programs(
        test,
        &[
            ("dockerd", "docker.io"),
            ("runc", "runc"),
            ("busybox", "busybox-static"),
            ("unshare", "util-linux"),
        ],
    )
}

/// A private dockerd.
struct Dockerd {
    dir: tempfile::TempDir,
    child: Child,
    client: PathBuf,
}

impl Dockerd {
    /// Start a daemon that finds migcage as `nvidia-container-runtime-hook` on its PATH, knows the
    /// runtime wrapper as `migcage`, and whose children read `host`'s configuration.
    fn start(host: &SimHost) -> Dockerd {
        // The Debian client next to the daemon (another `docker` may come first on PATH).
        let client = ["/usr/bin/docker"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .unwrap_or_else(|| common::which("docker"));
        Dockerd::launch(host, None, client, "{}\n")
    }

    /// Start `release`'s dockerd (an unpacked Debian release: its dockerd, docker, containerd)
    /// on `daemon_json`, knowing nothing of migcage: no hook on its PATH, no runtime.
    fn start_release(host: &SimHost, release: &Path, daemon_json: &str) -> Dockerd {
        Dockerd::launch(
            host,
            Some(release),
            release.join("usr/bin/docker"),
            daemon_json,
        )
    }

    fn launch(
        host: &SimHost,
        release: Option<&Path>,
        client: PathBuf,
        daemon_json: &str,
    ) -> Dockerd {
        assert!(
            Path::new("/etc/docker").is_dir(),
            "docker.io ships /etc/docker"
        );
        {
            let mut g = SHARED.lock().unwrap_or_else(|e| e.into_inner());
            if g.0 == 0 {
                g.1 = common::cgroups_named(DOCKER_CGROUP);
            }
            g.0 += 1;
        }
        let dir = tempfile::Builder::new()
            .prefix("migcage-docker-")
            .tempdir()
            .unwrap();
        let d = dir.path();
        let bin = d.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let mut first = vec![bin.clone()];
        let mut runtime = String::new();
        if let Some(r) = release {
            first.extend([r.join("usr/sbin"), r.join("usr/bin")]);
        } else {
            std::os::unix::fs::symlink(MIGCAGE, bin.join("nvidia-container-runtime-hook")).unwrap();
            std::os::unix::fs::symlink(MIGCAGE, bin.join("migcage-runtime")).unwrap();
            runtime = format!(" --add-runtime migcage={}/migcage-runtime", bin.display());
        }
        std::fs::write(d.join("daemon.json"), daemon_json).unwrap();
        let path = format!(
            "{}:{}",
            std::env::join_paths(&first).unwrap().to_string_lossy(),
            std::env::var("PATH").unwrap_or_else(|_| "/usr/sbin:/usr/bin:/sbin:/bin".into())
        );
        let daemon = format!(
            "mount -t tmpfs -o mode=0700 tmpfs /etc/docker && exec dockerd --config-file {d}/daemon.json \
             --iptables=false --ip-masq=false --bridge=none --storage-driver=vfs \
             --exec-opt native.cgroupdriver=cgroupfs --data-root {d}/data --exec-root {d}/exec \
             -H unix://{d}/docker.sock --pidfile {d}/docker.pid{runtime}",
            d = d.display(),
        );
        let log = std::fs::File::create(d.join("dockerd.log")).unwrap();
        let child = Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c", &daemon])
            .env("PATH", &path)
            .env("MIGCAGE_CONFIG", host.config())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let daemon = Dockerd { dir, child, client };
        let up = common::wait_for(60, || daemon.docker(&["version"]).ok());
        assert!(up, "dockerd did not start: {}", daemon.log());
        let tar = common::busybox_tar(daemon.dir.path());
        let out = daemon.docker(&["import", tar.to_str().unwrap(), IMAGE]);
        assert!(out.ok(), "docker import: {}", out.stderr());
        daemon
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dockerd.log")).unwrap_or_default()
    }

    fn docker(&self, args: &[&str]) -> Run {
        let output = self.docker_command(args).output().unwrap();
        Run {
            id: args.join(" "),
            output,
        }
    }

    fn docker_command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("timeout");
        c.arg("90")
            .arg(&self.client)
            .arg("-H")
            .arg(format!("unix://{}/docker.sock", self.dir.path().display()))
            .args(args)
            .stdin(Stdio::null());
        c
    }

    /// The arguments of `docker run` for the probe, with the host's nodes on /hostdev.
    fn probe_args<'a>(host_dev: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec![
            "run",
            "--rm",
            "--network=none",
            "--ulimit",
            "nofile=1024:1024",
            "-v",
            host_dev,
        ];
        args.extend_from_slice(extra);
        args.extend_from_slice(&[IMAGE, "sh", "-c", PROBE]);
        args
    }

    fn run_probe(&self, host: &SimHost, extra: &[&str]) -> Run {
        let host_dev = format!("{}:/hostdev:ro", host.dev().display());
        self.docker(&Self::probe_args(&host_dev, extra))
    }

    /// [`Dockerd::run_probe`], then `check`.
    fn run_probe_then(&self, host: &SimHost, extra: &[&str], check: &str) -> Run {
        let host_dev = format!("{}:/hostdev:ro", host.dev().display());
        let script = format!("{PROBE}\n{check}");
        let mut args = Self::probe_args(&host_dev, extra);
        *args.last_mut().unwrap() = &script;
        self.docker(&args)
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let ps = self.docker(&["ps", "-aq"]);
        for id in ps.stdout().split_whitespace() {
            let _ = self.docker(&["rm", "-f", id]);
        }
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        // The child is `sh` exec'd into dockerd: stop it, then wait; kill it after 30 s.
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let stopped = common::wait_for(30, || matches!(self.child.try_wait(), Ok(Some(_))));
        if !stopped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let left = common::mounts_under(&[self.dir.path()]);
        for m in left.iter().rev() {
            let _ = Command::new("umount").args(["-l", m]).output();
        }
        let mut g = SHARED.lock().unwrap_or_else(|e| e.into_inner());
        g.0 -= 1;
        if g.0 == 0 {
            for cg in common::cgroups_named(DOCKER_CGROUP) {
                if !g.1.contains(&cg) {
                    let _ = std::fs::remove_dir(&cg);
                }
            }
        }
        if !std::thread::panicking() {
            assert!(stopped, "dockerd did not stop on SIGTERM: {}", self.log());
            assert!(left.is_empty(), "dockerd left mounts on the host: {left:?}");
        }
    }
}

#[test]
fn gpus_flag_and_runtime_give_the_named_instance() {
    if !available("gpus_flag_and_runtime_give_the_named_instance") {
        return;
    }
    let host = SimHost::new("a100-7x1g");
    let docker = Dockerd::start(&host);
    let listing = host.list();
    let uuid3 = common::uuid_of(&listing, "0:3");
    let dev3 = format!("device={uuid3}");
    let all: Vec<String> = std::iter::once("0".to_string())
        .chain((0..7).map(|i| format!("0:{i}")))
        .collect();
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    let cases: Vec<(&str, Vec<&str>, Vec<&str>)> = vec![
        (
            "--gpus device=MIG-<uuid of 0:3>",
            vec!["--gpus", &dev3],
            vec!["0:3"],
        ),
        (
            "--gpus device=0:5",
            vec!["--gpus", "device=0:5"],
            vec!["0:5"],
        ),
        ("--gpus all", vec!["--gpus", "all"], all),
        ("no --gpus", vec![], vec![]),
        (
            "--runtime=migcage -e NVIDIA_VISIBLE_DEVICES=0:2",
            vec!["--runtime=migcage", "-e", "NVIDIA_VISIBLE_DEVICES=0:2"],
            vec!["0:2"],
        ),
        (
            "--runtime=migcage, no request",
            vec!["--runtime=migcage"],
            vec![],
        ),
    ];
    for (what, flags, names) in &cases {
        let run = docker.run_probe(&host, flags);
        let ctx = format!("docker run {what}");
        assert!(
            run.ok(),
            "{ctx}: {}\ndockerd: {}",
            run.stderr(),
            docker.log()
        );
        assert_sees_exactly(&run, &host, &listing, names, &ctx);
    }
    // A request that cannot be met stops the container, with migcage's line, both ways.
    for flags in [
        vec!["--gpus", "device=0:9"],
        vec!["--runtime=migcage", "-e", "NVIDIA_VISIBLE_DEVICES=0:9"],
    ] {
        let run = docker.run_probe(&host, &flags);
        assert!(!run.ok(), "{flags:?}: the container started");
        let err = run.stderr().replace("\\\"", "\"");
        assert!(
            err.contains("asks for 0:9: GPU 0 has MIG devices 0:0 to 0:6"),
            "{flags:?}: {err}"
        );
    }
    let left = docker.docker(&["ps", "-aq"]);
    assert_eq!(left.stdout().trim(), "", "containers left");
}

#[test]
fn seven_containers_at_once_each_get_their_own() {
    if !available("seven_containers_at_once_each_get_their_own") {
        return;
    }
    let host = SimHost::new("a100-7x1g");
    let docker = Dockerd::start(&host);
    let listing = host.list();
    let host_dev = format!("{}:/hostdev:ro", host.dev().display());
    let started = std::time::Instant::now();
    let runs: Vec<(String, std::process::Child)> = (0..7)
        .map(|i| {
            let index = format!("0:{i}");
            let gpus = format!("device={}", common::uuid_of(&listing, &index));
            let args = Dockerd::probe_args(&host_dev, &["--gpus", &gpus]);
            let child = docker
                .docker_command(&args)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            (index, child)
        })
        .collect();
    let runs: Vec<(String, Run)> = runs
        .into_iter()
        .map(|(index, child)| {
            let output = child.wait_with_output().unwrap();
            (index.clone(), Run { id: index, output })
        })
        .collect();
    eprintln!("seven docker containers at once: {:?}", started.elapsed());
    for (index, run) in &runs {
        let ctx = format!("container for {index} (one of seven at once)");
        assert!(run.ok(), "{ctx}: {}", run.stderr());
        assert_sees_exactly(run, &host, &listing, &[index.as_str()], &ctx);
    }
}

/// Seven users, one GPU, through Docker: seven containers started at once asking for
/// `profile:1g.5gb` (runtime mode, whose delete releases the lease) each get a different
/// instance, checked from inside; the eighth is refused with the holders listed; when one is
/// removed, its instance goes to the next.
#[test]
fn seven_containers_by_profile_each_get_a_different_instance() {
    if !available("seven_containers_by_profile_each_get_a_different_instance") {
        return;
    }
    let host = SimHost::new("a100-7x1g");
    let docker = Dockerd::start(&host);
    let host_dev = format!("{}:/hostdev:ro", host.dev().display());
    // The probe, then stay up holding the instance until removed.
    let script = format!("{PROBE}\nsleep 300");
    let run_args = |name: &str| -> Vec<String> {
        let mut a: Vec<String> = [
            "run",
            "-d",
            "--name",
            name,
            "--runtime=migcage",
            "--network=none",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.extend(["--ulimit", "nofile=1024:1024", "-v", &host_dev].map(String::from));
        a.extend(
            [
                "-e",
                "NVIDIA_VISIBLE_DEVICES=profile:1g.5gb",
                IMAGE,
                "sh",
                "-c",
                &script,
            ]
            .map(String::from),
        );
        a
    };
    let children: Vec<Child> = (0..7)
        .map(|i| {
            let args = run_args(&format!("user{i}"));
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            docker
                .docker_command(&args)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "docker run: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Each container's own caps nodes (from its probe's NODE lines), once it has printed them.
    let caps_of = |name: &str| -> Vec<String> {
        let mut lines = Vec::new();
        common::wait_for(30, || {
            let logs = docker.docker(&["logs", name]);
            lines = logs
                .stdout()
                .lines()
                .filter(|l| l.starts_with("NODE /dev/nvidia-caps/"))
                .map(String::from)
                .collect();
            logs.stdout().contains("PROBE-DONE")
        });
        lines
    };
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..7 {
        let caps = caps_of(&format!("user{i}"));
        assert_eq!(
            caps.len(),
            2,
            "user{i} has its instance's two caps nodes: {caps:?}"
        );
        assert!(
            seen.insert(caps.clone()),
            "user{i} got an instance another container has: {caps:?}"
        );
    }
    let eighth = docker.docker(
        &run_args("user7")
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert!(!eighth.ok(), "the eighth container started");
    assert!(
        eighth
            .stderr()
            .contains("all 7 MIG devices of profile 1g.5gb are in use"),
        "the refusal names the profile and its holders: {}",
        eighth.stderr()
    );
    let _ = docker.docker(&["rm", "-f", "user7"]);
    let freed = caps_of("user3");
    let rm = docker.docker(&["rm", "-f", "user3"]);
    assert!(rm.ok(), "docker rm: {}", rm.stderr());
    let next = docker.docker(
        &run_args("user8")
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert!(
        next.ok(),
        "the next container after one stopped: {}",
        next.stderr()
    );
    assert_eq!(
        caps_of("user8"),
        freed,
        "the freed instance goes to the next container"
    );
}

/// Docker 26 (Debian 13's, unpacked by scripts/engine-releases.sh) with the CDI that
/// `migcage configure docker --cdi` turns on, and no migcage hook or runtime: `--device
/// nvidia.com/gpu=...` gets exactly the named instances from migcage's spec, with the driver
/// files from its mounts and the library links from its createRuntime hook.
#[test]
fn docker_26_injects_migcage_cdi_devices_without_its_hook() {
    let test = "docker_26_injects_migcage_cdi_devices_without_its_hook";
    if !available(test) {
        return;
    }
    let release = common::engine_release("trixie");
    if !release.join("usr/sbin/dockerd").is_file() {
        common::skip(&format!("{test}: no Docker 26 in {} (scripts/engine-releases.sh, run by scripts/deps.sh, fetches Debian trixie's)", release.display()));
        return;
    }
    let host = SimHost::new("a100-7x1g");
    let listing = host.list();
    let work = tempfile::Builder::new()
        .prefix("migcage-docker-cdi-")
        .tempdir()
        .unwrap();
    let file = work.path().join("daemon.json");
    std::fs::write(&file, "{}\n").unwrap();
    // configure asks the release's dockerd for its version, as on a node that has it.
    let path = format!(
        "{}:{}",
        release.join("usr/sbin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new(MIGCAGE)
        .args(["configure", "docker", "--cdi", "--config-file"])
        .arg(&file)
        .env_remove("MIGCAGE_CONFIG")
        .env("PATH", path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "configure docker --cdi: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(json["features"]["cdi"], serde_json::json!(true), "{json}");
    // The test's spec directory, not the host's /etc/cdi and /var/run/cdi.
    let spec_dir = work.path().join("cdi");
    json["cdi-spec-dirs"] = serde_json::json!([spec_dir]);
    host.cdi_generate(&["--output", &format!("{}/", spec_dir.display())]);
    let docker = Dockerd::start_release(&host, &release, &json.to_string());
    let version = docker.docker(&["version", "--format", "{{.Server.Version}}"]);
    assert!(version.stdout().starts_with("26."), "{}", version.stdout());
    let lib = "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so";
    let check = format!(
        "[ -f {lib}.550.54.15 ] && echo SPEC-MOUNT-OK; [ -L {lib}.1 ] && echo HOOK-LINK-OK"
    );
    let uuid3 = format!("nvidia.com/gpu={}", common::uuid_of(&listing, "0:3"));
    let all: Vec<String> = std::iter::once("0".to_string())
        .chain((0..7).map(|i| format!("0:{i}")))
        .collect();
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (vec!["--device", "nvidia.com/gpu=0:1"], vec!["0:1"]),
        (
            vec!["--device", &uuid3, "--device", "nvidia.com/gpu=0:5"],
            vec!["0:3", "0:5"],
        ),
        (vec!["--device", "nvidia.com/gpu=all"], all),
    ];
    for (flags, names) in &cases {
        let run = docker.run_probe_then(&host, flags, &check);
        let ctx = format!("docker 26 run {}", flags.join(" "));
        assert!(
            run.ok(),
            "{ctx}: {}\ndockerd: {}",
            run.stderr(),
            docker.log()
        );
        assert_sees_exactly(&run, &host, &listing, names, &ctx);
        for want in ["SPEC-MOUNT-OK", "HOOK-LINK-OK"] {
            assert!(
                run.stdout().contains(want),
                "{ctx}: no {want}: {}",
                run.stdout()
            );
        }
        eprintln!("{ctx}: sees {names:?}");
    }
    // The spec's poststop hook gave back every lease.
    host.assert_no_leases("docker 26 with CDI");
}

/// Every MIG device `list` shows now: (index, created.by, whether a live lease holds it).
fn mig_devices(host: &SimHost) -> Vec<(String, Option<String>, bool)> {
    let l = host.list();
    l["gpus"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["mig_devices"].as_array().unwrap())
        .map(|m| {
            let held = m["leases"]
                .as_array()
                .unwrap()
                .iter()
                .any(|x| x["stale"] == false);
            let by = m["created"]["by"].as_str().map(str::to_string);
            (m["index"].as_str().unwrap().to_string(), by, held)
        })
        .collect()
}

/// `[allocation] create_on_demand` through Docker on a GPU with no instance: `--gpus
/// device=profile:1g.5gb` (the hook at prestart) gets an instance made for it, seen from
/// inside; with `destroy_on_release` its lease, stale once the container is gone (Docker's
/// `--gpus` registers no poststop), is ended by the next start, which destroys that instance
/// before making its own. `--runtime=migcage` (whose delete releases) leaves the GPU empty.
#[test]
fn gpus_by_profile_makes_the_instance_on_an_empty_gpu() {
    if !available("gpus_by_profile_makes_the_instance_on_an_empty_gpu") {
        return;
    }
    let host = SimHost::new("a100-empty");
    common::lab::set_config(&host, common::lab::CREATE_AND_DESTROY);
    let docker = Dockerd::start(&host);
    for round in ["first", "second"] {
        let run = docker.run_probe(&host, &["--gpus", "device=profile:1g.5gb"]);
        let ctx = format!("docker run --gpus device=profile:1g.5gb ({round})");
        assert!(
            run.ok(),
            "{ctx}: {}\ndockerd: {}",
            run.stderr(),
            docker.log()
        );
        let now = mig_devices(&host);
        assert_eq!(
            now.len(),
            1,
            "{ctx}: one instance, the last container's: {now:?}"
        );
        let (index, by, held) = &now[0];
        let by = by
            .as_deref()
            .unwrap_or_else(|| panic!("{ctx}: not made on demand"));
        assert!(
            by.len() == 64 && by.bytes().all(|b| b.is_ascii_hexdigit()),
            "{ctx}: made for {by:?}, not a Docker container id"
        );
        assert!(!held, "{ctx}: the container is gone, its lease is stale");
        assert_sees_exactly(&run, &host, &host.list(), &[index.as_str()], &ctx);
    }
    // Through the runtime wrapper, its delete releases: nothing is left.
    let run = docker.run_probe(
        &host,
        &[
            "--runtime=migcage",
            "-e",
            "NVIDIA_VISIBLE_DEVICES=profile:2g.10gb",
        ],
    );
    assert!(
        run.ok(),
        "--runtime=migcage profile:2g.10gb: {}",
        run.stderr()
    );
    assert!(run.stdout().contains("PROBE-DONE"), "{}", run.stdout());
    assert_eq!(
        mig_devices(&host),
        [],
        "runtime mode: the instances outlived their containers"
    );
}
