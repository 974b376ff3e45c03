//! LOCK.OBSERVE key [token] [TIMEOUT timeout]: a blocking read of who holds a lock, in the
//! style of `XREAD BLOCK`. Answers at once when the key's epoch (its newest holder's token, 0
//! when free) is not `token`; otherwise blocks until its holders change (granted, handed over,
//! released, expired, deleted, flushed, dropped on resync, a role change) or `timeout` ms pass
//! (0: for ever). Replies `[epoch, state]`, where state is what LOCK.INFO shows (nil: free), or
//! nil on timeout; MULTI and scripts cannot block, so there it answers nil unless `token` is
//! already another epoch. Read-only: works on replicas, and in a cluster on the key's node.

use std::ffi::{c_int, c_void};
use std::ptr::NonNull;

use redis_module::raw::{self, RedisModuleBlockedClient, RedisModuleCtx, RedisModuleString};

use crate::core::error::{Command, LockError};
use crate::core::request::parse_observe;
use crate::core::state::epoch::{answers_at_once, Snapshot};
use crate::core::state::holds::Holds;
use crate::core::Millis;
use crate::glue::commands::finish::{key_name, may_block};
use crate::glue::commands::holds::info::reply_lock_state;
use crate::glue::commands::spec::{Arg, ArgKind, CommandSpec, Help, KEY};
use crate::glue::effects::keys::{OwnedString, ReadKey};
use crate::glue::effects::observed;
use crate::glue::server::api::rm;
use crate::glue::server::blocked_client::BlockedClient;
use crate::glue::server::context::{now, Ctx, OK};
use crate::glue::server::entry::{command_entry, run_callback, Args};
use crate::glue::server::key_ref::KeyRef;
use crate::glue::waiting::waiters;

pub static SPEC: CommandSpec = CommandSpec {
    name: c"lock.observe",
    entry: Some(monitor_entry),
    flags: c"readonly blocking",
    acl: c"read blocking",
    arity: -2,
    key_flags: raw::REDISMODULE_CMD_KEY_RO | raw::REDISMODULE_CMD_KEY_ACCESS,
    summary: c"Waits until a lock's holders change (or answers at once if its epoch is not token); replies [epoch, state]",
    complexity: c"O(1); O(N) per change for the N clients observing the key",
    args: &[
        KEY,
        Arg {
            name: c"token",
            kind: ArgKind::Integer,
            token: None,
            optional: true,
        },
        Arg {
            name: c"timeout",
            kind: ArgKind::Integer,
            token: Some(c"TIMEOUT"),
            optional: true,
        },
    ],
    help: Some(Help {
        syntax: c"LOCK.OBSERVE key [token] [TIMEOUT timeout]",
        line: c"    Waits for the lock to change hands; replies [epoch, state], nil at timeout.",
    }),
};

command_entry!(monitor_entry, Command::Observe, observe);

fn observe(ctx: Ctx, args: &Args) -> Result<(), LockError> {
    let request = parse_observe(args.bytes())?;
    let name = key_name(args, Command::Observe)?;
    let now = now();
    let holds = live_holds(ReadKey::open(ctx, name).holds()?, now);
    let snapshot = holds.as_ref().map_or(Snapshot::FREE, Snapshot::of);
    let (db, key_bytes) = (ctx.selected_db(), args.key_bytes());
    if answers_at_once(snapshot, request.seen_epoch) {
        reply_observed(ctx, holds, db, key_bytes, now);
        return Ok(());
    }
    if !may_block(ctx) {
        ctx.reply_null();
        return Ok(());
    }
    let client = block(ctx, request.timeout_ms).ok_or_else(|| LockError::CannotBlock)?;
    observed::observe(KeyRef::new(db, key_bytes), client, snapshot);
    Ok(())
}

/// The holds still live at `now`.
fn live_holds(holds: Option<Holds>, now: Millis) -> Option<Holds> {
    holds.map(|mut holds| {
        holds.expire(now);
        holds
    })
}

/// `[epoch, state]` for the key `name` in `db` holding `holds` (live at `now`).
fn reply_observed(ctx: Ctx, holds: Option<Holds>, db: i32, name: &[u8], now: Millis) {
    let epoch = holds.as_ref().map_or(Snapshot::FREE, Snapshot::of).epoch;
    let waiting = waiters::queued(db, name) as i64;
    // SAFETY: ctx is the running command's (or blocked reply's) context.
    unsafe { rm!(RedisModule_ReplyWithArray)(ctx.0, 2) };
    ctx.reply_integer(epoch as i64);
    reply_lock_state(ctx, holds, waiting, now);
}

/// Blocks the caller for at most `timeout_ms` (0: no limit), with the callbacks below.
fn block(ctx: Ctx, timeout_ms: u64) -> Option<BlockedClient> {
    let timeout = i64::try_from(timeout_ms).unwrap_or(i64::MAX);
    // SAFETY: ctx is the running command's context, which may block (checked by the caller);
    // the callbacks live as long as the module.
    let handle = unsafe {
        rm!(RedisModule_BlockClient)(ctx.0, Some(woken), Some(timed_out), Some(free_key), timeout)
    };
    let handle = NonNull::new(handle)?;
    // SAFETY: handle was just returned by BlockClient and not yet released.
    unsafe { rm!(RedisModule_SetDisconnectCallback)(handle.as_ptr(), Some(disconnected)) };
    // SAFETY: ctx is the blocking client's own context.
    let client_id = unsafe { rm!(RedisModule_GetClientId)(ctx.0) };
    Some(BlockedClient::new(handle, client_id))
}

/// The key changed hands: answer with its state now (the state after the change), read in the
/// woken client's context, whose database is the key's.
unsafe extern "C" fn woken(
    ctx: *mut RedisModuleCtx,
    _argv: *mut *mut RedisModuleString,
    _argc: c_int,
) -> c_int {
    run_callback("an observer's reply", OK, || {
        let ctx = Ctx(ctx);
        // SAFETY: ctx is a blocked-reply context; privdata is null or a KeyRef of ours.
        let key = unsafe { rm!(RedisModule_GetBlockedClientPrivateData)(ctx.0) }.cast::<KeyRef>();
        let Some(key) = (unsafe { key.as_ref() }) else {
            ctx.reply_null();
            return OK;
        };
        let now = now();
        let name = OwnedString::new(ctx, &key.name);
        // Another type now at the key reads as free: the next LOCK.OBSERVE says WRONGTYPE.
        let holds = live_holds(
            ReadKey::open(ctx, name.as_ptr()).holds().ok().flatten(),
            now,
        );
        reply_observed(ctx, holds, key.db, &key.name, now);
        OK
    })
}

/// TIMEOUT passed, or CLIENT UNBLOCK: nil, and the observer leaves.
unsafe extern "C" fn timed_out(
    ctx: *mut RedisModuleCtx,
    _argv: *mut *mut RedisModuleString,
    _argc: c_int,
) -> c_int {
    run_callback("an observer's timeout", OK, || {
        let ctx = Ctx(ctx);
        // SAFETY: ctx is a blocked-timeout context, whose handle is the client's.
        let handle = unsafe { rm!(RedisModule_GetBlockedClientHandle)(ctx.0) };
        if let Some(client) = observed::leave(handle as usize) {
            client.let_go();
        }
        ctx.reply_null();
        OK
    })
}

/// The observer's connection closed (or it was woken a moment ago: then nothing is left).
unsafe extern "C" fn disconnected(
    _ctx: *mut RedisModuleCtx,
    handle: *mut RedisModuleBlockedClient,
) {
    run_callback("an observer's disconnect", (), || {
        if let Some(client) = observed::leave(handle as usize) {
            client.let_go();
        }
    })
}

unsafe extern "C" fn free_key(_ctx: *mut RedisModuleCtx, privdata: *mut c_void) {
    if !privdata.is_null() {
        // SAFETY: the only privdata observers are woken with is a Box<KeyRef>, freed once here.
        drop(unsafe { Box::from_raw(privdata.cast::<KeyRef>()) });
    }
}
