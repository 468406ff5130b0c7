//! The hook's log: one flat JSON record per container (id, stage, request, resolved devices,
//! duration), appended so that a logrotate rename is safe, and nothing but the one-line error on
//! stderr. Containers run under real runc on a simulated host; the hook is also run by hand with
//! a state on stdin, as a runtime would.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{is_root, skip_unless, Bundle, Mode, SimHost, MIGCAGE, PROBE};
use migcage::config::Config;
use serde_json::Value;

fn log_path(host: &SimHost) -> PathBuf {
    let path = host.config();
    let c = Config::parse(&std::fs::read_to_string(&path).unwrap(), &path).unwrap();
    PathBuf::from(c.log.file)
}

fn set_log(host: &SimHost, file: &Path, level: &str) {
    let path = host.config();
    let mut c = Config::parse(&std::fs::read_to_string(&path).unwrap(), &path).unwrap();
    c.log.file = file.display().to_string();
    c.log.level = level.into();
    std::fs::write(&path, toml::to_string_pretty(&c).unwrap()).unwrap();
}

/// Every line of the log, parsed; each must be a JSON object whose values are all scalars.
fn records(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|l| {
            let v: Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
            let obj = v
                .as_object()
                .unwrap_or_else(|| panic!("not an object: {l}"));
            for (k, val) in obj {
                assert!(
                    !val.is_object() && !val.is_array(),
                    "field {k} is nested, the record must be flat: {l}"
                );
            }
            v
        })
        .collect()
}

fn for_container<'a>(recs: &'a [Value], id: &str) -> Vec<&'a Value> {
    recs.iter().filter(|r| r["container"] == id).collect()
}

/// The per-container records (the log also has other events, such as snapshot notes).
fn containers(recs: Vec<Value>) -> Vec<Value> {
    recs.into_iter()
        .filter(|r| r["message"] == "container")
        .collect()
}

/// Run `migcage hook prestart` as a runtime would, with the state of container `id` whose bundle
/// is `bundle`. Returns (exit code, stdout, stderr).
fn hook(host: &SimHost, id: &str, bundle: &Path) -> (i32, String, String) {
    let mut child = Command::new(MIGCAGE)
        .args(["hook", "prestart"])
        .env("MIGCAGE_CONFIG", host.config())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The hook refuses a pid in its own mount namespace or root cgroup: a stand-in init.
    let init = common::FakeInit::new("");
    let state = format!(
        r#"{{"ociVersion":"1.0.2","id":"{id}","status":"creating","pid":{},"bundle":"{}"}}"#,
        init.pid,
        bundle.display()
    );
    child
        .stdin
        .take()
        .unwrap()
        .write_all(state.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_container_gets_one_flat_record() {
    let test = "a_container_gets_one_flat_record";
    if let Some(why) = Mode::RuncV1.unavailable() {
        skip_unless(false, test, &why);
        return;
    }
    let host = SimHost::new("a100-7x1g");
    let list = host.list();
    let mig = &list["gpus"][0]["mig_devices"][1];
    let b = Bundle::new(&host, &["NVIDIA_VISIBLE_DEVICES=0:1"], PROBE);
    let run = common::run(Mode::RuncV1, &b, &host);
    assert!(run.ok(), "container failed: {}", run.stderr());
    let recs = records(&log_path(&host));
    let mine = for_container(&recs, &run.id);
    assert_eq!(mine.len(), 1, "one record per container: {recs:?}");
    let r = mine[0];
    assert_eq!(r["message"], "container");
    assert_eq!(r["level"], "INFO");
    assert!(r["timestamp"].as_str().is_some_and(|t| !t.is_empty()));
    assert_eq!(r["stage"], "prestart");
    assert_eq!(r["outcome"], "ok");
    assert_eq!(r["bundle"], b.path().display().to_string());
    assert_eq!(r["request"], "0:1");
    assert_eq!(r["source"], "NVIDIA_VISIBLE_DEVICES");
    assert_eq!(r["devices"], "0:1");
    assert_eq!(r["uuids"], mig["uuid"]);
    // nvidiactl, nvidia-uvm, nvidia-uvm-tools, nvidia0 and the two caps nodes.
    assert_eq!(r["nodes"], 6, "{r}");
    assert!(r["cgroup"].as_str().is_some_and(|c| !c.is_empty()), "{r}");
    // These machines have no systemd as init: the hook tells no one (and touches no bus).
    if !Path::new("/run/systemd/system").exists() {
        assert_eq!(r["systemd"], "no systemd", "{r}");
    }
    assert!(r["duration_us"].as_u64().is_some_and(|d| d > 0), "{r}");
    assert!(r.get("error").is_none(), "{r}");
}

#[test]
fn a_failed_request_logs_the_error_and_prints_one_line() {
    if skip_unless(
        is_root(),
        "a_failed_request_logs_the_error_and_prints_one_line",
        "needs root: migcage simulate makes device nodes (CAP_MKNOD)",
    ) {
        return;
    }
    let host = SimHost::new("a100-7x1g");
    let bundle = tempfile::tempdir().unwrap();
    let uuid = "MIG-00000000-0000-0000-0000-000000000000";
    std::fs::write(
        bundle.path().join("config.json"),
        format!(
            r#"{{"ociVersion":"1.0.2","process":{{"env":["PATH=/bin","NVIDIA_VISIBLE_DEVICES={uuid}"]}},"root":{{"path":"rootfs"}}}}"#
        ),
    )
    .unwrap();
    let (code, stdout, stderr) = hook(&host, "bad-request", bundle.path());
    assert_eq!(code, 1);
    assert!(
        stdout.is_empty(),
        "a hook's stdout belongs to the runtime: {stdout}"
    );
    assert_eq!(stderr.lines().count(), 1, "one line on stderr: {stderr}");
    assert!(
        stderr.starts_with("migcage: ") && stderr.contains(uuid),
        "{stderr}"
    );
    let recs = records(&log_path(&host));
    let mine = for_container(&recs, "bad-request");
    assert_eq!(mine.len(), 1, "{recs:?}");
    let r = mine[0];
    assert_eq!(r["level"], "ERROR");
    assert_eq!(r["outcome"], "error");
    assert_eq!(r["request"], uuid);
    assert_eq!(r["source"], "NVIDIA_VISIBLE_DEVICES");
    assert_eq!(r["stage"], "prestart");
    assert_eq!(r["bundle"], bundle.path().display().to_string());
    // The log holds exactly what the user saw.
    assert_eq!(
        format!("migcage: {}", r["error"].as_str().unwrap()),
        stderr.trim_end()
    );
}

#[test]
fn untouched_containers_are_logged_only_at_debug() {
    if skip_unless(
        is_root(),
        "untouched_containers_are_logged_only_at_debug",
        "needs root: migcage simulate makes device nodes (CAP_MKNOD)",
    ) {
        return;
    }
    let host = SimHost::new("a100-7x1g");
    let bundle = tempfile::tempdir().unwrap();
    std::fs::write(
        bundle.path().join("config.json"),
        r#"{"ociVersion":"1.0.2","process":{"env":["PATH=/bin"]},"root":{"path":"rootfs"}}"#,
    )
    .unwrap();
    let (code, stdout, stderr) = hook(&host, "untouched-info", bundle.path());
    assert_eq!((code, stdout.as_str(), stderr.as_str()), (0, "", ""));
    let log = log_path(&host);
    assert!(for_container(&records(&log), "untouched-info").is_empty());

    set_log(&host, &log, "debug");
    let (code, _, _) = hook(&host, "untouched-debug", bundle.path());
    assert_eq!(code, 0);
    let recs = records(&log);
    let mine = for_container(&recs, "untouched-debug");
    assert_eq!(mine.len(), 1, "{recs:?}");
    assert_eq!(mine[0]["level"], "DEBUG");
    assert_eq!(mine[0]["request"], "");
    assert_eq!(mine[0]["outcome"], "ok");
}

#[test]
fn rotation_by_rename_loses_nothing_and_a_bad_log_path_fails_nothing() {
    if skip_unless(
        is_root(),
        "rotation_by_rename_loses_nothing_and_a_bad_log_path_fails_nothing",
        "needs root: migcage simulate makes device nodes (CAP_MKNOD)",
    ) {
        return;
    }
    let host = SimHost::new("a100-7x1g");
    let bundle = tempfile::tempdir().unwrap();
    std::fs::write(
        bundle.path().join("config.json"),
        r#"{"ociVersion":"1.0.2","process":{"env":["PATH=/bin","NVIDIA_VISIBLE_DEVICES=MIG-00000000-0000-0000-0000-000000000001"]},"root":{"path":"rootfs"}}"#,
    )
    .unwrap();
    let log = log_path(&host);
    assert_eq!(hook(&host, "before-rotation", bundle.path()).0, 1);
    // What logrotate does without copytruncate: rename, then (create) a new file.
    let rotated = log.with_extension("log.1");
    std::fs::rename(&log, &rotated).unwrap();
    assert_eq!(hook(&host, "after-rotation", bundle.path()).0, 1);
    let old = containers(records(&rotated));
    let new = containers(records(&log));
    assert_eq!(old.len(), 1, "{old:?}");
    assert_eq!(old[0]["container"], "before-rotation");
    assert_eq!(new.len(), 1, "{new:?}");
    assert_eq!(new[0]["container"], "after-rotation");

    // A log file that cannot be opened leaves the hook's result and stderr as they were.
    set_log(
        &host,
        &host.dir.path().join("no/such/dir/migcage.log"),
        "info",
    );
    let (code, stdout, stderr) = hook(&host, "no-log", bundle.path());
    assert_eq!(code, 1);
    assert!(stdout.is_empty());
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}
