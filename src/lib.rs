//! migcage: give a container exactly one NVIDIA MIG instance.
//!
//! The pipeline (see docs/design.md), one folder per stage:
//!
//! - [`core`]: pure code only (no file system, no syscalls): the **request** parsed from the
//!   container's spec, the **plan** that resolves it against an inventory into
//!   [`core::edits::ContainerEdits`], cgroup rules and their eBPF program, the ld.so.cache format.
//! - [`host`]: what reads the host: the **inventory** (NVML, procfs, snapshot), driver file
//!   discovery, the lease store, the container's cgroup.
//! - [`sys`]: every raw syscall and every production `unsafe` (bpf, openat2/mount/mknod,
//!   setns/fork).
//! - [`backend`]: the three back ends that apply a plan (the OCI hook, the runtime wrapper, the
//!   CDI generator) and the one pipeline they share.
//! - [`admin`]: the operator's commands (configure, doctor, list, explain).

pub mod admin;
pub mod backend;
pub mod config;
pub mod core;
pub mod faultpoint;
pub mod host;
pub mod logging;
pub mod profile;
/// `migcage simulate`: the driver-tree builder, its own crate (`crates/simulate`).
pub use migcage_simulate as simulate;
pub mod sys;
#[cfg(test)]
mod testing;
