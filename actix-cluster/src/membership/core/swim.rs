//! Gossip: SWIM through foca decides Up/Suspect/Down, and this is the only place that talks
//! to foca. foca keeps its own member list; the table follows it (see [`Gossip::sync`]).
//! Phi-accrual heartbeats to a few ring neighbours raise suspicions early, which SWIM
//! spreads and the member may refute; this node never declares a member Down on its own
//! heartbeats.

use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::detection::Silent;
use super::table::{Entry, Table};
use super::{Output, Rules, Target, Timer};
use crate::membership::msg::{FocaCodec, FocaId, Msg, swim_sender};
use crate::membership::types::{MemberState, MembershipConfig};
use crate::node::NodeInfo;

/// Ring neighbours each node monitors with heartbeats in gossip mode. SWIM's random probes
/// cover everyone else; a handful of steady heartbeats per node keeps phi meaningful while the
/// cost stays linear in the cluster size.
const GOSSIP_MONITORED: usize = 3;
/// Largest SWIM datagram; fits in the smallest frame limit a node may configure.
const MAX_SWIM_PACKET: usize = 3800;

type Swim = foca::Foca<FocaId, FocaCodec, StdRng, foca::NoCustomBroadcast>;

/// A SWIM suspicion as this node saw it begin.
///
/// foca only times out suspicions raised by its own failed probes; one learnt from gossip (or
/// raised from phi) stays until a Down arrives by gossip, and updates are gossiped a bounded
/// number of times, so under load some nodes would miss it and keep a dead member Suspect for
/// a whole probe round. Like memberlist, every node therefore times suspicions out itself.
#[derive(Debug, Clone, Copy)]
pub(super) struct Suspicion {
    /// The SWIM incarnation suspected; a refutation raises it.
    incarnation: u16,
    since: Instant,
    /// Raised by this node from phi: it plays the prober and decides after `suspect_to_down`.
    /// Suspicions learnt from others wait twice as long, leaving the prober's Down time to
    /// arrive first.
    mine: bool,
    /// A Down learnt by gossip about a member that was Up here, over a connection still open:
    /// held as a learnt suspicion (see [`Gossip::hold_down`]), Down when it expires unless the
    /// member rejoined first.
    held: bool,
}

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

/// Whether the SWIM datagram `data` names `from` as its sender. foca believes the sender
/// named in the datagram; only the node at the other end of this authenticated connection
/// may be named there.
pub(super) fn sent_by(from: &NodeInfo, data: &[u8]) -> bool {
    match swim_sender(data) {
        Ok(src) if *src.name == *from.id.name() && src.incarnation == from.id.incarnation() => true,
        Ok(src) => {
            tracing::debug!(node = %from.id, claimed = %src.node_id(), "dropping swim message sent in another node's name");
            false
        }
        Err(e) => {
            tracing::debug!(node = %from.id, error = %e, "dropping swim message");
            false
        }
    }
}

pub(super) struct Gossip {
    swim: Swim,
    /// A digest of SWIM's member list at the last sync (see [`Gossip::sync`]).
    digest: u64,
}

impl Gossip {
    pub(super) fn new(me: &NodeInfo, timing: &MembershipConfig, seed: u64) -> Self {
        let identity = FocaId::new(
            Arc::clone(me.id.name_arc()),
            me.id.incarnation(),
            0,
            me.addr,
            me.role,
        );
        let swim = foca::Foca::new(
            identity,
            swim_config(timing),
            StdRng::seed_from_u64(seed),
            FocaCodec,
        );
        Self { swim, digest: 0 }
    }

    /// Whether SWIM has `name`'s `incarnation` among its active members.
    fn knows(&self, name: &Arc<str>, incarnation: u64) -> bool {
        self.swim
            .iter_members()
            .any(|m| m.id().name == *name && m.id().incarnation == incarnation)
    }

    /// Runs `f` on the SWIM instance, then carries out what it asked for.
    fn with_swim<R>(
        &mut self,
        t: &mut Table,
        now: Instant,
        f: impl FnOnce(&mut Swim, &mut SwimRuntime) -> R,
    ) -> R {
        let mut rt = SwimRuntime::default();
        let r = f(&mut self.swim, &mut rt);
        for (to, data) in rt.sends {
            let target = Target {
                id: to.node_id(),
                addr: to.addr,
                role: to.role,
            };
            t.send(target, Msg::Foca(data), false);
        }
        for (timer, after) in rt.timers {
            t.outputs.push_back(Output::Timer {
                after,
                timer: Timer::Foca(timer),
            });
        }
        if let Some(id) = rt.rejoined {
            tracing::info!(
                generation = id.generation,
                "declared down while alive; rejoined"
            );
            t.generation = id.generation;
        }
        if rt.changed {
            self.sync(t, now, true);
        }
        r
    }

    /// Brings the table in line with SWIM's view. foca reports joins, downs and renames, but
    /// not suspicions and refutations, so every tick syncs too; unless `force`, a digest of
    /// SWIM's list skips the walk through the table when nothing changed since the last sync.
    fn sync(&mut self, t: &mut Table, now: Instant, force: bool) {
        let digest = self.swim.iter_membership_state().fold(0u64, |acc, m| {
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
        if !force && digest == self.digest {
            return;
        }
        self.digest = digest;
        // Runs on every tick: members whose row already matches cost no allocation.
        let mut changed = Vec::new();
        let mut announce = Vec::new();
        for m in self.swim.iter_membership_state() {
            let id = m.id();
            let mut state = match m.state() {
                foca::State::Alive => MemberState::Up,
                foca::State::Suspect => MemberState::Suspect,
                foca::State::Down => MemberState::Down,
            };
            let mut suspected = (m.state() == foca::State::Suspect).then_some(m.incarnation());
            if let Some(e) = t.members.get_mut(&id.name)
                && e.version() == id.version()
            {
                if state == MemberState::Down
                    && let Some((incarnation, new)) = Self::hold_down(e, m.incarnation(), now)
                {
                    state = MemberState::Suspect;
                    suspected = Some(incarnation);
                    if new {
                        announce.push(id.clone());
                    }
                }
                match (suspected, e.suspicion) {
                    (Some(inc), Some(s)) if s.incarnation == inc => {}
                    (Some(inc), _) => {
                        e.suspicion = Some(Suspicion {
                            incarnation: inc,
                            since: now,
                            mine: false,
                            held: false,
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
            let current = t.members.get(&name).map(Entry::version);
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
                    t.admit(&info, id.generation, now);
                }
                None => {
                    t.admit(&info, id.generation, now);
                }
                Some(v) if v.1 < id.generation => {
                    if down {
                        continue;
                    }
                    // Same process, next generation: back after a false Down.
                    t.next_generation(&name, id.generation);
                }
                Some(_) => {}
            }
            if let Some(e) = t.members.get_mut(&name) {
                e.suspicion = match (suspected, e.suspicion) {
                    (Some(inc), Some(s)) if s.incarnation == inc => Some(s),
                    (Some(incarnation), _) => Some(Suspicion {
                        incarnation,
                        since: now,
                        mine: false,
                        held: false,
                    }),
                    (None, _) => None,
                };
                if e.state == MemberState::Leaving && !down {
                    continue;
                }
            }
            t.set_state(&name, state, now);
        }
        // The accused has most likely rejoined already, under a generation this node has not
        // heard of (the nodes it gossips with may have taken the same Down): ask it directly,
        // its answer carries its new identity.
        for id in announce {
            self.with_swim(t, now, |s, rt| {
                let _ = s.announce(id, rt);
            });
        }
    }

    /// Whether SWIM's Down of `e` waits as a suspicion here, and of which SWIM incarnation.
    ///
    /// SWIM's Down is final for an identity: a member declared Down while alive rejoins under
    /// its next generation. When a partition heals, the minority's gossip declares every
    /// majority node Down, and each rejoins moments later; taken at once, that Down would fail
    /// requests in flight between majority nodes that never lost each other, and release the
    /// names of their actors. A member that this node did not suspect itself, over a
    /// connection that is still open, is therefore only suspected on a Down learnt from gossip
    /// (this node's own suspicions, from phi, are taken to Down as before): its rejoin ends the
    /// suspicion, and if it does not rejoin, the suspicion expires like a learnt one and the
    /// Down is taken then.
    ///
    /// Returns the suspected incarnation, and whether the hold is new.
    fn hold_down(e: &mut Entry, incarnation: u16, now: Instant) -> Option<(u16, bool)> {
        match e.suspicion.as_mut() {
            Some(s) if s.held => Some((s.incarnation, false)),
            // Suspected here from gossip only (the minority's suspicions travel with its
            // Downs): held from now on, until that suspicion expires.
            Some(s) if !s.mine && e.connected => {
                s.held = true;
                Some((s.incarnation, true))
            }
            Some(_) => None,
            None if e.state == MemberState::Up && e.connected => {
                e.suspicion = Some(Suspicion {
                    incarnation,
                    since: now,
                    mine: false,
                    held: true,
                });
                tracing::debug!(
                    node = %e.info.id,
                    "Down learnt from gossip while connected; suspected until it rejoins"
                );
                Some((incarnation, true))
            }
            None => None,
        }
    }

    /// Raises this node's suspicion of a silent member in SWIM: it spreads, and the member
    /// can refute it.
    fn raise(&mut self, t: &mut Table, name: &Arc<str>, incarnation: u64, now: Instant) {
        let member = self
            .swim
            .iter_members()
            .find(|m| m.id().name == *name && m.id().incarnation == incarnation)
            .filter(|m| m.state() == foca::State::Alive)
            .cloned();
        if let Some(e) = t.members.get_mut(name)
            && let Some(m) = e.monitor.as_mut()
        {
            m.raised = true;
        }
        if let Some(m) = member {
            let incarnation = m.incarnation();
            let update = foca::Member::new(m.id().clone(), incarnation, foca::State::Suspect);
            self.with_swim(t, now, |s, rt| {
                let _ = s.apply_many(std::iter::once(update), true, rt);
            });
            if let Some(e) = t.members.get_mut(name) {
                e.suspicion = Some(Suspicion {
                    incarnation,
                    since: now,
                    mine: true,
                    held: false,
                });
            }
        }
    }

    /// Declares Down the members whose suspicion was not refuted in time (see
    /// [`Suspicion`]). The Down spreads through SWIM like one from a probe timeout.
    fn expire_suspicions(&mut self, t: &mut Table, now: Instant) {
        let own = t.settings.timing.suspect_to_down;
        let learnt = own.saturating_mul(2);
        let mut expired = Vec::new();
        let mut held = false;
        for (name, e) in t.members.iter_mut() {
            let Some(s) = e.suspicion else {
                continue;
            };
            let wait = if s.mine { own } else { learnt };
            if now.saturating_duration_since(s.since) >= wait {
                // Cleared either way; the next sync starts a new one if SWIM still suspects.
                e.suspicion = None;
                held |= s.held;
                expired.push((Arc::clone(name), e.info.id.incarnation(), s.incarnation));
            }
        }
        if held {
            // A held Down that no rejoin answered: take it now.
            self.sync(t, now, true);
        }
        for (name, incarnation, suspected) in expired {
            // Only the very suspicion that expired: a refutation raised SWIM's incarnation.
            let member = self
                .swim
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
                self.with_swim(t, now, |s, rt| {
                    let _ = s.apply_many(std::iter::once(down), true, rt);
                });
            }
        }
    }
}

impl Rules for Gossip {
    fn connected(&mut self, t: &mut Table, info: &NodeInfo, now: Instant) {
        let name = info.id.name_arc();
        if !self.knows(name, info.id.incarnation()) {
            let dst = FocaId::new(
                Arc::clone(name),
                info.id.incarnation(),
                0,
                info.addr,
                info.role,
            );
            self.with_swim(t, now, |s, rt| {
                let _ = s.announce(dst, rt);
            });
        }
    }

    fn watches(&self, _t: &Table, _e: &Entry) -> bool {
        true
    }

    /// The next few live members after this node in name order, wrapping around.
    fn monitored(&self, t: &Table) -> Vec<Arc<str>> {
        let me = t.me.id.name();
        let live: Vec<&Arc<str>> = t
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

    /// SWIM alone takes a member back: it refutes the suspicion itself.
    fn answered(&mut self, _t: &mut Table, _name: &Arc<str>, _now: Instant) {}

    /// Silence only raises suspicions; Down comes from SWIM, or from a suspicion nobody
    /// refuted in time.
    fn silent(&mut self, t: &mut Table, silent: Silent, now: Instant) {
        for (name, id, _) in silent.fresh {
            self.raise(t, &name, id.incarnation(), now);
        }
        self.expire_suspicions(t, now);
    }

    fn reannounce(&mut self, t: &mut Table, now: Instant) {
        for i in 0..t.settings.seeds.len() {
            let addr = t.settings.seeds[i];
            if addr == t.me.addr {
                continue;
            }
            // A seed this node declared Down but is connected to again (a healed partition)
            // is announced to over that connection: dialling it is a no-op while connected,
            // and after both sides rejoined at once neither SWIM instance has an active
            // member left to talk to on its own.
            let Some((name, e)) = t.connected_at(addr, true) else {
                t.dial(addr);
                continue;
            };
            let incarnation = e.info.id.incarnation();
            if !self.knows(name, incarnation) {
                let dst = FocaId::new(
                    Arc::clone(name),
                    incarnation,
                    e.generation,
                    addr,
                    e.info.role,
                );
                self.with_swim(t, now, |s, rt| {
                    let _ = s.announce(dst, rt);
                });
            }
        }
    }

    fn tick(&mut self, t: &mut Table, now: Instant) {
        self.sync(t, now, false);
    }

    fn left(&mut self, t: &mut Table, now: Instant) {
        self.with_swim(t, now, |s, rt| {
            let _ = s.leave_cluster(rt);
        });
    }

    fn on_swim(&mut self, t: &mut Table, data: &[u8], now: Instant) -> Result<(), foca::Error> {
        self.with_swim(t, now, |s, rt| s.handle_data(data, rt))
    }

    fn on_swim_timer(&mut self, t: &mut Table, timer: foca::Timer<FocaId>, now: Instant) {
        self.with_swim(t, now, |s, rt| {
            let _ = s.handle_timer(timer, rt);
        });
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
