//! The lock data type: how the server saves, loads, rewrites, measures, digests, copies and
//! frees a lock value.

use std::ffi::{c_char, c_int, c_void};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use redis_module::native_types::RedisType;
use redis_module::raw::{
    self, RedisModuleDigest, RedisModuleIO, RedisModuleKeyOptCtx, RedisModuleString,
    RedisModuleType,
};

use crate::core::stored::encoding::{
    check_expiries, decode_holds, decode_value, encode_holds, Value, ENCODING_VERSION,
};
use crate::core::Millis;
use crate::glue::effects::keys::{LockKey, OwnedString};
use crate::glue::effects::replicate::{
    self, ApplyArgs, APPLY_COMMAND, APPLY_FORMAT, HOLDS_FORMAT, HOLDS_TAG,
};
use crate::glue::effects::signals::Event;
use crate::glue::effects::token_counter::{self, last_token, Beyond};
use crate::glue::effects::{lock_scan, moved_values};
use crate::glue::server::api::rm;
use crate::glue::server::context::{detached, log, now, Ctx};
use crate::glue::server::entry::{run_callback, string_bytes};
use crate::glue::server::key_ref::KeyRef;
use crate::glue::server::timers::{self, propagating_timer};
use crate::glue::server::value::{free_value, into_value, into_value_checked, stored, Stored};

/// The type's name as `TYPE key` shows it (Redis wants exactly 9 characters).
pub const TYPE_NAME: &str = "rlocklock";

pub static LOCK_TYPE: RedisType = RedisType::new(
    TYPE_NAME,
    ENCODING_VERSION,
    raw::RedisModuleTypeMethods {
        version: raw::REDISMODULE_TYPE_METHOD_VERSION as u64,
        rdb_load: Some(rdb_load),
        rdb_save: Some(rdb_save),
        aof_rewrite: Some(aof_rewrite),
        mem_usage: Some(mem_usage),
        digest: Some(digest),
        free: Some(free),
        aux_load: Some(aux_load),
        aux_save: Some(aux_save),
        aux_save2: None,
        aux_save_triggers: raw::REDISMODULE_AUX_BEFORE_RDB as i32,
        free_effort: None,
        unlink: None,
        copy: Some(copy),
        defrag: None,
        copy2: None,
        free_effort2: None,
        mem_usage2: Some(mem_usage2),
        unlink2: Some(crate::glue::hooks::events::lock_unlinked),
    },
);

/// The registered type handle (kept by value.rs for the key handles).
pub fn registered_type() -> *mut RedisModuleType {
    *LOCK_TYPE.raw_type.borrow()
}

/// Aux data is one unsigned, the last token handed out, in every encoding version so far
/// (the server tags it with the type's encoding version).
const AUX_LATEST_VERSION: c_int = ENCODING_VERSION;

/// A value loaded from an RDB file or a replica's full sync (LOADING), or restored by RESTORE
/// or MIGRATE (the server is not loading). A RESTORE on a master refuses a value no grant can
/// have made (a token beyond the ceiling of core/state/tokens.rs, a holder expiring beyond any ttl):
/// the command fails and nothing changes. Loading never refuses (the server would not start,
/// or a replica would not sync), nor does a replica replaying its master's RESTORE: the key is
/// kept as it is, and a token beyond the ceiling is left out of the counter. Either way it is
/// logged and counted (`lock_tokens_refused`).
unsafe extern "C" fn rdb_load(rdb: *mut RedisModuleIO, encver: c_int) -> *mut c_void {
    run_callback("rdb_load", std::ptr::null_mut(), || {
        let mut len = 0usize;
        // SAFETY: rdb is the live loading stream; the buffer is ours to free.
        let buffer = unsafe { rm!(RedisModule_LoadStringBuffer)(rdb, &mut len) };
        if buffer.is_null() || unsafe { rm!(RedisModule_IsIOError)(rdb) } != 0 {
            return std::ptr::null_mut();
        }
        // SAFETY: the server returned len bytes at buffer.
        let bytes = unsafe { std::slice::from_raw_parts(buffer.cast::<u8>(), len) };
        let decoded = decode_value(encver, bytes);
        // SAFETY: allocated by LoadStringBuffer, freed once.
        unsafe { rm!(RedisModule_Free)(buffer.cast::<c_void>()) };
        let value = match decoded {
            Ok(value) => value,
            Err(error) => {
                log(
                    std::ptr::null_mut(),
                    c"warning",
                    &format!("rlock: refusing a corrupt lock in the RDB payload: {error:?}"),
                );
                return std::ptr::null_mut();
            }
        };
        // SAFETY: rdb is the live loading stream.
        let how = unsafe { how_loaded(rdb) };
        if how == Loaded::Restored {
            if let Err(error) = check_expiries(&value, now()) {
                log(
                    std::ptr::null_mut(),
                    c"warning",
                    &format!("rlock: refusing a restored lock no grant can have made: {error:?}"),
                );
                return std::ptr::null_mut();
            }
        }
        let (source, beyond) = match how {
            Loaded::Restored => ("a RESTORE or MIGRATE payload", Beyond::Refuse),
            Loaded::Replayed => ("a RESTORE from this replica's master", Beyond::Ignore),
            Loaded::Loading => ("a lock key in the RDB data being loaded", Beyond::Ignore),
        };
        if !token_counter::take_in(&tokens_of(&value), source, beyond) {
            return std::ptr::null_mut();
        }
        match value {
            Value::Plain(lock) => into_value(lock),
            Value::Holds(holds) => {
                let stored = into_value_checked(encode_holds(&holds));
                if let (true, Some(value)) = (how != Loaded::Loading, stored) {
                    // SAFETY: rdb is the live loading stream.
                    unsafe { restored_key_expires_with_its_holders(rdb, value as usize) };
                }
                stored.unwrap_or(std::ptr::null_mut())
            }
        }
    })
}

/// Every fencing token a loaded value carries.
fn tokens_of(value: &Value) -> Vec<u64> {
    match value {
        Value::Plain(lock) => vec![lock.token()],
        Value::Holds(holds) => holds.holders.iter().map(|holder| holder.token).collect(),
    }
}

/// Why rdb_load runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Loaded {
    /// An RDB file, an AOF's RDB preamble, a replica's full sync or DEBUG RELOAD.
    Loading,
    /// RESTORE (or MIGRATE's RESTORE-ASKING) on a master.
    Restored,
    /// RESTORE on a replica: its master's, whose outcome the replica must follow.
    Replayed,
}

/// # Safety
/// `rdb` must be the live loading stream.
unsafe fn how_loaded(rdb: *mut RedisModuleIO) -> Loaded {
    // SAFETY: reads of a function pointer written once by RedisModule_Init; rdb is live, and
    // the context the server makes for it lives as long as the stream.
    let ctx = match unsafe { raw::RedisModule_GetContextFromIO } {
        Some(context_of) => unsafe { context_of(rdb) },
        None => return Loaded::Loading,
    };
    if ctx.is_null() {
        return Loaded::Loading;
    }
    let flags = Ctx(ctx).flags();
    if flags & raw::REDISMODULE_CTX_FLAGS_LOADING != 0 {
        Loaded::Loading
    } else if flags & raw::REDISMODULE_CTX_FLAGS_SLAVE != 0 {
        Loaded::Replayed
    } else {
        Loaded::Restored
    }
}

/// Keys restored with holds of their own expiries (RESTORE, MIGRATE), by database and name: a
/// RESTORE gives the key the ttl it is told (0: none), which may outlast every holder, and a
/// key whose every hold has expired must go. A timer sets each key's expiry to its latest
/// holder's once the command is done (rdb_load runs before the key exists).
static RESTORED: Mutex<Vec<u64>> = Mutex::new(Vec::new());

/// The tracking ids (moved_values.rs) of the values restored since the timer last ran.
fn restored_keys() -> std::sync::MutexGuard<'static, Vec<u64>> {
    // A panic while the list was held cannot leave it half-changed: take it as it is.
    RESTORED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Notes a value restored (or copied from one) at `at` (None: not known), and arms the timer
/// that fixes its key's expiry. Its address is tracked (moved_values.rs) in case a RENAME,
/// MOVE or SWAPDB in the same transaction or script moves it first.
fn note_restored(at: Option<KeyRef>, value: usize) {
    let Some(timer_ctx) = detached() else {
        return;
    };
    let id = moved_values::track_restored(value, at);
    let mut keys = restored_keys();
    keys.push(id);
    if keys.len() == 1 {
        timers::start(timer_ctx, 0, restored_keys_due, 0);
    }
}

/// Notes the key being restored (the value at `value`) and arms the timer that fixes its
/// expiry.
///
/// # Safety
/// `rdb` must be the live loading stream.
unsafe fn restored_key_expires_with_its_holders(rdb: *mut RedisModuleIO, value: usize) {
    // SAFETY: reads of function pointers written once by RedisModule_Init.
    let (key_name, db_id) = unsafe {
        (
            raw::RedisModule_GetKeyNameFromIO,
            raw::RedisModule_GetDbIdFromIO,
        )
    };
    let at = key_name.zip(db_id).and_then(|(key_name, db_id)| {
        // SAFETY: rdb is live; the name lives as long as the stream.
        let name = unsafe { key_name(rdb) };
        // SAFETY: as above.
        (!name.is_null()).then(|| unsafe { KeyRef::new(db_id(rdb), string_bytes(name)) })
    });
    note_restored(at, value);
}

propagating_timer!(
    restored_keys_due,
    "restored lock keys",
    expire_restored_keys
);

/// Restored keys expire with their latest holder (on a master, which propagates it).
fn expire_restored_keys(ctx: Ctx, _: u64) {
    let ids = std::mem::take(&mut *restored_keys());
    // A replica follows its master, which fixes the key and propagates it.
    if !ctx.has_flag(raw::REDISMODULE_CTX_FLAGS_MASTER) {
        for id in ids {
            moved_values::restored_done(id);
        }
        return;
    }
    // Where they were restored, or wherever a RENAME, MOVE, SWAPDB or COPY in the same
    // transaction put them; those freed since (deleted, or replaced by our own write, which set
    // their expiry) are dropped.
    lock_scan::find_values(ctx, ids, restored_found, restored_not_found, 0);
}

fn restored_found(ctx: Ctx, db: i32, name: &[u8], id: u64, _: u64) {
    // Untracked first: the fix may rewrite the value, and the tracking would follow it.
    moved_values::restored_done(id);
    expire_with_latest_holder(ctx, db, name, now());
}

fn restored_not_found(not_found: &[u64], _: u64) {
    for &id in not_found {
        moved_values::restored_done(id);
    }
}

/// Makes the key at `name` expire with its latest holder, if it has none or a later expiry:
/// deleted when every holder has expired already. Propagated as the key's whole state (or its
/// deletion), which sets the same expiry on replicas and in the AOF.
fn expire_with_latest_holder(ctx: Ctx, db: i32, name: &[u8], now: Millis) {
    ctx.select_db(db);
    let bytes = name;
    let name = OwnedString::new(ctx, name);
    let mut key = LockKey::open_writable(ctx, name.as_ptr());
    let Ok(Some(holds)) = key.holds() else {
        return;
    };
    // None: a holder never expires (a plain lock restored without a ttl is such a one).
    let Some(latest) = holds.key_expiry() else {
        return;
    };
    if key.expiry().is_some_and(|at| at <= latest) {
        return;
    }
    if latest <= now {
        key.delete();
        replicate::deletion(ctx, name.as_ptr());
        // Counted as an expiry; its waiters, if any, are served as after one.
        key.notify_expired();
        crate::glue::waiting::handoff::lock_expired(db, bytes);
    } else {
        key.set_expiry(latest);
        replicate::holds_state(ctx, name.as_ptr(), &holds);
        key.notify(Event::Expire);
    }
}

unsafe extern "C" fn rdb_save(rdb: *mut RedisModuleIO, value: *mut c_void) {
    run_callback("rdb_save", (), || {
        // SAFETY: rdb is the live saving stream of this call.
        unsafe { crate::glue::waiting::migration::note_serialized(rdb) };
        // SAFETY: the server passes a value of our type.
        let bytes = match unsafe { stored(value) } {
            Some(Stored::Plain(lock)) => lock.as_bytes(),
            Some(Stored::Holds(bytes)) => bytes,
            None => return,
        };
        // SAFETY: rdb is the live saving stream; the server copies the buffer.
        unsafe {
            rm!(RedisModule_SaveStringBuffer)(rdb, bytes.as_ptr().cast::<c_char>(), bytes.len())
        };
    })
}

unsafe extern "C" fn aof_rewrite(
    aof: *mut RedisModuleIO,
    key: *mut RedisModuleString,
    value: *mut c_void,
) {
    run_callback("aof_rewrite", (), || {
        // SAFETY: the server passes a value of our type.
        let lock = match unsafe { stored(value) } {
            Some(Stored::Plain(lock)) => lock,
            Some(Stored::Holds(state)) => {
                // Every holder's absolute expiry is in the state; the key's (the latest)
                // follows as PEXPIREAT.
                // SAFETY: the format matches the arguments one for one.
                unsafe {
                    rm!(RedisModule_EmitAOF)(
                        aof,
                        APPLY_COMMAND.as_ptr(),
                        HOLDS_FORMAT.as_ptr(),
                        key,
                        HOLDS_TAG.as_ptr(),
                        last_token() as i64,
                        state.as_ptr().cast::<c_char>(),
                        state.len(),
                    )
                };
                return;
            }
            None => return,
        };
        // No expiry in the command: the server writes the key's PEXPIREAT right after it.
        let a = ApplyArgs::of(lock, None);
        let (command, format) = (APPLY_COMMAND.as_ptr(), APPLY_FORMAT.as_ptr());
        // SAFETY: the format matches the arguments one for one; the owner lives through the call.
        unsafe {
            rm!(RedisModule_EmitAOF)(
                aof,
                command,
                format,
                key,
                a.owner,
                a.owner_len,
                a.count,
                a.expires_at,
                a.token,
                a.counter,
            )
        };
    })
}

/// MEMORY USAGE without the key (a server that does not pass it): the value alone.
unsafe extern "C" fn mem_usage(value: *const c_void) -> usize {
    // SAFETY: the server passes a value of our type, which is only read.
    run_callback("mem_usage", 0, || unsafe { value_memory(value) })
}

/// MEMORY USAGE of a lock key (Redis 7.0+, Valkey): what the value really costs in the
/// allocator, the two small objects the server keeps per module value and leaves out of its own
/// count, and the entries of the clients queued for the key.
unsafe extern "C" fn mem_usage2(
    ctx: *mut RedisModuleKeyOptCtx,
    value: *const c_void,
    _sample_size: usize,
) -> usize {
    run_callback("mem_usage", 0, || {
        // SAFETY: the server passes a value of our type, which is only read.
        let own = unsafe { value_memory(value) };
        // SAFETY: ctx is the live key context of this call.
        let queued = unsafe { key_of(ctx) }.map_or(0, |(db, name)| {
            crate::glue::waiting::waiters::queue_memory(db, name)
        });
        own.saturating_add(queued)
    })
}

/// The key and database a MEMORY USAGE is for, if the server says.
///
/// # Safety
/// `ctx` must be null or a live key context.
unsafe fn key_of<'a>(ctx: *mut RedisModuleKeyOptCtx) -> Option<(i32, &'a [u8])> {
    if ctx.is_null() {
        return None;
    }
    // SAFETY: reads of function pointers written once by RedisModule_Init; ctx is live.
    let (key_name, db_id) = unsafe {
        ({ raw::RedisModule_GetKeyNameFromOptCtx }?, {
            raw::RedisModule_GetDbIdFromOptCtx
        }?)
    };
    // SAFETY: as above; the name lives as long as the call.
    let name = unsafe { key_name(ctx) };
    if name.is_null() {
        return None;
    }
    // SAFETY: a live server string.
    Some((unsafe { db_id(ctx) }, unsafe { string_bytes(name) }))
}

/// A value's real cost: its allocation as the allocator sized it, plus the object (`robj`) and
/// the module-value wrapper (a type pointer and the value pointer) the server allocates for
/// every module value. MEMORY USAGE counts both for its own types (a string's `robj`, its
/// `sds`), but leaves them to the module for a module type.
///
/// # Safety
/// `value` must be null or a live value of ours.
unsafe fn value_memory(value: *const c_void) -> usize {
    // SAFETY: the caller promises a live value of ours.
    let bytes = unsafe { crate::glue::server::value::size_of(value.cast_mut()) };
    if bytes == 0 {
        return 0;
    }
    // SAFETY: every value of ours is one allocation of the server's allocator (RedisAlloc).
    let allocated = match unsafe { raw::RedisModule_MallocSize } {
        Some(malloc_size) => unsafe { malloc_size(value.cast_mut()) }.max(bytes),
        None => bytes,
    };
    allocated + server_objects()
}

/// `robj` (type, encoding, LRU bits, refcount, a pointer) and `moduleValue` (two pointers).
const SERVER_OBJECT_BYTES: [usize; 2] = [
    4 + 4 + std::mem::size_of::<*const c_void>(),
    2 * std::mem::size_of::<*const c_void>(),
];

/// What the allocator gives for SERVER_OBJECT_BYTES, probed once (0: not yet).
static SERVER_OBJECTS: AtomicUsize = AtomicUsize::new(0);

fn server_objects() -> usize {
    let known = SERVER_OBJECTS.load(Ordering::Relaxed);
    if known != 0 {
        return known;
    }
    let total = SERVER_OBJECT_BYTES
        .iter()
        .map(|&size| allocation_for(size))
        .sum();
    SERVER_OBJECTS.store(total, Ordering::Relaxed);
    total
}

/// How many bytes the server's allocator hands out for a request of `size` (its size class).
fn allocation_for(size: usize) -> usize {
    // SAFETY: reads of function pointers written once by RedisModule_Init.
    let calls = unsafe {
        (
            raw::RedisModule_Alloc,
            raw::RedisModule_MallocSize,
            raw::RedisModule_Free,
        )
    };
    let (Some(alloc), Some(malloc_size), Some(free)) = calls else {
        return size;
    };
    // SAFETY: a fresh allocation, measured and freed at once.
    unsafe {
        let probe = alloc(size);
        if probe.is_null() {
            return size;
        }
        let allocated = malloc_size(probe);
        free(probe);
        allocated.max(size)
    }
}

unsafe extern "C" fn digest(md: *mut RedisModuleDigest, value: *mut c_void) {
    run_callback("digest", (), || {
        // SAFETY: the server passes a value of our type.
        let lock = match unsafe { stored(value) } {
            Some(Stored::Plain(lock)) => lock,
            Some(Stored::Holds(bytes)) => {
                // Without the client ids, which differ between a master and its replicas.
                let Ok(holds) = decode_holds(bytes, false) else {
                    return;
                };
                let state = encode_holds(&holds);
                // SAFETY: md is the live digest; the buffer is read during the call.
                unsafe {
                    rm!(RedisModule_DigestAddStringBuffer)(md, state.as_ptr().cast(), state.len());
                    rm!(RedisModule_DigestEndSequence)(md);
                }
                return;
            }
            None => return,
        };
        let owner = lock.owner();
        // SAFETY: md is the live digest; the buffer is read during the call. The expiry is the
        // key's, which the server digests itself.
        unsafe {
            rm!(RedisModule_DigestAddStringBuffer)(md, owner.as_ptr().cast(), owner.len());
            rm!(RedisModule_DigestAddLongLong)(md, i64::from(lock.count()));
            rm!(RedisModule_DigestAddLongLong)(md, lock.token() as i64);
            rm!(RedisModule_DigestEndSequence)(md);
        }
    })
}

/// May run on a background thread (lazy free): it touches nothing but the value.
unsafe extern "C" fn free(value: *mut c_void) {
    moved_values::freed(value as usize);
    // SAFETY: every value of our type comes from into_value; the server frees it once.
    unsafe { free_value(value) };
}

unsafe extern "C" fn copy(
    _from: *mut RedisModuleString,
    _to: *mut RedisModuleString,
    value: *const c_void,
) -> *mut c_void {
    run_callback("copy", std::ptr::null_mut(), || {
        // SAFETY: the server passes a value of our type, which copy only reads.
        match unsafe { stored(value.cast_mut()) } {
            Some(Stored::Plain(lock)) => into_value(lock.to_boxed()),
            // A copy is not bound to the connection: its session holds end by their ttl.
            Some(Stored::Holds(bytes)) => {
                let copied = decode_holds(bytes, false)
                    .ok()
                    .and_then(|holds| into_value_checked(encode_holds(&holds)))
                    .unwrap_or(std::ptr::null_mut());
                if !copied.is_null() && moved_values::is_restored(value as usize) {
                    // A COPY of a key restored in the same transaction: its expiry is fixed
                    // too, wherever the copy is.
                    note_restored(None, copied as usize);
                }
                copied
            }
            None => std::ptr::null_mut(),
        }
    })
}

unsafe extern "C" fn aux_save(rdb: *mut RedisModuleIO, _when: c_int) {
    run_callback("aux_save", (), || {
        // SAFETY: rdb is the live saving stream. Version 3 adds the lead (core/state/tokens.rs).
        unsafe {
            rm!(RedisModule_SaveUnsigned)(rdb, last_token());
            rm!(RedisModule_SaveUnsigned)(rdb, token_counter::lead());
        };
    })
}

unsafe extern "C" fn aux_load(rdb: *mut RedisModuleIO, encver: c_int, _when: c_int) -> c_int {
    run_callback("aux_load", raw::REDISMODULE_ERR as c_int, || {
        if !(1..=AUX_LATEST_VERSION).contains(&encver) {
            return raw::REDISMODULE_ERR as c_int;
        }
        // SAFETY: rdb is the live loading stream.
        let last = unsafe { rm!(RedisModule_LoadUnsigned)(rdb) };
        let lead = if encver >= 3 {
            // SAFETY: as above.
            unsafe { rm!(RedisModule_LoadUnsigned)(rdb) }
        } else {
            0
        };
        if unsafe { rm!(RedisModule_IsIOError)(rdb) } != 0 {
            return raw::REDISMODULE_ERR as c_int;
        }
        token_counter::restore(last, lead);
        raw::REDISMODULE_OK as c_int
    })
}
