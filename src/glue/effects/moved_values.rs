//! Lock values the server may have moved to a name rlock was not told. `RENAME` and `MOVE` add
//! the value under its new name, then unlink it from the old one without freeing it; a module
//! hears of the unlink (the type's `unlink2`) and nothing of the new name. Where rlock must act
//! on such a value later, it tracks the value's address from that moment until the value is
//! freed:
//! - a session hold whose key the server unlinked while its connection was open (events.rs):
//!   when the connection closes, its hold is ended wherever it is now (sessions.rs);
//! - a key restored with holds of their own expiries (datatype.rs): its expiry is fixed
//!   wherever it is once the `RESTORE` (and the rest of its transaction or script) is done.
//!
//! The table tells where a tracked value is when rlock wrote it since (`relocated`: our own
//! write replaced it under a name we know); otherwise `lock_scan::find_values` looks for it.
//! An address is only compared, never read. The type's free callback drops a freed value
//! (`freed`), so a value deleted or expired is never looked for; it may run on a background
//! thread (FLUSHALL ASYNC), hence the mutex, and an atomic keeps the free of an untracked value
//! at one load.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Mutex, MutexGuard};

use crate::glue::server::key_ref::KeyRef;

/// Why a value is tracked, and where it is if rlock knows.
#[derive(Debug, Default)]
struct Tracked {
    /// Connections (client ids) with a session hold in the value.
    sessions: Vec<u64>,
    /// A restored value whose key's expiry is still to be fixed.
    restored: bool,
    /// Where rlock last wrote it (None: unknown since the server unlinked it).
    at: Option<KeyRef>,
}

static ANY_TRACKED: AtomicBool = AtomicBool::new(false);
static TRACKED: Mutex<Option<HashMap<usize, Tracked>>> = Mutex::new(None);

fn table() -> MutexGuard<'static, Option<HashMap<usize, Tracked>>> {
    // A panic while the table was held cannot leave it half-changed: take it as it is.
    TRACKED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn with_entry(value: usize, change: impl FnOnce(&mut Tracked)) {
    let mut table = table();
    change(
        table
            .get_or_insert_with(HashMap::new)
            .entry(value)
            .or_default(),
    );
    ANY_TRACKED.store(true, Relaxed);
}

/// Whether any value is tracked (one load: the free callback and our writes ask first).
#[inline]
pub fn any() -> bool {
    ANY_TRACKED.load(Relaxed)
}

/// The server unlinked the value at `value` (not our own write) while connection `client`
/// had a session hold in it: it may live on under a name we do not know.
pub fn track_session(value: usize, client: u64) {
    with_entry(value, |tracked| {
        tracked.at = None;
        if !tracked.sessions.contains(&client) {
            tracked.sessions.push(client);
        }
    });
}

/// A value restored at `at` whose key's expiry is to be fixed once the RESTORE is done.
pub fn track_restored(value: usize, at: Option<KeyRef>) {
    with_entry(value, |tracked| {
        tracked.restored = true;
        tracked.at = at;
    });
}

/// The server unlinked the value at `value` (not our own write): if it is tracked, its place
/// is unknown from now on.
pub fn server_unlinked(value: usize) {
    if !any() {
        return;
    }
    if let Some(entry) = table().as_mut().and_then(|t| t.get_mut(&value)) {
        entry.at = None;
    }
}

/// Whether the value at `value` is a restored one whose key's expiry is still to be fixed.
pub fn is_restored(value: usize) -> bool {
    any()
        && table()
            .as_ref()
            .and_then(|t| t.get(&value))
            .is_some_and(|e| e.restored)
}

/// The value at `value` was freed: nothing of it is looked for any more.
#[inline]
pub fn freed(value: usize) {
    if any() {
        forget(value);
    }
}

#[cold]
#[inline(never)]
fn forget(value: usize) {
    let mut table = table();
    if let Some(tracked) = table.as_mut() {
        tracked.remove(&value);
        ANY_TRACKED.store(!tracked.is_empty(), Relaxed);
    }
}

/// Our own write replaced the tracked value at `old` with `new`, at `at`: the tracking
/// follows, with a known place.
pub fn relocated(old: usize, new: usize, at: KeyRef) {
    let mut table = table();
    let Some(tracked) = table.as_mut() else {
        return;
    };
    if let Some(mut entry) = tracked.remove(&old) {
        entry.at = Some(at);
        tracked.insert(new, entry);
    }
}

/// Whether the value at `value` is tracked (so alive).
pub fn is_tracked(value: usize) -> bool {
    any() && table().as_ref().is_some_and(|t| t.contains_key(&value))
}

/// Where the tracked value at `value` is, if rlock wrote it since it was last unlinked.
pub fn known_place(value: usize) -> Option<KeyRef> {
    table().as_ref()?.get(&value)?.at.clone()
}

/// The live values in which connection `client` had a session hold when the server unlinked
/// them, with their place if known (they stay tracked until `session_ended`).
pub fn sessions_of(client: u64) -> Vec<(usize, Option<KeyRef>)> {
    if !any() {
        return Vec::new();
    }
    let table = table();
    let Some(tracked) = table.as_ref() else {
        return Vec::new();
    };
    tracked
        .iter()
        .filter(|(_, entry)| entry.sessions.contains(&client))
        .map(|(value, entry)| (*value, entry.at.clone()))
        .collect()
}

/// Connection `client`'s hold in the value at `value` was ended (or cannot be found): that
/// value is tracked no more for it.
pub fn session_ended(value: usize, client: u64) {
    let mut table = table();
    let Some(tracked) = table.as_mut() else {
        return;
    };
    if let Some(entry) = tracked.get_mut(&value) {
        entry.sessions.retain(|&c| c != client);
        if entry.sessions.is_empty() && !entry.restored {
            tracked.remove(&value);
        }
    }
    ANY_TRACKED.store(!tracked.is_empty(), Relaxed);
}

/// The restored value at `value` has its expiry fixed: it is tracked no more for that.
pub fn restored_done(value: usize) {
    let mut table = table();
    let Some(tracked) = table.as_mut() else {
        return;
    };
    if let Some(entry) = tracked.get_mut(&value) {
        entry.restored = false;
        if entry.sessions.is_empty() {
            tracked.remove(&value);
        }
    }
    ANY_TRACKED.store(!tracked.is_empty(), Relaxed);
}

/// How many values are tracked (INFO).
pub fn count() -> usize {
    if !any() {
        return 0;
    }
    table().as_ref().map_or(0, HashMap::len)
}

#[cfg(test)]
mod tests {
    use super::*;

    // One test: the table is process-wide.
    #[test]
    fn a_tracked_value_follows_our_writes_and_goes_when_freed_or_done() {
        track_session(10, 7);
        track_session(10, 8);
        assert!(is_tracked(10) && any());
        assert_eq!(known_place(10), None);
        relocated(10, 11, KeyRef::new(2, b"k2"));
        assert!(!is_tracked(10) && is_tracked(11));
        assert_eq!(known_place(11), Some(KeyRef::new(2, b"k2")));
        assert_eq!(sessions_of(7), vec![(11, Some(KeyRef::new(2, b"k2")))]);
        session_ended(11, 7);
        assert_eq!(sessions_of(7), vec![]);
        assert!(is_tracked(11), "client 8 still has a hold in it");
        assert_eq!(sessions_of(8).len(), 1);
        session_ended(11, 8);
        assert!(!is_tracked(11) && !any(), "no session left");

        track_restored(20, Some(KeyRef::new(0, b"r")));
        track_session(20, 9);
        restored_done(20);
        assert!(is_tracked(20), "the session keeps it");
        freed(20);
        assert!(!is_tracked(20) && !any());
        assert_eq!(sessions_of(9), vec![]);
        assert_eq!(count(), 0);
    }
}
