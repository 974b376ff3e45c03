//! The lock description (a builder) and what it sends on the wire.

use std::time::{Duration, Instant};

use redis::Value;

use crate::error::{Error, Result};
use crate::lease::LeaseState;
pub(crate) use crate::owners::Counts;
use crate::owners::Turn;

/// The server's upper bound for ttl and timeouts: 30 days in milliseconds.
pub const MAX_MS: u64 = 2_592_000_000;
/// The server's upper bound for an owner id, in bytes.
pub const MAX_OWNER_LEN: usize = 1024;
/// The lease of a lock without a fixed ttl (Redisson's `lockWatchdogTimeout`).
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);
/// The shortest lease a watched lock accepts ([`Error::LeaseTooShort`] below it): the
/// watchdog renews every third of the lease, and a renewal that a loaded machine or server
/// delays by more than two thirds of it loses the lock (0.3 s lost 2 holds in 3000 to CPU
/// starvation). A fixed [`Lock::ttl`] has no lower bound: nothing renews it.
pub const MIN_LEASE: Duration = Duration::from_secs(1);
/// The deepest reentry the server counts (`HELD n` and hold counts go up to it).
pub const MAX_HOLDS: u32 = 2047;

/// How long the server keeps the lock without hearing from the holder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Expiry {
    /// A fixed ttl; nothing renews it.
    Ttl(Duration),
    /// A lease renewed by a watchdog every third of it while the guard lives.
    Lease(Duration),
}

/// How long `acquire` waits in the server's queue when the lock is taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wait {
    No,
    For(Duration),
    Forever,
}

/// The kind of hold `LOCK.ACQUIRE` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// Nobody else holds the key (the default).
    Exclusive,
    /// `SHARED`: any number of shared holders at once; an exclusive hold excludes them.
    Shared,
    /// `LIMIT n`: one of the key's `n` permits.
    Limit(u32),
}

/// The server's upper bound for a semaphore's permits (`LIMIT n`).
pub const MAX_LIMIT: u32 = 10_000;

/// A named lock and how to take it: key, owner id, ttl or lease, wait, replica sync, and the
/// kind of hold (exclusive, [`shared`](Lock::shared), a [`limit`](Lock::limit) permit, a
/// [`session`](Lock::session) hold).
///
/// Building is cheap and infallible; the settings are checked when acquiring. A `Lock` is
/// `Clone` and can be acquired many times; every acquisition with the same owner id while the
/// lock is held is a reentry (the server counts holds, each guard releases one).
///
/// ```no_run
/// # fn main() -> Result<(), rlock_client::Error> {
/// use std::time::Duration;
/// let client = redis::Client::open("redis://127.0.0.1/")?;
/// let mut conn = client.get_connection()?;
/// let lock = rlock_client::Lock::new("orders:42").ttl(Duration::from_secs(10));
/// let guard = lock.acquire(&mut conn)?;      // Err(Error::NotAcquired) when taken
/// println!("fencing token {}", guard.token());
/// drop(guard);                               // LOCK.RELEASE
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Lock {
    key: Vec<u8>,
    owner: Vec<u8>,
    expiry: Expiry,
    wait: Wait,
    replicas: Option<(u64, Duration)>,
    watchdog: Option<redis::Client>,
    kind: Kind,
    session: bool,
}

/// A `Lock`'s settings checked and turned into wire values.
#[derive(Clone, Debug)]
pub(crate) struct Plan {
    pub key: Vec<u8>,
    pub owner: Vec<u8>,
    /// The ttl sent with `LOCK.ACQUIRE` (the lease in lease mode), in ms.
    pub ttl_ms: u64,
    /// The ttl or lease as a `Duration`: how long a grant is valid without renewal.
    pub validity: Duration,
    /// `Some(lease)` in lease mode: the watchdog renews with it.
    pub lease: Option<Duration>,
    /// `WAIT` argument of `LOCK.ACQUIRE` (0 = no limit), absent for a plain try.
    pub wait_ms: Option<u64>,
    /// `(numreplicas, timeout_ms)` for Redis' `WAIT` after the acquisition.
    pub replicas: Option<(u64, u64)>,
    /// `SHARED` or `LIMIT n`, and `SESSION`, as sent after the ttl.
    pub options: Vec<String>,
    /// A session hold (`SESSION`).
    pub session: bool,
}

impl Lock {
    /// A lock on `key` with a fresh owner id (a UUID v4, one per `Lock`), lease mode with the
    /// default lease of 30 s (renewed by a watchdog every 10 s), no waiting, no replica sync.
    pub fn new(key: impl Into<Vec<u8>>) -> Lock {
        Lock {
            key: key.into(),
            owner: uuid::Uuid::new_v4().to_string().into_bytes(),
            expiry: Expiry::Lease(DEFAULT_LEASE),
            wait: Wait::No,
            replicas: None,
            watchdog: None,
            kind: Kind::Exclusive,
            session: false,
        }
    }

    /// A shared (read) hold (`SHARED`): any number of owners hold the key shared at once,
    /// while an exclusive hold (a `Lock` without `shared`) excludes them all, as Redisson's
    /// `RReadWriteLock`. Waiting is first come, first served across both: a shared request
    /// never passes a queued exclusive one. Replaces a [`limit`](Lock::limit).
    pub fn shared(mut self) -> Lock {
        self.kind = Kind::Shared;
        self
    }

    /// One permit of a semaphore of `permits` (`LIMIT n`, 1 to 10000, checked when acquiring:
    /// [`Error::InvalidLimit`]): up to `permits` owners hold the key at once, each with its
    /// own token and expiry, as Redisson's `RPermitExpirableSemaphore`. The first permit fixes
    /// the number; asking with another while any is held fails with
    /// [`Error::LimitMismatch`]. Replaces [`shared`](Lock::shared).
    pub fn limit(mut self, permits: u32) -> Lock {
        self.kind = Kind::Limit(permits);
        self
    }

    /// A session hold (`SESSION`, with any kind): it also ends, and passes to the next waiter,
    /// when the connection that took it closes. The server binds the hold to the connection
    /// of its first count; a reentry (from any connection) does not rebind it, and the whole
    /// hold, every count, ends when that connection closes. The blocking guard borrows that
    /// connection: keep it open until the owner's last guard on the key is released. The async
    /// API keeps a clone of it until then (every clone of a multiplexed connection shares one
    /// socket). A reconnect (say by a `ConnectionManager`) ends the hold. Never send `RESET`
    /// on that connection (the hold would stay): close it. When it closes, a lease-mode guard
    /// reports the loss at its next renewal (within a third of the lease), and `release` and
    /// a reentry return [`Error::NotHeld`]. The ttl or lease still applies, and after a
    /// failover or restart it is the only end besides a release.
    pub fn session(mut self) -> Lock {
        self.session = true;
        self
    }

    /// Uses `owner` as the owner id instead of the generated UUID: non-empty, at most 1024
    /// bytes (checked when acquiring: [`Error::InvalidOwner`]). Holders must use distinct ids;
    /// the same id re-acquiring a held lock is a reentry.
    pub fn owner(mut self, owner: impl Into<Vec<u8>>) -> Lock {
        self.owner = owner.into();
        self
    }

    /// A fixed ttl: the server frees the lock `ttl` after the acquisition unless it is renewed
    /// ([`LockGuard::renew`](crate::LockGuard::renew)); no watchdog. Sent in whole ms, rounded
    /// up, at least 1 ms, at most 30 days ([`Error::InvalidDuration`]).
    pub fn ttl(mut self, ttl: Duration) -> Lock {
        self.expiry = Expiry::Ttl(ttl);
        self
    }

    /// Lease mode (the default, with 30 s): the lock is taken for `lease` and a watchdog renews
    /// it to `lease` every third of it while the guard lives; if the holder dies, the lock
    /// frees at most `lease` later. From [`MIN_LEASE`] (1 s; shorter:
    /// [`Error::LeaseTooShort`] when acquiring) to 30 days. The blocking API needs a client
    /// for the watchdog's connection ([`watchdog`](Lock::watchdog)).
    pub fn lease(mut self, lease: Duration) -> Lock {
        self.expiry = Expiry::Lease(lease);
        self
    }

    /// When the lock is taken, wait in the server's first-come-first-served queue for up to
    /// `timeout` (whole ms, rounded up, at most 30 days); [`Duration::ZERO`] means no waiting
    /// (the default). The wait blocks the connection it is sent on: its read or response
    /// timeout must exceed `timeout` (redis' multiplexed connections default to 500 ms).
    pub fn wait(mut self, timeout: Duration) -> Lock {
        self.wait = if timeout.is_zero() {
            Wait::No
        } else {
            Wait::For(timeout)
        };
        self
    }

    /// Waits in the server's queue without a time limit (`WAIT 0`).
    pub fn wait_forever(mut self) -> Lock {
        self.wait = Wait::Forever;
        self
    }

    /// After the acquisition, Redis' `WAIT numreplicas timeout` in the same round trip: when
    /// fewer than `replicas` acknowledge it within `timeout` (whole ms, rounded up, at least
    /// 1 ms), the lock is released again and acquiring fails with
    /// [`Error::ReplicasNotSynced`]. `replicas == 0` checks nothing.
    pub fn replicas(mut self, replicas: u64, timeout: Duration) -> Lock {
        self.replicas = Some((replicas, timeout));
        self
    }

    /// The client (for the same server) the blocking API's watchdog opens its own connection
    /// with (lease mode only; the async API renews over a clone of the acquiring connection
    /// instead). The connection is opened in the watchdog thread, so acquiring does not wait
    /// for it.
    pub fn watchdog(mut self, client: redis::Client) -> Lock {
        self.watchdog = Some(client);
        self
    }

    /// The lock's key.
    pub fn key(&self) -> &[u8] {
        &self.key
    }

    /// The owner id sent to the server (a UUID string unless set with [`owner`](Lock::owner)).
    pub fn owner_id(&self) -> &[u8] {
        &self.owner
    }

    pub(crate) fn watchdog_client(&self) -> Option<&redis::Client> {
        self.watchdog.as_ref()
    }

    /// Checks the settings and converts them to wire values.
    pub(crate) fn plan(&self) -> Result<Plan> {
        if self.owner.is_empty() {
            return Err(Error::InvalidOwner("empty"));
        }
        if self.owner.len() > MAX_OWNER_LEN {
            return Err(Error::InvalidOwner("longer than 1024 bytes"));
        }
        let (validity, lease) = match self.expiry {
            Expiry::Ttl(ttl) => (ttl, None),
            Expiry::Lease(lease) => (lease, Some(lease)),
        };
        let what = if lease.is_some() { "lease" } else { "ttl" };
        let ttl_ms = millis(validity, what)?;
        if let Some(lease) = lease.filter(|&lease| lease < MIN_LEASE) {
            return Err(Error::LeaseTooShort(lease));
        }
        let wait_ms = match self.wait {
            Wait::No => None,
            Wait::For(timeout) => Some(millis(timeout, "wait")?),
            Wait::Forever => Some(0),
        };
        let replicas = match self.replicas {
            Some((n, timeout)) => Some((n, millis(timeout, "replica timeout")?)),
            None => None,
        };
        let mut options = match self.kind {
            Kind::Exclusive => vec![],
            Kind::Shared => vec!["SHARED".to_string()],
            Kind::Limit(n) if (1..=MAX_LIMIT).contains(&n) => {
                vec!["LIMIT".to_string(), n.to_string()]
            }
            Kind::Limit(n) => return Err(Error::InvalidLimit(n)),
        };
        if self.session {
            options.push("SESSION".to_string());
        }
        Ok(Plan {
            key: self.key.clone(),
            owner: self.owner.clone(),
            ttl_ms,
            validity: Duration::from_millis(ttl_ms),
            lease,
            wait_ms,
            replicas,
            options,
            session: self.session,
        })
    }
}

/// `duration` in whole milliseconds, rounded up, at least 1, at most [`MAX_MS`].
pub(crate) fn millis(duration: Duration, what: &'static str) -> Result<u64> {
    let ms = duration.as_nanos().div_ceil(1_000_000).max(1);
    match u64::try_from(ms) {
        Ok(ms) if ms <= MAX_MS => Ok(ms),
        _ => Err(Error::InvalidDuration { what, duration }),
    }
}

/// How often the watchdog renews a lease: every third of it, at least every millisecond.
pub(crate) fn renew_period(lease: Duration) -> Duration {
    (lease / 3).max(Duration::from_millis(1))
}

/// The ttl a watchdog renews to: its lease, or what the hold has by the client's clock if
/// that is longer (a reentry with a longer ttl gave it), since `LOCK.RENEW` sets the expiry
/// and would otherwise shorten the hold. `None` once the hold is lost.
pub(crate) fn renew_ttl_ms(lease: Duration, state: &LeaseState) -> Option<u64> {
    let remaining = state.remaining()?;
    Some(millis(lease.max(remaining), "lease").unwrap_or(MAX_MS))
}

/// How long one renewal may take before it counts as failed: a renewal period, at least
/// 100 ms (loss is decided by the lease deadline, not by one slow renewal).
pub(crate) fn renew_timeout(period: Duration) -> Duration {
    period.max(Duration::from_millis(100))
}

impl Plan {
    /// Until when a grant is surely valid by the client's clock: the ttl or lease counted
    /// from the moment the request was sent. After a `WAIT` the server started the ttl at the
    /// handoff, some time between sending and the reply; the reply follows the handoff at
    /// once (but for Redis' `WAIT` for replicas, at most its timeout), so the ttl is counted
    /// from the reply's arrival less that timeout (late only by the one-way latency).
    pub fn valid_until(&self, sent_at: Instant, received_at: Instant) -> Instant {
        let start = if self.wait_ms.is_some() {
            let replica_wait = self.replicas.map_or(Duration::ZERO, |(_, timeout_ms)| {
                Duration::from_millis(timeout_ms)
            });
            received_at
                .checked_sub(replica_wait)
                .map_or(sent_at, |start| start.max(sent_at))
        } else {
            sent_at
        };
        start + self.validity
    }

    /// The owed releases (see [`Counts`]), `LOCK.ACQUIRE key owner ttl [SHARED | LIMIT n]
    /// [SESSION] [WAIT t] HELD held`, then `WAIT n timeout` when replicas are asked for: one
    /// round trip.
    pub fn acquire_pipeline(&self, counts: Counts) -> redis::Pipeline {
        let mut pipe = release_steps(&self.key, &self.owner, counts, counts.held + 1);
        pipe.cmd("LOCK.ACQUIRE")
            .arg(&self.key)
            .arg(&self.owner)
            .arg(self.ttl_ms)
            .arg(&self.options);
        if let Some(wait_ms) = self.wait_ms {
            pipe.arg("WAIT").arg(wait_ms);
        }
        pipe.arg("HELD").arg(counts.held);
        if let Some((n, timeout_ms)) = self.replicas {
            pipe.cmd("WAIT").arg(n).arg(timeout_ms);
        }
        pipe
    }

    /// Books the acquisition round trip of [`acquire_pipeline`](Plan::acquire_pipeline) on
    /// the owner's record, and says what follows.
    pub fn settle(
        &self,
        turn: &Turn,
        counts: Counts,
        replies: redis::RedisResult<Vec<Value>>,
    ) -> Settled {
        let replies = match replies {
            Ok(replies) => replies,
            // A timeout, a dropped connection: the grant may have happened (or may still,
            // at the end of a wait in the server).
            Err(error) => {
                turn.owe();
                return Settled::GiveBack(error.into());
            }
        };
        turn.settled();
        // The owed releases' replies come first; the acquisition's tells.
        let replies = replies.into_iter().skip(counts.owed as usize);
        match self.acquire_outcome(replies) {
            Outcome::Granted(token) => Settled::Granted(token),
            Outcome::GrantedUndone(error) => {
                turn.owe();
                Settled::GiveBack(error)
            }
            Outcome::NotGranted if counts.held == 0 => Settled::Failed(Error::NotAcquired),
            // HELD n >= 1 answered nil: the hold was lost; the server took nothing afresh.
            Outcome::NotGranted => {
                turn.lost();
                Settled::Failed(Error::not_held())
            }
            Outcome::Failed(error) => Settled::Failed(error),
        }
    }

    /// Interprets the replies of [`acquire_pipeline`](Plan::acquire_pipeline) after the owed
    /// releases'.
    fn acquire_outcome(&self, mut replies: impl Iterator<Item = Value>) -> Outcome {
        let token = match replies.next() {
            Some(Value::Int(token)) if token > 0 => token as u64,
            Some(Value::Nil) => return Outcome::NotGranted,
            Some(Value::ServerError(error)) => return Outcome::Failed(acquire_error(error)),
            other => return Outcome::Failed(unexpected("LOCK.ACQUIRE", other.as_ref())),
        };
        let Some((wanted, _)) = self.replicas else {
            return Outcome::Granted(token);
        };
        match replies.next() {
            Some(Value::Int(acked)) if acked >= 0 && acked as u64 >= wanted => {
                Outcome::Granted(token)
            }
            Some(Value::Int(acked)) => Outcome::GrantedUndone(Error::ReplicasNotSynced {
                wanted,
                acked: acked.max(0) as u64,
            }),
            Some(Value::ServerError(error)) => Outcome::GrantedUndone(Error::Redis(error.into())),
            other => Outcome::GrantedUndone(unexpected("WAIT", other.as_ref())),
        }
    }
}

/// What an acquisition round trip came to, for the blocking and the async API to carry out.
pub(crate) enum Settled {
    /// Held, with this fencing token: book it with [`Turn::granted`].
    Granted(u64),
    /// A grant may stand that must not: send [`give_back_pipeline`] on the same connection
    /// (Redis runs one client's commands in order, so it follows a late grant), book its
    /// reply with [`settle_give_back`], and return the error.
    GiveBack(Error),
    /// Not granted; nothing to undo.
    Failed(Error),
}

/// What the replies of an acquisition say.
enum Outcome {
    /// Held, with this fencing token.
    Granted(u64),
    /// Granted, but it must be released again and the error returned.
    GrantedUndone(Error),
    /// The server answered nil.
    NotGranted,
    /// Not granted.
    Failed(Error),
}

/// `LOCK.RELEASE key owner HELD k` for k from `counts.held + counts.owed` down to `lowest`
/// (none when `lowest` is above it), with errors as reply values. Wherever the server's count
/// is in `lowest - 1 ..= counts.held + counts.owed`, it ends at `lowest - 1`: each step
/// lowers a count equal to its k and leaves a lower one alone (a step already taken answers
/// its count, or nil at 0, or a HELD mismatch for a count further down). The same pipeline
/// sent again has no further effect.
pub(crate) fn release_steps(
    key: &[u8],
    owner: &[u8],
    counts: Counts,
    lowest: u32,
) -> redis::Pipeline {
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    let top = counts.held.saturating_add(counts.owed);
    for k in (lowest.max(1)..=top).rev() {
        pipe.cmd("LOCK.RELEASE")
            .arg(key)
            .arg(owner)
            .arg("HELD")
            .arg(k);
    }
    pipe
}

/// The give-back after [`Settled::GiveBack`]: the owed releases, now counting the
/// acquisition (or its undone grant).
pub(crate) fn give_back_pipeline(key: &[u8], owner: &[u8], turn: &Turn) -> redis::Pipeline {
    let counts = turn.counts();
    release_steps(key, owner, counts, counts.held + 1)
}

/// Books the reply of [`give_back_pipeline`] for an acquisition sent at `sent_at`: settled
/// when it came back whole (Redis answered the acquisition first); the hold lost when the last
/// step found nothing while guards live. Unanswered after a `WAIT t`, the acquisition may be
/// in line in the server until `t` after it was sent (and a margin for stalls): the owner's
/// next acquisition waits until then.
pub(crate) fn settle_give_back(
    turn: &Turn,
    plan: &Plan,
    sent_at: Instant,
    reply: &redis::RedisResult<Vec<Value>>,
) {
    let held = turn.counts().held;
    match reply {
        Ok(replies) => {
            turn.settled();
            if held > 0 && matches!(replies.last(), Some(Value::Nil)) {
                turn.lost();
            }
        }
        Err(_) => {
            if let Some(wait_ms) = plan.wait_ms.filter(|&ms| ms > 0) {
                turn.pending_until(sent_at + Duration::from_millis(wait_ms) + SETTLE_MARGIN);
            }
        }
    }
}

/// How long past its `WAIT` a cut-short acquisition is taken to be still possibly in line in
/// the server (its timer, a stall).
pub(crate) const SETTLE_MARGIN: Duration = Duration::from_secs(2);

/// How long an idempotent pipeline (a release, a give-back) is sent again while its reply
/// times out.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Resend {
    /// [`RESENDS_AFTER_TIMEOUT`] times.
    Few,
    /// At least that, and until this instant.
    Until(Instant),
    /// Until answered: after `WAIT 0` the acquisition stays in line in the server until
    /// granted, so nothing else bounds when the owner could safely acquire again.
    Answered,
}

impl Resend {
    /// Whether to send again after `sent_again` resends.
    pub fn again(self, sent_again: u32) -> bool {
        match self {
            Resend::Few => sent_again < RESENDS_AFTER_TIMEOUT,
            Resend::Until(until) => sent_again < RESENDS_AFTER_TIMEOUT || Instant::now() < until,
            Resend::Answered => true,
        }
    }

    /// For the give-back of an acquisition sent at `sent_at`: blocking callers give up after a
    /// few (the owner's next acquisition waits instead, see [`settle_give_back`]); async ones
    /// keep at it in the background while the acquisition may be in line in the server.
    pub fn give_back(plan: &Plan, sent_at: Instant, blocking: bool) -> Resend {
        match plan.wait_ms {
            Some(0) => Resend::Answered,
            Some(ms) if !blocking => {
                Resend::Until(sent_at + Duration::from_millis(ms) + SETTLE_MARGIN)
            }
            _ => Resend::Few,
        }
    }
}

/// One guard's release: the owed releases and its own, `LOCK.RELEASE key owner HELD held`.
pub(crate) fn release_pipeline(key: &[u8], owner: &[u8], counts: Counts) -> redis::Pipeline {
    release_steps(key, owner, counts, counts.held)
}

/// How a release went out, for [`settle_release`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct ReleaseSent {
    pub counts: Counts,
    /// The pipeline was sent more than once (after a timeout).
    pub resent: bool,
    /// The hold was valid by the client's clock, and not known lost, when it was first sent.
    pub was_valid: bool,
    /// The guard took the hold as a session hold: the hold ends with that connection.
    pub binds_session: bool,
}

/// Books a guard's release round trip: the remaining count, or why not.
pub(crate) fn settle_release(
    turn: &Turn,
    sent: ReleaseSent,
    reply: redis::RedisResult<Vec<Value>>,
) -> Result<u64> {
    turn.forget_one();
    let replies = match reply {
        Ok(replies) => replies,
        // The connection that binds a session hold closed: the server ended the whole hold.
        Err(error) if sent.binds_session && error.is_connection_dropped() => {
            turn.lost();
            return Err(Error::not_held());
        }
        Err(error) => {
            turn.owe();
            return Err(error.into());
        }
    };
    turn.settled();
    match replies.into_iter().last() {
        Some(Value::Int(count)) if count >= 0 => Ok(count as u64),
        // After a resend, nil for the last count is the first attempt's release (the server
        // cannot tell it from a loss); the hold was valid when it went out.
        Some(Value::Nil) if sent.resent && sent.was_valid && sent.counts.held == 1 => Ok(0),
        Some(Value::Nil) => {
            turn.lost();
            Err(Error::not_held())
        }
        Some(Value::ServerError(error)) => Err(held_error(error)),
        other => Err(unexpected("LOCK.RELEASE", other.as_ref())),
    }
}

/// How often an idempotent pipeline (a release, a give-back) is sent again after a timeout
/// on the same connection, so that a server stall a few timeouts long still settles it.
pub(crate) const RESENDS_AFTER_TIMEOUT: u32 = 2;

/// `LOCK.RENEW key owner ttl_ms`.
pub(crate) fn renew_cmd(key: &[u8], owner: &[u8], ttl_ms: u64) -> redis::Cmd {
    let mut cmd = redis::cmd("LOCK.RENEW");
    cmd.arg(key).arg(owner).arg(ttl_ms);
    cmd
}

/// `LOCK.RENEW`'s reply: `Ok(())` for 1, [`Error::NotHeld`] for 0.
pub(crate) fn renew_outcome(reply: redis::RedisResult<Value>) -> Result<()> {
    match reply? {
        Value::Int(1) => Ok(()),
        Value::Int(0) => Err(Error::not_held()),
        Value::ServerError(error) => Err(Error::Redis(error.into())),
        other => Err(unexpected("LOCK.RENEW", Some(&other))),
    }
}

/// A server error of `LOCK.ACQUIRE`: the refusals about the kind of hold typed, others as
/// [`Error::Redis`].
fn acquire_error(error: redis::ServerError) -> Error {
    let detail = error.details().unwrap_or_default();
    if let Some(rest) = detail.strip_prefix("LIMIT ") {
        let mut numbers = rest
            .split(|c: char| !c.is_ascii_digit())
            .filter(|part| !part.is_empty())
            .map(str::parse::<u32>);
        if let (Some(Ok(asked)), Some(Ok(held))) = (numbers.next(), numbers.next()) {
            return Error::LimitMismatch { held, asked };
        }
    }
    if detail.contains("cannot also hold it") {
        return Error::HoldConflict(detail.to_string());
    }
    held_error(error)
}

/// A server error of a call with `HELD`: a mismatch typed, others as [`Error::Redis`].
fn held_error(error: redis::ServerError) -> Error {
    let detail = error.details().unwrap_or_default();
    if let Some(rest) = detail.strip_prefix("HELD ") {
        let mut numbers = rest
            .split(|c: char| !c.is_ascii_digit())
            .filter(|part| !part.is_empty())
            .map(str::parse::<u32>);
        if let (Some(Ok(expected)), Some(Ok(held))) = (numbers.next(), numbers.next()) {
            return Error::HeldMismatch { expected, held };
        }
    }
    Error::Redis(error.into())
}

fn unexpected(command: &str, reply: Option<&Value>) -> Error {
    match reply {
        Some(value) => Error::UnexpectedReply(format!("{command} answered {value:?}")),
        None => Error::UnexpectedReply(format!("no reply to {command}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millis_round_up_with_a_floor_and_a_ceiling() {
        let ms = |d| millis(d, "ttl").ok();
        assert_eq!(ms(Duration::ZERO), Some(1));
        assert_eq!(ms(Duration::from_nanos(1)), Some(1));
        assert_eq!(ms(Duration::from_micros(1500)), Some(2));
        assert_eq!(ms(Duration::from_millis(250)), Some(250));
        assert_eq!(ms(Duration::from_millis(MAX_MS)), Some(MAX_MS));
        assert_eq!(
            ms(Duration::from_millis(MAX_MS) + Duration::from_nanos(1)),
            None
        );
        assert_eq!(ms(Duration::MAX), None);
    }

    #[test]
    fn plan_checks_owner_and_durations() {
        assert!(matches!(
            Lock::new("k").owner("").plan(),
            Err(Error::InvalidOwner(_))
        ));
        assert!(matches!(
            Lock::new("k").owner(vec![b'x'; 1025]).plan(),
            Err(Error::InvalidOwner(_))
        ));
        assert!(Lock::new("k").owner(vec![b'x'; 1024]).plan().is_ok());
        assert!(matches!(
            Lock::new("k")
                .ttl(Duration::from_secs(31 * 24 * 3600))
                .plan(),
            Err(Error::InvalidDuration { what: "ttl", .. })
        ));
        assert!(matches!(
            Lock::new("k").wait(Duration::MAX).plan(),
            Err(Error::InvalidDuration { what: "wait", .. })
        ));
        let plan = Lock::new("k").plan().ok();
        assert_eq!(plan.as_ref().map(|p| p.ttl_ms), Some(30_000));
        assert_eq!(plan.as_ref().and_then(|p| p.wait_ms), None);
        let plan = Lock::new("k").wait_forever().plan().ok();
        assert_eq!(plan.and_then(|p| p.wait_ms), Some(0));
    }

    #[test]
    fn owners_are_fresh_per_lock() {
        assert_ne!(Lock::new("k").owner_id(), Lock::new("k").owner_id());
        let lock = Lock::new("k");
        assert_eq!(lock.clone().owner_id(), lock.owner_id());
    }

    #[test]
    fn validity_counts_from_the_send_or_after_a_wait_from_the_reply() -> Result<()> {
        let sent = Instant::now();
        let received = sent + Duration::from_secs(100);
        let ttl = Duration::from_secs(10);
        let plain = Lock::new("k").ttl(ttl).plan()?;
        assert_eq!(plain.valid_until(sent, received), sent + ttl);
        let waited = Lock::new("k")
            .ttl(ttl)
            .wait(Duration::from_secs(200))
            .plan()?;
        assert_eq!(waited.valid_until(sent, received), received + ttl);
        let synced = Lock::new("k")
            .ttl(ttl)
            .wait(Duration::from_secs(200))
            .replicas(1, Duration::from_secs(1));
        let synced = synced.plan()?;
        assert_eq!(
            synced.valid_until(sent, received),
            received - Duration::from_secs(1) + ttl
        );
        let slow_replicas = Lock::new("k")
            .ttl(ttl)
            .wait(Duration::from_secs(200))
            .replicas(1, Duration::from_secs(500))
            .plan()?;
        assert_eq!(slow_replicas.valid_until(sent, received), sent + ttl);
        Ok(())
    }

    #[test]
    fn hold_kinds_become_options() -> Result<()> {
        let options = |lock: Lock| lock.plan().map(|plan| plan.options.join(" "));
        assert_eq!(options(Lock::new("k"))?, "");
        assert_eq!(options(Lock::new("k").shared())?, "SHARED");
        assert_eq!(
            options(Lock::new("k").limit(3).session())?,
            "LIMIT 3 SESSION"
        );
        assert_eq!(options(Lock::new("k").limit(3).shared())?, "SHARED");
        assert!(matches!(
            Lock::new("k").limit(0).plan(),
            Err(Error::InvalidLimit(0))
        ));
        assert!(matches!(
            Lock::new("k").limit(MAX_LIMIT + 1).plan(),
            Err(Error::InvalidLimit(_))
        ));
        Ok(())
    }

    /// Each command of `pipe` as space-separated text.
    fn commands(pipe: &redis::Pipeline) -> Vec<String> {
        pipe.cmd_iter()
            .map(|cmd| {
                cmd.args_iter()
                    .map(|arg| match arg {
                        redis::Arg::Simple(bytes) => String::from_utf8_lossy(bytes).into_owned(),
                        _ => "<other>".to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect()
    }

    #[test]
    fn every_call_carries_held_and_owed_releases_go_first() -> Result<()> {
        let plan = Lock::new("k")
            .owner("me")
            .ttl(Duration::from_secs(5))
            .plan()?;
        let fresh = Counts { held: 0, owed: 0 };
        assert_eq!(
            commands(&plan.acquire_pipeline(fresh)),
            ["LOCK.ACQUIRE k me 5000 HELD 0"]
        );
        let waiting = Lock::new("k")
            .owner("me")
            .ttl(Duration::from_secs(5))
            .limit(3)
            .session()
            .wait(Duration::from_secs(1))
            .replicas(1, Duration::from_millis(20))
            .plan()?;
        assert_eq!(
            commands(&waiting.acquire_pipeline(Counts { held: 2, owed: 2 })),
            [
                "LOCK.RELEASE k me HELD 4",
                "LOCK.RELEASE k me HELD 3",
                "LOCK.ACQUIRE k me 5000 LIMIT 3 SESSION WAIT 1000 HELD 2",
                "WAIT 1 20",
            ]
        );
        assert_eq!(
            commands(&release_pipeline(b"k", b"me", Counts { held: 1, owed: 1 })),
            ["LOCK.RELEASE k me HELD 2", "LOCK.RELEASE k me HELD 1"]
        );
        assert_eq!(
            commands(&release_pipeline(b"k", b"me", Counts { held: 3, owed: 0 })),
            ["LOCK.RELEASE k me HELD 3"]
        );
        Ok(())
    }

    #[test]
    fn watched_leases_start_at_one_second() {
        let short = MIN_LEASE - Duration::from_millis(1);
        assert!(matches!(
            Lock::new("k").lease(short).plan(),
            Err(Error::LeaseTooShort(lease)) if lease == short
        ));
        assert!(Lock::new("k").lease(MIN_LEASE).plan().is_ok());
        assert!(Lock::new("k").ttl(Duration::from_millis(1)).plan().is_ok());
    }

    #[test]
    fn a_held_mismatch_is_typed() {
        let error = |line: &str| match redis::parse_redis_value(format!("-{line}\r\n").as_bytes()) {
            Ok(Value::ServerError(error)) => held_error(error),
            other => panic!("{other:?}"),
        };
        assert!(matches!(
            error("ERR HELD 1 does not match the owner's hold count 2 in 'lock.release' command (nothing changed)"),
            Error::HeldMismatch { expected: 1, held: 2 }
        ));
        assert!(matches!(error("ERR something else"), Error::Redis(_)));
    }

    #[test]
    fn renew_period_is_a_third() {
        assert_eq!(renew_period(DEFAULT_LEASE), Duration::from_secs(10));
        assert_eq!(renew_period(Duration::ZERO), Duration::from_millis(1));
    }
}
