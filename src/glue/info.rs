//! The `lock` section of INFO: fields show as `lock_<name>`.

use std::ffi::{c_int, CStr};

use redis_module::raw::{RedisModuleCtx, RedisModuleInfoCtx};

use super::api::rm;
use super::entry::run_callback;
use super::{propagation, token_counter, waiters};

/// Registers the section; replaces the crate's empty default.
pub fn register(ctx: *mut RedisModuleCtx) {
    // SAFETY: ctx is the loading module's context; the callback lives as long as the module.
    unsafe { rm!(RedisModule_RegisterInfoFunc)(ctx, Some(info)) };
}

/// Also called while a crash report is written: reads state without ever waiting on it.
unsafe extern "C" fn info(ctx: *mut RedisModuleInfoCtx, _for_crash_report: c_int) {
    run_callback("INFO", (), || {
        let (queued, keys) = waiters::totals();
        // SAFETY: ctx is the live INFO context; names are static C strings.
        unsafe {
            rm!(RedisModule_InfoAddSection)(ctx, c"".as_ptr());
            add(ctx, c"waiters", queued as i64);
            add(ctx, c"keys_waited_for", keys as i64);
            add(ctx, c"last_token", token_counter::last_token() as i64);
            add(ctx, c"replication_idle", i64::from(propagation::idle()));
        }
    })
}

unsafe fn add(ctx: *mut RedisModuleInfoCtx, name: &CStr, value: i64) {
    // SAFETY: the caller passes the live INFO context.
    unsafe { rm!(RedisModule_InfoAddFieldLongLong)(ctx, name.as_ptr(), value) };
}
