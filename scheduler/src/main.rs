//! `baton`: the command-line entry point. Parses arguments and wires the
//! library's pieces; the logic lives in the library.

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};

use std::path::{Path, PathBuf};
use std::sync::Arc;

use baton_scheduler::bench::{self, CoreBench};
use baton_scheduler::sim::engine::{Jitter, SimOptions};
use baton_scheduler::sim::metrics::RunMetrics;
use baton_scheduler::sim::plot::{self, Series};
use baton_scheduler::sim::{self, sweep};
use baton_scheduler::workload::{Trace, Workload};
use indicatif::{ProgressBar, ProgressStyle};

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
    /// Simulate policies on a workload in virtual time with emulated GPUs.
    Sim(SimArgs),
    /// Run the scheduler: dispatcher and registry over NATS, and a gateway unless
    /// scheduler.embedded_gateway is off.
    Scheduler(baton_scheduler::runtime::cli::SchedulerArgs),
    /// Run a gateway: takes clients' requests, holds their inputs, answers them (any number).
    Gateway(baton_scheduler::runtime::cli::GatewayArgs),
    /// Show a running scheduler's workers, queues and drops.
    Status(baton_scheduler::runtime::cli::StatusArgs),
    /// A trivial NATS responder for a model (the raw request/reply baseline).
    Echo(baton_scheduler::runtime::cli::EchoArgs),
    /// Send open-loop load to a running Baton and count every reply.
    Loadgen(baton_scheduler::runtime::cli::LoadgenArgs),
    /// Plan the cheapest fleet that keeps every app within its SLO (Harpagon).
    Plan(baton_scheduler::planner::cli::PlanArgs),
}

#[derive(Debug, Args)]
struct SimArgs {
    /// Workload file in Symphony's benchmark format (e.g. workloads/resnet-8gpu-poisson.yaml).
    #[arg(long)]
    workload: PathBuf,
    /// Policy to run (repeatable): symphony, symphony-eager, eager, triton, nexus, shepherd.
    #[arg(long = "policy", default_values_t = vec!["symphony".to_string()])]
    policies: Vec<String>,
    /// GPUs (overrides the workload's).
    #[arg(long)]
    gpus: Option<usize>,
    /// Seed (overrides the workload's).
    #[arg(long)]
    seed: Option<u64>,
    /// Emulated GPUs deviate from the profile: 5% noise and 1% of batches 3× slower.
    #[arg(long)]
    jitter: bool,
    /// Relative noise of batch durations (implies jitter).
    #[arg(long)]
    jitter_cv: Option<f64>,
    /// Fraction of batches that straggle (implies jitter).
    #[arg(long)]
    stragglers: Option<f64>,
    /// Multiply every rate of the workload.
    #[arg(long, default_value_t = 1.0)]
    rate: f64,
    /// Policies plan with the profile times this factor (0.5: batches take twice what the
    /// profile says), to measure online profile correction.
    #[arg(long, default_value_t = 1.0)]
    profile_error: f64,
    /// Weight of each batch in the core's online profile correction (0: off).
    #[arg(long)]
    profile_ewma: Option<f64>,
    /// Search the highest rate multiplier with bad rate ≤ --bad-rate.
    #[arg(long)]
    max_goodput: bool,
    /// Search the fewest GPUs with bad rate ≤ --bad-rate.
    #[arg(long, conflicts_with = "max_goodput")]
    min_gpus: bool,
    /// Target bad rate for the searches.
    #[arg(long, default_value_t = 0.01)]
    bad_rate: f64,
    /// Print one JSON object per policy run, one per line.
    #[arg(long)]
    json: bool,
    /// Replay arrival times from this CSV (e.g. traces/azure-llm-2023-conv.csv) instead of
    /// the workload's arrival processes; the workload still gives models, SLOs and GPUs.
    #[arg(long)]
    trace: Option<PathBuf>,
    /// The trace's timestamp column.
    #[arg(long, default_value = "TIMESTAMP", requires = "trace")]
    trace_column: String,
    /// Compress trace time by this factor (2 = twice the rate).
    #[arg(long, requires = "trace", conflicts_with = "trace_rate")]
    time_scale: Option<f64>,
    /// Scale trace time to reach this mean rate (req/s).
    #[arg(long, requires = "trace")]
    trace_rate: Option<f64>,
    /// Sweep the rate (0.25× to 2× of the workload's) and write goodput and GPUs-needed
    /// curves per policy to this SVG file.
    #[arg(long, conflicts_with_all = ["max_goodput", "min_gpus"])]
    plot: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// The sans-IO scheduling core alone, in virtual time with emulated GPUs.
    Core(CoreArgs),
    /// The real dispatcher alone over real NATS, with emulated workers and gateways, on the
    /// wall clock.
    Dispatcher(baton_scheduler::bench_dispatcher::cli::DispatcherArgs),
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
        Command::Bench(BenchCommand::Dispatcher(a)) => baton_scheduler::bench_dispatcher::cli::command(a),
        Command::Sim(a) => sim_cmd(a),
        Command::Plan(a) => baton_scheduler::planner::cli::run(a),
        Command::Scheduler(a) => baton_scheduler::runtime::cli::scheduler(a),
        Command::Gateway(a) => baton_scheduler::runtime::cli::gateway(a),
        Command::Status(a) => baton_scheduler::runtime::cli::status(a),
        Command::Loadgen(a) => baton_scheduler::runtime::cli::loadgen(a),
        Command::Echo(a) => baton_scheduler::runtime::cli::echo(a),
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

fn sim_cmd(a: SimArgs) -> Result<()> {
    let w = Workload::load(&a.workload).with_context(|| format!("reading workload {}", a.workload.display()))?;
    let name = a
        .workload
        .file_stem()
        .map_or_else(|| "workload".to_string(), |s| s.to_string_lossy().into_owned());
    for p in &a.policies {
        if !sim::POLICIES.contains(&p.as_str()) {
            bail!("unknown policy `{p}`; known policies: {}", sim::POLICIES.join(", "));
        }
    }
    if !(a.bad_rate > 0.0 && a.bad_rate < 1.0) {
        bail!("--bad-rate must be a fraction between 0 and 1 (got {})", a.bad_rate);
    }
    if a.rate <= 0.0 {
        bail!("--rate must be positive (got {})", a.rate);
    }
    let mut jitter = if a.jitter { Jitter::PRESET } else { Jitter::default() };
    if let Some(cv) = a.jitter_cv {
        if !(0.0..=1.0).contains(&cv) {
            bail!("--jitter-cv must be between 0 and 1 (got {cv})");
        }
        jitter.cv = cv;
    }
    if let Some(p) = a.stragglers {
        if !(0.0..=1.0).contains(&p) {
            bail!("--stragglers must be a fraction between 0 and 1 (got {p})");
        }
        jitter.straggler_prob = p;
        jitter.straggler_factor = Jitter::PRESET.straggler_factor;
    }
    let trace = match &a.trace {
        None => None,
        Some(path) => {
            let t = Trace::load_csv(path, &a.trace_column)?;
            let t = match (a.time_scale, a.trace_rate) {
                (Some(x), _) if x > 0.0 => t.scaled_by(1.0 / x),
                (Some(x), _) => bail!("--time-scale must be positive (got {x})"),
                (None, Some(r)) if r > 0.0 => t.scaled_to_rate(r),
                (None, Some(r)) => bail!("--trace-rate must be positive (got {r})"),
                (None, None) => t,
            };
            if !a.json {
                eprintln!(
                    "replaying {} arrivals from {} at a mean {:.0} req/s over {:.1} s",
                    t.times_ns.len(),
                    path.display(),
                    t.mean_rate(),
                    t.times_ns.last().copied().unwrap_or(0) as f64 * 1e-9
                );
            }
            Some(Arc::new(t))
        }
    };
    if !(a.profile_error.is_finite() && a.profile_error > 0.0) {
        bail!("--profile-error must be a positive factor (got {})", a.profile_error);
    }
    let mut config = SimOptions::default().config;
    if let Some(e) = a.profile_ewma {
        if !(0.0..=1.0).contains(&e) {
            bail!("--profile-ewma must be between 0 (off) and 1 (got {e})");
        }
        config.profile_ewma = e;
    }
    let opts = SimOptions {
        gpus: a.gpus,
        seed: a.seed,
        jitter,
        rate_multiplier: a.rate,
        profile_error: a.profile_error,
        config,
        trace,
    };
    let gpus = a.gpus.unwrap_or(w.gpus);
    if let Some(path) = &a.plot {
        return plot_cmd(&w, &name, &a.policies, &opts, a.bad_rate, gpus, path, a.json);
    }
    for p in &a.policies {
        let quiet = a.json;
        let progress = |r: &RunMetrics| {
            if !quiet {
                eprintln!(
                    "  {} ×{:.3} on {} GPUs: goodput {:.0}/s, bad rate {:.4}",
                    r.policy, r.rate_multiplier, r.gpus, r.goodput_rps, r.bad_rate
                );
            }
        };
        let r = if a.max_goodput {
            Some(sweep::max_goodput(&w, &name, p, &opts, a.bad_rate, progress)?)
        } else if a.min_gpus {
            sweep::min_gpus(&w, &name, p, &opts, a.bad_rate, gpus.max(1) * 8, progress)?
        } else {
            Some(sim::run_named(&w, &name, p, &opts)?)
        };
        let Some(r) = r else {
            if a.json {
                println!(
                    "{}",
                    serde_json::json!({"policy": p, "workload": name, "min_gpus": null})
                );
            } else {
                println!(
                    "{p}: bad rate stays above {} even with {} GPUs",
                    a.bad_rate,
                    gpus.max(1) * 8
                );
            }
            continue;
        };
        if a.json {
            println!("{}", serde_json::to_string(&r)?);
        } else {
            print_run(&r);
        }
    }
    Ok(())
}

fn print_run(r: &RunMetrics) {
    println!(
        "{:<15} {} GPUs ×{:.3}: {} requests, good {} ({:.0}/s), late {}, dropped {} {:?}, bad rate {:.4}",
        r.policy,
        r.gpus,
        r.rate_multiplier,
        r.requests,
        r.good,
        r.goodput_rps,
        r.late,
        r.dropped,
        r.dropped_by_reason,
        r.bad_rate
    );
    println!(
        "{:<15} batch mean {:.1} p50 {} p99 {}; latency p50 {:.1} p99 {:.1} p99.9 {:.1} ms; busy {:.3}, GPUs used {}, {:.1} GPU·s; {:.1} s simulated in {:.2} s",
        "",
        r.mean_batch,
        r.p50_batch,
        r.p99_batch,
        r.p50_latency_ms,
        r.p99_latency_ms,
        r.p999_latency_ms,
        r.gpu_busy_fraction,
        r.gpus_used,
        r.gpu_seconds,
        r.sim_seconds,
        r.wall_seconds
    );
}

/// Rate multipliers the plot sweeps.
const PLOT_RATES: [f64; 8] = [0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0];

#[allow(clippy::too_many_arguments)]
fn plot_cmd(
    w: &Workload,
    name: &str,
    policies: &[String],
    opts: &SimOptions,
    bad_rate: f64,
    gpus: usize,
    path: &Path,
    json: bool,
) -> Result<()> {
    let bar = if json {
        ProgressBar::hidden()
    } else {
        let b = ProgressBar::new((policies.len() * PLOT_RATES.len()) as u64);
        b.set_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} {msg} [{elapsed}]")
                .expect("static template")
                .progress_chars("=> "),
        );
        b
    };
    let limit = gpus.max(1) * 8;
    let mut series = Vec::new();
    for p in policies {
        let mut s = Series {
            policy: p.clone(),
            ..Series::default()
        };
        for k in PLOT_RATES {
            bar.set_message(format!("{p} ×{k}"));
            let o = SimOptions {
                rate_multiplier: opts.rate_multiplier * k,
                ..opts.clone()
            };
            let r = sim::run_named(w, name, p, &o)?;
            let offered = r.offered_rps;
            s.goodput.push((offered, r.goodput_rps));
            let m = sweep::min_gpus(w, name, p, &o, bad_rate, limit, |_| {})?;
            if let Some(m) = &m {
                s.gpus.push((offered, m.gpus as f64));
            }
            if json {
                println!(
                    "{}",
                    serde_json::json!({"policy": p, "rate_multiplier": o.rate_multiplier, "offered_rps": offered,
                        "goodput_rps": r.goodput_rps, "bad_rate": r.bad_rate, "min_gpus": m.as_ref().map(|m| m.gpus)})
                );
            }
            bar.inc(1);
        }
        series.push(s);
    }
    bar.finish_and_clear();
    let title = format!("{name}: {gpus} GPUs for goodput; GPUs needed at bad rate ≤ {bad_rate}");
    plot::write_svg(path, &title, &series).map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
    if !json {
        println!("wrote {}", path.display());
    }
    Ok(())
}
