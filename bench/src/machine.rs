//! The header naming the machine, the server and the run's settings.

use std::process::Command;

use crate::cli::Options;
use crate::server::{RedisServer, REDIS_SERVER};
use crate::BenchResult;

pub fn print_header(
    options: &Options,
    server: &RedisServer,
    descriptor_limit: u64,
) -> BenchResult<()> {
    println!("# rlock benchmarks");
    println!();
    println!("machine:      {}", machine());
    println!(
        "kernel:       Linux {}",
        read_trimmed("/proc/sys/kernel/osrelease")
    );
    println!(
        "redis-server: {} ({REDIS_SERVER}, port {})",
        redis_version()?,
        server.port()
    );
    println!("module:       {}", options.module.display());
    println!(
        "run:          {} mode, {} clients, {} s per contention run, open-files limit {descriptor_limit}",
        if options.quick { "quick" } else { "full" },
        options.clients,
        options.seconds
    );
    println!(
        "note:         client threads and redis-server share the same CPUs; figures are noisy"
    );
    Ok(())
}

/// "2 CPUs (nproc), Intel(R) Xeon(R) ...": what the figures were measured on.
pub fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cpus} CPUs (nproc), {}", cpu_model())
}

/// The machine, server and date of this run, for the JSON results (and so the charts).
pub fn describe() -> BenchResult<serde_json::Value> {
    Ok(serde_json::json!({
        "machine": machine(),
        "kernel": format!("Linux {}", read_trimmed("/proc/sys/kernel/osrelease")),
        "server": format!("redis-server {}", redis_version()?),
        "date": crate::report::today(),
    }))
}

fn cpu_model() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    cpuinfo
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            (name.trim() == "model name").then(|| value.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".to_string())
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path).map_or_else(|_| "?".to_string(), |s| s.trim().to_string())
}

/// "7.0.15" from `redis-server --version` ("Redis server v=7.0.15 sha=...").
fn redis_version() -> BenchResult<String> {
    let output = Command::new(REDIS_SERVER)
        .arg("--version")
        .output()
        .map_err(|e| format!("cannot run {REDIS_SERVER} --version: {e}"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    Ok(text
        .split_whitespace()
        .find_map(|word| word.strip_prefix("v="))
        .unwrap_or("unknown version")
        .to_string())
}
