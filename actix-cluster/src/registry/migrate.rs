//! Live migration of a named actor ([`ClusterSystem::migrate`](crate::ClusterSystem::migrate)).
//!
//! The node hosting the actor (the *source*) runs the move, so that the actor's messages and
//! its state never cross a third node:
//! 1. it closes the actor's gate (messages from the network are held in arrival order), lets
//!    the actor handle what its mailbox holds, serializes it and pauses it;
//! 2. the *target* starts an actor of the type from that state, unbound
//!    ([`RegistryRequest::Adopt`]);
//! 3. one registry write moves the name from the old registration to the new actor, only if
//!    the old registration is still the name's ([`Command::Move`]); a supervised name's restart
//!    state becomes the migrated state;
//! 4. committed: the old actor stops, and what was held, then whatever still arrives for the
//!    old id, is forwarded to the new actor through one ordered queue; not committed: the
//!    target's actor is stopped, the old actor goes on and handles what was held first.
//!
//! A move is idempotent: applied again (a write retried after its first copy committed), it
//! finds the name already bound to its target's fresh actor and answers as it did the first
//! time, so the source never resumes an actor whose name has moved on.
//!
//! A move whose registry write is in doubt is settled by a second conditional write that
//! re-binds the name where it was (after it, the move can never commit) or finds the move
//! committed; if that is in doubt too, both actors stop: the name then points at a stopped
//! actor, is released, and (supervised) restarted from the state the log holds. Nothing runs
//! twice. A target whose source never settles the move settles it from the name (see
//! `settle_adoption`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant as TokioInstant;

use super::service::{Failure, Registry, RegistryReply, RegistryRequest};
use super::state::{Command, Location, Outcome};
use super::{NameEntry, RegistryError};
use crate::codec::SerializationFormat;
use crate::membership::MemberState;
use crate::metrics;
use crate::node::NodeRole;
use crate::remote::RemoteError;
use crate::remote::moving::{self, Unmovable};
use crate::remote::send::Endpoint;

/// Why [`ClusterSystem::migrate`](crate::ClusterSystem::migrate) did not move the actor.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MigrateError {
    /// Looking the name up, or moving it, failed in the registry: `NotFound` when no actor is
    /// registered under it. A `Timeout` or `NoQuorum` during the move itself stopped the
    /// actor (see the [module](crate::ClusterSystem::migrate) documentation).
    #[error("migrate: {0}")]
    Registry(#[from] RegistryError),
    /// The actor cannot move: its type does not declare
    /// [`Messages::migratable`](crate::Messages::migratable), it was not started by the
    /// cluster, it is already moving, or serializing it failed. Nothing changed.
    #[error("the actor named {name:?} cannot migrate: {reason}")]
    NotMigratable {
        /// The name.
        name: String,
        /// Why not.
        reason: String,
    },
    /// The target cannot take the actor: it is not a member that is Up, it has not registered
    /// the actor type, or starting the actor there failed. Nothing changed: the actor goes on
    /// where it was.
    #[error("node {node} cannot take the actor named {name:?}: {reason}")]
    Target {
        /// The name.
        name: String,
        /// The target node.
        node: String,
        /// Why not.
        reason: String,
    },
    /// The name changed while the move was prepared (the actor stopped, restarted, moved or
    /// was unregistered): nothing moved.
    #[error("the name {name:?} changed during the move; nothing moved")]
    Conflict {
        /// The name.
        name: String,
    },
    /// The node hosting the actor could not be asked or did not answer in time. The move may
    /// have happened: look the name up.
    #[error("migrate: {0}")]
    Remote(#[from] RemoteError),
}

/// [`MigrateError`] as the source node answers it.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum MigrateFailure {
    Registry(Failure),
    NotFound,
    NotMigratable(String),
    Target { node: String, reason: String },
    Conflict,
}

impl MigrateFailure {
    fn from_error(e: MigrateError) -> Self {
        match e {
            MigrateError::Registry(RegistryError::NotFound(_)) => Self::NotFound,
            MigrateError::Registry(e) => Self::Registry(Failure::from_error(e)),
            MigrateError::NotMigratable { reason, .. } => Self::NotMigratable(reason),
            MigrateError::Target { node, reason, .. } => Self::Target { node, reason },
            MigrateError::Conflict { .. } => Self::Conflict,
            MigrateError::Remote(e) => Self::Registry(Failure::Unavailable(e.to_string())),
        }
    }

    fn into_error(self, name: &str, timeout: Duration) -> MigrateError {
        let name = name.to_owned();
        match self {
            Self::Registry(f) => MigrateError::Registry(f.into_error(timeout)),
            Self::NotFound => MigrateError::Registry(RegistryError::NotFound(name)),
            Self::NotMigratable(reason) => MigrateError::NotMigratable { name, reason },
            Self::Target { node, reason } => MigrateError::Target { name, node, reason },
            Self::Conflict => MigrateError::Conflict { name },
        }
    }
}

/// Target: actors started for moves whose outcome the source has not told, by (name, the
/// registration they move from), with the attempt each belongs to. Bounded: the source
/// aborts within a request timeout, so old entries are only ever ones it no longer needs.
#[derive(Default)]
pub(crate) struct Adopted(std::sync::Mutex<HashMap<(String, u64), (u64, u64)>>);

/// One attempt to move registration `version` of `name`. A source may try the same
/// registration again after an attempt failed, with the actor's newer state: the attempt
/// tells the two apart, so that a target never answers a retry with the actor it started
/// from an earlier attempt's (older) state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AdoptKey {
    pub(crate) name: String,
    pub(crate) version: u64,
    pub(crate) attempt: u64,
}

/// Attempt numbers: increasing within a process, which is all that is needed (one
/// registration is only ever moved by the one node hosting it).
static ATTEMPTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

const MAX_ADOPTED: usize = 1024;

/// How often a target looks at its replica to settle an adoption the source did not.
const SETTLE_POLL: Duration = Duration::from_millis(50);

impl Adopted {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, u64), (u64, u64)>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Registry {
    /// Moves the actor registered as `name` to node `to` (see the module).
    pub(crate) async fn migrate(
        self: &Arc<Self>,
        name: &str,
        to: &str,
    ) -> Result<NameEntry, MigrateError> {
        let entry = self.linearizable_get(name).await?;
        if entry.node.name() == to {
            return Ok(entry);
        }
        if &entry.node == self.ctx_me() {
            // On the node's home arbiter, like a move another node asks for: the move hands
            // messages to actors and spawns their replies, which needs an actix arbiter (the
            // caller may be a plain tokio task, such as the leader's rebalancing).
            let (tx, rx) = tokio::sync::oneshot::channel();
            let registry = Arc::clone(self);
            let to = to.to_owned();
            self.remote().actors.home.spawn(async move {
                let _ = tx.send(registry.move_out(entry, &to).await);
            });
            return rx
                .await
                .map_err(|_| MigrateError::Remote(RemoteError::SystemStopped))?;
        }
        let timeout = self.config.request_timeout;
        let req = RegistryRequest::Migrate {
            name: name.to_owned(),
            version: entry.version,
            to: to.to_owned(),
        };
        // Serializing, adopting and the registry write each take up to a request timeout.
        let deadline = TokioInstant::now() + 4 * timeout;
        match self
            .ask_peer_at(entry.node.clone(), entry.node_addr, req, deadline)
            .await
        {
            Ok(RegistryReply::Migrated(r)) => r.map_err(|f| f.into_error(name, timeout)),
            Ok(RegistryReply::Failed(f)) => Err(MigrateError::Registry(f.into_error(timeout))),
            Ok(_) => Err(MigrateError::Registry(RegistryError::Unavailable(
                "unexpected answer to a migration".into(),
            ))),
            Err(RegistryError::Remote(e)) => Err(MigrateError::Remote(e)),
            Err(e) => Err(e.into()),
        }
    }

    /// Answers [`RegistryRequest::Migrate`] on the node hosting the actor.
    pub(super) async fn serve_migrate(
        &self,
        name: String,
        version: u64,
        to: String,
    ) -> RegistryReply {
        let mut here = self
            .replica
            .read(|n| n.get(&name).map(|e| NameEntry::clone(e)));
        if here.as_ref().is_none_or(|e| e.version < version) {
            // The caller read a registration this replica has not applied yet.
            here = self.linearizable_get(&name).await.ok();
        }
        let result = match here {
            Some(e) if e.version == version && &e.node == self.ctx_me() => {
                self.move_out(e, &to).await
            }
            // The name has moved on since the caller read it: not this node's to move now.
            _ => Err(MigrateError::Conflict { name }),
        };
        RegistryReply::Migrated(result.map_err(MigrateFailure::from_error))
    }

    /// The source's side of a move of `entry`, hosted here, to `to`.
    async fn move_out(&self, entry: NameEntry, to: &str) -> Result<NameEntry, MigrateError> {
        let outcome = self.try_move_out(&entry, to).await;
        metrics::actor_migrated(match &outcome {
            Ok(_) => "moved",
            Err(MigrateError::NotMigratable { .. }) => "not_migratable",
            Err(MigrateError::Target { .. }) => "target_refused",
            Err(MigrateError::Conflict { .. }) => "conflict",
            Err(_) => "failed",
        });
        outcome
    }

    async fn try_move_out(&self, entry: &NameEntry, to: &str) -> Result<NameEntry, MigrateError> {
        let name = entry.name.clone();
        let remote = Arc::clone(self.remote());
        let timeout = self.config.request_timeout;
        let target_err = |reason: String| MigrateError::Target {
            name: name.clone(),
            node: to.to_owned(),
            reason,
        };
        let target = self
            .ctx_members()
            .into_iter()
            .find(|m| m.id.name() == to)
            .ok_or_else(|| target_err("no member of that name".into()))?;
        if target.state != MemberState::Up || target.role == NodeRole::Client {
            return Err(target_err(format!(
                "it is {:?} (a {:?} node); the target must be a member that is Up",
                target.state, target.role
            )));
        }
        if !target.capabilities.iter().any(|c| c == &entry.actor_type) {
            return Err(target_err(format!(
                "it has not registered actor type {}",
                entry.actor_type
            )));
        }
        let actor = remote
            .actors
            .get(entry.actor_id)
            .filter(|a| a.alive())
            .ok_or_else(|| MigrateError::Conflict { name: name.clone() })?;
        let not_migratable = |reason: String| MigrateError::NotMigratable {
            name: name.clone(),
            reason,
        };
        let format = remote.default_format;
        let captured = actor.start_move(format).map_err(|e| match e {
            Unmovable::Stopped => MigrateError::Conflict { name: name.clone() },
            other => not_migratable(other.to_string()),
        })?;
        let captured = match tokio::time::timeout(timeout, captured).await {
            Ok(Ok(Ok(c))) => c,
            Ok(Ok(Err(e))) => {
                actor.end_move(None);
                return Err(not_migratable(format!("serializing it failed: {e}")));
            }
            Ok(Err(_)) => {
                actor.end_move(None);
                return Err(MigrateError::Conflict { name });
            }
            Err(_) => {
                // Dropping the receiver makes a late snapshot resume the actor at once.
                actor.end_move(None);
                return Err(not_migratable(format!(
                    "it did not get to a point between two messages within {timeout:?}"
                )));
            }
        };
        let moving::Captured { bytes, release } = captured;
        let supervised = self.replica.read(|n| n.supervision(&name).is_some());
        let deadline = TokioInstant::now() + timeout;
        let attempt = ATTEMPTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let adopt = RegistryRequest::Adopt {
            name: name.clone(),
            version: entry.version,
            attempt,
            from: self.ctx_me().clone(),
            actor_type: entry.actor_type.clone(),
            format,
            state: bytes.clone(),
            supervised,
        };
        let abort = |release: tokio::sync::oneshot::Sender<bool>, reason: String| {
            // The actor goes on; what was held is delivered to it first.
            let _ = release.send(false);
            actor.end_move(None);
            reason
        };
        let id = match self
            .ask_peer_at(target.id.clone(), target.addr, adopt, deadline)
            .await
        {
            Ok(RegistryReply::Activated(id)) => id,
            other => {
                let why = match other {
                    Ok(RegistryReply::Failed(f)) => f.into_error(timeout).to_string(),
                    Err(e) => e.to_string(),
                    Ok(_) => "unexpected answer".into(),
                };
                // The actor goes on at once; then the target's, if it started one (a timeout),
                // is stopped (or stops itself: `settle_adoption`).
                let why = abort(release, why);
                self.end_adoption(&target, &name, entry.version, attempt, true)
                    .await;
                return Err(target_err(why));
            }
        };
        let cmd = Command::Move {
            name: name.clone(),
            version: entry.version,
            location: Location {
                node: target.id.clone(),
                node_addr: target.addr,
                actor_type: entry.actor_type.clone(),
                actor_id: id,
            },
            state: supervised.then_some((format, bytes)),
        };
        let moved = match self.write(cmd).await {
            Ok(Outcome::Bound(e)) => Ok(Some(e)),
            Ok(_) => Ok(None),
            // In doubt, and a read would not settle it: the move may still be in a leader's
            // log and commit later. A second conditional write does: it re-binds the name where
            // it is, from the same registration, so once it commits the move never can; or it
            // finds the move committed.
            Err(e) => {
                let stay = Command::Move {
                    name: name.clone(),
                    version: entry.version,
                    location: Location {
                        node: entry.node.clone(),
                        node_addr: entry.node_addr,
                        actor_type: entry.actor_type.clone(),
                        actor_id: entry.actor_id,
                    },
                    state: None,
                };
                match self.write(stay).await {
                    Ok(Outcome::Bound(_)) => Ok(None),
                    Ok(Outcome::Taken {
                        entry: Some(now), ..
                    }) if now.node == target.id && now.actor_id == id => Ok(Some(now)),
                    // The name changed otherwise, or this is in doubt too.
                    _ => Err(e),
                }
            }
        };
        match moved {
            Ok(Some(now)) => {
                // Fencing must not take the old id's entry: it forwards from now on.
                self.forget_hosted(&name, entry.actor_id);
                let _ = release.send(true);
                let to = Endpoint::new(
                    target.id.clone(),
                    target.addr,
                    id,
                    Some(Arc::clone(&remote)),
                );
                let queue = moving::forwarder(&remote.actors, to, timeout);
                actor.end_move(Some(queue.clone()));
                let actors = Arc::clone(&remote.actors);
                let old = entry.actor_id;
                remote.actors.home.spawn(async move {
                    tokio::time::sleep(moving::FORWARD_FOR).await;
                    actors.remove(old);
                });
                if supervised {
                    self.tell_hosted(&now).await;
                }
                self.followed(now.version).await;
                // Behind everything forwarded so far, on the same connection: the target
                // delivers what it kept after what was forwarded.
                let (reached, marked) = tokio::sync::oneshot::channel();
                if queue.send(moving::Held::Mark(reached)).await.is_ok() {
                    let _ = marked.await;
                }
                self.end_adoption(&target, &name, entry.version, attempt, false)
                    .await;
                tracing::info!(name, from = %entry.node, to = %now.node, "actor migrated");
                Ok(now)
            }
            Ok(None) => {
                abort(release, String::new());
                self.end_adoption(&target, &name, entry.version, attempt, true)
                    .await;
                Err(MigrateError::Conflict { name })
            }
            Err(e) => {
                // Neither actor may run: one of them holds the name, and which is unknown.
                tracing::warn!(
                    name,
                    "a migration's registry write is in doubt ({e}); stopping both actors"
                );
                self.end_adoption(&target, &name, entry.version, attempt, true)
                    .await;
                let _ = release.send(true);
                actor.end_move(None);
                Err(MigrateError::Registry(e))
            }
        }
    }

    /// Tells the target how the move of `name` from `version` ended: `stop` (it did not
    /// commit) stops the actor it adopted; otherwise that actor takes direct messages from now
    /// on (everything forwarded so far is in the target's queue ahead of this request).
    async fn end_adoption(
        &self,
        target: &crate::membership::Member,
        name: &str,
        version: u64,
        attempt: u64,
        stop: bool,
    ) {
        let req = RegistryRequest::Abandon {
            name: name.to_owned(),
            version,
            attempt,
            stop,
        };
        let deadline = TokioInstant::now() + self.config.request_timeout;
        if let Err(e) = self
            .ask_peer_at(target.id.clone(), target.addr, req, deadline)
            .await
        {
            // Either way the target settles the move itself (`settle_adoption`).
            tracing::warn!(name, node = %target.id, stop, "could not tell the target how a migration ended: {e}");
        }
    }

    /// Waits (bounded by the request timeout) until every other member Up has applied log
    /// index `index`: from then on no member's named address sends to the old id, and all it
    /// sent there before has reached this node (each connection is FIFO, and the answer
    /// follows those messages on it).
    async fn followed(&self, index: u64) {
        let me = self.ctx_me().clone();
        let deadline = TokioInstant::now() + self.config.request_timeout;
        let asks = self
            .ctx_members()
            .into_iter()
            .filter(|m| m.id != me && m.state == MemberState::Up && m.role != NodeRole::Client)
            .map(|m| self.ask_peer_at(m.id, m.addr, RegistryRequest::Applied { index }, deadline));
        for answer in futures::future::join_all(asks).await {
            if let Err(e) = answer {
                tracing::debug!("a member did not confirm it followed a migration: {e}");
            }
        }
    }

    /// Answers [`RegistryRequest::Adopt`] on the target: starts the actor from `state`,
    /// unbound (fenced like a pending activation if supervised).
    pub(super) async fn serve_adopt(
        self: &Arc<Self>,
        key: AdoptKey,
        from: crate::node::NodeId,
        actor_type: String,
        format: SerializationFormat,
        state: Vec<u8>,
        supervised: bool,
    ) -> RegistryReply {
        let AdoptKey {
            name,
            version,
            attempt,
        } = key;
        let earlier = {
            let mut adopted = self.adopted.lock();
            match adopted.get(&(name.clone(), version)) {
                Some(&(a, id)) if a == attempt => return RegistryReply::Activated(id),
                Some(&(a, _)) if a > attempt => {
                    return RegistryReply::Failed(Failure::Refused(format!(
                        "a later attempt to move {name:?} superseded this one"
                    )));
                }
                // The source gave that attempt up (it only tries again after ending one),
                // and that actor holds older state: it must never be bound.
                Some(_) => adopted.remove(&(name.clone(), version)).map(|(_, id)| id),
                None => None,
            }
        };
        if let Some(stale) = earlier {
            tracing::info!(
                name,
                actor = stale,
                "stopping an earlier migration attempt's actor"
            );
            self.forget_hosted(&name, stale);
            self.stop_local(stale);
        }
        match self.start_from(&actor_type, format, state).await {
            Ok(id) => {
                let remote = self.remote();
                if let Some(actor) = remote.actors.get(id) {
                    actor.adopting(from);
                    // Should the source never settle the move (it crashed, or its answer was
                    // lost), the registry settles it (see `settle_adoption`).
                    let registry = Arc::clone(self);
                    let key = (name.clone(), version);
                    remote.actors.home.spawn(async move {
                        registry.settle_adoption(key, id).await;
                    });
                }
                let mut adopted = self.adopted.lock();
                if adopted.len() >= MAX_ADOPTED {
                    adopted.clear();
                }
                adopted.insert((name.clone(), version), (attempt, id));
                drop(adopted);
                if supervised {
                    self.note_pending(&name, id);
                }
                RegistryReply::Activated(id)
            }
            Err(e) => RegistryReply::Failed(Failure::Unavailable(e.to_string())),
        }
    }

    /// Target: an adoption the source has not settled (it crashed, or its `Abandon` was lost)
    /// is settled by the name, as this node's replica shows it once it has applied the
    /// registration the move started from: pointing at the adopted actor, the move committed
    /// and the actor takes direct messages; moved on (another registration, or released), the
    /// move can never commit (it is conditional on that registration) and the actor stops.
    /// Still at that registration after the source's own bound, no move is pending (a move in
    /// doubt is settled by the source with a second write, which changes the registration):
    /// the actor stops.
    async fn settle_adoption(self: Arc<Self>, key: (String, u64), id: u64) {
        let give_up = TokioInstant::now() + 4 * self.config.request_timeout;
        let me = self.ctx_me().clone();
        loop {
            tokio::time::sleep(SETTLE_POLL).await;
            if self.adopted.lock().get(&key).is_none_or(|&(_, a)| a != id) {
                return; // Settled by the source.
            }
            if self.replica.applied() < key.1 {
                continue;
            }
            let now = self.replica.read(|n| {
                n.get(&key.0)
                    .map(|e| (e.node == me && e.actor_id == id, e.version))
            });
            let bound = match now {
                Some((true, _)) => true,
                Some((false, v)) if v == key.1 && TokioInstant::now() < give_up => continue,
                _ => false,
            };
            {
                let mut adopted = self.adopted.lock();
                if adopted.get(&key).is_none_or(|&(_, a)| a != id) {
                    return; // Settled, or replaced by a later attempt, meanwhile.
                }
                adopted.remove(&key);
            }
            if bound {
                if let Some(actor) = self.remote().actors.get(id) {
                    actor.open();
                }
            } else {
                tracing::info!(
                    name = key.0,
                    actor = id,
                    "stopping an abandoned migration's actor"
                );
                self.forget_hosted(&key.0, id);
                self.stop_local(id);
            }
            return;
        }
    }

    /// Answers [`RegistryRequest::Abandon`].
    pub(super) fn serve_abandon(
        &self,
        name: &str,
        version: u64,
        attempt: u64,
        stop: bool,
    ) -> RegistryReply {
        let id = {
            let mut adopted = self.adopted.lock();
            let key = (name.to_owned(), version);
            match adopted.get(&key) {
                Some(&(a, _)) if a == attempt => adopted.remove(&key).map(|(_, id)| id),
                // Another attempt's: not this request's to settle.
                _ => None,
            }
        };
        if let Some(id) = id {
            if stop {
                self.forget_hosted(name, id);
                self.stop_local(id);
            } else if let Some(actor) = self.remote().actors.get(id) {
                actor.open();
            }
        }
        RegistryReply::Activated(id.unwrap_or(0))
    }
}
