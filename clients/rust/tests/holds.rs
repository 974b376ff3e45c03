//! Shared holds, semaphore permits and session holds (`Lock::shared`, `Lock::limit`,
//! `Lock::session`) against a real redis-server with the module (one server per test). No
//! assertion depends on timing: waits poll for a state with generous bounds.

#[path = "../../../tests/common/mod.rs"]
mod common;

use std::sync::Mutex;
use std::time::Duration;

use common::{text, Server};
use redis::Value;
use rlock_client::{Error, Lock};

fn fixed(key: &str) -> Lock {
    Lock::new(key).ttl(Duration::from_secs(60))
}

/// `LOCK.INFO` as (mode, holders' tokens): `"exclusive"` for a plain lock, `None` when free.
fn holds(server: &Server, key: &str) -> Option<(String, Vec<i64>)> {
    let reply: Value = redis::cmd("LOCK.INFO")
        .arg(key)
        .query(&mut server.conn())
        .expect("LOCK.INFO");
    let pairs = |value: &Value| -> Vec<(String, Value)> {
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
    };
    let field = |fields: &[(String, Value)], name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let token = |fields: &[(String, Value)]| match field(fields, "token") {
        Some(Value::Int(token)) => token,
        other => panic!("token {other:?}"),
    };
    if reply == Value::Nil {
        return None;
    }
    let fields = pairs(&reply);
    let Some(mode) = field(&fields, "mode") else {
        return Some(("exclusive".into(), vec![token(&fields)]));
    };
    let Some(Value::Array(holders)) = field(&fields, "holders") else {
        panic!("no holders in {reply:?}");
    };
    let tokens = holders.iter().map(|h| token(&pairs(h))).collect();
    Some((text(&mode).unwrap_or_default(), tokens))
}

#[test]
fn readers_hold_the_key_together() {
    let server = Server::start();
    let (mut a, mut b) = (server.conn(), server.conn());
    let first = fixed("k").shared().acquire(&mut a).expect("first reader");
    let second = fixed("k").shared().acquire(&mut b).expect("second reader");
    assert!(
        second.token() > first.token(),
        "each reader has its own token"
    );
    let (mode, tokens) = holds(&server, "k").expect("held");
    assert_eq!(mode, "shared");
    assert_eq!(
        tokens,
        [first.token(), second.token()]
            .iter()
            .map(|&t| t as i64)
            .collect::<Vec<_>>()
    );
    assert_eq!(first.release().expect("release"), 0);
    assert_eq!(holds(&server, "k").map(|(_, t)| t.len()), Some(1));
    drop(second);
    assert_eq!(holds(&server, "k"), None);
}

#[test]
fn a_writer_is_excluded_and_served_in_arrival_order() {
    let server = Server::start();
    let mut reader_conn = server.conn();
    let reader = fixed("k")
        .shared()
        .acquire(&mut reader_conn)
        .expect("reader");
    let mut other = server.conn();
    let taken = fixed("k").acquire(&mut other);
    assert!(matches!(taken, Err(Error::NotAcquired)), "{taken:?}");
    drop(taken);
    let order = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        let take = |lock: Lock, name: &'static str| {
            let order = &order;
            let server = &server;
            move || {
                let mut conn = server.conn();
                let guard = lock.wait(Duration::from_secs(60)).acquire(&mut conn)?;
                order.lock().expect("order").push((name, guard.token()));
                guard.release()
            }
        };
        let writer = scope.spawn(take(fixed("k"), "writer"));
        server.wait_for_blocked_clients(1);
        let late = fixed("k").shared().acquire(&mut other);
        assert!(
            matches!(late, Err(Error::NotAcquired)),
            "a reader never passes a queued writer: {late:?}"
        );
        let late_reader = scope.spawn(take(fixed("k").shared(), "reader"));
        server.wait_for_blocked_clients(2);
        drop(reader);
        assert_eq!(writer.join().expect("writer").expect("writer held"), 0);
        assert_eq!(late_reader.join().expect("reader").expect("reader held"), 0);
    });
    let order = order.into_inner().expect("order");
    assert_eq!(
        order.iter().map(|(name, _)| *name).collect::<Vec<_>>(),
        ["writer", "reader"]
    );
    assert!(order[0].1 < order[1].1);
}

#[test]
fn the_writer_may_read_but_a_reader_may_not_upgrade() {
    let server = Server::start();
    let (mut a, mut b) = (server.conn(), server.conn());
    let writer = fixed("k").owner("me").acquire(&mut a).expect("writer");
    let reading = fixed("k")
        .owner("me")
        .shared()
        .acquire(&mut b)
        .expect("reentry");
    assert_eq!(reading.token(), writer.token());
    drop((reading, writer));
    let _reader = fixed("k")
        .owner("me")
        .shared()
        .acquire(&mut a)
        .expect("reader");
    let upgrade = fixed("k").owner("me").acquire(&mut b);
    assert!(
        matches!(upgrade, Err(Error::HoldConflict(_))),
        "{upgrade:?}"
    );
}

#[test]
fn semaphore_permits_are_counted_and_a_mismatch_is_typed() {
    let server = Server::start();
    let (mut a, mut b, mut c) = (server.conn(), server.conn(), server.conn());
    let permit = |permits| fixed("k").limit(permits);
    let one = permit(2).acquire(&mut a).expect("first permit");
    let two = permit(2).acquire(&mut b).expect("second permit");
    assert!(two.token() > one.token());
    let third = permit(2).acquire(&mut c);
    assert!(matches!(third, Err(Error::NotAcquired)), "{third:?}");
    drop(third);
    assert_eq!(
        holds(&server, "k").map(|(mode, tokens)| (mode, tokens.len())),
        Some(("limit".into(), 2))
    );
    let mismatch = permit(3).acquire(&mut c);
    assert!(
        matches!(mismatch, Err(Error::LimitMismatch { held: 2, asked: 3 })),
        "{mismatch:?}"
    );
    drop(mismatch);
    drop(one);
    let third = permit(2).acquire(&mut c).expect("a permit came back");
    assert!(third.token() > two.token());
    for bad in [0, 10_001] {
        let mut conn = server.conn();
        let refused = permit(bad).acquire(&mut conn);
        assert!(
            matches!(refused, Err(Error::InvalidLimit(n)) if n == bad),
            "{refused:?}"
        );
    }
}

#[test]
fn a_session_hold_ends_when_its_connection_closes() {
    let server = Server::start();
    let mut holder_conn = server.conn();
    // A ttl far beyond the test: only the connection's end can free the key in time.
    let lock = Lock::new("k").ttl(Duration::from_secs(3600)).session();
    let mut guard = lock.acquire(&mut holder_conn).expect("session hold");
    let id: i64 = redis::cmd("CLIENT")
        .arg("ID")
        .query(guard.connection())
        .expect("CLIENT ID");
    std::thread::scope(|scope| {
        let waiter = scope.spawn(|| {
            let mut conn = server.conn();
            let lock = fixed("k").wait(Duration::from_secs(60));
            lock.acquire(&mut conn).map(|guard| guard.token())
        });
        server.wait_for_blocked_clients(1);
        let killed: i64 = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("ID")
            .arg(id)
            .query(&mut server.conn())
            .expect("CLIENT KILL");
        assert_eq!(killed, 1);
        let token = waiter.join().expect("waiter").expect("handed the lock");
        assert!(token > guard.token());
    });
    let released = guard.release();
    assert!(
        matches!(released, Err(Error::NotHeld { .. })),
        "{released:?}"
    );
}

#[cfg(feature = "tokio")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_session_hold_ends_with_its_connection_and_the_guard_says_lost() {
    let server = Server::start();
    let client = redis::Client::open(server.url()).expect("client");
    let config = redis::AsyncConnectionConfig::new().set_response_timeout(None);
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .expect("async connection");
    let id: i64 = redis::cmd("CLIENT")
        .arg("ID")
        .query_async(&mut conn)
        .await
        .expect("CLIENT ID");
    let lock = Lock::new("k")
        .lease(Duration::from_secs(1))
        .shared()
        .session();
    let guard = lock.acquire_async(&mut conn).await.expect("session hold");
    assert_eq!(
        holds(&server, "k").map(|(mode, _)| mode),
        Some("shared".into())
    );
    let _: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("ID")
        .arg(id)
        .query(&mut server.conn())
        .expect("CLIENT KILL");
    common::wait_until("the hold to end with its connection", || {
        holds(&server, "k").is_none()
    });
    let lost = tokio::time::timeout(common::WAIT_TIMEOUT, guard.lost()).await;
    assert!(lost.is_ok(), "the guard reports the loss");
}
