//! Baton's worker: one per GPU or device. It announces itself to the
//! scheduler, receives batch plans and their inputs over NATS, runs each
//! batch on a dedicated execution thread through a [`backend::Backend`], and
//! answers every request of the batch.

pub mod backend;
