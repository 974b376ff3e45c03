//! Session holds (`LOCK.ACQUIRE ... SESSION`): a hold bound to the connection that first took
//! it (a reentry from any connection does not rebind it) ends when that connection closes.
//!
//! Two mechanisms make that exact:
//! - from the moment the connection is gone, every command and timer that reads the key leaves
//!   the hold out (`LockKey::holds` asks the server whether the connection still exists), and
//!   the next write stores it as ended. So a `LOCK.ACQUIRE` pipelined right after `CLIENT KILL`
//!   of the holder is granted;
//! - a timer run just after the disconnect (writing from inside the server's client teardown
//!   is not safe) ends the holds under the names the connection took them, hands their weight
//!   to the waiters and propagates the effect. A hold no longer found there (RENAME, MOVE,
//!   SWAPDB moved it) is ended where it now is by the next command that touches it, or, if
//!   clients wait for it, at once by their queue's check, which this timer then runs for every
//!   waited-for key.
//!
//! The index of which keys a connection holds session holds on lives here, on the main
//! thread; its entries go when the hold is released, and the rest is swept when it grows past
//! twice what the connection held at the last sweep, so its memory follows what the connection
//! holds now. Only a master acts; a replica follows its master's effects. A client id means
//! nothing in another process: holds loaded from disk or replayed keep their session flag with
//! an unknown connection (id 0) and end by their ttl.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::ffi::c_void;

use redis_module::raw::{self, RedisModuleCtx, RedisModuleEvent};

use super::context::{detached, now, Ctx};
use super::entry::run_callback;
use super::events::subscribe_to_server_event;
use super::handoff::{settle, Freed, Handling};
use super::keys::{LockKey, OwnedString};
use super::signals::Event;
use super::timers::{self, propagating_timer};
use super::waiters::{self, KeyRef};

/// The keys (database, name) one connection took session holds on.
#[derive(Default)]
struct SessionKeys {
    keys: HashSet<(i32, Box<[u8]>)>,
    /// How many of them it still held at the last sweep: the next sweep comes at twice that.
    live_at_sweep: usize,
    sweep_armed: bool,
}

/// Below this many keys a connection's index is never swept.
const SWEEP_FLOOR: usize = 32;

thread_local! {
    /// Client id -> the keys it took session holds on (a few may be released since).
    static HELD_BY: RefCell<HashMap<u64, SessionKeys>> = RefCell::new(HashMap::new());
    /// Disconnected clients whose holds are still to end, by timer id (the client id).
    static ENDED: RefCell<HashMap<u64, SessionKeys>> = RefCell::new(HashMap::new());
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

/// Subscribes to client disconnects; false if the server refused.
pub fn subscribe(ctx: *mut RedisModuleCtx) -> bool {
    subscribe_to_server_event(ctx, raw::REDISMODULE_EVENT_CLIENT_CHANGE, client_changed)
}

unsafe extern "C" fn client_changed(
    ctx: *mut RedisModuleCtx,
    _event: RedisModuleEvent,
    subevent: u64,
    data: *mut c_void,
) {
    run_callback("a client disconnect", (), || {
        if subevent != raw::REDISMODULE_SUBEVENT_CLIENT_CHANGE_DISCONNECTED {
            return;
        }
        // SAFETY: for client change events the server passes a RedisModuleClientInfo.
        let Some(info) = (unsafe { data.cast::<raw::RedisModuleClientInfoV1>().as_ref() }) else {
            return;
        };
        let Some(keys) = HELD_BY.with(|held| held.borrow_mut().remove(&info.id)) else {
            return;
        };
        ENDED.with(|ended| ended.borrow_mut().insert(info.id, keys));
        timers::start(Ctx(ctx), 0, end_fired, info.id);
    })
}

propagating_timer!(end_fired, "ending a session", end_sessions);

/// Ends disconnected `client`'s session holds, on a master.
fn end_sessions(ctx: Ctx, client: u64) {
    let Some(index) = ENDED.with(|ended| ended.borrow_mut().remove(&client)) else {
        return;
    };
    if !ctx.has_flag(raw::REDISMODULE_CTX_FLAGS_MASTER) {
        return;
    }
    let mut all_found = true;
    for (db, name) in index.keys {
        all_found &= end_on_key(ctx, client, db, &name);
    }
    if !all_found {
        // Some hold is not where it was taken (moved, or already gone): the queues' checks
        // end it wherever it waits to be handed on.
        waiters::schedule_all_checks(ctx, -1);
    }
}

/// Ends `client`'s session holds on one key: its weight goes to the waiters, or the key goes.
/// Whether the key had a session hold of `client` (a hold moved away is not found).
fn end_on_key(ctx: Ctx, client: u64, db: i32, key: &[u8]) -> bool {
    let _handling = Handling::begin();
    ctx.select_db(db);
    let name = OwnedString::new(ctx, key);
    let mut lock_key = LockKey::open_writable(ctx, name.as_ptr());
    // Reading the holds leaves out those whose connection is gone, this one's included.
    let Ok(Some(mut holds)) = lock_key.holds() else {
        return false;
    };
    let ended = holds.end_session(client);
    lock_key.note_sessions_ended(ended);
    if lock_key.sessions_closed() == 0 {
        return false;
    }
    let now = now();
    holds.expire(now);
    if settle(
        ctx,
        &mut lock_key,
        name.as_ptr(),
        db,
        key,
        &mut holds,
        now,
        Freed::Released,
        true,
    ) {
        lock_key.notify(Event::Del);
    }
    true
}
