//! migcage: give a container exactly one NVIDIA MIG instance.
//!
//! The pipeline (see docs/design.md): a **request** parsed from the container's spec, plus the
//! host's **inventory**, are resolved by the **plan** into [`edits::ContainerEdits`], which one of
//! the back ends applies (the OCI hook, the runtime wrapper, the CDI generator).

pub mod cgroup;
pub mod config;
pub mod driver_files;
pub mod edits;
pub mod explain;
pub mod hook;
pub mod inventory;
pub mod list;
pub mod logging;
pub mod pipeline;
pub mod plan;
pub mod request;
pub mod rootfs;
pub mod simulate;
