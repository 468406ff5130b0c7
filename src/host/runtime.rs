//! Which OCI runtime runs the hook, so that the cgroup v2 rule list carries that runtime's own
//! implicit rules ([`crate::core::cgroup::defaults`]).
//!
//! runc and crun both run hooks themselves, so the hook's parent is the runtime (under Docker,
//! containerd's shim starts runc, which starts the hook; under Podman, conmon starts crun or runc,
//! which starts the hook). Three things of that process name it: its executable
//! (`/proc/<ppid>/exe`: `/usr/sbin/runc` under runc 1.1.5 here; crun 1.8.1's reads as `/`, so
//! that alone is not enough), its `comm` and its `argv[0]` (`crun` and `crun run ID` under crun
//! 1.8.1, checked here). The runtime is the one these name when every one that names a runtime
//! names the same; otherwise it is unknown. The state on stdin does not name it (runc 1.1.5:
//! `ociVersion`, `id`, `status`, `pid`, `bundle`; crun 1.8.1 adds `root`), and `run.oci.*`
//! annotations in config.json are requests any caller may write, not proof that crun reads them
//! (taking crun's set, which adds `/dev/console`, for a runc container would be wider than runc's
//! own). Neither runtime says its version where the hook can read it without running it, so the
//! version is left unknown and the rules are those every version of that runtime adds.

use std::path::Path;

use crate::core::cgroup::defaults::Runtime;

/// The runtime whose process `pid` is (the hook's parent), from `<proc_root>/<pid>/exe`, `comm`
/// and `cmdline`; [`Runtime::Unknown`] when none names a runtime or two name different ones.
pub fn detect(proc_root: &Path, pid: u32) -> Runtime {
    let dir = proc_root.join(pid.to_string());
    let exe = std::fs::read_link(dir.join("exe")).ok().and_then(|t| {
        let name = t.file_name()?.to_str()?.to_string();
        // An executable replaced on disk while it runs reads as "runc (deleted)".
        Some(name.strip_suffix(" (deleted)").unwrap_or(&name).to_string())
    });
    let comm = crate::sys::read::read_text(dir.join("comm"))
        .ok()
        .map(|c| c.trim_end_matches('\n').to_string());
    let argv0 = std::fs::File::open(dir.join("cmdline"))
        .and_then(|f| crate::sys::read::read_capped(f, 64 * 1024))
        .ok()
        .and_then(|c| {
            let first = c.split(|b| *b == 0).next()?;
            let first = std::str::from_utf8(first).ok()?;
            Some(Path::new(first).file_name()?.to_str()?.to_string())
        });
    let named: Vec<Runtime> = [exe, comm, argv0]
        .into_iter()
        .flatten()
        .map(|n| Runtime::from_exe_name(&n, None))
        .filter(|r| *r != Runtime::Unknown)
        .collect();
    match named.split_first() {
        Some((first, rest)) if rest.iter().all(|r| r == first) => *first,
        _ => Runtime::Unknown,
    }
}

/// [`detect`] for the process that started this one, in the host's /proc, with the version the
/// operator stated for that runtime (`host.runtime_versions`; see [`Runtime::refined_by`]).
pub fn detect_parent(stated: &[Runtime]) -> Runtime {
    detect(Path::new("/proc"), std::os::unix::process::parent_id()).refined_by(stated)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::cgroup::defaults::Kind;
    use std::os::unix::fs::symlink;

    fn proc_with(
        pid: u32,
        exe: &str,
        comm: Option<&str>,
        cmdline: Option<&str>,
    ) -> tempfile::TempDir {
        let proc = tempfile::tempdir().unwrap();
        let dir = proc.path().join(pid.to_string());
        std::fs::create_dir(&dir).unwrap();
        symlink(exe, dir.join("exe")).unwrap();
        if let Some(c) = comm {
            std::fs::write(dir.join("comm"), format!("{c}\n")).unwrap();
        }
        if let Some(c) = cmdline {
            std::fs::write(dir.join("cmdline"), c.replace(' ', "\0") + "\0").unwrap();
        }
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
            let proc = proc_with(42, exe, None, None);
            assert_eq!(detect(proc.path(), 42), want, "{exe}");
        }
    }

    #[test]
    fn crun_whose_exe_reads_as_slash_is_named_by_comm_and_argv0() {
        // What crun 1.8.1's process shows a hook here.
        let proc = proc_with(42, "/", Some("crun"), Some("crun run ctr"));
        assert_eq!(detect(proc.path(), 42), Runtime::Known(Kind::Crun, None));
        let proc = proc_with(
            42,
            "/",
            None,
            Some("/usr/bin/crun --root /run/crun create ctr"),
        );
        assert_eq!(detect(proc.path(), 42), Runtime::Known(Kind::Crun, None));
    }

    #[test]
    fn sources_that_disagree_are_an_unknown_runtime() {
        let proc = proc_with(42, "/usr/sbin/runc", Some("crun"), None);
        assert_eq!(detect(proc.path(), 42), Runtime::Unknown);
        let proc = proc_with(42, "/usr/sbin/runc", Some("runc"), Some("runc create x"));
        assert_eq!(detect(proc.path(), 42), Runtime::Known(Kind::Runc, None));
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
