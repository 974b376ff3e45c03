//! LOCK.HELP: the commands, one syntax line and one indented line of description each, in the
//! reply shape of Redis' own `OBJECT HELP` (an array of simple strings: a heading, the entries,
//! `HELP` last). The internal LOCK.APPLY and LOCK.TOKENS are left out: no client may send them.

use std::ffi::{c_int, CStr};

use redis_module::raw::{RedisModuleCtx, RedisModuleString};

use crate::glue::server::api::rm;
use crate::glue::server::context::OK;
use crate::glue::server::entry::run_callback;

/// (syntax, what it does). The syntax is the one `COMMAND DOCS` gives (tests/metadata.rs checks
/// the two agree); `ttl` and `timeout` are milliseconds.
pub const ENTRIES: &[(&CStr, &CStr)] = &[
    (
        c"LOCK.ACQUIRE key owner ttl [SHARED | LIMIT n] [SESSION] [WAIT timeout] [HELD count]",
        c"    Takes or reenters the lock (WAIT: waits in line); replies the token, or nil.",
    ),
    (
        c"LOCK.REENTER key owner [ttl] [HELD count]",
        c"    Adds a hold to a lock the owner holds; replies the new count, or nil.",
    ),
    (
        c"LOCK.RELEASE key owner [HELD count]",
        c"    Drops a hold (at 0 the next waiter gets it); replies the count left, or nil.",
    ),
    (
        c"LOCK.RENEW key owner ttl",
        c"    Resets the expiry of a lock the owner holds; replies 1, or 0 if not held.",
    ),
    (
        c"LOCK.INFO key",
        c"    Replies the lock's owner, count, ttl, token and waiters, or nil if free.",
    ),
];

const HEADING: &CStr = c"LOCK.<command> key [<arg> ...] (ttl and timeout in ms). Commands are:";
const HELP_ENTRY: (&CStr, &CStr) = (c"LOCK.HELP", c"    Print this help.");

/// LOCK.HELP -> array of simple strings. Its arity (1) is enforced by the server.
pub extern "C" fn help_entry(
    ctx: *mut RedisModuleCtx,
    _argv: *mut *mut RedisModuleString,
    _argc: c_int,
) -> c_int {
    run_callback("LOCK.HELP", OK, || {
        let lines: Vec<&CStr> = std::iter::once(HEADING)
            .chain(
                ENTRIES
                    .iter()
                    .chain(std::iter::once(&HELP_ENTRY))
                    .flat_map(|(syntax, what)| [*syntax, *what]),
            )
            .collect();
        // SAFETY: ctx is the running command's context; the lines are static C strings, and
        // exactly as many follow the array header as it announces.
        unsafe {
            rm!(RedisModule_ReplyWithArray)(ctx, lines.len() as std::os::raw::c_long);
            for line in lines {
                rm!(RedisModule_ReplyWithSimpleString)(ctx, line.as_ptr());
            }
        }
        OK
    })
}
