//! The hook's entry point: run it on the state from stdin and log its one record.

use std::io::Read;
use std::time::Instant;

use super::state::{self, State, StateError, MAX_STATE_BYTES};
use super::{HookError, Outcome, Stage};
use crate::config::Config;
use crate::logging::ContainerRecord;

/// `migcage hook STAGE`: the log set up from `config`, then [`run_logged`] on stdin (one flat
/// JSON record per container in the log; the error alone, as the caller prints it, on stderr).
#[allow(clippy::result_large_err)]
pub fn run_on_stdin(config: &Config, stage: Stage) -> Result<(), HookError> {
    crate::logging::init(&config.log);
    crate::profile::mark("logging");
    run_logged(config, stage, std::io::stdin().lock()).map(drop)
}

/// Run the hook on the state read from `input` and log its one record, also when it fails (then
/// with whatever of the container the state names).
// The error is hook::run's own, passed on unchanged.
#[allow(clippy::result_large_err)]
pub fn run_logged(
    config: &Config,
    stage: Stage,
    mut input: impl Read,
) -> Result<Outcome, HookError> {
    let start = Instant::now();
    let mut buf = Vec::new();
    // Bounded like State::read; an over-long or unreadable input is the hook's error to report.
    let read = input
        .by_ref()
        .take(MAX_STATE_BYTES + 1)
        .read_to_end(&mut buf);
    let result = match read {
        Ok(_) => super::run(config, stage, &buf[..]),
        Err(e) => Err(HookError::State(StateError::Read(e))),
    };
    match &result {
        Ok(outcome) => {
            let bundle = State::parse(&buf).ok().map(|s| s.bundle);
            ContainerRecord::from_outcome(outcome, bundle.as_deref()).emit();
            crate::profile::mark("log-record");
        }
        Err(e) => {
            let state = State::parse(&buf).ok();
            let mut record = ContainerRecord::failed(
                stage,
                state.as_ref().map(|s| s.id.clone()),
                state.as_ref().map(|s| s.bundle.as_path()),
                e.to_string(),
                u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX),
            );
            // What the container asked for, when that much could be read (pure, no driver).
            let request = state
                .as_ref()
                .and_then(|s| state::read_config(&s.bundle).ok())
                .and_then(|spec| crate::core::request::parse(&spec, &config.requests).ok());
            if let Some(req) = &request {
                record.set_request(req);
            }
            record.emit();
        }
    }
    result
}
