//! Blocking a client for `LOCK.MACQUIRE ... WAIT`, and the server's callbacks for it: its
//! reply (one token per key), its WAIT timeout, CLIENT UNBLOCK and its disconnect. Sits above
//! handoff.rs, which its callbacks call (a waiter leaving has its keys settled again; a grant
//! whose client is gone is taken back); the queue itself is several.rs.

use std::ffi::{c_int, c_void};
use std::ptr::NonNull;

use redis_module::raw::{RedisModuleBlockedClient, RedisModuleCtx, RedisModuleString};

use crate::core::state::holds::Want;
use crate::core::Millis;
use crate::glue::effects::stats::{self, Counter};
use crate::glue::server::api::rm;
use crate::glue::server::blocked_client::{client_of, wait_over, BlockedClient};
use crate::glue::server::context::{now, Ctx, OK};
use crate::glue::server::entry::run_callback;
use crate::glue::server::timers;
use crate::glue::waiting::blocking::{reply_unblocked, woken_then_gone};
use crate::glue::waiting::handoff;
use crate::glue::waiting::several::{self, SeveralWaiter};
use crate::glue::waiting::waiters::{self, KeyRef};

/// What a several-key request asks for, to wait.
pub struct SeveralWanted<'a> {
    pub owner: &'a [u8],
    pub ttl: u64,
    pub want: Want,
    pub session: bool,
    /// ms; 0: no timeout.
    pub timeout_ms: u64,
}

/// Blocks the caller in every queue of `keys` (the caller checked the waiter limit and the
/// wait-for graph); `next_expiry[i]` is when key i's next holder expires. `None` if the
/// server refused to block it.
pub fn join(
    ctx: Ctx,
    keys: Vec<KeyRef>,
    wanted: SeveralWanted,
    next_expiry: &[Option<Millis>],
    now: Millis,
) -> Option<()> {
    let client = block(ctx)?;
    let seq = waiters::next_seq();
    let timeout_timer = (wanted.timeout_ms > 0)
        .then(|| timers::start(ctx, wanted.timeout_ms as i64, timed_out, seq));
    several::enlist(
        seq,
        SeveralWaiter {
            owner: wanted.owner.into(),
            ttl: wanted.ttl,
            want: wanted.want,
            session: wanted.session,
            keys: keys.clone(),
            client,
            timeout_timer,
            queued_at: std::time::Instant::now(),
            timeout_ms: wanted.timeout_ms,
        },
    );
    for (key, at) in keys.iter().zip(next_expiry) {
        handoff::schedule_check(ctx, key.db, &key.name, at.unwrap_or(i64::MAX), now);
    }
    Some(())
}

/// A waiter's WAIT timeout passed: it leaves every queue with nil.
unsafe extern "C" fn timed_out(ctx: *mut RedisModuleCtx, data: *mut c_void) {
    run_callback("a several-key WAIT timeout", (), || {
        let ctx = Ctx(ctx);
        let seq = timers::id_of(data);
        several::timeout_fired(seq);
        if let Some(waiter) = several::remove(ctx, seq) {
            stats::count(Counter::WaitTimeouts);
            waiter.wait_ended(None, now());
            let keys = waiter.keys.clone();
            waiter.client.unblock_empty();
            handoff::resettle_later(ctx, keys);
        }
    })
}

/// Blocks the calling client with this file's callbacks (the reply is an array of tokens).
fn block(ctx: Ctx) -> Option<BlockedClient> {
    // SAFETY: ctx is the running command's context and the caller checked that it may
    // block; the callbacks live as long as the module.
    let handle = unsafe {
        rm!(RedisModule_BlockClient)(ctx.0, Some(reply), Some(unblocked), Some(free_nothing), 0)
    };
    let handle = NonNull::new(handle)?;
    // SAFETY: handle was just returned by BlockClient and not yet released.
    unsafe { rm!(RedisModule_SetDisconnectCallback)(handle.as_ptr(), Some(disconnected)) };
    Some(BlockedClient::waiter(handle, client_of(ctx)))
}

/// The woken client's reply: its tokens in key order, or nil.
unsafe extern "C" fn reply(
    ctx: *mut RedisModuleCtx,
    _argv: *mut *mut RedisModuleString,
    _argc: c_int,
) -> c_int {
    run_callback("a several-key waiter's reply", OK, || {
        let ctx = Ctx(ctx);
        wait_over(ctx);
        match several::take_grants(client_of(ctx)) {
            Some(grants) => reply_tokens(ctx, grants.iter().map(|(_, token)| *token)),
            None => ctx.reply_null(),
        }
        OK
    })
}

/// An array of tokens, one per key.
pub fn reply_tokens(ctx: Ctx, tokens: impl ExactSizeIterator<Item = u64>) {
    // SAFETY: ctx is a live reply context; the array's elements follow.
    unsafe { rm!(RedisModule_ReplyWithArray)(ctx.0, tokens.len() as _) };
    for token in tokens {
        ctx.reply_integer(token as i64);
    }
}

/// CLIENT UNBLOCK: the waiter leaves every queue with nil.
unsafe extern "C" fn unblocked(
    ctx: *mut RedisModuleCtx,
    _argv: *mut *mut RedisModuleString,
    _argc: c_int,
) -> c_int {
    run_callback("a several-key waiter's timeout", OK, || {
        let ctx = Ctx(ctx);
        let wants_error = wait_over(ctx) == Some(true);
        // SAFETY: ctx is a blocked-timeout context, whose handle is the client's.
        let handle = unsafe { rm!(RedisModule_GetBlockedClientHandle)(ctx.0) };
        leave(ctx, handle);
        reply_unblocked(ctx, wants_error);
        OK
    })
}

/// Gone (socket closed, CLIENT KILL, role change): a queued waiter leaves; one woken with a
/// grant whose reply had not gone out has its keys taken back (blocking::woken_then_gone).
unsafe extern "C" fn disconnected(ctx: *mut RedisModuleCtx, handle: *mut RedisModuleBlockedClient) {
    run_callback("a several-key waiter's disconnect", (), || {
        let ctx = Ctx(ctx);
        let unblock = wait_over(ctx);
        if leave(ctx, handle) {
            return;
        }
        let grants = several::take_grants(client_of(ctx)).unwrap_or_default();
        woken_then_gone(ctx, unblock, grants, |grants| {
            reply_tokens(ctx, grants.iter().map(|(_, token)| *token))
        });
    })
}

/// Removes the queued waiter behind `handle` and releases its handle; whether it was queued.
fn leave(ctx: Ctx, handle: *mut RedisModuleBlockedClient) -> bool {
    let Some(waiter) = several::seq_of(handle).and_then(|seq| several::remove(ctx, seq)) else {
        return false;
    };
    let keys = waiter.keys.clone();
    waiter.client.let_go();
    handoff::resettle_later(ctx, keys);
    true
}

unsafe extern "C" fn free_nothing(_ctx: *mut RedisModuleCtx, _privdata: *mut c_void) {}
