//! What a guard knows about its lock's expiry, shared with its watchdog.

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// The holder's view of the lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Lease {
    /// Held until at least this instant, by the client's clock (measured from the moment the
    /// acquiring or renewing request was sent, so never later than the server's expiry unless
    /// the clocks run at different rates).
    Until(Instant),
    /// A renewal found the lock gone, or the lease ran out without a confirmed renewal.
    Lost,
}

/// Shared between a guard and its watchdog.
#[derive(Debug)]
pub(crate) struct LeaseState {
    lease: Mutex<Lease>,
    /// Woken on every change, for `AsyncLockGuard::lost`.
    #[cfg(feature = "tokio")]
    pub changed: tokio::sync::Notify,
}

impl LeaseState {
    pub fn new(until: Instant) -> LeaseState {
        LeaseState {
            lease: Mutex::new(Lease::Until(until)),
            #[cfg(feature = "tokio")]
            changed: tokio::sync::Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Lease> {
        // Nothing can panic while the mutex is held; recover the value anyway.
        self.lease
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The current view, with an elapsed lease turned into `Lost`.
    pub fn get(&self) -> Lease {
        let mut lease = self.lock();
        if let Lease::Until(until) = *lease {
            if Instant::now() >= until {
                *lease = Lease::Lost;
            }
        }
        *lease
    }

    pub fn is_lost(&self) -> bool {
        self.get() == Lease::Lost
    }

    /// A renewal (or acquisition) sent at some instant was confirmed: held until `until`.
    /// A lock already seen lost stays lost.
    pub fn extend(&self, until: Instant) {
        let mut lease = self.lock();
        if let Lease::Until(old) = *lease {
            *lease = Lease::Until(old.max(until));
        }
        drop(lease);
        self.notify();
    }

    /// Books the outcome of a `LOCK.RENEW` to `ttl_ms` sent at `sent_at`: held until exactly
    /// `sent_at + ttl` when confirmed (`LOCK.RENEW` sets the expiry, shorter or not), lost for
    /// [`Error::NotHeld`], unchanged for a failure on the way (the deadline decides). Returns
    /// the outcome.
    pub fn book_renewal(&self, sent_at: Instant, ttl_ms: u64, outcome: Result<()>) -> Result<()> {
        match &outcome {
            Ok(()) => {
                let mut lease = self.lock();
                if let Lease::Until(_) = *lease {
                    *lease = Lease::Until(sent_at + Duration::from_millis(ttl_ms));
                }
                drop(lease);
                self.notify();
            }
            Err(Error::NotHeld) => self.mark_lost(),
            Err(_) => {}
        }
        outcome
    }

    /// How long the hold is surely valid from now, by the client's clock (`None`: lost).
    pub fn remaining(&self) -> Option<Duration> {
        match self.get() {
            Lease::Until(until) => Some(until.saturating_duration_since(Instant::now())),
            Lease::Lost => None,
        }
    }

    pub fn mark_lost(&self) {
        *self.lock() = Lease::Lost;
        self.notify();
    }

    fn notify(&self) {
        #[cfg(feature = "tokio")]
        self.changed.notify_waiters();
    }
}
