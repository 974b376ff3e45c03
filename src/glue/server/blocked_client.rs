//! A blocked client's handle, released exactly once.
//!
//! A `BlockedClient` owns its handle: `unblock_*` consumes it, so the handle is released
//! exactly once (twice would double-free it in the server, never would leak it and hang the
//! client). The server's callbacks for a blocked client live with `block` in blocking.rs.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet, VecDeque};
use std::ffi::c_void;
use std::ptr::NonNull;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU64};

use redis_module::raw::{self, RedisModuleBlockedClient};

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

thread_local! {
    /// `CLIENT UNBLOCK id [TIMEOUT | ERROR]` commands the command filter saw for a client
    /// waiting for a lock, by its id, in the order they came: whether each wants ERROR. A
    /// filter sees a command queued in MULTI when it is queued, so this is what rlock knows of
    /// an unblock when EXEC runs it (blocking.rs). Emptied when the waiter's wait ends;
    /// bounded (stale entries of commands that never ran are dropped wholesale).
    static UNBLOCKS_SEEN: RefCell<HashMap<u64, VecDeque<bool>>> = RefCell::new(HashMap::new());
    /// Clients blocked in a lock's queue now (LOCK.ACQUIRE or LOCK.MACQUIRE ... WAIT).
    static WAITING: RefCell<HashSet<u64>> = RefCell::new(HashSet::new());
}

/// The most UNBLOCKS_SEEN keeps.
const UNBLOCKS_SEEN_MAX: usize = 1024;

/// The filter saw `CLIENT UNBLOCK id`, with ERROR if `error`.
pub fn note_unblock(id: u64, error: bool) {
    UNBLOCKS_SEEN.with(|seen| {
        let mut seen = seen.borrow_mut();
        if seen.len() >= UNBLOCKS_SEEN_MAX {
            seen.clear();
        }
        seen.entry(id).or_default().push_back(error);
    });
}

/// The CLIENT UNBLOCK running now for client `id`, as the filter saw it (Some(true): it wants
/// ERROR). Inside EXEC, the first one queued; else the one just seen (the filter sees a
/// direct command right before it runs; notes of a MULTI that was discarded are stale). The
/// others are forgotten: the client is no longer blocked when they run.
fn take_unblock(ctx: Ctx, id: u64) -> Option<bool> {
    let in_exec = ctx.has_flag(raw::REDISMODULE_CTX_FLAGS_MULTI);
    UNBLOCKS_SEEN.with(|seen| {
        let mut notes = seen.borrow_mut().remove(&id)?;
        if in_exec {
            notes.pop_front()
        } else {
            notes.pop_back()
        }
    })
}

thread_local! {
    /// Waiters answered their grant from a disconnect callback inside EXEC (Redis 7.0, see
    /// unblocked_after_its_grant), until the turn ends: killed before the reply goes out, they
    /// never hold the lock (sessions.rs takes it back on their disconnect).
    static ANSWERED_IN_EXEC: RefCell<HashMap<u64, Vec<(KeyRef, u64)>>> =
        RefCell::new(HashMap::new());
}

/// Client `id` was answered `grants` (key, token) inside EXEC; forgotten at the end of the
/// turn (`answers_sent`).
pub fn answered_in_exec(id: u64, grants: Vec<(KeyRef, u64)>) {
    ANSWERED_IN_EXEC.with(|answered| answered.borrow_mut().insert(id, grants));
}

/// The grants client `id` was answered inside EXEC this turn, if any (taken).
pub fn take_answered_in_exec(id: u64) -> Vec<(KeyRef, u64)> {
    ANSWERED_IN_EXEC.with(|answered| answered.borrow_mut().remove(&id).unwrap_or_default())
}

/// The turn ended: the replies of ANSWERED_IN_EXEC went out.
pub fn answers_sent() {
    ANSWERED_IN_EXEC.with(|answered| answered.borrow_mut().clear());
}

/// Whether client `id` waits in a lock's queue now.
pub fn waits_for_a_lock(id: u64) -> bool {
    WAITING.with(|waiting| waiting.borrow().contains(&id))
}

/// The client whose disconnect the server announced last (the client-change event comes
/// before the server unblocks a closing client): a disconnect callback for another client is
/// no disconnect (Redis 7.0 calls it for CLIENT UNBLOCK of a client woken a moment ago).
static DISCONNECTING: AtomicU64 = AtomicU64::new(0);

/// The server announced that client `id` disconnects.
pub fn note_disconnecting(id: u64) {
    DISCONNECTING.store(id, Relaxed);
}

/// Whether the last disconnect announced was client `id`'s.
pub fn disconnecting(id: u64) -> bool {
    id != 0 && DISCONNECTING.load(Relaxed) == id
}

/// The id of the client behind `ctx`.
pub fn client_of(ctx: Ctx) -> u64 {
    // SAFETY: ctx is a live callback context of the client concerned.
    unsafe { rm!(RedisModule_GetClientId)(ctx.0) }
}

/// Redis 7.0 (before 7.2): a `CLIENT UNBLOCK id` queued in MULTI behind the command that
/// handed the waiter the lock runs while the waiter's reply is pending; the server then skips
/// its timeout reply (the client is already being unblocked) and calls the disconnect callback,
/// and the waiter would get no reply at all. On such a server the filter turns every CLIENT
/// UNBLOCK of a lock's waiter into its TIMEOUT form, noting the form it asked for, so the
/// server never answers the waiter itself and rlock gives the one reply (blocking.rs). Told
/// apart from a real disconnect: the server announced none for this client (a closing
/// client's is announced first), it runs inside EXEC, and the filter saw the unblock
/// (`unblock`, from `take_unblock`). Then Some(whether it asked for ERROR). The disconnect
/// callback's context is the client's own (`ctx.client = bc->client`, module.c
/// unblockClientFromModule), so a reply goes to it.
pub fn unblocked_after_its_grant(ctx: Ctx, unblock: Option<bool>) -> Option<bool> {
    let unblock = unblock?;
    let running_exec = ctx.has_flag(raw::REDISMODULE_CTX_FLAGS_MULTI);
    (running_exec && !disconnecting(client_of(ctx)) && server_before_7_2()).then_some(unblock)
}

/// The reply of a lock's waiter unblocked with ERROR, as the server words it.
pub const UNBLOCKED_ERROR: &std::ffi::CStr = c"UNBLOCKED client unblocked via CLIENT UNBLOCK";

/// Whether the server is older than 7.2 (Valkey says 7.2.4 for its compatibility level).
pub fn server_before_7_2() -> bool {
    // SAFETY: a plain call without arguments.
    let version = unsafe { rm!(RedisModule_GetServerVersion)() };
    version < 0x0007_0200
}

/// Whether client `id` was woken and its reply is still to go out.
pub fn reply_pending(id: u64) -> bool {
    REPLY_PENDING.with(|pending| pending.borrow().contains(&id))
}

/// Whether any woken client's reply is still to go out.
pub fn any_reply_pending() -> bool {
    ANY_REPLY_PENDING.load(Relaxed)
}

/// The wait of the client behind `ctx` is over (its reply callback, timeout or disconnect
/// runs): its reply went out or never will, and what the filter saw of a CLIENT UNBLOCK for it
/// is used up. The CLIENT UNBLOCK running now, if any (`take_unblock`).
pub fn wait_over(ctx: Ctx) -> Option<bool> {
    let id = client_of(ctx);
    with_pending(|pending| pending.remove(&id));
    take_unblock(ctx, id)
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

    /// As `new`, for a client blocked in a lock's queue (`waits_for_a_lock` until released).
    pub fn waiter(handle: NonNull<RedisModuleBlockedClient>, client_id: u64) -> BlockedClient {
        WAITING.with(|waiting| waiting.borrow_mut().insert(client_id));
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

    /// Wakes the client with `privdata`, which its reply callback reads and its free callback
    /// frees (LOCK.OBSERVE: no grant, so nothing to take back and no pending reply to guard).
    pub fn wake_with(self, privdata: *mut c_void) {
        self.release(privdata);
    }

    /// Frees the handle of a client that is gone or was already answered (disconnected,
    /// killed, CLIENT UNBLOCK).
    pub fn let_go(self) {
        self.release(std::ptr::null_mut());
    }

    fn release(self, privdata: *mut c_void) {
        WAITING.with(|waiting| waiting.borrow_mut().remove(&self.client_id));
        // SAFETY: self owns the handle, and this consumes self: the one release it gets. The
        // server frees privdata through free_grant after the reply callback.
        unsafe { rm!(RedisModule_UnblockClient)(self.handle.as_ptr(), privdata) };
    }
}
