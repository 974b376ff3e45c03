//! Seeing what the locks are doing (issue 21): every event kind reaching the lock log with its
//! reason, LOCK.LOST for the holder, wait and hold percentiles against waits the test arranged
//! (order and bounds, no timing thresholds), LOCK.TOP, LOCK.WAITERS, LOCK.SCAN over 100k locks
//! while locks come and go, LOCK.LOGRESET, CONFIG RESETSTAT, ACL.

mod common;

use std::collections::{HashMap, HashSet};

use common::*;
use redis::Value;

/// A map reply (RESP3) or flat field/value array (RESP2) by field name.
fn fields(value: &Value) -> HashMap<String, Value> {
    match value {
        Value::Map(pairs) => pairs
            .iter()
            .filter_map(|(k, v)| Some((text(k)?, v.clone())))
            .collect(),
        Value::Array(items) => items
            .chunks_exact(2)
            .filter_map(|pair| Some((text(&pair[0])?, pair[1].clone())))
            .collect(),
        other => panic!("not a map: {other:?}"),
    }
}

fn items(value: Value) -> Vec<Value> {
    match value {
        Value::Array(items) => items,
        other => panic!("not an array: {other:?}"),
    }
}

fn field_text(entry: &HashMap<String, Value>, name: &str) -> String {
    entry
        .get(name)
        .and_then(text)
        .unwrap_or_else(|| panic!("no {name} in {entry:?}"))
}

fn field_int(entry: &HashMap<String, Value>, name: &str) -> i64 {
    match entry.get(name) {
        Some(Value::Int(n)) => *n,
        other => panic!("{name} is not an integer: {other:?} in {entry:?}"),
    }
}

/// The lock log, newest first.
fn log(con: &mut redis::Connection) -> Vec<HashMap<String, Value>> {
    let reply = call!(con, "LOCK.LOG", "GET", 1000).expect("LOCK.LOG GET");
    items(reply).iter().map(fields).collect()
}

/// The newest log entry with `reason` for `key`, waited for.
fn logged(con: &mut redis::Connection, reason: &str, key: &str) -> HashMap<String, Value> {
    let mut found = None;
    wait_until(
        &format!("a {reason} entry for {key} in the lock log"),
        || {
            found = log(con).into_iter().find(|entry| {
                field_text(entry, "reason") == reason && field_text(entry, "key") == key
            });
            found.is_some()
        },
    );
    found.expect("found")
}

fn lost(con: &mut redis::Connection, key: &str, owner: &str) -> Option<HashMap<String, Value>> {
    match call!(con, "LOCK.LOST", key, owner).expect("LOCK.LOST") {
        Value::Nil => None,
        reply => Some(fields(&reply)),
    }
}

/// Waits until the server's clock is past `at` (unix ms).
fn wait_past(con: &mut redis::Connection, at: i64) {
    wait_until("the server's clock to pass the expiry", || {
        server_ms(con) > at
    });
}

#[test]
fn an_expiry_while_held_is_logged_and_explained_with_active_expiry_off() {
    let server = Server::start_with(&["--enable-debug-command", "yes"]);
    let mut con = server.conn();
    ok(call!(&mut con, "DEBUG", "SET-ACTIVE-EXPIRE", 0), "DEBUG");
    let start = server_ms(&mut con);
    let token = acquire(&mut con, "jobs:1", "worker-1", 50);
    wait_past(&mut con, start + 60);
    // The late holder's release finds its hold gone; the server expires the key right then.
    nil(
        call!(&mut con, "LOCK.RELEASE", "jobs:1", "worker-1"),
        "late release",
    );
    let entry = logged(&mut con, "expired", "jobs:1");
    assert_eq!(field_text(&entry, "owner"), "worker-1");
    assert_eq!(field_int(&entry, "token"), token);
    assert_eq!(field_text(&entry, "kind"), "exclusive");
    assert!(field_int(&entry, "ms") >= 50, "{entry:?}");
    let why = lost(&mut con, "jobs:1", "worker-1").expect("a loss");
    assert_eq!(field_text(&why, "reason"), "expired");
    assert_eq!(field_int(&why, "token"), token);
    assert!(field_int(&why, "held_ms") >= 50);
    // Another owner takes it: the loss says who holds it now.
    let next = acquire(&mut con, "jobs:1", "worker-2", 10_000);
    let why = lost(&mut con, "jobs:1", "worker-2");
    assert!(why.is_none(), "worker-2 lost nothing");
    let why = lost(&mut con, "jobs:1", "worker-1").expect("a loss");
    let holders = items(why["holders"].clone());
    let holder = fields(&holders[0]);
    assert_eq!(field_text(&holder, "owner"), "worker-2");
    assert_eq!(field_int(&holder, "token"), next);
}

#[test]
fn a_shared_holder_expiring_beside_others_is_logged_once_when_the_key_is_next_read() {
    let server = Server::start();
    let mut con = server.conn();
    let start = server_ms(&mut con);
    let short = int(
        call!(&mut con, "LOCK.ACQUIRE", "docs:1", "reader-1", 50, "SHARED"),
        "reader-1",
    );
    let _ = int(
        call!(
            &mut con,
            "LOCK.ACQUIRE",
            "docs:1",
            "reader-2",
            60_000,
            "SHARED"
        ),
        "reader-2",
    );
    wait_past(&mut con, start + 60);
    // Nobody waits and the key lives on (reader-2): no key event. A read finds it expired.
    for _ in 0..2 {
        let holders = holds(&mut con, "docs:1").holders;
        assert_eq!(holders.keys().collect::<Vec<_>>(), ["reader-2"]);
    }
    let entry = logged(&mut con, "expired", "docs:1");
    assert_eq!(field_text(&entry, "owner"), "reader-1");
    assert_eq!(field_int(&entry, "token"), short);
    assert_eq!(field_text(&entry, "kind"), "shared");
    let entries = log(&mut con).into_iter();
    let of_reader_1 = entries
        .filter(|e| field_text(e, "owner") == "reader-1")
        .count();
    assert_eq!(
        of_reader_1, 1,
        "one entry per hold, however often it is read"
    );
    let why = lost(&mut con, "docs:1", "reader-1").expect("a loss");
    assert_eq!(field_text(&why, "reason"), "expired");
    assert_eq!(field_int(&why, "token"), short);
    nil(
        call!(&mut con, "LOCK.RELEASE", "docs:1", "reader-1"),
        "late release",
    );
    assert_eq!(log(&mut con).len(), 1, "the late release adds nothing");
    // The same owner's next hold is another hold: its expiry is logged too.
    let again = server_ms(&mut con);
    let second = int(
        call!(&mut con, "LOCK.ACQUIRE", "docs:1", "reader-1", 50, "SHARED"),
        "reader-1 again",
    );
    wait_past(&mut con, again + 60);
    let _ = holds(&mut con, "docs:1");
    let entries = log(&mut con);
    let tokens: Vec<i64> = entries
        .iter()
        .filter(|e| field_text(e, "owner") == "reader-1")
        .map(|e| field_int(e, "token"))
        .collect();
    assert_eq!(tokens, [second, short], "newest first, one entry per hold");
}

#[test]
fn an_expiry_while_held_is_logged_with_active_expiry_on_and_at_a_waited_for_check() {
    let server = Server::start();
    let mut con = server.conn();
    let token = acquire(&mut con, "jobs:2", "worker-1", 50);
    let entry = logged(&mut con, "expired", "jobs:2");
    assert_eq!(field_int(&entry, "token"), token);
    // A waited-for lock expires through rlock's own check, to the millisecond.
    let held = acquire(&mut con, "jobs:3", "worker-1", 100);
    let mut waiter = server.conn();
    let handed = std::thread::spawn(move || {
        call!(
            &mut waiter,
            "LOCK.ACQUIRE",
            "jobs:3",
            "worker-2",
            10_000,
            "WAIT",
            10_000
        )
    });
    let entry = logged(&mut con, "expired", "jobs:3");
    assert_eq!(field_int(&entry, "token"), held);
    assert!(int(handed.join().expect("waiter"), "handed") > held);
    let why = lost(&mut con, "jobs:3", "worker-1").expect("a loss");
    let holders = items(why["holders"].clone());
    assert_eq!(field_text(&fields(&holders[0]), "owner"), "worker-2");
}

#[test]
fn a_refused_deadlock_is_logged_under_the_first_key_of_the_call() {
    let server = Server::start();
    let mut con = server.conn();
    let _ = int(call!(&mut con, "LOCK.ACQUIRE", "k1", "A", 60000), "A");
    let _ = int(call!(&mut con, "LOCK.ACQUIRE", "k2", "B", 60000), "B");
    let mut wait = redis::cmd("LOCK.ACQUIRE");
    wait.arg("k1").arg("B").arg(60000).arg("WAIT").arg(0);
    let _b = Background::send(server.conn(), wait);
    server.wait_for_blocked_clients(1);
    assert!(log(&mut con)
        .iter()
        .all(|entry| field_text(entry, "reason") != "deadlock-refused"));
    let text = error(
        call!(&mut con, "LOCK.ACQUIRE", "k2", "A", 60000, "WAIT", 0),
        "deadlock",
    );
    assert!(text.starts_with("DEADLOCK"), "{text}");
    let entry = logged(&mut con, "deadlock-refused", "k2");
    assert_eq!(field_text(&entry, "owner"), "A");
    assert_eq!(field_int(&entry, "token"), 0);
}

#[test]
fn del_overwrite_and_flushall_are_logged_and_explained() {
    let server = Server::start();
    let mut con = server.conn();
    let deleted = acquire(&mut con, "a", "w", 100_000);
    int(call!(&mut con, "DEL", "a"), "DEL");
    let entry = logged(&mut con, "deleted", "a");
    assert_eq!(field_int(&entry, "token"), deleted);
    assert_eq!(
        field_text(&lost(&mut con, "a", "w").expect("loss"), "reason"),
        "deleted"
    );

    acquire(&mut con, "b", "w", 100_000);
    ok(call!(&mut con, "SET", "b", "x"), "SET");
    logged(&mut con, "overwritten", "b");

    acquire(&mut con, "c", "w", 100_000);
    ok(call!(&mut con, "SELECT", 3), "SELECT");
    acquire(&mut con, "d", "w", 100_000);
    ok(call!(&mut con, "FLUSHALL"), "FLUSHALL");
    let entry = logged(&mut con, "flushed", "d");
    assert_eq!(field_int(&entry, "db"), 3);
    logged(&mut con, "flushed", "c");
    ok(call!(&mut con, "SELECT", 0), "SELECT");
    assert_eq!(
        field_text(&lost(&mut con, "c", "w").expect("loss"), "reason"),
        "flushed"
    );
    // A release to 0 and a renewal are no losses.
    acquire(&mut con, "e", "w", 100_000);
    int(call!(&mut con, "LOCK.RELEASE", "e", "w"), "release");
    assert!(lost(&mut con, "e", "w").is_none());
    assert!(log(&mut con)
        .iter()
        .all(|entry| field_text(entry, "key") != "e"));
}

#[test]
fn client_kill_of_a_session_holder_is_logged() {
    let server = Server::start();
    let mut holder = server.conn();
    let id = int(call!(&mut holder, "CLIENT", "ID"), "CLIENT ID");
    let token = int(
        call!(&mut holder, "LOCK.ACQUIRE", "s", "w", 100_000, "SESSION"),
        "session acquire",
    );
    let mut con = server.conn();
    int(call!(&mut con, "CLIENT", "KILL", "ID", id), "CLIENT KILL");
    let entry = logged(&mut con, "session-closed", "s");
    assert_eq!(field_int(&entry, "token"), token);
    assert_eq!(field_int(&entry, "session"), 1);
    let entries = log(&mut con);
    let closed = entries
        .iter()
        .filter(|entry| field_text(entry, "reason") == "session-closed")
        .count();
    assert_eq!(closed, 1, "logged once: {entries:?}");
}

#[test]
fn a_split_brain_resync_drops_are_logged() {
    let old_master = Server::start();
    let new_master = Server::start();
    let mut con = old_master.conn();
    let token = acquire(&mut con, "held:on:the:old:side", "w", 100_000);
    old_master.replicate_from(&new_master);
    let entry = logged(&mut con, "dropped-on-resync", "held:on:the:old:side");
    assert_eq!(field_int(&entry, "token"), token);
}

/// The percentiles of `INFO lock` line `name`, in µs.
fn percentiles(con: &mut redis::Connection, name: &str) -> Option<(f64, f64, f64)> {
    let line = info_field(con, "lock", name)?;
    let mut values = line.split(',').map(|part| {
        let (_, value) = part.split_once('=').expect("p=v");
        value.parse::<f64>().expect("a number")
    });
    Some((values.next()?, values.next()?, values.next()?))
}

#[test]
fn wait_and_hold_percentiles_follow_the_arranged_waits_and_resetstat_resets_them() {
    let server = Server::start_with(&["--lock.log-wait-threshold-ms", "1"]);
    let mut con = server.conn();
    // 200 immediate grants, each held for no time.
    for i in 0..200 {
        acquire(&mut con, &format!("quick:{i}"), "w", 100_000);
        release(&mut con, &format!("quick:{i}"), "w");
    }
    // One arranged wait: released only after the waiter has waited 1100 ms of server clock (a
    // hold past the 1024 ms that releases count without the lock: it goes to the histogram
    // at once, the 200 short ones when INFO reads it).
    acquire(&mut con, "slow", "holder", 100_000);
    let mut waiter = server.conn();
    let waiting = std::thread::spawn(move || {
        call!(
            &mut waiter,
            "LOCK.ACQUIRE",
            "slow",
            "waiter",
            100_000,
            "WAIT",
            100_000
        )
    });
    server.wait_for_blocked_clients(1);
    // Read once the waiter is queued, so its wait has begun before `start`.
    let start = server_ms(&mut con);
    wait_past(&mut con, start + 1100);
    release(&mut con, "slow", "holder");
    int(waiting.join().expect("waiter"), "granted");

    let (p50, p99, p999) =
        percentiles(&mut con, "lock_wait_percentiles_usec_exclusive").expect("wait percentiles");
    assert!(p50 <= p99 && p99 <= p999);
    assert_eq!(p50, 0.0, "most acquires waited 0");
    // 1 of 201 waits is 1100 ms or more: above the 99.9th percentile's rank, below the 99th's.
    assert!(p999 >= 1_090_000.0, "p99.9 {p999}");
    assert!(p99 < 1_090_000.0, "p99 {p99}");
    let (h50, _, h999) =
        percentiles(&mut con, "lock_hold_percentiles_usec_exclusive").expect("hold percentiles");
    assert!(
        h50 < 1_090_000.0 && h999 >= 1_090_000.0,
        "holds {h50} {h999}"
    );
    assert!(percentiles(&mut con, "lock_wait_percentiles_usec_shared").is_none());
    let entry = logged(&mut con, "long-wait", "slow");
    assert!(field_int(&entry, "ms") >= 1100);
    assert_eq!(field_int(&entry, "granted"), 1);
    assert_eq!(field_text(&entry, "owner"), "waiter");

    // The hottest lock is the one waited for.
    let top = items(call!(&mut con, "LOCK.TOP").expect("LOCK.TOP"));
    let first = fields(&top[0]);
    assert_eq!(field_text(&first, "key"), "slow");
    assert_eq!(field_int(&first, "contended"), 1);
    assert_eq!(field_int(&first, "handoffs"), 1);
    assert!(field_int(&first, "wait_p99_ms") >= 1000);

    ok(call!(&mut con, "CONFIG", "RESETSTAT"), "RESETSTAT");
    wait_until("the percentiles to be reset", || {
        percentiles(&mut con, "lock_wait_percentiles_usec_exclusive").is_none()
    });
    assert!(percentiles(&mut con, "lock_hold_percentiles_usec_exclusive").is_none());
    assert!(items(call!(&mut con, "LOCK.TOP").expect("LOCK.TOP")).is_empty());
    // The log stays, as SLOWLOG does.
    assert!(int(call!(&mut con, "LOCK.LOG", "LEN"), "LEN") > 0);
}

#[test]
fn waiters_are_listed_first_in_line_first_with_their_timeouts() {
    let server = Server::start();
    let mut con = server.conn();
    acquire(&mut con, "q", "holder", 100_000);
    let mut threads = Vec::new();
    for (i, (owner, timeout)) in [("first", 0), ("second", 60_000)].into_iter().enumerate() {
        let mut waiter = server.conn();
        threads.push(std::thread::spawn(move || {
            call!(
                &mut waiter,
                "LOCK.ACQUIRE",
                "q",
                owner,
                1000,
                "SHARED",
                "WAIT",
                timeout
            )
        }));
        server.wait_for_blocked_clients(i + 1);
    }
    let listed: Vec<_> = items(call!(&mut con, "LOCK.WAITERS", "q").expect("WAITERS"))
        .iter()
        .map(fields)
        .collect();
    assert_eq!(listed.len(), 2);
    assert_eq!(field_text(&listed[0], "owner"), "first");
    assert_eq!(field_int(&listed[0], "timeout_left_ms"), -1);
    assert_eq!(field_text(&listed[1], "kind"), "shared");
    let left = field_int(&listed[1], "timeout_left_ms");
    assert!(left > 0 && left <= 60_000, "{left}");
    assert!(field_int(&listed[1], "waited_ms") >= 0);
    let one = items(call!(&mut con, "LOCK.WAITERS", "q", "COUNT", 1).expect("WAITERS"));
    assert_eq!(one.len(), 1);
    assert!(items(call!(&mut con, "LOCK.WAITERS", "nobody-waits").expect("W")).is_empty());
    release(&mut con, "q", "holder");
    for thread in threads {
        int(thread.join().expect("waiter"), "granted");
    }
}

#[test]
fn several_key_waiters_are_listed_in_line_and_their_waits_logged() {
    let server = Server::start();
    let mut con = server.conn();
    ok(
        call!(&mut con, "CONFIG", "SET", "lock.log-wait-threshold-ms", 100),
        "threshold",
    );
    acquire(&mut con, "{m}a", "holder", 100_000);
    // In line on {m}a: a single-key waiter, then a several-key one, then a single-key one.
    let mut first = redis::cmd("LOCK.ACQUIRE");
    first.arg("{m}a").arg("first").arg(1000).arg("WAIT").arg(0);
    let first = Background::send(server.conn(), first);
    server.wait_for_blocked_clients(1);
    let mut both = redis::cmd("LOCK.MACQUIRE");
    both.arg(2).arg("{m}a").arg("{m}b").arg("both").arg(1000);
    both.arg("WAIT").arg(300);
    let both = Background::send(server.conn(), both);
    server.wait_for_blocked_clients(2);
    let mut last = redis::cmd("LOCK.ACQUIRE");
    last.arg("{m}a").arg("last").arg(1000).arg("WAIT").arg(0);
    let last = Background::send(server.conn(), last);
    server.wait_for_blocked_clients(3);
    let listed: Vec<_> = items(call!(&mut con, "LOCK.WAITERS", "{m}a").expect("WAITERS"))
        .iter()
        .map(fields)
        .collect();
    let owners: Vec<_> = listed.iter().map(|w| field_text(w, "owner")).collect();
    assert_eq!(owners, ["first", "both", "last"]);
    let left = field_int(&listed[1], "timeout_left_ms");
    assert!(left > 0 && left <= 300, "{left}");
    let on_b = items(call!(&mut con, "LOCK.WAITERS", "{m}b").expect("WAITERS"));
    assert_eq!(
        on_b.len(),
        1,
        "the several-key waiter stands on each of its keys"
    );
    // Its WAIT of 300 ms runs out: a long wait (threshold 100 ms), one entry per key.
    nil(both.reply(std::time::Duration::from_secs(60)), "timed out");
    let a = logged(&mut con, "long-wait", "{m}a");
    assert_eq!(field_text(&a, "owner"), "both");
    assert_eq!(field_int(&a, "granted"), 0);
    let b = logged(&mut con, "long-wait", "{m}b");
    assert_eq!(field_text(&b, "owner"), "both");
    release(&mut con, "{m}a", "holder");
    int(
        first.reply(std::time::Duration::from_secs(60)),
        "first granted",
    );
    release(&mut con, "{m}a", "first");
    int(
        last.reply(std::time::Duration::from_secs(60)),
        "last granted",
    );
}

#[test]
fn lock_log_is_bounded_and_logreset_empties_it_ids_going_on() {
    let server = Server::start_with(&["--lock.log-max-len", "3"]);
    let mut con = server.conn();
    for i in 0..5 {
        acquire(&mut con, &format!("k{i}"), "w", 100_000);
        int(call!(&mut con, "DEL", format!("k{i}")), "DEL");
    }
    logged(&mut con, "deleted", "k4");
    assert_eq!(int(call!(&mut con, "LOCK.LOG", "LEN"), "LEN"), 3);
    let ids: Vec<i64> = log(&mut con).iter().map(|e| field_int(e, "id")).collect();
    assert_eq!(ids, [4, 3, 2]);
    assert_eq!(
        items(call!(&mut con, "LOCK.LOG", "GET", 1).expect("GET 1")).len(),
        1
    );
    assert!(error(call!(&mut con, "LOCK.LOG", "GET", 0), "count 0").contains("count"));
    assert!(error(call!(&mut con, "LOCK.LOG", "NOPE"), "bad").contains("syntax"));
    ok(call!(&mut con, "LOCK.LOGRESET"), "LOGRESET");
    assert_eq!(int(call!(&mut con, "LOCK.LOG", "LEN"), "LEN"), 0);
    acquire(&mut con, "k5", "w", 100_000);
    int(call!(&mut con, "DEL", "k5"), "DEL");
    let entry = logged(&mut con, "deleted", "k5");
    assert_eq!(field_int(&entry, "id"), 5);
    // RESP3: entries are maps.
    let mut resp3 = server.conn_resp3();
    match items(call!(&mut resp3, "LOCK.LOG", "GET").expect("GET")).first() {
        Some(Value::Map(_)) => {}
        other => panic!("not a map: {other:?}"),
    }
}

/// A whole LOCK.SCAN iteration with `options`: every entry returned.
fn scan_all(con: &mut redis::Connection, options: &[&str]) -> Vec<HashMap<String, Value>> {
    let mut cursor = "0".to_string();
    let mut found = Vec::new();
    for _ in 0..100_000 {
        let mut command = redis::cmd("LOCK.SCAN");
        command.arg(&cursor).arg(options).arg("COUNT").arg(10_000);
        let reply = items(run(con, &command).expect("LOCK.SCAN"));
        cursor = text(&reply[0]).expect("cursor");
        found.extend(items(reply[1].clone()).iter().map(fields));
        if cursor == "0" {
            return found;
        }
    }
    panic!("LOCK.SCAN never ended");
}

#[test]
fn scan_completes_over_100k_locks_while_locks_come_and_go() {
    let server = Server::start();
    let mut con = server.conn();
    const LOCKS: usize = 100_000;
    for batch in 0..LOCKS / 10_000 {
        let mut pipe = redis::pipe();
        for i in batch * 10_000..(batch + 1) * 10_000 {
            pipe.cmd("LOCK.ACQUIRE")
                .arg(format!("stable:{i}"))
                .arg(format!("owner-{}", i % 7))
                .arg(1_000_000)
                .ignore();
        }
        let _: () = pipe.query(&mut con).expect("pipeline");
    }
    let mut churn = server.conn();
    let mut seen = HashSet::new();
    let mut cursor = "0".to_string();
    let mut calls = 0;
    loop {
        calls += 1;
        assert!(calls < 100_000, "SCAN never ended");
        // Locks come and go between calls.
        acquire(&mut churn, &format!("churn:{calls}"), "c", 100_000);
        if calls > 1 {
            release(&mut churn, &format!("churn:{}", calls - 1), "c");
        }
        let reply = items(
            call!(
                &mut con,
                "LOCK.SCAN",
                &cursor,
                "MATCH",
                "stable:*",
                "COUNT",
                1000
            )
            .expect("SCAN"),
        );
        cursor = text(&reply[0]).expect("cursor");
        for entry in items(reply[1].clone()) {
            let entry = fields(&entry);
            let holders = items(entry["holders"].clone());
            assert_eq!(holders.len(), 1);
            seen.insert(field_text(&entry, "key"));
        }
        if cursor == "0" {
            break;
        }
    }
    assert_eq!(seen.len(), LOCKS, "every stable lock seen at least once");
    // Filters: OWNER and TYPE.
    acquire_with(&mut con, "shared:1", "reader", 100_000, &["SHARED"]);
    let owners: HashSet<String> = scan_all(&mut con, &["OWNER", "owner-3"])
        .iter()
        .flat_map(|entry| items(entry["holders"].clone()))
        .map(|holder| field_text(&fields(&holder), "owner"))
        .collect();
    assert_eq!(owners, HashSet::from(["owner-3".to_string()]));
    let found = scan_all(&mut con, &["MATCH", "shared:*", "TYPE", "shared"]);
    assert_eq!(found.len(), 1);
    assert_eq!(field_text(&found[0], "mode"), "shared");
    assert!(scan_all(&mut con, &["MATCH", "shared:*", "TYPE", "exclusive"]).is_empty());
    assert!(error(call!(&mut con, "LOCK.SCAN", 0, "TYPE", "nope"), "bad type").contains("TYPE"));
    assert!(error(call!(&mut con, "LOCK.SCAN", "x"), "bad cursor").contains("cursor"));
}

#[test]
fn the_log_is_read_only_and_only_logreset_is_not() {
    let server = Server::start();
    let mut con = server.conn();
    let info = call!(
        &mut con,
        "COMMAND",
        "INFO",
        "lock.log",
        "lock.lost",
        "lock.top",
        "lock.scan",
        "lock.waiters",
        "lock.logreset"
    )
    .expect("COMMAND INFO");
    for (i, command) in items(info).into_iter().enumerate() {
        let command = items(command);
        let flags: Vec<String> = items(command[2].clone()).iter().filter_map(text).collect();
        if i < 5 {
            assert!(flags.contains(&"readonly".to_string()), "{flags:?}");
        } else {
            assert!(!flags.contains(&"readonly".to_string()), "{flags:?}");
            assert!(flags.contains(&"admin".to_string()), "{flags:?}");
        }
    }
    // Where the server has module ACL categories: @read reaches every reader, not LOGRESET.
    let categories: Vec<String> = items(call!(&mut con, "ACL", "CAT").expect("ACL CAT"))
        .iter()
        .filter_map(text)
        .collect();
    if !categories.contains(&"lock".to_string()) {
        return;
    }
    ok(
        call!(&mut con, "ACL", "SETUSER", "reader", "on", ">pw", "~*", "+@read"),
        "SETUSER",
    );
    let mut reader = server.conn();
    ok(call!(&mut reader, "AUTH", "reader", "pw"), "AUTH");
    int(call!(&mut reader, "LOCK.LOG", "LEN"), "LEN as reader");
    items(call!(&mut reader, "LOCK.TOP").expect("TOP as reader"));
    assert!(error(call!(&mut reader, "LOCK.LOGRESET"), "LOGRESET as reader").contains("NOPERM"));
}

/// A tmux server of this test's own (its own socket in a temp dir), ended on drop.
struct Tmux {
    socket: std::path::PathBuf,
}

impl Tmux {
    fn run(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("tmux runs")
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p", "-t", "top"]).stdout).into_owned()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        self.run(&["kill-server"]);
    }
}

/// `rlock-top` against a real server, driven under tmux (send-keys, capture-pane): the
/// hottest lock, the lock log's expiry, pause and quit. `make top-test` sets RLOCK_TOP to the
/// binary (tools/rlock-top); without it this test says so and does nothing.
#[test]
fn rlock_top_shows_the_hottest_locks_and_the_lock_log_under_tmux() {
    let Ok(binary) = std::env::var("RLOCK_TOP") else {
        eprintln!("SKIPPED: rlock-top under tmux (make top-test sets RLOCK_TOP)");
        return;
    };
    let server = Server::start();
    let mut con = server.conn();
    acquire(&mut con, "orders:hot", "holder", 100_000);
    for _ in 0..3 {
        nil(
            call!(&mut con, "LOCK.ACQUIRE", "orders:hot", "other", 1000),
            "contended",
        );
    }
    acquire(&mut con, "jobs:expired", "worker-9", 50);
    logged(&mut con, "expired", "jobs:expired");

    let socket = server.dir().join("tmux.sock");
    let tmux = Tmux { socket };
    let command = format!("{binary} {}", server.url());
    let started = tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "top",
        "-x",
        "150",
        "-y",
        "45",
        &command,
    ]);
    assert!(started.status.success(), "tmux: {started:?}");
    let mut screen = String::new();
    wait_until("rlock-top to show the hot lock and the expiry", || {
        screen = tmux.screen();
        screen.contains("orders:hot")
            && screen.contains("jobs:expired")
            && screen.contains("worker-9")
    });
    assert!(screen.contains("hottest locks"), "{screen}");
    assert!(screen.contains("expired"), "{screen}");
    assert!(screen.contains("1 node"), "{screen}");
    // Refreshed each second: a new expiry shows up without a key press.
    acquire(&mut con, "jobs:later", "worker-10", 50);
    logged(&mut con, "expired", "jobs:later");
    wait_until("the next refresh", || tmux.screen().contains("jobs:later"));
    tmux.run(&["send-keys", "-t", "top", "p"]);
    wait_until("PAUSED", || tmux.screen().contains("PAUSED"));
    tmux.run(&["send-keys", "-t", "top", "q"]);
    wait_until("rlock-top to quit", || {
        !tmux.run(&["has-session", "-t", "top"]).status.success()
    });
}

/// A hold's time is read from its token less the lead it was granted with: across a promotion
/// (the lead jumps by lock.split-allowance-ms), a hold granted before it and one granted after
/// it both log their real time held, neither the allowance more nor nothing.
#[test]
fn hold_times_read_across_a_promotions_lead_are_the_real_ones() {
    let server = Server::start_with(&["--lock.log-hold-threshold-ms", "1"]);
    let mut con = server.conn();
    acquire(&mut con, "before", "worker-1", 600_000);
    let nowhere = free_port();
    ok(
        call!(&mut con, "REPLICAOF", "127.0.0.1", nowhere),
        "REPLICAOF",
    );
    ok(
        call!(&mut con, "REPLICAOF", "NO", "ONE"),
        "REPLICAOF NO ONE",
    );
    assert_eq!(
        info_int(&mut con, "lock", "lock_token_lead_ms"),
        600_000,
        "the promotion's lead"
    );
    acquire(&mut con, "after", "worker-2", 600_000);
    let start = server_ms(&mut con);
    wait_past(&mut con, start + 300);
    for (key, owner) in [("before", "worker-1"), ("after", "worker-2")] {
        assert_eq!(release(&mut con, key, owner), 0);
        let held = field_int(&logged(&mut con, "long-hold", key), "ms");
        assert!((300..60_000).contains(&held), "{key}: held {held} ms");
    }
}

/// A hold shorter than a second is counted per millisecond and added to the histogram when
/// INFO reads it, at its own value: one hold of 300 ms or more is the percentiles' every value.
#[test]
fn a_short_hold_reaches_the_percentiles_at_its_own_length() {
    let server = Server::start_with(&["--lock.log-hold-threshold-ms", "0"]);
    let mut con = server.conn();
    acquire(&mut con, "medium", "worker", 600_000);
    let start = server_ms(&mut con);
    wait_past(&mut con, start + 300);
    assert_eq!(release(&mut con, "medium", "worker"), 0);
    let (p50, _, p999) =
        percentiles(&mut con, "lock_hold_percentiles_usec_exclusive").expect("hold percentiles");
    for p in [p50, p999] {
        assert!(
            (297_000.0..1_000_000.0).contains(&p),
            "a hold of 300 ms or more read as {p} us"
        );
    }
    // lock.log-hold-threshold-ms 0: no hold is logged as long, however long.
    assert!(
        log(&mut con)
            .iter()
            .all(|entry| field_text(entry, "reason") != "long-hold"),
        "a long-hold entry with the threshold at 0 (never)"
    );
}

/// docs/operations.md (the lock log): a hold that moved with its key is never logged. RENAME and
/// MOVE of a held lock used to log the old name as `deleted` (and LOCK.LOST answered `deleted`
/// for it), and a lock overwritten by RENAME onto its name was not logged at all. Now a moved
/// lock is not logged, and one a RENAME lands on is logged `overwritten`; a DEL after both is
/// logged `deleted` as before.
#[test]
fn a_renamed_or_moved_lock_is_not_logged_lost_and_one_renamed_onto_is_overwritten() {
    let server = Server::start();
    let mut con = server.conn();
    for key in ["a", "b", "target"] {
        int(call!(&mut con, "LOCK.ACQUIRE", key, "H", 60000), "take");
    }
    ok(call!(&mut con, "RENAME", "a", "a2"), "RENAME");
    assert_eq!(int(call!(&mut con, "MOVE", "b", 1), "MOVE"), 1);
    ok(
        call!(&mut con, "RENAME", "a2", "target"),
        "RENAME onto a lock",
    );
    let overwritten = logged(&mut con, "overwritten", "target");
    assert_eq!(field_text(&overwritten, "owner"), "H");
    int(call!(&mut con, "DEL", "target"), "DEL");
    logged(&mut con, "deleted", "target");
    for moved in ["a", "a2", "b"] {
        assert!(
            lost(&mut con, moved, "H").is_none(),
            "{moved}: logged as lost"
        );
        assert!(
            log(&mut con)
                .iter()
                .all(|entry| field_text(entry, "key") != moved),
            "{moved} is in the lock log"
        );
    }
}

/// The third adversarial pass: renames inside one MULTI. `RENAME a c; RENAME c a` logged
/// `deleted c` although the lock never left; `RENAME a c; DEL c` logged two deletions (a and
/// c) for one. The same value unlinked twice in a turn was moved the first time.
#[test]
fn renames_inside_one_multi_log_only_what_was_lost() {
    let server = Server::start();
    let mut con = server.conn();
    int(call!(&mut con, "LOCK.ACQUIRE", "a", "H", 60000), "take");
    let mut there_and_back = redis::pipe();
    there_and_back.atomic();
    there_and_back.cmd("RENAME").arg("a").arg("c");
    there_and_back.cmd("RENAME").arg("c").arg("a");
    let _: Value = there_and_back.query(&mut con).expect("EXEC");
    int(
        call!(&mut con, "LOCK.ACQUIRE", "marker", "M", 60000),
        "marker",
    );
    int(call!(&mut con, "DEL", "marker"), "DEL");
    logged(&mut con, "deleted", "marker");
    assert!(
        log(&mut con)
            .iter()
            .all(|e| field_text(e, "key") != "a" && field_text(e, "key") != "c"),
        "a lock renamed there and back is in the lock log"
    );
    let mut moved_then_deleted = redis::pipe();
    moved_then_deleted.atomic();
    moved_then_deleted.cmd("RENAME").arg("a").arg("c");
    moved_then_deleted.cmd("DEL").arg("c");
    let _: Value = moved_then_deleted.query(&mut con).expect("EXEC");
    logged(&mut con, "deleted", "c");
    assert!(
        log(&mut con).iter().all(|e| field_text(e, "key") != "a"),
        "a, moved to c, logged as lost"
    );
}
