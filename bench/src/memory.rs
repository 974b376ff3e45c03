//! Part 2: memory per held lock: the `used_memory` delta over many held locks, pipelined,
//! for rlock, SET NX PX and Redisson's hash. FLUSHALL between.

use crate::cli::Options;
use crate::commandstats::info_number;
use crate::report::Report;
use crate::server::RedisServer;
use crate::stats::format_ratio;
use crate::table::{heading, Table};
use crate::BenchResult;

/// Commands per pipelined batch.
const BATCH: usize = 1_000;
const TTL_MS: u64 = 600_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layout {
    Rlock,
    SetNx,
    RedissonHash,
}

impl Layout {
    const ALL: [Layout; 3] = [Layout::Rlock, Layout::SetNx, Layout::RedissonHash];

    fn label(self) -> &'static str {
        match self {
            Layout::Rlock => "rlock (LOCK.ACQUIRE)",
            Layout::SetNx => "SET NX PX string (also redis-py Lock, python-redis-lock)",
            Layout::RedissonHash => "Redisson (HSET owner 1 + PEXPIRE)",
        }
    }

    fn add_lock(self, pipe: &mut redis::Pipeline, key: &str, owner: &str) {
        match self {
            Layout::Rlock => {
                pipe.cmd("LOCK.ACQUIRE")
                    .arg(key)
                    .arg(owner)
                    .arg(TTL_MS)
                    .ignore();
            }
            Layout::SetNx => {
                pipe.cmd("SET")
                    .arg(key)
                    .arg(owner)
                    .arg("NX")
                    .arg("PX")
                    .arg(TTL_MS)
                    .ignore();
            }
            Layout::RedissonHash => {
                pipe.cmd("HSET").arg(key).arg(owner).arg(1).ignore();
                pipe.cmd("PEXPIRE").arg(key).arg(TTL_MS).ignore();
            }
        }
    }
}

struct Footprint {
    layout: Layout,
    used_memory: i64,
    rss: i64,
}

/// Each layout on a fresh server of its own, so that RSS is not memory freed by the last one.
pub fn run(options: &Options, report: &mut Report) -> BenchResult<()> {
    let locks = options.sizes.memory_locks;
    heading(&format!(
        "Part 2: memory per held lock ({locks} locks lock:<i>, owner = 36-char uuid + \":1\", ttl {TTL_MS} ms; \
         INFO memory delta, a fresh server per layout)"
    ));
    let owner = format!("{}:1", uuid::Uuid::new_v4());
    let mut footprints = Vec::new();
    for layout in Layout::ALL {
        let server = RedisServer::start(&options.module)?;
        let mut connection = server.connect()?;
        footprints.push(measure(&mut connection, layout, locks, &owner)?);
    }
    print_footprints(&footprints, locks);
    let layouts: Vec<serde_json::Value> = footprints
        .iter()
        .map(|footprint| {
            serde_json::json!({
                "layout": footprint.layout.label(),
                "unsafe_floor": footprint.layout == Layout::SetNx,
                "bytes_per_lock": footprint.used_memory as f64 / locks as f64,
                "rss_bytes_per_lock": footprint.rss as f64 / locks as f64,
            })
        })
        .collect();
    report.set(
        "memory",
        serde_json::json!({ "locks": locks, "layouts": layouts }),
    );
    Ok(())
}

fn measure(
    connection: &mut redis::Connection,
    layout: Layout,
    locks: usize,
    owner: &str,
) -> BenchResult<Footprint> {
    redis::cmd("FLUSHALL").exec(connection)?;
    let used_before = info_number(connection, "memory", "used_memory")?;
    let rss_before = info_number(connection, "memory", "used_memory_rss")?;
    hold_locks(connection, layout, "lock", 0..locks, owner)?;
    let held: usize = redis::cmd("DBSIZE").query(connection)?;
    if held != locks {
        return Err(format!("{}: {held} keys after taking {locks} locks", layout.label()).into());
    }
    let used_after = info_number(connection, "memory", "used_memory")?;
    let rss_after = info_number(connection, "memory", "used_memory_rss")?;
    Ok(Footprint {
        layout,
        used_memory: used_after as i64 - used_before as i64,
        rss: rss_after as i64 - rss_before as i64,
    })
}

/// Takes locks `{prefix}:{i}` for every i in `range`, in pipelined batches.
fn hold_locks(
    connection: &mut redis::Connection,
    layout: Layout,
    prefix: &str,
    range: std::ops::Range<usize>,
    owner: &str,
) -> BenchResult<()> {
    let mut next = range.start;
    while next < range.end {
        let end = range.end.min(next + BATCH);
        let mut pipe = redis::pipe();
        for i in next..end {
            layout.add_lock(&mut pipe, &format!("{prefix}:{i}"), owner);
        }
        pipe.exec(connection)
            .map_err(|e| format!("{}: taking locks failed: {e}", layout.label()))?;
        next = end;
    }
    Ok(())
}

/// rlock locks `{prefix}:{i}` for the scaling test.
pub fn hold_rlocks(
    connection: &mut redis::Connection,
    prefix: &str,
    range: std::ops::Range<usize>,
) -> BenchResult<()> {
    let owner = format!("{}:1", uuid::Uuid::new_v4());
    hold_locks(connection, Layout::Rlock, prefix, range, &owner)
}

fn print_footprints(footprints: &[Footprint], locks: usize) {
    let per_lock = |bytes: i64| bytes as f64 / locks as f64;
    let set = footprints
        .iter()
        .find(|f| f.layout == Layout::SetNx)
        .map_or(f64::NAN, |f| per_lock(f.used_memory));
    let mut table = Table::new(&[
        "layout",
        "used_memory delta MB",
        "bytes/lock",
        "vs SET",
        "RSS delta MB",
        "RSS bytes/lock",
    ]);
    for footprint in footprints {
        table.row(vec![
            footprint.layout.label().to_string(),
            format!("{:.1}", footprint.used_memory as f64 / 1_048_576.0),
            format!("{:.1}", per_lock(footprint.used_memory)),
            format_ratio(per_lock(footprint.used_memory) / set),
            format!("{:.1}", footprint.rss as f64 / 1_048_576.0),
            format!("{:.1}", per_lock(footprint.rss)),
        ]);
    }
    table.print();
    println!("\nused_memory counts what Redis's allocator handed out (the module allocates through it); RSS is the server process's resident growth, a cross-check.");
}
