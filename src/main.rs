//! The `migcage` command line, from a C `main` of its own (see [`main`]).
#![cfg_attr(not(test), no_main)]

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Parser, Subcommand};
use migcage::admin::argv::{
    arguments, command_path, hook_invocation, ignore_empty_overrides, runtime_banner,
    runtime_invocation,
};
use migcage::admin::exit::{self, PREFIX};
use migcage::admin::{self, configure, doctor};
use migcage::backend::commands as cdi;
use migcage::backend::hook::{entry::run_on_stdin, Stage};
use migcage::config::Config;

/// Give a container exactly one NVIDIA MIG instance.
#[derive(Parser, Debug)]
#[command(name = "migcage", version, about)]
struct Cli {
    /// Config file (default /etc/migcage/config.toml).
    #[arg(long, global = true, env = "MIGCAGE_CONFIG")]
    config: Option<PathBuf>,
    /// Machine-readable output, errors included (docs/json.md).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum MigCommand {
    /// Take the GPUs to configuration NAME of FILE: keep what the target keeps, destroy only
    /// free instances, create the rest at explicit placements.
    Apply {
        /// A mig-parted configuration file (version: v1, mig-configs).
        #[arg(short = 'f', long)]
        file: PathBuf,
        /// The configuration's name in the file.
        #[arg(short = 'c', long)]
        config_name: String,
        /// Print the plan (destroy, create at placement); change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Exit 0 when the GPUs already have configuration NAME of FILE.
    Assert {
        #[arg(short = 'f', long)]
        file: PathBuf,
        #[arg(short = 'c', long)]
        config_name: String,
    },
    /// Change nothing: print NVML's possible placements and remaining capacity of every
    /// profile next to migcage's placement model; exit 1 where they differ.
    Capacity,
    /// Print today's layout as a mig-parted configuration file.
    Export {
        /// The name of the one configuration in the output.
        #[arg(short = 'c', long, default_value = "current")]
        config_name: String,
    },
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the configuration in effect, one key of it, or the defaults; set a key.
    Config {
        #[command(subcommand)]
        action: Option<ConfigAction>,
    },
    /// Make a simulated MIG host: device nodes, procfs, libraries, config.toml.
    Simulate {
        /// A shipped topology's name (a100-7x1g, dgx-8x7, ...) or a topology file.
        #[arg(long)]
        topology: String,
        /// Directory to write the tree in: new, empty, or made by an earlier simulate.
        #[arg(long)]
        root: PathBuf,
        /// Directory with the simulated NVML (libnvidia_ml_sim.so) and nvidia-smi.
        #[arg(long, env = "MIGCAGE_SIM_ARTIFACTS")]
        sim_artifacts: Option<PathBuf>,
    },
    /// List every GPU and MIG device, the names to ask for, the nodes each gets.
    List,
    /// Rewrite the inventory snapshot from NVML.
    ///
    /// Container starts read the snapshot instead of NVML; `list` and `cdi generate` rewrite it
    /// too.
    Refresh,
    /// The OCI hook: run by runc or crun with the container state on stdin.
    Hook {
        /// The hook point it is registered for.
        #[arg(value_enum, default_value = "prestart")]
        stage: Stage,
    },
    /// Check this host and say what it still needs.
    ///
    /// Driver, NVML, MIG mode, device nodes, cgroups, runtimes, hooks.d, CDI spec, state
    /// directory. One line per finding: OK, WARN or FAIL with the fix; exit status 1 when
    /// something failed.
    Doctor {
        /// Root of the host's own files (/etc, hooks.d, CDI spec dirs, /run/systemd); for tests.
        #[arg(long, hide = true, default_value = "/")]
        host_root: PathBuf,
    },
    /// Write the man pages or a shell completion script (packaging uses it).
    #[command(hide = true)]
    Generate {
        #[command(subcommand)]
        what: Generate,
    },
    /// The OCI runtime wrapper, run in place of runc.
    ///
    /// Takes runc's command line, writes the container's devices into the bundle's config.json
    /// on create and run, then becomes the real runtime (config key `runtime`). Every other
    /// command passes through untouched. Also runs as a link named migcage-runtime (for
    /// containerd's BinaryName and Docker's runtime path).
    #[command(disable_help_flag = true)]
    Runtime {
        /// The runtime's arguments, passed on untouched.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// Register migcage with Docker, containerd, Podman or CRI-O.
    ///
    /// Docker's daemon.json, containerd's config.toml (config versions 1 to 3), or the OCI
    /// hooks.d file of Podman and CRI-O. Idempotent; backs up the file it changes.
    Configure {
        #[arg(value_enum)]
        target: migcage::admin::configure::Target,
        /// Edit this file instead of the engine's default (podman, crio: the hook file itself).
        #[arg(long)]
        config_file: Option<PathBuf>,
        /// podman, crio: write the hook file into this directory (default
        /// /usr/share/containers/oci/hooks.d).
        #[arg(long, conflicts_with = "config_file")]
        hooks_dir: Option<PathBuf>,
        /// The executable to register. Default: docker and containerd, the migcage-runtime link
        /// beside migcage (made when missing); podman and crio, migcage itself.
        #[arg(long)]
        binary: Option<PathBuf>,
        /// docker, containerd: make migcage the default runtime.
        #[arg(long)]
        set_default: bool,
        /// Print the unified diff; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// docker, containerd: turn on the engine's own CDI (containerd >= 1.7: enable_cdi and
        /// cdi_spec_dirs; Docker >= 25: features.cdi) instead of registering a runtime, so that it
        /// injects the devices of migcage's CDI spec itself.
        #[arg(long)]
        cdi: bool,
        /// docker, containerd: the engine's version (such as 1.7.24), instead of what
        /// `containerd --version` or `dockerd --version` prints. It decides --cdi and the layout
        /// of a new containerd file (config version 3 for containerd 2.x).
        #[arg(long)]
        engine_version: Option<String>,
    },
    /// CDI specs for Podman, CRI-O and containerd 1.7+: generate, list.
    Cdi {
        #[command(subcommand)]
        command: CdiCommand,
    },
    /// Release the MIG instances a container holds.
    ///
    /// For an operator: a container that is gone without its poststop hook (the next allocation
    /// frees it anyway once its process is gone), or one that must give its instance up.
    Release {
        /// The container's id, as `migcage list` shows it.
        container: String,
    },
    /// Lay GPUs out by a mig-parted configuration file: apply, assert, export.
    ///
    /// Apply one (incrementally, never destroying an instance a container holds), check one, or
    /// export today's layout.
    Mig {
        #[command(subcommand)]
        command: MigCommand,
    },
    /// Host set-up: /dev/char links for the NVIDIA nodes.
    System {
        #[command(subcommand)]
        command: SystemCommand,
    },
    /// Show what migcage would do to a container, without doing it.
    #[command(group = clap::ArgGroup::new("input").required(true))]
    Explain {
        /// An OCI bundle (its config.json is read).
        #[arg(long, group = "input")]
        bundle: Option<PathBuf>,
        /// A config.json file.
        #[arg(long, group = "input")]
        spec: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
enum ConfigAction {
    /// Print one key's value, such as log.level.
    Get { key: String },
    /// Set one key in the configuration file, keeping its comments; refuses what migcage would.
    Set {
        key: String,
        value: String,
        /// Print the unified diff; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Print the built-in configuration: what applies where the file says nothing.
    Default,
}

/// Host set-up.
#[derive(Subcommand, Debug)]
enum SystemCommand {
    /// Make /dev/char/<major>:<minor> links for every NVIDIA device node.
    ///
    /// runc's systemd cgroup driver gives systemd DeviceAllow= only for devices it finds there,
    /// and access to the others is lost on `systemctl daemon-reload`. Never replaces an
    /// existing entry.
    CreateDevCharLinks {
        /// Print what would be made; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// The directory of the links (default: the config's host.dev_char_dir, /dev/char).
        #[arg(long, hide = true)]
        dev_char_dir: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
enum CdiCommand {
    /// Print a CDI spec of every GPU and MIG device, or write it with --output.
    Generate {
        /// A file (.json, .yaml or .yml), a directory such as /etc/cdi/ (gets
        /// VENDOR-CLASS.yaml), or - for stdout (the default).
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// Default: the file's extension; yaml for a directory or stdout.
        #[arg(long, value_enum)]
        format: Option<migcage::backend::cdi::Format>,
        /// VENDOR/CLASS. Class gpu: every GPU, MIG device and `all`; class mig: MIG devices only.
        #[arg(long, default_value = migcage::backend::cdi::DEFAULT_KIND)]
        kind: String,
        /// The migcage binary engines run as the hook (default: this one).
        #[arg(long)]
        hook_path: Option<PathBuf>,
        /// The driver capabilities (NVIDIA_DRIVER_CAPABILITIES) the devices come with.
        #[arg(long, default_value = "compute,utility")]
        driver_capabilities: String,
    },
    /// Show what the CDI specs on disk offer; warn where they no longer match the hardware.
    List {
        /// A spec file, or a directory (default: migcage's specs in /etc/cdi and /var/run/cdi).
        #[arg(long)]
        spec: Option<PathBuf>,
        /// Exit non-zero when a spec no longer matches the hardware.
        #[arg(long)]
        check: bool,
    },
}

#[derive(Subcommand, Debug)]
enum Generate {
    /// migcage.1 and one page per subcommand (migcage-list.1, ...) into DIR.
    Man { dir: PathBuf },
    /// A completion script for SHELL on stdout.
    Completions { shell: clap_complete::Shell },
}

/// The man pages and completions come from the same clap definition the binary parses with, so
/// they cannot drift from it.
fn generate(what: Generate) -> anyhow::Result<()> {
    use clap::CommandFactory;
    let mut cmd = Cli::command();
    // Building names each subcommand for its page: display name `migcage-list`, usage
    // `migcage list`.
    cmd.build();
    match what {
        Generate::Man { dir } => {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            for (name, page) in admin::manpages::pages(&cmd) {
                let path = dir.join(format!("{name}.1"));
                let out = admin::manpages::render(&name, page, env!("CARGO_PKG_VERSION"))?;
                std::fs::write(&path, out)
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
        }
        Generate::Completions { shell } => {
            clap_complete::generate(shell, &mut cmd, "migcage", &mut std::io::stdout());
        }
    }
    Ok(())
}

/// `migcage configure ...`: change (or show) the engine's file, and say what changed.
fn configure_command(opts: &configure::Options, json: bool) -> anyhow::Result<()> {
    let outcome = configure::configure(opts)?;
    if json {
        admin::commands::print_json(&admin::commands::configured(&outcome))
    } else {
        print!("{}", configure::report(&outcome));
        Ok(())
    }
}

/// `migcage system ...`: the report to print.
fn system(config: &Config, command: SystemCommand, json: bool) -> anyhow::Result<String> {
    match command {
        SystemCommand::CreateDevCharLinks {
            dry_run,
            dev_char_dir,
        } => Ok(admin::system::create_dev_char_links(
            config,
            dev_char_dir.as_deref().unwrap_or(&config.host.dev_char_dir),
            dry_run,
            json,
        )?),
    }
}

fn mig(config: &Config, command: MigCommand, json: bool) -> anyhow::Result<()> {
    match command {
        MigCommand::Apply {
            file,
            config_name,
            dry_run,
        } => admin::mig::apply(config, &file, &config_name, dry_run, json),
        MigCommand::Assert { file, config_name } => {
            admin::mig::assert(config, &file, &config_name, json)
        }
        MigCommand::Export { config_name } => admin::mig::export(config, &config_name, json),
        MigCommand::Capacity => admin::mig::capacity(config, json),
    }
}

/// `migcage config [get KEY | set KEY VALUE | default]`.
fn config_command(
    explicit: Option<&Path>,
    action: Option<ConfigAction>,
    json: bool,
) -> anyhow::Result<()> {
    use admin::config_key;
    if let Some(ConfigAction::Default) = action {
        if json {
            return admin::commands::print_json(&Config::default());
        }
        print!("{}", config_key::default_toml()?);
        return Ok(());
    }
    let (config, path) = Config::load(explicit)?;
    match action {
        None if json => admin::commands::print_json(&config)?,
        None => print!("{}", toml::to_string_pretty(&config)?),
        Some(ConfigAction::Get { key }) if json => admin::commands::print_json(
            &serde_json::json!({"key": key, "value": config_key::get_json(&config, &key)?}),
        )?,
        Some(ConfigAction::Get { key }) => println!("{}", config_key::get(&config, &key)?),
        Some(ConfigAction::Set {
            key,
            value,
            dry_run,
        }) => {
            let path = path.unwrap_or_else(|| PathBuf::from(migcage::config::DEFAULT_CONFIG_PATH));
            let set = admin::commands::config_set(&path, &key, &value, dry_run)?;
            if json {
                admin::commands::print_json(&set)?;
            } else {
                print!("{}", set.text());
            }
        }
        Some(ConfigAction::Default) => unreachable!("printed before the file is read"),
    }
    Ok(())
}

fn cdi_command(
    config: &Config,
    hook_config: &Option<PathBuf>,
    command: CdiCommand,
    json: bool,
) -> anyhow::Result<()> {
    match command {
        CdiCommand::Generate {
            output,
            format,
            kind,
            hook_path,
            driver_capabilities,
        } => cdi::generate(
            config,
            hook_config,
            // stdout unless told: the unit names /var/run/cdi itself.
            Some(output.as_deref().unwrap_or(Path::new("-"))),
            format,
            &kind,
            hook_path,
            &driver_capabilities,
        ),
        CdiCommand::List { spec, check } => cdi::list(config, hook_config, spec, check, json),
    }
}

/// The hook's `MIGCAGE_CONFIG`: the file this run read, unless it is the default one.
fn config_for_hook(config_path: Option<PathBuf>) -> Option<PathBuf> {
    config_path
        .filter(|p| p != Path::new(migcage::config::DEFAULT_CONFIG_PATH))
        .map(|p| std::path::absolute(&p).unwrap_or(p))
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let json = cli.json;
    // Simulate makes a configuration; it does not read one (which may not exist yet).
    let command = match cli.command {
        Command::Simulate {
            topology,
            root,
            sim_artifacts,
        } => {
            let opts = migcage_simulate::SimulateOptions {
                topology,
                root,
                sim_artifacts,
            };
            let summary = migcage_simulate::simulate(&opts)?;
            if json {
                return admin::commands::print_json(&admin::commands::simulated(&summary));
            }
            println!("{summary}");
            return Ok(());
        }
        // Doctor reports a broken configuration file instead of stopping at it.
        Command::Doctor { host_root } => {
            let opts = doctor::GatherOptions {
                host_root,
                ..Default::default()
            };
            let report = doctor::run(Config::load(cli.config.as_deref()), &opts);
            print!("{}", report.output(json)?);
            return Ok(report.verdict().map_err(exit::Reported)?);
        }
        Command::Generate { what } => return generate(what),
        Command::Config { action } => return config_command(cli.config.as_deref(), action, json),
        command => command,
    };
    let (config, config_path) = Config::load(cli.config.as_deref())?;
    migcage::profile::mark("config");
    let hook_config = config_for_hook(config_path);
    match command {
        Command::Simulate { .. }
        | Command::Doctor { .. }
        | Command::Generate { .. }
        | Command::Config { .. } => {
            unreachable!("handled before the configuration is loaded")
        }
        Command::List => admin::commands::list(&config, json)?,
        Command::Refresh => admin::commands::refresh(&config, json)?,
        Command::Hook { stage } => run_on_stdin(&config, stage)?,
        Command::Explain { bundle, spec } => admin::commands::explain(&config, bundle, spec, json)?,
        Command::Release { container } => admin::commands::release(&config, &container, json)?,
        Command::Mig { command } => mig(&config, command, json)?,
        Command::System { command } => print!("{}", system(&config, command, json)?),
        Command::Cdi { command } => cdi_command(&config, &hook_config, command, json)?,
        // Reached only in forms runtime_invocation() does not know.
        Command::Runtime { args } => {
            let code = migcage::backend::runtime::run(cli.config.as_deref(), &args)?;
            std::process::exit(i32::from(code));
        }
        Command::Configure {
            target,
            config_file,
            hooks_dir,
            binary,
            set_default,
            dry_run,
            cdi,
            engine_version,
        } => {
            let opts = configure::Options {
                target,
                config_file,
                hooks_dir,
                binary,
                set_default,
                dry_run,
                migcage_config: hook_config,
                cdi,
                engine_version,
            };
            configure_command(&opts, json)?
        }
    }
    Ok(())
}

/// A command line clap refused, or asked for help or the version.
fn parse_failure(e: clap::Error, args: &[OsString]) -> u8 {
    use clap::error::ErrorKind;
    migcage::sys::signal::default_sigpipe();
    let (command, subcommands) = {
        use clap::CommandFactory;
        command_path(Cli::command(), args)
    };
    let line = match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            return 0;
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand | ErrorKind::MissingSubcommand => {
            format!(
                "'{command}' needs a command ({}); see '{command} --help'",
                subcommands.join(", ")
            )
        }
        _ => exit::usage_line(&e.render().to_string(), &command),
    };
    if args.iter().any(|a| a == "--json") {
        exit::print_json_error(&line, exit::USAGE);
    }
    eprintln!("{PREFIX}{line}");
    exit::USAGE
}

/// The entry point, called by the C library (`std::env::args` reads the command line on its
/// own), without Rust's start-up, which costs each hook and runtime wrapper about 100 µs on a
/// VM (#18; `process_start` says what it keeps). As Rust runs a `fn main`: a panic is status
/// 101, and `std::process::exit` flushes stdout.
#[cfg(not(test))]
#[no_mangle]
extern "C" fn main(_argc: libc::c_int, _argv: *const *const libc::c_char) -> libc::c_int {
    migcage::sys::signal::process_start();
    let code = std::panic::catch_unwind(run_main).unwrap_or(101);
    std::process::exit(i32::from(code))
}

#[cfg_attr(test, allow(dead_code))] // under `cargo test` the harness has its own main
fn run_main() -> u8 {
    migcage::profile::start();
    ignore_empty_overrides();
    let args = arguments();
    if let Some((config, rest)) = runtime_invocation(&args) {
        migcage::sys::signal::default_sigpipe();
        runtime_banner(&rest);
        // Returns when the runtime ran as this process's child, or could not be run.
        let ran = migcage::backend::runtime::run(config.as_deref(), &rest);
        return ran.unwrap_or_else(|e| exit_status(Err(e.into()), false));
    }
    // The hook's own command line, without clap. Its stdio belongs to the runtime: it keeps
    // EPIPE as an error and finishes its work.
    if let Some((config, stage)) = hook_invocation(&args) {
        migcage::profile::mark("cli");
        let result = Config::load(config.as_deref())
            .map_err(anyhow::Error::from)
            .and_then(|(config, _)| {
                migcage::profile::mark("config");
                Ok(run_on_stdin(&config, stage)?)
            });
        migcage::profile::finish();
        return exit_status(result, false);
    }
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => return parse_failure(e, &args),
    };
    // The hook's stdio belongs to the runtime: it keeps EPIPE as an error and finishes its work.
    if !matches!(cli.command, Command::Hook { .. }) {
        migcage::sys::signal::default_sigpipe();
    }
    let json = cli.json;
    migcage::profile::mark("cli");
    let result = run(cli);
    migcage::profile::finish();
    exit_status(result, json)
}

/// The process's status for `result`; an error is its one line on stderr (and, with `json`, the
/// error object on stdout).
fn exit_status(result: anyhow::Result<()>, json: bool) -> u8 {
    match result {
        Ok(()) => 0,
        Err(e) => {
            let line = exit::one_line(&e);
            if json && !e.is::<exit::Reported>() {
                exit::print_json_error(&line, 1);
            }
            eprintln!("{PREFIX}{line}");
            1
        }
    }
}
