//! The three ways of taking a lock that part 1 compares, behind one interface.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Instant;

use crate::polling_client::PollingClient;
use crate::redisson_client::RedissonClient;
use crate::rlock_client::RlockClient;
use crate::server::RedisServer;
use crate::BenchResult;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Approach {
    /// `LOCK.ACQUIRE key owner ttl WAIT 0`: the client blocks in the server until handed the lock.
    Rlock,
    /// redis-py's `Lock`: `SET key token NX PX ttl`, sleep 100 ms on failure, Lua release.
    PollingSetNx,
    /// Redisson's `RLock.lock()`: Lua acquire, pub/sub unlock messages or the pttl to wake up.
    Redisson,
}

impl Approach {
    pub const ALL: [Approach; 3] = [Approach::Rlock, Approach::PollingSetNx, Approach::Redisson];

    pub fn label(self) -> &'static str {
        match self {
            Approach::Rlock => "rlock LOCK.ACQUIRE WAIT",
            Approach::PollingSetNx => "SET NX PX + 100 ms polling",
            Approach::Redisson => "Redisson (Lua + pub/sub)",
        }
    }

    /// A client of this approach on its own connection(s), contending for `key`.
    pub fn connect(self, server: &RedisServer, key: &str) -> BenchResult<Box<dyn Locker>> {
        Ok(match self {
            Approach::Rlock => Box::new(RlockClient::connect(server, key)?),
            Approach::PollingSetNx => Box::new(PollingClient::connect(server, key)?),
            Approach::Redisson => Box::new(RedissonClient::connect(server, key)?),
        })
    }
}

/// A lock just taken.
#[derive(Clone, Copy, Debug)]
pub struct Acquired {
    /// rlock's fencing token; the client-side locks have none.
    pub token: Option<i64>,
    /// When the reply that granted the lock arrived.
    pub replied_at: Instant,
}

/// The answer to a release.
#[derive(Clone, Copy, Debug)]
pub struct Released {
    /// False when the server refused: this client did not hold the lock (any more).
    pub accepted: bool,
    pub replied_at: Instant,
}

pub trait Locker: Send {
    /// Blocks until this client holds the lock, taken for `ttl_ms`.
    fn acquire(&mut self, ttl_ms: u64) -> BenchResult<Acquired>;

    /// Gives the lock up.
    fn release(&mut self) -> BenchResult<Released>;

    /// Counts the times this client found the lock taken and began to wait (for rlock: the
    /// times it sent a blocking acquire, whether or not it had to block).
    fn began_waiting(&self) -> Arc<AtomicU64>;
}
