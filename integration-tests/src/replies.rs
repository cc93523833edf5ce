//! Every inference reply sent in a deployment, counted per request.
//!
//! The loadgen takes the first reply to each request and cannot see a second one, yet "exactly
//! one reply" (DESIGN §2.3) is what a client relies on: a request re-dispatched after its worker
//! was declared dead must not also be answered by that worker when it comes back. Replies go
//! straight to each request's own inbox (`_INBOX.<connection>.<token>`), so the test process
//! subscribes to `_INBOX.>` and counts the messages that decode as an `InferReply`, per subject.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use baton_common::wire::{self, InferReply};
use futures::StreamExt;

/// Replies seen so far: inbox subject → one line per reply (`id status reason`).
type Seen = Arc<Mutex<HashMap<String, Vec<String>>>>;

/// Counts replies until dropped.
#[derive(Debug)]
pub struct ReplyWatch {
    seen: Seen,
    task: tokio::task::JoinHandle<()>,
}

impl ReplyWatch {
    /// Subscribes on `client` (and waits until the server has the subscription).
    pub async fn start(client: &async_nats::Client) -> Self {
        let mut sub = client
            .subscribe("_INBOX.>")
            .await
            .unwrap_or_else(|e| panic!("subscribing to _INBOX.>: {e}"));
        client
            .flush()
            .await
            .unwrap_or_else(|e| panic!("flushing the _INBOX.> subscription: {e}"));
        let seen = Seen::default();
        let sink = seen.clone();
        let task = tokio::spawn(async move {
            while let Some(m) = sub.next().await {
                let Ok(r) = wire::decode::<InferReply>(&m.payload) else {
                    continue;
                };
                let line = format!("{} {:?} {:?}", r.id, r.status, r.reason);
                sink.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .entry(m.subject.to_string())
                    .or_default()
                    .push(line);
            }
        });
        Self { seen, task }
    }

    /// Requests answered more than once, with their replies.
    pub fn duplicates(&self) -> Vec<(String, Vec<String>)> {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let mut d: Vec<_> = seen
            .iter()
            .filter(|(_, replies)| replies.len() > 1)
            .map(|(s, r)| (s.clone(), r.clone()))
            .collect();
        d.sort();
        d
    }

    /// Requests answered at least once.
    pub fn answered(&self) -> usize {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

impl Drop for ReplyWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}
