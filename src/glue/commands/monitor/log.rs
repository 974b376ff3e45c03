//! LOCK.LOG GET [count] | LEN: the lock log, newest first (SLOWLOG's shape of subcommands).
//! LOCK.LOGRESET empties it: a command of its own so that an ACL can allow reading the log to
//! everyone and emptying it to operators (module commands cannot have subcommands of their own
//! ACL here).

use crate::glue::commands::monitor::{
    field_bytes, field_int, field_kind, field_u64, monitor_entry, parse_count, reply_array,
};
use crate::glue::commands::spec::{Arg, ArgKind, CommandSpec, Help};
use crate::glue::effects::monitor;
use crate::glue::server::context::Ctx;

/// The most entries one GET returns; the log keeps at most 10,000 (lock.log-max-len).
const MAX_GET: usize = 10_000;
const DEFAULT_GET: usize = 10;

pub static SPEC: CommandSpec = CommandSpec {
    name: c"lock.log",
    entry: Some(log_entry),
    flags: c"readonly allow-loading allow-stale",
    acl: c"read slow",
    arity: -2,
    key_flags: 0,
    summary: c"Shows the lock log: holds that expired while held, were deleted, flushed, dropped on resync or ended with their session; long waits and holds",
    complexity: c"GET: O(count); LEN: O(1)",
    args: &[
        Arg {
            name: c"subcommand",
            kind: ArgKind::OneOf(&[
                Arg {
                    name: c"get",
                    kind: ArgKind::PureToken,
                    token: Some(c"GET"),
                    optional: false,
                },
                Arg {
                    name: c"len",
                    kind: ArgKind::PureToken,
                    token: Some(c"LEN"),
                    optional: false,
                },
            ]),
            token: None,
            optional: false,
        },
        Arg {
            name: c"count",
            kind: ArgKind::Integer,
            token: None,
            optional: true,
        },
    ],
    help: Some(Help {
        syntax: c"LOCK.LOG GET | LEN [count]",
        line: c"    The lock log, newest first (10 entries by default), or its length.",
    }),
};

pub static RESET_SPEC: CommandSpec = CommandSpec {
    name: c"lock.logreset",
    entry: Some(reset_entry),
    flags: c"admin allow-loading allow-stale",
    acl: c"admin dangerous slow",
    arity: 1,
    key_flags: 0,
    summary: c"Empties the lock log (entry ids go on rising)",
    complexity: c"O(N) in the entries",
    args: &[],
    help: Some(Help {
        syntax: c"LOCK.LOGRESET",
        line: c"    Empties the lock log.",
    }),
};

monitor_entry!(log_entry, "lock.log", log);
monitor_entry!(reset_entry, "lock.logreset", reset);

/// LOCK.LOG GET [count] -> [{id, time, reason, db, key, owner, token, kind, session, ms,
/// granted}...] | LOCK.LOG LEN -> integer
fn log(ctx: Ctx, args: &[&[u8]]) -> Result<(), String> {
    let subcommand = args.first().map(|arg| arg.to_ascii_uppercase());
    match (subcommand.as_deref(), args.len()) {
        (Some(b"LEN"), 1) => {
            ctx.reply_integer(monitor::with(|state| state.log.len()) as i64);
            Ok(())
        }
        (Some(b"GET"), 1 | 2) => {
            let count = match args.get(1) {
                Some(arg) => parse_count("LOCK.LOG GET", arg, MAX_GET)?,
                None => DEFAULT_GET,
            };
            monitor::with(|state| {
                let entries: Vec<_> = state.log.newest(count).collect();
                reply_array(ctx, entries.len());
                for entry in entries {
                    ctx.reply_map(11);
                    field_u64(ctx, c"id", entry.id);
                    field_int(ctx, c"time", entry.at);
                    field_bytes(ctx, c"reason", entry.reason.name().as_bytes());
                    field_int(ctx, c"db", entry.db.into());
                    field_bytes(ctx, c"key", &entry.key);
                    field_bytes(ctx, c"owner", &entry.owner);
                    field_u64(ctx, c"token", entry.token);
                    field_kind(ctx, entry.kind);
                    field_int(ctx, c"session", entry.session.into());
                    field_u64(ctx, c"ms", entry.duration_ms);
                    field_int(ctx, c"granted", entry.granted.into());
                }
            });
            Ok(())
        }
        _ => {
            Err("LOCK.LOG: syntax is LOCK.LOG GET [count] | LEN (LOCK.LOGRESET empties it)".into())
        }
    }
}

/// LOCK.LOGRESET -> OK
fn reset(ctx: Ctx, _args: &[&[u8]]) -> Result<(), String> {
    monitor::with(|state| state.log.reset());
    ctx.reply_simple(c"OK");
    Ok(())
}
