//! A command filter, registered only while someone waits for a lock (or a woken waiter's reply
//! is still to go out), acts on two commands:
//! - MIGRATE: the keys it moves leave this node; their waiters must not be handed a lock here
//!   while the lock lives on at the target (see handoff::lock_removed);
//! - CLIENT UNBLOCK of a client whose reply is on its way (see spare_pending_reply).
//!
//! A filter sees every command on the server, so it costs every command (~200 instructions)
//! while it is registered; with nobody waiting neither command concerns rlock. A replica
//! attaching (SYNC/PSYNC), the third command rlock once watched here, is now seen by its fork
//! (events.rs).

use std::cell::{Cell, RefCell};
use std::ffi::c_void;

use redis_module::raw::{RedisModuleCommandFilter, RedisModuleCommandFilterCtx, RedisModuleCtx};

use super::api::rm;
use super::blocking;
use super::context::{detached, Ctx};
use super::entry::{run_callback, string_bytes};
use super::timers;
use super::waiters;
use crate::core::request::parse_integer;

thread_local! {
    /// The keys of the running MIGRATE; cleared by the next command.
    static MIGRATING: RefCell<Vec<Box<[u8]>>> = const { RefCell::new(Vec::new()) };
    /// The registered filter, if any.
    static FILTER: Cell<*mut RedisModuleCommandFilter> = const { Cell::new(std::ptr::null_mut()) };
    /// A timer will see whether the filter can go.
    static RETIRE_ARMED: Cell<bool> = const { Cell::new(false) };
}

/// Whether the filter has work: someone waits, or a woken waiter's reply is still to go out.
fn needed() -> bool {
    waiters::anyone_waiting() || blocking::any_reply_pending()
}

/// Registers the filter if someone waits now (called after every LOCK.ACQUIRE: the only
/// command that makes a waiter). False if the server refused.
pub fn register_if_needed(ctx: Ctx) -> bool {
    if !FILTER.with(Cell::get).is_null() || !needed() {
        return true;
    }
    MIGRATING.with(|keys| keys.borrow_mut().clear());
    // SAFETY: ctx is a live context of this module; the callback lives as long as the module.
    let filter = unsafe { rm!(RedisModule_RegisterCommandFilter)(ctx.0, Some(filter), 0) };
    FILTER.with(|cell| cell.set(filter));
    !filter.is_null()
}

/// Unregisters the filter once nobody waits; from a timer, never from inside the filter
/// (the server is walking its filter list then).
unsafe extern "C" fn retire(ctx: *mut RedisModuleCtx, _data: *mut c_void) {
    run_callback("the command filter's retirement", (), || {
        RETIRE_ARMED.with(|armed| armed.set(false));
        let filter = FILTER.with(Cell::get);
        if filter.is_null() || needed() {
            return;
        }
        // SAFETY: ctx is this module's timer context; filter is ours and still registered.
        unsafe { rm!(RedisModule_UnregisterCommandFilter)(ctx, filter) };
        FILTER.with(|cell| cell.set(std::ptr::null_mut()));
        MIGRATING.with(|keys| keys.borrow_mut().clear());
    })
}

/// Whether `name` is being moved away by the running MIGRATE.
pub fn is_migrating(name: &[u8]) -> bool {
    MIGRATING.with(|keys| keys.borrow().iter().any(|key| **key == *name))
}

unsafe extern "C" fn filter(fctx: *mut RedisModuleCommandFilterCtx) {
    run_callback("the command filter", (), || {
        // SAFETY: fctx is the live filter context of this call.
        let arg = |at: i32| unsafe {
            let string = rm!(RedisModule_CommandFilterArgGet)(fctx, at);
            (!string.is_null()).then(|| string_bytes(string))
        };
        let Some(name) = arg(0) else {
            return;
        };
        MIGRATING.with(|keys| {
            let mut keys = keys.borrow_mut();
            if !keys.is_empty() {
                keys.clear();
            }
            if name.eq_ignore_ascii_case(b"migrate") {
                *keys = migrate_keys(arg);
            }
        });
        if name.eq_ignore_ascii_case(b"client") {
            // SAFETY: as above.
            unsafe { spare_pending_reply(fctx, arg(1), arg(2)) };
        }
        if needed() || RETIRE_ARMED.with(Cell::get) {
            return;
        }
        if let Some(ctx) = detached() {
            RETIRE_ARMED.with(|armed| armed.set(true));
            timers::start(ctx, 0, retire, 0);
        }
    })
}

/// MIGRATE host port key|"" db timeout [COPY] [REPLACE] [AUTH ..] [AUTH2 .. ..] [KEYS key ..]:
/// the keys it moves (with COPY it moves none away, but then nothing is deleted either).
fn migrate_keys<'a>(arg: impl Fn(i32) -> Option<&'a [u8]>) -> Vec<Box<[u8]>> {
    let mut keys: Vec<Box<[u8]>> = arg(3)
        .filter(|key| !key.is_empty())
        .map(Into::into)
        .into_iter()
        .collect();
    let mut at = 6;
    while let Some(option) = arg(at) {
        at += 1;
        if option.eq_ignore_ascii_case(b"keys") {
            while let Some(key) = arg(at) {
                keys.push(key.into());
                at += 1;
            }
        }
    }
    keys
}

/// `CLIENT UNBLOCK id ...` on a client we woke whose reply has not gone out yet would leave it
/// with no reply at all (Redis 7.0 skips an already-unblocked client's timeout reply): point
/// it at a client id that does not exist instead, so it answers 0 and the reply goes out.
///
/// # Safety
/// `fctx` must be the live filter context the arguments come from.
unsafe fn spare_pending_reply(
    fctx: *mut RedisModuleCommandFilterCtx,
    sub: Option<&[u8]>,
    id: Option<&[u8]>,
) {
    let (Some(sub), Some(id)) = (sub, id) else {
        return;
    };
    let id = parse_integer(id).and_then(|id| u64::try_from(id).ok());
    if !sub.eq_ignore_ascii_case(b"unblock") || !id.is_some_and(blocking::reply_pending) {
        return;
    }
    let nobody = i64::MAX.to_string();
    // SAFETY: a string made for the filter, which takes ownership of it (null context).
    unsafe {
        let string = rm!(RedisModule_CreateString)(
            std::ptr::null_mut(),
            nobody.as_ptr().cast(),
            nobody.len(),
        );
        rm!(RedisModule_CommandFilterArgReplace)(fctx, 2, string);
    }
}
