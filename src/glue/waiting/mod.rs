//! Waiting and handing over: the queues and their blocked clients (waiters, blocking), applying
//! the core's handoff plan (handoff, with what every settle is told in handling), several-key
//! waiters (several below handoff, several_blocking above it), the wait-for graph (wait_graph),
//! the command filter that sees MIGRATE and CLIENT UNBLOCK (command_filter, migration), and
//! session holds bound to a connection (sessions, session_index). Depends on `effects`, `server`
//! and `core`; a callback lives in the file that arms it.

pub mod blocking;
pub mod command_filter;
pub mod handling;
pub mod handoff;
pub mod migration;
pub mod session_index;
pub mod sessions;
pub mod several;
pub mod several_blocking;
pub mod wait_graph;
pub mod waiters;
