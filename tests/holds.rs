//! Shared holds, semaphores (LIMIT n) and session holds (issue 12): one state machine behind
//! the LOCK.* commands. Readers coexist and exclude a writer; waiting is FIFO across kinds (no
//! writer starvation) and a run of readers at the head is admitted together; a semaphore admits
//! up to n; a session hold ends with its connection and goes to the next waiter; every holder
//! has its own token and expiry, persisted and replicated whole.

mod common;

use std::thread;

use common::*;

const TTL: u64 = 600_000;

/// Runs `LOCK.ACQUIRE ... WAIT 0` on its own connection in a thread; its token from `join()`.
fn wait_for(
    server: &Server,
    key: &'static str,
    owner: &'static str,
    options: &'static [&'static str],
) -> thread::JoinHandle<i64> {
    let mut con = server.conn();
    thread::spawn(move || {
        let mut all = options.to_vec();
        all.extend(["WAIT", "0"]);
        acquire_with(&mut con, key, owner, TTL, &all)
    })
}

#[test]
fn readers_share_and_exclude_a_writer_with_their_own_rising_tokens() {
    let server = Server::start();
    let mut con = server.conn();
    let r1 = acquire_with(&mut con, "k", "r1", TTL, &["SHARED"]);
    let r2 = acquire_with(&mut con, "k", "r2", TTL, &["shared"]);
    assert!(r2 > r1);
    assert_eq!(try_acquire(&mut con, "k", "w", TTL), None);
    let info = holds(&mut con, "k");
    assert_eq!(info.mode, "shared");
    assert_eq!(info.limit, None);
    assert_eq!(info.holders.len(), 2);
    assert_eq!(info.holders["r1"].2, r1);
    assert_eq!(info.holders["r2"].0, 1);
    let counted = |name: &str| server.info_field("lock", name);
    assert_eq!(counted("lock_shared_holds").as_deref(), Some("2"));
    assert_eq!(counted("lock_limit_holds").as_deref(), Some("0"));
    // Reentry per owner keeps its token.
    assert_eq!(acquire_with(&mut con, "k", "r1", TTL, &["SHARED"]), r1);
    assert_eq!(
        int(call!(&mut con, "LOCK.REENTER", "k", "r2"), "reenter"),
        2
    );
    assert_eq!(holds(&mut con, "k").holders["r1"].0, 2);
    // An upgrade is refused with an error and changes nothing.
    let refused = error(call!(&mut con, "LOCK.ACQUIRE", "k", "r1", TTL), "upgrade");
    assert!(refused.contains("holds this key shared"), "{refused}");
    assert_eq!(holds(&mut con, "k").holders["r1"].0, 2);
    // Releases go per owner; the last one frees the key.
    for (owner, count) in [("r1", 1), ("r1", 0), ("r2", 1), ("r2", 0)] {
        assert_eq!(
            int(call!(&mut con, "LOCK.RELEASE", "k", owner), "release"),
            count
        );
    }
    assert_eq!(int(call!(&mut con, "EXISTS", "k"), "EXISTS"), 0);
    let w = acquire(&mut con, "k", "w", TTL);
    assert!(w > r2, "a later writer is ordered after the readers");
    // SHARED on a key held exclusive waits like anyone else.
    assert_eq!(
        try_acquire_with(&mut con, "k", "r3", TTL, &["SHARED"]),
        None
    );
}

#[test]
fn a_queued_writer_is_not_starved_and_the_readers_behind_it_go_together() {
    let server = Server::start();
    let mut con = server.conn();
    acquire_with(&mut con, "k", "r1", TTL, &["SHARED"]);
    let writer = wait_for(&server, "k", "w", &[]);
    server.wait_for_blocked_clients(1);
    // A reader arriving after the queued writer waits behind it.
    assert_eq!(
        try_acquire_with(&mut con, "k", "late", TTL, &["SHARED"]),
        None
    );
    let reader_a = wait_for(&server, "k", "ra", &["SHARED"]);
    server.wait_for_blocked_clients(2);
    let reader_b = wait_for(&server, "k", "rb", &["SHARED"]);
    server.wait_for_blocked_clients(3);
    assert_eq!(
        int(call!(&mut con, "LOCK.RELEASE", "k", "r1"), "release"),
        0
    );
    let w = writer.join().expect("writer");
    server.wait_for_blocked_clients(2);
    assert_eq!(lock_info(&mut con, "k").expect("held").owner, b"w");
    assert_eq!(int(call!(&mut con, "LOCK.RELEASE", "k", "w"), "release"), 0);
    let a = reader_a.join().expect("reader a");
    let b = reader_b.join().expect("reader b");
    assert!(w < a && a < b, "FIFO order of tokens: {w} {a} {b}");
    let info = holds(&mut con, "k");
    assert_eq!(info.holders.len(), 2, "both readers admitted together");
    assert_eq!(info.waiters, 0);
}

#[test]
fn a_semaphore_admits_up_to_its_limit_and_says_when_a_limit_differs() {
    let server = Server::start();
    let mut con = server.conn();
    let mut tokens = Vec::new();
    for owner in ["a", "b", "c"] {
        tokens.push(acquire_with(&mut con, "sem", owner, TTL, &["LIMIT", "3"]));
    }
    assert!(tokens.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(
        try_acquire_with(&mut con, "sem", "d", TTL, &["LIMIT", "3"]),
        None
    );
    let info = holds(&mut con, "sem");
    assert_eq!((info.mode.as_str(), info.limit), ("limit", Some(3)));
    assert_eq!(info.holders.len(), 3);
    assert_eq!(
        server.info_field("lock", "lock_limit_holds").as_deref(),
        Some("3")
    );
    let differs = error(
        call!(&mut con, "LOCK.ACQUIRE", "sem", "d", TTL, "LIMIT", 4),
        "another limit",
    );
    assert!(
        differs.starts_with("ERR LIMIT 4 differs from the key's LIMIT 3"),
        "{differs}"
    );
    // An exclusive request waits for every permit; so does SHARED.
    assert_eq!(try_acquire(&mut con, "sem", "x", TTL), None);
    assert_eq!(
        try_acquire_with(&mut con, "sem", "x", TTL, &["SHARED"]),
        None
    );
    let waiter = wait_for(&server, "sem", "d", &["LIMIT", "3"]);
    server.wait_for_blocked_clients(1);
    assert_eq!(
        int(call!(&mut con, "LOCK.RELEASE", "sem", "b"), "release"),
        0
    );
    let d = waiter.join().expect("waiter");
    assert!(d > tokens[2]);
    assert_eq!(holds(&mut con, "sem").holders.len(), 3);
    // Every permit back: the next acquirer sets the kind (the admin's way to change n).
    for owner in ["a", "c", "d"] {
        assert_eq!(
            int(call!(&mut con, "LOCK.RELEASE", "sem", owner), "release"),
            0
        );
    }
    acquire_with(&mut con, "sem", "e", TTL, &["LIMIT", "5"]);
    assert_eq!(holds(&mut con, "sem").limit, Some(5));
    assert_eq!(int(call!(&mut con, "DEL", "sem"), "DEL"), 1);
    acquire_with(&mut con, "sem", "e", TTL, &["LIMIT", "2"]);
    assert_eq!(holds(&mut con, "sem").limit, Some(2));
}

#[test]
fn conflicting_or_malformed_options_are_refused_and_change_nothing() {
    let server = Server::start();
    let mut con = server.conn();
    let cases = [
        (
            vec!["SHARED", "LIMIT", "3"],
            "ERR options 'SHARED' and 'LIMIT' cannot be combined",
        ),
        (vec!["LIMIT", "0"], "ERR invalid limit"),
        (vec!["LIMIT"], "ERR option 'LIMIT' needs a value"),
        (
            vec!["SESSION", "SESSION"],
            "ERR option 'SESSION' given twice",
        ),
        (vec!["SHARED", "SHARED"], "ERR option 'SHARED' given twice"),
    ];
    for (options, expected) in cases {
        let mut cmd = redis::cmd("LOCK.ACQUIRE");
        cmd.arg("k").arg("me").arg(TTL).arg(&options);
        let refused = error(run(&mut con, &cmd), "bad options");
        assert!(refused.starts_with(expected), "{options:?}: {refused}");
    }
    assert_eq!(int(call!(&mut con, "EXISTS", "k"), "EXISTS"), 0);
}

#[test]
fn a_waiter_whose_owner_already_holds_the_key_reenters_at_its_turn() {
    let server = Server::start();
    let mut con = server.conn();
    acquire(&mut con, "k", "x", TTL);
    let first = wait_for(&server, "k", "same", &[]);
    server.wait_for_blocked_clients(1);
    let second = wait_for(&server, "k", "same", &[]);
    server.wait_for_blocked_clients(2);
    assert_eq!(int(call!(&mut con, "LOCK.RELEASE", "k", "x"), "release"), 0);
    let a = first.join().expect("first");
    let b = second.join().expect("second");
    assert_eq!(a, b, "the second connection reentered the owner's hold");
    let info = lock_info(&mut con, "k").expect("held");
    assert_eq!((info.owner.as_slice(), info.count), (&b"same"[..], 2));
    server.wait_for_blocked_clients(0);
}

#[test]
fn an_exclusive_lock_keeps_todays_info_fields_and_a_session_adds_one() {
    let server = Server::start();
    let mut con = server.conn();
    acquire(&mut con, "plain", "a", TTL);
    let info = lock_info(&mut con, "plain").expect("held");
    assert_eq!(info.fields, ["owner", "count", "ttl", "token", "waiters"]);
    acquire_with(&mut con, "s", "a", TTL, &["SESSION"]);
    let info = lock_info(&mut con, "s").expect("held");
    assert_eq!(
        info.fields,
        ["owner", "count", "ttl", "token", "waiters", "session"]
    );
    let mut resp3 = server.conn_resp3();
    acquire_with(&mut resp3, "r", "a", TTL, &["SHARED", "SESSION"]);
    let shared = holds(&mut resp3, "r");
    assert_eq!(shared.holders["a"].3, 1);
    assert!(shared.holders["a"].1 > 0 && shared.holders["a"].1 <= TTL as i64);
}

#[test]
fn a_session_hold_ends_with_its_connection_and_goes_to_the_next_waiter() {
    let server = Server::start();
    let mut admin = server.conn();
    let mut holder = server.conn();
    let held = acquire_with(&mut holder, "k", "h", TTL, &["SESSION"]);
    let id = int(call!(&mut holder, "CLIENT", "ID"), "CLIENT ID");
    let mut reader = server.conn();
    acquire_with(&mut reader, "r", "h", TTL, &["SHARED", "SESSION"]);
    acquire_with(&mut admin, "r", "other", TTL, &["SHARED"]);
    let waiter = wait_for(&server, "k", "next", &[]);
    server.wait_for_blocked_clients(1);
    int(call!(&mut admin, "CLIENT", "KILL", "ID", id), "CLIENT KILL");
    let next = waiter.join().expect("waiter");
    assert!(next > held);
    assert_eq!(lock_info(&mut admin, "k").expect("held").owner, b"next");
    // The reader's connection closes: only its hold goes.
    drop(reader);
    wait_until("the reader's session hold to end", || {
        holds(&mut admin, "r").holders.len() == 1
    });
    assert!(holds(&mut admin, "r").holders.contains_key("other"));
    wait_until("INFO lock_session_ends", || {
        server.info_field("lock", "lock_session_ends").as_deref() == Some("2")
    });
}

/// A session holder's connection closed while writes are paused (CLIENT PAUSE WRITE, as a
/// FAILOVER pauses them): the end is written once the pause is over, not during it
/// (propagating a change while clients are paused aborts the server: `propagateNow` asserts;
/// the AOF here makes every change propagate).
#[test]
fn a_session_hold_closed_while_writes_are_paused_ends_after_the_pause() {
    let server = Server::start_with(&["--appendonly", "yes"]);
    let mut admin = server.conn();
    let mut holder = server.conn();
    acquire_with(&mut holder, "k", "h", TTL, &["SESSION"]);
    let id = int(call!(&mut holder, "CLIENT", "ID"), "CLIENT ID");
    ok(
        call!(&mut admin, "CLIENT", "PAUSE", 1000, "WRITE"),
        "pause writes",
    );
    int(call!(&mut admin, "CLIENT", "KILL", "ID", id), "CLIENT KILL");
    wait_until("the session hold's end to be written", || {
        exists(&mut admin, "k") == 0
    });
    assert_eq!(
        server.info_field("lock", "lock_session_ends").as_deref(),
        Some("1")
    );
}

#[test]
fn a_session_waiter_handed_the_key_holds_it_for_its_own_connection() {
    let server = Server::start();
    let mut admin = server.conn();
    acquire(&mut admin, "k", "h", TTL);
    let mut con = server.conn();
    let id = int(call!(&mut con, "CLIENT", "ID"), "CLIENT ID");
    // The connection comes back with the reply: while it is open the session hold stays.
    let waiter = thread::spawn(move || {
        let token = acquire_with(&mut con, "k", "r", TTL, &["SHARED", "SESSION", "WAIT", "0"]);
        (token, con)
    });
    server.wait_for_blocked_clients(1);
    assert_eq!(
        int(call!(&mut admin, "LOCK.RELEASE", "k", "h"), "RELEASE"),
        0
    );
    // The waiter was handed a token (a nil reply panics in its thread).
    let (_token, con) = waiter.join().expect("waiter");
    assert_eq!(holds(&mut admin, "k").holders["r"].3, 1, "a session hold");
    let session_connections = || server.info_field("lock", "lock_session_connections");
    assert_eq!(session_connections().as_deref(), Some("1"));
    // Bound to the waiter's own connection: it ends as that connection closes.
    let clients = || server.info_field("clients", "connected_clients");
    let before = clients();
    int(call!(&mut admin, "CLIENT", "KILL", "ID", id), "CLIENT KILL");
    drop(con);
    wait_until("the waiter's connection to close", || clients() != before);
    assert_eq!(int(call!(&mut admin, "EXISTS", "k"), "EXISTS"), 0);
    assert_eq!(session_connections().as_deref(), Some("0"));
}

#[test]
fn each_holder_expires_on_its_own_and_the_key_lives_as_long_as_the_latest() {
    let server = Server::start();
    let mut con = server.conn();
    int(
        call!(&mut con, "LOCK.ACQUIRE", "k", "short", 300, "SHARED"),
        "short reader",
    );
    acquire_with(&mut con, "k", "long", TTL, &["SHARED"]);
    let pttl = int(call!(&mut con, "PTTL", "k"), "PTTL");
    assert!(
        pttl > 300,
        "the key lives as long as the latest holder: {pttl}"
    );
    wait_until("the short reader to expire", || {
        holds(&mut con, "k").holders.len() == 1
    });
    assert!(holds(&mut con, "k").holders.contains_key("long"));
    // A writer still waits for the long reader.
    assert_eq!(try_acquire(&mut con, "k", "w", TTL), None);
    acquire_with(&mut con, "one", "p", TTL, &["LIMIT", "1"]);
    assert_eq!(
        try_acquire_with(&mut con, "one", "q", TTL, &["LIMIT", "1"]),
        None
    );
}

#[test]
fn a_permit_freed_by_expiry_goes_to_the_waiter() {
    let server = Server::start();
    let mut con = server.conn();
    int(
        call!(&mut con, "LOCK.ACQUIRE", "sem", "a", 200, "LIMIT", "2"),
        "a",
    );
    acquire_with(&mut con, "sem", "b", TTL, &["LIMIT", "2"]);
    let waiter = wait_for(&server, "sem", "c", &["LIMIT", "2"]);
    server.wait_for_blocked_clients(1);
    let c = waiter.join().expect("waiter");
    let info = holds(&mut con, "sem");
    assert_eq!(info.holders.len(), 2);
    assert_eq!(info.holders["c"].2, c);
    assert!(!info.holders.contains_key("a"));
}

#[test]
fn holds_survive_a_reload_and_replicate_whole_and_a_session_falls_back_to_its_ttl() {
    let master = Server::start_with(&["--appendonly", "yes", "--enable-debug-command", "yes"]);
    let replica = Server::start_with(&["--enable-debug-command", "yes"]);
    replica.replicate_from(&master);
    let mut con = master.conn();
    let r1 = acquire_with(&mut con, "rw", "r1", TTL, &["SHARED", "SESSION"]);
    let r2 = acquire_with(&mut con, "rw", "r2", TTL, &["SHARED"]);
    acquire_with(&mut con, "sem", "p", TTL, &["LIMIT", "4"]);
    assert_eq!(
        int(call!(&mut con, "LOCK.RELEASE", "sem", "p"), "release"),
        0
    );
    acquire_with(&mut con, "sem", "q", TTL, &["LIMIT", "4"]);
    acquire_with(&mut con, "sem", "q2", TTL, &["LIMIT", "4"]);
    acquire(&mut con, "plain", "x", TTL);
    assert_eq!(int(call!(&mut con, "WAIT", 1, 10000), "replicas acked"), 1);
    let mut rcon = replica.conn();
    let on_replica = holds(&mut rcon, "rw");
    assert_eq!(on_replica.holders["r1"].2, r1);
    assert_eq!(on_replica.holders["r2"].2, r2);
    assert_eq!(on_replica.holders["r1"].3, 1, "the session flag travels");
    assert_eq!(holds(&mut rcon, "sem").holders.len(), 2);
    assert_eq!(
        int(call!(&mut rcon, "PEXPIRETIME", "rw"), "replica expiry"),
        int(call!(&mut con, "PEXPIRETIME", "rw"), "master expiry")
    );
    let digest = call!(&mut con, "DEBUG", "DIGEST").expect("DIGEST");
    assert_eq!(
        call!(&mut rcon, "DEBUG", "DIGEST").expect("replica DIGEST"),
        digest,
        "master and replica hold the same data"
    );
    ok(call!(&mut con, "DEBUG", "RELOAD"), "DEBUG RELOAD");
    assert_eq!(call!(&mut con, "DEBUG", "DIGEST").expect("DIGEST"), digest);
    let reloaded = holds(&mut con, "rw");
    assert_eq!(reloaded.holders["r1"].2, r1);
    assert_eq!(reloaded.holders["r1"].3, 1);
    // The connection is unknown after the reload: closing it ends nothing, the ttl does.
    drop(con);
    let mut con = master.conn();
    assert_eq!(holds(&mut con, "rw").holders.len(), 2);
    // Tokens stay above every one handed out.
    assert!(acquire(&mut con, "new", "n", TTL) > r2);
    // MEMORY USAGE counts every holder.
    let plain = int(call!(&mut con, "MEMORY", "USAGE", "plain"), "MEMORY plain");
    let two = int(call!(&mut con, "MEMORY", "USAGE", "rw"), "MEMORY rw");
    assert!(two > plain, "{plain} -> {two}");
    // The AOF replays to the same holds.
    let mut master = master;
    master.restart();
    let mut con = master.conn();
    let replayed = holds(&mut con, "rw");
    assert_eq!(replayed.holders["r1"].2, r1);
    assert_eq!(replayed.holders["r2"].2, r2);
    assert_eq!(holds(&mut con, "sem").limit, Some(4));
}
