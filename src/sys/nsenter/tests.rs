//! Running work in another mount namespace: for real (some need root), and through the
//! recording double.

use super::test::{NsCall, RecordingNs};
use super::*;

#[test]
fn same_namespace_runs_inline() {
    let me = std::process::id() as i32;
    let mut ran = false;
    in_mount_namespace(me, || {
        ran = true;
        Ok(())
    })
    .unwrap();
    assert!(ran);
    let e = in_mount_namespace::<()>(me, || Err("no good".into())).unwrap_err();
    assert_eq!(e.to_string(), "no good");
}

#[test]
fn missing_process_is_a_clear_error() {
    let e = in_mount_namespace(i32::MAX - 7, || Ok(()))
        .unwrap_err()
        .to_string();
    let _: &str = &e;
    assert!(e.contains("did the container exit"), "{e}");
}

#[test]
fn other_namespace_work_from_a_threaded_process_runs_in_a_child_and_reports_back() {
    if !nix::unistd::geteuid().is_root() {
        crate::testing::skip(
            "other_namespace_work_from_a_threaded_process_runs_in_a_child_and_reports_back: needs root (unshare)",
        );
        return;
    }
    // A process in a private mount namespace with a tmpfs only it can see.
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c"])
        .arg(format!(
            "mount -t tmpfs none {0} && touch {0}/only-here && sleep 30",
            dir.path().display()
        ))
        .spawn()
        .unwrap();
    let marker = dir.path().join("only-here");
    let pid = child.id() as i32;
    // Wait for the namespace to be set up (the unshare'd sh is the same pid after exec).
    for _ in 0..200 {
        if other_namespace(&LinuxNs, pid).unwrap_or(false) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert!(
        !marker.exists(),
        "the marker is only visible inside the namespace"
    );
    let m = marker.clone();
    let seen = in_mount_namespace(pid, move || {
        if m.exists() {
            Ok(42u32)
        } else {
            Err("marker not seen".into())
        }
    });
    let failing = in_mount_namespace::<u32>(pid, || Err("work failed inside".into()));
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(seen.unwrap(), 42);
    assert_eq!(failing.unwrap_err().to_string(), "work failed inside");
}

/// The calls up to the setns into the mount namespace of `pid` in this process.
fn up_to_setns(pid: i32) -> Vec<NsCall> {
    let theirs = format!("/proc/{pid}/ns/mnt");
    vec![
        NsCall::NsIdentity(theirs.clone()),
        NsCall::NsIdentity("/proc/self/ns/mnt".into()),
        NsCall::OpenNs(theirs.clone()),
        NsCall::SavePlace,
        NsCall::SetnsMount(theirs),
    ]
}

#[test]
fn a_single_threaded_process_enters_does_the_work_and_comes_back_without_a_fork() {
    let double = RecordingNs::new().elsewhere(42);
    let v = in_mount_namespace_on(&double, 42, || {
        // The work runs inside: after the setns, before the way back.
        assert_eq!(
            double.calls().last(),
            Some(&NsCall::SetnsMount("/proc/42/ns/mnt".into()))
        );
        Ok(7u32)
    })
    .unwrap();
    assert_eq!(v, 7);
    let mut want = up_to_setns(42);
    want.push(NsCall::ReturnTo);
    assert_eq!(double.calls(), want);
    let e = in_mount_namespace_on::<()>(&double, 42, || Err("no room".into())).unwrap_err();
    assert!(matches!(e, NsError::Work(_)), "{e}");
    assert_eq!(e.to_string(), "no room");
    assert_eq!(double.calls().last(), Some(&NsCall::ReturnTo));
}

#[test]
fn work_that_panics_inside_comes_back_first_and_then_panics_on() {
    let double = RecordingNs::new().elsewhere(42);
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        in_mount_namespace_on::<()>(&double, 42, || panic!("boom"))
    }));
    assert!(panicked.is_err());
    assert_eq!(double.calls().last(), Some(&NsCall::ReturnTo));
}

#[test]
fn a_threaded_process_runs_the_work_in_a_forked_child_instead() {
    let double = RecordingNs::new().elsewhere(42).threaded();
    let v = in_mount_namespace_on(&double, 42, || Ok(7u32)).unwrap();
    assert_eq!(v, 7);
    // The first setns fails with EINVAL (threads); the child's succeeds.
    let mut want = up_to_setns(42);
    want.extend([NsCall::Fork, NsCall::SetnsMount("/proc/42/ns/mnt".into())]);
    assert_eq!(double.calls(), want);
}

#[test]
fn a_place_that_cannot_be_saved_falls_back_to_the_fork() {
    let double = RecordingNs::new()
        .elsewhere(42)
        .fail(Errno::EMFILE, |c| *c == NsCall::SavePlace);
    assert_eq!(in_mount_namespace_on(&double, 42, || Ok(3u8)).unwrap(), 3);
    assert!(double.calls().contains(&NsCall::Fork));
    assert!(!double.calls().contains(&NsCall::ReturnTo));
}

#[test]
fn setns_refused_is_one_line_and_the_work_never_runs() {
    let double = RecordingNs::new()
        .elsewhere(42)
        .fail(Errno::EPERM, |c| matches!(c, NsCall::SetnsMount(_)));
    let mut ran = false;
    let e = in_mount_namespace_on(&double, 42, || {
        ran = true;
        Ok(())
    })
    .unwrap_err();
    assert!(!ran);
    assert_eq!(
        e.to_string(),
        format!(
            "cannot enter the container's mount namespace: {}",
            Errno::EPERM
        )
    );
    // Never in, so nothing to come back from, and no second try in a child.
    assert!(!double.calls().contains(&NsCall::ReturnTo));
    assert!(!double.calls().contains(&NsCall::Fork));

    let threaded = RecordingNs::new()
        .elsewhere(42)
        .threaded()
        .fail(Errno::EPERM, |c| matches!(c, NsCall::SetnsMount(_)));
    let e = in_mount_namespace_on::<()>(&threaded, 42, || Ok(())).unwrap_err();
    assert!(e.to_string().ends_with(&Errno::EPERM.to_string()), "{e}");
}

#[test]
fn fork_refused_is_a_fork_error() {
    let double = RecordingNs::new()
        .elsewhere(42)
        .threaded()
        .fail(Errno::EAGAIN, |c| *c == NsCall::Fork);
    let e = in_mount_namespace_on(&double, 42, || Ok(())).unwrap_err();
    assert!(matches!(e, NsError::Fork(Errno::EAGAIN)), "{e}");
    assert_eq!(
        e.to_string(),
        format!(
            "cannot fork to enter the container's mount namespace: {}",
            Errno::EAGAIN
        )
    );
    // Nothing after the refused fork: the work never entered the namespace.
    assert_eq!(double.calls().last(), Some(&NsCall::Fork));
}

#[test]
fn a_namespace_that_cannot_be_opened_asks_whether_the_container_exited() {
    let double = RecordingNs::new()
        .elsewhere(42)
        .fail(Errno::ENOENT, |c| matches!(c, NsCall::OpenNs(_)));
    let e = in_mount_namespace_on(&double, 42, || Ok(()))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(
            "cannot open the mount namespace of container process 42 (/proc/42/ns/mnt): "
        ) && e.ends_with("; did the container exit?"),
        "{e}"
    );
    assert!(!double.calls().contains(&NsCall::Fork));
}

#[test]
fn a_killed_or_panicking_helper_is_an_error_never_a_success() {
    let double = RecordingNs::new()
        .elsewhere(42)
        .threaded()
        .child_killed(nix::sys::signal::Signal::SIGKILL);
    let e = in_mount_namespace_on(&double, 42, || Ok(())).unwrap_err();
    assert!(matches!(e, NsError::Died(_)), "{e}");
    assert!(e.to_string().contains("SIGKILL"), "{e}");

    let double = RecordingNs::new().elsewhere(42).threaded();
    let e = in_mount_namespace_on::<()>(&double, 42, || panic!("boom")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "internal error: the namespace helper panicked"
    );
}
