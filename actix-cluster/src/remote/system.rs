//! Requests and tells to actor 0, the node itself: one table of handlers that the layers
//! register into (remote: spawn, resolve, watch; system: members; registry: its requests).
//!
//! A handler is registered under a message id before the node starts, with a typed request
//! and reply; the table decodes, runs it and encodes the answer (bincode). A second handler
//! for an id, or a registration after the start, is a typed error. An id nobody registered is
//! answered with [`RemoteError::UnknownMessageType`] for actor type `node`, which is also what a
//! node of an older version answers.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures::future::LocalBoxFuture;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use super::context::RemoteContext;
use super::error::RemoteError;
use super::send::Endpoint;
use super::watch::WatchMsg;
use crate::codec::{self, SerializationFormat};
use crate::node::NodeId;
use crate::registrations::Registrations;
use crate::transport::Peer;

/// Actor id of the node itself.
pub(crate) const SYSTEM_ACTOR: u64 = 0;

/// The actor type named in errors about system requests.
pub(crate) const SYSTEM_ACTOR_TYPE: &str = "node";

/// Message ids of system requests, as registered by each layer. Listed together so that ids
/// are never reused; `docs/protocol.md` describes each body.
pub(crate) mod id {
    /// Start a shipped actor here (remote).
    pub(crate) const SPAWN: u32 = 1;
    /// Find a local actor by its node-local name (remote).
    pub(crate) const RESOLVE: u32 = 2;
    /// The answering node's member table (system).
    pub(crate) const MEMBERS: u32 = 3;
    /// Watch a local actor of the answering node (remote, request).
    pub(crate) const WATCH: u32 = 4;
    /// Withdraw a watch (remote, tell).
    pub(crate) const UNWATCH: u32 = 5;
    /// A watched actor stopped (remote, tell from the node hosting it).
    pub(crate) const TERMINATED: u32 = 6;
    /// A registry request: writes forwarded to the leader, reads for client nodes, Raft ids
    /// (registry).
    pub(crate) const REGISTRY: u32 = 7;
    /// A placement decision the acting master makes for a spawner (system).
    pub(crate) const PLACE: u32 = 8;
    /// The name this node declares for a message id of an actor type, asked by a node that
    /// received the message and does not declare it (remote).
    pub(crate) const MESSAGE_NAME: u32 = 9;
    /// Activate a virtual actor's identity here, fenced by the caller's claim (system).
    pub(crate) const VIRTUAL_ACTIVATE: u32 = 10;
    /// Passivate a virtual actor's activation hosted here (system).
    pub(crate) const VIRTUAL_PASSIVATE: u32 = 11;
    /// Find (or make) a virtual actor's activation for a client node, which cannot claim
    /// names (system).
    pub(crate) const VIRTUAL_RESOLVE: u32 = 12;
    /// Deliver a virtual actor's reminder (system).
    pub(crate) const VIRTUAL_REMIND: u32 = 13;
}

/// What a system request handler returns: the encoded reply, produced on the network thread.
pub(crate) type SystemReply = LocalBoxFuture<'static, Result<Vec<u8>, RemoteError>>;

type RequestFn = Box<dyn Fn(&Arc<Peer>, &[u8]) -> Result<SystemReply, RemoteError> + Send + Sync>;
type TellFn = Box<dyn Fn(&Arc<Peer>, &[u8]) -> Result<(), RemoteError> + Send + Sync>;

enum Handler {
    Request(RequestFn),
    Tell(TellFn),
}

/// Why a system handler was not registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SystemRequestError {
    #[error("system message {0} already has a handler")]
    Duplicate(u32),
    #[error("system handlers are registered before the node starts")]
    Sealed,
}

/// The actor-0 handler table of one node.
pub(crate) struct SystemRequests {
    table: Registrations<HashMap<u32, Handler>>,
}

impl std::fmt::Debug for SystemRequests {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<u32> = self
            .table
            .get()
            .map_or_else(Vec::new, |t| t.keys().copied().collect());
        f.debug_struct("SystemRequests").field("ids", &ids).finish()
    }
}

fn decode<Req: DeserializeOwned>(bytes: &[u8]) -> Result<Req, RemoteError> {
    codec::decode(SerializationFormat::Bincode, bytes).map_err(|e| RemoteError::from_codec(e, true))
}

impl SystemRequests {
    pub(crate) fn new() -> Self {
        Self {
            table: Registrations::new(),
        }
    }

    fn insert(&self, id: u32, handler: Handler) -> Result<(), SystemRequestError> {
        self.table
            .register(|table| {
                if table.contains_key(&id) {
                    return Err(SystemRequestError::Duplicate(id));
                }
                table.insert(id, handler);
                Ok(())
            })
            .unwrap_or(Err(SystemRequestError::Sealed))
    }

    /// Registers the handler of request `id`: `f` gets the asking peer and the decoded
    /// request and answers with a reply (or the error the caller gets).
    pub(crate) fn request<Req, Resp, F, Fut>(&self, id: u32, f: F) -> Result<(), SystemRequestError>
    where
        Req: DeserializeOwned,
        Resp: Serialize,
        F: Fn(&Arc<Peer>, Req) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Resp, RemoteError>> + 'static,
    {
        let run: RequestFn = Box::new(move |peer, bytes| {
            let reply = f(peer, decode::<Req>(bytes)?);
            Ok(Box::pin(async move {
                let resp = reply.await?;
                codec::encode(SerializationFormat::Bincode, &resp)
                    .map_err(|e| RemoteError::from_reply_codec(e, false))
            }))
        });
        self.insert(id, Handler::Request(run))
    }

    /// Registers the handler of tell `id`.
    pub(crate) fn tell<Req, F>(&self, id: u32, f: F) -> Result<(), SystemRequestError>
    where
        Req: DeserializeOwned,
        F: Fn(&Arc<Peer>, Req) -> Result<(), RemoteError> + Send + Sync + 'static,
    {
        let run: TellFn = Box::new(move |peer, bytes| f(peer, decode::<Req>(bytes)?));
        self.insert(id, Handler::Tell(run))
    }

    /// Ends registration; called once when the node starts.
    pub(crate) fn seal(&self) {
        self.table.seal();
    }

    fn unknown(id: u32) -> RemoteError {
        RemoteError::UnknownMessageType {
            actor_type: SYSTEM_ACTOR_TYPE.into(),
            message: format!("#{id:08x}"),
            rust_type: None,
            node: None,
        }
    }

    /// Runs the handler of request `id` from `peer`.
    pub(crate) fn handle_request(
        &self,
        peer: &Arc<Peer>,
        id: u32,
        body: &[u8],
    ) -> Result<SystemReply, RemoteError> {
        match self.table.get().and_then(|t| t.get(&id)) {
            Some(Handler::Request(run)) => run(peer, body),
            _ => Err(Self::unknown(id)),
        }
    }

    /// Runs the handler of tell `id` from `peer`.
    pub(crate) fn handle_tell(
        &self,
        peer: &Arc<Peer>,
        id: u32,
        body: &[u8],
    ) -> Result<(), RemoteError> {
        match self.table.get().and_then(|t| t.get(&id)) {
            Some(Handler::Tell(run)) => run(peer, body),
            _ => Err(Self::unknown(id)),
        }
    }
}

/// Asks node `node` (reached at `addr`) the system request `id`, waiting at most `timeout`.
pub(crate) async fn ask<Req: Serialize, Resp: DeserializeOwned>(
    ctx: &Arc<RemoteContext>,
    node: NodeId,
    addr: SocketAddr,
    id: u32,
    req: Req,
    timeout: Duration,
) -> Result<Resp, RemoteError> {
    let ep = Endpoint::new(node, addr, SYSTEM_ACTOR, Some(Arc::clone(ctx)));
    ep.request(id, SerializationFormat::Bincode, req, timeout)
        .await
}

/// Body of [`id::SPAWN`]: an actor's type and its serialized state.
#[derive(Serialize, Deserialize)]
pub(crate) struct SpawnRequest {
    pub(crate) actor_type: String,
    pub(crate) format: SerializationFormat,
    pub(crate) state: Vec<u8>,
}

/// Body of [`id::MESSAGE_NAME`]; answered with `Option<(wire name, Rust type)>`.
#[derive(Serialize, Deserialize)]
pub(crate) struct MessageNameRequest {
    pub(crate) actor_type: String,
    pub(crate) message: u32,
}

/// Body of [`id::RESOLVE`]: a node-local name and the type the caller expects there.
#[derive(Serialize, Deserialize)]
pub(crate) struct ResolveRequest {
    pub(crate) name: String,
    pub(crate) actor_type: String,
}

/// Registers the remote layer's own system handlers: spawn, resolve and the watch protocol.
/// They hold the context weakly: the table lives inside it.
pub(crate) fn register(ctx: &Arc<RemoteContext>) -> Result<(), SystemRequestError> {
    let weak = Arc::downgrade(ctx);
    let node = |w: &Weak<RemoteContext>| w.upgrade().ok_or(RemoteError::SystemStopped);

    let w = weak.clone();
    ctx.system.request(id::SPAWN, move |_, req: SpawnRequest| {
        let started = node(&w).and_then(|ctx| {
            let spawn = ctx.actors.spawner(&req.actor_type).ok_or_else(|| {
                RemoteError::ActorTypeNotRegistered {
                    node: ctx.actors.node().to_owned(),
                    actor_type: req.actor_type.clone(),
                }
            })?;
            let (tx, rx) = oneshot::channel();
            spawn(&ctx, req.format, Bytes::from(req.state), tx);
            Ok(rx)
        });
        async move {
            let rx = started?;
            rx.await.map_err(|_| RemoteError::SystemStopped)?
        }
    })?;

    let w = weak.clone();
    ctx.system
        .request(id::RESOLVE, move |_, req: ResolveRequest| {
            let id = node(&w).and_then(|ctx| {
                ctx.actors
                    .resolve(ctx.actors.node(), &req.name, &req.actor_type)
            });
            async move { id }
        })?;

    let w = weak.clone();
    ctx.system
        .request(id::MESSAGE_NAME, move |_, req: MessageNameRequest| {
            let name = node(&w).map(|ctx| ctx.actors.message_name(&req.actor_type, req.message));
            async move { name }
        })?;

    let w = weak.clone();
    ctx.system.request(id::WATCH, move |peer, req: WatchMsg| {
        let reply = node(&w).and_then(|ctx| ctx.actors.watch_request(peer, req));
        async move { reply }
    })?;

    let w = weak.clone();
    ctx.system.tell(id::UNWATCH, move |peer, m: WatchMsg| {
        node(&w)?.actors.unwatch_tell(peer, m);
        Ok(())
    })?;

    let w = weak;
    ctx.system.tell(id::TERMINATED, move |peer, m: WatchMsg| {
        node(&w)?.actors.terminated_tell(peer, m);
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_has_one_handler_and_registration_ends_at_the_seal() {
        let t = SystemRequests::new();
        assert!(t.tell::<u8, _>(5, |_, _| Ok(())).is_ok());
        assert_eq!(
            t.tell::<u8, _>(5, |_, _| Ok(())),
            Err(SystemRequestError::Duplicate(5))
        );
        t.seal();
        assert_eq!(
            t.request::<u8, u8, _, _>(6, |_, x| async move { Ok(x) }),
            Err(SystemRequestError::Sealed)
        );
    }
}
