//! The container image (`make image`, the top-level Dockerfile) against real containers: every
//! command, a WAIT handoff, locks kept across a new container on the same volume, a replica in a
//! second container, and protected mode without a password.
//!
//! `make test` sets `RLOCK_IMAGE` to the image it built when a Docker engine runs; without it
//! these tests say that they skipped and pass. Every container, network and volume a test makes
//! has a unique name and is removed by its id when the test ends, also when it fails.

mod common;

use std::io::Read;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{acquire, error, int, lock_info, nil, run, wait_until};

const PASSWORD: &str = "rlock-test-password";

/// The image under test, or None (the test then skips, saying so).
fn image() -> Option<String> {
    let image = std::env::var("RLOCK_IMAGE").ok().filter(|s| !s.is_empty());
    if image.is_none() {
        eprintln!("container test skipped: RLOCK_IMAGE is not set (make test sets it where a Docker engine runs)");
    }
    image
}

/// Runs `docker args...` and returns its trimmed stdout; panics with stderr on failure.
fn docker(args: &[&str]) -> String {
    let output = Command::new("docker")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run docker: {e}"));
    if !output.status.success() {
        panic!(
            "docker {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

fn unique(what: &str) -> String {
    format!("rlock-test-{what}-{}", uuid::Uuid::new_v4().simple())
}

/// A user-defined bridge network of this test's own, removed on drop.
struct Network {
    name: String,
}

impl Network {
    fn create() -> Network {
        let name = unique("net");
        docker(&["network", "create", &name]);
        Network { name }
    }

    /// A network with a /24 of its own, so that a container can keep its address when it is
    /// disconnected and connected again. Returns the network and its prefix ("10.x.y").
    fn create_with_subnet() -> (Network, String) {
        let name = unique("net");
        // A /24 no other network of this engine uses: try a few at random.
        for _ in 0..20 {
            let n = uuid::Uuid::new_v4().as_u128();
            let prefix = format!("10.{}.{}", 200 + (n % 50) as u8, (n >> 8) as u8);
            let created = Command::new("docker")
                .args([
                    "network",
                    "create",
                    "--subnet",
                    &format!("{prefix}.0/24"),
                    &name,
                ])
                .output()
                .expect("run docker");
            if created.status.success() {
                return (Network { name }, prefix);
            }
        }
        panic!("no free /24 for a test network");
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["network", "rm", &self.name])
            .output();
    }
}

/// A named volume of this test's own, removed on drop (after the containers that used it).
struct Volume {
    name: String,
}

impl Volume {
    fn create() -> Volume {
        let name = unique("data");
        docker(&["volume", "create", &name]);
        Volume { name }
    }
}

impl Drop for Volume {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["volume", "rm", "-f", &self.name])
            .output();
    }
}

/// A running container of the image with its port 6379 published on a free loopback port.
struct Container {
    id: String,
    name: String,
    port: u16,
    password: Option<String>,
}

impl Container {
    /// Starts the image on `network` (extra `docker run` options before the image, server
    /// arguments after it) and waits until the server inside answers.
    fn start(
        image: &str,
        network: &Network,
        password: Option<&str>,
        docker_options: &[&str],
        server_args: &[&str],
    ) -> Container {
        let name = unique("redis");
        let mut args = vec![
            "run",
            "-d",
            "--name",
            &name,
            "--network",
            &network.name,
            "-p",
            "127.0.0.1::6379",
        ];
        let password_env = password.map(|p| format!("RLOCK_PASSWORD={p}"));
        if let Some(env) = &password_env {
            args.extend(["-e", env.as_str()]);
        }
        args.extend(docker_options);
        args.push(image);
        args.extend(server_args);
        let id = docker(&args);
        let mut container = Container {
            id,
            name,
            port: 0,
            password: password.map(str::to_string),
        };
        container.port = container.published_port();
        container.wait_ready();
        container
    }

    fn published_port(&self) -> u16 {
        let mapping = docker(&["port", &self.id, "6379/tcp"]);
        mapping
            .lines()
            .find_map(|line| line.strip_prefix("127.0.0.1:"))
            .and_then(|port| port.trim().parse().ok())
            .unwrap_or_else(|| panic!("no loopback port published for 6379: {mapping:?}"))
    }

    fn url(&self) -> String {
        match &self.password {
            Some(password) => format!("redis://:{password}@127.0.0.1:{}/", self.port),
            None => format!("redis://127.0.0.1:{}/", self.port),
        }
    }

    fn conn(&self) -> redis::Connection {
        let client = redis::Client::open(self.url()).expect("client");
        let con = client
            .get_connection_with_timeout(Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("connect to container {}: {e}", self.name));
        con.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("read timeout");
        con
    }

    /// The server inside answers PING (with the password, if any) or, in protected mode, from
    /// inside the container.
    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.redis_cli_inside(&["PING"]).as_deref() == Some("PONG") {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "container {} did not answer within 30 s; its log:\n{}",
            self.name,
            self.logs()
        );
    }

    /// `redis-cli` run inside the container (its loopback): its output, replies and error
    /// replies alike (reachable even when the container has no network at all).
    fn cli(&self, command: &[&str]) -> String {
        let mut args = vec!["exec", self.id.as_str(), "redis-cli", "--no-auth-warning"];
        if let Some(password) = &self.password {
            args.extend(["-a", password.as_str()]);
        }
        args.extend(command);
        let output = Command::new("docker")
            .args(&args)
            .output()
            .expect("run docker exec");
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    }

    /// A field of `INFO section` (or of `CLUSTER INFO` for section "cluster-info").
    fn info(&self, section: &str, field: &str) -> Option<String> {
        let text = if section == "cluster-info" {
            self.cli(&["CLUSTER", "INFO"])
        } else {
            self.cli(&["INFO", section])
        };
        text.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            (key == field).then(|| value.trim().to_string())
        })
    }

    /// `redis-cli` run inside the container (its loopback), or None when it failed.
    fn redis_cli_inside(&self, command: &[&str]) -> Option<String> {
        let mut args = vec!["exec", self.id.as_str(), "redis-cli", "--no-auth-warning"];
        if let Some(password) = &self.password {
            args.extend(["-a", password.as_str()]);
        }
        args.extend(command);
        let output = Command::new("docker").args(&args).output().ok()?;
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
    }

    fn logs(&self) -> String {
        let output = Command::new("docker")
            .args(["logs", "--tail", "40", &self.id])
            .output();
        output
            .map(|o| {
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                )
            })
            .unwrap_or_default()
    }

    /// Stops the server gracefully (SIGTERM: the server writes its AOF and exits) and removes
    /// the container, keeping its volume.
    fn stop_and_remove(mut self) {
        docker(&["stop", "-t", "30", &self.id]);
        self.remove();
    }

    fn remove(&mut self) {
        if !self.id.is_empty() {
            let _ = Command::new("docker").args(["rm", "-f", &self.id]).output();
            self.id.clear();
        }
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if std::thread::panicking() && !self.id.is_empty() {
            eprintln!("--- container {} log ---\n{}", self.name, self.logs());
        }
        self.remove();
    }
}

#[test]
fn every_command_and_a_wait_handoff_work_in_the_container() {
    let Some(image) = image() else { return };
    let network = Network::create();
    let server = Container::start(&image, &network, Some(PASSWORD), &[], &[]);
    let mut a = server.conn();
    let mut b = server.conn();

    let token = acquire(&mut a, "orders:42", "worker-a", 60_000);
    assert!(token > 0);
    nil(
        run(
            &mut b,
            redis::cmd("LOCK.ACQUIRE")
                .arg("orders:42")
                .arg("worker-b")
                .arg(60_000),
        ),
        "a held lock refuses another owner",
    );
    assert_eq!(acquire(&mut a, "orders:42", "worker-a", 60_000), token);
    let count = run(
        &mut a,
        redis::cmd("LOCK.REENTER").arg("orders:42").arg("worker-a"),
    );
    assert_eq!(int(count, "LOCK.REENTER"), 3);
    let renewed = run(
        &mut a,
        redis::cmd("LOCK.RENEW")
            .arg("orders:42")
            .arg("worker-a")
            .arg(120_000),
    );
    assert_eq!(int(renewed, "LOCK.RENEW"), 1);
    let info = lock_info(&mut a, "orders:42").expect("LOCK.INFO of a held lock");
    assert_eq!(info.stable(), (b"worker-a".to_vec(), 3, token, 0));
    assert!(info.ttl > 60_000 && info.ttl <= 120_000, "ttl {}", info.ttl);
    for remaining in [2, 1] {
        let released = run(
            &mut a,
            redis::cmd("LOCK.RELEASE").arg("orders:42").arg("worker-a"),
        );
        assert_eq!(int(released, "LOCK.RELEASE"), remaining);
    }

    // B waits in the server; A's last release hands the lock over with a new token.
    let waiter = std::thread::spawn(move || {
        let reply = run(
            &mut b,
            redis::cmd("LOCK.ACQUIRE")
                .arg("orders:42")
                .arg("worker-b")
                .arg(60_000)
                .arg("WAIT")
                .arg(60_000),
        );
        int(reply, "LOCK.ACQUIRE ... WAIT")
    });
    wait_until("the waiter to block in the container", || {
        common::info_field(&mut a, "clients", "blocked_clients").as_deref() == Some("1")
    });
    let released = run(
        &mut a,
        redis::cmd("LOCK.RELEASE").arg("orders:42").arg("worker-a"),
    );
    assert_eq!(int(released, "LOCK.RELEASE"), 0);
    let handed_token = waiter.join().expect("waiter thread");
    assert!(handed_token > token);
    let info = lock_info(&mut a, "orders:42").expect("the waiter holds the lock");
    assert_eq!(info.stable(), (b"worker-b".to_vec(), 1, handed_token, 0));
}

#[test]
fn locks_survive_a_new_container_on_the_same_volume() {
    let Some(image) = image() else { return };
    let network = Network::create();
    let volume = Volume::create();
    let mount = format!("{}:/data", volume.name);
    let first = Container::start(&image, &network, Some(PASSWORD), &["-v", &mount], &[]);
    let mut con = first.conn();
    let held = acquire(&mut con, "kept", "holder", 600_000);
    let other = acquire(&mut con, "other", "holder", 600_000);
    let released = run(
        &mut con,
        redis::cmd("LOCK.RELEASE").arg("other").arg("holder"),
    );
    assert_eq!(int(released, "LOCK.RELEASE"), 0);
    drop(con);
    first.stop_and_remove();

    let second = Container::start(&image, &network, Some(PASSWORD), &["-v", &mount], &[]);
    let mut con = second.conn();
    let info = lock_info(&mut con, "kept").expect("the held lock is back");
    assert_eq!(info.stable(), (b"holder".to_vec(), 1, held, 0));
    nil(
        run(
            &mut con,
            redis::cmd("LOCK.ACQUIRE")
                .arg("kept")
                .arg("intruder")
                .arg(1000),
        ),
        "the restored lock still refuses another owner",
    );
    // The token counter came back too: the next grant exceeds every earlier one.
    let next = acquire(&mut con, "fresh", "holder", 600_000);
    assert!(next > other && other > held, "{held} < {other} < {next}");
}

#[test]
fn a_replica_in_a_second_container_follows_every_lock() {
    let Some(image) = image() else { return };
    let network = Network::create();
    let master = Container::start(&image, &network, Some(PASSWORD), &[], &[]);
    let replica = Container::start(
        &image,
        &network,
        Some(PASSWORD),
        &[],
        &["--replicaof", &master.name, "6379"],
    );
    let mut on_replica = replica.conn();
    wait_until("the replica's link to its master", || {
        common::info_field(&mut on_replica, "replication", "master_link_status").as_deref()
            == Some("up")
    });

    let mut on_master = master.conn();
    let token = acquire(&mut on_master, "shared", "owner-1", 600_000);
    let acked = run(&mut on_master, redis::cmd("WAIT").arg(1).arg(10_000));
    assert_eq!(int(acked, "WAIT"), 1);
    let info = lock_info(&mut on_replica, "shared").expect("the lock reached the replica");
    assert_eq!(info.stable(), (b"owner-1".to_vec(), 1, token, 0));

    let refused = error(
        run(
            &mut on_replica,
            redis::cmd("LOCK.ACQUIRE")
                .arg("elsewhere")
                .arg("owner-2")
                .arg(1000),
        ),
        "LOCK.ACQUIRE on a replica",
    );
    assert!(refused.starts_with("READONLY"), "{refused}");

    let released = run(
        &mut on_master,
        redis::cmd("LOCK.RELEASE").arg("shared").arg("owner-1"),
    );
    assert_eq!(int(released, "LOCK.RELEASE"), 0);
    let acked = run(&mut on_master, redis::cmd("WAIT").arg(1).arg(10_000));
    assert_eq!(int(acked, "WAIT"), 1);
    assert!(lock_info(&mut on_replica, "shared").is_none());
}

#[test]
fn without_a_password_only_the_containers_own_loopback_may_connect() {
    let Some(image) = image() else { return };
    let network = Network::create();
    let server = Container::start(&image, &network, None, &[], &[]);
    // Protected mode greets a client from outside with -DENIED and closes the connection.
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    let mut reply = String::new();
    let _ = stream.read_to_string(&mut reply);
    assert!(reply.starts_with("-DENIED"), "{reply:?}");
    let inside = server.redis_cli_inside(&["LOCK.ACQUIRE", "k", "inside", "1000"]);
    assert!(
        inside
            .as_deref()
            .and_then(token_of)
            .is_some_and(|token| token > 0),
        "LOCK.ACQUIRE from the container's loopback: {inside:?}"
    );
}

/// Waits up to a minute for `condition`, polling every 100 ms.
fn wait_minute(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !condition() {
        if Instant::now() > deadline {
            panic!("timed out after 60 s waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A token from `redis-cli` output, or None for nil or an error reply.
fn token_of(output: &str) -> Option<i64> {
    output.parse().ok()
}

/// Six cluster nodes in containers at fixed addresses: masters 0..3 own a third of the slots
/// each, nodes 3..6 replicate them in order.
struct ContainerCluster {
    nodes: Vec<Container>,
    addresses: Vec<String>,
    network: Network,
}

impl ContainerCluster {
    fn start(image: &str) -> ContainerCluster {
        let (network, prefix) = Network::create_with_subnet();
        let addresses: Vec<String> = (0..6).map(|i| format!("{prefix}.{}", 10 + i)).collect();
        let nodes: Vec<Container> = addresses
            .iter()
            .map(|address| {
                Container::start(
                    image,
                    &network,
                    Some(PASSWORD),
                    &["--ip", address],
                    &[
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--cluster-node-timeout",
                        "1000",
                        "--cluster-replica-validity-factor",
                        "0",
                        "--repl-diskless-sync-delay",
                        "0",
                        "--appendonly",
                        "no",
                    ],
                )
            })
            .collect();
        let meet_all = || {
            for address in &addresses[1..] {
                assert_eq!(nodes[0].cli(&["CLUSTER", "MEET", address, "6379"]), "OK");
            }
        };
        meet_all();
        for (i, range) in [("0", "5460"), ("5461", "10922"), ("10923", "16383")]
            .iter()
            .enumerate()
        {
            let reply = nodes[i].cli(&["CLUSTER", "ADDSLOTSRANGE", range.0, range.1]);
            assert_eq!(reply, "OK");
        }
        // A handshake not finished within the node timeout is dropped (a loaded machine is slow
        // enough): meet again until every node knows all six.
        let knows_all = |node: &Container| {
            let nodes = node.cli(&["CLUSTER", "NODES"]);
            nodes.lines().count() == 6 && !nodes.contains("handshake")
        };
        let mut last_meet = Instant::now();
        wait_minute("every node to know all six", || {
            if nodes.iter().all(knows_all) {
                return true;
            }
            if last_meet.elapsed() > Duration::from_secs(2) {
                meet_all();
                last_meet = Instant::now();
            }
            false
        });
        for i in 0..3 {
            let master_id = nodes[i].cli(&["CLUSTER", "MYID"]);
            assert_eq!(
                nodes[i + 3].cli(&["CLUSTER", "REPLICATE", &master_id]),
                "OK"
            );
        }
        for node in &nodes {
            wait_minute("cluster_state:ok everywhere", || {
                node.info("cluster-info", "cluster_state").as_deref() == Some("ok")
            });
        }
        for replica in &nodes[3..] {
            wait_minute("every replica's link", || {
                replica.info("replication", "master_link_status").as_deref() == Some("up")
            });
        }
        ContainerCluster {
            nodes,
            addresses,
            network,
        }
    }
}

#[test]
fn a_split_brain_leaves_every_old_side_token_below_the_new_sides_and_counts_the_lost_locks() {
    let Some(image) = image() else { return };
    let cluster = ContainerCluster::start(&image);
    // Keys with one hash tag live in one slot; find the master that owns it.
    let keys: Vec<String> = (0..5).map(|i| format!("{{split}}:{i}")).collect();
    let owner = (0..3)
        .find(|&i| {
            !cluster.nodes[i]
                .cli(&["LOCK.INFO", &keys[0]])
                .starts_with("MOVED")
        })
        .expect("a master owns the slot");
    let old_master = &cluster.nodes[owner];
    let replica = &cluster.nodes[owner + 3];

    // A lock both sides keep: taken and replicated before the split.
    let kept = old_master.cli(&["LOCK.ACQUIRE", "{split}:kept", "keeper", "600000"]);
    let kept = token_of(&kept).expect("a token for the kept lock");
    assert_eq!(old_master.cli(&["WAIT", "1", "10000"]), "1");

    // Cut the old master off from its replica and the cluster bus. Its clients (here: inside
    // its container) go on using it until it notices it lost the majority.
    docker(&[
        "network",
        "disconnect",
        &cluster.network.name,
        &old_master.id,
    ]);
    let mut old_side = Vec::new();
    for key in &keys {
        if let Some(token) = token_of(&old_master.cli(&["LOCK.ACQUIRE", key, "old-side", "600000"]))
        {
            old_side.push((key.clone(), token));
        }
    }
    assert!(!old_side.is_empty(), "the cut-off master granted nothing");

    wait_minute("the replica to take over", || {
        replica.info("replication", "role").as_deref() == Some("master")
    });
    wait_minute("the majority's cluster_state:ok", || {
        replica.info("cluster-info", "cluster_state").as_deref() == Some("ok")
    });
    // Both sides grant. The new side takes the old side's keys and fresh ones; then the old
    // side, for as long as it still accepts writes (Redis Cluster stops a minority master about
    // a node timeout after the split), takes the fresh ones too: later in time than the new
    // side's grants for them, yet it must rank below them (the promotion's jump).
    let late_keys: Vec<String> = (0..5).map(|i| format!("{{split}}:late:{i}")).collect();
    let mut new_side = Vec::new();
    for key in keys.iter().chain(&late_keys) {
        let reply = replica.cli(&["LOCK.ACQUIRE", key, "new-side", "600000"]);
        let token =
            token_of(&reply).unwrap_or_else(|| panic!("the new master refused {key}: {reply}"));
        new_side.push((key.clone(), token));
    }
    for key in &late_keys {
        let reply = old_master.cli(&["LOCK.ACQUIRE", key, "old-side", "600000"]);
        if let Some(token) = token_of(&reply) {
            old_side.push((key.clone(), token));
        }
    }
    eprintln!("split brain: old side {old_side:?}, new side {new_side:?}");
    for (key, old_token) in &old_side {
        let new_token = new_side.iter().find(|(k, _)| k == key).map(|(_, t)| *t);
        assert!(
            new_token.is_some_and(|new_token| new_token > *old_token),
            "{key}: old side {old_token}, new side {new_token:?}"
        );
    }
    let kept_info = replica.cli(&["LOCK.INFO", "{split}:kept"]);
    assert!(
        kept_info.contains("keeper") && kept_info.contains(&kept.to_string()),
        "{kept_info}"
    );

    // Heal: the old master rejoins at its address, becomes a replica, and counts what it lost.
    let old_address = &cluster.addresses[owner];
    docker(&[
        "network",
        "connect",
        "--ip",
        old_address,
        &cluster.network.name,
        &old_master.id,
    ]);
    wait_minute("the old master to rejoin as a replica in sync", || {
        old_master.info("replication", "role").as_deref() == Some("slave")
            && old_master
                .info("replication", "master_link_status")
                .as_deref()
                == Some("up")
    });
    let dropped: usize = old_master
        .info("lock", "lock_dropped_on_resync")
        .expect("INFO lock has lock_dropped_on_resync")
        .parse()
        .expect("a count");
    let distinct_old_keys = {
        let mut keys: Vec<&String> = old_side.iter().map(|(k, _)| k).collect();
        keys.sort();
        keys.dedup();
        keys.len()
    };
    // Everything it held went with its data: the kept lock and the old side's grants.
    assert_eq!(dropped, distinct_old_keys + 1);
    // The old holders' next calls find nothing of theirs.
    for (key, _) in &old_side {
        assert_eq!(replica.cli(&["LOCK.RELEASE", key, "old-side"]), "");
        assert_eq!(replica.cli(&["LOCK.RENEW", key, "old-side", "1000"]), "0");
    }
}
