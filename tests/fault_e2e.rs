//! Fault injection end to end: the hook killed with SIGKILL at each step of a container start
//! (src/faultpoint.rs; `MIGCAGE_TEST_KILL_AT=<step>` in the hook's environment, honoured only by
//! builds with debug assertions, which is what the tests run).
//!
//! For every step, under runc (cgroup v1 and v2) and crun (cgroup v1), on a simulated A100 with
//! one 3g.20gb instance asked for by profile (so a lease is at stake):
//! - the container does not start and its process never runs;
//! - runc's (or crun's) cleanup plus migcage's leave nothing: no mount, no device node on the
//!   host, no cgroup, no cgroup device eBPF program, no live lease (the `poststop` hook is
//!   registered, as `migcage runtime` and the docs register it);
//! - the next container asking for the same profile starts and gets exactly that instance, so
//!   no lease of the killed start holds it.

mod common;

use std::path::Path;

use common::{Bundle, Mode, SimHost, MIGCAGE, PROBE};
use migcage::faultpoint::STEPS;
use serde_json::json;

const ASK: &str = "NVIDIA_VISIBLE_DEVICES=profile:3g.20gb";

/// A bundle asking for the one 3g.20gb instance, with the prestart hook killed at `kill_at`
/// (none: a normal start) and the poststop hook that releases leases.
fn bundle(
    host: &SimHost,
    kill_at: Option<&str>,
    script: &str,
    mode: Mode,
    scratch: &Path,
) -> Bundle {
    let mut b = Bundle::new(host, &[ASK], script);
    let config = format!("MIGCAGE_CONFIG={}", host.config().display());
    let mut env = vec![config.clone()];
    if let Some(step) = kill_at {
        env.push(format!("MIGCAGE_TEST_KILL_AT={step}"));
    }
    b.config["hooks"]["prestart"][0]["env"] = json!(env);
    b.config["hooks"]["poststop"] = json!([{
        "path": MIGCAGE, "args": ["migcage", "hook", "poststop"], "env": [config]
    }]);
    if mode.is_crun() {
        // crun drops a hook's stderr unless this names a file for it.
        b.config["annotations"] = json!({
            "run.oci.hooks.stderr": scratch.join("hook-stderr").display().to_string()
        });
    }
    b.write();
    b
}

fn listing_index_of_3g(listing: &serde_json::Value) -> String {
    listing["gpus"][0]["mig_devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["profile"].as_str() == Some("3g.20gb"))
        .and_then(|m| m["index"].as_str())
        .expect("a100-mixed has a 3g.20gb instance")
        .to_string()
}

/// The modes run one at a time: a container of another mode would hold eBPF programs that the
/// leak check counts.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn killed_at_every_step(mode: Mode) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let test = format!("killed_at_every_step {mode:?}");
    if let Some(why) = mode.unavailable() {
        common::skip(&format!("{test}: {why}"));
        return;
    }
    if !common::have("bpftool") {
        common::skip(&format!(
            "{test}: bpftool is not installed (scripts/deps.sh installs it)"
        ));
        return;
    }
    if common::skip_unless(
        migcage::faultpoint::ENABLED,
        &test,
        common::FAULT_POINTS_OUT,
    ) {
        return;
    }
    let host = SimHost::new("a100-mixed");
    let listing = host.list();
    let index = listing_index_of_3g(&listing);
    let state_dir = host.dir.path().join("run/migcage");
    let scratch = tempfile::tempdir().unwrap();
    for step in STEPS {
        let progs = common::device_progs();
        let b = bundle(&host, Some(step), "echo STARTED", mode, scratch.path());
        let run = common::run(mode, &b, &host);
        let ctx = format!("{mode:?} killed at {step} ({})", run.id);
        assert!(!run.ok(), "{ctx}: the container started");
        assert!(!run.stdout().contains("STARTED"), "{ctx}: its process ran");
        if !mode.is_crun() {
            assert!(
                run.stderr().contains("killed"),
                "{ctx}: runc does not say the hook was killed: {}",
                run.stderr()
            );
        }
        // common::run checked mounts and cgroups; the rest of the host:
        let dev = std::fs::read_dir(b.path().join("rootfs/dev"))
            .unwrap()
            .count();
        assert_eq!(dev, 0, "{ctx}: nodes left in the rootfs on the host");
        let leaked = common::leaked_device_progs(&progs, 10);
        assert!(leaked.is_empty(), "{ctx}: eBPF programs left: {leaked:?}");
        let leases = common::live_leases(&state_dir, &run.id);
        assert!(leases.is_empty(), "{ctx}: live leases left: {leases:?}");

        // The next start gets the instance.
        let b = bundle(&host, None, PROBE, mode, scratch.path());
        let next = common::run(mode, &b, &host);
        let ctx = format!("{mode:?} after a kill at {step} ({})", next.id);
        assert!(next.ok(), "{ctx}: {}", next.stderr());
        common::assert_sees_exactly(&next, &host, &listing, &[&index], &ctx);
        let leases = common::live_leases(&state_dir, &next.id);
        assert!(
            leases.is_empty(),
            "{ctx}: live leases after it stopped: {leases:?}"
        );
    }
}

#[test]
fn killed_at_every_step_runc_cgroup_v1() {
    killed_at_every_step(Mode::RuncV1);
}

#[test]
fn killed_at_every_step_runc_cgroup_v2() {
    killed_at_every_step(Mode::RuncV2);
}

#[test]
fn killed_at_every_step_crun_cgroup_v1() {
    killed_at_every_step(Mode::CrunV1);
}

#[test]
#[ignore = "crun on cgroup v2 needs CAP_SYS_RESOURCE: tests/vm.rs runs it in the systemd VM"]
fn killed_at_every_step_crun_cgroup_v2() {
    killed_at_every_step(Mode::CrunV2);
}

/// The hook binary honours the variable at the step named, and only there: run directly on a
/// container that asks for nothing (it stops after the pipeline, before any container work) it
/// dies by SIGKILL at `after-parse`, and runs through when the step named is one it never
/// reaches.
#[test]
fn the_kill_variable_works_on_the_binary() {
    use std::io::Write;
    use std::os::unix::process::ExitStatusExt;
    if common::skip_unless(
        migcage::faultpoint::ENABLED,
        "the_kill_variable_works_on_the_binary",
        common::FAULT_POINTS_OUT,
    ) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    std::fs::write(
        d.path().join("config.json"),
        br#"{"ociVersion":"1.0.2","process":{"env":["PATH=/bin"]},"root":{"path":"rootfs"}}"#,
    )
    .unwrap();
    let state = format!(
        r#"{{"ociVersion":"1.0.2","id":"fault-unit","status":"created","pid":1,"bundle":"{}"}}"#,
        d.path().display()
    );
    let config = d.path().join("config.toml");
    std::fs::write(&config, "[log]\nfile = \"\"\n").unwrap();
    for (step, killed) in [("after-parse", true), ("before-cgroup", false)] {
        let mut child = std::process::Command::new(MIGCAGE)
            .args(["hook", "prestart"])
            .env("MIGCAGE_CONFIG", &config)
            .env("MIGCAGE_TEST_KILL_AT", step)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(state.as_bytes())
            .unwrap();
        let status = child.wait().unwrap();
        if killed {
            assert_eq!(status.signal(), Some(9), "{step}: {status:?}");
        } else {
            // Nothing asked for: the hook returns before any container work.
            assert!(status.success(), "{step}: {status:?}");
        }
    }
}
