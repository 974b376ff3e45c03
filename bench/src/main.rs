//! `make bench`: rlock against the usual client-side locks, on a redis-server of its own.
//!
//! Part 1 (contention): throughput, waits, fairness, mutual exclusion and handoff latency of
//! rlock's blocking `LOCK.ACQUIRE ... WAIT`, `SET NX PX` with 100 ms polling, and Redisson's
//! scripts with pub/sub. Part 2: server CPU per call, redis-benchmark throughput, memory per
//! held lock, and how the cost of one acquire scales with held locks and queued waiters, and
//! that of the other kinds (SHARED, LIMIT n, several keys, observers) with their own n.
//! `--json PATH` writes the results for `rlock-bench charts`, which draws them as SVGs.

mod charts;
mod cli;
mod commandstats;
mod contention;
mod cost;
mod handoff;
mod kinds;
mod locker;
mod machine;
mod memory;
mod polling_client;
mod redisson_client;
mod report;
mod rlimit;
mod rlock_client;
mod scaling;
mod scripts;
mod server;
mod stats;
mod table;
mod throughput;
mod transfers;

use std::process::ExitCode;

use cli::{Options, Section};
use report::Report;
use server::RedisServer;

/// Every fallible step of the bench reports its failure as a message.
pub type BenchResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some("charts") {
        return run_charts();
    }
    let options = match cli::parse(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}\n\n{}", cli::USAGE);
            return ExitCode::from(2);
        }
    };
    match run(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("rlock-bench failed: {error}");
            ExitCode::FAILURE
        }
    }
}

/// `rlock-bench charts`: the SVGs from the JSON results of earlier runs.
fn run_charts() -> ExitCode {
    let options = match cli::parse_charts(std::env::args().skip(2)) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}\n\n{}", cli::USAGE);
            return ExitCode::from(2);
        }
    };
    match charts::run(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("rlock-bench charts failed: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run(options: &Options) -> BenchResult<()> {
    let descriptor_limit = rlimit::raise_open_files_limit();
    let server = RedisServer::start(&options.module)?;
    machine::print_header(options, &server, descriptor_limit)?;
    let mut report = Report::default();
    report.set("run", machine::describe()?);
    let started = std::time::Instant::now();
    if options.runs(Section::Contention) {
        contention::run(&server, options, &mut report)?;
        handoff::run(&server, options, &mut report)?;
        transfers::run(&server, options)?;
    }
    if options.runs(Section::Cost) {
        cost::run(&server, options, &mut report)?;
        throughput::run(&server, options)?;
    }
    if options.runs(Section::Memory) {
        memory::run(options, &mut report)?;
    }
    if options.runs(Section::Scaling) {
        scaling::run(&server, options, descriptor_limit, &mut report)?;
        kinds::run(&server, options, descriptor_limit, &mut report)?;
    }
    println!(
        "\ntotal bench time: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    if let Some(path) = &options.json {
        report.write(path)?;
        println!("results as JSON: {}", path.display());
    }
    Ok(())
}
