//! The one JSON object of a device node in migcage's reports (`list`, `explain`, `cdi list`;
//! docs/json.md): `{"path", "host_path", "major", "minor", "mode"}`, every field always present,
//! `null` where the source does not say (a CDI spec may leave out numbers and mode).

use serde::Serialize;

use crate::core::edits::DeviceNode;

/// A device node as reports show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeObject {
    /// In the container: `/dev/nvidia-caps/nvidia-cap76`.
    pub path: String,
    /// On the host; `null` when it is `path` (a CDI spec may leave it out).
    pub host_path: Option<String>,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    /// Permission bits in octal, `"0666"`.
    pub mode: Option<String>,
}

impl NodeObject {
    /// Permission bits as reports write them: `"0666"`.
    pub fn mode_text(mode: u32) -> String {
        format!("{mode:04o}")
    }
}

impl From<&DeviceNode> for NodeObject {
    fn from(n: &DeviceNode) -> Self {
        NodeObject {
            path: n.path.clone(),
            host_path: Some(n.host_path.clone()),
            major: Some(n.major),
            minor: Some(n.minor),
            mode: Some(NodeObject::mode_text(n.file_mode)),
        }
    }
}

/// `path (major:minor)`, or the path alone when the numbers are not known.
impl std::fmt::Display for NodeObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.major, self.minor) {
            (Some(a), Some(b)) => write!(f, "{} ({a}:{b})", self.path),
            _ => f.write_str(&self.path),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_node_has_every_field() {
        let n = DeviceNode {
            path: "/dev/nvidia0".into(),
            host_path: "/sim/dev/nvidia0".into(),
            kind: 'c',
            major: 195,
            minor: 0,
            file_mode: 0o666,
            uid: 0,
            gid: 0,
        };
        let o = NodeObject::from(&n);
        assert_eq!(
            serde_json::to_value(&o).unwrap(),
            serde_json::json!({"path": "/dev/nvidia0", "host_path": "/sim/dev/nvidia0", "major": 195, "minor": 0, "mode": "0666"})
        );
        assert_eq!(o.to_string(), "/dev/nvidia0 (195:0)");
    }
}
