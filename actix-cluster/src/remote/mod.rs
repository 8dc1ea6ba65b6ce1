//! Remote actors: the [`DistributedActor`] trait, the per-type message tables, and delivery of
//! frames that arrive from the network to local actix actors.
//!
//! A message type is identified on the wire by a 32-bit hash of the stable name the actor's
//! [`DistributedActor::messages`] gives it (never `std::any::type_name`, which changes between
//! builds). Names only need to be unique per actor type; a clash is reported when the type is
//! registered.

mod addr;
pub(crate) mod watch;

use std::any::{Any, TypeId};
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use actix::dev::{MessageResponse, ToEnvelope};
use actix::prelude::*;
use actix_rt::ArbiterHandle;
use bytes::Bytes;
use futures::future::LocalBoxFuture;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, oneshot};

pub(crate) use addr::Endpoint;
pub use addr::{RemoteAddr, RemoteRecipient, SendRequest};
pub use watch::{
    MAX_WATCHES_PER_NODE, Terminated, TerminatedReason, WatchError, WatchId, WatchedActor,
};

use crate::codec::{self, SerializationFormat};
use crate::limits::Limits;
use crate::error::RemoteError;
use crate::node::NodeId;
use crate::transport::{ConnectionDispatch, Inbound, Peer};
use crate::wire::{self, Frame, Payload};

/// An actix actor that can be addressed from other nodes.
///
/// Existing actors keep `type Context = Context<Self>` and their `Handler` impls; this trait
/// adds a stable type name and the list of messages that may arrive over the network, one
/// line per message:
///
/// ```
/// use actix::prelude::*;
/// use actix_cluster::prelude::*;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct Counter { n: u64 }
/// impl Actor for Counter { type Context = Context<Self>; }
///
/// #[derive(Message, Serialize, Deserialize)]
/// #[rtype(result = "u64")]
/// struct Add(u64);
/// impl Handler<Add> for Counter {
///     type Result = u64;
///     fn handle(&mut self, m: Add, _: &mut Context<Self>) -> u64 { self.n += m.0; self.n }
/// }
///
/// impl DistributedActor for Counter {
///     const NAME: &'static str = "example.counter";
///     fn messages(m: &mut Messages<Self>) {
///         m.handle::<Add>("add");
///     }
/// }
/// ```
pub trait DistributedActor: Actor<Context = Context<Self>> {
    /// Stable, cluster-wide name of this actor type, used to check addresses and to spawn it
    /// on other nodes. Changing it is a wire-protocol change for this type.
    const NAME: &'static str;

    /// Declares the messages other nodes may send, each under a stable name.
    fn messages(messages: &mut Messages<Self>);

    /// Format for messages to this actor type; `None` uses the node's configured default.
    fn serialization_format() -> Option<SerializationFormat> {
        None
    }
}

/// A message that can cross the network: serde both ways for it and its reply.
///
/// Implemented automatically; it only names the bounds.
pub trait RemoteMessage:
    Message<Result: Serialize + DeserializeOwned + Send + 'static>
    + Serialize
    + DeserializeOwned
    + Send
    + 'static
{
}

impl<M> RemoteMessage for M where
    M: Message<Result: Serialize + DeserializeOwned + Send + 'static>
        + Serialize
        + DeserializeOwned
        + Send
        + 'static
{
}

/// What delivering a tell needs from the connection.
pub(crate) enum Delivery {
    /// Delivered (queued in the actor's mailbox).
    Done,
    /// The mailbox was full: the message is queued but the connection must wait for it.
    Wait(LocalBoxFuture<'static, ()>),
}

type TellFn<A> = fn(&Addr<A>, &[u8], SerializationFormat) -> Result<Delivery, RemoteError>;
type ReplyFuture = LocalBoxFuture<'static, Result<Vec<u8>, RemoteError>>;
type RequestFn<A> = fn(&Addr<A>, &[u8], SerializationFormat) -> Result<ReplyFuture, RemoteError>;

struct MessageEntry<A: Actor> {
    name: &'static str,
    id: u32,
    type_id: TypeId,
    tell: TellFn<A>,
    request: RequestFn<A>,
    recipient: fn(&Addr<A>) -> Box<dyn Any + Send>,
}

/// The messages an actor type accepts from the network. See [`DistributedActor::messages`].
pub struct Messages<A: Actor> {
    entries: Vec<MessageEntry<A>>,
    conflicts: Vec<String>,
}

impl<A: Actor> std::fmt::Debug for Messages<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.entries.iter().map(|e| e.name))
            .finish()
    }
}

impl<A: DistributedActor> Messages<A> {
    /// Accepts message `M` under the stable wire name `name`.
    pub fn handle<M>(&mut self, name: &'static str) -> &mut Self
    where
        A: Handler<M>,
        M: RemoteMessage,
        A::Context: ToEnvelope<A, M>,
        <A as Handler<M>>::Result: MessageResponse<A, M>,
    {
        let id = message_id(name);
        let type_id = TypeId::of::<M>();
        if let Some(other) = self
            .entries
            .iter()
            .find(|e| e.id == id || e.type_id == type_id)
        {
            self.conflicts.push(format!(
                "{}: message {name:?} clashes with {:?} (same name hash or same Rust type)",
                A::NAME,
                other.name
            ));
            return self;
        }
        self.entries.push(MessageEntry {
            name,
            id,
            type_id,
            tell: tell_fn::<A, M>,
            request: request_fn::<A, M>,
            recipient: |addr| Box::new(addr.clone().recipient::<M>()),
        });
        self
    }
}

/// FNV-1a over the name: stable across builds and platforms.
pub(crate) fn message_id(name: &str) -> u32 {
    name.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

fn tell_fn<A, M>(
    addr: &Addr<A>,
    bytes: &[u8],
    format: SerializationFormat,
) -> Result<Delivery, RemoteError>
where
    A: DistributedActor + Handler<M>,
    M: RemoteMessage,
    A::Context: ToEnvelope<A, M>,
{
    let msg: M = codec::decode(format, bytes).map_err(|e| RemoteError::from_codec(e, true))?;
    match addr.try_send(msg) {
        Ok(()) => Ok(Delivery::Done),
        Err(SendError::Full(msg)) => {
            // `send` queues past the capacity and resolves once the message is handled;
            // awaiting it (never dropping it, which would cancel the message) is what stalls
            // the connection until the actor catches up.
            let handled = addr.send(msg);
            Ok(Delivery::Wait(Box::pin(async move {
                let _ = handled.await;
            })))
        }
        Err(SendError::Closed(_)) => Err(RemoteError::ActorStopped),
    }
}

fn request_fn<A, M>(
    addr: &Addr<A>,
    bytes: &[u8],
    format: SerializationFormat,
) -> Result<ReplyFuture, RemoteError>
where
    A: DistributedActor + Handler<M>,
    M: RemoteMessage,
    A::Context: ToEnvelope<A, M>,
{
    let msg: M = codec::decode(format, bytes).map_err(|e| RemoteError::from_codec(e, true))?;
    if !addr.connected() {
        return Err(RemoteError::ActorStopped);
    }
    let reply = addr.send(msg);
    Ok(Box::pin(async move {
        match reply.await {
            Ok(result) => {
                codec::encode(format, &result).map_err(|e| RemoteError::from_codec(e, false))
            }
            Err(MailboxError::Closed) => Err(RemoteError::HandlerFailed(
                "the actor stopped or panicked while handling the request".into(),
            )),
            Err(MailboxError::Timeout) => {
                Err(RemoteError::HandlerFailed("timed out in the actor".into()))
            }
        }
    }))
}

/// The message table of one actor type, built once per node.
pub(crate) struct ActorType<A: Actor> {
    entries: Vec<MessageEntry<A>>,
    by_id: HashMap<u32, usize>,
}

impl<A: DistributedActor> ActorType<A> {
    fn build() -> (Self, Vec<String>) {
        let mut messages = Messages {
            entries: Vec::new(),
            conflicts: Vec::new(),
        };
        A::messages(&mut messages);
        let by_id = messages
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.id, i))
            .collect();
        (
            Self {
                entries: messages.entries,
                by_id,
            },
            messages.conflicts,
        )
    }

    fn entry(&self, id: u32) -> Option<&MessageEntry<A>> {
        self.by_id.get(&id).map(|&i| &self.entries[i])
    }

    /// The wire id of message type `M`, if `A` declared it.
    pub(crate) fn message_id_of<M: 'static>(&self) -> Option<u32> {
        let t = TypeId::of::<M>();
        self.entries.iter().find(|e| e.type_id == t).map(|e| e.id)
    }
}

/// A local actor, as the network sees it.
pub(crate) trait LocalActor: Send + Sync {
    fn type_name(&self) -> &'static str;
    fn alive(&self) -> bool;
    fn tell(
        &self,
        message: u32,
        bytes: &[u8],
        format: SerializationFormat,
    ) -> Result<Delivery, RemoteError>;
    fn request(
        &self,
        message: u32,
        bytes: &[u8],
        format: SerializationFormat,
    ) -> Result<ReplyFuture, RemoteError>;
    /// A boxed actix `Recipient<M>` for the message with wire id `message`.
    fn recipient(&self, message: u32) -> Option<Box<dyn Any + Send>>;
    fn as_any(&self) -> &dyn Any;
}

struct LocalEntry<A: DistributedActor> {
    addr: Addr<A>,
    ty: Arc<ActorType<A>>,
}

impl<A: DistributedActor> LocalEntry<A> {
    /// The table entry for wire message `message`, or the error the sender should get.
    fn entry(&self, message: u32) -> Result<&MessageEntry<A>, RemoteError> {
        self.ty
            .entry(message)
            .ok_or_else(|| RemoteError::UnknownMessageType {
                actor_type: A::NAME.to_owned(),
                message: format!("#{message:08x}"),
            })
    }
}

impl<A: DistributedActor> LocalActor for LocalEntry<A> {
    fn type_name(&self) -> &'static str {
        A::NAME
    }

    fn alive(&self) -> bool {
        self.addr.connected()
    }

    fn tell(
        &self,
        message: u32,
        bytes: &[u8],
        format: SerializationFormat,
    ) -> Result<Delivery, RemoteError> {
        (self.entry(message)?.tell)(&self.addr, bytes, format)
    }

    fn request(
        &self,
        message: u32,
        bytes: &[u8],
        format: SerializationFormat,
    ) -> Result<ReplyFuture, RemoteError> {
        (self.entry(message)?.request)(&self.addr, bytes, format)
    }

    fn recipient(&self, message: u32) -> Option<Box<dyn Any + Send>> {
        self.entry(message).ok().map(|e| (e.recipient)(&self.addr))
    }

    fn as_any(&self) -> &dyn Any {
        &self.addr
    }
}

pub(crate) type SpawnerFn = Box<
    dyn Fn(&Arc<LocalActors>, SerializationFormat, Bytes, oneshot::Sender<Result<u64, RemoteError>>)
        + Send
        + Sync,
>;

/// Builds the function that starts a shipped `A` on this node.
pub(crate) fn spawner<A: DistributedActor + DeserializeOwned>()
-> (&'static str, SpawnerFn, Vec<String>) {
    let (_, conflicts) = ActorType::<A>::build();
    let spawn: SpawnerFn = Box::new(|actors, format, bytes, reply| {
        let actors = Arc::clone(actors);
        let home = actors.home.clone();
        // Decoded on the home arbiter, so `A` need not be `Send`.
        home.spawn_fn(move || {
            let result = codec::decode::<A>(format, &bytes)
                .map_err(|e| RemoteError::from_codec(e, true))
                .map(|actor| actors.start(actor).0);
            let _ = reply.send(result);
        });
    });
    (A::NAME, spawn, conflicts)
}

/// Wire codes of error replies. The detail string carries the fields, newline-separated.
pub(crate) mod code {
    pub(crate) const UNKNOWN_ACTOR: u16 = 1;
    pub(crate) const UNKNOWN_MESSAGE: u16 = 2;
    pub(crate) const DECODE: u16 = 3;
    pub(crate) const ACTOR_STOPPED: u16 = 4;
    pub(crate) const HANDLER_FAILED: u16 = 5;
    pub(crate) const TOO_LARGE: u16 = 6;
    pub(crate) const TYPE_MISMATCH: u16 = 7;
    pub(crate) const ENCODE: u16 = 8;
    pub(crate) const TYPE_NOT_REGISTERED: u16 = 9;
    pub(crate) const OTHER: u16 = 100;
}

fn error_to_wire(e: &RemoteError) -> (u16, String) {
    match e {
        RemoteError::UnknownActor { actor, .. } => (code::UNKNOWN_ACTOR, actor.clone()),
        RemoteError::UnknownMessageType {
            actor_type,
            message,
        } => (code::UNKNOWN_MESSAGE, format!("{actor_type}\n{message}")),
        RemoteError::Decode(d) => (code::DECODE, d.clone()),
        RemoteError::Encode(d) => (code::ENCODE, d.clone()),
        RemoteError::ActorStopped => (code::ACTOR_STOPPED, String::new()),
        RemoteError::HandlerFailed(d) => (code::HANDLER_FAILED, d.clone()),
        RemoteError::PayloadTooLarge { size, limit } => {
            (code::TOO_LARGE, format!("{size}\n{limit}"))
        }
        RemoteError::ActorTypeMismatch {
            actor,
            expected,
            found,
            ..
        } => (code::TYPE_MISMATCH, format!("{actor}\n{expected}\n{found}")),
        RemoteError::ActorTypeNotRegistered { actor_type, .. } => {
            (code::TYPE_NOT_REGISTERED, actor_type.clone())
        }
        other => (code::OTHER, other.to_string()),
    }
}

/// Turns an error reply back into the variant the remote side raised.
pub(crate) fn error_from_wire(node: &NodeId, code: u16, detail: String) -> RemoteError {
    let node_name = node.name().to_owned();
    let mut parts = detail.split('\n').map(str::to_owned);
    let mut next = || parts.next().unwrap_or_default();
    match code {
        code::UNKNOWN_ACTOR => RemoteError::UnknownActor {
            node: node_name,
            actor: detail,
        },
        code::UNKNOWN_MESSAGE => RemoteError::UnknownMessageType {
            actor_type: next(),
            message: next(),
        },
        code::DECODE => RemoteError::Decode(detail),
        code::ENCODE => RemoteError::Encode(detail),
        code::ACTOR_STOPPED => RemoteError::ActorStopped,
        code::HANDLER_FAILED => RemoteError::HandlerFailed(detail),
        code::TOO_LARGE => RemoteError::PayloadTooLarge {
            size: next().parse().unwrap_or(0),
            limit: next().parse().unwrap_or(0),
        },
        code::TYPE_MISMATCH => RemoteError::ActorTypeMismatch {
            node: node_name,
            actor: next(),
            expected: next(),
            found: next(),
        },
        code::TYPE_NOT_REGISTERED => RemoteError::ActorTypeNotRegistered {
            node: node_name,
            actor_type: detail,
        },
        _ => RemoteError::HandlerFailed(detail),
    }
}

/// Requests to actor id 0, the node itself.
pub(crate) const SYSTEM_ACTOR: u64 = 0;
pub(crate) const SYS_SPAWN: u32 = 1;
pub(crate) const SYS_RESOLVE: u32 = 2;
/// Asks for the answering node's member table ([`MemberRow`]s); the request body is `()`.
pub(crate) const SYS_MEMBERS: u32 = 3;
/// Watches a local actor of the answering node (request; see [`watch`]).
pub(crate) const SYS_WATCH: u32 = 4;
/// Withdraws a watch (tell).
pub(crate) const SYS_UNWATCH: u32 = 5;
/// A watched actor stopped (tell, from the node hosting it to the watching node).
pub(crate) const SYS_TERMINATED: u32 = 6;
/// A registry request (see `registry::RegistryRequest`): writes forwarded to the leader,
/// reads for client nodes, Raft ids for the leader.
pub(crate) const SYS_REGISTRY: u32 = 7;

#[derive(Serialize, Deserialize)]
pub(crate) struct SpawnRequest {
    pub(crate) actor_type: String,
    pub(crate) format: SerializationFormat,
    pub(crate) state: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
pub(crate) struct ResolveRequest {
    pub(crate) name: String,
    pub(crate) actor_type: String,
}

/// One row of a member table sent in reply to [`SYS_MEMBERS`]. Enums travel as their wire
/// numbers, not as serde enums, so that a variant added later is a typed decode error on an
/// older node rather than a silently wrong row.
#[derive(Serialize, Deserialize)]
pub(crate) struct MemberRow {
    pub(crate) name: String,
    pub(crate) incarnation: u64,
    pub(crate) addr: std::net::SocketAddr,
    pub(crate) role: u8,
    pub(crate) labels: std::collections::BTreeMap<String, String>,
    pub(crate) capabilities: Vec<String>,
    pub(crate) state: u8,
    pub(crate) phi: f64,
    pub(crate) load: Option<crate::membership::LoadReport>,
    pub(crate) connected: bool,
    pub(crate) queued: u64,
}

impl MemberRow {
    pub(crate) fn from_member(m: &crate::membership::Member) -> Self {
        Self {
            name: m.id.name().to_owned(),
            incarnation: m.id.incarnation(),
            addr: m.addr,
            role: m.role.to_wire(),
            labels: m.labels.clone(),
            capabilities: m.capabilities.clone(),
            state: m.state.to_u8(),
            phi: m.phi,
            load: m.load,
            connected: m.connected,
            queued: m.queued as u64,
        }
    }

    /// Checks the row a peer sent and turns it back into a [`Member`](crate::membership::Member).
    pub(crate) fn into_member(self) -> Result<crate::membership::Member, RemoteError> {
        let role = crate::node::NodeRole::from_wire(self.role).ok_or_else(|| {
            RemoteError::Decode(format!("member {}: unknown role {}", self.name, self.role))
        })?;
        let state = crate::membership::MemberState::from_u8(self.state).ok_or_else(|| {
            RemoteError::Decode(format!(
                "member {}: unknown state {}",
                self.name, self.state
            ))
        })?;
        crate::node::validate_node_name(&self.name)
            .map_err(|e| RemoteError::Decode(format!("member name: {e}")))?;
        Ok(crate::membership::Member {
            id: NodeId::new(self.name, self.incarnation),
            addr: self.addr,
            role,
            labels: self.labels,
            capabilities: self.capabilities,
            state,
            phi: self.phi,
            load: self.load,
            connected: self.connected,
            queued: usize::try_from(self.queued).unwrap_or(usize::MAX),
        })
    }
}

/// Requests one connection may have in flight in local actors; more stall its reader.
/// Requests bypass mailbox capacity (actix queues a `send` past it), so this bounds them.
const MAX_REQUESTS_IN_FLIGHT_PER_CONNECTION: usize = 1024;

/// The actors of this node that the network can reach.
pub(crate) struct LocalActors {
    /// This node's name, for the errors it reports about its own actors.
    node: String,
    actors: RwLock<HashMap<u64, Arc<dyn LocalActor>>>,
    names: RwLock<HashMap<String, u64>>,
    spawners: HashMap<&'static str, SpawnerFn>,
    types: Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>,
    next_id: AtomicU64,
    pub(crate) home: ArbiterHandle,
    pub(crate) limits: Limits,
    /// Tells that arrived for actors that do not exist or could not be decoded.
    pub(crate) undeliverable: AtomicU64,
    /// Requests from other nodes taken by local actors and not answered yet.
    requests_in_flight: AtomicU64,
    /// Watches this node holds and watches on its actors.
    pub(crate) watches: watch::Watches,
}

impl std::fmt::Debug for LocalActors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalActors").finish_non_exhaustive()
    }
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

impl LocalActors {
    pub(crate) fn new(
        node: String,
        home: ArbiterHandle,
        limits: Limits,
        spawners: HashMap<&'static str, SpawnerFn>,
    ) -> Self {
        Self {
            node,
            actors: RwLock::new(HashMap::new()),
            names: RwLock::new(HashMap::new()),
            spawners,
            types: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            home,
            limits,
            undeliverable: AtomicU64::new(0),
            requests_in_flight: AtomicU64::new(0),
            watches: watch::Watches::new(),
        }
    }

    /// The message table of `A`, built on first use.
    pub(crate) fn actor_type<A: DistributedActor>(&self) -> Arc<ActorType<A>> {
        let mut types = self.types.lock().unwrap_or_else(|e| e.into_inner());
        let any = types
            .entry(TypeId::of::<A>())
            .or_insert_with(|| {
                let (ty, conflicts) = ActorType::<A>::build();
                for c in conflicts {
                    tracing::error!("{c}");
                }
                Arc::new(ty)
            })
            .clone();
        drop(types);
        // The map is keyed by `TypeId::of::<A>()`, so the downcast cannot fail; rebuilding
        // keeps this panic-free all the same.
        any.downcast::<ActorType<A>>()
            .unwrap_or_else(|_| Arc::new(ActorType::<A>::build().0))
    }

    /// Starts `actor` on the current arbiter with the cluster's mailbox capacity and makes it
    /// reachable from the network.
    pub(crate) fn start<A: DistributedActor>(&self, actor: A) -> (u64, Addr<A>) {
        let cap = self.limits.mailbox_capacity;
        let addr = A::create(move |ctx| {
            ctx.set_mailbox_capacity(cap);
            actor
        });
        (self.insert(addr.clone()), addr)
    }

    /// Makes an already running actor reachable from the network.
    pub(crate) fn insert<A: DistributedActor>(&self, addr: Addr<A>) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let entry = LocalEntry {
            addr,
            ty: self.actor_type::<A>(),
        };
        write(&self.actors).insert(id, Arc::new(entry));
        id
    }

    pub(crate) fn get(&self, id: u64) -> Option<Arc<dyn LocalActor>> {
        read(&self.actors).get(&id).cloned()
    }

    /// The local `Addr<A>` of actor `id`, if it is an `A`.
    pub(crate) fn addr_of<A: DistributedActor>(&self, id: u64) -> Option<Addr<A>> {
        self.get(id)?.as_any().downcast_ref::<Addr<A>>().cloned()
    }

    /// The local actix `Recipient<M>` of actor `id` for wire message `message`.
    pub(crate) fn recipient_of<M: RemoteMessage>(
        &self,
        id: u64,
        message: u32,
    ) -> Option<Recipient<M>> {
        self.get(id)?
            .recipient(message)?
            .downcast::<Recipient<M>>()
            .ok()
            .map(|b| *b)
    }

    /// Forgets an actor that stopped, and any local names that pointed at it.
    pub(crate) fn remove(&self, id: u64) {
        write(&self.actors).remove(&id);
        write(&self.names).retain(|_, v| *v != id);
    }

    /// Number of live actors reachable from the network.
    /// Requests from other nodes that local actors have not answered yet.
    pub(crate) fn requests_in_flight(&self) -> u64 {
        self.requests_in_flight.load(Ordering::Relaxed)
    }

    pub(crate) fn len(&self) -> usize {
        read(&self.actors).len()
    }

    pub(crate) fn set_name(&self, name: String, id: u64) {
        write(&self.names).insert(name, id);
    }

    pub(crate) fn resolve(
        &self,
        node: &str,
        name: &str,
        actor_type: &str,
    ) -> Result<u64, RemoteError> {
        let unknown = || RemoteError::UnknownActor {
            node: node.to_owned(),
            actor: name.to_owned(),
        };
        let id = *read(&self.names).get(name).ok_or_else(unknown)?;
        let entry = self.get(id).filter(|e| e.alive()).ok_or_else(unknown)?;
        if entry.type_name() != actor_type {
            return Err(RemoteError::ActorTypeMismatch {
                node: node.to_owned(),
                actor: name.to_owned(),
                expected: actor_type.to_owned(),
                found: entry.type_name().to_owned(),
            });
        }
        Ok(id)
    }

    fn lookup(&self, node: &str, id: u64) -> Result<Arc<dyn LocalActor>, RemoteError> {
        match self.get(id) {
            Some(e) if e.alive() => Ok(e),
            found => {
                if found.is_some() {
                    self.remove(id);
                }
                Err(RemoteError::UnknownActor {
                    node: node.to_owned(),
                    actor: id.to_string(),
                })
            }
        }
    }

    /// Decompresses a payload if needed, bounded by the frame limit.
    fn plain<'a>(&self, payload: &'a Payload) -> Result<Cow<'a, [u8]>, RemoteError> {
        plain_bytes(payload, self.limits.max_frame_size as usize)
    }

    /// Handles a request to the node itself (spawn, resolve).
    fn system_request(
        self: &Arc<Self>,
        message: u32,
        payload: &Payload,
    ) -> Result<ReplyFuture, RemoteError> {
        let bytes = self.plain(payload)?;
        match message {
            SYS_SPAWN => {
                let req: SpawnRequest = codec::decode(SerializationFormat::Bincode, &bytes)
                    .map_err(|e| RemoteError::from_codec(e, true))?;
                let spawn = self.spawners.get(req.actor_type.as_str()).ok_or_else(|| {
                    RemoteError::ActorTypeNotRegistered {
                        node: self.node.clone(),
                        actor_type: req.actor_type.clone(),
                    }
                })?;
                let (tx, rx) = oneshot::channel();
                spawn(self, req.format, Bytes::from(req.state), tx);
                Ok(Box::pin(async move {
                    let id = rx.await.map_err(|_| RemoteError::SystemStopped)??;
                    codec::encode(SerializationFormat::Bincode, &id)
                        .map_err(|e| RemoteError::from_codec(e, false))
                }))
            }
            SYS_RESOLVE => {
                let req: ResolveRequest = codec::decode(SerializationFormat::Bincode, &bytes)
                    .map_err(|e| RemoteError::from_codec(e, true))?;
                let id = self.resolve(&self.node, &req.name, &req.actor_type)?;
                let out = codec::encode(SerializationFormat::Bincode, &id)
                    .map_err(|e| RemoteError::from_codec(e, false))?;
                Ok(Box::pin(async move { Ok(out) }))
            }
            SYS_MEMBERS => {
                // Requests are dispatched on the node's network thread, which knows its node;
                // the table is the very one `ClusterSystem::members` returns there.
                let system =
                    crate::system::ClusterSystem::current().ok_or(RemoteError::SystemStopped)?;
                let rows: Vec<MemberRow> = system
                    .members()
                    .iter()
                    .map(MemberRow::from_member)
                    .collect();
                let out = codec::encode(SerializationFormat::Bincode, &rows)
                    .map_err(|e| RemoteError::from_codec(e, false))?;
                Ok(Box::pin(async move { Ok(out) }))
            }
            SYS_REGISTRY => {
                let req: crate::registry::RegistryRequest =
                    codec::decode(SerializationFormat::Bincode, &bytes)
                        .map_err(|e| RemoteError::from_codec(e, true))?;
                let system =
                    crate::system::ClusterSystem::current().ok_or(RemoteError::SystemStopped)?;
                Ok(Box::pin(async move {
                    let core = system.core();
                    let reply = core.registry.serve(core, req).await;
                    codec::encode(SerializationFormat::Bincode, &reply)
                        .map_err(|e| RemoteError::from_codec(e, false))
                }))
            }
            other => Err(RemoteError::UnknownMessageType {
                actor_type: "node".into(),
                message: format!("#{other:08x}"),
            }),
        }
    }
}

/// The payload's plain bytes: borrowed, or decompressed with the declared size checked first.
pub(crate) fn plain_bytes(payload: &Payload, limit: usize) -> Result<Cow<'_, [u8]>, RemoteError> {
    if payload.compressed {
        codec::decompress(&payload.bytes, limit)
            .map(Cow::Owned)
            .map_err(|e| RemoteError::from_codec(e, true))
    } else {
        Ok(Cow::Borrowed(&payload.bytes[..]))
    }
}

impl Inbound for LocalActors {
    fn connection(self: Arc<Self>) -> Box<dyn ConnectionDispatch> {
        Box::new(Dispatch {
            actors: self,
            cache: HashMap::new(),
            in_flight: Arc::new(Semaphore::new(MAX_REQUESTS_IN_FLIGHT_PER_CONNECTION)),
        })
    }
}

/// Per-connection dispatch: a lookup cache in front of the shared actor table, so the hot
/// path takes no shared lock per message.
struct Dispatch {
    actors: Arc<LocalActors>,
    cache: HashMap<u64, Arc<dyn LocalActor>>,
    in_flight: Arc<Semaphore>,
}

impl Dispatch {
    fn target(&mut self, node: &str, id: u64) -> Result<Arc<dyn LocalActor>, RemoteError> {
        if let Some(e) = self.cache.get(&id) {
            if e.alive() {
                return Ok(Arc::clone(e));
            }
            self.cache.remove(&id);
        }
        let e = self.actors.lookup(node, id)?;
        if self.cache.len() >= 4096 {
            self.cache.clear();
        }
        self.cache.insert(id, Arc::clone(&e));
        Ok(e)
    }

    fn tell(
        &mut self,
        peer: &Arc<Peer>,
        actor: u64,
        message: u32,
        payload: &Payload,
    ) -> Result<Delivery, RemoteError> {
        if actor == SYSTEM_ACTOR {
            return self
                .actors
                .system_tell(peer, message, payload)
                .map(|()| Delivery::Done);
        }
        let target = self.target(peer.id.name(), actor)?;
        let bytes = self.actors.plain(payload)?;
        target.tell(message, &bytes, payload.format)
    }

    fn request(
        &mut self,
        peer: &Arc<Peer>,
        actor: u64,
        message: u32,
        correlation: u64,
        payload: Payload,
    ) -> Option<LocalBoxFuture<'static, ()>> {
        let started = if actor == SYSTEM_ACTOR && message == SYS_WATCH {
            // The only system request that needs to know who asks.
            self.actors.watch_request(peer, &payload)
        } else if actor == SYSTEM_ACTOR {
            self.actors.system_request(message, &payload)
        } else {
            self.target(peer.id.name(), actor).and_then(|t| {
                let bytes = self.actors.plain(&payload)?;
                t.request(message, &bytes, payload.format)
            })
        };
        let reply = match started {
            Ok(f) => f,
            Err(e) => {
                send_error(peer, correlation, &e);
                return None;
            }
        };
        let format = if actor == SYSTEM_ACTOR {
            SerializationFormat::Bincode
        } else {
            payload.format
        };
        let peer = Arc::clone(peer);
        let limits = self.actors.limits;
        let busy = InFlight::enter(&self.actors);
        let respond = async move {
            let _busy = busy;
            match reply.await {
                Ok(bytes) => send_response(&peer, correlation, format, &bytes, &limits).await,
                Err(e) => send_error(&peer, correlation, &e),
            }
        };
        match Arc::clone(&self.in_flight).try_acquire_owned() {
            Ok(permit) => {
                actix_rt::spawn(async move {
                    respond.await;
                    drop(permit);
                });
                None
            }
            Err(_) => {
                // Too many requests of this connection are in local actors: stop reading
                // until one completes.
                let sem = Arc::clone(&self.in_flight);
                Some(Box::pin(async move {
                    let permit = sem.acquire_owned().await;
                    actix_rt::spawn(async move {
                        respond.await;
                        drop(permit);
                    });
                }))
            }
        }
    }
}

fn send_error(peer: &Peer, correlation: u64, e: &RemoteError) {
    let (code, detail) = error_to_wire(e);
    peer.push_control(|b| wire::put_error(b, correlation, code, &detail));
}

async fn send_response(
    peer: &Peer,
    correlation: u64,
    format: SerializationFormat,
    bytes: &[u8],
    limits: &Limits,
) {
    let mut compressed_buf = Vec::new();
    let (body, compressed) = match limits.compression_threshold {
        Some(t) if bytes.len() >= t && codec::compress_into(bytes, &mut compressed_buf) => {
            (&compressed_buf[..], true)
        }
        _ => (bytes, false),
    };
    let len = wire::response_frame_len(body.len());
    let max_frame = peer.max_frame();
    if len - wire::LEN_PREFIX > max_frame as usize {
        // Too large for the caller to accept: it gets this error instead of a frame that
        // would close the connection and every request on it.
        send_error(
            peer,
            correlation,
            &RemoteError::PayloadTooLarge {
                size: bytes.len() as u64,
                limit: u64::from(max_frame),
            },
        );
        return;
    }
    let pushed = peer
        .push(len, |b| {
            wire::put_response(b, correlation, format, compressed, body)
        })
        .await;
    if let Err(e) = pushed {
        tracing::debug!(node = %peer.id, ?e, "reply not sent");
    }
}

impl ConnectionDispatch for Dispatch {
    fn dispatch(&mut self, peer: &Arc<Peer>, frame: Frame) -> Option<LocalBoxFuture<'static, ()>> {
        match frame {
            Frame::Tell {
                actor,
                message,
                payload,
            } => match self.tell(peer, actor, message, &payload) {
                Ok(Delivery::Done) => None,
                Ok(Delivery::Wait(wait)) => Some(wait),
                Err(e) => {
                    // A tell has nobody to report to: count it and say so in the log.
                    self.actors.undeliverable.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!("actix_cluster_messages_undeliverable_total").increment(1);
                    tracing::debug!(node = %peer.id, actor, error = %e, "tell not delivered");
                    None
                }
            },
            Frame::Request {
                actor,
                message,
                correlation,
                payload,
            } => self.request(peer, actor, message, correlation, payload),
            _ => None,
        }
    }
}

/// Counts one request in [`LocalActors::requests_in_flight`] until dropped.
struct InFlight(Arc<LocalActors>);

impl InFlight {
    fn enter(actors: &Arc<LocalActors>) -> Self {
        actors.requests_in_flight.fetch_add(1, Ordering::Relaxed);
        Self(Arc::clone(actors))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.requests_in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_are_stable_fnv1a() {
        // Reference values of 32-bit FNV-1a; a change here breaks the wire protocol.
        assert_eq!(message_id(""), 0x811c_9dc5);
        assert_eq!(message_id("a"), 0xe40c_292c);
        assert_eq!(message_id("foobar"), 0xbf9c_f968);
    }

    #[test]
    fn member_rows_round_trip_and_refuse_unknown_states() {
        let member = crate::membership::Member {
            id: NodeId::new("node-1", 42),
            addr: ([127, 0, 0, 1], 7001).into(),
            role: crate::node::NodeRole::Master,
            labels: [("zone".to_owned(), "a".to_owned())].into(),
            capabilities: vec!["examples.counter".into()],
            state: crate::membership::MemberState::Suspect,
            phi: 2.5,
            load: Some(crate::membership::LoadReport::new(3, 1, Some(0.5))),
            connected: true,
            queued: 7,
        };
        let bytes = codec::encode(
            SerializationFormat::Bincode,
            &vec![MemberRow::from_member(&member)],
        )
        .expect("encode");
        let rows: Vec<MemberRow> =
            codec::decode(SerializationFormat::Bincode, &bytes).expect("decode");
        let back: Result<Vec<_>, _> = rows.into_iter().map(MemberRow::into_member).collect();
        assert_eq!(back, Ok(vec![member.clone()]));

        let mut bad = MemberRow::from_member(&member);
        bad.state = 200;
        assert!(matches!(bad.into_member(), Err(RemoteError::Decode(_))));
        let mut bad = MemberRow::from_member(&member);
        bad.name = "Not A Name".into();
        assert!(matches!(bad.into_member(), Err(RemoteError::Decode(_))));
    }

    #[test]
    fn error_codes_round_trip() {
        let node = NodeId::new("n", 1);
        let cases = [
            RemoteError::UnknownActor {
                node: "n".into(),
                actor: "7".into(),
            },
            RemoteError::UnknownMessageType {
                actor_type: "t".into(),
                message: "m".into(),
            },
            RemoteError::Decode("x".into()),
            RemoteError::Encode("y".into()),
            RemoteError::ActorStopped,
            RemoteError::HandlerFailed("z".into()),
            RemoteError::PayloadTooLarge { size: 9, limit: 8 },
            RemoteError::ActorTypeMismatch {
                node: "n".into(),
                actor: "a".into(),
                expected: "e".into(),
                found: "f".into(),
            },
            RemoteError::ActorTypeNotRegistered {
                node: "n".into(),
                actor_type: "t".into(),
            },
        ];
        for e in cases {
            let (code, detail) = error_to_wire(&e);
            assert_eq!(error_from_wire(&node, code, detail), e);
        }
    }
}
