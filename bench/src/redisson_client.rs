//! Redisson's `RLock.lock()`: the acquire script answers nil (taken) or the lock's pttl; a
//! waiter subscribes to the lock's channel and sleeps on a semaphore until an unlock message
//! arrives or the pttl passes, whichever comes first, then tries again. The release script
//! publishes the unlock message.
//!
//! As in Redisson, a listener on a separate pub/sub connection turns unlock messages into
//! semaphore permits. One simplification in Redisson's favour: the client subscribes once for
//! the whole run instead of SUBSCRIBE/UNSUBSCRIBE around every contended `lock()`; the permits
//! are reset where Redisson would subscribe afresh.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::locker::{Acquired, Locker, Released};
use crate::scripts;
use crate::server::{RedisServer, READ_TIMEOUT};
use crate::BenchResult;

/// How often the listener looks at its stop flag when no message comes.
const LISTENER_POLL: Duration = Duration::from_millis(50);

pub struct RedissonClient {
    connection: redis::Connection,
    key: String,
    channel: String,
    /// Redisson's lock name: the client's uuid and the thread id.
    lock_name: String,
    lease_ms: u64,
    acquire_sha: String,
    release_sha: String,
    permits: Arc<Semaphore>,
    listener: Option<Listener>,
    began_waiting: Arc<AtomicU64>,
}

impl RedissonClient {
    pub fn connect(server: &RedisServer, key: &str) -> BenchResult<RedissonClient> {
        let channel = scripts::redisson_channel(key);
        let permits = Arc::new(Semaphore::default());
        let listener = Listener::start(server, &channel, Arc::clone(&permits))?;
        Ok(RedissonClient {
            connection: server.connect()?,
            key: key.to_string(),
            channel,
            lock_name: format!("{}:1", uuid::Uuid::new_v4()),
            lease_ms: 0,
            acquire_sha: scripts::shas().redisson_acquire.clone(),
            release_sha: scripts::shas().redisson_release.clone(),
            permits,
            listener: Some(listener),
            began_waiting: Arc::new(AtomicU64::new(0)),
        })
    }

    /// One run of the acquire script: None when taken, else the lock's pttl.
    fn try_acquire(&mut self, lease_ms: u64) -> BenchResult<Option<i64>> {
        self.lease_ms = lease_ms;
        let pttl: Option<i64> = redis::cmd("EVALSHA")
            .arg(&self.acquire_sha)
            .arg(1)
            .arg(&self.key)
            .arg(lease_ms)
            .arg(&self.lock_name)
            .query(&mut self.connection)
            .map_err(|e| format!("Redisson acquire script on {} failed: {e}", self.key))?;
        Ok(pttl)
    }
}

impl Locker for RedissonClient {
    fn acquire(&mut self, ttl_ms: u64) -> BenchResult<Acquired> {
        let taken = |replied_at| Acquired {
            token: None,
            replied_at,
        };
        if self.try_acquire(ttl_ms)?.is_none() {
            return Ok(taken(Instant::now()));
        }
        // Redisson subscribes here: only unlock messages from now on count.
        self.permits.drain();
        self.began_waiting.fetch_add(1, Ordering::SeqCst);
        loop {
            let Some(pttl) = self.try_acquire(ttl_ms)? else {
                return Ok(taken(Instant::now()));
            };
            // Redisson: ttl >= 0 ? latch.tryAcquire(ttl, ms) : latch.acquire()
            let patience = u64::try_from(pttl).map_or(READ_TIMEOUT, Duration::from_millis);
            self.permits.try_acquire(patience);
        }
    }

    fn release(&mut self) -> BenchResult<Released> {
        let freed: Option<i64> = redis::cmd("EVALSHA")
            .arg(&self.release_sha)
            .arg(2)
            .arg(&self.key)
            .arg(&self.channel)
            .arg(scripts::REDISSON_UNLOCK_MESSAGE)
            .arg(self.lease_ms)
            .arg(&self.lock_name)
            .query(&mut self.connection)
            .map_err(|e| format!("Redisson release script on {} failed: {e}", self.key))?;
        Ok(Released {
            accepted: freed.is_some(),
            replied_at: Instant::now(),
        })
    }

    fn began_waiting(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.began_waiting)
    }
}

impl Drop for RedissonClient {
    fn drop(&mut self) {
        if let Some(listener) = self.listener.take() {
            listener.stop();
        }
    }
}

/// java.util.concurrent.Semaphore's part that Redisson's lock entry uses.
#[derive(Default)]
struct Semaphore {
    permits: Mutex<u64>,
    changed: Condvar,
}

impl Semaphore {
    fn release(&self) {
        *self.permits.lock().expect("semaphore lock poisoned") += 1;
        self.changed.notify_one();
    }

    fn drain(&self) {
        *self.permits.lock().expect("semaphore lock poisoned") = 0;
    }

    /// Takes a permit if one comes within `timeout`; whether it did.
    fn try_acquire(&self, timeout: Duration) -> bool {
        let permits = self.permits.lock().expect("semaphore lock poisoned");
        let (mut permits, _) = self
            .changed
            .wait_timeout_while(permits, timeout, |permits| *permits == 0)
            .expect("semaphore lock poisoned");
        if *permits == 0 {
            return false;
        }
        *permits -= 1;
        true
    }
}

/// The pub/sub connection and its thread, turning unlock messages into permits.
struct Listener {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Listener {
    /// Returns once the SUBSCRIBE is confirmed.
    fn start(
        server: &RedisServer,
        channel: &str,
        permits: Arc<Semaphore>,
    ) -> BenchResult<Listener> {
        let mut connection = server.connect()?;
        let stop = Arc::new(AtomicBool::new(false));
        let (subscribed_tx, subscribed_rx) = std::sync::mpsc::channel::<Result<(), String>>();
        let channel = channel.to_string();
        let stop_flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut pubsub = connection.as_pubsub();
            let subscribed = pubsub
                .subscribe(&channel)
                .and_then(|()| pubsub.set_read_timeout(Some(LISTENER_POLL)))
                .map_err(|e| format!("SUBSCRIBE {channel} failed: {e}"));
            let ok = subscribed.is_ok();
            let _ = subscribed_tx.send(subscribed);
            if ok {
                listen(&mut pubsub, &permits, &stop_flag);
            }
        });
        match subscribed_rx.recv() {
            Ok(Ok(())) => Ok(Listener { stop, thread }),
            Ok(Err(message)) => Err(message.into()),
            Err(_) => Err("the pub/sub listener thread died before subscribing".into()),
        }
    }

    fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.thread.join();
    }
}

fn listen(pubsub: &mut redis::PubSub<'_>, permits: &Semaphore, stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        match pubsub.get_message() {
            Ok(message) => {
                let payload: String = message.get_payload().unwrap_or_default();
                if payload == scripts::REDISSON_UNLOCK_MESSAGE {
                    permits.release();
                }
            }
            Err(error) if error.is_timeout() => continue,
            Err(_) => return,
        }
    }
}
