//! The replicated name table (sans-IO): commands in log order in, outcomes and events out.
//!
//! Every replica applies the same commands in the same order and so holds the same table;
//! nothing here reads a clock or does I/O. A name is in one of two states: *claimed* (a
//! caller of `register_name_or_get` won the race and is creating the actor) or *bound* (an
//! actor is registered). Both belong to one node incarnation, and both are released when
//! that incarnation goes Down.
//!
//! A name spawned with a restart policy is also *supervised*: the table keeps how to start
//! its actor again ([`Supervision`]) while the name is bound, released, or being restarted,
//! until the name is unregistered or the policy is exhausted. The leader restarts a
//! supervised name that is neither bound nor claimed with [`Command::Restart`], a claim for
//! the target node that the target completes with `Register`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::types::{NameEntry, NameEvent, ReleaseReason};
use crate::codec::SerializationFormat;
use crate::node::NodeId;
use crate::placement::{PlacementRecord, PolicyRecord};

/// Where a name should point.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Location {
    pub(crate) node: NodeId,
    pub(crate) node_addr: SocketAddr,
    pub(crate) actor_type: String,
    pub(crate) actor_id: u64,
}

/// A change to the table; the Raft log carries these.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Command {
    /// Binds `name` to `location` unless another actor holds it. `claim` completes a claim
    /// this caller won (the name stays reserved for it until then).
    Register {
        name: String,
        location: Location,
        claim: Option<u64>,
    },
    /// Reserves `name` for `node` while it creates the actor (`register_name_or_get`).
    Claim {
        name: String,
        node: NodeId,
        token: u64,
    },
    /// Releases `name`; with `version`, only that registration (or claim token).
    Unregister {
        name: String,
        version: Option<u64>,
        reason: ReleaseReason,
    },
    /// Releases every name held by these node incarnations.
    ReleaseNodes { nodes: Vec<NodeId> },
    /// `Register` (completing claim `claim`), and supervise the name from now on.
    Supervise {
        name: String,
        location: Location,
        claim: Option<u64>,
        supervision: Box<Supervision>,
    },
    /// The leader's decision to restart supervised `name` on `node`: a claim with `token`
    /// there, if the name is supervised, not exhausted, and neither bound nor claimed.
    /// `at_ms` (the leader's clock) is recorded as the restart's time.
    Restart {
        name: String,
        node: NodeId,
        token: u64,
        at_ms: u64,
    },
    /// The leader found supervised `name`'s policy exhausted: it stays released for good.
    Exhaust { name: String },
    /// A migration moves `name` from its registration `version` to `location` (an actor
    /// started from the old one's state). Nothing happens unless `version` is still the
    /// name's binding. A supervised name's restart state becomes `state`, when given.
    Move {
        name: String,
        version: u64,
        location: Location,
        state: Option<(SerializationFormat, Vec<u8>)>,
    },
    /// Sets (or replaces) a virtual actor's reminder.
    SetReminder { reminder: Reminder },
    /// Removes the reminder under `key` (`<type>/<id>/<name>`), if any.
    DropReminder { key: String },
    /// The leader fires the reminder under `key` due at `due_ms`: its next due time becomes
    /// `next_ms`. Nothing happens unless it is still due at `due_ms` (it was not replaced or
    /// fired meanwhile), so a tick is fired by one leader once.
    FireReminder {
        key: String,
        due_ms: u64,
        next_ms: u64,
    },
    /// `ReleaseNodes`, except the names that start with `keep` (virtual actors' names, which
    /// the leader releases only once the node's lease has run out).
    ReleaseNodesExcept { nodes: Vec<NodeId>, keep: String },
}

/// A virtual actor's reminder: it belongs to the identity, not to an activation, and lives in
/// the registry, so it survives passivation, crashes and (with a durable registry) a restart
/// of the whole cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Reminder {
    pub(crate) actor_type: String,
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) period_ms: u64,
    /// When it fires next (unix ms, the leader's clock).
    pub(crate) due_ms: u64,
}

impl Reminder {
    /// The key it is kept under.
    pub(crate) fn key(&self) -> String {
        reminder_key(&self.actor_type, &self.id, &self.name)
    }

    /// The first due time after `now_ms`, on this reminder's period from its due time: ticks
    /// missed while nobody fired them are skipped, not fired late in a burst.
    pub(crate) fn next_after(&self, now_ms: u64) -> u64 {
        let period = self.period_ms.max(1);
        if self.due_ms > now_ms {
            return self.due_ms;
        }
        let missed = (now_ms - self.due_ms) / period + 1;
        self.due_ms.saturating_add(missed.saturating_mul(period))
    }
}

/// The prefix of virtual actors' names (`virtual/<type>/<id>`): released with their node only
/// once its lease has run out (see `Registry::split_release`).
pub(crate) const VIRTUAL_PREFIX: &str = "virtual/";

/// The key of reminder `name` of identity (`actor_type`, `id`).
pub(crate) fn reminder_key(actor_type: &str, id: &str, name: &str) -> String {
    format!("{actor_type}/{id}/{name}")
}

/// How to start a supervised name's actor again, and its restarts so far.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Supervision {
    /// [`DistributedActor::NAME`](crate::DistributedActor::NAME) of the actor.
    pub(crate) actor_type: String,
    /// Format of `state`.
    pub(crate) format: SerializationFormat,
    /// The actor serialized: as first spawned, or as it was when it last migrated. What a
    /// restart starts from.
    pub(crate) state: Vec<u8>,
    /// Where it may go.
    pub(crate) placement: PlacementRecord,
    /// When it is restarted.
    pub(crate) policy: PolicyRecord,
    /// Times (the deciding leader's clock, unix ms) of the restarts so far; the oldest are
    /// dropped past [`MAX_RESTART_TIMES`].
    pub(crate) restarts: Vec<u64>,
    /// The node incarnation that hosted it last.
    pub(crate) last_node: Option<NodeId>,
    /// The policy is exhausted: never restarted again.
    pub(crate) exhausted: bool,
    /// Moved to its consistent-hash owner when that changes (the type's
    /// [`DistributedActor::rebalance`](crate::DistributedActor::rebalance)).
    pub(crate) rebalance: bool,
}

/// Restart times kept per supervised name (a policy counts at most this many).
pub(crate) const MAX_RESTART_TIMES: usize = 64;

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Register { name, location, .. } => write!(
                f,
                "register {name:?} -> {}/{}",
                location.node, location.actor_id
            ),
            Command::Claim { name, node, .. } => write!(f, "claim {name:?} for {node}"),
            Command::Unregister { name, .. } => write!(f, "unregister {name:?}"),
            Command::ReleaseNodes { nodes } => write!(f, "release names of {nodes:?}"),
            Command::Supervise { name, location, .. } => write!(
                f,
                "supervise {name:?} -> {}/{}",
                location.node, location.actor_id
            ),
            Command::Restart { name, node, .. } => write!(f, "restart {name:?} on {node}"),
            Command::Exhaust { name } => write!(f, "exhaust {name:?}"),
            Command::Move { name, location, .. } => write!(
                f,
                "move {name:?} -> {}/{}",
                location.node, location.actor_id
            ),
            Command::SetReminder { reminder } => write!(
                f,
                "set reminder {:?} every {} ms",
                reminder.key(),
                reminder.period_ms
            ),
            Command::DropReminder { key } => write!(f, "drop reminder {key:?}"),
            Command::FireReminder { key, due_ms, .. } => {
                write!(f, "fire reminder {key:?} due at {due_ms}")
            }
            Command::ReleaseNodesExcept { nodes, keep } => {
                write!(f, "release names of {nodes:?} except {keep:?}*")
            }
        }
    }
}

/// What applying a command did; returned to the proposer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub(crate) enum Outcome {
    /// Entries without a command (membership changes, blanks).
    #[default]
    None,
    /// The name is bound to this entry (newly, or it already was to the same actor).
    Bound(NameEntry),
    /// The name is held by another actor or claim, of this node.
    Taken {
        node: NodeId,
        entry: Option<NameEntry>,
    },
    /// The claim was granted (token echoed back) at log `index`: later claims of the name
    /// have higher indexes, so the index fences what the claimer starts (a virtual actor's
    /// state writes).
    Claimed { token: u64, index: u64 },
    /// The name was released (`None`: it was not registered, or not at that version).
    Released(Option<NameEntry>),
    /// Names released by `ReleaseNodes`.
    ReleasedCount(usize),
    /// A reminder's tick was taken by this write: fire it.
    Fired,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Slot {
    Bound(Arc<NameEntry>),
    Claimed { node: NodeId, token: u64 },
}

impl Slot {
    fn node(&self) -> &NodeId {
        match self {
            Slot::Bound(e) => &e.node,
            Slot::Claimed { node, .. } => node,
        }
    }
}

/// The name table. Ordered, so that `list(prefix)` is a range scan.
///
/// Only `slots` is replicated state (and all a snapshot carries); the bound count and the
/// per-node index are derived from it, so that the leader's and each member's periodic
/// rounds cost the size of one node's names, not of the whole table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Names {
    slots: BTreeMap<String, Slot>,
    /// Supervised names, bound or not.
    supervised: BTreeMap<String, Arc<Supervision>>,
    /// Virtual actors' reminders, by key.
    reminders: BTreeMap<String, Reminder>,
    bound: usize,
    by_node: BTreeMap<NodeId, BTreeSet<String>>,
}

impl Serialize for Names {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (&self.slots, &self.supervised, &self.reminders).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Names {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        type Stored = (
            BTreeMap<String, Slot>,
            BTreeMap<String, Arc<Supervision>>,
            BTreeMap<String, Reminder>,
        );
        let (slots, supervised, reminders) = Stored::deserialize(d)?;
        let mut names = Names {
            supervised,
            reminders,
            ..Names::default()
        };
        for (name, slot) in slots {
            names.put(name, slot);
        }
        Ok(names)
    }
}

impl Names {
    /// Reminders due at `now_ms`, earliest first, at most `limit`.
    pub(crate) fn due_reminders(&self, now_ms: u64, limit: usize) -> Vec<Reminder> {
        let mut due: Vec<Reminder> = self
            .reminders
            .values()
            .filter(|r| r.due_ms <= now_ms)
            .cloned()
            .collect();
        due.sort_by_key(|r| r.due_ms);
        due.truncate(limit);
        due
    }

    /// The reminders of identity (`actor_type`, `id`).
    pub(crate) fn reminders_of(&self, actor_type: &str, id: &str) -> Vec<Reminder> {
        let prefix = format!("{actor_type}/{id}/");
        self.reminders
            .range::<str, _>((
                std::ops::Bound::Included(prefix.as_str()),
                std::ops::Bound::Unbounded,
            ))
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(_, r)| r.clone())
            .collect()
    }

    /// The registration of `name`, if an actor is bound to it.
    pub(crate) fn get(&self, name: &str) -> Option<&Arc<NameEntry>> {
        match self.slots.get(name)? {
            Slot::Bound(e) => Some(e),
            Slot::Claimed { .. } => None,
        }
    }

    /// The claim on `name`, if one is pending.
    pub(crate) fn claim_of(&self, name: &str) -> Option<(&NodeId, u64)> {
        match self.slots.get(name)? {
            Slot::Claimed { node, token } => Some((node, *token)),
            Slot::Bound(_) => None,
        }
    }

    /// Bound names starting with `prefix`, in name order.
    pub(crate) fn list(&self, prefix: &str) -> impl Iterator<Item = &Arc<NameEntry>> {
        self.slots
            .range::<str, _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .take_while(move |(k, _)| k.starts_with(prefix))
            .filter_map(|(_, s)| match s {
                Slot::Bound(e) => Some(e),
                Slot::Claimed { .. } => None,
            })
    }

    /// How supervised `name` is restarted, if it is supervised.
    pub(crate) fn supervision(&self, name: &str) -> Option<&Arc<Supervision>> {
        self.supervised.get(name)
    }

    /// Supervised names that are neither bound nor claimed and not exhausted: the leader
    /// restarts them.
    pub(crate) fn awaiting_restart(&self) -> impl Iterator<Item = (&String, &Arc<Supervision>)> {
        self.supervised
            .iter()
            .filter(|(name, s)| !s.exhausted && !self.slots.contains_key(*name))
    }

    /// Supervised names with a pending claim: (name, claiming node, token, supervision).
    /// Supervised names that are bound, with their binding.
    pub(crate) fn supervised_bound(
        &self,
    ) -> impl Iterator<Item = (&Arc<NameEntry>, &Arc<Supervision>)> {
        self.supervised
            .iter()
            .filter_map(|(name, s)| Some((self.get(name)?, s)))
    }

    pub(crate) fn restarting(
        &self,
    ) -> impl Iterator<Item = (&String, &NodeId, u64, &Arc<Supervision>)> {
        self.supervised
            .iter()
            .filter_map(|(name, s)| match self.slots.get(name)? {
                Slot::Claimed { node, token } => Some((name, node, *token, s)),
                Slot::Bound(_) => None,
            })
    }

    /// Number of bound names.
    pub(crate) fn len(&self) -> usize {
        self.bound
    }

    /// Node incarnations that hold a name or claim.
    pub(crate) fn owners(&self) -> impl Iterator<Item = &NodeId> {
        self.by_node.keys()
    }

    /// Whether `node` holds (binds or claims) a name that starts with `prefix`, and whether it
    /// holds one that does not.
    pub(crate) fn holds(&self, node: &NodeId, prefix: &str) -> (bool, bool) {
        let names = self.by_node.get(node).into_iter().flatten();
        names.fold((false, false), |(with, without), n| {
            if n.starts_with(prefix) {
                (true, without)
            } else {
                (with, true)
            }
        })
    }

    /// Releases the names of `nodes`, but those starting with `keep`.
    fn release_nodes(
        &mut self,
        nodes: &[NodeId],
        keep: Option<&String>,
        events: &mut Vec<NameEvent>,
    ) -> Outcome {
        let doomed: Vec<String> = nodes
            .iter()
            .filter_map(|n| self.by_node.get(n))
            .flatten()
            .filter(|name| keep.is_none_or(|k| !name.starts_with(k.as_str())))
            .cloned()
            .collect();
        let released = doomed
            .iter()
            .filter(|name| self.remove(name, ReleaseReason::NodeDown, events).is_some())
            .count();
        Outcome::ReleasedCount(released)
    }

    /// The names bound to actors of `node`.
    pub(crate) fn bound_to(&self, node: &NodeId) -> impl Iterator<Item = &Arc<NameEntry>> {
        self.by_node
            .get(node)
            .into_iter()
            .flatten()
            .filter_map(|name| self.get(name))
    }

    /// Sets `name`'s slot, keeping the derived state in step.
    fn put(&mut self, name: String, slot: Slot) {
        self.unindex(&name);
        if matches!(slot, Slot::Bound(_)) {
            self.bound += 1;
        }
        self.by_node
            .entry(slot.node().clone())
            .or_default()
            .insert(name.clone());
        self.slots.insert(name, slot);
    }

    /// Empties `name`'s slot, returning what it held.
    fn take(&mut self, name: &str) -> Option<Slot> {
        self.unindex(name);
        self.slots.remove(name)
    }

    fn unindex(&mut self, name: &str) {
        let Some(old) = self.slots.get(name) else {
            return;
        };
        if matches!(old, Slot::Bound(_)) {
            self.bound -= 1;
        }
        let node = old.node();
        if let Some(held) = self.by_node.get_mut(node) {
            held.remove(name);
            if held.is_empty() {
                let node = node.clone();
                self.by_node.remove(&node);
            }
        }
    }

    /// Applies `cmd`, committed at log `index`, appending what watchers should see to `events`.
    pub(crate) fn apply(
        &mut self,
        index: u64,
        cmd: &Command,
        events: &mut Vec<NameEvent>,
    ) -> Outcome {
        match cmd {
            Command::Register {
                name,
                location,
                claim,
            } => {
                match self.slots.get(name) {
                    Some(Slot::Bound(e)) => {
                        return if e.node == location.node && e.actor_id == location.actor_id {
                            Outcome::Bound(NameEntry::clone(e))
                        } else {
                            Outcome::Taken {
                                node: e.node.clone(),
                                entry: Some(NameEntry::clone(e)),
                            }
                        };
                    }
                    Some(Slot::Claimed { node, token }) if Some(*token) != *claim => {
                        return Outcome::Taken {
                            node: node.clone(),
                            entry: None,
                        };
                    }
                    _ => {}
                }
                if claim.is_none()
                    && let Some(taken) = self.restart_pending(name, &location.node)
                {
                    return taken;
                }
                self.bind(index, name, location, events)
            }
            Command::Claim { name, node, token } => {
                // Released, and the leader is about to restart it.
                if let Some(taken) = self.restart_pending(name, node) {
                    return taken;
                }
                match self.slots.get(name) {
                    Some(Slot::Bound(e)) => Outcome::Taken {
                        node: e.node.clone(),
                        entry: Some(NameEntry::clone(e)),
                    },
                    Some(Slot::Claimed { node: n, token: t }) if t != token => Outcome::Taken {
                        node: n.clone(),
                        entry: None,
                    },
                    _ => {
                        // A name whose policy was exhausted starts afresh.
                        if self.supervised.get(name).is_some_and(|s| s.exhausted) {
                            self.supervised.remove(name);
                        }
                        self.claim(index, name, node, *token)
                    }
                }
            }
            Command::Unregister {
                name,
                version,
                reason,
            } => {
                // Unregistering ends supervision (an exhausted name's record too); a
                // release because the actor stopped or its node failed keeps it.
                let ends = *reason == ReleaseReason::Unregistered;
                if ends
                    && version.is_none()
                    && !self.slots.contains_key(name)
                    && self.supervised.remove(name).is_some()
                {
                    return Outcome::Released(None);
                }
                let matches = match (self.slots.get(name), version) {
                    (None, _) => false,
                    (Some(_), None) => true,
                    (Some(Slot::Bound(e)), Some(v)) => e.version == *v,
                    (Some(Slot::Claimed { token, .. }), Some(v)) => token == v,
                };
                if !matches {
                    return Outcome::Released(None);
                }
                if ends {
                    self.supervised.remove(name);
                }
                Outcome::Released(self.remove(name, *reason, events))
            }
            Command::ReleaseNodes { nodes } => self.release_nodes(nodes, None, events),
            Command::ReleaseNodesExcept { nodes, keep } => {
                self.release_nodes(nodes, Some(keep), events)
            }
            Command::Supervise {
                name,
                location,
                claim,
                supervision,
            } => {
                let out = self.apply(
                    index,
                    &Command::Register {
                        name: name.clone(),
                        location: location.clone(),
                        claim: *claim,
                    },
                    events,
                );
                if let Outcome::Bound(e) = &out
                    && e.version == index
                {
                    let mut s = Supervision::clone(supervision);
                    s.last_node = Some(location.node.clone());
                    s.exhausted = false;
                    self.supervised.insert(name.clone(), Arc::new(s));
                }
                out
            }
            Command::Restart {
                name,
                node,
                token,
                at_ms,
            } => {
                if let Some(slot) = self.slots.get(name) {
                    return Outcome::Taken {
                        node: slot.node().clone(),
                        entry: match slot {
                            Slot::Bound(e) => Some(NameEntry::clone(e)),
                            Slot::Claimed { .. } => None,
                        },
                    };
                }
                let Some(s) = self.supervised.get_mut(name).filter(|s| !s.exhausted) else {
                    return Outcome::None;
                };
                let s = Arc::make_mut(s);
                s.restarts.push(*at_ms);
                if s.restarts.len() > MAX_RESTART_TIMES {
                    s.restarts.remove(0);
                }
                self.claim(index, name, node, *token)
            }
            Command::Exhaust { name } => {
                if !self.slots.contains_key(name)
                    && let Some(s) = self.supervised.get_mut(name)
                {
                    Arc::make_mut(s).exhausted = true;
                }
                Outcome::None
            }
            Command::Move {
                name,
                version,
                location,
                state,
            } => {
                match self.slots.get(name) {
                    Some(Slot::Bound(e)) if e.version == *version => {}
                    // A repeated move (a write retried after its first copy applied), or a
                    // re-bind to where the name already is: the name is bound to the very actor
                    // the move is for. A move's target adopts a fresh actor for every move, so
                    // only this move can have bound it there; nothing changes.
                    Some(Slot::Bound(e))
                        if e.node == location.node && e.actor_id == location.actor_id =>
                    {
                        return Outcome::Bound(NameEntry::clone(e));
                    }
                    Some(slot) => {
                        return Outcome::Taken {
                            node: slot.node().clone(),
                            entry: match slot {
                                Slot::Bound(e) => Some(NameEntry::clone(e)),
                                Slot::Claimed { .. } => None,
                            },
                        };
                    }
                    None => return Outcome::None,
                }
                self.remove(name, ReleaseReason::Moved, events);
                if let (Some(s), Some((format, state))) = (self.supervised.get_mut(name), state) {
                    let s = Arc::make_mut(s);
                    s.format = *format;
                    s.state.clone_from(state);
                }
                self.bind(index, name, location, events)
            }
            Command::SetReminder { reminder } => {
                self.reminders.insert(reminder.key(), reminder.clone());
                Outcome::None
            }
            Command::DropReminder { key } => {
                self.reminders.remove(key);
                Outcome::None
            }
            Command::FireReminder {
                key,
                due_ms,
                next_ms,
            } => match self.reminders.get_mut(key) {
                Some(r) if r.due_ms == *due_ms => {
                    r.due_ms = *next_ms;
                    Outcome::Fired
                }
                _ => Outcome::None,
            },
        }
    }

    /// `Taken` for a supervised name that is released and not exhausted: the leader is about
    /// to restart it, and nobody else may take it meanwhile. Named after its last node
    /// (`fallback` if it never had one).
    fn restart_pending(&self, name: &str, fallback: &NodeId) -> Option<Outcome> {
        let s = self.supervised.get(name)?;
        (!s.exhausted && !self.slots.contains_key(name)).then(|| Outcome::Taken {
            node: s.last_node.clone().unwrap_or_else(|| fallback.clone()),
            entry: None,
        })
    }

    /// Claims `name` for `node` with `token` (the checks are the caller's).
    fn claim(&mut self, index: u64, name: &str, node: &NodeId, token: u64) -> Outcome {
        self.put(
            name.to_owned(),
            Slot::Claimed {
                node: node.clone(),
                token,
            },
        );
        Outcome::Claimed { token, index }
    }

    /// Binds `name` to `location` at log `index` (the checks are the caller's).
    fn bind(
        &mut self,
        index: u64,
        name: &str,
        location: &Location,
        events: &mut Vec<NameEvent>,
    ) -> Outcome {
        let entry = NameEntry {
            name: name.to_owned(),
            node: location.node.clone(),
            node_addr: location.node_addr,
            actor_type: location.actor_type.clone(),
            actor_id: location.actor_id,
            version: index,
        };
        if let Some(s) = self.supervised.get_mut(name) {
            Arc::make_mut(s).last_node = Some(location.node.clone());
        }
        self.put(name.to_owned(), Slot::Bound(Arc::new(entry.clone())));
        events.push(NameEvent::Registered(entry.clone()));
        Outcome::Bound(entry)
    }

    fn remove(
        &mut self,
        name: &str,
        reason: ReleaseReason,
        events: &mut Vec<NameEvent>,
    ) -> Option<NameEntry> {
        match self.take(name)? {
            Slot::Bound(e) => {
                let entry = NameEntry::clone(&e);
                events.push(NameEvent::Released {
                    entry: entry.clone(),
                    reason,
                });
                Some(entry)
            }
            Slot::Claimed { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    fn loc(node: &str, inc: u64, actor: u64) -> Location {
        Location {
            node: NodeId::new(node, inc),
            node_addr: "127.0.0.1:1".parse().unwrap(),
            actor_type: "t".into(),
            actor_id: actor,
        }
    }

    fn register(name: &str, l: Location) -> Command {
        Command::Register {
            name: name.into(),
            location: l,
            claim: None,
        }
    }

    #[test]
    fn a_bound_name_is_taken_for_other_actors_and_idempotent_for_its_own() {
        let mut n = Names::default();
        let mut ev = Vec::new();
        assert!(
            matches!(n.apply(1, &register("a", loc("x", 1, 7)), &mut ev), Outcome::Bound(e) if e.version == 1)
        );
        assert!(
            matches!(n.apply(2, &register("a", loc("x", 1, 7)), &mut ev), Outcome::Bound(e) if e.version == 1)
        );
        assert!(matches!(
            n.apply(3, &register("a", loc("y", 1, 7)), &mut ev),
            Outcome::Taken { .. }
        ));
        assert_eq!(ev.len(), 1);
        assert_eq!(n.len(), 1);
    }

    #[test]
    fn a_claim_reserves_the_name_for_its_token_only() {
        let mut n = Names::default();
        let mut ev = Vec::new();
        let claim = |token| Command::Claim {
            name: "a".into(),
            node: NodeId::new("x", 1),
            token,
        };
        assert_eq!(
            n.apply(1, &claim(5), &mut ev),
            Outcome::Claimed { token: 5, index: 1 }
        );
        assert!(matches!(
            n.apply(2, &claim(6), &mut ev),
            Outcome::Taken { entry: None, .. }
        ));
        assert!(n.get("a").is_none());
        assert!(matches!(
            n.apply(3, &register("a", loc("y", 1, 1)), &mut ev),
            Outcome::Taken { .. }
        ));
        let complete = Command::Register {
            name: "a".into(),
            location: loc("x", 1, 9),
            claim: Some(5),
        };
        assert!(matches!(n.apply(4, &complete, &mut ev), Outcome::Bound(e) if e.actor_id == 9));
    }

    #[test]
    fn release_nodes_frees_names_and_claims_of_exactly_those_incarnations() {
        let mut n = Names::default();
        let mut ev = Vec::new();
        n.apply(1, &register("a", loc("x", 1, 1)), &mut ev);
        n.apply(2, &register("b", loc("x", 2, 1)), &mut ev);
        n.apply(
            3,
            &Command::Claim {
                name: "c".into(),
                node: NodeId::new("x", 1),
                token: 1,
            },
            &mut ev,
        );
        let out = n.apply(
            4,
            &Command::ReleaseNodes {
                nodes: vec![NodeId::new("x", 1)],
            },
            &mut ev,
        );
        assert_eq!(out, Outcome::ReleasedCount(1));
        assert!(n.get("a").is_none() && n.claim_of("c").is_none());
        assert!(n.get("b").is_some());
    }

    #[test]
    fn unregister_with_a_stale_version_keeps_the_newer_registration() {
        let mut n = Names::default();
        let mut ev = Vec::new();
        n.apply(1, &register("a", loc("x", 1, 1)), &mut ev);
        let stale = Command::Unregister {
            name: "a".into(),
            version: Some(0),
            reason: ReleaseReason::ActorStopped,
        };
        assert_eq!(n.apply(2, &stale, &mut ev), Outcome::Released(None));
        assert!(n.get("a").is_some());
    }

    #[test]
    fn list_returns_exactly_the_prefix_in_order() {
        let mut n = Names::default();
        let mut ev = Vec::new();
        for (i, name) in ["a/2", "a/1", "ab", "b/1", "a"].iter().enumerate() {
            n.apply(
                i as u64 + 1,
                &register(name, loc("x", 1, i as u64)),
                &mut ev,
            );
        }
        let got: Vec<_> = n.list("a/").map(|e| e.name.clone()).collect();
        assert_eq!(got, ["a/1", "a/2"]);
        assert_eq!(n.list("").count(), 5);
    }

    fn supervision(policy: crate::placement::RestartPolicy) -> Supervision {
        Supervision {
            actor_type: "t".into(),
            format: SerializationFormat::Bincode,
            state: vec![1, 2, 3],
            placement: PlacementRecord::new(
                &crate::placement::Placement::RoundRobin,
                &crate::placement::Constraint::new(),
                None,
                "x",
            ),
            policy: policy.into(),
            restarts: Vec::new(),
            last_node: None,
            exhausted: false,
            rebalance: false,
        }
    }

    fn supervise(name: &str, l: Location, claim: Option<u64>) -> Command {
        Command::Supervise {
            name: name.into(),
            location: l,
            claim,
            supervision: Box::new(supervision(crate::placement::RestartPolicy::Always)),
        }
    }

    fn restart(name: &str, node: &str, token: u64, at_ms: u64) -> Command {
        Command::Restart {
            name: name.into(),
            node: NodeId::new(node, 1),
            token,
            at_ms,
        }
    }

    #[test]
    fn a_move_rebinds_only_the_registration_it_moves_from_and_carries_the_restart_state() {
        let mut n = Names::default();
        let mut ev = Vec::new();
        n.apply(1, &supervise("a", loc("x", 1, 7), None), &mut ev);
        let moved = |version, state: Option<Vec<u8>>| Command::Move {
            name: "a".into(),
            version,
            location: loc("y", 1, 9),
            state: state.map(|s| (SerializationFormat::Bincode, s)),
        };
        // From a registration that is no longer the name's: nothing changes.
        assert!(matches!(
            n.apply(2, &moved(0, Some(vec![9])), &mut ev),
            Outcome::Taken { .. }
        ));
        assert_eq!(n.get("a").unwrap().node, NodeId::new("x", 1));
        ev.clear();
        let Outcome::Bound(e) = n.apply(3, &moved(1, Some(vec![4, 2])), &mut ev) else {
            panic!("not moved");
        };
        assert_eq!((e.node.name(), e.actor_id, e.version), ("y", 9, 3));
        // Watchers see it leave and arrive.
        assert!(matches!(
            &ev[..],
            [
                NameEvent::Released {
                    reason: ReleaseReason::Moved,
                    ..
                },
                NameEvent::Registered(_)
            ]
        ));
        let s = n.supervision("a").unwrap();
        assert_eq!(s.state, [4, 2]);
        assert_eq!(s.last_node, Some(NodeId::new("y", 1)));
        // The same move again (a retried write whose first copy applied): what it did, no
        // change, no event.
        ev.clear();
        assert_eq!(
            n.apply(4, &moved(1, None), &mut ev),
            Outcome::Bound(e.clone())
        );
        assert!(ev.is_empty());
        assert_eq!(n.supervision("a").unwrap().state, [4, 2]);
        // From that old registration to another actor: taken.
        let elsewhere = Command::Move {
            name: "a".into(),
            version: 1,
            location: loc("z", 1, 5),
            state: None,
        };
        assert!(matches!(
            n.apply(5, &elsewhere, &mut ev),
            Outcome::Taken { .. }
        ));
        // An unbound name does not move.
        assert_eq!(
            n.apply(
                5,
                &Command::Move {
                    name: "b".into(),
                    version: 1,
                    location: loc("y", 1, 1),
                    state: None
                },
                &mut ev
            ),
            Outcome::None
        );
    }

    #[test]
    fn a_supervised_name_outlives_its_node_until_the_leader_restarts_it() {
        let mut n = Names::default();
        let mut ev = Vec::new();
        assert!(matches!(
            n.apply(1, &supervise("a", loc("x", 1, 7), None), &mut ev),
            Outcome::Bound(_)
        ));
        assert_eq!(n.awaiting_restart().count(), 0);
        // Its node goes down: the binding is released, the supervision stays.
        n.apply(
            2,
            &Command::ReleaseNodes {
                nodes: vec![NodeId::new("x", 1)],
            },
            &mut ev,
        );
        assert!(n.get("a").is_none());
        let waiting: Vec<_> = n.awaiting_restart().map(|(k, _)| k.clone()).collect();
        assert_eq!(waiting, ["a"]);
        assert_eq!(
            n.supervision("a").unwrap().last_node,
            Some(NodeId::new("x", 1))
        );
        // Nobody else takes the name meanwhile.
        assert!(matches!(
            n.apply(3, &register("a", loc("y", 1, 1)), &mut ev),
            Outcome::Taken { .. }
        ));
        let claim = Command::Claim {
            name: "a".into(),
            node: NodeId::new("y", 1),
            token: 9,
        };
        assert!(matches!(n.apply(4, &claim, &mut ev), Outcome::Taken { .. }));
        // The leader's restart claims it for y; a second decision finds it taken.
        assert_eq!(
            n.apply(5, &restart("a", "y", 3, 1000), &mut ev),
            Outcome::Claimed { token: 3, index: 5 }
        );
        assert!(matches!(
            n.apply(6, &restart("a", "z", 4, 1001), &mut ev),
            Outcome::Taken { .. }
        ));
        assert_eq!(n.restarting().count(), 1);
        // y completes the claim.
        let bind = Command::Register {
            name: "a".into(),
            location: loc("y", 1, 2),
            claim: Some(3),
        };
        assert!(matches!(n.apply(7, &bind, &mut ev), Outcome::Bound(e) if e.actor_id == 2));
        let s = n.supervision("a").unwrap();
        assert_eq!(
            (s.restarts.clone(), s.last_node.clone()),
            (vec![1000], Some(NodeId::new("y", 1)))
        );
        // Unregistering ends supervision.
        let unreg = Command::Unregister {
            name: "a".into(),
            version: None,
            reason: ReleaseReason::Unregistered,
        };
        assert!(matches!(
            n.apply(8, &unreg, &mut ev),
            Outcome::Released(Some(_))
        ));
        assert!(n.supervision("a").is_none());
        assert_eq!(
            n.apply(9, &restart("a", "y", 5, 1002), &mut ev),
            Outcome::None
        );
    }

    #[test]
    fn an_exhausted_name_is_never_restarted_and_may_be_spawned_afresh() {
        let mut n = Names::default();
        let mut ev = Vec::new();
        n.apply(1, &supervise("a", loc("x", 1, 7), None), &mut ev);
        let stopped = Command::Unregister {
            name: "a".into(),
            version: Some(1),
            reason: ReleaseReason::ActorStopped,
        };
        assert!(matches!(
            n.apply(2, &stopped, &mut ev),
            Outcome::Released(Some(_))
        ));
        assert!(n.supervision("a").is_some(), "a stop keeps supervision");
        n.apply(3, &Command::Exhaust { name: "a".into() }, &mut ev);
        assert_eq!(n.awaiting_restart().count(), 0);
        assert!(n.supervision("a").unwrap().exhausted);
        assert_eq!(n.apply(4, &restart("a", "y", 3, 1), &mut ev), Outcome::None);
        let claim = Command::Claim {
            name: "a".into(),
            node: NodeId::new("y", 1),
            token: 9,
        };
        assert_eq!(
            n.apply(5, &claim, &mut ev),
            Outcome::Claimed { token: 9, index: 5 }
        );
        assert!(n.supervision("a").is_none());
    }

    #[test]
    fn release_nodes_except_keeps_the_names_with_the_prefix() {
        let mut n = Names::default();
        let mut ev = Vec::new();
        let reg = |name: &str, actor| Command::Register {
            name: name.into(),
            location: loc("x", 1, actor),
            claim: None,
        };
        n.apply(1, &reg("plain", 1), &mut ev);
        n.apply(2, &reg("virtual/t/1", 2), &mut ev);
        let x = NodeId::new("x", 1);
        assert_eq!(n.holds(&x, VIRTUAL_PREFIX), (true, true));
        let except = Command::ReleaseNodesExcept {
            nodes: vec![x.clone()],
            keep: VIRTUAL_PREFIX.into(),
        };
        assert_eq!(n.apply(3, &except, &mut ev), Outcome::ReleasedCount(1));
        assert!(n.get("plain").is_none());
        assert!(n.get("virtual/t/1").is_some());
        assert_eq!(n.holds(&x, VIRTUAL_PREFIX), (true, false));
        let all = Command::ReleaseNodes {
            nodes: vec![x.clone()],
        };
        assert_eq!(n.apply(4, &all, &mut ev), Outcome::ReleasedCount(1));
        assert_eq!(n.holds(&x, VIRTUAL_PREFIX), (false, false));
    }

    #[test]
    fn a_reminder_tick_is_taken_once_and_missed_ticks_are_skipped() {
        let mut n = Names::default();
        let mut ev = Vec::new();
        let r = Reminder {
            actor_type: "t".into(),
            id: "42".into(),
            name: "daily".into(),
            period_ms: 100,
            due_ms: 1_000,
        };
        n.apply(
            1,
            &Command::SetReminder {
                reminder: r.clone(),
            },
            &mut ev,
        );
        assert!(n.due_reminders(999, 10).is_empty());
        assert_eq!(n.due_reminders(1_000, 10), vec![r.clone()]);
        // Down from 1,000 to 1,450: the ticks at 1,100..1,400 are skipped, not fired late.
        assert_eq!(r.next_after(1_450), 1_500);
        assert_eq!(r.next_after(1_000), 1_100);
        let fire = Command::FireReminder {
            key: r.key(),
            due_ms: 1_000,
            next_ms: 1_500,
        };
        assert_eq!(n.apply(2, &fire, &mut ev), Outcome::Fired);
        // The same tick again (a retried write, a second leader): not taken.
        assert_eq!(n.apply(3, &fire, &mut ev), Outcome::None);
        assert!(n.due_reminders(1_499, 10).is_empty());
        assert_eq!(n.reminders_of("t", "42").len(), 1);
        assert!(
            n.reminders_of("t", "4").is_empty(),
            "ids are not prefixes of each other"
        );
        n.apply(4, &Command::DropReminder { key: r.key() }, &mut ev);
        assert!(n.reminders_of("t", "42").is_empty());
        assert_eq!(n.apply(5, &fire, &mut ev), Outcome::None);
    }

    fn at(node: NodeId, actor: u64) -> Location {
        Location {
            node,
            node_addr: ([127, 0, 0, 1], 1).into(),
            actor_type: "t".into(),
            actor_id: actor,
        }
    }

    fn arb_cmd() -> impl Strategy<Value = Command> {
        let name = prop::sample::select(vec!["a", "b", "c"]).prop_map(str::to_owned);
        let node =
            (prop::sample::select(vec!["x", "y"]), 1u64..3).prop_map(|(n, i)| NodeId::new(n, i));
        prop_oneof![
            (
                name.clone(),
                node.clone(),
                0u64..3,
                prop::option::of(0u64..3)
            )
                .prop_map(|(name, node, actor, claim)| Command::Register {
                    name,
                    location: at(node, actor),
                    claim,
                }),
            (name.clone(), node.clone(), 0u64..3).prop_map(|(name, node, token)| Command::Claim {
                name,
                node,
                token
            }),
            (name.clone(), prop::option::of(0u64..8)).prop_map(|(name, version)| {
                Command::Unregister {
                    name,
                    version,
                    reason: ReleaseReason::Unregistered,
                }
            }),
            prop::collection::vec(node.clone(), 0..2)
                .prop_map(|nodes| Command::ReleaseNodes { nodes }),
            (
                name.clone(),
                node.clone(),
                0u64..3,
                prop::option::of(0u64..3)
            )
                .prop_map(|(name, node, actor, claim)| Command::Supervise {
                    name,
                    location: at(node, actor),
                    claim,
                    supervision: Box::new(supervision(crate::placement::RestartPolicy::Always)),
                }),
            (name.clone(), node, 0u64..3, 0u64..100).prop_map(|(name, node, token, at_ms)| {
                Command::Restart {
                    name,
                    node,
                    token,
                    at_ms,
                }
            }),
            (name.clone(), prop::option::of(0u64..8)).prop_map(|(name, version)| {
                Command::Unregister {
                    name,
                    version,
                    reason: ReleaseReason::ActorStopped,
                }
            }),
            name.clone().prop_map(|name| Command::Exhaust { name }),
            (name.clone(), 1u64..5, 0u64..20).prop_map(|(name, period_ms, due_ms)| {
                Command::SetReminder {
                    reminder: Reminder {
                        actor_type: "t".into(),
                        id: "i".into(),
                        name,
                        period_ms,
                        due_ms,
                    },
                }
            }),
            (name.clone(), 0u64..20, 0u64..40).prop_map(|(name, due_ms, next_ms)| {
                Command::FireReminder {
                    key: reminder_key("t", "i", &name),
                    due_ms,
                    next_ms,
                }
            }),
            name.prop_map(|name| Command::DropReminder {
                key: reminder_key("t", "i", &name)
            }),
        ]
    }

    proptest! {
        /// Replicas that apply the same log agree, the bound count matches the table, and a
        /// snapshot round trip changes nothing.
        #[test]
        fn replicas_of_the_same_log_agree(cmds in prop::collection::vec(arb_cmd(), 0..64)) {
            let (mut a, mut b) = (Names::default(), Names::default());
            let mut ev = Vec::new();
            for (i, c) in cmds.iter().enumerate() {
                let oa = a.apply(i as u64 + 1, c, &mut ev);
                let ob = b.apply(i as u64 + 1, c, &mut Vec::new());
                prop_assert_eq!(oa, ob);
                prop_assert_eq!(a.len(), a.list("").count());
            }
            prop_assert_eq!(&a, &b);
            let bytes = crate::codec::encode(crate::codec::SerializationFormat::Bincode, &a).unwrap();
            let c: Names = crate::codec::decode(crate::codec::SerializationFormat::Bincode, &bytes).unwrap();
            prop_assert_eq!(a, c);
        }
    }
}
