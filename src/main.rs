//! The `migcage` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let (config, _path) = migcage::config::Config::load(cli.config.as_deref())?;
    match cli.command {
        Command::Config => print!("{}", toml::to_string_pretty(&config)?),
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
