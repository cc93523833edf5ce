//! A precise one-shot timer for the dispatcher.
//!
//! Deferred scheduling sends a plan at the last moment that still meets the
//! earliest deadline, so a timer that fires late turns into a late batch or
//! a dropped request. tokio's timers (and so actix's `run_later`) round up
//! to the next millisecond; this thread waits on a channel with
//! `recv_timeout`, which wakes within tens of microseconds, and then tells
//! the dispatcher. The dispatcher has one wake-up time at a time, so one
//! slot is all the state there is.

use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::time::Instant;

/// Handle to the timer thread: `arm(Some(t))` to be woken at `t`, `arm(None)` to disarm.
#[derive(Debug, Clone)]
pub struct PreciseTimer {
    tx: Sender<Option<Instant>>,
}

impl PreciseTimer {
    /// Starts the thread; `fire` is called (on it) when an armed time passes.
    pub fn spawn(fire: impl Fn() + Send + 'static) -> Self {
        let (tx, rx) = mpsc::channel::<Option<Instant>>();
        std::thread::Builder::new()
            .name("baton-dispatch-timer".into())
            .spawn(move || {
                let mut armed: Option<Instant> = None;
                loop {
                    let next = match armed {
                        None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
                        Some(at) => {
                            let now = Instant::now();
                            if now >= at {
                                armed = None;
                                fire();
                                continue;
                            }
                            rx.recv_timeout(at - now)
                        }
                    };
                    match next {
                        Ok(t) => armed = t,
                        Err(RecvTimeoutError::Timeout) => {}
                        Err(RecvTimeoutError::Disconnected) => return,
                    }
                }
            })
            .expect("spawning the dispatcher's timer thread");
        Self { tx }
    }

    pub fn arm(&self, at: Option<Instant>) {
        let _ = self.tx.send(at);
    }
}
