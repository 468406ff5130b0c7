//! Doctor's output: one `OK|WARN|FAIL <check>: <found>; <fix>` line per finding, or JSON.

use std::fmt;

use serde::Serialize;

use super::checks::{Check, Status};

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Ok => "OK",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        })
    }
}

impl fmt::Display for Check {
    /// `OK driver: loaded, version 550.54.15; fix` (no `; ` part when there is no fix).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status, self.check, self.found)?;
        if !self.fix.is_empty() {
            write!(f, "; {}", self.fix)?;
        }
        Ok(())
    }
}

/// Everything doctor found, in the order it checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// True when no check failed.
    pub ok: bool,
    pub checks: Vec<Check>,
}

impl Report {
    pub fn new(checks: Vec<Check>) -> Report {
        Report {
            ok: !checks.iter().any(|c| c.status == Status::Fail),
            checks,
        }
    }

    pub fn count(&self, status: Status) -> usize {
        self.checks.iter().filter(|c| c.status == status).count()
    }

    /// One line per check.
    pub fn render(&self) -> String {
        self.checks.iter().map(|c| format!("{c}\n")).collect()
    }

    /// What `migcage doctor` prints: the lines, or (`--json`) the report as pretty-printed JSON
    /// and a newline.
    pub fn output(&self, json: bool) -> serde_json::Result<String> {
        Ok(if json {
            serde_json::to_string_pretty(self)? + "\n"
        } else {
            self.render()
        })
    }

    /// `migcage doctor`'s closing error (exit status 1) when a check failed.
    pub fn verdict(&self) -> Result<(), String> {
        if self.ok {
            return Ok(());
        }
        Err(format!(
            "doctor: {} check(s) failed; fix the FAIL lines above and run migcage doctor again",
            self.count(Status::Fail)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_format() {
        let c = Check::fail("driver", "not loaded", "modprobe nvidia");
        assert_eq!(c.to_string(), "FAIL driver: not loaded; modprobe nvidia");
        assert_eq!(Check::ok("x", "fine").to_string(), "OK x: fine");
        let r = Report::new(vec![Check::ok("a", "b"), Check::warn("c", "d", "e")]);
        assert!(r.ok);
        assert_eq!(r.render(), "OK a: b\nWARN c: d; e\n");
        let j = serde_json::to_value(&r).unwrap();
        assert_eq!(j["checks"][1]["status"], "WARN");
        assert!(!Report::new(vec![c]).ok);
    }

    #[test]
    fn output_and_verdict() {
        let r = Report::new(vec![Check::ok("a", "b"), Check::fail("c", "d", "e")]);
        assert_eq!(r.output(false).unwrap(), "OK a: b\nFAIL c: d; e\n");
        assert!(r.output(true).unwrap().ends_with("}\n"));
        assert_eq!(
            r.verdict().unwrap_err(),
            "doctor: 1 check(s) failed; fix the FAIL lines above and run migcage doctor again"
        );
        assert_eq!(Report::new(vec![Check::ok("a", "b")]).verdict(), Ok(()));
    }
}
