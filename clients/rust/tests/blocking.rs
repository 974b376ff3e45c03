//! The blocking API against a real redis-server with the module (one server per test).
//!
//! Run with `RLOCK_MODULE=/abs/path/to/librlock.so cargo test -p rlock-client`. No assertion
//! depends on timing: waits poll for a state with generous bounds.

#[path = "../../../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{lock_info, Server};
use rlock_client::{Error, Lock};

/// A fixed-ttl lock long enough never to expire during a test.
fn fixed(key: &str) -> Lock {
    Lock::new(key).ttl(Duration::from_secs(60))
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

/// Lets `duration` pass (a lower bound only: nothing asserts an upper bound).
fn let_pass(duration: Duration) {
    let start = Instant::now();
    while start.elapsed() < duration {
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn acquire_contention_and_nil() {
    let server = Server::start();
    let mut a = server.conn();
    let mut b = server.conn();
    let lock_a = fixed("k");
    let guard = lock_a.acquire(&mut a).expect("free lock is acquired");
    assert!(guard.token() > 0);
    assert_eq!(guard.owner(), lock_a.owner_id());
    assert!(!guard.is_lost());

    {
        let taken = fixed("k").acquire(&mut b);
        assert!(matches!(taken, Err(Error::NotAcquired)), "{taken:?}");
    }
    let taken = fixed("k").wait(Duration::from_millis(50)).acquire(&mut b);
    assert!(matches!(taken, Err(Error::NotAcquired)), "{taken:?}");
    drop(taken);

    let info = lock_info(&mut server.conn(), "k").expect("held");
    assert_eq!(info.owner, lock_a.owner_id());
    assert_eq!(info.count, 1);
    assert_eq!(info.token as u64, guard.token());
}

#[test]
fn release_on_drop_and_explicit_release() {
    let server = Server::start();
    let mut conn = server.conn();
    let lock = fixed("k");
    {
        let guard = lock.acquire(&mut conn).expect("acquire");
        assert!(guard.token() > 0);
    }
    assert_eq!(
        lock_info(&mut server.conn(), "k"),
        None,
        "dropped guard released"
    );

    let guard = lock.acquire(&mut conn).expect("acquire again");
    assert_eq!(guard.release().expect("release"), 0);
    assert_eq!(lock_info(&mut server.conn(), "k"), None);
}

#[test]
fn the_guard_lends_its_connection() {
    let server = Server::start();
    let mut conn = server.conn();
    let mut guard = fixed("k").acquire(&mut conn).expect("acquire");
    let reply: i64 = redis::cmd("INCR")
        .arg("counter")
        .query(guard.connection())
        .expect("INCR");
    assert_eq!(reply, 1);
}

#[test]
fn tokens_rise_with_every_acquisition() {
    let server = Server::start();
    let mut conn = server.conn();
    let mut last = 0;
    for key in ["a", "b", "a", "c", "a"] {
        let guard = fixed(key).acquire(&mut conn).expect("acquire");
        assert!(guard.token() > last, "{} after {last}", guard.token());
        last = guard.token();
    }
}

#[test]
fn wait_is_handed_the_lock() {
    let server = Server::start();
    let mut holder_conn = server.conn();
    let holder = fixed("k").acquire(&mut holder_conn).expect("holder");
    let holder_token = holder.token();
    std::thread::scope(|scope| {
        let waiter = scope.spawn(|| {
            let mut conn = server.conn();
            let lock = fixed("k").wait(Duration::from_secs(60));
            lock.acquire(&mut conn)
                .map(|guard| (guard.token(), guard.release()))
        });
        server.wait_for_blocked_clients(1);
        drop(holder);
        let (token, released) = waiter
            .join()
            .expect("waiter thread")
            .expect("waiter is handed the lock");
        assert!(token > holder_token);
        assert_eq!(released.expect("release"), 0);
    });
}

#[test]
fn reentry_with_the_same_owner_counts_holds() {
    let server = Server::start();
    let mut first = server.conn();
    let mut second = server.conn();
    let lock = fixed("k");
    let outer = lock.acquire(&mut first).expect("outer");
    let inner = lock.acquire(&mut second).expect("reentry");
    assert_eq!(inner.token(), outer.token(), "a reentry keeps the token");
    assert_eq!(lock_info(&mut server.conn(), "k").map(|i| i.count), Some(2));

    // Another Lock with the same owner id is the same holder.
    let mut third = server.conn();
    let same_owner = fixed("k").owner(lock.owner_id().to_vec());
    let third_hold = same_owner.acquire(&mut third).expect("same owner reenters");
    assert_eq!(third_hold.release().expect("release"), 2);

    assert_eq!(inner.release().expect("release inner"), 1);
    assert_eq!(lock_info(&mut server.conn(), "k").map(|i| i.count), Some(1));
    drop(outer);
    assert_eq!(lock_info(&mut server.conn(), "k"), None);
}

#[test]
fn watchdog_keeps_the_lock_past_its_lease_and_stops_after_release() {
    let server = Server::start();
    let client = redis::Client::open(server.url()).expect("client");
    let mut conn = server.conn();
    let lease = Duration::from_millis(1500);
    let lock = Lock::new("k").lease(lease).watchdog(client);
    let guard = lock.acquire(&mut conn).expect("acquire");
    let acquired = Instant::now();

    // Two leases pass; the watchdog renews every third of one.
    let mut check = server.conn();
    while acquired.elapsed() < lease * 2 {
        let info = lock_info(&mut check, "k").expect("still held");
        assert_eq!(info.owner, lock.owner_id());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(renew_calls(&server) >= 1);
    assert!(!guard.is_lost());

    guard.release().expect("release");
    let after_release = renew_calls(&server);
    let_pass(lease);
    assert_eq!(
        renew_calls(&server),
        after_release,
        "no renewal after release"
    );
    assert_eq!(lock_info(&mut check, "k"), None);
}

#[test]
fn watchdog_reports_loss_after_del() {
    let server = Server::start();
    let client = redis::Client::open(server.url()).expect("client");
    let mut conn = server.conn();
    let lock = Lock::new("k")
        .lease(Duration::from_secs(1))
        .watchdog(client);
    let guard = lock.acquire(&mut conn).expect("acquire");
    assert!(!guard.is_lost());
    redis::cmd("DEL")
        .arg("k")
        .exec(&mut server.conn())
        .expect("DEL");
    common::wait_until("the guard to report loss", || guard.is_lost());
    assert!(matches!(guard.release(), Err(Error::NotHeld { .. })));
}

#[test]
fn watchdog_reports_loss_after_expiry() {
    let server = Server::start();
    let client = redis::Client::open(server.url()).expect("client");
    let mut conn = server.conn();
    let lock = Lock::new("k")
        .lease(Duration::from_secs(1))
        .watchdog(client);
    let guard = lock.acquire(&mut conn).expect("acquire");
    // An admin shortens the expiry: the lock expires before the next renewal.
    redis::cmd("PEXPIRE")
        .arg("k")
        .arg(1)
        .exec(&mut server.conn())
        .expect("PEXPIRE");
    common::wait_until("the guard to report loss", || guard.is_lost());
    // Someone else may take it now.
    let mut other = server.conn();
    assert!(fixed("k").acquire(&mut other).is_ok());
}

#[test]
fn a_fixed_ttl_lock_is_lost_once_its_ttl_passed() {
    let server = Server::start();
    let mut conn = server.conn();
    let mut guard = Lock::new("k")
        .ttl(Duration::from_millis(100))
        .acquire(&mut conn)
        .expect("acquire");
    common::wait_until("the ttl to pass", || guard.is_lost());
    common::wait_until("the server to free it", || {
        lock_info(&mut server.conn(), "k").is_none()
    });
    assert!(matches!(
        guard.renew(Duration::from_secs(1)),
        Err(Error::NotHeld { .. })
    ));
}

#[test]
fn renew_extends_a_fixed_ttl() {
    let server = Server::start();
    let mut conn = server.conn();
    let mut guard = Lock::new("k")
        .ttl(Duration::from_secs(5))
        .acquire(&mut conn)
        .expect("acquire");
    guard.renew(Duration::from_secs(600)).expect("renew");
    let ttl = lock_info(&mut server.conn(), "k").map(|i| i.ttl);
    assert!(ttl.is_some_and(|ttl| ttl > 5_000), "{ttl:?}");
}

#[test]
fn replica_sync_with_no_replica_wanted_or_attached() {
    let server = Server::start();
    let mut conn = server.conn();
    let guard = fixed("k")
        .replicas(0, Duration::from_millis(100))
        .acquire(&mut conn)
        .expect("0 replicas: nothing to wait for");
    drop(guard);

    let refused = fixed("k")
        .replicas(1, Duration::from_millis(100))
        .acquire(&mut conn);
    assert!(
        matches!(
            refused,
            Err(Error::ReplicasNotSynced {
                wanted: 1,
                acked: 0
            })
        ),
        "{refused:?}"
    );
    assert_eq!(lock_info(&mut server.conn(), "k"), None, "released again");
}

#[test]
fn replica_sync_with_one_replica() {
    let master = Server::start();
    let replica = Server::start();
    replica.replicate_from(&master);
    let mut conn = master.conn();
    let lock = fixed("k").replicas(1, Duration::from_secs(10));
    let guard = lock.acquire(&mut conn).expect("one replica acknowledges");
    // WAIT answered only after the replica had it.
    let info = lock_info(&mut replica.conn(), "k").expect("on the replica");
    assert_eq!(info.owner, lock.owner_id());
    assert_eq!(info.token as u64, guard.token());
}

#[test]
fn errors_are_typed() {
    let server = Server::start();
    let mut conn = server.conn();
    assert!(matches!(
        fixed("k").owner("").acquire(&mut conn),
        Err(Error::InvalidOwner(_))
    ));
    assert!(matches!(
        fixed("k").owner(vec![b'o'; 1025]).acquire(&mut conn),
        Err(Error::InvalidOwner(_))
    ));
    assert!(matches!(
        Lock::new("k")
            .ttl(Duration::from_millis(2_592_000_001))
            .acquire(&mut conn),
        Err(Error::InvalidDuration { what: "ttl", .. })
    ));
    assert!(matches!(
        fixed("k")
            .wait(Duration::from_secs(40 * 24 * 3600))
            .acquire(&mut conn),
        Err(Error::InvalidDuration { what: "wait", .. })
    ));
    assert!(matches!(
        Lock::new("k").acquire(&mut conn),
        Err(Error::NoWatchdogClient)
    ));
    assert_eq!(lock_info(&mut server.conn(), "k"), None, "nothing was sent");

    redis::cmd("SET")
        .arg("string")
        .arg("v")
        .exec(&mut server.conn())
        .expect("SET");
    match fixed("string").acquire(&mut conn) {
        Err(Error::Redis(error)) => assert_eq!(error.code(), Some("WRONGTYPE"), "{error}"),
        other => panic!("expected WRONGTYPE, got {other:?}"),
    }

    let guard = fixed("k").acquire(&mut conn).expect("acquire");
    redis::cmd("DEL")
        .arg("k")
        .exec(&mut server.conn())
        .expect("DEL");
    assert!(matches!(guard.release(), Err(Error::NotHeld { .. })));
}

#[test]
fn a_wait_cut_short_by_the_read_timeout_leaves_no_lock_behind() {
    let server = Server::start();
    let mut holder_conn = server.conn();
    let holder = fixed("k").acquire(&mut holder_conn).expect("holder");
    let mut conn = server.conn();
    conn.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("read timeout");
    let waiter = fixed("k").wait(Duration::from_secs(60));
    match waiter.acquire(&mut conn) {
        Err(Error::Redis(error)) => assert!(error.is_timeout(), "{error}"),
        other => panic!("expected a read timeout, got {other:?}"),
    }
    // The acquisition still waits in the server, with the release queued behind it.
    server.wait_for_blocked_clients(1);
    drop(holder);
    common::wait_until("the late grant to be given back", || {
        lock_info(&mut server.conn(), "k").is_none()
    });
}
