//! Blocking a client for `LOCK.ACQUIRE ... WAIT`, and the server's callbacks for it: its
//! reply, its timeout (CLIENT UNBLOCK), its disconnect, and freeing what it was woken with.
//! The crate's own `block_client()` has no reply, timeout or disconnect callbacks, hence this
//! file; the handle itself is blocked_client.rs.

use std::ffi::{c_int, c_void};
use std::ptr::NonNull;

use redis_module::raw::{RedisModuleBlockedClient, RedisModuleCtx, RedisModuleString};

use crate::glue::server::api::rm;
use crate::glue::server::blocked_client::{
    answered_in_exec, answers_sent, client_of, unblocked_after_its_grant, wait_over, BlockedClient,
    Grant, UNBLOCKED_ERROR,
};
use crate::glue::server::context::{Ctx, OK};
use crate::glue::server::entry::run_callback;
use crate::glue::server::key_ref::KeyRef;
use crate::glue::server::timers;
use crate::glue::waiting::handoff;
use crate::glue::waiting::waiters;

/// Blocks the calling client with no server-side timeout (ours is a module timer, precise
/// to the millisecond). `None` if the server refused.
pub fn block(ctx: Ctx) -> Option<BlockedClient> {
    // SAFETY: ctx is the running command's context and the caller checked that it may
    // block (no MULTI, Lua or AOF loading); the callbacks live as long as the module.
    let handle = unsafe {
        rm!(RedisModule_BlockClient)(ctx.0, Some(reply), Some(timeout), Some(free_grant), 0)
    };
    let handle = NonNull::new(handle)?;
    // SAFETY: handle was just returned by BlockClient and not yet released.
    unsafe { rm!(RedisModule_SetDisconnectCallback)(handle.as_ptr(), Some(disconnected)) };
    Some(BlockedClient::waiter(handle, client_of(ctx)))
}

/// Runs in the woken client's context, before the server's next poll: only formats the reply;
/// the lock was already handed over (and propagated) when the client was unblocked.
unsafe extern "C" fn reply(
    ctx: *mut RedisModuleCtx,
    _argv: *mut *mut RedisModuleString,
    _argc: c_int,
) -> c_int {
    run_callback("a blocked client's reply", OK, || {
        let ctx = Ctx(ctx);
        wait_over(ctx);
        // SAFETY: ctx is a blocked-reply context; privdata is null or a Grant of ours.
        let grant = unsafe { rm!(RedisModule_GetBlockedClientPrivateData)(ctx.0) }.cast::<Grant>();
        match unsafe { grant.as_ref() } {
            Some(grant) => ctx.reply_integer(grant.token as i64),
            None => ctx.reply_null(),
        }
        OK
    })
}

/// `CLIENT UNBLOCK id [TIMEOUT]`: the waiter leaves the queue with nil. The server keeps the
/// handle until we release it.
unsafe extern "C" fn timeout(
    ctx: *mut RedisModuleCtx,
    _argv: *mut *mut RedisModuleString,
    _argc: c_int,
) -> c_int {
    run_callback("a blocked client's timeout", OK, || {
        let ctx = Ctx(ctx);
        let wants_error = wait_over(ctx) == Some(true);
        // SAFETY: ctx is a blocked-timeout context, whose handle is the client's.
        let handle = unsafe { rm!(RedisModule_GetBlockedClientHandle)(ctx.0) };
        forget_waiter(ctx, handle);
        reply_unblocked(ctx, wants_error);
        OK
    })
}

/// Socket closed, CLIENT KILL, CLIENT UNBLOCK ERROR, role change: a queued waiter leaves for
/// good. A client handed the lock a moment ago, whose reply has not gone out yet, is gone
/// before it could learn it holds the lock: the lock is taken back (its handle was released
/// when it was unblocked; it must not be released again): `woken_then_gone`.
unsafe extern "C" fn disconnected(ctx: *mut RedisModuleCtx, handle: *mut RedisModuleBlockedClient) {
    run_callback("a blocked client's disconnect", (), || {
        let ctx = Ctx(ctx);
        let unblock = wait_over(ctx);
        if let Some(client) = waiters::leave(ctx, handle as usize) {
            client.let_go();
            return;
        }
        // SAFETY: in a disconnect callback the private data is what we unblocked it with.
        let grant = unsafe { rm!(RedisModule_GetBlockedClientPrivateData)(ctx.0) }.cast::<Grant>();
        let Some(grant) = (unsafe { grant.as_ref() }) else {
            return;
        };
        let grants = vec![(grant.key.clone(), grant.token)];
        woken_then_gone(ctx, unblock, grants, |_| {
            ctx.reply_integer(grant.token as i64)
        });
    })
}

/// A waiter woken with `grants` (key, token) whose reply had not gone out is gone: the grants
/// are taken back. But see blocked_client::unblocked_after_its_grant: a Redis 7.0 CLIENT
/// UNBLOCK (TIMEOUT) leaves it connected and holding them, answered by `answer`; with ERROR
/// (turned into TIMEOUT by the filter, so the server wrote nothing) it is answered the error.
pub fn woken_then_gone(
    ctx: Ctx,
    unblock: Option<bool>,
    grants: Vec<(KeyRef, u64)>,
    answer: impl FnOnce(&[(KeyRef, u64)]),
) {
    if grants.is_empty() {
        return;
    }
    match unblocked_after_its_grant(ctx, unblock) {
        Some(false) => {
            answer(&grants);
            note_answered_in_exec(ctx, grants);
            return;
        }
        Some(true) => reply_unblocked(ctx, true),
        None => {}
    }
    for (key, token) in grants {
        handoff::take_back_later(ctx, key, token);
    }
}

/// The client behind `ctx` was answered `grants` from its disconnect callback inside EXEC:
/// until the turn ends, its disconnect (CLIENT KILL later in the same EXEC) takes them back,
/// as for any waiter gone before its reply went out.
fn note_answered_in_exec(ctx: Ctx, grants: Vec<(KeyRef, u64)>) {
    answered_in_exec(client_of(ctx), grants);
    timers::start(ctx, 0, answers_sent_due, 0);
}

unsafe extern "C" fn answers_sent_due(_ctx: *mut RedisModuleCtx, _data: *mut c_void) {
    run_callback("answers sent", (), answers_sent);
}

/// The reply of a waiter CLIENT UNBLOCK took out of its queue: nil, or with ERROR the error the
/// server gives.
pub fn reply_unblocked(ctx: Ctx, error: bool) {
    if error {
        ctx.reply_error_text(UNBLOCKED_ERROR);
    } else {
        ctx.reply_null();
    }
}

/// Removes the waiter behind `handle`, if still queued, and releases its handle.
fn forget_waiter(ctx: Ctx, handle: *mut RedisModuleBlockedClient) {
    if let Some(client) = waiters::leave(ctx, handle as usize) {
        client.let_go();
    }
}

unsafe extern "C" fn free_grant(_ctx: *mut RedisModuleCtx, privdata: *mut c_void) {
    if !privdata.is_null() {
        // SAFETY: the only privdata we pass is a Box<Grant>, freed here once by the server.
        drop(unsafe { Box::from_raw(privdata.cast::<Grant>()) });
    }
}
