//! One node's Raft member: its runtime thread, writes, linearizable reads, bootstrap, and the
//! leader's reconciliation of Raft membership with cluster membership.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use openraft::async_runtime::WatchReceiver;
use openraft::error::ClientWriteError;
use openraft::{ChangeMembers, Config, ServerState, SnapshotPolicy};

use openraft::storage::RaftLogStorage;
use openraft::type_config::alias::{LeaderIdOf, StoredMembershipOf};
use openraft::vote::RaftLeaderId;

use super::network::{Factory, Raft, RaftWire};
use super::store::{Entry, LogId, LogStore, Resume, Vote};
use super::{RaftNode, TypeConfig};
use crate::membership::{Member, MemberState};
use crate::node::Architecture;
use crate::node::{NodeId, NodeRole};
use crate::registry::replica::Replica;
use crate::registry::state::{Command, Outcome};
use crate::registry::{RegistryConfig, RegistryStatus};
use crate::transport::Transport;

/// What a local write or read attempt ended with.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LocalError {
    /// Another member leads (named if known); forward there.
    #[error("not the leader (leader: {0:?})")]
    NotLeader(Option<String>),
    /// The Raft core failed or is shutting down.
    #[error("{0}")]
    Failed(String),
    /// An operator action was refused before anything was proposed.
    #[error("{0}")]
    Refused(String),
}

/// A failed openraft call, as the registry service sees it.
fn local_error<E>(e: openraft::error::RaftError<TypeConfig, E>) -> LocalError
where
    E: openraft::TryAsRef<openraft::error::ForwardToLeader<TypeConfig>>
        + std::fmt::Debug
        + std::fmt::Display,
{
    match e.forward_to_leader() {
        Some(f) => LocalError::NotLeader(f.leader_node.as_ref().map(|n| n.name.clone())),
        None => LocalError::Failed(e.to_string()),
    }
}

/// A failed proposal (a write or a membership change), as the registry service sees it.
///
/// openraft reports a proposal whose entry was appended and later discarded (truncated when
/// this node adopted another leader's log, or purged under a snapshot) as
/// [`ClientWriteError::LogEntryDiscarded`], and answers `forward_to_leader()` for it as for a
/// proposal refused before it was appended. The two differ in what matters: the discarded
/// entry may have committed through the new leader, or still may, so it is `Failed` (the
/// proposal may apply) and never `NotLeader` (which the service takes as "nothing was
/// proposed" and retries).
fn proposal_error(
    e: openraft::error::RaftError<TypeConfig, ClientWriteError<TypeConfig>>,
) -> LocalError {
    match e {
        openraft::error::RaftError::APIError(ClientWriteError::LogEntryDiscarded(f)) => {
            LocalError::Failed(format!(
                "the proposal's log entry was discarded when this node adopted another leader's \
                 log (leader: {:?}); it may have been committed there",
                f.leader_node.as_ref().map(|n| n.name.as_str())
            ))
        }
        e => local_error(e),
    }
}

/// The handle the registry service uses; cheap to clone.
#[derive(Clone)]
pub(crate) struct RaftHandle {
    /// The running Raft; replaced only by [`RaftHandle::force_single_voter`].
    raft: Arc<Mutex<Raft>>,
    pub(crate) id: u64,
    pub(crate) wire: Arc<RaftWire>,
    runtime: tokio::runtime::Handle,
    /// Raft ids other nodes reported, by node incarnation.
    known_ids: Arc<Mutex<HashMap<NodeId, u64>>>,
    /// Ends the runtime thread when taken (after Raft shut down).
    stop: Arc<Mutex<Option<tokio::sync::oneshot::Sender<()>>>>,
    /// The longest election timeout: a leader not heard from (or, on the leader, no quorum
    /// acknowledgement) for longer is not reported as the leader.
    lease: std::time::Duration,
    /// What it takes to start Raft again over the same storage (registry recovery).
    restart: Arc<Restart>,
    /// openraft's output filter on the registry thread, when installed.
    quiet: Option<Arc<super::quiet::Quiet>>,
    /// The term in which this node last saw itself lead, and when it first did.
    leading: Arc<Mutex<Option<(u64, std::time::Instant)>>>,
}

/// The parts of a Raft start that a restart in this process reuses.
struct Restart {
    config: Arc<Config>,
    factory: Factory,
    log: LogStore,
    sm: Resume,
    /// One recovery at a time.
    busy: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for RaftHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftHandle")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Opens storage and starts Raft on a thread of its own. Blocking: called once at node start.
pub(crate) fn start(
    config: &RegistryConfig,
    node_name: &str,
    transport: &Arc<Transport>,
    replica: Arc<Replica>,
) -> std::io::Result<(RaftHandle, bool)> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let handle = runtime.handle().clone();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (quiet_tx, quiet_rx) = std::sync::mpsc::channel();
    let verbose = config.verbose_raft_logs;
    std::thread::Builder::new()
        .name(format!("registry-{node_name}"))
        .spawn(move || {
            // Every openraft task runs on this thread: openraft's output is filtered here,
            // in front of the application's dispatcher (the global default, as a fresh
            // thread sees it), unless asked not to.
            let filter = (!verbose && tracing::dispatcher::has_been_set()).then(|| {
                let app = tracing::dispatcher::get_default(Clone::clone);
                super::quiet::Quiet::install(app)
            });
            let _ = quiet_tx.send(filter.as_ref().map(|(_, q)| Arc::clone(q)));
            let _scope = filter
                .as_ref()
                .map(|(d, _)| tracing::dispatcher::set_default(d));
            // The runtime lives as long as the node: Raft's tasks run here until shutdown.
            runtime.block_on(async move {
                let _ = stop_rx.await;
            });
        })?;
    let quiet = quiet_rx
        .recv()
        .map_err(|_| std::io::Error::other("registry thread ended during start"))?;
    let wire = RaftWire::new(transport, handle.clone(), config.max_snapshot_bytes);
    // A log batch must fit one frame. An entry is a name (at most 512 bytes), a node identity,
    // an address and an actor type name: 2 KiB covers it unless type names are very long.
    let max_frame = u64::from(transport.config.limits.max_frame_size);
    let max_payload_entries = (max_frame.saturating_sub(1024) / 2048).clamp(1, 300);
    let raft_config = Config {
        cluster_name: "actix-cluster-registry".into(),
        heartbeat_interval: config.heartbeat_interval.as_millis() as u64,
        election_timeout_min: config.election_timeout.0.as_millis() as u64,
        election_timeout_max: config.election_timeout.1.as_millis() as u64,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_every),
        max_in_snapshot_log_to_keep: 1000,
        max_payload_entries,
        enable_pre_vote: Some(true),
        ..Default::default()
    }
    .validate()
    .map_err(|e| std::io::Error::other(format!("raft config: {e}")))?;
    let storage_kind = config.storage.clone();
    let factory = Factory {
        wire: Arc::clone(&wire),
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let for_wire = Arc::clone(&wire);
    handle.spawn(async move {
        let result = async {
            let storage = super::store::open(&storage_kind, replica)?;
            let config = Arc::new(raft_config);
            let restart = Restart {
                config: Arc::clone(&config),
                factory: factory.clone(),
                log: storage.log.clone(),
                sm: storage.sm.resume(),
                busy: tokio::sync::Mutex::new(()),
            };
            let raft = Raft::new(storage.raft_id, config, factory, storage.log, storage.sm)
                .await
                .map_err(|e| std::io::Error::other(format!("raft start: {e}")))?;
            for_wire.set_raft(raft.clone(), storage.raft_id);
            Ok::<_, std::io::Error>((raft, storage.raft_id, storage.fresh, restart))
        }
        .await;
        let _ = tx.send(result);
    });
    let (raft, id, fresh, restart) = rx
        .recv()
        .map_err(|_| std::io::Error::other("registry runtime stopped during start"))??;
    Ok((
        RaftHandle {
            raft: Arc::new(Mutex::new(raft)),
            restart: Arc::new(restart),
            quiet,
            leading: Arc::default(),
            id,
            wire,
            runtime: handle,
            known_ids: Arc::new(Mutex::new(HashMap::new())),
            stop: Arc::new(Mutex::new(Some(stop_tx))),
            lease: config.election_timeout.1,
        },
        fresh,
    ))
}

impl RaftHandle {
    /// The running Raft (a cheap handle clone).
    fn raft(&self) -> Raft {
        lock(&self.raft).clone()
    }

    /// Runs `fut` on the registry runtime, where openraft's API is driven, and waits for it.
    async fn on_runtime<T: Send + 'static>(
        &self,
        fut: impl std::future::Future<Output = T> + Send + 'static,
    ) -> Result<T, LocalError> {
        self.runtime
            .spawn(fut)
            .await
            .map_err(|e| LocalError::Failed(e.to_string()))
    }

    /// Proposes `cmd` if this node leads.
    pub(crate) async fn write_local(&self, cmd: Command) -> Result<Outcome, LocalError> {
        let raft = self.raft();
        self.on_runtime(async move { raft.client_write(cmd).await })
            .await?
            .map(|resp| resp.data)
            .map_err(proposal_error)
    }

    /// Confirms leadership with a quorum and returns the log index a linearizable read must
    /// see applied.
    pub(crate) async fn read_index_local(&self) -> Result<u64, LocalError> {
        let raft = self.raft();
        self.on_runtime(async move {
            raft.ensure_linearizable(openraft::raft::ReadPolicy::ReadIndex)
                .await
        })
        .await?
        .map(|read| read.index())
        .map_err(local_error)
    }

    /// The current Raft membership (a cheap `Arc` copy, not the whole metrics).
    fn membership(&self) -> Arc<StoredMembershipOf<TypeConfig>> {
        Arc::clone(&self.raft().metrics().borrow_watched().membership_config)
    }

    pub(crate) fn is_leader(&self) -> bool {
        self.raft().metrics().borrow_watched().state == ServerState::Leader
    }

    /// Whether this node has ever been part of a Raft membership.
    pub(crate) fn is_initialized(&self) -> bool {
        self.membership().membership().nodes().next().is_some()
    }

    /// Whether a majority of the voters is alive (Up, Joining or Suspect) by `states`, this
    /// node counting as alive. `None` before the registry formed.
    pub(crate) fn quorum_visible(
        &self,
        states: &[(NodeId, MemberState)],
        me: &str,
    ) -> Option<bool> {
        self.quorum_in(states, me, true)
    }

    /// Whether this node sees a majority of the voters Up (Suspect ones not counted): what a
    /// node hosting supervised actors needs to keep them (see `registry/supervise.rs`).
    /// `None` before the registry formed.
    pub(crate) fn quorum_up(&self, states: &[(NodeId, MemberState)], me: &str) -> Option<bool> {
        self.quorum_in(states, me, false)
    }

    fn quorum_in(
        &self,
        states: &[(NodeId, MemberState)],
        me: &str,
        suspect_counts: bool,
    ) -> Option<bool> {
        let stored = self.membership();
        let membership = stored.membership();
        let voters: Vec<&str> = membership
            .voter_ids()
            .filter_map(|id| membership.get_node(&id).map(|n| n.name.as_str()))
            .collect();
        if voters.is_empty() {
            return None;
        }
        let alive = voters
            .iter()
            .filter(|&&v| {
                v == me
                    || states.iter().any(|(id, state)| {
                        id.name() == v
                            && (matches!(state, MemberState::Up | MemberState::Joining)
                                || (suspect_counts && *state == MemberState::Suspect))
                    })
            })
            .count();
        Some(alive * 2 > voters.len())
    }

    pub(crate) fn status(&self, replica: &Replica) -> RegistryStatus {
        let (stored, leader) = {
            let m = self.raft().metrics();
            let m = m.borrow_watched();
            (Arc::clone(&m.membership_config), self.live_leader(&m))
        };
        let membership = stored.membership();
        let (term, last_log) = self.log_position();
        let name = |id: u64| membership.get_node(&id).map(|n| n.name.clone());
        let mut voters: Vec<String> = membership.voter_ids().filter_map(name).collect();
        let mut learners: Vec<String> = membership.learner_ids().filter_map(name).collect();
        voters.sort();
        learners.sort();
        RegistryStatus {
            raft_id: Some(self.id),
            leader: leader.and_then(name),
            voters,
            learners,
            changing_voters: membership.get_joint_config().len() > 1,
            applied: replica.applied(),
            names: replica.read(|n| n.len()),
            term,
            last_log,
        }
    }

    /// The leader as far as this node can vouch for it: itself while a quorum acknowledged
    /// it within the lease, another member while its entries or heartbeats arrived within it.
    /// Raft's own `current_leader` keeps naming a leader after quorum is lost (a follower
    /// remembers the last one it voted for, even across a restart), which an operator would
    /// take for a working registry.
    fn live_leader(&self, m: &openraft::RaftMetrics<TypeConfig>) -> Option<u64> {
        let leader = m.current_leader?;
        let fresh = |d: std::time::Duration| d <= self.lease;
        if leader == self.id {
            if m.state != ServerState::Leader {
                return None;
            }
            let alone = m.membership_config.membership().voter_ids().eq([self.id]);
            let acked = match m.last_quorum_acked.as_ref() {
                Some(at) => fresh(openraft::Instant::elapsed(&**at)),
                // Elected, and no heartbeat round acknowledged yet: the votes that elected
                // it were a quorum's acknowledgement, within the lease of the first time this
                // node saw itself lead in this term.
                None => fresh(self.leading_since(m.current_term).elapsed()),
            };
            (alone || acked).then_some(leader)
        } else {
            self.wire
                .since_leader_contact()
                .is_some_and(fresh)
                .then_some(leader)
        }
    }

    /// How long ago this node last had word of a working leader: on the leader, the last
    /// quorum acknowledgement (none needed when it is the only voter); elsewhere, the last
    /// entries or heartbeat from the leader. `None` if never.
    pub(crate) fn leader_contact_age(&self) -> Option<std::time::Duration> {
        // Read under the metrics borrow (no copy of the metrics, taken every fencing round).
        let raft = self.raft();
        let metrics = raft.metrics();
        let m = metrics.borrow_watched();
        if m.state != ServerState::Leader {
            return self.wire.since_leader_contact();
        }
        if m.membership_config.membership().voter_ids().eq([self.id]) {
            return Some(std::time::Duration::ZERO);
        }
        Some(match m.last_quorum_acked.as_ref() {
            Some(at) => openraft::Instant::elapsed(&**at),
            None => self.leading_since(m.current_term).elapsed(),
        })
    }

    /// When this node first saw itself lead in `term`.
    fn leading_since(&self, term: u64) -> std::time::Instant {
        let mut since = lock(&self.leading);
        match *since {
            Some((t, at)) if t == term => at,
            _ => {
                let now = std::time::Instant::now();
                *since = Some((term, now));
                now
            }
        }
    }

    pub(crate) fn remember_id(&self, node: NodeId, id: u64) {
        lock(&self.known_ids).insert(node, id);
    }

    fn known_id(&self, node: &NodeId) -> Option<u64> {
        lock(&self.known_ids).get(node).copied()
    }

    /// Runs `fut` on the registry runtime.
    pub(crate) fn spawn(&self, fut: impl std::future::Future<Output = ()> + Send + 'static) {
        self.runtime.spawn(fut);
    }

    /// If this node leads, hands leadership to the most up-to-date other voter and waits, at
    /// most `within`, until that voter has taken over: a planned shutdown then costs the
    /// cluster no election (a leader that just vanishes leaves the others waiting out its
    /// lease and an election timeout). `true` if another node leads when it returns.
    pub(crate) async fn hand_off(&self, within: std::time::Duration) -> bool {
        let target = {
            let m = self.raft().metrics();
            let m = m.borrow_watched();
            if m.current_leader != Some(self.id) {
                return false;
            }
            let matched = |id: &u64| {
                m.replication
                    .as_ref()
                    .and_then(|r| r.get(id).cloned().flatten())
                    .map(|log| log.index())
            };
            m.membership_config
                .membership()
                .voter_ids()
                .filter(|v| *v != self.id)
                .max_by_key(|v| (matched(v), std::cmp::Reverse(*v)))
        };
        let Some(target) = target else {
            return false;
        };
        let (raft, me) = (self.raft(), self.id);
        // Bounded here too, on the caller's clock: the registry thread may be busy (building
        // or installing a snapshot) and not run the inner bound on time.
        let outer = within + std::time::Duration::from_secs(1);
        let handed = tokio::time::timeout(
            outer,
            self.on_runtime(async move {
                if raft.trigger().transfer_leader(target).await.is_err() {
                    return false;
                }
                raft.wait(Some(within))
                    .metrics(
                        |m| m.current_leader.is_some_and(|l| l != me),
                        "leadership handed off",
                    )
                    .await
                    .is_ok()
            }),
        )
        .await;
        matches!(handed, Ok(Ok(true)))
    }

    /// This member's current term and last log id `(term, index)`, as stored: what registry
    /// recovery compares replicas by.
    pub(crate) fn log_position(&self) -> (u64, Option<(u64, u64)>) {
        let (vote, last) = self.restart.log.state();
        let term = vote.map_or(0, |v| v.leader_id().term);
        (term, last.map(|l| (l.leader_id.term, l.index)))
    }

    /// Registry recovery after a lost majority: stops Raft, appends to this member's own log
    /// a membership with this member as the only voter, in a term above `above_term` and
    /// above any it has seen, and starts Raft again over the same storage. Alone in its
    /// voter set, it elects itself and commits its whole log with the new membership, the
    /// way etcd's `--force-new-cluster` does; reconciliation then adds the other live members
    /// back. The caller has checked that no quorum of the old voters is reachable: with one,
    /// this would fork the registry.
    ///
    /// Returns the log id of the new membership entry.
    pub(crate) async fn force_single_voter(
        &self,
        me: RaftNode,
        above_term: u64,
    ) -> Result<(u64, u64), LocalError> {
        let (cell, restart, id, wire) = (
            Arc::clone(&self.raft),
            Arc::clone(&self.restart),
            self.id,
            Arc::clone(&self.wire),
        );
        self.on_runtime(async move {
            let _busy = restart.busy.lock().await;
            let old = lock(&cell).clone();
            old.shutdown()
                .await
                .map_err(|e| LocalError::Failed(format!("raft shutdown: {e}")))?;
            let Some(sm) = restart.sm.take(std::time::Duration::from_secs(10)).await else {
                return Err(LocalError::Failed(
                    "the registry state machine did not stop; restart this node".into(),
                ));
            };
            let mut log = restart.log.clone();
            let rewritten = async {
                let (vote, last) = log.state();
                let seen = vote
                    .map_or(0, |v| v.leader_id().term)
                    .max(last.map_or(0, |l| l.leader_id.term))
                    .max(above_term);
                let term = seen + 1;
                let index = last.map_or(0, |l| l.index + 1);
                // A vote above the entry's term: this member is a candidate of the next term,
                // as after any restart, and wins its own election.
                log.save_vote(&Vote::new(term + 1, id)).await?;
                let log_id = LogId::new(
                    LeaderIdOf::<TypeConfig>::new(term, id).to_committed(),
                    index,
                );
                let entry = Entry {
                    log_id,
                    payload: openraft::EntryPayload::Membership(
                        openraft::Membership::new(
                            vec![BTreeSet::from([id])],
                            BTreeMap::from([(id, me)]),
                        )
                        .map_err(std::io::Error::other)?,
                    ),
                };
                let (tx, rx) = <TypeConfig as openraft::type_config::TypeConfigExt>::oneshot();
                log.append([entry], openraft::storage::IOFlushed::signal(tx))
                    .await?;
                rx.await
                    .map_err(|_| std::io::Error::other("log writer stopped"))??;
                Ok::<_, std::io::Error>((term, index))
            }
            .await;
            // Started again whatever happened: with the old membership if the rewrite failed.
            let raft = Raft::new(
                id,
                Arc::clone(&restart.config),
                restart.factory.clone(),
                log,
                sm,
            )
            .await
            .map_err(|e| LocalError::Failed(format!("raft restart: {e}")))?;
            wire.set_raft(raft.clone(), id);
            *lock(&cell) = raft;
            rewritten.map_err(|e| LocalError::Failed(format!("rewriting the log: {e}")))
        })
        .await?
    }

    /// Logs, in one line, how many of openraft's warnings the registry thread held back since
    /// the last such line (at most once per 10 s).
    pub(crate) fn report_quiet(&self) {
        if let Some(n) = self
            .quiet
            .as_ref()
            .and_then(|q| q.take_report(std::time::Instant::now()))
        {
            tracing::warn!(
                target: "actix_cluster::registry",
                repeated = n,
                "registry consensus: {n} repeated openraft warnings held back (a member is \
                 unreachable or slow; RegistryConfig::verbose_raft_logs shows them all)"
            );
        }
    }

    /// Stops Raft, then lets the runtime thread end (best effort).
    pub(crate) fn shutdown(&self) {
        let raft = self.raft();
        let stop = lock(&self.stop).take();
        self.runtime.spawn(async move {
            let _ = raft.shutdown().await;
            if let Some(stop) = stop {
                let _ = stop.send(());
            }
        });
    }
}

/// Who may vote: every non-client member in a decentralized cluster, masters only in a
/// centralized one.
fn may_vote(architecture: Architecture, role: NodeRole) -> bool {
    match architecture {
        Architecture::Decentralized => role != NodeRole::Client,
        Architecture::Centralized => role == NodeRole::Master,
    }
}

/// An Up member that may vote: one the registry forms with and promotes.
pub(crate) fn eligible(architecture: Architecture, m: &Member) -> bool {
    m.state == MemberState::Up && may_vote(architecture, m.role)
}

fn alive(state: MemberState) -> bool {
    matches!(state, MemberState::Up | MemberState::Suspect)
}

/// What the periodic tick decided; the async part (asking other nodes for their raft ids,
/// proposing changes) is done by the caller.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Members whose Raft id is unknown: ask them.
    pub(crate) ask: Vec<NodeId>,
    /// One membership change to propose (openraft runs one at a time).
    pub(crate) change: Option<Change>,
    /// Node incarnations whose names to release.
    pub(crate) release: Vec<NodeId>,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Change {
    AddLearner(u64, RaftNode),
    RemoveNodes(BTreeSet<u64>),
    Voters(BTreeSet<u64>),
}

/// What the leader's reconciliation decides from.
#[derive(Clone, Copy)]
pub(crate) struct View<'a> {
    /// This node's Raft id and name.
    pub(crate) me: (u64, &'a str),
    pub(crate) architecture: Architecture,
    /// Configured number of voters.
    pub(crate) target: usize,
    /// The cluster member table.
    pub(crate) members: &'a [Member],
    /// Raft membership: every node, and the voters among them.
    pub(crate) raft_nodes: &'a BTreeMap<u64, RaftNode>,
    pub(crate) voters: &'a BTreeSet<u64>,
    /// Raft ids other members reported.
    pub(crate) known: &'a dyn Fn(&NodeId) -> Option<u64>,
    /// Node incarnations holding names.
    pub(crate) owners: &'a BTreeSet<NodeId>,
}

/// Whether a Raft member is the live process it was added as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Standing {
    /// Its node is alive and reported this very Raft id.
    Live,
    /// Not known yet: its node is alive but has not told this leader its Raft id, or it is
    /// Joining, or not in the member table yet (a new leader's view is still filling in).
    Unknown,
    /// Gone for good: its node is Down or Left, or alive under another Raft id (it restarted
    /// without its state and is a new member now).
    Dead,
}

/// The [`Standing`] of Raft members, from a leader's [`View`].
struct Standings<'a> {
    me: (u64, &'a str),
    members: &'a [Member],
    known: &'a dyn Fn(&NodeId) -> Option<u64>,
    /// The live incarnation of each node name.
    current: HashMap<&'a str, &'a Member>,
}

impl<'a> Standings<'a> {
    fn new(view: &View<'a>) -> Self {
        Self {
            me: view.me,
            members: view.members,
            known: view.known,
            current: view
                .members
                .iter()
                .filter(|m| m.role != NodeRole::Client && alive(m.state))
                .map(|m| (m.id.name(), m))
                .collect(),
        }
    }

    /// The Raft id a live member reported (this node's own, for this node).
    fn id_of(&self, m: &Member) -> Option<u64> {
        if m.id.name() == self.me.1 {
            Some(self.me.0)
        } else {
            (self.known)(&m.id)
        }
    }

    fn of(&self, id: u64, node: &RaftNode) -> Standing {
        if id == self.me.0 {
            return Standing::Live;
        }
        if let Some(m) = self.current.get(node.name.as_str()) {
            return match self.id_of(m) {
                Some(live) if live == id => Standing::Live,
                Some(_) => Standing::Dead,
                None => Standing::Unknown,
            };
        }
        let gone = self.members.iter().any(|m| {
            m.id.name() == node.name && matches!(m.state, MemberState::Down | MemberState::Left)
        });
        if gone {
            Standing::Dead
        } else {
            Standing::Unknown
        }
    }

    /// Live learners that may vote, in name order: the spares that replace or add voters.
    fn spares(&self, view: &View<'_>) -> Vec<u64> {
        let mut spares: Vec<(&str, u64)> = view
            .raft_nodes
            .iter()
            .filter(|(id, n)| !view.voters.contains(id) && self.of(**id, n) == Standing::Live)
            .filter(|(_, n)| {
                self.current
                    .get(n.name.as_str())
                    .is_some_and(|m| eligible(view.architecture, m))
            })
            .map(|(id, n)| (n.name.as_str(), *id))
            .collect();
        spares.sort();
        spares.into_iter().map(|(_, id)| id).collect()
    }
}

/// Pure decision of the leader's reconciliation (sans-IO; unit-tested below).
///
/// - every alive non-client member with a known Raft id joins as a learner;
/// - the voter set never shrinks by itself: each dead voter (see [`Standing`]) is replaced by
///   a live spare (an Up learner that may vote, in name order) in one joint change of equal
///   size; without a spare it stays a voter, and the live ones keep committing while they are
///   a majority. A voter whose standing is unknown is never touched;
/// - a set below `target` (formed with fewer, or `target` raised) grows from spares, in steps
///   that end odd or at `target`;
/// - dead learners are removed;
/// - names held by Down, Left or replaced incarnations are released.
pub(crate) fn plan(view: &View<'_>) -> Plan {
    let View {
        me,
        architecture: _,
        target,
        members,
        raft_nodes,
        voters,
        known,
        owners,
    } = *view;
    let mut out = Plan::default();
    let standings = Standings::new(view);
    let current = &standings.current;
    let id_of = |m: &Member| standings.id_of(m);
    let standing = |id: u64, node: &RaftNode| standings.of(id, node);
    // Releases: owners that are Down/Left, or replaced by a newer incarnation.
    for owner in owners {
        let gone = members.iter().any(|m| {
            m.id.name() == owner.name()
                && ((m.id == *owner && matches!(m.state, MemberState::Down | MemberState::Left))
                    || (m.id.incarnation() > owner.incarnation() && alive(m.state)))
        });
        if gone {
            out.release.push(owner.clone());
        }
    }
    // Ask members whose id we do not know.
    for m in current.values() {
        if m.id.name() != me.1 && known(&m.id).is_none() {
            out.ask.push(m.id.clone());
        }
    }
    out.ask.sort();
    // Voter set first: it is what keeps the registry writable.
    let mut spares = standings.spares(view).into_iter();
    let mut dead: Vec<(&str, u64)> = voters
        .iter()
        .filter_map(|id| raft_nodes.get(id).map(|n| (n.name.as_str(), *id)))
        .filter(|(_, id)| {
            raft_nodes
                .get(id)
                .is_some_and(|n| standing(*id, n) == Standing::Dead)
        })
        .collect();
    dead.sort();
    let mut desired = voters.clone();
    for (_, id) in dead {
        let Some(spare) = spares.next() else {
            break;
        };
        desired.remove(&id);
        desired.insert(spare);
    }
    if desired.len() < target {
        let grown: Vec<u64> = spares.by_ref().take(target - desired.len()).collect();
        let size = desired.len() + grown.len();
        if size % 2 == 1 || size >= target {
            desired.extend(grown);
        }
    }
    if &desired != voters && !desired.is_empty() {
        out.change = Some(Change::Voters(desired));
        return out;
    }
    // Dead learners leave.
    let dead_learners: BTreeSet<u64> = raft_nodes
        .iter()
        .filter(|(id, n)| !voters.contains(id) && standing(**id, n) == Standing::Dead)
        .map(|(id, _)| *id)
        .collect();
    if !dead_learners.is_empty() {
        out.change = Some(Change::RemoveNodes(dead_learners));
        return out;
    }
    // New members join as learners, one per round, in name order.
    let mut joining: Vec<(&str, u64, &Member)> = current
        .values()
        .filter_map(|m| id_of(m).map(|id| (m.id.name(), id, *m)))
        .filter(|(_, id, _)| !raft_nodes.contains_key(id))
        .collect();
    joining.sort_by(|a, b| a.0.cmp(b.0));
    if let Some((name, id, m)) = joining.first() {
        out.change = Some(Change::AddLearner(
            *id,
            RaftNode {
                name: (*name).to_owned(),
                addr: m.addr.to_string(),
            },
        ));
    }
    out
}

/// What `ctl registry remove-voter NAME` proposes: the voter set without `name`'s voter, a
/// live spare taking its place when there is one. Refused (with the reason) when `name` is no
/// voter, when its node is alive (reconciliation would add it straight back), or when the
/// new set would not hold a quorum of live voters. Returns the new voter set and the Raft
/// ids removed.
pub(crate) fn removal(
    view: &View<'_>,
    name: &str,
) -> Result<(BTreeSet<u64>, BTreeSet<u64>), String> {
    let standings = Standings::new(view);
    let removed: BTreeSet<u64> = view
        .voters
        .iter()
        .filter(|id| view.raft_nodes.get(id).is_some_and(|n| n.name == name))
        .copied()
        .collect();
    if removed.is_empty() {
        let mut voters: Vec<&str> = view
            .voters
            .iter()
            .filter_map(|id| view.raft_nodes.get(id).map(|n| n.name.as_str()))
            .collect();
        voters.sort_unstable();
        return Err(format!(
            "{name} is not a voter (voters: {})",
            voters.join(", ")
        ));
    }
    for id in &removed {
        if view
            .raft_nodes
            .get(id)
            .is_some_and(|n| standings.of(*id, n) == Standing::Live)
        {
            return Err(format!(
                "{name} is alive and would be added back at once; stop it or let it leave \
                 the cluster first"
            ));
        }
    }
    let mut desired: BTreeSet<u64> = view.voters.difference(&removed).copied().collect();
    desired.extend(standings.spares(view).into_iter().take(removed.len()));
    let live = desired
        .iter()
        .filter(|id| {
            view.raft_nodes
                .get(id)
                .is_some_and(|n| standings.of(**id, n) == Standing::Live)
        })
        .count();
    if live * 2 <= desired.len() {
        return Err(format!(
            "that would leave {live} live voter(s) of {}, fewer than a quorum",
            desired.len()
        ));
    }
    Ok((desired, removed))
}

impl RaftHandle {
    /// Proposes one membership change (leader only; errors are retried next round).
    pub(crate) async fn apply_change(&self, change: Change) -> Result<(), LocalError> {
        let raft = self.raft();
        self.on_runtime(async move {
            match change {
                Change::AddLearner(id, node) => raft.add_learner(id, node, false).await,
                Change::RemoveNodes(ids) => {
                    raft.change_membership(ChangeMembers::RemoveNodes(ids), false)
                        .await
                }
                Change::Voters(ids) => {
                    raft.change_membership(ChangeMembers::ReplaceAllVoters(ids), false)
                        .await
                }
            }
        })
        .await?
        .map(|_| ())
        .map_err(proposal_error)
    }

    /// `ctl registry remove-voter`: on the leader, proposes [`removal`]'s voter set, then
    /// drops the removed member from the membership. `NotLeader` elsewhere and while another
    /// voter change is under way (the caller tries again).
    pub(crate) async fn remove_voter(
        &self,
        me: &str,
        architecture: Architecture,
        members: &[Member],
        name: &str,
    ) -> Result<(), LocalError> {
        if !self.is_leader() {
            let leader = {
                let m = self.raft().metrics();
                let m = m.borrow_watched();
                m.current_leader.and_then(|l| {
                    m.membership_config
                        .membership()
                        .get_node(&l)
                        .map(|n| n.name.clone())
                })
            };
            return Err(LocalError::NotLeader(leader));
        }
        if self.changing_voters() {
            return Err(LocalError::NotLeader(None));
        }
        let (voters, removed) = self
            .removal(me, architecture, members, name)
            .map_err(LocalError::Refused)?;
        tracing::info!(
            node = me,
            removed = name,
            ?voters,
            "registry voter removed by an operator"
        );
        self.apply_change(Change::Voters(voters)).await?;
        // Best effort: reconciliation removes a dead learner anyway.
        if let Err(e) = self.apply_change(Change::RemoveNodes(removed)).await {
            tracing::debug!("removing the demoted voter: {e}");
        }
        Ok(())
    }

    /// Forms the registry with `voters` as its first membership. Only ever called once per
    /// process lifetime, on a node whose storage has never held Raft state, with this node
    /// among `voters`.
    pub(crate) async fn initialize(
        &self,
        voters: BTreeMap<u64, RaftNode>,
    ) -> Result<(), LocalError> {
        let raft = self.raft();
        self.on_runtime(async move { raft.initialize(voters).await })
            .await?
            .map_err(|e| LocalError::Failed(e.to_string()))
    }

    /// Runs `f` on a [`View`] of this node's Raft membership, with `members` and `owners`.
    fn with_view<R>(
        &self,
        me: &str,
        architecture: Architecture,
        target: usize,
        members: &[Member],
        owners: &BTreeSet<NodeId>,
        f: impl FnOnce(&View<'_>) -> R,
    ) -> R {
        let stored = self.membership();
        let membership = stored.membership();
        let raft_nodes = membership.nodes().map(|(id, n)| (*id, n.clone())).collect();
        let voters = membership.voter_ids().collect();
        f(&View {
            me: (self.id, me),
            architecture,
            target,
            members,
            raft_nodes: &raft_nodes,
            voters: &voters,
            known: &|id| self.known_id(id),
            owners,
        })
    }

    /// [`removal`] with this node's state.
    pub(crate) fn removal(
        &self,
        me: &str,
        architecture: Architecture,
        members: &[Member],
        name: &str,
    ) -> Result<(BTreeSet<u64>, BTreeSet<u64>), String> {
        self.with_view(me, architecture, 0, members, &BTreeSet::new(), |view| {
            removal(view, name)
        })
    }

    /// Whether a voter change (joint consensus) is under way.
    pub(crate) fn changing_voters(&self) -> bool {
        self.membership().membership().get_joint_config().len() > 1
    }

    /// This member as its Raft membership records it, if it is in it.
    pub(crate) fn own_node(&self) -> Option<RaftNode> {
        self.membership().membership().get_node(&self.id).cloned()
    }

    /// The Raft members other than this one, by id.
    pub(crate) fn other_members(&self) -> Vec<(u64, RaftNode, bool)> {
        let stored = self.membership();
        let membership = stored.membership();
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        membership
            .nodes()
            .filter(|(id, _)| **id != self.id)
            .map(|(id, n)| (*id, n.clone(), voters.contains(id)))
            .collect()
    }

    /// [`plan`] with this node's state.
    pub(crate) fn plan(
        &self,
        me: &str,
        architecture: Architecture,
        members: &[Member],
        replica: &Replica,
        target: usize,
    ) -> Plan {
        let owners = replica.read(|n| n.owners().cloned().collect());
        self.with_view(me, architecture, target, members, &owners, plan)
    }
}

/// Whether this node is the one that bootstraps: the lowest-named Up member that may vote.
pub(crate) fn is_bootstrapper(me: &str, architecture: Architecture, members: &[Member]) -> bool {
    members
        .iter()
        .filter(|m| eligible(architecture, m))
        .map(|m| m.id.name())
        .min()
        == Some(me)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn member(name: &str, inc: u64, state: MemberState) -> Member {
        Member {
            id: NodeId::new(name, inc),
            addr: "127.0.0.1:1".parse().unwrap(),
            role: NodeRole::Worker,
            labels: Default::default(),
            capabilities: Vec::new(),
            state,
            phi: 0.0,
            load: None,
            connected: true,
            queued: 0,
        }
    }

    #[test]
    fn a_discarded_proposal_may_have_applied_and_a_refused_one_did_not() {
        use openraft::error::{ForwardToLeader, RaftError};
        let leader = || ForwardToLeader::<TypeConfig>::new(2, rn("b"));
        // Refused before its entry was appended: forward to the leader, nothing was proposed.
        let refused = proposal_error(RaftError::APIError(ClientWriteError::ForwardToLeader(
            leader(),
        )));
        assert!(
            matches!(&refused, LocalError::NotLeader(Some(l)) if l == "b"),
            "{refused:?}"
        );
        // Appended, then discarded: it may have committed through the new leader.
        let discarded = proposal_error(RaftError::APIError(ClientWriteError::LogEntryDiscarded(
            leader(),
        )));
        assert!(
            matches!(&discarded, LocalError::Failed(why) if why.contains("may have been committed")),
            "{discarded:?}"
        );
    }

    /// Raft members by id.
    fn raft_nodes(entries: &[(u64, &str)]) -> BTreeMap<u64, RaftNode> {
        entries.iter().map(|&(id, name)| (id, rn(name))).collect()
    }

    fn rn(name: &str) -> RaftNode {
        RaftNode {
            name: name.into(),
            addr: "127.0.0.1:1".into(),
        }
    }

    fn ids<'a>(names: &'a [(&'a str, u64)]) -> impl Fn(&NodeId) -> Option<u64> + 'a {
        move |id: &NodeId| names.iter().find(|(n, _)| *n == id.name()).map(|(_, i)| *i)
    }

    /// [`plan`] as node `a` (Raft id 1) of a decentralized cluster with 3 voters wanted and
    /// no names held.
    fn plan_as_a(
        members: &[Member],
        raft_nodes: &BTreeMap<u64, RaftNode>,
        voters: &BTreeSet<u64>,
        known: &dyn Fn(&NodeId) -> Option<u64>,
    ) -> Plan {
        plan(&view_as_a(members, raft_nodes, voters, known))
    }

    /// The [`View`] of node `a` (Raft id 1) of a decentralized cluster with 3 voters wanted and
    /// no names held.
    fn view_as_a<'a>(
        members: &'a [Member],
        raft_nodes: &'a BTreeMap<u64, RaftNode>,
        voters: &'a BTreeSet<u64>,
        known: &'a dyn Fn(&NodeId) -> Option<u64>,
    ) -> View<'a> {
        const NO_OWNERS: &BTreeSet<NodeId> = &BTreeSet::new();
        View {
            me: (1, "a"),
            architecture: Architecture::Decentralized,
            target: 3,
            members,
            raft_nodes,
            voters,
            known,
            owners: NO_OWNERS,
        }
    }

    #[test]
    fn a_one_voter_registry_grows_to_three_without_an_even_step() {
        let members = vec![
            member("a", 1, MemberState::Up),
            member("b", 1, MemberState::Up),
            member("c", 1, MemberState::Up),
        ];
        let known = ids(&[("b", 2), ("c", 3)]);
        let nodes = raft_nodes(&[(1, "a")]);
        let voters: BTreeSet<u64> = [1].into();
        let p = plan_as_a(&members, &nodes, &voters, &known);
        assert_eq!(p.change, Some(Change::AddLearner(2, rn("b"))));
        // b joined: 2 voters would be even and below target, so c joins first.
        let nodes = raft_nodes(&[(1, "a"), (2, "b")]);
        let p = plan_as_a(&members, &nodes, &voters, &known);
        assert_eq!(p.change, Some(Change::AddLearner(3, rn("c"))));
        let nodes = raft_nodes(&[(1, "a"), (2, "b"), (3, "c")]);
        let p = plan_as_a(&members, &nodes, &voters, &known);
        assert_eq!(p.change, Some(Change::Voters([1, 2, 3].into())));
    }

    #[test]
    fn a_down_voter_is_replaced_by_the_first_spare_in_name_order() {
        let members = vec![
            member("a", 1, MemberState::Up),
            member("b", 1, MemberState::Down),
            member("c", 1, MemberState::Up),
            member("d", 1, MemberState::Up),
            member("e", 1, MemberState::Up),
        ];
        let known = ids(&[("b", 2), ("c", 3), ("d", 4), ("e", 5)]);
        let nodes = raft_nodes(&[(1, "a"), (2, "b"), (3, "c"), (4, "d"), (5, "e")]);
        let voters: BTreeSet<u64> = [1, 2, 3].into();
        let p = plan_as_a(&members, &nodes, &voters, &known);
        assert_eq!(p.change, Some(Change::Voters([1, 3, 4].into())));
    }

    #[test]
    fn a_down_voter_without_a_spare_stays_a_voter() {
        let members = vec![
            member("a", 1, MemberState::Up),
            member("b", 1, MemberState::Down),
            member("c", 1, MemberState::Up),
        ];
        let known = ids(&[("b", 2), ("c", 3)]);
        let nodes = raft_nodes(&[(1, "a"), (2, "b"), (3, "c")]);
        let voters: BTreeSet<u64> = [1, 2, 3].into();
        let p = plan_as_a(&members, &nodes, &voters, &known);
        assert_eq!(p.change, None);
    }

    #[test]
    fn a_new_leader_that_knows_no_raft_ids_yet_changes_no_voter() {
        // Five voters, two of them (the old leader and one more) Down, and a leader that has
        // not heard anyone's Raft id yet: it must not shrink the set to the ones it knows.
        let members = vec![
            member("a", 1, MemberState::Up),
            member("b", 1, MemberState::Up),
            member("c", 1, MemberState::Up),
            member("d", 1, MemberState::Down),
            member("e", 1, MemberState::Down),
        ];
        let nodes = raft_nodes(&[(1, "a"), (2, "b"), (3, "c"), (4, "d"), (5, "e")]);
        let voters: BTreeSet<u64> = [1, 2, 3, 4, 5].into();
        let p = plan_as_a(&members, &nodes, &voters, &|_| None);
        assert_eq!(p.change, None);
        assert_eq!(p.ask, vec![NodeId::new("b", 1), NodeId::new("c", 1)]);
    }

    #[test]
    fn a_voter_that_restarted_without_its_state_is_replaced_not_reused() {
        // b restarted as incarnation 2 with a fresh Raft id 7: the old id 2 is dead, the new
        // one joins as a learner first and then takes the old one's place in a joint change.
        let members = vec![
            member("a", 1, MemberState::Up),
            member("b", 2, MemberState::Up),
            member("c", 1, MemberState::Up),
        ];
        let known = ids(&[("b", 7), ("c", 3)]);
        let voters: BTreeSet<u64> = [1, 2, 3].into();
        let nodes = raft_nodes(&[(1, "a"), (2, "b"), (3, "c")]);
        let p = plan_as_a(&members, &nodes, &voters, &known);
        assert_eq!(p.change, Some(Change::AddLearner(7, rn("b"))));
        let nodes = raft_nodes(&[(1, "a"), (2, "b"), (3, "c"), (7, "b")]);
        let p = plan_as_a(&members, &nodes, &voters, &known);
        assert_eq!(p.change, Some(Change::Voters([1, 3, 7].into())));
    }

    #[test]
    fn names_of_down_and_replaced_incarnations_are_released() {
        let members = vec![
            member("a", 1, MemberState::Up),
            member("b", 1, MemberState::Down),
            member("c", 2, MemberState::Up),
        ];
        let owners: BTreeSet<NodeId> = [
            NodeId::new("a", 1),
            NodeId::new("b", 1),
            NodeId::new("c", 1),
        ]
        .into();
        let nodes = raft_nodes(&[(1, "a")]);
        let p = plan(&View {
            me: (1, "a"),
            architecture: Architecture::Decentralized,
            target: 3,
            members: &members,
            raft_nodes: &nodes,
            voters: &[1].into(),
            known: &|_| None,
            owners: &owners,
        });
        assert_eq!(p.release, vec![NodeId::new("b", 1), NodeId::new("c", 1)]);
    }

    #[test]
    fn centralized_voters_are_masters_only() {
        let mut m = member("m", 1, MemberState::Up);
        m.role = NodeRole::Master;
        let members = vec![
            m,
            member("w1", 1, MemberState::Up),
            member("w2", 1, MemberState::Up),
        ];
        let known = ids(&[("w1", 2), ("w2", 3)]);
        let nodes = raft_nodes(&[(1, "m"), (2, "w1"), (3, "w2")]);
        let p = plan(&View {
            me: (1, "m"),
            architecture: Architecture::Centralized,
            target: 3,
            members: &members,
            raft_nodes: &nodes,
            voters: &[1].into(),
            known: &known,
            owners: &BTreeSet::new(),
        });
        assert_eq!(p.change, None);
    }

    /// [`removal`] of `name` as node `a` (Raft id 1), decentralized.
    fn remove_as_a(
        members: &[Member],
        raft_nodes: &BTreeMap<u64, RaftNode>,
        voters: &BTreeSet<u64>,
        known: &dyn Fn(&NodeId) -> Option<u64>,
        name: &str,
    ) -> Result<(BTreeSet<u64>, BTreeSet<u64>), String> {
        removal(&view_as_a(members, raft_nodes, voters, known), name)
    }

    #[test]
    fn removing_a_dead_voter_takes_a_spare_or_shrinks_the_set() {
        let mut members = vec![
            member("a", 1, MemberState::Up),
            member("b", 1, MemberState::Down),
            member("c", 1, MemberState::Up),
        ];
        let known = ids(&[("b", 2), ("c", 3), ("d", 4)]);
        let voters: BTreeSet<u64> = [1, 2, 3].into();
        let nodes = raft_nodes(&[(1, "a"), (2, "b"), (3, "c")]);
        assert_eq!(
            remove_as_a(&members, &nodes, &voters, &known, "b"),
            Ok(([1, 3].into(), [2].into()))
        );
        // With a live learner that may vote, it takes b's place: the set keeps its size.
        members.push(member("d", 1, MemberState::Up));
        let nodes = raft_nodes(&[(1, "a"), (2, "b"), (3, "c"), (4, "d")]);
        assert_eq!(
            remove_as_a(&members, &nodes, &voters, &known, "b"),
            Ok(([1, 3, 4].into(), [2].into()))
        );
    }

    #[test]
    fn removing_a_live_voter_an_unknown_node_or_a_quorum_is_refused() {
        let members = vec![
            member("a", 1, MemberState::Up),
            member("b", 1, MemberState::Down),
            member("c", 1, MemberState::Up),
        ];
        let voters: BTreeSet<u64> = [1, 2, 3].into();
        let nodes = raft_nodes(&[(1, "a"), (2, "b"), (3, "c")]);
        let known = ids(&[("b", 2), ("c", 3)]);
        let refused = remove_as_a(&members, &nodes, &voters, &known, "c").unwrap_err();
        assert!(refused.contains("alive"), "{refused}");
        let refused = remove_as_a(&members, &nodes, &voters, &known, "x").unwrap_err();
        assert!(
            refused.contains("not a voter (voters: a, b, c)"),
            "{refused}"
        );
        // c's Raft id is not known yet: only a counts as live in {a, c}, not a quorum.
        let refused = remove_as_a(&members, &nodes, &voters, &ids(&[("b", 2)]), "b").unwrap_err();
        assert!(refused.contains("fewer than a quorum"), "{refused}");
    }

    #[test]
    fn the_lowest_named_up_member_bootstraps() {
        let members = vec![
            member("b", 1, MemberState::Up),
            member("a", 1, MemberState::Joining),
            member("c", 1, MemberState::Up),
        ];
        assert!(is_bootstrapper("b", Architecture::Decentralized, &members));
        assert!(!is_bootstrapper("c", Architecture::Decentralized, &members));
    }
}
