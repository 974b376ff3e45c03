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
    give_back_pipeline, millis, renew_cmd, renew_outcome, renew_period, renew_timeout,
    renew_ttl_ms, settle_give_back, settle_release, Lock, Resend, Settled,
};
use crate::lost::with_reason;
use crate::owners::{self, Owner};

impl Lock {
    /// Takes the lock over `conn` (blocking): `LOCK.ACQUIRE ... HELD n` (with `WAIT` if
    /// configured, and Redis' `WAIT` for replicas in the same round trip), and returns a
    /// guard that releases it when dropped.
    ///
    /// `n` is the hold count this process knows the owner has on the key: 0 for a new hold;
    /// while guards of the same owner id live, this is a reentry (one more count, the same
    /// token), which never waits and never takes a lost hold afresh. Calls of one owner on
    /// one key run one at a time in the process (a second waits for the first to answer).
    ///
    /// Lease mode (no [`ttl`](Lock::ttl)) starts a watchdog thread with its own connection from
    /// the [`watchdog`](Lock::watchdog) client; without one this fails with
    /// [`Error::NoWatchdogClient`] before sending anything.
    ///
    /// # Errors
    /// [`Error::NotAcquired`] when another owner holds the lock (after the wait, if any);
    /// [`Error::NotHeld`] for a reentry into a hold that was lost (expired, deleted, its
    /// session connection closed): release the guards of it first; [`Error::ReplicasNotSynced`]
    /// (the lock was released again); [`Error::HoldConflict`], [`Error::LimitMismatch`];
    /// [`Error::InvalidOwner`], [`Error::InvalidDuration`], [`Error::LeaseTooShort`],
    /// [`Error::InvalidLimit`], [`Error::NoWatchdogClient`] for bad settings;
    /// [`Error::Redis`] for transport and server errors. After a transport error (a read
    /// timeout cutting a wait short, a server stall) the client gives the possible grant
    /// back at once: a `LOCK.RELEASE ... HELD n+1` behind the acquisition on the same
    /// connection (Redis runs one client's commands in order), sent again up to twice while
    /// it times out too; if even that fails, the next call of this owner on this key settles
    /// it first. A wait cut short stays in line in the server: the owner's next acquisition
    /// sleeps until that wait plus 2 s has passed (unless the give-back was answered), and
    /// after [`wait_forever`](Lock::wait_forever) the give-back is sent until answered.
    /// Retrying after any error is safe.
    pub fn acquire<'c, C: ConnectionLike>(&self, conn: &'c mut C) -> Result<LockGuard<'c, C>> {
        let plan = self.plan()?;
        let client = match (plan.lease, self.watchdog_client()) {
            (Some(_), None) => return Err(Error::NoWatchdogClient),
            (_, client) => client.cloned(),
        };
        let record = owners::owner(conn.get_db(), &plan.key, &plan.owner);
        let turn = record.turn_blocking();
        if let Some(until) = turn.not_before() {
            std::thread::sleep(until.saturating_duration_since(Instant::now()));
        }
        let Some(counts) = turn.acquire_counts() else {
            // A reentry into a hold already known lost: nothing is sent but the question why.
            let token = turn.hold_token();
            return with_reason(Err(Error::not_held()), conn, &plan.key, &plan.owner, token);
        };
        let sent_at = Instant::now();
        let replies = plan.acquire_pipeline(counts).query(conn);
        let token = match plan.settle(&turn, counts, replies) {
            Settled::Granted(token) => token,
            Settled::GiveBack(error) => {
                let give_back = give_back_pipeline(&plan.key, &plan.owner, &turn);
                let resend = Resend::give_back(&plan, sent_at, true);
                let (reply, _) = query_resending(&give_back, conn, resend);
                settle_give_back(&turn, &plan, sent_at, &reply);
                return Err(error);
            }
            Settled::Failed(error) => {
                let token = turn.hold_token();
                return with_reason(Err(error), conn, &plan.key, &plan.owner, token);
            }
        };
        let valid_until = plan.valid_until(sent_at, Instant::now());
        let (state, fresh) = turn.granted(valid_until, token, || None);
        drop(turn);
        let held = Held {
            key: plan.key,
            owner: plan.owner,
            token,
            state,
            record,
            binds_session: fresh && plan.session,
        };
        let watchdog = match (plan.lease, client) {
            (Some(lease), Some(client)) => Some(Watchdog::start(&held, lease, client)),
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

/// Sends an idempotent pipeline (a release, a give-back), again after a timeout (the sync
/// connection skips the late replies), as long as `resend` says; and whether it was sent again.
fn query_resending<C: ConnectionLike>(
    pipe: &redis::Pipeline,
    conn: &mut C,
    resend: Resend,
) -> (redis::RedisResult<Vec<Value>>, bool) {
    let mut reply = pipe.query(conn);
    let mut resent = false;
    let mut sent_again = 0;
    while let Err(error) = &reply {
        if !error.is_timeout() || !resend.again(sent_again) {
            break;
        }
        sent_again += 1;
        resent = true;
        reply = pipe.query(conn);
    }
    (reply, resent)
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

    /// Whether the lock is known or presumed lost: the server said this owner no longer
    /// holds it (a renewal, a reentry or another guard's release found it gone: expired,
    /// `DEL`, `FLUSHALL`, failover, a session connection closed), or its ttl or lease ran out
    /// by the client's clock without a confirmed renewal. Every guard of the owner's hold
    /// shares it. Once true, stays true (the watchdog stops).
    pub fn is_lost(&self) -> bool {
        self.held.state.is_lost()
    }

    /// The hold's validity, shared with the watchdog (for [`Election`](crate::Election)).
    pub(crate) fn lease_state(&self) -> &Arc<LeaseState> {
        &self.held.state
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
        let outcome = self
            .held
            .state
            .book_renewal(sent_at, ttl_ms, renew_outcome(reply));
        if let Err(Error::NotHeld { .. }) = outcome {
            self.held.record.hold_lost(&self.held.state);
        }
        let held = &self.held;
        with_reason(outcome, self.conn, &held.key, &held.owner, Some(held.token))
    }

    /// Stops the watchdog and releases the lock (one hold of it: `LOCK.RELEASE ... HELD n`),
    /// returning the hold count left (0: the lock is free or handed to the next waiter).
    ///
    /// # Errors
    /// [`Error::NotHeld`] when the lock was no longer held by this owner (then nothing is
    /// sent if the server already said so), including a session hold whose connection
    /// closed; [`Error::HeldMismatch`]; [`Error::Redis`] for transport and server errors. A
    /// release whose reply timed out is sent again (up to twice) on the same connection,
    /// `HELD` making it take effect once; if its outcome stays unknown, the next call of this
    /// owner on this key settles it first, and otherwise (the last guard) the lock expires by
    /// its ttl or lease.
    pub fn release(mut self) -> Result<u64> {
        let result = self.release_inner();
        let held = &self.held;
        with_reason(result, self.conn, &held.key, &held.owner, Some(held.token))
    }

    fn release_inner(&mut self) -> Result<u64> {
        if let Some(mut watchdog) = self.watchdog.take() {
            watchdog.stop();
        }
        self.released = true;
        let turn = self.held.record.turn_blocking();
        let Some((pipe, mut sent)) = self.held.release_start(&turn) else {
            return Err(Error::not_held());
        };
        let (reply, resent) = query_resending(&pipe, self.conn, Resend::Few);
        sent.resent = resent;
        settle_release(&turn, sent, reply)
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
    fn start(held: &Held, lease: Duration, client: redis::Client) -> Self {
        let (stop, stopped) = mpsc::channel();
        let key = held.key.clone();
        let owner = held.owner.clone();
        let state = Arc::clone(&held.state);
        let record = Arc::clone(&held.record);
        let thread = std::thread::Builder::new()
            .name("rlock-watchdog".into())
            .spawn(move || {
                let hold = Renewing {
                    key: &key,
                    owner: &owner,
                    lease,
                    state: &state,
                    record: &record,
                };
                renew_loop(&client, &hold, &stopped);
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

/// What a watchdog thread renews.
struct Renewing<'a> {
    key: &'a [u8],
    owner: &'a [u8],
    lease: Duration,
    state: &'a Arc<LeaseState>,
    record: &'a Owner,
}

fn renew_loop(client: &redis::Client, hold: &Renewing<'_>, stopped: &mpsc::Receiver<()>) {
    let period = renew_period(hold.lease);
    let mut conn: Option<redis::Connection> = None;
    loop {
        match stopped.recv_timeout(period) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
        let Some(ttl_ms) = renew_ttl_ms(hold.lease, hold.state) else {
            return;
        };
        let sent_at = Instant::now();
        let outcome = renew_once(client, &mut conn, hold, ttl_ms, renew_timeout(period));
        match hold.state.book_renewal(sent_at, ttl_ms, outcome) {
            Ok(()) => {}
            Err(Error::NotHeld { .. }) => {
                hold.record.hold_lost(hold.state);
                return;
            }
            // Transport trouble: reconnect next time; the lease deadline decides loss.
            Err(_) => conn = None,
        }
    }
}

fn renew_once(
    client: &redis::Client,
    conn: &mut Option<redis::Connection>,
    hold: &Renewing<'_>,
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
    renew_outcome(renew_cmd(hold.key, hold.owner, ttl_ms).query(conn))
}
