//! Which OCI runtime runs the hook, so that the cgroup v2 rule list carries that runtime's own
//! implicit rules ([`crate::core::cgroup::defaults`]).
//!
//! runc and crun both run hooks themselves, so the hook's parent is the runtime (under Docker,
//! containerd's shim starts runc, which starts the hook; under Podman, conmon starts crun or runc,
//! which starts the hook). Its executable, `/proc/<ppid>/exe`, names it. Nothing else the hook
//! has tells them apart: the state on stdin has the same fields from both (`ociVersion`, `id`,
//! `status`, `pid`, `bundle`, `annotations`), and `run.oci.*` annotations in config.json are
//! requests any caller may write, not proof that crun reads them (taking crun's set, which adds
//! `/dev/console`, for a runc container would be wider than runc's own). Neither runtime says its
//! version where the hook can read it without running it, so the version is left unknown and the
//! rules are those every version of that runtime adds.

use std::path::Path;

use crate::core::cgroup::defaults::Runtime;

/// The runtime whose process `pid` is (the hook's parent), from `<proc_root>/<pid>/exe`;
/// [`Runtime::Unknown`] when that cannot be read or names another program.
pub fn detect(proc_root: &Path, pid: u32) -> Runtime {
    let Ok(target) = std::fs::read_link(proc_root.join(pid.to_string()).join("exe")) else {
        return Runtime::Unknown;
    };
    let Some(name) = target.file_name().and_then(|n| n.to_str()) else {
        return Runtime::Unknown;
    };
    // An executable replaced on disk while it runs reads as "runc (deleted)".
    let name = name.strip_suffix(" (deleted)").unwrap_or(name);
    Runtime::from_exe_name(name, None)
}

/// [`detect`] for the process that started this one, in the host's /proc.
pub fn detect_parent() -> Runtime {
    detect(Path::new("/proc"), std::os::unix::process::parent_id())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::cgroup::defaults::Kind;
    use std::os::unix::fs::symlink;

    fn proc_with_exe(pid: u32, exe: &str) -> tempfile::TempDir {
        let proc = tempfile::tempdir().unwrap();
        std::fs::create_dir(proc.path().join(pid.to_string())).unwrap();
        symlink(exe, proc.path().join(pid.to_string()).join("exe")).unwrap();
        proc
    }

    #[test]
    fn the_parents_executable_names_the_runtime() {
        for (exe, want) in [
            ("/usr/sbin/runc", Runtime::Known(Kind::Runc, None)),
            ("/usr/bin/crun", Runtime::Known(Kind::Crun, None)),
            ("/usr/bin/crun (deleted)", Runtime::Known(Kind::Crun, None)),
            (
                "/usr/local/bin/runc.amd64",
                Runtime::Known(Kind::Runc, None),
            ),
            ("/usr/bin/youki", Runtime::Unknown),
            ("/usr/bin/containerd-shim-runc-v2", Runtime::Unknown),
        ] {
            let proc = proc_with_exe(42, exe);
            assert_eq!(detect(proc.path(), 42), want, "{exe}");
        }
    }

    #[test]
    fn an_unreadable_parent_is_an_unknown_runtime() {
        let proc = tempfile::tempdir().unwrap();
        assert_eq!(detect(proc.path(), 42), Runtime::Unknown);
    }

    #[test]
    fn this_test_process_is_no_runtime() {
        assert_eq!(
            detect(Path::new("/proc"), std::process::id()),
            Runtime::Unknown
        );
    }
}
