//! What reads the host: the inventory of GPUs and MIG devices (NVML, procfs, the snapshot),
//! the driver's files, the lease store, the container's cgroup, the runtime that runs the hook,
//! systemd (its units' `DeviceAllow=`, over D-Bus), the `/dev/char` links and the user namespace
//! migcage runs in.

pub mod cgroup;
pub mod dev_char;
pub mod driver_discovery;
pub mod files;
pub mod inventory;
pub mod lease;
pub mod mig;
pub mod runtime;
pub mod systemd;
pub mod userns;
