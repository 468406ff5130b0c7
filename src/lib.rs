//! migcage: give a container exactly one NVIDIA MIG instance.
//!
//! The pipeline (see docs/design.md): a **request** parsed from the container's spec, plus the
//! host's **inventory**, are resolved by the **plan** into [`edits::ContainerEdits`], which one of
//! the back ends applies (the OCI hook, the runtime wrapper, the CDI generator).

pub mod cdi;
pub mod cgroup;
pub mod config;
pub mod configure;
pub mod doctor;
pub mod driver_discovery;
pub mod driver_files;
pub mod edits;
pub mod explain;
pub mod faultpoint;
pub mod hook;
pub mod inventory;
pub mod ldcache;
pub mod lease;
pub mod list;
pub mod logging;
pub mod pipeline;
pub mod plan;
pub mod request;
pub mod rootfs;
pub mod runtime;
pub mod simulate;
