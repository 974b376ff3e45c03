//! Command-line options and the sizes they imply.

use std::path::PathBuf;

pub const USAGE: &str =
    "usage: rlock-bench --module /abs/path/librlock.so [--clients N] [--seconds S] \
[--quick] [--only contention|cost|memory|scaling] [--json PATH]
       rlock-bench charts [--data DIR] [--out DIR]   (SVG charts from the JSON results)";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Section {
    Contention,
    Cost,
    Memory,
    Scaling,
}

#[derive(Clone, Debug)]
pub struct Options {
    pub module: PathBuf,
    /// Clients contending for one lock in part 1.
    pub clients: usize,
    /// Seconds each approach runs in the contention test.
    pub seconds: f64,
    pub quick: bool,
    pub only: Option<Section>,
    /// Where the results go as JSON, for `rlock-bench charts`.
    pub json: Option<PathBuf>,
    pub sizes: Sizes,
}

impl Options {
    pub fn runs(&self, section: Section) -> bool {
        self.only.is_none_or(|only| only == section)
    }
}

/// How much work each measurement does; `--quick` shrinks everything for a smoke run.
#[derive(Clone, Debug)]
pub struct Sizes {
    /// Handoff rounds for approaches that hand over within milliseconds.
    pub handoff_rounds_fast: usize,
    /// Handoff rounds for 100 ms polling (each round costs ~100 ms).
    pub handoff_rounds_polling: usize,
    /// Rounds of "holder never releases, lock expires, waiter takes it".
    pub expiry_rounds: usize,
    /// Lock/unlock pairs per commandstats round.
    pub cost_pairs: usize,
    /// Rounds per cost figure; the best is kept.
    pub cost_rounds: usize,
    /// Requests per redis-benchmark run.
    pub benchmark_requests: usize,
    /// Held locks in the memory test.
    pub memory_locks: usize,
    /// Numbers of other held locks in the scaling test.
    pub scaling_held: Vec<usize>,
    /// Numbers of waiters queued on one other key in the scaling test.
    pub scaling_waiters: Vec<usize>,
    /// Acquire/release pairs per scaling measurement.
    pub scaling_pairs: usize,
    /// Numbers of contending clients in the contention sweep.
    pub sweep_clients: Vec<usize>,
    /// Seconds per approach and client count in the sweep.
    pub sweep_seconds: f64,
    /// Pairs per point of the other kinds' scaling.
    pub kind_pairs: usize,
    /// Other holders beside a SHARED reader or a LIMIT semaphore's last slot.
    pub kind_counts: Vec<usize>,
    /// Keys per LOCK.MACQUIRE.
    pub several_keys: Vec<usize>,
    /// Clients in LOCK.OBSERVE that a release wakes.
    pub observer_counts: Vec<usize>,
}

impl Sizes {
    fn full() -> Sizes {
        Sizes {
            handoff_rounds_fast: 500,
            handoff_rounds_polling: 40,
            expiry_rounds: 20,
            cost_pairs: 200_000,
            cost_rounds: 3,
            benchmark_requests: 200_000,
            memory_locks: 1_000_000,
            scaling_held: vec![10, 1_000, 10_000, 100_000, 1_000_000],
            scaling_waiters: vec![1, 10, 100, 1_000, 10_000],
            scaling_pairs: 20_000,
            sweep_clients: vec![1, 2, 4, 8, 16, 32],
            sweep_seconds: 1.5,
            kind_pairs: 5_000,
            kind_counts: vec![1, 10, 100, 1_000, 9_999],
            several_keys: vec![1, 10, 100, 1_000],
            observer_counts: vec![1, 10, 100, 1_000, 10_000],
        }
    }

    fn quick() -> Sizes {
        Sizes {
            handoff_rounds_fast: 100,
            handoff_rounds_polling: 10,
            expiry_rounds: 5,
            cost_pairs: 20_000,
            cost_rounds: 2,
            benchmark_requests: 20_000,
            memory_locks: 100_000,
            scaling_held: vec![1_000, 10_000, 100_000],
            scaling_waiters: vec![1, 100, 1_000],
            scaling_pairs: 5_000,
            sweep_clients: vec![1, 2, 8, 32],
            sweep_seconds: 0.5,
            kind_pairs: 1_000,
            kind_counts: vec![1, 100, 1_000],
            several_keys: vec![1, 10, 100],
            observer_counts: vec![1, 100, 1_000],
        }
    }
}

pub fn parse(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut module = None;
    let mut clients = 8;
    let mut seconds = None;
    let mut quick = false;
    let mut only = None;
    let mut json = None;
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--module" => module = Some(PathBuf::from(value_of(&flag, args.next())?)),
            "--clients" => clients = number_of(&flag, args.next())?,
            "--seconds" => seconds = Some(number_of(&flag, args.next())?),
            "--quick" => quick = true,
            "--only" => only = Some(section_of(&value_of(&flag, args.next())?)?),
            "--json" => json = Some(PathBuf::from(value_of(&flag, args.next())?)),
            "-h" | "--help" => return Err("rlock benchmarks".into()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let module = module.ok_or("--module is required")?;
    if !module.is_file() {
        return Err(format!(
            "no module at {}: build it with `cargo build --release -p rlock`",
            module.display()
        ));
    }
    let module = module
        .canonicalize()
        .map_err(|e| format!("cannot resolve {}: {e}", module.display()))?;
    if !(2..=1000).contains(&clients) {
        return Err("--clients must be from 2 (one lock needs contenders) to 1000".into());
    }
    let seconds: f64 = seconds.unwrap_or(if quick { 1.0 } else { 3.0 });
    if !(seconds > 0.0 && seconds <= 60.0) {
        return Err("--seconds must be in (0, 60]".into());
    }
    let sizes = if quick { Sizes::quick() } else { Sizes::full() };
    Ok(Options {
        module,
        clients,
        seconds,
        quick,
        only,
        json,
        sizes,
    })
}

/// `rlock-bench charts`: where the JSON results are read and the SVGs written.
#[derive(Clone, Debug)]
pub struct ChartOptions {
    pub data: PathBuf,
    pub out: PathBuf,
}

pub fn parse_charts(mut args: impl Iterator<Item = String>) -> Result<ChartOptions, String> {
    let mut options = ChartOptions {
        data: PathBuf::from("target/bench"),
        out: PathBuf::from("bench/charts"),
    };
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--data" => options.data = PathBuf::from(value_of(&flag, args.next())?),
            "--out" => options.out = PathBuf::from(value_of(&flag, args.next())?),
            other => return Err(format!("unknown argument to charts: {other:?}")),
        }
    }
    Ok(options)
}

fn value_of(flag: &str, value: Option<String>) -> Result<String, String> {
    value.ok_or_else(|| format!("{flag} needs a value"))
}

fn number_of<T: std::str::FromStr>(flag: &str, value: Option<String>) -> Result<T, String> {
    let text = value_of(flag, value)?;
    text.parse()
        .map_err(|_| format!("{flag} needs a number, got {text:?}"))
}

fn section_of(name: &str) -> Result<Section, String> {
    match name {
        "contention" => Ok(Section::Contention),
        "cost" => Ok(Section::Cost),
        "memory" => Ok(Section::Memory),
        "scaling" => Ok(Section::Scaling),
        other => Err(format!(
            "--only takes contention, cost, memory or scaling, not {other:?}"
        )),
    }
}
