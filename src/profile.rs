//! Where a hook's time goes, for `scripts/profile-hook.sh`: with `MIGCAGE_PROFILE=FILE` in its
//! environment, the hook appends one line to FILE per run, the microseconds of each stage it
//! passed, in order:
//!
//! ```text
//! start=812 cli=35 config=120 state=14 config.json=60 request=9 snapshot=240 ...
//! ```
//!
//! `start` is the time from `MIGCAGE_PROFILE_T0` (CLOCK_MONOTONIC nanoseconds, set by whoever
//! exec'd the hook, `benches/hookwrap.c`) to the top of `main`: exec, dynamic loading and the
//! Rust runtime's start. Each other stage is the time since the stage before it; what the line
//! leaves out (the exit) is the wrapper's total minus their sum.
//!
//! Without the variable every [`mark`] is one relaxed atomic load: the release binary carries it
//! at no measurable cost, so the figures are those of the binary that is installed.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// The file the profile line goes to.
pub const PROFILE_ENV: &str = "MIGCAGE_PROFILE";
/// CLOCK_MONOTONIC nanoseconds taken just before the exec of the hook.
pub const T0_ENV: &str = "MIGCAGE_PROFILE_T0";

static ON: AtomicBool = AtomicBool::new(false);
static MARKS: Mutex<Vec<(&'static str, u64)>> = Mutex::new(Vec::new());

/// CLOCK_MONOTONIC in nanoseconds (the clock the wrapper's T0 is on).
fn now_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
        .unwrap_or(0)
}

/// Start profiling when `MIGCAGE_PROFILE` is set: the first mark, `start`, is the time since
/// `MIGCAGE_PROFILE_T0` (0 when that is not set). Call it first thing in `main`.
pub fn start() {
    if std::env::var_os(PROFILE_ENV).is_none_or(|v| v.is_empty()) {
        return;
    }
    let now = now_ns();
    let t0 = std::env::var(T0_ENV)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|&t| t <= now)
        .unwrap_or(now);
    let mut marks = MARKS.lock().unwrap_or_else(|e| e.into_inner());
    marks.clear();
    marks.push(("t0", t0));
    marks.push(("start", now));
    ON.store(true, Ordering::Relaxed);
}

/// The end of stage `name` (the time since the mark before it).
#[inline]
pub fn mark(name: &'static str) {
    if ON.load(Ordering::Relaxed) {
        let now = now_ns();
        MARKS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((name, now));
    }
}

/// The profile line of `marks` (name and CLOCK_MONOTONIC ns, the first being T0): each stage's
/// microseconds since the one before, a stage passed twice summed into its first place.
pub fn line(marks: &[(&'static str, u64)]) -> String {
    let mut stages: Vec<(&str, u64)> = Vec::new();
    for w in marks.windows(2) {
        let ns = w[1].1.saturating_sub(w[0].1);
        match stages.iter_mut().find(|(n, _)| *n == w[1].0) {
            Some((_, total)) => *total += ns,
            None => stages.push((w[1].0, ns)),
        }
    }
    let mut out = String::new();
    for (name, ns) in stages {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&format!("{name}={}", ns / 1000));
    }
    out
}

/// Append the profile line to `MIGCAGE_PROFILE`'s file (best effort: a profile never fails the
/// hook). Call it last, before the exit.
pub fn finish() {
    if !ON.swap(false, Ordering::Relaxed) {
        return;
    }
    let marks = std::mem::take(&mut *MARKS.lock().unwrap_or_else(|e| e.into_inner()));
    let Some(path) = std::env::var_os(PROFILE_ENV) else {
        return;
    };
    let text = format!("{}\n", line(&marks));
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = f.write_all(text.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_each_stage_since_the_one_before() {
        let marks = [
            ("t0", 1_000_000),
            ("start", 1_800_000),
            ("config", 1_900_000),
            ("container", 2_900_000),
            ("config", 3_000_000),
        ];
        assert_eq!(line(&marks), "start=800 config=200 container=1000");
        assert_eq!(line(&marks[..1]), "");
    }
}
