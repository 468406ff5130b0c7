//! The `migcage` command line.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use migcage::config::Config;
use migcage::hook::Stage;

/// Give a container exactly one NVIDIA MIG instance.
#[derive(Parser, Debug)]
#[command(name = "migcage", version, about)]
struct Cli {
    /// Configuration file (default /etc/migcage/config.toml).
    #[arg(long, global = true, env = "MIGCAGE_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the configuration in effect.
    Config,
    /// Materialize a simulated MIG driver tree (device nodes, procfs, libraries, config.toml).
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
    /// List every GPU and MIG device, the names a request may use, and the nodes it gets.
    List {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// The OCI hook: run by runc or crun with the container state on stdin.
    Hook {
        /// The hook point it is registered for.
        #[arg(value_enum, default_value = "prestart")]
        stage: Stage,
    },
    /// Show what migcage would do to a container, without doing it.
    Explain {
        /// An OCI bundle (its config.json is read).
        #[arg(long, conflicts_with = "spec", required_unless_present = "spec")]
        bundle: Option<PathBuf>,
        /// A config.json file.
        #[arg(long)]
        spec: Option<PathBuf>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

fn explain(
    config: &Config,
    bundle: Option<PathBuf>,
    spec_file: Option<PathBuf>,
    json: bool,
) -> anyhow::Result<()> {
    use migcage::hook::state;
    let (bundle, spec) = match (bundle, spec_file) {
        (Some(b), _) => {
            let spec = state::read_config(&b)?;
            (b, spec)
        }
        (None, Some(f)) => {
            let text =
                std::fs::read(&f).with_context(|| format!("cannot read spec {}", f.display()))?;
            let spec: serde_json::Value = serde_json::from_slice(&text)
                .with_context(|| format!("spec {} is not valid JSON", f.display()))?;
            (f.parent().map(Path::to_path_buf).unwrap_or_default(), spec)
        }
        (None, None) => anyhow::bail!("give --bundle DIR or --spec FILE"),
    };
    let (request, plan) = migcage::pipeline::plan_for_spec(config, &spec)?;
    let container = plan
        .as_ref()
        .and_then(|p| migcage::hook::container_work(config, &bundle, &spec, p).ok());
    let e = migcage::explain::Explanation {
        request,
        plan,
        container,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&e)?);
    } else {
        print!("{}", migcage::explain::render(&e));
    }
    Ok(())
}

fn run(cli: Cli) -> anyhow::Result<()> {
    // Simulate makes a configuration; it does not read one (which may not exist yet).
    let command = match cli.command {
        Command::Simulate {
            topology,
            root,
            sim_artifacts,
        } => {
            let opts = migcage::simulate::SimulateOptions {
                topology,
                root,
                sim_artifacts,
            };
            println!("{}", migcage::simulate::simulate(&opts)?);
            return Ok(());
        }
        command => command,
    };
    let (config, _path) = Config::load(cli.config.as_deref())?;
    match command {
        Command::Config => print!("{}", toml::to_string_pretty(&config)?),
        Command::Simulate { .. } => {
            unreachable!("simulate runs before the configuration is loaded")
        }
        Command::List { json } => {
            let inv = migcage::inventory::discover(&config)?;
            let listing = migcage::list::listing(&inv, &config.dev_root);
            if json {
                println!("{}", serde_json::to_string_pretty(&listing)?);
            } else {
                print!("{}", migcage::list::render_table(&listing));
            }
        }
        Command::Hook { stage } => {
            migcage::logging::init(&config.log);
            match migcage::hook::run(&config, stage, std::io::stdin().lock()) {
                Ok(outcome) => {
                    if outcome.request.as_ref().is_some_and(|r| !r.is_noop()) {
                        tracing::info!(outcome = %serde_json::to_string(&outcome).unwrap_or_default(), container = %outcome.container, duration_us = outcome.duration_us as u64, "hook done");
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "hook failed");
                    return Err(e.into());
                }
            }
        }
        Command::Explain { bundle, spec, json } => explain(&config, bundle, spec, json)?,
    }
    Ok(())
}

/// `docker run --gpus` runs an executable named `nvidia-container-runtime-hook` with the argument
/// `prestart`: under that name, migcage is its hook.
fn arguments() -> Vec<OsString> {
    let mut args: Vec<OsString> = std::env::args_os().collect();
    let invoked_as = args
        .first()
        .and_then(|a| Path::new(a).file_name().map(|n| n.to_os_string()));
    if invoked_as.as_deref() == Some(std::ffi::OsStr::new("nvidia-container-runtime-hook")) {
        let rest: Vec<OsString> = args.drain(1..).collect();
        let mut out = vec![OsString::from("migcage")];
        // Its flags (-config=..., -debug) belong to NVIDIA's hook: only the stage carries over.
        out.push("hook".into());
        if let Some(stage) = rest.iter().find(|a| !a.to_string_lossy().starts_with('-')) {
            out.push(stage.clone());
        }
        return out;
    }
    args
}

fn main() -> ExitCode {
    let cli = Cli::parse_from(arguments());
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("migcage: {e:#}");
            ExitCode::FAILURE
        }
    }
}
