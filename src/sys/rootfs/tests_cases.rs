// The rootfs cases on real directories, included by tests.rs once per way of resolving paths:
// `open` is that way's Rootfs::open.

use std::os::unix::fs::{symlink, FileTypeExt, MetadataExt};
use std::path::Path;

use nix::mount::{mount, MsFlags};
use nix::sys::stat::{makedev, Mode};


fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[test]
fn components_refuse_escapes() {
    assert_eq!(components("/dev/nvidia0").unwrap(), vec!["dev", "nvidia0"]);
    assert_eq!(components("//dev//x/").unwrap(), vec!["dev", "x"]);
    for bad in ["dev/x", "/", "/dev/../etc", "/./x", ""] {
        assert!(components(bad).is_err(), "{bad}");
    }
}

#[test]
fn mkdir_all_follows_symlinks_only_inside_the_root() {
    let outside = tmp();
    let root = tmp();
    // An image whose /usr/lib64 points at a host directory, absolutely and relatively.
    std::fs::create_dir(root.path().join("usr")).unwrap();
    symlink(outside.path(), root.path().join("usr/lib64")).unwrap();
    symlink("../../../../../../..", root.path().join("usr/up")).unwrap();
    let r = open(root.path()).unwrap();
    // The absolute symlink is resolved as if the rootfs were /: its target does not exist
    // there, so this is a clear error, not a directory on the host.
    let e = r.mkdir_all("/usr/lib64/nvidia", 0o755).unwrap_err();
    assert!(
        e.to_string()
            .contains("/usr/lib64 inside the container rootfs"),
        "{e}"
    );
    assert!(e.to_string().contains("a symlink to nothing"), "{e}");
    // `..` past the top stays at the top.
    r.mkdir_all("/usr/up/etc/escape", 0o755).unwrap();
    assert_eq!(
        std::fs::read_dir(outside.path()).unwrap().count(),
        0,
        "nothing may appear outside"
    );
    assert!(root.path().join("etc/escape").is_dir());
    // Once the target exists inside the rootfs, the symlink is followed there.
    std::fs::create_dir_all(root.path().join(outside.path().strip_prefix("/").unwrap())).unwrap();
    r.mkdir_all("/usr/lib64/nvidia", 0o755).unwrap();
    assert!(root
        .path()
        .join(outside.path().strip_prefix("/").unwrap())
        .join("nvidia")
        .is_dir());
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
}

#[test]
fn write_file_refuses_an_existing_symlink() {
    let outside = tmp();
    let root = tmp();
    std::fs::create_dir(root.path().join("etc")).unwrap();
    symlink(outside.path().join("marker"), root.path().join("etc/x")).unwrap();
    let r = open(root.path()).unwrap();
    assert!(r.write_file("/etc/x", b"hi", 0o644).is_err());
    assert!(!outside.path().join("marker").exists());
    r.write_file("/etc/y", b"hi", 0o644).unwrap();
    assert_eq!(std::fs::read(root.path().join("etc/y")).unwrap(), b"hi");
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

#[test]
fn mknod_is_idempotent_and_detects_conflicts() {
    if !is_root() {
        crate::testing::skip("mknod_is_idempotent_and_detects_conflicts: needs root (CAP_MKNOD)");
        return;
    }
    let root = tmp();
    let r = open(root.path()).unwrap();
    let old = nix::sys::stat::umask(Mode::empty());
    assert!(r
        .mknod_char("/dev/nvidia-caps/nvidia-cap12", 509, 12, 0o444, 0, 0)
        .unwrap());
    assert!(!r
        .mknod_char("/dev/nvidia-caps/nvidia-cap12", 509, 12, 0o444, 0, 0)
        .unwrap());
    nix::sys::stat::umask(old);
    let m = std::fs::symlink_metadata(root.path().join("dev/nvidia-caps/nvidia-cap12")).unwrap();
    assert!(m.file_type().is_char_device());
    assert_eq!(m.rdev(), makedev(509, 12));
    assert_eq!(m.mode() & 0o777, 0o444);
    let e = r
        .mknod_char("/dev/nvidia-caps/nvidia-cap12", 509, 13, 0o444, 0, 0)
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("device 509:12, not character device 509:13"),
        "{e}"
    );
    std::fs::write(root.path().join("dev/nvidia0"), b"").unwrap();
    let e = r
        .mknod_char("/dev/nvidia0", 195, 0, 0o666, 0, 0)
        .unwrap_err();
    assert!(e.to_string().contains("a regular file"), "{e}");
}

#[test]
fn symlinks_replace_files_and_links_never_directories() {
    let outside = tmp();
    let root = tmp();
    let r = open(root.path()).unwrap();
    let lib = "/usr/lib/x86_64-linux-gnu";
    assert!(r
        .symlink(&format!("{lib}/libcuda.so.1"), "libcuda.so.550")
        .unwrap());
    assert!(
        !r.symlink(&format!("{lib}/libcuda.so.1"), "libcuda.so.550")
            .unwrap(),
        "the same link again is left alone"
    );
    let host = root.path().join("usr/lib/x86_64-linux-gnu");
    assert_eq!(
        std::fs::read_link(host.join("libcuda.so.1")).unwrap(),
        Path::new("libcuda.so.550")
    );
    // A hostile link at the name is replaced, not followed.
    symlink(outside.path().join("victim"), host.join("libcuda.so")).unwrap();
    assert!(r
        .symlink(&format!("{lib}/libcuda.so"), "libcuda.so.1")
        .unwrap());
    assert_eq!(
        std::fs::read_link(host.join("libcuda.so")).unwrap(),
        Path::new("libcuda.so.1")
    );
    // A regular file of the image is replaced.
    std::fs::write(host.join("libnvidia-ml.so.1"), b"stub").unwrap();
    assert!(r
        .symlink(&format!("{lib}/libnvidia-ml.so.1"), "libnvidia-ml.so.550")
        .unwrap());
    assert!(std::fs::symlink_metadata(host.join("libnvidia-ml.so.1"))
        .unwrap()
        .file_type()
        .is_symlink());
    // A directory is a conflict.
    std::fs::create_dir(host.join("libdir.so.1")).unwrap();
    let e = r
        .symlink(&format!("{lib}/libdir.so.1"), "x")
        .unwrap_err()
        .to_string();
    assert!(e.contains("is a directory, not a symlink to x"), "{e}");
    // No temporary names are left behind.
    let leftovers: Vec<_> = std::fs::read_dir(&host)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("migcage"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
}

#[test]
fn a_symlinked_parent_keeps_links_inside() {
    let outside = tmp();
    let root = tmp();
    std::fs::create_dir_all(root.path().join("usr/lib")).unwrap();
    // The library directory points at a host directory that also exists inside the rootfs.
    let inside_twin = root.path().join(outside.path().strip_prefix("/").unwrap());
    std::fs::create_dir_all(&inside_twin).unwrap();
    symlink(outside.path(), root.path().join("usr/lib/x86_64-linux-gnu")).unwrap();
    let r = open(root.path()).unwrap();
    r.symlink("/usr/lib/x86_64-linux-gnu/libcuda.so.1", "libcuda.so.550")
        .unwrap();
    assert!(inside_twin.join("libcuda.so.1").is_symlink());
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
}

#[test]
fn read_file_reads_only_regular_files_inside() {
    let outside = tmp();
    let root = tmp();
    std::fs::create_dir(root.path().join("etc")).unwrap();
    let r = open(root.path()).unwrap();
    assert_eq!(r.read_file("/etc/ld.so.cache", 100).unwrap(), None);
    std::fs::write(root.path().join("etc/real"), b"inside").unwrap();
    std::fs::write(outside.path().join("real"), b"outside").unwrap();
    // An absolute symlink resolves inside the rootfs.
    symlink(
        outside.path().join("real"),
        root.path().join("etc/ld.so.cache"),
    )
    .unwrap();
    assert_eq!(r.read_file("/etc/ld.so.cache", 100).unwrap(), None);
    std::fs::remove_file(root.path().join("etc/ld.so.cache")).unwrap();
    symlink("../../../../etc/real", root.path().join("etc/ld.so.cache")).unwrap();
    assert_eq!(
        r.read_file("/etc/ld.so.cache", 100).unwrap().as_deref(),
        Some(&b"inside"[..])
    );
    let e = r.read_file("/etc/real", 3).unwrap_err().to_string();
    assert!(e.contains("at most 3 bytes"), "{e}");
    // A fifo is refused without blocking on it.
    nix::unistd::mkfifo(
        &root.path().join("etc/fifo"),
        Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    let e = r.read_file("/etc/fifo", 100).unwrap_err().to_string();
    assert!(e.contains("is a fifo, not a regular file"), "{e}");
}

#[test]
fn replace_file_is_atomic_and_never_writes_through_a_link() {
    let outside = tmp();
    let root = tmp();
    std::fs::create_dir(root.path().join("etc")).unwrap();
    std::fs::write(outside.path().join("victim"), b"keep").unwrap();
    symlink(
        outside.path().join("victim"),
        root.path().join("etc/ld.so.cache"),
    )
    .unwrap();
    let r = open(root.path()).unwrap();
    r.replace_file("/etc/ld.so.cache", b"new cache", 0o644)
        .unwrap();
    let m = std::fs::symlink_metadata(root.path().join("etc/ld.so.cache")).unwrap();
    assert!(m.is_file());
    assert_eq!(m.mode() & 0o777, 0o644);
    assert_eq!(
        std::fs::read(root.path().join("etc/ld.so.cache")).unwrap(),
        b"new cache"
    );
    assert_eq!(
        std::fs::read(outside.path().join("victim")).unwrap(),
        b"keep"
    );
    r.replace_file("/etc/ld.so.cache", b"newer", 0o644).unwrap();
    assert_eq!(
        std::fs::read(root.path().join("etc/ld.so.cache")).unwrap(),
        b"newer"
    );
    assert_eq!(
        std::fs::read_dir(root.path().join("etc")).unwrap().count(),
        1
    );
    std::fs::create_dir(root.path().join("etc/dir")).unwrap();
    assert!(r.replace_file("/etc/dir", b"x", 0o644).is_err());
}

#[test]
fn bind_mount_refuses_a_symlink_target_and_is_idempotent() {
    if !is_root() {
        crate::testing::skip("bind_mount_refuses_a_symlink_target_and_is_idempotent: needs root (mount)");
        return;
    }
    let outside = tmp();
    let src = tmp();
    std::fs::write(src.path().join("libx.so.1"), b"lib").unwrap();
    let root = tmp();
    std::fs::create_dir(root.path().join("lib")).unwrap();
    symlink(
        format!("../../../..{}", outside.path().display()),
        root.path().join("lib/hostile.so"),
    )
    .unwrap();
    let (root_path, src_path) = (root.path().to_path_buf(), src.path().join("libx.so.1"));
    // In a thread of its own that leaves for a private mount namespace: its mounts die with
    // it, and the rest of the test process never sees them.
    let worker = std::thread::spawn(move || in_private_namespace(&root_path, &src_path));
    worker.join().unwrap();
    assert_eq!(
        std::fs::read(root.path().join("lib/libx.so.1")).unwrap(),
        b"",
        "outside the private namespace the target is the empty file, not the mount"
    );
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
}

fn in_private_namespace(root: &Path, src: &Path) {
    // CLONE_NEWNS implies CLONE_FS: only this thread moves.
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).unwrap();
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .unwrap();
    let r = open(root).unwrap();
    let flags = MountFlags {
        readonly: true,
        nodev: true,
        noexec: false,
    };
    let e = r
        .bind_mount(src, "/lib/hostile.so", flags)
        .unwrap_err()
        .to_string();
    assert!(e.contains("is a symlink, not a file"), "{e}");
    assert!(r.bind_mount(src, "/lib/libx.so.1", flags).unwrap());
    assert!(
        !r.bind_mount(src, "/lib/libx.so.1", flags).unwrap(),
        "a second run finds its own mount"
    );
    let mounted = root.join("lib/libx.so.1");
    assert_eq!(std::fs::read(&mounted).unwrap(), b"lib");
    // unshare() moved only this thread: its mounts are in thread-self.
    let info = std::fs::read_to_string("/proc/thread-self/mountinfo").unwrap();
    let line = info
        .lines()
        .find(|l| l.split(' ').nth(4) == Some(mounted.to_str().unwrap()))
        .unwrap_or_else(|| {
            panic!(
                "{} not in mountinfo: {}",
                mounted.display(),
                info.lines()
                    .filter(|l| l.contains("libx"))
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        });
    let opts = line.split(' ').nth(5).unwrap();
    assert!(opts.starts_with("ro,") && opts.contains("nosuid") && opts.contains("nodev"));
    assert!(!opts.contains("noexec"), "{opts}");
}

#[test]
fn mknod_through_a_dev_symlink_stays_inside() {
    if !is_root() {
        crate::testing::skip("mknod_through_a_dev_symlink_stays_inside: needs root (CAP_MKNOD)");
        return;
    }
    let root = tmp();
    // /dev -> / : the node lands at the rootfs's top, never in the host's /.
    symlink("/", root.path().join("dev")).unwrap();
    let r = open(root.path()).unwrap();
    r.mknod_char("/dev/nvidia-test-node-xyz", 195, 0, 0o666, 0, 0)
        .unwrap();
    assert!(root.path().join("nvidia-test-node-xyz").exists());
    assert!(!Path::new("/nvidia-test-node-xyz").exists());
}

fn magic_link_in_private_namespace(root: &Path) -> Result<(), String> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).map_err(|e| e.to_string())?;
    let private = MsFlags::MS_REC | MsFlags::MS_PRIVATE;
    mount(None::<&str>, "/", None::<&str>, private, None::<&str>).map_err(|e| e.to_string())?;
    let proc = root.join("proc");
    mount(Some("proc"), &proc, Some("proc"), MsFlags::empty(), None::<&str>)
        .map_err(|e| format!("SKIP a_link_to_proc_self_root_is_refused: cannot mount procfs here: {e}"))?;
    let r = open(root).unwrap();
    for path in ["/evil", "/evil/etc", "/proc/self/root/etc", "/proc/self/fd/0"] {
        match r.resolve(path, OFlag::O_PATH) {
            Err(RootfsError::Op {
                errno: Errno::ELOOP,
                ..
            }) => {}
            other => return Err(format!("{path}: {other:?}, not ELOOP")),
        }
    }
    // The link itself may still be named (to be replaced, say), never followed.
    r.resolve("/evil", OFlag::O_PATH | OFlag::O_NOFOLLOW)
        .map_err(|e| e.to_string())?;
    Ok(())
}

#[test]
fn a_link_to_proc_self_root_is_refused() {
    if !is_root() {
        crate::testing::skip("a_link_to_proc_self_root_is_refused: needs root (mount)");
        return;
    }
    let root = tmp();
    std::fs::create_dir(root.path().join("proc")).unwrap();
    symlink("/proc/self/root", root.path().join("evil")).unwrap();
    let root_path = root.path().to_path_buf();
    let worker = std::thread::spawn(move || magic_link_in_private_namespace(&root_path));
    match worker.join().unwrap() {
        Err(e) if e.starts_with("SKIP ") => crate::testing::skip(&e["SKIP ".len()..]),
        r => r.unwrap(),
    }
}
