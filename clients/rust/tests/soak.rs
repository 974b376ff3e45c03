#![cfg(feature = "tokio")]

//! A bounded soak (issue 18): workers take exclusive locks, read/write locks and semaphore
//! permits, nested, over plain connections, connections that resend on a timeout, and
//! connections whose response timeout cuts waits short; some cancel their acquisitions,
//! some kill their own session connections; meanwhile the server stalls now and then. From
//! outside, atomic `LOCK.INFO` snapshots check that no holder is counted more than it
//! nested and no semaphore or read/write lock is over-held; inside, every worker that
//! believes it holds a lock records it, and no two believe they hold what only one may.
//! At the end nothing is held, nobody waits, and nothing is renewed.

#[path = "../../../tests/common/mod.rs"]
mod common;
mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{wait_until, Server};
use redis::aio::MultiplexedConnection;
use rlock_client::{AsyncConnection, AsyncLockGuard, Error, Lock};
use support::{debug_server, snapshot, RetryingAsync};

const WORKERS: u64 = 6;
const ROUNDS: u64 = 100;
const PERMITS: u32 = 2;

/// Who believes they hold what, by the workers' own account; and what happened, to report.
#[derive(Default, Debug)]
struct Beliefs {
    seen: std::collections::BTreeMap<String, u32>,
    exclusive: u32,
    writers: u32,
    readers: u32,
    permits: u32,
}

impl Beliefs {
    fn saw(&mut self, what: String) {
        *self.seen.entry(what).or_default() += 1;
    }

    fn check(&self) {
        assert!(self.exclusive <= 1, "two exclusive holders: {self:?}");
        assert!(self.writers <= 1, "two writers: {self:?}");
        assert!(
            self.writers == 0 || self.readers == 0,
            "a writer with readers: {self:?}"
        );
        assert!(self.permits <= PERMITS, "too many permits: {self:?}");
    }
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Exclusive,
    Write,
    Read,
    Permit,
}

impl Kind {
    fn lock(self, watched: bool) -> Lock {
        let base = match self {
            Kind::Exclusive => Lock::new("x"),
            Kind::Write => Lock::new("rw"),
            Kind::Read => Lock::new("rw").shared(),
            Kind::Permit => Lock::new("sem").limit(PERMITS),
        };
        let base = if watched {
            base.lease(Duration::from_secs(1))
        } else {
            base.ttl(Duration::from_secs(20))
        };
        base.wait(Duration::from_secs(5))
    }

    fn slot(self, beliefs: &mut Beliefs) -> &mut u32 {
        match self {
            Kind::Exclusive => &mut beliefs.exclusive,
            Kind::Write => &mut beliefs.writers,
            Kind::Read => &mut beliefs.readers,
            Kind::Permit => &mut beliefs.permits,
        }
    }
}

/// xorshift64: a fixed sequence per worker.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

async fn connect(server: &Server, response_timeout: Option<Duration>) -> MultiplexedConnection {
    let client = redis::Client::open(server.url()).expect("client");
    let config = redis::AsyncConnectionConfig::new().set_response_timeout(response_timeout);
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .expect("async connection")
}

/// How a round holds: nested once or not, for how long, and how to count the connection's
/// own resends.
struct Round<'a> {
    nest: bool,
    pause: Duration,
    resends: &'a (dyn Fn() -> usize + Sync),
}

/// Records the belief while `guard` is held, checks it, then releases (nested once if
/// `nest`), and forgets the belief before the release is sent.
async fn hold<C: AsyncConnection>(
    beliefs: &Mutex<Beliefs>,
    kind: Kind,
    lock: &Lock,
    conn: &mut C,
    guard: AsyncLockGuard<C>,
    round: Round<'_>,
) {
    let Round {
        nest,
        pause,
        resends,
    } = round;
    {
        let mut beliefs = beliefs.lock().expect("beliefs");
        *kind.slot(&mut beliefs) += 1;
        beliefs.check();
    }
    if nest {
        match lock.acquire_async(conn).await {
            Ok(inner) => {
                let released = inner.release().await;
                let what = format!(
                    "nested release {:?}",
                    released.map_err(|e| e.to_string()).err()
                );
                beliefs.lock().expect("beliefs").saw(what);
            }
            // A timeout, a stall: the client settles it.
            Err(Error::Redis(error)) => beliefs
                .lock()
                .expect("beliefs")
                .saw(format!("reentry error {error}")),
            Err(other) => panic!("{kind:?} reentry: {other:?}"),
        }
    }
    tokio::time::sleep(pause).await;
    *kind.slot(&mut beliefs.lock().expect("beliefs")) -= 1;
    let resent_before = resends();
    match guard.release().await {
        Ok(_) => beliefs.lock().expect("beliefs").saw("released".into()),
        Err(Error::Redis(error)) => beliefs
            .lock()
            .expect("beliefs")
            .saw(format!("release error {error}")),
        // The last count's release sent twice by the connection itself: the second attempt
        // finds nothing (the server cannot tell an earlier attempt's release from a loss).
        Err(Error::NotHeld { .. }) if resends() > resent_before => beliefs
            .lock()
            .expect("beliefs")
            .saw("release resent by the connection: NotHeld".into()),
        Err(other) => panic!("{kind:?} release: {other:?}"),
    }
}

async fn worker(server: Arc<Server>, beliefs: Arc<Mutex<Beliefs>>, index: u64) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (index + 1));
    let mut plain = connect(&server, None).await;
    let mut retrying = RetryingAsync::connect(&server, Duration::from_millis(100)).await;
    let kinds = [Kind::Exclusive, Kind::Write, Kind::Read, Kind::Permit];
    let locks: Vec<(Kind, Lock, Lock)> = kinds
        .iter()
        .map(|&kind| (kind, kind.lock(false), kind.lock(true)))
        .collect();
    for _ in 0..ROUNDS {
        let (kind, fixed, watched) = &locks[rng.below(kinds.len() as u64) as usize];
        let (kind, lock) = (*kind, if rng.below(3) == 0 { watched } else { fixed });
        let nest = rng.below(2) == 0;
        let pause = Duration::from_millis(rng.below(15));
        let path = rng.below(5);
        beliefs.lock().expect("beliefs").saw(format!("path {path}"));
        match path {
            // Plain.
            0 => match lock.acquire_async(&mut plain).await {
                Ok(guard) => {
                    hold(
                        &beliefs,
                        kind,
                        lock,
                        &mut plain,
                        guard,
                        Round {
                            nest,
                            pause,
                            resends: &|| 0,
                        },
                    )
                    .await
                }
                Err(Error::NotAcquired) => {}
                Err(other) => panic!("{kind:?}: {other:?}"),
            },
            // Over a connection that resends what times out (stalls make it).
            1 => match lock.acquire_async(&mut retrying).await {
                Ok(guard) => {
                    let counter = retrying.clone();
                    let resends = move || counter.resent();
                    hold(
                        &beliefs,
                        kind,
                        lock,
                        &mut retrying,
                        guard,
                        Round {
                            nest,
                            pause,
                            resends: &resends,
                        },
                    )
                    .await
                }
                Err(Error::NotAcquired) => {}
                Err(Error::Redis(error)) => beliefs
                    .lock()
                    .expect("beliefs")
                    .saw(format!("retrying acquire error {error}")),
                Err(other) => panic!("{kind:?}: {other:?}"),
            },
            // A response timeout that cuts the wait short.
            2 => {
                let mut short = connect(&server, Some(Duration::from_millis(30))).await;
                match lock.acquire_async(&mut short).await {
                    Ok(guard) => {
                        hold(
                            &beliefs,
                            kind,
                            lock,
                            &mut short,
                            guard,
                            Round {
                                nest: false,
                                pause,
                                resends: &|| 0,
                            },
                        )
                        .await
                    }
                    Err(Error::NotAcquired) => {}
                    Err(Error::Redis(error)) => beliefs
                        .lock()
                        .expect("beliefs")
                        .saw(format!("short acquire error {error}")),
                    Err(other) => panic!("{kind:?}: {other:?}"),
                }
            }
            // A cancelled acquisition.
            3 => {
                let mut conn = connect(&server, None).await;
                let wait = Duration::from_millis(rng.below(40));
                let outcome = tokio::time::timeout(wait, lock.acquire_async(&mut conn)).await;
                if outcome.is_err() {
                    beliefs.lock().expect("beliefs").saw("cancelled".into());
                }
                if let Ok(result) = outcome {
                    match result {
                        Ok(guard) => {
                            hold(
                                &beliefs,
                                kind,
                                lock,
                                &mut conn,
                                guard,
                                Round {
                                    nest,
                                    pause,
                                    resends: &|| 0,
                                },
                            )
                            .await
                        }
                        Err(Error::NotAcquired) => {}
                        Err(other) => panic!("{kind:?}: {other:?}"),
                    }
                }
            }
            // A session hold whose connection is killed while held.
            _ => {
                let mut conn = connect(&server, None).await;
                let id: i64 = redis::cmd("CLIENT")
                    .arg("ID")
                    .query_async(&mut conn)
                    .await
                    .expect("CLIENT ID");
                match lock.clone().session().acquire_async(&mut conn).await {
                    Ok(guard) => {
                        {
                            let mut beliefs = beliefs.lock().expect("beliefs");
                            *kind.slot(&mut beliefs) += 1;
                            beliefs.check();
                            *kind.slot(&mut beliefs) -= 1;
                        }
                        let mut admin = connect(&server, None).await;
                        let _: i64 = redis::cmd("CLIENT")
                            .arg("KILL")
                            .arg("ID")
                            .arg(id)
                            .query_async(&mut admin)
                            .await
                            .expect("CLIENT KILL");
                        match guard.release().await {
                            Err(Error::NotHeld { .. }) => {}
                            other => panic!("{kind:?} release after a kill: {other:?}"),
                        }
                    }
                    Err(Error::NotAcquired) => {}
                    Err(other) => panic!("{kind:?} session: {other:?}"),
                }
            }
        }
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_timeouts_cancellations_and_kills_leave_one_owner_and_nothing_behind() {
    let server = Arc::new(debug_server());
    let beliefs = Arc::new(Mutex::new(Beliefs::default()));
    let done = Arc::new(AtomicBool::new(false));

    // From outside: atomic snapshots of each key, until the workers are done.
    let checker = {
        let (server, done) = (Arc::clone(&server), Arc::clone(&done));
        std::thread::spawn(move || {
            let mut con = server.conn();
            let mut snapshots = 0u64;
            while !done.load(Ordering::SeqCst) {
                for key in ["x", "rw", "sem"] {
                    let Some((mode, holders)) = snapshot(&mut con, key) else {
                        continue;
                    };
                    snapshots += 1;
                    for holder in &holders {
                        assert!(
                            (1..=2).contains(&holder.count),
                            "{key}: a holder counted beyond its nesting: {holders:?}"
                        );
                    }
                    match (key, mode.as_str()) {
                        ("x", "exclusive") => assert_eq!(holders.len(), 1),
                        ("rw", "exclusive") => assert_eq!(holders.len(), 1),
                        ("rw", "shared") => {}
                        ("sem", "limit") => assert!(holders.len() <= PERMITS as usize),
                        other => panic!("unexpected mode {other:?}: {holders:?}"),
                    }
                }
            }
            snapshots
        })
    };
    // Stalls now and then.
    let staller = {
        let (server, done) = (Arc::clone(&server), Arc::clone(&done));
        tokio::spawn(async move {
            let mut conn = connect(&server, None).await;
            let mut stalls = 0;
            while !done.load(Ordering::SeqCst) && stalls < 100 {
                tokio::time::sleep(Duration::from_millis(150)).await;
                let _: () = redis::cmd("DEBUG")
                    .arg("SLEEP")
                    .arg(0.15)
                    .query_async(&mut conn)
                    .await
                    .expect("DEBUG SLEEP");
                stalls += 1;
            }
            stalls
        })
    };

    let workers: Vec<_> = (0..WORKERS)
        .map(|index| tokio::spawn(worker(Arc::clone(&server), Arc::clone(&beliefs), index)))
        .collect();
    for worker in workers {
        worker.await.expect("worker");
    }
    done.store(true, Ordering::SeqCst);
    let stalls = staller.await.expect("staller");
    let snapshots = tokio::task::block_in_place(|| checker.join()).expect("checker");
    assert!(
        stalls > 0 && snapshots > 0,
        "{stalls} stalls, {snapshots} snapshots"
    );
    let seen = std::mem::take(&mut beliefs.lock().expect("beliefs").seen);
    eprintln!("soak: {stalls} stalls, {snapshots} snapshots, {seen:#?}");

    tokio::task::block_in_place(|| {
        let mut con = server.conn();
        wait_until("every key free", || {
            ["x", "rw", "sem"]
                .iter()
                .all(|key| snapshot(&mut con, key).is_none())
        });
        server.wait_for_blocked_clients(0);
        // No watchdog renews on: a whole lease (1 s) passes without a renewal.
        let before = renew_calls(&server);
        std::thread::sleep(Duration::from_millis(1200));
        assert_eq!(renew_calls(&server), before, "a watchdog still renews");
    });
}
