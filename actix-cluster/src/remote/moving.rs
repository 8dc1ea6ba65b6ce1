//! The remote layer's half of a live migration: holding an actor's network messages while it
//! moves, and forwarding them, in arrival order, to where it went.
//!
//! A migration ([`ClusterSystem::migrate`](crate::ClusterSystem::migrate), run by the
//! registry above this layer) goes through the actor's [`Gate`]:
//! 1. `Holding`: messages from the network for the actor are kept in arrival order instead of
//!    entering its mailbox; the actor handles what its mailbox already holds, is serialized,
//!    and waits, handling nothing, for the outcome;
//! 2. if the move commits, `Forwarding`: what was held, then whatever still arrives for the old
//!    id, goes through one queue and one task to the new actor, so a sender's messages keep
//!    their order; the old actor stops. If it does not commit, `Open` again: what was held is
//!    delivered here, in order, before anything newer, and the actor goes on.
//!
//! The new actor starts `Adopting`: forwarded messages (from the source) enter its mailbox,
//! messages sent to it directly are kept. Once every member has applied the move (so every
//! message a member sent to the old id before its named addresses followed has reached the
//! source: each connection is FIFO), the source queues an instruction behind the forwarded
//! messages that opens the target's gate; what it kept is then delivered after them. So a
//! sender's message sent before it learned of the move is never overtaken by one sent after.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::error::RemoteError;
use super::local::LocalActors;
use super::send::Endpoint;
use crate::codec::SerializationFormat;
use crate::node::NodeId;

/// Messages one moving actor may hold; past this a tell is refused (counted as undeliverable)
/// and a request fails with [`RemoteError::QueueFull`], so a flood during a move cannot grow
/// memory without bound. A move takes a few round trips.
pub(crate) const MAX_HELD: usize = 4096;

/// Room in the forwarding queue of a moved actor: everything held fits, and later arrivals
/// wait for room (stalling the connection they came on, which is backpressure).
const FORWARD_QUEUE: usize = MAX_HELD + 1024;

/// How long a moved actor's old id keeps forwarding: named addresses follow the move on their
/// next send, so after this only addresses held without the name still use the old id.
pub(crate) const FORWARD_FOR: Duration = Duration::from_secs(60);

/// A message from the network for a moving actor, kept as it arrived (plain bytes).
pub(crate) enum Held {
    Tell {
        message: u32,
        format: SerializationFormat,
        bytes: Vec<u8>,
    },
    Request {
        message: u32,
        format: SerializationFormat,
        bytes: Vec<u8>,
        reply: oneshot::Sender<Result<Vec<u8>, RemoteError>>,
    },
    /// Not a message: the forwarder fires it once everything queued before it is in the
    /// connection's send queue (what is queued after it on that connection follows them).
    Mark(oneshot::Sender<()>),
}

/// What happens to network messages for one actor.
#[derive(Default)]
pub(crate) enum Gate {
    /// Delivered to its mailbox.
    #[default]
    Open,
    /// Kept while it moves.
    Holding(VecDeque<Held>),
    /// Sent on to where it moved.
    Forwarding(mpsc::Sender<Held>),
    /// The target of a move: messages from the source (forwarded ones) are delivered, others
    /// kept until the source says that every member has followed the move.
    Adopting {
        source: NodeId,
        held: VecDeque<Held>,
    },
}

impl Gate {
    /// Whether a message from `from` goes straight to the mailbox.
    pub(crate) fn passes(&self, from: &NodeId) -> bool {
        match self {
            Gate::Open => true,
            Gate::Adopting { source, .. } => source == from,
            Gate::Holding(_) | Gate::Forwarding(_) => false,
        }
    }
}

/// The actor serialized for a move, paused until `release` says whether it stops (`true`,
/// the move committed) or goes on (`false`; also when `release` is dropped).
pub(crate) struct Captured {
    pub(crate) bytes: Vec<u8>,
    pub(crate) release: oneshot::Sender<bool>,
}

/// Why an actor cannot be moved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Unmovable {
    #[error("its type does not declare m.migratable() in messages()")]
    NotDeclared,
    #[error("it was not started by the cluster (ClusterSystem::spawn, spawn_distributed)")]
    NotOurs,
    #[error("it is already moving")]
    Moving,
    #[error("it has stopped")]
    Stopped,
}

/// Starts the task that forwards a moved actor's messages to `to`, one at a time in queue
/// order; requests are answered through their `reply`. Runs until the queue's senders are gone
/// (the old id was forgotten) and the queue is empty.
pub(crate) fn forwarder(
    actors: &Arc<LocalActors>,
    to: Endpoint,
    timeout: Duration,
) -> mpsc::Sender<Held> {
    let (tx, mut rx) = mpsc::channel::<Held>(FORWARD_QUEUE);
    let actors = Arc::clone(actors);
    let to = Arc::new(to);
    actors.home.clone().spawn(async move {
        while let Some(held) = rx.recv().await {
            match held {
                Held::Tell {
                    message,
                    format,
                    bytes,
                } => {
                    if let Err(e) = to.push_raw_tell(message, format, &bytes).await {
                        actors.undeliverable.fetch_add(1, Ordering::Relaxed);
                        crate::metrics::message_undeliverable();
                        tracing::debug!(to = ?to, error = %e, "forwarded tell not delivered");
                    }
                }
                Held::Mark(reached) => {
                    let _ = reached.send(());
                }
                Held::Request {
                    message,
                    format,
                    bytes,
                    reply,
                } => match to.start_raw_request(message, format, &bytes, timeout).await {
                    // Queued in order; its answer is awaited beside the queue.
                    Ok(pending) => {
                        let to = Arc::clone(&to);
                        actix_rt::spawn(async move {
                            let answer = pending.await;
                            let _ = reply.send(to.finish_raw(answer, timeout));
                        });
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                },
            }
        }
    });
    tx
}
