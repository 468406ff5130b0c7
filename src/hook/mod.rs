//! `migcage hook`: the OCI hook back end.
//!
//! Reads the container state on stdin and the bundle's config.json, parses the request, resolves
//! it against the host, then makes the planned device nodes and the isolated driver procfs inside
//! the container (in its mount namespace) and grants exactly those nodes in its cgroup. Everything
//! it changes lives in the container's mount namespace and cgroup, which the runtime removes with
//! the container: nothing is left on the host, also when a step fails.

pub mod container;
pub mod nsenter;
pub mod state;

use std::io::Read;
use std::path::Path;
use std::time::Instant;

use serde::Serialize;

use crate::cgroup;
use crate::config::Config;
use crate::pipeline;
use crate::plan::Plan;
use crate::request::Request;
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
    /// After the container is gone: nothing to undo (all state died with the container).
    #[value(name = "poststop")]
    Poststop,
}

/// Process information (/proc/<pid>/...) always comes from the real procfs, also on a simulated
/// host: `proc_root` only redirects the driver's files.
pub const PROCESS_PROC: &str = "/proc";

/// Why the hook failed. Each is one line; the runtime shows it to the user.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error(transparent)]
    State(#[from] state::StateError),
    #[error(transparent)]
    Pipeline(#[from] pipeline::PipelineError),
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
    pub duration_us: u128,
}

/// Does the spec give the container its own user namespace?
pub fn has_user_namespace(spec: &serde_json::Value) -> bool {
    spec.pointer("/linux/namespaces")
        .and_then(|n| n.as_array())
        .is_some_and(|a| {
            a.iter()
                .any(|ns| ns.get("type").and_then(|t| t.as_str()) == Some("user"))
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
    Ok(ContainerWork {
        rootfs,
        nodes: plan.edits.device_nodes.clone(),
        bind_nodes: has_user_namespace(spec),
        proc_view: (!plan.devices.is_empty()).then(|| ProcView {
            host_dir: config.proc_path("driver/nvidia"),
            gpus: plan.proc_gpus.clone(),
            caps: plan.proc_caps.clone(),
        }),
    })
}

/// The container's init process as this process's procfs names it.
///
/// runc runs createContainer hooks from the container's init itself (in the container's pid and
/// mount namespaces, before pivot_root), and then the state's pid is the init's pid inside the
/// container's pid namespace, meaningless in /proc. The hook is then a child of that init, in
/// its mount namespace and cgroup: it works on itself. A runtime that runs the hook from outside
/// (prestart, createRuntime, or crun) passes the init's pid as the host sees it.
fn container_pid(stage: Stage, state: &State) -> Result<i32, HookError> {
    let pid = state.require_pid()?;
    if stage == Stage::CreateContainer && nix::unistd::getppid().as_raw() == pid {
        let me = std::fs::read_link(format!("{PROCESS_PROC}/self"))
            .ok()
            .and_then(|p| p.to_str().and_then(|s| s.parse::<i32>().ok()));
        if let Some(me) = me {
            return Ok(me);
        }
    }
    Ok(pid)
}

/// Run the hook for `stage` with the state on `input`.
pub fn run(config: &Config, stage: Stage, input: impl Read) -> Result<Outcome, HookError> {
    let start = Instant::now();
    let state = State::read(input)?;
    let mut outcome = Outcome {
        container: state.id.clone(),
        stage,
        request: None,
        plan: None,
        nodes_created: 0,
        proc_view: false,
        cgroup: None,
        duration_us: 0,
    };
    if stage == Stage::Poststop {
        outcome.duration_us = start.elapsed().as_micros();
        return Ok(outcome);
    }
    let spec = state::read_config(&state.bundle)?;
    let (request, plan) = pipeline::plan_for_spec(config, &spec)?;
    outcome.request = Some(request);
    let Some(plan) = plan else {
        outcome.duration_us = start.elapsed().as_micros();
        return Ok(outcome);
    };
    if !plan.edits.device_nodes.is_empty() {
        let pid = container_pid(stage, &state)?;
        let work = container_work(config, &state.bundle, &spec, &plan)?;
        let id = state.id.clone();
        let applied =
            nsenter::in_mount_namespace(pid, || container::apply(&work)).map_err(|e| {
                HookError::Container {
                    id: id.clone(),
                    message: e.to_string(),
                }
            })?;
        outcome.nodes_created = applied.nodes_created;
        outcome.proc_view = applied.proc_view;
        let granted = cgroup::grant_devices(
            Path::new(PROCESS_PROC),
            pid as u32,
            &spec,
            &plan.edits.device_rules,
        )
        .map_err(|source| HookError::Cgroup { id, source })?;
        outcome.cgroup = Some(format!("{granted:?}"));
    }
    outcome.plan = Some(plan);
    outcome.duration_us = start.elapsed().as_micros();
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn user_namespace_detection() {
        assert!(has_user_namespace(
            &json!({"linux": {"namespaces": [{"type": "pid"}, {"type": "user"}]}})
        ));
        assert!(!has_user_namespace(
            &json!({"linux": {"namespaces": [{"type": "mount"}]}})
        ));
        assert!(!has_user_namespace(&json!({})));
    }

    #[test]
    fn untouched_container_needs_no_driver() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("config.json"),
            br#"{"ociVersion":"1.0.2","process":{"env":["PATH=/bin"]},"root":{"path":"rootfs"}}"#,
        )
        .unwrap();
        let state = format!(
            r#"{{"ociVersion":"1.0.2","id":"c1","status":"created","pid":1,"bundle":"{}"}}"#,
            d.path().display()
        );
        // A config pointing at nothing: no driver is read when nothing is asked for.
        let config = Config {
            proc_root: "/nonexistent".into(),
            ..Config::default()
        };
        let out = run(&config, Stage::Prestart, state.as_bytes()).unwrap();
        assert!(out.plan.is_none());
        assert!(out.request.unwrap().is_noop());
    }

    #[test]
    fn poststop_reads_only_the_state() {
        let config = Config::default();
        let out = run(
            &config,
            Stage::Poststop,
            &br#"{"id":"c1","bundle":"/nonexistent"}"#[..],
        )
        .unwrap();
        assert_eq!(out.container, "c1");
        assert!(run(&config, Stage::Poststop, &b"junk"[..]).is_err());
    }
}
