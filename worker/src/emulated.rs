//! The emulated backend: a model that is only a latency profile.
//!
//! It lets Baton run end to end — gateways, scheduler, NATS, workers, replies — on a machine
//! without a GPU, at the speed of the real model it stands in for: a batch of `b` valid requests
//! takes the profile's mean forward latency `mean(b) + pre + post`, slept on the execution
//! thread, exactly where a real forward pass would block (or, for the many emulated workers of a
//! fleet, awaited on a tokio timer: [`EmulatedBackend::compute`] gives the results and the time
//! to take).
//!
//! Each model still declares its input (dtype and shape) and checks every request against it, so
//! the `bad_request` path is the same as the torch backend's. Its output is a deterministic
//! [`checksum`] of the request's inputs, so a client can verify that it got the answer to *its*
//! request and not a neighbour's in the batch.

use std::collections::HashMap;
use std::time::Duration;

use baton_common::profile::Profile;
use baton_common::wire::{DType, Tensor};

use crate::backend::{validate_request, Backend, BackendError, InputSpec, ItemResult, ModelInfo};

/// One emulated model: its name, the profile it sleeps by and the input it accepts.
#[derive(Debug, Clone, PartialEq)]
pub struct EmulatedModel {
    pub name: String,
    pub profile: Profile,
    /// The inputs one request must carry; empty means requests carry no tensors.
    pub inputs: Vec<InputSpec>,
}

/// A [`Backend`] that sleeps each batch's profiled latency and answers with checksums.
#[derive(Debug)]
pub struct EmulatedBackend {
    models: HashMap<String, EmulatedModel>,
    /// Declaration order, for [`Backend::models`].
    order: Vec<String>,
}

impl EmulatedBackend {
    /// A backend serving `models`. A later model with the same name replaces an earlier one.
    pub fn new(models: impl IntoIterator<Item = EmulatedModel>) -> Self {
        let mut backend = EmulatedBackend {
            models: HashMap::new(),
            order: Vec::new(),
        };
        for m in models {
            if !backend.models.contains_key(&m.name) {
                backend.order.push(m.name.clone());
            }
            backend.models.insert(m.name.clone(), m);
        }
        backend
    }

    /// How long a batch of `valid` requests of `model` takes: `mean(b) + pre + post`, or zero for
    /// an empty batch.
    pub fn batch_latency(profile: &Profile, valid: u32) -> Result<Duration, BackendError> {
        if valid == 0 {
            return Ok(Duration::ZERO);
        }
        let mean = profile
            .forward_mean_us(valid)
            .map_err(|e| BackendError::Failed(e.to_string()))?;
        let us = mean + profile.pre_us() + profile.post_us();
        Ok(Duration::from_secs_f64(us / 1e6))
    }

    /// A batch's results and how long it should take, without taking that time: the
    /// [`Backend::run_batch`] of this backend sleeps it on the execution thread, a fleet's
    /// emulated worker on a tokio timer ([`crate::executor`]).
    pub fn compute(&self, model: &str, inputs: &[Vec<Tensor>]) -> Result<(Duration, Vec<ItemResult>), BackendError> {
        let m = self
            .models
            .get(model)
            .ok_or_else(|| BackendError::UnknownModel(model.to_string()))?;
        let max = m.profile.max_batch();
        if inputs.len() > max as usize {
            return Err(BackendError::BatchTooLarge {
                model: model.to_string(),
                got: inputs.len(),
                max,
            });
        }
        let checked: Vec<_> = inputs.iter().map(|t| validate_request(&m.inputs, t)).collect();
        let valid = checked.iter().filter(|r| r.is_ok()).count() as u32;
        let latency = Self::batch_latency(&m.profile, valid)?;
        let results = checked
            .into_iter()
            .zip(inputs)
            .map(|(check, tensors)| check.map(|()| vec![checksum(tensors)]))
            .collect();
        Ok((latency, results))
    }
}

impl Backend for EmulatedBackend {
    fn kind(&self) -> &'static str {
        "emulated"
    }

    fn models(&self) -> Vec<ModelInfo> {
        self.order
            .iter()
            .map(|name| {
                let m = &self.models[name];
                ModelInfo {
                    name: m.name.clone(),
                    inputs: m.inputs.clone(),
                    max_batch: m.profile.max_batch(),
                    profile: m.profile.clone(),
                }
            })
            .collect()
    }

    fn run_batch(&mut self, model: &str, inputs: &[Vec<Tensor>]) -> Result<Vec<ItemResult>, BackendError> {
        let (latency, results) = self.compute(model, inputs)?;
        std::thread::sleep(latency);
        Ok(results)
    }
}

/// The emulated model's output for one request: an `i64` tensor of shape `[n_inputs]` whose
/// element `i` is the 64-bit FNV-1a hash of input `i`'s data bytes (the `u64` bit pattern stored
/// as little-endian `i64`). Clients and tests recompute it to check they got their own answer.
pub fn checksum(inputs: &[Tensor]) -> Tensor {
    Tensor {
        dtype: DType::I64,
        shape: vec![inputs.len() as u64],
        data: inputs.iter().flat_map(|t| fnv1a64(&t.data).to_le_bytes()).collect(),
    }
}

/// 64-bit FNV-1a.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes
        .iter()
        .fold(OFFSET, |h, &b| (h ^ u64::from(b)).wrapping_mul(PRIME))
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::backend::RequestError;

    fn model(spec: &str) -> EmulatedModel {
        EmulatedModel {
            name: "m".into(),
            profile: Profile::from_spec(spec, 4).unwrap(),
            inputs: vec![InputSpec {
                dtype: DType::F32,
                shape: vec![2],
            }],
        }
    }

    #[test]
    fn fnv1a_known_values() {
        // Reference values of the 64-bit FNV-1a test suite.
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn checksum_is_one_i64_per_input() {
        let a = Tensor::from_f32(vec![2], &[1.0, 2.0]);
        let b = Tensor {
            dtype: DType::U8,
            shape: vec![1],
            data: b"a".to_vec(),
        };
        let c = checksum(&[a.clone(), b]);
        assert_eq!(c.dtype, DType::I64);
        assert_eq!(c.shape, vec![2]);
        assert!(c.validate().is_ok());
        assert_eq!(&c.data[..8], &fnv1a64(&a.data).to_le_bytes());
        assert_eq!(&c.data[8..], &0xaf63_dc4c_8601_ec8cu64.to_le_bytes());
        assert_eq!(checksum(&[]).shape, vec![0]);
    }

    #[test]
    fn sleeps_the_profile_for_the_valid_requests_only() {
        // mean(b) = 1000·b + 2000 µs, pre 500, post 500 → b = 2: 5 ms.
        let mut backend = EmulatedBackend::new([model("sleep#1000,2000,500,500")]);
        let good = vec![Tensor::from_f32(vec![2], &[1.0, 2.0])];
        let bad = vec![Tensor::from_f32(vec![3], &[1.0, 2.0, 3.0])];
        let start = Instant::now();
        let out = backend.run_batch("m", &[good.clone(), bad, good.clone()]).unwrap();
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(5), "{took:?}");
        assert!(took < Duration::from_millis(200), "{took:?}");
        assert_eq!(out[0], Ok(vec![checksum(&good)]));
        assert!(matches!(out[1], Err(RequestError::Mismatch { index: 0, .. })));
        assert_eq!(out[2], Ok(vec![checksum(&good)]));
    }

    #[test]
    fn whole_batch_errors() {
        let mut backend = EmulatedBackend::new([model("sleep#0,0,0,0")]);
        assert!(matches!(
            backend.run_batch("nope", &[]),
            Err(BackendError::UnknownModel(m)) if m == "nope"
        ));
        let five = vec![vec![]; 5];
        assert!(matches!(
            backend.run_batch("m", &five),
            Err(BackendError::BatchTooLarge { got: 5, max: 4, .. })
        ));
        let info = backend.models();
        assert_eq!(info.len(), 1);
        assert_eq!(info[0].max_batch, 4);
        assert_eq!(backend.kind(), "emulated");
    }
}
