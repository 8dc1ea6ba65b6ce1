//! Phi-accrual failure detection over heartbeats: monitors, heartbeats and their answers,
//! and which silences cross the threshold. Who is monitored, and what a silence or an answer
//! means, is each architecture's call ([`super::Rules`]).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use super::table::{Entry, Table};
use super::{Rules, Target};
use crate::membership::msg::Msg;
use crate::membership::phi::{FailureDetectorConfig, PhiAccrual};
use crate::membership::types::MemberState;
use crate::node::{NodeId, NodeInfo};

#[derive(Debug)]
pub(super) struct Monitor {
    pub(super) detector: PhiAccrual,
    sent: u64,
    acked: u64,
    /// Gossip: this silence was already reported to SWIM. A member that refutes the suspicion
    /// is not suspected again until it has answered a heartbeat, so a member that others
    /// reach but this node does not (a one-way partition) does not flap.
    pub(super) raised: bool,
    /// Started when the member's connection broke, not by a heartbeat (see
    /// [`Table::disconnected`]); dropped once it is back unless the member is one this node
    /// sends heartbeats to.
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

/// A member's connection is up again.
pub(super) fn reconnected(monitor: &mut Option<Monitor>, now: Instant) {
    if monitor.as_ref().is_some_and(|m| m.passive) {
        // Reachable again: back to SWIM and the heartbeat ring.
        *monitor = None;
    }
    if let Some(m) = monitor.as_mut() {
        m.detector.restart(now);
    }
}

/// Members whose phi is over the threshold on this tick.
#[derive(Debug, Default)]
pub(super) struct Silent {
    /// Up, Joining or Leaving members whose silence was not reported yet: name, identity and
    /// state.
    pub(super) fresh: Vec<(Arc<str>, NodeId, MemberState)>,
    /// Suspect members still silent `suspect_to_down` after the suspicion began.
    pub(super) overdue: Vec<Arc<str>>,
}

impl Table {
    /// See [`super::Membership::handle_disconnected`].
    pub(super) fn disconnected(&mut self, id: &NodeId, rules: &dyn Rules, now: Instant) {
        let detector = self.settings.detector;
        let Some(e) = self.get(id) else {
            return;
        };
        let watch = e.monitor.is_none()
            && matches!(e.state, MemberState::Up | MemberState::Suspect)
            && rules.watches(self, e);
        if let Some(e) = self.members.get_mut(id.name()) {
            e.connected = false;
            if watch {
                e.monitor = Some(Monitor::new(detector, now, true));
            }
        }
    }

    pub(super) fn answer_heartbeat(&mut self, from: &NodeInfo, seq: u64) {
        let to = Target {
            id: from.id.clone(),
            addr: from.addr,
            role: from.role,
        };
        self.send(to, Msg::HeartbeatAck(seq), true);
    }

    /// A heartbeat answer from `from`; true when it counts as hearing from the member.
    pub(super) fn acked(&mut self, from: &NodeInfo, seq: u64, now: Instant) -> bool {
        let Some(e) = self.members.get_mut(from.id.name()) else {
            return false;
        };
        if e.info.id != from.id {
            return false;
        }
        let Some(m) = e.monitor.as_mut() else {
            return false;
        };
        if seq <= m.acked {
            return false;
        }
        m.acked = seq;
        m.raised = false;
        m.detector.heartbeat(now);
        true
    }

    /// Bytes from `id` at `at` (see [`super::Membership::handle_alive`]); true when they
    /// count as hearing from the member.
    pub(super) fn alive(&mut self, id: &NodeId, at: Instant) -> bool {
        let interval = self.settings.detector.heartbeat_interval;
        let Some(e) = self.members.get_mut(id.name()) else {
            return false;
        };
        if e.info.id != *id {
            return false;
        }
        let Some(m) = e.monitor.as_mut() else {
            return false;
        };
        if m.detector
            .last()
            .is_some_and(|last| at.saturating_duration_since(last) < interval * 9 / 10)
        {
            return false;
        }
        m.raised = false;
        m.detector.heartbeat(at);
        true
    }

    /// Whether `e` sounds alive: a member that answers again is taken back by the
    /// architectures that decide alone.
    pub(super) fn sounds_alive(&self, e: &Entry, now: Instant) -> bool {
        e.phi(now) < self.settings.detector.threshold
    }

    /// Sends heartbeat `seq` to the `monitored` members, and stops monitoring the others.
    pub(super) fn send_heartbeats(&mut self, monitored: Vec<Arc<str>>, seq: u64, now: Instant) {
        let ring: HashSet<&Arc<str>> = monitored.iter().collect();
        // Members that left the monitored set (gossip's ring moves as members join) get no
        // more heartbeats: their silence must not count, unless their connection broke.
        for (name, e) in self.members.iter_mut() {
            let watching_silence = e.monitor.as_ref().is_some_and(|m| m.passive) && !e.connected;
            if !watching_silence && !ring.contains(name) {
                e.monitor = None;
            }
        }
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

    /// The monitored members whose phi is over the threshold.
    pub(super) fn silent(&self, now: Instant) -> Silent {
        let threshold = self.settings.detector.threshold;
        let down_after = self.settings.timing.suspect_to_down;
        let mut silent = Silent::default();
        for (name, e) in &self.members {
            let Some(m) = e.monitor.as_ref() else {
                continue;
            };
            let phi = m.detector.phi(now);
            match e.state {
                MemberState::Up | MemberState::Joining | MemberState::Leaving
                    if phi > threshold && !m.raised =>
                {
                    silent
                        .fresh
                        .push((Arc::clone(name), e.info.id.clone(), e.state));
                }
                MemberState::Suspect
                    if phi > threshold && now.saturating_duration_since(e.since) >= down_after =>
                {
                    silent.overdue.push(Arc::clone(name));
                }
                _ => {}
            }
        }
        silent
    }
}
