//! The pure core of rlock: lock state and its transitions (state), what is stored (stored),
//! waiting and handing over (waiting), several keys at once (several), requests and errors, and
//! what operators see (monitor).
//!
//! Nothing here knows about Redis: time comes in as an explicit `now` (unix milliseconds), so
//! every transition is a plain function that `cargo test` can check exhaustively.

pub mod error;
pub mod monitor;
pub mod request;
pub mod several;
#[cfg(test)]
mod several_model;
pub mod state;
pub mod stored;
pub mod waiting;

pub type Millis = i64;
