//! `migcage hook`: the OCI hook back end.
//!
//! Reads the container state on stdin and the bundle's config.json, parses the request, resolves
//! it against the host, then makes the planned device nodes and the isolated driver procfs inside
//! the container (in its mount namespace) and grants exactly those nodes in its cgroup. Everything
//! it changes lives in the container's mount namespace and cgroup, which the runtime removes with
//! the container: nothing is left on the host, also when a step fails.

pub mod cgroup;
pub mod container;
pub mod entry;
pub mod host_objects;
pub mod state;
pub mod systemd;

use std::io::Read;
use std::path::Path;
use std::time::Instant;

use serde::Serialize;

use crate::backend::pipeline;
use crate::config::Config;
use crate::core::plan::Plan;
use crate::core::request::Request;
use crate::host::cgroup::DeviceCgroup;
use container::{ContainerWork, ProcView};
use state::State;

/// Where the runtime runs the hook. They all behave the same: runc and crun run each of them
/// after the container's mounts exist and before pivot_root, with the container's process alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "camelCase")]
pub enum Stage {
    #[value(name = "prestart")]
    Prestart,
    #[value(name = "createRuntime")]
    CreateRuntime,
    #[value(name = "createContainer")]
    CreateContainer,
    /// After the container is gone (`runc delete`): releases the container's leases. Nothing else
    /// to undo: all other state died with the container.
    #[value(name = "poststop")]
    Poststop,
}

/// Process information (`/proc/<pid>/...`) always comes from the real procfs, also on a simulated
/// host: `proc_root` only redirects the driver's files.
pub const PROCESS_PROC: &str = "/proc";

/// Why the hook failed. Each is one line; the runtime shows it to the user.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error(transparent)]
    State(#[from] state::StateError),
    #[error(transparent)]
    Pipeline(#[from] pipeline::PipelineError),
    #[error("config.json bind-mounts {host_dir} on the container's /dev, where migcage creates device nodes (they would land on the host): let the runtime mount a tmpfs on /dev")]
    DevBind { host_dir: String },
    #[error("bundle {bundle}: config.json has no root.path; the runtime wrote a broken bundle")]
    NoRootfs { bundle: String },
    #[error("container {id}: {message}")]
    Container { id: String, message: String },
    #[error("container {id}: {source}")]
    Cgroup {
        id: String,
        source: cgroup::CgroupError,
    },
}

/// What the hook did, for the log and for tests.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub container: String,
    pub stage: Stage,
    /// None when nothing was asked for (the container was left untouched).
    pub request: Option<Request>,
    pub plan: Option<Plan>,
    pub nodes_created: usize,
    pub proc_view: bool,
    pub cgroup: Option<String>,
    /// Poststop: the MIG instances whose leases it released.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub released: Vec<String>,
    /// Everything done inside the container (nodes, procfs, driver mounts, symlinks, ld cache).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applied: Option<container::Applied>,
    /// What systemd was told (`DeviceAllow=` on the container's unit), when devices were granted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub systemd: Option<String>,
    /// `/dev/char` links the hook made for the granted nodes.
    #[serde(skip_serializing_if = "is_zero")]
    pub dev_char_links: usize,
    pub duration_us: u128,
}

impl Outcome {
    /// The outcome of a hook that has done nothing yet for `container` at `stage`.
    pub fn nothing_yet(container: &str, stage: Stage) -> Outcome {
        Outcome {
            container: container.to_string(),
            stage,
            request: None,
            plan: None,
            nodes_created: 0,
            proc_view: false,
            cgroup: None,
            released: Vec::new(),
            applied: None,
            systemd: None,
            dev_char_links: 0,
            duration_us: 0,
        }
    }
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Does the spec give the container its own user namespace? (The one reading, which also decides
/// privilege.)
pub use crate::core::request::has_user_namespace;

/// The source of a spec mount that binds a host directory on the container's /dev, where
/// migcage creates device nodes: it would create them on the host.
pub fn dev_bind_source(spec: &serde_json::Value) -> Option<String> {
    let mounts = spec.get("mounts")?.as_array()?;
    mounts.iter().find_map(|m| {
        let dest = m.get("destination")?.as_str()?.trim_end_matches('/');
        let bind = m.get("type").and_then(|t| t.as_str()) == Some("bind")
            || m.get("options")
                .and_then(|o| o.as_array())
                .is_some_and(|o| {
                    o.iter()
                        .any(|x| matches!(x.as_str(), Some("bind" | "rbind")))
                });
        (dest == "/dev" && bind).then(|| {
            m.get("source")
                .and_then(|s| s.as_str())
                .unwrap_or("?")
                .to_string()
        })
    })
}

/// What the hook would do inside the container for `plan`.
pub fn container_work(
    config: &Config,
    bundle: &Path,
    spec: &serde_json::Value,
    plan: &Plan,
) -> Result<ContainerWork, HookError> {
    let rootfs = state::rootfs_path(bundle, spec).ok_or_else(|| HookError::NoRootfs {
        bundle: bundle.display().to_string(),
    })?;
    if let Some(source) = dev_bind_source(spec) {
        return Err(HookError::DevBind { host_dir: source });
    }
    Ok(ContainerWork {
        rootfs,
        nodes: plan.edits.device_nodes.clone(),
        bind_nodes: has_user_namespace(spec),
        proc_view: (!plan.devices.is_empty()).then(|| ProcView {
            host_dir: config.proc_path("driver/nvidia"),
            gpus: plan.proc_gpus.clone(),
            caps: plan.proc_caps.clone(),
        }),
        mounts: plan.edits.mounts.clone(),
        symlinks: plan.edits.symlinks.clone(),
        ld_cache: plan.edits.ld_cache.clone(),
    })
}

/// The container's init process as this process's procfs names it.
///
/// runc runs createContainer hooks from the container's init itself (in the container's pid and
/// mount namespaces, before pivot_root), and then the state's pid is the init's pid inside the
/// container's pid namespace, meaningless in /proc. The hook is then a child of that init, in
/// its mount namespace and cgroup: it works on itself. A runtime that runs the hook from outside
/// (prestart, createRuntime) passes the init's pid as the host sees it.
fn container_pid(stage: Stage, state: &State) -> Result<i32, HookError> {
    if !runs_inside_container(stage, state) {
        return Ok(state.require_pid()?);
    }
    let me = std::fs::read_link(format!("{PROCESS_PROC}/self"))
        .ok()
        .and_then(|p| p.to_str().and_then(|s| s.parse::<i32>().ok()));
    match me {
        Some(me) => Ok(me),
        None => Ok(state.require_pid()?),
    }
}

/// The host pid of the container's init, which holds the container's leases (see
/// [`container_pid`]): the state's pid, except in runc's createContainer hook, where the hook is
/// the init's child and the init's host pid is its parent's as procfs (the host's) names it.
fn init_host_pid(stage: Stage, state: &State) -> Option<i32> {
    if runs_inside_container(stage, state) {
        if let Ok(Some(me)) = crate::host::lease::read_stat(Path::new(PROCESS_PROC), "self") {
            return Some(me.ppid);
        }
    }
    state.pid.map(|p| p as i32)
}

/// Is this hook run by the container's init itself? runc does that for createContainer and
/// passes the init's pid in its own pid namespace (our parent's, as getppid() sees it there);
/// crun does it too and passes pid 0 (no pid).
fn runs_inside_container(stage: Stage, state: &State) -> bool {
    stage == Stage::CreateContainer
        && state
            .pid
            .is_none_or(|pid| i64::from(nix::unistd::getppid().as_raw()) == pid)
}

/// Make the plan real: the work inside the container, then the cgroup grant (in `found`, the
/// device cgroup [`refuse_forged`] found, when it found it).
fn apply_plan(
    config: &Config,
    stage: Stage,
    state: &State,
    spec: &serde_json::Value,
    plan: &Plan,
    found: Option<DeviceCgroup>,
    outcome: &mut Outcome,
) -> Result<(), HookError> {
    let e = &plan.edits;
    let in_container = !e.device_nodes.is_empty()
        || !e.mounts.is_empty()
        || !e.symlinks.is_empty()
        || !e.ld_cache.is_empty();
    if in_container {
        let pid = container_pid(stage, state)?;
        let mut work = container_work(config, &state.bundle, spec, plan)?;
        // A rootless engine runs the hook in its user namespace: no `mknod` there either.
        let userns = crate::host::userns::current(Path::new(PROCESS_PROC));
        work.bind_nodes |= userns.is_child();
        crate::profile::mark("container-prep");
        let id = state.id.clone();
        if work.bind_nodes && !runs_inside_container(stage, state) {
            crate::sys::host_nodes::ensure_host_nodes(&work.nodes).map_err(|message| {
                HookError::Container {
                    id: id.clone(),
                    message,
                }
            })?;
        }
        let hook_pid = std::process::id();
        let applied = crate::sys::nsenter::in_mount_namespace(pid, || {
            crate::faultpoint::hit_in_helper("ns-before-nodes", hook_pid);
            let applied = container::apply(&work);
            crate::faultpoint::hit_in_helper("ns-after-nodes", hook_pid);
            applied
        })
        .map_err(|e| HookError::Container {
            id: id.clone(),
            message: e.to_string(),
        })?;
        crate::profile::mark("container");
        outcome.nodes_created = applied.nodes_created;
        outcome.proc_view = applied.proc_view;
        outcome.applied = Some(applied);
        // `none` (driver files only) has no device to grant. A rootless container has no
        // device cgroup (its runtime could not make one either): what is mounted in it is all
        // it can reach, and systemd's user manager holds no device policy to keep.
        if let crate::host::userns::UserNamespace::Child { host_uid } = userns {
            if !plan.edits.device_rules.is_empty() {
                outcome.cgroup = Some(rootless_cgroup_line(host_uid));
            }
        } else if !plan.edits.device_rules.is_empty() {
            crate::faultpoint::hit("before-cgroup");
            if crate::core::cgroup::rules::spec_grants(spec, &plan.edits.device_rules) {
                // The spec gives these rules itself (`migcage runtime` wrote them): the runtime
                // applied them, and a grant would only rebuild what is there (on v2, load and
                // swap in an equal program). What a daemon-reload keeps is still seen to below.
                outcome.cgroup = Some(SPEC_GRANTS.to_string());
            } else {
                // Without a stated version (`host.runtime_versions`), each runtime gets what
                // all its versions add.
                let runtime = crate::host::runtime::detect_parent(&config.host.stated_runtimes());
                let rules = &plan.edits.device_rules;
                let granted = match found {
                    Some(found) => cgroup::grant_devices_at(found, spec, runtime, rules),
                    None => cgroup::grant_devices(
                        Path::new(PROCESS_PROC),
                        pid as u32,
                        spec,
                        runtime,
                        rules,
                    ),
                }
                .map_err(|source| HookError::Cgroup { id, source })?;
                outcome.cgroup = Some(granted.to_string());
            }
            crate::profile::mark("cgroup");
            crate::faultpoint::hit("after-cgroup");
            let units = systemd::system_bus(&config.host);
            let host = systemd::SystemdHost {
                running: systemd::running(),
                units: &units,
            };
            let process = ProcessRef {
                proc_root: Path::new(PROCESS_PROC),
                pid: pid as u32,
            };
            after_grant(config, stage, state, &process, plan, &host, outcome);
            crate::profile::mark("systemd");
        }
    }
    Ok(())
}

/// What the outcome says of the cgroup when config.json's own rules already grant the nodes.
pub const SPEC_GRANTS: &str = "granted by the runtime from config.json (linux.resources.devices)";

/// What the outcome says of the cgroup of a rootless container (the hook in a user namespace
/// whose root is `host_uid` on the host).
fn rootless_cgroup_line(host_uid: u32) -> String {
    format!("none: rootless (migcage runs in a user namespace, host uid {host_uid}): no device cgroup exists; the container reaches only the nodes mounted in it")
}

/// After the cgroup grant, so that it survives `systemctl daemon-reload`: the granted nodes'
/// `/dev/char` links (on the host, only from a stage that runs outside the container and only
/// for the host's real /dev: a simulated dev_root's nodes are no business of the host's
/// /dev/char), and the nodes' `DeviceAllow=` on the container's systemd unit. Neither fails the
/// hook (see [`systemd`]).
fn after_grant(
    config: &Config,
    stage: Stage,
    state: &State,
    process: &ProcessRef,
    plan: &Plan,
    systemd_host: &systemd::SystemdHost,
    outcome: &mut Outcome,
) {
    if config.dev_root == Path::new("/dev") && !runs_inside_container(stage, state) {
        outcome.dev_char_links = crate::host::dev_char::link_granted(
            &config.host.dev_char_dir,
            &plan.edits.device_nodes,
        );
    }
    let registration = systemd::register_logged(
        systemd_host,
        process.proc_root,
        process.pid,
        &plan.edits.device_rules,
    );
    outcome.systemd = Some(registration.to_string());
}

/// The container's init as a procfs names it.
struct ProcessRef<'a> {
    proc_root: &'a Path,
    pid: u32,
}

/// Refuse, before anything is touched or leased, what no runtime sends for a container that asks
/// for a device: a rootfs that is the host's `/`, or (from a stage that runs outside the
/// container) a pid in the hook's own mount namespace or in the root device cgroup. A container
/// that asks for nothing is left alone whatever its state says: the hook does nothing for it.
///
/// `Ok` holds the container's device cgroup when the check found it, for the grant.
fn refuse_forged(
    config: &Config,
    stage: Stage,
    state: &State,
    spec: &serde_json::Value,
) -> Result<Option<DeviceCgroup>, HookError> {
    let asks_nothing =
        crate::core::request::parse(spec, &config.requests).is_ok_and(|r| r.is_noop());
    if asks_nothing {
        return Ok(None);
    }
    state::check_rootfs(&state.bundle, spec)?;
    // Without a pid there is nothing to check; the work that needs one asks for it.
    match state.pid {
        Some(pid) if !runs_inside_container(stage, state) => {
            Ok(state::check_process(Path::new(PROCESS_PROC), pid as i32)?)
        }
        _ => Ok(None),
    }
}

/// Run the hook for `stage` with the state on `input`.
pub fn run(config: &Config, stage: Stage, input: impl Read) -> Result<Outcome, HookError> {
    let start = Instant::now();
    let state = State::read(input)?;
    crate::profile::mark("state");
    let mut outcome = Outcome::nothing_yet(&state.id, stage);
    if stage == Stage::Poststop {
        outcome.released = pipeline::release_container(config, &state.id)?
            .into_iter()
            .map(|l| l.uuid)
            .collect();
        outcome.duration_us = start.elapsed().as_micros();
        return Ok(outcome);
    }
    let spec = state::read_config(&state.bundle)?;
    crate::profile::mark("config.json");
    crate::faultpoint::hit("after-parse");
    let found = refuse_forged(config, stage, &state, &spec)?;
    crate::profile::mark("forged-checks");
    let holder = crate::host::lease::Holder {
        container: state.id.clone(),
        pid: init_host_pid(stage, &state),
    };
    let (request, plan) = pipeline::plan_for_container(config, &spec, &holder)?;
    crate::faultpoint::hit("after-inventory");
    outcome.request = Some(request);
    let Some(plan) = plan else {
        outcome.duration_us = start.elapsed().as_micros();
        return Ok(outcome);
    };
    // From here on the container may hold leases: a failure gives them back at once (the
    // container will not start), instead of leaving them to be found stale later.
    if let Err(e) = apply_plan(config, stage, &state, &spec, &plan, found, &mut outcome) {
        let _ = pipeline::release_container(config, &state.id);
        return Err(e);
    }
    outcome.plan = Some(plan);
    outcome.duration_us = start.elapsed().as_micros();
    crate::faultpoint::hit("done");
    Ok(outcome)
}

#[cfg(test)]
mod tests;
