//! Rebalancing: the registry leader moves supervised consistent-hash actors whose owner on the
//! ring changed (a node joined) to that owner, by live migration, a few at a time.
//!
//! The rate is bounded like Akka's shard rebalancing: at most [`MAX_SIMULTANEOUS`] moves in
//! flight, new ones started only in the leader's rounds (every `reconcile_interval`) and only
//! while every member is Up (nothing is moved while a node is joining, suspect or leaving:
//! the ring is about to change again, and a restart, not a move, handles a failed node). A
//! name whose move failed is left alone for [`RETRY_AFTER`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::raft::RaftHandle;
use super::service::Registry;
use crate::membership::{Member, MemberState};
use crate::node::{NodeId, NodeRole};
use crate::placement::Placement;

/// Moves in flight at once (Akka's `max-simultaneous-rebalance` is 3).
pub(crate) const MAX_SIMULTANEOUS: usize = 3;

/// How long a name whose move failed is not tried again.
pub(crate) const RETRY_AFTER: Duration = Duration::from_secs(30);

/// The leader's rebalancing state (not replicated).
#[derive(Default)]
pub(crate) struct Rebalancer {
    in_flight: AtomicUsize,
    failed: Mutex<HashMap<String, Instant>>,
}

/// Counts one move in flight until dropped.
struct Flight(Arc<Registry>);

impl Drop for Flight {
    fn drop(&mut self) {
        self.0.rebalancer.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Registry {
    /// The leader's round: starts moves of names whose consistent-hash owner is not where
    /// they run, up to the bound (see the module).
    pub(super) fn rebalance(self: &Arc<Self>, raft: &RaftHandle, members: &[Member]) {
        let settled = members
            .iter()
            .all(|m| m.role == NodeRole::Client || m.state == MemberState::Up);
        let room =
            MAX_SIMULTANEOUS.saturating_sub(self.rebalancer.in_flight.load(Ordering::Relaxed));
        if !settled || room == 0 {
            return;
        }
        let candidates: Vec<(String, NodeId, Arc<super::state::Supervision>)> =
            self.replica.read(|n| {
                n.supervised_bound()
                    .filter(|(_, s)| s.rebalance && !s.exhausted)
                    .map(|(e, s)| (e.name.clone(), e.node.clone(), Arc::clone(s)))
                    .collect()
            });
        let mut failed = self
            .rebalancer
            .failed
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        failed.retain(|_, at| at.elapsed() < RETRY_AFTER);
        let mut started = 0;
        for (name, node, supervision) in candidates {
            if started == room {
                break;
            }
            if failed.contains_key(&name) {
                continue;
            }
            let Ok((strategy, constraint, key)) = super::supervise::restart_placement(&supervision)
            else {
                continue;
            };
            if strategy != Placement::ConsistentHash {
                continue;
            }
            let Ok(owner) = self.choose_restart(members, &name, &strategy, &constraint, key) else {
                continue;
            };
            if owner == node {
                continue;
            }
            started += 1;
            self.rebalancer.in_flight.fetch_add(1, Ordering::Relaxed);
            let flight = Flight(Arc::clone(self));
            let registry = Arc::clone(self);
            raft.spawn(async move {
                let _flight = flight;
                match registry.migrate(&name, owner.name()).await {
                    Ok(e) => tracing::info!(name, to = %e.node, "rebalanced to its owner"),
                    Err(e) => {
                        tracing::info!(name, to = %owner, "rebalancing failed: {e}");
                        registry
                            .rebalancer
                            .failed
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .insert(name, Instant::now());
                    }
                }
            });
        }
    }
}
