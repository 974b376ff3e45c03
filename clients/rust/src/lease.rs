//! What a guard knows about its lock's expiry, shared with its watchdog.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
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
    /// Signalled on every change, for blocking waiters ([`LeaseState::wait_lost`]).
    changed_sync: Condvar,
    /// Woken on every change, for `AsyncLockGuard::lost`.
    #[cfg(feature = "tokio")]
    pub changed: tokio::sync::Notify,
}

impl LeaseState {
    pub fn new(until: Instant) -> LeaseState {
        LeaseState {
            lease: Mutex::new(Lease::Until(until)),
            changed_sync: Condvar::new(),
            #[cfg(feature = "tokio")]
            changed: tokio::sync::Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Lease> {
        // Nothing can panic while the mutex is held; recover the value anyway.
        self.lease.lock().unwrap_or_else(PoisonError::into_inner)
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
            Err(Error::NotHeld { .. }) => self.mark_lost(),
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

    /// Until when the hold is valid by the client's clock (`None`: lost).
    pub fn until(&self) -> Option<Instant> {
        match self.get() {
            Lease::Until(until) => Some(until),
            Lease::Lost => None,
        }
    }

    /// Blocks until the hold is lost or its validity less `margin` has passed (true), or
    /// until `limit` (false).
    pub fn wait_lost(&self, margin: Duration, limit: Option<Instant>) -> bool {
        let mut lease = self.lock();
        loop {
            let now = Instant::now();
            let deadline = match *lease {
                Lease::Lost => return true,
                Lease::Until(until) => until.checked_sub(margin).unwrap_or(now),
            };
            if now >= deadline {
                return true;
            }
            if limit.is_some_and(|limit| now >= limit) {
                return false;
            }
            let wake = limit.map_or(deadline, |limit| limit.min(deadline));
            lease = match self.changed_sync.wait_timeout(lease, wake - now) {
                Ok((lease, _)) => lease,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }

    fn notify(&self) {
        self.changed_sync.notify_all();
        #[cfg(feature = "tokio")]
        self.changed.notify_waiters();
    }
}
