//! The outbox: every message the scheduler publishes goes through one channel to one task, so
//! that what one actor sends reaches NATS in the order it was sent — a worker receives a
//! batch's plan before its revoke (docs/protocol.md §10). Actors never wait on it.
//!
//! The channel has no fixed capacity because actors cannot wait (an actor that blocked on a
//! full outbox would stop its own clock), but what it can hold is bounded by what feeds it:
//! every message in it answers an input that is itself bounded — at most one reply per held
//! request (the gateway's byte budget), one plan and one order message per batch or pass (the
//! requests the dispatcher knows, which the gateways bound), one revoke per lost worker. The
//! publisher drains it into the NATS client, whose own buffer is bounded and waits on the
//! socket.

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
