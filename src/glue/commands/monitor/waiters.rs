//! LOCK.WAITERS key [COUNT n]: the clients waiting for one lock, first in line first, with
//! what each asked for, how long it has waited and the time left on its WAIT timeout.

use redis_module::raw;

use crate::core::monitor::lock_log::HoldKind;
use crate::glue::commands::monitor::{
    field_int, field_kind, field_u64, monitor_entry, parse_count, reply_array,
};
use crate::glue::commands::spec::{Arg, ArgKind, CommandSpec, Help, KEY};
use crate::glue::server::context::Ctx;
use crate::glue::server::key_ref::KeyRef;
use crate::glue::waiting::{several, waiters};

const DEFAULT_COUNT: usize = 100;
const MAX_COUNT: usize = 100_000;

pub static SPEC: CommandSpec = CommandSpec {
    name: c"lock.waiters",
    entry: Some(waiters_entry),
    flags: c"readonly",
    acl: c"read slow",
    arity: -2,
    key_flags: raw::REDISMODULE_CMD_KEY_RO | raw::REDISMODULE_CMD_KEY_ACCESS,
    summary: c"Lists the clients waiting for a lock: owner, kind, waited ms, timeout left",
    complexity: c"O(N) in the key's waiters",
    args: &[
        KEY,
        Arg {
            name: c"count",
            kind: ArgKind::Integer,
            token: Some(c"COUNT"),
            optional: true,
        },
    ],
    help: Some(Help {
        syntax: c"LOCK.WAITERS key [COUNT count]",
        line: c"    The clients waiting for key, first in line first (100 by default).",
    }),
};

monitor_entry!(waiters_entry, "lock.waiters", list);

/// LOCK.WAITERS key [COUNT n] -> [{owner, kind, session, ttl, waited_ms, timeout_left_ms
/// (-1: no timeout), client}...]
fn list(ctx: Ctx, args: &[&[u8]]) -> Result<(), String> {
    let count = match args {
        [_] => DEFAULT_COUNT,
        [_, option, count] if option.eq_ignore_ascii_case(b"COUNT") => {
            parse_count("LOCK.WAITERS", count, MAX_COUNT)?
        }
        [_, ..] => return Err("LOCK.WAITERS: syntax is LOCK.WAITERS key [COUNT count]".into()),
        [] => return Err("wrong number of arguments for 'lock.waiters' command".into()),
    };
    struct Row {
        seq: u64,
        owner: Vec<u8>,
        kind: HoldKind,
        session: bool,
        ttl: u64,
        waited_ms: u64,
        timeout_left_ms: i64,
        client: u64,
    }
    let row =
        |seq: u64, owner: &[u8], want, session, ttl, waited_us: u64, timeout_ms: u64, client| {
            let waited_ms = waited_us / 1000;
            let timeout_left_ms = if timeout_ms == 0 {
                -1
            } else {
                i64::try_from(timeout_ms.saturating_sub(waited_ms)).unwrap_or(i64::MAX)
            };
            Row {
                seq,
                owner: owner.to_vec(),
                kind: HoldKind::of_want(want),
                session,
                ttl,
                waited_ms,
                timeout_left_ms,
                client,
            }
        };
    let db = ctx.selected_db();
    let mut rows = Vec::new();
    waiters::for_each_waiter(db, args[0], |seq, w| {
        let client = w.client.client_id();
        rows.push(row(
            seq,
            &w.owner,
            w.want,
            w.session,
            w.ttl,
            w.waited_us(),
            w.timeout_ms,
            client,
        ));
    });
    // LOCK.MACQUIRE ... WAIT waiters stand in the same line, numbered from the same counter.
    several::for_each_on(&KeyRef::new(db, args[0]), |seq, w| {
        let client = w.client.client_id();
        rows.push(row(
            seq,
            &w.owner,
            w.want,
            w.session,
            w.ttl,
            w.waited_us(),
            w.timeout_ms,
            client,
        ));
    });
    rows.sort_by_key(|row| row.seq);
    rows.truncate(count);
    reply_array(ctx, rows.len());
    for row in rows {
        ctx.reply_map(7);
        ctx.reply_simple(c"owner");
        ctx.reply_bytes(&row.owner);
        field_kind(ctx, row.kind);
        field_int(ctx, c"session", row.session.into());
        field_u64(ctx, c"ttl", row.ttl);
        field_u64(ctx, c"waited_ms", row.waited_ms);
        field_int(ctx, c"timeout_left_ms", row.timeout_left_ms);
        field_u64(ctx, c"client", row.client);
    }
    Ok(())
}
