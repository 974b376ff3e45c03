//! Locks survive DEBUG RELOAD, RDB and AOF restarts (with and without an AOF rewrite and its
//! RDB preamble), replicate to a replica, and round-trip through DUMP/RESTORE: same owner,
//! count, token and absolute expiry; released locks stay gone; new tokens stay above every
//! token handed out before.

mod common;

use common::*;
use redis::Value;

const TTL: u64 = 600_000;

/// A held lock as it must come back.
#[derive(Debug, PartialEq, Eq)]
struct Held {
    key: String,
    owner: Vec<u8>,
    count: i64,
    token: i64,
    expiry: i64,
}

fn held(con: &mut redis::Connection, key: &str) -> Held {
    let info = lock_info(con, key).unwrap_or_else(|| panic!("{key} is not held"));
    Held {
        key: key.to_string(),
        owner: info.owner,
        count: info.count,
        token: info.token,
        expiry: int(call!(con, "PEXPIRETIME", key), "PEXPIRETIME"),
    }
}

/// What a populated server holds: the locks that must come back, the released keys that must
/// not, and the highest token handed out (a released lock's).
struct Population {
    held: Vec<Held>,
    released: Vec<String>,
    max_token: i64,
    /// A plain string key written beside the locks.
    string_keys: Vec<String>,
}

/// Several keys, owners (one binary), counts above 1, long ttls, a renewal, a partial and
/// two full releases; the highest token belongs to a released lock. `prefix` keeps the
/// keys of two calls apart.
fn populate(con: &mut redis::Connection, prefix: &str) -> Population {
    let key = |name: &str| format!("{prefix}{name}");
    let mut max_token = 0;
    let mut track = |token: i64| max_token = max_token.max(token);

    track(acquire(con, &key("a"), b"alice", TTL));

    track(acquire(con, &key("b"), b"bob", TTL));
    track(acquire(con, &key("b"), b"bob", TTL));
    int(call!(con, "LOCK.REENTER", key("b"), "bob"), "REENTER");
    int(
        call!(con, "LOCK.RENEW", key("b"), "bob", TTL + 50_000),
        "RENEW",
    );

    let carol: &[u8] = b"\x00\xffcarol\r\n";
    track(acquire(con, &key("c"), carol, TTL));
    int(
        call!(con, "LOCK.REENTER", key("c"), carol, TTL + 100_000),
        "REENTER",
    );

    track(acquire(con, &key("gone"), b"dave", TTL));
    assert_eq!(release(con, &key("gone"), b"dave"), 0);

    for _ in 0..3 {
        track(acquire(con, &key("partly"), b"eve", TTL));
    }
    assert_eq!(release(con, &key("partly"), b"eve"), 2);

    track(acquire(con, &key("last"), b"frank", TTL));
    assert_eq!(release(con, &key("last"), b"frank"), 0);

    ok(call!(con, "SET", key("str"), "plain"), "SET");

    let held = ["a", "b", "c", "partly"]
        .iter()
        .map(|name| held(con, &key(name)))
        .collect::<Vec<_>>();
    assert_eq!(
        held.iter().map(|h| h.count).collect::<Vec<_>>(),
        [1, 3, 2, 2]
    );
    Population {
        held,
        released: vec![key("gone"), key("last")],
        max_token,
        string_keys: vec![key("str")],
    }
}

/// Everything in `population` is as it was, and a new acquisition gets a higher token.
fn verify(con: &mut redis::Connection, population: &Population, after: &str) {
    for expected in &population.held {
        assert_eq!(
            &held(con, &expected.key),
            expected,
            "{} after {after}",
            expected.key
        );
        let key_type = text(&call!(con, "TYPE", &expected.key).unwrap()).unwrap();
        assert_eq!(key_type.len(), 9, "TYPE {} after {after}", expected.key);
    }
    for key in &population.released {
        assert_eq!(
            exists(con, key),
            0,
            "released lock {key} came back after {after}"
        );
    }
    for key in &population.string_keys {
        assert_eq!(
            call!(con, "GET", key.as_str()),
            Ok(Value::BulkString(b"plain".to_vec())),
            "{key} after {after}"
        );
    }
    let next = acquire(con, &format!("new-after-{after}"), b"zed", TTL);
    assert!(
        next > population.max_token,
        "after {after}: new token {next} is not above {}",
        population.max_token
    );
}

/// Drives BGREWRITEAOF to its end.
fn rewrite_aof(server: &Server, con: &mut redis::Connection) {
    server.wait_for_info("persistence", "aof_rewrite_in_progress", "0");
    server.wait_for_info("persistence", "aof_rewrite_scheduled", "0");
    let reply = call!(con, "BGREWRITEAOF").expect("BGREWRITEAOF");
    assert!(text(&reply).is_some(), "BGREWRITEAOF: {reply:?}");
    server.wait_for_info("persistence", "aof_rewrite_scheduled", "0");
    server.wait_for_info("persistence", "aof_rewrite_in_progress", "0");
    assert_eq!(
        server
            .info_field("persistence", "aof_last_bgrewrite_status")
            .as_deref(),
        Some("ok")
    );
}

// ---------------------------------------------------------------------------------------
// DEBUG RELOAD, RDB

#[test]
fn locks_survive_debug_reload() {
    let server = Server::start_with(&["--enable-debug-command", "yes"]);
    let mut con = server.conn();
    let population = populate(&mut con, "p:");
    let digest = call!(&mut con, "DEBUG", "DIGEST").unwrap();
    let value_digest = call!(&mut con, "DEBUG", "DIGEST-VALUE", "p:b").unwrap();
    ok(call!(&mut con, "DEBUG", "RELOAD"), "DEBUG RELOAD");
    assert_eq!(call!(&mut con, "DEBUG", "DIGEST").unwrap(), digest);
    assert_eq!(
        call!(&mut con, "DEBUG", "DIGEST-VALUE", "p:b").unwrap(),
        value_digest
    );
    verify(&mut con, &population, "DEBUG RELOAD");
}

#[test]
fn locks_survive_save_and_restart() {
    let mut server = Server::start();
    let mut con = server.conn();
    let population = populate(&mut con, "p:");
    ok(call!(&mut con, "SAVE"), "SAVE");
    drop(con);
    server.restart();
    let mut con = server.conn();
    verify(&mut con, &population, "SAVE + restart");
}

#[test]
fn locks_survive_bgsave_and_restart() {
    let mut server = Server::start();
    let mut con = server.conn();
    let population = populate(&mut con, "p:");
    server.wait_for_info("persistence", "rdb_bgsave_in_progress", "0");
    call!(&mut con, "BGSAVE").expect("BGSAVE");
    server.wait_for_info("persistence", "rdb_changes_since_last_save", "0");
    server.wait_for_info("persistence", "rdb_bgsave_in_progress", "0");
    assert_eq!(
        server
            .info_field("persistence", "rdb_last_bgsave_status")
            .as_deref(),
        Some("ok")
    );
    drop(con);
    server.restart();
    let mut con = server.conn();
    verify(&mut con, &population, "BGSAVE + restart");
}

#[test]
fn tokens_rise_after_an_rdb_restart_with_every_lock_released() {
    let mut server = Server::start();
    let mut con = server.conn();
    // With a promotion's lead (10 min ahead of the clock), which the RDB file must keep.
    promote(&mut con);
    let mut max = 0;
    for key in ["x", "y", "z"] {
        max = max.max(acquire(&mut con, key, b"me", TTL));
        assert_eq!(release(&mut con, key, b"me"), 0);
    }
    assert_eq!(int(call!(&mut con, "DBSIZE"), "DBSIZE"), 0);
    ok(call!(&mut con, "SAVE"), "SAVE");
    drop(con);
    server.restart();
    let mut con = server.conn();
    assert_eq!(int(call!(&mut con, "DBSIZE"), "DBSIZE"), 0);
    let next = acquire(&mut con, "x", b"me", TTL);
    assert!(next > max, "token {next} is not above {max}");
    // The lead itself is kept too (less the time the server was down), not just the last
    // token: the tokens go on running ahead of the clock.
    let lead = lead_ms(&mut con);
    assert!(lead > 0, "the promotion's lead was lost");
}

#[test]
fn a_promotions_lead_survives_an_rdb_restart_before_any_token_used_it() {
    // No token was handed out since the promotion: the lead lives only in the RDB's aux data.
    let mut server = Server::start();
    let mut con = server.conn();
    promote(&mut con);
    ok(call!(&mut con, "SAVE"), "SAVE");
    drop(con);
    server.restart();
    let mut con = server.conn();
    let lead = lead_ms(&mut con);
    // Less the time the server was down, which is far below the 10 min lead.
    assert!(lead > 0, "the promotion's lead was lost");
}

#[test]
fn tokens_rise_after_flushall_save_and_restart() {
    let mut server = Server::start();
    let mut con = server.conn();
    let max = acquire(&mut con, "x", b"me", TTL);
    ok(call!(&mut con, "FLUSHALL"), "FLUSHALL");
    ok(call!(&mut con, "SAVE"), "SAVE");
    drop(con);
    server.restart();
    let mut con = server.conn();
    let next = acquire(&mut con, "x", b"me", TTL);
    assert!(next > max, "token {next} is not above {max}");
}

// ---------------------------------------------------------------------------------------
// AOF

#[test]
fn locks_survive_an_aof_restart() {
    let mut server = Server::start_with(&["--appendonly", "yes"]);
    let mut con = server.conn();
    let population = populate(&mut con, "p:");
    drop(con);
    server.restart();
    let mut con = server.conn();
    verify(&mut con, &population, "AOF restart");
}

fn aof_rewrite_then_restart(extra: &[&str], what: &str) {
    let mut server = start_with_aof(extra);
    let mut con = server.conn();
    // Half before the rewrite (in the rewritten base), half after (in the new increment).
    let mut population = populate(&mut con, "p:");
    rewrite_aof(&server, &mut con);
    let later = populate(&mut con, "q:");
    population.held.extend(later.held);
    population.released.extend(later.released);
    population.max_token = population.max_token.max(later.max_token);
    population.string_keys.extend(later.string_keys);
    drop(con);
    server.restart();
    let mut con = server.conn();
    verify(&mut con, &population, what);
}

#[test]
fn locks_survive_an_aof_rewrite_and_restart() {
    aof_rewrite_then_restart(&[], "BGREWRITEAOF + restart");
}

#[test]
fn locks_survive_an_aof_rewrite_without_rdb_preamble_and_restart() {
    aof_rewrite_then_restart(
        &["--aof-use-rdb-preamble", "no"],
        "BGREWRITEAOF (no preamble) + restart",
    );
}

#[test]
fn locks_survive_a_second_aof_restart() {
    // Replaying the AOF must leave a state that replays again the same way.
    let mut server = Server::start_with(&["--appendonly", "yes"]);
    let mut con = server.conn();
    let population = populate(&mut con, "p:");
    drop(con);
    server.restart();
    server.restart();
    let mut con = server.conn();
    verify(&mut con, &population, "two AOF restarts");
}

fn tokens_rise_after_aof_restart_with_every_lock_released(extra: &[&str], rewrite: bool) {
    let mut server = start_with_aof(extra);
    let mut con = server.conn();
    promote(&mut con);
    let mut max = 0;
    for key in ["x", "y", "z"] {
        max = max.max(acquire(&mut con, key, b"me", TTL));
        assert_eq!(release(&mut con, key, b"me"), 0);
    }
    if rewrite {
        rewrite_aof(&server, &mut con);
    }
    drop(con);
    let what = format!("AOF {extra:?} rewrite={rewrite}");
    assert_next_token_above_after_restart(&mut server, max, &what);
}

/// INFO `lock_token_lead_ms`: how far the tokens run ahead of the clock.
fn lead_ms(con: &mut redis::Connection) -> u64 {
    info_field(con, "lock", "lock_token_lead_ms")
        .expect("INFO lock_token_lead_ms")
        .parse()
        .expect("a number")
}

/// Makes the server a replica (of nobody) and promotes it: its tokens then run a split
/// allowance (10 min) ahead of the clock, so a restart that forgot the counter would hand out
/// tokens below the ones before it, however late it comes.
fn promote(con: &mut redis::Connection) {
    ok(
        call!(con, "REPLICAOF", "127.0.0.1", 1),
        "a replica of nobody",
    );
    ok(call!(con, "REPLICAOF", "NO", "ONE"), "promoted");
    assert_eq!(lead_ms(con), 600_000);
}

/// With no lock left, a restart, then a new acquisition gets a token above `max`.
fn assert_next_token_above_after_restart(server: &mut Server, max: i64, what: &str) {
    server.restart();
    let mut con = server.conn();
    assert_eq!(int(call!(&mut con, "DBSIZE"), "DBSIZE"), 0);
    let next = acquire(&mut con, "x", b"me", TTL);
    assert!(next > max, "{what}: token {next} is not above {max}");
}

/// A server with the AOF on and `extra` arguments.
fn start_with_aof(extra: &[&str]) -> Server {
    let mut args = vec!["--appendonly", "yes"];
    args.extend_from_slice(extra);
    Server::start_with(&args)
}

#[test]
fn tokens_rise_after_an_aof_restart_with_every_lock_released() {
    tokens_rise_after_aof_restart_with_every_lock_released(&[], false);
}

#[test]
fn tokens_rise_after_an_aof_rewrite_and_restart_with_every_lock_released() {
    tokens_rise_after_aof_restart_with_every_lock_released(&[], true);
}

#[test]
fn tokens_rise_after_an_aof_rewrite_without_preamble_and_restart_with_every_lock_released() {
    tokens_rise_after_aof_restart_with_every_lock_released(&["--aof-use-rdb-preamble", "no"], true);
}

// ---------------------------------------------------------------------------------------
// DUMP / RESTORE

#[test]
fn dump_and_restore_round_trip_a_lock() {
    let server = Server::start();
    let mut con = server.conn();
    let population = populate(&mut con, "p:");
    for original in &population.held {
        let payload = match call!(&mut con, "DUMP", &original.key).unwrap() {
            Value::BulkString(bytes) => bytes,
            other => panic!("DUMP {}: {other:?}", original.key),
        };
        let copy = format!("{}-copy", original.key);
        ok(
            call!(
                &mut con,
                "RESTORE",
                copy.as_str(),
                original.expiry,
                payload.as_slice(),
                "ABSTTL"
            ),
            "RESTORE",
        );
        let restored = held(&mut con, &copy);
        assert_eq!(
            (
                &restored.owner,
                restored.count,
                restored.token,
                restored.expiry
            ),
            (
                &original.owner,
                original.count,
                original.token,
                original.expiry
            ),
            "RESTORE {copy}"
        );
        // The restored lock works like any other.
        assert_eq!(
            int(
                call!(
                    &mut con,
                    "LOCK.REENTER",
                    copy.as_str(),
                    original.owner.as_slice()
                ),
                "REENTER on the copy"
            ),
            original.count + 1
        );
    }
    let next = acquire(&mut con, "new", b"zed", TTL);
    assert!(next > population.max_token);
}

// ---------------------------------------------------------------------------------------
// Replication

fn sync_replica(master: &mut redis::Connection) {
    // A last write, so that WAIT covers everything propagated before it, whichever client's
    // context propagated it.
    ok(call!(master, "SET", "sync-marker", "1"), "SET");
    let acked = int(call!(master, "WAIT", 1, 5000), "WAIT");
    assert!(acked >= 1, "WAIT 1 5000: {acked} replicas acknowledged");
}

#[test]
fn a_lock_made_permanent_stays_permanent_on_a_replica_and_after_an_aof_restart() {
    let mut master = start_with_aof(&[]);
    let replica = Server::start();
    replica.replicate_from(&master);
    let mut con = master.conn();
    let token = acquire(&mut con, "k", b"a", TTL);
    assert_eq!(int(call!(&mut con, "PERSIST", "k"), "PERSIST"), 1);
    // Lock commands on the permanent lock propagate its state with no expiry (0).
    assert_eq!(int(call!(&mut con, "LOCK.REENTER", "k", "a"), "REENTER"), 2);
    assert_eq!(int(call!(&mut con, "LOCK.REENTER", "k", "a"), "REENTER"), 3);
    assert_eq!(release(&mut con, "k", b"a"), 2);
    assert_eq!(int(call!(&mut con, "WAIT", 1, 10000), "replicas acked"), 1);
    let mut on_replica = replica.conn();
    for (what, con) in [("master", &mut con), ("replica", &mut on_replica)] {
        let info = lock_info(con, "k").unwrap_or_else(|| panic!("held on the {what}"));
        assert_eq!((info.count, info.ttl, info.token), (2, -1, token), "{what}");
        assert_eq!(int(call!(con, "PTTL", "k"), "PTTL"), -1, "{what}");
    }
    master.restart();
    let mut con = master.conn();
    let info = lock_info(&mut con, "k").expect("held after the AOF restart");
    assert_eq!((info.count, info.ttl, info.token), (2, -1, token));
}

#[test]
fn a_replica_ends_in_the_masters_state() {
    let master = Server::start();
    let replica = Server::start();
    let mut m = master.conn();
    let mut r = replica.conn();

    // Before the link: carried by the full sync.
    let before_link = populate(&mut m, "p:");
    replica.replicate_from(&master);

    // After the link: carried by the replication stream.
    let streamed = populate(&mut m, "q:");
    int(
        call!(&mut m, "LOCK.RENEW", "p:a", "alice", TTL + 70_000),
        "RENEW",
    );
    int(call!(&mut m, "LOCK.REENTER", "p:partly", "eve"), "REENTER");
    assert_eq!(release(&mut m, "p:b", b"bob"), 2);
    assert_eq!(release(&mut m, "p:c", b"\x00\xffcarol\r\n"), 1);
    assert_eq!(release(&mut m, "p:c", b"\x00\xffcarol\r\n"), 0);
    // An expiring lock, and a hand-off to a waiter.
    acquire(&mut m, "short", b"sid", 50);
    wait_until("short to expire on the master", || {
        exists(&mut m, "short") == 0
    });
    acquire(&mut m, "handed", b"holder", TTL);
    let mut waiter = master.conn();
    let waiting = std::thread::spawn(move || {
        call!(
            &mut waiter,
            "LOCK.ACQUIRE",
            "handed",
            "waiter",
            TTL,
            "WAIT",
            20_000
        )
    });
    master.wait_for_blocked_clients(1);
    assert_eq!(release(&mut m, "handed", b"holder"), 0);
    let handed_token = int(waiting.join().unwrap(), "waiter");
    // A force release.
    assert_eq!(int(call!(&mut m, "DEL", "q:a"), "DEL"), 1);
    sync_replica(&mut m);

    let mut keys: Vec<String> = before_link
        .held
        .iter()
        .chain(&streamed.held)
        .map(|h| h.key.clone())
        .collect();
    keys.retain(|k| k != "p:c" && k != "q:a");
    keys.push("handed".into());
    for key in &keys {
        let on_master = held(&mut m, key);
        let on_replica = held(&mut r, key);
        assert_eq!(on_replica, on_master, "{key} on the replica");
    }
    assert_eq!(held(&mut r, "handed").token, handed_token);
    assert_eq!(held(&mut r, "handed").owner, b"waiter");
    let gone = before_link
        .released
        .iter()
        .chain(&streamed.released)
        .cloned()
        .chain(["p:c".to_string(), "q:a".to_string(), "short".to_string()]);
    for key in gone {
        assert_eq!(exists(&mut r, &key), 0, "{key} is still on the replica");
    }
    assert_eq!(
        int(call!(&mut r, "DBSIZE"), "DBSIZE"),
        int(call!(&mut m, "DBSIZE"), "DBSIZE"),
        "the replica and the master hold different key counts"
    );

    // The replica refuses writes from clients.
    let refused = error(
        call!(&mut r, "LOCK.ACQUIRE", "p:new", "me", TTL),
        "ACQUIRE on the replica",
    );
    assert!(refused.starts_with("READONLY"), "{refused:?}");

    // Promoted, it hands out tokens above every token of its old master.
    let master_max = keys
        .iter()
        .map(|k| held(&mut m, k).token)
        .chain([before_link.max_token, streamed.max_token, handed_token])
        .max()
        .unwrap();
    ok(call!(&mut r, "REPLICAOF", "NO", "ONE"), "REPLICAOF NO ONE");
    let promoted = acquire(&mut r, "after-promotion", b"me", TTL);
    assert!(
        promoted > master_max,
        "promoted replica's token {promoted} is not above {master_max}"
    );
    assert!(promoted < TOKEN_LIMIT);
}

#[test]
fn a_lock_apply_is_refused_from_a_replicas_normal_client() {
    let master = Server::start();
    let replica = Server::start();
    let mut r = replica.conn();
    replica.replicate_from(&master);
    // A replica refuses every write from a normal client before the module sees it.
    let writes: [&[&str]; 6] = [
        &["LOCK.APPLY", "k", "me", "1", "4102444800000", "5", "5"],
        &["LOCK.TOKENS", "5"],
        &["LOCK.ACQUIRE", "k", "me", "1000"],
        &["LOCK.REENTER", "k", "me"],
        &["LOCK.RENEW", "k", "me", "1000"],
        &["LOCK.RELEASE", "k", "me"],
    ];
    for call in writes {
        let mut command = redis::cmd(call[0]);
        for arg in &call[1..] {
            command.arg(*arg);
        }
        let refused = error(run(&mut r, &command), "a write on the replica");
        assert!(refused.starts_with("READONLY "), "{call:?}: {refused:?}");
    }
    assert_eq!(exists(&mut r, "k"), 0);
    // Reads work there.
    common::nil(call!(&mut r, "LOCK.INFO", "k"), "LOCK.INFO on the replica");
}

fn tokens_rise_after_aof_restart_when_the_last_lock_expired(extra: &[&str], rewrite: bool) {
    let mut server = start_with_aof(extra);
    let mut con = server.conn();
    let max = acquire(&mut con, "x", b"me", 1_000);
    if rewrite {
        rewrite_aof(&server, &mut con);
    }
    wait_until("x to expire", || exists(&mut con, "x") == 0);
    drop(con);
    let what = format!("AOF {extra:?} rewrite={rewrite}, last lock expired");
    assert_next_token_above_after_restart(&mut server, max, &what);
}

#[test]
fn tokens_rise_after_an_aof_restart_when_the_last_lock_expired() {
    tokens_rise_after_aof_restart_when_the_last_lock_expired(&[], false);
}

#[test]
fn tokens_rise_after_an_aof_rewrite_without_preamble_and_restart_when_the_last_lock_expired() {
    tokens_rise_after_aof_restart_when_the_last_lock_expired(
        &["--aof-use-rdb-preamble", "no"],
        true,
    );
}

// ---------------------------------------------------------------------------------------
// What the AOF records

/// The incremental AOF files' bytes, in name order.
fn aof_increments(server: &Server) -> Vec<u8> {
    let dir = server.dir().join("appendonlydir");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.to_string_lossy().ends_with(".incr.aof"))
        .collect();
    names.sort();
    names
        .iter()
        .flat_map(|path| std::fs::read(path).unwrap())
        .collect()
}

fn mentions(haystack: &[u8], needle: &str) -> bool {
    let needle = needle.to_ascii_lowercase();
    haystack
        .to_ascii_lowercase()
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

/// The reply a call that changes nothing must get.
#[derive(Debug)]
enum NoOp {
    Nil,
    Int(i64),
    /// LOCK.INFO of k: held by `a`, count 2.
    HeldByA,
    /// An error starting with this text.
    Error(&'static str),
}

#[test]
fn the_aof_records_effects_and_nothing_for_refused_or_failed_calls() {
    // `always`: every write reaches the file before the reply.
    let server = Server::start_with(&["--appendonly", "yes", "--appendfsync", "always"]);
    let mut con = server.conn();
    acquire(&mut con, "k", b"a", TTL);
    acquire(&mut con, "k", b"a", TTL);
    int(call!(&mut con, "LOCK.REENTER", "k", "a", TTL), "REENTER");
    int(call!(&mut con, "LOCK.RENEW", "k", "a", TTL), "RENEW");
    assert_eq!(release(&mut con, "k", b"a"), 2);
    ok(call!(&mut con, "SET", "s", "v"), "SET");
    let aof = aof_increments(&server);
    assert!(mentions(&aof, "LOCK.APPLY"), "no LOCK.APPLY in the AOF");
    for input in ["LOCK.ACQUIRE", "LOCK.REENTER", "LOCK.RENEW", "LOCK.RELEASE"] {
        assert!(
            !mentions(&aof, input),
            "the AOF holds the client's {input}, not its effect"
        );
    }

    let size = aof.len();
    // Each call with the reply the README gives it: none of them changes anything.
    let no_ops: Vec<(Vec<&str>, NoOp)> = vec![
        (vec!["LOCK.ACQUIRE", "k", "b", "1000"], NoOp::Nil),
        (
            vec!["LOCK.ACQUIRE", "k", "b", "1000", "WAIT", "20"],
            NoOp::Nil,
        ),
        (vec!["LOCK.REENTER", "k", "b"], NoOp::Nil),
        (vec!["LOCK.RENEW", "k", "b", "1000"], NoOp::Int(0)),
        (vec!["LOCK.RELEASE", "k", "b"], NoOp::Nil),
        (vec!["LOCK.RELEASE", "free", "a"], NoOp::Nil),
        (vec!["LOCK.REENTER", "free", "a"], NoOp::Nil),
        (vec!["LOCK.RENEW", "free", "a", "1000"], NoOp::Int(0)),
        (vec!["LOCK.INFO", "k"], NoOp::HeldByA),
        (
            vec!["LOCK.ACQUIRE", "k", "a", "0"],
            NoOp::Error("ERR invalid ttl in 'lock.acquire' command"),
        ),
        (
            vec!["LOCK.ACQUIRE", "k", "a"],
            NoOp::Error("ERR wrong number of arguments for 'lock.acquire' command"),
        ),
        (
            vec!["LOCK.ACQUIRE", "k", "a", "10", "NX"],
            NoOp::Error("ERR unknown option 'NX' in 'lock.acquire' command"),
        ),
        (
            vec!["LOCK.ACQUIRE", "s", "a", "1000"],
            NoOp::Error("WRONGTYPE "),
        ),
        (vec!["LOCK.RELEASE", "s", "a"], NoOp::Error("WRONGTYPE ")),
        (
            vec!["LOCK.APPLY", "k", "b", "1", "4102444800000", "9", "9"],
            NoOp::Error("ERR 'lock.apply' is internal"),
        ),
    ];
    for (call, expected) in &no_ops {
        let mut command = redis::cmd(call[0]);
        for arg in &call[1..] {
            command.arg(*arg);
        }
        let reply = run(&mut con, &command);
        match (expected, &reply) {
            (NoOp::Nil, Ok(redis::Value::Nil)) => {}
            (NoOp::Int(n), Ok(redis::Value::Int(got))) if got == n => {}
            (NoOp::HeldByA, Ok(value))
                if common::LockInfo::parse(value)
                    .is_some_and(|info| (info.owner.as_slice(), info.count) == (&b"a"[..], 2)) => {}
            (NoOp::Error(prefix), Err(text)) if text.starts_with(prefix) => {}
            _ => panic!("{call:?}: expected {expected:?}, got {reply:?}"),
        }
        assert_eq!(
            aof_increments(&server).len(),
            size,
            "{call:?} wrote to the AOF"
        );
    }

    assert_eq!(release(&mut con, "k", b"a"), 1);
    assert_eq!(release(&mut con, "k", b"a"), 0);
    let aof = aof_increments(&server);
    assert!(
        mentions(&aof[size..], "DEL"),
        "the final release did not log a DEL"
    );
}
