//! Part 2: requests per second from redis-benchmark, LOCK.ACQUIRE against SET NX PX, with and
//! without pipelining.

use std::process::Command;

use crate::cli::Options;
use crate::server::RedisServer;
use crate::stats::{format_rate, format_ratio};
use crate::table::{heading, Table};
use crate::BenchResult;

const REDIS_BENCHMARK: &str = "/usr/bin/redis-benchmark";
const CLIENTS: usize = 50;
const KEY_RANGE: usize = 100_000;
const PIPELINE: usize = 16;

const LOCK_ACQUIRE: [&str; 4] = ["LOCK.ACQUIRE", "lock:__rand_int__", "owner", "30000"];
const SET_NX_PX: [&str; 6] = ["SET", "lock:__rand_int__", "owner", "NX", "PX", "30000"];

pub fn run(server: &RedisServer, options: &Options) -> BenchResult<()> {
    let requests = options.sizes.benchmark_requests;
    heading(&format!(
        "Part 2: throughput (redis-benchmark -n {requests} -r {KEY_RANGE} -c {CLIENTS}, requests/s; FLUSHALL between runs)"
    ));
    let mut connection = server.connect()?;
    let mut table = Table::new(&["command", "no pipeline", &format!("-P {PIPELINE}")]);
    let mut rates = Vec::new();
    for command in [&LOCK_ACQUIRE[..], &SET_NX_PX[..]] {
        let mut row = vec![command.join(" ")];
        let mut pair = Vec::new();
        for pipeline in [1, PIPELINE] {
            redis::cmd("FLUSHALL").exec(&mut connection)?;
            let rate = requests_per_second(server.port(), requests, pipeline, command)?;
            row.push(format_rate(rate));
            pair.push(rate);
        }
        table.row(row);
        rates.push(pair);
    }
    redis::cmd("FLUSHALL").exec(&mut connection)?;
    table.row(vec![
        "LOCK.ACQUIRE / SET".to_string(),
        format_ratio(rates[0][0] / rates[1][0]),
        format_ratio(rates[0][1] / rates[1][1]),
    ]);
    table.print();
    println!("\nredis-benchmark runs on the same CPUs as the server; with -r, some keys repeat (a reentry for LOCK.ACQUIRE, a refused SET NX).");
    Ok(())
}

fn requests_per_second(
    port: u16,
    requests: usize,
    pipeline: usize,
    command: &[&str],
) -> BenchResult<f64> {
    let output = Command::new(REDIS_BENCHMARK)
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-n", &requests.to_string(), "-r", &KEY_RANGE.to_string()])
        .args([
            "-c",
            &CLIENTS.to_string(),
            "-P",
            &pipeline.to_string(),
            "-q",
        ])
        .args(command)
        .output()
        .map_err(|e| format!("cannot run {REDIS_BENCHMARK}: {e}"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    parse_rate(&text).ok_or_else(|| {
        format!(
            "no 'requests per second' in redis-benchmark's output for {}: {}{}",
            command.join(" "),
            text.trim(),
            String::from_utf8_lossy(&output.stderr).trim()
        )
        .into()
    })
}

/// "\r...progress...\rSET lock:__rand_int__ owner NX PX 30000: 392156.88 requests per second, p50=..."
fn parse_rate(output: &str) -> Option<f64> {
    output.split(['\r', '\n']).find_map(|segment| {
        let (before, _) = segment.split_once(" requests per second")?;
        before.rsplit(' ').next()?.parse().ok()
    })
}
