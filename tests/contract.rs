//! The command contract of README.md, line by line, against a real redis-server with the
//! module loaded: replies, refusals (exact error texts from src/core/error.rs), and that a
//! refused or failed call changes nothing.

mod common;

use common::*;
use redis::Value;

const MAX_TTL: u64 = 2_592_000_000;

fn wait_until_gone(con: &mut redis::Connection, key: &str) {
    wait_until(&format!("{key} to expire"), || exists(con, key) == 0);
}

// ---------------------------------------------------------------------------------------
// LOCK.ACQUIRE

#[test]
fn acquire_takes_a_free_lock_with_count_one_and_the_given_ttl() {
    let server = Server::start();
    let mut con = server.conn();
    let token = acquire(&mut con, "k", b"me", 100_000);
    let info = lock_info(&mut con, "k").expect("lock held");
    assert_eq!(info.owner, b"me");
    assert_eq!(info.count, 1);
    assert_eq!(info.token, token);
    assert_eq!(info.waiters, 0);
    assert!(info.ttl > 0 && info.ttl <= 100_000, "INFO ttl {}", info.ttl);
    let pttl = pttl(&mut con, "k");
    assert!(pttl > 0 && pttl <= 100_000, "PTTL {pttl}");
}

#[test]
fn acquire_by_the_holder_reenters_with_the_same_token_and_never_shortens_the_expiry() {
    let server = Server::start();
    let mut con = server.conn();
    let token = acquire(&mut con, "k", b"me", 100_000);
    // Reset to a longer ttl.
    assert_eq!(acquire(&mut con, "k", b"me", 500_000), token);
    let info = lock_info(&mut con, "k").unwrap();
    assert_eq!((info.count, info.token), (2, token));
    let after_longer = pttl(&mut con, "k");
    assert!(
        after_longer > 100_000 && after_longer <= 500_000,
        "PTTL after reentry with ttl 500000: {after_longer}"
    );
    // A reentry never shortens the hold (a nested lock with a shorter lease must not cut the
    // outer one short): the later expiry stays.
    let expiry = pexpiretime(&mut con, "k");
    assert_eq!(acquire(&mut con, "k", b"me", 50_000), token);
    assert_eq!(
        pexpiretime(&mut con, "k"),
        expiry,
        "a reentry with ttl 50000 moved the expiry"
    );
    assert_eq!(lock_info(&mut con, "k").unwrap().count, 3);
}

#[test]
fn acquire_of_a_lock_held_by_another_owner_fails_and_changes_nothing() {
    let server = Server::start();
    let mut con = server.conn();
    let token = acquire(&mut con, "k", b"me", 100_000);
    acquire(&mut con, "k", b"me", 100_000);
    let before = key_state(&mut con, "k");
    assert_eq!(try_acquire(&mut con, "k", b"other", 500_000), None);
    assert_eq!(key_state(&mut con, "k"), before);
    let info = lock_info(&mut con, "k").unwrap();
    assert_eq!(
        (info.owner.as_slice(), info.count, info.token),
        (&b"me"[..], 2, token)
    );
}

#[test]
fn acquire_accepts_the_limits_and_lowercase_names() {
    let server = Server::start();
    let mut con = server.conn();
    // The longest ttl.
    let before = server_ms(&mut con);
    acquire(&mut con, "long", b"me", MAX_TTL);
    let after = server_ms(&mut con);
    let at = pexpiretime(&mut con, "long");
    assert!(
        at >= before + MAX_TTL as i64 && at <= after + MAX_TTL as i64,
        "PEXPIRETIME {at} outside [{before}, {after}] + {MAX_TTL}"
    );
    // The shortest ttl is accepted (it may be gone at once).
    try_acquire(&mut con, "short", b"me", 1).expect("ttl 1 on a free lock");
    // The longest owner.
    let owner = vec![b'o'; 1024];
    acquire(&mut con, "owner", &owner, 100_000);
    assert_eq!(lock_info(&mut con, "owner").unwrap().owner, owner);
    // Command names and the option are case-insensitive; WAIT on a free lock does not wait.
    let token = int(
        call!(
            &mut con,
            "lock.acquire",
            "lower",
            "me",
            100_000,
            "wait",
            MAX_TTL
        ),
        "lock.acquire ... wait",
    );
    assert_eq!(lock_info(&mut con, "lower").unwrap().token, token);
    assert_eq!(
        int(
            call!(&mut con, "Lock.Acquire", "lower", "me", 100_000, "WAIT", 0),
            "reentry with WAIT 0"
        ),
        token
    );
    assert_eq!(lock_info(&mut con, "lower").unwrap().count, 2);
}

// ---------------------------------------------------------------------------------------
// LOCK.REENTER

#[test]
fn reenter_by_the_holder_counts_up_and_extends_the_expiry_only_with_a_longer_ttl() {
    let server = Server::start();
    let mut con = server.conn();
    let token = acquire(&mut con, "k", b"me", 100_000);
    let expiry = pexpiretime(&mut con, "k");
    assert_eq!(
        int(call!(&mut con, "LOCK.REENTER", "k", "me"), "REENTER"),
        2
    );
    assert_eq!(
        pexpiretime(&mut con, "k"),
        expiry,
        "REENTER without ttl must keep the expiry"
    );
    assert_eq!(
        int(
            call!(&mut con, "LOCK.REENTER", "k", "me", 500_000),
            "REENTER ttl"
        ),
        3
    );
    let left = pttl(&mut con, "k");
    assert!(
        left > 100_000 && left <= 500_000,
        "PTTL after REENTER 500000: {left}"
    );
    let expiry = pexpiretime(&mut con, "k");
    assert_eq!(
        int(
            call!(&mut con, "LOCK.REENTER", "k", "me", 20_000),
            "REENTER ttl"
        ),
        4
    );
    assert_eq!(
        pexpiretime(&mut con, "k"),
        expiry,
        "REENTER 20000 shortened the hold"
    );
    let info = lock_info(&mut con, "k").unwrap();
    assert_eq!((info.count, info.token), (4, token));
}

#[test]
fn reenter_never_takes_a_free_lock_nor_another_owners_lock() {
    let server = Server::start();
    let mut con = server.conn();
    nil(
        call!(&mut con, "LOCK.REENTER", "free", "me"),
        "REENTER free",
    );
    nil(
        call!(&mut con, "LOCK.REENTER", "free", "me", 1000),
        "REENTER free ttl",
    );
    assert_eq!(exists(&mut con, "free"), 0);
    assert_eq!(lock_info(&mut con, "free"), None);

    acquire(&mut con, "k", b"me", 100_000);
    let before = key_state(&mut con, "k");
    nil(
        call!(&mut con, "LOCK.REENTER", "k", "other"),
        "REENTER other",
    );
    nil(
        call!(&mut con, "LOCK.REENTER", "k", "other", 500_000),
        "REENTER other ttl",
    );
    assert_eq!(key_state(&mut con, "k"), before);
}

// ---------------------------------------------------------------------------------------
// LOCK.RELEASE

#[test]
fn release_counts_down_and_frees_the_lock_at_zero() {
    let server = Server::start();
    let mut con = server.conn();
    let token = acquire(&mut con, "k", b"me", 100_000);
    acquire(&mut con, "k", b"me", 100_000);
    int(call!(&mut con, "LOCK.REENTER", "k", "me"), "REENTER");
    let expiry = pexpiretime(&mut con, "k");
    assert_eq!(
        int(call!(&mut con, "LOCK.RELEASE", "k", "me"), "RELEASE"),
        2
    );
    let info = lock_info(&mut con, "k").unwrap();
    assert_eq!((info.count, info.token), (2, token));
    assert_eq!(
        pexpiretime(&mut con, "k"),
        expiry,
        "RELEASE must keep the expiry"
    );
    assert_eq!(
        int(call!(&mut con, "LOCK.RELEASE", "k", "me"), "RELEASE"),
        1
    );
    assert_eq!(
        int(call!(&mut con, "LOCK.RELEASE", "k", "me"), "RELEASE"),
        0
    );
    assert_eq!(exists(&mut con, "k"), 0);
    assert_eq!(lock_info(&mut con, "k"), None);
    nil(
        call!(&mut con, "LOCK.RELEASE", "k", "me"),
        "RELEASE once more",
    );
    assert_eq!(exists(&mut con, "k"), 0);
}

#[test]
fn release_by_a_non_holder_fails_and_changes_nothing() {
    let server = Server::start();
    let mut con = server.conn();
    nil(
        call!(&mut con, "LOCK.RELEASE", "free", "me"),
        "RELEASE free",
    );
    assert_eq!(exists(&mut con, "free"), 0);
    acquire(&mut con, "k", b"me", 100_000);
    let before = key_state(&mut con, "k");
    nil(
        call!(&mut con, "LOCK.RELEASE", "k", "other"),
        "RELEASE other",
    );
    nil(call!(&mut con, "LOCK.RELEASE", "k", "ME"), "RELEASE ME");
    assert_eq!(key_state(&mut con, "k"), before);
}

#[test]
fn after_expiry_the_old_owner_can_neither_release_nor_renew_nor_reenter() {
    let server = Server::start();
    let mut con = server.conn();
    acquire(&mut con, "k", b"me", 50);
    wait_until_gone(&mut con, "k");
    nil(
        call!(&mut con, "LOCK.RELEASE", "k", "me"),
        "RELEASE after expiry",
    );
    assert_eq!(
        int(call!(&mut con, "LOCK.RENEW", "k", "me", 100_000), "RENEW"),
        0
    );
    nil(
        call!(&mut con, "LOCK.REENTER", "k", "me", 100_000),
        "REENTER after expiry",
    );
    assert_eq!(exists(&mut con, "k"), 0);
    assert_eq!(lock_info(&mut con, "k"), None);
}

// ---------------------------------------------------------------------------------------
// LOCK.RENEW

#[test]
fn renew_by_the_holder_resets_the_expiry_and_nothing_else() {
    let server = Server::start();
    let mut con = server.conn();
    let token = acquire(&mut con, "k", b"me", 100_000);
    int(call!(&mut con, "LOCK.REENTER", "k", "me"), "REENTER");
    assert_eq!(
        int(call!(&mut con, "LOCK.RENEW", "k", "me", 500_000), "RENEW"),
        1
    );
    let left = pttl(&mut con, "k");
    assert!(
        left > 100_000 && left <= 500_000,
        "PTTL after RENEW 500000: {left}"
    );
    assert_eq!(
        int(call!(&mut con, "LOCK.RENEW", "k", "me", 30_000), "RENEW"),
        1
    );
    let left = pttl(&mut con, "k");
    assert!(left > 0 && left <= 30_000, "PTTL after RENEW 30000: {left}");
    let info = lock_info(&mut con, "k").unwrap();
    assert_eq!(
        (info.owner.as_slice(), info.count, info.token),
        (&b"me"[..], 2, token)
    );
}

#[test]
fn renew_by_a_non_holder_or_of_a_free_lock_returns_zero_and_changes_nothing() {
    let server = Server::start();
    let mut con = server.conn();
    assert_eq!(
        int(
            call!(&mut con, "LOCK.RENEW", "free", "me", 1000),
            "RENEW free"
        ),
        0
    );
    assert_eq!(exists(&mut con, "free"), 0);
    acquire(&mut con, "k", b"me", 100_000);
    let before = key_state(&mut con, "k");
    assert_eq!(
        int(
            call!(&mut con, "LOCK.RENEW", "k", "other", 500_000),
            "RENEW other"
        ),
        0
    );
    assert_eq!(key_state(&mut con, "k"), before);
}

// ---------------------------------------------------------------------------------------
// LOCK.INFO

#[test]
fn info_is_nil_on_a_free_lock_and_a_flat_array_on_resp2() {
    let server = Server::start();
    let mut con = server.conn();
    nil(call!(&mut con, "LOCK.INFO", "k"), "INFO free");
    let token = acquire(&mut con, "k", b"worker-a", 60_000);
    int(call!(&mut con, "LOCK.REENTER", "k", "worker-a"), "REENTER");
    let left_before = pttl(&mut con, "k");
    let reply = call!(&mut con, "LOCK.INFO", "k").unwrap();
    let left_after = pttl(&mut con, "k");
    let Value::Array(items) = &reply else {
        panic!("RESP2 LOCK.INFO must be a flat array, got {reply:?}");
    };
    assert_eq!(items.len(), 10, "{reply:?}");
    let info = LockInfo::parse(&reply).unwrap();
    assert_eq!(info.fields, ["owner", "count", "ttl", "token", "waiters"]);
    assert_eq!(info.owner, b"worker-a");
    assert_eq!(info.count, 2);
    assert_eq!(info.token, token);
    assert_eq!(info.waiters, 0);
    assert!(info.ttl > 0 && info.ttl <= 60_000, "ttl {}", info.ttl);
    // The ttl field is the key's own expiry, read between two PTTLs.
    assert!(
        left_before >= info.ttl && info.ttl >= left_after,
        "INFO ttl {} not within PTTL {left_before} .. {left_after}",
        info.ttl
    );
}

#[test]
fn info_is_a_map_on_resp3() {
    let server = Server::start();
    let mut con = server.conn_resp3();
    match call!(&mut con, "LOCK.INFO", "k") {
        Ok(Value::Nil) => {}
        other => panic!("RESP3 LOCK.INFO on a free lock: {other:?}"),
    }
    let token = int(
        call!(&mut con, "LOCK.ACQUIRE", "k", "worker-b", 60_000),
        "ACQUIRE",
    );
    let reply = call!(&mut con, "LOCK.INFO", "k").unwrap();
    let Value::Map(pairs) = &reply else {
        panic!("RESP3 LOCK.INFO must be a map, got {reply:?}");
    };
    assert_eq!(pairs.len(), 5, "{reply:?}");
    let info = LockInfo::parse(&reply).unwrap();
    let mut fields = info.fields.clone();
    fields.sort();
    assert_eq!(fields, ["count", "owner", "token", "ttl", "waiters"]);
    assert_eq!(info.owner, b"worker-b");
    assert_eq!((info.count, info.token, info.waiters), (1, token, 0));
    assert!(info.ttl > 0 && info.ttl <= 60_000, "ttl {}", info.ttl);
}

// ---------------------------------------------------------------------------------------
// Fencing tokens

#[test]
fn tokens_rise_across_release_keys_del_expiry_and_flushall() {
    let server = Server::start();
    let mut con = server.conn();
    let mut last = 0;
    let mut check = |token: i64, step: &str| {
        assert!(
            token > last,
            "{step}: token {token} is not above the previous {last}"
        );
        assert!(token < TOKEN_LIMIT, "{step}: token {token} not below 2^53");
        last = token;
    };
    check(acquire(&mut con, "a", b"x", 100_000), "first");
    int(call!(&mut con, "LOCK.RELEASE", "a", "x"), "RELEASE");
    check(
        acquire(&mut con, "a", b"x", 100_000),
        "release then re-acquire (same owner)",
    );
    int(call!(&mut con, "LOCK.RELEASE", "a", "x"), "RELEASE");
    check(
        acquire(&mut con, "a", b"y", 100_000),
        "release then re-acquire (other owner)",
    );
    check(acquire(&mut con, "b", b"x", 100_000), "another key");
    check(acquire(&mut con, "c", b"y", 100_000), "a third key");
    assert_eq!(int(call!(&mut con, "DEL", "b"), "DEL"), 1);
    check(acquire(&mut con, "b", b"z", 100_000), "DEL then acquire");
    acquire(&mut con, "short", b"x", 50);
    wait_until_gone(&mut con, "short");
    check(
        acquire(&mut con, "short", b"x", 100_000),
        "expiry then acquire",
    );
    ok(call!(&mut con, "FLUSHALL"), "FLUSHALL");
    check(
        acquire(&mut con, "a", b"x", 100_000),
        "FLUSHALL then acquire",
    );
    ok(call!(&mut con, "FLUSHALL", "ASYNC"), "FLUSHALL ASYNC");
    check(
        acquire(&mut con, "a", b"x", 100_000),
        "FLUSHALL ASYNC then acquire",
    );
    // Reentry keeps the token.
    assert_eq!(acquire(&mut con, "a", b"x", 100_000), last);
}

#[test]
fn del_is_a_force_release() {
    let server = Server::start();
    let mut con = server.conn();
    let first = acquire(&mut con, "k", b"a", 100_000);
    assert_eq!(int(call!(&mut con, "DEL", "k"), "DEL"), 1);
    nil(
        call!(&mut con, "LOCK.RELEASE", "k", "a"),
        "RELEASE after DEL",
    );
    let second = acquire(&mut con, "k", b"b", 100_000);
    assert!(second > first);
}

#[test]
fn tokens_rise_across_a_restart_from_rdb() {
    let mut server = Server::start();
    let mut con = server.conn();
    acquire(&mut con, "kept", b"x", 600_000);
    let released = acquire(&mut con, "gone", b"y", 600_000);
    int(call!(&mut con, "LOCK.RELEASE", "gone", "y"), "RELEASE");
    ok(call!(&mut con, "SAVE"), "SAVE");
    drop(con);
    server.restart();
    let mut con = server.conn();
    let next = acquire(&mut con, "new", b"z", 600_000);
    assert!(
        next > released,
        "after RDB restart: token {next} <= {released}"
    );
    assert!(next < TOKEN_LIMIT);
}

#[test]
fn tokens_rise_across_a_restart_from_aof() {
    let mut server = Server::start_with(&["--appendonly", "yes"]);
    let mut con = server.conn();
    acquire(&mut con, "kept", b"x", 600_000);
    let released = acquire(&mut con, "gone", b"y", 600_000);
    int(call!(&mut con, "LOCK.RELEASE", "gone", "y"), "RELEASE");
    drop(con);
    server.restart();
    let mut con = server.conn();
    let next = acquire(&mut con, "new", b"z", 600_000);
    assert!(
        next > released,
        "after AOF restart: token {next} <= {released}"
    );
    assert!(next < TOKEN_LIMIT);
}

// ---------------------------------------------------------------------------------------
// The key: PTTL, TYPE, WRONGTYPE

#[test]
fn the_key_has_the_module_type_and_the_locks_expiry() {
    let server = Server::start();
    let mut con = server.conn();
    acquire(&mut con, "k", b"me", 100_000);
    let type_name = text(&call!(&mut con, "TYPE", "k").unwrap()).unwrap();
    assert_ne!(type_name, "string");
    assert_ne!(type_name, "none");
    assert_eq!(
        type_name.len(),
        9,
        "module type names are 9 characters: {type_name:?}"
    );
    let left = pttl(&mut con, "k");
    assert!(left > 0 && left <= 100_000, "PTTL {left}");
    let at = pexpiretime(&mut con, "k");
    assert!(at > 0, "PEXPIRETIME {at}");
}

#[test]
fn every_command_on_a_key_of_another_type_is_wrongtype_and_changes_nothing() {
    // Another module's data type too: a module key is a lock only if it is of rlock's type.
    let other = other_module_path();
    let other = other.to_str().expect("a UTF-8 path");
    let server = Server::start_with(&["--loadmodule", other]);
    let mut con = server.conn();
    ok(call!(&mut con, "SET", "s", "v", "PX", 100_000), "SET");
    int(call!(&mut con, "HSET", "h", "f", "v"), "HSET");
    ok(
        call!(&mut con, "OTHERTYPE.SET", "o", "text"),
        "OTHERTYPE.SET",
    );
    assert_eq!(
        text(&call!(&mut con, "TYPE", "o").expect("TYPE")).as_deref(),
        Some("othertype")
    );
    let calls: Vec<Vec<&str>> = vec![
        vec!["LOCK.ACQUIRE", "KEY", "me", "1000"],
        vec!["LOCK.ACQUIRE", "KEY", "me", "1000", "WAIT", "100"],
        vec!["LOCK.ACQUIRE", "KEY", "me", "1000", "WAIT", "0"],
        vec!["LOCK.REENTER", "KEY", "me"],
        vec!["LOCK.REENTER", "KEY", "me", "1000"],
        vec!["LOCK.RELEASE", "KEY", "me"],
        vec!["LOCK.RENEW", "KEY", "me", "1000"],
        vec!["LOCK.INFO", "KEY"],
    ];
    for key in ["s", "h", "o"] {
        let before = key_state(&mut con, key);
        for call in &calls {
            let mut command = redis::cmd(call[0]);
            for arg in &call[1..] {
                command.arg(if *arg == "KEY" { key } else { arg });
            }
            let reply = run(&mut con, &command);
            let text = error(reply, &format!("{call:?} on {key}"));
            assert!(
                text.starts_with("WRONGTYPE"),
                "{call:?} on {key}: expected WRONGTYPE, got {text:?}"
            );
            assert_eq!(key_state(&mut con, key), before, "{call:?} changed {key}");
        }
    }
    assert_eq!(
        text(&call!(&mut con, "OTHERTYPE.GET", "o").expect("OTHERTYPE.GET")).as_deref(),
        Some("text")
    );
}

// ---------------------------------------------------------------------------------------
// Refusals

const TTL_ERROR: &str = "expected an integer number of milliseconds from 1 to 2592000000";
const TIMEOUT_ERROR: &str =
    "expected an integer number of milliseconds from 0 (no limit) to 2592000000";

fn arity(cmd: &str) -> String {
    format!("ERR wrong number of arguments for '{cmd}' command")
}

fn bad_ttl(cmd: &str) -> String {
    format!("ERR invalid ttl in '{cmd}' command: {TTL_ERROR}")
}

fn bad_timeout() -> String {
    format!("ERR invalid timeout in 'lock.acquire' command: {TIMEOUT_ERROR}")
}

/// What a refusal must answer.
enum Expect {
    Exact(String),
    /// Only the code is pinned (the reason may legitimately be one of several).
    Prefix(&'static str),
}

struct Refusal {
    args: Vec<Vec<u8>>,
    expect: Expect,
}

fn refusal(args: &[&[u8]], expect: Expect) -> Refusal {
    Refusal {
        args: args.iter().map(|a| a.to_vec()).collect(),
        expect,
    }
}

/// Sends each refused call against a held key and a free key (the placeholder `KEY`) and
/// checks the error text and that neither key changed.
fn check_refusals(cases: Vec<Refusal>) {
    let server = Server::start();
    let mut con = server.conn();
    acquire(&mut con, "held", b"me", 100_000);
    int(call!(&mut con, "LOCK.REENTER", "held", "me"), "REENTER");
    let held = key_state(&mut con, "held");
    let free = key_state(&mut con, "free");
    for case in &cases {
        let uses_key = case.args.iter().any(|a| a == b"KEY");
        let keys: &[&str] = if uses_key { &["held", "free"] } else { &["-"] };
        for key in keys {
            let mut command = redis::cmd(std::str::from_utf8(&case.args[0]).unwrap());
            for arg in &case.args[1..] {
                if arg == b"KEY" {
                    command.arg(*key);
                } else {
                    command.arg(arg.as_slice());
                }
            }
            let shown: Vec<String> = case
                .args
                .iter()
                .map(|a| {
                    let s = String::from_utf8_lossy(a);
                    if s.len() > 40 {
                        format!("{}...({} bytes)", &s[..20], a.len())
                    } else if a == b"KEY" {
                        key.to_string()
                    } else {
                        s.into_owned()
                    }
                })
                .collect();
            let text = error(run(&mut con, &command), &format!("{shown:?}"));
            match &case.expect {
                Expect::Exact(expected) => {
                    assert_eq!(&text, expected, "error text of {shown:?}")
                }
                Expect::Prefix(prefix) => assert!(
                    text.starts_with(prefix),
                    "{shown:?}: expected an error starting with {prefix:?}, got {text:?}"
                ),
            }
            assert!(
                !text.ends_with('.'),
                "{shown:?}: {text:?} ends with a period"
            );
            assert_eq!(
                key_state(&mut con, "held"),
                held,
                "{shown:?} changed a held lock"
            );
            assert_eq!(
                key_state(&mut con, "free"),
                free,
                "{shown:?} created a lock"
            );
        }
    }
    match call!(&mut con, "PING") {
        Ok(Value::SimpleString(s)) if s == "PONG" => {}
        other => panic!("PING after the refusals: {other:?}"),
    }
}

#[test]
fn wrong_arity_is_refused_for_every_command() {
    let e = |c: &str| Expect::Exact(arity(c));
    check_refusals(vec![
        refusal(&[b"LOCK.ACQUIRE"], e("lock.acquire")),
        refusal(&[b"LOCK.ACQUIRE", b"KEY"], e("lock.acquire")),
        refusal(&[b"LOCK.ACQUIRE", b"KEY", b"me"], e("lock.acquire")),
        refusal(&[b"LOCK.REENTER"], e("lock.reenter")),
        refusal(&[b"LOCK.REENTER", b"KEY"], e("lock.reenter")),
        refusal(
            &[b"LOCK.REENTER", b"KEY", b"me", b"10", b"20"],
            e("lock.reenter"),
        ),
        refusal(&[b"LOCK.RELEASE"], e("lock.release")),
        refusal(&[b"LOCK.RELEASE", b"KEY"], e("lock.release")),
        refusal(&[b"LOCK.RELEASE", b"KEY", b"me", b"x"], e("lock.release")),
        refusal(&[b"LOCK.RENEW"], e("lock.renew")),
        refusal(&[b"LOCK.RENEW", b"KEY"], e("lock.renew")),
        refusal(&[b"LOCK.RENEW", b"KEY", b"me"], e("lock.renew")),
        refusal(
            &[b"LOCK.RENEW", b"KEY", b"me", b"10", b"20"],
            e("lock.renew"),
        ),
        refusal(&[b"LOCK.INFO"], e("lock.info")),
        refusal(&[b"LOCK.INFO", b"KEY", b"x"], e("lock.info")),
        // Far too many arguments: refused whatever the reason given.
        refusal(
            &[
                b"LOCK.ACQUIRE",
                b"KEY",
                b"me",
                b"10",
                b"WAIT",
                b"1",
                b"a",
                b"b",
                b"c",
                b"d",
                b"e",
                b"f",
            ],
            Expect::Prefix("ERR "),
        ),
        refusal(
            &[
                b"LOCK.RELEASE",
                b"KEY",
                b"me",
                b"1",
                b"2",
                b"3",
                b"4",
                b"5",
                b"6",
                b"7",
                b"8",
            ],
            Expect::Exact(arity("lock.release")),
        ),
    ]);
}

#[test]
fn invalid_ttls_are_refused() {
    let bad: [&[u8]; 12] = [
        b"0",
        b"-1",
        b"1.5",
        b"abc",
        b"2592000001",
        b"99999999999999999999",
        b"",
        b"+5",
        b"05",
        b" 5",
        b"1e3",
        b"-9223372036854775808",
    ];
    let mut cases = Vec::new();
    for ttl in bad {
        cases.push(refusal(
            &[b"LOCK.ACQUIRE", b"KEY", b"me", ttl],
            Expect::Exact(bad_ttl("lock.acquire")),
        ));
        cases.push(refusal(
            &[b"LOCK.ACQUIRE", b"KEY", b"me", ttl, b"WAIT", b"10"],
            Expect::Exact(bad_ttl("lock.acquire")),
        ));
        cases.push(refusal(
            &[b"LOCK.REENTER", b"KEY", b"me", ttl],
            Expect::Exact(bad_ttl("lock.reenter")),
        ));
        cases.push(refusal(
            &[b"LOCK.RENEW", b"KEY", b"me", ttl],
            Expect::Exact(bad_ttl("lock.renew")),
        ));
    }
    check_refusals(cases);
}

#[test]
fn empty_and_too_long_owners_are_refused() {
    let long = vec![b'x'; 1025];
    let mut cases = Vec::new();
    for (cmd, tail) in [
        ("lock.acquire", &[&b"1000"[..]][..]),
        ("lock.reenter", &[][..]),
        ("lock.reenter", &[&b"1000"[..]][..]),
        ("lock.release", &[][..]),
        ("lock.renew", &[&b"1000"[..]][..]),
    ] {
        let name = cmd.to_uppercase();
        for (owner, expected) in [
            (&b""[..], format!("ERR empty owner in '{cmd}' command")),
            (
                long.as_slice(),
                format!("ERR owner longer than 1024 bytes in '{cmd}' command"),
            ),
        ] {
            let mut args: Vec<&[u8]> = vec![name.as_bytes(), b"KEY", owner];
            args.extend_from_slice(tail);
            cases.push(refusal(&args, Expect::Exact(expected)));
        }
    }
    check_refusals(cases);
}

#[test]
fn bad_options_are_refused() {
    let acquire = |tail: &[&[u8]], expect: Expect| {
        let mut args: Vec<&[u8]> = vec![b"LOCK.ACQUIRE", b"KEY", b"me", b"1000"];
        args.extend_from_slice(tail);
        refusal(&args, expect)
    };
    let unknown = |option: &str| {
        Expect::Exact(format!(
            "ERR unknown option '{option}' in 'lock.acquire' command"
        ))
    };
    check_refusals(vec![
        acquire(&[b"NX"], unknown("NX")),
        acquire(&[b"PX", b"10"], unknown("PX")),
        acquire(&[b"WAIT", b"10", b"extra"], unknown("extra")),
        acquire(&[b"WAITX", b"10"], unknown("WAITX")),
        acquire(&[b"a\r\nb"], unknown("a??b")),
        acquire(
            &[b"WAIT"],
            Expect::Exact("ERR option 'WAIT' needs a value in 'lock.acquire' command".into()),
        ),
        acquire(&[b"WAIT", b"-1"], Expect::Exact(bad_timeout())),
        acquire(&[b"WAIT", b"abc"], Expect::Exact(bad_timeout())),
        acquire(&[b"WAIT", b"1.5"], Expect::Exact(bad_timeout())),
        acquire(&[b"WAIT", b""], Expect::Exact(bad_timeout())),
        acquire(&[b"WAIT", b"2592000001"], Expect::Exact(bad_timeout())),
        acquire(
            &[b"WAIT", b"99999999999999999999"],
            Expect::Exact(bad_timeout()),
        ),
        acquire(
            &[b"WAIT", b"1", b"WAIT", b"2"],
            Expect::Exact("ERR option 'WAIT' given twice in 'lock.acquire' command".into()),
        ),
    ]);
}

#[test]
fn lock_apply_from_a_normal_client_is_refused() {
    let internal =
        "ERR 'lock.apply' is internal: only a master's replication stream or AOF loading may send it";
    // Far in the future, and a counter far above anything this server handed out.
    let expires = b"4102444800000";
    // Above any token of today's clock (2^50.7), below 2^53.
    let high = (1u64 << 52).to_string();
    check_refusals(vec![
        refusal(
            &[
                b"LOCK.APPLY",
                b"KEY",
                b"other",
                b"5",
                expires,
                b"7",
                high.as_bytes(),
            ],
            Expect::Exact(internal.into()),
        ),
        refusal(
            &[
                b"LOCK.APPLY",
                b"KEY",
                b"me",
                b"9",
                expires,
                high.as_bytes(),
                high.as_bytes(),
            ],
            Expect::Exact(internal.into()),
        ),
        refusal(&[b"LOCK.APPLY", b"KEY", b"other"], Expect::Prefix("ERR ")),
        refusal(&[b"LOCK.APPLY"], Expect::Prefix("ERR ")),
    ]);
    // The refused calls did not raise the token counter either.
    let server = Server::start();
    let mut con = server.conn();
    error(
        call!(
            &mut con,
            "LOCK.APPLY",
            "k",
            "other",
            1,
            "4102444800000",
            high.as_str(),
            high.as_str()
        ),
        "LOCK.APPLY",
    );
    assert_eq!(exists(&mut con, "k"), 0);
    let token = acquire(&mut con, "k2", b"me", 100_000);
    assert!(
        token < 1 << 52,
        "a refused LOCK.APPLY raised the token counter: {token}"
    );
}

// ---------------------------------------------------------------------------------------
// Owners are binary-safe

#[test]
fn owners_are_binary_safe() {
    let server = Server::start();
    let mut con = server.conn();
    let owner: &[u8] = b"\x00\xff\r\nowner\x00";
    let token = acquire(&mut con, "k", owner, 100_000);
    assert_eq!(lock_info(&mut con, "k").unwrap().owner, owner);
    for other in [
        &b"\x00\xff\r\nowner"[..],
        b"\x00\xfe\r\nowner\x00",
        b"\x00",
        b"\xff",
        b"\r\n",
    ] {
        assert_eq!(
            try_acquire(&mut con, "k", other, 100_000),
            None,
            "{other:?}"
        );
        nil(call!(&mut con, "LOCK.RELEASE", "k", other), "RELEASE other");
    }
    assert_eq!(acquire(&mut con, "k", owner, 100_000), token);
    assert_eq!(
        int(call!(&mut con, "LOCK.REENTER", "k", owner), "REENTER"),
        3
    );
    assert_eq!(
        int(call!(&mut con, "LOCK.RENEW", "k", owner, 100_000), "RENEW"),
        1
    );
    for remaining in [2, 1, 0] {
        assert_eq!(
            int(call!(&mut con, "LOCK.RELEASE", "k", owner), "RELEASE"),
            remaining
        );
    }
    assert_eq!(exists(&mut con, "k"), 0);
    for single in [&b"\x00"[..], b"\xff", b"\r\n"] {
        acquire(&mut con, "single", single, 100_000);
        assert_eq!(lock_info(&mut con, "single").unwrap().owner, single);
        assert_eq!(
            int(call!(&mut con, "LOCK.RELEASE", "single", single), "RELEASE"),
            0
        );
    }
}

// ---------------------------------------------------------------------------------------
// Fuzz: random argument lists never take the server down

fn fuzz_arg(rng: &mut XorShift, position: usize) -> Vec<u8> {
    const KEYS: [&str; 4] = ["k0", "k1", "k2", "str"];
    const OWNERS: [&str; 3] = ["a", "b", "a\x00"];
    const NUMBERS: [&str; 18] = [
        "0",
        "1",
        "-1",
        "20",
        "1000",
        "600000",
        "2592000000",
        "2592000001",
        "4294967295",
        "4294967296",
        "9007199254740991",
        "9223372036854775807",
        "-9223372036854775808",
        "99999999999999999999",
        "1.5",
        "",
        "+1",
        "01",
    ];
    const WORDS: [&str; 4] = ["WAIT", "wait", "NX", "KEEPTTL"];
    if position == 0 && rng.below(10) < 8 {
        return rng.pick(&KEYS).as_bytes().to_vec();
    }
    match rng.below(10) {
        0..=1 => rng.pick(&OWNERS).as_bytes().to_vec(),
        2..=4 => rng.pick(&NUMBERS).as_bytes().to_vec(),
        5 => rng.pick(&WORDS).as_bytes().to_vec(),
        6 => rng.pick(&KEYS).as_bytes().to_vec(),
        7 => (rng.next_u64() as i64).to_string().into_bytes(),
        _ => {
            let len = if rng.below(20) == 0 {
                1000 + rng.below(60) as usize
            } else {
                rng.below(24) as usize
            };
            (0..len).map(|_| rng.next_u64() as u8).collect()
        }
    }
}

#[test]
fn random_calls_never_take_the_server_down() {
    const COMMANDS: [&str; 6] = [
        "LOCK.ACQUIRE",
        "LOCK.REENTER",
        "LOCK.RELEASE",
        "LOCK.RENEW",
        "LOCK.INFO",
        "LOCK.APPLY",
    ];
    let server = Server::start();
    let mut con = server.conn();
    ok(call!(&mut con, "SET", "str", "v"), "SET");
    let mut rng = XorShift::new(0x5eed_1234_abcd_0042);
    for i in 0..2000 {
        let name = *rng.pick(&COMMANDS);
        let arity = rng.below(11) as usize;
        let mut args: Vec<Vec<u8>> = (0..arity).map(|p| fuzz_arg(&mut rng, p)).collect();
        // A WAIT with a valid-looking timeout may block: keep it short (never 0 = forever).
        for j in 0..args.len().saturating_sub(1) {
            if args[j].eq_ignore_ascii_case(b"WAIT")
                && std::str::from_utf8(&args[j + 1])
                    .ok()
                    .and_then(|s| s.parse::<i64>().ok())
                    .is_some()
            {
                args[j + 1] = b"20".to_vec();
            }
        }
        let mut command = redis::cmd(name);
        for arg in &args {
            command.arg(arg.as_slice());
        }
        match run(&mut con, &command) {
            Ok(Value::Int(_) | Value::Nil | Value::Array(_)) => {}
            Ok(other) => panic!("call {i} {name} {args:?}: unexpected reply {other:?}"),
            Err(text) => {
                assert!(
                    text.starts_with("ERR ") || text.starts_with("WRONGTYPE "),
                    "call {i} {name} {args:?}: error {text:?}"
                );
                assert!(
                    !text.contains("internal error"),
                    "call {i} {name} {args:?}: a caught bug: {text:?}"
                );
            }
        }
    }
    match call!(&mut con, "PING") {
        Ok(Value::SimpleString(s)) if s == "PONG" => {}
        other => panic!("PING after the fuzz loop: {other:?}"),
    }
    assert_eq!(
        text(&call!(&mut con, "GET", "str").unwrap()).as_deref(),
        Some("v")
    );
    // The module still works.
    acquire(&mut con, "after-fuzz", b"me", 1000);
    assert!(
        !server.log().contains("a bug in"),
        "the server log reports a caught bug:\n{}",
        server.log()
    );
}

// ---------------------------------------------------------------------------------------
// Command table

fn command_info(con: &mut redis::Connection, name: &str) -> Vec<Value> {
    match call!(con, "COMMAND", "INFO", name) {
        Ok(Value::Array(mut entries)) if entries.len() == 1 => match entries.remove(0) {
            Value::Array(fields) => fields,
            other => panic!("COMMAND INFO {name}: {other:?}"),
        },
        other => panic!("COMMAND INFO {name}: {other:?}"),
    }
}

fn flags(fields: &[Value]) -> Vec<String> {
    match &fields[2] {
        Value::Array(items) | Value::Set(items) => items.iter().filter_map(text).collect(),
        other => panic!("flags: {other:?}"),
    }
}

#[test]
fn the_command_table_marks_writes_reads_and_the_key() {
    let server = Server::start();
    let mut con = server.conn();
    for name in ["lock.acquire", "lock.reenter", "lock.release", "lock.renew"] {
        let fields = command_info(&mut con, name);
        assert_eq!(text(&fields[0]).as_deref(), Some(name));
        let flags = flags(&fields);
        assert!(flags.iter().any(|f| f == "write"), "{name} flags {flags:?}");
        assert!(
            !flags.iter().any(|f| f == "readonly"),
            "{name} flags {flags:?}"
        );
        assert_eq!(fields[3], Value::Int(1), "{name} first key");
        assert_eq!(fields[4], Value::Int(1), "{name} last key");
        assert_eq!(fields[5], Value::Int(1), "{name} key step");
    }
    // A new lock is refused under memory pressure (see also the OOM test below).
    let acquire_flags = flags(&command_info(&mut con, "lock.acquire"));
    assert!(
        acquire_flags.iter().any(|f| f == "denyoom"),
        "lock.acquire must be deny-oom: {acquire_flags:?}"
    );
    let fields = command_info(&mut con, "lock.info");
    let info_flags = flags(&fields);
    assert!(
        info_flags.iter().any(|f| f == "readonly"),
        "lock.info flags {info_flags:?}"
    );
    assert!(
        !info_flags.iter().any(|f| f == "write"),
        "lock.info flags {info_flags:?}"
    );
    assert_eq!(fields[3], Value::Int(1), "lock.info first key");

    let keys = call!(&mut con, "COMMAND", "GETKEYS", "lock.acquire", "k", "o", 10).unwrap();
    assert_eq!(keys, Value::Array(vec![Value::BulkString(b"k".to_vec())]));
    let keys = call!(
        &mut con,
        "COMMAND",
        "GETKEYS",
        "LOCK.ACQUIRE",
        "k2",
        "o",
        10,
        "WAIT",
        5
    )
    .unwrap();
    assert_eq!(keys, Value::Array(vec![Value::BulkString(b"k2".to_vec())]));
    let keys = call!(&mut con, "COMMAND", "GETKEYS", "lock.info", "k3").unwrap();
    assert_eq!(keys, Value::Array(vec![Value::BulkString(b"k3".to_vec())]));
}

#[test]
fn a_new_lock_is_refused_under_memory_pressure() {
    let server = Server::start();
    let mut con = server.conn();
    let token = acquire(&mut con, "held", b"me", 100_000);
    ok(
        call!(&mut con, "CONFIG", "SET", "maxmemory", 1),
        "CONFIG SET",
    );
    let text = error(
        call!(&mut con, "LOCK.ACQUIRE", "new", "me", 100_000),
        "ACQUIRE under OOM",
    );
    assert!(
        text.starts_with("OOM"),
        "expected an OOM error, got {text:?}"
    );
    assert_eq!(exists(&mut con, "new"), 0);
    // The held lock was not evicted and can be read.
    assert_eq!(lock_info(&mut con, "held").unwrap().token, token);
    ok(
        call!(&mut con, "CONFIG", "SET", "maxmemory", 0),
        "CONFIG SET",
    );
    acquire(&mut con, "new", b"me", 100_000);
}

// ---------------------------------------------------------------------------------------
// Transactions and scripts

#[test]
fn commands_work_inside_multi_exec() {
    let server = Server::start();
    let mut con = server.conn();
    ok(call!(&mut con, "MULTI"), "MULTI");
    for command in [
        call!(&mut con, "LOCK.ACQUIRE", "k", "me", 100_000),
        call!(&mut con, "LOCK.REENTER", "k", "me"),
        call!(&mut con, "LOCK.RENEW", "k", "me", 200_000),
        call!(&mut con, "LOCK.INFO", "k"),
        call!(&mut con, "LOCK.ACQUIRE", "k", "me", 0),
        call!(&mut con, "LOCK.RELEASE", "k", "me"),
        call!(&mut con, "LOCK.ACQUIRE", "k", "other", 100_000),
    ] {
        match command {
            Ok(Value::SimpleString(s)) if s == "QUEUED" => {}
            other => panic!("inside MULTI: {other:?}"),
        }
    }
    let Value::Array(replies) = call!(&mut con, "EXEC").unwrap() else {
        panic!("EXEC did not answer an array");
    };
    assert_eq!(replies.len(), 7, "{replies:?}");
    let Value::Int(token) = replies[0] else {
        panic!("ACQUIRE in EXEC: {:?}", replies[0]);
    };
    assert_eq!(replies[1], Value::Int(2));
    assert_eq!(replies[2], Value::Int(1));
    let info = LockInfo::parse(&replies[3]).unwrap();
    assert_eq!((info.count, info.token), (2, token));
    assert!(info.ttl > 100_000, "RENEW inside EXEC: ttl {}", info.ttl);
    match &replies[4] {
        Value::ServerError(e) => assert_eq!(error_text(e), bad_ttl("lock.acquire")),
        other => panic!("refused ACQUIRE in EXEC: {other:?}"),
    }
    assert_eq!(replies[5], Value::Int(1));
    assert_eq!(replies[6], Value::Nil);
    let info = lock_info(&mut con, "k").unwrap();
    assert_eq!((info.owner.as_slice(), info.count), (&b"me"[..], 1));
}

#[test]
fn commands_work_from_a_lua_script() {
    let server = Server::start();
    let mut con = server.conn();
    let script = "return redis.call('LOCK.ACQUIRE', KEYS[1], ARGV[1], ARGV[2])";
    let token = int(call!(&mut con, "EVAL", script, 1, "k", "me", 1000), "EVAL");
    assert!(token > 0);
    assert_eq!(
        int(
            call!(&mut con, "EVAL", script, 1, "k", "me", 100_000),
            "EVAL reentry"
        ),
        token
    );
    nil(
        call!(&mut con, "EVAL", script, 1, "k", "other", 1000),
        "EVAL other owner",
    );
    let info = lock_info(&mut con, "k").unwrap();
    assert_eq!((info.count, info.token), (2, token));
    let text = error(
        call!(&mut con, "EVAL", script, 1, "k", "me", 0),
        "EVAL with ttl 0",
    );
    assert!(text.contains("invalid ttl"), "{text:?}");
    let release = "return redis.call('LOCK.RELEASE', KEYS[1], ARGV[1])";
    assert_eq!(
        int(
            call!(&mut con, "EVAL", release, 1, "k", "me"),
            "EVAL release"
        ),
        1
    );
    let info_script = "return redis.call('LOCK.INFO', KEYS[1])";
    let reply = call!(&mut con, "EVAL", info_script, 1, "k").unwrap();
    let info = LockInfo::parse(&reply).unwrap();
    assert_eq!((info.count, info.token), (1, token));
}

#[test]
fn wait_inside_multi_or_lua_does_not_block() {
    let server = Server::start();
    let mut con = server.conn();
    let token = acquire(&mut con, "k", b"me", 100_000);
    let before = key_state(&mut con, "k");
    ok(call!(&mut con, "MULTI"), "MULTI");
    call!(&mut con, "LOCK.ACQUIRE", "k", "other", 1000, "WAIT", 0).unwrap();
    // README: inside MULTI or a script WAIT is a plain try, which answers nil on a held lock.
    assert_eq!(
        call!(&mut con, "EXEC").unwrap(),
        Value::Array(vec![Value::Nil])
    );
    let script = "return redis.call('LOCK.ACQUIRE', KEYS[1], ARGV[1], 1000, 'WAIT', 0)";
    nil(
        call!(&mut con, "EVAL", script, 1, "k", "other"),
        "WAIT inside Lua",
    );
    assert_eq!(key_state(&mut con, "k"), before);
    assert_eq!(
        server.info_field("clients", "blocked_clients").as_deref(),
        Some("0")
    );
    // A WAIT that can be served at once works in both.
    ok(call!(&mut con, "MULTI"), "MULTI");
    call!(&mut con, "LOCK.ACQUIRE", "k", "me", 1000, "WAIT", 0).unwrap();
    assert_eq!(
        call!(&mut con, "EXEC").unwrap(),
        Value::Array(vec![Value::Int(token)])
    );
}

// ---------------------------------------------------------------------------------------
// Blocking acquisition (WAIT)

fn spawn_waiter(
    server: &Server,
    key: &'static str,
    owner: &'static str,
    ttl: u64,
    timeout: u64,
) -> std::thread::JoinHandle<Result<Value, String>> {
    let mut con = server.conn();
    std::thread::spawn(move || call!(&mut con, "LOCK.ACQUIRE", key, owner, ttl, "WAIT", timeout))
}

fn joined_token(handle: std::thread::JoinHandle<Result<Value, String>>, who: &str) -> i64 {
    let reply = handle.join().expect("waiter thread");
    int(reply, who)
}

#[test]
fn a_waiter_is_handed_the_lock_on_release_first_come_first_served() {
    let server = Server::start();
    let mut con = server.conn();
    let first = acquire(&mut con, "k", b"a", 100_000);
    let b = spawn_waiter(&server, "k", "b", 50_000, 20_000);
    server.wait_for_blocked_clients(1);
    let c = spawn_waiter(&server, "k", "c", 40_000, 20_000);
    server.wait_for_blocked_clients(2);
    assert_eq!(lock_info(&mut con, "k").unwrap().waiters, 2);
    // A plain try by a newcomer still fails.
    assert_eq!(try_acquire(&mut con, "k", b"d", 1000), None);

    assert_eq!(int(call!(&mut con, "LOCK.RELEASE", "k", "a"), "RELEASE"), 0);
    let second = joined_token(b, "waiter b");
    assert!(second > first, "handed token {second} <= {first}");
    let info = lock_info(&mut con, "k").expect("handed, not freed");
    assert_eq!(info.owner, b"b");
    assert_eq!((info.count, info.token, info.waiters), (1, second, 1));
    let left = pttl(&mut con, "k");
    assert!(left > 0 && left <= 50_000, "PTTL after hand-off {left}");
    nil(call!(&mut con, "LOCK.RELEASE", "k", "a"), "old holder");

    assert_eq!(int(call!(&mut con, "LOCK.RELEASE", "k", "b"), "RELEASE"), 0);
    let third = joined_token(c, "waiter c");
    assert!(third > second);
    let info = lock_info(&mut con, "k").unwrap();
    assert_eq!(info.owner, b"c");
    assert_eq!((info.count, info.token, info.waiters), (1, third, 0));
    server.wait_for_blocked_clients(0);
    assert_eq!(int(call!(&mut con, "LOCK.RELEASE", "k", "c"), "RELEASE"), 0);
    assert_eq!(exists(&mut con, "k"), 0);
}

#[test]
fn a_release_to_a_count_above_zero_hands_nothing() {
    let server = Server::start();
    let mut con = server.conn();
    let token = acquire(&mut con, "k", b"a", 100_000);
    acquire(&mut con, "k", b"a", 100_000);
    let b = spawn_waiter(&server, "k", "b", 50_000, 20_000);
    server.wait_for_blocked_clients(1);
    assert_eq!(int(call!(&mut con, "LOCK.RELEASE", "k", "a"), "RELEASE"), 1);
    let info = lock_info(&mut con, "k").unwrap();
    assert_eq!(
        (info.owner.as_slice(), info.count, info.token, info.waiters),
        (&b"a"[..], 1, token, 1)
    );
    assert_eq!(
        server.info_field("clients", "blocked_clients").as_deref(),
        Some("1")
    );
    assert_eq!(int(call!(&mut con, "LOCK.RELEASE", "k", "a"), "RELEASE"), 0);
    assert!(joined_token(b, "waiter") > token);
}

#[test]
fn a_waiter_that_times_out_gets_nil_and_leaves_the_queue() {
    let server = Server::start();
    let mut con = server.conn();
    acquire(&mut con, "k", b"a", 100_000);
    let before = key_state(&mut con, "k");
    nil(
        call!(&mut con, "LOCK.ACQUIRE", "k", "b", 1000, "WAIT", 50),
        "WAIT 50 on a held lock",
    );
    assert_eq!(key_state(&mut con, "k"), before);
    assert_eq!(lock_info(&mut con, "k").unwrap().waiters, 0);
    server.wait_for_blocked_clients(0);
    // The release frees the lock: nobody is left to hand it to.
    assert_eq!(int(call!(&mut con, "LOCK.RELEASE", "k", "a"), "RELEASE"), 0);
    assert_eq!(exists(&mut con, "k"), 0);
}

#[test]
fn a_disconnected_waiter_leaves_the_queue() {
    let server = Server::start();
    let mut con = server.conn();
    acquire(&mut con, "k", b"a", 100_000);
    let mut waiter = server.conn();
    let id = int(call!(&mut waiter, "CLIENT", "ID"), "CLIENT ID");
    let handle = std::thread::spawn(move || {
        use redis::ConnectionLike;
        let mut command = redis::cmd("LOCK.ACQUIRE");
        command.arg("k").arg("b").arg(1000).arg("WAIT").arg(0);
        // The connection is killed: the reply is an I/O error.
        let reply = waiter.req_command(&command);
        assert!(reply.is_err(), "the killed waiter got {reply:?}");
    });
    server.wait_for_blocked_clients(1);
    assert_eq!(lock_info(&mut con, "k").unwrap().waiters, 1);
    assert_eq!(
        int(call!(&mut con, "CLIENT", "KILL", "ID", id), "CLIENT KILL"),
        1
    );
    handle.join().unwrap();
    server.wait_for_blocked_clients(0);
    wait_until("the killed waiter to leave the queue", || {
        lock_info(&mut con, "k").unwrap().waiters == 0
    });
    assert_eq!(int(call!(&mut con, "LOCK.RELEASE", "k", "a"), "RELEASE"), 0);
    assert_eq!(
        exists(&mut con, "k"),
        0,
        "the lock was handed to a dead client"
    );
}

#[test]
fn a_waiter_is_handed_a_lock_freed_by_expiry() {
    let server = Server::start();
    let mut con = server.conn();
    // One pipeline on one connection: the waiter's call runs right after the holder's, in the
    // same event-loop turn, so it certainly finds the lock held and queues for its expiry. The
    // WAIT bound is generous: it only keeps a failing test from hanging.
    let mut pipe = redis::pipe();
    pipe.cmd("LOCK.ACQUIRE").arg("k").arg("a").arg(300);
    pipe.cmd("LOCK.ACQUIRE")
        .arg("k")
        .arg("b")
        .arg(50_000)
        .arg("WAIT")
        .arg(10_000);
    let replies: (i64, Value) = pipe.query(&mut con).expect("hold, then wait");
    let (first, Value::Int(token)) = replies else {
        panic!("waiter on a lock that expires: {replies:?}");
    };
    assert!(token > first);
    assert_eq!(lock_info(&mut con, "k").unwrap().owner, b"b");
}

#[test]
fn a_waiter_is_handed_a_lock_freed_by_del() {
    let server = Server::start();
    let mut con = server.conn();
    let first = acquire(&mut con, "k", b"a", 100_000);
    let b = spawn_waiter(&server, "k", "b", 50_000, 10_000);
    server.wait_for_blocked_clients(1);
    assert_eq!(int(call!(&mut con, "DEL", "k"), "DEL"), 1);
    let token = joined_token(b, "waiter on a lock force-released by DEL");
    assert!(token > first);
    assert_eq!(lock_info(&mut con, "k").unwrap().owner, b"b");
}

// ---------------------------------------------------------------------------------------
// Loading

#[test]
fn the_module_loads_at_runtime_with_module_load() {
    let server = Server::start_without_module(&["--enable-module-command", "yes"]);
    let mut con = server.conn();
    let text = error(
        call!(&mut con, "LOCK.ACQUIRE", "k", "me", 1000),
        "before MODULE LOAD",
    );
    assert!(text.starts_with("ERR unknown command"), "{text:?}");
    let path = module_path();
    ok(
        call!(&mut con, "MODULE", "LOAD", path.display().to_string()),
        "MODULE LOAD",
    );
    let token = acquire(&mut con, "k", b"me", 100_000);
    assert_eq!(lock_info(&mut con, "k").unwrap().token, token);
}

/// Places `target/release/librlock.so` in the server's dir: `--dir` changes the working
/// directory before modules load, so redis.conf's relative `loadmodule` resolves there.
fn link_module(dir: &std::path::Path) {
    let release = dir.join("target/release");
    std::fs::create_dir_all(&release).unwrap();
    std::os::unix::fs::symlink(module_path(), release.join("librlock.so")).unwrap();
}

#[test]
fn the_repos_redis_conf_starts_a_server_with_the_module() {
    let config = repo_root().join("redis.conf");
    if !config.is_file() {
        eprintln!("skipped: {} does not exist yet", config.display());
        return;
    }
    let server = Server::start_options(Options {
        load_module: false,
        config_file: Some(config),
        cwd: Some(repo_root()),
        args: Vec::new(),
        prepare_dir: Some(link_module),
    });
    let mut con = server.conn();
    acquire(&mut con, "k", b"me", 100_000);
    let policy = match call!(&mut con, "CONFIG", "GET", "maxmemory-policy").unwrap() {
        Value::Array(items) => text(&items[1]).unwrap(),
        other => panic!("CONFIG GET: {other:?}"),
    };
    assert_eq!(policy, "noeviction");
}

#[test]
fn long_calls_are_refused_for_what_is_wrong_with_them() {
    let server = Server::start();
    let mut con = server.conn();
    let unknown = error(
        call!(
            &mut con,
            "LOCK.ACQUIRE",
            "k",
            "o",
            100,
            "NX",
            "a",
            "b",
            "c",
            "d",
            "e",
            "f"
        ),
        "many arguments",
    );
    assert_eq!(unknown, "ERR unknown option 'NX' in 'lock.acquire' command");
    let twice = error(
        call!(
            &mut con,
            "LOCK.ACQUIRE",
            "k",
            "o",
            100,
            "WAIT",
            1,
            "WAIT",
            2,
            "WAIT",
            3
        ),
        "WAIT many times",
    );
    assert_eq!(
        twice,
        "ERR option 'WAIT' given twice in 'lock.acquire' command"
    );
    assert_eq!(int(call!(&mut con, "EXISTS", "k"), "nothing taken"), 0);
}
