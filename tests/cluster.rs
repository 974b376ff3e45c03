//! Fencing tokens over a cluster's life, on real servers on loopback: a Redis Cluster of three
//! masters and three replicas (routing, a master killed and replaced, slots moved with and
//! without keys), Sentinel failovers, and many promotions in a row.
//!
//! Every wait is bounded; every server is this test's own and stopped by its own pid.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{acquire, error, free_port, int, lock_info, nil, ok, release, run, Options, Server};
use redis::Value;

/// Failure detection and elections take a few node timeouts: bound the waits for them.
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(60);
/// The promotion jump (core/state/tokens.rs DEFAULT_SPLIT_ALLOWANCE_MS) in tokens.
const PROMOTION_JUMP: i64 = 600_000 << 10;
/// The ttl of every lock these tests take: longer than any of them runs.
const TTL: u64 = 600_000;

fn wait_long(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + FAILOVER_TIMEOUT;
    while !condition() {
        if Instant::now() > deadline {
            panic!("timed out after {FAILOVER_TIMEOUT:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn signal(server: &Server, name: &str) {
    let pid = server.pid().expect("a running server").to_string();
    let status = Command::new("kill")
        .args([&format!("-{name}"), &pid])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{name} {pid}");
}

/// A cluster node: a server with cluster mode on, its bus on a port of its own.
struct Node {
    server: Server,
    bus_port: u16,
    id: String,
}

impl Node {
    fn start() -> Node {
        let bus_port = free_port().to_string();
        let server = Server::start_with(&[
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            "1000",
            "--cluster-port",
            &bus_port,
            // A replica may take over whatever the age of its data (the kill test stalls it).
            "--cluster-replica-validity-factor",
            "0",
            "--repl-diskless-sync-delay",
            "0",
        ]);
        let mut con = server.conn();
        let id = match run(&mut con, redis::cmd("CLUSTER").arg("MYID")) {
            Ok(value) => common::text(&value).expect("CLUSTER MYID is a string"),
            Err(e) => panic!("CLUSTER MYID: {e}"),
        };
        Node {
            server,
            bus_port: bus_port.parse().expect("port"),
            id,
        }
    }

    fn con(&self) -> redis::Connection {
        self.server.conn()
    }

    fn cluster_info(&self, field: &str) -> Option<String> {
        let mut con = self.con();
        let info = run(&mut con, redis::cmd("CLUSTER").arg("INFO")).ok()?;
        common::text(&info)?.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            (key == field).then(|| value.trim().to_string())
        })
    }

    /// The nodes this one knows, handshakes in progress left out.
    fn known_nodes(&self) -> usize {
        let mut con = self.con();
        match run(&mut con, redis::cmd("CLUSTER").arg("NODES")) {
            Ok(value) => common::text(&value).map_or(0, |nodes| count_known(&nodes)),
            Err(_) => 0,
        }
    }

    fn role(&self) -> Option<String> {
        self.server.info_field("replication", "role")
    }
}

/// The lines of a CLUSTER NODES reply whose flags (third field) show no handshake.
fn count_known(nodes: &str) -> usize {
    nodes
        .lines()
        .filter(|line| {
            line.split(' ')
                .nth(2)
                .is_some_and(|flags| !flags.contains("handshake"))
        })
        .count()
}

/// Masters and their replicas (`replicas[i]` replicates `masters[i]`), with the slots split
/// evenly among the masters.
struct Cluster {
    masters: Vec<Node>,
    replicas: Vec<Node>,
}

impl Cluster {
    fn start(masters: usize) -> Cluster {
        let masters: Vec<Node> = (0..masters).map(|_| Node::start()).collect();
        let replicas: Vec<Node> = (0..masters.len()).map(|_| Node::start()).collect();
        let meet_all = || {
            let mut first = masters[0].con();
            for node in masters.iter().chain(&replicas).skip(1) {
                let meet = redis::cmd("CLUSTER")
                    .arg("MEET")
                    .arg("127.0.0.1")
                    .arg(node.server.port())
                    .arg(node.bus_port)
                    .clone();
                ok(run(&mut first, &meet), "CLUSTER MEET");
            }
        };
        meet_all();
        let per_master = 16384 / masters.len();
        for (i, master) in masters.iter().enumerate() {
            let low = i * per_master;
            let high = if i + 1 == masters.len() {
                16383
            } else {
                low + per_master - 1
            };
            let mut con = master.con();
            let add = redis::cmd("CLUSTER")
                .arg("ADDSLOTSRANGE")
                .arg(low)
                .arg(high)
                .clone();
            ok(run(&mut con, &add), "CLUSTER ADDSLOTSRANGE");
        }
        // A handshake not finished within the node timeout is dropped (a loaded machine is slow
        // enough): meet again until every node knows every other.
        let all = masters.len() * 2;
        let mut last_meet = Instant::now();
        wait_long("every node to know every other", || {
            if masters
                .iter()
                .chain(&replicas)
                .all(|node| node.known_nodes() == all)
            {
                return true;
            }
            if last_meet.elapsed() > Duration::from_secs(2) {
                meet_all();
                last_meet = Instant::now();
            }
            false
        });
        for (replica, master) in replicas.iter().zip(&masters) {
            let mut con = replica.con();
            let replicate = redis::cmd("CLUSTER")
                .arg("REPLICATE")
                .arg(&master.id)
                .clone();
            ok(run(&mut con, &replicate), "CLUSTER REPLICATE");
        }
        let cluster = Cluster { masters, replicas };
        for node in cluster.masters.iter().chain(&cluster.replicas) {
            wait_long("cluster_state:ok on every node", || {
                node.cluster_info("cluster_state").as_deref() == Some("ok")
            });
        }
        for replica in &cluster.replicas {
            wait_long("every replica's link to its master", || {
                replica
                    .server
                    .info_field("replication", "master_link_status")
                    .as_deref()
                    == Some("up")
            });
        }
        cluster
    }

    fn slot_of(&self, key: &str) -> i64 {
        let mut con = self.masters[0].con();
        int(
            run(&mut con, redis::cmd("CLUSTER").arg("KEYSLOT").arg(key)),
            "CLUSTER KEYSLOT",
        )
    }

    /// The slot range master `index` was given.
    fn slots_of(&self, index: usize) -> std::ops::RangeInclusive<i64> {
        let per_master = 16384 / self.masters.len() as i64;
        let low = index as i64 * per_master;
        let high = if index + 1 == self.masters.len() {
            16383
        } else {
            low + per_master - 1
        };
        low..=high
    }

    /// `count` keys named `prefix:N` whose slots master `index` was given.
    fn keys_of(&self, index: usize, prefix: &str, count: usize) -> Vec<String> {
        let slots = self.slots_of(index);
        (0..)
            .map(|n| format!("{prefix}:{n}"))
            .filter(|key| slots.contains(&self.slot_of(key)))
            .take(count)
            .collect()
    }
}

fn wait_replicas(con: &mut redis::Connection, n: i64) {
    let acked = int(run(con, redis::cmd("WAIT").arg(n).arg(10_000)), "WAIT");
    assert_eq!(acked, n, "replicas that acknowledged");
}

/// Moves `slot` from `from` to `to` the way resharding does (IMPORTING, MIGRATING, then NODE on
/// every master), migrating `keys` in between.
fn move_slot(cluster_masters: &[&Node], slot: i64, from: &Node, to: &Node, keys: &[&str]) {
    let setslot = |node: &Node, args: &[&str]| {
        let mut con = node.con();
        let mut cmd = redis::cmd("CLUSTER");
        cmd.arg("SETSLOT").arg(slot);
        for arg in args {
            cmd.arg(*arg);
        }
        ok(run(&mut con, &cmd), "CLUSTER SETSLOT");
    };
    setslot(to, &["IMPORTING", &from.id]);
    setslot(from, &["MIGRATING", &to.id]);
    for key in keys {
        let mut con = from.con();
        let migrate = redis::cmd("MIGRATE")
            .arg("127.0.0.1")
            .arg(to.server.port())
            .arg(*key)
            .arg(0)
            .arg(10_000)
            .clone();
        ok(run(&mut con, &migrate), "MIGRATE");
    }
    for node in cluster_masters {
        setslot(node, &["NODE", &to.id]);
    }
}

#[test]
fn a_killed_masters_replica_keeps_the_replicated_locks_and_grants_above_every_earlier_token() {
    let cluster = Cluster::start(3);

    // Locks spread over every master; a key sent to the wrong master is redirected.
    // The granting connections are kept: WAIT counts the replicas that acknowledged what the
    // connection it runs on propagated, so a fresh connection's WAIT proves nothing.
    let mut held = Vec::new();
    let mut granting: Vec<_> = cluster.masters.iter().map(|master| master.con()).collect();
    for (i, con) in granting.iter_mut().enumerate() {
        for key in cluster.keys_of(i, &format!("spread{i}"), 3) {
            let token = acquire(con, &key, "holder", TTL);
            held.push((i, key, token));
        }
    }
    let elsewhere = &held
        .iter()
        .find(|(i, _, _)| *i == 1)
        .expect("a key of master 1")
        .1;
    let mut con0 = granting.swap_remove(0);
    let moved = error(
        run(
            &mut con0,
            redis::cmd("LOCK.ACQUIRE").arg(elsewhere).arg("x").arg(1000),
        ),
        "LOCK.ACQUIRE on the wrong master",
    );
    let expected = format!(
        "MOVED {} 127.0.0.1:{}",
        cluster.slot_of(elsewhere),
        cluster.masters[1].server.port()
    );
    assert_eq!(moved, expected);
    wait_replicas(&mut con0, 1);

    // Grants that never reach the replica: it is stopped and its link cut (so nothing of them
    // waits in a socket buffer) while master 0 hands them out, and master 0 dies after.
    signal(&cluster.replicas[0].server, "STOP");
    let cut = int(
        run(
            &mut con0,
            redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg("replica"),
        ),
        "CLIENT KILL TYPE replica",
    );
    assert_eq!(cut, 1);
    let lost_keys = cluster.keys_of(0, "unreplicated", 5);
    let mut highest_on_old_master = held
        .iter()
        .filter(|(i, _, _)| *i == 0)
        .map(|(_, _, token)| *token)
        .max()
        .expect("tokens of master 0");
    for key in &lost_keys {
        highest_on_old_master = highest_on_old_master.max(acquire(&mut con0, key, "doomed", TTL));
    }
    signal(&cluster.masters[0].server, "KILL");
    signal(&cluster.replicas[0].server, "CONT");
    let promoted = &cluster.replicas[0];
    wait_long("the replica of the killed master to take over", || {
        promoted.role().as_deref() == Some("master")
    });
    for node in cluster.masters[1..].iter().chain(&cluster.replicas) {
        wait_long("cluster_state:ok on every live node", || {
            node.cluster_info("cluster_state").as_deref() == Some("ok")
        });
    }

    // Every replicated lock of that shard is intact; every other shard is untouched.
    for (i, key, token) in &held {
        let node = if *i == 0 {
            promoted
        } else {
            &cluster.masters[*i]
        };
        let mut con = node.con();
        let info = lock_info(&mut con, key).unwrap_or_else(|| panic!("{key} is gone"));
        assert_eq!(info.stable(), (b"holder".to_vec(), 1, *token, 0), "{key}");
    }
    // The new master's tokens exceed every token the old one granted, replicated or not.
    let mut con = promoted.con();
    for key in &lost_keys {
        assert!(
            lock_info(&mut con, key).is_none(),
            "{key} never reached the replica"
        );
        let token = acquire(&mut con, key, "successor", TTL);
        assert!(
            token > highest_on_old_master,
            "{key}: {token} after {highest_on_old_master}"
        );
    }
}

#[test]
fn a_slot_moved_without_keys_keeps_tokens_rising_even_from_a_freshly_promoted_master() {
    let cluster = Cluster::start(2);
    // A planned failover: replica 0 takes over master 0's slots, its tokens now lead the clock.
    let promoted = &cluster.replicas[0];
    let mut con = promoted.con();
    ok(
        run(&mut con, redis::cmd("CLUSTER").arg("FAILOVER")),
        "CLUSTER FAILOVER",
    );
    wait_long("the planned failover", || {
        promoted.role().as_deref() == Some("master")
            && cluster.masters[0].role().as_deref() == Some("slave")
    });

    let key = &cluster.keys_of(0, "moving", 1)[0];
    let mut before_move = Vec::new();
    for owner in ["o1", "o2"] {
        before_move.push(acquire(&mut con, key, owner, TTL));
        assert_eq!(release(&mut con, key, owner), 0);
    }
    let receiver = &cluster.masters[1];
    let slot = cluster.slot_of(key);
    move_slot(&[promoted, receiver], slot, promoted, receiver, &[]);

    let mut on_receiver = receiver.con();
    let after_move = acquire(&mut on_receiver, key, "o3", TTL);
    assert!(
        after_move > before_move[1] && before_move[1] > before_move[0],
        "tokens for {key}: {before_move:?} then {after_move}"
    );
    // The old node redirects the key now.
    let moved = error(
        run(
            &mut con,
            redis::cmd("LOCK.ACQUIRE").arg(key).arg("o4").arg(1000),
        ),
        "LOCK.ACQUIRE on the old node",
    );
    assert_eq!(
        moved,
        format!("MOVED {slot} 127.0.0.1:{}", receiver.server.port())
    );
}

#[test]
fn migrate_carries_a_held_lock_with_its_token_and_answers_the_waiter_left_behind() {
    let cluster = Cluster::start(2);
    let source = &cluster.masters[0];
    let target = &cluster.masters[1];
    let key = cluster.keys_of(0, "migrating", 1).remove(0);
    let mut holder = source.con();
    let token = acquire(&mut holder, &key, "holder", TTL);

    let waiter_key = key.clone();
    let mut waiter_con = source.con();
    let waiter = std::thread::spawn(move || {
        run(
            &mut waiter_con,
            redis::cmd("LOCK.ACQUIRE")
                .arg(&waiter_key)
                .arg("waiter")
                .arg(600_000)
                .arg("WAIT")
                .arg(60_000),
        )
    });
    source.server.wait_for_blocked_clients(1);
    let slot = cluster.slot_of(&key);
    move_slot(&[source, target], slot, source, target, &[&key]);

    // The waiter is answered (nil): its retry is redirected to the lock's new node.
    nil(
        waiter.join().expect("waiter thread"),
        "the waiter left behind",
    );
    let mut retry = source.con();
    let moved = error(
        run(
            &mut retry,
            redis::cmd("LOCK.ACQUIRE").arg(&key).arg("waiter").arg(1000),
        ),
        "the waiter's retry",
    );
    assert_eq!(
        moved,
        format!("MOVED {slot} 127.0.0.1:{}", target.server.port())
    );
    let mut on_target = target.con();
    let info = lock_info(&mut on_target, &key).expect("the lock moved with its key");
    assert_eq!(info.stable(), (b"holder".to_vec(), 1, token, 0));
    assert_eq!(release(&mut on_target, &key, "holder"), 0);
    assert!(acquire(&mut on_target, &key, "next", TTL) > token);
}

/// Makes the server a replica of `nowhere` (a port nobody serves) and a master again: a
/// promotion that needs no sync.
fn promote_from_nowhere(con: &mut redis::Connection, nowhere: u16) {
    ok(
        run(con, redis::cmd("REPLICAOF").arg("127.0.0.1").arg(nowhere)),
        "REPLICAOF",
    );
    ok(
        run(con, redis::cmd("REPLICAOF").arg("NO").arg("ONE")),
        "REPLICAOF NO ONE",
    );
}

#[test]
fn hundreds_of_promotions_keep_tokens_rising_and_lock_grants_working() {
    let server = Server::start();
    let mut con = server.conn();
    // A master that is never there: turning into its replica and back needs no sync.
    let nowhere = free_port();
    let mut previous = acquire(&mut con, "k", "o", TTL);
    assert_eq!(release(&mut con, "k", "o"), 0);
    for round in 0..300 {
        promote_from_nowhere(&mut con, nowhere);
        let token = acquire(&mut con, "k", "o", TTL);
        assert!(
            token >= previous + PROMOTION_JUMP,
            "promotion {round}: {token} after {previous}"
        );
        assert!(token < 1 << 53);
        assert_eq!(release(&mut con, "k", "o"), 0);
        previous = token;
    }
    // INFO shows the jumps as the tokens' lead over the clock: 300 promotions of 10 minutes,
    // less the time the loop took.
    let lead_ms: i64 = server
        .info_field("lock", "lock_token_lead_ms")
        .expect("INFO lock has lock_token_lead_ms")
        .parse()
        .expect("a number");
    assert!(
        lead_ms > 299 * 600_000 && lead_ms <= 300 * 600_000,
        "lead {lead_ms} ms"
    );
}

/// A Sentinel watching `master_port` as `rlock`, quorum 2. Sentinel rewrites its config file:
/// it gets one of its own, removed with the guard.
struct Sentinel {
    server: Server,
    config: std::path::PathBuf,
}

impl Sentinel {
    fn start(master_port: u16) -> Sentinel {
        let config = std::env::temp_dir().join(format!(
            "rlock-sentinel-{}.conf",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::write(
            &config,
            format!(
                "sentinel monitor rlock 127.0.0.1 {master_port} 2\n\
                 sentinel down-after-milliseconds rlock 1000\n\
                 sentinel failover-timeout rlock 10000\n"
            ),
        )
        .expect("write the sentinel config");
        let server = Server::start_options(Options {
            load_module: false,
            config_file: Some(config.clone()),
            args: vec!["--sentinel".into()],
            ..Options::default()
        });
        Sentinel { server, config }
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.config);
    }
}

fn sentinel_master_port(sentinel: &Sentinel) -> Option<u16> {
    let mut con = sentinel.server.conn();
    let reply = run(
        &mut con,
        redis::cmd("SENTINEL")
            .arg("GET-MASTER-ADDR-BY-NAME")
            .arg("rlock"),
    )
    .ok()?;
    match reply {
        Value::Array(parts) => common::text(parts.get(1)?)?.parse().ok(),
        _ => None,
    }
}

#[test]
fn two_sentinel_failovers_in_a_row_keep_every_lock_and_the_token_order() {
    let servers: Vec<Server> = (0..3)
        .map(|_| Server::start_with(&["--repl-diskless-sync-delay", "0"]))
        .collect();
    for replica in &servers[1..] {
        replica.replicate_from(&servers[0]);
    }
    let sentinels: Vec<Sentinel> = (0..3).map(|_| Sentinel::start(servers[0].port())).collect();
    for s in &sentinels {
        wait_long("each sentinel to see both replicas", || {
            let mut con = s.server.conn();
            matches!(
                run(&mut con, redis::cmd("SENTINEL").arg("REPLICAS").arg("rlock")),
                Ok(Value::Array(ref replicas)) if replicas.len() == 2
            )
        });
    }
    let by_port = |port: u16| {
        servers
            .iter()
            .find(|s| s.port() == port)
            .expect("a known server")
    };

    let mut master = &servers[0];
    let mut held: Vec<(String, i64)> = Vec::new();
    for failover in 0..2 {
        wait_long("the master's two replicas", || {
            master
                .info_field("replication", "connected_slaves")
                .as_deref()
                == Some("2")
        });
        let mut con = master.conn();
        let key = format!("lock{failover}");
        let token = acquire(&mut con, &key, "holder", TTL);
        if let Some((_, previous)) = held.last() {
            assert!(token > *previous, "{token} after {previous}");
        }
        held.push((key, token));
        wait_replicas(&mut con, 2);

        // Right after a failover the sentinel may not have re-read the new replicas yet
        // (NOGOODSLAVE) or may still be finishing (INPROG): ask again until it starts.
        let mut to_sentinel = sentinels[0].server.conn();
        wait_long("the sentinel to start a failover", || {
            let reply = run(
                &mut to_sentinel,
                redis::cmd("SENTINEL").arg("FAILOVER").arg("rlock"),
            );
            match reply {
                Ok(Value::Okay) => true,
                Err(e) if e.starts_with("NOGOODSLAVE") || e.starts_with("INPROG") => false,
                other => panic!("SENTINEL FAILOVER answered {other:?}"),
            }
        });
        let old = master.port();
        wait_long("the sentinel's failover", || {
            sentinel_master_port(&sentinels[0]).is_some_and(|port| {
                port != old
                    && by_port(port).info_field("replication", "role").as_deref() == Some("master")
            })
        });
        master = by_port(sentinel_master_port(&sentinels[0]).expect("a new master"));
        let mut on_new = master.conn();
        for (key, token) in &held {
            let info = lock_info(&mut on_new, key).unwrap_or_else(|| panic!("{key} lost"));
            assert_eq!(info.stable(), (b"holder".to_vec(), 1, *token, 0), "{key}");
        }
    }
    let mut con = master.conn();
    let last = acquire(&mut con, "after", "holder", TTL);
    assert!(held.iter().all(|(_, token)| last > *token));
}

#[test]
fn an_old_master_granting_after_its_replica_took_over_stays_below_the_new_master() {
    let master = Server::start_with(&["--repl-diskless-sync-delay", "0"]);
    let replica = Server::start_with(&["--repl-diskless-sync-delay", "0"]);
    replica.replicate_from(&master);
    let mut on_old = master.conn();
    let mut on_new = replica.conn();
    let before = acquire(&mut on_old, "before", "holder", TTL);
    wait_replicas(&mut on_old, 1);

    // A split brain as Sentinel makes one without min-replicas-to-write: the replica is
    // promoted while the old master goes on serving its clients.
    ok(
        run(&mut on_new, redis::cmd("REPLICAOF").arg("NO").arg("ONE")),
        "REPLICAOF NO ONE",
    );
    let keys: Vec<String> = (0..5).map(|i| format!("split:{i}")).collect();
    let new_side: Vec<i64> = keys
        .iter()
        .map(|key| acquire(&mut on_new, key, "new-side", TTL))
        .collect();
    // Later in time than every grant above, for the same keys: still below them.
    for (key, new_token) in keys.iter().zip(&new_side) {
        let old_token = acquire(&mut on_old, key, "old-side", TTL);
        assert!(
            *new_token > old_token && old_token > before,
            "{key}: new side {new_token}, old side {old_token}, before {before}"
        );
    }

    // Healing: the old master follows the new one and counts the locks its data lost.
    ok(
        run(
            &mut on_old,
            redis::cmd("REPLICAOF").arg("127.0.0.1").arg(replica.port()),
        ),
        "REPLICAOF",
    );
    master.wait_for_info("replication", "master_link_status", "up");
    master.wait_for_info("lock", "lock_dropped_on_resync", "6");
    for key in &keys {
        nil(
            run(
                &mut on_new,
                redis::cmd("LOCK.RELEASE").arg(key).arg("old-side"),
            ),
            "the old side's release",
        );
    }
    let info = lock_info(&mut on_new, "before").expect("the replicated lock survived");
    assert_eq!(info.stable(), (b"holder".to_vec(), 1, before, 0));
}

#[test]
fn a_promotions_lead_survives_a_reload_and_an_aof_restart() {
    let mut server = Server::start_with(&["--appendonly", "yes", "--enable-debug-command", "yes"]);
    let mut con = server.conn();
    let nowhere = free_port();
    promote_from_nowhere(&mut con, nowhere);
    let lead = || server_lead(&server);
    assert_eq!(lead(), 600_000, "a fresh server's first promotion");
    ok(
        run(&mut con, redis::cmd("DEBUG").arg("RELOAD")),
        "DEBUG RELOAD",
    );
    assert_eq!(lead(), 600_000, "after DEBUG RELOAD");
    // From the AOF alone (its RDB base predates the promotion) the lead comes back less the
    // time the server was down: LOCK.TOKENS carried the floor.
    drop(con);
    server.restart();
    let lead = server_lead(&server);
    assert!(lead > 0 && lead <= 600_000, "after a restart: {lead}");
}

fn server_lead(server: &Server) -> i64 {
    server
        .info_field("lock", "lock_token_lead_ms")
        .expect("INFO lock has lock_token_lead_ms")
        .parse()
        .expect("a number")
}

#[test]
fn the_split_allowance_is_a_config_that_refuses_bad_values() {
    let server = Server::start_with(&["--lock.split-allowance-ms", "5000"]);
    let mut con = server.conn();
    let nowhere = free_port();
    promote_from_nowhere(&mut con, nowhere);
    assert_eq!(server_lead(&server), 5000);
    for bad in ["999", "86400001", "-1", "ten"] {
        error(
            run(
                &mut con,
                redis::cmd("CONFIG")
                    .arg("SET")
                    .arg("lock.split-allowance-ms")
                    .arg(bad),
            ),
            "a split allowance out of range",
        );
    }
    ok(
        run(
            &mut con,
            redis::cmd("CONFIG")
                .arg("SET")
                .arg("lock.split-allowance-ms")
                .arg(60_000),
        ),
        "CONFIG SET",
    );
    // Each promotion adds the allowance in force to the lead.
    promote_from_nowhere(&mut con, nowhere);
    assert_eq!(server_lead(&server), 5000 + 60_000);
}

#[test]
fn several_keys_must_share_a_slot_and_hash_tags_make_them_share_one() {
    let cluster = Cluster::start(2);
    let node = &cluster.masters[0];
    let mut con = node.con();
    // Keys of the first master's slots with one hash tag: one slot, taken in one step.
    let tag = cluster.keys_of(0, "tag", 1).remove(0);
    let (a, b) = (format!("{{{tag}}}:from"), format!("{{{tag}}}:to"));
    let got = run(
        &mut con,
        redis::cmd("LOCK.MACQUIRE")
            .arg(2)
            .arg(&a)
            .arg(&b)
            .arg("t")
            .arg(TTL),
    );
    match got {
        Ok(redis::Value::Array(tokens)) => assert_eq!(tokens.len(), 2),
        other => panic!("{other:?}"),
    }
    // Two keys of different slots: CROSSSLOT, nothing taken.
    let (x, y) = ("x:1", "y:2");
    assert_ne!(cluster.slot_of(x), cluster.slot_of(y));
    let refused = error(
        run(
            &mut con,
            redis::cmd("LOCK.MACQUIRE")
                .arg(2)
                .arg(x)
                .arg(y)
                .arg("t")
                .arg(TTL),
        ),
        "keys of two slots",
    );
    assert!(refused.starts_with("CROSSSLOT"), "{refused}");

    // MIGRATE of one key while a several-key request waits: the waiter is answered nil
    // (retrying, it is redirected to where the key went).
    let waiter_keys = (a.clone(), b.clone());
    let mut waiter_con = node.con();
    let waiter = std::thread::spawn(move || {
        run(
            &mut waiter_con,
            redis::cmd("LOCK.MACQUIRE")
                .arg(2)
                .arg(&waiter_keys.0)
                .arg(&waiter_keys.1)
                .arg("w")
                .arg(TTL)
                .arg("WAIT")
                .arg(60_000),
        )
    });
    node.server.wait_for_blocked_clients(1);
    let slot = cluster.slot_of(&a);
    move_slot(
        &[node, &cluster.masters[1]],
        slot,
        node,
        &cluster.masters[1],
        &[&a, &b],
    );
    nil(
        waiter.join().expect("waiter thread"),
        "the waiter left behind",
    );
}
