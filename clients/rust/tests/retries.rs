//! Retries, timeouts and server stalls (issue 18): every `LOCK.ACQUIRE` and `LOCK.RELEASE`
//! the client sends carries `HELD n`, so a command sent twice (by a connection that resends
//! on a timeout, or by the client itself) takes effect once; a call cut short by a timeout
//! leaves no hold behind, for every kind of hold. Real stalls (`DEBUG SLEEP`), real timeouts;
//! no assertion depends on timing.

#[path = "../../../tests/common/mod.rs"]
mod common;
mod support;

use std::time::Duration;

use common::{lock_info, wait_until, Server};
use rlock_client::{Error, Lock};
use support::{count_of, debug_server, holders, stall, Retrying};

fn fixed(key: &str) -> Lock {
    Lock::new(key).ttl(Duration::from_secs(60))
}

/// The kinds of hold, each with a lock another owner holds so that it must wait.
fn kinds() -> Vec<(&'static str, Lock, Vec<Lock>)> {
    vec![
        ("exclusive", fixed("k"), vec![fixed("k")]),
        ("shared", fixed("k").shared(), vec![fixed("k")]),
        (
            "limit",
            fixed("k").limit(2),
            vec![fixed("k").limit(2), fixed("k").limit(2)],
        ),
        ("session", fixed("k").session(), vec![fixed("k")]),
    ]
}

#[test]
fn a_release_resent_by_a_retrying_connection_takes_effect_once() {
    let server = debug_server();
    let lock = fixed("k");
    let mut outer_conn = server.conn();
    let outer = lock.acquire(&mut outer_conn).expect("outer");
    let mut retrying = Retrying::new(server.conn(), Duration::from_millis(300));
    let inner = lock.acquire(&mut retrying).expect("inner");
    assert_eq!(count_of(&server, "k", lock.owner_id()), 2);

    let stalled = stall(&server, 1.5);
    // The reply times out during the stall and the connection sends the release again:
    // both run once the stall ends.
    assert_eq!(inner.release().expect("inner release"), 1);
    stalled.join().expect("stall");
    assert!(retrying.resent > 0, "the stall made the connection resend");
    assert_eq!(
        count_of(&server, "k", lock.owner_id()),
        1,
        "the outer hold stays"
    );
    let mut other = server.conn();
    assert!(matches!(
        fixed("k").acquire(&mut other),
        Err(Error::NotAcquired)
    ));
    assert_eq!(outer.release().expect("outer release"), 0);
    assert_eq!(lock_info(&mut server.conn(), "k"), None);
}

#[test]
fn a_reentry_resent_by_a_retrying_connection_counts_once() {
    let server = debug_server();
    let lock = fixed("k");
    let mut outer_conn = server.conn();
    let outer = lock.acquire(&mut outer_conn).expect("outer");
    let mut retrying = Retrying::new(server.conn(), Duration::from_millis(300));
    let stalled = stall(&server, 1.5);
    let inner = lock.acquire(&mut retrying).expect("reentry");
    stalled.join().expect("stall");
    assert_eq!(inner.token(), outer.token());
    drop(inner);
    assert!(retrying.resent > 0, "the stall made the connection resend");
    assert_eq!(count_of(&server, "k", lock.owner_id()), 1);
    drop(outer);
    assert_eq!(lock_info(&mut server.conn(), "k"), None);
}

#[test]
fn a_first_acquire_resent_by_a_retrying_connection_counts_once() {
    let server = debug_server();
    let lock = fixed("k");
    let mut retrying = Retrying::new(server.conn(), Duration::from_millis(300));
    let stalled = stall(&server, 1.5);
    let guard = lock.acquire(&mut retrying).expect("acquire");
    stalled.join().expect("stall");
    assert_eq!(count_of(&server, "k", lock.owner_id()), 1);
    drop(guard);
    assert!(retrying.resent > 0, "the stall made the connection resend");
    assert_eq!(lock_info(&mut server.conn(), "k"), None);
}

#[test]
fn a_release_cut_short_by_a_stall_is_sent_again_and_counted_once() {
    let server = debug_server();
    let lock = fixed("k");
    let mut outer_conn = server.conn();
    let outer = lock.acquire(&mut outer_conn).expect("outer");
    let mut inner_conn = server.conn();
    inner_conn
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("read timeout");
    let inner = lock.acquire(&mut inner_conn).expect("inner");
    // Shorter than the three reads of 500 ms the client gives a release.
    let stalled = stall(&server, 1.0);
    assert_eq!(inner.release().expect("inner release"), 1);
    stalled.join().expect("stall");
    assert_eq!(count_of(&server, "k", lock.owner_id()), 1);
    assert_eq!(outer.release().expect("outer release"), 0);
}

#[test]
fn a_release_whose_outcome_stays_unknown_is_settled_by_the_next_call() {
    let server = debug_server();
    let lock = fixed("k");
    let mut conns: Vec<redis::Connection> = (0..3).map(|_| server.conn()).collect();
    let [a, b, c] = &mut conns[..] else {
        unreachable!()
    };
    let first = lock.acquire(a).expect("first");
    let second = lock.acquire(b).expect("second");
    c.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("read timeout");
    let third = lock.acquire(c).expect("third");
    assert_eq!(count_of(&server, "k", lock.owner_id()), 3);
    // Longer than the client's three reads: the release's outcome stays unknown.
    let stalled = stall(&server, 1.5);
    match third.release() {
        Err(Error::Redis(error)) => assert!(error.is_timeout(), "{error}"),
        other => panic!("expected a timeout, got {other:?}"),
    }
    // The next call sends the unknown release again first (it runs once in all).
    assert_eq!(second.release().expect("second release"), 1);
    stalled.join().expect("stall");
    assert_eq!(count_of(&server, "k", lock.owner_id()), 1);
    let reentered = lock.acquire(b).expect("reentry");
    assert_eq!(count_of(&server, "k", lock.owner_id()), 2);
    drop(reentered);
    assert_eq!(first.release().expect("first release"), 0);
    assert_eq!(lock_info(&mut server.conn(), "k"), None);
}

#[test]
fn an_acquire_cut_short_by_a_stall_leaves_nothing_and_a_retry_counts_once() {
    let server = debug_server();
    for (kind, lock, _) in kinds() {
        // A new hold, then a reentry, each cut short by a stall and retried by the caller.
        let mut outer_conn = server.conn();
        for held in [0, 1] {
            let outer = (held == 1).then(|| lock.acquire(&mut outer_conn).expect("outer"));
            let mut conn = server.conn();
            conn.set_read_timeout(Some(Duration::from_millis(200)))
                .expect("read timeout");
            let stalled = stall(&server, 1.0);
            match lock.acquire(&mut conn) {
                Err(Error::Redis(error)) => assert!(error.is_timeout(), "{kind}: {error}"),
                other => panic!("{kind}: expected a timeout, got {other:?}"),
            }
            stalled.join().expect("stall");
            conn.set_read_timeout(Some(Duration::from_secs(30)))
                .expect("read timeout");
            let retried = lock.acquire(&mut conn).expect("the retry");
            assert_eq!(
                count_of(&server, "k", lock.owner_id()),
                held + 1,
                "{kind}: held {held}, then the retry"
            );
            drop(retried);
            drop(outer);
            assert_eq!(holders(&mut server.conn(), "k"), vec![], "{kind}");
        }
    }
}

#[test]
fn a_wait_cut_short_by_the_read_timeout_gives_back_every_kind() {
    let server = Server::start();
    for (kind, lock, blockers) in kinds() {
        let mut blocker_conns: Vec<redis::Connection> =
            blockers.iter().map(|_| server.conn()).collect();
        let held: Vec<_> = blockers
            .iter()
            .zip(blocker_conns.iter_mut())
            .map(|(blocker, conn)| blocker.acquire(conn).expect("blocker"))
            .collect();
        let mut conn = server.conn();
        conn.set_read_timeout(Some(Duration::from_millis(200)))
            .expect("read timeout");
        match lock
            .clone()
            .wait(Duration::from_secs(60))
            .acquire(&mut conn)
        {
            Err(Error::Redis(error)) => assert!(error.is_timeout(), "{kind}: {error}"),
            other => panic!("{kind}: expected a read timeout, got {other:?}"),
        }
        // Still waiting in the server, the give-back queued behind it.
        server.wait_for_blocked_clients(1);
        drop(held);
        wait_until(&format!("{kind}: the late grant to be given back"), || {
            holders(&mut server.conn(), "k").is_empty()
        });
        server.wait_for_blocked_clients(0);
    }
}

#[test]
fn an_acquire_after_a_cut_short_wait_never_joins_it_in_line() {
    let server = Server::start();
    let mut holder_conn = server.conn();
    let holder = fixed("k").acquire(&mut holder_conn).expect("holder");
    let lock = fixed("k");
    let mut short = server.conn();
    short
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("read timeout");
    match lock
        .clone()
        .wait(Duration::from_secs(1))
        .acquire(&mut short)
    {
        Err(Error::Redis(error)) => assert!(error.is_timeout(), "{error}"),
        other => panic!("expected a read timeout, got {other:?}"),
    }
    // The cut-short request stays in line in the server for its second, its give-back
    // behind it. The same owner's next acquisition is held back until it has left: queued
    // behind it, the server would admit both together, and the give-back would then take
    // the second one's count.
    std::thread::scope(|scope| {
        let again = scope.spawn(|| {
            let mut conn = server.conn();
            let guard = lock
                .clone()
                .wait(Duration::from_secs(60))
                .acquire(&mut conn)
                .expect("acquire again");
            let count = count_of(&server, "k", lock.owner_id());
            guard.release().expect("release");
            count
        });
        // The line empties: the first request timed out and the second was not sent yet.
        server.wait_for_blocked_clients(0);
        drop(holder);
        assert_eq!(again.join().expect("thread"), 1, "one count for one guard");
    });
    assert_eq!(lock_info(&mut server.conn(), "k"), None);
}

#[cfg(feature = "tokio")]
mod async_api {
    use super::*;
    use redis::aio::MultiplexedConnection;
    use support::RetryingAsync;

    async fn connect(server: &Server, response_timeout: Option<Duration>) -> MultiplexedConnection {
        let client = redis::Client::open(server.url()).expect("client");
        let config = redis::AsyncConnectionConfig::new().set_response_timeout(response_timeout);
        client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .expect("async connection")
    }

    fn blocking<T>(f: impl FnOnce() -> T) -> T {
        tokio::task::block_in_place(f)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_release_resent_by_a_retrying_connection_takes_effect_once() {
        let server = debug_server();
        let lock = fixed("k");
        let mut outer_conn = connect(&server, None).await;
        let outer = lock.acquire_async(&mut outer_conn).await.expect("outer");
        let mut retrying = RetryingAsync::connect(&server, Duration::from_millis(300)).await;
        let inner = lock.acquire_async(&mut retrying).await.expect("inner");
        let stalled = blocking(|| stall(&server, 1.5));
        assert_eq!(inner.release().await.expect("inner release"), 1);
        blocking(|| stalled.join()).expect("stall");
        assert!(
            retrying.resent() > 0,
            "the stall made the connection resend"
        );
        assert_eq!(blocking(|| count_of(&server, "k", lock.owner_id())), 1);
        assert_eq!(outer.release().await.expect("outer release"), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_reentry_resent_by_a_retrying_connection_counts_once() {
        let server = debug_server();
        let lock = fixed("k");
        let mut outer_conn = connect(&server, None).await;
        let outer = lock.acquire_async(&mut outer_conn).await.expect("outer");
        let mut retrying = RetryingAsync::connect(&server, Duration::from_millis(300)).await;
        let stalled = blocking(|| stall(&server, 1.5));
        let inner = lock.acquire_async(&mut retrying).await.expect("reentry");
        blocking(|| stalled.join()).expect("stall");
        assert!(
            retrying.resent() > 0,
            "the stall made the connection resend"
        );
        assert_eq!(blocking(|| count_of(&server, "k", lock.owner_id())), 2);
        assert_eq!(inner.release().await.expect("inner release"), 1);
        assert_eq!(outer.release().await.expect("outer release"), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_wait_cut_short_by_the_response_timeout_gives_back_every_kind() {
        let server = Server::start();
        for (kind, lock, blockers) in kinds() {
            let mut blocker_conn = connect(&server, None).await;
            let mut held = Vec::new();
            for blocker in &blockers {
                held.push(
                    blocker
                        .acquire_async(&mut blocker_conn)
                        .await
                        .expect("blocker"),
                );
            }
            let mut short = connect(&server, Some(Duration::from_millis(200))).await;
            match lock
                .clone()
                .wait(Duration::from_secs(60))
                .acquire_async(&mut short)
                .await
            {
                Err(Error::Redis(error)) => assert!(error.is_timeout(), "{kind}: {error}"),
                other => panic!("{kind}: expected a response timeout, got {other:?}"),
            }
            blocking(|| server.wait_for_blocked_clients(1));
            for guard in held {
                guard.release().await.expect("blocker release");
            }
            blocking(|| {
                wait_until(&format!("{kind}: the late grant to be given back"), || {
                    holders(&mut server.conn(), "k").is_empty()
                });
                server.wait_for_blocked_clients(0);
            });
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dropped_acquire_future_gives_back_every_kind() {
        let server = Server::start();
        for (kind, lock, blockers) in kinds() {
            let mut blocker_conn = connect(&server, None).await;
            let mut held = Vec::new();
            for blocker in &blockers {
                held.push(
                    blocker
                        .acquire_async(&mut blocker_conn)
                        .await
                        .expect("blocker"),
                );
            }
            let mut conn = connect(&server, None).await;
            let waiter = lock.clone().wait(Duration::from_secs(60));
            let mut acquiring = Box::pin(waiter.acquire_async(&mut conn));
            // Polled until the server has it in line, then dropped mid-wait.
            tokio::select! {
                biased;
                result = &mut acquiring => panic!("{kind}: acquired while held: {result:?}"),
                () = async { blocking(|| server.wait_for_blocked_clients(1)) } => {}
            }
            drop(acquiring);
            for guard in held {
                guard.release().await.expect("blocker release");
            }
            blocking(|| {
                wait_until(
                    &format!("{kind}: the dropped future's grant to be given back"),
                    || holders(&mut server.conn(), "k").is_empty(),
                );
            });
            // The same owner takes it afresh: nothing of the dropped call is counted.
            let again = lock.acquire_async(&mut conn).await.expect("afresh");
            assert_eq!(
                blocking(|| count_of(&server, "k", lock.owner_id())),
                1,
                "{kind}"
            );
            assert_eq!(again.release().await.expect("release"), 0, "{kind}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_acquire_after_a_cut_short_wait_never_joins_it_in_line() {
        let server = Server::start();
        let mut holder_conn = connect(&server, None).await;
        let holder = fixed("k")
            .acquire_async(&mut holder_conn)
            .await
            .expect("holder");
        let lock = fixed("k").wait(Duration::from_secs(60));
        let mut short = connect(&server, Some(Duration::from_millis(200))).await;
        match lock.acquire_async(&mut short).await {
            Err(Error::Redis(error)) => assert!(error.is_timeout(), "{error}"),
            other => panic!("expected a response timeout, got {other:?}"),
        }
        // Still in line in the server; the same owner's next acquisition waits for it to be
        // answered (and its grant given back) instead of queueing behind it.
        blocking(|| server.wait_for_blocked_clients(1));
        let mut conn = connect(&server, None).await;
        let again = tokio::spawn({
            let lock = lock.clone();
            async move { lock.acquire_async(&mut conn).await }
        });
        holder.release().await.expect("holder release");
        let guard = again.await.expect("task").expect("acquire again");
        assert_eq!(blocking(|| count_of(&server, "k", lock.owner_id())), 1);
        assert_eq!(guard.release().await.expect("release"), 0);
        assert!(blocking(|| holders(&mut server.conn(), "k").is_empty()));
    }
}
