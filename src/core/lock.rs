//! One lock's state and its transitions.
//!
//! A lock is its owner, hold count and fencing token, packed in one allocation. Its expiry is
//! the key's own expiry, kept by the server: a lock whose key exists is live, an expired lock
//! is simply gone. So a transition takes the lock the key holds (`None`: free) and an explicit
//! `now`, decides everything before it changes anything, and returns the new absolute expiry
//! for the caller to set on the key.

use std::fmt;

use super::tokens::{TokenCounter, TokensExhausted};
use super::Millis;

/// A held lock: `[owner length u16 | token and count u64 | owner bytes]`, little-endian; the
/// token takes the low 53 bits (tokens stay below 2^53), the count the 11 above.
///
/// The length comes first so that the bytes can be found again from a pointer to their start
/// alone (the server keeps one pointer per value). Ten header bytes keep a lock with a UUID
/// owner in a 48-byte allocation: no more memory than Redisson's hash for the same lock.
#[repr(transparent)]
#[derive(PartialEq, Eq)]
pub struct Lock([u8]);

const OWNER_LEN_AT: usize = 0;
const TOKEN_AND_COUNT_AT: usize = 2;
/// Bytes before the owner.
pub const HEADER_BYTES: usize = 10;
const TOKEN_BITS: u32 = 53;
const TOKEN_MASK: u64 = (1 << TOKEN_BITS) - 1;
/// The deepest reentrancy: 2047 holds by one owner (deeper is a client bug, refused).
pub const MAX_COUNT: u32 = (1 << (64 - TOKEN_BITS)) - 1;

impl Lock {
    /// A new lock. Callers keep `owner` within `u16::MAX` bytes, `count` within `MAX_COUNT`
    /// and `token` below 2^53 (requests and decoding check); beyond, they are cut to fit.
    pub fn boxed(owner: &[u8], count: u32, token: u64) -> Box<Lock> {
        let owner_len = u16::try_from(owner.len()).unwrap_or(u16::MAX);
        let owner = &owner[..usize::from(owner_len)];
        let mut bytes = Vec::with_capacity(HEADER_BYTES + owner.len());
        bytes.extend_from_slice(&owner_len.to_le_bytes());
        bytes.extend_from_slice(&pack(token, count).to_le_bytes());
        bytes.extend_from_slice(owner);
        Lock::from_boxed_bytes(bytes.into_boxed_slice()).unwrap_or_else(|bytes| {
            unreachable!("a lock built from its parts has a valid layout: {bytes:?}")
        })
    }

    /// Takes `bytes` as a lock if their layout is one (length, header); else gives them back.
    pub fn from_boxed_bytes(bytes: Box<[u8]>) -> Result<Box<Lock>, Box<[u8]>> {
        if !has_lock_layout(&bytes) {
            return Err(bytes);
        }
        // SAFETY: Lock is a repr(transparent) wrapper of [u8], so the pointer cast keeps size,
        // alignment and metadata; the layout was checked above.
        Ok(unsafe { Box::from_raw(Box::into_raw(bytes) as *mut Lock) })
    }

    /// Views `bytes` as a lock if their layout is one.
    pub fn from_bytes_mut(bytes: &mut [u8]) -> Option<&mut Lock> {
        if !has_lock_layout(bytes) {
            return None;
        }
        // SAFETY: as in from_boxed_bytes, for a borrowed slice.
        Some(unsafe { &mut *(bytes as *mut [u8] as *mut Lock) })
    }

    pub fn into_boxed_bytes(self: Box<Lock>) -> Box<[u8]> {
        // SAFETY: the reverse of the cast in from_boxed_bytes.
        unsafe { Box::from_raw(Box::into_raw(self) as *mut [u8]) }
    }

    /// The whole packed lock (what RDB files store).
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The total size of a lock whose first bytes are `header`: `None` if it is too short.
    pub fn size_from_header(header: &[u8]) -> Option<usize> {
        let owner_len = header.get(OWNER_LEN_AT..OWNER_LEN_AT + 2)?;
        Some(HEADER_BYTES + usize::from(u16::from_le_bytes([owner_len[0], owner_len[1]])))
    }

    pub fn owner(&self) -> &[u8] {
        &self.0[HEADER_BYTES..]
    }

    /// Hold count: 1 after the first acquisition, +1 per reentry, -1 per release.
    pub fn count(&self) -> u32 {
        (self.token_and_count() >> TOKEN_BITS) as u32
    }

    pub fn token(&self) -> u64 {
        self.token_and_count() & TOKEN_MASK
    }

    pub fn is_held_by(&self, owner: &[u8]) -> bool {
        self.owner() == owner
    }

    pub fn to_boxed(&self) -> Box<Lock> {
        Lock::boxed(self.owner(), self.count(), self.token())
    }

    pub fn set_count(&mut self, count: u32) {
        let packed = pack(self.token(), count);
        self.0[TOKEN_AND_COUNT_AT..HEADER_BYTES].copy_from_slice(&packed.to_le_bytes());
    }

    fn token_and_count(&self) -> u64 {
        let mut field = [0u8; 8];
        field.copy_from_slice(&self.0[TOKEN_AND_COUNT_AT..HEADER_BYTES]);
        u64::from_le_bytes(field)
    }
}

fn pack(token: u64, count: u32) -> u64 {
    (token & TOKEN_MASK) | (u64::from(count.min(MAX_COUNT)) << TOKEN_BITS)
}

fn has_lock_layout(bytes: &[u8]) -> bool {
    Lock::size_from_header(bytes) == Some(bytes.len())
}

impl fmt::Debug for Lock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lock")
            .field("owner", &String::from_utf8_lossy(self.owner()))
            .field("count", &self.count())
            .field("token", &self.token())
            .finish()
    }
}

/// Why a transition was refused although the request was well formed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransitionError {
    /// The hold count would pass `MAX_COUNT`.
    CountOverflow,
    TokensExhausted,
}

impl From<TokensExhausted> for TransitionError {
    fn from(_: TokensExhausted) -> Self {
        TransitionError::TokensExhausted
    }
}

/// The absolute expiry `ttl` ms after `now`.
pub fn expiry(now: Millis, ttl: u64) -> Millis {
    now.saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX))
}

/// A fresh acquisition by `owner`, with a new fencing token; and its expiry.
pub fn grant(
    owner: &[u8],
    ttl: u64,
    now: Millis,
    tokens: &mut TokenCounter,
) -> Result<(Box<Lock>, Millis), TransitionError> {
    let token = tokens.next_token(now)?;
    Ok((Lock::boxed(owner, 1, token), expiry(now, ttl)))
}

/// What `acquire` did.
#[derive(Debug, PartialEq, Eq)]
pub enum Acquire {
    /// The lock was free: the caller stores this new lock, expiring at the given time.
    Granted(Box<Lock>, Millis),
    /// `owner` already held it: count + 1 in place; the key's expiry becomes `expires_at`.
    Reentered {
        token: u64,
        count: u32,
        expires_at: Millis,
    },
    /// Someone else holds it, or waiters are queued ahead of a newcomer.
    Busy,
}

/// `LOCK.ACQUIRE`: take a free lock, reenter one's own, or fail.
///
/// `waiters_queued` is true when clients already wait for this lock: a free lock then belongs
/// to them, not to a newcomer (first come, first served).
pub fn acquire(
    held: Option<&mut Lock>,
    owner: &[u8],
    ttl: u64,
    now: Millis,
    tokens: &mut TokenCounter,
    waiters_queued: bool,
) -> Result<Acquire, TransitionError> {
    match held {
        Some(lock) if lock.is_held_by(owner) => {
            let count = count_up(lock)?;
            Ok(Acquire::Reentered {
                token: lock.token(),
                count,
                expires_at: expiry(now, ttl),
            })
        }
        Some(_) => Ok(Acquire::Busy),
        None if waiters_queued => Ok(Acquire::Busy),
        None => {
            let (lock, expires_at) = grant(owner, ttl, now, tokens)?;
            Ok(Acquire::Granted(lock, expires_at))
        }
    }
}

/// What `reenter` did, when `owner` held the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reentry {
    pub count: u32,
    /// The key's new expiry, when a ttl was given.
    pub expires_at: Option<Millis>,
}

/// `LOCK.REENTER`: count + 1 (and expiry reset when `ttl` is given) if `owner` holds it.
/// `Ok(None)` when `owner` does not hold it; a free lock is never taken.
pub fn reenter(
    held: Option<&mut Lock>,
    owner: &[u8],
    ttl: Option<u64>,
    now: Millis,
) -> Result<Option<Reentry>, TransitionError> {
    match held {
        Some(lock) if lock.is_held_by(owner) => Ok(Some(Reentry {
            count: count_up(lock)?,
            expires_at: ttl.map(|ttl| expiry(now, ttl)),
        })),
        _ => Ok(None),
    }
}

fn count_up(lock: &mut Lock) -> Result<u32, TransitionError> {
    let count = lock.count() + 1;
    if count > MAX_COUNT {
        return Err(TransitionError::CountOverflow);
    }
    lock.set_count(count);
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
pub fn release(held: Option<&mut Lock>, owner: &[u8]) -> Release {
    match held {
        Some(lock) if lock.is_held_by(owner) => {
            if lock.count() <= 1 {
                Release::Freed
            } else {
                lock.set_count(lock.count() - 1);
                Release::StillHeld {
                    count: lock.count(),
                }
            }
        }
        _ => Release::NotHeld,
    }
}

/// `LOCK.RENEW`: the key's new expiry, `ttl` from now, if `owner` holds it.
pub fn renew(held: Option<&Lock>, owner: &[u8], ttl: u64, now: Millis) -> Option<Millis> {
    match held {
        Some(lock) if lock.is_held_by(owner) => Some(expiry(now, ttl)),
        _ => None,
    }
}

/// Milliseconds left before `expires_at` (0 once passed).
pub fn ttl_left(expires_at: Millis, now: Millis) -> i64 {
    expires_at.saturating_sub(now).max(0)
}

/// A lock's state as replication carries it: hold count, token, absolute expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    pub count: u32,
    pub token: u64,
    pub expires_at: Option<Millis>,
}

/// What a replayed state (a master's effect) did to the lock before it, named after the
/// master's command, so that a replica publishes the keyspace events its master did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replayed {
    /// A new owner (a fresh acquisition, or a handoff on the master).
    Acquired,
    Reentered,
    Released,
    /// Only the expiry moved.
    Renewed,
    Unchanged,
}

pub fn classify_replay(before: Option<Snapshot>, after: Snapshot) -> Replayed {
    match before {
        Some(before) if before.token == after.token => {
            if after.count > before.count {
                Replayed::Reentered
            } else if after.count < before.count {
                Replayed::Released
            } else if after.expires_at != before.expires_at {
                Replayed::Renewed
            } else {
                Replayed::Unchanged
            }
        }
        _ => Replayed::Acquired,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::tokens::clock_floor;

    const NOW: Millis = 1_700_000_000_000;

    fn held(owner: &str, count: u32, token: u64) -> Box<Lock> {
        Lock::boxed(owner.as_bytes(), count, token)
    }

    fn counter_at(last: u64) -> TokenCounter {
        TokenCounter::from_parts(last, 0)
    }

    #[test]
    fn a_lock_packs_owner_count_and_token_in_one_allocation() {
        let lock = held("worker-7", 3, 99);
        assert_eq!(lock.owner(), b"worker-7");
        assert_eq!((lock.count(), lock.token()), (3, 99));
        assert_eq!(lock.as_bytes().len(), HEADER_BYTES + 8);
        assert_eq!(
            Lock::size_from_header(lock.as_bytes()),
            Some(HEADER_BYTES + 8)
        );
        let bytes = lock.into_boxed_bytes();
        assert_eq!(Lock::from_boxed_bytes(bytes), Ok(held("worker-7", 3, 99)));
    }

    #[test]
    fn bytes_without_a_lock_layout_are_refused() {
        for bytes in [
            &[][..],
            &[1],
            &[0; HEADER_BYTES - 1],
            &[2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, b'a'],
        ] {
            assert!(Lock::from_boxed_bytes(bytes.into()).is_err(), "{bytes:?}");
            assert!(
                Lock::from_bytes_mut(&mut bytes.to_vec()).is_none(),
                "{bytes:?}"
            );
        }
        assert_eq!(Lock::size_from_header(&[1]), None);
    }

    #[test]
    fn acquire_on_a_free_lock_grants_count_one_and_a_new_token() {
        let mut tokens = counter_at(9);
        let got = acquire(None, b"a", 500, NOW, &mut tokens, false);
        let first = clock_floor(NOW);
        assert_eq!(got, Ok(Acquire::Granted(held("a", 1, first), NOW + 500)));
        let got = acquire(None, b"b", 500, NOW, &mut tokens, false);
        assert_eq!(
            got,
            Ok(Acquire::Granted(held("b", 1, first + 1), NOW + 500))
        );
        assert_eq!(tokens.last(), first + 1);
    }

    #[test]
    fn acquire_by_the_holder_reenters_keeps_the_token_and_resets_expiry() {
        let mut tokens = counter_at(9);
        let mut lock = held("a", 2, 7);
        let got = acquire(Some(&mut lock), b"a", 500, NOW, &mut tokens, false);
        assert_eq!(
            got,
            Ok(Acquire::Reentered {
                token: 7,
                count: 3,
                expires_at: NOW + 500
            })
        );
        assert_eq!(lock, held("a", 3, 7));
        assert_eq!(tokens.last(), 9, "reentry must not use up a token");
    }

    #[test]
    fn acquire_by_another_owner_is_busy_and_changes_nothing() {
        let mut tokens = counter_at(9);
        let mut lock = held("a", 1, 7);
        let got = acquire(Some(&mut lock), b"b", 500, NOW, &mut tokens, false);
        assert_eq!(got, Ok(Acquire::Busy));
        assert_eq!(lock, held("a", 1, 7));
        assert_eq!(tokens.last(), 9);
    }

    #[test]
    fn a_free_lock_with_waiters_queued_is_busy_for_a_newcomer() {
        let mut tokens = counter_at(9);
        assert_eq!(
            acquire(None, b"n", 500, NOW, &mut tokens, true),
            Ok(Acquire::Busy)
        );
        assert_eq!(tokens.last(), 9);
    }

    #[test]
    fn the_holder_reenters_even_with_waiters_queued() {
        let mut tokens = counter_at(9);
        let mut lock = held("a", 1, 7);
        let got = acquire(Some(&mut lock), b"a", 500, NOW, &mut tokens, true);
        assert!(matches!(got, Ok(Acquire::Reentered { count: 2, .. })));
    }

    #[test]
    fn acquire_refuses_past_the_largest_count_and_changes_nothing() {
        let mut tokens = counter_at(9);
        let mut lock = held("a", MAX_COUNT, 7);
        let got = acquire(Some(&mut lock), b"a", 500, NOW, &mut tokens, false);
        assert_eq!(got, Err(TransitionError::CountOverflow));
        assert_eq!(lock, held("a", MAX_COUNT, 7));
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
        let mut lock = held("abc", 1, 1);
        for other in [&b"ab"[..], b"abcd", b"ABC", b"abc\0"] {
            let got = acquire(Some(&mut lock), other, 5, NOW, &mut tokens, false);
            assert_eq!(got, Ok(Acquire::Busy), "{other:?}");
        }
    }

    #[test]
    fn reenter_counts_up_for_the_holder_with_or_without_a_ttl() {
        let mut lock = held("a", 1, 7);
        let without = reenter(Some(&mut lock), b"a", None, NOW);
        assert_eq!(
            without,
            Ok(Some(Reentry {
                count: 2,
                expires_at: None
            }))
        );
        let with = reenter(Some(&mut lock), b"a", Some(900), NOW);
        assert_eq!(
            with,
            Ok(Some(Reentry {
                count: 3,
                expires_at: Some(NOW + 900)
            }))
        );
        assert_eq!(lock, held("a", 3, 7));
    }

    #[test]
    fn reenter_never_takes_a_free_or_foreign_lock() {
        assert_eq!(reenter(None, b"a", Some(5), NOW), Ok(None));
        let mut foreign = held("b", 1, 7);
        assert_eq!(reenter(Some(&mut foreign), b"a", None, NOW), Ok(None));
        assert_eq!(foreign, held("b", 1, 7));
    }

    #[test]
    fn reenter_refuses_past_the_largest_count() {
        let mut lock = held("a", MAX_COUNT, 7);
        assert_eq!(
            reenter(Some(&mut lock), b"a", Some(99), NOW),
            Err(TransitionError::CountOverflow)
        );
        assert_eq!(lock, held("a", MAX_COUNT, 7));
    }

    #[test]
    fn release_counts_down_then_frees() {
        let mut lock = held("a", 2, 7);
        assert_eq!(
            release(Some(&mut lock), b"a"),
            Release::StillHeld { count: 1 }
        );
        assert_eq!(lock, held("a", 1, 7));
        assert_eq!(release(Some(&mut lock), b"a"), Release::Freed);
    }

    #[test]
    fn release_by_a_non_holder_changes_nothing() {
        assert_eq!(release(None, b"a"), Release::NotHeld);
        let mut foreign = held("b", 2, 7);
        assert_eq!(release(Some(&mut foreign), b"a"), Release::NotHeld);
        assert_eq!(foreign, held("b", 2, 7));
    }

    #[test]
    fn renew_gives_a_new_expiry_only_to_the_holder() {
        let lock = held("a", 2, 7);
        assert_eq!(renew(Some(&lock), b"a", 800, NOW), Some(NOW + 800));
        assert_eq!(renew(Some(&lock), b"b", 5, NOW), None);
        assert_eq!(renew(None, b"a", 5, NOW), None);
        assert_eq!(lock, held("a", 2, 7));
    }

    #[test]
    fn ttl_left_counts_down_to_zero() {
        assert_eq!(ttl_left(NOW + 10, NOW), 10);
        assert_eq!(ttl_left(NOW + 10, NOW + 10), 0);
        assert_eq!(ttl_left(NOW + 10, NOW + 99), 0);
    }

    #[test]
    fn a_huge_ttl_saturates_instead_of_wrapping() {
        assert_eq!(expiry(NOW, u64::MAX), i64::MAX);
    }

    #[test]
    fn token_and_count_share_eight_bytes_without_spilling_into_each_other() {
        let max_token = super::super::tokens::MAX_TOKEN;
        let lock = held("o", MAX_COUNT, max_token);
        assert_eq!((lock.count(), lock.token()), (MAX_COUNT, max_token));
        let mut lock = held("o", 1, max_token);
        assert_eq!(release(Some(&mut lock), b"o"), Release::Freed);
        assert_eq!(
            reenter(Some(&mut lock), b"o", None, NOW).map(|r| r.map(|r| r.count)),
            Ok(Some(2))
        );
        assert_eq!((lock.count(), lock.token()), (2, max_token));
    }

    #[test]
    fn to_boxed_copies_every_field() {
        let lock = held("owner", 4, 12);
        assert_eq!(lock.to_boxed(), lock);
    }

    #[test]
    fn a_replayed_state_is_named_after_what_changed() {
        let state = |count, token, expires_at| Snapshot {
            count,
            token,
            expires_at,
        };
        let before = Some(state(2, 7, Some(NOW)));
        let cases = [
            (None, state(1, 7, Some(NOW)), Replayed::Acquired),
            (before, state(1, 8, Some(NOW)), Replayed::Acquired),
            (before, state(3, 7, Some(NOW)), Replayed::Reentered),
            (before, state(3, 7, Some(NOW + 5)), Replayed::Reentered),
            (before, state(1, 7, Some(NOW)), Replayed::Released),
            (before, state(2, 7, Some(NOW + 5)), Replayed::Renewed),
            (before, state(2, 7, None), Replayed::Renewed),
            (before, state(2, 7, Some(NOW)), Replayed::Unchanged),
        ];
        for (before, after, expected) in cases {
            assert_eq!(
                classify_replay(before, after),
                expected,
                "{before:?} -> {after:?}"
            );
        }
    }
}
