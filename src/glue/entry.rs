//! Every entry point from the server into rlock passes through here: a panic must never cross
//! into redis-server (it would abort the whole server), so each one is caught and answered as
//! an error, and the command's arguments are read into byte slices once.

use std::cell::Cell;
use std::os::raw::c_int;
use std::panic::{catch_unwind, AssertUnwindSafe};

use redis_module::raw::{RedisModuleCtx, RedisModuleString};

use super::api::rm;
use super::context::{Ctx, OK};
use crate::core::error::{Command, LockError};

/// Arguments after the command name read without allocating (LOCK.APPLY takes six); a longer
/// call, always a refusal, spills into a Vec so the parser can say what is wrong with it.
const INLINE_ARGS: usize = 8;

/// A command's arguments after its name: the key as the server's string, all as bytes.
pub struct Args<'a> {
    strings: &'a [*mut RedisModuleString],
    inline: [&'a [u8]; INLINE_ARGS],
    spilled: Vec<&'a [u8]>,
}

impl<'a> Args<'a> {
    /// `None` without even a command name.
    ///
    /// # Safety
    /// `argv` must point to `argc` live strings for the lifetime `'a`.
    unsafe fn read(argv: *mut *mut RedisModuleString, argc: c_int) -> Option<Args<'a>> {
        let argc = usize::try_from(argc).unwrap_or(0);
        if argv.is_null() || argc == 0 {
            return None;
        }
        // SAFETY: the caller promises argv holds argc strings.
        let all = unsafe { std::slice::from_raw_parts(argv, argc) };
        let strings = &all[1..];
        // SAFETY (both reads): each string is live for 'a, as the caller promises.
        let mut inline: [&[u8]; INLINE_ARGS] = [&[]; INLINE_ARGS];
        let mut spilled = Vec::new();
        if strings.len() <= INLINE_ARGS {
            for (slot, &string) in inline.iter_mut().zip(strings) {
                *slot = unsafe { string_bytes(string) };
            }
        } else {
            spilled = strings
                .iter()
                .map(|&string| unsafe { string_bytes(string) })
                .collect();
        }
        Some(Args {
            strings,
            inline,
            spilled,
        })
    }

    /// The arguments after the command name, the key first.
    pub fn bytes(&self) -> &[&'a [u8]] {
        if self.strings.len() <= INLINE_ARGS {
            &self.inline[..self.strings.len()]
        } else {
            &self.spilled
        }
    }

    /// The key as the server's own string (argument 1), for opening and replicating.
    pub fn key(&self) -> Option<*mut RedisModuleString> {
        self.strings.first().copied()
    }
}

/// The bytes of a server string, valid while the string lives.
///
/// # Safety
/// `string` must be a live RedisModuleString.
pub unsafe fn string_bytes<'a>(string: *const RedisModuleString) -> &'a [u8] {
    let mut len = 0usize;
    // SAFETY: the caller promises a live string; StringPtrLen never returns null for one.
    let ptr = unsafe { rm!(RedisModule_StringPtrLen)(string, &mut len) };
    if ptr.is_null() {
        return &[];
    }
    // SAFETY: the server guarantees ptr points to len bytes while the string lives.
    unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), len) }
}

pub type Handler = fn(Ctx, &Args) -> Result<(), LockError>;

thread_local! {
    /// The context of the LOCK.* command running now (null between commands).
    static RUNNING: Cell<*mut RedisModuleCtx> = const { Cell::new(std::ptr::null_mut()) };
}

/// Whether `ctx` is the running command's own context (not a timer's or an event's).
pub fn is_running_command(ctx: Ctx) -> bool {
    RUNNING.with(Cell::get) == ctx.0
}

/// Marks a command as running for its duration, even if its handler panics.
struct Running {
    previous: *mut RedisModuleCtx,
}

impl Running {
    fn begin(ctx: *mut RedisModuleCtx) -> Running {
        Running {
            previous: RUNNING.with(|running| running.replace(ctx)),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        RUNNING.with(|running| running.set(self.previous));
    }
}

/// Runs a command handler with its arguments read, errors replied, and panics caught.
pub fn run_command(
    ctx: *mut RedisModuleCtx,
    argv: *mut *mut RedisModuleString,
    argc: c_int,
    command: Command,
    handler: Handler,
) -> c_int {
    let _running = Running::begin(ctx);
    let ctx = Ctx(ctx);
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: the server passes argc live strings that outlive this call.
        match unsafe { Args::read(argv, argc) } {
            Some(args) => handler(ctx, &args),
            None => Err(LockError::Arity(command)),
        }
    }));
    let error = match outcome {
        Ok(Ok(())) => return OK,
        Ok(Err(error)) => error,
        Err(_) => LockError::Panicked(command),
    };
    // Replying can itself panic only on a missing API, which the load-time check ruled out.
    let _ = catch_unwind(AssertUnwindSafe(|| ctx.reply_error(&error)));
    OK
}

/// Runs a callback that has no reply, so that a panic in it is logged instead of aborting.
pub fn run_callback<T>(what: &str, fallback: T, body: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(value) => value,
        Err(_) => {
            let _ = catch_unwind(|| {
                super::context::log(
                    std::ptr::null_mut(),
                    c"warning",
                    &format!("rlock: a bug in {what} was caught; the log line before says where"),
                )
            });
            fallback
        }
    }
}

/// Writes every panic's message and location to the server's log (a daemonized server drops
/// stderr, where Rust's default hook writes), before the entry point catches it.
pub fn log_panics() {
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|text| text.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".into());
        let place = info.location().map_or_else(
            || "an unknown place".into(),
            |at| format!("{}:{}", at.file(), at.line()),
        );
        super::context::log(
            std::ptr::null_mut(),
            c"warning",
            &format!("rlock: panic at {place}: {message}"),
        );
    }));
}

/// Declares an `extern "C"` command function that the server calls, wrapping `$handler`.
macro_rules! command_entry {
    ($name:ident, $command:expr, $handler:path) => {
        pub extern "C" fn $name(
            ctx: *mut redis_module::raw::RedisModuleCtx,
            argv: *mut *mut redis_module::raw::RedisModuleString,
            argc: std::os::raw::c_int,
        ) -> std::os::raw::c_int {
            $crate::glue::entry::run_command(ctx, argv, argc, $command, $handler)
        }
    };
}
pub(crate) use command_entry;
