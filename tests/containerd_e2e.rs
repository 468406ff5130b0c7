//! End to end with containerd 1.6 from Debian, driven by `ctr`: the runtime wrapper, registered
//! as the runc shim's `BinaryName`, gives a container exactly the MIG instance its environment
//! names.
//!
//! `ctr` does not read the CRI plugin's `runtimes` table (that is the kubelet's path, through a
//! RuntimeClass); it sets the shim's `BinaryName` per container with `--runc-binary`. So the test
//! registers migcage in the config file the way a user does for Kubernetes (`migcage configure
//! containerd`), checks that containerd reads the entry (`containerd config dump`), and runs the
//! containers with `ctr run --runtime io.containerd.runc.v2 --runc-binary <migcage-runtime>`.
//!
//! The daemon has its own root, state, sockets and config file, and no CRI plugin. The runc shim
//! keeps its sockets and runc's state under /run/containerd whatever the config says; the test
//! removes that directory afterwards when it made it. A Drop guard stops the daemon.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::{assert_sees_exactly, Run, SimHost, MIGCAGE, PROBE};

const IMAGE: &str = "localhost/migcage-busybox:test";
const CONTAINERD_RUN: &str = "/run/containerd";

struct Containerd {
    dir: tempfile::TempDir,
    child: Child,
    namespace: String,
    made_run_dir: bool,
}

impl Containerd {
    fn start(host: &SimHost) -> Containerd {
        let dir = tempfile::Builder::new()
            .prefix("migcage-ctd-")
            .tempdir()
            .unwrap();
        let d = dir.path().display().to_string();
        let made_run_dir = !Path::new(CONTAINERD_RUN).exists();
        let base = format!(
            "version = 2\nroot = \"{d}/root\"\nstate = \"{d}/state\"\n\n[grpc]\n  address = \"{d}/containerd.sock\"\n\n[ttrpc]\n  address = \"{d}/containerd.sock.ttrpc\"\n\n[plugins.\"io.containerd.grpc.v1.cri\".containerd]\n  default_runtime_name = \"runc\"\n\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\n  runtime_type = \"io.containerd.runc.v2\"\n"
        );
        let config = dir.path().join("config.toml");
        std::fs::write(&config, &base).unwrap();
        let link = dir.path().join("bin/migcage-runtime");
        std::fs::create_dir_all(link.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(MIGCAGE, &link).unwrap();

        // The user's step: register the wrapper with containerd's CRI plugin.
        let out = Command::new(MIGCAGE)
            .args(["configure", "containerd", "--config-file"])
            .arg(&config)
            .arg("--binary")
            .arg(&link)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "configure containerd: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let dump = Command::new("containerd")
            .arg("--config")
            .arg(&config)
            .args(["config", "dump"])
            .output()
            .unwrap();
        let dump = String::from_utf8_lossy(&dump.stdout).into_owned();
        let entry = dump
            .split("[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.migcage.options]")
            .nth(1)
            .unwrap_or_else(|| {
                panic!("containerd does not read the migcage runtime entry:\n{dump}")
            });
        assert!(
            entry.contains(&format!("BinaryName = \"{}\"", link.display())),
            "containerd reads another BinaryName: {entry}"
        );

        // The daemon itself runs without the CRI plugin (no kubelet here).
        let daemon_config = dir.path().join("daemon.toml");
        let text = std::fs::read_to_string(&config).unwrap().replacen(
            "version = 2\n",
            "version = 2\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n",
            1,
        );
        std::fs::write(&daemon_config, text).unwrap();
        let log = std::fs::File::create(dir.path().join("containerd.log")).unwrap();
        let child = Command::new("containerd")
            .arg("--config")
            .arg(&daemon_config)
            .env("MIGCAGE_CONFIG", host.config())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let c = Containerd {
            dir,
            child,
            namespace: common::unique("migcage-test"),
            made_run_dir,
        };
        let up = common::wait_for(30, || c.ctr(&["version"]).ok());
        assert!(up, "containerd did not start: {}", c.log());
        let archive = common::busybox_oci_archive(c.dir.path(), IMAGE);
        let out = c.ctr(&["images", "import", archive.to_str().unwrap()]);
        assert!(out.ok(), "ctr images import: {}", out.stderr());
        c
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }

    fn runtime_link(&self) -> PathBuf {
        self.dir.path().join("bin/migcage-runtime")
    }

    fn ctr(&self, args: &[&str]) -> Run {
        let output = Command::new("timeout")
            .arg("90")
            .arg("ctr")
            .arg("--address")
            .arg(self.dir.path().join("containerd.sock"))
            .arg("--namespace")
            .arg(&self.namespace)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        Run {
            id: args.join(" "),
            output,
        }
    }

    /// `ctr run` of the probe through the wrapper, with `env` and the host's nodes on /hostdev.
    fn run_probe(&self, host: &SimHost, env: &[&str]) -> Run {
        let id = common::unique("mcctr");
        let mount = format!(
            "type=bind,src={},dst=/hostdev,options=rbind:ro",
            host.dev().display()
        );
        let link = self.runtime_link().display().to_string();
        let mut args = vec![
            "run",
            "--rm",
            "--runtime",
            "io.containerd.runc.v2",
            "--runc-binary",
            &link,
            "--mount",
            &mount,
        ];
        for e in env {
            args.extend_from_slice(&["--env", e]);
        }
        args.extend_from_slice(&[IMAGE, &id, "sh", "-c", PROBE]);
        let mut run = self.ctr(&args);
        run.id = id;
        run
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        for id in self.ctr(&["tasks", "ls", "-q"]).stdout().split_whitespace() {
            let _ = self.ctr(&["tasks", "kill", "-s", "SIGKILL", id]);
            let _ = self.ctr(&["tasks", "rm", "-f", id]);
        }
        for id in self
            .ctr(&["containers", "ls", "-q"])
            .stdout()
            .split_whitespace()
        {
            let _ = self.ctr(&["containers", "rm", id]);
        }
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
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
        // ctr puts a container's cgroup under /<namespace>/<id>.
        for cg in common::cgroups_named(&self.namespace) {
            let _ = std::fs::remove_dir(cg);
        }
        let runc_state = Path::new(CONTAINERD_RUN).join("runc").join(&self.namespace);
        let _ = std::fs::remove_dir_all(runc_state);
        if self.made_run_dir {
            let _ = std::fs::remove_dir_all(CONTAINERD_RUN);
        }
        if !std::thread::panicking() {
            assert!(
                stopped,
                "containerd did not stop on SIGTERM: {}",
                self.log()
            );
            assert!(
                left.is_empty(),
                "containerd left mounts on the host: {left:?}"
            );
        }
    }
}

#[test]
fn ctr_with_the_runtime_wrapper_gives_the_named_instance() {
    if !common::need_programs(
        "ctr_with_the_runtime_wrapper_gives_the_named_instance",
        &[
            ("containerd", "containerd"),
            ("ctr", "containerd"),
            ("runc", "runc"),
            ("busybox", "busybox-static"),
        ],
    ) {
        return;
    }
    let host = SimHost::new("a100-7x1g");
    let listing = host.list();
    let ctd = Containerd::start(&host);
    let uuid6 = common::uuid_of(&listing, "0:6");
    let by_uuid = format!("NVIDIA_VISIBLE_DEVICES={uuid6}");
    for (env, names) in [
        (vec!["NVIDIA_VISIBLE_DEVICES=0:1"], vec!["0:1"]),
        (vec![by_uuid.as_str()], vec!["0:6"]),
        (vec![], vec![]),
    ] {
        let run = ctd.run_probe(&host, &env);
        let ctx = format!("ctr run --runc-binary migcage-runtime {env:?} ({})", run.id);
        assert!(
            run.ok(),
            "{ctx}: {}\ncontainerd: {}",
            run.stderr(),
            ctd.log()
        );
        assert_sees_exactly(&run, &host, &listing, &names, &ctx);
        let cg = common::cgroups_named(&format!("{}/{}", ctd.namespace, run.id));
        assert!(cg.is_empty(), "{ctx}: cgroups left: {cg:?}");
    }
    let run = ctd.run_probe(&host, &["NVIDIA_VISIBLE_DEVICES=0:9"]);
    assert!(!run.ok(), "a container asking for 0:9 started");
    let err = run.stderr().replace("\\\"", "\"");
    assert!(
        err.contains("asks for 0:9: GPU 0 has MIG devices 0:0 to 0:6"),
        "{err}"
    );
    assert_eq!(
        ctd.ctr(&["containers", "ls", "-q"]).stdout().trim(),
        "",
        "containers left"
    );
}
