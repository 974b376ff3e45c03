//! LOCK.INFO key: a lock's holders (owner, count, ttl, token, session), mode and waiters.

use redis_module::raw;

use crate::core::error::{Command, LockError};
use crate::core::request::parse_info;
use crate::core::state::holds::{Holder, Holds, Mode};
use crate::core::state::lock;
use crate::core::Millis;
use crate::glue::commands::finish::key_name;
use crate::glue::commands::spec::{CommandSpec, Help, KEY};
use crate::glue::effects::keys::ReadKey;
use crate::glue::server::api::rm;
use crate::glue::server::context::{now, Ctx};
use crate::glue::server::entry::{command_entry, Args};
use crate::glue::waiting::waiters;

pub static SPEC: CommandSpec = CommandSpec {
    name: c"lock.info",
    entry: Some(info_entry),
    flags: c"readonly fast",
    acl: c"read fast",
    arity: 2,
    key_flags: raw::REDISMODULE_CMD_KEY_RO | raw::REDISMODULE_CMD_KEY_ACCESS,
    summary: c"Shows a lock's owner, hold count, ttl, fencing token and waiters",
    complexity: c"O(1)",
    args: &[KEY],
    help: Some(Help {
        syntax: c"LOCK.INFO key",
        line: c"    Replies the lock's owner, count, ttl, token and waiters, or nil if free.",
    }),
};

command_entry!(info_entry, Command::Info, info);

/// LOCK.INFO key -> nil | an exclusive lock's {owner, count, ttl, token, waiters} (and
/// `session` 1 for a session hold) | {mode, [limit,] holders: [{owner, count, ttl, token,
/// session}...], waiters}
fn info(ctx: Ctx, args: &Args) -> Result<(), LockError> {
    parse_info(args.bytes())?;
    let name = key_name(args, Command::Info)?;
    let now = now();
    let mut key = ReadKey::open(ctx, name);
    let holds = key.holds()?;
    let waiting = waiters::queued(ctx.selected_db(), args.key_bytes()) as i64;
    reply_lock_state(ctx, holds, waiting, now);
    Ok(())
}

/// LOCK.INFO's reply for `holds` (`None`: no key) with `waiting` clients queued, at `now`:
/// nil for a free key. Holders past their expiry are left out, whether or not a write dropped
/// them yet.
pub fn reply_lock_state(ctx: Ctx, holds: Option<Holds>, waiting: i64, now: Millis) {
    let Some(mut holds) = holds else {
        ctx.reply_null();
        return;
    };
    holds.expire(now);
    // As PTTL: -1 for a lock an admin made permanent.
    let ttl = |holder: &Holder| holder.expires_at.map_or(-1, |at| lock::ttl_left(at, now));
    let mode = holds.mode();
    if let (Mode::Exclusive, [holder]) = (mode, holds.holders.as_slice()) {
        let session = holder.session.is_some();
        ctx.reply_map(5 + usize::from(session));
        reply_holder(ctx, holder, ttl(holder));
        ctx.reply_simple(c"waiters");
        ctx.reply_integer(waiting);
        if session {
            ctx.reply_simple(c"session");
            ctx.reply_integer(1);
        }
        return;
    }
    if holds.is_free() {
        ctx.reply_null();
        return;
    }
    let limit = match mode {
        Mode::Limit(n) => Some(n),
        _ => None,
    };
    ctx.reply_map(3 + usize::from(limit.is_some()));
    ctx.reply_simple(c"mode");
    ctx.reply_simple(if limit.is_some() { c"limit" } else { c"shared" });
    if let Some(n) = limit {
        ctx.reply_simple(c"limit");
        ctx.reply_integer(n.into());
    }
    ctx.reply_simple(c"holders");
    // SAFETY: ctx is the running command's context.
    unsafe { rm!(RedisModule_ReplyWithArray)(ctx.0, holds.holders.len() as std::os::raw::c_long) };
    for holder in &holds.holders {
        ctx.reply_map(5);
        reply_holder(ctx, holder, ttl(holder));
        ctx.reply_simple(c"session");
        ctx.reply_integer(holder.session.is_some().into());
    }
    ctx.reply_simple(c"waiters");
    ctx.reply_integer(waiting);
}

/// The four fields every holder shows in LOCK.INFO, as pairs: owner, count, ttl (ms left, -1
/// for a permanent lock), token.
fn reply_holder(ctx: Ctx, holder: &Holder, ttl: i64) {
    ctx.reply_simple(c"owner");
    ctx.reply_bytes(&holder.owner);
    ctx.reply_simple(c"count");
    ctx.reply_integer(holder.count.into());
    ctx.reply_simple(c"ttl");
    ctx.reply_integer(ttl);
    ctx.reply_simple(c"token");
    ctx.reply_integer(holder.token as i64);
}
