//! The v2 replacement through the recording bpf double: each errno path, without root.

use std::path::Path;

use super::*;
use crate::core::edits::{Access, DeviceType};
use crate::sys::bpf::test::{BpfCall, RecordingBpf};

const CG: &str = "/sys/fs/cgroup/machine.slice/ctr";
const RUNC: u32 = 7;

fn rules() -> Vec<DeviceRule> {
    vec![DeviceRule {
        allow: true,
        kind: DeviceType::Char,
        major: Some(195),
        minor: Some(0),
        access: Access::RW,
    }]
}

fn cg() -> &'static Path {
    Path::new(CG)
}

fn is_replace_attach(c: &BpfCall) -> bool {
    matches!(c, BpfCall::Attach { flags, .. } if flags & BPF_F_REPLACE != 0)
}

/// Every state the cgroup went through had a program, and only the old or the new one: the
/// device access was never wider than the plan.
fn assert_never_wider(double: &RecordingBpf, old: &[u32], new: u32) {
    let history = double.history(cg());
    for state in &history {
        assert!(!state.is_empty(), "a moment with no program: {history:?}");
        assert!(
            state.iter().all(|id| *id == new || old.contains(id)),
            "{history:?}"
        );
    }
}

#[test]
fn replace_swaps_the_runtime_program_in_one_call() {
    let double = RecordingBpf::new().with_attached(cg(), BPF_F_ALLOW_MULTI, &[RUNC]);
    let r = replace_device_program_on(&double, cg(), &rules()).unwrap();
    assert_eq!(
        r,
        Replaced {
            prog_id: 100,
            old_ids: vec![RUNC],
            method: Method::Replace
        }
    );
    assert_eq!(double.history(cg()), [vec![RUNC], vec![100]]);
    assert!(!double
        .calls()
        .iter()
        .any(|c| matches!(c, BpfCall::Detach { .. })));
}

#[test]
fn replace_refused_with_einval_attaches_first_then_detaches() {
    let double = RecordingBpf::new()
        .with_attached(cg(), BPF_F_ALLOW_MULTI, &[RUNC])
        .fail(libc::EINVAL, is_replace_attach);
    let r = replace_device_program_on(&double, cg(), &rules()).unwrap();
    assert_eq!(r.method, Method::AttachThenDetach);
    assert_eq!((r.prog_id, r.old_ids.as_slice()), (100, &[RUNC][..]));
    let cgroup = cg().to_path_buf();
    let log = double.log();
    let swap: Vec<_> = log
        .iter()
        .filter(|(c, _)| matches!(c, BpfCall::Attach { .. } | BpfCall::Detach { .. }))
        .cloned()
        .collect();
    assert_eq!(
        swap,
        [
            (
                BpfCall::Attach {
                    cgroup: cgroup.clone(),
                    prog: 100,
                    flags: BPF_F_ALLOW_MULTI | BPF_F_REPLACE,
                    replace: Some(RUNC),
                },
                Err(libc::EINVAL)
            ),
            (
                BpfCall::Attach {
                    cgroup: cgroup.clone(),
                    prog: 100,
                    flags: BPF_F_ALLOW_MULTI,
                    replace: None,
                },
                Ok(())
            ),
            (
                BpfCall::Detach {
                    cgroup: cgroup.clone(),
                    prog: RUNC
                },
                Ok(())
            ),
        ]
    );
    assert_eq!(log.last().unwrap().0, BpfCall::ProgQuery(cgroup));
    // The window in between is both programs: their intersection.
    assert_eq!(
        double.history(cg()),
        [vec![RUNC], vec![RUNC, 100], vec![100]]
    );
    assert_never_wider(&double, &[RUNC], 100);
}

#[test]
fn query_refused_with_eperm_fails_closed_and_attaches_nothing() {
    let double = RecordingBpf::new()
        .with_attached(cg(), BPF_F_ALLOW_MULTI, &[RUNC])
        .fail(libc::EPERM, |c| matches!(c, BpfCall::ProgQuery(_)));
    let e = replace_device_program_on(&double, cg(), &rules()).unwrap_err();
    assert_eq!(e.errno(), Some(libc::EPERM));
    let text = e.to_string();
    assert_eq!(
        text,
        format!(
            "bpf(BPF_PROG_QUERY) for cgroup {CG}: {}{}",
            std::io::Error::from_raw_os_error(libc::EPERM),
            crate::sys::bpf::refused_hint(Some(libc::EPERM))
        )
    );
    assert!(
        text.contains("keeps the runtime's device program"),
        "{text}"
    );
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(!double
        .calls()
        .iter()
        .any(|c| matches!(c, BpfCall::Attach { .. } | BpfCall::Detach { .. })));
    // The runtime's program is untouched: never allow-all, never ours half in place.
    assert_eq!(double.history(cg()), [vec![RUNC]]);
}

#[test]
fn a_racing_detach_with_enoent_counts_as_done() {
    // Two old programs: no BPF_F_REPLACE, attach then detach each; the second is detached by
    // someone else just before us.
    let double = RecordingBpf::new()
        .with_attached(cg(), BPF_F_ALLOW_MULTI, &[RUNC, 8])
        .detached_meanwhile(8);
    let r = replace_device_program_on(&double, cg(), &rules()).unwrap();
    assert_eq!(r.method, Method::AttachThenDetach);
    assert_eq!(r.old_ids, [RUNC, 8]);
    assert!(double.log().contains(&(
        BpfCall::Detach {
            cgroup: cg().to_path_buf(),
            prog: 8
        },
        Err(libc::ENOENT)
    )));
    assert_eq!(double.attached(cg()), [100]);
    assert_never_wider(&double, &[RUNC, 8], 100);
}

#[test]
fn a_detach_refused_otherwise_is_an_error_with_both_still_attached() {
    let double = RecordingBpf::new()
        .with_attached(cg(), BPF_F_ALLOW_MULTI, &[RUNC])
        .fail(libc::EINVAL, is_replace_attach)
        .fail(libc::EPERM, |c| matches!(c, BpfCall::Detach { .. }));
    let e = replace_device_program_on(&double, cg(), &rules()).unwrap_err();
    assert_eq!(e.errno(), Some(libc::EPERM));
    assert!(
        e.to_string()
            .starts_with("bpf(BPF_PROG_DETACH) for cgroup "),
        "{e}"
    );
    // Both attached: the intersection, never wider.
    assert_eq!(double.attached(cg()), [RUNC, 100]);
}

#[test]
fn an_exclusive_program_is_swapped_by_the_attach() {
    let double = RecordingBpf::new().with_attached(cg(), 0, &[RUNC]);
    let r = replace_device_program_on(&double, cg(), &rules()).unwrap();
    assert_eq!(r.method, Method::Exclusive);
    assert_eq!(double.history(cg()), [vec![RUNC], vec![100]]);
}

#[test]
fn a_load_refused_with_eperm_says_what_it_needs_and_touches_nothing() {
    let double = RecordingBpf::new()
        .with_attached(cg(), BPF_F_ALLOW_MULTI, &[RUNC])
        .fail(libc::EPERM, |c| matches!(c, BpfCall::ProgLoad { .. }));
    let e = replace_device_program_on(&double, cg(), &rules()).unwrap_err();
    assert!(
        e.to_string().contains("needs CAP_SYS_ADMIN or CAP_BPF"),
        "{e}"
    );
    assert_eq!(
        double.calls(),
        [
            BpfCall::OpenCgroup(cg().to_path_buf()),
            BpfCall::ProgLoad { log: false }
        ]
    );
}

#[test]
fn program_fd_by_id_refused_with_eperm_changes_nothing() {
    let double = RecordingBpf::new()
        .with_attached(cg(), BPF_F_ALLOW_MULTI, &[RUNC])
        .fail(libc::EPERM, |c| matches!(c, BpfCall::ProgFdById(_)));
    let e = replace_device_program_on(&double, cg(), &rules()).unwrap_err();
    let text = e.to_string();
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(
        text.starts_with("bpf(BPF_PROG_GET_FD_BY_ID) for cgroup "),
        "{text}"
    );
    assert!(text.contains("CAP_SYS_ADMIN"), "{text}");
    assert_eq!(double.history(cg()), [vec![RUNC]]);
}

#[test]
fn replace_refused_then_attach_refused_leaves_the_runtime_program_alone() {
    let double = RecordingBpf::new()
        .with_attached(cg(), BPF_F_ALLOW_MULTI, &[RUNC])
        .fail(libc::EINVAL, is_replace_attach)
        .fail(libc::EPERM, |c| matches!(c, BpfCall::Attach { .. }));
    let e = replace_device_program_on(&double, cg(), &rules()).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("bpf(BPF_PROG_ATTACH) for cgroup "),
        "{e}"
    );
    assert_eq!(double.history(cg()), [vec![RUNC]]);
    assert!(!double
        .calls()
        .iter()
        .any(|c| matches!(c, BpfCall::Detach { .. })));
}

#[test]
fn replace_refused_with_several_old_programs_is_never_tried_and_never_wider() {
    // Several programs (runc's and systemd's): BPF_F_REPLACE swaps one, so it is not used.
    let double = RecordingBpf::new().with_attached(cg(), BPF_F_ALLOW_MULTI, &[RUNC, 8]);
    let r = replace_device_program_on(&double, cg(), &rules()).unwrap();
    assert_eq!(r.method, Method::AttachThenDetach);
    assert!(!double.calls().iter().any(is_replace_attach));
    assert_never_wider(&double, &[RUNC, 8], 100);
    assert_eq!(double.attached(cg()), [100]);
}
