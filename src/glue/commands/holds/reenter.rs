//! LOCK.REENTER key owner [ttl] [HELD count]: one more hold of a lock the owner holds.

use redis_module::raw;

use crate::core::error::{Command, LockError};
use crate::core::request::parse_reenter;
use crate::core::state::holds::{self, Step};
use crate::glue::commands::finish::{
    commit, key_name, reply_settled, reschedule_check, settled_by_held,
};
use crate::glue::commands::spec::{Arg, CommandSpec, Help, HELD, KEY, OWNER, TTL};
use crate::glue::effects::keys::LockKey;
use crate::glue::effects::signals::Event;
use crate::glue::effects::stats::Counter;
use crate::glue::server::configs;
use crate::glue::server::context::{now, Ctx};
use crate::glue::server::entry::{command_entry, Args};
use crate::glue::waiting::handoff::Handling;

pub static SPEC: CommandSpec = CommandSpec {
    name: c"lock.reenter",
    entry: Some(reenter_entry),
    flags: c"write fast",
    acl: c"write fast",
    arity: -3,
    // As INCR: replies the stored count it changed.
    key_flags: raw::REDISMODULE_CMD_KEY_RW
        | raw::REDISMODULE_CMD_KEY_ACCESS
        | raw::REDISMODULE_CMD_KEY_UPDATE,
    summary: c"Adds one hold to a lock the owner holds; replies the new hold count",
    complexity: c"O(1)",
    args: &[
        KEY,
        OWNER,
        Arg {
            optional: true,
            ..TTL
        },
        HELD,
    ],
    help: Some(Help {
        syntax: c"LOCK.REENTER key owner [ttl] [HELD count]",
        line: c"    Adds a hold to a lock the owner holds; replies the new count, or nil.",
    }),
};

command_entry!(reenter_entry, Command::Reenter, reenter);

/// LOCK.REENTER key owner [ttl] -> new hold count | nil
fn reenter(ctx: Ctx, args: &Args) -> Result<(), LockError> {
    let request = parse_reenter(args.bytes(), &configs::limits())?;
    let name = key_name(args, Command::Reenter)?;
    let _own_change = Handling::begin();
    let mut key = LockKey::open_writable(ctx, name);
    let Some(mut holds) = key.holds()? else {
        ctx.reply_null();
        return Ok(());
    };
    let now = now();
    holds.expire(now);
    if let Some(settled) = settled_by_held(&holds, request.owner, request.held, Step::Up) {
        return reply_settled(ctx, Command::Reenter, settled);
    }
    match holds::reenter(&mut holds, request.owner, request.ttl, now)
        .map_err(|error| LockError::from_hold(Command::Reenter, error))?
    {
        Some(count) => {
            let events: &[Event] = if request.ttl.is_some() {
                &[Event::Reenter, Event::Expire]
            } else {
                &[Event::Reenter]
            };
            commit(
                ctx,
                &mut key,
                name,
                &holds,
                count.into(),
                events,
                Counter::Reentries,
            );
            if request.ttl.is_some() {
                reschedule_check(ctx, ctx.selected_db(), args.key_bytes(), &holds, now);
            }
        }
        None => ctx.reply_null(),
    }
    Ok(())
}
