//! Module timers: millisecond-precise, cheap (one event-loop event each). A timer carries a
//! plain number (a waiter's or a key queue's id), never a pointer, so a stale timer finds
//! nothing instead of freed memory.

use std::ffi::c_void;

use redis_module::raw::{RedisModuleCtx, RedisModuleTimerID};

use crate::glue::server::api::rm;
use crate::glue::server::context::Ctx;

/// How long a timer that must propagate waits while clients are paused (CLIENT PAUSE,
/// FAILOVER): replicating then would abort the server (`propagateNow` asserts).
pub const PAUSED_RETRY_MS: i64 = 10;

pub type TimerId = RedisModuleTimerID;
pub type TimerCallback = unsafe extern "C" fn(*mut RedisModuleCtx, *mut c_void);

/// Calls `callback` with `id` after `delay_ms`.
pub fn start(ctx: Ctx, delay_ms: i64, callback: TimerCallback, id: u64) -> TimerId {
    // SAFETY: ctx is a live context; the data is a number smuggled in the pointer, never read
    // as memory.
    unsafe {
        rm!(RedisModule_CreateTimer)(
            ctx.0,
            delay_ms.max(0),
            Some(callback),
            id as usize as *mut c_void,
        )
    }
}

/// Cancels a timer that may already have fired (then this does nothing).
pub fn stop(ctx: Ctx, timer: TimerId) {
    // SAFETY: ctx is a live context; the data is a number, so there is nothing to free.
    unsafe { rm!(RedisModule_StopTimer)(ctx.0, timer, std::ptr::null_mut()) };
}

/// The number a timer was started with.
pub fn id_of(data: *mut c_void) -> u64 {
    data as usize as u64
}

/// Whether replicating now is forbidden (clients paused); if so, `callback` is started again
/// with `id` a little later and the caller returns.
pub fn retry_while_paused(ctx: Ctx, callback: TimerCallback, id: u64) -> bool {
    // SAFETY: a plain call without arguments.
    if unsafe { rm!(RedisModule_AvoidReplicaTraffic)() } == 0 {
        return false;
    }
    start(ctx, PAUSED_RETRY_MS, callback, id);
    true
}

/// Declares a timer callback that writes and propagates: panics are caught and logged, and
/// while clients are paused it runs again a little later instead. `$body` gets the timer's
/// context and the number it was started with.
macro_rules! propagating_timer {
    ($(#[$doc:meta])* $name:ident, $what:expr, $body:expr) => {
        $(#[$doc])*
        unsafe extern "C" fn $name(
            ctx: *mut redis_module::raw::RedisModuleCtx,
            data: *mut std::ffi::c_void,
        ) {
            $crate::glue::server::entry::run_callback($what, (), || {
                let ctx = $crate::glue::server::context::Ctx(ctx);
                let id = $crate::glue::server::timers::id_of(data);
                if $crate::glue::server::timers::retry_while_paused(ctx, $name, id) {
                    return;
                }
                let body: fn($crate::glue::server::context::Ctx, u64) = $body;
                body(ctx, id)
            })
        }
    };
}
pub(crate) use propagating_timer;
