//! Several-key waiters (LOCK.MACQUIRE ... WAIT): one blocked client queued on every one of its
//! keys at once, granted all its keys in one step (core::several::Board), never some.
//!
//! Each waiter takes its number from the single-key waiters' counter (waiters::next_seq), so
//! it stands in the same order against every other waiter on every key it shares. Its keys'
//! queues in waiters.rs count it (`several`), which keeps their check timers and makes a
//! newcomer on any of its keys wait behind it. When such a key is settled (release, expiry,
//! DEL, a waiter leaving), the plan runs over every key that several-key waiters reach from it:
//! their holds and both kinds of waiters, in arrival order. All the keys it changes are stored
//! and replicated inside the one command or timer callback that settles, which the server
//! propagates as one MULTI/EXEC: a replica or an AOF replay sees every key taken or none.
//!
//! A woken several-key waiter's reply (one token per key) is kept here by client id until its
//! reply callback (several_blocking.rs) runs; a client gone before it, its keys are taken back
//! like a single grant. This file arms no timer and blocks no client: what a settle leaves to
//! arm (checks, keys to settle again) goes back to handoff.rs, which owns those timers.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;

use redis_module::raw::{RedisModuleBlockedClient, RedisModuleString};

use crate::core::monitor::lock_log::HoldKind;
use crate::core::several::{Board, BoardWaiter, Outcome};
use crate::core::state::holds::{Admission, Ask, Holds, Want};
use crate::core::Millis;
use crate::glue::effects::keys::{LockKey, OwnedString};
use crate::glue::effects::monitor;
use crate::glue::effects::replicate;
use crate::glue::effects::signals::Event;
use crate::glue::effects::stats;
use crate::glue::effects::token_counter::with_tokens;
use crate::glue::server::blocked_client::BlockedClient;
use crate::glue::server::context::Ctx;
use crate::glue::server::timers::{self, TimerId};
use crate::glue::waiting::handling::{Freed, Handling};
use crate::glue::waiting::waiters::{self, KeyRef};
use crate::glue::waiting::{session_index, waiters::QueuedOne};

/// A client blocked in LOCK.MACQUIRE ... WAIT.
pub struct SeveralWaiter {
    pub owner: Box<[u8]>,
    pub ttl: u64,
    pub want: Want,
    pub session: bool,
    /// Its keys, in its call's order, all in one database.
    pub keys: Vec<KeyRef>,
    pub client: BlockedClient,
    /// Its WAIT timeout's timer (several_blocking.rs arms it), until it fires.
    pub timeout_timer: Option<TimerId>,
    /// When it joined the queues, and its WAIT timeout in ms (0: none), for LOCK.WAITERS, the
    /// wait percentiles and the lock log.
    pub queued_at: std::time::Instant,
    pub timeout_ms: u64,
}

impl SeveralWaiter {
    /// How long it has waited, in µs.
    pub fn waited_us(&self) -> u64 {
        u64::try_from(self.queued_at.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// Its wait ended on every one of its keys (`tokens` in key order when granted, else
    /// timed out): the wait percentiles, the hot keys and the lock log count it per key.
    pub fn wait_ended(&self, tokens: Option<&[u64]>, now: Millis) {
        let kind = HoldKind::of_want(self.want);
        let waited_us = self.waited_us();
        for (i, key) in self.keys.iter().enumerate() {
            let token = tokens.and_then(|tokens| tokens.get(i).copied());
            monitor::wait_ended(key.db, &key.name, &self.owner, kind, waited_us, token, now);
        }
    }

    fn session_client(&self) -> Option<u64> {
        self.session.then(|| self.client.client_id())
    }
}

#[derive(Default)]
struct Registry {
    waiters: BTreeMap<u64, SeveralWaiter>,
    on_key: HashMap<KeyRef, BTreeSet<u64>>,
    /// blocked-client handle -> seq, for disconnects and CLIENT UNBLOCK.
    of_client: HashMap<usize, u64>,
    /// Woken with a grant, reply not yet out: client id -> (key, token) per key, key order.
    granted: HashMap<u64, Vec<(KeyRef, u64)>>,
}

thread_local! {
    static REGISTRY: RefCell<Registry> = RefCell::new(Registry::default());
}

/// Whether any several-key waiter exists (read without the thread_local).
static ANY: AtomicBool = AtomicBool::new(false);

fn with_registry<T>(f: impl FnOnce(&mut Registry) -> T) -> T {
    REGISTRY.with(|registry| {
        let mut registry = registry.borrow_mut();
        let result = f(&mut registry);
        ANY.store(!registry.waiters.is_empty(), Relaxed);
        result
    })
}

/// How many several-key waiters there are (0 while the registry is busy: a crash report).
pub fn waiting() -> usize {
    if !ANY.load(Relaxed) {
        return 0;
    }
    REGISTRY.with(|registry| registry.try_borrow().map_or(0, |r| r.waiters.len()))
}

/// The several-key waits, (owner, key, seq, what it asks) per key, for the wait-for graph.
pub fn all_waits() -> Vec<(Box<[u8]>, KeyRef, u64, Want)> {
    if !ANY.load(Relaxed) {
        return Vec::new();
    }
    with_registry(|registry| {
        registry
            .waiters
            .iter()
            .flat_map(|(&seq, w)| {
                w.keys
                    .iter()
                    .map(move |k| (w.owner.clone(), k.clone(), seq, w.want))
            })
            .collect()
    })
}

/// Whether `owner` has a several-key wait queued on this node.
pub fn owner_waits(owner: &[u8]) -> bool {
    ANY.load(Relaxed)
        && with_registry(|registry| registry.waiters.values().any(|w| *w.owner == *owner))
}

/// Calls `each` with every several-key waiter of `key` and its number, in arrival order.
pub fn for_each_on(key: &KeyRef, mut each: impl FnMut(u64, &SeveralWaiter)) {
    if !ANY.load(Relaxed) {
        return;
    }
    with_registry(|registry| {
        for seq in registry.on_key.get(key).into_iter().flatten() {
            if let Some(waiter) = registry.waiters.get(seq) {
                each(*seq, waiter);
            }
        }
    });
}

/// The several-key waiters on `key`: (seq, owner, want), in arrival order.
pub fn waiting_on(key: &KeyRef) -> Vec<(u64, Box<[u8]>, Want)> {
    if !ANY.load(Relaxed) {
        return Vec::new();
    }
    with_registry(|registry| {
        let Some(seqs) = registry.on_key.get(key) else {
            return Vec::new();
        };
        seqs.iter()
            .filter_map(|seq| {
                let w = registry.waiters.get(seq)?;
                Some((*seq, w.owner.clone(), w.want))
            })
            .collect()
    })
}

/// Queues `waiter` as number `seq` (waiters::next_seq) on every one of its keys.
pub fn enlist(seq: u64, waiter: SeveralWaiter) {
    for key in &waiter.keys {
        waiters::count_several(key, true);
    }
    with_registry(|registry| {
        for key in &waiter.keys {
            registry.on_key.entry(key.clone()).or_default().insert(seq);
        }
        registry.of_client.insert(waiter.client.id(), seq);
        registry.waiters.insert(seq, waiter);
    });
}

/// Waiter `seq`'s timeout timer has fired: it must not be stopped again.
pub fn timeout_fired(seq: u64) {
    with_registry(|registry| {
        if let Some(waiter) = registry.waiters.get_mut(&seq) {
            waiter.timeout_timer = None;
        }
    });
}

/// The queued waiter behind blocked-client `handle`, if any.
pub fn seq_of(handle: *mut RedisModuleBlockedClient) -> Option<u64> {
    with_registry(|registry| registry.of_client.get(&(handle as usize)).copied())
}

/// The grants a woken waiter (client id) was given and not yet told: (key, token) per key.
pub fn take_grants(client_id: u64) -> Option<Vec<(KeyRef, u64)>> {
    with_registry(|registry| registry.granted.remove(&client_id))
}

/// Wakes every several-key waiter of `key` with nil (its lock is gone for good here: another
/// type took it, MIGRATE moved it, its slot left the node). Their other keys, which the caller
/// settles again so nobody stays queued behind them.
pub fn wake_all_with_nil(ctx: Ctx, db: i32, name: &[u8]) -> Vec<KeyRef> {
    let key = KeyRef {
        db,
        name: name.into(),
    };
    let mut others = Vec::new();
    for (seq, _, _) in waiting_on(&key) {
        if let Some(waiter) = remove(ctx, seq) {
            others.extend(waiter.keys.iter().filter(|k| **k != key).cloned());
            waiter.client.unblock_empty();
        }
    }
    others
}

/// Removes waiter `seq` from every queue; the waiter, with its timeout timer stopped.
pub fn remove(ctx: Ctx, seq: u64) -> Option<SeveralWaiter> {
    let mut waiter = with_registry(|registry| {
        let waiter = registry.waiters.remove(&seq)?;
        registry.of_client.remove(&waiter.client.id());
        for key in &waiter.keys {
            if let Some(seqs) = registry.on_key.get_mut(key) {
                seqs.remove(&seq);
                if seqs.is_empty() {
                    registry.on_key.remove(key);
                }
            }
        }
        Some(waiter)
    })?;
    for key in &waiter.keys {
        if let Some(timer) = waiters::count_several(key, false) {
            timers::stop(ctx, timer);
        }
    }
    if let Some(timer) = waiter.timeout_timer.take() {
        timers::stop(ctx, timer);
    }
    Some(waiter)
}

/// One key of a settle: its holds as read, the key (opened here unless it is the caller's).
struct Loaded {
    key: KeyRef,
    name: Option<OwnedString>,
    lock_key: Option<LockKey>,
    before: Holds,
    /// Session holds found ended on reading it: it must be stored.
    changed: bool,
}

/// What a several-key settle leaves its caller to arm (handoff.rs owns both timers).
pub struct Settled {
    /// Whether the settled key was left free.
    pub free: bool,
    /// Keys with waiters left, each to be looked at again at (unix ms).
    pub checks: Vec<(KeyRef, Millis)>,
    /// Keys whose several-key waiters were woken with nil (a key of theirs is no lock any
    /// more): to settle again, so nobody stays queued behind them.
    pub resettle: Vec<KeyRef>,
}

/// `handoff::settle` for a key that several-key waiters wait for: the plan over every key they
/// reach from it (core::several::Board), applied in one order: every changed key stored and
/// replicated, then the waiters woken, events published, checks armed. `holds` (the caller's
/// key, maybe changed and not stored) ends as stored. Whether that key was left free.
#[allow(clippy::too_many_arguments)]
pub fn settle(
    ctx: Ctx,
    key: &mut LockKey,
    name: *mut RedisModuleString,
    db: i32,
    key_bytes: &[u8],
    holds: &mut Holds,
    now: Millis,
    freed: Freed,
    changed: bool,
) -> Settled {
    let _handling = Handling::begin();
    let first = KeyRef {
        db,
        name: key_bytes.into(),
    };
    let reached = keys_reached(&first);
    let mut loaded = Vec::with_capacity(reached.len());
    let mut unusable = HashSet::new();
    for key_ref in reached {
        if key_ref == first {
            loaded.push(Loaded {
                key: key_ref,
                name: None,
                lock_key: None,
                before: holds.clone(),
                changed,
            });
            continue;
        }
        ctx.select_db(key_ref.db);
        let key_name = OwnedString::new(ctx, &key_ref.name);
        let mut lock_key = LockKey::open_writable(ctx, key_name.as_ptr());
        match lock_key.holds() {
            Ok(found) => {
                let ended = lock_key.sessions_closed() > 0;
                loaded.push(Loaded {
                    key: key_ref,
                    name: Some(key_name),
                    lock_key: Some(lock_key),
                    before: found.unwrap_or_default(),
                    changed: ended,
                });
            }
            Err(_) => {
                unusable.insert(key_ref);
            }
        }
    }
    ctx.select_db(db);
    // Several-key waiters on a key that is not a lock any more get nil.
    let mut resettle = Vec::new();
    for bad in &unusable {
        resettle.extend(wake_all_with_nil(ctx, bad.db, &bad.name));
    }
    let index: HashMap<KeyRef, usize> = loaded
        .iter()
        .enumerate()
        .map(|(i, l)| (l.key.clone(), i))
        .collect();
    let queued = Queued::gather(&loaded, &index);
    let mut board = Board::new(loaded.iter().map(|l| l.before.clone()).collect());
    for entry in &queued.entries {
        board.push(entry.board_waiter());
    }
    let leaving = with_tokens(|tokens| board.settle(now, tokens));
    let Board { holds: after, .. } = board;
    // Store and replicate every changed key, in one callback: one MULTI/EXEC downstream.
    for (i, l) in loaded.iter_mut().enumerate() {
        if !l.changed && l.before == after[i] {
            continue;
        }
        match (&mut l.lock_key, &l.name) {
            (Some(lock_key), Some(key_name)) => {
                lock_key.put(&after[i]);
                replicate::holds_state(ctx, key_name.as_ptr(), &after[i]);
            }
            _ => {
                key.put(&after[i]);
                replicate::holds_state(ctx, name, &after[i]);
            }
        }
    }
    let counter = freed.counter();
    let notify =
        |loaded: &[Loaded], i: usize, key: &LockKey, event: Event| match &loaded[i].lock_key {
            Some(lock_key) => lock_key.notify(event),
            None => key.notify(event),
        };
    for (w, outcome) in leaving {
        let entry = &queued.entries[w];
        match (entry.kind, outcome) {
            (Kind::One(seq), Outcome::One(admission)) => {
                let Some(waiter) = waiters::take(ctx, seq) else {
                    continue;
                };
                let k = entry.keys[0];
                let at = loaded[k].key.clone();
                match admission {
                    Admission::Granted { token } | Admission::Reentered { token, .. } => {
                        if matches!(admission, Admission::Granted { .. }) {
                            stats::count_kind(waiter.want);
                        }
                        notify(&loaded, k, key, Event::Handoff);
                        notify(&loaded, k, key, Event::Expire);
                        stats::count(counter);
                        if let Some(client) = waiter.session_client() {
                            session_index::register(client, at.clone());
                        }
                        waiter.client.unblock_granted(token, at);
                    }
                    Admission::Repeated { token } => waiter.client.unblock_granted(token, at),
                    Admission::Refused | Admission::Wait => waiter.client.unblock_empty(),
                }
            }
            (Kind::Several(seq), Outcome::All(admissions)) => {
                let Some(waiter) = remove(ctx, seq) else {
                    continue;
                };
                let mut grants = Vec::with_capacity(admissions.len());
                for (&k, admission) in entry.keys.iter().zip(admissions) {
                    let token = match admission {
                        Admission::Granted { token }
                        | Admission::Reentered { token, .. }
                        | Admission::Repeated { token } => token,
                        Admission::Refused | Admission::Wait => 0,
                    };
                    notify(&loaded, k, key, Event::Handoff);
                    notify(&loaded, k, key, Event::Expire);
                    if let Some(client) = waiter.session_client() {
                        session_index::register(client, loaded[k].key.clone());
                    }
                    grants.push((loaded[k].key.clone(), token));
                }
                let tokens: Vec<u64> = grants.iter().map(|(_, token)| *token).collect();
                waiter.wait_ended(Some(&tokens), now);
                stats::count(counter);
                stats::count_kind(waiter.want);
                with_registry(|registry| {
                    registry.granted.insert(waiter.client.client_id(), grants)
                });
                waiter.client.unblock_empty();
            }
            (Kind::Several(seq), _) => {
                if let Some(waiter) = remove(ctx, seq) {
                    waiter.client.unblock_empty();
                }
            }
            (Kind::One(seq), _) => {
                if let Some(waiter) = waiters::take(ctx, seq) {
                    waiter.client.unblock_empty();
                }
            }
        }
    }
    let checks = loaded
        .iter()
        .zip(&after)
        .filter(|(l, _)| waiters::queued(l.key.db, &l.key.name) > 0)
        .map(|(l, holds)| (l.key.clone(), holds.next_expiry().unwrap_or(i64::MAX)))
        .collect();
    let free = after[0].is_free();
    *holds = after.into_iter().next().unwrap_or_default();
    Settled {
        free,
        checks,
        resettle,
    }
}

/// `first` and every key several-key waiters reach from it (through their other keys).
fn keys_reached(first: &KeyRef) -> Vec<KeyRef> {
    with_registry(|registry| {
        let mut reached = vec![first.clone()];
        let mut seen: HashSet<KeyRef> = reached.iter().cloned().collect();
        let mut at = 0;
        while at < reached.len() {
            let seqs: Vec<u64> = registry
                .on_key
                .get(&reached[at])
                .map(|s| s.iter().copied().collect())
                .unwrap_or_default();
            for seq in seqs {
                let Some(waiter) = registry.waiters.get(&seq) else {
                    continue;
                };
                for key in &waiter.keys {
                    if seen.insert(key.clone()) {
                        reached.push(key.clone());
                    }
                }
            }
            at += 1;
        }
        reached
    })
}

#[derive(Clone, Copy)]
enum Kind {
    One(u64),
    Several(u64),
}

/// A waiter on the board, owned (the board borrows its owner).
struct Entry {
    seq: u64,
    kind: Kind,
    owner: Box<[u8]>,
    want: Want,
    ttl: u64,
    session: Option<u64>,
    held: Option<u32>,
    keys: Vec<usize>,
}

impl Entry {
    fn board_waiter(&self) -> BoardWaiter<'_> {
        BoardWaiter {
            ask: Ask {
                owner: &self.owner,
                want: self.want,
                ttl: self.ttl,
                session: self.session,
            },
            held: self.held,
            keys: self.keys.clone(),
            several: matches!(self.kind, Kind::Several(_)),
        }
    }
}

struct Queued {
    entries: Vec<Entry>,
}

impl Queued {
    /// Every waiter of the loaded keys, in arrival order. A several-key waiter one of whose
    /// keys could not be loaded was woken already and is left out.
    fn gather(loaded: &[Loaded], index: &HashMap<KeyRef, usize>) -> Queued {
        let mut entries = Vec::new();
        for (i, l) in loaded.iter().enumerate() {
            for one in waiters::queued_ones(l.key.db, &l.key.name) {
                let QueuedOne {
                    seq,
                    owner,
                    want,
                    ttl,
                    session,
                    held,
                } = one;
                entries.push(Entry {
                    seq,
                    kind: Kind::One(seq),
                    owner,
                    want,
                    ttl,
                    session,
                    held,
                    keys: vec![i],
                });
            }
        }
        with_registry(|registry| {
            let mut seen = HashSet::new();
            for l in loaded {
                for &seq in registry.on_key.get(&l.key).into_iter().flatten() {
                    let Some(w) = registry.waiters.get(&seq) else {
                        continue;
                    };
                    if !seen.insert(seq) {
                        continue;
                    }
                    let keys: Option<Vec<usize>> =
                        w.keys.iter().map(|k| index.get(k).copied()).collect();
                    let Some(keys) = keys else {
                        continue;
                    };
                    entries.push(Entry {
                        seq,
                        kind: Kind::Several(seq),
                        owner: w.owner.clone(),
                        want: w.want,
                        ttl: w.ttl,
                        session: w.session_client(),
                        held: None,
                        keys,
                    });
                }
            }
        });
        entries.sort_by_key(|entry| entry.seq);
        Queued { entries }
    }
}
