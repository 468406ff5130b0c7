//! The runtime's command line as runc and crun read it: what migcage needs of it (the command,
//! `--log`, the bundle, the container id). Everything else passes through untouched.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// What migcage needs of a runtime's command line. Everything else passes through untouched.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RuntimeArgs {
    /// The command (`create`, `run`, `state`, ...), when one was given.
    pub command: Option<String>,
    /// Global `--log FILE`: where runc writes its own errors, and where containerd and Docker
    /// read the reason of a failed command.
    pub log: Option<PathBuf>,
    /// Global `--log-format` (`text`, runc's default, or `json`).
    pub log_format: Option<String>,
    /// `--bundle`/`-b` of `create` and `run`; the current directory when absent.
    pub bundle: Option<PathBuf>,
    /// crun's `--config`/`-f` of `create` and `run`: the spec file, relative to the bundle.
    pub config_file: Option<PathBuf>,
    /// `--pid-file` of `create` and `run`: where the runtime writes the container's init pid.
    pub pid_file: Option<PathBuf>,
    /// The first positional argument after the command (the container id).
    pub container_id: Option<OsString>,
    /// Where the command is in the arguments (what comes before it are the global flags).
    pub command_at: Option<usize>,
    /// `--help`, `-h`, `--version` and the like: the runtime only prints.
    pub help: bool,
}

/// Global flags of runc 1.1 and crun that take a value (`--root X` or `--root=X`; Go's flag
/// package, which runc uses, also takes one dash).
const GLOBAL_VALUE_FLAGS: &[&str] = &[
    "log",
    "log-format",
    "log-level",
    "root",
    "criu",
    "rootless",
    "cgroup-manager",
];
/// Flags of `create` and `run` (runc and crun) that take a value.
const COMMAND_VALUE_FLAGS: &[&str] = &[
    "bundle",
    "b",
    "config",
    "f",
    "console-socket",
    "pid-file",
    "preserve-fds",
];
/// Short flags of `create`/`run` whose value crun's argp also takes attached (`-b/dir`).
const ATTACHED_SHORT_FLAGS: &[u8] = b"bf";
const HELP_FLAGS: &[&str] = &["help", "h", "?", "usage", "version", "v", "V"];

/// `-x`, `--name`, `-name=value`, `--name=value`: the name and the attached value.
fn split_flag(arg: &OsStr) -> Option<(&[u8], Option<&OsStr>)> {
    let b = arg.as_bytes();
    if b.len() < 2 || b[0] != b'-' {
        return None;
    }
    let body = b.strip_prefix(b"--").unwrap_or(&b[1..]);
    Some(match body.iter().position(|&c| c == b'=') {
        Some(i) => (&body[..i], Some(OsStr::from_bytes(&body[i + 1..]))),
        None => (body, None),
    })
}

fn is(name: &[u8], list: &[&str]) -> bool {
    list.iter().any(|n| n.as_bytes() == name)
}

impl RuntimeArgs {
    /// Parse a runtime command line (without the program name) the way runc and crun read it:
    /// global flags, the command, then the command's flags and arguments in any order (runc's
    /// CLI library and crun's argp both take flags after the container id).
    pub fn parse(args: &[OsString]) -> RuntimeArgs {
        let mut out = RuntimeArgs::default();
        let mut i = 0;
        while i < args.len() {
            let arg = &args[i];
            if arg.as_bytes() == b"--" {
                i += 1;
                break;
            }
            let Some((name, attached)) = split_flag(arg) else {
                break;
            };
            i += 1;
            if is(name, GLOBAL_VALUE_FLAGS) {
                let value = match attached {
                    Some(v) => Some(v.to_os_string()),
                    None => {
                        i += 1;
                        args.get(i - 1).cloned()
                    }
                };
                match name {
                    b"log" => out.log = value.map(PathBuf::from),
                    b"log-format" => out.log_format = value.map(|v| v.to_string_lossy().into()),
                    _ => {}
                }
            } else if is(name, HELP_FLAGS) {
                out.help = true;
            }
        }
        let Some(command) = args.get(i) else {
            return out;
        };
        out.command = Some(command.to_string_lossy().into_owned());
        out.command_at = Some(i);
        let mut only_positional = false;
        let mut j = i + 1;
        while j < args.len() {
            let arg = &args[j];
            j += 1;
            if only_positional {
                out.container_id.get_or_insert_with(|| arg.clone());
                continue;
            }
            if arg.as_bytes() == b"--" {
                only_positional = true;
                continue;
            }
            let Some((name, attached)) = split_flag(arg) else {
                out.container_id.get_or_insert_with(|| arg.clone());
                continue;
            };
            let (name, value) = if is(name, COMMAND_VALUE_FLAGS) {
                let value = match attached {
                    Some(v) => Some(v.to_os_string()),
                    None => {
                        j += 1;
                        args.get(j - 1).cloned()
                    }
                };
                (name, value)
            } else if is(name, HELP_FLAGS) {
                out.help = true;
                continue;
            } else if arg.as_bytes()[1] != b'-'
                && !name.is_empty()
                && ATTACHED_SHORT_FLAGS.contains(&name[0])
                && attached.is_none()
            {
                // crun's argp: `-b/dir` is `-b` with the value attached.
                (
                    &name[..1],
                    Some(OsStr::from_bytes(&name[1..]).to_os_string()),
                )
            } else {
                continue;
            };
            match name {
                b"bundle" | b"b" => out.bundle = value.map(PathBuf::from),
                b"config" | b"f" => out.config_file = value.map(PathBuf::from),
                b"pid-file" => out.pid_file = value.map(PathBuf::from),
                _ => {}
            }
        }
        out
    }

    /// True for the commands whose spec migcage edits: `create` and `run` with a container id,
    /// and not asking for help.
    pub fn edits_spec(&self) -> bool {
        matches!(self.command.as_deref(), Some("create" | "run"))
            && self.container_id.is_some()
            && !self.help
    }

    /// The container id of a command that is not asking for help, as the lease store names it.
    pub fn container(&self) -> Option<String> {
        let id = self.container_id.as_deref().filter(|_| !self.help)?;
        Some(id.to_string_lossy().into_owned())
    }

    /// The bundle directory, resolved against `cwd` the way the runtime does (the current
    /// directory when no `--bundle` is given, or an empty one).
    pub fn bundle_dir(&self, cwd: &Path) -> PathBuf {
        match &self.bundle {
            Some(b) if !b.as_os_str().is_empty() => cwd.join(b),
            _ => cwd.to_path_buf(),
        }
    }

    /// The spec file the runtime will read: `config.json` in the bundle, or crun's `--config`.
    pub fn spec_path(&self, cwd: &Path) -> PathBuf {
        let bundle = self.bundle_dir(cwd);
        match &self.config_file {
            Some(f) if !f.as_os_str().is_empty() => bundle.join(f),
            _ => bundle.join("config.json"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    fn parse(args: &[&str]) -> RuntimeArgs {
        RuntimeArgs::parse(&os(args))
    }

    #[test]
    fn global_flags_in_every_form() {
        for args in [
            &[
                "--root",
                "/run/r",
                "--log",
                "/l.json",
                "--log-format",
                "json",
                "--systemd-cgroup",
                "create",
                "--bundle",
                "/b",
                "id",
            ][..],
            &[
                "--root=/run/r",
                "--log=/l.json",
                "--log-format=json",
                "--systemd-cgroup",
                "create",
                "--bundle",
                "/b",
                "id",
            ],
            &[
                "-root",
                "/run/r",
                "-log",
                "/l.json",
                "-log-format",
                "json",
                "-systemd-cgroup",
                "create",
                "-bundle",
                "/b",
                "id",
            ],
            &[
                "-root=/run/r",
                "-log=/l.json",
                "-log-format=json",
                "--debug",
                "create",
                "-b",
                "/b",
                "id",
            ],
            &[
                "--debug=false",
                "--criu",
                "criu",
                "--rootless",
                "auto",
                "--log",
                "/l.json",
                "--log-format",
                "json",
                "create",
                "-b=/b",
                "id",
            ],
            &[
                "--cgroup-manager",
                "cgroupfs",
                "--log-level",
                "error",
                "--log=/l.json",
                "--log-format=json",
                "create",
                "--bundle=/b",
                "id",
            ],
        ] {
            let p = parse(args);
            assert_eq!(p.command.as_deref(), Some("create"), "{args:?}");
            assert_eq!(p.log.as_deref(), Some(Path::new("/l.json")), "{args:?}");
            assert_eq!(p.log_format.as_deref(), Some("json"), "{args:?}");
            assert_eq!(p.bundle.as_deref(), Some(Path::new("/b")), "{args:?}");
            assert_eq!(
                p.container_id.as_deref(),
                Some(OsStr::new("id")),
                "{args:?}"
            );
            assert!(p.edits_spec(), "{args:?}");
        }
    }

    #[test]
    fn a_global_value_flag_does_not_become_the_command() {
        // `--root run` names a directory called "run": the command is `state`.
        let p = parse(&["--root", "run", "state", "c1"]);
        assert_eq!(p.command.as_deref(), Some("state"));
        assert!(!p.edits_spec());
        let p = parse(&["--systemd-cgroup", "run", "c1"]);
        assert_eq!(p.command.as_deref(), Some("run"));
        assert!(p.edits_spec());
    }

    #[test]
    fn bundle_forms_and_positions() {
        let cwd = Path::new("/work");
        let cases: &[(&[&str], &str)] = &[
            (&["create", "--bundle", "/b", "id"], "/b"),
            (&["create", "--bundle=/b", "id"], "/b"),
            (&["create", "-b", "/b", "id"], "/b"),
            (&["create", "-b=/b", "id"], "/b"),
            (&["create", "-b/b", "id"], "/b"),
            (&["create", "-bundle", "/b", "id"], "/b"),
            // Flags after the id (runc's CLI library reorders; crun's argp permutes).
            (&["run", "id", "--bundle", "/b"], "/b"),
            (
                &[
                    "run",
                    "-d",
                    "--pid-file",
                    "/p",
                    "--console-socket",
                    "/s",
                    "-b",
                    "/b",
                    "id",
                ],
                "/b",
            ),
            // Relative to the current directory.
            (&["create", "--bundle", "rel/b", "id"], "/work/rel/b"),
            // None, or empty: the current directory.
            (&["create", "id"], "/work"),
            (&["create", "--bundle=", "id"], "/work"),
            (&["run", "--no-pivot", "--preserve-fds", "2", "id"], "/work"),
        ];
        for (args, want) in cases {
            let p = parse(args);
            assert_eq!(p.bundle_dir(cwd), Path::new(want), "{args:?}");
            assert_eq!(
                p.spec_path(cwd),
                Path::new(want).join("config.json"),
                "{args:?}"
            );
            assert_eq!(
                p.container_id.as_deref(),
                Some(OsStr::new("id")),
                "{args:?}"
            );
            assert!(p.edits_spec(), "{args:?}");
        }
        // Value flags never become the id.
        let p = parse(&[
            "create",
            "--pid-file",
            "pidfile",
            "--preserve-fds",
            "3",
            "real-id",
        ]);
        assert_eq!(p.container_id.as_deref(), Some(OsStr::new("real-id")));
        let p = parse(&["create", "--", "-odd-id"]);
        assert_eq!(p.container_id.as_deref(), Some(OsStr::new("-odd-id")));
    }

    #[test]
    fn crun_config_file_is_relative_to_the_bundle() {
        let cwd = Path::new("/work");
        let p = parse(&["create", "-b", "/b", "--config", "other.json", "id"]);
        assert_eq!(p.spec_path(cwd), Path::new("/b/other.json"));
        let p = parse(&["create", "-f", "/abs/c.json", "id"]);
        assert_eq!(p.spec_path(cwd), Path::new("/abs/c.json"));
    }

    #[test]
    fn other_commands_pass_through() {
        for args in [
            &["state", "c1"][..],
            &["--root", "/r", "start", "c1"],
            &["delete", "--force", "c1"],
            &["kill", "c1", "KILL"],
            &["exec", "--process", "/p.json", "c1"],
            &["update", "--memory", "1g", "c1"],
            &["list"],
            &["spec", "--bundle", "/b"],
            &["features"],
            &["--version"],
            &["-v"],
            &["--help"],
            &[],
            // create/run that only print, or lack an id: the runtime says what is wrong.
            &["create", "--help"],
            &["run", "-h", "id"],
            &["create", "--bundle", "/b"],
        ] {
            let p = parse(args);
            assert!(!p.edits_spec(), "{args:?} must pass through: {p:?}");
        }
        let p = parse(&["delete", "--force", "c1"]);
        assert_eq!(p.command.as_deref(), Some("delete"));
        assert_eq!(p.container_id.as_deref(), Some(OsStr::new("c1")));
    }
}
