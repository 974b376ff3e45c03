//! Whether anything listens to what we propagate: the AOF, RDB save points (RM_Replicate is
//! what counts a module's change toward them), replicas, or a replication backlog a replica
//! may resume from. With none of them Redis drops propagated commands, but only after
//! RM_Replicate has looked up the command and built its arguments, which is half the cost of a
//! lock command. So we skip RM_Replicate when, and only when, nothing would use it.
//!
//! "No replicas and no backlog" is learned from INFO, never assumed: it starts unknown (so
//! everything is propagated), a check every second may clear it, and anything that could
//! create a replica's stream (the fork of a full sync, seen by events.rs; a role change) sets it
//! again before any change could be missed: what came before the fork is in its snapshot.

use std::ffi::{c_int, c_void, CStr};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU8};

use redis_module::raw::{self, RedisModuleCtx};

use crate::glue::server::api::rm;
use crate::glue::server::context::Ctx;
use crate::glue::server::entry::run_callback;
use crate::glue::server::timers;

/// How often to ask INFO whether replicas or a backlog are gone.
const CHECK_EVERY_MS: i64 = 1000;

// Main-thread state in atomics (Relaxed: nothing is ordered by them): every command reads
// them, and a thread_local in a shared library costs a __tls_get_addr call per access.

/// Who may listen, as bits of one atomic (one load answers "nobody" on every command):
/// `REPLICAS` is set unless INFO showed a master with no replicas and no backlog since the
/// last event that could have changed that; `AOF` while the AOF is on (or being switched on),
/// read at load, after every CONFIG SET and before an AOF rewrite (asking the server for its
/// context flags on every command costs more than the rest of a release); `SAVE_POINTS` while
/// RDB save points are set (they count changes, and a module's change counts only when it
/// propagates something), read as `AOF` is.
static LISTENING: AtomicU8 = AtomicU8::new(REPLICAS | AOF | SAVE_POINTS);
const REPLICAS: u8 = 1;
const AOF: u8 = 2;
const SAVE_POINTS: u8 = 4;
static CHECK_ARMED: AtomicBool = AtomicBool::new(false);

fn set_listening(bit: u8, on: bool) {
    if on {
        LISTENING.fetch_or(bit, Relaxed);
    } else {
        LISTENING.fetch_and(!bit, Relaxed);
    }
}

/// Who would use a propagated change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listeners {
    /// The AOF, a replica or a backlog: the effect itself must be propagated.
    Effects,
    /// Only RDB save points: the change must be counted; what is propagated is dropped.
    ChangeCount,
    Nobody,
}

#[inline]
pub fn listeners() -> Listeners {
    let listening = LISTENING.load(Relaxed);
    if listening & (AOF | REPLICAS) != 0 {
        Listeners::Effects
    } else if listening & SAVE_POINTS != 0 {
        Listeners::ChangeCount
    } else {
        Listeners::Nobody
    }
}

/// Reads whether the AOF or RDB save points persist changes.
pub fn read_persistence_state(ctx: Ctx) {
    set_listening(AOF, ctx.has_flag(raw::REDISMODULE_CTX_FLAGS_AOF));
    set_listening(SAVE_POINTS, ctx.has_flag(raw::REDISMODULE_CTX_FLAGS_RDB));
}

/// Whether propagation is being skipped because nothing listens (for INFO).
#[inline]
pub fn idle() -> bool {
    LISTENING.load(Relaxed) == 0
}

/// Something may have created a replica or a backlog: propagate until INFO says otherwise.
pub fn replicas_possible(ctx: Ctx) {
    set_listening(REPLICAS, true);
    if !CHECK_ARMED.swap(true, Relaxed) {
        timers::start(ctx, CHECK_EVERY_MS, check_fired, 0);
    }
}

unsafe extern "C" fn check_fired(ctx: *mut RedisModuleCtx, _data: *mut c_void) {
    run_callback("the replication check", (), || {
        let ctx = Ctx(ctx);
        CHECK_ARMED.store(false, Relaxed);
        read_persistence_state(ctx);
        if nothing_listens(ctx) {
            set_listening(REPLICAS, false);
        } else {
            replicas_possible(ctx);
        }
    })
}

/// A master with no replicas and no backlog, according to INFO replication.
fn nothing_listens(ctx: Ctx) -> bool {
    // SAFETY: ctx is a live timer context; the info data is freed before returning.
    unsafe {
        let info = rm!(RedisModule_GetServerInfo)(ctx.0, c"replication".as_ptr());
        if info.is_null() {
            return false;
        }
        let unsigned = |field: &CStr| {
            let mut error: c_int = 0;
            let value =
                rm!(RedisModule_ServerInfoGetFieldUnsigned)(info, field.as_ptr(), &mut error);
            (error == 0).then_some(value)
        };
        let role = rm!(RedisModule_ServerInfoGetFieldC)(info, c"role".as_ptr());
        let is_master = !role.is_null() && CStr::from_ptr(role) == c"master";
        let quiet = is_master
            && unsigned(c"connected_slaves") == Some(0)
            && unsigned(c"repl_backlog_active") == Some(0);
        rm!(RedisModule_FreeServerInfo)(ctx.0, info);
        quiet
    }
}
