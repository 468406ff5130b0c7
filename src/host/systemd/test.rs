//! [`RecordingSystemd`]: a double of [`SystemdUnits`] for unit tests. It records every call (the
//! unit and the entries), answers each unit's device policy (runc's `strict` unless a test sets
//! another) and fails the units a test names. No bus, no systemd.

use std::cell::RefCell;
use std::path::PathBuf;

use super::{SystemdError, SystemdUnits};
use crate::core::systemd::{DeviceAllow, DevicePolicy};

/// One `SetUnitProperties(unit, true, [("DeviceAllow", entries)])` the code under test made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetDeviceAllow {
    pub unit: String,
    pub entries: Vec<DeviceAllow>,
}

/// The recording double of [`SystemdUnits`].
#[derive(Default)]
pub struct RecordingSystemd {
    calls: RefCell<Vec<SetDeviceAllow>>,
    /// Calls for these units fail (as a refusal from systemd).
    refuse: Vec<String>,
    /// Units whose policy queries were made.
    queried: RefCell<Vec<String>>,
    /// Policies other than runc's (`strict` with `/dev/null rwm`).
    policies: Vec<(String, DevicePolicy)>,
}

impl RecordingSystemd {
    pub fn new() -> Self {
        Self::default()
    }

    /// Calls for `unit` fail like a refusal from systemd (`Unit ... not found`).
    pub fn refusing(unit: &str) -> Self {
        RecordingSystemd {
            refuse: vec![unit.into()],
            ..Self::default()
        }
    }

    /// `unit` has `policy` (instead of runc's strict one).
    pub fn with_policy(mut self, unit: &str, policy: &str, allow: &[DeviceAllow]) -> Self {
        self.policies.push((
            unit.into(),
            DevicePolicy {
                policy: policy.into(),
                allow: allow.to_vec(),
            },
        ));
        self
    }

    /// The units whose device policy was asked for.
    pub fn queried(&self) -> Vec<String> {
        self.queried.borrow().clone()
    }

    /// Every `DeviceAllow=` call made so far, failed ones included.
    pub fn calls(&self) -> Vec<SetDeviceAllow> {
        self.calls.borrow().clone()
    }
}

impl SystemdUnits for RecordingSystemd {
    fn device_policy(&self, unit: &str) -> Result<DevicePolicy, SystemdError> {
        self.queried.borrow_mut().push(unit.into());
        if self.refuse.iter().any(|u| u == unit) {
            return Err(SystemdError::Call {
                socket: PathBuf::from("(double)"),
                unit: unit.into(),
                message: format!("Unit {unit} not loaded."),
            });
        }
        let runc = || DevicePolicy {
            policy: "strict".into(),
            allow: vec![DeviceAllow {
                path: "/dev/null".into(),
                access: "rwm".into(),
            }],
        };
        Ok(self
            .policies
            .iter()
            .find(|(u, _)| u == unit)
            .map_or_else(runc, |(_, p)| p.clone()))
    }

    fn add_device_allow(&self, unit: &str, entries: &[DeviceAllow]) -> Result<(), SystemdError> {
        self.calls.borrow_mut().push(SetDeviceAllow {
            unit: unit.into(),
            entries: entries.to_vec(),
        });
        if entries.is_empty() {
            return Err(SystemdError::Empty { unit: unit.into() });
        }
        if self.refuse.iter().any(|u| u == unit) {
            return Err(SystemdError::Call {
                socket: PathBuf::from("(double)"),
                unit: unit.into(),
                message: format!("Unit {unit} not found."),
            });
        }
        Ok(())
    }
}
