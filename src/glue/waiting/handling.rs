//! What every settle is told, below both kinds of waiters (handoff.rs, several.rs): why the
//! key was freed, and the flag that marks our own key changes.

use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;

use crate::glue::effects::stats::Counter;

/// Set while we change lock keys ourselves, so our own deletions do not schedule checks. An
/// atomic, not a thread_local: every LOCK command sets it (see propagation.rs).
static HANDLING: AtomicBool = AtomicBool::new(false);

/// Whether our own key changes are under way (an unlink now is ours, unless a key is being
/// opened: effects/monitor.rs).
pub fn is_handling() -> bool {
    HANDLING.load(Relaxed)
}

/// Marks our own key changes for the duration of a scope: the lock values they unlink schedule
/// no checks (we hand over ourselves, or nobody waits).
pub struct Handling {
    was: bool,
}

impl Handling {
    pub fn begin() -> Handling {
        Handling {
            was: HANDLING.swap(true, Relaxed),
        }
    }
}

impl Drop for Handling {
    fn drop(&mut self) {
        HANDLING.store(self.was, Relaxed);
    }
}

/// Why a lock is being handed over (counted in INFO).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freed {
    /// Released by its owner, or taken back from a waiter gone before its reply.
    Released,
    Expired,
    /// Deleted, overwritten or flushed.
    Deleted,
}

impl Freed {
    /// The INFO counter of a handoff for this reason.
    pub fn counter(self) -> Counter {
        match self {
            Freed::Released => Counter::HandoffsOnRelease,
            Freed::Expired => Counter::HandoffsOnExpiry,
            Freed::Deleted => Counter::HandoffsOnDelete,
        }
    }
}
