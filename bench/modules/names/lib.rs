//! `bench/command_tax.py`'s control: loaded with rlock's command names as its arguments, in the
//! order rlock registers them (`--loadmodule names.so lock.acquire lock.reenter ...`), it
//! registers each one and looks it up once, as rlock does, answering
//! an error, and nothing else: no data type, keyspace subscription, server-event listener,
//! command filter or timer. A server with it loaded has the command table a server with rlock
//! has (the same names hashed into the same buckets under the same seed), so what a command
//! costs beyond it with rlock loaded is what rlock's hooks cost, the command table's layout
//! aside. Never a lock service: a measuring stick.

use std::ffi::CString;
use std::os::raw::c_int;

use redis_module::{raw, redis_module, Context, RedisString, Status};

/// Every registered command: an error (nothing here is meant to be called).
extern "C" fn refuse(
    ctx: *mut raw::RedisModuleCtx,
    _argv: *mut *mut raw::RedisModuleString,
    _argc: c_int,
) -> c_int {
    // SAFETY: ctx is the live command context; the text is a static C string.
    unsafe { raw::RedisModule_ReplyWithError.unwrap()(ctx, c"ERR a name only".as_ptr()) }
}

fn init(ctx: &Context, args: &[RedisString]) -> Status {
    let Some(create) = (unsafe { raw::RedisModule_CreateCommand }) else {
        return Status::Err;
    };
    for arg in args {
        let Ok(name) = CString::new(arg.to_string_lossy()) else {
            return Status::Err;
        };
        // SAFETY: ctx is the loading module's context; name and flags are C strings the
        // server copies.
        let created = unsafe {
            create(
                ctx.ctx,
                name.as_ptr(),
                Some(refuse),
                c"readonly".as_ptr(),
                0,
                0,
                0,
            )
        };
        if created != raw::REDISMODULE_OK as c_int {
            return Status::Err;
        }
        // Looked up once, as rlock does to set its metadata: a lookup moves an incremental
        // rehash of the command table one step, and so where later names land.
        if let Some(get) = unsafe { raw::RedisModule_GetCommand } {
            // SAFETY: as above; the name was just registered.
            unsafe { get(ctx.ctx, name.as_ptr()) };
        }
    }
    Status::Ok
}

redis_module! {
    name: "rlocknames",
    version: 1,
    allocator: (redis_module::alloc::RedisAlloc, redis_module::alloc::RedisAlloc),
    data_types: [],
    init: init,
    commands: [],
}
