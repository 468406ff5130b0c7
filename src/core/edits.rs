//! `ContainerEdits`: what a container gets, in the same shape as CDI's `containerEdits`, so that
//! the hook, the runtime wrapper and the CDI generator share one representation.

use std::path::Path;

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

    /// Whether this access includes every kind `other` has.
    pub fn contains(self, other: Access) -> bool {
        (self.read || !other.read) && (self.write || !other.write) && (self.mknod || !other.mknod)
    }

    /// Whether this access and `other` share a kind.
    pub fn intersects(self, other: Access) -> bool {
        (self.read && other.read) || (self.write && other.write) || (self.mknod && other.mknod)
    }

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

/// A symbolic link to make inside the container (`link` -> `target`), such as the soname link
/// `/usr/lib/x86_64-linux-gnu/libcuda.so.1 -> libcuda.so.550.54.15`. CDI has no field for these:
/// they are made by `migcage hook` (CDI generators pass them to it as a hook).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Symlink {
    /// The link's absolute path inside the container.
    pub link: String,
    /// What it points to: a name in the same directory.
    pub target: String,
}

/// A hook a runtime runs, in the `path`/`args`/`env` form that OCI's `hooks.<stage>[]`, CDI's
/// `hooks[]` (with a `hookName`) and the hooks.d files' `hook` share. [`Hook::migcage`] is the one
/// builder of migcage's own entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hook {
    /// The executable, absolute.
    pub path: String,
    /// The argument vector, `argv[0]` included.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// `NAME=value` pairs: the hook's whole environment.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
}

impl Hook {
    /// `migcage hook <stage>` run from `binary`, told `config` (as `MIGCAGE_CONFIG`) when it is
    /// not the default file: a hook gets only the environment its entry gives.
    pub fn migcage(binary: &Path, stage: &str, config: Option<&Path>) -> Hook {
        Hook {
            path: binary.display().to_string(),
            args: ["migcage", "hook", stage].map(String::from).to_vec(),
            env: config
                .iter()
                .map(|c| format!("{}={}", crate::config::CONFIG_ENV, c.display()))
                .collect(),
        }
    }
}

/// The architecture of a library, as the ld cache records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LibArch {
    #[serde(rename = "x86-64")]
    X86_64,
    #[serde(rename = "i386")]
    I386,
}

/// An entry to add to the container's ld cache (`/etc/ld.so.cache`), so that `dlopen(soname)`
/// finds the injected library.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LdCacheEntry {
    /// The name programs ask for, such as `libcuda.so.1`.
    pub soname: String,
    /// The container path it resolves to, such as `/usr/lib/x86_64-linux-gnu/libcuda.so.1`.
    pub path: String,
    pub arch: LibArch,
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
    /// Symbolic links to make inside the container after the mounts (the driver libraries'
    /// soname and development links).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub symlinks: Vec<Symlink>,
    /// Entries the container's ld cache must get (written by `migcage hook`, which never runs
    /// the image's ldconfig).
    #[serde(rename = "ldCache", default, skip_serializing_if = "Vec::is_empty")]
    pub ld_cache: Vec<LdCacheEntry>,
}

impl ContainerEdits {
    /// True when there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.env.is_empty()
            && self.device_nodes.is_empty()
            && self.device_rules.is_empty()
            && self.mounts.is_empty()
            && self.symlinks.is_empty()
            && self.ld_cache.is_empty()
    }

    /// The directories of the libraries in [`ContainerEdits::ld_cache`], in order, each once: what
    /// an `ld.so.conf` entry (or `ldconfig` run) would list.
    pub fn ld_cache_dirs(&self) -> Vec<String> {
        let mut dirs: Vec<String> = Vec::new();
        for e in &self.ld_cache {
            if let Some((dir, _)) = e.path.rsplit_once('/') {
                let dir = if dir.is_empty() { "/" } else { dir };
                if !dirs.iter().any(|d| d == dir) {
                    dirs.push(dir.to_string());
                }
            }
        }
        dirs
    }
}

#[cfg(test)]
impl DeviceRule {
    /// A rule from its parts and an OCI access string, for tests.
    pub(crate) fn of(
        allow: bool,
        kind: DeviceType,
        major: Option<u32>,
        minor: Option<u32>,
        access: &str,
    ) -> DeviceRule {
        DeviceRule {
            allow,
            kind,
            major,
            minor,
            access: Access::parse(access).expect("a valid access string"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_contains_and_intersects() {
        let a = |s: &str| Access::parse(s).unwrap_or_default();
        assert!(a("rwm").contains(a("rw")) && a("rw").contains(a("rw")));
        assert!(a("rw").contains(a("")));
        assert!(!a("r").contains(a("rw")) && !a("rw").contains(a("m")));
        assert!(a("w").intersects(a("rw")) && !a("m").intersects(a("rw")));
        assert!(!a("").intersects(a("rwm")));
    }

    #[test]
    fn ld_cache_dirs_are_listed_once() {
        let entry = |soname: &str, path: &str| LdCacheEntry {
            soname: soname.into(),
            path: path.into(),
            arch: LibArch::X86_64,
        };
        let e = ContainerEdits {
            ld_cache: vec![
                entry("libcuda.so.1", "/usr/lib/x86_64-linux-gnu/libcuda.so.1"),
                entry("libcuda.so", "/usr/lib/x86_64-linux-gnu/libcuda.so"),
                entry("libx.so.1", "/usr/lib32/libx.so.1"),
            ],
            ..ContainerEdits::default()
        };
        assert!(!e.is_empty());
        assert_eq!(
            e.ld_cache_dirs(),
            ["/usr/lib/x86_64-linux-gnu", "/usr/lib32"]
        );
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["ldCache"][0]["arch"], "x86-64");
        assert!(json.get("symlinks").is_none(), "empty lists are left out");
        let back: ContainerEdits = serde_json::from_value(json).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn migcage_hook_entry() {
        let plain = Hook::migcage(Path::new("/usr/bin/migcage"), "poststop", None);
        assert_eq!(
            serde_json::to_value(&plain).unwrap(),
            serde_json::json!({"path": "/usr/bin/migcage", "args": ["migcage", "hook", "poststop"]})
        );
        let told = Hook::migcage(Path::new("/m"), "prestart", Some(Path::new("/etc/x.toml")));
        assert_eq!(told.env, ["MIGCAGE_CONFIG=/etc/x.toml"]);
    }

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
