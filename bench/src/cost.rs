//! Part 2: server CPU per call from `INFO commandstats`, for a lock/unlock pair on distinct
//! keys, pipelined: an acquire batch, then the release batch of the same keys.

use redis::Value;

use crate::cli::Options;
use crate::commandstats::{totals_of, CallTotals};
use crate::report::Report;
use crate::scripts;
use crate::server::RedisServer;
use crate::stats::{format_ratio, format_us};
use crate::table::{heading, Table};
use crate::BenchResult;

/// Commands per pipelined batch.
const BATCH: usize = 100;
const TTL_MS: u64 = 30_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// SET NX PX + DEL: what any lock costs at least.
    Floor,
    Rlock,
    /// SET NX PX + the compare-and-delete script.
    SetNxLua,
    /// Redisson's acquire and release scripts.
    Redisson,
}

impl Variant {
    pub const ALL: [Variant; 4] = [
        Variant::Floor,
        Variant::Rlock,
        Variant::SetNxLua,
        Variant::Redisson,
    ];

    fn label(self) -> &'static str {
        match self {
            Variant::Floor => "floor: SET NX PX + DEL",
            Variant::Rlock => "rlock: LOCK.ACQUIRE + LOCK.RELEASE",
            Variant::SetNxLua => "SET NX PX + Lua compare-and-delete",
            Variant::Redisson => "Redisson acquire + release scripts",
        }
    }

    /// The commandstats names of (acquire, release).
    fn commands(self) -> (&'static str, &'static str) {
        match self {
            Variant::Floor => ("set", "del"),
            Variant::Rlock => ("lock.acquire", "lock.release"),
            Variant::SetNxLua => ("set", "evalsha"),
            Variant::Redisson => ("evalsha", "evalsha"),
        }
    }

    fn add_acquire(self, pipe: &mut redis::Pipeline, key: &str, owner: &str) {
        match self {
            Variant::Floor | Variant::SetNxLua => pipe
                .cmd("SET")
                .arg(key)
                .arg(owner)
                .arg("NX")
                .arg("PX")
                .arg(TTL_MS),
            Variant::Rlock => pipe.cmd("LOCK.ACQUIRE").arg(key).arg(owner).arg(TTL_MS),
            Variant::Redisson => pipe
                .cmd("EVALSHA")
                .arg(&scripts::shas().redisson_acquire)
                .arg(1)
                .arg(key)
                .arg(TTL_MS)
                .arg(owner),
        };
    }

    fn add_release(self, pipe: &mut redis::Pipeline, key: &str, owner: &str) {
        match self {
            Variant::Floor => pipe.cmd("DEL").arg(key),
            Variant::Rlock => pipe.cmd("LOCK.RELEASE").arg(key).arg(owner),
            Variant::SetNxLua => pipe
                .cmd("EVALSHA")
                .arg(&scripts::shas().compare_and_delete)
                .arg(1)
                .arg(key)
                .arg(owner),
            Variant::Redisson => pipe
                .cmd("EVALSHA")
                .arg(&scripts::shas().redisson_release)
                .arg(2)
                .arg(key)
                .arg(scripts::redisson_channel(key))
                .arg(scripts::REDISSON_UNLOCK_MESSAGE)
                .arg(TTL_MS)
                .arg(owner),
        };
    }

    /// Whether a reply means "taken" (every key is fresh, so every acquire must succeed).
    fn acquired(self, reply: &Value) -> bool {
        match self {
            Variant::Floor | Variant::SetNxLua => matches!(reply, Value::Okay),
            Variant::Rlock => matches!(reply, Value::Int(token) if *token > 0),
            Variant::Redisson => matches!(reply, Value::Nil),
        }
    }

    /// Whether a reply means "freed".
    fn released(self, reply: &Value) -> bool {
        match self {
            Variant::Rlock => matches!(reply, Value::Int(0)),
            Variant::Floor | Variant::SetNxLua | Variant::Redisson => {
                matches!(reply, Value::Int(1))
            }
        }
    }
}

/// Server CPU per acquire and per release, in microseconds.
#[derive(Clone, Copy, Debug)]
pub struct CallCost {
    pub acquire_us: f64,
    pub release_us: f64,
}

impl CallCost {
    pub fn pair_us(self) -> f64 {
        self.acquire_us + self.release_us
    }
}

pub fn run(server: &RedisServer, options: &Options, report: &mut Report) -> BenchResult<()> {
    let sizes = &options.sizes;
    heading(&format!(
        "Part 2: server CPU per call (INFO commandstats usec/calls; {} lock/unlock pairs on distinct keys, \
         pipelined {BATCH} acquires then their {BATCH} releases; best of {})",
        sizes.cost_pairs, sizes.cost_rounds
    ));
    let mut connection = server.connect()?;
    scripts::load_all(&mut connection)?;
    redis::cmd("FLUSHALL").exec(&mut connection)?;
    let mut costs = Vec::new();
    for variant in Variant::ALL {
        let prefix = format!("cost:{variant:?}");
        costs.push((
            variant,
            measure(
                &mut connection,
                variant,
                sizes.cost_pairs,
                sizes.cost_rounds,
                &prefix,
            )?,
        ));
    }
    print_costs(&costs);
    let variants: Vec<serde_json::Value> = costs
        .iter()
        .map(|(variant, cost)| {
            serde_json::json!({
                "variant": variant.label(),
                "acquire_us": cost.acquire_us,
                "release_us": cost.release_us,
                "pair_us": cost.pair_us(),
            })
        })
        .collect();
    report.set("server_cpu", serde_json::Value::Array(variants));
    Ok(())
}

fn print_costs(costs: &[(Variant, CallCost)]) {
    let rlock = costs
        .iter()
        .find(|(variant, _)| *variant == Variant::Rlock)
        .map(|(_, cost)| *cost)
        .expect("rlock is always measured");
    let mut table = Table::new(&[
        "variant",
        "acquire us",
        "release us",
        "pair us",
        "acquire vs rlock",
        "release vs rlock",
        "pair vs rlock",
    ]);
    for (variant, cost) in costs {
        table.row(vec![
            variant.label().to_string(),
            format_us(cost.acquire_us),
            format_us(cost.release_us),
            format_us(cost.pair_us()),
            format_ratio(cost.acquire_us / rlock.acquire_us),
            format_ratio(cost.release_us / rlock.release_us),
            format_ratio(cost.pair_us() / rlock.pair_us()),
        ]);
    }
    table.print();
}

/// The cheapest of `rounds` rounds of `pairs` lock/unlock pairs (fresh keys each round).
pub fn measure(
    connection: &mut redis::Connection,
    variant: Variant,
    pairs: usize,
    rounds: usize,
    key_prefix: &str,
) -> BenchResult<CallCost> {
    let mut best: Option<CallCost> = None;
    for round in 0..rounds.max(1) {
        let cost = measure_round(connection, variant, pairs, &format!("{key_prefix}:{round}"))?;
        if best.is_none_or(|best| cost.pair_us() < best.pair_us()) {
            best = Some(cost);
        }
    }
    Ok(best.expect("at least one round"))
}

/// Attributes CPU to acquire and release by reading commandstats after every batch (Redisson
/// uses EVALSHA for both).
fn measure_round(
    connection: &mut redis::Connection,
    variant: Variant,
    pairs: usize,
    prefix: &str,
) -> BenchResult<CallCost> {
    let owner = format!("{}:1", uuid::Uuid::new_v4());
    let (acquire_command, release_command) = variant.commands();
    redis::cmd("CONFIG").arg("RESETSTAT").exec(connection)?;
    let mut acquires = CallTotals::default();
    let mut releases = CallTotals::default();
    let mut first = 0;
    while first < pairs {
        let keys: Vec<String> = (first..pairs.min(first + BATCH))
            .map(|i| format!("{prefix}:{i}"))
            .collect();
        first += keys.len();
        let before = totals_of(connection, acquire_command)?;
        run_batch(connection, variant, &keys, &owner, Phase::Acquire)?;
        let after = totals_of(connection, acquire_command)?;
        acquires.add(after.since(before));
        let before = totals_of(connection, release_command)?;
        run_batch(connection, variant, &keys, &owner, Phase::Release)?;
        let after = totals_of(connection, release_command)?;
        releases.add(after.since(before));
    }
    Ok(CallCost {
        acquire_us: acquires.usec_per_call(),
        release_us: releases.usec_per_call(),
    })
}

#[derive(Clone, Copy, Debug)]
enum Phase {
    Acquire,
    Release,
}

fn run_batch(
    connection: &mut redis::Connection,
    variant: Variant,
    keys: &[String],
    owner: &str,
    phase: Phase,
) -> BenchResult<()> {
    let mut pipe = redis::pipe();
    for key in keys {
        match phase {
            Phase::Acquire => variant.add_acquire(&mut pipe, key, owner),
            Phase::Release => variant.add_release(&mut pipe, key, owner),
        }
    }
    let replies: Vec<Value> = pipe.query(connection)?;
    let expected = |reply: &Value| match phase {
        Phase::Acquire => variant.acquired(reply),
        Phase::Release => variant.released(reply),
    };
    match replies.iter().find(|reply| !expected(reply)) {
        None => Ok(()),
        Some(reply) => Err(format!(
            "{}: unexpected {phase:?} reply {reply:?} on a fresh key",
            variant.label()
        )
        .into()),
    }
}
