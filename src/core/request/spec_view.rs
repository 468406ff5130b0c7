//! The few fields of config.json a request is read from, checked for their shape.

use std::collections::BTreeMap;

use serde_json::Value;

use super::RequestError;

const CAP_SYS_ADMIN: &str = "CAP_SYS_ADMIN";
/// Why a container without the capability is not privileged.
pub(super) const NO_CAP_SYS_ADMIN: &str =
    "the container does not have CAP_SYS_ADMIN in its bounding set";
/// Why a container with the capability in a user namespace of its own is not privileged.
pub(super) const OWN_USER_NAMESPACE: &str = "the container has CAP_SYS_ADMIN only inside its own user namespace (linux.namespaces has \"user\"), which is no privilege on the host";

/// Does the spec give the container a user namespace of its own (`linux.namespaces` has an entry
/// of type `user`, new or joined)? A `linux.namespaces` of the wrong shape counts as one: the
/// answer decides privilege, and a broken spec gets none.
pub fn has_user_namespace(spec: &Value) -> bool {
    match spec.pointer("/linux/namespaces") {
        None | Some(Value::Null) => false,
        Some(Value::Array(list)) => list
            .iter()
            .any(|ns| ns.get("type").and_then(Value::as_str) == Some("user") || !ns.is_object()),
        Some(_) => true,
    }
}

/// The fields of config.json this module reads.
pub(super) struct SpecView {
    /// The last value of each variable.
    pub(super) env: BTreeMap<String, String>,
    pub(super) annotations: BTreeMap<String, String>,
    pub(super) destinations: Vec<String>,
    /// Privilege on the host: `CAP_SYS_ADMIN` in the bounding set and no user namespace of its
    /// own (where the capability is only the namespace's).
    pub(super) privileged: bool,
    /// Why the container is not privileged, when it is not.
    pub(super) unprivileged_why: &'static str,
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
        let env = read_env(process)?;
        let cap_sys_admin = read_cap_sys_admin(process)?;
        let user_namespace = has_user_namespace(spec);
        Ok(SpecView {
            env,
            privileged: cap_sys_admin && !user_namespace,
            unprivileged_why: if !cap_sys_admin {
                NO_CAP_SYS_ADMIN
            } else {
                OWN_USER_NAMESPACE
            },
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
fn read_cap_sys_admin(process: Option<&Value>) -> Result<bool, RequestError> {
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
