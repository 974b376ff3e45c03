//! Part 1: N clients, each on its own connection and thread, take one lock, hold it ~1 ms,
//! release, pause ~1 ms, for a few seconds. Checks mutual exclusion with a shared counter and,
//! for rlock, that fencing tokens rise in handoff order.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use crate::cli::Options;
use crate::locker::{Approach, Locker};
use crate::report::{quantiles, Report};
use crate::scripts;
use crate::server::RedisServer;
use crate::stats::{format_ms, format_rate, jain_index, millis, Summary};
use crate::table::{heading, Table};
use crate::BenchResult;

pub const LOCK_KEY: &str = "lockkey";
/// Far longer than any hold: no lock expires during the run.
const TTL_MS: u64 = 10_000;
const HOLD: Duration = Duration::from_millis(1);
const PAUSE: Duration = Duration::from_millis(1);

/// What one client saw.
#[derive(Default)]
struct ClientRecord {
    waits_ms: Vec<f64>,
    sections: Vec<CriticalSection>,
    refused_releases: u64,
}

/// One stay in the critical section, as the holder saw it.
#[derive(Clone, Copy)]
struct CriticalSection {
    token: Option<i64>,
    entered: Instant,
    left: Instant,
}

/// Who is inside the critical section right now; entering while someone is inside is a
/// mutual-exclusion violation.
#[derive(Default)]
struct Occupancy {
    inside: AtomicU64,
    violations: AtomicU64,
}

impl Occupancy {
    fn enter(&self) {
        if self.inside.fetch_add(1, Ordering::SeqCst) > 0 {
            self.violations.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn leave(&self) {
        self.inside.fetch_sub(1, Ordering::SeqCst);
    }
}

struct RunResult {
    approach: Approach,
    elapsed: Duration,
    clients: Vec<ClientRecord>,
    violations: u64,
}

/// Points of the wait-time distribution kept for the CDF chart.
const CDF_POINTS: usize = 200;
/// PINGs whose median round trip is the physical limit's round trip.
const PINGS: usize = 1_000;

pub fn run(server: &RedisServer, options: &Options, report: &mut Report) -> BenchResult<()> {
    heading(&format!(
        "Part 1: contention ({} clients, one lock, hold {} ms, pause {} ms, {} s per approach)",
        options.clients,
        HOLD.as_millis(),
        PAUSE.as_millis(),
        options.seconds
    ));
    let mut admin = server.connect()?;
    scripts::load_all(&mut admin)?;
    let mut results = Vec::new();
    let duration = Duration::from_secs_f64(options.seconds);
    for approach in Approach::ALL {
        redis::cmd("DEL").arg(LOCK_KEY).exec(&mut admin)?;
        results.push(run_approach(server, approach, options.clients, duration)?);
    }
    print_results(&results);
    let round_trip_ms = ping_round_trip_ms(&mut admin)?;
    println!("\nPING round trip p50: {} ms", format_ms(round_trip_ms));
    report.set(
        "contention",
        contention_json(&results, options.clients, round_trip_ms),
    );
    sweep(server, options, &mut admin, report)
}

/// The time a client holds the lock, as measured: the mean stay in the critical section, in
/// milliseconds, over every run.
fn mean_hold_ms(results: &[RunResult]) -> f64 {
    let holds: Vec<f64> = results
        .iter()
        .flat_map(|r| r.clients.iter())
        .flat_map(|c| c.sections.iter())
        .map(|s| millis(s.left - s.entered))
        .collect();
    if holds.is_empty() {
        return millis(HOLD);
    }
    holds.iter().sum::<f64>() / holds.len() as f64
}

/// The median PING round trip on a connection of its own, in milliseconds: with the hold, what
/// one handoff costs at least (a client-side lock's next holder needs a round trip).
fn ping_round_trip_ms(connection: &mut redis::Connection) -> BenchResult<f64> {
    let mut round_trips = Vec::with_capacity(PINGS);
    for _ in 0..PINGS {
        let sent = Instant::now();
        redis::cmd("PING").exec(connection)?;
        round_trips.push(millis(sent.elapsed()));
    }
    Ok(Summary::of(round_trips).p50)
}

fn contention_json(results: &[RunResult], clients: usize, round_trip_ms: f64) -> serde_json::Value {
    let approaches: Vec<serde_json::Value> = results
        .iter()
        .map(|result| {
            let waits: Vec<f64> = result
                .clients
                .iter()
                .flat_map(|c| c.waits_ms.iter().copied())
                .collect();
            serde_json::json!({
                "approach": result.approach.label(),
                "wait_quantiles_ms": quantiles(waits, CDF_POINTS),
            })
        })
        .collect();
    serde_json::json!({
        "clients": clients,
        "hold_ms": millis(HOLD),
        "pause_ms": millis(PAUSE),
        "measured_hold_ms": mean_hold_ms(results),
        "round_trip_ms": round_trip_ms,
        "approaches": approaches,
    })
}

/// Every approach at each client count of the sweep, briefly: locks/s and wait p99 against
/// the number of contending clients.
fn sweep(
    server: &RedisServer,
    options: &Options,
    admin: &mut redis::Connection,
    report: &mut Report,
) -> BenchResult<()> {
    let counts = &options.sizes.sweep_clients;
    let duration = Duration::from_secs_f64(options.sizes.sweep_seconds);
    heading(&format!(
        "Part 1: contention sweep ({} clients, one lock, hold {} ms, pause {} ms, {} s per point)",
        counts
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        HOLD.as_millis(),
        PAUSE.as_millis(),
        options.sizes.sweep_seconds
    ));
    let mut points = Vec::new();
    let mut rates = Table::new(&sweep_headers("locks/s", counts));
    let mut p99s = Table::new(&sweep_headers("wait p99 ms", counts));
    for approach in Approach::ALL {
        let mut rate_row = vec![approach.label().to_string()];
        let mut p99_row = vec![approach.label().to_string()];
        for &clients in counts {
            redis::cmd("DEL").arg(LOCK_KEY).exec(admin)?;
            let result = run_approach(server, approach, clients, duration)?;
            let (rate, waits) = rate_and_waits(&result);
            if result.violations > 0 {
                return Err(format!(
                    "{}: {} mutual-exclusion violations with {clients} clients",
                    approach.label(),
                    result.violations
                )
                .into());
            }
            rate_row.push(format_rate(rate));
            p99_row.push(format_ms(waits.p99));
            points.push(serde_json::json!({
                "approach": approach.label(),
                "clients": clients,
                "locks_per_s": rate,
                "wait_p50_ms": waits.p50,
                "wait_p99_ms": waits.p99,
                "measured_hold_ms": mean_hold_ms(std::slice::from_ref(&result)),
            }));
        }
        rates.row(rate_row);
        p99s.row(p99_row);
    }
    rates.print();
    println!();
    p99s.print();
    report.set("contention_sweep", serde_json::Value::Array(points));
    Ok(())
}

fn sweep_headers(what: &str, counts: &[usize]) -> Vec<String> {
    let mut headers = vec![format!("{what}, clients:")];
    headers.extend(counts.iter().map(usize::to_string));
    headers
}

/// Locks per second over the run and the summary of every wait (ms).
fn rate_and_waits(result: &RunResult) -> (f64, Summary) {
    let total: usize = result.clients.iter().map(|c| c.sections.len()).sum();
    let waits: Vec<f64> = result
        .clients
        .iter()
        .flat_map(|c| c.waits_ms.iter().copied())
        .collect();
    (
        total as f64 / result.elapsed.as_secs_f64(),
        Summary::of(waits),
    )
}

fn run_approach(
    server: &RedisServer,
    approach: Approach,
    clients: usize,
    duration: Duration,
) -> BenchResult<RunResult> {
    let lockers = (0..clients)
        .map(|_| approach.connect(server, LOCK_KEY))
        .collect::<BenchResult<Vec<_>>>()?;
    let occupancy = Arc::new(Occupancy::default());
    let start_line = Arc::new(Barrier::new(clients + 1));
    let workers: Vec<_> = lockers
        .into_iter()
        .map(|locker| {
            let occupancy = Arc::clone(&occupancy);
            let start_line = Arc::clone(&start_line);
            std::thread::spawn(move || contend(locker, &occupancy, &start_line, duration))
        })
        .collect();
    start_line.wait();
    let started = Instant::now();
    let mut clients = Vec::new();
    for worker in workers {
        let record = worker
            .join()
            .map_err(|_| format!("a {} client thread panicked", approach.label()))?
            .map_err(|e| format!("a {} client failed: {e}", approach.label()))?;
        clients.push(record);
    }
    Ok(RunResult {
        approach,
        elapsed: started.elapsed(),
        clients,
        violations: occupancy.violations.load(Ordering::SeqCst),
    })
}

/// One client's loop: want, hold, release, pause, until the time is up.
fn contend(
    mut locker: Box<dyn Locker>,
    occupancy: &Occupancy,
    start_line: &Barrier,
    duration: Duration,
) -> BenchResult<ClientRecord> {
    let mut record = ClientRecord::default();
    start_line.wait();
    let deadline = Instant::now() + duration;
    while Instant::now() < deadline {
        let wants = Instant::now();
        let acquired = locker.acquire(TTL_MS)?;
        let entered = Instant::now();
        occupancy.enter();
        std::thread::sleep(HOLD);
        let left = Instant::now();
        occupancy.leave();
        let released = locker.release()?;
        record.waits_ms.push(millis(entered - wants));
        record.sections.push(CriticalSection {
            token: acquired.token,
            entered,
            left,
        });
        record.refused_releases += u64::from(!released.accepted);
        std::thread::sleep(PAUSE);
    }
    Ok(record)
}

fn print_results(results: &[RunResult]) {
    let mut table = Table::new(&[
        "approach",
        "locks/s",
        "locks",
        "wait p50 ms",
        "wait p99 ms",
        "wait max ms",
        "per client min..max",
        "Jain fairness",
        "violations",
        "refused releases",
    ]);
    for result in results {
        table.row(result_row(result));
    }
    table.print();
    println!(
        "\nlocks/s counts until the last client finished (a client that wants the lock at the deadline \
         still waits for it). wait = from wanting the lock to holding it. Jain fairness over per-client \
         acquisition counts (1 = equal shares). violations = entries into the critical section while \
         another client was inside. refused releases = releases the server refused.\n"
    );
    for result in results {
        println!(
            "fencing tokens, {}: {}",
            result.approach.label(),
            token_verdict(result)
        );
    }
}

fn result_row(result: &RunResult) -> Vec<String> {
    let counts: Vec<u64> = result
        .clients
        .iter()
        .map(|c| c.sections.len() as u64)
        .collect();
    let total: u64 = counts.iter().sum();
    let waits: Vec<f64> = result
        .clients
        .iter()
        .flat_map(|c| c.waits_ms.iter().copied())
        .collect();
    let waits = Summary::of(waits);
    let refused: u64 = result.clients.iter().map(|c| c.refused_releases).sum();
    vec![
        result.approach.label().to_string(),
        format_rate(total as f64 / result.elapsed.as_secs_f64()),
        total.to_string(),
        format_ms(waits.p50),
        format_ms(waits.p99),
        format_ms(waits.max),
        format!(
            "{}..{}",
            counts.iter().min().unwrap_or(&0),
            counts.iter().max().unwrap_or(&0)
        ),
        format!("{:.3}", jain_index(&counts)),
        result.violations.to_string(),
        refused.to_string(),
    ]
}

/// Sorted by token, the critical sections must follow one another without overlap: then the
/// tokens rose in the order the lock was handed over.
fn token_verdict(result: &RunResult) -> String {
    let sections: Vec<CriticalSection> = result
        .clients
        .iter()
        .flat_map(|c| c.sections.iter().copied())
        .collect();
    let mut tokens: Vec<(i64, CriticalSection)> = sections
        .iter()
        .filter_map(|section| section.token.map(|token| (token, *section)))
        .collect();
    if tokens.is_empty() {
        return "none (the lock hands out no fencing token)".to_string();
    }
    if tokens.len() != sections.len() {
        return format!(
            "BAD: only {} of {} acquisitions carried a token",
            tokens.len(),
            sections.len()
        );
    }
    tokens.sort_by_key(|(token, _)| *token);
    let duplicates = tokens
        .windows(2)
        .filter(|pair| pair[0].0 == pair[1].0)
        .count();
    let out_of_order = tokens
        .windows(2)
        .filter(|pair| pair[0].1.left > pair[1].1.entered)
        .count();
    if duplicates == 0 && out_of_order == 0 {
        format!(
            "ok: {} acquisitions, {} distinct tokens ({}..{}), sorted by token the critical sections follow one another without overlap",
            sections.len(),
            tokens.len(),
            tokens[0].0,
            tokens[tokens.len() - 1].0
        )
    } else {
        format!(
            "BAD: {} acquisitions, {duplicates} repeated tokens, {out_of_order} times a higher token's section began before a lower one's ended",
            sections.len()
        )
    }
}
