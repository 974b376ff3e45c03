//! README contract lines about what an admin (or the server) does to a lock key, and the
//! limits: COPY, RENAME, MOVE, an overwrite by another lock, a permanent lock (PERSIST),
//! MEMORY USAGE, `INFO lock`, memory pressure, the hold-count limit and the internal
//! LOCK.TOKENS.

mod common;

use common::*;
use redis::Value;

/// A connection blocked in `LOCK.ACQUIRE key owner ttl WAIT 0`; its reply comes from
/// `join()`.
fn waiter(
    server: &Server,
    key: &'static str,
    owner: &'static str,
    blocked_before: usize,
) -> std::thread::JoinHandle<Result<Value, String>> {
    let mut con = server.conn();
    let handle =
        std::thread::spawn(move || call!(&mut con, "LOCK.ACQUIRE", key, owner, 60000, "WAIT", 0));
    server.wait_for_blocked_clients(blocked_before + 1);
    handle
}

#[test]
fn info_of_a_lock_made_permanent_by_an_admin_shows_ttl_minus_one() {
    let server = Server::start();
    for resp3 in [false, true] {
        let mut con = if resp3 {
            server.conn_resp3()
        } else {
            server.conn()
        };
        let token = acquire(&mut con, "k", "me", 100_000);
        assert!(lock_info(&mut con, "k").expect("held").ttl > 0);
        assert_eq!(int(call!(&mut con, "PERSIST", "k"), "PERSIST"), 1);
        let info = lock_info(&mut con, "k").expect("still held");
        assert_eq!(
            (info.owner.as_slice(), info.count, info.ttl, info.token),
            (&b"me"[..], 1, -1, token),
            "resp3: {resp3}"
        );
        assert_eq!(int(call!(&mut con, "PTTL", "k"), "PTTL"), -1);
        // Renewing gives it an expiry again.
        assert_eq!(
            int(call!(&mut con, "LOCK.RENEW", "k", "me", 50_000), "RENEW"),
            1
        );
        let ttl = lock_info(&mut con, "k").expect("held").ttl;
        assert!(ttl > 0 && ttl <= 50_000, "ttl after RENEW: {ttl}");
        assert_eq!(int(call!(&mut con, "DEL", "k"), "DEL"), 1);
    }
}

#[test]
fn the_hold_count_stops_at_2047_with_an_error_that_changes_nothing() {
    let server = Server::start();
    let mut con = server.conn();
    let token = acquire(&mut con, "k", "me", 100_000);
    let mut pipe = redis::pipe();
    for _ in 1..2047 {
        pipe.cmd("LOCK.ACQUIRE").arg("k").arg("me").arg(100_000);
    }
    let replies: Vec<i64> = pipe.query(&mut con).expect("2046 reentries");
    assert!(
        replies.iter().all(|&t| t == token),
        "reentry keeps the token"
    );
    assert_eq!(lock_info(&mut con, "k").expect("held").count, 2047);
    let before = key_state(&mut con, "k");
    assert_eq!(
        error(
            call!(&mut con, "LOCK.ACQUIRE", "k", "me", 100_000),
            "2048th ACQUIRE"
        ),
        "ERR hold count would overflow in 'lock.acquire' command"
    );
    assert_eq!(
        error(
            call!(&mut con, "LOCK.REENTER", "k", "me", 100_000),
            "2048th REENTER"
        ),
        "ERR hold count would overflow in 'lock.reenter' command"
    );
    assert_eq!(
        error(call!(&mut con, "LOCK.REENTER", "k", "me"), "2048th REENTER"),
        "ERR hold count would overflow in 'lock.reenter' command"
    );
    assert_eq!(key_state(&mut con, "k"), before);
    // One release makes room for exactly one more hold.
    assert_eq!(
        int(call!(&mut con, "LOCK.RELEASE", "k", "me"), "RELEASE"),
        2046
    );
    assert_eq!(
        int(call!(&mut con, "LOCK.REENTER", "k", "me"), "REENTER"),
        2047
    );
    let mut pipe = redis::pipe();
    for _ in 0..2047 {
        pipe.cmd("LOCK.RELEASE").arg("k").arg("me");
    }
    let left: Vec<i64> = pipe.query(&mut con).expect("2047 releases");
    assert_eq!(left, (0..2047).rev().collect::<Vec<i64>>());
    assert_eq!(exists(&mut con, "k"), 0);
}

#[test]
fn lock_tokens_from_a_normal_client_is_refused_and_raises_nothing() {
    let server = Server::start();
    let mut con = server.conn();
    // Above any token of today's clock (2^50.7), below 2^53.
    let high = (1u64 << 52).to_string();
    assert_eq!(
        error(call!(&mut con, "LOCK.TOKENS", high.as_str()), "LOCK.TOKENS"),
        "ERR 'lock.tokens' is internal: only a master's replication stream or AOF loading may send it"
    );
    let token = acquire(&mut con, "k", "me", 100_000);
    assert!(
        token < 1 << 52,
        "a refused LOCK.TOKENS raised the counter: {token}"
    );
    // Inside MULTI and from a script it is a normal client's call as well.
    ok(call!(&mut con, "MULTI"), "MULTI");
    call!(&mut con, "LOCK.TOKENS", high.as_str()).expect("queued");
    match call!(&mut con, "EXEC") {
        Ok(Value::Array(replies)) => match &replies[..] {
            [Value::ServerError(e)] => assert!(error_text(e).contains("is internal"), "{e:?}"),
            other => panic!("EXEC: {other:?}"),
        },
        other => panic!("EXEC: {other:?}"),
    }
    let script = "return redis.call('LOCK.TOKENS', ARGV[1])";
    let refused = error(
        call!(&mut con, "EVAL", script, 0, high.as_str()),
        "EVAL LOCK.TOKENS",
    );
    assert!(refused.contains("is internal"), "{refused}");
    let next = acquire(&mut con, "k2", "me", 100_000);
    assert!(
        next > token && next < 1 << 52,
        "refused LOCK.TOKENS calls raised the counter: {token} then {next}"
    );
}

#[test]
fn copy_duplicates_a_lock_with_its_token_and_expiry() {
    let server = Server::start();
    let mut con = server.conn();
    let token = acquire(&mut con, "k", "a", 100_000);
    assert_eq!(int(call!(&mut con, "LOCK.REENTER", "k", "a"), "REENTER"), 2);
    assert_eq!(int(call!(&mut con, "COPY", "k", "copy"), "COPY"), 1);
    let (original, copy) = (key_state(&mut con, "k"), key_state(&mut con, "copy"));
    assert_eq!(copy.lock, Some((b"a".to_vec(), 2, token, 0)));
    assert_eq!(
        (copy.key_type.as_str(), copy.pexpiretime),
        (original.key_type.as_str(), original.pexpiretime)
    );
    // Two independent locks now: releasing the copy leaves the original alone.
    assert_eq!(
        int(call!(&mut con, "LOCK.RELEASE", "copy", "a"), "RELEASE"),
        1
    );
    assert_eq!(
        int(call!(&mut con, "LOCK.RELEASE", "copy", "a"), "RELEASE"),
        0
    );
    assert_eq!(exists(&mut con, "copy"), 0);
    assert_eq!(key_state(&mut con, "k"), original);
    // COPY onto a held lock without REPLACE copies nothing.
    let other = acquire(&mut con, "other", "b", 100_000);
    assert_eq!(int(call!(&mut con, "COPY", "k", "other"), "COPY"), 0);
    assert_eq!(
        lock_info(&mut con, "other").expect("held").stable(),
        (b"b".to_vec(), 1, other, 0)
    );
    // To another database.
    assert_eq!(
        int(call!(&mut con, "COPY", "k", "k", "DB", 1), "COPY DB"),
        1
    );
    ok(call!(&mut con, "SELECT", 1), "SELECT");
    assert_eq!(
        lock_info(&mut con, "k").expect("copied").stable(),
        (b"a".to_vec(), 2, token, 0)
    );
}

#[test]
fn rename_and_move_take_the_lock_with_its_token_and_expiry() {
    let server = Server::start();
    let mut con = server.conn();
    let token = acquire(&mut con, "k", "a", 100_000);
    let expiry = pexpiretime(&mut con, "k");
    ok(call!(&mut con, "RENAME", "k", "renamed"), "RENAME");
    assert_eq!(exists(&mut con, "k"), 0);
    assert_eq!(
        lock_info(&mut con, "renamed").expect("renamed").stable(),
        (b"a".to_vec(), 1, token, 0)
    );
    assert_eq!(pexpiretime(&mut con, "renamed"), expiry);
    // The old name is free for anyone; the lock under the new name is still a's.
    let fresh = acquire(&mut con, "k", "b", 100_000);
    assert!(fresh > token);
    nil(
        call!(&mut con, "LOCK.ACQUIRE", "renamed", "b", 1000),
        "renamed lock held",
    );

    assert_eq!(int(call!(&mut con, "MOVE", "renamed", 1), "MOVE"), 1);
    assert_eq!(exists(&mut con, "renamed"), 0);
    ok(call!(&mut con, "SELECT", 1), "SELECT");
    assert_eq!(
        lock_info(&mut con, "renamed").expect("moved").stable(),
        (b"a".to_vec(), 1, token, 0)
    );
    assert_eq!(pexpiretime(&mut con, "renamed"), expiry);
    assert_eq!(
        int(call!(&mut con, "LOCK.RELEASE", "renamed", "a"), "RELEASE"),
        0
    );
    assert_eq!(exists(&mut con, "renamed"), 0);
}

#[test]
fn renaming_a_waited_for_lock_away_hands_the_name_to_its_waiter() {
    let server = Server::start();
    let mut con = server.conn();
    let token = acquire(&mut con, "k", "a", 100_000);
    let w = waiter(&server, "k", "w", 0);
    ok(call!(&mut con, "RENAME", "k", "elsewhere"), "RENAME");
    // The name k is free now: its waiter gets it, with a new token.
    let handed = int(w.join().expect("waiter thread"), "the waiter of k");
    assert!(handed > token);
    assert_eq!(
        lock_info(&mut con, "k").expect("handed").stable(),
        (b"w".to_vec(), 1, handed, 0)
    );
    assert_eq!(
        lock_info(&mut con, "elsewhere").expect("moved").stable(),
        (b"a".to_vec(), 1, token, 0)
    );
}

#[test]
fn a_lock_overwritten_by_another_lock_keeps_its_waiters_for_the_new_one() {
    let server = Server::start();
    let mut con = server.conn();
    let source = acquire(&mut con, "source", "a", 100_000);
    let target = acquire(&mut con, "target", "b", 100_000);
    let w = waiter(&server, "target", "w", 0);
    for overwrite in ["COPY", "RENAME"] {
        if overwrite == "COPY" {
            assert_eq!(
                int(
                    call!(&mut con, "COPY", "source", "target", "REPLACE"),
                    "COPY REPLACE"
                ),
                1
            );
        } else {
            // RENAME onto the lock that COPY put there: another overwrite by a lock.
            acquire(&mut con, "source2", "c", 100_000);
            ok(
                call!(&mut con, "RENAME", "source2", "target"),
                "RENAME onto a lock",
            );
        }
        let info = lock_info(&mut con, "target").expect("a lock is there");
        // The waiter still waits: the key holds a lock, now another owner's.
        assert_eq!(info.waiters, 1, "after {overwrite}");
        server.wait_for_blocked_clients(1);
        let owner = if overwrite == "COPY" { "a" } else { "c" };
        assert_eq!(info.owner, owner.as_bytes(), "after {overwrite}");
        if overwrite == "COPY" {
            assert_eq!(info.token, source);
        }
        nil(
            call!(&mut con, "LOCK.RELEASE", "target", "b"),
            "the overwritten owner's release",
        );
    }
    // Its release hands the lock to the waiter.
    assert_eq!(
        int(call!(&mut con, "LOCK.RELEASE", "target", "c"), "RELEASE"),
        0
    );
    let handed = int(w.join().expect("waiter thread"), "the waiter");
    assert!(handed > target);
    assert_eq!(lock_info(&mut con, "target").expect("handed").owner, b"w");
}

#[test]
fn a_lock_overwritten_by_restore_replace_keeps_its_waiters_for_the_new_one() {
    let server = Server::start();
    let mut con = server.conn();
    let source = acquire(&mut con, "source", "a", 100_000);
    let payload = match call!(&mut con, "DUMP", "source") {
        Ok(Value::BulkString(bytes)) => bytes,
        other => panic!("DUMP: {other:?}"),
    };
    acquire(&mut con, "target", "b", 100_000);
    let w = waiter(&server, "target", "w", 0);
    ok(
        call!(&mut con, "RESTORE", "target", 100_000, payload, "REPLACE"),
        "RESTORE REPLACE",
    );
    let info = lock_info(&mut con, "target").expect("restored");
    assert_eq!(info.stable(), (b"a".to_vec(), 1, source, 1));
    assert_eq!(
        int(call!(&mut con, "LOCK.RELEASE", "target", "a"), "RELEASE"),
        0
    );
    let handed = int(w.join().expect("waiter thread"), "the waiter");
    assert!(handed > source);
}

#[test]
fn memory_usage_counts_the_owner() {
    let server = Server::start();
    let mut con = server.conn();
    acquire(&mut con, "short", "a", 100_000);
    let long_owner = "o".repeat(1000);
    acquire(&mut con, "long", &long_owner, 100_000);
    let short = int(
        call!(&mut con, "MEMORY", "USAGE", "short"),
        "MEMORY USAGE short",
    );
    let long = int(
        call!(&mut con, "MEMORY", "USAGE", "long"),
        "MEMORY USAGE long",
    );
    assert!(short > 0, "MEMORY USAGE of a lock: {short}");
    // MEMORY USAGE counts allocations as the allocator sized them: the short lock's rounding
    // up (to 24 usable bytes under glibc malloc, Valkey 9.1's build) shrinks the difference.
    assert!(
        long - short >= 1000 - 32,
        "a 1000-byte owner counts: {short} -> {long}"
    );
    nil(
        call!(&mut con, "MEMORY", "USAGE", "free"),
        "MEMORY USAGE of a free lock",
    );
}

#[test]
fn info_lock_reports_waiters_keys_waited_for_and_the_last_token() {
    let server = Server::start();
    let mut con = server.conn();
    for field in [
        "lock_waiters",
        "lock_keys_waited_for",
        "lock_last_token",
        "lock_replication_idle",
    ] {
        info_int(&mut con, "lock", field);
    }
    assert_eq!(info_int(&mut con, "lock", "lock_waiters"), 0);
    assert_eq!(info_int(&mut con, "lock", "lock_keys_waited_for"), 0);
    let first = acquire(&mut con, "k", "a", 100_000);
    assert_eq!(info_int(&mut con, "lock", "lock_last_token"), first);
    let second = acquire(&mut con, "j", "a", 100_000);
    assert_eq!(info_int(&mut con, "lock", "lock_last_token"), second);
    let w1 = waiter(&server, "k", "w1", 0);
    let w2 = waiter(&server, "k", "w2", 1);
    let w3 = waiter(&server, "j", "w3", 2);
    assert_eq!(info_int(&mut con, "lock", "lock_waiters"), 3);
    assert_eq!(info_int(&mut con, "lock", "lock_keys_waited_for"), 2);
    assert_eq!(int(call!(&mut con, "LOCK.RELEASE", "j", "a"), "RELEASE"), 0);
    let third = int(w3.join().expect("w3"), "w3");
    assert_eq!(info_int(&mut con, "lock", "lock_last_token"), third);
    assert_eq!(
        (
            info_int(&mut con, "lock", "lock_waiters"),
            info_int(&mut con, "lock", "lock_keys_waited_for")
        ),
        (2, 1)
    );
    assert_eq!(int(call!(&mut con, "DEL", "k"), "DEL"), 1);
    int(w1.join().expect("w1"), "w1");
    assert_eq!(
        (
            info_int(&mut con, "lock", "lock_waiters"),
            info_int(&mut con, "lock", "lock_keys_waited_for")
        ),
        (1, 1)
    );
    assert_eq!(
        int(call!(&mut con, "LOCK.RELEASE", "k", "w1"), "RELEASE"),
        0
    );
    int(w2.join().expect("w2"), "w2");
    assert_eq!(
        (
            info_int(&mut con, "lock", "lock_waiters"),
            info_int(&mut con, "lock", "lock_keys_waited_for")
        ),
        (0, 0)
    );
}

#[test]
fn under_memory_pressure_release_renew_and_reenter_work_while_acquire_is_refused() {
    let server = Server::start();
    let mut con = server.conn();
    let token = acquire(&mut con, "held", "me", 100_000);
    ok(
        call!(&mut con, "CONFIG", "SET", "maxmemory", 1),
        "CONFIG SET maxmemory",
    );
    for acquire_call in [
        vec!["LOCK.ACQUIRE", "new", "me", "100000"],
        vec!["LOCK.ACQUIRE", "new", "me", "100000", "WAIT", "10"],
        // deny-oom: the holder's reentry through ACQUIRE is refused too; REENTER is not.
        vec!["LOCK.ACQUIRE", "held", "me", "100000"],
    ] {
        let mut command = redis::cmd(acquire_call[0]);
        for arg in &acquire_call[1..] {
            command.arg(*arg);
        }
        let refused = error(run(&mut con, &command), "ACQUIRE under OOM");
        assert!(refused.starts_with("OOM "), "{acquire_call:?}: {refused}");
    }
    assert_eq!(exists(&mut con, "new"), 0);
    assert_eq!(
        int(call!(&mut con, "LOCK.REENTER", "held", "me"), "REENTER"),
        2
    );
    assert_eq!(
        int(
            call!(&mut con, "LOCK.REENTER", "held", "me", 200_000),
            "REENTER ttl"
        ),
        3
    );
    assert_eq!(
        int(
            call!(&mut con, "LOCK.RENEW", "held", "me", 300_000),
            "RENEW"
        ),
        1
    );
    let info = lock_info(&mut con, "held").expect("held");
    assert_eq!((info.count, info.token), (3, token));
    assert!(
        info.ttl > 200_000,
        "RENEW under OOM moved the expiry: {}",
        info.ttl
    );
    for left in [2, 1, 0] {
        assert_eq!(
            int(call!(&mut con, "LOCK.RELEASE", "held", "me"), "RELEASE"),
            left
        );
    }
    assert_eq!(exists(&mut con, "held"), 0);
    ok(
        call!(&mut con, "CONFIG", "SET", "maxmemory", 0),
        "CONFIG SET maxmemory",
    );
    assert!(acquire(&mut con, "new", "me", 100_000) > token);
}

#[test]
fn a_waiter_handed_a_lock_under_memory_pressure_gets_it() {
    // The handoff is part of the release, which is never refused.
    let server = Server::start();
    let mut con = server.conn();
    acquire(&mut con, "k", "a", 100_000);
    let w = waiter(&server, "k", "w", 0);
    ok(
        call!(&mut con, "CONFIG", "SET", "maxmemory", 1),
        "CONFIG SET maxmemory",
    );
    assert_eq!(int(call!(&mut con, "LOCK.RELEASE", "k", "a"), "RELEASE"), 0);
    int(w.join().expect("waiter"), "the waiter");
    assert_eq!(lock_info(&mut con, "k").expect("handed").owner, b"w");
}
