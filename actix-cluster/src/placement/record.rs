//! Placement strategies, constraints and restart policies as the registry replicates them with
//! a supervised actor. Enums travel as wire numbers: a number this build does not know is a
//! decode error, never a guess.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Constraint, Placement, RestartPolicy};
use crate::node::NodeRole;

/// A [`Placement`], a [`Constraint`] and the key, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PlacementRecord {
    /// 0 `Local`, 1 `Node`, 2 `RoundRobin`, 3 `Random`, 4 `LeastLoaded`, 5 `ConsistentHash`.
    strategy: u8,
    /// The node of `Node` (and of `Local`: the spawning node).
    node: String,
    roles: Vec<u8>,
    labels: BTreeMap<String, String>,
    capabilities: Vec<String>,
    key: Option<Vec<u8>>,
}

impl PlacementRecord {
    /// `Local` is stored as `Node(me)`: where the spawn was made.
    pub(crate) fn new(
        strategy: &Placement,
        constraint: &Constraint,
        key: Option<&[u8]>,
        me: &str,
    ) -> Self {
        let (strategy, node) = match strategy {
            Placement::Local => (0, me.to_owned()),
            Placement::Node(n) => (1, n.clone()),
            Placement::RoundRobin => (2, String::new()),
            Placement::Random => (3, String::new()),
            Placement::LeastLoaded => (4, String::new()),
            Placement::ConsistentHash => (5, String::new()),
        };
        Self {
            strategy,
            node,
            roles: constraint.roles.iter().map(|r| r.to_wire()).collect(),
            labels: constraint.labels.clone(),
            capabilities: constraint.capabilities.clone(),
            key: key.map(<[u8]>::to_vec),
        }
    }

    /// The strategy, constraint and key; an error names a number this build does not know.
    pub(crate) fn decode(&self) -> Result<(Placement, Constraint, Option<&[u8]>), String> {
        let strategy = match self.strategy {
            0 | 1 => Placement::Node(self.node.clone()),
            2 => Placement::RoundRobin,
            3 => Placement::Random,
            4 => Placement::LeastLoaded,
            5 => Placement::ConsistentHash,
            n => return Err(format!("unknown placement strategy {n}")),
        };
        let mut constraint = Constraint::new();
        for &r in &self.roles {
            let role = NodeRole::from_wire(r).ok_or_else(|| format!("unknown node role {r}"))?;
            constraint = constraint.role(role);
        }
        constraint.labels = self.labels.clone();
        constraint.capabilities = self.capabilities.clone();
        Ok((strategy, constraint, self.key.as_deref()))
    }
}

/// A [`RestartPolicy`], as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PolicyRecord {
    /// 0 `Never`, 1 `OnFailure`, 2 `Always`.
    kind: u8,
    max_restarts: u32,
    within_ms: u64,
    backoff_ms: u64,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl From<RestartPolicy> for PolicyRecord {
    fn from(p: RestartPolicy) -> Self {
        let (kind, max_restarts, within_ms, backoff_ms) = match p {
            RestartPolicy::Never => (0, 0, 0, 0),
            RestartPolicy::OnFailure {
                max_restarts,
                within,
                backoff,
            } => (1, max_restarts, ms(within), ms(backoff)),
            RestartPolicy::Always => (2, 0, 0, 0),
        };
        Self {
            kind,
            max_restarts,
            within_ms,
            backoff_ms,
        }
    }
}

impl PolicyRecord {
    /// The policy; an unknown kind (from a newer node) restarts nothing.
    pub(crate) fn policy(&self) -> RestartPolicy {
        match self.kind {
            1 => RestartPolicy::OnFailure {
                max_restarts: self.max_restarts,
                within: Duration::from_millis(self.within_ms),
                backoff: Duration::from_millis(self.backoff_ms),
            },
            2 => RestartPolicy::Always,
            _ => RestartPolicy::Never,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_local_is_pinned_to_the_spawning_node() {
        let c = Constraint::new()
            .role(NodeRole::Worker)
            .label("zone", "a")
            .capability("t");
        for p in [
            Placement::Node("n2".into()),
            Placement::RoundRobin,
            Placement::Random,
            Placement::LeastLoaded,
            Placement::ConsistentHash,
        ] {
            let r = PlacementRecord::new(&p, &c, Some(b"k"), "me");
            let (back, cons, key) = r.decode().expect("decodes");
            assert_eq!((back, cons, key), (p, c.clone(), Some(&b"k"[..])));
        }
        let local = PlacementRecord::new(&Placement::Local, &c, None, "me");
        assert_eq!(
            local.decode().expect("decodes").0,
            Placement::Node("me".into())
        );
        for p in [
            RestartPolicy::Never,
            RestartPolicy::Always,
            RestartPolicy::on_failure(3, Duration::from_secs(60)),
        ] {
            assert_eq!(PolicyRecord::from(p).policy(), p);
        }
    }
}
