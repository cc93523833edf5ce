//! Baton's profiler: measures a model's batch latency `L(b)` on this worker's backend.
//!
//! For each batch size `b = 1..=max_batch` it runs `warmup` untimed batches and then `repeats`
//! timed ones through [`Backend::run_batch`] — the same path serving takes, including stacking
//! and splitting — on synthetic inputs of the model's declared dtype and shape, and records the
//! mean and standard deviation. The result is a [`Profile`] the scheduler, planner and simulator
//! read (`baton-worker profile … --out FILE`). It works with any backend; the torch backend also
//! uses it to measure a quick profile for models loaded without one.

use std::time::Instant;

use baton_common::profile::{BatchLatency, Profile};
use baton_common::wire::{DType, Tensor};

use crate::backend::{Backend, BackendError, InputSpec};

/// Measures `model` for `b = 1..=max_batch`; `progress(b, runs_done)` is called after every run.
pub fn measure(
    backend: &mut dyn Backend,
    model: &str,
    max_batch: u32,
    warmup: u32,
    repeats: u32,
    mut progress: impl FnMut(u32, u32),
) -> Result<Profile, BackendError> {
    let info = backend
        .models()
        .into_iter()
        .find(|m| m.name == model)
        .ok_or_else(|| BackendError::UnknownModel(model.to_string()))?;
    let repeats = repeats.max(1);
    let mut table = Vec::with_capacity(max_batch as usize);
    for b in 1..=max_batch {
        let batch: Vec<Vec<Tensor>> = (0..b).map(|i| synthetic_request(&info.inputs, i)).collect();
        let mut samples = Vec::with_capacity(repeats as usize);
        for run in 0..warmup + repeats {
            let start = Instant::now();
            let results = backend.run_batch(model, &batch)?;
            let us = start.elapsed().as_secs_f64() * 1e6;
            if let Some(Err(e)) = results.into_iter().find(|r| r.is_err()) {
                return Err(BackendError::Failed(format!("synthetic input rejected: {e}")));
            }
            if run >= warmup {
                samples.push(us);
            }
            progress(b, run + 1);
        }
        let mean = samples.iter().sum::<f64>() / samples.len() as f64;
        let var = samples.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / samples.len() as f64;
        table.push(BatchLatency::new(b, mean, var.sqrt()));
    }
    Profile::from_table(table, 0.0, 0.0)
        .map(|p| p.with_model(model))
        .map_err(|e| BackendError::Failed(e.to_string()))
}

/// One request's inputs: deterministic pseudo-random values in [-1, 1) for float inputs (so
/// nothing degenerate such as all-zero images is timed), zeros otherwise.
pub fn synthetic_request(spec: &[InputSpec], seed: u32) -> Vec<Tensor> {
    spec.iter()
        .map(|s| {
            let n: u64 = s.shape.iter().product();
            match s.dtype {
                DType::F32 => {
                    let mut x = u64::from(seed).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                    let values: Vec<f32> = (0..n)
                        .map(|_| {
                            x ^= x << 13;
                            x ^= x >> 7;
                            x ^= x << 17;
                            (x >> 40) as f32 / (1u64 << 23) as f32 - 1.0
                        })
                        .collect();
                    Tensor::from_f32(s.shape.clone(), &values)
                }
                d => Tensor {
                    dtype: d,
                    shape: s.shape.clone(),
                    data: vec![0; (n * d.size_bytes()) as usize],
                },
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EmulatedBackend, EmulatedModel};

    #[test]
    fn measures_every_batch_size_of_an_emulated_model() {
        let profile = Profile::from_spec("sleep#1000,2000,0,0", 3).unwrap();
        let mut backend = EmulatedBackend::new([EmulatedModel {
            name: "m".into(),
            profile,
            inputs: vec![InputSpec {
                dtype: DType::F32,
                shape: vec![2, 2],
            }],
        }]);
        let mut runs = 0;
        let p = measure(&mut backend, "m", 3, 1, 2, |_, _| runs += 1).unwrap();
        assert_eq!(runs, 9);
        assert_eq!(p.max_batch(), 3);
        assert_eq!(p.model(), Some("m"));
        for b in 1..=3 {
            let slept = 1000.0 * f64::from(b) + 2000.0;
            let got = p.forward_mean_us(b).unwrap();
            assert!(got >= slept && got < slept + 5000.0, "b={b}: {got}");
        }
        assert!(matches!(
            measure(&mut backend, "x", 1, 0, 1, |_, _| {}),
            Err(BackendError::UnknownModel(_))
        ));
    }

    #[test]
    fn synthetic_inputs_match_the_spec() {
        let spec = [
            InputSpec {
                dtype: DType::F32,
                shape: vec![3, 4],
            },
            InputSpec {
                dtype: DType::I64,
                shape: vec![2],
            },
        ];
        let r = synthetic_request(&spec, 7);
        assert_eq!(crate::backend::validate_request(&spec, &r), Ok(()));
        assert!(r[0].to_f32_vec().unwrap().iter().all(|v| (-1.0..1.0).contains(v)));
        assert_ne!(synthetic_request(&spec, 1)[0], synthetic_request(&spec, 2)[0]);
    }
}
