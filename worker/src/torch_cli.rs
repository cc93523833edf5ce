//! The torch parts of `baton-worker`'s command line: `run --backend torch` and `profile`.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use baton_common::profile::Profile;
use baton_worker::backend::InputSpec;
use baton_worker::profiler;
use baton_worker::torch::{parse_device, ModelSource, TorchBackend, TorchConfig, TorchModelSpec};
use indicatif::{ProgressBar, ProgressStyle};

/// `--model NAME=SOURCE` values as `(name, source)`; a bare architecture names itself.
pub fn parse_models(args: &[String]) -> Result<Vec<(String, String)>> {
    args.iter()
        .map(|a| {
            let (name, source) = a.split_once('=').unwrap_or((a.as_str(), a.as_str()));
            if name.is_empty() || source.is_empty() {
                bail!("--model `{a}`: expected NAME=SOURCE, e.g. resnet18=resnet18 or mymodel=model.pt");
            }
            Ok((name.to_string(), source.to_string()))
        })
        .collect()
}

fn config(device: &str, threads: Option<usize>) -> Result<TorchConfig> {
    let mut config = TorchConfig {
        device: parse_device(device).map_err(anyhow::Error::msg)?,
        ..TorchConfig::default()
    };
    if let Some(t) = threads {
        config.threads = t.max(1);
    }
    Ok(config)
}

/// Loads the `run --backend torch` models.
pub fn backend(
    models: &[(String, String)],
    device: &str,
    threads: Option<usize>,
    max_batch: u32,
    inputs: &[InputSpec],
    mut profiles: HashMap<String, Profile>,
) -> Result<TorchBackend> {
    let config = config(device, threads)?;
    let start = Instant::now();
    let specs = models.iter().map(|(name, source)| {
        let profile = profiles.remove(name);
        TorchModelSpec {
            name: name.clone(),
            source: ModelSource::parse(source),
            inputs: inputs.to_vec(),
            max_batch: profile.as_ref().map_or(max_batch, Profile::max_batch),
            profile,
        }
    });
    let backend = TorchBackend::new(&config, specs).context("cannot load the torch models")?;
    tracing::info!(
        device = ?config.device,
        threads = config.threads,
        load_ms = start.elapsed().as_millis() as u64,
        "torch models loaded"
    );
    Ok(backend)
}

/// One torch model to load alone (`profile`, `bench`).
pub struct OneModel<'a> {
    /// `NAME=SOURCE` or an architecture.
    pub model: &'a str,
    pub device: &'a str,
    pub threads: Option<usize>,
    pub inputs: Vec<InputSpec>,
}

impl OneModel<'_> {
    /// Loads the model with batches up to `max_batch`, announcing no profile of its own (the
    /// caller measures). Returns its name and the backend.
    fn load(&self, max_batch: u32) -> Result<(String, TorchBackend)> {
        let (name, source) = parse_models(&[self.model.to_string()])?.remove(0);
        let config = config(self.device, self.threads)?;
        let spec = TorchModelSpec {
            name: name.clone(),
            source: ModelSource::parse(&source),
            inputs: self.inputs.clone(),
            max_batch,
            profile: Some(Profile::from_spec("sleep#0,0,0,0", max_batch)?),
        };
        let backend = TorchBackend::new(&config, [spec]).context("cannot load the model")?;
        Ok((name, backend))
    }
}

pub struct ProfileArgs<'a> {
    pub target: OneModel<'a>,
    pub max_batch: u32,
    pub out: &'a Path,
    pub hardware: Option<&'a str>,
    pub repeats: u32,
    pub warmup: u32,
}

/// `baton-worker profile`: measures and writes the profile, with a progress bar on stderr.
pub fn profile(args: ProfileArgs<'_>) -> Result<()> {
    if args.max_batch == 0 {
        bail!("--max-batch must be at least 1");
    }
    let (name, mut backend) = args.target.load(args.max_batch)?;
    let runs_per_batch = u64::from(args.warmup + args.repeats.max(1));
    let bar = ProgressBar::new(u64::from(args.max_batch) * runs_per_batch);
    bar.set_style(
        ProgressStyle::with_template("{msg:>12} [{bar:40}] {pos}/{len} runs, {elapsed} elapsed, eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let measured = profiler::measure(
        &mut backend,
        &name,
        args.max_batch,
        args.warmup,
        args.repeats,
        |b, _| {
            bar.set_message(format!("batch {b}"));
            bar.inc(1);
        },
    )?;
    bar.finish_and_clear();
    let hardware = args
        .hardware
        .map_or_else(|| args.target.device.to_string(), str::to_string);
    let measured = measured.with_hardware(hardware);
    measured
        .save(args.out)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    println!("{:>5} {:>12} {:>10} {:>12}", "batch", "mean_ms", "std_ms", "items/s");
    for e in measured.batches() {
        println!(
            "{:>5} {:>12.2} {:>10.2} {:>12.1}",
            e.batch,
            e.mean_us / 1e3,
            e.std_us / 1e3,
            f64::from(e.batch) * 1e6 / e.mean_us
        );
    }
    eprintln!("profile of `{name}` written to {}", args.out.display());
    Ok(())
}

/// `baton-worker bench`: images per second of a plain tch loop at one batch size.
pub fn bench(target: &OneModel<'_>, batch: u32, duration: std::time::Duration, json: bool) -> Result<()> {
    if batch == 0 {
        bail!("--batch must be at least 1");
    }
    let (name, backend) = target.load(batch)?;
    let (device, threads) = (target.device, config(target.device, target.threads)?.threads);
    let (batches, elapsed) = backend.direct_loop(&name, batch, 1, duration)?;
    let images_per_s = (batches * u64::from(batch)) as f64 / elapsed.as_secs_f64();
    let batch_ms = elapsed.as_secs_f64() * 1e3 / batches as f64;
    if json {
        println!(
            "{{\"model\":\"{name}\",\"device\":\"{device}\",\"threads\":{threads},\"batch\":{batch},\"batches\":{batches},\
             \"seconds\":{:.3},\"batch_ms\":{batch_ms:.3},\"images_per_s\":{images_per_s:.2}}}",
            elapsed.as_secs_f64()
        );
    } else {
        println!(
            "{name} on {device} ({threads} threads), batch {batch}: {batches} batches in {:.1} s, {batch_ms:.1} ms per batch, \
             {images_per_s:.1} images/s",
            elapsed.as_secs_f64()
        );
    }
    Ok(())
}
