//! Writing a plan's edits into an OCI spec held as a `serde_json::Value` (fields migcage does not
//! know survive): pure, and idempotent (editing an edited spec adds nothing twice).

use std::path::PathBuf;

use serde_json::{json, Map, Value};

use crate::core::cgroup::rules::{self, RulesError};
use crate::core::edits::{DeviceRule, DeviceType, Hook};
use crate::core::plan::Plan;

/// The annotation on a spec that migcage edited; its value lists the devices it gave.
pub const EDITED_ANNOTATION: &str = "migcage.io/edited";

/// The hooks the wrapper adds: migcage itself, and its configuration file when it is not the
/// default one (hooks run with only the environment the spec gives them). The entries are built
/// by [`Hook::migcage`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookCommand {
    pub migcage: PathBuf,
    pub config: Option<PathBuf>,
}

/// The hook points the wrapper registers migcage at.
pub const HOOK_STAGES: [&str; 2] = ["createRuntime", "poststop"];

/// Which of migcage's hooks an edited spec runs.
#[derive(Debug, Clone, Copy)]
pub enum SpecHooks<'a> {
    /// `createRuntime`, and `poststop` when the container holds `leases`: for `run`, where the
    /// runtime goes from create to start in one process, so that only a hook can work inside
    /// the container before its process starts.
    Runtime { hook: &'a HookCommand, leases: bool },
    /// None: for `create`, after which the wrapper works inside the container itself, and a
    /// `delete` through the wrapper releases the container's leases.
    None,
}

impl HookCommand {
    /// migcage's hook for `stage`, built by the one builder of its entry.
    pub fn hook(&self, stage: &str) -> Hook {
        Hook::migcage(&self.migcage, stage, self.config.as_deref())
    }

    /// The hook entry for `stage`, as in `hooks.<stage>[]`.
    pub fn entry(&self, stage: &str) -> Value {
        serde_json::to_value(self.hook(stage)).expect("a hook serializes")
    }
}

/// A mutable JSON object at `path` under `root`, made when absent or null; an error naming the
/// field when something else is there.
fn object_at<'a>(root: &'a mut Value, path: &[&str]) -> Result<&'a mut Map<String, Value>, String> {
    let mut cur = root;
    let mut at = String::new();
    for key in path {
        if !at.is_empty() {
            at.push('.');
        }
        at.push_str(key);
        let obj = cur
            .as_object_mut()
            .ok_or_else(|| format!("config.json {at}: its parent is not an object"))?;
        let slot = obj.entry(key.to_string()).or_insert(Value::Null);
        if slot.is_null() {
            *slot = Value::Object(Map::new());
        }
        if !slot.is_object() {
            return Err(format!(
                "config.json {at}: expected an object, found {slot}"
            ));
        }
        cur = slot;
    }
    match cur {
        Value::Object(m) => Ok(m),
        // The root itself, when `path` is empty.
        other => Err(format!("config.json: expected an object, found {other}")),
    }
}

/// A mutable JSON array `key` of `obj` (`field` names it in errors), made when absent or null.
fn array_in<'a>(
    obj: &'a mut Map<String, Value>,
    key: &str,
    field: &str,
) -> Result<&'a mut Vec<Value>, String> {
    let slot = obj.entry(key.to_string()).or_insert(Value::Null);
    if slot.is_null() {
        *slot = Value::Array(Vec::new());
    }
    match slot {
        Value::Array(a) => Ok(a),
        other => Err(format!(
            "config.json {field}: expected an array, found {other}"
        )),
    }
}

fn rule_json(r: &DeviceRule) -> Value {
    let kind = match r.kind {
        DeviceType::All => "a",
        DeviceType::Char => "c",
        DeviceType::Block => "b",
    };
    let mut v = json!({"allow": r.allow, "type": kind, "access": r.access.to_string()});
    if let Some(m) = r.major {
        v["major"] = json!(m);
    }
    if let Some(m) = r.minor {
        v["minor"] = json!(m);
    }
    v
}

/// Write `plan`'s edits into `spec`. Returns whether the spec changed (false when an earlier run
/// already made every edit). Pure: the caller decides whether to write the result. `hooks` says
/// which of migcage's hooks to add; the poststop hook only for a container that holds leases (it
/// has nothing else to do).
pub fn edit_spec(spec: &mut Value, plan: &Plan, hooks: SpecHooks<'_>) -> Result<bool, String> {
    let before = spec.clone();
    if !spec.is_object() {
        return Err(format!("config.json: expected an object, found {spec}"));
    }
    add_device_nodes(spec, plan)?;
    add_device_rules(spec, plan)?;
    add_mounts(spec, plan)?;
    set_env(spec, plan)?;
    if let SpecHooks::Runtime { hook, leases } = hooks {
        add_hooks(spec, hook, leases)?;
    }
    mark(spec, plan)?;
    Ok(*spec != before)
}

/// Device nodes. runc and crun make each entry with mknod, or, in a user namespace, by
/// bind-mounting the host file at the same path: an entry whose host node lives elsewhere (a
/// simulated host) is left to the hook, which bind-mounts from the host path.
fn add_device_nodes(spec: &mut Value, plan: &Plan) -> Result<(), String> {
    let userns = crate::backend::hook::has_user_namespace(spec);
    let linux = object_at(spec, &["linux"])?;
    let devices = array_in(linux, "devices", "linux.devices")?;
    for node in &plan.edits.device_nodes {
        let existing = devices
            .iter()
            .enumerate()
            .find(|(_, d)| d.get("path").and_then(Value::as_str) == Some(node.path.as_str()));
        if let Some((i, d)) = existing {
            let same = d.get("type").and_then(Value::as_str) == Some("c")
                && d.get("major").and_then(Value::as_u64) == Some(u64::from(node.major))
                && d.get("minor").and_then(Value::as_u64) == Some(u64::from(node.minor));
            if !same {
                return Err(format!(
                    "config.json linux.devices[{i}] is {} as {}; the driver's {} is c {}:{}; remove that device from the container's spec",
                    node.path,
                    describe_device(d),
                    node.path,
                    node.major,
                    node.minor
                ));
            }
            continue;
        }
        if userns && node.host_path != node.path {
            continue;
        }
        devices.push(json!({
            "path": node.path,
            "type": node.kind.to_string(),
            "major": node.major,
            "minor": node.minor,
            "fileMode": node.file_mode,
            "uid": node.uid,
            "gid": node.gid,
        }));
    }
    Ok(())
}

/// cgroup rules, after the spec's own (a later rule wins), each once.
fn add_device_rules(spec: &mut Value, plan: &Plan) -> Result<(), String> {
    let present = rules::spec_rules(spec).map_err(|e: RulesError| e.to_string())?;
    let resources = object_at(spec, &["linux", "resources"])?;
    let list = array_in(resources, "devices", "linux.resources.devices")?;
    for rule in &plan.edits.device_rules {
        if !present.contains(rule) {
            list.push(rule_json(rule));
        }
    }
    Ok(())
}

/// Mounts (driver files), each destination once.
fn add_mounts(spec: &mut Value, plan: &Plan) -> Result<(), String> {
    if plan.edits.mounts.is_empty() {
        return Ok(());
    }
    let root = spec.as_object_mut().expect("checked by edit_spec");
    let mounts = array_in(root, "mounts", "mounts")?;
    for m in &plan.edits.mounts {
        let existing = mounts.iter().enumerate().find(|(_, x)| {
            x.get("destination").and_then(Value::as_str) == Some(m.container_path.as_str())
        });
        if let Some((i, x)) = existing {
            if x.get("source").and_then(Value::as_str) == Some(m.host_path.as_str()) {
                continue;
            }
            return Err(format!(
                "config.json mounts[{i}] mounts {} on {}, where migcage mounts the driver's {}; remove that mount from the container's spec",
                x.get("source").and_then(Value::as_str).unwrap_or("?"),
                m.container_path,
                m.host_path
            ));
        }
        let mut options = m.options.clone();
        if !options.iter().any(|o| o == "bind" || o == "rbind") {
            options.insert(0, "bind".into());
        }
        mounts.push(json!({
            "destination": m.container_path,
            "type": "bind",
            "source": m.host_path,
            "options": options,
        }));
    }
    Ok(())
}

/// Environment: each NAME set to the planned value, except the device list. The hook plans again
/// from this spec, so the request's own sources stay as the user wrote them: the plan's
/// `NVIDIA_VISIBLE_DEVICES=MIG-...` next to an annotation or mounts naming the same instance as
/// `0:6` would read as two sources naming different devices (the CDI generator leaves it out for
/// the same reason).
fn set_env(spec: &mut Value, plan: &Plan) -> Result<(), String> {
    let env_edits: Vec<&String> = plan
        .edits
        .env
        .iter()
        .filter(|kv| kv.split('=').next() != Some(crate::core::request::VISIBLE_DEVICES))
        .collect();
    if env_edits.is_empty() {
        return Ok(());
    }
    let process = object_at(spec, &["process"])?;
    let env = array_in(process, "env", "process.env")?;
    for kv in env_edits {
        let name = kv.split('=').next().unwrap_or(kv);
        let prefix = format!("{name}=");
        match env
            .iter_mut()
            .find(|e| e.as_str().is_some_and(|s| s.starts_with(&prefix)))
        {
            Some(e) => *e = json!(kv),
            None => env.push(json!(kv)),
        }
    }
    Ok(())
}

/// The hooks, each once; poststop only for a container that holds `leases`.
fn add_hooks(spec: &mut Value, hook: &HookCommand, leases: bool) -> Result<(), String> {
    for stage in HOOK_STAGES {
        if stage == "poststop" && !leases {
            continue;
        }
        let hooks = object_at(spec, &["hooks"])?;
        let list = array_in(hooks, stage, &format!("hooks.{stage}"))?;
        let entry = hook.entry(stage);
        let present = list
            .iter()
            .any(|h| h.get("path") == entry.get("path") && h.get("args") == entry.get("args"));
        if !present {
            list.push(entry);
        }
    }
    Ok(())
}

/// The mark. Its value names the devices, for `runc state`'s annotations and for people.
fn mark(spec: &mut Value, plan: &Plan) -> Result<(), String> {
    let devices = if plan.devices.is_empty() {
        "none".to_string()
    } else {
        plan.devices
            .iter()
            .map(|d| d.index.as_str())
            .collect::<Vec<_>>()
            .join(",")
    };
    object_at(spec, &["annotations"])?.insert(EDITED_ANNOTATION.into(), json!(devices));
    Ok(())
}

fn describe_device(d: &Value) -> String {
    let s = |k: &str| {
        d.get(k)
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string())
            })
            .unwrap_or_else(|| "?".into())
    };
    format!("{} {}:{}", s("type"), s("major"), s("minor"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::edits::{Access, ContainerEdits, DeviceNode, Mount};
    use crate::core::plan::ResolvedDevice;

    fn node(path: &str, major: u32, minor: u32, mode: u32) -> DeviceNode {
        DeviceNode {
            path: path.into(),
            host_path: path.into(),
            kind: 'c',
            major,
            minor,
            file_mode: mode,
            uid: 0,
            gid: 0,
        }
    }

    fn plan() -> Plan {
        let nodes = vec![
            node("/dev/nvidiactl", 195, 255, 0o666),
            node("/dev/nvidia0", 195, 0, 0o666),
            node("/dev/nvidia-caps/nvidia-cap12", 509, 12, 0o444),
        ];
        Plan {
            devices: vec![ResolvedDevice {
                index: "0:1".into(),
                uuid: "MIG-1".into(),
                kind: "1g.5gb".into(),
                gpu_uuid: "GPU-0".into(),
            }],
            edits: ContainerEdits {
                env: vec![],
                device_rules: crate::core::plan::nodes::allow_rules(&nodes, Access::RW),
                device_nodes: nodes,
                mounts: vec![],
                ..ContainerEdits::default()
            },
            proc_gpus: vec!["0000:07:00.0".into()],
            proc_caps: vec![],
        }
    }

    fn hook() -> HookCommand {
        HookCommand {
            migcage: "/usr/bin/migcage".into(),
            config: Some("/etc/sim/config.toml".into()),
        }
    }

    /// The hooks of `run` (leaked: a test's spec edits borrow it for the whole test).
    fn run_hooks(leases: bool) -> SpecHooks<'static> {
        SpecHooks::Runtime {
            hook: Box::leak(Box::new(hook())),
            leases,
        }
    }

    fn runc_spec() -> Value {
        serde_json::from_str(include_str!(
            "../../core/cgroup/testdata/runc-1.1.5-spec.json"
        ))
        .unwrap()
    }

    #[test]
    fn edits_a_real_runc_spec() {
        let mut spec = runc_spec();
        let original = spec.clone();
        assert!(edit_spec(&mut spec, &plan(), run_hooks(true)).unwrap());
        let devices = spec["linux"]["devices"].as_array().unwrap();
        assert_eq!(devices.len(), 3);
        assert_eq!(
            devices[2],
            json!({"path": "/dev/nvidia-caps/nvidia-cap12", "type": "c", "major": 509, "minor": 12, "fileMode": 0o444, "uid": 0, "gid": 0})
        );
        // The spec's own rules first, ours after (a later rule wins), exact, never a wildcard.
        let rules = spec["linux"]["resources"]["devices"].as_array().unwrap();
        let old_rules = original["linux"]["resources"]["devices"]
            .as_array()
            .unwrap();
        assert_eq!(&rules[..old_rules.len()], &old_rules[..]);
        assert_eq!(
            &rules[old_rules.len()..],
            &[
                json!({"allow": true, "type": "c", "major": 195, "minor": 255, "access": "rw"}),
                json!({"allow": true, "type": "c", "major": 195, "minor": 0, "access": "rw"}),
                json!({"allow": true, "type": "c", "major": 509, "minor": 12, "access": "rw"}),
            ]
        );
        // What runc will put in its cgroup program parses, and grants exactly these nodes.
        let parsed = rules::spec_rules(&spec).unwrap();
        assert_eq!(&parsed[parsed.len() - 3..], &plan().edits.device_rules[..]);
        // So the createRuntime hook finds them granted, and grants nothing itself.
        assert!(rules::spec_grants(&spec, &plan().edits.device_rules));
        assert_eq!(
            spec["hooks"]["createRuntime"],
            json!([{"path": "/usr/bin/migcage", "args": ["migcage", "hook", "createRuntime"], "env": ["MIGCAGE_CONFIG=/etc/sim/config.toml"]}])
        );
        assert_eq!(
            spec["hooks"]["poststop"],
            json!([{"path": "/usr/bin/migcage", "args": ["migcage", "hook", "poststop"], "env": ["MIGCAGE_CONFIG=/etc/sim/config.toml"]}])
        );
        assert_eq!(spec["annotations"][EDITED_ANNOTATION], "0:1");
        // Everything else is as it was.
        let mut rest = spec.clone();
        let mut rest_orig = original.clone();
        for v in [&mut rest, &mut rest_orig] {
            let o = v.as_object_mut().unwrap();
            o.remove("hooks");
            o.remove("annotations");
            let l = o["linux"].as_object_mut().unwrap();
            l.remove("devices");
            l["resources"].as_object_mut().unwrap().remove("devices");
        }
        assert_eq!(rest, rest_orig);
    }

    #[test]
    fn a_container_without_leases_gets_no_poststop_hook() {
        let mut spec = runc_spec();
        assert!(edit_spec(&mut spec, &plan(), run_hooks(false)).unwrap());
        assert_eq!(spec["hooks"]["createRuntime"].as_array().unwrap().len(), 1);
        assert!(spec["hooks"].get("poststop").is_none(), "{}", spec["hooks"]);
    }

    #[test]
    fn a_spec_for_create_gets_no_hook_at_all() {
        let mut spec = runc_spec();
        let hooks_before = spec.get("hooks").cloned();
        assert!(edit_spec(&mut spec, &plan(), SpecHooks::None).unwrap());
        assert_eq!(spec.get("hooks").cloned(), hooks_before);
        // The nodes and rules are there all the same.
        assert_eq!(spec["linux"]["devices"].as_array().unwrap().len(), 3);
        assert!(spec["annotations"][EDITED_ANNOTATION] == "0:1");
    }

    #[test]
    fn editing_twice_adds_nothing() {
        let mut spec = runc_spec();
        assert!(edit_spec(&mut spec, &plan(), run_hooks(true)).unwrap());
        let once = spec.clone();
        assert!(!edit_spec(&mut spec, &plan(), run_hooks(true)).unwrap());
        assert_eq!(spec, once);
    }

    #[test]
    fn unknown_fields_survive() {
        let mut spec = json!({
            "ociVersion": "1.2.0",
            "x-vendor": {"nested": [1, 2, {"k": null}]},
            "process": {"env": ["A=1"], "ioPriority": {"class": "IOPRIO_CLASS_IDLE"}},
            "linux": {"devices": [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "x-extra": true}],
                      "intelRdt": {"closID": "x"}, "resources": {"unified": {"memory.high": "1G"}}},
            "hooks": {"prestart": [{"path": "/bin/true"}]},
            "annotations": {"keep": "me"}
        });
        edit_spec(&mut spec, &plan(), run_hooks(true)).unwrap();
        assert_eq!(spec["x-vendor"], json!({"nested": [1, 2, {"k": null}]}));
        assert_eq!(spec["process"]["ioPriority"]["class"], "IOPRIO_CLASS_IDLE");
        assert_eq!(spec["linux"]["devices"][0]["x-extra"], true);
        assert_eq!(spec["linux"]["intelRdt"]["closID"], "x");
        assert_eq!(spec["linux"]["resources"]["unified"]["memory.high"], "1G");
        assert_eq!(spec["hooks"]["prestart"], json!([{"path": "/bin/true"}]));
        assert_eq!(spec["annotations"]["keep"], "me");
        assert_eq!(spec["linux"]["devices"].as_array().unwrap().len(), 4);
    }

    #[test]
    fn a_conflicting_device_is_refused() {
        let mut spec = json!({"linux": {"devices": [{"path": "/dev/nvidia0", "type": "c", "major": 195, "minor": 3}]}});
        let e = edit_spec(&mut spec, &plan(), run_hooks(true)).unwrap_err();
        assert!(
            e.contains("linux.devices[0]") && e.contains("c 195:3") && e.contains("c 195:0"),
            "{e}"
        );
        // The same node given already (docker --device): accepted, not duplicated.
        let mut spec = json!({"linux": {"devices": [{"path": "/dev/nvidia0", "type": "c", "major": 195, "minor": 0}]}});
        edit_spec(&mut spec, &plan(), run_hooks(true)).unwrap();
        assert_eq!(spec["linux"]["devices"].as_array().unwrap().len(), 3);
    }

    #[test]
    fn malformed_fields_are_named() {
        for (spec, field) in [
            (json!({"linux": {"devices": {"a": 1}}}), "linux.devices"),
            (json!({"linux": "x"}), "linux"),
            (
                json!({"linux": {"resources": {"devices": [{"allow": "yes"}]}}}),
                "linux.resources.devices[0].allow",
            ),
            (
                json!({"hooks": {"createRuntime": 3}}),
                "hooks.createRuntime",
            ),
            (json!([1]), "config.json"),
        ] {
            let mut s = spec.clone();
            let e = edit_spec(&mut s, &plan(), run_hooks(true)).unwrap_err();
            assert!(e.contains(field), "{spec}: {e}");
        }
    }

    #[test]
    fn user_namespace_nodes_from_elsewhere_are_left_to_the_hook() {
        let mut p = plan();
        for n in &mut p.edits.device_nodes {
            n.host_path = format!("/sim{}", n.path);
        }
        let mut spec = json!({"linux": {"namespaces": [{"type": "user"}, {"type": "mount"}]}});
        edit_spec(&mut spec, &p, run_hooks(true)).unwrap();
        // runc would bind-mount /dev/nvidia0 of the host, which is not the simulated node.
        assert_eq!(spec["linux"]["devices"], json!([]));
        assert_eq!(
            spec["linux"]["resources"]["devices"]
                .as_array()
                .unwrap()
                .len(),
            3
        );
        // On a real host (same path) the runtime makes them.
        let mut spec = json!({"linux": {"namespaces": [{"type": "user"}]}});
        edit_spec(&mut spec, &plan(), run_hooks(true)).unwrap();
        assert_eq!(spec["linux"]["devices"].as_array().unwrap().len(), 3);
    }

    #[test]
    fn mounts_and_env_are_written_once() {
        let mut p = plan();
        p.edits.mounts = vec![Mount {
            host_path: "/usr/lib/x86_64-linux-gnu/libcuda.so.550.54.15".into(),
            container_path: "/usr/lib/x86_64-linux-gnu/libcuda.so.550.54.15".into(),
            options: vec!["ro".into(), "nosuid".into(), "nodev".into()],
        }];
        p.edits.env = vec![
            "NVIDIA_VISIBLE_DEVICES=MIG-1".into(),
            "NVIDIA_DRIVER_CAPABILITIES=compute,utility".into(),
            "X=1".into(),
        ];
        let mut spec = json!({"process": {"env": ["PATH=/bin", "NVIDIA_VISIBLE_DEVICES=0:1", "NVIDIA_DRIVER_CAPABILITIES=utility"]}, "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}]});
        assert!(edit_spec(&mut spec, &p, run_hooks(true)).unwrap());
        assert!(!edit_spec(&mut spec, &p, run_hooks(true)).unwrap());
        assert_eq!(
            spec["mounts"][1],
            json!({"destination": "/usr/lib/x86_64-linux-gnu/libcuda.so.550.54.15", "type": "bind",
                   "source": "/usr/lib/x86_64-linux-gnu/libcuda.so.550.54.15", "options": ["bind", "ro", "nosuid", "nodev"]})
        );
        assert_eq!(spec["mounts"].as_array().unwrap().len(), 2);
        assert_eq!(
            spec["process"]["env"],
            json!([
                "PATH=/bin",
                "NVIDIA_VISIBLE_DEVICES=0:1",
                "NVIDIA_DRIVER_CAPABILITIES=compute,utility",
                "X=1"
            ]),
            "the request stays as written; other planned variables are set"
        );
        // Something else mounted on a driver file's path: refused, naming both.
        let mut spec = json!({"mounts": [{"destination": "/usr/lib/x86_64-linux-gnu/libcuda.so.550.54.15", "source": "/evil"}]});
        let e = edit_spec(&mut spec, &p, run_hooks(true)).unwrap_err();
        assert!(e.contains("mounts[0]") && e.contains("/evil"), "{e}");
    }

    #[test]
    fn default_config_adds_no_env_to_the_hook() {
        let h = HookCommand {
            migcage: "/usr/bin/migcage".into(),
            config: None,
        };
        assert_eq!(
            h.entry("createRuntime"),
            json!({"path": "/usr/bin/migcage", "args": ["migcage", "hook", "createRuntime"]})
        );
    }
}
