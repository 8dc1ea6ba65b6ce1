//! Addresses of actors anywhere in the cluster: [`RemoteAddr`] and [`RemoteRecipient`].
//!
//! An address is `(node id, node address, actor id)`. It serializes to exactly that, so it can
//! travel inside messages; on arrival it attaches to the cluster node running on the thread
//! that uses it. When it points at an actor of the node using it, messages go straight to the
//! actix mailbox without being encoded.
//!
//! An address obtained from a cluster-wide name ([`ClusterSystem::lookup`] and friends) also
//! remembers the name and the registration version it was resolved at, and follows the name:
//! see [`RemoteAddr`] for when it re-resolves and what it does while the name is unregistered.
//!
//! [`ClusterSystem::lookup`]: crate::ClusterSystem::lookup

use std::cell::RefCell;
use std::fmt;
use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use actix::dev::ToEnvelope;
use actix::prelude::*;
use futures::future::BoxFuture;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{ActorType, DistributedActor, RemoteMessage, plain_bytes};
use crate::codec::{self, SerializationFormat};
use crate::error::{RemoteError, TrySendError};
use crate::node::NodeId;
use crate::registry::NameEntry;
use crate::system::NodeCore;
use crate::transport::{Answer, CallError, DATA_PLANE, Peer, PushError};
use crate::wire;

/// Where an address points, and the node it is used from.
pub(crate) struct Endpoint {
    pub(crate) node: NodeId,
    pub(crate) node_addr: SocketAddr,
    pub(crate) actor: u64,
    core: OnceLock<Arc<NodeCore>>,
    peer: OnceLock<Arc<Peer>>,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.node, self.actor)
    }
}

impl Endpoint {
    pub(crate) fn new(
        node: NodeId,
        node_addr: SocketAddr,
        actor: u64,
        core: Option<Arc<NodeCore>>,
    ) -> Self {
        let cell = OnceLock::new();
        if let Some(c) = core {
            let _ = cell.set(c);
        }
        Self {
            node,
            node_addr,
            actor,
            core: cell,
            peer: OnceLock::new(),
        }
    }

    /// The node this address is used from: fixed at creation, or, for an address that
    /// arrived in a message, the node running on the current thread.
    pub(crate) fn core(&self) -> Result<&Arc<NodeCore>, RemoteError> {
        if let Some(c) = self.core.get() {
            return Ok(c);
        }
        let current = NodeCore::current().ok_or(RemoteError::SystemStopped)?;
        Ok(self.core.get_or_init(|| current))
    }

    fn is_local(&self, core: &NodeCore) -> bool {
        core.local.id == self.node
    }

    fn peer(&self, core: &Arc<NodeCore>) -> Result<&Arc<Peer>, RemoteError> {
        if let Some(p) = self.peer.get() {
            return Ok(p);
        }
        if core.is_stopped() {
            return Err(RemoteError::SystemStopped);
        }
        // A peer object is per incarnation and never reused for another, so caching it is
        // safe: a restarted node is a new object and this one reports `Gone`.
        let p = core
            .transport
            .peer_for_id(&self.node, self.node_addr)
            .ok_or_else(|| RemoteError::NodeGone {
                node: self.node.clone(),
            })?;
        Ok(self.peer.get_or_init(|| p))
    }

    /// Queues a tell without waiting. `Err(None)` means the queue is full.
    fn try_tell<M: Serialize>(
        &self,
        message: u32,
        format: SerializationFormat,
        msg: &M,
    ) -> Result<(), Option<RemoteError>> {
        let core = self.core()?;
        let peer = self.peer(core)?;
        let limits = &core.config.limits;
        with_payload(
            format,
            msg,
            limits,
            peer.max_frame(),
            |payload, compressed| {
                peer.try_push(wire::tell_frame_len(payload.len()), |b| {
                    wire::put_tell(b, self.actor, message, format, compressed, payload)
                })
            },
        )?
        .map_err(|e| match e {
            PushError::Full => None,
            other => Some(push_error(other, peer)),
        })
    }

    /// Queues a tell, waiting for room in the node's send queue.
    async fn tell<M: Serialize>(
        &self,
        message: u32,
        format: SerializationFormat,
        msg: M,
    ) -> Result<(), RemoteError> {
        match self.try_tell(message, format, &msg) {
            Err(None) => {}
            other => return other.map_err(|e| e.unwrap_or(RemoteError::SystemStopped)),
        }
        let core = self.core()?;
        let peer = self.peer(core)?;
        let (payload, compressed) =
            encode_owned(format, &msg, &core.config.limits, peer.max_frame())?;
        drop(msg);
        peer.push(wire::tell_frame_len(payload.len()), |b| {
            wire::put_tell(b, self.actor, message, format, compressed, &payload)
        })
        .await
        .map_err(|e| push_error(e, peer))
    }

    /// Sends a request and decodes its reply. The caller applies the deadline.
    pub(crate) async fn request<M: Serialize, R: DeserializeOwned>(
        &self,
        message: u32,
        format: SerializationFormat,
        msg: M,
        timeout: Duration,
    ) -> Result<R, RemoteError> {
        let until = tokio::time::Instant::now() + timeout;
        let core = self.core()?;
        let peer = self.peer(core)?;
        let limits = &core.config.limits;
        let (payload, compressed) = encode_owned(format, &msg, limits, peer.max_frame())?;
        drop(msg);
        let answer = peer
            .calls()
            .call(DATA_PLANE, until, |correlation| {
                peer.push(wire::request_frame_len(payload.len()), move |b| {
                    wire::put_request(
                        b,
                        self.actor,
                        message,
                        correlation,
                        format,
                        compressed,
                        &payload,
                    )
                })
            })
            .await;
        let payload = match answer {
            Ok(Answer::Payload(p)) => p,
            Ok(Answer::Error { code, detail }) => {
                return Err(super::error_from_wire(&self.node, code, detail));
            }
            Ok(Answer::Body(_)) => {
                return Err(RemoteError::Decode("a channel frame answered a request".into()));
            }
            Err(e) => return Err(call_error(e, peer, timeout)),
        };
        let bytes = plain_bytes(&payload, limits.max_frame_size as usize)?;
        codec::decode(payload.format, &bytes).map_err(|e| RemoteError::from_codec(e, true))
    }
}

/// The remote error for a frame the transport would not queue.
pub(crate) fn push_error(e: PushError, peer: &Peer) -> RemoteError {
    match e {
        PushError::Full => RemoteError::QueueFull {
            node: peer.id.name().to_owned(),
        },
        PushError::Unreachable => RemoteError::NodeUnreachable {
            node: peer.id.name().to_owned(),
        },
        PushError::Gone => RemoteError::NodeGone {
            node: peer.id.clone(),
        },
    }
}

/// The remote error for a call the transport could not complete.
pub(crate) fn call_error(e: CallError, peer: &Peer, timeout: Duration) -> RemoteError {
    match e {
        CallError::Full => push_error(PushError::Full, peer),
        CallError::Unreachable => push_error(PushError::Unreachable, peer),
        CallError::Gone => push_error(PushError::Gone, peer),
        CallError::Timeout => RemoteError::Timeout(timeout),
    }
}

#[derive(Default)]
struct Scratch {
    plain: Vec<u8>,
    packed: Vec<u8>,
}

thread_local! {
    /// Reused encode buffers: a tell costs no allocation once the buffers have grown.
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Scratch buffers above this are released after use rather than kept per thread.
const SCRATCH_KEEP: usize = 1 << 20;

/// Encodes `msg` (compressing when worthwhile), checks the frame limit, and hands the bytes
/// to `f` without allocating.
fn with_payload<M: Serialize, R>(
    format: SerializationFormat,
    msg: &M,
    limits: &crate::limits::Limits,
    max_frame: u32,
    f: impl FnOnce(&[u8], bool) -> R,
) -> Result<R, RemoteError> {
    SCRATCH.with(|cell| {
        let mut fresh = Scratch::default();
        // Re-entrancy (a Serialize impl that sends) gets fresh buffers instead of a panic.
        let mut borrowed = cell.try_borrow_mut().ok();
        let s = borrowed.as_deref_mut().unwrap_or(&mut fresh);
        s.plain.clear();
        s.packed.clear();
        let result = encode_checked(format, msg, limits, max_frame, s).map(|compressed| {
            let body = if compressed { &s.packed } else { &s.plain };
            f(body, compressed)
        });
        if s.plain.capacity() > SCRATCH_KEEP {
            s.plain = Vec::new();
        }
        if s.packed.capacity() > SCRATCH_KEEP {
            s.packed = Vec::new();
        }
        result
    })
}

fn encode_owned<M: Serialize>(
    format: SerializationFormat,
    msg: &M,
    limits: &crate::limits::Limits,
    max_frame: u32,
) -> Result<(Vec<u8>, bool), RemoteError> {
    let mut s = Scratch::default();
    let compressed = encode_checked(format, msg, limits, max_frame, &mut s)?;
    Ok((if compressed { s.packed } else { s.plain }, compressed))
}

fn encode_checked<M: Serialize>(
    format: SerializationFormat,
    msg: &M,
    limits: &crate::limits::Limits,
    max_frame: u32,
    s: &mut Scratch,
) -> Result<bool, RemoteError> {
    codec::encode_into(format, msg, &mut s.plain).map_err(|e| RemoteError::from_codec(e, false))?;
    let compressed = matches!(limits.compression_threshold, Some(t) if s.plain.len() >= t)
        && codec::compress_into(&s.plain, &mut s.packed);
    let len = if compressed {
        s.packed.len()
    } else {
        s.plain.len()
    };
    // The largest header (a request's) must fit too, within the receiver's limit as well as
    // ours: a frame the receiver refuses would cost the whole connection.
    if wire::request_frame_len(len) - wire::LEN_PREFIX > max_frame as usize {
        return Err(RemoteError::PayloadTooLarge {
            size: s.plain.len() as u64,
            limit: u64::from(max_frame),
        });
    }
    Ok(compressed)
}

/// Serialized form of both address types.
#[derive(Serialize, Deserialize)]
struct AddrWire {
    node: String,
    incarnation: u64,
    addr: SocketAddr,
    actor: u64,
    // Always present (no `skip_serializing_if`): bincode is not self-describing.
    message: Option<(u32, SerializationFormat)>,
    /// The registry name (and registration version) an address follows; `None` for plain
    /// addresses and recipients. Carried so that a member receiving the address follows the
    /// name too, and never steps back to a registration older than the sender's.
    name: Option<(String, u64)>,
}

/// The address of a [`DistributedActor`] on any node of the cluster.
///
/// Cheap to clone, `Send + Sync`, and serializable: it can be sent to other nodes inside
/// messages. Messages from one sender to one actor arrive in the order they were sent.
///
/// # Addresses obtained by name
///
/// An address returned by [`ClusterSystem::lookup`] (or `lookup_linearizable`,
/// `register_name_or_get`) follows its name: before each send (and in [`node`](Self::node),
/// [`actor_id`](Self::actor_id), [`local_addr`](Self::local_addr), comparisons and
/// serialization) it checks this node's replica of the registry, and if the name has been
/// registered again since (a higher registration version), it points at the new actor from
/// then on. Holders therefore keep working after the actor is re-registered elsewhere, with
/// no call on their side.
///
/// - While the name is **unregistered** (the actor stopped, its node went Down, or someone
///   called `unregister_name`) the address keeps pointing at the last registered actor, so
///   sends fail as they would for any stopped actor or gone node
///   ([`RemoteError::ActorStopped`], [`RemoteError::UnknownActor`],
///   [`RemoteError::NodeGone`], …) until the name is registered again.
/// - Only a newer registration moves it: a replica that lags behind the one the address was
///   resolved from never sends it back to an older actor.
/// - On **client nodes**, which hold no replica, the address stays where the lookup found it;
///   look the name up again to follow a move.
/// - A name registered again to an actor of another type is not followed (the address keeps
///   its last actor of type `A`).
/// - Messages already queued for the old actor are not redirected; ordering is per target
///   actor, so a sender's messages before and after a move may interleave differently at the
///   two actors.
/// - [`recipient`](Self::recipient) returns a recipient for the actor the name means *now*;
///   the recipient itself does not follow later moves.
///
/// The address travels to other nodes with its name and version, and a member receiving it
/// follows the name from its own replica. Addresses not obtained by name never look anything
/// up: their send path is unchanged.
///
/// [`ClusterSystem::lookup`]: crate::ClusterSystem::lookup
pub struct RemoteAddr<A: DistributedActor> {
    inner: Arc<AddrInner<A>>,
}

struct AddrInner<A: DistributedActor> {
    target: Binding<A>,
    ty: OnceLock<Arc<ActorType<A>>>,
}

/// What an address points at: one actor for good, or whatever actor a name means.
enum Binding<A: DistributedActor> {
    Fixed(Resolved<A>),
    Named(NameBinding<A>),
}

/// One concrete target: the endpoint and, once asked, the actix address if the actor runs on
/// the node using the address.
struct Resolved<A: DistributedActor> {
    ep: Arc<Endpoint>,
    local: OnceLock<Option<Addr<A>>>,
}

impl<A: DistributedActor> Resolved<A> {
    fn new(ep: Endpoint) -> Self {
        Self {
            ep: Arc::new(ep),
            local: OnceLock::new(),
        }
    }

    fn local_addr(&self) -> Option<Addr<A>> {
        let core = self.ep.core().ok()?;
        self.local
            .get_or_init(|| {
                if self.ep.is_local(core) {
                    core.actors.addr_of::<A>(self.ep.actor)
                } else {
                    None
                }
            })
            .clone()
    }
}

/// The target of an address obtained by name, and the registration it was resolved from.
struct NameBinding<A: DistributedActor> {
    name: Arc<str>,
    current: RwLock<Current<A>>,
}

struct Current<A: DistributedActor> {
    /// Registration version (registry log index) `resolved` came from.
    version: u64,
    resolved: Arc<Resolved<A>>,
}

impl<A: DistributedActor> NameBinding<A> {
    fn new(name: Arc<str>, version: u64, resolved: Resolved<A>) -> Self {
        Self {
            name,
            current: RwLock::new(Current {
                version,
                resolved: Arc::new(resolved),
            }),
        }
    }

    /// The target as last resolved, and its version, without consulting the registry.
    fn held(&self) -> (u64, Arc<Resolved<A>>) {
        let c = self.current.read().unwrap_or_else(|e| e.into_inner());
        (c.version, Arc::clone(&c.resolved))
    }

    /// The target the name means now according to this node's replica, and its version.
    fn resolve(&self) -> (u64, Arc<Resolved<A>>) {
        let held = self.held();
        // No node on this thread (an address deserialized off-node): nothing to ask.
        let Ok(core) = held.1.ep.core() else {
            return held;
        };
        // `None` both when the name is unregistered and on client nodes (no replica): either
        // way the last target stays, as documented on `RemoteAddr`.
        let Some(entry) = core.registry.local_entry(&self.name) else {
            return held;
        };
        if entry.version <= held.0 {
            return held;
        }
        let core = Arc::clone(core);
        self.follow(&entry, Some(core))
    }

    /// Moves to `entry` if it is a newer registration of an actor of type `A`; returns the
    /// target in effect afterwards and its version. `core` is the node the new endpoint is
    /// used from.
    fn follow(&self, entry: &NameEntry, core: Option<Arc<NodeCore>>) -> (u64, Arc<Resolved<A>>) {
        if entry.actor_type != A::NAME {
            tracing::debug!(
                name = %self.name,
                version = entry.version,
                found = %entry.actor_type,
                expected = A::NAME,
                "named address not following a registration of another actor type"
            );
            return self.held();
        }
        let mut c = self.current.write().unwrap_or_else(|e| e.into_inner());
        // Checked again under the write lock: another sender may have moved it meanwhile, to
        // this registration or to a later one, and versions only ever go up.
        if entry.version > c.version {
            let ep = &c.resolved.ep;
            let moved = ep.node != entry.node || ep.actor != entry.actor_id;
            if moved {
                tracing::debug!(
                    name = %self.name,
                    version = entry.version,
                    from = ?ep,
                    to = %format_args!("{}/{}", entry.node, entry.actor_id),
                    "named address follows its name"
                );
                c.resolved = Arc::new(Resolved::new(Endpoint::new(
                    entry.node.clone(),
                    entry.node_addr,
                    entry.actor_id,
                    core,
                )));
            }
            // Same actor registered again (after a release): keep the cached peer and mailbox.
            c.version = entry.version;
        }
        (c.version, Arc::clone(&c.resolved))
    }
}

/// The target of one operation: borrowed for fixed addresses (no lock, no reference count),
/// shared for named ones (the binding may move while the operation runs).
enum Resolution<'a, A: DistributedActor> {
    Fixed(&'a Resolved<A>),
    Named(Arc<Resolved<A>>),
}

impl<A: DistributedActor> Deref for Resolution<'_, A> {
    type Target = Resolved<A>;

    fn deref(&self) -> &Resolved<A> {
        match self {
            Resolution::Fixed(r) => r,
            Resolution::Named(r) => r,
        }
    }
}

impl<A: DistributedActor> Clone for RemoteAddr<A> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<A: DistributedActor> fmt::Debug for RemoteAddr<A> {
    // Shows the target as last resolved: formatting does not consult the registry.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner.target {
            Binding::Fixed(r) => write!(f, "RemoteAddr<{}>({:?})", A::NAME, r.ep),
            Binding::Named(b) => {
                let (version, r) = b.held();
                write!(
                    f,
                    "RemoteAddr<{}>({:?} -> {:?} @v{version})",
                    A::NAME,
                    b.name,
                    r.ep
                )
            }
        }
    }
}

impl<A: DistributedActor> PartialEq for RemoteAddr<A> {
    /// Two addresses are equal when they point at the same actor now; a named address
    /// compares by the actor its name currently means.
    fn eq(&self, other: &Self) -> bool {
        let (a, b) = (self.resolve(), other.resolve());
        a.ep.node == b.ep.node && a.ep.actor == b.ep.actor
    }
}

impl<A: DistributedActor> Eq for RemoteAddr<A> {}

impl<A: DistributedActor> RemoteAddr<A> {
    pub(crate) fn local(core: &Arc<NodeCore>, actor: u64, addr: Addr<A>) -> Self {
        let ep = Endpoint::new(
            core.local.id.clone(),
            core.local.addr,
            actor,
            Some(Arc::clone(core)),
        );
        let local = OnceLock::new();
        let _ = local.set(Some(addr));
        Self::fixed(Resolved {
            ep: Arc::new(ep),
            local,
        })
    }

    pub(crate) fn remote(
        core: &Arc<NodeCore>,
        node: NodeId,
        node_addr: SocketAddr,
        actor: u64,
    ) -> Self {
        Self::fixed(Resolved::new(Endpoint::new(
            node,
            node_addr,
            actor,
            Some(Arc::clone(core)),
        )))
    }

    /// An address that follows the registry name of `entry` (see the type's docs). The caller
    /// has checked that `entry` registers an actor of type `A`.
    pub(crate) fn by_name(core: &Arc<NodeCore>, entry: &NameEntry) -> Self {
        let ep = Endpoint::new(
            entry.node.clone(),
            entry.node_addr,
            entry.actor_id,
            Some(Arc::clone(core)),
        );
        Self::named(entry.name.as_str().into(), entry.version, Resolved::new(ep))
    }

    fn fixed(resolved: Resolved<A>) -> Self {
        Self::with(Binding::Fixed(resolved))
    }

    fn named(name: Arc<str>, version: u64, resolved: Resolved<A>) -> Self {
        Self::with(Binding::Named(NameBinding::new(name, version, resolved)))
    }

    fn with(target: Binding<A>) -> Self {
        Self {
            inner: Arc::new(AddrInner {
                target,
                ty: OnceLock::new(),
            }),
        }
    }

    /// The current target. Every operation resolves once and uses that one target
    /// throughout, so it never mixes two registrations (say, one node's id with another's
    /// actor id).
    fn resolve(&self) -> Resolution<'_, A> {
        match &self.inner.target {
            Binding::Fixed(r) => Resolution::Fixed(r),
            Binding::Named(b) => Resolution::Named(b.resolve().1),
        }
    }

    /// The node hosting the actor (for an address obtained by name: the actor the name
    /// means now, see the type's docs).
    pub fn node(&self) -> NodeId {
        self.resolve().ep.node.clone()
    }

    /// The actor's id on its node.
    pub fn actor_id(&self) -> u64 {
        self.resolve().ep.actor
    }

    /// The cluster-wide name this address follows, if it was obtained by name.
    pub fn registered_name(&self) -> Option<&str> {
        match &self.inner.target {
            Binding::Fixed(_) => None,
            Binding::Named(b) => Some(&b.name),
        }
    }

    /// The address the hosting node was reached at when this address was made.
    pub(crate) fn node_addr(&self) -> SocketAddr {
        self.resolve().ep.node_addr
    }

    /// The current target's endpoint: node, node address and actor id from one registration,
    /// for callers that need them together.
    pub(crate) fn endpoint(&self) -> Arc<Endpoint> {
        Arc::clone(&self.resolve().ep)
    }

    /// The actix address, when the actor runs on the node using this address.
    pub fn local_addr(&self) -> Option<Addr<A>> {
        self.resolve().local_addr()
    }

    fn actor_type(&self, core: &Arc<NodeCore>) -> &Arc<ActorType<A>> {
        self.inner.ty.get_or_init(|| core.actors.actor_type::<A>())
    }

    /// Wire id and format for `M`, or the error that `A` does not accept `M` remotely.
    fn route<M: 'static>(&self, ep: &Endpoint) -> Result<(u32, SerializationFormat), RemoteError> {
        let core = ep.core()?;
        let id = self.actor_type(core).message_id_of::<M>().ok_or_else(|| {
            RemoteError::UnknownMessageType {
                actor_type: A::NAME.to_owned(),
                message: std::any::type_name::<M>().to_owned(),
            }
        })?;
        Ok((
            id,
            A::serialization_format().unwrap_or(core.config.serialization),
        ))
    }

    /// Sends without waiting for a reply or for room, like actix's `do_send`.
    ///
    /// At most once. Locally it ignores the mailbox capacity, as actix does. Remotely it
    /// never grows memory past the per-node queue bound: if the queue is full, or the node is
    /// unreachable, the message is dropped, counted in `NetworkStats::messages_dropped` and the
    /// `actix_cluster_messages_dropped_total` metric, and logged. Use [`try_send`](Self::try_send)
    /// to get the message back, or [`tell`](Self::tell) to wait for room.
    pub fn do_send<M>(&self, msg: M)
    where
        A: Handler<M>,
        M: RemoteMessage,
        A::Context: ToEnvelope<A, M>,
    {
        let target = self.resolve();
        if let Some(addr) = target.local_addr() {
            addr.do_send(msg);
            return;
        }
        let ep = &target.ep;
        let result = self
            .route::<M>(ep)
            .map_err(Some)
            .and_then(|(id, format)| ep.try_tell(id, format, &msg));
        if let Err(e) = result {
            let reason = if e.is_none() {
                "queue_full"
            } else {
                "send_failed"
            };
            if let Ok(core) = ep.core() {
                core.count_dropped(reason);
            }
            tracing::debug!(to = ?ep, reason, error = ?e, "do_send dropped a message");
        }
    }

    /// Sends without waiting; a full queue (or mailbox, locally) hands the message back.
    pub fn try_send<M>(&self, msg: M) -> Result<(), TrySendError<M>>
    where
        A: Handler<M>,
        M: RemoteMessage,
        A::Context: ToEnvelope<A, M>,
    {
        let target = self.resolve();
        if let Some(addr) = target.local_addr() {
            return addr.try_send(msg).map_err(|e| match e {
                SendError::Full(m) => TrySendError::Full(m),
                SendError::Closed(m) => TrySendError::Failed(m, RemoteError::ActorStopped),
            });
        }
        let (id, format) = match self.route::<M>(&target.ep) {
            Ok(r) => r,
            Err(e) => return Err(TrySendError::Failed(msg, e)),
        };
        match target.ep.try_tell(id, format, &msg) {
            Ok(()) => Ok(()),
            Err(None) => Err(TrySendError::Full(msg)),
            Err(Some(e)) => Err(TrySendError::Failed(msg, e)),
        }
    }

    /// Sends one-way, waiting for room in the queue instead of failing when it is full.
    /// Resolves once the message is queued for the network (or, locally, in the mailbox).
    pub fn tell<M>(&self, msg: M) -> impl Future<Output = Result<(), RemoteError>> + Send + 'static
    where
        A: Handler<M>,
        M: RemoteMessage,
        A::Context: ToEnvelope<A, M>,
    {
        let target = self.resolve();
        let local = target.local_addr();
        let route = self.route::<M>(&target.ep);
        let ep = Arc::clone(&target.ep);
        async move {
            if let Some(addr) = local {
                return match addr.try_send(msg) {
                    Ok(()) => Ok(()),
                    // Waits for the mailbox; the message is handled before this resolves.
                    Err(SendError::Full(m)) => addr
                        .send(m)
                        .await
                        .map(|_| ())
                        .map_err(|_| RemoteError::ActorStopped),
                    Err(SendError::Closed(_)) => Err(RemoteError::ActorStopped),
                };
            }
            let (id, format) = route?;
            ep.tell(id, format, msg).await
        }
    }

    /// Sends a request and waits for the typed reply, within the configured request timeout
    /// unless [`SendRequest::timeout`] overrides it.
    pub fn send<M>(&self, msg: M) -> SendRequest<M>
    where
        A: Handler<M>,
        M: RemoteMessage,
        A::Context: ToEnvelope<A, M>,
    {
        let resolved = self.resolve();
        let ep = &resolved.ep;
        let target = match (self.route::<M>(ep), resolved.local_addr()) {
            (Err(e), _) => Target::Failed(e),
            (Ok(_), Some(addr)) => Target::Local(addr.recipient()),
            (Ok((message, format)), None) => Target::Remote {
                ep: Arc::clone(ep),
                message,
                format,
            },
        };
        SendRequest {
            target,
            msg,
            timeout: None,
            default_timeout: ep.core().map(|c| c.config.timeouts.request).ok(),
        }
    }

    /// A type-erased address for one message type.
    pub fn recipient<M>(&self) -> Result<RemoteRecipient<M>, RemoteError>
    where
        A: Handler<M>,
        M: RemoteMessage,
        A::Context: ToEnvelope<A, M>,
    {
        let target = self.resolve();
        let (message, format) = self.route::<M>(&target.ep)?;
        let local = OnceLock::new();
        if let Some(addr) = target.local_addr() {
            let _ = local.set(Some(addr.recipient()));
        }
        Ok(RemoteRecipient {
            ep: Arc::clone(&target.ep),
            message,
            format,
            local,
        })
    }
}

impl<A: DistributedActor> Serialize for RemoteAddr<A> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (target, name) = match &self.inner.target {
            Binding::Fixed(r) => (Resolution::Fixed(r), None),
            Binding::Named(b) => {
                // The version sent is the one of the endpoint sent, so the receiver never
                // takes an older registration for a newer one.
                let (version, r) = b.resolve();
                (Resolution::Named(r), Some((b.name.to_string(), version)))
            }
        };
        let ep = &target.ep;
        AddrWire {
            node: ep.node.name().to_owned(),
            incarnation: ep.node.incarnation(),
            addr: ep.node_addr,
            actor: ep.actor,
            message: None,
            name,
        }
        .serialize(s)
    }
}

impl<'de, A: DistributedActor> Deserialize<'de> for RemoteAddr<A> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = AddrWire::deserialize(d)?;
        let resolved = Resolved::new(Endpoint::new(
            NodeId::new(w.node, w.incarnation),
            w.addr,
            w.actor,
            NodeCore::current(),
        ));
        Ok(match w.name {
            None => Self::fixed(resolved),
            Some((name, version)) => Self::named(name.into(), version, resolved),
        })
    }
}

enum Target<M: RemoteMessage> {
    Local(Recipient<M>),
    Remote {
        ep: Arc<Endpoint>,
        message: u32,
        format: SerializationFormat,
    },
    Failed(RemoteError),
}

/// A request in preparation; `.await` it to send and get the reply.
///
/// ```no_run
/// # use actix::prelude::*;
/// # use actix_cluster::prelude::*;
/// # use serde::{Deserialize, Serialize};
/// # use std::time::Duration;
/// # #[derive(Serialize, Deserialize)] struct Counter { n: u64 }
/// # impl Actor for Counter { type Context = Context<Self>; }
/// # #[derive(Message, Serialize, Deserialize)] #[rtype(result = "u64")] struct Add(u64);
/// # impl Handler<Add> for Counter {
/// #     type Result = u64;
/// #     fn handle(&mut self, m: Add, _: &mut Context<Self>) -> u64 { self.n += m.0; self.n }
/// # }
/// # impl DistributedActor for Counter {
/// #     const NAME: &'static str = "doc.counter";
/// #     fn messages(m: &mut Messages<Self>) { m.handle::<Add>("add"); }
/// # }
/// # async fn demo(counter: RemoteAddr<Counter>) -> Result<(), RemoteError> {
/// // The configured request timeout, or an explicit one for this call:
/// let total = counter.send(Add(5)).await?;
/// let total = counter.send(Add(5)).timeout(Duration::from_millis(200)).await?;
/// # let _ = total; Ok(()) }
/// ```
#[must_use = "a request is only sent when awaited"]
pub struct SendRequest<M: RemoteMessage> {
    target: Target<M>,
    msg: M,
    timeout: Option<Duration>,
    default_timeout: Option<Duration>,
}

impl<M: RemoteMessage> fmt::Debug for SendRequest<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendRequest")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl<M: RemoteMessage> SendRequest<M> {
    /// Overrides the configured request timeout for this call.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

impl<M: RemoteMessage> IntoFuture for SendRequest<M> {
    type Output = Result<M::Result, RemoteError>;
    type IntoFuture = BoxFuture<'static, Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        let deadline = self
            .timeout
            .or(self.default_timeout)
            .unwrap_or(Duration::from_secs(5));
        let msg = self.msg;
        match self.target {
            Target::Failed(e) => Box::pin(async move { Err(e) }),
            Target::Local(r) => Box::pin(async move {
                match tokio::time::timeout(deadline, r.send(msg)).await {
                    Err(_) => Err(RemoteError::Timeout(deadline)),
                    Ok(Ok(v)) => Ok(v),
                    Ok(Err(_)) => Err(RemoteError::ActorStopped),
                }
            }),
            Target::Remote {
                ep,
                message,
                format,
            } => Box::pin(async move {
                ep.request::<M, M::Result>(message, format, msg, deadline)
                    .await
            }),
        }
    }
}

/// A type-erased address that accepts one message type, on any node.
pub struct RemoteRecipient<M: RemoteMessage> {
    ep: Arc<Endpoint>,
    message: u32,
    format: SerializationFormat,
    local: OnceLock<Option<Recipient<M>>>,
}

impl<M: RemoteMessage> Clone for RemoteRecipient<M> {
    fn clone(&self) -> Self {
        Self {
            ep: Arc::clone(&self.ep),
            message: self.message,
            format: self.format,
            local: self.local.clone(),
        }
    }
}

impl<M: RemoteMessage> fmt::Debug for RemoteRecipient<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RemoteRecipient({:?}#{:08x})", self.ep, self.message)
    }
}

impl<M: RemoteMessage> RemoteRecipient<M> {
    /// The node hosting the actor.
    pub fn node(&self) -> &NodeId {
        &self.ep.node
    }

    fn local(&self) -> Option<Recipient<M>> {
        let core = self.ep.core().ok()?;
        self.local
            .get_or_init(|| {
                if self.ep.is_local(core) {
                    core.actors.recipient_of::<M>(self.ep.actor, self.message)
                } else {
                    None
                }
            })
            .clone()
    }

    /// Like [`RemoteAddr::do_send`].
    pub fn do_send(&self, msg: M) {
        if let Some(r) = self.local() {
            r.do_send(msg);
            return;
        }
        if let Err(e) = self.ep.try_tell(self.message, self.format, &msg) {
            let reason = if e.is_none() {
                "queue_full"
            } else {
                "send_failed"
            };
            if let Ok(core) = self.ep.core() {
                core.count_dropped(reason);
            }
            tracing::debug!(to = ?self.ep, reason, error = ?e, "do_send dropped a message");
        }
    }

    /// Like [`RemoteAddr::try_send`].
    pub fn try_send(&self, msg: M) -> Result<(), TrySendError<M>> {
        if let Some(r) = self.local() {
            return r.try_send(msg).map_err(|e| match e {
                SendError::Full(m) => TrySendError::Full(m),
                SendError::Closed(m) => TrySendError::Failed(m, RemoteError::ActorStopped),
            });
        }
        match self.ep.try_tell(self.message, self.format, &msg) {
            Ok(()) => Ok(()),
            Err(None) => Err(TrySendError::Full(msg)),
            Err(Some(e)) => Err(TrySendError::Failed(msg, e)),
        }
    }

    /// Like [`RemoteAddr::send`].
    pub fn send(&self, msg: M) -> SendRequest<M> {
        let target = match self.local() {
            Some(r) => Target::Local(r),
            None => Target::Remote {
                ep: Arc::clone(&self.ep),
                message: self.message,
                format: self.format,
            },
        };
        SendRequest {
            target,
            msg,
            timeout: None,
            default_timeout: self.ep.core().map(|c| c.config.timeouts.request).ok(),
        }
    }
}

impl<M: RemoteMessage> Serialize for RemoteRecipient<M> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        AddrWire {
            node: self.ep.node.name().to_owned(),
            incarnation: self.ep.node.incarnation(),
            addr: self.ep.node_addr,
            actor: self.ep.actor,
            message: Some((self.message, self.format)),
            name: None,
        }
        .serialize(s)
    }
}

impl<'de, M: RemoteMessage> Deserialize<'de> for RemoteRecipient<M> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = AddrWire::deserialize(d)?;
        let (message, format) = w.message.ok_or_else(|| {
            serde::de::Error::custom("an actor address is not a recipient address")
        })?;
        Ok(Self {
            ep: Arc::new(Endpoint::new(
                NodeId::new(w.node, w.incarnation),
                w.addr,
                w.actor,
                NodeCore::current(),
            )),
            message,
            format,
            local: OnceLock::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::remote::Messages;

    #[derive(Serialize, Deserialize)]
    struct Probe;

    impl Actor for Probe {
        type Context = Context<Self>;
    }

    impl DistributedActor for Probe {
        const NAME: &'static str = "addr-tests.probe";
        fn messages(_: &mut Messages<Self>) {}
    }

    fn node(name: &str) -> NodeId {
        NodeId::new(name, 1)
    }

    fn endpoint(node_name: &str, actor: u64) -> Endpoint {
        Endpoint::new(node(node_name), ([127, 0, 0, 1], 7000).into(), actor, None)
    }

    fn entry(node_name: &str, actor: u64, version: u64) -> NameEntry {
        NameEntry {
            name: "svc/probe".into(),
            node: node(node_name),
            node_addr: ([127, 0, 0, 1], 7001).into(),
            actor_type: Probe::NAME.into(),
            actor_id: actor,
            version,
        }
    }

    fn named(node_name: &str, actor: u64, version: u64) -> RemoteAddr<Probe> {
        RemoteAddr::named(
            "svc/probe".into(),
            version,
            Resolved::new(endpoint(node_name, actor)),
        )
    }

    fn binding(addr: &RemoteAddr<Probe>) -> &NameBinding<Probe> {
        match &addr.inner.target {
            Binding::Named(b) => b,
            Binding::Fixed(_) => panic!("not a named address"),
        }
    }

    fn target(binding: &NameBinding<Probe>) -> (u64, String, u64) {
        let (version, r) = binding.held();
        (version, r.ep.node.name().to_owned(), r.ep.actor)
    }

    #[test]
    fn addresses_are_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<RemoteAddr<Probe>>();
    }

    #[test]
    fn named_address_follows_a_newer_registration_of_its_name() {
        let addr = named("a", 7, 5);
        let b = binding(&addr);
        let (version, now) = b.follow(&entry("b", 3, 9), None);
        assert_eq!(version, 9);
        assert_eq!((now.ep.node.name(), now.ep.actor), ("b", 3));
        assert_eq!(target(b), (9, "b".to_owned(), 3));
        // The public accessors see the new target too (no node here, so no replica to ask).
        assert_eq!(addr.node(), node("b"));
        assert_eq!(addr.actor_id(), 3);
        assert_eq!(addr.node_addr(), ([127, 0, 0, 1], 7001).into());
    }

    #[test]
    fn named_address_never_steps_back_to_an_older_registration() {
        let addr = named("a", 7, 5);
        let b = binding(&addr);
        b.follow(&entry("b", 3, 4), None);
        assert_eq!(target(b), (5, "a".to_owned(), 7));
        b.follow(&entry("b", 3, 5), None);
        assert_eq!(target(b), (5, "a".to_owned(), 7));
    }

    #[test]
    fn named_address_ignores_the_name_registered_to_another_actor_type() {
        let addr = named("a", 7, 5);
        let b = binding(&addr);
        let mut other = entry("b", 3, 9);
        other.actor_type = "addr-tests.other".into();
        b.follow(&other, None);
        assert_eq!(target(b), (5, "a".to_owned(), 7));
    }

    #[test]
    fn same_actor_registered_again_keeps_the_cached_target() {
        let addr = named("a", 7, 5);
        let b = binding(&addr);
        let before = b.held().1;
        let mut again = entry("a", 7, 12);
        again.node_addr = before.ep.node_addr;
        let (version, after) = b.follow(&again, None);
        assert_eq!(version, 12);
        assert!(Arc::ptr_eq(&before, &after), "peer and mailbox caches kept");
    }

    #[test]
    fn named_address_travels_with_its_name_and_version() {
        let addr = named("a", 7, 5);
        binding(&addr).follow(&entry("b", 3, 9), None);
        let bytes = codec::encode(SerializationFormat::Bincode, &addr).unwrap();
        let back: RemoteAddr<Probe> = codec::decode(SerializationFormat::Bincode, &bytes).unwrap();
        assert_eq!(back.registered_name(), Some("svc/probe"));
        assert_eq!(target(binding(&back)), (9, "b".to_owned(), 3));
        assert!(back == addr);
    }

    #[test]
    fn plain_address_travels_without_a_name() {
        let addr = RemoteAddr::<Probe>::fixed(Resolved::new(endpoint("a", 7)));
        let bytes = codec::encode(SerializationFormat::Bincode, &addr).unwrap();
        let back: RemoteAddr<Probe> = codec::decode(SerializationFormat::Bincode, &bytes).unwrap();
        assert_eq!(back.registered_name(), None);
        assert_eq!((back.node(), back.actor_id()), (node("a"), 7));
    }

    #[test]
    fn truncated_named_address_is_refused_without_panicking() {
        let bytes = codec::encode(SerializationFormat::Bincode, &named("a", 7, 5)).unwrap();
        for len in 0..bytes.len() {
            let r: Result<RemoteAddr<Probe>, _> =
                codec::decode(SerializationFormat::Bincode, &bytes[..len]);
            assert!(r.is_err(), "{len} bytes decoded");
        }
    }

    #[test]
    fn named_address_equals_a_plain_one_to_the_actor_its_name_means() {
        let plain = RemoteAddr::<Probe>::fixed(Resolved::new(endpoint("b", 3)));
        let addr = named("a", 7, 5);
        assert!(addr != plain);
        binding(&addr).follow(&entry("b", 3, 9), None);
        assert!(addr == plain);
    }

    #[test]
    fn debug_of_a_named_address_shows_the_name() {
        let shown = format!("{:?}", named("a", 7, 5));
        assert!(shown.contains("\"svc/probe\""), "{shown}");
        assert!(shown.contains("@v5"), "{shown}");
    }
}
