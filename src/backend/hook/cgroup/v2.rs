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
use crate::sys::bpf::{Attached, Bpf, BpfError, BpfSyscall, BPF_F_ALLOW_MULTI, BPF_F_REPLACE};

#[cfg(test)]
mod tests;

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
    let bpf = Bpf::linux();
    let cg = bpf.open_cgroup(cgroup_dir)?;
    Ok(bpf.query_device_programs(cg.as_fd(), cgroup_dir)?.ids)
}

/// Make the program for `rules` the only device program attached to `cgroup_dir`.
pub fn replace_device_program(
    cgroup_dir: &Path,
    rules: &[DeviceRule],
) -> Result<Replaced, BpfError> {
    replace_device_program_on(&crate::sys::bpf::LinuxBpf, cgroup_dir, rules)
}

/// [`replace_device_program`] through `sys` (the kernel's bpf(2), or the recording double).
pub fn replace_device_program_on(
    sys: &dyn BpfSyscall,
    cgroup_dir: &Path,
    rules: &[DeviceRule],
) -> Result<Replaced, BpfError> {
    let bpf = Bpf::new(sys);
    let insns = program::emit(rules);
    let cg = bpf.open_cgroup(cgroup_dir)?;
    let prog = bpf.load_device_program(&insns, cgroup_dir)?;
    let prog_id = bpf.program_id(prog.as_fd(), cgroup_dir)?;

    let before = bpf.query_device_programs(cg.as_fd(), cgroup_dir)?;
    let old: Vec<(u32, OwnedFd)> = before
        .ids
        .iter()
        .map(|&id| bpf.program_fd_by_id(id, cgroup_dir).map(|fd| (id, fd)))
        .collect::<Result<_, _>>()?;
    let old_ids: Vec<u32> = old.iter().map(|(id, _)| *id).collect();

    let swap = Swap {
        bpf,
        cg: &cg,
        prog: &prog,
        cgroup_dir,
    };
    let method = swap.run(&before, &old)?;

    let after = bpf.query_device_programs(cg.as_fd(), cgroup_dir)?;
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

/// The attach (and detach) that puts the new program in place of the old ones.
struct Swap<'a> {
    bpf: Bpf<'a>,
    cg: &'a OwnedFd,
    prog: &'a OwnedFd,
    cgroup_dir: &'a Path,
}

impl Swap<'_> {
    fn run(&self, before: &Attached, old: &[(u32, OwnedFd)]) -> Result<Method, BpfError> {
        if !old.is_empty() && before.flags & BPF_F_ALLOW_MULTI == 0 {
            // Not multi: the kernel keeps one program and an attach with the same flags swaps it.
            self.attach(before.flags, None)?;
            return Ok(Method::Exclusive);
        }
        let swapped = match old {
            [(_, only)] => match self.attach(BPF_F_ALLOW_MULTI | BPF_F_REPLACE, Some(only)) {
                Ok(()) => true,
                // Before Linux 5.5 the flag (and the field) are unknown: EINVAL.
                Err(e) if e.errno() == Some(libc::EINVAL) => false,
                Err(e) => return Err(e),
            },
            _ => false,
        };
        if swapped {
            return Ok(Method::Replace);
        }
        self.attach(BPF_F_ALLOW_MULTI, None)?;
        for (_, fd) in old {
            match self
                .bpf
                .detach_device_program(self.cg.as_fd(), fd.as_fd(), self.cgroup_dir)
            {
                Ok(()) => {}
                // Someone else detached it meanwhile: the goal holds.
                Err(e) if e.errno() == Some(libc::ENOENT) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Method::AttachThenDetach)
    }

    fn attach(&self, flags: u32, replace: Option<&OwnedFd>) -> Result<(), BpfError> {
        self.bpf.attach_device_program(
            self.cg.as_fd(),
            self.prog.as_fd(),
            flags,
            replace.map(|fd| fd.as_fd()),
            self.cgroup_dir,
        )
    }
}
