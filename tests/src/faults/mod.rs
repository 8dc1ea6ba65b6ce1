//! The fault-injection harness: a Jepsen-style harness on real processes.
//!
//! - [`hosts`]: separate network hosts on one machine (one network namespace per node
//!   process), with link cuts, packet loss and delay between them. Unlike the in-process
//!   `faults()` of `actix-cluster` (feature `fault-injection`), which drops connections inside
//!   the library, these faults happen below the transport (in the kernel; delay in a relay the
//!   kernel redirects connections through), so the library sees what it would see on a real
//!   network: silent timeouts and slow answers, not errors.
//! - [`node`]: a `fault-node` process on a host, driven over stdin and stdout.
//! - [`nemesis`]: seeded fault schedules.
//! - [`registry`]: the registry workload, run under a schedule; [`checker`] judges its history.
//!   The same run drives the self-healing workload when its plan asks for supervised names:
//!   named actors with the `Always` restart policy, pinged by the clients, whose activations
//!   [`activations`] judges (single activation, every name served again after each fault).
//!
//! Each subsystem adds its workload and checker here. The bounded schedule runs in CI
//! (`tests/tests/faults.rs`); the `fault-harness` binary runs longer ones. Everything needs root
//! (network namespaces, veth pairs, a bridge and `iptables`).

pub mod accounts;
pub mod activations;
pub mod checker;
pub mod hosts;
pub mod nemesis;
pub mod node;
pub mod registry;
mod relay;
