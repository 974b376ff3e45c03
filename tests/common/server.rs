//! The server guard: a `redis-server` (or Valkey) of the test's own, on a free loopback port
//! with its own temporary directory, stopped by its own pid and cleaned up on drop (also when
//! the test panics). The TCP port is accepted only once the server listening on it reports
//! the pid this guard started.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use redis::{ConnectionLike, Value};

use super::commands::info_field;
use super::paths::{module_path, server_binary};
use super::process::{spawn_tied_to_this_process, terminate, wait_exit};
use super::replies::{ok, run, text};
use super::temp_dirs::make_temp_dir;
use super::wait::{poll, WAIT_TIMEOUT};

/// How long a server may take to answer PING after it was started.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a server may take to exit after SHUTDOWN or SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// A reply that takes longer than this fails the test instead of hanging it.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// How a server is started.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Load the module with `--loadmodule` (the default for `Server::start*`).
    pub load_module: bool,
    /// A config file given as redis-server's first argument.
    pub config_file: Option<PathBuf>,
    /// The working directory of the server process (default: the temp dir).
    pub cwd: Option<PathBuf>,
    /// More `--name value` arguments, after the guard's own (so they override them).
    pub args: Vec<String>,
    /// Runs on the fresh temp dir before the first start (e.g. to place files in it).
    pub prepare_dir: Option<fn(&Path)>,
}

/// A running redis-server, stopped and cleaned up on drop.
pub struct Server {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    options: Options,
}

impl Server {
    /// A server with the module loaded.
    pub fn start() -> Server {
        Server::start_with(&[])
    }

    /// A server with the module loaded and `extra` arguments, e.g. `["--appendonly", "yes"]`.
    pub fn start_with(extra: &[&str]) -> Server {
        Server::start_options(Options {
            load_module: true,
            args: extra.iter().map(|s| s.to_string()).collect(),
            ..Options::default()
        })
    }

    /// A server without the module (for `MODULE LOAD` at runtime).
    pub fn start_without_module(extra: &[&str]) -> Server {
        Server::start_options(Options {
            load_module: false,
            args: extra.iter().map(|s| s.to_string()).collect(),
            ..Options::default()
        })
    }

    pub fn start_options(options: Options) -> Server {
        if options.load_module {
            module_path();
        }
        let dir = make_temp_dir();
        if let Some(prepare) = options.prepare_dir {
            prepare(&dir);
        }
        let mut server = Server {
            child: None,
            port: 0,
            dir,
            options,
        };
        // The free port may be taken by another test between probing and binding: retry.
        let mut last_log = String::new();
        for _ in 0..8 {
            server.port = free_port();
            match server.spawn_and_wait() {
                Ok(()) => return server,
                Err(log) if log.contains("Address already in use") => last_log = log,
                Err(log) => panic!(
                    "redis-server did not start (port {}); log tail:\n{}",
                    server.port,
                    tail(&log, 40)
                ),
            }
        }
        panic!(
            "redis-server found no free port after 8 tries; log tail:\n{}",
            tail(&last_log, 40)
        );
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The TCP address, for clients that need one. Prefer `conn()` (this server's own Unix
    /// socket) or `tcp_conn()` (checked to reach this server's process).
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The Unix socket in this server's temp dir (None where the path would be too long).
    pub fn socket_path(&self) -> Option<PathBuf> {
        let path = self.dir.join("redis.sock");
        (path.as_os_str().len() < MAX_SOCKET_PATH).then_some(path)
    }

    /// A new connection (RESP2) to this server and no other: through its Unix socket (TCP,
    /// checked by pid, where the temp dir's path is too long for a socket), with a read timeout
    /// so that a hang fails the test.
    pub fn conn(&self) -> redis::Connection {
        match self.socket_path() {
            Some(path) => {
                let client =
                    redis::Client::open(redis::ConnectionAddr::Unix(path.clone())).expect("client");
                let con = client
                    .get_connection_with_timeout(Duration::from_secs(10))
                    .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", path.display()));
                con.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
                con.set_write_timeout(Some(READ_TIMEOUT)).unwrap();
                con
            }
            None => self.tcp_conn(),
        }
    }

    /// A new TCP connection to the port, checked to reach this server's process (INFO
    /// `process_id`); the check's reply is read, so the connection starts clean.
    pub fn tcp_conn(&self) -> redis::Connection {
        let client = redis::Client::open(self.url()).expect("client");
        let mut con = client
            .get_connection_with_timeout(Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("cannot connect to port {}: {e}", self.port));
        con.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        con.set_write_timeout(Some(READ_TIMEOUT)).unwrap();
        let pid = self.pid().expect("the server is not running");
        let reported = info_field(&mut con, "server", "process_id");
        assert_eq!(
            reported,
            Some(pid.to_string()),
            "port {} is answered by another server than ours (pid {pid})",
            self.port
        );
        con
    }

    /// A new connection switched to RESP3 with `HELLO 3`.
    pub fn conn_resp3(&self) -> redis::Connection {
        let mut con = self.conn();
        match run(&mut con, redis::cmd("HELLO").arg(3)) {
            Ok(Value::Map(_)) => con,
            other => panic!("HELLO 3 answered {other:?}"),
        }
    }

    /// The server's log so far (stdout and stderr).
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// `name` from `INFO section`, if present.
    pub fn info_field(&self, section: &str, name: &str) -> Option<String> {
        let mut con = self.conn();
        info_field(&mut con, section, name)
    }

    /// Redis' (major, minor) version; `None` for Valkey (whose `redis_version` is the Redis
    /// one it stays compatible with, not its own).
    pub fn redis_version(&self) -> Option<(u32, u32)> {
        if self.info_field("server", "valkey_version").is_some() {
            return None;
        }
        let version = self
            .info_field("server", "redis_version")
            .expect("redis_version");
        let mut parts = version
            .split('.')
            .map(|part| part.parse::<u32>().unwrap_or(0));
        Some((parts.next().unwrap_or(0), parts.next().unwrap_or(0)))
    }

    /// Polls `INFO section` until `name` has the value `expected`.
    pub fn wait_for_info(&self, section: &str, name: &str, expected: &str) {
        let mut con = self.conn();
        let mut last = None;
        let reached = poll(|| {
            last = info_field(&mut con, section, name);
            last.as_deref() == Some(expected)
        });
        if !reached {
            panic!(
                "INFO {section} {name} did not become {expected:?} within {WAIT_TIMEOUT:?} (last: {last:?})"
            );
        }
    }

    /// Makes this server a replica of `master` and waits until the link is up (the full sync
    /// done).
    pub fn replicate_from(&self, master: &Server) {
        let mut con = self.conn();
        ok(
            run(
                &mut con,
                redis::cmd("REPLICAOF").arg("127.0.0.1").arg(master.port()),
            ),
            "REPLICAOF",
        );
        self.wait_for_info("replication", "master_link_status", "up");
    }

    /// Waits until exactly `n` clients are blocked (e.g. in `LOCK.ACQUIRE ... WAIT`).
    pub fn wait_for_blocked_clients(&self, n: usize) {
        self.wait_for_info("clients", "blocked_clients", &n.to_string());
    }

    /// Stops the server (SHUTDOWN NOSAVE, or a kill when that fails) and starts it again with
    /// the same directory, socket and arguments, keeping the data files: on the same port while
    /// it is free, else (another test took it in between) on a new one (`port()` tells).
    pub fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + START_TIMEOUT;
        let mut tries = 0;
        loop {
            match self.spawn_and_wait() {
                Ok(()) => return,
                // The old socket may linger for a moment, or another test took the port.
                Err(log) if log.contains("Address already in use") && Instant::now() < deadline => {
                    tries += 1;
                    if tries >= 5 {
                        self.port = free_port();
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(log) => panic!(
                    "redis-server did not restart on port {}; log tail:\n{}",
                    self.port,
                    tail(&log, 40)
                ),
            }
        }
    }

    /// Stops the server with SHUTDOWN NOSAVE (the AOF is flushed, no RDB is written).
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // Through our own socket only: the port may belong to another test's server by now.
        if let Some(path) = self.socket_path() {
            if let Ok(client) = redis::Client::open(redis::ConnectionAddr::Unix(path)) {
                if let Ok(mut con) = client.get_connection_with_timeout(Duration::from_secs(2)) {
                    let _ = con.set_read_timeout(Some(Duration::from_secs(5)));
                    // The server closes the connection instead of answering.
                    let _ = con.req_command(redis::cmd("SHUTDOWN").arg("NOSAVE"));
                }
            }
        } else {
            terminate(&child);
        }
        if !wait_exit(&mut child, STOP_TIMEOUT) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The pid of the running server process.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("redis.log")
    }

    fn command_line(&self) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(config) = &self.options.config_file {
            args.push(config.display().to_string());
        }
        let dir = self.dir.display().to_string();
        let port = self.port.to_string();
        for pair in [
            ["--port", port.as_str()],
            ["--bind", "127.0.0.1"],
            ["--dir", dir.as_str()],
            ["--save", ""],
            ["--appendonly", "no"],
            ["--daemonize", "no"],
            // A replica's full sync starts at once, not after Redis' default 5 s wait for more
            // replicas to join.
            ["--repl-diskless-sync-delay", "0"],
        ] {
            args.extend(pair.iter().map(|s| s.to_string()));
        }
        if let Some(socket) = self.socket_path() {
            args.extend([
                "--unixsocket".to_string(),
                socket.display().to_string(),
                "--unixsocketperm".to_string(),
                "700".to_string(),
            ]);
        }
        if self.options.load_module {
            args.push("--loadmodule".into());
            args.push(module_path().display().to_string());
        }
        args.extend(self.options.args.iter().cloned());
        args
    }

    /// Starts the process and waits until it answers as itself, its data loaded. On failure the
    /// process is gone and the log is returned.
    fn spawn_and_wait(&mut self) -> Result<(), String> {
        let log_path = self.log_path();
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("open log file");
        let binary = server_binary();
        let mut command = Command::new(&binary);
        command
            .args(self.command_line())
            .current_dir(self.options.cwd.as_deref().unwrap_or(&self.dir))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log);
        let mut child = spawn_tied_to_this_process(command)
            .unwrap_or_else(|e| panic!("cannot run {} (is it installed?): {e}", binary.display()));
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                return Err(self.log());
            }
            // Another test's server may have bound this port first: only our own process counts.
            if answers_as(self.port, child.id()) {
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "redis-server on port {} did not answer PING within {START_TIMEOUT:?}; log tail:\n{}",
                    self.port,
                    tail(&self.log(), 40)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&child);
            if !wait_exit(&mut child, STOP_TIMEOUT) {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if std::thread::panicking() {
            eprintln!(
                "--- redis-server log (port {}) ---\n{}",
                self.port,
                tail(&self.log(), 30)
            );
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// The longest Unix socket path (`sun_path` holds 108 bytes with the terminating zero).
const MAX_SOCKET_PATH: usize = 100;

/// Whether the server on `port` answers, is the process `pid` (INFO's `process_id`) and has
/// loaded its data.
fn answers_as(port: u16, pid: u32) -> bool {
    let Ok(client) = redis::Client::open(format!("redis://127.0.0.1:{port}/")) else {
        return false;
    };
    let Ok(mut con) = client.get_connection_with_timeout(Duration::from_millis(500)) else {
        return false;
    };
    let _ = con.set_read_timeout(Some(Duration::from_secs(2)));
    let Ok(info) = con.req_command(redis::cmd("INFO").arg("server")) else {
        return false;
    };
    let ours = text(&info).is_some_and(|info| {
        info.lines()
            .any(|line| line.trim_end() == format!("process_id:{pid}"))
    });
    // INFO answers while the data set is still loading (an AOF after a restart), when every
    // other command gets LOADING: ready means loaded. (A Sentinel has no persistence section.)
    ours && con
        .req_command(redis::cmd("INFO").arg("persistence"))
        .ok()
        .and_then(|info| text(&info))
        .is_some_and(|info| !info.lines().any(|line| line.trim_end() == "loading:1"))
}

pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a probe port");
    listener.local_addr().expect("probe address").port()
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
