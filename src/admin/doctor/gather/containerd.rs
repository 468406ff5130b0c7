//! What in a containerd config.toml keeps the kubelet's path from working with migcage: a
//! default runtime the CRI plugin does not have (it refuses to load, and no pod starts), and a
//! migcage runtime entry that drops the annotations migcage reads (containerd passes a spec
//! annotation to a runtime only when its entry lists it).

use crate::admin::configure::{CONTAINER_ANNOTATIONS, POD_ANNOTATIONS, RUNC};

use super::engines::names_migcage;

/// The CRI plugin's `containerd` table for each config version, with its dotted name.
fn cri_table(doc: &toml::Table) -> Option<(String, &toml::Table)> {
    let version = doc
        .get("version")
        .and_then(toml::Value::as_integer)
        .unwrap_or(1);
    let plugin = match version {
        1 => "cri",
        2 => "io.containerd.grpc.v1.cri",
        3 => "io.containerd.cri.v1.runtime",
        _ => return None,
    };
    let t = doc
        .get("plugins")?
        .get(plugin)?
        .get("containerd")?
        .as_table()?;
    Some((format!("plugins.{plugin:?}.containerd"), t))
}

fn strings(entry: &toml::Table, key: &str) -> Vec<String> {
    entry
        .get(key)
        .and_then(toml::Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect()
}

/// One line per problem, naming the key and what goes wrong; empty when none.
pub fn containerd_problems(doc: &toml::Table) -> Vec<String> {
    let mut out = Vec::new();
    let Some((at, cri)) = cri_table(doc) else {
        return out;
    };
    let runtimes = cri.get("runtimes").and_then(toml::Value::as_table);
    let default = cri
        .get("default_runtime_name")
        .and_then(toml::Value::as_str)
        .unwrap_or(RUNC);
    // Without a runtimes table containerd keeps its built-in runc; with one, that table is all.
    let exists = match runtimes {
        Some(rt) => rt.contains_key(default),
        None => default == RUNC,
    };
    if !exists {
        out.push(format!(
            "{at}.default_runtime_name is {default:?}, which {at}.runtimes does not define: the CRI plugin refuses to load and no pod starts"
        ));
    }
    for (name, entry) in runtimes.into_iter().flatten() {
        let Some(entry) = entry.as_table() else {
            continue;
        };
        let binary = entry
            .get("options")
            .and_then(|o| o.get("BinaryName"))
            .and_then(toml::Value::as_str)
            .unwrap_or_default();
        if !names_migcage(binary) {
            continue;
        }
        for (key, wanted) in [
            ("container_annotations", &CONTAINER_ANNOTATIONS[..]),
            ("pod_annotations", &POD_ANNOTATIONS[..]),
        ] {
            let have = strings(entry, key);
            let missing: Vec<&str> = wanted
                .iter()
                .copied()
                .filter(|w| !have.iter().any(|h| h == w || h == "*"))
                .collect();
            if !missing.is_empty() {
                out.push(format!(
                    "{at}.runtimes.{name}.{key} lacks {}: containerd drops those annotations before migcage sees them (the device plugin's cdi-annotations and migcage.io requests are lost)",
                    missing.join(", ")
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> Vec<String> {
        containerd_problems(&text.parse().unwrap())
    }

    const CRI: &str = "[plugins.\"io.containerd.grpc.v1.cri\".containerd";

    #[test]
    fn version_3_is_read_where_containerd_2_keeps_it() {
        let v3 = "version = 3\n[plugins.'io.containerd.cri.v1.runtime'.containerd]\ndefault_runtime_name = 'crun'\n[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.migcage]\n[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.migcage.options]\nBinaryName = '/usr/bin/migcage-runtime'\n";
        let p = problems(v3);
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(p[0].starts_with("plugins.\"io.containerd.cri.v1.runtime\".containerd.default_runtime_name is \"crun\""), "{p:?}");
        assert!(p[1].starts_with("plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.migcage.container_annotations lacks"), "{p:?}");
        // The same tables under version 2's plugin name are not what a version 3 file uses.
        let misplaced = "version = 3\n[plugins.\"io.containerd.grpc.v1.cri\".containerd]\ndefault_runtime_name = \"crun\"\n";
        assert!(problems(misplaced).is_empty());
    }

    #[test]
    fn a_default_runtime_that_does_not_exist() {
        assert!(problems("version = 2\n").is_empty());
        let only_migcage = format!("version = 2\n{CRI}.runtimes.kata]\nruntime_type = \"x\"\n");
        let p = problems(&only_migcage);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains("default_runtime_name is \"runc\", which plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes does not define"), "{p:?}");
        let named = format!("version = 2\n{CRI}]\ndefault_runtime_name = \"crun\"\n");
        assert!(problems(&named)[0].contains("\"crun\""));
        let fine =
            format!("version = 2\n{CRI}]\ndefault_runtime_name = \"kata\"\n{CRI}.runtimes.kata]\n");
        assert!(problems(&fine).is_empty());
    }

    #[test]
    fn a_migcage_entry_that_drops_the_annotations() {
        let entry = |extra: &str| {
            format!("version = 2\n{CRI}.runtimes.runc]\n{CRI}.runtimes.migcage]\n{extra}{CRI}.runtimes.migcage.options]\nBinaryName = \"/usr/bin/migcage-runtime\"\n")
        };
        let p = problems(&entry(""));
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(
            p[0].contains(
                "runtimes.migcage.container_annotations lacks cdi.k8s.io/*, migcage.io/*"
            ),
            "{p:?}"
        );
        assert!(
            p[1].contains("runtimes.migcage.pod_annotations lacks migcage.io/*"),
            "{p:?}"
        );
        let p = problems(&entry(
            "container_annotations = [\"cdi.k8s.io/*\"]\npod_annotations = [\"*\"]\n",
        ));
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains("lacks migcage.io/*:"), "{p:?}");
        let ok = entry("container_annotations = [\"cdi.k8s.io/*\", \"migcage.io/*\"]\npod_annotations = [\"migcage.io/*\"]\n");
        assert!(problems(&ok).is_empty());
        // What configure writes has no problem, in every version.
        for (old, fresh) in [
            ("", 2),
            ("", 3),
            ("version = 3\n", 2),
            ("root = \"/x\"\n", 2),
        ] {
            let text = crate::admin::configure::containerd_edit(
                old,
                std::path::Path::new("/usr/bin/migcage-runtime"),
                false,
                fresh,
            )
            .unwrap();
            assert!(
                problems(&text).is_empty(),
                "{old:?}: {:?}\n{text}",
                problems(&text)
            );
        }
    }
}
