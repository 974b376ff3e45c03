//! MultiLock against a real redis-server with the module: all or nothing, tokens per key,
//! opposite key orders never deadlock, a wait that closes a cycle is `Error::Deadlock`.

#[path = "../../../tests/common/mod.rs"]
mod common;

use std::time::Duration;

use common::Server;
use rlock_client::{Error, MultiLock};

fn accounts() -> [&'static str; 2] {
    ["{bank}:acct:7", "{bank}:acct:9"]
}

#[test]
fn every_key_or_none_with_a_token_each() {
    let server = Server::start();
    let mut conn = server.conn();
    let lock = MultiLock::new(accounts()).ttl(Duration::from_secs(60));
    let guard = lock.acquire(&mut conn).expect("free keys");
    assert_eq!(guard.tokens().len(), 2);
    assert!(guard.tokens()[0] < guard.tokens()[1]);
    let other = MultiLock::new(accounts().into_iter().rev()).ttl(Duration::from_secs(60));
    assert!(matches!(other.acquire(&mut conn), Err(Error::NotAcquired)));
    guard.renew(&mut conn).expect("renewed");
    guard.release(&mut conn).expect("released");
    assert!(other.acquire(&mut conn).is_ok());
    assert!(matches!(
        MultiLock::new(["a", "a"]).acquire(&mut conn),
        Err(Error::InvalidKeys)
    ));
}

#[test]
fn transfers_in_opposite_orders_all_complete() {
    let server = Server::start();
    let threads: Vec<_> = [false, true]
        .into_iter()
        .map(|reversed| {
            let mut conn = server.conn();
            std::thread::spawn(move || {
                let mut keys = accounts().to_vec();
                if reversed {
                    keys.reverse();
                }
                let lock = MultiLock::new(keys)
                    .ttl(Duration::from_secs(60))
                    .wait(Duration::from_secs(30));
                for _ in 0..20 {
                    let guard = lock.acquire(&mut conn).expect("granted");
                    guard.release(&mut conn).expect("released");
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("no transfer failed");
    }
}

#[test]
fn a_wait_closing_a_cycle_is_a_deadlock_error() {
    let server = Server::start();
    let mut conn = server.conn();
    let [k1, k2] = accounts();
    let _: i64 = redis::cmd("LOCK.ACQUIRE")
        .arg(k1)
        .arg("A")
        .arg(60000)
        .query(&mut conn)
        .expect("A");
    let _: i64 = redis::cmd("LOCK.ACQUIRE")
        .arg(k2)
        .arg("B")
        .arg(60000)
        .query(&mut conn)
        .expect("B");
    let mut waiter_conn = server.conn();
    let waiter = std::thread::spawn(move || {
        redis::cmd("LOCK.ACQUIRE")
            .arg(k1)
            .arg("B")
            .arg(60000)
            .arg("WAIT")
            .arg(30000)
            .query::<Option<i64>>(&mut waiter_conn)
    });
    server.wait_for_blocked_clients(1);
    let lock = MultiLock::new([k2, "{bank}:acct:1"])
        .owner("A")
        .wait(Duration::from_secs(10));
    match lock.acquire(&mut conn) {
        Err(Error::Deadlock(cycle)) => assert_eq!(
            cycle,
            format!("'{k2}' is held by 'B', which waits for '{k1}', held by 'A'")
        ),
        other => panic!("{other:?}"),
    }
    let _: i64 = redis::cmd("LOCK.RELEASE")
        .arg(k1)
        .arg("A")
        .query(&mut conn)
        .expect("release");
    assert!(waiter.join().expect("waiter").expect("reply").is_some());
}
