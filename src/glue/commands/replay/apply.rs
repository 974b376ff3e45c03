//! LOCK.APPLY (internal): a master's lock state replayed on a replica or from the AOF.

use redis_module::raw;

use crate::core::error::{Command, LockError};
use crate::core::request::{parse_apply, parse_apply_holds};
use crate::core::state::holds::{self, Holds};
use crate::core::state::lock::{self, Lock, Replayed};
use crate::core::stored::encoding::decode_holds;
use crate::core::Millis;
use crate::glue::commands::finish::{key_name, refuse_unless_replayed, replayed_from};
use crate::glue::commands::spec::CommandSpec;
use crate::glue::effects::keys::LockKey;
use crate::glue::effects::signals::Event;
use crate::glue::effects::{replicate, token_counter};
use crate::glue::server::context::Ctx;
use crate::glue::server::entry::{command_entry, Args};
use crate::glue::waiting::handoff::Handling;

pub static SPEC: CommandSpec = CommandSpec {
    name: c"lock.apply",
    entry: Some(apply_entry),
    flags: c"write",
    acl: c"write",
    arity: -5,
    key_flags: raw::REDISMODULE_CMD_KEY_OW | raw::REDISMODULE_CMD_KEY_UPDATE,
    summary: c"Internal: replays a master's lock state (replication and AOF only)",
    complexity: c"O(1)",
    // Internal, its layout rlock's own business: not documented argument by argument.
    args: &[],
    help: None,
};

command_entry!(apply_entry, Command::Apply, apply);

/// LOCK.APPLY key owner count expires_at token counter -> OK
/// LOCK.APPLY key HOLDS counter state -> OK
///
/// Internal: replays a master's lock state on a replica or from the AOF, exactly as given.
fn apply(ctx: Ctx, args: &Args) -> Result<(), LockError> {
    refuse_unless_replayed(ctx, Command::Apply)?;
    let (after, counter) = if args.bytes().len() == 4 {
        let (counter, state) = parse_apply_holds(args.bytes())?;
        let holds = decode_holds(state, false).map_err(|_| LockError::InvalidApply("state"))?;
        (holds, counter)
    } else {
        let request = parse_apply(args.bytes())?;
        // A count the packed lock cannot hold would be cut down, not kept as the master sent.
        if request.count > lock::MAX_COUNT {
            return Err(LockError::InvalidApply("count"));
        }
        let expires_at = (request.expires_at > 0).then_some(request.expires_at);
        let lock = Lock::boxed(request.owner, request.count, request.token);
        (
            Holds::from_lock(&lock, expires_at),
            request.token.max(request.counter),
        )
    };
    let name = key_name(args, Command::Apply)?;
    let _own_change = Handling::begin();
    let mut key = LockKey::open_writable(ctx, name);
    let before = match key.holds() {
        Ok(before) => before,
        Err(_) => {
            // The master replaced whatever this key held; follow it.
            key.delete();
            None
        }
    };
    // The key follows the master whatever its tokens; the counter only within its bound.
    let mut seen = vec![counter];
    seen.extend(after.holders.iter().map(|holder| holder.token));
    token_counter::take_in(&seen, "a replayed LOCK.APPLY", replayed_from(ctx));
    let before_expiry = before.as_ref().and_then(Holds::key_expiry);
    if let Some((lock, expires_at)) = after.as_plain_lock() {
        // Stored whole, as the master sent it (an admin's PERSIST travels as expiry 0).
        key.store(lock, expires_at);
    } else {
        key.put(&after);
    }
    notify_replayed(&key, before, &after, before_expiry);
    // A replica's own AOF learns of the change only if we pass it on.
    replicate::verbatim(ctx);
    ctx.reply_simple(c"OK");
    Ok(())
}

/// A replica publishes the events its master did for the change it replays.
fn notify_replayed(
    key: &LockKey,
    before: Option<Holds>,
    after: &Holds,
    before_expiry: Option<Millis>,
) {
    let replayed = match &before {
        Some(before) => holds::classify_replay(before, after),
        None => Replayed::Acquired,
    };
    let event = match replayed {
        Replayed::Acquired => Event::Acquire,
        Replayed::Reentered => Event::Reenter,
        Replayed::Released => Event::Release,
        Replayed::Renewed => Event::Renew,
        Replayed::Unchanged => return,
    };
    key.notify(event);
    let after_expiry = after.key_expiry();
    let expiry_moved = before.is_none() || before_expiry != after_expiry;
    if after_expiry.is_some() && expiry_moved {
        key.notify(Event::Expire);
    }
}
