//! rlock: a distributed lock as a native Redis module.
//!
//! This file only registers things: the data type, the commands, the module options.

// An error built eagerly for `ok_or` is dropped on success, through a call of
// drop_in_place::<LockError> (about 27 instructions on every parse: issue 25); `ok_or_else`
// builds it only on the error path, which clippy would have written eagerly.
#![allow(clippy::unnecessary_lazy_evaluations)]

mod core;
mod glue;

use redis_module::{redis_module, Context, RedisString, Status};

use glue::hooks::datatype::LOCK_TYPE;
use glue::server::context::log;

/// The server's allocator in the module, so MEMORY and INFO count our locks; the system's in
/// unit tests, which run without a server.
#[cfg(not(test))]
type Allocator = redis_module::alloc::RedisAlloc;
#[cfg(not(test))]
const ALLOCATOR: Allocator = redis_module::alloc::RedisAlloc;
#[cfg(test)]
type Allocator = std::alloc::System;
#[cfg(test)]
const ALLOCATOR: Allocator = std::alloc::System;

fn init(ctx: &Context, _args: &[RedisString]) -> Status {
    glue::server::entry::log_panics();
    let missing = glue::server::api::missing_required();
    if !missing.is_empty() {
        log(
            ctx.ctx,
            c"warning",
            &format!("rlock: this server lacks module API calls rlock needs: {missing:?} (Redis 7.0+ required)"),
        );
        return Status::Err;
    }
    // A short or corrupt RDB payload fails the load with an error instead of aborting the
    // server; and a key opened for writing counts as modified (WATCH, client-side caching) only
    // when rlock says it changed, so a refused call leaves no trace.
    let options = redis_module::raw::REDISMODULE_OPTIONS_HANDLE_IO_ERRORS
        | redis_module::raw::REDISMODULE_OPTION_NO_IMPLICIT_SIGNAL_MODIFIED;
    // SAFETY: ctx is the loading module's context.
    unsafe { glue::server::api::rm!(RedisModule_SetModuleOptions)(ctx.ctx, options as i32) };
    glue::server::context::make_detached(ctx.ctx);
    glue::server::value::set_lock_type(glue::hooks::datatype::registered_type());
    glue::hooks::info::register(ctx.ctx);
    glue::hooks::cluster_floor::register(ctx.ctx);
    glue::hooks::sweep::install();
    if glue::registration::register_commands(ctx.ctx)
        && glue::server::configs::register(ctx.ctx)
        && glue::hooks::events::subscribe(ctx.ctx)
        && glue::waiting::sessions::subscribe(ctx.ctx)
        && glue::hooks::events::watch_roles_and_configs(ctx.ctx)
    {
        Status::Ok
    } else {
        Status::Err
    }
}

redis_module! {
    name: "lock",
    version: 1,
    allocator: (Allocator, ALLOCATOR),
    data_types: [LOCK_TYPE],
    init: init,
    commands: [],
}
