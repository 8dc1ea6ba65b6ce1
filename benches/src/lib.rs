//! The `cluster-bench` harness: actix-cluster's tell throughput and ask latency, measured next to
//! baselines taken in the same run (local actix `do_send`, a raw framed TCP stream, a raw TCP
//! ping-pong and the same ping-pong relayed through four threads) so that the ratios, not the
//! absolute figures, can be compared across machines; and the membership scenarios (cluster
//! formation, crash detection, false suspicions), compared with the configured protocol timing;
//! and the registry scenarios (registrations per second, cached lookup latency next to a
//! `HashMap`, write recovery after a leader kill, compared with the election timeout).
//!
//! The binary `cluster-bench` runs everything and prints one JSON object; `docs/benchmarks.md`
//! explains each figure. The pieces are public so that other harnesses can reuse them.

pub mod actors;
pub mod baseline;
pub mod latency;
pub mod membership;
pub mod registry;
pub mod scenario;

/// Any failure of a benchmark run; the harness only reports it and exits non-zero.
pub type BenchError = Box<dyn std::error::Error + Send + Sync>;

/// The result type of every measuring function.
pub type BenchResult<T> = Result<T, BenchError>;
