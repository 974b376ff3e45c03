//! The wait-for graph of this node, as core::waiting::deadlock walks it: which keys an owner waits for
//! (single- and several-key waiters), and who blocks it there (the key's holders in its way,
//! the waiters queued ahead of it that do not pass). Asked only when a wait starts, and only
//! when someone else already waits: the first waiter of a node costs one atomic read.

use std::cell::RefCell;
use std::collections::HashMap;

use crate::core::error::LockError;
use crate::core::monitor::lock_log::HoldKind;
use crate::core::state::holds::{Ask, Holds, Want};
use crate::core::waiting::deadlock::{find_cycle, holders_block, passes, Cycle, WaitView};
use crate::core::Millis;
use crate::glue::effects::keys::{OwnedString, ReadKey};
use crate::glue::effects::monitor;
use crate::glue::server::context::Ctx;
use crate::glue::waiting::several;
use crate::glue::waiting::waiters::{self, KeyRef};

/// A key of the graph, named by its name in errors.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct WaitKey(KeyRef);

impl AsRef<[u8]> for WaitKey {
    fn as_ref(&self) -> &[u8] {
        &self.0.name
    }
}

/// One queued wait: its owner, what it asks, its arrival number, whether several-key.
struct Wait {
    owner: Box<[u8]>,
    want: Want,
    seq: u64,
    several: bool,
}

struct NodeView {
    ctx: Ctx,
    now: Millis,
    /// owner -> each of its waits: the key and its place in the key's queue.
    by_owner: HashMap<Box<[u8]>, Vec<(KeyRef, usize)>>,
    /// key -> its waits, in arrival order.
    by_key: HashMap<KeyRef, Vec<Wait>>,
    holds: RefCell<HashMap<KeyRef, Holds>>,
}

impl NodeView {
    fn new(ctx: Ctx, now: Millis) -> NodeView {
        let mut by_key: HashMap<KeyRef, Vec<Wait>> = HashMap::new();
        let single = waiters::all_waits().into_iter().map(|w| (w, false));
        let several = several::all_waits().into_iter().map(|w| (w, true));
        for ((owner, key, seq, want), several) in single.chain(several) {
            by_key.entry(key).or_default().push(Wait {
                owner,
                want,
                seq,
                several,
            });
        }
        let mut by_owner: HashMap<Box<[u8]>, Vec<(KeyRef, usize)>> = HashMap::new();
        for (key, waits) in by_key.iter_mut() {
            waits.sort_by_key(|wait| wait.seq);
            for (place, wait) in waits.iter().enumerate() {
                let owner_waits = by_owner.entry(wait.owner.clone()).or_default();
                owner_waits.push((key.clone(), place));
            }
        }
        NodeView {
            ctx,
            now,
            by_owner,
            by_key,
            holds: RefCell::new(HashMap::new()),
        }
    }

    /// `read` of the key's holds as of now (expired holders dropped), read once per walk.
    fn with_holds<T>(&self, key: &KeyRef, read: impl FnOnce(&Holds) -> T) -> T {
        let mut cache = self.holds.borrow_mut();
        let holds = cache
            .entry(key.clone())
            .or_insert_with(|| current_holds(self.ctx, key, self.now));
        read(holds)
    }

    fn wait_at(&self, key: &KeyRef, place: usize) -> Option<&Wait> {
        self.by_key.get(key)?.get(place)
    }
}

/// The holds of `key` as of `now` (expired holders dropped; none when it is not a lock).
/// Selects the key's database.
fn current_holds(ctx: Ctx, key: &KeyRef, now: Millis) -> Holds {
    ctx.select_db(key.db);
    let name = OwnedString::new(ctx, &key.name);
    let mut lock_key = ReadKey::open(ctx, name.as_ptr());
    let mut holds = lock_key.holds().ok().flatten().unwrap_or_default();
    holds.expire(now);
    holds
}

fn ask_of(owner: &[u8], want: Want) -> Ask<'_> {
    Ask {
        owner,
        want,
        ttl: 1,
        session: None,
    }
}

impl WaitView for NodeView {
    type Key = WaitKey;

    fn waits_of(&self, owner: &[u8]) -> Vec<(WaitKey, usize)> {
        let waits = self.by_owner.get(owner).into_iter().flatten();
        waits
            .map(|(key, place)| (WaitKey(key.clone()), *place))
            .collect()
    }

    fn held_in_way(&self, key: &WaitKey, place: usize) -> bool {
        let Some(wait) = self.wait_at(&key.0, place) else {
            return false;
        };
        self.with_holds(&key.0, |holds| {
            holders_block(holds, &ask_of(&wait.owner, wait.want))
        })
    }

    fn holders(&self, key: &WaitKey) -> Vec<Box<[u8]>> {
        self.with_holds(&key.0, |holds| {
            holds.holders.iter().map(|h| h.owner.clone()).collect()
        })
    }

    fn queue_len(&self, key: &WaitKey) -> usize {
        self.by_key.get(&key.0).map_or(0, Vec::len)
    }

    fn blocker_at(&self, key: &WaitKey, place: usize) -> Option<&[u8]> {
        let wait = self.wait_at(&key.0, place)?;
        let passing = wait.several
            && self.with_holds(&key.0, |holds| {
                passes(holds, &ask_of(&wait.owner, wait.want))
            });
        (!passing).then_some(&*wait.owner)
    }
}

/// Whether `owner` stands in any wait's way on this node: it waits itself, or holds a key
/// someone waits for. A cycle closed by a new wait comes back to its owner through a wait it
/// blocks, so an owner in nobody's way is let wait without building the graph (the common
/// case: a newcomer queueing on a busy key costs a scan of the waits, no allocation per wait).
fn in_anyones_way(ctx: Ctx, owner: &[u8], now: Millis) -> bool {
    waiters::owner_waits(owner)
        || several::owner_waits(owner)
        || waiters::waited_keys(-1)
            .iter()
            .any(|key| current_holds(ctx, key, now).holder(owner).is_some())
}

/// Refuses a wait of `owner` asking `want` on `keys` (about to be queued at the end of each
/// key's queue) that would close a cycle of waits: `DEADLOCK` naming it. The selected database
/// is `keys`' and stays so.
pub fn refuse_deadlock(
    ctx: Ctx,
    owner: &[u8],
    want: Want,
    keys: &[KeyRef],
    now: Millis,
) -> Result<(), LockError> {
    // Nobody else waits: no blocker can wait for anything, so no cycle can close.
    if !waiters::anyone_waiting() {
        return Ok(());
    }
    let db = ctx.selected_db();
    let cycle = find_cycle_of(ctx, owner, want, keys, now);
    ctx.select_db(db);
    let Some(cycle) = cycle else {
        return Ok(());
    };
    // One entry per refused call, under its first key (LOCK.LOG: deadlock-refused).
    if let Some(key) = keys.first() {
        monitor::deadlock_refused(db, &key.name, owner, HoldKind::of_want(want), 0, now);
    }
    Err(LockError::Deadlock(cycle))
}

/// The cycle a new wait would close; selects other databases.
fn find_cycle_of(
    ctx: Ctx,
    owner: &[u8],
    want: Want,
    keys: &[KeyRef],
    now: Millis,
) -> Option<Cycle> {
    if !in_anyones_way(ctx, owner, now) {
        return None;
    }
    let view = NodeView::new(ctx, now);
    let ask = ask_of(owner, want);
    let first: Vec<(WaitKey, bool)> = keys
        .iter()
        .map(|key| {
            let held = view.with_holds(key, |holds| holders_block(holds, &ask));
            (WaitKey(key.clone()), held)
        })
        .collect();
    find_cycle(&view, owner, &first)
}
