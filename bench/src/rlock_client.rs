//! rlock's way: one blocking command; the server queues the waiter and hands it the lock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::locker::{Acquired, Locker, Released};
use crate::server::RedisServer;
use crate::BenchResult;

pub struct RlockClient {
    connection: redis::Connection,
    key: String,
    owner: String,
    began_waiting: Arc<AtomicU64>,
}

impl RlockClient {
    pub fn connect(server: &RedisServer, key: &str) -> BenchResult<RlockClient> {
        Ok(RlockClient {
            connection: server.connect()?,
            key: key.to_string(),
            owner: format!("{}:1", uuid::Uuid::new_v4()),
            began_waiting: Arc::new(AtomicU64::new(0)),
        })
    }
}

impl Locker for RlockClient {
    fn acquire(&mut self, ttl_ms: u64) -> BenchResult<Acquired> {
        self.began_waiting.fetch_add(1, Ordering::SeqCst);
        let token: Option<i64> = redis::cmd("LOCK.ACQUIRE")
            .arg(&self.key)
            .arg(&self.owner)
            .arg(ttl_ms)
            .arg("WAIT")
            .arg(0)
            .query(&mut self.connection)
            .map_err(|e| format!("LOCK.ACQUIRE {} ... WAIT 0 failed: {e}", self.key))?;
        let replied_at = Instant::now();
        match token {
            Some(token) => Ok(Acquired {
                token: Some(token),
                replied_at,
            }),
            None => Err(format!(
                "LOCK.ACQUIRE {} ... WAIT 0 (no time limit) answered nil",
                self.key
            )
            .into()),
        }
    }

    fn release(&mut self) -> BenchResult<Released> {
        let remaining: Option<i64> = redis::cmd("LOCK.RELEASE")
            .arg(&self.key)
            .arg(&self.owner)
            .query(&mut self.connection)
            .map_err(|e| format!("LOCK.RELEASE {} failed: {e}", self.key))?;
        Ok(Released {
            accepted: remaining.is_some(),
            replied_at: Instant::now(),
        })
    }

    fn began_waiting(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.began_waiting)
    }
}

/// `waiters` from `LOCK.INFO key` (RESP2 flat field/value array); 0 when the lock is free.
pub fn queued_waiters(connection: &mut redis::Connection, key: &str) -> BenchResult<i64> {
    let reply: redis::Value = redis::cmd("LOCK.INFO").arg(key).query(connection)?;
    let redis::Value::Array(fields) = reply else {
        return Ok(0);
    };
    for pair in fields.chunks(2) {
        let [name, value] = pair else { break };
        if field_name(name) == Some(b"waiters".as_slice()) {
            return match value {
                redis::Value::Int(waiters) => Ok(*waiters),
                other => {
                    Err(format!("LOCK.INFO {key}: waiters is {other:?}, not an integer").into())
                }
            };
        }
    }
    Err(format!("LOCK.INFO {key} has no waiters field: {fields:?}").into())
}

/// A field name, sent as a bulk or a simple string.
fn field_name(value: &redis::Value) -> Option<&[u8]> {
    match value {
        redis::Value::BulkString(bytes) => Some(bytes),
        redis::Value::SimpleString(text) => Some(text.as_bytes()),
        _ => None,
    }
}
