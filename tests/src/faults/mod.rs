//! The fault-injection harness: hosts, node processes, a nemesis, client workloads and
//! checkers of the histories they record.

pub mod checker;
