//! Helpers shared by the client's integration tests: a server with `DEBUG` enabled, a real
//! server stall, the owner's hold count as the server has it, and connections that resend a
//! command whose reply timed out (as redis-py 8, Lettuce, go-redis and ioredis do).

#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use redis::{ConnectionLike, RedisResult, Value};

use crate::common::{text, wait_until, Server};

/// A server with the module and `DEBUG` enabled (for `DEBUG SLEEP`).
pub fn debug_server() -> Server {
    Server::start_with(&["--enable-debug-command", "yes"])
}

/// The fields of a `LOCK.INFO`-style reply (RESP2 flat array or RESP3 map).
fn fields(value: &Value) -> Vec<(String, Value)> {
    match value {
        Value::Array(items) => items
            .chunks(2)
            .map(|pair| (text(&pair[0]).unwrap_or_default(), pair[1].clone()))
            .collect(),
        Value::Map(items) => items
            .iter()
            .map(|(k, v)| (text(k).unwrap_or_default(), v.clone()))
            .collect(),
        _ => vec![],
    }
}

fn field<'a>(fields: &'a [(String, Value)], name: &str) -> Option<&'a Value> {
    fields.iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

/// One holder of a key as `LOCK.INFO` has it: owner, count, ttl (ms), session flag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    pub owner: Vec<u8>,
    pub count: i64,
    pub ttl: i64,
}

fn holder(fields: &[(String, Value)]) -> Holder {
    let int = |name: &str| match field(fields, name) {
        Some(Value::Int(n)) => *n,
        other => panic!("LOCK.INFO {name}: {other:?}"),
    };
    let owner = match field(fields, "owner") {
        Some(Value::BulkString(bytes)) => bytes.clone(),
        Some(Value::SimpleString(s)) => s.clone().into_bytes(),
        other => panic!("LOCK.INFO owner: {other:?}"),
    };
    Holder {
        owner,
        count: int("count"),
        ttl: int("ttl"),
    }
}

/// Every holder of `key` (one for an exclusive lock), from one atomic `LOCK.INFO`.
pub fn holders(con: &mut redis::Connection, key: &str) -> Vec<Holder> {
    let reply: Value = redis::cmd("LOCK.INFO")
        .arg(key)
        .query(con)
        .expect("LOCK.INFO");
    if reply == Value::Nil {
        return vec![];
    }
    let top = fields(&reply);
    match field(&top, "holders") {
        Some(Value::Array(list)) => list.iter().map(|h| holder(&fields(h))).collect(),
        Some(other) => panic!("LOCK.INFO holders: {other:?}"),
        None => vec![holder(&top)],
    }
}

/// `LOCK.INFO key` as (mode, holders) from one atomic call: `"exclusive"` for a plain lock,
/// `None` when free.
pub fn snapshot(con: &mut redis::Connection, key: &str) -> Option<(String, Vec<Holder>)> {
    let reply: Value = redis::cmd("LOCK.INFO")
        .arg(key)
        .query(con)
        .expect("LOCK.INFO");
    if reply == Value::Nil {
        return None;
    }
    let top = fields(&reply);
    let mode = field(&top, "mode")
        .and_then(text)
        .unwrap_or_else(|| "exclusive".to_string());
    let list = match field(&top, "holders") {
        Some(Value::Array(list)) => list.iter().map(|h| holder(&fields(h))).collect(),
        Some(other) => panic!("LOCK.INFO holders: {other:?}"),
        None => vec![holder(&top)],
    };
    Some((mode, list))
}

/// The hold count `owner` has on `key` (0 when it holds nothing).
pub fn count_of(server: &Server, key: &str, owner: &[u8]) -> i64 {
    holders(&mut server.conn(), key)
        .into_iter()
        .find(|h| h.owner == owner)
        .map_or(0, |h| h.count)
}

/// Stalls the server for `seconds` with `DEBUG SLEEP` from a connection of its own, and
/// returns once the stall is on (a probe's `PING` gets no answer within 50 ms). Join the
/// handle to wait for its end.
pub fn stall(server: &Server, seconds: f64) -> JoinHandle<()> {
    // Both connections are made first: connecting to a stalled server waits for it.
    let mut sleeper = server.conn();
    let mut probe = server.conn();
    probe
        .set_read_timeout(Some(Duration::from_millis(50)))
        .expect("probe timeout");
    let sleeping = std::thread::spawn(move || {
        let _: () = redis::cmd("DEBUG")
            .arg("SLEEP")
            .arg(seconds)
            .query(&mut sleeper)
            .expect("DEBUG SLEEP");
    });
    wait_until("the server to stall", || {
        match redis::cmd("PING").query::<String>(&mut probe) {
            Ok(_) => false,
            Err(error) => {
                assert!(error.is_timeout(), "probe: {error}");
                true
            }
        }
    });
    sleeping
}

/// How many resends a retrying connection may make for one command (a bound for tests).
const MAX_RESENDS: usize = 50;

/// A blocking connection that resends a command (or pipeline) whose reply timed out, until
/// one answers: what redis-py 8 does by default, over a connection with a read timeout.
pub struct Retrying {
    pub inner: redis::Connection,
    /// How many times a command was sent again.
    pub resent: usize,
}

impl Retrying {
    pub fn new(inner: redis::Connection, read_timeout: Duration) -> Retrying {
        inner
            .set_read_timeout(Some(read_timeout))
            .expect("read timeout");
        Retrying { inner, resent: 0 }
    }
}

impl ConnectionLike for Retrying {
    fn req_packed_command(&mut self, cmd: &[u8]) -> RedisResult<Value> {
        let mut reply = self.inner.req_packed_command(cmd);
        for _ in 0..MAX_RESENDS {
            match &reply {
                Err(error) if error.is_timeout() => {
                    self.resent += 1;
                    reply = self.inner.req_packed_command(cmd);
                }
                _ => break,
            }
        }
        reply
    }

    fn req_packed_commands(
        &mut self,
        cmd: &[u8],
        offset: usize,
        count: usize,
    ) -> RedisResult<Vec<Value>> {
        let mut reply = self.inner.req_packed_commands(cmd, offset, count);
        for _ in 0..MAX_RESENDS {
            match &reply {
                Err(error) if error.is_timeout() => {
                    self.resent += 1;
                    reply = self.inner.req_packed_commands(cmd, offset, count);
                }
                _ => break,
            }
        }
        reply
    }

    fn get_db(&self) -> i64 {
        self.inner.get_db()
    }

    fn check_connection(&mut self) -> bool {
        self.inner.check_connection()
    }

    fn is_open(&self) -> bool {
        self.inner.is_open()
    }
}

/// An async connection that resends what timed out, as [`Retrying`], over a multiplexed
/// connection with a response timeout.
#[cfg(feature = "tokio")]
#[derive(Clone)]
pub struct RetryingAsync {
    pub inner: redis::aio::MultiplexedConnection,
    pub resent: Arc<AtomicUsize>,
}

#[cfg(feature = "tokio")]
impl RetryingAsync {
    pub async fn connect(server: &Server, response_timeout: Duration) -> RetryingAsync {
        let client = redis::Client::open(server.url()).expect("client");
        let config =
            redis::AsyncConnectionConfig::new().set_response_timeout(Some(response_timeout));
        let inner = client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .expect("async connection");
        RetryingAsync {
            inner,
            resent: Arc::new(AtomicUsize::new(0)),
        }
    }

    pub fn resent(&self) -> usize {
        self.resent.load(Ordering::SeqCst)
    }
}

#[cfg(feature = "tokio")]
impl redis::aio::ConnectionLike for RetryingAsync {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> redis::RedisFuture<'a, Value> {
        Box::pin(async move {
            let mut reply = self.inner.req_packed_command(cmd).await;
            for _ in 0..MAX_RESENDS {
                match &reply {
                    Err(error) if error.is_timeout() => {
                        self.resent.fetch_add(1, Ordering::SeqCst);
                        reply = self.inner.req_packed_command(cmd).await;
                    }
                    _ => break,
                }
            }
            reply
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let mut reply = self
                .inner
                .req_packed_commands(pipeline, offset, count)
                .await;
            for _ in 0..MAX_RESENDS {
                match &reply {
                    Err(error) if error.is_timeout() => {
                        self.resent.fetch_add(1, Ordering::SeqCst);
                        reply = self
                            .inner
                            .req_packed_commands(pipeline, offset, count)
                            .await;
                    }
                    _ => break,
                }
            }
            reply
        })
    }

    fn get_db(&self) -> i64 {
        self.inner.get_db()
    }
}

/// `CLIENT ID` of a blocking connection.
pub fn client_id(con: &mut impl ConnectionLike) -> i64 {
    redis::cmd("CLIENT")
        .arg("ID")
        .query(con)
        .expect("CLIENT ID")
}

/// `CLIENT KILL ID id` from a connection of its own; asserts one client was killed.
pub fn kill_client(server: &Server, id: i64) {
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("ID")
        .arg(id)
        .query(&mut server.conn())
        .expect("CLIENT KILL");
    assert_eq!(killed, 1, "CLIENT KILL ID {id}");
}
