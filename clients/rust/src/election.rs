//! Leader election on one key (issue 22): [`Election`].
//!
//! A candidate [`campaign`](Election::campaign)s by waiting in the server's first-come,
//! first-served queue for an exclusive `SESSION` hold of the key, whose lease the crate's
//! watchdog renews. It is leader while that hold lasts: the epoch (the hold's fencing token)
//! rises with every new leader, across failovers too, and is the token to hand to whatever
//! the leader writes. The hold ends, and passes to the next candidate in line, when the
//! leader [`resign`](Leadership::resign)s, drops its [`Leadership`], its connection closes,
//! or its lease runs out unrenewed.
//!
//! **Is it still leader?** [`Leadership::is_leader`] is a deadline by the client's own clock,
//! not a cached flag: the lease counted from an instant taken before the request that
//! confirmed it was sent (the campaign's, or each renewal's), less a drift margin. The server
//! counts the same lease from a later instant (when it got the request), so while the clocks
//! run at the same rate within the margin, `is_leader()` turns false before the server can
//! hand the key to a rival. (A campaign that waited in the queue counts from its reply's
//! arrival: the server starts the lease at the handoff, which the reply follows at once; the
//! margin covers that one-way delay.) A [`LostSignal`] tells the leader's work to stop: it
//! fires when the deadline passes, a renewal finds the hold gone, or the leadership ends.
//!
//! **Who leads?** The candidate's value travels in the hold's owner id, as
//! `<id>:<value>`: `<id>` a fresh UUID v4 (36 bytes) per campaign, then `:`, then the value's
//! bytes as given (at most [`MAX_VALUE_LEN`] bytes). [`Election::leader`] reads it back
//! (`LOCK.INFO`); [`Election::observe`] is an iterator of leader changes built on the
//! blocking read `LOCK.OBSERVE`.
//!
//! ```no_run
//! # fn main() -> Result<(), rlock_client::Error> {
//! use std::time::Duration;
//! use rlock_client::Election;
//!
//! let client = redis::Client::open("redis://127.0.0.1/")?;
//! let mut conn = client.get_connection()?;       // no read timeout: the campaign waits
//! let election = Election::new("service:leader")
//!     .lease(Duration::from_secs(10))
//!     .watchdog(client.clone());
//! let leadership = election.campaign(&mut conn, "10.0.0.7:8080")?;   // waits its turn
//! println!("leading in epoch {}", leadership.epoch());
//! let stop = leadership.signal();
//! while leadership.is_leader() {
//!     // ... a bounded piece of work, fenced with leadership.epoch() ...
//!     if stop.wait_timeout(Duration::from_secs(1)) {
//!         break;                                  // lost: stop at once
//!     }
//! }
//! leadership.resign()?;                           // hands over to the next candidate
//! # Ok(()) }
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::{ConnectionLike, Value};

use crate::error::{Error, Result};
use crate::guard::LockGuard;
use crate::lease::LeaseState;
use crate::lock::{renew_period, Lock, MAX_OWNER_LEN};
use crate::lost::{bytes, field, fields, int};

/// The lease of an [`Election`] unless set: 10 s, renewed every 3.3 s.
pub const DEFAULT_ELECTION_LEASE: Duration = Duration::from_secs(10);

/// The longest candidate value: the owner id is `<36-byte id>:<value>`, at most 1024 bytes.
pub const MAX_VALUE_LEN: usize = MAX_OWNER_LEN - 37;

/// Leader election on one key: a builder, like [`Lock`]; settings are checked when
/// campaigning. See the [module docs](crate::election) for what leadership means.
#[derive(Clone, Debug)]
pub struct Election {
    key: Vec<u8>,
    lease: Duration,
    /// `None`: wait for ever.
    wait: Option<Duration>,
    /// `None`: a tenth of the lease.
    margin: Option<Duration>,
    watchdog: Option<redis::Client>,
}

/// The leader as the server has it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leader {
    /// The campaign's id (a UUID v4, fresh per campaign), or `None` when the owner id is not
    /// of the `<id>:<value>` shape (the key was taken by something else than an `Election`).
    pub id: Option<String>,
    /// The candidate's value (the whole owner id when `id` is `None`).
    pub value: Vec<u8>,
    /// The epoch: the leader's fencing token, higher for every new leader.
    pub epoch: u64,
}

impl Leader {
    /// Splits an owner id `<uuid>:<value>`.
    fn from_owner(owner: Vec<u8>, epoch: u64) -> Leader {
        let id = owner
            .get(..36)
            .filter(|_| owner.get(36) == Some(&b':'))
            .and_then(|id| std::str::from_utf8(id).ok())
            .filter(|id| uuid::Uuid::parse_str(id).is_ok())
            .map(str::to_string);
        match id {
            Some(id) => Leader {
                id: Some(id),
                value: owner[37..].to_vec(),
                epoch,
            },
            None => Leader {
                id: None,
                value: owner,
                epoch,
            },
        }
    }
}

impl Election {
    /// An election on `key`: lease [`DEFAULT_ELECTION_LEASE`] (10 s), drift margin a tenth
    /// of the lease, campaigns wait for ever.
    pub fn new(key: impl Into<Vec<u8>>) -> Election {
        Election {
            key: key.into(),
            lease: DEFAULT_ELECTION_LEASE,
            wait: None,
            margin: None,
            watchdog: None,
        }
    }

    /// The leader's lease: how long the key stays with a leader that stopped renewing (a
    /// crashed or paused process whose connection stays open). The watchdog renews it every
    /// third of it. At least [`MIN_LEASE`](crate::MIN_LEASE) (1 s), at most 30 days.
    pub fn lease(mut self, lease: Duration) -> Election {
        self.lease = lease;
        self
    }

    /// How long a campaign waits in the server's queue ([`Duration::ZERO`]: not at all, one
    /// try); past it the campaign fails with [`Error::NotElected`]. The default waits for
    /// ever. The wait blocks the connection: its read timeout must exceed it.
    pub fn wait(mut self, timeout: Duration) -> Election {
        self.wait = Some(timeout);
        self
    }

    /// Campaigns wait in the queue without a time limit (the default).
    pub fn wait_forever(mut self) -> Election {
        self.wait = None;
        self
    }

    /// How much earlier than the lease's end (by the client's clock) [`Leadership::is_leader`]
    /// turns false: room for the clocks' drift and the delay between the server granting a
    /// waiting campaign and its reply's arrival. Below a third of the lease (else
    /// [`Error::InvalidMargin`] when campaigning); the default is a tenth of it.
    pub fn drift_margin(mut self, margin: Duration) -> Election {
        self.margin = Some(margin);
        self
    }

    /// The client (for the same server) the blocking API's watchdog thread opens its own
    /// connection with; required by [`campaign`](Election::campaign) (else
    /// [`Error::NoWatchdogClient`]). The async API renews over a clone of its connection.
    pub fn watchdog(mut self, client: redis::Client) -> Election {
        self.watchdog = Some(client);
        self
    }

    /// The election's key.
    pub fn key(&self) -> &[u8] {
        &self.key
    }

    /// The drift margin in use (a tenth of the lease unless set).
    pub fn margin(&self) -> Duration {
        self.margin.unwrap_or(self.lease / 10)
    }

    /// The session lock one campaign takes, its owner id and the margin.
    fn lock(&self, value: &[u8]) -> Result<(Lock, Duration)> {
        if value.len() > MAX_VALUE_LEN {
            return Err(Error::ValueTooLong(value.len()));
        }
        let margin = self.margin();
        if margin >= renew_period(self.lease) {
            return Err(Error::InvalidMargin {
                margin,
                lease: self.lease,
            });
        }
        let mut owner = uuid::Uuid::new_v4().to_string().into_bytes();
        owner.push(b':');
        owner.extend_from_slice(value);
        let lock = Lock::new(self.key.clone())
            .owner(owner)
            .lease(self.lease)
            .session();
        let lock = match self.wait {
            Some(timeout) => lock.wait(timeout),
            None => lock.wait_forever(),
        };
        let lock = match &self.watchdog {
            Some(client) => lock.watchdog(client.clone()),
            None => lock,
        };
        Ok((lock, margin))
    }

    /// Campaigns with `value` over `conn` (blocking): waits in the server's queue (first come,
    /// first served) until this candidate leads, then returns its [`Leadership`], renewed by
    /// a watchdog thread until resigned or dropped. The hold is a session hold: it ends when
    /// `conn` closes, so keep `conn` (borrowed by the leadership) open while leading.
    ///
    /// # Errors
    /// [`Error::NotElected`] when the [`wait`](Election::wait) ran out;
    /// [`Error::ValueTooLong`], [`Error::InvalidMargin`], [`Error::LeaseTooShort`],
    /// [`Error::InvalidDuration`], [`Error::NoWatchdogClient`] for bad settings (nothing
    /// sent); [`Error::Redis`] for transport and server errors (a wait cut short by the read
    /// timeout gives a late grant back, as [`Lock::acquire`] does).
    pub fn campaign<'c, C: ConnectionLike>(
        &self,
        conn: &'c mut C,
        value: impl AsRef<[u8]>,
    ) -> Result<Leadership<'c, C>> {
        let (lock, margin) = self.lock(value.as_ref())?;
        let guard = lock.acquire(conn).map_err(not_elected)?;
        let leader = Leader::from_owner(guard.owner().to_vec(), guard.token());
        let signal = LostSignal {
            state: Arc::clone(guard.lease_state()),
            margin,
        };
        Ok(Leadership {
            signal: Firing(signal),
            guard,
            leader,
        })
    }

    /// Campaigns over a clone of `conn` (tokio), as [`campaign`](Election::campaign): the
    /// leadership keeps a clone of `conn` (the session hold is bound to its socket) and a
    /// watchdog task renews the lease over it. Cancellation-safe as
    /// [`Lock::acquire_async`]: a campaign dropped while waiting gives a late grant back.
    ///
    /// # Errors
    /// As [`campaign`](Election::campaign), without [`Error::NoWatchdogClient`]; plus
    /// [`Error::NoRuntime`] and [`Error::TaskEnded`].
    #[cfg(feature = "tokio")]
    pub async fn campaign_async<C: crate::AsyncConnection>(
        &self,
        conn: &mut C,
        value: impl AsRef<[u8]>,
    ) -> Result<AsyncLeadership<C>> {
        let (lock, margin) = self.lock(value.as_ref())?;
        let guard = lock.acquire_async(conn).await.map_err(not_elected)?;
        let leader = Leader::from_owner(guard.owner().to_vec(), guard.token());
        let signal = LostSignal {
            state: Arc::clone(guard.lease_state()),
            margin,
        };
        Ok(AsyncLeadership {
            signal: Firing(signal),
            guard,
            leader,
        })
    }

    /// Who leads now (`LOCK.INFO`): the leader's value and epoch, or `None` when nobody does.
    ///
    /// # Errors
    /// [`Error::Redis`]; [`Error::UnexpectedReply`] for a reply not shaped as `LOCK.INFO`'s.
    pub fn leader(&self, conn: &mut impl ConnectionLike) -> Result<Option<Leader>> {
        let reply: Value = info_cmd(&self.key).query(conn)?;
        parse_state(&reply).map(|(_, leader)| leader)
    }

    /// [`leader`](Election::leader), async.
    ///
    /// # Errors
    /// As [`leader`](Election::leader).
    #[cfg(feature = "tokio")]
    pub async fn leader_async(
        &self,
        conn: &mut impl redis::aio::ConnectionLike,
    ) -> Result<Option<Leader>> {
        let reply: Value = info_cmd(&self.key).query_async(conn).await?;
        parse_state(&reply).map(|(_, leader)| leader)
    }

    /// The leader changes, as an iterator over `conn` (blocking): see [`Observer`].
    pub fn observe<'c, C: ConnectionLike>(&self, conn: &'c mut C) -> Observer<'c, C> {
        Observer {
            key: self.key.clone(),
            conn,
            seen: None,
            highest: 0,
            timeout_ms: None,
        }
    }
}

/// A lost wait reads as not elected.
fn not_elected(error: Error) -> Error {
    match error {
        Error::NotAcquired => Error::NotElected,
        other => other,
    }
}

fn info_cmd(key: &[u8]) -> redis::Cmd {
    let mut cmd = redis::cmd("LOCK.INFO");
    cmd.arg(key);
    cmd
}

/// A `LOCK.INFO`-shaped state as (epoch, leader): nil is (0, none); a shared or semaphore
/// key's newest holder stands for its leader.
fn parse_state(value: &Value) -> Result<(u64, Option<Leader>)> {
    let unexpected = || Error::UnexpectedReply(format!("LOCK.INFO answered {value:?}"));
    if *value == Value::Nil {
        return Ok((0, None));
    }
    let top = fields(value).ok_or_else(unexpected)?;
    let holder = |fields: &[(String, &Value)]| -> Option<(Vec<u8>, u64)> {
        let owner = bytes(field(fields, "owner")?)?;
        let token = u64::try_from(int(field(fields, "token")?)?).ok()?;
        Some((owner, token))
    };
    let newest = match field(&top, "holders") {
        Some(Value::Array(list)) => list
            .iter()
            .map(|item| fields(item).and_then(|item| holder(&item)))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(unexpected)?
            .into_iter()
            .max_by_key(|(_, token)| *token),
        Some(_) => return Err(unexpected()),
        None => Some(holder(&top).ok_or_else(unexpected)?),
    };
    Ok(match newest {
        Some((owner, token)) => (token, Some(Leader::from_owner(owner, token))),
        None => (0, None),
    })
}

/// Tells a leader's work to stop: fires (for good) when the leadership's deadline passes by
/// the client's clock (see [`Leadership::is_leader`]), a renewal finds the hold gone, or the
/// leadership is resigned or dropped. Cheap to clone; `Send + Sync`, for worker threads or
/// tasks.
#[derive(Clone, Debug)]
pub struct LostSignal {
    state: Arc<LeaseState>,
    margin: Duration,
}

impl LostSignal {
    /// Until when leadership holds by the client's clock (`None`: lost). Once the deadline
    /// passes, the leadership is lost for good (the watchdog stops, whatever a late renewal
    /// says): leadership never comes back.
    pub fn deadline(&self) -> Option<Instant> {
        let deadline = self.state.until()?.checked_sub(self.margin)?;
        if Instant::now() >= deadline {
            self.state.mark_lost();
            return None;
        }
        Some(deadline)
    }

    /// Whether the signal fired (leadership lost).
    pub fn is_fired(&self) -> bool {
        self.deadline().is_none()
    }

    /// Blocks until the signal fires.
    pub fn wait(&self) {
        self.state.wait_lost(self.margin, None);
        self.state.mark_lost();
    }

    /// Blocks until the signal fires (true) or `timeout` passes (false).
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        let fired = self
            .state
            .wait_lost(self.margin, Instant::now().checked_add(timeout));
        if fired {
            self.state.mark_lost();
        }
        fired
    }

    /// Resolves when the signal fires. Cancellation-safe: use it in `tokio::select!` next
    /// to the leader's work.
    #[cfg(feature = "tokio")]
    pub async fn fired(&self) {
        loop {
            let changed = self.state.changed.notified();
            match self.deadline() {
                None => return,
                Some(deadline) => {
                    let _ = tokio::time::timeout_at(deadline.into(), changed).await;
                }
            }
        }
    }

    fn fire(&self) {
        self.state.mark_lost();
    }
}

/// A candidate's leadership (blocking API), from [`Election::campaign`]: the exclusive
/// session hold of the election's key, renewed by a watchdog thread. Dropping it resigns
/// (fires the signal, then releases, errors ignored).
pub struct Leadership<'c, C: ConnectionLike> {
    /// Declared first: dropped (fired) before the guard releases.
    signal: Firing,
    guard: LockGuard<'c, C>,
    leader: Leader,
}

/// A [`LostSignal`] fired when dropped: a leadership's, so that its work is told to stop
/// before the release hands the key on.
#[derive(Debug)]
struct Firing(LostSignal);

impl Drop for Firing {
    fn drop(&mut self) {
        self.0.fire();
    }
}

impl<C: ConnectionLike> Leadership<'_, C> {
    /// The epoch: this leadership's fencing token, higher than every earlier leader's.
    pub fn epoch(&self) -> u64 {
        self.leader.epoch
    }

    /// The value this candidate campaigned with.
    pub fn value(&self) -> &[u8] {
        &self.leader.value
    }

    /// This leadership as [`Election::leader`] reports it (id, value, epoch).
    pub fn leader(&self) -> &Leader {
        &self.leader
    }

    /// Whether this candidate still leads by the client's clock: before the deadline (the
    /// lease from an instant taken before the last confirmed request was sent, less the drift
    /// margin), and no renewal found the hold gone. Once false, stays false.
    pub fn is_leader(&self) -> bool {
        !self.signal.0.is_fired()
    }

    /// The instant `is_leader()` turns false unless a renewal moves it (`None`: already).
    pub fn deadline(&self) -> Option<Instant> {
        self.signal.0.deadline()
    }

    /// The signal that tells the leader's work to stop (see [`LostSignal`]).
    pub fn signal(&self) -> LostSignal {
        self.signal.0.clone()
    }

    /// The connection the leadership was won over (its session hold is bound to it).
    pub fn connection(&mut self) -> &mut C {
        self.guard.connection()
    }

    /// Steps down: fires the signal, stops the watchdog and releases the key, which the
    /// server hands to the next candidate in line at once.
    ///
    /// # Errors
    /// [`Error::NotHeld`] (with the server's reason when it has one) when the leadership was
    /// already lost; [`Error::Redis`] for transport errors (the lease then ends it).
    pub fn resign(self) -> Result<()> {
        let Leadership { signal, guard, .. } = self;
        drop(signal);
        guard.release().map(drop)
    }
}

impl<C: ConnectionLike> std::fmt::Debug for Leadership<'_, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leadership")
            .field("leader", &self.leader)
            .field("is_leader", &self.is_leader())
            .finish_non_exhaustive()
    }
}

/// A candidate's leadership (async API), from [`Election::campaign_async`]. Resign it with
/// [`resign`](Self::resign)`.await`; dropping it fires the signal and releases best-effort in
/// a spawned task.
#[cfg(feature = "tokio")]
pub struct AsyncLeadership<C: crate::AsyncConnection> {
    /// Declared first: dropped (fired) before the guard releases.
    signal: Firing,
    guard: crate::AsyncLockGuard<C>,
    leader: Leader,
}

#[cfg(feature = "tokio")]
impl<C: crate::AsyncConnection> AsyncLeadership<C> {
    /// As [`Leadership::epoch`].
    pub fn epoch(&self) -> u64 {
        self.leader.epoch
    }

    /// As [`Leadership::value`].
    pub fn value(&self) -> &[u8] {
        &self.leader.value
    }

    /// As [`Leadership::leader`].
    pub fn leader(&self) -> &Leader {
        &self.leader
    }

    /// As [`Leadership::is_leader`].
    pub fn is_leader(&self) -> bool {
        !self.signal.0.is_fired()
    }

    /// As [`Leadership::deadline`].
    pub fn deadline(&self) -> Option<Instant> {
        self.signal.0.deadline()
    }

    /// As [`Leadership::signal`]; `signal().fired().await` resolves when leadership is lost.
    pub fn signal(&self) -> LostSignal {
        self.signal.0.clone()
    }

    /// As [`Leadership::resign`].
    ///
    /// # Errors
    /// As [`Leadership::resign`], plus [`Error::TaskEnded`].
    pub async fn resign(self) -> Result<()> {
        let AsyncLeadership { signal, guard, .. } = self;
        drop(signal);
        guard.release().await.map(drop)
    }
}

#[cfg(feature = "tokio")]
impl<C: crate::AsyncConnection> std::fmt::Debug for AsyncLeadership<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncLeadership")
            .field("leader", &self.leader)
            .field("is_leader", &self.is_leader())
            .finish_non_exhaustive()
    }
}

/// The leader changes of an [`Election`], from [`Election::observe`]: an iterator of
/// `Result<Option<Leader>>`, `Ok(None)` meaning nobody leads.
///
/// The first item is the state when it is asked (`LOCK.INFO`); each later one is the next
/// change (`LOCK.OBSERVE key epoch`, a blocking read: the server answers when the key's
/// epoch is no longer the last one seen). Each state is yielded once, in order: an epoch is
/// never repeated, and a leader older than one already yielded (say, on a replica that lags
/// after a failover) is skipped. Changes faster than the reads are folded: an observer sees
/// the state after them (the server answers with the state at the time of its reply).
///
/// It blocks the connection, for ever unless a [`timeout`](Observer::timeout) is set: the
/// connection's read timeout must be unset or exceed it. With a timeout, `next()` returns
/// `None` when nothing changed within it; calling `next()` again goes on observing. An error
/// is yielded as `Some(Err(..))`; the next call tries again.
pub struct Observer<'c, C: ConnectionLike> {
    key: Vec<u8>,
    conn: &'c mut C,
    /// The epoch the last reply had.
    seen: Option<u64>,
    /// The highest epoch yielded.
    highest: u64,
    timeout_ms: Option<u64>,
}

impl<C: ConnectionLike> Observer<'_, C> {
    /// Waits at most `timeout` (whole ms, rounded up, at most 30 days) for each change;
    /// `next()` returns `None` when it passes.
    ///
    /// # Errors
    /// [`Error::InvalidDuration`] past 30 days.
    pub fn timeout(mut self, timeout: Duration) -> Result<Self> {
        self.timeout_ms = Some(crate::lock::millis(timeout, "observe timeout")?);
        Ok(self)
    }

    fn read(&mut self) -> Result<Option<(u64, Option<Leader>)>> {
        let Some(seen) = self.seen else {
            let reply: Value = info_cmd(&self.key).query(self.conn)?;
            return parse_state(&reply).map(Some);
        };
        let mut cmd = redis::cmd("LOCK.OBSERVE");
        cmd.arg(&self.key).arg(seen);
        cmd.arg("TIMEOUT").arg(self.timeout_ms.unwrap_or(0));
        let reply: Value = cmd.query(self.conn)?;
        let unexpected = || Error::UnexpectedReply(format!("LOCK.OBSERVE answered {reply:?}"));
        match &reply {
            Value::Nil => Ok(None),
            Value::Array(items) => match items.as_slice() {
                [Value::Int(epoch), state] => {
                    let epoch = u64::try_from(*epoch).map_err(|_| unexpected())?;
                    let (_, leader) = parse_state(state)?;
                    Ok(Some((epoch, leader)))
                }
                _ => Err(unexpected()),
            },
            _ => Err(unexpected()),
        }
    }
}

impl<C: ConnectionLike> Iterator for Observer<'_, C> {
    type Item = Result<Option<Leader>>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let (epoch, leader) = match self.read() {
                Ok(Some(state)) => state,
                Ok(None) => return None,
                Err(error) => return Some(Err(error)),
            };
            self.seen = Some(epoch);
            if epoch != 0 && epoch <= self.highest {
                // An older leader than one yielded: not a change forward.
                continue;
            }
            self.highest = self.highest.max(epoch);
            return Some(Ok(leader));
        }
    }
}

impl<C: ConnectionLike> std::fmt::Debug for Observer<'_, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observer")
            .field("key", &String::from_utf8_lossy(&self.key))
            .field("seen", &self.seen)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_split_into_id_and_value() {
        let id = uuid::Uuid::new_v4().to_string();
        let leader = Leader::from_owner(format!("{id}:a:b").into_bytes(), 7);
        assert_eq!(leader.id.as_deref(), Some(id.as_str()));
        assert_eq!(leader.value, b"a:b");
        assert_eq!(leader.epoch, 7);
        let empty = Leader::from_owner(format!("{id}:").into_bytes(), 1);
        assert_eq!(empty.value, b"");
        let other = Leader::from_owner(b"worker-a".to_vec(), 3);
        assert_eq!(other.id, None);
        assert_eq!(other.value, b"worker-a");
    }

    #[test]
    fn settings_are_checked() {
        let long = vec![b'x'; MAX_VALUE_LEN + 1];
        assert!(matches!(
            Election::new("k").lock(&long),
            Err(Error::ValueTooLong(n)) if n == MAX_VALUE_LEN + 1
        ));
        assert!(Election::new("k").lock(&long[1..]).is_ok());
        assert!(matches!(
            Election::new("k")
                .lease(Duration::from_secs(3))
                .drift_margin(Duration::from_secs(1))
                .lock(b"v"),
            Err(Error::InvalidMargin { .. })
        ));
        assert_eq!(Election::new("k").margin(), Duration::from_secs(1));
    }

    #[test]
    fn states_parse_from_either_protocol() -> Result<()> {
        let id = uuid::Uuid::new_v4().to_string();
        let owner = Value::BulkString(format!("{id}:v").into_bytes());
        let flat = Value::Array(vec![
            Value::SimpleString("owner".into()),
            owner.clone(),
            Value::SimpleString("token".into()),
            Value::Int(9),
        ]);
        let (epoch, leader) = parse_state(&flat)?;
        assert_eq!(epoch, 9);
        assert_eq!(leader.map(|l| l.value), Some(b"v".to_vec()));
        let map = Value::Map(vec![
            (Value::SimpleString("owner".into()), owner),
            (Value::SimpleString("token".into()), Value::Int(9)),
        ]);
        assert_eq!(parse_state(&map)?, parse_state(&flat)?);
        assert_eq!(parse_state(&Value::Nil)?, (0, None));
        assert!(parse_state(&Value::Int(1)).is_err());
        Ok(())
    }
}
