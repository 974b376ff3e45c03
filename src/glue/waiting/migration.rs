//! Locks that MIGRATE moves to another node. Their waiters here must get nil, never this node's
//! copy of a lock that lives on, held, at the target (two owners).
//!
//! MIGRATE serializes each key (the data type's `rdb_save`, on the main thread) and deletes it
//! in the same step, with no other command in between, whether it runs alone, inside
//! MULTI/EXEC, from a script or function, or after CLIENT PAUSE let it go. So a lock with
//! waiters that `rdb_save` serialized on the main thread and that is deleted before the
//! event loop turns again has been moved. (A command filter once watched for MIGRATE instead; it
//! saw a queued MIGRATE when it was queued, not when EXEC ran it.)
//!
//! DUMP, SAVE and a FLUSHALL that saves serialize on the main thread too: a waited-for lock
//! DUMPed and then DELeted within the same event-loop turn (pipelined, or in one MULTI) gives
//! its waiters nil rather than the lock. That errs on the safe side: they retry.

use std::cell::{Cell, RefCell};
use std::ffi::c_void;

use redis_module::raw::{self, RedisModuleCtx, RedisModuleIO};

use crate::glue::server::api::rm;
use crate::glue::server::context::detached;
use crate::glue::server::entry::{run_callback, string_bytes};
use crate::glue::server::timers;
use crate::glue::waiting::waiters;

thread_local! {
    /// (database, key) of waited-for locks serialized on the main thread in this event-loop turn.
    static SERIALIZED: RefCell<Vec<(i32, Box<[u8]>)>> = const { RefCell::new(Vec::new()) };
    /// A timer will forget them once the turn is over.
    static FORGET_ARMED: Cell<bool> = const { Cell::new(false) };
}

/// The data type's `rdb_save` is serializing the value of `io`'s key (a fork child's save, a
/// DUMP, a MIGRATE, ...). Costs nothing while nobody waits for a lock.
///
/// # Safety
/// `io` must be the live saving stream of the running `rdb_save`.
pub unsafe fn note_serialized(io: *mut RedisModuleIO) {
    if !waiters::anyone_waiting() {
        return;
    }
    let Some(ctx) = detached() else {
        return;
    };
    if ctx.has_flag(raw::REDISMODULE_CTX_FLAGS_IS_CHILD) {
        return;
    }
    // SAFETY: io is live for this call; the name (if the server passes one) lives as long.
    let (db, name) = unsafe {
        (
            rm!(RedisModule_GetDbIdFromIO)(io),
            rm!(RedisModule_GetKeyNameFromIO)(io),
        )
    };
    if name.is_null() {
        return;
    }
    // SAFETY: a live string of the server's.
    let name = unsafe { string_bytes(name) };
    // The serialized database is the target's for MIGRATE: look for waiters by name.
    if !waiters::queued_anywhere(name) {
        return;
    }
    SERIALIZED.with(|keys| keys.borrow_mut().push((db, name.into())));
    if !FORGET_ARMED.with(|armed| armed.replace(true)) {
        timers::start(ctx, 0, forget, 0);
    }
}

/// Whether the lock at `name`, deleted just now, was serialized in this turn: moved away by
/// MIGRATE. Forgets it. The database is not compared: MIGRATE serializes a key under the
/// target's database number (`MIGRATE ... key 3 ...` from db 0), and a wrong match only gives
/// waiters nil (they retry).
pub fn take_serialized(name: &[u8]) -> bool {
    SERIALIZED.with(|keys| {
        let mut keys = keys.borrow_mut();
        let found = keys.iter().position(|(_, key)| **key == *name);
        found.map(|i| keys.swap_remove(i)).is_some()
    })
}

/// The event loop turned: no MIGRATE is half done.
unsafe extern "C" fn forget(_ctx: *mut RedisModuleCtx, _data: *mut c_void) {
    run_callback("forgetting serialized locks", (), || {
        FORGET_ARMED.with(|armed| armed.set(false));
        SERIALIZED.with(|keys| keys.borrow_mut().clear());
    })
}
