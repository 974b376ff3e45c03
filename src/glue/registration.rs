//! Registers `commands::ALL`: each command's name, entry point, flags, ACL categories, arity,
//! key spec and docs, so ACLs, replication, CLIENT PAUSE, OOM, cluster routing and `COMMAND
//! DOCS` treat it right; and hands LOCK.HELP its lines.

use std::ffi::{c_int, CStr};

use redis_module::raw::{self, RedisModuleCommand, RedisModuleCtx};

use crate::glue::commands::spec::{key_specs, CommandSpec, RawArgs, SINCE};
use crate::glue::commands::{self, help};
use crate::glue::server::api::rm;
use crate::glue::server::context::log;

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
    help::publish(commands::ALL);
    commands::ALL
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
    // No legacy key range here: the key specs set below replace it for every command (the
    // server derives (first, last, step) from them: populateCommandLegacyRangeSpec, module.c;
    // a keyless command's empty list makes it 0 0 0), which tests/metadata.rs checks in
    // COMMAND INFO.
    // SAFETY: ctx is the loading module's context; the name and flags are static C strings.
    let created = unsafe {
        rm!(RedisModule_CreateCommand)(
            ctx,
            spec.name.as_ptr(),
            spec.entry,
            spec.flags.as_ptr(),
            0,
            0,
            0,
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
