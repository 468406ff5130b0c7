//! The runtime wrapper's config in the end-to-end tests.

use std::path::PathBuf;

use super::SimHost;

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
