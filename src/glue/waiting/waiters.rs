//! Who waits for which lock: one FIFO per key, each with one check timer, and the indexes that
//! let a timeout or a disconnect find its waiter.
//!
//! State lives on the main thread (every caller runs there). No server call is made while the
//! registry is borrowed: callers get owned data back and act on it afterwards, so a callback
//! the server fires meanwhile can borrow it again.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;

use redis_module::raw::RedisModuleCtx;

use crate::core::state::holds::{Ask, Want};
use crate::core::stored::memory::{queue_bytes, QueueLayout};
use crate::core::waiting::handoff::Queued;
use crate::core::waiting::queue::WaitQueue;
use crate::core::Millis;
use crate::glue::server::blocked_client::BlockedClient;
use crate::glue::server::context::Ctx;
use crate::glue::server::entry::run_callback;
use crate::glue::server::timers::{self, TimerId};

/// A client blocked in `LOCK.ACQUIRE ... WAIT`, with what it asked for.
pub struct Waiter {
    pub owner: Box<[u8]>,
    pub ttl: u64,
    pub want: Want,
    /// A `SESSION` request: the hold it gets is bound to the waiting client's connection.
    pub session: bool,
    /// The `HELD n` of its call, checked again at its turn.
    pub held: Option<u32>,
    pub client: BlockedClient,
    timeout_timer: Option<TimerId>,
    /// When it joined the queue, and its WAIT timeout in ms (0: none), for LOCK.WAITERS and
    /// the wait percentiles.
    pub queued_at: std::time::Instant,
    pub timeout_ms: u64,
}

impl Waiter {
    /// The request this waiter queued, as the core decides on it (a session hold is bound to
    /// the waiting connection).
    pub fn ask(&self) -> Ask<'_> {
        Ask {
            owner: &self.owner,
            want: self.want,
            ttl: self.ttl,
            session: self.session_client(),
        }
    }

    /// How long it has waited, in µs.
    pub fn waited_us(&self) -> u64 {
        u64::try_from(self.queued_at.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// The connection a session hold it is handed is bound to.
    pub fn session_client(&self) -> Option<u64> {
        self.session.then(|| self.client.client_id())
    }
}

/// What a waiter asks for: owner, ttl, kind, `SESSION`, and its WAIT timeout.
pub struct Wanted<'a> {
    pub owner: &'a [u8],
    pub ttl: u64,
    pub want: Want,
    pub session: bool,
    pub held: Option<u32>,
    pub timeout_ms: u64,
}

pub use crate::glue::server::key_ref::KeyRef;

struct KeyQueue {
    key: KeyRef,
    waiters: WaitQueue<Waiter>,
    /// The one timer that re-examines this key: at the lock's expiry (a timer set for `at`
    /// fires once the clock reads `at` or later), or at once after the key was deleted behind
    /// our back. With the time it fires at.
    check: Option<(TimerId, Millis)>,
    /// Several-key waiters (LOCK.MACQUIRE, waiting/several.rs) queued on this key too: the
    /// queue (and its check timer) lives while any is.
    several: usize,
}

#[derive(Default)]
struct Registry {
    queues: HashMap<u64, KeyQueue>,
    by_key: HashMap<i32, HashMap<Box<[u8]>, u64>>,
    /// waiter seq -> queue id, for timeouts.
    queue_of_waiter: HashMap<u64, u64>,
    /// blocked-client handle -> waiter seq, for disconnects.
    waiter_of_client: HashMap<usize, u64>,
    /// Waiter seqs and queue ids: one counter, so both rise and never repeat.
    last_id: u64,
}

thread_local! {
    static REGISTRY: RefCell<Registry> = RefCell::new(Registry::default());
}

/// Whether the registry has any queue, kept by every change of it: the hot paths (every lock
/// command asks) read an atomic instead of the thread_local, whose every access from a shared
/// library costs a __tls_get_addr call and a borrow.
static ANY_QUEUE: AtomicBool = AtomicBool::new(false);

fn with_registry<T>(f: impl FnOnce(&mut Registry) -> T) -> T {
    REGISTRY.with(|registry| {
        // Kept even when `f` panics (a bug, caught at the entry point) halfway.
        let _keep_flag = KeepFlag(registry);
        let result = f(&mut registry.borrow_mut());
        result
    })
}

/// Sets ANY_QUEUE from the registry when dropped.
struct KeepFlag<'a>(&'a RefCell<Registry>);

impl Drop for KeepFlag<'_> {
    fn drop(&mut self) {
        if let Ok(registry) = self.0.try_borrow() {
            ANY_QUEUE.store(!registry.queues.is_empty(), Relaxed);
        }
    }
}

impl Registry {
    fn queue_id(&self, db: i32, name: &[u8]) -> Option<u64> {
        self.by_key.get(&db)?.get(name).copied()
    }

    fn queue_mut(&mut self, db: i32, name: &[u8]) -> Option<&mut KeyQueue> {
        let id = self.queue_id(db, name)?;
        self.queues.get_mut(&id)
    }

    fn new_queue(&mut self, key: &KeyRef) -> u64 {
        let id = self.next_id();
        self.by_key
            .entry(key.db)
            .or_default()
            .insert(key.name.clone(), id);
        self.queues.insert(
            id,
            KeyQueue {
                key: key.clone(),
                waiters: WaitQueue::default(),
                check: None,
                several: 0,
            },
        );
        id
    }

    fn next_id(&mut self) -> u64 {
        self.last_id += 1;
        self.last_id
    }

    /// Forgets a queue that has no waiters left; returns its timer to stop.
    fn drop_if_empty(&mut self, queue_id: u64) -> Option<TimerId> {
        let queue = self.queues.get(&queue_id)?;
        if !queue.waiters.is_empty() || queue.several > 0 {
            return None;
        }
        let queue = self.queues.remove(&queue_id)?;
        if let Some(names) = self.by_key.get_mut(&queue.key.db) {
            names.remove(&queue.key.name);
            if names.is_empty() {
                self.by_key.remove(&queue.key.db);
            }
        }
        queue.check.map(|(timer, _)| timer)
    }

    /// Removes one waiter; returns it and the timers to stop.
    fn remove_waiter(&mut self, seq: u64) -> Option<(Waiter, Vec<TimerId>)> {
        let queue_id = self.queue_of_waiter.remove(&seq)?;
        let waiter = self.queues.get_mut(&queue_id)?.waiters.remove(seq)?;
        self.waiter_of_client.remove(&waiter.client.id());
        let timers = waiter
            .timeout_timer
            .into_iter()
            .chain(self.drop_if_empty(queue_id))
            .collect();
        Some((waiter, timers))
    }
}

fn stop_all(ctx: Ctx, timers: Vec<TimerId>) {
    for timer in timers {
        timers::stop(ctx, timer);
    }
}

/// How many clients wait for this key.
pub fn queued(db: i32, name: &[u8]) -> usize {
    if !anyone_waiting() {
        return 0;
    }
    with_registry(|registry| {
        if registry.queues.is_empty() {
            return 0;
        }
        registry
            .queue_mut(db, name)
            .map_or(0, |queue| queue.waiters.len() + queue.several)
    })
}

/// Whether a several-key waiter waits for this key (its handoff is then planned over all the
/// keys such waiters reach: several::settle).
pub fn several_on(db: i32, name: &[u8]) -> bool {
    anyone_waiting()
        && with_registry(|registry| {
            registry
                .queue_mut(db, name)
                .is_some_and(|queue| queue.several > 0)
        })
}

/// One more (`joined`) or one fewer several-key waiter on `key`; the timer of a queue that
/// empties, to stop.
pub fn count_several(key: &KeyRef, joined: bool) -> Option<TimerId> {
    with_registry(|registry| {
        let queue_id = match registry.queue_id(key.db, &key.name) {
            Some(id) => id,
            None if joined => registry.new_queue(key),
            None => return None,
        };
        let queue = registry.queues.get_mut(&queue_id)?;
        if joined {
            queue.several += 1;
            None
        } else {
            queue.several = queue.several.saturating_sub(1);
            registry.drop_if_empty(queue_id)
        }
    })
}

/// A number from the one counter waiters are ordered by: a several-key waiter takes one, so
/// it stands in the same order against single-key waiters on every key.
pub fn next_seq() -> u64 {
    with_registry(|registry| registry.next_id())
}

/// A single-key waiter as the several-key plan needs it (owned).
pub struct QueuedOne {
    pub seq: u64,
    pub owner: Box<[u8]>,
    pub want: Want,
    pub ttl: u64,
    pub session: Option<u64>,
    pub held: Option<u32>,
}

/// The single-key waiters of `key`, from the head on.
pub fn queued_ones(db: i32, name: &[u8]) -> Vec<QueuedOne> {
    with_registry(|registry| {
        let Some(queue) = registry.queue_mut(db, name) else {
            return Vec::new();
        };
        queue
            .waiters
            .numbered()
            .map(|(seq, waiter)| QueuedOne {
                seq,
                owner: waiter.owner.clone(),
                want: waiter.want,
                ttl: waiter.ttl,
                session: waiter.session_client(),
                held: waiter.held,
            })
            .collect()
    })
}

/// Every single-key wait: (owner, key, seq, what it asks), for the wait-for graph.
pub fn all_waits() -> Vec<(Box<[u8]>, KeyRef, u64, Want)> {
    with_registry(|registry| {
        registry
            .queues
            .values()
            .flat_map(|queue| {
                queue.waiters.numbered().map(|(seq, waiter)| {
                    (waiter.owner.clone(), queue.key.clone(), seq, waiter.want)
                })
            })
            .collect()
    })
}

/// Whether `owner` has a single-key wait queued on this node (a scan, no allocation).
pub fn owner_waits(owner: &[u8]) -> bool {
    anyone_waiting()
        && with_registry(|registry| {
            let mut queues = registry.queues.values();
            queues.any(|queue| queue.waiters.iter().any(|w| *w.owner == *owner))
        })
}

/// Takes the single-key waiter `seq` out of its queue (the several-key plan admitted it).
pub fn take(ctx: Ctx, seq: u64) -> Option<Waiter> {
    let (waiter, timers) = with_registry(|registry| registry.remove_waiter(seq))?;
    stop_all(ctx, timers);
    Some(waiter)
}

/// What the queue for `key` takes in rlock's memory (MEMORY USAGE adds it to the lock's own
/// size): the queue's entries in the registry and its copies of the key name, and per waiter its
/// queue entry, owner and index entries. The owners and names as the allocator sized them, the
/// tables and the queue's tree nodes from their layouts. A waiting client's connection and its
/// blocked-client state are the server's (counted under clients, e.g. `mem_clients_normal`).
pub fn queue_memory(db: i32, name: &[u8]) -> usize {
    with_registry(|registry| {
        if registry.queues.is_empty() {
            return 0;
        }
        let Some(queue) = registry.queue_mut(db, name) else {
            return 0;
        };
        let owners: usize = queue.waiters.iter().map(|w| heap_size(&w.owner)).sum();
        let layout = QueueLayout {
            queue_entry: std::mem::size_of::<(u64, KeyQueue)>(),
            key_entry: std::mem::size_of::<(Box<[u8]>, u64)>(),
            waiter_link: std::mem::size_of::<(u64, u64)>(),
            tree_entry: std::mem::size_of::<(u64, Waiter)>(),
        };
        let name = heap_size(&queue.key.name);
        queue_bytes(&layout, name, owners, queue.waiters.len())
    })
}

/// The allocation behind a boxed byte string, as the server's allocator sized it.
fn heap_size(bytes: &[u8]) -> usize {
    if bytes.is_empty() {
        return 0;
    }
    // SAFETY: a read of a function pointer written once by RedisModule_Init; a non-empty box
    // is one allocation of the server's allocator (RedisAlloc), measured in place.
    match unsafe { redis_module::raw::RedisModule_MallocSize } {
        Some(malloc_size) => {
            unsafe { malloc_size(bytes.as_ptr().cast_mut().cast::<c_void>()) }.max(bytes.len())
        }
        None => bytes.len(),
    }
}

/// Whether anyone waits for a key named `name`, in any database.
pub fn queued_anywhere(name: &[u8]) -> bool {
    with_registry(|registry| registry.by_key.values().any(|keys| keys.contains_key(name)))
}

/// Whether anyone waits for anything: lets hot paths skip the registry.
pub fn anyone_waiting() -> bool {
    ANY_QUEUE.load(Relaxed)
}

/// Queues a blocked client behind everyone already waiting for `key` and gives up on it after
/// `timeout_ms` (0: never). The caller arms the key's check (handoff::schedule_check).
pub fn join(ctx: Ctx, key: KeyRef, wanted: Wanted, client: BlockedClient) {
    let client_id = client.id();
    let seq = with_registry(|registry| {
        let seq = registry.next_id();
        let queue_id = match registry.queue_id(key.db, &key.name) {
            Some(id) => id,
            None => registry.new_queue(&key),
        };
        registry.queue_of_waiter.insert(seq, queue_id);
        registry.waiter_of_client.insert(client_id, seq);
        if let Some(queue) = registry.queues.get_mut(&queue_id) {
            queue.waiters.push(
                seq,
                Waiter {
                    owner: wanted.owner.into(),
                    ttl: wanted.ttl,
                    want: wanted.want,
                    session: wanted.session,
                    held: wanted.held,
                    client,
                    timeout_timer: None,
                    queued_at: std::time::Instant::now(),
                    timeout_ms: wanted.timeout_ms,
                },
            );
        }
        seq
    });
    if wanted.timeout_ms > 0 {
        let timer = timers::start(ctx, wanted.timeout_ms as i64, wait_timed_out, seq);
        with_registry(|registry| {
            let queue_id = registry.queue_of_waiter.get(&seq).copied();
            let waiter = queue_id
                .and_then(|id| registry.queues.get_mut(&id))
                .and_then(|queue| queue.waiters.get_mut(seq));
            if let Some(waiter) = waiter {
                waiter.timeout_timer = Some(timer);
            }
        });
    }
}

/// Runs `decide` over the requests queued for `key`, from the head on, and how many there
/// are, with the queue borrowed: `decide` (a pure plan) must not touch the waiters itself.
pub fn with_queue<T>(
    db: i32,
    name: &[u8],
    decide: impl FnOnce(&mut dyn Iterator<Item = Queued<'_>>, usize) -> T,
) -> T {
    if !anyone_waiting() {
        return decide(&mut std::iter::empty(), 0);
    }
    with_registry(|registry| match registry.queue_mut(db, name) {
        Some(queue) => {
            let queued = queue.waiters.len();
            let mut asks = queue
                .waiters
                .iter()
                .map(|waiter| (waiter.ask(), waiter.held));
            decide(&mut asks, queued)
        }
        None => decide(&mut std::iter::empty(), 0),
    })
}

/// Calls `each` on every waiter of `key`, first in line first (LOCK.WAITERS).
pub fn for_each_waiter(db: i32, name: &[u8], mut each: impl FnMut(u64, &Waiter)) {
    if !anyone_waiting() {
        return;
    }
    with_registry(|registry| {
        if let Some(queue) = registry.queue_mut(db, name) {
            for (seq, waiter) in queue.waiters.numbered() {
                each(seq, waiter);
            }
        }
    });
}

/// Takes the longest-waiting client for `key`, if any.
pub fn pop_first(ctx: Ctx, db: i32, name: &[u8]) -> Option<Waiter> {
    let (waiter, timers) = with_registry(|registry| {
        let queue_id = registry.queue_id(db, name)?;
        let (seq, _) = registry.queues.get_mut(&queue_id)?.waiters.first()?;
        registry.remove_waiter(seq)
    })?;
    stop_all(ctx, timers);
    Some(waiter)
}

/// A waiter leaves early (disconnect, CLIENT UNBLOCK): its handle, if it was still queued.
pub fn leave(ctx: Ctx, client_id: usize) -> Option<BlockedClient> {
    let (waiter, timers) = with_registry(|registry| {
        let seq = *registry.waiter_of_client.get(&client_id)?;
        registry.remove_waiter(seq)
    })?;
    stop_all(ctx, timers);
    Some(waiter.client)
}

/// Wakes every single-key waiter of `key` with nil: the lock they wait for is gone for good
/// here (another type took the key, or MIGRATE moved it away). Retrying, they learn why.
/// `handoff::wake_all_with_nil` wakes the several-key waiters too.
pub fn wake_all_with_nil(ctx: Ctx, db: i32, name: &[u8]) {
    while let Some(waiter) = pop_first(ctx, db, name) {
        waiter.client.unblock_empty();
    }
}

/// Makes room for a check of `key` at `at`: `None` if one is armed for then or earlier;
/// else the armed one's timer (to stop) and the queue's id (to name the new one by).
pub fn replace_check(db: i32, name: &[u8], at: Millis) -> Option<(Option<TimerId>, u64)> {
    with_registry(|registry| {
        let queue_id = registry.queue_id(db, name)?;
        let queue = registry.queues.get_mut(&queue_id)?;
        match queue.check {
            Some((_, armed_at)) if armed_at <= at => None,
            _ => Some((queue.check.take().map(|(timer, _)| timer), queue_id)),
        }
    })
}

/// The check of queue `queue_id` is now `timer`, firing at `at`.
pub fn check_armed(queue_id: u64, timer: TimerId, at: Millis) {
    with_registry(|registry| {
        if let Some(queue) = registry.queues.get_mut(&queue_id) {
            queue.check = Some((timer, at));
        }
    });
}

/// Every key waited for in `db` (-1: in every database).
pub fn waited_keys(db: i32) -> Vec<KeyRef> {
    with_registry(|registry| {
        registry
            .queues
            .values()
            .filter(|queue| db == -1 || queue.key.db == db)
            .map(|queue| queue.key.clone())
            .collect()
    })
}

/// The key a check timer is for; clears the timer, which has fired.
pub fn take_fired_check(queue_id: u64) -> Option<KeyRef> {
    with_registry(|registry| {
        let queue = registry.queues.get_mut(&queue_id)?;
        queue.check = None;
        Some(queue.key.clone())
    })
}

/// A waiter's WAIT timeout passed: it leaves with nil and no trace.
unsafe extern "C" fn wait_timed_out(ctx: *mut RedisModuleCtx, data: *mut c_void) {
    run_callback("a WAIT timeout", (), || {
        let seq = timers::id_of(data);
        let removed = with_registry(|registry| {
            if let Some(waiter) = registry
                .queue_of_waiter
                .get(&seq)
                .and_then(|id| registry.queues.get_mut(id))
                .and_then(|queue| queue.waiters.get_mut(seq))
            {
                // This timer has fired: it must not be stopped again.
                waiter.timeout_timer = None;
            }
            let key = registry
                .queue_of_waiter
                .get(&seq)
                .and_then(|id| registry.queues.get(id))
                .map(|queue| queue.key.clone());
            registry.remove_waiter(seq).zip(key)
        });
        if let Some(((waiter, timers), key)) = removed {
            let kind = crate::core::monitor::lock_log::HoldKind::of_want(waiter.want);
            let now = crate::glue::server::context::now();
            crate::glue::effects::monitor::wait_ended(
                key.db,
                &key.name,
                &waiter.owner,
                kind,
                waiter.waited_us(),
                None,
                now,
            );
            stop_all(Ctx(ctx), timers);
            crate::glue::effects::stats::count(crate::glue::effects::stats::Counter::WaitTimeouts);
            waiter.client.unblock_empty();
        }
    })
}

/// (single-key clients waiting, keys waited for), or zeros if the registry is busy (a crash
/// report written mid-change). Several-key waiters are counted by `several::waiting`.
pub fn totals() -> (usize, usize) {
    REGISTRY.with(|registry| match registry.try_borrow() {
        Ok(registry) => (registry.queue_of_waiter.len(), registry.queues.len()),
        Err(_) => (0, 0),
    })
}
