//! The Rust client's routing cost over a Redis Cluster (bench/cluster.py, issue 24 part 3):
//! rlock-client's `Lock` pairs one at a time over redis' cluster connections against the same
//! over a connection to the key's master (routed by hand: CRC16 of the key, CLUSTER SLOTS read
//! once). Blocking: `Connection` by hand, and `cluster::ClusterConnection`, which refuses the
//! pipelines the blocking API sends (the row says so). Async (tokio, one thread):
//! `MultiplexedConnection` by hand against `cluster_async::ClusterConnection`. Prints one JSON
//! array: µs and client CPU µs per pair (or the error).
//!
//! usage: cluster-routing SECONDS PORT [PORT...]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use redis::cluster::ClusterClient;
use redis::{Connection, ConnectionLike};
use rlock_client::{AsyncConnection, Lock};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const KEYS: usize = 1000;
const USAGE: &str = "usage: cluster-routing SECONDS PORT...";

/// (pairs, wall seconds, process CPU seconds) of a run, or why it could not run.
type Outcome = Result<(usize, f64, f64), String>;

fn main() -> Result<(), BoxError> {
    let mut args = std::env::args().skip(1);
    let seconds: f64 = args.next().ok_or(USAGE)?.parse()?;
    let ports = args
        .map(|port| port.parse::<u16>())
        .collect::<Result<Vec<_>, _>>()?;
    if ports.is_empty() {
        return Err(USAGE.into());
    }
    let urls: Vec<String> = ports
        .iter()
        .map(|port| format!("redis://127.0.0.1:{port}/"))
        .collect();
    let names: Vec<String> = (0..KEYS).map(|i| format!("lock:{i:06}")).collect();
    let locks: Vec<Lock> = names
        .iter()
        .map(|name| Lock::new(name.as_str()).ttl(Duration::from_secs(10)))
        .collect();

    // By hand: one connection per master, the slot map read once.
    let mut direct: Vec<Connection> = Vec::new();
    for url in &urls {
        direct.push(redis::Client::open(url.as_str())?.get_connection()?);
    }
    let slots = slot_map(&mut direct[0])?;
    let index_of: HashMap<u16, usize> = ports
        .iter()
        .enumerate()
        .map(|(i, &port)| (port, i))
        .collect();
    let master_of: Vec<usize> = names
        .iter()
        .map(|name| {
            let slot = crc16::State::<crc16::XMODEM>::calculate(name.as_bytes()) % 16384;
            slots
                .iter()
                .find(|(lo, hi, _)| (*lo..=*hi).contains(&slot))
                .and_then(|s| index_of.get(&s.2).copied())
                .ok_or("a slot without a known master")
        })
        .collect::<Result<_, _>>()?;
    let everywhere = vec![0; KEYS];

    let mut rows = vec![row(
        "rlock-client Lock, Connection routed by hand",
        run(seconds, &locks, &mut direct, &master_of),
    )];
    let mut cluster = [ClusterClient::new(urls.clone())?.get_connection()?];
    rows.push(row(
        "rlock-client Lock, cluster::ClusterConnection",
        run(seconds, &locks, &mut cluster, &everywhere),
    ));

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let by_hand_async = runtime.block_on(async {
        let mut conns = Vec::new();
        for url in &urls {
            conns.push(
                redis::Client::open(url.as_str())?
                    .get_multiplexed_async_connection()
                    .await?,
            );
        }
        Ok::<_, BoxError>(run_async(seconds, &locks, &mut conns, &master_of).await)
    })?;
    rows.push(row(
        "rlock-client Lock async, MultiplexedConnection by hand",
        by_hand_async,
    ));
    let cluster_async = runtime.block_on(async {
        let mut conns = [ClusterClient::new(urls.clone())?
            .get_async_connection()
            .await?];
        Ok::<_, BoxError>(run_async(seconds, &locks, &mut conns, &everywhere).await)
    })?;
    rows.push(row(
        "rlock-client Lock async, cluster_async::ClusterConnection",
        cluster_async,
    ));
    println!("[{}]", rows.join(", "));
    Ok(())
}

/// (first slot, last slot, master port) of every range CLUSTER SLOTS gives.
fn slot_map(conn: &mut Connection) -> Result<Vec<(u16, u16, u16)>, BoxError> {
    let ranges: Vec<Vec<redis::Value>> = redis::cmd("CLUSTER").arg("SLOTS").query(conn)?;
    let mut map = Vec::new();
    for range in ranges {
        let [lo, hi, master, ..] = range.as_slice() else {
            return Err("a CLUSTER SLOTS range of fewer than 3 fields".into());
        };
        let master: Vec<redis::Value> = redis::from_redis_value(master.clone())?;
        let port = master.get(1).ok_or("a CLUSTER SLOTS node without a port")?;
        map.push((
            redis::from_redis_value(lo.clone())?,
            redis::from_redis_value(hi.clone())?,
            redis::from_redis_value(port.clone())?,
        ));
    }
    Ok(map)
}

/// Pairs (acquire, release) of lock i over `conns[which[i]]`, every lock in turn, for about
/// `seconds`.
fn run<C: ConnectionLike>(
    seconds: f64,
    locks: &[Lock],
    conns: &mut [C],
    which: &[usize],
) -> Outcome {
    let pair = |conns: &mut [C], index: usize| -> Result<(), String> {
        let guard = locks[index]
            .acquire(&mut conns[which[index]])
            .map_err(|e| e.to_string())?;
        guard.release().map(drop).map_err(|e| e.to_string())
    };
    for index in 0..50 {
        pair(conns, index)?;
    }
    let (started, cpu) = (Instant::now(), process_cpu());
    let mut pairs = 0;
    while started.elapsed().as_secs_f64() < seconds {
        for index in 0..locks.len() {
            pair(conns, index)?;
        }
        pairs += locks.len();
    }
    Ok((pairs, started.elapsed().as_secs_f64(), process_cpu() - cpu))
}

/// `run` over the async API.
async fn run_async<C: AsyncConnection>(
    seconds: f64,
    locks: &[Lock],
    conns: &mut [C],
    which: &[usize],
) -> Outcome {
    async fn pair<C: AsyncConnection>(lock: &Lock, conn: &mut C) -> Result<(), String> {
        let guard = lock.acquire_async(conn).await.map_err(|e| e.to_string())?;
        guard.release().await.map(drop).map_err(|e| e.to_string())
    }
    for index in 0..50 {
        pair(&locks[index], &mut conns[which[index]]).await?;
    }
    let (started, cpu) = (Instant::now(), process_cpu());
    let mut pairs = 0;
    while started.elapsed().as_secs_f64() < seconds {
        for (index, lock) in locks.iter().enumerate() {
            pair(lock, &mut conns[which[index]]).await?;
        }
        pairs += locks.len();
    }
    Ok((pairs, started.elapsed().as_secs_f64(), process_cpu() - cpu))
}

fn row(label: &str, outcome: Outcome) -> String {
    match outcome {
        Ok((pairs, wall, cpu)) => format!(
            "{{\"client\": \"{label}\", \"us_per_pair\": {:.1}, \"client_cpu_us_per_pair\": {:.1}, \"pairs\": {pairs}}}",
            wall / pairs as f64 * 1e6,
            cpu / pairs as f64 * 1e6
        ),
        Err(error) => format!("{{\"client\": \"{label}\", \"error\": {:?}}}", error),
    }
}

/// This process' user + system CPU seconds (NaN, shown as such, if getrusage fails).
fn process_cpu() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage only writes the struct it is given; RUSAGE_SELF is always valid, and
    // the struct is read only when the call succeeded (it was zeroed before either way).
    let usage = unsafe {
        if libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) != 0 {
            return f64::NAN;
        }
        usage.assume_init()
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}
