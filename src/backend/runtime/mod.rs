//! `migcage runtime`: the OCI runtime wrapper back end.
//!
//! Docker, containerd's runc shim, Podman and CRI-O run it in place of runc, with runc's command
//! line. On `create` and `run` it reads the bundle's config.json, plans it through
//! [`pipeline::plan_for_container`] (the same plan the hook and the CDI generator use), and
//! writes the edits into the spec itself:
//!
//! - `linux.devices` for the device nodes, which the runtime then makes;
//! - `linux.resources.devices` allow rules for exactly those nodes (runc 1.1 adds no rule for a
//!   `linux.devices` entry by itself: see [`crate::core::cgroup::rules`]). The runtime owns the rules:
//!   they are in its own cgroup configuration (runc's state), which runc hands to systemd as the
//!   scope's `DeviceAllow=` with the systemd driver, so a `daemon-reload` keeps them;
//! - the plan's mounts (driver files) and environment;
//! - a `createRuntime` hook running `migcage hook createRuntime` for what only works inside
//!   the container (the isolated `/proc/driver/nvidia` view, the driver libraries' links and ld
//!   cache). The hook is idempotent: it finds the nodes and rules the runtime made and leaves
//!   them. `createRuntime`, not `createContainer`: both runc and crun run it from the host, after
//!   the container's mounts and before `pivot_root`, with the init's host pid in the state,
//!   while crun runs `createContainer` hooks inside the container with pid 0 in the state, from
//!   which the hook cannot find the container;
//! - a `poststop` hook (`migcage hook poststop`), which releases the container's leases when the
//!   runtime deletes it.
//!
//! The spec is round-tripped through `serde_json::Value` (fields migcage does not know survive),
//! written atomically (a temporary file in the bundle, then rename), and marked with
//! [`EDITED_ANNOTATION`]; editing an edited spec adds nothing twice. Then the real runtime
//! ([`Config::runtime`]) replaces this process (`execve`), with every argument untouched, so
//! signals, stdio, the pid and the exit code are the runtime's own. Every other command passes
//! straight through.
//!
//! A planning error stops here: one line on stderr (and in the runtime's `--log` file, where
//! containerd and Docker read a failed runtime's reason), a non-zero exit, the spec untouched,
//! and the runtime never run.
//!
//! Leases (allocation by profile, exclusive named instances) are taken at `create` through
//! [`pipeline::plan_for_container`] under this process's pid, which the exec keeps for the
//! runtime; the container's `createRuntime` hook hands them to the container's init, and its
//! `poststop` hook releases them on `delete`. `delete` itself passes through untouched: releasing
//! before the runtime has deleted the container could hand its instance to another container
//! while it still runs.

use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use crate::host::files::write_atomically;
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use crate::backend::hook::state::MAX_CONFIG_BYTES;
use crate::backend::pipeline::{self, PipelineError};
use crate::config::{Config, ConfigError, DEFAULT_CONFIG_PATH};
use crate::core::cgroup::rules::{self, RulesError};
use crate::core::edits::{DeviceRule, DeviceType};
use crate::core::plan::Plan;

/// The annotation on a spec that migcage edited; its value lists the devices it gave.
pub const EDITED_ANNOTATION: &str = "migcage.io/edited";

/// Under this name (a symlink to migcage), the executable is `migcage runtime`: for runtime
/// configurations that take a binary and no arguments (containerd's `BinaryName`, Docker's
/// `path`, CRI-O's `runtime_path`).
pub const RUNTIME_ARGV0: &str = "migcage-runtime";

/// Where a runtime named without a path is looked for after `$PATH` (the shims of containerd and
/// Docker may run with a short PATH).
pub const FALLBACK_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Why `migcage runtime` stopped before running the real runtime. One line each.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("runtime {name:?} (config key 'runtime') was not found on PATH or in {FALLBACK_PATH}; install it or set 'runtime' to its absolute path")]
    NotFound { name: String },
    #[error("runtime {path}: {why}; set 'runtime' in migcage's config to runc or crun")]
    Unusable { path: PathBuf, why: String },
    #[error("cannot run the runtime {path}: {source}")]
    Exec {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read the container spec {path}: {source}; check the runtime's --bundle")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the container spec {path} is larger than {MAX_CONFIG_BYTES} bytes")]
    TooLarge { path: PathBuf },
    #[error("the container spec {path} is not valid JSON ({message}); fix the bundle")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: {source}")]
    Pipeline {
        path: PathBuf,
        source: Box<PipelineError>,
    },
    #[error("{path}: {message}")]
    Spec { path: PathBuf, message: String },
    #[error("cannot write the container spec {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What migcage needs of a runtime's command line. Everything else passes through untouched.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RuntimeArgs {
    /// The command (`create`, `run`, `state`, ...), when one was given.
    pub command: Option<String>,
    /// Global `--log FILE`: where runc writes its own errors, and where containerd and Docker
    /// read the reason of a failed command.
    pub log: Option<PathBuf>,
    /// Global `--log-format` (`text`, runc's default, or `json`).
    pub log_format: Option<String>,
    /// `--bundle`/`-b` of `create` and `run`; the current directory when absent.
    pub bundle: Option<PathBuf>,
    /// crun's `--config`/`-f` of `create` and `run`: the spec file, relative to the bundle.
    pub config_file: Option<PathBuf>,
    /// The first positional argument after the command (the container id).
    pub container_id: Option<OsString>,
    /// `--help`, `-h`, `--version` and the like: the runtime only prints.
    pub help: bool,
}

/// Global flags of runc 1.1 and crun that take a value (`--root X` or `--root=X`; Go's flag
/// package, which runc uses, also takes one dash).
const GLOBAL_VALUE_FLAGS: &[&str] = &[
    "log",
    "log-format",
    "log-level",
    "root",
    "criu",
    "rootless",
    "cgroup-manager",
];
/// Flags of `create` and `run` (runc and crun) that take a value.
const COMMAND_VALUE_FLAGS: &[&str] = &[
    "bundle",
    "b",
    "config",
    "f",
    "console-socket",
    "pid-file",
    "preserve-fds",
];
/// Short flags of `create`/`run` whose value crun's argp also takes attached (`-b/dir`).
const ATTACHED_SHORT_FLAGS: &[u8] = b"bf";
const HELP_FLAGS: &[&str] = &["help", "h", "?", "usage", "version", "v", "V"];

/// `-x`, `--name`, `-name=value`, `--name=value`: the name and the attached value.
fn split_flag(arg: &OsStr) -> Option<(&[u8], Option<&OsStr>)> {
    let b = arg.as_bytes();
    if b.len() < 2 || b[0] != b'-' {
        return None;
    }
    let body = b.strip_prefix(b"--").unwrap_or(&b[1..]);
    Some(match body.iter().position(|&c| c == b'=') {
        Some(i) => (&body[..i], Some(OsStr::from_bytes(&body[i + 1..]))),
        None => (body, None),
    })
}

fn is(name: &[u8], list: &[&str]) -> bool {
    list.iter().any(|n| n.as_bytes() == name)
}

impl RuntimeArgs {
    /// Parse a runtime command line (without the program name) the way runc and crun read it:
    /// global flags, the command, then the command's flags and arguments in any order (runc's
    /// CLI library and crun's argp both take flags after the container id).
    pub fn parse(args: &[OsString]) -> RuntimeArgs {
        let mut out = RuntimeArgs::default();
        let mut i = 0;
        while i < args.len() {
            let arg = &args[i];
            if arg.as_bytes() == b"--" {
                i += 1;
                break;
            }
            let Some((name, attached)) = split_flag(arg) else {
                break;
            };
            i += 1;
            if is(name, GLOBAL_VALUE_FLAGS) {
                let value = match attached {
                    Some(v) => Some(v.to_os_string()),
                    None => {
                        i += 1;
                        args.get(i - 1).cloned()
                    }
                };
                match name {
                    b"log" => out.log = value.map(PathBuf::from),
                    b"log-format" => out.log_format = value.map(|v| v.to_string_lossy().into()),
                    _ => {}
                }
            } else if is(name, HELP_FLAGS) {
                out.help = true;
            }
        }
        let Some(command) = args.get(i) else {
            return out;
        };
        out.command = Some(command.to_string_lossy().into_owned());
        let mut only_positional = false;
        let mut j = i + 1;
        while j < args.len() {
            let arg = &args[j];
            j += 1;
            if only_positional {
                out.container_id.get_or_insert_with(|| arg.clone());
                continue;
            }
            if arg.as_bytes() == b"--" {
                only_positional = true;
                continue;
            }
            let Some((name, attached)) = split_flag(arg) else {
                out.container_id.get_or_insert_with(|| arg.clone());
                continue;
            };
            let (name, value) = if is(name, COMMAND_VALUE_FLAGS) {
                let value = match attached {
                    Some(v) => Some(v.to_os_string()),
                    None => {
                        j += 1;
                        args.get(j - 1).cloned()
                    }
                };
                (name, value)
            } else if is(name, HELP_FLAGS) {
                out.help = true;
                continue;
            } else if arg.as_bytes()[1] != b'-'
                && !name.is_empty()
                && ATTACHED_SHORT_FLAGS.contains(&name[0])
                && attached.is_none()
            {
                // crun's argp: `-b/dir` is `-b` with the value attached.
                (
                    &name[..1],
                    Some(OsStr::from_bytes(&name[1..]).to_os_string()),
                )
            } else {
                continue;
            };
            match name {
                b"bundle" | b"b" => out.bundle = value.map(PathBuf::from),
                b"config" | b"f" => out.config_file = value.map(PathBuf::from),
                _ => {}
            }
        }
        out
    }

    /// True for the commands whose spec migcage edits: `create` and `run` with a container id,
    /// and not asking for help.
    pub fn edits_spec(&self) -> bool {
        matches!(self.command.as_deref(), Some("create" | "run"))
            && self.container_id.is_some()
            && !self.help
    }

    /// The bundle directory, resolved against `cwd` the way the runtime does (the current
    /// directory when no `--bundle` is given, or an empty one).
    pub fn bundle_dir(&self, cwd: &Path) -> PathBuf {
        match &self.bundle {
            Some(b) if !b.as_os_str().is_empty() => cwd.join(b),
            _ => cwd.to_path_buf(),
        }
    }

    /// The spec file the runtime will read: `config.json` in the bundle, or crun's `--config`.
    pub fn spec_path(&self, cwd: &Path) -> PathBuf {
        let bundle = self.bundle_dir(cwd);
        match &self.config_file {
            Some(f) if !f.as_os_str().is_empty() => bundle.join(f),
            _ => bundle.join("config.json"),
        }
    }
}

/// The hooks the wrapper adds: migcage itself, and its configuration file when it is not the
/// default one (hooks run with only the environment the spec gives them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookCommand {
    pub migcage: PathBuf,
    pub config: Option<PathBuf>,
}

/// The hook points the wrapper registers migcage at.
pub const HOOK_STAGES: [&str; 2] = ["createRuntime", "poststop"];

impl HookCommand {
    /// The hook entry for `stage`, as in `hooks.<stage>[]`.
    pub fn entry(&self, stage: &str) -> Value {
        let mut hook = json!({
            "path": self.migcage.display().to_string(),
            "args": ["migcage", "hook", stage],
        });
        if let Some(c) = &self.config {
            hook["env"] = json!([format!("{}={}", crate::config::CONFIG_ENV, c.display())]);
        }
        hook
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
/// already made every edit). Pure: the caller decides whether to write the result.
pub fn edit_spec(spec: &mut Value, plan: &Plan, hook: &HookCommand) -> Result<bool, String> {
    let before = spec.clone();
    if !spec.is_object() {
        return Err(format!("config.json: expected an object, found {spec}"));
    }
    let userns = crate::backend::hook::has_user_namespace(spec);

    // Device nodes. runc and crun make each entry with mknod, or, in a user namespace, by
    // bind-mounting the host file at the same path: an entry whose host node lives elsewhere
    // (a simulated host) is left to the hook, which bind-mounts from the host path.
    {
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
    }

    // cgroup rules, after the spec's own (a later rule wins), each once.
    {
        let present = rules::spec_rules(spec).map_err(|e: RulesError| e.to_string())?;
        let resources = object_at(spec, &["linux", "resources"])?;
        let list = array_in(resources, "devices", "linux.resources.devices")?;
        for rule in &plan.edits.device_rules {
            if !present.contains(rule) {
                list.push(rule_json(rule));
            }
        }
    }

    // Mounts (driver files), each destination once.
    if !plan.edits.mounts.is_empty() {
        let root = spec.as_object_mut().expect("checked above");
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
    }

    // Environment: each NAME set to the planned value, except the device list. The hook plans
    // again from this spec, so the request's own sources stay as the user wrote them: the plan's
    // `NVIDIA_VISIBLE_DEVICES=MIG-...` next to an annotation or mounts naming the same instance
    // as `0:6` would read as two sources naming different devices (the CDI generator leaves it
    // out for the same reason).
    let env_edits: Vec<&String> = plan
        .edits
        .env
        .iter()
        .filter(|kv| kv.split('=').next() != Some(crate::core::request::VISIBLE_DEVICES))
        .collect();
    if !env_edits.is_empty() {
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
    }

    // The hooks, each once.
    for stage in HOOK_STAGES {
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

    // The mark. Its value names the devices, for `runc state`'s annotations and for people.
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

    Ok(*spec != before)
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

/// What [`prepare`] did to a spec.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Prepared {
    pub spec: PathBuf,
    /// The devices the container was given (`0:1`), empty when it asked for none.
    pub devices: Vec<String>,
    /// Whether the file was rewritten.
    pub written: bool,
}

fn read_spec(path: &Path) -> Result<(Vec<u8>, Value), RuntimeError> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|source| RuntimeError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| RuntimeError::Read {
            path: path.to_path_buf(),
            source,
        })?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(RuntimeError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    let spec = serde_json::from_slice(&bytes).map_err(|e| RuntimeError::Parse {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    Ok((bytes, spec))
}

/// Plan the spec at `spec_path` (in bundle `bundle`) for container `container`, and write the
/// edits into it. Instances it gets are leased to the container under this process's pid. The
/// file is untouched when the container asks for nothing, when an earlier run already made every
/// edit, and on any error.
pub fn prepare(
    config: &Config,
    hook: &HookCommand,
    container: &str,
    bundle: &Path,
    spec_path: &Path,
) -> Result<Prepared, RuntimeError> {
    let (bytes, mut spec) = read_spec(spec_path)?;
    let mut out = Prepared {
        spec: spec_path.to_path_buf(),
        devices: Vec::new(),
        written: false,
    };
    let holder = crate::host::lease::Holder {
        container: container.to_string(),
        pid: i32::try_from(std::process::id()).ok(),
    };
    let (_request, plan) =
        pipeline::plan_for_container(config, &spec, &holder).map_err(|source| {
            RuntimeError::Pipeline {
                path: spec_path.to_path_buf(),
                source: Box::new(source),
            }
        })?;
    let Some(plan) = plan else {
        return Ok(out);
    };
    if plan.devices.is_empty() && plan.edits.is_empty() {
        return Ok(out);
    }
    out.devices = plan.devices.iter().map(|d| d.index.clone()).collect();
    // The hook reads the bundle's config.json (the bundle is all the OCI state names).
    if spec_path != bundle.join("config.json") {
        return Err(RuntimeError::Spec {
            path: spec_path.to_path_buf(),
            message: format!(
                "the container asks for {} but its spec is not the bundle's config.json, which migcage's hook reads; run it without --config/-f",
                out.devices.join(",")
            ),
        });
    }
    let changed = edit_spec(&mut spec, &plan, hook).map_err(|message| RuntimeError::Spec {
        path: spec_path.to_path_buf(),
        message,
    })?;
    if changed {
        // Keep the file's style: runc's `spec` writes indented JSON, containerd compact.
        let mut text = if bytes.contains(&b'\n') {
            serde_json::to_vec_pretty(&spec)
        } else {
            serde_json::to_vec(&spec)
        }
        .expect("a Value always serializes");
        if bytes.ends_with(b"\n") {
            text.push(b'\n');
        }
        write_atomically(spec_path, &text).map_err(|source| RuntimeError::Write {
            path: spec_path.to_path_buf(),
            source,
        })?;
        out.written = true;
    }
    Ok(out)
}

fn is_executable_file(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Find the runtime: an absolute or relative path as it is, a bare name on `path_env` and then
/// on [`FALLBACK_PATH`].
pub fn resolve_runtime(name: &Path, path_env: Option<&OsStr>) -> Option<PathBuf> {
    if name.as_os_str().as_bytes().contains(&b'/') {
        return is_executable_file(name).then(|| name.to_path_buf());
    }
    if name.as_os_str().is_empty() {
        return None;
    }
    let from_env = path_env.map(std::env::split_paths).into_iter().flatten();
    let fallback = std::env::split_paths(OsStr::new(FALLBACK_PATH));
    from_env
        .chain(fallback)
        .filter(|d| d.is_absolute())
        .map(|d| d.join(name))
        .find(|p| is_executable_file(p))
}

/// The time as RFC 3339 UTC with seconds (`2026-11-25T08:15:55Z`).
pub fn rfc3339_utc(t: std::time::SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Append `message` to the runtime's `--log` file in its format, as runc would log its own
/// error: containerd's shim and Docker show the last error there as the reason a create failed.
pub fn write_runtime_log(path: &Path, format: Option<&str>, message: &str) -> std::io::Result<()> {
    let time = rfc3339_utc(std::time::SystemTime::now());
    let line = if format == Some("json") {
        json!({"level": "error", "msg": message, "time": time}).to_string()
    } else {
        // logrus' text format, which runc writes by default.
        let quoted = serde_json::to_string(message).expect("a string serializes");
        format!("time=\"{time}\" level=error msg={quoted}")
    };
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    f.write_all(format!("{line}\n").as_bytes())
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

/// `migcage runtime ARGS...`: edit the spec on `create`/`run`, then become the real runtime.
/// Returns only on failure (on success the runtime has replaced this process).
pub fn run(explicit_config: Option<&Path>, args: &[OsString]) -> RuntimeError {
    let parsed = RuntimeArgs::parse(args);
    let err = match prepare_and_exec(explicit_config, args, &parsed) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    if let Some(log) = &parsed.log {
        // Best effort: the same line goes to stderr.
        let _ = write_runtime_log(
            log,
            parsed.log_format.as_deref(),
            &format!("migcage: {err}"),
        );
    }
    if parsed.edits_spec() {
        tracing::error!(error = %err, "runtime wrapper failed");
    }
    err
}

fn prepare_and_exec(
    explicit_config: Option<&Path>,
    args: &[OsString],
    parsed: &RuntimeArgs,
) -> Result<std::convert::Infallible, RuntimeError> {
    let (config, config_path) = Config::load(explicit_config)?;
    let runtime = resolve_runtime(&config.runtime, std::env::var_os("PATH").as_deref())
        .ok_or_else(|| RuntimeError::NotFound {
            name: config.runtime.display().to_string(),
        })?;
    let me = std::env::current_exe().map_err(|e| RuntimeError::Unusable {
        path: runtime.clone(),
        why: format!("cannot find migcage's own executable ({e})"),
    })?;
    if same_file(&runtime, &me) {
        return Err(RuntimeError::Unusable {
            path: runtime,
            why: "it is migcage itself, which would run itself forever".into(),
        });
    }
    if parsed.edits_spec() {
        crate::logging::init(&config.log);
        let cwd = std::env::current_dir().map_err(|source| RuntimeError::Read {
            path: PathBuf::from("."),
            source,
        })?;
        let bundle = parsed.bundle_dir(&cwd);
        let spec_path = parsed.spec_path(&cwd);
        let hook = HookCommand {
            migcage: me,
            config: config_path
                .filter(|p| p != Path::new(DEFAULT_CONFIG_PATH))
                .map(|p| std::path::absolute(&p).unwrap_or(p)),
        };
        let id = parsed
            .container_id
            .as_deref()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let prepared = prepare(&config, &hook, &id, &bundle, &spec_path)?;
        if !prepared.devices.is_empty() {
            tracing::info!(
                container = %id,
                spec = %prepared.spec.display(),
                devices = %prepared.devices.join(","),
                written = prepared.written,
                "runtime wrapper edited the spec"
            );
        }
    }
    use std::os::unix::process::CommandExt;
    let source = std::process::Command::new(&runtime)
        .arg0(config.runtime.as_os_str())
        .args(args)
        .exec();
    Err(RuntimeError::Exec {
        path: runtime,
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::edits::{Access, ContainerEdits, DeviceNode, Mount};
    use crate::core::plan::ResolvedDevice;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    fn parse(args: &[&str]) -> RuntimeArgs {
        RuntimeArgs::parse(&os(args))
    }

    #[test]
    fn global_flags_in_every_form() {
        for args in [
            &[
                "--root",
                "/run/r",
                "--log",
                "/l.json",
                "--log-format",
                "json",
                "--systemd-cgroup",
                "create",
                "--bundle",
                "/b",
                "id",
            ][..],
            &[
                "--root=/run/r",
                "--log=/l.json",
                "--log-format=json",
                "--systemd-cgroup",
                "create",
                "--bundle",
                "/b",
                "id",
            ],
            &[
                "-root",
                "/run/r",
                "-log",
                "/l.json",
                "-log-format",
                "json",
                "-systemd-cgroup",
                "create",
                "-bundle",
                "/b",
                "id",
            ],
            &[
                "-root=/run/r",
                "-log=/l.json",
                "-log-format=json",
                "--debug",
                "create",
                "-b",
                "/b",
                "id",
            ],
            &[
                "--debug=false",
                "--criu",
                "criu",
                "--rootless",
                "auto",
                "--log",
                "/l.json",
                "--log-format",
                "json",
                "create",
                "-b=/b",
                "id",
            ],
            &[
                "--cgroup-manager",
                "cgroupfs",
                "--log-level",
                "error",
                "--log=/l.json",
                "--log-format=json",
                "create",
                "--bundle=/b",
                "id",
            ],
        ] {
            let p = parse(args);
            assert_eq!(p.command.as_deref(), Some("create"), "{args:?}");
            assert_eq!(p.log.as_deref(), Some(Path::new("/l.json")), "{args:?}");
            assert_eq!(p.log_format.as_deref(), Some("json"), "{args:?}");
            assert_eq!(p.bundle.as_deref(), Some(Path::new("/b")), "{args:?}");
            assert_eq!(
                p.container_id.as_deref(),
                Some(OsStr::new("id")),
                "{args:?}"
            );
            assert!(p.edits_spec(), "{args:?}");
        }
    }

    #[test]
    fn a_global_value_flag_does_not_become_the_command() {
        // `--root run` names a directory called "run": the command is `state`.
        let p = parse(&["--root", "run", "state", "c1"]);
        assert_eq!(p.command.as_deref(), Some("state"));
        assert!(!p.edits_spec());
        let p = parse(&["--systemd-cgroup", "run", "c1"]);
        assert_eq!(p.command.as_deref(), Some("run"));
        assert!(p.edits_spec());
    }

    #[test]
    fn bundle_forms_and_positions() {
        let cwd = Path::new("/work");
        let cases: &[(&[&str], &str)] = &[
            (&["create", "--bundle", "/b", "id"], "/b"),
            (&["create", "--bundle=/b", "id"], "/b"),
            (&["create", "-b", "/b", "id"], "/b"),
            (&["create", "-b=/b", "id"], "/b"),
            (&["create", "-b/b", "id"], "/b"),
            (&["create", "-bundle", "/b", "id"], "/b"),
            // Flags after the id (runc's CLI library reorders; crun's argp permutes).
            (&["run", "id", "--bundle", "/b"], "/b"),
            (
                &[
                    "run",
                    "-d",
                    "--pid-file",
                    "/p",
                    "--console-socket",
                    "/s",
                    "-b",
                    "/b",
                    "id",
                ],
                "/b",
            ),
            // Relative to the current directory.
            (&["create", "--bundle", "rel/b", "id"], "/work/rel/b"),
            // None, or empty: the current directory.
            (&["create", "id"], "/work"),
            (&["create", "--bundle=", "id"], "/work"),
            (&["run", "--no-pivot", "--preserve-fds", "2", "id"], "/work"),
        ];
        for (args, want) in cases {
            let p = parse(args);
            assert_eq!(p.bundle_dir(cwd), Path::new(want), "{args:?}");
            assert_eq!(
                p.spec_path(cwd),
                Path::new(want).join("config.json"),
                "{args:?}"
            );
            assert_eq!(
                p.container_id.as_deref(),
                Some(OsStr::new("id")),
                "{args:?}"
            );
            assert!(p.edits_spec(), "{args:?}");
        }
        // Value flags never become the id.
        let p = parse(&[
            "create",
            "--pid-file",
            "pidfile",
            "--preserve-fds",
            "3",
            "real-id",
        ]);
        assert_eq!(p.container_id.as_deref(), Some(OsStr::new("real-id")));
        let p = parse(&["create", "--", "-odd-id"]);
        assert_eq!(p.container_id.as_deref(), Some(OsStr::new("-odd-id")));
    }

    #[test]
    fn crun_config_file_is_relative_to_the_bundle() {
        let cwd = Path::new("/work");
        let p = parse(&["create", "-b", "/b", "--config", "other.json", "id"]);
        assert_eq!(p.spec_path(cwd), Path::new("/b/other.json"));
        let p = parse(&["create", "-f", "/abs/c.json", "id"]);
        assert_eq!(p.spec_path(cwd), Path::new("/abs/c.json"));
    }

    #[test]
    fn other_commands_pass_through() {
        for args in [
            &["state", "c1"][..],
            &["--root", "/r", "start", "c1"],
            &["delete", "--force", "c1"],
            &["kill", "c1", "KILL"],
            &["exec", "--process", "/p.json", "c1"],
            &["update", "--memory", "1g", "c1"],
            &["list"],
            &["spec", "--bundle", "/b"],
            &["features"],
            &["--version"],
            &["-v"],
            &["--help"],
            &[],
            // create/run that only print, or lack an id: the runtime says what is wrong.
            &["create", "--help"],
            &["run", "-h", "id"],
            &["create", "--bundle", "/b"],
        ] {
            let p = parse(args);
            assert!(!p.edits_spec(), "{args:?} must pass through: {p:?}");
        }
        let p = parse(&["delete", "--force", "c1"]);
        assert_eq!(p.command.as_deref(), Some("delete"));
        assert_eq!(p.container_id.as_deref(), Some(OsStr::new("c1")));
    }

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
        assert!(edit_spec(&mut spec, &plan(), &hook()).unwrap());
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
    fn editing_twice_adds_nothing() {
        let mut spec = runc_spec();
        assert!(edit_spec(&mut spec, &plan(), &hook()).unwrap());
        let once = spec.clone();
        assert!(!edit_spec(&mut spec, &plan(), &hook()).unwrap());
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
        edit_spec(&mut spec, &plan(), &hook()).unwrap();
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
        let e = edit_spec(&mut spec, &plan(), &hook()).unwrap_err();
        assert!(
            e.contains("linux.devices[0]") && e.contains("c 195:3") && e.contains("c 195:0"),
            "{e}"
        );
        // The same node given already (docker --device): accepted, not duplicated.
        let mut spec = json!({"linux": {"devices": [{"path": "/dev/nvidia0", "type": "c", "major": 195, "minor": 0}]}});
        edit_spec(&mut spec, &plan(), &hook()).unwrap();
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
            let e = edit_spec(&mut s, &plan(), &hook()).unwrap_err();
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
        edit_spec(&mut spec, &p, &hook()).unwrap();
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
        edit_spec(&mut spec, &plan(), &hook()).unwrap();
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
        assert!(edit_spec(&mut spec, &p, &hook()).unwrap());
        assert!(!edit_spec(&mut spec, &p, &hook()).unwrap());
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
        let e = edit_spec(&mut spec, &p, &hook()).unwrap_err();
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

    fn write_spec(dir: &Path, text: &str) -> PathBuf {
        let p = dir.join("config.json");
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn a_planning_error_leaves_the_spec_byte_identical() {
        let d = tempfile::tempdir().unwrap();
        let text = "{\"ociVersion\": \"1.0.2\",\n \"process\": {\"env\": [\"NVIDIA_VISIBLE_DEVICES=0:1\"]}, \"root\": {\"path\": \"rootfs\"}}\n";
        let p = write_spec(d.path(), text);
        // No driver here: the inventory fails.
        let config = Config {
            proc_root: "/nonexistent".into(),
            state_dir: d.path().join("state"),
            ..Config::default()
        };
        let e = prepare(&config, &hook(), "c1", d.path(), &p).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains(&p.display().to_string()), "{msg}");
        assert!(!msg.contains('\n'), "{msg}");
        assert_eq!(std::fs::read_to_string(&p).unwrap(), text);
        // A request that does not parse: the same.
        let bad = text.replace("0:1", "0:x");
        std::fs::write(&p, &bad).unwrap();
        let e = prepare(&config, &hook(), "c1", d.path(), &p).unwrap_err();
        assert!(e.to_string().contains("NVIDIA_VISIBLE_DEVICES"), "{e}");
        assert_eq!(std::fs::read_to_string(&p).unwrap(), bad);
        // Nothing else was left in the bundle (no temporary file).
        let names: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n != "state")
            .collect();
        assert_eq!(names, ["config.json"]);
    }

    #[test]
    fn a_spec_asking_for_nothing_is_not_touched() {
        let d = tempfile::tempdir().unwrap();
        let text = "{\"process\":{\"env\":[\"PATH=/bin\"]},\"root\":{\"path\":\"rootfs\"}}";
        let p = write_spec(d.path(), text);
        let config = Config {
            proc_root: "/nonexistent".into(),
            ..Config::default()
        };
        let out = prepare(&config, &hook(), "c1", d.path(), &p).unwrap();
        assert!(!out.written && out.devices.is_empty());
        assert_eq!(std::fs::read_to_string(&p).unwrap(), text);
        // Broken JSON is an error naming the file.
        std::fs::write(&p, "{").unwrap();
        let e = prepare(&config, &hook(), "c1", d.path(), &p).unwrap_err();
        assert!(e.to_string().contains("not valid JSON"), "{e}");
    }

    #[test]
    fn atomic_write_keeps_mode_and_leaves_no_temporary_file() {
        let d = tempfile::tempdir().unwrap();
        let p = write_spec(d.path(), "{}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        write_atomically(&p, b"{\"a\":1}").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "{\"a\":1}");
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn runtime_lookup() {
        let d = tempfile::tempdir().unwrap();
        let rt = d.path().join("myrt");
        std::fs::write(&rt, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&rt, std::fs::Permissions::from_mode(0o755)).unwrap();
        let plain = d.path().join("plain");
        std::fs::write(&plain, "").unwrap();
        let path = std::env::join_paths([Path::new("/nonexistent"), d.path()]).unwrap();
        assert_eq!(
            resolve_runtime(Path::new("myrt"), Some(&path)),
            Some(rt.clone())
        );
        assert_eq!(resolve_runtime(&rt, None), Some(rt.clone()));
        // Not executable, missing, or empty: not a runtime.
        assert_eq!(resolve_runtime(Path::new("plain"), Some(&path)), None);
        assert_eq!(resolve_runtime(&d.path().join("nope"), None), None);
        assert_eq!(resolve_runtime(Path::new(""), Some(&path)), None);
        // A relative PATH entry is never searched.
        assert_eq!(
            resolve_runtime(Path::new("myrt"), Some(OsStr::new("."))),
            None
        );
    }

    #[test]
    fn runtime_log_lines_in_both_formats() {
        let d = tempfile::tempdir().unwrap();
        let json_log = d.path().join("log.json");
        write_runtime_log(&json_log, Some("json"), "migcage: \"x\" failed").unwrap();
        let line: Value =
            serde_json::from_str(std::fs::read_to_string(&json_log).unwrap().trim()).unwrap();
        assert_eq!(line["level"], "error");
        assert_eq!(line["msg"], "migcage: \"x\" failed");
        assert!(line["time"].as_str().unwrap().ends_with('Z'));
        let text_log = d.path().join("log");
        write_runtime_log(&text_log, None, "migcage: \"x\" failed").unwrap();
        let text = std::fs::read_to_string(&text_log).unwrap();
        assert!(
            text.starts_with("time=\"")
                && text.contains(" level=error msg=\"migcage: \\\"x\\\" failed\"\n"),
            "{text}"
        );
    }
}
