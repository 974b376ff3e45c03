//! Several keys in one step: LOCK.MACQUIRE takes every key or none, and a several-key waiter
//! waits in every key's queue at once and is granted only when it can take all its keys in
//! the same step.
//!
//! The rule on each key stays the single-key one (docs/holds.md, "Waiting"): first come, first
//! served, nobody passes a waiter queued ahead. A several-key waiter is in every one of its
//! keys' queues with one arrival number, so any two waiters stand in the same order on every
//! key they share: the oldest waiter is at the head of all its queues, and several-key waiters
//! can never deadlock among themselves. It never holds some keys while waiting for others. On
//! a key its owner already holds (in a way it may reenter) it passes: it will reenter at its
//! grant whatever is queued there, and blocks nobody behind it on that key.
//!
//! `Board` is the whole plan over a set of keys, their holds and queues (the glue loads the
//! keys a handoff reaches); every outcome is decided here and the glue applies them.

use crate::core::error::{Command, LockError};
use crate::core::request::{
    parse_acquire_as, parse_held_owner, parse_integer, parse_ttl, printable, Limits,
};
use crate::core::state::holds::{acquire, Acquired, Admission, Ask, HoldError, Holds, Want};
use crate::core::state::tokens::TokenCounter;
use crate::core::waiting::deadlock::passes;
use crate::core::waiting::handoff::admit_held;
use crate::core::Millis;

/// The most keys one call may name.
pub const MAX_KEYS: usize = 1024;

/// `LOCK.MACQUIRE numkeys key [key ...] owner ttl [SHARED | LIMIT n] [SESSION] [WAIT timeout]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MacquireRequest<'a> {
    pub keys: Vec<&'a [u8]>,
    pub owner: &'a [u8],
    pub ttl: u64,
    pub want: Want,
    pub session: bool,
    /// `Some(0)` waits with no limit; `None` is a plain try.
    pub wait: Option<u64>,
}

/// `LOCK.MRELEASE numkeys key [key ...] owner`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MreleaseRequest<'a> {
    pub keys: Vec<&'a [u8]>,
    pub owner: &'a [u8],
}

/// `LOCK.MRENEW numkeys key [key ...] owner ttl`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MrenewRequest<'a> {
    pub keys: Vec<&'a [u8]>,
    pub owner: &'a [u8],
    pub ttl: u64,
}

/// A several-key call's keys, and the arguments after them.
pub type KeysAndRest<'a, 'b> = (Vec<&'a [u8]>, &'b [&'a [u8]]);

/// `numkeys key [key ...]` at the start of `args` (the command name left off), with at least
/// `after` arguments following the keys; the keys, unique, and the rest.
pub fn parse_keys<'a, 'b>(
    cmd: Command,
    args: &'b [&'a [u8]],
    after: usize,
) -> Result<KeysAndRest<'a, 'b>, LockError> {
    let [numkeys, rest @ ..] = args else {
        return Err(LockError::Arity(cmd));
    };
    let n = parse_integer(numkeys)
        .filter(|&n| n >= 1 && n as u64 <= MAX_KEYS as u64)
        .ok_or_else(|| LockError::InvalidNumkeys(cmd, MAX_KEYS))? as usize;
    if n > rest.len() {
        return Err(LockError::NumkeysPastArgs(cmd));
    }
    if rest.len() < n + after {
        return Err(LockError::Arity(cmd));
    }
    let keys = rest[..n].to_vec();
    let mut sorted = keys.clone();
    sorted.sort_unstable();
    if let Some(pair) = sorted.windows(2).find(|pair| pair[0] == pair[1]) {
        return Err(LockError::DuplicateKey(cmd, printable(pair[0])));
    }
    Ok((keys, &rest[n..]))
}

pub fn parse_macquire<'a>(
    args: &[&'a [u8]],
    limits: &Limits,
) -> Result<MacquireRequest<'a>, LockError> {
    let cmd = Command::MAcquire;
    let (keys, _) = parse_keys(cmd, args, 2)?;
    // The single-key parse over `last-key owner ttl options...`: one grammar for both.
    let tail = &args[keys.len()..];
    let single = parse_acquire_as(cmd, tail, limits)?;
    if single.held.is_some() {
        return Err(LockError::UnknownOption(cmd, "HELD".into()));
    }
    Ok(MacquireRequest {
        keys,
        owner: single.owner,
        ttl: single.ttl,
        want: single.want,
        session: single.session,
        wait: single.wait,
    })
}

pub fn parse_mrelease<'a>(args: &[&'a [u8]]) -> Result<MreleaseRequest<'a>, LockError> {
    let cmd = Command::MRelease;
    match parse_keys(cmd, args, 1)? {
        (keys, [owner]) => Ok(MreleaseRequest {
            keys,
            owner: parse_held_owner(cmd, owner)?,
        }),
        _ => Err(LockError::Arity(cmd)),
    }
}

pub fn parse_mrenew<'a>(
    args: &[&'a [u8]],
    limits: &Limits,
) -> Result<MrenewRequest<'a>, LockError> {
    let cmd = Command::MRenew;
    match parse_keys(cmd, args, 2)? {
        (keys, [owner, ttl]) => Ok(MrenewRequest {
            keys,
            owner: parse_held_owner(cmd, owner)?,
            ttl: parse_ttl(cmd, ttl, limits)?,
        }),
        _ => Err(LockError::Arity(cmd)),
    }
}

/// What LOCK.MACQUIRE did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllAcquired {
    /// Every key taken or reentered, in key order (each `Granted` or `Reentered`).
    Taken(Vec<Acquired>),
    /// Nothing changed: key `at` (the first in the way) does not fit, or has a waiter queued
    /// that a newcomer may not pass.
    Busy { at: usize },
}

/// LOCK.MACQUIRE on the holds of its keys, in key order: every key is reentered (its owner
/// holds it) or taken (it fits and `blocked[i]` is false: no waiter that does not pass is
/// queued on it), or nothing changes. A key its owner holds in a way `ask` cannot reenter, or
/// a semaphore of another limit, refuses the whole call (with the key's index) even when
/// another key is busy: waiting could never end well. On any refusal or `Busy` only expired
/// holders are gone.
pub fn acquire_all(
    holds: &mut [Holds],
    ask: &Ask,
    blocked: &[bool],
    now: Millis,
    tokens: &mut TokenCounter,
) -> Result<AllAcquired, (usize, HoldError)> {
    let mut busy = None;
    for (i, key) in holds.iter_mut().enumerate() {
        key.expire(now);
        key.may_reenter(ask.owner, ask.want).map_err(|e| (i, e))?;
        if let Some(limits) = limits_differ(key, ask.want) {
            return Err((i, limits));
        }
        let reentry = key.holder(ask.owner).is_some();
        if !reentry && (blocked.get(i).copied().unwrap_or(false) || !key.fits(ask.want)) {
            busy.get_or_insert(i);
        }
    }
    if let Some(at) = busy {
        return Ok(AllAcquired::Busy { at });
    }
    let mut taken = holds.to_vec();
    let mut counter = *tokens;
    let mut outcomes = Vec::with_capacity(holds.len());
    for (i, key) in taken.iter_mut().enumerate() {
        match acquire(key, ask, now, &mut counter, false).map_err(|e| (i, e))? {
            Acquired::Busy => return Ok(AllAcquired::Busy { at: i }),
            outcome => outcomes.push(outcome),
        }
    }
    holds.clone_from_slice(&taken);
    *tokens = counter;
    Ok(AllAcquired::Taken(outcomes))
}

/// `LIMIT asked` on a held semaphore of another limit.
fn limits_differ(holds: &Holds, want: Want) -> Option<HoldError> {
    match (holds.kind, want) {
        (crate::core::state::holds::Kind::Semaphore(held), Want::Limit(asked))
            if held != asked && !holds.is_free() =>
        {
            Some(HoldError::LimitDiffers { held, asked })
        }
        _ => None,
    }
}

/// The reply error for `acquire_all`'s refusal on key `key`.
pub fn refusal(key: &[u8], error: HoldError) -> LockError {
    LockError::OnKey {
        key: printable(key),
        error,
    }
}

/// A waiter on the board.
#[derive(Debug, Clone)]
pub struct BoardWaiter<'a> {
    pub ask: Ask<'a>,
    /// A single-key waiter's `HELD n` (several-key waiters carry none).
    pub held: Option<u32>,
    /// Indexes of its keys on the board, in its call's key order.
    pub keys: Vec<usize>,
    /// A LOCK.MACQUIRE waiter (even of one key): replied with one token per key.
    pub several: bool,
}

/// What a waiter's turn came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A single-key waiter's admission (never `Wait`).
    One(Admission),
    /// A several-key waiter granted every key in one step: per key, in its key order,
    /// `Granted` or `Reentered`.
    All(Vec<Admission>),
    /// A several-key waiter that can never be served as asked (its owner came to hold one of
    /// its keys in a conflicting way, a count would overflow, no token is left): nil.
    Refused,
}

/// Several keys' holds and queues, planned together.
#[derive(Debug, Clone)]
pub struct Board<'a> {
    /// Per key, the holds to store after `settle`.
    pub holds: Vec<Holds>,
    queues: Vec<Vec<usize>>,
    waiters: Vec<BoardWaiter<'a>>,
    done: Vec<bool>,
}

impl<'a> Board<'a> {
    pub fn new(holds: Vec<Holds>) -> Board<'a> {
        let queues = vec![Vec::new(); holds.len()];
        Board {
            holds,
            queues,
            waiters: Vec::new(),
            done: Vec::new(),
        }
    }

    /// Queues `waiter` behind every waiter pushed before it, on each of its keys: push them
    /// in arrival order. Its index.
    pub fn push(&mut self, waiter: BoardWaiter<'a>) -> usize {
        let index = self.waiters.len();
        for &key in &waiter.keys {
            self.queues[key].push(index);
        }
        self.waiters.push(waiter);
        self.done.push(false);
        index
    }

    /// Whether a newcomer on `key` would find a waiter queued there that it may not pass.
    #[cfg(test)]
    pub fn blocked(&self, key: usize) -> bool {
        self.first_blocking(key).is_some()
    }

    /// The first waiter still queued on `key` that does not pass there.
    fn first_blocking(&self, key: usize) -> Option<usize> {
        self.queues[key]
            .iter()
            .copied()
            .find(|&w| !self.done[w] && !self.passes(w, key))
    }

    fn passes(&self, waiter: usize, key: usize) -> bool {
        let waiter = &self.waiters[waiter];
        waiter.several && passes(&self.holds[key], &waiter.ask)
    }

    /// Admits every waiter that can be admitted, until nothing changes: on each key the
    /// waiters in queue order while they are admitted or pass; a single-key waiter as
    /// `handoff::plan` does; a several-key waiter only when on every one of its keys it is the
    /// first waiter that does not pass and fits there (or its owner may reenter it), and then
    /// on all its keys at once. The waiters that leave, in the order they left.
    pub fn settle(&mut self, now: Millis, tokens: &mut TokenCounter) -> Vec<(usize, Outcome)> {
        for holds in &mut self.holds {
            holds.expire(now);
        }
        let mut leaving = Vec::new();
        loop {
            let before = leaving.len();
            for key in 0..self.holds.len() {
                self.settle_key(key, now, tokens, &mut leaving);
            }
            if leaving.len() == before {
                return leaving;
            }
        }
    }

    fn settle_key(
        &mut self,
        key: usize,
        now: Millis,
        tokens: &mut TokenCounter,
        leaving: &mut Vec<(usize, Outcome)>,
    ) {
        for at in 0..self.queues[key].len() {
            let w = self.queues[key][at];
            if self.done[w] {
                continue;
            }
            let outcome = if self.waiters[w].several {
                if self.passes(w, key) {
                    continue;
                }
                match self.admit_several(w, now, tokens) {
                    Some(outcome) => outcome,
                    None => return,
                }
            } else {
                let waiter = &self.waiters[w];
                match admit_held(&mut self.holds[key], &waiter.ask, waiter.held, now, tokens) {
                    Admission::Wait => return,
                    admission => Outcome::One(admission),
                }
            };
            self.done[w] = true;
            leaving.push((w, outcome));
        }
    }

    /// A several-key waiter's turn: `None` while it must wait.
    fn admit_several(
        &mut self,
        w: usize,
        now: Millis,
        tokens: &mut TokenCounter,
    ) -> Option<Outcome> {
        let waiter = &self.waiters[w];
        for &key in &waiter.keys {
            let holds = &self.holds[key];
            if holds
                .may_reenter(waiter.ask.owner, waiter.ask.want)
                .is_err()
                || limits_differ(holds, waiter.ask.want).is_some()
            {
                return Some(Outcome::Refused);
            }
            if holds.holder(waiter.ask.owner).is_none()
                && (self.first_blocking(key) != Some(w) || !holds.fits(waiter.ask.want))
            {
                return None;
            }
        }
        let mut taken: Vec<Holds> = waiter.keys.iter().map(|&k| self.holds[k].clone()).collect();
        let mut counter = *tokens;
        let mut outcomes = Vec::with_capacity(taken.len());
        for holds in &mut taken {
            match acquire(holds, &waiter.ask, now, &mut counter, false) {
                Ok(Acquired::Granted { token }) => outcomes.push(Admission::Granted { token }),
                Ok(Acquired::Reentered { token, count }) => {
                    outcomes.push(Admission::Reentered { token, count })
                }
                Ok(Acquired::Busy) => return None,
                // A count past its cap, no token left: it can never be served as asked.
                Err(_) => return Some(Outcome::Refused),
            }
        }
        for (&key, holds) in waiter.keys.iter().zip(taken) {
            self.holds[key] = holds;
        }
        *tokens = counter;
        Some(Outcome::All(outcomes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::state::holds::{release, Kind, Mode};

    const NOW: Millis = 1_700_000_000_000;

    fn args(text: &str) -> Vec<&[u8]> {
        text.split(' ').map(str::as_bytes).collect()
    }

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

    fn take(holds: &mut Holds, owner: &str, want: Want, t: &mut TokenCounter) {
        let got = acquire(holds, &ask(owner, want), NOW, t, false);
        assert!(matches!(got, Ok(Acquired::Granted { .. })), "{got:?}");
    }

    fn single<'a>(owner: &'a str, want: Want, key: usize) -> BoardWaiter<'a> {
        BoardWaiter {
            ask: ask(owner, want),
            held: None,
            keys: vec![key],
            several: false,
        }
    }

    fn several<'a>(owner: &'a str, want: Want, keys: &[usize]) -> BoardWaiter<'a> {
        BoardWaiter {
            ask: ask(owner, want),
            held: None,
            keys: keys.to_vec(),
            several: true,
        }
    }

    fn owners(holds: &Holds) -> Vec<&str> {
        holds
            .holders
            .iter()
            .map(|h| std::str::from_utf8(&h.owner).unwrap_or("?"))
            .collect()
    }

    #[test]
    fn macquire_parses_keys_then_the_acquire_grammar() {
        let got = parse_macquire(&args("2 a b me 500 SHARED WAIT 0"), &Limits::default());
        assert_eq!(
            got,
            Ok(MacquireRequest {
                keys: vec![b"a", b"b"],
                owner: b"me",
                ttl: 500,
                want: Want::Shared,
                session: false,
                wait: Some(0),
            })
        );
        let got = parse_macquire(&args("1 k me 5 limit 3 session"), &Limits::default());
        assert_eq!(
            got.map(|r| (r.keys.len(), r.want, r.session)),
            Ok((1, Want::Limit(3), true))
        );
    }

    #[test]
    fn macquire_refuses_bad_numkeys_duplicates_and_held() {
        let cmd = Command::MAcquire;
        let cases = [
            ("", LockError::Arity(cmd)),
            ("0 a me 5", LockError::InvalidNumkeys(cmd, MAX_KEYS)),
            ("-1 a me 5", LockError::InvalidNumkeys(cmd, MAX_KEYS)),
            ("x a me 5", LockError::InvalidNumkeys(cmd, MAX_KEYS)),
            ("1025 a me 5", LockError::InvalidNumkeys(cmd, MAX_KEYS)),
            ("5 a b me 5", LockError::NumkeysPastArgs(cmd)),
            ("3 a b c", LockError::Arity(cmd)),
            ("2 a b me", LockError::Arity(cmd)),
            ("2 a a me 5", LockError::DuplicateKey(cmd, "a".into())),
            ("3 a b a me 5", LockError::DuplicateKey(cmd, "a".into())),
            ("2 a b me 0", LockError::InvalidTtl(cmd, 2_592_000_000)),
            (
                "2 a b me 5 HELD 0",
                LockError::UnknownOption(cmd, "HELD".into()),
            ),
            (
                "2 a b me 5 SHARED LIMIT 2",
                LockError::ConflictingOptions(cmd, "SHARED", "LIMIT"),
            ),
            ("2 a b me 5 NX", LockError::UnknownOption(cmd, "NX".into())),
        ];
        for (call, expected) in cases {
            let parsed = if call.is_empty() {
                parse_macquire(&[], &Limits::default())
            } else {
                parse_macquire(&args(call), &Limits::default())
            };
            assert_eq!(parsed, Err(expected), "{call}");
        }
        assert_eq!(
            LockError::InvalidNumkeys(cmd, MAX_KEYS).to_string(),
            "ERR invalid numkeys in 'lock.macquire' command: expected an integer from 1 to 1024"
        );
    }

    #[test]
    fn mrelease_and_mrenew_parse_keys_owner_and_ttl() {
        assert_eq!(
            parse_mrelease(&args("2 a b me")),
            Ok(MreleaseRequest {
                keys: vec![b"a", b"b"],
                owner: b"me"
            })
        );
        assert_eq!(
            parse_mrelease(&args("2 a b me x")),
            Err(LockError::Arity(Command::MRelease))
        );
        assert_eq!(
            parse_mrenew(&args("1 a me 700"), &Limits::default()).map(|r| r.ttl),
            Ok(700)
        );
        assert_eq!(
            parse_mrenew(&args("2 a b me"), &Limits::default()),
            Err(LockError::Arity(Command::MRenew))
        );
        assert_eq!(
            parse_mrenew(&args("2 a b me 5 6"), &Limits::default()),
            Err(LockError::Arity(Command::MRenew))
        );
    }

    #[test]
    fn macquire_takes_every_key_with_its_own_token_or_none() {
        let mut t = tokens();
        let mut keys = vec![Holds::default(), Holds::default()];
        let got = acquire_all(
            &mut keys,
            &ask("a", Want::Exclusive),
            &[false; 2],
            NOW,
            &mut t,
        );
        let Ok(AllAcquired::Taken(outcomes)) = got else {
            panic!("{got:?}")
        };
        let tokens: Vec<u64> = outcomes
            .iter()
            .map(|o| match o {
                Acquired::Granted { token } => *token,
                other => panic!("{other:?}"),
            })
            .collect();
        assert!(tokens[0] < tokens[1], "each key its own token: {tokens:?}");
        // b busy: nothing taken on c either.
        let mut keys = vec![keys[1].clone(), Holds::default()];
        let before = keys.clone();
        let got = acquire_all(
            &mut keys,
            &ask("b", Want::Exclusive),
            &[false; 2],
            NOW,
            &mut t,
        );
        assert_eq!(got, Ok(AllAcquired::Busy { at: 0 }));
        assert_eq!(keys, before);
        // A queued waiter on a free key: busy too (no barging).
        let mut free = vec![Holds::default()];
        let got = acquire_all(&mut free, &ask("b", Want::Exclusive), &[true], NOW, &mut t);
        assert_eq!(got, Ok(AllAcquired::Busy { at: 0 }));
        assert!(free[0].is_free());
    }

    #[test]
    fn macquire_reenters_what_its_owner_holds_and_refuses_a_conflict_on_any_key() {
        let mut t = tokens();
        let mut a = Holds::default();
        take(&mut a, "o", Want::Exclusive, &mut t);
        let mut keys = vec![a.clone(), Holds::default()];
        // Held by its own owner, a key is reentered even with a queue on it.
        let got = acquire_all(
            &mut keys,
            &ask("o", Want::Exclusive),
            &[true, false],
            NOW,
            &mut t,
        );
        assert!(matches!(
            got,
            Ok(AllAcquired::Taken(ref o)) if matches!(o[..], [Acquired::Reentered { count: 2, .. }, Acquired::Granted { .. }])
        ));
        let mut shared = Holds::default();
        take(&mut shared, "o", Want::Shared, &mut t);
        let mut busy = Holds::default();
        take(&mut busy, "x", Want::Exclusive, &mut t);
        let mut keys = vec![busy, Holds::default(), shared];
        let before = keys.clone();
        let got = acquire_all(
            &mut keys,
            &ask("o", Want::Exclusive),
            &[false; 3],
            NOW,
            &mut t,
        );
        let conflict = HoldError::Conflict {
            held: Mode::Shared,
            asked: Want::Exclusive,
        };
        assert_eq!(got, Err((2, conflict)), "the conflict wins over busy");
        assert_eq!(keys, before);
        assert_eq!(
            refusal(b"acct:2", conflict).to_string(),
            "ERR the owner holds key 'acct:2' shared and cannot also hold it exclusive in \
             'lock.macquire' command (nothing was taken): release it first (an upgrade in \
             place deadlocks)"
        );
        let mut sem = Holds::default();
        take(&mut sem, "p", Want::Limit(2), &mut t);
        let mut keys = vec![Holds::default(), sem];
        let got = acquire_all(
            &mut keys,
            &ask("o", Want::Limit(3)),
            &[false; 2],
            NOW,
            &mut t,
        );
        assert_eq!(got, Err((1, HoldError::LimitDiffers { held: 2, asked: 3 })));
        assert!(keys[0].is_free());
    }

    #[test]
    fn a_several_key_waiter_is_granted_only_when_all_its_keys_are_free() {
        let mut t = tokens();
        let mut k0 = Holds::default();
        take(&mut k0, "x", Want::Exclusive, &mut t);
        let mut k1 = Holds::default();
        take(&mut k1, "y", Want::Exclusive, &mut t);
        let mut board = Board::new(vec![k0, k1]);
        board.push(several("m", Want::Exclusive, &[0, 1]));
        assert_eq!(board.settle(NOW, &mut t), []);
        release(&mut board.holds[0], b"x", NOW);
        assert_eq!(
            board.settle(NOW, &mut t),
            [],
            "k0 free, k1 held: nothing taken"
        );
        assert!(board.holds[0].is_free(), "never holds some while waiting");
        assert!(board.blocked(0), "nobody passes it on the free key");
        release(&mut board.holds[1], b"y", NOW);
        let left = board.settle(NOW, &mut t);
        assert!(matches!(&left[..], [(0, Outcome::All(o))] if o.len() == 2));
        assert_eq!(owners(&board.holds[0]), ["m"]);
        assert_eq!(owners(&board.holds[1]), ["m"]);
    }

    #[test]
    fn a_single_waiter_behind_a_several_key_waiter_waits_and_a_stream_of_them_never_starves_it() {
        let mut t = tokens();
        let mut k1 = Holds::default();
        take(&mut k1, "y", Want::Exclusive, &mut t);
        let mut board = Board::new(vec![Holds::default(), k1]);
        board.push(several("m", Want::Exclusive, &[0, 1]));
        for owner in ["s1", "s2", "s3"] {
            board.push(single(owner, Want::Exclusive, 0));
        }
        assert_eq!(
            board.settle(NOW, &mut t),
            [],
            "k0 is free, yet nobody barges"
        );
        release(&mut board.holds[1], b"y", NOW);
        let left = board.settle(NOW, &mut t);
        assert!(matches!(left[0], (0, Outcome::All(_))), "{left:?}");
        assert_eq!(left.len(), 1, "s1 waits for m's hold");
        release(&mut board.holds[0], b"m", NOW);
        let left = board.settle(NOW, &mut t);
        assert!(matches!(
            left[..],
            [(1, Outcome::One(Admission::Granted { .. }))]
        ));
    }

    #[test]
    fn readers_are_admitted_with_a_shared_several_key_waiter_in_one_settle() {
        let mut t = tokens();
        let mut k0 = Holds::default();
        take(&mut k0, "w", Want::Exclusive, &mut t);
        let mut board = Board::new(vec![k0, Holds::default()]);
        board.push(several("m", Want::Shared, &[0, 1]));
        board.push(single("r", Want::Shared, 0));
        board.push(single("q", Want::Exclusive, 1));
        release(&mut board.holds[0], b"w", NOW);
        let left = board.settle(NOW, &mut t);
        let who: Vec<usize> = left.iter().map(|(w, _)| *w).collect();
        assert_eq!(who, [0, 1], "m, then r beside it; q waits on k1 for m");
        assert_eq!(owners(&board.holds[0]), ["m", "r"]);
        assert_eq!(board.holds[1].kind, Kind::Lock);
    }

    #[test]
    fn a_waiter_passes_on_a_key_its_owner_holds_and_is_refused_on_a_conflict() {
        let mut t = tokens();
        let mut k0 = Holds::default();
        take(&mut k0, "m", Want::Exclusive, &mut t);
        let mut k1 = Holds::default();
        take(&mut k1, "y", Want::Exclusive, &mut t);
        let mut board = Board::new(vec![k0, k1]);
        board.push(single("s", Want::Exclusive, 0));
        board.push(several("m", Want::Exclusive, &[0, 1]));
        release(&mut board.holds[1], b"y", NOW);
        let left = board.settle(NOW, &mut t);
        assert!(
            matches!(&left[..], [(1, Outcome::All(o))] if matches!(o[0], Admission::Reentered { count: 2, .. })),
            "m reenters k0 past s: {left:?}"
        );
        let mut shared = Holds::default();
        take(&mut shared, "m", Want::Shared, &mut t);
        let mut board = Board::new(vec![shared, Holds::default()]);
        board.push(several("m", Want::Exclusive, &[1, 0]));
        assert_eq!(board.settle(NOW, &mut t), [(0, Outcome::Refused)]);
        assert!(board.holds[1].is_free());
    }

    #[test]
    fn an_older_several_key_waiter_goes_first_on_every_key() {
        let mut t = tokens();
        let mut board = Board::new(vec![Holds::default(), Holds::default(), Holds::default()]);
        let mut held = Holds::default();
        take(&mut held, "h", Want::Exclusive, &mut t);
        board.holds[1] = held;
        board.push(several("m1", Want::Exclusive, &[0, 1]));
        board.push(several("m2", Want::Exclusive, &[2, 0]));
        board.push(several("m3", Want::Exclusive, &[2]));
        assert_eq!(board.settle(NOW, &mut t), [], "m2 may not pass m1 on key 0");
        assert!(board.holds[2].is_free(), "m3 waits behind m2 on key 2");
        release(&mut board.holds[1], b"h", NOW);
        let left: Vec<usize> = board
            .settle(NOW, &mut t)
            .into_iter()
            .map(|(w, _)| w)
            .collect();
        assert_eq!(left, [0], "m1 goes, m2 waits for it on key 0");
    }
}
