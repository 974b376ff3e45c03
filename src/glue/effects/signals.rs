//! What a real change tells the server besides the data: the modified-key signal (WATCH,
//! client-side caching invalidation) and keyspace events. A call that changes nothing sends
//! neither (the module option NO_IMPLICIT_SIGNAL_MODIFIED, set at load, keeps the server from
//! signalling every key merely opened for writing).

use std::ffi::CStr;
use std::os::raw::c_int;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;

use redis_module::raw::{self, RedisModuleString};

use crate::glue::server::api::rm;
use crate::glue::server::context::Ctx;

/// A keyspace event rlock emits, named as subscribers see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A free lock taken (module class, `d`).
    Acquire,
    /// One more hold by the owner.
    Reenter,
    /// One hold dropped by the owner.
    Release,
    /// The owner reset the expiry.
    Renew,
    /// A freed lock given to the longest waiter.
    Handoff,
    /// Session holds ended because their connection closed.
    SessionEnd,
    /// The key's expiry was set or moved (generic class, `g`), as EXPIRE does.
    Expire,
    /// The key went away (generic), as DEL does.
    Del,
    /// The lock's ttl ran out and rlock removed it at that millisecond (expired class, `x`).
    Expired,
}

impl Event {
    fn class_and_name(self) -> (c_int, &'static CStr) {
        let module = raw::REDISMODULE_NOTIFY_MODULE;
        let generic = raw::REDISMODULE_NOTIFY_GENERIC;
        match self {
            Event::Acquire => (module, c"lock.acquire"),
            Event::Reenter => (module, c"lock.reenter"),
            Event::Release => (module, c"lock.release"),
            Event::Renew => (module, c"lock.renew"),
            Event::Handoff => (module, c"lock.handoff"),
            Event::SessionEnd => (module, c"lock.session_end"),
            Event::Expire => (generic, c"expire"),
            Event::Del => (generic, c"del"),
            Event::Expired => (raw::REDISMODULE_NOTIFY_EXPIRED, c"expired"),
        }
    }
}

/// Publishes `event` about `key` in the context's selected database.
pub fn notify(ctx: Ctx, event: Event, key: *mut RedisModuleString) {
    let (class, name) = event.class_and_name();
    // SAFETY: ctx and key are live for the running callback; the name is a static C string.
    unsafe { rm!(RedisModule_NotifyKeyspaceEvent)(ctx.0, class, name.as_ptr(), key) };
}

/// Set while rlock publishes an "expired" event of its own (`notify_expired`).
static NOTIFYING_OWN_EXPIRY: AtomicBool = AtomicBool::new(false);

/// Publishes "expired" for `key`, a lock rlock removed because every ttl ran out. Whoever removes
/// it counts the expiry itself: rlock's own subscription to "expired" (Redis 7.0) skips this one
/// (`notifying_own_expiry`), and later servers have none.
pub fn notify_expired(ctx: Ctx, key: *mut RedisModuleString) {
    let was = NOTIFYING_OWN_EXPIRY.swap(true, Relaxed);
    notify(ctx, Event::Expired, key);
    NOTIFYING_OWN_EXPIRY.store(was, Relaxed);
}

/// Whether the "expired" event being delivered is rlock's own (`notify_expired`).
pub fn notifying_own_expiry() -> bool {
    NOTIFYING_OWN_EXPIRY.load(Relaxed)
}

/// Tells WATCH and client-side caching that `key` changed.
pub fn key_modified(ctx: Ctx, key: *mut RedisModuleString) {
    // SAFETY: as above.
    unsafe { rm!(RedisModule_SignalModifiedKey)(ctx.0, key) };
}
