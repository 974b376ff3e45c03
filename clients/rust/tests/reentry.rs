//! Reentry and hold counts (issue 18): each guard is exactly one count, for every kind of
//! hold, released in any order; a reentry into a hold that expired is `NotHeld` and never
//! takes the lock afresh; a nested guard with a shorter ttl or lease never shortens the
//! outer hold; watched leases below 1 s are refused; a count changed behind the client's
//! back is a typed error. No assertion depends on timing: the only sleeps let a ttl pass,
//! which is the point of those tests.

#[path = "../../../tests/common/mod.rs"]
mod common;
mod support;

use std::time::{Duration, Instant};

use common::{wait_until, Server};
use rlock_client::{Error, Lock, MIN_LEASE};
use support::{count_of, holders};

fn fixed(key: &str) -> Lock {
    Lock::new(key).ttl(Duration::from_secs(60))
}

fn kinds() -> Vec<(&'static str, Lock)> {
    vec![
        ("exclusive", fixed("k")),
        ("shared", fixed("k").shared()),
        ("limit", fixed("k").limit(3)),
        ("session", fixed("k").session()),
    ]
}

/// Lets `duration` pass (a lower bound only).
fn let_pass(duration: Duration) {
    let start = Instant::now();
    while start.elapsed() < duration {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// How often `LOCK.RENEW` has run on the server (INFO commandstats).
fn renew_calls(server: &Server) -> u64 {
    server
        .info_field("commandstats", "cmdstat_lock.renew")
        .and_then(|stats| {
            let calls = stats.split(',').next()?.strip_prefix("calls=")?.to_string();
            calls.parse().ok()
        })
        .unwrap_or(0)
}

#[test]
fn every_guard_is_one_count_released_in_any_order() {
    let server = Server::start();
    // The order in which three nested guards go: inner first, outer first, middle first.
    let orders: [[usize; 3]; 3] = [[2, 1, 0], [0, 1, 2], [1, 0, 2]];
    for (kind, lock) in kinds() {
        for order in orders {
            let mut conns: Vec<redis::Connection> = (0..3).map(|_| server.conn()).collect();
            let mut guards: Vec<Option<_>> = conns
                .iter_mut()
                .map(|conn| Some(lock.acquire(conn).expect("acquire")))
                .collect();
            assert_eq!(count_of(&server, "k", lock.owner_id()), 3, "{kind}");
            for (released, &index) in order.iter().enumerate() {
                let guard = guards[index].take().expect("guard");
                let left = 2 - released as u64;
                if released % 2 == 0 {
                    assert_eq!(guard.release().expect("release"), left, "{kind} {order:?}");
                } else {
                    drop(guard);
                }
                assert_eq!(
                    count_of(&server, "k", lock.owner_id()),
                    left as i64,
                    "{kind} {order:?}: one count per guard"
                );
            }
            assert!(holders(&mut server.conn(), "k").is_empty(), "{kind}");
        }
    }
}

#[test]
fn read_and_write_guards_of_one_owner_are_one_count_each() {
    let server = Server::start();
    let owner = "me";
    let (mut a, mut b) = (server.conn(), server.conn());
    let write = fixed("k").owner(owner).acquire(&mut a).expect("write");
    let read = fixed("k")
        .owner(owner)
        .shared()
        .acquire(&mut b)
        .expect("read");
    assert_eq!(count_of(&server, "k", owner.as_bytes()), 2);
    // The downgrade: the write guard goes first, the read hold stays.
    assert_eq!(write.release().expect("write release"), 1);
    let mut other = server.conn();
    assert!(matches!(
        fixed("k").acquire(&mut other),
        Err(Error::NotAcquired)
    ));
    assert_eq!(read.release().expect("read release"), 0);
    assert!(holders(&mut server.conn(), "k").is_empty());
}

#[test]
fn a_reentry_after_the_ttl_passed_is_not_held() {
    let server = Server::start();
    let lock = Lock::new("k").ttl(Duration::from_millis(100));
    let mut first = server.conn();
    let outer = lock.acquire(&mut first).expect("outer");
    wait_until("the ttl to pass", || {
        holders(&mut server.conn(), "k").is_empty()
    });
    let mut second = server.conn();
    match lock.acquire(&mut second) {
        Err(Error::NotHeld { .. }) => {}
        other => panic!("a reentry into the expired hold: expected NotHeld, got {other:?}"),
    }
    assert!(
        holders(&mut server.conn(), "k").is_empty(),
        "not taken afresh"
    );
    assert!(outer.is_lost());
    assert!(matches!(outer.release(), Err(Error::NotHeld { .. })));
    let fresh = lock
        .acquire(&mut second)
        .expect("afresh, once the guards are gone");
    drop(fresh);
}

#[test]
fn a_nested_guard_with_a_shorter_ttl_does_not_cut_the_outer_hold() {
    let server = Server::start();
    let lock = fixed("k");
    let mut first = server.conn();
    let mut second = server.conn();
    let outer = lock.acquire(&mut first).expect("outer");
    let inner = lock
        .clone()
        .ttl(Duration::from_millis(50))
        .acquire(&mut second)
        .expect("inner");
    // Past the inner ttl: the hold keeps the outer one, on the server and for both guards.
    let_pass(Duration::from_millis(100));
    let held = holders(&mut server.conn(), "k");
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].count, 2);
    assert!(held[0].ttl > 1000, "the outer ttl stays: {held:?}");
    assert!(!inner.is_lost(), "the inner guard shares the outer hold");
    assert!(!outer.is_lost());
    assert_eq!(inner.release().expect("inner release"), 1);
    assert_eq!(outer.release().expect("outer release"), 0);
}

#[test]
fn a_lease_below_one_second_is_refused() {
    let server = Server::start();
    let client = redis::Client::open(server.url()).expect("client");
    let mut conn = server.conn();
    let short = MIN_LEASE - Duration::from_millis(1);
    match Lock::new("k")
        .lease(short)
        .watchdog(client.clone())
        .acquire(&mut conn)
    {
        Err(Error::LeaseTooShort(lease)) => assert_eq!(lease, short),
        other => panic!("expected LeaseTooShort, got {other:?}"),
    }
    assert!(holders(&mut server.conn(), "k").is_empty(), "nothing sent");
    let watched = Lock::new("k").lease(MIN_LEASE).watchdog(client);
    drop(watched.acquire(&mut conn).expect("a 1 s lease"));
    // A fixed ttl has no lower bound: nothing renews it.
    let brief = Lock::new("k").ttl(Duration::from_millis(1));
    drop(brief.acquire(&mut conn).expect("a 1 ms ttl"));
}

#[test]
fn a_count_changed_behind_the_clients_back_is_a_held_mismatch() {
    let server = Server::start();
    let lock = fixed("k");
    let mut conn = server.conn();
    let guard = lock.acquire(&mut conn).expect("acquire");
    // Another client reenters with the same owner id.
    let _: i64 = redis::cmd("LOCK.ACQUIRE")
        .arg("k")
        .arg(lock.owner_id())
        .arg(60_000)
        .query(&mut server.conn())
        .expect("raw reentry");
    match guard.release() {
        Err(Error::HeldMismatch {
            expected: 1,
            held: 2,
        }) => {}
        other => panic!("expected HeldMismatch, got {other:?}"),
    }
    assert_eq!(
        count_of(&server, "k", lock.owner_id()),
        2,
        "nothing changed"
    );
}

#[cfg(feature = "tokio")]
mod async_api {
    use super::*;
    use redis::aio::MultiplexedConnection;

    async fn connect(server: &Server) -> MultiplexedConnection {
        let client = redis::Client::open(server.url()).expect("client");
        client
            .get_multiplexed_async_connection()
            .await
            .expect("async connection")
    }

    fn blocking<T>(f: impl FnOnce() -> T) -> T {
        tokio::task::block_in_place(f)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_guard_is_one_count_released_in_any_order() {
        let server = Server::start();
        let mut conn = connect(&server).await;
        for (kind, lock) in kinds() {
            let mut guards = Vec::new();
            for _ in 0..3 {
                guards.push(Some(lock.acquire_async(&mut conn).await.expect("acquire")));
            }
            for (released, index) in [0, 2, 1].into_iter().enumerate() {
                let guard = guards[index].take().expect("guard");
                let left = 2 - released as u64;
                assert_eq!(guard.release().await.expect("release"), left, "{kind}");
                assert_eq!(
                    blocking(|| count_of(&server, "k", lock.owner_id())),
                    left as i64,
                    "{kind}"
                );
            }
            // Dropped guards are released too, one count each.
            let first = lock.acquire_async(&mut conn).await.expect("acquire");
            let second = lock.acquire_async(&mut conn).await.expect("reentry");
            drop(first);
            blocking(|| {
                wait_until("the dropped guard's release", || {
                    count_of(&server, "k", lock.owner_id()) == 1
                })
            });
            drop(second);
            blocking(|| {
                wait_until("the last release", || {
                    holders(&mut server.conn(), "k").is_empty()
                })
            });
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_reentry_after_the_ttl_passed_is_not_held() {
        let server = Server::start();
        let lock = Lock::new("k").ttl(Duration::from_millis(100));
        let mut conn = connect(&server).await;
        let outer = lock.acquire_async(&mut conn).await.expect("outer");
        blocking(|| {
            wait_until("the ttl to pass", || {
                holders(&mut server.conn(), "k").is_empty()
            })
        });
        match lock.acquire_async(&mut conn).await {
            Err(Error::NotHeld { .. }) => {}
            other => panic!("a reentry into the expired hold: expected NotHeld, got {other:?}"),
        }
        assert!(blocking(|| holders(&mut server.conn(), "k").is_empty()));
        assert!(matches!(outer.release().await, Err(Error::NotHeld { .. })));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_nested_watched_lease_does_not_cut_a_longer_outer_ttl() {
        let server = Server::start();
        let lock = fixed("k");
        let mut conn = connect(&server).await;
        let outer = lock.acquire_async(&mut conn).await.expect("outer");
        // The nested guard's watchdog renews every third of a second, to no less than the
        // hold already has.
        let inner = lock
            .clone()
            .lease(MIN_LEASE)
            .acquire_async(&mut conn)
            .await
            .expect("inner");
        let before = blocking(|| renew_calls(&server));
        blocking(|| {
            wait_until("two renewals", || renew_calls(&server) >= before + 2);
        });
        let held = blocking(|| holders(&mut server.conn(), "k"));
        assert!(held[0].ttl > 10_000, "the outer ttl stays: {held:?}");
        assert_eq!(inner.release().await.expect("inner release"), 1);
        assert_eq!(outer.release().await.expect("outer release"), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lease_below_one_second_is_refused() {
        let server = Server::start();
        let mut conn = connect(&server).await;
        let short = Lock::new("k").lease(Duration::from_millis(300));
        assert!(matches!(
            short.acquire_async(&mut conn).await,
            Err(Error::LeaseTooShort(_))
        ));
        assert!(blocking(|| holders(&mut server.conn(), "k").is_empty()));
    }
}
