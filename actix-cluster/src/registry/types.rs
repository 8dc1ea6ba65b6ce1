//! Public types of the registry: configuration, entries, events and errors.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use actix::Message;
use serde::{Deserialize, Serialize};

use crate::node::NodeId;
use crate::remote::RemoteError;

/// Longest name the registry accepts, in bytes.
pub const MAX_NAME_LEN: usize = 512;

/// Where a node keeps its replica of the registry.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum RegistryStorage {
    /// In memory. A restarted process has lost its Raft state and joins as a new Raft member;
    /// the names survive on the other members. Nothing touches the disk.
    #[default]
    Ephemeral,
    /// Raft log, vote and snapshots in a `redb` database in this directory (created if
    /// missing). A restarted process keeps its Raft identity and catches up from its own log.
    Durable(PathBuf),
}

/// Configuration of the cluster-wide name registry.
///
/// The same Raft code serves both architectures: in a decentralized cluster the voters are
/// chosen from every member (workers and masters); in a centralized one only masters vote and
/// workers keep a read-only replica (Raft learners). Client nodes hold no replica and forward
/// every call to a member.
///
/// ```
/// use actix_cluster::RegistryConfig;
/// let config = RegistryConfig::new().voters(5).durable("/var/lib/my-node/registry");
/// assert!(config.validate().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RegistryConfig {
    /// Number of Raft voters (odd: 1, 3, 5 or 7). The set never shrinks by itself: a Down
    /// voter is replaced by a live spare, or stays a voter until an operator removes it.
    pub voters: usize,
    /// How many eligible members must be Up before the registry forms, all of them voters of
    /// its first membership (in the spirit of Consul's `bootstrap_expect`). Until then writes
    /// fail with [`RegistryError::NotFormed`]. `None` (the default): `min(voters, 3)` in a
    /// decentralized cluster, the number of configured masters (at most `voters`) in a
    /// centralized one. A single-node development cluster sets `Some(1)`. 1, 3, 5 or 7, and
    /// at most `voters`.
    pub bootstrap_expect: Option<usize>,
    /// Ephemeral (default) or durable storage.
    pub storage: RegistryStorage,
    /// Interval of the leader's heartbeats to its followers.
    pub heartbeat_interval: Duration,
    /// A follower that hears no heartbeat for a random time in this range starts an election.
    pub election_timeout: (Duration, Duration),
    /// How long a registry call waits for the cluster before failing with
    /// [`RegistryError::Timeout`].
    pub request_timeout: Duration,
    /// How often the leader checks voters against membership (replacing Down voters, adding
    /// new members as learners) and releases names of Down nodes and stopped actors.
    pub reconcile_interval: Duration,
    /// How long a node waits, with a settled member table, before bootstrapping a registry
    /// nobody else has: only the lowest-named eligible member does it, and only once.
    pub bootstrap_delay: Duration,
    /// Applied entries between two snapshots (log compaction).
    pub snapshot_every: u64,
    /// Largest snapshot this node accepts from the leader, in bytes of its encoding (about
    /// 100 bytes per name plus the name's length): 512 MiB by default, at most 1008 MiB. A
    /// larger one is refused before any byte is kept, and the node cannot catch up until the
    /// limit is raised.
    pub max_snapshot_bytes: u64,
    /// Pass openraft's own log events through unchanged. Off by default: openraft logs each
    /// failed heartbeat at WARN (ten lines a second per unreachable member) and whole Raft
    /// states at INFO, so the registry drops its INFO events, lets each of its warnings
    /// through once per 10 s and reports how many it held back in one line of its own
    /// (target `actix_cluster::registry`). Its DEBUG and TRACE events always pass. The filter
    /// sits in front of the global default subscriber set when the node starts.
    pub verbose_raft_logs: bool,
    /// The lease of a node hosting supervised actors: a node that has had no word of a
    /// working registry leader for this long stops them, and the leader restarts a failed
    /// node's supervised actors elsewhere only this long (plus two `reconcile_interval`s)
    /// after their names were released, unless the node's process is known to be gone (its
    /// port refused a connection). Longer than a leader election (lease plus election
    /// timeout, about 1.8 s with the defaults), so that a failover does not stop them: 3 s.
    pub restart_fence: Duration,
}

/// The smallest accepted [`RegistryConfig::max_snapshot_bytes`].
const MIN_SNAPSHOT_LIMIT: u64 = 64 << 10;
/// The largest: a snapshot is decoded in one piece, with the codec's 1 GiB decode limit,
/// which counts bookkeeping as well as bytes, so stay clear of it.
const MAX_SNAPSHOT_LIMIT: u64 = (1 << 30) - (16 << 20);

impl Default for RegistryConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl RegistryConfig {
    /// LAN defaults: 3 voters, ephemeral storage, 100 ms heartbeats, 600–900 ms elections.
    pub fn new() -> Self {
        Self {
            voters: 3,
            bootstrap_expect: None,
            storage: RegistryStorage::Ephemeral,
            heartbeat_interval: Duration::from_millis(100),
            election_timeout: (Duration::from_millis(600), Duration::from_millis(900)),
            request_timeout: Duration::from_secs(5),
            reconcile_interval: Duration::from_millis(250),
            bootstrap_delay: Duration::from_millis(500),
            snapshot_every: 20_000,
            max_snapshot_bytes: 512 << 20,
            verbose_raft_logs: false,
            restart_fence: Duration::from_secs(3),
        }
    }

    /// Sets [`restart_fence`](Self::restart_fence).
    pub fn restart_fence(mut self, fence: Duration) -> Self {
        self.restart_fence = fence;
        self
    }

    /// Passes openraft's log events through unfiltered (see
    /// [`verbose_raft_logs`](Self::verbose_raft_logs)).
    pub fn verbose_raft_logs(mut self, verbose: bool) -> Self {
        self.verbose_raft_logs = verbose;
        self
    }

    /// Sets the number of voters.
    pub fn voters(mut self, voters: usize) -> Self {
        self.voters = voters;
        self
    }

    /// Sets how many eligible members must be Up before the registry forms (see
    /// [`RegistryConfig::bootstrap_expect`]).
    pub fn bootstrap_expect(mut self, members: usize) -> Self {
        self.bootstrap_expect = Some(members);
        self
    }

    /// [`bootstrap_expect`](Self::bootstrap_expect) as it applies: the configured number, or
    /// the default for `architecture` with `masters` configured master addresses.
    pub(crate) fn expect(&self, architecture: crate::node::Architecture, masters: usize) -> usize {
        self.bootstrap_expect.unwrap_or(match architecture {
            crate::node::Architecture::Decentralized => self.voters.min(3),
            // An odd count, so the first membership has no even step either.
            crate::node::Architecture::Centralized => {
                let n = masters.clamp(1, self.voters);
                if n.is_multiple_of(2) { n - 1 } else { n }
            }
        })
    }

    /// Keeps the Raft state in `dir` (see [`RegistryStorage::Durable`]).
    pub fn durable(mut self, dir: impl Into<PathBuf>) -> Self {
        self.storage = RegistryStorage::Durable(dir.into());
        self
    }

    /// Keeps the Raft state in memory (the default).
    pub fn ephemeral(mut self) -> Self {
        self.storage = RegistryStorage::Ephemeral;
        self
    }

    /// Sets the largest snapshot this node accepts (see [`RegistryConfig::max_snapshot_bytes`]).
    pub fn max_snapshot_bytes(mut self, bytes: u64) -> Self {
        self.max_snapshot_bytes = bytes;
        self
    }

    /// Checks the settings against each other.
    pub fn validate(&self) -> Result<(), String> {
        if !matches!(self.voters, 1 | 3 | 5 | 7) {
            return Err(format!("voters must be 1, 3, 5 or 7, not {}", self.voters));
        }
        if let Some(expect) = self.bootstrap_expect
            && (!matches!(expect, 1 | 3 | 5 | 7) || expect > self.voters)
        {
            return Err(format!(
                "bootstrap_expect must be 1, 3, 5 or 7 and at most voters ({}), not {expect}",
                self.voters
            ));
        }
        let (lo, hi) = self.election_timeout;
        if lo.is_zero() || hi <= lo {
            return Err("election timeout range must be non-empty and above zero".into());
        }
        if self.heartbeat_interval.is_zero() || self.heartbeat_interval * 3 > lo {
            return Err(format!(
                "heartbeat interval {:?} must be above zero and at most a third of the election timeout {lo:?}",
                self.heartbeat_interval
            ));
        }
        if self.request_timeout < hi {
            return Err("request timeout must exceed the election timeout".into());
        }
        if self.restart_fence < hi * 2 {
            return Err(format!(
                "restart_fence {:?} must be at least twice the longest election timeout {hi:?} \
                 (a leader failover must not stop supervised actors)",
                self.restart_fence
            ));
        }
        if self.reconcile_interval.is_zero() || self.snapshot_every == 0 {
            return Err("reconcile interval and snapshot_every must be above zero".into());
        }
        if !(MIN_SNAPSHOT_LIMIT..=MAX_SNAPSHOT_LIMIT).contains(&self.max_snapshot_bytes) {
            return Err(format!(
                "max_snapshot_bytes must be from {MIN_SNAPSHOT_LIMIT} to {MAX_SNAPSHOT_LIMIT} \
                 (the decoder refuses anything near 1 GiB), not {}",
                self.max_snapshot_bytes
            ));
        }
        Ok(())
    }
}

/// One registered name: where the actor lives and the version of the registration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct NameEntry {
    /// The cluster-wide name.
    pub name: String,
    /// The node (and incarnation) hosting the actor.
    pub node: NodeId,
    /// Where that node listens.
    pub node_addr: SocketAddr,
    /// Stable type name of the actor ([`DistributedActor::NAME`](crate::DistributedActor::NAME)).
    pub actor_type: String,
    /// The actor's id on its node.
    pub actor_id: u64,
    /// Registry log index of this registration: strictly larger for every later registration
    /// of any name, so a holder can tell a moved name from the one it knows.
    pub version: u64,
}

/// Why a name was released.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ReleaseReason {
    /// [`ClusterSystem::unregister_name`](crate::ClusterSystem::unregister_name) was called.
    Unregistered,
    /// The actor stopped.
    ActorStopped,
    /// Its node went Down, left, or restarted as a new incarnation.
    NodeDown,
    /// It migrated ([`ClusterSystem::migrate`](crate::ClusterSystem::migrate)): a
    /// `Registered` event for its new location follows.
    Moved,
}

/// A change of the names under a watched prefix. See
/// [`ClusterSystem::watch_names`](crate::ClusterSystem::watch_names).
#[derive(Debug, Clone, PartialEq, Eq, Message)]
#[rtype(result = "()")]
#[non_exhaustive]
pub enum NameEvent {
    /// Every name under the prefix when the watch started; always the first event.
    Snapshot(Vec<NameEntry>),
    /// A name was registered.
    Registered(NameEntry),
    /// A name was released.
    Released {
        /// The registration that ended.
        entry: NameEntry,
        /// Why.
        reason: ReleaseReason,
    },
}

/// The registry as one node sees it, for operators (`ctl names`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RegistryStatus {
    /// The Raft id of the node whose view this is: this node's, or on a client node (which
    /// holds no replica) the member's it asked. A node that restarts without its Raft state
    /// gets a new one and joins as a new member.
    pub raft_id: Option<u64>,
    /// Node currently leading the registry, if known.
    pub leader: Option<String>,
    /// Nodes that vote.
    pub voters: Vec<String>,
    /// Nodes that keep a replica without voting.
    pub learners: Vec<String>,
    /// A voter change is in progress (joint consensus): until it completes, writes need a
    /// majority of the old voters as well as of the new.
    pub changing_voters: bool,
    /// Last log index applied to this node's replica.
    pub applied: u64,
    /// Registered names in this node's replica.
    pub names: usize,
    /// The highest Raft term this node has seen.
    pub term: u64,
    /// The term and index of the last entry in this node's log, `None` while it is empty:
    /// how up to date its replica can get. Recovery after a lost majority
    /// ([`ClusterSystem::registry_recover`](crate::ClusterSystem::registry_recover)) starts
    /// from the member with the highest.
    pub last_log: Option<(u64, u64)>,
}

/// What [`registry_recover`](crate::ClusterSystem::registry_recover) did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RecoveryReport {
    /// The member the registry was re-formed from; its only voter until others are added.
    pub node: String,
    /// The voters before recovery.
    pub old_voters: Vec<String>,
    /// The other members of the old Raft membership that answered (with their Raft state).
    pub answered: Vec<String>,
    /// The term and index of the membership entry that made `node` the only voter.
    pub entry: (u64, u64),
    /// Names in `node`'s replica: what survived.
    pub names: usize,
}

/// Why a registry call failed. Unless a variant says otherwise, the registry did not change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The name belongs to another actor (or another caller is creating one for it).
    #[error("name {name:?} is taken by an actor on {node}")]
    NameTaken {
        /// The name.
        name: String,
        /// The node owning it.
        node: NodeId,
    },
    /// No actor is registered under the name.
    #[error("no actor is registered as {0:?}")]
    NotFound(String),
    /// The name's actor was spawned with a restart policy that is now exhausted: it failed
    /// more often than the policy allows and is not restarted again. Unregistering the name
    /// (or spawning it anew) ends this state.
    #[error(
        "the actor named {name:?} failed after {restarts} restarts and its restart policy is exhausted"
    )]
    RestartsExhausted {
        /// The name.
        name: String,
        /// Restarts it had (counted up to the last 64).
        restarts: u32,
    },
    /// The name is registered to an actor of another type.
    #[error("{name:?} is a {found}, not a {expected}")]
    TypeMismatch {
        /// The name.
        name: String,
        /// The type asked for.
        expected: String,
        /// The registered actor's type.
        found: String,
    },
    /// The name is empty, too long, or contains a control character.
    #[error("invalid name {name:?}: {reason}")]
    InvalidName {
        /// The name.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// This node is on the minority side of a partition (or too many voters are down): no
    /// quorum could confirm the call. A write was not applied.
    #[error("no quorum: the registry cannot reach a majority of its voters")]
    NoQuorum,
    /// The cluster did not answer in time. A write may still be applied later.
    #[error("the registry did not answer within {0:?}")]
    Timeout(Duration),
    /// The registry has not formed: fewer than
    /// [`bootstrap_expect`](RegistryConfig::bootstrap_expect) eligible members are Up. Nothing
    /// was proposed; the call fails at once rather than waiting for members that may never
    /// come.
    #[error(
        "the registry has not formed yet: {have} of the {expect} members it needs are up \
         (bootstrap_expect)"
    )]
    NotFormed {
        /// Eligible members this node sees Up, itself included.
        have: usize,
        /// Members the registry waits for before it forms.
        expect: usize,
    },
    /// The registry is forming, or this node has not joined it yet, or no leader answered.
    #[error("the registry is not available yet: {0}")]
    Unavailable(String),
    /// Creating the actor for [`register_name_or_get`](crate::ClusterSystem::register_name_or_get)
    /// failed; the name was released again.
    #[error("creating the actor failed: {0}")]
    Create(RemoteError),
    /// Talking to another node failed.
    #[error(transparent)]
    Remote(RemoteError),
    /// The node was shut down.
    #[error("the cluster node is shut down")]
    SystemStopped,
    /// An operator action ([`registry_remove_voter`](crate::ClusterSystem::registry_remove_voter),
    /// [`registry_recover`](crate::ClusterSystem::registry_recover)) was refused because it
    /// would be unsafe or has nothing to do; the reason says which. Nothing changed.
    #[error("refused: {0}")]
    Refused(String),
}

/// Checks a name before it is proposed.
pub(crate) fn validate_name(name: &str) -> Result<(), RegistryError> {
    let invalid = |reason| RegistryError::InvalidName {
        name: name.chars().take(64).collect(),
        reason,
    };
    if name.is_empty() {
        return Err(invalid("empty"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(invalid("longer than 512 bytes"));
    }
    if name.chars().any(char::is_control) {
        return Err(invalid("contains a control character"));
    }
    Ok(())
}
