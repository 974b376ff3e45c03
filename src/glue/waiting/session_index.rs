//! Which keys each connection took session holds on (sessions.rs ends them when it closes).
//!
//! An entry goes when its hold is released, when the server unlinks its key (expiry, DEL,
//! overwrite, eviction, RENAME or MOVE away: events.rs tells `forget`) and when its database
//! is flushed; SWAPDB moves entries with their keys. What is left (a hold that expired inside
//! a key other holders keep) is swept whenever a connection's entries pass twice what it held
//! at the last sweep (and `SWEEP_FLOOR`), so the index's memory follows what connections hold
//! now (INFO `lock_session_index_keys`).

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::ffi::c_void;

use redis_module::raw::RedisModuleCtx;

use crate::glue::effects::keys::{OwnedString, ReadKey};
use crate::glue::server::context::{detached, now, Ctx};
use crate::glue::server::entry::run_callback;
use crate::glue::server::key_ref::KeyRef;
use crate::glue::server::timers;

/// The keys (database, name) one connection took session holds on.
#[derive(Default)]
pub struct SessionKeys {
    pub keys: HashSet<KeyRef>,
    /// The server unlinked a key this connection held a session hold on: the hold may live on
    /// under another name (RENAME, MOVE), so its end must check every waited-for key.
    pub lost_track: bool,
    /// How many of them it still held at the last sweep: the next sweep comes at twice that.
    live_at_sweep: usize,
    sweep_armed: bool,
}

/// Below this many keys a connection's index is never swept.
const SWEEP_FLOOR: usize = 32;

thread_local! {
    /// Client id -> the keys it took session holds on (a few may be released since).
    static HELD_BY: RefCell<HashMap<u64, SessionKeys>> = RefCell::new(HashMap::new());
}

/// Client `client` took a session hold on `key`.
pub fn register(client: u64, key: KeyRef) {
    if client == 0 {
        return;
    }
    let sweep = HELD_BY.with(|held| {
        let mut held = held.borrow_mut();
        let entry = held.entry(client).or_default();
        entry.keys.insert(key);
        let due = entry.keys.len() > (2 * entry.live_at_sweep).max(SWEEP_FLOOR);
        due && !std::mem::replace(&mut entry.sweep_armed, true)
    });
    if let (true, Some(ctx)) = (sweep, detached()) {
        timers::start(ctx, 0, sweep_fired, client);
    }
}

/// Client `client`'s session hold on `key` in `db` was released.
pub fn unregister(client: u64, db: i32, key: &[u8]) {
    HELD_BY.with(|held| {
        let mut held = held.borrow_mut();
        if let Some(entry) = held.get_mut(&client) {
            entry.keys.remove(&KeyRef::new(db, key));
            if entry.keys.is_empty() && !entry.lost_track {
                held.remove(&client);
            }
        }
    });
}

/// The server unlinked `key` in `db` (not our own write) while `client` held a session hold
/// on it: the entry goes, and the connection's end looks for the hold everywhere, since a
/// RENAME or MOVE unlinks the key it moves from. Whether `client` had that entry (its
/// connection is open and took the hold there).
pub fn forget(client: u64, db: i32, key: &[u8]) -> bool {
    HELD_BY.with(|held| {
        let mut held = held.borrow_mut();
        let Some(entry) = held.get_mut(&client) else {
            return false;
        };
        let had = entry.keys.remove(&KeyRef::new(db, key));
        entry.lost_track |= had;
        had
    })
}

/// FLUSHDB of `db` (FLUSHALL: -1) removes every key there without unlinking them one by one.
pub fn flushed(db: i32) {
    HELD_BY.with(|held| {
        let mut held = held.borrow_mut();
        for entry in held.values_mut() {
            entry.keys.retain(|key| db != -1 && key.db != db);
        }
        held.retain(|_, entry| !entry.keys.is_empty() || entry.lost_track);
    });
}

/// SWAPDB `first` `second`: the keys of each are now in the other, their entries with them.
pub fn swapped(first: i32, second: i32) {
    let other = |db: i32| match db {
        db if db == first => second,
        db if db == second => first,
        db => db,
    };
    HELD_BY.with(|held| {
        for entry in held.borrow_mut().values_mut() {
            if entry.keys.iter().any(|key| other(key.db) != key.db) {
                entry.keys = std::mem::take(&mut entry.keys)
                    .into_iter()
                    .map(|key| KeyRef::new(other(key.db), &key.name))
                    .collect();
            }
        }
    });
}

/// Drops from `client`'s index the keys where it holds no session hold any more (expired,
/// deleted, handed on, moved).
unsafe extern "C" fn sweep_fired(ctx: *mut RedisModuleCtx, data: *mut c_void) {
    run_callback("sweeping a session index", (), || {
        let ctx = Ctx(ctx);
        let client = timers::id_of(data);
        let Some(keys) = HELD_BY.with(|held| {
            held.borrow_mut().get_mut(&client).map(|entry| {
                entry.sweep_armed = false;
                entry.keys.iter().cloned().collect::<Vec<_>>()
            })
        }) else {
            return;
        };
        let gone: Vec<_> = keys
            .into_iter()
            .filter(|key| !holds_session_on(ctx, client, key.db, &key.name))
            .collect();
        HELD_BY.with(|held| {
            if let Some(entry) = held.borrow_mut().get_mut(&client) {
                for key in &gone {
                    entry.keys.remove(key);
                }
                // A hold not found where it was taken may have moved (RENAME, MOVE).
                entry.lost_track |= !gone.is_empty();
                entry.live_at_sweep = entry.keys.len();
            }
        });
    })
}

/// Whether `client` holds a session hold on `name` in `db` (read only).
fn holds_session_on(ctx: Ctx, client: u64, db: i32, name: &[u8]) -> bool {
    ctx.select_db(db);
    let name = OwnedString::new(ctx, name);
    let mut key = ReadKey::open(ctx, name.as_ptr());
    let Ok(Some(holds)) = key.holds() else {
        return false;
    };
    let now = now();
    holds
        .holders
        .iter()
        .any(|holder| holder.session == Some(client) && holder.expires_at.is_none_or(|at| at > now))
}

/// How many connections hold session holds now (INFO).
pub fn connections() -> usize {
    HELD_BY.with(|held| held.try_borrow().map_or(0, |held| held.len()))
}

/// How many (connection, key) entries the session index keeps (INFO: its memory follows
/// what connections hold now).
pub fn indexed_keys() -> usize {
    HELD_BY.with(|held| {
        held.try_borrow()
            .map_or(0, |held| held.values().map(|entry| entry.keys.len()).sum())
    })
}

/// Whether connection `client` has an index (took session holds here).
pub fn holds_any(client: u64) -> bool {
    HELD_BY.with(|held| held.borrow().contains_key(&client))
}

/// Takes `client`'s index away (its connection closed): the keys its holds were taken on.
pub fn take(client: u64) -> Option<SessionKeys> {
    HELD_BY.with(|held| held.borrow_mut().remove(&client))
}
