//! Linearizability of a registry history, name by name.
//!
//! A history is what the harness's clients saw: each operation with its invocation time, its
//! completion time (none if the client never heard back) and its outcome. The checker asks
//! whether some order of the operations, each taking effect at an instant between its
//! invocation and its completion, explains every outcome under a model of one name's slot in
//! the registry. Names are independent (each command touches one name), so each is checked on
//! its own (the model is P-compositional).
//!
//! The search sweeps the history in time order over the set of *configurations* the model can
//! be in: the slot's state plus how far each open operation has got. Invoking an operation
//! adds it to every configuration; before an operation completes, the set is closed under
//! every step an open operation (or a release, below) can take; on completion only the
//! configurations in which the operation finished with the outcome the client saw survive.
//! The history is linearizable if a configuration survives the whole sweep. The set stays
//! small because only a few operations on one name are open at once.
//!
//! The model follows `registry/state.rs`: a slot is free, claimed by a `register_name_or_get`
//! in progress, or bound to an actor. `register_name_or_get` has two steps (claim, then bind)
//! and may end between them. A slot owned by a node incarnation that a fault touched (killed,
//! paused, cut off or lossy) may be released at any instant after the fault: membership may
//! have declared it Down, which releases its names and claims. That makes the checker unable
//! to catch a spurious release of such a name, and nothing else.

use std::collections::{BTreeMap, HashSet};

/// An actor a name can be bound to: one actor of one node incarnation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Actor {
    /// Node name.
    pub node: String,
    /// Node incarnation.
    pub incarnation: u64,
    /// Actor id on that node.
    pub id: u64,
}

impl Actor {
    fn owner(&self) -> (&str, u64) {
        (&self.node, self.incarnation)
    }
}

/// What a client asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// `register_name(name, actor)`.
    Register(Actor),
    /// `register_name_or_get(name, || actor)`, run on `actor`'s node.
    RegisterOrGet(Actor),
    /// `unregister_name(name)`.
    Unregister,
    /// `lookup_linearizable(name)`.
    Lookup,
}

/// What the client saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// The name is bound to this actor (register, register-or-get, lookup).
    Bound(Actor),
    /// Unregister released this binding.
    Released(Actor),
    /// Unregister found nothing bound (a pending claim, if any, is removed too).
    Nothing,
    /// `NameTaken`: another actor or a claim holds the name.
    Taken,
    /// Lookup: `NotFound`.
    NotFound,
    /// A definite failure (`NoQuorum`, `NotFormed`, a failed read): no effect, except that a
    /// `register_name_or_get` may have claimed before failing to bind.
    Failed,
    /// No answer, or an answer that does not say whether it took effect.
    Unknown,
}

/// One operation of the history. Times are nanoseconds on the harness's clock.
#[derive(Debug, Clone)]
pub struct Operation {
    /// Index in the harness's log, for reports.
    pub id: u64,
    /// The name.
    pub name: String,
    /// What was asked.
    pub call: Call,
    /// When the client sent it.
    pub invoked: u64,
    /// When the client heard back; `None` if it never did.
    pub completed: Option<u64>,
    /// What it heard.
    pub seen: Seen,
}

/// From `at` on, the names and claims of node incarnation `(node, incarnation)` may be
/// released: a fault touched it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Releasable {
    /// Node name.
    pub node: String,
    /// Node incarnation.
    pub incarnation: u64,
    /// Nanoseconds on the harness's clock.
    pub at: u64,
}

/// Operations a violation report lists: the last ones invoked before it.
const REPORTED: usize = 30;

/// The verdict on one name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The name whose operations no order explains.
    pub name: String,
    /// The operation at whose completion the last explanation ran out.
    pub at_operation: u64,
    /// The name's last operations invoked before the unexplained completion, in invocation
    /// order (at most 30).
    pub operations: Vec<String>,
}

/// The state of one name's slot.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Slot {
    Free,
    /// Claimed by open-or-finished operation `op` (index in the name's list) for `owner`.
    Claimed { op: usize, owner: (String, u64) },
    Bound(Actor),
}

/// How far an operation has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Phase {
    Start,
    /// `register_name_or_get` holds its claim and has not bound yet.
    Claimed,
    /// Finished, with this result.
    Done(Result_),
}

/// The result of an operation's effect, compared with what the client saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Result_ {
    /// Bound to the actor in the operation's own call (register, register-or-get's own).
    OwnBound,
    /// Saw the slot bound to whatever it was bound to then; the actor is kept in `seen`.
    SawBound(u32),
    Released(u32),
    Nothing,
    Taken,
    NotFound,
}

/// A configuration: the slot and the phase of each open operation (by index).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Config {
    slot: Slot,
    open: BTreeMap<usize, Phase>,
}

/// Checks every name; returns the first violation per name (names in order).
pub fn check(history: &[Operation], releasable: &[Releasable]) -> Vec<Violation> {
    let mut by_name: BTreeMap<&str, Vec<&Operation>> = BTreeMap::new();
    for op in history {
        by_name.entry(&op.name).or_default().push(op);
    }
    by_name
        .into_iter()
        .filter_map(|(name, mut ops)| {
            ops.sort_by_key(|o| (o.invoked, o.id));
            check_name(name, &ops, releasable)
        })
        .collect()
}

/// The actors a name's history mentions, numbered, so results compare small integers.
struct Actors(Vec<Actor>);

impl Actors {
    fn of(ops: &[&Operation]) -> Self {
        let mut all = Vec::new();
        for op in ops {
            if let Call::Register(a) | Call::RegisterOrGet(a) = &op.call {
                all.push(a.clone());
            }
            if let Seen::Bound(a) | Seen::Released(a) = &op.seen {
                all.push(a.clone());
            }
        }
        all.sort();
        all.dedup();
        Self(all)
    }

    /// The number of an actor of this history (every slot and outcome holds one).
    fn index(&self, a: &Actor) -> u32 {
        self.0.binary_search(a).map_or(u32::MAX, |i| i as u32)
    }
}

fn check_name(name: &str, ops: &[&Operation], releasable: &[Releasable]) -> Option<Violation> {
    let actors = Actors::of(ops);
    // Timeline: (time, kind, op), invokes before completions at the same instant would let
    // an operation see one that completed at that instant; order completions first.
    let mut points: Vec<(u64, u8, usize)> = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        points.push((op.invoked, 1, i));
        if let Some(c) = op.completed
            && op.seen != Seen::Unknown
        {
            points.push((c, 0, i));
        }
    }
    points.sort();
    let mut configs: HashSet<Config> = HashSet::from([Config {
        slot: Slot::Free,
        open: BTreeMap::new(),
    }]);
    for (now, kind, i) in points {
        if kind == 1 {
            configs = configs
                .into_iter()
                .map(|mut c| {
                    c.open.insert(i, Phase::Start);
                    c
                })
                .collect();
            continue;
        }
        let closed = close(&configs, ops, &actors, releasable, now);
        let want = expected(&ops[i].seen, &actors);
        configs = closed
            .into_iter()
            .filter_map(|mut c| {
                let phase = c.open.remove(&i)?;
                finishes(ops[i], phase, &want, &actors).then_some(c)
            })
            .collect();
        if configs.is_empty() {
            // The operations that could matter: those invoked before the failing one
            // completed, the latest ones last.
            let before: Vec<&&Operation> = ops.iter().filter(|o| o.invoked <= now).collect();
            let from = before.len().saturating_sub(REPORTED);
            return Some(Violation {
                name: name.to_owned(),
                at_operation: ops[i].id,
                operations: before[from..].iter().map(|o| describe(o)).collect(),
            });
        }
    }
    None
}

/// What a completed operation's phase must be, given what the client saw.
enum Want {
    Bound(u32),
    Released(u32),
    Nothing,
    Taken,
    NotFound,
    /// Failed: no step taken (a register-or-get may hold its claim).
    NoEffect,
}

fn expected(seen: &Seen, actors: &Actors) -> Want {
    match seen {
        Seen::Bound(a) => Want::Bound(actors.index(a)),
        Seen::Released(a) => Want::Released(actors.index(a)),
        Seen::Nothing => Want::Nothing,
        Seen::Taken => Want::Taken,
        Seen::NotFound => Want::NotFound,
        // Unknown never completes; Failed takes no step.
        Seen::Failed | Seen::Unknown => Want::NoEffect,
    }
}

fn finishes(op: &Operation, phase: Phase, want: &Want, actors: &Actors) -> bool {
    let own = match &op.call {
        Call::Register(a) | Call::RegisterOrGet(a) => Some(actors.index(a)),
        _ => None,
    };
    match (want, phase) {
        (Want::NoEffect, Phase::Start) => true,
        (Want::NoEffect, Phase::Claimed) => matches!(op.call, Call::RegisterOrGet(_)),
        (Want::NoEffect, Phase::Done(_)) => false,
        (_, Phase::Start | Phase::Claimed) => false,
        (Want::Bound(a), Phase::Done(Result_::OwnBound)) => own == Some(*a),
        (Want::Bound(a), Phase::Done(Result_::SawBound(b))) => a == &b,
        (Want::Released(a), Phase::Done(Result_::Released(b))) => a == &b,
        (Want::Nothing, Phase::Done(r)) => r == Result_::Nothing,
        (Want::Taken, Phase::Done(r)) => r == Result_::Taken,
        (Want::NotFound, Phase::Done(r)) => r == Result_::NotFound,
        _ => false,
    }
}

/// Every configuration reachable from `configs` by steps of open operations and releases
/// allowed at `now`.
fn close(
    configs: &HashSet<Config>,
    ops: &[&Operation],
    actors: &Actors,
    releasable: &[Releasable],
    now: u64,
) -> HashSet<Config> {
    let may_release = |owner: (&str, u64)| {
        releasable
            .iter()
            .any(|r| r.node == owner.0 && r.incarnation == owner.1 && r.at <= now)
    };
    let mut seen: HashSet<Config> = configs.clone();
    let mut todo: Vec<Config> = configs.iter().cloned().collect();
    while let Some(c) = todo.pop() {
        let mut next: Vec<Config> = Vec::new();
        let releasable_slot = match &c.slot {
            Slot::Bound(a) => may_release(a.owner()),
            Slot::Claimed { owner, .. } => may_release((&owner.0, owner.1)),
            Slot::Free => false,
        };
        if releasable_slot {
            next.push(Config {
                slot: Slot::Free,
                open: c.open.clone(),
            });
        }
        for (&i, &phase) in &c.open {
            for (slot, phase) in step(ops[i], i, phase, &c.slot, actors) {
                let mut open = c.open.clone();
                if ops[i].seen == Seen::Unknown && matches!(phase, Phase::Done(_)) {
                    // Nobody checks its result: once it took effect it is out of the search,
                    // which keeps many unanswered operations from multiplying configurations.
                    open.remove(&i);
                } else {
                    open.insert(i, phase);
                }
                next.push(Config { slot, open });
            }
        }
        for n in next {
            if seen.insert(n.clone()) {
                todo.push(n);
            }
        }
    }
    seen
}

/// The steps operation `op` (index `i`) can take from `phase` with the slot in `slot`.
fn step(op: &Operation, i: usize, phase: Phase, slot: &Slot, actors: &Actors) -> Vec<(Slot, Phase)> {
    let done = |r| Phase::Done(r);
    match (&op.call, phase) {
        (_, Phase::Done(_)) => Vec::new(),
        (Call::Register(a), Phase::Start) => vec![match slot {
            Slot::Free => (Slot::Bound(a.clone()), done(Result_::OwnBound)),
            Slot::Bound(b) if b == a => (slot.clone(), done(Result_::OwnBound)),
            Slot::Bound(_) | Slot::Claimed { .. } => (slot.clone(), done(Result_::Taken)),
        }],
        (Call::Unregister, Phase::Start) => vec![match slot {
            Slot::Bound(b) => (Slot::Free, done(Result_::Released(actors.index(b)))),
            Slot::Free | Slot::Claimed { .. } => (Slot::Free, done(Result_::Nothing)),
        }],
        (Call::Lookup, Phase::Start) => vec![match slot {
            Slot::Bound(b) => (slot.clone(), done(Result_::SawBound(actors.index(b)))),
            Slot::Free | Slot::Claimed { .. } => (slot.clone(), done(Result_::NotFound)),
        }],
        (Call::RegisterOrGet(a), Phase::Start) => match slot {
            Slot::Free => vec![(
                Slot::Claimed {
                    op: i,
                    owner: (a.node.clone(), a.incarnation),
                },
                Phase::Claimed,
            )],
            Slot::Bound(b) if b == a => vec![(slot.clone(), done(Result_::OwnBound))],
            Slot::Bound(b) => vec![(slot.clone(), done(Result_::SawBound(actors.index(b))))],
            // Another caller's claim: it waits for the binding (or the claim's release).
            Slot::Claimed { .. } => Vec::new(),
        },
        (Call::RegisterOrGet(a), Phase::Claimed) => vec![match slot {
            // The bind carries the claim's token: it binds if the claim is still its own or
            // the slot is free (the claim was released meanwhile).
            Slot::Claimed { op, .. } if *op == i => (Slot::Bound(a.clone()), done(Result_::OwnBound)),
            Slot::Free => (Slot::Bound(a.clone()), done(Result_::OwnBound)),
            Slot::Bound(b) if b == a => (slot.clone(), done(Result_::OwnBound)),
            Slot::Bound(_) | Slot::Claimed { .. } => (slot.clone(), done(Result_::Taken)),
        }],
        (_, Phase::Claimed) => Vec::new(),
    }
}

fn describe(op: &Operation) -> String {
    let t = |ns: u64| format!("{:.3}", ns as f64 / 1e9);
    format!(
        "#{} {:?} invoked {} completed {} saw {:?}",
        op.id,
        op.call,
        t(op.invoked),
        op.completed.map_or_else(|| "-".to_owned(), t),
        op.seen
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn actor(node: &str, id: u64) -> Actor {
        Actor {
            node: node.into(),
            incarnation: 1,
            id,
        }
    }

    /// An operation on name `n` from `from` to `to` seconds (`None`: never answered).
    fn op(id: u64, call: Call, from: f64, to: Option<f64>, seen: Seen) -> Operation {
        let ns = |s: f64| (s * 1e9) as u64;
        Operation {
            id,
            name: "n".into(),
            call,
            invoked: ns(from),
            completed: to.map(ns),
            seen,
        }
    }

    fn ok(history: &[Operation]) -> bool {
        check(history, &[]).is_empty()
    }

    #[test]
    fn a_sequential_history_is_linearizable() {
        let a = actor("x", 1);
        assert!(ok(&[
            op(1, Call::Lookup, 0.0, Some(1.0), Seen::NotFound),
            op(2, Call::Register(a.clone()), 2.0, Some(3.0), Seen::Bound(a.clone())),
            op(3, Call::Lookup, 4.0, Some(5.0), Seen::Bound(a.clone())),
            op(4, Call::Unregister, 6.0, Some(7.0), Seen::Released(a.clone())),
            op(5, Call::Unregister, 8.0, Some(9.0), Seen::Nothing),
            op(6, Call::Lookup, 10.0, Some(11.0), Seen::NotFound),
        ]));
    }

    #[test]
    fn a_lost_acknowledged_registration_is_a_violation_unless_its_owner_was_faulted() {
        let a = actor("x", 1);
        let history = [
            op(1, Call::Register(a.clone()), 0.0, Some(1.0), Seen::Bound(a.clone())),
            op(2, Call::Lookup, 5.0, Some(6.0), Seen::NotFound),
        ];
        let v = check(&history, &[]);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].at_operation, 2);
        let faulted = Releasable {
            node: "x".into(),
            incarnation: 1,
            at: 3_000_000_000,
        };
        assert!(check(&history, &[faulted.clone()]).is_empty());
        // A fault after the lookup explains nothing.
        let late = Releasable {
            at: 7_000_000_000,
            ..faulted
        };
        assert_eq!(check(&history, &[late]).len(), 1);
    }

    #[test]
    fn a_stale_read_after_an_acknowledged_unregister_is_a_violation() {
        let a = actor("x", 1);
        assert!(!ok(&[
            op(1, Call::Register(a.clone()), 0.0, Some(1.0), Seen::Bound(a.clone())),
            op(2, Call::Unregister, 2.0, Some(3.0), Seen::Released(a.clone())),
            op(3, Call::Lookup, 4.0, Some(5.0), Seen::Bound(a.clone())),
        ]));
    }

    #[test]
    fn two_actors_for_one_name_are_a_violation_and_overlap_decides_the_winner() {
        let (a, b) = (actor("x", 1), actor("y", 2));
        // Both `register_name_or_get` calls overlap: either may win, but both must agree.
        assert!(ok(&[
            op(1, Call::RegisterOrGet(a.clone()), 0.0, Some(3.0), Seen::Bound(b.clone())),
            op(2, Call::RegisterOrGet(b.clone()), 1.0, Some(2.0), Seen::Bound(b.clone())),
        ]));
        assert!(!ok(&[
            op(1, Call::RegisterOrGet(a.clone()), 0.0, Some(3.0), Seen::Bound(a.clone())),
            op(2, Call::RegisterOrGet(b.clone()), 1.0, Some(2.0), Seen::Bound(b.clone())),
        ]));
        assert!(!ok(&[
            op(1, Call::Register(a.clone()), 0.0, Some(3.0), Seen::Bound(a.clone())),
            op(2, Call::Register(b.clone()), 1.0, Some(2.0), Seen::Bound(b.clone())),
        ]));
        // The same actor again is idempotent.
        assert!(ok(&[
            op(1, Call::Register(a.clone()), 0.0, Some(1.0), Seen::Bound(a.clone())),
            op(2, Call::Register(a.clone()), 2.0, Some(3.0), Seen::Bound(a.clone())),
            op(3, Call::Register(b.clone()), 4.0, Some(5.0), Seen::Taken),
        ]));
    }

    #[test]
    fn an_unanswered_write_may_or_may_not_have_happened_but_a_failed_one_did_not() {
        let a = actor("x", 1);
        for seen in [Seen::Bound(a.clone()), Seen::NotFound] {
            assert!(ok(&[
                op(1, Call::Register(a.clone()), 0.0, None, Seen::Unknown),
                op(2, Call::Lookup, 5.0, Some(6.0), seen),
            ]));
        }
        assert!(!ok(&[
            op(1, Call::Register(a.clone()), 0.0, Some(1.0), Seen::Failed),
            op(2, Call::Lookup, 5.0, Some(6.0), Seen::Bound(a.clone())),
        ]));
        // An unanswered write may take effect after a later read started, not before the
        // read that completed ahead of its invocation.
        assert!(!ok(&[
            op(1, Call::Lookup, 0.0, Some(1.0), Seen::Bound(a.clone())),
            op(2, Call::Register(a.clone()), 2.0, None, Seen::Unknown),
        ]));
    }

    #[test]
    fn a_failed_register_or_get_may_leave_its_claim_behind() {
        let (a, b) = (actor("x", 1), actor("y", 2));
        let history = [
            op(1, Call::RegisterOrGet(a.clone()), 0.0, Some(1.0), Seen::Failed),
            op(2, Call::Register(b.clone()), 2.0, Some(3.0), Seen::Taken),
            op(3, Call::Lookup, 4.0, Some(5.0), Seen::NotFound),
        ];
        assert!(ok(&history));
        // A failed plain register leaves nothing behind.
        let mut plain = history.clone();
        plain[0].call = Call::Register(a);
        assert!(!ok(&plain));
    }

    #[test]
    fn names_are_checked_independently() {
        let a = actor("x", 1);
        let mut other = op(2, Call::Lookup, 2.0, Some(3.0), Seen::NotFound);
        other.name = "m".into();
        assert!(ok(&[
            op(1, Call::Register(a.clone()), 0.0, Some(1.0), Seen::Bound(a)),
            other,
        ]));
    }
}
