//! The one home of rlock's error replies, in Redis' tone: a code first, then lowercase text
//! naming the command and the argument, no final period.

use std::fmt;

use crate::core::state::holds::{HoldError, Mode, Want};
use crate::core::state::lock::TransitionError;
use crate::core::stored::limits::MAX_TTL_MS;
use crate::core::waiting::deadlock::Cycle;

/// The commands, as Redis names them in errors (lowercase).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Acquire,
    Reenter,
    Release,
    Renew,
    Info,
    Observe,
    Apply,
    Tokens,
    /// LOCK.MACQUIRE, LOCK.MRELEASE, LOCK.MRENEW: several keys in one call.
    MAcquire,
    MRelease,
    MRenew,
}

impl Command {
    pub fn name(self) -> &'static str {
        match self {
            Command::Acquire => "lock.acquire",
            Command::Reenter => "lock.reenter",
            Command::Release => "lock.release",
            Command::Renew => "lock.renew",
            Command::Info => "lock.info",
            Command::Observe => "lock.observe",
            Command::Apply => "lock.apply",
            Command::Tokens => "lock.tokens",
            Command::MAcquire => "lock.macquire",
            Command::MRelease => "lock.mrelease",
            Command::MRenew => "lock.mrenew",
        }
    }

    /// Whether the first argument is a key (every command but LOCK.TOKENS).
    pub fn takes_key(self) -> bool {
        self != Command::Tokens
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockError {
    Arity(Command),
    /// With the largest ttl accepted.
    InvalidTtl(Command, u64),
    InvalidTimeout(Command),
    EmptyOwner(Command),
    /// With the longest owner accepted.
    OwnerTooLong(Command, usize),
    UnknownOption(Command, String),
    DuplicateOption(Command, &'static str),
    MissingOptionValue(Command, &'static str),
    ConflictingOptions(Command, &'static str, &'static str),
    /// With the largest limit accepted.
    InvalidLimit(Command, u32),
    /// `LIMIT asked` on a key held as a semaphore of `held`.
    LimitDiffers {
        held: u32,
        asked: u32,
    },
    /// The owner holds the key in a way the request cannot reenter.
    HoldConflict {
        held: Mode,
        asked: Want,
    },
    /// With the lowest `HELD n` accepted.
    InvalidHeld(Command, u32),
    /// `HELD expected` given, but the owner's hold count is `held`.
    HeldMismatch {
        command: Command,
        held: u32,
        expected: u32,
    },
    /// The server refused to block this connection for `WAIT`.
    CannotBlock,
    /// `SESSION` inside EVAL/FCALL: the script engine's client never disconnects.
    SessionInScript,
    InvalidApply(&'static str),
    InvalidCounter,
    InternalOnly(Command),
    CountOverflow(Command),
    /// `lock.max-waiters` clients already wait for this lock.
    TooManyWaiters(u64),
    TokensExhausted(Command),
    WrongType,
    /// A bug caught at the module boundary: the server stays up and the command did nothing.
    Panicked(Command),
    /// `numkeys` not from 1 to the largest accepted (carried).
    InvalidNumkeys(Command, usize),
    /// `numkeys` larger than the keys the call gives (before its owner and ttl).
    NumkeysPastArgs(Command),
    /// The same key twice in one several-key call.
    DuplicateKey(Command, String),
    /// A several-key acquire refused on one of its keys (`HoldConflict`, `LimitDiffers`,
    /// count overflow), named.
    OnKey {
        key: String,
        error: HoldError,
    },
    /// A wait that would close a cycle of waits (`DEADLOCK` code): refused, nothing changed.
    Deadlock(Cycle),
}

impl LockError {
    /// The reply for a transition that `command` could not make.
    pub fn from_transition(command: Command, error: TransitionError) -> LockError {
        match error {
            TransitionError::CountOverflow => LockError::CountOverflow(command),
            TransitionError::TokensExhausted => LockError::TokensExhausted(command),
        }
    }

    /// The reply for a hold that `command` could not take.
    pub fn from_hold(command: Command, error: HoldError) -> LockError {
        match error {
            HoldError::Transition(error) => LockError::from_transition(command, error),
            HoldError::LimitDiffers { held, asked } => LockError::LimitDiffers { held, asked },
            HoldError::Conflict { held, asked } => LockError::HoldConflict { held, asked },
        }
    }
}

fn mode_name(mode: Mode) -> String {
    match mode {
        Mode::Exclusive => "exclusive".into(),
        Mode::Shared => "shared".into(),
        Mode::Limit(n) => format!("as a permit of LIMIT {n}"),
    }
}

fn want_name(want: Want) -> String {
    match want {
        Want::Exclusive => "exclusive".into(),
        Want::Shared => "shared".into(),
        Want::Limit(n) => format!("as a permit of LIMIT {n}"),
    }
}

impl fmt::Display for LockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockError::Arity(c) => write!(f, "ERR wrong number of arguments for '{}' command", c.name()),
            LockError::InvalidTtl(c, max) => write!(
                f,
                "ERR invalid ttl in '{}' command: expected an integer number of milliseconds from 1 to {max}",
                c.name()
            ),
            LockError::InvalidTimeout(c) => write!(
                f,
                "ERR invalid timeout in '{}' command: expected an integer number of milliseconds from 0 (no limit) to {MAX_TTL_MS}",
                c.name()
            ),
            LockError::EmptyOwner(c) => write!(f, "ERR empty owner in '{}' command", c.name()),
            LockError::OwnerTooLong(c, max) => write!(
                f,
                "ERR owner longer than {max} bytes in '{}' command",
                c.name()
            ),
            LockError::UnknownOption(c, option) => {
                write!(f, "ERR unknown option '{option}' in '{}' command", c.name())
            }
            LockError::DuplicateOption(c, option) => {
                write!(f, "ERR option '{option}' given twice in '{}' command", c.name())
            }
            LockError::MissingOptionValue(c, option) => {
                write!(f, "ERR option '{option}' needs a value in '{}' command", c.name())
            }
            LockError::ConflictingOptions(c, a, b) => write!(
                f,
                "ERR options '{a}' and '{b}' cannot be combined in '{}' command",
                c.name()
            ),
            LockError::InvalidLimit(c, max) => write!(
                f,
                "ERR invalid limit in '{}' command: expected an integer from 1 to {max}",
                c.name()
            ),
            LockError::LimitDiffers { held, asked } => write!(
                f,
                "ERR LIMIT {asked} differs from the key's LIMIT {held} in 'lock.acquire' command: \
                 the limit changes only once every permit is released (an admin may force that with DEL)"
            ),
            LockError::HoldConflict { held, asked } => write!(
                f,
                "ERR the owner holds this key {} and cannot also hold it {} in 'lock.acquire' command \
                 (release first: an upgrade in place deadlocks)",
                mode_name(*held),
                want_name(*asked)
            ),
            LockError::InvalidHeld(c, lowest) => write!(
                f,
                "ERR invalid HELD in '{}' command: expected the caller's hold count, an integer from {lowest} to {}",
                c.name(),
                crate::core::state::lock::MAX_COUNT
            ),
            LockError::HeldMismatch {
                command,
                held,
                expected,
            } => write!(
                f,
                "ERR HELD {expected} does not match the owner's hold count {held} in '{}' command \
                 (nothing changed)",
                command.name()
            ),
            LockError::CannotBlock => write!(
                f,
                "ERR the server cannot block this connection for WAIT in 'lock.acquire' command \
                 (a subscribed RESP3 connection on Valkey 9?): the lock is busy; wait from another connection"
            ),
            LockError::SessionInScript => write!(
                f,
                "ERR SESSION cannot be used inside a script (EVAL, FCALL) in 'lock.acquire' command: \
                 the script's client never disconnects; take the session hold with a direct call"
            ),
            LockError::InvalidApply(field) => {
                write!(f, "ERR invalid {field} in 'lock.apply' command")
            }
            LockError::InvalidCounter => write!(f, "ERR invalid counter in 'lock.tokens' command"),
            LockError::InternalOnly(c) => write!(
                f,
                "ERR '{}' is internal: only a master's replication stream or AOF loading may send it",
                c.name()
            ),
            LockError::TooManyWaiters(max) => write!(
                f,
                "ERR too many waiters for this lock in 'lock.acquire' command: {max} already wait (lock.max-waiters)"
            ),
            LockError::CountOverflow(c) => {
                write!(f, "ERR hold count would overflow in '{}' command", c.name())
            }
            LockError::TokensExhausted(c) => write!(
                f,
                "ERR fencing tokens exhausted in '{}' command: no token below 2^53 is left",
                c.name()
            ),
            LockError::WrongType => {
                write!(f, "WRONGTYPE Operation against a key holding the wrong kind of value")
            }
            LockError::Panicked(c) => write!(
                f,
                "ERR internal error in '{}' command (a bug in rlock; the server log has details)",
                c.name()
            ),
            LockError::InvalidNumkeys(c, max) => write!(
                f,
                "ERR invalid numkeys in '{}' command: expected an integer from 1 to {max}",
                c.name()
            ),
            LockError::NumkeysPastArgs(c) => write!(
                f,
                "ERR numkeys is larger than the number of keys given in '{}' command",
                c.name()
            ),
            LockError::DuplicateKey(c, key) => {
                write!(f, "ERR key '{key}' given twice in '{}' command", c.name())
            }
            LockError::OnKey { key, error } => write_on_key(f, key, *error),
            LockError::Deadlock(cycle) => write!(f, "DEADLOCK {cycle}"),
        }
    }
}

/// A several-key acquire's refusal on `key`: nothing was taken on any key.
fn write_on_key(f: &mut fmt::Formatter<'_>, key: &str, error: HoldError) -> fmt::Result {
    let cmd = "'lock.macquire' command (nothing was taken)";
    match error {
        HoldError::Conflict { held, asked } => write!(
            f,
            "ERR the owner holds key '{key}' {} and cannot also hold it {} in {cmd}: \
             release it first (an upgrade in place deadlocks)",
            mode_name(held),
            want_name(asked)
        ),
        HoldError::LimitDiffers { held, asked } => write!(
            f,
            "ERR LIMIT {asked} differs from key '{key}''s LIMIT {held} in {cmd}"
        ),
        HoldError::Transition(TransitionError::CountOverflow) => {
            write!(f, "ERR hold count of key '{key}' would overflow in {cmd}")
        }
        HoldError::Transition(TransitionError::TokensExhausted) => write!(
            f,
            "ERR fencing tokens exhausted in {cmd}: no token below 2^53 is left"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_starts_with_a_code_and_has_no_final_period() {
        let all = [
            LockError::Arity(Command::Acquire),
            LockError::InvalidTtl(Command::Renew, MAX_TTL_MS),
            LockError::InvalidTimeout(Command::Acquire),
            LockError::EmptyOwner(Command::Release),
            LockError::OwnerTooLong(Command::Reenter, 1024),
            LockError::UnknownOption(Command::Acquire, "FOO".into()),
            LockError::DuplicateOption(Command::Acquire, "WAIT"),
            LockError::MissingOptionValue(Command::Acquire, "WAIT"),
            LockError::ConflictingOptions(Command::Acquire, "SHARED", "LIMIT"),
            LockError::InvalidLimit(Command::Acquire, 10),
            LockError::LimitDiffers { held: 3, asked: 4 },
            LockError::HoldConflict {
                held: Mode::Shared,
                asked: Want::Exclusive,
            },
            LockError::InvalidHeld(Command::Release, 1),
            LockError::HeldMismatch {
                command: Command::Release,
                held: 3,
                expected: 1,
            },
            LockError::SessionInScript,
            LockError::CannotBlock,
            LockError::InvalidApply("count"),
            LockError::InvalidCounter,
            LockError::InternalOnly(Command::Tokens),
            LockError::CountOverflow(Command::Reenter),
            LockError::TooManyWaiters(10),
            LockError::TokensExhausted(Command::Acquire),
            LockError::WrongType,
            LockError::Panicked(Command::Info),
        ];
        for error in all {
            let text = error.to_string();
            assert!(
                text.starts_with("ERR ") || text.starts_with("WRONGTYPE "),
                "{text}"
            );
            assert!(!text.ends_with('.'), "{text}");
            assert!(!text.contains('\n') && !text.contains('\r'), "{text}");
        }
    }

    #[test]
    fn errors_name_the_command_as_redis_does() {
        assert_eq!(
            LockError::Arity(Command::Acquire).to_string(),
            "ERR wrong number of arguments for 'lock.acquire' command"
        );
        assert_eq!(
            LockError::EmptyOwner(Command::Release).to_string(),
            "ERR empty owner in 'lock.release' command"
        );
    }

    #[test]
    fn a_hold_conflict_names_both_kinds_of_hold() {
        let conflict = |held, asked| LockError::HoldConflict { held, asked }.to_string();
        assert_eq!(
            conflict(Mode::Shared, Want::Exclusive),
            "ERR the owner holds this key shared and cannot also hold it exclusive in \
             'lock.acquire' command (release first: an upgrade in place deadlocks)"
        );
        assert!(conflict(Mode::Exclusive, Want::Limit(3))
            .contains("holds this key exclusive and cannot also hold it as a permit of LIMIT 3 "));
        assert!(conflict(Mode::Limit(2), Want::Shared)
            .contains("holds this key as a permit of LIMIT 2 and cannot also hold it shared "));
    }
}
