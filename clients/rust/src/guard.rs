//! The blocking API: `Lock::acquire` and `LockGuard`, with a watchdog thread.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use redis::{ConnectionLike, Value};

use crate::error::{Error, Result};
use crate::held::Held;
use crate::lease::LeaseState;
use crate::lock::{
    millis, release_outcome, renew_cmd, renew_outcome, renew_period, renew_timeout, Lock,
};

impl Lock {
    /// Takes the lock over `conn` (blocking): `LOCK.ACQUIRE` (with `WAIT` if configured, and
    /// Redis' `WAIT` for replicas in the same round trip), and returns a guard that releases
    /// it when dropped.
    ///
    /// Lease mode (no [`ttl`](Lock::ttl)) starts a watchdog thread with its own connection from
    /// the [`watchdog`](Lock::watchdog) client; without one this fails with
    /// [`Error::NoWatchdogClient`] before sending anything.
    ///
    /// # Errors
    /// [`Error::NotAcquired`] when another owner holds the lock (after the wait, if any);
    /// [`Error::ReplicasNotSynced`] (the lock was released again); [`Error::InvalidOwner`],
    /// [`Error::InvalidDuration`], [`Error::NoWatchdogClient`] for bad settings;
    /// [`Error::Redis`] for transport and server errors. When the read timed out (a wait
    /// longer than the connection's read timeout), a `LOCK.RELEASE` is sent behind the
    /// acquisition on the same connection, so a late grant is given back at once.
    pub fn acquire<'c, C: ConnectionLike>(&self, conn: &'c mut C) -> Result<LockGuard<'c, C>> {
        let plan = self.plan()?;
        let client = match (plan.lease, self.watchdog_client()) {
            (Some(_), None) => return Err(Error::NoWatchdogClient),
            (_, client) => client.cloned(),
        };
        let sent_at = Instant::now();
        let settled = plan.settle(plan.acquire_pipeline().query(conn), sent_at);
        if let Some(give_back) = settled.give_back {
            let _ = give_back.query::<Value>(conn);
        }
        let held = settled.result?;
        let watchdog = match (plan.lease, client) {
            (Some(lease), Some(client)) => Some(Watchdog::start(&held, lease, plan.ttl_ms, client)),
            _ => None,
        };
        Ok(LockGuard {
            conn,
            held,
            watchdog,
            released: false,
        })
    }
}

/// A held lock (blocking API), like [`std::sync::MutexGuard`]: dropping it releases the lock
/// (one `LOCK.RELEASE` over the borrowed connection, errors ignored); [`release`](Self::release)
/// does the same and reports the outcome. In lease mode a watchdog thread renews the lease
/// every third of it until the guard is released, and stops when a renewal finds the lock
/// gone ([`is_lost`](Self::is_lost)).
pub struct LockGuard<'c, C: ConnectionLike> {
    conn: &'c mut C,
    held: Held,
    watchdog: Option<Watchdog>,
    released: bool,
}

impl<C: ConnectionLike> LockGuard<'_, C> {
    /// The fencing token of this acquisition: greater than every token the server handed out
    /// before; a reentry keeps the token. Pass it to the resource you protect.
    pub fn token(&self) -> u64 {
        self.held.token
    }

    /// The lock's key.
    pub fn key(&self) -> &[u8] {
        &self.held.key
    }

    /// The owner id the lock is held under.
    pub fn owner(&self) -> &[u8] {
        &self.held.owner
    }

    /// Whether the lock is known or presumed lost: a watchdog renewal found it gone (expired,
    /// `DEL`, `FLUSHALL`, failover), or its ttl or lease ran out by the client's clock without
    /// a confirmed renewal. Once true, stays true (the watchdog stops).
    pub fn is_lost(&self) -> bool {
        self.held.state.is_lost()
    }

    /// The connection the lock was acquired over, for use while holding it.
    pub fn connection(&mut self) -> &mut C {
        self.conn
    }

    /// Resets the lock's expiry to `ttl` from now (`LOCK.RENEW`), e.g. for a fixed-ttl lock
    /// that needs longer. `ttl` in whole ms, rounded up, at least 1 ms, at most 30 days.
    ///
    /// # Errors
    /// [`Error::NotHeld`] when this owner no longer holds it (the guard is then lost);
    /// [`Error::InvalidDuration`], [`Error::Redis`].
    pub fn renew(&mut self, ttl: Duration) -> Result<()> {
        let ttl_ms = millis(ttl, "ttl")?;
        let sent_at = Instant::now();
        let reply = renew_cmd(&self.held.key, &self.held.owner, ttl_ms).query(self.conn);
        self.held
            .state
            .book_renewal(sent_at, ttl_ms, renew_outcome(reply))
    }

    /// Stops the watchdog and releases the lock (one hold of it), returning the hold count
    /// left (0: the lock is free or handed to the next waiter).
    ///
    /// # Errors
    /// [`Error::NotHeld`] when the lock was no longer held by this owner; [`Error::Redis`].
    pub fn release(mut self) -> Result<u64> {
        self.release_inner()
    }

    fn release_inner(&mut self) -> Result<u64> {
        if let Some(mut watchdog) = self.watchdog.take() {
            watchdog.stop();
        }
        self.released = true;
        release_outcome(self.held.release_cmd().query(self.conn))
    }
}

impl<C: ConnectionLike> std::fmt::Debug for LockGuard<'_, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.held.debug("LockGuard", f)
    }
}

impl<C: ConnectionLike> Drop for LockGuard<'_, C> {
    fn drop(&mut self) {
        if !self.released {
            let _ = self.release_inner();
        }
    }
}

/// A thread renewing one lease over its own connection.
#[derive(Debug)]
struct Watchdog {
    /// Dropping it tells the thread to stop.
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Watchdog {
    fn start(held: &Held, lease: Duration, ttl_ms: u64, client: redis::Client) -> Self {
        let (stop, stopped) = mpsc::channel();
        let key = held.key.clone();
        let owner = held.owner.clone();
        let state = Arc::clone(&held.state);
        let thread = std::thread::Builder::new()
            .name("rlock-watchdog".into())
            .spawn(move || {
                renew_loop(&client, &key, &owner, lease, ttl_ms, &state, &stopped);
            });
        match thread {
            Ok(thread) => Watchdog {
                stop: Some(stop),
                thread: Some(thread),
            },
            // No thread: nothing renews, so the lease runs out and the guard reports loss.
            Err(_) => Watchdog {
                stop: None,
                thread: None,
            },
        }
    }

    /// Stops the thread and waits for it, so that no renewal follows a release.
    fn stop(&mut self) {
        self.stop = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.stop();
    }
}

fn renew_loop(
    client: &redis::Client,
    key: &[u8],
    owner: &[u8],
    lease: Duration,
    ttl_ms: u64,
    state: &LeaseState,
    stopped: &mpsc::Receiver<()>,
) {
    let period = renew_period(lease);
    let mut conn: Option<redis::Connection> = None;
    loop {
        match stopped.recv_timeout(period) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
        if state.is_lost() {
            return;
        }
        let sent_at = Instant::now();
        let outcome = renew_once(client, &mut conn, key, owner, ttl_ms, renew_timeout(period));
        match state.book_renewal(sent_at, ttl_ms, outcome) {
            Ok(()) => {}
            Err(Error::NotHeld) => return,
            // Transport trouble: reconnect next time; the lease deadline decides loss.
            Err(_) => conn = None,
        }
    }
}

fn renew_once(
    client: &redis::Client,
    conn: &mut Option<redis::Connection>,
    key: &[u8],
    owner: &[u8],
    ttl_ms: u64,
    timeout: Duration,
) -> Result<()> {
    let conn = match conn {
        Some(conn) => conn,
        None => {
            let fresh = client.get_connection_with_timeout(timeout)?;
            fresh.set_read_timeout(Some(timeout))?;
            fresh.set_write_timeout(Some(timeout))?;
            conn.insert(fresh)
        }
    };
    renew_outcome(renew_cmd(key, owner, ttl_ms).query(conn))
}
