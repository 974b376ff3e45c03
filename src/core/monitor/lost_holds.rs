//! Why a holder lost its hold: the last loss of each (database, key, owner), kept briefly so
//! that a holder whose `LOCK.RELEASE` / `LOCK.RENEW` finds its hold gone can ask
//! `LOCK.LOST key owner` why.
//!
//! Bounded two ways: at most `max_len` records (the oldest loss goes first when one more comes)
//! and none older than `retention_ms` (dropped as new losses come and when looked up). A later
//! loss of the same owner on the same key replaces its record. Keys longer than
//! [`crate::core::monitor::lock_log::MAX_NAME_BYTES`] are not recorded (the lock log still shows them, cut).
//! The record carries the lost hold's token: a holder that took the key again since compares
//! it with its own.

use std::collections::{BTreeMap, HashMap};

use crate::core::monitor::lock_log::{HoldKind, Reason, MAX_NAME_BYTES};
use crate::core::Millis;

/// Which hold was lost: database, key, owner.
type LossKey = (i32, Box<[u8]>, Box<[u8]>);

/// One lost hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loss {
    pub reason: Reason,
    /// When it was lost (unix ms): for `Expired`, the hold's expiry.
    pub at: Millis,
    pub token: u64,
    pub kind: HoldKind,
    /// How long it had been held when lost, in ms.
    pub held_ms: u64,
}

#[derive(Debug, Default)]
pub struct LostHolds {
    by_hold: HashMap<LossKey, (u64, Loss)>,
    /// The same records by age (their sequence number), oldest first.
    by_age: BTreeMap<u64, LossKey>,
    next_seq: u64,
    bytes: usize,
}

/// Bytes one record takes besides its names: the two maps' entries.
const RECORD_OVERHEAD: usize =
    std::mem::size_of::<(LossKey, (u64, Loss))>() + std::mem::size_of::<(u64, LossKey)>() + 16;

fn record_bytes(key: &LossKey) -> usize {
    RECORD_OVERHEAD + 2 * (key.1.len() + key.2.len())
}

impl LostHolds {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that `owner` lost its hold on `key` in `db`, keeping at most `max_len` records
    /// none older than `retention_ms` at `now`. A loss that does not lose the hold (a long
    /// wait or hold) and keys past `MAX_NAME_BYTES` are not recorded.
    pub fn record(
        &mut self,
        db: i32,
        key: &[u8],
        owner: &[u8],
        loss: Loss,
        limits: Limits,
        now: Millis,
    ) {
        self.expire(limits, now);
        if !loss.reason.loses_the_hold() || key.len() > MAX_NAME_BYTES || limits.max_len == 0 {
            return;
        }
        let lookup: LossKey = (db, key.into(), owner.into());
        if let Some((old_seq, _)) = self.by_hold.remove(&lookup) {
            self.by_age.remove(&old_seq);
            self.bytes -= record_bytes(&lookup);
        }
        while self.by_hold.len() >= limits.max_len {
            self.drop_oldest();
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.bytes += record_bytes(&lookup);
        self.by_age.insert(seq, lookup.clone());
        self.by_hold.insert(lookup, (seq, loss));
    }

    /// The last loss of `owner`'s hold on `key`, if recorded and not older than the retention.
    pub fn lookup(
        &mut self,
        db: i32,
        key: &[u8],
        owner: &[u8],
        limits: Limits,
        now: Millis,
    ) -> Option<Loss> {
        self.expire(limits, now);
        let lookup: LossKey = (db, key.into(), owner.into());
        self.by_hold.get(&lookup).map(|(_, loss)| *loss)
    }

    /// Drops records beyond the limits (also after a config lowered them).
    pub fn expire(&mut self, limits: Limits, now: Millis) {
        while self.by_hold.len() > limits.max_len {
            self.drop_oldest();
        }
        let oldest_kept =
            now.saturating_sub(i64::try_from(limits.retention_ms).unwrap_or(i64::MAX));
        while let Some((_, lookup)) = self.by_age.first_key_value() {
            match self.by_hold.get(lookup) {
                Some((_, loss)) if loss.at < oldest_kept => self.drop_oldest(),
                _ => break,
            }
        }
    }

    fn drop_oldest(&mut self) {
        if let Some((_, lookup)) = self.by_age.pop_first() {
            self.bytes -= record_bytes(&lookup);
            self.by_hold.remove(&lookup);
        }
    }

    pub fn len(&self) -> usize {
        self.by_hold.len()
    }

    #[cfg_attr(not(test), allow(dead_code))]
    pub fn is_empty(&self) -> bool {
        self.by_hold.is_empty()
    }

    /// Forgets every record (a `FLUSHALL` does not: a holder may still ask why).
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn reset(&mut self) {
        self.by_hold = HashMap::new();
        self.by_age.clear();
        self.bytes = 0;
    }

    /// Bytes the records take, estimated: names (kept twice) and the maps' entries.
    pub fn memory(&self) -> usize {
        self.bytes
    }
}

/// The configured bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_len: usize,
    pub retention_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_len: 3,
        retention_ms: 1000,
    };

    fn loss(reason: Reason, at: Millis, token: u64) -> Loss {
        Loss {
            reason,
            at,
            token,
            kind: HoldKind::Exclusive,
            held_ms: 5,
        }
    }

    #[test]
    fn a_loss_is_found_by_db_key_and_owner() {
        let mut lost = LostHolds::new();
        lost.record(0, b"k", b"a", loss(Reason::Expired, 100, 9), LIMITS, 100);
        assert_eq!(
            lost.lookup(0, b"k", b"a", LIMITS, 150),
            Some(loss(Reason::Expired, 100, 9))
        );
        assert_eq!(lost.lookup(1, b"k", b"a", LIMITS, 150), None);
        assert_eq!(lost.lookup(0, b"k", b"b", LIMITS, 150), None);
        assert_eq!(lost.lookup(0, b"j", b"a", LIMITS, 150), None);
    }

    #[test]
    fn a_later_loss_replaces_the_record() {
        let mut lost = LostHolds::new();
        lost.record(0, b"k", b"a", loss(Reason::Expired, 100, 9), LIMITS, 100);
        lost.record(0, b"k", b"a", loss(Reason::Deleted, 200, 12), LIMITS, 200);
        assert_eq!(lost.len(), 1);
        assert_eq!(
            lost.lookup(0, b"k", b"a", LIMITS, 200).map(|l| l.reason),
            Some(Reason::Deleted)
        );
    }

    #[test]
    fn the_oldest_goes_first_when_full() {
        let mut lost = LostHolds::new();
        for (i, owner) in [b"a", b"b", b"c", b"d"].into_iter().enumerate() {
            lost.record(
                0,
                b"k",
                owner,
                loss(Reason::Expired, 100, i as u64),
                LIMITS,
                100,
            );
        }
        assert_eq!(lost.len(), 3);
        assert_eq!(lost.lookup(0, b"k", b"a", LIMITS, 100), None);
        assert!(lost.lookup(0, b"k", b"d", LIMITS, 100).is_some());
        // A replaced record counts as new: "b" outlives "c" now.
        lost.record(0, b"k", b"b", loss(Reason::Deleted, 100, 7), LIMITS, 100);
        lost.record(0, b"k", b"e", loss(Reason::Deleted, 100, 8), LIMITS, 100);
        assert_eq!(lost.lookup(0, b"k", b"c", LIMITS, 100), None);
        assert!(lost.lookup(0, b"k", b"b", LIMITS, 100).is_some());
    }

    #[test]
    fn records_older_than_the_retention_are_gone() {
        let mut lost = LostHolds::new();
        lost.record(0, b"k", b"a", loss(Reason::Expired, 100, 1), LIMITS, 100);
        lost.record(0, b"k", b"b", loss(Reason::Expired, 600, 2), LIMITS, 600);
        assert!(lost.lookup(0, b"k", b"a", LIMITS, 1100).is_some());
        assert_eq!(lost.lookup(0, b"k", b"a", LIMITS, 1101), None);
        assert!(lost.lookup(0, b"k", b"b", LIMITS, 1101).is_some());
        assert_eq!(lost.len(), 1);
    }

    #[test]
    fn waits_long_keys_and_length_zero_record_nothing() {
        let mut lost = LostHolds::new();
        lost.record(0, b"k", b"a", loss(Reason::LongWait, 1, 1), LIMITS, 1);
        lost.record(0, b"k", b"a", loss(Reason::LongHold, 1, 1), LIMITS, 1);
        let long = vec![b'k'; MAX_NAME_BYTES + 1];
        lost.record(0, &long, b"a", loss(Reason::Expired, 1, 1), LIMITS, 1);
        let off = Limits {
            max_len: 0,
            retention_ms: 1000,
        };
        lost.record(0, b"k", b"a", loss(Reason::Expired, 1, 1), off, 1);
        assert!(lost.is_empty());
    }

    #[test]
    fn memory_follows_the_records() {
        let mut lost = LostHolds::new();
        assert_eq!(lost.memory(), 0);
        lost.record(0, b"key", b"owner", loss(Reason::Expired, 1, 1), LIMITS, 1);
        let one = lost.memory();
        assert!(one >= 2 * (3 + 5));
        lost.record(0, b"key", b"owner", loss(Reason::Deleted, 2, 1), LIMITS, 2);
        assert_eq!(lost.memory(), one);
        lost.expire(
            Limits {
                max_len: 0,
                retention_ms: 1000,
            },
            2,
        );
        assert_eq!(lost.memory(), 0);
        lost.record(0, b"key", b"owner", loss(Reason::Expired, 1, 1), LIMITS, 1);
        lost.reset();
        assert_eq!((lost.memory(), lost.len()), (0, 0));
    }
}
