//! A lab for tests of leases: a simulated host, a shared busybox rootfs and a directory the
//! containers write to, one bundle directory per container (its config.json names the shared
//! rootfs by absolute path), and real runc with `migcage hook` at prestart (and poststop). Every
//! check of what a container got is made from inside it: it writes the MIG caps nodes it has
//! (and, for the concurrency tests, when it started and stopped, from the kernel's clock) to a
//! host directory bind-mounted into it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{Bundle, SimHost, MIGCAGE, PROBE};

/// Runs in every container: its caps nodes (and the probe's lines), then `START <sec> <usec>`,
/// then waits; on SIGTERM it appends `END <sec> <usec>` and exits. All to /shared/$MC_ID.
/// `adjtimex` (read-only) gives microseconds; busybox's date has no `%N`.
pub const HOLD: &str = r#"
now() { adjtimex | grep 'time.tv_' | sed 's/.*: *//' | tr '\n' ' '; }
out=/shared/$MC_ID
# Before START: the test sends SIGTERM only after START, and an init without a handler never
# sees it.
trap 'echo "END $(now)" >> $out; exit 0' TERM
{ for f in /dev/nvidia-caps/*; do [ -c "$f" ] && stat -c 'NODE %n %t:%T %a' "$f"; done
  [ -n "$MC_PROBE" ] && sh -c "$MC_PROBE"
  echo "START $(now)"; } > $out.tmp
mv $out.tmp $out
sleep 100000 &
wait
"#;

/// A shared busybox rootfs and a directory the containers write to; one bundle directory per
/// container (its config.json names the shared rootfs by absolute path).
pub struct Lab {
    pub host: SimHost,
    pub base: Bundle,
    pub shared: tempfile::TempDir,
    pub bundles: tempfile::TempDir,
    /// Every container started, for the cleanup.
    pub started: Mutex<Vec<String>>,
}

/// How a container is started.
#[derive(Clone, Copy)]
pub struct Opts {
    /// `migcage hook poststop` registered (it releases the lease on `runc delete`).
    pub poststop: bool,
    /// Run the isolation probe too.
    pub probe: bool,
    /// The prestart hook kills itself at this fault point (`MIGCAGE_TEST_KILL_AT`).
    pub kill_at: Option<&'static str>,
}

impl Opts {
    pub const fn plain() -> Opts {
        Opts {
            poststop: true,
            probe: false,
            kill_at: None,
        }
    }
}

pub const WITH_POSTSTOP: Opts = Opts::plain();

/// What one container wrote.
#[derive(Debug, Default, Clone)]
pub struct Report {
    pub nodes: BTreeMap<String, (u32, u32)>,
    pub opens: BTreeMap<String, String>,
    pub start: Option<u64>,
    pub end: Option<u64>,
}

fn micros(rest: &str) -> Option<u64> {
    let mut it = rest.split_whitespace();
    let s: u64 = it.next()?.parse().ok()?;
    let us: u64 = it.next()?.parse().ok()?;
    Some(s * 1_000_000 + us)
}

impl Lab {
    /// On a100-7x1g.
    pub fn new() -> Lab {
        Lab::on("a100-7x1g", &[])
    }

    /// On simulated `topology`, with each `KEY=VALUE` of `config` set in its migcage config
    /// (`migcage config set`).
    pub fn on(topology: &str, config: &[&str]) -> Lab {
        let host = SimHost::new(topology);
        set_config(&host, config);
        let base = Bundle::new(&host, &[], HOLD);
        let bin = base.path().join("rootfs/bin");
        for applet in ["adjtimex", "tr", "mv"] {
            let _ = std::os::unix::fs::symlink("busybox", bin.join(applet));
        }
        std::fs::create_dir_all(base.path().join("rootfs/shared")).unwrap();
        let shared = tempfile::Builder::new()
            .prefix("migcage-lease-shared-")
            .tempdir()
            .unwrap();
        let bundles = tempfile::Builder::new()
            .prefix("migcage-lease-bundles-")
            .tempdir()
            .unwrap();
        Lab {
            host,
            base,
            shared,
            bundles,
            started: Mutex::new(Vec::new()),
        }
    }

    /// caps minors (GI, CI) -> (index `0:3`, UUID) of every MIG device now, from `migcage
    /// list --json`.
    pub fn instances(&self) -> BTreeMap<(u32, u32), (String, String)> {
        let mut instances = BTreeMap::new();
        for g in self.host.list()["gpus"].as_array().unwrap() {
            for m in g["mig_devices"].as_array().unwrap() {
                let minor = |k: &str| m[k].as_u64().unwrap() as u32;
                instances.insert(
                    (minor("gi_caps_minor"), minor("ci_caps_minor")),
                    (
                        m["index"].as_str().unwrap().to_string(),
                        m["uuid"].as_str().unwrap().to_string(),
                    ),
                );
            }
        }
        instances
    }

    /// Write container `id`'s bundle: the base config with its id, the shared dir, and hooks.
    pub fn bundle(&self, id: &str, env: &str, opts: Opts) -> PathBuf {
        let dir = self.bundles.path().join(id);
        std::fs::create_dir_all(&dir).unwrap();
        let mut c = self.base.config.clone();
        c["root"]["path"] = json!(self.base.path().join("rootfs").display().to_string());
        let envs = c["process"]["env"].as_array_mut().unwrap();
        envs.push(json!(env));
        envs.push(json!(format!("MC_ID={id}")));
        if opts.probe {
            envs.push(json!(format!("MC_PROBE={PROBE}")));
        }
        c["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/shared", "type": "bind",
            "source": self.shared.path().display().to_string(), "options": ["rbind", "rw"]
        }));
        if let Some(step) = opts.kill_at {
            let hook = &mut c["hooks"]["prestart"][0];
            if !hook["env"].is_array() {
                hook["env"] = json!([]);
            }
            let kill = json!(format!("MIGCAGE_TEST_KILL_AT={step}"));
            hook["env"].as_array_mut().unwrap().push(kill);
        }
        if opts.poststop {
            let mut post = c["hooks"]["prestart"][0].clone();
            post["args"] = json!(["migcage", "hook", "poststop"]);
            c["hooks"]["poststop"] = json!([post]);
        }
        std::fs::write(
            dir.join("config.json"),
            serde_json::to_vec_pretty(&c).unwrap(),
        )
        .unwrap();
        dir
    }

    /// `runc run -d`: Ok once the container runs, Err(runc's stderr with migcage's line
    /// unescaped) when it does not start.
    pub fn start(&self, id: &str, env: &str, opts: Opts) -> Result<(), String> {
        let dir = self.bundle(id, env, opts);
        self.started.lock().unwrap().push(id.to_string());
        let log = dir.join("runc.stderr");
        // Detached, runc hands its stdio to the container: files, never pipes (a pipe would stay
        // open as long as the container runs).
        let out = Command::new("timeout")
            .args(["60", "runc", "run", "-d", "--bundle"])
            .arg(&dir)
            .arg(id)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .status()
            .unwrap();
        if out.success() {
            Ok(())
        } else {
            Err(std::fs::read_to_string(&log)
                .unwrap_or_default()
                .replace("\\\"", "\""))
        }
    }

    /// Start several containers at the same moment (one thread each).
    pub fn start_all(&self, ids: &[String], env: &str, opts: &[Opts]) -> Vec<Result<(), String>> {
        std::thread::scope(|s| {
            let handles: Vec<_> = ids
                .iter()
                .zip(opts)
                .map(|(id, o)| s.spawn(move || self.start(id, env, *o)))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        })
    }

    pub fn status(&self, id: &str) -> Option<Value> {
        let out = Command::new("runc").args(["state", id]).output().unwrap();
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).unwrap())
    }

    pub fn wait_stopped(&self, id: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.status(id).is_some_and(|s| s["status"] != "stopped") {
            assert!(Instant::now() < deadline, "{id} did not stop");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// SIGTERM (the container records its end), wait, `runc delete` (poststop, if registered).
    pub fn stop(&self, id: &str) {
        // Its handler is installed once it has written START.
        self.report(id);
        let k = Command::new("runc")
            .args(["kill", id, "TERM"])
            .output()
            .unwrap();
        assert!(
            k.status.success(),
            "runc kill {id}: {}",
            String::from_utf8_lossy(&k.stderr)
        );
        self.wait_stopped(id);
        let d = Command::new("runc").args(["delete", id]).output().unwrap();
        assert!(
            d.status.success(),
            "runc delete {id}: {}",
            String::from_utf8_lossy(&d.stderr)
        );
    }

    /// What container `id` wrote, once it has started (waits for its START line).
    pub fn report(&self, id: &str) -> Report {
        let path = self.shared.path().join(id);
        let deadline = Instant::now() + Duration::from_secs(10);
        let text = loop {
            if let Ok(t) = std::fs::read_to_string(&path) {
                if t.contains("START ") {
                    break t;
                }
            }
            assert!(Instant::now() < deadline, "{id} wrote no START line");
            std::thread::sleep(Duration::from_millis(5));
        };
        let mut r = Report::default();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("NODE ") {
                let mut it = rest.split_whitespace();
                let path = it.next().unwrap().to_string();
                let (ma, mi) = it.next().unwrap().split_once(':').unwrap();
                r.nodes.insert(
                    path,
                    (
                        u32::from_str_radix(ma, 16).unwrap(),
                        u32::from_str_radix(mi, 16).unwrap(),
                    ),
                );
            } else if let Some(rest) = line.strip_prefix("OPEN ") {
                let (p, res) = rest.rsplit_once(' ').unwrap();
                r.opens.insert(p.to_string(), res.to_string());
            } else if let Some(rest) = line.strip_prefix("START ") {
                r.start = micros(rest);
            } else if let Some(rest) = line.strip_prefix("END ") {
                r.end = micros(rest);
            }
        }
        assert!(r.start.is_some(), "{id}: bad START line in {text:?}");
        r
    }

    /// The one instance a container has, from its caps nodes: (index, UUID). Panics unless it has
    /// exactly one instance's GI and CI nodes.
    /// Start a container for each of `ids` at once, each asking for `env` and running the
    /// isolation probe, and check from inside that each got exactly one instance of its own,
    /// opens it and is refused every other one. Instance UUID -> container.
    pub fn start_isolated(&self, ids: &[String], env: &str) -> BTreeMap<String, String> {
        let opts = vec![
            Opts {
                probe: true,
                ..Opts::plain()
            };
            ids.len()
        ];
        for (id, r) in ids.iter().zip(self.start_all(ids, env, &opts)) {
            assert!(r.is_ok(), "{id} did not start: {}", r.unwrap_err());
        }
        let mut got = BTreeMap::new();
        for id in ids {
            let r = self.report(id);
            let (index, uuid) = self.instance_of(id, &r);
            self.assert_opens_only_its_own(id, &index, &r);
            assert!(
                got.insert(uuid, id.clone()).is_none(),
                "two containers got one instance"
            );
        }
        got
    }

    /// From inside container `id` (its probe's `r`): it opens its own caps nodes (ENXIO: no
    /// driver behind a simulated node) and is refused every other one (EPERM).
    pub fn assert_opens_only_its_own(&self, id: &str, index: &str, r: &Report) {
        let own: BTreeSet<u32> = r
            .nodes
            .iter()
            .filter(|(p, _)| p.starts_with("/dev/nvidia-caps/"))
            .map(|(_, (_, m))| *m)
            .collect();
        let opens: Vec<(&String, &String)> = r
            .opens
            .iter()
            .filter(|(p, _)| p.starts_with("/hostdev/nvidia-caps/"))
            .collect();
        assert!(!opens.is_empty(), "{id}: no probe output");
        for (p, res) in opens {
            let minor: u32 = p.rsplit("nvidia-cap").next().unwrap().parse().unwrap();
            let want = if own.contains(&minor) {
                "ENXIO"
            } else {
                "EPERM"
            };
            assert_eq!(res, want, "{id} ({index}): open {p}");
        }
    }

    pub fn instance_of(&self, id: &str, r: &Report) -> (String, String) {
        let caps: BTreeSet<u32> = r
            .nodes
            .iter()
            .filter(|(p, _)| p.starts_with("/dev/nvidia-caps/"))
            .map(|(_, (_, minor))| *minor)
            .collect();
        let instances = self.instances();
        let found: Vec<&(String, String)> = instances
            .iter()
            .filter(|((gi, ci), _)| caps.contains(gi) && caps.contains(ci))
            .map(|(_, v)| v)
            .collect();
        assert_eq!(caps.len(), 2, "{id}: caps nodes {:?}", r.nodes);
        assert_eq!(found.len(), 1, "{id}: caps nodes {:?}", r.nodes);
        found[0].clone()
    }

    /// `migcage list --json`: UUID -> [(container, stale)].
    pub fn holders(&self) -> BTreeMap<String, Vec<(String, bool)>> {
        let l = self.host.list();
        let mut out = BTreeMap::new();
        for g in l["gpus"].as_array().unwrap() {
            for m in g["mig_devices"].as_array().unwrap() {
                let v: Vec<(String, bool)> = m["leases"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| {
                        (
                            x["container"].as_str().unwrap().to_string(),
                            x["stale"].as_bool().unwrap(),
                        )
                    })
                    .collect();
                out.insert(m["uuid"].as_str().unwrap().to_string(), v);
            }
        }
        assert!(
            l["unknown_leases"].as_array().unwrap().is_empty(),
            "{}",
            l["unknown_leases"]
        );
        out
    }

    /// The lease file's leases (empty when there is none).
    pub fn lease_file(&self) -> Vec<Value> {
        let p = self.host.dir.path().join("run/migcage/leases/leases.json");
        match std::fs::read(&p) {
            Ok(b) => serde_json::from_slice::<Value>(&b).unwrap()["leases"]
                .as_array()
                .unwrap()
                .clone(),
            Err(_) => Vec::new(),
        }
    }

    pub fn migcage(&self, args: &[&str]) -> std::process::Output {
        Command::new(MIGCAGE)
            .arg("--config")
            .arg(self.host.config())
            .args(args)
            .output()
            .unwrap()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for id in self.started.lock().unwrap().iter() {
            let _ = Command::new("runc").args(["delete", "-f", id]).output();
        }
        let left = super::mounts_under(&[self.base.path(), self.host.dir.path()]);
        let cgroups: Vec<PathBuf> = self
            .started
            .lock()
            .unwrap()
            .iter()
            .flat_map(|id| super::cgroups_named(id))
            .collect();
        if !std::thread::panicking() {
            assert!(left.is_empty(), "mounts left on the host: {left:?}");
            assert!(cgroups.is_empty(), "cgroups left on the host: {cgroups:?}");
        }
    }
}

/// The config keys that have migcage make instances on demand and destroy them when their
/// lease ends.
pub const CREATE_AND_DESTROY: &[&str] = &[
    "allocation.create_on_demand=true",
    "allocation.destroy_on_release=true",
];

/// Set each `KEY=VALUE` of `config` in `host`'s migcage config (`migcage config set`).
pub fn set_config(host: &SimHost, config: &[&str]) {
    for kv in config {
        let (key, value) = kv.split_once('=').unwrap();
        let out = Command::new(MIGCAGE)
            .args(["config", "set", "--config"])
            .arg(host.config())
            .args([key, value])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "config set {kv}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The migcage line of a failed start.
pub fn migcage_line(stderr: &str) -> String {
    stderr
        .lines()
        .find(|l| l.contains("migcage:"))
        .map(|l| l[l.find("migcage:").unwrap()..].to_string())
        .unwrap_or_else(|| panic!("no migcage line in the runtime's error: {stderr}"))
}
