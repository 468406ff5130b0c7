//! cgroup v2: replace a cgroup's device program with one built from a full rule list.
//!
//! Device programs attached to one cgroup with `BPF_F_ALLOW_MULTI` all run, and a device must
//! pass every one: adding a program can only restrict. So access is granted by replacing:
//!
//! - programs attached without `BPF_F_ALLOW_MULTI` (one at most): attaching ours with the same
//!   flags swaps it atomically;
//! - exactly one `BPF_F_ALLOW_MULTI` program (runc's): `BPF_F_REPLACE` swaps it atomically on
//!   Linux 5.5+; where the kernel refuses the flag, ours is attached first and the old one
//!   detached after;
//! - none or several: ours is attached, then every old one detached.
//!
//! While both run, access is the intersection of the two: never wider than either. The old
//! programs' fds are all taken before anything changes, so a failure there changes nothing.
//! Running this twice leaves one program attached: the second run's.

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use crate::core::cgroup::program;
use crate::core::edits::DeviceRule;
use crate::sys::bpf::{self, BpfError, BPF_F_ALLOW_MULTI, BPF_F_REPLACE};

/// How the old program(s) went away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Attached without `BPF_F_ALLOW_MULTI`: the old program was swapped by the attach itself.
    Exclusive,
    /// `BPF_F_ALLOW_MULTI | BPF_F_REPLACE`.
    Replace,
    /// Attached with `BPF_F_ALLOW_MULTI`, then the old programs were detached.
    AttachThenDetach,
}

/// What [`replace_device_program`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replaced {
    /// The kernel id of the program now attached.
    pub prog_id: u32,
    /// The ids of the programs it replaced.
    pub old_ids: Vec<u32>,
    pub method: Method,
}

/// The ids of the device programs attached directly to `cgroup_dir`.
pub fn attached_device_programs(cgroup_dir: &Path) -> Result<Vec<u32>, BpfError> {
    let cg = bpf::open_cgroup(cgroup_dir)?;
    Ok(bpf::query_device_programs(cg.as_fd(), cgroup_dir)?.ids)
}

/// Make the program for `rules` the only device program attached to `cgroup_dir`.
pub fn replace_device_program(
    cgroup_dir: &Path,
    rules: &[DeviceRule],
) -> Result<Replaced, BpfError> {
    let insns = program::emit(rules);
    let cg = bpf::open_cgroup(cgroup_dir)?;
    let prog = bpf::load_device_program(&insns, cgroup_dir)?;
    let prog_id = bpf::program_id(prog.as_fd(), cgroup_dir)?;

    let before = bpf::query_device_programs(cg.as_fd(), cgroup_dir)?;
    let old: Vec<(u32, OwnedFd)> = before
        .ids
        .iter()
        .map(|&id| bpf::program_fd_by_id(id, cgroup_dir).map(|fd| (id, fd)))
        .collect::<Result<_, _>>()?;
    let old_ids: Vec<u32> = old.iter().map(|(id, _)| *id).collect();

    let method = if !old.is_empty() && before.flags & BPF_F_ALLOW_MULTI == 0 {
        // Not multi: the kernel keeps one program and an attach with the same flags swaps it.
        bpf::attach_device_program(cg.as_fd(), prog.as_fd(), before.flags, None, cgroup_dir)?;
        Method::Exclusive
    } else {
        let swapped = match old.as_slice() {
            [(_, only)] => match bpf::attach_device_program(
                cg.as_fd(),
                prog.as_fd(),
                BPF_F_ALLOW_MULTI | BPF_F_REPLACE,
                Some(only.as_fd()),
                cgroup_dir,
            ) {
                Ok(()) => true,
                // Before Linux 5.5 the flag (and the field) are unknown: EINVAL.
                Err(e) if e.errno() == Some(libc::EINVAL) => false,
                Err(e) => return Err(e),
            },
            _ => false,
        };
        if swapped {
            Method::Replace
        } else {
            bpf::attach_device_program(
                cg.as_fd(),
                prog.as_fd(),
                BPF_F_ALLOW_MULTI,
                None,
                cgroup_dir,
            )?;
            for (_, fd) in &old {
                match bpf::detach_device_program(cg.as_fd(), fd.as_fd(), cgroup_dir) {
                    Ok(()) => {}
                    // Someone else detached it meanwhile: the goal holds.
                    Err(e) if e.errno() == Some(libc::ENOENT) => {}
                    Err(e) => return Err(e),
                }
            }
            Method::AttachThenDetach
        }
    };

    let after = bpf::query_device_programs(cg.as_fd(), cgroup_dir)?;
    if after.ids != [prog_id] {
        return Err(BpfError::NotReplaced {
            path: cgroup_dir.to_path_buf(),
            ours: prog_id,
            attached: after.ids,
        });
    }
    Ok(Replaced {
        prog_id,
        old_ids,
        method,
    })
}
