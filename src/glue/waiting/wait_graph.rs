//! The wait-for graph of this node, as core::waiting::deadlock walks it: which keys an owner waits for
//! (single- and several-key waiters), and who blocks it there (the key's holders in its way,
//! the waiters queued ahead of it that do not pass). Asked only when a wait starts, and only
//! when someone else already waits: the first waiter of a node costs one atomic read.

use std::cell::RefCell;
use std::collections::HashMap;

use crate::core::error::LockError;
use crate::core::monitor::lock_log::HoldKind;
use crate::core::state::holds::{Ask, Holds, Want};
use crate::core::waiting::deadlock::{blockers, find_cycle, passes, Blocker, WaitView};
use crate::core::Millis;
use crate::glue::effects::keys::{OwnedString, ReadKey};
use crate::glue::effects::monitor;
use crate::glue::server::context::Ctx;
use crate::glue::waiting::several;
use crate::glue::waiting::waiters::{self, KeyRef};

/// A key of the graph, named by its name in errors.
#[derive(Clone)]
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
    /// owner -> the keys it waits for, with that wait's seq.
    by_owner: HashMap<Box<[u8]>, Vec<(KeyRef, u64)>>,
    /// key -> its waits, in arrival order.
    by_key: HashMap<KeyRef, Vec<Wait>>,
    holds: RefCell<HashMap<KeyRef, Holds>>,
}

impl NodeView {
    fn new(ctx: Ctx, now: Millis) -> NodeView {
        let mut by_owner: HashMap<Box<[u8]>, Vec<(KeyRef, u64)>> = HashMap::new();
        let mut by_key: HashMap<KeyRef, Vec<Wait>> = HashMap::new();
        let mut add = |owner: Box<[u8]>, key: KeyRef, seq: u64, several: bool, want: Want| {
            by_owner
                .entry(owner.clone())
                .or_default()
                .push((key.clone(), seq));
            by_key.entry(key).or_default().push(Wait {
                owner,
                want,
                seq,
                several,
            });
        };
        for (owner, key, seq, want) in waiters::all_waits() {
            add(owner, key, seq, false, want);
        }
        for (owner, key, seq, want) in several::all_waits() {
            add(owner, key, seq, true, want);
        }
        for waits in by_key.values_mut() {
            waits.sort_by_key(|wait| wait.seq);
        }
        NodeView {
            ctx,
            now,
            by_owner,
            by_key,
            holds: RefCell::new(HashMap::new()),
        }
    }

    /// The key's holds as of now (expired holders dropped), read once per walk.
    fn holds_of(&self, key: &KeyRef) -> Holds {
        if let Some(holds) = self.holds.borrow().get(key) {
            return holds.clone();
        }
        self.ctx.select_db(key.db);
        let name = OwnedString::new(self.ctx, &key.name);
        let mut lock_key = ReadKey::open(self.ctx, name.as_ptr());
        let mut holds = lock_key.holds().ok().flatten().unwrap_or_default();
        holds.expire(self.now);
        self.holds.borrow_mut().insert(key.clone(), holds.clone());
        holds
    }

    /// The owners queued on `key` before arrival `before` that do not pass there.
    fn ahead(&self, key: &KeyRef, holds: &Holds, before: u64) -> Vec<&[u8]> {
        self.by_key
            .get(key)
            .into_iter()
            .flatten()
            .filter(|wait| wait.seq < before)
            .filter(|wait| {
                let ask = ask_of(&wait.owner, wait.want);
                !(wait.several && passes(holds, &ask))
            })
            .map(|wait| &*wait.owner)
            .collect()
    }
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

    fn waits_of(&self, owner: &[u8]) -> Vec<WaitKey> {
        self.by_owner
            .get(owner)
            .into_iter()
            .flatten()
            .map(|(key, _)| WaitKey(key.clone()))
            .collect()
    }

    fn blockers(&self, key: &WaitKey, owner: &[u8]) -> Vec<Blocker> {
        let key = &key.0;
        let holds = self.holds_of(key);
        let mut found = Vec::new();
        for wait in self.by_key.get(key).into_iter().flatten() {
            if *wait.owner == *owner {
                let ask = ask_of(owner, wait.want);
                found.extend(blockers(&holds, self.ahead(key, &holds, wait.seq), &ask));
            }
        }
        found
    }
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
    let view = NodeView::new(ctx, now);
    if view.by_owner.is_empty() {
        return Ok(());
    }
    let ask = ask_of(owner, want);
    let first: Vec<(WaitKey, Vec<Blocker>)> = keys
        .iter()
        .map(|key| {
            let holds = view.holds_of(key);
            let ahead = view.ahead(key, &holds, u64::MAX);
            (WaitKey(key.clone()), blockers(&holds, ahead, &ask))
        })
        .collect();
    let cycle = find_cycle(&view, owner, &first);
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
