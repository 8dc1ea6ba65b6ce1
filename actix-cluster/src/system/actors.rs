//! Local and remote actors: starting, exposing, finding, spawning on other nodes, watching.

use std::future::Future;
use std::net::SocketAddr;

use actix::prelude::*;
use serde::Serialize;

use super::ClusterSystem;
use super::spawn::SpawnError;
use crate::codec::{self, SerializationFormat};
use crate::node::NodeId;
use crate::placement::SpawnSpec;
use crate::remote::system::{self as sys, ResolveRequest, SpawnRequest};
use crate::remote::{
    self, DistributedActor, RemoteAddr, RemoteError, Terminated, WatchError, WatchId,
};

impl ClusterSystem {
    /// Starts `actor` on the current arbiter and makes it reachable from the cluster.
    ///
    /// Must run on an actix arbiter thread, like `Actor::start`.
    pub fn start_actor<A: DistributedActor>(&self, actor: A) -> RemoteAddr<A> {
        let (id, addr) = self.remote().actors.start(actor);
        RemoteAddr::local(self.remote(), id, addr)
    }

    /// Makes an actor that was started the actix way reachable from the cluster. It keeps
    /// actix's mailbox capacity (16 unless it set another).
    pub fn expose<A: DistributedActor>(&self, addr: Addr<A>) -> RemoteAddr<A> {
        let id = self.remote().actors.insert(addr.clone());
        RemoteAddr::local(self.remote(), id, addr)
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
        self.remote().actors.set_name(name.into(), addr.actor_id());
        Ok(())
    }

    /// The actor registered as `name` on node `node`, checked to be an `A`.
    pub async fn actor_on<A: DistributedActor>(
        &self,
        node: &str,
        name: &str,
    ) -> Result<RemoteAddr<A>, RemoteError> {
        if node == self.node_id().name() {
            let id = self.remote().actors.resolve(node, name, A::NAME)?;
            let addr =
                self.remote()
                    .actors
                    .addr_of::<A>(id)
                    .ok_or_else(|| RemoteError::UnknownActor {
                        node: node.to_owned(),
                        actor: name.to_owned(),
                    })?;
            return Ok(RemoteAddr::local(self.remote(), id, addr));
        }
        let req = ResolveRequest {
            name: name.to_owned(),
            actor_type: A::NAME.to_owned(),
        };
        let (peer_id, peer_addr, id) = self.ask_node(node, sys::id::RESOLVE, req).await?;
        Ok(RemoteAddr::remote(self.remote(), peer_id, peer_addr, id))
    }

    /// Builds an actor here with `make`, ships its serialized state to `node` and starts it
    /// there. `node` must have registered `A` ([`ClusterSystemBuilder::register`](crate::ClusterSystemBuilder::register)).
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
        let (peer, addr) = self.peer_of(node)?;
        let (format, state) = self.encode_actor(&make(&peer))?;
        self.ship::<A>(peer, addr, format, state).await
    }

    /// `actor` serialized for shipping: the format its type asks for (else the node's).
    pub(super) fn encode_actor<A>(
        &self,
        actor: &A,
    ) -> Result<(SerializationFormat, Vec<u8>), RemoteError>
    where
        A: DistributedActor + Serialize,
    {
        let format = A::serialization_format().unwrap_or(self.remote().default_format);
        let state = codec::encode(format, actor).map_err(|e| RemoteError::from_codec(e, false))?;
        Ok((format, state))
    }

    /// Starts the shipped `state` of an `A` on incarnation `peer` (at `addr`).
    pub(super) async fn ship<A: DistributedActor>(
        &self,
        peer: NodeId,
        addr: SocketAddr,
        format: SerializationFormat,
        state: Vec<u8>,
    ) -> Result<RemoteAddr<A>, RemoteError> {
        let req = SpawnRequest {
            actor_type: A::NAME.to_owned(),
            format,
            state,
        };
        let remote = self.remote();
        let id: u64 = sys::ask(
            remote,
            peer.clone(),
            addr,
            sys::id::SPAWN,
            req,
            remote.request_timeout,
        )
        .await?;
        Ok(RemoteAddr::remote(remote, peer, addr, id))
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
            self.remote(),
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
        remote::watch::unwatch(self.remote(), watch)
    }

    /// Asks the current incarnation of `node` a system request answered with an actor id;
    /// returns that incarnation, its address and the id.
    async fn ask_node<T: Serialize>(
        &self,
        node: &str,
        id: u32,
        req: T,
    ) -> Result<(NodeId, SocketAddr, u64), RemoteError> {
        let (peer_id, peer_addr) = self.peer_of(node)?;
        let remote = self.remote();
        let actor: u64 = sys::ask(
            remote,
            peer_id.clone(),
            peer_addr,
            id,
            req,
            remote.request_timeout,
        )
        .await?;
        Ok((peer_id, peer_addr, actor))
    }

    /// The current incarnation of `node` and its address.
    pub(super) fn peer_of(&self, node: &str) -> Result<(NodeId, SocketAddr), RemoteError> {
        let peer = self
            .remote()
            .transport
            .peer_by_name(node)
            .ok_or_else(|| RemoteError::UnknownNode(node.to_owned()))?;
        Ok((peer.id.clone(), peer.addr()))
    }
}

/// `start_distributed(&system)` for every [`DistributedActor`], the actix-style spelling of
/// [`ClusterSystem::start_actor`].
///
/// The node is passed explicitly: a process may run several nodes (even on one thread), and
/// nothing in this crate guesses which one an actor belongs to.
pub trait DistributedActorExt: DistributedActor + Sized {
    /// Starts the actor on the current arbiter and makes it reachable from the cluster
    /// through `system`, like `Actor::start` does for actix.
    fn start_distributed(self, system: &ClusterSystem) -> RemoteAddr<Self> {
        system.start_actor(self)
    }

    /// Starts the actor on the member its type's [`placement`](DistributedActor::placement)
    /// chooses (shipping it there when that is another node): [`ClusterSystem::spawn`] with
    /// an empty [`SpawnSpec`]. Unlike `start_distributed`, which always starts here and at
    /// once, this is a future, because a placement may need the acting master's decision
    /// and another node's answer.
    fn spawn_distributed(
        self,
        system: &ClusterSystem,
    ) -> impl Future<Output = Result<RemoteAddr<Self>, SpawnError>>
    where
        Self: Serialize,
    {
        system.spawn(SpawnSpec::new(), move |_| self)
    }
}

impl<A: DistributedActor> DistributedActorExt for A {}
