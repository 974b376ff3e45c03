//! What both guards (blocking and async) hold, and the bookkeeping they share.

use std::sync::Arc;

use crate::lease::LeaseState;
use crate::lock::{release_pipeline, Counts, ReleaseSent};
use crate::owners::{Owner, Turn};

/// A held lock: key, owner id, fencing token, the hold's validity (shared with the owner's
/// other guards of it and with the watchdog), and the owner's record.
#[derive(Clone, Debug)]
pub(crate) struct Held {
    pub key: Vec<u8>,
    pub owner: Vec<u8>,
    pub token: u64,
    pub state: Arc<LeaseState>,
    pub record: Arc<Owner>,
    /// This guard took the hold (count 0 to 1) as a session hold: the server binds the hold
    /// to this guard's connection.
    pub binds_session: bool,
}

impl Held {
    /// What this guard's release sends under `turn`, or `None` when its hold was lost
    /// (nothing to send: the guard is forgotten).
    pub fn release_start(&self, turn: &Turn) -> Option<(redis::Pipeline, ReleaseSent)> {
        let counts: Counts = turn.release_counts()?;
        let sent = ReleaseSent {
            counts,
            resent: false,
            was_valid: !self.state.is_lost(),
            binds_session: self.binds_session,
        };
        Some((release_pipeline(&self.key, &self.owner, counts), sent))
    }

    /// The guards' `Debug`: key and owner as text, token, whether lost.
    pub fn debug(&self, guard: &str, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct(guard)
            .field("key", &String::from_utf8_lossy(&self.key))
            .field("owner", &String::from_utf8_lossy(&self.owner))
            .field("token", &self.token)
            .field("lost", &self.state.is_lost())
            .finish_non_exhaustive()
    }
}
