//! `migcage mig apply|assert|export` against the simulated NVML, the same code path real
//! hardware takes (nvml-wrapper loading a libnvidia-ml): a layout applied twice is a no-op the
//! second time and `mig capacity` (read-only) agrees with the placement model; an instance a
//! live container holds is kept, or the apply is refused naming it
//! and its holder; bad input is one line and changes nothing; an apply killed between creating a
//! GPU instance and its compute instance is finished by the next.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::configure::ok;
use common::{SimHost, MIGCAGE};
use migcage::host::lease::{self, Lease, LeaseKind, Store};

const CONFIGS: &str = r#"version: v1
mig-configs:
  all-1g.5gb:
    - devices: all
      mig-enabled: true
      mig-devices:
        "1g.5gb": 7
  mixed:
    - devices: all
      mig-enabled: true
      mig-devices: { "3g.20gb": 1, "2g.10gb": 1, "1g.5gb": 2 }
  one-7g:
    - devices: all
      mig-enabled: true
      mig-devices: { "7g.40gb": 1 }
  too-many:
    - devices: all
      mig-enabled: true
      mig-devices: { "3g.20gb": 3 }
  unknown-profile:
    - devices: all
      mig-enabled: true
      mig-devices: { "1g.6gb": 1 }
  no-such-gpu:
    - devices: [3]
      mig-enabled: true
      mig-devices: { "1g.5gb": 1 }
"#;

struct Host {
    sim: SimHost,
    file: PathBuf,
}

impl Host {
    fn new(topology: &str) -> Host {
        let sim = SimHost::new(topology);
        let file = sim.dir.path().join("mig-parted.yaml");
        std::fs::write(&file, CONFIGS).unwrap();
        Host { sim, file }
    }

    fn migcage(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        Command::new(MIGCAGE)
            .arg("--config")
            .arg(self.sim.config())
            .args(args)
            .envs(env.iter().copied())
            .output()
            .unwrap()
    }

    fn apply(&self, name: &str, extra: &[&str]) -> Output {
        let file = self.file.display().to_string();
        let mut args = vec!["mig", "apply", "-f", &file, "-c", name];
        args.extend(extra);
        self.migcage(&args, &[])
    }

    /// `mig export`: today's layout.
    fn export(&self) -> String {
        ok(&self.migcage(&["mig", "export"], &[]))
    }

    fn state_dir(&self) -> PathBuf {
        self.sim.dir.path().join("run/migcage")
    }
}

/// The one line a refused command prints, checked to be one line starting with `migcage:`.
fn refused(out: &Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "succeeded: {err}");
    assert_eq!(err.lines().count(), 1, "not one line: {err}");
    assert!(err.starts_with("migcage: "), "{err}");
    err
}

fn root_or_skip() -> bool {
    common::skip_unless(
        common::is_root(),
        &common::test_name(),
        "simulate needs root (CAP_MKNOD)",
    )
}

/// A container holding `uuid`: a lease whose holder is a live process (dropped: killed).
struct Holder(std::process::Child);

impl Holder {
    fn take(state_dir: &Path, uuid: &str, container: &str) -> Holder {
        let child = Command::new("sleep").arg("600").spawn().unwrap();
        let pid = child.id() as i32;
        let stat = lease::read_stat(Path::new("/proc"), &pid.to_string())
            .unwrap()
            .unwrap();
        let store = Store::new(state_dir);
        let locked = store.lock().unwrap();
        let mut all = locked.read().unwrap();
        all.push(Lease {
            uuid: uuid.into(),
            container: container.into(),
            pid,
            start_time: stat.start_time,
            since: lease::now_unix(),
            kind: LeaseKind::Profile,
            asked: "profile:1g.5gb".into(),
        });
        locked.write(&all).unwrap();
        Holder(child)
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The MIG devices `list --json` shows: (profile, UUID).
fn devices(host: &Host) -> Vec<(String, String)> {
    host.sim.list()["gpus"][0]["mig_devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["profile"].as_str().unwrap().to_string(),
                m["uuid"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn apply_twice_is_a_no_op_and_assert_and_export_agree() {
    if root_or_skip() {
        return;
    }
    let host = Host::new("a100-empty");
    let file = host.file.display().to_string();
    let assert = |name: &str| host.migcage(&["mig", "assert", "-f", &file, "-c", name], &[]);
    refused(&assert("mixed"));
    let dry = ok(&host.apply("mixed", &["--dry-run"]));
    assert_eq!(dry.lines().count(), 4, "{dry}");
    assert!(
        dry.lines().all(|l| l.starts_with("would GPU 0: create ")),
        "{dry}"
    );
    assert!(devices(&host).is_empty(), "a dry run changed the GPU");

    let first = ok(&host.apply("mixed", &[]));
    assert!(
        first.ends_with("the GPUs now have layout mixed\n"),
        "{first}"
    );
    let after = devices(&host);
    let mut profiles: Vec<&str> = after.iter().map(|(p, _)| p.as_str()).collect();
    profiles.sort_unstable();
    assert_eq!(profiles, ["1g.5gb", "1g.5gb", "2g.10gb", "3g.20gb"]);
    let second = ok(&host.apply("mixed", &[]));
    assert_eq!(
        second,
        "the GPUs already have layout mixed; nothing to do\n"
    );
    assert_eq!(devices(&host), after, "the second apply changed something");
    ok(&assert("mixed"));

    // NVML's placements and remaining capacity agree with migcage's model, profile by profile.
    let capacity = ok(&host.migcage(&["mig", "capacity"], &[]));
    assert_eq!(capacity.lines().count(), 7, "{capacity}");
    assert!(
        capacity.contains("GPU 0 3g.20gb: placements 0:4 4:4, remaining 0"),
        "{capacity}"
    );
    assert!(!capacity.contains("DIFFERS"), "{capacity}");

    // Export reads back as a configuration the GPUs have.
    let exported = host.sim.dir.path().join("exported.yaml");
    std::fs::write(&exported, host.export()).unwrap();
    let exported = exported.display().to_string();
    ok(&host.migcage(&["mig", "assert", "-f", &exported, "-c", "current"], &[]));
}

#[test]
fn held_instances_are_kept_or_the_apply_names_their_holder() {
    if root_or_skip() {
        return;
    }
    let host = Host::new("a100-empty");
    ok(&host.apply("mixed", &[]));
    let before = devices(&host);
    let small = before
        .iter()
        .find(|(p, _)| p == "1g.5gb")
        .unwrap()
        .1
        .clone();
    let _holder = Holder::take(&host.state_dir(), &small, "ctr-held");

    // A layout with no room for the held 1g.5gb is refused, naming it and its holder.
    let e = refused(&host.apply("one-7g", &[]));
    assert!(e.contains(&small) && e.contains("ctr-held"), "{e}");
    assert_eq!(devices(&host), before, "a refused apply changed the GPU");

    // A layout that can keep it keeps it where it is and lays the rest out around it.
    ok(&host.apply("all-1g.5gb", &[]));
    let now = devices(&host);
    assert_eq!(now.len(), 7, "{now:?}");
    assert!(now.iter().all(|(p, _)| p == "1g.5gb"), "{now:?}");
    assert!(
        now.iter().any(|(_, u)| *u == small),
        "the held instance went"
    );
}

#[test]
fn bad_input_is_one_line_and_changes_nothing() {
    if root_or_skip() {
        return;
    }
    let host = Host::new("a100-empty");
    ok(&host.apply("mixed", &[]));
    let before = host.export();
    let bad_yaml = host.sim.dir.path().join("bad.yaml");
    std::fs::write(&bad_yaml, "version: v1\nmig-configs:\n  x: [\n").unwrap();
    let bad_yaml = bad_yaml.display().to_string();
    let file = host.file.display().to_string();
    let cases: [(&[&str], &[&str]); 6] = [
        (
            &["mig", "apply", "-f", &file, "-c", "unknown-profile"],
            &["no MIG profile \"1g.6gb\"", "1g.5gb"],
        ),
        (
            &["mig", "apply", "-f", &file, "-c", "too-many"],
            &["3x 3g.20gb does not fit", "2x 3g.20gb"],
        ),
        (
            &["mig", "apply", "-f", &file, "-c", "nope"],
            &["no configuration named \"nope\"", "mixed"],
        ),
        (
            &["mig", "apply", "-f", &bad_yaml, "-c", "x"],
            &[&format!("{bad_yaml}:")],
        ),
        (
            &["mig", "apply", "-f", &file, "-c", "no-such-gpu"],
            &["names GPU 3, but this host has only GPU 0; name one of those"],
        ),
        (
            &["mig", "apply", "-f", "/nonexistent.yaml", "-c", "x"],
            &["/nonexistent.yaml", "-f"],
        ),
    ];
    for (args, says) in cases {
        let e = refused(&host.migcage(args, &[]));
        for s in says {
            assert!(e.contains(s), "{args:?}: {e:?} lacks {s:?}");
        }
        assert_eq!(host.export(), before, "{args:?} changed the GPU");
    }
}

#[test]
fn an_apply_killed_between_gpu_and_compute_instance_is_finished_by_the_next() {
    if root_or_skip() {
        return;
    }
    if common::skip_unless(
        migcage::faultpoint::ENABLED,
        &common::test_name(),
        common::FAULT_POINTS_OUT,
    ) {
        return;
    }
    let host = Host::new("a100-empty");
    let file = host.file.display().to_string();
    // Each (step, configuration): the kill point is on the way from the layout before.
    let runs = [
        ("mig-after-create-gi", "mixed"),
        ("mig-after-destroy", "one-7g"),
        ("mig-after-create-gi", "all-1g.5gb"),
    ];
    for (step, name) in runs {
        assert!(migcage::faultpoint::MIG_STEPS.contains(&step));
        let env = [("MIGCAGE_TEST_KILL_AT", step)];
        let args = ["mig", "apply", "-f", &file, "-c", name];
        let killed = host.migcage(&args, &env);
        assert!(!killed.status.success(), "{step} {name}: not killed");
        assert!(
            !host
                .migcage(&["mig", "assert", "-f", &file, "-c", name], &[])
                .status
                .success(),
            "{step} {name}: done before the kill"
        );
        let finished = ok(&host.apply(name, &[]));
        assert!(
            finished.ends_with(&format!("layout {name}\n")),
            "{finished}"
        );
        ok(&host.migcage(&["mig", "assert", "-f", &file, "-c", name], &[]));
        let again = ok(&host.apply(name, &[]));
        assert!(again.contains("nothing to do"), "{step} {name}: {again}");
    }
}
