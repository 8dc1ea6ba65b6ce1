//! The public face of membership: member rows, states, load reports, events, tuning.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use actix::Message;
use serde::{Deserialize, Serialize};

use crate::node::{NodeId, NodeRole};

/// Where a member is in its life, as this node sees it.
///
/// ```text
///  Joining ──► Up ◄──► Suspect ──► Down
///                │                    (a restart comes back as a new incarnation)
///                └──► Leaving ──► Left
/// ```
///
/// `Down` and `Left` are final for one incarnation, except in static discovery, where a node
/// that answers again is `Up` again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[non_exhaustive]
pub enum MemberState {
    /// Known (from a seed, a master, gossip or a connection) but not yet confirmed alive.
    Joining,
    /// Alive and a full member.
    Up,
    /// Missed heartbeats or probes; still a member, and may refute the suspicion.
    Suspect,
    /// Declared failed. Requests in flight to it have failed with `NodeGone`.
    Down,
    /// Announced that it is leaving (`ClusterSystem::leave`).
    Leaving,
    /// Left gracefully.
    Left,
}

impl MemberState {
    /// The lowercase name used by `ctl status --json`: `joining`, `up`, `suspect`, `down`,
    /// `leaving`, `left`.
    pub fn as_str(self) -> &'static str {
        match self {
            MemberState::Joining => "joining",
            MemberState::Up => "up",
            MemberState::Suspect => "suspect",
            MemberState::Down => "down",
            MemberState::Leaving => "leaving",
            MemberState::Left => "left",
        }
    }

    /// Whether the member counts as part of the cluster (Up, Suspect or Leaving).
    pub fn is_member(self) -> bool {
        matches!(
            self,
            MemberState::Up | MemberState::Suspect | MemberState::Leaving
        )
    }

    /// Down or Left: this incarnation is not coming back.
    pub fn is_final(self) -> bool {
        matches!(self, MemberState::Down | MemberState::Left)
    }

    pub(crate) fn to_u8(self) -> u8 {
        match self {
            MemberState::Joining => 0,
            MemberState::Up => 1,
            MemberState::Suspect => 2,
            MemberState::Down => 3,
            MemberState::Leaving => 4,
            MemberState::Left => 5,
        }
    }

    pub(crate) fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0 => MemberState::Joining,
            1 => MemberState::Up,
            2 => MemberState::Suspect,
            3 => MemberState::Down,
            4 => MemberState::Leaving,
            5 => MemberState::Left,
            _ => return None,
        })
    }
}

impl std::fmt::Display for MemberState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A node's periodically refreshed load, for placement decisions.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LoadReport {
    /// Distributed actors hosted by the node.
    pub actors: u64,
    /// Requests from other nodes that the node's actors have taken but not answered yet (a
    /// lower bound of its mailbox backlog: actix does not expose mailbox lengths).
    pub mailbox_backlog: u64,
    /// CPU used by the node's process since the previous report, in cores (1.0 = one core
    /// busy). `None` where the platform does not tell (only Linux does for now).
    pub cpu: Option<f32>,
}

impl LoadReport {
    /// A report with the given figures.
    pub fn new(actors: u64, mailbox_backlog: u64, cpu: Option<f32>) -> Self {
        Self {
            actors,
            mailbox_backlog,
            cpu,
        }
    }
}

/// One row of [`ClusterSystem::members`](crate::ClusterSystem::members) and the subject of a
/// [`ClusterEvent`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Member {
    /// Name and incarnation (a restarted process is a new incarnation).
    pub id: NodeId,
    /// Address peers dial.
    pub addr: SocketAddr,
    /// Role.
    pub role: NodeRole,
    /// Operator labels.
    pub labels: BTreeMap<String, String>,
    /// Distributed actor types the node can start on request (their `DistributedActor::NAME`).
    pub capabilities: Vec<String>,
    /// Lifecycle state as this node sees it.
    pub state: MemberState,
    /// Phi-accrual suspicion level from this node's heartbeats to that member; 0 when this
    /// node does not monitor it (and for this node itself).
    pub phi: f64,
    /// The member's last load report, once one arrived.
    pub load: Option<LoadReport>,
    /// Whether a connection to it is currently open from this node.
    pub connected: bool,
    /// Messages waiting in this node's send queue to that member.
    pub queued: usize,
}

impl Member {
    /// An Up member without labels, capabilities or load report, as a row built by hand: for
    /// trying [`Placer`](crate::placement::Placer) decisions on a table of one's own. Set the
    /// other fields directly.
    pub fn new(id: NodeId, addr: SocketAddr, role: NodeRole) -> Self {
        Self {
            id,
            addr,
            role,
            labels: BTreeMap::new(),
            capabilities: Vec::new(),
            state: MemberState::Up,
            phi: 0.0,
            load: None,
            connected: false,
            queued: 0,
        }
    }
}

/// A change in the cluster, delivered to actors that subscribed with
/// [`ClusterSystem::subscribe`](crate::ClusterSystem::subscribe).
///
/// The first event a subscriber gets is always a [`ClusterEvent::Snapshot`] of the member
/// table; every change after it follows in order, so a late subscriber misses nothing.
#[derive(Debug, Clone, PartialEq, Message)]
#[rtype(result = "()")]
#[non_exhaustive]
pub enum ClusterEvent {
    /// The member table at the moment of subscribing, this node included.
    Snapshot(Vec<Member>),
    /// A node became known but is not confirmed yet.
    MemberJoining(Member),
    /// A node is a full member (newly, or again after a suspicion).
    MemberUp(Member),
    /// A member missed heartbeats or probes.
    MemberSuspect(Member),
    /// A member was declared failed, or replaced by a new incarnation.
    MemberDown(Member),
    /// A member announced that it is leaving.
    MemberLeaving(Member),
    /// A member left gracefully.
    MemberLeft(Member),
    /// A member's load report changed.
    LoadChanged(Member),
}

impl ClusterEvent {
    /// The member the event is about, mutably (to complete it before delivery).
    pub(crate) fn member_mut(&mut self) -> Option<&mut Member> {
        match self {
            ClusterEvent::Snapshot(_) => None,
            ClusterEvent::MemberJoining(m)
            | ClusterEvent::MemberUp(m)
            | ClusterEvent::MemberSuspect(m)
            | ClusterEvent::MemberDown(m)
            | ClusterEvent::MemberLeaving(m)
            | ClusterEvent::MemberLeft(m)
            | ClusterEvent::LoadChanged(m) => Some(m),
        }
    }

    /// The member the event is about (`None` for a snapshot).
    pub fn member(&self) -> Option<&Member> {
        match self {
            ClusterEvent::Snapshot(_) => None,
            ClusterEvent::MemberJoining(m)
            | ClusterEvent::MemberUp(m)
            | ClusterEvent::MemberSuspect(m)
            | ClusterEvent::MemberDown(m)
            | ClusterEvent::MemberLeaving(m)
            | ClusterEvent::MemberLeft(m)
            | ClusterEvent::LoadChanged(m) => Some(m),
        }
    }
}

/// Timing of the membership protocol. The failure detector's own tuning is
/// [`FailureDetectorConfig`](crate::FailureDetectorConfig).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct MembershipConfig {
    /// Gossip: how often each node probes one member (SWIM protocol period).
    pub probe_period: Duration,
    /// Gossip: how long a direct probe may take before members are asked to probe indirectly.
    /// Must be below `probe_period`.
    pub probe_rtt: Duration,
    /// Gossip: how often a node pushes pending updates to a few members besides probing.
    pub gossip_interval: Duration,
    /// How long a member stays Suspect (and may refute) before it is declared Down.
    pub suspect_to_down: Duration,
    /// How often a node with no live member dials its seeds (or masters) again, so that a lone
    /// node rejoins, and a partitioned cluster merges back once the partition heals.
    pub reannounce_interval: Duration,
    /// How often the node's load report is refreshed and sent.
    pub load_interval: Duration,
    /// How long Down and Left members stay in the table before they are forgotten.
    pub forget_after: Duration,
}

impl MembershipConfig {
    /// LAN: with [`FailureDetectorConfig::lan`](crate::FailureDetectorConfig::lan), a crashed
    /// node is seen Down everywhere in about 2 s.
    pub fn lan() -> Self {
        Self {
            probe_period: Duration::from_millis(500),
            probe_rtt: Duration::from_millis(200),
            gossip_interval: Duration::from_millis(200),
            suspect_to_down: Duration::from_millis(800),
            reannounce_interval: Duration::from_secs(2),
            load_interval: Duration::from_secs(1),
            forget_after: Duration::from_secs(300),
        }
    }

    /// Slow or shared links: fewer false alarms, slower detection.
    pub fn conservative() -> Self {
        Self {
            probe_period: Duration::from_secs(2),
            probe_rtt: Duration::from_millis(800),
            gossip_interval: Duration::from_millis(500),
            suspect_to_down: Duration::from_secs(10),
            reannounce_interval: Duration::from_secs(10),
            load_interval: Duration::from_secs(5),
            forget_after: Duration::from_secs(3600),
        }
    }
}

impl Default for MembershipConfig {
    fn default() -> Self {
        Self::lan()
    }
}
