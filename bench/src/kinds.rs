//! Part 2: cost as work grows for the other kinds of hold, server µs per call from
//! `INFO commandstats`:
//! - a reader's `SHARED` pair on a key that n other readers hold;
//! - taking (and giving back) the last slot of a `LIMIT n` semaphore whose other n - 1 are held;
//! - `LOCK.MACQUIRE` + `LOCK.MRELEASE` of n keys, per call (all n keys);
//! - the release that wakes n clients blocked in `LOCK.OBSERVE` on its key (the release and
//!   the observers' replies).

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use redis::Value;

use crate::cli::Options;
use crate::commandstats::{info_number, totals_of, CallTotals};
use crate::report::Report;
use crate::scaling::{encode_command, waiter_capacity};
use crate::server::RedisServer;
use crate::stats::{format_us, Summary};
use crate::table::{heading, Table};
use crate::BenchResult;

const TTL_MS: u64 = 600_000;
/// Pairs per pipelined batch.
const BATCH: usize = 50;
const ROUNDS: usize = 3;
/// Releases that wake the observers, per observer count; the median is kept.
const OBSERVED_RELEASES: usize = 5;
/// How long the server may take to block every observer.
const OBSERVE_TIMEOUT: Duration = Duration::from_secs(60);

/// One line of the chart: what grows, and the server µs per call at each n.
struct Series {
    label: &'static str,
    points: Vec<(usize, f64)>,
}

pub fn run(
    server: &RedisServer,
    options: &Options,
    descriptor_limit: u64,
    report: &mut Report,
) -> BenchResult<()> {
    let pairs = options.sizes.kind_pairs;
    let counts = &options.sizes.kind_counts;
    heading(&format!(
        "Part 2: cost as work grows, other kinds (server usec per call, commandstats; {pairs}/n pairs per point, at least {BATCH}, best of {ROUNDS})"
    ));
    let mut connection = server.connect()?;
    redis::cmd("FLUSHALL").exec(&mut connection)?;
    let mut series = Vec::new();
    series.push(shared_beside(&mut connection, counts, pairs)?);
    series.push(last_slot(&mut connection, counts, pairs)?);
    series.push(several_keys(
        &mut connection,
        &options.sizes.several_keys,
        pairs,
    )?);
    redis::cmd("FLUSHALL").exec(&mut connection)?;
    let capacity = waiter_capacity(&mut connection, descriptor_limit)?;
    series.push(observed_release(
        server,
        &mut connection,
        &options.sizes.observer_counts,
        capacity,
    )?);
    redis::cmd("FLUSHALL").exec(&mut connection)?;
    print_series(&series);
    let json: Vec<serde_json::Value> = series
        .iter()
        .map(|s| {
            let points: Vec<serde_json::Value> = s
                .points
                .iter()
                .map(|&(n, us)| serde_json::json!({ "n": n, "us": us }))
                .collect();
            serde_json::json!({ "label": s.label, "points": points })
        })
        .collect();
    report.set(
        "scaling_kinds",
        serde_json::json!({ "pairs": pairs, "series": json }),
    );
    Ok(())
}

fn print_series(series: &[Series]) {
    let mut table = Table::new(&["series", "n", "server us per call"]);
    for s in series {
        for &(n, us) in &s.points {
            table.row(vec![s.label.to_string(), n.to_string(), format_us(us)]);
        }
    }
    table.print();
    println!(
        "\nA pair: its acquire and its release. The observed release: one release per figure (the median of \
         {OBSERVED_RELEASES}), its usec plus the LOCK.OBSERVE replies it caused; commandstats counts whole \
         microseconds per call, so small figures are coarse."
    );
}

/// A reader's pair beside `n` readers already holding the key.
fn shared_beside(
    connection: &mut redis::Connection,
    counts: &[usize],
    pairs: usize,
) -> BenchResult<Series> {
    let mut points = Vec::new();
    for &n in counts {
        let key = format!("shared:{n}");
        hold_all(connection, &key, n, &["SHARED"])?;
        let us = best_pair_cost(
            connection,
            ("lock.acquire", "lock.release"),
            calls_for(pairs, n),
            |pipe| {
                pipe.cmd("LOCK.ACQUIRE")
                    .arg(&key)
                    .arg("probe")
                    .arg(TTL_MS)
                    .arg("SHARED");
                pipe.cmd("LOCK.RELEASE").arg(&key).arg("probe");
            },
        )?;
        points.push((n, us));
    }
    Ok(Series {
        label: "SHARED: a reader's pair beside n readers",
        points,
    })
}

/// The last slot of a `LIMIT n + 1` semaphore whose n other slots are held.
fn last_slot(
    connection: &mut redis::Connection,
    counts: &[usize],
    pairs: usize,
) -> BenchResult<Series> {
    let mut points = Vec::new();
    for &n in counts {
        let key = format!("limit:{n}");
        let limit = (n + 1).to_string();
        hold_all(connection, &key, n, &["LIMIT", &limit])?;
        let us = best_pair_cost(
            connection,
            ("lock.acquire", "lock.release"),
            calls_for(pairs, n),
            |pipe| {
                pipe.cmd("LOCK.ACQUIRE")
                    .arg(&key)
                    .arg("probe")
                    .arg(TTL_MS)
                    .arg("LIMIT")
                    .arg(&limit);
                pipe.cmd("LOCK.RELEASE").arg(&key).arg("probe");
            },
        )?;
        points.push((n, us));
    }
    Ok(Series {
        label: "LIMIT n+1: the last slot's pair beside n holders",
        points,
    })
}

/// `LOCK.MACQUIRE` + `LOCK.MRELEASE` of `n` free keys, per call.
fn several_keys(
    connection: &mut redis::Connection,
    counts: &[usize],
    pairs: usize,
) -> BenchResult<Series> {
    let mut points = Vec::new();
    for &n in counts {
        let keys: Vec<String> = (0..n).map(|i| format!("several:{n}:{i}")).collect();
        let us = best_pair_cost(
            connection,
            ("lock.macquire", "lock.mrelease"),
            calls_for(pairs, n),
            |pipe| {
                pipe.cmd("LOCK.MACQUIRE")
                    .arg(n)
                    .arg(&keys)
                    .arg("probe")
                    .arg(TTL_MS);
                pipe.cmd("LOCK.MRELEASE").arg(n).arg(&keys).arg("probe");
            },
        )?;
        points.push((n, us));
    }
    Ok(Series {
        label: "LOCK.MACQUIRE + LOCK.MRELEASE of n keys, per call",
        points,
    })
}

/// Fewer pairs where each does work in proportion to n: `pairs / n`, at least a batch.
fn calls_for(pairs: usize, n: usize) -> usize {
    (pairs / n.max(1)).max(BATCH)
}

/// `n` owners `holder:<i>` hold `key` with `options` (SHARED or LIMIT n).
fn hold_all(
    connection: &mut redis::Connection,
    key: &str,
    n: usize,
    options: &[&str],
) -> BenchResult<()> {
    for first in (0..n).step_by(1_000) {
        let mut pipe = redis::pipe();
        for i in first..n.min(first + 1_000) {
            pipe.cmd("LOCK.ACQUIRE")
                .arg(key)
                .arg(format!("holder:{i}"))
                .arg(TTL_MS)
                .arg(options);
        }
        let replies: Vec<Value> = pipe.query(connection)?;
        if let Some(refused) = replies.iter().find(|r| !granted(r)) {
            return Err(
                format!("LOCK.ACQUIRE {key} {options:?}: {refused:?} while filling").into(),
            );
        }
    }
    Ok(())
}

/// A token, or tokens for every key.
fn granted(reply: &Value) -> bool {
    match reply {
        Value::Int(token) => *token > 0,
        Value::Array(tokens) => tokens.iter().all(granted),
        _ => false,
    }
}

/// The cheapest of `ROUNDS` rounds of `pairs` pairs that `add_pair` puts in a pipeline: server
/// µs of both commands per pair. Every acquire must be granted.
fn best_pair_cost(
    connection: &mut redis::Connection,
    (acquire, release): (&str, &str),
    pairs: usize,
    add_pair: impl Fn(&mut redis::Pipeline),
) -> BenchResult<f64> {
    let mut best = f64::INFINITY;
    for _ in 0..ROUNDS {
        redis::cmd("CONFIG").arg("RESETSTAT").exec(connection)?;
        let mut done = 0;
        while done < pairs {
            let batch = BATCH.min(pairs - done);
            let mut pipe = redis::pipe();
            for _ in 0..batch {
                add_pair(&mut pipe);
            }
            let replies: Vec<Value> = pipe.query(connection)?;
            if let Some(refused) = replies.iter().step_by(2).find(|r| !granted(r)) {
                return Err(format!("{acquire}: {refused:?} in the probe's pair").into());
            }
            done += batch;
        }
        let mut totals = totals_of(connection, acquire)?;
        totals.add(totals_of(connection, release)?);
        best = best.min(totals.usec as f64 / pairs as f64);
    }
    Ok(best)
}

/// The server µs of a release that wakes `n` observers: LOCK.RELEASE's own usec plus the
/// LOCK.OBSERVE replies it caused, the median of `OBSERVED_RELEASES`.
fn observed_release(
    server: &RedisServer,
    connection: &mut redis::Connection,
    counts: &[usize],
    capacity: usize,
) -> BenchResult<Series> {
    const KEY: &str = "observed";
    let mut observers: Vec<TcpStream> = Vec::new();
    let mut points = Vec::new();
    for &n in counts {
        let n = n.min(capacity);
        while observers.len() < n {
            observers.push(
                TcpStream::connect(("127.0.0.1", server.port()))
                    .map_err(|e| format!("cannot open observer connection: {e}"))?,
            );
        }
        let mut releases = Vec::new();
        for _ in 0..OBSERVED_RELEASES {
            let token: Option<i64> = redis::cmd("LOCK.ACQUIRE")
                .arg(KEY)
                .arg("holder")
                .arg(TTL_MS)
                .query(connection)?;
            let token = token.ok_or("LOCK.ACQUIRE on the free observed key answered nil")?;
            let observe = encode_command(&["LOCK.OBSERVE", KEY, &token.to_string()]);
            for observer in &mut observers[..n] {
                observer
                    .write_all(&observe)
                    .map_err(|e| format!("cannot send LOCK.OBSERVE: {e}"))?;
            }
            wait_for_observers(connection, n)?;
            redis::cmd("CONFIG").arg("RESETSTAT").exec(connection)?;
            redis::cmd("LOCK.RELEASE")
                .arg(KEY)
                .arg("holder")
                .exec(connection)?;
            wait_for_observers(connection, 0)?;
            let release: CallTotals = totals_of(connection, "lock.release")?;
            let observe: CallTotals = totals_of(connection, "lock.observe")?;
            releases.push((release.usec + observe.usec) as f64);
        }
        points.push((n, Summary::of(releases).p50));
    }
    Ok(Series {
        label: "a release that wakes n LOCK.OBSERVE clients",
        points,
    })
}

fn wait_for_observers(connection: &mut redis::Connection, expected: usize) -> BenchResult<()> {
    let deadline = Instant::now() + OBSERVE_TIMEOUT;
    loop {
        let observers = info_number(connection, "lock", "lock_observers")?;
        if observers == expected as u64 {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{observers} clients in LOCK.OBSERVE after {OBSERVE_TIMEOUT:?}, expected {expected}"
            )
            .into());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
