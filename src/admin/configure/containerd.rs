//! containerd: a `migcage` runtime (the runc shim with `options.BinaryName`) in config.toml,
//! comments and layout kept (through `toml_edit`).

use std::path::Path;

use toml_edit::{DocumentMut, Item, Table, TableLike};

use super::RUNTIME_NAME;

/// The CRI plugin's runtime settings table (`enable_cdi`, `cdi_spec_dirs`; its `containerd`
/// table holds the runtimes) for each config version: version 3 (containerd 2.x) split the CRI
/// plugin, and the runtimes went to `io.containerd.cri.v1.runtime`.
pub(super) fn cri_plugin(version: i64) -> Result<[&'static str; 2], String> {
    match version {
        1 => Ok(["plugins", "cri"]),
        2 => Ok(["plugins", "io.containerd.grpc.v1.cri"]),
        3 => Ok(["plugins", "io.containerd.cri.v1.runtime"]),
        _ => Err(format!(
            "config version {version} is not one migcage knows (1, 2 or 3)"
        )),
    }
}

/// The file's document and config version. An empty file becomes a `fresh` one (the layout of
/// the containerd that will read it: 2, or 3 for containerd 2.x); a file without `version` is
/// version 1, as containerd reads it.
pub(super) fn parse(old: &str, fresh: i64) -> Result<(DocumentMut, i64), String> {
    let mut doc: DocumentMut = old
        .parse()
        .map_err(|e: toml_edit::TomlError| e.to_string().replace('\n', " "))?;
    let version = match doc.get("version") {
        Some(v) => v
            .as_integer()
            .ok_or_else(|| format!("version is {v}, expected an integer"))?,
        None if doc.as_table().is_empty() => {
            doc.insert("version", toml_edit::value(fresh));
            fresh
        }
        None => 1,
    };
    cri_plugin(version)?;
    Ok((doc, version))
}

/// The table at `path` under the document's root, each made (implicit) when absent; `at` is
/// left naming it.
pub(super) fn table_at<'a>(
    doc: &'a mut DocumentMut,
    path: &[&str],
    at: &mut String,
) -> Result<&'a mut Item, String> {
    let mut item = doc.as_item_mut();
    for key in path {
        item = child(item, key, at)?;
    }
    Ok(item)
}

/// The table `key` of `item` (made, implicit, when absent); an error naming `at` otherwise.
pub(super) fn child<'a>(
    item: &'a mut Item,
    key: &str,
    at: &mut String,
) -> Result<&'a mut Item, String> {
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

pub(super) fn table_like(item: &mut Item) -> &mut dyn TableLike {
    item.as_table_like_mut().expect("checked by child()")
}

/// A table's plain keys and values (no subtables).
type KeyValues = Vec<(String, Item)>;

/// Set a string key unless it already has that value (so an unchanged file stays byte-identical).
pub(super) fn set_str(t: &mut dyn TableLike, key: &str, value: &str) -> bool {
    if t.get(key).and_then(Item::as_str) == Some(value) {
        return false;
    }
    t.insert(key, toml_edit::value(value));
    true
}

/// The annotations migcage reads from a container's spec, which containerd passes to a runtime
/// only when its entry lists them: the device plugin's CDI annotations and migcage's own (set on
/// the container by the kubelet), and migcage's own set on the pod (containerd gives pod
/// annotations to every container of the pod, and to its sandbox, which migcage never serves).
pub const CONTAINER_ANNOTATIONS: [&str; 2] = ["cdi.k8s.io/*", "migcage.io/*"];
pub const POD_ANNOTATIONS: [&str; 1] = ["migcage.io/*"];

/// containerd's built-in runtime, the default when `default_runtime_name` is not set.
pub const RUNC: &str = "runc";

/// Add the patterns missing from the string array `key` of `t` (made when absent).
pub(super) fn allow(
    t: &mut dyn TableLike,
    key: &str,
    patterns: &[&str],
    at: &str,
) -> Result<bool, String> {
    if t.get(key).is_none() {
        t.insert(key, toml_edit::value(toml_edit::Array::new()));
    }
    let item = t.get_mut(key).expect("just made");
    let type_name = item.type_name();
    let array = item
        .as_array_mut()
        .ok_or_else(|| format!("{at}.{key} is a {type_name}, expected an array of strings"))?;
    let mut changed = false;
    for p in patterns {
        if !array.iter().any(|v| v.as_str() == Some(p)) {
            array.push(*p);
            changed = true;
        }
    }
    Ok(changed)
}

/// A table's plain values (no subtables), their decoration dropped.
fn values(t: &dyn TableLike) -> KeyValues {
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
}

/// The `runc` entry's values and its options' values, to start a new `migcage` entry from.
fn runc_base(runtimes: &dyn TableLike) -> Option<(KeyValues, KeyValues)> {
    let runc = runtimes.get(RUNC).and_then(Item::as_table_like)?;
    let options = runc
        .get("options")
        .and_then(Item::as_table_like)
        .map(values)
        .unwrap_or_default();
    Some((values(runc), options))
}

/// Keep `runc` when it is (or stays) the default: containerd reads a `runtimes` table as the
/// whole set of runtimes, so a file that defines only `migcage` loses the built-in `runc` and the
/// CRI plugin refuses to load (`no corresponding runtime configured ... "runc"`).
fn keep_runc(default: &str, runtimes: &mut dyn TableLike) -> bool {
    if default != RUNC || runtimes.get(RUNC).is_some() {
        return false;
    }
    let mut t = Table::new();
    t.insert("runtime_type", toml_edit::value("io.containerd.runc.v2"));
    runtimes.insert(RUNC, Item::Table(t));
    true
}

/// config.toml with a `migcage` runtime: the runc shim with `options.BinaryName = binary`, the
/// annotations migcage reads passed through, `runc` kept as the default (unless `set_default`
/// makes migcage the default). An empty file becomes config version `fresh`. Returns the text
/// unchanged when it already says so.
pub fn containerd_edit(
    old: &str,
    binary: &Path,
    set_default: bool,
    fresh: i64,
) -> Result<String, String> {
    let (mut doc, version) = parse(old, fresh)?;
    let [plugins, cri] = cri_plugin(version)?;
    let binary = binary.display().to_string();
    let mut changed = old.trim().is_empty();
    let mut at = String::new();
    let containerd = table_at(&mut doc, &[plugins, cri, "containerd"], &mut at)?;
    // Read before --set-default changes it: runc stays when it was the default.
    let default = table_like(containerd)
        .get("default_runtime_name")
        .and_then(Item::as_str)
        .unwrap_or(RUNC)
        .to_string();
    if set_default {
        changed |= set_str(table_like(containerd), "default_runtime_name", RUNTIME_NAME);
    }
    let runtimes = child(containerd, "runtimes", &mut at)?;
    changed |= keep_runc(&default, table_like(runtimes));
    let runtimes_at = at.clone();
    let rt = table_like(runtimes);
    // A new entry starts from runc's settings (SystemdCgroup and friends), values only.
    let mut base = None;
    if rt.get(RUNTIME_NAME).is_none() {
        base = runc_base(rt);
        let mut t = Table::new();
        for (k, v) in base.iter().flat_map(|(values, _)| values) {
            t.insert(k, v.clone());
        }
        rt.insert(RUNTIME_NAME, Item::Table(t));
        changed = true;
    }
    let mut at = runtimes_at;
    let entry = child(runtimes, RUNTIME_NAME, &mut at)?;
    if let Some(t) = entry.as_table_mut() {
        t.set_implicit(false);
    }
    let e = table_like(entry);
    changed |= set_str(e, "runtime_type", "io.containerd.runc.v2");
    changed |= allow(e, "container_annotations", &CONTAINER_ANNOTATIONS, &at)?;
    changed |= allow(e, "pod_annotations", &POD_ANNOTATIONS, &at)?;
    let options = child(entry, "options", &mut at)?;
    if let Some(t) = options.as_table_mut() {
        t.set_implicit(false);
    }
    for (k, v) in base.into_iter().flat_map(|(_, opts)| opts) {
        if table_like(options).get(&k).is_none() {
            table_like(options).insert(&k, v);
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
        let out = containerd_edit(v2, bin, false, 2).unwrap();
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
        assert_eq!(containerd_edit(&out, bin, false, 2).unwrap(), out);

        let v3 = "version = 3\n[plugins.'io.containerd.cri.v1.runtime'.containerd]\n  default_runtime_name = 'runc'\n";
        let out = containerd_edit(v3, bin, true, 2).unwrap();
        let doc: toml::Table = out.parse().unwrap();
        let c = &doc["plugins"]["io.containerd.cri.v1.runtime"]["containerd"];
        assert_eq!(c["default_runtime_name"].as_str(), Some("migcage"));
        assert_eq!(
            c["runtimes"]["migcage"]["options"]["BinaryName"].as_str(),
            Some("/usr/bin/migcage-runtime")
        );
        assert_eq!(containerd_edit(&out, bin, true, 2).unwrap(), out);

        // An empty file becomes a version 2 config.
        let out = containerd_edit("", bin, false, 2).unwrap();
        let doc: toml::Table = out.parse().unwrap();
        assert_eq!(doc["version"].as_integer(), Some(2));
        assert!(
            doc["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"]["migcage"]
                .is_table()
        );
        // No version key: version 1.
        let out = containerd_edit("root = \"/var/lib/containerd\"\n", bin, false, 2).unwrap();
        let doc: toml::Table = out.parse().unwrap();
        assert_eq!(
            doc["plugins"]["cri"]["containerd"]["runtimes"]["migcage"]["options"]["BinaryName"]
                .as_str(),
            Some("/usr/bin/migcage-runtime")
        );
    }

    #[test]
    fn an_empty_file_for_containerd_2_is_version_3() {
        let bin = Path::new("/usr/bin/migcage-runtime");
        let out = containerd_edit("", bin, false, 3).unwrap();
        let doc: toml::Table = out.parse().unwrap();
        assert_eq!(doc["version"].as_integer(), Some(3), "{out}");
        let c = &doc["plugins"]["io.containerd.cri.v1.runtime"]["containerd"];
        assert_eq!(
            c["runtimes"]["runc"]["runtime_type"].as_str(),
            Some("io.containerd.runc.v2")
        );
        let m = &c["runtimes"]["migcage"];
        assert_eq!(
            m["options"]["BinaryName"].as_str(),
            Some("/usr/bin/migcage-runtime")
        );
        assert_eq!(m["container_annotations"].as_array().unwrap().len(), 2);
        assert!(
            doc["plugins"].get("io.containerd.grpc.v1.cri").is_none(),
            "{out}"
        );
        assert!(
            out.contains("[plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.migcage]"),
            "{out}"
        );
        assert_eq!(containerd_edit(&out, bin, false, 3).unwrap(), out);
        // A file that says its version keeps it, whatever containerd reads it.
        let v2 = containerd_edit("version = 2\n", bin, false, 3).unwrap();
        assert!(v2.contains("io.containerd.grpc.v1.cri"), "{v2}");
    }

    fn cri(doc: &toml::Table) -> &toml::Value {
        &doc["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]
    }

    #[test]
    fn an_empty_file_keeps_runc_as_the_default() {
        let bin = Path::new("/b");
        for set_default in [false, true] {
            let out = containerd_edit("", bin, set_default, 2).unwrap();
            let doc: toml::Table = out.parse().unwrap();
            let c = cri(&doc);
            assert_eq!(
                c["runtimes"]["runc"]["runtime_type"].as_str(),
                Some("io.containerd.runc.v2"),
                "{out}"
            );
            assert_eq!(
                c.get("default_runtime_name").and_then(|d| d.as_str()),
                set_default.then_some("migcage")
            );
            assert_eq!(containerd_edit(&out, bin, set_default, 2).unwrap(), out);
        }
        // Another default that exists: no runc is added.
        let other = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd]\ndefault_runtime_name = \"crun\"\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.crun]\nruntime_type = \"io.containerd.runc.v2\"\n";
        let doc: toml::Table = containerd_edit(other, bin, false, 2)
            .unwrap()
            .parse()
            .unwrap();
        assert!(cri(&doc)["runtimes"].get("runc").is_none());
        // Other runtimes but no runc, runc the default (unset): runc comes back.
        let kata = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.kata]\nruntime_type = \"io.containerd.kata.v2\"\n";
        let doc: toml::Table = containerd_edit(kata, bin, false, 2)
            .unwrap()
            .parse()
            .unwrap();
        let rt = &cri(&doc)["runtimes"];
        assert!(rt["runc"].is_table() && rt["kata"].is_table() && rt["migcage"].is_table());
    }

    #[test]
    fn the_entry_passes_the_annotations_migcage_reads() {
        let bin = Path::new("/b");
        let doc: toml::Table = containerd_edit("", bin, false, 2).unwrap().parse().unwrap();
        let m = &cri(&doc)["runtimes"]["migcage"];
        let strs = |k: &str| -> Vec<String> {
            m[k].as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(
            strs("container_annotations"),
            ["cdi.k8s.io/*", "migcage.io/*"]
        );
        assert_eq!(strs("pod_annotations"), ["migcage.io/*"]);
        // An entry with its own patterns keeps them; runc's empty lists are not copied as such.
        let own = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\ncontainer_annotations = []\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.migcage]\ncontainer_annotations = [\"x.io/*\", \"migcage.io/*\"]\n";
        let out = containerd_edit(own, bin, false, 2).unwrap();
        let doc: toml::Table = out.parse().unwrap();
        let c = cri(&doc);
        assert_eq!(
            c["runtimes"]["migcage"]["container_annotations"],
            toml::Value::Array(vec![
                "x.io/*".into(),
                "migcage.io/*".into(),
                "cdi.k8s.io/*".into()
            ])
        );
        assert_eq!(
            c["runtimes"]["runc"]["container_annotations"]
                .as_array()
                .unwrap()
                .len(),
            0
        );
        let bad = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.migcage]\npod_annotations = \"migcage.io/*\"\n";
        let e = containerd_edit(bad, bin, false, 2).unwrap_err();
        assert!(
            e.contains("migcage.pod_annotations is a string, expected an array"),
            "{e}"
        );
    }

    #[test]
    fn containerd_errors_name_the_key() {
        let bin = Path::new("/b");
        let e = containerd_edit("version = 9\n", bin, false, 2).unwrap_err();
        assert!(e.contains("version 9"), "{e}");
        let e = containerd_edit("version = 2\nplugins = 3\n", bin, false, 2).unwrap_err();
        assert!(e.contains("plugins"), "{e}");
        let e = containerd_edit(
            "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd]\nruntimes = \"x\"\n",
            bin,
            false,
            2,
        )
        .unwrap_err();
        assert!(
            e.contains("runtimes") && e.contains("expected a table"),
            "{e}"
        );
        assert!(containerd_edit("[[[", bin, false, 2).is_err());
        // Inline tables are tables too.
        let out = containerd_edit(
            "version = 2\nplugins = {\"io.containerd.grpc.v1.cri\" = {containerd = {runtimes = {}}}}\n",
            bin,
            false,
            2,
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
