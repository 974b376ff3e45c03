//! Module configs (`CONFIG SET/GET lock.*`, redis.conf, `MODULE LOADEX ... CONFIG`): limits an
//! operator may lower, and the split allowance of a promotion. The server checks each value
//! against its range and refuses anything outside it with an error, changing nothing.

use std::ffi::{c_char, c_longlong, c_uint, c_void, CStr};
use std::os::raw::c_int;
use std::sync::atomic::{AtomicI64, Ordering};

use redis_module::raw::{self, RedisModuleCtx, RedisModuleString};

use crate::core::request::{Limits, MAX_OWNER_BYTES, MAX_TTL_MS};
use crate::core::tokens::DEFAULT_SPLIT_ALLOWANCE_MS;
use crate::glue::server::api::rm;
use crate::glue::server::context::{log, OK};

struct NumericConfig {
    name: &'static CStr,
    default: i64,
    min: i64,
    max: i64,
}

const MAX_TTL: usize = 0;
const MAX_OWNER: usize = 1;
const MAX_WAITERS: usize = 2;
const SPLIT_ALLOWANCE: usize = 3;

/// The longest split allowance: a day of clock per promotion (core/tokens.rs: the budget runs
/// to the year 2248, so even a day per promotion leaves room for tens of thousands of them).
const MAX_SPLIT_ALLOWANCE_MS: i64 = 24 * 3600 * 1000;

const CONFIGS: [NumericConfig; 4] = [
    NumericConfig {
        name: c"max-ttl",
        default: MAX_TTL_MS as i64,
        min: 1,
        max: MAX_TTL_MS as i64,
    },
    NumericConfig {
        name: c"max-owner-bytes",
        default: MAX_OWNER_BYTES as i64,
        min: 1,
        max: MAX_OWNER_BYTES as i64,
    },
    NumericConfig {
        name: c"max-waiters",
        default: 10_000,
        min: 1,
        max: i64::MAX,
    },
    NumericConfig {
        name: c"split-allowance-ms",
        default: DEFAULT_SPLIT_ALLOWANCE_MS as i64,
        min: 1000,
        max: MAX_SPLIT_ALLOWANCE_MS,
    },
];

static VALUES: [AtomicI64; 4] = [
    AtomicI64::new(CONFIGS[MAX_TTL].default),
    AtomicI64::new(CONFIGS[MAX_OWNER].default),
    AtomicI64::new(CONFIGS[MAX_WAITERS].default),
    AtomicI64::new(CONFIGS[SPLIT_ALLOWANCE].default),
];

fn value(index: usize) -> u64 {
    u64::try_from(VALUES[index].load(Ordering::Relaxed)).unwrap_or(0)
}

/// The request limits in force now.
pub fn limits() -> Limits {
    Limits {
        max_ttl_ms: value(MAX_TTL),
        max_owner_bytes: usize::try_from(value(MAX_OWNER)).unwrap_or(MAX_OWNER_BYTES),
    }
}

/// How many clients may wait for one lock.
pub fn max_waiters() -> u64 {
    value(MAX_WAITERS)
}

/// How far a promotion lifts tokens ahead of the clock, in ms (core/tokens.rs `promote`).
pub fn split_allowance_ms() -> u64 {
    value(SPLIT_ALLOWANCE)
}

/// Registers the configs and loads their values from the config file or MODULE LOADEX; false
/// (after logging why) if the server refused.
pub fn register(ctx: *mut RedisModuleCtx) -> bool {
    for (index, config) in CONFIGS.iter().enumerate() {
        // SAFETY: ctx is the loading module's context; the name is static and the callbacks
        // live as long as the module; privdata is the config's index, never dereferenced.
        let registered = unsafe {
            rm!(RedisModule_RegisterNumericConfig)(
                ctx,
                config.name.as_ptr(),
                config.default,
                raw::REDISMODULE_CONFIG_DEFAULT as c_uint,
                config.min,
                config.max,
                Some(get),
                Some(set),
                None,
                index as *mut c_void,
            )
        };
        if registered != OK {
            log(
                ctx,
                c"warning",
                &format!("rlock: cannot register config lock.{:?}", config.name),
            );
            return false;
        }
    }
    // SAFETY: as above.
    if unsafe { rm!(RedisModule_LoadConfigs)(ctx) } != OK {
        log(ctx, c"warning", "rlock: cannot load the lock.* configs");
        return false;
    }
    true
}

unsafe extern "C" fn get(_name: *const c_char, privdata: *mut c_void) -> c_longlong {
    VALUES
        .get(privdata as usize)
        .map_or(0, |value| value.load(Ordering::Relaxed))
}

/// The server already checked the range.
unsafe extern "C" fn set(
    _name: *const c_char,
    new: c_longlong,
    privdata: *mut c_void,
    _err: *mut *mut RedisModuleString,
) -> c_int {
    match VALUES.get(privdata as usize) {
        Some(value) => {
            value.store(new, Ordering::Relaxed);
            OK
        }
        None => raw::REDISMODULE_ERR as c_int,
    }
}
