//! `ContainerEdits`: what a container gets, in the same shape as CDI's `containerEdits`, so that
//! the hook, the runtime wrapper and the CDI generator share one representation.

use serde::{Deserialize, Serialize};

/// A device node to create inside the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceNode {
    /// Path inside the container, such as `/dev/nvidia-caps/nvidia-cap13`.
    pub path: String,
    /// Path of the node on the host (under the configured dev root).
    #[serde(rename = "hostPath")]
    pub host_path: String,
    /// `c` (the driver only has character devices).
    #[serde(rename = "type")]
    pub kind: char,
    pub major: u32,
    pub minor: u32,
    /// Permission bits, such as 0o666.
    #[serde(rename = "fileMode")]
    pub file_mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// Device access, as in `linux.resources.devices[].access`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Access {
    pub read: bool,
    pub write: bool,
    pub mknod: bool,
}

impl Access {
    /// `rwm`
    pub const ALL: Access = Access {
        read: true,
        write: true,
        mknod: true,
    };
    /// `rw`: what a node the hook made may be used for (no further mknod).
    pub const RW: Access = Access {
        read: true,
        write: true,
        mknod: false,
    };

    /// Parse an OCI access string (`r`, `rw`, `rwm`, any order, no repeats). None when malformed.
    pub fn parse(s: &str) -> Option<Access> {
        let mut a = Access::default();
        for c in s.chars() {
            let flag = match c {
                'r' => &mut a.read,
                'w' => &mut a.write,
                'm' => &mut a.mknod,
                _ => return None,
            };
            if *flag {
                return None;
            }
            *flag = true;
        }
        Some(a)
    }
}

impl std::fmt::Display for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.read {
            f.write_str("r")?;
        }
        if self.write {
            f.write_str("w")?;
        }
        if self.mknod {
            f.write_str("m")?;
        }
        Ok(())
    }
}

/// The device type a cgroup rule matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeviceType {
    /// `a`: every type.
    All,
    /// `c`
    Char,
    /// `b`
    Block,
}

/// A cgroup device rule, as in `linux.resources.devices[]`. `None` major/minor is the wildcard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRule {
    pub allow: bool,
    pub kind: DeviceType,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    pub access: Access,
}

/// A bind mount into the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    #[serde(rename = "hostPath")]
    pub host_path: String,
    #[serde(rename = "containerPath")]
    pub container_path: String,
    pub options: Vec<String>,
}

/// Everything migcage does to a container.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ContainerEdits {
    /// `NAME=value` pairs to set in the container's environment.
    pub env: Vec<String>,
    #[serde(rename = "deviceNodes")]
    pub device_nodes: Vec<DeviceNode>,
    /// Allow rules for exactly the device nodes above.
    #[serde(rename = "deviceRules")]
    pub device_rules: Vec<DeviceRule>,
    pub mounts: Vec<Mount>,
}

impl ContainerEdits {
    /// True when there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.env.is_empty()
            && self.device_nodes.is_empty()
            && self.device_rules.is_empty()
            && self.mounts.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_parses_and_prints() {
        assert_eq!(Access::parse("rwm"), Some(Access::ALL));
        assert_eq!(Access::parse("wr"), Some(Access::RW));
        assert_eq!(Access::parse(""), Some(Access::default()));
        assert_eq!(Access::parse("rr"), None);
        assert_eq!(Access::parse("rx"), None);
        assert_eq!(Access::ALL.to_string(), "rwm");
        assert_eq!(Access::RW.to_string(), "rw");
    }
}
