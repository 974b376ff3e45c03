//! What every integration test shares, by concern:
//!
//! - `server`: the server guard. Every test starts its own `redis-server` on a free loopback
//!   port with its own temporary directory; the guard stops the server (by its own pid) and
//!   removes the directory when it goes out of scope, also when the test panics. A test can
//!   never talk to another test's server: `conn()` goes through a Unix socket in the server's
//!   own temp dir, and the TCP port (for replication, MIGRATE and raw sockets) is accepted only
//!   once the server listening on it reports the pid this guard started (`tcp_conn()` checks it
//!   again on every connection).
//! - `process`, `temp_dirs`, `paths`: servers die with the test process, even when it is
//!   killed; the temp dirs of a test process that is gone are removed by the next one that
//!   starts a server; where the module and the server binary are.
//! - `replies`: sending a command (`run`, `call!`) and reading its reply (`int`, `nil`, ...).
//! - `background`: a command sent from a thread, its reply read later (blocked calls).
//! - `commands`: one shared set of command helpers (`acquire`, `release`, `exists`, ...).
//! - `locks`: `LOCK.INFO` parsed and a key's whole observable state.
//! - `wait`: polls for a state with a generous bound; nothing here sleeps to assert timing.
//! - `payloads`: DUMP payloads (their checksum), `rng`: the fuzz loops' generator.
//!
//! Everything is re-exported here: `use common::*;` brings it all.

#![allow(dead_code)]

// `call!` is used by the modules below it: declared first, with its textual scope.
#[macro_use]
mod replies;
mod background;
mod commands;
mod locks;
mod paths;
mod payloads;
mod process;
mod rng;
mod server;
mod temp_dirs;
mod wait;

// Each test file uses part of it.
#[allow(unused_imports)]
pub use self::{
    background::*, commands::*, locks::*, paths::*, payloads::*, process::*, replies::*, rng::*,
    server::*, temp_dirs::*, wait::*,
};
