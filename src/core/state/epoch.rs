//! What a LOCK.OBSERVE caller watches: a key's epoch (the highest fencing token among its
//! holders, 0 for a free key) and how many holders it has. Tokens rise with every grant, so a
//! new holder always moves the epoch; a holder leaving moves the count. A reentry or a renewal
//! moves neither: an observer is not woken for them.

use crate::core::state::holds::Holds;

/// A key's holders as an observer compares them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Snapshot {
    /// The highest token among the holders; 0 for a free key.
    pub epoch: u64,
    pub holders: usize,
}

impl Snapshot {
    /// A free key (no holders, or no key at all).
    pub const FREE: Snapshot = Snapshot {
        epoch: 0,
        holders: 0,
    };

    /// The snapshot of `holds` as given (the caller expires them first where it must).
    pub fn of(holds: &Holds) -> Snapshot {
        Snapshot {
            epoch: holds.holders.iter().map(|h| h.token).max().unwrap_or(0),
            holders: holds.holders.len(),
        }
    }
}

/// Whether LOCK.OBSERVE answers at once: the caller named an epoch, and the key's is another.
pub fn answers_at_once(now: Snapshot, seen_epoch: Option<u64>) -> bool {
    seen_epoch.is_some_and(|epoch| epoch != now.epoch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::state::holds::{Holder, Kind};

    fn holder(owner: &[u8], token: u64) -> Holder {
        Holder {
            owner: owner.into(),
            count: 1,
            token,
            expires_at: Some(1_000),
            exclusive: false,
            session: None,
        }
    }

    fn shared(tokens: &[u64]) -> Holds {
        Holds {
            kind: Kind::default(),
            holders: tokens.iter().map(|&t| holder(b"o", t)).collect(),
        }
    }

    #[test]
    fn a_free_key_is_epoch_zero() {
        assert_eq!(Snapshot::of(&Holds::default()), Snapshot::FREE);
    }

    #[test]
    fn the_epoch_is_the_newest_holders_token() {
        let snapshot = Snapshot::of(&shared(&[7, 12, 9]));
        assert_eq!(
            snapshot,
            Snapshot {
                epoch: 12,
                holders: 3
            }
        );
    }

    #[test]
    fn an_older_holder_leaving_keeps_the_epoch_but_not_the_snapshot() {
        let before = Snapshot::of(&shared(&[7, 12]));
        let after = Snapshot::of(&shared(&[12]));
        assert_eq!(before.epoch, after.epoch);
        assert_ne!(before, after);
    }

    #[test]
    fn only_another_named_epoch_answers_at_once() {
        let now = Snapshot {
            epoch: 5,
            holders: 1,
        };
        assert!(!answers_at_once(now, None));
        assert!(!answers_at_once(now, Some(5)));
        assert!(answers_at_once(now, Some(4)));
        assert!(answers_at_once(Snapshot::FREE, Some(5)));
        assert!(!answers_at_once(Snapshot::FREE, Some(0)));
    }
}
