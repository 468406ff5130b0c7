//! mig-parted's configuration format, so that users keep their files:
//!
//! ```yaml
//! version: v1
//! mig-configs:
//!   all-1g.5gb:
//!     - devices: all
//!       mig-enabled: true
//!       mig-devices:
//!         "1g.5gb": 7
//!   mixed:
//!     - devices: [0, 1]
//!       mig-enabled: true
//!       mig-devices: { "3g.20gb": 1, "2g.10gb": 1, "1g.5gb": 2 }
//!     - devices: all
//!       mig-enabled: false
//! ```
//!
//! `devices` is `all` or a list of GPU indexes; `device-filter` (a PCI device id such as
//! `0x20B010DE`, or a list of them) narrows an entry to GPUs of those models. A GPU that several
//! entries name takes the first. Parsed with serde_yaml (already migcage's YAML crate for CDI
//! specs); a YAML error names the file and line.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A mig-parted configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigPartedFile {
    pub version: String,
    #[serde(rename = "mig-configs")]
    pub mig_configs: BTreeMap<String, Vec<DeviceSpec>>,
}

/// One entry of a named configuration: which GPUs, and their layout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceSpec {
    pub devices: Devices,
    #[serde(
        rename = "device-filter",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub device_filter: Option<DeviceFilter>,
    #[serde(rename = "mig-enabled")]
    pub mig_enabled: bool,
    #[serde(
        rename = "mig-devices",
        default,
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub mig_devices: BTreeMap<String, u32>,
}

/// `devices: all` or `devices: [0, 2]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Devices {
    All(AllKeyword),
    List(Vec<u32>),
}

/// The word `all`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AllKeyword {
    All,
}

/// `device-filter: 0x20B010DE` or a list of such ids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum DeviceFilter {
    One(String),
    Many(Vec<String>),
}

/// Why a configuration file cannot be used; one line each.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}:{line}: {message}")]
    Yaml {
        file: String,
        line: usize,
        message: String,
    },
    #[error("{file}: version {found:?} is not supported; mig-parted's format is version: v1")]
    Version { file: String, found: String },
    #[error("{file}: no configuration named {name:?}; it has: {known}")]
    UnknownName {
        file: String,
        name: String,
        known: String,
    },
}

impl DeviceFilter {
    fn matches(&self, pci_device_id: u32) -> bool {
        let one = |s: &str| {
            let hex = s.trim().trim_start_matches("0x").trim_start_matches("0X");
            u32::from_str_radix(hex, 16).ok() == Some(pci_device_id)
        };
        match self {
            DeviceFilter::One(s) => one(s),
            DeviceFilter::Many(v) => v.iter().any(|s| one(s)),
        }
    }
}

impl DeviceSpec {
    /// Whether this entry names GPU `index` whose PCI device id is `pci_device_id`.
    pub fn names(&self, index: u32, pci_device_id: u32) -> bool {
        let listed = match &self.devices {
            Devices::All(_) => true,
            Devices::List(v) => v.contains(&index),
        };
        listed
            && self
                .device_filter
                .as_ref()
                .is_none_or(|f| f.matches(pci_device_id))
    }
}

/// Parse `text` (from `file`, for errors) and pick the configuration `name`.
pub fn select(text: &str, file: &str, name: &str) -> Result<Vec<DeviceSpec>, ConfigError> {
    let parsed = parse(text, file)?;
    let known = || {
        parsed
            .mig_configs
            .keys()
            .cloned()
            .collect::<Vec<_>>()
            .join(", ")
    };
    match parsed.mig_configs.get(name) {
        Some(specs) => Ok(specs.clone()),
        None => Err(ConfigError::UnknownName {
            file: file.to_string(),
            name: name.to_string(),
            known: known(),
        }),
    }
}

/// Parse a whole file.
pub fn parse(text: &str, file: &str) -> Result<MigPartedFile, ConfigError> {
    let parsed: MigPartedFile = serde_yaml::from_str(text).map_err(|e| {
        let line = e.location().map(|l| l.line()).unwrap_or(1);
        // serde_yaml appends " at line N column M"; the prefix says the line already.
        let message = e.to_string();
        let message = message
            .split(" at line ")
            .next()
            .unwrap_or(&message)
            .replace(['\n', '\r'], " ");
        ConfigError::Yaml {
            file: file.to_string(),
            line,
            message,
        }
    })?;
    if parsed.version != "v1" {
        return Err(ConfigError::Version {
            file: file.to_string(),
            found: parsed.version,
        });
    }
    Ok(parsed)
}

/// A configuration file holding one configuration, `name`, as YAML.
pub fn render(name: &str, specs: &[DeviceSpec]) -> String {
    let file = MigPartedFile {
        version: "v1".into(),
        mig_configs: BTreeMap::from([(name.to_string(), specs.to_vec())]),
    };
    serde_yaml::to_string(&file).expect("a mig-parted file always serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
version: v1
mig-configs:
  all-disabled:
    - devices: all
      mig-enabled: false
  all-1g.5gb:
    - devices: all
      mig-enabled: true
      mig-devices:
        "1g.5gb": 7
  mixed:
    - devices: [0, 1]
      device-filter: "0x20B010DE"
      mig-enabled: true
      mig-devices: { "3g.20gb": 1, "2g.10gb": 1, "1g.5gb": 2 }
    - devices: all
      mig-enabled: false
"#;

    #[test]
    fn mig_parted_files_parse_and_round_trip() {
        let f = parse(FILE, "f.yaml").unwrap();
        assert_eq!(f.mig_configs.len(), 3);
        let mixed = &f.mig_configs["mixed"];
        assert!(mixed[0].names(1, 0x20B0_10DE));
        assert!(!mixed[0].names(2, 0x20B0_10DE));
        assert!(!mixed[0].names(0, 0x2330_10DE));
        assert!(mixed[1].names(5, 0));
        assert_eq!(mixed[0].mig_devices["1g.5gb"], 2);
        let again = parse(&render("mixed", mixed), "r.yaml").unwrap();
        assert_eq!(&again.mig_configs["mixed"], mixed);
    }

    #[test]
    fn errors_name_the_file_and_line() {
        let e = select("version: v1\nmig-configs:\n  a: [\n", "bad.yaml", "a")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("bad.yaml:"), "{e}");
        assert!(!e.contains('\n'), "{e}");
        let e = select(FILE, "f.yaml", "nope").unwrap_err().to_string();
        assert_eq!(
            e,
            "f.yaml: no configuration named \"nope\"; it has: all-1g.5gb, all-disabled, mixed"
        );
        let e = select("version: v2\nmig-configs: {}\n", "v.yaml", "a")
            .unwrap_err()
            .to_string();
        assert!(e.contains("version \"v2\""), "{e}");
        let e = select(
            "version: v1\nmig-configs:\n  a:\n    - devices: all\n      mig-enable: true\n",
            "k.yaml",
            "a",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("k.yaml:4:") || e.starts_with("k.yaml:5:"),
            "{e}"
        );
        assert!(e.contains("mig-enable"), "{e}");
    }
}
