//! A private containerd with its CRI plugin: own root, state, sockets and config (the config
//! that `migcage configure containerd` wrote, plus what a private instance on these machines
//! needs), started and stopped by the test.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use toml_edit::{DocumentMut, Item, Table};

use crate::common::{self, Run};

/// The CRI plugin's runtime tables are under this plugin name in config version 2.
const CRI: &str = "io.containerd.grpc.v1.cri";
/// containerd's CRI namespace.
pub const K8S_NAMESPACE: &str = "k8s.io";
/// The runc shim's own state directory, whatever the config says.
const CONTAINERD_RUN: &str = "/run/containerd";

/// The table at `path` in `doc`, made when absent.
fn table<'a>(doc: &'a mut DocumentMut, path: &[&str]) -> &'a mut Table {
    let mut t = doc.as_table_mut();
    for key in path {
        if t.get(key).is_none() {
            let mut new = Table::new();
            new.set_implicit(true);
            t.insert(key, Item::Table(new));
        }
        t = t[key].as_table_mut().expect("a table");
    }
    t
}

/// `config` (a version 2 or 3 config.toml) as a private instance in `dir`: root, state,
/// sockets, the CRI settings these machines need (no CAP_SYS_RESOURCE: `restrict_oom_score_adj`;
/// no overlayfs in a nested root: the native snapshotter) and the sandbox image `pause`. Version 3
/// (containerd 2.x) keeps them in the CRI runtime and images plugins.
pub fn private_config(config: &str, dir: &Path, pause: &str) -> String {
    let mut doc: DocumentMut = config.parse().expect("configure wrote TOML");
    let d = dir.display();
    doc["root"] = toml_edit::value(format!("{d}/root"));
    doc["state"] = toml_edit::value(format!("{d}/state"));
    table(&mut doc, &["grpc"])["address"] = toml_edit::value(format!("{d}/containerd.sock"));
    table(&mut doc, &["ttrpc"])["address"] = toml_edit::value(format!("{d}/containerd.sock.ttrpc"));
    if doc.get("version").and_then(|v| v.as_integer()) == Some(3) {
        let runtime = table(&mut doc, &["plugins", "io.containerd.cri.v1.runtime"]);
        runtime["restrict_oom_score_adj"] = toml_edit::value(true);
        let images = table(&mut doc, &["plugins", "io.containerd.cri.v1.images"]);
        images["snapshotter"] = toml_edit::value("native");
        table(
            &mut doc,
            &["plugins", "io.containerd.cri.v1.images", "pinned_images"],
        )["sandbox"] = toml_edit::value(pause);
        // 2.x's ctr imports through the transfer service, which unpacks only for the
        // snapshotters its unpack_config names (overlayfs by default).
        let mut unpack = Table::new();
        unpack["platform"] = toml_edit::value(format!(
            "linux/{}",
            std::env::consts::ARCH
                .replace("x86_64", "amd64")
                .replace("aarch64", "arm64")
        ));
        unpack["snapshotter"] = toml_edit::value("native");
        let mut tables = toml_edit::ArrayOfTables::new();
        tables.push(unpack);
        table(&mut doc, &["plugins", "io.containerd.transfer.v1.local"])
            .insert("unpack_config", Item::ArrayOfTables(tables));
        return doc.to_string();
    }
    let cri = table(&mut doc, &["plugins", CRI]);
    cri["restrict_oom_score_adj"] = toml_edit::value(true);
    cri["sandbox_image"] = toml_edit::value(pause);
    let containerd = table(&mut doc, &["plugins", CRI, "containerd"]);
    containerd["snapshotter"] = toml_edit::value("native");
    doc.to_string()
}

/// `config` (private_config's result, with CDI on, as `configure --cdi` wrote it) reading CDI
/// specs from `spec_dir` only, not the host's /etc/cdi and /var/run/cdi.
pub fn with_cdi_spec_dir(config: &str, spec_dir: &Path) -> String {
    let mut doc: DocumentMut = config.parse().expect("TOML");
    let plugin = if doc.get("version").and_then(|v| v.as_integer()) == Some(3) {
        "io.containerd.cri.v1.runtime"
    } else {
        CRI
    };
    let t = table(&mut doc, &["plugins", plugin]);
    assert_eq!(
        t.get("enable_cdi").and_then(|v| v.as_bool()),
        Some(true),
        "configure --cdi did not turn CDI on in {plugin}: {config}"
    );
    let mut dirs = toml_edit::Array::new();
    dirs.push(spec_dir.display().to_string());
    t["cdi_spec_dirs"] = toml_edit::value(dirs);
    doc.to_string()
}

pub struct Containerd {
    pub dir: PathBuf,
    /// Where its `containerd` and `ctr` are (empty: the PATH's).
    pub bin: PathBuf,
    child: Child,
    made_run_dir: bool,
}

impl Containerd {
    /// Start containerd on `config` (a file in `dir`) with `env`; waits until it answers.
    pub fn start(dir: &Path, config: &Path, env: &[(&str, &Path)]) -> Containerd {
        Containerd::start_release(Path::new(""), dir, config, env)
    }

    /// [`Containerd::start`] with the `containerd` and `ctr` of `bin` (a release unpacked there).
    pub fn start_release(
        bin: &Path,
        dir: &Path,
        config: &Path,
        env: &[(&str, &Path)],
    ) -> Containerd {
        let made_run_dir = !Path::new(CONTAINERD_RUN).exists();
        let log = std::fs::File::create(dir.join("containerd.log")).unwrap();
        let mut cmd = Command::new(bin.join("containerd"));
        cmd.arg("--config").arg(config);
        if !bin.as_os_str().is_empty() {
            // The release's own runc shim, not the PATH's (Debian's 1.6).
            let path = std::env::var("PATH").unwrap_or_default();
            cmd.env("PATH", format!("{}:{path}", bin.display()));
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let c = Containerd {
            dir: dir.to_path_buf(),
            bin: bin.to_path_buf(),
            child,
            made_run_dir,
        };
        let up = common::wait_for(30, || c.ctr(&["version"]).ok());
        assert!(up, "containerd did not start: {}", c.log());
        c
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("containerd.sock")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default()
    }

    /// `ctr` in the CRI namespace.
    pub fn ctr(&self, args: &[&str]) -> Run {
        let output = Command::new("timeout")
            .arg("90")
            .arg(self.bin.join("ctr"))
            .arg("--address")
            .arg(self.socket())
            .args(["--namespace", K8S_NAMESPACE])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        Run {
            id: args.join(" "),
            output,
        }
    }

    /// The state `ctr plugins ls` gives the CRI plugin (`ok`, `error`, `skip`).
    pub fn cri_plugin_state(&self) -> String {
        let out = self.ctr(&["plugins", "ls"]);
        assert!(out.ok(), "ctr plugins ls: {}", out.stderr());
        out.stdout()
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some("cri"))
            .and_then(|l| l.split_whitespace().last().map(str::to_string))
            .unwrap_or_else(|| format!("absent from:\n{}", out.stdout()))
    }

    /// Import an OCI image archive, unpacked for the native snapshotter.
    pub fn import(&self, archive: &Path) {
        let out = self.ctr(&[
            "images",
            "import",
            "--snapshotter",
            "native",
            archive.to_str().unwrap(),
        ]);
        assert!(out.ok(), "ctr images import: {}", out.stderr());
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // Pods a failed test left running: their shims would outlive containerd.
        for id in self.ctr(&["tasks", "ls", "-q"]).stdout().split_whitespace() {
            let _ = self.ctr(&["tasks", "kill", "-s", "SIGKILL", id]);
            let _ = self.ctr(&["tasks", "rm", "-f", id]);
        }
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let stopped = common::wait_for(30, || matches!(self.child.try_wait(), Ok(Some(_))));
        if !stopped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let left = common::mounts_under(&[self.dir.as_path()]);
        for m in left.iter().rev() {
            let _ = Command::new("umount").args(["-l", m]).output();
        }
        let runc_state = Path::new(CONTAINERD_RUN).join("runc").join(K8S_NAMESPACE);
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
