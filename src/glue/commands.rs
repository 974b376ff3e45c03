//! The LOCK.* commands: parse -> now -> open key -> core transition -> write + expiry ->
//! replicate -> reply. Each command is one atomic step on the server.

use redis_module::raw;

use crate::core::encoding::decode_holds;
use crate::core::error::{Command, LockError};
use crate::core::holds::{
    self, expect_count, Acquired, Ask, Expected, Holder, Holds, Mode, Released, Step, Want,
};
use crate::core::lock::{self, Lock, Replayed};
use crate::core::plain;
use crate::core::request::{
    new_owner_fits, parse_acquire, parse_apply, parse_apply_holds, parse_info, parse_reenter,
    parse_release, parse_renew, parse_tokens, AcquireRequest, ReleaseRequest,
};
use crate::core::Millis;
use crate::glue::effects::keys::{Found, LockKey};
use crate::glue::effects::replicate;
use crate::glue::effects::signals::Event;
use crate::glue::effects::stats::{self, Counter};
use crate::glue::effects::token_counter::{self, with_tokens, Beyond};
use crate::glue::server::api::rm;
use crate::glue::server::configs;
use crate::glue::server::context::{now, Ctx};
use crate::glue::server::entry::{command_entry, Args};
use crate::glue::waiting::blocking;
use crate::glue::waiting::handoff::{self, settle, settle_released, why_gone, Freed, Handling};
use crate::glue::waiting::session_index;
use crate::glue::waiting::waiters::{self, KeyRef, Wanted};

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

/// LOCK.ACQUIRE key owner ttl [SHARED | LIMIT n] [SESSION] [WAIT timeout] -> token | nil
fn acquire(ctx: Ctx, args: &Args) -> Result<(), LockError> {
    let request = parse_acquire(args.bytes(), &configs::limits())?;
    if request.session && ctx.has_flag(raw::REDISMODULE_CTX_FLAGS_LUA) {
        // EVAL and FCALL run on the script engine's client, which never disconnects.
        return Err(LockError::SessionInScript);
    }
    let name = key_name(args, Command::Acquire)?;
    let now = now();
    let _own_change = Handling::begin();
    let mut key = LockKey::open_writable(ctx, name);
    let db = ctx.selected_db();
    let queued = queued_for(db, args);
    if request.want == Want::Exclusive && !request.session && queued == 0 {
        let held = match key.found()? {
            Found::Empty => None,
            Found::Plain(held) => Some(held),
            Found::Holds => {
                let key_bytes = args.key_bytes();
                return acquire_holds(ctx, &request, key, name, db, key_bytes, now, 0);
            }
        };
        // A new holder's owner must fit lock.max-owner-bytes (a holder's own reentry need not).
        if !plain::holds_live(held, request.owner, now) {
            new_owner_fits(request.owner, &configs::limits())?;
        }
        let outcome = with_tokens(|tokens| {
            plain::acquire(held, request.owner, request.ttl, request.held, now, tokens)
        })
        .map_err(|error| LockError::from_hold(Command::Acquire, error))?;
        return acquire_plain(ctx, args, &request, &mut key, name, db, outcome);
    }
    let key_bytes = args.key_bytes();
    acquire_holds(ctx, &request, key, name, db, key_bytes, now, queued)
}

/// How many clients wait for the key of `args`; its name is read only when anyone waits.
fn queued_for(db: i32, args: &Args) -> usize {
    if waiters::anyone_waiting() {
        waiters::queued(db, args.key_bytes())
    } else {
        0
    }
}

/// LOCK.ACQUIRE on a free or plain key nobody waits for, as `plain::acquire` decided: the same
/// writes, replies, events and counts as `acquire_holds` makes for that case.
fn acquire_plain(
    ctx: Ctx,
    args: &Args,
    request: &AcquireRequest,
    key: &mut LockKey,
    name: *mut raw::RedisModuleString,
    db: i32,
    outcome: plain::Acquire,
) -> Result<(), LockError> {
    match outcome {
        plain::Acquire::Granted { token, expires_at } => {
            key.store(Lock::boxed(request.owner, 1, token), Some(expires_at));
            replicate::plain_state(ctx, name, request.owner, 1, token, Some(expires_at));
            ctx.reply_integer(token as i64);
            key.notify(Event::Acquire);
            key.notify(Event::Expire);
            stats::count(Counter::Acquisitions);
            reschedule_plain(ctx, db, args, Some(expires_at));
        }
        plain::Acquire::Reentered {
            token,
            count,
            expires_at,
        } => {
            key.set_plain_count(count);
            key.move_expiry(expires_at);
            replicate::plain_state(ctx, name, request.owner, count, token, expires_at);
            ctx.reply_integer(token as i64);
            key.notify(Event::Reenter);
            key.notify(Event::Expire);
            stats::count(Counter::Reentries);
            reschedule_plain(ctx, db, args, expires_at);
        }
        plain::Acquire::Busy { expires_at } => {
            busy(ctx, request, db, args.key_bytes(), expires_at)?;
        }
        plain::Acquire::Repeated { token } => ctx.reply_integer(token as i64),
        plain::Acquire::Settled(settled) => return reply_settled(ctx, Command::Acquire, settled),
    }
    Ok(())
}

/// LOCK.ACQUIRE through `holds`: every kind of hold, and keys that someone waits for. Kept out
/// of line, so that the plain path does not carry its stack frame.
#[allow(clippy::too_many_arguments)]
#[inline(never)]
fn acquire_holds(
    ctx: Ctx,
    request: &AcquireRequest,
    mut key: LockKey,
    name: *mut raw::RedisModuleString,
    db: i32,
    key_bytes: &[u8],
    now: Millis,
    mut queued: usize,
) -> Result<(), LockError> {
    let mut holds = key.holds()?.unwrap_or_default();
    if queued > 0 {
        // Holds gone a moment ago (deleted, expired or their session's connection closed
        // before our timer ran) are the waiters' first.
        let closed = key.sessions_closed() > 0;
        let was_free = holds.is_free() && !closed;
        let expired = holds.expire(now);
        if was_free || expired > 0 || closed {
            let freed = if was_free {
                why_gone(db, key_bytes)
            } else if expired > 0 {
                Freed::Expired
            } else {
                Freed::Released
            };
            let changed = expired > 0 || closed;
            settle(
                ctx, &mut key, name, db, key_bytes, &mut holds, now, freed, changed,
            );
            queued = waiters::queued(db, key_bytes);
        }
    }
    // SAFETY: ctx is the running command's context.
    let session = request
        .session
        .then(|| unsafe { rm!(RedisModule_GetClientId)(ctx.0) });
    let ask = Ask {
        owner: request.owner,
        want: request.want,
        ttl: request.ttl,
        session,
    };
    // On an error nothing is stored: the holds read are changed in place.
    let mut after = holds;
    after.expire(now);
    if after.holder(request.owner).is_none() {
        new_owner_fits(request.owner, &configs::limits())?;
    }
    match expect_count(&after, request.owner, request.held, Step::Up) {
        Expected::Proceed => {}
        Expected::Repeated { .. } => {
            // As without HELD, a mode this owner cannot reenter in is refused.
            after
                .may_reenter(request.owner, request.want)
                .map_err(|error| LockError::from_hold(Command::Acquire, error))?;
            let token = after.holder(request.owner).map_or(0, |holder| holder.token);
            ctx.reply_integer(token as i64);
            return Ok(());
        }
        Expected::NotHeld => {
            ctx.reply_null();
            return Ok(());
        }
        settled @ Expected::Mismatch { .. } => {
            return reply_settled(ctx, Command::Acquire, settled)
        }
    }
    let outcome = with_tokens(|tokens| holds::acquire(&mut after, &ask, now, tokens, queued > 0))
        .map_err(|error| LockError::from_hold(Command::Acquire, error))?;
    match outcome {
        Acquired::Granted { token } => {
            key.put(&after);
            replicate::holds_state(ctx, name, &after);
            ctx.reply_integer(token as i64);
            key.notify(Event::Acquire);
            key.notify(Event::Expire);
            stats::count(Counter::Acquisitions);
            stats::count_kind(request.want);
            if let Some(client) = session {
                let at = KeyRef {
                    db,
                    name: key_bytes.into(),
                };
                session_index::register(client, at);
            }
            reschedule_check(ctx, db, key_bytes, &after);
        }
        Acquired::Reentered { token, .. } => {
            key.put(&after);
            replicate::holds_state(ctx, name, &after);
            ctx.reply_integer(token as i64);
            key.notify(Event::Reenter);
            key.notify(Event::Expire);
            stats::count(Counter::Reentries);
            reschedule_check(ctx, db, key_bytes, &after);
        }
        Acquired::Busy => busy(ctx, request, db, key_bytes, after.next_expiry())?,
    }
    Ok(())
}

/// The request does not fit now: it waits in line (WAIT, where the caller may block) or gets
/// nil. `next_expiry`: when the key's next holder expires.
#[inline(never)]
fn busy(
    ctx: Ctx,
    request: &AcquireRequest,
    db: i32,
    key_bytes: &[u8],
    next_expiry: Option<Millis>,
) -> Result<(), LockError> {
    stats::count(Counter::Contended);
    match request.wait {
        Some(timeout) if may_block(ctx) => {
            let at = KeyRef {
                db,
                name: key_bytes.into(),
            };
            let wanted = Wanted {
                owner: request.owner,
                ttl: request.ttl,
                want: request.want,
                session: request.session,
                held: request.held,
                timeout_ms: timeout,
            };
            wait_in_line(ctx, at, wanted, next_expiry)
        }
        _ => {
            ctx.reply_null();
            Ok(())
        }
    }
}

/// Blocks the caller behind everyone already waiting for the lock at `at`; the key is looked
/// at again when its next holder expires (`None`: none does).
fn wait_in_line(
    ctx: Ctx,
    at: KeyRef,
    wanted: Wanted,
    next_expiry: Option<Millis>,
) -> Result<(), LockError> {
    let max = configs::max_waiters();
    if waiters::queued(at.db, &at.name) as u64 >= max {
        return Err(LockError::TooManyWaiters(max));
    }
    // The server may refuse to block a client it would not say is unblockable (Valkey 9.1: a
    // RESP3 connection in subscribed mode): a nil would read as a timeout, so say so.
    let client = blocking::block(ctx).ok_or(LockError::CannotBlock)?;
    let (db, name) = (at.db, at.name.clone());
    waiters::join(ctx, at, wanted, client);
    handoff::schedule_check(ctx, db, &name, next_expiry.unwrap_or(i64::MAX));
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
            key.put(&holds);
            replicate::holds_state(ctx, name, &holds);
            ctx.reply_integer(count.into());
            key.notify(Event::Reenter);
            stats::count(Counter::Reentries);
            if request.ttl.is_some() {
                key.notify(Event::Expire);
                reschedule_check(ctx, ctx.selected_db(), args.key_bytes(), &holds);
            }
        }
        None => ctx.reply_null(),
    }
    Ok(())
}

/// LOCK.RELEASE key owner -> remaining hold count | nil
fn release(ctx: Ctx, args: &Args) -> Result<(), LockError> {
    let request = parse_release(args.bytes())?;
    let name = key_name(args, Command::Release)?;
    let now = now();
    let _own_change = Handling::begin();
    let mut key = LockKey::open_writable(ctx, name);
    let db = ctx.selected_db();
    let held = match key.found()? {
        Found::Empty => {
            ctx.reply_null();
            return Ok(());
        }
        Found::Plain(held) => held,
        Found::Holds => return release_holds(ctx, &request, key, name, db, args.key_bytes(), now),
    };
    // A plain lock: decided on its packed form, as `release_holds` would.
    let (token, expires_at) = (held.lock.token(), held.expires_at);
    match plain::release(held, request.owner, request.held, now) {
        plain::Release::NotHeld => ctx.reply_null(),
        plain::Release::Settled(settled) => return reply_settled(ctx, Command::Release, settled),
        plain::Release::StillHeld { count } => {
            key.set_plain_count(count);
            replicate::plain_state(ctx, name, request.owner, count, token, expires_at);
            ctx.reply_integer(count.into());
            key.notify(Event::Release);
            stats::count(Counter::Releases);
        }
        plain::Release::Left if queued_for(db, args) == 0 => {
            ctx.reply_integer(0);
            stats::count(Counter::Releases);
            key.notify(Event::Release);
            key.delete();
            replicate::deletion(ctx, name);
            key.notify(Event::Del);
        }
        // Someone waits: the queue's heads get the key, through the holds.
        plain::Release::Left => {
            return release_holds(ctx, &request, key, name, db, args.key_bytes(), now)
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
    match holds::release(&mut holds, request.owner, now) {
        Released::NotHeld => ctx.reply_null(),
        Released::StillHeld { count } => {
            key.put(&holds);
            replicate::holds_state(ctx, name, &holds);
            ctx.reply_integer(count.into());
            key.notify(Event::Release);
            stats::count(Counter::Releases);
        }
        Released::Left => {
            ctx.reply_integer(0);
            stats::count(Counter::Releases);
            key.notify(Event::Release);
            if let Some(client) = session {
                session_index::unregister(client, db, key_bytes);
            }
            settle_released(ctx, &mut key, name, db, key_bytes, &mut holds, now);
        }
    }
    Ok(())
}

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
    match holds::renew(&mut holds, request.owner, request.ttl, now()) {
        Some(_) => {
            key.put(&holds);
            replicate::holds_state(ctx, name, &holds);
            ctx.reply_integer(1);
            key.notify(Event::Renew);
            key.notify(Event::Expire);
            stats::count(Counter::Renewals);
            reschedule_check(ctx, ctx.selected_db(), args.key_bytes(), &holds);
        }
        None => ctx.reply_integer(0),
    }
    Ok(())
}

/// What `HELD n` settles without a change: the answer of an earlier attempt of the same call,
/// nil for a hold that is gone, or a refusal. `None`: the call goes ahead.
fn settled_by_held(holds: &Holds, owner: &[u8], held: Option<u32>, step: Step) -> Option<Expected> {
    match expect_count(holds, owner, held, step) {
        Expected::Proceed => None,
        settled => Some(settled),
    }
}

/// The reply of a call `HELD n` settled: the count it already has, nil, or the error.
fn reply_settled(ctx: Ctx, command: Command, settled: Expected) -> Result<(), LockError> {
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
fn reschedule_check(ctx: Ctx, db: i32, key_bytes: &[u8], holds: &Holds) {
    reschedule_check_at(ctx, db, key_bytes, holds.next_expiry());
}

/// `reschedule_check` for the plain lock of `args`' key; its name is read only if anyone waits.
fn reschedule_plain(ctx: Ctx, db: i32, args: &Args, next_expiry: Option<Millis>) {
    if waiters::anyone_waiting() {
        reschedule_check_at(ctx, db, args.key_bytes(), next_expiry);
    }
}

fn reschedule_check_at(ctx: Ctx, db: i32, key_bytes: &[u8], next_expiry: Option<Millis>) {
    if let (Some(at), true) = (next_expiry, waiters::anyone_waiting()) {
        handoff::schedule_check(ctx, db, key_bytes, at);
    }
}

/// LOCK.INFO key -> nil | an exclusive lock's {owner, count, ttl, token, waiters} (and
/// `session` 1 for a session hold) | {mode, [limit,] holders: [{owner, count, ttl, token,
/// session}...], waiters}
fn info(ctx: Ctx, args: &Args) -> Result<(), LockError> {
    parse_info(args.bytes())?;
    let name = key_name(args, Command::Info)?;
    let now = now();
    let mut key = LockKey::open_readable(ctx, name);
    let Some(mut holds) = key.holds()? else {
        ctx.reply_null();
        return Ok(());
    };
    // Holders past their expiry are gone, whether or not a write dropped them yet.
    holds.expire(now);
    let waiting = waiters::queued(ctx.selected_db(), args.key_bytes()) as i64;
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
        return Ok(());
    }
    if holds.is_free() {
        ctx.reply_null();
        return Ok(());
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
    Ok(())
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

/// LOCK.TOKENS counter -> OK
///
/// Internal: raises the token counter to a master's. Written to the AOF at every fork, so a
/// rewritten AOF without an RDB preamble still knows the tokens of locks long released.
fn tokens(ctx: Ctx, args: &Args) -> Result<(), LockError> {
    refuse_unless_replayed(ctx, Command::Tokens)?;
    let counter = parse_tokens(args.bytes())?;
    token_counter::take_in(&[counter], "a replayed LOCK.TOKENS", replayed_from(ctx));
    replicate::verbatim(ctx);
    ctx.reply_simple(c"OK");
    Ok(())
}

/// How far to trust a replayed state's tokens: a master's stream is followed whole; the AOF
/// (a file, maybe edited) is held to the ceiling.
fn replayed_from(ctx: Ctx) -> Beyond {
    if ctx.has_flag(raw::REDISMODULE_CTX_FLAGS_REPLICATED) {
        Beyond::Follow
    } else {
        Beyond::Ignore
    }
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
