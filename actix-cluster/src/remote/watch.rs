//! Cross-node watch: one [`Terminated`] notification when a watched actor stops or the node
//! incarnation hosting it goes away.
//!
//! Every node keeps two tables in [`Watches`]:
//!
//! - **watcher side**: watch id → (target node incarnation, actor id, recipient). A record
//!   leaves this table exactly once, when it fires or is unwatched, and only the code that
//!   removed it notifies: that is what makes the notification exactly-once whatever races
//!   (actor stop, node down, unwatch) happen at the same time.
//! - **target side**: local actor id → who watches it (a local watch id, or a peer and the id
//!   that peer chose).
//!
//! actix 0.13 offers no way to learn from outside an actor that it stopped, short of polling
//! `Addr::connected()`. A poller on the node's network arbiter does that for *watched* actors
//! only, every [`WATCH_POLL_INTERVAL`] (the bound on how late a stop is noticed), and only
//! while either table holds something.
//!
//! On the wire (docs/protocol.md, section 8) a watch is a system request to the target node
//! ([`id::WATCH`]); the answer says whether it is registered, the actor is already stopped, or
//! the target holds too many watches from this node. Later, a one-way system tell
//! ([`id::TERMINATED`]) reports the stop; [`id::UNWATCH`] (a tell) withdraws a watch. Both
//! tells are control frames: they bypass the bounded send queue, which is safe because their
//! number is bounded by [`MAX_WATCHES_PER_NODE`], and necessary because a notification lost
//! to a full queue would never be repeated.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use actix::prelude::*;
use actix_rt::ArbiterHandle;
use serde::{Deserialize, Serialize};

use super::actor::DistributedActor;
use super::addr::RemoteAddr;
use super::context::RemoteContext;
use super::error::RemoteError;
use super::local::LocalActors;
use super::send::Endpoint;
use super::system::{SYSTEM_ACTOR, id};
use crate::codec::{self, SerializationFormat};
use crate::node::NodeId;
use crate::transport::{Peer, PeerState};
use crate::wire;

/// Most watches one node may hold on the actors of another node incarnation (and, on the
/// target side, most watches it accepts from one watching node). One more is refused with
/// [`WatchError::TooManyWatches`]. Bounds the memory a watcher, or a hostile peer, can make a
/// node spend on watch records, and the notifications it can make it send at once.
pub const MAX_WATCHES_PER_NODE: usize = 4096;

/// How often watched local actors are checked for having stopped: the bound on how late an
/// [`TerminatedReason::ActorStopped`] is sent after the actor stopped.
pub(crate) const WATCH_POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Identifies one watch. Returned by [`ClusterSystem::watch`](crate::ClusterSystem::watch),
/// carried by its [`Terminated`], and taken by
/// [`ClusterSystem::unwatch`](crate::ClusterSystem::unwatch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WatchId(u64);

impl fmt::Display for WatchId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "watch#{}", self.0)
    }
}

/// The actor a watch is on: the node incarnation hosting it and its id there.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct WatchedActor {
    /// The node incarnation that hosts (hosted) the actor.
    pub node: NodeId,
    /// The actor's id on that node ([`RemoteAddr::actor_id`]).
    pub actor: u64,
}

impl WatchedActor {
    /// Whether `addr` points at this actor.
    pub fn is<A: DistributedActor>(&self, addr: &RemoteAddr<A>) -> bool {
        // One snapshot, so a named address is never judged by two different registrations.
        let ep = addr.endpoint();
        self.node == ep.node && self.actor == ep.actor
    }
}

impl fmt::Display for WatchedActor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.node, self.actor)
    }
}

/// Why a watched actor is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TerminatedReason {
    /// The actor stopped (or had already stopped, or never existed, when the watch began).
    ActorStopped,
    /// The node incarnation hosting the actor was declared down (crashed, unreachable, or
    /// replaced by a restart). The actor may still run there if the node is only cut off,
    /// but this cluster no longer reaches it.
    NodeDown,
    /// The node hosting the actor left the cluster gracefully.
    NodeLeft,
}

/// The notification a watch sends, exactly once, to the recipient given to
/// [`ClusterSystem::watch`](crate::ClusterSystem::watch).
#[derive(Debug, Clone, PartialEq, Eq, Message)]
#[rtype(result = "()")]
#[non_exhaustive]
pub struct Terminated {
    /// The actor that was watched.
    pub actor: WatchedActor,
    /// The watch that fired.
    pub watch: WatchId,
    /// Why the actor is gone.
    pub reason: TerminatedReason,
}

/// Why [`ClusterSystem::watch`](crate::ClusterSystem::watch) failed. In every case no watch
/// is active and no [`Terminated`] will arrive for it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WatchError {
    /// This node already holds [`MAX_WATCHES_PER_NODE`] watches on actors of `node`, or
    /// `node` already holds that many from this node. Unwatch or let some fire first.
    #[error("too many watches on node {node}: the limit is {limit}")]
    TooManyWatches {
        /// The node hosting the actor.
        node: NodeId,
        /// The limit that was reached.
        limit: usize,
    },
    /// The watch request did not get an answer (timeout, connection lost, node unreachable,
    /// this node stopped, a node of an older build). The target may or may not have
    /// registered it; it was withdrawn on a best-effort basis.
    #[error("watch request failed: {0}")]
    Request(#[from] RemoteError),
}

/// Body of [`id::WATCH`], [`id::UNWATCH`] and [`id::TERMINATED`]: the watched actor on the
/// target node and the id the watching node gave the watch.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct WatchMsg {
    actor: u64,
    watch: u64,
}

/// Answer to [`id::WATCH`].
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) enum WatchReply {
    /// Registered: a [`id::TERMINATED`] tell follows when the actor stops.
    Watching,
    /// No such actor, or it already stopped; nothing was registered.
    Stopped,
    /// The target already holds `limit` watches from this node; nothing was registered.
    TooMany { limit: u64 },
}

/// A watch held by this node.
struct Watching {
    target: WatchedActor,
    recipient: Recipient<Terminated>,
    /// The target incarnation's peer; `None` for a target on this node or one already known
    /// to be gone.
    peer: Option<Arc<Peer>>,
}

/// Who watches a local actor.
enum Watcher {
    /// A watch of this node (its id in the watcher-side table).
    Local(u64),
    /// A watch of another node incarnation, under the id that node chose.
    Remote { peer: Arc<Peer>, watch: u64 },
}

#[derive(Default)]
struct Tables {
    /// Watcher side, by watch id.
    watching: HashMap<u64, Watching>,
    /// Watcher side: watches per target incarnation, for the bound.
    watching_per_node: HashMap<NodeId, usize>,
    /// Target side, by local actor id.
    watched: HashMap<u64, Vec<Watcher>>,
    /// Target side: remote watches per watching incarnation, for the bound.
    watchers_per_node: HashMap<NodeId, usize>,
    /// Whether a poller task runs.
    polling: bool,
}

fn decrement(counts: &mut HashMap<NodeId, usize>, node: &NodeId) {
    if let Some(n) = counts.get_mut(node) {
        *n -= 1;
        if *n == 0 {
            counts.remove(node);
        }
    }
}

/// Both watch tables of one node. Owned by [`LocalActors`], so the network dispatch and
/// `ClusterSystem` (as `ctx.actors.watches`) reach the same one.
pub(crate) struct Watches {
    tables: Mutex<Tables>,
    next_id: AtomicU64,
    /// Set when this node stops: nothing is notified or sent any more.
    closed: AtomicBool,
    /// The network arbiter, where the poller runs.
    net: OnceLock<ArbiterHandle>,
}

impl fmt::Debug for Watches {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self.lock();
        f.debug_struct("Watches")
            .field("watching", &t.watching.len())
            .field("watched", &t.watched.len())
            .finish_non_exhaustive()
    }
}

impl Watches {
    pub(crate) fn new() -> Self {
        Self {
            tables: Mutex::new(Tables::default()),
            next_id: AtomicU64::new(1),
            closed: AtomicBool::new(false),
            net: OnceLock::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Tables> {
        // Every critical section is a few map updates after the fallible work, so a poisoned
        // lock still guards consistent tables.
        self.tables.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Gives the poller its arbiter; called once when the node starts.
    pub(crate) fn set_network(&self, net: ArbiterHandle) {
        let _ = self.net.set(net);
    }

    /// This node stops: forget every watch and never notify or send again. Watches of a
    /// stopped node cannot be kept, and a late `NodeDown` for every peer (which is how the
    /// transport sees its own shutdown) would be false.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let mut t = self.lock();
        *t = Tables::default();
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Adds a watcher-side record; refused past the per-node bound.
    fn add_watching(
        &self,
        target: WatchedActor,
        peer: Option<Arc<Peer>>,
        recipient: Recipient<Terminated>,
    ) -> Result<u64, WatchError> {
        if self.is_closed() {
            return Err(WatchError::Request(RemoteError::SystemStopped));
        }
        let mut t = self.lock();
        let n = t.watching_per_node.entry(target.node.clone()).or_insert(0);
        if *n >= MAX_WATCHES_PER_NODE {
            return Err(WatchError::TooManyWatches {
                node: target.node,
                limit: MAX_WATCHES_PER_NODE,
            });
        }
        *n += 1;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        t.watching.insert(
            id,
            Watching {
                target,
                recipient,
                peer,
            },
        );
        Ok(id)
    }

    /// Removes a watcher-side record; `None` if it already fired or was unwatched.
    fn remove_watching(&self, id: u64) -> Option<Watching> {
        let mut t = self.lock();
        let w = t.watching.remove(&id)?;
        decrement(&mut t.watching_per_node, &w.target.node);
        Some(w)
    }

    /// Fires watch `id` with `reason`, if it is still active.
    fn fire(&self, id: u64, reason: TerminatedReason) {
        if let Some(w) = self.remove_watching(id) {
            self.notify(id, w, reason);
        }
    }

    fn notify(&self, id: u64, w: Watching, reason: TerminatedReason) {
        if self.is_closed() {
            return;
        }
        tracing::debug!(actor = %w.target, watch = id, ?reason, "watched actor terminated");
        // `do_send` ignores the mailbox bound, as a notification must not be lost to a busy
        // watcher; a stopped watcher simply gets nothing.
        w.recipient.do_send(Terminated {
            actor: w.target,
            watch: WatchId(id),
            reason,
        });
    }

    /// The node incarnation `node` (and any older incarnation of the same name) is down, or
    /// left when `left`: fires every watch on its actors once, with `NodeDown` or `NodeLeft`,
    /// and forgets the watches it held on local actors, which nobody could be told about.
    ///
    /// Called by the membership driver when a member goes Down or Left; idempotent.
    pub(crate) fn node_down(&self, node: &NodeId, left: bool) {
        let covers =
            |id: &NodeId| id.name() == node.name() && id.incarnation() <= node.incarnation();
        let fired: Vec<(u64, Watching)> = {
            let mut t = self.lock();
            let fired: Vec<(u64, Watching)> = t
                .watching
                .extract_if(|_, w| covers(&w.target.node))
                .collect();
            for (_, w) in &fired {
                decrement(&mut t.watching_per_node, &w.target.node);
            }
            let mut forgotten = Vec::new();
            t.watched.retain(|_, list| {
                list.retain(|w| match w {
                    Watcher::Remote { peer, .. } if covers(&peer.id) => {
                        forgotten.push(peer.id.clone());
                        false
                    }
                    _ => true,
                });
                !list.is_empty()
            });
            for id in &forgotten {
                decrement(&mut t.watchers_per_node, id);
            }
            fired
        };
        let reason = if left {
            TerminatedReason::NodeLeft
        } else {
            TerminatedReason::NodeDown
        };
        for (id, w) in fired {
            self.notify(id, w, reason);
        }
    }

    /// Records that `watcher` watches local actor `actor`. Remote watchers are bounded per
    /// watching incarnation; `Err` carries the limit.
    fn add_watcher(&self, actor: u64, watcher: Watcher) -> Result<(), usize> {
        let mut t = self.lock();
        if let Watcher::Remote { peer, watch } = &watcher {
            let exists = t.watched.get(&actor).is_some_and(|list| {
                list.iter().any(|w| {
                    matches!(w, Watcher::Remote { peer: p, watch: x } if p.id == peer.id && x == watch)
                })
            });
            // A repeated request (the same watch id from the same incarnation) is the same
            // watch: one record, one notification.
            if exists {
                return Ok(());
            }
            let n = t.watchers_per_node.entry(peer.id.clone()).or_insert(0);
            if *n >= MAX_WATCHES_PER_NODE {
                return Err(MAX_WATCHES_PER_NODE);
            }
            *n += 1;
        }
        t.watched.entry(actor).or_default().push(watcher);
        Ok(())
    }

    /// Forgets the target-side record of one watch on local actor `actor`.
    fn remove_watcher(&self, actor: u64, is_it: impl Fn(&Watcher) -> bool) {
        let mut t = self.lock();
        let Some(list) = t.watched.get_mut(&actor) else {
            return;
        };
        let Some(pos) = list.iter().position(is_it) else {
            return;
        };
        let w = list.swap_remove(pos);
        if list.is_empty() {
            t.watched.remove(&actor);
        }
        if let Watcher::Remote { peer, .. } = w {
            decrement(&mut t.watchers_per_node, &peer.id);
        }
    }

    /// One poller round: notifies the watchers of local actors that stopped, forgets watchers
    /// whose incarnation is gone, and applies the transport's verdict on watched nodes.
    /// Returns whether anything is left to poll for; if not, the poller ends.
    fn poll(&self, actors: &LocalActors) -> bool {
        if self.is_closed() {
            self.lock().polling = false;
            return false;
        }
        let mut local_stops = Vec::new();
        let mut tells = Vec::new();
        let mut lost = Vec::new();
        {
            let mut t = self.lock();
            let t = &mut *t;
            // Lock order: the watch tables, then the actor table (never the reverse).
            let stopped: Vec<u64> = t
                .watched
                .keys()
                .copied()
                .filter(|&id| !actors.get(id).is_some_and(|a| a.alive()))
                .collect();
            for actor in stopped {
                for w in t.watched.remove(&actor).unwrap_or_default() {
                    match w {
                        Watcher::Local(watch) => local_stops.push(watch),
                        Watcher::Remote { peer, watch } => {
                            decrement(&mut t.watchers_per_node, &peer.id);
                            tells.push((peer, WatchMsg { actor, watch }));
                        }
                    }
                }
            }
            // A watching incarnation that is gone can never be told; its records only cost
            // memory and count against a bound it no longer uses.
            let counts = &mut t.watchers_per_node;
            t.watched.retain(|_, list| {
                list.retain(|w| match w {
                    Watcher::Remote { peer, .. } if peer.state() == PeerState::Gone => {
                        decrement(counts, &peer.id);
                        false
                    }
                    _ => true,
                });
                !list.is_empty()
            });
            // The transport's verdict counts too: an incarnation replaced by a restart
            // (`Gone`) or not reconnected within `give_up_after` (`Unreachable`) is down. A
            // client node runs no membership, so this is its only source; elsewhere the
            // membership driver's `node_down` usually comes first (it runs on this same thread
            // right after marking the peer), and whichever does fires the watch, once.
            for (&id, w) in &t.watching {
                if let Some(peer) = &w.peer
                    && matches!(peer.state(), PeerState::Gone | PeerState::Unreachable)
                {
                    lost.push(id);
                }
            }
        }
        for watch in local_stops {
            self.fire(watch, TerminatedReason::ActorStopped);
        }
        for (peer, msg) in tells {
            send_tell(&peer, id::TERMINATED, msg);
        }
        for watch in lost {
            self.fire(watch, TerminatedReason::NodeDown);
        }
        let mut t = self.lock();
        if t.watching.is_empty() && t.watched.is_empty() {
            t.polling = false;
            false
        } else {
            true
        }
    }
}

/// Starts the poller on the network arbiter unless it runs already.
fn ensure_polling(actors: &Arc<LocalActors>) {
    let watches = &actors.watches;
    {
        let mut t = watches.lock();
        if t.polling || watches.is_closed() {
            return;
        }
        t.polling = true;
    }
    let this = Arc::clone(actors);
    let spawned = watches.net.get().is_some_and(|net| {
        net.spawn(async move {
            let mut tick = tokio::time::interval(WATCH_POLL_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // The first tick completes at once; the first round waits one interval.
            tick.tick().await;
            loop {
                tick.tick().await;
                if !this.watches.poll(&this) {
                    return;
                }
            }
        })
    });
    if !spawned {
        // Only when the network arbiter stopped, i.e. the node is stopping.
        watches.lock().polling = false;
    }
}

/// Queues a watch tell to the system actor of `peer` as a control frame (see the module doc).
fn send_tell(peer: &Peer, message: u32, msg: WatchMsg) {
    match codec::encode(SerializationFormat::Bincode, &msg) {
        Ok(body) => peer.push_control(|b| {
            wire::put_tell(
                b,
                SYSTEM_ACTOR,
                message,
                SerializationFormat::Bincode,
                false,
                &body,
            );
        }),
        Err(e) => tracing::error!(error = %e, "cannot encode a watch message"),
    }
}

/// Withdraws a watch whose request may have been registered by the target.
struct PendingWatch<'a> {
    watches: &'a Watches,
    peer: &'a Peer,
    msg: WatchMsg,
    armed: bool,
}

impl Drop for PendingWatch<'_> {
    fn drop(&mut self) {
        // The caller gave up on the request (its future was dropped): take the watch back.
        if self.armed && self.watches.remove_watching(self.msg.watch).is_some() {
            send_tell(self.peer, id::UNWATCH, self.msg);
        }
    }
}

/// `ClusterSystem::watch`: watches actor `actor` of `node` for `recipient`.
///
/// `Ok` promises exactly one [`Terminated`] unless the watch is unwatched first (or this node
/// stops); `Err` promises none.
pub(crate) async fn watch(
    core: &Arc<RemoteContext>,
    node: NodeId,
    node_addr: SocketAddr,
    actor: u64,
    recipient: Recipient<Terminated>,
) -> Result<WatchId, WatchError> {
    if core.is_stopped() {
        return Err(WatchError::Request(RemoteError::SystemStopped));
    }
    let actors = &core.actors;
    let watches = &actors.watches;
    let target = WatchedActor {
        node: node.clone(),
        actor,
    };

    if node == core.local.id {
        let id = watches.add_watching(target, None, recipient)?;
        if !actors.get(actor).is_some_and(|a| a.alive()) {
            watches.fire(id, TerminatedReason::ActorStopped);
            return Ok(WatchId(id));
        }
        // Local watchers are bounded by the watcher-side count above, so this cannot fail.
        let _ = watches.add_watcher(actor, Watcher::Local(id));
        // An actor that stopped since the check above is found by the poller's first round.
        ensure_polling(actors);
        return Ok(WatchId(id));
    }

    let peer = match core.transport.peer_for_id(&node, node_addr) {
        Some(p) if p.state() != PeerState::Gone => p,
        // That incarnation is over (a newer one is known, or it left): the watch fires at
        // once, as it would have had it been placed before.
        _ => {
            let id = watches.add_watching(target, None, recipient)?;
            watches.fire(id, TerminatedReason::NodeDown);
            return Ok(WatchId(id));
        }
    };
    // Recorded before the request goes out: a `id::TERMINATED` may overtake the reply.
    let id = watches.add_watching(target, Some(Arc::clone(&peer)), recipient)?;
    let msg = WatchMsg { actor, watch: id };
    let mut pending = PendingWatch {
        watches,
        peer: &peer,
        msg,
        armed: true,
    };
    ensure_polling(actors);

    let ep = Endpoint::new(
        node.clone(),
        node_addr,
        SYSTEM_ACTOR,
        Some(Arc::clone(core)),
    );
    let deadline = core.request_timeout;
    let reply = ep
        .request::<WatchMsg, WatchReply>(id::WATCH, SerializationFormat::Bincode, msg, deadline)
        .await;
    pending.armed = false;

    match reply {
        Ok(WatchReply::Watching) => Ok(WatchId(id)),
        Ok(WatchReply::Stopped) => {
            watches.fire(id, TerminatedReason::ActorStopped);
            Ok(WatchId(id))
        }
        Ok(WatchReply::TooMany { limit }) => match watches.remove_watching(id) {
            Some(_) => Err(WatchError::TooManyWatches {
                node,
                limit: usize::try_from(limit).unwrap_or(usize::MAX),
            }),
            // It fired meanwhile (its node went down): the notification was sent, so the
            // watch counts as placed.
            None => Ok(WatchId(id)),
        },
        Err(e) => match watches.remove_watching(id) {
            Some(_) => {
                send_tell(&peer, id::UNWATCH, msg);
                Err(WatchError::Request(e))
            }
            None => Ok(WatchId(id)),
        },
    }
}

/// `ClusterSystem::unwatch`: `true` if the watch was active (it will not fire now).
pub(crate) fn unwatch(core: &RemoteContext, watch: WatchId) -> bool {
    let watches = &core.actors.watches;
    let Some(w) = watches.remove_watching(watch.0) else {
        return false;
    };
    match &w.peer {
        Some(peer) => send_tell(
            peer,
            id::UNWATCH,
            WatchMsg {
                actor: w.target.actor,
                watch: watch.0,
            },
        ),
        None if w.target.node == core.local.id => {
            watches.remove_watcher(
                w.target.actor,
                |x| matches!(x, Watcher::Local(id) if *id == watch.0),
            );
        }
        None => {}
    }
    true
}

impl LocalActors {
    /// A watch request from `peer`: registers the watch, or answers that the actor is gone or
    /// that the bound is reached.
    pub(crate) fn watch_request(
        self: &Arc<Self>,
        peer: &Arc<Peer>,
        req: WatchMsg,
    ) -> Result<WatchReply, RemoteError> {
        if self.watches.is_closed() {
            // This node is stopping: its departure, not a stop, is what the watcher will see.
            return Err(RemoteError::SystemStopped);
        }
        // Actor ids are never reused, so an unknown id is an actor that stopped (or never
        // existed): either way, nothing to wait for.
        let alive = req.actor != SYSTEM_ACTOR && self.get(req.actor).is_some_and(|a| a.alive());
        if !alive {
            return Ok(WatchReply::Stopped);
        }
        let watcher = Watcher::Remote {
            peer: Arc::clone(peer),
            watch: req.watch,
        };
        Ok(match self.watches.add_watcher(req.actor, watcher) {
            Ok(()) => {
                ensure_polling(self);
                WatchReply::Watching
            }
            Err(limit) => WatchReply::TooMany {
                limit: limit as u64,
            },
        })
    }

    /// `peer` withdraws one of its watches.
    pub(crate) fn unwatch_tell(&self, peer: &Peer, m: WatchMsg) {
        self.watches.remove_watcher(m.actor, |w| {
            matches!(w, Watcher::Remote { peer: p, watch } if p.id == peer.id && *watch == m.watch)
        });
    }

    /// `peer` reports a watched actor of its own stopped.
    pub(crate) fn terminated_tell(&self, peer: &Peer, m: WatchMsg) {
        // Only the incarnation hosting the watched actor may report it stopped: a peer cannot
        // fire watches on another node's actors.
        let genuine = {
            let t = self.watches.lock();
            t.watching
                .get(&m.watch)
                .is_some_and(|w| w.target.node == peer.id && w.target.actor == m.actor)
        };
        if genuine {
            self.watches.fire(m.watch, TerminatedReason::ActorStopped);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::Limits;
    use crate::node::{NodeInfo, NodeRole};

    fn peer(name: &str, incarnation: u64) -> Arc<Peer> {
        Arc::new(Peer::new(
            NodeInfo {
                id: NodeId::new(name, incarnation),
                addr: SocketAddr::from(([127, 0, 0, 1], 1)),
                role: NodeRole::Worker,
                labels: Default::default(),
            },
            Limits::default(),
        ))
    }

    fn remote(p: &Arc<Peer>, watch: u64) -> Watcher {
        Watcher::Remote {
            peer: Arc::clone(p),
            watch,
        }
    }

    #[test]
    fn target_side_refuses_past_the_bound_per_watching_node() {
        let w = Watches::new();
        let a = peer("a", 1);
        let b = peer("b", 1);
        for i in 0..MAX_WATCHES_PER_NODE as u64 {
            assert_eq!(w.add_watcher(7, remote(&a, i)), Ok(()));
        }
        assert_eq!(
            w.add_watcher(8, remote(&a, u64::MAX)),
            Err(MAX_WATCHES_PER_NODE)
        );
        // Another node has a bound of its own.
        assert_eq!(w.add_watcher(8, remote(&b, 1)), Ok(()));
        // Withdrawing one makes room again.
        w.remove_watcher(7, |x| matches!(x, Watcher::Remote { watch: 0, .. }));
        assert_eq!(w.add_watcher(8, remote(&a, u64::MAX)), Ok(()));
    }

    #[test]
    fn a_repeated_watch_request_is_one_record() {
        let w = Watches::new();
        let a = peer("a", 1);
        assert_eq!(w.add_watcher(7, remote(&a, 3)), Ok(()));
        assert_eq!(w.add_watcher(7, remote(&a, 3)), Ok(()));
        assert_eq!(w.lock().watched.get(&7).map(Vec::len), Some(1));
        assert_eq!(w.lock().watchers_per_node.get(&a.id), Some(&1));
    }

    #[test]
    fn node_down_forgets_the_watches_that_node_held_here() {
        let w = Watches::new();
        let old = peer("a", 1);
        let new = peer("a", 2);
        let other = peer("b", 1);
        assert_eq!(w.add_watcher(7, remote(&old, 1)), Ok(()));
        assert_eq!(w.add_watcher(7, remote(&other, 1)), Ok(()));
        assert_eq!(w.add_watcher(8, remote(&new, 1)), Ok(()));
        w.node_down(&NodeId::new("a", 1), false);
        let t = w.lock();
        assert_eq!(t.watched.get(&7).map(Vec::len), Some(1));
        assert_eq!(t.watched.get(&8).map(Vec::len), Some(1));
        assert!(!t.watchers_per_node.contains_key(&old.id));
    }
}
