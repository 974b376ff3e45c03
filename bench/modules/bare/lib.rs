//! The least a plain lock/unlock pair can do with the module API calls rlock's pair makes, for
//! `bench/pair_cost.py`'s "bare" row: `LOCK.ACQUIRE key owner ttl` on a free key and
//! `LOCK.RELEASE key owner` of a lock held once, with the same calls in the same order (the key
//! opened for writing, its type asked, the value set and then its expiry, the token replied,
//! `lock.acquire` and `expire` published, the key signalled and closed; at release the value
//! read, the key deleted, `del` published, the clock read for the hold time) and a value of the
//! same layout, freed and unlinked through the same callbacks, but no bookkeeping at all: no
//! limits, fencing-token ceiling, hold-time histogram, INFO counters, waiters, observers,
//! replication or panic catching. Anything else answers nil. Never a lock service: a
//! measuring stick.

use std::os::raw::{c_int, c_void};

use redis_module::native_types::RedisType;
use redis_module::{raw, redis_module, Context, Status};

/// `[owner length u16 | token u64 | owner]`, as rlock's packed lock.
const HEADER: usize = 10;

static BARE_TYPE: RedisType = RedisType::new(
    "rlockbare",
    0,
    raw::RedisModuleTypeMethods {
        version: raw::REDISMODULE_TYPE_METHOD_VERSION as u64,
        rdb_load: None,
        rdb_save: None,
        aof_rewrite: None,
        free: Some(free),
        mem_usage: None,
        digest: None,
        aux_load: None,
        aux_save: None,
        aux_save2: None,
        aux_save_triggers: 0,
        free_effort: None,
        unlink: None,
        copy: None,
        defrag: None,
        copy2: None,
        free_effort2: None,
        mem_usage2: None,
        unlink2: Some(unlinked),
    },
);

static mut LAST_TOKEN: u64 = 0;
static mut LAST_UNLINKED: usize = 0;

/// The bytes of a value of ours.
unsafe fn value_bytes<'a>(value: *mut c_void) -> &'a mut [u8] {
    let start = value.cast::<u8>();
    let len = u16::from_le_bytes([*start, *start.add(1)]) as usize;
    std::slice::from_raw_parts_mut(start, HEADER + len)
}

unsafe extern "C" fn free(value: *mut c_void) {
    drop(Box::from_raw(value_bytes(value) as *mut [u8]));
}

/// As rlock's: the key's name and database are read (rlock keeps them for the expired event).
unsafe extern "C" fn unlinked(ctx: *mut raw::RedisModuleKeyOptCtx, _value: *const c_void) {
    let db = raw::RedisModule_GetDbIdFromOptCtx.unwrap()(ctx);
    let key = raw::RedisModule_GetKeyNameFromOptCtx.unwrap()(ctx);
    LAST_UNLINKED = key as usize + db as usize;
}

unsafe fn bytes<'a>(string: *mut raw::RedisModuleString) -> &'a [u8] {
    let mut len = 0;
    let ptr = raw::RedisModule_StringPtrLen.unwrap()(string, &mut len);
    std::slice::from_raw_parts(ptr.cast::<u8>(), len)
}

unsafe fn open(
    ctx: *mut raw::RedisModuleCtx,
    name: *mut raw::RedisModuleString,
) -> *mut raw::RedisModuleKey {
    raw::RedisModule_OpenKey.unwrap()(
        ctx,
        name,
        (raw::REDISMODULE_READ | raw::REDISMODULE_WRITE) as c_int,
    )
    .cast()
}

unsafe fn notify(
    ctx: *mut raw::RedisModuleCtx,
    class: i32,
    event: &std::ffi::CStr,
    key: *mut raw::RedisModuleString,
) {
    raw::RedisModule_NotifyKeyspaceEvent.unwrap()(ctx, class, event.as_ptr(), key);
}

extern "C" fn acquire(
    ctx: *mut raw::RedisModuleCtx,
    argv: *mut *mut raw::RedisModuleString,
    argc: c_int,
) -> c_int {
    unsafe {
        if argc != 4 {
            raw::RedisModule_ReplyWithNull.unwrap()(ctx);
            return 0;
        }
        let name = *argv.add(1);
        let owner = bytes(*argv.add(2));
        let ttl = bytes(*argv.add(3))
            .iter()
            .fold(0i64, |n, &d| n * 10 + i64::from(d - b'0'));
        let now = raw::RedisModule_Milliseconds.unwrap()();
        let key = open(ctx, name);
        let free = raw::RedisModule_ModuleTypeGetType.unwrap()(key).is_null()
            && raw::RedisModule_KeyType.unwrap()(key) == raw::REDISMODULE_KEYTYPE_EMPTY as c_int;
        if free {
            LAST_TOKEN = (LAST_TOKEN + 1).max((now as u64) << 10);
            let mut value = Vec::with_capacity(HEADER + owner.len());
            value.extend_from_slice(&(owner.len() as u16).to_le_bytes());
            value.extend_from_slice(&LAST_TOKEN.to_le_bytes());
            value.extend_from_slice(owner);
            let value = Box::into_raw(value.into_boxed_slice()).cast::<c_void>();
            raw::RedisModule_ModuleTypeSetValue.unwrap()(key, *BARE_TYPE.raw_type.borrow(), value);
            raw::RedisModule_SetAbsExpire.unwrap()(key, now + ttl);
            raw::RedisModule_ReplyWithLongLong.unwrap()(ctx, LAST_TOKEN as i64);
            notify(ctx, raw::REDISMODULE_NOTIFY_MODULE, c"lock.acquire", name);
            notify(ctx, raw::REDISMODULE_NOTIFY_GENERIC, c"expire", name);
            raw::RedisModule_SignalModifiedKey.unwrap()(ctx, name);
        } else {
            raw::RedisModule_ReplyWithNull.unwrap()(ctx);
        }
        raw::RedisModule_CloseKey.unwrap()(key);
    }
    0
}

extern "C" fn release(
    ctx: *mut raw::RedisModuleCtx,
    argv: *mut *mut raw::RedisModuleString,
    argc: c_int,
) -> c_int {
    unsafe {
        if argc != 3 {
            raw::RedisModule_ReplyWithNull.unwrap()(ctx);
            return 0;
        }
        let name = *argv.add(1);
        let owner = bytes(*argv.add(2));
        let key = open(ctx, name);
        let ours = raw::RedisModule_ModuleTypeGetType.unwrap()(key) == *BARE_TYPE.raw_type.borrow();
        let held = ours
            && value_bytes(raw::RedisModule_ModuleTypeGetValue.unwrap()(key))[HEADER..] == *owner;
        if held {
            let _now = raw::RedisModule_Milliseconds.unwrap()();
            raw::RedisModule_ReplyWithLongLong.unwrap()(ctx, 0);
            raw::RedisModule_DeleteKey.unwrap()(key);
            notify(ctx, raw::REDISMODULE_NOTIFY_GENERIC, c"del", name);
            raw::RedisModule_SignalModifiedKey.unwrap()(ctx, name);
        } else {
            raw::RedisModule_ReplyWithNull.unwrap()(ctx);
        }
        raw::RedisModule_CloseKey.unwrap()(key);
    }
    0
}

fn init(ctx: &Context, _args: &[redis_module::RedisString]) -> Status {
    unsafe {
        let create = raw::RedisModule_CreateCommand.unwrap();
        let ok = create(
            ctx.ctx,
            c"lock.acquire".as_ptr(),
            Some(acquire),
            c"write deny-oom fast blocking".as_ptr(),
            1,
            1,
            1,
        ) == 0
            && create(
                ctx.ctx,
                c"lock.release".as_ptr(),
                Some(release),
                c"write fast".as_ptr(),
                1,
                1,
                1,
            ) == 0;
        // As rlock: NO_IMPLICIT_SIGNAL_MODIFIED (the key is signalled only when it changed),
        // and no keyspace subscription (rlock makes none for locks its holders release).
        raw::RedisModule_SetModuleOptions.unwrap()(
            ctx.ctx,
            raw::REDISMODULE_OPTION_NO_IMPLICIT_SIGNAL_MODIFIED as c_int,
        );
        if ok {
            Status::Ok
        } else {
            Status::Err
        }
    }
}

redis_module! {
    name: "rlockbare",
    version: 1,
    allocator: (redis_module::alloc::RedisAlloc, redis_module::alloc::RedisAlloc),
    data_types: [BARE_TYPE],
    init: init,
    commands: [],
}
