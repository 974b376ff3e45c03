//! What the commands share: finishing a change (store, replicate, reply, notify, count), the
//! answers `HELD n` settles without a change, looking at a waited-for key again, and the checks
//! of the internal commands.

use redis_module::raw;

use crate::core::error::{Command, LockError};
use crate::core::state::holds::{expect_count, Expected, Holds, Step};
use crate::core::Millis;
use crate::glue::effects::keys::LockKey;
use crate::glue::effects::replicate;
use crate::glue::effects::signals::Event;
use crate::glue::effects::stats::{self, Counter};
use crate::glue::effects::token_counter::Beyond;
use crate::glue::server::context::Ctx;
use crate::glue::server::entry::Args;
use crate::glue::waiting::{handoff, waiters};

/// The key argument; `Args` always has one when the parser accepted the call.
pub fn key_name(args: &Args, command: Command) -> Result<*mut raw::RedisModuleString, LockError> {
    args.key().ok_or_else(|| LockError::Arity(command))
}

/// One finished change of a key's holds, in the order every command keeps: the key is stored,
/// the new state replicated as an effect, the caller answered `reply`, `events` published (the
/// first is the command's own; `Event::Expire` follows where the expiry moved) and `counter`
/// counted.
pub fn commit(
    ctx: Ctx,
    key: &mut LockKey,
    name: *mut raw::RedisModuleString,
    holds: &Holds,
    reply: i64,
    events: &[Event],
    counter: Counter,
) {
    key.put(holds);
    replicate::holds_state(ctx, name, holds);
    ctx.reply_integer(reply);
    for &event in events {
        key.notify(event);
    }
    stats::count(counter);
}

/// How many clients wait for the key of `args` in the selected database; the key's name and
/// the database are read only when anyone waits anywhere (the usual answer, 0, is one load).
#[inline]
pub fn queued_for(ctx: Ctx, args: &Args) -> usize {
    if waiters::anyone_waiting() {
        waiters::queued(ctx.selected_db(), args.key_bytes())
    } else {
        0
    }
}

/// What `HELD n` settles without a change: the answer of an earlier attempt of the same call,
/// nil for a hold that is gone, or a refusal. `None`: the call goes ahead.
pub fn settled_by_held(
    holds: &Holds,
    owner: &[u8],
    held: Option<u32>,
    step: Step,
) -> Option<Expected> {
    match expect_count(holds, owner, held, step) {
        Expected::Proceed => None,
        settled => Some(settled),
    }
}

/// The reply of a call `HELD n` settled: the count it already has, nil, or the error.
pub fn reply_settled(ctx: Ctx, command: Command, settled: Expected) -> Result<(), LockError> {
    match settled {
        Expected::Proceed | Expected::NotHeld => ctx.reply_null(),
        Expected::Repeated { count } => ctx.reply_integer(count.into()),
        Expected::Mismatch { held, expected } => {
            return Err(LockError::HeldMismatch {
                command,
                held,
                expected,
            })
        }
    }
    Ok(())
}

/// If anyone waits for the key, it is looked at again when its next holder expires.
pub fn reschedule_check(ctx: Ctx, db: i32, key_bytes: &[u8], holds: &Holds, now: Millis) {
    reschedule_check_at(ctx, db, key_bytes, holds.next_expiry(), now);
}

/// `reschedule_check` for the plain lock of `args`' key; its name is read only if anyone waits.
#[inline]
pub fn reschedule_plain(ctx: Ctx, args: &Args, next_expiry: Option<Millis>, now: Millis) {
    if waiters::anyone_waiting() {
        reschedule_check_at(ctx, ctx.selected_db(), args.key_bytes(), next_expiry, now);
    }
}

fn reschedule_check_at(
    ctx: Ctx,
    db: i32,
    key_bytes: &[u8],
    next_expiry: Option<Millis>,
    now: Millis,
) {
    if let (Some(at), true) = (next_expiry, waiters::anyone_waiting()) {
        handoff::schedule_check(ctx, db, key_bytes, at, now);
    }
}

/// MULTI/EXEC, Lua and AOF loading cannot block: there WAIT is a plain try (and LOCK.OBSERVE
/// answers at once).
pub fn may_block(ctx: Ctx) -> bool {
    !ctx.has_flag(raw::REDISMODULE_CTX_FLAGS_DENY_BLOCKING)
}

/// How far to trust a replayed state's tokens: a master's stream is followed whole; the AOF
/// (a file, maybe edited) is held to the ceiling.
pub fn replayed_from(ctx: Ctx) -> Beyond {
    if ctx.has_flag(raw::REDISMODULE_CTX_FLAGS_REPLICATED) {
        Beyond::Follow
    } else {
        Beyond::Ignore
    }
}

/// Internal commands come only from a master's replication stream or the AOF.
pub fn refuse_unless_replayed(ctx: Ctx, command: Command) -> Result<(), LockError> {
    let replayed = raw::REDISMODULE_CTX_FLAGS_REPLICATED | raw::REDISMODULE_CTX_FLAGS_LOADING;
    if ctx.has_flag(replayed) {
        Ok(())
    } else {
        Err(LockError::InternalOnly(command))
    }
}
