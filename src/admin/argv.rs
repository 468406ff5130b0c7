//! The command line before clap sees it: the names migcage runs under (nvidia-container-runtime-hook,
//! migcage-runtime), the runtime wrapper's arguments that must reach runc untouched, and empty
//! environment overrides.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::exit::PREFIX;

/// `docker run --gpus` runs an executable named `nvidia-container-runtime-hook` with the argument
/// `prestart`: under that name, migcage is its hook.
pub fn arguments() -> Vec<OsString> {
    let mut args: Vec<OsString> = std::env::args_os().collect();
    let invoked_as = args
        .first()
        .and_then(|a| Path::new(a).file_name().map(|n| n.to_os_string()));
    if invoked_as.as_deref() == Some(std::ffi::OsStr::new("nvidia-container-runtime-hook")) {
        let rest: Vec<OsString> = args.drain(1..).collect();
        let mut out = vec![OsString::from("migcage")];
        // Its flags (-config=..., -debug) belong to NVIDIA's hook: only the stage carries over.
        out.push("hook".into());
        if let Some(stage) = rest.iter().find(|a| !a.to_string_lossy().starts_with('-')) {
            out.push(stage.clone());
        }
        return out;
    }
    args
}

/// `migcage [--config FILE] runtime ARGS...`, or `migcage-runtime ARGS...` (a link): the
/// runtime's command line, which goes to the wrapper untouched (clap never sees it: runc's own
/// `--help`, `--version` and flags must reach runc). Returns the config file named and the args.
pub fn runtime_invocation(args: &[OsString]) -> Option<(Option<PathBuf>, Vec<OsString>)> {
    let argv0 = args.first().and_then(|a| Path::new(a).file_name());
    if argv0 == Some(std::ffi::OsStr::new(crate::backend::runtime::RUNTIME_ARGV0)) {
        return Some((None, args[1..].to_vec()));
    }
    let mut config = None;
    let mut i = 1;
    loop {
        let a = args.get(i)?;
        if a == "runtime" {
            return Some((config, args[i + 1..].to_vec()));
        }
        if a == "--config" {
            config = Some(PathBuf::from(args.get(i + 1)?));
            i += 2;
        } else if let Some(v) = a.to_str().and_then(|s| s.strip_prefix("--config=")) {
            config = Some(PathBuf::from(v));
            i += 1;
        } else {
            return None;
        }
    }
}

/// `migcage [--config FILE] hook STAGE`, exactly (what runtimes, hooks.d files and the CDI
/// spec run): the config file named and the stage, read without clap, whose command tree costs
/// a hook about 150 µs to build. Any other form (`--help`, a flag, an unknown stage) is `None`
/// and goes to clap, which then says what is wrong.
pub fn hook_invocation(
    args: &[OsString],
) -> Option<(Option<PathBuf>, crate::backend::hook::Stage)> {
    use clap::ValueEnum as _;
    let mut config = None;
    let mut i = 1;
    loop {
        let a = args.get(i)?.to_str()?;
        if a == "hook" {
            let [stage] = &args[i + 1..] else {
                return None;
            };
            let stage = crate::backend::hook::Stage::from_str(stage.to_str()?, false).ok()?;
            return Some((config, stage));
        }
        if a == "--config" {
            config = Some(PathBuf::from(args.get(i + 1)?));
            i += 2;
        } else if let Some(v) = a.strip_prefix("--config=") {
            config = Some(PathBuf::from(v));
            i += 1;
        } else {
            return None;
        }
    }
}

/// The environment overrides migcage reads through clap: an empty one (`MIGCAGE_CONFIG=`) means
/// "not set", as an empty `PATH` entry does, with a warning, instead of a parser error.
pub const ENV_OVERRIDES: [&str; 2] = [crate::config::CONFIG_ENV, "MIGCAGE_SIM_ARTIFACTS"];

pub fn ignore_empty_overrides() {
    for name in ENV_OVERRIDES {
        if std::env::var_os(name).is_some_and(|v| v.is_empty()) {
            eprintln!(
                "{PREFIX}warning: {name} is set but empty: ignored (unset it, or name a file)"
            );
            // Single-threaded still: nothing else reads the environment yet.
            std::env::remove_var(name);
        }
    }
}

/// `migcage runtime --help` and `--version`: migcage's own lines first, then the runtime's
/// (the wrapper execs it with the flag untouched).
pub fn runtime_banner(rest: &[OsString]) {
    match rest.first().and_then(|a| a.to_str()) {
        Some("--help" | "-h" | "help") => println!(
            "migcage runtime (also run as {}): the OCI runtime wrapper. On create and run it writes the container's MIG devices into the bundle's config.json, then execs the real runtime (config key 'runtime') with the arguments untouched. See man migcage-runtime. The runtime's own help follows.\n",
            crate::backend::runtime::RUNTIME_ARGV0
        ),
        Some("--version" | "-v") => println!(
            "migcage-runtime version {} (wrapping the runtime below)",
            env!("CARGO_PKG_VERSION")
        ),
        _ => {}
    }
}

/// The subcommand path that `args` name (`migcage cdi list`), for the `--help` an error points
/// to, and the names of its own subcommands, in `cmd` (the whole command line's clap tree).
pub fn command_path(mut cmd: clap::Command, args: &[OsString]) -> (String, Vec<String>) {
    let mut path = vec!["migcage".to_string()];
    for a in args.iter().skip(1).filter_map(|a| a.to_str()) {
        let Some(sub) = cmd.find_subcommand(a).cloned() else {
            continue;
        };
        path.push(sub.get_name().to_string());
        cmd = sub;
    }
    let subs = cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
        .map(|s| s.get_name().to_string())
        .collect();
    (path.join(" "), subs)
}

#[cfg(test)]
mod hook_args {
    use super::*;
    use crate::backend::hook::Stage;

    fn args(a: &[&str]) -> Vec<OsString> {
        a.iter().map(OsString::from).collect()
    }

    #[test]
    fn the_hooks_own_forms_are_read_without_clap() {
        assert_eq!(
            hook_invocation(&args(&["migcage", "hook", "prestart"])),
            Some((None, Stage::Prestart))
        );
        assert_eq!(
            hook_invocation(&args(&[
                "/usr/bin/migcage",
                "--config",
                "/c.toml",
                "hook",
                "createRuntime"
            ])),
            Some((Some(PathBuf::from("/c.toml")), Stage::CreateRuntime))
        );
        assert_eq!(
            hook_invocation(&args(&["migcage", "--config=/c.toml", "hook", "poststop"])),
            Some((Some(PathBuf::from("/c.toml")), Stage::Poststop))
        );
    }

    #[test]
    fn every_other_form_goes_to_clap() {
        for a in [
            &["migcage", "hook"][..],
            &["migcage", "hook", "--help"],
            &["migcage", "hook", "Prestart"],
            &["migcage", "hook", "prestart", "--json"],
            &["migcage", "--json", "hook", "prestart"],
            &["migcage", "--config"],
            &["migcage", "list"],
        ] {
            assert_eq!(hook_invocation(&args(a)), None, "{a:?}");
        }
    }
}
