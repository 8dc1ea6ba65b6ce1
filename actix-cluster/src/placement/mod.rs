//! Placement strategies: which member an actor goes to, as a pure function of the member
//! table (roles, labels, capabilities, load reports), this node's name, an optional key and
//! the placer's own state (round-robin position, random source, hash ring).
//!
//! Nothing here talks to the network: [`Placer::choose`] is called with a snapshot of
//! [`ClusterSystem::members`](crate::ClusterSystem::members), and is unit- and
//! property-tested on tables built by hand.

mod record;
mod ring;

use std::collections::BTreeMap;
use std::time::Duration;

pub(crate) use record::{PlacementRecord, PolicyRecord};
pub use ring::{DEFAULT_VNODES, HashRing};

use crate::membership::{Member, MemberState};
use crate::node::{NodeId, NodeRole};

/// Where an actor goes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Placement {
    /// This node (refused on a client node, or when this node does not meet the constraint).
    #[default]
    Local,
    /// The named member.
    Node(String),
    /// The eligible members in turn, in name order.
    RoundRobin,
    /// An eligible member chosen uniformly at random.
    Random,
    /// The less loaded of two eligible members chosen at random ("power of two choices"), by
    /// their load reports: a placer never herds onto one member the way "always the least
    /// loaded" does when many place at once from the same stale reports.
    LeastLoaded,
    /// The owner of the actor's key on a consistent-hash ring over the eligible members: every
    /// node that sees the same members picks the same one, and a key moves only when its owner
    /// leaves or a joining member takes its part of the ring.
    ConsistentHash,
}

impl Placement {
    /// A short name for logs and metric labels: `local`, `node`, `round_robin`, `random`,
    /// `least_loaded` or `consistent_hash`.
    pub fn label(&self) -> &'static str {
        match self {
            Placement::Local => "local",
            Placement::Node(_) => "node",
            Placement::RoundRobin => "round_robin",
            Placement::Random => "random",
            Placement::LeastLoaded => "least_loaded",
            Placement::ConsistentHash => "consistent_hash",
        }
    }
}

/// Which members may host an actor: all that are Up and not clients, narrowed by role, labels
/// and capabilities. Usable with every [`Placement`] (Orleans' role-based and metadata
/// placement).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Constraint {
    /// Allowed roles; empty allows every member role.
    pub roles: Vec<NodeRole>,
    /// Labels a member must carry, each with this value.
    pub labels: BTreeMap<String, String>,
    /// Capabilities a member must announce (actor types it registered, see
    /// [`Member::capabilities`]).
    pub capabilities: Vec<String>,
}

impl Constraint {
    /// No constraint beyond Up and not a client.
    pub fn new() -> Self {
        Self::default()
    }

    /// Allows `role` (once any role is given, only the given ones).
    pub fn role(mut self, role: NodeRole) -> Self {
        self.roles.push(role);
        self
    }

    /// Requires label `key` with `value`.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Requires capability `name`.
    pub fn capability(mut self, name: impl Into<String>) -> Self {
        self.capabilities.push(name.into());
        self
    }

    /// Why `member` cannot host, or `None` if it can.
    pub fn refuses(&self, member: &Member) -> Option<String> {
        if member.state != MemberState::Up {
            return Some(format!("it is {:?}, not Up", member.state));
        }
        if member.role == NodeRole::Client {
            return Some("it is a client node".into());
        }
        if !self.roles.is_empty() && !self.roles.contains(&member.role) {
            return Some(format!(
                "its role {:?} is not among {:?}",
                member.role, self.roles
            ));
        }
        if let Some((k, v)) = self
            .labels
            .iter()
            .find(|(k, v)| member.labels.get(*k) != Some(*v))
        {
            return Some(format!("it lacks label {k}={v}"));
        }
        if let Some(c) = self
            .capabilities
            .iter()
            .find(|c| !member.capabilities.contains(c))
        {
            return Some(format!("it lacks capability {c}"));
        }
        None
    }
}

/// How one actor is spawned with [`ClusterSystem::spawn`](crate::ClusterSystem::spawn):
/// what is not set here comes from the actor type
/// ([`DistributedActor::placement`](crate::DistributedActor::placement),
/// [`DistributedActor::placement_constraint`](crate::DistributedActor::placement_constraint)).
///
/// ```
/// use actix_cluster::placement::{Constraint, Placement, SpawnSpec};
/// let spec = SpawnSpec::new()
///     .placement(Placement::LeastLoaded)
///     .constraint(Constraint::new().label("zone", "eu-1"))
///     .name("carts/42");
/// assert_eq!(spec.key_bytes(), Some(&b"carts/42"[..]));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SpawnSpec {
    /// The strategy; `None` takes the actor type's.
    pub placement: Option<Placement>,
    /// Which members may host; `None` takes the actor type's.
    pub constraint: Option<Constraint>,
    /// A cluster-wide name: the spawn is then a single activation (one actor for the name
    /// cluster-wide, whatever the number of concurrent spawners), and the address returned
    /// follows the name.
    pub name: Option<String>,
    /// The key [`Placement::ConsistentHash`] places by; `None` takes the name.
    pub key: Option<String>,
    /// What happens when the actor stops by itself or its node fails; anything but
    /// [`RestartPolicy::Never`] needs a [name](Self::name).
    pub restart: RestartPolicy,
}

impl SpawnSpec {
    /// Everything from the actor type; no name.
    pub fn new() -> Self {
        Self::default()
    }

    /// Places by `placement` instead of the actor type's strategy.
    pub fn placement(mut self, placement: Placement) -> Self {
        self.placement = Some(placement);
        self
    }

    /// Narrows the hosts by `constraint` instead of the actor type's.
    pub fn constraint(mut self, constraint: Constraint) -> Self {
        self.constraint = Some(constraint);
        self
    }

    /// Gives the actor the cluster-wide name `name` (single activation).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Places by `key` on a consistent-hash ring (instead of the name).
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Restarts the actor by `policy` (the spawn needs a name).
    pub fn restart(mut self, policy: RestartPolicy) -> Self {
        self.restart = policy;
        self
    }

    /// The bytes [`Placement::ConsistentHash`] hashes: the key, else the name.
    pub fn key_bytes(&self) -> Option<&[u8]> {
        self.key
            .as_deref()
            .or(self.name.as_deref())
            .map(str::as_bytes)
    }
}

/// What the cluster does when a spawned actor stops without its name being unregistered
/// (it stopped itself, or its node went Down or left): Ray's `max_restarts`, Akka's
/// remember-entities. The registry leader decides each restart, so exactly one happens per
/// failure; see the user guide's failure table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum RestartPolicy {
    /// Not restarted: the name is released, as for an actor spawned without a policy.
    #[default]
    Never,
    /// Restarted up to `max_restarts` times within any window of `within`; the n-th restart
    /// in a row waits `backoff × 2^(n-1)` (at most 30 s) after the failure. One more failure
    /// in the window ends the actor for good: the name then answers
    /// [`RegistryError::RestartsExhausted`](crate::RegistryError::RestartsExhausted).
    OnFailure {
        /// Restarts allowed within `within`.
        max_restarts: u32,
        /// The window restarts are counted in.
        within: Duration,
        /// Wait before the first restart of a run (doubled for each further one).
        backoff: Duration,
    },
    /// Restarted every time, after [`ALWAYS_BACKOFF`].
    Always,
}

/// The wait before an [`RestartPolicy::Always`] actor is started again.
pub const ALWAYS_BACKOFF: Duration = Duration::from_millis(100);

/// The longest wait between a failure and its restart.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

impl RestartPolicy {
    /// `OnFailure` with at most `max_restarts` in `within` and a `backoff` of 100 ms.
    pub fn on_failure(max_restarts: u32, within: Duration) -> Self {
        RestartPolicy::OnFailure {
            max_restarts,
            within,
            backoff: Duration::from_millis(100),
        }
    }

    /// Whether a failure at `now_ms` may be restarted, given the times (ms) of the earlier
    /// restarts; and if so, after how long. `None`: the policy is exhausted (or `Never`).
    pub fn next_restart(&self, earlier_ms: &[u64], now_ms: u64) -> Option<Duration> {
        match *self {
            RestartPolicy::Never => None,
            RestartPolicy::Always => Some(ALWAYS_BACKOFF),
            RestartPolicy::OnFailure {
                max_restarts,
                within,
                backoff,
            } => {
                let window = u64::try_from(within.as_millis()).unwrap_or(u64::MAX);
                let recent = earlier_ms
                    .iter()
                    .filter(|&&t| now_ms.saturating_sub(t) < window)
                    .count();
                if recent >= max_restarts as usize {
                    return None;
                }
                let doublings = u32::try_from(recent).unwrap_or(u32::MAX).min(16);
                Some(backoff.saturating_mul(1 << doublings).min(MAX_BACKOFF))
            }
        }
    }
}

/// Why no member could be chosen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlacementError {
    /// No member is Up, not a client and within the constraint.
    #[error(
        "no member can host the actor ({members} members known, none Up and within the constraint)"
    )]
    NoEligibleMember {
        /// Members in the table.
        members: usize,
    },
    /// The node that [`Placement::Local`] or [`Placement::Node`] names cannot host it.
    #[error("node {node} cannot host the actor: {reason}")]
    NotEligible {
        /// The node.
        node: String,
        /// Why.
        reason: String,
    },
    /// [`Placement::ConsistentHash`] needs the actor's key.
    #[error("consistent-hash placement needs a key")]
    KeyRequired,
}

/// What one decision is made from.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// The member table (this node included), e.g. from `ClusterSystem::members`.
    pub members: &'a [Member],
    /// This node's name.
    pub me: &'a str,
    /// Which members may host.
    pub constraint: &'a Constraint,
    /// The actor's key (its cluster-wide name or id): required by
    /// [`Placement::ConsistentHash`], ignored by the others.
    pub key: Option<&'a [u8]>,
}

/// Makes placement decisions; keeps the round-robin position, a random source and the hash
/// ring of the last member set it saw.
#[derive(Debug, Clone)]
pub struct Placer {
    next: u64,
    rng: u64,
    vnodes: usize,
    ring: Option<HashRing>,
}

impl Placer {
    /// A placer whose random choices start from `seed`, with [`DEFAULT_VNODES`] ring points
    /// per member.
    pub fn new(seed: u64) -> Self {
        Self::with_vnodes(seed, DEFAULT_VNODES)
    }

    /// A placer with `vnodes` ring points per member (at least 1).
    pub fn with_vnodes(seed: u64, vnodes: usize) -> Self {
        Self {
            next: 0,
            rng: seed,
            vnodes: vnodes.max(1),
            ring: None,
        }
    }

    /// A number below `n` (`n > 0`), from SplitMix64.
    fn below(&mut self, n: usize) -> usize {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        // Multiply-shift: unbiased enough for placement, and no division.
        ((u128::from(z) * n as u128) >> 64) as usize
    }

    /// The member `strategy` picks for one actor.
    pub fn choose(
        &mut self,
        strategy: &Placement,
        input: &Input<'_>,
    ) -> Result<NodeId, PlacementError> {
        let named = |name: &str| -> Result<NodeId, PlacementError> {
            let member = input
                .members
                .iter()
                .find(|m| m.id.name() == name)
                .ok_or_else(|| PlacementError::NotEligible {
                    node: name.to_owned(),
                    reason: "it is not a member".into(),
                })?;
            match input.constraint.refuses(member) {
                Some(reason) => Err(PlacementError::NotEligible {
                    node: name.to_owned(),
                    reason,
                }),
                None => Ok(member.id.clone()),
            }
        };
        let chosen = match strategy {
            Placement::Local => return named(input.me),
            Placement::Node(name) => return named(name),
            Placement::RoundRobin => {
                let eligible = eligible(input)?;
                let i = (self.next % eligible.len() as u64) as usize;
                self.next = self.next.wrapping_add(1);
                eligible[i]
            }
            Placement::Random => {
                let eligible = eligible(input)?;
                eligible[self.below(eligible.len())]
            }
            Placement::LeastLoaded => {
                let eligible = eligible(input)?;
                let first = self.below(eligible.len());
                if eligible.len() == 1 {
                    eligible[first]
                } else {
                    // A second, different member.
                    let second = (first + 1 + self.below(eligible.len() - 1)) % eligible.len();
                    let (a, b) = (eligible[first], eligible[second]);
                    if load_score(b) < load_score(a) { b } else { a }
                }
            }
            Placement::ConsistentHash => {
                let key = input.key.ok_or(PlacementError::KeyRequired)?;
                let eligible = eligible(input)?;
                let fresh = self.ring.as_ref().is_some_and(|r| {
                    r.members()
                        .iter()
                        .map(String::as_str)
                        .eq(eligible.iter().map(|m| m.id.name()))
                });
                if !fresh {
                    self.ring = Some(HashRing::new(
                        eligible.iter().map(|m| m.id.name()),
                        self.vnodes,
                    ));
                }
                let owner = self.ring.as_ref().and_then(|r| r.owner(key));
                owner
                    .and_then(|o| eligible.iter().copied().find(|m| m.id.name() == o))
                    .ok_or(PlacementError::NoEligibleMember {
                        members: input.members.len(),
                    })?
            }
        };
        Ok(chosen.id.clone())
    }
}

/// The members that may host, in name order; an error when there is none.
fn eligible<'a>(input: &Input<'a>) -> Result<Vec<&'a Member>, PlacementError> {
    let mut eligible: Vec<&Member> = input
        .members
        .iter()
        .filter(|m| input.constraint.refuses(m).is_none())
        .collect();
    if eligible.is_empty() {
        return Err(PlacementError::NoEligibleMember {
            members: input.members.len(),
        });
    }
    eligible.sort_by(|a, b| a.id.name().cmp(b.id.name()));
    Ok(eligible)
}

/// A member's load for [`Placement::LeastLoaded`]: hosted actors plus requests waiting in
/// them. A member that has not reported yet counts as empty (it has just joined).
fn load_score(m: &Member) -> u64 {
    m.load
        .as_ref()
        .map_or(0, |l| l.actors.saturating_add(l.mailbox_backlog))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;
    use crate::membership::LoadReport;

    fn member(name: &str, role: NodeRole, state: MemberState, actors: Option<u64>) -> Member {
        Member {
            id: NodeId::new(name, 1),
            addr: "127.0.0.1:1".parse().expect("addr"),
            role,
            labels: BTreeMap::new(),
            capabilities: vec!["app.worker".into()],
            state,
            phi: 0.0,
            load: actors.map(|a| LoadReport::new(a, 0, None)),
            connected: true,
            queued: 0,
        }
    }

    fn workers(n: usize) -> Vec<Member> {
        (0..n)
            .map(|i| {
                member(
                    &format!("w{i:02}"),
                    NodeRole::Worker,
                    MemberState::Up,
                    Some(0),
                )
            })
            .collect()
    }

    fn choose(
        placer: &mut Placer,
        strategy: &Placement,
        members: &[Member],
        key: Option<&[u8]>,
    ) -> Result<String, PlacementError> {
        let constraint = Constraint::new();
        placer
            .choose(
                strategy,
                &Input {
                    members,
                    me: "w00",
                    constraint: &constraint,
                    key,
                },
            )
            .map(|id| id.name().to_owned())
    }

    #[test]
    fn local_and_node_name_one_member_and_say_why_it_cannot_host() {
        let mut members = workers(3);
        members.push(member("c", NodeRole::Client, MemberState::Up, None));
        members.push(member("d", NodeRole::Worker, MemberState::Down, None));
        let mut p = Placer::new(1);
        assert_eq!(
            choose(&mut p, &Placement::Local, &members, None),
            Ok("w00".into())
        );
        assert_eq!(
            choose(&mut p, &Placement::Node("w02".into()), &members, None),
            Ok("w02".into())
        );
        for (node, why) in [("c", "client"), ("d", "Down"), ("x", "not a member")] {
            let e = choose(&mut p, &Placement::Node(node.into()), &members, None)
                .expect_err("not a host");
            assert!(
                matches!(&e, PlacementError::NotEligible { reason, .. } if reason.contains(why)),
                "{e}"
            );
        }
    }

    #[test]
    fn round_robin_visits_every_eligible_member_once_per_round_in_name_order() {
        let mut members = workers(4);
        members.push(member("c", NodeRole::Client, MemberState::Up, None));
        let mut p = Placer::new(7);
        let round: Vec<String> = (0..8)
            .map(|_| choose(&mut p, &Placement::RoundRobin, &members, None).unwrap_or_default())
            .collect();
        assert_eq!(
            round,
            ["w00", "w01", "w02", "w03", "w00", "w01", "w02", "w03"]
        );
    }

    #[test]
    fn a_constraint_narrows_every_strategy() {
        let mut members = workers(6);
        for m in members.iter_mut().take(3) {
            m.labels.insert("zone".into(), "eu".into());
        }
        members[1].role = NodeRole::Master;
        let constraint = Constraint::new().label("zone", "eu").role(NodeRole::Worker);
        let mut p = Placer::new(3);
        for strategy in [
            Placement::RoundRobin,
            Placement::Random,
            Placement::LeastLoaded,
            Placement::ConsistentHash,
        ] {
            for k in 0..50u32 {
                let key = k.to_le_bytes();
                let input = Input {
                    members: &members,
                    me: "w00",
                    constraint: &constraint,
                    key: Some(&key),
                };
                let chosen = p.choose(&strategy, &input).map(|id| id.name().to_owned());
                assert!(
                    matches!(chosen.as_deref(), Ok("w00" | "w02")),
                    "{strategy:?}: {chosen:?}"
                );
            }
        }
        let nobody = Constraint::new().capability("app.missing");
        let input = Input {
            members: &members,
            me: "w00",
            constraint: &nobody,
            key: None,
        };
        assert_eq!(
            p.choose(&Placement::Random, &input),
            Err(PlacementError::NoEligibleMember { members: 6 })
        );
        assert_eq!(
            choose(&mut p, &Placement::ConsistentHash, &members, None),
            Err(PlacementError::KeyRequired)
        );
    }

    #[test]
    fn least_loaded_spreads_ten_thousand_actors_over_ten_members_within_a_quarter_of_the_mean() {
        // Each placement adds one actor to the chosen member's report, as the next load report
        // would show.
        let mut members = workers(10);
        let mut p = Placer::new(42);
        for _ in 0..10_000 {
            let chosen =
                choose(&mut p, &Placement::LeastLoaded, &members, None).unwrap_or_default();
            let m = members.iter_mut().find(|m| m.id.name() == chosen);
            if let Some(load) = m.and_then(|m| m.load.as_mut()) {
                load.actors += 1;
            }
        }
        let max = members
            .iter()
            .filter_map(|m| m.load.as_ref())
            .map(|l| l.actors)
            .max()
            .unwrap_or(0);
        assert!(max as f64 / 1_000.0 <= 1.25, "max {max} of a mean of 1,000");
    }

    #[test]
    fn least_loaded_prefers_the_lighter_of_the_two_it_samples() {
        let mut members = workers(2);
        members[0].load = Some(LoadReport::new(50, 10, None));
        let mut p = Placer::new(9);
        for _ in 0..20 {
            assert_eq!(
                choose(&mut p, &Placement::LeastLoaded, &members, None),
                Ok("w01".into())
            );
        }
    }

    #[test]
    fn every_node_computes_the_same_consistent_hash_owner() {
        let members = workers(7);
        let mut reversed = members.clone();
        reversed.reverse();
        let (mut a, mut b) = (Placer::new(1), Placer::new(2));
        for k in 0..200u32 {
            let key = format!("player/{k}");
            assert_eq!(
                choose(
                    &mut a,
                    &Placement::ConsistentHash,
                    &members,
                    Some(key.as_bytes())
                ),
                choose(
                    &mut b,
                    &Placement::ConsistentHash,
                    &reversed,
                    Some(key.as_bytes())
                ),
            );
        }
    }

    proptest! {
        #[test]
        fn no_strategy_ever_picks_a_member_that_cannot_host(
            states in proptest::collection::vec(0u8..4, 1..12),
            seed in any::<u64>(),
            key in any::<u64>(),
        ) {
            let members: Vec<Member> = states
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    let (role, state) = match s {
                        0 => (NodeRole::Worker, MemberState::Up),
                        1 => (NodeRole::Client, MemberState::Up),
                        2 => (NodeRole::Worker, MemberState::Suspect),
                        _ => (NodeRole::Master, MemberState::Up),
                    };
                    member(&format!("n{i}"), role, state, Some(i as u64))
                })
                .collect();
            let mut p = Placer::new(seed);
            let key = key.to_le_bytes();
            for strategy in [Placement::RoundRobin, Placement::Random, Placement::LeastLoaded, Placement::ConsistentHash] {
                let constraint = Constraint::new();
                let input = Input { members: &members, me: "n0", constraint: &constraint, key: Some(&key) };
                match p.choose(&strategy, &input) {
                    Ok(id) => {
                        let m = members.iter().find(|m| m.id == id);
                        prop_assert!(m.is_some_and(|m| constraint.refuses(m).is_none()), "{:?} chose {}", strategy, id);
                    }
                    Err(e) => prop_assert!(
                        members.iter().all(|m| constraint.refuses(m).is_some()),
                        "{:?} refused although a member can host: {}", strategy, e
                    ),
                }
            }
        }
    }
}
