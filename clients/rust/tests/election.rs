//! Leader election (issue 22): candidates lead in the server's FIFO order, resigning hands
//! over, a killed leader's connection and a leader that stops renewing both lose leadership
//! (the leader learns it: `is_leader()` false, its signal fired) and a rival wins, and
//! observers see every leader change once, in order. Against a real server; no assertion
//! depends on timing: what is compared are instants in causal order, and waits are bounded.

#[path = "../../../tests/common/mod.rs"]
mod common;
mod support;

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{Server, WAIT_TIMEOUT};
use rlock_client::{Election, Error, Leader};
use support::{client_id, kill_client};

/// How long a test's campaigns wait in the queue (below the harness' 30 s read timeout).
const CAMPAIGN_WAIT: Duration = Duration::from_secs(20);

fn election(server: &Server, lease: Duration) -> Election {
    let client = redis::Client::open(server.url()).expect("client");
    Election::new("leader")
        .lease(lease)
        .wait(CAMPAIGN_WAIT)
        .watchdog(client)
}

/// What a candidate thread reports once elected.
struct Elected {
    epoch: u64,
    value: Vec<u8>,
    /// Taken right after its campaign returned.
    at: Instant,
}

/// A candidate campaigning in a thread of its own (over its own connection); it reports when
/// elected and resigns when told (or when the sender is dropped).
struct Candidate {
    elected: mpsc::Receiver<Result<Elected, String>>,
    resign: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Candidate {
    fn start(server: &Server, election: &Election, value: &str) -> Candidate {
        let mut conn = server.conn();
        let election = election.clone();
        let value = value.to_string();
        let (report, elected) = mpsc::channel();
        let (resign, resigned) = mpsc::channel::<()>();
        let thread = std::thread::spawn(move || match election.campaign(&mut conn, &value) {
            Ok(leadership) => {
                let at = Instant::now();
                let _ = report.send(Ok(Elected {
                    epoch: leadership.epoch(),
                    value: leadership.value().to_vec(),
                    at,
                }));
                let _ = resigned.recv();
                let _ = leadership.resign();
            }
            Err(error) => {
                let _ = report.send(Err(error.to_string()));
            }
        });
        Candidate {
            elected,
            resign: Some(resign),
            thread: Some(thread),
        }
    }

    /// Waits (bounded) for the candidate to be elected.
    fn elected(&self) -> Elected {
        match self.elected.recv_timeout(CAMPAIGN_WAIT + WAIT_TIMEOUT) {
            Ok(Ok(elected)) => elected,
            Ok(Err(error)) => panic!("campaign failed: {error}"),
            Err(error) => panic!("no election reported: {error}"),
        }
    }

    fn not_elected_yet(&self) {
        assert!(
            self.elected.try_recv().is_err(),
            "elected while another leads"
        );
    }

    fn resign(&mut self) {
        self.resign = None;
        if let Some(thread) = self.thread.take() {
            thread.join().expect("candidate thread");
        }
    }
}

impl Drop for Candidate {
    fn drop(&mut self) {
        self.resign();
    }
}

fn leader_now(server: &Server, election: &Election) -> Option<Leader> {
    election.leader(&mut server.conn()).expect("leader")
}

#[test]
fn three_candidates_lead_in_fifo_order_and_resigning_hands_over() {
    let server = Server::start();
    let election = election(&server, Duration::from_secs(10));
    assert_eq!(leader_now(&server, &election), None);
    let mut first = Candidate::start(&server, &election, "a");
    let a = first.elected();
    assert_eq!(a.value, b"a");
    let mut second = Candidate::start(&server, &election, "b");
    server.wait_for_blocked_clients(1);
    let mut third = Candidate::start(&server, &election, "c");
    server.wait_for_blocked_clients(2);
    let now = leader_now(&server, &election).expect("a leads");
    assert_eq!((now.value.as_slice(), now.epoch), (&b"a"[..], a.epoch));
    assert!(now.id.is_some(), "the campaign's id: {now:?}");

    first.resign();
    let b = second.elected();
    assert_eq!(b.value, b"b", "the first in line");
    assert!(b.epoch > a.epoch);
    third.not_elected_yet();
    assert_eq!(
        leader_now(&server, &election).map(|l| l.epoch),
        Some(b.epoch)
    );

    second.resign();
    let c = third.elected();
    assert_eq!(c.value, b"c");
    assert!(c.epoch > b.epoch);
    third.resign();
    assert_eq!(leader_now(&server, &election), None, "the last resigned");
}

#[test]
fn resigning_fires_the_signal_and_a_second_resign_is_impossible() {
    let server = Server::start();
    let election = election(&server, Duration::from_secs(10));
    let mut conn = server.conn();
    let leadership = election.campaign(&mut conn, "a").expect("campaign");
    let signal = leadership.signal();
    assert!(leadership.is_leader());
    assert!(!signal.is_fired());
    assert!(
        !signal.wait_timeout(Duration::ZERO),
        "not fired while leading"
    );
    leadership.resign().expect("resign");
    assert!(signal.is_fired());
    assert!(signal.wait_timeout(Duration::ZERO));
    assert_eq!(leader_now(&server, &election), None);
}

#[test]
fn a_killed_leader_learns_it_lost_and_a_rival_wins() {
    let server = Server::start();
    let election = election(&server, Duration::from_secs(3));
    let mut conn = server.conn();
    let mut leadership = election.campaign(&mut conn, "a").expect("campaign");
    let signal = leadership.signal();
    let epoch = leadership.epoch();
    let rival = Candidate::start(&server, &election, "b");
    server.wait_for_blocked_clients(1);
    let id = client_id(leadership.connection());
    kill_client(&server, id);
    let won = rival.elected();
    assert!(won.epoch > epoch);
    // The watchdog's next renewal (within a third of the lease) finds the hold gone.
    assert!(
        signal.wait_timeout(CAMPAIGN_WAIT),
        "the leader never learnt it lost"
    );
    assert!(!leadership.is_leader());
    assert_eq!(leadership.deadline(), None);
    assert_eq!(
        leader_now(&server, &election).map(|l| l.epoch),
        Some(won.epoch)
    );
    match leadership.resign() {
        Err(Error::NotHeld { .. }) => {}
        other => panic!("resigning a lost leadership: {other:?}"),
    }
    assert_eq!(
        leader_now(&server, &election).map(|l| l.epoch),
        Some(won.epoch)
    );
}

#[test]
fn a_leader_that_stops_renewing_is_not_leader_before_the_rival_wins() {
    let server = Server::start();
    let lease = Duration::from_secs(1);
    // Its watchdog can reach no server: nothing renews the lease (a paused leader whose
    // connection stays open).
    let stuck = Election::new("leader")
        .lease(lease)
        .watchdog(redis::Client::open("redis://127.0.0.1:1/").expect("client"));
    let mut conn = server.conn();
    let leadership = stuck.campaign(&mut conn, "a").expect("campaign");
    let signal = leadership.signal();
    let deadline = leadership.deadline().expect("leading");
    let rival = Candidate::start(&server, &election(&server, lease), "b");
    let won = rival.elected();
    assert!(won.epoch > leadership.epoch());
    assert!(signal.wait_timeout(WAIT_TIMEOUT), "the signal never fired");
    let fired_seen = Instant::now();
    assert!(!leadership.is_leader());
    // `is_leader()` turned false at the deadline, before the rival's campaign returned: the
    // lease counted from before the campaign was sent, less the margin, ends before the
    // server's (counted from when it got the request) hands the key on.
    assert!(
        deadline < won.at,
        "leader until {:?} after the rival won",
        deadline - won.at.min(deadline)
    );
    assert!(deadline <= fired_seen);
    drop(leadership);
}

#[test]
fn observers_see_every_leader_once_in_order() {
    let server = Server::start();
    let election = election(&server, Duration::from_secs(10));
    let observers: Vec<_> = (0..3)
        .map(|_| {
            let mut conn = server.conn();
            let election = election.clone();
            let (report, seen) = mpsc::channel();
            let thread = std::thread::spawn(move || {
                let observer = election
                    .observe(&mut conn)
                    .timeout(CAMPAIGN_WAIT)
                    .expect("timeout");
                // Five states: vacant, a, b, vacant, c.
                for item in observer.take(5) {
                    let item = item.map(|leader| leader.map(|l| (l.value, l.epoch)));
                    if report.send(item.map_err(|e| e.to_string())).is_err() {
                        return;
                    }
                }
            });
            (seen, thread)
        })
        .collect();
    let everyone_sees = |what: &str| -> Vec<Option<(Vec<u8>, u64)>> {
        observers
            .iter()
            .map(
                |(seen, _)| match seen.recv_timeout(CAMPAIGN_WAIT + WAIT_TIMEOUT) {
                    Ok(Ok(state)) => state,
                    Ok(Err(error)) => panic!("observer failed at {what}: {error}"),
                    Err(error) => panic!("observer saw nothing for {what}: {error}"),
                },
            )
            .collect()
    };
    assert_eq!(everyone_sees("the start"), vec![None; 3]);
    let mut a = Candidate::start(&server, &election, "a");
    let ea = a.elected().epoch;
    assert_eq!(everyone_sees("a"), vec![Some((b"a".to_vec(), ea)); 3]);
    let mut b = Candidate::start(&server, &election, "b");
    // Queued behind a (an observer blocks too: 3 observers + b).
    server.wait_for_blocked_clients(4);
    a.resign();
    let eb = b.elected().epoch;
    assert!(eb > ea);
    assert_eq!(
        everyone_sees("the handover to b"),
        vec![Some((b"b".to_vec(), eb)); 3]
    );
    b.resign();
    assert_eq!(everyone_sees("b resigning"), vec![None; 3]);
    let c = Candidate::start(&server, &election, "c");
    let ec = c.elected().epoch;
    assert!(ec > eb);
    assert_eq!(everyone_sees("c"), vec![Some((b"c".to_vec(), ec)); 3]);
    drop(c);
    for (_, thread) in observers {
        thread.join().expect("observer thread");
    }
}

#[test]
fn a_campaign_whose_wait_runs_out_is_not_elected() {
    let server = Server::start();
    let election = election(&server, Duration::from_secs(10));
    let mut conn = server.conn();
    let leadership = election.campaign(&mut conn, "a").expect("campaign");
    let mut other = server.conn();
    match election
        .clone()
        .wait(Duration::from_millis(50))
        .campaign(&mut other, "b")
    {
        Err(Error::NotElected) => {}
        other => panic!("expected NotElected, got {other:?}"),
    }
    match election
        .clone()
        .wait(Duration::ZERO)
        .campaign(&mut other, "b")
    {
        Err(Error::NotElected) => {}
        other => panic!("expected NotElected, got {other:?}"),
    }
    assert!(leadership.is_leader());
    let unwatched = Election::new("leader").campaign(&mut other, "b").map(drop);
    match unwatched {
        Err(Error::NoWatchdogClient) => {}
        result => panic!("expected NoWatchdogClient, got {result:?}"),
    }
}

#[cfg(feature = "tokio")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_leader_learns_of_a_delete_through_its_signal() {
    let server = Server::start();
    let client = redis::Client::open(server.url()).expect("client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("async connection");
    let election = Election::new("leader").lease(Duration::from_secs(3));
    let leadership = election
        .campaign_async(&mut conn, "a")
        .await
        .expect("campaign");
    let now = election.leader_async(&mut conn).await.expect("leader");
    assert_eq!(now.map(|l| l.epoch), Some(leadership.epoch()));
    let signal = leadership.signal();
    let deleted: i64 = redis::cmd("DEL")
        .arg("leader")
        .query(&mut server.conn())
        .expect("DEL");
    assert_eq!(deleted, 1);
    tokio::time::timeout(CAMPAIGN_WAIT, signal.fired())
        .await
        .expect("the signal never fired");
    assert!(!leadership.is_leader());
    match leadership.resign().await {
        Err(Error::NotHeld {
            reason: Some(reason),
        }) => assert_eq!(reason.by, rlock_client::LostBy::Deleted),
        other => panic!("resigning a deleted leadership: {other:?}"),
    }
}
