//! A plain lock's packed form: one exclusive holder's owner, hold count and fencing token in
//! one allocation, the form most keys keep (the transitions of every kind of hold are in
//! `holds`). Its expiry is the key's own expiry, kept by the server: a lock whose key exists is
//! live, an expired lock is simply gone.

use std::fmt;

use crate::core::state::tokens::TokensExhausted;
use crate::core::Millis;

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
        // The header, then the owner, into an allocation of the exact size (no zeroing first).
        let header = header(owner_len, count, token);
        let mut bytes = Box::<[u8]>::new_uninit_slice(HEADER_BYTES + owner.len());
        let start = bytes.as_mut_ptr().cast::<u8>();
        // SAFETY: the allocation holds HEADER_BYTES + owner.len() bytes; the two copies fill
        // it exactly, from sources that do not overlap it, before it is read as initialised.
        let bytes = unsafe {
            std::ptr::copy_nonoverlapping(header.as_ptr(), start, HEADER_BYTES);
            std::ptr::copy_nonoverlapping(owner.as_ptr(), start.add(HEADER_BYTES), owner.len());
            bytes.assume_init()
        };
        Lock::from_boxed_bytes(bytes).unwrap_or_else(|bytes| {
            unreachable!("a lock built from its parts has a valid layout: {bytes:?}")
        })
    }

    /// A new lock as `boxed` makes it, written into `bytes` (an allocation reused), which must
    /// be exactly its size; else `bytes` are given back untouched.
    pub fn refill(
        mut bytes: Box<[u8]>,
        owner: &[u8],
        count: u32,
        token: u64,
    ) -> Result<Box<Lock>, Box<[u8]>> {
        let Ok(owner_len) = u16::try_from(owner.len()) else {
            return Err(bytes);
        };
        if bytes.len() != HEADER_BYTES + owner.len() {
            return Err(bytes);
        }
        bytes[..HEADER_BYTES].copy_from_slice(&header(owner_len, count, token));
        bytes[HEADER_BYTES..].copy_from_slice(owner);
        Lock::from_boxed_bytes(bytes)
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

/// Token and count in the eight bytes a lock (and every holder in tagged holds) keeps them.
pub fn pack(token: u64, count: u32) -> u64 {
    (token & TOKEN_MASK) | (u64::from(count.min(MAX_COUNT)) << TOKEN_BITS)
}

/// The (token, count) that `pack` made.
pub fn unpack(packed: u64) -> (u64, u32) {
    (packed & TOKEN_MASK, (packed >> TOKEN_BITS) as u32)
}

/// A lock's header: the owner's length, then the token and count packed.
fn header(owner_len: u16, count: u32, token: u64) -> [u8; HEADER_BYTES] {
    let mut header = [0u8; HEADER_BYTES];
    header[OWNER_LEN_AT..TOKEN_AND_COUNT_AT].copy_from_slice(&owner_len.to_le_bytes());
    header[TOKEN_AND_COUNT_AT..].copy_from_slice(&pack(token, count).to_le_bytes());
    header
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

/// Milliseconds left before `expires_at` (0 once passed).
pub fn ttl_left(expires_at: Millis, now: Millis) -> i64 {
    expires_at.saturating_sub(now).max(0)
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

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Millis = 1_700_000_000_000;

    fn held(owner: &str, count: u32, token: u64) -> Box<Lock> {
        Lock::boxed(owner.as_bytes(), count, token)
    }

    #[test]
    fn a_refilled_allocation_becomes_the_lock_boxed_would_make_in_the_same_memory() {
        let old = Lock::boxed(b"owner-aaaaaaaaaa", 7, 99).into_boxed_bytes();
        let at = old.as_ptr();
        let lock = Lock::refill(old, b"holder-bbbbbbbbb", 1, 12_345).expect("the same size");
        assert_eq!(&*lock, &*Lock::boxed(b"holder-bbbbbbbbb", 1, 12_345));
        assert_eq!(
            lock.owner().as_ptr(),
            at.wrapping_add(HEADER_BYTES),
            "the same allocation"
        );
        // Any other size is given back untouched.
        let other = Lock::boxed(b"short", 1, 1).into_boxed_bytes();
        let kept = other.clone();
        let back = Lock::refill(other, b"holder-bbbbbbbbb", 1, 2).expect_err("another size");
        assert_eq!(back, kept);
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
        let max_token = crate::core::state::tokens::MAX_TOKEN;
        let lock = held("o", MAX_COUNT, max_token);
        assert_eq!((lock.count(), lock.token()), (MAX_COUNT, max_token));
        let mut lock = held("o", 1, max_token);
        lock.set_count(2);
        assert_eq!((lock.count(), lock.token()), (2, max_token));
        lock.set_count(MAX_COUNT);
        assert_eq!((lock.count(), lock.token()), (MAX_COUNT, max_token));
    }

    #[test]
    fn a_lock_debugs_as_its_fields() {
        let lock = held("worker-7", 3, 99);
        assert_eq!(
            format!("{lock:?}"),
            r#"Lock { owner: "worker-7", count: 3, token: 99 }"#
        );
    }

    #[test]
    fn to_boxed_copies_every_field() {
        let lock = held("owner", 4, 12);
        assert_eq!(lock.to_boxed(), lock);
    }
}
