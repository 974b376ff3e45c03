//! LOCK.ACQUIRE key owner ttl [SHARED | LIMIT n] [SESSION] [WAIT timeout] [HELD count]: takes
//! a lock or reenters one's own, or waits in line for it. A free or plain key nobody waits for
//! is decided on the packed plain lock (`core::state::plain`); every other case through `core::state::holds`.

use std::ffi::c_int;

use redis_module::raw::{self, RedisModuleCtx};

use crate::core::error::{Command, LockError};
use crate::core::request::{new_owner_fits, parse_acquire, AcquireRequest};
use crate::core::state::holds::{self, expect_count, Acquired, Ask, Expected, Step, Want};
use crate::core::state::plain;
use crate::core::Millis;
use crate::glue::commands::finish::{
    commit, key_name, may_block, queued_for, reply_settled, reschedule_check, reschedule_plain,
};
use crate::glue::commands::spec::{Arg, ArgKind, CommandSpec, Help, HELD, KEY, OWNER, TTL};
use crate::glue::effects::keys::{Found, LockKey};
use crate::glue::effects::replicate;
use crate::glue::effects::signals::Event;
use crate::glue::effects::stats::{self, Counter};
use crate::glue::effects::token_counter::with_tokens;
use crate::glue::server::api::rm;
use crate::glue::server::configs;
use crate::glue::server::context::{log, now, Ctx};
use crate::glue::server::entry::{command_entry, run_callback, Args};
use crate::glue::server::value::new_plain_lock;
use crate::glue::waiting::handoff::{self, settle, why_gone, Freed, Handling};
use crate::glue::waiting::waiters::{self, KeyRef, Wanted};
use crate::glue::waiting::{blocking, command_filter, session_index, wait_graph};

pub static SPEC: CommandSpec = CommandSpec {
    name: c"lock.acquire",
    entry: Some(acquire_then_filter),
    flags: c"write deny-oom fast blocking",
    acl: c"write fast blocking",
    arity: -4,
    // Creates the lock or adds a hold to it: UPDATE ("new or existing data"; the server takes
    // one of INSERT, UPDATE, DELETE). ACCESS: a reentry replies the stored token.
    key_flags: raw::REDISMODULE_CMD_KEY_RW
        | raw::REDISMODULE_CMD_KEY_ACCESS
        | raw::REDISMODULE_CMD_KEY_UPDATE,
    summary: c"Takes a lock (or reenters one's own), optionally waiting in line; replies the fencing token",
    complexity: c"O(1); O(log N) to wait in line behind the N clients already waiting for the key",
    args: &[
        KEY,
        OWNER,
        TTL,
        Arg {
            name: c"mode",
            kind: ArgKind::OneOf(&[
                Arg {
                    name: c"shared",
                    kind: ArgKind::PureToken,
                    token: Some(c"SHARED"),
                    optional: false,
                },
                Arg {
                    name: c"n",
                    kind: ArgKind::Integer,
                    token: Some(c"LIMIT"),
                    optional: false,
                },
            ]),
            token: None,
            optional: true,
        },
        Arg {
            name: c"session",
            kind: ArgKind::PureToken,
            token: Some(c"SESSION"),
            optional: true,
        },
        Arg {
            name: c"timeout",
            kind: ArgKind::Integer,
            token: Some(c"WAIT"),
            optional: true,
        },
        HELD,
    ],
    help: Some(Help {
        syntax: c"LOCK.ACQUIRE key owner ttl [SHARED | LIMIT n] [SESSION] [WAIT timeout] [HELD count]",
        line: c"    Takes or reenters the lock (WAIT: waits in line); replies the token, or nil.",
    }),
};

command_entry!(acquire_entry, Command::Acquire, acquire);

/// LOCK.ACQUIRE, then the command filter if the call made a waiter (see command_filter.rs).
extern "C" fn acquire_then_filter(
    ctx: *mut RedisModuleCtx,
    argv: *mut *mut raw::RedisModuleString,
    argc: c_int,
) -> c_int {
    let status = acquire_entry(ctx, argv, argc);
    // Two flags read first: with nobody waiting (the common case) nothing more runs.
    if command_filter::registration_due() {
        run_callback("the command filter's registration", (), || {
            if !command_filter::register_if_needed(Ctx(ctx)) {
                log(ctx, c"warning", "rlock: cannot register the command filter");
            }
        });
    }
    status
}

/// LOCK.ACQUIRE key owner ttl [SHARED | LIMIT n] [SESSION] [WAIT timeout] -> token | nil
#[inline(always)]
fn acquire(ctx: Ctx, args: &Args) -> Result<(), LockError> {
    let limits = configs::limits();
    let request = parse_acquire(args.bytes(), &limits)?;
    if request.session && ctx.has_flag(raw::REDISMODULE_CTX_FLAGS_LUA) {
        // EVAL and FCALL run on the script engine's client, which never disconnects.
        return Err(LockError::SessionInScript);
    }
    let name = key_name(args, Command::Acquire)?;
    let now = now();
    let _own_change = Handling::begin();
    let mut key = LockKey::open_writable(ctx, name);
    let queued = queued_for(ctx, args);
    if request.want == Want::Exclusive && !request.session && queued == 0 {
        let held = match key.found()? {
            Found::Empty => None,
            Found::Plain(held) => Some(held),
            Found::Holds => {
                let key_bytes = args.key_bytes();
                let db = ctx.selected_db();
                return acquire_holds(ctx, &request, key, name, db, key_bytes, now, 0);
            }
        };
        // A new holder's owner must fit lock.max-owner-bytes (a holder's own reentry need not).
        if !plain::holds_live(held, request.owner, now) {
            new_owner_fits(request.owner, &limits)?;
        }
        let outcome = with_tokens(|tokens| {
            plain::acquire(held, request.owner, request.ttl, request.held, now, tokens)
        })
        .map_err(|error| LockError::from_hold(Command::Acquire, error))?;
        return acquire_plain(ctx, args, &request, &mut key, name, outcome, now);
    }
    let key_bytes = args.key_bytes();
    let db = ctx.selected_db();
    acquire_holds(ctx, &request, key, name, db, key_bytes, now, queued)
}

/// LOCK.ACQUIRE on a free or plain key nobody waits for, as `plain::acquire` decided: the same
/// writes, replies, events and counts as `acquire_holds` makes for that case.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn acquire_plain(
    ctx: Ctx,
    args: &Args,
    request: &AcquireRequest,
    key: &mut LockKey,
    name: *mut raw::RedisModuleString,
    outcome: plain::Acquire,
    now: Millis,
) -> Result<(), LockError> {
    match outcome {
        plain::Acquire::Granted { token, expires_at } => {
            key.store(new_plain_lock(request.owner, 1, token), Some(expires_at));
            replicate::plain_state(ctx, name, request.owner, 1, token, Some(expires_at));
            ctx.reply_integer(token as i64);
            key.notify(Event::Acquire);
            key.notify(Event::Expire);
            stats::count(Counter::Acquisitions);
            reschedule_plain(ctx, args, Some(expires_at), now);
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
            reschedule_plain(ctx, args, expires_at, now);
        }
        plain::Acquire::Busy { expires_at } => {
            busy(
                ctx,
                request,
                ctx.selected_db(),
                args.key_bytes(),
                expires_at,
                now,
            )?;
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
            let events = [Event::Acquire, Event::Expire];
            commit(
                ctx,
                &mut key,
                name,
                &after,
                token as i64,
                &events,
                Counter::Acquisitions,
            );
            stats::count_kind(request.want);
            if let Some(client) = session {
                let at = KeyRef {
                    db,
                    name: key_bytes.into(),
                };
                session_index::register(client, at);
            }
            reschedule_check(ctx, db, key_bytes, &after, now);
        }
        Acquired::Reentered { token, .. } => {
            let events = [Event::Reenter, Event::Expire];
            commit(
                ctx,
                &mut key,
                name,
                &after,
                token as i64,
                &events,
                Counter::Reentries,
            );
            reschedule_check(ctx, db, key_bytes, &after, now);
        }
        Acquired::Busy => busy(ctx, request, db, key_bytes, after.next_expiry(), now)?,
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
    now: Millis,
) -> Result<(), LockError> {
    stats::count(Counter::Contended);
    crate::glue::effects::monitor::contended(db, key_bytes, now);
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
            wait_in_line(ctx, at, wanted, next_expiry, now)
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
    now: Millis,
) -> Result<(), LockError> {
    let max = configs::max_waiters();
    if waiters::queued(at.db, &at.name) as u64 >= max {
        return Err(LockError::TooManyWaiters(max));
    }
    // A wait that would close a cycle of waits is refused (DEADLOCK), nothing changed.
    wait_graph::refuse_deadlock(
        ctx,
        wanted.owner,
        wanted.want,
        std::slice::from_ref(&at),
        now,
    )?;
    // The server may refuse to block a client it would not say is unblockable (Valkey 9.1: a
    // RESP3 connection in subscribed mode): a nil would read as a timeout, so say so.
    let client = blocking::block(ctx).ok_or_else(|| LockError::CannotBlock)?;
    let (db, name) = (at.db, at.name.clone());
    waiters::join(ctx, at, wanted, client);
    handoff::schedule_check(ctx, db, &name, next_expiry.unwrap_or(i64::MAX), now);
    Ok(())
}
