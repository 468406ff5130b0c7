//! The parsed request: [`Request`], its device selection and where the selection came from.

use std::fmt;

use serde::Serialize;

use super::{DeviceSelector, DriverCapabilities, DEVICE_LIST_DIR, VISIBLE_DEVICES};

/// What the container's device selection amounts to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "selectors", rename_all = "snake_case")]
pub enum Devices {
    /// Nothing asked for (`void`, empty, unset, or every source ignored by policy): leave the
    /// container untouched.
    Untouched,
    /// `none`: no device, but the driver files of the driver capabilities.
    DriverOnly,
    /// These devices (never empty; `All` only alone).
    Selected(Vec<DeviceSelector>),
}

/// Where a device selection came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Source {
    /// `NVIDIA_VISIBLE_DEVICES` in the process environment.
    Env,
    /// A `cdi.k8s.io/*` annotation.
    CdiAnnotation { key: String },
    /// `migcage.io/devices` or `migcage.io/profile`.
    MigcageAnnotation { key: String },
    /// Mounts under /var/run/nvidia-container-devices.
    VolumeMounts,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Env => f.write_str(VISIBLE_DEVICES),
            Source::CdiAnnotation { key } | Source::MigcageAnnotation { key } => {
                write!(f, "annotation {key}")
            }
            Source::VolumeMounts => write!(f, "mounts under {DEVICE_LIST_DIR}"),
        }
    }
}

/// What a container asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Request {
    pub devices: Devices,
    /// The sources the selection came from (empty when [`Devices::Untouched`]).
    pub sources: Vec<Source>,
    /// Which driver files the container gets ([`DriverCapabilities::DEFAULT`] when untouched).
    pub driver_capabilities: DriverCapabilities,
    /// `NVIDIA_MIG_CONFIG_DEVICES`: `All`, `GpuIndex` and `GpuUuid` selectors only.
    pub mig_config: Option<Vec<DeviceSelector>>,
    /// `NVIDIA_MIG_MONITOR_DEVICES`: `All`, `GpuIndex` and `GpuUuid` selectors only.
    pub mig_monitor: Option<Vec<DeviceSelector>>,
    /// Privileged on the host: CAP_SYS_ADMIN in the bounding set and no user namespace of its
    /// own in `linux.namespaces` (CAP_SYS_ADMIN in a child user namespace is not host privilege).
    pub privileged: bool,
    /// What was ignored and why, for `migcage explain` and the log.
    pub notes: Vec<String>,
    /// When several honoured sources name devices in different words (`MIG-...` in one, `0:1`
    /// in another), whether they mean the same devices is only known once they are resolved
    /// against the host: every such source, for the plan to compare. Empty otherwise.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub must_agree: Vec<SourceSelection>,
}

/// One honoured source's device list, kept for the plan's agreement check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceSelection {
    /// `NVIDIA_VISIBLE_DEVICES`, `annotation cdi.k8s.io/x`, `mounts under ...`
    pub label: String,
    /// The value as written, for messages.
    pub value: String,
    pub selectors: Vec<DeviceSelector>,
}

impl Request {
    /// Nothing requested: leave the container untouched.
    pub fn is_noop(&self) -> bool {
        self.devices == Devices::Untouched
    }

    /// The selected devices (empty for `none` and for untouched).
    pub fn selectors(&self) -> &[DeviceSelector] {
        match &self.devices {
            Devices::Selected(s) => s,
            Devices::Untouched | Devices::DriverOnly => &[],
        }
    }
}
