//! The pure core of rlock: lock state, its transitions, requests, encoding and errors.
//!
//! Nothing here knows about Redis: time comes in as an explicit `now` (unix milliseconds), so
//! every transition is a plain function that `cargo test` can check exhaustively.

pub mod deadlock;
pub mod encoding;
pub mod epoch;
pub mod error;
pub mod handoff;
pub mod holds;
pub mod hot_keys;
pub mod latency;
pub mod limits;
pub mod lock;
pub mod lock_log;
pub mod lost_holds;
pub mod memory;
pub mod plain;
pub mod queue;
pub mod request;
pub mod several;
#[cfg(test)]
mod several_model;
pub mod tokens;

/// Unix time in milliseconds, as Redis keeps key expiries.
pub type Millis = i64;
