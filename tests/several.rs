//! Several keys at once: LOCK.MACQUIRE takes every key or none (each its own token), waits in
//! every key's queue at once and is granted all in one step, never part; LOCK.MRELEASE and
//! LOCK.MRENEW; bad input changes nothing; a wait that would close a cycle of waits (single-
//! or several-key) is refused with DEADLOCK naming the cycle; grants replicate; DEL and
//! timeouts of one key while a several-key request waits.

mod common;

use std::sync::mpsc::{channel, Receiver};
use std::thread::JoinHandle;
use std::time::Duration;

use common::{error, exists, int, nil, ok, run, wait_until, Server};
use redis::Value;

const REPLY_WITHIN: Duration = Duration::from_secs(20);

/// A client blocked in any command on its own connection.
struct Blocked {
    client_id: i64,
    reply: Receiver<Result<Value, String>>,
    thread: JoinHandle<()>,
}

impl Blocked {
    /// Sends `args` and returns once `blocked_before + 1` clients are blocked.
    fn start(server: &Server, args: &[&str], blocked_before: usize) -> Blocked {
        let mut con = server.conn();
        con.set_read_timeout(Some(REPLY_WITHIN * 2))
            .expect("read timeout");
        let client_id = int(call!(&mut con, "CLIENT", "ID"), "CLIENT ID");
        let mut cmd = redis::cmd(args[0]);
        for arg in &args[1..] {
            cmd.arg(*arg);
        }
        let (send, reply) = channel();
        let thread = std::thread::spawn(move || {
            let _ = send.send(run(&mut con, &cmd));
        });
        server.wait_for_blocked_clients(blocked_before + 1);
        Blocked {
            client_id,
            reply,
            thread,
        }
    }

    fn reply(self) -> Result<Value, String> {
        let got = self
            .reply
            .recv_timeout(REPLY_WITHIN)
            .expect("the waiter got no reply in time");
        let _ = self.thread.join();
        got
    }

    fn has_replied(&self) -> bool {
        !matches!(
            self.reply.try_recv(),
            Err(std::sync::mpsc::TryRecvError::Empty)
        )
    }
}

/// The tokens of a LOCK.MACQUIRE reply.
#[track_caller]
fn tokens(reply: Result<Value, String>) -> Vec<i64> {
    match reply {
        Ok(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::Int(n) => *n,
                other => panic!("not a token: {other:?}"),
            })
            .collect(),
        other => panic!("not an array of tokens: {other:?}"),
    }
}

/// The owner holding `key` (LOCK.INFO's `owner` of the first holder), if any.
fn holder(con: &mut redis::Connection, key: &str) -> Option<String> {
    common::lock_info(con, key).map(|info| String::from_utf8_lossy(&info.owner).into_owned())
}

#[test]
fn every_key_is_taken_with_its_own_token_or_none_is() {
    let server = Server::start();
    let mut con = server.conn();
    let got = tokens(call!(
        &mut con,
        "LOCK.MACQUIRE",
        2,
        "acct:1",
        "acct:2",
        "t1",
        5000
    ));
    assert_eq!(got.len(), 2);
    assert!(got[0] < got[1], "each key its own token: {got:?}");
    assert_eq!(holder(&mut con, "acct:1").as_deref(), Some("t1"));
    assert_eq!(holder(&mut con, "acct:2").as_deref(), Some("t1"));
    // acct:2 busy: acct:3 is not taken either.
    nil(
        call!(&mut con, "LOCK.MACQUIRE", 2, "acct:3", "acct:2", "t2", 5000),
        "busy",
    );
    assert_eq!(exists(&mut con, "acct:3"), 0, "nothing taken");
    // The owner reenters what it holds and takes the rest.
    let again = tokens(call!(
        &mut con,
        "LOCK.MACQUIRE",
        2,
        "acct:2",
        "acct:4",
        "t1",
        5000
    ));
    assert_eq!(again[0], got[1], "a reentry keeps its token");
    let info = common::lock_info(&mut con, "acct:2").expect("held");
    assert_eq!(info.count, 2);
    // LOCK.MRENEW and LOCK.MRELEASE: per key, in key order.
    let renewed = call!(
        &mut con,
        "LOCK.MRENEW",
        3,
        "acct:1",
        "acct:2",
        "acct:9",
        "t1",
        9000
    );
    assert_eq!(
        renewed,
        Ok(Value::Array(vec![
            Value::Int(1),
            Value::Int(1),
            Value::Int(0)
        ]))
    );
    let released = call!(
        &mut con,
        "LOCK.MRELEASE",
        3,
        "acct:1",
        "acct:2",
        "acct:9",
        "t1"
    );
    assert_eq!(
        released,
        Ok(Value::Array(vec![Value::Int(0), Value::Int(1), Value::Nil]))
    );
    assert_eq!(exists(&mut con, "acct:1"), 0);
}

#[test]
fn bad_input_is_refused_and_changes_nothing() {
    let server = Server::start();
    let mut con = server.conn();
    let cases: &[(&[&str], &str)] = &[
        (&["0", "a", "me", "5000"], "ERR invalid numkeys"),
        (&["5", "a", "b", "me", "5000"], "ERR numkeys is larger"),
        (&["2", "a", "a", "me", "5000"], "ERR key 'a' given twice"),
        (
            &["2", "a", "b", "me", "5000", "HELD", "0"],
            "ERR unknown option 'HELD'",
        ),
    ];
    for (args, expected) in cases {
        let mut cmd = redis::cmd("LOCK.MACQUIRE");
        for arg in *args {
            cmd.arg(*arg);
        }
        let text = error(run(&mut con, &cmd), "bad input");
        assert!(text.starts_with(expected), "{args:?}: {text}");
    }
    assert_eq!(exists(&mut con, "a"), 0);
    // A key of another type among them: WRONGTYPE, the other key untouched.
    let _ = call!(&mut con, "SET", "s", "x");
    let text = error(
        call!(&mut con, "LOCK.MACQUIRE", 2, "a", "s", "me", 5000),
        "wrongtype",
    );
    assert!(text.starts_with("WRONGTYPE"), "{text}");
    assert_eq!(exists(&mut con, "a"), 0);
    // An owner holding one key shared cannot take it exclusive with the rest.
    let _ = int(
        call!(&mut con, "LOCK.ACQUIRE", "r", "me", 5000, "SHARED"),
        "shared",
    );
    let text = error(
        call!(&mut con, "LOCK.MACQUIRE", 2, "a", "r", "me", 5000),
        "conflict",
    );
    assert!(
        text.contains("holds key 'r' shared and cannot also hold it exclusive"),
        "{text}"
    );
    assert_eq!(exists(&mut con, "a"), 0);
}

#[test]
fn a_waiter_takes_all_its_keys_in_one_step_and_nobody_barges() {
    let server = Server::start();
    let mut con = server.conn();
    let _ = int(call!(&mut con, "LOCK.ACQUIRE", "k1", "A", 60000), "A");
    let m = Blocked::start(
        &server,
        &["LOCK.MACQUIRE", "2", "k1", "k2", "M", "60000", "WAIT", "0"],
        0,
    );
    assert_eq!(exists(&mut con, "k2"), 0, "it holds nothing while it waits");
    // k2 is free, yet a single-key newcomer queues behind M.
    nil(
        call!(&mut con, "LOCK.ACQUIRE", "k2", "S0", 60000),
        "no barging",
    );
    let s = Blocked::start(
        &server,
        &["LOCK.ACQUIRE", "k2", "S", "60000", "WAIT", "0"],
        1,
    );
    assert_eq!(
        int(call!(&mut con, "LOCK.RELEASE", "k1", "A"), "release"),
        0
    );
    let got = tokens(m.reply());
    assert_eq!(got.len(), 2);
    assert_eq!(holder(&mut con, "k1").as_deref(), Some("M"));
    assert_eq!(holder(&mut con, "k2").as_deref(), Some("M"));
    assert!(!s.has_replied(), "S waits for M's hold");
    let released = call!(&mut con, "LOCK.MRELEASE", 2, "k1", "k2", "M");
    assert_eq!(
        released,
        Ok(Value::Array(vec![Value::Int(0), Value::Int(0)]))
    );
    let token = int(s.reply(), "S");
    assert!(token > got[1]);
    assert_eq!(holder(&mut con, "k2").as_deref(), Some("S"));
    assert_eq!(exists(&mut con, "k1"), 0);
}

#[test]
fn a_timed_out_several_key_waiter_lets_those_behind_it_go() {
    let server = Server::start();
    let mut con = server.conn();
    let _ = int(call!(&mut con, "LOCK.ACQUIRE", "k1", "A", 60000), "A");
    let m = Blocked::start(
        &server,
        &[
            "LOCK.MACQUIRE",
            "2",
            "k1",
            "k2",
            "M",
            "60000",
            "WAIT",
            "300",
        ],
        0,
    );
    // S must get k2 as M leaves, not at the re-check armed 1 s after it joined: its own 700 ms
    // timeout comes first (server timers fire in due order).
    let s = Blocked::start(
        &server,
        &["LOCK.ACQUIRE", "k2", "S", "60000", "WAIT", "700"],
        1,
    );
    nil(m.reply(), "timed out");
    let _ = int(s.reply(), "S gets k2 once M left");
    assert_eq!(holder(&mut con, "k2").as_deref(), Some("S"));
    assert_eq!(holder(&mut con, "k1").as_deref(), Some("A"));
}

/// Two several-key waiters leave in one step (CLIENT UNBLOCK of both in one MULTI): those
/// behind each of them on its other key go at once, for both, not at the re-check armed 1 s
/// after they joined (their own 700 ms timeouts come first; server timers fire in due order).
#[test]
fn several_key_waiters_leaving_together_let_those_behind_each_of_them_go() {
    let server = Server::start();
    let mut con = server.conn();
    let _ = int(call!(&mut con, "LOCK.ACQUIRE", "k1", "A", 60000), "A");
    let macquire = |key: &'static str, owner: &'static str| {
        ["LOCK.MACQUIRE", "2", "k1", key, owner, "60000", "WAIT", "0"]
    };
    let m2 = Blocked::start(&server, &macquire("k2", "M2"), 0);
    let m3 = Blocked::start(&server, &macquire("k3", "M3"), 1);
    let s2 = Blocked::start(
        &server,
        &["LOCK.ACQUIRE", "k2", "S2", "60000", "WAIT", "700"],
        2,
    );
    let s3 = Blocked::start(
        &server,
        &["LOCK.ACQUIRE", "k3", "S3", "60000", "WAIT", "700"],
        3,
    );
    ok(call!(&mut con, "MULTI"), "MULTI");
    let _ = call!(&mut con, "CLIENT", "UNBLOCK", m2.client_id);
    let _ = call!(&mut con, "CLIENT", "UNBLOCK", m3.client_id);
    let _ = call!(&mut con, "EXEC");
    nil(m2.reply(), "unblocked");
    nil(m3.reply(), "unblocked");
    let _ = int(s2.reply(), "S2 gets k2 once M2 left");
    let _ = int(s3.reply(), "S3 gets k3 once M3 left");
    assert_eq!(holder(&mut con, "k2").as_deref(), Some("S2"));
    assert_eq!(holder(&mut con, "k3").as_deref(), Some("S3"));
}

#[test]
fn deleting_one_key_hands_all_keys_to_the_waiter_when_all_are_free() {
    let server = Server::start();
    let mut con = server.conn();
    let _ = int(call!(&mut con, "LOCK.ACQUIRE", "k1", "A", 60000), "A");
    let m = Blocked::start(
        &server,
        &["LOCK.MACQUIRE", "2", "k1", "k2", "M", "60000", "WAIT", "0"],
        0,
    );
    assert_eq!(int(call!(&mut con, "DEL", "k1"), "DEL"), 1);
    assert_eq!(tokens(m.reply()).len(), 2);
    assert_eq!(holder(&mut con, "k1").as_deref(), Some("M"));
    // FLUSHALL while one waits: it is handed both keys, fresh.
    let _ = int(call!(&mut con, "LOCK.ACQUIRE", "k3", "A", 60000), "A");
    let n = Blocked::start(
        &server,
        &["LOCK.MACQUIRE", "2", "k3", "k4", "N", "60000", "WAIT", "0"],
        0,
    );
    let _ = call!(&mut con, "FLUSHALL");
    assert_eq!(tokens(n.reply()).len(), 2);
    assert_eq!(holder(&mut con, "k4").as_deref(), Some("N"));
}

#[test]
fn a_cycle_back_through_an_owners_queued_several_key_wait_is_refused() {
    // X holds nothing but waits (several keys) on a and b; Q queues on b behind X. X's new
    // wait on d, held by Q, closes X -> Q -> X: X is in Q's way through its queued wait.
    let server = Server::start();
    let mut con = server.conn();
    let _ = int(call!(&mut con, "LOCK.ACQUIRE", "a", "Y", 60000), "Y");
    let _ = int(call!(&mut con, "LOCK.ACQUIRE", "d", "Q", 60000), "Q");
    let x = Blocked::start(
        &server,
        &["LOCK.MACQUIRE", "2", "a", "b", "X", "60000", "WAIT", "0"],
        0,
    );
    let q = Blocked::start(
        &server,
        &["LOCK.ACQUIRE", "b", "Q", "60000", "WAIT", "0"],
        1,
    );
    let text = error(
        call!(&mut con, "LOCK.ACQUIRE", "d", "X", 60000, "WAIT", 0),
        "deadlock",
    );
    assert_eq!(
        text,
        "DEADLOCK 'd' is held by 'Q', which waits for 'b', where 'X' is queued ahead"
    );
    assert!(!x.has_replied() && !q.has_replied(), "the others wait on");
}

#[test]
fn a_waiter_that_fits_beside_the_holders_is_not_blocked_by_them() {
    // H reads k. M wants k shared too (it fits) but waits for k2, held by Z; R, a reader of k
    // queued behind M, fits beside H as well: only M is in R's way, not H. So H's wait on j,
    // held by R, closes no cycle (R -> M -> Z, who waits for nothing) and must be let wait.
    let server = Server::start();
    let mut con = server.conn();
    let _ = int(
        call!(&mut con, "LOCK.ACQUIRE", "k", "H", 60000, "SHARED"),
        "H",
    );
    let _ = int(call!(&mut con, "LOCK.ACQUIRE", "k2", "Z", 60000), "Z");
    let _ = int(call!(&mut con, "LOCK.ACQUIRE", "j", "R", 60000), "R");
    let _m = Blocked::start(
        &server,
        &[
            "LOCK.MACQUIRE",
            "2",
            "k2",
            "k",
            "M",
            "60000",
            "SHARED",
            "WAIT",
            "0",
        ],
        0,
    );
    let _r = Blocked::start(
        &server,
        &["LOCK.ACQUIRE", "k", "R", "60000", "SHARED", "WAIT", "0"],
        1,
    );
    let h = Blocked::start(
        &server,
        &["LOCK.ACQUIRE", "j", "H", "60000", "WAIT", "0"],
        2,
    );
    assert!(!h.has_replied(), "H waits: no DEADLOCK");
}

#[test]
fn a_wait_behind_a_queued_waiter_that_waits_for_the_asker_is_refused() {
    // k is free, but V and then W wait on it (several keys: V for k3, held by U, who waits for
    // nothing; W for k2, held by N). N's wait on k would queue behind W, who waits for N:
    // refused, though nobody holds k and the first in line leads nowhere.
    let server = Server::start();
    let mut con = server.conn();
    let _ = int(call!(&mut con, "LOCK.ACQUIRE", "k3", "U", 60000), "U");
    let _ = int(call!(&mut con, "LOCK.ACQUIRE", "k2", "N", 60000), "N");
    let v = Blocked::start(
        &server,
        &["LOCK.MACQUIRE", "2", "k", "k3", "V", "60000", "WAIT", "0"],
        0,
    );
    let w = Blocked::start(
        &server,
        &["LOCK.MACQUIRE", "2", "k", "k2", "W", "60000", "WAIT", "0"],
        1,
    );
    let text = error(
        call!(&mut con, "LOCK.ACQUIRE", "k", "N", 60000, "WAIT", 0),
        "deadlock",
    );
    assert_eq!(
        text,
        "DEADLOCK 'k' has 'W' queued ahead, which waits for 'k2', held by 'N'"
    );
    assert!(!v.has_replied() && !w.has_replied(), "V and W wait on");
}

#[test]
fn a_wait_that_closes_a_cycle_is_refused_naming_it() {
    let server = Server::start();
    let mut con = server.conn();
    let _ = int(call!(&mut con, "LOCK.ACQUIRE", "k1", "A", 60000), "A");
    let _ = int(call!(&mut con, "LOCK.ACQUIRE", "k2", "B", 60000), "B");
    let b = Blocked::start(
        &server,
        &["LOCK.ACQUIRE", "k1", "B", "60000", "WAIT", "0"],
        0,
    );
    let text = error(
        call!(&mut con, "LOCK.ACQUIRE", "k2", "A", 60000, "WAIT", 0),
        "deadlock",
    );
    assert_eq!(
        text,
        "DEADLOCK 'k2' is held by 'B', which waits for 'k1', held by 'A'"
    );
    assert!(!b.has_replied(), "nobody else's wait is disturbed");
    // A several-key wait closes it as well; a plain try (no WAIT) is just nil.
    let text = error(
        call!(
            &mut con,
            "LOCK.MACQUIRE",
            2,
            "k2",
            "k9",
            "A",
            60000,
            "WAIT",
            0
        ),
        "deadlock",
    );
    assert!(text.starts_with("DEADLOCK 'k2' is held by 'B'"), "{text}");
    nil(call!(&mut con, "LOCK.ACQUIRE", "k2", "A", 60000), "try");
    assert_eq!(exists(&mut con, "k9"), 0, "nothing changed");
    // Three owners: C holds k3 and waits for k2 (held by B, who waits for k1, held by A).
    let _ = int(call!(&mut con, "LOCK.ACQUIRE", "k3", "C", 60000), "C");
    let _c = Blocked::start(
        &server,
        &["LOCK.ACQUIRE", "k2", "C", "60000", "WAIT", "0"],
        1,
    );
    let text = error(
        call!(&mut con, "LOCK.ACQUIRE", "k3", "A", 60000, "WAIT", 0),
        "deadlock of three",
    );
    assert!(text.starts_with("DEADLOCK 'k3' is held by 'C'"), "{text}");
    assert!(text.ends_with("held by 'A'"), "{text}");
    // No cycle, no refusal: D waits for k1 behind B.
    let _d = Blocked::start(
        &server,
        &["LOCK.ACQUIRE", "k1", "D", "60000", "WAIT", "0"],
        2,
    );
    assert_eq!(
        int(call!(&mut con, "LOCK.RELEASE", "k1", "A"), "release"),
        0
    );
    let _ = int(b.reply(), "B gets k1");
}

#[test]
fn shared_holds_and_semaphores_count_in_the_cycle() {
    let server = Server::start();
    let mut con = server.conn();
    let _ = int(
        call!(&mut con, "LOCK.ACQUIRE", "sem", "A", 60000, "LIMIT", 2),
        "A",
    );
    let _ = int(
        call!(&mut con, "LOCK.ACQUIRE", "sem", "X", 60000, "LIMIT", 2),
        "X",
    );
    let _ = int(
        call!(&mut con, "LOCK.ACQUIRE", "doc", "B", 60000, "SHARED"),
        "B",
    );
    // B waits for a permit of the full semaphore (held by A and X).
    let _b = Blocked::start(
        &server,
        &[
            "LOCK.ACQUIRE",
            "sem",
            "B",
            "60000",
            "LIMIT",
            "2",
            "WAIT",
            "0",
        ],
        0,
    );
    // A asking the reader's key exclusive would wait for B, who waits for A's permit.
    let text = error(
        call!(&mut con, "LOCK.ACQUIRE", "doc", "A", 60000, "WAIT", 0),
        "deadlock",
    );
    assert!(
        text.starts_with("DEADLOCK 'doc' is held by 'B', which waits for 'sem', held by 'A'"),
        "{text}"
    );
    // Another reader is no writer: A reading doc waits for nobody.
    let _ = int(
        call!(&mut con, "LOCK.ACQUIRE", "doc", "A", 60000, "SHARED"),
        "reader",
    );
}

#[test]
fn a_grant_of_several_keys_reaches_the_replica_whole() {
    let master = Server::start();
    let replica = Server::start();
    replica.replicate_from(&master);
    let mut con = master.conn();
    let _ = int(call!(&mut con, "LOCK.ACQUIRE", "k1", "A", 60000), "A");
    let m = Blocked::start(
        &master,
        &["LOCK.MACQUIRE", "2", "k1", "k2", "M", "60000", "WAIT", "0"],
        0,
    );
    let _ = int(call!(&mut con, "LOCK.RELEASE", "k1", "A"), "release");
    let got = tokens(m.reply());
    let _ = call!(&mut con, "WAIT", 1, 5000);
    let mut rcon = replica.conn();
    wait_until("the replica has both keys", || {
        holder(&mut rcon, "k1").as_deref() == Some("M")
            && holder(&mut rcon, "k2").as_deref() == Some("M")
    });
    let token = common::lock_info(&mut rcon, "k2").map(|info| info.token);
    assert_eq!(token, Some(got[1]));
}

#[test]
fn command_getkeys_finds_every_key() {
    let server = Server::start();
    let mut con = server.conn();
    let keys = call!(
        &mut con,
        "COMMAND",
        "GETKEYS",
        "LOCK.MACQUIRE",
        3,
        "a",
        "b",
        "c",
        "me",
        5000,
        "WAIT",
        0
    );
    let names: Vec<String> = match keys {
        Ok(Value::Array(items)) => items.iter().filter_map(common::text).collect(),
        other => panic!("{other:?}"),
    };
    assert_eq!(names, ["a", "b", "c"]);
}

/// The AOF's incremental files, in name order, lowercased.
fn aof_text(server: &Server) -> Vec<u8> {
    let dir = server.dir().join("appendonlydir");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.to_string_lossy().ends_with(".incr.aof"))
        .collect();
    names.sort();
    names
        .iter()
        .flat_map(|path| std::fs::read(path).unwrap_or_default())
        .collect::<Vec<u8>>()
        .to_ascii_lowercase()
}

fn find(haystack: &[u8], needle: &str, from: usize) -> Option<usize> {
    haystack[from..]
        .windows(needle.len())
        .position(|window| window == needle.as_bytes())
        .map(|at| at + from)
}

/// Whether, from `from` on, one MULTI ... EXEC holds the effects of both `a` and `b`.
fn one_unit_holds(aof: &[u8], from: usize, a: &str, b: &str) -> bool {
    let Some(multi) = find(aof, "multi", from) else {
        return false;
    };
    let Some(exec) = find(aof, "exec", multi) else {
        return false;
    };
    let unit = &aof[multi..exec];
    find(unit, a, 0).is_some()
        && find(unit, b, 0).is_some()
        && find(unit, "lock.apply", 0).is_some()
}

#[test]
fn the_aof_records_every_key_of_a_grant_in_one_transaction_and_replays_it() {
    let mut server = Server::start_with(&["--appendonly", "yes", "--appendfsync", "always"]);
    let mut con = server.conn();
    let before = aof_text(&server).len();
    let _ = tokens(call!(
        &mut con,
        "LOCK.MACQUIRE",
        2,
        "aof:a",
        "aof:b",
        "t",
        600000
    ));
    let aof = aof_text(&server);
    assert!(
        one_unit_holds(&aof, before, "aof:a", "aof:b"),
        "a direct grant"
    );
    // A grant handed to a waiter when a key frees: one unit too.
    let _ = int(call!(&mut con, "LOCK.ACQUIRE", "aof:c", "A", 600000), "A");
    let m = Blocked::start(
        &server,
        &[
            "LOCK.MACQUIRE",
            "2",
            "aof:c",
            "aof:d",
            "M",
            "600000",
            "WAIT",
            "0",
        ],
        0,
    );
    let before = aof_text(&server).len();
    let _ = int(call!(&mut con, "LOCK.RELEASE", "aof:c", "A"), "release");
    let handed = tokens(m.reply());
    let aof = aof_text(&server);
    assert!(one_unit_holds(&aof, before, "aof:c", "aof:d"), "a handoff");
    drop(con);
    server.restart();
    let mut con = server.conn();
    for key in ["aof:a", "aof:b", "aof:c", "aof:d"] {
        assert!(holder(&mut con, key).is_some(), "{key} replayed");
    }
    let token = common::lock_info(&mut con, "aof:d").map(|info| info.token);
    assert_eq!(token, Some(handed[1]));
}

/// Sends `LOCK.ACQUIRE key owner 60000 WAIT 0` on a connection of its own, reply unread.
fn queue_on(server: &Server, key: &str, owner: &str) -> redis::Connection {
    let mut con = server.conn();
    let mut cmd = redis::cmd("LOCK.ACQUIRE");
    cmd.arg(key).arg(owner).arg(60000).arg("WAIT").arg(0);
    con.send_packed_command(&cmd.get_packed_command())
        .expect("send");
    con
}

#[test]
fn thousands_of_waiters_on_one_key_leave_deadlock_detection_answering() {
    // The wait-for graph was once walked in time quadratic in a key's queue: 2,000 waiters
    // held a server at 100% CPU for each new wait. The walk now reads each queue once.
    const WAITERS: usize = 2_000;
    let server = Server::start();
    let mut con = server.conn();
    let _ = int(call!(&mut con, "LOCK.ACQUIRE", "k", "H", 60000), "H");
    let _ = int(call!(&mut con, "LOCK.ACQUIRE", "j", "B", 60000), "B");
    let _ = int(call!(&mut con, "LOCK.ACQUIRE", "x", "X", 60000), "X");
    let _y = queue_on(&server, "x", "Y");
    let mut waiting: Vec<redis::Connection> = (0..WAITERS)
        .map(|i| {
            let owner = if i == WAITERS / 2 {
                "B".to_string()
            } else {
                format!("w{i}")
            };
            queue_on(&server, "k", &owner)
        })
        .collect();
    server.wait_for_blocked_clients(WAITERS + 1);
    // H holds k, which B waits for in the middle of the line, and asks for j, held by B.
    let text = error(
        call!(&mut con, "LOCK.ACQUIRE", "j", "H", 60000, "WAIT", 0),
        "deadlock",
    );
    assert_eq!(
        text,
        "DEADLOCK 'j' is held by 'B', which waits for 'k', held by 'H'"
    );
    // X is in Y's way, so its wait on k walks the whole graph (every waiter of k): no cycle.
    waiting.push(queue_on(&server, "k", "X"));
    // F is in nobody's way: queued without a walk.
    waiting.push(queue_on(&server, "k", "F"));
    server.wait_for_blocked_clients(WAITERS + 3);
    let listed = match call!(&mut con, "LOCK.WAITERS", "k", "COUNT", 5000) {
        Ok(Value::Array(rows)) => rows.len(),
        other => panic!("LOCK.WAITERS: {other:?}"),
    };
    assert_eq!(listed, WAITERS + 2, "every waiter queued on k");
    // The line still moves: H's release hands k to the first waiter.
    let _ = int(call!(&mut con, "LOCK.RELEASE", "k", "H"), "release");
    let first = waiting.first_mut().expect("a waiter");
    first
        .set_read_timeout(Some(REPLY_WITHIN))
        .expect("read timeout");
    match first.recv_response() {
        Ok(Value::Int(token)) => assert!(token > 0),
        other => panic!("the first waiter's grant: {other:?}"),
    }
    assert_eq!(holder(&mut con, "k").as_deref(), Some("w0"));
}
