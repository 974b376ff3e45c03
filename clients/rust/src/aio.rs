//! The async API (tokio): `Lock::acquire_async` and `AsyncLockGuard`, with a watchdog task.

use std::any::Any;
use std::time::{Duration, Instant};

use redis::aio::ConnectionLike;
use redis::Value;
use tokio::runtime::Handle;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::error::{Error, Result};
use crate::held::Held;
use crate::lease::Lease;
use crate::lock::{
    give_back_pipeline, millis, renew_cmd, renew_outcome, renew_period, renew_timeout,
    renew_ttl_ms, settle_give_back, settle_release, Lock, Plan, Resend, Settled,
};
use crate::lost::with_reason_async;
use crate::owners;

/// What the async API needs of a connection: redis' async `ConnectionLike`, cheap to clone
/// and shareable between tasks, e.g. [`redis::aio::MultiplexedConnection`] or
/// `redis::aio::ConnectionManager`.
pub trait AsyncConnection: ConnectionLike + Clone + Send + 'static {}

impl<C: ConnectionLike + Clone + Send + 'static> AsyncConnection for C {}

impl Lock {
    /// Takes the lock over a clone of `conn` and returns a guard holding another clone
    /// (for release and, in lease mode, the watchdog task's renewals). As [`Lock::acquire`]:
    /// `LOCK.ACQUIRE ... HELD n` with the owner's known hold count, a reentry while guards of
    /// the same owner id live, one call of an owner on a key at a time.
    ///
    /// Cancellation-safe: the request runs in a task of its own that outlives this future.
    /// If this future is dropped before the answer (say, while waiting in the server's queue),
    /// that task still reads it and, if the lock was granted, releases it at once; the task
    /// ends by the wait's timeout at the latest. Likewise, when the connection's response
    /// timeout cuts the wait short, a `LOCK.RELEASE ... HELD n+1` follows the acquisition on
    /// the same connection (Redis runs one client's commands in order), so a late grant is
    /// given back. The error is returned at once; the task keeps sending the give-back until
    /// it is answered (at most the wait plus 2 s, unbounded after `wait_forever`), and the
    /// owner's next acquisition waits for that: a request still in line in the server would
    /// otherwise be admitted together with it.
    ///
    /// A session hold ([`Lock::session`]) taken afresh keeps a clone of `conn` until the
    /// owner's last guard of it is released: the server binds the hold to that connection.
    ///
    /// A `WAIT` blocks the connection in the server until it is answered, and every command
    /// sent on it after (other tasks' too, and watchdog renewals of other locks): wait on a
    /// connection of its own, with a response timeout above the wait (redis' multiplexed
    /// default is 500 ms; `AsyncConnectionConfig::set_response_timeout(None)` lifts it).
    ///
    /// # Errors
    /// As [`Lock::acquire`], without [`Error::NoWatchdogClient`]; plus [`Error::NoRuntime`]
    /// outside a tokio runtime and [`Error::TaskEnded`] if the runtime shuts down meanwhile.
    pub async fn acquire_async<C: AsyncConnection>(
        &self,
        conn: &mut C,
    ) -> Result<AsyncLockGuard<C>> {
        let plan = self.plan()?;
        let runtime = Handle::try_current().map_err(|_| Error::NoRuntime)?;
        let (answer, answered) = oneshot::channel();
        let conn = conn.clone();
        let spawner = runtime.clone();
        // A guard the caller no longer waits for is dropped with the channel, and its drop
        // releases the lock.
        runtime.spawn(acquire_task(plan, conn, spawner, answer));
        answered.await.map_err(|_| Error::TaskEnded)?
    }
}

/// The acquisition, answered on `answer` as soon as its outcome is known; a give-back still
/// to settle goes on after that, holding the owner's turn.
async fn acquire_task<C: AsyncConnection>(
    plan: Plan,
    conn: C,
    runtime: Handle,
    answer: oneshot::Sender<Result<AsyncLockGuard<C>>>,
) {
    let mut answer = Some(answer);
    let result = acquire_answer(plan, conn, runtime, &mut answer).await;
    if let Some(answer) = answer {
        let _ = answer.send(result);
    }
}

/// The acquisition; answers on `answer` itself (taking it) when the caller may have its
/// error before a give-back is settled.
async fn acquire_answer<C: AsyncConnection>(
    plan: Plan,
    mut conn: C,
    runtime: Handle,
    answer: &mut Option<oneshot::Sender<Result<AsyncLockGuard<C>>>>,
) -> Result<AsyncLockGuard<C>> {
    let record = owners::owner(conn.get_db(), &plan.key, &plan.owner);
    let turn = record.turn().await;
    if let Some(until) = turn.not_before() {
        tokio::time::sleep_until(until.into()).await;
    }
    let Some(counts) = turn.acquire_counts() else {
        // A reentry into a hold already known lost: nothing is sent but the question why.
        let token = turn.hold_token();
        let known = Err(Error::not_held());
        return with_reason_async(known, &mut conn, &plan.key, &plan.owner, token).await;
    };
    let sent_at = Instant::now();
    let replies = plan.acquire_pipeline(counts).query_async(&mut conn).await;
    let token = match plan.settle(&turn, counts, replies) {
        Settled::Granted(token) => token,
        Settled::GiveBack(error) => {
            // The caller has its error at once; the give-back is settled after, in this task,
            // before the owner's next call (which waits for the turn).
            if let Some(answer) = answer.take() {
                let _ = answer.send(Err(error));
            }
            let give_back = give_back_pipeline(&plan.key, &plan.owner, &turn);
            let resend = Resend::give_back(&plan, sent_at, false);
            let (reply, _) = query_resending(&give_back, &mut conn, resend).await;
            settle_give_back(&turn, &plan, sent_at, &reply);
            // Not delivered: the caller has its answer.
            return Err(Error::TaskEnded);
        }
        Settled::Failed(error) => {
            let token = turn.hold_token();
            return with_reason_async(Err(error), &mut conn, &plan.key, &plan.owner, token).await;
        }
    };
    let session_conn = || {
        plan.session
            .then(|| Box::new(conn.clone()) as Box<dyn Any + Send>)
    };
    let valid_until = plan.valid_until(sent_at, Instant::now());
    let (state, fresh) = turn.granted(valid_until, token, session_conn);
    drop(turn);
    let held = Held {
        key: plan.key,
        owner: plan.owner,
        token,
        state,
        record,
        binds_session: fresh && plan.session,
    };
    let watchdog = plan
        .lease
        .map(|lease| runtime.spawn(renew_loop(conn.clone(), held.clone(), lease)));
    Ok(AsyncLockGuard {
        conn,
        held,
        watchdog,
        runtime,
        released: false,
    })
}

/// A held lock (async API). Release it with [`release`](Self::release)`.await`; a guard
/// dropped without that is released best-effort by a task spawned on the runtime it was
/// acquired on. In lease mode a watchdog task renews the lease every third of it until the
/// guard is released, and stops when a renewal finds the lock gone: see
/// [`is_lost`](Self::is_lost) and [`lost`](Self::lost).
pub struct AsyncLockGuard<C: AsyncConnection> {
    conn: C,
    held: Held,
    watchdog: Option<JoinHandle<()>>,
    runtime: Handle,
    released: bool,
}

impl<C: AsyncConnection> AsyncLockGuard<C> {
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
    /// `DEL`, `FLUSHALL`, failover), or its ttl or lease ran out by the client's clock without
    /// a confirmed renewal. A session hold's guard in lease mode also learns at its next
    /// renewal (within a third of the lease) that the connection that took the hold closed.
    /// Every guard of the owner's hold shares it. Once true, stays true (the watchdog stops).
    pub fn is_lost(&self) -> bool {
        self.held.state.is_lost()
    }

    /// The hold's validity, shared with the watchdog (for [`Election`](crate::Election)).
    pub(crate) fn lease_state(&self) -> &std::sync::Arc<crate::lease::LeaseState> {
        &self.held.state
    }

    /// Resolves when [`is_lost`](Self::is_lost) becomes true; pending forever while the
    /// watchdog keeps the lock. Cancellation-safe; use it in `tokio::select!` next to the
    /// work the lock protects.
    pub async fn lost(&self) {
        loop {
            let changed = self.held.state.changed.notified();
            match self.held.state.get() {
                Lease::Lost => return,
                Lease::Until(until) => {
                    let _ = tokio::time::timeout_at(until.into(), changed).await;
                }
            }
        }
    }

    /// Resets the lock's expiry to `ttl` from now (`LOCK.RENEW`). `ttl` in whole ms, rounded
    /// up, at least 1 ms, at most 30 days.
    ///
    /// # Errors
    /// [`Error::NotHeld`] when this owner no longer holds it (the guard is then lost);
    /// [`Error::InvalidDuration`], [`Error::Redis`].
    pub async fn renew(&mut self, ttl: Duration) -> Result<()> {
        let ttl_ms = millis(ttl, "ttl")?;
        let sent_at = Instant::now();
        let reply = renew_cmd(&self.held.key, &self.held.owner, ttl_ms)
            .query_async(&mut self.conn)
            .await;
        let outcome = self
            .held
            .state
            .book_renewal(sent_at, ttl_ms, renew_outcome(reply));
        if let Err(Error::NotHeld { .. }) = outcome {
            self.held.record.hold_lost(&self.held.state);
        }
        let held = &self.held;
        let token = Some(held.token);
        with_reason_async(outcome, &mut self.conn, &held.key, &held.owner, token).await
    }

    /// Stops the watchdog and releases the lock (one hold of it: `LOCK.RELEASE ... HELD n`),
    /// returning the hold count left (0: the lock is free or handed to the next waiter).
    /// Cancellation-safe: the release runs in a task of its own once this future is first
    /// polled; dropped before that, the guard's drop releases instead. One release is made
    /// either way.
    ///
    /// # Errors
    /// As [`LockGuard::release`](crate::LockGuard::release): [`Error::NotHeld`] when the
    /// lock was no longer held by this owner (a session hold whose connection closed too),
    /// [`Error::HeldMismatch`], [`Error::Redis`]; plus [`Error::TaskEnded`].
    pub async fn release(mut self) -> Result<u64> {
        self.stop_watchdog();
        self.released = true;
        // In a task of its own, so that dropping this future does not lose the release.
        self.spawn_release(true)
            .await
            .unwrap_or(Err(Error::TaskEnded))
    }

    /// The release in a task of its own on the guard's runtime; with `explain`, a
    /// [`Error::NotHeld`] asks the server why (`LOCK.LOST`).
    fn spawn_release(&self, explain: bool) -> JoinHandle<Result<u64>> {
        let mut conn = self.conn.clone();
        let held = self.held.clone();
        self.runtime.spawn(async move {
            let result = {
                let turn = held.record.turn().await;
                match held.release_start(&turn) {
                    None => Err(Error::not_held()),
                    Some((pipe, mut sent)) => {
                        let (reply, resent) = query_resending(&pipe, &mut conn, Resend::Few).await;
                        sent.resent = resent;
                        settle_release(&turn, sent, reply)
                    }
                }
            };
            if !explain {
                return result;
            }
            let token = Some(held.token);
            with_reason_async(result, &mut conn, &held.key, &held.owner, token).await
        })
    }

    fn stop_watchdog(&mut self) {
        if let Some(watchdog) = self.watchdog.take() {
            watchdog.abort();
        }
    }
}

impl<C: AsyncConnection> std::fmt::Debug for AsyncLockGuard<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.held.debug("AsyncLockGuard", f)
    }
}

impl<C: AsyncConnection> Drop for AsyncLockGuard<C> {
    fn drop(&mut self) {
        self.stop_watchdog();
        if !self.released {
            // Best effort: the task is left to run, its reply unread.
            drop(self.spawn_release(false));
        }
    }
}

/// Sends an idempotent pipeline (a release, a give-back), again after a timeout (the
/// multiplexed connection drops late replies), as long as `resend` says; and whether it was sent again.
async fn query_resending<C: AsyncConnection>(
    pipe: &redis::Pipeline,
    conn: &mut C,
    resend: Resend,
) -> (redis::RedisResult<Vec<Value>>, bool) {
    let mut reply = pipe.query_async(conn).await;
    let mut resent = false;
    let mut sent_again = 0;
    while let Err(error) = &reply {
        if !error.is_timeout() || !resend.again(sent_again) {
            break;
        }
        sent_again += 1;
        resent = true;
        reply = pipe.query_async(conn).await;
    }
    (reply, resent)
}

async fn renew_loop<C: AsyncConnection>(mut conn: C, held: Held, lease: Duration) {
    let period = renew_period(lease);
    loop {
        tokio::time::sleep(period).await;
        let Some(ttl_ms) = renew_ttl_ms(lease, &held.state) else {
            return;
        };
        let renew = renew_cmd(&held.key, &held.owner, ttl_ms);
        let sent_at = Instant::now();
        let reply =
            tokio::time::timeout(renew_timeout(period), renew.query_async::<Value>(&mut conn))
                .await;
        // No answer in time: the lease deadline decides loss.
        let Ok(reply) = reply else { continue };
        let outcome = match reply {
            // The connection the server binds this session hold to closed: the hold ended.
            Err(error) if held.binds_session && error.is_connection_dropped() => {
                Err(Error::not_held())
            }
            // Other transport trouble: the deadline decides; the server saying the lock is
            // gone: lost.
            reply => renew_outcome(reply),
        };
        if let Err(Error::NotHeld { .. }) = held.state.book_renewal(sent_at, ttl_ms, outcome) {
            held.record.hold_lost(&held.state);
            return;
        }
    }
}
