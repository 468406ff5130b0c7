//! Pure code: parsing, planning and encoding. Nothing here reads or writes files or makes a
//! syscall (tests/layout.rs keeps it so); the host is reached only through [`crate::host`] and
//! [`crate::sys`].

pub mod cgroup;
pub mod driver_files;
pub mod edits;
pub mod engine;
pub mod inventory;
pub mod ldcache;
pub mod mig;
pub mod node;
pub mod plan;
pub mod request;
pub mod systemd;
