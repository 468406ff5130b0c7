//! The syscall layer: every raw syscall and every production `unsafe` block lives here.

pub mod bpf;
pub mod nsenter;
pub mod rootfs;
