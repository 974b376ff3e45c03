//! The bench's own stock redis-server: free loopback port, temp dir, no persistence, the
//! module loaded. Dropping the guard kills the server and removes the directory, also when the
//! bench panics.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::BenchResult;

pub const REDIS_SERVER: &str = "/usr/bin/redis-server";
/// How long the server may take to answer PING after it was started.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// A reply that takes longer than this is an error (a hang) instead of a stuck bench.
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Room for 10k blocked waiters plus the bench's own connections.
const MAX_CLIENTS: &str = "20000";

pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

impl RedisServer {
    pub fn start(module: &Path) -> BenchResult<RedisServer> {
        let dir = make_temp_dir()?;
        let started = start_in(&dir, module);
        if started.is_err() {
            let _ = fs::remove_dir_all(&dir);
        }
        started
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// A new connection whose reads fail after `READ_TIMEOUT` instead of hanging.
    pub fn connect(&self) -> BenchResult<redis::Connection> {
        let client = redis::Client::open(self.url())?;
        let connection = client
            .get_connection_with_timeout(Duration::from_secs(10))
            .map_err(|e| format!("cannot connect to redis-server on port {}: {e}", self.port))?;
        connection.set_read_timeout(Some(READ_TIMEOUT))?;
        connection.set_write_timeout(Some(READ_TIMEOUT))?;
        Ok(connection)
    }

    pub fn log(&self) -> String {
        fs::read_to_string(log_path(&self.dir)).unwrap_or_default()
    }
}

/// Tries a few free ports (another process may take a probed port before the server binds it).
fn start_in(dir: &Path, module: &Path) -> BenchResult<RedisServer> {
    let mut last_log = String::new();
    for _ in 0..5 {
        let port = free_port()?;
        match spawn(dir, port, module) {
            Ok(child) => {
                return Ok(RedisServer {
                    child: Some(child),
                    port,
                    dir: dir.to_path_buf(),
                })
            }
            Err(log) if log.contains("Address already in use") => last_log = log,
            Err(log) => {
                return Err(format!("redis-server did not start:\n{}", tail(&log, 30)).into())
            }
        }
    }
    Err(format!(
        "redis-server found no free port; log tail:\n{}",
        tail(&last_log, 30)
    )
    .into())
}

/// Starts the process and waits for PING; on failure the process is gone and its log (or the
/// reason) is returned.
fn spawn(dir: &Path, port: u16, module: &Path) -> Result<Child, String> {
    let log = fs::File::create(log_path(dir)).map_err(|e| format!("cannot create log: {e}"))?;
    let log_copy = log.try_clone().map_err(|e| format!("log handle: {e}"))?;
    let mut child = Command::new(REDIS_SERVER)
        .args(arguments(dir, port, module))
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_copy)
        .spawn()
        .map_err(|e| format!("cannot run {REDIS_SERVER}: {e}"))?;
    let deadline = Instant::now() + START_TIMEOUT;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return Err(fs::read_to_string(log_path(dir)).unwrap_or_default());
        }
        if answers_ping(port) {
            return Ok(child);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    let log = fs::read_to_string(log_path(dir)).unwrap_or_default();
    Err(format!("no PING answer within {START_TIMEOUT:?}\n{log}"))
}

fn arguments(dir: &Path, port: u16, module: &Path) -> Vec<String> {
    let pairs = [
        ("--port", port.to_string()),
        ("--bind", "127.0.0.1".to_string()),
        ("--dir", dir.display().to_string()),
        ("--save", String::new()),
        ("--appendonly", "no".to_string()),
        ("--daemonize", "no".to_string()),
        ("--maxclients", MAX_CLIENTS.to_string()),
        ("--loadmodule", module.display().to_string()),
    ];
    pairs
        .into_iter()
        .flat_map(|(flag, value)| [flag.to_string(), value])
        .collect()
}

fn log_path(dir: &Path) -> PathBuf {
    dir.join("redis.log")
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "--- redis-server log tail (port {}) ---\n{}",
                self.port,
                tail(&self.log(), 30)
            );
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn answers_ping(port: u16) -> bool {
    let Ok(client) = redis::Client::open(format!("redis://127.0.0.1:{port}/")) else {
        return false;
    };
    let Ok(mut connection) = client.get_connection_with_timeout(Duration::from_millis(500)) else {
        return false;
    };
    let _ = connection.set_read_timeout(Some(Duration::from_secs(2)));
    redis::cmd("PING")
        .query::<String>(&mut connection)
        .is_ok_and(|reply| reply == "PONG")
}

fn free_port() -> BenchResult<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .map_err(|e| format!("cannot bind a loopback port to find a free one: {e}"))?;
    Ok(listener.local_addr()?.port())
}

fn make_temp_dir() -> BenchResult<PathBuf> {
    let name = format!(
        "rlock-bench-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    );
    let dir = std::env::temp_dir().join(name);
    fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    Ok(dir)
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
