//! The userspace walk through the recording double: openat2 missing (ENOSYS) or refused (EPERM
//! from a seccomp filter) is detected once, and the walk gives the same answers as openat2 on a
//! hostile image (`..` escapes, absolute links, link loops, links to /proc/self/root).

use nix::errno::Errno;
use nix::sys::statfs::PROC_SUPER_MAGIC;

use super::test::{Node, RecordingRootfs, RootfsCall};
use super::walk::MAX_LINKS;
use super::*;

const ROOT: &str = "/run/ctr/rootfs";

/// An image written to escape: every kind of symlink a lookup must keep inside the root.
fn hostile() -> RecordingRootfs {
    let mut d = RecordingRootfs::new()
        .with("/etc/passwd", Node::File)
        .with("/usr/lib64", Node::Link("/etc".into()))
        .with("/usr/up", Node::Link("../../../../../..".into()))
        .with("/usr/rel", Node::Link("../etc".into()))
        .with("/lib", Node::Link("usr/lib64".into()))
        .with("/dev", Node::Link("/".into()))
        .with("/loop1", Node::Link("/loop2".into()))
        .with("/loop2", Node::Link("loop1".into()))
        .with("/self", Node::Link("self".into()))
        .with("/dangling", Node::Link("/nowhere".into()))
        .with("/proc/self/root", Node::Link("/".into()))
        .with("/proc/self/fd/3", Node::Link("/etc".into()))
        .with_fs("/proc", PROC_SUPER_MAGIC)
        .with("/evil", Node::Link("/proc/self/root".into()))
        .with("/evil2", Node::Link("proc/self/fd/3/passwd".into()));
    // chain0 -> chain1 -> ... -> chainN, a file: MAX_LINKS + 1 links from chain0.
    for i in 0..=MAX_LINKS {
        d = d.with(&format!("/chain{i}"), Node::Link(format!("chain{}", i + 1)));
    }
    d.with(&format!("/chain{}", MAX_LINKS + 1), Node::File)
}

fn without_openat2(d: RecordingRootfs, errno: Errno) -> RecordingRootfs {
    d.fail(errno, |c| matches!(c, RootfsCall::Openat2 { .. }))
}

/// What a lookup found: the container path its descriptor names, or the errno.
fn lookup(d: &RecordingRootfs, rel: &str, flags: OFlag) -> Result<String, Errno> {
    let r = Rootfs::open_on(d, Path::new(ROOT)).unwrap();
    r.resolve_rel(rel, flags).map(|fd| d.path_of(&fd))
}

/// The path of every `openat2` `d` was asked for, in order (double_tests.rs uses it too).
pub(super) fn openat2_paths(d: &RecordingRootfs) -> Vec<String> {
    d.calls()
        .into_iter()
        .filter_map(|c| match c {
            RootfsCall::Openat2 { path, .. } => Some(path),
            _ => None,
        })
        .collect()
}

fn openat2_calls(d: &RecordingRootfs) -> usize {
    d.calls()
        .iter()
        .filter(|c| matches!(c, RootfsCall::Openat2 { .. }))
        .count()
}

#[test]
fn the_walk_gives_openat2s_answers_on_a_hostile_image() {
    let path = OFlag::O_PATH;
    let dir = OFlag::O_PATH | OFlag::O_DIRECTORY;
    let link = OFlag::O_PATH | OFlag::O_NOFOLLOW;
    let found = |p: &str| Ok(p.to_string());
    let last = format!("/chain{}", MAX_LINKS + 1);
    let cases: Vec<(&str, OFlag, Result<String, Errno>)> = vec![
        ("", dir, found("/")),
        ("etc/passwd", path, found("/etc/passwd")),
        // Absolute links start again at the root, `..` stops at it.
        ("usr/lib64/passwd", path, found("/etc/passwd")),
        ("usr/up/etc/passwd", path, found("/etc/passwd")),
        ("usr/up", dir, found("/")),
        ("usr/rel/passwd", path, found("/etc/passwd")),
        ("lib/passwd", path, found("/etc/passwd")),
        ("usr/lib64/..", dir, found("/")),
        ("dev/etc/passwd", path, found("/etc/passwd")),
        ("dev", dir, found("/")),
        ("dev", link, found("/dev")),
        // Loops and long chains end in ELOOP.
        ("loop1", path, Err(Errno::ELOOP)),
        ("self/x", path, Err(Errno::ELOOP)),
        ("chain0", path, Err(Errno::ELOOP)),
        ("chain1", path, Ok(last)),
        // Magic links are refused, also when reached through another link.
        ("proc/self/root/etc", path, Err(Errno::ELOOP)),
        ("evil", path, Err(Errno::ELOOP)),
        ("evil/etc/passwd", path, Err(Errno::ELOOP)),
        ("evil2", path, Err(Errno::ELOOP)),
        ("proc/self/root", link, found("/proc/self/root")),
        // What is not there, or not a directory, is an error of the same kind.
        ("dangling", path, Err(Errno::ENOENT)),
        ("missing/x", path, Err(Errno::ENOENT)),
        ("etc/passwd/x", path, Err(Errno::ENOTDIR)),
        ("etc/passwd", dir, Err(Errno::ENOTDIR)),
        ("usr/lib64/passwd", dir, Err(Errno::ENOTDIR)),
    ];
    for (rel, flags, want) in cases {
        let kernel = hostile();
        let walked = without_openat2(hostile(), Errno::ENOSYS);
        assert_eq!(lookup(&kernel, rel, flags), want, "openat2 of {rel:?}");
        assert_eq!(lookup(&walked, rel, flags), want, "walk of {rel:?}");
        assert_eq!(openat2_calls(&walked), 1, "{rel:?}: openat2 tried once");
    }
}

#[test]
fn the_walk_never_lets_the_kernel_follow_a_link() {
    let d = without_openat2(hostile(), Errno::ENOSYS);
    for rel in [
        "usr/lib64/passwd",
        "usr/up/etc/passwd",
        "dev/etc/passwd",
        "lib/passwd",
    ] {
        assert_eq!(lookup(&d, rel, OFlag::O_PATH), Ok("/etc/passwd".into()));
    }
    for c in d.calls() {
        if let RootfsCall::Openat { name, flags, .. } = c {
            assert!(
                name == "." || flags.contains(OFlag::O_NOFOLLOW),
                "{name}: {flags:?}"
            );
        }
    }
}

#[test]
fn a_magic_link_is_refused_before_it_is_read() {
    let d = without_openat2(hostile(), Errno::ENOSYS);
    assert_eq!(lookup(&d, "evil", OFlag::O_PATH), Err(Errno::ELOOP));
    let calls = d.calls();
    assert!(calls.contains(&RootfsCall::Fstatfs("/proc/self/root".into())));
    assert!(!calls
        .iter()
        .any(|c| matches!(c, RootfsCall::Readlinkat { at, .. } if at == "/proc/self/root")));
}

#[test]
fn enosys_is_detected_once_per_syscall_layer() {
    let d = without_openat2(hostile(), Errno::ENOSYS);
    assert_eq!(
        lookup(&d, "etc/passwd", OFlag::O_PATH),
        Ok("/etc/passwd".into())
    );
    assert_eq!(lookup(&d, "usr/lib64", OFlag::O_PATH), Ok("/etc".into()));
    let r = Rootfs::open_on(&d, Path::new(ROOT)).unwrap();
    r.mkdir_all("/usr/lib64/nvidia", 0o755).unwrap();
    assert_eq!(d.node("/etc/nvidia"), Some(Node::Dir));
    assert_eq!(openat2_calls(&d), 1, "{:?}", d.calls());
}

#[test]
fn eperm_from_a_seccomp_filter_is_told_apart_by_a_probe_of_the_root() {
    let d = without_openat2(hostile(), Errno::EPERM);
    assert_eq!(
        lookup(&d, "usr/lib64/passwd", OFlag::O_PATH),
        Ok("/etc/passwd".into())
    );
    assert_eq!(openat2_paths(&d), ["usr/lib64/passwd", "."]);
    assert_eq!(lookup(&d, "etc", OFlag::O_PATH), Ok("/etc".into()));
    assert_eq!(openat2_calls(&d), 2, "decided once");
}

#[test]
fn eperm_for_one_file_is_that_files_error_not_a_reason_to_walk() {
    let d = hostile().fail(
        Errno::EPERM,
        |c| matches!(c, RootfsCall::Openat2 { path, .. } if path == "etc/passwd"),
    );
    let r = Rootfs::open_on(&d, Path::new(ROOT)).unwrap();
    let e = r.resolve("/etc/passwd", OFlag::O_PATH).unwrap_err();
    let text = e.to_string();
    assert_eq!(text.lines().count(), 1);
    assert!(
        text.contains("/etc/passwd inside the container rootfs"),
        "{text}"
    );
    assert!(text.contains("EPERM"), "{text}");
    assert!(!d
        .calls()
        .iter()
        .any(|c| matches!(c, RootfsCall::Openat { .. })));
    // openat2 works, so the next lookup uses it without a probe.
    assert_eq!(lookup(&d, "usr/lib64", OFlag::O_PATH), Ok("/etc".into()));
    assert_eq!(openat2_calls(&d), 3);
}

#[test]
fn once_openat2_works_an_eperm_is_not_probed_again() {
    let d = hostile().fail(
        Errno::EPERM,
        |c| matches!(c, RootfsCall::Openat2 { path, .. } if path == "etc/passwd"),
    );
    assert_eq!(lookup(&d, "etc", OFlag::O_PATH), Ok("/etc".into()));
    assert_eq!(lookup(&d, "etc/passwd", OFlag::O_PATH), Err(Errno::EPERM));
    assert_eq!(
        openat2_calls(&d),
        2,
        "no probe once openat2 is known to work"
    );
}

#[test]
fn o_creat_makes_the_last_name_and_o_excl_never_follows_a_link() {
    let d = without_openat2(hostile(), Errno::ENOSYS);
    let creat = OFlag::O_WRONLY | OFlag::O_CREAT;
    assert_eq!(lookup(&d, "etc/new", creat), Ok("/etc/new".into()));
    assert_eq!(d.node("/etc/new"), Some(Node::File));
    // Through an absolute link, inside the root.
    assert_eq!(
        lookup(&d, "usr/lib64/other", creat),
        Ok("/etc/other".into())
    );
    assert_eq!(
        lookup(&d, "dangling", creat | OFlag::O_EXCL),
        Err(Errno::EEXIST)
    );
    assert_eq!(d.node("/nowhere"), None);
}
