//! The command table: each command's name, entry point, flags, arity and key spec, so ACLs,
//! replication, CLIENT PAUSE, OOM and cluster routing treat it right.

use std::ffi::{c_int, CStr};

use redis_module::raw::{self, RedisModuleCmdFunc, RedisModuleCtx};

use super::api::rm;
use super::commands;
use super::context::log;
use super::help;

struct CommandSpec {
    name: &'static CStr,
    entry: RedisModuleCmdFunc,
    /// `write` so CLIENT PAUSE WRITE and read-only replicas hold it; `deny-oom` where it
    /// allocates (a new lock), never on release or renew: a holder must always be able to let
    /// go or keep what it has.
    flags: &'static CStr,
    /// Counting the command name; negative: at least that many.
    arity: c_int,
    key_flags: u32,
    summary: &'static CStr,
}

const COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: c"lock.acquire",
        entry: Some(commands::acquire_entry),
        flags: c"write deny-oom fast",
        arity: -4,
        key_flags: raw::REDISMODULE_CMD_KEY_RW | raw::REDISMODULE_CMD_KEY_INSERT,
        summary: c"Takes a lock (or reenters one's own), optionally waiting in line; replies the fencing token",
    },
    CommandSpec {
        name: c"lock.reenter",
        entry: Some(commands::reenter_entry),
        flags: c"write fast",
        arity: -3,
        key_flags: raw::REDISMODULE_CMD_KEY_RW | raw::REDISMODULE_CMD_KEY_UPDATE,
        summary: c"Adds one hold to a lock the owner holds; replies the new hold count",
    },
    CommandSpec {
        name: c"lock.release",
        entry: Some(commands::release_entry),
        flags: c"write fast",
        arity: 3,
        key_flags: raw::REDISMODULE_CMD_KEY_RW | raw::REDISMODULE_CMD_KEY_DELETE,
        summary: c"Drops one hold of a lock the owner holds; replies the remaining count",
    },
    CommandSpec {
        name: c"lock.renew",
        entry: Some(commands::renew_entry),
        flags: c"write fast",
        arity: 4,
        key_flags: raw::REDISMODULE_CMD_KEY_RW | raw::REDISMODULE_CMD_KEY_UPDATE,
        summary: c"Resets the expiry of a lock the owner holds",
    },
    CommandSpec {
        name: c"lock.info",
        entry: Some(commands::info_entry),
        flags: c"readonly fast",
        arity: 2,
        key_flags: raw::REDISMODULE_CMD_KEY_RO | raw::REDISMODULE_CMD_KEY_ACCESS,
        summary: c"Shows a lock's owner, hold count, ttl, fencing token and waiters",
    },
    CommandSpec {
        name: c"lock.help",
        entry: Some(help::help_entry),
        flags: c"fast allow-loading allow-stale",
        arity: 1,
        key_flags: 0,
        summary: c"Lists the LOCK commands with their syntax, one line of description each",
    },
    CommandSpec {
        name: c"lock.apply",
        entry: Some(commands::apply_entry),
        flags: c"write",
        arity: 7,
        key_flags: raw::REDISMODULE_CMD_KEY_OW | raw::REDISMODULE_CMD_KEY_UPDATE,
        summary: c"Internal: replays a master's lock state (replication and AOF only)",
    },
    CommandSpec {
        name: c"lock.tokens",
        entry: Some(commands::tokens_entry),
        flags: c"write",
        arity: 2,
        key_flags: 0,
        summary: c"Internal: raises the fencing-token counter to a master's (replication and AOF only)",
    },
];

/// Registers every command; false (after logging why) when the server refuses one.
pub fn register_commands(ctx: *mut RedisModuleCtx) -> bool {
    COMMANDS.iter().all(|spec| register(ctx, spec))
}

fn register(ctx: *mut RedisModuleCtx, spec: &CommandSpec) -> bool {
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
    set_command_info(ctx, spec);
    true
}

/// Arity, key spec and summary (Redis 7.0+). Without them the command still works; the
/// legacy (1,1,1) key position keeps cluster routing right.
fn set_command_info(ctx: *mut RedisModuleCtx, spec: &CommandSpec) {
    // SAFETY: reading function pointers written once at load.
    let (Some(get_command), Some(set_info)) = (unsafe { raw::RedisModule_GetCommand }, unsafe {
        raw::RedisModule_SetCommandInfo
    }) else {
        return;
    };
    // SAFETY: the command was just created under this name.
    let command = unsafe { get_command(ctx, spec.name.as_ptr()) };
    if command.is_null() {
        return;
    }
    let mut key_specs = [key_spec_at_1(spec.key_flags), zeroed_key_spec()];
    if spec.key_flags == 0 {
        key_specs[0] = zeroed_key_spec();
    }
    let version = raw::RedisModuleCommandInfoVersion {
        version: 1,
        sizeof_historyentry: std::mem::size_of::<raw::RedisModuleCommandHistoryEntry>(),
        sizeof_keyspec: std::mem::size_of::<raw::RedisModuleCommandKeySpec>(),
        sizeof_arg: std::mem::size_of::<raw::RedisModuleCommandArg>(),
    };
    let info = raw::RedisModuleCommandInfo {
        version: &version,
        summary: spec.summary.as_ptr(),
        complexity: c"O(1)".as_ptr(),
        since: c"0.1.0".as_ptr(),
        history: std::ptr::null_mut(),
        tips: std::ptr::null(),
        arity: spec.arity,
        key_specs: key_specs.as_mut_ptr(),
        args: std::ptr::null_mut(),
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

/// One key at argument 1.
fn key_spec_at_1(flags: u32) -> raw::RedisModuleCommandKeySpec {
    raw::RedisModuleCommandKeySpec {
        notes: std::ptr::null(),
        flags: u64::from(flags),
        begin_search_type: raw::RedisModuleKeySpecBeginSearchType_REDISMODULE_KSPEC_BS_INDEX,
        bs: raw::RedisModuleCommandKeySpec__bindgen_ty_1 {
            index: raw::RedisModuleCommandKeySpec__bindgen_ty_1__bindgen_ty_1 { pos: 1 },
        },
        find_keys_type: raw::RedisModuleKeySpecFindKeysType_REDISMODULE_KSPEC_FK_RANGE,
        fk: raw::RedisModuleCommandKeySpec__bindgen_ty_2 {
            range: raw::RedisModuleCommandKeySpec__bindgen_ty_2__bindgen_ty_1 {
                lastkey: 0,
                keystep: 1,
                limit: 0,
            },
        },
    }
}

/// The terminator of a key spec array.
fn zeroed_key_spec() -> raw::RedisModuleCommandKeySpec {
    // SAFETY: an all-zero key spec is the documented terminator (plain integers and pointers).
    unsafe { std::mem::zeroed() }
}
