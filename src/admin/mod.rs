//! The operator's commands: `configure`, `doctor`, `list`, `explain`, `mig` and `system`.

pub mod argv;
pub mod commands;
pub mod config_key;
pub mod configure;
pub mod doctor;
pub mod exit;
pub mod explain;
pub mod list;
pub mod manpages;
pub mod mig;
pub mod system;
