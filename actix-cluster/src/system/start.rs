//! Starting a node: the one place where the layers are wired together.
//!
//! Order matters, and is the same for every node:
//! 1. the transport (bound listener, nothing running yet);
//! 2. the remote layer on top of it: its context, the data plane registered with the
//!    transport, its own system requests;
//! 3. membership (members only): registers its channel and peer events;
//! 4. the registry: its channel, peer events and system requests;
//! 5. the system's own system requests (member tables);
//! 6. registration ends (system table sealed), the builder's local actors start, then the
//!    transport starts on the network arbiter (channel table sealed there), membership takes
//!    its first step;
//! 7. the registry's Raft node starts (storage opens off the caller's arbiter).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use actix_rt::{Arbiter, ArbiterHandle};
use serde::de::DeserializeOwned;
use tokio::sync::oneshot;

use super::virtual_actor::{self, VirtualActor, VirtualHost, VirtualKind};
use super::{ClusterSystem, NetArbiter, Node, StartError, members, spawn};
use crate::config::{ClusterConfig, DiscoveryMethod, NetworkThread, Security};
use crate::membership::core::{Membership, Mode, Settings};
use crate::membership::driver::Driver;
use crate::node::{Architecture, NodeId, NodeInfo, NodeRole, validate_cluster_name};
use crate::placement::Placer;
use crate::registry::{Registry, RegistryContext, RegistryStorage, Replica};
use crate::remote::dispatch::Inbox;
use crate::remote::{self, DistributedActor, LocalActors, NameResolver, RemoteContext, SpawnerFn};
use crate::state::{MemoryStore, RedbStore, StateStore};
use crate::transport::{Transport, TransportConfig};

type SpawnerEntry = (&'static str, SpawnerFn, Vec<String>);

/// An actor [`ClusterSystemBuilder::local_actor`] starts: its local name, and what starts it
/// on the node's home arbiter and gives that name.
type LocalActorEntry = (String, Box<dyn FnOnce(&ClusterSystem, &str)>);

/// Configures a node before it starts. See [`ClusterSystem::new`].
#[must_use = "the node only runs once .start() is awaited"]
pub struct ClusterSystemBuilder {
    cluster: String,
    config: ClusterConfig,
    spawners: Vec<SpawnerEntry>,
    local_actors: Vec<LocalActorEntry>,
    state_store: Option<Arc<dyn StateStore>>,
    virtuals: Vec<(&'static str, VirtualKind, Vec<String>)>,
    activation_limit: Option<usize>,
}

impl std::fmt::Debug for ClusterSystemBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterSystemBuilder")
            .field("cluster", &self.cluster)
            .field("node", &self.config.node_name)
            .finish_non_exhaustive()
    }
}

fn wiring(e: impl std::fmt::Display) -> StartError {
    StartError::Wiring(e.to_string())
}

impl ClusterSystemBuilder {
    pub(super) fn new(cluster: String, config: ClusterConfig) -> Self {
        Self {
            cluster,
            config,
            spawners: Vec::new(),
            local_actors: Vec::new(),
            state_store: None,
            virtuals: Vec::new(),
            activation_limit: None,
        }
    }

    /// Keeps this node's actor state in `store` (see [`ClusterSystem::state_store`]) instead
    /// of the default: a [`RedbStore`](crate::state::RedbStore) in the registry's durable
    /// data directory, or a [`MemoryStore`](crate::state::MemoryStore) when the registry is
    /// ephemeral. For example a shared `RedisStore` (feature `redis`).
    pub fn state_store(mut self, store: impl StateStore) -> Self {
        self.state_store = Some(Arc::new(store));
        self
    }

    /// Lets other nodes spawn actors of type `A` here with
    /// [`ClusterSystem::remote_actor`].
    pub fn register<A: DistributedActor + DeserializeOwned>(mut self) -> Self {
        self.spawners.push(remote::spawner::<A>());
        self
    }

    /// Lets this node host activations of the virtual actor type `A` (see
    /// [`virtual_actor`](crate::virtual_actor)): a node that did not register it is never
    /// chosen for one. Any node may address `A` with [`ClusterSystem::get`].
    pub fn register_virtual<A: VirtualActor>(mut self) -> Self {
        self.virtuals.push(virtual_actor::kind::<A>());
        self
    }

    /// Hosts at most `limit` virtual actor activations (of every type together): to activate
    /// another, the least recently used one is passivated first (its state saved, as when it
    /// goes idle). Without a limit (the default) only idle timeouts passivate.
    pub fn virtual_activation_limit(mut self, limit: usize) -> Self {
        self.activation_limit = Some(limit);
        self
    }

    /// Starts an actor as part of [`start`](Self::start) and gives it the local name `name`,
    /// before the node listens or dials anyone: a node that another node can see always has
    /// it, so [`actor_on`](ClusterSystem::actor_on)`(node, name)` never fails for lack of it.
    /// `make` gets this node's [`ClusterSystem`], which the actor may keep to reach its
    /// node (to send to other nodes' actors, to register cluster-wide names once the
    /// registry has formed). Actors start in the order they were added, on the arbiter that
    /// awaits `start`; a name given twice ends with the later actor.
    ///
    /// ```no_run
    /// # use actix::prelude::*;
    /// # use actix_cluster::prelude::*;
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Serialize, Deserialize)] struct Audit(String);
    /// # impl Message for Audit { type Result = (); }
    /// struct Auditor {
    ///     system: ClusterSystem,
    /// }
    /// impl Actor for Auditor {
    ///     type Context = Context<Self>;
    /// }
    /// impl Handler<Audit> for Auditor {
    ///     type Result = ();
    ///     fn handle(&mut self, _: Audit, _: &mut Context<Self>) {}
    /// }
    /// impl DistributedActor for Auditor {
    ///     const NAME: &'static str = "app.auditor";
    ///     fn messages(m: &mut Messages<Self>) {
    ///         m.handle::<Audit>("audit");
    ///     }
    /// }
    /// # async fn run(config: ClusterConfig) -> Result<(), actix_cluster::StartError> {
    /// let system = ClusterSystem::new("demo", config)
    ///     .local_actor("auditor", |system| Auditor { system: system.clone() })
    ///     .start()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn local_actor<A, F>(mut self, name: impl Into<String>, make: F) -> Self
    where
        A: DistributedActor,
        F: FnOnce(&ClusterSystem) -> A + 'static,
    {
        let start = move |system: &ClusterSystem, name: &str| {
            let addr = system.start_actor(make(system));
            system
                .remote()
                .actors
                .set_name(name.to_owned(), addr.actor_id());
        };
        self.local_actors.push((name.into(), Box::new(start)));
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
        validate_cluster_name(&self.cluster).map_err(|reason| StartError::InvalidClusterName {
            name: self.cluster.clone(),
            reason,
        })?;
        let config = self.config;
        // The state store first: opening the default one blocks (a file, a thread start), so
        // not on the caller's arbiter; a failure leaves nothing else started.
        let state: Arc<dyn StateStore> = match (self.state_store, &config.registry.storage) {
            (Some(store), _) => store,
            (None, RegistryStorage::Durable(dir)) => {
                let dir = dir.clone();
                let opened = tokio::task::spawn_blocking(move || RedbStore::open(dir))
                    .await
                    .map_err(|e| StartError::StateStorage(std::io::Error::other(e.to_string())))?;
                Arc::new(opened.map_err(StartError::StateStorage)?)
            }
            (None, RegistryStorage::Ephemeral) => Arc::new(MemoryStore::new()),
        };

        let mut spawners = HashMap::new();
        let mut capabilities: Vec<String> = Vec::new();
        for (name, spawn, conflicts) in self.spawners {
            if !conflicts.is_empty() {
                return Err(StartError::ConflictingWireNames(conflicts));
            }
            if spawners.insert(name, spawn).is_some() {
                return Err(StartError::DuplicateActorType(name.to_owned()));
            }
            capabilities.push(name.to_owned());
        }
        let mut virtuals = HashMap::new();
        for (name, kind, conflicts) in self.virtuals {
            if !conflicts.is_empty() {
                return Err(StartError::ConflictingWireNames(conflicts));
            }
            if spawners.contains_key(name) || virtuals.insert(name, kind).is_some() {
                return Err(StartError::DuplicateActorType(name.to_owned()));
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
        let bind_error = |source| StartError::Bind {
            addr: config.listen,
            source,
        };
        let listener = std::net::TcpListener::bind(config.listen).map_err(bind_error)?;
        let bound = listener.local_addr().map_err(bind_error)?;
        listener.set_nonblocking(true).map_err(bind_error)?;
        let advertised = config.advertise.unwrap_or(bound);

        let local = NodeInfo {
            id: NodeId::new(config.node_name.as_str(), new_incarnation()),
            addr: advertised,
            role: config.role,
            labels: config.labels.clone(),
        };
        crate::metrics::describe();
        let net = match config.network_thread {
            NetworkThread::Dedicated => NetArbiter::Own(Arbiter::new()),
            NetworkThread::Home => NetArbiter::Home(home.clone()),
        };

        // 1. Transport.
        let transport = Arc::new(Transport::new(
            self.cluster,
            local.clone(),
            TransportConfig {
                limits: config.limits,
                timeouts: config.timeouts,
                seed_nodes: config.seed_nodes.clone(),
            },
            tls,
            net.handle(),
        ));

        // 2. Remote layer. Named addresses read the registry's replica (empty on clients).
        let actors = Arc::new(LocalActors::new(
            config.node_name.clone(),
            home,
            config.limits,
            spawners,
        ));
        actors.watches.set_network(net.handle());
        let replica = Replica::new();
        let remote = RemoteContext::new(
            Arc::clone(&transport),
            Arc::clone(&actors),
            config.timeouts.request,
            config.serialization,
            Arc::clone(&replica) as Arc<dyn NameResolver>,
        );
        transport
            .register_inbound(Arc::new(Inbox(Arc::downgrade(&remote))))
            .map_err(wiring)?;
        remote::system::register(&remote).map_err(wiring)?;

        // 3. Membership.
        let membership = match config.role {
            NodeRole::Client => None,
            _ => Some(start_membership(
                &config,
                &local,
                &transport,
                &net,
                &actors,
                capabilities,
            )?),
        };

        // 4. Registry.
        let registry = Registry::new(
            config.registry.clone(),
            RegistryContext {
                remote: Arc::clone(&remote),
                membership: membership.clone(),
                architecture: config.architecture,
                seeds: config.seed_nodes.clone(),
                masters: config.master_nodes.len(),
            },
            replica,
        );
        registry.register().map_err(wiring)?;

        // 5. The system's own requests.
        members::register(&remote, membership.as_ref()).map_err(wiring)?;
        let placer = Arc::new(std::sync::Mutex::new(Placer::new(rand::random())));
        spawn::register(&remote, membership.as_ref(), &placer).map_err(wiring)?;
        let virtuals = VirtualHost::new(
            virtuals,
            self.activation_limit,
            &remote,
            &registry,
            Arc::clone(&state),
        );
        virtuals.register(&remote).map_err(wiring)?;

        // 6. Registration ends; the builder's local actors start (on this, the home arbiter)
        // before anyone can see this node; then the network side starts.
        remote.system.seal();
        let node = Arc::new(Node {
            remote,
            membership,
            registry,
            config,
            net,
            placer,
            state,
            virtuals,
        });
        node.virtuals.bind(&node);
        let host = Arc::downgrade(&node.virtuals);
        node.registry.on_fence(Box::new(move |lost| {
            if let Some(host) = host.upgrade() {
                host.fence(lost);
            }
        }));
        let host = Arc::downgrade(&node.virtuals);
        node.registry
            .on_reminder(Box::new(move |actor_type, id, name| {
                if let Some(host) = host.upgrade() {
                    host.fire(actor_type, id, name);
                }
            }));
        let owner: std::sync::Weak<Node> = Arc::downgrade(&node);
        let owner: std::sync::Weak<dyn std::any::Any + Send + Sync> = owner;
        let _ = node.remote.owner.set(owner);
        let system = ClusterSystem {
            node: Arc::clone(&node),
        };
        for (name, start) in self.local_actors {
            start(&system, &name);
        }
        let (tx, rx) = oneshot::channel();
        let for_net = Arc::clone(&node);
        let spawned = node.net.handle().spawn_fn(move || {
            let result = tokio::net::TcpListener::from_std(listener)
                .map(|l| for_net.remote.transport.start(l));
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

        // 7. The registry's Raft node (members only). Opening storage blocks (files, a thread
        // start): not on the caller's arbiter.
        if node.config.role != NodeRole::Client {
            let registry = Arc::clone(&node.registry);
            let started = tokio::task::spawn_blocking(move || registry.start_raft())
                .await
                .map_err(|e| StartError::RegistryStorage(std::io::Error::other(e.to_string())));
            if let Err(e) = started.and_then(|r| r.map_err(StartError::RegistryStorage)) {
                node.remote.stop();
                node.remote.transport.shutdown();
                return Err(e);
            }
        }
        tracing::info!(node = %node.remote.local.id, addr = %node.remote.local.addr, tls = node.config.is_tls(), "cluster node started");
        Ok(system)
    }
}

/// The membership driver of a member node, registered with the transport. Watches on a
/// member's actors fire when it goes Down or Left.
fn start_membership(
    config: &ClusterConfig,
    local: &NodeInfo,
    transport: &Arc<Transport>,
    net: &NetArbiter,
    actors: &Arc<LocalActors>,
    capabilities: Vec<String>,
) -> Result<Arc<Driver>, StartError> {
    let settings = Settings {
        mode: match (config.architecture, config.discovery) {
            (Architecture::Centralized, _) => Mode::Centralized,
            (_, DiscoveryMethod::Static) => Mode::Static,
            _ => Mode::Gossip,
        },
        seeds: config.seed_nodes.clone(),
        masters: config.master_nodes.clone(),
        detector: config.failure_detector,
        timing: config.membership,
        capabilities,
    };
    let seed = local.id.incarnation() ^ rand::random::<u64>();
    let core = Membership::new(local.clone(), settings, seed, Instant::now());
    // Weak: the driver must not keep the actor table alive.
    let counted = Arc::downgrade(actors);
    let load = crate::membership::load_source(move || {
        counted
            .upgrade()
            .map_or((0, 0), |a| (a.len() as u64, a.requests_in_flight()))
    });
    let driver = Driver::new(core, transport, net.handle(), load).map_err(wiring)?;
    let watched = Arc::downgrade(actors);
    driver.on_down(Box::new(move |id, left| {
        if let Some(actors) = watched.upgrade() {
            actors.watches.node_down(id, left);
        }
    }));
    Ok(driver)
}

/// Millisecond start time in the high bits, random low bits: a restart gets a larger
/// incarnation than the process it replaces (clocks permitting), and two processes started in
/// the same millisecond still differ.
fn new_incarnation() -> u64 {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    (millis << 20) | (rand::random::<u64>() & 0xf_ffff)
}
