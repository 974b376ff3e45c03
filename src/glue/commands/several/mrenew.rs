//! LOCK.MRENEW numkeys key [key ...] owner ttl: LOCK.RENEW on each key, in one call (what a
//! watchdog of a several-key lock sends).

use redis_module::raw;

use crate::core::error::{Command, LockError};
use crate::core::several::parse_mrenew;
use crate::core::state::holds;
use crate::glue::commands::finish::reschedule_check;
use crate::glue::commands::several::mrelease::{KEYS, NUMKEYS};
use crate::glue::commands::several::{all_args, keys_asked, open_all};
use crate::glue::commands::spec::{CommandSpec, Help, KEYS_AFTER_NUMKEYS, OWNER, TTL};
use crate::glue::effects::replicate;
use crate::glue::effects::signals::Event;
use crate::glue::effects::stats::{self, Counter};
use crate::glue::server::api::rm;
use crate::glue::server::configs;
use crate::glue::server::context::{now, Ctx};
use crate::glue::server::entry::{command_entry, Args};
use crate::glue::waiting::handoff::Handling;

pub static SPEC: CommandSpec = CommandSpec {
    name: c"lock.mrenew",
    entry: Some(mrenew_entry),
    flags: c"write fast getkeys-api",
    acl: c"write fast",
    arity: -5,
    key_flags: raw::REDISMODULE_CMD_KEY_RW | raw::REDISMODULE_CMD_KEY_UPDATE | KEYS_AFTER_NUMKEYS,
    summary: c"Resets the expiry of each of several locks the owner holds",
    complexity: c"O(1) for each of the N keys: O(N)",
    args: &[NUMKEYS, KEYS, OWNER, TTL],
    help: Some(Help {
        syntax: c"LOCK.MRENEW numkeys key [key ...] owner ttl",
        line: c"    Resets the expiry of each lock the owner holds; replies 1 or 0 per key.",
    }),
};

command_entry!(mrenew_entry, Command::MRenew, mrenew);

/// LOCK.MRENEW numkeys key [key ...] owner ttl -> [1 | 0, ...] in key order
fn mrenew(ctx: Ctx, args: &Args) -> Result<(), LockError> {
    if keys_asked(ctx, args) {
        return Ok(());
    }
    let all = all_args(args);
    let request = parse_mrenew(&all, &configs::limits())?;
    let _own_change = Handling::begin();
    let now = now();
    let db = ctx.selected_db();
    let mut open = open_all(ctx, &request.keys)?;
    // SAFETY: ctx is the running command's context; the elements follow.
    unsafe { rm!(RedisModule_ReplyWithArray)(ctx.0, open.len() as _) };
    for (key_bytes, opened) in request.keys.iter().zip(&mut open) {
        let Some(mut holds) = opened.holds.take() else {
            ctx.reply_integer(0);
            continue;
        };
        match holds::renew(&mut holds, request.owner, request.ttl, now) {
            Some(_) => {
                opened.key.put(&holds);
                replicate::holds_state(ctx, opened.name_ptr(), &holds);
                ctx.reply_integer(1);
                opened.key.notify(Event::Renew);
                opened.key.notify(Event::Expire);
                stats::count(Counter::Renewals);
                reschedule_check(ctx, db, key_bytes, &holds, now);
            }
            None => ctx.reply_integer(0),
        }
    }
    Ok(())
}
