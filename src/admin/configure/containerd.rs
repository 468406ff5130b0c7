//! containerd: a `migcage` runtime (the runc shim with `options.BinaryName`) in config.toml,
//! comments and layout kept (through `toml_edit`).

use std::path::Path;

use toml_edit::{DocumentMut, Item, Table, TableLike};

use super::RUNTIME_NAME;

/// The CRI plugin's `containerd` table for each config version.
fn cri_path(version: i64) -> Option<[&'static str; 3]> {
    match version {
        1 => Some(["plugins", "cri", "containerd"]),
        2 => Some(["plugins", "io.containerd.grpc.v1.cri", "containerd"]),
        3 => Some(["plugins", "io.containerd.cri.v1.runtime", "containerd"]),
        _ => None,
    }
}

/// The table `key` of `item` (made, implicit, when absent); an error naming `at` otherwise.
fn child<'a>(item: &'a mut Item, key: &str, at: &mut String) -> Result<&'a mut Item, String> {
    let here = at.clone();
    if !at.is_empty() {
        at.push('.');
    }
    at.push_str(&if key.contains('.') {
        format!("{key:?}")
    } else {
        key.to_string()
    });
    let t = item
        .as_table_like_mut()
        .ok_or_else(|| format!("{here} is not a table"))?;
    if t.get(key).is_none() {
        let mut new = Table::new();
        new.set_implicit(true);
        t.insert(key, Item::Table(new));
    }
    let c = t.get_mut(key).expect("just made");
    if c.as_table_like().is_none() {
        return Err(format!("{at} is a {}, expected a table", c.type_name()));
    }
    Ok(c)
}

fn table_like(item: &mut Item) -> &mut dyn TableLike {
    item.as_table_like_mut().expect("checked by child()")
}

/// A table's plain keys and values (no subtables).
type KeyValues = Vec<(String, Item)>;

/// Set a string key unless it already has that value (so an unchanged file stays byte-identical).
fn set_str(t: &mut dyn TableLike, key: &str, value: &str) -> bool {
    if t.get(key).and_then(Item::as_str) == Some(value) {
        return false;
    }
    t.insert(key, toml_edit::value(value));
    true
}

/// config.toml with a `migcage` runtime: the runc shim with `options.BinaryName = binary` (and
/// `default_runtime_name`, if asked). Returns the text unchanged when it already says so.
pub fn containerd_edit(old: &str, binary: &Path, set_default: bool) -> Result<String, String> {
    let mut doc: DocumentMut = old
        .parse()
        .map_err(|e: toml_edit::TomlError| e.to_string().replace('\n', " "))?;
    let version = match doc.get("version") {
        Some(v) => v
            .as_integer()
            .ok_or_else(|| format!("version is {v}, expected an integer"))?,
        None if doc.as_table().is_empty() => {
            doc.insert("version", toml_edit::value(2));
            2
        }
        // containerd reads a config without `version` as version 1.
        None => 1,
    };
    let path = cri_path(version)
        .ok_or_else(|| format!("config version {version} is not one migcage knows (1, 2 or 3)"))?;
    let binary = binary.display().to_string();
    let mut changed = old.trim().is_empty();
    let mut at = String::new();
    let mut item = doc.as_item_mut();
    for key in path {
        item = child(item, key, &mut at)?;
    }
    let containerd = item;
    if set_default {
        changed |= set_str(table_like(containerd), "default_runtime_name", RUNTIME_NAME);
    }
    let runtimes = child(containerd, "runtimes", &mut at)?;
    let runtimes_at = at.clone();
    // A new entry starts from runc's settings (SystemdCgroup and friends), values only.
    let mut base: Option<(KeyValues, KeyValues)> = None;
    let rt = table_like(runtimes);
    if rt.get(RUNTIME_NAME).is_none() {
        if let Some(runc) = rt.get("runc").and_then(Item::as_table_like) {
            let values = |t: &dyn TableLike| -> KeyValues {
                t.iter()
                    .filter(|(_, v)| v.is_value())
                    .map(|(k, v)| {
                        let mut v = v.clone();
                        if let Some(v) = v.as_value_mut() {
                            v.decor_mut().clear();
                        }
                        (k.to_string(), v)
                    })
                    .collect()
            };
            let options = runc
                .get("options")
                .and_then(Item::as_table_like)
                .map(values)
                .unwrap_or_default();
            base = Some((values(runc), options));
        }
        let mut t = Table::new();
        if let Some((values, _)) = &base {
            for (k, v) in values {
                t.insert(k, v.clone());
            }
        }
        rt.insert(RUNTIME_NAME, Item::Table(t));
        changed = true;
    }
    let mut at = runtimes_at;
    let entry = child(runtimes, RUNTIME_NAME, &mut at)?;
    if let Some(t) = entry.as_table_mut() {
        t.set_implicit(false);
    }
    changed |= set_str(table_like(entry), "runtime_type", "io.containerd.runc.v2");
    let options = child(entry, "options", &mut at)?;
    if let Some(t) = options.as_table_mut() {
        t.set_implicit(false);
    }
    if let Some((_, opts)) = base {
        for (k, v) in opts {
            if table_like(options).get(&k).is_none() {
                table_like(options).insert(&k, v);
            }
        }
    }
    changed |= set_str(table_like(options), "BinaryName", &binary);
    if !changed {
        return Ok(old.to_string());
    }
    Ok(doc.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containerd_versions() {
        let bin = Path::new("/usr/bin/migcage-runtime");
        let v2 = "version = 2\n# keep me\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\n  runtime_type = \"io.containerd.runc.v2\"\n  [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options]\n    SystemdCgroup = true\n";
        let out = containerd_edit(v2, bin, false).unwrap();
        assert!(out.starts_with(v2), "{out}");
        let doc: toml::Table = out.parse().unwrap();
        let m = &doc["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"]["migcage"];
        assert_eq!(m["runtime_type"].as_str(), Some("io.containerd.runc.v2"));
        assert_eq!(
            m["options"]["BinaryName"].as_str(),
            Some("/usr/bin/migcage-runtime")
        );
        // runc's settings carry over.
        assert_eq!(m["options"]["SystemdCgroup"].as_bool(), Some(true));
        assert_eq!(containerd_edit(&out, bin, false).unwrap(), out);

        let v3 = "version = 3\n[plugins.'io.containerd.cri.v1.runtime'.containerd]\n  default_runtime_name = 'runc'\n";
        let out = containerd_edit(v3, bin, true).unwrap();
        let doc: toml::Table = out.parse().unwrap();
        let c = &doc["plugins"]["io.containerd.cri.v1.runtime"]["containerd"];
        assert_eq!(c["default_runtime_name"].as_str(), Some("migcage"));
        assert_eq!(
            c["runtimes"]["migcage"]["options"]["BinaryName"].as_str(),
            Some("/usr/bin/migcage-runtime")
        );
        assert_eq!(containerd_edit(&out, bin, true).unwrap(), out);

        // An empty file becomes a version 2 config.
        let out = containerd_edit("", bin, false).unwrap();
        let doc: toml::Table = out.parse().unwrap();
        assert_eq!(doc["version"].as_integer(), Some(2));
        assert!(
            doc["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"]["migcage"]
                .is_table()
        );
        // No version key: version 1.
        let out = containerd_edit("root = \"/var/lib/containerd\"\n", bin, false).unwrap();
        let doc: toml::Table = out.parse().unwrap();
        assert_eq!(
            doc["plugins"]["cri"]["containerd"]["runtimes"]["migcage"]["options"]["BinaryName"]
                .as_str(),
            Some("/usr/bin/migcage-runtime")
        );
    }

    #[test]
    fn containerd_errors_name_the_key() {
        let bin = Path::new("/b");
        let e = containerd_edit("version = 9\n", bin, false).unwrap_err();
        assert!(e.contains("version 9"), "{e}");
        let e = containerd_edit("version = 2\nplugins = 3\n", bin, false).unwrap_err();
        assert!(e.contains("plugins"), "{e}");
        let e = containerd_edit(
            "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd]\nruntimes = \"x\"\n",
            bin,
            false,
        )
        .unwrap_err();
        assert!(
            e.contains("runtimes") && e.contains("expected a table"),
            "{e}"
        );
        assert!(containerd_edit("[[[", bin, false).is_err());
        // Inline tables are tables too.
        let out = containerd_edit(
            "version = 2\nplugins = {\"io.containerd.grpc.v1.cri\" = {containerd = {runtimes = {}}}}\n",
            bin,
            false,
        )
        .unwrap();
        let doc: toml::Table = out.parse().unwrap();
        assert_eq!(
            doc["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"]["migcage"]
                ["options"]["BinaryName"]
                .as_str(),
            Some("/b")
        );
    }
}
