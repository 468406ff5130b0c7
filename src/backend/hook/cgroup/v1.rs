//! cgroup v1 devices controller: append allow rules to `devices.allow`.
//!
//! Only concrete rules are written (`c 195:0 rw`): never a wildcard type, major or minor, and
//! never a deny (the runtime already wrote the container's own rules; migcage only adds its
//! nodes). Writing a rule the cgroup already has changes nothing, so applying twice is harmless.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::core::edits::{DeviceRule, DeviceType};

/// An error writing cgroup v1 device rules; each carries the file.
#[derive(Debug, thiserror::Error)]
pub enum V1Error {
    #[error("refusing to write device rule {rule:?} to {path}: {reason}")]
    Refused {
        path: PathBuf,
        rule: DeviceRule,
        reason: &'static str,
    },
    #[error("cannot open {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {line:?} to {path}: {source}")]
    Write {
        path: PathBuf,
        line: String,
        source: std::io::Error,
    },
}

/// The `devices.allow` line for a concrete allow rule, such as `c 195:0 rw`; `Err` holds why the
/// rule may not be written.
pub fn allow_line(rule: &DeviceRule) -> Result<String, &'static str> {
    if !rule.allow {
        return Err("not an allow rule");
    }
    let kind = match rule.kind {
        DeviceType::Char => 'c',
        DeviceType::Block => 'b',
        DeviceType::All => return Err("wildcard device type"),
    };
    let (Some(major), Some(minor)) = (rule.major, rule.minor) else {
        return Err("wildcard major or minor");
    };
    if !(rule.access.read || rule.access.write || rule.access.mknod) {
        return Err("empty access");
    }
    Ok(format!("{kind} {major}:{minor} {}", rule.access))
}

/// Append `rules` to `<cgroup_dir>/devices.allow`, one write per rule. Every rule is checked
/// before anything is written.
pub fn allow_devices(cgroup_dir: &Path, rules: &[DeviceRule]) -> Result<(), V1Error> {
    let path = cgroup_dir.join("devices.allow");
    let lines = rules
        .iter()
        .map(|r| {
            allow_line(r).map_err(|reason| V1Error::Refused {
                path: path.clone(),
                rule: *r,
                reason,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if lines.is_empty() {
        return Ok(());
    }
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .map_err(|source| V1Error::Open {
            path: path.clone(),
            source,
        })?;
    for line in lines {
        // The kernel parses one rule per write(2); a short line goes out in one call.
        let buf = format!("{line}\n");
        match f.write(buf.as_bytes()) {
            Ok(n) if n == buf.len() => {}
            Ok(n) => {
                return Err(V1Error::Write {
                    path,
                    line,
                    source: std::io::Error::other(format!(
                        "short write: {n} of {} bytes",
                        buf.len()
                    )),
                })
            }
            Err(source) => return Err(V1Error::Write { path, line, source }),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::edits::Access;

    fn rule(
        kind: DeviceType,
        major: Option<u32>,
        minor: Option<u32>,
        access: Access,
    ) -> DeviceRule {
        DeviceRule {
            allow: true,
            kind,
            major,
            minor,
            access,
        }
    }

    #[test]
    fn lines_are_concrete() {
        assert_eq!(
            allow_line(&rule(DeviceType::Char, Some(195), Some(0), Access::RW)).unwrap(),
            "c 195:0 rw"
        );
        assert_eq!(
            allow_line(&rule(DeviceType::Block, Some(8), Some(1), Access::ALL)).unwrap(),
            "b 8:1 rwm"
        );
        assert!(allow_line(&rule(DeviceType::All, Some(195), Some(0), Access::RW)).is_err());
        assert!(allow_line(&rule(DeviceType::Char, None, Some(0), Access::RW)).is_err());
        assert!(allow_line(&rule(DeviceType::Char, Some(195), None, Access::RW)).is_err());
        assert!(allow_line(&rule(
            DeviceType::Char,
            Some(195),
            Some(0),
            Access::default()
        ))
        .is_err());
        let mut deny = rule(DeviceType::Char, Some(195), Some(0), Access::RW);
        deny.allow = false;
        assert!(allow_line(&deny).is_err());
    }

    #[test]
    fn writes_one_line_per_rule_and_refuses_before_writing() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("devices.allow");
        std::fs::write(&f, "").unwrap();
        let ok = [
            rule(DeviceType::Char, Some(195), Some(0), Access::RW),
            rule(
                DeviceType::Char,
                Some(509),
                Some(12),
                Access {
                    read: true,
                    ..Access::default()
                },
            ),
        ];
        allow_devices(d.path(), &ok).unwrap();
        assert_eq!(
            std::fs::read_to_string(&f).unwrap(),
            "c 195:0 rw\nc 509:12 r\n"
        );
        let bad = [ok[0], rule(DeviceType::Char, None, None, Access::RW)];
        let e = allow_devices(d.path(), &bad).unwrap_err().to_string();
        assert!(
            e.contains(&f.display().to_string()) && e.contains("wildcard"),
            "{e}"
        );
        // Nothing of the refused batch was written.
        assert_eq!(
            std::fs::read_to_string(&f).unwrap(),
            "c 195:0 rw\nc 509:12 r\n"
        );
        let e = allow_devices(&d.path().join("gone"), &ok)
            .unwrap_err()
            .to_string();
        assert!(e.contains("gone/devices.allow"), "{e}");
    }
}
