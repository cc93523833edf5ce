//! The runtime's subcommands: `baton scheduler`, `baton status`,
//! `baton loadgen`. Argument parsing and wiring only.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use baton_common::client::{Client, ClientOptions};
use baton_common::settings::{NatsSettings, Settings};
use baton_common::subjects;
use baton_common::wire::DType;
use clap::Args;

use super::status::Status;
use crate::loadgen::{self, Payload, Schedule};
use crate::workload::{Gap, Trace, Workload};

#[derive(Debug, Args)]
pub struct SchedulerArgs {
    /// Settings file (TOML); every key can also come from BATON_SECTION__KEY.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// NATS URL (overrides nats.url).
    #[arg(long)]
    pub nats: Option<String>,
}

#[derive(Debug, Args)]
pub struct GatewayArgs {
    /// Settings file (TOML): [nats] and [gateway] matter here. Every key can also come from
    /// BATON_SECTION__KEY.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// NATS URL (overrides nats.url).
    #[arg(long)]
    pub nats: Option<String>,
    /// This gateway's id, unique in the deployment and one NATS subject token (default
    /// `<host>-<pid>`).
    #[arg(long)]
    pub id: Option<String>,
}

/// How the client commands (`status`, `loadgen`, `echo`) reach NATS: the same `[nats]`
/// settings as the scheduler (URL, credentials, TLS), from a file and `BATON_NATS__*`.
#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// Settings file (TOML); only its [nats] section matters here. Every key can also come
    /// from BATON_NATS__KEY (e.g. BATON_NATS__USER, BATON_NATS__PASSWORD).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// NATS URL (overrides nats.url; default nats://127.0.0.1:4222).
    #[arg(long)]
    pub nats: Option<String>,
}

impl ConnectArgs {
    /// The `[nats]` settings: defaults, the file, the environment, then `--nats`.
    pub fn settings(&self) -> Result<NatsSettings> {
        let mut nats = Settings::load(self.config.as_deref())?.nats;
        if let Some(url) = &self.nats {
            nats.url = url.clone();
        }
        Ok(nats)
    }

    /// Connects as a client named `name` (waits up to 10 s for the server; a rejected
    /// credential fails at once).
    async fn connect(&self, name: &str) -> Result<Client> {
        let nats = self.settings()?;
        Ok(ClientOptions::new()
            .nats_settings(&nats)
            .name(name)
            .connect(&nats.url)
            .await?)
    }
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Print the raw JSON snapshot.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct LoadgenArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Arrivals from a workload file (all phases), e.g. workloads/resnet-8gpu-poisson.yaml.
    #[arg(long, conflicts_with_all = ["rate", "trace", "streams"])]
    pub workload: Option<PathBuf>,
    /// Model to load (with --rate, --trace or --streams).
    #[arg(long)]
    pub model: Option<String>,
    /// Open-loop rate, req/s.
    #[arg(long, requires = "model")]
    pub rate: Option<f64>,
    /// Seconds of load (with --rate or --streams).
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Gaps between requests with --rate: exp | const | gamma:<shape>.
    #[arg(long, default_value = "exp")]
    pub gap: Gap,
    /// Camera streams (with --fps).
    #[arg(long, requires = "model")]
    pub streams: Option<usize>,
    /// Frames per second per camera stream.
    #[arg(long, default_value_t = 30.0)]
    pub fps: f64,
    /// Replay arrival times from a CSV trace.
    #[arg(long, requires = "model")]
    pub trace: Option<PathBuf>,
    /// Compress trace time by this factor (2 = twice the rate).
    #[arg(long, default_value_t = 1.0)]
    pub time_scale: f64,
    /// Each request carries one u8 tensor of this many bytes.
    #[arg(long, conflicts_with = "shape")]
    pub payload_bytes: Option<u64>,
    /// Input shape, e.g. 3,32,32 (with --dtype).
    #[arg(long, value_delimiter = ',')]
    pub shape: Option<Vec<u64>>,
    /// Input dtype with --shape.
    #[arg(long, default_value = "f32")]
    pub dtype: String,
    /// SLO per request, ms.
    #[arg(long, default_value_t = 100.0)]
    pub slo_ms: f64,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Publish every request with a reply subject under one inbox and count replies on one
    /// subscription, instead of one NATS request per task: several times faster, so the way to
    /// measure a ceiling, and it counts duplicate replies; a request nobody serves is then a
    /// timeout rather than an error.
    #[arg(long)]
    pub one_inbox: bool,
    /// Print one JSON object with the counts.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct EchoArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Answer requests for this model.
    #[arg(long)]
    pub model: String,
}

/// A trivial responder on `baton.infer.<model>`: decodes each request and
/// answers `ok` at once, with no scheduling. The loadgen against it
/// measures the NATS request/reply ceiling Baton is compared with.
pub fn echo(a: EchoArgs) -> Result<()> {
    use baton_common::wire::{self, InferReply, InferRequest, Timings};
    use futures::StreamExt;
    runtime()?.block_on(async {
        let client = a.connect.connect("baton-echo").await?;
        let nats = client.nats().clone();
        let mut sub = nats
            .queue_subscribe(subjects::infer(&a.model), subjects::GATEWAY_QUEUE_GROUP.to_string())
            .await?;
        eprintln!("answering {}", subjects::infer(&a.model));
        while let Some(m) = sub.next().await {
            let Some(reply) = m.reply else { continue };
            let id = wire::decode::<InferRequest>(&m.payload)
                .ok()
                .and_then(|r| r.id)
                .unwrap_or_default();
            let body = wire::encode(&InferReply::ok(id, vec![], Timings::default()));
            nats.publish(reply, body.into()).await?;
        }
        Ok(())
    })
}

/// Logging for the long-running commands: RUST_LOG, else the settings' level.
pub fn init_logging(level: &str, json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        let _ = b.json().try_init();
    } else {
        let _ = b.try_init();
    }
}

pub fn scheduler(a: SchedulerArgs) -> Result<()> {
    let mut settings = Settings::load(a.config.as_deref())?;
    if let Some(url) = a.nats {
        settings.nats.url = url;
    }
    init_logging(&settings.log.level, settings.log.json);
    super::run(settings)
}

pub fn gateway(a: GatewayArgs) -> Result<()> {
    let mut settings = Settings::load(a.config.as_deref())?;
    if let Some(url) = a.nats {
        settings.nats.url = url;
    }
    init_logging(&settings.log.level, settings.log.json);
    let id =
        a.id.unwrap_or_else(|| format!("{}-{}", super::host_name(), std::process::id()));
    if settings.nats.name == baton_common::settings::NatsSettings::default().name {
        settings.nats.name = format!("baton-gateway-{id}");
    }
    super::run_gateway(settings, baton_common::ids::GatewayName::new(id))
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")
}

pub fn status(a: StatusArgs) -> Result<()> {
    runtime()?.block_on(async {
        let client = a.connect.connect("baton-status").await?;
        let reply = tokio::time::timeout(
            Duration::from_secs(3),
            client.nats().request(subjects::OPS_STATUS, "".into()),
        )
        .await
        .context("no scheduler answered baton.ops.status within 3 s")?
        .map_err(|e| anyhow::anyhow!("no scheduler answered baton.ops.status: {e} (is `baton scheduler` running?)"))?;
        let status: Option<Status> = serde_json::from_slice(&reply.payload).context("decoding the status")?;
        let Some(status) = status else {
            bail!("the scheduler could not assemble its status")
        };
        if a.json {
            println!("{}", serde_json::to_string_pretty(&status)?);
        } else {
            print!("{}", status.render());
        }
        Ok(())
    })
}

/// A finite, positive number.
fn positive(x: f64) -> bool {
    x.is_finite() && x > 0.0
}

pub fn loadgen(a: LoadgenArgs) -> Result<()> {
    if !positive(a.slo_ms) {
        bail!("--slo-ms must be positive (got {})", a.slo_ms);
    }
    let duration = Duration::from_secs_f64(a.duration.max(0.0));
    let schedule = if let Some(path) = &a.workload {
        let w = Workload::load(path).with_context(|| format!("reading workload {}", path.display()))?;
        Schedule::from_workload(&w, a.seed)
    } else if let Some(path) = &a.trace {
        if !positive(a.time_scale) {
            bail!("--time-scale must be positive (got {})", a.time_scale);
        }
        let t = Trace::load_csv(path, "TIMESTAMP")?.scaled_by(1.0 / a.time_scale);
        Schedule::from_trace(&t, &[a.model.clone().expect("clap requires --model")], a.seed)
    } else if let Some(n) = a.streams {
        if n == 0 || !positive(a.fps) {
            bail!("--streams must be at least 1 and --fps positive");
        }
        Schedule::cameras(a.model.as_deref().expect("clap requires --model"), n, a.fps, duration)
    } else if let Some(rate) = a.rate {
        if !positive(rate) {
            bail!("--rate must be positive (got {rate})");
        }
        Schedule::from_rate(
            a.model.as_deref().expect("clap requires --model"),
            rate,
            duration,
            a.gap,
            a.seed,
        )
    } else {
        bail!("say what load to send: --workload FILE, --model M --rate R, --model M --streams N, or --model M --trace CSV");
    };
    let payload = match (&a.payload_bytes, &a.shape) {
        (Some(n), _) => Payload::bytes(*n),
        (None, Some(shape)) => Payload {
            dtype: a.dtype.parse::<DType>().map_err(|e| anyhow::anyhow!("--dtype: {e}"))?,
            shape: shape.clone(),
        },
        (None, None) => Payload::bytes(64),
    };
    let slo = Duration::from_secs_f64(a.slo_ms / 1e3);
    runtime()?.block_on(async {
        let client = a.connect.connect("baton-loadgen").await?;
        if !a.json {
            eprintln!(
                "sending {} requests over {:.1} s…",
                schedule.arrivals.len(),
                schedule.duration().as_secs_f64()
            );
        }
        let summary = if a.one_inbox {
            loadgen::run_one_inbox(&client, &schedule, &payload, slo).await
        } else {
            loadgen::run(&client, &Arc::new(schedule), &payload, slo).await
        };
        if a.json {
            println!("{}", serde_json::to_string(&summary)?);
        } else {
            print!("{}", summary.render());
        }
        Ok(())
    })
}
