//! Membership: who is in the cluster and how healthy each member looks.
//!
//! This version has the failure detector; gossip (SWIM), member states and events arrive with
//! the membership issue. Everything here is sans-IO: time is passed in, nothing sleeps.

mod phi;

pub use phi::FailureDetectorConfig;
pub(crate) use phi::PhiAccrual;
