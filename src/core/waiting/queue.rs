//! The FIFO of clients waiting for one lock.
//!
//! Waiters are keyed by a sequence number that rises with arrival, so the first entry is the
//! longest-waiting client; leaving the queue early (timeout, disconnect) is O(log n).

use std::collections::BTreeMap;

#[derive(Debug)]
pub struct WaitQueue<W> {
    waiters: BTreeMap<u64, W>,
}

impl<W> Default for WaitQueue<W> {
    fn default() -> Self {
        Self {
            waiters: BTreeMap::new(),
        }
    }
}

impl<W> WaitQueue<W> {
    /// Queues `waiter` behind everyone with a smaller `seq`.
    pub fn push(&mut self, seq: u64, waiter: W) {
        self.waiters.insert(seq, waiter);
    }

    /// Takes the longest-waiting client.
    #[cfg(test)]
    pub fn pop_first(&mut self) -> Option<(u64, W)> {
        self.waiters.pop_first()
    }

    /// The longest-waiting client's seq and entry, left in place.
    pub fn first(&self) -> Option<(u64, &W)> {
        self.waiters
            .first_key_value()
            .map(|(&seq, waiter)| (seq, waiter))
    }

    pub fn get_mut(&mut self, seq: u64) -> Option<&mut W> {
        self.waiters.get_mut(&seq)
    }

    /// Removes a waiter that leaves early; `None` if it is no longer queued.
    pub fn remove(&mut self, seq: u64) -> Option<W> {
        self.waiters.remove(&seq)
    }

    pub fn len(&self) -> usize {
        self.waiters.len()
    }

    /// The waiters, longest-waiting first.
    pub fn iter(&self) -> impl Iterator<Item = &W> {
        self.waiters.values()
    }

    /// The waiters with their sequence numbers, longest-waiting first (as `iter`).
    pub fn numbered(&self) -> impl Iterator<Item = (u64, &W)> {
        self.waiters.iter().map(|(seq, waiter)| (*seq, waiter))
    }

    pub fn is_empty(&self) -> bool {
        self.waiters.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiters_leave_in_arrival_order() {
        let mut queue = WaitQueue::default();
        queue.push(1, "a");
        queue.push(2, "b");
        queue.push(3, "c");
        assert_eq!(queue.pop_first(), Some((1, "a")));
        assert_eq!(queue.pop_first(), Some((2, "b")));
        assert_eq!(queue.pop_first(), Some((3, "c")));
        assert_eq!(queue.pop_first(), None);
    }

    #[test]
    fn a_waiter_that_leaves_early_is_skipped_and_leaves_no_trace() {
        let mut queue = WaitQueue::default();
        queue.push(1, "a");
        queue.push(2, "b");
        queue.push(3, "c");
        assert_eq!(queue.remove(2), Some("b"));
        assert_eq!(queue.remove(2), None);
        assert_eq!(queue.len(), 2);
        assert_eq!(queue.pop_first(), Some((1, "a")));
        assert_eq!(queue.pop_first(), Some((3, "c")));
        assert!(queue.is_empty());
    }

    #[test]
    fn first_peeks_without_removing() {
        let mut queue = WaitQueue::default();
        assert_eq!(queue.first(), None);
        queue.push(4, "a");
        queue.push(2, "b");
        assert_eq!(queue.first(), Some((2, &"b")));
        assert_eq!(queue.len(), 2);
        if let Some(waiter) = queue.get_mut(4) {
            *waiter = "c";
        }
        assert_eq!(queue.remove(4), Some("c"));
    }
}
