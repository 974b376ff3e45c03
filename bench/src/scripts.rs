//! The Lua scripts of the client-side locks, called by EVALSHA.

use std::sync::OnceLock;

use crate::BenchResult;

/// redis-py's `Lock.release` (and most "SET NX PX" recipes): delete only if the value is ours.
/// KEYS[1] lock, ARGV[1] token. Returns 1 when deleted, 0 otherwise.
pub const COMPARE_AND_DELETE: &str = r#"if redis.call("get",KEYS[1]) == ARGV[1] then return redis.call("del",KEYS[1]) else return 0 end"#;

/// Redisson's `RedissonLock.tryLockInnerAsync`: a hash {lockName: holdCount} with a pexpire.
/// KEYS[1] lock, ARGV[1] lease ms, ARGV[2] lockName (client uuid:thread id).
/// Returns nil when acquired, else the lock's pttl.
pub const REDISSON_ACQUIRE: &str = "if ((redis.call('exists', KEYS[1]) == 0) \
or (redis.call('hexists', KEYS[1], ARGV[2]) == 1)) then \
redis.call('hincrby', KEYS[1], ARGV[2], 1); \
redis.call('pexpire', KEYS[1], ARGV[1]); \
return nil; \
end; \
return redis.call('pttl', KEYS[1]);";

/// Redisson's `RedissonLock.unlockInnerAsync`. KEYS[1] lock, KEYS[2] its pub/sub channel,
/// ARGV[1] unlock message (0), ARGV[2] lease ms, ARGV[3] lockName.
/// Returns nil when not held by lockName, 0 when still held (reentrant), 1 when freed.
pub const REDISSON_RELEASE: &str = "if (redis.call('hexists', KEYS[1], ARGV[3]) == 0) then \
return nil;\
end; \
local counter = redis.call('hincrby', KEYS[1], ARGV[3], -1); \
if (counter > 0) then \
redis.call('pexpire', KEYS[1], ARGV[2]); \
return 0; \
else \
redis.call('del', KEYS[1]); \
redis.call('publish', KEYS[2], ARGV[1]); \
return 1; \
end; \
return nil;";

/// Redisson's unlock message on the lock channel.
pub const REDISSON_UNLOCK_MESSAGE: &str = "0";

/// Redisson's channel for a lock: `redisson_lock__channel:{name}`.
pub fn redisson_channel(key: &str) -> String {
    format!("redisson_lock__channel:{{{key}}}")
}

/// The SHA1s EVALSHA needs, computed once.
pub struct Shas {
    pub compare_and_delete: String,
    pub redisson_acquire: String,
    pub redisson_release: String,
}

pub fn shas() -> &'static Shas {
    static SHAS: OnceLock<Shas> = OnceLock::new();
    SHAS.get_or_init(|| Shas {
        compare_and_delete: sha(COMPARE_AND_DELETE),
        redisson_acquire: sha(REDISSON_ACQUIRE),
        redisson_release: sha(REDISSON_RELEASE),
    })
}

fn sha(source: &str) -> String {
    redis::Script::new(source).get_hash().to_string()
}

/// SCRIPT LOAD of every script, so that EVALSHA never meets NOSCRIPT.
pub fn load_all(connection: &mut redis::Connection) -> BenchResult<()> {
    for source in [COMPARE_AND_DELETE, REDISSON_ACQUIRE, REDISSON_RELEASE] {
        let loaded: String = redis::cmd("SCRIPT")
            .arg("LOAD")
            .arg(source)
            .query(connection)?;
        if loaded != sha(source) {
            return Err(format!("SCRIPT LOAD answered {loaded}, expected {}", sha(source)).into());
        }
    }
    Ok(())
}
