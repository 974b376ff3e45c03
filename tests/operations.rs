//! Operating rlock (issue 9): a refused call leaves no trace, real changes are seen by every
//! channel (WATCH, client-side caching, the dirty counter, keyspace events, propagation),
//! INFO counters, configs, LOCK.HELP, command metadata, MEMORY USAGE.

mod common;

use common::*;
use redis::Value;

// ---------------------------------------------------------------------------------------
// Observing every channel a change is seen by

/// What one action left behind, channel by channel.
#[derive(Debug, Default)]
struct Traces {
    /// A WATCH on the key made the next EXEC fail.
    watch_aborted: bool,
    /// Client-side caching (BCAST tracking of the key) was told the key changed.
    invalidated: bool,
    /// Changes counted toward RDB save points (rdb_changes_since_last_save).
    dirty: i64,
    /// Bytes appended to the AOF (what replicas and the AOF are fed).
    propagated: i64,
    /// Keyspace events on the key, as (event class channel, event name).
    events: Vec<String>,
}

impl Traces {
    fn is_silent(&self) -> bool {
        !self.watch_aborted
            && !self.invalidated
            && self.dirty == 0
            && self.propagated == 0
            && self.events.is_empty()
    }

    fn is_full_change(&self) -> bool {
        self.watch_aborted && self.invalidated && self.dirty > 0 && self.propagated > 0
    }
}

/// A server that listens on every channel: AOF (propagation), save points (dirty counter),
/// and keyspace events of every class.
///
/// `appendfsync always` makes `aof_current_size` exact at every reply: the AOF buffer is
/// written before the replies go out. With the default `everysec` the server postpones that
/// write (up to 2 s) while its background fsync of the previous second is still running, so on
/// a busy disk one call's bytes were counted during a later one (a refused call "propagated"
/// the 37 bytes of the previous `SET k:sentinel x`, a handoff "propagated" nothing).
fn observed_server() -> Server {
    Server::start_with(&[
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
        "--save",
        "3600 1",
        "--notify-keyspace-events",
        "KEA",
    ])
}

/// Runs `action` (on its own connection) after `setup`, and reports what it left behind on
/// `key`. The end of what it left is marked by a SET of a sentinel key, seen by every channel.
fn observe(
    server: &Server,
    key: &str,
    setup: impl FnOnce(&mut redis::Connection),
    action: impl FnOnce(&mut redis::Connection),
) -> Traces {
    let mut con = server.conn();
    setup(&mut con);
    let sentinel = format!("{key}:sentinel");

    let mut listener = server.conn();
    let listener_id = int(call!(&mut listener, "CLIENT", "ID"), "CLIENT ID");
    let mut tracked = server.conn();
    ok(
        call!(
            &mut tracked,
            "CLIENT",
            "TRACKING",
            "ON",
            "REDIRECT",
            listener_id,
            "BCAST",
            "PREFIX",
            key
        ),
        "CLIENT TRACKING",
    );
    let mut watcher = server.conn();
    ok(call!(&mut watcher, "WATCH", key), "WATCH");

    let mut pubsub = listener.as_pubsub();
    pubsub.subscribe("__redis__:invalidate").unwrap();
    pubsub.psubscribe("__key*@*__:*").unwrap();

    let dirty_before = info_int(&mut con, "persistence", "rdb_changes_since_last_save");
    let aof_before = info_int(&mut con, "persistence", "aof_current_size");
    action(&mut con);
    let dirty = info_int(&mut con, "persistence", "rdb_changes_since_last_save") - dirty_before;
    let propagated = info_int(&mut con, "persistence", "aof_current_size") - aof_before;
    ok(call!(&mut con, "SET", &sentinel, "x"), "SET sentinel");

    let mut traces = Traces {
        dirty,
        propagated,
        ..Traces::default()
    };
    let keyspace_channel = format!("__keyspace@0__:{key}");
    let (mut sentinel_invalidated, mut sentinel_event) = (false, false);
    for _ in 0..1000 {
        if sentinel_invalidated && sentinel_event {
            break;
        }
        let message = pubsub.get_message().expect("a pubsub message");
        let channel = message.get_channel_name().to_string();
        if channel == "__redis__:invalidate" {
            let keys: Vec<String> = message.get_payload().unwrap_or_default();
            traces.invalidated |= keys.iter().any(|k| k == key);
            sentinel_invalidated |= keys.contains(&sentinel);
        } else if channel == keyspace_channel {
            traces
                .events
                .push(message.get_payload().unwrap_or_default());
        } else if channel == format!("__keyspace@0__:{sentinel}") {
            sentinel_event = true;
        }
    }
    assert!(
        sentinel_invalidated && sentinel_event,
        "the sentinel was not seen"
    );
    drop(pubsub);
    traces.watch_aborted = matches!(exec_after_watch(&mut watcher), Value::Nil);
    traces
}

/// MULTI / PING / EXEC on a watching connection: nil when the transaction was aborted.
fn exec_after_watch(watcher: &mut redis::Connection) -> Value {
    ok(call!(watcher, "MULTI"), "MULTI");
    let _ = call!(watcher, "PING");
    call!(watcher, "EXEC").expect("EXEC")
}

fn acquire_by(owner: &'static str, key: &'static str) -> impl FnOnce(&mut redis::Connection) {
    move |con| {
        int(
            call!(con, "LOCK.ACQUIRE", key, owner, 100_000),
            "LOCK.ACQUIRE",
        );
    }
}

fn nothing(_: &mut redis::Connection) {}

#[track_caller]
fn assert_silent(what: &str, traces: &Traces) {
    assert!(traces.is_silent(), "{what} left a trace: {traces:?}");
}

#[track_caller]
fn assert_changed(what: &str, traces: &Traces) {
    assert!(
        traces.is_full_change(),
        "{what} was not seen as a change on every channel: {traces:?}"
    );
}

// ---------------------------------------------------------------------------------------
// 1. A refused call is not a change

#[test]
fn refused_calls_leave_no_trace() {
    let server = observed_server();
    type Action = fn(&mut redis::Connection);
    let refusals: Vec<(&str, Action)> = vec![
        ("ACQUIRE by another owner", |con| {
            nil(call!(con, "LOCK.ACQUIRE", "k", "other", 10_000), "ACQUIRE")
        }),
        ("ACQUIRE WAIT that times out", |con| {
            nil(
                call!(con, "LOCK.ACQUIRE", "k", "other", 10_000, "WAIT", 20),
                "ACQUIRE WAIT",
            )
        }),
        ("REENTER by another owner", |con| {
            nil(call!(con, "LOCK.REENTER", "k", "other", 10_000), "REENTER")
        }),
        ("RELEASE by another owner", |con| {
            nil(call!(con, "LOCK.RELEASE", "k", "other"), "RELEASE")
        }),
        ("RENEW by another owner", |con| {
            assert_eq!(
                int(call!(con, "LOCK.RENEW", "k", "other", 10_000), "RENEW"),
                0
            )
        }),
        ("INFO", |con| {
            assert!(matches!(call!(con, "LOCK.INFO", "k"), Ok(Value::Array(_))))
        }),
        ("ACQUIRE with a bad ttl", |con| {
            error(call!(con, "LOCK.ACQUIRE", "k", "holder", 0), "ACQUIRE");
        }),
        ("RELEASE with an empty owner", |con| {
            error(call!(con, "LOCK.RELEASE", "k", ""), "RELEASE");
        }),
        ("RENEW with a bad ttl", |con| {
            error(call!(con, "LOCK.RENEW", "k", "holder", "x"), "RENEW");
        }),
        ("REENTER with too many arguments", |con| {
            error(call!(con, "LOCK.REENTER", "k", "holder", 1, 2), "REENTER");
        }),
    ];
    let mut setup_con = server.conn();
    acquire_by("holder", "k")(&mut setup_con);
    for (what, action) in refusals {
        let traces = observe(&server, "k", nothing, action);
        assert_silent(what, &traces);
    }
    // On a free key too: nothing to refuse against, still nothing changes.
    let on_free: Vec<(&str, Action)> = vec![
        ("REENTER of a free lock", |con| {
            nil(call!(con, "LOCK.REENTER", "free", "a"), "REENTER")
        }),
        ("RELEASE of a free lock", |con| {
            nil(call!(con, "LOCK.RELEASE", "free", "a"), "RELEASE")
        }),
        ("RENEW of a free lock", |con| {
            assert_eq!(int(call!(con, "LOCK.RENEW", "free", "a", 1000), "RENEW"), 0)
        }),
        ("INFO of a free lock", |con| {
            nil(call!(con, "LOCK.INFO", "free"), "INFO")
        }),
    ];
    for (what, action) in on_free {
        let traces = observe(&server, "free", nothing, action);
        assert_silent(what, &traces);
    }
}

#[test]
fn calls_on_a_key_of_another_type_leave_no_trace() {
    let server = observed_server();
    let mut con = server.conn();
    ok(call!(&mut con, "SET", "s", "v"), "SET");
    type Action = fn(&mut redis::Connection);
    let calls: Vec<(&str, Action)> = vec![
        ("ACQUIRE", |con| {
            error(call!(con, "LOCK.ACQUIRE", "s", "a", 1000), "ACQUIRE");
        }),
        ("REENTER", |con| {
            error(call!(con, "LOCK.REENTER", "s", "a"), "REENTER");
        }),
        ("RELEASE", |con| {
            error(call!(con, "LOCK.RELEASE", "s", "a"), "RELEASE");
        }),
        ("RENEW", |con| {
            error(call!(con, "LOCK.RENEW", "s", "a", 1000), "RENEW");
        }),
        ("INFO", |con| {
            error(call!(con, "LOCK.INFO", "s"), "INFO");
        }),
    ];
    for (what, action) in calls {
        let traces = observe(&server, "s", nothing, action);
        assert_silent(&format!("{what} on a string key"), &traces);
    }
}

/// The issue's own example, and SET NX for comparison.
#[test]
fn a_refused_acquire_keeps_the_holders_transaction_as_set_nx_does() {
    let server = Server::start();
    let mut a = server.conn();
    let mut b = server.conn();
    int(
        call!(&mut a, "LOCK.ACQUIRE", "k", "holder", 10_000),
        "ACQUIRE",
    );
    ok(call!(&mut a, "WATCH", "k"), "WATCH");
    nil(
        call!(&mut b, "LOCK.ACQUIRE", "k", "other", 10_000),
        "ACQUIRE",
    );
    assert!(matches!(exec_after_watch(&mut a), Value::Array(_)));

    ok(call!(&mut a, "SET", "plain", "v"), "SET");
    ok(call!(&mut a, "WATCH", "plain"), "WATCH");
    nil(call!(&mut b, "SET", "plain", "w", "NX"), "SET NX");
    assert!(matches!(exec_after_watch(&mut a), Value::Array(_)));
}

#[test]
fn real_changes_are_seen_on_every_channel_with_their_events() {
    let server = observed_server();
    type Action = fn(&mut redis::Connection);
    type Setup = fn(&mut redis::Connection);
    let hold: Setup = |con| {
        int(
            call!(con, "LOCK.ACQUIRE", "c", "holder", 100_000),
            "ACQUIRE",
        );
    };
    let hold_twice: Setup = |con| {
        int(
            call!(con, "LOCK.ACQUIRE", "c", "holder", 100_000),
            "ACQUIRE",
        );
        int(call!(con, "LOCK.REENTER", "c", "holder"), "REENTER");
    };
    let changes: Vec<(&str, Setup, Action, &[&str])> = vec![
        (
            "ACQUIRE of a free lock",
            nothing,
            |con| {
                int(
                    call!(con, "LOCK.ACQUIRE", "c", "holder", 100_000),
                    "ACQUIRE",
                );
            },
            &["lock.acquire", "expire"],
        ),
        (
            "ACQUIRE by the holder (reentry)",
            hold,
            |con| {
                int(
                    call!(con, "LOCK.ACQUIRE", "c", "holder", 100_000),
                    "ACQUIRE",
                );
            },
            &["lock.reenter", "expire"],
        ),
        (
            "REENTER",
            hold,
            |con| {
                int(call!(con, "LOCK.REENTER", "c", "holder"), "REENTER");
            },
            &["lock.reenter"],
        ),
        (
            "REENTER with a ttl",
            hold,
            |con| {
                int(call!(con, "LOCK.REENTER", "c", "holder", 5000), "REENTER");
            },
            &["lock.reenter", "expire"],
        ),
        (
            "RELEASE of one of two holds",
            hold_twice,
            |con| {
                int(call!(con, "LOCK.RELEASE", "c", "holder"), "RELEASE");
            },
            &["lock.release"],
        ),
        (
            "RELEASE of the last hold",
            hold,
            |con| {
                int(call!(con, "LOCK.RELEASE", "c", "holder"), "RELEASE");
            },
            &["del"],
        ),
        (
            "RENEW",
            hold,
            |con| {
                int(call!(con, "LOCK.RENEW", "c", "holder", 50_000), "RENEW");
            },
            &["lock.renew", "expire"],
        ),
    ];
    for (what, setup, action, events) in changes {
        let mut con = server.conn();
        let _ = call!(&mut con, "DEL", "c");
        let traces = observe(&server, "c", setup, action);
        assert_changed(what, &traces);
        assert_eq!(traces.events, events, "{what}");
    }
}

/// Holds `key` for "holder" with `ttl`, and queues one waiter ("waiter") behind it; the
/// waiter's reply (its token, or nil) comes back through the handle.
fn hold_with_waiter(
    server: &Server,
    key: &'static str,
    ttl: u64,
) -> std::thread::JoinHandle<Result<Value, String>> {
    let mut con = server.conn();
    int(
        call!(&mut con, "LOCK.ACQUIRE", key, "holder", ttl),
        "ACQUIRE",
    );
    let mut waiter = server.conn();
    let handle = std::thread::spawn(move || {
        call!(
            &mut waiter,
            "LOCK.ACQUIRE",
            key,
            "waiter",
            100_000,
            "WAIT",
            0
        )
    });
    server.wait_for_blocked_clients(1);
    handle
}

#[test]
fn handoffs_are_seen_on_every_channel_with_their_events() {
    let server = observed_server();
    let release: fn(&mut redis::Connection) = |con| {
        int(call!(con, "LOCK.RELEASE", "h1", "holder"), "RELEASE");
    };
    type Case = (
        &'static str,
        &'static str,
        u64,
        fn(&mut redis::Connection),
        &'static [&'static str],
    );
    let cases: Vec<Case> = vec![
        (
            "handoff on release",
            "h1",
            100_000,
            release,
            &["lock.release", "lock.handoff", "expire"],
        ),
        (
            "handoff on DEL",
            "h2",
            100_000,
            |con| {
                int(call!(con, "DEL", "h2"), "DEL");
            },
            &["del", "lock.handoff", "expire"],
        ),
        (
            "handoff on expiry",
            "h3",
            200,
            |con| {
                wait_until("the expired lock to be handed over", || {
                    lock_info(con, "h3").is_some_and(|info| info.owner == b"waiter")
                });
            },
            &["expired", "lock.handoff", "expire"],
        ),
    ];
    for (what, key, ttl, action, events) in cases {
        let mut waiter = None;
        let traces = observe(
            &server,
            key,
            |_| waiter = Some(hold_with_waiter(&server, key, ttl)),
            action,
        );
        let reply = waiter.map(|handle| handle.join().expect("the waiter thread"));
        assert!(
            matches!(reply, Some(Ok(Value::Int(_)))),
            "{what}: {reply:?}"
        );
        assert_changed(what, &traces);
        assert_eq!(traces.events, events, "{what}");
    }
}

#[test]
fn a_replica_publishes_the_events_of_its_master() {
    let master = Server::start();
    let replica = Server::start_with(&["--notify-keyspace-events", "KEA"]);
    replica.replicate_from(&master);
    let mut listener = replica.conn();
    let mut pubsub = listener.as_pubsub();
    pubsub.psubscribe("__keyspace@0__:r").unwrap();
    let mut con = master.conn();
    int(
        call!(&mut con, "LOCK.ACQUIRE", "r", "a", 100_000),
        "ACQUIRE",
    );
    int(call!(&mut con, "LOCK.REENTER", "r", "a"), "REENTER");
    int(call!(&mut con, "LOCK.RENEW", "r", "a", 50_000), "RENEW");
    int(call!(&mut con, "LOCK.RELEASE", "r", "a"), "RELEASE");
    int(call!(&mut con, "LOCK.RELEASE", "r", "a"), "RELEASE");
    let expected = [
        "lock.acquire",
        "expire",
        "lock.reenter",
        "lock.renew",
        "expire",
        "lock.release",
        "del",
    ];
    let seen: Vec<String> = expected
        .iter()
        .map(|_| {
            pubsub
                .get_message()
                .expect("an event on the replica")
                .get_payload()
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(seen, expected);
}

// ---------------------------------------------------------------------------------------
// 3. INFO lock

fn lock_info_field(con: &mut redis::Connection, name: &str) -> i64 {
    info_int(con, "lock", &format!("lock_{name}"))
}

#[test]
fn info_lock_counts_what_happened() {
    let server = Server::start();
    let mut con = server.conn();
    let field = |con: &mut redis::Connection, name: &str| lock_info_field(con, name);
    assert_eq!(field(&mut con, "held"), 0);
    int(
        call!(&mut con, "LOCK.ACQUIRE", "a", "x", 100_000),
        "ACQUIRE",
    );
    int(
        call!(&mut con, "LOCK.ACQUIRE", "a", "x", 100_000),
        "ACQUIRE",
    );
    int(call!(&mut con, "LOCK.REENTER", "a", "x"), "REENTER");
    nil(
        call!(&mut con, "LOCK.ACQUIRE", "a", "y", 100_000),
        "ACQUIRE",
    );
    nil(
        call!(&mut con, "LOCK.ACQUIRE", "a", "y", 100_000, "WAIT", 10),
        "WAIT",
    );
    int(call!(&mut con, "LOCK.RENEW", "a", "x", 100_000), "RENEW");
    int(call!(&mut con, "LOCK.RELEASE", "a", "x"), "RELEASE");
    nil(call!(&mut con, "LOCK.RELEASE", "a", "y"), "RELEASE");
    int(
        call!(&mut con, "LOCK.ACQUIRE", "b", "x", 100_000),
        "ACQUIRE",
    );
    assert_eq!(field(&mut con, "held"), 2);
    assert_eq!(field(&mut con, "acquisitions"), 2);
    assert_eq!(field(&mut con, "reentries"), 2);
    assert_eq!(field(&mut con, "releases"), 1);
    assert_eq!(field(&mut con, "renewals"), 1);
    assert_eq!(field(&mut con, "contended"), 2);
    assert_eq!(field(&mut con, "wait_timeouts"), 1);
    let version = info_field(&mut con, "lock", "lock_version");
    assert_eq!(version.as_deref(), Some(env!("CARGO_PKG_VERSION")));

    // Handoffs, one of each cause.
    let waiter = hold_with_waiter(&server, "h1", 100_000);
    int(call!(&mut con, "LOCK.RELEASE", "h1", "holder"), "RELEASE");
    assert!(matches!(waiter.join().unwrap(), Ok(Value::Int(_))));
    let waiter = hold_with_waiter(&server, "h2", 100_000);
    int(call!(&mut con, "DEL", "h2"), "DEL");
    assert!(matches!(waiter.join().unwrap(), Ok(Value::Int(_))));
    let waiter = hold_with_waiter(&server, "h3", 100);
    assert!(matches!(waiter.join().unwrap(), Ok(Value::Int(_))));
    assert_eq!(field(&mut con, "handoffs_on_release"), 1);
    assert_eq!(field(&mut con, "handoffs_on_delete"), 1);
    assert_eq!(field(&mut con, "handoffs_on_expiry"), 1);
    assert_eq!(field(&mut con, "expirations"), 1);

    // A lock nobody waits for expires through the server's own expiry.
    int(call!(&mut con, "LOCK.ACQUIRE", "e", "x", 1), "ACQUIRE");
    wait_until("the lock to expire", || {
        let _ = call!(&mut con, "EXISTS", "e");
        lock_info_field(&mut con, "expirations") == 2
    });
    // A plain key expiring is not a lock expiring.
    ok(call!(&mut con, "SET", "plain", "v", "PX", 1), "SET");
    wait_until("the plain key to expire", || {
        int(call!(&mut con, "EXISTS", "plain"), "EXISTS") == 0
    });
    assert_eq!(field(&mut con, "expirations"), 2);
}

/// rlock listens for expiries only from the first lock that goes (other commands pay nothing
/// for a subscription before): when that first one expires, it still counts, and a waiter
/// for it gets it as an expiry.
#[test]
fn the_first_lock_to_go_counts_when_it_expires() {
    let server = Server::start();
    let mut con = server.conn();
    int(call!(&mut con, "LOCK.ACQUIRE", "e", "x", 1), "ACQUIRE");
    wait_until("the lock to expire", || {
        let _ = call!(&mut con, "EXISTS", "e");
        lock_info_field(&mut con, "expirations") == 1
    });

    let server = Server::start();
    let mut con = server.conn();
    let waiter = hold_with_waiter(&server, "w", 100);
    assert!(matches!(waiter.join().unwrap(), Ok(Value::Int(_))));
    assert_eq!(lock_info_field(&mut con, "expirations"), 1);
    assert_eq!(lock_info_field(&mut con, "handoffs_on_expiry"), 1);
}

/// No keyspace event of the server pays for rlock's expiries while only lock commands free
/// locks: releases (plain, reentered, shared, LIMIT, session), plain keys expiring and DELs on a
/// replica leave rlock unsubscribed from "expired" events. Redis 7.0 subscribes when the server
/// itself first unlinks a lock (an admin's DEL here); later servers never do, and tell an
/// expiry in the unlink callback. Expiries and deletions count apart on every server.
#[test]
fn only_the_server_unlinking_a_lock_subscribes_to_expiry_events() {
    let master = Server::start_with(&["--enable-debug-command", "yes"]);
    let replica = Server::start();
    replica.replicate_from(&master);
    let mut con = master.conn();
    for i in 0..20 {
        let key = format!("k{i}");
        int(
            call!(&mut con, "LOCK.ACQUIRE", &key, "x", 60_000),
            "ACQUIRE",
        );
        int(
            call!(&mut con, "LOCK.ACQUIRE", &key, "x", 60_000),
            "reentry",
        );
        int(call!(&mut con, "LOCK.RELEASE", &key, "x"), "RELEASE");
        int(call!(&mut con, "LOCK.RELEASE", &key, "x"), "RELEASE");
    }
    int(
        call!(&mut con, "LOCK.ACQUIRE", "s", "a", 60_000, "SHARED"),
        "SHARED",
    );
    int(
        call!(&mut con, "LOCK.ACQUIRE", "s", "b", 60_000, "SHARED"),
        "SHARED",
    );
    int(call!(&mut con, "LOCK.RELEASE", "s", "a"), "RELEASE");
    int(call!(&mut con, "LOCK.RELEASE", "s", "b"), "RELEASE");
    int(
        call!(&mut con, "LOCK.ACQUIRE", "n", "a", 60_000, "LIMIT", 2),
        "LIMIT",
    );
    int(call!(&mut con, "LOCK.RELEASE", "n", "a"), "RELEASE");
    int(
        call!(&mut con, "LOCK.ACQUIRE", "q", "a", 60_000, "SESSION"),
        "SESSION",
    );
    int(call!(&mut con, "LOCK.RELEASE", "q", "a"), "RELEASE");
    ok(call!(&mut con, "SET", "plain", "v", "PX", 1), "SET");
    wait_until("the plain key to expire", || {
        int(call!(&mut con, "EXISTS", "plain"), "EXISTS") == 0
    });
    int(call!(&mut con, "WAIT", 1, 10_000), "WAIT");
    let mut replica_con = replica.conn();
    assert_eq!(int(call!(&mut replica_con, "DBSIZE"), "DBSIZE"), 0);
    assert_eq!(lock_info_field(&mut con, "expiry_subscription"), 0);
    assert_eq!(lock_info_field(&mut replica_con, "expiry_subscription"), 0);

    let subscribes = master
        .redis_version()
        .is_some_and(|version| version < (7, 2));
    int(call!(&mut con, "LOCK.ACQUIRE", "d", "x", 60_000), "ACQUIRE");
    int(call!(&mut con, "DEL", "d"), "DEL");
    assert_eq!(
        lock_info_field(&mut con, "expiry_subscription"),
        i64::from(subscribes)
    );
    assert_eq!(
        lock_info_field(&mut con, "expirations"),
        0,
        "a DEL is no expiry"
    );

    // An expiry the server finds itself inside a transaction, then a DEL there of a lock that
    // is live (the transaction's clock is the one the server decides expiries by).
    ok(call!(&mut con, "DEBUG", "SET-ACTIVE-EXPIRE", 0), "DEBUG");
    int(call!(&mut con, "LOCK.ACQUIRE", "e", "x", 1), "ACQUIRE");
    int(
        call!(&mut con, "LOCK.ACQUIRE", "live", "x", 60_000),
        "ACQUIRE",
    );
    std::thread::sleep(std::time::Duration::from_millis(20));
    ok(call!(&mut con, "MULTI"), "MULTI");
    let _ = call!(&mut con, "EXISTS", "e");
    let _ = call!(&mut con, "DEL", "live");
    let _ = call!(&mut con, "EXEC");
    assert_eq!(lock_info_field(&mut con, "expirations"), 1);
    assert_eq!(
        lock_info_field(&mut con, "expiry_subscription"),
        i64::from(subscribes)
    );
    assert_eq!(lock_info_field(&mut replica_con, "expiry_subscription"), 0);
}

#[test]
fn info_lock_held_stays_right_across_reload_and_restart() {
    let mut server = Server::start_with(&["--appendonly", "yes", "--enable-debug-command", "yes"]);
    let mut con = server.conn();
    for key in ["a", "b", "c"] {
        int(
            call!(&mut con, "LOCK.ACQUIRE", key, "x", 100_000),
            "ACQUIRE",
        );
    }
    ok(call!(&mut con, "SET", "plain", "v"), "SET");
    int(call!(&mut con, "LOCK.RELEASE", "c", "x"), "RELEASE");
    assert_eq!(lock_info_field(&mut con, "held"), 2);
    ok(call!(&mut con, "DEBUG", "RELOAD"), "DEBUG RELOAD");
    // The count is of values alive: the reloaded ones at once, the flushed ones when the
    // server frees them (once seen late, 4 for a moment, on a loaded machine).
    wait_until("lock_held to be 2 after DEBUG RELOAD", || {
        lock_info_field(&mut con, "held") == 2
    });
    let last_token = lock_info_field(&mut con, "last_token");
    drop(con);
    server.restart();
    let mut con = server.conn();
    assert_eq!(lock_info_field(&mut con, "held"), 2);
    assert_eq!(lock_info_field(&mut con, "last_token"), last_token);
    int(call!(&mut con, "DEL", "a"), "DEL");
    ok(call!(&mut con, "FLUSHALL"), "FLUSHALL");
    // A server whose FLUSHALL is lazy by default (Valkey 9) frees the values on a background
    // thread after the reply: the count falls when they are freed (docs/operations.md).
    wait_until("lock_held to fall to 0 after FLUSHALL", || {
        lock_info_field(&mut con, "held") == 0
    });
}

#[test]
fn locks_dropped_by_becoming_a_replica_are_counted_and_logged() {
    let old_master = Server::start();
    let new_master = Server::start();
    let mut con = old_master.conn();
    for key in ["a", "b"] {
        int(
            call!(&mut con, "LOCK.ACQUIRE", key, "x", 100_000),
            "ACQUIRE",
        );
    }
    let mut other = new_master.conn();
    int(
        call!(&mut other, "LOCK.ACQUIRE", "z", "x", 100_000),
        "ACQUIRE",
    );
    assert_eq!(lock_info_field(&mut con, "dropped_on_resync"), 0);
    old_master.replicate_from(&new_master);
    assert_eq!(lock_info_field(&mut con, "dropped_on_resync"), 2);
    // A replica that flushes its old data lazily (Valkey 8's replica-lazy-flush) frees the
    // values on a background thread after the sync: the count falls when they are freed.
    wait_until("lock_held to fall to 1 after the sync", || {
        lock_info_field(&mut con, "held") == 1
    });
    assert!(
        old_master.log().contains("2 locks dropped"),
        "no warning in the log"
    );
}

// ---------------------------------------------------------------------------------------
// 4. Configs

fn config_get(con: &mut redis::Connection, name: &str) -> String {
    match call!(con, "CONFIG", "GET", name) {
        Ok(Value::Array(items)) if items.len() == 2 => text(&items[1]).unwrap_or_default(),
        other => panic!("CONFIG GET {name}: {other:?}"),
    }
}

#[test]
fn configs_have_documented_defaults_and_refuse_bad_values() {
    let server = Server::start();
    let mut con = server.conn();
    assert_eq!(config_get(&mut con, "lock.max-ttl"), "2592000000");
    assert_eq!(config_get(&mut con, "lock.max-owner-bytes"), "1024");
    assert_eq!(config_get(&mut con, "lock.max-waiters"), "10000");
    assert_eq!(config_get(&mut con, "lock.split-allowance-ms"), "600000");
    // Each range is inclusive: its ends are taken.
    for (name, value) in [
        ("lock.split-allowance-ms", "86400000"),
        ("lock.split-allowance-ms", "1000"),
        ("lock.split-allowance-ms", "600000"),
    ] {
        ok(call!(&mut con, "CONFIG", "SET", name, value), "CONFIG SET");
        assert_eq!(config_get(&mut con, name), value);
    }
    let bad = [
        ("lock.split-allowance-ms", "86400001"),
        ("lock.split-allowance-ms", "999"),
        ("lock.max-ttl", "0"),
        ("lock.max-ttl", "2592000001"),
        ("lock.max-ttl", "soon"),
        ("lock.max-owner-bytes", "1025"),
        ("lock.max-owner-bytes", "-1"),
        ("lock.max-waiters", "0"),
    ];
    for (name, value) in bad {
        let before = config_get(&mut con, name);
        let text = error(call!(&mut con, "CONFIG", "SET", name, value), "CONFIG SET");
        assert!(text.starts_with("ERR"), "{name} {value}: {text}");
        assert_eq!(config_get(&mut con, name), before, "{name} {value}");
    }
}

#[test]
fn configs_set_at_runtime_take_effect_at_once() {
    let server = Server::start();
    let mut con = server.conn();
    ok(
        call!(&mut con, "CONFIG", "SET", "lock.max-ttl", 1000),
        "CONFIG SET",
    );
    assert_eq!(config_get(&mut con, "lock.max-ttl"), "1000");
    assert_eq!(
        error(call!(&mut con, "LOCK.ACQUIRE", "k", "a", 1001), "ACQUIRE"),
        "ERR invalid ttl in 'lock.acquire' command: expected an integer number of milliseconds from 1 to 1000"
    );
    int(call!(&mut con, "LOCK.ACQUIRE", "k", "a", 1000), "ACQUIRE");
    error(call!(&mut con, "LOCK.RENEW", "k", "a", 5000), "RENEW");
    ok(
        call!(&mut con, "CONFIG", "SET", "lock.max-ttl", 2_592_000_000u64),
        "CONFIG SET",
    );

    ok(
        call!(&mut con, "CONFIG", "SET", "lock.max-owner-bytes", 4),
        "CONFIG SET",
    );
    assert_eq!(
        error(
            call!(&mut con, "LOCK.ACQUIRE", "o", "abcde", 100),
            "ACQUIRE"
        ),
        "ERR owner longer than 4 bytes in 'lock.acquire' command"
    );
    ok(
        call!(&mut con, "CONFIG", "SET", "lock.max-owner-bytes", 1024),
        "CONFIG SET",
    );

    ok(
        call!(&mut con, "CONFIG", "SET", "lock.max-waiters", 1),
        "CONFIG SET",
    );
    let waiter = hold_with_waiter(&server, "w", 100_000);
    let text = error(
        call!(&mut con, "LOCK.ACQUIRE", "w", "late", 100, "WAIT", 0),
        "ACQUIRE WAIT",
    );
    assert!(text.starts_with("ERR too many waiters"), "{text}");
    assert_eq!(lock_info_field(&mut con, "waiters"), 1);
    int(call!(&mut con, "LOCK.RELEASE", "w", "holder"), "RELEASE");
    assert!(matches!(waiter.join().unwrap(), Ok(Value::Int(_))));
}

#[test]
fn configs_load_from_the_command_line_and_module_loadex() {
    let server = Server::start_with(&["--lock.max-waiters", "7"]);
    let mut con = server.conn();
    assert_eq!(config_get(&mut con, "lock.max-waiters"), "7");

    let server = Server::start_without_module(&["--enable-module-command", "yes"]);
    let mut con = server.conn();
    let module = module_path();
    ok(
        call!(
            &mut con,
            "MODULE",
            "LOADEX",
            module.to_str().unwrap(),
            "CONFIG",
            "lock.max-ttl",
            "60000"
        ),
        "MODULE LOADEX",
    );
    assert_eq!(config_get(&mut con, "lock.max-ttl"), "60000");
}

// ---------------------------------------------------------------------------------------
// LOCK.HELP

/// The lines of a help reply, each checked to be a simple string (as OBJECT HELP replies).
fn help_lines(reply: Result<Value, String>, what: &str) -> Vec<String> {
    let Ok(Value::Array(items)) = reply else {
        panic!("{what}: expected an array, got {reply:?}");
    };
    items
        .iter()
        .map(|item| match item {
            Value::SimpleString(line) => line.clone(),
            other => panic!("{what}: expected simple strings, got {other:?}"),
        })
        .collect()
}

#[test]
fn lock_help_lists_every_client_command_as_object_help_does() {
    let server = Server::start();
    let mut con = server.conn();
    let object = help_lines(call!(&mut con, "OBJECT", "HELP"), "OBJECT HELP");
    let lines = help_lines(call!(&mut con, "LOCK.HELP"), "LOCK.HELP");

    // The same shape: a heading, then per command its syntax and indented description, HELP
    // last with the server's own wording.
    assert!(object[0].ends_with("Subcommands are:"), "{object:?}");
    assert!(lines[0].ends_with("Commands are:"), "{lines:?}");
    assert_eq!(lines.len() % 2, 1, "{lines:?}");
    for entry in lines[1..].chunks(2) {
        assert!(entry[0].starts_with("LOCK."), "syntax line: {entry:?}");
        assert!(entry[1].starts_with("    "), "description: {entry:?}");
        assert!(!entry[1][4..].starts_with(' '), "one indent: {entry:?}");
        assert!(entry[1].len() <= 80, "fits a terminal: {entry:?}");
    }
    assert_eq!(lines[lines.len() - 2], "LOCK.HELP");
    // Redis 7.0 says "Prints this help.", later servers "Print this help.".
    let object_last = object[object.len() - 1].replace("Prints", "Print");
    assert_eq!(lines[lines.len() - 1], object_last);

    // Every command a client may send, once; the internal ones are left out.
    let mut listed: Vec<String> = lines[1..]
        .chunks(2)
        .map(|entry| entry[0].split(' ').next().unwrap().to_lowercase())
        .collect();
    listed.sort();
    let Ok(Value::Array(names)) = call!(&mut con, "COMMAND", "LIST", "FILTERBY", "MODULE", "lock")
    else {
        panic!("COMMAND LIST FILTERBY MODULE lock failed");
    };
    let mut public: Vec<String> = names
        .iter()
        .filter_map(text)
        .filter(|name| name != "lock.apply" && name != "lock.tokens")
        .collect();
    public.sort();
    assert_eq!(listed, public);

    assert!(lines.contains(
        &"LOCK.ACQUIRE key owner ttl [SHARED | LIMIT n] [SESSION] [WAIT timeout] [HELD count]"
            .to_string()
    ));
    let text = error(call!(&mut con, "LOCK.HELP", "acquire"), "LOCK.HELP acquire");
    assert!(
        text.starts_with("ERR wrong number of arguments for 'lock.help' command"),
        "{text}"
    );
}
