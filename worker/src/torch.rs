//! The torch backend: real inference with libtorch through `tch` (DESIGN.md §7).
//!
//! Models are TorchScript files (`CModule`) or `tch::vision` architectures built with seeded
//! random weights (no download needed) or weights loaded from a file. Each batch runs on the
//! calling thread — the worker's execution thread — under `no_grad`: every request is checked
//! against the model's declared input, the valid ones are stacked into one batch tensor, the
//! forward pass runs once, and the output is split back into one `f32` tensor per request.
//! Requests that fail validation get `bad_request` and never reach the model.
//!
//! libtorch's intra-op thread count is process-wide; [`TorchConfig::threads`] sets it once when
//! the backend is built (default: every available core).

use std::collections::HashMap;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

use baton_common::profile::Profile;
use baton_common::wire::{DType, Tensor as WireTensor};
use tch::nn::{self, ModuleT};
use tch::{CModule, Device, Kind};

use crate::backend::{validate_request, Backend, BackendError, InputSpec, ItemResult, ModelInfo};
use crate::profiler;

/// The `tch::vision` architectures the backend can build.
pub const ARCHITECTURES: &[&str] = &["resnet18", "resnet34", "resnet50", "mobilenet_v2", "efficientnet_b0"];

/// Where a model comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// A `tch::vision` architecture (one of [`ARCHITECTURES`]) with `classes` outputs, with
    /// random weights from the backend's seed or weights from a `VarStore` file (`.ot`,
    /// `.safetensors`).
    Vision {
        arch: String,
        classes: i64,
        weights: Option<PathBuf>,
    },
    /// A TorchScript file (`torch.jit.save`).
    TorchScript(PathBuf),
}

impl ModelSource {
    /// Parses the `--model` value after `name=`: an architecture (`resnet18`), an architecture
    /// with weights (`resnet18@weights.ot`), or a TorchScript path (anything else, usually `.pt`).
    pub fn parse(s: &str) -> ModelSource {
        let (arch, weights) = match s.split_once('@') {
            Some((arch, w)) => (arch, Some(PathBuf::from(w))),
            None => (s, None),
        };
        if ARCHITECTURES.contains(&arch) {
            ModelSource::Vision {
                arch: arch.to_string(),
                classes: 1000,
                weights,
            }
        } else {
            ModelSource::TorchScript(PathBuf::from(s))
        }
    }
}

/// One model to load.
#[derive(Debug, Clone, PartialEq)]
pub struct TorchModelSpec {
    pub name: String,
    pub source: ModelSource,
    /// What one request carries (default: one `f32 [3, 224, 224]` image).
    pub inputs: Vec<InputSpec>,
    pub max_batch: u32,
    /// The profile announced to the scheduler; `None` measures a quick one at load time.
    pub profile: Option<Profile>,
}

impl TorchModelSpec {
    /// A model taking one `f32 [3, 224, 224]` image per request.
    pub fn new(name: impl Into<String>, source: ModelSource, max_batch: u32) -> Self {
        TorchModelSpec {
            name: name.into(),
            source,
            inputs: vec![InputSpec {
                dtype: DType::F32,
                shape: vec![3, 224, 224],
            }],
            max_batch,
            profile: None,
        }
    }
}

/// Backend-wide settings.
#[derive(Debug, Clone, PartialEq)]
pub struct TorchConfig {
    pub device: Device,
    /// libtorch intra-op threads (process-wide).
    pub threads: usize,
    /// Seed for random weights, so every worker builds the same model.
    pub seed: i64,
    /// Warm-up and timed runs per batch size when a model's profile is measured at load.
    pub load_profile_warmup: u32,
    pub load_profile_repeats: u32,
}

impl Default for TorchConfig {
    fn default() -> Self {
        TorchConfig {
            device: Device::Cpu,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            seed: 42,
            load_profile_warmup: 1,
            load_profile_repeats: 3,
        }
    }
}

/// Parses `cpu`, `cuda` (= `cuda:0`) or `cuda:N`.
pub fn parse_device(s: &str) -> Result<Device, String> {
    match s.trim() {
        "cpu" => Ok(Device::Cpu),
        "cuda" => Ok(Device::Cuda(0)),
        other => other
            .strip_prefix("cuda:")
            .and_then(|n| n.parse().ok())
            .map(Device::Cuda)
            .ok_or_else(|| format!("unknown device `{s}`; expected cpu, cuda or cuda:N")),
    }
}

/// Why a model could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TorchError {
    #[error("model `{name}`: cannot load {what}: {source}")]
    Load {
        name: String,
        what: String,
        source: tch::TchError,
    },
    #[error("device {0:?} is not available (CUDA devices here: {1})")]
    NoDevice(Device, i64),
    #[error("model `{0}`: measuring its profile failed: {1}")]
    Profile(String, String),
}

/// A loaded network.
enum Net {
    Script(CModule),
    /// The `VarStore` owns the weights the module refers to.
    Vision {
        _vs: nn::VarStore,
        net: Box<dyn ModuleT>,
    },
}

impl Net {
    fn forward(&self, xs: &[tch::Tensor]) -> Result<tch::Tensor, tch::TchError> {
        match self {
            Net::Script(m) => m.forward_ts(xs),
            Net::Vision { net, .. } => match xs {
                [x] => Ok(net.forward_t(x, false)),
                _ => Err(tch::TchError::Shape(format!(
                    "vision models take one input, got {}",
                    xs.len()
                ))),
            },
        }
    }
}

struct TorchModel {
    info: ModelInfo,
    net: Net,
}

/// A [`Backend`] running libtorch models on one device.
pub struct TorchBackend {
    device: Device,
    models: HashMap<String, TorchModel>,
    order: Vec<String>,
}

impl fmt::Debug for TorchBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TorchBackend")
            .field("device", &self.device)
            .field("models", &self.order)
            .finish()
    }
}

impl TorchBackend {
    /// Loads `models` onto `config.device`, setting libtorch's thread count and seed first. Models
    /// without a profile get one measured here (a few runs per batch size).
    pub fn new(config: &TorchConfig, models: impl IntoIterator<Item = TorchModelSpec>) -> Result<Self, TorchError> {
        if let Device::Cuda(i) = config.device {
            let n = tch::Cuda::device_count();
            if i as i64 >= n {
                return Err(TorchError::NoDevice(config.device, n));
            }
        }
        tch::set_num_threads(config.threads.max(1) as i32);
        let mut backend = TorchBackend {
            device: config.device,
            models: HashMap::new(),
            order: Vec::new(),
        };
        let mut unprofiled = Vec::new();
        for spec in models {
            let net = load(&spec, config)?;
            let profile = match spec.profile {
                Some(p) => p,
                None => {
                    unprofiled.push(spec.name.clone());
                    // Placeholder until measured below; never announced.
                    Profile::from_spec("sleep#0,0,0,0", spec.max_batch)
                        .map_err(|e| TorchError::Profile(spec.name.clone(), e.to_string()))?
                }
            };
            let info = ModelInfo {
                name: spec.name.clone(),
                inputs: spec.inputs,
                max_batch: spec.max_batch,
                profile,
            };
            if !backend.models.contains_key(&spec.name) {
                backend.order.push(spec.name.clone());
            }
            backend.models.insert(spec.name, TorchModel { info, net });
        }
        for name in unprofiled {
            let max = backend.models[&name].info.max_batch;
            let profile = profiler::measure(
                &mut backend,
                &name,
                max,
                config.load_profile_warmup,
                config.load_profile_repeats.max(1),
                |_, _| {},
            )
            .map_err(|e| TorchError::Profile(name.clone(), e.to_string()))?;
            if let Some(m) = backend.models.get_mut(&name) {
                m.info.profile = profile.with_model(name.clone());
            }
        }
        Ok(backend)
    }

    /// The device models run on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// The reference Baton's serving is compared with: a plain tch loop that feeds `model` one
    /// pre-stacked batch of `batch` synthetic inputs, already on the device, over and over for
    /// `duration` (after `warmup` untimed runs) — no validation, no stacking, no splitting, no
    /// copies back. Returns the batches run and the time they took.
    pub fn direct_loop(
        &self,
        model: &str,
        batch: u32,
        warmup: u32,
        duration: std::time::Duration,
    ) -> Result<(u64, std::time::Duration), BackendError> {
        let m = self
            .models
            .get(model)
            .ok_or_else(|| BackendError::UnknownModel(model.to_string()))?;
        let xs: Vec<tch::Tensor> = m
            .info
            .inputs
            .iter()
            .map(|spec| {
                let mut size = vec![i64::from(batch)];
                size.extend(spec.shape.iter().map(|&d| d as i64));
                let x = tch::Tensor::rand(&size, (Kind::Float, self.device)) * 2.0 - 1.0;
                x.to_kind(kind(spec.dtype))
            })
            .collect();
        let run = || -> Result<(), BackendError> {
            let y = tch::no_grad(|| m.net.forward(&xs)).map_err(failed)?;
            // Wait for the device (a no-op on the CPU): read one value back.
            let _ = y.flatten(0, -1).f_double_value(&[0]).map_err(failed)?;
            Ok(())
        };
        for _ in 0..warmup {
            run()?;
        }
        let start = std::time::Instant::now();
        let mut batches = 0;
        while start.elapsed() < duration || batches == 0 {
            run()?;
            batches += 1;
        }
        Ok((batches, start.elapsed()))
    }

    fn forward_items(&self, m: &TorchModel, items: &[&Vec<WireTensor>]) -> Result<Vec<Vec<WireTensor>>, BackendError> {
        let n = items.len() as i64;
        let mut batch = Vec::with_capacity(m.info.inputs.len());
        for (k, spec) in m.info.inputs.iter().enumerate() {
            let mut data = Vec::with_capacity(items.iter().map(|t| t[k].data.len()).sum());
            for t in items {
                data.extend_from_slice(&t[k].data);
            }
            let mut size = vec![n];
            size.extend(spec.shape.iter().map(|&d| d as i64));
            let x = tch::Tensor::f_from_data_size(&data, &size, kind(spec.dtype)).map_err(failed)?;
            batch.push(x.to_device(self.device));
        }
        let out = catch_unwind(AssertUnwindSafe(|| tch::no_grad(|| m.net.forward(&batch))))
            .map_err(|p| BackendError::Failed(panic_message(p)))?
            .map_err(failed)?;
        let out = out.to_device(Device::Cpu).to_kind(Kind::Float).contiguous();
        let dims = out.size();
        if dims.first() != Some(&n) {
            return Err(BackendError::Failed(format!(
                "model `{}` returned shape {dims:?} for a batch of {n}",
                m.info.name
            )));
        }
        let per_item: usize = dims[1..].iter().product::<i64>() as usize;
        let numel = per_item * n as usize;
        let mut values = vec![0f32; numel];
        out.f_copy_data(&mut values, numel).map_err(failed)?;
        let shape: Vec<u64> = dims[1..].iter().map(|&d| d as u64).collect();
        Ok(values
            .chunks(per_item.max(1))
            .take(n as usize)
            .map(|v| vec![WireTensor::from_f32(shape.clone(), v)])
            .collect())
    }
}

impl Backend for TorchBackend {
    fn kind(&self) -> &'static str {
        "torch"
    }

    fn models(&self) -> Vec<ModelInfo> {
        self.order.iter().map(|n| self.models[n].info.clone()).collect()
    }

    fn run_batch(&mut self, model: &str, inputs: &[Vec<WireTensor>]) -> Result<Vec<ItemResult>, BackendError> {
        let m = self
            .models
            .get(model)
            .ok_or_else(|| BackendError::UnknownModel(model.to_string()))?;
        if inputs.len() > m.info.max_batch as usize {
            return Err(BackendError::BatchTooLarge {
                model: model.to_string(),
                got: inputs.len(),
                max: m.info.max_batch,
            });
        }
        let checked: Vec<_> = inputs.iter().map(|t| validate_request(&m.info.inputs, t)).collect();
        let valid: Vec<&Vec<WireTensor>> = inputs
            .iter()
            .zip(&checked)
            .filter(|(_, c)| c.is_ok())
            .map(|(t, _)| t)
            .collect();
        let mut outputs = if valid.is_empty() {
            Vec::new()
        } else {
            self.forward_items(m, &valid)?
        }
        .into_iter();
        Ok(checked
            .into_iter()
            .map(|c| c.map(|()| outputs.next().unwrap_or_default()))
            .collect())
    }
}

fn load(spec: &TorchModelSpec, config: &TorchConfig) -> Result<Net, TorchError> {
    let err = |what: String| {
        let name = spec.name.clone();
        move |source| TorchError::Load { name, what, source }
    };
    match &spec.source {
        ModelSource::TorchScript(path) => {
            let mut m = CModule::load_on_device(path, config.device).map_err(err(path.display().to_string()))?;
            m.set_eval();
            Ok(Net::Script(m))
        }
        ModelSource::Vision { arch, classes, weights } => {
            tch::manual_seed(config.seed);
            let mut vs = nn::VarStore::new(config.device);
            let root = vs.root();
            let net: Box<dyn ModuleT> = match arch.as_str() {
                "resnet18" => Box::new(tch::vision::resnet::resnet18(&root, *classes)),
                "resnet34" => Box::new(tch::vision::resnet::resnet34(&root, *classes)),
                "resnet50" => Box::new(tch::vision::resnet::resnet50(&root, *classes)),
                "mobilenet_v2" => Box::new(tch::vision::mobilenet::v2(&root, *classes)),
                "efficientnet_b0" => Box::new(tch::vision::efficientnet::b0(&root, *classes)),
                other => {
                    return Err(TorchError::Load {
                        name: spec.name.clone(),
                        what: format!("architecture `{other}`"),
                        source: tch::TchError::FileFormat(format!("known: {}", ARCHITECTURES.join(", "))),
                    })
                }
            };
            if let Some(w) = weights {
                vs.load(w).map_err(err(w.display().to_string()))?;
            }
            vs.freeze();
            Ok(Net::Vision { _vs: vs, net })
        }
    }
}

/// The libtorch element type of a wire dtype.
pub fn kind(d: DType) -> Kind {
    match d {
        DType::F32 => Kind::Float,
        DType::F16 => Kind::Half,
        DType::BF16 => Kind::BFloat16,
        DType::F64 => Kind::Double,
        DType::I64 => Kind::Int64,
        DType::I32 => Kind::Int,
        DType::I16 => Kind::Int16,
        DType::I8 => Kind::Int8,
        DType::U8 => Kind::Uint8,
        DType::Bool => Kind::Bool,
    }
}

fn failed(e: tch::TchError) -> BackendError {
    BackendError::Failed(e.to_string())
}

fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "libtorch panicked".to_string())
}
