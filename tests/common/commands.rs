//! One shared set of command helpers: each sends one command and panics, naming it, unless the
//! reply is the one the helper is for, so a test reads as the calls it makes.

use redis::Value;

use super::replies::{int, run, text};
use super::TOKEN_LIMIT;

/// `name` from `INFO section` on `con`.
pub fn info_field(con: &mut redis::Connection, section: &str, name: &str) -> Option<String> {
    let text = match run(con, redis::cmd("INFO").arg(section)) {
        Ok(Value::BulkString(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
        Ok(Value::VerbatimString { text, .. }) => text,
        other => panic!("INFO {section} answered {other:?}"),
    };
    text.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key == name).then(|| value.trim().to_string())
    })
}

/// `name` from `INFO section` as an integer; panics when it is missing or not one.
#[track_caller]
pub fn info_int(con: &mut redis::Connection, section: &str, name: &str) -> i64 {
    info_field(con, section, name)
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("INFO {section} has no integer {name}"))
}

/// `LOCK.ACQUIRE key owner ttl options...`: the token, or `None` when the key is held in a way
/// that excludes this request (nil). A refusal or any other reply panics, and so does a token
/// outside (0, 2^53).
#[track_caller]
pub fn try_acquire_with(
    con: &mut redis::Connection,
    key: &str,
    owner: impl AsRef<[u8]>,
    ttl: u64,
    options: &[&str],
) -> Option<i64> {
    let owner = owner.as_ref();
    let mut cmd = redis::cmd("LOCK.ACQUIRE");
    cmd.arg(key).arg(owner).arg(ttl);
    for option in options {
        cmd.arg(*option);
    }
    match run(con, &cmd) {
        Ok(Value::Int(token)) => {
            assert!(
                token > 0 && token < TOKEN_LIMIT,
                "token {token} out of (0, 2^53)"
            );
            Some(token)
        }
        Ok(Value::Nil) => None,
        other => panic!(
            "LOCK.ACQUIRE {key} {} {ttl} {options:?}: {other:?}",
            String::from_utf8_lossy(owner)
        ),
    }
}

/// `LOCK.ACQUIRE key owner ttl options...` that must be granted: its token.
#[track_caller]
pub fn acquire_with(
    con: &mut redis::Connection,
    key: &str,
    owner: impl AsRef<[u8]>,
    ttl: u64,
    options: &[&str],
) -> i64 {
    let owner = owner.as_ref();
    try_acquire_with(con, key, owner, ttl, options).unwrap_or_else(|| {
        panic!(
            "LOCK.ACQUIRE {key} {} {ttl} {options:?} answered nil",
            String::from_utf8_lossy(owner)
        )
    })
}

/// `LOCK.ACQUIRE key owner ttl`: the token, or `None` when another owner holds the key.
#[track_caller]
pub fn try_acquire(
    con: &mut redis::Connection,
    key: &str,
    owner: impl AsRef<[u8]>,
    ttl: u64,
) -> Option<i64> {
    try_acquire_with(con, key, owner, ttl, &[])
}

/// `LOCK.ACQUIRE key owner ttl` that must be granted: its token.
#[track_caller]
pub fn acquire(con: &mut redis::Connection, key: &str, owner: impl AsRef<[u8]>, ttl: u64) -> i64 {
    acquire_with(con, key, owner, ttl, &[])
}

/// `LOCK.RELEASE key owner` by a holder: the count it still holds (0: its hold is gone).
#[track_caller]
pub fn release(con: &mut redis::Connection, key: &str, owner: impl AsRef<[u8]>) -> i64 {
    int(
        run(con, redis::cmd("LOCK.RELEASE").arg(key).arg(owner.as_ref())),
        "LOCK.RELEASE",
    )
}

#[track_caller]
pub fn exists(con: &mut redis::Connection, key: &str) -> i64 {
    int(run(con, redis::cmd("EXISTS").arg(key)), "EXISTS")
}

#[track_caller]
pub fn pttl(con: &mut redis::Connection, key: &str) -> i64 {
    int(run(con, redis::cmd("PTTL").arg(key)), "PTTL")
}

/// The key's absolute expiry in unix ms (-1: none, -2: no key).
#[track_caller]
pub fn pexpiretime(con: &mut redis::Connection, key: &str) -> i64 {
    int(run(con, redis::cmd("PEXPIRETIME").arg(key)), "PEXPIRETIME")
}

/// The server's clock in unix ms (TIME).
#[track_caller]
pub fn server_ms(con: &mut redis::Connection) -> i64 {
    match run(con, &redis::cmd("TIME")) {
        Ok(Value::Array(parts)) if parts.len() == 2 => {
            let number = |v: &Value| text(v).and_then(|t| t.parse::<i64>().ok()).unwrap();
            number(&parts[0]) * 1000 + number(&parts[1]) / 1000
        }
        other => panic!("TIME: {other:?}"),
    }
}

/// `DUMP key`: the serialized value (a missing key panics).
#[track_caller]
pub fn dump(con: &mut redis::Connection, key: &str) -> Vec<u8> {
    match run(con, redis::cmd("DUMP").arg(key)) {
        Ok(Value::BulkString(bytes)) => bytes,
        other => panic!("DUMP answered {other:?}"),
    }
}
