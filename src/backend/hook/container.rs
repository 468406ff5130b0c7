//! The hook's work inside the container's root filesystem: device nodes, the isolated view of
//! the driver's procfs, and the driver's files (bind mounts, symlinks, ld cache). Runs inside the
//! container's mount namespace (see `nsenter`).
//!
//! The ld cache is updated without running anything: the image's `/etc/ld.so.cache` is read
//! through [`Rootfs::read_file`] (a regular file inside the rootfs, size-capped), parsed with
//! [`crate::core::ldcache`], given the injected libraries, and written back in the new format with
//! [`Rootfs::replace_file`] (temporary name + rename). No binary or library of the image is ever
//! executed or loaded on the host, and neither is the host's ldconfig.

use std::path::{Path, PathBuf};

use nix::sys::statfs::{PROC_SUPER_MAGIC, TMPFS_MAGIC};
use serde::{Deserialize, Serialize};

use crate::core::edits::{DeviceNode, LdCacheEntry, LibArch, Mount, Symlink};
use crate::core::ldcache::{self, LdCache};
use crate::sys::rootfs::{MountFlags, Rootfs};

pub use super::host_objects::HostObjects;

/// The container's ld cache.
pub const LD_CACHE: &str = "/etc/ld.so.cache";
/// The directory `ldconfig` reads extra library directories from (`include` in ld.so.conf).
pub const LD_CONF_DIR: &str = "/etc/ld.so.conf.d";
/// migcage's entry there: the injected libraries' directories, so that an `ldconfig` run later
/// inside the container (a package install) keeps listing them.
pub const LD_CONF_FILE: &str = "/etc/ld.so.conf.d/000-migcage-nvidia.conf";

/// What the container's /proc/driver/nvidia shows: only its own GPUs and MIG capabilities.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProcView {
    /// The host's `<proc_root>/driver/nvidia`.
    pub host_dir: PathBuf,
    /// `gpus/<bus id>` directories to expose, such as `0000:07:00.0`.
    pub gpus: Vec<String>,
    /// Capability files to expose, relative to the driver dir, such as
    /// `capabilities/gpu0/mig/gi7/access`.
    pub caps: Vec<String>,
}

/// Everything the hook does inside the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContainerWork {
    /// The rootfs, as a path in the container's mount namespace before pivot_root.
    pub rootfs: PathBuf,
    pub nodes: Vec<DeviceNode>,
    /// The container has its own user namespace: bind-mount the host nodes instead of mknod
    /// (a tmpfs mounted in a user namespace ignores device nodes).
    pub bind_nodes: bool,
    pub proc_view: Option<ProcView>,
    /// Bind mounts of the driver's files (host path -> container path, with options).
    #[serde(default)]
    pub mounts: Vec<Mount>,
    /// Symlinks to make after the mounts.
    #[serde(default)]
    pub symlinks: Vec<Symlink>,
    /// Entries to add to the container's `/etc/ld.so.cache`.
    #[serde(default)]
    pub ld_cache: Vec<LdCacheEntry>,
}

/// The driver's files the procfs view copies (params changed, see [`container_params`]).
pub(crate) const VIEW_FILES: [&str; 3] = ["params", "version", "registry"];

/// The driver's `params` as a container must see it: `ModifyDeviceFiles: 0`, so that the
/// libraries in the container never try to create device nodes themselves.
pub fn container_params(host_params: &str) -> String {
    let mut out = String::with_capacity(host_params.len());
    let mut seen = false;
    for line in host_params.lines() {
        if line.split(':').next().map(str::trim) == Some("ModifyDeviceFiles") {
            out.push_str("ModifyDeviceFiles: 0\n");
            seen = true;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    if !seen {
        out.push_str("ModifyDeviceFiles: 0\n");
    }
    out
}

/// Make the device nodes. Returns how many were created (0 on a re-run).
fn apply_nodes(root: &Rootfs, work: &ContainerWork, host: &HostObjects) -> Result<usize, String> {
    let mut made = 0;
    for n in &work.nodes {
        if work.bind_nodes {
            host.check_node(n)?;
            if root.exists(&n.path).map_err(|e| e.to_string())? && root.is_char_device(&n.path) {
                continue;
            }
            // ro, nosuid, noexec: what a user namespace leaves to change on a bind mount, and
            // all a device node needs (a read-only mount does not stop writes to a device).
            host.bind(
                root,
                Path::new(&n.host_path),
                &n.path,
                MountFlags {
                    readonly: true,
                    nodev: false,
                    noexec: true,
                },
            )
            .map_err(|e| e.to_string())?;
            made += 1;
        } else if root
            .mknod_char(&n.path, n.major, n.minor, n.file_mode, n.uid, n.gid)
            .map_err(|e| e.to_string())?
        {
            made += 1;
        }
    }
    Ok(made)
}

/// Build the container's /proc/driver/nvidia. On a real host the container's procfs has the
/// driver's directory and a tmpfs covers it; on a simulated host it does not (the simulated
/// driver lives in files, not in the kernel), so the tmpfs covers /proc/driver instead and holds
/// the same `nvidia` tree. Returns false when nothing was done (no procfs at /proc, or already
/// done by an earlier run).
fn apply_proc_view(root: &Rootfs, view: &ProcView, objects: &HostObjects) -> Result<bool, String> {
    if root.fs_type("/proc") != Some(PROC_SUPER_MAGIC) {
        return Ok(false);
    }
    let (mountpoint, dir) = if root
        .exists("/proc/driver/nvidia")
        .map_err(|e| e.to_string())?
    {
        ("/proc/driver/nvidia", "/proc/driver/nvidia".to_string())
    } else if root.exists("/proc/driver").map_err(|e| e.to_string())? {
        ("/proc/driver", "/proc/driver/nvidia".to_string())
    } else {
        return Ok(false);
    };
    if root.fs_type(mountpoint) == Some(TMPFS_MAGIC) {
        return Ok(false);
    }
    root.mount_tmpfs(mountpoint, "mode=0555,size=1m,nr_inodes=4096")
        .map_err(|e| e.to_string())?;
    let host = &view.host_dir;
    let read = |name: &str| objects.read(&host.join(name));
    match read("params") {
        Ok(p) => root.write_file(
            &format!("{dir}/params"),
            container_params(&p).as_bytes(),
            0o444,
        ),
        Err(_) => root.write_file(&format!("{dir}/params"), b"ModifyDeviceFiles: 0\n", 0o444),
    }
    .map_err(|e| e.to_string())?;
    for name in &VIEW_FILES[1..] {
        if let Ok(text) = read(name) {
            root.write_file(&format!("{dir}/{name}"), text.as_bytes(), 0o444)
                .map_err(|e| e.to_string())?;
        }
    }
    let ro = MountFlags {
        readonly: true,
        nodev: true,
        noexec: true,
    };
    for bus in &view.gpus {
        let src = host.join("gpus").join(bus);
        objects
            .bind(root, &src, &format!("{dir}/gpus/{bus}"), ro)
            .map_err(|e| e.to_string())?;
    }
    for cap in &view.caps {
        objects
            .bind(root, &host.join(cap), &format!("{dir}/{cap}"), ro)
            .map_err(|e| e.to_string())?;
    }
    root.remount_readonly(mountpoint)
        .map_err(|e| e.to_string())?;
    Ok(true)
}

/// What `apply` did, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Applied {
    pub nodes_created: usize,
    pub proc_view: bool,
    /// Driver files bind-mounted (0 on a re-run).
    #[serde(default)]
    pub mounts: usize,
    /// Symlinks made or replaced (0 on a re-run).
    #[serde(default)]
    pub symlinks: usize,
    /// Whether the ld cache was rewritten (false when it already had every entry).
    #[serde(default)]
    pub ld_cache_written: bool,
}

/// Mount flags from a mount's options. Every driver file mount is a bind mount and `nosuid`;
/// an option this does not know is refused rather than ignored.
pub fn mount_flags(m: &Mount) -> Result<MountFlags, String> {
    let mut flags = MountFlags {
        readonly: false,
        nodev: false,
        noexec: false,
    };
    let mut bind = false;
    for o in &m.options {
        match o.as_str() {
            "ro" => flags.readonly = true,
            "rw" => flags.readonly = false,
            "nodev" => flags.nodev = true,
            "noexec" => flags.noexec = true,
            "nosuid" => {}
            "bind" | "rbind" => bind = true,
            other => {
                return Err(format!(
                    "mount of {} at {}: option {other:?} is not one migcage applies (ro, rw, nodev, noexec, nosuid, bind, rbind)",
                    m.host_path, m.container_path
                ))
            }
        }
    }
    if !bind {
        return Err(format!(
            "mount of {} at {}: not a bind mount; migcage only bind-mounts host files",
            m.host_path, m.container_path
        ));
    }
    Ok(flags)
}

/// A symlink's target must be a plain name in the link's directory.
fn check_symlink(s: &Symlink) -> Result<(), String> {
    let t = s.target.as_str();
    if t.is_empty() || t == "." || t == ".." || t.contains('/') || t.contains('\0') {
        return Err(format!(
            "symlink {} -> {t:?}: the target must be a file name in the same directory",
            s.link
        ));
    }
    Ok(())
}

fn ld_flags(arch: LibArch) -> i32 {
    match arch {
        LibArch::X86_64 => ldcache::FLAGS_X86_64,
        LibArch::I386 => ldcache::FLAGS_I386,
    }
}

/// The container's new ld cache: the image's (when it has a readable one) with `entries` added,
/// or None when it already has them all.
pub fn updated_ld_cache(
    image: Option<&[u8]>,
    entries: &[LdCacheEntry],
) -> Result<Option<Vec<u8>>, String> {
    let mut cache = match image {
        Some(bytes) => match LdCache::parse(bytes) {
            Ok(c) => c,
            // glibc ignores a cache it cannot read, and so can we: the new one has only the
            // driver's libraries, the image's are still found in the default directories.
            Err(e) => {
                tracing::warn!("the image's {LD_CACHE} is unreadable ({e}); writing a new one");
                LdCache::default()
            }
        },
        None => LdCache::default(),
    };
    let new: Vec<ldcache::Entry> = entries
        .iter()
        .map(|e| ldcache::Entry::new(&e.soname, &e.path, ld_flags(e.arch)))
        .collect();
    let generator = format!("migcage {}", env!("CARGO_PKG_VERSION"));
    let before = image.map(|b| b.to_vec());
    cache.merge(&new);
    let bytes = cache.to_bytes(&generator);
    if before.as_deref() == Some(&bytes[..]) {
        return Ok(None);
    }
    Ok(Some(bytes))
}

/// Mount the driver's files, make their symlinks and update the ld cache.
fn apply_driver(root: &Rootfs, work: &ContainerWork, applied: &mut Applied) -> Result<(), String> {
    for m in &work.mounts {
        let flags = mount_flags(m)?;
        if root
            .bind_mount(Path::new(&m.host_path), &m.container_path, flags)
            .map_err(|e| e.to_string())?
        {
            applied.mounts += 1;
        }
    }
    for s in &work.symlinks {
        check_symlink(s)?;
        if root
            .symlink(&s.link, &s.target)
            .map_err(|e| e.to_string())?
        {
            applied.symlinks += 1;
        }
    }
    if !work.ld_cache.is_empty() {
        let image = root
            .read_file(LD_CACHE, ldcache::MAX_SIZE)
            .map_err(|e| format!("cannot update the container's ld cache: {e}"))?;
        if let Some(bytes) = updated_ld_cache(image.as_deref(), &work.ld_cache)? {
            root.replace_file(LD_CACHE, &bytes, 0o644)
                .map_err(|e| format!("cannot update the container's ld cache: {e}"))?;
            applied.ld_cache_written = true;
        }
        if root.exists(LD_CONF_DIR).map_err(|e| e.to_string())? {
            let text = ld_conf(&work.ld_cache);
            let old = root
                .read_file(LD_CONF_FILE, 64 << 10)
                .map_err(|e| e.to_string())?;
            if old.as_deref() != Some(text.as_bytes()) {
                root.replace_file(LD_CONF_FILE, text.as_bytes(), 0o644)
                    .map_err(|e| e.to_string())?;
            }
        }
    }
    Ok(())
}

/// The ld.so.conf.d entry for `entries`: their directories, each once.
pub fn ld_conf(entries: &[LdCacheEntry]) -> String {
    let mut text = String::from("# NVIDIA driver libraries injected by migcage\n");
    let mut dirs: Vec<&str> = Vec::new();
    for e in entries {
        if let Some((dir, _)) = e.path.rsplit_once('/') {
            if !dir.is_empty() && !dirs.contains(&dir) {
                dirs.push(dir);
                text.push_str(dir);
                text.push('\n');
            }
        }
    }
    text
}

/// The driver files' links and ld cache of `work`, made from the host through the rootfs path
/// before the runtime has made the container (the runtime makes the mounts and nodes: `work`
/// has none, see [`crate::backend::runtime::lifecycle::split_work`]), each
/// object as its directory's owner: in a user-namespaced container, the directories a link
/// needs are then the container root's, in which the runtime makes its mount targets.
pub fn apply_from_host(work: &ContainerWork) -> Result<Applied, String> {
    crate::sys::rootfs::with_umask_cleared(|| {
        let root = Rootfs::open(&work.rootfs)
            .map_err(|e| e.to_string())?
            .creating_as_owner();
        let mut applied = Applied::default();
        apply_driver(&root, work, &mut applied)?;
        Ok(applied)
    })
}

/// Do the work. Must run in the container's mount namespace.
pub fn apply(work: &ContainerWork) -> Result<Applied, String> {
    apply_with(work, &HostObjects::default())
}

/// [`apply`] with what `host` took from the host in place of the host's paths.
pub fn apply_with(work: &ContainerWork, host: &HostObjects) -> Result<Applied, String> {
    // Modes are exactly the planned ones.
    crate::sys::rootfs::with_umask_cleared(|| {
        let root = Rootfs::open(&work.rootfs).map_err(|e| e.to_string())?;
        // The runtime's /dev is a tmpfs made for the container: nodes may go there. A /dev that
        // is anything else stays read-only to migcage (nodes then only go where the rootfs's own
        // filesystem is, which a host bind mount is not). The hook refuses a spec that binds a
        // host directory on /dev before it gets here.
        if root.fs_type("/dev") == Some(TMPFS_MAGIC) {
            root.allow_writes_in("/dev").map_err(|e| e.to_string())?;
        }
        let nodes_created = apply_nodes(&root, work, host)?;
        let proc_view = match &work.proc_view {
            Some(v) => apply_proc_view(&root, v, host)?,
            None => false,
        };
        let mut applied = Applied {
            nodes_created,
            proc_view,
            ..Applied::default()
        };
        apply_driver(&root, work, &mut applied)?;
        Ok(applied)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::stat::makedev;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn params_turn_off_device_file_creation() {
        let host = "ResmanDebugLevel: 4294967295\nModifyDeviceFiles: 1\nDeviceFileUID: 0\n";
        assert_eq!(
            container_params(host),
            "ResmanDebugLevel: 4294967295\nModifyDeviceFiles: 0\nDeviceFileUID: 0\n"
        );
        assert_eq!(container_params("A: 1\n"), "A: 1\nModifyDeviceFiles: 0\n");
    }

    #[test]
    fn nodes_are_made_once_in_a_plain_directory() {
        if !nix::unistd::geteuid().is_root() {
            crate::testing::skip(
                "nodes_are_made_once_in_a_plain_directory: needs root (CAP_MKNOD)",
            );
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let node = DeviceNode {
            path: "/dev/nvidia-caps/nvidia-cap12".into(),
            host_path: "/nonexistent".into(),
            kind: 'c',
            major: 509,
            minor: 12,
            file_mode: 0o444,
            uid: 0,
            gid: 0,
        };
        let work = ContainerWork {
            rootfs: d.path().into(),
            nodes: vec![node],
            bind_nodes: false,
            proc_view: None,
            mounts: vec![],
            symlinks: vec![],
            ld_cache: vec![],
        };
        assert_eq!(
            apply(&work).unwrap(),
            Applied {
                nodes_created: 1,
                ..Applied::default()
            }
        );
        assert_eq!(apply(&work).unwrap(), Applied::default());
        let m = std::fs::metadata(d.path().join("dev/nvidia-caps/nvidia-cap12")).unwrap();
        assert_eq!(m.mode() & 0o7777, 0o444);
        assert_eq!(m.rdev(), makedev(509, 12));
    }

    #[test]
    fn mount_options_map_to_flags_and_unknown_ones_are_refused() {
        let m = |opts: &[&str]| Mount {
            host_path: "/h".into(),
            container_path: "/c".into(),
            options: opts.iter().map(|s| s.to_string()).collect(),
        };
        assert_eq!(
            mount_flags(&m(&["ro", "nosuid", "nodev", "bind"])).unwrap(),
            MountFlags {
                readonly: true,
                nodev: true,
                noexec: false
            }
        );
        assert_eq!(
            mount_flags(&m(&["ro", "nosuid", "nodev", "noexec", "bind"])).unwrap(),
            MountFlags {
                readonly: true,
                nodev: true,
                noexec: true
            }
        );
        let e = mount_flags(&m(&["bind", "suid"])).unwrap_err();
        assert!(e.contains("\"suid\""), "{e}");
        assert!(mount_flags(&m(&["ro"]))
            .unwrap_err()
            .contains("not a bind mount"));
    }

    #[test]
    fn symlink_targets_are_plain_names() {
        let s = |t: &str| Symlink {
            link: "/usr/lib/libcuda.so.1".into(),
            target: t.into(),
        };
        assert!(check_symlink(&s("libcuda.so.550.54.15")).is_ok());
        for bad in ["", ".", "..", "../../etc/passwd", "/etc/passwd", "a/b"] {
            assert!(check_symlink(&s(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn ld_cache_keeps_the_images_entries_and_adds_ours_once() {
        let image = {
            let mut c = LdCache::default();
            c.entries.push(ldcache::Entry::new(
                "libc.so.6",
                "/lib/x86_64-linux-gnu/libc.so.6",
                ldcache::FLAGS_X86_64,
            ));
            c.entries.push(ldcache::Entry::new(
                "libcuda.so.1",
                "/usr/local/cuda/compat/libcuda.so.1",
                ldcache::FLAGS_X86_64,
            ));
            c.to_bytes("ldconfig")
        };
        let ours = [LdCacheEntry {
            soname: "libcuda.so.1".into(),
            path: "/usr/lib/x86_64-linux-gnu/libcuda.so.1".into(),
            arch: LibArch::X86_64,
        }];
        let new = updated_ld_cache(Some(&image), &ours).unwrap().unwrap();
        let c = LdCache::parse(&new).unwrap();
        assert_eq!(c.entries.len(), 2);
        assert_eq!(
            c.lookup("libcuda.so.1", ldcache::FLAGS_X86_64)
                .unwrap()
                .path(),
            "/usr/lib/x86_64-linux-gnu/libcuda.so.1"
        );
        assert!(c.lookup("libc.so.6", ldcache::FLAGS_X86_64).is_some());
        assert!(c.generator.unwrap().starts_with("migcage "));
        // Already there: nothing to write.
        assert_eq!(updated_ld_cache(Some(&new), &ours).unwrap(), None);
        assert_eq!(
            ld_conf(&ours),
            "# NVIDIA driver libraries injected by migcage\n/usr/lib/x86_64-linux-gnu\n"
        );
        // No cache, or an unreadable one: ours alone.
        for image in [None, Some(&b"junk"[..])] {
            let c = LdCache::parse(&updated_ld_cache(image, &ours).unwrap().unwrap()).unwrap();
            assert_eq!(c.entries.len(), 1);
        }
    }
}
