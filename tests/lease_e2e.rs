//! End to end: allocation by profile with leases. Real runc runs busybox containers that ask for
//! `NVIDIA_VISIBLE_DEVICES=profile:1g.5gb` on a simulated A100 split into seven 1g.5gb instances,
//! with `migcage hook` at prestart and poststop ([`common::lab`]).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use common::lab::{migcage_line, Lab, Opts, WITH_POSTSTOP};
use serde_json::{json, Value};

const PROFILE: &str = "NVIDIA_VISIBLE_DEVICES=profile:1g.5gb";

fn unavailable() -> Option<String> {
    common::Mode::RuncV1.unavailable()
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
    // From inside: seven different instances, each container exactly one, and its cgroup lets it
    // open its own caps nodes (ENXIO: no driver behind a simulated node) and no other's (EPERM).
    let got = lab.start_isolated(&seven, PROFILE);
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
                ..Opts::plain()
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
