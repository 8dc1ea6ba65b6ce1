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
//! and may end between them. A slot owned by a node incarnation that was killed, or that any
//! node declared Down or Left (the nodes report their verdicts), may be released at any instant
//! after that: the registry releases the names of Down incarnations. A spurious release of a
//! live, never-suspected node's name is a violation.

use std::collections::{BTreeMap, HashMap, HashSet};

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
/// released: it was killed, or a node declared it Down or Left.
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

/// Who holds a claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Claimant {
    /// The operation with this index in the name's list (its outcome is known).
    Op(usize),
    /// Some unanswered `register_name_or_get` for this actor: those are interchangeable.
    Unanswered(u32),
    /// A `register_name_or_get` that failed after claiming: nobody binds this claim any more,
    /// and which operation left it no longer matters.
    Orphan,
}

/// The state of one name's slot. Actors are numbered (see [`Actors`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Slot {
    Free,
    /// Claimed by a `register_name_or_get` for actor `actor` (whose node owns the claim).
    Claimed {
        by: Claimant,
        actor: u32,
    },
    Bound(u32),
}

/// How far an operation has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Phase {
    Start,
    /// `register_name_or_get` holds its claim and has not bound yet.
    Claimed,
    /// Finished, with this result.
    Done(Effect),
}

/// What an operation's step returned, to compare with what the client saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Effect {
    Bound(u32),
    Released(u32),
    Nothing,
    Taken,
    NotFound,
}

/// What an unanswered operation asks for; equal keys are interchangeable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Pending {
    Register(u32),
    Unregister,
    /// Not claimed yet.
    RegisterOrGet(u32),
    /// Holding a claim, about to bind.
    Binding(u32),
}

/// A configuration: the slot, the phase of each open answered operation, and how many
/// unanswered operations of each kind have not taken effect yet.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Config {
    slot: Slot,
    open: BTreeMap<usize, Phase>,
    pending: BTreeMap<Pending, u32>,
}

/// Beyond this many configurations a name is reported as not checked rather than searched on.
const MAX_CONFIGS: usize = 200_000;

/// Checks every name; returns the first violation per name (names in order).
pub fn check(history: &[Operation], releasable: &[Releasable]) -> Vec<Violation> {
    let mut by_name: BTreeMap<&str, Vec<&Operation>> = BTreeMap::new();
    for op in history {
        // A read without an answer, and a plain write that certainly did not apply, change
        // nothing and are explained by any order.
        let inert = matches!(
            (&op.call, &op.seen),
            (Call::Lookup, Seen::Failed | Seen::Unknown)
                | (Call::Register(_) | Call::Unregister, Seen::Failed)
        );
        if !inert {
            by_name.entry(&op.name).or_default().push(op);
        }
    }
    by_name
        .into_iter()
        .filter_map(|(name, mut ops)| {
            ops.sort_by_key(|o| (o.invoked, o.id));
            check_name(name, &ops, releasable)
        })
        .collect()
}

/// The actors a name's history mentions, numbered, so configurations hold small integers.
///
/// Actors that only unanswered operations mention (no answered call names them and no outcome
/// shows them) share one number per node incarnation: no answered operation can tell them
/// apart (an outcome would have named them), and releases depend only on the incarnation. So
/// a fault's many unanswered writes for different actors collapse into a few interchangeable
/// kinds, which keeps the search small where it would otherwise double with each of them.
struct Actors {
    all: Vec<Actor>,
    /// The number each actor of `all` goes by (its own, or its incarnation's shared one).
    alias: Vec<u32>,
}

impl Actors {
    fn of(ops: &[&Operation]) -> Self {
        let mut all = Vec::new();
        let mut observed = HashSet::new();
        for op in ops {
            if let Call::Register(a) | Call::RegisterOrGet(a) = &op.call {
                all.push(a.clone());
                if op.seen != Seen::Unknown {
                    observed.insert(a.clone());
                }
            }
            if let Seen::Bound(a) | Seen::Released(a) = &op.seen {
                all.push(a.clone());
                observed.insert(a.clone());
            }
        }
        all.sort();
        all.dedup();
        let mut shared: HashMap<(&str, u64), u32> = HashMap::new();
        let alias = all
            .iter()
            .enumerate()
            .map(|(i, a)| {
                if observed.contains(a) {
                    i as u32
                } else {
                    *shared.entry(a.owner()).or_insert(i as u32)
                }
            })
            .collect();
        Self { all, alias }
    }

    /// The number of an actor of this history (every slot and outcome holds one).
    fn index(&self, a: &Actor) -> u32 {
        self.all
            .binary_search(a)
            .map_or(u32::MAX, |i| self.alias[i])
    }

    fn owner(&self, i: u32) -> Option<(&str, u64)> {
        self.all.get(i as usize).map(Actor::owner)
    }
}

fn check_name(name: &str, ops: &[&Operation], releasable: &[Releasable]) -> Option<Violation> {
    let actors = Actors::of(ops);
    // Timeline: at equal instants completions come first, so an operation invoked at the
    // instant another completed may see it.
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
        pending: BTreeMap::new(),
    }]);
    let report = |i: usize, now: u64, why: Option<&str>| {
        let before: Vec<&&Operation> = ops.iter().filter(|o| o.invoked <= now).collect();
        let from = before.len().saturating_sub(REPORTED);
        let mut operations: Vec<String> = before[from..].iter().map(|o| describe(o)).collect();
        if let Some(why) = why {
            operations.push(why.to_owned());
        }
        Violation {
            name: name.to_owned(),
            at_operation: ops[i].id,
            operations,
        }
    };
    for (now, kind, i) in points {
        if kind == 1 {
            let unanswered = ops[i].seen == Seen::Unknown;
            configs = configs
                .into_iter()
                .map(|mut c| {
                    if unanswered {
                        let key = match &ops[i].call {
                            Call::Register(a) => Pending::Register(actors.index(a)),
                            Call::RegisterOrGet(a) => Pending::RegisterOrGet(actors.index(a)),
                            Call::Unregister => Pending::Unregister,
                            // Filtered out in `check`.
                            Call::Lookup => return c,
                        };
                        *c.pending.entry(key).or_default() += 1;
                    } else {
                        c.open.insert(i, Phase::Start);
                    }
                    c
                })
                .collect();
            continue;
        }
        let Some(closed) = close(&configs, ops, &actors, releasable, now) else {
            return Some(report(
                i,
                now,
                Some(&format!(
                    "NOT CHECKED: more than {MAX_CONFIGS} configurations (too many unanswered \
                     operations on one name); use more names or fewer clients"
                )),
            ));
        };
        let want = expected(&ops[i].seen, &actors);
        configs = closed
            .into_iter()
            .filter_map(|mut c| {
                let phase = c.open.remove(&i)?;
                if let Slot::Claimed { by, actor } = c.slot
                    && by == Claimant::Op(i)
                {
                    c.slot = Slot::Claimed {
                        by: Claimant::Orphan,
                        actor,
                    };
                }
                finishes(ops[i], phase, want).then_some(c)
            })
            .collect();
        if configs.is_empty() {
            return Some(report(i, now, None));
        }
    }
    None
}

/// The effect a completed operation must have had, given what the client saw; `None`: none
/// (a failure: no step taken, though a register-or-get may hold its claim).
fn expected(seen: &Seen, actors: &Actors) -> Option<Effect> {
    match seen {
        Seen::Bound(a) => Some(Effect::Bound(actors.index(a))),
        Seen::Released(a) => Some(Effect::Released(actors.index(a))),
        Seen::Nothing => Some(Effect::Nothing),
        Seen::Taken => Some(Effect::Taken),
        Seen::NotFound => Some(Effect::NotFound),
        // Unknown never completes; Failed takes no step.
        Seen::Failed | Seen::Unknown => None,
    }
}

fn finishes(op: &Operation, phase: Phase, want: Option<Effect>) -> bool {
    match (want, phase) {
        (None, Phase::Start) => true,
        (None, Phase::Claimed) => matches!(op.call, Call::RegisterOrGet(_)),
        (Some(want), Phase::Done(effect)) => want == effect,
        _ => false,
    }
}

/// Every configuration reachable from `configs` by steps of open operations, of unanswered
/// ones and releases allowed at `now`; `None` past [`MAX_CONFIGS`].
fn close(
    configs: &HashSet<Config>,
    ops: &[&Operation],
    actors: &Actors,
    releasable: &[Releasable],
    now: u64,
) -> Option<HashSet<Config>> {
    let may_release = |actor: u32| {
        actors.owner(actor).is_some_and(|(node, incarnation)| {
            releasable
                .iter()
                .any(|r| r.node == node && r.incarnation == incarnation && r.at <= now)
        })
    };
    let mut seen = Frontier::default();
    let mut todo: Vec<Config> = Vec::new();
    for c in configs {
        if seen.insert(c) {
            todo.push(c.clone());
        }
    }
    while let Some(c) = todo.pop() {
        if !seen.contains(&c) {
            // Superseded by a configuration with more unanswered operations left.
            continue;
        }
        let mut next: Vec<Config> = Vec::new();
        let owner = match c.slot {
            Slot::Bound(a) | Slot::Claimed { actor: a, .. } => Some(a),
            Slot::Free => None,
        };
        if owner.is_some_and(may_release) {
            next.push(Config {
                slot: Slot::Free,
                ..c.clone()
            });
        }
        for (&i, &phase) in &c.open {
            let (kind, own) = match &ops[i].call {
                Call::Register(a) => (Kind::Register, actors.index(a)),
                Call::RegisterOrGet(a) => (Kind::RegisterOrGet, actors.index(a)),
                Call::Unregister => (Kind::Unregister, u32::MAX),
                Call::Lookup => (Kind::Lookup, u32::MAX),
            };
            if let Some((slot, phase)) = step(kind, Claimant::Op(i), own, phase, c.slot) {
                let mut n = c.clone();
                n.slot = slot;
                n.open.insert(i, phase);
                next.push(n);
            }
        }
        for (&key, _) in c.pending.iter().filter(|(_, n)| **n > 0) {
            let (kind, own, phase) = match key {
                Pending::Register(a) => (Kind::Register, a, Phase::Start),
                Pending::Unregister => (Kind::Unregister, u32::MAX, Phase::Start),
                Pending::RegisterOrGet(a) => (Kind::RegisterOrGet, a, Phase::Start),
                Pending::Binding(a) => (Kind::RegisterOrGet, a, Phase::Claimed),
            };
            if let Some((slot, phase)) = step(kind, Claimant::Unanswered(own), own, phase, c.slot) {
                let mut n = c.clone();
                n.slot = slot;
                take(&mut n.pending, key);
                if phase == Phase::Claimed {
                    *n.pending.entry(Pending::Binding(own)).or_default() += 1;
                }
                next.push(n);
            }
        }
        for n in next {
            if seen.insert(&n) {
                if seen.len() > MAX_CONFIGS {
                    return None;
                }
                todo.push(n);
            }
        }
    }
    Some(seen.into_configs())
}

/// The phase of each open answered operation, by index.
type OpenPhases = BTreeMap<usize, Phase>;
/// How many unanswered operations of each kind have not taken effect.
type PendingCounts = BTreeMap<Pending, u32>;

/// Configurations kept up to dominance: of two that agree on the slot and the open answered
/// operations, the one with at least as many of every kind of unanswered operation left can do
/// everything the other can (an unanswered operation may also never take effect), so only it
/// is kept. Without this the unanswered operations of a fault multiply the search.
#[derive(Default)]
struct Frontier {
    groups: HashMap<(Slot, OpenPhases), Vec<PendingCounts>>,
    len: usize,
}

fn covers(a: &BTreeMap<Pending, u32>, b: &BTreeMap<Pending, u32>) -> bool {
    b.iter().all(|(k, n)| a.get(k).is_some_and(|m| m >= n))
}

impl Frontier {
    /// Adds `c` unless a kept configuration dominates it; drops those it dominates.
    fn insert(&mut self, c: &Config) -> bool {
        let group = self.groups.entry((c.slot, c.open.clone())).or_default();
        if group.iter().any(|p| covers(p, &c.pending)) {
            return false;
        }
        let before = group.len();
        group.retain(|p| !covers(&c.pending, p));
        self.len -= before - group.len();
        group.push(c.pending.clone());
        self.len += 1;
        true
    }

    fn contains(&self, c: &Config) -> bool {
        self.groups
            .get(&(c.slot, c.open.clone()))
            .is_some_and(|g| g.contains(&c.pending))
    }

    fn len(&self) -> usize {
        self.len
    }

    fn into_configs(self) -> HashSet<Config> {
        self.groups
            .into_iter()
            .flat_map(|((slot, open), group)| {
                group.into_iter().map(move |pending| Config {
                    slot,
                    open: open.clone(),
                    pending,
                })
            })
            .collect()
    }
}

fn take(pending: &mut BTreeMap<Pending, u32>, key: Pending) {
    if let Some(n) = pending.get_mut(&key) {
        *n -= 1;
        if *n == 0 {
            pending.remove(&key);
        }
    }
}

/// What an operation does, without its actor (which the model numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Register,
    RegisterOrGet,
    Unregister,
    Lookup,
}

/// The step (at most one) an operation of `kind` by `me`, for actor number `own`, can take
/// from `phase` with the slot in `slot`.
fn step(kind: Kind, me: Claimant, own: u32, phase: Phase, slot: Slot) -> Option<(Slot, Phase)> {
    let done = Phase::Done;
    Some(match (kind, phase) {
        (_, Phase::Done(_)) => return None,
        (Kind::Register, Phase::Start) => match slot {
            Slot::Free => (Slot::Bound(own), done(Effect::Bound(own))),
            Slot::Bound(b) if b == own => (slot, done(Effect::Bound(own))),
            Slot::Bound(_) | Slot::Claimed { .. } => (slot, done(Effect::Taken)),
        },
        (Kind::Unregister, Phase::Start) => match slot {
            Slot::Bound(b) => (Slot::Free, done(Effect::Released(b))),
            Slot::Free | Slot::Claimed { .. } => (Slot::Free, done(Effect::Nothing)),
        },
        (Kind::Lookup, Phase::Start) => match slot {
            Slot::Bound(b) => (slot, done(Effect::Bound(b))),
            Slot::Free | Slot::Claimed { .. } => (slot, done(Effect::NotFound)),
        },
        (Kind::RegisterOrGet, Phase::Start) => match slot {
            Slot::Free => (Slot::Claimed { by: me, actor: own }, Phase::Claimed),
            Slot::Bound(b) => (slot, done(Effect::Bound(b))),
            // Another caller's claim: it waits for the binding (or the claim's release).
            Slot::Claimed { .. } => return None,
        },
        (Kind::RegisterOrGet, Phase::Claimed) => match slot {
            // The bind carries the claim's token: it binds if the claim is still its own or
            // the slot is free (the claim was released meanwhile).
            Slot::Claimed { by, .. } if by == me => (Slot::Bound(own), done(Effect::Bound(own))),
            Slot::Free => (Slot::Bound(own), done(Effect::Bound(own))),
            Slot::Bound(b) if b == own => (slot, done(Effect::Bound(own))),
            Slot::Bound(_) | Slot::Claimed { .. } => (slot, done(Effect::Taken)),
        },
        (_, Phase::Claimed) => return None,
    })
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
            op(
                2,
                Call::Register(a.clone()),
                2.0,
                Some(3.0),
                Seen::Bound(a.clone())
            ),
            op(3, Call::Lookup, 4.0, Some(5.0), Seen::Bound(a.clone())),
            op(
                4,
                Call::Unregister,
                6.0,
                Some(7.0),
                Seen::Released(a.clone())
            ),
            op(5, Call::Unregister, 8.0, Some(9.0), Seen::Nothing),
            op(6, Call::Lookup, 10.0, Some(11.0), Seen::NotFound),
        ]));
    }

    #[test]
    fn a_lost_acknowledged_registration_is_a_violation_unless_its_owner_was_faulted() {
        let a = actor("x", 1);
        let history = [
            op(
                1,
                Call::Register(a.clone()),
                0.0,
                Some(1.0),
                Seen::Bound(a.clone()),
            ),
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
        assert!(check(&history, std::slice::from_ref(&faulted)).is_empty());
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
            op(
                1,
                Call::Register(a.clone()),
                0.0,
                Some(1.0),
                Seen::Bound(a.clone())
            ),
            op(
                2,
                Call::Unregister,
                2.0,
                Some(3.0),
                Seen::Released(a.clone())
            ),
            op(3, Call::Lookup, 4.0, Some(5.0), Seen::Bound(a.clone())),
        ]));
    }

    /// Operation 1 from 0 to 3 s around operation 2 from 1 to 2 s.
    fn nested(first: (Call, Seen), second: (Call, Seen)) -> [Operation; 2] {
        [
            op(1, first.0, 0.0, Some(3.0), first.1),
            op(2, second.0, 1.0, Some(2.0), second.1),
        ]
    }

    #[test]
    fn two_actors_for_one_name_are_a_violation_and_overlap_decides_the_winner() {
        let (a, b) = (actor("x", 1), actor("y", 2));
        let rog =
            |x: &Actor, saw: &Actor| (Call::RegisterOrGet(x.clone()), Seen::Bound(saw.clone()));
        let reg = |x: &Actor| (Call::Register(x.clone()), Seen::Bound(x.clone()));
        // Both `register_name_or_get` calls overlap: either may win, but both must agree.
        assert!(ok(&nested(rog(&a, &b), rog(&b, &b))));
        assert!(!ok(&nested(rog(&a, &a), rog(&b, &b))));
        assert!(!ok(&nested(reg(&a), reg(&b))));
        // The same actor again is idempotent.
        let (again, bound) = reg(&a);
        assert!(ok(&[
            op(1, again.clone(), 0.0, Some(1.0), bound.clone()),
            op(2, again, 2.0, Some(3.0), bound),
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
            op(
                1,
                Call::RegisterOrGet(a.clone()),
                0.0,
                Some(1.0),
                Seen::Failed,
            ),
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
    fn many_unanswered_writes_stay_tractable() {
        // Twenty unanswered writes over six actors, interleaved with answered lookups: the
        // search keeps interchangeable unanswered writes as counts, not as subsets, and drops
        // configurations another one dominates (without both, 2^20 subsets).
        let mut history = Vec::new();
        for k in 0..20u64 {
            let t = k as f64;
            let a = actor(&format!("x{}", k % 3), k % 2);
            let call = match k % 4 {
                0 | 1 => Call::Register(a),
                2 => Call::RegisterOrGet(a),
                _ => Call::Unregister,
            };
            history.push(op(2 * k, call, t, None, Seen::Unknown));
            history.push(op(
                2 * k + 1,
                Call::Lookup,
                t + 0.5,
                Some(t + 0.6),
                Seen::NotFound,
            ));
        }
        assert!(ok(&history));
        // And a lookup that no pending write explains is still caught among them.
        history.push(op(
            1000,
            Call::Lookup,
            50.0,
            Some(50.5),
            Seen::Bound(actor("nobody", 9)),
        ));
        assert!(!ok(&history));
    }

    #[test]
    fn unanswered_writes_for_actors_nobody_saw_collapse_by_incarnation() {
        // Forty unanswered writes, each for an actor of its own that no answer names, and
        // unanswered unregisters between them: any subset of them may have applied. Counted
        // per node incarnation they stay a handful of kinds; one kind per actor would be 2^40.
        let mut history = Vec::new();
        for k in 0..40u64 {
            let t = k as f64;
            let a = actor(&format!("x{}", k % 2), 100 + k);
            let call = if k % 2 == 0 {
                Call::Register(a)
            } else {
                Call::RegisterOrGet(a)
            };
            history.push(op(3 * k, call, t, None, Seen::Unknown));
            history.push(op(
                3 * k + 1,
                Call::Unregister,
                t + 0.1,
                None,
                Seen::Unknown,
            ));
            history.push(op(
                3 * k + 2,
                Call::Register(actor("y", 1)),
                t + 0.2,
                Some(t + 0.3),
                Seen::Taken,
            ));
        }
        assert!(ok(&history), "{:?}", check(&history, &[]));
        // An answer naming one of them is still checked against what that actor could do.
        history.push(op(
            1000,
            Call::Lookup,
            50.0,
            Some(50.5),
            Seen::Bound(actor("x0", 999)),
        ));
        assert!(!ok(&history));
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
