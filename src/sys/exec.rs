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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_program_is_an_error_not_an_exit() {
        let e = exec(Path::new("/nonexistent/runc"), OsStr::new("runc"), &[]);
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
    }
}
