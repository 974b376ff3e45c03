//! LOCK.TOP [count]: the hottest locks of this node (most waiting and contention recently),
//! from the bounded space-saving table of core/monitor/hot_keys.rs, with their waiters and longest
//! hold now.

use crate::core::monitor::latency::held_ms;
use crate::glue::commands::monitor::{
    field_bytes, field_int, field_u64, monitor_entry, parse_count, reply_array,
};
use crate::glue::commands::spec::{Arg, CommandSpec, Help};
use crate::glue::effects::keys::{OwnedString, ReadKey};
use crate::glue::effects::{monitor, token_counter};
use crate::glue::server::context::{now, Ctx};
use crate::glue::waiting::waiters;

const DEFAULT_COUNT: usize = 10;

pub static SPEC: CommandSpec = CommandSpec {
    name: c"lock.top",
    entry: Some(top_entry),
    flags: c"readonly",
    acl: c"read slow",
    arity: -1,
    key_flags: 0,
    summary: c"Shows the hottest locks: most time waited and contended acquires recently, waiters now, wait p99, longest current hold",
    complexity: c"O(K log K) in the keys tracked (lock.top-size) plus O(count) key lookups",
    args: &[Arg {
        name: c"count",
        kind: crate::glue::commands::spec::ArgKind::Integer,
        token: None,
        optional: true,
    }],
    help: Some(Help {
        syntax: c"LOCK.TOP [count]",
        line: c"    The hottest locks (10 by default): waiting, contention, wait p99, holds.",
    }),
};

monitor_entry!(top_entry, "lock.top", top);

/// A hot key as read out of the table.
struct Row {
    db: i32,
    key: Vec<u8>,
    weight: u64,
    error: u64,
    contended: u64,
    handoffs: u64,
    timeouts: u64,
    waited_ms: u64,
    wait_p99_ms: u64,
}

/// LOCK.TOP [count] -> [{db, key, weight, error, contended, handoffs, timeouts, waited_ms,
/// wait_p99_ms, waiters, longest_hold_ms}...], heaviest first
fn top(ctx: Ctx, args: &[&[u8]]) -> Result<(), String> {
    let count = match args {
        [] => DEFAULT_COUNT,
        [count] => parse_count("LOCK.TOP", count, 1024)?,
        _ => return Err("wrong number of arguments for 'lock.top' command".into()),
    };
    let now = now();
    let limits = monitor::hot_limits();
    let rows: Vec<Row> = monitor::with(|state| {
        state
            .hot
            .top(count, limits, now)
            .into_iter()
            .map(|hot| Row {
                db: hot.db,
                key: hot.key.to_vec(),
                weight: hot.weight,
                error: hot.error,
                contended: hot.contended,
                handoffs: hot.handoffs,
                timeouts: hot.timeouts,
                waited_ms: hot.waited_ms,
                wait_p99_ms: hot.wait_p99_ms(),
            })
            .collect()
    });
    let selected = ctx.selected_db();
    reply_array(ctx, rows.len());
    for row in rows {
        ctx.select_db(row.db);
        let longest = longest_hold_ms(ctx, &row.key, now);
        ctx.reply_map(11);
        field_int(ctx, c"db", row.db.into());
        field_bytes(ctx, c"key", &row.key);
        field_u64(ctx, c"weight", row.weight);
        field_u64(ctx, c"error", row.error);
        field_u64(ctx, c"contended", row.contended);
        field_u64(ctx, c"handoffs", row.handoffs);
        field_u64(ctx, c"timeouts", row.timeouts);
        field_u64(ctx, c"waited_ms", row.waited_ms);
        field_u64(ctx, c"wait_p99_ms", row.wait_p99_ms);
        field_u64(ctx, c"waiters", waiters::queued(row.db, &row.key) as u64);
        field_u64(ctx, c"longest_hold_ms", longest);
    }
    ctx.select_db(selected);
    Ok(())
}

/// How long the key's oldest live hold has been held (0 when free).
pub fn longest_hold_ms(ctx: Ctx, key: &[u8], now: i64) -> u64 {
    let name = OwnedString::new(ctx, key);
    let mut lock_key = ReadKey::open(ctx, name.as_ptr());
    let Ok(Some(mut holds)) = lock_key.holds() else {
        return 0;
    };
    holds.expire(now);
    let leads = token_counter::leads();
    holds
        .holders
        .iter()
        .map(|holder| held_ms(holder.token, &leads, now))
        .max()
        .unwrap_or(0)
}
