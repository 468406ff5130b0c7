//! migcage: give a container exactly one NVIDIA MIG instance.
//!
//! The pipeline (see README.md): a **request** parsed from the container's spec, plus the
//! host's **inventory**, are resolved by the **plan** into [`edits::ContainerEdits`], which one of
//! the back ends applies (the OCI hook, the runtime wrapper, the CDI generator).

pub mod cgroup;
pub mod config;
pub mod edits;
pub mod inventory;
pub mod request;
