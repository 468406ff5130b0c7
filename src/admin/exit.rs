//! How a `migcage` command ends: every error is one line on stderr with one prefix
//! ([`PREFIX`]), clap's parser errors included, and each kind of failure has its exit status.
//!
//! | status | meaning |
//! |---|---|
//! | 0 | done |
//! | 1 | the command failed (the line says why) |
//! | 2 | the command line is wrong (clap's usage errors) |
//! | 141 | stdout was closed early (`migcage list | head -1`): killed by SIGPIPE, as `cat` is |

/// The prefix of every line migcage writes to stderr.
pub const PREFIX: &str = "migcage: ";

/// The exit status of a command line that does not parse.
pub const USAGE: u8 = 2;

/// A failure the command's own output already reported (doctor's `"ok": false`): with `--json`,
/// no error object follows the report.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Reported(pub String);

/// With `--json`, an error is also this object on stdout (docs/json.md), so that a consumer
/// reading stdout sees why there is no report: `{"error": {"message": LINE, "status": 1}}`.
pub fn error_json(line: &str, status: u8) -> serde_json::Value {
    serde_json::json!({"error": {"message": line, "status": status}})
}

/// Print [`error_json`] on stdout; a stdout that is gone is no reason to say more.
pub fn print_json_error(line: &str, status: u8) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stdout(), "{}", error_json(line, status));
}

/// The error and its causes as one line. migcage's own errors already name their cause, so a
/// cause whose text the message holds is not repeated.
pub fn one_line(e: &anyhow::Error) -> String {
    let mut line = e.to_string();
    for cause in e.chain().skip(1) {
        let text = cause.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
    }
    flatten(&line)
}

/// Text on one line: line breaks (a lone `\r` too) become spaces.
fn flatten(text: &str) -> String {
    text.split(['\n', '\r'])
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// clap's rendered error (`error: ...`, tips, `Usage: ...`, a line saying to try `--help`) as
/// one line without clap's own prefix, ending with the `--help` of `command`, the command that
/// was being parsed: `unexpected argument '--x' found; see 'migcage list --help'`.
pub fn usage_line(rendered: &str, command: &str) -> String {
    let mut message = Vec::new();
    for line in rendered.lines().map(str::trim) {
        if line.starts_with("Usage: ") || line.starts_with("For more information") {
            break;
        }
        if line.is_empty() || line.starts_with("tip:") {
            continue;
        }
        message.push(line.strip_prefix("error: ").unwrap_or(line));
    }
    format!("{}; see '{command} --help'", flatten(&message.join(" ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_usage_error_is_one_line_naming_the_commands_help() {
        let rendered = "error: unexpected argument '--x' found\n\n  tip: to pass '--x' as a value, use '-- --x'\n\nUsage: migcage list [OPTIONS]\n\nFor more information, try '--help'.\n";
        assert_eq!(
            usage_line(rendered, "migcage list"),
            "unexpected argument '--x' found; see 'migcage list --help'"
        );
    }

    #[test]
    fn possible_values_stay_on_the_line() {
        let rendered = "error: invalid value 'x' for '<STAGE>'\n  [possible values: prestart, poststop]\n\nFor more information, try '--help'.\n";
        assert_eq!(
            usage_line(rendered, "migcage hook"),
            "invalid value 'x' for '<STAGE>' [possible values: prestart, poststop]; see 'migcage hook --help'"
        );
    }

    #[test]
    fn causes_join_the_line_once() {
        let e = anyhow::anyhow!("cannot read /x: gone").context("list");
        assert_eq!(one_line(&e), "list: cannot read /x: gone");
        let e = anyhow::anyhow!("two\nlines\r").context("a");
        assert_eq!(one_line(&e), "a: two lines");
    }
}
