//! Load: 500 container starts, 20 at a time, on a simulated DGX (8 A100s, 56 MIG devices), with
//! mixed requests (MIG index, MIG UUID, whole GPU, all, none, profile), half through
//! `migcage hook` and half through `migcage runtime` (the runtime wrapper), on runc with cgroup v1
//! and v2.
//!
//! Every container probes itself: every GPU node it has opens with ENXIO (its cgroup lets it
//! through) and two nodes of the host it was not given, picked at random, with EPERM; its nodes
//! are exactly those of its request (for a profile, one instance of the GPU it named). Two
//! containers that held one MIG instance never ran at the same time. Zero failures, zero
//! isolation violations, and nothing left: no mount, cgroup, cgroup device eBPF program, or
//! lease.
//!
//! Start times (from spawning the runtime to the container's first instruction, by the kernel's
//! uptime clock, 10 ms resolution) are printed, not asserted. `MIGCAGE_LOAD_STARTS` and
//! `MIGCAGE_LOAD_PARALLEL` change the size (defaults 500 and 20).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{Bundle, Mode, SimHost, MIGCAGE};
use serde_json::{json, Value};

/// Runs in every container: when it started and ended (uptime), its nodes, each opened, and the
/// foreign nodes in `$MC_FOREIGN` opened.
const LOAD_PROBE: &str = r#"
read up _ < /proc/uptime; echo "START $up"
probe() { out=$(cat "$1" 2>&1 </dev/null); case "$out" in
  *"No such device or address"*) r=ENXIO;; *"Operation not permitted"*) r=EPERM;;
  *"No such file"*) r=ENOENT;; *) r="OTHER";; esac; echo "OPEN $1 $r"; }
for f in /dev/nvidia* /dev/nvidia-caps/*; do [ -c "$f" ] && stat -c 'NODE %n %t:%T' "$f"; done
for f in /dev/nvidia* /dev/nvidia-caps/*; do [ -c "$f" ] && probe "$f"; done
for f in $MC_FOREIGN; do probe "$f"; done
read up _ < /proc/uptime; echo "END $up"
echo PROBE-DONE
"#;

/// What a container asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    MigIndex,
    MigUuid,
    WholeGpu,
    All,
    None,
    Profile,
}

const KINDS: [Kind; 6] = [
    Kind::MigIndex,
    Kind::Profile,
    Kind::MigUuid,
    Kind::None,
    Kind::WholeGpu,
    Kind::All,
];

/// A node: (major, minor).
type Num = (u32, u32);

/// One MIG device of the listing.
struct Instance {
    index: String,
    uuid: String,
    gpu: usize,
    nodes: BTreeSet<Num>,
}

/// The host as `list --json` shows it.
struct Host {
    sim: SimHost,
    common: BTreeSet<Num>,
    gpu_nodes: Vec<BTreeSet<Num>>,
    instances: Vec<Instance>,
    /// Every node of the host: path under dev/ -> number.
    all: BTreeMap<String, Num>,
}

fn nums(list: &Value) -> BTreeSet<Num> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["major"].as_u64().unwrap() as u32,
                n["minor"].as_u64().unwrap() as u32,
            )
        })
        .collect()
}

impl Host {
    fn new() -> Host {
        let sim = SimHost::new("dgx-8x7");
        let l = sim.list();
        let mut gpu_nodes = Vec::new();
        let mut instances = Vec::new();
        for (g, gpu) in l["gpus"].as_array().unwrap().iter().enumerate() {
            gpu_nodes.push(nums(&gpu["nodes"]));
            for m in gpu["mig_devices"].as_array().unwrap() {
                instances.push(Instance {
                    index: m["index"].as_str().unwrap().to_string(),
                    uuid: m["uuid"].as_str().unwrap().to_string(),
                    gpu: g,
                    nodes: nums(&m["nodes"]),
                });
            }
        }
        assert_eq!(instances.len(), 56, "dgx-8x7 has 56 MIG devices");
        let all = sim.all_nodes();
        Host {
            common: nums(&l["common_nodes"]),
            gpu_nodes,
            instances,
            all,
            sim,
        }
    }

    /// The instance whose caps nodes are among `nodes`, when exactly one.
    fn instance_in(&self, nodes: &BTreeSet<Num>) -> Vec<&Instance> {
        self.instances
            .iter()
            .filter(|i| i.nodes.iter().all(|n| nodes.contains(n)))
            .collect()
    }
}

/// A small deterministic PRNG (xorshift64*).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n as u64) as usize
    }
}

/// One container start, planned.
struct Plan {
    i: usize,
    kind: Kind,
    ask: String,
    mode: Mode,
    runtime_mode: bool,
    /// The nodes it must have (None for a profile: one instance of `profile_gpu`).
    want: Option<BTreeSet<Num>>,
    profile_gpu: Option<usize>,
    /// Host nodes it must not open (paths under /hostdev).
    foreign: Vec<String>,
}

fn plan(host: &Host, i: usize, parallel: usize) -> Plan {
    let worker = i % parallel;
    let kind = KINDS[(i / parallel + worker) % KINDS.len()];
    // Named MIG devices: worker w owns instance w (GPUs 0 to 2), so that no two running
    // containers name one instance. Profiles go to GPUs 4 to 7, never to a named one.
    let own = &host.instances[worker];
    let profile_gpu = 4 + worker % 4;
    let whole = 3;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (i as u64 + 1));
    let gpu_and = |nodes: &BTreeSet<Num>, gpu: usize| -> BTreeSet<Num> {
        host.common
            .iter()
            .chain(&host.gpu_nodes[gpu])
            .chain(nodes)
            .copied()
            .collect()
    };
    let (ask, want) = match kind {
        Kind::MigIndex => (own.index.clone(), Some(gpu_and(&own.nodes, own.gpu))),
        Kind::MigUuid => (own.uuid.clone(), Some(gpu_and(&own.nodes, own.gpu))),
        Kind::WholeGpu => (whole.to_string(), Some(gpu_and(&BTreeSet::new(), whole))),
        Kind::None => ("none".to_string(), Some(BTreeSet::new())),
        Kind::All => {
            let mut all: BTreeSet<Num> = host.common.clone();
            for g in &host.gpu_nodes {
                all.extend(g);
            }
            for m in &host.instances {
                all.extend(&m.nodes);
            }
            ("all".to_string(), Some(all))
        }
        Kind::Profile => (format!("profile:{profile_gpu}/1g.5gb"), None),
    };
    // Two foreign nodes: for a profile, nodes of other GPUs.
    let candidates: Vec<&String> = host
        .all
        .iter()
        .filter(|(_, n)| match &want {
            Some(w) => !w.contains(n),
            None => {
                !host.common.contains(n)
                    && !host.gpu_nodes[profile_gpu].contains(n)
                    && !host
                        .instances
                        .iter()
                        .any(|m| m.gpu == profile_gpu && m.nodes.contains(n))
            }
        })
        .map(|(p, _)| p)
        .collect();
    let mut foreign = Vec::new();
    while foreign.len() < 2 && !candidates.is_empty() {
        let p = format!("/hostdev/{}", candidates[rng.below(candidates.len())]);
        if !foreign.contains(&p) {
            foreign.push(p);
        }
    }
    Plan {
        i,
        kind,
        ask,
        mode: if i % 5 == 4 {
            Mode::RuncV2
        } else {
            Mode::RuncV1
        },
        runtime_mode: i % 2 == 1,
        want,
        profile_gpu: (kind == Kind::Profile).then_some(profile_gpu),
        foreign,
    }
}

/// What one start did.
struct Outcome {
    id: String,
    /// Spawn to the container's first instruction (uptime clock), and spawn to exit.
    start_latency: Option<Duration>,
    total: Duration,
    /// The instance it held, and when (uptime seconds).
    held: Option<(String, f64, f64)>,
    problems: Vec<String>,
}

fn uptime() -> f64 {
    std::fs::read_to_string("/proc/uptime")
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

fn start(host: &Host, base: &Bundle, bundles: &Path, p: &Plan) -> Outcome {
    let id = common::unique("load");
    let dir = bundles.join(&id);
    std::fs::create_dir_all(&dir).unwrap();
    let mut c = base.config.clone();
    c["root"]["path"] = json!(base.path().join("rootfs").display().to_string());
    let env = c["process"]["env"].as_array_mut().unwrap();
    env.push(json!(format!("NVIDIA_VISIBLE_DEVICES={}", p.ask)));
    env.push(json!(format!("MC_FOREIGN={}", p.foreign.join(" "))));
    if p.runtime_mode {
        // The wrapper writes its own hooks for `run` (createRuntime, poststop).
        c.as_object_mut().unwrap().remove("hooks");
    } else {
        let mut post = c["hooks"]["prestart"][0].clone();
        post["args"] = json!(["migcage", "hook", "poststop"]);
        c["hooks"]["poststop"] = json!([post]);
    }
    std::fs::write(dir.join("config.json"), serde_json::to_vec(&c).unwrap()).unwrap();
    let runtime = if p.runtime_mode {
        format!("{MIGCAGE} --config {} runtime", host.sim.config().display())
    } else {
        "runc".to_string()
    };
    let prelude = match p.mode {
        Mode::RuncV2 => "mount -t cgroup2 none /sys/fs/cgroup && ",
        _ => "",
    };
    let spawned = uptime();
    let t0 = Instant::now();
    let out = Command::new("timeout")
        .args([
            "120",
            "unshare",
            "-m",
            "--propagation",
            "private",
            "sh",
            "-c",
        ])
        .arg(format!(
            "{prelude}exec {runtime} run --bundle {} {id}",
            dir.display()
        ))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let total = t0.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut problems = Vec::new();
    let ctx = format!(
        "#{} {id} {:?} {} asks {}",
        p.i,
        p.mode,
        if p.runtime_mode { "runtime" } else { "hook" },
        p.ask
    );
    if !out.status.success() || !stdout.contains("PROBE-DONE") {
        let _ = Command::new("runc").args(["delete", "-f", &id]).output();
        problems.push(format!(
            "{ctx}: failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let mut nodes = BTreeSet::new();
    let mut started = None;
    let mut ended = None;
    for line in stdout.lines() {
        if let Some(rest) = line.strip_prefix("NODE ") {
            let num = rest.split_whitespace().nth(1).unwrap_or_default();
            if let Some((ma, mi)) = num.split_once(':') {
                if let (Ok(a), Ok(b)) = (u32::from_str_radix(ma, 16), u32::from_str_radix(mi, 16)) {
                    nodes.insert((a, b));
                }
            }
        } else if let Some(rest) = line.strip_prefix("OPEN ") {
            let (path, r) = rest.rsplit_once(' ').unwrap_or((rest, ""));
            let want = if path.starts_with("/hostdev/") {
                "EPERM"
            } else {
                "ENXIO"
            };
            if r != want {
                problems.push(format!(
                    "{ctx}: isolation: {path} opens with {r}, want {want}"
                ));
            }
        } else if let Some(rest) = line.strip_prefix("START ") {
            started = rest.trim().parse::<f64>().ok();
        } else if let Some(rest) = line.strip_prefix("END ") {
            ended = rest.trim().parse::<f64>().ok();
        }
    }
    let opened_foreign = stdout
        .lines()
        .filter(|l| l.starts_with("OPEN /hostdev/"))
        .count();
    if problems.is_empty() && opened_foreign != p.foreign.len() {
        problems.push(format!(
            "{ctx}: probed {opened_foreign} foreign nodes, want {}",
            p.foreign.len()
        ));
    }
    let mut held = None;
    if problems.is_empty() {
        match &p.want {
            Some(w) if *w != nodes => problems.push(format!("{ctx}: nodes {nodes:?}, want {w:?}")),
            Some(_) => {}
            None => {
                let g = p.profile_gpu.unwrap();
                let inst = host.instance_in(&nodes);
                let want_nodes: Option<BTreeSet<Num>> = inst.first().map(|m| {
                    host.common
                        .iter()
                        .chain(&host.gpu_nodes[g])
                        .chain(&m.nodes)
                        .copied()
                        .collect()
                });
                if inst.len() != 1 || inst[0].gpu != g || want_nodes.as_ref() != Some(&nodes) {
                    problems.push(format!(
                        "{ctx}: nodes {nodes:?} are not one 1g.5gb instance of GPU {g}"
                    ));
                }
            }
        }
        let instances: Vec<&Instance> = match p.kind {
            Kind::MigIndex | Kind::MigUuid | Kind::Profile => host.instance_in(&nodes),
            _ => Vec::new(),
        };
        if let (Some(m), Some(s), Some(e)) = (instances.first(), started, ended) {
            held = Some((m.index.clone(), s, e));
        }
    }
    // Nothing left by this container.
    let mounts = common::mounts_under(&[&dir]);
    if !mounts.is_empty() {
        problems.push(format!("{ctx}: mounts left: {mounts:?}"));
    }
    let cg = common::cgroups_named(&id);
    if !cg.is_empty() {
        problems.push(format!("{ctx}: cgroups left: {cg:?}"));
    }
    Outcome {
        start_latency: started.map(|s| Duration::from_secs_f64((s - spawned).max(0.0))),
        total,
        held,
        problems,
        id,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[at]
}

#[test]
fn five_hundred_starts_twenty_at_a_time() {
    let test = "five_hundred_starts_twenty_at_a_time";
    for mode in [Mode::RuncV1, Mode::RuncV2] {
        if let Some(why) = mode.unavailable() {
            common::skip(&format!("{test}: {why}"));
            return;
        }
    }
    if common::skip_unless(
        common::have("bpftool"),
        test,
        "bpftool is not installed (scripts/deps.sh installs it)",
    ) {
        return;
    }
    let env_num = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let starts = env_num("MIGCAGE_LOAD_STARTS", 500);
    let parallel = env_num("MIGCAGE_LOAD_PARALLEL", 20).clamp(1, 20);
    let t0 = Instant::now();
    let host = Host::new();
    let base = Bundle::new(&host.sim, &[], LOAD_PROBE);
    let bundles = tempfile::Builder::new()
        .prefix("migcage-load-")
        .tempdir()
        .unwrap();
    let progs = common::device_progs();
    let plans: Vec<Plan> = (0..starts).map(|i| plan(&host, i, parallel)).collect();
    let outcomes = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for w in 0..parallel {
            let (host, base, bundles, plans, outcomes) =
                (&host, &base, bundles.path(), &plans, &outcomes);
            s.spawn(move || {
                for p in plans.iter().skip(w).step_by(parallel) {
                    let o = start(host, base, bundles, p);
                    outcomes.lock().unwrap().push((p.kind, p.runtime_mode, o));
                }
            });
        }
    });
    let outcomes = outcomes.into_inner().unwrap();
    let elapsed = t0.elapsed();

    let mut problems: Vec<String> = outcomes
        .iter()
        .flat_map(|(_, _, o)| o.problems.clone())
        .collect();
    // One instance, one container at a time.
    let mut by_instance: BTreeMap<&str, Vec<(f64, f64, &str)>> = BTreeMap::new();
    for (_, _, o) in &outcomes {
        if let Some((m, s, e)) = &o.held {
            by_instance.entry(m).or_default().push((*s, *e, &o.id));
        }
    }
    for (m, mut spans) in by_instance {
        spans.sort_by(|a, b| a.0.total_cmp(&b.0));
        for w in spans.windows(2) {
            // Uptime has 10 ms steps: equal readings may be back to back.
            if w[1].0 < w[0].1 {
                problems.push(format!(
                    "instance {m} held by {} and {} at once ({:.2}-{:.2} and {:.2}-{:.2})",
                    w[0].2, w[1].2, w[0].0, w[0].1, w[1].0, w[1].1
                ));
            }
        }
    }
    // Nothing left on the host.
    let mounts = common::mounts_under(&[host.sim.dir.path(), bundles.path(), base.path()]);
    if !mounts.is_empty() {
        problems.push(format!("mounts left: {mounts:?}"));
    }
    let leaked = common::leaked_device_progs(&progs, 10);
    if !leaked.is_empty() {
        problems.push(format!("cgroup device eBPF programs left: {leaked:?}"));
    }
    let state_dir = host.sim.dir.path().join("run/migcage");
    let leases = migcage::host::lease::Store::new(&state_dir).read().unwrap();
    let (live, stale) = migcage::host::lease::partition_live(leases, Path::new("/proc"));
    if !live.is_empty() {
        problems.push(format!("live leases left: {live:?}"));
    }
    if !stale.is_empty() {
        problems.push(format!(
            "leases left in the store (their holders are gone, so they are free, but poststop should have released them): {:?}",
            stale.iter().map(|l| (&l.container, &l.uuid)).collect::<Vec<_>>()
        ));
    }

    // The figures (printed, not asserted).
    let mut report = String::new();
    let line = |name: &str, filter: &dyn Fn(Kind, bool) -> bool| -> String {
        let mut lat: Vec<Duration> = outcomes
            .iter()
            .filter(|(k, r, _)| filter(*k, *r))
            .filter_map(|(_, _, o)| o.start_latency)
            .collect();
        let mut tot: Vec<Duration> = outcomes
            .iter()
            .filter(|(k, r, _)| filter(*k, *r))
            .map(|(_, _, o)| o.total)
            .collect();
        lat.sort();
        tot.sort();
        format!(
            "  {name:<22} n={:<4} start p50 {:>4} ms p99 {:>4} ms | run (create to exit) p50 {:>4} ms p99 {:>4} ms\n",
            tot.len(),
            percentile(&lat, 0.5).as_millis(),
            percentile(&lat, 0.99).as_millis(),
            percentile(&tot, 0.5).as_millis(),
            percentile(&tot, 0.99).as_millis(),
        )
    };
    report.push_str(&line("all", &|_, _| true));
    report.push_str(&line("hook", &|_, r| !r));
    report.push_str(&line("runtime", &|_, r| r));
    for k in KINDS {
        report.push_str(&line(&format!("{k:?}"), &|kind, _| kind == k));
    }
    eprintln!(
        "load: {starts} starts, {parallel} at a time, on dgx-8x7 in {:.1} s ({:.1} starts/s); {} problems\n{report}",
        elapsed.as_secs_f64(),
        starts as f64 / elapsed.as_secs_f64(),
        problems.len()
    );
    assert!(
        problems.is_empty(),
        "{} problems in {starts} starts:\n  {}",
        problems.len(),
        problems
            .iter()
            .take(40)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n  ")
    );
}
