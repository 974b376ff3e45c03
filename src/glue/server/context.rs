//! A command's or callback's server context: replies, context flags, time, logging and
//! server-event subscriptions.

use std::ffi::{c_char, c_void, CString};
use std::os::raw::c_int;

use redis_module::raw::{self, RedisModuleCtx, RedisModuleEvent};

use crate::core::error::LockError;
use crate::core::Millis;
use crate::glue::server::api::{rm, rm_checked};

/// The context the server passes to a command or callback. Copy: it is only a handle.
#[derive(Clone, Copy)]
pub struct Ctx(pub *mut RedisModuleCtx);

impl Ctx {
    pub fn reply_integer(self, value: i64) {
        // SAFETY: self.0 is the live context of the running callback.
        unsafe { rm!(RedisModule_ReplyWithLongLong)(self.0, value) };
    }

    pub fn reply_null(self) {
        // SAFETY: as above.
        unsafe { rm!(RedisModule_ReplyWithNull)(self.0) };
    }

    pub fn reply_bytes(self, bytes: &[u8]) {
        // SAFETY: as above; the buffer is read during the call only.
        unsafe {
            rm!(RedisModule_ReplyWithStringBuffer)(
                self.0,
                bytes.as_ptr().cast::<c_char>(),
                bytes.len(),
            )
        };
    }

    pub fn reply_simple(self, text: &std::ffi::CStr) {
        // SAFETY: as above; `text` is NUL-terminated.
        unsafe { rm!(RedisModule_ReplyWithSimpleString)(self.0, text.as_ptr()) };
    }

    /// A map of `pairs` entries: a RESP3 map, or a flat array of 2 * pairs on RESP2.
    pub fn reply_map(self, pairs: usize) {
        // SAFETY: as above.
        unsafe { rm!(RedisModule_ReplyWithMap)(self.0, pairs as std::os::raw::c_long) };
    }

    pub fn reply_error(self, error: &LockError) {
        // Error texts never hold a NUL (client bytes in them are made printable first).
        let text = CString::new(error.to_string())
            .unwrap_or_else(|_| CString::from(c"ERR error text with a NUL byte"));
        // SAFETY: as above; the server copies the text.
        unsafe { rm!(RedisModule_ReplyWithError)(self.0, text.as_ptr()) };
    }

    /// An error reply of a fixed text (the server's own wording, for one it would give).
    pub fn reply_error_text(self, text: &std::ffi::CStr) {
        // SAFETY: as above; the server copies the text.
        unsafe { rm!(RedisModule_ReplyWithError)(self.0, text.as_ptr()) };
    }

    pub fn flags(self) -> u32 {
        // SAFETY: as above.
        unsafe { rm!(RedisModule_GetContextFlags)(self.0) as u32 }
    }

    pub fn has_flag(self, flag: u32) -> bool {
        self.flags() & flag != 0
    }

    /// The database the client (or callback) works in.
    pub fn selected_db(self) -> i32 {
        // SAFETY: as above.
        unsafe { rm!(RedisModule_GetSelectedDb)(self.0) }
    }

    pub fn select_db(self, db: i32) {
        // SAFETY: as above; db comes from a key we saw in that database.
        unsafe { rm!(RedisModule_SelectDb)(self.0, db) };
    }
}

/// A context for callbacks the server gives none (a key unlinked), made once at load.
static DETACHED: std::sync::atomic::AtomicPtr<RedisModuleCtx> =
    std::sync::atomic::AtomicPtr::new(std::ptr::null_mut());

pub fn make_detached(ctx: *mut RedisModuleCtx) {
    // SAFETY: ctx is the loading module's context; the detached one lives as long as the module.
    let detached = unsafe { rm!(RedisModule_GetDetachedThreadSafeContext)(ctx) };
    DETACHED.store(detached, std::sync::atomic::Ordering::Relaxed);
}

/// The detached context, for timers started from the main thread outside any callback context.
pub fn detached() -> Option<Ctx> {
    let ctx = DETACHED.load(std::sync::atomic::Ordering::Relaxed);
    (!ctx.is_null()).then_some(Ctx(ctx))
}

/// Whether the connection with client id `id` is still open on this server. A session hold
/// whose connection is gone is gone for every command from that moment (the server unlinks a
/// closing client before any later command runs).
pub fn client_connected(id: u64) -> bool {
    // SAFETY: a lookup by id; a null info pointer asks for existence only.
    unsafe { rm!(RedisModule_GetClientInfoById)(std::ptr::null_mut(), id) == OK }
}

/// The server's clock in unix ms: the clock it compares key expiries with.
pub fn now() -> Millis {
    // SAFETY: a plain call without arguments.
    unsafe { rm!(RedisModule_Milliseconds)() }
}

/// The server's cached clock in unix ms, the one it decides a key's expiry by, when it has one
/// to give (Redis 7.2 and later, Valkey): inside a command, script or transaction it is the
/// command's time snapshot, and the active expiry cycle refreshes it before each key it
/// expires (`enterExecutionUnit`, src/server.c and src/expire.c). `None` on Redis 7.0, which
/// has no `RM_CachedMicroseconds` (so this is not an `rm!` call: that would refuse 7.0).
pub fn server_clock() -> Option<Millis> {
    // SAFETY: the table is written once at load; a plain call without arguments.
    let cached = unsafe { redis_module::raw::RedisModule_CachedMicroseconds }?;
    // SAFETY: as above.
    Some(unsafe { cached() } / 1000)
}

/// Writes `message` to the server log; `ctx` may be null (outside any callback).
pub fn log(ctx: *mut RedisModuleCtx, level: &std::ffi::CStr, message: &str) {
    let Ok(text) = CString::new(message.replace('\0', "?")) else {
        return;
    };
    // SAFETY: "%s" with one NUL-terminated argument; Log accepts a null context. Checked:
    // the line that says which calls a server lacks is written before they are known present.
    unsafe { rm_checked!(RedisModule_Log)(ctx, level.as_ptr(), c"%s".as_ptr(), text.as_ptr()) };
}

pub const OK: c_int = raw::REDISMODULE_OK as c_int;

pub type EventCallback =
    unsafe extern "C" fn(*mut RedisModuleCtx, RedisModuleEvent, u64, *mut c_void);

/// Subscribes `callback` to server event `id` (version 1 of its data); false, after logging
/// it, if the server refused.
pub fn subscribe_to_server_event(
    ctx: *mut RedisModuleCtx,
    id: u64,
    callback: EventCallback,
) -> bool {
    let event = RedisModuleEvent { id, dataver: 1 };
    // SAFETY: ctx is the loading module's context; the callback lives as long as the module.
    let subscribed = unsafe { rm!(RedisModule_SubscribeToServerEvent)(ctx, event, Some(callback)) };
    if subscribed != OK {
        log(
            ctx,
            c"warning",
            &format!("rlock: cannot subscribe to server event {id}"),
        );
        return false;
    }
    true
}
