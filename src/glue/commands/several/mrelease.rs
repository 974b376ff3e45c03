//! LOCK.MRELEASE numkeys key [key ...] owner: LOCK.RELEASE on each key, in one call.

use redis_module::raw;

use crate::core::error::{Command, LockError};
use crate::core::several::parse_mrelease;
use crate::core::state::holds::{self, Released};
use crate::glue::commands::several::{all_args, keys_asked, open_all};
use crate::glue::commands::spec::{Arg, ArgKind, CommandSpec, Help, KEYS_AFTER_NUMKEYS, OWNER};
use crate::glue::effects::replicate;
use crate::glue::effects::signals::Event;
use crate::glue::effects::stats::{self, Counter};
use crate::glue::server::api::rm;
use crate::glue::server::context::{now, Ctx};
use crate::glue::server::entry::{command_entry, Args};
use crate::glue::waiting::handoff::{settle_released, Handling};
use crate::glue::waiting::session_index;

pub const NUMKEYS: Arg = Arg::integer(c"numkeys");
pub const KEYS: Arg = Arg {
    name: c"key",
    kind: ArgKind::Keys,
    token: None,
    optional: false,
};

pub static SPEC: CommandSpec = CommandSpec {
    name: c"lock.mrelease",
    entry: Some(mrelease_entry),
    flags: c"write fast getkeys-api",
    acl: c"write fast",
    arity: -4,
    key_flags: raw::REDISMODULE_CMD_KEY_RW
        | raw::REDISMODULE_CMD_KEY_ACCESS
        | raw::REDISMODULE_CMD_KEY_DELETE
        | KEYS_AFTER_NUMKEYS,
    summary: c"Releases the owner's hold on each of several locks (one count each)",
    complexity: c"O(1) for each of the N keys: O(N)",
    args: &[NUMKEYS, KEYS, OWNER],
    help: Some(Help {
        syntax: c"LOCK.MRELEASE numkeys key [key ...] owner",
        line: c"    Releases each lock the owner holds; replies each remaining count, or nil.",
    }),
};

command_entry!(mrelease_entry, Command::MRelease, mrelease);

/// LOCK.MRELEASE numkeys key [key ...] owner -> [count | nil, ...] in key order
fn mrelease(ctx: Ctx, args: &Args) -> Result<(), LockError> {
    if keys_asked(ctx, args) {
        return Ok(());
    }
    let all = all_args(args);
    let request = parse_mrelease(&all)?;
    let _own_change = Handling::begin();
    let now = now();
    let db = ctx.selected_db();
    let mut open = open_all(ctx, &request.keys)?;
    // SAFETY: ctx is the running command's context; the elements follow.
    unsafe { rm!(RedisModule_ReplyWithArray)(ctx.0, open.len() as _) };
    for (key_bytes, opened) in request.keys.iter().zip(&mut open) {
        let Some(mut holds) = opened.holds.take() else {
            ctx.reply_null();
            continue;
        };
        holds.expire(now);
        let session = holds.holder(request.owner).and_then(|h| h.session);
        let name = opened.name_ptr();
        match holds::release(&mut holds, request.owner, now) {
            Released::NotHeld => ctx.reply_null(),
            Released::StillHeld { count } => {
                opened.key.put(&holds);
                replicate::holds_state(ctx, name, &holds);
                ctx.reply_integer(count.into());
                opened.key.notify(Event::Release);
                stats::count(Counter::Releases);
            }
            Released::Left => {
                ctx.reply_integer(0);
                stats::count(Counter::Releases);
                opened.key.notify(Event::Release);
                if let Some(client) = session {
                    session_index::unregister(client, db, key_bytes);
                }
                settle_released(ctx, &mut opened.key, name, db, key_bytes, &mut holds, now);
            }
        }
    }
    Ok(())
}
