//! [`MultiLock`]: several keys taken in one step, all or none (`LOCK.MACQUIRE`).
//!
//! The server takes every key (each with its own fencing token) or none, and a waiting call
//! waits in every key's queue at once: granted all its keys in one step, never some. Two
//! `MultiLock`s over the same keys in any order cannot deadlock; a wait that would close a
//! cycle of waits with other locks fails at once with [`Error::Deadlock`]. In Redis Cluster the
//! keys must share a slot: give them one hash tag (`{bank}:acct:7`).
//!
//! ```no_run
//! # fn main() -> Result<(), rlock_client::Error> {
//! use std::time::Duration;
//! use rlock_client::MultiLock;
//!
//! let client = redis::Client::open("redis://127.0.0.1/")?;
//! let mut conn = client.get_connection()?;
//! // The two-account transfer: both accounts in one step, whatever their order.
//! let lock = MultiLock::new(["{bank}:acct:7", "{bank}:acct:9"])
//!     .ttl(Duration::from_secs(10))
//!     .wait(Duration::from_secs(5));
//! let guard = lock.acquire(&mut conn)?;
//! println!("tokens {:?}", guard.tokens());
//! guard.release(&mut conn)?;
//! # Ok(()) }
//! ```

use std::time::Duration;

use redis::{ConnectionLike, Value};

use crate::error::{Error, Result};
use crate::lock::{millis, MAX_OWNER_LEN};

/// The most keys one `LOCK.MACQUIRE` takes (the server's bound).
pub const MAX_KEYS: usize = 1024;

/// A lock over several keys with a fixed ttl (renew with [`MultiGuard::renew`]).
#[derive(Clone, Debug)]
pub struct MultiLock {
    keys: Vec<Vec<u8>>,
    owner: Vec<u8>,
    ttl: Duration,
    wait: Option<Duration>,
    shared: bool,
}

impl MultiLock {
    /// A lock on `keys` (distinct, 1 to 1024) with a fresh owner id (a UUID v4), a ttl of 30 s
    /// and no waiting.
    pub fn new<K: Into<Vec<u8>>>(keys: impl IntoIterator<Item = K>) -> MultiLock {
        MultiLock {
            keys: keys.into_iter().map(Into::into).collect(),
            owner: uuid::Uuid::new_v4().to_string().into_bytes(),
            ttl: Duration::from_secs(30),
            wait: None,
            shared: false,
        }
    }

    /// Uses `owner` as the owner id (non-empty, at most 1024 bytes).
    pub fn owner(mut self, owner: impl Into<Vec<u8>>) -> MultiLock {
        self.owner = owner.into();
        self
    }

    /// The ttl of every key (whole ms, rounded up, at most 30 days).
    pub fn ttl(mut self, ttl: Duration) -> MultiLock {
        self.ttl = ttl;
        self
    }

    /// Waits in every key's queue for up to `timeout` ([`Duration::ZERO`]: no limit). The
    /// connection's read timeout must exceed it.
    pub fn wait(mut self, timeout: Duration) -> MultiLock {
        self.wait = Some(timeout);
        self
    }

    /// Takes every key shared (for reading).
    pub fn shared(mut self) -> MultiLock {
        self.shared = true;
        self
    }

    /// The owner id sent to the server.
    pub fn owner_id(&self) -> &[u8] {
        &self.owner
    }

    fn check(&self) -> Result<()> {
        if self.owner.is_empty() {
            return Err(Error::InvalidOwner("empty"));
        }
        if self.owner.len() > MAX_OWNER_LEN {
            return Err(Error::InvalidOwner("longer than 1024 bytes"));
        }
        let mut sorted = self.keys.clone();
        sorted.sort();
        sorted.dedup();
        if self.keys.is_empty() || self.keys.len() > MAX_KEYS || sorted.len() != self.keys.len() {
            return Err(Error::InvalidKeys);
        }
        Ok(())
    }

    /// Takes every key or none: the guard with one token per key, in key order.
    /// [`Error::NotAcquired`] when busy (or still busy when the wait ran out),
    /// [`Error::Deadlock`] when the server refused the wait.
    pub fn acquire(&self, conn: &mut impl ConnectionLike) -> Result<MultiGuard> {
        self.check()?;
        let mut cmd = redis::cmd("LOCK.MACQUIRE");
        cmd.arg(self.keys.len())
            .arg(&self.keys)
            .arg(&self.owner)
            .arg(millis(self.ttl, "ttl")?);
        if self.shared {
            cmd.arg("SHARED");
        }
        if let Some(wait) = self.wait {
            let ms = if wait.is_zero() {
                0
            } else {
                millis(wait, "wait")?
            };
            cmd.arg("WAIT").arg(ms);
        }
        let reply = conn.req_command(&cmd).map_err(deadlock_or)?;
        match reply {
            Value::Nil => Err(Error::NotAcquired),
            Value::ServerError(error) => Err(deadlock_or(redis::RedisError::from(error))),
            Value::Array(items) => {
                let tokens = items
                    .iter()
                    .map(|item| match item {
                        Value::Int(token) => u64::try_from(*token).ok(),
                        _ => None,
                    })
                    .collect::<Option<Vec<u64>>>()
                    .ok_or_else(|| Error::UnexpectedReply(format!("{items:?}")))?;
                Ok(MultiGuard {
                    lock: self.clone(),
                    tokens,
                })
            }
            other => Err(Error::UnexpectedReply(format!("{other:?}"))),
        }
    }
}

/// A server `DEADLOCK ...` error as [`Error::Deadlock`], anything else as it is.
pub(crate) fn deadlock_or(error: redis::RedisError) -> Error {
    if error.code() == Some("DEADLOCK") {
        return Error::Deadlock(error.detail().unwrap_or_default().to_string());
    }
    Error::Redis(error)
}

/// Every key of a [`MultiLock`], held. Release it explicitly (it holds no connection); a
/// guard dropped unreleased lets its keys expire after their ttl.
#[must_use = "a MultiGuard holds its keys until released or expired"]
#[derive(Debug)]
pub struct MultiGuard {
    lock: MultiLock,
    tokens: Vec<u64>,
}

impl MultiGuard {
    /// The fencing tokens, in key order.
    pub fn tokens(&self) -> &[u64] {
        &self.tokens
    }

    /// Resets every key's ttl; [`Error::NotHeld`] if any key was lost.
    pub fn renew(&self, conn: &mut impl ConnectionLike) -> Result<()> {
        let mut cmd = redis::cmd("LOCK.MRENEW");
        cmd.arg(self.lock.keys.len())
            .arg(&self.lock.keys)
            .arg(&self.lock.owner)
            .arg(millis(self.lock.ttl, "ttl")?);
        let renewed: Vec<i64> = cmd.query(conn)?;
        if renewed.iter().all(|&ok| ok == 1) {
            Ok(())
        } else {
            Err(Error::not_held())
        }
    }

    /// Releases every key; [`Error::NotHeld`] if none was held any more.
    pub fn release(self, conn: &mut impl ConnectionLike) -> Result<()> {
        let mut cmd = redis::cmd("LOCK.MRELEASE");
        cmd.arg(self.lock.keys.len())
            .arg(&self.lock.keys)
            .arg(&self.lock.owner);
        let counts: Vec<Option<i64>> = cmd.query(conn)?;
        if counts.iter().all(Option::is_none) {
            Err(Error::not_held())
        } else {
            Ok(())
        }
    }
}
