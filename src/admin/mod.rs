//! The operator's commands: `configure`, `doctor`, `list`, `explain`, `mig` and `system`.

pub mod commands;
pub mod configure;
pub mod doctor;
pub mod exit;
pub mod explain;
pub mod list;
pub mod manpages;
pub mod mig;
pub mod system;
