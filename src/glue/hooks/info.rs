//! The `lock` section of INFO: fields show as `lock_<name>`.

use std::ffi::{c_int, CStr};

use redis_module::raw::{RedisModuleCtx, RedisModuleInfoCtx};

use crate::glue::effects::propagation;
use crate::glue::effects::stats::{self, Counter};
use crate::glue::effects::token_counter;
use crate::glue::server::api::rm;
use crate::glue::server::entry::run_callback;
use crate::glue::server::value;
use crate::glue::waiting::waiters;

/// Registers the section; replaces the crate's empty default.
pub fn register(ctx: *mut RedisModuleCtx) {
    // SAFETY: ctx is the loading module's context; the callback lives as long as the module.
    unsafe { rm!(RedisModule_RegisterInfoFunc)(ctx, Some(info)) };
}

/// Also called while a crash report is written: reads state without ever waiting on it.
unsafe extern "C" fn info(ctx: *mut RedisModuleInfoCtx, _for_crash_report: c_int) {
    run_callback("INFO", (), || {
        let (queued, keys) = waiters::totals();
        let counters = [
            (c"acquisitions", Counter::Acquisitions),
            (c"reentries", Counter::Reentries),
            (c"releases", Counter::Releases),
            (c"renewals", Counter::Renewals),
            (c"contended", Counter::Contended),
            (c"handoffs_on_release", Counter::HandoffsOnRelease),
            (c"handoffs_on_expiry", Counter::HandoffsOnExpiry),
            (c"handoffs_on_delete", Counter::HandoffsOnDelete),
            (c"wait_timeouts", Counter::WaitTimeouts),
            (c"expirations", Counter::Expirations),
            (c"dropped_on_resync", Counter::DroppedOnResync),
            (c"shared_holds", Counter::SharedHolds),
            (c"limit_holds", Counter::LimitHolds),
            (c"session_ends", Counter::SessionEnds),
            (c"tokens_refused", Counter::TokensRefused),
        ];
        // SAFETY: ctx is the live INFO context; names are static C strings.
        unsafe {
            rm!(RedisModule_InfoAddSection)(ctx, c"".as_ptr());
            rm!(RedisModule_InfoAddFieldCString)(ctx, c"version".as_ptr(), VERSION.as_ptr());
            add(ctx, c"held", value::live_values());
            add(ctx, c"waiters", queued as u64);
            add(ctx, c"keys_waited_for", keys as u64);
            add(
                ctx,
                c"session_connections",
                crate::glue::waiting::session_index::connections() as u64,
            );
            add(
                ctx,
                c"session_index_keys",
                crate::glue::waiting::session_index::indexed_keys() as u64,
            );
            for (name, counter) in counters {
                add(ctx, name, stats::get(counter));
            }
            add(ctx, c"last_token", token_counter::last_token());
            // How far tokens run ahead of the clock: the promotions' jumps (core/tokens.rs).
            add(ctx, c"token_lead_ms", token_counter::lead_ms());
            add(ctx, c"replication_idle", u64::from(propagation::idle()));
        }
    })
}

unsafe fn add(ctx: *mut RedisModuleInfoCtx, name: &CStr, value: u64) {
    // SAFETY: the caller passes the live INFO context.
    unsafe { rm!(RedisModule_InfoAddFieldULongLong)(ctx, name.as_ptr(), value) };
}

/// The module's version, as Cargo.toml gives it.
const VERSION: &CStr =
    match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
        Ok(version) => version,
        Err(_) => c"unknown",
    };
