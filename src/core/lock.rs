//! One lock's state and its transitions.
//!
//! Each transition takes the lock as the key holds it (`None` when the key is empty) and an
//! explicit `now`, decides everything before it changes anything, and says what the caller must
//! write back. A lock whose expiry has passed counts as free even if the key still exists.

use super::tokens::{TokenCounter, TokensExhausted};
use super::Millis;

/// A held lock: who holds it, how many times, until when, and its fencing token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lock {
    pub owner: Box<[u8]>,
    /// Hold count: 1 after the first acquisition, +1 per reentry, -1 per release.
    pub count: u32,
    /// Unix ms at which the lock expires; the key's own expiry is set to the same instant.
    pub expires_at: Millis,
    pub token: u64,
}

impl Lock {
    pub fn is_live(&self, now: Millis) -> bool {
        now < self.expires_at
    }

    pub fn is_held_by(&self, owner: &[u8], now: Millis) -> bool {
        self.is_live(now) && *self.owner == *owner
    }

    /// Milliseconds left before expiry (0 once expired).
    pub fn ttl_left(&self, now: Millis) -> i64 {
        (self.expires_at - now).max(0)
    }

    /// A fresh acquisition by `owner`, with a new fencing token.
    pub fn grant(
        owner: &[u8],
        ttl: u64,
        now: Millis,
        tokens: &mut TokenCounter,
    ) -> Result<Lock, TransitionError> {
        let token = tokens.next_token()?;
        Ok(Lock {
            owner: owner.into(),
            count: 1,
            expires_at: expiry(now, ttl),
            token,
        })
    }
}

/// Why a transition was refused although the request was well formed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransitionError {
    /// The hold count would pass `u32::MAX`.
    CountOverflow,
    TokensExhausted,
}

impl From<TokensExhausted> for TransitionError {
    fn from(_: TokensExhausted) -> Self {
        TransitionError::TokensExhausted
    }
}

fn expiry(now: Millis, ttl: u64) -> Millis {
    now.saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX))
}

/// What `acquire` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acquire {
    /// The lock was free: the caller stores this new lock.
    Granted(Lock),
    /// `owner` already held it: count + 1 and expiry reset, in place.
    Reentered { token: u64, count: u32 },
    /// Someone else holds it, or waiters are queued ahead of a newcomer.
    Busy,
}

/// `LOCK.ACQUIRE`: take a free lock, reenter one's own, or fail.
///
/// `waiters_queued` is true when clients are already waiting for this lock: a free lock then
/// belongs to them, not to a newcomer (first come, first served).
pub fn acquire(
    held: Option<&mut Lock>,
    owner: &[u8],
    ttl: u64,
    now: Millis,
    tokens: &mut TokenCounter,
    waiters_queued: bool,
) -> Result<Acquire, TransitionError> {
    match held {
        Some(lock) if lock.is_held_by(owner, now) => {
            let count = reenter_in_place(lock, Some(ttl), now)?;
            Ok(Acquire::Reentered {
                token: lock.token,
                count,
            })
        }
        Some(lock) if lock.is_live(now) => Ok(Acquire::Busy),
        _ if waiters_queued => Ok(Acquire::Busy),
        _ => Ok(Acquire::Granted(Lock::grant(owner, ttl, now, tokens)?)),
    }
}

/// `LOCK.REENTER`: count + 1 (and expiry reset when `ttl` is given) if `owner` holds it.
/// `Ok(None)` when `owner` does not hold it; a free lock is never taken.
pub fn reenter(
    held: Option<&mut Lock>,
    owner: &[u8],
    ttl: Option<u64>,
    now: Millis,
) -> Result<Option<u32>, TransitionError> {
    match held {
        Some(lock) if lock.is_held_by(owner, now) => reenter_in_place(lock, ttl, now).map(Some),
        _ => Ok(None),
    }
}

fn reenter_in_place(
    lock: &mut Lock,
    ttl: Option<u64>,
    now: Millis,
) -> Result<u32, TransitionError> {
    let count = lock
        .count
        .checked_add(1)
        .ok_or(TransitionError::CountOverflow)?;
    lock.count = count;
    if let Some(ttl) = ttl {
        lock.expires_at = expiry(now, ttl);
    }
    Ok(count)
}

/// What `release` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// `owner` does not hold the lock: nothing changed.
    NotHeld,
    /// Count - 1, still held, in place.
    StillHeld { count: u32 },
    /// The count reached 0: the caller deletes the key (or hands the lock over).
    Freed,
}

/// `LOCK.RELEASE`: count - 1 if `owner` holds it.
pub fn release(held: Option<&mut Lock>, owner: &[u8], now: Millis) -> Release {
    match held {
        Some(lock) if lock.is_held_by(owner, now) => {
            if lock.count <= 1 {
                Release::Freed
            } else {
                lock.count -= 1;
                Release::StillHeld { count: lock.count }
            }
        }
        _ => Release::NotHeld,
    }
}

/// `LOCK.RENEW`: reset the expiry to `ttl` from now if `owner` holds it; true when renewed.
pub fn renew(held: Option<&mut Lock>, owner: &[u8], ttl: u64, now: Millis) -> bool {
    match held {
        Some(lock) if lock.is_held_by(owner, now) => {
            lock.expires_at = expiry(now, ttl);
            true
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Millis = 1_700_000_000_000;

    fn held(owner: &str, count: u32, expires_at: Millis, token: u64) -> Lock {
        Lock {
            owner: owner.as_bytes().into(),
            count,
            expires_at,
            token,
        }
    }

    fn counter_at(last: u64) -> TokenCounter {
        let mut tokens = TokenCounter::new();
        tokens.observe(last);
        tokens
    }

    #[test]
    fn acquire_on_a_free_lock_grants_count_one_and_a_new_token() {
        let mut tokens = counter_at(9);
        let got = acquire(None, b"a", 500, NOW, &mut tokens, false);
        assert_eq!(got, Ok(Acquire::Granted(held("a", 1, NOW + 500, 10))));
        assert_eq!(tokens.last(), 10);
    }

    #[test]
    fn acquire_by_the_holder_reenters_keeps_the_token_and_resets_expiry() {
        let mut tokens = counter_at(9);
        let mut lock = held("a", 2, NOW + 10, 7);
        let got = acquire(Some(&mut lock), b"a", 500, NOW, &mut tokens, false);
        assert_eq!(got, Ok(Acquire::Reentered { token: 7, count: 3 }));
        assert_eq!(lock, held("a", 3, NOW + 500, 7));
        assert_eq!(tokens.last(), 9, "reentry must not use up a token");
    }

    #[test]
    fn acquire_by_another_owner_is_busy_and_changes_nothing() {
        let mut tokens = counter_at(9);
        let mut lock = held("a", 1, NOW + 10, 7);
        let got = acquire(Some(&mut lock), b"b", 500, NOW, &mut tokens, false);
        assert_eq!(got, Ok(Acquire::Busy));
        assert_eq!(lock, held("a", 1, NOW + 10, 7));
        assert_eq!(tokens.last(), 9);
    }

    #[test]
    fn an_expired_lock_is_free_for_anyone_with_a_new_token() {
        for expires_at in [NOW, NOW - 1] {
            let mut tokens = counter_at(9);
            let mut lock = held("a", 3, expires_at, 7);
            let got = acquire(Some(&mut lock), b"b", 500, NOW, &mut tokens, false);
            assert_eq!(got, Ok(Acquire::Granted(held("b", 1, NOW + 500, 10))));
            let mut tokens = counter_at(9);
            let got = acquire(Some(&mut lock), b"a", 500, NOW, &mut tokens, false);
            assert_eq!(got, Ok(Acquire::Granted(held("a", 1, NOW + 500, 10))));
        }
    }

    #[test]
    fn a_free_lock_with_waiters_queued_is_busy_for_a_newcomer() {
        let mut tokens = counter_at(9);
        assert_eq!(
            acquire(None, b"n", 500, NOW, &mut tokens, true),
            Ok(Acquire::Busy)
        );
        let mut expired = held("a", 1, NOW - 1, 7);
        let got = acquire(Some(&mut expired), b"n", 500, NOW, &mut tokens, true);
        assert_eq!(got, Ok(Acquire::Busy));
        assert_eq!(tokens.last(), 9);
    }

    #[test]
    fn the_holder_reenters_even_with_waiters_queued() {
        let mut tokens = counter_at(9);
        let mut lock = held("a", 1, NOW + 10, 7);
        let got = acquire(Some(&mut lock), b"a", 500, NOW, &mut tokens, true);
        assert_eq!(got, Ok(Acquire::Reentered { token: 7, count: 2 }));
    }

    #[test]
    fn acquire_refuses_past_the_largest_count_and_changes_nothing() {
        let mut tokens = counter_at(9);
        let mut lock = held("a", u32::MAX, NOW + 10, 7);
        let got = acquire(Some(&mut lock), b"a", 500, NOW, &mut tokens, false);
        assert_eq!(got, Err(TransitionError::CountOverflow));
        assert_eq!(lock, held("a", u32::MAX, NOW + 10, 7));
    }

    #[test]
    fn acquire_refuses_when_tokens_run_out() {
        let mut tokens = counter_at(super::super::tokens::MAX_TOKEN);
        let got = acquire(None, b"a", 500, NOW, &mut tokens, false);
        assert_eq!(got, Err(TransitionError::TokensExhausted));
    }

    #[test]
    fn owners_compare_as_whole_byte_strings() {
        let mut tokens = counter_at(0);
        let mut lock = held("abc", 1, NOW + 10, 1);
        for other in [&b"ab"[..], b"abcd", b"ABC", b"abc\0"] {
            let got = acquire(Some(&mut lock), other, 5, NOW, &mut tokens, false);
            assert_eq!(got, Ok(Acquire::Busy), "{other:?}");
        }
    }

    #[test]
    fn reenter_counts_up_for_the_holder_with_or_without_a_ttl() {
        let mut lock = held("a", 1, NOW + 10, 7);
        assert_eq!(reenter(Some(&mut lock), b"a", None, NOW), Ok(Some(2)));
        assert_eq!(lock, held("a", 2, NOW + 10, 7));
        assert_eq!(reenter(Some(&mut lock), b"a", Some(900), NOW), Ok(Some(3)));
        assert_eq!(lock, held("a", 3, NOW + 900, 7));
    }

    #[test]
    fn reenter_never_takes_a_free_expired_or_foreign_lock() {
        assert_eq!(reenter(None, b"a", Some(5), NOW), Ok(None));
        let mut expired = held("a", 1, NOW, 7);
        assert_eq!(reenter(Some(&mut expired), b"a", Some(5), NOW), Ok(None));
        assert_eq!(expired, held("a", 1, NOW, 7));
        let mut foreign = held("b", 1, NOW + 10, 7);
        assert_eq!(reenter(Some(&mut foreign), b"a", None, NOW), Ok(None));
        assert_eq!(foreign, held("b", 1, NOW + 10, 7));
    }

    #[test]
    fn reenter_refuses_past_the_largest_count() {
        let mut lock = held("a", u32::MAX, NOW + 10, 7);
        assert_eq!(
            reenter(Some(&mut lock), b"a", Some(99), NOW),
            Err(TransitionError::CountOverflow)
        );
        assert_eq!(lock, held("a", u32::MAX, NOW + 10, 7));
    }

    #[test]
    fn release_counts_down_then_frees() {
        let mut lock = held("a", 2, NOW + 10, 7);
        assert_eq!(
            release(Some(&mut lock), b"a", NOW),
            Release::StillHeld { count: 1 }
        );
        assert_eq!(lock, held("a", 1, NOW + 10, 7));
        assert_eq!(release(Some(&mut lock), b"a", NOW), Release::Freed);
    }

    #[test]
    fn release_by_a_non_holder_changes_nothing() {
        assert_eq!(release(None, b"a", NOW), Release::NotHeld);
        let mut foreign = held("b", 2, NOW + 10, 7);
        assert_eq!(release(Some(&mut foreign), b"a", NOW), Release::NotHeld);
        assert_eq!(foreign, held("b", 2, NOW + 10, 7));
        let mut expired = held("a", 2, NOW - 1, 7);
        assert_eq!(release(Some(&mut expired), b"a", NOW), Release::NotHeld);
        assert_eq!(expired, held("a", 2, NOW - 1, 7));
    }

    #[test]
    fn renew_resets_the_expiry_only_for_the_holder() {
        let mut lock = held("a", 2, NOW + 10, 7);
        assert!(renew(Some(&mut lock), b"a", 800, NOW));
        assert_eq!(lock, held("a", 2, NOW + 800, 7));
        assert!(!renew(Some(&mut lock), b"b", 5, NOW));
        assert_eq!(lock, held("a", 2, NOW + 800, 7));
        assert!(!renew(None, b"a", 5, NOW));
        let mut expired = held("a", 1, NOW, 7);
        assert!(!renew(Some(&mut expired), b"a", 5, NOW));
        assert_eq!(expired.expires_at, NOW);
    }

    #[test]
    fn ttl_left_counts_down_to_zero() {
        let lock = held("a", 1, NOW + 10, 7);
        assert_eq!(lock.ttl_left(NOW), 10);
        assert_eq!(lock.ttl_left(NOW + 10), 0);
        assert_eq!(lock.ttl_left(NOW + 99), 0);
    }

    #[test]
    fn a_huge_ttl_saturates_instead_of_wrapping() {
        let mut tokens = counter_at(0);
        let got = acquire(None, b"a", u64::MAX, NOW, &mut tokens, false);
        match got {
            Ok(Acquire::Granted(lock)) => assert_eq!(lock.expires_at, i64::MAX),
            other => panic!("{other:?}"),
        }
    }
}
