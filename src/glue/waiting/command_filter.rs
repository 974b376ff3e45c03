//! A command filter, registered only while someone waits for a lock (or a woken waiter's reply
//! is still to go out), acts on one command: CLIENT UNBLOCK of a client whose reply is on its
//! way (see spare_pending_reply). CLIENT UNBLOCK runs when it arrives (it cannot be queued in
//! MULTI: a queued one would reach the filter at queueing time, so only a direct call is
//! spared; inside EXEC or a script it finds the client already unblocked by then).
//!
//! A filter sees every command on the server, so it costs every command (~200 instructions)
//! while it is registered; with nobody waiting the command does not concern rlock. MIGRATE,
//! once watched here too, is seen when it serializes the lock (migration.rs): a filter sees a
//! command when it is queued in MULTI, not when EXEC runs it. A replica attaching (SYNC/PSYNC)
//! is seen by its fork (events.rs).

use std::ffi::c_void;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicPtr};

use redis_module::raw::{RedisModuleCommandFilter, RedisModuleCommandFilterCtx, RedisModuleCtx};

use crate::core::request::parse_integer;
use crate::glue::server::api::rm;
use crate::glue::server::blocked_client;
use crate::glue::server::context::{detached, Ctx};
use crate::glue::server::entry::{run_callback, string_bytes};
use crate::glue::server::timers;
use crate::glue::waiting::waiters;

// Atomics, not thread_locals: every LOCK.ACQUIRE asks (see propagation.rs).
/// The registered filter, if any.
static FILTER: AtomicPtr<RedisModuleCommandFilter> = AtomicPtr::new(std::ptr::null_mut());
/// A timer will see whether the filter can go.
static RETIRE_ARMED: AtomicBool = AtomicBool::new(false);

/// Whether the filter has work: someone waits, or a woken waiter's reply is still to go out.
fn needed() -> bool {
    waiters::anyone_waiting() || blocked_client::any_reply_pending()
}

/// Whether the filter is needed and not registered.
pub fn registration_due() -> bool {
    FILTER.load(Relaxed).is_null() && needed()
}

/// Registers the filter if someone waits now (called after every LOCK.ACQUIRE: the only
/// command that makes a waiter). False if the server refused.
pub fn register_if_needed(ctx: Ctx) -> bool {
    if !registration_due() {
        return true;
    }
    // SAFETY: ctx is a live context of this module; the callback lives as long as the module.
    let filter = unsafe { rm!(RedisModule_RegisterCommandFilter)(ctx.0, Some(filter), 0) };
    FILTER.store(filter, Relaxed);
    !filter.is_null()
}

/// Unregisters the filter once nobody waits; from a timer, never from inside the filter
/// (the server is walking its filter list then).
unsafe extern "C" fn retire(ctx: *mut RedisModuleCtx, _data: *mut c_void) {
    run_callback("the command filter's retirement", (), || {
        RETIRE_ARMED.store(false, Relaxed);
        let filter = FILTER.load(Relaxed);
        if filter.is_null() || needed() {
            return;
        }
        // SAFETY: ctx is this module's timer context; filter is ours and still registered.
        unsafe { rm!(RedisModule_UnregisterCommandFilter)(ctx, filter) };
        FILTER.store(std::ptr::null_mut(), Relaxed);
    })
}

unsafe extern "C" fn filter(fctx: *mut RedisModuleCommandFilterCtx) {
    run_callback("the command filter", (), || {
        // SAFETY: fctx is the live filter context of this call.
        let arg = |at: i32| unsafe {
            let string = rm!(RedisModule_CommandFilterArgGet)(fctx, at);
            (!string.is_null()).then(|| string_bytes(string))
        };
        let Some(name) = arg(0) else {
            return;
        };
        if name.eq_ignore_ascii_case(b"client") {
            // SAFETY: as above.
            unsafe { see_unblock(fctx, arg(1), arg(2), arg(3)) };
        }
        if needed() || RETIRE_ARMED.load(Relaxed) {
            return;
        }
        if let Some(ctx) = detached() {
            RETIRE_ARMED.store(true, Relaxed);
            timers::start(ctx, 0, retire, 0);
        }
    })
}

/// `CLIENT UNBLOCK id [TIMEOUT | ERROR]`. On a client we woke whose reply has not gone out yet
/// it would leave the client with no reply at all (Redis 7.0 skips an already-unblocked
/// client's timeout reply): point it at a client id that does not exist instead, so it
/// answers 0 and the reply goes out. Otherwise it is noted for the waiter (blocking.rs): queued
/// in MULTI, it runs when EXEC does, maybe after the waiter was handed the lock.
///
/// # Safety
/// `fctx` must be the live filter context the arguments come from.
unsafe fn see_unblock(
    fctx: *mut RedisModuleCommandFilterCtx,
    sub: Option<&[u8]>,
    id: Option<&[u8]>,
    mode: Option<&[u8]>,
) {
    let (Some(sub), Some(id)) = (sub, id) else {
        return;
    };
    let Some(id) = parse_integer(id).and_then(|id| u64::try_from(id).ok()) else {
        return;
    };
    if !sub.eq_ignore_ascii_case(b"unblock") {
        return;
    }
    if !blocked_client::reply_pending(id) {
        if !blocked_client::waits_for_a_lock(id) {
            return;
        }
        let error = mode.is_some_and(|mode| mode.eq_ignore_ascii_case(b"error"));
        blocked_client::note_unblock(id, error);
        if error && blocked_client::server_before_7_2() {
            // The server's ERROR form writes its error to the waiter even when the waiter was
            // handed the lock a moment before, in the same EXEC: rlock answers instead
            // (blocking.rs), so the waiter gets one reply.
            // SAFETY: fctx is live; arguments 0..=3 exist (mode is argument 3).
            unsafe { replace_arg(fctx, 3, b"TIMEOUT") };
        }
        return;
    }
    let nobody = i64::MAX.to_string();
    // SAFETY: fctx is live and has argument 2 (the id).
    unsafe { replace_arg(fctx, 2, nobody.as_bytes()) };
}

/// Replaces argument `at` of the filtered command with `text`.
///
/// # Safety
/// `fctx` must be the live filter context, with an argument at `at`.
unsafe fn replace_arg(fctx: *mut RedisModuleCommandFilterCtx, at: i32, text: &[u8]) {
    // SAFETY: a string made for the filter, which takes ownership of it (null context).
    unsafe {
        let string =
            rm!(RedisModule_CreateString)(std::ptr::null_mut(), text.as_ptr().cast(), text.len());
        rm!(RedisModule_CommandFilterArgReplace)(fctx, at, string);
    }
}
