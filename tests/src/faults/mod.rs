//! Fault injection for clusters of real processes, the layers of a Jepsen-style harness.
//!
//! [`hosts`] is the base layer: separate network hosts on one machine (one network namespace
//! per node process), with link cuts and packet loss between them. Unlike the in-process
//! `faults()` of `actix-cluster` (feature `fault-injection`), which drops connections inside
//! the library, these faults happen in the kernel, below the transport, so the library sees
//! what it would see on a real network: silent timeouts, not errors.
//!
//! Everything here needs root (network namespaces, veth pairs, a bridge and `iptables`).

pub mod hosts;
