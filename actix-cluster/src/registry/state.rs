//! The replicated name table (sans-IO): commands in log order in, outcomes and events out.
//!
//! Every replica applies the same commands in the same order and so holds the same table;
//! nothing here reads a clock or does I/O. A name is in one of two states: *claimed* (a
//! caller of `register_name_or_get` won the race and is creating the actor) or *bound* (an
//! actor is registered). Both belong to one node incarnation, and both are released when
//! that incarnation goes Down.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::types::{NameEntry, NameEvent, ReleaseReason};
use crate::node::NodeId;

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
}

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
    /// The claim was granted (token echoed back).
    Claimed { token: u64 },
    /// The name was released (`None`: it was not registered, or not at that version).
    Released(Option<NameEntry>),
    /// Names released by `ReleaseNodes`.
    ReleasedCount(usize),
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
    bound: usize,
    by_node: BTreeMap<NodeId, BTreeSet<String>>,
}

impl Serialize for Names {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.slots.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Names {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut names = Names::default();
        for (name, slot) in BTreeMap::<String, Slot>::deserialize(d)? {
            names.put(name, slot);
        }
        Ok(names)
    }
}

impl Names {
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

    /// Number of bound names.
    pub(crate) fn len(&self) -> usize {
        self.bound
    }

    /// Node incarnations that hold a name or claim.
    pub(crate) fn owners(&self) -> impl Iterator<Item = &NodeId> {
        self.by_node.keys()
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
                let entry = NameEntry {
                    name: name.clone(),
                    node: location.node.clone(),
                    node_addr: location.node_addr,
                    actor_type: location.actor_type.clone(),
                    actor_id: location.actor_id,
                    version: index,
                };
                self.put(name.clone(), Slot::Bound(Arc::new(entry.clone())));
                events.push(NameEvent::Registered(entry.clone()));
                Outcome::Bound(entry)
            }
            Command::Claim { name, node, token } => match self.slots.get(name) {
                Some(Slot::Bound(e)) => Outcome::Taken {
                    node: e.node.clone(),
                    entry: Some(NameEntry::clone(e)),
                },
                Some(Slot::Claimed { node: n, token: t }) if t != token => Outcome::Taken {
                    node: n.clone(),
                    entry: None,
                },
                _ => {
                    self.put(
                        name.clone(),
                        Slot::Claimed {
                            node: node.clone(),
                            token: *token,
                        },
                    );
                    Outcome::Claimed { token: *token }
                }
            },
            Command::Unregister {
                name,
                version,
                reason,
            } => {
                let matches = match (self.slots.get(name), version) {
                    (None, _) => false,
                    (Some(_), None) => true,
                    (Some(Slot::Bound(e)), Some(v)) => e.version == *v,
                    (Some(Slot::Claimed { token, .. }), Some(v)) => token == v,
                };
                if !matches {
                    return Outcome::Released(None);
                }
                Outcome::Released(self.remove(name, *reason, events))
            }
            Command::ReleaseNodes { nodes } => {
                let doomed: Vec<String> = nodes
                    .iter()
                    .filter_map(|n| self.by_node.get(n))
                    .flatten()
                    .cloned()
                    .collect();
                let released = doomed
                    .iter()
                    .filter(|name| self.remove(name, ReleaseReason::NodeDown, events).is_some())
                    .count();
                Outcome::ReleasedCount(released)
            }
        }
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
            Outcome::Claimed { token: 5 }
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
                    location: Location {
                        node,
                        node_addr: ([127, 0, 0, 1], 1).into(),
                        actor_type: "t".into(),
                        actor_id: actor,
                    },
                    claim,
                }),
            (name.clone(), node.clone(), 0u64..3).prop_map(|(name, node, token)| Command::Claim {
                name,
                node,
                token
            }),
            (name, prop::option::of(0u64..8)).prop_map(|(name, version)| Command::Unregister {
                name,
                version,
                reason: ReleaseReason::Unregistered
            }),
            prop::collection::vec(node, 0..2).prop_map(|nodes| Command::ReleaseNodes { nodes }),
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
