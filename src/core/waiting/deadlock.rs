//! Deadlocks refused the moment they would form: a wait-for graph over owners, walked when a
//! wait starts.
//!
//! Owners are the nodes (one owner string on several connections is one actor). A waiting
//! owner points at every owner that blocks one of its waits: on each key it waits for, the
//! holders in its way (all of them when its request does not fit: the exclusive holder, the n
//! holders of a full semaphore, the holders of another kind) and every waiter queued ahead of
//! it that does not pass (admission is strictly first come, first served, so a waiter cannot be
//! admitted before the ones ahead of it; a several-key waiter whose owner already holds the key
//! passes). A new wait is refused when one of its blockers reaches its own owner.
//!
//! Only waiting owners have out-edges, so the walk visits waiting owners only; each once. The
//! waiters queued ahead of a wait are a prefix of its key's queue, and a later wait's prefix
//! holds an earlier one's, so the walk reads each key's queue and holders once: O(waits +
//! holders) on one node (5,000 waiters on one key were once 12.5 million reads per new wait,
//! and a server at 100% CPU). Holds with a ttl
//! count like any other: a cycle that would end only when one of its holds expires is still a
//! deadlock until then (the wait would be stuck for the ttl, which is what the refusal spares).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::hash::Hash;

use crate::core::state::holds::{Ask, Holds};

/// How a blocker stands in a waiter's way on a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// It holds the key and the waiter's request does not fit beside it.
    Held,
    /// It is queued ahead of the waiter on the key.
    Queued,
}

/// One step of a cycle: a wait for `key`, blocked by `owner`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub key: Box<[u8]>,
    pub owner: Box<[u8]>,
    pub via: Via,
}

/// A cycle of waits: the new wait's key first, each link's owner waiting for the next link's
/// key, the last link's owner the one that asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cycle {
    pub links: Vec<Link>,
}

/// The most links an error line names; a longer cycle ends with how many it has.
const MAX_NAMED_LINKS: usize = 8;

/// The longest owner or key quoted in the error line.
const MAX_QUOTED: usize = 64;

fn quoted(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_QUOTED)])
        .chars()
        .map(|c| if c.is_control() || c == '\'' { '?' } else { c })
        .collect()
}

impl fmt::Display for Cycle {
    /// `'k2' is held by 'B', which waits for 'k1', held by 'A'`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, link) in self.links.iter().take(MAX_NAMED_LINKS).enumerate() {
            let (key, owner) = (quoted(&link.key), quoted(&link.owner));
            match (i, link.via) {
                (0, Via::Held) => write!(f, "'{key}' is held by '{owner}'")?,
                (0, Via::Queued) => write!(f, "'{key}' has '{owner}' queued ahead")?,
                (_, Via::Held) => write!(f, ", which waits for '{key}', held by '{owner}'")?,
                (_, Via::Queued) => write!(
                    f,
                    ", which waits for '{key}', where '{owner}' is queued ahead"
                )?,
            }
        }
        if self.links.len() > MAX_NAMED_LINKS {
            write!(f, ", ... ({} waits in the cycle)", self.links.len())?;
        }
        Ok(())
    }
}

/// What the walk needs to know of a node's waits; the glue answers from its queues and keys.
/// A key's queue is its waits in arrival order, single- and several-key alike; a wait's place
/// is its index there (0 = first in line).
pub trait WaitView {
    type Key: Clone + Eq + Hash + AsRef<[u8]>;
    /// Every wait `owner` has queued: its key and its place in that key's queue.
    fn waits_of(&self, owner: &[u8]) -> Vec<(Self::Key, usize)>;
    /// Whether the key's holders stand in the way of the wait at `place` (`holders_block`).
    fn held_in_way(&self, key: &Self::Key, place: usize) -> bool;
    /// The key's holders (expired holders dropped).
    fn holders(&self, key: &Self::Key) -> Vec<Box<[u8]>>;
    /// How many waits the key's queue has.
    fn queue_len(&self, key: &Self::Key) -> usize;
    /// The owner of the wait at `place` when it blocks the waits behind it; `None` when it
    /// passes (`passes`) or there is no such place.
    fn blocker_at(&self, key: &Self::Key, place: usize) -> Option<&[u8]>;
}

/// Whether a several-key waiter's request on this key passes: its owner holds the key in a way
/// it may reenter, so it takes it at its grant whatever is queued, and blocks nobody behind it.
pub fn passes(holds: &Holds, ask: &Ask) -> bool {
    holds.holder(ask.owner).is_some() && holds.may_reenter(ask.owner, ask.want).is_ok()
}

/// Whether the holders of a key with `holds` (expired holders dropped by the caller) are all in
/// the way of `ask`: its request does not fit beside them (the exclusive holder, the n holders
/// of a full semaphore, holders of another kind). A request its own owner's hold decides
/// (reentry, or a conflict that is refused) is blocked by no holder.
pub fn holders_block(holds: &Holds, ask: &Ask) -> bool {
    holds.holder(ask.owner).is_none() && !holds.fits(ask.want)
}

/// A blocker found for a key: its owner and how it is in the way.
type Found<'k, K> = (&'k K, Box<[u8]>, Via);

/// How far the walk has read one key: its holders pushed, the places before `scanned` pushed.
#[derive(Default)]
struct KeyRead {
    holders_pushed: bool,
    scanned: usize,
}

/// The depth-first walk of `find_cycle`: every link found, with the index of the link it came
/// from; the links still to visit; the owners visited; how far each key was read.
struct Walk<'v, V: WaitView> {
    view: &'v V,
    links: Vec<(Link, Option<usize>)>,
    stack: Vec<usize>,
    seen: HashSet<Box<[u8]>>,
    read: HashMap<V::Key, KeyRead>,
}

impl<'v, V: WaitView> Walk<'v, V> {
    fn push(&mut self, key: &V::Key, owner: &[u8], via: Via, from: Option<usize>) {
        if self.seen.contains(owner) {
            return;
        }
        let link = Link {
            key: key.as_ref().into(),
            owner: owner.into(),
            via,
        };
        self.links.push((link, from));
        self.stack.push(self.links.len() - 1);
    }

    /// Pushes the blockers of a wait at `place` on `key` not pushed before: the holders once
    /// per key, and the queue's places between the key's last read and `place`. The places
    /// before the last read were pushed by an earlier wait, so each key is read once per walk
    /// however many of its waiters are visited: the walk is linear in the node's waits.
    fn push_blockers(&mut self, key: &V::Key, place: usize, held: bool, from: Option<usize>) {
        let mut found: Vec<(Box<[u8]>, Via)> = Vec::new();
        let read = self.read.entry(key.clone()).or_default();
        if held && !read.holders_pushed {
            read.holders_pushed = true;
            found.extend(self.view.holders(key).into_iter().map(|o| (o, Via::Held)));
        }
        for at in read.scanned..place {
            if let Some(owner) = self.view.blocker_at(key, at) {
                found.push((owner.into(), Via::Queued));
            }
        }
        read.scanned = read.scanned.max(place);
        // Reversed onto the stack, so they are visited in order: holders, then the queue.
        for (owner, via) in found.into_iter().rev() {
            self.push(key, &owner, via, from);
        }
    }
}

/// The cycle a new wait of `requester` would close, if any: `first` holds each key the new
/// wait is for (it would queue at the end of each) and whether the key's holders block it
/// there (`holders_block`). Walks only waiting owners, each once, and reads each key's queue
/// once (depth first, without recursion): O(waits + holders) on the node.
pub fn find_cycle<V: WaitView>(
    view: &V,
    requester: &[u8],
    first: &[(V::Key, bool)],
) -> Option<Cycle> {
    let mut walk = Walk {
        view,
        links: Vec::new(),
        stack: Vec::new(),
        seen: HashSet::new(),
        read: HashMap::new(),
    };
    // The new wait's blockers, its keys in order: pushed in reverse, visited in order. Its
    // key reads are not recorded: the requester is no blocker of its own new wait, but may be
    // one of a wait the walk reaches behind its queued ones.
    let mut found: Vec<Found<'_, V::Key>> = Vec::new();
    for (key, held) in first {
        if *held {
            found.extend(view.holders(key).into_iter().map(|o| (key, o, Via::Held)));
        }
        for at in 0..view.queue_len(key) {
            match view.blocker_at(key, at) {
                Some(owner) if owner != requester => found.push((key, owner.into(), Via::Queued)),
                _ => {}
            }
        }
    }
    for (key, owner, via) in found.into_iter().rev() {
        walk.push(key, &owner, via, None);
    }
    while let Some(at) = walk.stack.pop() {
        let owner = walk.links[at].0.owner.clone();
        if *owner == *requester {
            return Some(Cycle {
                links: path_to(&walk.links, at),
            });
        }
        if !walk.seen.insert(owner.clone()) {
            continue;
        }
        for (key, place) in view.waits_of(&owner) {
            let held = view.held_in_way(&key, place);
            walk.push_blockers(&key, place, held, Some(at));
        }
    }
    None
}

/// The links from the new wait's to link `at`, in order.
fn path_to(links: &[(Link, Option<usize>)], at: usize) -> Vec<Link> {
    let mut path = Vec::new();
    let mut next = Some(at);
    while let Some(i) = next {
        path.push(links[i].0.clone());
        next = links[i].1;
    }
    path.reverse();
    path
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::state::holds::{acquire, Want};
    use crate::core::state::tokens::TokenCounter;
    use std::cell::Cell;

    const NOW: i64 = 1_700_000_000_000;

    /// A node given as each key's holders and queue: (owner, held in its way, passes).
    #[derive(Default)]
    struct Fixed {
        holders: HashMap<&'static str, Vec<&'static str>>,
        queues: HashMap<&'static str, Vec<(&'static str, bool, bool)>>,
        /// Calls of waits_of and of blocker_at, to count the walk's work.
        waits_asked: Cell<usize>,
        places_read: Cell<usize>,
    }

    impl Fixed {
        fn hold(&mut self, key: &'static str, owners: &[&'static str]) -> &mut Self {
            self.holders.insert(key, owners.to_vec());
            self
        }
        /// `owner` queues on `key`, blocked by its holders.
        fn wait(&mut self, key: &'static str, owner: &'static str) -> &mut Self {
            self.queues
                .entry(key)
                .or_default()
                .push((owner, true, false));
            self
        }
        /// `owner` queues on `key`, its request fitting beside the holders.
        fn wait_fitting(&mut self, key: &'static str, owner: &'static str) -> &mut Self {
            self.queues
                .entry(key)
                .or_default()
                .push((owner, false, false));
            self
        }
    }

    impl WaitView for Fixed {
        type Key = &'static str;
        fn waits_of(&self, owner: &[u8]) -> Vec<(&'static str, usize)> {
            self.waits_asked.set(self.waits_asked.get() + 1);
            let mut keys: Vec<_> = self.queues.keys().copied().collect();
            keys.sort();
            keys.into_iter()
                .flat_map(|key| {
                    self.queues[key]
                        .iter()
                        .enumerate()
                        .filter(|(_, w)| w.0.as_bytes() == owner)
                        .map(move |(place, _)| (key, place))
                })
                .collect()
        }
        fn held_in_way(&self, key: &&'static str, place: usize) -> bool {
            self.queues
                .get(key)
                .and_then(|q| q.get(place))
                .is_some_and(|w| w.1)
        }
        fn holders(&self, key: &&'static str) -> Vec<Box<[u8]>> {
            let owners = self.holders.get(key).into_iter().flatten();
            owners.map(|o| o.as_bytes().into()).collect()
        }
        fn queue_len(&self, key: &&'static str) -> usize {
            self.queues.get(key).map_or(0, Vec::len)
        }
        fn blocker_at(&self, key: &&'static str, place: usize) -> Option<&[u8]> {
            self.places_read.set(self.places_read.get() + 1);
            let wait = self.queues.get(key)?.get(place)?;
            (!wait.2).then_some(wait.0.as_bytes())
        }
    }

    #[test]
    fn a_two_owner_cycle_is_named_as_the_issue_writes_it() {
        let mut view = Fixed::default();
        view.hold("k1", &["A"]).hold("k2", &["B"]).wait("k1", "B");
        let cycle = find_cycle(&view, b"A", &[("k2", true)]).expect("a cycle");
        assert_eq!(
            cycle.to_string(),
            "'k2' is held by 'B', which waits for 'k1', held by 'A'"
        );
        assert_eq!(
            crate::core::error::LockError::Deadlock(cycle).to_string(),
            "DEADLOCK 'k2' is held by 'B', which waits for 'k1', held by 'A'"
        );
    }

    #[test]
    fn longer_cycles_through_queues_are_found_and_dead_ends_are_not_cycles() {
        let mut view = Fixed::default();
        // B waits for k2 behind C (k2 is free), C waits for k3 held by X and A, X for k9.
        view.hold("k1", &["B"])
            .hold("k3", &["X", "A"])
            .hold("k9", &["Y"]);
        view.wait_fitting("k2", "C").wait_fitting("k2", "B");
        view.wait("k3", "C").wait("k9", "X");
        let cycle = find_cycle(&view, b"A", &[("k1", true)]).expect("a cycle");
        assert_eq!(
            cycle.to_string(),
            "'k1' is held by 'B', which waits for 'k2', where 'C' is queued ahead, \
             which waits for 'k3', held by 'A'"
        );
        // Without A's hold of k3 the chain ends at Y, who waits for nothing.
        view.hold("k3", &["X"]);
        assert_eq!(find_cycle(&view, b"A", &[("k1", true)]), None);
    }

    #[test]
    fn a_long_cycle_names_its_first_links_and_its_length() {
        let name = |i: usize| &*Box::leak(format!("o{i}").into_boxed_str());
        let key = |i: usize| &*Box::leak(format!("k{i}").into_boxed_str());
        let mut view = Fixed::default();
        // o_i holds k_i and waits for k_(i+1); o19 waits for kA, held by A.
        for i in 0..20 {
            view.hold(key(i), &[name(i)]);
            view.wait(if i < 19 { key(i + 1) } else { "kA" }, name(i));
        }
        view.hold("kA", &["A"]);
        let cycle = find_cycle(&view, b"A", &[(key(0), true)]).expect("a cycle");
        assert_eq!(cycle.links.len(), 21);
        assert!(cycle.to_string().ends_with(", ... (21 waits in the cycle)"));
    }

    #[test]
    fn a_diamond_is_walked_once_per_owner() {
        let mut view = Fixed::default();
        // A's new wait on k is blocked by B and C, who both wait for kd held by D.
        view.hold("k", &["B", "C"])
            .hold("kd", &["D"])
            .hold("ke", &["E"]);
        view.wait("kd", "B").wait("kd", "C").wait("ke", "D");
        assert_eq!(find_cycle(&view, b"A", &[("k", true)]), None);
        assert_eq!(view.waits_asked.get(), 4, "B, C, D and E, once each");
    }

    #[test]
    fn the_requester_queued_ahead_blocks_a_waiter_behind_it_but_not_its_own_new_wait() {
        let mut view = Fixed::default();
        // A already waits on k (another connection of A), B waits behind A; B holds j.
        view.hold("k", &["H"]).hold("j", &["B"]);
        view.wait("k", "A").wait("k", "B");
        let cycle = find_cycle(&view, b"A", &[("j", true)]).expect("a cycle");
        assert_eq!(
            cycle.to_string(),
            "'j' is held by 'B', which waits for 'k', where 'A' is queued ahead"
        );
        // A's new wait on k would queue behind B, who waits behind A: one actor, a cycle.
        assert!(find_cycle(&view, b"A", &[("k", true)]).is_some());
        // Behind its own wait only, A is not in its own way.
        view.queues.insert("k", vec![("A", true, false)]);
        assert_eq!(find_cycle(&view, b"A", &[("k", true)]), None);
        view.queues
            .insert("k", vec![("A", true, false), ("B", true, false)]);
        // A passing wait blocks nobody behind it.
        view.queues
            .insert("k", vec![("A", false, true), ("B", true, false)]);
        assert_eq!(find_cycle(&view, b"A", &[("j", true)]), None);
    }

    #[test]
    fn thousands_of_waiters_on_one_key_are_read_once_per_walk() {
        let mut view = Fixed::default();
        view.hold("k", &["H"]);
        let waiters = 5_000;
        for i in 0..waiters {
            view.wait("k", Box::leak(format!("w{i}").into_boxed_str()));
        }
        assert_eq!(find_cycle(&view, b"new", &[("k", true)]), None);
        assert_eq!(
            view.waits_asked.get(),
            waiters + 1,
            "every waiter and H, once"
        );
        // The new wait reads the queue once; the walk reads each place once more at most.
        assert!(
            view.places_read.get() <= 2 * waiters,
            "{} places read for {waiters} waiters",
            view.places_read.get()
        );
    }

    #[test]
    fn holders_block_a_request_that_does_not_fit_beside_them() {
        let mut t = TokenCounter::from_parts(0, 0);
        let ask = |owner: &'static str, want| Ask {
            owner: owner.as_bytes(),
            want,
            ttl: 1000,
            session: None,
        };
        let mut shared = Holds::default();
        for owner in ["r1", "r2"] {
            acquire(&mut shared, &ask(owner, Want::Shared), NOW, &mut t, false).expect("r");
        }
        assert!(holders_block(&shared, &ask("w", Want::Exclusive)));
        assert!(!holders_block(&shared, &ask("r3", Want::Shared)));
        assert!(
            !holders_block(&shared, &ask("r1", Want::Exclusive)),
            "an upgrade is refused, not waited"
        );
        let mut sem = Holds::default();
        for owner in ["p1", "p2"] {
            acquire(&mut sem, &ask(owner, Want::Limit(2)), NOW, &mut t, false).expect("p");
        }
        assert!(
            holders_block(&sem, &ask("p3", Want::Limit(2))),
            "every holder of a full semaphore"
        );
        assert!(passes(&sem, &ask("p1", Want::Limit(2))));
        assert!(!passes(&sem, &ask("p1", Want::Exclusive)));
        assert!(!passes(&sem, &ask("p3", Want::Limit(2))));
    }
}
