//! What `rlock top` shows of one node, parsed from the replies of `INFO lock`, `LOCK.TOP` and
//! `LOCK.LOG GET` (docs/operations.md gives their shapes). RESP2 flat field/value arrays and
//! RESP3 maps parse alike; a field missing or of another type reads as 0 or "".

use redis::Value;

/// One `LOCK.LOG GET` entry.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LogEntry {
    pub id: u64,
    /// Unix ms.
    pub time_ms: i64,
    pub reason: String,
    pub db: i64,
    pub key: String,
    pub owner: String,
    pub token: u64,
    pub kind: String,
    /// Held for, or waited for (by reason), in ms.
    pub ms: u64,
}

/// One `LOCK.TOP` entry.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HotKey {
    pub db: i64,
    pub key: String,
    pub weight: u64,
    pub contended: u64,
    pub handoffs: u64,
    pub timeouts: u64,
    pub waited_ms: u64,
    pub wait_p99_ms: u64,
    pub waiters: u64,
    pub longest_hold_ms: u64,
}

/// The `INFO lock` fields `rlock top` shows.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LockStats {
    pub held: u64,
    pub waiters: u64,
    pub contended: u64,
    pub log_len: u64,
    /// `lock_wait_percentiles_usec_exclusive`'s p99, µs (None: nothing recorded).
    pub wait_p99_us: Option<f64>,
    pub hold_p99_us: Option<f64>,
}

/// One node as last fetched.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NodeView {
    pub addr: String,
    pub stats: LockStats,
    pub top: Vec<HotKey>,
    pub log: Vec<LogEntry>,
    /// Why the node could not be read this time (its last figures are gone).
    pub error: Option<String>,
}

fn text(value: &Value) -> String {
    match value {
        Value::BulkString(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        Value::SimpleString(text) => text.clone(),
        Value::VerbatimString { text, .. } => text.clone(),
        Value::Int(n) => n.to_string(),
        _ => String::new(),
    }
}

fn int(value: &Value) -> i64 {
    match value {
        Value::Int(n) => *n,
        Value::BulkString(_) | Value::SimpleString(_) => text(value).parse().unwrap_or(0),
        Value::Double(x) => *x as i64,
        _ => 0,
    }
}

fn uint(value: &Value) -> u64 {
    u64::try_from(int(value)).unwrap_or(0)
}

/// A map reply (RESP3) or a flat field/value array (RESP2) as (field, value) pairs.
pub fn fields(value: &Value) -> Vec<(String, &Value)> {
    match value {
        Value::Map(pairs) => pairs.iter().map(|(k, v)| (text(k), v)).collect(),
        Value::Array(items) => items
            .chunks_exact(2)
            .map(|pair| (text(&pair[0]), &pair[1]))
            .collect(),
        _ => Vec::new(),
    }
}

fn items(value: &Value) -> &[Value] {
    match value {
        Value::Array(items) | Value::Set(items) => items,
        _ => &[],
    }
}

/// `LOCK.LOG GET`'s reply.
pub fn parse_log(reply: &Value) -> Vec<LogEntry> {
    items(reply)
        .iter()
        .map(|entry| {
            let mut out = LogEntry::default();
            for (field, value) in fields(entry) {
                match field.as_str() {
                    "id" => out.id = uint(value),
                    "time" => out.time_ms = int(value),
                    "reason" => out.reason = text(value),
                    "db" => out.db = int(value),
                    "key" => out.key = text(value),
                    "owner" => out.owner = text(value),
                    "token" => out.token = uint(value),
                    "kind" => out.kind = text(value),
                    "ms" => out.ms = uint(value),
                    _ => {}
                }
            }
            out
        })
        .collect()
}

/// `LOCK.TOP`'s reply.
pub fn parse_top(reply: &Value) -> Vec<HotKey> {
    items(reply)
        .iter()
        .map(|entry| {
            let mut out = HotKey::default();
            for (field, value) in fields(entry) {
                match field.as_str() {
                    "db" => out.db = int(value),
                    "key" => out.key = text(value),
                    "weight" => out.weight = uint(value),
                    "contended" => out.contended = uint(value),
                    "handoffs" => out.handoffs = uint(value),
                    "timeouts" => out.timeouts = uint(value),
                    "waited_ms" => out.waited_ms = uint(value),
                    "wait_p99_ms" => out.wait_p99_ms = uint(value),
                    "waiters" => out.waiters = uint(value),
                    "longest_hold_ms" => out.longest_hold_ms = uint(value),
                    _ => {}
                }
            }
            out
        })
        .collect()
}

/// The p99 of a `p50=…,p99=…,p99.9=…` line.
fn p99(line: &str) -> Option<f64> {
    line.split(',')
        .find_map(|part| part.strip_prefix("p99="))
        .and_then(|value| value.parse().ok())
}

/// `INFO lock`'s text.
pub fn parse_info(info: &str) -> LockStats {
    let mut stats = LockStats::default();
    for line in info.lines() {
        let Some((name, value)) = line.trim_end().split_once(':') else {
            continue;
        };
        let number = || value.parse().unwrap_or(0);
        match name {
            "lock_held" => stats.held = number(),
            "lock_waiters" => stats.waiters = number(),
            "lock_contended" => stats.contended = number(),
            "lock_log_len" => stats.log_len = number(),
            "lock_wait_percentiles_usec_exclusive" => stats.wait_p99_us = p99(value),
            "lock_hold_percentiles_usec_exclusive" => stats.hold_p99_us = p99(value),
            _ => {}
        }
    }
    stats
}

/// The masters of a cluster from `CLUSTER NODES` (`host:port@bus` in the second field), as
/// `host:port`; failed masters left out.
pub fn parse_cluster_masters(nodes: &str) -> Vec<String> {
    nodes
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let flags = fields.get(2)?;
            let is_master = flags.split(',').any(|flag| flag == "master");
            let failed = flags
                .split(',')
                .any(|flag| flag == "fail" || flag == "noaddr");
            if !is_master || failed {
                return None;
            }
            let addr = fields.get(1)?.split('@').next()?;
            let addr = addr.split(',').next()?;
            (!addr.starts_with(':')).then(|| addr.to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    #[test]
    fn log_entries_parse_from_resp2_and_resp3() {
        let flat = Value::Array(vec![
            bulk("id"),
            Value::Int(4),
            bulk("time"),
            Value::Int(1_800_000_000_000),
            bulk("reason"),
            bulk("expired"),
            bulk("key"),
            bulk("jobs:1"),
            bulk("owner"),
            bulk("worker-3"),
            bulk("token"),
            Value::Int(99),
            bulk("kind"),
            bulk("exclusive"),
            bulk("ms"),
            Value::Int(30_000),
        ]);
        let map = Value::Map(vec![
            (bulk("id"), Value::Int(4)),
            (bulk("time"), Value::Int(1_800_000_000_000)),
            (bulk("reason"), Value::SimpleString("expired".into())),
            (bulk("key"), bulk("jobs:1")),
            (bulk("owner"), bulk("worker-3")),
            (bulk("token"), Value::Int(99)),
            (bulk("kind"), bulk("exclusive")),
            (bulk("ms"), Value::Int(30_000)),
        ]);
        let from_flat = parse_log(&Value::Array(vec![flat]));
        let from_map = parse_log(&Value::Array(vec![map]));
        assert_eq!(from_flat, from_map);
        assert_eq!(from_flat[0].reason, "expired");
        assert_eq!((from_flat[0].token, from_flat[0].ms), (99, 30_000));
        assert!(parse_log(&Value::Nil).is_empty());
    }

    #[test]
    fn top_entries_parse() {
        let entry = Value::Map(vec![
            (bulk("key"), bulk("orders:42")),
            (bulk("weight"), Value::Int(1200)),
            (bulk("contended"), Value::Int(12)),
            (bulk("waiters"), Value::Int(3)),
            (bulk("wait_p99_ms"), Value::Int(450)),
            (bulk("longest_hold_ms"), Value::Int(9000)),
            (bulk("unknown"), Value::Int(1)),
        ]);
        let top = parse_top(&Value::Array(vec![entry]));
        assert_eq!(top[0].key, "orders:42");
        assert_eq!(
            (top[0].weight, top[0].contended, top[0].waiters),
            (1200, 12, 3)
        );
        assert_eq!((top[0].wait_p99_ms, top[0].longest_hold_ms), (450, 9000));
    }

    #[test]
    fn info_fields_and_percentiles() {
        let info = "# lock\r\nlock_held:12\r\nlock_waiters:3\r\nlock_contended:40\r\n\
                    lock_log_len:7\r\nlock_wait_percentiles_usec_exclusive:p50=0.000,p99=1507.000,p99.9=2000.000\r\n";
        let stats = parse_info(info);
        assert_eq!(
            (stats.held, stats.waiters, stats.contended, stats.log_len),
            (12, 3, 40, 7)
        );
        assert_eq!(stats.wait_p99_us, Some(1507.0));
        assert_eq!(stats.hold_p99_us, None);
    }

    #[test]
    fn cluster_masters() {
        let nodes = "\
a1 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460
b2 127.0.0.1:7001@17001 master - 0 0 2 connected 5461-10922
c3 127.0.0.1:7002@17002 slave a1 0 0 1 connected
d4 127.0.0.1:7003@17003 master,fail - 0 0 3 disconnected
e5 host.example:7004@17004,host.example master - 0 0 4 connected 10923-16383
";
        assert_eq!(
            parse_cluster_masters(nodes),
            ["127.0.0.1:7000", "127.0.0.1:7001", "host.example:7004"]
        );
    }
}
