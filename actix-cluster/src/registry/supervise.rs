//! Restarts of supervised names: the leader's decisions and the target node's activations.
//!
//! **Deciding (leader only).** Each background round, the leader looks at the supervised names
//! its replica holds. One that is neither bound nor claimed (its actor stopped, or its node
//! went Down or left, and the binding was released) is restarted once its policy's backoff
//! has passed: the leader chooses a node (the last one if it is still Up and eligible,
//! otherwise by the name's strategy among the survivors) and proposes
//! [`Command::Restart`], a claim of the name for that node. The state machine accepts one
//! restart per release (a second decision, by this leader or a deposed one, finds the name
//! claimed), so exactly one node decides each restart. An exhausted policy is recorded with
//! [`Command::Exhaust`].
//!
//! **Activating (the chosen node).** The leader then asks the chosen node to activate the
//! name ([`RegistryRequest::Activate`]): that node starts the actor from the supervised state
//! and completes the claim with `Register`. An activation is idempotent per claim token (a
//! repeated request finds the actor already started), so the leader, or a later leader, may
//! ask again when the claim is not completed in time. A claim whose node goes Down is released
//! with the node's names, and the name is restarted again elsewhere.
//!
//! **Fencing (every member).** At most one activation per name also needs the old one gone
//! before the new one starts. A member stops the local actor of a supervised name as soon as
//! the replica no longer binds the name to it (the name was released with its node, or moved),
//! and stops all of them while it does not see a majority of the registry's voters Up
//! (Suspect ones do not count: it is on the minority side of a partition, where the majority
//! will restart them, or cut off). The majority releases a node's names only once it is Down,
//! a suspicion timeout after it was Suspect, and the leader restarts a name whose node is not
//! alive only [`restart_fence`](super::RegistryConfig::restart_fence) after that: the
//! minority's suspicion and the fence cover the difference between the two sides' detection.
//! A transient suspicion of a majority stops this node's supervised actors; the leader then
//! restarts them here (the stop is reported like any other).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use rand::RngExt;
use tokio::sync::oneshot;

use super::raft::RaftHandle;
use super::service::{Failure, Registry, RegistryReply, RegistryRequest};
use super::state::{Command, Location, Outcome, Supervision};
use crate::membership::{Member, MemberState};
use crate::metrics;
use crate::node::NodeId;
use crate::placement::{Constraint, Input, Placement, Placer};
use crate::remote::RemoteError;

/// The leader's and the target's local bookkeeping (not replicated).
pub(crate) struct Supervisor {
    /// Leader: when each supervised name was first seen awaiting a restart (its backoff runs
    /// from there), and when an activation was last requested for a claim.
    seen: Mutex<HashMap<String, Seen>>,
    /// Leader: placement decisions for restarts.
    placer: Mutex<Placer>,
    /// Target: activations by name: the claim token and, once started, the actor id.
    activations: Mutex<HashMap<String, (u64, Option<u64>)>>,
    /// Every member: the local actors bound to supervised names, with the log index of their
    /// binding, as last seen in the replica or told by the spawner or an activation.
    hosted: Mutex<HashMap<String, (u64, u64)>>,
    /// Node incarnations whose process is known to be gone (their port refused us): their
    /// actors cannot still run. Bounded: the oldest are forgotten past [`MAX_GONE`].
    gone: Mutex<std::collections::VecDeque<NodeId>>,
}

/// Incarnations remembered as gone.
const MAX_GONE: usize = 1024;

/// The binding version of an activation whose binding has not committed yet.
const PENDING: u64 = u64::MAX;

#[derive(Clone, Copy)]
enum Seen {
    /// Awaiting a restart since then.
    Released(Instant),
    /// Activation of claim `token` last requested then.
    Asked { token: u64, at: Instant },
}

impl Default for Supervisor {
    fn default() -> Self {
        Self {
            seen: Mutex::new(HashMap::new()),
            placer: Mutex::new(Placer::new(rand::random())),
            activations: Mutex::new(HashMap::new()),
            hosted: Mutex::new(HashMap::new()),
            gone: Mutex::new(std::collections::VecDeque::new()),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(super) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Registry {
    /// The leader's round: restarts supervised names awaiting it, and asks again for
    /// activations that were not completed in time.
    pub(super) async fn supervise(self: &Arc<Self>, raft: &RaftHandle, members: &[Member]) {
        // A leader cut off from its quorum decides nothing (each write would wait out the
        // request timeout); the majority's leader does.
        let states: Vec<_> = members.iter().map(|m| (m.id.clone(), m.state)).collect();
        if raft.quorum_visible(&states, self.ctx_me().name()) == Some(false) {
            return;
        }
        let (awaiting, restarting) = self.replica.read(|n| {
            let awaiting: Vec<(String, Arc<Supervision>)> = n
                .awaiting_restart()
                .map(|(k, s)| (k.clone(), Arc::clone(s)))
                .collect();
            let restarting: Vec<(String, NodeId, u64, Arc<Supervision>)> = n
                .restarting()
                .map(|(k, node, token, s)| (k.clone(), node.clone(), token, Arc::clone(s)))
                .collect();
            (awaiting, restarting)
        });
        {
            // Forget names that are bound again (or no longer supervised).
            let current: std::collections::HashSet<&str> = awaiting
                .iter()
                .map(|(n, _)| n.as_str())
                .chain(restarting.iter().map(|(n, ..)| n.as_str()))
                .collect();
            lock(&self.supervisor.seen).retain(|name, _| current.contains(name.as_str()));
        }
        {
            // Every name found awaiting in this round waits from now, not from when the round
            // gets to it (a round may wait for the first one's backoff).
            let now = Instant::now();
            let mut seen = lock(&self.supervisor.seen);
            for (name, _) in &awaiting {
                if !matches!(seen.get(name), Some(Seen::Released(_))) {
                    seen.insert(name.clone(), Seen::Released(now));
                }
            }
        }
        // The load reports do not count this round's restarts yet: count them here, so that
        // the restarts of one failed node spread instead of all going to the lightest member.
        let mut view = members.to_vec();
        for (name, supervision) in awaiting {
            if let Some(target) = self.restart(raft, &view, &name, &supervision).await
                && let Some(m) = view.iter_mut().find(|m| m.id == target)
            {
                let mut load = m.load.unwrap_or_default();
                load.actors = load.actors.saturating_add(1);
                m.load = Some(load);
            }
        }
        // An activation not completed within twice the request timeout is asked for again
        // (the request or its target's write may have been lost with a leader).
        let again = self.config.request_timeout * 2;
        for (name, node, token, supervision) in restarting {
            let up = members
                .iter()
                .any(|m| m.id == node && m.state == MemberState::Up);
            let due = {
                let mut seen = lock(&self.supervisor.seen);
                match seen.get(&name) {
                    Some(Seen::Asked { token: t, at }) if *t == token && at.elapsed() < again => {
                        false
                    }
                    _ => {
                        seen.insert(
                            name.clone(),
                            Seen::Asked {
                                token,
                                at: Instant::now(),
                            },
                        );
                        true
                    }
                }
            };
            if up && due {
                self.ask_activation(node, name, token, supervision);
            }
        }
    }

    /// Every member's round: learns which local actors hold supervised names, and stops those
    /// that lost their name (once the replica has caught up with their binding: a replica
    /// that lags has not seen it yet), or all of them while this node does not see a quorum
    /// of voters Up.
    pub(super) fn fence(&self, quorum_lost: bool) {
        let me = self.ctx_me().clone();
        let (applied, bound_here) = self.replica.read(|n| {
            let bound: HashMap<String, (u64, u64)> = n
                .bound_to(&me)
                .filter(|e| n.supervision(&e.name).is_some())
                .map(|e| (e.name.clone(), (e.actor_id, e.version)))
                .collect();
            (self.replica.applied(), bound)
        });
        let mut hosted = lock(&self.supervisor.hosted);
        for (name, &(id, version)) in &bound_here {
            match hosted.get(name).copied() {
                // A pending binding of this very actor has committed (its holder may not have
                // been told): from now on the name moving away fences it.
                Some((held, PENDING)) if held == id => {
                    hosted.insert(name.clone(), (id, version));
                }
                // What this node already knows is as new (a lagging replica, an activation).
                Some((_, known)) if known >= version => {}
                Some((old, _)) => {
                    // A newer activation of a name this node hosted an older one of
                    // (restarted here): the older one must not live on unnoticed.
                    hosted.insert(name.clone(), (id, version));
                    if old != id && self.stop_local(old) {
                        tracing::warn!(name, actor = old, "stopped a superseded supervised actor");
                    }
                }
                None => {
                    hosted.insert(name.clone(), (id, version));
                }
            }
        }
        hosted.retain(|name, (id, version)| {
            let current = applied < *version || bound_here.get(name).map(|b| b.0) == Some(*id);
            let keep = !quorum_lost && current;
            if !keep && self.stop_local(*id) {
                let why = if quorum_lost {
                    "this node sees no quorum of registry voters, or is leaving"
                } else {
                    "the name no longer points at it"
                };
                tracing::warn!(name, actor = *id, "stopped a supervised actor: {why}");
            }
            keep
        });
    }

    /// Records that local actor `id` holds supervised `name` since log index `version` (told
    /// by the spawner, or by this node's own activation), so that fencing covers it before
    /// this node's replica has the binding.
    pub(crate) fn note_hosted(&self, name: &str, id: u64, version: u64) {
        let old = lock(&self.supervisor.hosted).insert(name.to_owned(), (id, version));
        if let Some((old, old_version)) = old
            && old != id
            && old_version < version
            && self.stop_local(old)
        {
            tracing::warn!(name, actor = old, "stopped a superseded supervised actor");
        }
    }

    /// Whether incarnation `node`'s process is known to be gone.
    pub(super) fn is_gone(&self, node: &NodeId) -> bool {
        lock(&self.supervisor.gone).contains(node)
    }

    /// Records that incarnation `node`'s process is gone (see [`Supervisor`]).
    pub(crate) fn note_gone(&self, node: &NodeId) {
        let mut gone = lock(&self.supervisor.gone);
        if !gone.contains(node) {
            if gone.len() >= MAX_GONE {
                gone.pop_front();
            }
            gone.push_back(node.clone());
        }
    }

    /// Stops every local actor of a supervised name (before this node leaves or shuts down:
    /// the leader restarts them elsewhere).
    pub(crate) fn stop_supervised(&self) {
        if self.raft_handle().is_some() {
            self.fence(true);
        }
    }

    /// One supervised name awaiting a restart: wait out its backoff, then decide. Returns the
    /// node it was restarted on, if it was.
    async fn restart(
        self: &Arc<Self>,
        raft: &RaftHandle,
        members: &[Member],
        name: &str,
        supervision: &Supervision,
    ) -> Option<NodeId> {
        let since = {
            let mut seen = lock(&self.supervisor.seen);
            match seen.get(name) {
                Some(Seen::Released(at)) => *at,
                _ => {
                    let now = Instant::now();
                    seen.insert(name.to_owned(), Seen::Released(now));
                    now
                }
            }
        };
        let now_ms = unix_ms();
        let policy = supervision.policy.policy();
        let Some(backoff) = policy.next_restart(&supervision.restarts, now_ms) else {
            let cmd = Command::Exhaust {
                name: name.to_owned(),
            };
            match self.leader_write(raft, cmd).await {
                Ok(_) => {
                    metrics::actor_restart("exhausted");
                    tracing::warn!(
                        name,
                        restarts = supervision.restarts.len(),
                        ?policy,
                        "restart policy exhausted; the name stays released"
                    );
                }
                Err(e) => tracing::debug!(name, "recording an exhausted policy: {e}"),
            }
            return None;
        };
        let (strategy, constraint, key) = match restart_placement(supervision) {
            Ok(p) => p,
            Err(why) => {
                tracing::debug!(name, "cannot place a restart: {why}");
                return None;
            }
        };
        // Back on its last node while that incarnation is alive and eligible.
        let stay = supervision.last_node.as_ref().and_then(|last| {
            members
                .iter()
                .find(|m| &m.id == last && constraint.refuses(m).is_none())
                .map(|m| m.id.clone())
        });
        // A node that may still run the old activation must have stopped it first (see the
        // module): wait out the lease, unless the old activation's node is known gone, or it
        // is alive and the new one goes there (its activation stops the old one first).
        // A node that left stopped its supervised actors before it said so.
        let last_gone = supervision.last_node.as_ref().is_some_and(|l| {
            lock(&self.supervisor.gone).contains(l)
                || members
                    .iter()
                    .any(|m| &m.id == l && m.state == MemberState::Left)
        });
        let wait = if last_gone || stay.is_some() {
            backoff
        } else {
            backoff.max(self.config.restart_fence + self.config.reconcile_interval * 2)
        };
        let left = wait.saturating_sub(since.elapsed());
        if left > self.config.reconcile_interval {
            return None;
        }
        // Due within this round: wait here rather than a whole round more (the names of one
        // failed node are all due at once, so this waits once for all of them).
        tokio::time::sleep(left).await;
        // Only now the placer (its round-robin position moves with each decision).
        let target = match stay {
            Some(t) => t,
            None => match self.choose_restart(members, name, &strategy, &constraint, key) {
                Ok(t) => t,
                Err(why) => {
                    tracing::debug!(name, "no node to restart on yet: {why}");
                    return None;
                }
            },
        };
        let token = rand::rng().random::<u64>() | 1;
        let cmd = Command::Restart {
            name: name.to_owned(),
            node: target.clone(),
            token,
            at_ms: now_ms,
        };
        match self.leader_write(raft, cmd).await {
            Ok(Outcome::Claimed { .. }) => {
                metrics::actor_restart("restarted");
                tracing::info!(name, node = %target, "restarting a supervised actor");
                lock(&self.supervisor.seen).insert(
                    name.to_owned(),
                    Seen::Asked {
                        token,
                        at: Instant::now(),
                    },
                );
                self.ask_activation(
                    target.clone(),
                    name.to_owned(),
                    token,
                    Arc::new(supervision.clone()),
                );
                Some(target)
            }
            Ok(other) => {
                tracing::debug!(name, ?other, "restart not needed");
                None
            }
            Err(e) => {
                tracing::debug!(name, "proposing a restart: {e}");
                None
            }
        }
    }

    /// Where supervised `name` starts again when its last node is not available: its
    /// strategy's choice among the members (a pinned strategy, `Node` or `Local`, falls back
    /// to the name's owner on a consistent-hash ring when its node is not available).
    pub(super) fn choose_restart(
        &self,
        members: &[Member],
        name: &str,
        strategy: &Placement,
        constraint: &Constraint,
        key: Option<&[u8]>,
    ) -> Result<NodeId, String> {
        let me = self.ctx_me().name();
        let mut placer = lock(&self.supervisor.placer);
        let mut choose = |strategy: &Placement, key: Option<&[u8]>| {
            placer.choose(
                strategy,
                &Input {
                    members,
                    me,
                    constraint,
                    key,
                },
            )
        };
        let chosen = match strategy {
            Placement::Node(_) => choose(strategy, None)
                .or_else(|_| choose(&Placement::ConsistentHash, Some(name.as_bytes()))),
            _ => choose(strategy, key.or(Some(name.as_bytes()))),
        };
        chosen.map_err(|e| e.to_string())
    }

    /// Asks `node` (this one included) to activate claim `token` of `name`, in the background.
    fn ask_activation(
        self: &Arc<Self>,
        node: NodeId,
        name: String,
        token: u64,
        supervision: Arc<Supervision>,
    ) {
        let registry = Arc::clone(self);
        let Some(raft) = self.raft_handle() else {
            return;
        };
        raft.spawn(async move {
            let result = if &node == registry.ctx_me() {
                registry.activate(name.clone(), token, &supervision).await
            } else {
                let Some(peer) = registry.ctx_peer(&node) else {
                    return;
                };
                let req = RegistryRequest::Activate {
                    name: name.clone(),
                    token,
                    supervision: Supervision::clone(&supervision),
                };
                let deadline = tokio::time::Instant::now() + registry.config.request_timeout;
                match registry
                    .ask_peer_at(node.clone(), peer, req, deadline)
                    .await
                {
                    Ok(RegistryReply::Activated(id)) => Ok(id),
                    Ok(RegistryReply::Failed(f)) => Err(format!("{f:?}")),
                    Ok(_) => Err("unexpected reply".into()),
                    Err(e) => Err(e.to_string()),
                }
            };
            match result {
                Ok(id) => tracing::debug!(name, node = %node, actor = id, "activated"),
                // Asked again after twice the request timeout while the claim is pending.
                Err(e) => tracing::info!(name, node = %node, "activation failed: {e}"),
            }
        });
    }

    /// On the chosen node: starts `name`'s actor from its supervised state (once per claim
    /// token) and completes the claim. Returns the actor id.
    pub(super) async fn activate(
        &self,
        name: String,
        token: u64,
        supervision: &Supervision,
    ) -> Result<u64, String> {
        let started = {
            let mut activations = lock(&self.supervisor.activations);
            match activations.get(&name) {
                Some(&(t, Some(id))) if t == token => Some(id),
                Some(&(t, None)) if t == token => {
                    return Err("the activation is in progress".into());
                }
                _ => {
                    activations.insert(name.clone(), (token, None));
                    None
                }
            }
        };
        let id = match started {
            Some(id) => id,
            None => {
                // A restart decision means the name was released: an older activation of it
                // here (its node was wrongly declared Down, say) goes before the new one.
                let older = lock(&self.supervisor.hosted).remove(&name);
                if let Some((old, _)) = older
                    && self.stop_local(old)
                {
                    tracing::warn!(name, actor = old, "stopped a superseded supervised actor");
                }
                match self.start_supervised(supervision).await {
                    Ok(id) => {
                        lock(&self.supervisor.activations).insert(name.clone(), (token, Some(id)));
                        // Fenced like a bound one while its binding is on its way.
                        self.note_hosted(&name, id, PENDING);
                        id
                    }
                    Err(e) => {
                        lock(&self.supervisor.activations).remove(&name);
                        return Err(e.to_string());
                    }
                }
            }
        };
        let me = self.ctx_me().clone();
        let location = Location {
            node: me,
            node_addr: self.ctx_addr(),
            actor_type: supervision.actor_type.clone(),
            actor_id: id,
        };
        let bind = Command::Register {
            name: name.clone(),
            location,
            claim: Some(token),
        };
        match self.write(bind).await {
            Ok(Outcome::Bound(e)) => {
                lock(&self.supervisor.hosted).insert(name, (id, e.version));
                Ok(id)
            }
            outcome => {
                // The claim is gone (released, superseded), or the binding is in doubt: this
                // actor must not run unbound. If the claim still stands, the leader asks again
                // and a new activation binds it.
                self.stop_local(id);
                lock(&self.supervisor.activations).remove(&name);
                lock(&self.supervisor.hosted).remove(&name);
                Err(match outcome {
                    Ok(other) => format!("the claim was lost: {other:?}"),
                    Err(e) => format!("binding: {e}"),
                })
            }
        }
    }

    /// Starts the actor of `supervision` here, through the type's spawner.
    async fn start_supervised(&self, supervision: &Supervision) -> Result<u64, RemoteError> {
        self.start_from(
            &supervision.actor_type,
            supervision.format,
            supervision.state.clone(),
        )
        .await
    }

    /// Starts an actor of type `actor_type` here from its serialized `state`, through the
    /// type's spawner. Returns its id.
    pub(super) async fn start_from(
        &self,
        actor_type: &str,
        format: crate::codec::SerializationFormat,
        state: Vec<u8>,
    ) -> Result<u64, RemoteError> {
        let remote = self.remote();
        let spawn = remote.actors.spawner(actor_type).ok_or_else(|| {
            RemoteError::ActorTypeNotRegistered {
                node: remote.actors.node().to_owned(),
                actor_type: actor_type.to_owned(),
            }
        })?;
        let (tx, rx) = oneshot::channel();
        spawn(remote, format, Bytes::from(state), tx);
        rx.await.map_err(|_| RemoteError::SystemStopped)?
    }

    /// Fences local actor `id` as the pending holder of supervised `name` (a binding on its
    /// way: an activation's, or a migration's).
    pub(super) fn note_pending(&self, name: &str, id: u64) {
        self.note_hosted(name, id, PENDING);
    }

    /// Forgets that local actor `id` holds supervised `name`.
    pub(super) fn forget_hosted(&self, name: &str, id: u64) {
        let mut hosted = lock(&self.supervisor.hosted);
        if hosted.get(name).is_some_and(|&(held, _)| held == id) {
            hosted.remove(name);
        }
    }

    /// Answers [`RegistryRequest::Activate`].
    pub(super) async fn serve_activate(
        &self,
        name: String,
        token: u64,
        supervision: Supervision,
    ) -> RegistryReply {
        match self.activate(name, token, &supervision).await {
            Ok(id) => RegistryReply::Activated(id),
            Err(e) => RegistryReply::Failed(Failure::Unavailable(e)),
        }
    }
}

/// A supervised name's strategy, constraint and key for a restart: the constraint also asks
/// for the actor type (a restart starts it through the type's spawner).
pub(super) fn restart_placement(
    supervision: &Supervision,
) -> Result<(Placement, Constraint, Option<&[u8]>), String> {
    let (strategy, mut constraint, key) = supervision.placement.decode()?;
    if !constraint
        .capabilities
        .iter()
        .any(|c| c == &supervision.actor_type)
    {
        constraint.capabilities.push(supervision.actor_type.clone());
    }
    Ok((strategy, constraint, key))
}
