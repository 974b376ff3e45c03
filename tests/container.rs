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

use common::{error, int, lock_info, nil, run, wait_until};

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

fn acquire(con: &mut redis::Connection, key: &str, owner: &str, ttl: u64) -> i64 {
    int(
        run(con, redis::cmd("LOCK.ACQUIRE").arg(key).arg(owner).arg(ttl)),
        "LOCK.ACQUIRE",
    )
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
    assert_eq!(
        server
            .redis_cli_inside(&["LOCK.ACQUIRE", "k", "inside", "1000"])
            .as_deref(),
        Some("1")
    );
}
