//! `baton`: the command-line entry point. Parses arguments and wires the
//! library's pieces; the logic lives in the library.

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};

use baton_scheduler::bench::{self, CoreBench};

#[derive(Debug, Parser)]
#[command(name = "baton", version, about = "Baton: deferred-batching DNN serving scheduler")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Benchmarks of Baton's components.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Print every setting with its default, as a commented TOML file.
    Config,
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// The sans-IO scheduling core alone, in virtual time with emulated GPUs.
    Core(CoreArgs),
}

#[derive(Debug, Args)]
struct CoreArgs {
    /// GPUs (workers); every GPU serves every model.
    #[arg(long, default_value_t = 1000)]
    gpus: usize,
    /// Models, each l(b) = 0.2·b + 1.0 ms with a 50 ms SLO.
    #[arg(long, default_value_t = 100)]
    models: usize,
    /// Total arrival rate (req/s); by default calibrated to --busy.
    #[arg(long)]
    rate: Option<f64>,
    /// Target GPU busy fraction when calibrating the rate.
    #[arg(long, default_value_t = 0.8)]
    busy: f64,
    /// Virtual seconds per measured run.
    #[arg(long, default_value_t = 2.0)]
    duration: f64,
    /// Measured runs (the best and the median are reported).
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print one JSON object per run.
    #[arg(long)]
    json: bool,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Bench(BenchCommand::Core(a)) => bench_core(a),
        Command::Config => {
            print!("{}", baton_common::settings::Settings::documented_defaults());
            Ok(())
        }
    }
}

fn bench_core(a: CoreArgs) -> Result<()> {
    if a.gpus == 0 || a.models == 0 {
        bail!("--gpus and --models must be at least 1");
    }
    if !(a.busy > 0.0 && a.busy < 1.0) {
        bail!("--busy must be a fraction between 0 and 1 (got {})", a.busy);
    }
    let mut b = CoreBench::light(a.gpus, a.models, 0.0, a.duration);
    b.seed = a.seed;
    b.rate = match a.rate {
        Some(r) if r > 0.0 => r,
        Some(r) => bail!("--rate must be positive (got {r})"),
        None => {
            eprintln!("calibrating the rate for {:.0}% busy GPUs…", a.busy * 100.0);
            bench::calibrate(&b, a.busy)
        }
    };
    let mut results = Vec::new();
    for i in 0..a.repeat.max(1) {
        b.seed = a.seed + i as u64;
        let r = bench::run(&b);
        if a.json {
            println!("{}", serde_json::to_string(&r).context("serialising the result")?);
        } else {
            println!(
                "run {}: {} GPUs × {} models, {:.0} req/s offered, {} requests in {:.2} s wall: {:.2} M req/s, {:.0} ns/req; busy {:.2}, mean batch {:.1}, rejected {}",
                i + 1,
                r.gpus,
                r.models,
                r.offered_rps,
                r.requests,
                r.wall_seconds,
                r.requests_per_wall_second / 1e6,
                r.ns_per_request,
                r.gpu_busy_fraction,
                r.mean_batch,
                r.rejected
            );
        }
        results.push(r);
    }
    Ok(())
}
