//! What reaches replicas and the AOF: each change as its effect, never the client's input.
//!
//! A lock's whole state travels as `LOCK.APPLY key owner count expires_at token counter`, with
//! the absolute expiry in unix ms and the server's token counter, so a replica or an AOF
//! replay ends in the master's state whatever its clock; a freed lock travels as `DEL key`.
//! Holds that are not one plain lock (shared, semaphore, session) travel whole as
//! `LOCK.APPLY key HOLDS counter state`, the state being their tagged bytes
//! (`encoding::encode_holds`): every holder with its own absolute expiry and token. A replica
//! of an older rlock refuses that form (an error in its log, the key left as it was): upgrade
//! replicas before using SHARED, LIMIT or SESSION.

use std::ffi::{c_char, CStr};

use redis_module::raw::{self, RedisModuleString};

use crate::core::state::holds::Holds;
use crate::core::state::lock::Lock;
use crate::core::stored::encoding::encode_holds;
use crate::core::Millis;
use crate::glue::effects::propagation::{self, Listeners};
use crate::glue::effects::token_counter::{last_token, token_floor};
use crate::glue::server::api::rm;
use crate::glue::server::context::{now, Ctx};
use crate::glue::server::entry;
use crate::glue::server::timers::{self, propagating_timer};

/// The internal command that replays a lock state.
pub const APPLY_COMMAND: &CStr = c"LOCK.APPLY";
/// Its arguments for RM_Replicate / RM_EmitAOF: key, owner (buffer + length), count,
/// expires_at, token, counter.
pub const APPLY_FORMAT: &CStr = c"sbllll";

/// The arguments of `LOCK.APPLY` after the key, in `APPLY_FORMAT` order; they borrow the
/// owner from `lock`.
pub struct ApplyArgs {
    pub owner: *const c_char,
    pub owner_len: usize,
    pub count: i64,
    /// Unix ms; 0: no expiry.
    pub expires_at: i64,
    pub token: i64,
    pub counter: i64,
}

impl ApplyArgs {
    pub fn of(lock: &Lock, expires_at: Option<Millis>) -> ApplyArgs {
        ApplyArgs::of_parts(lock.owner(), lock.count(), lock.token(), expires_at)
    }

    /// The same for a plain lock given by its fields (no packed copy needed).
    pub fn of_parts(owner: &[u8], count: u32, token: u64, expires_at: Option<Millis>) -> ApplyArgs {
        ApplyArgs {
            owner: owner.as_ptr().cast::<c_char>(),
            owner_len: owner.len(),
            count: i64::from(count),
            expires_at: expires_at.unwrap_or(0),
            token: token as i64,
            counter: last_token() as i64,
        }
    }
}

/// Whether to propagate the effect now. When only RDB save points listen, the change is
/// counted the cheap way instead: the running command passed on as it is, which nothing will
/// read (no AOF, no replica, no backlog), but which counts as a change. That is only done in
/// the running command's own context, outside MULTI (where a CONFIG SET appendonly in the same
/// EXEC could still turn the AOF on before the pending commands are written). Nobody listening
/// (no AOF, replica or save point) is decided in line, on one load; the rest out of line.
#[inline(always)]
fn effect_needed(ctx: Ctx) -> bool {
    !propagation::idle() && effect_needed_by_listeners(ctx)
}

#[inline(never)]
fn effect_needed_by_listeners(ctx: Ctx) -> bool {
    match propagation::listeners() {
        Listeners::Effects => true,
        Listeners::Nobody => false,
        Listeners::ChangeCount => {
            let in_command = entry::is_running_command(ctx);
            if in_command && !ctx.has_flag(raw::REDISMODULE_CTX_FLAGS_MULTI) {
                verbatim(ctx);
                false
            } else {
                true
            }
        }
    }
}

/// Propagates the plain lock of `owner` with `count` and `token`, expiring at `expires_at`
/// (`None`: never), as the state of `key`.
#[inline(always)]
pub fn plain_state(
    ctx: Ctx,
    key: *mut RedisModuleString,
    owner: &[u8],
    count: u32,
    token: u64,
    expires_at: Option<Millis>,
) {
    if effect_needed(ctx) {
        send_plain_state(
            ctx,
            key,
            ApplyArgs::of_parts(owner, count, token, expires_at),
        );
    }
}

/// RM_Replicate of `LOCK.APPLY` with `a`; the caller decided that the effect is needed.
#[inline(never)]
fn send_plain_state(ctx: Ctx, key: *mut RedisModuleString, a: ApplyArgs) {
    let (command, format) = (APPLY_COMMAND.as_ptr(), APPLY_FORMAT.as_ptr());
    // SAFETY: the format matches the arguments one for one; the owner lives through the call.
    unsafe {
        rm!(RedisModule_Replicate)(
            ctx.0,
            command,
            format,
            key,
            a.owner,
            a.owner_len,
            a.count,
            a.expires_at,
            a.token,
            a.counter,
        )
    };
}

/// The arguments of `LOCK.APPLY key HOLDS counter state` for RM_Replicate / RM_EmitAOF.
pub const HOLDS_FORMAT: &CStr = c"sclb";
pub const HOLDS_TAG: &CStr = c"HOLDS";

/// Propagates `holds` as the whole state of `key`: a plain lock as before, other holds in the
/// HOLDS form, no holders as a deletion.
pub fn holds_state(ctx: Ctx, key: *mut RedisModuleString, holds: &Holds) {
    // Asked first, once for every form: nothing is built when nothing listens.
    if !effect_needed(ctx) {
        return;
    }
    if holds.is_free() {
        send_deletion(ctx, key);
        return;
    }
    if let Some((lock, expires_at)) = holds.as_plain_lock() {
        send_plain_state(ctx, key, ApplyArgs::of(&lock, expires_at));
        return;
    }
    let state = encode_holds(holds);
    // SAFETY: the format matches the arguments one for one; the bytes live through the call.
    unsafe {
        rm!(RedisModule_Replicate)(
            ctx.0,
            APPLY_COMMAND.as_ptr(),
            HOLDS_FORMAT.as_ptr(),
            key,
            HOLDS_TAG.as_ptr(),
            last_token() as i64,
            state.as_ptr().cast::<c_char>(),
            state.len(),
        )
    };
}

/// Propagates the deletion of `key`.
#[inline(always)]
pub fn deletion(ctx: Ctx, key: *mut RedisModuleString) {
    if effect_needed(ctx) {
        send_deletion(ctx, key);
    }
}

#[inline(never)]
fn send_deletion(ctx: Ctx, key: *mut RedisModuleString) {
    // SAFETY: one RedisModuleString argument for the "s" format.
    unsafe { rm!(RedisModule_Replicate)(ctx.0, c"DEL".as_ptr(), c"s".as_ptr(), key) };
}

/// Passes a replayed command on unchanged (a replica's own AOF; sub-replicas get the master's
/// stream proxied by the server and are not fed twice).
pub fn verbatim(ctx: Ctx) {
    // SAFETY: ctx is the live context of the running command.
    unsafe { rm!(RedisModule_ReplicateVerbatim)(ctx.0) };
}

/// Propagates the token counter (`LOCK.TOKENS counter`) now; the caller checked that clients
/// are not paused. It sends the floor (the last token, or the clock plus the lead when that is
/// higher): a replay then keeps tokens above it, so a promotion's lead outlives a restart from
/// an AOF (less the time the server was down).
pub fn emit_token_counter(ctx: Ctx) {
    let floor = token_floor(now());
    // SAFETY: one long long argument for the "l" format.
    unsafe {
        rm!(RedisModule_Replicate)(ctx.0, c"LOCK.TOKENS".as_ptr(), c"l".as_ptr(), floor as i64)
    };
}

/// Propagates the token counter from a timer, once clients are not paused (replicating
/// during CLIENT PAUSE or FAILOVER would abort the server). Always, whether or not anyone
/// seems to listen: this runs only on forks and promotions.
pub fn token_counter_soon(ctx: Ctx) {
    timers::start(ctx, 0, token_counter_fired, 0);
}

propagating_timer!(
    token_counter_fired,
    "propagating the token counter",
    |ctx, _| emit_token_counter(ctx)
);
