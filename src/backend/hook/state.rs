//! The OCI container state a runtime passes to a hook on stdin, and the bundle it names.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::host::cgroup::DeviceCgroup;

/// Largest state document accepted on stdin.
pub const MAX_STATE_BYTES: u64 = 1 << 20;
pub use crate::backend::spec::MAX_CONFIG_BYTES;

/// An error reading the state or the bundle.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read the container state on stdin: {0}; migcage hook must be run by an OCI runtime (runc, crun) as a hook")]
    Read(std::io::Error),
    #[error("the container state on stdin is empty; migcage hook must be run by an OCI runtime (runc, crun) as a hook, which passes the state on stdin")]
    Empty,
    #[error("the container state on stdin is larger than {MAX_STATE_BYTES} bytes; this is not an OCI state document")]
    TooLarge,
    #[error("the container state on stdin is not valid OCI state JSON ({0}); check the runtime's hook configuration")]
    Parse(String),
    #[error("the container state on stdin has {field} {value:?}: {why}")]
    Invalid {
        field: &'static str,
        value: String,
        why: &'static str,
    },
    #[error(
        "cannot read the bundle's config {path}: {source}; is the bundle path in the state right?"
    )]
    Config {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the bundle's config {path} is larger than {MAX_CONFIG_BYTES} bytes")]
    ConfigTooLarge { path: PathBuf },
    #[error("the bundle's config {path} is not valid JSON ({message}); the runtime wrote a broken config.json")]
    ConfigParse { path: PathBuf, message: String },
    #[error("bundle {bundle}: config.json's root.path {root:?} resolves to the host's /; no runtime runs a container on the host's root, so migcage touches nothing: give the container a root filesystem of its own")]
    HostRoot { bundle: PathBuf, root: String },
    #[error("the container state has pid {pid}, which is in migcage's own mount namespace; no runtime runs a container there, so migcage touches nothing: check the hook's configuration (the state must come from the runtime)")]
    HostMountNamespace { pid: i32 },
    #[error("the container state has pid {pid}, whose device cgroup is the root cgroup ({dir}); no runtime runs a container there, so migcage grants nothing: check the hook's configuration (the state must come from the runtime)")]
    RootCgroup { pid: i32, dir: PathBuf },
}

/// The parts of the OCI state migcage uses.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct State {
    #[serde(rename = "ociVersion", default)]
    pub oci_version: String,
    pub id: String,
    #[serde(default)]
    pub status: String,
    /// The container's init process, in the runtime's pid namespace (absent once stopped).
    #[serde(default)]
    pub pid: Option<i64>,
    pub bundle: PathBuf,
}

impl State {
    /// Parse and check a state document.
    pub fn parse(bytes: &[u8]) -> Result<State, StateError> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(StateError::Empty);
        }
        let mut s: State =
            serde_json::from_slice(bytes).map_err(|e| StateError::Parse(e.to_string()))?;
        if !is_plain_id(&s.id) {
            return Err(StateError::Invalid {
                field: "id",
                value: s.id,
                why: "a container id is a plain name: 1 to 1024 characters, not \".\" or \"..\", without '/', NUL or newlines",
            });
        }
        if !s.bundle.is_absolute() {
            return Err(StateError::Invalid {
                field: "bundle",
                value: s.bundle.display().to_string(),
                why: "the bundle must be an absolute path",
            });
        }
        // crun passes `"pid": 0` to createContainer and poststop hooks: no process to name.
        if s.pid == Some(0) {
            s.pid = None;
        }
        if let Some(pid) = s.pid {
            if pid < 0 || pid > i64::from(i32::MAX) {
                return Err(StateError::Invalid {
                    field: "pid",
                    value: pid.to_string(),
                    why: "a pid is a positive 32-bit number",
                });
            }
        }
        Ok(s)
    }

    /// Read and parse the state from a reader (stdin).
    pub fn read(mut input: impl Read) -> Result<State, StateError> {
        let mut buf = Vec::new();
        input
            .by_ref()
            .take(MAX_STATE_BYTES + 1)
            .read_to_end(&mut buf)
            .map_err(StateError::Read)?;
        if buf.len() as u64 > MAX_STATE_BYTES {
            return Err(StateError::TooLarge);
        }
        State::parse(&buf)
    }

    /// The pid, which a hook that must reach the container needs.
    pub fn require_pid(&self) -> Result<i32, StateError> {
        match self.pid {
            Some(p) => Ok(p as i32),
            None => Err(StateError::Invalid { field: "pid", value: "none".into(), why: "the container has no process yet; run migcage as a prestart, createRuntime or createContainer hook" }),
        }
    }
}

/// A container id a runtime sends: a plain name, usable as one path component (leases and logs
/// are keyed by it).
fn is_plain_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 1024 && id != "." && id != ".." && !id.contains(['/', '\0', '\n'])
}

/// Refuse a bundle no runtime sends: one whose root filesystem is the host's `/` (the same
/// directory, by device and inode, also through symlinks or a bind mount). A root that cannot be
/// read is left to the later steps, which name it.
pub fn check_rootfs(bundle: &Path, spec: &serde_json::Value) -> Result<(), StateError> {
    use std::os::unix::fs::MetadataExt;
    let Some(root) = rootfs_path(bundle, spec) else {
        return Ok(());
    };
    let same =
        |a: &std::fs::Metadata, b: &std::fs::Metadata| (a.dev(), a.ino()) == (b.dev(), b.ino());
    match (std::fs::metadata(&root), std::fs::metadata("/")) {
        (Ok(r), Ok(host)) if same(&r, &host) => Err(StateError::HostRoot {
            bundle: bundle.to_path_buf(),
            root: root.display().to_string(),
        }),
        _ => Ok(()),
    }
}

/// Refuse a pid no runtime sends to a hook that runs outside the container: a process in this
/// process's own mount namespace (the nodes would be made on the host), or one whose device
/// cgroup is the root cgroup (the grant would open the devices to the whole host). `proc_root`
/// is the process procfs (`/proc`). A process that cannot be read is left to the steps that
/// enter it, which name it (its namespace file is the one they open).
///
/// `Ok` holds the device cgroup it found and checked, for the grant (which looks for itself when
/// it is `None`).
pub fn check_process(proc_root: &Path, pid: i32) -> Result<Option<DeviceCgroup>, StateError> {
    use std::os::unix::fs::MetadataExt;
    let ns = |p: PathBuf| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
    let mine = ns(proc_root.join("self/ns/mnt"));
    let theirs = ns(proc_root.join(pid.to_string()).join("ns/mnt"));
    if mine.is_some() && mine == theirs {
        return Err(StateError::HostMountNamespace { pid });
    }
    match device_cgroup(proc_root, pid) {
        Some((found, true)) => {
            let (DeviceCgroup::V1(dir) | DeviceCgroup::V2(dir)) = found;
            Err(StateError::RootCgroup { pid, dir })
        }
        Some((found, false)) => Ok(Some(found)),
        None => Ok(None),
    }
}

/// `pid`'s device cgroup, and whether it is the root of its hierarchy (as this process's cgroup
/// namespace names it). The hierarchy is the one the grant writes to
/// ([`crate::host::cgroup::device_cgroup_from`]); a cgroup that cannot be found is left to the
/// grant, which names the files.
fn device_cgroup(proc_root: &Path, pid: i32) -> Option<(DeviceCgroup, bool)> {
    use crate::host::cgroup;
    let cgroup_file = proc_root.join(pid.to_string()).join("cgroup");
    let mountinfo_file = proc_root.join("self/mountinfo");
    let lines = cgroup::parse_proc_cgroup(
        &crate::sys::read::read_text(&cgroup_file).ok()?,
        &cgroup_file,
    )
    .ok()?;
    let mounts = cgroup::parse_mountinfo(
        &crate::sys::read::read_text(&mountinfo_file).ok()?,
        &mountinfo_file,
    )
    .ok()?;
    let found = cgroup::device_cgroup_from(&lines, &mounts, &cgroup_file, &mountinfo_file).ok()?;
    let v1 = matches!(found, DeviceCgroup::V1(_));
    let line = lines.iter().find(|l| {
        if v1 {
            l.hierarchy_id != 0 && l.controllers.iter().any(|c| c == "devices")
        } else {
            l.hierarchy_id == 0 && l.controllers.is_empty()
        }
    })?;
    let root = line.path == Path::new("/");
    Some((found, root))
}

/// Read the bundle's config.json as JSON (a `Value`, so that fields migcage does not know survive),
/// through the one reader ([`crate::backend::spec`]), in the hook's words.
pub fn read_config(bundle: &Path) -> Result<serde_json::Value, StateError> {
    use crate::backend::spec::{self, SpecError};
    match spec::read_bundle(bundle) {
        Ok(c) => Ok(c.value),
        Err(SpecError::Read { path, source }) => Err(StateError::Config { path, source }),
        Err(SpecError::TooLarge { path }) => Err(StateError::ConfigTooLarge { path }),
        Err(SpecError::Parse { path, message }) => Err(StateError::ConfigParse { path, message }),
    }
}

/// The rootfs path of a bundle's config (`root.path`, relative to the bundle unless absolute).
pub fn rootfs_path(bundle: &Path, config: &serde_json::Value) -> Option<PathBuf> {
    let p = config.get("root")?.get("path")?.as_str()?;
    if p.is_empty() {
        return None;
    }
    Some(if Path::new(p).is_absolute() {
        PathBuf::from(p)
    } else {
        bundle.join(p)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_runc_state() {
        let s = State::parse(br#"{"ociVersion":"1.0.2","id":"c1","status":"created","pid":4242,"bundle":"/run/b","annotations":{}}"#).unwrap();
        assert_eq!(
            (s.id.as_str(), s.pid, s.bundle.as_path()),
            ("c1", Some(4242), Path::new("/run/b"))
        );
        assert_eq!(s.require_pid().unwrap(), 4242);
        // crun's createContainer and poststop states carry pid 0: no process.
        let s = State::parse(br#"{"id":"c1","status":"stopped","pid":0,"bundle":"/b"}"#).unwrap();
        assert_eq!(s.pid, None);
    }

    #[test]
    fn refuses_bad_states_with_one_line() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "is empty"),
            (b"  \n", "is empty"),
            (
                b"{\"id\":\"c1\",\"bundle\":\"/b\"",
                "not valid OCI state JSON",
            ),
            (b"[1,2]", "not valid OCI state JSON"),
            (b"{\"id\":\"\",\"bundle\":\"/b\"}", "has id \"\""),
            (b"{\"id\":\"a/b\",\"bundle\":\"/b\"}", "has id \"a/b\""),
            (b"{\"id\":\".\",\"bundle\":\"/b\"}", "has id \".\""),
            (b"{\"id\":\"..\",\"bundle\":\"/b\"}", "has id \"..\""),
            (b"{\"id\":\"a\\u0000b\",\"bundle\":\"/b\"}", "a plain name"),
            (
                b"{\"id\":\"c\",\"bundle\":\"rel\"}",
                "bundle must be an absolute path",
            ),
            (
                b"{\"id\":\"c\",\"bundle\":\"/b\",\"pid\":-3}",
                "has pid \"-3\"",
            ),
            (
                b"{\"id\":\"c\",\"bundle\":\"/b\",\"pid\":99999999999}",
                "positive 32-bit",
            ),
            (b"{\"bundle\":\"/b\"}", "missing field `id`"),
        ];
        for (input, want) in cases {
            let e = State::parse(input).unwrap_err().to_string();
            assert!(
                e.contains(want),
                "{:?}: {e}",
                String::from_utf8_lossy(input)
            );
            assert!(!e.contains('\n'), "{e}");
        }
        let s = State::parse(b"{\"id\":\"c\",\"bundle\":\"/b\"}").unwrap();
        assert!(s
            .require_pid()
            .unwrap_err()
            .to_string()
            .contains("no process"));
        let big = vec![b' '; (MAX_STATE_BYTES + 10) as usize];
        assert!(matches!(State::read(&big[..]), Err(StateError::TooLarge)));
    }

    #[test]
    fn config_and_rootfs() {
        let d = tempfile::tempdir().unwrap();
        let e = read_config(d.path()).unwrap_err().to_string();
        assert!(
            e.contains("config.json") && e.contains("No such file"),
            "{e}"
        );
        std::fs::write(
            d.path().join("config.json"),
            b"{\"root\":{\"path\":\"rootfs\"}",
        )
        .unwrap();
        assert!(read_config(d.path())
            .unwrap_err()
            .to_string()
            .contains("not valid JSON"));
        std::fs::write(
            d.path().join("config.json"),
            b"{\"root\":{\"path\":\"rootfs\"}}",
        )
        .unwrap();
        let v = read_config(d.path()).unwrap();
        assert_eq!(rootfs_path(d.path(), &v).unwrap(), d.path().join("rootfs"));
        let abs = serde_json::json!({"root": {"path": "/x/rootfs"}});
        assert_eq!(rootfs_path(d.path(), &abs).unwrap(), Path::new("/x/rootfs"));
        assert!(rootfs_path(d.path(), &serde_json::json!({})).is_none());
    }

    #[test]
    fn a_rootfs_that_is_the_hosts_root_is_refused() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("rootfs")).unwrap();
        std::os::unix::fs::symlink("/", d.path().join("slash")).unwrap();
        let spec = |p: &str| serde_json::json!({"root": {"path": p}});
        for root in ["/", "/.", "slash", "rootfs/../../../../../../../.."] {
            let e = check_rootfs(d.path(), &spec(root)).unwrap_err().to_string();
            assert!(e.contains("resolves to the host's /"), "{root}: {e}");
            assert!(!e.contains('\n'), "{e}");
        }
        for root in ["rootfs", "missing"] {
            assert!(check_rootfs(d.path(), &spec(root)).is_ok(), "{root}");
        }
        assert!(check_rootfs(d.path(), &serde_json::json!({})).is_ok());
    }

    /// A fake procfs: `self` and pid 42, each with its own `ns/mnt` file (or one shared), 42's
    /// cgroup file, and this process's mountinfo.
    fn fake_proc(shared_ns: bool, cgroup: &str, mountinfo: &str) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for p in ["self/ns", "42/ns"] {
            std::fs::create_dir_all(d.path().join(p)).unwrap();
        }
        std::fs::write(d.path().join("self/ns/mnt"), b"").unwrap();
        if shared_ns {
            std::fs::hard_link(d.path().join("self/ns/mnt"), d.path().join("42/ns/mnt")).unwrap();
        } else {
            std::fs::write(d.path().join("42/ns/mnt"), b"").unwrap();
        }
        std::fs::write(d.path().join("42/cgroup"), cgroup).unwrap();
        std::fs::write(d.path().join("self/mountinfo"), mountinfo).unwrap();
        d
    }

    const HYBRID: &str = "\
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const UNIFIED: &str = "\
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
41 31 0:38 / /sys/fs/cgroup rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn a_pid_in_the_hooks_mount_namespace_or_root_cgroup_is_refused() {
        let p = fake_proc(true, "5:devices:/c1\n0::/c1\n", HYBRID);
        let e = check_process(p.path(), 42).unwrap_err().to_string();
        assert!(
            e.contains("pid 42, which is in migcage's own mount namespace"),
            "{e}"
        );
        // The hierarchy that governs devices decides: v1 devices on a hybrid host...
        let p = fake_proc(false, "5:devices:/\n0::/c1\n", HYBRID);
        let e = check_process(p.path(), 42).unwrap_err().to_string();
        assert!(
            e.contains("is the root cgroup (/sys/fs/cgroup/devices)"),
            "{e}"
        );
        // A container's own cgroup passes, and is handed on to the grant.
        assert_eq!(
            check_process(fake_proc(false, "5:devices:/c1\n0::/\n", HYBRID).path(), 42).unwrap(),
            Some(DeviceCgroup::V1("/sys/fs/cgroup/devices/c1".into()))
        );
        // ...cgroup2 where no v1 devices hierarchy is visible (runc in a private cgroup2 mount
        // leaves the v1 line at the root).
        let p = fake_proc(false, "5:devices:/\n0::/\n", UNIFIED);
        let e = check_process(p.path(), 42).unwrap_err().to_string();
        assert!(e.contains("is the root cgroup (/sys/fs/cgroup)"), "{e}");
        assert!(check_process(
            fake_proc(false, "5:devices:/\n0::/c1\n", UNIFIED).path(),
            42
        )
        .is_ok());
        // A process that is gone is left to the steps that enter it.
        assert!(check_process(p.path(), 43).is_ok());
        // The real procfs: this test's own pid shares its mount namespace.
        let me = std::process::id() as i32;
        assert!(matches!(
            check_process(Path::new("/proc"), me),
            Err(StateError::HostMountNamespace { .. })
        ));
    }
}
