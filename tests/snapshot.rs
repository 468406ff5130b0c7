//! The inventory snapshot end to end: real runc containers on a simulated host whose MIG
//! instances change under a snapshot taken before, and whose NVML is broken or hangs.
//!
//! - a destroyed and re-created instance (same GPU/compute instance ids, new UUID) is never handed
//!   out under its old UUID from the old snapshot, and the new UUID works;
//! - with a valid snapshot the hook does not touch NVML (NVML made to fail still lets containers
//!   start); after a change to procfs it does (and fails with NVML's error);
//! - a hanging NVML costs a bounded time and one line, not a wedged container start.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Bundle, Mode, SimHost, MIGCAGE, PROBE};
use migcage::config::Config;
use serde_json::{json, Value};

/// A config for `host` whose state dir (the snapshot's home) lives outside the simulated root, so
/// that it survives `simulate` re-making the root, as /run/migcage survives instance changes.
struct Setup {
    host: SimHost,
    state: tempfile::TempDir,
    config: PathBuf,
}

impl Setup {
    fn new(topology: &str, nvml_timeout_ms: Option<u64>) -> Setup {
        let host = SimHost::new(topology);
        let state = tempfile::Builder::new()
            .prefix("migcage-state-")
            .tempdir()
            .unwrap();
        let text = std::fs::read_to_string(host.config()).unwrap();
        let mut config = Config::parse(&text, &host.config()).unwrap();
        config.state_dir = state.path().join("run");
        if let Some(ms) = nvml_timeout_ms {
            config.nvml_timeout_ms = ms;
        }
        let path = state.path().join("config.toml");
        std::fs::write(&path, toml::to_string_pretty(&config).unwrap()).unwrap();
        Setup {
            host,
            state,
            config: path,
        }
    }

    fn snapshot_path(&self) -> PathBuf {
        self.state.path().join("run/inventory.json")
    }

    fn snapshot_text(&self) -> String {
        std::fs::read_to_string(self.snapshot_path()).unwrap_or_default()
    }

    fn migcage(&self, args: &[&str]) -> std::process::Output {
        Command::new(MIGCAGE)
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .output()
            .unwrap()
    }

    fn list(&self) -> Value {
        let out = self.migcage(&["list", "--json"]);
        assert!(
            out.status.success(),
            "list: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Run a probe container asking for `visible` with this setup's config.
    fn run(&self, visible: &str) -> common::Run {
        let env = format!("NVIDIA_VISIBLE_DEVICES={visible}");
        let mut b = Bundle::new(&self.host, &[env.as_str()], PROBE);
        b.config["hooks"]["prestart"][0]["env"] =
            json!([format!("MIGCAGE_CONFIG={}", self.config.display())]);
        b.write();
        common::run(Mode::RuncV1, &b, &self.host)
    }

    /// The simulated NVML's own topology file (what `nvmlInit` reads).
    fn nvml_topology(&self) -> PathBuf {
        self.host
            .dir
            .path()
            .join(migcage::core::driver_files::LIBRARY_DIR.trim_start_matches('/'))
            .join(migcage_simulate::libs::SIM_TOPOLOGY_FILE)
    }

    /// Inject NVML faults without touching procfs: edit only the simulated NVML's topology.
    fn nvml_faults(&self, faults: &[(&str, toml::Value)]) {
        let path = self.nvml_topology();
        let mut topo: toml::Table = std::fs::read_to_string(&path).unwrap().parse().unwrap();
        let table = topo
            .entry("faults")
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .unwrap();
        for (k, v) in faults {
            table.insert(k.to_string(), v.clone());
        }
        std::fs::write(&path, toml::to_string(&topo).unwrap()).unwrap();
    }
}

fn unavailable(test: &str) -> bool {
    match Mode::RuncV1.unavailable() {
        Some(why) => common::skip_unless(false, test, &why),
        None => false,
    }
}

/// The nodes (path -> major:minor) a container given MIG device `g:m` of `listing` must have.
fn nodes_of(listing: &Value, g: usize, m: usize) -> BTreeMap<String, (u32, u32)> {
    let gpu = &listing["gpus"][g];
    listing["common_nodes"]
        .as_array()
        .unwrap()
        .iter()
        .chain(gpu["mig_devices"][m]["nodes"].as_array().unwrap())
        .map(|n| {
            (
                n["path"].as_str().unwrap().to_string(),
                (
                    n["major"].as_u64().unwrap() as u32,
                    n["minor"].as_u64().unwrap() as u32,
                ),
            )
        })
        .collect()
}

fn assert_got(run: &common::Run, want: &BTreeMap<String, (u32, u32)>, ctx: &str) {
    assert!(run.ok(), "{ctx}: container failed: {}", run.stderr());
    assert!(
        run.stdout().contains("PROBE-DONE"),
        "{ctx}: {}",
        run.stdout()
    );
    let got: BTreeMap<String, (u32, u32)> = run
        .nodes()
        .into_iter()
        .map(|(p, (a, b, _))| (p, (a, b)))
        .collect();
    assert_eq!(&got, want, "{ctx}: device nodes");
    let opens = run.opens();
    for path in want.keys() {
        assert_eq!(
            opens.get(path).map(String::as_str),
            Some("ENXIO"),
            "{ctx}: open {path}"
        );
    }
}

/// Remove a file and write it again with the same text, as the driver re-makes an instance's
/// procfs entries; a second file holds the old inode number so that the new one differs.
fn recreate(path: &Path) {
    let text = std::fs::read(path).unwrap();
    let hold = path.with_extension("hold");
    std::fs::rename(path, &hold).unwrap();
    std::fs::write(path, text).unwrap();
    std::fs::remove_file(hold).unwrap();
}

#[test]
fn recreated_instance_old_uuid_refused_new_uuid_works() {
    if unavailable("recreated_instance_old_uuid_refused_new_uuid_works") {
        return;
    }
    let s = Setup::new("a100-7x1g", None);
    let listing = s.list();
    let dev = &listing["gpus"][0]["mig_devices"][1];
    let old = dev["uuid"].as_str().unwrap().to_string();
    let gi = dev["gpu_instance_id"].as_u64().unwrap();
    let want = nodes_of(&listing, 0, 1);
    assert!(
        s.snapshot_text().contains(&old),
        "list wrote no snapshot with {old} at {}",
        s.snapshot_path().display()
    );
    assert_got(&s.run(&old), &want, "before, by the old UUID");

    // Destroy GPU instance `gi` and create it again: same ids, same caps minors, a new UUID.
    let new = "MIG-0badcafe-1234-5678-9abc-def012345678";
    let mut topo: toml::Table = std::fs::read_to_string(s.host.dir.path().join("topology.toml"))
        .unwrap()
        .parse()
        .unwrap();
    let gis = topo["gpus"].as_array_mut().unwrap()[0]["gpu_instances"]
        .as_array_mut()
        .unwrap();
    let target = gis
        .iter_mut()
        .find(|g| g["id"].as_integer() == Some(gi as i64))
        .unwrap();
    let ci = &mut target["compute_instances"].as_array_mut().unwrap()[0];
    assert_eq!(ci["uuid"].as_str(), Some(old.as_str()));
    ci.as_table_mut()
        .unwrap()
        .insert("uuid".into(), toml::Value::String(new.into()));
    let topo_file = s.state.path().join("recreated.toml");
    std::fs::write(&topo_file, toml::to_string(&topo).unwrap()).unwrap();
    let out = Command::new(MIGCAGE)
        .args(["simulate", "--topology"])
        .arg(&topo_file)
        .arg("--root")
        .arg(s.host.dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "re-simulate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The snapshot from before is still there and still names the old UUID.
    let before = s.snapshot_text();
    assert!(before.contains(&old) && !before.contains(new));

    let refused = s.run(&old);
    assert!(
        !refused.ok(),
        "the old UUID was handed out: {}",
        refused.stdout()
    );
    assert!(
        refused
            .stderr()
            .contains(&format!("{old}: no MIG device has that UUID")),
        "{}",
        refused.stderr()
    );
    assert!(!refused.stdout().contains("PROBE-DONE"));

    assert_got(&s.run(new), &want, "after, by the new UUID");
    let after = s.snapshot_text();
    assert!(
        after.contains(new) && !after.contains(&old),
        "the snapshot was not rewritten"
    );
}

#[test]
fn valid_snapshot_keeps_nvml_off_the_container_start() {
    if unavailable("valid_snapshot_keeps_nvml_off_the_container_start") {
        return;
    }
    let s = Setup::new("a100-7x1g", None);
    let listing = s.list();
    let want = nodes_of(&listing, 0, 1);
    s.nvml_faults(&[(
        "init_error",
        toml::Value::String("DRIVER_NOT_LOADED".into()),
    )]);
    // NVML is broken now: full discovery fails.
    let out = s.migcage(&["refresh"]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success() && err.contains("cannot initialize NVML"),
        "{err}"
    );
    // The snapshot still answers.
    assert_got(
        &s.run("0:1"),
        &want,
        "with NVML failing and a valid snapshot",
    );

    // An instance's procfs entries re-made: the snapshot no longer answers, NVML must.
    let gi = listing["gpus"][0]["mig_devices"][1]["gpu_instance_id"]
        .as_u64()
        .unwrap();
    recreate(&s.host.dir.path().join(format!(
        "proc/driver/nvidia/capabilities/gpu0/mig/gi{gi}/ci0/access"
    )));
    let failed = s.run("0:1");
    assert!(!failed.ok(), "started without NVML after a change");
    assert!(
        failed.stderr().contains("cannot initialize NVML"),
        "{}",
        failed.stderr()
    );
    assert!(!failed.stdout().contains("PROBE-DONE"));
}

#[test]
fn hanging_nvml_is_bounded() {
    if unavailable("hanging_nvml_is_bounded") {
        return;
    }
    const DELAY_MS: i64 = 30_000;
    let s = Setup::new("a100-7x1g", Some(400));
    s.nvml_faults(&[("init_delay_ms", toml::Value::Integer(DELAY_MS))]);
    let started = Instant::now();
    let out = s.migcage(&["list"]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success());
    assert!(err.contains("did not answer within 400 ms"), "{err}");
    assert!(err.contains("nvml_timeout_ms"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    // It gave up long before NVML would have answered.
    assert!(started.elapsed() < Duration::from_millis(DELAY_MS as u64 / 3));

    let started = Instant::now();
    let run = s.run("0:1");
    assert!(!run.ok());
    assert!(
        run.stderr().contains("did not answer within 400 ms"),
        "{}",
        run.stderr()
    );
    assert!(!run.stdout().contains("PROBE-DONE"));
    assert!(started.elapsed() < Duration::from_millis(DELAY_MS as u64 / 3));
}
