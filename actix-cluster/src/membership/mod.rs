//! Membership: who is in the cluster, in which state, and how loaded.
//!
//! The protocol logic is sans-IO ([`core::Membership`]): fed with messages, timer events and
//! `now`, it returns what to send, when to wake up and which member events happened. The
//! driver in `driver.rs` connects it to the transport (membership frames ride the nodes'
//! mutually authenticated connections) and to subscribers.

pub(crate) mod core;
pub(crate) mod driver;
mod load;
pub(crate) mod msg;
mod phi;
#[cfg(test)]
mod sim;
mod types;

pub(crate) use load::load_source;
pub use phi::FailureDetectorConfig;
pub use types::{ClusterEvent, LoadReport, Member, MemberState, MembershipConfig};
