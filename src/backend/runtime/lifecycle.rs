//! `create` and `delete` through the wrapper, without a hook process.
//!
//! On `create` the edited spec carries no migcage hook. The wrapper writes the driver
//! libraries' links and ld cache into the rootfs from the host (the bundle's rootfs is the
//! container's, mounted before `create`: what the container will see), runs the runtime's
//! `create` as its child, and, once the runtime has made the container (its init waits for
//! `start`, nothing of the image has run), enters the container's mount namespace to build the
//! isolated `/proc/driver/nvidia` (runc refuses spec mounts inside /proc) and hands the
//! container's leases from its own pid to the init's. What a `createRuntime` hook did, without
//! the hook: no second migcage process, no runtime forking one.
//!
//! A failure after the runtime made the container deletes it (`delete --force`, with the same
//! global flags) and releases its leases: the engine sees one line and a non-zero exit, and
//! nothing is left behind.
//!
//! On `delete` of a container that holds leases, the wrapper releases them: at once when the
//! container has stopped (its init, the leases' holder, is gone), then execs the runtime; for a
//! container still running (`delete --force`), only after the runtime's `delete`, run as its
//! child, has succeeded (never before: the instance would go to another container while this
//! one still ran). Any other `delete` execs the runtime at once: the one thing read is the lease
//! file, never a spec. A lease whose container was deleted without the wrapper is freed by the
//! next allocation, its holder being gone.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use crate::backend::hook::container::{self, ContainerWork, LD_CACHE, LD_CONF_FILE};
use crate::backend::hook::{systemd, PROCESS_PROC};
use crate::backend::pipeline;
use crate::config::Config;
use crate::core::edits::DeviceRule;

use super::{RuntimeArgs, RuntimeError};

/// What the wrapper does around the runtime's `create`, planned by [`super::prepare`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AfterCreate {
    pub container: String,
    /// Links and ld cache, written through the bundle's rootfs before `create`.
    pub host: ContainerWork,
    /// What only works in the container's mount namespace (its procfs view, nodes the runtime
    /// does not make), after `create`; None when there is nothing.
    pub ns: Option<ContainerWork>,
    /// The container's device rules, for systemd's `DeviceAllow=` on its unit.
    pub rules: Vec<DeviceRule>,
}

/// Whether `path` is at or under a spec mount's destination other than migcage's own driver
/// file mounts: the mount would hide a file written through the rootfs from the host.
fn under_spec_mount(spec: &serde_json::Value, ours: &[String], path: &str) -> bool {
    let Some(mounts) = spec.get("mounts").and_then(|m| m.as_array()) else {
        return false;
    };
    mounts
        .iter()
        .filter_map(|m| m.get("destination")?.as_str())
        .filter(|d| !ours.iter().any(|o| o == d))
        .map(|d| d.trim_end_matches('/'))
        .any(|d| d.is_empty() || path == d || path.starts_with(&format!("{d}/")))
}

/// Split the container's work between the host (before `create`, through `host_rootfs`) and the
/// container's mount namespace (after it, where the rootfs is `/`). Pure.
///
/// The runtime makes the driver mounts and the nodes listed in the edited spec's
/// `linux.devices`; the namespace gets the procfs view and the nodes it does not list (a user
/// namespace's binds from a simulated host), and any link or ld cache a spec mount covers.
pub fn split_work(
    work: ContainerWork,
    spec: &serde_json::Value,
    host_rootfs: PathBuf,
) -> (ContainerWork, Option<ContainerWork>) {
    let listed: Vec<&str> = spec
        .pointer("/linux/devices")
        .and_then(|d| d.as_array())
        .map(|d| d.iter().filter_map(|d| d.get("path")?.as_str()).collect())
        .unwrap_or_default();
    let ours: Vec<String> = work
        .mounts
        .iter()
        .map(|m| m.container_path.clone())
        .collect();
    let hidden = |p: &str| under_spec_mount(spec, &ours, p);
    let (ns_links, host_links) = work.symlinks.into_iter().partition(|s| hidden(&s.link));
    let ld_hidden = hidden(LD_CACHE) || hidden(LD_CONF_FILE);
    let (ns_ld, host_ld) = if ld_hidden {
        (work.ld_cache, Vec::new())
    } else {
        (Vec::new(), work.ld_cache)
    };
    let host = ContainerWork {
        rootfs: host_rootfs,
        nodes: Vec::new(),
        bind_nodes: work.bind_nodes,
        proc_view: None,
        mounts: Vec::new(),
        symlinks: host_links,
        ld_cache: host_ld,
    };
    let ns = ContainerWork {
        rootfs: PathBuf::from("/"),
        nodes: work
            .nodes
            .into_iter()
            .filter(|n| !listed.contains(&n.path.as_str()))
            .collect(),
        bind_nodes: work.bind_nodes,
        proc_view: work.proc_view,
        mounts: Vec::new(),
        symlinks: ns_links,
        ld_cache: ns_ld,
    };
    let empty = ns.nodes.is_empty()
        && ns.proc_view.is_none()
        && ns.symlinks.is_empty()
        && ns.ld_cache.is_empty();
    (host, (!empty).then_some(ns))
}

/// `OsString`s of `items`.
fn os(items: &[&str]) -> Vec<OsString> {
    items.iter().map(OsString::from).collect()
}

/// The `create` command line with a `--pid-file` when it has none (right after the command,
/// where runc and crun both take it), and where the pid will be.
fn with_pid_file(
    args: &[OsString],
    parsed: &RuntimeArgs,
    cwd: &Path,
    bundle: &Path,
) -> (Vec<OsString>, PathBuf, bool) {
    if let Some(p) = &parsed.pid_file {
        return (args.to_vec(), cwd.join(p), false);
    }
    let at = parsed.command_at.map_or(args.len(), |i| i + 1);
    let path = bundle.join(format!(".migcage-init-{}.pid", std::process::id()));
    let mut out = args[..at].to_vec();
    out.push("--pid-file".into());
    out.push(path.clone().into_os_string());
    out.extend_from_slice(&args[at..]);
    (out, path, true)
}

/// `delete --force ID` with the command line's global flags (`--root`, `--systemd-cgroup`, ...).
fn force_delete_args(args: &[OsString], parsed: &RuntimeArgs, id: &str) -> Vec<OsString> {
    let globals = parsed.command_at.map_or(&args[..0], |i| &args[..i]);
    let mut out = globals.to_vec();
    out.extend(os(&["delete", "--force", id]));
    out
}

fn exit_code(status: std::process::ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => u8::try_from(c).unwrap_or(1),
        (None, Some(sig)) => u8::try_from(128 + sig).unwrap_or(1),
        _ => 1,
    }
}

/// The runtime, run to its end as this process's child.
pub struct Runtime<'a> {
    pub path: &'a Path,
    pub arg0: &'a OsStr,
}

impl Runtime<'_> {
    fn run(&self, args: &[OsString]) -> Result<u8, RuntimeError> {
        crate::sys::exec::run_to_end(self.path, self.arg0, args)
            .map(exit_code)
            .map_err(|source| RuntimeError::Exec {
                path: self.path.to_path_buf(),
                source,
            })
    }
}

/// `create` through the wrapper: the host's part, the runtime's `create`, the namespace's part,
/// the leases handed to the init. Returns the exit code (the runtime's, when it failed).
pub fn create(
    config: &Config,
    runtime: &Runtime<'_>,
    args: &[OsString],
    parsed: &RuntimeArgs,
    bundle: &Path,
    after: &AfterCreate,
) -> Result<u8, RuntimeError> {
    let id = after.container.as_str();
    let fail = |message: String| RuntimeError::Spec {
        path: bundle.join("config.json"),
        message: format!("container {id}: {message}"),
    };
    let release = || {
        if let Err(e) = pipeline::release_container(config, id) {
            tracing::warn!(container = id, error = %e, "leases not released after a failed create; the next allocation frees them");
        }
    };
    if let Err(e) = container::apply_from_host(&after.host) {
        release();
        return Err(fail(e));
    }
    crate::profile::mark("rootfs-files");
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    let (create_args, pid_file, ours) = with_pid_file(args, parsed, &cwd, bundle);
    let code = runtime.run(&create_args)?;
    crate::profile::mark("runtime-create");
    if code != 0 {
        if ours {
            let _ = std::fs::remove_file(&pid_file);
        }
        release();
        return Ok(code);
    }
    match finish_created(config, &pid_file, ours, after) {
        Ok(()) => Ok(0),
        Err(message) => {
            // The container exists but is not what was asked: it goes, with its leases.
            let _ = runtime.run(&force_delete_args(args, parsed, id));
            release();
            Err(fail(message))
        }
    }
}

/// After the runtime made the container: its init's pid, the namespace's part, the leases.
fn finish_created(
    config: &Config,
    pid_file: &Path,
    ours: bool,
    after: &AfterCreate,
) -> Result<(), String> {
    let text = std::fs::read_to_string(pid_file);
    if ours {
        let _ = std::fs::remove_file(pid_file);
    }
    let pid: i32 = text
        .map_err(|e| {
            format!(
                "cannot read the init's pid from {}: {e}",
                pid_file.display()
            )
        })?
        .trim()
        .parse()
        .map_err(|_| format!("{} holds no pid", pid_file.display()))?;
    if let Some(ns) = &after.ns {
        if ns.bind_nodes && !ns.nodes.is_empty() {
            crate::sys::host_nodes::ensure_host_nodes(&ns.nodes)?;
        }
        // Taken here, in the host's mount namespace: inside the container, after pivot_root,
        // host paths are out of reach and a bind mount of a host object is refused.
        let host = container::HostObjects::of(ns)?;
        crate::profile::mark("host-objects");
        crate::sys::nsenter::in_mount_namespace(pid, || container::apply_with(ns, &host))
            .map_err(|e| e.to_string())?;
        crate::profile::mark("container");
    }
    pipeline::hand_over(config, &after.container, pid).map_err(|e| e.to_string())?;
    crate::profile::mark("hand-over");
    // What a daemon-reload keeps: the nodes' DeviceAllow= on the container's systemd unit (the
    // runtime's own, from the spec's rules, with the systemd cgroup driver). A rootless
    // container has no device cgroup, so nothing for systemd to keep. Never fails the start.
    let rootless = crate::host::userns::current(Path::new(PROCESS_PROC)).is_child();
    if !after.rules.is_empty() && !rootless && systemd::running() {
        let units = systemd::system_bus(&config.host);
        let host = systemd::SystemdHost {
            running: true,
            units: &units,
        };
        systemd::register_logged(&host, Path::new(PROCESS_PROC), pid as u32, &after.rules);
        crate::profile::mark("systemd");
    }
    Ok(())
}

/// `delete` of a container that holds leases. Once its holder is gone (the container has
/// stopped: its init exited) the leases are released at once and the runtime is exec'd (None);
/// while it runs (`delete --force`), the runtime's `delete` runs as this process's child and the
/// leases go once it succeeded. None also when the container holds no lease here.
pub fn delete(
    config: &Config,
    runtime: &Runtime<'_>,
    args: &[OsString],
    id: &str,
) -> Option<Result<u8, RuntimeError>> {
    let store = crate::host::lease::Store::new(&config.state_dir);
    let held: Vec<_> = match store.read() {
        Ok(all) => all.into_iter().filter(|l| l.container == id).collect(),
        Err(_) => return None,
    };
    if held.is_empty() {
        return None;
    }
    let release = || {
        if let Err(e) = pipeline::release_container(config, id) {
            tracing::warn!(container = id, error = %e, "leases not released at delete; the next allocation frees them");
        }
    };
    let (live, _) =
        crate::host::lease::partition_live(held, Path::new(crate::host::lease::PROCESS_PROC));
    if live.is_empty() {
        release();
        return None;
    }
    Some(runtime.run(args).inspect(|&code| {
        if code == 0 {
            release();
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::hook::container::ProcView;
    use crate::core::edits::{LdCacheEntry, LibArch, Mount, Symlink};
    use crate::testing::char_node;
    use serde_json::json;

    fn work() -> ContainerWork {
        ContainerWork {
            rootfs: "/bundle/rootfs".into(),
            nodes: vec![
                char_node("/dev/nvidia0", 195, 0),
                char_node("/dev/nvidiactl", 195, 255),
            ],
            bind_nodes: false,
            proc_view: Some(ProcView {
                host_dir: "/proc/driver/nvidia".into(),
                gpus: vec!["0000:07:00.0".into()],
                caps: vec![],
            }),
            mounts: vec![Mount {
                host_path: "/usr/lib/libcuda.so.550".into(),
                container_path: "/usr/lib/x86_64-linux-gnu/libcuda.so.550".into(),
                options: vec!["ro".into(), "bind".into()],
            }],
            symlinks: vec![Symlink {
                link: "/usr/lib/x86_64-linux-gnu/libcuda.so.1".into(),
                target: "libcuda.so.550".into(),
            }],
            ld_cache: vec![LdCacheEntry {
                soname: "libcuda.so.1".into(),
                path: "/usr/lib/x86_64-linux-gnu/libcuda.so.1".into(),
                arch: LibArch::X86_64,
            }],
        }
    }

    fn spec(devices: &[&str], mounts: &[&str]) -> serde_json::Value {
        json!({
            "linux": {"devices": devices.iter().map(|p| json!({"path": p})).collect::<Vec<_>>()},
            "mounts": mounts.iter().map(|d| json!({"destination": d})).collect::<Vec<_>>(),
        })
    }

    #[test]
    fn links_and_ld_cache_go_through_the_rootfs_and_procfs_into_the_namespace() {
        let s = spec(
            &["/dev/nvidia0", "/dev/nvidiactl"],
            &[
                "/proc",
                "/dev",
                "/etc/hosts",
                "/usr/lib/x86_64-linux-gnu/libcuda.so.550",
            ],
        );
        let (host, ns) = split_work(work(), &s, "/b/rootfs".into());
        assert_eq!(host.rootfs, Path::new("/b/rootfs"));
        assert_eq!((host.symlinks.len(), host.ld_cache.len()), (1, 1));
        assert!(host.nodes.is_empty() && host.mounts.is_empty() && host.proc_view.is_none());
        let ns = ns.expect("the procfs view is namespace work");
        assert_eq!(ns.rootfs, Path::new("/"));
        // The runtime made both nodes and the mount.
        assert!(ns.nodes.is_empty() && ns.mounts.is_empty());
        assert!(ns.symlinks.is_empty() && ns.ld_cache.is_empty());
        assert!(ns.proc_view.is_some());
    }

    #[test]
    fn what_a_spec_mount_would_hide_is_done_in_the_namespace() {
        // A volume on the libraries' directory and one on /etc: written from the host, the
        // links and the cache would land under them, unseen.
        let s = spec(&["/dev/nvidia0"], &["/usr/lib/x86_64-linux-gnu", "/etc/"]);
        let (host, ns) = split_work(work(), &s, "/b/rootfs".into());
        assert!(host.symlinks.is_empty() && host.ld_cache.is_empty());
        let ns = ns.unwrap();
        assert_eq!((ns.symlinks.len(), ns.ld_cache.len()), (1, 1));
        // The node the spec does not list (a user namespace's, from a simulated host).
        assert_eq!(ns.nodes.len(), 1);
        assert_eq!(ns.nodes[0].path, "/dev/nvidiactl");
        // A mount elsewhere hides nothing; a prefix that is not a directory of it neither.
        let s = spec(&[], &["/usr/lib/x86_64-linux-gnu-other", "/et"]);
        let (host, _) = split_work(work(), &s, "/b/rootfs".into());
        assert_eq!((host.symlinks.len(), host.ld_cache.len()), (1, 1));
    }

    #[test]
    fn nothing_for_the_namespace_is_no_namespace_stage() {
        let mut w = work();
        w.proc_view = None;
        let (_, ns) = split_work(
            w,
            &spec(&["/dev/nvidia0", "/dev/nvidiactl"], &[]),
            "/r".into(),
        );
        assert_eq!(ns, None);
    }

    #[test]
    fn the_pid_file_is_the_engines_or_one_added_after_the_command() {
        let a = os(&["--root", "/r", "create", "--bundle", "/b", "c1"]);
        let p = RuntimeArgs::parse(&a);
        let (args, path, ours) = with_pid_file(&a, &p, Path::new("/cwd"), Path::new("/b"));
        assert!(ours);
        assert_eq!(&args[..3], &a[..3]);
        assert_eq!(args[3], "--pid-file");
        assert_eq!(Path::new(&args[4]), path);
        assert!(path.starts_with("/b"));
        assert_eq!(&args[5..], &a[3..]);
        let a = os(&["create", "--pid-file", "rel.pid", "--bundle", "/b", "c1"]);
        let p = RuntimeArgs::parse(&a);
        let (args, path, ours) = with_pid_file(&a, &p, Path::new("/cwd"), Path::new("/b"));
        assert!(!ours);
        assert_eq!(args, a);
        assert_eq!(path, Path::new("/cwd/rel.pid"));
        // The forced delete keeps the global flags.
        let a = os(&[
            "--root",
            "/r",
            "--systemd-cgroup",
            "create",
            "-b",
            "/b",
            "c1",
        ]);
        let p = RuntimeArgs::parse(&a);
        assert_eq!(
            force_delete_args(&a, &p, "c1"),
            os(&[
                "--root",
                "/r",
                "--systemd-cgroup",
                "delete",
                "--force",
                "c1"
            ])
        );
    }

    #[test]
    fn exit_codes_are_the_runtimes() {
        use std::os::unix::process::ExitStatusExt;
        let st = std::process::ExitStatus::from_raw;
        assert_eq!(exit_code(st(0)), 0);
        assert_eq!(exit_code(st(3 << 8)), 3);
        assert_eq!(exit_code(st(9)), 137);
    }
}
