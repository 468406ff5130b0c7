//! The rootfs operations through the recording double: each errno path, without root.

use nix::errno::Errno;
use nix::mount::MsFlags;
use nix::sys::stat::makedev;

use super::test::{Node, RecordingRootfs, RootfsCall};
use super::*;

const ROOT: &str = "/run/ctr/rootfs";

fn open(double: &RecordingRootfs) -> Rootfs<'_> {
    Rootfs::open_on(double, Path::new(ROOT)).unwrap()
}

fn made(double: &RecordingRootfs) -> Vec<RootfsCall> {
    double
        .calls()
        .into_iter()
        .filter(|c| {
            matches!(
                c,
                RootfsCall::Mkdirat { .. }
                    | RootfsCall::Mknodat { .. }
                    | RootfsCall::Openat { .. }
                    | RootfsCall::Symlinkat { .. }
                    | RootfsCall::Renameat { .. }
                    | RootfsCall::Mount { .. }
            )
        })
        .collect()
}

fn one_line(e: &RootfsError) -> String {
    let text = e.to_string();
    assert_eq!(text.lines().count(), 1, "{text}");
    text
}

#[test]
fn mknod_creates_missing_parents_then_the_node() {
    let double = RecordingRootfs::new();
    let r = open(&double);
    assert!(r
        .mknod_char("/dev/nvidia-caps/nvidia-cap12", 509, 12, 0o444, 0, 0)
        .unwrap());
    assert_eq!(
        made(&double),
        [
            RootfsCall::Mkdirat {
                at: "/".into(),
                name: "dev".into()
            },
            RootfsCall::Mkdirat {
                at: "/dev".into(),
                name: "nvidia-caps".into()
            },
            RootfsCall::Mknodat {
                at: "/dev/nvidia-caps".into(),
                name: "nvidia-cap12".into(),
                dev: makedev(509, 12)
            },
        ]
    );
    // Every lookup stays inside the root and refuses magic links.
    for c in double.calls() {
        if let RootfsCall::Openat2 { resolve, .. } = c {
            assert_eq!(
                resolve,
                ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS
            );
        }
    }
    assert_eq!(
        double.calls().last(),
        Some(&RootfsCall::Lchownat {
            at: "/dev/nvidia-caps".into(),
            name: "nvidia-cap12".into()
        })
    );
}

#[test]
fn mknod_eexist_of_the_same_node_is_kept() {
    let double = RecordingRootfs::new().with("/dev/nvidia0", Node::Char(makedev(195, 0)));
    let r = open(&double);
    assert!(!r.mknod_char("/dev/nvidia0", 195, 0, 0o666, 0, 0).unwrap());
    let log = double.log();
    let mknod = log
        .iter()
        .position(|(c, _)| matches!(c, RootfsCall::Mknodat { .. }))
        .unwrap();
    assert_eq!(log[mknod].1, Err(Errno::EEXIST));
    assert_eq!(
        log[mknod + 1].0,
        RootfsCall::Lstatat {
            at: "/dev".into(),
            name: "nvidia0".into()
        }
    );
    assert_eq!(
        double.node("/dev/nvidia0"),
        Some(Node::Char(makedev(195, 0)))
    );
}

#[test]
fn mknod_eexist_of_another_node_is_a_conflict() {
    let double = RecordingRootfs::new()
        .with("/dev/nvidia0", Node::Char(makedev(195, 1)))
        .with("/dev/nvidia1", Node::File);
    let r = open(&double);
    let e = r
        .mknod_char("/dev/nvidia0", 195, 0, 0o666, 0, 0)
        .unwrap_err();
    assert_eq!(
        one_line(&e),
        format!("/dev/nvidia0 inside the container rootfs {ROOT} already exists and is device 195:1, not character device 195:0: remove it from the image")
    );
    let e = r
        .mknod_char("/dev/nvidia1", 195, 1, 0o666, 0, 0)
        .unwrap_err();
    assert!(
        one_line(&e).contains("already exists and is a regular file, not character device 195:1"),
        "{e}"
    );
    // Neither was chowned: a conflict stops before anything else is done.
    assert!(!double
        .calls()
        .iter()
        .any(|c| matches!(c, RootfsCall::Lchownat { .. })));
}

#[test]
fn enotdir_when_a_path_component_is_a_file() {
    let double = RecordingRootfs::new().with("/dev", Node::File);
    let r = open(&double);
    let e = r
        .mknod_char("/dev/nvidia0", 195, 0, 0o666, 0, 0)
        .unwrap_err();
    assert!(matches!(
        e,
        RootfsError::Op {
            errno: Errno::ENOTDIR,
            ..
        }
    ));
    assert_eq!(
        one_line(&e),
        format!(
            "create directory /dev inside the container rootfs {ROOT}: {}",
            Errno::ENOTDIR
        )
    );
    assert!(made(&double).is_empty(), "{:?}", made(&double));
    assert_eq!(double.node("/dev"), Some(Node::File));
}

#[test]
fn eloop_from_a_symlink_loop_stops_before_anything_is_made() {
    let double = RecordingRootfs::new().with("/usr/lib64", Node::Link("/usr/lib64".into()));
    let r = open(&double);
    let e = r.mkdir_all("/usr/lib64/nvidia", 0o755).unwrap_err();
    assert_eq!(
        one_line(&e),
        format!(
            "create directory /usr/lib64/nvidia inside the container rootfs {ROOT}: {}",
            Errno::ELOOP
        )
    );
    assert!(made(&double).is_empty(), "{:?}", made(&double));
}

#[test]
fn eloop_from_the_kernel_refusing_a_link_is_an_error_not_a_fallback() {
    // RESOLVE_NO_MAGICLINKS: the kernel answers ELOOP for a /proc/self/... style link in the
    // image. The rootfs code passes it on and makes nothing.
    let double = RecordingRootfs::new()
        .with("/etc/ld.so.cache", Node::Link("/proc/self/root/etc/passwd".into()))
        .fail(Errno::ELOOP, |c| {
            matches!(c, RootfsCall::Openat2 { path, resolve, .. }
                if path == "etc/ld.so.cache"
                    && resolve.contains(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS))
        });
    let r = open(&double);
    let e = r.read_file("/etc/ld.so.cache", 1 << 20).unwrap_err();
    assert_eq!(
        one_line(&e),
        format!(
            "open /etc/ld.so.cache inside the container rootfs {ROOT}: {}",
            Errno::ELOOP
        )
    );
    assert!(!double
        .calls()
        .iter()
        .any(|c| matches!(c, RootfsCall::Reopen(_))));
    // Nor is ELOOP taken for "nothing there".
    assert!(r.exists("/etc/ld.so.cache").is_err());
}

#[test]
fn a_symlink_at_a_bind_mount_target_is_refused_and_never_mounted() {
    let src = Path::new("/usr/lib/x86_64-linux-gnu/libcuda.so.550");
    let double = RecordingRootfs::new()
        .with_host(src, Node::File)
        .with("/lib/libcuda.so.1", Node::Link("/etc/shadow".into()));
    let r = open(&double);
    let flags = MountFlags {
        readonly: true,
        nodev: true,
        noexec: false,
    };
    let e = r.bind_mount(src, "/lib/libcuda.so.1", flags).unwrap_err();
    assert!(
        one_line(&e).contains("already exists and is a symlink, not a file"),
        "{e}"
    );
    assert!(!double
        .calls()
        .iter()
        .any(|c| matches!(c, RootfsCall::Mount { .. })));
}

#[test]
fn nothing_is_made_on_a_foreign_mount() {
    let double = RecordingRootfs::new()
        .with("/dev", Node::Dir)
        .with_mount("/dev", 2);
    let r = open(&double);
    let e = r
        .mknod_char("/dev/nvidia0", 195, 0, 0o666, 0, 0)
        .unwrap_err();
    assert!(matches!(e, RootfsError::ForeignMount { .. }), "{e}");
    assert!(made(&double).is_empty());
    // Once allowed (the runtime's /dev tmpfs), the node is made there.
    r.allow_writes_in("/dev").unwrap();
    assert!(r.mknod_char("/dev/nvidia0", 195, 0, 0o666, 0, 0).unwrap());
}

#[test]
fn symlink_is_made_under_a_temporary_name_and_renamed() {
    let double = RecordingRootfs::new().with("/usr/lib/libcuda.so.1", Node::File);
    let r = open(&double);
    assert!(r
        .symlink("/usr/lib/libcuda.so.1", "libcuda.so.550")
        .unwrap());
    let tmp = format!(".libcuda.so.1.migcage-{}", std::process::id());
    assert_eq!(
        made(&double),
        [
            RootfsCall::Symlinkat {
                target: "libcuda.so.550".into(),
                at: "/usr/lib".into(),
                name: tmp.clone()
            },
            RootfsCall::Renameat {
                at: "/usr/lib".into(),
                from: tmp,
                to: "libcuda.so.1".into()
            },
        ]
    );
    assert_eq!(
        double.node("/usr/lib/libcuda.so.1"),
        Some(Node::Link("libcuda.so.550".into()))
    );
    // The same link again: nothing made.
    assert!(!r
        .symlink("/usr/lib/libcuda.so.1", "libcuda.so.550")
        .unwrap());
    assert_eq!(made(&double).len(), 2);
}

#[test]
fn a_failed_rename_leaves_no_temporary_name() {
    let double = RecordingRootfs::new()
        .with("/usr/lib", Node::Dir)
        .fail(Errno::EROFS, |c| matches!(c, RootfsCall::Renameat { .. }));
    let r = open(&double);
    let e = r
        .symlink("/usr/lib/libcuda.so.1", "libcuda.so.550")
        .unwrap_err();
    assert_eq!(
        one_line(&e),
        format!(
            "rename symlink into place at /usr/lib/libcuda.so.1 inside the container rootfs {ROOT}: {}",
            Errno::EROFS
        )
    );
    assert_eq!(double.paths(), ["/", "/usr", "/usr/lib"]);
}

/// A user-namespaced container's /dev: a tmpfs mounted in its user namespace, whose files the
/// hook's ids (unmapped there) cannot own.
fn userns_dev() -> RecordingRootfs {
    RecordingRootfs::new()
        .with("/dev", Node::Dir)
        .with_mount("/dev", 2)
        .with_userns_fs("/dev", (100000, 100000))
        .with_host(
            Path::new("/host/dev/nvidia-cap12"),
            Node::Char(makedev(509, 12)),
        )
}

#[test]
fn in_a_user_namespaces_dev_objects_are_made_as_its_owner() {
    let double = userns_dev();
    let r = open(&double);
    r.allow_writes_in("/dev").unwrap();
    let flags = MountFlags {
        readonly: true,
        nodev: false,
        noexec: true,
    };
    assert!(r
        .bind_mount(
            Path::new("/host/dev/nvidia-cap12"),
            "/dev/nvidia-caps/nvidia-cap12",
            flags
        )
        .unwrap());
    let ids: Vec<(RootfsCall, Result<(), Errno>)> = double
        .log()
        .into_iter()
        .filter(|(c, _)| {
            matches!(
                c,
                RootfsCall::Mkdirat { .. }
                    | RootfsCall::Openat { .. }
                    | RootfsCall::SetFsIds { .. }
            )
        })
        .collect();
    let as_owner = RootfsCall::SetFsIds {
        uid: 100000,
        gid: 100000,
    };
    let back = RootfsCall::SetFsIds { uid: 0, gid: 0 };
    let mkdir = RootfsCall::Mkdirat {
        at: "/dev".into(),
        name: "nvidia-caps".into(),
    };
    let create = RootfsCall::Openat {
        at: "/dev/nvidia-caps".into(),
        name: "nvidia-cap12".into(),
        flags: OFlag::O_CREAT
            | OFlag::O_EXCL
            | OFlag::O_WRONLY
            | OFlag::O_NOFOLLOW
            | OFlag::O_CLOEXEC,
    };
    assert_eq!(
        ids,
        [
            (mkdir.clone(), Err(Errno::EOVERFLOW)),
            (as_owner.clone(), Ok(())),
            (mkdir, Ok(())),
            (back.clone(), Ok(())),
            (create.clone(), Err(Errno::EOVERFLOW)),
            (as_owner, Ok(())),
            (create, Ok(())),
            (back, Ok(())),
        ]
    );
    // The hook's own ids again, and the node bind-mounted, then remounted ro, nosuid, noexec.
    assert_eq!(double.fs_ids(), (0, 0));
    assert_eq!(
        double.node("/dev/nvidia-caps/nvidia-cap12"),
        Some(Node::File)
    );
    let remount = MsFlags::MS_REMOUNT
        | MsFlags::MS_BIND
        | MsFlags::MS_NOSUID
        | MsFlags::MS_NOEXEC
        | MsFlags::MS_RDONLY;
    assert!(double.calls().contains(&RootfsCall::Mount {
        source: None,
        target: "/dev/nvidia-caps/nvidia-cap12".into(),
        flags: remount
    }));
}

#[test]
fn a_create_that_cannot_take_the_owners_ids_fails_and_makes_nothing() {
    let double = userns_dev().fail(Errno::EPERM, |c| {
        matches!(c, RootfsCall::SetFsIds { uid: 100000, .. })
    });
    let r = open(&double);
    r.allow_writes_in("/dev").unwrap();
    let e = r.ensure_file("/dev/nvidiactl", 0o644).unwrap_err();
    assert_eq!(
        one_line(&e),
        format!("create file /dev/nvidiactl inside the container rootfs {ROOT}: EPERM: Operation not permitted")
    );
    assert_eq!(double.node("/dev/nvidiactl"), None);
    assert_eq!(double.fs_ids(), (0, 0));
    // Outside the user namespace's filesystem nothing changes ids.
    let double = RecordingRootfs::new();
    open(&double).ensure_file("/etc/x", 0o644).unwrap();
    assert!(!double
        .calls()
        .iter()
        .any(|c| matches!(c, RootfsCall::SetFsIds { .. })));
}

fn openat2_of(double: &RecordingRootfs, want: &str) -> usize {
    super::walk_tests::openat2_paths(double)
        .iter()
        .filter(|p| *p == want)
        .count()
}

#[test]
fn objects_in_one_directory_look_it_and_its_mount_up_once() {
    let double = RecordingRootfs::new().with("/dev", Node::Dir);
    let r = open(&double);
    for minor in 0..4 {
        r.mknod_char(&format!("/dev/nvidia{minor}"), 195, minor, 0o666, 0, 0)
            .unwrap();
    }
    r.write_file("/dev/marker", b"x", 0o644).unwrap();
    assert_eq!(openat2_of(&double, "dev"), 1, "{:?}", double.calls());
    let mount_ids = double
        .calls()
        .iter()
        .filter(|c| matches!(c, RootfsCall::MountId(at) if at == "/dev"))
        .count();
    assert_eq!(mount_ids, 1, "{:?}", double.calls());
    assert_eq!(
        double.node("/dev/nvidia3"),
        Some(Node::Char(makedev(195, 3)))
    );
}

#[test]
fn a_directory_that_is_there_takes_one_lookup_however_deep() {
    let double = RecordingRootfs::new()
        .with("/usr", Node::Dir)
        .with("/usr/lib", Node::Dir)
        .with("/usr/lib/x86_64-linux-gnu", Node::Dir);
    let r = open(&double);
    r.ensure_file("/usr/lib/x86_64-linux-gnu/libcuda.so.1", 0o644)
        .unwrap();
    assert_eq!(
        super::walk_tests::openat2_paths(&double),
        ["usr/lib/x86_64-linux-gnu"]
    );
}

#[test]
fn a_mount_over_a_directory_or_a_renamed_name_forgets_what_was_looked_up() {
    let double = RecordingRootfs::new()
        .with("/proc", Node::Dir)
        .with("/proc/driver", Node::Dir)
        .with("/proc/driver/nvidia", Node::Dir)
        .with("/etc", Node::Dir);
    let r = open(&double);
    r.write_file("/proc/driver/nvidia/before", b"x", 0o444)
        .unwrap();
    r.mount_tmpfs("/proc/driver/nvidia", "mode=0555").unwrap();
    // The path now names the tmpfs: it is looked up again, not taken from before the mount.
    r.write_file("/proc/driver/nvidia/after", b"x", 0o444)
        .unwrap();
    assert_eq!(
        openat2_of(&double, "proc/driver/nvidia"),
        3,
        "{:?}",
        double.calls()
    );
    r.write_file("/etc/a", b"x", 0o644).unwrap();
    r.symlink("/etc/link", "a").unwrap();
    r.write_file("/etc/b", b"x", 0o644).unwrap();
    assert_eq!(openat2_of(&double, "etc"), 2, "{:?}", double.calls());
}
