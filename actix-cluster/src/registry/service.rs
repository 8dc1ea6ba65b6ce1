//! The registry of one node: routes writes to the Raft leader (directly, or through a member
//! for client nodes), serves other nodes' registry requests, and runs the background round
//! (bootstrap, leader reconciliation, release of names whose actor stopped).

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::time::Instant as TokioInstant;

use super::migrate::AdoptKey;
use super::raft::network as raft_network;
use super::raft::node::{self as raft_node, LocalError};
use super::raft::{RaftHandle, RaftNode};
use super::replica::Replica;
use super::state::{Command, Outcome, Supervision};
use super::supervise::Supervisor;
use super::{
    NameEntry, RecoveryReport, RegistryConfig, RegistryError, RegistryStatus, ReleaseReason,
};
use crate::membership::driver::Driver;
use crate::membership::{Member, MemberState};
use crate::node::{Architecture, NodeId, NodeRole};
use crate::remote::RemoteContext;
use crate::remote::RemoteError;
use crate::remote::system::{self as sys, SystemRequestError};
use crate::transport::{Channel, ChannelError, Peer, PeerEvent, PeerObserver};

/// Pause between retries while a leader is elected or a forward target is found.
const RETRY: Duration = Duration::from_millis(50);

/// A registry request from another node (system request [`sys::id::REGISTRY`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum RegistryRequest {
    /// Propose `cmd`. `forward`: the receiver may forward to the leader (requests from client
    /// nodes); members send `false` and forward themselves, so a write takes at most one hop.
    Write { cmd: Command, forward: bool },
    /// The leader confirms leadership and answers the index a linearizable read must see.
    ReadIndex,
    /// One name from the receiver's replica, optionally linearizable.
    Get { name: String, linearizable: bool },
    /// Names under a prefix from the receiver's replica.
    List { prefix: String },
    /// The receiver's Raft id and view of the registry.
    Status,
    /// Operator action: remove `node`'s voter for good. Forwarded like a write.
    RemoveVoter { node: String, forward: bool },
    /// Operator action: re-form the registry from the receiver's replica after a lost
    /// majority.
    Recover,
    /// The leader asks the node it chose to start supervised `name` and complete claim
    /// `token` (idempotent per token).
    Activate {
        name: String,
        token: u64,
        supervision: Supervision,
    },
    /// The spawner tells the node it placed a supervised actor on that actor `actor_id` holds
    /// `name` since log index `version` (fencing covers it before the replica has it).
    Hosted {
        name: String,
        actor_id: u64,
        version: u64,
    },
    /// Move the actor registered as `name` (registration `version`, hosted by the receiver)
    /// to node `to`. Answered with `Migrated`.
    Migrate {
        name: String,
        version: u64,
        to: String,
    },
    /// The source of a move asks the target to start `name`'s actor from `state`, unbound.
    /// Answered with the actor id (`Activated`); idempotent per (`name`, `version`,
    /// `attempt`). A later attempt from the same registration replaces an earlier one's
    /// actor (the source abandoned that one, and its state is older); an earlier attempt
    /// arriving after a later one is refused.
    Adopt {
        name: String,
        version: u64,
        attempt: u64,
        from: NodeId,
        actor_type: String,
        format: crate::codec::SerializationFormat,
        state: Vec<u8>,
        supervised: bool,
    },
    /// The source tells the target how the move of `name` from `version` ended: `stop` (it
    /// did not commit) stops the adopted actor; otherwise the adopted actor's gate opens
    /// (everything forwarded before this request has been delivered to it).
    Abandon {
        name: String,
        version: u64,
        attempt: u64,
        stop: bool,
    },
    /// Answer once this node's replica has applied log index `index` (or at the request
    /// timeout): what a migration's source waits for before the target takes messages
    /// sent to it directly. Answered with `Index`.
    Applied { index: u64 },
}

/// Answer to a [`RegistryRequest`].
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum RegistryReply {
    Outcome(Outcome),
    Index(u64),
    Entry(Option<NameEntry>),
    Entries(Vec<NameEntry>),
    Status {
        raft_id: Option<u64>,
        initialized: bool,
        status: RegistryStatus,
    },
    Recovered(RecoveryReport),
    /// The actor id an activation started.
    Activated(u64),
    Failed(Failure),
    /// Where a migrated name points now, or why it did not move.
    Migrated(Result<NameEntry, super::migrate::MigrateFailure>),
}

/// Why a remote registry request failed.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Failure {
    NotLeader(Option<String>),
    NoQuorum,
    Timeout,
    Unavailable(String),
    NotFormed { have: u32, expect: u32 },
    Refused(String),
    Exhausted { name: String, restarts: u32 },
}

impl Failure {
    pub(super) fn into_error(self, timeout: Duration) -> RegistryError {
        match self {
            Failure::NotLeader(_) => RegistryError::Unavailable("no registry leader".into()),
            Failure::NoQuorum => RegistryError::NoQuorum,
            Failure::Timeout => RegistryError::Timeout(timeout),
            Failure::Unavailable(s) => RegistryError::Unavailable(s),
            Failure::NotFormed { have, expect } => RegistryError::NotFormed {
                have: have as usize,
                expect: expect as usize,
            },
            Failure::Refused(why) => RegistryError::Refused(why),
            Failure::Exhausted { name, restarts } => {
                RegistryError::RestartsExhausted { name, restarts }
            }
        }
    }

    pub(super) fn from_error(e: RegistryError) -> Self {
        match e {
            RegistryError::NoQuorum => Failure::NoQuorum,
            RegistryError::Timeout(_) => Failure::Timeout,
            RegistryError::NotFormed { have, expect } => Failure::NotFormed {
                have: u32::try_from(have).unwrap_or(u32::MAX),
                expect: u32::try_from(expect).unwrap_or(u32::MAX),
            },
            RegistryError::Refused(why) => Failure::Refused(why),
            RegistryError::RestartsExhausted { name, restarts } => {
                Failure::Exhausted { name, restarts }
            }
            other => Failure::Unavailable(other.to_string()),
        }
    }
}

/// What [`Registry::through_leader`] may try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// A read: any failed attempt, until the deadline.
    UntilDeadline,
    /// A write: only attempts that certainly proposed nothing.
    UntilProposed,
}

/// The registry of one node.
pub(crate) struct Registry {
    pub(crate) replica: Arc<Replica>,
    pub(crate) config: RegistryConfig,
    /// Set once, when this member's Raft node has started (never on client nodes).
    raft: OnceLock<RaftHandle>,
    ctx: RegistryContext,
    /// Restarts of supervised names (leader) and their activations (target).
    pub(super) supervisor: Supervisor,
    /// Target of migrations: actors started for moves not settled yet.
    pub(super) adopted: super::migrate::Adopted,
    /// Leader: moves of consistent-hash actors to their new owners.
    pub(super) rebalancer: super::rebalance::Rebalancer,
    /// Leader: delivers due reminders (set by the system layer).
    pub(super) reminder_sink: OnceLock<super::remind::ReminderSink>,
    /// Told every fencing round whether this node must stop what only a working majority
    /// may keep running (set by the system layer, for virtual actor activations).
    fence_hook: OnceLock<Box<dyn Fn(bool) + Send + Sync>>,
    /// Leader: when each node whose names are due for release was first seen so.
    down_since: Mutex<HashMap<NodeId, Instant>>,
}

/// Why the registry could not plug into its node.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WiringError {
    #[error(transparent)]
    Channel(#[from] ChannelError),
    #[error(transparent)]
    System(#[from] SystemRequestError),
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("raft", &self.raft.get())
            .finish_non_exhaustive()
    }
}

/// What the registry needs of its node.
pub(crate) struct RegistryContext {
    /// The remote layer: this node's identity, its actors, and requests to other nodes.
    pub(crate) remote: Arc<RemoteContext>,
    /// `None` on client nodes, which are no members.
    pub(crate) membership: Option<Arc<Driver>>,
    /// Who may vote: every member, or masters only.
    pub(crate) architecture: Architecture,
    /// Asked first by client reads (`ctl names --seed X` shows X's replica).
    pub(crate) seeds: Vec<SocketAddr>,
    /// Configured master addresses (the centralized default of `bootstrap_expect`).
    pub(crate) masters: usize,
}

impl RegistryContext {
    fn states(&self) -> Vec<(NodeId, crate::membership::MemberState)> {
        self.membership
            .as_ref()
            .map(|m| m.states())
            .unwrap_or_default()
    }

    fn members(&self) -> Vec<Member> {
        self.membership
            .as_ref()
            .map(|m| m.members())
            .unwrap_or_default()
    }

    fn me(&self) -> &NodeId {
        &self.remote.local.id
    }

    /// Members that may vote and are Up, this node included.
    fn eligible_up(&self, members: &[Member]) -> usize {
        members
            .iter()
            .filter(|m| raft_node::eligible(self.architecture, m))
            .count()
    }
}

impl Registry {
    /// The registry of a node; `replica` is the one the node's named addresses read.
    pub(crate) fn new(
        config: RegistryConfig,
        ctx: RegistryContext,
        replica: Arc<Replica>,
    ) -> Arc<Self> {
        Arc::new(Self {
            replica,
            config,
            raft: OnceLock::new(),
            ctx,
            supervisor: Supervisor::default(),
            adopted: super::migrate::Adopted::default(),
            rebalancer: super::rebalance::Rebalancer::default(),
            reminder_sink: OnceLock::new(),
            fence_hook: OnceLock::new(),
            down_since: Mutex::new(HashMap::new()),
        })
    }

    /// Plugs the registry into its node: Raft frames and peer events from the transport, and
    /// other nodes' registry requests. Before the node starts. Registered weakly: the
    /// transport and the request table must not keep the registry alive.
    pub(crate) fn register(self: &Arc<Self>) -> Result<(), WiringError> {
        let transport = &self.ctx.remote.transport;
        transport.register_channel(raft_network::CHANNEL, Arc::new(Arc::downgrade(self)))?;
        transport.observe_peers(Arc::new(Arc::downgrade(self)))?;
        let weak = Arc::downgrade(self);
        self.ctx
            .remote
            .system
            .request(sys::id::REGISTRY, move |_, req: RegistryRequest| {
                let registry = weak.upgrade();
                async move {
                    match registry {
                        Some(r) => Ok(r.serve(req).await),
                        None => Err(RemoteError::SystemStopped),
                    }
                }
            })?;
        Ok(())
    }

    /// Starts this member's Raft node. Blocking (opens storage): run off actor threads.
    pub(crate) fn start_raft(self: &Arc<Self>) -> std::io::Result<()> {
        let (handle, fresh) = raft_node::start(
            &self.config,
            self.ctx.me().name(),
            &self.ctx.remote.transport,
            Arc::clone(&self.replica),
        )?;
        handle.spawn(background(Arc::downgrade(self), fresh));
        handle.spawn(fencing(Arc::downgrade(self)));
        let _ = self.raft.set(handle);
        Ok(())
    }

    /// This node.
    pub(super) fn ctx_me(&self) -> &NodeId {
        self.ctx.me()
    }

    /// Where this node listens.
    pub(super) fn ctx_addr(&self) -> SocketAddr {
        self.ctx.remote.local.addr
    }

    /// Where incarnation `node` listens, while it is this node's peer.
    pub(super) fn ctx_peer(&self, node: &NodeId) -> Option<SocketAddr> {
        self.ctx
            .remote
            .transport
            .peer_by_name(node.name())
            .filter(|p| &p.id == node)
            .map(|p| p.addr())
    }

    /// The member table as this node sees it (empty on client nodes).
    pub(super) fn ctx_members(&self) -> Vec<Member> {
        self.ctx.members()
    }

    pub(super) fn remote(&self) -> &Arc<RemoteContext> {
        &self.ctx.remote
    }

    pub(super) fn raft_handle(&self) -> Option<&RaftHandle> {
        self.raft.get()
    }

    /// Sends `req` to incarnation `node` at `addr`.
    pub(super) async fn ask_peer_at(
        &self,
        node: NodeId,
        addr: SocketAddr,
        req: RegistryRequest,
        deadline: TokioInstant,
    ) -> Result<RegistryReply, RegistryError> {
        ask_peer(&self.ctx.remote, node, addr, req, deadline).await
    }

    /// Stops local actor `id` (one this node started) and forgets it; whether it was asked
    /// to stop.
    pub(super) fn stop_local(&self, id: u64) -> bool {
        let actors = &self.ctx.remote.actors;
        let Some(actor) = actors.get(id) else {
            return false;
        };
        let stopped = actor.stop();
        // A migrating or migrated actor's entry holds or forwards its messages; it goes when
        // the move ends (`registry::migrate`), not here.
        if !actor.moving_out() {
            actors.remove(id);
        }
        stopped
    }

    /// Tells the node hosting supervised `entry` that its actor holds the name (see
    /// [`RegistryRequest::Hosted`]); on this node, records it. Best effort: the node also
    /// learns it from its replica.
    pub(crate) async fn tell_hosted(&self, entry: &NameEntry) {
        if &entry.node == self.ctx.me() {
            self.note_hosted(&entry.name, entry.actor_id, entry.version);
            return;
        }
        let req = RegistryRequest::Hosted {
            name: entry.name.clone(),
            actor_id: entry.actor_id,
            version: entry.version,
        };
        let deadline = self.deadline();
        if let Err(e) = ask_peer(
            &self.ctx.remote,
            entry.node.clone(),
            entry.node_addr,
            req,
            deadline,
        )
        .await
        {
            tracing::debug!(name = entry.name, node = %entry.node, "telling the host of a supervised actor: {e}");
        }
    }

    /// Whether this node holds a replica (every member does; client nodes do not).
    pub(crate) fn is_member(&self) -> bool {
        self.raft.get().is_some()
    }

    /// The local registration of `name`; `None` on client nodes.
    pub(crate) fn local_entry(&self, name: &str) -> Option<Arc<NameEntry>> {
        self.raft.get()?;
        self.replica.get(name)
    }

    pub(crate) fn shutdown(&self) {
        if let Some(r) = self.raft.get() {
            r.shutdown();
        }
    }

    /// Before a planned shutdown: if this node leads the registry, another voter takes over
    /// first (bounded by the lower election timeout, after which the others elect as after a
    /// crash). Returns whether leadership moved.
    pub(crate) async fn hand_off(&self) -> bool {
        match self.raft.get() {
            Some(r) => r.hand_off(self.config.election_timeout.0).await,
            None => false,
        }
    }

    /// Members the registry waits for before it forms.
    fn expect(&self) -> usize {
        self.config.expect(self.ctx.architecture, self.ctx.masters)
    }

    /// `NotFormed` if this node has joined no registry and too few members are Up for one to
    /// form: a write then fails at once. With enough members up the registry is forming (or
    /// formed without this node knowing yet), and the caller waits for it.
    fn not_formed(&self, raft: &RaftHandle) -> Option<RegistryError> {
        if raft.is_initialized() {
            return None;
        }
        let (have, expect) = (self.ctx.eligible_up(&self.ctx.members()), self.expect());
        (have < expect).then_some(RegistryError::NotFormed { have, expect })
    }

    fn deadline(&self) -> TokioInstant {
        TokioInstant::now() + self.config.request_timeout
    }

    /// Applies `cmd` through the Raft leader, wherever it is.
    pub(crate) async fn write(&self, cmd: Command) -> Result<Outcome, RegistryError> {
        let deadline = self.deadline();
        let Some(raft) = self.raft.get() else {
            return self.write_via_member(cmd, deadline).await;
        };
        self.through_leader(
            raft,
            deadline,
            Retry::UntilProposed,
            || raft.write_local(cmd.clone()),
            || RegistryRequest::Write {
                cmd: cmd.clone(),
                forward: false,
            },
            |reply| match reply {
                RegistryReply::Outcome(o) => Some(o),
                _ => None,
            },
        )
        .await
    }

    /// Runs `local` on this member's Raft node; when another member leads, sends it
    /// `forward()` instead and takes its answer through `accept`. Retries until `deadline`
    /// while there is no leader (an election) or, as `retry` allows, the attempt failed.
    ///
    /// On the minority side nothing is attempted: the call fails with `NoQuorum` before a
    /// proposal reaches the log, so nothing can have changed. Once an attempt may have reached
    /// a log (a local proposal that failed or timed out, a forward whose answer was lost or
    /// says nothing definite), a write is not tried again (a second copy could apply after
    /// another client's write) and it fails with `Timeout`, which says it may still apply.
    async fn through_leader<T, Fut>(
        &self,
        raft: &RaftHandle,
        deadline: TokioInstant,
        retry: Retry,
        local: impl Fn() -> Fut,
        forward: impl Fn() -> RegistryRequest,
        accept: impl Fn(RegistryReply) -> Option<T>,
    ) -> Result<T, RegistryError>
    where
        Fut: Future<Output = Result<T, LocalError>>,
    {
        let me = self.ctx.me().name();
        if let Some(e) = self.not_formed(raft) {
            return Err(e);
        }
        let mut attempted = false;
        loop {
            if !attempted && raft.quorum_visible(&self.ctx.states(), me) == Some(false) {
                return Err(RegistryError::NoQuorum);
            }
            match tokio::time::timeout_at(deadline, local()).await {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(LocalError::NotLeader(Some(leader)))) if leader != me => {
                    match self.ask(&leader, forward(), deadline).await {
                        // Refused before proposing: definitely not in any log.
                        Ok(RegistryReply::Failed(
                            Failure::NotLeader(_) | Failure::NoQuorum | Failure::NotFormed { .. },
                        )) => {}
                        Ok(RegistryReply::Failed(Failure::Refused(why))) => {
                            return Err(RegistryError::Refused(why));
                        }
                        Ok(reply) => match accept(reply) {
                            Some(value) => return Ok(value),
                            None => attempted = true,
                        },
                        Err(RegistryError::Remote(e)) if e.is_not_delivered() => {}
                        Err(_) => attempted = true,
                    }
                }
                // No leader yet, or this node's view names itself: nothing was proposed.
                Ok(Err(LocalError::NotLeader(_))) => {}
                Ok(Err(LocalError::Refused(why))) => return Err(RegistryError::Refused(why)),
                // The core failed with the proposal possibly in its log.
                Ok(Err(LocalError::Failed(_))) => attempted = true,
                Err(_) => {
                    attempted = true;
                    break;
                }
            }
            if attempted && retry == Retry::UntilProposed {
                break;
            }
            if TokioInstant::now() + RETRY >= deadline {
                break;
            }
            tokio::time::sleep(RETRY).await;
        }
        Err(if attempted {
            RegistryError::Timeout(self.config.request_timeout)
        } else if let Some(e) = self.not_formed(raft) {
            e
        } else if !raft.is_initialized() {
            RegistryError::Unavailable("the registry is forming".into())
        } else if raft.quorum_visible(&self.ctx.states(), me) == Some(false) {
            RegistryError::NoQuorum
        } else {
            RegistryError::Timeout(self.config.request_timeout)
        })
    }

    /// A client node's write: a member proposes it (forwarding to the leader itself).
    async fn write_via_member(
        &self,
        cmd: Command,
        deadline: TokioInstant,
    ) -> Result<Outcome, RegistryError> {
        loop {
            let req = RegistryRequest::Write {
                cmd: cmd.clone(),
                forward: true,
            };
            // Tried again only when the member certainly proposed nothing: a second copy of
            // a write that did apply could apply again after another client's write.
            let failed = match self.ask_any_member(req, deadline).await {
                Ok(RegistryReply::Outcome(o)) => return Ok(o),
                Ok(RegistryReply::Failed(f @ (Failure::NoQuorum | Failure::NotFormed { .. }))) => {
                    return Err(f.into_error(self.config.request_timeout));
                }
                Ok(RegistryReply::Failed(
                    f @ (Failure::NotLeader(_) | Failure::Unavailable(_)),
                )) => f.into_error(self.config.request_timeout),
                Ok(RegistryReply::Failed(Failure::Timeout)) => {
                    return Err(RegistryError::Timeout(self.config.request_timeout));
                }
                Ok(_) => return Err(protocol_error()),
                Err(RegistryError::Remote(e)) if e.is_not_delivered() => RegistryError::Remote(e),
                Err(e @ RegistryError::Unavailable(_)) => e,
                Err(_) => return Err(RegistryError::Timeout(self.config.request_timeout)),
            };
            if TokioInstant::now() + RETRY >= deadline {
                return Err(failed);
            }
            tokio::time::sleep(RETRY).await;
        }
    }

    /// `name` after confirming with the leader that the local replica is current.
    pub(crate) async fn linearizable_get(&self, name: &str) -> Result<NameEntry, RegistryError> {
        let Some(raft) = self.raft.get() else {
            let req = RegistryRequest::Get {
                name: name.to_owned(),
                linearizable: true,
            };
            return self.remote_entry(name, req).await;
        };
        self.catch_up(raft).await?;
        self.local_get(name)
    }

    /// Waits until this member's replica has applied everything committed before the call
    /// (the leader confirms its leadership and names the index).
    async fn catch_up(&self, raft: &RaftHandle) -> Result<(), RegistryError> {
        let index = self
            .through_leader(
                raft,
                self.deadline(),
                Retry::UntilDeadline,
                || raft.read_index_local(),
                || RegistryRequest::ReadIndex,
                |reply| match reply {
                    RegistryReply::Index(i) => Some(i),
                    _ => None,
                },
            )
            .await?;
        let mut applied = self.replica.applied_watch();
        let wait = applied.wait_for(|a| *a >= index);
        tokio::time::timeout(self.config.request_timeout, wait)
            .await
            .map_err(|_| RegistryError::Timeout(self.config.request_timeout))?
            .map_err(|_| RegistryError::SystemStopped)?;
        Ok(())
    }

    /// `name` from the local replica: `NotFound`, or `RestartsExhausted` for a supervised
    /// name whose policy is exhausted.
    fn local_get(&self, name: &str) -> Result<NameEntry, RegistryError> {
        self.replica.read(|n| match n.get(name) {
            Some(e) => Ok(NameEntry::clone(e)),
            None => Err(match n.supervision(name) {
                Some(s) if s.exhausted => RegistryError::RestartsExhausted {
                    name: name.to_owned(),
                    restarts: u32::try_from(s.restarts.len()).unwrap_or(u32::MAX),
                },
                _ => RegistryError::NotFound(name.to_owned()),
            }),
        })
    }

    /// `name` from the local replica (members) or a member's (clients).
    pub(crate) async fn get(&self, name: &str) -> Result<NameEntry, RegistryError> {
        if self.raft.get().is_some() {
            return self.local_get(name);
        }
        let req = RegistryRequest::Get {
            name: name.to_owned(),
            linearizable: false,
        };
        self.remote_entry(name, req).await
    }

    async fn remote_entry(
        &self,
        name: &str,
        req: RegistryRequest,
    ) -> Result<NameEntry, RegistryError> {
        match self.read_any_member(req, self.deadline()).await? {
            RegistryReply::Entry(Some(e)) => Ok(e),
            RegistryReply::Entry(None) => Err(RegistryError::NotFound(name.to_owned())),
            _ => Err(protocol_error()),
        }
    }

    pub(crate) async fn list(&self, prefix: &str) -> Result<Vec<NameEntry>, RegistryError> {
        if self.raft.get().is_some() {
            return Ok(self
                .replica
                .read(|n| n.list(prefix).map(|e| NameEntry::clone(e)).collect()));
        }
        let req = RegistryRequest::List {
            prefix: prefix.to_owned(),
        };
        match self.read_any_member(req, self.deadline()).await? {
            RegistryReply::Entries(e) => Ok(e),
            _ => Err(protocol_error()),
        }
    }

    pub(crate) async fn status(&self) -> Result<RegistryStatus, RegistryError> {
        if let Some(raft) = self.raft.get() {
            return Ok(raft.status(&self.replica));
        }
        match self
            .read_any_member(RegistryRequest::Status, self.deadline())
            .await?
        {
            // The member's view of the registry, with its Raft id: a client has none.
            RegistryReply::Status { status, .. } => Ok(status),
            _ => Err(protocol_error()),
        }
    }

    /// Waits until `name` is bound (another caller is creating its actor). `NotFound` when
    /// the claim is gone without a binding (released, or never reached this replica within
    /// a short wait): the caller claims again.
    pub(crate) async fn wait_for_binding(
        &self,
        name: &str,
        deadline: TokioInstant,
    ) -> Result<NameEntry, RegistryError> {
        if self.raft.get().is_none() {
            loop {
                match self.get(name).await {
                    Ok(e) => return Ok(e),
                    Err(RegistryError::NotFound(_)) if TokioInstant::now() < deadline => {
                        tokio::time::sleep(RETRY).await;
                    }
                    Err(RegistryError::NotFound(_)) => {
                        return Err(RegistryError::Timeout(self.config.request_timeout));
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        // A replica that lags (a member catching up after a restart) would show bindings
        // from before the claim that refused the caller: first catch up with everything
        // committed so far, the refusal included, so that any binding seen is newer.
        if let Some(raft) = self.raft.get() {
            self.catch_up(raft).await?;
        }
        let mut seen_claim = false;
        let mut applied = self.replica.applied_watch();
        loop {
            let (entry, claimed) = self
                .replica
                .read(|n| (n.get(name).cloned(), n.claim_of(name).is_some()));
            if let Some(e) = entry {
                return Ok(NameEntry::clone(&e));
            }
            seen_claim |= claimed;
            if !claimed && seen_claim {
                return Err(RegistryError::NotFound(name.to_owned()));
            }
            // The claim may not have reached this replica yet: wait for it, briefly if it
            // has never been seen here.
            let wait_until = if seen_claim {
                deadline
            } else {
                deadline.min(TokioInstant::now() + RETRY * 4)
            };
            match tokio::time::timeout_at(wait_until, applied.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(RegistryError::SystemStopped),
                Err(_) if !seen_claim && TokioInstant::now() < deadline => {
                    return Err(RegistryError::NotFound(name.to_owned()));
                }
                Err(_) => return Err(RegistryError::Timeout(self.config.request_timeout)),
            }
        }
    }

    /// Sends `req` to node `name` and waits for the answer until `deadline`.
    async fn ask(
        &self,
        name: &str,
        req: RegistryRequest,
        deadline: TokioInstant,
    ) -> Result<RegistryReply, RegistryError> {
        let peer = self
            .ctx
            .remote
            .transport
            .peer_by_name(name)
            .ok_or_else(|| RegistryError::Remote(RemoteError::UnknownNode(name.to_owned())))?;
        self.ask_member(&peer, req, deadline).await
    }

    /// Sends `req` to the member `peer` and waits for the answer until `deadline`.
    async fn ask_member(
        &self,
        peer: &Peer,
        req: RegistryRequest,
        deadline: TokioInstant,
    ) -> Result<RegistryReply, RegistryError> {
        ask_peer(
            &self.ctx.remote,
            peer.id.clone(),
            peer.addr(),
            req,
            deadline,
        )
        .await
    }

    /// Connected members, the configured seeds first (`ctl names --seed X` should show X's
    /// replica), then by name.
    fn members_to_ask(&self) -> Vec<Arc<Peer>> {
        let mut peers: Vec<_> = self
            .ctx
            .remote
            .transport
            .peers()
            .into_iter()
            .filter(|p| !p.dials_in_only() && p.state() == crate::transport::PeerState::Connected)
            .collect();
        let seeds = &self.ctx.seeds;
        peers.sort_by_key(|p| (!seeds.contains(&p.addr()), p.id.clone()));
        peers
    }

    /// Sends `req` to the first member [`Self::members_to_ask`] lists.
    async fn ask_any_member(
        &self,
        req: RegistryRequest,
        deadline: TokioInstant,
    ) -> Result<RegistryReply, RegistryError> {
        let peer = self
            .members_to_ask()
            .into_iter()
            .next()
            .ok_or_else(not_connected)?;
        self.ask_member(&peer, req, deadline).await
    }

    /// Sends a read to the members [`Self::members_to_ask`] lists, in turn, until one answers:
    /// a member that is gone, unreachable, without a replica or silent is skipped. Each attempt
    /// gets an equal share of the time left, so a seed that hangs costs a part of the deadline,
    /// not all of it. A read changes nothing, so asking again elsewhere is always safe. A
    /// member's `Failed` answer comes back as the error it stands for.
    async fn read_any_member(
        &self,
        req: RegistryRequest,
        deadline: TokioInstant,
    ) -> Result<RegistryReply, RegistryError> {
        let members = self.members_to_ask();
        let mut last = None;
        for (i, peer) in members.iter().enumerate() {
            // An equal share of what is left, but never less than a third of the request
            // timeout (a linearizable read takes a round trip to the leader), so with many
            // members only the first few are asked.
            let now = TokioInstant::now();
            let left = deadline.saturating_duration_since(now);
            let share = (left / (members.len() - i) as u32)
                .max(self.config.request_timeout / 3)
                .min(left);
            match self.ask_member(peer, req.clone(), now + share).await {
                // This member cannot answer (no replica; minority side; slow): another may.
                Ok(RegistryReply::Failed(
                    f @ (Failure::Unavailable(_) | Failure::NoQuorum | Failure::Timeout),
                )) => last = Some(f.into_error(self.config.request_timeout)),
                Ok(RegistryReply::Failed(f)) => {
                    return Err(f.into_error(self.config.request_timeout));
                }
                Err(
                    e @ (RegistryError::Timeout(_)
                    | RegistryError::Remote(
                        RemoteError::NodeGone { .. }
                        | RemoteError::NodeUnreachable { .. }
                        | RemoteError::UnknownNode(_)
                        | RemoteError::QueueFull { .. }
                        | RemoteError::Timeout(_),
                    )),
                ) => last = Some(e),
                other => return other,
            }
            if TokioInstant::now() >= deadline {
                break;
            }
        }
        match last {
            Some(RegistryError::Timeout(_))
            | Some(RegistryError::Remote(RemoteError::Timeout(_))) => {
                Err(RegistryError::Timeout(self.config.request_timeout))
            }
            Some(e) => Err(e),
            None => Err(not_connected()),
        }
    }

    /// Removes `node`'s voter for good (`ctl registry remove-voter`), through the leader.
    /// Returns the registry as the leader sees it afterwards.
    pub(crate) async fn remove_voter(&self, node: &str) -> Result<RegistryStatus, RegistryError> {
        let deadline = self.deadline();
        let Some(raft) = self.raft.get() else {
            let req = RegistryRequest::RemoveVoter {
                node: node.to_owned(),
                forward: true,
            };
            return match self.ask_any_member(req, deadline).await? {
                RegistryReply::Status { status, .. } => Ok(status),
                RegistryReply::Failed(f) => Err(f.into_error(self.config.request_timeout)),
                _ => Err(protocol_error()),
            };
        };
        let members = self.ctx.members();
        let me = self.ctx.me().name();
        self.through_leader(
            raft,
            deadline,
            Retry::UntilProposed,
            || async {
                raft.remove_voter(me, self.ctx.architecture, &members, node)
                    .await
                    .map(|()| raft.status(&self.replica))
            },
            || RegistryRequest::RemoveVoter {
                node: node.to_owned(),
                forward: false,
            },
            |reply| match reply {
                RegistryReply::Status { status, .. } => Some(status),
                _ => None,
            },
        )
        .await
    }

    /// Re-forms the registry from member `from`'s replica after a lost majority
    /// (`ctl registry recover --from`).
    pub(crate) async fn recover(&self, from: &str) -> Result<RecoveryReport, RegistryError> {
        if from == self.ctx.me().name()
            && let Some(raft) = self.raft.get()
        {
            return self.recover_here(raft).await;
        }
        // Probing the old members takes up to one request timeout, restarting Raft a little.
        let deadline = TokioInstant::now() + self.config.request_timeout * 2;
        match self.ask(from, RegistryRequest::Recover, deadline).await? {
            RegistryReply::Recovered(report) => Ok(report),
            RegistryReply::Failed(f) => Err(f.into_error(self.config.request_timeout)),
            _ => Err(protocol_error()),
        }
    }

    /// Recovery on this member: refused when a quorum of the old voters still answers with
    /// its Raft state (the registry then recovers by itself, and a second one would fork it)
    /// or when another member that answers holds a longer log (recover from that one, or
    /// acknowledged names would be lost). Otherwise this member becomes the only voter of a
    /// new term over its own log ([`RaftHandle::force_single_voter`]).
    async fn recover_here(&self, raft: &RaftHandle) -> Result<RecoveryReport, RegistryError> {
        let me = self.ctx.me().name();
        if !raft.is_initialized() {
            return Err(RegistryError::Refused(format!(
                "{me} holds no registry state to recover from"
            )));
        }
        let own = raft.status(&self.replica);
        let others = raft.other_members();
        let deadline = self.deadline();
        let answers = futures::future::join_all(
            others
                .iter()
                .map(|(_, node, _)| self.ask(&node.name, RegistryRequest::Status, deadline)),
        )
        .await;
        let mut answered = Vec::new();
        let mut voters_answering = usize::from(own.voters.iter().any(|v| v == me));
        let mut above_term = own.term;
        for ((id, node, voter), answer) in others.iter().zip(answers) {
            let Ok(RegistryReply::Status {
                raft_id: Some(rid),
                status,
                ..
            }) = answer
            else {
                continue;
            };
            // A member that restarted without its state answers under a new id: it holds
            // nothing of the old registry.
            if rid != *id {
                continue;
            }
            if status.last_log > own.last_log {
                let (term, index) = status.last_log.unwrap_or_default();
                return Err(RegistryError::Refused(format!(
                    "{} holds a longer registry log (term {term}, index {index}) than {me}: \
                     recover from {}",
                    node.name, node.name
                )));
            }
            above_term = above_term.max(status.term);
            voters_answering += usize::from(*voter);
            answered.push(node.name.clone());
        }
        let voters = own.voters.len();
        if voters_answering * 2 > voters {
            return Err(RegistryError::Refused(format!(
                "{voters_answering} of the {voters} voters answer: a quorum is reachable, so \
                 the registry recovers by itself; recovering would fork it"
            )));
        }
        let node = raft.own_node().unwrap_or_else(|| RaftNode {
            name: me.to_owned(),
            addr: self.ctx.remote.local.addr.to_string(),
        });
        let entry = raft
            .force_single_voter(node, above_term)
            .await
            .map_err(|e| RegistryError::Unavailable(format!("recovery failed: {e}")))?;
        answered.sort();
        tracing::warn!(
            node = %self.ctx.me(),
            old_voters = ?own.voters,
            ?answered,
            ?entry,
            "registry re-formed from this member's replica by an operator"
        );
        Ok(RecoveryReport {
            node: me.to_owned(),
            old_voters: own.voters,
            answered,
            entry,
            names: self.replica.read(|n| n.len()),
        })
    }

    /// Answers another node's registry request.
    pub(crate) async fn serve(self: &Arc<Self>, req: RegistryRequest) -> RegistryReply {
        let Some(raft) = self.raft.get() else {
            return RegistryReply::Failed(Failure::Unavailable(
                "this node holds no registry replica".into(),
            ));
        };
        match req {
            RegistryRequest::Write { cmd, forward: true } => match self.write(cmd).await {
                Ok(o) => RegistryReply::Outcome(o),
                Err(e) => RegistryReply::Failed(Failure::from_error(e)),
            },
            RegistryRequest::Write {
                cmd,
                forward: false,
            } => {
                match tokio::time::timeout(self.config.request_timeout, raft.write_local(cmd)).await
                {
                    Ok(Ok(o)) => RegistryReply::Outcome(o),
                    Ok(Err(LocalError::NotLeader(l))) => {
                        RegistryReply::Failed(Failure::NotLeader(l))
                    }
                    Ok(Err(LocalError::Failed(e) | LocalError::Refused(e))) => {
                        RegistryReply::Failed(Failure::Unavailable(e))
                    }
                    Err(_) => RegistryReply::Failed(Failure::Timeout),
                }
            }
            RegistryRequest::ReadIndex => {
                match tokio::time::timeout(self.config.request_timeout, raft.read_index_local())
                    .await
                {
                    Ok(Ok(i)) => RegistryReply::Index(i),
                    Ok(Err(LocalError::NotLeader(l))) => {
                        RegistryReply::Failed(Failure::NotLeader(l))
                    }
                    Ok(Err(LocalError::Failed(e) | LocalError::Refused(e))) => {
                        RegistryReply::Failed(Failure::Unavailable(e))
                    }
                    Err(_) => RegistryReply::Failed(Failure::Timeout),
                }
            }
            RegistryRequest::Get { name, linearizable } => {
                let got = if linearizable {
                    self.linearizable_get(&name).await
                } else {
                    self.get(&name).await
                };
                match got {
                    Ok(e) => RegistryReply::Entry(Some(e)),
                    Err(RegistryError::NotFound(_)) => RegistryReply::Entry(None),
                    Err(e) => RegistryReply::Failed(Failure::from_error(e)),
                }
            }
            RegistryRequest::List { prefix } => match self.list(&prefix).await {
                Ok(e) => RegistryReply::Entries(e),
                Err(e) => RegistryReply::Failed(Failure::from_error(e)),
            },
            RegistryRequest::Status => RegistryReply::Status {
                raft_id: Some(raft.id),
                initialized: raft.is_initialized(),
                status: raft.status(&self.replica),
            },
            RegistryRequest::RemoveVoter {
                node,
                forward: true,
            } => match self.remove_voter(&node).await {
                Ok(status) => RegistryReply::Status {
                    raft_id: Some(raft.id),
                    initialized: true,
                    status,
                },
                Err(e) => RegistryReply::Failed(Failure::from_error(e)),
            },
            RegistryRequest::RemoveVoter {
                node,
                forward: false,
            } => {
                let members = self.ctx.members();
                let me = self.ctx.me().name();
                let removed = raft.remove_voter(me, self.ctx.architecture, &members, &node);
                match tokio::time::timeout(self.config.request_timeout, removed).await {
                    Ok(Ok(())) => RegistryReply::Status {
                        raft_id: Some(raft.id),
                        initialized: true,
                        status: raft.status(&self.replica),
                    },
                    Ok(Err(LocalError::NotLeader(l))) => {
                        RegistryReply::Failed(Failure::NotLeader(l))
                    }
                    Ok(Err(LocalError::Refused(why))) => {
                        RegistryReply::Failed(Failure::Refused(why))
                    }
                    Ok(Err(LocalError::Failed(e))) => {
                        RegistryReply::Failed(Failure::Unavailable(e))
                    }
                    Err(_) => RegistryReply::Failed(Failure::Timeout),
                }
            }
            RegistryRequest::Activate {
                name,
                token,
                supervision,
            } => self.serve_activate(name, token, supervision).await,
            RegistryRequest::Hosted {
                name,
                actor_id,
                version,
            } => {
                self.note_hosted(&name, actor_id, version);
                RegistryReply::Activated(actor_id)
            }
            RegistryRequest::Migrate { name, version, to } => {
                self.serve_migrate(name, version, to).await
            }
            RegistryRequest::Adopt {
                name,
                version,
                attempt,
                from,
                actor_type,
                format,
                state,
                supervised,
            } => {
                let key = AdoptKey {
                    name,
                    version,
                    attempt,
                };
                self.serve_adopt(key, from, actor_type, format, state, supervised)
                    .await
            }
            RegistryRequest::Applied { index } => {
                let until = TokioInstant::now() + self.config.request_timeout;
                while self.replica.applied() < index && TokioInstant::now() < until {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                RegistryReply::Index(self.replica.applied())
            }
            RegistryRequest::Abandon {
                name,
                version,
                attempt,
                stop,
            } => self.serve_abandon(&name, version, attempt, stop),
            RegistryRequest::Recover => match self.recover_here(raft).await {
                Ok(report) => RegistryReply::Recovered(report),
                Err(e) => RegistryReply::Failed(Failure::from_error(e)),
            },
        }
    }
}

fn protocol_error() -> RegistryError {
    RegistryError::Remote(RemoteError::ReplyDecode("unexpected registry reply".into()))
}

fn not_connected() -> RegistryError {
    RegistryError::Unavailable("not connected to any cluster member".into())
}

async fn ask_peer(
    remote: &Arc<RemoteContext>,
    id: NodeId,
    addr: SocketAddr,
    req: RegistryRequest,
    deadline: TokioInstant,
) -> Result<RegistryReply, RegistryError> {
    let left = deadline.saturating_duration_since(TokioInstant::now());
    match sys::ask(remote, id, addr, sys::id::REGISTRY, req, left).await {
        Ok(reply) => Ok(reply),
        Err(RemoteError::Timeout(d)) => Err(RegistryError::Timeout(d)),
        Err(e) => Err(RegistryError::Remote(e)),
    }
}

/// The registry, while its node runs: the background tasks end when it is gone or stopped.
fn live(registry: &Weak<Registry>) -> Option<Arc<Registry>> {
    registry.upgrade().filter(|r| !r.ctx.remote.is_stopped())
}

impl Registry {
    /// Splits the nodes whose names are due for release into those that hold names to
    /// release now (all but virtual actors' names), and those whose virtual actors' names may
    /// go now too: a node known gone (its process refused us, it left, or it restarted), or one
    /// silent for longer than the lease after which it stops its activations itself
    /// (`restart_fence`, as for supervised actors). Before that, the node may still run them
    /// on the far side of a partition, and a new activation elsewhere would be a second one.
    fn split_release(&self, release: &[NodeId], members: &[Member]) -> (Vec<NodeId>, Vec<NodeId>) {
        let lease = self.config.restart_fence + self.config.reconcile_interval * 2;
        let gone_known = |node: &NodeId| {
            self.is_gone(node)
                || members.iter().any(|m| {
                    m.id.name() == node.name()
                        && ((m.id == *node && m.state == MemberState::Left)
                            || m.id.incarnation() > node.incarnation())
                })
        };
        let mut down_since = self
            .down_since
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        down_since.retain(|n, _| release.contains(n));
        let (mut now, mut after_lease) = (Vec::new(), Vec::new());
        for node in release {
            let (virtuals, others) = self
                .replica
                .read(|n| n.holds(node, super::state::VIRTUAL_PREFIX));
            if others {
                now.push(node.clone());
            }
            if virtuals {
                let since = *down_since.entry(node.clone()).or_insert_with(Instant::now);
                if gone_known(node) || since.elapsed() >= lease {
                    after_lease.push(node.clone());
                }
            }
        }
        (now, after_lease)
    }

    /// Installs `hook`, told every fencing round (every `reconcile_interval`) whether this
    /// node sees no majority of the voters Up or has had no word of a working leader for
    /// `restart_fence`: then it must stop what only one node may run. From the registry's
    /// runtime: the hook must only hand work to actors.
    pub(crate) fn on_fence(&self, hook: Box<dyn Fn(bool) + Send + Sync>) {
        let _ = self.fence_hook.set(hook);
    }
}

/// Fencing of supervised actors, every `reconcile_interval`, on a task of its own: the
/// leader's rounds in [`background`] may wait for a quorum (a leader cut off from it), and
/// fencing must not wait behind them.
async fn fencing(registry: Weak<Registry>) {
    loop {
        let Some(registry) = live(&registry) else {
            return;
        };
        let interval = registry.config.reconcile_interval;
        if let Some(raft) = registry.raft.get() {
            let me = registry.ctx.me().name();
            let quorum_lost = raft.quorum_up(&registry.ctx.states(), me) == Some(false);
            // The lease: no word of a working leader for `restart_fence` (longer than an
            // election), and the leader may be restarting this node's actors elsewhere.
            let lease_lost = raft
                .leader_contact_age()
                .is_none_or(|age| age > registry.config.restart_fence);
            registry.fence(quorum_lost || lease_lost);
            if let Some(hook) = registry.fence_hook.get() {
                hook(quorum_lost || lease_lost);
            }
        }
        drop(registry);
        tokio::time::sleep(interval).await;
    }
}

/// The background round of a member, on the registry runtime.
async fn background(registry: Weak<Registry>, fresh: bool) {
    let mut bootstrapped = !fresh;
    let mut last_view: Vec<(NodeId, u8)> = Vec::new();
    let mut last_change = Instant::now();
    loop {
        let Some(registry) = live(&registry) else {
            return;
        };
        let interval = registry.config.reconcile_interval;
        if let Some(raft) = registry.raft.get() {
            raft.wire.sweep_transfers();
            raft.report_quiet();
            let members = registry.ctx.members();
            let view: Vec<(NodeId, u8)> = members
                .iter()
                .map(|m| (m.id.clone(), m.state.to_u8()))
                .collect();
            if view != last_view {
                last_view = view;
                last_change = Instant::now();
            }
            if !bootstrapped && raft.is_initialized() {
                bootstrapped = true;
            }
            if !bootstrapped
                && last_change.elapsed() >= registry.config.bootstrap_delay
                && registry.ctx.eligible_up(&members) >= registry.expect()
                && raft_node::is_bootstrapper(
                    registry.ctx.me().name(),
                    registry.ctx.architecture,
                    &members,
                )
            {
                bootstrapped = registry.maybe_bootstrap(raft, &members).await;
            }
            if raft.is_leader() {
                registry.reconcile(raft, &members).await;
                registry.supervise(raft, &members).await;
                registry.rebalance(raft, &members);
                registry.remind(raft).await;
            }
            registry.release_stopped().await;
        }
        drop(registry);
        tokio::time::sleep(interval).await;
    }
}

impl Registry {
    /// Forms the registry unless another member already belongs to one: the `expect`
    /// lowest-named eligible Up members (this node, the lowest, among them) become the voters
    /// of its first membership, so the first acknowledged write is already on a majority of
    /// them. Returns whether this node may stop considering it (it formed the registry, or
    /// found an existing one).
    async fn maybe_bootstrap(&self, raft: &RaftHandle, members: &[Member]) -> bool {
        let deadline = TokioInstant::now() + self.config.request_timeout;
        let mut ids: Vec<(&Member, u64)> = Vec::new();
        for m in members {
            // Only members that completed joining are asked: Down and Left ones are gone, and
            // a peer stuck in Joining (one that never speaks membership) would otherwise stall
            // formation for good. A real node that holds a registry becomes Up within the
            // settle delay, which restarts the wait.
            if m.id == *self.ctx.me()
                || m.role == NodeRole::Client
                || !matches!(m.state, MemberState::Up | MemberState::Suspect)
            {
                continue;
            }
            match ask_peer(
                &self.ctx.remote,
                m.id.clone(),
                m.addr,
                RegistryRequest::Status,
                deadline,
            )
            .await
            {
                Ok(RegistryReply::Status {
                    initialized,
                    raft_id,
                    ..
                }) => {
                    if initialized {
                        return true;
                    }
                    if let Some(id) = raft_id {
                        raft.remember_id(m.id.clone(), id);
                        ids.push((m, id));
                    }
                }
                // A member that cannot answer might hold a registry: wait for it.
                _ => return false,
            }
        }
        let expect = self.expect();
        let mut voters: Vec<(String, u64, String)> = ids
            .iter()
            .filter(|(m, _)| raft_node::eligible(self.ctx.architecture, m))
            .map(|(m, id)| (m.id.name().to_owned(), *id, m.addr.to_string()))
            .collect();
        voters.push((
            self.ctx.me().name().to_owned(),
            raft.id,
            self.ctx.remote.local.addr.to_string(),
        ));
        voters.sort();
        if voters.len() < expect {
            return false;
        }
        voters.truncate(expect);
        let names: Vec<&str> = voters.iter().map(|(n, _, _)| n.as_str()).collect();
        let first = voters
            .iter()
            .map(|(name, id, addr)| {
                (
                    *id,
                    RaftNode {
                        name: name.clone(),
                        addr: addr.clone(),
                    },
                )
            })
            .collect();
        match raft.initialize(first).await {
            Ok(()) => {
                tracing::info!(node = %self.ctx.me(), voters = ?names, "registry formed");
                true
            }
            Err(e) => {
                tracing::warn!(node = %self.ctx.me(), "registry formation failed: {e}");
                raft.is_initialized()
            }
        }
    }

    /// Leader only: keeps Raft membership in line with cluster membership and releases names
    /// of nodes that went down.
    async fn reconcile(&self, raft: &RaftHandle, members: &[Member]) {
        let mut plan = raft.plan(
            self.ctx.me().name(),
            self.ctx.architecture,
            members,
            &self.replica,
            self.config.voters,
        );
        if !plan.ask.is_empty() {
            let deadline = TokioInstant::now() + self.config.reconcile_interval * 4;
            for id in &plan.ask {
                let Some(m) = members.iter().find(|m| &m.id == id) else {
                    continue;
                };
                if let Ok(RegistryReply::Status {
                    raft_id: Some(rid), ..
                }) = ask_peer(
                    &self.ctx.remote,
                    id.clone(),
                    m.addr,
                    RegistryRequest::Status,
                    deadline,
                )
                .await
                {
                    raft.remember_id(id.clone(), rid);
                }
            }
            plan = raft.plan(
                self.ctx.me().name(),
                self.ctx.architecture,
                members,
                &self.replica,
                self.config.voters,
            );
        }
        if !plan.release.is_empty() {
            let (now, after_lease) = self.split_release(&plan.release, members);
            if !now.is_empty() {
                let cmd = Command::ReleaseNodesExcept {
                    nodes: now,
                    keep: super::state::VIRTUAL_PREFIX.to_owned(),
                };
                if let Err(e) = self.leader_write(raft, cmd).await {
                    tracing::debug!("releasing names of down nodes: {e}");
                }
            }
            if !after_lease.is_empty() {
                let cmd = Command::ReleaseNodes { nodes: after_lease };
                if let Err(e) = self.leader_write(raft, cmd).await {
                    tracing::debug!("releasing virtual actors' names of down nodes: {e}");
                }
            }
        } else {
            self.down_since
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clear();
        }
        if let Some(change) = plan.change {
            tracing::info!(node = %self.ctx.me(), ?change, "registry membership change");
            // Bounded: a leader cut off from its quorum must not hold up its next rounds.
            match tokio::time::timeout(self.config.request_timeout, raft.apply_change(change)).await
            {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!("registry membership change: {e}"),
                Err(_) => tracing::debug!("registry membership change: no quorum in time"),
            }
        }
    }

    /// A write of the leader's own rounds, bounded by the request timeout: a leader cut off
    /// from its quorum must not hold up its next rounds (fencing among them).
    pub(super) async fn leader_write(
        &self,
        raft: &RaftHandle,
        cmd: Command,
    ) -> Result<Outcome, String> {
        match tokio::time::timeout(self.config.request_timeout, raft.write_local(cmd)).await {
            Ok(Ok(outcome)) => Ok(outcome),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!(
                "not committed within {:?} (it may still be)",
                self.config.request_timeout
            )),
        }
    }

    /// Releases names bound to actors of this node that have stopped.
    async fn release_stopped(&self) {
        let me = self.ctx.me();
        let stopped: Vec<(String, u64)> = self.replica.read(|n| {
            n.bound_to(me)
                .filter(|e| {
                    self.ctx
                        .remote
                        .actors
                        .get(e.actor_id)
                        .is_none_or(|a| !a.alive())
                })
                .map(|e| (e.name.clone(), e.version))
                .collect()
        });
        for (name, version) in stopped {
            let cmd = Command::Unregister {
                name,
                version: Some(version),
                reason: ReleaseReason::ActorStopped,
            };
            if let Err(e) = self.write(cmd).await {
                tracing::debug!("releasing a stopped actor's name: {e}");
                return;
            }
        }
    }
}

/// Raft frames reach the Raft node once it runs; before that (and on client nodes, which hold
/// no replica) they are dropped, and the sender retries.
impl Channel for Registry {
    fn on_frame(&self, peer: &Arc<Peer>, body: bytes::Bytes) {
        match self.raft.get() {
            Some(raft) => raft.wire.on_frame(peer, body),
            None => crate::metrics::registry_frame_dropped(),
        }
    }
}

impl PeerObserver for Registry {
    fn on_peer(&self, peer: &Arc<Peer>, event: PeerEvent) {
        if event == PeerEvent::ProcessGone {
            // Its supervised actors cannot still run: no fence to wait out.
            self.note_gone(&peer.id);
            if let Some(raft) = self.raft.get() {
                raft.wire.process_gone(peer);
            }
        }
    }
}
