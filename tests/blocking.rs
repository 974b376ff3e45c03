//! LOCK.ACQUIRE ... WAIT: clients block in the server and are handed the lock first come, first
//! served, on release, expiry, DEL, overwrite and FLUSH; timed-out, disconnected and unblocked
//! waiters leave no trace; MULTI and Lua cannot block; handoffs replicate as what happened.

mod common;

use std::thread::JoinHandle;
use std::time::Duration;

use common::{
    error, exists, holds, info_int, int, lock_info, nil, ok, release, run, text, wait_until,
    Background, Server,
};
use redis::{ConnectionLike, Value};

/// Long enough for any handoff on a loaded machine; only a bug waits this long.
const REPLY_WITHIN: Duration = Duration::from_secs(20);

/// A client blocked in `LOCK.ACQUIRE key owner ttl WAIT timeout` on its own connection.
struct Waiter {
    client_id: i64,
    call: Background,
}

impl Waiter {
    /// Starts the call and returns once the server counts it among `blocked_before + 1`
    /// blocked clients, so waiters started one after another queue in that order.
    fn start(
        server: &Server,
        key: &str,
        owner: &str,
        ttl: i64,
        timeout: i64,
        blocked_before: usize,
    ) -> Waiter {
        let mut con = server.conn();
        con.set_read_timeout(Some(REPLY_WITHIN * 2))
            .expect("read timeout");
        let client_id = int(call!(&mut con, "CLIENT", "ID"), "CLIENT ID");
        let mut command = redis::cmd("LOCK.ACQUIRE");
        command
            .arg(key)
            .arg(owner)
            .arg(ttl)
            .arg("WAIT")
            .arg(timeout);
        let call = Background::send(con, command);
        server.wait_for_blocked_clients(blocked_before + 1);
        Waiter { client_id, call }
    }

    fn reply(self) -> Result<Value, String> {
        self.call.reply(REPLY_WITHIN)
    }

    fn token(self, what: &str) -> i64 {
        int(self.reply(), what)
    }

    fn has_replied(&self) -> bool {
        match self.call.try_reply() {
            Some(value) => panic!("woke early with {value:?}"),
            None => false,
        }
    }
}

fn owner_of(con: &mut redis::Connection, key: &str) -> Option<String> {
    lock_info(con, key).map(|info| String::from_utf8_lossy(&info.owner).into_owned())
}

/// The last release of `owner` frees `key` and nobody takes it: no waiter is left behind.
fn release_to_nobody(con: &mut redis::Connection, key: &str, owner: &str) {
    assert_eq!(release(con, key, owner), 0);
    assert_eq!(exists(con, key), 0, "nobody took it");
}

fn waiters_of(con: &mut redis::Connection, key: &str) -> i64 {
    lock_info(con, key).map_or(0, |info| info.waiters)
}

#[test]
fn waiters_get_the_lock_first_come_first_served_one_at_a_time() {
    let server = Server::start();
    let mut con = server.conn();
    let first_token = int(
        call!(&mut con, "LOCK.ACQUIRE", "k", "holder", 60000),
        "holder",
    );
    let queue: Vec<Waiter> = (0..4)
        .map(|i| Waiter::start(&server, "k", &format!("w{i}"), 60000, 0, i))
        .collect();
    assert_eq!(waiters_of(&mut con, "k"), 4);

    let mut previous_owner = "holder".to_string();
    let mut previous_token = first_token;
    for (i, waiter) in queue.into_iter().enumerate() {
        assert_eq!(
            int(
                call!(&mut con, "LOCK.RELEASE", "k", &previous_owner),
                "release"
            ),
            0
        );
        let token = waiter.token("handed token");
        let owner = format!("w{i}");
        assert!(
            token > previous_token,
            "tokens rise with each handoff: {token} after {previous_token}"
        );
        assert_eq!(owner_of(&mut con, "k").as_deref(), Some(owner.as_str()));
        let info = lock_info(&mut con, "k").expect("held");
        assert_eq!(
            (info.count, info.token, info.waiters),
            (1, token, 3 - i as i64)
        );
        // Only the first waiter was woken; the rest still block.
        server.wait_for_blocked_clients(3 - i);
        previous_owner = owner;
        previous_token = token;
    }
    assert_eq!(
        int(
            call!(&mut con, "LOCK.RELEASE", "k", &previous_owner),
            "last release"
        ),
        0
    );
    assert_eq!(int(call!(&mut con, "EXISTS", "k"), "exists"), 0);
}

#[test]
fn the_handed_lock_has_the_waiters_own_ttl() {
    let server = Server::start();
    let mut con = server.conn();
    call!(&mut con, "LOCK.ACQUIRE", "k", "holder", 600000).expect("holder");
    let waiter = Waiter::start(&server, "k", "w", 7000, 0, 0);
    call!(&mut con, "LOCK.RELEASE", "k", "holder").expect("release");
    waiter.token("handed");
    let pttl = int(call!(&mut con, "PTTL", "k"), "pttl");
    assert!(pttl > 0 && pttl <= 7000, "pttl {pttl}");
}

#[test]
fn a_newcomer_never_takes_a_freed_lock_from_the_queue() {
    let server = Server::start();
    let mut con = server.conn();
    call!(&mut con, "LOCK.ACQUIRE", "k", "holder", 60000).expect("holder");
    let waiter = Waiter::start(&server, "k", "w", 60000, 0, 0);
    // Inside one EXEC the key is freed and a newcomer tries at once, before any timer runs:
    // its call hands the lock to the waiter first, in the same step.
    ok(call!(&mut con, "MULTI"), "multi");
    call!(&mut con, "DEL", "k").expect("queued");
    call!(&mut con, "LOCK.ACQUIRE", "k", "newcomer", 60000).expect("queued");
    call!(&mut con, "LOCK.INFO", "k").expect("queued");
    let exec = call!(&mut con, "EXEC").expect("exec");
    let Value::Array(replies) = exec else {
        panic!("EXEC answered {exec:?}");
    };
    assert_eq!(replies[..2], [Value::Int(1), Value::Nil]);
    let info = common::LockInfo::parse(&replies[2]).expect("handed inside the EXEC");
    assert_eq!((info.owner.as_slice(), info.count), (&b"w"[..], 1));
    let token = waiter.token("waiter's token");
    assert_eq!(info.token, token);
    assert_eq!(owner_of(&mut con, "k").as_deref(), Some("w"));
}

#[test]
fn a_newcomer_with_wait_queues_behind_earlier_waiters() {
    let server = Server::start();
    let mut con = server.conn();
    call!(&mut con, "LOCK.ACQUIRE", "k", "holder", 60000).expect("holder");
    let early = Waiter::start(&server, "k", "early", 60000, 0, 0);
    let late = Waiter::start(&server, "k", "late", 60000, 0, 1);
    nil(
        call!(&mut con, "LOCK.ACQUIRE", "k", "plain", 60000),
        "a plain try while held",
    );
    call!(&mut con, "LOCK.RELEASE", "k", "holder").expect("release");
    early.token("early");
    assert!(!late.has_replied());
    call!(&mut con, "LOCK.RELEASE", "k", "early").expect("release");
    late.token("late");
}

#[test]
fn a_wait_that_times_out_gets_nil_and_leaves_no_trace() {
    let server = Server::start();
    let mut con = server.conn();
    let token = int(
        call!(&mut con, "LOCK.ACQUIRE", "k", "holder", 60000),
        "holder",
    );
    let waiter = Waiter::start(&server, "k", "w", 60000, 100, 0);
    nil(waiter.reply(), "timed-out waiter");
    server.wait_for_blocked_clients(0);
    let info = lock_info(&mut con, "k").expect("still held");
    assert_eq!(
        (info.owner.as_slice(), info.count, info.token, info.waiters),
        (&b"holder"[..], 1, token, 0)
    );
    release_to_nobody(&mut con, "k", "holder");
}

#[test]
fn wait_zero_blocks_until_the_lock_is_handed_over() {
    let server = Server::start();
    let mut con = server.conn();
    call!(&mut con, "LOCK.ACQUIRE", "k", "holder", 60000).expect("holder");
    let waiter = Waiter::start(&server, "k", "w", 60000, 0, 0);
    // A later waiter with a 1 ms timeout times out: the server's timers fire in due order, so
    // a timeout of the WAIT 0 waiter, had it one, would have fired before.
    nil(
        call!(
            &mut server.conn(),
            "LOCK.ACQUIRE",
            "k",
            "later",
            60000,
            "WAIT",
            1
        ),
        "the WAIT 1 waiter",
    );
    assert_eq!(
        server.info_field("clients", "blocked_clients").as_deref(),
        Some("1")
    );
    assert_eq!(waiters_of(&mut con, "k"), 1);
    assert!(!waiter.has_replied());
    call!(&mut con, "LOCK.RELEASE", "k", "holder").expect("release");
    waiter.token("w");
}

/// `LOCK.ACQUIRE key holder holder_ttl` and, right after it in the same event-loop turn (one
/// pipeline on one connection), `LOCK.ACQUIRE key waiter waiter_ttl WAIT timeout`: the waiter
/// certainly finds the lock held and queues, however slow the machine. Returns the holder's
/// token and the waiter's reply, which comes once it is handed the lock or times out.
fn hold_then_wait(
    con: &mut redis::Connection,
    key: &str,
    (holder, holder_ttl): (&str, i64),
    (waiter, waiter_ttl, timeout): (&str, i64, i64),
) -> (i64, Value) {
    let mut pipe = redis::pipe();
    pipe.cmd("LOCK.ACQUIRE")
        .arg(key)
        .arg(holder)
        .arg(holder_ttl)
        .cmd("LOCK.ACQUIRE")
        .arg(key)
        .arg(waiter)
        .arg(waiter_ttl)
        .arg("WAIT")
        .arg(timeout);
    let replies = con
        .req_packed_commands(&pipe.get_packed_pipeline(), 0, 2)
        .expect("pipeline");
    match &replies[..] {
        [Value::Int(token), reply] => (*token, reply.clone()),
        other => panic!("hold, then wait: {other:?}"),
    }
}

#[test]
fn an_expired_lock_goes_to_the_first_waiter() {
    let server = Server::start();
    let mut con = server.conn();
    let (token, reply) = hold_then_wait(&mut con, "k", ("holder", 150), ("w", 60000, 0));
    let Value::Int(handed) = reply else {
        panic!("the waiter of an expiring lock: {reply:?}");
    };
    assert!(handed > token);
    // It queued (found the lock held) and was handed the lock by its expiry.
    assert_eq!(info_int(&mut con, "lock", "lock_contended"), 1);
    assert_eq!(info_int(&mut con, "lock", "lock_handoffs_on_expiry"), 1);
    assert_eq!(owner_of(&mut con, "k").as_deref(), Some("w"));
    nil(
        call!(&mut con, "LOCK.RELEASE", "k", "holder"),
        "the expired holder's release",
    );
}

#[test]
fn a_new_waiter_is_handed_the_lock_at_its_expiry_before_its_own_timeout() {
    let server = Server::start_with(&["--enable-debug-command", "yes"]);
    let mut con = server.conn();
    // Only rlock's own timer may notice the expiry: no active expiry, nobody touches the key.
    ok(
        call!(&mut con, "DEBUG", "SET-ACTIVE-EXPIRE", 0),
        "no active expiry",
    );
    // The lock expires 900 ms after the waiter queued, its timeout is due at 950 ms: both are
    // server timers, fired in due order, so the expiry's handoff comes first however slow the
    // machine (the once-a-second re-check would come after the timeout).
    let (token, reply) = hold_then_wait(&mut con, "k", ("holder", 900), ("w", 60000, 950));
    let Value::Int(handed) = reply else {
        panic!("the waiter was not handed the lock at its expiry: {reply:?}");
    };
    assert!(handed > token);
    assert_eq!(info_int(&mut con, "lock", "lock_contended"), 1);
    assert_eq!(info_int(&mut con, "lock", "lock_handoffs_on_expiry"), 1);
    assert_eq!(info_int(&mut con, "lock", "lock_wait_timeouts"), 0);
    let info = lock_info(&mut con, "k").expect("handed");
    assert_eq!(
        (info.owner.as_slice(), info.count, info.token, info.waiters),
        (&b"w"[..], 1, handed, 0)
    );
}

#[test]
fn a_held_lock_stays_with_its_holder_across_the_waiters_rechecks() {
    let server = Server::start();
    let mut con = server.conn();
    let token = int(
        call!(&mut con, "LOCK.ACQUIRE", "k", "holder", 600000),
        "holder",
    );
    // The key is re-examined a second after the waiter queued (admin EXPIREs are noticed that
    // way); the waiter's timeout comes after that check (server timers fire in due order), and
    // the lock, held for ten minutes, must still be the holder's.
    nil(
        call!(
            &mut server.conn(),
            "LOCK.ACQUIRE",
            "k",
            "w",
            60000,
            "WAIT",
            1500
        ),
        "a waiter on a lock held across its re-checks",
    );
    let info = lock_info(&mut con, "k").expect("still held");
    assert_eq!(
        (info.owner.as_slice(), info.count, info.token, info.waiters),
        (&b"holder"[..], 1, token, 0)
    );
}

#[test]
fn a_renewal_that_shortens_the_lock_hands_it_over_at_the_new_expiry() {
    let server = Server::start();
    let mut con = server.conn();
    call!(&mut con, "LOCK.ACQUIRE", "k", "holder", 600000).expect("holder");
    let waiter = Waiter::start(&server, "k", "w", 60000, 0, 0);
    assert_eq!(
        int(call!(&mut con, "LOCK.RENEW", "k", "holder", 50), "renew"),
        1
    );
    // Well before the first expiry (10 minutes): the timer followed the renewal.
    waiter.token("after the shortened expiry");
    assert_eq!(owner_of(&mut con, "k").as_deref(), Some("w"));
}

#[test]
fn del_unlink_flushdb_and_flushall_hand_the_lock_over() {
    let server = Server::start();
    let mut con = server.conn();
    for free in [
        &["DEL", "k"][..],
        &["UNLINK", "k"],
        &["FLUSHDB"],
        &["FLUSHALL"],
        &["FLUSHALL", "ASYNC"],
    ] {
        call!(&mut con, "LOCK.ACQUIRE", "k", "holder", 60000).expect("holder");
        let waiter = Waiter::start(&server, "k", "w", 60000, 0, 0);
        let mut command = redis::cmd(free[0]);
        for arg in &free[1..] {
            command.arg(*arg);
        }
        run(&mut con, &command).expect("free the key");
        // At once, not at the next once-a-second re-check: the handoff is a 0 ms timer armed
        // while the command ran, and the server fires due timers in the same event-loop turn,
        // before it writes the command's reply. So it is done when the reply arrives.
        assert_eq!(owner_of(&mut con, "k").as_deref(), Some("w"), "{free:?}");
        waiter.token(&format!("after {free:?}"));
        call!(&mut con, "DEL", "k").expect("clean up");
    }
}

#[test]
fn waiters_in_another_database_are_not_woken_by_a_flushdb_elsewhere() {
    let server = Server::start();
    let mut con = server.conn();
    call!(&mut con, "LOCK.ACQUIRE", "k", "holder", 60000).expect("holder in db 0");
    let waiter = Waiter::start(&server, "k", "w", 60000, 0, 0);
    ok(call!(&mut con, "SELECT", 1), "select");
    ok(call!(&mut con, "FLUSHDB"), "flush db 1");
    ok(call!(&mut con, "SELECT", 0), "select");
    assert_eq!(owner_of(&mut con, "k").as_deref(), Some("holder"));
    assert!(!waiter.has_replied());
    call!(&mut con, "LOCK.RELEASE", "k", "holder").expect("release");
    waiter.token("w");
}

#[test]
fn waiters_are_woken_with_nil_when_the_key_is_overwritten_by_another_type() {
    let server = Server::start();
    let mut con = server.conn();
    call!(&mut con, "LOCK.ACQUIRE", "k", "holder", 60000).expect("holder");
    let waiter = Waiter::start(&server, "k", "w", 60000, 0, 0);
    ok(call!(&mut con, "SET", "k", "plain string"), "overwrite");
    nil(waiter.reply(), "waiter of an overwritten lock");
    let retry = error(call!(&mut con, "LOCK.ACQUIRE", "k", "w", 1000), "retry");
    assert!(retry.starts_with("WRONGTYPE"), "{retry}");
}

#[test]
fn a_killed_waiter_never_becomes_the_owner() {
    let server = Server::start();
    let mut con = server.conn();
    call!(&mut con, "LOCK.ACQUIRE", "k", "holder", 60000).expect("holder");
    let killed = Waiter::start(&server, "k", "killed", 60000, 0, 0);
    let next = Waiter::start(&server, "k", "next", 60000, 0, 1);
    assert_eq!(
        int(
            call!(&mut con, "CLIENT", "KILL", "ID", killed.client_id),
            "kill"
        ),
        1
    );
    server.wait_for_blocked_clients(1);
    assert_eq!(waiters_of(&mut con, "k"), 1);
    call!(&mut con, "LOCK.RELEASE", "k", "holder").expect("release");
    next.token("next");
    assert_eq!(owner_of(&mut con, "k").as_deref(), Some("next"));
    assert!(
        killed.reply().is_err_and(|e| e.starts_with("connection: ")),
        "the killed client's connection is gone"
    );
}

#[test]
fn a_waiter_whose_connection_closes_leaves_the_queue() {
    let server = Server::start();
    let mut con = server.conn();
    call!(&mut con, "LOCK.ACQUIRE", "k", "holder", 60000).expect("holder");
    // A raw socket that sends the blocking call and hangs up without reading the reply.
    let mut socket = std::net::TcpStream::connect(("127.0.0.1", server.port())).expect("connect");
    std::io::Write::write_all(&mut socket, b"LOCK.ACQUIRE k gone 60000 WAIT 0\r\n").expect("send");
    server.wait_for_blocked_clients(1);
    drop(socket);
    server.wait_for_blocked_clients(0);
    assert_eq!(waiters_of(&mut con, "k"), 0);
    release_to_nobody(&mut con, "k", "holder");
}

#[test]
fn client_unblock_takes_a_waiter_out_with_nil_or_an_error() {
    let server = Server::start();
    let mut con = server.conn();
    call!(&mut con, "LOCK.ACQUIRE", "k", "holder", 60000).expect("holder");
    let timed_out = Waiter::start(&server, "k", "a", 60000, 0, 0);
    let errored = Waiter::start(&server, "k", "b", 60000, 0, 1);
    assert_eq!(
        int(
            call!(&mut con, "CLIENT", "UNBLOCK", timed_out.client_id),
            "unblock"
        ),
        1
    );
    nil(timed_out.reply(), "CLIENT UNBLOCK");
    assert_eq!(
        int(
            call!(&mut con, "CLIENT", "UNBLOCK", errored.client_id, "ERROR"),
            "unblock error"
        ),
        1
    );
    let text = error(errored.reply(), "CLIENT UNBLOCK ERROR");
    assert!(text.starts_with("UNBLOCKED"), "{text}");
    server.wait_for_blocked_clients(0);
    assert_eq!(waiters_of(&mut con, "k"), 0);
    release_to_nobody(&mut con, "k", "holder");
}

#[test]
fn wait_inside_multi_or_lua_is_a_plain_try() {
    let server = Server::start();
    let mut con = server.conn();
    call!(&mut con, "LOCK.ACQUIRE", "k", "holder", 60000).expect("holder");
    ok(call!(&mut con, "MULTI"), "multi");
    call!(&mut con, "LOCK.ACQUIRE", "k", "other", 1000, "WAIT", 0).expect("queued");
    call!(&mut con, "LOCK.ACQUIRE", "free", "other", 1000, "WAIT", 0).expect("queued");
    let exec = call!(&mut con, "EXEC").expect("exec");
    let Value::Array(replies) = exec else {
        panic!("EXEC answered {exec:?}");
    };
    assert_eq!(replies[0], Value::Nil);
    assert!(matches!(replies[1], Value::Int(token) if token > 0));
    let script = "return redis.call('LOCK.ACQUIRE', KEYS[1], ARGV[1], 1000, 'WAIT', 0)";
    nil(call!(&mut con, "EVAL", script, 1, "k", "lua"), "Lua");
    assert_eq!(
        server.info_field("clients", "blocked_clients").as_deref(),
        Some("0")
    );
    assert_eq!(owner_of(&mut con, "k").as_deref(), Some("holder"));
}

#[test]
fn the_holder_reenters_while_others_wait() {
    let server = Server::start();
    let mut con = server.conn();
    let token = int(
        call!(&mut con, "LOCK.ACQUIRE", "k", "holder", 60000),
        "holder",
    );
    let waiter = Waiter::start(&server, "k", "w", 60000, 0, 0);
    assert_eq!(
        int(
            call!(&mut con, "LOCK.ACQUIRE", "k", "holder", 60000, "WAIT", 0),
            "reenter"
        ),
        token
    );
    assert_eq!(
        int(call!(&mut con, "LOCK.RELEASE", "k", "holder"), "release"),
        1
    );
    assert!(!waiter.has_replied());
    assert_eq!(
        int(call!(&mut con, "LOCK.RELEASE", "k", "holder"), "release"),
        0
    );
    waiter.token("w");
}

#[test]
fn a_handoff_reaches_the_replica_as_what_happened() {
    let master = Server::start();
    let replica = Server::start();
    let mut to_replica = replica.conn();
    replica.replicate_from(&master);
    let mut con = master.conn();
    call!(&mut con, "LOCK.ACQUIRE", "k", "holder", 60000).expect("holder");
    let on_release = Waiter::start(&master, "k", "w", 45000, 0, 0);
    let (_, on_expiry) = hold_then_wait(&mut master.conn(), "e", ("holder", 100), ("x", 45000, 0));
    let Value::Int(e_token) = on_expiry else {
        panic!("handed on expiry: {on_expiry:?}");
    };
    call!(&mut con, "LOCK.RELEASE", "k", "holder").expect("release");
    let k_token = on_release.token("handed on release");
    assert_eq!(int(call!(&mut con, "WAIT", 1, 10000), "replicas acked"), 1);
    for (key, owner, token) in [("k", "w", k_token), ("e", "x", e_token)] {
        let on_master = lock_info(&mut con, key).expect("held on master");
        wait_until("the replica to show the new owner", || {
            lock_info(&mut to_replica, key).is_some_and(|info| info.owner == owner.as_bytes())
        });
        let on_replica = lock_info(&mut to_replica, key).expect("held on replica");
        assert_eq!((on_replica.count, on_replica.token), (1, token));
        assert_eq!(on_master.token, token);
        let expire_master = int(call!(&mut con, "PEXPIRETIME", key), "pexpiretime");
        let expire_replica = int(call!(&mut to_replica, "PEXPIRETIME", key), "pexpiretime");
        assert_eq!(
            expire_master, expire_replica,
            "{key}: the same absolute expiry"
        );
    }
}

#[test]
fn waiters_are_let_go_when_the_master_becomes_a_replica() {
    let master = Server::start();
    let future_master = Server::start();
    let mut con = master.conn();
    call!(&mut con, "LOCK.ACQUIRE", "k", "holder", 60000).expect("holder");
    let waiter = Waiter::start(&master, "k", "w", 60000, 0, 0);
    ok(
        call!(&mut con, "REPLICAOF", "127.0.0.1", future_master.port()),
        "replicaof",
    );
    let text = error(waiter.reply(), "a waiter on a demoted master");
    assert!(text.starts_with("UNBLOCKED"), "{text}");
    master.wait_for_blocked_clients(0);
    assert_eq!(
        master.info_field("lock", "lock_waiters").as_deref(),
        Some("0")
    );
    call!(&mut con, "PING").expect("the server is still up");
}

#[test]
fn a_lock_handed_to_a_client_gone_before_its_reply_is_taken_back() {
    let server = Server::start();
    let mut con = server.conn();
    let holder_token = int(
        call!(&mut con, "LOCK.ACQUIRE", "k", "holder", 60000),
        "holder",
    );
    let gone = Waiter::start(&server, "k", "gone", 60000, 0, 0);
    let next = Waiter::start(&server, "k", "next", 60000, 0, 1);
    // In one EXEC: the release hands the lock to `gone`, whose reply would go out only after
    // the EXEC, and `gone` is killed before that.
    ok(call!(&mut con, "MULTI"), "multi");
    call!(&mut con, "LOCK.RELEASE", "k", "holder").expect("queued");
    call!(&mut con, "CLIENT", "KILL", "ID", gone.client_id).expect("queued");
    let exec = call!(&mut con, "EXEC").expect("exec");
    assert_eq!(exec, Value::Array(vec![Value::Int(0), Value::Int(1)]));
    let next_token = next.token("the next waiter");
    assert!(
        next_token > holder_token + 1,
        "gone's token was used and taken back"
    );
    assert_eq!(owner_of(&mut con, "k").as_deref(), Some("next"));
    assert!(
        gone.reply().is_err_and(|e| e.starts_with("connection: ")),
        "the killed client got no lock"
    );
}

#[test]
fn locks_handed_to_two_clients_gone_in_one_step_are_both_taken_back() {
    let server = Server::start();
    let mut con = server.conn();
    for key in ["a", "b"] {
        call!(&mut con, "LOCK.ACQUIRE", key, "holder", 60000).expect("holder");
    }
    let gone_a = Waiter::start(&server, "a", "gone-a", 60000, 0, 0);
    let gone_b = Waiter::start(&server, "b", "gone-b", 60000, 0, 1);
    ok(call!(&mut con, "MULTI"), "multi");
    for key in ["a", "b"] {
        call!(&mut con, "LOCK.RELEASE", key, "holder").expect("queued");
    }
    for gone in [&gone_a, &gone_b] {
        call!(&mut con, "CLIENT", "KILL", "ID", gone.client_id).expect("queued");
    }
    let exec = call!(&mut con, "EXEC").expect("exec");
    assert_eq!(
        exec,
        Value::Array(vec![
            Value::Int(0),
            Value::Int(0),
            Value::Int(1),
            Value::Int(1)
        ])
    );
    wait_until("both abandoned locks to be freed", || {
        int(call!(&mut con, "EXISTS", "a", "b"), "exists") == 0
    });
    assert!(gone_a.reply().is_err_and(|e| e.starts_with("connection: ")));
    assert!(gone_b.reply().is_err_and(|e| e.starts_with("connection: ")));
}

/// Every text in a reply, nested ones included (owners in a `LOCK.INFO` of shared holds).
fn texts(value: &Value) -> Vec<String> {
    match value {
        Value::Array(items) | Value::Set(items) => items.iter().flat_map(texts).collect(),
        Value::Map(pairs) => pairs
            .iter()
            .flat_map(|(key, value)| [texts(key), texts(value)].concat())
            .collect(),
        other => text(other).into_iter().collect(),
    }
}

#[test]
fn a_shared_hold_handed_to_a_client_gone_before_its_reply_is_taken_back_alone() {
    let server = Server::start();
    let mut con = server.conn();
    int(
        call!(&mut con, "LOCK.ACQUIRE", "k", "writer", 60000),
        "writer",
    );
    // Two readers queue; the release admits both at once, and one is gone before its reply.
    let readers: Vec<(i64, JoinHandle<Result<Value, String>>)> = ["gone", "stays"]
        .into_iter()
        .enumerate()
        .map(|(i, owner)| {
            let mut reader = server.conn();
            let id = int(call!(&mut reader, "CLIENT", "ID"), "CLIENT ID");
            let thread = std::thread::spawn(move || {
                let wait = redis::cmd("LOCK.ACQUIRE")
                    .arg(&["k", owner, "60000", "SHARED", "WAIT", "0"])
                    .clone();
                // The gone reader's connection is closed under it: an I/O error, not a panic.
                reader.req_command(&wait).map_err(|error| error.to_string())
            });
            server.wait_for_blocked_clients(i + 1);
            (id, thread)
        })
        .collect();
    ok(call!(&mut con, "MULTI"), "multi");
    call!(&mut con, "LOCK.RELEASE", "k", "writer").expect("queued");
    call!(&mut con, "CLIENT", "KILL", "ID", readers[0].0).expect("queued");
    let exec = call!(&mut con, "EXEC").expect("exec");
    assert_eq!(exec, Value::Array(vec![Value::Int(0), Value::Int(1)]));
    let mut readers = readers
        .into_iter()
        .map(|(_, thread)| thread.join().expect("reader"));
    assert!(
        readers.next().is_some_and(|got| got.is_err()),
        "the gone reader"
    );
    int(
        readers.next().expect("the other reader"),
        "the reader that stays",
    );
    wait_until("the gone reader's hold to be taken back", || {
        !texts(&call!(&mut con, "LOCK.INFO", "k").expect("LOCK.INFO")).contains(&"gone".into())
    });
    let owners = texts(&call!(&mut con, "LOCK.INFO", "k").expect("LOCK.INFO"));
    assert!(owners.contains(&"stays".into()), "{owners:?}");
    assert_eq!(
        int(call!(&mut con, "LOCK.RELEASE", "k", "stays"), "RELEASE"),
        0
    );
}

#[test]
fn a_lock_handed_to_a_client_gone_before_its_reply_is_freed_when_nobody_else_waits() {
    let server = Server::start();
    let mut con = server.conn();
    call!(&mut con, "LOCK.ACQUIRE", "k", "holder", 60000).expect("holder");
    let gone = Waiter::start(&server, "k", "gone", 60000, 0, 0);
    ok(call!(&mut con, "MULTI"), "multi");
    call!(&mut con, "LOCK.RELEASE", "k", "holder").expect("queued");
    call!(&mut con, "CLIENT", "KILL", "ID", gone.client_id).expect("queued");
    call!(&mut con, "EXEC").expect("exec");
    wait_until("the abandoned lock to be freed", || {
        int(call!(&mut con, "EXISTS", "k"), "exists") == 0
    });
    assert!(gone.reply().is_err_and(|e| e.starts_with("connection: ")));
}

#[test]
fn after_swapdb_waiters_get_the_lock_now_free_in_their_database() {
    let server = Server::start();
    let mut con = server.conn();
    call!(&mut con, "LOCK.ACQUIRE", "k", "holder", 60000).expect("holder in db 0");
    let waiter = Waiter::start(&server, "k", "w", 60000, 0, 0);
    // Database 1 has no lock at k: after the swap, database 0's k is free.
    ok(call!(&mut con, "SWAPDB", 0, 1), "swapdb");
    waiter.token("the waiter, in database 0");
    assert_eq!(owner_of(&mut con, "k").as_deref(), Some("w"));
    ok(call!(&mut con, "SELECT", 1), "select");
    assert_eq!(owner_of(&mut con, "k").as_deref(), Some("holder"));
}

#[test]
fn an_admin_pexpire_on_a_lock_hands_it_over_at_the_new_expiry() {
    let server = Server::start_with(&["--enable-debug-command", "yes"]);
    let mut con = server.conn();
    // Only rlock's own timer may notice the expiry: no active expiry, nobody touches the key.
    ok(
        call!(&mut con, "DEBUG", "SET-ACTIVE-EXPIRE", 0),
        "no active expiry",
    );
    call!(&mut con, "LOCK.ACQUIRE", "k", "holder", 600000).expect("holder");
    let waiter = Waiter::start(&server, "k", "w", 60000, 0, 0);
    assert_eq!(int(call!(&mut con, "PEXPIRE", "k", 50), "pexpire"), 1);
    waiter.token("after the admin's shorter expiry");
}

/// A server without active expiry (only rlock's check timer hands locks over) where "holder"
/// holds k for 10 min, and writes are paused (CLIENT PAUSE WRITE): the calls sent next are held
/// back, then run together, in order, in one event-loop turn at CLIENT UNPAUSE.
fn paused_with_k_held() -> (Server, redis::Connection) {
    let server = Server::start_with(&["--enable-debug-command", "yes"]);
    let mut admin = server.conn();
    ok(
        call!(&mut admin, "DEBUG", "SET-ACTIVE-EXPIRE", 0),
        "no active expiry",
    );
    int(
        call!(&mut admin, "LOCK.ACQUIRE", "k", "holder", 600000),
        "holder",
    );
    ok(
        call!(&mut admin, "CLIENT", "PAUSE", 60000, "WRITE"),
        "pause writes",
    );
    (server, admin)
}

/// Two readers share k; one's ttl runs out first. The exclusive waiter's check at that expiry
/// drops only the expired reader: the other still holds k, so the waiter keeps waiting (and
/// times out), and nothing deleted the key under the reader left.
#[test]
fn a_reader_expiring_beside_another_leaves_the_exclusive_waiter_waiting() {
    let server = Server::start_with(&["--enable-debug-command", "yes"]);
    let mut con = server.conn();
    ok(
        call!(&mut con, "DEBUG", "SET-ACTIVE-EXPIRE", 0),
        "no active expiry",
    );
    int(
        call!(&mut con, "LOCK.ACQUIRE", "k", "r1", 200, "SHARED"),
        "r1",
    );
    int(
        call!(&mut con, "LOCK.ACQUIRE", "k", "r2", 600000, "SHARED"),
        "r2",
    );
    let waiter = Waiter::start(&server, "k", "w", 60000, 1500, 0);
    nil(waiter.reply(), "r2 still reads");
    let holders = holds(&mut con, "k").holders;
    assert!(
        holders.len() == 1 && holders.contains_key("r2"),
        "{holders:?}"
    );
    assert_eq!(info_int(&mut con, "lock", "lock_expirations"), 1);
}

/// A waiter's check that comes due while writes are paused (CLIENT PAUSE WRITE, as a FAILOVER
/// pauses them) must not write then: propagating a change while clients are paused aborts the
/// server (`propagateNow` asserts; the AOF here makes every change propagate). The check runs
/// again a little later, and the waiter is handed the lock once the pause is over.
#[test]
fn a_lock_expiring_while_writes_are_paused_is_handed_over_after_the_pause() {
    let server = Server::start_with(&["--enable-debug-command", "yes", "--appendonly", "yes"]);
    let mut admin = server.conn();
    ok(
        call!(&mut admin, "DEBUG", "SET-ACTIVE-EXPIRE", 0),
        "no active expiry",
    );
    int(
        call!(&mut admin, "LOCK.ACQUIRE", "k", "holder", 1000),
        "holder",
    );
    let waiter = Waiter::start(&server, "k", "w", 60000, 0, 0);
    ok(
        call!(&mut admin, "CLIENT", "PAUSE", 3000, "WRITE"),
        "pause writes past the expiry",
    );
    waiter.token("the lock, once the pause is over");
    assert_eq!(owner_of(&mut admin, "k").as_deref(), Some("w"));
}

#[test]
fn a_renew_that_shortens_the_lock_moves_its_waiters_check_earlier() {
    // Without active expiry only rlock's check timer hands the lock over. The waiter joins and
    // the holder renews in one event-loop turn (CLIENT PAUSE WRITE holds both back and lets
    // them go together, in order): the check must move from the 1 s re-check to the renewed
    // expiry, due long before the waiter's 500 ms timeout (server timers fire in due order).
    let (server, mut admin) = paused_with_k_held();
    // A client held back by the pause counts as blocked.
    let waiter = Waiter::start(&server, "k", "w", 60000, 500, 0);
    let mut holder = server.conn();
    let renew = std::thread::spawn(move || call!(&mut holder, "LOCK.RENEW", "k", "holder", 1));
    server.wait_for_blocked_clients(2);
    ok(call!(&mut admin, "CLIENT", "UNPAUSE"), "unpause");
    assert_eq!(int(renew.join().expect("renew thread"), "RENEW"), 1);
    waiter.token("the lock, at its renewed expiry");
}

#[test]
fn waiters_left_behind_by_a_handoff_are_checked_at_the_new_holders_expiry() {
    // Without active expiry only rlock's check timer hands locks over. Two waiters and the
    // release that hands the lock to the first are let go together (CLIENT PAUSE WRITE): the
    // first gets a 1 ms lease, and the second must get the lock at its expiry, before its own
    // 500 ms timeout and the 1 s re-check armed when they joined (server timers, in due order).
    let (server, mut admin) = paused_with_k_held();
    let first = Waiter::start(&server, "k", "first", 1, 0, 0);
    let second = Waiter::start(&server, "k", "second", 60000, 500, 1);
    let mut holder = server.conn();
    let release = std::thread::spawn(move || call!(&mut holder, "LOCK.RELEASE", "k", "holder"));
    server.wait_for_blocked_clients(3);
    ok(call!(&mut admin, "CLIENT", "UNPAUSE"), "unpause");
    assert_eq!(int(release.join().expect("release thread"), "RELEASE"), 0);
    let first = first.token("the first waiter, for 1 ms");
    let second = second.token("the second waiter, at the first one's expiry");
    assert!(second > first);
}

#[test]
fn a_check_that_finds_the_lock_still_held_leaves_no_trace() {
    // A waiter's check looks at a held lock at least once a second; finding it still held it
    // must change nothing, so a WATCH on the key survives it. A second lock, handed over after
    // that check was due (server timers fire in due order), shows that it ran.
    let server = Server::start();
    let mut admin = server.conn();
    int(
        call!(&mut admin, "LOCK.ACQUIRE", "k", "holder", 600000),
        "holder",
    );
    let mut watcher = server.conn();
    ok(call!(&mut watcher, "WATCH", "k"), "WATCH");
    let _waiting = Waiter::start(&server, "k", "w", 60000, 0, 0);
    int(
        call!(&mut admin, "LOCK.ACQUIRE", "later", "holder", 1500),
        "a lock expiring after k's first check",
    );
    Waiter::start(&server, "later", "w", 60000, 0, 1).token("the later lock");
    ok(call!(&mut watcher, "MULTI"), "MULTI");
    call!(&mut watcher, "PING").expect("queued");
    assert_eq!(
        call!(&mut watcher, "EXEC"),
        Ok(Value::Array(vec![Value::SimpleString("PONG".into())])),
        "k was not touched"
    );
}

#[test]
fn migrate_moves_a_held_lock_away_and_its_waiters_get_nil_not_a_second_lock() {
    let source = Server::start();
    let target = Server::start();
    let mut con = source.conn();
    let token = int(
        call!(&mut con, "LOCK.ACQUIRE", "k", "holder", 60000),
        "holder",
    );
    let waiter = Waiter::start(&source, "k", "w", 60000, 0, 0);
    let port = target.port();
    ok(
        call!(&mut con, "MIGRATE", "127.0.0.1", port, "k", 0, 5000),
        "migrate",
    );
    nil(
        waiter.reply(),
        "a waiter of a lock that moved to another node",
    );
    assert_eq!(
        int(call!(&mut con, "EXISTS", "k"), "nothing recreated here"),
        0
    );
    let moved = lock_info(&mut target.conn(), "k").expect("held at the target");
    assert_eq!(
        (moved.owner.as_slice(), moved.token),
        (&b"holder"[..], token)
    );
}

#[test]
fn migrate_of_several_keys_after_an_option_moves_every_lock_and_its_waiters_get_nil() {
    // The KEYS form, after another option: every key named after KEYS leaves this node.
    let source = Server::start();
    let target = Server::start();
    let mut con = source.conn();
    let keys = ["a", "b"];
    let tokens: Vec<i64> = keys
        .iter()
        .map(|key| int(call!(&mut con, "LOCK.ACQUIRE", *key, "holder", 60000), key))
        .collect();
    let waiters: Vec<Waiter> = keys
        .iter()
        .enumerate()
        .map(|(i, key)| Waiter::start(&source, key, "w", 60000, 0, i))
        .collect();
    let port = target.port();
    ok(
        call!(
            &mut con,
            "MIGRATE",
            "127.0.0.1",
            port,
            "",
            0,
            5000,
            "REPLACE",
            "KEYS",
            "a",
            "b"
        ),
        "migrate",
    );
    for (waiter, key) in waiters.into_iter().zip(keys) {
        nil(waiter.reply(), key);
    }
    assert_eq!(int(call!(&mut con, "EXISTS", "a", "b"), "EXISTS"), 0);
    let mut at_target = target.conn();
    for (key, token) in keys.iter().zip(tokens) {
        let moved = lock_info(&mut at_target, key).expect("held at the target");
        assert_eq!(
            (moved.owner.as_slice(), moved.token),
            (&b"holder"[..], token)
        );
    }
}

/// The lock `k` held by "holder" moved to `target`: not recreated here, held there with `token`.
fn assert_moved(con: &mut redis::Connection, target: &Server, token: i64) {
    assert_eq!(int(call!(con, "EXISTS", "k"), "nothing recreated here"), 0);
    let moved = lock_info(&mut target.conn(), "k").expect("held at the target");
    assert_eq!(
        (moved.owner.as_slice(), moved.token),
        (&b"holder"[..], token)
    );
}

#[test]
fn migrate_inside_multi_exec_never_hands_the_moved_lock_to_a_waiter_here() {
    let source = Server::start();
    let target = Server::start();
    let mut con = source.conn();
    let token = int(
        call!(&mut con, "LOCK.ACQUIRE", "k", "holder", 60000),
        "holder",
    );
    let waiter = Waiter::start(&source, "k", "w", 60000, 3000, 0);
    let _: Value = redis::pipe()
        .atomic()
        .cmd("MIGRATE")
        .arg("127.0.0.1")
        .arg(target.port())
        .arg("k")
        .arg(0)
        .arg(5000)
        .query(&mut con)
        .expect("MULTI MIGRATE EXEC");
    nil(waiter.reply(), "a waiter of a lock MIGRATEd inside MULTI");
    assert_moved(&mut con, &target, token);
}

#[test]
fn migrate_queued_before_anyone_waited_still_fails_the_waiters_when_exec_runs_it() {
    let source = Server::start();
    let target = Server::start();
    let mut con = source.conn();
    let token = int(
        call!(&mut con, "LOCK.ACQUIRE", "k", "holder", 60000),
        "holder",
    );
    ok(call!(&mut con, "MULTI"), "MULTI");
    let queued = call!(
        &mut con,
        "MIGRATE",
        "127.0.0.1",
        target.port(),
        "k",
        0,
        5000
    );
    assert_eq!(queued.as_ref().map(text), Ok(Some("QUEUED".into())));
    // The waiter arrives while the MIGRATE sits in the transaction.
    let waiter = Waiter::start(&source, "k", "w", 60000, 3000, 0);
    call!(&mut con, "EXEC").expect("EXEC");
    nil(
        waiter.reply(),
        "a waiter of a lock MIGRATEd by a later EXEC",
    );
    assert_moved(&mut con, &target, token);
}

#[test]
fn migrate_from_a_function_or_after_client_pause_never_hands_the_moved_lock_here() {
    let source = Server::start();
    let target = Server::start();
    let mut con = source.conn();
    let library = "#!lua name=mover\n\
        redis.register_function('move', function(keys, args) \
        return redis.call('MIGRATE', '127.0.0.1', args[1], keys[1], '0', '5000') end)";
    call!(&mut con, "FUNCTION", "LOAD", library).expect("FUNCTION LOAD");
    let token = int(
        call!(&mut con, "LOCK.ACQUIRE", "k", "holder", 60000),
        "holder",
    );
    let waiter = Waiter::start(&source, "k", "w", 60000, 3000, 0);
    ok(
        call!(&mut con, "FCALL", "move", 1, "k", target.port()),
        "FCALL",
    );
    nil(waiter.reply(), "a waiter of a lock MIGRATEd by a function");
    assert_moved(&mut con, &target, token);
    // Back, then moved again by a MIGRATE that CLIENT PAUSE held until after the waiter came.
    let mut back = target.conn();
    ok(
        call!(
            &mut back,
            "MIGRATE",
            "127.0.0.1",
            source.port(),
            "k",
            0,
            5000
        ),
        "back",
    );
    let waiter = Waiter::start(&source, "k", "w", 60000, 3000, 0);
    let mut admin = source.conn();
    ok(
        call!(&mut admin, "CLIENT", "PAUSE", 60000, "WRITE"),
        "CLIENT PAUSE",
    );
    let mut mover = source.conn();
    let port = target.port();
    let moving = std::thread::spawn(move || {
        call!(&mut mover, "MIGRATE", "127.0.0.1", port, "k", 0, 5000).map(|v| text(&v))
    });
    source.wait_for_blocked_clients(2);
    ok(call!(&mut admin, "CLIENT", "UNPAUSE"), "CLIENT UNPAUSE");
    assert_eq!(moving.join().expect("mover"), Ok(Some("OK".into())));
    nil(
        waiter.reply(),
        "a waiter of a lock MIGRATEd after CLIENT UNPAUSE",
    );
    assert_moved(&mut con, &target, token);
}

#[test]
fn a_dump_does_not_keep_a_later_del_from_handing_the_lock_over() {
    // DUMP serializes the lock as MIGRATE does; a DEL in a later command (a later event-loop
    // turn) is still a force release that hands the lock to the waiter.
    let server = Server::start();
    let mut con = server.conn();
    call!(&mut con, "LOCK.ACQUIRE", "k", "holder", 60000).expect("holder");
    let waiter = Waiter::start(&server, "k", "w", 60000, 3000, 0);
    call!(&mut con, "DUMP", "k").expect("DUMP");
    assert_eq!(int(call!(&mut con, "DEL", "k"), "DEL"), 1);
    waiter.token("handed over after DUMP, then DEL");
    assert_eq!(owner_of(&mut con, "k").as_deref(), Some("w"));
}

#[test]
fn client_unblock_racing_a_handoff_leaves_the_granted_reply_intact() {
    let server = Server::start();
    let mut con = server.conn();
    call!(&mut con, "LOCK.ACQUIRE", "k", "holder", 60000).expect("holder");
    let waiter = Waiter::start(&server, "k", "w", 60000, 0, 0);
    // One pipeline, run in one event-loop turn: the release hands the lock over, then an
    // admin unblocks the waiter before its reply went out.
    let replies: (i64, i64) = redis::pipe()
        .cmd("LOCK.RELEASE")
        .arg("k")
        .arg("holder")
        .cmd("CLIENT")
        .arg("UNBLOCK")
        .arg(waiter.client_id)
        .query(&mut con)
        .expect("pipeline");
    assert_eq!(replies, (0, 0), "the unblock found nothing left to unblock");
    let token = waiter.token("the handed lock's token");
    let info = lock_info(&mut con, "k").expect("held by the waiter");
    assert_eq!((info.owner.as_slice(), info.token), (&b"w"[..], token));
}

#[test]
fn a_client_handed_a_lock_can_be_unblocked_from_its_next_wait() {
    // The filter spares only a reply still on its way: once the token went out, the same
    // connection's next wait is an ordinary one that CLIENT UNBLOCK ends.
    let server = Server::start();
    let mut con = server.conn();
    for key in ["first", "second"] {
        int(call!(&mut con, "LOCK.ACQUIRE", key, "holder", 60000), key);
    }
    let mut waiter = server.conn();
    waiter
        .set_read_timeout(Some(REPLY_WITHIN * 2))
        .expect("read timeout");
    let client_id = int(call!(&mut waiter, "CLIENT", "ID"), "CLIENT ID");
    let thread = std::thread::spawn(move || {
        let first = call!(&mut waiter, "LOCK.ACQUIRE", "first", "w", 60000, "WAIT", 0);
        let second = call!(&mut waiter, "LOCK.ACQUIRE", "second", "w", 60000, "WAIT", 0);
        (first, second)
    });
    server.wait_for_blocked_clients(1);
    assert_eq!(
        int(
            call!(&mut con, "LOCK.RELEASE", "first", "holder"),
            "RELEASE"
        ),
        0
    );
    // The handoff's reply went out before this connection's next call ran: a blocked client
    // now is the waiter's second wait.
    server.wait_for_blocked_clients(1);
    assert_eq!(
        int(
            call!(&mut con, "CLIENT", "UNBLOCK", client_id),
            "CLIENT UNBLOCK"
        ),
        1
    );
    let (first, second) = thread.join().expect("waiter thread");
    let token = int(first, "the first lock, handed over");
    assert_eq!(
        lock_info(&mut con, "first").map(|info| info.token),
        Some(token)
    );
    nil(second, "the second wait, unblocked");
    assert_eq!(info_int(&mut con, "lock", "lock_waiters"), 0);
    // Both waits registered the filter (or found it registered) without a complaint.
    let log = server.log();
    assert!(!log.contains("cannot register the command filter"), "{log}");
}

/// `INFO lock` handoff counters: (on release, on expiry, on delete).
fn handoffs(con: &mut redis::Connection) -> (i64, i64, i64) {
    (
        info_int(con, "lock", "lock_handoffs_on_release"),
        info_int(con, "lock", "lock_handoffs_on_expiry"),
        info_int(con, "lock", "lock_handoffs_on_delete"),
    )
}

/// Sends `calls` as one pipeline: the server runs them in one event-loop turn, with no timer
/// in between. Returns the replies.
fn in_one_turn(con: &mut redis::Connection, calls: &[&[&str]]) -> Vec<Value> {
    let mut pipe = redis::pipe();
    for call in calls {
        pipe.cmd(call[0]);
        for arg in &call[1..] {
            pipe.arg(*arg);
        }
    }
    con.req_packed_commands(&pipe.get_packed_pipeline(), 0, calls.len())
        .expect("pipeline")
}

#[test]
fn handoffs_are_counted_by_why_the_lock_was_freed() {
    let server = Server::start_with(&["--enable-debug-command", "yes"]);
    let mut con = server.conn();
    ok(
        call!(&mut con, "DEBUG", "SET-ACTIVE-EXPIRE", 0),
        "no active expiry",
    );
    assert_eq!(handoffs(&mut con), (0, 0, 0));

    // Released.
    call!(&mut con, "LOCK.ACQUIRE", "k", "holder", 600000).expect("holder");
    let waiter = Waiter::start(&server, "k", "w1", 600000, 0, 0);
    call!(&mut con, "LOCK.RELEASE", "k", "holder").expect("release");
    waiter.token("handed on release");
    assert_eq!(handoffs(&mut con), (1, 0, 0));

    // Expired by the server itself, before rlock's own check: an admin's PEXPIRE (noticed by
    // rlock only at the next re-check), the server asleep past the expiry, then a read that
    // makes the server expire the key, all in one turn.
    let waiter = Waiter::start(&server, "k", "w2", 600000, 0, 0);
    let replies = in_one_turn(
        &mut con,
        &[
            &["PEXPIRE", "k", "50"],
            &["DEBUG", "SLEEP", "0.1"],
            &["EXISTS", "k"],
        ],
    );
    assert_eq!(replies[2], Value::Int(0), "the server expired the key");
    waiter.token("handed after the server expired the lock");
    assert_eq!(handoffs(&mut con), (1, 1, 0));

    // A lock nobody waits for, expired by the server while others wait for another key,
    // leaves no mark that would make a later deletion of the same key count as an expiry.
    let other = Waiter::start(&server, "k", "other", 600000, 0, 0);
    call!(&mut con, "LOCK.ACQUIRE", "j", "holder", 600000).expect("holder");
    let replies = in_one_turn(
        &mut con,
        &[
            &["PEXPIRE", "j", "1"],
            &["DEBUG", "SLEEP", "0.01"],
            &["EXISTS", "j"],
        ],
    );
    assert_eq!(replies[2], Value::Int(0), "the server expired the key");
    call!(&mut con, "LOCK.ACQUIRE", "j", "holder", 600000).expect("holder");
    let waiter = Waiter::start(&server, "j", "w3", 600000, 0, 1);
    assert_eq!(int(call!(&mut con, "DEL", "j"), "DEL"), 1);
    waiter.token("handed on DEL");
    assert_eq!(handoffs(&mut con), (1, 1, 1));
    call!(&mut con, "LOCK.RELEASE", "k", "w2").expect("release");
    other.token("handed on release");
    assert_eq!(handoffs(&mut con), (2, 1, 1));
}
