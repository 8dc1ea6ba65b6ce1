//! The channel table: which subsystem handles each frame kind, and how its frames queue.
//!
//! The transport carries three sorts of frames. Its own (hello, ping, node lists, goodbye)
//! it handles itself; the data plane (tell, request, response, error) goes to the remote
//! layer's [`Inbound`](super::Inbound) and to the peer's [call table](super::calls);
//! everything else is a *channel* frame, a kind in [`wire::CHANNEL_KINDS`] whose body only
//! the subsystem that owns the kind understands.
//!
//! A subsystem (membership, the registry, and next placement and the broker) plugs in by
//! declaring a [`ChannelSpec`] (its kind and [`QueueClass`]) and registering, before the
//! transport starts, a [`Channel`] handler for it and, if it cares about connections, a
//! [`PeerObserver`]. It then sends with [`ChannelSpec::send`] and, for request/reply
//! protocols, [`ChannelSpec::call`], which shares the per-peer correlation table with remote
//! requests. Nothing in `wire` or the rest of `transport` changes for a new subsystem; its kind
//! and body layout are documented in `docs/protocol.md`.
//!
//! The table is sealed when the transport starts. A second handler for a kind, a kind outside
//! the channel range, or a registration after the start is a [`ChannelError`], never a silent
//! no-op.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;

use super::Inbound;
use super::calls::{Answer, CallError};
use super::peer::{Peer, PushError};
use crate::registrations::Registrations;
use crate::wire;

/// How a channel's frames queue behind the node's other traffic to a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QueueClass {
    /// Written ahead of user messages, within a small byte budget per peer; a frame that does
    /// not fit is dropped (the protocol must tolerate loss, as SWIM does).
    Priority,
    /// Bodies up to this many bytes take the priority lane; larger ones queue behind user
    /// messages within the peer's byte bound (Raft: votes and heartbeats must not wait
    /// behind a backlog, log batches and snapshots may).
    PriorityUpTo(usize),
}

impl QueueClass {
    pub(crate) fn is_priority(self, body_len: usize) -> bool {
        match self {
            QueueClass::Priority => true,
            QueueClass::PriorityUpTo(max) => body_len <= max,
        }
    }
}

/// One subsystem's frame kind and how its frames queue. Declared once, as a constant, by the
/// subsystem that owns the kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChannelSpec {
    /// Frame kind, in [`wire::CHANNEL_KINDS`].
    pub(crate) kind: u8,
    /// For logs and metrics.
    pub(crate) name: &'static str,
    pub(crate) class: QueueClass,
    /// Whether frames still go to a node membership declared down, over a connection that
    /// is still open. Membership's own frames must: they are how a node declared down while
    /// it ran (paused, or cut off on a connection that stayed open) learns it and rejoins.
    /// Everything else is refused at once, as for any unreachable node.
    pub(crate) reaches_down: bool,
}

impl ChannelSpec {
    /// Queues `body` to `peer` unless the peer is unreachable or gone, or the lane is full.
    pub(crate) fn send(&self, peer: &Peer, body: &[u8]) -> Result<(), PushError> {
        peer.push_channel(self, body, false)
    }

    /// Like [`send`](Self::send), but only while a connection is attached right now (a
    /// heartbeat is worthless once it has waited for a reconnect).
    pub(crate) fn send_if_connected(&self, peer: &Peer, body: &[u8]) -> Result<(), PushError> {
        peer.push_channel(self, body, true)
    }

    /// Like [`send`](Self::send), but waits (until `until`) for room instead of failing when
    /// the lane is full: for frames whose loss would cost far more than the wait.
    pub(crate) async fn send_waiting(
        &self,
        peer: &Peer,
        body: &[u8],
        until: tokio::time::Instant,
    ) -> Result<(), PushError> {
        peer.push_channel_waiting(self, body, until).await
    }

    /// A request/reply exchange on this channel: `frame` builds the request body for the
    /// correlation id it is given; the answer arrives when this channel's handler passes the
    /// reply body to [`complete`](Self::complete) with the same id. Fails with the peer's
    /// state when it cannot be queued, with `Gone`/`Unreachable` when the connection is lost
    /// first, and with `Timeout` at `until`.
    pub(crate) async fn call(
        &self,
        peer: &Peer,
        until: tokio::time::Instant,
        wait_for_room: bool,
        frame: impl FnOnce(u64) -> Bytes,
    ) -> Result<Bytes, CallError> {
        let answer = peer
            .call(self.kind, until, |correlation| {
                let body = frame(correlation);
                async move {
                    if wait_for_room {
                        self.send_waiting(peer, &body, until).await
                    } else {
                        self.send(peer, &body)
                    }
                }
            })
            .await?;
        match answer {
            Answer::Body(body) => Ok(body),
            // Never produced for a channel call: `complete` only accepts bodies of its kind.
            Answer::Payload(_) | Answer::Error { .. } => Err(CallError::Gone),
        }
    }

    /// Completes the call `correlation` made with [`call`](Self::call) on this channel.
    /// `false` when no such call is waiting (late, cancelled, or never made).
    pub(crate) fn complete(&self, peer: &Peer, correlation: u64, body: Bytes) -> bool {
        peer.complete_call(correlation, self.kind, Answer::Body(body))
    }
}

/// Receives the frames of one channel. Called on the node's network thread, in arrival order
/// per connection; it must not block (hand long work to a task of its own).
pub(crate) trait Channel: Send + Sync + 'static {
    fn on_frame(&self, peer: &Arc<Peer>, body: Bytes);
}

/// What happened to a peer, for subsystems that follow connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PeerEvent {
    /// A connection to the peer is up.
    Connected,
    /// The peer's last connection ended.
    Disconnected,
    /// The peer announced a clean shutdown of this incarnation.
    Goodbye,
    /// The peer's process is gone for certain: after its connection closed, its address
    /// refused a new connection or a new incarnation answered there. Never sent for mere
    /// silence, which may be a partition.
    ProcessGone,
}

/// Follows peers' connections. Called on the node's network thread; must not block.
pub(crate) trait PeerObserver: Send + Sync + 'static {
    fn on_peer(&self, peer: &Arc<Peer>, event: PeerEvent);
}

/// A handler registered through a weak reference: once its owner is gone, frames are
/// dropped. For owners that hold the transport themselves, which must not be kept alive by it.
impl<T: Channel> Channel for std::sync::Weak<T> {
    fn on_frame(&self, peer: &Arc<Peer>, body: Bytes) {
        if let Some(owner) = self.upgrade() {
            owner.on_frame(peer, body);
        }
    }
}

impl<T: PeerObserver> PeerObserver for std::sync::Weak<T> {
    fn on_peer(&self, peer: &Arc<Peer>, event: PeerEvent) {
        if let Some(owner) = self.upgrade() {
            owner.on_peer(peer, event);
        }
    }
}

/// Why a registration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ChannelError {
    #[error("frame kind {0:#04x} is outside the channel range")]
    OutOfRange(u8),
    #[error("frame kind {kind:#04x} is already registered to {owner}")]
    Duplicate { kind: u8, owner: &'static str },
    #[error("the transport has started; channels are registered before it starts")]
    Started,
}

struct Entry {
    spec: ChannelSpec,
    handler: Arc<dyn Channel>,
}

#[derive(Default)]
struct Sealed {
    by_kind: HashMap<u8, Entry>,
    observers: Vec<Arc<dyn PeerObserver>>,
    /// The data plane's receiver (the remote layer).
    inbound: Option<Arc<dyn Inbound>>,
}

/// The channel table of one transport: open for registrations until sealed, read-only after.
pub(crate) struct Channels {
    table: Registrations<Sealed>,
}

impl std::fmt::Debug for Channels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kinds: Vec<_> = self.table.get().map_or_else(Vec::new, |s| {
            s.by_kind
                .values()
                .map(|e| (e.spec.kind, e.spec.name))
                .collect()
        });
        f.debug_struct("Channels").field("sealed", &kinds).finish()
    }
}

impl Channels {
    pub(crate) fn new() -> Self {
        Self {
            table: Registrations::new(),
        }
    }

    fn with_open<T>(
        &self,
        f: impl FnOnce(&mut Sealed) -> Result<T, ChannelError>,
    ) -> Result<T, ChannelError> {
        self.table.register(f).unwrap_or(Err(ChannelError::Started))
    }

    pub(crate) fn register(
        &self,
        spec: ChannelSpec,
        handler: Arc<dyn Channel>,
    ) -> Result<(), ChannelError> {
        if !wire::CHANNEL_KINDS.contains(&spec.kind) {
            return Err(ChannelError::OutOfRange(spec.kind));
        }
        self.with_open(|t| {
            if let Some(e) = t.by_kind.get(&spec.kind) {
                return Err(ChannelError::Duplicate {
                    kind: spec.kind,
                    owner: e.spec.name,
                });
            }
            t.by_kind.insert(spec.kind, Entry { spec, handler });
            Ok(())
        })
    }

    pub(crate) fn set_inbound(&self, inbound: Arc<dyn Inbound>) -> Result<(), ChannelError> {
        self.with_open(|t| {
            if t.inbound.is_some() {
                return Err(ChannelError::Duplicate {
                    kind: wire::FrameKind::Tell as u8,
                    owner: "the data plane",
                });
            }
            t.inbound = Some(inbound);
            Ok(())
        })
    }

    /// The data plane's receiver, once sealed.
    pub(crate) fn inbound(&self) -> Option<&Arc<dyn Inbound>> {
        self.table.get()?.inbound.as_ref()
    }

    pub(crate) fn observe(&self, observer: Arc<dyn PeerObserver>) -> Result<(), ChannelError> {
        self.with_open(|t| {
            t.observers.push(observer);
            Ok(())
        })
    }

    /// Ends registration. Called once, when the transport starts.
    pub(crate) fn seal(&self) {
        self.table.seal();
    }

    /// Hands a channel frame to its handler; `false` if no subsystem owns the kind.
    pub(crate) fn deliver(&self, peer: &Arc<Peer>, kind: u8, body: Bytes) -> bool {
        match self.table.get().and_then(|t| t.by_kind.get(&kind)) {
            Some(e) => {
                e.handler.on_frame(peer, body);
                true
            }
            None => false,
        }
    }

    pub(crate) fn notify(&self, peer: &Arc<Peer>, event: PeerEvent) {
        if let Some(t) = self.table.get() {
            for o in &t.observers {
                o.on_peer(peer, event);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Nop;
    impl Channel for Nop {
        fn on_frame(&self, _: &Arc<Peer>, _: Bytes) {}
    }

    const A: ChannelSpec = ChannelSpec {
        kind: 0x10,
        name: "a",
        class: QueueClass::Priority,
        reaches_down: false,
    };

    #[test]
    fn a_kind_has_one_owner_and_registration_ends_at_the_seal() {
        let c = Channels::new();
        assert_eq!(c.register(A, Arc::new(Nop)), Ok(()));
        assert_eq!(
            c.register(ChannelSpec { name: "b", ..A }, Arc::new(Nop)),
            Err(ChannelError::Duplicate {
                kind: 0x10,
                owner: "a"
            })
        );
        assert_eq!(
            c.register(ChannelSpec { kind: 0x05, ..A }, Arc::new(Nop)),
            Err(ChannelError::OutOfRange(0x05))
        );
        c.seal();
        assert_eq!(
            c.register(ChannelSpec { kind: 0x11, ..A }, Arc::new(Nop)),
            Err(ChannelError::Started)
        );
    }

    #[test]
    fn queue_classes_pick_the_lane_by_size() {
        assert!(QueueClass::Priority.is_priority(1 << 30));
        assert!(QueueClass::PriorityUpTo(10).is_priority(10));
        assert!(!QueueClass::PriorityUpTo(10).is_priority(11));
    }
}
