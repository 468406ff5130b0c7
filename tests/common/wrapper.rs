//! The runtime wrapper in the end-to-end tests: its config, and a container run through it.

use std::path::PathBuf;

use super::{Bundle, Mode, Run, SimHost, MIGCAGE};

/// `host`'s config with `runtime` set: what `migcage runtime` is run with.
pub fn config(host: &SimHost, runtime: &str) -> PathBuf {
    let mut t: toml::Table = std::fs::read_to_string(host.config())
        .unwrap()
        .parse()
        .unwrap();
    t.insert("runtime".into(), toml::Value::String(runtime.into()));
    let path = host.dir.path().join(format!("config-{runtime}.toml"));
    std::fs::write(&path, toml::to_string(&t).unwrap()).unwrap();
    path
}

/// `migcage runtime run` of `bundle` through `mode`'s runtime (in `host`'s config), as an
/// engine runs it; the container's id starts with `prefix`.
pub fn run(mode: Mode, bundle: &Bundle, host: &SimHost, prefix: &str) -> Run {
    let id = super::unique(prefix);
    let script = format!(
        "exec {MIGCAGE} --config {} runtime run --bundle {} {id}",
        config(host, mode.runtime()).display(),
        bundle.path().display()
    );
    super::run_script(mode, bundle, host, &id, &script)
}

/// `bundle` through the wrapper as an engine drives it (containerd's shim, conmon): `migcage
/// runtime create`, `start`, and, once the container's process has exited, `delete`. The
/// container's output is the script's (it inherits create's stdio).
pub fn create_start_delete(mode: Mode, bundle: &Bundle, host: &SimHost, prefix: &str) -> Run {
    let id = super::unique(prefix);
    let w = format!(
        "{MIGCAGE} --config {} runtime",
        config(host, mode.runtime()).display()
    );
    let script = format!(
        "{w} create --bundle {b} {id} && {w} start {id} && n=0 && \
         until {rt} state {id} | grep -q '\"status\": \"stopped\"'; do \
           n=$((n + 1)); [ $n -lt 400 ] || {{ echo 'still running after 20 s' >&2; exit 9; }}; sleep 0.05; \
         done && exec {w} delete {id}",
        b = bundle.path().display(),
        rt = mode.runtime(),
    );
    super::run_script(mode, bundle, host, &id, &script)
}
