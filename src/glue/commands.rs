//! The LOCK.* commands: parse -> now -> open key -> core transition -> write + expiry ->
//! replicate -> reply. Each command is one atomic step on the server.

use redis_module::raw;

use super::blocking::BlockedClient;
use super::configs;
use super::context::{now, Ctx};
use super::entry::{command_entry, Args};
use super::handoff::{hand_over, Freed, Handling};
use super::keys::LockKey;
use super::replicate;
use super::signals::Event;
use super::stats::{self, Counter};
use super::token_counter::{observe, with_tokens};
use super::waiters::{self, KeyRef};
use crate::core::error::{Command, LockError};
use crate::core::lock::{self, Acquire, Lock, Release, Replayed, Snapshot};
use crate::core::request::{
    parse_acquire, parse_apply, parse_info, parse_reenter, parse_release, parse_renew, parse_tokens,
};
use crate::core::Millis;

command_entry!(acquire_entry, Command::Acquire, acquire);
command_entry!(reenter_entry, Command::Reenter, reenter);
command_entry!(release_entry, Command::Release, release);
command_entry!(renew_entry, Command::Renew, renew);
command_entry!(info_entry, Command::Info, info);
command_entry!(apply_entry, Command::Apply, apply);
command_entry!(tokens_entry, Command::Tokens, tokens);

/// The key argument; `Args` always has one when the parser accepted the call.
fn key_name(args: &Args, command: Command) -> Result<*mut raw::RedisModuleString, LockError> {
    args.key().ok_or(LockError::Arity(command))
}

/// LOCK.ACQUIRE key owner ttl [WAIT timeout] -> fencing token | nil
fn acquire(ctx: Ctx, args: &Args) -> Result<(), LockError> {
    let request = parse_acquire(args.bytes(), &configs::limits())?;
    let name = key_name(args, Command::Acquire)?;
    let now = now();
    let mut key = LockKey::open_writable(ctx, name);
    let db = ctx.selected_db();
    let key_bytes = args.bytes()[0];
    let mut queued = waiters::queued(db, key_bytes);
    if queued > 0 && key.lock()?.is_none() {
        // Freed a moment ago (deleted or expired before our timer ran): it is the waiters'.
        let freed = super::handoff::why_gone(db, key_bytes);
        hand_over(ctx, &mut key, name, db, key_bytes, now, freed);
        queued = waiters::queued(db, key_bytes);
    }
    let held = key.lock()?;
    let outcome = with_tokens(|tokens| {
        lock::acquire(held, request.owner, request.ttl, now, tokens, queued > 0)
    })
    .map_err(|error| LockError::from_transition(Command::Acquire, error))?;
    match outcome {
        Acquire::Granted(lock, expires_at) => {
            replicate::lock_state(ctx, name, &lock, Some(expires_at));
            ctx.reply_integer(lock.token() as i64);
            key.store(lock, Some(expires_at));
            key.notify(Event::Acquire);
            key.notify(Event::Expire);
            stats::count(Counter::Acquisitions);
        }
        Acquire::Reentered {
            token, expires_at, ..
        } => {
            write_back_in_place(ctx, &mut key, name, Some(expires_at))?;
            ctx.reply_integer(token as i64);
            key.notify(Event::Reenter);
            key.notify(Event::Expire);
            stats::count(Counter::Reentries);
        }
        Acquire::Busy => {
            stats::count(Counter::Contended);
            match request.wait {
                Some(timeout) if may_block(ctx) => {
                    let at = KeyRef {
                        db,
                        name: key_bytes.into(),
                    };
                    wait_in_line(ctx, at, (request.owner, request.ttl, timeout), &key)?;
                }
                _ => ctx.reply_null(),
            }
        }
    }
    Ok(())
}

/// Blocks the caller behind everyone already waiting for the lock at `at`.
fn wait_in_line(
    ctx: Ctx,
    at: KeyRef,
    wait: (&[u8], u64, u64),
    key: &LockKey,
) -> Result<(), LockError> {
    let max = configs::max_waiters();
    if waiters::queued(at.db, &at.name) as u64 >= max {
        return Err(LockError::TooManyWaiters(max));
    }
    match BlockedClient::block(ctx) {
        Some(client) => waiters::join(ctx, at, wait, client, key.expiry()),
        None => ctx.reply_null(),
    }
    Ok(())
}

/// MULTI/EXEC, Lua and AOF loading cannot block: there WAIT is a plain try.
fn may_block(ctx: Ctx) -> bool {
    !ctx.has_flag(raw::REDISMODULE_CTX_FLAGS_DENY_BLOCKING)
}

/// LOCK.REENTER key owner [ttl] -> new hold count | nil
fn reenter(ctx: Ctx, args: &Args) -> Result<(), LockError> {
    let request = parse_reenter(args.bytes(), &configs::limits())?;
    let name = key_name(args, Command::Reenter)?;
    let mut key = LockKey::open_writable(ctx, name);
    let held = key.lock()?;
    match lock::reenter(held, request.owner, request.ttl, now())
        .map_err(|error| LockError::from_transition(Command::Reenter, error))?
    {
        Some(reentry) => {
            write_back_in_place(ctx, &mut key, name, reentry.expires_at)?;
            ctx.reply_integer(reentry.count.into());
            key.notify(Event::Reenter);
            stats::count(Counter::Reentries);
            if reentry.expires_at.is_some() {
                key.notify(Event::Expire);
            }
        }
        None => ctx.reply_null(),
    }
    Ok(())
}

/// LOCK.RELEASE key owner -> remaining hold count | nil
fn release(ctx: Ctx, args: &Args) -> Result<(), LockError> {
    let request = parse_release(args.bytes(), &configs::limits())?;
    let name = key_name(args, Command::Release)?;
    let mut key = LockKey::open_writable(ctx, name);
    let held = key.lock()?;
    match lock::release(held, request.owner) {
        Release::NotHeld => ctx.reply_null(),
        Release::StillHeld { count } => {
            write_back_in_place(ctx, &mut key, name, None)?;
            ctx.reply_integer(count.into());
            key.notify(Event::Release);
            stats::count(Counter::Releases);
        }
        Release::Freed => {
            ctx.reply_integer(0);
            stats::count(Counter::Releases);
            let _own_change = Handling::begin();
            key.notify(Event::Release);
            if !hand_over_waiting(ctx, &mut key, args) {
                key.delete();
                replicate::deletion(ctx, name);
                key.notify(Event::Del);
            }
        }
    }
    Ok(())
}

/// Hands a freed lock to the longest waiter of its key, if anyone waits; true if handed.
fn hand_over_waiting(ctx: Ctx, key: &mut LockKey, args: &Args) -> bool {
    let (Some(&key_bytes), Some(name)) = (args.bytes().first(), args.key()) else {
        return false;
    };
    let db = ctx.selected_db();
    waiters::queued(db, key_bytes) > 0
        && hand_over(ctx, key, name, db, key_bytes, now(), Freed::Released)
}

/// LOCK.RENEW key owner ttl -> 1 | 0
fn renew(ctx: Ctx, args: &Args) -> Result<(), LockError> {
    let request = parse_renew(args.bytes(), &configs::limits())?;
    let name = key_name(args, Command::Renew)?;
    let mut key = LockKey::open_writable(ctx, name);
    let held = key.lock()?;
    match lock::renew(held.as_deref(), request.owner, request.ttl, now()) {
        Some(expires_at) => {
            write_back_in_place(ctx, &mut key, name, Some(expires_at))?;
            ctx.reply_integer(1);
            key.notify(Event::Renew);
            key.notify(Event::Expire);
            stats::count(Counter::Renewals);
        }
        None => ctx.reply_integer(0),
    }
    Ok(())
}

/// LOCK.INFO key -> nil | {owner, count, ttl, token, waiters}
fn info(ctx: Ctx, args: &Args) -> Result<(), LockError> {
    parse_info(args.bytes())?;
    let name = key_name(args, Command::Info)?;
    let now = now();
    let mut key = LockKey::open_readable(ctx, name);
    // As PTTL: -1 for a lock an admin made permanent.
    let ttl = key.expiry().map_or(-1, |at| lock::ttl_left(at, now));
    let Some(lock) = key.lock()? else {
        ctx.reply_null();
        return Ok(());
    };
    ctx.reply_map(5);
    ctx.reply_simple(c"owner");
    ctx.reply_bytes(lock.owner());
    ctx.reply_simple(c"count");
    ctx.reply_integer(lock.count().into());
    ctx.reply_simple(c"ttl");
    ctx.reply_integer(ttl);
    ctx.reply_simple(c"token");
    ctx.reply_integer(lock.token() as i64);
    ctx.reply_simple(c"waiters");
    let waiting = waiters::queued(ctx.selected_db(), args.bytes()[0]);
    ctx.reply_integer(waiting as i64);
    Ok(())
}

/// LOCK.APPLY key owner count expires_at token counter -> OK
///
/// Internal: replays a master's lock state on a replica or from the AOF, exactly as given.
fn apply(ctx: Ctx, args: &Args) -> Result<(), LockError> {
    refuse_unless_replayed(ctx, Command::Apply)?;
    let request = parse_apply(args.bytes())?;
    let name = key_name(args, Command::Apply)?;
    let mut key = LockKey::open_writable(ctx, name);
    let before = match key.lock() {
        Ok(Some(lock)) => Some((lock.count(), lock.token())),
        Ok(None) => None,
        Err(_) => {
            // The master replaced whatever this key held; follow it.
            key.delete();
            None
        }
    };
    let before = before.map(|(count, token)| Snapshot {
        count,
        token,
        expires_at: key.expiry(),
    });
    observe(request.token.max(request.counter));
    let after = Snapshot {
        count: request.count,
        token: request.token,
        expires_at: (request.expires_at > 0).then_some(request.expires_at),
    };
    let lock = Lock::boxed(request.owner, request.count, request.token);
    key.store(lock, after.expires_at);
    notify_replayed(&key, before, after);
    // A replica's own AOF learns of the change only if we pass it on.
    replicate::verbatim(ctx);
    ctx.reply_simple(c"OK");
    Ok(())
}

/// A replica publishes the events its master did for the change it replays.
fn notify_replayed(key: &LockKey, before: Option<Snapshot>, after: Snapshot) {
    let event = match lock::classify_replay(before, after) {
        Replayed::Acquired => Event::Acquire,
        Replayed::Reentered => Event::Reenter,
        Replayed::Released => Event::Release,
        Replayed::Renewed => Event::Renew,
        Replayed::Unchanged => return,
    };
    key.notify(event);
    let expiry_moved = before.is_none_or(|before| before.expires_at != after.expires_at);
    if after.expires_at.is_some() && expiry_moved {
        key.notify(Event::Expire);
    }
}

/// LOCK.TOKENS counter -> OK
///
/// Internal: raises the token counter to a master's. Written to the AOF at every fork, so a
/// rewritten AOF without an RDB preamble still knows the tokens of locks long released.
fn tokens(ctx: Ctx, args: &Args) -> Result<(), LockError> {
    refuse_unless_replayed(ctx, Command::Tokens)?;
    observe(parse_tokens(args.bytes())?);
    replicate::verbatim(ctx);
    ctx.reply_simple(c"OK");
    Ok(())
}

/// Internal commands come only from a master's replication stream or the AOF.
fn refuse_unless_replayed(ctx: Ctx, command: Command) -> Result<(), LockError> {
    let replayed = raw::REDISMODULE_CTX_FLAGS_REPLICATED | raw::REDISMODULE_CTX_FLAGS_LOADING;
    if ctx.has_flag(replayed) {
        Ok(())
    } else {
        Err(LockError::InternalOnly(command))
    }
}

/// After an in-place change: the key's expiry moves to `new_expiry` (if any), the new state
/// is propagated, and waiters are woken at the new expiry if it came earlier.
fn write_back_in_place(
    ctx: Ctx,
    key: &mut LockKey,
    name: *mut raw::RedisModuleString,
    new_expiry: Option<Millis>,
) -> Result<(), LockError> {
    key.mark_changed();
    if let Some(at) = new_expiry {
        key.set_expiry(at);
    }
    let expires_at = key.expiry();
    if let Some(lock) = key.lock()? {
        replicate::lock_state(ctx, name, lock, expires_at);
    }
    if let (Some(at), true) = (new_expiry, waiters::anyone_waiting()) {
        // SAFETY: name is the live key argument of the running command.
        let bytes = unsafe { super::entry::string_bytes(name) };
        waiters::schedule_check(ctx, ctx.selected_db(), bytes, at);
    }
    Ok(())
}
