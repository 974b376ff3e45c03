//! Clients blocked in LOCK.OBSERVE, by key, and waking them when the key's holders change.
//!
//! Every change of a lock key passes here: a key written through `LockKey` (commands, handoffs,
//! session ends, LOCK.APPLY on a replica) reports its snapshot when it is closed, and a lock
//! value leaving the keyspace (DEL, expiry, eviction, RENAME, MIGRATE) or a flush reports the
//! key free. An observer whose snapshot differs is woken once, with the key to answer about;
//! its reply (in the command's file, which blocked it) reads the state after the change. With
//! nobody observing, each report is one atomic load.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::Relaxed;

use crate::core::state::epoch::Snapshot;
use crate::glue::server::blocked_client::BlockedClient;
use crate::glue::server::key_ref::KeyRef;

struct Observer {
    client: BlockedClient,
    /// What the observer saw when it blocked.
    seen: Snapshot,
}

thread_local! {
    static OBSERVERS: RefCell<HashMap<KeyRef, Vec<Observer>>> = RefCell::new(HashMap::new());
}

/// How many clients observe any key: read on every report, kept by every change.
static OBSERVING: AtomicUsize = AtomicUsize::new(0);

/// Whether anyone observes any key (the one check a report makes when nobody does).
pub fn anyone_observing() -> bool {
    OBSERVING.load(Relaxed) > 0
}

/// How many clients observe now (INFO).
pub fn observers() -> usize {
    OBSERVING.load(Relaxed)
}

/// `client` waits for the holders of `key` to differ from `seen`.
pub fn observe(key: KeyRef, client: BlockedClient, seen: Snapshot) {
    OBSERVERS.with(|all| {
        all.borrow_mut()
            .entry(key)
            .or_default()
            .push(Observer { client, seen })
    });
    OBSERVING.fetch_add(1, Relaxed);
}

/// The key `name` in `db` now has holders `now`: observers that saw otherwise are woken.
pub fn changed(db: i32, name: &[u8], now: Snapshot) {
    if !anyone_observing() {
        return;
    }
    let key = KeyRef::new(db, name);
    let woken = OBSERVERS.with(|all| {
        let mut all = all.borrow_mut();
        let Some(observers) = all.get_mut(&key) else {
            return Vec::new();
        };
        let (woken, staying): (Vec<_>, Vec<_>) = observers
            .drain(..)
            .partition(|observer| observer.seen != now);
        *observers = staying;
        if observers.is_empty() {
            all.remove(&key);
        }
        woken
    });
    wake(woken, &key);
}

/// Every observer of a key in `db` (-1: every database) is woken, whatever it saw: after a
/// flush, a SWAPDB or a role change, its answer is read afresh.
pub fn wake_all(db: i32) {
    if !anyone_observing() {
        return;
    }
    let woken: Vec<(KeyRef, Vec<Observer>)> = OBSERVERS.with(|all| {
        let mut all = all.borrow_mut();
        let keys: Vec<KeyRef> = all
            .keys()
            .filter(|key| db < 0 || key.db == db)
            .cloned()
            .collect();
        keys.into_iter()
            .filter_map(|key| all.remove(&key).map(|observers| (key, observers)))
            .collect()
    });
    for (key, observers) in woken {
        wake(observers, &key);
    }
}

/// The observer behind blocked-client handle `id` leaves without a wake (timeout, disconnect):
/// its handle, to be released by the caller; `None` if it was woken already.
pub fn leave(id: usize) -> Option<BlockedClient> {
    let left = OBSERVERS.with(|all| {
        let mut all = all.borrow_mut();
        let (key, at) = all.iter().find_map(|(key, observers)| {
            observers
                .iter()
                .position(|observer| observer.client.id() == id)
                .map(|at| (key.clone(), at))
        })?;
        let observers = all.get_mut(&key)?;
        let observer = observers.swap_remove(at);
        if observers.is_empty() {
            all.remove(&key);
        }
        Some(observer.client)
    });
    if left.is_some() {
        OBSERVING.fetch_sub(1, Relaxed);
    }
    left
}

fn wake(observers: Vec<Observer>, key: &KeyRef) {
    OBSERVING.fetch_sub(observers.len(), Relaxed);
    for observer in observers {
        let answer = Box::into_raw(Box::new(key.clone())).cast::<c_void>();
        observer.client.wake_with(answer);
    }
}
