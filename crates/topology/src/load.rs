//! Reading a topology: from a file, from text, or by the name of a shipped one, and the errors
//! that can say why it failed.

use std::path::Path;

use crate::file::TopologyFile;
use crate::resolved::Topology;

/// An error in a topology file.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    #[error("cannot read topology file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("topology file {path}: {message}")]
    Parse { path: String, message: String },
    #[error("topology {}: {message}", printable(.name))]
    Invalid { name: String, message: String },
    #[error("unknown topology {0:?}: give a file path or one of {names}", names = builtin_names().join(", "))]
    UnknownBuiltin(String),
}

/// `name` as it is when it prints on one line, else quoted with its escapes (a name from a file
/// may hold a newline: the error stays one line).
fn printable(name: &str) -> std::borrow::Cow<'_, str> {
    if name.chars().any(char::is_control) {
        format!("{name:?}").into()
    } else {
        name.into()
    }
}

impl Topology {
    /// Read a topology from a file (TOML, or JSON for `*.json`).
    pub fn from_path(path: &Path) -> Result<Topology, TopologyError> {
        let text = std::fs::read_to_string(path).map_err(|source| TopologyError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let json = path.extension().is_some_and(|e| e == "json");
        Topology::parse(&text, json, &path.display().to_string())
    }

    /// Parse topology text; `origin` names it in errors.
    pub fn parse(text: &str, json: bool, origin: &str) -> Result<Topology, TopologyError> {
        let file: TopologyFile = if json {
            serde_json::from_str(text).map_err(|e| TopologyError::Parse {
                path: origin.to_string(),
                // serde_json quotes an unknown key as it is, control characters and all.
                message: e.to_string().replace('\n', "\\n").replace('\r', "\\r"),
            })?
        } else {
            toml::from_str(text).map_err(|e| TopologyError::Parse {
                path: origin.to_string(),
                // Not lines(): a lone '\r' the error quotes from the file would start a new line.
                message: e
                    .to_string()
                    .split(['\n', '\r'])
                    .collect::<Vec<_>>()
                    .join(" "),
            })?
        };
        file.resolve()
    }

    /// A shipped topology by name, or a file when `name_or_path` is not one.
    pub fn load(name_or_path: &str) -> Result<Topology, TopologyError> {
        if let Some(text) = builtin(name_or_path) {
            return Topology::parse(text, false, &format!("built-in topology {name_or_path}"));
        }
        let path = Path::new(name_or_path);
        if path.exists() || name_or_path.contains('/') || name_or_path.contains('.') {
            return Topology::from_path(path);
        }
        Err(TopologyError::UnknownBuiltin(name_or_path.to_string()))
    }
}

const BUILTINS: &[(&str, &str)] = &[
    ("a100-7x1g", include_str!("../topologies/a100-7x1g.toml")),
    ("a100-mixed", include_str!("../topologies/a100-mixed.toml")),
    ("h100-mixed", include_str!("../topologies/h100-mixed.toml")),
    ("dgx-8x7", include_str!("../topologies/dgx-8x7.toml")),
    ("a100-nomig", include_str!("../topologies/a100-nomig.toml")),
    ("a100-empty", include_str!("../topologies/a100-empty.toml")),
    ("h100-empty", include_str!("../topologies/h100-empty.toml")),
    (
        "dgx-8x-empty",
        include_str!("../topologies/dgx-8x-empty.toml"),
    ),
    (
        "two-gpus-one-mig",
        include_str!("../topologies/two-gpus-one-mig.toml"),
    ),
];

/// The text of a shipped topology.
pub fn builtin(name: &str) -> Option<&'static str> {
    BUILTINS.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

/// Names of the shipped topologies.
pub fn builtin_names() -> Vec<&'static str> {
    BUILTINS.iter().map(|(n, _)| *n).collect()
}
