//! The `migcage` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use migcage::config::Config;

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
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("migcage: {e:#}");
            ExitCode::FAILURE
        }
    }
}
