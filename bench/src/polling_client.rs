//! redis-py's `Lock`: `SET key token NX PX ttl`; on failure sleep 100 ms and try again; release
//! with the compare-and-delete script.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::locker::{Acquired, Locker, Released};
use crate::scripts;
use crate::server::RedisServer;
use crate::BenchResult;

/// redis-py's default `sleep` between attempts.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);

pub struct PollingClient {
    connection: redis::Connection,
    key: String,
    /// A fresh random token per acquisition, as redis-py does.
    token: String,
    release_sha: String,
    began_waiting: Arc<AtomicU64>,
}

impl PollingClient {
    pub fn connect(server: &RedisServer, key: &str) -> BenchResult<PollingClient> {
        Ok(PollingClient {
            connection: server.connect()?,
            key: key.to_string(),
            token: String::new(),
            release_sha: scripts::shas().compare_and_delete.clone(),
            began_waiting: Arc::new(AtomicU64::new(0)),
        })
    }

    fn try_set(&mut self, ttl_ms: u64) -> BenchResult<bool> {
        let reply: Option<String> = redis::cmd("SET")
            .arg(&self.key)
            .arg(&self.token)
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms)
            .query(&mut self.connection)
            .map_err(|e| format!("SET {} NX PX failed: {e}", self.key))?;
        Ok(reply.is_some())
    }
}

impl Locker for PollingClient {
    fn acquire(&mut self, ttl_ms: u64) -> BenchResult<Acquired> {
        self.token = uuid::Uuid::new_v4().simple().to_string();
        loop {
            if self.try_set(ttl_ms)? {
                return Ok(Acquired {
                    token: None,
                    replied_at: Instant::now(),
                });
            }
            self.began_waiting.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    fn release(&mut self) -> BenchResult<Released> {
        let deleted: i64 = redis::cmd("EVALSHA")
            .arg(&self.release_sha)
            .arg(1)
            .arg(&self.key)
            .arg(&self.token)
            .query(&mut self.connection)
            .map_err(|e| format!("compare-and-delete of {} failed: {e}", self.key))?;
        Ok(Released {
            accepted: deleted == 1,
            replied_at: Instant::now(),
        })
    }

    fn began_waiting(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.began_waiting)
    }
}
