//! The member table: one row per node this node knows, its own row, and the outputs that
//! changes to them produce. Incarnations and the legal state transitions are kept here, so
//! every architecture changes states the same way and every change is an event.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use super::detection::{self, Monitor};
use super::swim::Suspicion;
use super::{Output, Settings, Target};
use crate::membership::msg::Msg;
use crate::membership::types::{ClusterEvent, LoadReport, Member, MemberState};
use crate::node::{NodeId, NodeInfo};

#[derive(Debug)]
pub(super) struct Entry {
    pub(super) info: NodeInfo,
    pub(super) generation: u32,
    pub(super) state: MemberState,
    pub(super) since: Instant,
    pub(super) capabilities: Vec<String>,
    pub(super) load: Option<LoadReport>,
    pub(super) connected: bool,
    pub(super) monitor: Option<Monitor>,
    /// Gossip: SWIM suspects this member (see [`Suspicion`]).
    pub(super) suspicion: Option<Suspicion>,
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

    pub(super) fn version(&self) -> (u64, u32) {
        (self.info.id.incarnation(), self.generation)
    }

    pub(super) fn target(&self) -> Target {
        Target {
            id: self.info.id.clone(),
            addr: self.info.addr,
            role: self.info.role,
        }
    }

    pub(super) fn phi(&self, now: Instant) -> f64 {
        self.monitor.as_ref().map_or(0.0, |m| m.detector.phi(now))
    }

    pub(super) fn member(&self, now: Instant) -> Member {
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

/// What every architecture reads and changes; the architecture's own state lives beside it.
pub(super) struct Table {
    pub(super) me: NodeInfo,
    /// This node's generation: bumped when it was declared Down while alive and rejoins.
    pub(super) generation: u32,
    /// This node's own state.
    pub(super) state: MemberState,
    pub(super) settings: Settings,
    pub(super) members: BTreeMap<Arc<str>, Entry>,
    pub(super) outputs: VecDeque<Output>,
    /// Whether a Down member stays Down until a newer generation (see [`Table::set_state`]).
    down_is_final: bool,
}

impl Table {
    pub(super) fn new(me: NodeInfo, settings: Settings, down_is_final: bool) -> Self {
        Self {
            me,
            generation: 0,
            state: MemberState::Up,
            settings,
            members: BTreeMap::new(),
            outputs: VecDeque::new(),
            down_is_final,
        }
    }

    /// Makes sure the table has `info`'s incarnation. Returns `None` when `info` is older than
    /// what is known, else whether the entry already existed.
    pub(super) fn admit(&mut self, info: &NodeInfo, generation: u32, now: Instant) -> Option<bool> {
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

    /// Admits `info` and marks its row connected. False when `info` is older than the
    /// incarnation known.
    pub(super) fn connect(&mut self, info: &NodeInfo, now: Instant) -> bool {
        if self.admit(info, 0, now).is_none() {
            return false;
        }
        if let Some(e) = self.members.get_mut(info.id.name()) {
            e.connected = true;
            if !info.labels.is_empty() || e.info.labels.is_empty() {
                e.info.labels = info.labels.clone();
            }
            detection::reconnected(&mut e.monitor, now);
        }
        true
    }

    /// Moves a member to `state` and emits the event, unless it is already there. Final
    /// states only give way to a newer generation (handled by the callers), except that
    /// Left always beats Down, and Down gives way to Up where Down is not final (static
    /// discovery).
    pub(super) fn set_state(&mut self, name: &Arc<str>, state: MemberState, now: Instant) {
        let down_is_final = self.down_is_final;
        let Some(e) = self.members.get_mut(name) else {
            return;
        };
        if e.state == state {
            return;
        }
        let allowed = match (e.state, state) {
            (MemberState::Left, _) => false,
            (MemberState::Down, MemberState::Left) => true,
            (MemberState::Down, MemberState::Up) => !down_is_final,
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

    /// The same process is back as `generation` after a false Down: its row takes the new
    /// generation, and a Down row becomes Joining again so that the next state applies.
    pub(super) fn next_generation(&mut self, name: &Arc<str>, generation: u32) {
        if let Some(e) = self.members.get_mut(name) {
            e.generation = generation;
            if e.state == MemberState::Down {
                e.state = MemberState::Joining;
            }
        }
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

    pub(super) fn send(&mut self, to: Target, msg: Msg, best_effort: bool) {
        self.outputs.push_back(Output::Send {
            to,
            body: msg.encode(),
            best_effort,
        });
    }

    /// The member this node is connected to at `addr`, if it is live (or, with `down_too`,
    /// Down). Rejoining goes through it instead of dialling `addr`.
    pub(super) fn connected_at(
        &self,
        addr: SocketAddr,
        down_too: bool,
    ) -> Option<(&Arc<str>, &Entry)> {
        self.members.iter().find(|(_, e)| {
            e.info.addr == addr
                && e.connected
                && (!e.state.is_final() || (down_too && e.state == MemberState::Down))
        })
    }

    /// Where no live member is known at `addr`: dial it, so a lone node rejoins and the
    /// two sides of a healed partition find each other.
    pub(super) fn dial(&mut self, addr: SocketAddr) {
        self.outputs.push_back(Output::Dial(addr));
    }

    /// Drops the rows that have been in a final state for `forget_after`.
    pub(super) fn forget(&mut self, now: Instant) {
        let forget_after = self.settings.timing.forget_after;
        self.members.retain(|_, e| {
            !(e.state.is_final() && now.saturating_duration_since(e.since) >= forget_after)
        });
    }

    /// The row of exactly `id` (not another incarnation under its name).
    pub(super) fn get(&self, id: &NodeId) -> Option<&Entry> {
        self.members.get(id.name()).filter(|e| e.info.id == *id)
    }
}
