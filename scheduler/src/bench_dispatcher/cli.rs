//! `baton bench dispatcher`'s arguments and output. Wiring only.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use baton_common::profile::Profile;
use clap::Args;

use super::{search, Criteria, DispatcherBench, RunResult, Session, DEFAULT_MAX_BATCH, DEFAULT_PROFILE};

#[derive(Debug, Args)]
pub struct DispatcherArgs {
    /// Emulated workers; worker i serves model i mod --models alone.
    #[arg(long, default_value_t = 1000)]
    pub workers: usize,
    /// Models, each served by --workers / --models workers; requests pick one uniformly.
    #[arg(long, default_value_t = 100)]
    pub models: usize,
    /// Offered rate, req/s, all gateways together. Without it, search for the highest rate
    /// that passes (doubling from --start-rate, then bisecting) and print the best run last.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Emulated gateways, each on its own NATS connection.
    #[arg(long, default_value_t = 2)]
    pub gateways: usize,
    /// Seconds measured per run (after a warm-up of --warmup s).
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// Every request's remaining budget when its gateway sends it, ms.
    #[arg(long, default_value_t = 100.0)]
    pub budget_ms: f64,
    /// Every model's latency profile (l(b) = slope·b + intercept µs) …
    #[arg(long, default_value = DEFAULT_PROFILE)]
    pub profile: String,
    /// … up to batches of this size.
    #[arg(long, default_value_t = DEFAULT_MAX_BATCH)]
    pub max_batch: u32,
    /// Use this running nats-server instead of starting one.
    #[arg(long)]
    pub nats: Option<String>,
    /// A run passes with the dispatcher's timer lag p99 at most this, ms (the p99 is the top of
    /// a power-of-two µs bucket: 1.024, 2.048, …; it counts over 100 wake-ups or more), …
    #[arg(long, default_value_t = 2.0)]
    pub max_lag_ms: f64,
    /// … the full-batch delay p99 (from a full batch's last request leaving its gateway to the
    /// plan reaching its worker; the dispatcher's reaction when its timer need not fire) at most
    /// this, ms, …
    #[arg(long, default_value_t = 10.0)]
    pub max_delay_ms: f64,
    /// … at most this fraction of the requests rejected, and every request shipped or rejected.
    #[arg(long, default_value_t = 0.01)]
    pub max_rejected: f64,
    /// The search's first rate, req/s.
    #[arg(long, default_value_t = 50_000.0)]
    pub start_rate: f64,
    /// The search's bisection steps after the first failure.
    #[arg(long, default_value_t = 3)]
    pub bisect: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Print one JSON object per run, one per line.
    #[arg(long)]
    pub json: bool,
}

fn seconds(name: &str, s: f64) -> Result<Duration> {
    if !(s.is_finite() && s >= 0.0) {
        bail!("--{name} must be a non-negative number of seconds (got {s})");
    }
    Ok(Duration::from_secs_f64(s))
}

pub fn command(a: DispatcherArgs) -> Result<()> {
    let baton = std::env::current_exe().context("finding the baton binary, to start `baton scheduler`")?;
    let mut b = DispatcherBench::new(baton, a.workers, a.models);
    b.nats = a.nats;
    b.gateways = a.gateways;
    b.duration = seconds("duration", a.duration)?;
    b.warmup = seconds("warmup", a.warmup)?;
    b.budget = seconds("budget-ms", a.budget_ms / 1e3)?;
    b.profile = Profile::from_spec(&a.profile, a.max_batch).context("--profile")?;
    b.seed = a.seed;
    let criteria = Criteria {
        max_lag_ms: a.max_lag_ms,
        max_delay_ms: a.max_delay_ms,
        max_rejected: a.max_rejected,
    };
    let json = a.json;
    let print = |r: &RunResult| -> Result<()> {
        if json {
            println!("{}", serde_json::to_string(r).context("serialising the result")?);
        } else {
            println!("{}", r.render());
        }
        Ok(())
    };
    let mut session = Session::start(b)?;
    if let Some(rate) = a.rate {
        return print(&session.run(rate, &criteria)?);
    }
    eprintln!(
        "searching the highest rate with timer lag p99 ≤ {} ms, full-batch delay p99 ≤ {} ms, nothing unaccounted \
         and ≤ {}% rejected, from {:.0} req/s…",
        a.max_lag_ms,
        a.max_delay_ms,
        a.max_rejected * 100.0,
        a.start_rate
    );
    let mut failed = None;
    let best = search(
        &mut session,
        &criteria,
        a.start_rate,
        a.start_rate * 64.0,
        a.bisect,
        |r| {
            if json {
                eprintln!("  {}", r.render());
            }
            if let Err(e) = print(r) {
                failed.get_or_insert(e);
            }
        },
    )?;
    if let Some(e) = failed {
        return Err(e);
    }
    let Some(mut best) = best else {
        bail!("no rate passed, down to {:.0} req/s", a.start_rate / 64.0);
    };
    best.best = true;
    if !json {
        print!("best: ");
    }
    print(&best)
}
