//! The plain lock's commands, decided on its packed form: the transitions `holds` makes for a
//! key that is free or held by one exclusive holder without a session, when nobody waits for
//! it. Building `Holds` for that case costs a vector and a copy of the owner per command, and
//! the most common lock should pay only for what it is. Every other case (SHARED, LIMIT n,
//! SESSION, a key someone waits for, tagged holds) goes through `holds`; the tests check that
//! both decide the same on every input.

use crate::core::state::holds::{expect_held, Expected, HoldError, Step};
use crate::core::state::lock::{expiry, Lock, TransitionError, MAX_COUNT};
use crate::core::state::tokens::TokenCounter;
use crate::core::Millis;

/// A plain lock as a command finds it: the packed lock and its key's expiry (`None`: the key
/// has none, an admin's PERSIST).
#[derive(Debug, Clone, Copy)]
pub struct Held<'a> {
    pub lock: &'a Lock,
    pub expires_at: Option<Millis>,
}

impl<'a> Held<'a> {
    /// The lock unless its holder's expiry has come (`expires_at <= now`, as `Holds::expire`).
    fn live(held: Option<Held<'a>>, now: Millis) -> Option<Held<'a>> {
        held.filter(|held| held.expires_at.is_none_or(|at| at > now))
    }

    /// The lock if `owner` holds it.
    fn of(held: Option<Held<'a>>, owner: &[u8]) -> Option<Held<'a>> {
        held.filter(|held| held.lock.owner() == owner)
    }
}

/// Whether `owner` holds the plain lock `held` at `now` (its hold not expired).
pub fn holds_live(held: Option<Held>, owner: &[u8], now: Millis) -> bool {
    Held::of(Held::live(held, now), owner).is_some()
}

/// What an exclusive `LOCK.ACQUIRE` without SESSION does to a free or plain key nobody waits
/// for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acquire {
    /// A new lock: `Lock::boxed(owner, 1, token)`, its key expiring at `expires_at`.
    Granted { token: u64, expires_at: Millis },
    /// The owner's hold counted up to `count`; the key's expiry is now `expires_at` (a
    /// reentry never shortens a hold; a permanent one stays permanent).
    Reentered {
        token: u64,
        count: u32,
        expires_at: Option<Millis>,
    },
    /// Held by another owner until `expires_at` (when the key must be looked at again).
    Busy { expires_at: Option<Millis> },
    /// `HELD n` says an earlier attempt of this call took effect: reply `token` again.
    Repeated { token: u64 },
    /// `HELD n` settled the call without a change (`Expected::NotHeld` or `Mismatch`).
    Settled(Expected),
}

/// `LOCK.ACQUIRE key owner ttl [HELD n]` on `held` (`None`: the key is empty), as
/// `holds::acquire` decides it for an exclusive request with nobody queued.
pub fn acquire(
    held: Option<Held>,
    owner: &[u8],
    ttl: u64,
    expected: Option<u32>,
    now: Millis,
    tokens: &mut TokenCounter,
) -> Result<Acquire, HoldError> {
    let live = Held::live(held, now);
    let mine = Held::of(live, owner);
    match expect_held(mine.map_or(0, |held| held.lock.count()), expected, Step::Up) {
        Expected::Proceed => {}
        Expected::Repeated { .. } => {
            let token = mine.map_or(0, |held| held.lock.token());
            return Ok(Acquire::Repeated { token });
        }
        settled => return Ok(Acquire::Settled(settled)),
    }
    if let Some(held) = mine {
        let count = held.lock.count() + 1;
        if count > MAX_COUNT {
            return Err(TransitionError::CountOverflow.into());
        }
        let asked = expiry(now, ttl);
        return Ok(Acquire::Reentered {
            token: held.lock.token(),
            count,
            expires_at: held.expires_at.map(|at| at.max(asked)),
        });
    }
    if let Some(held) = live {
        return Ok(Acquire::Busy {
            expires_at: held.expires_at,
        });
    }
    let token = tokens
        .next_token(now)
        .map_err(|_| TransitionError::TokensExhausted)?;
    Ok(Acquire::Granted {
        token,
        expires_at: expiry(now, ttl),
    })
}

/// What `LOCK.RELEASE` does to a plain lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// The owner holds nothing here (or its hold has expired).
    NotHeld,
    /// The owner's count went down to `count` (at least 1); the expiry stays.
    StillHeld { count: u32 },
    /// The owner's last hold went: the key is free.
    Left,
    /// `HELD n` settled the call without a change.
    Settled(Expected),
}

/// `LOCK.RELEASE key owner [HELD n]` on `held`, as `holds::release` decides it.
pub fn release(held: Held, owner: &[u8], expected: Option<u32>, now: Millis) -> Release {
    let mine = Held::of(Held::live(Some(held), now), owner);
    match expect_held(
        mine.map_or(0, |held| held.lock.count()),
        expected,
        Step::Down,
    ) {
        Expected::Proceed => {}
        settled => return Release::Settled(settled),
    }
    match mine.map(|held| held.lock.count()) {
        None => Release::NotHeld,
        Some(count) if count > 1 => Release::StillHeld { count: count - 1 },
        Some(_) => Release::Left,
    }
}

/// `LOCK.RELEASE` on a plain lock the server found live: a key opened for writing on a master
/// is deleted there if its expiry has passed by the server's clock (the command's), so one
/// still there is live, and its expiry need not be read (on Redis 7.0 that is two more hash
/// lookups). Only a release that leaves a count above 0 reads it, to pass it on.
pub fn release_live(lock: &Lock, owner: &[u8], expected: Option<u32>) -> Release {
    let held = Held {
        lock,
        expires_at: None,
    };
    release(held, owner, expected, 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::state::holds::{self, Acquired, Ask, Holds, Released, Want};

    const NOW: Millis = 1_700_000_000_000;

    /// The general decision for the same input, in the plain terms.
    fn general_acquire(
        held: Option<Held>,
        owner: &[u8],
        ttl: u64,
        expected: Option<u32>,
        now: Millis,
        tokens: &mut TokenCounter,
    ) -> Result<Acquire, HoldError> {
        let mut holds = held.map_or_else(Holds::default, |held| {
            Holds::from_lock(held.lock, held.expires_at)
        });
        // As the command does: HELD is checked on the holds without expired holders.
        holds.expire(now);
        match holds::expect_count(&holds, owner, expected, Step::Up) {
            Expected::Proceed => {}
            Expected::Repeated { .. } => {
                let token = holds.holder(owner).map_or(0, |holder| holder.token);
                return Ok(Acquire::Repeated { token });
            }
            settled => return Ok(Acquire::Settled(settled)),
        }
        let ask = Ask {
            owner,
            want: Want::Exclusive,
            ttl,
            session: None,
        };
        let outcome = holds::acquire(&mut holds, &ask, now, tokens, false)?;
        let expires_at = holds.holders.first().and_then(|holder| holder.expires_at);
        Ok(match outcome {
            Acquired::Granted { token } => {
                let stored = holds
                    .as_plain_lock()
                    .expect("a new exclusive hold is plain");
                assert_eq!(*stored.0, *Lock::boxed(owner, 1, token));
                Acquire::Granted {
                    token,
                    expires_at: stored.1.expect("a new hold expires"),
                }
            }
            Acquired::Reentered { token, count } => Acquire::Reentered {
                token,
                count,
                expires_at,
            },
            Acquired::Busy => Acquire::Busy {
                expires_at: holds.next_expiry(),
            },
        })
    }

    fn general_release(held: Held, owner: &[u8], expected: Option<u32>, now: Millis) -> Release {
        let mut holds = Holds::from_lock(held.lock, held.expires_at);
        holds.expire(now);
        match holds::expect_count(&holds, owner, expected, Step::Down) {
            Expected::Proceed => {}
            settled => return Release::Settled(settled),
        }
        match holds::release(&mut holds, owner, now) {
            Released::NotHeld => Release::NotHeld,
            Released::StillHeld { count } => {
                assert_eq!(
                    holds.as_plain_lock().map(|(lock, _)| lock.count()),
                    Some(count)
                );
                Release::StillHeld { count }
            }
            Released::Left => {
                assert!(holds.is_free());
                Release::Left
            }
        }
    }

    /// Every combination of: no key, or a lock of owner "a" or "b" with counts 1, 2, MAX_COUNT,
    /// expiring before, at and after now or never; asked by "a" with every HELD from none to 3
    /// and MAX_COUNT; a ttl that does or does not lengthen the hold; tokens left or spent.
    #[test]
    fn the_plain_path_decides_as_the_holds_do() {
        let owners: [&[u8]; 2] = [b"a", b"b"];
        let counts = [1, 2, MAX_COUNT];
        let expiries = [
            None,
            Some(NOW - 1),
            Some(NOW),
            Some(NOW + 1),
            Some(NOW + 500),
        ];
        let expected = [None, Some(0), Some(1), Some(2), Some(3), Some(MAX_COUNT)];
        let mut locks = Vec::new();
        for owner in owners {
            for count in counts {
                locks.push(Lock::boxed(owner, count, 7));
            }
        }
        let mut helds: Vec<Option<Held>> = vec![None];
        for lock in &locks {
            for expires_at in expiries {
                helds.push(Some(Held { lock, expires_at }));
            }
        }
        let mut cases = 0;
        for held in &helds {
            for expected in expected {
                for ttl in [1, 100, 1000] {
                    for spent in [false, true] {
                        let counter = |spent| {
                            let last = if spent {
                                crate::core::state::tokens::MAX_TOKEN
                            } else {
                                9
                            };
                            TokenCounter::from_parts(last, 0)
                        };
                        let (mut plain_tokens, mut general_tokens) =
                            (counter(spent), counter(spent));
                        let plain = acquire(*held, b"a", ttl, expected, NOW, &mut plain_tokens);
                        let general =
                            general_acquire(*held, b"a", ttl, expected, NOW, &mut general_tokens);
                        assert_eq!(
                            plain, general,
                            "acquire {held:?} HELD {expected:?} ttl {ttl}"
                        );
                        assert_eq!(plain_tokens, general_tokens);
                        // Whether the owner-length check of a new holder applies.
                        let mut holds = held.map_or_else(Holds::default, |held| {
                            Holds::from_lock(held.lock, held.expires_at)
                        });
                        holds.expire(NOW);
                        assert_eq!(holds_live(*held, b"a", NOW), holds.holder(b"a").is_some());
                        cases += 1;
                    }
                }
                if let Some(held) = held {
                    let expected = expected.filter(|&n| n > 0);
                    assert_eq!(
                        release(*held, b"a", expected, NOW),
                        general_release(*held, b"a", expected, NOW),
                        "release {held:?} HELD {expected:?}"
                    );
                    // A lock the server found live decides as one whose expiry is to come.
                    if held.expires_at.is_none_or(|at| at > NOW) {
                        assert_eq!(
                            release_live(held.lock, b"a", expected),
                            release(*held, b"a", expected, NOW),
                            "release of a live {held:?} HELD {expected:?}"
                        );
                    }
                }
            }
        }
        assert!(cases > 1000);
    }

    #[test]
    fn a_reentry_keeps_the_token_and_never_shortens() {
        let lock = Lock::boxed(b"a", 1, 42);
        let held = Held {
            lock: &lock,
            expires_at: Some(NOW + 900),
        };
        let mut tokens = TokenCounter::from_parts(100, 0);
        assert_eq!(
            acquire(Some(held), b"a", 100, None, NOW, &mut tokens),
            Ok(Acquire::Reentered {
                token: 42,
                count: 2,
                expires_at: Some(NOW + 900)
            })
        );
        assert_eq!(tokens.last(), 100, "no token spent on a reentry");
        let permanent = Held {
            lock: &lock,
            expires_at: None,
        };
        assert!(matches!(
            acquire(Some(permanent), b"a", 100, None, NOW, &mut tokens),
            Ok(Acquire::Reentered {
                expires_at: None,
                ..
            })
        ));
        assert_eq!(release(held, b"a", None, NOW), Release::Left);
        assert_eq!(release(held, b"b", None, NOW), Release::NotHeld);
    }
}
