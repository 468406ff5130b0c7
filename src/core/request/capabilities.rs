//! `NVIDIA_DRIVER_CAPABILITIES`: which driver files a container gets.

use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};

use super::errors::shown;
use super::spec_view::SpecView;
use super::{RequestError, DRIVER_CAPABILITIES};

/// A set of driver capabilities (`NVIDIA_DRIVER_CAPABILITIES`): which driver files a container
/// gets. `Display` and `Serialize` write the names in a fixed order.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct DriverCapabilities(u8);

impl DriverCapabilities {
    /// CUDA and OpenCL.
    pub const COMPUTE: Self = Self(1);
    /// nvidia-smi and NVML.
    pub const UTILITY: Self = Self(1 << 1);
    /// Video codec SDK.
    pub const VIDEO: Self = Self(1 << 2);
    /// OpenGL and Vulkan.
    pub const GRAPHICS: Self = Self(1 << 3);
    /// X11 display.
    pub const DISPLAY: Self = Self(1 << 4);
    /// NGX (DLSS).
    pub const NGX: Self = Self(1 << 5);
    /// 32-bit libraries.
    pub const COMPAT32: Self = Self(1 << 6);
    /// Every capability.
    pub const ALL: Self = Self((1 << 7) - 1);
    /// What a container gets when the variable is unset or empty.
    pub const DEFAULT: Self = Self(Self::UTILITY.0 | Self::COMPUTE.0);
    /// The names, in display order.
    pub const NAMES: [(&'static str, Self); 7] = [
        ("compute", Self::COMPUTE),
        ("utility", Self::UTILITY),
        ("video", Self::VIDEO),
        ("graphics", Self::GRAPHICS),
        ("display", Self::DISPLAY),
        ("ngx", Self::NGX),
        ("compat32", Self::COMPAT32),
    ];

    /// No capability.
    pub const fn empty() -> Self {
        Self(0)
    }

    /// Whether every capability of `other` is in `self`.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The names of the capabilities in the set, in display order.
    pub fn names(self) -> Vec<&'static str> {
        Self::NAMES
            .iter()
            .filter(|(_, c)| self.contains(*c))
            .map(|(n, _)| *n)
            .collect()
    }
}

impl std::ops::BitOr for DriverCapabilities {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

impl std::ops::BitOrAssign for DriverCapabilities {
    fn bitor_assign(&mut self, rhs: Self) {
        self.0 |= rhs.0;
    }
}

impl fmt::Display for DriverCapabilities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.names().join(","))
    }
}

impl fmt::Debug for DriverCapabilities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DriverCapabilities({self})")
    }
}

impl FromStr for DriverCapabilities {
    type Err = String;

    /// A value of `NVIDIA_DRIVER_CAPABILITIES`; empty means the default. The error is the
    /// problem, without the variable's name.
    fn from_str(value: &str) -> Result<Self, String> {
        if value.trim().is_empty() {
            return Ok(Self::DEFAULT);
        }
        let mut caps = Self::empty();
        for item in value.split(',').map(str::trim) {
            if item.is_empty() {
                return Err("empty item (a stray comma?)".into());
            }
            caps |= match item {
                "all" => Self::ALL,
                _ => match Self::NAMES.iter().find(|(n, _)| *n == item) {
                    Some((_, c)) => *c,
                    None => return Err(format!("{} is not a driver capability", shown(item))),
                },
            };
        }
        Ok(caps)
    }
}

impl Serialize for DriverCapabilities {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.names().serialize(s)
    }
}

/// The container's `NVIDIA_DRIVER_CAPABILITIES` (the default when unset or empty).
pub(super) fn from_env(view: &SpecView) -> Result<DriverCapabilities, RequestError> {
    let caps_value = view.env.get(DRIVER_CAPABILITIES).map_or("", String::as_str);
    caps_value.parse().map_err(|problem| RequestError::Invalid {
        origin: DRIVER_CAPABILITIES.into(),
        value: caps_value.to_string(),
        problem,
        hint: format!(
            "use a comma list of {} or all (unset means utility,compute)",
            DriverCapabilities::ALL
        ),
    })
}
