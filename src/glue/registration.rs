//! The command table: each command's name, entry point, flags, ACL categories, arity, key spec
//! and docs, so ACLs, replication, CLIENT PAUSE, OOM, cluster routing and `COMMAND DOCS` treat
//! it right.

use std::ffi::{c_int, CStr};

use redis_module::raw::{self, RedisModuleCmdFunc, RedisModuleCommand, RedisModuleCtx};

use super::command_info::{key_specs, Arg, ArgKind, RawArgs};
use super::commands;
use super::help;
use crate::glue::server::api::rm;
use crate::glue::server::context::{log, Ctx};
use crate::glue::server::entry::run_callback;
use crate::glue::waiting::command_filter;

struct CommandSpec {
    name: &'static CStr,
    entry: RedisModuleCmdFunc,
    /// `write` so CLIENT PAUSE WRITE and read-only replicas hold it; `deny-oom` where it
    /// allocates (a new lock), never on release or renew: a holder must always be able to let
    /// go or keep what it has; `blocking` where it may block the caller (WAIT).
    flags: &'static CStr,
    /// ACL categories besides `lock` (servers with module ACL categories only).
    acl: &'static CStr,
    /// Counting the command name; negative: at least that many.
    arity: c_int,
    /// What the command does to its key (argument 1); 0 for a keyless command.
    key_flags: u32,
    summary: &'static CStr,
    complexity: &'static CStr,
    args: &'static [Arg],
}

/// Where the commands first appeared (rlock's version).
const SINCE: &CStr = c"0.1.0";

const KEY: Arg = Arg::key(c"key");
const OWNER: Arg = Arg::string(c"owner");
const TTL: Arg = Arg::integer(c"ttl");
/// `HELD n`: the caller's hold count before the call, so that a retried call has one effect.
const HELD: Arg = Arg {
    name: c"count",
    kind: ArgKind::Integer,
    token: Some(c"HELD"),
    optional: true,
};

const COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: c"lock.acquire",
        entry: Some(acquire_then_filter),
        flags: c"write deny-oom fast blocking",
        acl: c"write fast blocking",
        arity: -4,
        // Creates the lock or adds a hold to it: UPDATE ("new or existing data"; the server
        // takes one of INSERT, UPDATE, DELETE). ACCESS: a reentry replies the stored token.
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
    },
    CommandSpec {
        name: c"lock.reenter",
        entry: Some(commands::reenter_entry),
        flags: c"write fast",
        acl: c"write fast",
        arity: -3,
        // As INCR: replies the stored count it changed.
        key_flags: raw::REDISMODULE_CMD_KEY_RW
            | raw::REDISMODULE_CMD_KEY_ACCESS
            | raw::REDISMODULE_CMD_KEY_UPDATE,
        summary: c"Adds one hold to a lock the owner holds; replies the new hold count",
        complexity: c"O(1)",
        args: &[
            KEY,
            OWNER,
            Arg {
                optional: true,
                ..TTL
            },
            HELD,
        ],
    },
    CommandSpec {
        name: c"lock.release",
        entry: Some(commands::release_entry),
        flags: c"write fast",
        acl: c"write fast",
        arity: -3,
        // Drops a hold, and with the last one the lock (the key is deleted or handed over):
        // DELETE, which the server does not combine with UPDATE. ACCESS: replies the count.
        key_flags: raw::REDISMODULE_CMD_KEY_RW
            | raw::REDISMODULE_CMD_KEY_ACCESS
            | raw::REDISMODULE_CMD_KEY_DELETE,
        summary: c"Drops one hold of a lock the owner holds; replies the remaining count",
        complexity: c"O(1); O(log N) to hand a freed lock to the first of the N clients waiting for the key",
        args: &[KEY, OWNER, HELD],
    },
    CommandSpec {
        name: c"lock.renew",
        entry: Some(commands::renew_entry),
        flags: c"write fast",
        acl: c"write fast",
        arity: 4,
        key_flags: raw::REDISMODULE_CMD_KEY_RW | raw::REDISMODULE_CMD_KEY_UPDATE,
        summary: c"Resets the expiry of a lock the owner holds",
        complexity: c"O(1)",
        args: &[KEY, OWNER, TTL],
    },
    CommandSpec {
        name: c"lock.info",
        entry: Some(commands::info_entry),
        flags: c"readonly fast",
        acl: c"read fast",
        arity: 2,
        key_flags: raw::REDISMODULE_CMD_KEY_RO | raw::REDISMODULE_CMD_KEY_ACCESS,
        summary: c"Shows a lock's owner, hold count, ttl, fencing token and waiters",
        complexity: c"O(1)",
        args: &[KEY],
    },
    CommandSpec {
        name: c"lock.help",
        entry: Some(help::help_entry),
        flags: c"fast allow-loading allow-stale",
        acl: c"fast",
        arity: 1,
        key_flags: 0,
        summary: c"Lists the LOCK commands with their syntax, one line of description each",
        complexity: c"O(1)",
        args: &[],
    },
    CommandSpec {
        name: c"lock.apply",
        entry: Some(commands::apply_entry),
        flags: c"write",
        acl: c"write",
        arity: -5,
        key_flags: raw::REDISMODULE_CMD_KEY_OW | raw::REDISMODULE_CMD_KEY_UPDATE,
        summary: c"Internal: replays a master's lock state (replication and AOF only)",
        complexity: c"O(1)",
        // Internal, its layout rlock's own business: not documented argument by argument.
        args: &[],
    },
    CommandSpec {
        name: c"lock.tokens",
        entry: Some(commands::tokens_entry),
        flags: c"write",
        acl: c"write",
        arity: 2,
        key_flags: 0,
        summary: c"Internal: raises the fencing-token counter to a master's (replication and AOF only)",
        complexity: c"O(1)",
        args: &[Arg::integer(c"counter")],
    },
];

/// LOCK.ACQUIRE, then the command filter if the call made a waiter (see command_filter.rs).
extern "C" fn acquire_then_filter(
    ctx: *mut RedisModuleCtx,
    argv: *mut *mut raw::RedisModuleString,
    argc: c_int,
) -> c_int {
    let status = commands::acquire_entry(ctx, argv, argc);
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

/// The ACL category every LOCK command is in, where the server lets modules add one.
const ACL_CATEGORY: &CStr = c"lock";

/// Registers every command; false (after logging why) when the server refuses one.
pub fn register_commands(ctx: *mut RedisModuleCtx) -> bool {
    // SAFETY: reading a function pointer written once at load.
    if unsafe { raw::RedisModule_SetCommandACLCategories }.is_none() {
        log(
            ctx,
            c"notice",
            "rlock: this server has no module ACL categories (no \
             RedisModule_SetCommandACLCategories): LOCK commands are only in @all",
        );
    }
    let own_category = add_acl_category(ctx);
    COMMANDS
        .iter()
        .all(|spec| register(ctx, spec, own_category))
}

/// Adds the `lock` ACL category (Redis 7.4+, Valkey 8+); false where the server cannot.
fn add_acl_category(ctx: *mut RedisModuleCtx) -> bool {
    // SAFETY: reading a function pointer written once at load.
    let Some(add) = (unsafe { raw::RedisModule_AddACLCategory }) else {
        log(
            ctx,
            c"notice",
            "rlock: this server cannot add ACL categories (no RedisModule_AddACLCategory): no @lock",
        );
        return false;
    };
    // SAFETY: ctx is the loading module's context (categories may only be added in OnLoad).
    let added = unsafe { add(ctx, ACL_CATEGORY.as_ptr()) } == raw::REDISMODULE_OK as c_int;
    if !added {
        log(ctx, c"warning", "rlock: cannot add the ACL category @lock");
    }
    added
}

fn register(ctx: *mut RedisModuleCtx, spec: &CommandSpec, own_category: bool) -> bool {
    // A key at argument 1, or none for a keyless command.
    let key = c_int::from(spec.key_flags != 0);
    // SAFETY: ctx is the loading module's context; the name and flags are static C strings.
    let created = unsafe {
        rm!(RedisModule_CreateCommand)(
            ctx,
            spec.name.as_ptr(),
            spec.entry,
            spec.flags.as_ptr(),
            key,
            key,
            key,
        )
    };
    if created != raw::REDISMODULE_OK as c_int {
        log(
            ctx,
            c"warning",
            &format!("rlock: cannot create command {:?}", spec.name),
        );
        return false;
    }
    // SAFETY: the command was just created under this name.
    let command = unsafe { rm!(RedisModule_GetCommand)(ctx, spec.name.as_ptr()) };
    if command.is_null() {
        return true;
    }
    set_acl_categories(ctx, command, spec, own_category);
    set_command_info(ctx, command, spec);
    true
}

/// ACL categories (Redis 7.2+, Valkey): `+@write`, `+@fast`, `+@lock` and the like then
/// cover the command. Older servers put module commands in no category but `@all`.
fn set_acl_categories(
    ctx: *mut RedisModuleCtx,
    command: *mut RedisModuleCommand,
    spec: &CommandSpec,
    own_category: bool,
) {
    // SAFETY: reading a function pointer written once at load.
    let Some(set_categories) = (unsafe { raw::RedisModule_SetCommandACLCategories }) else {
        return;
    };
    let mut categories = spec.acl.to_bytes().to_vec();
    if own_category {
        categories.extend_from_slice(b" ");
        categories.extend_from_slice(ACL_CATEGORY.to_bytes());
    }
    let Ok(categories) = std::ffi::CString::new(categories) else {
        return;
    };
    // SAFETY: command belongs to this module, which is loading; the server parses the string
    // during the call.
    if unsafe { set_categories(command, categories.as_ptr()) } != raw::REDISMODULE_OK as c_int {
        log(
            ctx,
            c"warning",
            &format!("rlock: cannot set the ACL categories of {:?}", spec.name),
        );
    }
}

/// Arity, key spec and docs (Redis 7.0+). Without them the command still works; the legacy
/// (1,1,1) key position keeps cluster routing right.
fn set_command_info(
    ctx: *mut RedisModuleCtx,
    command: *mut RedisModuleCommand,
    spec: &CommandSpec,
) {
    // SAFETY: reading a function pointer written once at load.
    let Some(set_info) = (unsafe { raw::RedisModule_SetCommandInfo }) else {
        return;
    };
    let mut key_specs = key_specs(spec.key_flags);
    let mut args = RawArgs::new(spec.args);
    let version = raw::RedisModuleCommandInfoVersion {
        version: 1,
        sizeof_historyentry: std::mem::size_of::<raw::RedisModuleCommandHistoryEntry>(),
        sizeof_keyspec: std::mem::size_of::<raw::RedisModuleCommandKeySpec>(),
        sizeof_arg: std::mem::size_of::<raw::RedisModuleCommandArg>(),
    };
    let info = raw::RedisModuleCommandInfo {
        version: &version,
        summary: spec.summary.as_ptr(),
        complexity: spec.complexity.as_ptr(),
        since: SINCE.as_ptr(),
        history: std::ptr::null_mut(),
        tips: std::ptr::null(),
        arity: spec.arity,
        key_specs: key_specs.as_mut_ptr(),
        args: args.as_mut_ptr(),
    };
    // SAFETY: info and everything it points to live through the call; the server copies them.
    if unsafe { set_info(command, &info) } != raw::REDISMODULE_OK as c_int {
        log(
            ctx,
            c"warning",
            &format!("rlock: cannot set command info of {:?}", spec.name),
        );
    }
}
