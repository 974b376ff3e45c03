//! The integration tests' server guard and small helpers.
//!
//! Every test starts its own `redis-server` on a free loopback port with its own temporary
//! directory; the guard stops the server and removes the directory when it goes out of scope,
//! also when the test panics. Nothing here sleeps to assert timing: waits poll for a state with
//! a generous upper bound and panic with a description when it is not reached.
//!
//! A test can never talk to another test's server: `conn()` goes through a Unix socket in the
//! server's own temp dir, and the TCP port (for replication, MIGRATE and raw sockets) is
//! accepted only once the server listening on it reports the pid this guard started
//! (`tcp_conn()` checks it again on every connection). Servers die with the test process, even
//! when it is killed (SIGKILL as the parent-death signal, armed from one thread that lives as
//! long as the process), and the temp dirs of a test process that is gone are removed by the
//! next one that starts a server.

#![allow(dead_code)]

use std::collections::HashMap;
use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Mutex, Once, OnceLock};
use std::time::{Duration, Instant};

use redis::{ConnectionLike, Value};

/// How long a server may take to answer PING after it was started.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a server may take to exit after SHUTDOWN or SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// The upper bound of every wait for a state (blocked clients, replication link, ...).
pub const WAIT_TIMEOUT: Duration = Duration::from_secs(10);
/// A reply that takes longer than this fails the test instead of hanging it.
const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Tokens stay below 2^53 (exact in JavaScript).
pub const TOKEN_LIMIT: i64 = 1 << 53;

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// What TYPE says of a lock's key (src/glue/datatype.rs).
pub const LOCK_TYPE_NAME: &str = "rlocklock";

/// A second module with a data type of its own (tests/modules/othertype), built beside the
/// module under test: `librlock_test_othertype.so` in the same directory.
pub fn other_module_path() -> PathBuf {
    let path = module_path().with_file_name("librlock_test_othertype.so");
    if !path.is_file() {
        panic!(
            "the test module is missing at {}: run `make build` (or `cargo build --release -p \
             rlock-test-othertype`) first",
            path.display()
        );
    }
    path
}

/// The module under test: `RLOCK_MODULE`, else `target/release/librlock.so` of this repo.
pub fn module_path() -> PathBuf {
    let path = match std::env::var_os("RLOCK_MODULE") {
        Some(path) => PathBuf::from(path),
        None => repo_root().join("target/release/librlock.so"),
    };
    let path = if path.is_absolute() {
        path
    } else {
        repo_root().join(path)
    };
    if !path.is_file() {
        panic!(
            "the rlock module is missing at {}: run `make test` (or `cargo build --release -p rlock`) \
             first, or point RLOCK_MODULE at a built librlock.so",
            path.display()
        );
    }
    path
}

/// The server binary under test: `RLOCK_SERVER` (a path, or a name on PATH), else
/// `redis-server`. `make test` points it at each server version it tests (see the README).
pub fn server_binary() -> PathBuf {
    std::env::var_os("RLOCK_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("redis-server"))
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

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

const PR_SET_PDEATHSIG: i32 = 1;
const SIGKILL: i32 = 9;
const SIGTERM: i32 = 15;

extern "C" {
    fn prctl(option: i32, ...) -> i32;
    fn getppid() -> i32;
    fn kill(pid: i32, signal: i32) -> i32;
}

/// SIGTERM to our own child, by its pid (it has not been reaped, so the pid is still ours).
fn terminate(child: &Child) {
    // SAFETY: kill(2) on the pid of a child we have not waited for yet.
    unsafe { kill(child.id() as i32, SIGTERM) };
}

struct SpawnRequest {
    command: Command,
    reply: mpsc::Sender<std::io::Result<Child>>,
}

/// Starts `command` so that it gets SIGKILL when this test process dies, however it dies.
///
/// The parent-death signal fires when the *thread* that forked the child exits, and cargo test
/// runs every test on a thread of its own that ends with the test: so every server is forked
/// by one spawner thread that lives as long as the process (it waits on a channel that is never
/// closed). A child whose parent died before the signal was armed exits at once.
pub fn spawn_tied_to_this_process(mut command: Command) -> std::io::Result<Child> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    let parent = std::process::id() as i32;
    // SAFETY: the closure runs in the forked child before exec and only makes two
    // async-signal-safe system calls.
    unsafe {
        use std::os::unix::process::CommandExt;
        command.pre_exec(move || {
            if prctl(PR_SET_PDEATHSIG, SIGKILL as std::ffi::c_ulong) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if getppid() != parent {
                return Err(std::io::Error::other("the test process is gone"));
            }
            Ok(())
        });
    }
    let spawner = SPAWNER.get_or_init(|| {
        let (send, receive) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("rlock-test-spawner".into())
            .spawn(move || {
                for SpawnRequest { mut command, reply } in receive {
                    let _ = reply.send(command.spawn());
                }
            })
            .expect("start the spawner thread");
        Mutex::new(send)
    });
    let (reply, result) = mpsc::channel();
    spawner
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .send(SpawnRequest { command, reply })
        .expect("the spawner thread is gone");
    result.recv().expect("the spawner thread is gone")
}

fn wait_exit(child: &mut Child, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return true,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => return false,
        }
    }
}

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

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a probe port");
    listener.local_addr().expect("probe address").port()
}

const TEMP_PREFIX: &str = "rlock-test-";

/// Removes the temp dirs of test processes that are gone (killed before their guards could
/// clean up). A dir is named after its process: a running process' dirs are never touched.
pub fn remove_stale_temp_dirs() {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|name| name.strip_prefix(TEMP_PREFIX))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !process_alive(pid) {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// Whether `pid` names a live process (not a zombie waiting to be reaped).
pub fn process_alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name in parentheses, which may itself hold spaces.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

fn make_temp_dir() -> PathBuf {
    static CLEAN: Once = Once::new();
    CLEAN.call_once(remove_stale_temp_dirs);
    let name = format!(
        "{TEMP_PREFIX}{}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        uuid::Uuid::new_v4().simple()
    );
    let dir = std::env::temp_dir().join(name);
    fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Polls `condition` every 10 ms for up to `WAIT_TIMEOUT`; whether it became true.
pub fn poll(mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + WAIT_TIMEOUT;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Polls `condition` like `poll`, and panics naming `what` when it never holds.
pub fn wait_until(what: &str, condition: impl FnMut() -> bool) {
    if !poll(condition) {
        panic!("timed out after {WAIT_TIMEOUT:?} waiting for {what}");
    }
}

/// `name` from `INFO section` on `con`.
pub fn info_field(con: &mut redis::Connection, section: &str, name: &str) -> Option<String> {
    let text = match run(con, redis::cmd("INFO").arg(section)) {
        Ok(Value::BulkString(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
        Ok(Value::VerbatimString { text, .. }) => text,
        other => panic!("INFO {section} answered {other:?}"),
    };
    text.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key == name).then(|| value.trim().to_string())
    })
}

/// Sends `cmd` and returns its reply; a server error becomes `Err("CODE detail")`. Errors
/// nested in arrays (EXEC) stay `Value::ServerError`. An I/O error (the server died, or a
/// reply took longer than the read timeout) panics.
pub fn run(con: &mut redis::Connection, cmd: &redis::Cmd) -> Result<Value, String> {
    match con.req_command(cmd) {
        Ok(Value::ServerError(error)) => Err(error_text(&error)),
        Ok(value) => Ok(value),
        Err(error) => match error.code() {
            Some(code) => Err(format!("{code} {}", error.detail().unwrap_or(""))),
            None => panic!("{:?} failed without a server reply: {error}", args_of(cmd)),
        },
    }
}

pub fn error_text(error: &redis::ServerError) -> String {
    match error.details() {
        Some(detail) => format!("{} {detail}", error.code()),
        None => error.code().to_string(),
    }
}

fn args_of(cmd: &redis::Cmd) -> Vec<String> {
    cmd.args_iter()
        .map(|arg| match arg {
            redis::Arg::Simple(bytes) => String::from_utf8_lossy(bytes).into_owned(),
            _ => "<arg>".into(),
        })
        .collect()
}

/// `call!(con, "LOCK.ACQUIRE", "k", "me", 1000)`: sends the command, `Result<Value, String>`.
#[macro_export]
macro_rules! call {
    ($con:expr, $name:expr $(, $arg:expr)* $(,)?) => {{
        #[allow(unused_mut)]
        let mut command = redis::cmd($name);
        $( command.arg($arg); )*
        $crate::common::run($con, &command)
    }};
}

/// The integer of a reply, or a panic naming `what`.
#[track_caller]
pub fn int(reply: Result<Value, String>, what: &str) -> i64 {
    match reply {
        Ok(Value::Int(n)) => n,
        other => panic!("{what}: expected an integer, got {other:?}"),
    }
}

#[track_caller]
pub fn nil(reply: Result<Value, String>, what: &str) {
    match reply {
        Ok(Value::Nil) => {}
        other => panic!("{what}: expected nil, got {other:?}"),
    }
}

/// The error text of a reply, or a panic naming `what`.
#[track_caller]
pub fn error(reply: Result<Value, String>, what: &str) -> String {
    match reply {
        Err(text) => text,
        Ok(other) => panic!("{what}: expected an error, got {other:?}"),
    }
}

#[track_caller]
pub fn ok(reply: Result<Value, String>, what: &str) {
    match reply {
        Ok(Value::Okay) => {}
        Ok(Value::SimpleString(s)) if s == "OK" => {}
        other => panic!("{what}: expected OK, got {other:?}"),
    }
}

/// Text of a simple or bulk string value.
pub fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Okay => Some("OK".into()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        _ => None,
    }
}

/// `LOCK.INFO` parsed: RESP2 flat array or RESP3 map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockInfo {
    pub owner: Vec<u8>,
    pub count: i64,
    pub ttl: i64,
    pub token: i64,
    pub waiters: i64,
    /// The field names in reply order.
    pub fields: Vec<String>,
}

impl LockInfo {
    /// The fields that do not change as time passes.
    pub fn stable(&self) -> (Vec<u8>, i64, i64, i64) {
        (self.owner.clone(), self.count, self.token, self.waiters)
    }

    pub fn parse(value: &Value) -> Option<LockInfo> {
        let pairs: Vec<(Value, Value)> = match value {
            Value::Nil => return None,
            Value::Map(pairs) => pairs.clone(),
            Value::Array(items) => {
                assert!(
                    items.len() % 2 == 0,
                    "LOCK.INFO flat array has an odd length: {value:?}"
                );
                items
                    .chunks(2)
                    .map(|pair| (pair[0].clone(), pair[1].clone()))
                    .collect()
            }
            other => panic!("LOCK.INFO answered neither nil, an array nor a map: {other:?}"),
        };
        let mut fields = Vec::new();
        let mut map = HashMap::new();
        for (key, value) in pairs {
            let name = text(&key).unwrap_or_else(|| panic!("LOCK.INFO field name {key:?}"));
            fields.push(name.clone());
            map.insert(name, value);
        }
        let integer = |name: &str| match map.get(name) {
            Some(Value::Int(n)) => *n,
            other => panic!("LOCK.INFO field {name}: expected an integer, got {other:?}"),
        };
        let owner = match map.get("owner") {
            Some(Value::BulkString(bytes)) => bytes.clone(),
            other => panic!("LOCK.INFO field owner: expected a bulk string, got {other:?}"),
        };
        Some(LockInfo {
            owner,
            count: integer("count"),
            ttl: integer("ttl"),
            token: integer("token"),
            waiters: integer("waiters"),
            fields,
        })
    }
}

/// `LOCK.INFO key`, parsed (`None` when free).
#[track_caller]
pub fn lock_info(con: &mut redis::Connection, key: &str) -> Option<LockInfo> {
    match call!(con, "LOCK.INFO", key) {
        Ok(value) => LockInfo::parse(&value),
        Err(e) => panic!("LOCK.INFO {key}: {e}"),
    }
}

/// Everything observable about a key that does not change by itself as time passes: whether
/// it exists, its type, its absolute expiry, and its lock fields or string value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyState {
    pub exists: i64,
    pub key_type: String,
    pub pexpiretime: i64,
    pub lock: Option<(Vec<u8>, i64, i64, i64)>,
    pub string: Option<Vec<u8>>,
}

#[track_caller]
pub fn key_state(con: &mut redis::Connection, key: &str) -> KeyState {
    let exists = int(call!(con, "EXISTS", key), "EXISTS");
    let key_type = match call!(con, "TYPE", key) {
        Ok(value) => text(&value).expect("TYPE text"),
        Err(e) => panic!("TYPE {key}: {e}"),
    };
    let pexpiretime = int(call!(con, "PEXPIRETIME", key), "PEXPIRETIME");
    let string = if key_type == "string" {
        match call!(con, "GET", key) {
            Ok(Value::BulkString(bytes)) => Some(bytes),
            other => panic!("GET {key}: {other:?}"),
        }
    } else {
        None
    };
    let lock = match key_type.as_str() {
        "none" => {
            assert_eq!(lock_info(con, key), None, "LOCK.INFO on a missing key");
            None
        }
        LOCK_TYPE_NAME => lock_info(con, key).map(|info| info.stable()),
        _ => None,
    };
    KeyState {
        exists,
        key_type,
        pexpiretime,
        lock,
        string,
    }
}

/// A deterministic xorshift64* generator for the fuzz loops.
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> XorShift {
        XorShift(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}
