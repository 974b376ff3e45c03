//! Two-key transfers (issue 20): N clients move money between two of 100 accounts, each
//! transfer holding both accounts' locks for ~1 ms, three ways:
//! - rlock's `LOCK.MACQUIRE 2 a b owner ttl WAIT 0`: both keys in one step, waiting in both
//!   queues at once (it cannot deadlock, whatever the order the keys are named in);
//! - single `LOCK.ACQUIRE ... WAIT 0` calls, the two keys taken in a fixed (sorted) order, the
//!   textbook way to avoid a deadlock by hand;
//! - single `LOCK.ACQUIRE ... WAIT 0` calls in whatever order the transfer names the keys:
//!   two transfers in opposite orders would deadlock, and the server refuses the wait that
//!   would close the cycle (`DEADLOCK ...`); the refused transfer lets go and tries again;
//! - Redisson's MultiLock: its acquire script on each key in the order given, and when one is
//!   taken, every key already held let go and the whole set tried again after a short pause
//!   (RedissonMultiLock's retry; without the let-go, two transfers in opposite orders would
//!   deadlock until a lease expired).
//!
//! Each transfer moves 1 from one balance to the other inside the hold (INCRBY/DECRBY on plain
//! keys), so the total must be what it was: a transfer that ran without both locks could lose an
//! update. An account entered by two transfers at once is counted as a violation.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::cli::Options;
use crate::scripts;
use crate::server::RedisServer;
use crate::stats::{format_ms, format_rate, millis, Summary};
use crate::table::{heading, Table};
use crate::BenchResult;

/// The 100 accounts, then 4 hot ones, where transfers in opposite orders meet often.
const ACCOUNT_SETS: [usize; 2] = [100, 4];
/// Far longer than any hold: no lock expires during the run.
const TTL_MS: u64 = 10_000;
const HOLD: Duration = Duration::from_millis(1);
/// RedissonMultiLock waits before it tries the whole set again.
const RETRY_PAUSE: Duration = Duration::from_millis(1);
const OPENING_BALANCE: i64 = 1_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Way {
    Macquire,
    FixedOrder,
    AnyOrder,
    MultiLock,
}

impl Way {
    const ALL: [Way; 4] = [
        Way::Macquire,
        Way::FixedOrder,
        Way::AnyOrder,
        Way::MultiLock,
    ];

    fn label(self) -> &'static str {
        match self {
            Way::Macquire => "rlock LOCK.MACQUIRE (both keys in one step)",
            Way::FixedOrder => "rlock LOCK.ACQUIRE x2, fixed key order",
            Way::AnyOrder => "rlock LOCK.ACQUIRE x2, any order, DEADLOCK retried",
            Way::MultiLock => "Redisson MultiLock (scripts, one by one, retry)",
        }
    }
}

fn account(i: usize) -> String {
    format!("{{bank}}:acct:{i}")
}

fn balance(i: usize) -> String {
    format!("{{bank}}:balance:{i}")
}

/// Accounts that two transfers hold at once (each must be held by one transfer at a time).
struct Occupancy {
    inside: Vec<AtomicU64>,
    violations: AtomicU64,
}

impl Occupancy {
    fn new(accounts: usize) -> Occupancy {
        Occupancy {
            inside: (0..accounts).map(|_| AtomicU64::new(0)).collect(),
            violations: AtomicU64::new(0),
        }
    }

    fn enter(&self, accounts: [usize; 2]) {
        for a in accounts {
            if self.inside[a].fetch_add(1, Ordering::SeqCst) > 0 {
                self.violations.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    fn leave(&self, accounts: [usize; 2]) {
        for a in accounts {
            self.inside[a].fetch_sub(1, Ordering::SeqCst);
        }
    }
}

#[derive(Default)]
struct ClientRecord {
    waits_ms: Vec<f64>,
    /// MultiLock: whole-set attempts that found a key taken and let go of the others.
    retries: u64,
    /// Any order: waits the server refused as deadlocks.
    deadlocks: u64,
}

/// One client of one way, on its own connection.
struct Transferer {
    way: Way,
    connection: redis::Connection,
    owner: String,
    acquire_sha: String,
    release_sha: String,
    retries: u64,
    deadlocks: u64,
}

impl Transferer {
    fn connect(server: &RedisServer, way: Way) -> BenchResult<Transferer> {
        Ok(Transferer {
            way,
            connection: server.connect()?,
            owner: format!("{}:1", uuid::Uuid::new_v4()),
            acquire_sha: scripts::shas().redisson_acquire.clone(),
            release_sha: scripts::shas().redisson_release.clone(),
            retries: 0,
            deadlocks: 0,
        })
    }

    /// Blocks until this client holds both accounts.
    fn take(&mut self, accounts: [usize; 2]) -> BenchResult<()> {
        match self.way {
            Way::Macquire => {
                let tokens: Option<Vec<i64>> = redis::cmd("LOCK.MACQUIRE")
                    .arg(2)
                    .arg(account(accounts[0]))
                    .arg(account(accounts[1]))
                    .arg(&self.owner)
                    .arg(TTL_MS)
                    .arg("WAIT")
                    .arg(0)
                    .query(&mut self.connection)?;
                match tokens {
                    Some(tokens) if tokens.len() == 2 => Ok(()),
                    other => Err(format!("LOCK.MACQUIRE ... WAIT 0 answered {other:?}").into()),
                }
            }
            Way::FixedOrder => {
                let (first, second) = (accounts[0].min(accounts[1]), accounts[0].max(accounts[1]));
                for a in [first, second] {
                    if !self.acquire_waiting(a)? {
                        return Err("a fixed key order met a DEADLOCK refusal".into());
                    }
                }
                Ok(())
            }
            Way::AnyOrder => loop {
                if !self.acquire_waiting(accounts[0])? {
                    continue;
                }
                if self.acquire_waiting(accounts[1])? {
                    return Ok(());
                }
                // Refused as a deadlock: let go, so the other transfer can go on, and retry.
                self.release_one(accounts[0])?;
            },
            Way::MultiLock => loop {
                if self.try_all(accounts)? {
                    return Ok(());
                }
                self.retries += 1;
                std::thread::sleep(RETRY_PAUSE);
            },
        }
    }

    /// `LOCK.ACQUIRE account owner ttl WAIT 0`: true when held, false when the wait was refused
    /// as a deadlock (counted).
    fn acquire_waiting(&mut self, a: usize) -> BenchResult<bool> {
        let reply: redis::RedisResult<Option<i64>> = redis::cmd("LOCK.ACQUIRE")
            .arg(account(a))
            .arg(&self.owner)
            .arg(TTL_MS)
            .arg("WAIT")
            .arg(0)
            .query(&mut self.connection);
        match reply {
            Ok(Some(_)) => Ok(true),
            Ok(None) => Err("LOCK.ACQUIRE ... WAIT 0 answered nil".into()),
            Err(error) if error.code() == Some("DEADLOCK") => {
                self.deadlocks += 1;
                Ok(false)
            }
            Err(error) => Err(error.into()),
        }
    }

    fn release_one(&mut self, a: usize) -> BenchResult<()> {
        let _: Option<i64> = redis::cmd("LOCK.RELEASE")
            .arg(account(a))
            .arg(&self.owner)
            .query(&mut self.connection)?;
        Ok(())
    }

    /// MultiLock's one pass: each key in the order given; on a taken key, let go of the rest.
    fn try_all(&mut self, accounts: [usize; 2]) -> BenchResult<bool> {
        for (held, &a) in accounts.iter().enumerate() {
            let pttl: Option<i64> = redis::cmd("EVALSHA")
                .arg(&self.acquire_sha)
                .arg(1)
                .arg(account(a))
                .arg(TTL_MS)
                .arg(&self.owner)
                .query(&mut self.connection)?;
            if pttl.is_some() {
                for &taken in &accounts[..held] {
                    self.redisson_release(taken)?;
                }
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn redisson_release(&mut self, a: usize) -> BenchResult<()> {
        let key = account(a);
        let _: Option<i64> = redis::cmd("EVALSHA")
            .arg(&self.release_sha)
            .arg(2)
            .arg(&key)
            .arg(scripts::redisson_channel(&key))
            .arg(scripts::REDISSON_UNLOCK_MESSAGE)
            .arg(TTL_MS)
            .arg(&self.owner)
            .query(&mut self.connection)?;
        Ok(())
    }

    fn give_back(&mut self, accounts: [usize; 2]) -> BenchResult<()> {
        match self.way {
            Way::Macquire => {
                let _: redis::Value = redis::cmd("LOCK.MRELEASE")
                    .arg(2)
                    .arg(account(accounts[0]))
                    .arg(account(accounts[1]))
                    .arg(&self.owner)
                    .query(&mut self.connection)?;
            }
            Way::FixedOrder | Way::AnyOrder => {
                for a in accounts {
                    self.release_one(a)?;
                }
            }
            Way::MultiLock => {
                for a in accounts {
                    self.redisson_release(a)?;
                }
            }
        }
        Ok(())
    }

    /// The transfer itself, inside both holds: 1 from `from` to `to`.
    fn move_one(&mut self, [from, to]: [usize; 2]) -> BenchResult<()> {
        redis::pipe()
            .cmd("DECRBY")
            .arg(balance(from))
            .arg(1)
            .ignore()
            .cmd("INCRBY")
            .arg(balance(to))
            .arg(1)
            .ignore()
            .exec(&mut self.connection)?;
        Ok(())
    }
}

struct WayResult {
    way: Way,
    elapsed: Duration,
    clients: Vec<ClientRecord>,
    violations: u64,
    total_after: i64,
}

pub fn run(server: &RedisServer, options: &Options) -> BenchResult<()> {
    let mut admin = server.connect()?;
    scripts::load_all(&mut admin)?;
    for accounts in ACCOUNT_SETS {
        heading(&format!(
            "Part 1: two-key transfers ({} clients, {accounts} accounts, both held {} ms, {} s per way)",
            options.clients,
            HOLD.as_millis(),
            options.seconds
        ));
        let mut results = Vec::new();
        for way in Way::ALL {
            reset_accounts(&mut admin, accounts)?;
            let mut result = run_way(server, way, accounts, options)?;
            result.total_after = total_balance(&mut admin, accounts)?;
            results.push(result);
        }
        print_results(&results, accounts);
    }
    print_legend();
    Ok(())
}

fn reset_accounts(admin: &mut redis::Connection, accounts: usize) -> BenchResult<()> {
    let mut pipe = redis::pipe();
    for i in 0..accounts {
        pipe.cmd("DEL").arg(account(i)).ignore();
        pipe.cmd("SET")
            .arg(balance(i))
            .arg(OPENING_BALANCE)
            .ignore();
    }
    pipe.exec(admin)?;
    Ok(())
}

fn total_balance(admin: &mut redis::Connection, accounts: usize) -> BenchResult<i64> {
    let keys: Vec<String> = (0..accounts).map(balance).collect();
    let balances: Vec<i64> = redis::cmd("MGET").arg(keys).query(admin)?;
    Ok(balances.iter().sum())
}

fn run_way(
    server: &RedisServer,
    way: Way,
    accounts: usize,
    options: &Options,
) -> BenchResult<WayResult> {
    let clients = (0..options.clients)
        .map(|_| Transferer::connect(server, way))
        .collect::<BenchResult<Vec<_>>>()?;
    let occupancy = Arc::new(Occupancy::new(accounts));
    let start_line = Arc::new(Barrier::new(options.clients + 1));
    let duration = Duration::from_secs_f64(options.seconds);
    let workers: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(seed, client)| {
            let occupancy = Arc::clone(&occupancy);
            let start_line = Arc::clone(&start_line);
            std::thread::spawn(move || {
                transfer_loop(
                    client,
                    seed as u64,
                    accounts,
                    &occupancy,
                    &start_line,
                    duration,
                )
            })
        })
        .collect();
    start_line.wait();
    let started = Instant::now();
    let mut records = Vec::new();
    for worker in workers {
        let record = worker
            .join()
            .map_err(|_| format!("a {} client thread panicked", way.label()))?
            .map_err(|e| format!("a {} client failed: {e}", way.label()))?;
        records.push(record);
    }
    Ok(WayResult {
        way,
        elapsed: started.elapsed(),
        clients: records,
        violations: occupancy.violations.load(Ordering::SeqCst),
        total_after: 0,
    })
}

/// One client: pick two distinct accounts (in random order), take both, move 1, give back.
fn transfer_loop(
    mut client: Transferer,
    seed: u64,
    accounts: usize,
    occupancy: &Occupancy,
    start_line: &Barrier,
    duration: Duration,
) -> BenchResult<ClientRecord> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut record = ClientRecord::default();
    start_line.wait();
    let deadline = Instant::now() + duration;
    while Instant::now() < deadline {
        let from = rng.gen_range(0..accounts);
        let to = (from + rng.gen_range(1..accounts)) % accounts;
        let pair = [from, to];
        let wants = Instant::now();
        client.take(pair)?;
        record.waits_ms.push(millis(wants.elapsed()));
        occupancy.enter(pair);
        client.move_one(pair)?;
        std::thread::sleep(HOLD);
        occupancy.leave(pair);
        client.give_back(pair)?;
    }
    record.retries = client.retries;
    record.deadlocks = client.deadlocks;
    Ok(record)
}

fn print_results(results: &[WayResult], accounts: usize) {
    let mut table = Table::new(&[
        "way",
        "transfers/s",
        "transfers",
        "wait p50 ms",
        "wait p99 ms",
        "wait max ms",
        "retries",
        "deadlocks refused",
        "violations",
        "money kept",
    ]);
    let expected = OPENING_BALANCE * accounts as i64;
    for result in results {
        let waits: Vec<f64> = result
            .clients
            .iter()
            .flat_map(|c| c.waits_ms.iter().copied())
            .collect();
        let transfers = waits.len();
        let waits = Summary::of(waits);
        let retries: u64 = result.clients.iter().map(|c| c.retries).sum();
        let deadlocks: u64 = result.clients.iter().map(|c| c.deadlocks).sum();
        table.row(vec![
            result.way.label().to_string(),
            format_rate(transfers as f64 / result.elapsed.as_secs_f64()),
            transfers.to_string(),
            format_ms(waits.p50),
            format_ms(waits.p99),
            format_ms(waits.max),
            retries.to_string(),
            deadlocks.to_string(),
            result.violations.to_string(),
            if result.total_after == expected {
                "yes".to_string()
            } else {
                format!("NO: {} of {expected}", result.total_after)
            },
        ]);
    }
    table.print();
}

fn print_legend() {
    println!(
        "\nwait = from wanting both accounts to holding both. retries = MultiLock passes that found a \
         key taken and let go of the other. deadlocks refused = waits the server answered DEADLOCK (the \
         transfer let go of its first account and tried again). violations = an account entered by two transfers at once. \
         money kept = the balances still add up to what they started with. No way ends in a deadlock: \
         MACQUIRE by construction, the fixed order by discipline, any order because the server refuses \
         the wait that would close a cycle, MultiLock by letting go and retrying (which costs it the \
         retries and the pauses).\n"
    );
}
