//! The one safe wrapper over the server's blocked-client calls.
//!
//! A `BlockedClient` owns its handle: `unblock_*` consumes it, so the handle is released
//! exactly once (twice would double-free it in the server, never would leak it and hang the
//! client). The crate's own `block_client()` has no reply, timeout or disconnect callbacks,
//! hence this file.

use std::cell::RefCell;
use std::collections::HashSet;
use std::ffi::{c_int, c_void};
use std::ptr::NonNull;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;

use redis_module::raw::{RedisModuleBlockedClient, RedisModuleCtx, RedisModuleString};

use super::api::rm;
use super::context::{Ctx, OK};
use super::entry::run_callback;
use super::handoff;
use super::waiters::{self, KeyRef};

pub struct BlockedClient {
    handle: NonNull<RedisModuleBlockedClient>,
    client_id: u64,
}

thread_local! {
    /// Clients woken by us whose reply has not gone out yet (it goes out before the server
    /// next polls). CLIENT UNBLOCK on one of them would swallow that reply: command_filter.rs
    /// turns such a CLIENT UNBLOCK into a no-op.
    static REPLY_PENDING: RefCell<HashSet<u64>> = RefCell::new(HashSet::new());
}

/// Whether REPLY_PENDING has anyone, kept by every change of it: every LOCK.ACQUIRE asks (see
/// waiters.rs on atomics for the hot paths).
static ANY_REPLY_PENDING: AtomicBool = AtomicBool::new(false);

fn with_pending<T>(change: impl FnOnce(&mut HashSet<u64>) -> T) -> T {
    REPLY_PENDING.with(|pending| {
        let result = change(&mut pending.borrow_mut());
        ANY_REPLY_PENDING.store(!pending.borrow().is_empty(), Relaxed);
        result
    })
}

/// Whether client `id` was woken and its reply is still to go out.
pub fn reply_pending(id: u64) -> bool {
    REPLY_PENDING.with(|pending| pending.borrow().contains(&id))
}

/// Whether any woken client's reply is still to go out.
pub fn any_reply_pending() -> bool {
    ANY_REPLY_PENDING.load(Relaxed)
}

fn reply_done(ctx: Ctx) {
    // SAFETY: ctx is a live callback context of the client concerned.
    let id = unsafe { rm!(RedisModule_GetClientId)(ctx.0) };
    with_pending(|pending| pending.remove(&id));
}

/// What a blocked client is told when it wakes: the fencing token it was handed, and which
/// lock it is (to take it back if the client is gone before the reply reaches it).
struct Grant {
    token: u64,
    key: KeyRef,
}

impl BlockedClient {
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
        // SAFETY: ctx is the blocking client's own context.
        let client_id = unsafe { rm!(RedisModule_GetClientId)(ctx.0) };
        Some(BlockedClient { handle, client_id })
    }

    /// The blocked client's connection id (CLIENT ID).
    pub fn client_id(&self) -> u64 {
        self.client_id
    }

    /// The handle's address: how the server's callbacks name this client to us.
    pub fn id(&self) -> usize {
        self.handle.as_ptr() as usize
    }

    /// Wakes the client with `token`, its lock at `key`, as its reply.
    pub fn unblock_granted(self, token: u64, key: KeyRef) {
        let grant = Box::into_raw(Box::new(Grant { token, key })).cast::<c_void>();
        with_pending(|pending| pending.insert(self.client_id));
        self.release(grant);
    }

    /// Wakes the client with nil (timed out, or the lock went away).
    pub fn unblock_empty(self) {
        with_pending(|pending| pending.insert(self.client_id));
        self.release(std::ptr::null_mut());
    }

    /// Frees the handle of a client that is gone or was already answered (disconnected,
    /// killed, CLIENT UNBLOCK).
    fn let_go(self) {
        self.release(std::ptr::null_mut());
    }

    fn release(self, privdata: *mut c_void) {
        // SAFETY: self owns the handle, and this consumes self: the one release it gets. The
        // server frees privdata through free_grant after the reply callback.
        unsafe { rm!(RedisModule_UnblockClient)(self.handle.as_ptr(), privdata) };
    }
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
        reply_done(ctx);
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
        // SAFETY: ctx is a blocked-timeout context, whose handle is the client's.
        let handle = unsafe { rm!(RedisModule_GetBlockedClientHandle)(ctx.0) };
        forget_waiter(ctx, handle);
        ctx.reply_null();
        OK
    })
}

/// Socket closed, CLIENT KILL, CLIENT UNBLOCK ERROR, role change: a queued waiter leaves for
/// good. A client handed the lock a moment ago, whose reply has not gone out yet, is gone
/// before it could learn it holds the lock: the lock is taken back (its handle was released
/// when it was unblocked; it must not be released again).
unsafe extern "C" fn disconnected(ctx: *mut RedisModuleCtx, handle: *mut RedisModuleBlockedClient) {
    run_callback("a blocked client's disconnect", (), || {
        let ctx = Ctx(ctx);
        reply_done(ctx);
        if let Some(client) = waiters::leave(ctx, handle as usize) {
            client.let_go();
            return;
        }
        // SAFETY: in a disconnect callback the private data is what we unblocked it with.
        let grant = unsafe { rm!(RedisModule_GetBlockedClientPrivateData)(ctx.0) }.cast::<Grant>();
        if let Some(grant) = unsafe { grant.as_ref() } {
            handoff::take_back_later(ctx, grant.key.clone(), grant.token);
        }
    })
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
