//! End to end: hostile images. The hook runs as root on the host, on a rootfs an image author
//! controls; each test plants one trap and checks that nothing outside the rootfs was touched
//! (host marker paths, host directories, no mount left) and that the container either works
//! safely or fails with migcage's one clear line. runc and crun, cgroup v1 and v2.

mod common;

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use common::driver::{self, LIB};
use common::{Bundle, Mode, Run, SimHost};
use serde_json::json;

const VER: &str = "550.54.15";
const ENV: &[&str] = &[
    "NVIDIA_VISIBLE_DEVICES=0:1",
    "NVIDIA_DRIVER_CAPABILITIES=utility,compute",
];

/// A bundle whose rootfs can run the driver probe; crun's hook stderr goes to a file.
fn bundle(mode: Mode, host: &SimHost) -> Bundle {
    bundle_on(mode, host, false)
}

/// [`bundle`]; with `walk`, the hook resolves rootfs paths as on a kernel without openat2 (a
/// debug build's hook honours `MIGCAGE_TEST_NO_OPENAT2=1`: src/sys/rootfs/linux.rs), by the
/// userspace walk, which must give the same outcome.
fn bundle_on(mode: Mode, host: &SimHost, walk: bool) -> Bundle {
    let mut b = bundle_plain(mode, host);
    if walk {
        for hook in b.config["hooks"]["prestart"].as_array_mut().unwrap() {
            hook["env"]
                .as_array_mut()
                .unwrap()
                .push(json!("MIGCAGE_TEST_NO_OPENAT2=1"));
        }
        b.write();
    }
    b
}

fn bundle_plain(mode: Mode, host: &SimHost) -> Bundle {
    let mut b = Bundle::new(host, ENV, driver::DRIVER_PROBE);
    driver::prepare(&b, host.dir.path(), false);
    if mode.is_crun() {
        b.config["annotations"] =
            json!({"run.oci.hooks.stderr": hook_stderr(&b).display().to_string()});
        b.write();
    }
    b
}

fn hook_stderr(b: &Bundle) -> PathBuf {
    b.path().join("hook-stderr")
}

fn rootfs(b: &Bundle) -> PathBuf {
    b.path().join("rootfs")
}

/// Drop the runtime's /dev tmpfs (and what is mounted under it), so that the image's own /dev
/// is what the hook works in.
fn image_dev(b: &mut Bundle) {
    let mounts = b.config["mounts"].as_array_mut().unwrap();
    mounts.retain(|m| {
        !m["destination"]
            .as_str()
            .unwrap_or_default()
            .starts_with("/dev")
    });
    b.write();
}

/// migcage's line from a failed run (runc quotes the hook's stderr in its own error; crun
/// writes it to the annotated file).
fn migcage_line(mode: Mode, b: &Bundle, run: &Run) -> String {
    let stderr = if mode.is_crun() {
        std::fs::read_to_string(hook_stderr(b)).unwrap_or_default()
    } else {
        run.stderr().replace("\\\"", "\"")
    };
    stderr
        .lines()
        .find(|l| l.contains("migcage:"))
        .map(str::to_string)
        .unwrap_or_else(|| panic!("{mode:?}: no migcage line: {stderr} / {}", run.stderr()))
}

/// A directory on the host, outside every rootfs, that must stay empty.
fn host_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("migcage-hostile-")
        .tempdir()
        .unwrap()
}

fn empty(dir: &Path) -> bool {
    std::fs::read_dir(dir).unwrap().next().is_none()
}

fn skip(mode: Mode, test: &str) -> bool {
    if let Some(why) = mode.unavailable() {
        common::skip(&format!("{test} {mode:?}: {why}"));
        return true;
    }
    false
}

/// The driver's libraries actually reached the container and load through its ld cache.
fn assert_works(ctx: &str, run: &Run) {
    assert!(run.ok(), "{ctx}: {}", run.stderr());
    let seen = driver::seen(run);
    assert!(
        seen.dl
            .iter()
            .any(|l| l == "DLOPEN libcuda.so.1 OK cuInit=0"),
        "{ctx}: {:?}",
        seen.dl
    );
}

/// The library directory is a symlink to a host directory (absolute). Resolved inside the
/// rootfs, its target does not exist there: a clear error, and the host directory stays empty.
/// Pointing at /etc (which the rootfs has), the libraries land in the rootfs's /etc and work.
fn library_dir_symlinked_out_on(walk: bool, modes: &[Mode]) {
    for &mode in modes {
        if skip(mode, "library_dir_symlinked_out") {
            continue;
        }
        let host = SimHost::new("a100-7x1g");
        let outside = host_dir();
        let b = bundle_on(mode, &host, walk);
        let lib = rootfs(&b).join(LIB.trim_start_matches('/'));
        std::fs::create_dir_all(lib.parent().unwrap()).unwrap();
        symlink(outside.path(), &lib).unwrap();
        let run = common::run(mode, &b, &host);
        let ctx = format!("{mode:?} lib dir -> host dir ({})", run.id);
        assert!(!run.ok(), "{ctx}: started");
        let line = migcage_line(mode, &b, &run);
        assert!(
            line.contains(&format!("{LIB} inside the container rootfs"))
                && line.contains("a symlink to nothing inside the container"),
            "{ctx}: {line}"
        );
        assert!(
            empty(outside.path()),
            "{ctx}: the host directory was written"
        );

        let host_etc_cache = std::fs::read("/etc/ld.so.cache").ok();
        let b = bundle_on(mode, &host, walk);
        let lib = rootfs(&b).join(LIB.trim_start_matches('/'));
        std::fs::create_dir_all(lib.parent().unwrap()).unwrap();
        symlink("/etc", &lib).unwrap();
        let run = common::run(mode, &b, &host);
        let ctx = format!("{mode:?} lib dir -> /etc ({})", run.id);
        assert_works(&ctx, &run);
        assert!(rootfs(&b).join("etc/libcuda.so.1").is_symlink(), "{ctx}");
        for name in [
            "libcuda.so.1".to_string(),
            format!("libcuda.so.{VER}"),
            "nvidia-sim-topology.toml".to_string(),
        ] {
            assert!(
                !Path::new("/etc").join(&name).exists(),
                "{ctx}: host /etc/{name}"
            );
        }
        assert_eq!(
            std::fs::read("/etc/ld.so.cache").ok(),
            host_etc_cache,
            "{ctx}: the host's ld cache changed"
        );
    }
}

#[test]
fn library_dir_symlinked_out() {
    library_dir_symlinked_out_on(false, &Mode::OUTSIDE_VM);
}

/// [`library_dir_symlinked_out`] with the hook's paths walked in userspace, as without openat2.
#[test]
fn library_dir_symlinked_out_without_openat2() {
    library_dir_symlinked_out_on(true, &Mode::OUTSIDE_VM);
}

/// [`library_dir_symlinked_out`] and [`library_dir_symlinked_out_without_openat2`] under crun on cgroup v2.
#[test]
#[ignore = "crun on cgroup v2 needs CAP_SYS_RESOURCE: tests/vm.rs runs it in the systemd VM"]
fn library_dir_symlinked_out_crun_cgroup_v2() {
    library_dir_symlinked_out_on(false, &[Mode::CrunV2]);
    library_dir_symlinked_out_on(true, &[Mode::CrunV2]);
}

/// `/dev` is a symlink to `/`: every node resolves inside the rootfs (its top), never on the
/// host's root.
fn dev_symlinked_to_root_on(walk: bool, modes: &[Mode]) {
    for &mode in modes {
        if skip(mode, "dev_symlinked_to_root") {
            continue;
        }
        let host = SimHost::new("a100-7x1g");
        let mut b = bundle_on(mode, &host, walk);
        image_dev(&mut b);
        std::fs::remove_dir(rootfs(&b).join("dev")).unwrap();
        symlink("/", rootfs(&b).join("dev")).unwrap();
        let run = common::run(mode, &b, &host);
        let ctx = format!("{mode:?} /dev -> / ({})", run.id);
        for p in ["/nvidiactl", "/nvidia0", "/nvidia-uvm", "/nvidia-caps"] {
            assert!(!Path::new(p).exists(), "{ctx}: host {p}");
        }
        if run.ok() {
            assert!(rootfs(&b).join("nvidiactl").exists(), "{ctx}");
            assert_works(&ctx, &run);
        } else {
            // The runtime or migcage refused: either way with a message, nothing on the host.
            assert!(!run.stderr().is_empty(), "{ctx}: failed silently");
            eprintln!("{ctx}: refused: {}", run.stderr().trim());
        }
    }
}

#[test]
fn dev_symlinked_to_root() {
    dev_symlinked_to_root_on(false, &Mode::OUTSIDE_VM);
}

/// [`dev_symlinked_to_root`] with the hook's paths walked in userspace, as without openat2.
#[test]
fn dev_symlinked_to_root_without_openat2() {
    dev_symlinked_to_root_on(true, &Mode::OUTSIDE_VM);
}

/// [`dev_symlinked_to_root`] and [`dev_symlinked_to_root_without_openat2`] under crun on cgroup v2.
#[test]
#[ignore = "crun on cgroup v2 needs CAP_SYS_RESOURCE: tests/vm.rs runs it in the systemd VM"]
fn dev_symlinked_to_root_crun_cgroup_v2() {
    dev_symlinked_to_root_on(false, &[Mode::CrunV2]);
    dev_symlinked_to_root_on(true, &[Mode::CrunV2]);
}

/// A library's mount target in the image is a symlink to ../../../../etc: migcage refuses to
/// mount over it (its target is never followed) with a clear error. The soname link planted as a
/// symlink to ../../../../etc/passwd is simply replaced by migcage's own.
fn library_target_symlinked_up_on(walk: bool, modes: &[Mode]) {
    for &mode in modes {
        if skip(mode, "library_target_symlinked_up") {
            continue;
        }
        let host = SimHost::new("a100-7x1g");
        let passwd = std::fs::read("/etc/passwd").unwrap();
        let b = bundle_on(mode, &host, walk);
        let lib = rootfs(&b).join(LIB.trim_start_matches('/'));
        std::fs::create_dir_all(&lib).unwrap();
        symlink("../../../../etc", lib.join(format!("libcuda.so.{VER}"))).unwrap();
        let run = common::run(mode, &b, &host);
        let ctx = format!("{mode:?} library target -> ../../../../etc ({})", run.id);
        assert!(!run.ok(), "{ctx}: started");
        let line = migcage_line(mode, &b, &run);
        assert!(
            line.contains(&format!(
                "{LIB}/libcuda.so.{VER} inside the container rootfs"
            )) && line.contains("is a symlink, not a file: remove it from the image"),
            "{ctx}: {line}"
        );

        let b = bundle_on(mode, &host, walk);
        let lib = rootfs(&b).join(LIB.trim_start_matches('/'));
        std::fs::create_dir_all(&lib).unwrap();
        symlink("../../../../etc/passwd", lib.join("libcuda.so.1")).unwrap();
        symlink("/etc/passwd", lib.join("libcuda.so")).unwrap();
        let run = common::run(mode, &b, &host);
        let ctx = format!(
            "{mode:?} soname link -> ../../../../etc/passwd ({})",
            run.id
        );
        assert_works(&ctx, &run);
        assert_eq!(
            std::fs::read_link(lib.join("libcuda.so.1")).unwrap(),
            Path::new(&format!("libcuda.so.{VER}"))
        );
        assert_eq!(
            std::fs::read_link(lib.join("libcuda.so")).unwrap(),
            Path::new("libcuda.so.1")
        );
        assert_eq!(std::fs::read("/etc/passwd").unwrap(), passwd, "{ctx}");
    }
}

#[test]
fn library_target_symlinked_up() {
    library_target_symlinked_up_on(false, &Mode::OUTSIDE_VM);
}

/// [`library_target_symlinked_up`] with the hook's paths walked in userspace, as without openat2.
#[test]
fn library_target_symlinked_up_without_openat2() {
    library_target_symlinked_up_on(true, &Mode::OUTSIDE_VM);
}

/// [`library_target_symlinked_up`] and [`library_target_symlinked_up_without_openat2`] under crun on cgroup v2.
#[test]
#[ignore = "crun on cgroup v2 needs CAP_SYS_RESOURCE: tests/vm.rs runs it in the systemd VM"]
fn library_target_symlinked_up_crun_cgroup_v2() {
    library_target_symlinked_up_on(false, &[Mode::CrunV2]);
    library_target_symlinked_up_on(true, &[Mode::CrunV2]);
}

/// `/dev/nvidia-caps` in the image is a symlink: to a host directory (absolute, absent inside
/// the rootfs) it is a clear error and the host directory stays empty; to /etc it stays inside.
fn nvidia_caps_symlinked_on(walk: bool, modes: &[Mode]) {
    for &mode in modes {
        if skip(mode, "nvidia_caps_symlinked") {
            continue;
        }
        let host = SimHost::new("a100-7x1g");
        let outside = host_dir();
        let mut b = bundle_on(mode, &host, walk);
        image_dev(&mut b);
        symlink(outside.path(), rootfs(&b).join("dev/nvidia-caps")).unwrap();
        let run = common::run(mode, &b, &host);
        let ctx = format!("{mode:?} /dev/nvidia-caps -> host dir ({})", run.id);
        assert!(!run.ok(), "{ctx}: started");
        let line = migcage_line(mode, &b, &run);
        assert!(
            line.contains("/dev/nvidia-caps inside the container rootfs")
                && line.contains("a symlink to nothing inside the container"),
            "{ctx}: {line}"
        );
        assert!(
            empty(outside.path()),
            "{ctx}: the host directory was written"
        );

        let mut b = bundle_on(mode, &host, walk);
        image_dev(&mut b);
        symlink("/etc", rootfs(&b).join("dev/nvidia-caps")).unwrap();
        let run = common::run(mode, &b, &host);
        let ctx = format!("{mode:?} /dev/nvidia-caps -> /etc ({})", run.id);
        assert_works(&ctx, &run);
        let caps: Vec<String> = std::fs::read_dir(rootfs(&b).join("etc"))
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("nvidia-cap"))
            .collect();
        assert_eq!(caps.len(), 2, "{ctx}: {caps:?}");
        let host_caps = std::fs::read_dir("/etc")
            .unwrap()
            .filter_map(|e| e.ok())
            .any(|e| e.file_name().to_string_lossy().starts_with("nvidia-cap"));
        assert!(!host_caps, "{ctx}: caps nodes in the host's /etc");
    }
}

#[test]
fn nvidia_caps_symlinked() {
    nvidia_caps_symlinked_on(false, &Mode::OUTSIDE_VM);
}

/// [`nvidia_caps_symlinked`] with the hook's paths walked in userspace, as without openat2.
#[test]
fn nvidia_caps_symlinked_without_openat2() {
    nvidia_caps_symlinked_on(true, &Mode::OUTSIDE_VM);
}

/// [`nvidia_caps_symlinked`] and [`nvidia_caps_symlinked_without_openat2`] under crun on cgroup v2.
#[test]
#[ignore = "crun on cgroup v2 needs CAP_SYS_RESOURCE: tests/vm.rs runs it in the systemd VM"]
fn nvidia_caps_symlinked_crun_cgroup_v2() {
    nvidia_caps_symlinked_on(false, &[Mode::CrunV2]);
    nvidia_caps_symlinked_on(true, &[Mode::CrunV2]);
}

/// The image's ldconfig (every place one is looked for) and /bin/sh write a marker on the host
/// if ever run there. migcage updates the ld cache without running anything: no ldconfig marker
/// anywhere, no marker on the host, and the cache has the driver's libraries.
fn image_ldconfig_is_never_run_in(modes: &[Mode]) {
    for &mode in modes {
        if skip(mode, "image_ldconfig_is_never_run") {
            continue;
        }
        let host = SimHost::new("a100-7x1g");
        let b = bundle(mode, &host);
        let marker = common::unique("/tmp/migcage-marker");
        let rf = rootfs(&b);
        for (path, tag) in [
            ("sbin/ldconfig", "ldconfig"),
            ("usr/sbin/ldconfig", "ldconfig"),
            ("sbin/ldconfig.real", "ldconfig"),
            ("usr/bin/ldconfig", "ldconfig"),
        ] {
            let p = rf.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(
                &p,
                format!("#!/bin/busybox sh\necho ran >> {marker}-{tag}\nexit 0\n"),
            )
            .unwrap();
            std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .unwrap();
        }
        // /bin/sh: the container's own process is a shell; it may run inside the container (its
        // marker then lands in the rootfs's /tmp), never on the host.
        std::fs::remove_file(rf.join("bin/sh")).unwrap();
        std::fs::write(
            rf.join("bin/sh"),
            format!("#!/bin/busybox sh\necho ran >> {marker}-sh\nexec /bin/busybox sh \"$@\"\n"),
        )
        .unwrap();
        std::fs::set_permissions(
            rf.join("bin/sh"),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let run = common::run(mode, &b, &host);
        let ctx = format!("{mode:?} image ldconfig ({})", run.id);
        assert_works(&ctx, &run);
        for tag in ["ldconfig", "sh"] {
            let on_host = format!("{marker}-{tag}");
            assert!(
                !Path::new(&on_host).exists(),
                "{ctx}: {on_host} on the host"
            );
        }
        let inside = rf.join(format!("{marker}-ldconfig").trim_start_matches('/'));
        assert!(!inside.exists(), "{ctx}: the image's ldconfig ran");
        assert!(
            rf.join(format!("{marker}-sh").trim_start_matches('/'))
                .exists(),
            "{ctx}: the container's own shell ran inside it"
        );
        let cache = driver::ld_cache_entries(&rf.join("etc/ld.so.cache"));
        assert!(
            cache
                .iter()
                .any(|(n, _, p)| n == "libcuda.so.1" && p == &format!("{LIB}/libcuda.so.1")),
            "{ctx}: {cache:?}"
        );
    }
}

#[test]
fn image_ldconfig_is_never_run() {
    image_ldconfig_is_never_run_in(&Mode::OUTSIDE_VM);
}

#[test]
#[ignore = "crun on cgroup v2 needs CAP_SYS_RESOURCE: tests/vm.rs runs it in the systemd VM"]
fn image_ldconfig_is_never_run_crun_cgroup_v2() {
    image_ldconfig_is_never_run_in(&[Mode::CrunV2]);
}

/// The image's /etc/ld.so.cache is a symlink to a host file, or a fifo. The symlink is replaced
/// by a new cache (the host file is never read nor written); the fifo is a clear error, never a
/// hang.
fn image_ld_cache_hostile_in(modes: &[Mode]) {
    for &mode in modes {
        if skip(mode, "image_ld_cache_hostile") {
            continue;
        }
        let host = SimHost::new("a100-7x1g");
        let outside = host_dir();
        let victim = outside.path().join("victim");
        std::fs::write(&victim, b"host data").unwrap();
        let b = bundle(mode, &host);
        symlink(&victim, rootfs(&b).join("etc/ld.so.cache")).unwrap();
        let run = common::run(mode, &b, &host);
        let ctx = format!("{mode:?} ld.so.cache -> host file ({})", run.id);
        assert_works(&ctx, &run);
        assert_eq!(std::fs::read(&victim).unwrap(), b"host data", "{ctx}");
        assert!(!rootfs(&b).join("etc/ld.so.cache").is_symlink(), "{ctx}");

        let b = bundle(mode, &host);
        nix::unistd::mkfifo(
            &rootfs(&b).join("etc/ld.so.cache"),
            nix::sys::stat::Mode::from_bits_truncate(0o644),
        )
        .unwrap();
        let run = common::run(mode, &b, &host);
        let ctx = format!("{mode:?} ld.so.cache fifo ({})", run.id);
        assert!(!run.ok(), "{ctx}: started");
        let line = migcage_line(mode, &b, &run);
        assert!(
            line.contains("cannot update the container's ld cache")
                && line.contains("/etc/ld.so.cache inside the container rootfs")
                && line.contains("is a fifo, not a regular file"),
            "{ctx}: {line}"
        );
    }
}

#[test]
fn image_ld_cache_hostile() {
    image_ld_cache_hostile_in(&Mode::OUTSIDE_VM);
}

#[test]
#[ignore = "crun on cgroup v2 needs CAP_SYS_RESOURCE: tests/vm.rs runs it in the systemd VM"]
fn image_ld_cache_hostile_crun_cgroup_v2() {
    image_ld_cache_hostile_in(&[Mode::CrunV2]);
}
