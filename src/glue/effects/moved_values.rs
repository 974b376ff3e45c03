//! Lock values the server may have moved to a name rlock was not told. `RENAME` and `MOVE` add
//! the value under its new name, then unlink it from the old one without freeing it; a module
//! hears of the unlink (the type's `unlink2`) and nothing of the new name. Where rlock must act
//! on such a value later, it tracks it from that moment until the value is freed:
//! - a session hold whose key the server unlinked while its connection was open (events.rs):
//!   when the connection closes, its hold is ended wherever it is now (sessions.rs);
//! - a key restored with holds of their own expiries (datatype.rs): its expiry is fixed
//!   wherever it is once the `RESTORE` (and the rest of its transaction or script) is done.
//!
//! An entry has an id that stays while the value is rewritten by rlock (`relocated`: our own
//! write replaced it, under a name we then know); the server's next unlink makes the place
//! unknown again, and `lock_scan::find_values` looks for it. An address is only compared,
//! never read. The type's free callback drops a freed value (`freed`), so a value deleted or
//! expired is never looked for; it may run on a background thread (FLUSHALL ASYNC), hence the
//! mutex, and an atomic keeps the free of an untracked value at one load.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Mutex, MutexGuard};

use crate::glue::server::key_ref::KeyRef;

/// Why a value is tracked, and where it is if rlock knows.
#[derive(Debug)]
struct Tracked {
    address: usize,
    /// Connections (client ids) with a session hold in the value.
    sessions: Vec<u64>,
    /// A restored value whose key's expiry is still to be fixed.
    restored: bool,
    /// The server unlinked it this turn (not our own write): the lock log learns next turn
    /// whether it was freed (deleted, overwritten) or moved (monitor.rs).
    unlinked: bool,
    /// Where rlock last wrote or restored it (None: unknown since the server unlinked it).
    at: Option<KeyRef>,
    /// How many times the server unlinked it since it was tracked (a search that missed it
    /// while it moved goes round again).
    moves: u64,
}

#[derive(Default)]
struct Table {
    by_id: HashMap<u64, Tracked>,
    by_address: HashMap<usize, u64>,
    next_id: u64,
}

impl Table {
    /// The entry of the value at `address`, made if new.
    fn entry(&mut self, address: usize) -> (u64, &mut Tracked) {
        let id = match self.by_address.get(&address) {
            Some(&id) => id,
            None => {
                self.next_id += 1;
                let id = self.next_id;
                self.by_address.insert(address, id);
                let tracked = Tracked {
                    address,
                    sessions: Vec::new(),
                    restored: false,
                    unlinked: false,
                    at: None,
                    moves: 0,
                };
                self.by_id.insert(id, tracked);
                id
            }
        };
        let tracked = self
            .by_id
            .get_mut(&id)
            .unwrap_or_else(|| unreachable!("every address maps to an entry"));
        (id, tracked)
    }

    fn remove(&mut self, id: u64) {
        if let Some(tracked) = self.by_id.remove(&id) {
            self.by_address.remove(&tracked.address);
        }
    }

    /// Drops entry `id` if nothing is tracked in it any more.
    fn drop_if_done(&mut self, id: u64) {
        if self
            .by_id
            .get(&id)
            .is_some_and(|t| t.sessions.is_empty() && !t.restored && !t.unlinked)
        {
            self.remove(id);
        }
    }
}

static ANY_TRACKED: AtomicBool = AtomicBool::new(false);
static TABLE: Mutex<Option<Table>> = Mutex::new(None);

/// Runs `f` on the table, keeping ANY_TRACKED right.
fn with_table<T>(f: impl FnOnce(&mut Table) -> T) -> T {
    // A panic while the table was held cannot leave it half-changed: take it as it is.
    let mut guard: MutexGuard<'_, Option<Table>> = TABLE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let table = guard.get_or_insert_with(Table::default);
    let result = f(table);
    ANY_TRACKED.store(!table.by_id.is_empty(), Relaxed);
    result
}

/// Whether any value is tracked (one load: the free callback and our writes ask first).
#[inline]
pub fn any() -> bool {
    ANY_TRACKED.load(Relaxed)
}

/// The server unlinked the value at `address` (not our own write) while connection `client`
/// had a session hold in it: it may live on under a name we do not know.
pub fn track_session(address: usize, client: u64) {
    with_table(|table| {
        let (_, tracked) = table.entry(address);
        tracked.at = None;
        if !tracked.sessions.contains(&client) {
            tracked.sessions.push(client);
        }
    });
}

/// A value restored at `at` whose key's expiry is to be fixed once the RESTORE is done; its
/// entry's id.
pub fn track_restored(address: usize, at: Option<KeyRef>) -> u64 {
    with_table(|table| {
        let (id, tracked) = table.entry(address);
        tracked.restored = true;
        tracked.at = at;
        id
    })
}

/// The server unlinked the value at `address` (not our own write): if it is tracked, its place
/// is unknown from now on.
pub fn server_unlinked(address: usize) {
    if !any() {
        return;
    }
    with_table(|table| {
        if let Some(&id) = table.by_address.get(&address) {
            if let Some(tracked) = table.by_id.get_mut(&id) {
                tracked.at = None;
                tracked.moves += 1;
            }
        }
    });
}

/// The server unlinked the value at `address` (not our own write, a lock with holds): tracked
/// until the next turn tells whether it was freed; its entry's id.
pub fn track_unlinked(address: usize) -> u64 {
    with_table(|table| {
        let (id, tracked) = table.entry(address);
        tracked.unlinked = true;
        id
    })
}

/// Whether the value entry `id` tracks since `track_unlinked` still lives (it was moved, not
/// freed); it is tracked no more for that.
pub fn take_unlinked(id: u64) -> bool {
    with_table(|table| {
        let Some(tracked) = table.by_id.get_mut(&id) else {
            return false;
        };
        let alive = std::mem::replace(&mut tracked.unlinked, false);
        table.drop_if_done(id);
        alive
    })
}

/// Whether the value at `address` is a restored one whose key's expiry is still to be fixed.
pub fn is_restored(address: usize) -> bool {
    any()
        && with_table(|table| {
            let id = table.by_address.get(&address);
            id.and_then(|id| table.by_id.get(id))
                .is_some_and(|tracked| tracked.restored)
        })
}

/// The value at `address` was freed: nothing of it is looked for any more.
#[inline]
pub fn freed(address: usize) {
    if any() {
        forget(address);
    }
}

#[cold]
#[inline(never)]
fn forget(address: usize) {
    with_table(|table| {
        if let Some(id) = table.by_address.remove(&address) {
            table.by_id.remove(&id);
        }
    });
}

/// Our own write replaced the value at `old` with `new`, at `at`: a tracked entry follows,
/// with a known place.
pub fn relocated(old: usize, new: usize, at: KeyRef) {
    with_table(|table| {
        let Some(id) = table.by_address.remove(&old) else {
            return;
        };
        table.by_address.insert(new, id);
        if let Some(tracked) = table.by_id.get_mut(&id) {
            tracked.address = new;
            tracked.at = Some(at);
        }
    });
}

/// Where entry `id`'s value is: its address now and its place if known; None once freed.
pub fn place_of(id: u64) -> Option<(usize, Option<KeyRef>)> {
    if !any() {
        return None;
    }
    with_table(|table| {
        let tracked = table.by_id.get(&id)?;
        Some((tracked.address, tracked.at.clone()))
    })
}

/// How many times the server has moved the values of `ids` in all (see `Tracked::moves`).
pub fn moves_of(ids: &[u64]) -> u64 {
    with_table(|table| {
        ids.iter()
            .filter_map(|id| table.by_id.get(id))
            .map(|tracked| tracked.moves)
            .sum()
    })
}

/// The entries of live values in which connection `client` had a session hold when the
/// server unlinked them (they stay tracked until `session_ended`).
pub fn sessions_of(client: u64) -> Vec<u64> {
    if !any() {
        return Vec::new();
    }
    with_table(|table| {
        let mut ids: Vec<u64> = table
            .by_id
            .iter()
            .filter(|(_, tracked)| tracked.sessions.contains(&client))
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        ids
    })
}

/// Connection `client`'s hold in entry `id`'s value was ended (or cannot be found): that value
/// is tracked no more for it.
pub fn session_ended(id: u64, client: u64) {
    with_table(|table| {
        if let Some(tracked) = table.by_id.get_mut(&id) {
            tracked.sessions.retain(|&c| c != client);
        }
        table.drop_if_done(id);
    });
}

/// Entry `id`'s restored value has its expiry fixed (or cannot be found).
pub fn restored_done(id: u64) {
    with_table(|table| {
        if let Some(tracked) = table.by_id.get_mut(&id) {
            tracked.restored = false;
        }
        table.drop_if_done(id);
    });
}

/// How many values are tracked (INFO).
pub fn count() -> usize {
    if !any() {
        return 0;
    }
    with_table(|table| table.by_id.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    // One test: the table is process-wide.
    #[test]
    fn a_tracked_value_follows_our_writes_and_goes_when_freed_or_done() {
        track_session(10, 7);
        track_session(10, 8);
        let ids = sessions_of(7);
        assert_eq!(ids.len(), 1);
        let id = ids[0];
        assert_eq!(sessions_of(8), ids);
        assert_eq!(place_of(id), Some((10, None)));
        relocated(10, 11, KeyRef::new(2, b"k2"));
        assert_eq!(place_of(id), Some((11, Some(KeyRef::new(2, b"k2")))));
        let moves = moves_of(&[id]);
        server_unlinked(11);
        assert_eq!(
            place_of(id),
            Some((11, None)),
            "moved again: the place is unknown"
        );
        assert_eq!(moves_of(&[id]), moves + 1);
        session_ended(id, 7);
        assert_eq!(sessions_of(7), vec![]);
        assert_eq!(count(), 1, "client 8 still has a hold in it");
        session_ended(id, 8);
        assert_eq!((place_of(id), count(), any()), (None, 0, false));

        let restored = track_restored(20, Some(KeyRef::new(0, b"r")));
        assert!(is_restored(20));
        track_session(20, 9);
        restored_done(restored);
        assert!(!is_restored(20));
        assert_eq!(count(), 1, "the session keeps it");
        freed(20);
        assert_eq!((sessions_of(9), count(), any()), (vec![], 0, false));
    }
}
