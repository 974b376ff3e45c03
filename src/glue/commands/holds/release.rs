//! LOCK.RELEASE key owner [HELD count]: drops one hold; with the last, the key is deleted or
//! handed to the first of its waiters (`waiting::handoff`).

use redis_module::raw;

use crate::core::error::{Command, LockError};
use crate::core::monitor::lock_log::HoldKind::{self, Exclusive};
use crate::core::request::{parse_release, ReleaseRequest};
use crate::core::state::holds::{self, Released, Step};
use crate::core::state::plain;
use crate::core::Millis;
use crate::glue::commands::finish::{commit, key_name, queued_for, reply_settled, settled_by_held};
use crate::glue::commands::spec::{CommandSpec, Help, HELD, KEY, OWNER};
use crate::glue::effects::keys::{Found, LockKey};
use crate::glue::effects::monitor;
use crate::glue::effects::replicate;
use crate::glue::effects::signals::Event;
use crate::glue::effects::stats::{self, Counter};
use crate::glue::server::context::{now, Ctx};
use crate::glue::server::entry::{command_entry, Args};
use crate::glue::waiting::handoff::{settle_released, Handling};
use crate::glue::waiting::{session_index, waiters};

pub static SPEC: CommandSpec = CommandSpec {
    name: c"lock.release",
    entry: Some(release_entry),
    flags: c"write fast",
    acl: c"write fast",
    arity: -3,
    // Drops a hold, and with the last one the lock (the key is deleted or handed over): DELETE,
    // which the server does not combine with UPDATE. ACCESS: replies the count.
    key_flags: raw::REDISMODULE_CMD_KEY_RW
        | raw::REDISMODULE_CMD_KEY_ACCESS
        | raw::REDISMODULE_CMD_KEY_DELETE,
    summary: c"Drops one hold of a lock the owner holds; replies the remaining count",
    complexity:
        c"O(1); O(log N) to hand a freed lock to the first of the N clients waiting for the key",
    args: &[KEY, OWNER, HELD],
    help: Some(Help {
        syntax: c"LOCK.RELEASE key owner [HELD count]",
        line: c"    Drops a hold (at 0 the next waiter gets it); replies the count left, or nil.",
    }),
};

command_entry!(release_entry, Command::Release, release);

/// LOCK.RELEASE key owner -> remaining hold count | nil
#[inline(always)]
fn release(ctx: Ctx, args: &Args) -> Result<(), LockError> {
    let request = parse_release(args.bytes())?;
    let name = key_name(args, Command::Release)?;
    let _own_change = Handling::begin();
    let mut key = LockKey::open_writable(ctx, name);
    // The key is opened for writing: if it is there, it is live by the server's clock.
    let lock = match key.found_unexpired()? {
        Found::Empty => {
            ctx.reply_null();
            return Ok(());
        }
        Found::Plain(held) => held.lock,
        Found::Holds => {
            let db = ctx.selected_db();
            return release_holds(ctx, &request, key, name, db, args.key_bytes(), now());
        }
    };
    // A plain lock: decided on its packed form, as `release_holds` would.
    let token = lock.token();
    match plain::release_live(lock, request.owner, request.held) {
        plain::Release::NotHeld => ctx.reply_null(),
        plain::Release::Settled(settled) => return reply_settled(ctx, Command::Release, settled),
        plain::Release::StillHeld { count } => {
            let expires_at = key.expiry();
            key.set_plain_count(count);
            replicate::plain_state(ctx, name, request.owner, count, token, expires_at);
            ctx.reply_integer(count.into());
            key.notify(Event::Release);
            stats::count(Counter::Releases);
        }
        plain::Release::Left if queued_for(ctx, args) == 0 => {
            // The key is gone: `del`, as DEL publishes it (`lock.release` is for a release
            // that leaves the lock there).
            monitor::hold_released(
                || ctx.selected_db(),
                || args.key_bytes(),
                request.owner,
                token,
                Exclusive,
                now(),
            );
            ctx.reply_integer(0);
            stats::count(Counter::Releases);
            key.delete();
            replicate::deletion(ctx, name);
            key.notify(Event::Del);
        }
        // Someone waits: the queue's heads get the key, through the holds.
        plain::Release::Left => {
            let db = ctx.selected_db();
            return release_holds(ctx, &request, key, name, db, args.key_bytes(), now());
        }
    }
    Ok(())
}

/// LOCK.RELEASE through `holds`: every kind of hold, and a freed key someone waits for. Out of
/// line, as `acquire_holds`.
#[inline(never)]
fn release_holds(
    ctx: Ctx,
    request: &ReleaseRequest,
    mut key: LockKey,
    name: *mut raw::RedisModuleString,
    db: i32,
    key_bytes: &[u8],
    now: Millis,
) -> Result<(), LockError> {
    let Some(mut holds) = key.holds()? else {
        ctx.reply_null();
        return Ok(());
    };
    holds.expire(now);
    if let Some(settled) = settled_by_held(&holds, request.owner, request.held, Step::Down) {
        return reply_settled(ctx, Command::Release, settled);
    }
    let session = holds
        .holder(request.owner)
        .and_then(|holder| holder.session);
    let ending = holds
        .holder(request.owner)
        .map(|h| (h.token, HoldKind::of_holder(holds.kind, h.exclusive)));
    match holds::release(&mut holds, request.owner, now) {
        Released::NotHeld => ctx.reply_null(),
        Released::StillHeld { count } => {
            let events = [Event::Release];
            commit(
                ctx,
                &mut key,
                name,
                &holds,
                count.into(),
                &events,
                Counter::Releases,
            );
        }
        Released::Left => {
            if let Some((token, kind)) = ending {
                monitor::hold_released(|| db, || key_bytes, request.owner, token, kind, now);
            }
            ctx.reply_integer(0);
            stats::count(Counter::Releases);
            // Freed with nobody waiting, the key goes: `del` only (settle_released), as above.
            if !holds.is_free() || waiters::queued(db, key_bytes) > 0 {
                key.notify(Event::Release);
            }
            if let Some(client) = session {
                session_index::unregister(client, db, key_bytes);
            }
            settle_released(ctx, &mut key, name, db, key_bytes, &mut holds, now);
        }
    }
    Ok(())
}
