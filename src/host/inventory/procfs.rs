//! Parsers for the files the NVIDIA kernel driver writes under procfs.
//!
//! Every function here is pure: text in, a typed value or a [`ParseError`] out. The error names
//! the file (the `file` argument, used only for messages), the line number and what was expected,
//! so that a malformed file on a host can be found and fixed. Reading the files (through the
//! configured `proc_root`) is the job of the parent module.
//!
//! The formats, as the driver prints them:
//! - `/proc/devices`: `Character devices:` then `%3d %s` lines, then `Block devices:` and more.
//! - `/proc/driver/nvidia/version`: `NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15
//!   Tue Mar  5 22:23:56 UTC 2024` (or `... Open Kernel Module for x86_64  550.54.15  Release
//!   Build ...`), then `GCC version: ...`.
//! - `/proc/driver/nvidia/gpus/<bus>/information`: `Key: \t value` lines (`Model`, `GPU UUID`,
//!   `Bus Location`, `Device Minor`, ...).
//! - `/proc/driver/nvidia-caps/mig-minors`: `<name> <minor>` lines, where the name is `config`,
//!   `monitor`, `gpu<N>/gi<G>/access` or `gpu<N>/gi<G>/ci<C>/access` (`N` is the GPU's minor).
//! - `/proc/driver/nvidia/capabilities/.../access`: `DeviceFileMinor: %d`, `DeviceFileMode: %d`
//!   (decimal, so 0444 reads `292`) and `DeviceFileModify: %d`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A malformed driver file: which file, which line (when one line is at fault), what was
/// expected there and what was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ParseError {
    pub file: PathBuf,
    /// 1-based line number; `None` when the file as a whole lacks something.
    pub line: Option<usize>,
    pub expected: String,
    /// The offending line (trimmed, shortened), empty when `line` is `None`.
    pub found: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(
                f,
                "malformed {}: line {line}: expected {}, found {:?}; the driver wrote an unknown format or proc_root points at a wrong tree",
                self.file.display(),
                self.expected,
                self.found
            ),
            None => write!(
                f,
                "malformed {}: expected {}; the driver wrote an unknown format or proc_root points at a wrong tree",
                self.file.display(),
                self.expected
            ),
        }
    }
}

fn line_error(file: &Path, line: usize, expected: impl Into<String>, found: &str) -> ParseError {
    let mut found = found.trim().to_string();
    if found.len() > 120 {
        let mut cut = 120;
        while !found.is_char_boundary(cut) {
            cut -= 1;
        }
        found.truncate(cut);
        found.push_str("...");
    }
    ParseError {
        file: file.to_path_buf(),
        line: Some(line),
        expected: expected.into(),
        found,
    }
}

fn file_error(file: &Path, expected: impl Into<String>) -> ParseError {
    ParseError {
        file: file.to_path_buf(),
        line: None,
        expected: expected.into(),
        found: String::new(),
    }
}

/// A decimal number without sign, as the driver prints `%d`/`%u` of a non-negative value.
fn parse_u32(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Character device majors of the NVIDIA drivers, from `/proc/devices`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeviceMajors {
    /// `nvidia-frontend` (older drivers: `nvidia`).
    pub frontend: Option<u32>,
    /// `nvidia-uvm`.
    pub uvm: Option<u32>,
    /// `nvidia-caps`.
    pub caps: Option<u32>,
}

/// Parse `/proc/devices`. Only the `Character devices:` section counts: a block device of the
/// same name is not ours.
pub fn parse_devices(text: &str, file: &Path) -> Result<DeviceMajors, ParseError> {
    #[derive(PartialEq)]
    enum Section {
        None,
        Char,
        Other,
    }
    let mut section = Section::None;
    let mut majors = DeviceMajors::default();
    let mut legacy_frontend = None;
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        if line.ends_with(':') {
            section = if line == "Character devices:" {
                Section::Char
            } else {
                Section::Other
            };
            continue;
        }
        let Some((major, name)) = line.split_once(char::is_whitespace) else {
            return Err(line_error(
                file,
                n + 1,
                "`<major> <name>` or a `... devices:` header",
                raw,
            ));
        };
        let name = name.trim();
        let Some(major) = parse_u32(major) else {
            return Err(line_error(
                file,
                n + 1,
                "`<major> <name>` or a `... devices:` header",
                raw,
            ));
        };
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(line_error(
                file,
                n + 1,
                "`<major> <name>` or a `... devices:` header",
                raw,
            ));
        }
        if section != Section::Char {
            if section == Section::None {
                return Err(line_error(
                    file,
                    n + 1,
                    "the `Character devices:` header first",
                    raw,
                ));
            }
            continue;
        }
        match name {
            "nvidia-frontend" => majors.frontend = Some(major),
            "nvidia" => legacy_frontend = Some(major),
            "nvidia-uvm" => majors.uvm = Some(major),
            "nvidia-caps" => majors.caps = Some(major),
            _ => {}
        }
    }
    if majors.frontend.is_none() {
        majors.frontend = legacy_frontend;
    }
    Ok(majors)
}

/// Parse `/proc/driver/nvidia/version` into the driver version (`550.54.15`).
pub fn parse_version(text: &str, file: &Path) -> Result<String, ParseError> {
    const EXPECTED: &str = "`NVRM version: NVIDIA UNIX ... Kernel Module ... <version> ...`";
    for (n, raw) in text.lines().enumerate() {
        let Some(rest) = raw.trim_start().strip_prefix("NVRM version:") else {
            continue;
        };
        let version = rest.split_whitespace().find(|t| is_driver_version(t));
        return match version {
            Some(v) => Ok(v.to_string()),
            None => Err(line_error(
                file,
                n + 1,
                format!("{EXPECTED} with a version like 550.54.15"),
                raw,
            )),
        };
    }
    Err(file_error(file, format!("a line {EXPECTED}")))
}

/// `550.54.15`, `535.104.05`, `560.35`: digits separated by dots, at least two parts.
fn is_driver_version(t: &str) -> bool {
    let parts: Vec<&str> = t.split('.').collect();
    parts.len() >= 2
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// What `/proc/driver/nvidia/gpus/<bus>/information` says about one GPU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuInformation {
    /// `Model`, such as `NVIDIA A100-SXM4-40GB`.
    pub model: String,
    /// `GPU UUID`; `None` when the line is absent or the driver could not read it yet (older
    /// drivers print `GPU-????????-...` for a GPU that is not initialized).
    pub uuid: Option<String>,
    /// `Bus Location`, `0000:07:00.0`.
    pub bus_location: String,
    /// `Device Minor`: `/dev/nvidia<minor>`.
    pub minor: u32,
}

/// Parse a GPU's `information` file.
pub fn parse_gpu_information(text: &str, file: &Path) -> Result<GpuInformation, ParseError> {
    let mut model = None;
    let mut uuid = None;
    let mut bus = None;
    let mut minor = None;
    for (n, raw) in text.lines().enumerate() {
        if raw.trim().is_empty() {
            continue;
        }
        let Some((key, value)) = raw.split_once(':') else {
            return Err(line_error(file, n + 1, "`<key>: <value>`", raw));
        };
        let (key, value) = (key.trim(), value.trim());
        match key {
            "Model" => model = Some(value.to_string()),
            "GPU UUID" => {
                if !value.starts_with("GPU-") || value.len() < 8 {
                    return Err(line_error(file, n + 1, "`GPU UUID: GPU-<uuid>`", raw));
                }
                if !value.contains('?') {
                    uuid = Some(value.to_string());
                }
            }
            "Bus Location" => {
                if !is_proc_bus_id(value) {
                    return Err(line_error(
                        file,
                        n + 1,
                        "`Bus Location: <dddd>:<bb>:<dd>.<f>`",
                        raw,
                    ));
                }
                bus = Some(value.to_ascii_lowercase());
            }
            "Device Minor" => match parse_u32(value) {
                Some(m) => minor = Some(m),
                None => return Err(line_error(file, n + 1, "`Device Minor: <number>`", raw)),
            },
            _ => {}
        }
    }
    let model = model.ok_or_else(|| file_error(file, "a `Model:` line"))?;
    let bus_location = bus.ok_or_else(|| file_error(file, "a `Bus Location:` line"))?;
    let minor = minor.ok_or_else(|| file_error(file, "a `Device Minor:` line"))?;
    Ok(GpuInformation {
        model,
        uuid,
        bus_location,
        minor,
    })
}

/// `0000:07:00.0`: 4 hex digits of domain, 2 of bus, 2 of device, 1 of function.
pub fn is_proc_bus_id(s: &str) -> bool {
    let b = s.as_bytes();
    let hex = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_hexdigit);
    b.len() == 12
        && b[4] == b':'
        && b[7] == b':'
        && b[10] == b'.'
        && hex(0..4)
        && hex(5..7)
        && hex(8..10)
        && hex(11..12)
}

/// `/proc/driver/nvidia-caps/mig-minors`: every capability the driver can hand out, by name,
/// to its minor under `/dev/nvidia-caps/nvidia-cap<minor>`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigMinors {
    /// `config`.
    pub config: Option<u32>,
    /// `monitor`.
    pub monitor: Option<u32>,
    /// `gpu<gpu minor>/gi<G>/access`, keyed by (GPU minor, G).
    pub gi_access: BTreeMap<(u32, u32), u32>,
    /// `gpu<gpu minor>/gi<G>/ci<C>/access`, keyed by (GPU minor, G, C).
    pub ci_access: BTreeMap<(u32, u32, u32), u32>,
    /// Well-formed entries of names this parser does not know (a newer driver's), kept by name.
    pub other: BTreeMap<String, u32>,
}

impl MigMinors {
    /// Caps minor of `gpu<gpu_minor>/gi<gi>/access`.
    pub fn gi(&self, gpu_minor: u32, gi: u32) -> Option<u32> {
        self.gi_access.get(&(gpu_minor, gi)).copied()
    }

    /// Caps minor of `gpu<gpu_minor>/gi<gi>/ci<ci>/access`.
    pub fn ci(&self, gpu_minor: u32, gi: u32, ci: u32) -> Option<u32> {
        self.ci_access.get(&(gpu_minor, gi, ci)).copied()
    }
}

/// The name of a GPU instance's access capability in mig-minors, `gpu0/gi7/access`.
pub fn gi_access_name(gpu_minor: u32, gi: u32) -> String {
    format!("gpu{gpu_minor}/gi{gi}/access")
}

/// The name of a compute instance's access capability in mig-minors, `gpu0/gi7/ci0/access`.
pub fn ci_access_name(gpu_minor: u32, gi: u32, ci: u32) -> String {
    format!("gpu{gpu_minor}/gi{gi}/ci{ci}/access")
}

/// Parse `/proc/driver/nvidia-caps/mig-minors`.
pub fn parse_mig_minors(text: &str, file: &Path) -> Result<MigMinors, ParseError> {
    const EXPECTED: &str = "`<name> <minor>` such as `gpu0/gi1/access 12`";
    let mut out = MigMinors::default();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        let mut fields = line.split_whitespace();
        let (Some(name), Some(minor), None) = (fields.next(), fields.next(), fields.next()) else {
            return Err(line_error(file, n + 1, EXPECTED, raw));
        };
        let Some(minor) = parse_u32(minor) else {
            return Err(line_error(file, n + 1, EXPECTED, raw));
        };
        let repeated = match name {
            "config" => out.config.replace(minor).is_some(),
            "monitor" => out.monitor.replace(minor).is_some(),
            _ if name.starts_with("gpu") => {
                let Some(key) = parse_mig_cap_name(name) else {
                    return Err(line_error(
                        file,
                        n + 1,
                        "`gpu<N>/gi<G>/access` or `gpu<N>/gi<G>/ci<C>/access`",
                        raw,
                    ));
                };
                match key {
                    (gpu, gi, None) => out.gi_access.insert((gpu, gi), minor).is_some(),
                    (gpu, gi, Some(ci)) => out.ci_access.insert((gpu, gi, ci), minor).is_some(),
                }
            }
            _ => out.other.insert(name.to_string(), minor).is_some(),
        };
        if repeated {
            return Err(line_error(
                file,
                n + 1,
                format!("each name once, but {name} repeats"),
                raw,
            ));
        }
    }
    Ok(out)
}

/// `gpu3/gi7/access` -> (3, 7, None); `gpu3/gi7/ci1/access` -> (3, 7, Some(1)).
fn parse_mig_cap_name(name: &str) -> Option<(u32, u32, Option<u32>)> {
    let parts: Vec<&str> = name.split('/').collect();
    let num = |s: &str, prefix: &str| s.strip_prefix(prefix).and_then(parse_u32);
    match parts.as_slice() {
        [gpu, gi, "access"] => Some((num(gpu, "gpu")?, num(gi, "gi")?, None)),
        [gpu, gi, ci, "access"] => Some((num(gpu, "gpu")?, num(gi, "gi")?, Some(num(ci, "ci")?))),
        _ => None,
    }
}

/// A capability's procfs file (`.../capabilities/gpu0/mig/gi7/access`, `.../mig/config`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapAccess {
    /// `DeviceFileMinor`: the minor of `/dev/nvidia-caps/nvidia-cap<minor>`.
    pub minor: u32,
    /// `DeviceFileMode`: permission bits (printed in decimal by the driver).
    pub mode: u32,
    /// `DeviceFileModify`: whether nvidia-modprobe may create and fix the device file.
    pub modify: bool,
}

/// Parse a capability access file.
pub fn parse_cap_access(text: &str, file: &Path) -> Result<CapAccess, ParseError> {
    let mut minor = None;
    let mut mode = None;
    let mut modify = None;
    for (n, raw) in text.lines().enumerate() {
        if raw.trim().is_empty() {
            continue;
        }
        let Some((key, value)) = raw.split_once(':') else {
            return Err(line_error(file, n + 1, "`<key>: <number>`", raw));
        };
        let (key, value) = (key.trim(), value.trim());
        match key {
            "DeviceFileMinor" => {
                minor =
                    Some(parse_u32(value).ok_or_else(|| {
                        line_error(file, n + 1, "`DeviceFileMinor: <number>`", raw)
                    })?)
            }
            "DeviceFileMode" => {
                let m = parse_u32(value).filter(|m| *m <= 0o7777).ok_or_else(|| {
                    line_error(
                        file,
                        n + 1,
                        "`DeviceFileMode: <decimal mode up to 4095>`",
                        raw,
                    )
                })?;
                mode = Some(m);
            }
            "DeviceFileModify" => {
                modify = Some(match value {
                    "0" => false,
                    "1" => true,
                    _ => return Err(line_error(file, n + 1, "`DeviceFileModify: 0` or `1`", raw)),
                })
            }
            _ => {}
        }
    }
    Ok(CapAccess {
        minor: minor.ok_or_else(|| file_error(file, "a `DeviceFileMinor:` line"))?,
        mode: mode.ok_or_else(|| file_error(file, "a `DeviceFileMode:` line"))?,
        modify: modify.ok_or_else(|| file_error(file, "a `DeviceFileModify:` line"))?,
    })
}

#[cfg(test)]
mod tests;
