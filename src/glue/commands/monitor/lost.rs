//! LOCK.LOST key owner: why `owner` lost its hold on `key`, for a holder whose LOCK.RELEASE or
//! LOCK.RENEW found it gone; with whoever holds the key now.

use redis_module::raw;

use crate::core::state::holds::Holder;
use crate::glue::commands::monitor::{
    field_bytes, field_int, field_kind, field_u64, monitor_entry, reply_array,
};
use crate::glue::commands::spec::{CommandSpec, Help, KEY, OWNER};
use crate::glue::effects::keys::ReadKey;
use crate::glue::effects::monitor;
use crate::glue::server::context::{now, Ctx};

pub static SPEC: CommandSpec = CommandSpec {
    name: c"lock.lost",
    entry: Some(lost_entry),
    flags: c"readonly fast",
    acl: c"read fast",
    arity: 3,
    key_flags: raw::REDISMODULE_CMD_KEY_RO | raw::REDISMODULE_CMD_KEY_ACCESS,
    summary: c"Says why an owner lost its hold on a lock (expired, deleted, flushed, dropped on resync, session closed) and who holds it now",
    complexity: c"O(1) (O(N) in the key's holders)",
    args: &[KEY, OWNER],
    help: Some(Help {
        syntax: c"LOCK.LOST key owner",
        line: c"    Why owner lost its hold on key (kept lock.lost-retention-ms), or nil.",
    }),
};

monitor_entry!(lost_entry, "lock.lost", lost);

/// LOCK.LOST key owner -> nil | {reason, time, ago_ms, token, kind, held_ms, holders:
/// [{owner, token}...]}
fn lost(ctx: Ctx, args: &[&[u8]]) -> Result<(), String> {
    let [key, owner] = args else {
        return Err("wrong number of arguments for 'lock.lost' command".into());
    };
    let now = now();
    let db = ctx.selected_db();
    let limits = monitor::lost_limits();
    let Some(loss) = monitor::with(|state| state.lost.lookup(db, key, owner, limits, now)) else {
        ctx.reply_null();
        return Ok(());
    };
    let holders = holders_now(ctx, key, now);
    ctx.reply_map(7);
    field_bytes(ctx, c"reason", loss.reason.name().as_bytes());
    field_int(ctx, c"time", loss.at);
    field_int(ctx, c"ago_ms", now.saturating_sub(loss.at).max(0));
    field_u64(ctx, c"token", loss.token);
    field_kind(ctx, loss.kind);
    field_u64(ctx, c"held_ms", loss.held_ms);
    ctx.reply_simple(c"holders");
    reply_array(ctx, holders.len());
    for holder in holders {
        ctx.reply_map(2);
        field_bytes(ctx, c"owner", &holder.owner);
        field_u64(ctx, c"token", holder.token);
    }
    Ok(())
}

/// Who holds `key` now (none when free or not a lock).
fn holders_now(ctx: Ctx, key: &[u8], now: i64) -> Vec<Holder> {
    let name = crate::glue::effects::keys::OwnedString::new(ctx, key);
    let mut lock_key = ReadKey::open(ctx, name.as_ptr());
    match lock_key.holds() {
        Ok(Some(mut holds)) => {
            holds.expire(now);
            holds.holders
        }
        _ => Vec::new(),
    }
}
