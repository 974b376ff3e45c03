//! Who gets a freed key: the whole plan of one handoff, decided here and applied by the glue
//! (handoff::settle) in one place and one order.
//!
//! The rule (docs/holds.md, "Waiting"): first come, first served across every kind of
//! request. The queue's heads are admitted in order while they fit: a run of shared requests
//! together, an exclusive request only onto a free key; a head whose owner already holds the
//! key is a reentry; a head that can never be served as asked leaves with nil; the first head
//! that does not fit stops the run, and everyone behind it keeps waiting (no barging).

use crate::core::state::holds::{admit, expect_count, Admission, Ask, Expected, Holds, Step};
use crate::core::state::tokens::TokenCounter;
use crate::core::Millis;

/// What one handoff does, in queue order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// One outcome per waiter that leaves the queue (granted, reentered or refused), from the
    /// head on; the rest of the queue stays.
    pub leaving: Vec<Admission>,
    /// Nobody holds the key afterwards: it is deleted.
    pub free_after: bool,
    /// When the key must be looked at again (its next holder's expiry), if anyone still waits;
    /// `Some(Millis::MAX)` for holders that never expire.
    pub next_check: Option<Millis>,
}

impl Plan {
    /// Whether anyone was handed a hold: the key changed even if the caller did not change it.
    pub fn grants(&self) -> bool {
        self.leaving.iter().any(|outcome| {
            matches!(
                outcome,
                Admission::Granted { .. } | Admission::Reentered { .. }
            )
        })
    }
}

/// A queued request: what it asks, and the `HELD n` its call carried (retry safety).
pub type Queued<'a> = (Ask<'a>, Option<u32>);

/// Plans the handoff of `holds` (changed in place to the state to store) to `queue`, the
/// waiters of the key from its head, `queued` of them in all, at `now`.
pub fn plan<'a>(
    holds: &mut Holds,
    queue: impl IntoIterator<Item = Queued<'a>>,
    queued: usize,
    now: Millis,
    tokens: &mut TokenCounter,
) -> Plan {
    let mut leaving = Vec::new();
    for (ask, held) in queue {
        match admit_held(holds, &ask, held, now, tokens) {
            Admission::Wait => break,
            outcome => leaving.push(outcome),
        }
    }
    let still_waiting = queued > leaving.len();
    Plan {
        free_after: holds.is_free(),
        next_check: still_waiting.then(|| holds.next_expiry().unwrap_or(Millis::MAX)),
        leaving,
    }
}

/// `admit`, with the waiter's `HELD n` checked at its turn as at its call: the owner's count
/// already one on (an earlier attempt of the same call took effect, on another connection)
/// answers that hold's token and changes nothing; a count that is neither is refused.
pub(crate) fn admit_held(
    holds: &mut Holds,
    ask: &Ask,
    held: Option<u32>,
    now: Millis,
    tokens: &mut TokenCounter,
) -> Admission {
    holds.expire(now);
    match expect_count(holds, ask.owner, held, Step::Up) {
        Expected::Proceed => admit(holds, ask, now, tokens),
        Expected::Repeated { .. } => match holds.holder(ask.owner) {
            // The earlier attempt could not have been granted as this one asks.
            _ if holds.may_reenter(ask.owner, ask.want).is_err() => Admission::Refused,
            Some(holder) => Admission::Repeated {
                token: holder.token,
            },
            None => Admission::Refused,
        },
        Expected::NotHeld | Expected::Mismatch { .. } => Admission::Refused,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::state::holds::{Holder, Kind, Want};
    use crate::core::state::tokens::clock_floor;

    const NOW: Millis = 1_700_000_000_000;

    fn ask(owner: &str, want: Want) -> Ask<'_> {
        Ask {
            owner: owner.as_bytes(),
            want,
            ttl: 1000,
            session: None,
        }
    }

    fn held_by(owner: &str, exclusive: bool, expires_at: Millis) -> Holds {
        Holds {
            kind: Kind::Lock,
            holders: vec![Holder {
                owner: owner.as_bytes().into(),
                count: 1,
                token: 5,
                expires_at: Some(expires_at),
                exclusive,
                session: None,
            }],
        }
    }

    fn plan_for(holds: &mut Holds, queue: &[Ask]) -> Plan {
        let mut tokens = TokenCounter::from_parts(0, 0);
        let queued = queue.len();
        plan(
            holds,
            queue.iter().map(|ask| (*ask, None)),
            queued,
            NOW,
            &mut tokens,
        )
    }

    /// A waiter whose `HELD n` finds its owner at n + 1 leaves with that hold's token only when
    /// the hold is one its call could have made: an owner holding the key shared never took an
    /// exclusive hold by an earlier attempt, so an exclusive ask is refused, not answered the
    /// shared hold's token.
    #[test]
    fn a_repeated_call_gets_the_held_token_only_for_a_hold_it_could_have_made() {
        let mut tokens = TokenCounter::from_parts(0, 0);
        let mut repeat =
            |holds: &mut Holds, want| admit_held(holds, &ask("a", want), Some(0), NOW, &mut tokens);
        let mut shared = held_by("a", false, NOW + 1000);
        assert_eq!(
            repeat(&mut shared, Want::Shared),
            Admission::Repeated { token: 5 }
        );
        assert_eq!(repeat(&mut shared, Want::Exclusive), Admission::Refused);
        assert_eq!(shared, held_by("a", false, NOW + 1000), "nothing changed");
        let mut exclusive = held_by("a", true, NOW + 1000);
        assert_eq!(
            repeat(&mut exclusive, Want::Exclusive),
            Admission::Repeated { token: 5 }
        );
    }

    #[test]
    fn a_free_key_goes_to_the_head_and_the_rest_wait_for_its_expiry() {
        let mut holds = Holds::default();
        let queue = [ask("a", Want::Exclusive), ask("b", Want::Exclusive)];
        let plan = plan_for(&mut holds, &queue);
        let token = clock_floor(NOW);
        assert_eq!(plan.leaving, [Admission::Granted { token }]);
        assert!(!plan.free_after && plan.grants());
        assert_eq!(plan.next_check, Some(NOW + 1000));
        assert_eq!(&*holds.holders[0].owner, b"a");
    }

    #[test]
    fn a_run_of_readers_is_admitted_together_up_to_a_writer() {
        let mut holds = Holds::default();
        let queue = [
            ask("r1", Want::Shared),
            ask("r2", Want::Shared),
            ask("w", Want::Exclusive),
            ask("r3", Want::Shared),
        ];
        let plan = plan_for(&mut holds, &queue);
        assert_eq!(plan.leaving.len(), 2, "{plan:?}");
        assert!(plan.next_check.is_some());
        let owners: Vec<&[u8]> = holds.holders.iter().map(|h| &*h.owner).collect();
        assert_eq!(owners, [&b"r1"[..], b"r2"]);
    }

    #[test]
    fn a_held_key_admits_nobody_who_does_not_fit_and_no_newcomer_barges() {
        let mut holds = held_by("h", true, NOW + 500);
        let before = holds.clone();
        let plan = plan_for(
            &mut holds,
            &[ask("r", Want::Shared), ask("w", Want::Exclusive)],
        );
        assert_eq!(plan.leaving, []);
        assert!(!plan.grants() && !plan.free_after);
        assert_eq!(plan.next_check, Some(NOW + 500));
        assert_eq!(holds, before);
    }

    #[test]
    fn a_head_whose_owner_holds_the_key_reenters_and_a_conflict_is_refused() {
        // A reader holds the key; its owner's other connection waits exclusive: refused (an
        // upgrade in place deadlocks), then the next reader is admitted.
        let mut holds = held_by("r", false, NOW + 500);
        let plan = plan_for(
            &mut holds,
            &[ask("r", Want::Exclusive), ask("r2", Want::Shared)],
        );
        assert_eq!(plan.leaving[0], Admission::Refused);
        assert!(matches!(plan.leaving[1], Admission::Granted { .. }));
        assert_eq!(plan.next_check, None, "nobody waits any more");
        let mut holds = held_by("h", true, NOW + 500);
        let plan = plan_for(&mut holds, &[ask("h", Want::Exclusive)]);
        assert_eq!(plan.leaving, [Admission::Reentered { token: 5, count: 2 }]);
    }

    #[test]
    fn a_waiters_held_count_is_checked_at_its_turn() {
        // The owner holds once (its retried call was granted on another connection): the
        // queued original with HELD 0 leaves with the same token, nothing changes.
        let mut holds = held_by("h", true, NOW + 500);
        let before = holds.clone();
        let mut tokens = TokenCounter::from_parts(0, 0);
        let queue = [(ask("h", Want::Exclusive), Some(0))];
        let planned = plan(&mut holds, queue, 1, NOW, &mut tokens);
        assert_eq!(planned.leaving, [Admission::Repeated { token: 5 }]);
        assert!(!planned.grants());
        assert_eq!(holds, before);
        // HELD 1 at its call, count 1 at its turn: a reentry as asked.
        let queue = [(ask("h", Want::Exclusive), Some(1))];
        let planned = plan(&mut holds, queue, 1, NOW, &mut tokens);
        assert_eq!(
            planned.leaving,
            [Admission::Reentered { token: 5, count: 2 }]
        );
        // A count that is neither (here 2 against HELD 5): refused, nothing changes.
        let queue = [
            (ask("h", Want::Exclusive), Some(5)),
            (ask("x", Want::Exclusive), None),
        ];
        let after = holds.clone();
        let planned = plan(&mut holds, queue, 2, NOW, &mut tokens);
        assert_eq!(planned.leaving, [Admission::Refused]);
        assert_eq!(holds, after);
    }

    #[test]
    fn an_empty_plan_on_a_free_key_deletes_it() {
        let mut holds = Holds::default();
        let plan = plan_for(&mut holds, &[]);
        assert!(plan.free_after && !plan.grants());
        assert_eq!(plan.next_check, None);
    }

    #[test]
    fn a_semaphore_admits_up_to_its_limit_in_order() {
        let mut holds = Holds::default();
        let queue: Vec<Ask> = ["a", "b", "c", "d"]
            .iter()
            .map(|owner| ask(owner, Want::Limit(2)))
            .collect();
        let plan = plan_for(&mut holds, &queue);
        assert_eq!(plan.leaving.len(), 2);
        assert_eq!(plan.next_check, Some(NOW + 1000));
    }
}
