//! Results: latency samples reduced to percentiles, and the report printed
//! as a table or JSON.

use serde::Serialize;
use std::time::Duration;

/// Latency samples of one measured operation.
#[derive(Debug, Default, Clone)]
pub struct Samples(Vec<Duration>);

impl Samples {
    pub fn with_capacity(n: usize) -> Self {
        Self(Vec::with_capacity(n))
    }

    pub fn push(&mut self, d: Duration) {
        self.0.push(d);
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Adds another set's samples.
    pub fn extend(&mut self, other: &Samples) {
        self.0.extend_from_slice(&other.0);
    }

    /// The value below which `p` (0..=1) of the samples lie (nearest rank).
    pub fn percentile(&self, p: f64) -> Duration {
        if self.0.is_empty() {
            return Duration::ZERO;
        }
        let mut sorted = self.0.clone();
        sorted.sort_unstable();
        let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        sorted[rank - 1]
    }

    pub fn summary(&self, name: &str) -> Row {
        let ms = |d: Duration| (d.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0;
        Row {
            name: name.to_string(),
            n: self.len(),
            p50_ms: ms(self.percentile(0.50)),
            p99_ms: ms(self.percentile(0.99)),
            p999_ms: ms(self.percentile(0.999)),
            max_ms: ms(self.percentile(1.0)),
            value: None,
            unit: None,
        }
    }
}

/// One line of a report: a latency distribution, or a single value.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub name: String,
    pub n: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
}

impl Row {
    pub fn value(name: &str, value: f64, unit: &str) -> Row {
        Row {
            name: name.to_string(),
            n: 1,
            p50_ms: 0.0,
            p99_ms: 0.0,
            p999_ms: 0.0,
            max_ms: 0.0,
            value: Some((value * 1000.0).round() / 1000.0),
            unit: Some(unit.to_string()),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: String,
    pub parameters: serde_json::Value,
    pub rows: Vec<Row>,
    pub notes: Vec<String>,
    /// A table of its own (Markdown lines), for scenarios that report per
    /// interval.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub lines: Vec<String>,
}

impl Report {
    pub fn table(&self) -> String {
        let mut out = format!(
            "scenario: {}\nparameters: {}\n",
            self.scenario, self.parameters
        );
        out.push_str(&format!(
            "{:<44} {:>8} {:>10} {:>10} {:>10} {:>10}\n",
            "measure", "n", "p50 ms", "p99 ms", "p99.9 ms", "max ms"
        ));
        for r in &self.rows {
            match (&r.value, &r.unit) {
                (Some(v), Some(u)) => {
                    out.push_str(&format!("{:<44} {:>8} {v:>10} {u}\n", r.name, r.n))
                }
                _ => out.push_str(&format!(
                    "{:<44} {:>8} {:>10} {:>10} {:>10} {:>10}\n",
                    r.name, r.n, r.p50_ms, r.p99_ms, r.p999_ms, r.max_ms
                )),
            }
        }
        for n in &self.notes {
            out.push_str(&format!("note: {n}\n"));
        }
        for l in &self.lines {
            out.push_str(l);
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut s = Samples::default();
        for ms in 1..=100 {
            s.push(Duration::from_millis(ms));
        }
        assert_eq!(s.percentile(0.5), Duration::from_millis(50));
        assert_eq!(s.percentile(0.99), Duration::from_millis(99));
        assert_eq!(s.percentile(1.0), Duration::from_millis(100));
        assert_eq!(Samples::default().percentile(0.5), Duration::ZERO);
    }
}
