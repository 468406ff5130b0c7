//! The operator's commands: `configure`, `doctor`, `list` and `explain`.

pub mod commands;
pub mod configure;
pub mod doctor;
pub mod explain;
pub mod list;
