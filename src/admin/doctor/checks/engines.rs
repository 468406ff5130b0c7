//! Checks of the container runtimes and engines, the hooks.d files and the CDI specs.

use super::super::facts::*;
use super::super::gather::DOCKER_HOOK_DIR;
use super::Check;
use crate::backend::cdi;

/// How to configure `runtime` for migcage (`migcage configure`, src/admin/configure/).
fn configure_fix(runtime: &str) -> String {
    match runtime {
        "docker" => format!("run migcage configure docker (registers the {RUNTIME} runtime: docker run --runtime {RUNTIME}), or put {DOCKER_HOOK_DIR} on dockerd's PATH for docker run --gpus"),
        "podman" => "run migcage configure podman (installs the hooks.d file), or generate a CDI spec (migcage cdi generate --output /etc/cdi/) for podman run --device nvidia.com/gpu=...".into(),
        "containerd" => format!("run migcage configure containerd (registers the {RUNTIME} runtime, for ctr --runtime or a Kubernetes RuntimeClass)"),
        "cri-o" => "run migcage configure crio (installs the hooks.d file)".into(),
        _ => String::new(),
    }
}

const RUNTIME: &str = crate::admin::configure::RUNTIME_NAME;

/// The runtimes line, then one line per installed runtime or engine: how it runs migcage.
pub(super) fn check_runtimes(f: &Facts) -> Vec<Check> {
    let mut out = vec![check_installed(f)];
    let migcage_hooks: Vec<&HookFileFact> = f
        .hook_files
        .iter()
        .filter(|h| h.hook.as_ref().is_ok_and(|h| h.is_migcage && h.executable))
        .collect();
    let cdi_ok = f.cdi_specs.iter().any(|c| match &c.spec {
        // A spec that could not be compared still configures the engine.
        Ok(CdiSpecFact::Migcage { stale: None, .. }) => true,
        Ok(CdiSpecFact::Migcage {
            stale: Some(lines), ..
        }) => lines.is_empty(),
        _ => false,
    });
    for r in f.runtimes.iter().filter(|r| r.binary.is_some()) {
        let (ways, notes) = runtime_ways(f, r, &migcage_hooks, cdi_ok);
        let cannot_tell: Vec<&str> = match r.name {
            "docker" => f
                .docker_hooks
                .iter()
                .filter_map(|h| h.unreadable.as_deref())
                .collect(),
            _ => Vec::new(),
        };
        out.push(runtime_verdict(r, &ways, &notes, &cannot_tell));
        out.extend(config_problems(r));
    }
    out
}

/// A failing line for each configuration file whose settings break migcage's path.
fn config_problems(r: &RuntimeFact) -> Vec<Check> {
    r.configs
        .iter()
        .filter_map(|(path, c)| Some((path, c.as_ref().ok()?)))
        .filter(|(_, c)| !c.problems.is_empty())
        .map(|(path, c)| {
            Check::fail(
                format!("{} config", r.name),
                format!("{}: {}", path.display(), c.problems.join("; ")),
                format!("run migcage configure {} (it keeps runc and passes the annotations migcage reads), then restart {}", r.name, r.name),
            )
        })
        .collect()
}

/// Which runtimes are installed, and which not.
fn check_installed(f: &Facts) -> Check {
    let installed: Vec<String> = f
        .runtimes
        .iter()
        .filter_map(|r| Some(format!("{} ({})", r.name, r.binary.as_ref()?.display())))
        .collect();
    let absent: Vec<&str> = f
        .runtimes
        .iter()
        .filter(|r| r.binary.is_none())
        .map(|r| r.name)
        .collect();
    if installed.is_empty() {
        Check::warn(
            "runtimes",
            format!("none installed (looked for {})", absent.join(", ")),
            "install runc or crun (and an engine such as docker, podman or containerd)",
        )
    } else {
        let absent = if absent.is_empty() {
            String::new()
        } else {
            format!("; not installed: {}", absent.join(", "))
        };
        Check::ok(
            "runtimes",
            format!("installed: {}{absent}", installed.join(", ")),
        )
    }
}

/// The ways `r` is configured to run migcage, and what is wrong in its files (or with the hook
/// `docker run --gpus` finds).
fn runtime_ways(
    f: &Facts,
    r: &RuntimeFact,
    migcage_hooks: &[&HookFileFact],
    cdi_ok: bool,
) -> (Vec<String>, Vec<String>) {
    let mut ways: Vec<String> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    for (path, parsed) in &r.configs {
        match parsed {
            Ok(c) => {
                ways.extend(
                    c.migcage_runtimes
                        .iter()
                        .map(|w| format!("{} {w}", path.display())),
                );
                if c.cdi == Some(true) && cdi_ok {
                    ways.push(format!(
                        "{} enable_cdi with migcage's CDI spec",
                        path.display()
                    ));
                }
                if let Some(d) = c.default_runtime.as_deref().filter(|d| *d == RUNTIME) {
                    ways.push(format!("{d} is the default runtime"));
                }
            }
            Err(e) => notes.push(format!("{}: {e}", path.display())),
        }
    }
    if matches!(r.name, "podman" | "cri-o") {
        ways.extend(
            migcage_hooks
                .iter()
                .map(|h| format!("hooks.d {}", h.path.display())),
        );
    }
    if r.name == "podman" && cdi_ok {
        ways.push("migcage's CDI spec (podman run --device nvidia.com/gpu=...)".into());
    }
    if r.name == "docker" {
        for DockerHookFact {
            path_from, found, ..
        } in &f.docker_hooks
        {
            match found {
                Some((p, true)) => ways.push(format!(
                    "docker run --gpus runs {} (migcage), found on the {path_from}",
                    p.display()
                )),
                Some((p, false)) => notes.push(format!(
                    "docker run --gpus runs NVIDIA's {} (on the {path_from}), not migcage",
                    p.display()
                )),
                None => {}
            }
        }
    }
    (ways, notes)
}

/// The line for one installed runtime, from its ways and notes.
/// `cannot_tell`: why doctor could not read what decides a way (a dockerd's environment).
fn runtime_verdict(
    r: &RuntimeFact,
    ways: &[String],
    notes: &[String],
    cannot_tell: &[&str],
) -> Check {
    let check = format!("runtime {}", r.name);
    let parse_errors: Vec<&String> = notes
        .iter()
        .filter(|n| !n.contains("docker run --gpus"))
        .collect();
    if !parse_errors.is_empty() {
        return Check::fail(
            check,
            notes.join("; "),
            format!("fix the file: {} refuses to start with it", r.name),
        );
    }
    match r.name {
        "runc" | "crun" => Check::ok(
            check,
            "hooks come from each container's config.json (engines add them through hooks.d, migcage-runtime or CDI)",
        ),
        _ if !notes.is_empty() => Check::warn(
            check,
            format!("{}{}", notes.join("; "), if ways.is_empty() { String::new() } else { format!("; configured: {}", ways.join("; ")) }),
            format!("remove NVIDIA's nvidia-container-runtime-hook from dockerd's PATH or put {DOCKER_HOOK_DIR} before it, then restart dockerd"),
        ),
        _ if !ways.is_empty() => Check::ok(check, format!("configured: {}", ways.join("; "))),
        _ if !cannot_tell.is_empty() => Check::warn(
            check,
            format!(
                "cannot tell whether docker run --gpus runs migcage: {}",
                cannot_tell.join("; ")
            ),
            format!("run migcage doctor as root to know, or {}", configure_fix(r.name)),
        ),
        _ => Check::warn(
            check,
            "installed but not configured for migcage",
            configure_fix(r.name),
        ),
    }
}

pub(super) fn check_hook_files(f: &Facts) -> Vec<Check> {
    let dirs = f
        .hook_dirs
        .iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(" or ");
    let mut out = Vec::new();
    for h in &f.hook_files {
        match &h.hook {
            Err(e) => out.push(Check::fail(
                "hooks.d",
                format!("{}: {e}", h.path.display()),
                "podman and cri-o skip a broken hook file: run migcage configure podman (or reinstall the package) to rewrite it",
            )),
            Ok(hook) if !hook.is_migcage => out.push(Check::warn(
                "hooks.d",
                format!("{} runs NVIDIA's {}", h.path.display(), hook.hook_path.display()),
                "two GPU hooks would both act on every GPU container: remove NVIDIA's hook file, or migcage's",
            )),
            Ok(hook) if !hook.executable => out.push(Check::fail(
                "hooks.d",
                format!(
                    "{} runs {}, which is not an executable file",
                    h.path.display(),
                    hook.hook_path.display()
                ),
                "every container under podman and cri-o fails to start: reinstall migcage, or fix hook.path",
            )),
            Ok(hook) => out.push(Check::ok(
                "hooks.d",
                format!(
                    "{} runs {} at {}",
                    h.path.display(),
                    hook.hook_path.display(),
                    hook.stages.join(", ")
                ),
            )),
        }
    }
    if !f
        .hook_files
        .iter()
        .any(|h| h.hook.as_ref().is_ok_and(|h| h.is_migcage))
    {
        out.push(Check::warn(
            "hooks.d",
            format!("no migcage hook file in {dirs}"),
            "only podman and cri-o need it: migcage configure podman installs it",
        ));
    }
    out
}

pub(super) fn check_cdi(f: &Facts) -> Vec<Check> {
    let dirs = f
        .cdi_dirs
        .iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(" or ");
    let ours = f
        .cdi_specs
        .iter()
        .filter(|c| matches!(c.spec, Ok(CdiSpecFact::Migcage { .. })))
        .count();
    let mut out = Vec::new();
    for c in &f.cdi_specs {
        let p = c.path.display();
        out.push(match &c.spec {
            Err(e) => Check::warn(
                "CDI spec",
                e.clone(),
                format!("CDI engines skip an invalid spec: fix or remove it ({} rewrites migcage's)", cdi::regenerate(&c.path, cdi::DEFAULT_KIND)),
            ),
            Ok(CdiSpecFact::Other { kind }) if kind.starts_with("nvidia.com/") && ours > 0 => Check::warn(
                "CDI spec",
                format!("{p} (kind {kind}) is not migcage's and declares NVIDIA devices too"),
                "engines refuse device names two specs declare: keep one (NVIDIA's toolkit writes /etc/cdi/nvidia.yaml)",
            ),
            Ok(CdiSpecFact::Other { kind }) => Check::ok("CDI spec", format!("{p} (kind {kind}) is not migcage's")),
            Ok(CdiSpecFact::Migcage { kind, devices, stale: None }) => Check::warn(
                "CDI spec",
                format!("{p} (kind {kind}, {devices} device names) could not be compared with the host (no inventory, see above)"),
                "fix NVML and the driver first",
            ),
            Ok(CdiSpecFact::Migcage { kind, devices, stale: Some(lines) }) if lines.is_empty() => Check::ok(
                "CDI spec",
                format!("{p} (kind {kind}, {devices} device names) matches the host"),
            ),
            Ok(CdiSpecFact::Migcage { kind, stale: Some(lines), .. }) => Check::fail(
                "CDI spec",
                format!("{p} (kind {kind}) is stale: {}{}", lines[0], if lines.len() > 1 { format!(" (and {} more: migcage cdi list)", lines.len() - 1) } else { String::new() }),
                format!("containers asking for those names fail to start: run {} (systemctl restart migcage-cdi for /var/run/cdi) after changing MIG instances", cdi::regenerate(&c.path, kind)),
            ),
        });
    }
    if ours == 0 {
        out.push(Check::ok(
            "CDI spec",
            format!("no migcage spec in {dirs}; only CDI users (podman --device nvidia.com/gpu=..., containerd enable_cdi) need one: migcage cdi generate --output /etc/cdi/"),
        ));
    }
    out
}
