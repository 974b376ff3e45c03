//! Every entry point from the server into rlock passes through here: a panic must never cross
//! into redis-server (it would abort the whole server), so each one is caught and answered as
//! an error, and the command's arguments are read into byte slices once.

use std::mem::MaybeUninit;
use std::os::raw::c_int;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::AtomicPtr;
use std::sync::atomic::Ordering::Relaxed;

use redis_module::raw::{RedisModuleCtx, RedisModuleString};

use crate::core::error::{Command, LockError};
use crate::glue::server::api::rm;
use crate::glue::server::context::{Ctx, OK};

/// Arguments after the command name read without allocating (LOCK.APPLY takes six); a longer
/// call, always a refusal, spills into a Vec so the parser can say what is wrong with it.
const INLINE_ARGS: usize = 8;

/// A command's arguments after its name: the key as the server's string, all as bytes. It
/// borrows what `run_command` read on its stack: nothing is copied or moved per command.
///
/// The key's own bytes are read only when asked for (`key_bytes`): the plain lock's commands
/// never need them, and each read is a call into the server. In `bytes()` the key's slot is
/// empty; the parsers only count it.
pub struct Args<'a> {
    strings: &'a [*mut RedisModuleString],
    bytes: &'a [&'a [u8]],
}

impl<'a> Args<'a> {
    /// The arguments after the command name, the key's slot first (empty: see `key_bytes`).
    pub fn bytes(&self) -> &[&'a [u8]] {
        self.bytes
    }

    /// The key as the server's own string (argument 1), for opening and replicating.
    pub fn key(&self) -> Option<*mut RedisModuleString> {
        self.strings.first().copied()
    }

    /// The key's bytes (empty without a key).
    pub fn key_bytes(&self) -> &'a [u8] {
        match self.strings.first() {
            // SAFETY: the strings are live for 'a (see with_args).
            Some(&key) => unsafe { string_bytes(key) },
            None => &[],
        }
    }
}

/// Runs `handler` with the `argc` strings at `argv` after the command name, as bytes.
///
/// # Safety
/// `argv` must point to `argc` live strings for the duration of the call.
#[inline(always)]
unsafe fn with_args<H: Handler>(
    ctx: Ctx,
    argv: *mut *mut RedisModuleString,
    argc: c_int,
    command: Command,
    handler: H,
) -> Result<(), LockError> {
    let argc = usize::try_from(argc).unwrap_or(0);
    if argv.is_null() || argc == 0 {
        return Err(LockError::Arity(command));
    }
    // SAFETY: the caller promises argv holds argc strings.
    let strings = unsafe { std::slice::from_raw_parts(argv.add(1), argc - 1) };
    // The key's slot stays empty: its bytes are read on demand (Args::key_bytes).
    let skip = usize::from(command.takes_key());
    // SAFETY (all reads): each string is live for the call, as the caller promises.
    let read = |(i, &string): (usize, &*mut RedisModuleString)| -> &[u8] {
        if i < skip {
            &[]
        } else {
            unsafe { string_bytes(string) }
        }
    };
    if strings.len() > INLINE_ARGS {
        let spilled: Vec<&[u8]> = strings.iter().enumerate().map(read).collect();
        return handler(
            ctx,
            &Args {
                strings,
                bytes: &spilled,
            },
        );
    }
    // Only the slots in use are written (this runs for every command): the key's empty, then
    // each argument's bytes.
    let mut inline = [MaybeUninit::<&[u8]>::uninit(); INLINE_ARGS];
    let skip = skip.min(strings.len());
    for slot in &mut inline[..skip] {
        slot.write(&[]);
    }
    for (slot, &string) in inline[skip..strings.len()].iter_mut().zip(&strings[skip..]) {
        // SAFETY: each string is live for the call, as the caller promises.
        slot.write(unsafe { string_bytes(string) });
    }
    // SAFETY: the first strings.len() slots were written just above.
    let bytes = unsafe { std::slice::from_raw_parts(inline.as_ptr().cast(), strings.len()) };
    handler(ctx, &Args { strings, bytes })
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

/// A command's handler: generic, so that each entry point is compiled with its handler inlined
/// (no indirect call, one stack frame less per command).
pub trait Handler: Fn(Ctx, &Args) -> Result<(), LockError> {}
impl<F: Fn(Ctx, &Args) -> Result<(), LockError>> Handler for F {}

/// The context of the LOCK.* command running now (null between commands). An atomic, not a
/// thread_local: commands run on the main thread, and a thread_local in a shared library costs
/// a __tls_get_addr call per access.
static RUNNING: AtomicPtr<RedisModuleCtx> = AtomicPtr::new(std::ptr::null_mut());

/// Whether `ctx` is the running command's own context (not a timer's or an event's).
pub fn is_running_command(ctx: Ctx) -> bool {
    RUNNING.load(Relaxed) == ctx.0
}

/// Marks a command as running for its duration, even if its handler panics.
struct Running {
    previous: *mut RedisModuleCtx,
}

impl Running {
    fn begin(ctx: *mut RedisModuleCtx) -> Running {
        Running {
            previous: RUNNING.swap(ctx, Relaxed),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        RUNNING.store(self.previous, Relaxed);
    }
}

/// Runs a command handler with its arguments read, errors replied, and panics caught.
#[inline(always)]
pub fn run_command<H: Handler>(
    ctx: *mut RedisModuleCtx,
    argv: *mut *mut RedisModuleString,
    argc: c_int,
    command: Command,
    handler: H,
) -> c_int {
    let _running = Running::begin(ctx);
    let ctx = Ctx(ctx);
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: the server passes argc live strings that outlive this call.
        unsafe { with_args(ctx, argv, argc, command, handler) }
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
                crate::glue::server::context::log(
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
        crate::glue::server::context::log(
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
            $crate::glue::server::entry::run_command(ctx, argv, argc, $command, $handler)
        }
    };
}
pub(crate) use command_entry;
