//! What the host has: GPUs, MIG devices, device majors, caps minors, driver version.
//!
//! Everything that touches NVML or the driver's procfs lives in this module and nowhere else.
//! `discover` reads NVML (through nvml-wrapper, with the configured library) and procfs (through
//! the configured roots), cross-checks the two, and returns one [`Inventory`] value (its types are
//! [`crate::core::inventory`]'s) that the pure planning code works on.

mod discover;
mod error;
pub mod nvml;
pub mod procfs;
mod read;
pub mod snapshot;
mod verify;

#[cfg(test)]
use discover::assemble;
pub use discover::{discover, discover_with, read_nvml_bounded};
pub use error::InventoryError;
pub use read::{
    ci_access_path, devices_path, gi_access_path, gpu_information_path, mig_cap_path,
    mig_minors_path, read_cap_access, read_mig_minors, read_procfs, read_procfs_except_mig_minors,
    read_procfs_scoped, version_path, ProcfsInfo,
};
pub use verify::{verify, verify_scoped, verify_with, AccessFiles};

// The inventory's data model is pure and lives in core, where the plan uses it.
pub use crate::core::inventory::{Gpu, Inventory, Majors, MigDevice};

#[cfg(test)]
mod tests;
