//! One key's holds: exclusive, shared, semaphore permits and session holds, one state machine.
//!
//! A key is free (no holders) or held as one of two kinds: a read-write `Lock` (one exclusive
//! holder, or any number of shared holders up to `MAX_HOLDERS`), or a `Semaphore(n)` (up to `n`
//! holders, one permit each). It is a weighted semaphore with FIFO admission: an exclusive
//! request weighs the whole key, a shared request or a permit weighs one, and a request of the
//! other kind than the key's (SHARED on a semaphore, LIMIT on a lock) weighs the whole key, so
//! it waits until the key is free and then turns the key into its own kind. One rule admits
//! every request: **it fits, and nobody is queued ahead of it**. The only request refused
//! outright is `LIMIT n` on a semaphore of another `n`: changing the limit is an admin act.
//!
//! Every holder has its own owner, hold count, fencing token, absolute expiry and, for a
//! session hold, the id of the connection that took it. Each transition takes an explicit
//! `now`, first drops the holders whose expiry has come (`expires_at <= now`), decides, and only
//! then changes anything; on an error nothing but those expired holders is gone (the caller
//! works on a copy and stores nothing).

use crate::core::state::lock::{expiry, Lock, TransitionError, MAX_COUNT};
use crate::core::state::tokens::TokenCounter;
use crate::core::Millis;

/// The most holders one key may have: a semaphore's largest `LIMIT`, and the cap on shared
/// holders (a shared request past it waits like any request that does not fit).
pub const MAX_HOLDERS: u32 = 10_000;

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    Exclusive,
    Shared,
    /// One permit of a semaphore of `n`.
    Limit(u32),
}

/// What a held key is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Kind {
    /// A read-write lock: one exclusive holder, or shared holders.
    #[default]
    Lock,
    Semaphore(u32),
}

/// A key's mode as LOCK.INFO names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Exclusive,
    Shared,
    Limit(u32),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub owner: Box<[u8]>,
    pub count: u32,
    pub token: u64,
    /// Unix ms; `None`: no expiry (an admin's PERSIST on a plain lock).
    pub expires_at: Option<Millis>,
    pub exclusive: bool,
    /// A session hold: `Some(client id)` of the connection that took it, `Some(0)` when that
    /// connection is unknown here (loaded from disk, or replicated): then only its ttl ends it.
    pub session: Option<u64>,
}

/// The holds on one key. No holders: the key is free.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Holds {
    pub kind: Kind,
    pub holders: Vec<Holder>,
}

/// A request: `LOCK.ACQUIRE`'s, or a queued waiter's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ask<'a> {
    pub owner: &'a [u8],
    pub want: Want,
    pub ttl: u64,
    /// The connection a session hold is bound to.
    pub session: Option<u64>,
}

/// Why a well-formed request was refused (the caller changes nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldError {
    Transition(TransitionError),
    /// `LIMIT asked` on a semaphore held with `LIMIT held`.
    LimitDiffers {
        held: u32,
        asked: u32,
    },
    /// The owner holds the key in a way this request cannot reenter (an upgrade from shared
    /// to exclusive, a permit asked as exclusive, ...).
    Conflict {
        held: Mode,
        asked: Want,
    },
}

impl From<TransitionError> for HoldError {
    fn from(error: TransitionError) -> Self {
        HoldError::Transition(error)
    }
}

/// What `acquire` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acquired {
    /// A new holder with a new token.
    Granted { token: u64 },
    /// The owner held it already: count + 1, expiry reset.
    Reentered { token: u64, count: u32 },
    /// It does not fit, or others are queued ahead.
    Busy,
}

/// What admitting a queued waiter did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Granted {
        token: u64,
    },
    /// The waiter's owner holds the key already (another connection of it): count + 1.
    Reentered {
        token: u64,
        count: u32,
    },
    /// The waiter cannot ever be served as asked (its owner holds the key in a conflicting
    /// way, the count would overflow, no token is left): it leaves the queue with nil.
    Refused,
    /// It does not fit yet: it and everyone behind it keep waiting.
    Wait,
    /// The waiter's `HELD n` says an earlier attempt of its call already took effect (its
    /// owner holds n + 1): it leaves with that hold's token, nothing changes.
    Repeated {
        token: u64,
    },
}

/// What `release` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Released {
    NotHeld,
    StillHeld {
        count: u32,
    },
    /// The owner's count reached 0: its hold is gone (others may still hold the key).
    Left,
}

impl Holds {
    pub fn is_free(&self) -> bool {
        self.holders.is_empty()
    }

    /// The holds of a plain lock: one exclusive holder, expiring with its key.
    pub fn from_lock(lock: &Lock, expires_at: Option<Millis>) -> Holds {
        Holds {
            kind: Kind::Lock,
            holders: vec![Holder {
                owner: lock.owner().into(),
                count: lock.count(),
                token: lock.token(),
                expires_at,
                exclusive: true,
                session: None,
            }],
        }
    }

    /// The plain lock these holds are, when they are one (one exclusive holder, no session):
    /// kept in the packed single-allocation form, its expiry being the key's.
    pub fn as_plain_lock(&self) -> Option<(Box<Lock>, Option<Millis>)> {
        match (self.kind, self.holders.as_slice()) {
            (Kind::Lock, [holder]) if holder.exclusive && holder.session.is_none() => Some((
                Lock::boxed(&holder.owner, holder.count, holder.token),
                holder.expires_at,
            )),
            _ => None,
        }
    }

    pub fn mode(&self) -> Mode {
        match self.kind {
            Kind::Semaphore(n) => Mode::Limit(n),
            Kind::Lock if self.holders.iter().any(|holder| holder.exclusive) => Mode::Exclusive,
            Kind::Lock if self.holders.is_empty() => Mode::Exclusive,
            Kind::Lock => Mode::Shared,
        }
    }

    pub fn holder(&self, owner: &[u8]) -> Option<&Holder> {
        self.holders.iter().find(|holder| &*holder.owner == owner)
    }

    fn position(&self, owner: &[u8]) -> Option<usize> {
        self.holders
            .iter()
            .position(|holder| &*holder.owner == owner)
    }

    /// The key's expiry: the latest holder's (`None` if a holder never expires).
    pub fn key_expiry(&self) -> Option<Millis> {
        self.holders
            .iter()
            .try_fold(Millis::MIN, |latest, holder| {
                holder.expires_at.map(|at| latest.max(at))
            })
            .filter(|_| !self.holders.is_empty())
    }

    /// When the next holder expires (what a timer must wake for), if any does.
    pub fn next_expiry(&self) -> Option<Millis> {
        self.holders
            .iter()
            .filter_map(|holder| holder.expires_at)
            .min()
    }

    /// Drops the holders whose expiry has come; how many went.
    pub fn expire(&mut self, now: Millis) -> usize {
        let before = self.holders.len();
        self.holders
            .retain(|holder| holder.expires_at.is_none_or(|at| at > now));
        before - self.holders.len()
    }

    /// Ends the session holds of connection `client` (never `Some(0)`, the unknown one); how
    /// many went.
    pub fn end_session(&mut self, client: u64) -> usize {
        if client == 0 {
            return 0;
        }
        let before = self.holders.len();
        self.holders.retain(|holder| holder.session != Some(client));
        before - self.holders.len()
    }

    /// Ends the session holds whose connection is gone (`connected(id)` false); the unknown
    /// connection (id 0: loaded or replicated) is never asked about. How many went, and how
    /// many of those had not expired by `now` (ended by the close, not by their ttl).
    pub fn end_closed_sessions(
        &mut self,
        connected: impl Fn(u64) -> bool,
        now: Millis,
    ) -> (usize, usize) {
        let before = self.holders.len();
        let mut live = 0;
        self.holders.retain(|holder| match holder.session {
            Some(client) if client != 0 && !connected(client) => {
                live += usize::from(holder.expires_at.is_none_or(|at| at > now));
                false
            }
            _ => true,
        });
        (before - self.holders.len(), live)
    }

    /// An admin moved the key's expiry (PEXPIRE, RESTORE with a ttl) before its holders' own:
    /// it ends every hold then. A key without expiry (PERSIST) extends none of them.
    pub fn cap_expiries(&mut self, key_expiry: Option<Millis>) {
        let Some(cap) = key_expiry else {
            return;
        };
        for holder in &mut self.holders {
            holder.expires_at = Some(holder.expires_at.map_or(cap, |at| at.min(cap)));
        }
    }

    /// Whether a new holder asking `want` fits beside the current ones.
    pub fn fits(&self, want: Want) -> bool {
        if self.holders.is_empty() {
            return true;
        }
        let room = |cap: u32| (self.holders.len() as u64) < u64::from(cap);
        match (self.kind, want) {
            (Kind::Lock, Want::Shared) => {
                room(MAX_HOLDERS) && self.holders.iter().all(|holder| !holder.exclusive)
            }
            (Kind::Semaphore(n), Want::Limit(m)) => n == m && room(n),
            // Exclusive weighs the whole key; another kind waits until the key is free.
            _ => false,
        }
    }

    /// Whether `owner` holds the key in a way a request asking `want` could reenter (a shared
    /// holder cannot reenter exclusive, a permit of LIMIT n not as LIMIT m, ...); `Ok` also when
    /// it holds nothing.
    pub fn may_reenter(&self, owner: &[u8], want: Want) -> Result<(), HoldError> {
        match self.position(owner) {
            Some(i) => self.check_reentry(i, want),
            None => Ok(()),
        }
    }

    /// Whether the holder at `i` may take one more hold asked as `want`.
    fn check_reentry(&self, i: usize, want: Want) -> Result<(), HoldError> {
        let holder = &self.holders[i];
        let allowed = match (self.kind, want) {
            (Kind::Lock, Want::Exclusive) => holder.exclusive,
            (Kind::Lock, Want::Shared) => true,
            (Kind::Semaphore(n), Want::Limit(m)) if n != m => {
                return Err(HoldError::LimitDiffers { held: n, asked: m })
            }
            (Kind::Semaphore(_), Want::Limit(_)) => true,
            _ => false,
        };
        if allowed {
            Ok(())
        } else {
            let held = match self.kind {
                Kind::Semaphore(n) => Mode::Limit(n),
                Kind::Lock if holder.exclusive => Mode::Exclusive,
                Kind::Lock => Mode::Shared,
            };
            Err(HoldError::Conflict { held, asked: want })
        }
    }

    /// One more hold for the holder at `i`, expiring `ttl` from `now` (or as before).
    fn count_up(&mut self, i: usize, ttl: Option<u64>, now: Millis) -> Result<u32, HoldError> {
        let holder = &mut self.holders[i];
        let count = holder.count + 1;
        if count > MAX_COUNT {
            return Err(TransitionError::CountOverflow.into());
        }
        holder.count = count;
        if let Some(ttl) = ttl {
            // A reentry never shortens the hold (Redisson #1110 was a nested lock with a
            // shorter lease cutting the outer one); a permanent hold stays permanent.
            let asked = expiry(now, ttl);
            holder.expires_at = holder.expires_at.map(|at| at.max(asked));
        }
        Ok(count)
    }

    /// A new holder for `ask`, with a new token; the caller checked that it fits.
    fn add_holder(
        &mut self,
        ask: &Ask,
        now: Millis,
        tokens: &mut TokenCounter,
    ) -> Result<u64, HoldError> {
        let token = tokens
            .next_token(now)
            .map_err(|_| TransitionError::TokensExhausted)?;
        if self.holders.is_empty() {
            self.kind = match ask.want {
                Want::Limit(n) => Kind::Semaphore(n),
                Want::Exclusive | Want::Shared => Kind::Lock,
            };
        }
        self.holders.push(Holder {
            owner: ask.owner.into(),
            count: 1,
            token,
            expires_at: Some(expiry(now, ask.ttl)),
            exclusive: ask.want == Want::Exclusive,
            session: ask.session,
        });
        Ok(token)
    }
}

/// Which way a call moves its owner's hold count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// LOCK.ACQUIRE, LOCK.REENTER: n -> n + 1 (or a new hold from 0).
    Up,
    /// LOCK.RELEASE: n -> n - 1.
    Down,
}

/// What a caller's `HELD n` says of its call, against the owner's real count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    /// No `HELD`, or the count is as the caller believes: make the change.
    Proceed,
    /// The count is already where this call would take it: an earlier attempt of the very
    /// same call (a client's retry after a timeout) took effect. Answer as it did, change
    /// nothing. Carries that count.
    Repeated { count: u32 },
    /// The caller believes it holds the key, and its owner holds nothing: the hold was lost
    /// (expired, deleted, its session ended), or a release's earlier attempt freed it.
    NotHeld,
    /// Neither: the caller's count is wrong (two callers share an owner id?). Refuse.
    Mismatch { held: u32, expected: u32 },
}

/// Checks `HELD expected` of a call that moves `owner`'s count one `step`, on holds as of now
/// (expired holders already dropped). Retried commands stay exactly-once this way: redis-py,
/// Lettuce, go-redis and ioredis all resend a command whose reply timed out.
pub fn expect_count(holds: &Holds, owner: &[u8], expected: Option<u32>, step: Step) -> Expected {
    let held = holds.holder(owner).map_or(0, |holder| holder.count);
    expect_held(held, expected, step)
}

/// `expect_count` for an owner whose real count is `held` (0: it holds nothing).
pub fn expect_held(held: u32, expected: Option<u32>, step: Step) -> Expected {
    let Some(expected) = expected else {
        return Expected::Proceed;
    };
    let after = match step {
        Step::Up => expected.checked_add(1),
        Step::Down => expected.checked_sub(1),
    };
    if held == expected {
        Expected::Proceed
    } else if held == 0 {
        Expected::NotHeld
    } else if Some(held) == after {
        Expected::Repeated { count: held }
    } else {
        Expected::Mismatch { held, expected }
    }
}

/// `LOCK.ACQUIRE`: reenter one's own hold, take a new one if it fits and nobody waits
/// (`waiters_queued`), or be busy.
pub fn acquire(
    holds: &mut Holds,
    ask: &Ask,
    now: Millis,
    tokens: &mut TokenCounter,
    waiters_queued: bool,
) -> Result<Acquired, HoldError> {
    holds.expire(now);
    if let Some(i) = holds.position(ask.owner) {
        holds.check_reentry(i, ask.want)?;
        let count = holds.count_up(i, Some(ask.ttl), now)?;
        return Ok(Acquired::Reentered {
            token: holds.holders[i].token,
            count,
        });
    }
    if let (Kind::Semaphore(held), Want::Limit(asked)) = (holds.kind, ask.want) {
        if held != asked && !holds.is_free() {
            return Err(HoldError::LimitDiffers { held, asked });
        }
    }
    if waiters_queued || !holds.fits(ask.want) {
        return Ok(Acquired::Busy);
    }
    let token = holds.add_holder(ask, now, tokens)?;
    Ok(Acquired::Granted { token })
}

/// The queue's head `ask` gets its turn: admitted, reentered, refused for good, or waits
/// (and so does everyone behind it).
pub fn admit(holds: &mut Holds, ask: &Ask, now: Millis, tokens: &mut TokenCounter) -> Admission {
    holds.expire(now);
    if let Some(i) = holds.position(ask.owner) {
        if holds.check_reentry(i, ask.want).is_err() {
            return Admission::Refused;
        }
        return match holds.count_up(i, Some(ask.ttl), now) {
            Ok(count) => Admission::Reentered {
                token: holds.holders[i].token,
                count,
            },
            Err(_) => Admission::Refused,
        };
    }
    if !holds.fits(ask.want) {
        return Admission::Wait;
    }
    match holds.add_holder(ask, now, tokens) {
        Ok(token) => Admission::Granted { token },
        Err(_) => Admission::Refused,
    }
}

/// `LOCK.REENTER`: count + 1 (and expiry reset when `ttl` is given) if `owner` holds the key,
/// whatever its kind of hold; `Ok(None)` otherwise.
pub fn reenter(
    holds: &mut Holds,
    owner: &[u8],
    ttl: Option<u64>,
    now: Millis,
) -> Result<Option<u32>, HoldError> {
    holds.expire(now);
    match holds.position(owner) {
        Some(i) => holds.count_up(i, ttl, now).map(Some),
        None => Ok(None),
    }
}

/// `LOCK.RELEASE`: count - 1 of `owner`'s hold; at 0 the hold is gone.
pub fn release(holds: &mut Holds, owner: &[u8], now: Millis) -> Released {
    holds.expire(now);
    let Some(i) = holds.position(owner) else {
        return Released::NotHeld;
    };
    let holder = &mut holds.holders[i];
    if holder.count > 1 {
        holder.count -= 1;
        Released::StillHeld {
            count: holder.count,
        }
    } else {
        holds.holders.remove(i);
        Released::Left
    }
}

/// `LOCK.RENEW`: `owner`'s hold expires `ttl` from now; its new expiry, or `None` if not held.
pub fn renew(holds: &mut Holds, owner: &[u8], ttl: u64, now: Millis) -> Option<Millis> {
    holds.expire(now);
    let i = holds.position(owner)?;
    let at = expiry(now, ttl);
    holds.holders[i].expires_at = Some(at);
    Some(at)
}

/// What a replayed state did to the holds before it, named after the master's command.
pub fn classify_replay(before: &Holds, after: &Holds) -> crate::core::state::lock::Replayed {
    use crate::core::state::lock::Replayed;
    let known = |token: u64| before.holders.iter().any(|holder| holder.token == token);
    if after.holders.iter().any(|holder| !known(holder.token)) {
        return Replayed::Acquired;
    }
    let total = |holds: &Holds| {
        holds
            .holders
            .iter()
            .map(|h| u64::from(h.count))
            .sum::<u64>()
    };
    let (was, is) = (total(before), total(after));
    if is > was {
        Replayed::Reentered
    } else if is < was {
        Replayed::Released
    } else if before
        .holders
        .iter()
        .map(|h| h.expires_at)
        .ne(after.holders.iter().map(|h| h.expires_at))
    {
        Replayed::Renewed
    } else {
        Replayed::Unchanged
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::state::tokens::{clock_floor, MAX_TOKEN};

    const NOW: Millis = 1_700_000_000_000;

    fn ask(owner: &str, want: Want) -> Ask<'_> {
        Ask {
            owner: owner.as_bytes(),
            want,
            ttl: 1000,
            session: None,
        }
    }

    fn tokens() -> TokenCounter {
        TokenCounter::from_parts(0, 0)
    }

    fn take(holds: &mut Holds, owner: &str, want: Want, t: &mut TokenCounter) -> Acquired {
        acquire(holds, &ask(owner, want), NOW, t, false).expect("no error")
    }

    #[test]
    fn held_lets_a_retried_call_take_effect_once() {
        let mut t = tokens();
        let mut holds = Holds::default();
        take(&mut holds, "a", Want::Exclusive, &mut t);
        take(&mut holds, "a", Want::Exclusive, &mut t);
        // "a" holds 2.
        let check = |expected, step| expect_count(&holds, b"a", expected, step);
        assert_eq!(check(None, Step::Up), Expected::Proceed);
        assert_eq!(check(Some(2), Step::Up), Expected::Proceed);
        assert_eq!(check(Some(1), Step::Up), Expected::Repeated { count: 2 });
        let mismatch = |expected| Expected::Mismatch { held: 2, expected };
        assert_eq!(check(Some(0), Step::Up), mismatch(0));
        assert_eq!(check(Some(3), Step::Up), mismatch(3));
        assert_eq!(check(Some(1), Step::Down), mismatch(1));
        assert_eq!(check(Some(4), Step::Down), mismatch(4));
        assert_eq!(check(Some(2), Step::Down), Expected::Proceed);
        assert_eq!(check(Some(3), Step::Down), Expected::Repeated { count: 2 });
        // Someone who holds nothing.
        let other = |expected, step| expect_count(&holds, b"b", expected, step);
        assert_eq!(other(Some(0), Step::Up), Expected::Proceed);
        assert_eq!(other(Some(1), Step::Up), Expected::NotHeld);
        assert_eq!(other(Some(1), Step::Down), Expected::NotHeld);
        assert_eq!(other(Some(2), Step::Down), Expected::NotHeld);
        assert_eq!(other(None, Step::Down), Expected::Proceed);
    }

    #[test]
    fn closed_sessions_end_and_unknown_ones_stay() {
        let mut holds = Holds::default();
        let mut t = tokens();
        for (owner, session) in [
            ("a", Some(5)),
            ("b", Some(0)),
            ("c", None),
            ("d", Some(6)),
            ("e", Some(7)),
        ] {
            let ask = Ask {
                session,
                ..ask(owner, Want::Shared)
            };
            acquire(&mut holds, &ask, NOW, &mut t, false).expect("granted");
        }
        // e's hold ran out before its connection closed: it goes, not counted as ended by it.
        holds.holders[4].expires_at = Some(NOW);
        let asked = std::cell::RefCell::new(Vec::new());
        let ended = holds.end_closed_sessions(
            |client| {
                asked.borrow_mut().push(client);
                client == 6
            },
            NOW,
        );
        assert_eq!(ended, (2, 1));
        assert_eq!(*asked.borrow(), vec![5, 6, 7]);
        let owners: Vec<&[u8]> = holds.holders.iter().map(|h| &*h.owner).collect();
        assert_eq!(owners, [&b"b"[..], b"c", b"d"]);
    }

    #[test]
    fn an_earlier_key_expiry_caps_every_hold_and_none_extends_nothing() {
        let mut holds = Holds::default();
        let mut t = tokens();
        for (owner, ttl) in [("a", 1_000), ("b", 9_000)] {
            let ask = Ask {
                ttl,
                ..ask(owner, Want::Shared)
            };
            acquire(&mut holds, &ask, NOW, &mut t, false).expect("granted");
        }
        let mut persisted = holds.clone();
        persisted.cap_expiries(None);
        assert_eq!(persisted, holds);
        holds.cap_expiries(Some(NOW + 5_000));
        let expiries: Vec<_> = holds.holders.iter().map(|h| h.expires_at).collect();
        assert_eq!(expiries, [Some(NOW + 1_000), Some(NOW + 5_000)]);
        assert_eq!(holds.key_expiry(), Some(NOW + 5_000));
    }

    #[test]
    fn a_reentry_never_shortens_a_hold() {
        let mut t = tokens();
        let mut holds = Holds::default();
        let long = Ask {
            ttl: 60_000,
            ..ask("a", Want::Exclusive)
        };
        acquire(&mut holds, &long, NOW, &mut t, false).expect("granted");
        let short = Ask {
            ttl: 1_000,
            ..ask("a", Want::Exclusive)
        };
        acquire(&mut holds, &short, NOW + 10, &mut t, false).expect("reentered");
        assert_eq!(holds.holders[0].expires_at, Some(NOW + 60_000));
        assert_eq!(reenter(&mut holds, b"a", Some(5), NOW + 20), Ok(Some(3)));
        assert_eq!(holds.holders[0].expires_at, Some(NOW + 60_000));
        // A longer one extends it.
        assert_eq!(
            reenter(&mut holds, b"a", Some(90_000), NOW + 30),
            Ok(Some(4))
        );
        assert_eq!(holds.holders[0].expires_at, Some(NOW + 90_030));
        // A waiter's reentry (another connection of the owner) likewise.
        assert!(matches!(
            admit(&mut holds, &short, NOW + 40, &mut t),
            Admission::Reentered { count: 5, .. }
        ));
        assert_eq!(holds.holders[0].expires_at, Some(NOW + 90_030));
        // A permanent hold (an admin's PERSIST) stays permanent.
        holds.holders[0].expires_at = None;
        assert_eq!(reenter(&mut holds, b"a", Some(5), NOW + 50), Ok(Some(6)));
        assert_eq!(holds.holders[0].expires_at, None);
        // RENEW still sets exactly what it is asked.
        holds.holders[0].expires_at = Some(NOW + 90_030);
        assert_eq!(renew(&mut holds, b"a", 100, NOW + 60), Some(NOW + 160));
    }

    #[test]
    fn an_exclusive_hold_excludes_every_other_request() {
        let mut t = tokens();
        let mut holds = Holds::default();
        let first = clock_floor(NOW);
        assert_eq!(
            take(&mut holds, "a", Want::Exclusive, &mut t),
            Acquired::Granted { token: first }
        );
        for want in [Want::Exclusive, Want::Shared, Want::Limit(3)] {
            assert_eq!(
                take(&mut holds, "b", want, &mut t),
                Acquired::Busy,
                "{want:?}"
            );
        }
        assert_eq!(holds.holders.len(), 1);
        assert_eq!(holds.mode(), Mode::Exclusive);
        assert!(holds.as_plain_lock().is_some());
    }

    #[test]
    fn shared_holds_coexist_and_exclude_a_writer() {
        let mut t = tokens();
        let mut holds = Holds::default();
        let a = take(&mut holds, "a", Want::Shared, &mut t);
        let b = take(&mut holds, "b", Want::Shared, &mut t);
        let (Acquired::Granted { token: ta }, Acquired::Granted { token: tb }) = (a, b) else {
            panic!("{a:?} {b:?}");
        };
        assert!(tb > ta, "each reader has its own, rising token");
        assert_eq!(holds.mode(), Mode::Shared);
        assert!(holds.as_plain_lock().is_none());
        assert_eq!(
            take(&mut holds, "w", Want::Exclusive, &mut t),
            Acquired::Busy
        );
        assert_eq!(
            take(&mut holds, "s", Want::Limit(2), &mut t),
            Acquired::Busy
        );
        assert_eq!(release(&mut holds, b"a", NOW), Released::Left);
        assert_eq!(release(&mut holds, b"b", NOW), Released::Left);
        assert!(holds.is_free());
        assert!(matches!(
            take(&mut holds, "w", Want::Exclusive, &mut t),
            Acquired::Granted { token } if token > tb
        ));
    }

    #[test]
    fn a_semaphore_admits_up_to_its_limit_and_refuses_another_limit() {
        let mut t = tokens();
        let mut holds = Holds::default();
        for owner in ["a", "b", "c"] {
            assert!(matches!(
                take(&mut holds, owner, Want::Limit(3), &mut t),
                Acquired::Granted { .. }
            ));
        }
        assert_eq!(holds.mode(), Mode::Limit(3));
        assert_eq!(
            take(&mut holds, "d", Want::Limit(3), &mut t),
            Acquired::Busy
        );
        let before = holds.clone();
        assert_eq!(
            acquire(&mut holds, &ask("d", Want::Limit(4)), NOW, &mut t, false),
            Err(HoldError::LimitDiffers { held: 3, asked: 4 })
        );
        assert_eq!(
            acquire(&mut holds, &ask("a", Want::Limit(4)), NOW, &mut t, false),
            Err(HoldError::LimitDiffers { held: 3, asked: 4 })
        );
        assert_eq!(holds, before);
        // Other kinds wait for the whole key.
        assert_eq!(
            take(&mut holds, "x", Want::Exclusive, &mut t),
            Acquired::Busy
        );
        assert_eq!(take(&mut holds, "x", Want::Shared, &mut t), Acquired::Busy);
        // Once every permit is back, the next request sets the kind and the limit.
        for owner in ["a", "b", "c"] {
            assert_eq!(release(&mut holds, owner.as_bytes(), NOW), Released::Left);
        }
        assert!(matches!(
            take(&mut holds, "d", Want::Limit(5), &mut t),
            Acquired::Granted { .. }
        ));
        assert_eq!(holds.mode(), Mode::Limit(5));
    }

    #[test]
    fn reentry_counts_up_per_owner_and_refuses_an_upgrade() {
        let mut t = tokens();
        let mut holds = Holds::default();
        take(&mut holds, "r", Want::Shared, &mut t);
        let token = holds.holders[0].token;
        assert_eq!(
            take(&mut holds, "r", Want::Shared, &mut t),
            Acquired::Reentered { token, count: 2 }
        );
        assert_eq!(
            acquire(&mut holds, &ask("r", Want::Exclusive), NOW, &mut t, false),
            Err(HoldError::Conflict {
                held: Mode::Shared,
                asked: Want::Exclusive
            })
        );
        assert_eq!(
            acquire(&mut holds, &ask("r", Want::Limit(2)), NOW, &mut t, false),
            Err(HoldError::Conflict {
                held: Mode::Shared,
                asked: Want::Limit(2)
            })
        );
        // A writer may reenter asking for less.
        let mut w = Holds::default();
        take(&mut w, "w", Want::Exclusive, &mut t);
        assert!(matches!(
            take(&mut w, "w", Want::Shared, &mut t),
            Acquired::Reentered { count: 2, .. }
        ));
        // ... but not as a permit, and the refusal names what it holds.
        assert_eq!(
            acquire(&mut w, &ask("w", Want::Limit(2)), NOW, &mut t, false),
            Err(HoldError::Conflict {
                held: Mode::Exclusive,
                asked: Want::Limit(2)
            })
        );
        // A permit reenters with the same limit only.
        let mut s = Holds::default();
        take(&mut s, "p", Want::Limit(2), &mut t);
        assert!(matches!(
            take(&mut s, "p", Want::Limit(2), &mut t),
            Acquired::Reentered { count: 2, .. }
        ));
        assert_eq!(
            acquire(&mut s, &ask("p", Want::Exclusive), NOW, &mut t, false),
            Err(HoldError::Conflict {
                held: Mode::Limit(2),
                asked: Want::Exclusive
            })
        );
        assert_eq!(reenter(&mut s, b"p", None, NOW), Ok(Some(3)));
        assert_eq!(reenter(&mut s, b"q", None, NOW), Ok(None));
    }

    #[test]
    fn a_newcomer_never_passes_the_queue_but_a_holder_reenters() {
        let mut t = tokens();
        let mut holds = Holds::default();
        take(&mut holds, "a", Want::Shared, &mut t);
        let queued = acquire(&mut holds, &ask("b", Want::Shared), NOW, &mut t, true);
        assert_eq!(queued, Ok(Acquired::Busy));
        let own = acquire(&mut holds, &ask("a", Want::Shared), NOW, &mut t, true);
        assert!(matches!(own, Ok(Acquired::Reentered { count: 2, .. })));
    }

    #[test]
    fn each_holder_expires_on_its_own() {
        let mut t = tokens();
        let mut holds = Holds::default();
        let mut early = ask("a", Want::Shared);
        early.ttl = 100;
        acquire(&mut holds, &early, NOW, &mut t, false).expect("a");
        acquire(&mut holds, &ask("b", Want::Shared), NOW, &mut t, false).expect("b");
        assert_eq!(holds.next_expiry(), Some(NOW + 100));
        assert_eq!(holds.key_expiry(), Some(NOW + 1000));
        assert_eq!(holds.expire(NOW + 99), 0);
        assert_eq!(holds.expire(NOW + 100), 1, "gone at its expiry millisecond");
        assert_eq!(holds.holders[0].owner.as_ref(), b"b");
        assert_eq!(renew(&mut holds, b"a", 500, NOW + 100), None);
        assert_eq!(renew(&mut holds, b"b", 500, NOW + 100), Some(NOW + 600));
        assert_eq!(release(&mut holds, b"b", NOW + 600), Released::NotHeld);
        assert!(holds.is_free());
        assert_eq!(holds.key_expiry(), None);
    }

    #[test]
    fn a_holder_without_expiry_keeps_the_key_without_one() {
        let lock = Lock::boxed(b"a", 2, 7);
        let holds = Holds::from_lock(&lock, None);
        assert_eq!(holds.key_expiry(), None);
        assert_eq!(holds.next_expiry(), None);
        assert_eq!(holds.as_plain_lock(), Some((lock, None)));
    }

    #[test]
    fn a_session_ends_only_its_own_holds() {
        let mut t = tokens();
        let mut holds = Holds::default();
        let mut s = ask("a", Want::Shared);
        s.session = Some(42);
        acquire(&mut holds, &s, NOW, &mut t, false).expect("a");
        let mut unknown = ask("b", Want::Shared);
        unknown.session = Some(0);
        acquire(&mut holds, &unknown, NOW, &mut t, false).expect("b");
        take(&mut holds, "c", Want::Shared, &mut t);
        assert_eq!(holds.end_session(7), 0);
        assert_eq!(
            holds.end_session(0),
            0,
            "an unknown connection ends nothing"
        );
        assert_eq!(holds.end_session(42), 1);
        assert_eq!(holds.holders.len(), 2);
        assert!(holds.holder(b"a").is_none());
        // A session hold is never the packed plain form, even when exclusive.
        let mut x = Holds::default();
        assert_eq!(
            x.mode(),
            Mode::Exclusive,
            "a free lock is a plain (exclusive) lock"
        );
        let mut e = ask("x", Want::Exclusive);
        e.session = Some(5);
        acquire(&mut x, &e, NOW, &mut t, false).expect("x");
        assert!(x.as_plain_lock().is_none());
        assert_eq!(x.mode(), Mode::Exclusive);
    }

    #[test]
    fn a_run_of_shared_heads_is_admitted_together_and_a_writer_stops_it() {
        let mut t = tokens();
        let mut holds = Holds::default();
        take(&mut holds, "w", Want::Exclusive, &mut t);
        let queue = [
            ask("r1", Want::Shared),
            ask("r2", Want::Shared),
            ask("w2", Want::Exclusive),
            ask("r3", Want::Shared),
        ];
        // The plan the glue applies (core/waiting/handoff.rs), on the queue as it stands.
        let plan = |holds: &mut Holds, t: &mut TokenCounter| {
            let queued = queue.iter().map(|ask| (*ask, None));
            crate::core::waiting::handoff::plan(holds, queued, queue.len(), NOW, t).leaving
        };
        assert!(plan(&mut holds, &mut t).is_empty());
        release(&mut holds, b"w", NOW);
        let admitted = plan(&mut holds, &mut t);
        assert_eq!(admitted.len(), 2);
        assert!(admitted
            .iter()
            .all(|a| matches!(a, Admission::Granted { .. })));
        assert_eq!(holds.mode(), Mode::Shared);
        // r3 must not pass w2.
        assert_eq!(admit(&mut holds, &queue[2], NOW, &mut t), Admission::Wait);
    }

    #[test]
    fn a_waiter_whose_owner_holds_the_key_reenters_at_its_turn() {
        let mut t = tokens();
        let mut holds = Holds::default();
        take(&mut holds, "o", Want::Exclusive, &mut t);
        let token = holds.holders[0].token;
        assert_eq!(
            admit(&mut holds, &ask("o", Want::Exclusive), NOW, &mut t),
            Admission::Reentered { token, count: 2 }
        );
        let mut r = Holds::default();
        take(&mut r, "o", Want::Shared, &mut t);
        assert_eq!(
            admit(&mut r, &ask("o", Want::Exclusive), NOW, &mut t),
            Admission::Refused,
            "an upgrade is never granted, even from the queue"
        );
    }

    #[test]
    fn refusals_past_the_count_or_the_tokens_change_nothing() {
        let mut t = tokens();
        let lock = Lock::boxed(b"a", MAX_COUNT, 7);
        let mut holds = Holds::from_lock(&lock, Some(NOW + 5));
        let before = holds.clone();
        assert_eq!(
            acquire(&mut holds, &ask("a", Want::Exclusive), NOW, &mut t, false),
            Err(HoldError::Transition(TransitionError::CountOverflow))
        );
        assert_eq!(holds, before);
        assert_eq!(
            admit(&mut holds, &ask("a", Want::Exclusive), NOW, &mut t),
            Admission::Refused
        );
        let mut spent = TokenCounter::from_parts(MAX_TOKEN, 0);
        let mut free = Holds::default();
        assert_eq!(
            acquire(&mut free, &ask("a", Want::Shared), NOW, &mut spent, false),
            Err(HoldError::Transition(TransitionError::TokensExhausted))
        );
        assert!(free.is_free());
        assert_eq!(
            admit(&mut free, &ask("a", Want::Shared), NOW, &mut spent),
            Admission::Refused
        );
    }

    #[test]
    fn shared_holders_are_capped() {
        let mut t = tokens();
        let mut holds = Holds::default();
        for i in 0..MAX_HOLDERS {
            let owner = i.to_string();
            assert!(matches!(
                take(&mut holds, &owner, Want::Shared, &mut t),
                Acquired::Granted { .. }
            ));
        }
        assert_eq!(
            take(&mut holds, "one-more", Want::Shared, &mut t),
            Acquired::Busy
        );
    }

    #[test]
    fn replays_are_named_after_what_changed() {
        use crate::core::state::lock::Replayed;
        let mut t = tokens();
        let mut before = Holds::default();
        take(&mut before, "a", Want::Shared, &mut t);
        let mut after = before.clone();
        take(&mut after, "b", Want::Shared, &mut t);
        assert_eq!(classify_replay(&before, &after), Replayed::Acquired);
        assert_eq!(classify_replay(&after, &before), Replayed::Released);
        let mut more = before.clone();
        take(&mut more, "a", Want::Shared, &mut t);
        assert_eq!(classify_replay(&before, &more), Replayed::Reentered);
        let mut renewed = before.clone();
        renew(&mut renewed, b"a", 5000, NOW);
        assert_eq!(classify_replay(&before, &renewed), Replayed::Renewed);
        assert_eq!(classify_replay(&before, &before), Replayed::Unchanged);
    }

    /// A random walk over every input, each step at its own `now`, with the invariants checked
    /// after each: the used weight fits the capacity, one exclusive holder or only shared ones,
    /// owners unique, tokens unique and every new one above all before, counts in range, no
    /// holder past its expiry after a step, and FIFO: a queued request is only ever admitted
    /// from the head, and a newcomer never passes a non-empty queue.
    #[test]
    fn property_invariants_hold_after_every_step() {
        let mut seed: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let owners = ["a", "b", "c", "d", "e", "f"];
        let wants = [
            Want::Exclusive,
            Want::Shared,
            Want::Limit(2),
            Want::Limit(3),
        ];
        for _run in 0..200 {
            let mut t = tokens();
            let mut holds = Holds::default();
            let mut queue: Vec<(usize, Want, u64)> = Vec::new();
            let mut now = NOW;
            let mut highest = 0u64;
            for _step in 0..150 {
                now += next(40) as i64;
                let owner = owners[next(owners.len() as u64) as usize];
                let want = wants[next(wants.len() as u64) as usize];
                let ttl = 1 + next(200);
                let before_tokens: Vec<u64> = holds.holders.iter().map(|h| h.token).collect();
                match next(8) {
                    0 | 1 => {
                        let a = Ask {
                            owner: owner.as_bytes(),
                            want,
                            ttl,
                            session: Some(next(3)),
                        };
                        let queued = !queue.is_empty();
                        match acquire(&mut holds, &a, now, &mut t, queued) {
                            Ok(Acquired::Granted { token }) => {
                                assert!(!queued, "a newcomer passed the queue");
                                assert!(token > highest);
                                highest = token;
                            }
                            Ok(Acquired::Busy) if queue.len() < 6 => {
                                let i = owners.iter().position(|o| *o == owner).unwrap_or(0);
                                queue.push((i, want, ttl));
                            }
                            _ => {}
                        }
                    }
                    2 => {
                        release(&mut holds, owner.as_bytes(), now);
                    }
                    3 => {
                        renew(&mut holds, owner.as_bytes(), ttl, now);
                    }
                    4 => {
                        let _ = reenter(&mut holds, owner.as_bytes(), Some(ttl), now);
                    }
                    5 => {
                        holds.end_session(1 + next(2));
                    }
                    _ => {
                        holds.expire(now);
                    }
                }
                // Every path that may free weight ends with the queue's heads admitted.
                while let Some(&(i, want, ttl)) = queue.first() {
                    let a = Ask {
                        owner: owners[i].as_bytes(),
                        want,
                        ttl,
                        session: None,
                    };
                    match admit(&mut holds, &a, now, &mut t) {
                        Admission::Wait => break,
                        Admission::Granted { token } => {
                            assert!(token > highest);
                            highest = token;
                            queue.remove(0);
                        }
                        _ => {
                            queue.remove(0);
                        }
                    }
                }
                // No request left at the head that fits (the head would have been admitted).
                if let Some(&(i, want, _)) = queue.first() {
                    let held = holds.holder(owners[i].as_bytes()).is_some();
                    assert!(
                        held || !holds.fits(want),
                        "a head that fits was left waiting"
                    );
                }
                check_invariants(&holds, now, &before_tokens, highest);
            }
        }
    }

    fn check_invariants(holds: &Holds, now: Millis, before: &[u64], highest: u64) {
        let n = holds.holders.len() as u32;
        let exclusive = holds.holders.iter().filter(|h| h.exclusive).count();
        match holds.kind {
            Kind::Lock => {
                assert!(exclusive == 0 || n == 1, "{holds:?}");
                assert!(n <= MAX_HOLDERS);
            }
            Kind::Semaphore(cap) => {
                assert_eq!(exclusive, 0, "{holds:?}");
                assert!(n <= cap, "{holds:?}");
            }
        }
        let mut owners: Vec<&[u8]> = holds.holders.iter().map(|h| &*h.owner).collect();
        owners.sort();
        owners.dedup();
        assert_eq!(owners.len(), holds.holders.len(), "owners unique");
        let mut tokens: Vec<u64> = holds.holders.iter().map(|h| h.token).collect();
        tokens.sort();
        tokens.dedup();
        assert_eq!(tokens.len(), holds.holders.len(), "tokens unique");
        for holder in &holds.holders {
            assert!((1..=MAX_COUNT).contains(&holder.count));
            assert!(holder.token <= highest);
            assert!(
                before.contains(&holder.token)
                    || holder.token > before.iter().copied().max().unwrap_or(0)
            );
            // Every step but a session's end ran a transition, which drops expired holders.
            assert!(holder.expires_at.is_some());
        }
        let _ = now;
    }
}
