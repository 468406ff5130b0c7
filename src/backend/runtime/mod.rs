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
//! - the mark [`EDITED_ANNOTATION`]; editing an edited spec adds nothing twice.
//!
//! What only works inside the container (the isolated `/proc/driver/nvidia` view, the driver
//! libraries' links and ld cache) and the leases' hand-over to the container's init are done
//! one of two ways:
//!
//! - **`create`** (what every engine sends): by the wrapper itself, with no hook in the spec
//!   ([`lifecycle`]): links and ld cache through the rootfs before the runtime's `create`, which
//!   runs as the wrapper's child; then the procfs view inside the container and the hand-over.
//!   A `delete` through the wrapper releases the leases. One migcage process per command, and
//!   none forked by the runtime. (On a kernel without the mount API, Linux 5.12, `create` gets
//!   the hooks below.)
//! - **`run`** (the runtime goes from create to start in one process, leaving no moment in
//!   between): a `createRuntime` hook running `migcage hook createRuntime`, idempotent (it finds
//!   the nodes and rules the runtime made and leaves them); `createRuntime`, not
//!   `createContainer`: both runc and crun run it from the host, after the container's mounts and
//!   before `pivot_root`, with the init's host pid in the state, while crun runs
//!   `createContainer` hooks inside the container with pid 0 in the state. And a `poststop` hook
//!   (`migcage hook poststop`) releasing the leases, only for a container that holds some.
//!
//! The spec is round-tripped through `serde_json::Value` (fields migcage does not know survive)
//! and written atomically (a temporary file in the bundle, then rename). For `run` the real
//! runtime ([`Config::runtime`]) then replaces this process (`execve`), with every argument
//! untouched, so signals, stdio, the pid and the exit code are the runtime's own. Every other
//! command passes straight through (`delete` of a container with leases: see [`lifecycle`]).
//!
//! A planning error stops here: one line on stderr (and in the runtime's `--log` file, where
//! containerd and Docker read a failed runtime's reason), a non-zero exit, the spec untouched,
//! the leases given back, and the runtime never run.
//!
//! Leases (allocation by profile, exclusive named instances) are taken at `create` through
//! [`pipeline::plan_for_container`] under this process's pid; the wrapper (or, for `run`, the
//! `createRuntime` hook) hands them to the container's init. Releasing before the runtime has
//! deleted the container could hand its instance to another container while it still runs.
//!
//! The parts: [`args`] reads the runtime's command line, [`edit`] writes the plan into the spec,
//! [`lifecycle`] does `create` and `delete` around the runtime, [`log`] writes the runtime's
//! `--log` line; this file prepares the spec and runs the runtime.

pub mod args;
pub mod edit;
pub mod lifecycle;
pub mod log;

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::backend::pipeline::{self, PipelineError};
use crate::backend::spec::{self, SpecError, MAX_CONFIG_BYTES};
use crate::config::{Config, ConfigError, DEFAULT_CONFIG_PATH};
use crate::host::files::AtomicWrite;

pub use args::RuntimeArgs;
pub use edit::{edit_spec, HookCommand, SpecHooks, EDITED_ANNOTATION, HOOK_STAGES};
pub use log::{rfc3339_utc, write_runtime_log};

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

/// What [`prepare`] did to a spec.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Prepared {
    pub spec: PathBuf,
    /// The devices the container was given (`0:1`), empty when it asked for none.
    pub devices: Vec<String>,
    /// Whether the file was rewritten.
    pub written: bool,
    /// For `create`: what the wrapper does around the runtime's create (no hook in the spec).
    #[serde(skip)]
    pub after_create: Option<lifecycle::AfterCreate>,
}

/// How the edited spec's container gets what only works inside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// migcage's `createRuntime` hook (and `poststop` for leases): `run`.
    Hooks,
    /// The wrapper itself, around the runtime's `create` ([`lifecycle`]).
    Wrapper,
}

/// Read the spec through the one reader ([`crate::backend::spec`]), in the wrapper's words.
fn read_spec(path: &Path) -> Result<spec::ConfigJson, RuntimeError> {
    spec::read(path).map_err(|e| match e {
        SpecError::Read { path, source } => RuntimeError::Read { path, source },
        SpecError::TooLarge { path } => RuntimeError::TooLarge { path },
        SpecError::Parse { path, message } => RuntimeError::Parse { path, message },
    })
}

/// Plan the spec at `spec_path` (in bundle `bundle`) for container `container`, and write the
/// edits into it. Instances it gets are leased to the container under this process's pid. The
/// file is untouched when the container asks for nothing, when an earlier run already made every
/// edit, and on any error (which also gives back what was leased).
pub fn prepare(
    config: &Config,
    hook: &HookCommand,
    container: &str,
    bundle: &Path,
    spec_path: &Path,
    finish: Finish,
) -> Result<Prepared, RuntimeError> {
    let out = prepare_leased(config, hook, container, bundle, spec_path, finish);
    if out.is_err() {
        let _ = pipeline::release_container(config, container);
    }
    out
}

/// Write the edited `spec` over `spec_path` (whose old text is `old`), in the old text's style.
fn write_spec(spec_path: &Path, spec: &serde_json::Value, old: &[u8]) -> Result<(), RuntimeError> {
    // Keep the file's style: runc's `spec` writes indented JSON, containerd compact.
    let mut text = if old.contains(&b'\n') {
        serde_json::to_vec_pretty(spec)
    } else {
        serde_json::to_vec(spec)
    }
    .expect("a Value always serializes");
    if old.ends_with(b"\n") {
        text.push(b'\n');
    }
    // In place where config.json is a plain file: the bundle is the runtime's scratch
    // space, read once by the runtime this process starts, and a crash loses the
    // container with it. A rename (a new inode, the old one freed, and on ext4 the data
    // written out at once) cost about 170 us more per container on a disk-backed bundle
    // (Podman keeps its bundles under /var/lib), an fsync 1.4 ms. A symlink or a file
    // with other names is replaced by a rename, never written through.
    let written = match crate::host::files::rewrite_in_place(spec_path, &text) {
        Ok(true) => Ok(()),
        Ok(false) => AtomicWrite {
            durable: false,
            ..AtomicWrite::default()
        }
        .write(spec_path, &text),
        Err(e) => Err(e),
    };
    written.map_err(|source| RuntimeError::Write {
        path: spec_path.to_path_buf(),
        source,
    })
}

fn prepare_leased(
    config: &Config,
    hook: &HookCommand,
    container: &str,
    bundle: &Path,
    spec_path: &Path,
    finish: Finish,
) -> Result<Prepared, RuntimeError> {
    let spec::ConfigJson {
        bytes,
        value: mut spec,
    } = read_spec(spec_path)?;
    crate::profile::mark("config.json");
    let mut out = Prepared {
        spec: spec_path.to_path_buf(),
        devices: Vec::new(),
        written: false,
        after_create: None,
    };
    let holder = crate::host::lease::Holder {
        container: container.to_string(),
        pid: i32::try_from(std::process::id()).ok(),
    };
    let (request, plan) =
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
    let leases = crate::core::plan::allocate::needs_leases(request.selectors());
    let hooks = match finish {
        Finish::Hooks => SpecHooks::Runtime { hook, leases },
        Finish::Wrapper => SpecHooks::None,
    };
    let spec_error = |message: String| RuntimeError::Spec {
        path: spec_path.to_path_buf(),
        message,
    };
    let changed = edit_spec(&mut spec, &plan, hooks).map_err(spec_error)?;
    crate::profile::mark("edit");
    if finish == Finish::Wrapper {
        out.after_create =
            Some(after_create(config, container, bundle, &spec, &plan).map_err(spec_error)?);
        crate::profile::mark("container-prep");
    }
    // runc's systemd cgroup driver gives systemd DeviceAllow= only for the devices it finds under
    // /dev/char: make the missing links of these nodes (the host's real /dev only; a simulated
    // dev_root's nodes are no business of the host's /dev/char). Warnings only.
    if config.dev_root == Path::new("/dev") {
        crate::host::dev_char::link_granted(&config.host.dev_char_dir, &plan.edits.device_nodes);
    }
    if changed {
        write_spec(spec_path, &spec, &bytes)?;
        out.written = true;
    }
    crate::profile::mark("write");
    Ok(out)
}

/// What the wrapper does around `create` for `plan`, from the edited `spec`. The rootfs is
/// checked as the hook checks a container's: the wrapper writes into it from the host.
fn after_create(
    config: &Config,
    container: &str,
    bundle: &Path,
    spec: &serde_json::Value,
    plan: &crate::core::plan::Plan,
) -> Result<lifecycle::AfterCreate, String> {
    use crate::backend::hook;
    hook::state::check_rootfs(bundle, spec).map_err(|e| e.to_string())?;
    let mut work = hook::container_work(config, bundle, spec, plan).map_err(|e| e.to_string())?;
    // A rootless engine runs the wrapper in its user namespace: no `mknod` there either.
    work.bind_nodes |= crate::host::userns::current(Path::new(hook::PROCESS_PROC)).is_child();
    let rootfs = work.rootfs.clone();
    let (host, ns) = lifecycle::split_work(work, spec, rootfs);
    Ok(lifecycle::AfterCreate {
        container: container.to_string(),
        host,
        ns,
        rules: plan.edits.device_rules.clone(),
    })
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

fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

/// `migcage runtime ARGS...`: edit the spec on `create`/`run`, then become the real runtime,
/// or, for `create` and for `delete` of a container with leases, run it to its end. Returns the
/// exit code when this process ran the runtime itself (else the runtime has replaced it), or
/// what stopped it.
pub fn run(explicit_config: Option<&Path>, args: &[OsString]) -> Result<u8, RuntimeError> {
    let start = std::time::Instant::now();
    let parsed = RuntimeArgs::parse(args);
    let err = match prepare_and_exec(explicit_config, args, &parsed) {
        Ok(code) => return Ok(code),
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
        log::log_failure(explicit_config, &parsed, &err, start);
    }
    Err(err)
}

fn prepare_and_exec(
    explicit_config: Option<&Path>,
    args: &[OsString],
    parsed: &RuntimeArgs,
) -> Result<u8, RuntimeError> {
    let (config, config_path) = Config::load(explicit_config)?;
    crate::profile::mark("config");
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
    let rt = lifecycle::Runtime {
        path: &runtime,
        arg0: config.runtime.as_os_str(),
    };
    crate::profile::mark("runtime-lookup");
    if parsed.edits_spec() {
        crate::logging::init(&config.log);
        crate::profile::mark("logging");
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
        // `create` without a hook needs the mount API (Linux 5.12) to work inside a container
        // whose root is already its own; an older kernel gets the hooks, as `run` does.
        let finish = match parsed.command.as_deref() {
            Some("create") if crate::sys::rootfs::mount_api_available() => Finish::Wrapper,
            _ => Finish::Hooks,
        };
        let prepared = prepare(&config, &hook, &id, &bundle, &spec_path, finish)?;
        if !prepared.devices.is_empty() {
            tracing::info!(
                container = %id,
                spec = %prepared.spec.display(),
                devices = %prepared.devices.join(","),
                written = prepared.written,
                "runtime wrapper edited the spec"
            );
        }
        crate::profile::mark("log-record");
        if let Some(after) = &prepared.after_create {
            let code = lifecycle::create(&config, &rt, args, parsed, &bundle, after);
            crate::profile::finish();
            return code;
        }
    } else if let Some(id) = parsed
        .container()
        .filter(|_| parsed.command.as_deref() == Some("delete"))
    {
        if let Some(code) = lifecycle::delete(&config, &rt, args, &id) {
            return code;
        }
    }
    // The profile line, if one was asked for, is written before the runtime replaces this
    // process (the stages end at the exec).
    crate::profile::finish();
    let source = crate::sys::exec::exec(&runtime, config.runtime.as_os_str(), args);
    Err(RuntimeError::Exec {
        path: runtime,
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook() -> HookCommand {
        HookCommand {
            migcage: "/usr/bin/migcage".into(),
            config: Some("/etc/sim/config.toml".into()),
        }
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
        let e = prepare(&config, &hook(), "c1", d.path(), &p, Finish::Hooks).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains(&p.display().to_string()), "{msg}");
        assert!(!msg.contains('\n'), "{msg}");
        assert_eq!(std::fs::read_to_string(&p).unwrap(), text);
        // A request that does not parse: the same.
        let bad = text.replace("0:1", "0:x");
        std::fs::write(&p, &bad).unwrap();
        let e = prepare(&config, &hook(), "c1", d.path(), &p, Finish::Hooks).unwrap_err();
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
        let out = prepare(&config, &hook(), "c1", d.path(), &p, Finish::Wrapper).unwrap();
        assert!(!out.written && out.devices.is_empty());
        assert_eq!(std::fs::read_to_string(&p).unwrap(), text);
        // Broken JSON is an error naming the file.
        std::fs::write(&p, "{").unwrap();
        let e = prepare(&config, &hook(), "c1", d.path(), &p, Finish::Hooks).unwrap_err();
        assert!(e.to_string().contains("not valid JSON"), "{e}");
        // So is a spec that is not an object (the hook would refuse it too).
        std::fs::write(&p, "[1]").unwrap();
        let e = prepare(&config, &hook(), "c1", d.path(), &p, Finish::Hooks).unwrap_err();
        assert!(e.to_string().contains("not an object"), "{e}");
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "[1]");
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
}
