//! Baton's integration tests live under `tests/`.
