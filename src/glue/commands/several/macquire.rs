//! LOCK.MACQUIRE numkeys key [key ...] owner ttl [SHARED | LIMIT n] [SESSION] [WAIT timeout]:
//! takes every key (or reenters those the owner holds) in one step, each with its own fencing
//! token, or none; with WAIT waits in every key's queue at once (waiting/several.rs) until it
//! can take all of them in one step. A wait that would close a cycle of waits is refused with
//! DEADLOCK (waiting/wait_graph.rs).

use std::ffi::c_int;

use redis_module::raw::{self, RedisModuleCtx};

use crate::core::error::{Command, LockError};
use crate::core::request::new_owner_fits;
use crate::core::several::{acquire_all, parse_macquire, refusal, AllAcquired, MacquireRequest};
use crate::core::state::holds::{Acquired, Ask, Holds};
use crate::core::Millis;
use crate::glue::commands::finish::reschedule_check;
use crate::glue::commands::several::mrelease::{KEYS, NUMKEYS};
use crate::glue::commands::several::{all_args, keys_asked, open_all, OpenKey};
use crate::glue::commands::spec::{
    Arg, ArgKind, CommandSpec, Help, KEYS_AFTER_NUMKEYS, OWNER, TTL,
};
use crate::glue::effects::replicate;
use crate::glue::effects::signals::Event;
use crate::glue::effects::stats::{self, Counter};
use crate::glue::effects::token_counter::with_tokens;
use crate::glue::server::api::rm;
use crate::glue::server::configs;
use crate::glue::server::context::{log, now, Ctx};
use crate::glue::server::entry::{command_entry, run_callback, Args};
use crate::glue::waiting::handoff::{settle, why_gone, Freed, Handling};
use crate::glue::waiting::several;
use crate::glue::waiting::several_blocking::{self, reply_tokens, SeveralWanted};
use crate::glue::waiting::waiters::{self, KeyRef};
use crate::glue::waiting::{command_filter, session_index, wait_graph};

pub static SPEC: CommandSpec = CommandSpec {
    name: c"lock.macquire",
    entry: Some(macquire_then_filter),
    flags: c"write deny-oom blocking getkeys-api",
    acl: c"write blocking",
    arity: -5,
    key_flags: raw::REDISMODULE_CMD_KEY_RW
        | raw::REDISMODULE_CMD_KEY_ACCESS
        | raw::REDISMODULE_CMD_KEY_UPDATE
        | KEYS_AFTER_NUMKEYS,
    summary: c"Takes several locks in one step, all or none, optionally waiting in line for all; replies their fencing tokens",
    complexity: c"O(1) for each of the N keys: O(N); waiting, O(N log M) behind the M clients already waiting; a wait starts with a deadlock check over the node's waiting clients",
    args: &[
        NUMKEYS,
        KEYS,
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
    ],
    help: Some(Help {
        syntax: c"LOCK.MACQUIRE numkeys key [key ...] owner ttl [SHARED | LIMIT n] [SESSION] [WAIT timeout]",
        line: c"    Takes every lock or none (WAIT: waits for all); replies the tokens, or nil.",
    }),
};

command_entry!(macquire_entry, Command::MAcquire, macquire);

/// LOCK.MACQUIRE, then the command filter if the call made a waiter (see command_filter.rs).
extern "C" fn macquire_then_filter(
    ctx: *mut RedisModuleCtx,
    argv: *mut *mut raw::RedisModuleString,
    argc: c_int,
) -> c_int {
    let status = macquire_entry(ctx, argv, argc);
    if command_filter::registration_due() {
        run_callback("the command filter's registration", (), || {
            if !command_filter::register_if_needed(Ctx(ctx)) {
                log(ctx, c"warning", "rlock: cannot register the command filter");
            }
        });
    }
    status
}

/// LOCK.MACQUIRE ... -> [token, ...] in key order | nil
fn macquire(ctx: Ctx, args: &Args) -> Result<(), LockError> {
    if keys_asked(ctx, args) {
        return Ok(());
    }
    let all = all_args(args);
    let request = parse_macquire(&all, &configs::limits())?;
    if request.session && ctx.has_flag(raw::REDISMODULE_CTX_FLAGS_LUA) {
        return Err(LockError::SessionInScript);
    }
    let now = now();
    let _own_change = Handling::begin();
    let db = ctx.selected_db();
    let mut open = open_all(ctx, &request.keys)?;
    let mut holds: Vec<Holds> = Vec::with_capacity(open.len());
    for (key_bytes, opened) in request.keys.iter().zip(&mut open) {
        holds.push(settled_first(ctx, opened, db, key_bytes, now));
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
    if holds.iter().all(|h| h.holder(request.owner).is_none()) {
        new_owner_fits(request.owner, &configs::limits())?;
    }
    let blocked: Vec<bool> = request
        .keys
        .iter()
        .zip(&holds)
        .map(|(key_bytes, h)| newcomer_waits(db, key_bytes, h))
        .collect();
    let mut after = holds.clone();
    let outcome = with_tokens(|tokens| acquire_all(&mut after, &ask, &blocked, now, tokens))
        .map_err(|(i, error)| refusal(request.keys[i], error))?;
    match outcome {
        AllAcquired::Taken(outcomes) => {
            take_all(
                ctx, &request, &mut open, &after, &outcomes, db, session, now,
            );
            Ok(())
        }
        AllAcquired::Busy { .. } => busy(ctx, &request, db, &after, now),
    }
}

/// The key's holds as of now; a key someone waits for whose holds went a moment ago (expired,
/// deleted, a session closed, before our timer ran) is settled first: those waiters go first.
fn settled_first(ctx: Ctx, opened: &mut OpenKey, db: i32, key_bytes: &[u8], now: Millis) -> Holds {
    let mut holds = opened.holds.clone().unwrap_or_default();
    if waiters::queued(db, key_bytes) == 0 {
        return holds;
    }
    let closed = opened.key.sessions_closed() > 0;
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
        let name = opened.name_ptr();
        let changed = expired > 0 || closed;
        settle(
            ctx,
            &mut opened.key,
            name,
            db,
            key_bytes,
            &mut holds,
            now,
            freed,
            changed,
        );
    }
    holds
}

/// Whether a newcomer on this key must wait behind someone queued there: any single-key
/// waiter, or a several-key waiter that does not pass (its owner holding the key).
fn newcomer_waits(db: i32, key_bytes: &[u8], holds: &Holds) -> bool {
    if waiters::queued(db, key_bytes) == 0 {
        return false;
    }
    if !waiters::queued_ones(db, key_bytes).is_empty() {
        return true;
    }
    let key = KeyRef {
        db,
        name: key_bytes.into(),
    };
    several::waiting_on(&key).iter().any(|(_, owner, want)| {
        let ask = Ask {
            owner,
            want: *want,
            ttl: 1,
            session: None,
        };
        !crate::core::waiting::deadlock::passes(holds, &ask)
    })
}

/// Every key taken or reentered: stored and replicated in this one command (one MULTI/EXEC
/// downstream), the tokens replied, events published per key.
#[allow(clippy::too_many_arguments)]
fn take_all(
    ctx: Ctx,
    request: &MacquireRequest,
    open: &mut [OpenKey],
    after: &[Holds],
    outcomes: &[Acquired],
    db: i32,
    session: Option<u64>,
    now: Millis,
) {
    for (opened, holds) in open.iter_mut().zip(after) {
        opened.key.put(holds);
        replicate::holds_state(ctx, opened.name_ptr(), holds);
    }
    let tokens = outcomes.iter().map(|outcome| match outcome {
        Acquired::Granted { token } | Acquired::Reentered { token, .. } => *token,
        Acquired::Busy => 0,
    });
    reply_tokens(ctx, tokens);
    for (((opened, outcome), key_bytes), holds) in
        open.iter().zip(outcomes).zip(&request.keys).zip(after)
    {
        match outcome {
            Acquired::Granted { .. } => {
                opened.key.notify(Event::Acquire);
                stats::count(Counter::Acquisitions);
                stats::count_kind(request.want);
                if let Some(client) = session {
                    let at = KeyRef {
                        db,
                        name: (*key_bytes).into(),
                    };
                    session_index::register(client, at);
                }
            }
            _ => {
                opened.key.notify(Event::Reenter);
                stats::count(Counter::Reentries);
            }
        }
        opened.key.notify(Event::Expire);
        reschedule_check(ctx, db, key_bytes, holds, now);
    }
}

/// Not every key can be taken now: wait in every key's queue (WAIT, where the caller may
/// block, and no cycle of waits closes), or nil.
fn busy(
    ctx: Ctx,
    request: &MacquireRequest,
    db: i32,
    holds: &[Holds],
    now: Millis,
) -> Result<(), LockError> {
    stats::count(Counter::Contended);
    let Some(timeout) = request.wait else {
        ctx.reply_null();
        return Ok(());
    };
    if ctx.has_flag(raw::REDISMODULE_CTX_FLAGS_DENY_BLOCKING) {
        ctx.reply_null();
        return Ok(());
    }
    let max = configs::max_waiters();
    if request
        .keys
        .iter()
        .any(|key| waiters::queued(db, key) as u64 >= max)
    {
        return Err(LockError::TooManyWaiters(max));
    }
    let keys: Vec<KeyRef> = request
        .keys
        .iter()
        .map(|key| KeyRef {
            db,
            name: (*key).into(),
        })
        .collect();
    wait_graph::refuse_deadlock(ctx, request.owner, request.want, &keys, now)?;
    let next_expiry: Vec<Option<Millis>> = holds.iter().map(Holds::next_expiry).collect();
    let wanted = SeveralWanted {
        owner: request.owner,
        ttl: request.ttl,
        want: request.want,
        session: request.session,
        timeout_ms: timeout,
    };
    several_blocking::join(ctx, keys, wanted, &next_expiry, now)
        .ok_or_else(|| LockError::CannotBlock)
}
