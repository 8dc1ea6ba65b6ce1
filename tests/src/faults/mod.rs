//! The fault-injection harness: real hosts (network namespaces), `fault-node` processes, a
//! seeded nemesis, client workloads that record histories, and checkers that judge them.
//!
//! Each subsystem adds its workload and checker here; `registry` is the first. The bounded
//! schedule runs in CI (`tests/tests/faults.rs`); `fault-harness` runs longer ones.

pub mod checker;
pub mod hosts;
pub mod nemesis;
pub mod node;
pub mod registry;
