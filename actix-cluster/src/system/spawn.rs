//! Spawning by placement strategy: [`ClusterSystem::spawn`], single activation for named
//! spawns, and the acting master's placement decisions in a centralized cluster.
//!
//! A decision is made by [`Placer::choose`] over the member table. In a centralized cluster
//! the registry leader (the acting master) makes the decisions that depend on a shared
//! position or on load, `RoundRobin` and `LeastLoaded`, so that many spawners spread as one
//! would; every other strategy is decided where the spawn is called (`Local` and `Node` say
//! it all, `Random` needs no shared state, `ConsistentHash` gives the same owner everywhere).

use std::sync::{Arc, Mutex, PoisonError, Weak};

use serde::{Deserialize, Serialize};

use super::ClusterSystem;
use super::members::members;
use super::registry::Created;
use crate::codec::SerializationFormat;
use crate::membership::driver::Driver;
use crate::metrics;
use crate::node::{Architecture, NodeId};
use crate::placement::{
    Constraint, Input, Placement, PlacementError, PlacementRecord, Placer, PolicyRecord,
    RestartPolicy, SpawnSpec,
};
use crate::registry::RegistryError;
use crate::registry::state::Supervision;
use crate::remote::system::{self as sys, SystemRequestError};
use crate::remote::{DistributedActor, RemoteAddr, RemoteContext, RemoteError};

/// Why [`ClusterSystem::spawn`] started no actor.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpawnError {
    /// No member could host it (nothing was started).
    #[error("placement: {0}")]
    Placement(#[from] PlacementError),
    /// The chosen node did not start it, or the acting master did not answer a placement
    /// request. [`RemoteError::is_not_delivered`] tells whether the node may have started it.
    #[error("spawn: {0}")]
    Remote(#[from] RemoteError),
    /// A named spawn: the registry could not claim or bind the name. The error says whether
    /// the binding may still commit (see [`RegistryError`]).
    #[error("spawn: {0}")]
    Registry(#[from] RegistryError),
    /// A [`RestartPolicy`] other than `Never` without a [name](SpawnSpec::name): a restarted
    /// actor is found again through its name. Nothing was started.
    #[error("a restart policy needs a name (SpawnSpec::name)")]
    RestartNeedsName,
}

impl ClusterSystem {
    /// Starts an actor of type `A` on the member its placement strategy chooses and returns
    /// its address.
    ///
    /// The strategy and the constraint come from `spec`, else from the actor type
    /// ([`DistributedActor::placement`], [`DistributedActor::placement_constraint`]). Another
    /// node hosts the actor only if it registered `A`
    /// ([`ClusterSystemBuilder::register`](crate::ClusterSystemBuilder::register)): every
    /// strategy but `Local` and `Node` (this node) requires that capability. `make` builds
    /// the actor for the chosen node; it is serialized and shipped there, as
    /// [`remote_actor`](Self::remote_actor) does.
    ///
    /// With a [name](SpawnSpec::name) the spawn is a **single activation**: whatever the
    /// number of concurrent spawners, one actor exists for the name cluster-wide; a spawner
    /// that finds it registered (or being created) gets the existing actor and `make` is not
    /// called. The address returned then follows the name. A named spawn needs a member node
    /// (client nodes cannot hold the claim).
    ///
    /// In a centralized cluster, `RoundRobin` and `LeastLoaded` decisions are made by the
    /// registry leader (the acting master) for every spawner.
    ///
    /// ```no_run
    /// # use actix::prelude::*;
    /// # use actix_cluster::prelude::*;
    /// # use actix_cluster::placement::{Placement, SpawnSpec};
    /// # #[derive(serde::Serialize, serde::Deserialize)] struct Cart { items: Vec<String> }
    /// # impl Actor for Cart { type Context = Context<Self>; }
    /// # impl DistributedActor for Cart { const NAME: &'static str = "shop.cart"; fn messages(_: &mut Messages<Self>) {} }
    /// # async fn f(system: ClusterSystem) -> Result<(), actix_cluster::SpawnError> {
    /// let cart: RemoteAddr<Cart> = system
    ///     .spawn(
    ///         SpawnSpec::new().placement(Placement::LeastLoaded).name("carts/42"),
    ///         |_node| Cart { items: Vec::new() },
    ///     )
    ///     .await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// - [`SpawnError::Placement`]: no member is Up, within the constraint and able to host
    ///   `A` (or the named node is not), or `ConsistentHash` without a key or name;
    /// - [`SpawnError::Remote`]: the chosen node did not start the actor (gone, timeout, `A`
    ///   not registered there), or the acting master did not answer;
    /// - [`SpawnError::Registry`]: a named spawn whose name could not be claimed or bound.
    pub async fn spawn<A>(
        &self,
        spec: SpawnSpec,
        make: impl FnOnce(&NodeId) -> A,
    ) -> Result<RemoteAddr<A>, SpawnError>
    where
        A: DistributedActor + Serialize,
    {
        let strategy = spec.placement.clone().unwrap_or_else(A::placement);
        let mut constraint = spec
            .constraint
            .clone()
            .unwrap_or_else(A::placement_constraint);
        let supervised = spec.restart != RestartPolicy::Never;
        let here = match &strategy {
            Placement::Local => true,
            Placement::Node(node) => node == self.node_id().name(),
            _ => false,
        };
        // Another node starts it through its spawner for `A`; so does any node that restarts
        // a supervised actor, this one included.
        if (supervised || !here) && !constraint.capabilities.iter().any(|c| c == A::NAME) {
            constraint.capabilities.push(A::NAME.to_owned());
        }
        let key = spec.key_bytes();
        let Some(name) = spec.name.as_deref() else {
            if supervised {
                return Err(SpawnError::RestartNeedsName);
            }
            let node = self.place(&strategy, &constraint, key).await?;
            return Ok(self.spawn_on(&strategy, &node, make).await?.0);
        };
        let created = self
            .name_or_create(name, |_claim| async {
                let node = self.place(&strategy, &constraint, key).await?;
                let (addr, state) = self.spawn_on(&strategy, &node, make).await?;
                let supervision = supervised.then(|| Supervision {
                    actor_type: A::NAME.to_owned(),
                    format: state.0,
                    state: state.1,
                    placement: PlacementRecord::new(
                        &strategy,
                        &constraint,
                        key,
                        self.node_id().name(),
                    ),
                    policy: PolicyRecord::from(spec.restart),
                    restarts: Vec::new(),
                    last_node: None,
                    exhausted: false,
                    rebalance: A::rebalance() && strategy == Placement::ConsistentHash,
                });
                Ok::<_, SpawnError>((addr, supervision))
            })
            .await;
        match created {
            Ok((_, Some(entry))) => {
                if supervised {
                    self.node.registry.tell_hosted(&entry).await;
                }
                Ok(self.addr_for(&entry)?)
            }
            Ok((addr, None)) => Ok(addr),
            Err(Created::Registry(e)) => Err(e.into()),
            Err(Created::Make(e)) => Err(e),
        }
    }

    /// The member `strategy` picks: decided here, or by the acting master (see the module).
    pub(super) async fn place(
        &self,
        strategy: &Placement,
        constraint: &Constraint,
        key: Option<&[u8]>,
    ) -> Result<NodeId, SpawnError> {
        let leader_decides = self.node.config.architecture() == Architecture::Centralized
            && matches!(strategy, Placement::RoundRobin | Placement::LeastLoaded);
        if leader_decides {
            let leader = self.registry_status().await?.leader.ok_or_else(|| {
                RegistryError::Unavailable(
                    "no registry leader (acting master) to decide the placement".into(),
                )
            })?;
            if leader != self.node_id().name() {
                let req = PlaceRequest::new(strategy, constraint);
                let (peer, addr) = self.peer_of(&leader)?;
                let remote = self.remote();
                let reply: PlaceReply = sys::ask(
                    remote,
                    peer,
                    addr,
                    sys::id::PLACE,
                    req,
                    remote.request_timeout,
                )
                .await?;
                return Ok(reply.into_result()?);
            }
        }
        Ok(decide(
            &self.node.placer,
            &self.members(),
            self.node_id().name(),
            strategy,
            constraint,
            key,
        )?)
    }

    /// Starts the actor `make` builds on `node` (here, or shipped); returns its address and
    /// its serialized state (what a restart starts from).
    async fn spawn_on<A>(
        &self,
        strategy: &Placement,
        node: &NodeId,
        make: impl FnOnce(&NodeId) -> A,
    ) -> Result<(RemoteAddr<A>, (SerializationFormat, Vec<u8>)), SpawnError>
    where
        A: DistributedActor + Serialize,
    {
        let actor = make(node);
        let (format, state) = self.encode_actor(&actor)?;
        let remote = node != self.node_id();
        let addr = if remote {
            let (peer, addr) = self.peer_of(node.name())?;
            if &peer != node {
                return Err(RemoteError::NodeGone { node: node.clone() }.into());
            }
            self.ship(peer, addr, format, state.clone()).await?
        } else {
            self.start_actor(actor)
        };
        metrics::actor_spawned(strategy.label(), remote);
        tracing::debug!(actor_type = A::NAME, node = %node, placement = strategy.label(), "spawned");
        Ok((addr, (format, state)))
    }
}

/// One decision on this node's placer.
fn decide(
    placer: &Mutex<Placer>,
    members: &[crate::membership::Member],
    me: &str,
    strategy: &Placement,
    constraint: &Constraint,
    key: Option<&[u8]>,
) -> Result<NodeId, PlacementError> {
    let input = Input {
        members,
        me,
        constraint,
        key,
    };
    placer
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .choose(strategy, &input)
}

/// Body of [`sys::id::PLACE`]: a `RoundRobin` or `LeastLoaded` decision the acting master
/// makes for a spawner.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct PlaceRequest {
    placement: PlacementRecord,
}

impl PlaceRequest {
    fn new(strategy: &Placement, constraint: &Constraint) -> Self {
        Self {
            placement: PlacementRecord::new(strategy, constraint, None, ""),
        }
    }

    fn decode(&self) -> Result<(Placement, Constraint), RemoteError> {
        match self.placement.decode() {
            Ok((s @ (Placement::RoundRobin | Placement::LeastLoaded), c, _)) => Ok((s, c)),
            Ok((s, ..)) => Err(RemoteError::HandlerFailed(format!(
                "the acting master decides RoundRobin and LeastLoaded only, not {s:?}"
            ))),
            Err(e) => Err(RemoteError::HandlerFailed(e)),
        }
    }
}

/// The acting master's answer to a [`PlaceRequest`].
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum PlaceReply {
    Chosen { name: String, incarnation: u64 },
    NoEligibleMember { members: u64 },
    NotEligible { node: String, reason: String },
}

impl PlaceReply {
    fn from_result(r: Result<NodeId, PlacementError>) -> Self {
        match r {
            Ok(id) => PlaceReply::Chosen {
                name: id.name().to_owned(),
                incarnation: id.incarnation(),
            },
            Err(PlacementError::NotEligible { node, reason }) => {
                PlaceReply::NotEligible { node, reason }
            }
            Err(PlacementError::NoEligibleMember { members }) => PlaceReply::NoEligibleMember {
                members: members as u64,
            },
            // Only RoundRobin and LeastLoaded are asked for: neither needs a key.
            Err(PlacementError::KeyRequired) => PlaceReply::NoEligibleMember { members: 0 },
        }
    }

    fn into_result(self) -> Result<NodeId, PlacementError> {
        match self {
            PlaceReply::Chosen { name, incarnation } => Ok(NodeId::new(name, incarnation)),
            PlaceReply::NoEligibleMember { members } => Err(PlacementError::NoEligibleMember {
                members: usize::try_from(members).unwrap_or(usize::MAX),
            }),
            PlaceReply::NotEligible { node, reason } => {
                Err(PlacementError::NotEligible { node, reason })
            }
        }
    }
}

/// Answers other nodes' [`PlaceRequest`]s with this node's placer and member table (asked
/// of the registry leader). Holds the node weakly: the request table lives inside it.
pub(super) fn register(
    remote: &Arc<RemoteContext>,
    membership: Option<&Arc<Driver>>,
    placer: &Arc<Mutex<Placer>>,
) -> Result<(), SystemRequestError> {
    let ctx: Weak<RemoteContext> = Arc::downgrade(remote);
    let driver: Option<Weak<Driver>> = membership.map(Arc::downgrade);
    let placer = Arc::clone(placer);
    remote
        .system
        .request(sys::id::PLACE, move |_, req: PlaceRequest| {
            let answer = match ctx.upgrade() {
                Some(ctx) => req.decode().map(|(strategy, constraint)| {
                    let driver = driver.as_ref().and_then(Weak::upgrade);
                    let members = members(&ctx, driver.as_deref());
                    PlaceReply::from_result(decide(
                        &placer,
                        &members,
                        ctx.local.id.name(),
                        &strategy,
                        &constraint,
                        None,
                    ))
                }),
                None => Err(RemoteError::SystemStopped),
            };
            async move { answer }
        })
}
