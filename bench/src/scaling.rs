//! Part 2: the server CPU of one acquire/release pair (commandstats, fresh keys) while many
//! other locks are held, and while many waiters are queued on one other key. It should be flat.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::cli::Options;
use crate::cost::{self, CallCost, Variant};
use crate::memory::hold_rlocks;
use crate::report::Report;
use crate::rlock_client::queued_waiters;
use crate::server::RedisServer;
use crate::stats::format_us;
use crate::table::{heading, Table};
use crate::BenchResult;

const ROUNDS: usize = 3;
const HOT_KEY: &str = "hot";
/// File descriptors kept free for the bench's own connections and files.
const DESCRIPTOR_RESERVE: u64 = 100;
/// How long the server may take to queue (or drop) all waiters.
const QUEUE_TIMEOUT: Duration = Duration::from_secs(60);

pub fn run(
    server: &RedisServer,
    options: &Options,
    descriptor_limit: u64,
    report: &mut Report,
) -> BenchResult<()> {
    let sizes = &options.sizes;
    heading(&format!(
        "Part 2: scaling (server usec per LOCK.ACQUIRE / LOCK.RELEASE over {} pairs on fresh keys, best of {ROUNDS})",
        sizes.scaling_pairs
    ));
    let mut connection = server.connect()?;
    redis::cmd("FLUSHALL").exec(&mut connection)?;
    let mut table = Table::new(&[
        "while",
        "LOCK.ACQUIRE us",
        "LOCK.RELEASE us",
        "pair us",
        "reference: SET NX PX + DEL pair us",
    ]);
    let pairs = sizes.scaling_pairs;
    let baseline = probe(&mut connection, pairs, "baseline")?;
    table.row(cost_row("nothing else held".to_string(), baseline));
    let mut held_points = vec![cost_json("other_locks_held", 0, baseline)];
    let mut held = 0;
    for &target in &sizes.scaling_held {
        hold_rlocks(&mut connection, "held", held..target)?;
        held = target;
        let costs = probe(&mut connection, pairs, &format!("held{target}"))?;
        table.row(cost_row(format!("{target} other locks held"), costs));
        held_points.push(cost_json("other_locks_held", target, costs));
    }
    redis::cmd("FLUSHALL").exec(&mut connection)?;
    let (notes, waiter_points) = measure_with_waiters(
        server,
        &mut connection,
        options,
        descriptor_limit,
        &mut table,
    )?;
    report.set(
        "scaling",
        serde_json::json!({
            "pairs": pairs,
            "held": held_points,
            "waiters": waiter_points,
        }),
    );
    redis::cmd("FLUSHALL").exec(&mut connection)?;
    table.print();
    println!(
        "\nThe reference column is plain Redis on the same keyspace: growth it shares comes from the \
         keyspace (a bigger hash table, more cache misses), not from the lock."
    );
    for note in notes {
        println!("\n{note}");
    }
    Ok(())
}

/// rlock's cost, and the floor's as a reference for what the keyspace itself costs.
fn probe(
    connection: &mut redis::Connection,
    pairs: usize,
    name: &str,
) -> BenchResult<(CallCost, CallCost)> {
    let rlock = cost::measure(
        connection,
        Variant::Rlock,
        pairs,
        ROUNDS,
        &format!("probe:{name}"),
    )?;
    let floor = cost::measure(
        connection,
        Variant::Floor,
        pairs,
        ROUNDS,
        &format!("floor:{name}"),
    )?;
    Ok((rlock, floor))
}

/// One scaling point: `what` = `count`, server µs per call of rlock and of the floor.
fn cost_json(what: &str, count: usize, (rlock, floor): (CallCost, CallCost)) -> serde_json::Value {
    serde_json::json!({
        what: count,
        "rlock_acquire_us": rlock.acquire_us,
        "rlock_release_us": rlock.release_us,
        "rlock_pair_us": rlock.pair_us(),
        "floor_pair_us": floor.pair_us(),
    })
}

fn cost_row(condition: String, (rlock, floor): (CallCost, CallCost)) -> Vec<String> {
    vec![
        condition,
        format_us(rlock.acquire_us),
        format_us(rlock.release_us),
        format_us(rlock.pair_us()),
        format_us(floor.pair_us()),
    ]
}

/// Adds a row per waiter count; returns notes (e.g. a count reduced to what the limits allow)
/// and the points as JSON.
fn measure_with_waiters(
    server: &RedisServer,
    connection: &mut redis::Connection,
    options: &Options,
    descriptor_limit: u64,
    table: &mut Table,
) -> BenchResult<(Vec<String>, Vec<serde_json::Value>)> {
    let token: Option<i64> = redis::cmd("LOCK.ACQUIRE")
        .arg(HOT_KEY)
        .arg("holder")
        .arg(600_000)
        .query(connection)?;
    if token.is_none() {
        return Err(format!("LOCK.ACQUIRE {HOT_KEY} holder on a free key answered nil").into());
    }
    let capacity = waiter_capacity(connection, descriptor_limit)?;
    let mut notes = Vec::new();
    let mut points = Vec::new();
    let mut waiters: Vec<TcpStream> = Vec::new();
    for &wanted in &options.sizes.scaling_waiters {
        let count = wanted.min(capacity);
        if count < wanted {
            notes.push(format!(
                "{wanted} waiters asked for, {count} possible (open-files limit {descriptor_limit}, server maxclients)"
            ));
        }
        while waiters.len() < count {
            waiters.push(queue_waiter(server.port(), waiters.len())?);
        }
        wait_for_queue(connection, count)?;
        let costs = probe(
            connection,
            options.sizes.scaling_pairs,
            &format!("waiters{count}"),
        )?;
        points.push(cost_json("waiters_queued", count, costs));
        let waiters = if count == 1 { "waiter" } else { "waiters" };
        table.row(cost_row(
            format!("{count} {waiters} queued on one other key"),
            costs,
        ));
    }
    drop(waiters);
    wait_for_queue(connection, 0).map_err(|e| format!("after the waiters disconnected: {e}"))?;
    Ok((notes, points))
}

/// How many blocked connections this process and the server can hold.
pub fn waiter_capacity(
    connection: &mut redis::Connection,
    descriptor_limit: u64,
) -> BenchResult<usize> {
    let reply: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxclients")
        .query(connection)?;
    let max_clients: u64 = reply
        .get(1)
        .and_then(|value| value.parse().ok())
        .ok_or("CONFIG GET maxclients gave no number")?;
    let by_descriptors = descriptor_limit.saturating_sub(DESCRIPTOR_RESERVE);
    let by_server = max_clients.saturating_sub(DESCRIPTOR_RESERVE);
    Ok(by_descriptors.min(by_server) as usize)
}

/// A raw connection that sends `LOCK.ACQUIRE hot w<i> 10000 WAIT 0` and never reads: it stays
/// blocked in the server until it is dropped.
fn queue_waiter(port: u16, index: usize) -> BenchResult<TcpStream> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .map_err(|e| format!("cannot open waiter connection {index}: {e}"))?;
    let owner = format!("w{index}");
    let arguments = [
        "LOCK.ACQUIRE",
        HOT_KEY,
        owner.as_str(),
        "10000",
        "WAIT",
        "0",
    ];
    stream
        .write_all(&encode_command(&arguments))
        .map_err(|e| format!("cannot send waiter {index}'s acquire: {e}"))?;
    Ok(stream)
}

/// A command in RESP, for raw connections that never read their replies.
pub fn encode_command(arguments: &[&str]) -> Vec<u8> {
    let mut bytes = format!("*{}\r\n", arguments.len()).into_bytes();
    for argument in arguments {
        bytes.extend_from_slice(format!("${}\r\n{argument}\r\n", argument.len()).as_bytes());
    }
    bytes
}

fn wait_for_queue(connection: &mut redis::Connection, expected: usize) -> BenchResult<()> {
    let deadline = Instant::now() + QUEUE_TIMEOUT;
    loop {
        let queued = queued_waiters(connection, HOT_KEY)?;
        if queued == expected as i64 {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{queued} waiters queued on {HOT_KEY} after {QUEUE_TIMEOUT:?}, expected {expected}"
            )
            .into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
