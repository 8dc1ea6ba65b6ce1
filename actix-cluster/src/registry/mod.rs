//! Cluster-wide names: which actor a name means, agreed by consensus.
//!
//! Every member keeps a replica of the name table ([`replica`]); writes go through Raft
//! ([`raft`]), so a name means one actor everywhere, a minority side of a partition cannot
//! register anything, and the table survives the loss of any minority of voters. Lookups read
//! the local replica (no network, no actor hop); `lookup_linearizable` first confirms with the
//! leader that the replica has everything committed before the call.

mod migrate;
pub(crate) mod raft;
mod rebalance;
mod remind;
pub(crate) mod replica;
mod service;
pub(crate) mod state;
mod supervise;
mod types;

pub use migrate::MigrateError;
pub(crate) use replica::{Replica, location};
pub(crate) use service::{Registry, RegistryContext};

pub(crate) use types::validate_name;
pub use types::{
    MAX_NAME_LEN, NameEntry, NameEvent, RecoveryReport, RegistryConfig, RegistryError,
    RegistryStatus, RegistryStorage, ReleaseReason,
};
