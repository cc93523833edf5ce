//! `baton-worker`: parses arguments and wires the worker's pieces.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use baton_common::profile::{Profile, DEFAULT_SPEC_MAX_BATCH};
use baton_common::wire::DType;
use baton_worker::backend::InputSpec;
use baton_worker::{EmulatedBackend, EmulatedModel, WorkerConfig};
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

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Join a Baton deployment and serve batches until SIGTERM or Ctrl-C (then drain and exit 0).
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
        /// Latency profile for the emulated backend: a `.toml`/`.json` profile file or a
        /// `sleep#slope_us,intercept_us,pre_us,post_us` spec. `MODEL=SOURCE` sets one model's
        /// profile; a bare SOURCE is for every model without its own. Repeatable.
        #[arg(long)]
        profile: Vec<String>,
        /// Largest batch of profiles given as `sleep#…` specs.
        #[arg(long, default_value_t = DEFAULT_SPEC_MAX_BATCH)]
        max_batch: u32,
        /// Hardware class reported to the scheduler.
        #[arg(long, default_value = "cpu")]
        hardware: String,
        /// Shape of each model's one input per request, without the batch dimension
        /// (`3,224,224`), or `none` for models that take no input tensors.
        #[arg(long, default_value = "3,224,224")]
        input_shape: String,
        /// Element type of each model's input.
        #[arg(long, default_value = "f32", value_parser = parse_dtype)]
        input_dtype: DType,
        /// Heartbeat period in milliseconds.
        #[arg(long, default_value_t = 250)]
        heartbeat_ms: u64,
        /// Log format (the level comes from RUST_LOG, default `info`).
        #[arg(long, value_enum, default_value = "text")]
        log_format: LogFormat,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Run {
            nats,
            id,
            models,
            backend,
            profile,
            max_batch,
            hardware,
            input_shape,
            input_dtype,
            heartbeat_ms,
            log_format,
        } => {
            init_logging(log_format);
            baton_common::subjects::validate_token(&id)
                .map_err(|e| anyhow::anyhow!("--id `{id}` cannot be used in a NATS subject: {e}"))?;
            for m in &models {
                baton_common::subjects::validate_token(m)
                    .map_err(|e| anyhow::anyhow!("--models: `{m}` cannot be used in a NATS subject: {e}"))?;
            }
            if heartbeat_ms == 0 {
                bail!("--heartbeat-ms must be at least 1");
            }
            let backend: Box<dyn baton_worker::backend::Backend> = match backend {
                BackendKind::Torch => bail!(
                    "--backend torch is not available yet: the libtorch backend arrives with issue 6; \
                     use --backend emulated --profile FILE for now"
                ),
                BackendKind::Emulated => {
                    let profiles = resolve_profiles(&models, &profile, max_batch)?;
                    let inputs = parse_inputs(&input_shape, input_dtype)?;
                    Box::new(EmulatedBackend::new(models.iter().map(|name| EmulatedModel {
                        name: name.clone(),
                        profile: profiles[name].clone(),
                        inputs: inputs.clone(),
                    })))
                }
            };
            let mut config = WorkerConfig::new(nats, id, hardware);
            config.heartbeat = Duration::from_millis(heartbeat_ms);
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("cannot start the tokio runtime")?;
            rt.block_on(baton_worker::run(config, backend, shutdown_signal()))?;
            Ok(())
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
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
