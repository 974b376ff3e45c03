//! A slow sweep of the lock keys while any key has several holders (or a session hold): such a
//! key expires with its latest holder because rlock sets its expiry so, but an admin's
//! `PERSIST` (or a later `PEXPIRE`) takes that away, and no server signal tells a module of
//! it without taxing every command. The holds still end at their own expiries; the sweep
//! removes a key whose every hold has ended and that has no expiry of its own, as the
//! server's active expiry removes an expired key: one SCAN page (`SCAN ... COUNT 1000 TYPE
//! rlocklock`) every SWEEP_EVERY_MS, database after database, round and round.
//!
//! Nothing runs while no such key exists (value.rs counts them and calls `arm` when the first
//! appears); then the cost is that of a SCAN of 1,000 keys four times a second, whatever the
//! server holds. A key that has waiters is left to their queue's own checks.

use std::cell::RefCell;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;

use redis_module::raw;

use crate::glue::effects::keys::{Found, LockKey, OwnedString};
use crate::glue::effects::lock_scan;
use crate::glue::effects::replicate;
use crate::glue::effects::stats::{self, Counter};
use crate::glue::server::api::rm;
use crate::glue::server::context::{detached, now, Ctx};
use crate::glue::server::timers::{self, propagating_timer};
use crate::glue::server::value;
use crate::glue::waiting::handoff::Handling;
use crate::glue::waiting::waiters;

/// How often a page is swept, in ms.
const SWEEP_EVERY_MS: i64 = 250;
/// Keys a page covers (SCAN's COUNT).
const SWEEP_PAGE: u64 = 1000;

static ARMED: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// Where the sweep is: database and SCAN cursor.
    static AT: RefCell<(i32, Vec<u8>)> = RefCell::new((0, b"0".to_vec()));
}

/// Hooks the sweep to the first key of several holders (at load).
pub fn install() {
    value::on_first_holds_value(arm);
}

/// Starts the sweep unless it runs.
fn arm() {
    if ARMED.swap(true, Relaxed) {
        return;
    }
    match detached() {
        Some(ctx) => {
            timers::start(ctx, SWEEP_EVERY_MS, sweep_due, 0);
        }
        None => ARMED.store(false, Relaxed),
    }
}

propagating_timer!(sweep_due, "sweeping lock keys", sweep_page);

/// One page of the sweep, then the next one armed, or the sweep stopped when no key of
/// several holders is left. A replica sweeps nothing (it follows its master) but keeps the
/// timer, to sweep once promoted.
fn sweep_page(ctx: Ctx, _: u64) {
    if value::holds_values() == 0 {
        ARMED.store(false, Relaxed);
        // One may have appeared between the count and the flag.
        if value::holds_values() != 0 {
            arm();
        }
        return;
    }
    if ctx.has_flag(raw::REDISMODULE_CTX_FLAGS_MASTER) {
        sweep_next_page(ctx);
    }
    timers::start(ctx, SWEEP_EVERY_MS, sweep_due, 0);
}

fn sweep_next_page(ctx: Ctx) {
    let Some((db, cursor)) = next_database_with_keys(ctx) else {
        return;
    };
    let Some(page) = lock_scan::page(ctx, &cursor, None, SWEEP_PAGE) else {
        AT.with(|at| *at.borrow_mut() = (0, b"0".to_vec()));
        return;
    };
    let now = now();
    for key in &page.keys {
        remove_if_every_hold_ended(ctx, db, key, now);
    }
    let next = if page.cursor == b"0" {
        (db + 1, b"0".to_vec())
    } else {
        (db, page.cursor)
    };
    AT.with(|at| *at.borrow_mut() = next);
}

/// Selects where the sweep is, passing over empty databases (at most one round of them):
/// the database and cursor, or None when every database is empty.
fn next_database_with_keys(ctx: Ctx) -> Option<(i32, Vec<u8>)> {
    let (mut db, mut cursor) = AT.with(|at| at.borrow().clone());
    let mut wrapped = false;
    loop {
        // SAFETY: ctx is the live timer context; a database past the last is refused.
        let selected =
            unsafe { rm!(RedisModule_SelectDb)(ctx.0, db) } == raw::REDISMODULE_OK as i32;
        if !selected {
            if std::mem::replace(&mut wrapped, true) {
                return None;
            }
            (db, cursor) = (0, b"0".to_vec());
            continue;
        }
        // SAFETY: ctx is live, its database selected.
        if unsafe { rm!(RedisModule_DbSize)(ctx.0) } > 0 {
            AT.with(|at| *at.borrow_mut() = (db, cursor.clone()));
            return Some((db, cursor));
        }
        (db, cursor) = (db + 1, b"0".to_vec());
    }
}

/// Deletes the key `name` of `db` (selected) if it holds several-holder holds that have all
/// ended and has no expiry of its own: as an expiry, propagated as a deletion.
fn remove_if_every_hold_ended(ctx: Ctx, db: i32, name: &[u8], now: i64) {
    if waiters::queued(db, name) > 0 {
        return;
    }
    let _handling = Handling::begin();
    let key_name = OwnedString::new(ctx, name);
    let mut key = LockKey::open_writable(ctx, key_name.as_ptr());
    if !matches!(key.found(), Ok(Found::Holds)) || key.expiry().is_some() {
        return;
    }
    let Ok(Some(mut holds)) = key.holds() else {
        return;
    };
    holds.expire(now);
    if !holds.is_free() {
        return;
    }
    key.delete();
    replicate::deletion(ctx, key_name.as_ptr());
    key.notify_expired();
    stats::count(Counter::Expirations);
}
