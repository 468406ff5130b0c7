//! `migcage cdi generate` and `cdi list` against simulated hosts: every generated spec is valid
//! against the CDI project's JSON schema, names every device, and `cdi list` notices when MIG
//! instances are destroyed or re-created after the spec was written.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{SimHost, MIGCAGE};
use serde_json::{json, Value};

/// Where `schema.json` refers to `defs.json` from (its `$ref`s are relative).
const SCHEMA_BASE: &str = "https://github.com/cncf-tags/container-device-interface/schema/";

fn fixture(name: &str) -> Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/cdi")
        .join(name);
    serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap()
}

/// Validators for a whole spec and for a `containerEdits` object.
struct Schema {
    spec: jsonschema::Validator,
    edits: jsonschema::Validator,
}

impl Schema {
    fn load() -> Schema {
        let defs_uri = format!("{SCHEMA_BASE}defs.json");
        let registry = jsonschema::Registry::new()
            .add(defs_uri.as_str(), fixture("defs.json"))
            .unwrap()
            .prepare()
            .unwrap();
        let spec = jsonschema::options()
            .with_registry(&registry)
            .with_base_uri(format!("{SCHEMA_BASE}schema.json"))
            .build(&fixture("schema.json"))
            .unwrap();
        let edits = jsonschema::options()
            .with_registry(&registry)
            .build(&json!({"$ref": format!("{defs_uri}#/definitions/containerEdits")}))
            .unwrap();
        Schema { spec, edits }
    }

    /// Every schema error of `doc` (empty when valid), the top-level `containerEdits` included.
    fn errors(&self, doc: &Value) -> Vec<String> {
        let mut out: Vec<String> = self
            .spec
            .iter_errors(doc)
            .map(|e| format!("{}: {e}", e.instance_path()))
            .collect();
        if let Some(top) = doc.get("containerEdits") {
            out.extend(
                self.edits
                    .iter_errors(top)
                    .map(|e| format!("/containerEdits{}: {e}", e.instance_path())),
            );
        }
        out
    }
}

fn migcage(config: &Path, args: &[&str]) -> Output {
    Command::new(MIGCAGE)
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `cdi generate` into `file`; its parsed contents.
fn generate(host: &SimHost, kind: &str, file: &Path) -> Value {
    let out = migcage(
        &host.config(),
        &[
            "cdi",
            "generate",
            "--kind",
            kind,
            "--output",
            file.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{} {kind}: {}",
        host.topology,
        text(&out.stderr)
    );
    assert!(text(&out.stdout).starts_with(&format!("wrote {}", file.display())));
    let body = std::fs::read_to_string(file).unwrap();
    if file.extension().unwrap() == "json" {
        serde_json::from_str(&body).unwrap()
    } else {
        serde_yaml::from_str(&body).unwrap()
    }
}

fn shipped_topologies() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/topology/topologies");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".toml"))
                .map(str::to_string)
        })
        .collect();
    names.sort();
    names
}

/// The CDI syntax rules the schema leaves out: the kind, and device names (letters, digits,
/// `_ - . :`, starting and ending with a letter or digit), each once.
fn check_names(spec: &Value, ctx: &str) -> Vec<String> {
    let kind = spec["kind"].as_str().unwrap();
    let (vendor, class) = kind.split_once('/').unwrap();
    assert!(
        vendor.starts_with(|c: char| c.is_ascii_alphabetic())
            && vendor
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)),
        "{ctx}: vendor {vendor}"
    );
    assert!(["gpu", "mig"].contains(&class), "{ctx}: class {class}");
    let names: Vec<String> = spec["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap().to_string())
        .collect();
    for n in &names {
        let ok = n.starts_with(|c: char| c.is_ascii_alphanumeric())
            && n.ends_with(|c: char| c.is_ascii_alphanumeric())
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.:".contains(c));
        assert!(ok, "{ctx}: device name {n:?}");
    }
    let unique: BTreeSet<&String> = names.iter().collect();
    assert_eq!(unique.len(), names.len(), "{ctx}: names repeat: {names:?}");
    names
}

/// The names `list --json` gives every device, as the spec must offer them.
fn listed_names(listing: &Value, mig_only: bool) -> Vec<String> {
    let mut out = Vec::new();
    for g in listing["gpus"].as_array().unwrap() {
        if !mig_only {
            out.push(g["index"].to_string());
            out.push(g["uuid"].as_str().unwrap().to_string());
        }
        for m in g["mig_devices"].as_array().unwrap() {
            out.push(m["index"].as_str().unwrap().to_string());
            out.push(m["uuid"].as_str().unwrap().to_string());
        }
    }
    if !mig_only && !out.is_empty() {
        out.push("all".into());
    }
    out
}

#[test]
fn every_shipped_topology_gives_a_valid_cdi_spec() {
    if !common::is_root() {
        common::skip("every_shipped_topology_gives_a_valid_cdi_spec: needs root (simulate makes device nodes)");
        return;
    }
    let schema = Schema::load();
    let out_dir = tempfile::tempdir().unwrap();
    for topology in shipped_topologies() {
        let host = SimHost::new(&topology);
        let listing = host.list();
        for (kind, mig_only) in [("nvidia.com/gpu", false), ("nvidia.com/mig", true)] {
            let want = listed_names(&listing, mig_only);
            for ext in ["json", "yaml"] {
                let ctx = format!("{topology} {kind} {ext}");
                let file = out_dir
                    .path()
                    .join(format!("{topology}-{}.{ext}", kind.replace('/', "-")));
                if want.is_empty() {
                    let out = migcage(
                        &host.config(),
                        &[
                            "cdi",
                            "generate",
                            "--kind",
                            kind,
                            "--output",
                            file.to_str().unwrap(),
                        ],
                    );
                    assert!(!out.status.success(), "{ctx}: a spec without devices");
                    let err = text(&out.stderr);
                    assert_eq!(err.lines().count(), 1, "{ctx}: {err}");
                    assert!(err.contains("has none"), "{ctx}: {err}");
                    assert!(!file.exists(), "{ctx}");
                    continue;
                }
                let spec = generate(&host, kind, &file);
                let errors = schema.errors(&spec);
                assert!(errors.is_empty(), "{ctx}: schema errors: {errors:#?}");
                assert_eq!(spec["cdiVersion"], "0.5.0", "{ctx}");
                assert_eq!(spec["kind"], kind, "{ctx}");
                assert_eq!(check_names(&spec, &ctx), want, "{ctx}");
                let top = &spec["containerEdits"];
                let hook = &top["hooks"][0];
                assert_eq!(hook["hookName"], "createRuntime", "{ctx}");
                assert_eq!(hook["path"], MIGCAGE, "{ctx}");
                assert_eq!(
                    hook["env"],
                    json!([format!("MIGCAGE_CONFIG={}", host.config().display())]),
                    "{ctx}"
                );
                let top_paths: Vec<&str> = top["deviceNodes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|n| n["path"].as_str().unwrap())
                    .collect();
                let common: Vec<&str> = listing["common_nodes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|n| n["path"].as_str().unwrap())
                    .collect();
                assert_eq!(top_paths, common, "{ctx}");
                // The driver's files are the top level's mounts, with the hook's options.
                let mounts = top["mounts"].as_array().unwrap();
                assert!(
                    mounts.iter().any(|m| m["containerPath"]
                        .as_str()
                        .unwrap()
                        .contains("/libnvidia-ml.so.")),
                    "{ctx}: no driver library in {mounts:?}"
                );
                for m in mounts {
                    let o = &m["options"];
                    assert!(
                        o[0] == "ro" && o.as_array().unwrap().last().unwrap() == "bind",
                        "{ctx}: {m}"
                    );
                    assert!(
                        Path::new(m["hostPath"].as_str().unwrap()).exists(),
                        "{ctx}: {m}"
                    );
                }
                // Every device's own nodes are exactly what `list` says it gets, on the host's
                // nodes, and it names its device in its mount.
                for d in spec["devices"].as_array().unwrap() {
                    let name = d["name"].as_str().unwrap();
                    if name == "all" {
                        continue;
                    }
                    let (index, uuid) = device_of(&listing, name);
                    let nodes = d["containerEdits"]["deviceNodes"].as_array().unwrap();
                    let want_nodes = list_nodes_of(&listing, &index);
                    let got: Vec<(String, u64, u64)> = nodes
                        .iter()
                        .map(|n| {
                            (
                                n["path"].as_str().unwrap().to_string(),
                                n["major"].as_u64().unwrap(),
                                n["minor"].as_u64().unwrap(),
                            )
                        })
                        .collect();
                    assert_eq!(got, want_nodes, "{ctx} {name}");
                    for n in nodes {
                        let host_path = PathBuf::from(n["hostPath"].as_str().unwrap());
                        assert!(host_path.starts_with(host.dev()), "{ctx} {name}");
                        assert_eq!(n["type"], "c");
                        assert_eq!(n["permissions"], "rw");
                    }
                    assert_eq!(
                        d["containerEdits"]["mounts"],
                        json!([{"hostPath": "/dev/null",
                                "containerPath": format!("/var/run/nvidia-container-devices/{uuid}"),
                                "options": ["ro", "nosuid", "nodev", "bind"]}]),
                        "{ctx} {name}"
                    );
                }
            }
        }
    }
}

/// (index, UUID) of the device `list --json` knows as `name` (index or UUID).
fn device_of(listing: &Value, name: &str) -> (String, String) {
    for g in listing["gpus"].as_array().unwrap() {
        let (i, u) = (g["index"].to_string(), g["uuid"].as_str().unwrap());
        if name == i || name == u {
            return (i, u.to_string());
        }
        for m in g["mig_devices"].as_array().unwrap() {
            let (i, u) = (m["index"].as_str().unwrap(), m["uuid"].as_str().unwrap());
            if name == i || name == u {
                return (i.to_string(), u.to_string());
            }
        }
    }
    panic!("{name} is not in the listing")
}

fn list_nodes_of(listing: &Value, index: &str) -> Vec<(String, u64, u64)> {
    let nodes = |v: &Value| -> Vec<(String, u64, u64)> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|n| {
                (
                    n["path"].as_str().unwrap().to_string(),
                    n["major"].as_u64().unwrap(),
                    n["minor"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    for g in listing["gpus"].as_array().unwrap() {
        if g["index"].as_u64().map(|i| i.to_string()).as_deref() == Some(index) {
            return nodes(&g["nodes"]);
        }
        for m in g["mig_devices"].as_array().unwrap() {
            if m["index"].as_str() == Some(index) {
                return nodes(&m["nodes"]);
            }
        }
    }
    panic!("{index} is not in the listing")
}

#[test]
fn schema_rejects_what_it_should() {
    // The validator is wired to the schema: a spec without devices, or a node without a path,
    // does not pass.
    let schema = Schema::load();
    assert!(!schema
        .errors(&json!({"cdiVersion": "0.5.0", "kind": "nvidia.com/gpu"}))
        .is_empty());
    let bad_node = json!({"cdiVersion": "0.5.0", "kind": "nvidia.com/gpu", "devices": [
        {"name": "0", "containerEdits": {"deviceNodes": [{"hostPath": "/dev/nvidia0"}]}}]});
    assert!(!schema.errors(&bad_node).is_empty());
    let bad_top = json!({"cdiVersion": "0.5.0", "kind": "nvidia.com/gpu", "devices": [],
        "containerEdits": {"hooks": [{"path": "/bin/true"}]}});
    assert!(!schema.errors(&bad_top).is_empty());
}

const UUIDS: [&str; 4] = [
    "MIG-aaaaaaaa-0000-4000-8000-000000000001",
    "MIG-bbbbbbbb-0000-4000-8000-000000000002",
    "MIG-cccccccc-0000-4000-8000-000000000003",
    "MIG-dddddddd-0000-4000-8000-000000000004",
];

/// An A100 with three 1g.5gb instances of the given (GPU instance id, UUID).
fn topology(instances: &[(u32, &str)]) -> String {
    let gis: Vec<String> = instances
        .iter()
        .map(|(id, uuid)| {
            format!(r#"  {{ profile = "1g.5gb", id = {id}, compute_instances = [{{ uuid = "{uuid}" }}] }},"#)
        })
        .collect();
    format!(
        "name = \"cdi-stale\"\ndriver_version = \"550.54.15\"\n\n[[gpus]]\nmodel = \"a100-sxm4-40gb\"\npci_bus_id = \"00000000:07:00.0\"\nmig = true\ngpu_instances = [\n{}\n]\n",
        gis.join("\n")
    )
}

fn simulate(file: &Path, root: &Path) {
    let out = Command::new(MIGCAGE)
        .args(["simulate", "--topology", file.to_str().unwrap(), "--root"])
        .arg(root)
        .output()
        .unwrap();
    assert!(out.status.success(), "simulate: {}", text(&out.stderr));
}

#[test]
fn cdi_list_warns_when_instances_are_destroyed_or_recreated() {
    if !common::is_root() {
        common::skip("cdi_list_warns_when_instances_are_destroyed_or_recreated: needs root (simulate makes device nodes)");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let (topo, root, specs) = (
        d.path().join("t.toml"),
        d.path().join("sim"),
        d.path().join("cdi"),
    );
    std::fs::write(
        &topo,
        topology(&[(7, UUIDS[0]), (8, UUIDS[1]), (9, UUIDS[2])]),
    )
    .unwrap();
    simulate(&topo, &root);
    let config = root.join("config.toml");
    let out = migcage(
        &config,
        &[
            "cdi",
            "generate",
            "--output",
            &format!("{}/", specs.display()),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let file = specs.join("nvidia.com-gpu.yaml");
    assert!(file.is_file());

    // Fresh: lists every device, no warning, --check passes.
    let out = migcage(
        &config,
        &["cdi", "list", "--spec", specs.to_str().unwrap(), "--check"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "", "a fresh spec warns");
    let listing = text(&out.stdout);
    assert!(
        listing.starts_with(&format!(
            "{}: kind nvidia.com/gpu, cdiVersion 0.5.0, 9 device names\n",
            file.display()
        )),
        "{listing}"
    );
    assert!(
        listing.contains(&format!(
            "nvidia.com/gpu=0:1 | nvidia.com/gpu={}  [{}]",
            UUIDS[1], UUIDS[1]
        )),
        "{listing}"
    );
    let json_out = migcage(
        &config,
        &["cdi", "list", "--spec", file.to_str().unwrap(), "--json"],
    );
    let report: Value = serde_json::from_slice(&json_out.stdout).unwrap();
    assert_eq!(report["specs"][0]["warnings"], json!([]));
    assert_eq!(report["specs"][0]["offers"].as_array().unwrap().len(), 5);

    // 0:1 destroyed and re-created with another UUID (and GPU instance id, so other caps
    // minors); 0:2 destroyed.
    std::fs::write(&topo, topology(&[(7, UUIDS[0]), (11, UUIDS[3])])).unwrap();
    simulate(&topo, &root);
    let out = migcage(
        &config,
        &["cdi", "list", "--spec", specs.to_str().unwrap(), "--check"],
    );
    assert!(!out.status.success(), "--check passed a stale spec");
    let err = text(&out.stderr);
    let warnings: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("migcage: warning: "))
        .collect();
    let prefix = format!("migcage: warning: {}: ", file.display());
    assert!(warnings.iter().all(|w| w.starts_with(&prefix)), "{err}");
    let recreated = format!(
        "nvidia.com/gpu=0:1, {b}: {b} is gone from this host (destroyed, or destroyed and re-created with a new UUID, since the spec was generated); 0:1 is now {d}",
        b = UUIDS[1],
        d = UUIDS[3]
    );
    assert!(warnings.iter().any(|w| w.contains(&recreated)), "{err}");
    let destroyed = format!(
        "nvidia.com/gpu=0:2, {c}: {c} is gone from this host",
        c = UUIDS[2]
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.contains(&destroyed) && w.contains("there is no 0:2 now")),
        "{err}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("nvidia.com/gpu=all (all): the spec gives")),
        "{err}"
    );
    // The re-created instance is one line, not also "on this host but not in the spec".
    assert!(
        !err.contains("is on this host but not in the spec"),
        "{err}"
    );
    let last = err.lines().last().unwrap();
    assert!(
        last.starts_with(&format!(
            "migcage: {} warning(s): the CDI spec no longer matches",
            warnings.len()
        )),
        "{err}"
    );
    // Without --check: the same warnings, and success.
    let out = migcage(&config, &["cdi", "list", "--spec", specs.to_str().unwrap()]);
    assert!(out.status.success());
    assert_eq!(text(&out.stderr).lines().count(), warnings.len());

    // Regenerated: clean again.
    let out = migcage(
        &config,
        &["cdi", "generate", "--output", file.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = migcage(
        &config,
        &["cdi", "list", "--spec", file.to_str().unwrap(), "--check"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "");
}

#[test]
fn bad_arguments_are_one_line_and_write_nothing() {
    let d = tempfile::tempdir().unwrap();
    // No host is needed: the arguments are checked first.
    let config = d.path().join("config.toml");
    std::fs::write(&config, "proc_root = \"/nonexistent\"\n").unwrap();
    let cases: &[(&[&str], &str)] = &[
        (
            &["--kind", "nvidia.com/gds"],
            "CDI kind \"nvidia.com/gds\": migcage serves the classes gpu and mig only",
        ),
        (&["--kind", "gpu"], "CDI kind \"gpu\": it has no \"/\""),
        (
            &["--output", "spec.txt"],
            "CDI engines read only .json, .yaml and .yml files",
        ),
        (
            &["--output", "spec.yaml", "--format", "json"],
            "--format json disagrees with the file's extension",
        ),
        (
            &["--driver-capabilities", "compute,warp"],
            "--driver-capabilities \"compute,warp\"",
        ),
    ];
    for (args, want) in cases {
        let mut all = vec!["cdi", "generate"];
        all.extend_from_slice(args);
        let out = Command::new(MIGCAGE)
            .arg("--config")
            .arg(&config)
            .args(&all)
            .current_dir(d.path())
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?}");
        let err = text(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(
            err.starts_with("migcage: ") && err.contains(want),
            "{args:?}: {err}"
        );
    }
    // A host without a driver: the inventory's own one-line error.
    let out = migcage(&config, &["cdi", "generate", "--output", "-"]);
    let err = text(&out.stderr);
    assert!(
        !out.status.success() && err.contains("NVIDIA driver not loaded"),
        "{err}"
    );
    let left: Vec<_> = std::fs::read_dir(d.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(left, [std::ffi::OsString::from("config.toml")]);
    // `cdi list` without any spec lists nothing, exits 0 (with --check too: nothing is stale)
    // and says where it looked; --json is the empty report.
    let dir = d.path().to_str().unwrap();
    for extra in [&[][..], &["--check"], &["--json"]] {
        let out = migcage(
            &config,
            &[&["cdi", "list", "--spec", dir][..], extra].concat(),
        );
        let err = text(&out.stderr);
        assert!(out.status.success(), "cdi list {extra:?}: {err}");
        assert_eq!(
            err.trim_end(),
            format!("migcage: note: no CDI spec made by migcage in {dir}; write one with 'migcage cdi generate --output /etc/cdi/'"),
            "{extra:?}"
        );
        let want = if extra == ["--json"] {
            "{\"specs\":[]}\n"
        } else {
            ""
        };
        assert_eq!(text(&out.stdout), want, "{extra:?}");
    }
}
