//! Latency summaries (nearest-rank percentiles over every recorded sample) and throughput.

use std::time::Duration;

use serde_json::{Value, json};

/// p50/p99/max of a set of samples.
#[derive(Debug, Clone, Copy)]
pub struct Latency {
    /// Median.
    pub p50: Duration,
    /// 99th percentile (with fewer than 100 samples this is the maximum).
    pub p99: Duration,
    /// Largest sample.
    pub max: Duration,
    /// How many samples.
    pub samples: usize,
}

impl Latency {
    /// `None` without samples.
    pub fn of(mut samples: Vec<Duration>) -> Option<Self> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        Some(Self {
            p50: percentile(&samples, 0.50),
            p99: percentile(&samples, 0.99),
            max: samples[samples.len() - 1],
            samples: samples.len(),
        })
    }

    /// As JSON, in milliseconds.
    pub fn json(&self) -> Value {
        json!({"p50_ms": ms(self.p50), "p99_ms": ms(self.p99), "max_ms": ms(self.max),
            "samples": self.samples})
    }
}

/// Nearest-rank percentile of sorted, non-empty samples.
fn percentile(sorted: &[Duration], q: f64) -> Duration {
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Milliseconds, for tables and JSON.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// `count` per second of `elapsed`.
pub fn rate(count: usize, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64().max(f64::MIN_POSITIVE)
}
