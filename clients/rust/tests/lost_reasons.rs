//! Why a hold was lost (issue 21, item 2): a release, renewal or reentry that finds the hold
//! gone carries the server's `LOCK.LOST` record in `Error::NotHeld { reason }`: expired (and
//! how late), deleted, flushed, session closed, taken over; and a `LOCK.LOST` that fails never
//! hides the `NotHeld`. Against a real server; no assertion depends on timing (the server's
//! own clock is read with `TIME` around the calls).

#[path = "../../../tests/common/mod.rs"]
mod common;
mod support;

use std::time::Duration;

use common::{wait_until, Server};
use rlock_client::{Error, Lock, LossReason, LostBy};
use support::{client_id, holders, kill_client};

/// A ttl far beyond any test: only what the test does ends the hold.
fn long(key: &str) -> Lock {
    Lock::new(key).ttl(Duration::from_secs(3600))
}

/// The server's clock, in unix ms.
fn server_ms(server: &Server) -> i64 {
    let (secs, micros): (i64, i64) = redis::cmd("TIME").query(&mut server.conn()).expect("TIME");
    secs * 1000 + micros / 1000
}

/// The reason of a `NotHeld`, or a panic naming what came instead.
fn reason<T: std::fmt::Debug>(result: Result<T, Error>, what: &str) -> LossReason {
    match result {
        Err(Error::NotHeld {
            reason: Some(reason),
        }) => *reason,
        other => panic!("{what}: expected NotHeld with a reason, got {other:?}"),
    }
}

#[test]
fn an_expired_hold_says_when_it_expired_and_how_late_the_release_came() {
    let server = Server::start();
    let ttl = Duration::from_millis(300);
    let mut conn = server.conn();
    let before = server_ms(&server);
    let guard = Lock::new("k").ttl(ttl).acquire(&mut conn).expect("acquire");
    let token = guard.token();
    wait_until("the hold to expire", || {
        holders(&mut server.conn(), "k").is_empty()
    });
    // Let the server's clock pass the expiry by at least 100 ms: the release is that late.
    let expired_by = server_ms(&server);
    wait_until("100 ms more on the server's clock", || {
        server_ms(&server) >= expired_by + 100
    });
    let released_from = server_ms(&server);
    let loss = reason(guard.release(), "release after the expiry");
    let after = server_ms(&server);
    assert_eq!(loss.by, LostBy::Expired);
    assert_eq!(loss.token, token, "the record of this very hold");
    assert_eq!(loss.kind, "exclusive");
    assert!(loss.holders.is_empty(), "free: {:?}", loss.holders);
    // Expired after the grant and no later than the server saw the key free.
    assert!(
        before < loss.at_unix_ms && loss.at_unix_ms <= expired_by,
        "expired at {} (granted after {before}, seen free at {expired_by})",
        loss.at_unix_ms
    );
    // `ago` is how late the release came: at least the 100 ms waited past the expiry, and
    // `at + ago` is the moment LOCK.LOST answered.
    let ago = loss.ago.as_millis() as i64;
    assert!(ago >= released_from - expired_by, "ago {ago} ms");
    let answered = loss.at_unix_ms + ago;
    assert!(
        released_from <= answered && answered <= after,
        "answered at {answered}, between {released_from} and {after}"
    );
    // How long it was held is the server's estimate from the token's clock part.
    assert!(!loss.held.is_zero(), "held {:?}", loss.held);
}

#[test]
fn a_deleted_hold_says_deleted_on_renew_and_release() {
    let server = Server::start();
    let mut conn = server.conn();
    let mut guard = long("k").acquire(&mut conn).expect("acquire");
    let deleted: i64 = redis::cmd("DEL")
        .arg("k")
        .query(&mut server.conn())
        .expect("DEL");
    assert_eq!(deleted, 1);
    let loss = reason(guard.renew(Duration::from_secs(60)), "renew after DEL");
    assert_eq!(loss.by, LostBy::Deleted);
    assert_eq!(loss.token, guard.token());
    assert!(guard.is_lost());
    let again = reason(guard.release(), "release after DEL");
    // The same record, asked again (only `ago` moved on).
    assert_eq!(
        (again.by, again.at_unix_ms, again.token),
        (loss.by, loss.at_unix_ms, loss.token)
    );
    assert!(again.ago >= loss.ago);
}

#[test]
fn a_flushed_hold_says_flushed() {
    let server = Server::start();
    let mut conn = server.conn();
    let guard = long("k").acquire(&mut conn).expect("acquire");
    let () = redis::cmd("FLUSHALL")
        .query(&mut server.conn())
        .expect("FLUSHALL");
    let loss = reason(guard.release(), "release after FLUSHALL");
    assert_eq!(loss.by, LostBy::Flushed);
    assert!(loss.to_string().starts_with("flushed"), "{loss}");
}

#[test]
fn a_reentry_after_the_session_connection_closed_says_session_closed() {
    let server = Server::start();
    let lock = long("k").session();
    let mut first = server.conn();
    let mut outer = lock.acquire(&mut first).expect("session hold");
    let token = outer.token();
    let id = client_id(outer.connection());
    kill_client(&server, id);
    wait_until("the hold to end with its connection", || {
        holders(&mut server.conn(), "k").is_empty()
    });
    let mut second = server.conn();
    let loss = reason(lock.acquire(&mut second), "reentry after the kill");
    assert_eq!(loss.by, LostBy::SessionClosed);
    assert_eq!(loss.token, token);
    assert!(outer.is_lost());
    // Known lost now: the refusal sends no LOCK.ACQUIRE, and still says why.
    let known = reason(lock.acquire(&mut second), "reentry known lost");
    assert_eq!(known.by, LostBy::SessionClosed);
    // The killed connection cannot ask: the release is NotHeld without a reason.
    match outer.release() {
        Err(Error::NotHeld { reason: None }) => {}
        other => panic!("release over the killed connection: {other:?}"),
    }
}

#[test]
fn a_hold_taken_over_after_its_expiry_names_the_new_holder() {
    let server = Server::start();
    let mut conn = server.conn();
    let guard = Lock::new("k")
        .ttl(Duration::from_millis(200))
        .acquire(&mut conn)
        .expect("acquire");
    let mut rival_conn = server.conn();
    let rival = Lock::new("k").ttl(Duration::from_secs(3600));
    let held = rival
        .clone()
        .wait(Duration::from_secs(60))
        .acquire(&mut rival_conn)
        .expect("the rival is handed the lock at the expiry");
    assert!(held.token() > guard.token());
    let owner = guard.owner().to_vec();
    let loss = reason(guard.release(), "release after the takeover");
    assert_eq!(loss.by, LostBy::Expired);
    assert!(loss.taken_over(&owner));
    assert_eq!(loss.holders.len(), 1);
    assert_eq!(loss.holders[0].owner, rival.owner_id());
    assert_eq!(loss.holders[0].token, held.token());
    assert_eq!(held.release().expect("rival release"), 0);
}

#[test]
fn a_failing_lock_lost_leaves_not_held_without_a_reason() {
    let server = Server::start();
    let mut admin = server.conn();
    let () = redis::cmd("ACL")
        .arg(&[
            "SETUSER",
            "app",
            "on",
            "nopass",
            "~*",
            "+@all",
            "-lock.lost",
        ])
        .query(&mut admin)
        .expect("ACL SETUSER");
    let mut conn = server.conn();
    let () = redis::cmd("AUTH")
        .arg(&["app", "any"])
        .query(&mut conn)
        .expect("AUTH");
    let mut guard = long("k").acquire(&mut conn).expect("acquire");
    let _: i64 = redis::cmd("DEL").arg("k").query(&mut admin).expect("DEL");
    match guard.renew(Duration::from_secs(60)) {
        Err(Error::NotHeld { reason: None }) => {}
        other => panic!("renew with LOCK.LOST refused: {other:?}"),
    }
    match guard.release() {
        Err(Error::NotHeld { reason: None }) => {}
        other => panic!("release with LOCK.LOST refused: {other:?}"),
    }
    // The connection stays usable: the refusal was one reply.
    let pong: String = redis::cmd("PING").query(&mut conn).expect("PING");
    assert_eq!(pong, "PONG");
}

#[cfg(feature = "tokio")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_async_guard_says_why_too() {
    let server = Server::start();
    let client = redis::Client::open(server.url()).expect("client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("async connection");
    let mut guard = long("k").acquire_async(&mut conn).await.expect("acquire");
    let deleted: i64 = redis::cmd("DEL")
        .arg("k")
        .query(&mut server.conn())
        .expect("DEL");
    assert_eq!(deleted, 1);
    let loss = reason(guard.renew(Duration::from_secs(60)).await, "async renew");
    assert_eq!(loss.by, LostBy::Deleted);
    let loss = reason(guard.release().await, "async release");
    assert_eq!(loss.by, LostBy::Deleted);
}
