//! Addresses of actors anywhere in the cluster: [`RemoteAddr`] and [`RemoteRecipient`].
//!
//! An address is `(node id, node address, actor id)`. It serializes to exactly that, so it can
//! travel inside messages; on arrival it attaches to the cluster node running on the thread
//! that uses it. When it points at an actor of the node using it, messages go straight to the
//! actix mailbox without being encoded.

use std::cell::RefCell;
use std::fmt;
use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
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
use crate::system::NodeCore;
use crate::transport::{Peer, PushError};
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
            other => Some(other.into_remote(peer)),
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
        .map_err(|e| e.into_remote(peer))
    }

    /// Sends a request and decodes its reply. The caller applies the deadline.
    pub(crate) async fn request<M: Serialize, R: DeserializeOwned>(
        &self,
        message: u32,
        format: SerializationFormat,
        msg: M,
    ) -> Result<R, RemoteError> {
        let core = self.core()?;
        let peer = self.peer(core)?;
        let limits = &core.config.limits;
        let (payload, compressed) = encode_owned(format, &msg, limits, peer.max_frame())?;
        drop(msg);
        let (correlation, reply) = peer.register_request();
        // Dropping this future (timeout, caller gave up) forgets the request, so a late reply
        // finds nobody and is discarded.
        let _guard = CancelOnDrop { peer, correlation };
        peer.push(wire::request_frame_len(payload.len()), |b| {
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
        .await
        .map_err(|e| e.into_remote(peer))?;
        let payload = reply.await.map_err(|_| RemoteError::NodeGone {
            node: self.node.clone(),
        })??;
        let bytes = plain_bytes(&payload, limits.max_frame_size as usize)?;
        codec::decode(payload.format, &bytes).map_err(|e| RemoteError::from_codec(e, true))
    }
}

struct CancelOnDrop<'a> {
    peer: &'a Peer,
    correlation: u64,
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        self.peer.cancel_request(self.correlation);
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
    limits: &crate::config::Limits,
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
    limits: &crate::config::Limits,
    max_frame: u32,
) -> Result<(Vec<u8>, bool), RemoteError> {
    let mut s = Scratch::default();
    let compressed = encode_checked(format, msg, limits, max_frame, &mut s)?;
    Ok((if compressed { s.packed } else { s.plain }, compressed))
}

fn encode_checked<M: Serialize>(
    format: SerializationFormat,
    msg: &M,
    limits: &crate::config::Limits,
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
}

/// The address of a [`DistributedActor`] on any node of the cluster.
///
/// Cheap to clone, `Send + Sync`, and serializable: it can be sent to other nodes inside
/// messages. Messages from one sender to one actor arrive in the order they were sent.
pub struct RemoteAddr<A: DistributedActor> {
    inner: Arc<AddrInner<A>>,
}

struct AddrInner<A: DistributedActor> {
    ep: Arc<Endpoint>,
    local: OnceLock<Option<Addr<A>>>,
    ty: OnceLock<Arc<ActorType<A>>>,
}

impl<A: DistributedActor> Clone for RemoteAddr<A> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<A: DistributedActor> fmt::Debug for RemoteAddr<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RemoteAddr<{}>({:?})", A::NAME, self.inner.ep)
    }
}

impl<A: DistributedActor> PartialEq for RemoteAddr<A> {
    fn eq(&self, other: &Self) -> bool {
        self.inner.ep.node == other.inner.ep.node && self.inner.ep.actor == other.inner.ep.actor
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
        Self::from_parts(ep, local)
    }

    pub(crate) fn remote(
        core: &Arc<NodeCore>,
        node: NodeId,
        node_addr: SocketAddr,
        actor: u64,
    ) -> Self {
        Self::from_parts(
            Endpoint::new(node, node_addr, actor, Some(Arc::clone(core))),
            OnceLock::new(),
        )
    }

    fn from_parts(ep: Endpoint, local: OnceLock<Option<Addr<A>>>) -> Self {
        Self {
            inner: Arc::new(AddrInner {
                ep: Arc::new(ep),
                local,
                ty: OnceLock::new(),
            }),
        }
    }

    /// The node hosting the actor.
    pub fn node(&self) -> &NodeId {
        &self.inner.ep.node
    }

    /// The actor's id on its node.
    pub fn actor_id(&self) -> u64 {
        self.inner.ep.actor
    }

    /// The address the hosting node was reached at when this address was made.
    pub(crate) fn node_addr(&self) -> SocketAddr {
        self.inner.ep.node_addr
    }

    /// The actix address, when the actor runs on the node using this address.
    pub fn local_addr(&self) -> Option<Addr<A>> {
        let ep = &self.inner.ep;
        let core = ep.core().ok()?;
        self.inner
            .local
            .get_or_init(|| {
                if ep.is_local(core) {
                    core.actors.addr_of::<A>(ep.actor)
                } else {
                    None
                }
            })
            .clone()
    }

    fn actor_type(&self) -> Result<&Arc<ActorType<A>>, RemoteError> {
        if let Some(t) = self.inner.ty.get() {
            return Ok(t);
        }
        let core = self.inner.ep.core()?;
        Ok(self.inner.ty.get_or_init(|| core.actors.actor_type::<A>()))
    }

    /// Wire id and format for `M`, or the error that `A` does not accept `M` remotely.
    fn route<M: 'static>(&self) -> Result<(u32, SerializationFormat), RemoteError> {
        let id = self.actor_type()?.message_id_of::<M>().ok_or_else(|| {
            RemoteError::UnknownMessageType {
                actor_type: A::NAME.to_owned(),
                message: std::any::type_name::<M>().to_owned(),
            }
        })?;
        let core = self.inner.ep.core()?;
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
        if let Some(addr) = self.local_addr() {
            addr.do_send(msg);
            return;
        }
        let result = self
            .route::<M>()
            .map_err(Some)
            .and_then(|(id, format)| self.inner.ep.try_tell(id, format, &msg));
        if let Err(e) = result {
            let reason = if e.is_none() {
                "queue_full"
            } else {
                "send_failed"
            };
            if let Ok(core) = self.inner.ep.core() {
                core.count_dropped(reason);
            }
            tracing::debug!(to = ?self.inner.ep, reason, error = ?e, "do_send dropped a message");
        }
    }

    /// Sends without waiting; a full queue (or mailbox, locally) hands the message back.
    pub fn try_send<M>(&self, msg: M) -> Result<(), TrySendError<M>>
    where
        A: Handler<M>,
        M: RemoteMessage,
        A::Context: ToEnvelope<A, M>,
    {
        if let Some(addr) = self.local_addr() {
            return addr.try_send(msg).map_err(|e| match e {
                SendError::Full(m) => TrySendError::Full(m),
                SendError::Closed(m) => TrySendError::Failed(m, RemoteError::ActorStopped),
            });
        }
        let (id, format) = match self.route::<M>() {
            Ok(r) => r,
            Err(e) => return Err(TrySendError::Failed(msg, e)),
        };
        match self.inner.ep.try_tell(id, format, &msg) {
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
        let local = self.local_addr();
        let route = self.route::<M>();
        let ep = Arc::clone(&self.inner.ep);
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
        let target = if let Some(addr) = self.local_addr() {
            match self.route::<M>() {
                Ok(_) => Target::Local(addr.recipient()),
                Err(e) => Target::Failed(e),
            }
        } else {
            match self.route::<M>() {
                Ok((message, format)) => Target::Remote {
                    ep: Arc::clone(&self.inner.ep),
                    message,
                    format,
                },
                Err(e) => Target::Failed(e),
            }
        };
        SendRequest {
            target,
            msg,
            timeout: None,
            default_timeout: self.inner.ep.core().map(|c| c.config.timeouts.request).ok(),
        }
    }

    /// A type-erased address for one message type.
    pub fn recipient<M>(&self) -> Result<RemoteRecipient<M>, RemoteError>
    where
        A: Handler<M>,
        M: RemoteMessage,
        A::Context: ToEnvelope<A, M>,
    {
        let (message, format) = self.route::<M>()?;
        let local = OnceLock::new();
        if let Some(addr) = self.local_addr() {
            let _ = local.set(Some(addr.recipient()));
        }
        Ok(RemoteRecipient {
            ep: Arc::clone(&self.inner.ep),
            message,
            format,
            local,
        })
    }
}

impl<A: DistributedActor> Serialize for RemoteAddr<A> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let ep = &self.inner.ep;
        AddrWire {
            node: ep.node.name().to_owned(),
            incarnation: ep.node.incarnation(),
            addr: ep.node_addr,
            actor: ep.actor,
            message: None,
        }
        .serialize(s)
    }
}

impl<'de, A: DistributedActor> Deserialize<'de> for RemoteAddr<A> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = AddrWire::deserialize(d)?;
        Ok(Self::from_parts(
            Endpoint::new(
                NodeId::new(w.node, w.incarnation),
                w.addr,
                w.actor,
                NodeCore::current(),
            ),
            OnceLock::new(),
        ))
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
                tokio::time::timeout(deadline, ep.request::<M, M::Result>(message, format, msg))
                    .await
                    .unwrap_or(Err(RemoteError::Timeout(deadline)))
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
