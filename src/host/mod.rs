//! What reads the host: the inventory of GPUs and MIG devices (NVML, procfs, the snapshot),
//! the driver's files, the lease store, the container's cgroup, the runtime that runs the hook,
//! systemd (its units' `DeviceAllow=`, over D-Bus) and the `/dev/char` links.

pub mod cgroup;
pub mod dev_char;
pub mod driver_discovery;
pub mod files;
pub mod inventory;
pub mod lease;
pub mod runtime;
pub mod systemd;
