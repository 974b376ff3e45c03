//! rlock skips propagating its effects while nothing listens (no AOF, no replica, no
//! backlog), as Redis itself would drop them. These tests pin that nothing is lost when a
//! listener appears afterwards: a replica attaching, or the AOF switched on at runtime.

mod common;

use std::fs;

use common::{info_field, int, lock_info, ok, run, server_ms, wait_until, Server};

fn replication_idle(server: &Server) -> bool {
    match server
        .info_field("lock", "lock_replication_idle")
        .as_deref()
    {
        Some("1") => true,
        Some("0") => false,
        other => panic!("INFO lock_replication_idle: {other:?}"),
    }
}

#[test]
fn a_master_with_no_listeners_goes_idle() {
    let server = Server::start();
    wait_until("INFO lock_replication_idle:1", || replication_idle(&server));
}

#[test]
fn a_replica_attaching_to_an_idle_master_gets_every_later_change() {
    let master = Server::start();
    wait_until("the master to go idle", || replication_idle(&master));
    let mut con = master.conn();
    let before = int(
        call!(&mut con, "LOCK.ACQUIRE", "before", "a", 600000),
        "acquire",
    );

    let replica = Server::start();
    replica.replicate_from(&master);
    assert!(!replication_idle(&master), "a replica is attached");

    let after = int(
        call!(&mut con, "LOCK.ACQUIRE", "after", "b", 600000),
        "acquire",
    );
    assert_eq!(
        int(call!(&mut con, "LOCK.REENTER", "before", "a"), "reenter"),
        2
    );
    let gone = int(
        call!(&mut con, "LOCK.ACQUIRE", "gone", "c", 600000),
        "acquire",
    );
    assert!(gone > after, "tokens rise: {gone} after {after}");
    assert_eq!(
        int(call!(&mut con, "LOCK.RELEASE", "gone", "c"), "release"),
        0
    );
    assert_eq!(int(call!(&mut con, "WAIT", 1, 10000), "replicas acked"), 1);

    let on_replica = |key: &str| {
        lock_info(&mut replica.conn(), key).map(|info| (info.owner, info.count, info.token))
    };
    assert_eq!(on_replica("before"), Some((b"a".to_vec(), 2, before)));
    assert_eq!(on_replica("after"), Some((b"b".to_vec(), 1, after)));
    assert_eq!(on_replica("gone"), None);
}

#[test]
fn switching_the_aof_on_at_runtime_records_later_changes() {
    let server = Server::start();
    wait_until("the server to go idle", || replication_idle(&server));
    let mut con = server.conn();
    call!(&mut con, "LOCK.ACQUIRE", "early", "a", 600000).expect("acquire");
    ok(
        call!(&mut con, "CONFIG", "SET", "appendonly", "yes"),
        "appendonly yes",
    );
    server.wait_for_info("persistence", "aof_rewrite_in_progress", "0");
    server.wait_for_info("persistence", "aof_rewrite_scheduled", "0");
    call!(&mut con, "LOCK.ACQUIRE", "late", "b", 600000).expect("acquire");
    let aof_dir = server.dir().join("appendonlydir");
    wait_until("the incremental AOF to record the late lock", || {
        fs::read_dir(&aof_dir)
            .into_iter()
            .flatten()
            .flatten()
            .any(|entry| {
                let name = entry.file_name().to_string_lossy().into_owned();
                name.ends_with(".incr.aof")
                    && fs::read(entry.path()).is_ok_and(|bytes| {
                        let text = String::from_utf8_lossy(&bytes);
                        text.contains("LOCK.APPLY") && text.contains("late")
                    })
            })
    });
}

/// Acquires, reenters, renews and releases a lock, and checks that each counted as a change
/// toward the RDB save points (INFO `rdb_changes_since_last_save`).
fn assert_lock_changes_are_counted(server: &Server) {
    let mut con = server.conn();
    let changes = |con: &mut redis::Connection| -> i64 {
        info_field(con, "persistence", "rdb_changes_since_last_save")
            .expect("INFO rdb_changes_since_last_save")
            .parse()
            .expect("a number")
    };
    for call in [
        &["LOCK.ACQUIRE", "k", "a", "600000"][..],
        &["LOCK.REENTER", "k", "a"],
        &["LOCK.RENEW", "k", "a", "600000"],
        &["LOCK.RELEASE", "k", "a"],
        &["LOCK.RELEASE", "k", "a"],
    ] {
        let before = changes(&mut con);
        let mut command = redis::cmd(call[0]);
        for arg in &call[1..] {
            command.arg(*arg);
        }
        int(run(&mut con, &command), "lock change");
        assert!(
            changes(&mut con) > before,
            "{call:?} was not counted as a change to save"
        );
    }
}

#[test]
fn lock_changes_count_toward_rdb_save_points() {
    let server = Server::start_with(&["--save", "3600 1"]);
    // The idleness check runs a second after load and every second on: let it run (waiting on
    // the server's clock), then the changes must still be counted. The evidence is the counted
    // changes, not the wait.
    let mut con = server.conn();
    let start = server_ms(&mut con);
    wait_until("1.5 s on the server's clock", || {
        server_ms(&mut con) > start + 1500
    });
    assert!(!replication_idle(&server), "save points listen");
    assert_lock_changes_are_counted(&server);
}

#[test]
fn config_set_save_turns_propagation_back_on() {
    let server = Server::start();
    wait_until("the master to go idle", || replication_idle(&server));
    let mut con = server.conn();
    ok(
        call!(&mut con, "CONFIG", "SET", "save", "3600 1"),
        "CONFIG SET save",
    );
    assert!(
        !replication_idle(&server),
        "save points listen from the CONFIG SET on"
    );
    assert_lock_changes_are_counted(&server);
}

#[test]
fn a_promoted_replica_hands_out_tokens_above_any_its_old_master_could_have() {
    let master = Server::start();
    let replica = Server::start();
    replica.replicate_from(&master);
    let mut to_master = master.conn();
    let mut to_replica = replica.conn();
    int(
        call!(&mut to_master, "LOCK.ACQUIRE", "a", "o", 600000),
        "acquire",
    );
    assert_eq!(int(call!(&mut to_master, "WAIT", 1, 10000), "acked"), 1);
    ok(call!(&mut to_replica, "REPLICAOF", "NO", "ONE"), "promote");
    // The old master goes on handing out tokens the promoted replica never hears of.
    let mut old_master_max = 0;
    for key in ["b", "c", "d"] {
        old_master_max = int(
            call!(&mut to_master, "LOCK.ACQUIRE", key, "o", 600000),
            "old master",
        );
    }
    let promoted = int(
        call!(&mut to_replica, "LOCK.ACQUIRE", "e", "o", 600000),
        "promoted",
    );
    assert!(
        promoted > old_master_max,
        "{promoted} after {old_master_max}"
    );
    assert!(promoted < 1 << 53);
}
