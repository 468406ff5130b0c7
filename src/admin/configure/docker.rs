//! Docker: `runtimes.migcage` in daemon.json, every other entry kept in its place and its text.

use std::path::Path;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{json, Value};

use super::RUNTIME_NAME;

/// A JSON object's entries in file order, each value as its original text.
struct Entries(Vec<(String, Box<RawValue>)>);

impl<'de> Deserialize<'de> for Entries {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Entries;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entries, A::Error> {
                let mut v = Vec::new();
                while let Some((k, raw)) = map.next_entry::<String, Box<RawValue>>()? {
                    v.push((k, raw));
                }
                Ok(Entries(v))
            }
        }
        d.deserialize_map(V)
    }
}

/// Entries with their values as text (original, or rendered by us).
type TextEntries = Vec<(String, String)>;

fn parse_entries(text: &str, what: &str) -> Result<TextEntries, String> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let e: Entries = serde_json::from_str(text).map_err(|e| format!("{what}: {e}"))?;
    Ok(e.0
        .into_iter()
        .map(|(k, v)| (k, v.get().to_string()))
        .collect())
}

/// The indentation the file uses (its first indented line), two spaces when none.
fn indent_unit(text: &str) -> String {
    text.lines()
        .find_map(|l| {
            let ws: String = l.chars().take_while(|c| *c == ' ' || *c == '\t').collect();
            (!ws.is_empty() && ws.len() < l.len()).then_some(ws)
        })
        .unwrap_or_else(|| "  ".into())
}

fn render_value(v: &Value, depth: usize, unit: &str) -> String {
    use serde::Serialize;
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(unit.as_bytes());
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    v.serialize(&mut ser).expect("a Value serializes");
    String::from_utf8(buf)
        .expect("JSON is UTF-8")
        .replace('\n', &format!("\n{}", unit.repeat(depth)))
}

fn render_object(entries: &TextEntries, depth: usize, unit: &str) -> String {
    if entries.is_empty() {
        return "{}".into();
    }
    let mut s = String::from("{\n");
    for (i, (k, v)) in entries.iter().enumerate() {
        s.push_str(&unit.repeat(depth + 1));
        s.push_str(&serde_json::to_string(k).expect("a string serializes"));
        s.push_str(": ");
        s.push_str(v);
        if i + 1 < entries.len() {
            s.push(',');
        }
        s.push('\n');
    }
    s.push_str(&unit.repeat(depth));
    s.push('}');
    s
}

/// Set `key` to `value` in `entries` (an object at `depth`); false when it already has it.
fn set_entry(
    entries: &mut TextEntries,
    key: &str,
    value: &Value,
    depth: usize,
    unit: &str,
) -> bool {
    let text = render_value(value, depth + 1, unit);
    match entries.iter_mut().find(|(k, _)| k == key) {
        Some((_, raw)) => {
            if serde_json::from_str::<Value>(raw).ok().as_ref() == Some(value) {
                return false;
            }
            *raw = text;
        }
        None => entries.push((key.to_string(), text)),
    }
    true
}

/// daemon.json with `runtimes.migcage` naming `binary` (and `default-runtime`, if asked). Returns
/// the text unchanged when it already says so; every other entry keeps its place and its text.
pub fn docker_edit(old: &str, binary: &Path, set_default: bool) -> Result<String, String> {
    let mut top = parse_entries(old, "not a JSON object")?;
    let unit = indent_unit(old);
    let want = json!({"path": binary.display().to_string()});
    let mut changed = false;
    match top.iter_mut().find(|(k, _)| k == "runtimes") {
        Some((_, raw)) => {
            let mut runtimes = parse_entries(raw, "\"runtimes\" is not an object")?;
            if set_entry(&mut runtimes, RUNTIME_NAME, &want, 1, &unit) {
                *raw = render_object(&runtimes, 1, &unit);
                changed = true;
            }
        }
        None => {
            let mut runtimes = Vec::new();
            set_entry(&mut runtimes, RUNTIME_NAME, &want, 1, &unit);
            top.push(("runtimes".into(), render_object(&runtimes, 1, &unit)));
            changed = true;
        }
    }
    if set_default {
        changed |= set_entry(&mut top, "default-runtime", &json!(RUNTIME_NAME), 0, &unit);
    }
    if !changed {
        return Ok(old.to_string());
    }
    Ok(render_object(&top, 0, &unit) + "\n")
}

/// daemon.json with Docker's CDI on (`features.cdi = true`; Docker 25 to 28.1 need it, later
/// ones have it on by default, where it is harmless): `docker run --device nvidia.com/gpu=0:1`
/// then injects the device from migcage's spec. Every other entry, and every other feature,
/// keeps its place and its text; unchanged text comes back when it already says so.
pub fn docker_cdi_edit(old: &str) -> Result<String, String> {
    let mut top = parse_entries(old, "not a JSON object")?;
    let unit = indent_unit(old);
    let on = json!(true);
    let changed = match top.iter_mut().find(|(k, _)| k == "features") {
        Some((_, raw)) => {
            let mut features = parse_entries(raw, "\"features\" is not an object")?;
            let changed = set_entry(&mut features, "cdi", &on, 1, &unit);
            if changed {
                *raw = render_object(&features, 1, &unit);
            }
            changed
        }
        None => {
            let mut features = Vec::new();
            set_entry(&mut features, "cdi", &on, 1, &unit);
            top.push(("features".into(), render_object(&features, 1, &unit)));
            true
        }
    };
    if !changed {
        return Ok(old.to_string());
    }
    Ok(render_object(&top, 0, &unit) + "\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAEMON_JSON: &str = r#"{
    "data-root": "/data/docker",
    "log-opts": {"max-size": "100m",   "max-file": "3"},
    "runtimes": {
        "nvidia": {
            "path": "nvidia-container-runtime",
            "runtimeArgs": []
        }
    },
    "exec-opts": ["native.cgroupdriver=systemd"]
}
"#;

    #[test]
    fn docker_keeps_every_other_entry_and_its_text() {
        let out = docker_edit(DAEMON_JSON, Path::new("/usr/bin/migcage-runtime"), false).unwrap();
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            v["runtimes"]["migcage"],
            json!({"path": "/usr/bin/migcage-runtime"})
        );
        assert_eq!(v["runtimes"]["nvidia"]["path"], "nvidia-container-runtime");
        // Untouched entries keep their exact text and order.
        assert!(
            out.contains(r#""log-opts": {"max-size": "100m",   "max-file": "3"},"#),
            "{out}"
        );
        let keys: Vec<_> = ["data-root", "log-opts", "runtimes", "exec-opts"]
            .iter()
            .map(|k| out.find(&format!("\"{k}\"")).unwrap())
            .collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "{out}");
        // The file's 4-space indentation is kept for what migcage adds.
        assert!(out.contains("\n        \"migcage\": {\n            \"path\": \"/usr/bin/migcage-runtime\"\n        }\n    },"), "{out}");
        // Idempotent: the same text comes back.
        assert_eq!(
            docker_edit(&out, Path::new("/usr/bin/migcage-runtime"), false).unwrap(),
            out
        );
        // Default runtime.
        let d = docker_edit(&out, Path::new("/usr/bin/migcage-runtime"), true).unwrap();
        let v: Value = serde_json::from_str(&d).unwrap();
        assert_eq!(v["default-runtime"], "migcage");
        assert_eq!(
            docker_edit(&d, Path::new("/usr/bin/migcage-runtime"), true).unwrap(),
            d
        );
    }

    #[test]
    fn docker_from_nothing_and_fixes_an_old_entry() {
        let out = docker_edit("", Path::new("/opt/m/migcage-runtime"), false).unwrap();
        assert_eq!(
            out,
            "{\n  \"runtimes\": {\n    \"migcage\": {\n      \"path\": \"/opt/m/migcage-runtime\"\n    }\n  }\n}\n"
        );
        let old =
            r#"{"runtimes":{"migcage":{"path":"/usr/bin/migcage","runtimeArgs":["runtime"]}}}"#;
        let out = docker_edit(old, Path::new("/usr/bin/migcage-runtime"), false).unwrap();
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            v["runtimes"]["migcage"],
            json!({"path": "/usr/bin/migcage-runtime"})
        );
        for bad in ["[1]", "{\"runtimes\": []}", "{"] {
            assert!(docker_edit(bad, Path::new("/x"), false).is_err(), "{bad}");
        }
    }

    #[test]
    fn docker_cdi_turns_the_feature_on_and_keeps_the_rest() {
        assert_eq!(
            docker_cdi_edit("").unwrap(),
            "{\n  \"features\": {\n    \"cdi\": true\n  }\n}\n"
        );
        let out = docker_cdi_edit(DAEMON_JSON).unwrap();
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["features"], json!({"cdi": true}));
        assert!(
            out.contains(r#""log-opts": {"max-size": "100m",   "max-file": "3"},"#),
            "{out}"
        );
        assert_eq!(docker_cdi_edit(&out).unwrap(), out);
        let old = r#"{"features": {"buildkit": true, "cdi": false}}"#;
        let out = docker_cdi_edit(old).unwrap();
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["features"], json!({"buildkit": true, "cdi": true}));
        assert!(out.find("buildkit") < out.find("cdi"), "{out}");
        let on = r#"{"features": {"cdi": true}}"#;
        assert_eq!(docker_cdi_edit(on).unwrap(), on);
        let e = docker_cdi_edit(r#"{"features": ["cdi"]}"#).unwrap_err();
        assert!(e.starts_with("\"features\" is not an object: "), "{e}");
    }
}
