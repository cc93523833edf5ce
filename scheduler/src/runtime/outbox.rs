//! The outbox: every message the scheduler publishes goes through one channel to one task, so
//! that what one actor sends reaches NATS in the order it was sent — a worker receives a
//! batch's plan and inputs before its revoke (docs/protocol.md §10). Actors never wait on it.

use bytes::Bytes;
use tokio::sync::mpsc::{self, UnboundedSender};

/// Something to publish: (subject, body), in order.
pub type Outbox = UnboundedSender<(String, Bytes)>;

/// Publishes everything sent to the returned outbox, in order, on `nats`.
pub fn publisher(nats: async_nats::Client) -> Outbox {
    let (tx, mut rx) = mpsc::unbounded_channel::<(String, Bytes)>();
    tokio::spawn(async move {
        while let Some((subject, body)) = rx.recv().await {
            if let Err(e) = nats.publish(subject.clone(), body).await {
                tracing::warn!(%subject, "publish failed: {e}");
            }
        }
    });
    tx
}
