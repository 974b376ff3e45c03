//! Module configs (`CONFIG SET/GET lock.*`, redis.conf, `MODULE LOADEX ... CONFIG`): limits an
//! operator may lower, and the split allowance of a promotion. The server checks each value
//! against its range and refuses anything outside it with an error, changing nothing.

use std::ffi::{c_char, c_longlong, c_uint, c_void, CStr};
use std::os::raw::c_int;
use std::sync::atomic::{AtomicI64, Ordering};

use redis_module::raw::{self, RedisModuleCtx, RedisModuleString};

use crate::core::request::{Limits, MAX_OWNER_BYTES, MAX_TTL_MS};
use crate::core::state::tokens::DEFAULT_SPLIT_ALLOWANCE_MS;
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
// Issue 21 (effects/monitor.rs): the lock log, the losses kept for LOCK.LOST, LOCK.TOP.
const LOG_MAX_LEN: usize = 4;
const LOG_WAIT_THRESHOLD: usize = 5;
const LOG_HOLD_THRESHOLD: usize = 6;
const LOST_MAX_LEN: usize = 7;
const LOST_RETENTION: usize = 8;
const TOP_SIZE: usize = 9;
const TOP_HALFLIFE: usize = 10;
const COUNT: usize = 11;
const DAY_MS: i64 = 24 * 3600 * 1000;

/// The longest split allowance: a day of clock per promotion (core/state/tokens.rs: the budget runs
/// to the year 2248, so even a day per promotion leaves room for tens of thousands of them).
const MAX_SPLIT_ALLOWANCE_MS: i64 = 24 * 3600 * 1000;

const CONFIGS: [NumericConfig; COUNT] = [
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
    // Entries the lock log keeps (0: logs nothing); each at most ~2.2 KB.
    NumericConfig {
        name: c"log-max-len",
        default: 128,
        min: 0,
        max: 10_000,
    },
    // A wait this long (ms) or longer is logged when it ends (0: never).
    NumericConfig {
        name: c"log-wait-threshold-ms",
        default: 1000,
        min: 0,
        max: 30 * DAY_MS,
    },
    // A hold this long (ms) or longer is logged when released (0: never).
    NumericConfig {
        name: c"log-hold-threshold-ms",
        default: 60_000,
        min: 0,
        max: 30 * DAY_MS,
    },
    // Losses kept for LOCK.LOST (0: none); each at most ~4.3 KB, typically ~200 bytes.
    NumericConfig {
        name: c"lost-max-len",
        default: 10_000,
        min: 0,
        max: 1_000_000,
    },
    // How long (ms) a loss stays available to LOCK.LOST.
    NumericConfig {
        name: c"lost-retention-ms",
        default: 3_600_000,
        min: 1000,
        max: 30 * DAY_MS,
    },
    // Keys LOCK.TOP tracks (0: off); each ~2 KB.
    NumericConfig {
        name: c"top-size",
        default: 64,
        min: 0,
        max: 1024,
    },
    // Every this many ms the hot keys' weights halve (0: never).
    NumericConfig {
        name: c"top-halflife-ms",
        default: 60_000,
        min: 0,
        max: 30 * DAY_MS,
    },
];

static VALUES: [AtomicI64; COUNT] = [
    AtomicI64::new(CONFIGS[MAX_TTL].default),
    AtomicI64::new(CONFIGS[MAX_OWNER].default),
    AtomicI64::new(CONFIGS[MAX_WAITERS].default),
    AtomicI64::new(CONFIGS[SPLIT_ALLOWANCE].default),
    AtomicI64::new(CONFIGS[LOG_MAX_LEN].default),
    AtomicI64::new(CONFIGS[LOG_WAIT_THRESHOLD].default),
    AtomicI64::new(CONFIGS[LOG_HOLD_THRESHOLD].default),
    AtomicI64::new(CONFIGS[LOST_MAX_LEN].default),
    AtomicI64::new(CONFIGS[LOST_RETENTION].default),
    AtomicI64::new(CONFIGS[TOP_SIZE].default),
    AtomicI64::new(CONFIGS[TOP_HALFLIFE].default),
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

/// How far a promotion lifts tokens ahead of the clock, in ms (core/state/tokens.rs `promote`).
pub fn split_allowance_ms() -> u64 {
    value(SPLIT_ALLOWANCE)
}

fn size(index: usize) -> usize {
    usize::try_from(value(index)).unwrap_or(0)
}

/// Entries the lock log keeps.
pub fn log_max_len() -> usize {
    size(LOG_MAX_LEN)
}

/// Waits at least this long (ms) are logged; 0: none.
pub fn log_wait_threshold_ms() -> u64 {
    value(LOG_WAIT_THRESHOLD)
}

/// Holds at least this long (ms) are logged at release; 0: none.
pub fn log_hold_threshold_ms() -> u64 {
    value(LOG_HOLD_THRESHOLD)
}

/// Losses kept for LOCK.LOST.
pub fn lost_max_len() -> usize {
    size(LOST_MAX_LEN)
}

/// How long a loss stays available, in ms.
pub fn lost_retention_ms() -> u64 {
    value(LOST_RETENTION)
}

/// Keys LOCK.TOP tracks.
pub fn top_size() -> usize {
    size(TOP_SIZE)
}

/// The hot keys' half-life, in ms (0: none).
pub fn top_halflife_ms() -> u64 {
    value(TOP_HALFLIFE)
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
