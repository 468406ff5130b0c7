//! `configure --cdi`: turn on an engine's own CDI support, so that it injects the devices of
//! migcage's spec (`migcage cdi generate`) itself, with no migcage runtime in between. Only for
//! engine versions that have CDI (the rule is in [`crate::core::engine`]); the version is the one
//! the engine's binary prints, or the one the operator states.

use crate::core::engine::{self, Engine, Version};

use super::containerd::{allow, cri_plugin, parse, table_at, table_like};

/// The directories containerd and Docker read CDI specs from by default; migcage writes its spec
/// into one of them (`/etc/cdi` by `cdi generate`, `/var/run/cdi` by migcage-cdi.service).
pub const CDI_SPEC_DIRS: [&str; 2] = ["/etc/cdi", "/var/run/cdi"];

/// The engine's version: `stated` (`--engine-version`) when given, else what `BINARY --version`
/// prints. `None` when the binary cannot be run or says nothing readable and nothing was stated.
pub fn engine_version(engine: Engine, stated: Option<&str>) -> Result<Option<Version>, String> {
    if let Some(s) = stated {
        return engine::parse_version(engine, s)
            .map(Some)
            .map_err(|_| format!("--engine-version {s:?} is not a version such as 1.7.24"));
    }
    let Ok(out) = std::process::Command::new(engine.binary())
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .output()
    else {
        return Ok(None);
    };
    Ok(engine::parse_version(engine, &String::from_utf8_lossy(&out.stdout)).ok())
}

/// The version for `--cdi`, which must be known, checked against the engine's first with CDI.
pub fn cdi_version(engine: Engine, stated: Option<&str>) -> Result<Version, String> {
    let version = engine_version(engine, stated)?.ok_or_else(|| {
        format!(
            "--cdi needs the {} version, and `{} --version` gave none: pass --engine-version",
            engine.binary(),
            engine.binary()
        )
    })?;
    engine::check_cdi(engine, version)?;
    Ok(version)
}

/// config.toml with the CRI plugin's CDI on: `enable_cdi = true` and `cdi_spec_dirs` holding
/// [`CDI_SPEC_DIRS`] (the directories a file lists are kept). An empty file becomes config
/// version `fresh`; a file without runtimes keeps containerd's built-in runc. Returns the text
/// unchanged when it already says so.
pub fn containerd_cdi_edit(old: &str, fresh: i64) -> Result<String, String> {
    let (mut doc, version) = parse(old, fresh)?;
    let mut at = String::new();
    let cri = table_at(&mut doc, &cri_plugin(version)?, &mut at)?;
    let mut changed = old.trim().is_empty();
    let t = table_like(cri);
    match t.get("enable_cdi") {
        Some(v) if v.as_bool() == Some(true) => {}
        Some(v) if v.as_bool().is_none() => {
            return Err(format!(
                "{at}.enable_cdi is a {}, expected a boolean",
                v.type_name()
            ))
        }
        _ => {
            t.insert("enable_cdi", toml_edit::value(true));
            changed = true;
        }
    }
    changed |= allow(t, "cdi_spec_dirs", &CDI_SPEC_DIRS, &at)?;
    if !changed {
        return Ok(old.to_string());
    }
    Ok(doc.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dirs(v: &toml::Value) -> Vec<&str> {
        v["cdi_spec_dirs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_str().unwrap())
            .collect()
    }

    #[test]
    fn cdi_on_in_each_config_version() {
        for (fresh, plugin) in [
            (2, "io.containerd.grpc.v1.cri"),
            (3, "io.containerd.cri.v1.runtime"),
        ] {
            let out = containerd_cdi_edit("", fresh).unwrap();
            let doc: toml::Table = out.parse().unwrap();
            assert_eq!(doc["version"].as_integer(), Some(fresh), "{out}");
            let cri = &doc["plugins"][plugin];
            assert_eq!(cri["enable_cdi"].as_bool(), Some(true), "{out}");
            assert_eq!(dirs(cri), CDI_SPEC_DIRS);
            // No runtimes table: containerd keeps its built-in runc.
            assert!(cri.get("containerd").is_none(), "{out}");
            assert_eq!(containerd_cdi_edit(&out, fresh).unwrap(), out);
        }
        let v1 = "root = \"/x\"\n";
        let doc: toml::Table = containerd_cdi_edit(v1, 2).unwrap().parse().unwrap();
        assert_eq!(doc["plugins"]["cri"]["enable_cdi"].as_bool(), Some(true));
    }

    #[test]
    fn cdi_keeps_the_file_and_its_own_dirs() {
        let old = "version = 2\n# keep me\n[plugins.\"io.containerd.grpc.v1.cri\"]\n  enable_cdi = false\n  cdi_spec_dirs = [\"/opt/cdi\", \"/etc/cdi\"]\n  sandbox_image = \"pause:3.8\"\n";
        let out = containerd_cdi_edit(old, 2).unwrap();
        assert!(out.contains("# keep me\n"), "{out}");
        let doc: toml::Table = out.parse().unwrap();
        let cri = &doc["plugins"]["io.containerd.grpc.v1.cri"];
        assert_eq!(cri["enable_cdi"].as_bool(), Some(true));
        assert_eq!(dirs(cri), ["/opt/cdi", "/etc/cdi", "/var/run/cdi"]);
        assert_eq!(cri["sandbox_image"].as_str(), Some("pause:3.8"));
        assert_eq!(containerd_cdi_edit(&out, 2).unwrap(), out);
        let on = "version = 3\n[plugins.'io.containerd.cri.v1.runtime']\nenable_cdi = true\ncdi_spec_dirs = ['/etc/cdi', '/var/run/cdi']\n";
        assert_eq!(containerd_cdi_edit(on, 2).unwrap(), on);
    }

    #[test]
    fn cdi_errors_name_the_key() {
        let e = containerd_cdi_edit(
            "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\"]\nenable_cdi = \"yes\"\n",
            2,
        )
        .unwrap_err();
        assert_eq!(
            e,
            "plugins.\"io.containerd.grpc.v1.cri\".enable_cdi is a string, expected a boolean"
        );
        let e = containerd_cdi_edit(
            "version = 3\n[plugins.'io.containerd.cri.v1.runtime']\ncdi_spec_dirs = '/etc/cdi'\n",
            2,
        )
        .unwrap_err();
        assert!(
            e.contains("cdi_spec_dirs is a string, expected an array of strings"),
            "{e}"
        );
        assert!(containerd_cdi_edit("version = 4\n", 2)
            .unwrap_err()
            .contains("config version 4"));
    }

    #[test]
    fn a_stated_version_must_be_one() {
        assert_eq!(
            engine_version(Engine::Containerd, Some("2.1.9")),
            Ok(Some(Version(2, 1, 9)))
        );
        assert_eq!(
            engine_version(Engine::Docker, Some("lots")).unwrap_err(),
            "--engine-version \"lots\" is not a version such as 1.7.24"
        );
        let e = cdi_version(Engine::Containerd, Some("1.6.20")).unwrap_err();
        assert!(e.starts_with("containerd 1.6.20 has no CDI"), "{e}");
        assert_eq!(
            cdi_version(Engine::Docker, Some("25.0.0")),
            Ok(Version(25, 0, 0))
        );
    }
}
