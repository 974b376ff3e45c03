//! A lock as bytes in RDB files (and DUMP payloads), versioned so that later versions of rlock
//! still load what earlier ones saved. Decoding never panics: a corrupt payload is an error.
//!
//! - Version 3 (written now): the value as it is kept, tagged by its first two bytes. A plain
//!   lock (one exclusive holder, no session) is the version 2 layout, byte for byte. Any other
//!   holds (shared, semaphore, session) start with the tag `FF FF` (an owner length no plain
//!   lock can have): `FF FF | total length u32 | kind u8 (0 lock, 1 semaphore) | limit u32 |
//!   holders u16 | holders...`, each holder `flags u8 (1 exclusive, 2 session) | client id u64 |
//!   expires_at i64 (unix ms, 0: none) | token and count u64 (packed as in a plain lock) | owner
//!   length u16 | owner`. Every holder carries its own absolute expiry; the key's expiry is the
//!   latest of them. A session's client id means nothing outside the process that took it:
//!   loading (or replaying) one keeps the session flag with the id 0 (unknown), so the hold
//!   ends by its ttl.
//! - Version 2: the packed lock itself (`lock::Lock`); its expiry is the key's, which the RDB
//!   file stores with the key.
//! - Version 1: count (u32 LE) | expires_at (i64 LE, unix ms) | token (u64 LE) | owner. The
//!   expiry field duplicated the key's own and is dropped on load.

use std::collections::HashSet;

use crate::core::request::{MAX_OWNER_BYTES, MAX_TTL_MS};
use crate::core::state::holds::{Holder, Holds, Kind, MAX_HOLDERS};
use crate::core::state::lock::{pack, unpack, Lock, MAX_COUNT};
use crate::core::state::tokens::MAX_TOKEN;
use crate::core::Millis;

/// The encoding version this build writes; Redis stores it with every saved value.
pub const ENCODING_VERSION: i32 = 3;

/// The first two bytes of every value that is not a plain lock.
pub const HOLDS_TAG: [u8; 2] = [0xFF, 0xFF];
const HOLDS_HEADER_BYTES: usize = 2 + 4 + 1 + 4 + 2;
const HOLDER_HEADER_BYTES: usize = 1 + 8 + 8 + 8 + 2;
const FLAG_EXCLUSIVE: u8 = 1;
const FLAG_SESSION: u8 = 2;
/// Up to this many holders, `decode_holds` checks uniqueness without building sets.
const FEW_HOLDERS: u16 = 8;

/// A decoded value.
#[derive(Debug, PartialEq, Eq)]
pub enum Value {
    Plain(Box<Lock>),
    Holds(Holds),
}

/// The total size of a value (plain or tagged) whose first bytes are `header`.
pub fn value_size(header: &[u8]) -> Option<usize> {
    if header.get(..2)? == HOLDS_TAG {
        let len = header.get(2..6)?;
        usize::try_from(u32::from_le_bytes([len[0], len[1], len[2], len[3]])).ok()
    } else {
        Lock::size_from_header(header)
    }
}

/// The tagged bytes of `holds` (the caller keeps a plain lock in its packed form instead).
pub fn encode_holds(holds: &Holds) -> Box<[u8]> {
    let size = HOLDS_HEADER_BYTES
        + holds
            .holders
            .iter()
            .map(|holder| HOLDER_HEADER_BYTES + holder.owner.len())
            .sum::<usize>();
    let mut bytes = Vec::with_capacity(size);
    bytes.extend_from_slice(&HOLDS_TAG);
    bytes.extend_from_slice(&u32::try_from(size).unwrap_or(u32::MAX).to_le_bytes());
    let (kind, limit) = match holds.kind {
        Kind::Lock => (0u8, 0u32),
        Kind::Semaphore(n) => (1, n),
    };
    bytes.push(kind);
    bytes.extend_from_slice(&limit.to_le_bytes());
    let count = u16::try_from(holds.holders.len()).unwrap_or(u16::MAX);
    bytes.extend_from_slice(&count.to_le_bytes());
    for holder in holds.holders.iter().take(usize::from(count)) {
        let mut flags = 0;
        if holder.exclusive {
            flags |= FLAG_EXCLUSIVE;
        }
        if holder.session.is_some() {
            flags |= FLAG_SESSION;
        }
        bytes.push(flags);
        bytes.extend_from_slice(&holder.session.unwrap_or(0).to_le_bytes());
        bytes.extend_from_slice(&holder.expires_at.unwrap_or(0).to_le_bytes());
        bytes.extend_from_slice(&pack(holder.token, holder.count).to_le_bytes());
        let owner_len = u16::try_from(holder.owner.len()).unwrap_or(u16::MAX);
        bytes.extend_from_slice(&owner_len.to_le_bytes());
        bytes.extend_from_slice(&holder.owner[..usize::from(owner_len)]);
    }
    bytes.into_boxed_slice()
}

/// Tagged bytes back to holds, every field checked. `keep_clients`: the bytes are this
/// process's own value (session client ids mean something); else they become 0 (unknown).
pub fn decode_holds(bytes: &[u8], keep_clients: bool) -> Result<Holds, DecodeError> {
    let mut reader = Reader(bytes);
    if reader.take(2)? != HOLDS_TAG {
        return Err(DecodeError::InvalidField("tag"));
    }
    if usize::try_from(reader.u32()?).ok() != Some(bytes.len()) {
        return Err(DecodeError::InvalidField("length"));
    }
    let kind = match (reader.u8()?, reader.u32()?) {
        (0, 0) => Kind::Lock,
        (1, n) if (1..=MAX_HOLDERS).contains(&n) => Kind::Semaphore(n),
        _ => return Err(DecodeError::InvalidField("kind")),
    };
    let count = reader.u16()?;
    if count == 0 || u32::from(count) > MAX_HOLDERS {
        return Err(DecodeError::InvalidField("holders"));
    }
    let mut holders: Vec<Holder> = Vec::with_capacity(usize::from(count));
    // Owners and tokens are unique: checked by a scan of the holders so far for the few most
    // keys have (every shared or session command decodes its key), with sets past that.
    let mut seen = (count > FEW_HOLDERS).then(|| (HashSet::new(), HashSet::new()));
    for _ in 0..count {
        let flags = reader.u8()?;
        let client = reader.u64()?;
        let expires_at = reader.i64()?;
        let packed = reader.u64()?;
        let owner_len = reader.u16()?;
        let owner = reader.take(usize::from(owner_len))?;
        let (token, count) = unpack(packed);
        validate_fields(owner, count, token)?;
        if flags & !(FLAG_EXCLUSIVE | FLAG_SESSION) != 0 {
            return Err(DecodeError::InvalidField("flags"));
        }
        if expires_at < 0 {
            return Err(DecodeError::InvalidField("expiry"));
        }
        let (owner_repeated, token_repeated) = match &mut seen {
            Some((owners, tokens)) => (!owners.insert(owner), !tokens.insert(token)),
            None => (
                holders.iter().any(|holder| &*holder.owner == owner),
                holders.iter().any(|holder| holder.token == token),
            ),
        };
        if owner_repeated {
            return Err(DecodeError::InvalidField("owner"));
        }
        if token_repeated {
            return Err(DecodeError::InvalidField("token"));
        }
        let session = (flags & FLAG_SESSION != 0).then_some(if keep_clients { client } else { 0 });
        holders.push(Holder {
            owner: owner.into(),
            count,
            token,
            expires_at: (expires_at > 0).then_some(expires_at as Millis),
            exclusive: flags & FLAG_EXCLUSIVE != 0,
            session,
        });
    }
    if !reader.0.is_empty() {
        return Err(DecodeError::InvalidField("length"));
    }
    let exclusive = holders.iter().filter(|holder| holder.exclusive).count();
    let consistent = match kind {
        Kind::Lock => exclusive == 0 || holders.len() == 1,
        Kind::Semaphore(n) => exclusive == 0 && holders.len() as u64 <= u64::from(n),
    };
    if !consistent {
        return Err(DecodeError::InvalidField("holders"));
    }
    Ok(Holds { kind, holders })
}

/// A saved or replayed value: a plain lock (versions 1 to 3) or tagged holds (version 3).
pub fn decode_value(version: i32, bytes: &[u8]) -> Result<Value, DecodeError> {
    if version == 3 && bytes.get(..2) == Some(&HOLDS_TAG[..]) {
        return decode_holds(bytes, false).map(Value::Holds);
    }
    decode(version, bytes).map(Value::Plain)
}

/// How much later than `now + MAX_TTL_MS` a restored holder's expiry may be: clocks of the node
/// that granted it and of this one may differ by up to a day.
pub const EXPIRY_MARGIN_MS: Millis = 24 * 3600 * 1000;

/// Refuses a value no grant can have made by `now` (unix ms), give or take clocks: a holder
/// expiring more than `MAX_TTL_MS + EXPIRY_MARGIN_MS` after `now` (a grant's, a reentry's or a
/// renewal's expiry is at most `MAX_TTL_MS` after its own clock). Such a hold would outlast any
/// ttl ever asked for; an admin who wants a permanent hold makes one with `PERSIST`. A plain
/// lock carries no expiry of its own (it is the key's).
pub fn check_expiries(value: &Value, now: Millis) -> Result<(), DecodeError> {
    let Value::Holds(holds) = value else {
        return Ok(());
    };
    let latest_allowed = now
        .saturating_add(MAX_TTL_MS as Millis)
        .saturating_add(EXPIRY_MARGIN_MS);
    let too_late = holds
        .holders
        .iter()
        .any(|holder| holder.expires_at.is_some_and(|at| at > latest_allowed));
    if too_late {
        return Err(DecodeError::InvalidField("expiry"));
    }
    Ok(())
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.0.len() < n {
            return Err(DecodeError::Truncated);
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        self.take(N)?.try_into().map_err(|_| DecodeError::Truncated)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        self.array().map(u16::from_le_bytes)
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        self.array().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        self.array().map(u64::from_le_bytes)
    }

    fn i64(&mut self) -> Result<i64, DecodeError> {
        self.array().map(i64::from_le_bytes)
    }
}

const V1_HEADER_BYTES: usize = 4 + 8 + 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    UnknownVersion(i32),
    Truncated,
    InvalidField(&'static str),
}

/// The bytes to save: the lock as it is kept.
#[cfg(test)]
pub fn encode(lock: &Lock) -> &[u8] {
    lock.as_bytes()
}

pub fn decode(version: i32, bytes: &[u8]) -> Result<Box<Lock>, DecodeError> {
    let lock = match version {
        2 | 3 => Lock::from_boxed_bytes(bytes.into()).map_err(|_| DecodeError::Truncated)?,
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
    validate_fields(lock.owner(), lock.count(), lock.token())
}

fn validate_fields(owner: &[u8], count: u32, token: u64) -> Result<(), DecodeError> {
    if count == 0 {
        return Err(DecodeError::InvalidField("count"));
    }
    if token == 0 || token > MAX_TOKEN {
        return Err(DecodeError::InvalidField("token"));
    }
    if owner.is_empty() || owner.len() > MAX_OWNER_BYTES {
        return Err(DecodeError::InvalidField("owner"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::state::lock::HEADER_BYTES;

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
        assert_eq!(decode(4, &bytes), Err(DecodeError::UnknownVersion(4)));
        assert_eq!(decode_value(4, &bytes), Err(DecodeError::UnknownVersion(4)));
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
            let _ = decode_value(3, &bytes);
            let mut tagged = HOLDS_TAG.to_vec();
            tagged.extend_from_slice(&(bytes.len() as u32 + 6).to_le_bytes());
            tagged.extend_from_slice(&bytes);
            let _ = decode_value(3, &tagged);
        }
    }

    fn sample_holds() -> Holds {
        Holds {
            kind: Kind::Semaphore(3),
            holders: vec![
                Holder {
                    owner: b"reader-1".to_vec().into(),
                    count: 2,
                    token: 41,
                    expires_at: Some(1_700_000_000_500),
                    exclusive: false,
                    session: Some(17),
                },
                Holder {
                    owner: b"r2".to_vec().into(),
                    count: 1,
                    token: 44,
                    expires_at: Some(1_700_000_000_900),
                    exclusive: false,
                    session: None,
                },
            ],
        }
    }

    #[test]
    fn version_three_writes_a_plain_lock_as_version_two_did() {
        let lock = Lock::boxed(b"ab", 2, 5);
        let bytes = [2, 0, 5, 0, 0, 0, 0, 0, 0x40, 0, b'a', b'b'];
        assert_eq!(decode_value(3, &bytes), Ok(Value::Plain(lock.to_boxed())));
        assert_eq!(decode_value(2, &bytes), Ok(Value::Plain(lock.to_boxed())));
        assert_eq!(value_size(&bytes), Some(bytes.len()));
    }

    #[test]
    fn holds_survive_a_round_trip_and_lose_their_client_ids_on_load() {
        let holds = sample_holds();
        let bytes = encode_holds(&holds);
        assert_eq!(value_size(&bytes), Some(bytes.len()));
        assert_eq!(decode_holds(&bytes, true), Ok(holds.clone()));
        let Ok(Value::Holds(loaded)) = decode_value(3, &bytes) else {
            panic!("tagged bytes decode as holds");
        };
        assert_eq!(
            loaded.holders[0].session,
            Some(0),
            "the connection is unknown"
        );
        assert_eq!(loaded.holders[1].session, None);
        assert_eq!(loaded.holders[0].expires_at, holds.holders[0].expires_at);
    }

    #[test]
    fn holds_bytes_are_pinned() {
        let holds = Holds {
            kind: Kind::Lock,
            holders: vec![Holder {
                owner: b"r".to_vec().into(),
                count: 1,
                token: 5,
                expires_at: Some(0x0102),
                exclusive: false,
                session: None,
            }],
        };
        let bytes: Vec<u8> = [
            &[0xFF, 0xFF, 41, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0][..],
            &[0, 0, 0, 0, 0, 0, 0, 0, 0],
            &[2, 1, 0, 0, 0, 0, 0, 0],
            &[5, 0, 0, 0, 0, 0, 0x20, 0],
            &[1, 0, b'r'],
        ]
        .concat();
        assert_eq!(&*encode_holds(&holds), &bytes[..]);
        assert_eq!(decode_holds(&bytes, false), Ok(holds));
    }

    #[test]
    fn every_truncation_or_inconsistency_of_holds_is_refused() {
        let bytes = encode_holds(&sample_holds()).to_vec();
        for len in 0..bytes.len() {
            let mut cut = bytes[..len].to_vec();
            if cut.len() >= 6 {
                cut[2..6].copy_from_slice(&(len as u32).to_le_bytes());
            }
            assert!(decode_value(3, &cut).is_err(), "cut at {len}");
        }
        let mut over = sample_holds();
        over.kind = Kind::Semaphore(1);
        assert_eq!(
            decode_holds(&encode_holds(&over), false),
            Err(DecodeError::InvalidField("holders"))
        );
        let mut two_writers = sample_holds();
        two_writers.kind = Kind::Lock;
        two_writers.holders[0].exclusive = true;
        assert_eq!(
            decode_holds(&encode_holds(&two_writers), false),
            Err(DecodeError::InvalidField("holders"))
        );
        let mut same_owner = sample_holds();
        same_owner.holders[1].owner = same_owner.holders[0].owner.clone();
        assert_eq!(
            decode_holds(&encode_holds(&same_owner), false),
            Err(DecodeError::InvalidField("owner"))
        );
        let mut same_token = sample_holds();
        same_token.holders[1].token = 41;
        assert_eq!(
            decode_holds(&encode_holds(&same_token), false),
            Err(DecodeError::InvalidField("token"))
        );
        let mut zero_count = sample_holds();
        zero_count.holders[0].count = 0;
        assert!(decode_holds(&encode_holds(&zero_count), false).is_err());
        let empty = Holds::default();
        assert_eq!(
            decode_holds(&encode_holds(&empty), false),
            Err(DecodeError::InvalidField("holders"))
        );
        let mut bad_flags = bytes.clone();
        bad_flags[HOLDS_HEADER_BYTES] |= 8;
        assert_eq!(
            decode_holds(&bad_flags, false),
            Err(DecodeError::InvalidField("flags"))
        );
        let mut bad_kind = bytes.clone();
        bad_kind[6] = 2;
        assert_eq!(
            decode_holds(&bad_kind, false),
            Err(DecodeError::InvalidField("kind"))
        );
    }

    /// One holder with the given expiry field (unix ms; 0 means none), as tagged bytes.
    fn one_shared_holder(expires_at: Millis) -> Vec<u8> {
        let mut holds = sample_holds();
        holds.holders.truncate(1);
        holds.holders[0].expires_at = Some(expires_at);
        encode_holds(&holds).to_vec()
    }

    fn with_limit(bytes: &[u8], limit: u32) -> Vec<u8> {
        let mut bytes = bytes.to_vec();
        bytes[7..11].copy_from_slice(&limit.to_le_bytes());
        bytes
    }

    #[test]
    fn a_semaphore_limit_is_one_to_max_holders() {
        let bytes = one_shared_holder(5);
        for (limit, accepted) in [
            (0, false),
            (1, true),
            (MAX_HOLDERS, true),
            (MAX_HOLDERS + 1, false),
        ] {
            let decoded = decode_holds(&with_limit(&bytes, limit), false);
            match accepted {
                true => assert_eq!(decoded.map(|holds| holds.kind), Ok(Kind::Semaphore(limit))),
                false => assert_eq!(decoded, Err(DecodeError::InvalidField("kind"))),
            }
        }
    }

    #[test]
    fn max_holders_load_and_one_more_is_refused() {
        let holder = |n: u32| Holder {
            owner: format!("reader-{n}").into_bytes().into(),
            count: 1,
            token: u64::from(n) + 1,
            expires_at: None,
            exclusive: false,
            session: None,
        };
        let full = Holds {
            kind: Kind::Lock,
            holders: (0..MAX_HOLDERS).map(holder).collect(),
        };
        assert_eq!(decode_holds(&encode_holds(&full), false), Ok(full.clone()));
        let mut over = full;
        over.holders.push(holder(MAX_HOLDERS));
        assert_eq!(
            decode_holds(&encode_holds(&over), false),
            Err(DecodeError::InvalidField("holders"))
        );
    }

    #[test]
    fn a_holder_expiry_of_zero_is_none_and_a_negative_one_is_refused() {
        let decoded = decode_holds(&one_shared_holder(0), false);
        assert_eq!(decoded.map(|holds| holds.holders[0].expires_at), Ok(None));
        let mut negative = one_shared_holder(0);
        let at = HOLDS_HEADER_BYTES + 1 + 8;
        negative[at..at + 8].copy_from_slice(&(-1i64).to_le_bytes());
        assert_eq!(
            decode_holds(&negative, false),
            Err(DecodeError::InvalidField("expiry"))
        );
    }

    #[test]
    fn a_restored_holder_may_expire_up_to_the_longest_ttl_and_a_day_from_now() {
        let now = 1_796_000_000_000;
        let latest = now + MAX_TTL_MS as Millis + EXPIRY_MARGIN_MS;
        let holds_expiring = |at: Millis| {
            let mut holds = sample_holds();
            holds.holders[1].expires_at = Some(at);
            Value::Holds(holds)
        };
        assert_eq!(check_expiries(&holds_expiring(latest), now), Ok(()));
        assert_eq!(check_expiries(&holds_expiring(now - 1), now), Ok(()));
        assert_eq!(
            check_expiries(&holds_expiring(latest + 1), now),
            Err(DecodeError::InvalidField("expiry"))
        );
        assert_eq!(
            check_expiries(&holds_expiring(Millis::MAX), now),
            Err(DecodeError::InvalidField("expiry"))
        );
        let mut permanent = sample_holds();
        permanent.holders[0].expires_at = None;
        assert_eq!(check_expiries(&Value::Holds(permanent), now), Ok(()));
        let plain = Value::Plain(sample());
        assert_eq!(check_expiries(&plain, Millis::MAX), Ok(()));
    }

    fn v1_bytes(count: u32, token: u64, owner: &[u8]) -> Vec<u8> {
        [
            &count.to_le_bytes()[..],
            &1_700_000_000_000i64.to_le_bytes(),
            &token.to_le_bytes(),
            owner,
        ]
        .concat()
    }

    #[test]
    fn version_one_limits_are_inclusive() {
        let longest = vec![b'o'; MAX_OWNER_BYTES];
        let most = v1_bytes(MAX_COUNT, 7, &longest);
        assert_eq!(decode(1, &most), Ok(Lock::boxed(&longest, MAX_COUNT, 7)));
        let too_many = v1_bytes(MAX_COUNT + 1, 7, b"o");
        assert_eq!(
            decode(1, &too_many),
            Err(DecodeError::InvalidField("count"))
        );
        let too_long = v1_bytes(1, 7, &vec![b'o'; MAX_OWNER_BYTES + 1]);
        assert_eq!(
            decode(1, &too_long),
            Err(DecodeError::InvalidField("owner"))
        );
        // A whole header and no owner is complete, not truncated: the owner is refused.
        let no_owner = v1_bytes(1, 7, b"");
        assert_eq!(
            decode(1, &no_owner),
            Err(DecodeError::InvalidField("owner"))
        );
    }

    #[test]
    fn the_largest_token_and_owner_load_and_one_more_byte_is_refused() {
        let longest = vec![b'o'; MAX_OWNER_BYTES];
        let largest = Lock::boxed(&longest, 1, MAX_TOKEN);
        assert_eq!(decode(2, encode(&largest)), Ok(largest.to_boxed()));
        let too_long = Lock::boxed(&vec![b'o'; MAX_OWNER_BYTES + 1], 1, 1);
        assert_eq!(
            decode(2, encode(&too_long)),
            Err(DecodeError::InvalidField("owner"))
        );
    }
}
