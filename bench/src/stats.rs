//! Percentiles, Jain's fairness index and number formatting.

use std::time::{Duration, Instant};

/// Percentiles of a sample, in milliseconds.
#[derive(Clone, Copy, Debug, Default)]
pub struct Summary {
    pub count: usize,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

impl Summary {
    pub fn of(mut values_ms: Vec<f64>) -> Summary {
        if values_ms.is_empty() {
            return Summary::default();
        }
        values_ms.sort_by(f64::total_cmp);
        Summary {
            count: values_ms.len(),
            p50: percentile(&values_ms, 0.50),
            p99: percentile(&values_ms, 0.99),
            max: values_ms[values_ms.len() - 1],
        }
    }
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], fraction: f64) -> f64 {
    let rank = (fraction * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Jain's fairness index (Σx)² / (n·Σx²): 1 when every client got the same share, 1/n when
/// one client got everything.
pub fn jain_index(counts: &[u64]) -> f64 {
    let sum: f64 = counts.iter().map(|&x| x as f64).sum();
    let sum_of_squares: f64 = counts.iter().map(|&x| (x as f64) * (x as f64)).sum();
    if sum_of_squares == 0.0 {
        return 0.0;
    }
    sum * sum / (counts.len() as f64 * sum_of_squares)
}

pub fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// `later - earlier` in milliseconds, negative when `later` is in fact earlier.
pub fn signed_millis(earlier: Instant, later: Instant) -> f64 {
    if later >= earlier {
        millis(later - earlier)
    } else {
        -millis(earlier - later)
    }
}

pub fn format_ms(value: f64) -> String {
    format!("{value:.3}")
}

pub fn format_rate(value: f64) -> String {
    format!("{value:.0}")
}

pub fn format_us(value: f64) -> String {
    format!("{value:.2}")
}

pub fn format_ratio(value: f64) -> String {
    format!("{value:.2}x")
}
