//! The few fields of config.json a request is read from, checked for their shape.

use std::collections::BTreeMap;

use serde_json::Value;

use super::RequestError;

const CAP_SYS_ADMIN: &str = "CAP_SYS_ADMIN";

/// The fields of config.json this module reads.
pub(super) struct SpecView {
    /// The last value of each variable.
    pub(super) env: BTreeMap<String, String>,
    pub(super) annotations: BTreeMap<String, String>,
    pub(super) destinations: Vec<String>,
    pub(super) privileged: bool,
}

impl SpecView {
    /// Read the fields, failing on the first one of the wrong shape (in the order below).
    pub(super) fn read(spec: &Value) -> Result<SpecView, RequestError> {
        if !spec.is_object() {
            return Err(bad("(top level)", "is not a JSON object", "an object"));
        }
        let process = spec.get("process").filter(|v| !v.is_null());
        if process.is_some_and(|p| !p.is_object()) {
            return Err(bad("process", "is not an object", "an object"));
        }
        Ok(SpecView {
            env: read_env(process)?,
            privileged: read_privileged(process)?,
            annotations: read_annotations(spec)?,
            destinations: read_destinations(spec)?,
        })
    }
}

fn bad(field: &'static str, problem: &str, expected: &'static str) -> RequestError {
    RequestError::Spec {
        field,
        problem: problem.to_string(),
        expected,
    }
}

/// `process.env`: the last value of each variable.
fn read_env(process: Option<&Value>) -> Result<BTreeMap<String, String>, RequestError> {
    let mut env = BTreeMap::new();
    if let Some(list) = process.and_then(|p| p.get("env")).filter(|v| !v.is_null()) {
        let list = list.as_array().ok_or_else(|| {
            bad(
                "process.env",
                "is not an array",
                "an array of \"KEY=value\" strings",
            )
        })?;
        for entry in list {
            let entry = entry.as_str().ok_or_else(|| {
                bad(
                    "process.env",
                    "holds a non-string",
                    "an array of \"KEY=value\" strings",
                )
            })?;
            // An entry without "=" is not a variable (execve passes it on; getenv never sees
            // it).
            if let Some((k, v)) = entry.split_once('=') {
                env.insert(k.to_string(), v.to_string());
            }
        }
    }
    Ok(env)
}

/// `CAP_SYS_ADMIN` in `process.capabilities.bounding`.
fn read_privileged(process: Option<&Value>) -> Result<bool, RequestError> {
    let bounding = process
        .and_then(|p| p.get("capabilities"))
        .and_then(|c| c.get("bounding"))
        .filter(|v| !v.is_null());
    Ok(match bounding {
        None => false,
        Some(b) => b
            .as_array()
            .ok_or_else(|| {
                bad(
                    "process.capabilities.bounding",
                    "is not an array",
                    "an array of capability names such as \"CAP_SYS_ADMIN\"",
                )
            })?
            .iter()
            .any(|c| c.as_str() == Some(CAP_SYS_ADMIN)),
    })
}

/// `annotations`: an object of strings.
fn read_annotations(spec: &Value) -> Result<BTreeMap<String, String>, RequestError> {
    let mut annotations = BTreeMap::new();
    if let Some(map) = spec.get("annotations").filter(|v| !v.is_null()) {
        let map = map
            .as_object()
            .ok_or_else(|| bad("annotations", "is not an object", "an object of strings"))?;
        for (k, v) in map {
            let v = v.as_str().ok_or_else(|| {
                bad(
                    "annotations",
                    "holds a non-string value",
                    "an object of strings",
                )
            })?;
            annotations.insert(k.clone(), v.to_string());
        }
    }
    Ok(annotations)
}

/// `mounts[].destination`.
fn read_destinations(spec: &Value) -> Result<Vec<String>, RequestError> {
    let mut destinations = Vec::new();
    if let Some(list) = spec.get("mounts").filter(|v| !v.is_null()) {
        let list = list.as_array().ok_or_else(|| {
            bad(
                "mounts",
                "is not an array",
                "an array of objects with a \"destination\"",
            )
        })?;
        for m in list {
            let d = m
                .get("destination")
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    bad(
                        "mounts",
                        "holds a mount without a string destination",
                        "an array of objects with a \"destination\"",
                    )
                })?;
            destinations.push(d.to_string());
        }
    }
    Ok(destinations)
}
