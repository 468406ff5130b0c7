//! `migcage configure` as the configure tests run it: the built binary, never a config from the
//! environment.

use std::process::{Command, Output};

use super::MIGCAGE;

/// `migcage configure ARGS`.
pub fn configure(args: &[&str]) -> Output {
    Command::new(MIGCAGE)
        .arg("configure")
        .args(args)
        .env_remove("MIGCAGE_CONFIG")
        .output()
        .unwrap()
}

/// The stdout of a run that must have succeeded (its output and error when it did not).
pub fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "configure failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
