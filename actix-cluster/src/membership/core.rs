//! The sans-IO membership core: one per node, fed with connections, messages, timer events
//! and `now`; it answers with [`Output`]s.
//!
//! Call order (the driver and the simulation both follow it):
//! 1. [`Membership::new`], then drain [`Membership::poll_output`] (it asks for the first tick);
//! 2. on each input, call the matching `handle_*` method with the current time, then drain
//!    `poll_output` and carry out every output in order: sends, timers (call
//!    [`Membership::handle_timer`] when one fires), events, dials;
//! 3. [`Membership::members`] at any time for a snapshot.
//!
//! It never reads the clock, sleeps or spawns, so a seeded simulation of hundreds of nodes
//! with virtual time is deterministic.
//!
//! Three ways to agree on states share one member table and one failure detector:
//! - **gossip**: SWIM through foca decides Up/Suspect/Down; phi-accrual heartbeats to a few
//!   ring neighbours raise suspicions early, which SWIM spreads and the member may refute;
//! - **centralized**: masters monitor every node and push each state change; workers only
//!   monitor masters and take states from them;
//! - **static**: every node monitors every other and decides alone; Down is not final.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::msg::{FocaCodec, FocaId, Msg, MsgError, Record, swim_sender};
use super::phi::{FailureDetectorConfig, PhiAccrual};
use super::types::{ClusterEvent, LoadReport, Member, MemberState, MembershipConfig};
use crate::node::{NodeId, NodeInfo, NodeRole};

/// Ring neighbours each node monitors with heartbeats in gossip mode. SWIM's random probes
/// cover everyone else; a handful of steady heartbeats per node keeps phi meaningful while the
/// cost stays linear in the cluster size.
const GOSSIP_MONITORED: usize = 3;
/// Largest SWIM datagram; fits in the smallest frame limit a node may configure.
const MAX_SWIM_PACKET: usize = 3800;

/// How members agree on states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Gossip,
    Centralized,
    Static,
}

/// Everything the core needs to know about its node and cluster.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) mode: Mode,
    /// Addresses dialled to (re)join: seeds, or masters in centralized mode.
    pub(crate) seeds: Vec<SocketAddr>,
    pub(crate) masters: Vec<SocketAddr>,
    pub(crate) detector: FailureDetectorConfig,
    pub(crate) timing: MembershipConfig,
    /// Distributed actor types this node can start on request.
    pub(crate) capabilities: Vec<String>,
}

/// Where a message goes: enough for the transport to dial a node it has not met yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) id: NodeId,
    pub(crate) addr: SocketAddr,
    pub(crate) role: NodeRole,
}

/// Timers the core asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Timer {
    /// Heartbeats, failure detection, load and re-announce bookkeeping.
    Tick,
    Foca(foca::Timer<FocaId>),
}

/// What the core wants done.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Output {
    /// Send a membership message. `best_effort` messages (heartbeats) are dropped rather than
    /// queued when no connection to the target is up, so a reconnect does not deliver a burst
    /// of stale ones.
    Send {
        to: Target,
        body: Bytes,
        best_effort: bool,
    },
    /// Call [`Membership::handle_timer`] with `timer` after `after`.
    Timer { after: Duration, timer: Timer },
    /// A member changed; deliver to subscribers in order.
    Event(ClusterEvent),
    /// Dial this seed or master address (no live member is known there).
    Dial(SocketAddr),
    /// Measure this node's load and pass it to [`Membership::set_local_load`].
    LoadDue,
}

#[derive(Debug)]
struct Entry {
    info: NodeInfo,
    generation: u32,
    state: MemberState,
    since: Instant,
    capabilities: Vec<String>,
    load: Option<LoadReport>,
    connected: bool,
    monitor: Option<Monitor>,
    /// Gossip: SWIM suspects this member (see [`Suspicion`]).
    suspicion: Option<Suspicion>,
}

#[derive(Debug)]
struct Monitor {
    detector: PhiAccrual,
    sent: u64,
    acked: u64,
    /// Gossip: this silence was already reported to SWIM. A member that refutes the suspicion
    /// is not suspected again until it has answered a heartbeat, so a member that others
    /// reach but this node does not (a one-way partition) does not flap.
    raised: bool,
    /// Started when the member's connection broke, not by a heartbeat (see
    /// [`Membership::handle_disconnected`]); dropped once it is back unless the member is
    /// one this node sends heartbeats to.
    passive: bool,
}

impl Monitor {
    fn new(detector: FailureDetectorConfig, now: Instant, passive: bool) -> Self {
        let mut d = PhiAccrual::new(detector);
        // Silence counts from the moment monitoring starts, so a member that never answers
        // is suspected too.
        d.restart(now);
        Self {
            detector: d,
            sent: 0,
            acked: 0,
            raised: false,
            passive,
        }
    }
}

/// Gossip: a SWIM suspicion as this node saw it begin.
///
/// foca only times out suspicions raised by its own failed probes; one learnt from gossip (or
/// raised from phi) stays until a Down arrives by gossip, and updates are gossiped a bounded
/// number of times, so under load some nodes would miss it and keep a dead member Suspect for
/// a whole probe round. Like memberlist, every node therefore times suspicions out itself.
#[derive(Debug, Clone, Copy)]
struct Suspicion {
    /// The SWIM incarnation suspected; a refutation raises it.
    incarnation: u16,
    since: Instant,
    /// Raised by this node from phi: it plays the prober and decides after `suspect_to_down`.
    /// Suspicions learnt from others wait twice as long, leaving the prober's Down time to
    /// arrive first.
    mine: bool,
}

impl Entry {
    fn new(info: NodeInfo, generation: u32, state: MemberState, now: Instant) -> Self {
        Self {
            info,
            generation,
            state,
            since: now,
            capabilities: Vec::new(),
            load: None,
            connected: false,
            monitor: None,
            suspicion: None,
        }
    }

    fn version(&self) -> (u64, u32) {
        (self.info.id.incarnation(), self.generation)
    }

    fn target(&self) -> Target {
        Target {
            id: self.info.id.clone(),
            addr: self.info.addr,
            role: self.info.role,
        }
    }

    fn phi(&self, now: Instant) -> f64 {
        self.monitor.as_ref().map_or(0.0, |m| m.detector.phi(now))
    }

    fn member(&self, now: Instant) -> Member {
        Member {
            id: self.info.id.clone(),
            addr: self.info.addr,
            role: self.info.role,
            labels: self.info.labels.clone(),
            capabilities: self.capabilities.clone(),
            state: self.state,
            phi: self.phi(now),
            load: self.load,
            connected: self.connected,
            queued: 0,
        }
    }
}

type Swim = foca::Foca<FocaId, FocaCodec, StdRng, foca::NoCustomBroadcast>;

/// Collects what foca asks for during one call.
#[derive(Default)]
struct SwimRuntime {
    sends: Vec<(FocaId, Bytes)>,
    timers: Vec<(foca::Timer<FocaId>, Duration)>,
    changed: bool,
    rejoined: Option<FocaId>,
}

impl foca::Runtime<FocaId> for SwimRuntime {
    fn notify(&mut self, notification: foca::Notification<'_, FocaId>) {
        match notification {
            foca::Notification::Rejoin(id) => {
                self.rejoined = Some(id.clone());
                self.changed = true;
            }
            _ => self.changed = true,
        }
    }

    fn send_to(&mut self, to: FocaId, data: &[u8]) {
        self.sends.push((to, Bytes::copy_from_slice(data)));
    }

    fn submit_after(&mut self, event: foca::Timer<FocaId>, after: Duration) {
        self.timers.push((event, after));
    }
}

/// One node's view of the cluster. See the module docs for the call order.
pub(crate) struct Membership {
    me: NodeInfo,
    generation: u32,
    state: MemberState,
    settings: Settings,
    members: BTreeMap<Arc<str>, Entry>,
    swim: Option<Swim>,
    load: LoadReport,
    last_load_sent: Option<Instant>,
    /// The last load report sent to every member, and when.
    load_sent: Option<(LoadReport, Instant)>,
    /// Gossip: a digest of SWIM's member list at the last sync (see `sync_swim`).
    swim_digest: u64,
    /// Centralized: masters whose table has this node Up at its current generation.
    confirmed_by: HashSet<Arc<str>>,
    last_reannounce: Option<Instant>,
    heartbeat_seq: u64,
    outputs: VecDeque<Output>,
    /// Membership messages that could not be decoded, for metrics and tests.
    malformed: u64,
}

impl std::fmt::Debug for Membership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Membership")
            .field("me", &self.me.id)
            .field("members", &self.members.len())
            .finish_non_exhaustive()
    }
}

impl Membership {
    /// A core for node `me`. `seed` drives every random choice (probe order, gossip targets).
    pub(crate) fn new(me: NodeInfo, settings: Settings, seed: u64, _now: Instant) -> Self {
        let swim = (settings.mode == Mode::Gossip).then(|| {
            let identity = FocaId::new(
                Arc::clone(me.id.name_arc()),
                me.id.incarnation(),
                0,
                me.addr,
                me.role,
            );
            foca::Foca::new(
                identity,
                swim_config(&settings.timing),
                StdRng::seed_from_u64(seed),
                FocaCodec,
            )
        });
        let mut core = Self {
            me,
            generation: 0,
            state: MemberState::Up,
            settings,
            members: BTreeMap::new(),
            swim,
            load: LoadReport::default(),
            last_load_sent: None,
            load_sent: None,
            swim_digest: 0,
            confirmed_by: HashSet::new(),
            last_reannounce: None,
            heartbeat_seq: 0,
            outputs: VecDeque::new(),
            malformed: 0,
        };
        core.outputs.push_back(Output::Timer {
            after: Duration::ZERO,
            timer: Timer::Tick,
        });
        core
    }

    /// The next thing to do, in order.
    pub(crate) fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// Membership messages dropped as malformed so far.
    pub(crate) fn malformed(&self) -> u64 {
        self.malformed
    }

    /// This node's own state (Up, or Leaving/Left once it leaves).
    #[cfg(test)]
    pub(crate) fn local_state(&self) -> MemberState {
        self.state
    }

    /// Each member's identity and state, this node included: what a quorum check needs,
    /// without building full [`Member`] rows.
    pub(crate) fn states(&self) -> Vec<(NodeId, MemberState)> {
        std::iter::once((self.me.id.clone(), self.state))
            .chain(self.members.values().map(|e| (e.info.id.clone(), e.state)))
            .collect()
    }

    /// This node and every member it knows, sorted by node id.
    pub(crate) fn members(&self, now: Instant) -> Vec<Member> {
        let mut out = Vec::with_capacity(self.members.len() + 1);
        out.push(Member {
            id: self.me.id.clone(),
            addr: self.me.addr,
            role: self.me.role,
            labels: self.me.labels.clone(),
            capabilities: self.settings.capabilities.clone(),
            state: self.state,
            phi: 0.0,
            load: Some(self.load),
            connected: false,
            queued: 0,
        });
        out.extend(self.members.values().map(|e| e.member(now)));
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    fn is_master_info(&self, info: &NodeInfo) -> bool {
        info.role == NodeRole::Master || self.settings.masters.contains(&info.addr)
    }

    fn i_am_master(&self) -> bool {
        self.settings.mode == Mode::Centralized && self.is_master_info(&self.me)
    }

    fn self_record(&self) -> Record {
        Record {
            id: self.me.id.clone(),
            generation: self.generation,
            addr: self.me.addr,
            role: self.me.role,
            state: self.state,
        }
    }

    fn record_of(e: &Entry) -> Record {
        Record {
            id: e.info.id.clone(),
            generation: e.generation,
            addr: e.info.addr,
            role: e.info.role,
            state: e.state,
        }
    }

    // ----- inputs -----

    /// A connection to `info` is up (either side dialled). Newer incarnations replace older
    /// ones, which are Down at once: a restarted process is a new member.
    pub(crate) fn handle_connected(&mut self, info: &NodeInfo, now: Instant) {
        if info.id.name() == self.me.id.name() {
            return;
        }
        if self.admit(info, 0, now).is_none() {
            return;
        }
        let name = Arc::clone(info.id.name_arc());
        if let Some(e) = self.members.get_mut(&name) {
            e.connected = true;
            if !info.labels.is_empty() || e.info.labels.is_empty() {
                e.info.labels = info.labels.clone();
            }
            if e.monitor.as_ref().is_some_and(|m| m.passive) {
                // Reachable again: back to SWIM and the heartbeat ring.
                e.monitor = None;
            }
            if let Some(m) = e.monitor.as_mut() {
                m.detector.restart(now);
            }
        }
        match self.settings.mode {
            Mode::Static => {
                // In static discovery a handshake is proof of life on its own.
                self.set_state(&name, MemberState::Up, now);
            }
            Mode::Gossip => {
                let in_swim = self.swim.as_ref().is_some_and(|s| {
                    s.iter_members()
                        .any(|m| m.id().name == name && m.id().incarnation == info.id.incarnation())
                });
                if !in_swim {
                    let dst = FocaId::new(
                        Arc::clone(&name),
                        info.id.incarnation(),
                        0,
                        info.addr,
                        info.role,
                    );
                    self.with_swim(now, |s, rt| s.announce(dst, rt));
                }
            }
            Mode::Centralized => {
                let target = Target {
                    id: info.id.clone(),
                    addr: info.addr,
                    role: info.role,
                };
                if self.is_master_info(info) && !self.state.is_final() {
                    // Register (again: a restarted master has lost its table).
                    self.send(target.clone(), Msg::Join(self.self_record()), false);
                }
                if self.i_am_master() {
                    let snapshot = self.snapshot_records();
                    self.send(target, Msg::Updates(snapshot), false);
                }
            }
        }
        // Each side learns the other's capabilities and current load on every connection.
        self.send_meta_to(&name);
    }

    /// The connection to `id` is gone. If this node watches the member, silence counts from
    /// now: the transport redials at once, so a connection that stays down means this node
    /// cannot reach the member. A member that was never heard over a connection yet (just
    /// connected, or in gossip mode outside the heartbeat ring) gets a monitor here, or a
    /// crash right after connecting would go unnoticed (static, centralized), and after a
    /// partition SWIM alone, one random probe per period, would take a whole probe round
    /// per member, tens of seconds. In gossip mode the suspicion this raises is refuted by
    /// the member if others still reach it.
    pub(crate) fn handle_disconnected(&mut self, id: &NodeId, now: Instant) {
        let detector = self.settings.detector;
        let Some(e) = self.members.get(id.name()) else {
            return;
        };
        if e.info.id != *id {
            return;
        }
        let watch = e.monitor.is_none()
            && matches!(e.state, MemberState::Up | MemberState::Suspect)
            && self.watches(e);
        if let Some(e) = self.members.get_mut(id.name()) {
            e.connected = false;
            if watch {
                e.monitor = Some(Monitor::new(detector, now, true));
            }
        }
    }

    /// Whether this node decides on (gossip: raises suspicions about) `e` from its silence.
    fn watches(&self, e: &Entry) -> bool {
        match self.settings.mode {
            Mode::Gossip | Mode::Static => true,
            Mode::Centralized => self.i_am_master() || self.is_master_info(&e.info),
        }
    }

    /// `id` closed its connections for good (a clean shutdown): it has left.
    pub(crate) fn handle_goodbye(&mut self, id: &NodeId, now: Instant) {
        let Some(e) = self.members.get(id.name()) else {
            return;
        };
        if e.info.id != *id || e.state == MemberState::Left {
            return;
        }
        let name = Arc::clone(id.name_arc());
        self.set_state(&name, MemberState::Left, now);
        if self.i_am_master()
            && let Some(e) = self.members.get(&name)
        {
            let r = Self::record_of(e);
            self.broadcast_updates(vec![r]);
        }
    }

    /// A membership message from `from`. Malformed bodies are counted and dropped.
    pub(crate) fn handle_message(&mut self, from: &NodeInfo, body: Bytes, now: Instant) {
        if from.id.name() == self.me.id.name() {
            return;
        }
        let msg = match Msg::decode(body) {
            Ok(m) => m,
            Err(MsgError::UnknownTag(tag)) => {
                tracing::debug!(node = %from.id, tag, "ignoring membership message of unknown kind");
                return;
            }
            Err(e) => {
                self.malformed += 1;
                tracing::debug!(node = %from.id, error = %e, "dropping malformed membership message");
                return;
            }
        };
        // Anything from a newer incarnation than the one known proves that one alive, and
        // the old one gone.
        if self
            .members
            .get(from.id.name())
            .is_some_and(|e| e.info.id.incarnation() < from.id.incarnation())
        {
            self.admit(from, 0, now);
        }
        match msg {
            Msg::Foca(data) => {
                // foca believes the sender named in the datagram; only the node at the other
                // end of this authenticated connection may be named there.
                match swim_sender(&data) {
                    Ok(src)
                        if *src.name == *from.id.name()
                            && src.incarnation == from.id.incarnation() => {}
                    Ok(src) => {
                        self.malformed += 1;
                        tracing::debug!(node = %from.id, claimed = %src.node_id(), "dropping swim message sent in another node's name");
                        return;
                    }
                    Err(e) => {
                        self.malformed += 1;
                        tracing::debug!(node = %from.id, error = %e, "dropping swim message");
                        return;
                    }
                }
                let res = self.with_swim(now, |s, rt| s.handle_data(&data, rt));
                if let Some(Err(e)) = res {
                    self.malformed += 1;
                    tracing::debug!(node = %from.id, error = %e, "dropping swim message");
                }
            }
            Msg::Heartbeat(seq) => {
                let to = Target {
                    id: from.id.clone(),
                    addr: from.addr,
                    role: from.role,
                };
                self.send(to, Msg::HeartbeatAck(seq), true);
            }
            Msg::HeartbeatAck(seq) => self.handle_ack(from, seq, now),
            Msg::Updates(records) => {
                // Only masters speak for the cluster.
                if self.settings.mode == Mode::Centralized && self.is_master_info(from) {
                    self.merge_records(from.id.name_arc(), records, now);
                }
            }
            Msg::Meta { capabilities, load } => {
                if let Some(e) = self.members.get_mut(from.id.name())
                    && e.info.id == from.id
                {
                    let changed = e.load != Some(load) || e.capabilities != capabilities;
                    e.capabilities = capabilities;
                    e.load = Some(load);
                    if changed && e.state.is_member() {
                        let m = e.member(now);
                        self.outputs
                            .push_back(Output::Event(ClusterEvent::LoadChanged(m)));
                    }
                }
            }
            Msg::Join(record) => {
                // A node may only register itself.
                if self.i_am_master() && record.id == from.id {
                    self.admit(from, record.generation, now);
                    let name = Arc::clone(from.id.name_arc());
                    if let Some(e) = self.members.get_mut(&name)
                        && record.generation > e.generation
                    {
                        // Same process, next generation: it rejoins after a false Down.
                        e.generation = record.generation;
                        if e.state == MemberState::Down {
                            e.state = MemberState::Joining;
                        }
                    }
                    self.set_state(&name, MemberState::Up, now);
                    if let Some(e) = self.members.get(&name) {
                        let r = Self::record_of(e);
                        self.broadcast_updates(vec![r]);
                    }
                    let snapshot = self.snapshot_records();
                    let to = Target {
                        id: from.id.clone(),
                        addr: from.addr,
                        role: from.role,
                    };
                    self.send(to, Msg::Updates(snapshot), false);
                }
            }
            Msg::Leave { state, .. } => {
                let name = Arc::clone(from.id.name_arc());
                let Some(e) = self.members.get(&name) else {
                    return;
                };
                if e.info.id != from.id || e.state == MemberState::Left {
                    return;
                }
                // The sender speaks for itself over its own connection: the leave holds
                // whatever generation it names (a newer one only means a rejoin this node has
                // not seen yet).
                self.set_state(&name, state, now);
                if self.i_am_master()
                    && let Some(e) = self.members.get(&name)
                {
                    let r = Self::record_of(e);
                    self.broadcast_updates(vec![r]);
                }
            }
        }
    }

    fn handle_ack(&mut self, from: &NodeInfo, seq: u64, now: Instant) {
        let name = Arc::clone(from.id.name_arc());
        let Some(e) = self.members.get_mut(&name) else {
            return;
        };
        if e.info.id != from.id {
            return;
        }
        let Some(m) = e.monitor.as_mut() else {
            return;
        };
        if seq <= m.acked {
            return;
        }
        m.acked = seq;
        m.raised = false;
        m.detector.heartbeat(now);
        self.heard_from(&name, now);
    }

    /// Bytes arrived from `id` at `at` (the driver reads this from the transport before each
    /// tick). Between heartbeats this is evidence of life: a heartbeat answer stuck behind a
    /// backlog of user messages on a busy link must not make the sender look dead. Counted at
    /// most once per heartbeat interval, so the detector's interval statistics stay those of
    /// the heartbeats.
    pub(crate) fn handle_alive(&mut self, id: &NodeId, at: Instant) {
        let interval = self.settings.detector.heartbeat_interval;
        let Some(e) = self.members.get_mut(id.name()) else {
            return;
        };
        if e.info.id != *id {
            return;
        }
        let Some(m) = e.monitor.as_mut() else {
            return;
        };
        if m.detector
            .last()
            .is_some_and(|last| at.saturating_duration_since(last) < interval * 9 / 10)
        {
            return;
        }
        m.raised = false;
        m.detector.heartbeat(at);
        let name = Arc::clone(id.name_arc());
        self.heard_from(&name, at);
    }

    fn heard_from(&mut self, name: &Arc<str>, now: Instant) {
        let Some(e) = self.members.get(name) else {
            return;
        };
        let phi = e.phi(now);
        let state = e.state;
        // Nodes that decide on their own take a member back as soon as it answers again.
        let decides = match self.settings.mode {
            Mode::Static => true,
            Mode::Centralized => self.i_am_master() || self.is_master_info(&e.info),
            Mode::Gossip => false,
        };
        if decides && phi < self.settings.detector.threshold {
            let back = match state {
                MemberState::Suspect => true,
                MemberState::Down => self.settings.mode == Mode::Static,
                MemberState::Joining => self.settings.mode != Mode::Centralized,
                _ => false,
            };
            if back {
                self.set_state(name, MemberState::Up, now);
                self.master_announce(name);
            }
        }
    }

    /// A timer the core asked for fired.
    pub(crate) fn handle_timer(&mut self, timer: Timer, now: Instant) {
        match timer {
            Timer::Foca(t) => {
                let _ = self.with_swim(now, |s, rt| s.handle_timer(t, rt));
            }
            Timer::Tick => self.tick(now),
        }
    }

    /// This node's load, measured by the driver after [`Output::LoadDue`]; sent to members.
    ///
    /// An unchanged report is only sent again every ten load intervals: members get the
    /// current one when they connect, so an idle cluster does not send everyone's load to
    /// everyone every interval.
    pub(crate) fn set_local_load(&mut self, load: LoadReport, now: Instant) {
        self.load = load;
        let refresh = self.settings.timing.load_interval.saturating_mul(10);
        if self
            .load_sent
            .is_some_and(|(l, at)| l == load && now.saturating_duration_since(at) < refresh)
        {
            return;
        }
        self.load_sent = Some((load, now));
        let names: Vec<Arc<str>> = self
            .members
            .iter()
            .filter(|(_, e)| e.connected && !e.state.is_final())
            .map(|(n, _)| Arc::clone(n))
            .collect();
        for name in names {
            self.send_meta_to(&name);
        }
    }

    /// Starts a graceful leave: every member hears `Leaving` now.
    pub(crate) fn leave(&mut self, _now: Instant) {
        if self.state != MemberState::Up {
            return;
        }
        self.state = MemberState::Leaving;
        self.announce_leave();
    }

    /// Completes the leave: every member hears `Left`, and SWIM stops.
    pub(crate) fn finish_leave(&mut self, now: Instant) {
        if self.state == MemberState::Left {
            return;
        }
        self.state = MemberState::Left;
        self.announce_leave();
        let _ = self.with_swim(now, |s, rt| s.leave_cluster(rt));
    }

    fn announce_leave(&mut self) {
        let msg = Msg::Leave {
            state: self.state,
            generation: self.generation,
        };
        let targets: Vec<Target> = self
            .members
            .values()
            .filter(|e| !e.state.is_final())
            .map(Entry::target)
            .collect();
        for t in targets {
            self.send(t, msg.clone(), false);
        }
    }

    // ----- internals -----

    /// Makes sure the table has `info`'s incarnation. Returns `None` when `info` is older than
    /// what is known, else whether the entry already existed.
    fn admit(&mut self, info: &NodeInfo, generation: u32, now: Instant) -> Option<bool> {
        let name = Arc::clone(info.id.name_arc());
        match self.members.get_mut(&name) {
            Some(e) if e.info.id.incarnation() > info.id.incarnation() => None,
            Some(e) if e.info.id.incarnation() == info.id.incarnation() => {
                if e.info.addr != info.addr {
                    e.info.addr = info.addr;
                }
                Some(true)
            }
            Some(_) => {
                // A restart: the old incarnation is down, now.
                self.set_state(&name, MemberState::Down, now);
                let e = Entry::new(info.clone(), generation, MemberState::Joining, now);
                self.members.insert(Arc::clone(&name), e);
                self.emit(&name, now);
                Some(false)
            }
            None => {
                let e = Entry::new(info.clone(), generation, MemberState::Joining, now);
                self.members.insert(Arc::clone(&name), e);
                self.emit(&name, now);
                Some(false)
            }
        }
    }

    /// Moves a member to `state` and emits the event, unless it is already there. Final
    /// states only give way to a newer generation (handled by the callers), except that
    /// static discovery takes a Down member back and Left always beats Down.
    fn set_state(&mut self, name: &Arc<str>, state: MemberState, now: Instant) {
        let mode = self.settings.mode;
        let Some(e) = self.members.get_mut(name) else {
            return;
        };
        if e.state == state {
            return;
        }
        let allowed = match (e.state, state) {
            (MemberState::Left, _) => false,
            (MemberState::Down, MemberState::Left) => true,
            (MemberState::Down, MemberState::Up) => mode == Mode::Static,
            (MemberState::Down, _) => false,
            (MemberState::Leaving, MemberState::Down) => {
                // A leaving node that stops answering has left.
                e.state = MemberState::Left;
                e.since = now;
                self.emit(name, now);
                return;
            }
            (MemberState::Leaving, s) => s == MemberState::Left,
            _ => true,
        };
        if !allowed {
            return;
        }
        e.state = state;
        e.since = now;
        if state.is_final() {
            e.monitor = None;
        }
        self.emit(name, now);
    }

    fn emit(&mut self, name: &Arc<str>, now: Instant) {
        let Some(e) = self.members.get(name) else {
            return;
        };
        let m = e.member(now);
        let ev = match e.state {
            MemberState::Joining => ClusterEvent::MemberJoining(m),
            MemberState::Up => ClusterEvent::MemberUp(m),
            MemberState::Suspect => ClusterEvent::MemberSuspect(m),
            MemberState::Down => ClusterEvent::MemberDown(m),
            MemberState::Leaving => ClusterEvent::MemberLeaving(m),
            MemberState::Left => ClusterEvent::MemberLeft(m),
        };
        self.outputs.push_back(Output::Event(ev));
    }

    fn send(&mut self, to: Target, msg: Msg, best_effort: bool) {
        self.outputs.push_back(Output::Send {
            to,
            body: msg.encode(),
            best_effort,
        });
    }

    fn send_meta_to(&mut self, name: &Arc<str>) {
        let Some(e) = self.members.get(name) else {
            return;
        };
        let to = e.target();
        let msg = Msg::Meta {
            capabilities: self.settings.capabilities.clone(),
            load: self.load,
        };
        self.send(to, msg, true);
    }

    fn snapshot_records(&self) -> Vec<Record> {
        let mut v: Vec<Record> = self.members.values().map(Self::record_of).collect();
        v.push(self.self_record());
        v
    }

    /// Masters push a change to every node they know.
    fn broadcast_updates(&mut self, records: Vec<Record>) {
        let targets: Vec<Target> = self
            .members
            .values()
            .filter(|e| !e.state.is_final() || records.iter().any(|r| r.id == e.info.id))
            .map(Entry::target)
            .collect();
        for t in targets {
            self.send(t, Msg::Updates(records.clone()), false);
        }
    }

    fn master_announce(&mut self, name: &Arc<str>) {
        if self.i_am_master()
            && let Some(e) = self.members.get(name)
        {
            let r = Self::record_of(e);
            self.broadcast_updates(vec![r]);
        }
    }

    /// Centralized: takes states from a master. Newer versions win; a final state is only
    /// replaced by a newer version; Left beats Down. Every node decides on masters itself
    /// (from its own heartbeats), so a master's word about another master is ignored; its
    /// word about itself is proof that it is alive.
    fn merge_records(&mut self, master: &Arc<str>, records: Vec<Record>, now: Instant) {
        let mut rejoin = false;
        for r in records {
            if r.id.name() == self.me.id.name() {
                if r.id == self.me.id
                    && r.state == MemberState::Up
                    && r.generation == self.generation
                {
                    self.confirmed_by.insert(Arc::clone(master));
                }
                if r.id == self.me.id
                    && r.state == MemberState::Down
                    && r.generation >= self.generation
                    && !self.state.is_final()
                {
                    // Declared down while alive: rejoin as the next generation.
                    self.generation = r.generation + 1;
                    self.confirmed_by.clear();
                    rejoin = true;
                }
                continue;
            }
            let name: Arc<str> = Arc::from(r.id.name());
            let about_sender = name == *master;
            let info = NodeInfo {
                id: r.id.clone(),
                addr: r.addr,
                role: r.role,
                labels: Default::default(),
            };
            if !about_sender && self.is_master_info(&info) {
                continue;
            }
            let current = self.members.get(&name).map(Entry::version);
            match current {
                Some(v) if v > r.version() => continue,
                Some(v) if v.0 < r.version().0 => {
                    self.admit(&info, r.generation, now);
                }
                None => {
                    if r.state.is_final() {
                        continue;
                    }
                    self.admit(&info, r.generation, now);
                }
                Some(v) if v.1 < r.generation => {
                    // Same process, next generation: it rejoined after a false Down.
                    if let Some(e) = self.members.get_mut(&name) {
                        e.generation = r.generation;
                        if e.state == MemberState::Down {
                            e.state = MemberState::Joining;
                        }
                    }
                }
                Some(_) => {
                    // A master this node declared Down (it could not reach it) talks again:
                    // it is alive, and it is this node's to decide on.
                    if about_sender
                        && r.state == MemberState::Up
                        && let Some(e) = self.members.get_mut(&name)
                        && e.state == MemberState::Down
                    {
                        e.state = MemberState::Joining;
                    }
                }
            }
            if r.state != MemberState::Joining {
                self.set_state(&name, r.state, now);
            }
        }
        if rejoin {
            // After the whole list: the masters' own records in it may have just brought
            // them back.
            let masters: Vec<Target> = self
                .members
                .values()
                .filter(|e| self.is_master_info(&e.info) && !e.state.is_final())
                .map(Entry::target)
                .collect();
            for m in masters {
                self.send(m, Msg::Join(self.self_record()), false);
            }
        }
    }

    fn tick(&mut self, now: Instant) {
        self.outputs.push_back(Output::Timer {
            after: self.settings.detector.heartbeat_interval,
            timer: Timer::Tick,
        });
        if self.state.is_final() {
            return;
        }
        self.sync_swim(now, false);
        self.detect(now);
        self.send_heartbeats(now);
        let t = self.settings.timing;
        if self
            .last_load_sent
            .is_none_or(|at| now.saturating_duration_since(at) >= t.load_interval)
        {
            self.last_load_sent = Some(now);
            self.outputs.push_back(Output::LoadDue);
        }
        if self
            .last_reannounce
            .is_none_or(|at| now.saturating_duration_since(at) >= t.reannounce_interval)
        {
            self.last_reannounce = Some(now);
            self.reannounce(now);
        }
        self.members.retain(|_, e| {
            !(e.state.is_final() && now.saturating_duration_since(e.since) >= t.forget_after)
        });
    }

    /// Dials seeds (or masters) where no live member is known, so that a lone node rejoins
    /// and the two sides of a healed partition find each other. Where the connection is up
    /// but the join did not take (the first SWIM announce, or the Join to a master, was lost),
    /// joins again over it: nothing else would retry.
    fn reannounce(&mut self, now: Instant) {
        let mode = self.settings.mode;
        let targets = if mode == Mode::Centralized {
            self.settings.masters.clone()
        } else {
            self.settings.seeds.clone()
        };
        for addr in targets {
            if addr == self.me.addr {
                continue;
            }
            let live = self
                .members
                .iter()
                // In gossip mode a seed this node declared Down but is connected to again (a
                // healed partition) is announced to over that connection: dialling it is a
                // no-op while connected, and after both sides rejoined at once neither SWIM
                // instance has an active member left to talk to on its own.
                .find(|(_, e)| {
                    e.info.addr == addr
                        && e.connected
                        && (!e.state.is_final()
                            || (mode == Mode::Gossip && e.state == MemberState::Down))
                })
                .map(|(name, e)| {
                    (
                        Arc::clone(name),
                        e.info.id.incarnation(),
                        e.generation,
                        e.target(),
                    )
                });
            let Some((name, incarnation, generation, target)) = live else {
                self.outputs.push_back(Output::Dial(addr));
                continue;
            };
            match mode {
                Mode::Gossip => {
                    let joined = self.swim.as_ref().is_some_and(|s| {
                        s.iter_members()
                            .any(|m| m.id().name == name && m.id().incarnation == incarnation)
                    });
                    if !joined {
                        let dst = FocaId::new(name, incarnation, generation, addr, target.role);
                        self.with_swim(now, |s, rt| s.announce(dst, rt));
                    }
                }
                Mode::Centralized => {
                    if !self.confirmed_by.contains(&name) && !self.state.is_final() {
                        self.send(target, Msg::Join(self.self_record()), false);
                    }
                }
                Mode::Static => {}
            }
        }
    }

    /// Who this node sends heartbeats to.
    fn monitored(&self) -> Vec<Arc<str>> {
        match self.settings.mode {
            Mode::Static => self
                .members
                .iter()
                .filter(|(_, e)| e.state != MemberState::Left)
                .map(|(n, _)| Arc::clone(n))
                .collect(),
            Mode::Centralized if self.i_am_master() => self
                .members
                .iter()
                .filter(|(_, e)| !e.state.is_final())
                .map(|(n, _)| Arc::clone(n))
                .collect(),
            Mode::Centralized => self
                .members
                .iter()
                .filter(|(_, e)| !e.state.is_final() && self.is_master_info(&e.info))
                .map(|(n, _)| Arc::clone(n))
                .collect(),
            Mode::Gossip => {
                // The next few live members after this node in name order, wrapping around.
                let me = self.me.id.name();
                let live: Vec<&Arc<str>> = self
                    .members
                    .iter()
                    .filter(|(_, e)| matches!(e.state, MemberState::Up | MemberState::Suspect))
                    .map(|(n, _)| n)
                    .collect();
                let start = live.partition_point(|n| &***n < me);
                (0..live.len().min(GOSSIP_MONITORED))
                    .map(|i| Arc::clone(live[(start + i) % live.len()]))
                    .collect()
            }
        }
    }

    fn send_heartbeats(&mut self, now: Instant) {
        let monitored = self.monitored();
        let ring: HashSet<&Arc<str>> = monitored.iter().collect();
        // Members that left the monitored set (gossip's ring moves as members join) get no
        // more heartbeats: their silence must not count, unless their connection broke.
        for (name, e) in self.members.iter_mut() {
            let watching_silence = e.monitor.as_ref().is_some_and(|m| m.passive) && !e.connected;
            if !watching_silence && !ring.contains(name) {
                e.monitor = None;
            }
        }
        self.heartbeat_seq += 1;
        let seq = self.heartbeat_seq;
        let detector = self.settings.detector;
        for name in monitored {
            let Some(e) = self.members.get_mut(&name) else {
                continue;
            };
            let to = e.target();
            if !e.connected && e.monitor.is_none() {
                // Never monitored over a connection yet: heartbeats are best-effort and never
                // open one, so this one does (the transport dials and queues it). Monitoring
                // starts once connected; counting silence before would suspect members only
                // because nobody had dialled them yet.
                self.send(to, Msg::Heartbeat(seq), false);
                continue;
            }
            let m = e
                .monitor
                .get_or_insert_with(|| Monitor::new(detector, now, false));
            m.passive = false;
            m.sent = seq;
            // Once monitored, a lost connection is silence: phi grows until it is back.
            self.send(to, Msg::Heartbeat(seq), true);
        }
    }

    /// Local failure detection from phi, for the modes where this node decides.
    fn detect(&mut self, now: Instant) {
        let threshold = self.settings.detector.threshold;
        let down_after = self.settings.timing.suspect_to_down;
        let mode = self.settings.mode;
        let i_am_master = self.i_am_master();
        let mut suspects = Vec::new();
        let mut downs = Vec::new();
        for (name, e) in &self.members {
            let Some(m) = e.monitor.as_ref() else {
                continue;
            };
            let phi = m.detector.phi(now);
            match e.state {
                MemberState::Up | MemberState::Joining | MemberState::Leaving
                    if phi > threshold && !(mode == Mode::Gossip && m.raised) =>
                {
                    suspects.push((Arc::clone(name), e.info.id.clone(), e.state));
                }
                MemberState::Suspect
                    if phi > threshold && now.saturating_duration_since(e.since) >= down_after =>
                {
                    downs.push(Arc::clone(name));
                }
                _ => {}
            }
        }
        for (name, id, state) in suspects {
            match mode {
                Mode::Gossip => {
                    // Raise the suspicion in SWIM: it spreads, and the member can refute it.
                    let Some(swim) = self.swim.as_ref() else {
                        continue;
                    };
                    let member = swim
                        .iter_members()
                        .find(|m| m.id().name == name && m.id().incarnation == id.incarnation())
                        .filter(|m| m.state() == foca::State::Alive)
                        .cloned();
                    if let Some(e) = self.members.get_mut(&name)
                        && let Some(m) = e.monitor.as_mut()
                    {
                        m.raised = true;
                    }
                    if let Some(m) = member {
                        let incarnation = m.incarnation();
                        let update =
                            foca::Member::new(m.id().clone(), incarnation, foca::State::Suspect);
                        let _ = self.with_swim(now, |s, rt| {
                            s.apply_many(std::iter::once(update), true, rt)
                        });
                        if let Some(e) = self.members.get_mut(&name) {
                            e.suspicion = Some(Suspicion {
                                incarnation,
                                since: now,
                                mine: true,
                            });
                        }
                    }
                }
                Mode::Static | Mode::Centralized => {
                    if state == MemberState::Leaving {
                        self.set_state(&name, MemberState::Left, now);
                    } else if state == MemberState::Joining && mode == Mode::Centralized {
                        // Never confirmed by a master: nothing to declare.
                    } else {
                        self.set_state(&name, MemberState::Suspect, now);
                    }
                    if i_am_master {
                        self.master_announce(&name);
                    }
                }
            }
        }
        if mode == Mode::Gossip {
            self.expire_suspicions(now);
        }
        for name in downs {
            if mode == Mode::Gossip {
                continue;
            }
            // Workers take other workers' states from masters; they only decide on masters.
            let decides = mode == Mode::Static
                || i_am_master
                || self
                    .members
                    .get(&name)
                    .is_some_and(|e| self.is_master_info(&e.info));
            if decides {
                self.set_state(&name, MemberState::Down, now);
                if i_am_master {
                    self.master_announce(&name);
                }
            }
        }
    }

    /// Gossip: declares Down the members whose suspicion was not refuted in time (see
    /// [`Suspicion`]). The Down spreads through SWIM like one from a probe timeout.
    fn expire_suspicions(&mut self, now: Instant) {
        let own = self.settings.timing.suspect_to_down;
        let learnt = own.saturating_mul(2);
        let mut expired = Vec::new();
        for (name, e) in self.members.iter_mut() {
            let Some(s) = e.suspicion else {
                continue;
            };
            let wait = if s.mine { own } else { learnt };
            if now.saturating_duration_since(s.since) >= wait {
                // Cleared either way; the next sync starts a new one if SWIM still suspects.
                e.suspicion = None;
                expired.push((Arc::clone(name), e.info.id.incarnation(), s.incarnation));
            }
        }
        for (name, incarnation, suspected) in expired {
            let Some(swim) = self.swim.as_ref() else {
                return;
            };
            // Only the very suspicion that expired: a refutation raised SWIM's incarnation.
            let member = swim
                .iter_members()
                .find(|m| {
                    m.id().name == name
                        && m.id().incarnation == incarnation
                        && m.state() == foca::State::Suspect
                        && m.incarnation() == suspected
                })
                .map(|m| m.id().clone());
            if let Some(id) = member {
                let down = foca::Member::new(id, suspected, foca::State::Down);
                let _ = self.with_swim(now, |s, rt| s.apply_many(std::iter::once(down), true, rt));
            }
        }
    }

    /// Runs `f` on the SWIM instance, then carries out what it asked for.
    fn with_swim<R>(
        &mut self,
        now: Instant,
        f: impl FnOnce(&mut Swim, &mut SwimRuntime) -> R,
    ) -> Option<R> {
        let swim = self.swim.as_mut()?;
        let mut rt = SwimRuntime::default();
        let r = f(swim, &mut rt);
        for (to, data) in rt.sends {
            let target = Target {
                id: to.node_id(),
                addr: to.addr,
                role: to.role,
            };
            self.send(target, Msg::Foca(data), false);
        }
        for (timer, after) in rt.timers {
            self.outputs.push_back(Output::Timer {
                after,
                timer: Timer::Foca(timer),
            });
        }
        if let Some(id) = rt.rejoined {
            tracing::info!(
                generation = id.generation,
                "declared down while alive; rejoined"
            );
            self.generation = id.generation;
        }
        if rt.changed {
            self.sync_swim(now, true);
        }
        Some(r)
    }

    /// Brings the table in line with SWIM's view. foca reports joins, downs and renames, but
    /// not suspicions and refutations, so every tick syncs too; unless `force`, a digest of
    /// SWIM's list skips the walk through the table when nothing changed since the last sync.
    fn sync_swim(&mut self, now: Instant, force: bool) {
        let Some(swim) = self.swim.as_ref() else {
            return;
        };
        let digest = swim.iter_membership_state().fold(0u64, |acc, m| {
            let state = match m.state() {
                foca::State::Alive => 1,
                foca::State::Suspect => 2,
                foca::State::Down => 3,
            };
            let id = m.id();
            let mut h = id.key_hash()
                ^ id.incarnation.rotate_left(17)
                ^ (u64::from(id.generation) << 40)
                ^ (u64::from(m.incarnation()) << 8)
                ^ state;
            h = h.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            acc.wrapping_add(h ^ (h >> 29))
        });
        if !force && digest == self.swim_digest {
            return;
        }
        self.swim_digest = digest;
        // Runs on every tick: members whose row already matches cost no allocation.
        let mut changed = Vec::new();
        for m in swim.iter_membership_state() {
            let id = m.id();
            let state = match m.state() {
                foca::State::Alive => MemberState::Up,
                foca::State::Suspect => MemberState::Suspect,
                foca::State::Down => MemberState::Down,
            };
            let suspected = (m.state() == foca::State::Suspect).then_some(m.incarnation());
            if let Some(e) = self.members.get_mut(&id.name)
                && e.version() == id.version()
            {
                match (suspected, e.suspicion) {
                    (Some(inc), Some(s)) if s.incarnation == inc => {}
                    (Some(inc), _) => {
                        e.suspicion = Some(Suspicion {
                            incarnation: inc,
                            since: now,
                            mine: false,
                        });
                    }
                    (None, _) => e.suspicion = None,
                }
                if e.state == state {
                    continue;
                }
            }
            changed.push((id.clone(), state, suspected));
        }
        for (id, state, suspected) in changed {
            let name = Arc::clone(&id.name);
            let current = self.members.get(&name).map(Entry::version);
            let down = state == MemberState::Down;
            let info = NodeInfo {
                id: id.node_id(),
                addr: id.addr,
                role: id.role,
                labels: Default::default(),
            };
            match current {
                Some(v) if v > id.version() => continue,
                None if down => continue,
                Some(v) if v.0 < id.incarnation => {
                    if down {
                        continue;
                    }
                    self.admit(&info, id.generation, now);
                }
                None => {
                    self.admit(&info, id.generation, now);
                }
                Some(v) if v.1 < id.generation => {
                    if down {
                        continue;
                    }
                    // Same process, next generation: back after a false Down.
                    if let Some(e) = self.members.get_mut(&name) {
                        e.generation = id.generation;
                        if e.state == MemberState::Down {
                            e.state = MemberState::Joining;
                        }
                    }
                }
                Some(_) => {}
            }
            if let Some(e) = self.members.get_mut(&name) {
                e.suspicion = match (suspected, e.suspicion) {
                    (Some(inc), Some(s)) if s.incarnation == inc => Some(s),
                    (Some(incarnation), _) => Some(Suspicion {
                        incarnation,
                        since: now,
                        mine: false,
                    }),
                    (None, _) => None,
                };
                if e.state == MemberState::Leaving && !down {
                    continue;
                }
            }
            self.set_state(&name, state, now);
        }
    }
}

fn swim_config(t: &MembershipConfig) -> foca::Config {
    // Sized for clusters of up to 1000 nodes: each update is piggybacked 12 times. Fewer
    // (7, for 64 nodes) left nodes of a partitioned minority without some Down updates for
    // tens of seconds in the simulation, as most gossip then goes to unreachable members.
    let mut c = foca::Config::new_lan(NonZeroU32::new(1000).unwrap_or(NonZeroU32::MIN));
    c.probe_period = t.probe_period;
    c.probe_rtt = t.probe_rtt;
    c.suspect_to_down_after = t.suspect_to_down;
    c.remove_down_after = Some(t.forget_after);
    c.max_packet_size = NonZeroUsize::new(MAX_SWIM_PACKET).unwrap_or(NonZeroUsize::MIN);
    c.periodic_gossip = Some(foca::PeriodicParams {
        frequency: t.gossip_interval,
        num_members: NonZeroUsize::new(3).unwrap_or(NonZeroUsize::MIN),
    });
    c.periodic_announce = Some(foca::PeriodicParams {
        frequency: t.reannounce_interval,
        num_members: NonZeroUsize::MIN,
    });
    c.periodic_announce_to_down_members = Some(foca::PeriodicParams {
        frequency: t.reannounce_interval,
        num_members: NonZeroUsize::new(2).unwrap_or(NonZeroUsize::MIN),
    });
    c
}
