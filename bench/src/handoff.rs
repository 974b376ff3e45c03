//! Handoff latency with one holder and one waiter already waiting:
//! - on release: from the releaser's release reply to the waiter's acquire reply;
//! - on expiry: the holder never releases a 50 ms lock; from the lock's expiry instant to the
//!   waiter's acquire reply.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::cli::Options;
use crate::contention::LOCK_KEY;
use crate::locker::{Approach, Locker};
use crate::polling_client::POLL_INTERVAL;
use crate::report::Report;
use crate::rlock_client::queued_waiters;
use crate::scripts;
use crate::server::{RedisServer, READ_TIMEOUT};
use crate::stats::{format_ms, signed_millis, Summary};
use crate::table::{heading, Table};
use crate::BenchResult;

/// The waiter's lease once it has the lock (it releases at once).
const TTL_MS: u64 = 10_000;
/// The holder's lease in the expiry test.
const EXPIRING_TTL: Duration = Duration::from_millis(50);
/// How long a waiter may take to be seen waiting.
const WAITING_TIMEOUT: Duration = Duration::from_secs(10);

pub fn run(server: &RedisServer, options: &Options, report: &mut Report) -> BenchResult<()> {
    let mut admin = server.connect()?;
    scripts::load_all(&mut admin)?;
    let on_release = release_handoffs(server, options, &mut admin)?;
    let on_expiry = expiry_handoffs(server, options, &mut admin)?;
    let approaches: Vec<serde_json::Value> = Approach::ALL
        .iter()
        .zip(on_release.iter().zip(&on_expiry))
        .map(|(approach, ((release, from_request), expiry))| {
            serde_json::json!({
                "approach": approach.label(),
                "release": summary_json(release),
                "release_from_request": summary_json(from_request),
                "expiry": summary_json(expiry),
            })
        })
        .collect();
    report.set(
        "handoff",
        serde_json::json!({
            "expiring_ttl_ms": EXPIRING_TTL.as_millis() as u64,
            "approaches": approaches,
        }),
    );
    Ok(())
}

/// A latency summary in milliseconds.
fn summary_json(summary: &Summary) -> serde_json::Value {
    serde_json::json!({
        "rounds": summary.count,
        "p50_ms": summary.p50,
        "p99_ms": summary.p99,
        "max_ms": summary.max,
    })
}

fn release_handoffs(
    server: &RedisServer,
    options: &Options,
    admin: &mut redis::Connection,
) -> BenchResult<Vec<(Summary, Summary)>> {
    heading("Part 1: handoff on release (one holder, one waiter already waiting; release reply -> waiter's acquire reply)");
    let mut table = Table::new(&[
        "approach",
        "rounds",
        "p50 ms",
        "p99 ms",
        "max ms",
        "from release request: p50 ms",
        "p99 ms",
    ]);
    let mut summaries = Vec::new();
    for approach in Approach::ALL {
        redis::cmd("DEL").arg(LOCK_KEY).exec(admin)?;
        let samples = measure(
            server,
            approach,
            rounds_for(approach, options),
            Scenario::Release,
        )?;
        let from_request = Summary::of(
            samples
                .iter()
                .filter_map(|s| s.from_release_request)
                .collect(),
        );
        let latency = latency_summary(&samples);
        let mut row = latency_row(approach, &latency);
        row.extend([format_ms(from_request.p50), format_ms(from_request.p99)]);
        table.row(row);
        summaries.push((latency, from_request));
    }
    table.print();
    println!(
        "\nA negative figure means the waiter's reply arrived before the releaser's: the server hands the \
         lock over while it runs the release. \"from release request\" starts when the release is sent."
    );
    Ok(summaries)
}

fn expiry_handoffs(
    server: &RedisServer,
    options: &Options,
    admin: &mut redis::Connection,
) -> BenchResult<Vec<Summary>> {
    heading(&format!(
        "Part 1: handoff on expiry (holder takes a {} ms lock and never releases; expiry instant -> waiter's acquire reply)",
        EXPIRING_TTL.as_millis()
    ));
    let mut table = Table::new(&["approach", "rounds", "p50 ms", "p99 ms", "max ms"]);
    let mut summaries = Vec::new();
    for approach in Approach::ALL {
        redis::cmd("DEL").arg(LOCK_KEY).exec(admin)?;
        let samples = measure(
            server,
            approach,
            options.sizes.expiry_rounds,
            Scenario::Expiry,
        )?;
        let latency = latency_summary(&samples);
        table.row(latency_row(approach, &latency));
        summaries.push(latency);
    }
    table.print();
    println!(
        "\nexpiry instant = midpoint of the holder's acquire request and reply + {} ms. \
         SET NX PX waiters start polling at a random phase; Redisson waiters sleep for the returned pttl \
         (no unlock message is published on expiry).",
        EXPIRING_TTL.as_millis()
    );
    Ok(summaries)
}

/// One handoff, in milliseconds.
#[derive(Clone, Copy)]
struct Sample {
    /// From the release reply (or the expiry instant) to the waiter's acquire reply.
    latency: f64,
    /// From sending the release to the waiter's acquire reply.
    from_release_request: Option<f64>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Scenario {
    Release,
    Expiry,
}

fn rounds_for(approach: Approach, options: &Options) -> usize {
    match approach {
        Approach::PollingSetNx => options.sizes.handoff_rounds_polling,
        Approach::Rlock | Approach::Redisson => options.sizes.handoff_rounds_fast,
    }
}

fn latency_summary(samples: &[Sample]) -> Summary {
    Summary::of(samples.iter().map(|s| s.latency).collect())
}

fn latency_row(approach: Approach, summary: &Summary) -> Vec<String> {
    vec![
        approach.label().to_string(),
        summary.count.to_string(),
        format_ms(summary.p50),
        format_ms(summary.p99),
        format_ms(summary.max),
    ]
}

fn measure(
    server: &RedisServer,
    approach: Approach,
    rounds: usize,
    scenario: Scenario,
) -> BenchResult<Vec<Sample>> {
    let mut holder = approach.connect(server, LOCK_KEY)?;
    let waiter = Waiter::start(approach.connect(server, LOCK_KEY)?);
    let mut monitor = server.connect()?;
    let mut samples = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let sample = match scenario {
            Scenario::Release => release_round(approach, holder.as_mut(), &waiter, &mut monitor),
            Scenario::Expiry => expiry_round(approach, holder.as_mut(), &waiter, &mut monitor),
        };
        match sample {
            Ok(sample) => samples.push(sample),
            Err(error) => return Err(waiter.failure_or(error)),
        }
    }
    waiter.finish()?;
    Ok(samples)
}

/// The holder holds; the waiter starts waiting; the holder releases.
fn release_round(
    approach: Approach,
    holder: &mut dyn Locker,
    waiter: &Waiter,
    monitor: &mut redis::Connection,
) -> BenchResult<Sample> {
    holder.acquire(TTL_MS)?;
    let waits_so_far = waiter.began_waiting.load(Ordering::SeqCst);
    waiter.go(Duration::ZERO)?;
    wait_until_waiting(approach, waiter, monitor, waits_so_far)?;
    if approach == Approach::PollingSetNx {
        // Release at a random point of the waiter's poll cycle.
        std::thread::sleep(random_below(POLL_INTERVAL));
    }
    let release_sent = Instant::now();
    let released = holder.release()?;
    if !released.accepted {
        return Err(format!("{}: the holder's release was refused", approach.label()).into());
    }
    let taken = waiter.taken()?;
    Ok(Sample {
        latency: signed_millis(released.replied_at, taken),
        from_release_request: Some(signed_millis(release_sent, taken)),
    })
}

/// The holder takes a short lock and walks away; the waiter gets it once it expires.
fn expiry_round(
    approach: Approach,
    holder: &mut dyn Locker,
    waiter: &Waiter,
    monitor: &mut redis::Connection,
) -> BenchResult<Sample> {
    let requested = Instant::now();
    let acquired = holder.acquire(EXPIRING_TTL.as_millis() as u64)?;
    let expires = requested + (acquired.replied_at - requested) / 2 + EXPIRING_TTL;
    let phase = match approach {
        Approach::PollingSetNx => random_below(POLL_INTERVAL),
        Approach::Rlock | Approach::Redisson => Duration::ZERO,
    };
    let waits_so_far = waiter.began_waiting.load(Ordering::SeqCst);
    waiter.go(phase)?;
    if approach == Approach::Rlock {
        wait_until_waiting(approach, waiter, monitor, waits_so_far)?;
        if Instant::now() >= expires {
            return Err("rlock: the waiter was not queued before the 50 ms lock expired (machine too busy?)".into());
        }
    }
    let taken = waiter.taken()?;
    Ok(Sample {
        latency: signed_millis(expires, taken),
        from_release_request: None,
    })
}

/// rlock: the waiter is queued in the server; the others: it has failed an attempt since
/// `waits_so_far` was read.
fn wait_until_waiting(
    approach: Approach,
    waiter: &Waiter,
    monitor: &mut redis::Connection,
    waits_so_far: u64,
) -> BenchResult<()> {
    let deadline = Instant::now() + WAITING_TIMEOUT;
    loop {
        let waiting = match approach {
            Approach::Rlock => queued_waiters(monitor, LOCK_KEY)? >= 1,
            Approach::PollingSetNx | Approach::Redisson => {
                waiter.began_waiting.load(Ordering::SeqCst) > waits_so_far
            }
        };
        if waiting {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{}: the waiter was not waiting after {WAITING_TIMEOUT:?}",
                approach.label()
            )
            .into());
        }
        std::thread::sleep(Duration::from_micros(100));
    }
}

/// A thread that, on each `go`, sleeps the given phase, acquires (waiting as its approach
/// does), reports when the lock was granted, and releases.
struct Waiter {
    go: Sender<Duration>,
    taken: Receiver<Instant>,
    began_waiting: Arc<AtomicU64>,
    thread: JoinHandle<BenchResult<()>>,
}

impl Waiter {
    fn start(mut locker: Box<dyn Locker>) -> Waiter {
        let (go, go_rx) = mpsc::channel::<Duration>();
        let (taken_tx, taken) = mpsc::channel::<Instant>();
        let began_waiting = locker.began_waiting();
        let thread = std::thread::spawn(move || -> BenchResult<()> {
            for phase in go_rx {
                std::thread::sleep(phase);
                let acquired = locker.acquire(TTL_MS)?;
                locker.release()?;
                if taken_tx.send(acquired.replied_at).is_err() {
                    break;
                }
            }
            Ok(())
        });
        Waiter {
            go,
            taken,
            began_waiting,
            thread,
        }
    }

    fn go(&self, phase: Duration) -> BenchResult<()> {
        self.go
            .send(phase)
            .map_err(|_| "the waiter thread has stopped".into())
    }

    fn taken(&self) -> BenchResult<Instant> {
        match self.taken.recv_timeout(READ_TIMEOUT) {
            Ok(instant) => Ok(instant),
            Err(RecvTimeoutError::Timeout) => {
                Err(format!("the waiter did not get the lock within {READ_TIMEOUT:?}").into())
            }
            Err(RecvTimeoutError::Disconnected) => Err("the waiter thread has stopped".into()),
        }
    }

    /// The waiter's own error when it stopped, else `error`.
    fn failure_or(
        self,
        error: Box<dyn std::error::Error + Send + Sync>,
    ) -> Box<dyn std::error::Error + Send + Sync> {
        drop(self.go);
        if self.thread.is_finished() {
            if let Ok(Err(own)) = self.thread.join() {
                return own;
            }
        }
        error
    }

    fn finish(self) -> BenchResult<()> {
        drop(self.go);
        self.thread
            .join()
            .map_err(|_| "the waiter thread panicked")?
    }
}

/// A uniformly random duration in [0, limit), from the OS-seeded uuid generator.
fn random_below(limit: Duration) -> Duration {
    let micros = limit.as_micros().max(1);
    Duration::from_micros((uuid::Uuid::new_v4().as_u128() % micros) as u64)
}
