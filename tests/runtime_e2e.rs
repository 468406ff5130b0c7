//! End to end: `migcage runtime` as the OCI runtime, wrapping real runc (cgroup v1 and v2) and
//! crun (v1), against simulated MIG hosts. The bundles have no hook: the wrapper writes the
//! devices, the cgroup rules and its own hook into config.json. The probe inside each container
//! proves what it can reach, as in hook_e2e.rs.

mod common;

use std::process::Command;

use common::{Bundle, Mode, SimHost, MIGCAGE, PROBE};
use serde_json::{json, Value};

/// The runtime command line of the wrapper for `mode` on `host`.
fn wrapper(host: &SimHost, mode: Mode) -> String {
    format!(
        "{MIGCAGE} --config {} runtime",
        common::wrapper::config(host, mode.runtime()).display()
    )
}

/// A busybox bundle running `script`, without migcage's hook: the wrapper must add it.
fn bundle(host: &SimHost, env: &[&str], script: &str) -> Bundle {
    let mut b = Bundle::new(host, env, script);
    b.config.as_object_mut().unwrap().remove("hooks");
    b.write();
    b
}

fn config_json(b: &Bundle) -> Vec<u8> {
    std::fs::read(b.path().join("config.json")).unwrap()
}

/// `runtime run` through the wrapper.
fn run(mode: Mode, b: &Bundle, host: &SimHost) -> common::Run {
    common::wrapper::run(mode, b, host, "mcrt")
}

/// The container sees exactly `names`, and the wrapper wrote them into the spec.
fn check(mode: Mode, host: &SimHost, what: &str, setup: impl Fn(&mut Bundle), names: &[&str]) {
    let listing = host.list();
    let mut b = bundle(host, &[], PROBE);
    setup(&mut b);
    b.write();
    let before = config_json(&b);
    let run = run(mode, &b, host);
    let ctx = format!("{mode:?} {} {what} ({})", host.topology, run.id);
    assert!(run.ok(), "{ctx}: container failed: {}", run.stderr());
    common::assert_sees_exactly(&run, host, &listing, names, &ctx);
    let after = config_json(&b);
    if names.is_empty() {
        assert_eq!(
            after, before,
            "{ctx}: a container asking for nothing had its spec changed"
        );
        return;
    }
    let spec: Value = serde_json::from_slice(&after).unwrap();
    let mut given: Vec<&str> = spec["annotations"]["migcage.io/edited"]
        .as_str()
        .unwrap()
        .split(',')
        .collect();
    given.sort();
    let mut want = names.to_vec();
    want.sort();
    assert_eq!(given, want, "{ctx}: annotation");
    let want_nodes = common::sees(&listing, names).nodes;
    let devices: std::collections::BTreeSet<&str> = spec["linux"]["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["path"].as_str().unwrap())
        .collect();
    let want_paths: std::collections::BTreeSet<&str> =
        want_nodes.keys().map(String::as_str).collect();
    assert_eq!(devices, want_paths, "{ctx}: linux.devices");
    // The runtime's own rules: one allow per node, after the spec's deny-all.
    let rules = spec["linux"]["resources"]["devices"].as_array().unwrap();
    assert_eq!(rules[0], json!({"allow": false, "access": "rwm"}), "{ctx}");
    assert_eq!(rules.len(), 1 + want_nodes.len(), "{ctx}: rules {rules:?}");
    assert_eq!(
        spec["hooks"]["createRuntime"][0]["args"],
        json!(["migcage", "hook", "createRuntime"]),
        "{ctx}"
    );
}

fn forms(mode: Mode) {
    if let Some(why) = mode.unavailable() {
        common::skip(&format!("runtime forms {mode:?}: {why}"));
        return;
    }
    let host = SimHost::new("a100-7x1g");
    let l = host.list();
    check(
        mode,
        &host,
        "index 0:1",
        common::visible_devices("0:1"),
        &["0:1"],
    );
    let uuid3 = common::uuid_of(&l, "0:3");
    check(
        mode,
        &host,
        "MIG uuid",
        common::visible_devices(&uuid3),
        &["0:3"],
    );
    check(
        mode,
        &host,
        "migcage annotation",
        |b| b.config["annotations"] = json!({"migcage.io/devices": "0:6"}),
        &["0:6"],
    );
    check(mode, &host, "unset", |_| {}, &[]);
    let two = SimHost::new("two-gpus-one-mig");
    check(
        mode,
        &two,
        "MIG device and other GPU",
        common::visible_devices("0:1,1"),
        &["0:1", "1"],
    );
}

#[test]
fn runtime_runc_cgroup_v1() {
    forms(Mode::RuncV1);
}

#[test]
fn runtime_runc_cgroup_v2() {
    forms(Mode::RuncV2);
}

#[test]
fn runtime_crun_cgroup_v1() {
    forms(Mode::CrunV1);
}

#[test]
#[ignore = "crun on cgroup v2 needs CAP_SYS_RESOURCE: tests/vm.rs runs it in the systemd VM"]
fn runtime_crun_cgroup_v2() {
    forms(Mode::CrunV2);
}

/// `create`, `state`, `start`, `delete` through the wrapper (each a pass-through but `create`),
/// with the runtime's own record of the container read in between: runc keeps the cgroup rules it
/// applies in its state (`/run/runc/<id>/state.json`), and re-applies exactly those (as does
/// systemd, from the scope's `DeviceAllow=` that runc derives from them, on `daemon-reload`).
/// The wrapper's rules are there; the rules a hook alone adds are not.
fn runtime_owns_the_rules(mode: Mode) {
    if let Some(why) = mode.unavailable() {
        common::skip(&format!("runtime_owns_the_rules {mode:?}: {why}"));
        return;
    }
    let host = SimHost::new("a100-7x1g");
    let listing = host.list();
    let want: Vec<(u64, u64)> = common::sees(&listing, &["0:2"])
        .nodes
        .values()
        .map(|(a, b, _)| (u64::from(*a), u64::from(*b)))
        .collect();
    let w = wrapper(&host, mode);
    let script_for = |runtime: &str, b: &Bundle, id: &str| {
        format!(
            "trap '{runtime} delete -f {id} >/dev/null 2>&1' EXIT; \
             {runtime} create --bundle {b} {id} </dev/null && \
             cp /run/runc/{id}/state.json {b}/runc-state.json && \
             {runtime} start {id} && \
             while {runtime} state {id} | grep -qE '\"status\": \"(created|running)\"'; do sleep 0.1; done",
            b = b.path().display()
        )
    };
    // runc's cgroup device rules for the planned nodes: (major, minor) -> permissions.
    let runc_rules = |b: &Bundle| -> Vec<(u64, u64, String)> {
        let state: Value =
            serde_json::from_slice(&std::fs::read(b.path().join("runc-state.json")).unwrap())
                .unwrap();
        state["config"]["cgroups"]["devices"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["allow"] == json!(true) && r["type"] == json!(i64::from(b'c')))
            .filter_map(|r| {
                Some((
                    r["major"].as_u64()?,
                    r["minor"].as_u64()?,
                    r["permissions"].as_str()?.to_string(),
                ))
            })
            .filter(|(a, b, _)| want.contains(&(*a, *b)))
            .collect()
    };

    let b = bundle(&host, &["NVIDIA_VISIBLE_DEVICES=0:2"], PROBE);
    let id = common::unique("mcown");
    let run = common::run_script(mode, &b, &host, &id, &script_for(&w, &b, &id));
    let ctx = format!("{mode:?} wrapper create/start ({id})");
    assert!(run.ok(), "{ctx}: {}", run.stderr());
    common::assert_sees_exactly(&run, &host, &listing, &["0:2"], &ctx);
    let mut got = runc_rules(&b);
    got.sort();
    let mut expect: Vec<(u64, u64, String)> = want
        .iter()
        .map(|(a, b)| (*a, *b, "rw".to_string()))
        .collect();
    expect.sort();
    assert_eq!(got, expect, "{ctx}: runc's own rules");

    // The hook alone grants the same access, but runc does not know it.
    let b = Bundle::new(&host, &["NVIDIA_VISIBLE_DEVICES=0:2"], PROBE);
    let id = common::unique("mcown");
    let run = common::run_script(mode, &b, &host, &id, &script_for(mode.runtime(), &b, &id));
    let ctx = format!("{mode:?} hook create/start ({id})");
    assert!(run.ok(), "{ctx}: {}", run.stderr());
    common::assert_sees_exactly(&run, &host, &listing, &["0:2"], &ctx);
    assert_eq!(runc_rules(&b), [], "{ctx}: runc has rules it did not make");
}

#[test]
fn runtime_owns_the_rules_runc_cgroup_v1() {
    runtime_owns_the_rules(Mode::RuncV1);
}

#[test]
fn runtime_owns_the_rules_runc_cgroup_v2() {
    runtime_owns_the_rules(Mode::RuncV2);
}

/// A request by profile through the wrapper as engines drive it: the instance is leased at
/// `create` (under the wrapper's pid), the wrapper hands the lease to the container's init once
/// the runtime made it, no migcage hook is in the spec, and `delete` through the wrapper releases
/// the lease once the runtime deleted the container (runc and crun alike).
fn profile_lease_follows_the_container(mode: Mode) {
    if let Some(why) = mode.unavailable() {
        common::skip(&format!(
            "profile_lease_follows_the_container {mode:?}: {why}"
        ));
        return;
    }
    let host = SimHost::new("a100-7x1g");
    let listing = host.list();
    let leases = host.dir.path().join("run/migcage/leases/leases.json");
    let b = bundle(&host, &["NVIDIA_VISIBLE_DEVICES=profile:1g.5gb"], PROBE);
    let id = common::unique("mclease");
    let w = wrapper(&host, mode);
    let script = format!(
        "trap '{w} delete -f {id} >/dev/null 2>&1' EXIT; \
         {w} create --bundle {b} {id} </dev/null && \
         {w} state {id} > {b}/state.json && cp {leases} {b}/leases-created.json && \
         {w} start {id} && \
         while {w} state {id} | grep -qE '\"status\": \"(created|running)\"'; do sleep 0.1; done; \
         {w} delete {id} && cp {leases} {b}/leases-deleted.json",
        b = b.path().display(),
        leases = leases.display()
    );
    let run = common::run_script(mode, &b, &host, &id, &script);
    let ctx = format!("{mode:?} profile ({id})");
    assert!(run.ok(), "{ctx}: {}", run.stderr());
    // Packing: the first free instance.
    common::assert_sees_exactly(&run, &host, &listing, &["0:0"], &ctx);
    let read = |name: &str| -> Value {
        serde_json::from_slice(&std::fs::read(b.path().join(name)).unwrap()).unwrap()
    };
    let init_pid = read("state.json")["pid"].as_i64().unwrap();
    let held: Vec<Value> = read("leases-created.json")["leases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["container"] == json!(id))
        .cloned()
        .collect();
    assert_eq!(held.len(), 1, "{ctx}: {held:?}");
    assert_eq!(
        held[0]["uuid"],
        json!(common::uuid_of(&listing, "0:0")),
        "{ctx}"
    );
    assert_eq!(
        held[0]["pid"].as_i64(),
        Some(init_pid),
        "{ctx}: the lease is the init's"
    );
    let after = read("leases-deleted.json");
    let left: Vec<&Value> = after["leases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["container"] == json!(id))
        .collect();
    assert!(left.is_empty(), "{ctx}: delete left the lease: {after}");
    let spec = read("config.json");
    assert!(
        spec.get("hooks").is_none(),
        "{ctx}: create through the wrapper put hooks in the spec: {}",
        spec["hooks"]
    );
    assert!(
        spec["annotations"]["migcage.io/edited"].is_string(),
        "{ctx}"
    );
}

#[test]
fn profile_lease_follows_the_container_runc_cgroup_v1() {
    profile_lease_follows_the_container(Mode::RuncV1);
}

#[test]
fn profile_lease_follows_the_container_crun_cgroup_v1() {
    profile_lease_follows_the_container(Mode::CrunV1);
}

#[test]
#[ignore = "crun on cgroup v2 needs CAP_SYS_RESOURCE: tests/vm.rs runs it in the systemd VM"]
fn profile_lease_follows_the_container_crun_cgroup_v2() {
    profile_lease_follows_the_container(Mode::CrunV2);
}

/// `[allocation] create_on_demand` and `destroy_on_release` through the wrapper, on a GPU with
/// no instance: `create` makes a 2g.10gb for the container (recorded as made for it), the
/// container sees exactly that instance, and once it is deleted the GPU is empty again.
fn on_demand_instance_lives_as_long_as_the_container(mode: Mode) {
    if let Some(why) = mode.unavailable() {
        common::skip(&format!(
            "on_demand_instance_lives_as_long_as_the_container {mode:?}: {why}"
        ));
        return;
    }
    let host = SimHost::new("a100-empty");
    common::lab::set_config(&host, common::lab::CREATE_AND_DESTROY);
    let b = bundle(&host, &["NVIDIA_VISIBLE_DEVICES=profile:2g.10gb"], PROBE);
    let id = common::unique("mcdemand");
    let w = wrapper(&host, mode);
    let list = format!("{MIGCAGE} --config {} list --json", host.config().display());
    // `delete` through the wrapper releases the lease and destroys the instance it made, with
    // runc and crun alike (no poststop hook: crun's would see pid 0).
    let script = format!(
        "trap '{w} delete -f {id} >/dev/null 2>&1' EXIT; \
         {w} create --bundle {b} {id} </dev/null && {list} > {b}/list-created.json && \
         {w} start {id} && \
         while {w} state {id} | grep -qE '\"status\": \"(created|running)\"'; do sleep 0.1; done; \
         {w} delete {id} && {list} > {b}/list-deleted.json",
        b = b.path().display(),
    );
    let run = common::run_script(mode, &b, &host, &id, &script);
    let ctx = format!("{mode:?} on demand ({id})");
    assert!(run.ok(), "{ctx}: {}", run.stderr());
    let read = |name: &str| -> Value {
        serde_json::from_slice(&std::fs::read(b.path().join(name)).unwrap()).unwrap()
    };
    let created = read("list-created.json");
    let made: Vec<&Value> = created["gpus"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["mig_devices"].as_array().unwrap())
        .collect();
    assert_eq!(made.len(), 1, "{ctx}: {created}");
    assert_eq!(made[0]["profile"], json!("2g.10gb"), "{ctx}");
    assert_eq!(
        made[0]["created"]["by"],
        json!(id),
        "{ctx}: made for the container"
    );
    let index = made[0]["index"].as_str().unwrap();
    common::assert_sees_exactly(&run, &host, &created, &[index], &ctx);
    let deleted = read("list-deleted.json");
    let left: Vec<&Value> = deleted["gpus"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["mig_devices"].as_array().unwrap())
        .collect();
    assert!(
        left.is_empty(),
        "{ctx}: the instance outlived the container: {deleted}"
    );
}

#[test]
fn on_demand_instance_lives_as_long_as_the_container_runc_cgroup_v1() {
    on_demand_instance_lives_as_long_as_the_container(Mode::RuncV1);
}

#[test]
fn on_demand_instance_lives_as_long_as_the_container_runc_cgroup_v2() {
    on_demand_instance_lives_as_long_as_the_container(Mode::RuncV2);
}

#[test]
fn on_demand_instance_lives_as_long_as_the_container_crun_cgroup_v1() {
    on_demand_instance_lives_as_long_as_the_container(Mode::CrunV1);
}

#[test]
fn bad_requests_stop_before_the_runtime() {
    let mode = Mode::RuncV1;
    if let Some(why) = mode.unavailable() {
        common::skip(&format!("bad_requests_stop_before_the_runtime: {why}"));
        return;
    }
    let host = SimHost::new("two-gpus-one-mig");
    let w = wrapper(&host, mode);
    let cases: &[(&str, &str)] = &[
        (
            "NVIDIA_VISIBLE_DEVICES=MIG-deadbeef-0000-0000-0000-000000000000",
            "no MIG device has that UUID",
        ),
        (
            "NVIDIA_VISIBLE_DEVICES=7",
            "there is no GPU 7, this host has GPUs 0 to 1",
        ),
        ("NVIDIA_VISIBLE_DEVICES=1:0", "GPU 1 is not in MIG mode"),
        (
            "NVIDIA_VISIBLE_DEVICES=0:x",
            "NVIDIA_VISIBLE_DEVICES=\"0:x\"",
        ),
    ];
    for (env, want) in cases {
        let b = bundle(&host, &[env], "echo STARTED");
        let before = config_json(&b);
        let id = common::unique("mcbad");
        let log = b.path().join("runtime-log.json");
        // As containerd's shim runs it: the reason goes to --log as well.
        let script = format!(
            "exec {w} --root /run/runc --log {} --log-format json create --bundle {} {id}",
            log.display(),
            b.path().display()
        );
        let run = common::run_script(mode, &b, &host, &id, &script);
        let ctx = format!("{env} ({id})");
        assert!(!run.ok(), "{ctx}: the container was created");
        assert!(!run.stdout().contains("STARTED"), "{ctx}");
        let stderr = run.stderr();
        assert_eq!(stderr.lines().count(), 1, "{ctx}: one line: {stderr}");
        assert!(
            stderr.starts_with("migcage: ") && stderr.contains(want),
            "{ctx}: {stderr}"
        );
        assert_eq!(config_json(&b), before, "{ctx}: the spec changed");
        // The runtime never ran: it knows no such container.
        let state = Command::new("runc").args(["state", &id]).output().unwrap();
        assert!(!state.status.success(), "{ctx}: runc knows the container");
        let logged: Value =
            serde_json::from_str(std::fs::read_to_string(&log).unwrap().trim()).unwrap();
        assert_eq!(logged["level"], "error", "{ctx}");
        assert_eq!(logged["msg"].as_str(), Some(stderr.trim_end()), "{ctx}");
    }
}

/// Commands other than create/run reach the runtime untouched: its output and exit status.
#[test]
fn other_commands_pass_through() {
    for runtime in ["runc", "crun"] {
        if !common::have(runtime) {
            common::skip(&format!("other_commands_pass_through {runtime}: not installed (scripts/deps.sh installs it)"));
            continue;
        }
        let d = tempfile::tempdir().unwrap();
        let config = d.path().join("config.toml");
        std::fs::write(
            &config,
            format!("runtime = \"{runtime}\"\n[log]\nfile = \"\"\n"),
        )
        .unwrap();
        // The link form too: containerd's BinaryName and Docker's path run it without arguments.
        let link = d.path().join("migcage-runtime");
        std::os::unix::fs::symlink(MIGCAGE, &link).unwrap();
        let root = d.path().join("state");
        let root = root.to_str().unwrap();
        for args in [
            vec!["--version"],
            vec!["--root", root, "state", "no-such-container"],
            vec!["--root", root, "list"],
            vec!["--root", root, "delete", "no-such-container"],
            vec!["--root", root, "kill", "no-such-container", "KILL"],
        ] {
            let direct = Command::new(runtime).args(&args).output().unwrap();
            for (how, mut cmd) in [
                ("migcage runtime", {
                    let mut c = Command::new(MIGCAGE);
                    c.arg("--config").arg(&config).arg("runtime");
                    c
                }),
                ("migcage-runtime", {
                    let mut c = Command::new(&link);
                    c.env("MIGCAGE_CONFIG", &config);
                    c
                }),
            ] {
                let wrapped = cmd.args(&args).output().unwrap();
                let ctx = format!("{how} -> {runtime} {args:?}");
                assert_eq!(wrapped.status.code(), direct.status.code(), "{ctx}");
                // `--version`: migcage's own line first, then the runtime's untouched.
                let ours = if args[0] == "--version" {
                    format!(
                        "migcage-runtime version {} (wrapping the runtime below)\n",
                        env!("CARGO_PKG_VERSION")
                    )
                } else {
                    String::new()
                };
                assert_eq!(
                    String::from_utf8_lossy(&wrapped.stdout),
                    ours + &String::from_utf8_lossy(&direct.stdout),
                    "{ctx}"
                );
                // Error lines carry a time stamp: compare them without it.
                let strip = |b: &[u8]| -> String {
                    String::from_utf8_lossy(b)
                        .lines()
                        .map(|l| match l.find("msg=") {
                            Some(i) => l[i..].to_string(),
                            None => l.to_string(),
                        })
                        .collect::<Vec<_>>()
                        .join("\n")
                };
                assert_eq!(strip(&wrapped.stderr), strip(&direct.stderr), "{ctx}");
            }
        }
    }
}

#[test]
fn an_unusable_runtime_is_one_line() {
    let d = tempfile::tempdir().unwrap();
    let cases = [
        ("/nonexistent/runc".to_string(), "was not found"),
        ("no-such-runtime-anywhere".to_string(), "was not found"),
        (MIGCAGE.to_string(), "is migcage itself"),
    ];
    for (runtime, want) in cases {
        let config = d.path().join("c.toml");
        std::fs::write(&config, format!("runtime = \"{runtime}\"\n")).unwrap();
        let out = Command::new(MIGCAGE)
            .arg("--config")
            .arg(&config)
            .args(["runtime", "--version"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{runtime}");
        assert_eq!(err.lines().count(), 1, "{runtime}: {err}");
        assert!(
            err.starts_with("migcage: ") && err.contains(want),
            "{runtime}: {err}"
        );
    }
}
