//! The topology of a simulated MIG host: which GPUs it has, which are in MIG mode, which GPU and
//! compute instances exist, and which faults to inject.
//!
//! One file format (TOML, or JSON when the file name ends in `.json`) read by both the simulated
//! NVML library and `migcage simulate`, so the two can never disagree. Fields a person rarely
//! cares about (UUIDs, instance ids, placements, minors) may be left out and are then filled in
//! deterministically: the same topology always yields the same UUIDs.
//!
//! Modules by job: `file` (the file form), `resolve` (defaults and checks), `resolved` (the
//! checked topology), `load` (reading files, built-ins, errors), `devices` (device numbers),
//! `naming` (UUIDs and bus ids), [`models`] (the GPU models) and [`placement`] (where GPU
//! instances may go); every public item is
//! re-exported here.

mod devices;
mod file;
mod load;
pub mod models;
mod mutate;
mod naming;
pub mod placement;
mod resolve;
mod resolved;

pub use devices::{
    capability_file, ci_access_minor, gi_access_minor, instance_capability, mig_minors_file,
    CAP_READ_MODE, DEFAULT_CAPS_MAJOR, DEFAULT_UVM_MAJOR, FRONTEND_MAJOR, MAX_COMPUTE_INSTANCES,
    MAX_GPUS, MAX_GPU_INSTANCES, MIG_CONFIG_MINOR, MIG_MONITOR_MINOR,
};
pub use file::{
    ComputeInstanceFile, Faults, GpuFile, GpuInstanceFile, Majors, TopologyFile, Visibility,
};
pub use load::{builtin, builtin_names, TopologyError};
pub use models::{GiProfile, Model};
pub use mutate::{ci_placements, ci_remaining_capacity, free_ci_placements, MigOpError};
pub use naming::{proc_bus_id, stable_uuid};
pub use placement::{Placed, Placement, PlacementError};
pub use resolved::{ComputeInstance, Gpu, GpuInstance, MigDeviceRef, Topology};

#[cfg(test)]
mod tests;
