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
//!
//! The shared parts live in `table` (rows, incarnations, state transitions, events) and
//! `detection` (heartbeats and phi); each architecture's rules live in one file (`swim`,
//! `centralized`, `static_mode`) behind [`Rules`], which this module calls at fixed points.

mod centralized;
mod detection;
mod static_mode;
mod swim;
mod table;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use self::centralized::Centralized;
use self::detection::Silent;
use self::static_mode::Static;
use self::swim::Gossip;
use self::table::{Entry, Table};
use super::msg::{FocaId, Msg, MsgError, Record};
use super::phi::FailureDetectorConfig;
use super::types::{ClusterEvent, LoadReport, Member, MemberState, MembershipConfig};
use crate::node::{NodeId, NodeInfo, NodeRole};

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

/// What one architecture decides. [`Membership`] does the bookkeeping every architecture
/// shares (rows, monitors, load, leaving) and calls these at fixed points, so the order in
/// which inputs are handled is written once; the defaults ignore the messages and timers an
/// architecture does not speak.
trait Rules: Send {
    /// Whether a Down member may only come back as a newer generation.
    fn down_is_final(&self) -> bool {
        true
    }

    /// A connection to `info` is up and its row says so.
    fn connected(&mut self, t: &mut Table, info: &NodeInfo, now: Instant);

    /// Whether this node decides on (gossip: raises suspicions about) `e` from its silence.
    fn watches(&self, t: &Table, e: &Entry) -> bool;

    /// Who this node sends heartbeats to.
    fn monitored(&self, t: &Table) -> Vec<Arc<str>>;

    /// A monitored member answered a heartbeat, or was heard from otherwise.
    fn answered(&mut self, t: &mut Table, name: &Arc<str>, now: Instant);

    /// Members whose silence crossed the threshold this tick.
    fn silent(&mut self, t: &mut Table, silent: Silent, now: Instant);

    /// Dials seeds (or masters) where no live member is known, so that a lone node rejoins
    /// and the two sides of a healed partition find each other. Where the connection is up
    /// but the join did not take (the first SWIM announce, or the Join to a master, was lost),
    /// joins again over it: nothing else would retry.
    fn reannounce(&mut self, t: &mut Table, now: Instant);

    /// A member changed its own state (a goodbye or a leave) in this node's table.
    fn member_changed(&mut self, _t: &mut Table, _name: &Arc<str>) {}

    /// Start of a tick, before failure detection.
    fn tick(&mut self, _t: &mut Table, _now: Instant) {}

    /// This node has left for good.
    fn left(&mut self, _t: &mut Table, _now: Instant) {}

    /// A SWIM datagram whose sender was checked against the connection.
    fn on_swim(&mut self, _t: &mut Table, _data: &[u8], _now: Instant) -> Result<(), foca::Error> {
        Ok(())
    }

    fn on_swim_timer(&mut self, _t: &mut Table, _timer: foca::Timer<FocaId>, _now: Instant) {}

    fn on_updates(
        &mut self,
        _t: &mut Table,
        _from: &NodeInfo,
        _records: Vec<Record>,
        _now: Instant,
    ) {
    }

    fn on_join(&mut self, _t: &mut Table, _from: &NodeInfo, _record: Record, _now: Instant) {}

    /// A heartbeat from `from`, before the table answers it: proof that the sender runs,
    /// whatever this node holds about it.
    fn on_heartbeat(&mut self, _t: &mut Table, _from: &NodeInfo, _now: Instant) {}
}

/// One node's view of the cluster. See the module docs for the call order.
pub(crate) struct Membership {
    table: Table,
    rules: Box<dyn Rules>,
    load: LoadReport,
    last_load_sent: Option<Instant>,
    /// The last load report sent to every member, and when.
    load_sent: Option<(LoadReport, Instant)>,
    last_reannounce: Option<Instant>,
    heartbeat_seq: u64,
    /// Membership messages that could not be decoded, for metrics and tests.
    malformed: u64,
}

impl std::fmt::Debug for Membership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Membership")
            .field("me", &self.table.me.id)
            .field("members", &self.table.members.len())
            .finish_non_exhaustive()
    }
}

impl Membership {
    /// A core for node `me`. `seed` drives every random choice (probe order, gossip targets).
    pub(crate) fn new(me: NodeInfo, settings: Settings, seed: u64, _now: Instant) -> Self {
        let rules: Box<dyn Rules> = match settings.mode {
            Mode::Gossip => Box::new(Gossip::new(&me, &settings.timing, seed)),
            Mode::Centralized => Box::new(Centralized::new(&me, &settings)),
            Mode::Static => Box::new(Static),
        };
        let mut table = Table::new(me, settings, rules.down_is_final());
        table.outputs.push_back(Output::Timer {
            after: Duration::ZERO,
            timer: Timer::Tick,
        });
        Self {
            table,
            rules,
            load: LoadReport::default(),
            last_load_sent: None,
            load_sent: None,
            last_reannounce: None,
            heartbeat_seq: 0,
            malformed: 0,
        }
    }

    /// The next thing to do, in order.
    pub(crate) fn poll_output(&mut self) -> Option<Output> {
        self.table.outputs.pop_front()
    }

    /// Membership messages dropped as malformed so far.
    pub(crate) fn malformed(&self) -> u64 {
        self.malformed
    }

    /// This node's own state (Up, or Leaving/Left once it leaves).
    #[cfg(test)]
    pub(crate) fn local_state(&self) -> MemberState {
        self.table.state
    }

    /// Each member's identity and state, this node included: what a quorum check needs,
    /// without building full [`Member`] rows.
    pub(crate) fn states(&self) -> Vec<(NodeId, MemberState)> {
        let t = &self.table;
        std::iter::once((t.me.id.clone(), t.state))
            .chain(t.members.values().map(|e| (e.info.id.clone(), e.state)))
            .collect()
    }

    /// This node and every member it knows, sorted by node id.
    pub(crate) fn members(&self, now: Instant) -> Vec<Member> {
        let t = &self.table;
        let mut out = Vec::with_capacity(t.members.len() + 1);
        out.push(Member {
            id: t.me.id.clone(),
            addr: t.me.addr,
            role: t.me.role,
            labels: t.me.labels.clone(),
            capabilities: t.settings.capabilities.clone(),
            state: t.state,
            phi: 0.0,
            load: Some(self.load),
            connected: false,
            queued: 0,
        });
        out.extend(t.members.values().map(|e| e.member(now)));
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    // ----- inputs -----

    /// A connection to `info` is up (either side dialled). Newer incarnations replace older
    /// ones, which are Down at once: a restarted process is a new member.
    pub(crate) fn handle_connected(&mut self, info: &NodeInfo, now: Instant) {
        if info.id.name() == self.table.me.id.name() {
            return;
        }
        if !self.table.connect(info, now) {
            return;
        }
        self.rules.connected(&mut self.table, info, now);
        // Each side learns the other's capabilities and current load on every connection.
        self.send_meta_to(info.id.name_arc());
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
        self.table.disconnected(id, &*self.rules, now);
    }

    /// `id` closed its connections for good (a clean shutdown): it has left.
    pub(crate) fn handle_goodbye(&mut self, id: &NodeId, now: Instant) {
        let Some(e) = self.table.members.get(id.name()) else {
            return;
        };
        if e.info.id != *id || e.state == MemberState::Left {
            return;
        }
        let name = Arc::clone(id.name_arc());
        self.table.set_state(&name, MemberState::Left, now);
        self.rules.member_changed(&mut self.table, &name);
    }

    /// A membership message from `from`. Malformed bodies are counted and dropped.
    pub(crate) fn handle_message(&mut self, from: &NodeInfo, body: Bytes, now: Instant) {
        if from.id.name() == self.table.me.id.name() {
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
            .table
            .members
            .get(from.id.name())
            .is_some_and(|e| e.info.id.incarnation() < from.id.incarnation())
        {
            self.table.admit(from, 0, now);
        }
        match msg {
            Msg::Foca(data) => {
                // Checked in every mode: a datagram in another node's name is malformed input
                // whether or not this node runs SWIM.
                if !swim::sent_by(from, &data) {
                    self.malformed += 1;
                    return;
                }
                if let Err(e) = self.rules.on_swim(&mut self.table, &data, now) {
                    self.malformed += 1;
                    tracing::debug!(node = %from.id, error = %e, "dropping swim message");
                }
            }
            Msg::Heartbeat(seq) => {
                self.rules.on_heartbeat(&mut self.table, from, now);
                self.table.answer_heartbeat(from, seq);
            }
            Msg::HeartbeatAck(seq) => {
                if self.table.acked(from, seq, now) {
                    self.rules
                        .answered(&mut self.table, from.id.name_arc(), now);
                }
            }
            Msg::Updates(records) => self.rules.on_updates(&mut self.table, from, records, now),
            Msg::Meta { capabilities, load } => {
                if let Some(e) = self.table.members.get_mut(from.id.name())
                    && e.info.id == from.id
                {
                    let changed = e.load != Some(load) || e.capabilities != capabilities;
                    e.capabilities = capabilities;
                    e.load = Some(load);
                    if changed && e.state.is_member() {
                        let m = e.member(now);
                        self.table
                            .outputs
                            .push_back(Output::Event(ClusterEvent::LoadChanged(m)));
                    }
                }
            }
            Msg::Join(record) => self.rules.on_join(&mut self.table, from, record, now),
            Msg::Leave { state, .. } => {
                let name = Arc::clone(from.id.name_arc());
                let Some(e) = self.table.members.get(&name) else {
                    return;
                };
                if e.info.id != from.id || e.state == MemberState::Left {
                    return;
                }
                // The sender speaks for itself over its own connection: the leave holds
                // whatever generation it names (a newer one only means a rejoin this node has
                // not seen yet).
                self.table.set_state(&name, state, now);
                self.rules.member_changed(&mut self.table, &name);
            }
        }
    }

    /// Bytes arrived from `id` at `at` (the driver reads this from the transport before each
    /// tick). Between heartbeats this is evidence of life: a heartbeat answer stuck behind a
    /// backlog of user messages on a busy link must not make the sender look dead. Counted at
    /// most once per heartbeat interval, so the detector's interval statistics stay those of
    /// the heartbeats.
    pub(crate) fn handle_alive(&mut self, id: &NodeId, at: Instant) {
        if self.table.alive(id, at) {
            self.rules.answered(&mut self.table, id.name_arc(), at);
        }
    }

    /// A timer the core asked for fired.
    pub(crate) fn handle_timer(&mut self, timer: Timer, now: Instant) {
        match timer {
            Timer::Foca(t) => self.rules.on_swim_timer(&mut self.table, t, now),
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
        let refresh = self.table.settings.timing.load_interval.saturating_mul(10);
        if self
            .load_sent
            .is_some_and(|(l, at)| l == load && now.saturating_duration_since(at) < refresh)
        {
            return;
        }
        self.load_sent = Some((load, now));
        let names: Vec<Arc<str>> = self
            .table
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
        if self.table.state != MemberState::Up {
            return;
        }
        self.table.state = MemberState::Leaving;
        self.announce_leave();
    }

    /// Completes the leave: every member hears `Left`, and SWIM stops.
    pub(crate) fn finish_leave(&mut self, now: Instant) {
        if self.table.state == MemberState::Left {
            return;
        }
        self.table.state = MemberState::Left;
        self.announce_leave();
        self.rules.left(&mut self.table, now);
    }

    // ----- internals -----

    fn announce_leave(&mut self) {
        let t = &mut self.table;
        let msg = Msg::Leave {
            state: t.state,
            generation: t.generation,
        };
        let targets: Vec<Target> = t
            .members
            .values()
            .filter(|e| !e.state.is_final())
            .map(Entry::target)
            .collect();
        for to in targets {
            t.send(to, msg.clone(), false);
        }
    }

    fn send_meta_to(&mut self, name: &Arc<str>) {
        let Some(e) = self.table.members.get(name) else {
            return;
        };
        let to = e.target();
        let msg = Msg::Meta {
            capabilities: self.table.settings.capabilities.clone(),
            load: self.load,
        };
        self.table.send(to, msg, true);
    }

    fn tick(&mut self, now: Instant) {
        self.table.outputs.push_back(Output::Timer {
            after: self.table.settings.detector.heartbeat_interval,
            timer: Timer::Tick,
        });
        if self.table.state.is_final() {
            return;
        }
        self.rules.tick(&mut self.table, now);
        let silent = self.table.silent(now);
        self.rules.silent(&mut self.table, silent, now);
        let monitored = self.rules.monitored(&self.table);
        self.heartbeat_seq += 1;
        self.table
            .send_heartbeats(monitored, self.heartbeat_seq, now);
        let t = self.table.settings.timing;
        if self
            .last_load_sent
            .is_none_or(|at| now.saturating_duration_since(at) >= t.load_interval)
        {
            self.last_load_sent = Some(now);
            self.table.outputs.push_back(Output::LoadDue);
        }
        if self
            .last_reannounce
            .is_none_or(|at| now.saturating_duration_since(at) >= t.reannounce_interval)
        {
            self.last_reannounce = Some(now);
            self.rules.reannounce(&mut self.table, now);
        }
        self.table.forget(now);
    }
}
