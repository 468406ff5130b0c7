//! End to end: allocation by profile with leases. Real runc runs busybox containers that ask for
//! `NVIDIA_VISIBLE_DEVICES=profile:1g.5gb` on a simulated A100 split into seven 1g.5gb instances,
//! with `migcage hook` at prestart and poststop. Every check of what a container got is made from
//! inside it: it writes the MIG caps nodes it has (and, for the concurrency test, when it started
//! and stopped, from the kernel's clock) to a host directory bind-mounted into it.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{Bundle, SimHost, MIGCAGE, PROBE};
use serde_json::{json, Value};

const PROFILE: &str = "NVIDIA_VISIBLE_DEVICES=profile:1g.5gb";

/// Runs in every container: its caps nodes (and the probe's lines), then `START <sec> <usec>`,
/// then waits; on SIGTERM it appends `END <sec> <usec>` and exits. All to /shared/$MC_ID.
/// `adjtimex` (read-only) gives microseconds; busybox's date has no `%N`.
const HOLD: &str = r#"
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
struct Lab {
    host: SimHost,
    base: Bundle,
    shared: tempfile::TempDir,
    bundles: tempfile::TempDir,
    /// Every container started, for the cleanup.
    started: Mutex<Vec<String>>,
    /// caps minors (GI, CI) -> (index `0:3`, UUID), from `migcage list --json`.
    instances: BTreeMap<(u32, u32), (String, String)>,
}

/// How a container is started.
#[derive(Clone, Copy)]
struct Opts {
    /// `migcage hook poststop` registered (it releases the lease on `runc delete`).
    poststop: bool,
    /// Run the isolation probe too.
    probe: bool,
}

impl Opts {
    const fn plain() -> Opts {
        Opts {
            poststop: true,
            probe: false,
        }
    }
}

const WITH_POSTSTOP: Opts = Opts::plain();

/// What one container wrote.
#[derive(Debug, Default, Clone)]
struct Report {
    nodes: BTreeMap<String, (u32, u32)>,
    opens: BTreeMap<String, String>,
    start: Option<u64>,
    end: Option<u64>,
}

fn micros(rest: &str) -> Option<u64> {
    let mut it = rest.split_whitespace();
    let s: u64 = it.next()?.parse().ok()?;
    let us: u64 = it.next()?.parse().ok()?;
    Some(s * 1_000_000 + us)
}

impl Lab {
    fn new() -> Lab {
        let host = SimHost::new("a100-7x1g");
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
        let listing = host.list();
        let mut instances = BTreeMap::new();
        for g in listing["gpus"].as_array().unwrap() {
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
        assert_eq!(instances.len(), 7, "a100-7x1g has seven instances");
        Lab {
            host,
            base,
            shared,
            bundles,
            started: Mutex::new(Vec::new()),
            instances,
        }
    }

    /// Write container `id`'s bundle: the base config with its id, the shared dir, and hooks.
    fn bundle(&self, id: &str, env: &str, opts: Opts) -> PathBuf {
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
    fn start(&self, id: &str, env: &str, opts: Opts) -> Result<(), String> {
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
    fn start_all(&self, ids: &[String], env: &str, opts: &[Opts]) -> Vec<Result<(), String>> {
        std::thread::scope(|s| {
            let handles: Vec<_> = ids
                .iter()
                .zip(opts)
                .map(|(id, o)| s.spawn(move || self.start(id, env, *o)))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        })
    }

    fn status(&self, id: &str) -> Option<Value> {
        let out = Command::new("runc").args(["state", id]).output().unwrap();
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).unwrap())
    }

    fn wait_stopped(&self, id: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.status(id).is_some_and(|s| s["status"] != "stopped") {
            assert!(Instant::now() < deadline, "{id} did not stop");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// SIGTERM (the container records its end), wait, `runc delete` (poststop, if registered).
    fn stop(&self, id: &str) {
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
    fn report(&self, id: &str) -> Report {
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
    fn instance_of(&self, id: &str, r: &Report) -> (String, String) {
        let caps: BTreeSet<u32> = r
            .nodes
            .iter()
            .filter(|(p, _)| p.starts_with("/dev/nvidia-caps/"))
            .map(|(_, (_, minor))| *minor)
            .collect();
        let found: Vec<&(String, String)> = self
            .instances
            .iter()
            .filter(|((gi, ci), _)| caps.contains(gi) && caps.contains(ci))
            .map(|(_, v)| v)
            .collect();
        assert_eq!(caps.len(), 2, "{id}: caps nodes {:?}", r.nodes);
        assert_eq!(found.len(), 1, "{id}: caps nodes {:?}", r.nodes);
        found[0].clone()
    }

    /// `migcage list --json`: UUID -> [(container, stale)].
    fn holders(&self) -> BTreeMap<String, Vec<(String, bool)>> {
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
    fn lease_file(&self) -> Vec<Value> {
        let p = self.host.dir.path().join("run/migcage/leases/leases.json");
        match std::fs::read(&p) {
            Ok(b) => serde_json::from_slice::<Value>(&b).unwrap()["leases"]
                .as_array()
                .unwrap()
                .clone(),
            Err(_) => Vec::new(),
        }
    }

    fn migcage(&self, args: &[&str]) -> std::process::Output {
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
        let left = common::mounts_under(&[self.base.path(), self.host.dir.path()]);
        let cgroups: Vec<PathBuf> = self
            .started
            .lock()
            .unwrap()
            .iter()
            .flat_map(|id| common::cgroups_named(id))
            .collect();
        if !std::thread::panicking() {
            assert!(left.is_empty(), "mounts left on the host: {left:?}");
            assert!(cgroups.is_empty(), "cgroups left on the host: {cgroups:?}");
        }
    }
}

fn unavailable() -> Option<String> {
    common::Mode::RuncV1.unavailable()
}

/// The migcage line of a failed start.
fn migcage_line(stderr: &str) -> String {
    stderr
        .lines()
        .find(|l| l.contains("migcage:"))
        .map(|l| l[l.find("migcage:").unwrap()..].to_string())
        .unwrap_or_else(|| panic!("no migcage line in the runtime's error: {stderr}"))
}

fn ids(n: usize) -> Vec<String> {
    (0..n).map(|_| common::unique("lease")).collect()
}

#[test]
fn seven_at_once_the_eighth_refused_then_handed_over() {
    if let Some(why) = unavailable() {
        common::skip(&format!(
            "seven_at_once_the_eighth_refused_then_handed_over: {why}"
        ));
        return;
    }
    let lab = Lab::new();
    let seven = ids(7);
    let opts = [Opts {
        poststop: true,
        probe: true,
    }; 7];
    for (id, r) in seven.iter().zip(lab.start_all(&seven, PROFILE, &opts)) {
        assert!(r.is_ok(), "{id} did not start: {}", r.unwrap_err());
    }
    // From inside: seven different instances, each container exactly one, and its cgroup lets it
    // open its own caps nodes (ENXIO: no driver behind a simulated node) and no other's (EPERM).
    let mut got: BTreeMap<String, String> = BTreeMap::new();
    for id in &seven {
        let r = lab.report(id);
        let (index, uuid) = lab.instance_of(id, &r);
        let own: BTreeSet<u32> = r
            .nodes
            .iter()
            .filter(|(p, _)| p.starts_with("/dev/nvidia-caps/"))
            .map(|(_, (_, m))| *m)
            .collect();
        let caps_opens: Vec<(&String, &String)> = r
            .opens
            .iter()
            .filter(|(p, _)| p.starts_with("/hostdev/nvidia-caps/"))
            .collect();
        assert!(!caps_opens.is_empty(), "{id}: no probe output");
        for (p, res) in caps_opens {
            let minor: u32 = p.rsplit("nvidia-cap").next().unwrap().parse().unwrap();
            let want = if own.contains(&minor) {
                "ENXIO"
            } else {
                "EPERM"
            };
            assert_eq!(res, want, "{id} ({index}): open {p}");
        }
        assert!(
            got.insert(uuid, id.clone()).is_none(),
            "two containers got one instance"
        );
    }
    assert_eq!(got.len(), 7);
    // `list` says who holds what; the JSON and the table agree with the containers.
    let holders = lab.holders();
    for (uuid, id) in &got {
        assert_eq!(holders[uuid], [(id.clone(), false)], "{uuid}");
    }
    let table = String::from_utf8(lab.migcage(&["list"]).stdout).unwrap();
    for id in &seven {
        assert_eq!(
            table
                .matches(&format!("held by container {id} since "))
                .count(),
            1,
            "{table}"
        );
    }

    // The eighth: refused with one line naming every instance and its holder.
    let eighth = common::unique("lease");
    let e = lab.start(&eighth, PROFILE, WITH_POSTSTOP).unwrap_err();
    let line = migcage_line(&e);
    assert!(
        line.contains("NVIDIA_VISIBLE_DEVICES asks for profile:1g.5gb: all 7 MIG devices of profile 1g.5gb are in use: 0:0 MIG-"),
        "{line}"
    );
    for (uuid, id) in &got {
        assert!(
            line.contains(&format!("{uuid} by container {id} since ")),
            "{line}"
        );
    }
    assert!(!lab.shared.path().join(&eighth).exists(), "the eighth ran");
    let _ = Command::new("runc")
        .args(["delete", "-f", &eighth])
        .output();
    assert_eq!(
        lab.lease_file().len(),
        7,
        "the refused container took a lease"
    );

    // One stops: poststop releases its lease, and the next container gets its instance.
    let (freed, leaving) = got
        .iter()
        .nth(3)
        .map(|(u, i)| (u.clone(), i.clone()))
        .unwrap();
    lab.stop(&leaving);
    assert_eq!(lab.holders()[&freed], []);
    assert_eq!(lab.lease_file().len(), 6);
    let next = common::unique("lease");
    lab.start(&next, PROFILE, WITH_POSTSTOP).unwrap();
    let (_, uuid) = lab.instance_of(&next, &lab.report(&next));
    assert_eq!(uuid, freed, "the freed instance goes to the next container");
    assert_eq!(lab.holders()[&freed], [(next.clone(), false)]);

    // All stop: no lease is left.
    for id in seven.iter().filter(|i| **i != leaving).chain([&next]) {
        lab.stop(id);
    }
    assert!(lab.lease_file().is_empty(), "{:?}", lab.lease_file());
    assert!(lab.holders().values().all(Vec::is_empty));
}

#[test]
fn a_container_killed_without_poststop_does_not_leak_its_instance() {
    if let Some(why) = unavailable() {
        common::skip(&format!(
            "a_container_killed_without_poststop_does_not_leak_its_instance: {why}"
        ));
        return;
    }
    let lab = Lab::new();
    let seven = ids(7);
    // The first one has no poststop hook: nothing will release its lease.
    let mut opts = [WITH_POSTSTOP; 7];
    opts[0].poststop = false;
    for (id, r) in seven.iter().zip(lab.start_all(&seven, PROFILE, &opts)) {
        assert!(r.is_ok(), "{id} did not start: {}", r.unwrap_err());
    }
    let victim = &seven[0];
    let (_, lost) = lab.instance_of(victim, &lab.report(victim));
    // SIGKILL its init, as the OOM killer or a crashed shim would, then remove it.
    let pid = lab.status(victim).unwrap()["pid"].as_i64().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    lab.wait_stopped(victim);
    let d = Command::new("runc")
        .args(["delete", victim])
        .output()
        .unwrap();
    assert!(d.status.success(), "{}", String::from_utf8_lossy(&d.stderr));
    // The lease is still in the file (nothing released it), and list shows it stale.
    assert_eq!(lab.holders()[&lost], [(victim.clone(), true)]);
    assert_eq!(lab.lease_file().len(), 7);
    // The next allocation finds it stale and hands the instance on.
    let next = common::unique("lease");
    lab.start(&next, PROFILE, WITH_POSTSTOP).unwrap();
    let (_, uuid) = lab.instance_of(&next, &lab.report(&next));
    assert_eq!(uuid, lost);
    assert_eq!(lab.holders()[&lost], [(next.clone(), false)]);
    assert!(
        !lab.lease_file()
            .iter()
            .any(|l| l["container"] == victim.as_str()),
        "the stale lease is gone from the file"
    );

    // An operator can release a container's lease by hand: `migcage release`.
    let out = lab.migcage(&["release", &next]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with(&format!("released {lost} (held by container {next} since ")),
        "{stdout}"
    );
    // ... and is told that the container still runs.
    assert!(String::from_utf8_lossy(&out.stderr).contains("still runs"));
    let again = lab.migcage(&["release", &next]);
    assert!(!again.status.success());
    let e = String::from_utf8_lossy(&again.stderr);
    assert!(
        e.starts_with(&format!("migcage: release {next}: container \"{next}\" holds no lease (containers holding leases: ")),
        "{e}"
    );
    assert_eq!(e.lines().count(), 1, "{e}");

    for id in seven[1..].iter().chain([&next]) {
        lab.stop(id);
    }
    assert!(lab.lease_file().is_empty(), "{:?}", lab.lease_file());
}

/// A small deterministic PRNG (xorshift64*), so that a failure replays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn two_hundred_starts_with_random_stops_never_share_and_leave_nothing() {
    if let Some(why) = unavailable() {
        common::skip(&format!(
            "two_hundred_starts_with_random_stops_never_share_and_leave_nothing: {why}"
        ));
        return;
    }
    const STARTS: usize = 200;
    let t0 = Instant::now();
    let lab = Lab::new();
    let mut rng = Rng(0x6d69_6763_6167_6521);
    let mut running: Vec<String> = Vec::new();
    let mut ran: Vec<String> = Vec::new();
    let (mut refused, mut attempts, mut without_poststop) = (0, 0, 0);
    while ran.len() < STARTS {
        // Stop none to two, at least one when every instance is taken: the host stays nearly
        // full, so that starts at once often compete for the last instances.
        let mut stops = rng.below(3).min(running.len());
        if running.len() == 7 {
            stops = stops.max(1);
        }
        for _ in 0..stops {
            let id = running.swap_remove(rng.below(running.len()));
            lab.stop(&id);
        }
        // Start 1 to 3 at once; exactly as many as there are free instances get one.
        let n = (1 + rng.below(3)).min(STARTS - ran.len());
        let batch = ids(n);
        // One container in six has no poststop hook: its lease is released only by staleness.
        let opts: Vec<Opts> = (0..n)
            .map(|_| Opts {
                poststop: rng.below(6) != 0,
                probe: false,
            })
            .collect();
        let free = 7 - running.len();
        let results = lab.start_all(&batch, PROFILE, &opts);
        attempts += n;
        let mut ok = 0;
        for ((id, r), o) in batch.iter().zip(results).zip(&opts) {
            match r {
                Ok(()) => {
                    ok += 1;
                    running.push(id.clone());
                    ran.push(id.clone());
                    without_poststop += usize::from(!o.poststop);
                }
                Err(e) => {
                    refused += 1;
                    let line = migcage_line(&e);
                    assert!(line.contains("are in use"), "{id}: {line}");
                    let _ = Command::new("runc").args(["delete", "-f", id]).output();
                }
            }
        }
        assert_eq!(ok, n.min(free), "{n} started with {free} free");
    }
    for id in std::mem::take(&mut running) {
        lab.stop(&id);
    }
    let loop_time = t0.elapsed();

    // From inside: each container had exactly one instance, and one instance's holders never
    // overlapped in time (start and end as each container's kernel clock saw them).
    let mut by_instance: BTreeMap<String, Vec<(u64, u64, String)>> = BTreeMap::new();
    for id in &ran {
        let r = lab.report(id);
        let (_, uuid) = lab.instance_of(id, &r);
        let end = r.end.unwrap_or_else(|| panic!("{id}: no END line"));
        by_instance
            .entry(uuid)
            .or_default()
            .push((r.start.unwrap(), end, id.clone()));
    }
    assert_eq!(by_instance.len(), 7, "every instance was used");
    for (uuid, mut spans) in by_instance {
        spans.sort();
        for w in spans.windows(2) {
            assert!(
                w[0].1 <= w[1].0,
                "{uuid} given to {} (until {}) and {} (from {}) at once",
                w[0].2,
                w[0].1,
                w[1].2,
                w[1].0
            );
        }
    }

    // Nothing holds an instance any more; the leases of containers without poststop are stale
    // until the next allocation, which drops them.
    assert!(lab.holders().values().flatten().all(|(_, stale)| *stale));
    let last = common::unique("lease");
    lab.start(&last, PROFILE, WITH_POSTSTOP).unwrap();
    assert_eq!(lab.lease_file().len(), 1);
    lab.stop(&last);
    assert!(lab.lease_file().is_empty(), "{:?}", lab.lease_file());
    eprintln!(
        "{STARTS} containers ran ({attempts} starts, {refused} refused while full, {without_poststop} without poststop) in {:.1} s",
        loop_time.as_secs_f64()
    );
}

/// The lease file itself is never left half-written: no temp file stays next to it.
#[test]
fn the_store_is_a_file_and_a_lock_only() {
    if let Some(why) = unavailable() {
        common::skip(&format!("the_store_is_a_file_and_a_lock_only: {why}"));
        return;
    }
    let lab = Lab::new();
    let id = common::unique("lease");
    lab.start(&id, PROFILE, WITH_POSTSTOP).unwrap();
    lab.report(&id);
    let dir = lab.host.dir.path().join("run/migcage/leases");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["leases.json", "lock"]);
    let leases = lab.lease_file();
    assert_eq!(leases.len(), 1);
    let l = &leases[0];
    // The holder is the container's init as the host sees it, with its start time.
    let pid = lab.status(&id).unwrap()["pid"].as_i64().unwrap();
    assert_eq!(l["pid"].as_i64(), Some(pid));
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let start: u64 = stat[stat.rfind(')').unwrap() + 2..]
        .split_whitespace()
        .nth(19)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(l["start_time"].as_u64(), Some(start));
    assert_eq!(l["container"], id.as_str());
    assert_eq!(l["kind"], "profile");
    assert_eq!(l["asked"], "profile:1g.5gb");
    lab.stop(&id);
    assert!(Path::new(&dir).join("leases.json").exists());
    assert!(lab.lease_file().is_empty());
}

/// The hook run at prestart, createRuntime and createContainer for one container keeps one
/// lease, held by the container's init as the host sees it (in runc's createContainer hook the
/// state's pid is the init's pid inside the container).
#[test]
fn one_lease_across_three_hook_stages_held_by_the_init() {
    if let Some(why) = unavailable() {
        common::skip(&format!(
            "one_lease_across_three_hook_stages_held_by_the_init: {why}"
        ));
        return;
    }
    let lab = Lab::new();
    let id = common::unique("lease");
    let dir = lab.bundle(&id, PROFILE, Opts::plain());
    let path = dir.join("config.json");
    let mut c: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let hook = c["hooks"]["prestart"][0].clone();
    for stage in ["createRuntime", "createContainer"] {
        let mut h = hook.clone();
        h["args"] = json!(["migcage", "hook", stage]);
        c["hooks"][stage] = json!([h]);
    }
    std::fs::write(&path, serde_json::to_vec_pretty(&c).unwrap()).unwrap();
    lab.started.lock().unwrap().push(id.clone());
    let st = Command::new("runc")
        .args(["run", "-d", "--bundle"])
        .arg(&dir)
        .arg(&id)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    let (index, uuid) = lab.instance_of(&id, &lab.report(&id));
    assert_eq!(index, "0:0");
    let leases = lab.lease_file();
    assert_eq!(leases.len(), 1, "{leases:?}");
    assert_eq!(leases[0]["uuid"], uuid.as_str());
    let pid = lab.status(&id).unwrap()["pid"].as_i64().unwrap();
    assert_eq!(leases[0]["pid"].as_i64(), Some(pid), "the init holds it");
    // A second container is not confused by the first one's three stages.
    let other = common::unique("lease");
    lab.start(&other, PROFILE, Opts::plain()).unwrap();
    assert_eq!(lab.instance_of(&other, &lab.report(&other)).0, "0:1");
    lab.stop(&id);
    lab.stop(&other);
    assert!(lab.lease_file().is_empty());
}

/// Named instances (`0:2`, `MIG-...`) are leased too: a request by profile never gets one, and
/// naming a held one is refused (`exclusive`, the default) or shared (`shared`).
#[test]
fn named_instances_and_profiles_respect_each_other() {
    if let Some(why) = unavailable() {
        common::skip(&format!(
            "named_instances_and_profiles_respect_each_other: {why}"
        ));
        return;
    }
    let lab = Lab::new();
    let a = common::unique("lease");
    lab.start(&a, PROFILE, Opts::plain()).unwrap();
    let (index, uuid0) = lab.instance_of(&a, &lab.report(&a));
    assert_eq!(index, "0:0");
    // Naming it: refused, naming the holder.
    let b = common::unique("lease");
    let e = lab
        .start(&b, "NVIDIA_VISIBLE_DEVICES=0:0", Opts::plain())
        .unwrap_err();
    let line = migcage_line(&e);
    assert!(
        line.contains(&format!(
            "NVIDIA_VISIBLE_DEVICES asks for 0:0: MIG device 0:0 ({uuid0}) is held by container {a} since "
        )),
        "{line}"
    );
    assert!(line.contains("explicit = \"shared\""), "{line}");
    let _ = Command::new("runc").args(["delete", "-f", &b]).output();
    // Naming a free one works, and the next request by profile skips it.
    let c = common::unique("lease");
    lab.start(&c, "NVIDIA_VISIBLE_DEVICES=0:1", Opts::plain())
        .unwrap();
    assert_eq!(lab.instance_of(&c, &lab.report(&c)).0, "0:1");
    let d = common::unique("lease");
    lab.start(&d, PROFILE, Opts::plain()).unwrap();
    assert_eq!(lab.instance_of(&d, &lab.report(&d)).0, "0:2");

    // With explicit = "shared", naming a held instance is allowed, and list says it is shared.
    let config = lab.host.config();
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("explicit = \"exclusive\""), "{text}");
    std::fs::write(
        &config,
        text.replace("explicit = \"exclusive\"", "explicit = \"shared\""),
    )
    .unwrap();
    let e2 = common::unique("lease");
    lab.start(&e2, "NVIDIA_VISIBLE_DEVICES=0:0", Opts::plain())
        .unwrap();
    assert_eq!(lab.instance_of(&e2, &lab.report(&e2)).1, uuid0);
    let l = lab.host.list();
    let dev = &l["gpus"][0]["mig_devices"][0];
    assert_eq!(dev["shared"], true);
    let holders: BTreeSet<&str> = dev["leases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["container"].as_str().unwrap())
        .collect();
    assert_eq!(holders, BTreeSet::from([a.as_str(), e2.as_str()]));
    let table = String::from_utf8(lab.migcage(&["list"]).stdout).unwrap();
    assert!(
        table.contains(&format!("held by container {e2} since ")) && table.contains(", shared)"),
        "{table}"
    );
    // Requests by profile still never get a held instance.
    let f = common::unique("lease");
    lab.start(&f, PROFILE, Opts::plain()).unwrap();
    assert_eq!(lab.instance_of(&f, &lab.report(&f)).0, "0:3");
    for id in [&a, &c, &d, &e2, &f] {
        lab.stop(id);
    }
    assert!(lab.lease_file().is_empty());
}
