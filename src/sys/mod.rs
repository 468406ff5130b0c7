//! The syscall layer: every raw syscall and every production `unsafe` block lives here.

pub mod bpf;
pub mod dirfd;
#[cfg(test)]
pub mod double;
pub mod nsenter;
pub mod rootfs;
