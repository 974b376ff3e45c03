//! Which keys each connection took session holds on (sessions.rs ends them when it closes).
//!
//! An entry goes when its hold is released; the rest are swept whenever a connection's entries
//! pass twice what it held at the last sweep (and `SWEEP_FLOOR`), so the index's memory
//! follows what connections hold now (INFO `lock_session_index_keys`).

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::ffi::c_void;

use redis_module::raw::RedisModuleCtx;

use crate::glue::effects::keys::{LockKey, OwnedString};
use crate::glue::server::context::{detached, Ctx};
use crate::glue::server::entry::run_callback;
use crate::glue::server::key_ref::KeyRef;
use crate::glue::server::timers;

/// The keys (database, name) one connection took session holds on.
#[derive(Default)]
pub struct SessionKeys {
    pub keys: HashSet<(i32, Box<[u8]>)>,
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
        entry.keys.insert((key.db, key.name));
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
            entry.keys.remove(&(db, Box::from(key)));
            if entry.keys.is_empty() {
                held.remove(&client);
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
            .filter(|(db, name)| !holds_session_on(ctx, client, *db, name))
            .collect();
        HELD_BY.with(|held| {
            if let Some(entry) = held.borrow_mut().get_mut(&client) {
                for key in &gone {
                    entry.keys.remove(key);
                }
                entry.live_at_sweep = entry.keys.len();
            }
        });
    })
}

/// Whether `client` holds a session hold on `name` in `db` (read only).
fn holds_session_on(ctx: Ctx, client: u64, db: i32, name: &[u8]) -> bool {
    ctx.select_db(db);
    let name = OwnedString::new(ctx, name);
    let mut key = LockKey::open_readable(ctx, name.as_ptr());
    let Ok(Some(holds)) = key.holds() else {
        return false;
    };
    holds
        .holders
        .iter()
        .any(|holder| holder.session == Some(client))
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

/// Takes `client`'s index away (its connection closed): the keys its holds were taken on.
pub fn take(client: u64) -> Option<SessionKeys> {
    HELD_BY.with(|held| held.borrow_mut().remove(&client))
}
