//! The one error type of the crate.

use std::time::Duration;

use crate::lost::LossReason;

/// Everything that can go wrong with a lock. No method of this crate panics; each failure is
/// one of these variants.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The lock is held by another owner: at once (no wait configured) or still when the wait
    /// ran out (the server answered nil).
    #[error("lock not acquired: held by another owner")]
    NotAcquired,

    /// The lock was acquired, but fewer replicas than asked for acknowledged it within the
    /// replica timeout; it has been released again (a best-effort `LOCK.RELEASE` on the same
    /// connection; if that failed too, the lock expires after its ttl or lease).
    #[error("lock released again: {acked} of {wanted} replicas acknowledged the acquisition")]
    ReplicasNotSynced {
        /// The replica count asked for with [`Lock::replicas`](crate::Lock::replicas).
        wanted: u64,
        /// How many replicas `WAIT` reported.
        acked: u64,
    },

    /// The lock is no longer held by this owner (it expired, was deleted, flushed, lost in a
    /// failover, or its session connection closed): `LOCK.RELEASE` answered nil,
    /// `LOCK.RENEW` answered 0, or a reentry (acquiring while guards of the same owner id
    /// live) found the hold gone, which the server never takes afresh (`HELD n` answered
    /// nil). Also a reentry into a hold this client already knows lost: release every guard
    /// of it, then acquire afresh.
    ///
    /// On that failure path (and only there) the client asks the server why, with one
    /// `LOCK.LOST key owner` over the same connection: `reason` is the server's record of
    /// this hold's loss (what ended it, when, how long it had been held, who holds the key
    /// now). It is `None` when the server has no record of it (not kept, older than its
    /// retention, a failover), the record is of another hold of the owner (another token),
    /// or `LOCK.LOST` itself failed (a closed connection, a server without it): a failed
    /// `LOCK.LOST` never hides this error.
    #[error("lock not held by this owner{}", match reason {
        Some(reason) => format!(": {reason}"),
        None => " (expired, deleted, taken over or its session ended)".to_string(),
    })]
    NotHeld {
        /// Why, from the server's `LOCK.LOST` (boxed: the error stays small).
        reason: Option<Box<LossReason>>,
    },

    /// An [`Election`](crate::Election) campaign's wait ran out while another candidate
    /// led (the server answered nil): this candidate is not leader and left the queue.
    #[error("not elected: another candidate still leads after the campaign's wait")]
    NotElected,

    /// A candidate's value is too long for the owner string it travels in
    /// (`<36-byte id>:<value>`, at most 1024 bytes): at most
    /// [`MAX_VALUE_LEN`](crate::election::MAX_VALUE_LEN) (987) bytes.
    #[error("candidate value of {0} bytes: at most 987 bytes")]
    ValueTooLong(usize),

    /// An [`Election`](crate::Election)'s drift margin is not below a third of its lease
    /// (the renewal period): leadership would lapse between renewals.
    #[error("drift margin {margin:?} is not below a third of the lease {lease:?}")]
    InvalidMargin {
        /// The margin given.
        margin: Duration,
        /// The lease.
        lease: Duration,
    },

    /// The server's hold count for this owner is not the one this client counted (`HELD n`
    /// refused; nothing changed): another client sends commands for this owner id on this
    /// key. Owner ids must not be shared with other clients or processes.
    #[error("the server holds {held} counts for this owner, this client counted {expected}")]
    HeldMismatch {
        /// The count this client sent (`HELD n`).
        expected: u32,
        /// The server's count.
        held: u32,
    },

    /// A semaphore permit ([`Lock::limit`](crate::Lock::limit)) asked for with another
    /// number of permits than the key is held with: the number changes only once every
    /// permit is back (or an admin `DEL`s the key).
    #[error("the key is a semaphore of {held} permits, not {asked}")]
    LimitMismatch {
        /// The key's number of permits.
        held: u32,
        /// The number asked for.
        asked: u32,
    },

    /// The owner already holds the key in a way it cannot reenter as asked: holding it shared
    /// and asking exclusive (an upgrade in place would deadlock: release first), or holding a
    /// permit and asking for another kind. The server's message.
    #[error("{0}")]
    HoldConflict(String),

    /// The server refused a wait that would close a cycle of waits (`DEADLOCK`): nothing was
    /// taken. The server's description of the cycle, e.g. `'k2' is held by 'B', which waits
    /// for 'k1', held by 'A'`.
    #[error("deadlock refused: {0}")]
    Deadlock(String),

    /// A [`MultiLock`](crate::MultiLock)'s keys: none, more than 1024, or one given twice.
    #[error("invalid keys: 1 to 1024 distinct keys")]
    InvalidKeys,

    /// A semaphore's number of permits outside 1 to 10000 (the server's range).
    #[error("invalid limit {0}: a semaphore has 1 to 10000 permits")]
    InvalidLimit(u32),

    /// The owner id is empty or longer than 1024 bytes (the server's limit).
    #[error("invalid owner id: {0}")]
    InvalidOwner(&'static str),

    /// A duration is out of the server's range: ttl, lease, wait and replica timeout go on
    /// the wire as whole milliseconds (rounded up, at least 1 ms), at most 2592000000 ms
    /// (30 days).
    #[error("invalid {what}: {duration:?} exceeds 30 days (2592000000 ms)")]
    InvalidDuration {
        /// Which setting: `"ttl"`, `"lease"`, `"wait"` or `"replica timeout"`.
        what: &'static str,
        /// The duration given.
        duration: Duration,
    },

    /// A lease (watchdog) shorter than [`MIN_LEASE`](crate::MIN_LEASE) (1 s): a renewal late
    /// by two thirds of it would lose the lock. Use a longer lease, or a fixed
    /// [`Lock::ttl`](crate::Lock::ttl).
    #[error("lease {0:?} is shorter than the smallest watched lease, 1 s")]
    LeaseTooShort(Duration),

    /// A lease (watchdog) lock acquired with the blocking API needs a `redis::Client` for the
    /// watchdog's own connection: give one with [`Lock::watchdog`](crate::Lock::watchdog), or
    /// use a fixed [`Lock::ttl`](crate::Lock::ttl).
    #[error("lease mode needs a watchdog client: call Lock::watchdog(client) or set Lock::ttl")]
    NoWatchdogClient,

    /// The async API was called outside a tokio runtime.
    #[error("no tokio runtime: the async API must run inside a tokio runtime")]
    NoRuntime,

    /// The background task that carries an async acquisition ended without an answer (its
    /// runtime shut down). A lock granted to it is released by that task's drop or expires.
    #[error("the acquiring task ended without an answer (runtime shutting down?)")]
    TaskEnded,

    /// The server answered something this client does not understand (a module of another
    /// version?).
    #[error("unexpected reply from the server: {0}")]
    UnexpectedReply(String),

    /// A transport error, a timeout, or a server error (`OOM`, `WRONGTYPE`, `ERR ...`), as the
    /// `redis` crate reports it. After a transport error of an acquisition this client has
    /// already sent a `LOCK.RELEASE ... HELD n+1` behind it on the same connection, so a late
    /// grant does not stay behind; a release or acquisition whose outcome stays unknown is
    /// settled by the owner's next call on the key. Retrying the call is safe.
    #[error(transparent)]
    Redis(#[from] redis::RedisError),
}

impl Error {
    /// [`Error::NotHeld`] without a reason yet.
    pub(crate) fn not_held() -> Error {
        Error::NotHeld { reason: None }
    }

    /// The reason carried by an [`Error::NotHeld`], if any.
    pub fn loss_reason(&self) -> Option<&LossReason> {
        match self {
            Error::NotHeld { reason } => reason.as_deref(),
            _ => None,
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
