//! Command arguments (as bytes) to typed requests. Every refusal of a malformed call is
//! decided here, before any state is touched.
//!
//! `args` is what follows the command name; `args[0]` is always the key, which the glue opens
//! itself, so requests carry only the rest.

use crate::core::error::{Command, LockError};
use crate::core::state::holds::{Want, MAX_HOLDERS};
use crate::core::state::lock::MAX_COUNT;
use crate::core::state::tokens::MAX_TOKEN;
use crate::core::Millis;

pub use crate::core::stored::limits::{Limits, MAX_OWNER_BYTES, MAX_TTL_MS};

/// `LOCK.ACQUIRE key owner ttl [SHARED | LIMIT n] [SESSION] [WAIT timeout]`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AcquireRequest<'a> {
    pub owner: &'a [u8],
    pub ttl: u64,
    /// `Some(0)` waits with no limit; `None` is a plain try.
    pub wait: Option<u64>,
    /// Exclusive unless `SHARED` or `LIMIT n` was given.
    pub want: Want,
    /// `SESSION`: the hold also ends when the calling connection closes.
    pub session: bool,
    /// `HELD n`: the hold count the caller believes its owner has before this call.
    pub held: Option<u32>,
}

/// `LOCK.REENTER key owner [ttl] [HELD n]`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReenterRequest<'a> {
    pub owner: &'a [u8],
    pub ttl: Option<u64>,
    /// `HELD n` (n >= 1): the hold count the caller believes its owner has.
    pub held: Option<u32>,
}

/// `LOCK.RELEASE key owner [HELD n]`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReleaseRequest<'a> {
    pub owner: &'a [u8],
    /// `HELD n` (n >= 1): the hold count the caller believes its owner has.
    pub held: Option<u32>,
}

/// `LOCK.RENEW key owner ttl`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenewRequest<'a> {
    pub owner: &'a [u8],
    pub ttl: u64,
}

/// `LOCK.APPLY key owner count expires_at token counter`: a master's effect, replayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApplyRequest<'a> {
    pub owner: &'a [u8],
    pub count: u32,
    /// Unix ms; 0: the key has no expiry (an AOF rewrite sets it with PEXPIREAT after).
    pub expires_at: Millis,
    pub token: u64,
    /// The master's token counter, so a promoted replica never hands out a used token.
    pub counter: u64,
}

#[inline]
pub fn parse_acquire<'a>(
    args: &[&'a [u8]],
    limits: &Limits,
) -> Result<AcquireRequest<'a>, LockError> {
    // The common call, `key owner ttl`, in line: no options to look through.
    if let [_key, owner, ttl] = args {
        let owner = parse_held_owner(Command::Acquire, owner)?;
        let ttl = parse_ttl(Command::Acquire, ttl, limits)?;
        return Ok(AcquireRequest {
            owner,
            ttl,
            wait: None,
            want: Want::Exclusive,
            session: false,
            held: None,
        });
    }
    parse_acquire_as(Command::Acquire, args, limits)
}

/// `parse_acquire` with errors naming `cmd` (LOCK.MACQUIRE parses its tail after the keys
/// the same way: `args[0]` is then its last key).
pub(super) fn parse_acquire_as<'a>(
    cmd: Command,
    args: &[&'a [u8]],
    limits: &Limits,
) -> Result<AcquireRequest<'a>, LockError> {
    let (owner, ttl, options) = match args {
        [_key, owner, ttl, options @ ..] => (owner, ttl, options),
        _ => return Err(LockError::Arity(cmd)),
    };
    // Against the hard limit only: a holder's own reentry (or a retry of its grant) is never
    // held to a lowered lock.max-owner-bytes; the glue checks a new holder with `new_owner_fits`.
    let owner = parse_held_owner(cmd, owner)?;
    let ttl = parse_ttl(cmd, ttl, limits)?;
    let mut wait = None;
    let mut want = Want::Exclusive;
    let mut session = false;
    let mut held = None;
    let mut rest = options;
    while let [option, tail @ ..] = rest {
        if option.eq_ignore_ascii_case(b"HELD") {
            rest = parse_held_option(cmd, tail, 0, &mut held)?;
        } else if option.eq_ignore_ascii_case(b"WAIT") {
            let [timeout, tail @ ..] = tail else {
                return Err(LockError::MissingOptionValue(cmd, "WAIT"));
            };
            if wait.is_some() {
                return Err(LockError::DuplicateOption(cmd, "WAIT"));
            }
            wait = Some(parse_timeout(cmd, timeout)?);
            rest = tail;
        } else if option.eq_ignore_ascii_case(b"SHARED") {
            match want {
                Want::Shared => return Err(LockError::DuplicateOption(cmd, "SHARED")),
                Want::Limit(_) => {
                    return Err(LockError::ConflictingOptions(cmd, "SHARED", "LIMIT"))
                }
                Want::Exclusive => want = Want::Shared,
            }
            rest = tail;
        } else if option.eq_ignore_ascii_case(b"LIMIT") {
            let [n, tail @ ..] = tail else {
                return Err(LockError::MissingOptionValue(cmd, "LIMIT"));
            };
            match want {
                Want::Limit(_) => return Err(LockError::DuplicateOption(cmd, "LIMIT")),
                Want::Shared => return Err(LockError::ConflictingOptions(cmd, "SHARED", "LIMIT")),
                Want::Exclusive => {}
            }
            let n = parse_integer(n)
                .filter(|&n| n >= 1 && n <= i64::from(MAX_HOLDERS))
                .ok_or_else(|| LockError::InvalidLimit(cmd, MAX_HOLDERS))?;
            want = Want::Limit(n as u32);
            rest = tail;
        } else if option.eq_ignore_ascii_case(b"SESSION") {
            if session {
                return Err(LockError::DuplicateOption(cmd, "SESSION"));
            }
            session = true;
            rest = tail;
        } else {
            return Err(LockError::UnknownOption(cmd, printable(option)));
        }
    }
    Ok(AcquireRequest {
        owner,
        ttl,
        wait,
        want,
        session,
        held,
    })
}

/// `HELD n` after its keyword: `n` from `lowest` to `MAX_COUNT`, given once; the rest.
fn parse_held_option<'a, 'b>(
    cmd: Command,
    tail: &'b [&'a [u8]],
    lowest: u32,
    held: &mut Option<u32>,
) -> Result<&'b [&'a [u8]], LockError> {
    let [n, tail @ ..] = tail else {
        return Err(LockError::MissingOptionValue(cmd, "HELD"));
    };
    if held.is_some() {
        return Err(LockError::DuplicateOption(cmd, "HELD"));
    }
    let n = parse_integer(n)
        .filter(|&n| n >= i64::from(lowest) && n <= i64::from(MAX_COUNT))
        .ok_or_else(|| LockError::InvalidHeld(cmd, lowest))?;
    *held = Some(n as u32);
    Ok(tail)
}

/// The trailing `[HELD n]` of LOCK.REENTER and LOCK.RELEASE (n >= 1).
fn parse_trailing_held(cmd: Command, options: &[&[u8]]) -> Result<Option<u32>, LockError> {
    let mut held = None;
    match options {
        [] => {}
        [option, tail @ ..] if option.eq_ignore_ascii_case(b"HELD") => {
            if !parse_held_option(cmd, tail, 1, &mut held)?.is_empty() {
                return Err(LockError::Arity(cmd));
            }
        }
        // Today's arity error for anything else, as before HELD existed.
        [_, ..] => return Err(LockError::Arity(cmd)),
    }
    Ok(held)
}

pub fn parse_reenter<'a>(
    args: &[&'a [u8]],
    limits: &Limits,
) -> Result<ReenterRequest<'a>, LockError> {
    let cmd = Command::Reenter;
    let (owner, rest) = match args {
        [_key, owner, rest @ ..] => (owner, rest),
        _ => return Err(LockError::Arity(cmd)),
    };
    let owner = parse_held_owner(cmd, owner)?;
    let (ttl, options) = match rest {
        [first, options @ ..] if !first.eq_ignore_ascii_case(b"HELD") => {
            (Some(parse_ttl(cmd, first, limits)?), options)
        }
        options => (None, options),
    };
    Ok(ReenterRequest {
        owner,
        ttl,
        held: parse_trailing_held(cmd, options)?,
    })
}

#[inline]
pub fn parse_release<'a>(args: &[&'a [u8]]) -> Result<ReleaseRequest<'a>, LockError> {
    let cmd = Command::Release;
    match args {
        [_key, owner] => Ok(ReleaseRequest {
            owner: parse_held_owner(cmd, owner)?,
            held: None,
        }),
        [_key, owner, options @ ..] => Ok(ReleaseRequest {
            owner: parse_held_owner(cmd, owner)?,
            held: parse_trailing_held(cmd, options)?,
        }),
        _ => Err(LockError::Arity(cmd)),
    }
}

pub fn parse_renew<'a>(args: &[&'a [u8]], limits: &Limits) -> Result<RenewRequest<'a>, LockError> {
    let cmd = Command::Renew;
    match args {
        [_key, owner, ttl] => Ok(RenewRequest {
            owner: parse_held_owner(cmd, owner)?,
            ttl: parse_ttl(cmd, ttl, limits)?,
        }),
        _ => Err(LockError::Arity(cmd)),
    }
}

pub fn parse_info(args: &[&[u8]]) -> Result<(), LockError> {
    match args {
        [_key] => Ok(()),
        _ => Err(LockError::Arity(Command::Info)),
    }
}

pub fn parse_apply<'a>(args: &[&'a [u8]]) -> Result<ApplyRequest<'a>, LockError> {
    let cmd = Command::Apply;
    let [_key, owner, count, expires_at, token, counter] = args else {
        return Err(LockError::Arity(cmd));
    };
    let field = |name: &'static str, bytes: &[u8], low: i64, high: i64| {
        parse_integer(bytes)
            .filter(|n| (low..=high).contains(n))
            .ok_or_else(|| LockError::InvalidApply(name))
    };
    let max_token = MAX_TOKEN as i64;
    Ok(ApplyRequest {
        owner: parse_owner(cmd, owner, &Limits::HARD)?,
        count: field("count", count, 1, u32::MAX.into())? as u32,
        expires_at: field("expiry", expires_at, 0, i64::MAX)?,
        token: field("token", token, 1, max_token)? as u64,
        counter: field("counter", counter, 0, max_token)? as u64,
    })
}

/// `LOCK.APPLY key HOLDS counter state`: a master's holds (shared, semaphore or session), as
/// the tagged bytes of `encoding::encode_holds`; the bytes are checked by the caller's decode.
pub fn parse_apply_holds<'a>(args: &[&'a [u8]]) -> Result<(u64, &'a [u8]), LockError> {
    let [_key, tag, counter, state] = args else {
        return Err(LockError::Arity(Command::Apply));
    };
    if !tag.eq_ignore_ascii_case(b"HOLDS") {
        return Err(LockError::InvalidApply("form"));
    }
    let counter = parse_counter(counter).ok_or_else(|| LockError::InvalidApply("counter"))?;
    Ok((counter, state))
}

/// `LOCK.OBSERVE key [token] [TIMEOUT timeout]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObserveRequest {
    /// The epoch the caller last saw (the highest token among the holders, 0 for a free key):
    /// another one is answered at once. `None`: wait for the next change.
    pub seen_epoch: Option<u64>,
    /// How long to wait for a change, ms; 0: for ever (as BLPOP's 0).
    pub timeout_ms: u64,
}

pub fn parse_observe(args: &[&[u8]]) -> Result<ObserveRequest, LockError> {
    let cmd = Command::Observe;
    let [_key, rest @ ..] = args else {
        return Err(LockError::Arity(cmd));
    };
    let (seen_epoch, options) = match rest {
        [first, tail @ ..] if !first.eq_ignore_ascii_case(b"TIMEOUT") => {
            let epoch = parse_integer(first)
                .filter(|&n| n >= 0 && n as u64 <= MAX_TOKEN)
                .ok_or_else(|| {
                    LockError::UnknownOption(cmd, String::from_utf8_lossy(first).into())
                })?;
            (Some(epoch as u64), tail)
        }
        _ => (None, rest),
    };
    let timeout_ms = match options {
        [] => 0,
        [option, timeout] if option.eq_ignore_ascii_case(b"TIMEOUT") => {
            parse_timeout(cmd, timeout)?
        }
        [option] if option.eq_ignore_ascii_case(b"TIMEOUT") => {
            return Err(LockError::MissingOptionValue(cmd, "TIMEOUT"))
        }
        [option, ..] if !option.eq_ignore_ascii_case(b"TIMEOUT") => {
            return Err(LockError::UnknownOption(
                cmd,
                String::from_utf8_lossy(option).into(),
            ))
        }
        _ => return Err(LockError::Arity(cmd)),
    };
    Ok(ObserveRequest {
        seen_epoch,
        timeout_ms,
    })
}

/// `LOCK.TOKENS counter`: a master's token counter, replayed (no key).
pub fn parse_tokens(args: &[&[u8]]) -> Result<u64, LockError> {
    let [counter] = args else {
        return Err(LockError::Arity(Command::Tokens));
    };
    parse_counter(counter).ok_or_else(|| LockError::InvalidCounter)
}

/// A token counter as replicated: 0 to `MAX_TOKEN`.
fn parse_counter(counter: &[u8]) -> Option<u64> {
    parse_integer(counter)
        .and_then(|n| u64::try_from(n).ok())
        .filter(|&n| n <= MAX_TOKEN)
}

#[inline]
fn parse_owner<'a>(cmd: Command, owner: &'a [u8], limits: &Limits) -> Result<&'a [u8], LockError> {
    match owner.len() {
        0 => Err(LockError::EmptyOwner(cmd)),
        n if n > limits.max_owner_bytes => {
            Err(LockError::OwnerTooLong(cmd, limits.max_owner_bytes))
        }
        _ => Ok(owner),
    }
}

/// Whether a new holder's `owner` fits the operator's `lock.max-owner-bytes`.
pub fn new_owner_fits(owner: &[u8], limits: &Limits) -> Result<(), LockError> {
    parse_owner(Command::Acquire, owner, limits).map(|_| ())
}

/// The owner of a hold that already exists (RELEASE, RENEW, REENTER): checked against the hard
/// limit only, never against `lock.max-owner-bytes`, so that lowering the config never locks a
/// holder out of its own hold (no owner above the config can be granted anew).
#[inline]
pub(super) fn parse_held_owner(cmd: Command, owner: &[u8]) -> Result<&[u8], LockError> {
    parse_owner(cmd, owner, &Limits::HARD)
}

#[inline]
pub(super) fn parse_ttl(cmd: Command, ttl: &[u8], limits: &Limits) -> Result<u64, LockError> {
    parse_integer(ttl)
        .filter(|&n| n >= 1 && n as u64 <= limits.max_ttl_ms)
        .map(|n| n as u64)
        .ok_or_else(|| LockError::InvalidTtl(cmd, limits.max_ttl_ms))
}

fn parse_timeout(cmd: Command, timeout: &[u8]) -> Result<u64, LockError> {
    parse_integer(timeout)
        .filter(|&n| n >= 0 && n as u64 <= MAX_TTL_MS)
        .map(|n| n as u64)
        .ok_or_else(|| LockError::InvalidTimeout(cmd))
}

/// A decimal integer as Redis writes one: optional '-', digits, no '+', no spaces, no leading
/// zeros, within i64. `None` for anything else. One pass over the bytes: every command parses
/// its ttl through here.
#[inline]
pub fn parse_integer(bytes: &[u8]) -> Option<i64> {
    let (negative, digits) = match bytes {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, bytes),
    };
    match digits {
        [] => return None,
        [b'0'] => return (!negative).then_some(0),
        [b'0', ..] => return None,
        _ => {}
    }
    // Up to 18 digits cannot leave i64 (10^18 - 1 < 2^63): no overflow checks per digit.
    if digits.len() <= 18 {
        let mut value: i64 = 0;
        for &byte in digits {
            let digit = byte.wrapping_sub(b'0');
            if digit > 9 {
                return None;
            }
            value = value * 10 + i64::from(digit);
        }
        return Some(if negative { -value } else { value });
    }
    let mut value: i64 = 0;
    for &byte in digits {
        let digit = byte.wrapping_sub(b'0');
        if digit > 9 {
            return None;
        }
        let digit = i64::from(digit);
        value = value.checked_mul(10)?;
        value = if negative {
            value.checked_sub(digit)?
        } else {
            value.checked_add(digit)?
        };
    }
    Some(value)
}

/// A client's bytes made safe to quote in an error line: no control characters, bounded.
pub(super) fn printable(bytes: &[u8]) -> String {
    const MAX_QUOTED: usize = 64;
    String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_QUOTED)])
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(text: &str) -> Vec<&[u8]> {
        text.split(' ').map(str::as_bytes).collect()
    }

    #[test]
    fn integers_parse_as_redis_writes_them() {
        assert_eq!(parse_integer(b"0"), Some(0));
        assert_eq!(parse_integer(b"42"), Some(42));
        assert_eq!(parse_integer(b"-7"), Some(-7));
        assert_eq!(parse_integer(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_integer(b"-9223372036854775808"), Some(i64::MIN));
        for bad in [
            &b""[..],
            b"-",
            b"+5",
            b" 5",
            b"5 ",
            b"05",
            b"-0",
            b"1.5",
            b"1e3",
            b"0x10",
            b"9223372036854775808",
            b"-9223372036854775809",
            b"99999999999999999999999",
            b"\xff",
        ] {
            assert_eq!(parse_integer(bad), None, "{bad:?}");
        }
    }

    proptest::proptest! {
        /// The short form (up to 18 digits, no overflow checks) and the checked one agree
        /// with Rust's own parser on every i64 and on the 18/19-digit edges around it.
        #[test]
        fn integers_parse_as_rust_does(n in proptest::num::i64::ANY, digits in 17usize..=20) {
            proptest::prop_assert_eq!(parse_integer(n.to_string().as_bytes()), Some(n));
            let nines = "9".repeat(digits);
            proptest::prop_assert_eq!(parse_integer(nines.as_bytes()), nines.parse::<i64>().ok());
            let negative = format!("-{nines}");
            proptest::prop_assert_eq!(
                parse_integer(negative.as_bytes()),
                negative.parse::<i64>().ok()
            );
        }
    }

    #[test]
    fn acquire_parses_a_plain_try_and_a_wait_in_any_case() {
        assert_eq!(
            parse_acquire(&args("k me 500"), &Limits::default()),
            Ok(AcquireRequest {
                owner: b"me",
                ttl: 500,
                wait: None,
                want: Want::Exclusive,
                session: false,
                held: None,
            })
        );
        for wait in ["WAIT", "wait", "Wait"] {
            let call = format!("k me 500 {wait} 0");
            assert_eq!(
                parse_acquire(&args(&call), &Limits::default()).map(|r| r.wait),
                Ok(Some(0))
            );
        }
        assert_eq!(
            parse_acquire(&args("k me 1 WAIT 2592000000"), &Limits::default()).map(|r| r.wait),
            Ok(Some(MAX_TTL_MS))
        );
    }

    #[test]
    fn acquire_refuses_every_malformed_call() {
        let cmd = Command::Acquire;
        let cases = [
            ("k", LockError::Arity(cmd)),
            ("k me", LockError::Arity(cmd)),
            ("k me 0", LockError::InvalidTtl(cmd, MAX_TTL_MS)),
            ("k me -5", LockError::InvalidTtl(cmd, MAX_TTL_MS)),
            ("k me 1.5", LockError::InvalidTtl(cmd, MAX_TTL_MS)),
            ("k me abc", LockError::InvalidTtl(cmd, MAX_TTL_MS)),
            ("k me 2592000001", LockError::InvalidTtl(cmd, MAX_TTL_MS)),
            (
                "k me 99999999999999999999",
                LockError::InvalidTtl(cmd, MAX_TTL_MS),
            ),
            ("k me 5 WAIT", LockError::MissingOptionValue(cmd, "WAIT")),
            ("k me 5 WAIT -1", LockError::InvalidTimeout(cmd)),
            ("k me 5 WAIT x", LockError::InvalidTimeout(cmd)),
            ("k me 5 WAIT 2592000001", LockError::InvalidTimeout(cmd)),
            (
                "k me 5 WAIT 1 WAIT 2",
                LockError::DuplicateOption(cmd, "WAIT"),
            ),
            ("k me 5 NX", LockError::UnknownOption(cmd, "NX".into())),
            (
                "k me 5 WAIT 1 extra",
                LockError::UnknownOption(cmd, "extra".into()),
            ),
        ];
        for (call, expected) in cases {
            assert_eq!(
                parse_acquire(&args(call), &Limits::default()),
                Err(expected),
                "{call}"
            );
        }
        assert_eq!(
            parse_acquire(&[b"k", b"", b"5"], &Limits::default()),
            Err(LockError::EmptyOwner(cmd))
        );
    }

    #[test]
    fn owners_are_bounded_in_length_and_may_hold_any_bytes() {
        let long = vec![b'x'; MAX_OWNER_BYTES];
        assert_eq!(
            parse_release(&[b"k", &long]).map(|r| r.owner.len()),
            Ok(MAX_OWNER_BYTES)
        );
        let too_long = vec![b'x'; MAX_OWNER_BYTES + 1];
        assert_eq!(
            parse_release(&[b"k", &too_long]),
            Err(LockError::OwnerTooLong(Command::Release, MAX_OWNER_BYTES))
        );
        let binary = [0u8, 0xff, b'\r', b'\n'];
        assert_eq!(
            parse_release(&[b"k", &binary]).map(|r| r.owner),
            Ok(&binary[..])
        );
    }

    #[test]
    fn unknown_options_are_quoted_safely() {
        let Err(LockError::UnknownOption(_, quoted)) =
            parse_acquire(&[b"k", b"me", b"5", b"a\r\nb"], &Limits::default())
        else {
            panic!("expected an unknown option error");
        };
        assert_eq!(quoted, "a??b");
        let long = vec![b'z'; 500];
        let Err(LockError::UnknownOption(_, quoted)) =
            parse_acquire(&[b"k", b"me", b"5", &long], &Limits::default())
        else {
            panic!("expected an unknown option error");
        };
        assert_eq!(quoted.len(), 64);
    }

    #[test]
    fn reenter_takes_an_optional_ttl() {
        assert_eq!(
            parse_reenter(&args("k me"), &Limits::default()),
            Ok(ReenterRequest {
                owner: b"me",
                ttl: None,
                held: None,
            })
        );
        assert_eq!(
            parse_reenter(&args("k me 10"), &Limits::default()),
            Ok(ReenterRequest {
                owner: b"me",
                ttl: Some(10),
                held: None,
            })
        );
        let cmd = Command::Reenter;
        assert_eq!(
            parse_reenter(&args("k"), &Limits::default()),
            Err(LockError::Arity(cmd))
        );
        assert_eq!(
            parse_reenter(&args("k me 10 20"), &Limits::default()),
            Err(LockError::Arity(cmd))
        );
        assert_eq!(
            parse_reenter(&args("k me 0"), &Limits::default()),
            Err(LockError::InvalidTtl(cmd, MAX_TTL_MS))
        );
    }

    #[test]
    fn held_states_the_callers_count() {
        let limits = Limits::default();
        let acquire = |call: &str| parse_acquire(&args(call), &limits).map(|r| r.held);
        assert_eq!(acquire("k me 5 HELD 0"), Ok(Some(0)));
        assert_eq!(acquire("k me 5 held 3 WAIT 10"), Ok(Some(3)));
        assert_eq!(acquire("k me 5 WAIT 10 HELD 2047"), Ok(Some(2047)));
        let cmd = Command::Acquire;
        assert_eq!(
            acquire("k me 5 HELD 2048"),
            Err(LockError::InvalidHeld(cmd, 0))
        );
        assert_eq!(
            acquire("k me 5 HELD -1"),
            Err(LockError::InvalidHeld(cmd, 0))
        );
        assert_eq!(
            acquire("k me 5 HELD"),
            Err(LockError::MissingOptionValue(cmd, "HELD"))
        );
        assert_eq!(
            acquire("k me 5 HELD 1 HELD 1"),
            Err(LockError::DuplicateOption(cmd, "HELD"))
        );
        let release = |call: &str| parse_release(&args(call)).map(|r| r.held);
        assert_eq!(release("k me HELD 1"), Ok(Some(1)));
        assert_eq!(
            release("k me HELD 0"),
            Err(LockError::InvalidHeld(Command::Release, 1))
        );
        assert_eq!(
            release("k me HELD 1 x"),
            Err(LockError::Arity(Command::Release))
        );
        assert_eq!(
            release("k me HELD"),
            Err(LockError::MissingOptionValue(Command::Release, "HELD"))
        );
        let reenter = |call: &str| parse_reenter(&args(call), &limits).map(|r| (r.ttl, r.held));
        assert_eq!(reenter("k me HELD 2"), Ok((None, Some(2))));
        assert_eq!(reenter("k me 100 HELD 2"), Ok((Some(100), Some(2))));
        assert_eq!(
            reenter("k me 100 HELD 0"),
            Err(LockError::InvalidHeld(Command::Reenter, 1))
        );
    }

    #[test]
    fn holders_are_never_held_to_a_lowered_owner_limit() {
        let lowered = Limits {
            max_ttl_ms: 1000,
            max_owner_bytes: 3,
        };
        let owner = "a-long-owner";
        assert!(parse_release(&args(&format!("k {owner}"))).is_ok());
        assert!(parse_renew(&args(&format!("k {owner} 500")), &lowered).is_ok());
        assert!(parse_reenter(&args(&format!("k {owner} 500")), &lowered).is_ok());
        // ACQUIRE parses it (a holder may reenter); a new holder is checked apart.
        assert!(parse_acquire(&args(&format!("k {owner} 500")), &lowered).is_ok());
        assert_eq!(
            new_owner_fits(owner.as_bytes(), &lowered),
            Err(LockError::OwnerTooLong(Command::Acquire, 3))
        );
        // A ttl is time asked for anew: the lowered lock.max-ttl applies to RENEW too.
        assert_eq!(
            parse_renew(&args(&format!("k {owner} 5000")), &lowered),
            Err(LockError::InvalidTtl(Command::Renew, 1000))
        );
    }

    #[test]
    fn release_renew_and_info_take_exact_arguments() {
        assert_eq!(
            parse_release(&args("k me")),
            Ok(ReleaseRequest {
                owner: b"me",
                held: None
            })
        );
        assert_eq!(
            parse_release(&args("k me x")),
            Err(LockError::Arity(Command::Release))
        );
        assert_eq!(
            parse_renew(&args("k me 9"), &Limits::default()),
            Ok(RenewRequest {
                owner: b"me",
                ttl: 9
            })
        );
        assert_eq!(
            parse_renew(&args("k me"), &Limits::default()),
            Err(LockError::Arity(Command::Renew))
        );
        assert_eq!(
            parse_renew(&args("k me 0"), &Limits::default()),
            Err(LockError::InvalidTtl(Command::Renew, MAX_TTL_MS))
        );
        assert_eq!(parse_info(&args("k")), Ok(()));
        assert_eq!(
            parse_info(&args("k x")),
            Err(LockError::Arity(Command::Info))
        );
        assert_eq!(parse_info(&[]), Err(LockError::Arity(Command::Info)));
    }

    #[test]
    fn tokens_takes_one_counter_below_two_to_the_53() {
        assert_eq!(parse_tokens(&args("41")), Ok(41));
        assert_eq!(parse_tokens(&args("9007199254740991")), Ok(MAX_TOKEN));
        assert_eq!(
            parse_tokens(&args("9007199254740992")),
            Err(LockError::InvalidCounter)
        );
        assert_eq!(parse_tokens(&args("-1")), Err(LockError::InvalidCounter));
        assert_eq!(
            parse_tokens(&args("1 2")),
            Err(LockError::Arity(Command::Tokens))
        );
        assert_eq!(parse_tokens(&[]), Err(LockError::Arity(Command::Tokens)));
    }

    #[test]
    fn apply_parses_a_full_state_and_refuses_bad_fields() {
        assert_eq!(
            parse_apply(&args("k me 2 1700000000000 7 9")),
            Ok(ApplyRequest {
                owner: b"me",
                count: 2,
                expires_at: 1_700_000_000_000,
                token: 7,
                counter: 9
            })
        );
        let cases = [
            ("k me 0 1 1 1", LockError::InvalidApply("count")),
            ("k me 4294967296 1 1 1", LockError::InvalidApply("count")),
            ("k me 1 -1 1 1", LockError::InvalidApply("expiry")),
            ("k me 1 1 0 1", LockError::InvalidApply("token")),
            (
                "k me 1 1 9007199254740992 1",
                LockError::InvalidApply("token"),
            ),
            ("k me 1 1 1 -1", LockError::InvalidApply("counter")),
            ("k me 1 1 1", LockError::Arity(Command::Apply)),
        ];
        for (call, expected) in cases {
            assert_eq!(parse_apply(&args(call)), Err(expected), "{call}");
        }
    }

    #[test]
    fn acquire_parses_shared_limit_and_session_in_any_order() {
        fn parse(call: &'static str) -> Result<AcquireRequest<'static>, LockError> {
            parse_acquire(&args(call), &Limits::default())
        }
        let got = parse("k me 5 shared SESSION WAIT 10").expect("parses");
        assert_eq!(
            (got.want, got.session, got.wait),
            (Want::Shared, true, Some(10))
        );
        let got = parse("k me 5 WAIT 0 LIMIT 3").expect("parses");
        assert_eq!((got.want, got.session), (Want::Limit(3), false));
        let got = parse("k me 5 session limit 10000").expect("parses");
        assert_eq!((got.want, got.session), (Want::Limit(MAX_HOLDERS), true));
    }

    #[test]
    fn acquire_refuses_conflicting_or_malformed_hold_options() {
        let cmd = Command::Acquire;
        let cases = [
            (
                "k me 5 SHARED LIMIT 3",
                LockError::ConflictingOptions(cmd, "SHARED", "LIMIT"),
            ),
            (
                "k me 5 LIMIT 3 SHARED",
                LockError::ConflictingOptions(cmd, "SHARED", "LIMIT"),
            ),
            (
                "k me 5 SHARED SHARED",
                LockError::DuplicateOption(cmd, "SHARED"),
            ),
            (
                "k me 5 LIMIT 2 LIMIT 2",
                LockError::DuplicateOption(cmd, "LIMIT"),
            ),
            (
                "k me 5 SESSION SESSION",
                LockError::DuplicateOption(cmd, "SESSION"),
            ),
            ("k me 5 LIMIT", LockError::MissingOptionValue(cmd, "LIMIT")),
            ("k me 5 LIMIT 0", LockError::InvalidLimit(cmd, MAX_HOLDERS)),
            ("k me 5 LIMIT -1", LockError::InvalidLimit(cmd, MAX_HOLDERS)),
            (
                "k me 5 LIMIT 10001",
                LockError::InvalidLimit(cmd, MAX_HOLDERS),
            ),
            ("k me 5 LIMIT x", LockError::InvalidLimit(cmd, MAX_HOLDERS)),
        ];
        for (call, expected) in cases {
            assert_eq!(
                parse_acquire(&args(call), &Limits::default()),
                Err(expected),
                "{call}"
            );
        }
    }

    #[test]
    fn apply_holds_takes_a_tag_a_counter_and_the_state() {
        assert_eq!(
            parse_apply_holds(&args("k HOLDS 9 xyz")),
            Ok((9, &b"xyz"[..]))
        );
        assert_eq!(
            parse_apply_holds(&args("k OTHER 9 xyz")),
            Err(LockError::InvalidApply("form"))
        );
        for counter in ["-1", "9007199254740992"] {
            assert_eq!(
                parse_apply_holds(&args(&format!("k HOLDS {counter} xyz"))),
                Err(LockError::InvalidApply("counter")),
                "{counter}"
            );
        }
        assert_eq!(
            parse_apply_holds(&args("k HOLDS 9007199254740991 xyz")),
            Ok((MAX_TOKEN, &b"xyz"[..]))
        );
        assert_eq!(
            parse_apply_holds(&args("k HOLDS 1")),
            Err(LockError::Arity(Command::Apply))
        );
    }

    #[test]
    fn observe_takes_an_optional_epoch_then_an_optional_timeout() {
        let parse = |args: &[&[u8]]| parse_observe(args);
        assert_eq!(
            parse(&[b"k"]),
            Ok(ObserveRequest {
                seen_epoch: None,
                timeout_ms: 0
            })
        );
        assert_eq!(
            parse(&[b"k", b"17"]),
            Ok(ObserveRequest {
                seen_epoch: Some(17),
                timeout_ms: 0
            })
        );
        assert_eq!(
            parse(&[b"k", b"0", b"timeout", b"250"]),
            Ok(ObserveRequest {
                seen_epoch: Some(0),
                timeout_ms: 250
            })
        );
        assert_eq!(
            parse(&[b"k", b"TIMEOUT", b"5"]),
            Ok(ObserveRequest {
                seen_epoch: None,
                timeout_ms: 5
            })
        );
    }

    #[test]
    fn observe_refuses_what_it_cannot_read() {
        let cmd = Command::Observe;
        assert_eq!(parse_observe(&[]), Err(LockError::Arity(cmd)));
        assert_eq!(
            parse_observe(&[b"k", b"-1"]),
            Err(LockError::UnknownOption(cmd, "-1".into()))
        );
        assert_eq!(
            parse_observe(&[b"k", b"soon"]),
            Err(LockError::UnknownOption(cmd, "soon".into()))
        );
        assert_eq!(
            parse_observe(&[b"k", b"1", b"TIMEOUT"]),
            Err(LockError::MissingOptionValue(cmd, "TIMEOUT"))
        );
        assert_eq!(
            parse_observe(&[b"k", b"TIMEOUT", b"-5"]),
            Err(LockError::InvalidTimeout(cmd))
        );
        assert_eq!(
            parse_observe(&[b"k", b"1", b"WAIT", b"5"]),
            Err(LockError::UnknownOption(cmd, "WAIT".into()))
        );
        assert_eq!(
            parse_observe(&[b"k", b"1", b"TIMEOUT", b"5", b"x"]),
            Err(LockError::Arity(cmd))
        );
    }
}
