//! Handing a freed lock straight to the longest-waiting client, inside the server: on release,
//! on expiry (a module timer, on time, not when Redis' lazy expiry notices), and after the key
//! was deleted or flushed. The new owner, its absolute expiry and its token are written and
//! propagated in the same step, before the waiter is woken, so no other client can take the
//! lock in between.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::ffi::c_void;

use redis_module::raw::{self, RedisModuleCtx, RedisModuleString};

use crate::core::monitor::lock_log::HoldKind;
use crate::core::state::holds::{Admission, Holds};
use crate::core::waiting::handoff;
use crate::core::Millis;
use crate::glue::effects::keys::{LockKey, OwnedString};
use crate::glue::effects::monitor;
use crate::glue::effects::replicate;
use crate::glue::effects::signals::Event;
use crate::glue::effects::stats::{self, Counter};
use crate::glue::effects::token_counter::with_tokens;
use crate::glue::server::api::rm;
use crate::glue::server::context::{now, Ctx};
use crate::glue::server::entry::run_callback;
use crate::glue::server::timers::{self, propagating_timer, PAUSED_RETRY_MS};
pub use crate::glue::waiting::handling::{is_handling, Freed, Handling};
use crate::glue::waiting::migration;
use crate::glue::waiting::several;
use crate::glue::waiting::waiters::{self, KeyRef};

thread_local! {
    /// Locks handed to clients that were gone before their reply went out, by timer id.
    static TO_TAKE_BACK: RefCell<HashMap<u64, (KeyRef, u64)>> = RefCell::new(HashMap::new());
    static LAST_TAKE_BACK: Cell<u64> = const { Cell::new(0) };
    /// Keys to settle again after a several-key waiter left, by timer id.
    static TO_RESETTLE: RefCell<HashMap<u64, Vec<KeyRef>>> = RefCell::new(HashMap::new());
    static LAST_RESETTLE: Cell<u64> = const { Cell::new(0) };
    /// Waited-for locks the server expired before our check did: their handoff is counted as
    /// one on expiry, not on delete.
    static EXPIRED: RefCell<HashSet<KeyRef>> = RefCell::new(HashSet::new());
}

/// The lock at `name` went because it expired (the server expired it, or rlock removed a
/// restored key whose holders had all expired), after its unlink was noted: counted, logged,
/// and marked for its waiters, whose check the unlink scheduled (their handoff counts as one on
/// expiry).
pub fn lock_expired(db: i32, name: &[u8]) {
    stats::count(Counter::Expirations);
    monitor::key_expired(db, name, now());
    if waiters::anyone_waiting() && waiters::queued(db, name) > 0 {
        EXPIRED.with(|expired| expired.borrow_mut().insert(KeyRef::new(db, name)));
    }
}

/// Why the lock at `name`, found gone, was freed.
pub fn why_gone(db: i32, name: &[u8]) -> Freed {
    let key = KeyRef::new(db, name);
    if EXPIRED.with(|expired| expired.borrow_mut().remove(&key)) {
        Freed::Expired
    } else {
        Freed::Deleted
    }
}

/// Serves the queue of `key` from `holds`, which the caller may have changed (`changed`) and
/// not yet stored: admits the queue's heads while they fit (a run of shared requests together,
/// a waiter whose owner holds the key as a reentry), stores and propagates the result (the key
/// deleted when nobody holds it), and only then wakes the admitted clients. Whether the key
/// was deleted.
#[allow(clippy::too_many_arguments)]
pub fn settle(
    ctx: Ctx,
    key: &mut LockKey,
    name: *mut RedisModuleString,
    db: i32,
    key_bytes: &[u8],
    holds: &mut Holds,
    now: Millis,
    freed: Freed,
    changed: bool,
) -> bool {
    if waiters::several_on(db, key_bytes) {
        // Several-key waiters wait here too: the plan runs over every key they reach.
        let settled = several::settle(ctx, key, name, db, key_bytes, holds, now, freed, changed);
        for (key, at) in settled.checks {
            schedule_check(ctx, key.db, &key.name, at, now);
        }
        resettle_later(ctx, settled.resettle);
        return settled.free;
    }
    let _handling = Handling::begin();
    // Who leaves the queue with what: decided in core, on the queue as it stands.
    let plan = waiters::with_queue(db, key_bytes, |queue, queued| {
        with_tokens(|tokens| handoff::plan(holds, queue, queued, now, tokens))
    });
    let mut granted = Vec::new();
    let mut repeated = Vec::new();
    let mut refused = Vec::new();
    for outcome in &plan.leaving {
        let Some(waiter) = waiters::pop_first(ctx, db, key_bytes) else {
            break;
        };
        match *outcome {
            Admission::Granted { token } => {
                stats::count_kind(waiter.want);
                granted.push((token, waiter));
            }
            Admission::Reentered { token, .. } => granted.push((token, waiter)),
            Admission::Repeated { token } => repeated.push((token, waiter)),
            Admission::Refused | Admission::Wait => refused.push(waiter),
        }
    }
    // Applied in one order: store and propagate, then wake, then look again later.
    if changed || plan.grants() {
        key.put(holds);
        replicate::holds_state(ctx, name, holds);
    }
    let key_ref = || KeyRef {
        db,
        name: key_bytes.into(),
    };
    for (token, waiter) in granted {
        monitor::wait_ended(
            db,
            key_bytes,
            &waiter.owner,
            HoldKind::of_want(waiter.want),
            waiter.waited_us(),
            Some(token),
            now,
        );
        key.notify(Event::Handoff);
        key.notify(Event::Expire);
        stats::count(freed.counter());
        if let Some(client) = waiter.session_client() {
            crate::glue::waiting::session_index::register(client, key_ref());
        }
        waiter.client.unblock_granted(token, key_ref());
    }
    for (token, waiter) in repeated {
        // Its call took effect before (HELD): the same answer, no new change to report.
        waiter.client.unblock_granted(token, key_ref());
    }
    for waiter in refused {
        waiter.client.unblock_empty();
    }
    if let Some(at) = plan.next_check {
        schedule_check(ctx, db, key_bytes, at, now);
    }
    plan.free_after
}

/// A hold was let go (released to 0, its session closed, taken back from a client gone before
/// its reply): `holds` is changed and not yet stored. Settles it like a release, and publishes
/// `del` if nobody holds the key any more.
#[allow(clippy::too_many_arguments)]
pub fn settle_released(
    ctx: Ctx,
    key: &mut LockKey,
    name: *mut RedisModuleString,
    db: i32,
    key_bytes: &[u8],
    holds: &mut Holds,
    now: Millis,
) {
    if settle(
        ctx,
        key,
        name,
        db,
        key_bytes,
        holds,
        now,
        Freed::Released,
        true,
    ) {
        key.notify(Event::Del);
    }
}

/// The longest a waited-for lock goes unexamined: an admin's EXPIRE or PEXPIRE on the key
/// moves its expiry behind our timers' back (watching for it with keyspace events would tax
/// every EXPIRE and DEL on the server), so the check comes back at least this often.
pub const RECHECK_AT_LEAST_EVERY_MS: i64 = 1000;

/// Makes sure `key` is re-examined at `at` (unix ms) or earlier, if anyone waits for it: its
/// queue's one check timer (check_fired) is moved earlier when needed.
/// `now`: the caller's one clock read.
pub fn schedule_check(ctx: Ctx, db: i32, name: &[u8], at: Millis, now: Millis) {
    let at = at.min(now.saturating_add(RECHECK_AT_LEAST_EVERY_MS));
    let Some((old_timer, queue_id)) = waiters::replace_check(db, name, at) else {
        return;
    };
    if let Some(timer) = old_timer {
        timers::stop(ctx, timer);
    }
    let timer = timers::start(ctx, at - now, check_fired, queue_id);
    waiters::check_armed(queue_id, timer, at);
}

/// Every key waited for in `db` (-1: all) is examined again at once.
pub fn schedule_all_checks(ctx: Ctx, db: i32) {
    let now = now();
    for key in waiters::waited_keys(db) {
        schedule_check(ctx, key.db, &key.name, now, now);
    }
}

/// A key's check timer fired: hand the lock over if it is free, else look again at its expiry.
///
/// # Safety
/// Called by the server only, as a timer callback with a live context.
pub unsafe extern "C" fn check_fired(ctx: *mut RedisModuleCtx, data: *mut c_void) {
    run_callback("a lock check", (), || {
        let ctx = Ctx(ctx);
        let Some(key) = waiters::take_fired_check(timers::id_of(data)) else {
            return;
        };
        // Timers fire on replicas too; only a master decides who gets a lock.
        if !ctx.has_flag(raw::REDISMODULE_CTX_FLAGS_MASTER) {
            return;
        }
        // SAFETY: a plain call without arguments.
        if unsafe { rm!(RedisModule_AvoidReplicaTraffic)() } != 0 {
            let now = now();
            schedule_check(ctx, key.db, &key.name, now + PAUSED_RETRY_MS, now);
            return;
        }
        check_key(ctx, &key);
    })
}

fn check_key(ctx: Ctx, key: &KeyRef) {
    let _handling = Handling::begin();
    ctx.select_db(key.db);
    let name = OwnedString::new(ctx, &key.name);
    let mut lock_key = LockKey::open_writable(ctx, name.as_ptr());
    let now = now();
    let (db, bytes) = (key.db, &key.name[..]);
    match lock_key.holds() {
        Err(_) => {
            // Something that is not a lock replaced it: the waiters learn it by retrying.
            wake_all_with_nil(ctx, key.db, &key.name);
        }
        Ok(Some(mut holds)) => {
            monitor::expiring(db, || bytes.to_vec(), &holds, now);
            let expired = holds.expire(now);
            let closed = lock_key.sessions_closed() > 0;
            if closed && expired == 0 {
                // A session's connection closed (its hold may have been renamed or moved
                // here): its weight goes to the queue.
                settle_released(
                    ctx,
                    &mut lock_key,
                    name.as_ptr(),
                    db,
                    bytes,
                    &mut holds,
                    now,
                );
            } else if expired > 0 {
                let others_hold_on = !holds.is_free();
                if others_hold_on {
                    // Some holders expired, others hold on: their weight goes to the queue.
                    stats::add(Counter::Expirations, expired as u64);
                } else {
                    // Every ttl has run out, to the millisecond: Redis would call it expired
                    // one millisecond later; the waiters need not wait for that.
                    lock_key.delete();
                    replicate::deletion(ctx, name.as_ptr());
                    lock_key.notify_expired();
                    stats::count(Counter::Expirations);
                }
                settle(
                    ctx,
                    &mut lock_key,
                    name.as_ptr(),
                    db,
                    bytes,
                    &mut holds,
                    now,
                    Freed::Expired,
                    others_hold_on,
                );
            } else {
                // Still held (renewed, or reentered): look again at the next expiry, or sooner.
                let at = holds.next_expiry().unwrap_or(i64::MAX);
                schedule_check(ctx, key.db, &key.name, at, now);
            }
        }
        Ok(None) => {
            let freed = why_gone(key.db, &key.name);
            if freed == Freed::Deleted && ctx.has_flag(raw::REDISMODULE_CTX_FLAGS_CLUSTER) {
                // In a cluster a lock also vanishes when its slot moves to another node (the
                // server drops the slot's keys, with no command to tell it from a DEL): the
                // lock may live on there, held. Its waiters get nil and, retrying, are
                // redirected to wherever the slot is now.
                wake_all_with_nil(ctx, key.db, &key.name);
                return;
            }
            let mut holds = Holds::default();
            settle(
                ctx,
                &mut lock_key,
                name.as_ptr(),
                db,
                bytes,
                &mut holds,
                now,
                freed,
                false,
            );
        }
    }
}

/// Every waiter of `key`, single- and several-key, is woken with nil (see
/// `waiters::wake_all_with_nil`).
fn wake_all_with_nil(ctx: Ctx, db: i32, name: &[u8]) {
    waiters::wake_all_with_nil(ctx, db, name);
    let others = several::wake_all_with_nil(ctx, db, name);
    resettle_later(ctx, others);
}

/// A several-key waiter left (timeout, disconnect, CLIENT UNBLOCK, woken with nil): those
/// behind it on its other `keys` may go now. From a timer: a disconnect runs inside the
/// server's client teardown.
pub fn resettle_later(ctx: Ctx, mut keys: Vec<KeyRef>) {
    if keys.is_empty() {
        return;
    }
    keys.sort_by(|a, b| (a.db, &a.name).cmp(&(b.db, &b.name)));
    keys.dedup();
    let id = LAST_RESETTLE.with(|last| {
        last.set(last.get() + 1);
        last.get()
    });
    TO_RESETTLE.with(|pending| pending.borrow_mut().insert(id, keys));
    timers::start(ctx, 0, resettle_fired, id);
}

propagating_timer!(resettle_fired, "settling keys a waiter left", resettle);

/// Settles pending resettle `id`'s keys, on a master.
fn resettle(ctx: Ctx, id: u64) {
    let Some(keys) = TO_RESETTLE.with(|pending| pending.borrow_mut().remove(&id)) else {
        return;
    };
    if !ctx.has_flag(raw::REDISMODULE_CTX_FLAGS_MASTER) {
        return;
    }
    let _handling = Handling::begin();
    let now = now();
    for key in keys {
        ctx.select_db(key.db);
        let name = OwnedString::new(ctx, &key.name);
        let mut lock_key = LockKey::open_writable(ctx, name.as_ptr());
        let Ok(holds) = lock_key.holds() else {
            continue;
        };
        let mut holds = holds.unwrap_or_default();
        let sessions_ended = lock_key.sessions_closed() > 0;
        settle(
            ctx,
            &mut lock_key,
            name.as_ptr(),
            key.db,
            &key.name,
            &mut holds,
            now,
            Freed::Released,
            sessions_ended,
        );
    }
}

/// A lock value left the keyspace (DEL, UNLINK, expiry, eviction, overwrite, RENAME): its
/// waiters, if any, get it at once. Deferred to a timer: writing from inside the server's
/// deletion would replicate out of order.
pub fn lock_removed(ctx: Ctx, db: i32, name: &[u8]) {
    if is_handling() || !waiters::anyone_waiting() {
        return;
    }
    if migration::take_serialized(name) {
        // The lock moves on to another node, held: handing it over here would make a second
        // owner. Its waiters get nil and, retrying, are redirected (cluster) to where it went.
        wake_all_with_nil(ctx, db, name);
        return;
    }
    let now = now();
    schedule_check(ctx, db, name, now, now);
}

/// The lock `token` at `key` was handed to a client that disconnected before its reply: take
/// it back (soon, from a timer: the disconnect happens inside the server's client teardown).
pub fn take_back_later(ctx: Ctx, key: KeyRef, token: u64) {
    let id = LAST_TAKE_BACK.with(|last| {
        last.set(last.get() + 1);
        last.get()
    });
    TO_TAKE_BACK.with(|pending| pending.borrow_mut().insert(id, (key, token)));
    timers::start(ctx, 0, take_back_fired, id);
}

propagating_timer!(take_back_fired, "taking back a lock", take_back_pending);

/// Takes back the lock of pending take-back `id`, on a master.
fn take_back_pending(ctx: Ctx, id: u64) {
    let Some((key, token)) = TO_TAKE_BACK.with(|pending| pending.borrow_mut().remove(&id)) else {
        return;
    };
    if ctx.has_flag(raw::REDISMODULE_CTX_FLAGS_MASTER) {
        take_back(ctx, &key, token);
    }
}

/// Ends the hold handed out with `token` at `key` if it is still untouched (held once): to the
/// next waiters, or the key deleted.
fn take_back(ctx: Ctx, key: &KeyRef, token: u64) {
    let _handling = Handling::begin();
    ctx.select_db(key.db);
    let name = OwnedString::new(ctx, &key.name);
    let mut lock_key = LockKey::open_writable(ctx, name.as_ptr());
    let Ok(Some(mut holds)) = lock_key.holds() else {
        return;
    };
    let before = holds.holders.len();
    holds
        .holders
        .retain(|holder| !(holder.token == token && holder.count == 1));
    if holds.holders.len() == before {
        return;
    }
    let (db, bytes) = (key.db, &key.name[..]);
    settle_released(
        ctx,
        &mut lock_key,
        name.as_ptr(),
        db,
        bytes,
        &mut holds,
        now(),
    );
}
