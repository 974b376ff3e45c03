//! LOCK.OBSERVE key [token] [TIMEOUT ms]: a blocking read of who holds a lock. It answers at
//! once when the caller's epoch is stale, blocks otherwise, and wakes each observer once per
//! change of holders (grant, handoff, release, expiry, DEL, FLUSHALL), never for a reentry or
//! a renewal; timeouts, CLIENT UNBLOCK and disconnects leave nothing behind; MULTI and scripts
//! cannot block; replicas wake their observers as the master's changes arrive.

mod common;

use std::time::Duration;

use common::{acquire, error, info_int, int, nil, ok, release, run, Background, Server};
use redis::Value;

/// Long enough for any wake on a loaded machine; only a bug waits this long.
const REPLY_WITHIN: Duration = Duration::from_secs(20);

/// A client blocked in `LOCK.OBSERVE` on its own connection.
struct Observer {
    client_id: i64,
    call: Background,
}

impl Observer {
    /// Starts `LOCK.OBSERVE key args...` and returns once the server counts `observers`
    /// clients observing (this one included).
    fn start(server: &Server, key: &str, args: &[&str], observers: i64) -> Observer {
        let mut con = server.conn();
        con.set_read_timeout(Some(REPLY_WITHIN * 2))
            .expect("read timeout");
        let client_id = int(call!(&mut con, "CLIENT", "ID"), "CLIENT ID");
        let call = Background::send(con, observe_command(key, args));
        wait_for_observers(server, observers);
        Observer { client_id, call }
    }

    fn reply(self) -> Result<Value, String> {
        self.call.reply(REPLY_WITHIN)
    }

    /// Whether it has been answered (without waiting).
    fn answered(&self) -> bool {
        self.call.try_reply().is_some()
    }
}

fn observers(server: &Server) -> i64 {
    info_int(&mut server.conn(), "lock", "lock_observers")
}

fn wait_for_observers(server: &Server, n: i64) {
    common::wait_until(&format!("{n} observers"), || observers(server) == n);
}

/// `[epoch, state]`: the epoch and, for a held key, its holder's owner (None: free; empty for
/// a key with several holders, which LOCK.INFO lists under `holders`).
fn observed(reply: Result<Value, String>) -> (i64, Option<String>) {
    let Ok(Value::Array(items)) = reply else {
        panic!("LOCK.OBSERVE: expected [epoch, state], got {reply:?}");
    };
    let [epoch, state] = items.as_slice() else {
        panic!("LOCK.OBSERVE: expected two items, got {items:?}");
    };
    let epoch = match epoch {
        Value::Int(n) => *n,
        other => panic!("epoch: {other:?}"),
    };
    let owner = match state {
        Value::Nil => None,
        Value::Array(fields) => fields
            .chunks(2)
            .find(|pair| common::text(&pair[0]).as_deref() == Some("owner"))
            .map_or(Some(String::new()), |pair| common::text(&pair[1])),
        Value::Map(pairs) => pairs
            .iter()
            .find(|(name, _)| common::text(name).as_deref() == Some("owner"))
            .map_or(Some(String::new()), |(_, value)| common::text(value)),
        other => panic!("state: {other:?}"),
    };
    (epoch, owner)
}

fn observe_command(key: &str, args: &[&str]) -> redis::Cmd {
    let mut command = redis::cmd("LOCK.OBSERVE");
    command.arg(key);
    for arg in args {
        command.arg(*arg);
    }
    command
}

fn observe(con: &mut redis::Connection, key: &str, args: &[&str]) -> Result<Value, String> {
    run(con, &observe_command(key, args))
}

#[test]
fn a_stale_epoch_is_answered_at_once_with_the_state_now() {
    let server = Server::start();
    let mut con = server.conn();
    assert_eq!(observed(observe(&mut con, "k", &["5"])), (0, None));
    let token = acquire(&mut con, "k", "A", 60_000);
    assert_eq!(
        observed(observe(&mut con, "k", &["0"])),
        (token, Some("A".into()))
    );
    // The epoch it names is the key's: nothing to answer before the timeout.
    nil(
        observe(&mut con, "k", &[&token.to_string(), "TIMEOUT", "50"]),
        "OBSERVE with the current epoch",
    );
    assert_eq!(observers(&server), 0, "a timed-out observer leaves");
}

#[test]
fn every_change_of_holders_wakes_once_and_reentry_or_renewal_does_not() {
    let server = Server::start();
    let mut con = server.conn();
    let granted = Observer::start(&server, "k", &[], 1);
    let token = acquire(&mut con, "k", "A", 60_000);
    assert_eq!(observed(granted.reply()), (token, Some("A".into())));

    let released = Observer::start(&server, "k", &[&token.to_string()], 1);
    int(call!(&mut con, "LOCK.REENTER", "k", "A"), "REENTER");
    int(call!(&mut con, "LOCK.RENEW", "k", "A", 60_000), "RENEW");
    assert_eq!(release(&mut con, "k", "A"), 1);
    assert!(
        !released.answered(),
        "a count or ttl change is no change of hands"
    );
    assert_eq!(release(&mut con, "k", "A"), 0);
    assert_eq!(observed(released.reply()), (0, None));
    assert_eq!(observers(&server), 0);
}

#[test]
fn a_handoff_wakes_observers_with_the_new_holder() {
    let server = Server::start();
    let mut con = server.conn();
    let first = acquire(&mut con, "k", "A", 60_000);
    let mut waiter = server.conn();
    waiter
        .set_read_timeout(Some(REPLY_WITHIN))
        .expect("read timeout");
    let handed = std::thread::spawn(move || {
        int(
            call!(
                &mut waiter,
                "LOCK.ACQUIRE",
                "k",
                "B",
                60_000,
                "WAIT",
                20_000
            ),
            "the waiter's grant",
        )
    });
    server.wait_for_blocked_clients(1);
    let observer = Observer::start(&server, "k", &[&first.to_string()], 1);
    assert_eq!(release(&mut con, "k", "A"), 0);
    let (epoch, owner) = observed(observer.reply());
    let token = handed.join().expect("the waiter");
    assert_eq!((epoch, owner), (token, Some("B".into())));
    assert!(token > first);
}

#[test]
fn del_expiry_and_flushall_wake_observers_with_a_free_key() {
    let server = Server::start();
    let mut con = server.conn();
    for end in ["DEL", "expiry", "FLUSHALL"] {
        let ttl = if end == "expiry" { 100 } else { 60_000 };
        let token = acquire(&mut con, "k", "A", ttl);
        let observer = Observer::start(&server, "k", &[&token.to_string()], 1);
        match end {
            "DEL" => assert_eq!(int(call!(&mut con, "DEL", "k"), "DEL"), 1),
            "FLUSHALL" => ok(call!(&mut con, "FLUSHALL"), "FLUSHALL"),
            _ => {} // the server's active expiry removes it
        }
        assert_eq!(observed(observer.reply()), (0, None), "after {end}");
    }
}

#[test]
fn many_observers_are_each_woken_once() {
    let server = Server::start();
    let mut con = server.conn();
    let crowd: Vec<Observer> = (1..=25)
        .map(|n| Observer::start(&server, "k", &["0"], n))
        .collect();
    let token = acquire(&mut con, "k", "A", 60_000);
    for observer in crowd {
        assert_eq!(observed(observer.reply()), (token, Some("A".into())));
    }
    assert_eq!(observers(&server), 0);
}

#[test]
fn a_shared_holder_joining_or_leaving_is_a_change() {
    let server = Server::start();
    let mut con = server.conn();
    let first = int(
        call!(&mut con, "LOCK.ACQUIRE", "k", "r1", 60_000, "SHARED"),
        "first reader",
    );
    let joined = Observer::start(&server, "k", &[&first.to_string()], 1);
    let second = int(
        call!(&mut con, "LOCK.ACQUIRE", "k", "r2", 60_000, "SHARED"),
        "second reader",
    );
    assert_eq!(observed(joined.reply()).0, second);
    // The older reader leaving keeps the epoch but changes the holders.
    let left = Observer::start(&server, "k", &[&second.to_string()], 1);
    assert_eq!(release(&mut con, "k", "r1"), 0);
    assert_eq!(observed(left.reply()), (second, Some(String::new())));
    assert_eq!(release(&mut con, "k", "r2"), 0);
}

#[test]
fn timeouts_unblocks_and_disconnects_leave_nothing_behind() {
    let server = Server::start();
    let mut con = server.conn();
    let unblocked = Observer::start(&server, "k", &[], 1);
    int(
        call!(&mut con, "CLIENT", "UNBLOCK", unblocked.client_id),
        "CLIENT UNBLOCK",
    );
    nil(unblocked.reply(), "an unblocked observer");
    let killed = Observer::start(&server, "k", &[], 1);
    assert_eq!(
        int(
            call!(&mut con, "CLIENT", "KILL", "ID", killed.client_id),
            "CLIENT KILL"
        ),
        1
    );
    assert!(killed.reply().is_err(), "its connection is gone");
    wait_for_observers(&server, 0);
    // Nothing of them is woken (or crashes) at the next change.
    acquire(&mut con, "k", "A", 60_000);
    assert_eq!(observers(&server), 0);
    let timed = Observer::start(&server, "k", &["TIMEOUT", "100"], 1);
    nil(timed.reply(), "an observer past its timeout");
}

#[test]
fn multi_and_scripts_do_not_block() {
    let server = Server::start();
    let mut con = server.conn();
    let token = acquire(&mut con, "k", "A", 60_000);
    let mut pipe = redis::pipe();
    pipe.atomic()
        .cmd("LOCK.OBSERVE")
        .arg("k")
        .cmd("LOCK.OBSERVE")
        .arg("k")
        .arg(0);
    let replies: Vec<Value> = pipe.query(&mut con).expect("EXEC");
    assert_eq!(replies[0], Value::Nil, "no wait inside MULTI");
    assert_eq!(observed(Ok(replies[1].clone())), (token, Some("A".into())));
    nil(
        call!(
            &mut con,
            "EVAL",
            "return redis.call('LOCK.OBSERVE', KEYS[1])",
            1,
            "k"
        ),
        "LOCK.OBSERVE from a script",
    );
    assert_eq!(observers(&server), 0);
}

#[test]
fn bad_calls_are_refused_and_change_nothing() {
    let server = Server::start();
    let mut con = server.conn();
    ok(call!(&mut con, "SET", "s", "v"), "SET");
    let refused = error(observe(&mut con, "s", &[]), "OBSERVE of a string");
    assert!(refused.starts_with("WRONGTYPE"), "{refused}");
    for args in [
        &["-1"][..],
        &["soon"],
        &["1", "TIMEOUT"],
        &["1", "TIMEOUT", "x"],
        &["1", "WAIT", "5"],
    ] {
        let refused = error(observe(&mut con, "k", args), "a bad OBSERVE");
        assert!(refused.starts_with("ERR"), "{args:?}: {refused}");
    }
    error(call!(&mut con, "LOCK.OBSERVE"), "no key");
    assert_eq!(observers(&server), 0);
}

#[test]
fn a_replicas_observers_wake_as_the_masters_changes_arrive() {
    let master = Server::start();
    let replica = Server::start();
    replica.replicate_from(&master);
    let mut con = master.conn();
    let observer = Observer::start(&replica, "k", &["0"], 1);
    let token = acquire(&mut con, "k", "A", 60_000);
    assert_eq!(observed(observer.reply()), (token, Some("A".into())));
    let released = Observer::start(&replica, "k", &[&token.to_string()], 1);
    assert_eq!(release(&mut con, "k", "A"), 0);
    assert_eq!(observed(released.reply()), (0, None));
}

#[test]
fn a_session_holder_whose_connection_closes_wakes_observers() {
    let server = Server::start();
    let mut holder = server.conn();
    let token = int(
        call!(
            &mut holder,
            "LOCK.ACQUIRE",
            "leader",
            "svc-a",
            60_000,
            "SESSION"
        ),
        "the leader's grant",
    );
    let observer = Observer::start(&server, "leader", &[&token.to_string()], 1);
    drop(holder);
    assert_eq!(observed(observer.reply()), (0, None));
}

#[test]
fn a_shared_holders_renewal_or_reentry_wakes_nobody() {
    let server = Server::start();
    let mut con = server.conn();
    int(
        call!(&mut con, "LOCK.ACQUIRE", "k", "r1", 60_000, "SHARED"),
        "first reader",
    );
    let second = int(
        call!(&mut con, "LOCK.ACQUIRE", "k", "r2", 60_000, "SHARED"),
        "second reader",
    );
    let watching = Observer::start(&server, "k", &[&second.to_string()], 1);
    // Each rewrites the key's value (several holders are stored as one encoding): the server
    // unlinks the old one, which is no change of holders.
    int(call!(&mut con, "LOCK.RENEW", "k", "r1", 60_000), "RENEW");
    int(
        call!(&mut con, "LOCK.ACQUIRE", "k", "r2", 60_000, "SHARED"),
        "the second reader's reentry",
    );
    assert_eq!(release(&mut con, "k", "r2"), 1);
    assert!(
        !watching.answered(),
        "a shared holder's renewal or reentry is no change of hands"
    );
    assert_eq!(release(&mut con, "k", "r2"), 0);
    // The second reader leaving is a change (a shared key shows no single owner).
    assert_eq!(observed(watching.reply()).1, Some(String::new()));
    assert_eq!(release(&mut con, "k", "r1"), 0);
}
