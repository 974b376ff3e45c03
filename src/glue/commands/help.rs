//! LOCK.HELP: the commands, one syntax line and one indented line of description each, in the
//! reply shape of Redis' own `OBJECT HELP` (an array of simple strings: a heading, the entries,
//! `HELP` last). The lines are every command's own `Help` (internal commands have none), handed
//! over once at load by registration, which sees the whole list.

use std::ffi::{c_int, CStr};
use std::sync::OnceLock;

use redis_module::raw::{RedisModuleCtx, RedisModuleString};

use crate::glue::commands::spec::{CommandSpec, Help};
use crate::glue::server::api::rm;
use crate::glue::server::context::OK;
use crate::glue::server::entry::run_callback;

pub static SPEC: CommandSpec = CommandSpec {
    name: c"lock.help",
    entry: Some(help_entry),
    flags: c"fast allow-loading allow-stale",
    acl: c"fast",
    arity: 1,
    key_flags: 0,
    summary: c"Lists the LOCK commands with their syntax, one line of description each",
    complexity: c"O(1)",
    args: &[],
    help: Some(Help {
        syntax: c"LOCK.HELP",
        line: c"    Print this help.",
    }),
};

const HEADING: &CStr = c"LOCK.<command> key [<arg> ...] (ttl and timeout in ms). Commands are:";

/// The registered commands' help, in their order, LOCK.HELP's own last.
static ENTRIES: OnceLock<Vec<&'static Help>> = OnceLock::new();

/// Keeps the help of `commands` for LOCK.HELP (the first call wins; later ones change nothing).
pub fn publish(commands: &'static [&'static CommandSpec]) {
    let mut entries: Vec<&Help> = commands
        .iter()
        .filter(|spec| spec.name != SPEC.name)
        .filter_map(|spec| spec.help.as_ref())
        .collect();
    entries.extend(SPEC.help.as_ref());
    let _ = ENTRIES.set(entries);
}

/// LOCK.HELP -> array of simple strings. Its arity (1) is enforced by the server.
extern "C" fn help_entry(
    ctx: *mut RedisModuleCtx,
    _argv: *mut *mut RedisModuleString,
    _argc: c_int,
) -> c_int {
    run_callback("LOCK.HELP", OK, || {
        let entries = ENTRIES.get().map_or(&[][..], Vec::as_slice);
        let lines: Vec<&CStr> = std::iter::once(HEADING)
            .chain(entries.iter().flat_map(|help| [help.syntax, help.line]))
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
