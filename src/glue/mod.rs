//! Thin glue between the server and the pure core, in rooms whose dependencies point one way:
//! `registration` -> `commands`, `hooks` -> `waiting` -> `effects` -> `server` -> `core`.
//!
//! Functions here take the server's handles (contexts, keys, strings) as raw pointers that the
//! server made and keeps alive for the running callback; they are valid by construction, so
//! marking every such function `unsafe` would only move the same promise around.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

pub mod commands;
pub mod effects;
pub mod hooks;
pub mod registration;
pub mod server;
pub mod waiting;
