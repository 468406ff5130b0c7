//! `migcage config get KEY`, `config set KEY VALUE` and `config default`, as the reference
//! toolkit's `nvidia-ctk config` has them. A key is dotted (`log.level`, `requests.accept_env`);
//! a value takes its type from the key's default, so `set log.level debug` needs no quotes and
//! `set nvml_timeout_ms ten` is refused. `set` edits the file in place, comments and layout kept,
//! and writes nothing that [`Config::parse`] would refuse.

use std::path::Path;

use crate::config::Config;

/// What a key or value was wrong about, in one line.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(String);

/// The value of `key` in `config`: a string as it is, anything else as TOML writes it.
pub fn get(config: &Config, key: &str) -> Result<String, KeyError> {
    let table = toml::Value::try_from(config).map_err(|e| KeyError(e.to_string()))?;
    let value = lookup(&table, key)?;
    Ok(match value {
        toml::Value::String(s) => s.clone(),
        v => v.to_string(),
    })
}

/// The value of `key` in `config` as JSON (`config get --json`): its TOML type kept.
pub fn get_json(config: &Config, key: &str) -> Result<serde_json::Value, KeyError> {
    let table = toml::Value::try_from(config).map_err(|e| KeyError(e.to_string()))?;
    serde_json::to_value(lookup(&table, key)?).map_err(|e| KeyError(e.to_string()))
}

/// `text` (the configuration file, "" when there is none) with `key` set to `value`, checked as
/// migcage will read it (`path` names the file in the errors).
pub fn set(text: &str, path: &Path, key: &str, value: &str) -> Result<String, KeyError> {
    let defaults = toml::Value::try_from(Config::default()).map_err(|e| KeyError(e.to_string()))?;
    let typed = typed_value(lookup(&defaults, key)?, key, value)?;
    let mut doc: toml_edit::DocumentMut = text.parse().map_err(|e| {
        KeyError(format!(
            "{} does not parse as TOML ({e}); fix it first",
            path.display()
        ))
    })?;
    let (tables, leaf) = match key.rsplit_once('.') {
        Some((t, l)) => (t.split('.').collect::<Vec<_>>(), l),
        None => (Vec::new(), key),
    };
    let mut table = doc.as_table_mut();
    for t in tables {
        table = table
            .entry(t)
            .or_insert_with(toml_edit::table)
            .as_table_mut()
            .ok_or_else(|| {
                KeyError(format!(
                    "{} holds {t} as a value, not a table",
                    path.display()
                ))
            })?;
    }
    table[leaf] = toml_edit::value(typed);
    let out = doc.to_string();
    Config::parse(&out, path).map_err(|e| KeyError(e.to_string()))?;
    Ok(out)
}

/// The built-in configuration, as TOML: what applies where the file says nothing.
pub fn default_toml() -> Result<String, KeyError> {
    toml::to_string_pretty(&Config::default()).map_err(|e| KeyError(e.to_string()))
}

fn lookup<'a>(table: &'a toml::Value, key: &str) -> Result<&'a toml::Value, KeyError> {
    let mut v = table;
    for part in key.split('.') {
        v = v.get(part).ok_or_else(|| {
            KeyError(format!(
                "there is no configuration key {key}; 'migcage config default' shows every key"
            ))
        })?;
    }
    if v.is_table() {
        return Err(KeyError(format!(
            "{key} is a table, not a key; name one of its keys ('migcage config default' shows them)"
        )));
    }
    Ok(v)
}

/// `value` as the type of `default`, the key's built-in value.
fn typed_value(
    default: &toml::Value,
    key: &str,
    value: &str,
) -> Result<toml_edit::Value, KeyError> {
    let wrong = |what: &str| KeyError(format!("{key} takes {what}, not {value:?}"));
    Ok(match default {
        toml::Value::String(_) => value.into(),
        toml::Value::Integer(_) => value
            .parse::<i64>()
            .map_err(|_| wrong("a whole number"))?
            .into(),
        toml::Value::Boolean(_) => value
            .parse::<bool>()
            .map_err(|_| wrong("true or false"))?
            .into(),
        // Arrays (host.runtime_versions): written as TOML writes them, ["runc 1.1.5"].
        _ => value
            .parse::<toml_edit::Value>()
            .ok()
            .filter(|v| v.is_array())
            .ok_or_else(|| wrong("a TOML array such as [\"runc 1.1.5\"]"))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "/etc/migcage/config.toml";

    #[test]
    fn gets_a_key_as_a_shell_reads_it() {
        let c = Config::default();
        assert_eq!(get(&c, "log.level").unwrap(), "info");
        assert_eq!(get(&c, "requests.accept_env").unwrap(), "true");
        assert_eq!(get(&c, "host.runtime_versions").unwrap(), "[]");
        let e = get(&c, "log.colour").unwrap_err().to_string();
        assert!(
            e.starts_with("there is no configuration key log.colour"),
            "{e}"
        );
        let e = get(&c, "log").unwrap_err().to_string();
        assert!(e.starts_with("log is a table"), "{e}");
    }

    #[test]
    fn sets_a_key_keeping_comments_and_checking_the_result() {
        let text = "# mine\n[log]\n# keep me\nlevel = \"info\"\n";
        let out = set(text, Path::new(FILE), "log.level", "debug").unwrap();
        assert_eq!(out, "# mine\n[log]\n# keep me\nlevel = \"debug\"\n");
        let out = set("", Path::new(FILE), "nvml_timeout_ms", "500").unwrap();
        assert_eq!(out, "nvml_timeout_ms = 500\n");
        let out = set("", Path::new(FILE), "requests.accept_env", "false").unwrap();
        let c = Config::parse(&out, Path::new(FILE)).unwrap();
        assert!(!c.requests.accept_env, "{out}");
        let out = set(
            "",
            Path::new(FILE),
            "host.runtime_versions",
            "[\"runc 1.1.5\"]",
        )
        .unwrap();
        let c = Config::parse(&out, Path::new(FILE)).unwrap();
        assert_eq!(c.host.runtime_versions, ["runc 1.1.5"]);
    }

    #[test]
    fn refuses_what_migcage_would_refuse() {
        let e = |k, v| set("", Path::new(FILE), k, v).unwrap_err().to_string();
        assert_eq!(
            e("nvml_timeout_ms", "ten"),
            "nvml_timeout_ms takes a whole number, not \"ten\""
        );
        assert!(e("log.colour", "red").starts_with("there is no configuration key"));
        assert!(e("host.runtime_versions", "[\"runc\"]").contains("not a runtime and its version"));
        assert!(e("host.dev_char_dir", "dev/char").contains("not an absolute path"));
        let broken = set("[log", Path::new(FILE), "log.level", "debug")
            .unwrap_err()
            .to_string();
        assert!(
            broken.starts_with("/etc/migcage/config.toml does not parse as TOML"),
            "{broken}"
        );
    }

    #[test]
    fn the_default_is_the_built_in_configuration() {
        let text = default_toml().unwrap();
        assert_eq!(
            Config::parse(&text, Path::new(FILE)).unwrap(),
            Config::default()
        );
    }
}
