//! `migcage configure docker|podman|containerd|crio`: register migcage with a container engine.
//!
//! Each edit is idempotent (a second run changes nothing and says so), keeps the rest of the file
//! (JSON entries keep their order and text; TOML keeps its comments and layout, through
//! `toml_edit`), backs up the file it changes (`FILE.migcage-backup-<UTC time>`), replaces it
//! atomically, and with `--dry-run` only prints the unified diff.
//!
//! - **docker**: `/etc/docker/daemon.json` gets `runtimes.migcage = {"path": ".../migcage-runtime"}`.
//!   A runtime entry cannot pass a subcommand: Docker turns `runtimeArgs` into a generated
//!   `#!/bin/sh` script running `path args $@` (unquoted, so arguments are split again), so the
//!   entry names the `migcage-runtime` link instead, under which migcage is `migcage runtime`.
//! - **containerd**: the runc shim (`io.containerd.runc.v2`) with `options.BinaryName` = the same
//!   link, under `plugins."io.containerd.grpc.v1.cri".containerd.runtimes.migcage` (config version
//!   2), `plugins."io.containerd.cri.v1.runtime"...` (version 3) or `plugins.cri...` (version 1).
//!   A new entry starts from the `runc` entry's settings (such as `SystemdCgroup`), and passes the
//!   annotations migcage reads (`container_annotations`: `cdi.k8s.io/*`, `migcage.io/*`;
//!   `pod_annotations`: `migcage.io/*`). containerd reads a `runtimes` table as the whole set of
//!   runtimes, so when `runc` is the default (or no default is set) and the file has no `runc`
//!   entry, one is written: an empty or missing file would otherwise leave the CRI plugin without
//!   its default runtime, and it refuses to load.
//! - **`--cdi`** (docker, containerd): instead of a runtime entry, the engine's own CDI support is
//!   turned on, so that it injects the devices of migcage's CDI spec itself: containerd >= 1.7
//!   gets `enable_cdi = true` and `cdi_spec_dirs` in the CRI plugin's table, Docker >= 25
//!   `features.cdi = true`. Older versions are refused with one line; the version is what the
//!   engine's binary prints (`--engine-version` states it instead).
//! - An empty or missing containerd file becomes config version 3 for containerd 2.x, version 2
//!   otherwise (and when no containerd can be asked: 2.x reads version 2 too).
//! - **podman** and **crio**: the OCI hooks.d file (as shipped in the repository's `hooks/`)
//!   running `migcage hook prestart`, in `/usr/share/containers/oci/hooks.d`.

mod cdi;
mod containerd;
mod diff;
mod docker;
mod hooks;
mod report;
mod write;

use std::path::{Path, PathBuf};

pub use cdi::{cdi_version, containerd_cdi_edit, engine_version, CDI_SPEC_DIRS};
pub use containerd::{containerd_edit, CONTAINER_ANNOTATIONS, POD_ANNOTATIONS, RUNC};
pub use diff::unified_diff;
pub use docker::{docker_cdi_edit, docker_edit};
pub use hooks::{hook_edit, hook_json};
pub use report::report;
pub use write::backup_stamp;

use crate::backend::runtime::RUNTIME_ARGV0;
use crate::core::engine::{self, Engine};

/// The engine to configure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    Docker,
    Podman,
    Containerd,
    Crio,
}

/// The hooks.d file name (Podman and CRI-O read every `*.json` of their hooks directories).
pub const HOOK_FILE: &str = "oci-migcage-hook.json";
/// Where Podman and CRI-O look for hooks by default.
pub const DEFAULT_HOOKS_DIR: &str = "/usr/share/containers/oci/hooks.d";
pub const DEFAULT_DOCKER_CONFIG: &str = "/etc/docker/daemon.json";
pub const DEFAULT_CONTAINERD_CONFIG: &str = "/etc/containerd/config.toml";
/// The runtime's name in Docker and containerd (`docker run --runtime=migcage`, a Kubernetes
/// RuntimeClass handler).
pub const RUNTIME_NAME: &str = "migcage";

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Target::Docker => "docker",
            Target::Podman => "podman",
            Target::Containerd => "containerd",
            Target::Crio => "crio",
        }
    }

    /// The engine whose version decides what `configure` writes (CDI, config layout).
    fn engine(self) -> Option<Engine> {
        match self {
            Target::Docker => Some(Engine::Docker),
            Target::Containerd => Some(Engine::Containerd),
            Target::Podman | Target::Crio => None,
        }
    }

    fn uses_hook(self) -> bool {
        matches!(self, Target::Podman | Target::Crio)
    }

    /// The file edited when `--config-file` is not given.
    pub fn default_file(self, hooks_dir: Option<&Path>) -> PathBuf {
        match self {
            Target::Docker => DEFAULT_DOCKER_CONFIG.into(),
            Target::Containerd => DEFAULT_CONTAINERD_CONFIG.into(),
            Target::Podman | Target::Crio => hooks_dir
                .unwrap_or(Path::new(DEFAULT_HOOKS_DIR))
                .join(HOOK_FILE),
        }
    }
}

/// What to configure, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub target: Target,
    /// The file to edit instead of the engine's default one (for podman and crio: the hook file).
    pub config_file: Option<PathBuf>,
    /// podman and crio: the hooks directory to write the hook file in.
    pub hooks_dir: Option<PathBuf>,
    /// docker and containerd: the `migcage-runtime` executable to register; podman and crio: the
    /// migcage executable the hook runs. Default: beside the running migcage.
    pub binary: Option<PathBuf>,
    /// docker and containerd: make migcage the default runtime.
    pub set_default: bool,
    /// Print the diff; change nothing.
    pub dry_run: bool,
    /// migcage's own configuration file when it is not the default one: the hook gets it in its
    /// environment.
    pub migcage_config: Option<PathBuf>,
    /// docker and containerd: turn on the engine's CDI instead of registering a runtime.
    pub cdi: bool,
    /// docker and containerd: the engine's version, instead of what its binary prints.
    pub engine_version: Option<String>,
}

/// Why configuring failed. One line each; nothing was changed unless it says so.
#[derive(Debug, thiserror::Error)]
pub enum ConfigureError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}; fix the file (or point --config-file at another one) and run configure again")]
    Invalid { path: PathBuf, message: String },
    #[error("cannot back up {path} to {backup}: {source}; nothing was changed")]
    Backup {
        path: PathBuf,
        backup: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Usage(String),
}

/// What [`configure`] did (or, with `dry_run`, would do).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub target: Target,
    pub file: PathBuf,
    /// The executable registered (the runtime link, or migcage for a hook); none with `--cdi`.
    pub binary: Option<PathBuf>,
    pub changed: bool,
    pub diff: String,
    pub backup: Option<PathBuf>,
    /// The `migcage-runtime` link made beside migcage (or to be made, in a dry run).
    pub link: Option<PathBuf>,
    pub dry_run: bool,
}

fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

/// The executable to register, and the `migcage-runtime` link to make for it (if any).
fn binary_for(opts: &Options) -> Result<(PathBuf, Option<PathBuf>), ConfigureError> {
    if let Some(b) = &opts.binary {
        if !b.is_absolute() {
            return Err(ConfigureError::Usage(format!(
                "--binary {}: give an absolute path (the engine runs it from its own directory)",
                b.display()
            )));
        }
        if !b.exists() {
            return Err(ConfigureError::Usage(format!(
                "--binary {} does not exist; install migcage there (for docker and containerd: a link named {RUNTIME_ARGV0} to migcage)",
                b.display()
            )));
        }
        return Ok((b.clone(), None));
    }
    let me = std::env::current_exe().map_err(|e| {
        ConfigureError::Usage(format!(
            "cannot find migcage's own executable ({e}); pass --binary"
        ))
    })?;
    if opts.target.uses_hook() {
        return Ok((me, None));
    }
    let link = me.with_file_name(RUNTIME_ARGV0);
    match std::fs::symlink_metadata(&link) {
        Ok(_) if same_file(&link, &me) => Ok((link, None)),
        Ok(_) => Err(ConfigureError::Usage(format!(
            "{} exists and is not migcage; remove it, or pass --binary with migcage's runtime link",
            link.display()
        ))),
        Err(_) => Ok((link.clone(), Some(link))),
    }
}

/// The flags that do not go together, or not with this target; the engine version stated.
fn check_usage(opts: &Options) -> Result<Option<engine::Version>, ConfigureError> {
    let name = opts.target.name();
    let usage = |m: String| Err(ConfigureError::Usage(m));
    if opts.hooks_dir.is_some() && !opts.target.uses_hook() {
        return usage(format!(
            "--hooks-dir is for podman and crio; {name} takes --config-file"
        ));
    }
    if opts.set_default && opts.target.uses_hook() {
        return usage(format!(
            "--set-default is for docker and containerd; {name} runs migcage as a hook for every container"
        ));
    }
    let Some(engine) = opts.target.engine() else {
        if opts.cdi {
            return usage(format!("--cdi is for docker and containerd; {name} reads CDI specs from /etc/cdi and /var/run/cdi by itself: run migcage cdi generate --output /etc/cdi/"));
        }
        if opts.engine_version.is_some() {
            return usage(format!(
                "--engine-version is for docker and containerd; {name} takes none"
            ));
        }
        return Ok(None);
    };
    if opts.cdi && opts.set_default {
        return usage(format!("--cdi turns on {name}'s own CDI and registers no runtime, so --set-default has none to make the default: drop one of them"));
    }
    if opts.cdi && opts.binary.is_some() {
        return usage(format!(
            "--cdi turns on {name}'s own CDI and registers no executable: drop --binary"
        ));
    }
    engine_version(engine, opts.engine_version.as_deref()).map_err(ConfigureError::Usage)
}

/// The config version a blank containerd file becomes: that of the containerd stated, or found
/// on the PATH; 2 when none can be asked (containerd 2.x reads version 2 too).
fn fresh_containerd_version(stated: Option<engine::Version>) -> i64 {
    stated
        .or_else(|| engine_version(Engine::Containerd, None).ok().flatten())
        .map_or(2, engine::containerd_config_version)
}

/// Register migcage with `opts.target`.
pub fn configure(opts: &Options) -> Result<Outcome, ConfigureError> {
    let stated = check_usage(opts)?;
    let cdi = match opts.target.engine() {
        Some(engine) if opts.cdi => Some(
            cdi_version(engine, opts.engine_version.as_deref()).map_err(ConfigureError::Usage)?,
        ),
        _ => None,
    };
    let file = opts
        .config_file
        .clone()
        .unwrap_or_else(|| opts.target.default_file(opts.hooks_dir.as_deref()));
    let (binary, link) = match cdi {
        Some(_) => (None, None),
        None => binary_for(opts).map(|(b, l)| (Some(b), l))?,
    };
    let old = match std::fs::read_to_string(&file) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(source) => return Err(ConfigureError::Read { path: file, source }),
    };
    let old_text = old.clone().unwrap_or_default();
    let fresh = || match old_text.trim() {
        "" => fresh_containerd_version(cdi.or(stated)),
        _ => 2,
    };
    let new_text = match (opts.target, &binary) {
        (Target::Docker, None) => docker_cdi_edit(&old_text),
        (Target::Containerd, None) => containerd_cdi_edit(&old_text, fresh()),
        (Target::Docker, Some(b)) => docker_edit(&old_text, b, opts.set_default),
        (Target::Containerd, Some(b)) => containerd_edit(&old_text, b, opts.set_default, fresh()),
        (Target::Podman | Target::Crio, b) => Ok(hook_edit(
            &old_text,
            b.as_deref().expect("a hook names migcage"),
            opts.migcage_config.as_deref(),
        )),
    }
    .map_err(|message| ConfigureError::Invalid {
        path: file.clone(),
        message,
    })?;
    let changed = old.as_deref() != Some(new_text.as_str());
    let label = file.display().to_string();
    let diff = if changed {
        unified_diff(
            &old_text,
            &new_text,
            if old.is_some() { &label } else { "/dev/null" },
            &label,
        )
    } else {
        String::new()
    };
    let mut out = Outcome {
        target: opts.target,
        file: file.clone(),
        binary,
        changed,
        diff,
        backup: None,
        link: link.clone(),
        dry_run: opts.dry_run,
    };
    if opts.dry_run {
        return Ok(out);
    }
    write::apply(&mut out, old.is_some(), &new_text)?;
    Ok(out)
}
