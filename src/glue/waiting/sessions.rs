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
//!   to the waiters and propagates the effect (SWAPDB moves the index's entries with their
//!   keys). A hold RENAME or MOVE moved is ended where rlock wrote it since, or where a search
//!   of the lock keys finds it (moved_values.rs tracks the moved value from its unlink); every
//!   waited-for key is checked at once too.
//!
//! The index of which keys a connection holds session holds on is session_index.rs. Only a
//! master acts; a replica follows its master's effects. A client id means
//! nothing in another process: holds loaded from disk or replayed keep their session flag with
//! an unknown connection (id 0) and end by their ttl.

use std::ffi::c_void;

use redis_module::raw::{self, RedisModuleCtx, RedisModuleEvent};

use crate::glue::effects::keys::{LockKey, OwnedString};
use crate::glue::effects::{lock_scan, moved_values};
use crate::glue::server::blocked_client;
use crate::glue::server::context::{now, subscribe_to_server_event, Ctx};
use crate::glue::server::entry::run_callback;
use crate::glue::server::timers::{self, propagating_timer};
use crate::glue::waiting::handoff::{self, Handling};
use crate::glue::waiting::session_index;

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
        blocked_client::note_disconnecting(info.id);
        // Answered its grant inside this turn's EXEC, and gone before the reply went out.
        for (key, token) in blocked_client::take_answered_in_exec(info.id) {
            handoff::take_back_later(Ctx(ctx), key, token);
        }
        // The index stays in place until the timer ends the holds: a RENAME, MOVE or SWAPDB
        // before then still updates it (session_index.rs).
        if session_index::holds_any(info.id) {
            timers::start(Ctx(ctx), 0, end_fired, info.id);
        }
    })
}

propagating_timer!(end_fired, "ending a session", end_sessions);

/// Ends disconnected `client`'s session holds, on a master.
fn end_sessions(ctx: Ctx, client: u64) {
    let Some(index) = session_index::take(client) else {
        return;
    };
    if !ctx.has_flag(raw::REDISMODULE_CTX_FLAGS_MASTER) {
        return;
    }
    let mut all_found = !index.lost_track;
    for key in index.keys {
        all_found &= end_on_key(ctx, client, key.db, &key.name);
    }
    end_moved(ctx, client);
    if !all_found {
        // Some hold is not where it was taken (moved, or already gone): the queues' checks
        // end it wherever it waits to be handed on.
        handoff::schedule_all_checks(ctx, -1);
    }
}

/// Ends `client`'s holds in values the server moved (RENAME, MOVE) while the connection was
/// open: where rlock wrote them since, if they are still there; else wherever a search of the
/// lock keys finds them (moved_values.rs), so the end is written and propagated like any
/// other.
fn end_moved(ctx: Ctx, client: u64) {
    let moved = moved_values::sessions_of(client);
    lock_scan::find_values(ctx, moved, end_found, search_over, client);
}

/// Tracked value `id`, in which `client` had a session hold, is at `name` in `db`.
fn end_found(ctx: Ctx, db: i32, name: &[u8], id: u64, client: u64) {
    // Untracked first: ending the hold rewrites the value, and the tracking would follow it.
    moved_values::session_ended(id, client);
    end_on_key(ctx, client, db, name);
}

fn search_over(not_found: &[u64], client: u64) {
    for &id in not_found {
        moved_values::session_ended(id, client);
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
    handoff::settle_released(ctx, &mut lock_key, name.as_ptr(), db, key, &mut holds, now);
    true
}
