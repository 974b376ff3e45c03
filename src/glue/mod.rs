//! Thin glue between the server and the pure core, one concern a file.
//!
//! Functions here take the server's handles (contexts, keys, strings) as raw pointers that the
//! server made and keeps alive for the running callback; they are valid by construction, so
//! marking every such function `unsafe` would only move the same promise around.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

pub mod api;
pub mod blocked_client;
pub mod blocking;
pub mod cluster_floor;
pub mod command_filter;
pub mod command_info;
pub mod commands;
pub mod configs;
pub mod context;
pub mod datatype;
pub mod entry;
pub mod events;
pub mod handoff;
pub mod help;
pub mod info;
pub mod key_ref;
pub mod keys;
pub mod migration;
pub mod propagation;
pub mod registration;
pub mod replicate;
pub mod session_index;
pub mod sessions;
pub mod signals;
pub mod stats;
pub mod timers;
pub mod token_counter;
pub mod value;
pub mod waiters;
