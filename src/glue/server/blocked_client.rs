//! A blocked client's handle, released exactly once.
//!
//! A `BlockedClient` owns its handle: `unblock_*` consumes it, so the handle is released
//! exactly once (twice would double-free it in the server, never would leak it and hang the
//! client). The server's callbacks for a blocked client live with `block` in blocking.rs.

use std::cell::RefCell;
use std::collections::HashSet;
use std::ffi::c_void;
use std::ptr::NonNull;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;

use redis_module::raw::RedisModuleBlockedClient;

use crate::glue::server::api::rm;
use crate::glue::server::context::Ctx;
use crate::glue::server::key_ref::KeyRef;

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

/// Whether REPLY_PENDING has anyone, kept by every change of it: every LOCK.ACQUIRE asks, and
/// a thread_local in a shared library costs a __tls_get_addr call per access (main thread
/// only).
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

/// The reply of the client behind `ctx` went out (or never will).
pub fn reply_done(ctx: Ctx) {
    // SAFETY: ctx is a live callback context of the client concerned.
    let id = unsafe { rm!(RedisModule_GetClientId)(ctx.0) };
    with_pending(|pending| pending.remove(&id));
}

/// What a blocked client is told when it wakes: the fencing token it was handed, and which
/// lock it is (to take it back if the client is gone before the reply reaches it).
pub struct Grant {
    pub token: u64,
    pub key: KeyRef,
}

impl BlockedClient {
    /// Takes ownership of a handle the server just returned from BlockClient, for the client
    /// with connection id `client_id`.
    pub fn new(handle: NonNull<RedisModuleBlockedClient>, client_id: u64) -> BlockedClient {
        BlockedClient { handle, client_id }
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
    pub fn let_go(self) {
        self.release(std::ptr::null_mut());
    }

    fn release(self, privdata: *mut c_void) {
        // SAFETY: self owns the handle, and this consumes self: the one release it gets. The
        // server frees privdata through free_grant after the reply callback.
        unsafe { rm!(RedisModule_UnblockClient)(self.handle.as_ptr(), privdata) };
    }
}
