//! `baton-worker`: parses arguments and wires the worker's pieces.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use baton_common::profile::{Profile, DEFAULT_SPEC_MAX_BATCH};
use baton_common::wire::DType;
use baton_worker::backend::InputSpec;
use baton_worker::fleet::{self, FleetConfig};
use baton_worker::{EmulatedBackend, EmulatedModel, WorkerConfig};
use clap::{Parser, Subcommand, ValueEnum};

#[cfg(feature = "torch")]
mod torch_cli;

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

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Join a Baton deployment and serve batches until SIGTERM or Ctrl-C (then drain and exit 0).
    #[command(mut_arg("models", |a| a.required_unless_present("model")))]
    Run {
        #[command(flatten)]
        join: JoinArgs,
        /// This worker's id (unique in the deployment; one NATS subject token). Default: the
        /// host name, which is unique per container and per Kubernetes pod.
        #[arg(long)]
        id: Option<String>,
        #[command(flatten)]
        emulated: EmulatedArgs,
        /// Torch backend models as `NAME=SOURCE`: an architecture (resnet18, resnet34, resnet50,
        /// mobilenet_v2, efficientnet_b0) with seeded random weights, `ARCH@WEIGHTS` for weights
        /// from a file, or a TorchScript `.pt` path. Repeatable.
        #[arg(long)]
        model: Vec<String>,
        /// Torch backend device: `cpu`, `cuda` or `cuda:N`.
        #[arg(long, default_value = "cpu")]
        device: String,
        /// Torch backend intra-op threads (default: every available core).
        #[arg(long)]
        threads: Option<usize>,
        #[arg(long, value_enum, default_value = "emulated")]
        backend: BackendKind,
    },
    /// Emulate N workers in one process, for scale tests: each its own worker id
    /// (`<id-prefix><index>`), instance, subscriptions and heartbeats, with the emulated backend
    /// on a timer and a shared NATS connection per `--per-connection` workers. Prints one line
    /// when all are up; drains them all on SIGTERM or Ctrl-C.
    #[command(mut_arg("models", |a| a.required(true)))]
    Fleet {
        /// How many workers.
        #[arg(long)]
        count: usize,
        /// Worker ids are this followed by the index from 0 (`fleet-0`, `fleet-1`…).
        #[arg(long, default_value = "fleet-")]
        id_prefix: String,
        #[command(flatten)]
        join: JoinArgs,
        #[command(flatten)]
        emulated: EmulatedArgs,
        /// Workers sharing one NATS connection.
        #[arg(long, default_value_t = 1000)]
        per_connection: usize,
        /// Hellos per second at start-up (the workers start one after another at this rate).
        #[arg(long, default_value_t = 5000.0)]
        start_rate: f64,
    },
    /// Measure a torch model's batch latency L(b), b = 1..max-batch, and write a profile file
    /// (TOML or JSON by extension) for the scheduler, planner and simulator.
    Profile {
        #[command(flatten)]
        target: ModelArgs,
        #[arg(long, default_value_t = 8)]
        max_batch: u32,
        /// Output file: `.toml` or `.json`.
        #[arg(long)]
        out: std::path::PathBuf,
        /// Hardware class recorded in the profile (default: the device).
        #[arg(long)]
        hardware: Option<String>,
        /// Timed runs per batch size.
        #[arg(long, default_value_t = 10)]
        repeats: u32,
        /// Untimed runs per batch size before the timed ones.
        #[arg(long, default_value_t = 2)]
        warmup: u32,
    },
    /// The reference for serving efficiency: run a torch model in a plain tch loop at one batch
    /// size (pre-stacked input, no NATS, no validation) and print images per second.
    Bench {
        #[command(flatten)]
        target: ModelArgs,
        #[arg(long, default_value_t = 8)]
        batch: u32,
        /// Seconds of timed runs (after one warm-up batch).
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// How a worker joins a deployment (`run` and `fleet`).
#[derive(Debug, clap::Args)]
struct JoinArgs {
    /// Settings file (TOML) with Baton's [nats] section: URL, credentials, TLS (other
    /// sections are checked and ignored, except [log]). Every key can also come from
    /// BATON_NATS__KEY, e.g. BATON_NATS__USER and BATON_NATS__PASSWORD.
    #[arg(long)]
    config: Option<std::path::PathBuf>,
    /// NATS server URL (overrides nats.url; default nats://127.0.0.1:4222).
    #[arg(long)]
    nats: Option<String>,
    /// Hardware class reported to the scheduler.
    #[arg(long, default_value = "cpu")]
    hardware: String,
    /// Heartbeat period in milliseconds.
    #[arg(long, default_value_t = 250)]
    heartbeat_ms: u64,
    /// Log format (default: json if log.json is set, else text). The level comes from
    /// RUST_LOG, else log.level (default `info`).
    #[arg(long, value_enum)]
    log_format: Option<LogFormat>,
}

impl JoinArgs {
    /// Loads the settings, starts logging (at `level` unless RUST_LOG or log.level says
    /// otherwise), and gives the NATS settings with `--nats` applied and the heartbeat period.
    fn setup(&self, quiet: bool) -> Result<(baton_common::settings::NatsSettings, Duration)> {
        let settings = baton_common::Settings::load(self.config.as_deref())?;
        let log_format = self.log_format.unwrap_or(if settings.log.json {
            LogFormat::Json
        } else {
            LogFormat::Text
        });
        // A fleet's workers would each log their start and drain: thousands of lines.
        let level = if quiet && settings.log.level == "info" {
            "warn,baton_worker::fleet=info"
        } else {
            settings.log.level.as_str()
        };
        init_logging(log_format, level);
        let mut nats = settings.nats;
        if let Some(url) = &self.nats {
            nats.url = url.clone();
        }
        if self.heartbeat_ms == 0 {
            bail!("--heartbeat-ms must be at least 1");
        }
        Ok((nats, Duration::from_millis(self.heartbeat_ms)))
    }
}

/// The emulated backend's models (`run` and `fleet`).
#[derive(Debug, clap::Args)]
struct EmulatedArgs {
    /// Models to serve with the emulated backend (comma-separated or repeated).
    #[arg(long, value_delimiter = ',')]
    models: Vec<String>,
    /// Latency profile for the emulated backend: a `.toml`/`.json` profile file or a
    /// `sleep#slope_us,intercept_us,pre_us,post_us` spec. `MODEL=SOURCE` sets one model's
    /// profile; a bare SOURCE is for every model without its own. Repeatable. With the torch
    /// backend it is the profile announced to the scheduler (`baton-worker profile`'s output);
    /// models without one get a quick profile measured at start-up.
    #[arg(long)]
    profile: Vec<String>,
    /// Largest batch of profiles given as `sleep#…` specs (default 256), and of torch models
    /// without a profile file (default 8).
    #[arg(long)]
    max_batch: Option<u32>,
    /// Shape of each model's one input per request, without the batch dimension
    /// (`3,224,224`), or `none` for models that take no input tensors.
    #[arg(long, default_value = "3,224,224")]
    input_shape: String,
    /// Element type of each model's input.
    #[arg(long, default_value = "f32", value_parser = parse_dtype)]
    input_dtype: DType,
}

impl EmulatedArgs {
    /// The emulated backend these arguments describe.
    fn backend(&self) -> Result<EmulatedBackend> {
        validate_model_names(&self.models)?;
        let profiles = resolve_profiles(
            &self.models,
            &self.profile,
            self.max_batch.unwrap_or(DEFAULT_SPEC_MAX_BATCH),
        )?;
        let inputs = parse_inputs(&self.input_shape, self.input_dtype)?;
        Ok(EmulatedBackend::new(self.models.iter().map(|name| EmulatedModel {
            name: name.clone(),
            profile: profiles[name].clone(),
            inputs: inputs.clone(),
        })))
    }
}

fn validate_model_names(names: &[String]) -> Result<()> {
    for m in names {
        baton_common::subjects::validate_token(m)
            .map_err(|e| anyhow::anyhow!("--models: `{m}` cannot be used in a NATS subject: {e}"))?;
    }
    Ok(())
}

/// The one torch model `profile` and `bench` load, and where.
#[derive(Debug, clap::Args)]
struct ModelArgs {
    /// `NAME=SOURCE` as in `run --model`, or just an architecture (`resnet18`).
    #[arg(long)]
    model: String,
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Intra-op threads (default: every available core).
    #[arg(long)]
    threads: Option<usize>,
    /// Shape of the model's one input per request, without the batch dimension.
    #[arg(long, default_value = "3,224,224")]
    input_shape: String,
    #[arg(long, default_value = "f32", value_parser = parse_dtype)]
    input_dtype: DType,
}

#[cfg(feature = "torch")]
impl ModelArgs {
    fn to_cli(&self) -> Result<torch_cli::OneModel<'_>> {
        Ok(torch_cli::OneModel {
            model: &self.model,
            device: &self.device,
            threads: self.threads,
            inputs: parse_inputs(&self.input_shape, self.input_dtype)?,
        })
    }
}

/// What to say when this binary was built without libtorch.
#[cfg(not(feature = "torch"))]
const NO_TORCH: &str = "this baton-worker was built without libtorch: build it with `make torch` \
     (or `deploy/setup/libtorch.sh` then `LIBTORCH_USE_PYTORCH=1 PATH=~/.cache/baton/torch-venv/bin:$PATH \
     cargo build -p baton-worker --features torch`)";

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Run {
            join,
            id,
            emulated,
            model,
            device,
            threads,
            backend,
        } => {
            let (nats_settings, heartbeat) = join.setup(false)?;
            let id = match id {
                Some(id) => id,
                None => default_worker_id()?,
            };
            baton_common::subjects::validate_token(&id)
                .map_err(|e| anyhow::anyhow!("--id `{id}` cannot be used in a NATS subject: {e}"))?;
            #[cfg(feature = "torch")]
            let torch_models = torch_cli::parse_models(&model)?;
            #[cfg(not(feature = "torch"))]
            let torch_models: Vec<(String, String)> = Vec::new();
            if matches!(backend, BackendKind::Emulated) && !model.is_empty() {
                bail!("--model NAME=SOURCE is for --backend torch; the emulated backend takes --models");
            }
            let backend: Box<dyn baton_worker::backend::Backend> = match backend {
                #[cfg(not(feature = "torch"))]
                BackendKind::Torch => {
                    let _ = (&device, threads, &torch_models);
                    bail!("--backend torch: {NO_TORCH}")
                }
                #[cfg(feature = "torch")]
                BackendKind::Torch => {
                    let names: Vec<String> = torch_models.iter().map(|(n, _)| n.clone()).collect();
                    validate_model_names(&names)?;
                    if torch_models.is_empty() {
                        bail!(
                            "--backend torch needs at least one --model NAME=SOURCE (e.g. --model resnet18=resnet18)"
                        );
                    }
                    let inputs = parse_inputs(&emulated.input_shape, emulated.input_dtype)?;
                    let profiles = resolve_torch_profiles(&names, &emulated.profile)?;
                    Box::new(torch_cli::backend(
                        &torch_models,
                        &device,
                        threads,
                        emulated.max_batch.unwrap_or(8),
                        &inputs,
                        profiles,
                    )?)
                }
                BackendKind::Emulated => Box::new(emulated.backend()?),
            };
            let mut config = WorkerConfig::new(String::new(), id, join.hardware);
            config.nats = nats_settings;
            config.heartbeat = heartbeat;
            tokio_runtime()?.block_on(baton_worker::run(config, backend, shutdown_signal()))?;
            Ok(())
        }
        Command::Fleet {
            count,
            id_prefix,
            join,
            emulated,
            per_connection,
            start_rate,
        } => {
            let (nats_settings, heartbeat) = join.setup(true)?;
            if count == 0 || per_connection == 0 {
                bail!("--count and --per-connection must be at least 1");
            }
            if !(start_rate.is_finite() && start_rate > 0.0) {
                bail!("--start-rate must be a positive number of hellos per second");
            }
            let last = format!("{id_prefix}{}", count - 1);
            baton_common::subjects::validate_token(&last).map_err(|e| {
                anyhow::anyhow!("--id-prefix `{id_prefix}` makes ids that cannot be NATS subject tokens: {e}")
            })?;
            let backend = Arc::new(emulated.backend()?);
            let mut config = FleetConfig::new(String::new(), count, id_prefix);
            config.nats = nats_settings;
            config.hardware = join.hardware;
            config.heartbeat = heartbeat;
            config.per_connection = per_connection;
            config.start_rate = start_rate;
            let first = config.worker_id(0);
            let summary = tokio_runtime()?.block_on(fleet::run(config, backend, shutdown_signal(), |up| {
                println!(
                    "fleet up: {} workers ({first} … {last}) on {} NATS connection(s), all said hello in {:.2} s",
                    up.workers,
                    up.connections,
                    up.took.as_secs_f64()
                );
            }))?;
            println!(
                "fleet down: {} of {} workers drained and said goodbye",
                summary.drained, summary.started
            );
            Ok(())
        }
        #[cfg(not(feature = "torch"))]
        Command::Profile { .. } => bail!("profile: {NO_TORCH}"),
        #[cfg(not(feature = "torch"))]
        Command::Bench { .. } => bail!("bench: {NO_TORCH}"),
        #[cfg(feature = "torch")]
        Command::Bench {
            target,
            batch,
            seconds,
            json,
        } => {
            if !(seconds.is_finite() && seconds > 0.0) {
                bail!("--seconds must be a positive number of seconds");
            }
            torch_cli::bench(&target.to_cli()?, batch, Duration::from_secs_f64(seconds), json)
        }
        #[cfg(feature = "torch")]
        Command::Profile {
            target,
            max_batch,
            out,
            hardware,
            repeats,
            warmup,
        } => torch_cli::profile(torch_cli::ProfileArgs {
            target: target.to_cli()?,
            max_batch,
            out: &out,
            hardware: hardware.as_deref(),
            repeats,
            warmup,
        }),
    }
}

/// Per-model profiles for the torch backend: only `MODEL=FILE` entries (a missing one is
/// measured at start-up).
#[cfg(feature = "torch")]
fn resolve_torch_profiles(models: &[String], args: &[String]) -> Result<HashMap<String, Profile>> {
    let mut out = HashMap::new();
    for arg in args {
        let Some((model, file)) = arg.split_once('=') else {
            bail!("--profile {arg}: with --backend torch give MODEL=FILE (a profile from `baton-worker profile`)");
        };
        if !models.iter().any(|m| m == model) {
            bail!(
                "--profile {arg}: model `{model}` is not among the --model names ({})",
                models.join(", ")
            );
        }
        out.insert(model.to_string(), Profile::load(file)?);
    }
    Ok(out)
}

/// The worker id when `--id` is not given: the host name, which Docker sets to the container
/// id and Kubernetes to the pod name, so `docker compose up --scale worker=N` and a Deployment's
/// replicas get distinct ids.
fn default_worker_id() -> Result<String> {
    let name = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .context("no --id given and no host name to default to: give the worker an --id")?;
    // A subject token cannot contain `.`: `gpu-node.example.com` becomes `gpu-node_example_com`.
    Ok(name.replace(['.', '*', '>'], "_"))
}

fn tokio_runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")
}

fn init_logging(format: LogFormat, level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Resolves when the process gets SIGTERM or SIGINT.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received"),
        () = term => tracing::info!("SIGTERM received"),
    }
}

fn parse_dtype(s: &str) -> Result<DType, String> {
    DType::ALL.iter().copied().find(|d| d.as_str() == s).ok_or_else(|| {
        let names: Vec<&str> = DType::ALL.iter().map(|d| d.as_str()).collect();
        format!("unknown dtype `{s}`; known: {}", names.join(", "))
    })
}

/// `3,224,224` → one input of that shape; `none` → no inputs.
fn parse_inputs(shape: &str, dtype: DType) -> Result<Vec<InputSpec>> {
    if shape.trim() == "none" {
        return Ok(Vec::new());
    }
    let dims = shape
        .split(',')
        .map(|d| d.trim().parse::<u64>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| {
            anyhow::anyhow!(
                "--input-shape `{shape}` is not a comma-separated list of dimensions like 3,224,224 (or `none`)"
            )
        })?;
    Ok(vec![InputSpec { dtype, shape: dims }])
}

/// One profile per model from `--profile [MODEL=]SOURCE` arguments.
fn resolve_profiles(models: &[String], args: &[String], max_batch: u32) -> Result<HashMap<String, Profile>> {
    let load = |source: &str| -> Result<Profile> {
        if source.trim_start().starts_with("sleep#") {
            Ok(Profile::from_spec(source, max_batch)?)
        } else {
            Profile::load(source).map_err(Into::into)
        }
    };
    let mut default = None;
    let mut specific = HashMap::new();
    for arg in args {
        match arg.split_once('=') {
            Some((model, source)) if !model.contains('/') && !model.starts_with("sleep#") => {
                if !models.iter().any(|m| m == model) {
                    bail!(
                        "--profile {arg}: model `{model}` is not in --models ({})",
                        models.join(", ")
                    );
                }
                specific.insert(model.to_string(), load(source)?);
            }
            _ => {
                if default.is_some() {
                    bail!("--profile {arg}: a profile for all models was already given; use MODEL=SOURCE for per-model profiles");
                }
                default = Some(load(arg)?);
            }
        }
    }
    models
        .iter()
        .map(|m| {
            let p = specific.get(m).or(default.as_ref()).cloned().ok_or_else(|| {
                anyhow::anyhow!(
                    "--backend emulated needs a latency profile for model `{m}`: \
                     give --profile FILE (for all models) or --profile {m}=FILE (TOML or JSON, or a sleep#… spec)"
                )
            })?;
            Ok((m.clone(), p))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_default_and_per_model() {
        let models = vec!["a".to_string(), "b".to_string()];
        let p = resolve_profiles(&models, &["sleep#1000,2000,0,0".into(), "b=sleep#10,20,0,0".into()], 8).unwrap();
        assert_eq!(p["a"].forward_mean_us(1).unwrap(), 3000.0);
        assert_eq!(p["b"].forward_mean_us(2).unwrap(), 40.0);
        assert_eq!(p["a"].max_batch(), 8);
        let e = resolve_profiles(&models, &["a=sleep#1,1,0,0".into()], 8).unwrap_err();
        assert!(e.to_string().contains("model `b`"), "{e}");
        let e = resolve_profiles(&models, &["c=sleep#1,1,0,0".into()], 8).unwrap_err();
        assert!(e.to_string().contains("not in --models"), "{e}");
    }

    #[test]
    fn inputs_and_dtypes() {
        assert_eq!(
            parse_inputs("3, 224,224", DType::F32).unwrap(),
            vec![InputSpec {
                dtype: DType::F32,
                shape: vec![3, 224, 224]
            }]
        );
        assert!(parse_inputs("none", DType::F32).unwrap().is_empty());
        assert!(parse_inputs("3,x", DType::F32).is_err());
        assert_eq!(parse_dtype("bf16"), Ok(DType::BF16));
        assert!(parse_dtype("f128").unwrap_err().contains("known: f32"));
    }
}
