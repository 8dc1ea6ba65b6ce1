//! [`RemoteAddr`]: the address of an actor anywhere in the cluster, and [`SendRequest`].
//!
//! An address is `(node id, node address, actor id)`. It serializes to exactly that, so it can
//! travel inside messages; on arrival it is bound to the node that received it. When it points
//! at an actor of the node using it, messages go straight to the actix mailbox without being
//! encoded.
//!
//! An address obtained from a cluster-wide name ([`ClusterSystem::lookup`] and friends) also
//! remembers the name and the registration version it was resolved at, and follows the name:
//! see [`RemoteAddr`] for when it re-resolves and what it does while the name is unregistered.
//!
//! [`ClusterSystem::lookup`]: crate::ClusterSystem::lookup

use std::fmt;
use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::{Arc, OnceLock};
use std::task::{Context as TaskContext, Poll, ready};
use std::time::Duration;

use actix::dev::ToEnvelope;
use actix::prelude::*;
use futures::future::BoxFuture;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::actor::{ActorType, DistributedActor, RemoteMessage};
use super::context::RemoteContext;
use super::error::{RemoteError, TrySendError, short_type_name};
use super::local::LocalActor;
use super::named::{NameBinding, NameLocation};
use super::recipient::RemoteRecipient;
use super::send::{Endpoint, Pending};
use crate::codec::SerializationFormat;
use crate::node::NodeId;

/// Serialized form of both address types.
#[derive(Serialize, Deserialize)]
pub(super) struct AddrWire {
    pub(super) node: String,
    pub(super) incarnation: u64,
    pub(super) addr: SocketAddr,
    pub(super) actor: u64,
    // Always present (no `skip_serializing_if`): bincode is not self-describing.
    pub(super) message: Option<(u32, SerializationFormat)>,
    /// The registry name (and registration version) an address follows; `None` for plain
    /// addresses and recipients. Carried so that a member receiving the address follows the
    /// name too, and never steps back to a registration older than the sender's.
    pub(super) name: Option<(String, u64)>,
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
pub(super) struct Resolved<A: DistributedActor> {
    pub(super) ep: Arc<Endpoint>,
    local: OnceLock<Option<LocalTarget<A>>>,
}

/// The actix address of an actor on the node using the address, and its table entry.
type LocalTarget<A> = (Addr<A>, Arc<dyn LocalActor>);

impl<A: DistributedActor> Resolved<A> {
    pub(super) fn new(ep: Endpoint) -> Self {
        Self {
            ep: Arc::new(ep),
            local: OnceLock::new(),
        }
    }

    fn local(&self) -> Option<&LocalTarget<A>> {
        let core = self.ep.core().ok()?;
        self.local
            .get_or_init(|| {
                if !self.ep.is_local(core) {
                    return None;
                }
                let entry = core.actors.get(self.ep.actor)?;
                let addr = entry.as_any().downcast_ref::<Addr<A>>()?.clone();
                Some((addr, entry))
            })
            .as_ref()
    }

    fn local_addr(&self) -> Option<Addr<A>> {
        self.local().map(|(addr, _)| addr.clone())
    }

    /// The error for a local send to an actor that is migrating (see [`super::moving`]): its
    /// mailbox will not be handled here. The name moves with it; a later send through a named
    /// address reaches it where it went.
    fn moving(&self) -> Option<RemoteError> {
        let (_, entry) = self.local()?;
        entry.moving().then(|| RemoteError::QueueFull {
            node: self.ep.node.name().to_owned(),
        })
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
    pub(crate) fn local(core: &Arc<RemoteContext>, actor: u64, addr: Addr<A>) -> Self {
        let ep = Endpoint::new(
            core.local.id.clone(),
            core.local.addr,
            actor,
            Some(Arc::clone(core)),
        );
        let local = OnceLock::new();
        if let Some(entry) = core.actors.get(actor) {
            let _ = local.set(Some((addr, entry)));
        }
        Self::fixed(Resolved {
            ep: Arc::new(ep),
            local,
        })
    }

    pub(crate) fn remote(
        core: &Arc<RemoteContext>,
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

    /// An address that follows the name `name`, registered at `at` (see the type's docs). The
    /// caller has checked that `at` registers an actor of type `A`.
    pub(crate) fn by_name(core: &Arc<RemoteContext>, name: &str, at: &NameLocation) -> Self {
        let ep = Endpoint::new(
            at.node.clone(),
            at.node_addr,
            at.actor_id,
            Some(Arc::clone(core)),
        );
        Self::named(name.into(), at.version, Resolved::new(ep))
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

    /// The node and actor id this address points at as last resolved, read together and
    /// without consulting the registry.
    ///
    /// For an address fresh from a registry call ([`ClusterSystem::lookup`],
    /// `lookup_linearizable`, `register_name_or_get`) this is exactly the registration the
    /// call returned, even if the name has been registered again since. [`node`](Self::node)
    /// and [`actor_id`](Self::actor_id) each follow the name on their own, so when it moves
    /// between the two calls they describe two different registrations; this never mixes
    /// them. For an address not obtained by name it is `(self.node(), self.actor_id())`.
    ///
    /// [`ClusterSystem::lookup`]: crate::ClusterSystem::lookup
    pub fn resolved_target(&self) -> (NodeId, u64) {
        let held;
        let ep = match &self.inner.target {
            Binding::Fixed(r) => &r.ep,
            Binding::Named(b) => {
                held = b.held().1;
                &held.ep
            }
        };
        (ep.node.clone(), ep.actor)
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

    fn actor_type(&self, core: &Arc<RemoteContext>) -> &Arc<ActorType<A>> {
        self.inner.ty.get_or_init(|| core.actors.actor_type::<A>())
    }

    /// Wire id and format for `M`, or the error that `A` does not accept `M` remotely.
    fn route<M: 'static>(&self, ep: &Endpoint) -> Result<(u32, SerializationFormat), RemoteError> {
        let core = ep.core()?;
        let id = self.actor_type(core).message_id_of::<M>().ok_or_else(|| {
            RemoteError::UnknownMessageType {
                actor_type: A::NAME.to_owned(),
                message: std::any::type_name::<M>().to_owned(),
                rust_type: Some(short_type_name(std::any::type_name::<M>())),
                node: None,
            }
        })?;
        Ok((id, A::serialization_format().unwrap_or(core.default_format)))
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
        if let Some(e) = target.moving() {
            if let Ok(core) = target.ep.core() {
                core.count_dropped("actor_moving");
            }
            tracing::debug!(to = ?target.ep, error = %e, "do_send dropped a message");
            return;
        }
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
        if target.moving().is_some() {
            return Err(TrySendError::Full(msg));
        }
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
        let moving = target.moving();
        let route = self.route::<M>(&target.ep);
        let ep = Arc::clone(&target.ep);
        async move {
            if let Some(e) = moving {
                return Err(e);
            }
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
            (Ok(_), Some(_)) if resolved.moving().is_some() => {
                Target::Failed(resolved.moving().unwrap_or(RemoteError::ActorStopped))
            }
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
            default_timeout: ep.core().map(|c| c.request_timeout).ok(),
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
            super::context::decoding_for(),
        ));
        Ok(match w.name {
            None => Self::fixed(resolved),
            Some((name, version)) => Self::named(name.into(), version, resolved),
        })
    }
}

pub(super) enum Target<M: RemoteMessage> {
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
    pub(super) target: Target<M>,
    pub(super) msg: M,
    pub(super) timeout: Option<Duration>,
    pub(super) default_timeout: Option<Duration>,
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
    type IntoFuture = SendFuture<M>;

    fn into_future(self) -> SendFuture<M> {
        let deadline = self
            .timeout
            .or(self.default_timeout)
            .unwrap_or(Duration::from_secs(5));
        SendFuture {
            state: SendState::Start(Some((self.target, self.msg))),
            deadline,
        }
    }
}

/// The future of a [`SendRequest`]: `.await` it for the typed reply.
///
/// A remote request is queued on its first poll and then waits for the answer without any
/// allocation of its own, lock or timer (the node's network side enforces the deadline); only
/// a request that finds the send queue full, and a request to an actor on this node, run as a
/// boxed future. Dropping it withdraws the request: a late answer is discarded.
#[must_use = "a request is only sent when awaited"]
pub struct SendFuture<M: RemoteMessage> {
    state: SendState<M>,
    deadline: Duration,
}

enum SendState<M: RemoteMessage> {
    Start(Option<(Target<M>, M)>),
    Remote { ep: Arc<Endpoint>, pending: Pending },
    Boxed(BoxFuture<'static, Result<M::Result, RemoteError>>),
    Done,
}

impl<M: RemoteMessage> fmt::Debug for SendFuture<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            SendState::Start(_) => "start",
            SendState::Remote { .. } => "waiting",
            SendState::Boxed(_) => "boxed",
            SendState::Done => "done",
        };
        f.debug_struct("SendFuture")
            .field("state", &state)
            .field("deadline", &self.deadline)
            .finish()
    }
}

impl<M: RemoteMessage> SendFuture<M> {
    /// The first step: a failure, a boxed local send, or a remote request queued now (or, if
    /// the queue is full, a boxed wait for room).
    fn start(&mut self, target: Target<M>, msg: M) -> SendState<M> {
        let deadline = self.deadline;
        match target {
            Target::Failed(e) => SendState::Boxed(Box::pin(async move { Err(e) })),
            Target::Local(r) => SendState::Boxed(Box::pin(async move {
                match tokio::time::timeout(deadline, r.send(msg)).await {
                    Err(_) => Err(RemoteError::Timeout(deadline)),
                    Ok(Ok(v)) => Ok(v),
                    Ok(Err(_)) => Err(RemoteError::ActorStopped),
                }
            })),
            Target::Remote {
                ep,
                message,
                format,
            } => {
                let until = tokio::time::Instant::now() + deadline;
                match ep.start_request(message, format, &msg, until) {
                    Ok(Some(pending)) => SendState::Remote { ep, pending },
                    Ok(None) => SendState::Boxed(Box::pin(async move {
                        ep.request::<M, M::Result>(message, format, msg, deadline)
                            .await
                    })),
                    Err(e) => SendState::Boxed(Box::pin(async move { Err(e) })),
                }
            }
        }
    }
}

// The message is only ever moved out, never pinned in place, and every other field is `Unpin`
// (the boxed future is pinned in its box): so the future may move between polls whatever `M` is.
impl<M: RemoteMessage> Unpin for SendFuture<M> {}

impl<M: RemoteMessage> Future for SendFuture<M> {
    type Output = Result<M::Result, RemoteError>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        loop {
            match &mut this.state {
                SendState::Start(start) => {
                    let Some((target, msg)) = start.take() else {
                        this.state = SendState::Done;
                        continue;
                    };
                    this.state = this.start(target, msg);
                }
                SendState::Remote { ep, pending } => {
                    let answer = ready!(std::pin::Pin::new(pending).poll(cx));
                    let reply = ep.finish(answer, this.deadline);
                    this.state = SendState::Done;
                    return Poll::Ready(reply);
                }
                SendState::Boxed(f) => {
                    let reply = ready!(f.as_mut().poll(cx));
                    this.state = SendState::Done;
                    return Poll::Ready(reply);
                }
                SendState::Done => {
                    return Poll::Ready(Err(RemoteError::SystemStopped));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::codec;
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

    fn entry(node_name: &str, actor: u64, version: u64) -> NameLocation {
        NameLocation {
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
