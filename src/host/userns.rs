//! Which user namespace migcage itself runs in. Rootless engines (Podman as a non-root user) run
//! the runtime, and so the hook, inside a user namespace of their own: there the hook is root to
//! the container but nobody to the host. It can neither `mknod` nor change a device cgroup (no
//! cgroup device control exists for such a container: the runtime had none either), and it
//! cannot write root's state directory.

use std::path::Path;

/// Where this process runs, as its `uid_map` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserNamespace {
    /// The host's own (the identity map of every id): host privilege is possible.
    Initial,
    /// A child user namespace whose id 0 (or, without one, whose first id) is `host_uid` on the
    /// host: a rootless engine's.
    Child { host_uid: u32 },
}

impl UserNamespace {
    pub fn is_child(self) -> bool {
        matches!(self, UserNamespace::Child { .. })
    }
}

/// The namespace a `uid_map` describes. The initial namespace maps every id to itself in one
/// line (`0 0 4294967295`); anything else is a child's. An unreadable or empty map (procfs
/// without it) counts as the initial namespace: that is every kernel without user namespaces.
pub fn from_uid_map(text: &str) -> UserNamespace {
    let lines: Vec<Vec<u64>> = text
        .lines()
        .map(|l| {
            l.split_whitespace()
                .filter_map(|f| f.parse().ok())
                .collect()
        })
        .filter(|f: &Vec<u64>| f.len() == 3)
        .collect();
    match lines.as_slice() {
        [] => UserNamespace::Initial,
        [only] if only[0] == 0 && only[1] == 0 && only[2] == u64::from(u32::MAX) => {
            UserNamespace::Initial
        }
        maps => {
            let root = maps.iter().find(|m| m[0] == 0).unwrap_or(&maps[0]);
            UserNamespace::Child {
                host_uid: u32::try_from(root[1]).unwrap_or(u32::MAX),
            }
        }
    }
}

/// The user namespace this process runs in (`<proc>/self/uid_map`).
pub fn current(proc_root: &Path) -> UserNamespace {
    crate::sys::read::read_text(proc_root.join("self/uid_map"))
        .map(|t| from_uid_map(&t))
        .unwrap_or(UserNamespace::Initial)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_identity_map_is_the_hosts() {
        assert_eq!(
            from_uid_map("         0          0 4294967295\n"),
            UserNamespace::Initial
        );
        assert_eq!(from_uid_map(""), UserNamespace::Initial);
    }

    #[test]
    fn a_rootless_engines_map_is_a_child() {
        // Podman as uid 1000: 0 -> 1000, then its subordinate ids.
        let podman = "         0       1000          1\n         1     100000      65536\n";
        assert_eq!(
            from_uid_map(podman),
            UserNamespace::Child { host_uid: 1000 }
        );
        // A namespace without an id 0 names its first mapping's host id.
        assert_eq!(
            from_uid_map("1000 1000 1\n"),
            UserNamespace::Child { host_uid: 1000 }
        );
        // Full range but shifted is not the identity.
        assert!(from_uid_map("0 1 4294967295\n").is_child());
    }

    #[test]
    fn this_process_reads_its_own_map() {
        // Whatever this machine is, the reading agrees with the parse of the same file.
        let text = std::fs::read_to_string("/proc/self/uid_map").unwrap_or_default();
        assert_eq!(current(Path::new("/proc")), from_uid_map(&text));
    }
}
