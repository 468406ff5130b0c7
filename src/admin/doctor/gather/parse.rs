//! Parsing what the runtimes' configuration files and the hooks.d files say about migcage: the
//! file's text in, facts out.

use std::path::PathBuf;

use super::super::facts::RuntimeConfig;
use super::engines::names_migcage;

/// Every table (at any depth) of a TOML document, with its dotted path.
fn toml_tables<'a>(prefix: String, t: &'a toml::Table, out: &mut Vec<(String, &'a toml::Table)>) {
    out.push((prefix.clone(), t));
    for (k, v) in t {
        if let toml::Value::Table(sub) = v {
            let p = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            toml_tables(p, sub, out);
        }
    }
}

/// What a runtime's configuration file says about migcage. Pure: the file's text in, findings
/// out; an unparsable file is an error naming the problem.
pub fn parse_runtime_config(runtime: &str, text: &str) -> Result<RuntimeConfig, String> {
    match runtime {
        "docker" => parse_docker(text),
        "podman" | "containerd" | "cri-o" => parse_toml(runtime, text),
        _ => Ok(RuntimeConfig::default()),
    }
}

/// Docker's daemon.json.
fn parse_docker(text: &str) -> Result<RuntimeConfig, String> {
    let mut rc = RuntimeConfig::default();
    if text.trim().is_empty() {
        return Ok(rc);
    }
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
    if let Some(rts) = v.get("runtimes").and_then(|r| r.as_object()) {
        for (name, r) in rts {
            let path = r.get("path").and_then(|p| p.as_str()).unwrap_or_default();
            if names_migcage(path) {
                rc.migcage_runtimes
                    .push(format!("runtimes.{name} = {path}"));
            }
        }
    }
    rc.default_runtime = v
        .get("default-runtime")
        .and_then(|d| d.as_str())
        .map(str::to_string);
    rc.cgroup_driver = v
        .get("exec-opts")
        .and_then(|o| o.as_array())
        .into_iter()
        .flatten()
        .filter_map(|o| o.as_str()?.strip_prefix("native.cgroupdriver="))
        .next_back()
        .map(str::to_string);
    Ok(rc)
}

/// podman's containers.conf, containerd's config.toml, cri-o's crio.conf: every table is looked
/// at, in document order.
fn parse_toml(runtime: &str, text: &str) -> Result<RuntimeConfig, String> {
    let mut rc = RuntimeConfig::default();
    let doc: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| format!("not valid TOML: {}", e.message()))?;
    let mut tables = Vec::new();
    toml_tables(String::new(), &doc, &mut tables);
    for (path, t) in tables {
        match runtime {
            "podman" => podman_table(&mut rc, &path, t),
            "containerd" => containerd_table(&mut rc, &path, t),
            _ => crio_table(&mut rc, &path, t),
        }
    }
    if runtime == "containerd" {
        rc.problems = super::containerd::containerd_problems(&doc);
    }
    Ok(rc)
}

fn str_key<'a>(t: &'a toml::Table, k: &str) -> Option<&'a str> {
    t.get(k).and_then(|v| v.as_str())
}

fn podman_table(rc: &mut RuntimeConfig, path: &str, t: &toml::Table) {
    let s = |k: &str| str_key(t, k);
    if path == "engine.runtimes" {
        for (name, v) in t {
            let paths: Vec<&str> = v
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| p.as_str())
                .collect();
            if let Some(p) = paths.iter().find(|p| names_migcage(p)) {
                rc.migcage_runtimes
                    .push(format!("engine.runtimes.{name} = {p}"));
            }
        }
    }
    if path == "engine" {
        rc.default_runtime = s("runtime").map(str::to_string);
        rc.cgroup_driver = s("cgroup_manager").map(str::to_string);
    }
}

fn containerd_table(rc: &mut RuntimeConfig, path: &str, t: &toml::Table) {
    let s = |k: &str| str_key(t, k);
    if let Some(bin) = s("BinaryName").filter(|b| names_migcage(b)) {
        rc.migcage_runtimes
            .push(format!("{path}.BinaryName = {bin}"));
    }
    if let Some(b) = t.get("SystemdCgroup").and_then(|v| v.as_bool()) {
        rc.cgroup_driver = Some(if b { "systemd" } else { "cgroupfs" }.into());
    }
    if let Some(b) = t.get("enable_cdi").and_then(|v| v.as_bool()) {
        rc.cdi = Some(b);
    }
    if let Some(d) = s("default_runtime_name") {
        rc.default_runtime = Some(d.to_string());
    }
}

fn crio_table(rc: &mut RuntimeConfig, path: &str, t: &toml::Table) {
    let s = |k: &str| str_key(t, k);
    if let Some(bin) = s("runtime_path").filter(|b| names_migcage(b)) {
        rc.migcage_runtimes
            .push(format!("{path}.runtime_path = {bin}"));
    }
    if path == "crio.runtime" {
        rc.default_runtime = s("default_runtime").map(str::to_string);
        rc.cgroup_driver = s("cgroup_manager").map(str::to_string);
    }
}

/// Parse a hooks.d file (the OCI hooks configuration podman and cri-o read).
pub fn parse_hook_file(text: &str) -> Result<(PathBuf, Vec<String>), String> {
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
    let version = v
        .get("version")
        .and_then(|s| s.as_str())
        .unwrap_or_default();
    if version != "1.0.0" {
        return Err(format!(
            "version {version:?}, podman and cri-o read only \"1.0.0\""
        ));
    }
    let path = v
        .pointer("/hook/path")
        .and_then(|p| p.as_str())
        .ok_or("no hook.path")?;
    let stages: Vec<String> = v
        .get("stages")
        .and_then(|s| s.as_array())
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect();
    if stages.is_empty() {
        return Err("no stages".into());
    }
    Ok((PathBuf::from(path), stages))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_config() {
        let c = parse_runtime_config(
            "docker",
            r#"{"runtimes": {"migcage": {"path": "/usr/bin/migcage-runtime"}, "nvidia": {"path": "nvidia-container-runtime"}},
                "default-runtime": "runc", "exec-opts": ["native.cgroupdriver=systemd"]}"#,
        )
        .unwrap();
        assert_eq!(
            c.migcage_runtimes,
            ["runtimes.migcage = /usr/bin/migcage-runtime"]
        );
        assert_eq!(c.default_runtime.as_deref(), Some("runc"));
        assert_eq!(c.cgroup_driver.as_deref(), Some("systemd"));
        assert_eq!(
            parse_runtime_config("docker", "").unwrap(),
            RuntimeConfig::default()
        );
        assert!(parse_runtime_config("docker", "{")
            .unwrap_err()
            .contains("not valid JSON"));
    }

    #[test]
    fn containerd_and_crio_and_podman_config() {
        let c = parse_runtime_config(
            "containerd",
            r#"version = 2
[plugins."io.containerd.grpc.v1.cri"]
  enable_cdi = true
[plugins."io.containerd.grpc.v1.cri".containerd]
  default_runtime_name = "migcage"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.migcage]
  runtime_type = "io.containerd.runc.v2"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.migcage.options]
  BinaryName = "/usr/bin/migcage-runtime"
  SystemdCgroup = true
"#,
        )
        .unwrap();
        assert_eq!(c.migcage_runtimes.len(), 1, "{c:?}");
        assert!(c.migcage_runtimes[0]
            .ends_with("runtimes.migcage.options.BinaryName = /usr/bin/migcage-runtime"));
        assert_eq!(c.cdi, Some(true));
        assert_eq!(c.cgroup_driver.as_deref(), Some("systemd"));
        assert_eq!(c.default_runtime.as_deref(), Some("migcage"));

        let c = parse_runtime_config(
            "cri-o",
            "[crio.runtime]\ndefault_runtime = \"migcage\"\ncgroup_manager = \"cgroupfs\"\n[crio.runtime.runtimes.migcage]\nruntime_path = \"/usr/bin/migcage-runtime\"\n",
        )
        .unwrap();
        assert_eq!(
            c.migcage_runtimes,
            ["crio.runtime.runtimes.migcage.runtime_path = /usr/bin/migcage-runtime"]
        );
        assert_eq!(c.cgroup_driver.as_deref(), Some("cgroupfs"));

        let c = parse_runtime_config(
            "podman",
            "[engine]\ncgroup_manager = \"systemd\"\n[engine.runtimes]\nmigcage = [\"/usr/bin/migcage-runtime\"]\nrunc = [\"/usr/bin/runc\"]\n",
        )
        .unwrap();
        assert_eq!(
            c.migcage_runtimes,
            ["engine.runtimes.migcage = /usr/bin/migcage-runtime"]
        );
        assert!(parse_runtime_config("podman", "[engine")
            .unwrap_err()
            .contains("not valid TOML"));
    }

    #[test]
    fn hook_file_parsing() {
        let (p, s) = parse_hook_file(
            r#"{"version": "1.0.0", "hook": {"path": "/usr/bin/migcage", "args": ["migcage", "hook", "prestart"]}, "when": {"always": true}, "stages": ["prestart"]}"#,
        )
        .unwrap();
        assert_eq!(
            (p, s),
            (
                PathBuf::from("/usr/bin/migcage"),
                vec!["prestart".to_string()]
            )
        );
        assert!(parse_hook_file(
            r#"{"version": "2", "hook": {"path": "/x"}, "stages": ["prestart"]}"#
        )
        .unwrap_err()
        .contains("1.0.0"));
        assert!(parse_hook_file(r#"{"version": "1.0.0", "hook": {"path": "/x"}}"#).is_err());
    }
}
