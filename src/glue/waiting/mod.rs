//! Waiting and handing over: the queues and their blocked clients (waiters, blocking), applying
//! the core's handoff plan (handoff), the command filter that sees MIGRATE and CLIENT UNBLOCK
//! (command_filter, migration), and session holds bound to a connection (sessions,
//! session_index). Depends on `effects`, `server` and `core`; a callback lives in the file that
//! arms it.

pub mod blocking;
pub mod command_filter;
pub mod handoff;
pub mod migration;
pub mod session_index;
pub mod sessions;
pub mod several;
pub mod wait_graph;
pub mod waiters;
