//! The hottest locks: a bounded top-k of the keys with the most contention and waiting
//! recently (Metwally et al.'s space-saving), for `LOCK.TOP [count]`.
//!
//! Only the contended path feeds it (an acquire that found the key taken, a waiter's wait
//! ending), so an uncontended lock costs it nothing and never shows. A key's *weight* is its
//! waited milliseconds plus one per contended acquire; every `halflife_ms` all weights halve,
//! so the table follows what hurts now. When the table is full, a key not in it takes the
//! place of the lightest one and inherits its weight as `error` (space-saving: a key's true
//! weight lies between `weight - error` and `weight`; any key whose true weight exceeds the
//! total over `capacity` is in the table). The other counters count from the moment the key
//! entered the table. Each entry keeps a small histogram of its waits (one significant digit,
//! about 2 KB) for its p99.

use std::collections::HashMap;

use hdrhistogram::Histogram;

use crate::core::monitor::lock_log::{cut_name, MAX_NAME_BYTES};
use crate::core::Millis;

/// The longest wait tracked per key, in ms (31 days); longer ones count as this.
const HIGHEST_WAIT_MS: u64 = 31 * 24 * 3600 * 1000;

/// One hot key.
#[derive(Debug, Clone)]
pub struct HotKey {
    pub db: i32,
    /// The key (cut past `MAX_NAME_BYTES`, like the lock log's).
    pub key: Box<[u8]>,
    /// Decayed: waited ms + contended acquires.
    pub weight: u64,
    /// Of `weight`, what it may have inherited from the key it replaced.
    pub error: u64,
    /// Acquires that found it taken (answered nil, or queued).
    pub contended: u64,
    /// Waiters granted the lock.
    pub handoffs: u64,
    /// Waiters whose timeout passed.
    pub timeouts: u64,
    /// Total ms waited by the waits that ended (granted or timed out).
    pub waited_ms: u64,
    waits: Histogram<u32>,
}

impl HotKey {
    /// The 99th percentile of its ended waits, in ms (0 when none ended yet).
    pub fn wait_p99_ms(&self) -> u64 {
        if self.waits.is_empty() {
            return 0;
        }
        self.waits
            .highest_equivalent(self.waits.value_at_quantile(0.99))
            .min(self.waits.max())
    }

    fn new(db: i32, key: Box<[u8]>, inherited: u64) -> HotKey {
        let waits = match Histogram::new_with_bounds(1, HIGHEST_WAIT_MS, 1) {
            Ok(histogram) => histogram,
            Err(_) => unreachable!("constant histogram bounds are valid"),
        };
        HotKey {
            db,
            key,
            weight: inherited,
            error: inherited,
            contended: 0,
            handoffs: 0,
            timeouts: 0,
            waited_ms: 0,
            waits,
        }
    }

    fn memory(&self) -> usize {
        std::mem::size_of::<HotKey>()
            + self.key.len()
            + self.waits.distinct_values() * std::mem::size_of::<u32>()
    }
}

/// What happened on a contended key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contention {
    /// An acquire found the key taken.
    Contended,
    /// A waiter's wait ended after `waited_ms`: granted, or its timeout passed.
    WaitEnded { waited_ms: u64, granted: bool },
}

/// The table's bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// How many keys it keeps (0: off).
    pub capacity: usize,
    /// Every this many ms all weights halve (0: never).
    pub halflife_ms: u64,
}

#[derive(Debug, Default)]
pub struct HotKeys {
    entries: Vec<HotKey>,
    index: HashMap<(i32, Box<[u8]>), usize>,
    last_decay: Millis,
    bytes: usize,
}

impl HotKeys {
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts `what` for `key` in `db` at `now`.
    pub fn note(&mut self, db: i32, key: &[u8], what: Contention, limits: Limits, now: Millis) {
        self.decay(limits, now);
        self.shrink(limits.capacity);
        if limits.capacity == 0 {
            return;
        }
        let weight = match what {
            Contention::Contended => 1,
            Contention::WaitEnded { waited_ms, .. } => waited_ms,
        };
        let slot = self.slot_for(db, key, limits.capacity);
        let entry = &mut self.entries[slot];
        entry.weight = entry.weight.saturating_add(weight);
        match what {
            Contention::Contended => entry.contended += 1,
            Contention::WaitEnded { waited_ms, granted } => {
                if granted {
                    entry.handoffs += 1;
                } else {
                    entry.timeouts += 1;
                }
                entry.waited_ms = entry.waited_ms.saturating_add(waited_ms);
                entry
                    .waits
                    .saturating_record(waited_ms.min(HIGHEST_WAIT_MS));
            }
        }
    }

    /// The entry of `key`, made (taking the lightest one's place when full) if missing.
    fn slot_for(&mut self, db: i32, key: &[u8], capacity: usize) -> usize {
        let name = if key.len() > MAX_NAME_BYTES {
            cut_name(key)
        } else {
            key.into()
        };
        if let Some(&slot) = self.index.get(&(db, name.clone())) {
            return slot;
        }
        if self.entries.len() < capacity {
            let entry = HotKey::new(db, name.clone(), 0);
            self.bytes += entry.memory() + name.len();
            self.entries.push(entry);
            self.index.insert((db, name), self.entries.len() - 1);
            return self.entries.len() - 1;
        }
        let lightest = self
            .entries
            .iter()
            .enumerate()
            .min_by_key(|(_, entry)| entry.weight)
            .map_or(0, |(slot, _)| slot);
        let old = &self.entries[lightest];
        self.bytes -= old.memory() + old.key.len();
        self.index.remove(&(old.db, old.key.clone()));
        let entry = HotKey::new(db, name.clone(), old.weight);
        self.bytes += entry.memory() + name.len();
        self.entries[lightest] = entry;
        self.index.insert((db, name), lightest);
        lightest
    }

    /// Halves every weight once per half-life passed since the last decay.
    fn decay(&mut self, limits: Limits, now: Millis) {
        let Ok(halflife) = i64::try_from(limits.halflife_ms) else {
            return;
        };
        if halflife == 0 {
            self.last_decay = now;
            return;
        }
        let periods = now.saturating_sub(self.last_decay) / halflife;
        if periods <= 0 {
            return;
        }
        self.last_decay = self
            .last_decay
            .saturating_add(periods.saturating_mul(halflife));
        let shift = periods.min(63) as u32;
        for entry in &mut self.entries {
            entry.weight >>= shift;
            entry.error >>= shift;
        }
    }

    /// Drops the lightest entries beyond `capacity` (a lowered `lock.top-size`).
    fn shrink(&mut self, capacity: usize) {
        if self.entries.len() <= capacity {
            return;
        }
        self.entries
            .sort_by_key(|entry| std::cmp::Reverse(entry.weight));
        for old in self.entries.drain(capacity..) {
            self.bytes -= old.memory() + old.key.len();
        }
        self.reindex();
    }

    fn reindex(&mut self) {
        self.index = self
            .entries
            .iter()
            .enumerate()
            .map(|(slot, entry)| ((entry.db, entry.key.clone()), slot))
            .collect();
    }

    /// The `count` heaviest keys at `now`, heaviest first (keys of weight 0 left out).
    pub fn top(&mut self, count: usize, limits: Limits, now: Millis) -> Vec<&HotKey> {
        self.decay(limits, now);
        self.shrink(limits.capacity);
        let mut top: Vec<&HotKey> = self.entries.iter().filter(|e| e.weight > 0).collect();
        top.sort_by(|a, b| b.weight.cmp(&a.weight).then_with(|| a.key.cmp(&b.key)));
        top.truncate(count);
        top
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    #[cfg_attr(not(test), allow(dead_code))]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Forgets every key (`CONFIG RESETSTAT`).
    pub fn reset(&mut self) {
        self.entries = Vec::new();
        self.index = HashMap::new();
        self.bytes = 0;
    }

    /// Bytes the entries take: each one, its name (twice: entry and index), its histogram.
    pub fn memory(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        capacity: 3,
        halflife_ms: 0,
    };

    fn wait(waited_ms: u64, granted: bool) -> Contention {
        Contention::WaitEnded { waited_ms, granted }
    }

    fn names(top: &[&HotKey]) -> Vec<Vec<u8>> {
        top.iter().map(|entry| entry.key.to_vec()).collect()
    }

    #[test]
    fn counts_per_key_and_ranks_by_weight() {
        let mut hot = HotKeys::new();
        hot.note(0, b"a", Contention::Contended, LIMITS, 0);
        hot.note(0, b"b", Contention::Contended, LIMITS, 0);
        hot.note(0, b"b", wait(100, true), LIMITS, 0);
        hot.note(0, b"b", wait(300, false), LIMITS, 0);
        hot.note(1, b"a", wait(50, true), LIMITS, 0);
        let top = hot.top(10, LIMITS, 0);
        assert_eq!(names(&top), [b"b".to_vec(), b"a".to_vec(), b"a".to_vec()]);
        let b = top[0];
        assert_eq!(
            (b.weight, b.contended, b.handoffs, b.timeouts, b.waited_ms),
            (401, 1, 1, 1, 400)
        );
        assert_eq!((top[1].db, top[1].weight), (1, 50));
        assert!(
            b.wait_p99_ms() >= 300 && b.wait_p99_ms() <= 330,
            "{}",
            b.wait_p99_ms()
        );
        assert_eq!(hot.top(1, LIMITS, 0).len(), 1);
        assert_eq!(top_weights(&mut hot), [401, 50, 1]);
    }

    fn top_weights(hot: &mut HotKeys) -> Vec<u64> {
        hot.top(10, LIMITS, 0).iter().map(|e| e.weight).collect()
    }

    #[test]
    fn a_new_key_takes_the_lightest_place_and_inherits_its_weight() {
        let mut hot = HotKeys::new();
        hot.note(0, b"heavy", wait(1000, true), LIMITS, 0);
        hot.note(0, b"mid", wait(100, true), LIMITS, 0);
        hot.note(0, b"light", wait(10, true), LIMITS, 0);
        hot.note(0, b"new", Contention::Contended, LIMITS, 0);
        assert_eq!(hot.len(), 3);
        let top = hot.top(10, LIMITS, 0);
        assert_eq!(
            names(&top),
            [b"heavy".to_vec(), b"mid".to_vec(), b"new".to_vec()]
        );
        let new = top[2];
        assert_eq!((new.weight, new.error, new.contended), (11, 10, 1));
        assert_eq!(new.wait_p99_ms(), 0);
    }

    #[test]
    fn a_steadily_hot_key_stays_while_one_off_keys_come_and_go() {
        let mut hot = HotKeys::new();
        for round in 0..100u32 {
            hot.note(0, b"hot", Contention::Contended, LIMITS, 0);
            hot.note(
                0,
                round.to_string().as_bytes(),
                Contention::Contended,
                LIMITS,
                0,
            );
        }
        let top = hot.top(1, LIMITS, 0);
        assert_eq!(names(&top), [b"hot".to_vec()]);
        assert_eq!(top[0].contended, 100);
    }

    #[test]
    fn weights_halve_every_halflife() {
        let limits = Limits {
            capacity: 3,
            halflife_ms: 1000,
        };
        let mut hot = HotKeys::new();
        hot.note(0, b"old", wait(800, true), limits, 0);
        hot.note(0, b"new", wait(300, true), limits, 2500);
        let top = hot.top(10, limits, 2500);
        assert_eq!(names(&top), [b"new".to_vec(), b"old".to_vec()]);
        assert_eq!(top[1].weight, 200);
        assert_eq!(top[1].waited_ms, 800);
        // Long enough and everything fades out.
        assert!(hot.top(10, limits, 1_000_000).is_empty());
    }

    #[test]
    fn capacity_zero_and_a_lowered_capacity() {
        let mut hot = HotKeys::new();
        for (i, key) in [b"a", b"b", b"c"].into_iter().enumerate() {
            hot.note(0, key, wait(i as u64 + 1, true), LIMITS, 0);
        }
        let one = Limits {
            capacity: 1,
            halflife_ms: 0,
        };
        assert_eq!(names(&hot.top(10, one, 0)), [b"c".to_vec()]);
        let memory_of_one = hot.memory();
        assert!(memory_of_one > 0);
        hot.note(0, b"c", wait(5, true), one, 0);
        assert_eq!(hot.top(10, one, 0)[0].weight, 8);
        let off = Limits {
            capacity: 0,
            halflife_ms: 0,
        };
        hot.note(0, b"d", Contention::Contended, off, 0);
        assert!(hot.is_empty());
        assert_eq!(hot.memory(), 0);
    }

    #[test]
    fn long_keys_are_cut_and_reset_forgets() {
        let mut hot = HotKeys::new();
        let long = vec![b'k'; MAX_NAME_BYTES + 5];
        hot.note(0, &long, Contention::Contended, LIMITS, 0);
        hot.note(0, &long, Contention::Contended, LIMITS, 0);
        let top = hot.top(10, LIMITS, 0);
        assert_eq!(top.len(), 1);
        assert!(top[0].key.ends_with(b"... (5 more bytes)"));
        assert_eq!(top[0].contended, 2);
        hot.reset();
        assert!(hot.top(10, LIMITS, 0).is_empty());
        assert_eq!(hot.memory(), 0);
    }
}
