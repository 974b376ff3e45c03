//! The bench's results as JSON (`--json PATH`), for the charts (`rlock-bench charts`): one
//! object whose sections each part fills in, written once the run is done.

use std::path::Path;

use serde_json::{Map, Value};

use crate::BenchResult;

#[derive(Default)]
pub struct Report {
    sections: Map<String, Value>,
}

impl Report {
    pub fn set(&mut self, section: &str, value: Value) {
        self.sections.insert(section.to_string(), value);
    }

    pub fn write(&self, path: &Path) -> BenchResult<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        let text = serde_json::to_string_pretty(&self.sections)?;
        std::fs::write(path, text + "\n")
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(())
    }
}

/// `points` evenly spaced quantiles (from the minimum to the maximum, nearest rank) of the
/// values: a distribution small enough to keep and to draw as a CDF. Empty for no values.
pub fn quantiles(mut values: Vec<f64>, points: usize) -> Vec<f64> {
    if values.is_empty() || points < 2 {
        return Vec::new();
    }
    values.sort_by(f64::total_cmp);
    let last = values.len() - 1;
    (0..points)
        .map(|i| values[(i * last + (points - 1) / 2) / (points - 1)])
        .collect()
}

/// Today's date (UTC) as YYYY-MM-DD, from the system clock.
pub fn today() -> String {
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (year, month, day) = civil_from_days((seconds / 86_400) as i64);
    format!("{year:04}-{month:02}-{day:02}")
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * shifted_month + 2) / 5 + 1) as u32;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_454), (2026, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn quantiles_span_the_values() {
        let values: Vec<f64> = (0..1000).map(f64::from).collect();
        let q = quantiles(values, 5);
        assert_eq!(q.first(), Some(&0.0));
        assert_eq!(q.last(), Some(&999.0));
        assert_eq!(q.len(), 5);
    }
}
