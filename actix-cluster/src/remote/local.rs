//! The actors of one node that the network can reach: their table, node-local names,
//! spawners for types other nodes may start here, and the count of requests in flight.

use std::any::{Any, TypeId};
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use actix::prelude::*;
use actix_rt::ArbiterHandle;
use bytes::Bytes;
use serde::de::DeserializeOwned;
use tokio::sync::oneshot;

use super::actor::{
    ActorType, Delivery, DistributedActor, MessageEntry, RemoteMessage, ReplyFuture,
};
use super::context::{RemoteContext, with_scope};
use super::error::{RemoteError, short_type_name};
use super::moving::{Captured, Gate, Held, MAX_HELD, Unmovable};
use super::watch;
use crate::codec::{self, SerializationFormat};
use crate::limits::Limits;
use crate::node::NodeId;
use crate::wire::Payload;

/// A local actor, as the network sees it.
pub(crate) trait LocalActor: Send + Sync {
    fn type_name(&self) -> &'static str;
    fn alive(&self) -> bool;
    /// Delivers a tell that arrived from node `from`.
    fn tell(
        &self,
        from: &NodeId,
        message: u32,
        bytes: &[u8],
        format: SerializationFormat,
    ) -> Result<Delivery, RemoteError>;
    /// Starts a request that arrived from node `from`.
    fn request(
        &self,
        from: &NodeId,
        message: u32,
        bytes: &[u8],
        format: SerializationFormat,
    ) -> Result<ReplyFuture, RemoteError>;
    /// A boxed actix `Recipient<M>` for the message with wire id `message`.
    fn recipient(&self, message: u32) -> Option<Box<dyn Any + Send>>;
    fn as_any(&self) -> &dyn Any;
    /// Asks the actor to stop (as if it called `ctx.stop()`), if this node started it;
    /// whether it could be asked.
    fn stop(&self) -> bool;
    /// Starts moving the actor (see [`moving`]): holds its network messages from now on and
    /// asks it to serialize itself in `format` once it has handled what its mailbox holds.
    fn start_move(
        &self,
        format: SerializationFormat,
    ) -> Result<oneshot::Receiver<Result<Captured, RemoteError>>, Unmovable>;
    /// Ends a move: `Some(queue)` forwards what was held, and whatever arrives later, to the
    /// queue; `None` delivers it here, in order, and opens the gate again.
    fn end_move(&self, forward: Option<tokio::sync::mpsc::Sender<Held>>);
    /// Whether the actor is moving or has moved (its gate is not open): local senders must
    /// not put messages in its mailbox, which will not be handled.
    fn moving(&self) -> bool;
    /// Whether the actor is the source of a move, in progress or done: its entry holds or
    /// forwards its messages and must stay in the table until the move lets it go.
    fn moving_out(&self) -> bool;
    /// Makes a just-started actor the target of a move from node `source`: messages from
    /// `source` (forwarded ones) are delivered, others held until [`open`](Self::open).
    fn adopting(&self, source: NodeId);
    /// Delivers what was held while adopting, in order, and opens the gate.
    fn open(&self);
    /// How long since a message from the network last reached the actor (or
    /// [`touch`](Self::touch) was called), for idle passivation.
    fn idle_for(&self) -> std::time::Duration;
    /// Counts as a use now (a local send that went straight to the mailbox).
    fn touch(&self);
    /// The sender of closures run in the actor's context, as `&UnboundedSender<Control<A>>`.
    fn control_any(&self) -> Option<&dyn Any>;
}

/// Milliseconds since the first call in this process: a cheap clock for last-use stamps.
fn now_ms() -> u64 {
    static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let epoch = *EPOCH.get_or_init(std::time::Instant::now);
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// A closure run inside the actor's context (stop, serialize for a move).
type Control<A> = Box<dyn FnOnce(&mut A, &mut Context<A>) + Send>;

/// A message's wire name and `std::any::type_name`.
type MessageName = (&'static str, &'static str);

struct LocalEntry<A: DistributedActor> {
    addr: Addr<A>,
    ty: Arc<ActorType<A>>,
    /// Runs closures in the actor's context; `None` for actors started the actix way and
    /// exposed.
    control: Option<futures::channel::mpsc::UnboundedSender<Control<A>>>,
    /// Whether network messages enter the mailbox, wait, or go on to where the actor moved.
    gate: RwLock<Gate>,
    /// This node's name, for errors.
    node: Arc<str>,
    /// When a message last reached the actor ([`now_ms`]).
    last_use: AtomicU64,
}

impl<A: DistributedActor> LocalEntry<A> {
    /// The table entry for wire message `message`, or the error the sender should get.
    fn entry(&self, message: u32) -> Result<&MessageEntry<A>, RemoteError> {
        self.ty
            .entry(message)
            .ok_or_else(|| RemoteError::UnknownMessageType {
                actor_type: A::NAME.to_owned(),
                message: format!("#{message:08x}"),
                rust_type: None,
                // The requester fills in the node it asked.
                node: None,
            })
    }
}

impl<A: DistributedActor> LocalActor for LocalEntry<A> {
    fn type_name(&self) -> &'static str {
        A::NAME
    }

    fn alive(&self) -> bool {
        self.addr.connected() || matches!(*read(&self.gate), Gate::Forwarding(_))
    }

    fn tell(
        &self,
        from: &NodeId,
        message: u32,
        bytes: &[u8],
        format: SerializationFormat,
    ) -> Result<Delivery, RemoteError> {
        let entry = self.entry(message)?;
        self.last_use.store(now_ms(), Ordering::Relaxed);
        {
            // Held across the delivery: a move that closes the gate waits for it, so every
            // message either is in the mailbox before the move begins or is held.
            let gate = read(&self.gate);
            if gate.passes(from) {
                return (entry.tell)(&self.addr, bytes, format);
            }
        }
        let held = Held::Tell {
            message,
            format,
            bytes: bytes.to_vec(),
        };
        match self.hold(held)? {
            Some(Held::Tell { bytes, .. }) => (entry.tell)(&self.addr, &bytes, format),
            Some(_) | None => Ok(Delivery::Done),
        }
    }

    fn request(
        &self,
        from: &NodeId,
        message: u32,
        bytes: &[u8],
        format: SerializationFormat,
    ) -> Result<ReplyFuture, RemoteError> {
        let entry = self.entry(message)?;
        self.last_use.store(now_ms(), Ordering::Relaxed);
        {
            let gate = read(&self.gate);
            if gate.passes(from) {
                return (entry.request)(&self.addr, bytes, format);
            }
        }
        let (reply, answer) = oneshot::channel();
        let held = Held::Request {
            message,
            format,
            bytes: bytes.to_vec(),
            reply,
        };
        match self.hold(held)? {
            Some(_) => (entry.request)(&self.addr, bytes, format),
            None => Ok(Box::pin(async move {
                answer.await.unwrap_or(Err(RemoteError::HandlerFailed(
                    "the actor moved and its new node did not answer".into(),
                )))
            })),
        }
    }

    fn recipient(&self, message: u32) -> Option<Box<dyn Any + Send>> {
        self.entry(message).ok().map(|e| (e.recipient)(&self.addr))
    }

    fn as_any(&self) -> &dyn Any {
        &self.addr
    }

    fn idle_for(&self) -> std::time::Duration {
        let last = self.last_use.load(Ordering::Relaxed);
        std::time::Duration::from_millis(now_ms().saturating_sub(last))
    }

    fn touch(&self) {
        self.last_use.store(now_ms(), Ordering::Relaxed);
    }

    fn control_any(&self) -> Option<&dyn Any> {
        self.control.as_ref().map(|c| c as &dyn Any)
    }

    fn stop(&self) -> bool {
        self.control.as_ref().is_some_and(|c| {
            c.unbounded_send(Box::new(|_, ctx: &mut Context<A>| ctx.stop()))
                .is_ok()
        })
    }

    fn start_move(
        &self,
        format: SerializationFormat,
    ) -> Result<oneshot::Receiver<Result<Captured, RemoteError>>, Unmovable> {
        let snapshot = self.ty.snapshot.ok_or(Unmovable::NotDeclared)?;
        let control = self.control.as_ref().ok_or(Unmovable::NotOurs)?;
        if !self.addr.connected() {
            return Err(Unmovable::Stopped);
        }
        {
            let mut gate = write(&self.gate);
            if !matches!(*gate, Gate::Open) {
                return Err(Unmovable::Moving);
            }
            *gate = Gate::Holding(std::collections::VecDeque::new());
        }
        let (tx, rx) = oneshot::channel();
        let run: Control<A> = Box::new(move |_, ctx| {
            // One yield first: the actor's context polls its mailbox dry before the futures
            // it runs, so by the time this future completes, every message that entered the
            // mailbox before the gate closed has been handled.
            ctx.spawn(
                actix::fut::wrap_future::<_, A>(tokio::task::yield_now()).map(
                    move |(), act, ctx: &mut Context<A>| {
                        let bytes = match snapshot(act, format) {
                            Ok(bytes) => bytes,
                            Err(e) => {
                                let _ = tx.send(Err(RemoteError::from_codec(e, false)));
                                return;
                            }
                        };
                        let (release, released) = oneshot::channel::<bool>();
                        if tx.send(Ok(Captured { bytes, release })).is_ok() {
                            // Paused (mailbox and futures alike) until the move is decided.
                            ctx.wait(actix::fut::wrap_future::<_, A>(released).map(
                                |stop, _, ctx: &mut Context<A>| {
                                    if stop.unwrap_or(false) {
                                        ctx.stop();
                                    }
                                },
                            ));
                        }
                    },
                ),
            );
        });
        if control.unbounded_send(run).is_err() {
            self.end_move(None);
            return Err(Unmovable::Stopped);
        }
        Ok(rx)
    }

    fn moving(&self) -> bool {
        !matches!(*read(&self.gate), Gate::Open)
    }

    fn moving_out(&self) -> bool {
        matches!(*read(&self.gate), Gate::Holding(_) | Gate::Forwarding(_))
    }

    fn adopting(&self, source: NodeId) {
        let mut gate = write(&self.gate);
        if matches!(*gate, Gate::Open) {
            *gate = Gate::Adopting {
                source,
                held: std::collections::VecDeque::new(),
            };
        }
    }

    fn open(&self) {
        let mut gate = write(&self.gate);
        if let Gate::Adopting { held, .. } = std::mem::take(&mut *gate) {
            // Under the lock: before anything that arrives once the gate is open.
            for h in held {
                self.deliver(h);
            }
        }
    }

    fn end_move(&self, forward: Option<tokio::sync::mpsc::Sender<Held>>) {
        let mut gate = write(&self.gate);
        let held = match std::mem::take(&mut *gate) {
            Gate::Holding(held) => held,
            other => {
                *gate = other;
                return;
            }
        };
        match forward {
            Some(queue) => {
                // The queue has room for everything held (`MAX_HELD`).
                for h in held {
                    if let Err(e) = queue.try_send(h) {
                        fail_held(e.into_inner(), &self.node);
                    }
                }
                *gate = Gate::Forwarding(queue);
            }
            // Delivered under the lock, before anything that arrives after the gate opens.
            None => {
                for h in held {
                    self.deliver(h);
                }
            }
        }
    }
}

impl<A: DistributedActor> LocalEntry<A> {
    /// Holds or forwards `held` if the gate is not open; gives it back if it is (it opened
    /// meanwhile: the caller delivers it).
    fn hold(&self, held: Held) -> Result<Option<Held>, RemoteError> {
        let mut gate = write(&self.gate);
        match &mut *gate {
            Gate::Open => Ok(Some(held)),
            Gate::Holding(q) | Gate::Adopting { held: q, .. } if q.len() >= MAX_HELD => {
                Err(RemoteError::QueueFull {
                    node: self.node.to_string(),
                })
            }
            Gate::Holding(q) | Gate::Adopting { held: q, .. } => {
                q.push_back(held);
                Ok(None)
            }
            Gate::Forwarding(queue) => match queue.try_send(held) {
                Ok(()) => Ok(None),
                Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => {
                    Err(RemoteError::QueueFull {
                        node: self.node.to_string(),
                    })
                }
                Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => {
                    Err(RemoteError::ActorStopped)
                }
            },
        }
    }

    /// Delivers a held message to this actor after a move that did not happen.
    fn deliver(&self, held: Held) {
        match held {
            Held::Mark(reached) => {
                let _ = reached.send(());
            }
            Held::Tell {
                message,
                format,
                bytes,
            } => match self.ty.entry(message) {
                Some(e) => match (e.tell)(&self.addr, &bytes, format) {
                    Ok(Delivery::Done) => {}
                    // Queued past the capacity; nothing to wait for here.
                    Ok(Delivery::Wait(wait)) => drop(actix_rt::spawn(wait)),
                    Err(e) => tracing::debug!(error = %e, "held tell not delivered"),
                },
                None => tracing::debug!(message, "held tell of an unknown message"),
            },
            Held::Request {
                message,
                format,
                bytes,
                reply,
            } => {
                let started = self
                    .entry(message)
                    .and_then(|e| (e.request)(&self.addr, &bytes, format));
                match started {
                    Ok(fut) => drop(actix_rt::spawn(async move {
                        let _ = reply.send(fut.await);
                    })),
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
        }
    }
}

/// A held message that could not be forwarded: a request is answered with the error, a tell
/// is logged (the queue had room for all held messages, so this does not happen).
fn fail_held(held: Held, node: &str) {
    match held {
        Held::Mark(reached) => {
            let _ = reached.send(());
        }
        Held::Request { reply, .. } => {
            let _ = reply.send(Err(RemoteError::QueueFull {
                node: node.to_owned(),
            }));
        }
        Held::Tell { message, .. } => {
            tracing::warn!(message, "a held tell could not be forwarded after a move");
        }
    }
}

/// Starts a shipped actor of one type: decodes its state and starts it on the node's home
/// arbiter, answering with its id.
pub(crate) type SpawnerFn = Box<
    dyn Fn(
            &Arc<RemoteContext>,
            SerializationFormat,
            Bytes,
            oneshot::Sender<Result<u64, RemoteError>>,
        ) + Send
        + Sync,
>;

/// Builds the function that starts a shipped `A` on this node.
/// Wire names that two of `A`'s messages share (empty when its table is sound).
pub(crate) fn message_conflicts<A: DistributedActor>() -> Vec<String> {
    ActorType::<A>::build().1
}

pub(crate) fn spawner<A: DistributedActor + DeserializeOwned>()
-> (&'static str, SpawnerFn, Vec<String>) {
    let (_, conflicts) = ActorType::<A>::build();
    let spawn: SpawnerFn = Box::new(|ctx, format, bytes, reply| {
        let ctx = Arc::clone(ctx);
        let home = ctx.actors.home.clone();
        // Decoded on the home arbiter, so `A` need not be `Send`; addresses inside the state
        // are bound to this node.
        home.spawn_fn(move || {
            let result = with_scope(&ctx, || codec::decode::<A>(format, &bytes))
                .map_err(|e| RemoteError::from_codec(e, true))
                .map(|actor| ctx.actors.start(actor).0);
            let _ = reply.send(result);
        });
    });
    (A::NAME, spawn, conflicts)
}

/// The actors of this node that the network can reach.
pub(crate) struct LocalActors {
    /// This node's name, for the errors it reports about its own actors.
    node: String,
    actors: RwLock<HashMap<u64, Arc<dyn LocalActor>>>,
    names: RwLock<HashMap<String, u64>>,
    spawners: HashMap<&'static str, SpawnerFn>,
    types: Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>,
    /// Actor type → message id → (wire name, Rust type) of the types this node has used: how
    /// an error naming a message by its id is turned back into its name.
    message_names: RwLock<HashMap<&'static str, HashMap<u32, MessageName>>>,
    /// (actor type, message) pairs already logged as not declared here; bounded.
    unknown_logged: Mutex<std::collections::HashSet<(String, String)>>,
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
            message_names: RwLock::new(HashMap::new()),
            unknown_logged: Mutex::new(std::collections::HashSet::new()),
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
                // Merged: two Rust types may share a wire type name (say, two builds' views
                // of one actor in a test); each adds what it declares.
                write(&self.message_names)
                    .entry(A::NAME)
                    .or_default()
                    .extend(ty.names().map(|(id, name, rust)| (id, (name, rust))));
                Arc::new(ty)
            })
            .clone();
        drop(types);
        // The map is keyed by `TypeId::of::<A>()`, so the downcast cannot fail; rebuilding
        // keeps this panic-free all the same.
        any.downcast::<ActorType<A>>()
            .unwrap_or_else(|_| Arc::new(ActorType::<A>::build().0))
    }

    /// Completes an error naming a message by its id with the name and Rust type this
    /// node's build declares for it, so that the error says what to add where.
    pub(crate) fn explain(&self, e: RemoteError) -> RemoteError {
        match e {
            RemoteError::UnknownMessageType {
                actor_type,
                message,
                rust_type: None,
                node,
            } => {
                let known = message
                    .strip_prefix('#')
                    .and_then(|hex| u32::from_str_radix(hex, 16).ok())
                    .and_then(|id| {
                        read(&self.message_names)
                            .get(actor_type.as_str())?
                            .get(&id)
                            .copied()
                    });
                let (message, rust_type) = match known {
                    Some((name, rust)) => (name.to_owned(), Some(short_type_name(rust))),
                    None => (message, None),
                };
                RemoteError::UnknownMessageType {
                    actor_type,
                    message,
                    rust_type,
                    node,
                }
            }
            other => other,
        }
    }

    /// Whether `e` reports, for the first time, a message from a peer that an actor type of
    /// this node does not declare; if so, the actor type and the message's wire id. Bounded
    /// (see [`MAX_UNKNOWN_LOGGED`]), and never for system requests (a newer peer's are
    /// expected).
    pub(crate) fn first_unknown(&self, e: &RemoteError) -> Option<(String, u32)> {
        let RemoteError::UnknownMessageType {
            actor_type,
            message,
            ..
        } = e
        else {
            return None;
        };
        if actor_type == super::system::SYSTEM_ACTOR_TYPE {
            return None;
        }
        let id = message
            .strip_prefix('#')
            .and_then(|hex| u32::from_str_radix(hex, 16).ok())?;
        first_report(
            &mut self
                .unknown_logged
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
            (actor_type.clone(), message.clone()),
        )
        .then(|| (actor_type.clone(), id))
    }

    /// The wire name and Rust type this node declares for message `id` of `actor_type`.
    pub(crate) fn message_name(&self, actor_type: &str, id: u32) -> Option<(String, String)> {
        read(&self.message_names)
            .get(actor_type)?
            .get(&id)
            .map(|(name, rust)| ((*name).to_owned(), short_type_name(rust)))
    }

    /// Logs that node `from` sent message `id` that `actor_type` on this node does not
    /// declare, with the fix: named as the sender declares it (`known`, asked from it), or by
    /// its id when the sender could not say.
    pub(crate) fn warn_unknown(
        &self,
        from: &str,
        actor_type: &str,
        id: u32,
        known: Option<(String, String)>,
    ) {
        match known {
            Some((name, rust)) => tracing::warn!(
                node = %from,
                "{actor_type} received message {name:?} ({rust}) from node {from}, which \
                 declares it, but {actor_type} on this node does not: add \
                 m.handle::<{rust}>(\"{name}\") to the messages() of {actor_type} here, or run \
                 the same build on every node"
            ),
            None => tracing::warn!(
                node = %from,
                "{actor_type} received message #{id:08x} from node {from}, which declares it, \
                 but {actor_type} on this node does not: add m.handle::<..>(\"<its name>\") for \
                 it to the messages() of {actor_type} here (the caller's error names the \
                 message), or run the same build on every node"
            ),
        }
    }

    /// Starts `actor` on the current arbiter with the cluster's mailbox capacity and makes it
    /// reachable from the network.
    pub(crate) fn start<A: DistributedActor>(&self, actor: A) -> (u64, Addr<A>) {
        let cap = self.limits.mailbox_capacity;
        let (control, controls) = futures::channel::mpsc::unbounded::<Control<A>>();
        let addr = A::create(move |ctx| {
            ctx.set_mailbox_capacity(cap);
            // Closures from the table (a stop when a supervised actor is fenced, a snapshot
            // for a move) run in the actor's context; a dropped sender ends the stream.
            ctx.spawn(
                actix::fut::wrap_stream::<_, A>(controls)
                    .map(|run: Control<A>, act, ctx: &mut Context<A>| run(act, ctx))
                    .finish(),
            );
            actor
        });
        (self.insert_entry(addr.clone(), Some(control)), addr)
    }

    /// Makes an already running actor reachable from the network.
    pub(crate) fn insert<A: DistributedActor>(&self, addr: Addr<A>) -> u64 {
        self.insert_entry(addr, None)
    }

    fn insert_entry<A: DistributedActor>(
        &self,
        addr: Addr<A>,
        control: Option<futures::channel::mpsc::UnboundedSender<Control<A>>>,
    ) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let entry = LocalEntry {
            addr,
            ty: self.actor_type::<A>(),
            control,
            gate: RwLock::new(Gate::Open),
            node: Arc::from(self.node.as_str()),
            last_use: AtomicU64::new(now_ms()),
        };
        write(&self.actors).insert(id, Arc::new(entry));
        id
    }

    /// Runs `f` in the context of local actor `id`, if it is an `A` started by this table
    /// and still running; `false` otherwise.
    pub(crate) fn run_in<A: DistributedActor>(
        &self,
        id: u64,
        f: impl FnOnce(&mut A, &mut Context<A>) + Send + 'static,
    ) -> bool {
        let Some(actor) = self.get(id) else {
            return false;
        };
        actor
            .control_any()
            .and_then(|c| c.downcast_ref::<futures::channel::mpsc::UnboundedSender<Control<A>>>())
            .is_some_and(|c| c.unbounded_send(Box::new(f)).is_ok())
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

    pub(crate) fn lookup(&self, node: &str, id: u64) -> Result<Arc<dyn LocalActor>, RemoteError> {
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
    pub(crate) fn plain<'a>(&self, payload: &'a Payload) -> Result<Cow<'a, [u8]>, RemoteError> {
        plain_bytes(payload, self.limits.max_frame_size as usize)
            .map_err(|e| RemoteError::from_codec(e, true))
    }

    /// The spawner registered for actor type `actor_type`.
    pub(crate) fn spawner(&self, actor_type: &str) -> Option<&SpawnerFn> {
        self.spawners.get(actor_type)
    }

    /// This node's name, for errors about its own actors.
    pub(crate) fn node(&self) -> &str {
        &self.node
    }
}

/// Distinct (actor type, message) pairs logged as unknown; past this, no more are logged, so
/// that a peer sending made-up ids cannot grow memory or flood the log.
const MAX_UNKNOWN_LOGGED: usize = 64;

/// Whether `key` is reported for the first time (and there is room to remember it).
fn first_report(
    logged: &mut std::collections::HashSet<(String, String)>,
    key: (String, String),
) -> bool {
    logged.len() < MAX_UNKNOWN_LOGGED && logged.insert(key)
}

/// The payload's plain bytes: borrowed, or decompressed with the declared size checked first.
pub(crate) fn plain_bytes(
    payload: &Payload,
    limit: usize,
) -> Result<Cow<'_, [u8]>, codec::CodecError> {
    if payload.compressed {
        codec::decompress(&payload.bytes, limit).map(Cow::Owned)
    } else {
        Ok(Cow::Borrowed(&payload.bytes[..]))
    }
}

/// Counts one request in [`LocalActors::requests_in_flight`] until dropped.
pub(crate) struct InFlight(Arc<LocalActors>);

impl InFlight {
    pub(crate) fn enter(actors: &Arc<LocalActors>) -> Self {
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
    fn an_unknown_message_is_logged_once_per_actor_type_and_message() {
        let mut logged = std::collections::HashSet::new();
        let key = |t: &str, m: &str| (t.to_owned(), m.to_owned());
        assert!(first_report(&mut logged, key("a", "#01")));
        assert!(!first_report(&mut logged, key("a", "#01")), "once");
        assert!(first_report(&mut logged, key("a", "#02")));
        assert!(first_report(&mut logged, key("b", "#01")));
        for i in 0..1000 {
            first_report(&mut logged, key("c", &format!("#{i}")));
        }
        assert_eq!(logged.len(), MAX_UNKNOWN_LOGGED, "bounded");
    }
}
