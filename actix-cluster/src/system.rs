//! `ClusterSystem`: one cluster node, wiring the transport and the remote layer together.
//!
//! A process may run several nodes (tests do), each started on its own actix arbiter. The
//! node is found from its threads through a thread-local, never through a process global:
//! the thread that called [`ClusterSystemBuilder::start`] and the node's network thread both
//! know their node, which is how [`DistributedActorExt::start_distributed`] and addresses
//! deserialized from messages find it.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix::prelude::*;
use actix_rt::{Arbiter, ArbiterHandle};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::oneshot;

use crate::codec::{self, SerializationFormat};
use crate::config::{ClusterConfig, Security};
use crate::error::{RemoteError, StartError};
use crate::membership::core::{Membership, Mode, Settings};
use crate::membership::driver::Driver;
use crate::membership::{ClusterEvent, Member, MemberState};
use crate::node::{NodeId, NodeInfo, validate_node_name};
use crate::remote::{
    self, DistributedActor, LocalActors, RemoteAddr, ResolveRequest, SYS_RESOLVE, SYS_SPAWN,
    SYSTEM_ACTOR, SpawnRequest, Terminated, WatchError, WatchId,
};
use crate::transport::{PeerState, Transport};

thread_local! {
    static CURRENT: RefCell<Option<Arc<NodeCore>>> = const { RefCell::new(None) };
}

/// State shared by everything that belongs to one node.
pub(crate) struct NodeCore {
    pub(crate) local: NodeInfo,
    pub(crate) config: ClusterConfig,
    pub(crate) transport: Arc<Transport>,
    pub(crate) actors: Arc<LocalActors>,
    /// `None` on client nodes, which use the cluster without being members.
    pub(crate) membership: Option<Arc<Driver>>,
    /// Cluster-wide names; a replica on members, a forwarder on client nodes.
    pub(crate) registry: Arc<crate::registry::Registry>,
    net: Arbiter,
    stopped: AtomicBool,
    dropped_full: AtomicU64,
    dropped_failed: AtomicU64,
}

impl std::fmt::Debug for NodeCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeCore")
            .field("local", &self.local.id)
            .finish_non_exhaustive()
    }
}

impl NodeCore {
    /// The node running on this thread, if any.
    pub(crate) fn current() -> Option<Arc<NodeCore>> {
        CURRENT.with(|c| c.borrow().clone())
    }

    fn set_current(core: Option<Arc<NodeCore>>) {
        CURRENT.with(|c| *c.borrow_mut() = core);
    }

    pub(crate) fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    pub(crate) fn count_dropped(&self, reason: &'static str) {
        let counter = if reason == "queue_full" {
            &self.dropped_full
        } else {
            &self.dropped_failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("actix_cluster_messages_dropped_total", "reason" => reason).increment(1);
    }

    fn request_timeout(&self) -> Duration {
        self.config.timeouts.request
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
#[derive(Debug)]
pub struct ClusterSystem {
    core: Arc<NodeCore>,
}

impl Clone for ClusterSystem {
    fn clone(&self) -> Self {
        Self {
            core: Arc::clone(&self.core),
        }
    }
}

type SpawnerEntry = (&'static str, crate::remote::SpawnerFn, Vec<String>);

/// Configures a node before it starts. See [`ClusterSystem::new`].
#[must_use = "the node only runs once .start() is awaited"]
pub struct ClusterSystemBuilder {
    cluster: String,
    config: ClusterConfig,
    spawners: Vec<SpawnerEntry>,
}

impl std::fmt::Debug for ClusterSystemBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterSystemBuilder")
            .field("cluster", &self.cluster)
            .field("node", &self.config.node_name)
            .finish_non_exhaustive()
    }
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
}

impl ClusterSystem {
    /// Prepares a node of cluster `cluster` (a DNS-style name, checked at start).
    #[allow(clippy::new_ret_no_self)]
    pub fn new(cluster: impl Into<String>, config: ClusterConfig) -> ClusterSystemBuilder {
        ClusterSystemBuilder {
            cluster: cluster.into(),
            config,
            spawners: Vec::new(),
        }
    }

    /// The node running on this thread (set by `start` on the starting thread and on the
    /// node's network thread).
    pub fn current() -> Option<ClusterSystem> {
        NodeCore::current().map(|core| ClusterSystem { core })
    }

    pub(crate) fn core(&self) -> &Arc<NodeCore> {
        &self.core
    }

    /// This node's identity.
    pub fn node_id(&self) -> &NodeId {
        &self.core.local.id
    }

    /// The address peers dial to reach this node (the bound port, if 0 was configured).
    pub fn local_addr(&self) -> SocketAddr {
        self.core.local.addr
    }

    /// Starts `actor` on the current arbiter and makes it reachable from the cluster.
    ///
    /// Must run on an actix arbiter thread, like `Actor::start`.
    pub fn start_actor<A: DistributedActor>(&self, actor: A) -> RemoteAddr<A> {
        let (id, addr) = self.core.actors.start(actor);
        RemoteAddr::local(&self.core, id, addr)
    }

    /// Makes an actor that was started the actix way reachable from the cluster. It keeps
    /// actix's mailbox capacity (16 unless it set another).
    pub fn expose<A: DistributedActor>(&self, addr: Addr<A>) -> RemoteAddr<A> {
        let id = self.core.actors.insert(addr.clone());
        RemoteAddr::local(&self.core, id, addr)
    }

    /// Gives a local actor a name on this node, so others can find it with
    /// [`actor_on`](Self::actor_on). A name already in use is moved to the new actor.
    pub fn register_local_name<A: DistributedActor>(
        &self,
        name: impl Into<String>,
        addr: &RemoteAddr<A>,
    ) -> Result<(), RemoteError> {
        if addr.node() != *self.node_id() {
            return Err(RemoteError::UnknownActor {
                node: self.node_id().name().to_owned(),
                actor: format!("{} (hosted on {})", addr.actor_id(), addr.node()),
            });
        }
        self.core.actors.set_name(name.into(), addr.actor_id());
        Ok(())
    }

    /// The actor registered as `name` on node `node`, checked to be an `A`.
    pub async fn actor_on<A: DistributedActor>(
        &self,
        node: &str,
        name: &str,
    ) -> Result<RemoteAddr<A>, RemoteError> {
        if node == self.node_id().name() {
            let id = self.core.actors.resolve(node, name, A::NAME)?;
            let addr =
                self.core
                    .actors
                    .addr_of::<A>(id)
                    .ok_or_else(|| RemoteError::UnknownActor {
                        node: node.to_owned(),
                        actor: name.to_owned(),
                    })?;
            return Ok(RemoteAddr::local(&self.core, id, addr));
        }
        let req = ResolveRequest {
            name: name.to_owned(),
            actor_type: A::NAME.to_owned(),
        };
        let (peer_id, peer_addr, id) = self.system_request(node, SYS_RESOLVE, req).await?;
        Ok(RemoteAddr::remote(&self.core, peer_id, peer_addr, id))
    }

    /// Builds an actor here with `make`, ships its serialized state to `node` and starts it
    /// there. `node` must have registered `A` ([`ClusterSystemBuilder::register`]).
    pub async fn remote_actor<A>(
        &self,
        node: &str,
        make: impl FnOnce(&NodeId) -> A,
    ) -> Result<RemoteAddr<A>, RemoteError>
    where
        A: DistributedActor + Serialize,
    {
        if node == self.node_id().name() {
            return Ok(self.start_actor(make(self.node_id())));
        }
        let peer = self
            .core
            .transport
            .peer_by_name(node)
            .ok_or_else(|| RemoteError::UnknownNode(node.to_owned()))?;
        let actor = make(&peer.id);
        let format = A::serialization_format().unwrap_or(self.core.config.serialization);
        let state = codec::encode(format, &actor).map_err(|e| RemoteError::from_codec(e, false))?;
        let req = SpawnRequest {
            actor_type: A::NAME.to_owned(),
            format,
            state,
        };
        let (peer_id, peer_addr, id) = self.system_request(node, SYS_SPAWN, req).await?;
        Ok(RemoteAddr::remote(&self.core, peer_id, peer_addr, id))
    }

    /// Watches the actor at `target`, on this node or any other: `recipient` gets exactly one
    /// [`Terminated`] when that actor stops
    /// ([`ActorStopped`](crate::TerminatedReason::ActorStopped)) or its node incarnation goes
    /// down or leaves ([`NodeDown`](crate::TerminatedReason::NodeDown),
    /// [`NodeLeft`](crate::TerminatedReason::NodeLeft)), unless [`unwatch`](Self::unwatch) comes first.
    ///
    /// An actor that is already stopped, or whose node incarnation is already known to be
    /// gone, is reported at once. A stop is noticed within about 100 ms (the target node polls
    /// its watched actors); a node failure as soon as this node declares it down.
    ///
    /// # Errors
    /// - [`WatchError::TooManyWatches`]: this node already holds
    ///   [`MAX_WATCHES_PER_NODE`](crate::MAX_WATCHES_PER_NODE) watches on that node's actors
    ///   (or that node holds as many from this one);
    /// - [`WatchError::Request`]: the target node did not answer (timeout, connection lost,
    ///   unreachable, older version), or this node has stopped.
    ///
    /// After an error no watch is active and no notification will arrive.
    pub async fn watch<A: DistributedActor>(
        &self,
        target: &RemoteAddr<A>,
        recipient: Recipient<Terminated>,
    ) -> Result<WatchId, WatchError> {
        remote::watch::watch(
            &self.core,
            target.node().clone(),
            target.node_addr(),
            target.actor_id(),
            recipient,
        )
        .await
    }

    /// Withdraws a watch: its [`Terminated`] will not arrive. `false` if it had already fired
    /// or been withdrawn.
    pub fn unwatch(&self, watch: WatchId) -> bool {
        remote::watch::unwatch(&self.core, watch)
    }

    async fn system_request<T: Serialize>(
        &self,
        node: &str,
        message: u32,
        req: T,
    ) -> Result<(NodeId, SocketAddr, u64), RemoteError> {
        let (ep, id, addr) = self.system_endpoint(node)?;
        let deadline = self.core.request_timeout();
        let actor: u64 = ep.system_request(message, req, deadline).await?;
        Ok((id, addr, actor))
    }

    /// The system actor of the current incarnation of `node`, with that incarnation.
    fn system_endpoint(
        &self,
        node: &str,
    ) -> Result<(remote::Endpoint, NodeId, SocketAddr), RemoteError> {
        let peer = self
            .core
            .transport
            .peer_by_name(node)
            .ok_or_else(|| RemoteError::UnknownNode(node.to_owned()))?;
        let ep = remote::Endpoint::new(
            peer.id.clone(),
            peer.addr(),
            SYSTEM_ACTOR,
            Some(Arc::clone(&self.core)),
        );
        Ok((ep, peer.id.clone(), peer.addr()))
    }

    /// This node and every member it knows, with their state as this node sees it, sorted
    /// by node id.
    pub fn members(&self) -> Vec<Member> {
        if let Some(m) = &self.core.membership {
            return m.members();
        }
        // A client is no member: it lists itself and the nodes it is connected to.
        let me = &self.core.local;
        let mut out = vec![Member {
            id: me.id.clone(),
            addr: me.addr,
            role: me.role,
            labels: me.labels.clone(),
            capabilities: Vec::new(),
            state: MemberState::Up,
            phi: 0.0,
            load: None,
            connected: false,
            queued: 0,
        }];
        for p in self.core.transport.peers() {
            let state = match p.state() {
                PeerState::Connected => MemberState::Up,
                PeerState::Connecting => MemberState::Joining,
                PeerState::Unreachable => MemberState::Suspect,
                PeerState::Gone => continue,
            };
            let info = p.info();
            out.push(Member {
                id: info.id,
                addr: info.addr,
                role: info.role,
                labels: info.labels,
                capabilities: Vec::new(),
                state,
                phi: 0.0,
                load: None,
                connected: p.state() == PeerState::Connected,
                queued: p.queued(),
            });
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    /// The member table as node `node` sees it: its own [`members`](Self::members), computed
    /// there and sent back (what `ctl status` prints). For this node's own name it is
    /// `self.members()`, without a round trip.
    ///
    /// # Errors
    /// - [`RemoteError::UnknownNode`]: no node of that name is known here;
    /// - [`RemoteError::Timeout`]: no answer within the configured request timeout;
    /// - [`RemoteError::NodeUnreachable`] or [`RemoteError::NodeGone`]: the node failed or
    ///   restarted before answering;
    /// - [`RemoteError::UnknownMessageType`]: the node runs a version without this request;
    /// - [`RemoteError::Decode`]: the answer was malformed.
    ///
    /// Nothing changes on either node.
    pub async fn members_of(&self, node: &str) -> Result<Vec<Member>, RemoteError> {
        if node == self.node_id().name() {
            return Ok(self.members());
        }
        let (ep, _, _) = self.system_endpoint(node)?;
        let deadline = self.core.request_timeout();
        let rows = ep
            .request::<(), Vec<remote::MemberRow>>(
                remote::SYS_MEMBERS,
                SerializationFormat::Bincode,
                (),
                deadline,
            )
            .await?;
        rows.into_iter()
            .map(remote::MemberRow::into_member)
            .collect()
    }

    /// Waits until this node is connected to the node that listens at `addr` (as that node
    /// advertises itself) and returns its identity; `None` if `timeout` passes first. For a
    /// client that only knows a seed's address, such as `ctl status --seed ADDR`.
    pub async fn wait_for_addr(&self, addr: SocketAddr, timeout: Duration) -> Option<NodeId> {
        let deadline = Instant::now() + timeout;
        loop {
            let found = self
                .members()
                .into_iter()
                .find(|m| m.addr == addr && m.connected && m.id != *self.node_id());
            if let Some(m) = found {
                return Some(m.id);
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            // The member table has no change notification that covers every source (the
            // transport and the membership core both feed it); a short poll bounded by the
            // deadline costs nothing next to a handshake.
            tokio::time::sleep((deadline - now).min(Duration::from_millis(20))).await;
        }
    }

    /// Subscribes `subscriber` to membership changes. It first receives a
    /// [`ClusterEvent::Snapshot`] of the member table, then every change in order.
    ///
    /// A client node (role [`NodeRole::Client`](crate::NodeRole::Client)) is no member and
    /// only gets the snapshot.
    pub fn subscribe(&self, subscriber: Recipient<ClusterEvent>) {
        match &self.core.membership {
            Some(m) => m.subscribe(subscriber),
            None => subscriber.do_send(ClusterEvent::Snapshot(self.members())),
        }
    }

    /// Leaves the cluster gracefully: other nodes see this one `Leaving`, then `Left` (not
    /// `Down` after a timeout), then the node shuts down. Local actors keep running.
    pub async fn leave(&self) {
        if self.core.is_stopped() {
            return;
        }
        if let Some(m) = &self.core.membership {
            m.leave(LEAVE_TIMEOUT).await;
        }
        self.shutdown().await;
    }

    /// Waits until this node is connected to at least `peers` other nodes; `false` if the
    /// deadline passes first.
    pub async fn wait_for_peers(&self, peers: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let changed = self.core.transport.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let up = self
                .core
                .transport
                .peers()
                .iter()
                .filter(|p| p.state() == PeerState::Connected)
                .count();
            if up >= peers {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            // The poll interval only bounds how late a missed notification is noticed.
            let _ = tokio::time::timeout((deadline - now).min(Duration::from_millis(100)), changed)
                .await;
        }
    }

    /// Counters of the network side.
    pub fn stats(&self) -> NetworkStats {
        let s = &self.core.transport.stats;
        let unreachable: u64 = self
            .core
            .transport
            .peers()
            .iter()
            .map(|p| p.dropped.load(Ordering::Relaxed))
            .sum();
        NetworkStats {
            bytes_written: s.bytes_written.load(Ordering::Relaxed),
            bytes_read: s.bytes_read.load(Ordering::Relaxed),
            messages_sent: s.messages_sent.load(Ordering::Relaxed),
            frames_received: s.frames_received.load(Ordering::Relaxed),
            messages_dropped: self.core.dropped_full.load(Ordering::Relaxed)
                + self.core.dropped_failed.load(Ordering::Relaxed)
                + unreachable,
            messages_undeliverable: self.core.actors.undeliverable.load(Ordering::Relaxed),
            connections_established: s.connections_established.load(Ordering::Relaxed),
            handshakes_failed: s.handshakes_failed.load(Ordering::Relaxed),
        }
    }

    /// Number of local actors reachable from the cluster.
    pub fn local_actor_count(&self) -> usize {
        self.core.actors.len()
    }

    /// Stops the network thread without telling anyone, to simulate a crash in tests
    /// that run several nodes in one process. Not for production use.
    #[doc(hidden)]
    pub fn kill_for_tests(&self) {
        self.core.stopped.store(true, Ordering::Release);
        // A crashed node sends nothing more, watch notifications included.
        self.core.actors.watches.close();
        self.core.registry.shutdown();
        self.core.net.stop();
    }

    /// Cuts and restores this node's connections to chosen nodes, for partition tests. See
    /// [`Faults`](crate::Faults).
    #[cfg(feature = "fault-injection")]
    pub fn faults(&self) -> crate::Faults {
        crate::Faults::new(Arc::clone(&self.core.transport))
    }

    /// Leaves the cluster: tells every peer (they fail requests in flight to this node at
    /// once), closes connections, and stops the network thread. Local actors keep running.
    pub async fn shutdown(&self) {
        if self.core.stopped.swap(true, Ordering::AcqRel) {
            return;
        }
        // A registry leader hands over while its connections still work, so that the others
        // need not wait out its lease and an election.
        if self.core.registry.hand_off().await {
            tracing::info!("registry leadership handed off before shutdown");
        }
        // Before the transport marks every peer gone, which watches must not take for
        // those nodes going down.
        self.core.actors.watches.close();
        self.core.registry.shutdown();
        let transport = &self.core.transport;
        transport.shutdown();
        // Give writers a moment to put GoAway on the wire; bounded, since a dead peer may
        // never acknowledge.
        let deadline = Instant::now() + Duration::from_secs(1);
        while transport.open_connections() > 0 && Instant::now() < deadline {
            let _ =
                tokio::time::timeout(Duration::from_millis(20), transport.changed.notified()).await;
        }
        self.core.net.stop();
        if NodeCore::current().is_some_and(|c| Arc::ptr_eq(&c, &self.core)) {
            NodeCore::set_current(None);
        }
    }
}

impl ClusterSystemBuilder {
    /// Lets other nodes spawn actors of type `A` here with
    /// [`ClusterSystem::remote_actor`].
    pub fn register<A: DistributedActor + DeserializeOwned>(mut self) -> Self {
        self.spawners.push(remote::spawner::<A>());
        self
    }

    /// Binds the listener, starts the network thread and begins joining the seeds.
    ///
    /// Must be awaited inside a running actix `System`; the calling arbiter becomes the
    /// node's home, where actors spawned by other nodes run.
    pub async fn start(self) -> Result<ClusterSystem, StartError> {
        if actix_rt::System::try_current().is_none() {
            return Err(StartError::NoSystem);
        }
        let home: ArbiterHandle = Arbiter::try_current().ok_or(StartError::NoSystem)?;
        validate_node_name(&self.cluster)
            .map_err(|e| StartError::Registry(format!("cluster name: {e}")))?;
        let config = self.config;

        let mut spawners = HashMap::new();
        let mut capabilities: Vec<String> = Vec::new();
        for (name, spawn, conflicts) in self.spawners {
            if !conflicts.is_empty() {
                return Err(StartError::Registry(conflicts.join("; ")));
            }
            if spawners.insert(name, spawn).is_some() {
                return Err(StartError::Registry(format!(
                    "actor type name {name:?} registered twice"
                )));
            }
            capabilities.push(name.to_owned());
        }

        let tls = match &config.security {
            Security::InsecurePlaintext => {
                tracing::warn!(node = %config.node_name, "running WITHOUT TLS: any host that reaches the port can send to this node's actors");
                None
            }
            Security::Tls(t) => {
                let names = t.certificate_names()?;
                if !names.contains(&config.node_name) {
                    return Err(StartError::CertificateName {
                        node: config.node_name.clone(),
                        names,
                    });
                }
                Some(t.build()?)
            }
        };

        // std's bind sets SO_REUSEADDR on Unix, so a restarted node can take its port back
        // while old connections linger in TIME_WAIT.
        let listener =
            std::net::TcpListener::bind(config.listen).map_err(|source| StartError::Bind {
                addr: config.listen,
                source,
            })?;
        let bound = listener.local_addr().map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
        listener
            .set_nonblocking(true)
            .map_err(|source| StartError::Bind {
                addr: config.listen,
                source,
            })?;
        let advertised = config.advertise.unwrap_or(bound);

        let local = NodeInfo {
            id: NodeId::new(config.node_name.as_str(), new_incarnation()),
            addr: advertised,
            role: config.role,
            labels: config.labels.clone(),
        };
        let net = Arbiter::new();
        let actors = Arc::new(LocalActors::new(
            config.node_name.clone(),
            home,
            config.limits,
            spawners,
        ));
        actors.watches.set_network(net.handle());
        let transport = Arc::new(Transport::new(
            self.cluster,
            local.clone(),
            crate::transport::TransportConfig {
                limits: config.limits,
                timeouts: config.timeouts,
                seed_nodes: config.seed_nodes.clone(),
            },
            tls,
            Arc::clone(&actors) as Arc<dyn crate::transport::Inbound>,
            net.handle(),
        ));
        let membership = (config.role != crate::node::NodeRole::Client).then(|| -> Result<_, StartError> {
            let settings = Settings {
                mode: match (config.architecture, config.discovery) {
                    (crate::config::Architecture::Centralized, _) => Mode::Centralized,
                    (_, crate::config::DiscoveryMethod::Static) => Mode::Static,
                    _ => Mode::Gossip,
                },
                seeds: config.seed_nodes.clone(),
                masters: config.master_nodes.clone(),
                detector: config.failure_detector,
                timing: config.membership,
                capabilities: capabilities.clone(),
            };
            let seed = local.id.incarnation() ^ rand::random::<u64>();
            let core = Membership::new(local.clone(), settings, seed, Instant::now());
            let counted = Arc::downgrade(&actors);
            let driver = Driver::new(
                core,
                &transport,
                net.handle(),
                crate::membership::load_source(move || {
                    counted
                        .upgrade()
                        .map_or((0, 0), |a| (a.len() as u64, a.requests_in_flight()))
                }),
            )
            .map_err(|e| StartError::Registry(e.to_string()))?;
            // Watches on a member's actors fire when it goes Down or Left. Weak: the driver
            // must not keep the actor table alive.
            let watched = Arc::downgrade(&actors);
            driver.on_down(Box::new(move |id, left| {
                if let Some(actors) = watched.upgrade() {
                    actors.watches.node_down(id, left);
                }
            }));
            Ok(driver)
        }).transpose()?;
        let registry = crate::registry::Registry::new(config.registry.clone());
        registry
            .register(&transport)
            .map_err(|e| StartError::Registry(e.to_string()))?;
        let core = Arc::new(NodeCore {
            local,
            config,
            transport: Arc::clone(&transport),
            actors,
            membership,
            registry,
            net,
            stopped: AtomicBool::new(false),
            dropped_full: AtomicU64::new(0),
            dropped_failed: AtomicU64::new(0),
        });

        let (tx, rx) = oneshot::channel();
        let for_net = Arc::clone(&core);
        let spawned = core.net.spawn_fn(move || {
            NodeCore::set_current(Some(Arc::clone(&for_net)));
            let result =
                tokio::net::TcpListener::from_std(listener).map(|l| for_net.transport.start(l));
            if let Some(m) = &for_net.membership {
                m.start();
            }
            let _ = tx.send(result);
        });
        if !spawned {
            return Err(StartError::NetworkThread);
        }
        match rx.await {
            Ok(Ok(())) => {}
            Ok(Err(source)) => {
                return Err(StartError::Bind {
                    addr: bound,
                    source,
                });
            }
            Err(_) => return Err(StartError::NetworkThread),
        }
        if core.config.role != crate::node::NodeRole::Client {
            // Opening storage blocks (files, a thread start): not on the caller's arbiter.
            let for_registry = Arc::clone(&core);
            let started = tokio::task::spawn_blocking(move || {
                for_registry.registry.start_raft(&for_registry)
            })
            .await
            .map_err(|e| StartError::Registry(format!("registry start: {e}")))?;
            if let Err(e) = started {
                core.stopped.store(true, Ordering::Release);
                core.transport.shutdown();
                return Err(StartError::Registry(format!("registry storage: {e}")));
            }
        }
        NodeCore::set_current(Some(Arc::clone(&core)));
        tracing::info!(node = %core.local.id, addr = %core.local.addr, tls = core.config.is_tls(), "cluster node started");
        Ok(ClusterSystem { core })
    }
}

/// Millisecond start time in the high bits, random low bits: a restart gets a larger
/// incarnation than the process it replaces (clocks permitting), and two processes started in
/// the same millisecond still differ.
/// Bound on the whole of [`ClusterSystem::leave`]'s announcements.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(2);

fn new_incarnation() -> u64 {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    (millis << 20) | (rand::random::<u64>() & 0xf_ffff)
}

/// `start_distributed()` for every [`DistributedActor`].
pub trait DistributedActorExt: DistributedActor + Sized {
    /// Starts the actor on the current arbiter and makes it reachable from the cluster, like
    /// `Actor::start` does for actix.
    ///
    /// # Panics
    /// If no cluster node was started on this thread (as `Actor::start` panics outside an
    /// actix system). [`ClusterSystem::start_actor`] is the non-panicking form.
    fn start_distributed(self) -> RemoteAddr<Self> {
        match ClusterSystem::current() {
            Some(system) => system.start_actor(self),
            None => panic!("start_distributed() called on a thread that runs no ClusterSystem"),
        }
    }
}

impl<A: DistributedActor> DistributedActorExt for A {}

impl remote::Endpoint {
    /// A request to the node itself (actor 0), encoded in bincode.
    pub(crate) async fn system_request<T: Serialize>(
        &self,
        message: u32,
        req: T,
        timeout: Duration,
    ) -> Result<u64, RemoteError> {
        self.request::<T, u64>(message, SerializationFormat::Bincode, req, timeout)
            .await
    }
}
