//! Session holds and lost holds (issue 18): a session hold is bound to the connection that
//! took it; a killed connection is reported (async: within a renewal period) and a release
//! after it is `NotHeld`; a reentry into a lost hold is `NotHeld` and never takes the lock
//! afresh. Real `CLIENT KILL`; no assertion depends on timing.

#[path = "../../../tests/common/mod.rs"]
mod common;
mod support;

use std::time::Duration;

use common::{wait_until, Server};
use rlock_client::{Error, Lock};
use support::{client_id, count_of, holders, kill_client};

/// A ttl far beyond any test: only a connection's end or a release frees the key in time.
fn session(key: &str) -> Lock {
    Lock::new(key).ttl(Duration::from_secs(3600)).session()
}

fn wait_until_free(server: &Server, key: &str, what: &str) {
    wait_until(what, || holders(&mut server.conn(), key).is_empty());
}

#[test]
fn a_blocking_session_guards_release_after_a_kill_is_not_held() {
    let server = Server::start();
    let mut conn = server.conn();
    let mut guard = session("k").acquire(&mut conn).expect("session hold");
    let id = client_id(guard.connection());
    kill_client(&server, id);
    wait_until_free(&server, "k", "the hold to end with its connection");
    match guard.release() {
        Err(Error::NotHeld { .. }) => {}
        other => panic!("expected NotHeld, got {other:?}"),
    }
}

#[test]
fn a_reentry_after_the_session_connection_was_killed_is_not_held() {
    let server = Server::start();
    let lock = session("k");
    let mut first = server.conn();
    let mut outer = lock.acquire(&mut first).expect("session hold");
    let id = client_id(outer.connection());
    kill_client(&server, id);
    wait_until_free(&server, "k", "the hold to end with its connection");
    let mut second = server.conn();
    match lock.acquire(&mut second) {
        Err(Error::NotHeld { .. }) => {}
        other => panic!("a reentry into the lost hold: expected NotHeld, got {other:?}"),
    }
    assert!(
        holders(&mut server.conn(), "k").is_empty(),
        "not taken afresh"
    );
    assert!(outer.is_lost(), "the outer guard learns the loss too");
    // Refused again while the outer guard lives, without asking the server.
    assert!(matches!(
        lock.acquire(&mut second),
        Err(Error::NotHeld { .. })
    ));
    assert!(matches!(outer.release(), Err(Error::NotHeld { .. })));
    // With every guard of the lost hold gone, the owner takes it afresh.
    let fresh = lock.acquire(&mut second).expect("afresh");
    assert_eq!(count_of(&server, "k", lock.owner_id()), 1);
    assert_eq!(fresh.release().expect("release"), 0);
}

#[test]
fn a_reentry_from_another_connection_does_not_rebind_the_session_hold() {
    let server = Server::start();
    let lock = session("k");
    let mut first = server.conn();
    let mut second = server.conn();
    let mut outer = lock.acquire(&mut first).expect("session hold");
    let inner = lock.acquire(&mut second).expect("reentry");
    assert_eq!(count_of(&server, "k", lock.owner_id()), 2);
    // The hold is the first connection's: its end ends every count.
    let id = client_id(outer.connection());
    kill_client(&server, id);
    wait_until_free(
        &server,
        "k",
        "the whole hold to end with the first connection",
    );
    assert!(matches!(inner.release(), Err(Error::NotHeld { .. })));
    assert!(matches!(outer.release(), Err(Error::NotHeld { .. })));
}

#[cfg(feature = "tokio")]
mod async_api {
    use super::*;
    use common::WAIT_TIMEOUT;
    use redis::aio::MultiplexedConnection;

    async fn connect(server: &Server) -> MultiplexedConnection {
        let client = redis::Client::open(server.url()).expect("client");
        let config = redis::AsyncConnectionConfig::new().set_response_timeout(None);
        client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .expect("async connection")
    }

    async fn id_of(conn: &mut MultiplexedConnection) -> i64 {
        redis::cmd("CLIENT")
            .arg("ID")
            .query_async(conn)
            .await
            .expect("CLIENT ID")
    }

    fn blocking<T>(f: impl FnOnce() -> T) -> T {
        tokio::task::block_in_place(f)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_session_guard_reports_a_killed_connection_within_a_renewal_period() {
        let server = Server::start();
        let mut conn = connect(&server).await;
        let id = id_of(&mut conn).await;
        // A lease longer than the test's wait, a renewal period (a third of it) shorter:
        // only the first renewal after the kill can report the loss in time.
        let lease = WAIT_TIMEOUT * 3 / 2;
        let guard = Lock::new("k")
            .lease(lease)
            .session()
            .acquire_async(&mut conn)
            .await
            .expect("session hold");
        blocking(|| kill_client(&server, id));
        let lost = tokio::time::timeout(WAIT_TIMEOUT, guard.lost()).await;
        assert!(lost.is_ok(), "the loss is reported at the next renewal");
        blocking(|| wait_until_free(&server, "k", "the hold to end"));
        assert!(matches!(guard.release().await, Err(Error::NotHeld { .. })));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_reentry_after_the_session_connection_was_killed_is_not_held() {
        let server = Server::start();
        let lock = session("k");
        let mut first = connect(&server).await;
        let id = id_of(&mut first).await;
        let outer = lock.acquire_async(&mut first).await.expect("session hold");
        blocking(|| {
            kill_client(&server, id);
            wait_until_free(&server, "k", "the hold to end with its connection");
        });
        let mut second = connect(&server).await;
        match lock.acquire_async(&mut second).await {
            Err(Error::NotHeld { .. }) => {}
            other => panic!("a reentry into the lost hold: expected NotHeld, got {other:?}"),
        }
        assert!(blocking(|| holders(&mut server.conn(), "k").is_empty()));
        assert!(outer.is_lost());
        assert!(matches!(outer.release().await, Err(Error::NotHeld { .. })));
        let fresh = lock.acquire_async(&mut second).await.expect("afresh");
        assert_eq!(fresh.release().await.expect("release"), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_session_hold_outlives_its_first_guard_while_a_reentry_lives() {
        let server = Server::start();
        let lock = session("k");
        let mut first = connect(&server).await;
        let first_id = id_of(&mut first).await;
        let outer = lock.acquire_async(&mut first).await.expect("session hold");
        let mut second = connect(&server).await;
        let inner = lock.acquire_async(&mut second).await.expect("reentry");
        // The first guard goes, and with it the caller's handle on the first connection:
        // the client keeps that connection open, since the hold is bound to it.
        assert_eq!(outer.release().await.expect("outer release"), 1);
        drop(first);
        let listed = |id: i64| {
            let list: String = redis::cmd("CLIENT")
                .arg("LIST")
                .query(&mut server.conn())
                .expect("CLIENT LIST");
            list.lines()
                .any(|line| line.starts_with(&format!("id={id} ")))
        };
        assert!(
            blocking(|| listed(first_id)),
            "the binding connection stays"
        );
        assert_eq!(blocking(|| count_of(&server, "k", lock.owner_id())), 1);
        assert_eq!(inner.release().await.expect("inner release"), 0);
        // The hold is over: the client lets the connection go.
        blocking(|| {
            wait_until("the binding connection to close", || !listed(first_id));
        });
    }
}
