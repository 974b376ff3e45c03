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
//! Only waiting owners have out-edges, so the walk visits waiting owners only; each once. Its
//! worst case is the sum, over every waiting request reached, of that key's holders and the
//! waiters queued ahead: O(waiters x (holders + queue length)) on one node. Holds with a ttl
//! count like any other: a cycle that would end only when one of its holds expires is still a
//! deadlock until then (the wait would be stuck for the ttl, which is what the refusal spares).

use std::collections::HashSet;
use std::fmt;

use crate::core::state::holds::{Ask, Holds};

/// How a blocker stands in a waiter's way on a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// It holds the key and the waiter's request does not fit beside it.
    Held,
    /// It is queued ahead of the waiter on the key.
    Queued,
}

/// An owner in a waiter's way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocker {
    pub owner: Box<[u8]>,
    pub via: Via,
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
pub trait WaitView {
    type Key: Clone + AsRef<[u8]>;
    /// Every key that `owner`'s queued requests wait for (empty: it waits for nothing).
    fn waits_of(&self, owner: &[u8]) -> Vec<Self::Key>;
    /// The owners that block `owner`'s queued request(s) on `key` (see `blockers`).
    fn blockers(&self, key: &Self::Key, owner: &[u8]) -> Vec<Blocker>;
}

/// Whether a several-key waiter's request on this key passes: its owner holds the key in a way
/// it may reenter, so it takes it at its grant whatever is queued, and blocks nobody behind it.
pub fn passes(holds: &Holds, ask: &Ask) -> bool {
    holds.holder(ask.owner).is_some() && holds.may_reenter(ask.owner, ask.want).is_ok()
}

/// The owners in the way of `ask` on a key with `holds` (expired holders dropped by the
/// caller), `ahead` being the owners queued ahead of it that do not pass. A request its own
/// owner's hold decides (reentry, or a conflict that is refused) is blocked by no holder.
pub fn blockers<'o>(
    holds: &Holds,
    ahead: impl IntoIterator<Item = &'o [u8]>,
    ask: &Ask,
) -> Vec<Blocker> {
    let mut found = Vec::new();
    if holds.holder(ask.owner).is_none() && !holds.fits(ask.want) {
        found.extend(holds.holders.iter().map(|holder| Blocker {
            owner: holder.owner.clone(),
            via: Via::Held,
        }));
    }
    found.extend(
        ahead
            .into_iter()
            .filter(|owner| *owner != ask.owner)
            .map(|owner| Blocker {
                owner: owner.into(),
                via: Via::Queued,
            }),
    );
    found
}

/// The cycle a new wait of `requester` would close, if any: `first` holds, per key the new
/// wait is for, the owners that would block it there (`blockers`). Walks only waiting owners,
/// each once (depth first, without recursion).
pub fn find_cycle<V: WaitView>(
    view: &V,
    requester: &[u8],
    first: &[(V::Key, Vec<Blocker>)],
) -> Option<Cycle> {
    // Every link found, with the index of the link it came from.
    let mut links: Vec<(Link, Option<usize>)> = Vec::new();
    let mut stack: Vec<usize> = Vec::new();
    let mut seen: HashSet<Box<[u8]>> = HashSet::new();
    let push = |links: &mut Vec<(Link, Option<usize>)>,
                stack: &mut Vec<usize>,
                key: &[u8],
                blocker: Blocker,
                from: Option<usize>| {
        links.push((
            Link {
                key: key.into(),
                owner: blocker.owner,
                via: blocker.via,
            },
            from,
        ));
        stack.push(links.len() - 1);
    };
    for (key, blockers) in first.iter().rev() {
        for blocker in blockers.iter().rev() {
            push(&mut links, &mut stack, key.as_ref(), blocker.clone(), None);
        }
    }
    while let Some(at) = stack.pop() {
        let owner = links[at].0.owner.clone();
        if *owner == *requester {
            return Some(Cycle {
                links: path_to(&links, at),
            });
        }
        if !seen.insert(owner.clone()) {
            continue;
        }
        for key in view.waits_of(&owner) {
            for blocker in view.blockers(&key, &owner).into_iter().rev() {
                if !seen.contains(&blocker.owner) {
                    push(&mut links, &mut stack, key.as_ref(), blocker, Some(at));
                }
            }
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
    use std::collections::HashMap;

    const NOW: i64 = 1_700_000_000_000;

    /// Waits given as owner -> [(key, blockers)].
    #[derive(Default)]
    struct Fixed(HashMap<&'static str, Vec<(&'static str, Vec<Blocker>)>>);

    impl WaitView for Fixed {
        type Key = &'static str;
        fn waits_of(&self, owner: &[u8]) -> Vec<&'static str> {
            let owner = std::str::from_utf8(owner).unwrap_or("");
            self.0
                .get(owner)
                .map(|waits| waits.iter().map(|(key, _)| *key).collect())
                .unwrap_or_default()
        }
        fn blockers(&self, key: &&'static str, owner: &[u8]) -> Vec<Blocker> {
            let owner = std::str::from_utf8(owner).unwrap_or("");
            self.0
                .get(owner)
                .into_iter()
                .flatten()
                .filter(|(k, _)| k == key)
                .flat_map(|(_, blockers)| blockers.clone())
                .collect()
        }
    }

    fn held(owner: &str) -> Blocker {
        Blocker {
            owner: owner.as_bytes().into(),
            via: Via::Held,
        }
    }

    fn queued(owner: &str) -> Blocker {
        Blocker {
            owner: owner.as_bytes().into(),
            via: Via::Queued,
        }
    }

    #[test]
    fn a_two_owner_cycle_is_named_as_the_issue_writes_it() {
        let mut view = Fixed::default();
        view.0.insert("B", vec![("k1", vec![held("A")])]);
        let cycle = find_cycle(&view, b"A", &[("k2", vec![held("B")])]).expect("a cycle");
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
        view.0.insert("B", vec![("k2", vec![queued("C")])]);
        view.0.insert("C", vec![("k3", vec![held("X"), held("A")])]);
        view.0.insert("X", vec![("k9", vec![held("Y")])]);
        let cycle = find_cycle(&view, b"A", &[("k1", vec![held("B")])]).expect("a cycle");
        assert_eq!(
            cycle.to_string(),
            "'k1' is held by 'B', which waits for 'k2', where 'C' is queued ahead, \
             which waits for 'k3', held by 'A'"
        );
        // Without C's wait on A the chain ends at Y, who waits for nothing.
        view.0.insert("C", vec![("k3", vec![held("X")])]);
        assert_eq!(find_cycle(&view, b"A", &[("k1", vec![held("B")])]), None);
    }

    #[test]
    fn a_long_cycle_names_its_first_links_and_its_length() {
        let names: Vec<&'static str> = (0..20)
            .map(|i| &*Box::leak(format!("o{i}").into_boxed_str()))
            .collect();
        let mut view = Fixed::default();
        for pair in names.windows(2) {
            view.0.insert(pair[0], vec![("k", vec![held(pair[1])])]);
        }
        view.0.insert(names[19], vec![("k", vec![held("A")])]);
        let cycle = find_cycle(&view, b"A", &[("k", vec![held("o0")])]).expect("a cycle");
        assert_eq!(cycle.links.len(), 21);
        assert!(cycle.to_string().ends_with(", ... (21 waits in the cycle)"));
    }

    #[test]
    fn a_diamond_is_walked_once_per_owner() {
        use std::cell::Cell;
        struct Counting(Fixed, Cell<usize>);
        impl WaitView for Counting {
            type Key = &'static str;
            fn waits_of(&self, owner: &[u8]) -> Vec<&'static str> {
                self.1.set(self.1.get() + 1);
                self.0.waits_of(owner)
            }
            fn blockers(&self, key: &&'static str, owner: &[u8]) -> Vec<Blocker> {
                self.0.blockers(key, owner)
            }
        }
        let mut fixed = Fixed::default();
        fixed.0.insert("B", vec![("k", vec![held("D")])]);
        fixed.0.insert("C", vec![("k", vec![held("D")])]);
        fixed.0.insert("D", vec![("k", vec![held("E")])]);
        let view = Counting(fixed, Cell::new(0));
        let first = [("k", vec![held("B"), held("C")])];
        assert_eq!(find_cycle(&view, b"A", &first), None);
        assert_eq!(view.1.get(), 4, "B, C, D and E, once each");
    }

    #[test]
    fn blockers_are_the_holders_in_the_way_and_the_queue_ahead() {
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
        let none: [&[u8]; 0] = [];
        assert_eq!(
            blockers(&shared, none, &ask("w", Want::Exclusive)),
            [held("r1"), held("r2")]
        );
        assert_eq!(blockers(&shared, none, &ask("r3", Want::Shared)), []);
        assert_eq!(
            blockers(&shared, [&b"w"[..], b"r3"], &ask("r3", Want::Shared)),
            [queued("w")],
            "a reader waits behind a queued writer, never behind itself"
        );
        assert_eq!(
            blockers(&shared, none, &ask("r1", Want::Exclusive)),
            [],
            "an upgrade is refused, not waited"
        );
        let mut sem = Holds::default();
        for owner in ["p1", "p2"] {
            acquire(&mut sem, &ask(owner, Want::Limit(2)), NOW, &mut t, false).expect("p");
        }
        assert_eq!(
            blockers(&sem, none, &ask("p3", Want::Limit(2))),
            [held("p1"), held("p2")],
            "every holder of a full semaphore"
        );
        assert!(passes(&sem, &ask("p1", Want::Limit(2))));
        assert!(!passes(&sem, &ask("p1", Want::Exclusive)));
        assert!(!passes(&sem, &ask("p3", Want::Limit(2))));
    }
}
