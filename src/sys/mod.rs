//! The syscall layer: every raw syscall and every production `unsafe` block lives here.
//!
//! Where the errno paths decide what migcage does (bpf, the rootfs, entering a namespace), the
//! raw calls are behind a small trait in the shape of youki's `Syscall`: `linux.rs` makes the
//! real calls, `test.rs` is a recording double (unit tests only) that logs every call and fails
//! the ones a test names with the errno it names; the logic above takes `&dyn` the trait.

pub mod bpf;
pub mod dirfd;
#[cfg(test)]
pub mod double;
pub mod exec;
pub mod host_nodes;
pub mod mig;
pub mod nsenter;
pub mod nvml;
pub mod read;
pub mod rootfs;
pub mod signal;
