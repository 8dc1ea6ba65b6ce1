//! The `cluster-bench` harness: actix-cluster's tell throughput and ask latency, measured next to
//! baselines taken in the same run (local actix `do_send`, a raw framed TCP stream, a raw TCP
//! ping-pong and the same ping-pong relayed through four threads) so that the ratios, not the
//! absolute figures, can be compared across machines; pipelined ask throughput and the process
//! CPU time per message (next to the same figure for a local `do_send`); and the membership
//! scenarios (cluster formation, crash detection, false suspicions), compared with the
//! configured protocol timing; and the registry scenarios (registrations per second, cached
//! lookup latency next to a `HashMap`, write recovery after a leader kill, compared with the
//! election timeout).
//!
//! The binary `cluster-bench` runs everything and prints one JSON object; `docs/benchmarks.md`
//! explains each figure. The pieces are public so that other harnesses can reuse them.

pub mod actors;
pub mod baseline;
pub mod cpu;
pub mod healing;
pub mod latency;
pub mod membership;
pub mod placement;
pub mod registry;
pub mod scenario;
pub mod state;
pub mod virtual_actors;

/// Any failure of a benchmark run; the harness only reports it and exits non-zero.
pub type BenchError = Box<dyn std::error::Error + Send + Sync>;

/// The result type of every measuring function.
pub type BenchResult<T> = Result<T, BenchError>;

/// The median, averaging the two middle values of an even count; `None` when empty.
pub fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2]),
        _ => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
    }
}

/// A duration in (fractional) milliseconds, as the JSON reports them.
pub fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `x` rounded to `decimals` places, for the JSON.
pub fn round(x: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (x * scale).round() / scale
}
