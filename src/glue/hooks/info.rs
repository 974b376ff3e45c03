//! The `lock` section of INFO: fields show as `lock_<name>`.

use std::ffi::{c_int, CStr, CString};

use redis_module::raw::{RedisModuleCtx, RedisModuleInfoCtx};

use crate::glue::effects::monitor;
use crate::glue::effects::observed;
use crate::glue::effects::propagation;
use crate::glue::effects::stats::{self, Counter};
use crate::glue::effects::token_counter;
use crate::glue::server::api::rm;
use crate::glue::server::context::Ctx;
use crate::glue::server::entry::run_callback;
use crate::glue::server::timers;
use crate::glue::server::value;
use crate::glue::waiting::{several, waiters};

/// Registers the section; replaces the crate's empty default.
pub fn register(ctx: *mut RedisModuleCtx) {
    // SAFETY: ctx is the loading module's context; the callback lives as long as the module.
    unsafe { rm!(RedisModule_RegisterInfoFunc)(ctx, Some(info)) };
    timers::start(Ctx(ctx), RESETSTAT_LOOK_MS, resetstat_look, 0);
}

/// How often CONFIG RESETSTAT is looked for (no event tells a module of it).
const RESETSTAT_LOOK_MS: i64 = 1000;

/// CONFIG RESETSTAT zeroes `total_commands_processed`: then the wait and hold percentiles and
/// the hot keys start again (effects/monitor.rs). Looked at every second.
unsafe extern "C" fn resetstat_look(ctx: *mut RedisModuleCtx, _data: *mut std::ffi::c_void) {
    run_callback("looking for CONFIG RESETSTAT", (), || {
        let ctx = Ctx(ctx);
        crate::glue::commands::monitor::note_resetstat(ctx);
        timers::start(ctx, RESETSTAT_LOOK_MS, resetstat_look, 0);
    })
}

/// Also called while a crash report is written: reads state without ever waiting on it.
unsafe extern "C" fn info(ctx: *mut RedisModuleInfoCtx, _for_crash_report: c_int) {
    run_callback("INFO", (), || {
        let (queued, keys) = waiters::totals();
        let queued = queued + several::waiting();
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
            // Freed plain-lock allocations kept for reuse (glue/server/recycled.rs).
            let (kept, kept_len) = crate::glue::server::recycled::kept();
            add(ctx, c"recycled_bytes", (kept * kept_len) as u64);
            add(ctx, c"waiters", queued as u64);
            add(ctx, c"keys_waited_for", keys as u64);
            add(ctx, c"observers", observed::observers() as u64);
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
            add(
                ctx,
                c"moved_values",
                crate::glue::effects::moved_values::count() as u64,
            );
            // 1 once rlock listens to "expired" keyspace events, which every keyspace event of
            // the server then pays for (Redis 7.0 and 7.1 only, from the first lock the server
            // itself unlinks; events.rs).
            add(
                ctx,
                c"expiry_subscription",
                u64::from(crate::glue::hooks::events::watching_expiries()),
            );
            for (name, counter) in counters {
                add(ctx, name, stats::get(counter));
            }
            add(ctx, c"last_token", token_counter::last_token());
            // How far tokens run ahead of the clock: the promotions' jumps (core/state/tokens.rs).
            add(ctx, c"token_lead_ms", token_counter::lead_ms());
            add(ctx, c"replication_idle", u64::from(propagation::idle()));
            add_observed(ctx);
        }
    })
}

/// The lock log, the losses LOCK.LOST keeps, LOCK.TOP's table and the percentiles
/// (`lock_wait_percentiles_usec_<kind>:p50=…,p99=…,p99.9=…`, as INFO latencystats; a kind
/// with nothing recorded is left out).
unsafe fn add_observed(ctx: *mut RedisModuleInfoCtx) {
    let Some(snapshot) = monitor::info_snapshot() else {
        return;
    };
    // SAFETY: the caller passes the live INFO context.
    unsafe {
        add(ctx, c"log_len", snapshot.log_len);
        add(ctx, c"log_memory", snapshot.log_bytes);
        add(ctx, c"lost_len", snapshot.lost_len);
        add(ctx, c"lost_memory", snapshot.lost_bytes);
        add(ctx, c"top_keys", snapshot.top_len);
        add(ctx, c"top_memory", snapshot.top_bytes);
        add(ctx, c"histograms_memory", snapshot.histogram_bytes);
        for (measure, kind, line) in snapshot.percentiles {
            let name = format!("{}_percentiles_usec_{}", measure.name(), kind.name());
            let (Ok(name), Ok(line)) = (CString::new(name), CString::new(line)) else {
                continue;
            };
            rm!(RedisModule_InfoAddFieldCString)(ctx, name.as_ptr(), line.as_ptr());
        }
    }
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
