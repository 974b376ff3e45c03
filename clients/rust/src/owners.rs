//! What this process knows of each owner's hold on each key: the hold count the server has
//! (one per live guard), commands whose outcome is unknown, and whether the hold was lost;
//! and one call at a time per owner and key, so that the `HELD n` each call sends is the
//! count the server has when it runs.
//!
//! Keyed by (database, key, owner id): every `Lock` with the same owner id shares the
//! record, as the server counts their holds together. Records live while a guard, a call or
//! an unsettled command needs them.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError, Weak};

use crate::lease::LeaseState;

type Id = (i64, Vec<u8>, Vec<u8>);

static REGISTRY: OnceLock<Mutex<HashMap<Id, Weak<Owner>>>> = OnceLock::new();

fn registry() -> MutexGuard<'static, HashMap<Id, Weak<Owner>>> {
    REGISTRY
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

/// The record of `owner` on `key` in database `db`, made if there is none.
pub(crate) fn owner(db: i64, key: &[u8], owner: &[u8]) -> Arc<Owner> {
    let id = (db, key.to_vec(), owner.to_vec());
    let mut map = registry();
    if let Some(found) = map.get(&id).and_then(Weak::upgrade) {
        return found;
    }
    let made = Arc::new(Owner {
        id: id.clone(),
        state: Mutex::new(State::default()),
        turn_free: Condvar::new(),
        #[cfg(feature = "tokio")]
        turn_free_async: tokio::sync::Notify::new(),
    });
    map.insert(id, Arc::downgrade(&made));
    made
}

/// One owner's hold on one key, as this process knows it.
pub(crate) struct Owner {
    id: Id,
    state: Mutex<State>,
    /// Signalled when the turn is given back (blocking callers).
    turn_free: Condvar,
    /// Notified when the turn is given back (async callers).
    #[cfg(feature = "tokio")]
    turn_free_async: tokio::sync::Notify,
}

impl std::fmt::Debug for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.lock();
        f.debug_struct("Owner")
            .field("count", &state.count)
            .field("owed", &state.owed)
            .field("lost", &state.lost)
            .finish_non_exhaustive()
    }
}

/// The counts a call sends, read under its turn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Counts {
    /// The live guards of the current hold: the count the server has once the `owed`
    /// releases are settled.
    pub held: u32,
    /// Commands sent whose effect is unknown (a timeout, a dropped connection): the server's
    /// count is from `held` to `held + owed`. The next call first sends `LOCK.RELEASE ...
    /// HELD k` for k from `held + owed` down to `held + 1`, which brings it to `held`
    /// whichever of them took effect.
    pub owed: u32,
}

#[derive(Default)]
pub(crate) struct State {
    /// A call of this owner on this key is under way.
    busy: bool,
    /// Live guards of the current hold (0: none).
    count: u32,
    owed: u32,
    /// The server said this owner holds nothing while guards live: the hold was lost.
    /// Their releases send nothing, and no new hold is taken until they are all gone.
    lost: bool,
    /// The current hold's validity, shared by its guards (a reentry never shortens it).
    lease: Option<Arc<LeaseState>>,
    /// The current hold's fencing token (a reentry keeps it).
    token: Option<u64>,
    /// Async session holds: a clone of the connection that took the hold (the server binds
    /// the hold to it), kept open until the hold ends.
    session_conn: Option<Box<dyn Any + Send>>,
    /// An acquisition with `WAIT` cut short whose give-back went unanswered may still be in
    /// line in the server until then: the owner's next acquisition waits for it (another one
    /// queued behind it would be admitted with it, as a reentry of the same owner).
    not_before: Option<std::time::Instant>,
    /// Keeps the record while `owed` releases are unsettled or `not_before` is ahead, and no
    /// guard is left.
    keep_alive: Option<Arc<Owner>>,
}

impl Owner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while the mutex is held; recover the value anyway.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits (blocking the thread) until no other call of this owner on this key is under
    /// way, and takes the turn.
    pub fn turn_blocking(self: &Arc<Self>) -> Turn {
        let mut state = self.lock();
        while state.busy {
            state = self
                .turn_free
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        state.busy = true;
        Turn {
            owner: Arc::clone(self),
        }
    }

    /// [`turn_blocking`](Self::turn_blocking) for async callers. Cancellation-safe.
    #[cfg(feature = "tokio")]
    pub async fn turn(self: &Arc<Self>) -> Turn {
        loop {
            let mut freed = std::pin::pin!(self.turn_free_async.notified());
            freed.as_mut().enable();
            {
                let mut state = self.lock();
                if !state.busy {
                    state.busy = true;
                    return Turn {
                        owner: Arc::clone(self),
                    };
                }
            }
            freed.await;
        }
    }

    /// The server said this owner no longer holds the key (a renewal answered 0, a
    /// session connection closed): marks `hold` lost, if it is still the current hold.
    pub fn hold_lost(&self, hold: &Arc<LeaseState>) {
        let mut state = self.lock();
        if state.lease.as_ref().is_some_and(|l| Arc::ptr_eq(l, hold)) {
            state.mark_lost();
        }
    }
}

impl Drop for Owner {
    fn drop(&mut self) {
        let mut map = registry();
        if map.get(&self.id).is_some_and(|w| w.strong_count() == 0) {
            map.remove(&self.id);
        }
    }
}

impl State {
    fn mark_lost(&mut self) {
        self.lost = true;
        // The server has nothing for this owner now: nothing is owed.
        self.owed = 0;
        if let Some(lease) = &self.lease {
            lease.mark_lost();
        }
    }
}

/// The right to make one call for an owner on a key; given back on drop.
pub(crate) struct Turn {
    owner: Arc<Owner>,
}

impl Turn {
    /// The counts as they stand.
    pub fn counts(&self) -> Counts {
        let state = self.owner.lock();
        Counts {
            held: state.count,
            owed: state.owed,
        }
    }

    /// Until when an acquisition must wait for an earlier one that may still be in line in
    /// the server (see [`State`]); `None` when nothing waits.
    pub fn not_before(&self) -> Option<std::time::Instant> {
        let mut state = self.owner.lock();
        if state
            .not_before
            .is_some_and(|t| t <= std::time::Instant::now())
        {
            state.not_before = None;
        }
        state.not_before
    }

    /// An acquisition may stay in line in the server until `until`.
    pub fn pending_until(&self, until: std::time::Instant) {
        let mut state = self.owner.lock();
        state.not_before = Some(state.not_before.map_or(until, |t| t.max(until)));
    }

    /// The current hold's fencing token, while guards of it live.
    pub fn hold_token(&self) -> Option<u64> {
        let state = self.owner.lock();
        state.token.filter(|_| state.count > 0)
    }

    /// The counts for an acquisition. A reentry into a hold already seen lost (by the
    /// server or by the client's clock) is refused: `None`.
    pub fn acquire_counts(&self) -> Option<Counts> {
        let state = self.owner.lock();
        let lost = state.lost || state.lease.as_ref().is_some_and(|l| l.is_lost());
        if state.count > 0 && lost {
            return None;
        }
        Some(Counts {
            held: state.count,
            owed: state.owed,
        })
    }

    /// The counts for one guard's release, or `None` when its hold was lost (nothing to
    /// send; the guard is forgotten).
    pub fn release_counts(&self) -> Option<Counts> {
        let mut state = self.owner.lock();
        if state.lost {
            state.count = state.count.saturating_sub(1);
            return None;
        }
        Some(Counts {
            held: state.count,
            owed: state.owed,
        })
    }

    /// A round trip came back whole: every owed release ran.
    pub fn settled(&self) {
        self.owner.lock().owed = 0;
    }

    /// A command went out whose effect is unknown.
    pub fn owe(&self) {
        let mut state = self.owner.lock();
        state.owed = state.owed.saturating_add(1);
    }

    /// The server says the current hold is gone.
    pub fn lost(&self) {
        self.owner.lock().mark_lost();
    }

    /// An acquisition was granted: a new hold (valid until `valid_until`), or one more count
    /// of the current one (whose validity is extended to it if later). Returns the hold's
    /// shared state, and whether the hold is new.
    pub fn granted(
        &self,
        valid_until: std::time::Instant,
        token: u64,
        session_conn: impl FnOnce() -> Option<Box<dyn Any + Send>>,
    ) -> (Arc<LeaseState>, bool) {
        let mut state = self.owner.lock();
        let fresh = state.count == 0;
        let lease = match (&state.lease, fresh) {
            (Some(lease), false) => {
                lease.extend(valid_until);
                Arc::clone(lease)
            }
            _ => {
                let lease = Arc::new(LeaseState::new(valid_until));
                state.lease = Some(Arc::clone(&lease));
                state.token = Some(token);
                state.lost = false;
                state.session_conn = session_conn();
                lease
            }
        };
        state.count += 1;
        (lease, fresh)
    }

    /// One guard's release is done (whatever the outcome: the guard is gone).
    pub fn forget_one(&self) {
        let mut state = self.owner.lock();
        state.count = state.count.saturating_sub(1);
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        let (old_conn, old_keep) = {
            let mut state = self.owner.lock();
            state.busy = false;
            let old_conn = if state.count == 0 {
                state.lease = None;
                state.token = None;
                state.lost = false;
                state.session_conn.take()
            } else {
                None
            };
            let pending = state.owed > 0 || state.not_before.is_some();
            let keep = (state.count == 0 && pending).then(|| Arc::clone(&self.owner));
            (old_conn, std::mem::replace(&mut state.keep_alive, keep))
        };
        // Dropped outside the lock (a connection's drop may do work; the record's own last
        // reference is this turn's).
        drop(old_conn);
        drop(old_keep);
        self.owner.turn_free.notify_all();
        #[cfg(feature = "tokio")]
        self.owner.turn_free_async.notify_waiters();
    }
}
