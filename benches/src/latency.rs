//! Round-trip latency recording with HdrHistogram.

use std::time::Duration;

use hdrhistogram::Histogram;

use crate::BenchResult;

/// Percentiles of one latency run, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Percentiles {
    /// Median.
    pub p50_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// Number of recorded samples.
    pub samples: u64,
}

/// Records durations with nanosecond resolution and three significant digits.
#[derive(Debug)]
pub struct Recorder {
    hist: Histogram<u64>,
}

impl Recorder {
    /// An empty recorder for round trips between 1 ns and 60 s.
    pub fn new() -> BenchResult<Self> {
        Ok(Self {
            hist: Histogram::new_with_bounds(1, 60_000_000_000, 3)?,
        })
    }

    /// Adds one sample; values beyond 60 s are clamped rather than lost, so that a stall still
    /// shows in the tail.
    pub fn record(&mut self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1);
        self.hist.saturating_record(ns);
    }

    /// p50, p99 and p99.9 of what was recorded.
    pub fn percentiles(&self) -> Percentiles {
        let us = |q: f64| self.hist.value_at_quantile(q) as f64 / 1_000.0;
        Percentiles {
            p50_us: us(0.5),
            p99_us: us(0.99),
            p999_us: us(0.999),
            samples: self.hist.len(),
        }
    }
}
