//! A lock as bytes in RDB files (and DUMP payloads), versioned so that later versions of rlock
//! still load what earlier ones saved. Decoding never panics: a corrupt payload is an error.
//!
//! - Version 2 (written now): the packed lock itself (`lock::Lock`); its expiry is the key's,
//!   which the RDB file stores with the key.
//! - Version 1: count (u32 LE) | expires_at (i64 LE, unix ms) | token (u64 LE) | owner. The
//!   expiry field duplicated the key's own and is dropped on load.

use super::lock::{Lock, MAX_COUNT};
use super::request::MAX_OWNER_BYTES;
use super::tokens::MAX_TOKEN;

/// The encoding version this build writes; Redis stores it with every saved value.
pub const ENCODING_VERSION: i32 = 2;

const V1_HEADER_BYTES: usize = 4 + 8 + 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    UnknownVersion(i32),
    Truncated,
    InvalidField(&'static str),
}

/// The bytes to save: the lock as it is kept.
pub fn encode(lock: &Lock) -> &[u8] {
    lock.as_bytes()
}

pub fn decode(version: i32, bytes: &[u8]) -> Result<Box<Lock>, DecodeError> {
    let lock = match version {
        2 => Lock::from_boxed_bytes(bytes.into()).map_err(|_| DecodeError::Truncated)?,
        1 => decode_v1(bytes)?,
        other => return Err(DecodeError::UnknownVersion(other)),
    };
    validate(&lock)?;
    Ok(lock)
}

fn decode_v1(bytes: &[u8]) -> Result<Box<Lock>, DecodeError> {
    if bytes.len() < V1_HEADER_BYTES {
        return Err(DecodeError::Truncated);
    }
    let (count, rest) = bytes.split_at(4);
    let (_expires_at, rest) = rest.split_at(8);
    let (token, owner) = rest.split_at(8);
    if owner.len() > MAX_OWNER_BYTES {
        return Err(DecodeError::InvalidField("owner"));
    }
    if u32::from_le_bytes(count.try_into().map_err(|_| DecodeError::Truncated)?) > MAX_COUNT {
        return Err(DecodeError::InvalidField("count"));
    }
    let count = u32::from_le_bytes(count.try_into().map_err(|_| DecodeError::Truncated)?);
    let token = u64::from_le_bytes(token.try_into().map_err(|_| DecodeError::Truncated)?);
    Ok(Lock::boxed(owner, count, token))
}

fn validate(lock: &Lock) -> Result<(), DecodeError> {
    if lock.count() == 0 {
        return Err(DecodeError::InvalidField("count"));
    }
    if lock.token() == 0 || lock.token() > MAX_TOKEN {
        return Err(DecodeError::InvalidField("token"));
    }
    if lock.owner().is_empty() || lock.owner().len() > MAX_OWNER_BYTES {
        return Err(DecodeError::InvalidField("owner"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::lock::HEADER_BYTES;

    fn sample() -> Box<Lock> {
        Lock::boxed(b"5f0c6e1a-thread-7", 3, 99)
    }

    #[test]
    fn a_lock_survives_a_round_trip() {
        assert_eq!(decode(ENCODING_VERSION, encode(&sample())), Ok(sample()));
    }

    #[test]
    fn version_two_bytes_are_pinned() {
        // Saved files outlive builds: this layout must keep loading.
        // owner length 2 | token 5 + count 2 << 53 | "ab"
        let bytes = [2, 0, 5, 0, 0, 0, 0, 0, 0x40, 0, b'a', b'b'];
        let lock = Lock::boxed(b"ab", 2, 5);
        assert_eq!(encode(&lock), bytes);
        assert_eq!(decode(2, &bytes), Ok(lock));
    }

    #[test]
    fn version_one_bytes_still_load() {
        let bytes = [
            2, 0, 0, 0, 8, 7, 6, 5, 4, 3, 2, 1, 5, 0, 0, 0, 0, 0, 0, 0, b'a', b'b',
        ];
        assert_eq!(decode(1, &bytes), Ok(Lock::boxed(b"ab", 2, 5)));
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let bytes = encode(&sample()).to_vec();
        for len in 0..bytes.len() {
            assert!(decode(2, &bytes[..len]).is_err(), "v2 {len}");
        }
        for len in 0..V1_HEADER_BYTES {
            assert!(
                decode(1, &bytes[..len.min(bytes.len())]).is_err(),
                "v1 {len}"
            );
        }
        assert!(HEADER_BYTES < bytes.len());
    }

    #[test]
    fn unknown_versions_and_impossible_fields_are_refused() {
        let bytes = encode(&sample()).to_vec();
        assert_eq!(decode(3, &bytes), Err(DecodeError::UnknownVersion(3)));
        assert_eq!(decode(0, &bytes), Err(DecodeError::UnknownVersion(0)));
        let zero_count = Lock::boxed(b"a", 0, 1);
        assert_eq!(
            decode(2, encode(&zero_count)),
            Err(DecodeError::InvalidField("count"))
        );
        let big_token = Lock::boxed(b"a", 1, MAX_TOKEN + 1);
        assert_eq!(
            decode(2, encode(&big_token)),
            Err(DecodeError::InvalidField("token"))
        );
        let no_owner = Lock::boxed(b"", 1, 1);
        assert_eq!(
            decode(2, encode(&no_owner)),
            Err(DecodeError::InvalidField("owner"))
        );
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        for len in 0..200 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            let _ = decode(1, &bytes);
            let _ = decode(2, &bytes);
        }
    }
}
