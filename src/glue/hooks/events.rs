//! Server happenings that free a lock without a LOCK command: a lock value unlinked from the
//! keyspace (DEL, UNLINK, expiry, eviction, overwrite, RENAME) and FLUSHDB/FLUSHALL, which
//! unlink nothing one by one.

use std::cell::Cell;
use std::ffi::{c_char, c_int, c_void};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize};

use redis_module::raw::{
    self, RedisModuleCtx, RedisModuleEvent, RedisModuleKeyOptCtx, RedisModuleString,
};

use crate::core::state::epoch::Snapshot;
use crate::core::state::holds::Holds;
use crate::core::stored::encoding::decode_holds;
use crate::core::Millis;
use crate::glue::effects::keys::{expiry_in_place, Found, OwnedString, ReadKey};
use crate::glue::effects::observed;
use crate::glue::effects::replicate;
use crate::glue::effects::stats::{self, Counter};
use crate::glue::effects::token_counter::with_tokens;
use crate::glue::effects::{lock_scan, monitor, moved_values, propagation, signals};
use crate::glue::hooks::cluster_floor;
use crate::glue::server::api::rm;
use crate::glue::server::configs;
use crate::glue::server::context::{
    detached, log, now, server_clock, subscribe_to_server_event, Ctx, EventCallback, OK,
};
use crate::glue::server::entry::{run_callback, string_bytes};
use crate::glue::server::timers;
use crate::glue::server::value::{live_values, stored, Stored};
use crate::glue::waiting::waiters;
use crate::glue::waiting::{handoff, session_index};

/// Whether rlock listens for "expired" keyspace events yet (Redis 7.0 and 7.1 only). A module
/// subscription makes every keyspace event on the server (SET's `set` and `new`, EXPIRE's,
/// DEL's...) walk the module subscribers, so it is made only when the server itself first
/// unlinks a lock on a master (an expiry, a DEL, an overwrite: never for rlock's own releases
/// and rewrites, nor for a replica's DELs from its master), before that unlink's own "expired"
/// event goes out (an expiry unlinks the key first). Until then no other command pays for it;
/// these servers cannot unsubscribe, so once made it stays. Later servers need none: the unlink
/// callback reads the key's expiry there (`expired_in_place`).
static WATCHING_EXPIRIES: AtomicBool = AtomicBool::new(false);

/// Whether rlock subscribed to "expired" keyspace events (INFO `lock_expiry_subscription`).
pub fn watching_expiries() -> bool {
    WATCHING_EXPIRIES.load(Relaxed)
}

/// The last lock key unlinked, as (database, the server's key object): an "expired" event for
/// that very object right after means a lock expired. No copy of the name is made. Atomics,
/// not a thread_local: every release that frees a lock sets them, and a thread_local in a
/// shared library costs a __tls_get_addr call per access (both are main-thread only).
static LAST_UNLINKED_DB: AtomicI32 = AtomicI32::new(-1);
static LAST_UNLINKED_KEY: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This node became a replica and has not synced since: the next full sync replaces locks
    /// it held as a master (a split brain loses them), which INFO counts and the log says.
    static AWAITING_FIRST_SYNC: Cell<bool> = const { Cell::new(false) };
}

/// The role-change event saw this node become a replica.
pub fn became_replica() {
    AWAITING_FIRST_SYNC.with(|flag| flag.set(true));
}

/// The data type's unlink2 callback (main thread).
///
/// # Safety
/// Called by the server only, with a live key-operation context.
pub unsafe extern "C" fn lock_unlinked(ctx: *mut RedisModuleKeyOptCtx, value: *const c_void) {
    // SAFETY: ctx is the live key-operation context of this callback. Nothing here can panic
    // (two calls and stores): the usual unlink, our own write with nobody watching, is done
    // without the catch the rest runs under.
    let (db, key) = unsafe {
        (
            rm!(RedisModule_GetDbIdFromOptCtx)(ctx),
            rm!(RedisModule_GetKeyNameFromOptCtx)(ctx),
        )
    };
    LAST_UNLINKED_DB.store(db, Relaxed);
    LAST_UNLINKED_KEY.store(key as usize, Relaxed);
    let handling = handoff::is_handling();
    let quiet =
        monitor::own_write(handling) && !waiters::anyone_waiting() && !observed::anyone_observing();
    if !quiet {
        run_callback("unlink", (), || {
            unlinked_with_work(db, key, value, handling)
        });
    }
}

/// What an unlink does beyond noting the key: observers told, a removal by the server noted
/// (and, on Redis 7.2 and later, told an expiry or not at once; on 7.0 the expiry subscription
/// made), waiters' handoff started.
#[cold]
#[inline(never)]
fn unlinked_with_work(
    db: i32,
    key: *const RedisModuleString,
    value: *const c_void,
    handling: bool,
) {
    if observed::anyone_observing() && !handling {
        // SAFETY: the key name is live for this callback.
        observed::changed(db, unsafe { string_bytes(key) }, Snapshot::FREE);
    }
    let Some(timer_ctx) = detached() else {
        return;
    };
    let by_server = !monitor::own_write(handling);
    let expired = by_server
        && match server_clock() {
            Some(clock) => expired_in_place(timer_ctx, db, key, clock),
            None => {
                // Redis 7.0: the "expired" event that follows tells (key_expired).
                watch_expiries_on_a_master(timer_ctx);
                false
            }
        };
    if by_server {
        note_unlinked(db, key, value);
    }
    // SAFETY: the key name is live for this callback.
    let name = unsafe { string_bytes(key) };
    if waiters::anyone_waiting() {
        handoff::lock_removed(timer_ctx, db, name);
    }
    if expired {
        handoff::lock_expired(db, name);
    }
}

/// Whether the server is unlinking `key` because it expired: its expiry, still in place while
/// the unlink callback runs on Redis 7.2 and later (Valkey too), is past by `clock`, the one the
/// server decides expiries by (`server_clock`; it expires a key once that clock is beyond the
/// expiry: `keyIsExpired`, `activeExpireCycleTryExpire`). Always false where the server
/// expires nothing: on a replica (its master's expiries arrive as DELs, maybe late) and while
/// loading (a DEL replayed from the AOF after the key's time).
fn expired_in_place(ctx: Ctx, db: i32, key: *const RedisModuleString, clock: Millis) -> bool {
    let flags = ctx.flags();
    if flags & raw::REDISMODULE_CTX_FLAGS_MASTER == 0
        || flags & raw::REDISMODULE_CTX_FLAGS_LOADING != 0
    {
        return false;
    }
    expiry_in_place(ctx, db, key.cast_mut()).is_some_and(|at| clock > at)
}

/// A lock value the server unlinked (not our own write): its holds wait for their cause, the
/// "expired" event or, failing it, a timer in the next turn that calls them deleted.
fn note_unlinked(db: i32, key: *const RedisModuleString, value: *const c_void) {
    // SAFETY: the server passes a live value of our type; it is only read here.
    let holds = match unsafe { stored(value.cast_mut()) } {
        Some(Stored::Plain(lock)) => Holds::from_lock(lock, None),
        Some(Stored::Holds(bytes)) => decode_holds(bytes, true).unwrap_or_default(),
        None => return,
    };
    // SAFETY: the key name is live for this callback.
    let name = unsafe { string_bytes(key) };
    moved_values::server_unlinked(value as usize);
    for client in holds.holders.iter().filter_map(|holder| holder.session) {
        if session_index::forget(client, db, name) {
            // A RENAME or MOVE keeps the value under a new name: found again if its
            // connection closes while it lives (sessions.rs).
            moved_values::track_session(value as usize, client);
        }
    }
    if monitor::unlinked(db, name, holds, now(), value as usize) {
        if let Some(timer_ctx) = detached() {
            timers::start(timer_ctx, 0, unlinked_settled, 0);
        }
    }
}

/// The turn after an unlink: holds no expiry claimed were deleted, or overwritten by a value
/// of another type; a key that is a lock again was our own hand-off.
unsafe extern "C" fn unlinked_settled(ctx: *mut RedisModuleCtx, _data: *mut c_void) {
    run_callback("settling unlinked locks", (), || {
        let ctx = Ctx(ctx);
        let now = now();
        monitor::settle_unlinked(
            |db, key| {
                ctx.select_db(db);
                let name = OwnedString::new(ctx, key);
                let mut lock_key = ReadKey::open(ctx, name.as_ptr());
                match lock_key.found() {
                    Err(_) => Some(true),
                    Ok(Found::Empty) => Some(false),
                    Ok(_) => None,
                }
            },
            now,
        );
    })
}

/// Every lock about to be flushed (FLUSHDB/FLUSHALL, or a full sync replacing this node's
/// data: `resync`), logged with its holders: O(N) in the database's keys, only while any lock
/// exists.
fn note_flushed_locks(ctx: Ctx, dbnum: i32, resync: bool) {
    if live_values() == 0 {
        return;
    }
    let selected = ctx.selected_db();
    let now = now();
    let dbs = if dbnum == -1 {
        0..i32::MAX
    } else {
        dbnum..dbnum + 1
    };
    for db in dbs {
        // SAFETY: ctx is the live event context; a database past the last is refused.
        if unsafe { rm!(RedisModule_SelectDb)(ctx.0, db) } != OK {
            break;
        }
        lock_scan::for_each_key(ctx, |key| {
            let name = OwnedString::new(ctx, key);
            let mut lock_key = ReadKey::open(ctx, name.as_ptr());
            if let Ok(Some(holds)) = lock_key.holds() {
                monitor::flushed(db, key, &holds, resync, now);
            }
        });
    }
    ctx.select_db(selected);
}

/// An "expired" keyspace event (only those: no other event pays for this subscription).
unsafe extern "C" fn key_expired(
    ctx: *mut RedisModuleCtx,
    _type: c_int,
    _event: *const c_char,
    key: *mut RedisModuleString,
) -> c_int {
    run_callback("an expiry", OK, || {
        if signals::notifying_own_expiry() {
            // rlock removed it and counts it where it does (notify_expired).
            return OK;
        }
        let db = Ctx(ctx).selected_db();
        let last = (
            LAST_UNLINKED_DB.swap(-1, Relaxed),
            LAST_UNLINKED_KEY.swap(0, Relaxed),
        );
        if last == (db, key as usize) {
            // SAFETY: the key is live for this callback.
            handoff::lock_expired(db, unsafe { string_bytes(key) });
        }
        OK
    })
}

/// On a master, subscribes to "expired" keyspace events (see WATCHING_EXPIRIES). A replica
/// expires nothing itself (its master's expiries arrive as DELs), so it waits until promoted.
fn watch_expiries_on_a_master(ctx: Ctx) {
    if !WATCHING_EXPIRIES.load(Relaxed) && ctx.has_flag(raw::REDISMODULE_CTX_FLAGS_MASTER) {
        watch_expiries(ctx.0);
    }
}

/// Subscribes to "expired" keyspace events (see WATCHING_EXPIRIES), once.
fn watch_expiries(ctx: *mut RedisModuleCtx) {
    // SAFETY: ctx is this module's detached context; the callback lives as long as the module.
    let subscribed = unsafe {
        rm!(RedisModule_SubscribeToKeyspaceEvents)(
            ctx,
            raw::REDISMODULE_NOTIFY_EXPIRED,
            Some(key_expired),
        )
    };
    // Set either way: a refusal is logged once, not on every unlink.
    WATCHING_EXPIRIES.store(true, Relaxed);
    if subscribed != OK {
        let text = "rlock: cannot subscribe to expiry events: INFO lock's expirations miss \
                    them, and a handoff after an expiry counts as after a deletion";
        log(ctx, c"warning", text);
    }
}

/// Subscribes to FLUSHDB/FLUSHALL, SWAPDB, forks and replication links (expiries: when the
/// first lock is unlinked, see WATCHING_EXPIRIES); false if the server refused.
pub fn subscribe(ctx: *mut RedisModuleCtx) -> bool {
    let events: [(u64, EventCallback); 4] = [
        (raw::REDISMODULE_EVENT_FLUSHDB, flushed),
        (raw::REDISMODULE_EVENT_SWAPDB, swapped),
        (raw::REDISMODULE_EVENT_FORK_CHILD, forked),
        (
            raw::REDISMODULE_EVENT_MASTER_LINK_CHANGE,
            master_link_changed,
        ),
    ];
    events
        .into_iter()
        .all(|(id, callback)| subscribe_to_server_event(ctx, id, callback))
}

/// SWAPDB: waiters stay with their database number (as Redis' own blocked clients do), whose
/// keys now hold other values; each key waited for in both is examined again at once.
unsafe extern "C" fn swapped(
    ctx: *mut RedisModuleCtx,
    _event: RedisModuleEvent,
    _sub: u64,
    data: *mut c_void,
) {
    run_callback("swapdb", (), || {
        // SAFETY: for SWAPDB events the server passes a RedisModuleSwapDbInfo.
        let Some(info) = (unsafe { data.cast::<raw::RedisModuleSwapDbInfo>().as_ref() }) else {
            return;
        };
        session_index::swapped(info.dbnum_first, info.dbnum_second);
        handoff::schedule_all_checks(Ctx(ctx), info.dbnum_first);
        handoff::schedule_all_checks(Ctx(ctx), info.dbnum_second);
        observed::wake_all(info.dbnum_first);
        observed::wake_all(info.dbnum_second);
    })
}

/// After a flush, every key waited for in the flushed database(s) is re-examined (from a
/// timer: replicating from inside the flush would reach replicas before the FLUSH itself).
unsafe extern "C" fn flushed(
    ctx: *mut RedisModuleCtx,
    _event: RedisModuleEvent,
    subevent: u64,
    data: *mut c_void,
) {
    run_callback("flush", (), || {
        // SAFETY: for FLUSHDB events the server passes a RedisModuleFlushInfo.
        let Some(info) = (unsafe { data.cast::<raw::RedisModuleFlushInfo>().as_ref() }) else {
            return;
        };
        if subevent == raw::REDISMODULE_SUBEVENT_FLUSHDB_START {
            session_index::flushed(info.dbnum);
            let resync = count_locks_dropped_by_sync(Ctx(ctx), info.dbnum);
            note_flushed_locks(Ctx(ctx), info.dbnum, resync);
        } else if subevent == raw::REDISMODULE_SUBEVENT_FLUSHDB_END {
            handoff::schedule_all_checks(Ctx(ctx), info.dbnum);
            observed::wake_all(info.dbnum);
        }
    })
}

/// The first full sync after this node became a replica empties every database: the locks it
/// held as a master are gone (their owners still believe they hold them). Counted and logged,
/// never silent.
fn count_locks_dropped_by_sync(ctx: Ctx, dbnum: i32) -> bool {
    let is_replica = ctx.has_flag(raw::REDISMODULE_CTX_FLAGS_SLAVE);
    if dbnum != -1 || !is_replica || !AWAITING_FIRST_SYNC.with(|flag| flag.replace(false)) {
        return false;
    }
    let dropped = live_values();
    if dropped == 0 {
        return false;
    }
    stats::add(Counter::DroppedOnResync, dropped);
    log(
        ctx.0,
        c"warning",
        &format!(
            "rlock: {dropped} locks dropped: this node became a replica and its data is being \
             replaced by its master's (their holders may still believe they hold them)"
        ),
    );
    true
}

/// The link to a master came up: whatever this node held before is settled (replaced by a
/// full sync, or kept by a partial one).
unsafe extern "C" fn master_link_changed(
    _ctx: *mut RedisModuleCtx,
    _event: RedisModuleEvent,
    subevent: u64,
    _data: *mut c_void,
) {
    run_callback("a master link change", (), || {
        if subevent == raw::REDISMODULE_SUBEVENT_MASTER_LINK_UP {
            AWAITING_FIRST_SYNC.with(|flag| flag.set(false));
        }
    })
}

/// A child was forked: a replica may be attaching, so propagation turns on (propagation.rs).
/// If it rewrites the AOF (this runs in the parent, after the new
/// incremental AOF file was opened), the token counter is written after the rewrite's base,
/// where it survives. A base without an RDB preamble keeps no aux data and forgets released
/// locks. Other forks (RDB saves, full syncs) carry the counter as aux data already, and a
/// write here would count as a change and trigger more saves.
unsafe extern "C" fn forked(
    ctx: *mut RedisModuleCtx,
    _event: RedisModuleEvent,
    subevent: u64,
    _data: *mut c_void,
) {
    run_callback("fork", (), || {
        let ctx = Ctx(ctx);
        if subevent != raw::REDISMODULE_SUBEVENT_FORK_CHILD_BORN {
            return;
        }
        // A full sync forks for its snapshot (also a diskless one, and Valkey's dual-channel
        // sync): everything changed before the fork is in it, every later change must be
        // propagated to the replica's stream.
        propagation::replicas_possible(ctx);
        if !rewriting_aof(ctx) {
            return;
        }
        // CONFIG SET appendonly yes forks before its config event: learn the AOF is on now.
        propagation::read_persistence_state(ctx);
        // SAFETY: a plain call without arguments.
        if unsafe { rm!(RedisModule_AvoidReplicaTraffic)() } != 0 {
            // Replicating while clients are paused would abort the server; a bit later still
            // lands after the rewrite's base.
            replicate::token_counter_soon(ctx);
        } else {
            replicate::emit_token_counter(ctx);
        }
    })
}

/// Whether the forked child is an AOF rewrite (INFO persistence; forks are rare).
fn rewriting_aof(ctx: Ctx) -> bool {
    // SAFETY: ctx is a live event context; the info data is freed before returning.
    unsafe {
        let info = rm!(RedisModule_GetServerInfo)(ctx.0, c"persistence".as_ptr());
        if info.is_null() {
            return false;
        }
        let mut error: c_int = 0;
        let field = c"aof_rewrite_in_progress";
        let in_progress =
            rm!(RedisModule_ServerInfoGetFieldUnsigned)(info, field.as_ptr(), &mut error);
        rm!(RedisModule_FreeServerInfo)(ctx.0, info);
        error == 0 && in_progress == 1
    }
}

/// Watches for role changes and config changes, which decide whether anything listens to what
/// we propagate (propagation.rs; replicas attaching are seen by their fork, below).
pub fn watch_roles_and_configs(ctx: *mut redis_module::raw::RedisModuleCtx) -> bool {
    let watching =
        subscribe_to_server_event(
            ctx,
            raw::REDISMODULE_EVENT_REPLICATION_ROLE_CHANGED,
            role_changed,
        ) && subscribe_to_server_event(ctx, raw::REDISMODULE_EVENT_CONFIG, config_changed);
    if !watching {
        return false;
    }
    propagation::read_persistence_state(Ctx(ctx));
    propagation::replicas_possible(Ctx(ctx));
    true
}

/// CONFIG SET (appendonly among others) was applied.
unsafe extern "C" fn config_changed(
    ctx: *mut RedisModuleCtx,
    _event: RedisModuleEvent,
    _sub: u64,
    _data: *mut c_void,
) {
    run_callback("a config change", (), || {
        propagation::read_persistence_state(Ctx(ctx))
    });
}

/// A role change. A replica promoted to master may have missed the last tokens its old master
/// handed out (replication is asynchronous), and that master may go on granting for a while (a
/// split brain): the counter jumps the split allowance (`lock.split-allowance-ms`) ahead, and the new
/// master tells its own replicas, its AOF and, in a cluster, every other node.
unsafe extern "C" fn role_changed(
    ctx: *mut RedisModuleCtx,
    _event: RedisModuleEvent,
    sub: u64,
    _data: *mut c_void,
) {
    run_callback("a role change", (), || {
        let ctx = Ctx(ctx);
        propagation::replicas_possible(ctx);
        // Observers learn of a failover: their next answer comes from the new role.
        observed::wake_all(-1);
        if sub == raw::REDISMODULE_EVENT_REPLROLECHANGED_NOW_REPLICA {
            became_replica();
        }
        if sub == raw::REDISMODULE_EVENT_REPLROLECHANGED_NOW_MASTER {
            let allowance = configs::split_allowance_ms();
            with_tokens(|tokens| tokens.promote(now(), allowance));
            replicate::token_counter_soon(ctx);
            cluster_floor::broadcast(ctx);
        }
    })
}
