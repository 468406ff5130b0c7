//! The full device rule list a runtime puts in its cgroup v2 program, rebuilt from config.json
//! (the implicit rules per runtime and version are in [`super::defaults`]; what follows is
//! runc 1.1's behaviour, which crun shares but for the path rule of step 2).
//!
//! On cgroup v2 a hook grants access by replacing the runtime's program, so the replacement must
//! carry everything the runtime's did. runc 1.1 (`libcontainer/specconv`) builds:
//!
//! 1. `linux.resources.devices`, in order (type `a` when empty, `-1`/absent major or minor is the
//!    wildcard, an empty access is an error);
//! 2. then its implicit `AllowedDevices`, appended *after* the spec's rules (so a spec cannot
//!    deny them), minus each default that has a `path` equal to the path of a `linux.devices`
//!    entry (the spec's device "takes priority").
//!
//! runc 1.1 adds **no** cgroup rule for `linux.devices` entries themselves: checked against
//! runc 1.1.5 here, a spec listing `/dev/fuse` (10:229) in `linux.devices` gets no `c 10:229`
//! in `devices.list`, and one listing `/dev/null` there loses the default `c 1:3 rwm` (the
//! container fails with "open /dev/null: operation not permitted"). The caller that adds a
//! device node also adds its rule to `linux.resources.devices`.

use serde_json::Value;

use crate::core::edits::{Access, DeviceRule, DeviceType};

/// An error in config.json's device fields; the message names the JSON path.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error("config.json {field}: {message}")]
    Invalid { field: String, message: String },
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> RulesError {
    RulesError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

pub use super::defaults::DefaultDevice;
use super::defaults::{implicit_rules, Runtime};

/// runc 1.1's `specconv.AllowedDevices`, in its order (see [`super::defaults::RUNC`]).
pub const RUNC_1_1_ALLOWED_DEVICES: [DefaultDevice; 11] = super::defaults::RUNC;

/// Parse an OCI access string the way runc accepts it: any of `r`, `w`, `m`, in any order
/// (repeats are harmless); anything else, or nothing, is an error.
fn parse_access(s: &str) -> Option<Access> {
    if s.is_empty() {
        return None;
    }
    let mut a = Access::default();
    for c in s.chars() {
        match c {
            'r' => a.read = true,
            'w' => a.write = true,
            'm' => a.mknod = true,
            _ => return None,
        }
    }
    Some(a)
}

/// A major or minor: absent, null or -1 is the wildcard.
fn parse_number(v: Option<&Value>, field: &str) -> Result<Option<u32>, RulesError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_i64() {
            Some(-1) => Ok(None),
            Some(n) => u32::try_from(n)
                .map(Some)
                .map_err(|_| invalid(field, format!("{n} is not a device number"))),
            None => Err(invalid(field, format!("{v} is not an integer"))),
        },
    }
}

/// `linux.resources.devices`, in order.
pub fn spec_rules(spec: &Value) -> Result<Vec<DeviceRule>, RulesError> {
    let Some(list) = spec.pointer("/linux/resources/devices") else {
        return Ok(Vec::new());
    };
    let list = match list {
        Value::Null => return Ok(Vec::new()),
        Value::Array(a) => a,
        other => {
            return Err(invalid(
                "linux.resources.devices",
                format!("expected an array, got {other}"),
            ))
        }
    };
    list.iter()
        .enumerate()
        .map(|(i, d)| {
            let at = format!("linux.resources.devices[{i}]");
            if !d.is_object() {
                return Err(invalid(&at, "expected an object"));
            }
            let allow = match d.get("allow") {
                Some(Value::Bool(b)) => *b,
                _ => return Err(invalid(format!("{at}.allow"), "expected true or false")),
            };
            let kind = match d.get("type") {
                None | Some(Value::Null) => DeviceType::All,
                Some(Value::String(t)) => match t.as_str() {
                    "" | "a" => DeviceType::All,
                    "c" => DeviceType::Char,
                    "b" => DeviceType::Block,
                    _ => {
                        return Err(invalid(
                            format!("{at}.type"),
                            format!("invalid cgroup device type {t:?}"),
                        ))
                    }
                },
                Some(other) => {
                    return Err(invalid(
                        format!("{at}.type"),
                        format!("expected a string, got {other}"),
                    ))
                }
            };
            let major = parse_number(d.get("major"), &format!("{at}.major"))?;
            let minor = parse_number(d.get("minor"), &format!("{at}.minor"))?;
            let access = match d.get("access") {
                Some(Value::String(s)) => parse_access(s).ok_or_else(|| {
                    invalid(format!("{at}.access"), format!("invalid access {s:?}"))
                })?,
                _ => return Err(invalid(format!("{at}.access"), "field cannot be empty")),
            };
            Ok(DeviceRule {
                allow,
                kind,
                major,
                minor,
                access,
            })
        })
        .collect()
}

/// The paths of `linux.devices` entries.
fn spec_device_paths(spec: &Value) -> Result<Vec<&str>, RulesError> {
    match spec.pointer("/linux/devices") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => a
            .iter()
            .enumerate()
            .map(|(i, d)| {
                d.get("path")
                    .and_then(Value::as_str)
                    .ok_or_else(|| invalid(format!("linux.devices[{i}].path"), "expected a string"))
            })
            .collect(),
        Some(other) => Err(invalid(
            "linux.devices",
            format!("expected an array, got {other}"),
        )),
    }
}

/// The full rule list runc 1.1 built for its own program from `spec` (config.json).
pub fn effective_rules(spec: &Value) -> Result<Vec<DeviceRule>, RulesError> {
    effective_rules_for(spec, Runtime::RUNC_1_1)
}

/// The full rule list `runtime` built for its own program from `spec`: the spec's rules, then the
/// runtime's implicit ones ([`implicit_rules`]: for an unknown version or runtime, only those
/// every candidate adds).
pub fn effective_rules_for(spec: &Value, runtime: Runtime) -> Result<Vec<DeviceRule>, RulesError> {
    let mut rules = spec_rules(spec)?;
    let paths = spec_device_paths(spec)?;
    rules.extend(implicit_rules(runtime, &paths));
    Ok(rules)
}

/// [`effective_rules`] followed by migcage's own allow rules (which, coming last, win).
pub fn effective_rules_with(
    spec: &Value,
    ours: &[DeviceRule],
) -> Result<Vec<DeviceRule>, RulesError> {
    effective_rules_for_with(spec, Runtime::RUNC_1_1, ours)
}

/// [`effective_rules_for`] followed by migcage's own allow rules (which, coming last, win).
pub fn effective_rules_for_with(
    spec: &Value,
    runtime: Runtime,
    ours: &[DeviceRule],
) -> Result<Vec<DeviceRule>, RulesError> {
    let mut rules = effective_rules_for(spec, runtime)?;
    rules.extend_from_slice(ours);
    Ok(rules)
}

/// Whether `spec`'s own `linux.resources.devices` already give every rule of `ours`: each one is
/// there as an allow rule for the same type and numbers with at least its access, and no deny
/// rule after it could take any of that back. The runtime applies the spec's rules itself (its
/// v2 program, `devices.allow` on v1, `DeviceAllow=` under systemd), so a hook has nothing to
/// add: this is the spec `migcage runtime` wrote. A spec that cannot be read gives false (the
/// grant then reads it and names the field).
pub fn spec_grants(spec: &Value, ours: &[DeviceRule]) -> bool {
    let Ok(rules) = spec_rules(spec) else {
        return false;
    };
    let overlaps = |deny: &DeviceRule, r: &DeviceRule| {
        let kind = deny.kind == DeviceType::All || deny.kind == r.kind;
        let num = |d: Option<u32>, n: Option<u32>| d.is_none() || n.is_none() || d == n;
        kind && num(deny.major, r.major)
            && num(deny.minor, r.minor)
            && deny.access.intersects(r.access)
    };
    !ours.is_empty()
        && ours.iter().all(|r| {
            r.allow
                && rules.iter().enumerate().any(|(i, g)| {
                    g.allow
                        && g.kind == r.kind
                        && g.major == r.major
                        && g.minor == r.minor
                        && g.access.contains(r.access)
                        && !rules[i + 1..].iter().any(|d| !d.allow && overlaps(d, r))
                })
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const RUNC_SPEC: &str = include_str!("testdata/runc-1.1.5-spec.json");

    use crate::core::edits::DeviceRule as Rule;

    fn rule(
        allow: bool,
        kind: DeviceType,
        major: Option<u32>,
        minor: Option<u32>,
        acc: &str,
    ) -> DeviceRule {
        Rule::of(allow, kind, major, minor, acc)
    }

    fn defaults() -> Vec<DeviceRule> {
        RUNC_1_1_ALLOWED_DEVICES.iter().map(|d| d.rule).collect()
    }

    #[test]
    fn runc_spec_default_is_deny_all_then_runc_defaults() {
        let spec: Value = serde_json::from_str(RUNC_SPEC).unwrap();
        let got = effective_rules(&spec).unwrap();
        let mut want = vec![rule(false, DeviceType::All, None, None, "rwm")];
        want.extend(defaults());
        assert_eq!(got, want);
        // As runc 1.1.5 listed them in devices.list (v1): the defaults, and nothing else allowed.
        let lines: Vec<String> = got[1..]
            .iter()
            .map(|r| {
                let n = |v: Option<u32>| v.map_or("*".to_string(), |v| v.to_string());
                let t = match r.kind {
                    DeviceType::Char => 'c',
                    DeviceType::Block => 'b',
                    DeviceType::All => 'a',
                };
                format!("{t} {}:{} {}", n(r.major), n(r.minor), r.access)
            })
            .collect();
        let mut sorted = lines.clone();
        sorted.sort();
        // runc 1.1.5's devices.list, as read from a running container's cgroup.
        let mut listed = [
            "b *:* m",
            "c *:* m",
            "c 1:3 rwm",
            "c 1:5 rwm",
            "c 1:7 rwm",
            "c 1:8 rwm",
            "c 1:9 rwm",
            "c 5:0 rwm",
            "c 5:2 rwm",
            "c 10:200 rwm",
            "c 136:* rwm",
        ];
        listed.sort();
        assert_eq!(sorted, listed);
    }

    #[test]
    fn docker_shaped_spec_keeps_order_and_drops_defaults_named_by_linux_devices() {
        let spec = json!({
            "ociVersion": "1.0.2",
            "linux": {
                "devices": [
                    {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 438},
                    {"path": "/dev/null", "type": "c", "major": 1, "minor": 3}
                ],
                "resources": {
                    "devices": [
                        {"allow": false, "access": "rwm"},
                        {"allow": true, "type": "c", "major": 10, "minor": 229, "access": "rwm"},
                        {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rw"},
                        {"allow": true, "type": "b", "major": 8, "access": "r"},
                        {"allow": false, "type": "c", "major": -1, "minor": 7, "access": "mw"},
                        {"allow": true, "type": "", "major": null, "minor": 4, "access": "rrw"}
                    ]
                }
            }
        });
        let got = effective_rules(&spec).unwrap();
        let mut want = vec![
            rule(false, DeviceType::All, None, None, "rwm"),
            rule(true, DeviceType::Char, Some(10), Some(229), "rwm"),
            rule(true, DeviceType::Char, Some(1), Some(3), "rw"),
            rule(true, DeviceType::Block, Some(8), None, "r"),
            rule(false, DeviceType::Char, None, Some(7), "wm"),
            rule(true, DeviceType::All, None, Some(4), "rw"),
        ];
        // /dev/null's default is gone (the spec named the path); no rule for linux.devices.
        want.extend(
            RUNC_1_1_ALLOWED_DEVICES
                .iter()
                .filter(|d| d.path != Some("/dev/null"))
                .map(|d| d.rule),
        );
        assert_eq!(got, want);
        assert!(!got.contains(&rule(true, DeviceType::Char, Some(1), Some(3), "rwm")));
    }

    #[test]
    fn ours_come_last() {
        let spec: Value = serde_json::from_str(RUNC_SPEC).unwrap();
        let ours = [rule(true, DeviceType::Char, Some(195), Some(0), "rw")];
        let got = effective_rules_with(&spec, &ours).unwrap();
        assert_eq!(got.len(), 1 + RUNC_1_1_ALLOWED_DEVICES.len() + 1);
        assert_eq!(got.last(), Some(&ours[0]));
    }

    #[test]
    fn no_linux_section_is_just_the_defaults() {
        assert_eq!(
            effective_rules(&json!({"ociVersion": "1.0.2"})).unwrap(),
            defaults()
        );
        assert_eq!(
            effective_rules(&json!({"linux": {"resources": {"devices": null}}})).unwrap(),
            defaults()
        );
    }

    #[test]
    fn malformed_entries_are_errors_naming_the_field() {
        let cases = [
            (
                json!([{"allow": true, "type": "c", "major": 1, "minor": 3}]),
                "linux.resources.devices[0].access",
            ),
            (
                json!([{"allow": true, "access": ""}]),
                "linux.resources.devices[0].access",
            ),
            (
                json!([{"allow": true, "access": "rx"}]),
                "linux.resources.devices[0].access",
            ),
            (
                json!([{"access": "rw"}]),
                "linux.resources.devices[0].allow",
            ),
            (
                json!([{"allow": true, "access": "r"}, {"allow": true, "type": "p", "access": "r"}]),
                "linux.resources.devices[1].type",
            ),
            (
                json!([{"allow": true, "major": -2, "access": "r"}]),
                "linux.resources.devices[0].major",
            ),
            (
                json!([{"allow": true, "minor": "3", "access": "r"}]),
                "linux.resources.devices[0].minor",
            ),
            (
                json!([{"allow": true, "major": 4294967296_i64, "access": "r"}]),
                "linux.resources.devices[0].major",
            ),
            (json!({"allow": true}), "linux.resources.devices"),
        ];
        for (devices, field) in cases {
            let spec = json!({"linux": {"resources": {"devices": devices}}});
            let e = effective_rules(&spec).unwrap_err().to_string();
            assert!(e.contains(field), "{e} should name {field}");
        }
        let e = effective_rules(&json!({"linux": {"devices": [{"type": "c"}]}}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("linux.devices[0].path"), "{e}");
    }

    #[test]
    fn a_spec_grants_our_rules_only_when_each_is_there_and_not_taken_back() {
        let node = |minor: u32| DeviceRule {
            allow: true,
            kind: DeviceType::Char,
            major: Some(195),
            minor: Some(minor),
            access: Access::RW,
        };
        let ours = [node(0), node(255)];
        let deny_all = json!({"allow": false, "access": "rwm"});
        let allow = |minor: u32, access: &str| json!({"allow": true, "type": "c", "major": 195, "minor": minor, "access": access});
        let spec = |devices: Value| json!({"linux": {"resources": {"devices": devices}}});
        assert!(spec_grants(
            &spec(json!([deny_all, allow(0, "rw"), allow(255, "rwm")])),
            &ours
        ));
        // One missing, one with less access, one denied again after, nothing asked.
        assert!(!spec_grants(
            &spec(json!([deny_all, allow(0, "rw")])),
            &ours
        ));
        assert!(!spec_grants(
            &spec(json!([deny_all, allow(0, "rw"), allow(255, "r")])),
            &ours
        ));
        let deny_w = json!({"allow": false, "type": "c", "major": 195, "access": "w"});
        assert!(!spec_grants(
            &spec(json!([deny_all, allow(0, "rw"), allow(255, "rw"), deny_w])),
            &ours
        ));
        assert!(!spec_grants(
            &spec(json!([allow(0, "rw"), allow(255, "rw"), deny_all])),
            &ours
        ));
        // A deny before the allow is overridden by it; one for another major is no matter.
        let deny_other = json!({"allow": false, "type": "c", "major": 10, "access": "rwm"});
        assert!(spec_grants(
            &spec(json!([
                deny_all,
                allow(0, "rw"),
                allow(255, "rw"),
                deny_other
            ])),
            &ours
        ));
        assert!(!spec_grants(&spec(json!([deny_all, allow(0, "rw")])), &[]));
        assert!(!spec_grants(&spec(json!("not a list")), &ours));
        assert!(!spec_grants(&json!({}), &ours));
    }
}
