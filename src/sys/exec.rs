//! Replacing this process with another program (`execve`): the runtime wrapper's last step.

use std::ffi::{OsStr, OsString};
use std::path::Path;

/// Run `program` in place of this process, with `arg0` as its `argv[0]` and `args` after it
/// untouched; the environment is passed on. Returns only when the exec failed, with why.
pub fn exec(program: &Path, arg0: &OsStr, args: &[OsString]) -> std::io::Error {
    use std::os::unix::process::CommandExt;
    std::process::Command::new(program)
        .arg0(arg0)
        .args(args)
        .exec()
}

/// Run `program` (as `arg0`, with `args`) as this process's child, with this process's stdio and
/// environment, and wait for its end.
pub fn run_to_end(
    program: &Path,
    arg0: &OsStr,
    args: &[OsString],
) -> std::io::Result<std::process::ExitStatus> {
    use std::os::unix::process::CommandExt;
    std::process::Command::new(program)
        .arg0(arg0)
        .args(args)
        .status()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_program_is_an_error_not_an_exit() {
        let e = exec(Path::new("/nonexistent/runc"), OsStr::new("runc"), &[]);
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
        let e = run_to_end(Path::new("/nonexistent/runc"), OsStr::new("runc"), &[]).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
    }

    #[test]
    fn a_child_runs_to_its_end_with_its_arguments() {
        let sh = Path::new("/bin/sh");
        let args: Vec<OsString> = ["-c", "exit $(($# + 3))", "x", "a", "b"]
            .iter()
            .map(OsString::from)
            .collect();
        let st = run_to_end(sh, OsStr::new("sh"), &args).unwrap();
        assert_eq!(st.code(), Some(5));
    }
}
