//! Virtual actors: addressed by type and id, activated on first use, passivated when idle,
//! with state that outlives each activation.
//!
//! **Activation.** A [`VirtualAddr`] names an identity (`A::NAME`, id); it is built without a
//! network round trip ([`ClusterSystem::get`]). Its first message looks the identity's
//! cluster-wide name (`virtual/<type>/<id>`) up; when nothing is bound there, it claims the
//! name in the registry, asks the node the type's placement strategy chooses to activate the
//! identity, and binds the name to that activation — the single-activation path of named
//! spawns, so that however many callers race, one activation exists. Later messages go
//! straight to the activation, through an address that follows the name.
//!
//! **State.** The hosting node loads the identity's state from its
//! [`state_store`](ClusterSystem::state_store) (key `<type>/<id>`), or starts from
//! `Default`, and hands the actor a [`Checkpoint`] that saves it. Every write is fenced by the
//! log index of the claim that led to the activation: a later activation's claim is higher,
//! and the activation writes its token into the store before it runs, so an older activation
//! still running on the far side of a partition can never overwrite its successor's state.
//!
//! **Passivation.** An activation that received no message for
//! [`VirtualActor::idle_timeout`] (or that is told to, [`VirtualAddr::deactivate`]) saves
//! what [`VirtualActor::passivating`] returns, stops, and releases its name; the next message
//! activates the identity again, from the saved state. Messages that reach an activation that
//! is passivating or gone (its node died) fail as *not delivered*, and a [`VirtualAddr`] sends
//! them again to the next activation; a message that may have been handled is never sent
//! twice.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use actix::dev::ToEnvelope;
use actix::{ActorContext, Handler};
use futures::future::LocalBoxFuture;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use super::ClusterSystem;
use super::registry::Created;
use crate::codec::SerializationFormat;
use crate::metrics;
use crate::placement::{Placement, PlacementError};
use crate::registry::state::Command;
use crate::registry::{NameEntry, Registry, RegistryError, ReleaseReason};
use crate::remote::system::{self as sys, SystemRequestError};
use crate::remote::{DistributedActor, RemoteAddr, RemoteContext, RemoteError, RemoteMessage};
use crate::state::{Expect, PersistentState, StateError, StateStore, decode_state, encode_state};

/// How long an activation may go without a message before it is passivated, unless its type
/// says otherwise ([`VirtualActor::idle_timeout`]). Shorter than Orleans' 15 minutes: an idle
/// activation holds memory and a name, and reactivating one costs a claim, a state read and a
/// bind (a few milliseconds on a LAN).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// How often a node looks for idle activations, at most (and at least, a tenth of the
/// shortest idle timeout among its activations).
const SWEEP_MAX: Duration = Duration::from_secs(30);
const SWEEP_MIN: Duration = Duration::from_millis(20);

/// Attempts at releasing a stopped activation's name before leaving it to the next caller.
const RELEASE_TRIES: usize = 4;

/// An activation whose name was never bound to it (the caller that asked for it died before
/// binding) is stopped after this many request timeouts.
const ORPHAN_AFTER: u32 = 4;

/// An actor type addressed by id, activated on demand (see the [module](self) docs).
///
/// ```no_run
/// # use actix::prelude::*;
/// # use actix_cluster::prelude::*;
/// # use actix_cluster::state::PersistentState;
/// # use actix_cluster::virtual_actor::{Checkpoint, VirtualActor};
/// #[derive(Default, serde::Serialize, serde::Deserialize)]
/// struct Score { points: u64 }
/// impl PersistentState for Score {}
///
/// struct Player { state: Score, checkpoint: Checkpoint<Score> }
/// impl Actor for Player { type Context = Context<Self>; }
///
/// #[derive(Clone, serde::Serialize, serde::Deserialize, Message)]
/// #[rtype(result = "u64")]
/// struct AddPoints(u64);
///
/// impl Handler<AddPoints> for Player {
///     type Result = ResponseFuture<u64>;
///     fn handle(&mut self, m: AddPoints, _: &mut Context<Self>) -> Self::Result {
///         self.state.points += m.0;
///         let points = self.state.points;
///         // Acknowledged only once saved.
///         let saved = self.checkpoint.save(&self.state);
///         Box::pin(async move {
///             let _ = saved.await;
///             points
///         })
///     }
/// }
///
/// impl DistributedActor for Player {
///     const NAME: &'static str = "game.player";
///     fn messages(m: &mut Messages<Self>) {
///         m.handle::<AddPoints>("add_points");
///     }
/// }
///
/// impl VirtualActor for Player {
///     type State = Score;
///     fn activate(_id: &str, state: Score, checkpoint: Checkpoint<Score>) -> Self {
///         Player { state, checkpoint }
///     }
/// }
///
/// # async fn run(system: ClusterSystem) -> Result<(), actix_cluster::virtual_actor::VirtualError> {
/// let points = system.get::<Player>("42").send(AddPoints(10)).await?;
/// # Ok(()) }
/// ```
pub trait VirtualActor: DistributedActor {
    /// What outlives an activation, saved in the node's state store.
    type State: PersistentState + Default + Send + 'static;

    /// Builds the activation of `id` from its saved state (`Default` when none was saved);
    /// `checkpoint` saves it.
    fn activate(id: &str, state: Self::State, checkpoint: Checkpoint<Self::State>) -> Self;

    /// Called in the actor's context when the activation passivates (idle, or told to): the
    /// state to save before it stops, `None` to save nothing (what the actor saved itself
    /// stays).
    fn passivating(&mut self) -> Option<Self::State> {
        None
    }

    /// Where an identity is activated: by default the owner of its id on the consistent-hash
    /// ring of the members that registered the type, so that while membership is stable an
    /// identity comes back to the node whose embedded store holds its state. (The type's
    /// [`DistributedActor::placement`] is for [`spawn`](ClusterSystem::spawn); its
    /// [`placement_constraint`](DistributedActor::placement_constraint) applies here too.)
    fn activation_placement() -> Placement {
        Placement::ConsistentHash
    }

    /// A reminder of this identity fired ([`VirtualAddr::set_reminder`]); it runs in the
    /// activation's context (activating the identity first if it was passivated) and counts
    /// as a use for idle passivation. The default ignores it.
    fn on_reminder(&mut self, name: &str, ctx: &mut actix::Context<Self>) {
        let _ = (name, ctx);
    }

    /// Time without a message after which the activation is passivated.
    fn idle_timeout() -> Duration {
        DEFAULT_IDLE_TIMEOUT
    }

    /// Format of the saved state; `None` uses the type's message format, else the node's
    /// default.
    fn state_format() -> Option<SerializationFormat> {
        None
    }
}

/// Why a virtual actor was not reached.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VirtualError {
    /// The message was sent and failed there (or could not be sent); see
    /// [`RemoteError::is_not_delivered`] for whether it may have been handled.
    #[error("virtual actor: {0}")]
    Remote(#[source] RemoteError),
    /// Claiming or binding the identity's name failed; nothing was delivered.
    #[error("virtual actor: {0}")]
    Registry(#[source] RegistryError),
    /// No member can host the type (none registered it with
    /// [`register_virtual`](crate::ClusterSystemBuilder::register_virtual), or none is Up);
    /// nothing was delivered.
    #[error("virtual actor: {0}")]
    Placement(#[source] PlacementError),
    /// The chosen node could not activate the identity (its state could not be read or
    /// decoded, or a newer activation holds it); nothing was delivered.
    #[error("virtual actor {id:?} could not be activated on {node}: {reason}")]
    Activation {
        /// The identity.
        id: String,
        /// The node asked.
        node: String,
        /// Why.
        reason: String,
    },
    /// The identity kept moving between activations until the request timeout; nothing was
    /// delivered.
    #[error("virtual actor {id:?} was not reached within {0:?}", .timeout)]
    Timeout {
        /// The identity.
        id: String,
        /// How long it was tried.
        timeout: Duration,
    },
}

impl VirtualError {
    /// Whether the message certainly was not handled (retrying cannot duplicate it).
    pub fn is_not_delivered(&self) -> bool {
        match self {
            VirtualError::Remote(source) => source.is_not_delivered(),
            _ => true,
        }
    }
}

/// The key an identity's state is saved under.
pub fn state_key(actor_type: &str, id: &str) -> String {
    format!("{actor_type}/{id}")
}

/// The cluster-wide name of an identity's activation.
pub fn activation_name(actor_type: &str, id: &str) -> String {
    format!(
        "{}{actor_type}/{id}",
        crate::registry::state::VIRTUAL_PREFIX
    )
}

/// Saves one activation's state, fenced (see the [module](self) docs). Cheap to clone; saves
/// from clones are applied one at a time, in the order they are awaited.
pub struct Checkpoint<S> {
    inner: Arc<CheckpointInner>,
    _state: PhantomData<fn(&S)>,
}

impl<S> Clone for Checkpoint<S> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            _state: PhantomData,
        }
    }
}

impl<S> std::fmt::Debug for Checkpoint<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpoint")
            .field("key", &self.inner.key)
            .field("fence", &self.inner.fence)
            .finish_non_exhaustive()
    }
}

struct CheckpointInner {
    store: Arc<dyn StateStore>,
    key: String,
    fence: u64,
    format: SerializationFormat,
    /// The version this activation last wrote (or fenced at activation); one write at a time.
    version: tokio::sync::Mutex<Option<u64>>,
    /// A newer activation holds the identity: every later save fails at once.
    superseded: AtomicBool,
    /// Calls to [`Checkpoint::save_every`].
    calls: std::sync::atomic::AtomicU64,
    /// Stops the activation once it is superseded.
    on_superseded: Box<dyn Fn() + Send + Sync>,
}

impl CheckpointInner {
    async fn write(&self, data: Option<Vec<u8>>) -> Result<u64, StateError> {
        if self.superseded.load(Ordering::Acquire) {
            return Err(self.fenced_error());
        }
        let mut version = self.version.lock().await;
        let expect = match *version {
            Some(v) => Expect::Version(v),
            None => Expect::Absent,
        };
        let result = match data {
            Some(data) => self.store.put(&self.key, data, expect, self.fence).await,
            None => self
                .store
                .delete(&self.key, expect, self.fence)
                .await
                .map(|()| version.map_or(0, |v| v + 1)),
        };
        match result {
            Ok(v) => {
                *version = Some(v);
                Ok(v)
            }
            Err(e @ (StateError::Fenced { .. } | StateError::Conflict { .. })) => {
                // Someone else wrote the key since this activation fenced it: only a newer
                // activation can have. This one must not go on.
                self.superseded.store(true, Ordering::Release);
                (self.on_superseded)();
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    fn fenced_error(&self) -> StateError {
        StateError::Fenced {
            key: self.key.clone(),
            fence: self.fence,
            current: self.fence,
        }
    }
}

impl<S: PersistentState> Checkpoint<S> {
    /// Saves `state` (encoded now) and resolves with the key's new version once the store
    /// has it. An error `Fenced` or `Conflict` means a newer activation of the identity
    /// exists: this one is being stopped, and nothing it saves from now on is kept.
    pub fn save(
        &self,
        state: &S,
    ) -> impl std::future::Future<Output = Result<u64, StateError>> + Send + 'static {
        let encoded = encode_state(state, self.inner.format);
        let inner = Arc::clone(&self.inner);
        async move { inner.write(Some(encoded?)).await }
    }

    /// Saves `state` on every `n`-th call (the first `n - 1` calls return `None` without
    /// saving, the `n`-th saves as [`save`](Self::save) does, and so on): the
    /// "after every N messages" policy, called from each handler that changes the state. What
    /// changed since the last save is lost if the node crashes; passivation saves it (through
    /// [`VirtualActor::passivating`]).
    pub fn save_every(
        &self,
        n: u32,
        state: &S,
    ) -> Option<impl std::future::Future<Output = Result<u64, StateError>> + Send + 'static> {
        let calls = self.inner.calls.fetch_add(1, Ordering::Relaxed) + 1;
        calls
            .is_multiple_of(u64::from(n.max(1)))
            .then(|| self.save(state))
    }

    /// Removes the saved state: the next activation starts from `Default`.
    pub fn clear(
        &self,
    ) -> impl std::future::Future<Output = Result<(), StateError>> + Send + 'static {
        let inner = Arc::clone(&self.inner);
        async move { inner.write(None).await.map(|_| ()) }
    }

    /// The store key.
    pub fn key(&self) -> &str {
        &self.inner.key
    }

    /// The fencing token of this activation.
    pub fn fence(&self) -> u64 {
        self.inner.fence
    }
}

// ----- the caller's side -----

/// A handle on a virtual actor's identity (see the [module](self) docs). Cheap to clone;
/// building one costs no network round trip.
pub struct VirtualAddr<A: VirtualActor> {
    system: ClusterSystem,
    id: Arc<str>,
    name: Arc<str>,
    current: Arc<Mutex<Option<RemoteAddr<A>>>>,
}

impl<A: VirtualActor> Clone for VirtualAddr<A> {
    fn clone(&self) -> Self {
        Self {
            system: self.system.clone(),
            id: Arc::clone(&self.id),
            name: Arc::clone(&self.name),
            current: Arc::clone(&self.current),
        }
    }
}

/// A [`VirtualAddr`] on the wire: the identity, nothing about where it is active.
#[derive(Serialize, Deserialize)]
struct VirtualWire {
    actor_type: String,
    id: String,
}

/// A handle travels in messages as its type and id; the receiving node makes its own handle
/// on the same identity, which activates it there if it needs to.
impl<A: VirtualActor> Serialize for VirtualAddr<A> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        VirtualWire {
            actor_type: A::NAME.to_owned(),
            id: self.id.to_string(),
        }
        .serialize(s)
    }
}

/// Decodes only where a node decodes a message (a handle needs a node to send through); the
/// actor type must match.
impl<'de, A: VirtualActor> Deserialize<'de> for VirtualAddr<A> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let w = VirtualWire::deserialize(d)?;
        if w.actor_type != A::NAME {
            return Err(D::Error::custom(format!(
                "a handle on virtual actor type {} where {} was expected",
                w.actor_type,
                A::NAME
            )));
        }
        let node = crate::remote::context::decoding_for()
            .and_then(|ctx| ctx.owner.get().and_then(Weak::upgrade))
            .and_then(|owner| owner.downcast::<super::Node>().ok())
            .ok_or_else(|| {
                D::Error::custom("a virtual actor handle can only be decoded by a running node")
            })?;
        Ok(ClusterSystem { node }.get::<A>(w.id))
    }
}

impl<A: VirtualActor> std::fmt::Debug for VirtualAddr<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VirtualAddr")
            .field("type", &A::NAME)
            .field("id", &self.id)
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Errors after which the message certainly did not reach a running activation: the
/// activation is gone (passivated, stopped, its node down) and the next one may take it.
fn activation_gone(e: &RemoteError) -> bool {
    matches!(
        e,
        RemoteError::UnknownActor { .. }
            | RemoteError::ActorStopped
            | RemoteError::NodeUnreachable { .. }
            | RemoteError::UnknownNode(_)
    )
}

impl ClusterSystem {
    /// The virtual actor `A` with identity `id`, activated on its first message (see
    /// [`virtual_actor`](crate::virtual_actor)). No network round trip.
    pub fn get<A: VirtualActor>(&self, id: impl Into<String>) -> VirtualAddr<A> {
        let id: String = id.into();
        VirtualAddr {
            system: self.clone(),
            name: Arc::from(activation_name(A::NAME, &id)),
            id: Arc::from(id),
            current: Arc::new(Mutex::new(None)),
        }
    }
}

impl<A: VirtualActor> VirtualAddr<A> {
    /// The identity.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Sends `msg` and waits for the reply, activating the identity first if it is not
    /// active. A message that did not reach an activation (it was passivating, or its node
    /// had gone) is sent again to the next one, within the request timeout; one that may have
    /// been handled is not.
    pub async fn send<M>(&self, msg: M) -> Result<M::Result, VirtualError>
    where
        A: Handler<M>,
        M: RemoteMessage + Clone,
        A::Context: ToEnvelope<A, M>,
    {
        self.deliver(msg, |addr, msg| {
            Box::pin(async move { addr.send(msg).await })
        })
        .await
    }

    /// Sends `msg` without waiting for a reply (after the activation, if one was needed).
    pub async fn tell<M>(&self, msg: M) -> Result<(), VirtualError>
    where
        A: Handler<M>,
        M: RemoteMessage + Clone,
        A::Context: ToEnvelope<A, M>,
    {
        self.deliver(msg, |addr, msg| Box::pin(addr.tell(msg)))
            .await
    }

    async fn deliver<M: Clone, R>(
        &self,
        msg: M,
        send: impl Fn(RemoteAddr<A>, M) -> futures::future::BoxFuture<'static, Result<R, RemoteError>>,
    ) -> Result<R, VirtualError> {
        let timeout = self.system.remote().request_timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        let mut pause = Duration::from_millis(2);
        loop {
            // Boxed: the activation path is deep and rare; a caller's future stays small.
            let addr = Box::pin(self.activation()).await?;
            self.touch(&addr);
            let target = addr.resolved_target();
            match send(addr, msg.clone()).await {
                Ok(r) => return Ok(r),
                Err(e) if activation_gone(&e) => {
                    lock(&self.current).take();
                    if matches!(
                        e,
                        RemoteError::UnknownActor { .. } | RemoteError::ActorStopped
                    ) {
                        // Its node answered that the activation is gone: if the name still
                        // points at it (its host could not release it), release it here.
                        // Boxed, like the activation: deep, rare, and kept out of the
                        // caller's future.
                        Box::pin(self.release_stale(&target)).await;
                    }
                    if tokio::time::Instant::now() + pause >= deadline {
                        return Err(VirtualError::Timeout {
                            id: self.id.to_string(),
                            timeout,
                        });
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(100));
                }
                Err(source) => {
                    return Err(VirtualError::Remote(source));
                }
            }
        }
    }

    /// A send that goes straight to a local mailbox passes no network path that would count
    /// it: count it for idle passivation here.
    fn touch(&self, addr: &RemoteAddr<A>) {
        let (node, actor) = addr.resolved_target();
        if &node == self.system.node_id()
            && let Some(a) = self.system.remote().actors.get(actor)
        {
            a.touch();
        }
    }

    /// Releases the identity's name if it is bound to `target`, an activation its own node
    /// reported gone (members only: client nodes cannot write).
    async fn release_stale(&self, target: &(crate::node::NodeId, u64)) {
        let Ok(registry) = self.system.registry() else {
            return;
        };
        if !registry.is_member() {
            return;
        }
        let bound_there = registry
            .local_entry(&self.name)
            .is_some_and(|e| e.node == target.0 && e.actor_id == target.1);
        if bound_there {
            release(registry, &self.name, &target.0, target.1).await;
        }
    }

    /// The current activation, activating the identity if none is bound.
    async fn activation(&self) -> Result<RemoteAddr<A>, VirtualError> {
        if let Some(addr) = lock(&self.current).clone() {
            return Ok(addr);
        }
        let system = &self.system;
        if !system
            .registry()
            .map_err(VirtualError::Registry)?
            .is_member()
        {
            let addr = self.through_member().await?;
            *lock(&self.current) = Some(addr.clone());
            return Ok(addr);
        }
        let id = Arc::clone(&self.id);
        let made = system
            .name_or_create(&self.name, |claim| async move {
                let addr = system.activate_virtual::<A>(&id, claim).await?;
                Ok::<_, VirtualError>((addr, None))
            })
            .await;
        let addr = match made {
            Ok((addr, _)) => addr,
            Err(Created::Registry(source)) => {
                return Err(VirtualError::Registry(source));
            }
            Err(Created::Make(e)) => return Err(e),
        };
        *lock(&self.current) = Some(addr.clone());
        Ok(addr)
    }

    /// A client node holds no claims: it asks a member that hosts the type to find (or make)
    /// the activation, trying each connected member in turn.
    async fn through_member(&self) -> Result<RemoteAddr<A>, VirtualError> {
        let remote = self.system.remote();
        let mut last = None;
        for m in self.system.members() {
            if m.role == crate::node::NodeRole::Client
                || &m.id == self.system.node_id()
                || m.state != crate::membership::MemberState::Up
            {
                continue;
            }
            let req = ResolveRequest {
                actor_type: A::NAME.to_owned(),
                id: self.id.to_string(),
            };
            let reply: Result<ResolveReply, RemoteError> = sys::ask(
                remote,
                m.id.clone(),
                m.addr,
                sys::id::VIRTUAL_RESOLVE,
                req,
                remote.request_timeout,
            )
            .await;
            match reply {
                Ok(ResolveReply::At {
                    node,
                    addr,
                    actor_id,
                }) => {
                    return Ok(RemoteAddr::remote(remote, node, addr, actor_id));
                }
                Ok(ResolveReply::Failed(reason)) => {
                    last = Some(VirtualError::Activation {
                        id: self.id.to_string(),
                        node: m.id.to_string(),
                        reason,
                    });
                }
                Err(e) => last = Some(VirtualError::Remote(e)),
            }
        }
        Err(
            last.unwrap_or(VirtualError::Placement(PlacementError::NoEligibleMember {
                members: 0,
            })),
        )
    }

    /// Sets reminder `name` of this identity: [`VirtualActor::on_reminder`] runs every
    /// `period` (at least 100 ms; the first time `period` from now) on the identity's
    /// activation, wherever it is, activating it if it is passivated. A reminder belongs to the
    /// identity: it lives in the registry, survives passivation, crashes and (with a durable
    /// registry) a restart of the whole cluster, and the registry leader fires each tick once;
    /// ticks missed while nobody could fire them are skipped. Setting it again replaces it.
    pub async fn set_reminder(&self, name: &str, period: Duration) -> Result<(), VirtualError> {
        let period_ms = u64::try_from(period.as_millis()).unwrap_or(u64::MAX);
        self.system
            .registry()
            .map_err(VirtualError::Registry)?
            .set_reminder(A::NAME, &self.id, name, period_ms)
            .await
            .map_err(VirtualError::Registry)
    }

    /// Removes reminder `name` of this identity (nothing if it has none).
    pub async fn drop_reminder(&self, name: &str) -> Result<(), VirtualError> {
        self.system
            .registry()
            .map_err(VirtualError::Registry)?
            .drop_reminder(A::NAME, &self.id, name)
            .await
            .map_err(VirtualError::Registry)
    }

    /// This identity's reminders and their periods, from this node's registry replica
    /// (empty on client nodes).
    pub fn reminders(&self) -> Vec<(String, Duration)> {
        self.system.registry().map_or_else(
            |_| Vec::new(),
            |r| {
                r.reminders_of(A::NAME, &self.id)
                    .into_iter()
                    .map(|(n, ms)| (n, Duration::from_millis(ms)))
                    .collect()
            },
        )
    }

    /// Passivates the activation now, if there is one: its state is saved (what
    /// [`VirtualActor::passivating`] returns), it stops and its name is released. Returns
    /// whether there was one. The next message activates the identity again.
    pub async fn deactivate(&self) -> Result<bool, VirtualError> {
        let registry_err = VirtualError::Registry;
        // Linearizable: an activation bound a moment ago, elsewhere, is found.
        let linearizable = async { self.system.registry()?.linearizable_get(&self.name).await };
        let entry = match linearizable.await {
            Ok(e) => e,
            Err(RegistryError::NotFound(_)) => return Ok(false),
            Err(e) => return Err(registry_err(e)),
        };
        lock(&self.current).take();
        let req = PassivateRequest {
            name: self.name.to_string(),
            actor_id: entry.actor_id,
        };
        if &entry.node == self.system.node_id() {
            return Ok(self
                .system
                .node
                .virtuals
                .passivate(&self.name, Some(entry.actor_id))
                .await);
        }
        let remote = self.system.remote();
        let done: bool = sys::ask(
            remote,
            entry.node.clone(),
            entry.node_addr,
            sys::id::VIRTUAL_PASSIVATE,
            req,
            remote.request_timeout,
        )
        .await
        .map_err(VirtualError::Remote)?;
        Ok(done)
    }

    /// Deactivates the identity and deletes its saved state: the next message starts it
    /// afresh. The delete holds the identity's name while it runs (fenced by that claim), so
    /// an activation racing it either comes before (and is deactivated) or after (and starts
    /// from nothing).
    pub async fn delete(&self) -> Result<(), VirtualError> {
        self.deactivate().await?;
        let store = self.system.state_store();
        let key = state_key(A::NAME, &self.id);
        let made = self
            .system
            .name_or_create::<A, Deleted, _, _>(&self.name, |claim| async move {
                // The claim is released again (the creator "fails"): nothing is bound.
                Err(Deleted(store.delete(&key, Expect::Any, claim).await))
            })
            .await;
        match made {
            Err(Created::Make(Deleted(Ok(())))) => Ok(()),
            Err(Created::Make(Deleted(Err(e)))) => Err(VirtualError::Activation {
                id: self.id.to_string(),
                node: self.system.node_id().to_string(),
                reason: format!("deleting its state: {e}"),
            }),
            Err(Created::Registry(source)) => Err(VirtualError::Registry(source)),
            // Activated by another caller meanwhile: deactivate that one and try again.
            Ok(_) => Box::pin(self.delete()).await,
        }
    }
}

/// The outcome of [`VirtualAddr::delete`]'s store delete, carried out of the creator.
struct Deleted(Result<(), StateError>);

impl ClusterSystem {
    /// Asks the member `A`'s placement chooses to activate `id`, fenced by `claim`.
    async fn activate_virtual<A: VirtualActor>(
        &self,
        id: &str,
        claim: u64,
    ) -> Result<RemoteAddr<A>, VirtualError> {
        let strategy = A::activation_placement();
        let mut constraint = A::placement_constraint();
        if !constraint.capabilities.iter().any(|c| c == A::NAME) {
            constraint.capabilities.push(A::NAME.to_owned());
        }
        let key = (strategy == Placement::ConsistentHash).then_some(id.as_bytes());
        let node = self
            .place(&strategy, &constraint, key)
            .await
            .map_err(|e| match e {
                super::SpawnError::Placement(source) => VirtualError::Placement(source),
                super::SpawnError::Remote(source) => VirtualError::Remote(source),
                super::SpawnError::Registry(source) => VirtualError::Registry(source),
                other => VirtualError::Activation {
                    id: id.to_owned(),
                    node: String::new(),
                    reason: other.to_string(),
                },
            })?;
        let req = ActivateRequest {
            actor_type: A::NAME.to_owned(),
            id: id.to_owned(),
            fence: claim,
        };
        let remote = self.remote();
        let (peer, addr) = if &node == self.node_id() {
            (node.clone(), self.local_addr())
        } else {
            self.peer_of(node.name()).map_err(VirtualError::Remote)?
        };
        let reply: ActivateReply = if &node == self.node_id() {
            self.node.virtuals.activate(req).await
        } else {
            sys::ask(
                remote,
                peer.clone(),
                addr,
                sys::id::VIRTUAL_ACTIVATE,
                req,
                remote.request_timeout,
            )
            .await
            .map_err(VirtualError::Remote)?
        };
        match reply {
            ActivateReply::Activated(actor_id) => {
                metrics::virtual_activation(A::NAME, "activated");
                Ok(if &peer == self.node_id() {
                    let local = self.remote().actors.addr_of::<A>(actor_id).ok_or_else(|| {
                        VirtualError::Activation {
                            id: id.to_owned(),
                            node: peer.to_string(),
                            reason: "the activation stopped at once".into(),
                        }
                    })?;
                    RemoteAddr::local(self.remote(), actor_id, local)
                } else {
                    RemoteAddr::remote(self.remote(), peer, addr, actor_id)
                })
            }
            ActivateReply::Failed(reason) => {
                metrics::virtual_activation(A::NAME, "failed");
                Err(VirtualError::Activation {
                    id: id.to_owned(),
                    node: node.to_string(),
                    reason,
                })
            }
        }
    }
}

// ----- the host's side -----

/// Body of [`sys::id::VIRTUAL_ACTIVATE`].
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ActivateRequest {
    actor_type: String,
    id: String,
    /// The log index of the claim the caller holds on the identity's name.
    fence: u64,
}

/// Answer to [`ActivateRequest`].
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ActivateReply {
    Activated(u64),
    Failed(String),
}

/// Body of [`sys::id::VIRTUAL_RESOLVE`]: a client node asks a member for an identity's
/// activation.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ResolveRequest {
    actor_type: String,
    id: String,
}

/// Answer to [`ResolveRequest`].
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ResolveReply {
    At {
        node: crate::node::NodeId,
        addr: std::net::SocketAddr,
        actor_id: u64,
    },
    Failed(String),
}

/// Body of [`sys::id::VIRTUAL_PASSIVATE`]; answered with whether it was hosted here.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct PassivateRequest {
    name: String,
    actor_id: u64,
}

type ActivateFn = Box<
    dyn Fn(Arc<VirtualHost>, ActivateRequest) -> LocalBoxFuture<'static, Result<Hosted, String>>
        + Send
        + Sync,
>;

type ResolveFn =
    Box<dyn Fn(ClusterSystem, String) -> LocalBoxFuture<'static, ResolveReply> + Send + Sync>;

type RemindFn = Box<
    dyn Fn(ClusterSystem, String, String) -> LocalBoxFuture<'static, Result<(), String>>
        + Send
        + Sync,
>;
type DeliverFn = Box<dyn Fn(&RemoteContext, u64, String) -> bool + Send + Sync>;

/// What a node needs to activate one virtual type, to find an activation for a client, and
/// to deliver its reminders.
pub(crate) struct VirtualKind {
    activate: ActivateFn,
    resolve: ResolveFn,
    /// Fires a reminder of an identity: finds (or makes) its activation and delivers there.
    remind: RemindFn,
    /// Runs a reminder in a local activation's context; `false` if it is not running.
    deliver: DeliverFn,
}

/// The builder's registration of `A`: its name, how to activate it, and the message
/// names that collide.
pub(crate) fn kind<A: VirtualActor>() -> (&'static str, VirtualKind, Vec<String>) {
    let activate: ActivateFn = Box::new(|host, req| Box::pin(activate_here::<A>(host, req)));
    let resolve: ResolveFn = Box::new(|system, id| {
        Box::pin(async move {
            let addr = system.get::<A>(id);
            match addr.activation().await {
                Ok(a) => {
                    let (node, actor_id) = a.resolved_target();
                    ResolveReply::At {
                        node,
                        addr: a.node_addr(),
                        actor_id,
                    }
                }
                Err(e) => ResolveReply::Failed(e.to_string()),
            }
        })
    });
    let remind: RemindFn = Box::new(|system, id, name| {
        Box::pin(async move {
            let addr = system.get::<A>(id.clone());
            let a = addr.activation().await.map_err(|e| e.to_string())?;
            let (node, actor_id) = a.resolved_target();
            if &node == system.node_id() {
                return if deliver_reminder::<A>(system.remote(), actor_id, name) {
                    Ok(())
                } else {
                    Err("the activation stopped".into())
                };
            }
            let req = RemindRequest {
                actor_type: A::NAME.to_owned(),
                id,
                name,
                actor_id: Some(actor_id),
            };
            ask_remind(system.remote(), node, a.node_addr(), req).await
        })
    });
    let deliver: DeliverFn =
        Box::new(|remote, actor_id, name| deliver_reminder::<A>(remote, actor_id, name));
    (
        A::NAME,
        VirtualKind {
            activate,
            resolve,
            remind,
            deliver,
        },
        crate::remote::message_conflicts::<A>(),
    )
}

/// Sends `req` to `node` and waits until it ran there.
async fn ask_remind(
    remote: &Arc<RemoteContext>,
    node: crate::node::NodeId,
    addr: std::net::SocketAddr,
    req: RemindRequest,
) -> Result<(), String> {
    let delivered: bool = sys::ask(
        remote,
        node,
        addr,
        sys::id::VIRTUAL_REMIND,
        req,
        remote.request_timeout,
    )
    .await
    .map_err(|e| e.to_string())?;
    if delivered {
        Ok(())
    } else {
        Err("the activation stopped before the reminder ran".into())
    }
}

/// Runs reminder `name` in local activation `actor_id` of `A`; counts as a use.
fn deliver_reminder<A: VirtualActor>(remote: &RemoteContext, actor_id: u64, name: String) -> bool {
    if let Some(a) = remote.actors.get(actor_id) {
        a.touch();
    }
    remote
        .actors
        .run_in::<A>(actor_id, move |act, ctx| act.on_reminder(&name, ctx))
}

/// Body of [`sys::id::VIRTUAL_REMIND`]: deliver reminder `name` of (`actor_type`, `id`) —
/// to local activation `actor_id` when given (answered with whether it ran), else wherever
/// the identity is active (answered once delivered).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct RemindRequest {
    actor_type: String,
    id: String,
    name: String,
    actor_id: Option<u64>,
}

/// Runs the passivation in the actor's context: the state to save goes to the sender.
type PassivateFn = Box<dyn Fn(oneshot::Sender<Option<Vec<u8>>>) -> bool + Send + Sync>;

/// One activation hosted here.
struct Hosted {
    actor_id: u64,
    idle_timeout: Duration,
    started: std::time::Instant,
    /// Stops the activation after taking the state to save (`None`: nothing to save), run in
    /// its context; `false` if it is not running.
    passivate: PassivateFn,
    checkpoint: Arc<CheckpointInner>,
}

/// The virtual activations of one node, and the types it can activate.
pub(crate) struct VirtualHost {
    kinds: HashMap<&'static str, VirtualKind>,
    remote: Weak<RemoteContext>,
    registry: Weak<Registry>,
    store: Arc<dyn StateStore>,
    format: SerializationFormat,
    /// At most this many activations; the least recently used one is passivated to make
    /// room for another.
    limit: Option<usize>,
    /// Name → activation.
    active: Mutex<HashMap<String, Hosted>>,
    sweeping: AtomicBool,
    /// The node, once it exists (set after the request handlers are registered).
    node: std::sync::OnceLock<Weak<super::Node>>,
}

impl std::fmt::Debug for VirtualHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VirtualHost")
            .field("kinds", &self.kinds.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl VirtualHost {
    pub(crate) fn new(
        kinds: HashMap<&'static str, VirtualKind>,
        limit: Option<usize>,
        remote: &Arc<RemoteContext>,
        registry: &Arc<Registry>,
        store: Arc<dyn StateStore>,
    ) -> Arc<Self> {
        Arc::new(Self {
            kinds,
            limit: limit.map(|l| l.max(1)),
            remote: Arc::downgrade(remote),
            registry: Arc::downgrade(registry),
            store,
            format: remote.default_format,
            active: Mutex::new(HashMap::new()),
            sweeping: AtomicBool::new(false),
            node: std::sync::OnceLock::new(),
        })
    }

    /// Completes the host with its node, which resolving for client nodes needs.
    pub(super) fn bind(&self, node: &Arc<super::Node>) {
        let _ = self.node.set(Arc::downgrade(node));
    }

    /// Answers a [`RemindRequest`].
    async fn remind(&self, req: RemindRequest) -> Result<bool, RemoteError> {
        let Some(kind) = self.kinds.get(req.actor_type.as_str()) else {
            return Ok(false);
        };
        if let Some(actor_id) = req.actor_id {
            let remote = self.remote.upgrade().ok_or(RemoteError::SystemStopped)?;
            return Ok((kind.deliver)(&remote, actor_id, req.name));
        }
        let node = self
            .node
            .get()
            .and_then(Weak::upgrade)
            .ok_or(RemoteError::SystemStopped)?;
        (kind.remind)(ClusterSystem { node }, req.id, req.name)
            .await
            .map(|()| true)
            .map_err(RemoteError::HandlerFailed)
    }

    /// Fires a due reminder (called by the registry leader, from its own runtime: the work
    /// goes to the node's home arbiter). A node that does not host the type hands it to a
    /// member that does.
    pub(super) fn fire(self: &Arc<Self>, actor_type: String, id: String, name: String) {
        let Some(remote) = self.remote.upgrade() else {
            return;
        };
        let host = Arc::clone(self);
        remote.actors.home.spawn_fn(move || {
            actix_rt::spawn(async move {
                let key = format!("{actor_type}/{id}/{name}");
                if let Err(e) = host.fire_here(actor_type, id, name).await {
                    tracing::debug!(reminder = key, error = %e, "a reminder's tick was not delivered");
                }
            });
        });
    }

    async fn fire_here(&self, actor_type: String, id: String, name: String) -> Result<(), String> {
        let node = self
            .node
            .get()
            .and_then(Weak::upgrade)
            .ok_or("the node is stopping")?;
        let system = ClusterSystem { node };
        if let Some(kind) = self.kinds.get(actor_type.as_str()) {
            return (kind.remind)(system, id, name).await;
        }
        let remote = system.remote();
        let host = system
            .members()
            .into_iter()
            .find(|m| {
                m.state == crate::membership::MemberState::Up
                    && m.capabilities.contains(&actor_type)
            })
            .ok_or_else(|| format!("no member Up hosts virtual actor type {actor_type}"))?;
        let req = RemindRequest {
            actor_type,
            id,
            name,
            actor_id: None,
        };
        ask_remind(remote, host.id, host.addr, req).await
    }

    /// Answers a client node's [`ResolveRequest`].
    async fn resolve(&self, req: ResolveRequest) -> ResolveReply {
        let Some(kind) = self.kinds.get(req.actor_type.as_str()) else {
            return ResolveReply::Failed(format!(
                "virtual actor type {} is not registered on this node",
                req.actor_type
            ));
        };
        let Some(node) = self.node.get().and_then(Weak::upgrade) else {
            return ResolveReply::Failed("the node is stopping".into());
        };
        (kind.resolve)(ClusterSystem { node }, req.id).await
    }

    /// Registers the node's answers to activation, passivation, resolution and reminder
    /// requests.
    pub(crate) fn register(
        self: &Arc<Self>,
        remote: &Arc<RemoteContext>,
    ) -> Result<(), SystemRequestError> {
        self.serve(
            remote,
            sys::id::VIRTUAL_ACTIVATE,
            |h, req: ActivateRequest| async move { Ok(h.activate(req).await) },
        )?;
        self.serve(
            remote,
            sys::id::VIRTUAL_REMIND,
            |h, req: RemindRequest| async move { h.remind(req).await },
        )?;
        self.serve(
            remote,
            sys::id::VIRTUAL_RESOLVE,
            |h, req: ResolveRequest| async move { Ok(h.resolve(req).await) },
        )?;
        self.serve(
            remote,
            sys::id::VIRTUAL_PASSIVATE,
            |h, req: PassivateRequest| async move {
                Ok(h.passivate(&req.name, Some(req.actor_id)).await)
            },
        )
    }

    /// Registers system request `id`, answered by `f` while the host lives (held weakly: the
    /// request table lives inside the node).
    fn serve<Req, Resp, F, Fut>(
        self: &Arc<Self>,
        remote: &Arc<RemoteContext>,
        id: u32,
        f: F,
    ) -> Result<(), SystemRequestError>
    where
        Req: serde::de::DeserializeOwned,
        Resp: Serialize,
        F: Fn(Arc<Self>, Req) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<Resp, RemoteError>> + 'static,
    {
        let host = Arc::downgrade(self);
        remote.system.request(id, move |_, req: Req| {
            let answer = host.upgrade().map(|h| f(h, req));
            async move {
                match answer {
                    Some(answer) => answer.await,
                    None => Err(RemoteError::SystemStopped),
                }
            }
        })
    }

    /// Activates `req.id` here (see [`ActivateRequest`]).
    async fn activate(self: &Arc<Self>, req: ActivateRequest) -> ActivateReply {
        let Some(kind) = self.kinds.get(req.actor_type.as_str()) else {
            return ActivateReply::Failed(format!(
                "virtual actor type {} is not registered on this node",
                req.actor_type
            ));
        };
        let name = activation_name(&req.actor_type, &req.id);
        self.make_room().await;
        match (kind.activate)(Arc::clone(self), req).await {
            Ok(hosted) => {
                let actor_id = hosted.actor_id;
                let idle = hosted.idle_timeout;
                lock(&self.active).insert(name, hosted);
                metrics::virtual_active(lock(&self.active).len());
                self.sweep_every(idle);
                ActivateReply::Activated(actor_id)
            }
            Err(reason) => ActivateReply::Failed(reason),
        }
    }

    /// At the activation limit, passivates the least recently used activations until there is
    /// room for one more.
    async fn make_room(&self) {
        let Some(limit) = self.limit else {
            return;
        };
        let Some(remote) = self.remote.upgrade() else {
            return;
        };
        loop {
            let lru = {
                let active = lock(&self.active);
                if active.len() < limit {
                    return;
                }
                active
                    .iter()
                    .max_by_key(|(_, h)| {
                        remote
                            .actors
                            .get(h.actor_id)
                            .map_or(Duration::MAX, |a| a.idle_for())
                    })
                    .map(|(name, h)| (name.clone(), h.actor_id))
            };
            let Some((name, actor_id)) = lru else {
                return;
            };
            tracing::debug!(
                name,
                "passivating the least recently used virtual actor: at the activation limit"
            );
            metrics::virtual_evicted();
            if !self.passivate(&name, Some(actor_id)).await {
                // Gone meanwhile: forget it, or the loop would pick it again.
                lock(&self.active).remove(&name);
            }
        }
    }

    /// Starts the idle sweep, if it does not run yet.
    fn sweep_every(self: &Arc<Self>, idle: Duration) {
        if self.sweeping.swap(true, Ordering::AcqRel) {
            return;
        }
        let Some(remote) = self.remote.upgrade() else {
            return;
        };
        let host = Arc::downgrade(self);
        let every = (idle / 10).clamp(SWEEP_MIN, SWEEP_MAX);
        remote.actors.home.spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(host) = host.upgrade() else {
                    return;
                };
                if host.remote.upgrade().is_none_or(|r| r.is_stopped()) {
                    return;
                }
                host.sweep().await;
            }
        });
    }

    /// Passivates idle activations, and forgets stopped or orphaned ones (releasing a name
    /// still bound to a stopped one).
    async fn sweep(self: &Arc<Self>) {
        let (Some(remote), Some(registry)) = (self.remote.upgrade(), self.registry.upgrade())
        else {
            return;
        };
        let me = remote.local.id.clone();
        let orphan_after = remote.request_timeout * ORPHAN_AFTER;
        let mut idle = Vec::new();
        let mut gone = Vec::new();
        for (name, h) in lock(&self.active).iter() {
            let actor = remote.actors.get(h.actor_id);
            let bound = registry
                .local_entry(name)
                .is_some_and(|e| e.node == me && e.actor_id == h.actor_id);
            match actor {
                Some(a) if a.alive() => {
                    if a.idle_for() >= h.idle_timeout
                        || (!bound && h.started.elapsed() >= orphan_after)
                    {
                        idle.push(name.clone());
                    }
                }
                _ => gone.push((name.clone(), h.actor_id)),
            }
        }
        for name in idle {
            self.passivate(&name, None).await;
        }
        for (name, actor_id) in gone {
            lock(&self.active).remove(&name);
            remote.actors.remove(actor_id);
            release(&registry, &name, &me, actor_id).await;
        }
        metrics::virtual_active(lock(&self.active).len());
    }

    /// Passivates the activation of `name` hosted here (`actor_id`, when given, must be
    /// it): saves its state, stops it, releases the name. Returns whether there was one.
    async fn passivate(&self, name: &str, actor_id: Option<u64>) -> bool {
        self.stop_activation(name, actor_id, true).await
    }

    /// Fencing round (from the registry's runtime): stops, saving their state, the
    /// activations this node may no longer run — all of them while it sees no working
    /// majority (`lost`: the majority may activate them elsewhere), and any whose name the
    /// replica binds to a newer activation. Their names are not released here: a node without
    /// a majority cannot write, and the majority releases them with the node, or has already
    /// bound them elsewhere.
    pub(super) fn fence(self: &Arc<Self>, lost: bool) {
        let (Some(remote), Some(registry)) = (self.remote.upgrade(), self.registry.upgrade())
        else {
            return;
        };
        let me = &remote.local.id;
        let stale: Vec<(String, u64)> = lock(&self.active)
            .iter()
            .filter(|(name, h)| {
                lost || registry.local_entry(name).is_some_and(|e| {
                    e.version > h.checkpoint.fence && !(&e.node == me && e.actor_id == h.actor_id)
                })
            })
            .map(|(name, h)| (name.clone(), h.actor_id))
            .collect();
        if stale.is_empty() {
            return;
        }
        let host = Arc::clone(self);
        remote.actors.home.spawn_fn(move || {
            actix_rt::spawn(async move {
                for (name, actor_id) in stale {
                    if host.stop_activation(&name, Some(actor_id), false).await {
                        tracing::warn!(
                            name,
                            actor = actor_id,
                            "stopped a virtual actor: this node sees no working majority, or a newer activation holds it"
                        );
                    }
                }
            });
        });
    }

    /// Stops the activation of `name` (`actor_id`, when given, must be it), saving what
    /// [`VirtualActor::passivating`] returns, and releases the name if `release`. Returns
    /// whether there was one.
    async fn stop_activation(&self, name: &str, actor_id: Option<u64>, release_name: bool) -> bool {
        let hosted = {
            let mut active = lock(&self.active);
            match active.get(name) {
                Some(h) if actor_id.is_none_or(|id| id == h.actor_id) => active.remove(name),
                _ => None,
            }
        };
        let Some(hosted) = hosted else {
            return false;
        };
        let (tx, rx) = oneshot::channel();
        if (hosted.passivate)(tx)
            && let Ok(Some(state)) = rx.await
            && let Err(e) = hosted.checkpoint.write(Some(state)).await
        {
            tracing::warn!(name, error = %e, "a passivating virtual actor's state was not saved");
        }
        // Its table entry goes too: what an activation holds is returned when it ends, and a
        // message that still arrives for it is answered as for an unknown actor (not
        // delivered, so a caller's handle sends it to the next activation).
        if let Some(remote) = self.remote.upgrade() {
            remote.actors.remove(hosted.actor_id);
        }
        if release_name
            && let (Some(remote), Some(registry)) = (self.remote.upgrade(), self.registry.upgrade())
        {
            release(&registry, name, &remote.local.id, hosted.actor_id).await;
        }
        metrics::virtual_passivation();
        tracing::debug!(name, actor = hosted.actor_id, "virtual actor passivated");
        true
    }
}

/// Releases `name` if it is still bound to `actor_id` on `node` (at that registration only:
/// never a newer activation's).
async fn release(
    registry: &Registry,
    name: &str,
    node: &crate::node::NodeId,
    actor_id: u64,
) -> bool {
    let mut pause = Duration::from_millis(20);
    for _ in 0..RELEASE_TRIES {
        // This node's replica may not show a binding made a moment ago: ask the leader's.
        let entry = match registry.local_entry(name) {
            Some(e) if &e.node == node && e.actor_id == actor_id => Ok(NameEntry::clone(&e)),
            _ => registry.linearizable_get(name).await,
        };
        let entry = match entry {
            Ok(e) => e,
            Err(RegistryError::NotFound(_)) => return true,
            Err(e) => {
                tracing::debug!(name, error = %e, "could not read a stopped virtual actor's name; trying again");
                tokio::time::sleep(pause).await;
                pause *= 2;
                continue;
            }
        };
        if &entry.node != node || entry.actor_id != actor_id {
            return true; // Bound to another activation since.
        }
        let cmd = Command::Unregister {
            name: name.to_owned(),
            version: Some(entry.version),
            reason: ReleaseReason::ActorStopped,
        };
        match registry.write(cmd).await {
            Ok(_) => return true,
            Err(e) => {
                tracing::debug!(name, error = %e, "could not release a stopped virtual actor's name; trying again");
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
        }
    }
    tracing::warn!(
        name,
        "a stopped virtual actor's name stays bound for now; the next caller that finds it stopped releases it"
    );
    false
}

/// Loads `key`'s state and writes it back with `fence`, so that no older activation can
/// write it any more; returns the state and the version written.
async fn load_and_fence<S: PersistentState + Default>(
    store: &dyn StateStore,
    key: &str,
    fence: u64,
    format: SerializationFormat,
) -> Result<(S, u64), StateError> {
    let mut tries = 0;
    loop {
        tries += 1;
        let stored = store.get(key).await?;
        let (state, data, expect) = match stored {
            Some(s) => (
                decode_state::<S>(key, &s.data)?,
                s.data,
                Expect::Version(s.version),
            ),
            None => {
                let state = S::default();
                let data = encode_state(&state, format)?;
                (state, data, Expect::Absent)
            }
        };
        match store.put(key, data, expect, fence).await {
            Ok(version) => return Ok((state, version)),
            // Written between the read and the write: read again.
            Err(StateError::Conflict { .. }) if tries < 5 => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Activates `A` with `req.id` on this node.
async fn activate_here<A: VirtualActor>(
    host: Arc<VirtualHost>,
    req: ActivateRequest,
) -> Result<Hosted, String> {
    let remote = host.remote.upgrade().ok_or("the node is stopping")?;
    let format = A::state_format()
        .or_else(A::serialization_format)
        .unwrap_or(host.format);
    let key = state_key(A::NAME, &req.id);
    let (state, version) = load_and_fence::<A::State>(&*host.store, &key, req.fence, format)
        .await
        .map_err(|e| format!("its state: {e}"))?;
    let stopper: Arc<Mutex<Option<u64>>> = Arc::new(Mutex::new(None));
    let inner = Arc::new(CheckpointInner {
        store: Arc::clone(&host.store),
        key,
        fence: req.fence,
        format,
        version: tokio::sync::Mutex::new(Some(version)),
        superseded: AtomicBool::new(false),
        calls: std::sync::atomic::AtomicU64::new(0),
        on_superseded: {
            let remote = Arc::downgrade(&remote);
            let stopper = Arc::clone(&stopper);
            Box::new(move || {
                if let (Some(remote), Some(id)) = (remote.upgrade(), *lock(&stopper)) {
                    tracing::warn!(
                        actor = id,
                        "stopping a virtual activation: a newer one holds its identity"
                    );
                    if let Some(a) = remote.actors.get(id) {
                        a.stop();
                    }
                }
            })
        },
    });
    let checkpoint = Checkpoint {
        inner: Arc::clone(&inner),
        _state: PhantomData,
    };
    let (tx, rx) = oneshot::channel();
    let id = req.id;
    let actors = Arc::clone(&remote.actors);
    let started = remote.actors.home.spawn_fn(move || {
        let actor = A::activate(&id, state, checkpoint);
        let _ = tx.send(actors.start(actor).0);
    });
    if !started {
        return Err("the node is stopping".into());
    }
    let actor_id = rx.await.map_err(|_| "the node is stopping".to_owned())?;
    *lock(&stopper) = Some(actor_id);
    let passivate = {
        let remote = Arc::downgrade(&remote);
        let format = inner.format;
        Box::new(move |reply: oneshot::Sender<Option<Vec<u8>>>| {
            remote.upgrade().is_some_and(|r| {
                r.actors.run_in::<A>(actor_id, move |act, ctx| {
                    let state = act.passivating().and_then(|s| {
                        encode_state(&s, format)
                            .inspect_err(|e| tracing::warn!(error = %e, "a passivating virtual actor's state did not encode"))
                            .ok()
                    });
                    ctx.stop();
                    let _ = reply.send(state);
                })
            })
        })
    };
    Ok(Hosted {
        actor_id,
        idle_timeout: A::idle_timeout(),
        started: std::time::Instant::now(),
        passivate,
        checkpoint: inner,
    })
}
