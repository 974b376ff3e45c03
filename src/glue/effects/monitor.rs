//! What the locks are doing (issue 21): the lock log, the last loss per (key, owner), wait and
//! hold percentiles, the hottest keys. The state is pure core (`lock_log`, `lost_holds`,
//! `latency`, `hot_keys`) behind one mutex, fed by one-line calls where grants, releases,
//! expiries, deletions, flushes and session ends happen. The uncontended path takes no lock:
//! a release counts its hold time (read from the token) in a per-millisecond counter, added to
//! the hold histograms in bulk when they are read; waits count only on the contended path;
//! immediate grants are added in bulk from INFO's counters.
//!
//! Every function is main-thread only but `info_snapshot`, which never waits (a crash report).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard, TryLockError};

use crate::core::monitor::hot_keys::{self, Contention, HotKeys};
use crate::core::monitor::latency::{held_ms, Latencies, Measure};
use crate::core::monitor::lock_log::{Event, HoldKind, LockLog, Reason};
use crate::core::monitor::lost_holds::{self, Loss, LostHolds};
use crate::core::state::holds::Holds;
use crate::core::Millis;
use crate::glue::effects::moved_values;
use crate::glue::effects::stats::{self, Counter};
use crate::glue::effects::token_counter;
use crate::glue::server::configs;

/// Everything kept; made at the first use (its histograms are allocated whole, ~0.3 MB).
pub struct State {
    pub log: LockLog,
    pub lost: LostHolds,
    pub latencies: Latencies,
    pub hot: HotKeys,
    /// Grants to waiters, per kind, since the module loaded: immediate grants are the
    /// acquisitions counters less these.
    handed: [u64; 3],
    /// Immediate grants already added to the wait histograms, per kind (since the last reset).
    immediate_counted: [u64; 3],
    /// Holds a server removal unlinked whose cause (expiry, deletion) is not known yet.
    pending: Vec<Pending>,
}

/// Holds unlinked by the server, waiting for their "expired" event or the timer that calls
/// them deleted.
pub struct Pending {
    pub db: i32,
    pub key: Box<[u8]>,
    pub holds: Holds,
    pub at: Millis,
    /// The unlinked value's tracking id (moved_values.rs): still tracked next turn means the
    /// server did not free it (RENAME, MOVE moved it).
    pub tracked: u64,
}

static STATE: Mutex<Option<State>> = Mutex::new(None);

/// Our own writes are under way (handoff::Handling), except while a key is opened: an unlink
/// then is the server expiring the key lazily, which we log.
static OPENING: AtomicBool = AtomicBool::new(false);

/// Whether any unlinked holds wait for their cause (lets the "expired" event skip the lock).
static ANY_PENDING: AtomicBool = AtomicBool::new(false);

/// `total_commands_processed` when last looked at: it falls only on CONFIG RESETSTAT.
static COMMANDS_SEEN: AtomicU64 = AtomicU64::new(0);

/// Holds shorter than this many ms are counted per kind and millisecond
/// (`SHORT_HOLDS[kind][ms]`), without the lock, and added to the hold histograms in bulk when
/// they are read (`State::count_short_holds`), as immediate grants are. Exact: a hold time is
/// whole milliseconds, and the histogram keeps each below a second apart (2 significant
/// digits of µs). 24 KB, touched only where holds fall.
const SHORT_HOLD_MS: usize = 1024;
static SHORT_HOLDS: [[AtomicU64; SHORT_HOLD_MS]; 3] =
    [const { [const { AtomicU64::new(0) }; SHORT_HOLD_MS] }; 3];

/// Counts a hold of `held_ms` in `SHORT_HOLDS`; false when it is too long for them.
#[inline]
fn count_short_hold(kind: HoldKind, held_ms: u64) -> bool {
    let Some(count) = usize::try_from(held_ms)
        .ok()
        .and_then(|ms| SHORT_HOLDS[kind_index(kind)].get(ms))
    else {
        return false;
    };
    count.fetch_add(1, Relaxed);
    true
}

/// Whether any short hold is counted and not yet in the histograms.
fn short_holds_counted() -> bool {
    SHORT_HOLDS
        .iter()
        .any(|kind| kind.iter().any(|count| count.load(Relaxed) > 0))
}

fn lock() -> MutexGuard<'static, Option<State>> {
    STATE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs `f` on the state (made if missing).
pub fn with<T>(f: impl FnOnce(&mut State) -> T) -> T {
    let mut guard = lock();
    f(guard.get_or_insert_with(new_state))
}

fn new_state() -> State {
    State {
        log: LockLog::new(),
        lost: LostHolds::new(),
        latencies: Latencies::new(),
        hot: HotKeys::new(),
        handed: [0; 3],
        immediate_counted: [0; 3],
        pending: Vec::new(),
    }
}

fn kind_index(kind: HoldKind) -> usize {
    match kind {
        HoldKind::Exclusive => 0,
        HoldKind::Shared => 1,
        HoldKind::Limit => 2,
    }
}

pub fn lost_limits() -> lost_holds::Limits {
    lost_holds::Limits {
        max_len: configs::lost_max_len(),
        retention_ms: configs::lost_retention_ms(),
    }
}

pub fn hot_limits() -> hot_keys::Limits {
    hot_keys::Limits {
        capacity: configs::top_size(),
        halflife_ms: configs::top_halflife_ms(),
    }
}

impl State {
    fn held_ms(&mut self, token: u64, now: Millis) -> u64 {
        held_ms(token, &token_counter::leads(), now)
    }

    fn push(&mut self, event: &Event) {
        self.log.push(event, configs::log_max_len());
    }

    /// A hold lost by `reason` at `at`: logged, its loss recorded, its hold time counted.
    #[allow(clippy::too_many_arguments)]
    fn lose(
        &mut self,
        db: i32,
        key: &[u8],
        owner: &[u8],
        token: u64,
        kind: HoldKind,
        session: bool,
        reason: Reason,
        at: Millis,
        now: Millis,
    ) {
        let held = self.held_ms(token, at);
        if matches!(reason, Reason::SessionClosed | Reason::Expired) {
            // Every read of the key finds the closed session, or the expired holder of a key
            // others still hold, until a write stores the key without it: one entry per hold.
            let known = self.lost.lookup(db, key, owner, lost_limits(), now);
            if known.is_some_and(|known| known.token == token && known.reason == reason) {
                return;
            }
        }
        self.latencies
            .record(Measure::Hold, kind, held.saturating_mul(1000));
        self.push(&Event {
            at,
            db,
            key,
            owner,
            token,
            kind,
            session,
            reason,
            duration_ms: held,
            granted: false,
        });
        let loss = Loss {
            reason,
            at,
            token,
            kind,
            held_ms: held,
        };
        self.lost.record(db, key, owner, loss, lost_limits(), now);
    }

    /// Every holder of `holds` lost by `reason` (those with an expiry at or before `at` only,
    /// for an expiry).
    fn lose_all(
        &mut self,
        db: i32,
        key: &[u8],
        holds: &Holds,
        reason: Reason,
        at: Millis,
        now: Millis,
    ) {
        for holder in &holds.holders {
            let when = match reason {
                Reason::Expired => match holder.expires_at {
                    Some(expiry) if expiry <= at => expiry,
                    _ => continue,
                },
                _ => at,
            };
            let kind = HoldKind::of_holder(holds.kind, holder.exclusive);
            let session = holder.session.is_some();
            self.lose(
                db,
                key,
                &holder.owner,
                holder.token,
                kind,
                session,
                reason,
                when,
                now,
            );
        }
    }

    /// Adds the acquisitions granted at once since the last look to the wait histograms.
    fn count_immediate(&mut self) {
        let shared = stats::get(Counter::SharedHolds).saturating_sub(self.handed[1]);
        let limit = stats::get(Counter::LimitHolds).saturating_sub(self.handed[2]);
        let all = stats::get(Counter::Acquisitions);
        let exclusive = all.saturating_sub(shared).saturating_sub(limit);
        for (index, (kind, total)) in [
            (HoldKind::Exclusive, exclusive),
            (HoldKind::Shared, shared),
            (HoldKind::Limit, limit),
        ]
        .into_iter()
        .enumerate()
        {
            let new = total.saturating_sub(self.immediate_counted[index]);
            self.latencies.record_immediate(kind, new);
            self.immediate_counted[index] = total;
        }
    }

    /// Adds the short holds counted since the last look to the hold histograms.
    fn count_short_holds(&mut self) {
        for kind in HoldKind::ALL {
            for (ms, count) in SHORT_HOLDS[kind_index(kind)].iter().enumerate() {
                if count.load(Relaxed) == 0 {
                    continue;
                }
                let n = count.swap(0, Relaxed);
                self.latencies
                    .record_n(Measure::Hold, kind, (ms as u64) * 1000, n);
            }
        }
    }

    /// CONFIG RESETSTAT: percentiles and hot keys start again (the log and losses stay, as
    /// SLOWLOG stays).
    fn reset_stats(&mut self) {
        self.count_immediate();
        self.count_short_holds();
        self.latencies.reset();
        self.hot.reset();
    }
}

/// A hold released to 0 by its owner (`db` and `key` read only when it is logged). In line:
/// the usual short hold under the log threshold costs a few loads and one atomic add.
#[inline]
pub fn hold_released<'a>(
    db: impl FnOnce() -> i32,
    key: impl FnOnce() -> &'a [u8],
    owner: &[u8],
    token: u64,
    kind: HoldKind,
    now: Millis,
) {
    let held = held_ms(token, &token_counter::leads(), now);
    if !count_short_hold(kind, held) {
        record_hold(kind, held);
    }
    let threshold = configs::log_hold_threshold_ms();
    if threshold > 0 && held >= threshold {
        log_long_hold(db(), key(), owner, token, kind, held, now);
    }
}

/// A hold too long for `SHORT_HOLDS`, into its histogram.
#[cold]
#[inline(never)]
fn record_hold(kind: HoldKind, held_ms: u64) {
    with(|state| {
        state
            .latencies
            .record(Measure::Hold, kind, held_ms.saturating_mul(1000))
    });
}

/// A hold of at least `lock.log-hold-threshold-ms`, into the lock log.
#[cold]
#[inline(never)]
fn log_long_hold(
    db: i32,
    key: &[u8],
    owner: &[u8],
    token: u64,
    kind: HoldKind,
    held_ms: u64,
    now: Millis,
) {
    with(|state| {
        state.push(&Event {
            at: now,
            db,
            key,
            owner,
            token,
            kind,
            session: false,
            reason: Reason::LongHold,
            duration_ms: held_ms,
            granted: false,
        })
    });
}

/// An acquire found `key` taken.
pub fn contended(db: i32, key: &[u8], now: Millis) {
    with(|state| {
        state
            .hot
            .note(db, key, Contention::Contended, hot_limits(), now)
    });
}

/// A waiter's wait ended after `waited_us`: granted `token`, or (`None`) its timeout passed.
pub fn wait_ended(
    db: i32,
    key: &[u8],
    owner: &[u8],
    kind: HoldKind,
    waited_us: u64,
    token: Option<u64>,
    now: Millis,
) {
    let threshold = configs::log_wait_threshold_ms();
    let waited_ms = waited_us / 1000;
    with(|state| {
        let granted = token.is_some();
        if granted {
            state.latencies.record(Measure::Wait, kind, waited_us);
            state.handed[kind_index(kind)] += 1;
        }
        let ended = Contention::WaitEnded { waited_ms, granted };
        state.hot.note(db, key, ended, hot_limits(), now);
        if threshold > 0 && waited_ms >= threshold {
            state.push(&Event {
                at: now,
                db,
                key,
                owner,
                token: token.unwrap_or(0),
                kind,
                session: false,
                reason: Reason::LongWait,
                duration_ms: waited_ms,
                granted,
            });
        }
    });
}

/// Holders of `holds` whose expiry has come at `now`, about to be dropped by a check. `key`
/// gives the key's name, asked for only when one has expired (as `sessions_closed`).
pub fn expiring(db: i32, key: impl FnOnce() -> Vec<u8>, holds: &Holds, now: Millis) {
    if holds
        .holders
        .iter()
        .any(|h| h.expires_at.is_some_and(|at| at <= now))
    {
        let key = key();
        with(|state| state.lose_all(db, &key, holds, Reason::Expired, now, now));
    }
}

/// Session holds of `holds` whose connection is gone (`connected` says which are not).
pub fn sessions_closed(
    db: i32,
    key: impl FnOnce() -> Vec<u8>,
    holds: &Holds,
    connected: impl Fn(u64) -> bool,
    now: Millis,
) {
    let closed = |h: &&crate::core::state::holds::Holder| {
        h.session
            .is_some_and(|client| client != 0 && !connected(client))
    };
    if !holds.holders.iter().any(|h| closed(&h)) {
        return;
    }
    let key = key();
    with(|state| {
        for holder in holds.holders.iter().filter(closed) {
            let kind = HoldKind::of_holder(holds.kind, holder.exclusive);
            state.lose(
                db,
                &key,
                &holder.owner,
                holder.token,
                kind,
                true,
                Reason::SessionClosed,
                now,
                now,
            );
        }
    });
}

/// The hook for the deadlock detector: an acquire by `owner` refused because it would close a
/// cycle of waiters (`waited_ms`: how long it had waited, 0 when refused at once).
pub fn deadlock_refused(
    db: i32,
    key: &[u8],
    owner: &[u8],
    kind: HoldKind,
    waited_ms: u64,
    now: Millis,
) {
    with(|state| {
        state.push(&Event {
            at: now,
            db,
            key,
            owner,
            token: 0,
            kind,
            session: false,
            reason: Reason::DeadlockRefused,
            duration_ms: waited_ms,
            granted: false,
        })
    });
}

/// Marks a key being opened (the server may expire it lazily meanwhile): an RAII guard.
pub struct Opening {
    was: bool,
}

impl Opening {
    pub fn begin() -> Opening {
        Opening {
            was: OPENING.swap(true, Relaxed),
        }
    }
}

impl Drop for Opening {
    fn drop(&mut self) {
        OPENING.store(self.was, Relaxed);
    }
}

/// Whether an unlink now is our own write (not an expiry the server does while we open a key).
pub fn own_write(handling: bool) -> bool {
    handling && !OPENING.load(Relaxed)
}

/// The server unlinked a lock value that held `holds` (DEL, UNLINK, overwrite, expiry,
/// RENAME): kept until its "expired" event or the next event-loop turn says which. Whether a
/// timer must be started to settle it.
pub fn unlinked(db: i32, key: &[u8], holds: Holds, now: Millis, address: usize) -> bool {
    if holds.is_free() {
        return false;
    }
    let tracked = moved_values::track_unlinked(address);
    with(|state| {
        // The same value unlinked again this turn (RENAME a c, then RENAME c a or DEL c in one
        // MULTI): it lived on past its earlier unlink, which was a move; only this one counts.
        state.pending.retain(|earlier| earlier.tracked != tracked);
        let first = state.pending.is_empty();
        state.pending.push(Pending {
            db,
            key: key.into(),
            holds,
            at: now,
            tracked,
        });
        ANY_PENDING.store(true, Relaxed);
        first
    })
}

/// The "expired" event of `key`: its unlinked holds expired.
pub fn key_expired(db: i32, key: &[u8], now: Millis) {
    if !ANY_PENDING.load(Relaxed) {
        return;
    }
    with(|state| {
        let Some(at) = state
            .pending
            .iter()
            .rposition(|p| p.db == db && &*p.key == key)
        else {
            return;
        };
        let pending = state.pending.swap_remove(at);
        ANY_PENDING.store(!state.pending.is_empty(), Relaxed);
        // A plain lock's expiry is its key's, gone with it: the removal's time stands for it.
        let mut holds = pending.holds;
        for holder in &mut holds.holders {
            let expiry = holder.expires_at.unwrap_or(pending.at).min(pending.at);
            holder.expires_at = Some(expiry);
        }
        state.lose_all(db, key, &holds, Reason::Expired, pending.at, now);
    });
}

/// The next event-loop turn after unlinks: those no expiry claimed were deleted or
/// overwritten; `exists_as_other` tells them apart (the key holds another type now).
/// Returns the keys settled.
pub fn settle_unlinked(exists_as_other: impl Fn(i32, &[u8]) -> Option<bool>, now: Millis) {
    let pending = with(|state| {
        ANY_PENDING.store(false, Relaxed);
        std::mem::take(&mut state.pending)
    });
    for unlinked in pending {
        if moved_values::take_unlinked(unlinked.tracked) {
            // Not freed: a RENAME or MOVE took the value, holds and all, to another name.
            continue;
        }
        let reason = match exists_as_other(unlinked.db, &unlinked.key) {
            // Freed, and another lock under that name: a RENAME, RESTORE REPLACE or COPY
            // REPLACE put it there over this one (our own writes unlink nothing we log).
            None | Some(true) => Reason::Overwritten,
            Some(false) => Reason::Deleted,
        };
        with(|state| {
            state.lose_all(
                unlinked.db,
                &unlinked.key,
                &unlinked.holds,
                reason,
                unlinked.at,
                now,
            )
        });
    }
}

/// Every lock of a flushed database (or a full sync replacing them), found by the caller.
pub fn flushed(db: i32, key: &[u8], holds: &Holds, resync: bool, now: Millis) {
    let reason = if resync {
        Reason::DroppedOnResync
    } else {
        Reason::Flushed
    };
    with(|state| state.lose_all(db, key, holds, reason, now, now));
}

/// `CONFIG RESETSTAT` is seen as `total_commands_processed` falling (no event tells a module):
/// `commands` is its value now. Whether stats were reset.
pub fn note_commands_processed(commands: u64) -> bool {
    let before = COMMANDS_SEEN.swap(commands, Relaxed);
    if commands >= before {
        return false;
    }
    with(|state| state.reset_stats());
    true
}

/// The lines INFO shows, computed without waiting (`None` while the state is busy).
pub struct InfoSnapshot {
    pub log_len: u64,
    pub log_bytes: u64,
    pub lost_len: u64,
    pub lost_bytes: u64,
    pub top_len: u64,
    pub top_bytes: u64,
    pub histogram_bytes: u64,
    /// (measure, kind, "p50=…,p99=…,p99.9=…")
    pub percentiles: Vec<(Measure, HoldKind, String)>,
}

pub fn info_snapshot() -> Option<InfoSnapshot> {
    let mut guard = match STATE.try_lock() {
        Ok(guard) => guard,
        Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
        Err(TryLockError::WouldBlock) => return None,
    };
    // Locks taken or held uncontended leave only counters (the acquisitions, the short holds'
    // per-millisecond counts): the state their percentiles go to is made when INFO first
    // reads them.
    if guard.is_none() && (stats::get(Counter::Acquisitions) > 0 || short_holds_counted()) {
        *guard = Some(new_state());
    }
    let Some(state) = guard.as_mut() else {
        return Some(InfoSnapshot {
            log_len: 0,
            log_bytes: 0,
            lost_len: 0,
            lost_bytes: 0,
            top_len: 0,
            top_bytes: 0,
            histogram_bytes: 0,
            percentiles: Vec::new(),
        });
    };
    state.count_immediate();
    state.count_short_holds();
    let mut percentiles = Vec::new();
    for measure in Measure::ALL {
        for kind in HoldKind::ALL {
            if let Some(p) = state.latencies.percentiles(measure, kind) {
                percentiles.push((measure, kind, p.latencystats()));
            }
        }
    }
    Some(InfoSnapshot {
        log_len: state.log.len() as u64,
        log_bytes: state.log.memory() as u64,
        lost_len: state.lost.len() as u64,
        lost_bytes: state.lost.memory() as u64,
        top_len: state.hot.len() as u64,
        top_bytes: state.hot.memory() as u64,
        histogram_bytes: state.latencies.memory() as u64,
        percentiles,
    })
}
