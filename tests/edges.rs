//! The server at its edges (issues 17 and 18): retried calls with `HELD n` take effect once,
//! `SESSION` is refused in scripts, a lowered `lock.max-owner-bytes` never locks a holder out,
//! a reentry never shortens a hold.

mod common;

use common::*;
use redis::Value;

const TTL: u64 = 600_000;

fn count_of(con: &mut redis::Connection, key: &str) -> Option<i64> {
    lock_info(con, key).map(|info| info.count)
}

#[test]
fn a_retried_release_with_held_takes_effect_once() {
    let server = Server::start();
    let mut con = server.conn();
    let token = int(call!(&mut con, "LOCK.ACQUIRE", "k", "me", TTL), "take");
    int(call!(&mut con, "LOCK.ACQUIRE", "k", "me", TTL), "reenter");
    // The inner release, then its retry (the first reply was lost): still held once.
    assert_eq!(
        int(
            call!(&mut con, "LOCK.RELEASE", "k", "me", "HELD", 2),
            "release"
        ),
        1
    );
    let before_retry = key_state(&mut con, "k");
    assert_eq!(
        int(
            call!(&mut con, "LOCK.RELEASE", "k", "me", "held", 2),
            "retry"
        ),
        1
    );
    assert_eq!(
        key_state(&mut con, "k"),
        before_retry,
        "a repeated release changed the key"
    );
    assert_eq!(count_of(&mut con, "k"), Some(1));
    // Nobody else gets it in between.
    nil(
        call!(&mut con, "LOCK.ACQUIRE", "k", "other", TTL),
        "intruder",
    );
    // The outer release frees it; its retry answers nil (not held) and changes nothing.
    assert_eq!(
        int(
            call!(&mut con, "LOCK.RELEASE", "k", "me", "HELD", 1),
            "outer"
        ),
        0
    );
    nil(
        call!(&mut con, "LOCK.RELEASE", "k", "me", "HELD", 1),
        "outer retry",
    );
    let next = int(
        call!(&mut con, "LOCK.ACQUIRE", "k", "other", TTL),
        "next owner",
    );
    assert!(next > token);
    // A retry of the outer release after someone else took the key leaves them alone.
    nil(
        call!(&mut con, "LOCK.RELEASE", "k", "me", "HELD", 1),
        "late retry",
    );
    assert_eq!(
        lock_info(&mut con, "k").map(|i| i.owner),
        Some(b"other".to_vec())
    );
}

#[test]
fn a_retried_acquire_or_reenter_with_held_counts_once() {
    let server = Server::start();
    let mut con = server.conn();
    let token = int(
        call!(&mut con, "LOCK.ACQUIRE", "k", "me", TTL, "HELD", 0),
        "take",
    );
    // The retry of a grant whose reply was lost: the same token, still count 1.
    let retried = call!(&mut con, "LOCK.ACQUIRE", "k", "me", TTL, "HELD", 0);
    assert_eq!(int(retried, "retried take"), token);
    assert_eq!(count_of(&mut con, "k"), Some(1));
    assert_eq!(
        int(
            call!(&mut con, "LOCK.ACQUIRE", "k", "me", TTL, "HELD", 1),
            "re"
        ),
        token
    );
    assert_eq!(
        int(
            call!(&mut con, "LOCK.ACQUIRE", "k", "me", TTL, "HELD", 1),
            "re"
        ),
        token
    );
    assert_eq!(count_of(&mut con, "k"), Some(2));
    assert_eq!(
        int(
            call!(&mut con, "LOCK.REENTER", "k", "me", "HELD", 2),
            "reenter"
        ),
        3
    );
    assert_eq!(
        int(
            call!(&mut con, "LOCK.REENTER", "k", "me", "HELD", 2),
            "again"
        ),
        3
    );
    let reenter_ttl = call!(&mut con, "LOCK.REENTER", "k", "me", TTL, "HELD", 2);
    assert_eq!(int(reenter_ttl, "again with a ttl"), 3);
    assert_eq!(count_of(&mut con, "k"), Some(3));
}

#[test]
fn a_wrong_held_is_refused_and_changes_nothing() {
    let server = Server::start();
    let mut con = server.conn();
    int(call!(&mut con, "LOCK.ACQUIRE", "k", "me", TTL), "take");
    int(call!(&mut con, "LOCK.ACQUIRE", "k", "me", TTL), "reenter");
    call!(&mut con, "WATCH", "k").expect("WATCH");
    let before = key_state(&mut con, "k");
    for (command, held) in [
        ("acquire", 5),
        ("acquire", 0),
        ("reenter", 7),
        ("release", 4),
        ("release", 1),
    ] {
        let reply = match command {
            "acquire" => call!(&mut con, "LOCK.ACQUIRE", "k", "me", TTL, "HELD", held),
            "reenter" => call!(&mut con, "LOCK.REENTER", "k", "me", "HELD", held),
            _ => call!(&mut con, "LOCK.RELEASE", "k", "me", "HELD", held),
        };
        assert_eq!(
            error(reply, command),
            format!(
                "ERR HELD {held} does not match the owner's hold count 2 in 'lock.{command}' \
                 command (nothing changed)"
            )
        );
    }
    for bad in ["-1", "2048", "x"] {
        let reply = call!(&mut con, "LOCK.ACQUIRE", "k", "me", TTL, "HELD", bad);
        assert!(error(reply, bad).starts_with("ERR invalid HELD in 'lock.acquire' command"));
    }
    let zero = error(
        call!(&mut con, "LOCK.RELEASE", "k", "me", "HELD", 0),
        "HELD 0",
    );
    assert!(
        zero.starts_with("ERR invalid HELD in 'lock.release' command"),
        "{zero}"
    );
    assert_eq!(key_state(&mut con, "k"), before);
    // Nothing counted as a change: the WATCH survives.
    let exec: Value = redis::pipe()
        .atomic()
        .cmd("PING")
        .query(&mut con)
        .expect("EXEC");
    assert_ne!(exec, Value::Nil, "a refused call touched the watched key");
}

#[test]
fn a_lost_hold_is_never_taken_afresh_by_a_reentry_with_held() {
    let server = Server::start();
    let mut con = server.conn();
    int(call!(&mut con, "LOCK.ACQUIRE", "k", "me", TTL), "take");
    call!(&mut con, "DEL", "k").expect("DEL");
    // The caller believes it holds 1: ACQUIRE (a plain try or a WAIT) answers nil at once.
    nil(
        call!(&mut con, "LOCK.ACQUIRE", "k", "me", TTL, "HELD", 1),
        "reentry after loss",
    );
    nil(
        call!(
            &mut con,
            "LOCK.ACQUIRE",
            "k",
            "me",
            TTL,
            "HELD",
            1,
            "WAIT",
            0
        ),
        "a wait after loss",
    );
    nil(
        call!(&mut con, "LOCK.REENTER", "k", "me", "HELD", 1),
        "REENTER after loss",
    );
    assert_eq!(int(call!(&mut con, "EXISTS", "k"), "EXISTS"), 0);
    // Without HELD an ACQUIRE still takes a free lock (today's contract).
    int(
        call!(&mut con, "LOCK.ACQUIRE", "k", "me", TTL),
        "a fresh take",
    );
}

#[test]
fn session_is_refused_inside_eval_and_fcall() {
    let server = Server::start();
    let mut con = server.conn();
    let script = "return redis.call('LOCK.ACQUIRE', KEYS[1], 'o', '60000', 'SESSION')";
    let eval = error(call!(&mut con, "EVAL", script, 1, "k"), "EVAL");
    assert!(
        eval.contains("SESSION cannot be used inside a script"),
        "{eval}"
    );
    let library = "#!lua name=locks\n\
        redis.register_function('take', function(keys, args) \
        return redis.call('LOCK.ACQUIRE', keys[1], 'o', '60000', 'SESSION') end)";
    call!(&mut con, "FUNCTION", "LOAD", library).expect("FUNCTION LOAD");
    let fcall = error(call!(&mut con, "FCALL", "take", 1, "k"), "FCALL");
    assert!(
        fcall.contains("SESSION cannot be used inside a script"),
        "{fcall}"
    );
    assert_eq!(int(call!(&mut con, "EXISTS", "k"), "EXISTS"), 0);
    // A plain hold from a script is fine; in MULTI a session hold binds to the caller.
    let plain = "return redis.call('LOCK.ACQUIRE', KEYS[1], 'o', '60000')";
    int(call!(&mut con, "EVAL", plain, 1, "k"), "plain hold in EVAL");
    let (token,): (i64,) = redis::pipe()
        .atomic()
        .cmd("LOCK.ACQUIRE")
        .arg("m")
        .arg("o")
        .arg(60_000)
        .arg("SESSION")
        .query(&mut con)
        .expect("MULTI session hold");
    assert!(token > 0);
}

#[test]
fn a_lowered_owner_limit_never_locks_a_holder_out() {
    let server = Server::start();
    let mut con = server.conn();
    let owner = "o".repeat(500);
    int(call!(&mut con, "LOCK.ACQUIRE", "k", &owner, TTL), "take");
    call!(&mut con, "CONFIG", "SET", "lock.max-owner-bytes", 100).expect("CONFIG SET");
    // New requests obey the limit.
    let refused = error(call!(&mut con, "LOCK.ACQUIRE", "j", &owner, TTL), "new");
    assert!(refused.contains("owner longer than 100 bytes"), "{refused}");
    // The holder keeps, reenters and lets go of what it has.
    assert_eq!(
        int(call!(&mut con, "LOCK.REENTER", "k", &owner), "reenter"),
        2
    );
    assert_eq!(
        int(call!(&mut con, "LOCK.RENEW", "k", &owner, TTL), "renew"),
        1
    );
    assert_eq!(
        int(call!(&mut con, "LOCK.RELEASE", "k", &owner), "release"),
        1
    );
    assert_eq!(
        int(call!(&mut con, "LOCK.RELEASE", "k", &owner), "release"),
        0
    );
    // A lowered max-ttl still bounds a renewal: time asked anew.
    int(call!(&mut con, "LOCK.ACQUIRE", "k", "me", 1000), "take");
    call!(&mut con, "CONFIG", "SET", "lock.max-ttl", 5000).expect("CONFIG SET");
    let long = error(
        call!(&mut con, "LOCK.RENEW", "k", "me", 60_000),
        "renew past max-ttl",
    );
    assert!(
        long.starts_with("ERR invalid ttl in 'lock.renew' command"),
        "{long}"
    );
}

#[test]
fn a_nested_shorter_hold_does_not_cut_the_outer_one_for_any_kind() {
    let server = Server::start();
    let mut con = server.conn();
    for (key, options) in [
        ("x", &[][..]),
        ("s", &["SHARED"][..]),
        ("l", &["LIMIT", "3"][..]),
        ("z", &["SESSION"][..]),
    ] {
        let take = |con: &mut redis::Connection, ttl: u64| {
            let mut command = redis::cmd("LOCK.ACQUIRE");
            command.arg(key).arg("me").arg(ttl).arg(options);
            int(run(con, &command), key)
        };
        take(&mut con, 60_000);
        let expiry = int(call!(&mut con, "PEXPIRETIME", key), "PEXPIRETIME");
        take(&mut con, 1);
        int(call!(&mut con, "LOCK.REENTER", key, "me", 1), "REENTER 1");
        assert_eq!(
            int(call!(&mut con, "PEXPIRETIME", key), "PEXPIRETIME"),
            expiry,
            "{key}: a nested ttl of 1 ms moved the hold's expiry"
        );
    }
}

fn client_id(con: &mut redis::Connection) -> i64 {
    int(call!(con, "CLIENT", "ID"), "CLIENT ID")
}

#[test]
fn a_session_hold_is_gone_for_a_call_pipelined_right_after_its_connection_is_killed() {
    let server = Server::start();
    let mut holder = server.conn();
    let mut con = server.conn();
    for (key, options) in [("x", &[][..]), ("s", &["SHARED"][..])] {
        let mut take = redis::cmd("LOCK.ACQUIRE");
        take.arg(key).arg("h").arg(TTL).arg(options).arg("SESSION");
        int(run(&mut holder, &take), "session hold");
    }
    let id = client_id(&mut holder);
    // One pipeline, one event-loop turn: the kill, then a new owner's try.
    let (killed, exclusive, writer): (i64, Value, Value) = redis::pipe()
        .cmd("CLIENT")
        .arg("KILL")
        .arg("ID")
        .arg(id)
        .cmd("LOCK.ACQUIRE")
        .arg("x")
        .arg("other")
        .arg(TTL)
        .cmd("LOCK.ACQUIRE")
        .arg("s")
        .arg("writer")
        .arg(TTL)
        .query(&mut con)
        .expect("pipeline");
    assert_eq!(killed, 1);
    assert!(matches!(exclusive, Value::Int(_)), "{exclusive:?}");
    assert!(matches!(writer, Value::Int(_)), "{writer:?}");
    assert_eq!(
        lock_info(&mut con, "x").map(|i| i.owner),
        Some(b"other".to_vec())
    );
    // The same inside MULTI/EXEC.
    let mut holder = server.conn();
    int(
        call!(&mut holder, "LOCK.ACQUIRE", "m", "h", TTL, "SESSION"),
        "session hold",
    );
    let id = client_id(&mut holder);
    let (_, granted): (i64, Value) = redis::pipe()
        .atomic()
        .cmd("CLIENT")
        .arg("KILL")
        .arg("ID")
        .arg(id)
        .cmd("LOCK.ACQUIRE")
        .arg("m")
        .arg("other")
        .arg(TTL)
        .query(&mut con)
        .expect("MULTI");
    assert!(matches!(granted, Value::Int(_)), "{granted:?}");
    wait_until("both session ends counted", || {
        server.info_field("lock", "lock_session_ends").as_deref() == Some("3")
    });
}

#[test]
fn a_session_hold_moved_by_rename_move_or_swapdb_still_ends_with_its_connection() {
    let server = Server::start();
    let mut con = server.conn();
    for (mover, moved_to_db) in [("RENAME", 0), ("MOVE", 1), ("SWAPDB", 1)] {
        let mut holder = server.conn();
        int(
            call!(&mut holder, "LOCK.ACQUIRE", "k", "h", TTL, "SESSION"),
            "hold",
        );
        match mover {
            "RENAME" => ok(call!(&mut con, "RENAME", "k", "k2"), "RENAME"),
            "MOVE" => assert_eq!(int(call!(&mut con, "MOVE", "k", 1), "MOVE"), 1),
            _ => ok(call!(&mut con, "SWAPDB", 0, 1), "SWAPDB"),
        }
        let key = if mover == "RENAME" { "k2" } else { "k" };
        ok(call!(&mut con, "SELECT", moved_to_db), "SELECT");
        assert!(
            lock_info(&mut con, key).is_some(),
            "{mover}: the hold moved along"
        );
        let id = client_id(&mut holder);
        drop(holder);
        wait_until("the holder's connection closed", || {
            call!(&mut con, "CLIENT", "LIST", "ID", id)
                .ok()
                .and_then(|v| text(&v))
                .is_none_or(|list| list.is_empty())
        });
        assert!(
            lock_info(&mut con, key).is_none(),
            "{mover}: still held after the close"
        );
        int(
            call!(&mut con, "LOCK.ACQUIRE", key, "next", TTL),
            "a new owner",
        );
        call!(&mut con, "FLUSHALL").expect("FLUSHALL");
        ok(call!(&mut con, "SELECT", 0), "SELECT 0");
    }
}

#[test]
fn a_waiter_of_a_renamed_session_hold_gets_it_when_the_connection_closes() {
    let server = Server::start();
    let mut holder = server.conn();
    int(
        call!(&mut holder, "LOCK.ACQUIRE", "k", "h", TTL, "SESSION"),
        "hold",
    );
    let mut con = server.conn();
    ok(call!(&mut con, "RENAME", "k", "k2"), "RENAME");
    let mut waiter = server.conn();
    let waiting = std::thread::spawn(move || {
        call!(&mut waiter, "LOCK.ACQUIRE", "k2", "w", TTL, "WAIT", 10_000).map(|v| v == Value::Nil)
    });
    server.wait_for_blocked_clients(1);
    drop(holder);
    assert_eq!(
        waiting.join().expect("waiter"),
        Ok(false),
        "the waiter got nil"
    );
    assert_eq!(
        lock_info(&mut con, "k2").map(|i| i.owner),
        Some(b"w".to_vec())
    );
}

#[test]
fn reset_keeps_a_connections_session_holds() {
    // RESET gives the module no signal (no server event, and a command filter would tax every
    // command): the hold stays bound to the connection, which must be closed to end it.
    let server = Server::start();
    let mut holder = server.conn();
    int(
        call!(&mut holder, "LOCK.ACQUIRE", "k", "h", TTL, "SESSION"),
        "hold",
    );
    assert_eq!(
        call!(&mut holder, "RESET")
            .ok()
            .and_then(|v| text(&v))
            .as_deref(),
        Some("RESET")
    );
    let mut con = server.conn();
    assert!(lock_info(&mut con, "k").is_some());
    drop(holder);
    wait_until("the hold ends with the connection", || {
        lock_info(&mut con, "k").is_none()
    });
}

#[test]
fn the_session_index_follows_what_a_connection_holds_now() {
    let server = Server::start();
    let mut holder = server.conn();
    let mut admin = server.conn();
    let indexed = || server.info_field("lock", "lock_session_index_keys");
    for i in 0..300 {
        let key = format!("released:{i}");
        int(
            call!(&mut holder, "LOCK.ACQUIRE", &key, "h", TTL, "SESSION"),
            "hold",
        );
        assert_eq!(
            int(call!(&mut holder, "LOCK.RELEASE", &key, "h"), "release"),
            0
        );
    }
    assert_eq!(indexed().as_deref(), Some("0"));
    // Holds that end without a release (deleted here) leave the index by its sweeps.
    for i in 0..300 {
        let key = format!("deleted:{i}");
        int(
            call!(&mut holder, "LOCK.ACQUIRE", &key, "h", TTL, "SESSION"),
            "hold",
        );
        assert_eq!(int(call!(&mut admin, "DEL", &key), "DEL"), 1);
    }
    wait_until("the index swept", || {
        indexed()
            .and_then(|n| n.parse::<u64>().ok())
            .is_some_and(|n| n <= 33)
    });
    // A hold still held stays indexed, and ends with its connection.
    int(
        call!(&mut holder, "LOCK.ACQUIRE", "kept", "h", TTL, "SESSION"),
        "hold",
    );
    drop(holder);
    wait_until("the kept hold ended", || {
        lock_info(&mut admin, "kept").is_none()
    });
    assert_eq!(indexed().as_deref(), Some("0"));
}

/// Each holder's (owner, ttl in ms) from `LOCK.INFO` of a shared or LIMIT key (RESP2).
fn holder_ttls(con: &mut redis::Connection, key: &str) -> Vec<(String, i64)> {
    let fields = |value: &Value| -> Vec<(String, Value)> {
        let Value::Array(items) = value else {
            panic!("not a flat map: {value:?}");
        };
        items
            .chunks(2)
            .map(|pair| (text(&pair[0]).expect("field"), pair[1].clone()))
            .collect()
    };
    let info = call!(con, "LOCK.INFO", key).expect("LOCK.INFO");
    let holders = fields(&info)
        .into_iter()
        .find(|(name, _)| name == "holders")
        .map(|(_, list)| list)
        .expect("holders");
    let Value::Array(holders) = holders else {
        panic!("holders: {holders:?}");
    };
    holders
        .iter()
        .map(|holder| {
            let holder = fields(holder);
            let get = |name: &str| {
                holder
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.clone())
            };
            let Some(Value::Int(ttl)) = get("ttl") else {
                panic!("ttl in {holder:?}");
            };
            (text(&get("owner").expect("owner")).expect("owner"), ttl)
        })
        .collect()
}

#[test]
fn an_admins_earlier_expiry_of_a_shared_or_limit_key_ends_the_holds_then() {
    let server = Server::start();
    let mut con = server.conn();
    for (key, option) in [("s", &["SHARED"][..]), ("l", &["LIMIT", "5"][..])] {
        for owner in ["r1", "r2"] {
            let mut take = redis::cmd("LOCK.ACQUIRE");
            take.arg(key).arg(owner).arg(TTL).arg(option);
            int(run(&mut con, &take), owner);
        }
        assert_eq!(int(call!(&mut con, "PEXPIRE", key, 100_000), "PEXPIRE"), 1);
        // A third holder joins with a long ttl of its own.
        let mut take = redis::cmd("LOCK.ACQUIRE");
        take.arg(key).arg("r3").arg(TTL).arg(option);
        int(run(&mut con, &take), "r3");
        for (owner, ttl) in holder_ttls(&mut con, key) {
            if owner == "r3" {
                assert!(
                    ttl > 100_000,
                    "{key}: the newcomer keeps its own ttl: {ttl}"
                );
            } else {
                assert!(
                    ttl <= 100_000,
                    "{key}: {owner} outlived the admin's expiry: {ttl}"
                );
            }
        }
    }
}

/// One RESP reply line's first byte after skipping RESP3 push frames ('>' ... ) on `stream`.
fn next_reply_kind(reader: &mut impl std::io::BufRead) -> (u8, String) {
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("a reply line");
        let kind = line.as_bytes()[0];
        if kind == b'>' {
            // A push: skip its elements (simple bulk strings and integers here).
            let n: usize = line[1..].trim().parse().expect("push length");
            for _ in 0..n {
                let mut element = String::new();
                reader.read_line(&mut element).expect("push element");
                if element.starts_with('$') {
                    element.clear();
                    reader.read_line(&mut element).expect("bulk body");
                }
            }
            continue;
        }
        return (kind, line.trim_end().to_string());
    }
}

#[test]
fn wait_on_a_subscribed_resp3_connection_blocks_or_says_why_not() {
    use std::io::{BufReader, Write};
    use std::net::TcpStream;
    let server = Server::start();
    let mut con = server.conn();
    int(call!(&mut con, "LOCK.ACQUIRE", "k", "h", TTL), "holder");
    // Our server's own port: tcp_conn checks it answers with our pid.
    drop(server.tcp_conn());
    let mut stream = TcpStream::connect(("127.0.0.1", server.port())).expect("connect");
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .expect("timeout");
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let send = |stream: &mut TcpStream, args: &[&str]| {
        let mut out = format!("*{}\r\n", args.len());
        for arg in args {
            out += &format!("${}\r\n{arg}\r\n", arg.len());
        }
        stream.write_all(out.as_bytes()).expect("send");
    };
    send(&mut stream, &["HELLO", "3"]);
    // HELLO's map: read until its last field ("modules" array) by draining what is there.
    let mut hello = String::new();
    std::io::BufRead::read_line(&mut reader, &mut hello).expect("HELLO");
    assert!(hello.starts_with('%'), "{hello}");
    let fields: usize = hello[1..].trim().parse().expect("map size");
    for _ in 0..fields * 2 {
        skip_value(&mut reader);
    }
    send(&mut stream, &["SUBSCRIBE", "ch"]);
    skip_value(&mut reader);
    assert!(reader.buffer().is_empty());
    send(
        &mut stream,
        &["LOCK.ACQUIRE", "k", "w", "60000", "WAIT", "10000"],
    );
    // Either the server blocks the call (released below, then the token comes), or it
    // cannot: then an error says so at once. Never a nil that reads as a timeout.
    let replied = || {
        stream.set_nonblocking(true).expect("nonblocking");
        let ready = stream.peek(&mut [0u8; 1]).is_ok_and(|n| n > 0);
        stream.set_nonblocking(false).expect("blocking");
        ready
    };
    assert!(poll(|| replied()
        || server.info_field("clients", "blocked_clients").as_deref()
            == Some("1")));
    let blocked = !replied();
    if blocked {
        assert_eq!(int(call!(&mut con, "LOCK.RELEASE", "k", "h"), "release"), 0);
    }
    let (kind, line) = next_reply_kind(&mut reader);
    match kind {
        b':' => assert!(blocked, "a token before the holder released: {line}"),
        b'-' => assert!(
            !blocked && line.contains("cannot block this connection for WAIT"),
            "{line}"
        ),
        _ => panic!("WAIT answered {line:?}"),
    }
}

/// Skips one RESP3 value (the shapes HELLO replies with).
fn skip_value(reader: &mut impl std::io::BufRead) {
    let mut line = String::new();
    reader.read_line(&mut line).expect("value");
    let count: usize = line
        .get(1..)
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    match line.as_bytes()[0] {
        b'$' => {
            let mut body = String::new();
            reader.read_line(&mut body).expect("bulk");
        }
        b'*' => (0..count).for_each(|_| skip_value(reader)),
        b'%' => (0..count * 2).for_each(|_| skip_value(reader)),
        b'>' => (0..count).for_each(|_| skip_value(reader)),
        _ => {}
    }
}

#[test]
fn a_queued_call_whose_retry_was_granted_answers_the_same_hold_at_its_turn() {
    // A client's WAIT timed out on its side and it resent the call on a new connection: both
    // requests of the one call wait. The first to be served takes the lock; the other, with
    // HELD 0 against a count of 1, answers the same token and counts nothing.
    let server = Server::start();
    let mut con = server.conn();
    int(
        call!(&mut con, "LOCK.ACQUIRE", "k", "holder", TTL),
        "holder",
    );
    let waiting: Vec<_> = (0..2)
        .map(|i| {
            let mut waiter = server.conn();
            let thread = std::thread::spawn(move || {
                int(
                    call!(
                        &mut waiter,
                        "LOCK.ACQUIRE",
                        "k",
                        "me",
                        TTL,
                        "HELD",
                        0,
                        "WAIT",
                        10_000
                    ),
                    "a waiting attempt",
                )
            });
            server.wait_for_blocked_clients(i + 1);
            thread
        })
        .collect();
    assert_eq!(
        int(call!(&mut con, "LOCK.RELEASE", "k", "holder"), "release"),
        0
    );
    let tokens: Vec<i64> = waiting
        .into_iter()
        .map(|t| t.join().expect("waiter"))
        .collect();
    assert_eq!(tokens[0], tokens[1], "both attempts answer the one hold");
    assert_eq!(count_of(&mut con, "k"), Some(1), "the call counted once");
}
