//! The registry's consensus: openraft behind this module only. Nothing here is public; the
//! rest of the crate talks to [`RaftHandle`] with registry commands and gets registry errors.
//!
//! Threads: the Raft core and its replication tasks run on a current-thread tokio runtime of
//! their own (one per node); redb commits run on a storage thread below it. From here, actors
//! are only ever *sent messages* (watch events), never started or polled.

pub(crate) mod network;
pub(crate) mod node;
mod quiet;
pub(crate) mod store;
mod transfer;

#[cfg(fuzzing)]
pub(crate) use network::fuzz_frame;
pub(crate) use node::RaftHandle;

use serde::{Deserialize, Serialize};

use super::state::{Command, Outcome};

/// What the Raft membership records about a member: enough to reach it over our transport.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RaftNode {
    /// Cluster node name (the transport addresses peers by name).
    pub(crate) name: String,
    /// Its listen address, for dialing a member we have not met yet.
    pub(crate) addr: String,
}

openraft::declare_raft_types!(
    /// openraft's type parameters for the registry.
    pub(crate) TypeConfig:
        D = Command,
        R = Outcome,
        NodeId = u64,
        Node = RaftNode,
);
