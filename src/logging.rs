//! Structured logs: JSON lines appended to the configured file.
//!
//! stdout stays clean (a hook's stdout belongs to the runtime) and stderr carries only the one
//! line a user sees. The file is opened in append mode by each run, so a logrotate rename is safe
//! without copytruncate. A log file that cannot be opened never fails the command.

use std::fs::OpenOptions;
use std::sync::Mutex;

use tracing_subscriber::filter::LevelFilter;

use crate::config::LogConfig;

/// Install the JSON file logger; returns false when logging is off or the file can't be opened.
pub fn init(cfg: &LogConfig) -> bool {
    if cfg.file.is_empty() {
        return false;
    }
    let level: LevelFilter = cfg.level.parse().unwrap_or(LevelFilter::INFO);
    let Ok(file) = OpenOptions::new().create(true).append(true).open(&cfg.file) else {
        return false;
    };
    tracing_subscriber::fmt()
        .json()
        .with_max_level(level)
        .with_current_span(false)
        .with_span_list(false)
        .with_target(false)
        .with_writer(Mutex::new(file))
        .try_init()
        .is_ok()
}
