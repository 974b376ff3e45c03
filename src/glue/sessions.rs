//! Session holds (`LOCK.ACQUIRE ... SESSION`): a hold bound to the connection that took it
//! ends when that connection closes (process exit, kill, `CLIENT KILL`), at once: released,
//! handed to the next waiters and propagated as an effect, like a release. Its ttl still
//! applies.
//!
//! Which keys a connection took session holds on is kept here, on the main thread; a
//! disconnect looks them up. The release itself runs from a timer a moment later: the
//! disconnect happens inside the server's client teardown, where writing and propagating is
//! not safe. Only a master acts; a replica follows its master's effects. A client id means
//! nothing in another process: holds loaded from disk or replayed keep their session flag
//! with an unknown connection (id 0) and end by their ttl.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::ffi::c_void;

use redis_module::raw::{self, RedisModuleCtx, RedisModuleEvent};

use super::api::rm;
use super::context::{now, Ctx};
use super::entry::run_callback;
use super::events::subscribe_to_server_event;
use super::handoff::{settle, Freed, Handling};
use super::keys::{LockKey, OwnedString};
use super::replicate::PAUSED_RETRY_MS;
use super::signals::Event;
use super::stats::{self, Counter};
use super::timers;
use super::waiters::KeyRef;

/// Keys (database, name) by client id.
type KeysByClient = HashMap<u64, HashSet<(i32, Box<[u8]>)>>;

thread_local! {
    /// Client id -> the keys it took session holds on (some may be released since).
    static HELD_BY: RefCell<KeysByClient> = RefCell::new(HashMap::new());
    /// Disconnected clients whose holds are still to end, by timer id (the client id).
    static ENDED: RefCell<KeysByClient> = RefCell::new(HashMap::new());
}

/// Client `client` took a session hold on `key`.
pub fn register(client: u64, key: KeyRef) {
    if client == 0 {
        return;
    }
    HELD_BY.with(|held| {
        held.borrow_mut()
            .entry(client)
            .or_default()
            .insert((key.db, key.name))
    });
}

/// How many connections hold session holds now (INFO).
pub fn connections() -> usize {
    HELD_BY.with(|held| held.try_borrow().map_or(0, |held| held.len()))
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

unsafe extern "C" fn end_fired(ctx: *mut RedisModuleCtx, data: *mut c_void) {
    run_callback("ending a session", (), || {
        let ctx = Ctx(ctx);
        let client = timers::id_of(data);
        // SAFETY: a plain call without arguments.
        if unsafe { rm!(RedisModule_AvoidReplicaTraffic)() } != 0 {
            timers::start(ctx, PAUSED_RETRY_MS, end_fired, client);
            return;
        }
        let Some(keys) = ENDED.with(|ended| ended.borrow_mut().remove(&client)) else {
            return;
        };
        if !ctx.has_flag(raw::REDISMODULE_CTX_FLAGS_MASTER) {
            return;
        }
        for (db, name) in keys {
            end_on_key(ctx, client, db, &name);
        }
    })
}

/// Ends `client`'s session holds on one key: its weight goes to the waiters, or the key goes.
fn end_on_key(ctx: Ctx, client: u64, db: i32, key: &[u8]) {
    let _handling = Handling::begin();
    ctx.select_db(db);
    let name = OwnedString::new(ctx, key);
    let mut lock_key = LockKey::open_writable(ctx, name.as_ptr());
    let Ok(Some(mut holds)) = lock_key.holds() else {
        return;
    };
    let ended = holds.end_session(client);
    if ended == 0 {
        return;
    }
    stats::add(Counter::SessionEnds, ended as u64);
    lock_key.notify(Event::SessionEnd);
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
}
