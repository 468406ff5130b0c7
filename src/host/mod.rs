//! What reads the host: the inventory of GPUs and MIG devices (NVML, procfs, the snapshot),
//! the driver's files, the lease store, the container's cgroup, and the runtime that runs the hook.

pub mod cgroup;
pub mod driver_discovery;
pub mod files;
pub mod inventory;
pub mod lease;
pub mod runtime;
