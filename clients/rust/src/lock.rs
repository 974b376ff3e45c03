//! The lock description (a builder) and what it sends on the wire.

use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::Value;

use crate::error::{Error, Result};
use crate::held::Held;
use crate::lease::LeaseState;

/// The server's upper bound for ttl and timeouts: 30 days in milliseconds.
pub const MAX_MS: u64 = 2_592_000_000;
/// The server's upper bound for an owner id, in bytes.
pub const MAX_OWNER_LEN: usize = 1024;
/// The lease of a lock without a fixed ttl (Redisson's `lockWatchdogTimeout`).
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);

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
    /// when the connection that took it closes. The hold lives with the acquiring connection:
    /// keep that connection open while holding (the blocking guard borrows it; an async guard
    /// keeps a clone, and every clone of a multiplexed connection shares one socket). A
    /// reconnect (say by a `ConnectionManager`) ends the hold; in lease mode the watchdog then
    /// reports it lost. The ttl or lease still applies, and after a failover or restart it is
    /// the only end besides a release.
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
    /// frees at most `lease` later. Same range as [`ttl`](Lock::ttl). The blocking API needs a
    /// client for the watchdog's connection ([`watchdog`](Lock::watchdog)).
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

    /// `LOCK.ACQUIRE key owner ttl [SHARED | LIMIT n] [SESSION] [WAIT t]`, then `WAIT n timeout` when replicas are asked
    /// for: one round trip.
    pub fn acquire_pipeline(&self) -> redis::Pipeline {
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        pipe.cmd("LOCK.ACQUIRE")
            .arg(&self.key)
            .arg(&self.owner)
            .arg(self.ttl_ms)
            .arg(&self.options);
        if let Some(wait_ms) = self.wait_ms {
            pipe.arg("WAIT").arg(wait_ms);
        }
        if let Some((n, timeout_ms)) = self.replicas {
            pipe.cmd("WAIT").arg(n).arg(timeout_ms);
        }
        pipe
    }

    /// What the round trip of [`acquire_pipeline`](Plan::acquire_pipeline), sent at
    /// `sent_at`, came to: the held lock or the error, and whether `LOCK.RELEASE` must follow
    /// on the same connection first. It must after a grant refused for want of replicas, and
    /// after a read that timed out (a late grant is then given back at once: Redis runs one
    /// client's commands in order).
    pub fn settle(&self, replies: redis::RedisResult<Vec<Value>>, sent_at: Instant) -> Settled {
        let (give_back, result) = match replies {
            Ok(replies) => match self.acquire_outcome(replies) {
                Outcome::Granted(token) => (false, Ok(self.held(token, sent_at))),
                Outcome::GrantedUndone(error) => (true, Err(error)),
                Outcome::Failed(error) => (false, Err(error)),
            },
            Err(error) => (error.is_timeout(), Err(error.into())),
        };
        Settled {
            give_back: give_back.then(|| release_cmd(&self.key, &self.owner)),
            result,
        }
    }

    fn held(&self, token: u64, sent_at: Instant) -> Held {
        let valid_until = self.valid_until(sent_at, Instant::now());
        Held {
            key: self.key.clone(),
            owner: self.owner.clone(),
            token,
            state: Arc::new(LeaseState::new(valid_until)),
        }
    }

    /// Interprets the replies of [`acquire_pipeline`](Plan::acquire_pipeline).
    fn acquire_outcome(&self, replies: Vec<Value>) -> Outcome {
        let mut replies = replies.into_iter();
        let token = match replies.next() {
            Some(Value::Int(token)) if token > 0 => token as u64,
            Some(Value::Nil) => return Outcome::Failed(Error::NotAcquired),
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
pub(crate) struct Settled {
    /// `LOCK.RELEASE`, to send (errors ignored) before returning `result`.
    pub give_back: Option<redis::Cmd>,
    pub result: Result<Held>,
}

/// What the replies of an acquisition say.
enum Outcome {
    /// Held, with this fencing token.
    Granted(u64),
    /// Granted, but it must be released again and the error returned.
    GrantedUndone(Error),
    /// Not granted.
    Failed(Error),
}

/// `LOCK.RELEASE key owner`.
pub(crate) fn release_cmd(key: &[u8], owner: &[u8]) -> redis::Cmd {
    let mut cmd = redis::cmd("LOCK.RELEASE");
    cmd.arg(key).arg(owner);
    cmd
}

/// `LOCK.RENEW key owner ttl_ms`.
pub(crate) fn renew_cmd(key: &[u8], owner: &[u8], ttl_ms: u64) -> redis::Cmd {
    let mut cmd = redis::cmd("LOCK.RENEW");
    cmd.arg(key).arg(owner).arg(ttl_ms);
    cmd
}

/// The remaining hold count from `LOCK.RELEASE`'s reply.
pub(crate) fn release_outcome(reply: redis::RedisResult<Value>) -> Result<u64> {
    match reply? {
        Value::Int(count) if count >= 0 => Ok(count as u64),
        Value::Nil => Err(Error::NotHeld),
        Value::ServerError(error) => Err(Error::Redis(error.into())),
        other => Err(unexpected("LOCK.RELEASE", Some(&other))),
    }
}

/// `LOCK.RENEW`'s reply: `Ok(())` for 1, [`Error::NotHeld`] for 0.
pub(crate) fn renew_outcome(reply: redis::RedisResult<Value>) -> Result<()> {
    match reply? {
        Value::Int(1) => Ok(()),
        Value::Int(0) => Err(Error::NotHeld),
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

    #[test]
    fn renew_period_is_a_third() {
        assert_eq!(renew_period(DEFAULT_LEASE), Duration::from_secs(10));
        assert_eq!(renew_period(Duration::ZERO), Duration::from_millis(1));
    }
}
