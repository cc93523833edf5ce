//! The execution backend: what runs a batch on one device.
//!
//! A worker owns one backend on a dedicated execution thread (so a long
//! forward pass never blocks NATS I/O). The emulated backend sleeps `L(b)`
//! from a profile and returns a checksum per input; the torch backend runs
//! libtorch models through `tch`. Both answer every request of a batch
//! separately: one request with the wrong shape is rejected without failing
//! the others.

use baton_common::profile::Profile;
use baton_common::wire::{DType, Tensor};

/// What a model accepts per request (without the batch dimension).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputSpec {
    pub dtype: DType,
    /// Shape of one request's input; the batch dimension is added by stacking.
    pub shape: Vec<u64>,
}

/// A model a backend has loaded.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInfo {
    pub name: String,
    pub inputs: Vec<InputSpec>,
    pub max_batch: u32,
    /// The latency profile the scheduler should plan this model with on this worker (announced
    /// in the worker's hello): the emulated backend's sleep profile, or the torch backend's
    /// measured one.
    pub profile: Profile,
}

/// Why one request of a batch could not be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("input {index}: expected {expected:?} {expected_shape:?}, got {got:?} {got_shape:?}")]
    Mismatch {
        index: usize,
        expected: DType,
        expected_shape: Vec<u64>,
        got: DType,
        got_shape: Vec<u64>,
    },
    #[error("expected {expected} input tensors, got {got}")]
    Arity { expected: usize, got: usize },
}

/// Why a whole batch (or a model) failed.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("model `{0}` is not loaded on this worker")]
    UnknownModel(String),
    #[error("batch of {got} exceeds model `{model}`'s max batch {max}")]
    BatchTooLarge { model: String, got: usize, max: u32 },
    #[error("backend failure: {0}")]
    Failed(String),
}

/// One request's outcome within a batch.
pub type ItemResult = Result<Vec<Tensor>, RequestError>;

/// An execution backend for one device. Called from the worker's execution
/// thread only, hence `&mut self` and `Send` (not `Sync`).
pub trait Backend: Send {
    /// Short name for logs and the hello message (`emulated`, `torch`).
    fn kind(&self) -> &'static str;

    /// The models loaded, with what they accept.
    fn models(&self) -> Vec<ModelInfo>;

    /// Runs one batch: `inputs[i]` are request i's tensors. Returns one
    /// result per request, in order; requests that fail validation get an
    /// error and the rest still run as one batch.
    fn run_batch(&mut self, model: &str, inputs: &[Vec<Tensor>]) -> Result<Vec<ItemResult>, BackendError>;
}

/// Checks one request's tensors against a model's declared inputs.
pub fn validate_request(spec: &[InputSpec], tensors: &[Tensor]) -> Result<(), RequestError> {
    if spec.len() != tensors.len() {
        return Err(RequestError::Arity {
            expected: spec.len(),
            got: tensors.len(),
        });
    }
    for (index, (s, t)) in spec.iter().zip(tensors).enumerate() {
        if s.dtype != t.dtype || s.shape != t.shape {
            return Err(RequestError::Mismatch {
                index,
                expected: s.dtype,
                expected_shape: s.shape.clone(),
                got: t.dtype,
                got_shape: t.shape.clone(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> Vec<InputSpec> {
        vec![InputSpec {
            dtype: DType::F32,
            shape: vec![3, 2],
        }]
    }

    #[test]
    fn accepts_matching_inputs() {
        let t = Tensor::from_f32(vec![3, 2], &[0.0; 6]);
        assert_eq!(validate_request(&spec(), &[t]), Ok(()));
    }

    #[test]
    fn names_the_mismatch() {
        let t = Tensor::from_f32(vec![2, 3], &[0.0; 6]);
        let e = validate_request(&spec(), &[t]).unwrap_err();
        assert!(e.to_string().contains("[3, 2]"), "{e}");
        assert_eq!(
            validate_request(&spec(), &[]),
            Err(RequestError::Arity { expected: 1, got: 0 })
        );
    }
}
