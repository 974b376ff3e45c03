//! Reading INFO: per-command call counts and CPU time, and single numeric fields.

use std::collections::HashMap;

use crate::BenchResult;

/// `calls` and `usec` of one command in `INFO commandstats`.
#[derive(Clone, Copy, Debug, Default)]
pub struct CallTotals {
    pub calls: u64,
    pub usec: u64,
}

impl CallTotals {
    pub fn since(self, earlier: CallTotals) -> CallTotals {
        CallTotals {
            calls: self.calls.saturating_sub(earlier.calls),
            usec: self.usec.saturating_sub(earlier.usec),
        }
    }

    pub fn add(&mut self, other: CallTotals) {
        self.calls += other.calls;
        self.usec += other.usec;
    }

    pub fn usec_per_call(self) -> f64 {
        if self.calls == 0 {
            return f64::NAN;
        }
        self.usec as f64 / self.calls as f64
    }
}

/// `INFO commandstats` as command name (lower case, e.g. "lock.acquire") -> totals.
pub fn command_stats(
    connection: &mut redis::Connection,
) -> BenchResult<HashMap<String, CallTotals>> {
    let text: String = redis::cmd("INFO").arg("commandstats").query(connection)?;
    Ok(text.lines().filter_map(parse_command_line).collect())
}

/// The totals of `command`, zero when it was not called since the last reset.
pub fn totals_of(connection: &mut redis::Connection, command: &str) -> BenchResult<CallTotals> {
    Ok(command_stats(connection)?
        .get(command)
        .copied()
        .unwrap_or_default())
}

/// "cmdstat_lock.acquire:calls=3,usec=112,usec_per_call=37.33,..." -> ("lock.acquire", totals)
fn parse_command_line(line: &str) -> Option<(String, CallTotals)> {
    let (name, fields) = line.trim().strip_prefix("cmdstat_")?.split_once(':')?;
    let mut totals = CallTotals::default();
    for field in fields.split(',') {
        match field.split_once('=') {
            Some(("calls", value)) => totals.calls = value.parse().ok()?,
            Some(("usec", value)) => totals.usec = value.parse().ok()?,
            _ => {}
        }
    }
    Some((name.to_string(), totals))
}

/// A numeric field of `INFO section`, e.g. ("memory", "used_memory").
pub fn info_number(
    connection: &mut redis::Connection,
    section: &str,
    field: &str,
) -> BenchResult<u64> {
    let text: String = redis::cmd("INFO").arg(section).query(connection)?;
    text.lines()
        .find_map(|line| {
            let (name, value) = line.trim().split_once(':')?;
            (name == field).then(|| value.parse().ok())?
        })
        .ok_or_else(|| format!("INFO {section} has no numeric {field}").into())
}
