//! The client wire protocol: what a pipeline sends on `baton.infer.<model>` and what it gets back.
//!
//! These types cross process (and language) boundaries, so they are defined once, here, and
//! specified for other languages in `docs/protocol.md`. The encoding is MessagePack with *named*
//! fields — every struct is a map keyed by field-name strings (`rmp_serde::to_vec_named`), enums
//! are snake_case strings and tensor data is a `bin` blob — because a Python or Go client can read
//! that with any MessagePack library and no schema, and fields can be added later without
//! breaking old readers.
//!
//! Decoding never panics on malformed input: [`decode`] returns a [`WireError`] that says what was
//! expected and points at the spec, which the gateway sends back as a `bad_request` rejection.
//!
//! Longer than ~600 lines on purpose: about 480 lines of code and the tests that pin it, kept
//! beside the code they check (STYLE.md).

use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Element type of a [`Tensor`]. Data is always little-endian.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DType {
    /// 32-bit IEEE float.
    F32,
    /// 16-bit IEEE float.
    F16,
    /// bfloat16.
    #[serde(rename = "bf16")]
    BF16,
    /// 64-bit IEEE float.
    F64,
    /// Signed 64-bit integer.
    I64,
    /// Signed 32-bit integer.
    I32,
    /// Signed 16-bit integer.
    I16,
    /// Signed 8-bit integer.
    I8,
    /// Unsigned 8-bit integer.
    U8,
    /// Boolean, one byte per element (0 or 1).
    Bool,
}

impl DType {
    /// Every dtype, in the order of the table in `docs/protocol.md`.
    pub const ALL: &'static [DType] = &[
        DType::F32,
        DType::F16,
        DType::BF16,
        DType::F64,
        DType::I64,
        DType::I32,
        DType::I16,
        DType::I8,
        DType::U8,
        DType::Bool,
    ];

    /// Bytes per element.
    pub fn size_bytes(self) -> u64 {
        match self {
            DType::F64 | DType::I64 => 8,
            DType::F32 | DType::I32 => 4,
            DType::F16 | DType::BF16 | DType::I16 => 2,
            DType::I8 | DType::U8 | DType::Bool => 1,
        }
    }

    /// The wire name, e.g. `"bf16"`.
    pub fn as_str(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            DType::F64 => "f64",
            DType::I64 => "i64",
            DType::I32 => "i32",
            DType::I16 => "i16",
            DType::I8 => "i8",
            DType::U8 => "u8",
            DType::Bool => "bool",
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for DType {
    type Err = String;

    /// Accepts the wire names (`f32`, `u8`, …), case-insensitively.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let l = s.trim().to_ascii_lowercase();
        DType::ALL.iter().copied().find(|d| d.as_str() == l).ok_or_else(|| {
            let names: Vec<&str> = DType::ALL.iter().map(|d| d.as_str()).collect();
            format!("unknown dtype `{s}`; expected one of {}", names.join(", "))
        })
    }
}

/// A dense, row-major, little-endian tensor.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tensor {
    /// Element type.
    pub dtype: DType,
    /// Dimensions, outermost first. `[]` is a scalar (one element).
    pub shape: Vec<u64>,
    /// Raw element bytes; `len == product(shape) * dtype.size_bytes()`.
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}

impl fmt::Debug for Tensor {
    // Tensor data can be megabytes; a Debug dump of it helps nobody.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tensor")
            .field("dtype", &self.dtype)
            .field("shape", &self.shape)
            .field("data_len", &self.data.len())
            .finish()
    }
}

impl Tensor {
    /// Number of elements implied by the shape, or `None` if it overflows `u64`.
    pub fn element_count(&self) -> Option<u64> {
        self.shape.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d))
    }

    /// Checks that `data` holds exactly `product(shape) * dtype.size_bytes()` bytes.
    pub fn validate(&self) -> Result<(), WireError> {
        let expected = self
            .element_count()
            .and_then(|n| n.checked_mul(self.dtype.size_bytes()));
        match expected {
            None => Err(WireError::TensorTooLarge {
                dtype: self.dtype,
                shape: self.shape.clone(),
            }),
            Some(expected) if expected != self.data.len() as u64 => Err(WireError::TensorSizeMismatch {
                dtype: self.dtype,
                shape: self.shape.clone(),
                expected,
                actual: self.data.len() as u64,
            }),
            Some(_) => Ok(()),
        }
    }

    /// Builds an `f32` tensor from values (little-endian).
    ///
    /// The shape is taken as given and not checked against `values.len()` (so this never fails or
    /// panics); call [`validate`](Self::validate) if the two may disagree.
    pub fn from_f32(shape: Vec<u64>, values: &[f32]) -> Tensor {
        Tensor {
            dtype: DType::F32,
            shape,
            data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }

    /// Reads an `f32` tensor's values; errors if the dtype is not `f32` or the size is wrong.
    pub fn to_f32_vec(&self) -> Result<Vec<f32>, WireError> {
        if self.dtype != DType::F32 {
            return Err(WireError::WrongDType {
                expected: DType::F32,
                actual: self.dtype,
            });
        }
        self.validate()?;
        Ok(self
            .data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }
}

/// One inference request, the body of a NATS request on `baton.infer.<model>`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct InferRequest {
    /// Client-chosen id echoed in the reply; the gateway assigns one when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Model inputs, in the model's input order. May be empty for emulated (`sleep`) models.
    #[serde(default)]
    pub inputs: Vec<Tensor>,
    /// Latency budget in milliseconds, counted from when the gateway receives the request.
    /// Absent: the gateway's `default_slo_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slo_ms: Option<f64>,
    /// Reserved for priority scheduling; currently ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
}

impl InferRequest {
    /// Checks every input tensor and the SLO (finite and positive when given).
    pub fn validate(&self) -> Result<(), WireError> {
        for (index, t) in self.inputs.iter().enumerate() {
            t.validate().map_err(|e| WireError::Input {
                index,
                source: Box::new(e),
            })?;
        }
        if let Some(slo) = self.slo_ms {
            if !(slo.is_finite() && slo > 0.0) {
                return Err(WireError::BadSlo(slo));
            }
        }
        Ok(())
    }

    /// Total bytes of tensor data in the request.
    pub fn payload_bytes(&self) -> u64 {
        self.inputs.iter().map(|t| t.data.len() as u64).sum()
    }
}

/// Outcome of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// The model ran; `outputs` holds its results.
    Ok,
    /// Baton declined the request; `reason` says why. The model did not run.
    Rejected,
    /// The model ran (or tried to) and failed; `error` has the message.
    Error,
}

impl Status {
    /// The wire name, e.g. `"rejected"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Rejected => "rejected",
            Status::Error => "error",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a request was rejected. See the table in `docs/protocol.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// The request cannot finish before its deadline, even in the best batch.
    DeadlineUnattainable,
    /// Baton is out of capacity (payload budget full, queue limits).
    Overloaded,
    /// No worker serves the model named in the subject.
    UnknownModel,
    /// The body could not be decoded or failed validation.
    BadRequest,
    /// The body exceeds the gateway's `max_payload_bytes`.
    PayloadTooLarge,
    /// The worker running the request died and there was no time to retry elsewhere.
    WorkerLost,
    /// Baton is shutting down and no longer accepts work.
    ShuttingDown,
}

impl RejectReason {
    /// Every reason, in declaration order.
    pub const ALL: &'static [RejectReason] = &[
        RejectReason::DeadlineUnattainable,
        RejectReason::Overloaded,
        RejectReason::UnknownModel,
        RejectReason::BadRequest,
        RejectReason::PayloadTooLarge,
        RejectReason::WorkerLost,
        RejectReason::ShuttingDown,
    ];

    /// The wire name, e.g. `"deadline_unattainable"`; also a good metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::DeadlineUnattainable => "deadline_unattainable",
            RejectReason::Overloaded => "overloaded",
            RejectReason::UnknownModel => "unknown_model",
            RejectReason::BadRequest => "bad_request",
            RejectReason::PayloadTooLarge => "payload_too_large",
            RejectReason::WorkerLost => "worker_lost",
            RejectReason::ShuttingDown => "shutting_down",
        }
    }
}

impl From<baton_core::RejectReason> for RejectReason {
    fn from(r: baton_core::RejectReason) -> Self {
        match r {
            baton_core::RejectReason::DeadlineUnattainable => RejectReason::DeadlineUnattainable,
            baton_core::RejectReason::UnknownModel => RejectReason::UnknownModel,
            baton_core::RejectReason::WorkerLost => RejectReason::WorkerLost,
            baton_core::RejectReason::Overloaded => RejectReason::Overloaded,
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a request's time went, in microseconds, as measured by Baton.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Timings {
    /// From gateway arrival to batch start.
    #[serde(default)]
    pub queued_us: u64,
    /// Batch execution time on the worker.
    #[serde(default)]
    pub exec_us: u64,
    /// Size of the batch the request ran in (0 if it never ran).
    #[serde(default)]
    pub batch_size: u32,
}

/// The one reply every request gets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InferReply {
    /// The request's id (client-chosen or gateway-assigned).
    pub id: String,
    /// Outcome.
    pub status: Status,
    /// Set exactly when `status` is `rejected`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<RejectReason>,
    /// Model outputs when `status` is `ok`; empty otherwise.
    #[serde(default)]
    pub outputs: Vec<Tensor>,
    /// Human-readable explanation for `rejected` and `error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The result is delivered after the request's deadline (only under the `fcfs` drop policy
    /// or when a batch overran its profile).
    #[serde(default)]
    pub late: bool,
    /// Time breakdown.
    #[serde(default)]
    pub timings: Timings,
}

impl InferReply {
    /// A successful reply.
    pub fn ok(id: impl Into<String>, outputs: Vec<Tensor>, timings: Timings) -> Self {
        InferReply {
            id: id.into(),
            status: Status::Ok,
            reason: None,
            outputs,
            error: None,
            late: false,
            timings,
        }
    }

    /// A rejection with its reason and an explanation for humans.
    pub fn rejected(id: impl Into<String>, reason: RejectReason, message: impl Into<String>) -> Self {
        InferReply {
            id: id.into(),
            status: Status::Rejected,
            reason: Some(reason),
            outputs: Vec::new(),
            error: Some(message.into()),
            late: false,
            timings: Timings::default(),
        }
    }

    /// A failure while running the model.
    pub fn error(id: impl Into<String>, message: impl Into<String>, timings: Timings) -> Self {
        InferReply {
            id: id.into(),
            status: Status::Error,
            reason: None,
            outputs: Vec::new(),
            error: Some(message.into()),
            late: false,
            timings,
        }
    }
}

/// Errors decoding or validating wire messages. The `Display` text is meant to be sent back to
/// the client verbatim.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The bytes are not a MessagePack encoding of the expected type.
    #[error("message body is not a valid MessagePack {what}: {message}; see docs/protocol.md")]
    Decode {
        /// The expected type, e.g. `InferRequest`.
        what: &'static str,
        /// The decoder's complaint.
        message: String,
    },

    /// A tensor's data length does not match its dtype and shape.
    #[error(
        "tensor of dtype {dtype} and shape {shape:?} needs {expected} bytes of data \
         (product of shape x {} bytes per element), but has {actual}",
        dtype.size_bytes()
    )]
    TensorSizeMismatch {
        /// Element type.
        dtype: DType,
        /// Declared shape.
        shape: Vec<u64>,
        /// Bytes the shape implies.
        expected: u64,
        /// Bytes present.
        actual: u64,
    },

    /// A tensor's shape implies more than `u64::MAX` bytes.
    #[error("tensor of dtype {dtype} and shape {shape:?} is impossibly large (size overflows 64 bits)")]
    TensorTooLarge {
        /// Element type.
        dtype: DType,
        /// Declared shape.
        shape: Vec<u64>,
    },

    /// A tensor has a different dtype than the caller asked for.
    #[error("tensor has dtype {actual}, expected {expected}")]
    WrongDType {
        /// What the caller wanted.
        expected: DType,
        /// What the tensor has.
        actual: DType,
    },

    /// One of a request's inputs is invalid.
    #[error("input {index}: {source}")]
    Input {
        /// Position in `inputs`.
        index: usize,
        /// What is wrong with it.
        source: Box<WireError>,
    },

    /// `slo_ms` is not a positive, finite number.
    #[error("slo_ms is {0}; it must be a positive number of milliseconds (or absent for the default)")]
    BadSlo(f64),
}

/// Encodes a value as MessagePack with named fields (maps keyed by field name).
///
/// # Panics
///
/// Only if `T`'s `Serialize` implementation itself fails, which none of the wire types do.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    rmp_serde::to_vec_named(value).expect("MessagePack encoding into a Vec cannot fail for wire types")
}

/// Decodes a MessagePack message. Never panics, whatever the bytes.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, WireError> {
    rmp_serde::from_slice(bytes).map_err(|e| WireError::Decode {
        what: short_type_name::<T>(),
        message: e.to_string(),
    })
}

fn short_type_name<T>() -> &'static str {
    let full = std::any::type_name::<T>();
    // `baton_common::wire::InferRequest` -> `InferRequest` (generic parameters are not expected).
    full.rsplit("::").next().unwrap_or(full)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The example request in docs/protocol.md.
    fn doc_example() -> InferRequest {
        InferRequest {
            id: Some("r1".into()),
            inputs: vec![Tensor::from_f32(vec![2], &[1.0, 2.0])],
            slo_ms: Some(100.0),
            priority: None,
        }
    }

    const DOC_EXAMPLE_HEX: &str = "83a26964a27231a6696e7075747391\
        83a56474797065a3663332a57368617065910\
        2a464617461c408 0000803f00000040\
        a6736c6f5f6d73cb4059000000000000";

    #[test]
    fn doc_example_hex_is_exact_and_in_the_doc() {
        let want: String = DOC_EXAMPLE_HEX.split_whitespace().collect();
        let got = hex(&encode(&doc_example()));
        println!("{got}");
        assert_eq!(got, want);
        let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/protocol.md"))
            .expect("docs/protocol.md exists");
        let doc_hex: String = doc
            .split("<!-- example-hex -->")
            .nth(1)
            .expect("docs/protocol.md has an <!-- example-hex --> block")
            .chars()
            .filter(char::is_ascii_hexdigit)
            .collect();
        assert!(
            doc_hex.starts_with(&want),
            "docs/protocol.md hex dump is stale; it should be {want}"
        );
    }

    #[test]
    fn request_and_reply_round_trip() {
        let req = InferRequest {
            id: None,
            inputs: vec![
                Tensor::from_f32(vec![1, 3], &[0.5, -1.0, 3.25]),
                Tensor {
                    dtype: DType::U8,
                    shape: vec![],
                    data: vec![7],
                },
            ],
            slo_ms: Some(33.5),
            priority: Some(-2),
        };
        let back: InferRequest = decode(&encode(&req)).unwrap();
        assert_eq!(back, req);
        assert!(back.validate().is_ok());
        assert_eq!(back.inputs[0].to_f32_vec().unwrap(), vec![0.5, -1.0, 3.25]);
        assert_eq!(back.payload_bytes(), 13);

        let reply = InferReply::ok(
            "abc",
            vec![Tensor::from_f32(vec![2], &[1.0, 2.0])],
            Timings {
                queued_us: 1500,
                exec_us: 16024,
                batch_size: 10,
            },
        );
        assert_eq!(decode::<InferReply>(&encode(&reply)).unwrap(), reply);
        for &reason in RejectReason::ALL {
            let r = InferReply::rejected("x", reason, format!("because {reason}"));
            assert_eq!(decode::<InferReply>(&encode(&r)).unwrap(), r);
        }
        let mut late = InferReply::error("y", "boom", Timings::default());
        late.late = true;
        assert_eq!(decode::<InferReply>(&encode(&late)).unwrap(), late);
    }

    #[test]
    fn decoding_is_lenient_as_docs_protocol_promises() {
        // {"slo_ms": 100 (positive fixint), "id": nil, "priority": nil, "extra": true}
        let mut bytes = vec![0x84, 0xa6];
        bytes.extend_from_slice(b"slo_ms");
        bytes.push(0x64);
        bytes.push(0xa2);
        bytes.extend_from_slice(b"id");
        bytes.push(0xc0);
        bytes.push(0xa8);
        bytes.extend_from_slice(b"priority");
        bytes.push(0xc0);
        bytes.push(0xa5);
        bytes.extend_from_slice(b"extra");
        bytes.push(0xc3);
        let req: InferRequest = decode(&bytes).unwrap();
        assert_eq!(
            req,
            InferRequest {
                slo_ms: Some(100.0),
                ..InferRequest::default()
            }
        );
        // float 32 for slo_ms: {"slo_ms": 2.5f32}
        let mut bytes = vec![0x81, 0xa6];
        bytes.extend_from_slice(b"slo_ms");
        bytes.push(0xca);
        bytes.extend_from_slice(&2.5f32.to_be_bytes());
        assert_eq!(decode::<InferRequest>(&bytes).unwrap().slo_ms, Some(2.5));
        // A reply with only the required keys {"id": "a", "status": "ok"}.
        let mut bytes = vec![0x82, 0xa2];
        bytes.extend_from_slice(b"id");
        bytes.push(0xa1);
        bytes.push(b'a');
        bytes.push(0xa6);
        bytes.extend_from_slice(b"status");
        bytes.push(0xa2);
        bytes.extend_from_slice(b"ok");
        let reply: InferReply = decode(&bytes).unwrap();
        assert_eq!(reply, InferReply::ok("a", vec![], Timings::default()));
    }

    #[test]
    fn empty_map_is_a_valid_request() {
        // 0x80 = empty map: every InferRequest field is optional.
        let req: InferRequest = decode(&[0x80]).unwrap();
        assert_eq!(req, InferRequest::default());
    }

    #[test]
    fn encoded_maps_have_named_string_keys_and_string_enums() {
        let reply = InferReply::rejected("r9", RejectReason::DeadlineUnattainable, "too late");
        let v: serde_json::Value = rmp_serde::from_slice(&encode(&reply)).unwrap();
        let obj = v.as_object().unwrap();
        let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["error", "id", "late", "outputs", "reason", "status", "timings"]);
        assert_eq!(obj["status"], "rejected");
        assert_eq!(obj["reason"], "deadline_unattainable");
        assert_eq!(obj["timings"]["batch_size"], 0);

        // serde_json::Value has no bytes type, so look at a request without tensors...
        let req = InferRequest {
            inputs: vec![],
            ..doc_example()
        };
        let v: serde_json::Value = rmp_serde::from_slice(&encode(&req)).unwrap();
        assert_eq!(v, serde_json::json!({"id": "r1", "inputs": [], "slo_ms": 100.0}));
        // ...and at a tensor's keys in the raw bytes: fixstr "dtype" then fixstr "f32".
        assert!(hex(&encode(&doc_example())).contains("a56474797065a3663332"));

        for &d in DType::ALL {
            let v: serde_json::Value = rmp_serde::from_slice(&encode(&d)).unwrap();
            assert_eq!(v, d.as_str());
        }
        for &r in RejectReason::ALL {
            let v: serde_json::Value = rmp_serde::from_slice(&encode(&r)).unwrap();
            assert_eq!(v, r.as_str());
            assert_eq!(r.to_string(), r.as_str());
        }
    }

    #[test]
    fn tensor_data_is_msgpack_bin() {
        // bin8 marker 0xc4 followed by the length; not an array of small ints.
        let t = Tensor {
            dtype: DType::U8,
            shape: vec![3],
            data: vec![1, 2, 3],
        };
        let bytes = encode(&t);
        let h = hex(&bytes);
        assert!(h.contains("a464617461c403010203"), "{h}");
    }

    #[test]
    fn garbage_is_an_error_naming_the_type_and_the_spec() {
        for bytes in [&b""[..], b"\xc1", b"hello", b"\x93\x01\x02\x03", b"\x81\xa2id\x05"] {
            let err = decode::<InferRequest>(bytes).unwrap_err();
            let msg = err.to_string();
            assert!(
                msg.starts_with("message body is not a valid MessagePack InferRequest: "),
                "{msg}"
            );
            assert!(msg.ends_with("see docs/protocol.md"), "{msg}");
        }
        let err = decode::<InferReply>(b"\x80").unwrap_err();
        assert!(err.to_string().contains("InferReply"), "{err}");
    }

    #[test]
    fn tensor_validation_messages() {
        let t = Tensor {
            dtype: DType::F32,
            shape: vec![2, 3],
            data: vec![0; 20],
        };
        let msg = t.validate().unwrap_err().to_string();
        assert_eq!(
            msg,
            "tensor of dtype f32 and shape [2, 3] needs 24 bytes of data \
             (product of shape x 4 bytes per element), but has 20"
        );
        let t = Tensor {
            dtype: DType::BF16,
            shape: vec![u64::MAX, 2],
            data: vec![],
        };
        let err = t.validate().unwrap_err();
        assert!(matches!(err, WireError::TensorTooLarge { .. }));
        assert!(err.to_string().contains("overflows"), "{err}");
        // Element count fits but bytes overflow.
        let t = Tensor {
            dtype: DType::F64,
            shape: vec![u64::MAX / 4],
            data: vec![],
        };
        assert!(matches!(t.validate(), Err(WireError::TensorTooLarge { .. })));
        // Zero-sized dimension: no data.
        let t = Tensor {
            dtype: DType::I64,
            shape: vec![4, 0],
            data: vec![],
        };
        assert!(t.validate().is_ok());

        let req = InferRequest {
            inputs: vec![
                Tensor::from_f32(vec![1], &[1.0]),
                Tensor {
                    dtype: DType::I16,
                    shape: vec![3],
                    data: vec![0; 5],
                },
            ],
            ..InferRequest::default()
        };
        let msg = req.validate().unwrap_err().to_string();
        assert!(
            msg.starts_with("input 1: tensor of dtype i16 and shape [3] needs 6 bytes"),
            "{msg}"
        );

        for slo in [0.0, -5.0, f64::NAN, f64::INFINITY] {
            let req = InferRequest {
                slo_ms: Some(slo),
                ..InferRequest::default()
            };
            assert!(matches!(req.validate(), Err(WireError::BadSlo(_))), "{slo}");
        }

        assert!(matches!(
            Tensor::from_f32(vec![3], &[1.0]).validate(),
            Err(WireError::TensorSizeMismatch {
                expected: 12,
                actual: 4,
                ..
            })
        ));
        let t = Tensor {
            dtype: DType::I32,
            shape: vec![1],
            data: vec![0; 4],
        };
        assert_eq!(
            t.to_f32_vec().unwrap_err().to_string(),
            "tensor has dtype i32, expected f32"
        );
    }

    #[test]
    fn dtype_sizes() {
        let sizes: Vec<(String, u64)> = DType::ALL.iter().map(|d| (d.to_string(), d.size_bytes())).collect();
        let want = [
            ("f32", 4),
            ("f16", 2),
            ("bf16", 2),
            ("f64", 8),
            ("i64", 8),
            ("i32", 4),
            ("i16", 2),
            ("i8", 1),
            ("u8", 1),
            ("bool", 1),
        ];
        let want: Vec<(String, u64)> = want.iter().map(|&(n, s)| (n.to_string(), s)).collect();
        assert_eq!(sizes, want);
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode::<InferRequest>(&bytes);
            let _ = decode::<InferReply>(&bytes);
        }

        #[test]
        fn decoding_corrupted_requests_never_panics(
            flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut bytes = encode(&doc_example());
            for (i, b) in flips {
                let i = i.index(bytes.len());
                bytes[i] = b;
            }
            let cut = cut.index(bytes.len() + 1);
            bytes.truncate(cut);
            if let Ok(req) = decode::<InferRequest>(&bytes) {
                let _ = req.validate();
            }
        }
    }
}
