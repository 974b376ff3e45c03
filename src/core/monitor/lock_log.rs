//! The lock log: a bounded, in-memory log of noteworthy lock events on this node, in the
//! manner of SLOWLOG (`LOCK.LOG GET [count] | LEN | RESET`).
//!
//! Each entry has a unique id (rising, never reused until the module reloads: `RESET` keeps
//! counting), the unix time in ms, the key, owner, token and kind of the hold, why it was
//! logged, and a duration whose meaning the reason gives (how long the hold had been held, or
//! the waiter had waited). The log keeps the newest `max_len` entries: pushing one more drops
//! the oldest, and `max_len` 0 logs nothing. Keys and owners longer than [`MAX_NAME_BYTES`] are
//! cut, as SLOWLOG cuts long arguments, so the log's memory is at most `max_len` times
//! [`MAX_ENTRY_BYTES`].

use std::collections::VecDeque;

use crate::core::Millis;

/// The longest key or owner an entry keeps whole; longer ones are cut to this many bytes and
/// followed by `... (N more bytes)`.
pub const MAX_NAME_BYTES: usize = 1024;

/// The most one entry may take in memory: its fixed part and two cut names with their notes.
#[cfg_attr(not(test), allow(dead_code))]
pub const MAX_ENTRY_BYTES: usize = std::mem::size_of::<Entry>() + 2 * (MAX_NAME_BYTES + 32);

/// Why an event was logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The hold's ttl ran out while held: its owner never released it (a crashed or paused
    /// holder, or a ttl too short for the work).
    Expired,
    /// A held lock was deleted by an admin command (`DEL`, `UNLINK`).
    Deleted,
    /// A held lock was overwritten by another value (`SET`, `RESTORE ... REPLACE`, `RENAME`
    /// onto it, ...).
    Overwritten,
    /// A held lock was removed by `FLUSHDB` / `FLUSHALL`.
    Flushed,
    /// The hold was dropped by the first full sync after this node became a replica (a split
    /// brain: its holder may still believe it holds it).
    DroppedOnResync,
    /// A session hold ended because its connection closed.
    SessionClosed,
    /// An acquire refused because granting or queueing it would close a cycle of waiters
    /// (the deadlock detector calls `monitor::deadlock_refused`).
    #[allow(dead_code)]
    DeadlockRefused,
    /// A waiter's wait (enqueue to grant, or to its timeout) passed `lock.log-wait-threshold-ms`.
    LongWait,
    /// A hold (grant to release or expiry) passed `lock.log-hold-threshold-ms`.
    LongHold,
}

impl Reason {
    /// Every reason, in the order `LOCK.HELP` and the docs list them.
    #[cfg_attr(not(test), allow(dead_code))]
    pub const ALL: [Reason; 9] = [
        Reason::Expired,
        Reason::Deleted,
        Reason::Overwritten,
        Reason::Flushed,
        Reason::DroppedOnResync,
        Reason::SessionClosed,
        Reason::DeadlockRefused,
        Reason::LongWait,
        Reason::LongHold,
    ];

    /// The reason as replies name it.
    pub fn name(self) -> &'static str {
        match self {
            Reason::Expired => "expired",
            Reason::Deleted => "deleted",
            Reason::Overwritten => "overwritten",
            Reason::Flushed => "flushed",
            Reason::DroppedOnResync => "dropped-on-resync",
            Reason::SessionClosed => "session-closed",
            Reason::DeadlockRefused => "deadlock-refused",
            Reason::LongWait => "long-wait",
            Reason::LongHold => "long-hold",
        }
    }

    /// Whether the holder lost its hold by this event (the others describe a wait or a hold
    /// that ended normally).
    pub fn loses_the_hold(self) -> bool {
        !matches!(
            self,
            Reason::DeadlockRefused | Reason::LongWait | Reason::LongHold
        )
    }
}

/// The kind of a hold, as `INFO lock`, `LOCK.LOG` and `LOCK.SCAN ... TYPE` name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum HoldKind {
    #[default]
    Exclusive,
    Shared,
    /// A semaphore permit (`LIMIT n`).
    Limit,
}

impl HoldKind {
    pub const ALL: [HoldKind; 3] = [HoldKind::Exclusive, HoldKind::Shared, HoldKind::Limit];

    pub fn name(self) -> &'static str {
        match self {
            HoldKind::Exclusive => "exclusive",
            HoldKind::Shared => "shared",
            HoldKind::Limit => "limit",
        }
    }

    /// The kind named (ASCII case-insensitive), as `LOCK.SCAN ... TYPE` takes it.
    pub fn parse(name: &[u8]) -> Option<HoldKind> {
        HoldKind::ALL
            .into_iter()
            .find(|kind| kind.name().as_bytes().eq_ignore_ascii_case(name))
    }

    /// The kind of a request.
    pub fn of_want(want: crate::core::state::holds::Want) -> HoldKind {
        use crate::core::state::holds::Want;
        match want {
            Want::Exclusive => HoldKind::Exclusive,
            Want::Shared => HoldKind::Shared,
            Want::Limit(_) => HoldKind::Limit,
        }
    }

    /// The kind of a holder of a key of kind `key_kind`.
    pub fn of_holder(key_kind: crate::core::state::holds::Kind, exclusive: bool) -> HoldKind {
        match key_kind {
            crate::core::state::holds::Kind::Semaphore(_) => HoldKind::Limit,
            crate::core::state::holds::Kind::Lock if exclusive => HoldKind::Exclusive,
            crate::core::state::holds::Kind::Lock => HoldKind::Shared,
        }
    }
}

/// What happened, as the glue reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event<'a> {
    pub at: Millis,
    pub db: i32,
    pub key: &'a [u8],
    pub owner: &'a [u8],
    /// The hold's fencing token (0 for a wait that never got one).
    pub token: u64,
    pub kind: HoldKind,
    pub session: bool,
    pub reason: Reason,
    /// Held for (`Expired`, `Deleted`, `Overwritten`, `Flushed`, `DroppedOnResync`,
    /// `SessionClosed`, `LongHold`) or waited for (`LongWait`, `DeadlockRefused`), in ms.
    pub duration_ms: u64,
    /// For `LongWait`: whether the wait ended in a grant (true) or a timeout (false).
    pub granted: bool,
}

/// One logged event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub id: u64,
    pub at: Millis,
    pub db: i32,
    /// The key, cut to `MAX_NAME_BYTES` with a note of what was left out.
    pub key: Box<[u8]>,
    pub owner: Box<[u8]>,
    pub token: u64,
    pub kind: HoldKind,
    pub session: bool,
    pub reason: Reason,
    pub duration_ms: u64,
    pub granted: bool,
}

impl Entry {
    fn bytes(&self) -> usize {
        std::mem::size_of::<Entry>() + self.key.len() + self.owner.len()
    }
}

/// The log itself. Not thread-safe: the glue keeps it behind a lock of its own.
#[derive(Debug, Default)]
pub struct LockLog {
    entries: VecDeque<Entry>,
    next_id: u64,
    bytes: usize,
}

/// `name`, or its first `MAX_NAME_BYTES` bytes and `... (N more bytes)`.
pub fn cut_name(name: &[u8]) -> Box<[u8]> {
    if name.len() <= MAX_NAME_BYTES {
        return name.into();
    }
    let mut cut = name[..MAX_NAME_BYTES].to_vec();
    cut.extend_from_slice(format!("... ({} more bytes)", name.len() - MAX_NAME_BYTES).as_bytes());
    cut.into()
}

impl LockLog {
    pub const fn new() -> Self {
        LockLog {
            entries: VecDeque::new(),
            next_id: 0,
            bytes: 0,
        }
    }

    /// Logs `event`, keeping the newest `max_len` entries (0: logs nothing, and empties the
    /// log). Returns the entry's id, or `None` when nothing was logged.
    pub fn push(&mut self, event: &Event, max_len: usize) -> Option<u64> {
        self.trim(max_len);
        if max_len == 0 {
            return None;
        }
        if self.entries.len() == max_len {
            self.drop_oldest();
        }
        let id = self.next_id;
        self.next_id += 1;
        let entry = Entry {
            id,
            at: event.at,
            db: event.db,
            key: cut_name(event.key),
            owner: cut_name(event.owner),
            token: event.token,
            kind: event.kind,
            session: event.session,
            reason: event.reason,
            duration_ms: event.duration_ms,
            granted: event.granted,
        };
        self.bytes += entry.bytes();
        self.entries.push_back(entry);
        Some(id)
    }

    /// Drops the oldest entries beyond `max_len` (a lowered `lock.log-max-len`).
    pub fn trim(&mut self, max_len: usize) {
        if self.entries.len() <= max_len {
            return;
        }
        while self.entries.len() > max_len {
            self.drop_oldest();
        }
        self.entries.shrink_to(max_len);
    }

    fn drop_oldest(&mut self) {
        if let Some(old) = self.entries.pop_front() {
            self.bytes -= old.bytes();
        }
    }

    /// The newest `count` entries, newest first (as SLOWLOG GET answers).
    pub fn newest(&self, count: usize) -> impl Iterator<Item = &Entry> {
        self.entries.iter().rev().take(count)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    #[cfg_attr(not(test), allow(dead_code))]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Empties the log; ids go on rising.
    pub fn reset(&mut self) {
        self.entries.clear();
        self.entries.shrink_to_fit();
        self.bytes = 0;
    }

    /// Bytes the entries take (their names included, the queue's spare room not).
    pub fn memory(&self) -> usize {
        self.bytes + self.entries.capacity() * std::mem::size_of::<Entry>()
            - self.entries.len() * std::mem::size_of::<Entry>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(key: &[u8], reason: Reason, at: Millis) -> Event<'_> {
        Event {
            at,
            db: 0,
            key,
            owner: b"worker-1",
            token: 7,
            kind: HoldKind::Exclusive,
            session: false,
            reason,
            duration_ms: 30_000,
            granted: false,
        }
    }

    #[test]
    fn keeps_the_newest_entries_newest_first_with_rising_ids() {
        let mut log = LockLog::new();
        for (i, key) in [b"a", b"b", b"c", b"d"].into_iter().enumerate() {
            assert_eq!(
                log.push(&event(key, Reason::Expired, i as Millis), 3),
                Some(i as u64)
            );
        }
        assert_eq!(log.len(), 3);
        let keys: Vec<&[u8]> = log.newest(10).map(|entry| &*entry.key).collect();
        assert_eq!(keys, [b"d", b"c", b"b"]);
        let ids: Vec<u64> = log.newest(2).map(|entry| entry.id).collect();
        assert_eq!(ids, [3, 2]);
    }

    #[test]
    fn length_zero_logs_nothing_and_empties_the_log() {
        let mut log = LockLog::new();
        log.push(&event(b"a", Reason::Deleted, 1), 5);
        assert_eq!(log.push(&event(b"b", Reason::Deleted, 2), 0), None);
        assert!(log.is_empty());
        assert_eq!(log.memory(), 0);
    }

    #[test]
    fn a_lowered_length_drops_the_oldest() {
        let mut log = LockLog::new();
        for at in 0..5 {
            log.push(&event(b"k", Reason::LongHold, at), 5);
        }
        log.trim(2);
        let times: Vec<Millis> = log.newest(5).map(|entry| entry.at).collect();
        assert_eq!(times, [4, 3]);
    }

    #[test]
    fn reset_empties_but_ids_go_on() {
        let mut log = LockLog::new();
        log.push(&event(b"a", Reason::Flushed, 1), 5);
        log.push(&event(b"b", Reason::Flushed, 2), 5);
        log.reset();
        assert_eq!(log.len(), 0);
        assert_eq!(log.memory(), 0);
        assert_eq!(log.push(&event(b"c", Reason::Flushed, 3), 5), Some(2));
    }

    #[test]
    fn long_names_are_cut_with_a_note_and_memory_stays_bounded() {
        let mut log = LockLog::new();
        let long = vec![b'x'; MAX_NAME_BYTES + 100];
        let mut long_event = event(&long, Reason::Overwritten, 1);
        long_event.owner = &long;
        for _ in 0..10 {
            log.push(&long_event, 4);
        }
        let entry = log.newest(1).next().expect("an entry");
        assert!(entry.key.starts_with(&long[..MAX_NAME_BYTES]));
        assert!(entry.key.ends_with(b"... (100 more bytes)"));
        assert_eq!(entry.owner, entry.key);
        assert!(log.memory() <= 4 * MAX_ENTRY_BYTES + 4 * std::mem::size_of::<Entry>());
        let short = cut_name(b"short");
        assert_eq!(&*short, b"short");
    }

    #[test]
    fn memory_counts_names() {
        let mut log = LockLog::new();
        log.push(&event(b"abc", Reason::Expired, 1), 1);
        assert!(log.memory() >= std::mem::size_of::<Entry>() + 3 + 8);
    }

    #[test]
    fn reason_and_kind_names() {
        let names: Vec<&str> = Reason::ALL.iter().map(|reason| reason.name()).collect();
        assert_eq!(
            names,
            [
                "expired",
                "deleted",
                "overwritten",
                "flushed",
                "dropped-on-resync",
                "session-closed",
                "deadlock-refused",
                "long-wait",
                "long-hold"
            ]
        );
        assert!(Reason::Expired.loses_the_hold());
        assert!(Reason::SessionClosed.loses_the_hold());
        assert!(!Reason::LongHold.loses_the_hold());
        assert!(!Reason::LongWait.loses_the_hold());
        assert_eq!(HoldKind::parse(b"SHARED"), Some(HoldKind::Shared));
        assert_eq!(HoldKind::parse(b"limit"), Some(HoldKind::Limit));
        assert_eq!(HoldKind::parse(b"session"), None);
        assert_eq!(
            HoldKind::of_holder(crate::core::state::holds::Kind::Semaphore(3), false),
            HoldKind::Limit
        );
        assert_eq!(
            HoldKind::of_holder(crate::core::state::holds::Kind::Lock, true),
            HoldKind::Exclusive
        );
        assert_eq!(
            HoldKind::of_want(crate::core::state::holds::Want::Shared),
            HoldKind::Shared
        );
    }
}
