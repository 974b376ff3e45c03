//! One filter sees every command before it runs, and acts on two of them:
//! - SYNC/PSYNC: a replica attaching creates the replication backlog, so propagation must be
//!   on before this command runs (see propagation.rs);
//! - MIGRATE: the keys it moves leave this node; their waiters must not be handed a lock here
//!   while the lock lives on at the target (see handoff::lock_removed).

use std::cell::RefCell;

use redis_module::raw::{RedisModuleCommandFilterCtx, RedisModuleCtx};

use super::api::rm;
use super::context::detached;
use super::entry::{run_callback, string_bytes};
use super::propagation;

thread_local! {
    /// The keys of the running MIGRATE; cleared by the next command.
    static MIGRATING: RefCell<Vec<Box<[u8]>>> = const { RefCell::new(Vec::new()) };
}

/// Registers the filter; false if the server refused.
pub fn register(ctx: *mut RedisModuleCtx) -> bool {
    // SAFETY: ctx is the loading module's context; the callback lives as long as the module.
    !unsafe { rm!(RedisModule_RegisterCommandFilter)(ctx, Some(filter), 0) }.is_null()
}

/// Whether `name` is being moved away by the running MIGRATE.
pub fn is_migrating(name: &[u8]) -> bool {
    MIGRATING.with(|keys| keys.borrow().iter().any(|key| **key == *name))
}

/// Cheap for every command but the two it looks for.
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
        if name.eq_ignore_ascii_case(b"psync") || name.eq_ignore_ascii_case(b"sync") {
            if let Some(ctx) = detached() {
                propagation::replicas_possible(ctx);
            }
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
