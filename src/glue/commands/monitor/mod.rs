//! The commands that show what the locks are doing (issue 21), all read-only but
//! LOCK.LOGRESET: LOCK.LOG, LOCK.LOST, LOCK.TOP, LOCK.SCAN, LOCK.WAITERS. Their reply shapes:
//! docs/operations.md ("Seeing what the locks are doing"). Their errors are their own (an
//! `ERR` line naming the command), so they run through `monitor_entry!` instead of the lock
//! commands' `LockError`.

pub mod log;
pub mod lost;
pub mod scan;
pub mod top;
pub mod waiters;

use std::ffi::CString;
use std::os::raw::c_int;
use std::panic::{catch_unwind, AssertUnwindSafe};

use redis_module::raw::{RedisModuleCtx, RedisModuleString};

use crate::core::monitor::lock_log::HoldKind;
use crate::glue::effects::monitor;
use crate::glue::server::api::rm;
use crate::glue::server::context::{Ctx, OK};
use crate::glue::server::entry::string_bytes;

/// A handler: the context and every argument after the command name, as bytes; `Err` is the
/// error line (without `ERR `).
pub type Handler = fn(Ctx, &[&[u8]]) -> Result<(), String>;

/// Runs `handler` with panics caught and errors replied.
pub fn run(
    ctx: *mut RedisModuleCtx,
    argv: *mut *mut RedisModuleString,
    argc: c_int,
    name: &str,
    handler: Handler,
) -> c_int {
    let ctx = Ctx(ctx);
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let argc = usize::try_from(argc).unwrap_or(0);
        if argv.is_null() || argc == 0 {
            return Err(format!("wrong number of arguments for '{name}' command"));
        }
        // SAFETY: the server passes argc live strings that outlive this call.
        let strings = unsafe { std::slice::from_raw_parts(argv.add(1), argc - 1) };
        // SAFETY: as above.
        let args: Vec<&[u8]> = strings
            .iter()
            .map(|&s| unsafe { string_bytes(s) })
            .collect();
        note_resetstat(ctx);
        handler(ctx, &args)
    }));
    let error = match outcome {
        Ok(Ok(())) => return OK,
        Ok(Err(error)) => error,
        Err(_) => format!("internal error in {name} (a bug; nothing was changed)"),
    };
    let text = CString::new(format!("ERR {error}"))
        .unwrap_or_else(|_| CString::from(c"ERR error text with a NUL byte"));
    // SAFETY: ctx is the running command's context; the server copies the text.
    unsafe { rm!(RedisModule_ReplyWithError)(ctx.0, text.as_ptr()) };
    OK
}

macro_rules! monitor_entry {
    ($entry:ident, $name:expr, $handler:path) => {
        extern "C" fn $entry(
            ctx: *mut redis_module::raw::RedisModuleCtx,
            argv: *mut *mut redis_module::raw::RedisModuleString,
            argc: std::os::raw::c_int,
        ) -> std::os::raw::c_int {
            $crate::glue::commands::monitor::run(ctx, argv, argc, $name, $handler)
        }
    };
}
pub(crate) use monitor_entry;

/// Looks at `total_commands_processed` (CONFIG RESETSTAT zeroes it), so that a reset shows at
/// once in these commands; a timer looks every second too (hooks/info.rs).
pub fn note_resetstat(ctx: Ctx) {
    if let Some(commands) = commands_processed(ctx) {
        monitor::note_commands_processed(commands);
    }
}

/// INFO stats' `total_commands_processed`.
pub fn commands_processed(ctx: Ctx) -> Option<u64> {
    // SAFETY: ctx is live; the info data is freed before returning.
    unsafe {
        let info = rm!(RedisModule_GetServerInfo)(ctx.0, c"stats".as_ptr());
        if info.is_null() {
            return None;
        }
        let mut error: c_int = 0;
        let field = c"total_commands_processed";
        let value = rm!(RedisModule_ServerInfoGetFieldUnsigned)(info, field.as_ptr(), &mut error);
        rm!(RedisModule_FreeServerInfo)(ctx.0, info);
        (error == 0).then_some(value)
    }
}

/// A count argument: a positive decimal integer up to `max`.
pub fn parse_count(command: &str, arg: &[u8], max: usize) -> Result<usize, String> {
    std::str::from_utf8(arg)
        .ok()
        .and_then(|text| text.parse::<usize>().ok())
        .filter(|&n| n >= 1 && n <= max)
        .ok_or_else(|| format!("{command}: count must be an integer from 1 to {max}"))
}

pub fn reply_array(ctx: Ctx, len: usize) {
    // SAFETY: ctx is the running command's context.
    unsafe { rm!(RedisModule_ReplyWithArray)(ctx.0, len as std::os::raw::c_long) };
}

/// A field name and an integer value of a map reply.
pub fn field_int(ctx: Ctx, name: &std::ffi::CStr, value: i64) {
    ctx.reply_simple(name);
    ctx.reply_integer(value);
}

pub fn field_u64(ctx: Ctx, name: &std::ffi::CStr, value: u64) {
    field_int(ctx, name, i64::try_from(value).unwrap_or(i64::MAX));
}

pub fn field_bytes(ctx: Ctx, name: &std::ffi::CStr, value: &[u8]) {
    ctx.reply_simple(name);
    ctx.reply_bytes(value);
}

pub fn field_kind(ctx: Ctx, kind: HoldKind) {
    field_bytes(ctx, c"kind", kind.name().as_bytes());
}
