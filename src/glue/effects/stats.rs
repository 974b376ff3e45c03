//! Counters of what happened since the module loaded, for `INFO lock`. Atomics: INFO may be
//! asked for while a crash report is written, and must never wait on anything.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    /// LOCK.ACQUIRE calls that took a free lock at once.
    Acquisitions,
    /// Holds added by the owner (LOCK.ACQUIRE by the holder, LOCK.REENTER).
    Reentries,
    /// Holds dropped by the owner (LOCK.RELEASE that changed something).
    Releases,
    Renewals,
    /// LOCK.ACQUIRE calls that found the lock taken (answered nil, or queued with WAIT).
    Contended,
    /// Freed locks given to the longest waiter: on release (or taken back from a waiter that
    /// vanished before its reply), on expiry, after a DEL/overwrite/flush.
    HandoffsOnRelease,
    HandoffsOnExpiry,
    HandoffsOnDelete,
    /// WAIT timeouts that passed (the waiter got nil).
    WaitTimeouts,
    /// Lock keys whose ttl ran out (removed by rlock at the expiry millisecond, or by the
    /// server's own expiry).
    Expirations,
    /// Locks thrown away because this node became a replica and its data was replaced.
    DroppedOnResync,
    /// Of `Acquisitions` and handoffs: new shared holds, and new semaphore permits.
    SharedHolds,
    LimitHolds,
    /// Session holds ended because their connection closed.
    SessionEnds,
    /// Loads, replays and floor messages with a token beyond the ceiling (core/state/tokens.rs): a
    /// RESTORE refused, or the token left out of the counter.
    TokensRefused,
}

const COUNTERS: usize = Counter::TokensRefused as usize + 1;

static COUNTS: [AtomicU64; COUNTERS] = [const { AtomicU64::new(0) }; COUNTERS];

/// Counts a new hold of a kind other than exclusive.
pub fn count_kind(want: crate::core::state::holds::Want) {
    use crate::core::state::holds::Want;
    match want {
        Want::Exclusive => {}
        Want::Shared => count(Counter::SharedHolds),
        Want::Limit(_) => count(Counter::LimitHolds),
    }
}

pub fn count(counter: Counter) {
    add(counter, 1);
}

pub fn add(counter: Counter, n: u64) {
    COUNTS[counter as usize].fetch_add(n, Ordering::Relaxed);
}

pub fn get(counter: Counter) -> u64 {
    COUNTS[counter as usize].load(Ordering::Relaxed)
}
