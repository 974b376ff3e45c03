//! LOCK.RENEW key owner ttl: resets the expiry of a lock the owner holds to exactly `ttl` ms.

use redis_module::raw;

use crate::core::error::{Command, LockError};
use crate::core::request::parse_renew;
use crate::core::state::holds;
use crate::glue::commands::finish::{commit, key_name, reschedule_check};
use crate::glue::commands::spec::{CommandSpec, Help, KEY, OWNER, TTL};
use crate::glue::effects::keys::LockKey;
use crate::glue::effects::signals::Event;
use crate::glue::effects::stats::Counter;
use crate::glue::server::configs;
use crate::glue::server::context::{now, Ctx};
use crate::glue::server::entry::{command_entry, Args};
use crate::glue::waiting::handoff::Handling;

pub static SPEC: CommandSpec = CommandSpec {
    name: c"lock.renew",
    entry: Some(renew_entry),
    flags: c"write fast",
    acl: c"write fast",
    arity: 4,
    key_flags: raw::REDISMODULE_CMD_KEY_RW | raw::REDISMODULE_CMD_KEY_UPDATE,
    summary: c"Resets the expiry of a lock the owner holds",
    complexity: c"O(1)",
    args: &[KEY, OWNER, TTL],
    help: Some(Help {
        syntax: c"LOCK.RENEW key owner ttl",
        line: c"    Resets the expiry of a lock the owner holds; replies 1, or 0 if not held.",
    }),
};

command_entry!(renew_entry, Command::Renew, renew);

/// LOCK.RENEW key owner ttl -> 1 | 0
fn renew(ctx: Ctx, args: &Args) -> Result<(), LockError> {
    let request = parse_renew(args.bytes(), &configs::limits())?;
    let name = key_name(args, Command::Renew)?;
    let _own_change = Handling::begin();
    let mut key = LockKey::open_writable(ctx, name);
    let Some(mut holds) = key.holds()? else {
        ctx.reply_integer(0);
        return Ok(());
    };
    let now = now();
    match holds::renew(&mut holds, request.owner, request.ttl, now) {
        Some(_) => {
            let events = [Event::Renew, Event::Expire];
            commit(ctx, &mut key, name, &holds, 1, &events, Counter::Renewals);
            reschedule_check(ctx, ctx.selected_db(), args.key_bytes(), &holds, now);
        }
        None => ctx.reply_integer(0),
    }
    Ok(())
}
