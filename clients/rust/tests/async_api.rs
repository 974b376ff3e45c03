#![cfg(feature = "tokio")]

//! The async (tokio) API against a real redis-server with the module (one server per test).
//!
//! The harness' blocking connections inspect the server; the runtime has worker threads to
//! spare for that. No assertion depends on timing: waits poll for a state with generous
//! bounds.

#[path = "../../../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{lock_info, Server, WAIT_TIMEOUT};
use redis::aio::MultiplexedConnection;
use redis::AsyncConnectionConfig;
use rlock_client::{AsyncLockGuard, Error, Lock};

/// A multiplexed connection without a response timeout (waits may be long).
async fn connect(server: &Server) -> MultiplexedConnection {
    connect_with(server, None).await
}

async fn connect_with(
    server: &Server,
    response_timeout: Option<Duration>,
) -> MultiplexedConnection {
    let client = redis::Client::open(server.url()).expect("client");
    let config = AsyncConnectionConfig::new().set_response_timeout(response_timeout);
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .expect("async connection")
}

fn fixed(key: &str) -> Lock {
    Lock::new(key).ttl(Duration::from_secs(60))
}

/// Waits (at most the harness' timeout) for `guard.lost()` to resolve.
async fn until_lost(guard: &AsyncLockGuard<MultiplexedConnection>, what: &str) {
    let lost = tokio::time::timeout(WAIT_TIMEOUT, guard.lost()).await;
    assert!(lost.is_ok(), "timed out waiting for {what}");
}

/// Polls the server until `key` is free.
async fn wait_until_free(server: &Server, key: &str, what: &str) {
    let deadline = Instant::now() + WAIT_TIMEOUT;
    let mut check = server.conn();
    while lock_info(&mut check, key).is_some() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acquire_contention_release() {
    let server = Server::start();
    let mut conn = connect(&server).await;
    let lock = fixed("k");
    let guard = lock.acquire_async(&mut conn).await.expect("acquire");
    assert!(guard.token() > 0);
    assert!(!guard.is_lost());
    let taken = fixed("k").acquire_async(&mut conn).await;
    assert!(matches!(taken, Err(Error::NotAcquired)), "{taken:?}");
    let info = lock_info(&mut server.conn(), "k").expect("held");
    assert_eq!(info.owner, lock.owner_id());

    assert_eq!(guard.release().await.expect("release"), 0);
    assert_eq!(lock_info(&mut server.conn(), "k"), None);

    let again = fixed("k").acquire_async(&mut conn).await.expect("again");
    assert!(again.token() > info.token as u64, "tokens rise");
    again.release().await.expect("release");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_guard_is_released() {
    let server = Server::start();
    let mut conn = connect(&server).await;
    let guard = fixed("k").acquire_async(&mut conn).await.expect("acquire");
    drop(guard);
    wait_until_free(&server, "k", "the dropped guard's release").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_handoff_and_reentry() {
    let server = Server::start();
    let mut holder_conn = connect(&server).await;
    let lock = fixed("k");
    let holder = lock.acquire_async(&mut holder_conn).await.expect("holder");
    let inner = lock.acquire_async(&mut holder_conn).await.expect("reentry");
    assert_eq!(inner.token(), holder.token());
    assert_eq!(lock_info(&mut server.conn(), "k").map(|i| i.count), Some(2));

    let mut waiter_conn = connect(&server).await;
    let waiter = tokio::spawn(async move {
        let lock = fixed("k").wait(Duration::from_secs(60));
        lock.acquire_async(&mut waiter_conn).await
    });
    tokio::task::block_in_place(|| server.wait_for_blocked_clients(1));
    assert_eq!(inner.release().await.expect("inner"), 1);
    assert_eq!(holder.release().await.expect("outer"), 0);
    let handed = waiter
        .await
        .expect("waiter task")
        .expect("waiter is handed the lock");
    let info = lock_info(&mut server.conn(), "k").expect("held by the waiter");
    assert_eq!(info.owner, handed.owner());
    assert!(handed.token() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchdog_keeps_the_lease_then_reports_loss_after_del() {
    let server = Server::start();
    let mut conn = connect(&server).await;
    let lease = Duration::from_millis(1500);
    let lock = Lock::new("k").lease(lease);
    let guard = lock.acquire_async(&mut conn).await.expect("acquire");
    let acquired = Instant::now();
    let mut check = server.conn();
    while acquired.elapsed() < lease * 2 {
        let info = lock_info(&mut check, "k").expect("still held");
        assert_eq!(info.owner, lock.owner_id());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!guard.is_lost());

    redis::cmd("DEL").arg("k").exec(&mut check).expect("DEL");
    until_lost(&guard, "lost() resolves after DEL").await;
    assert!(guard.is_lost());
    assert!(matches!(guard.release().await, Err(Error::NotHeld { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loss_after_expiry_and_after_flushall() {
    let server = Server::start();
    let mut conn = connect(&server).await;
    let expiring = Lock::new("a").lease(Duration::from_secs(1));
    let flushed = Lock::new("b").lease(Duration::from_secs(1));
    let a = expiring.acquire_async(&mut conn).await.expect("a");
    let b = flushed.acquire_async(&mut conn).await.expect("b");
    let mut admin = server.conn();
    redis::cmd("PEXPIRE")
        .arg("a")
        .arg(1)
        .exec(&mut admin)
        .expect("PEXPIRE");
    until_lost(&a, "loss after expiry").await;
    assert!(!b.is_lost());
    redis::cmd("FLUSHALL").exec(&mut admin).expect("FLUSHALL");
    until_lost(&b, "loss after FLUSHALL").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fixed_ttl_guard_is_lost_when_the_ttl_passes() {
    let server = Server::start();
    let mut conn = connect(&server).await;
    let guard = Lock::new("k")
        .ttl(Duration::from_millis(100))
        .acquire_async(&mut conn)
        .await
        .expect("acquire");
    until_lost(&guard, "lost() resolves at the ttl").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_wait_leaves_no_lock_behind() {
    let server = Server::start();
    let mut holder_conn = connect(&server).await;
    let holder = fixed("k")
        .acquire_async(&mut holder_conn)
        .await
        .expect("holder");
    let tokens_before = holder.token();

    let mut waiter_conn = connect(&server).await;
    let waiter = fixed("k").wait(Duration::from_secs(60));
    let mut acquiring = Box::pin(waiter.acquire_async(&mut waiter_conn));
    // Poll it until the server has the waiter in line, then drop the future. Biased: the
    // acquisition is polled (and sends its request) before the blocking wait starts.
    let blocked = tokio::select! {
        biased;
        result = &mut acquiring => panic!("acquired while the lock is held: {result:?}"),
        () = async {
            tokio::task::block_in_place(|| server.wait_for_blocked_clients(1));
        } => true,
    };
    assert!(blocked);
    drop(acquiring);

    // The grant arrives for nobody; the acquiring task gives it back.
    holder.release().await.expect("release");
    wait_until_free(
        &server,
        "k",
        "the cancelled acquisition's grant to be released",
    )
    .await;
    let last_token: i64 = server
        .info_field("lock", "lock_last_token")
        .and_then(|t| t.parse().ok())
        .expect("INFO lock_last_token");
    assert!(last_token as u64 > tokens_before, "the waiter was granted");
    // The connection is still usable.
    let next = fixed("k")
        .acquire_async(&mut waiter_conn)
        .await
        .expect("next");
    assert!(next.token() > last_token as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_cut_short_by_the_response_timeout_leaves_no_lock_behind() {
    let server = Server::start();
    let mut holder_conn = connect(&server).await;
    let holder = fixed("k")
        .acquire_async(&mut holder_conn)
        .await
        .expect("holder");
    let mut short = connect_with(&server, Some(Duration::from_millis(200))).await;
    let waiter = fixed("k").wait(Duration::from_secs(60));
    match waiter.acquire_async(&mut short).await {
        Err(Error::Redis(error)) => assert!(error.is_timeout(), "{error}"),
        other => panic!("expected a response timeout, got {other:?}"),
    }
    tokio::task::block_in_place(|| server.wait_for_blocked_clients(1));
    holder.release().await.expect("release");
    wait_until_free(&server, "k", "the late grant to be given back").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_sync() {
    let master = Server::start();
    let mut conn = connect(&master).await;
    let refused = fixed("k")
        .replicas(1, Duration::from_millis(100))
        .acquire_async(&mut conn)
        .await;
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
    // The async API answers first and gives the grant back after, in the acquiring task
    // (aio.rs), so the release is awaited rather than expected at once.
    wait_until_free(&master, "k", "the unsynced grant to be given back").await;

    let replica = Server::start();
    tokio::task::block_in_place(|| replica.replicate_from(&master));
    let guard = fixed("k")
        .replicas(1, Duration::from_secs(10))
        .acquire_async(&mut conn)
        .await
        .expect("one replica acknowledges");
    let info = lock_info(&mut replica.conn(), "k").expect("on the replica");
    assert_eq!(info.token as u64, guard.token());
    let zero = fixed("z")
        .replicas(0, Duration::from_millis(1))
        .acquire_async(&mut conn)
        .await
        .expect("0 replicas");
    zero.release().await.expect("release");
    guard.release().await.expect("release");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_errors_are_typed() {
    let server = Server::start();
    let mut conn = connect(&server).await;
    assert!(matches!(
        fixed("k").owner(Vec::new()).acquire_async(&mut conn).await,
        Err(Error::InvalidOwner(_))
    ));
    assert!(matches!(
        Lock::new("k")
            .lease(Duration::from_secs(31 * 24 * 3600))
            .acquire_async(&mut conn)
            .await,
        Err(Error::InvalidDuration { what: "lease", .. })
    ));
    redis::cmd("SET")
        .arg("s")
        .arg("v")
        .exec(&mut server.conn())
        .expect("SET");
    match fixed("s").acquire_async(&mut conn).await {
        Err(Error::Redis(error)) => assert_eq!(error.code(), Some("WRONGTYPE"), "{error}"),
        other => panic!("expected WRONGTYPE, got {other:?}"),
    }
}

#[test]
fn async_acquire_outside_a_runtime_is_an_error() {
    let server = Server::start();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut conn = runtime.block_on(connect(&server));
    // Polled by a bare executor-less block_on of another runtime's future: no current runtime.
    let lock = fixed("k");
    let result = futures_lite_block_on(lock.acquire_async(&mut conn));
    assert!(matches!(result, Err(Error::NoRuntime)), "{result:?}");
}

/// Polls a future to completion on this thread without any runtime.
fn futures_lite_block_on<F: std::future::Future>(future: F) -> F::Output {
    use std::sync::Arc;
    use std::task::{Context, Poll, Wake, Waker};
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut context = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        match future.as_mut().poll(&mut context) {
            Poll::Ready(output) => return output,
            Poll::Pending => std::thread::park(),
        }
    }
}
