//! `ClusterSystem`: one cluster node, the handle through which users reach every layer.
//!
//! The top of the layer stack: [`start`](ClusterSystemBuilder::start) wires the transport,
//! the remote layer, membership and the registry together (`start.rs`), and the public calls
//! live in one file per subsystem (`actors.rs`, `members.rs`, `registry.rs`). Lower layers
//! never see this type: each gets its own context with what it needs.
//!
//! A process may run several nodes (tests do), each started on its own actix arbiter; nothing
//! here is global or per thread, so a node is always reached through its `ClusterSystem`.

mod actors;
mod error;
mod members;
mod registry;
mod spawn;
mod start;
pub mod virtual_actor;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use actix_rt::{Arbiter, ArbiterHandle};

pub use actors::DistributedActorExt;
pub use error::StartError;
pub use spawn::SpawnError;
pub use start::ClusterSystemBuilder;

use crate::config::ClusterConfig;
use crate::membership::driver::Driver;
use crate::node::NodeId;
use crate::registry::Registry;
use crate::remote::RemoteContext;

/// Everything that belongs to one node, held by its handles.
struct Node {
    remote: Arc<RemoteContext>,
    /// `None` on client nodes, which use the cluster without being members.
    membership: Option<Arc<Driver>>,
    /// Cluster-wide names; a replica on members, a forwarder on client nodes.
    registry: Arc<Registry>,
    config: ClusterConfig,
    net: NetArbiter,
    /// Placement decisions of this node (and, on the acting master, for others).
    placer: Arc<std::sync::Mutex<crate::placement::Placer>>,
    /// Where this node's actors keep state that outlives them.
    state: Arc<dyn crate::state::StateStore>,
    /// The virtual actor activations this node hosts.
    virtuals: Arc<virtual_actor::VirtualHost>,
}

/// The arbiter that runs a node's network I/O (see [`NetworkThread`](crate::NetworkThread)).
enum NetArbiter {
    /// The node's own thread, stopped with the node.
    Own(Arbiter),
    /// The home arbiter, shared with user actors: never stopped by the node. Its tasks end on
    /// their own once the transport shuts down.
    Home(ArbiterHandle),
}

impl NetArbiter {
    fn handle(&self) -> ArbiterHandle {
        match self {
            NetArbiter::Own(a) => a.handle(),
            NetArbiter::Home(h) => h.clone(),
        }
    }

    fn stop(&self) {
        if let NetArbiter::Own(a) = self {
            a.stop();
        }
    }
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.remote.local.id)
            .finish_non_exhaustive()
    }
}

/// Entry point: names the cluster, takes the config, registers actor types that other nodes
/// may spawn here, and starts the node.
///
/// ```no_run
/// # use actix_cluster::prelude::*;
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let config = ClusterConfig::new()
///     .node_name("node-1")
///     .listen("127.0.0.1:7001")
///     .tls(TlsConfig::from_dir("certs/node-1")?)
///     .build()?;
/// let system = ClusterSystem::new("my-cluster", config).start().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ClusterSystem {
    node: Arc<Node>,
}

/// Counters of this node's network side, since start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct NetworkStats {
    /// Bytes written to peers (after TLS, if any: what the socket took).
    pub bytes_written: u64,
    /// Bytes read from peers.
    pub bytes_read: u64,
    /// Messages (tells, requests, replies) written to peers.
    pub messages_sent: u64,
    /// Frames received from peers.
    pub frames_received: u64,
    /// Messages dropped by `do_send` or because their node became unreachable.
    pub messages_dropped: u64,
    /// Tells that arrived here for actors that do not exist or could not decode them.
    pub messages_undeliverable: u64,
    /// Connections that completed the handshake.
    pub connections_established: u64,
    /// Connections refused or failed during the handshake.
    pub handshakes_failed: u64,
    /// Inbound handshakes closed to make room for newer ones (`Limits::max_handshakes`,
    /// `Limits::max_connections`).
    pub handshakes_evicted: u64,
    /// Inbound connections closed at once because `Limits::max_connections` were established.
    pub connections_refused: u64,
    /// Connections closed for holding the largest partial frame while inbound memory was over
    /// `Limits::inbound_memory_bytes`.
    pub closed_over_budget: u64,
    /// Inbound connections in the handshake right now.
    pub handshaking: u64,
}

/// Bound on the whole of [`ClusterSystem::leave`]'s announcements.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(2);

impl ClusterSystem {
    /// Prepares a node of cluster `cluster` (a DNS-style name, checked at start).
    #[allow(clippy::new_ret_no_self)]
    pub fn new(cluster: impl Into<String>, config: ClusterConfig) -> ClusterSystemBuilder {
        ClusterSystemBuilder::new(cluster.into(), config)
    }

    fn remote(&self) -> &Arc<RemoteContext> {
        &self.node.remote
    }

    /// The store where this node's actors keep state that outlives an activation: the one
    /// given to [`ClusterSystemBuilder::state_store`], else a
    /// [`RedbStore`](crate::state::RedbStore) in the registry's durable data directory (file
    /// `state.redb`), else a [`MemoryStore`](crate::state::MemoryStore). Fence writes with a
    /// token that grows from one activation to the next, such as the
    /// [`NameEntry::version`](crate::NameEntry::version) of the actor's cluster-wide name.
    pub fn state_store(&self) -> Arc<dyn crate::state::StateStore> {
        Arc::clone(&self.node.state)
    }

    /// This node's identity.
    pub fn node_id(&self) -> &NodeId {
        &self.node.remote.local.id
    }

    /// The address peers dial to reach this node (the bound port, if 0 was configured).
    pub fn local_addr(&self) -> SocketAddr {
        self.node.remote.local.addr
    }

    /// Counters of the network side.
    pub fn stats(&self) -> NetworkStats {
        let transport = &self.remote().transport;
        let s = &transport.stats;
        let unreachable: u64 = transport
            .peers()
            .iter()
            .map(|p| p.dropped.load(Ordering::Relaxed))
            .sum();
        NetworkStats {
            bytes_written: s.bytes_written.load(Ordering::Relaxed),
            bytes_read: s.bytes_read.load(Ordering::Relaxed),
            messages_sent: s.messages_sent.load(Ordering::Relaxed),
            frames_received: s.frames_received.load(Ordering::Relaxed),
            messages_dropped: self.remote().dropped() + unreachable,
            messages_undeliverable: self.remote().actors.undeliverable.load(Ordering::Relaxed),
            connections_established: s.connections_established.load(Ordering::Relaxed),
            handshakes_failed: s.handshakes_failed.load(Ordering::Relaxed),
            handshakes_evicted: s.handshakes_evicted.load(Ordering::Relaxed),
            connections_refused: s.connections_refused.load(Ordering::Relaxed),
            closed_over_budget: s.closed_over_budget.load(Ordering::Relaxed),
            handshaking: transport.handshaking() as u64,
        }
    }

    /// Number of local actors reachable from the cluster.
    pub fn local_actor_count(&self) -> usize {
        self.remote().actors.len()
    }

    /// Stops the network thread without telling anyone, to simulate a crash in tests
    /// that run several nodes in one process. Only with the `fault-injection` feature.
    #[cfg(feature = "fault-injection")]
    pub fn kill_for_tests(&self) {
        self.remote().stop();
        // A crashed node sends nothing more, watch notifications included.
        self.remote().actors.watches.close();
        self.node.registry.shutdown();
        match &self.node.net {
            NetArbiter::Own(a) => {
                a.stop();
            }
            // A shared arbiter cannot be stopped: the transport drops its connections without
            // a goodbye instead, which peers see as they see a crash.
            NetArbiter::Home(_) => self.remote().transport.abort(),
        }
    }

    /// Cuts and restores this node's connections to chosen nodes, for partition tests. See
    /// [`Faults`](crate::Faults).
    #[cfg(feature = "fault-injection")]
    pub fn faults(&self) -> crate::transport::faults::Faults {
        crate::transport::faults::Faults::new(Arc::clone(&self.remote().transport))
    }

    /// Leaves the cluster gracefully: other nodes see this one `Leaving`, then `Left` (not
    /// `Down` after a timeout), then the node shuts down. Local actors keep running, except
    /// those of supervised names (spawned with a restart policy), which stop first: the
    /// registry leader restarts them on other nodes.
    pub async fn leave(&self) {
        if self.remote().is_stopped() {
            return;
        }
        self.node.registry.stop_supervised();
        if let Some(m) = &self.node.membership {
            m.leave(LEAVE_TIMEOUT).await;
        }
        self.shutdown().await;
    }

    /// Leaves the cluster: tells every peer (they fail requests in flight to this node at
    /// once), closes connections, and stops the network thread. Local actors keep running,
    /// except those of supervised names, as with [`leave`](Self::leave).
    pub async fn shutdown(&self) {
        self.node.registry.stop_supervised();
        if !self.remote().stop() {
            return;
        }
        // A registry leader hands over while its connections still work, so that the others
        // need not wait out its lease and an election.
        if self.node.registry.hand_off().await {
            tracing::info!("registry leadership handed off before shutdown");
        }
        // Before the transport marks every peer gone, which watches must not take for
        // those nodes going down.
        self.remote().actors.watches.close();
        self.node.registry.shutdown();
        let transport = &self.remote().transport;
        transport.shutdown();
        // Give writers a moment to put GoAway on the wire; bounded, since a dead peer may
        // never acknowledge.
        let deadline = Instant::now() + Duration::from_secs(1);
        while transport.open_connections() > 0 && Instant::now() < deadline {
            let _ =
                tokio::time::timeout(Duration::from_millis(20), transport.changed.notified()).await;
        }
        self.node.net.stop();
    }
}
