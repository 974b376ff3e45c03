//! Module timers: millisecond-precise, cheap (one event-loop event each). A timer carries a
//! plain number (a waiter's or a key queue's id), never a pointer, so a stale timer finds
//! nothing instead of freed memory.

use std::ffi::c_void;

use redis_module::raw::{RedisModuleCtx, RedisModuleTimerID};

use super::api::rm;
use super::context::Ctx;

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
