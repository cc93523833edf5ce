//! `baton-worker`: parses arguments and wires the worker's pieces.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(name = "baton-worker", version, about = "Baton worker: runs batches on one device")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum BackendKind {
    /// Sleeps L(b) from a profile and returns a checksum per input.
    Emulated,
    /// Real inference with libtorch.
    Torch,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Join a Baton deployment and serve batches.
    Run {
        /// NATS server URL.
        #[arg(long, default_value = "nats://127.0.0.1:4222")]
        nats: String,
        /// This worker's id (unique in the deployment).
        #[arg(long)]
        id: String,
        /// Models to serve (comma-separated or repeated).
        #[arg(long, value_delimiter = ',', required = true)]
        models: Vec<String>,
        #[arg(long, value_enum, default_value = "emulated")]
        backend: BackendKind,
        /// Latency profile (TOML or JSON) for the emulated backend.
        #[arg(long)]
        profile: Option<PathBuf>,
        /// Hardware class reported to the scheduler.
        #[arg(long, default_value = "cpu")]
        hardware: String,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Run {
            id,
            models,
            backend,
            profile,
            ..
        } => {
            baton_common::subjects::validate_token(&id)
                .map_err(|e| anyhow::anyhow!("--id `{id}` cannot be used in a NATS subject: {e}"))?;
            if matches!(backend, BackendKind::Emulated) && profile.is_none() {
                bail!("--backend emulated needs --profile FILE (a latency profile, TOML or JSON)");
            }
            bail!(
                "worker `{id}` for models {models:?}: the NATS worker runtime is not built yet \
                 (tracked as issue 5); only argument checking and the Backend trait exist"
            )
        }
    }
}
