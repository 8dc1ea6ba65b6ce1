//! # actix-cluster
//!
//! Clustering for [actix](https://docs.rs/actix) actors: address an actor on another node as if
//! it were local, with typed replies and typed errors, over mutually authenticated TLS.
//!
//! It is **not** a new actor runtime. actix keeps running your actors; this crate carries their
//! messages between processes. An existing actor keeps `type Context = Context<Self>` and its
//! handlers; it gains a [`DistributedActor`] impl naming the messages other nodes may send.
//!
//! ```text
//!  user arbiter(s)                      network arbiter (one thread per node)
//!  ┌───────────────┐  encode, bounded   ┌──────────────────────────────────────────┐
//!  │ RemoteAddr::  │ ───── queue ─────▶ │ writer: one batch per write (TLS/TCP)    │──▶ peer
//!  │ send/tell     │ ◀── reply (oneshot)│ reader: decode frames in place ──────────│◀── peer
//!  └───────────────┘                    │   └▶ dispatch to local actix mailboxes   │
//!                                       └──────────────────────────────────────────┘
//! ```
//!
//! Layers, each calling only those below it: `wire` (frame format, sans-IO) → `codec` (payload
//! formats, LZ4) → `transport` (connections, queues, TLS) → `remote` (addresses, dispatch) →
//! `system` (the [`ClusterSystem`] that wires them). The wire format is specified in
//! `docs/protocol.md`.
//!
//! ## Example
//!
//! ```no_run
//! use actix::prelude::*;
//! use actix_cluster::prelude::*;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct Counter { n: u64 }
//! impl Actor for Counter { type Context = Context<Self>; }
//!
//! #[derive(Message, Serialize, Deserialize)]
//! #[rtype(result = "u64")]
//! struct Add(u64);
//! impl Handler<Add> for Counter {
//!     type Result = u64;
//!     fn handle(&mut self, m: Add, _: &mut Context<Self>) -> u64 { self.n += m.0; self.n }
//! }
//! impl DistributedActor for Counter {
//!     const NAME: &'static str = "example.counter";
//!     fn messages(m: &mut Messages<Self>) { m.handle::<Add>("add"); }
//! }
//!
//! #[actix::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let config = ClusterConfig::new()
//!         .node_name("node-1")
//!         .listen("127.0.0.1:7001")
//!         .seed_nodes(["127.0.0.1:7000"])
//!         .tls(TlsConfig::from_dir("certs/node-1")?)
//!         .build()?;
//!     let system = ClusterSystem::new("demo", config).register::<Counter>().start().await?;
//!     system.wait_for_peers(1, std::time::Duration::from_secs(5)).await;
//!     let there = system.remote_actor::<Counter>("node-0", |_| Counter { n: 10 }).await?;
//!     let total: u64 = there.send(Add(5)).await?;
//!     assert_eq!(total, 15);
//!     Ok(())
//! }
//! ```
//!
//! ## Guarantees
//! - Messages from one sender to one actor arrive in send order.
//! - Every queue is bounded: a full per-node queue makes `send`/`tell` wait, `try_send` hand
//!   the message back, and `do_send` drop it *and count it* (see [`NetworkStats`]).
//! - A request whose connection drops fails at once with [`RemoteError::NodeGone`].
//! - Bytes from a peer never cause a panic; malformed input closes that one connection.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod codec;
mod config;
mod limits;
mod membership;
mod metrics;
mod node;
pub mod placement;
mod registrations;
mod registry;
mod remote;
pub mod state;
mod system;
pub use system::virtual_actor;
mod tls;
mod transport;
mod wire;

pub use codec::SerializationFormat;
pub use config::{
    ClusterConfig, ClusterConfigBuilder, ConfigError, DiscoveryMethod, NetworkThread,
};
pub use limits::{Limits, Timeouts};
pub use membership::{
    ClusterEvent, FailureDetectorConfig, LoadReport, Member, MemberState, MembershipConfig,
};
pub use node::{
    Architecture, MAX_NODE_NAME_LEN, NodeId, NodeRole, validate_cluster_name, validate_node_name,
};
pub use registry::{
    MAX_NAME_LEN, MigrateError, NameEntry, NameEvent, RecoveryReport, RegistryConfig,
    RegistryError, RegistryStatus, RegistryStorage, ReleaseReason,
};
pub use remote::{
    DistributedActor, Messages, RemoteAddr, RemoteError, RemoteMessage, RemoteRecipient,
    SendFuture, SendRequest, TrySendError,
};
pub use remote::{
    MAX_WATCHES_PER_NODE, Terminated, TerminatedReason, WatchError, WatchId, WatchedActor,
};
pub use system::{
    ClusterSystem, ClusterSystemBuilder, DistributedActorExt, NetworkStats, SpawnError, StartError,
};
pub use tls::{TlsConfig, TlsError};
#[cfg(feature = "fault-injection")]
pub use transport::faults::Faults;

/// The names most programs need: `use actix_cluster::prelude::*;`.
pub mod prelude {
    pub use crate::{
        Architecture, ClusterConfig, ClusterEvent, ClusterSystem, DiscoveryMethod,
        DistributedActor, DistributedActorExt, Member, MemberState, Messages, NodeId, NodeRole,
        RemoteAddr, RemoteError, RemoteRecipient, SerializationFormat, TlsConfig, TrySendError,
    };
}

/// Entry points for the fuzz targets (`actix-cluster/fuzz`), compiled only under cargo-fuzz's
/// `--cfg fuzzing`: never part of the public API.
#[cfg(fuzzing)]
pub mod __fuzz {
    /// Feeds `data` to the frame decoder until it stops producing frames.
    pub fn decode_frames(data: &[u8], max_frame_size: u32) {
        let mut buf = bytes::BytesMut::from(data);
        let decoder = crate::wire::FrameDecoder::new(max_frame_size);
        while let Ok(Some(_)) = decoder.decode(&mut buf) {}
    }

    /// Decompresses `data` as an LZ4 payload with the given limit.
    pub fn decompress(data: &[u8], limit: usize) {
        let _ = crate::codec::decompress(data, limit);
    }

    /// Decodes `data` as a `Membership` frame body, and a SWIM datagram's header and updates.
    pub fn decode_membership(data: &[u8]) {
        crate::membership::msg::fuzz_body(data);
    }

    /// Decodes `data` as a `Raft` frame body and its payload: each request, each response,
    /// and a snapshot chunk (taken by a receiver accepting snapshots up to `max_snapshot`).
    pub fn decode_raft(data: &[u8], max_snapshot: u64) {
        crate::registry::raft::fuzz_frame(data, max_snapshot);
    }

    /// Decodes `data` as a stored state record (what a damaged store file would hand back).
    pub fn decode_state_record(data: &[u8]) {
        let _ = crate::state::Record::decode("fuzz", data);
    }
}
