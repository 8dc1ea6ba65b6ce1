//! Centralized: masters monitor every node and push each state change; workers register
//! with the masters, monitor only them, and take every other member's state from them.
//! Every node decides on masters itself, from its own heartbeats: a master that cannot reach
//! another must not be able to declare it Down for everyone.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use super::detection::Silent;
use super::table::{Entry, Table};
use super::{Rules, Settings, Target};
use crate::membership::msg::{Msg, Record};
use crate::membership::types::MemberState;
use crate::node::{NodeInfo, NodeRole};

pub(super) struct Centralized {
    /// This node is a master.
    master: bool,
    /// Masters whose table has this node Up at its current generation.
    confirmed_by: HashSet<Arc<str>>,
}

fn is_master(t: &Table, info: &NodeInfo) -> bool {
    info.role == NodeRole::Master || t.settings.masters.contains(&info.addr)
}

fn own_record(t: &Table) -> Record {
    Record {
        id: t.me.id.clone(),
        generation: t.generation,
        addr: t.me.addr,
        role: t.me.role,
        state: t.state,
    }
}

fn record(e: &Entry) -> Record {
    Record {
        id: e.info.id.clone(),
        generation: e.generation,
        addr: e.info.addr,
        role: e.info.role,
        state: e.state,
    }
}

fn snapshot(t: &Table) -> Vec<Record> {
    let mut v: Vec<Record> = t.members.values().map(record).collect();
    v.push(own_record(t));
    v
}

/// Masters push a change to every node they know.
fn broadcast(t: &mut Table, records: Vec<Record>) {
    let targets: Vec<Target> = t
        .members
        .values()
        .filter(|e| !e.state.is_final() || records.iter().any(|r| r.id == e.info.id))
        .map(Entry::target)
        .collect();
    for to in targets {
        t.send(to, Msg::Updates(records.clone()), false);
    }
}

impl Centralized {
    pub(super) fn new(me: &NodeInfo, settings: &Settings) -> Self {
        Self {
            master: me.role == NodeRole::Master || settings.masters.contains(&me.addr),
            confirmed_by: HashSet::new(),
        }
    }

    /// Whether this node decides on `e` itself: masters decide on everyone, workers on
    /// masters.
    fn decides(&self, t: &Table, e: &Entry) -> bool {
        self.master || is_master(t, &e.info)
    }

    /// A master pushes the state it now has for `name` to everyone.
    fn announce(&self, t: &mut Table, name: &Arc<str>) {
        if self.master
            && let Some(e) = t.members.get(name)
        {
            let r = record(e);
            broadcast(t, vec![r]);
        }
    }

    /// Takes states from a master. Newer versions win; a final state is only replaced by a
    /// newer version; Left beats Down. A master's word about another master is ignored; its
    /// word about itself is proof that it is alive.
    fn merge(&mut self, t: &mut Table, master: &Arc<str>, records: Vec<Record>, now: Instant) {
        let mut rejoin = false;
        for r in records {
            if r.id.name() == t.me.id.name() {
                if r.id == t.me.id && r.state == MemberState::Up && r.generation == t.generation {
                    self.confirmed_by.insert(Arc::clone(master));
                }
                if r.id == t.me.id
                    && r.state == MemberState::Down
                    && r.generation >= t.generation
                    && !t.state.is_final()
                {
                    // Declared down while alive: rejoin as the next generation.
                    t.generation = r.generation + 1;
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
            if !about_sender && is_master(t, &info) {
                continue;
            }
            let current = t.members.get(&name).map(Entry::version);
            match current {
                Some(v) if v > r.version() => continue,
                Some(v) if v.0 < r.version().0 => {
                    t.admit(&info, r.generation, now);
                }
                None => {
                    if r.state.is_final() {
                        continue;
                    }
                    t.admit(&info, r.generation, now);
                }
                Some(v) if v.1 < r.generation => {
                    // Same process, next generation: it rejoined after a false Down.
                    t.next_generation(&name, r.generation);
                }
                Some(_) => {
                    // A master this node declared Down (it could not reach it) talks again:
                    // it is alive, and it is this node's to decide on.
                    if about_sender
                        && r.state == MemberState::Up
                        && let Some(e) = t.members.get_mut(&name)
                        && e.state == MemberState::Down
                    {
                        e.state = MemberState::Joining;
                    }
                }
            }
            if r.state != MemberState::Joining {
                t.set_state(&name, r.state, now);
            }
        }
        if rejoin {
            // After the whole list: the masters' own records in it may have just brought
            // them back.
            let masters: Vec<Target> = t
                .members
                .values()
                .filter(|e| is_master(t, &e.info) && !e.state.is_final())
                .map(Entry::target)
                .collect();
            for m in masters {
                let join = Msg::Join(own_record(t));
                t.send(m, join, false);
            }
        }
    }
}

impl Rules for Centralized {
    fn connected(&mut self, t: &mut Table, info: &NodeInfo, _now: Instant) {
        let target = Target {
            id: info.id.clone(),
            addr: info.addr,
            role: info.role,
        };
        if is_master(t, info) && !t.state.is_final() {
            // Register (again: a restarted master has lost its table).
            let join = Msg::Join(own_record(t));
            t.send(target.clone(), join, false);
        }
        if self.master {
            let snapshot = snapshot(t);
            t.send(target, Msg::Updates(snapshot), false);
        }
    }

    fn watches(&self, t: &Table, e: &Entry) -> bool {
        self.decides(t, e)
    }

    fn monitored(&self, t: &Table) -> Vec<Arc<str>> {
        t.members
            .iter()
            .filter(|(_, e)| !e.state.is_final() && (self.master || is_master(t, &e.info)))
            .map(|(n, _)| Arc::clone(n))
            .collect()
    }

    /// Only a suspicion is taken back: a Down member returns as a new generation, and a
    /// Joining one once a master confirms it.
    fn answered(&mut self, t: &mut Table, name: &Arc<str>, now: Instant) {
        let Some(e) = t.members.get(name) else {
            return;
        };
        if self.decides(t, e) && t.sounds_alive(e, now) && e.state == MemberState::Suspect {
            t.set_state(name, MemberState::Up, now);
            self.announce(t, name);
        }
    }

    fn silent(&mut self, t: &mut Table, silent: Silent, now: Instant) {
        for (name, _, state) in silent.fresh {
            if state == MemberState::Leaving {
                t.set_state(&name, MemberState::Left, now);
            } else if state == MemberState::Joining {
                // Never confirmed by a master: nothing to declare.
            } else {
                t.set_state(&name, MemberState::Suspect, now);
            }
            self.announce(t, &name);
        }
        for name in silent.overdue {
            // Workers take other workers' states from masters; they only decide on masters.
            if self.master || t.members.get(&name).is_some_and(|e| is_master(t, &e.info)) {
                t.set_state(&name, MemberState::Down, now);
                self.announce(t, &name);
            }
        }
    }

    fn reannounce(&mut self, t: &mut Table, _now: Instant) {
        for i in 0..t.settings.masters.len() {
            let addr = t.settings.masters[i];
            if addr == t.me.addr {
                continue;
            }
            let Some((name, e)) = t.connected_at(addr, false) else {
                t.dial(addr);
                continue;
            };
            if !self.confirmed_by.contains(name) && !t.state.is_final() {
                let to = e.target();
                let join = Msg::Join(own_record(t));
                t.send(to, join, false);
            }
        }
    }

    fn member_changed(&mut self, t: &mut Table, name: &Arc<str>) {
        self.announce(t, name);
    }

    /// Only masters speak for the cluster.
    fn on_updates(&mut self, t: &mut Table, from: &NodeInfo, records: Vec<Record>, now: Instant) {
        if is_master(t, from) {
            self.merge(t, from.id.name_arc(), records, now);
        }
    }

    /// A heartbeat from a member this node holds Down at that incarnation: it was declared
    /// Down while it ran (paused, or cut off on a connection that stayed open), and may never
    /// have heard so. A master tells it again, and it rejoins as its next generation; a worker
    /// that declared a master Down itself takes it back, as when the master talks again.
    fn on_heartbeat(&mut self, t: &mut Table, from: &NodeInfo, now: Instant) {
        let name = Arc::clone(from.id.name_arc());
        let Some(e) = t.members.get(&name) else {
            return;
        };
        if e.info.id != from.id || e.state != MemberState::Down {
            return;
        }
        if self.master {
            let (to, r) = (e.target(), record(e));
            t.send(to, Msg::Updates(vec![r]), false);
        } else if is_master(t, &e.info) {
            if let Some(e) = t.members.get_mut(&name) {
                e.state = MemberState::Joining;
            }
            t.set_state(&name, MemberState::Up, now);
        }
    }

    /// A node registers with a master, which confirms it Up to everyone and sends it the
    /// whole table.
    fn on_join(&mut self, t: &mut Table, from: &NodeInfo, record: Record, now: Instant) {
        // A node may only register itself.
        if !self.master || record.id != from.id {
            return;
        }
        t.admit(from, record.generation, now);
        let name = Arc::clone(from.id.name_arc());
        if t.members
            .get(&name)
            .is_some_and(|e| record.generation > e.generation)
        {
            // Same process, next generation: it rejoins after a false Down.
            t.next_generation(&name, record.generation);
        }
        t.set_state(&name, MemberState::Up, now);
        self.announce(t, &name);
        let snapshot = snapshot(t);
        let to = Target {
            id: from.id.clone(),
            addr: from.addr,
            role: from.role,
        };
        t.send(to, Msg::Updates(snapshot), false);
    }
}
