//! Every command's `--json` output against the schemas of docs/json.md: each documented field
//! present with its type, no field the page does not name, one node object everywhere, and
//! errors as the documented error object.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use common::{SimHost, MIGCAGE};
use serde_json::Value;

/// The `NAME = {template}` lines of docs/json.md's ```schema blocks.
fn schemas() -> BTreeMap<String, Value> {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/json.md"))
        .unwrap();
    let mut out = BTreeMap::new();
    let mut inside = false;
    for line in doc.lines() {
        match line.trim() {
            "```schema" => inside = true,
            "```" => inside = false,
            l if inside && !l.is_empty() => {
                let (name, template) = l.split_once(" = ").expect("NAME = {template}");
                let v =
                    serde_json::from_str(template).unwrap_or_else(|e| panic!("schema {name}: {e}"));
                out.insert(name.to_string(), v);
            }
            _ => {}
        }
    }
    out
}

/// Check `v` against the type `ty` (`string`, `[node]`, `plan|null`, ...) at `at`.
fn check_type(s: &BTreeMap<String, Value>, ty: &str, v: &Value, at: &str) {
    let ok = ty.split('|').any(|t| {
        if let Some(inner) = t.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
            return v.as_array().is_some_and(|a| {
                a.iter()
                    .enumerate()
                    .all(|(i, x)| matches(s, inner, x, &format!("{at}[{i}]")))
            });
        }
        matches(s, t, v, at)
    });
    assert!(ok, "{at}: {v} is not {ty}");
}

fn matches(s: &BTreeMap<String, Value>, t: &str, v: &Value, at: &str) -> bool {
    match t {
        "string" => v.is_string(),
        "integer" => v.is_u64() || v.is_i64(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        "object" => v.is_object(),
        "array" => v.is_array(),
        name if s.contains_key(name) => {
            if !v.is_object() {
                return false;
            }
            match &s[name] {
                Value::String(ty) => check_type(s, ty, v, at),
                template => check_object(s, template, v, at),
            }
            true
        }
        // A nested [T] inside a union, or a bad name: check_type says which.
        other if other.starts_with('[') => {
            check_type(s, other, v, at);
            true
        }
        other => panic!("{at}: docs/json.md names no type {other:?}"),
    }
}

fn check_object(s: &BTreeMap<String, Value>, template: &Value, v: &Value, at: &str) {
    let t = template
        .as_object()
        .unwrap_or_else(|| panic!("{at}: schema {template}"));
    let o = v
        .as_object()
        .unwrap_or_else(|| panic!("{at}: not an object: {v}"));
    for key in o.keys() {
        assert!(t.contains_key(key), "{at}.{key}: not in docs/json.md ({v})");
    }
    for (key, ty) in t {
        let field = o
            .get(key)
            .unwrap_or_else(|| panic!("{at}.{key}: missing ({v})"));
        match ty {
            Value::String(ty) => check_type(s, ty, field, &format!("{at}.{key}")),
            nested => check_object(s, nested, field, &format!("{at}.{key}")),
        }
    }
}

fn validate(s: &BTreeMap<String, Value>, name: &str, v: &Value) {
    let schema = s
        .get(name)
        .unwrap_or_else(|| panic!("docs/json.md has no {name}"));
    assert!(v.is_object(), "{name}: {v}");
    match schema {
        Value::String(ty) => check_type(s, ty, v, name),
        template => check_object(s, template, v, name),
    }
}

fn migcage(host: &SimHost, args: &[&str]) -> (Option<i32>, Value, String) {
    let out = Command::new(MIGCAGE)
        .arg("--config")
        .arg(host.config())
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("migcage {}: not JSON ({e}): {stdout}", args.join(" ")));
    (
        out.status.code(),
        v,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_commands_json_is_what_docs_json_md_says() {
    let test = "every_commands_json_is_what_docs_json_md_says";
    if common::skip_unless(common::is_root(), test, "simulate needs root (CAP_MKNOD)") {
        return;
    }
    let s = schemas();
    let host = SimHost::new("a100-7x1g");
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n).display().to_string();
    std::fs::create_dir_all(d("cdi")).unwrap();
    let spec = d("config.json");
    std::fs::write(
        &spec,
        r#"{"ociVersion":"1.0.2","process":{"env":["NVIDIA_VISIBLE_DEVICES=0:1"],"args":["sh"],"cwd":"/"},"root":{"path":"rootfs"}}"#,
    )
    .unwrap();
    let (code, _, err) = migcage(&host, &["--json", "refresh"]);
    assert_eq!(code, Some(0), "{err}");
    let cdi = d("cdi");
    let sim = d("sim");
    let runs: Vec<(Vec<&str>, &str)> = vec![
        (vec!["config", "--json"], "config"),
        (vec!["config", "default", "--json"], "config"),
        (vec!["config", "get", "log.level", "--json"], "config_value"),
        (
            vec!["config", "get", "nvml_timeout_ms", "--json"],
            "config_value",
        ),
        (
            vec!["config", "set", "log.level", "debug", "--dry-run", "--json"],
            "config_set",
        ),
        (
            vec![
                "simulate",
                "--topology",
                "a100-7x1g",
                "--root",
                &sim,
                "--json",
            ],
            "simulated",
        ),
        (vec!["list", "--json"], "listing"),
        (vec!["--json", "refresh"], "refreshed"),
        (vec!["doctor", "--json"], "doctor"),
        (vec!["explain", "--spec", &spec, "--json"], "explanation"),
        (
            vec![
                "configure",
                "podman",
                "--hooks-dir",
                &cdi,
                "--dry-run",
                "--json",
            ],
            "configured",
        ),
        (
            vec![
                "system",
                "create-dev-char-links",
                "--dry-run",
                "--dev-char-dir",
                &cdi,
                "--json",
            ],
            "dev_char_links",
        ),
    ];
    for (args, schema) in &runs {
        let (_, v, err) = migcage(&host, args);
        assert!(v.get("error").is_none(), "{args:?}: {v} {err}");
        validate(&s, schema, &v);
    }
    let out = Command::new(MIGCAGE)
        .arg("--config")
        .arg(host.config())
        .args(["cdi", "generate", "--output", &cdi])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let (code, v, err) = migcage(&host, &["cdi", "list", "--spec", &cdi, "--json"]);
    assert_eq!(code, Some(0), "{err}");
    validate(&s, "cdi_specs", &v);
    assert!(!v["specs"][0]["offers"][0]["nodes"]
        .as_array()
        .unwrap()
        .is_empty());

    // config get and set keep the key's type; a dry run says what would change.
    let (_, got, _) = migcage(&host, &["config", "get", "nvml_timeout_ms", "--json"]);
    assert_eq!(got["value"], 10000, "{got}");
    let (_, got, _) = migcage(
        &host,
        &["config", "set", "log.level", "debug", "--dry-run", "--json"],
    );
    assert_eq!(
        (&got["value"], &got["changed"]),
        (&Value::from("debug"), &Value::from(true)),
        "{got}"
    );
    assert!(
        got["diff"].as_str().unwrap().contains("+level = \"debug\""),
        "{got}"
    );

    // config --json is the TOML of `migcage config`, as JSON.
    let (_, as_json, _) = migcage(&host, &["config", "--json"]);
    let toml_text = Command::new(MIGCAGE)
        .arg("--config")
        .arg(host.config())
        .arg("config")
        .output()
        .unwrap()
        .stdout;
    let as_toml: toml::Value = toml::from_str(&String::from_utf8_lossy(&toml_text)).unwrap();
    assert_eq!(as_json, serde_json::to_value(as_toml).unwrap());

    // One node object: list's node of 0:1 is explain's and cdi list's, field for field.
    let (_, listing, _) = migcage(&host, &["list", "--json"]);
    let (_, explained, _) = migcage(&host, &["explain", "--spec", &spec, "--json"]);
    let cap = &listing["gpus"][0]["mig_devices"][1]["nodes"][0];
    let in_explain = explained["plan"]["edits"]["deviceNodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["path"] == cap["path"])
        .unwrap();
    assert_eq!(cap, in_explain);
    let in_cdi = v["specs"][0]["offers"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|o| o["nodes"].as_array().unwrap())
        .find(|n| n["path"] == cap["path"])
        .unwrap();
    assert_eq!(cap, in_cdi);
}

/// `migcage mig apply|assert|export|capacity --json` on a100-empty: each its documented object,
/// the plan's steps as `mig_step`s, and a failed assert its report alone with exit 1.
#[test]
fn mig_commands_json_is_what_docs_json_md_says() {
    let test = "mig_commands_json_is_what_docs_json_md_says";
    if common::skip_unless(common::is_root(), test, "simulate needs root (CAP_MKNOD)") {
        return;
    }
    let s = schemas();
    let host = SimHost::new("a100-empty");
    let file = host.dir.path().join("mig-parted.yaml");
    std::fs::write(
        &file,
        "version: v1\nmig-configs:\n  all-1g.5gb:\n    - devices: all\n      mig-enabled: true\n      mig-devices: { \"1g.5gb\": 7 }\n  one-7g:\n    - devices: all\n      mig-enabled: true\n      mig-devices: { \"7g.40gb\": 1 }\n",
    )
    .unwrap();
    let f = file.to_str().unwrap();
    let apply = ["mig", "apply", "-f", f, "-c", "all-1g.5gb", "--json"];
    let (code, v, err) = migcage(&host, &[&apply[..], &["--dry-run"]].concat());
    assert_eq!(code, Some(0), "{err}");
    validate(&s, "mig_applied", &v);
    assert_eq!(
        (v["dry_run"].as_bool(), v["changed"].as_bool()),
        (Some(true), Some(false))
    );
    let steps = v["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 7, "{v}");
    assert!(
        steps
            .iter()
            .all(|st| st["action"] == "create_gi" && st["profile"] == "1g.5gb"),
        "{v}"
    );
    let (code, v, err) = migcage(&host, &apply);
    assert_eq!(code, Some(0), "{err}");
    validate(&s, "mig_applied", &v);
    assert_eq!(
        (v["dry_run"].as_bool(), v["changed"].as_bool()),
        (Some(false), Some(true))
    );
    // Twice: nothing to do.
    let (_, again, _) = migcage(&host, &apply);
    assert_eq!(
        (
            again["steps"].as_array().map(Vec::len),
            again["changed"].as_bool()
        ),
        (Some(0), Some(false))
    );

    let (code, v, err) = migcage(
        &host,
        &["mig", "assert", "-f", f, "-c", "all-1g.5gb", "--json"],
    );
    assert_eq!(code, Some(0), "{err}");
    validate(&s, "mig_asserted", &v);
    assert_eq!(v["matches"], true);
    let (code, v, err) = migcage(&host, &["mig", "assert", "-f", f, "-c", "one-7g", "--json"]);
    assert_eq!(code, Some(1), "{err}");
    validate(&s, "mig_asserted", &v);
    assert_eq!(v["matches"], false);
    assert!(
        v["changes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["action"] == "destroy_gi"),
        "{v}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("migcage: the GPUs do not have layout one-7g: "),
        "{err}"
    );

    let (code, v, err) = migcage(&host, &["mig", "export", "--json"]);
    assert_eq!(code, Some(0), "{err}");
    validate(&s, "mig_exported", &v);
    assert_eq!(
        v["gpus"][0]["mig_devices"],
        serde_json::json!({"1g.5gb": 7})
    );

    let (code, v, err) = migcage(&host, &["mig", "capacity", "--json"]);
    assert_eq!(code, Some(0), "{err}");
    validate(&s, "mig_capacity", &v);
    let profiles = v["profiles"].as_array().unwrap();
    assert!(profiles.iter().all(|p| p["agrees"] == true), "{v}");
    let one_g = profiles.iter().find(|p| p["profile"] == "1g.5gb").unwrap();
    assert_eq!(
        one_g["nvml_remaining"], 0,
        "seven 1g.5gb leave none: {one_g}"
    );
}

/// `migcage release ID --json` after a container took a lease (runc, no poststop): the
/// documented `released` object, naming that container's lease.
#[test]
fn release_json_is_what_docs_json_md_says() {
    if let Some(why) = common::Mode::RuncV1.unavailable() {
        common::skip(&format!("release_json_is_what_docs_json_md_says: {why}"));
        return;
    }
    let s = schemas();
    let lab = common::lab::Lab::new();
    let id = common::unique("json");
    let opts = common::lab::Opts {
        poststop: false,
        ..common::lab::Opts::plain()
    };
    lab.start(&id, "NVIDIA_VISIBLE_DEVICES=profile:1g.5gb", opts)
        .unwrap();
    let (code, v, err) = migcage(&lab.host, &["release", &id, "--json"]);
    assert_eq!(code, Some(0), "{err}");
    validate(&s, "released", &v);
    let released = v["released"].as_array().unwrap();
    assert_eq!(released.len(), 1, "{v}");
    assert_eq!(released[0]["container"], id.as_str(), "{v}");
    assert!(lab.lease_file().is_empty(), "release left the lease");
}

#[test]
fn errors_with_json_are_the_documented_error_object() {
    let s = schemas();
    let cases: &[(&[&str], i32)] = &[
        (
            &["explain", "--spec", "/nonexistent/config.json", "--json"],
            1,
        ),
        (&["--json", "list", "--nosuch"], 2),
        (
            &[
                "release",
                "nobody",
                "--json",
                "--config",
                "/nonexistent.toml",
            ],
            1,
        ),
    ];
    for (args, status) in cases {
        let out = Command::new(MIGCAGE).args(*args).output().unwrap();
        let v: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: {e}: {out:?}"));
        validate(&s, "error", &v);
        assert_eq!(out.status.code(), Some(*status), "{args:?}");
        assert_eq!(v["error"]["status"], *status, "{args:?}");
        let line = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            line.trim_end(),
            format!("migcage: {}", v["error"]["message"].as_str().unwrap()),
            "{args:?}"
        );
    }
}

#[test]
fn every_documented_command_is_checked_here() {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/json.md"))
        .unwrap();
    let s = schemas();
    // The table's object names are all defined.
    for row in doc.lines().filter(|l| l.starts_with("| `migcage ")) {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let name = cells[2].trim_matches('`');
        if !name.starts_with("a CDI spec") {
            assert!(s.contains_key(name), "{row}: no schema {name}");
        }
    }
    assert!(doc.matches("| `migcage ").count() >= 11);
}
