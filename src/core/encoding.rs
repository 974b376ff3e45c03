//! A lock as bytes in RDB files (and DUMP payloads), versioned so that later versions of rlock
//! still load what this one saved. Decoding never panics: a corrupt payload is an error.
//!
//! Version 1: count (u32 LE) | expires_at (i64 LE, unix ms) | token (u64 LE) | owner (the rest).

use super::lock::Lock;
use super::request::MAX_OWNER_BYTES;
use super::tokens::MAX_TOKEN;

/// The encoding version this build writes; Redis stores it with every saved value.
pub const ENCODING_VERSION: i32 = 1;

const HEADER_BYTES: usize = 4 + 8 + 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    UnknownVersion(i32),
    Truncated,
    InvalidField(&'static str),
}

pub fn encode(lock: &Lock) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(HEADER_BYTES + lock.owner.len());
    bytes.extend_from_slice(&lock.count.to_le_bytes());
    bytes.extend_from_slice(&lock.expires_at.to_le_bytes());
    bytes.extend_from_slice(&lock.token.to_le_bytes());
    bytes.extend_from_slice(&lock.owner);
    bytes
}

pub fn decode(version: i32, bytes: &[u8]) -> Result<Lock, DecodeError> {
    if version != 1 {
        return Err(DecodeError::UnknownVersion(version));
    }
    if bytes.len() < HEADER_BYTES {
        return Err(DecodeError::Truncated);
    }
    let (count, rest) = bytes.split_at(4);
    let (expires_at, rest) = rest.split_at(8);
    let (token, owner) = rest.split_at(8);
    let lock = Lock {
        count: u32::from_le_bytes(count.try_into().map_err(|_| DecodeError::Truncated)?),
        expires_at: i64::from_le_bytes(expires_at.try_into().map_err(|_| DecodeError::Truncated)?),
        token: u64::from_le_bytes(token.try_into().map_err(|_| DecodeError::Truncated)?),
        owner: owner.into(),
    };
    validate(&lock)?;
    Ok(lock)
}

fn validate(lock: &Lock) -> Result<(), DecodeError> {
    if lock.count == 0 {
        return Err(DecodeError::InvalidField("count"));
    }
    if lock.token == 0 || lock.token > MAX_TOKEN {
        return Err(DecodeError::InvalidField("token"));
    }
    if lock.owner.is_empty() || lock.owner.len() > MAX_OWNER_BYTES {
        return Err(DecodeError::InvalidField("owner"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Lock {
        Lock {
            owner: b"5f0c6e1a-thread-7".as_slice().into(),
            count: 3,
            expires_at: 1_700_000_123_456,
            token: 99,
        }
    }

    #[test]
    fn a_lock_survives_a_round_trip() {
        assert_eq!(decode(ENCODING_VERSION, &encode(&sample())), Ok(sample()));
    }

    #[test]
    fn version_one_bytes_are_pinned() {
        // Saved files outlive builds: this layout must keep loading.
        let lock = Lock {
            owner: b"ab".as_slice().into(),
            count: 2,
            expires_at: 0x0102_0304_0506_0708,
            token: 5,
        };
        let bytes = [
            2, 0, 0, 0, 8, 7, 6, 5, 4, 3, 2, 1, 5, 0, 0, 0, 0, 0, 0, 0, b'a', b'b',
        ];
        assert_eq!(encode(&lock), bytes);
        assert_eq!(decode(1, &bytes), Ok(lock));
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let bytes = encode(&sample());
        for len in 0..=HEADER_BYTES {
            assert!(decode(ENCODING_VERSION, &bytes[..len]).is_err(), "{len}");
        }
    }

    #[test]
    fn unknown_versions_and_impossible_fields_are_refused() {
        let bytes = encode(&sample());
        assert_eq!(decode(2, &bytes), Err(DecodeError::UnknownVersion(2)));
        assert_eq!(decode(0, &bytes), Err(DecodeError::UnknownVersion(0)));
        let mut zero_count = sample();
        zero_count.count = 0;
        assert_eq!(
            decode(1, &encode(&zero_count)),
            Err(DecodeError::InvalidField("count"))
        );
        let mut big_token = sample();
        big_token.token = MAX_TOKEN + 1;
        assert_eq!(
            decode(1, &encode(&big_token)),
            Err(DecodeError::InvalidField("token"))
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
        }
    }
}
