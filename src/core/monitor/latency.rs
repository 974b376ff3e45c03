//! Wait and hold time percentiles per kind of hold, for `INFO lock` in the format of Redis 7's
//! `INFO latencystats` (`p50=…,p99=…,p99.9=…`, microseconds), on HdrHistogram.
//!
//! *Wait*: from wanting a lock to holding it. A waiter's is its time from enqueue to grant; an
//! acquire granted at once waited 0, and those are added in bulk (`record_immediate`) from the
//! counters INFO keeps anyway, so the uncontended acquire records nothing itself. *Hold*: from
//! grant to release or expiry. Values beyond 31 days count as 31 days. Two significant digits
//! (a value is off by at most 1%), as Redis' own latency histograms.

use hdrhistogram::Histogram;

use crate::core::monitor::lock_log::HoldKind;

/// The largest value tracked, in µs: the longest ttl (30 days) and a day of slack.
pub const HIGHEST_MICROS: u64 = 31 * 24 * 3600 * 1_000_000;
const SIGNIFICANT_DIGITS: u8 = 2;

/// What a histogram measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    Wait,
    Hold,
}

impl Measure {
    pub const ALL: [Measure; 2] = [Measure::Wait, Measure::Hold];

    pub fn name(self) -> &'static str {
        match self {
            Measure::Wait => "wait",
            Measure::Hold => "hold",
        }
    }
}

/// The percentiles INFO shows, in µs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Percentiles {
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
}

impl Percentiles {
    /// `p50=1.003,p99=3.007,p99.9=4.015`, as `INFO latencystats` writes them.
    pub fn latencystats(&self) -> String {
        format!(
            "p50={:.3},p99={:.3},p99.9={:.3}",
            self.p50, self.p99, self.p999
        )
    }
}

/// One histogram per measure and kind.
pub struct Latencies {
    histograms: [[Histogram<u64>; 3]; 2],
}

fn histogram() -> Histogram<u64> {
    // The bounds are constants that HdrHistogram accepts (low 1, high far above 2 * low).
    match Histogram::new_with_bounds(1, HIGHEST_MICROS, SIGNIFICANT_DIGITS) {
        Ok(histogram) => histogram,
        Err(_) => unreachable!("constant histogram bounds are valid"),
    }
}

fn kind_index(kind: HoldKind) -> usize {
    match kind {
        HoldKind::Exclusive => 0,
        HoldKind::Shared => 1,
        HoldKind::Limit => 2,
    }
}

impl Default for Latencies {
    fn default() -> Self {
        Self::new()
    }
}

impl Latencies {
    pub fn new() -> Self {
        Latencies {
            histograms: std::array::from_fn(|_| std::array::from_fn(|_| histogram())),
        }
    }

    fn histogram_mut(&mut self, measure: Measure, kind: HoldKind) -> &mut Histogram<u64> {
        &mut self.histograms[measure as usize][kind_index(kind)]
    }

    fn histogram(&self, measure: Measure, kind: HoldKind) -> &Histogram<u64> {
        &self.histograms[measure as usize][kind_index(kind)]
    }

    /// Records one value (µs; beyond the highest: counted as the highest).
    pub fn record(&mut self, measure: Measure, kind: HoldKind, micros: u64) {
        self.histogram_mut(measure, kind)
            .saturating_record(micros.min(HIGHEST_MICROS));
    }

    /// Records `count` values of `micros` each (beyond the highest: counted as the highest).
    pub fn record_n(&mut self, measure: Measure, kind: HoldKind, micros: u64, count: u64) {
        if count > 0 {
            self.histogram_mut(measure, kind)
                .saturating_record_n(micros.min(HIGHEST_MICROS), count);
        }
    }

    /// Records `count` acquires of `kind` granted at once (a wait of 0).
    pub fn record_immediate(&mut self, kind: HoldKind, count: u64) {
        self.record_n(Measure::Wait, kind, 0, count);
    }

    /// How many values were recorded.
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn count(&self, measure: Measure, kind: HoldKind) -> u64 {
        self.histogram(measure, kind).len()
    }

    /// The percentiles, or `None` when nothing was recorded (INFO then leaves the line out,
    /// as latencystats leaves out commands never called).
    pub fn percentiles(&self, measure: Measure, kind: HoldKind) -> Option<Percentiles> {
        let histogram = self.histogram(measure, kind);
        if histogram.is_empty() {
            return None;
        }
        let at = |quantile: f64| {
            let value = histogram.value_at_quantile(quantile);
            histogram.highest_equivalent(value).min(histogram.max()) as f64
        };
        Some(Percentiles {
            p50: at(0.50),
            p99: at(0.99),
            p999: at(0.999),
        })
    }

    /// Forgets every value (`CONFIG RESETSTAT`).
    pub fn reset(&mut self) {
        for histogram in self.histograms.iter_mut().flatten() {
            histogram.reset();
        }
    }

    /// Bytes the histograms' counts take (fixed: they are allocated whole at the start).
    pub fn memory(&self) -> usize {
        self.histograms
            .iter()
            .flatten()
            .map(|histogram| histogram.distinct_values() * std::mem::size_of::<u64>())
            .sum::<usize>()
            + std::mem::size_of::<Self>()
    }
}

/// The node's token lead now and before its last change (a promotion, or a lead taken in from
/// elsewhere): tokens up to `changed_after` were granted with `before`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Leads {
    pub now: u64,
    pub before: u64,
    /// The last token handed out or seen when the lead changed.
    pub changed_after: u64,
}

impl Leads {
    /// Notes a change of lead to `lead`, the counter's last token being `last`.
    pub fn changed(&mut self, lead: u64, last: u64) {
        if lead != self.now {
            *self = Leads {
                now: lead,
                before: self.now,
                changed_after: last,
            };
        }
    }

    /// The lead `token` was most likely granted with.
    pub fn at_grant_of(&self, token: u64) -> u64 {
        if token <= self.changed_after {
            self.before
        } else {
            self.now
        }
    }
}

/// How long a hold has been held at `now_ms`, read from its fencing token: a grant at clock
/// `t` ms gets token `t * 1024 + lead` (core/state/tokens.rs), so the hold itself keeps no grant
/// time and the uncontended path pays nothing for it. Exact to the millisecond unless the
/// counter ran ahead of the clock (more than 1024 grants a millisecond, or a token taken in
/// from elsewhere), which makes the hold look younger, or unless the lead changed twice since
/// the grant (`Leads` keeps one change), which makes it look older by the promotion's
/// allowance. A clock that stepped back reads as 0, and so does a token of an old version's
/// counter (no clock in it), never decades.
pub fn held_ms(token: u64, leads: &Leads, now_ms: i64) -> u64 {
    let granted_ms =
        token.saturating_sub(leads.at_grant_of(token)) >> crate::core::state::tokens::CLOCK_SHIFT;
    let now_ms = u64::try_from(now_ms).unwrap_or(0);
    // Before 2001: not a clock-based token.
    if granted_ms < 978_307_200_000 {
        return 0;
    }
    now_ms.saturating_sub(granted_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_histograms_have_no_percentiles() {
        let latencies = Latencies::new();
        for measure in Measure::ALL {
            for kind in HoldKind::ALL {
                assert_eq!(latencies.percentiles(measure, kind), None);
                assert_eq!(latencies.count(measure, kind), 0);
            }
        }
    }

    #[test]
    fn percentiles_follow_the_values_within_one_percent() {
        let mut latencies = Latencies::new();
        for micros in 1..=1000 {
            latencies.record(Measure::Wait, HoldKind::Exclusive, micros * 1000);
        }
        let p = latencies
            .percentiles(Measure::Wait, HoldKind::Exclusive)
            .expect("values");
        let near = |got: f64, want: f64| (got - want).abs() <= want * 0.01;
        assert!(near(p.p50, 500_000.0), "{p:?}");
        assert!(near(p.p99, 990_000.0), "{p:?}");
        assert!(near(p.p999, 999_000.0), "{p:?}");
        assert!(p.p50 <= p.p99 && p.p99 <= p.p999);
        // Other kinds and measures are apart.
        assert_eq!(
            latencies.percentiles(Measure::Hold, HoldKind::Exclusive),
            None
        );
        assert_eq!(latencies.percentiles(Measure::Wait, HoldKind::Shared), None);
    }

    #[test]
    fn immediate_grants_weigh_the_median_down_to_zero() {
        let mut latencies = Latencies::new();
        latencies.record(Measure::Wait, HoldKind::Limit, 5_000);
        latencies.record_immediate(HoldKind::Limit, 99);
        latencies.record_immediate(HoldKind::Limit, 0);
        assert_eq!(latencies.count(Measure::Wait, HoldKind::Limit), 100);
        let p = latencies
            .percentiles(Measure::Wait, HoldKind::Limit)
            .expect("values");
        assert_eq!(p.p50, 0.0);
        assert!(p.p999 >= 4_950.0 && p.p999 <= 5_050.0, "{p:?}");
    }

    #[test]
    fn values_past_the_highest_count_as_the_highest_and_reset_forgets() {
        let mut latencies = Latencies::new();
        latencies.record(Measure::Hold, HoldKind::Shared, u64::MAX);
        let p = latencies
            .percentiles(Measure::Hold, HoldKind::Shared)
            .expect("a value");
        assert!(p.p50 <= HIGHEST_MICROS as f64 * 1.01 && p.p50 >= HIGHEST_MICROS as f64 * 0.99);
        let before = latencies.memory();
        latencies.reset();
        assert_eq!(latencies.percentiles(Measure::Hold, HoldKind::Shared), None);
        assert_eq!(latencies.memory(), before);
        assert!(before > 6 * 1000 && before < 1 << 20, "{before}");
    }

    #[test]
    fn the_latencystats_format() {
        let p = Percentiles {
            p50: 1.0,
            p99: 3007.0,
            p999: 4015.5,
        };
        assert_eq!(p.latencystats(), "p50=1.000,p99=3007.000,p99.9=4015.500");
    }

    #[test]
    fn held_time_is_read_from_the_token() {
        let now = 1_800_000_000_000;
        let lead = 600_000 << 10;
        let leads = Leads {
            now: lead,
            before: 0,
            changed_after: 0,
        };
        let token = ((now - 250) << 10) as u64 + lead + 3;
        assert_eq!(held_ms(token, &leads, now), 250);
        // A clock that stepped back, or a counter ahead of it, reads as 0, never negative.
        assert_eq!(held_ms(token, &leads, now - 1000), 0);
        assert_eq!(held_ms(token + (5_000 << 10), &leads, now), 0);
        // An old version's small counter: no grant time to read.
        assert_eq!(held_ms(17, &leads, now), 0);
        assert_eq!(held_ms(token, &leads, -5), 0);
    }

    #[test]
    fn a_hold_granted_before_a_promotion_reads_with_the_lead_it_had() {
        let now: i64 = 1_800_000_000_000;
        let before_promotion = ((now - 1000) << 10) as u64;
        let mut leads = Leads::default();
        leads.changed(600_000 << 10, before_promotion);
        leads.changed(600_000 << 10, before_promotion + 99);
        assert_eq!(leads.changed_after, before_promotion);
        assert_eq!(held_ms(before_promotion, &leads, now), 1000);
        let after = ((now - 10) << 10) as u64 + (600_000 << 10);
        assert_eq!(held_ms(after, &leads, now), 10);
    }
}
