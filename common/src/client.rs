//! The Rust client: what a video pipeline links to talk to Baton.
//!
//! Shaped like async-nats: [`ClientOptions`] is a builder that ends in
//! `connect`, errors are typed with a [`ClientError::kind`]. One call,
//! [`Client::infer`], sends a request and waits for its one reply, no
//! longer than its SLO plus a grace; [`InferStream`] pipelines a camera's
//! frames with a bounded number in flight and yields results in frame order.

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use crate::nats::Retry;
use crate::settings::{NatsSettings, Secret};
use crate::subjects;
use crate::wire::{self, InferReply, InferRequest, RejectReason, Status, Tensor, Timings, WireError};

/// How long past its SLO a reply may take before the client gives up
/// (Baton answers by deadline + a small grace; this covers the network).
pub const DEFAULT_GRACE: Duration = Duration::from_secs(1);
/// The SLO the client sends when a call gives none.
pub const DEFAULT_SLO: Duration = Duration::from_millis(100);

/// How long [`ClientOptions::connect`] waits for an unreachable NATS server.
pub const CONNECT_PATIENCE: Duration = Duration::from_secs(10);

/// Builder for a [`Client`].
///
/// Credentials and TLS are those of Baton's `[nats]` settings (one home: [`crate::nats`]):
/// set them one by one, or take a whole [`NatsSettings`] with [`ClientOptions::nats_settings`].
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Credentials, TLS and connection name; the URL is given to `connect`.
    nats: NatsSettings,
    grace: Duration,
    default_slo: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl ClientOptions {
    pub fn new() -> Self {
        Self {
            nats: NatsSettings {
                name: String::new(),
                ..NatsSettings::default()
            },
            grace: DEFAULT_GRACE,
            default_slo: DEFAULT_SLO,
        }
    }

    /// Credentials, TLS and connection name from Baton's `[nats]` settings (its `url` is
    /// ignored: `connect` takes the URL).
    pub fn nats_settings(mut self, settings: &NatsSettings) -> Self {
        self.nats = settings.clone();
        self
    }

    /// Connection name shown by the NATS server.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.nats.name = name.into();
        self
    }

    /// How long past the SLO to wait for a reply.
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// SLO for calls that give none.
    pub fn default_slo(mut self, slo: Duration) -> Self {
        self.default_slo = slo;
        self
    }

    /// Authenticate with a user and password.
    pub fn user_and_password(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.nats.user = user.into();
        self.nats.password = Secret::new(password);
        self
    }

    /// Authenticate with a token.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.nats.token = Secret::new(token);
        self
    }

    /// Authenticate with an nkey: the user's seed (`SU…`).
    pub fn nkey(mut self, seed: impl Into<String>) -> Self {
        self.nats.nkey_seed = Secret::new(seed);
        self
    }

    /// Authenticate with a `.creds` file (user JWT and nkey seed).
    pub fn credentials_file(mut self, path: impl Into<String>) -> Self {
        self.nats.creds_file = path.into();
        self
    }

    /// Verify the server's certificate against the CA certificate(s) in this PEM file.
    pub fn ca_file(mut self, path: impl Into<String>) -> Self {
        self.nats.ca_file = path.into();
        self
    }

    /// Present this client certificate and key (PEM) for mutual TLS.
    pub fn client_certificate(mut self, cert: impl Into<String>, key: impl Into<String>) -> Self {
        self.nats.cert_file = cert.into();
        self.nats.key_file = key.into();
        self
    }

    /// Refuse to connect without TLS.
    pub fn require_tls(mut self, required: bool) -> Self {
        self.nats.require_tls = required;
        self
    }

    /// Connects, waiting up to [`CONNECT_PATIENCE`] for an unreachable server. A rejected
    /// credential or a failed TLS handshake is an error at once, saying which setting to check.
    pub async fn connect(self, url: &str) -> Result<Client, ClientError> {
        let settings = NatsSettings {
            url: url.to_string(),
            ..self.nats
        };
        let nats = crate::nats::connect(&settings, Retry::For(CONNECT_PATIENCE), |o| o)
            .await
            .map_err(|e| ClientError::connect(url, e))?;
        Ok(Client {
            nats,
            grace: self.grace,
            default_slo: self.default_slo,
        })
    }
}

/// A connection to Baton.
#[derive(Debug, Clone)]
pub struct Client {
    nats: async_nats::Client,
    grace: Duration,
    default_slo: Duration,
}

/// A successful inference.
#[derive(Debug, Clone, PartialEq)]
pub struct Inference {
    pub id: String,
    pub outputs: Vec<Tensor>,
    /// Finished after the request's deadline (only under the `fcfs` policy).
    pub late: bool,
    pub timings: Timings,
}

/// What went wrong, broadly (see [`ClientError::kind`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientErrorKind {
    /// Could not connect to NATS.
    Connect,
    /// No gateway is listening: is the Baton scheduler running?
    NoResponders,
    /// No reply within SLO + grace.
    TimedOut,
    /// Baton rejected the request (see the reason).
    Rejected,
    /// The model failed on this request.
    Server,
    /// The reply could not be decoded, or the request could not be sent.
    Protocol,
}

/// A failed call.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientError {
    Connect { url: String, message: String },
    NoResponders { model: String },
    TimedOut { model: String, after: Duration },
    Rejected { reason: RejectReason, message: String },
    Server { message: String },
    Protocol { message: String },
}

impl ClientError {
    /// `message` names the URL (every [`crate::nats::NatsConnectError`] does).
    fn connect(url: &str, e: impl fmt::Display) -> Self {
        ClientError::Connect {
            url: url.to_string(),
            message: e.to_string(),
        }
    }

    pub fn kind(&self) -> ClientErrorKind {
        match self {
            ClientError::Connect { .. } => ClientErrorKind::Connect,
            ClientError::NoResponders { .. } => ClientErrorKind::NoResponders,
            ClientError::TimedOut { .. } => ClientErrorKind::TimedOut,
            ClientError::Rejected { .. } => ClientErrorKind::Rejected,
            ClientError::Server { .. } => ClientErrorKind::Server,
            ClientError::Protocol { .. } => ClientErrorKind::Protocol,
        }
    }

    /// The rejection reason, when Baton rejected the request.
    pub fn reason(&self) -> Option<RejectReason> {
        match self {
            ClientError::Rejected { reason, .. } => Some(*reason),
            _ => None,
        }
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Connect { message, .. } => f.write_str(message),
            ClientError::NoResponders { model } => write!(
                f,
                "no Baton gateway answers on {}: is `baton scheduler` running and connected to this NATS server?",
                subjects::infer(model)
            ),
            ClientError::TimedOut { model, after } => {
                write!(f, "no reply for model `{model}` within {} ms", after.as_millis())
            }
            ClientError::Rejected { reason, message } => write!(f, "rejected ({reason}): {message}"),
            ClientError::Server { message } => write!(f, "inference failed: {message}"),
            ClientError::Protocol { message } => write!(f, "protocol error: {message}"),
        }
    }
}

impl std::error::Error for ClientError {}

impl From<WireError> for ClientError {
    fn from(e: WireError) -> Self {
        ClientError::Protocol { message: e.to_string() }
    }
}

impl Client {
    pub async fn connect(url: &str) -> Result<Client, ClientError> {
        ClientOptions::new().connect(url).await
    }

    /// The underlying NATS connection.
    pub fn nats(&self) -> &async_nats::Client {
        &self.nats
    }

    /// Runs `model` on `inputs` within `slo` (default: the client's).
    pub async fn infer(
        &self,
        model: &str,
        inputs: Vec<Tensor>,
        slo: Option<Duration>,
    ) -> Result<Inference, ClientError> {
        let slo = slo.unwrap_or(self.default_slo);
        let req = InferRequest {
            id: None,
            inputs,
            slo_ms: Some(slo.as_secs_f64() * 1e3),
            priority: None,
        };
        let reply = self.send(model, &req, slo).await?;
        into_result(reply)
    }

    /// How long after a request's SLO the client still waits for its reply.
    pub fn grace(&self) -> Duration {
        self.grace
    }

    /// Sends a prepared request and returns Baton's reply as is (including
    /// rejections, which [`Client::infer`] turns into errors).
    pub async fn send(&self, model: &str, req: &InferRequest, slo: Duration) -> Result<InferReply, ClientError> {
        let body = wire::encode(req);
        self.send_raw(model, body.into(), slo).await
    }

    /// Sends raw bytes as a request body (for tests of bad input).
    pub async fn send_raw(&self, model: &str, body: bytes::Bytes, slo: Duration) -> Result<InferReply, ClientError> {
        let after = slo + self.grace;
        let request = async_nats::Request::new().payload(body).timeout(Some(after));
        match self.nats.send_request(subjects::infer(model), request).await {
            Ok(msg) => Ok(wire::decode::<InferReply>(&msg.payload)?),
            Err(e) => Err(match e.kind() {
                async_nats::RequestErrorKind::TimedOut => ClientError::TimedOut {
                    model: model.to_string(),
                    after,
                },
                async_nats::RequestErrorKind::NoResponders => ClientError::NoResponders {
                    model: model.to_string(),
                },
                async_nats::RequestErrorKind::MaxPayloadExceeded => ClientError::Protocol {
                    message: format!(
                        "request body is larger than the NATS server's max_payload ({e}); raise max_payload on the \
                         server (see docs/protocol.md) or send smaller inputs"
                    ),
                },
                _ => ClientError::Protocol { message: e.to_string() },
            }),
        }
    }

    /// A pipelined stream of requests to `model` with at most `window` in flight.
    pub fn stream(&self, model: &str, slo: Option<Duration>, window: usize) -> InferStream {
        InferStream {
            client: self.clone(),
            model: model.to_string(),
            slo,
            window: window.max(1),
            inflight: VecDeque::new(),
        }
    }
}

fn into_result(reply: InferReply) -> Result<Inference, ClientError> {
    match reply.status {
        Status::Ok => Ok(Inference {
            id: reply.id,
            outputs: reply.outputs,
            late: reply.late,
            timings: reply.timings,
        }),
        Status::Rejected => Err(ClientError::Rejected {
            reason: reply.reason.unwrap_or(RejectReason::BadRequest),
            message: reply.error.unwrap_or_default(),
        }),
        Status::Error => Err(ClientError::Server {
            message: reply.error.unwrap_or_default(),
        }),
    }
}

type Pending = tokio::task::JoinHandle<Result<Inference, ClientError>>;

/// Frames of one camera, pipelined: `submit` waits only when `window`
/// requests are in flight, and results come back in submission order.
pub struct InferStream {
    client: Client,
    model: String,
    slo: Option<Duration>,
    window: usize,
    inflight: VecDeque<Pending>,
}

impl fmt::Debug for InferStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InferStream")
            .field("model", &self.model)
            .field("window", &self.window)
            .field("in_flight", &self.inflight.len())
            .finish()
    }
}

impl InferStream {
    /// Sends a frame. When the window is full, first waits for the oldest
    /// frame's result and returns it.
    pub async fn submit(&mut self, inputs: Vec<Tensor>) -> Option<Result<Inference, ClientError>> {
        let oldest = if self.inflight.len() >= self.window {
            self.next().await
        } else {
            None
        };
        let c = self.client.clone();
        let model = self.model.clone();
        let slo = self.slo;
        self.inflight
            .push_back(tokio::spawn(async move { c.infer(&model, inputs, slo).await }));
        oldest
    }

    /// The oldest frame's result, or `None` when nothing is in flight.
    pub async fn next(&mut self) -> Option<Result<Inference, ClientError>> {
        let h = self.inflight.pop_front()?;
        Some(h.await.unwrap_or_else(|e| {
            Err(ClientError::Protocol {
                message: format!("request task failed: {e}"),
            })
        }))
    }

    pub fn in_flight(&self) -> usize {
        self.inflight.len()
    }
}
