//! One remote node as seen from here: its bounded send queue, its requests in flight and the
//! connection currently carrying its traffic.
//!
//! The queue is a single byte buffer of already-encoded frames behind a mutex. Senders, on
//! any thread, append whole frames (user serialization happens before the lock is taken); the
//! connection's writer task swaps the buffer out in O(1) and writes it with one call. So a
//! burst of small messages costs one lock and one `memcpy` each, and one syscall per batch.

use std::net::SocketAddr;
use std::pin::pin;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use bytes::BytesMut;
use tokio::sync::{Notify, oneshot};

use super::calls::{self, Answer, CallError, CallTable, Reply};
use super::channel::ChannelSpec;
use crate::limits::Limits;
use crate::node::{NodeId, NodeInfo, NodeRole};

/// Bound on priority-lane frames waiting for one peer (they are small and few; more means the
/// peer is not reading, and the failure detector will say so).
const MAX_URGENT_BYTES: usize = 1 << 20;

/// Connection state of a peer, as a sender sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum PeerState {
    /// No connection yet or reconnecting: sends are queued (within the bound).
    Connecting = 0,
    /// A connection carries the queue.
    Connected = 1,
    /// Reconnecting failed for longer than `give_up_after`: sends fail at once.
    Unreachable = 2,
    /// This incarnation is gone for good (it restarted, or this node shut down).
    Gone = 3,
}

impl PeerState {
    fn from_u8(v: u8) -> Self {
        match v {
            0 => PeerState::Connecting,
            1 => PeerState::Connected,
            2 => PeerState::Unreachable,
            _ => PeerState::Gone,
        }
    }
}

/// Why a frame was not queued. Nothing of it was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PushError {
    /// The queue (or the frame's lane) is full.
    #[error("send queue is full")]
    Full,
    /// The peer could not be reached for longer than `give_up_after`, membership declared
    /// it down, or (for sends that require one) no connection is attached right now.
    #[error("node is unreachable")]
    Unreachable,
    /// This incarnation is gone for good.
    #[error("node is gone")]
    Gone,
}

#[derive(Debug)]
struct Queue {
    buf: BytesMut,
    /// Membership frames, written ahead of `buf` in the next batch so that heartbeats and
    /// probes do not wait behind a backlog of user messages.
    urgent: BytesMut,
    /// Counted (user) frames in `buf`; control frames are not counted.
    messages: usize,
    /// The connection whose writer may drain the queue; 0 = none.
    writer: u64,
    /// A writer holds a batch it has not finished writing. A newly attached writer waits for
    /// it, so that batches never overtake each other across connections of one peer.
    writing: bool,
    /// Calls waiting for an answer: under the same lock as the queue, so that a request is
    /// registered and queued in one critical section.
    calls: CallTable,
}

/// The connection currently attached to a peer.
#[derive(Debug, Clone)]
pub(crate) struct Attached {
    pub(crate) conn: u64,
    /// Node that dialled this connection; used to pick one of two simultaneous connections.
    pub(crate) dialer: NodeId,
    pub(crate) retire: Arc<Signal>,
    /// Set once this connection's reader has dispatched its last frame.
    pub(crate) done: Arc<Signal>,
}

/// A one-shot, level-triggered signal that any number of tasks can wait for.
#[derive(Debug, Default)]
pub(crate) struct Signal {
    set: std::sync::atomic::AtomicBool,
    notify: Notify,
}

impl Signal {
    pub(crate) fn set(&self) {
        self.set.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    pub(crate) fn is_set(&self) -> bool {
        self.set.load(Ordering::Acquire)
    }

    pub(crate) async fn wait(&self) {
        loop {
            let mut notified = pin!(self.notify.notified());
            notified.as_mut().enable();
            if self.is_set() {
                return;
            }
            notified.await;
        }
    }
}

/// A remote node incarnation.
#[derive(Debug)]
pub(crate) struct Peer {
    pub(crate) id: NodeId,
    /// Fixed for an incarnation, so it is kept outside the lock that guards `info`.
    role: NodeRole,
    info: Mutex<NodeInfo>,
    limits: Limits,
    queue: Mutex<Queue>,
    state: AtomicU8,
    /// Wakes the attached writer when the queue goes from empty to non-empty.
    pub(crate) data_ready: Notify,
    /// Wakes senders waiting for room.
    space: Notify,
    /// Wakes the peer's driver when the connection is lost.
    pub(crate) disconnected: Notify,
    attached: Mutex<Option<Attached>>,
    /// Wakes the peer's deadline task when a call with an earlier deadline than all others
    /// is registered.
    pub(crate) deadline_moved: Notify,
    /// When the peer last lost (or never had) a connection; drives `give_up_after`.
    down_since: Mutex<Option<Instant>>,
    /// Counted frames dropped here because the peer became unreachable or gone.
    pub(crate) dropped: AtomicU64,
    created: Instant,
    /// Nanoseconds after `created` when bytes last arrived; 0 = never.
    progress: AtomicU64,
    /// Largest frame this peer accepts (from its hello); until then, our own limit.
    max_frame: AtomicU32,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks cannot leave the data half-updated (every
    // critical section is a few field writes after the fallible work), so poisoning is ignored.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Peer {
    pub(crate) fn new(info: NodeInfo, limits: Limits) -> Self {
        Self {
            id: info.id.clone(),
            role: info.role,
            info: Mutex::new(info),
            limits,
            queue: Mutex::new(Queue {
                buf: BytesMut::new(),
                urgent: BytesMut::new(),
                messages: 0,
                writer: 0,
                writing: false,
                calls: CallTable::default(),
            }),
            state: AtomicU8::new(PeerState::Connecting as u8),
            data_ready: Notify::new(),
            space: Notify::new(),
            disconnected: Notify::new(),
            attached: Mutex::new(None),
            deadline_moved: Notify::new(),
            down_since: Mutex::new(Some(Instant::now())),
            dropped: AtomicU64::new(0),
            created: Instant::now(),
            progress: AtomicU64::new(0),
            max_frame: AtomicU32::new(limits.max_frame_size),
        }
    }

    /// The largest frame that may be sent to this peer: the smaller of its limit and ours.
    pub(crate) fn max_frame(&self) -> u32 {
        self.max_frame
            .load(Ordering::Relaxed)
            .min(self.limits.max_frame_size)
    }

    pub(crate) fn set_peer_max_frame(&self, limit: u32) {
        self.max_frame.store(limit, Ordering::Relaxed);
    }

    pub(crate) fn info(&self) -> NodeInfo {
        lock(&self.info).clone()
    }

    /// Whether this peer only dials in (a client): nobody dials it, nobody is told about it,
    /// and once its connection ends it is retired rather than waited for.
    pub(crate) fn dials_in_only(&self) -> bool {
        self.role == NodeRole::Client
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        lock(&self.info).addr
    }

    pub(crate) fn update_info(&self, info: NodeInfo) {
        *lock(&self.info) = info;
    }

    pub(crate) fn state(&self) -> PeerState {
        PeerState::from_u8(self.state.load(Ordering::Acquire))
    }

    fn check_sendable(&self) -> Result<(), PushError> {
        match self.state() {
            PeerState::Connecting | PeerState::Connected => Ok(()),
            PeerState::Unreachable => Err(PushError::Unreachable),
            PeerState::Gone => Err(PushError::Gone),
        }
    }

    /// Appends one counted frame of `len` bytes if there is room.
    ///
    /// `write` must append exactly one whole frame; it runs under the queue lock, so it only
    /// copies bytes that were encoded beforehand.
    pub(crate) fn try_push(
        &self,
        len: usize,
        write: impl FnOnce(&mut BytesMut),
    ) -> Result<(), PushError> {
        self.check_sendable()?;
        let mut q = lock(&self.queue);
        let was_empty = self.append_counted(&mut q, len, write)?;
        drop(q);
        if was_empty {
            self.data_ready.notify_one();
        }
        Ok(())
    }

    /// Appends one counted frame of `len` bytes to the locked queue if there is room; returns
    /// whether the queue was empty (the writer must be woken).
    fn append_counted(
        &self,
        q: &mut Queue,
        len: usize,
        write: impl FnOnce(&mut BytesMut),
    ) -> Result<bool, PushError> {
        // An empty queue always takes one frame: config validation guarantees that the byte
        // bound holds a frame of the maximum size.
        if q.messages > 0
            && (q.messages >= self.limits.send_queue_messages
                || q.buf.len() + len > self.limits.send_queue_bytes)
        {
            return Err(PushError::Full);
        }
        let was_empty = q.buf.is_empty();
        write(&mut q.buf);
        q.messages += 1;
        Ok(was_empty)
    }

    /// Retries `attempt` each time the writer makes room, for as long as it fails with
    /// [`PushError::Full`]; gives up with `Full` at `until` (never, if `None`). The one
    /// waiting loop behind every send that waits for room.
    pub(crate) async fn when_room<T>(
        &self,
        until: Option<tokio::time::Instant>,
        mut attempt: impl FnMut() -> Result<T, PushError>,
    ) -> Result<T, PushError> {
        loop {
            let mut room = pin!(self.space.notified());
            // Registered before the attempt, so a writer draining between the attempt and the
            // await cannot be missed.
            room.as_mut().enable();
            match attempt() {
                Err(PushError::Full) => {}
                other => return other,
            }
            match until {
                Some(until) => {
                    if tokio::time::timeout_at(until, room).await.is_err() {
                        return Err(PushError::Full);
                    }
                }
                None => room.await,
            }
        }
    }

    /// Like [`try_push`](Self::try_push), but waits for room instead of failing when full.
    pub(crate) async fn push(
        &self,
        len: usize,
        write: impl FnOnce(&mut BytesMut),
    ) -> Result<(), PushError> {
        let mut write = Some(write);
        self.when_room(None, || {
            self.try_push(len, |buf| {
                if let Some(w) = write.take() {
                    w(buf);
                }
            })
        })
        .await
    }

    /// Appends an uncounted protocol frame (ping, pong, error reply, node list). These are
    /// few and small by construction, so they bypass the bound; a full queue must not stop a
    /// node from answering pings and looking dead.
    pub(crate) fn push_control(&self, write: impl FnOnce(&mut BytesMut)) {
        if self.state() == PeerState::Gone {
            return;
        }
        let mut q = lock(&self.queue);
        let was_empty = q.buf.is_empty();
        write(&mut q.buf);
        drop(q);
        if was_empty {
            self.data_ready.notify_one();
        }
    }

    /// Queues a frame of channel `spec` in the lane its class picks. `connected_only`: refuse
    /// unless a connection is attached right now. Channel frames are not counted as messages;
    /// the priority lane has a small byte budget of its own, the data lane shares the peer's
    /// byte bound.
    pub(crate) fn push_channel(
        &self,
        spec: &ChannelSpec,
        body: &[u8],
        connected_only: bool,
    ) -> Result<(), PushError> {
        match self.state() {
            PeerState::Connected => {}
            PeerState::Connecting if !connected_only => {}
            PeerState::Unreachable if spec.reaches_down && self.is_attached() => {}
            PeerState::Connecting | PeerState::Unreachable => return Err(PushError::Unreachable),
            PeerState::Gone => return Err(PushError::Gone),
        }
        let mut q = lock(&self.queue);
        let was_empty = q.buf.is_empty() && q.urgent.is_empty();
        if spec.class.is_priority(body.len()) {
            if q.urgent.len() + body.len() > MAX_URGENT_BYTES {
                return Err(PushError::Full);
            }
            crate::wire::put_channel(&mut q.urgent, spec.kind, body);
        } else {
            if q.buf.len() + body.len() > self.limits.send_queue_bytes {
                return Err(PushError::Full);
            }
            crate::wire::put_channel(&mut q.buf, spec.kind, body);
        }
        drop(q);
        if was_empty {
            self.data_ready.notify_one();
        }
        Ok(())
    }

    /// [`Self::push_channel`], but a full lane is waited on (until `until`) instead of
    /// refusing the frame.
    pub(crate) async fn push_channel_waiting(
        &self,
        spec: &ChannelSpec,
        body: &[u8],
        until: tokio::time::Instant,
    ) -> Result<(), PushError> {
        self.when_room(Some(until), || self.push_channel(spec, body, false))
            .await
    }

    /// Takes everything queued, if `conn` is the attached writer and no other writer still
    /// holds a batch. Returns the bytes and how many counted frames they hold.
    pub(crate) fn take_batch(&self, conn: u64) -> TakeBatch {
        let mut q = lock(&self.queue);
        if q.writer != conn {
            return TakeBatch::Retired;
        }
        if q.writing || (q.buf.is_empty() && q.urgent.is_empty()) {
            return TakeBatch::Empty;
        }
        q.writing = true;
        q.calls.mark_taken();
        let messages = std::mem::take(&mut q.messages);
        let bytes = if q.urgent.is_empty() {
            q.buf.split()
        } else {
            // Rare (a few membership frames a second): one copy of the data behind them.
            let mut out = q.urgent.split();
            out.extend_from_slice(&q.buf);
            q.buf.clear();
            out
        };
        drop(q);
        self.space.notify_waiters();
        TakeBatch::Batch(bytes, messages)
    }

    /// Called by a writer after its batch is on the wire (or failed).
    pub(crate) fn batch_done(&self) {
        lock(&self.queue).writing = false;
        // A writer attached meanwhile may be waiting for this batch to finish.
        self.data_ready.notify_one();
    }

    /// Registers a request answered by `Response`/`Error` frames and queues it, in one
    /// critical section: the request path takes this one lock and no timer. `write` appends
    /// exactly one frame of `len` bytes for the correlation id it is given; it is counted
    /// against the queue's bounds like [`try_push`](Self::try_push). The call fails with
    /// [`CallError::Timeout`] at `until` (the peer's deadline task does that).
    pub(crate) fn start_request(
        &self,
        until: tokio::time::Instant,
        len: usize,
        write: impl FnOnce(&mut BytesMut, u64),
    ) -> Result<(u64, oneshot::Receiver<Reply>), PushError> {
        self.check_sendable()?;
        let mut q = lock(&self.queue);
        // Again under the lock: a peer marked gone meanwhile has already failed its calls,
        // and one registered now would wait for a deadline task that has stopped.
        self.check_sendable()?;
        let correlation = q.calls.next_id();
        let was_empty = self.append_counted(&mut q, len, |b| write(b, correlation))?;
        let (rx, earliest) = q
            .calls
            .insert(correlation, calls::DATA_PLANE, Some(until), true);
        drop(q);
        if was_empty {
            self.data_ready.notify_one();
        }
        if earliest {
            self.deadline_moved.notify_one();
        }
        Ok((correlation, rx))
    }

    /// A call answered by frames of `kind` whose request `send` queues (for the correlation
    /// id it is given), waiting for the answer until `until` on the caller's own timer. For
    /// protocols whose requests are not plain data-plane frames (channel calls).
    pub(crate) async fn call<F, Fut>(
        &self,
        kind: u8,
        until: tokio::time::Instant,
        send: F,
    ) -> Result<Answer, CallError>
    where
        F: FnOnce(u64) -> Fut,
        Fut: std::future::Future<Output = Result<(), PushError>>,
    {
        let (correlation, rx) = {
            let mut q = lock(&self.queue);
            if self.state() == PeerState::Gone {
                return Err(CallError::Gone);
            }
            let (correlation, rx, _) = q.calls.register(kind, None);
            (correlation, rx)
        };
        let _forget = ForgetCall {
            peer: self,
            correlation,
        };
        let exchange = async {
            send(correlation).await?;
            // A dropped sender means the table was torn down with the peer.
            rx.await.unwrap_or(Err(CallError::Gone))
        };
        tokio::time::timeout_at(until, exchange)
            .await
            .unwrap_or(Err(CallError::Timeout))
    }

    /// Delivers the answer to call `correlation` if it is waiting for an answer of `kind`.
    /// `false` for an unknown id (late, cancelled, never made) or an answer of the wrong kind.
    pub(crate) fn complete_call(&self, correlation: u64, kind: u8, answer: Answer) -> bool {
        let tx = lock(&self.queue).calls.take_for(correlation, kind);
        tx.is_some_and(|tx| tx.send(Ok(answer)).is_ok())
    }

    /// Forgets a call whose caller gave up before its answer; a late answer is then dropped.
    pub(crate) fn forget_call(&self, correlation: u64) {
        lock(&self.queue).calls.forget(correlation);
    }

    /// Fails the calls whose deadline has passed; returns the next deadline.
    pub(crate) fn expire_calls(&self, now: tokio::time::Instant) -> Option<tokio::time::Instant> {
        let (expired, next) = lock(&self.queue).calls.take_expired(now);
        calls::fail(expired, CallError::Timeout);
        next
    }

    /// Fails the calls whose request may have reached the peer with `error`; requests still
    /// in the send queue wait for the next connection.
    fn fail_sent_calls(&self, error: CallError) {
        let sent = lock(&self.queue).calls.take_sent();
        calls::fail(sent, error);
    }

    /// Attaches a freshly handshaken connection, or decides it is the loser of two
    /// simultaneous connections. Both nodes apply the same rule, so they keep the same one:
    /// of two connections dialled by different nodes, the one dialled by the smaller node id
    /// wins; of two dialled by the same node, the newer wins (the dialler only redials once it
    /// believes the old one dead).
    ///
    /// Returns the connection to retire, if any (possibly `new` itself).
    pub(crate) fn attach(&self, new: Attached) -> Option<Attached> {
        let mut slot = lock(&self.attached);
        let loser = match slot.take() {
            None => None,
            Some(current) => {
                let keep_current = current.dialer != new.dialer && current.dialer < new.dialer;
                if keep_current {
                    *slot = Some(current);
                    return Some(new);
                }
                Some(current)
            }
        };
        {
            let mut q = lock(&self.queue);
            q.writer = new.conn;
        }
        *slot = Some(new);
        drop(slot);
        *lock(&self.down_since) = None;
        if self.state() != PeerState::Gone {
            self.state
                .store(PeerState::Connected as u8, Ordering::Release);
        }
        if let Some(l) = &loser {
            l.retire.set();
        }
        // Wake the new writer in case data is already queued.
        self.data_ready.notify_one();
        loser
    }

    /// A connection ended. If it was the attached one, the peer is now disconnected and the
    /// driver starts reconnecting; requests a writer took fail unless `fail_pending` is false
    /// (the peer announced a replacement connection). Requests still in the queue stay there
    /// for the next connection.
    pub(crate) fn detach(&self, conn: u64, fail_pending: bool) {
        let mut slot = lock(&self.attached);
        if slot.as_ref().is_none_or(|a| a.conn != conn) {
            return;
        }
        *slot = None;
        drop(slot);
        lock(&self.queue).writer = 0;
        lock(&self.down_since).get_or_insert_with(Instant::now);
        let _ = self.state.compare_exchange(
            PeerState::Connected as u8,
            PeerState::Connecting as u8,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
        if fail_pending {
            self.fail_sent_calls(CallError::Gone);
        }
        self.disconnected.notify_one();
    }

    pub(crate) fn is_attached(&self) -> bool {
        lock(&self.attached).is_some()
    }

    /// How long the peer has been without a connection, if it is.
    pub(crate) fn down_for(&self) -> Option<std::time::Duration> {
        lock(&self.down_since).map(|t| t.elapsed())
    }

    /// Reconnecting failed for too long: drop what is queued (counting it) and fail sends
    /// fast until a connection is attached again.
    pub(crate) fn mark_unreachable(&self) {
        if self
            .state
            .compare_exchange(
                PeerState::Connecting as u8,
                PeerState::Unreachable as u8,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
        {
            // Requests still queued were never sent: nothing was delivered. Requests sent on
            // a connection retired as a duplicate may have been.
            self.drop_queue(CallError::Gone, CallError::Unreachable);
            self.space.notify_waiters();
            tracing::warn!(node = %self.id, "node unreachable");
        }
    }

    /// Membership declared this incarnation down: requests in flight fail with `NodeGone`
    /// now, queued messages are dropped (and counted; queued requests fail as unreachable,
    /// since they were never written) and sends fail fast. The driver keeps redialling, so a
    /// node that was only cut off is reachable again once it answers.
    pub(crate) fn mark_down(&self) {
        if self.state() == PeerState::Gone {
            return;
        }
        self.state
            .store(PeerState::Unreachable as u8, Ordering::Release);
        self.drop_queue(CallError::Gone, CallError::Gone);
        self.space.notify_waiters();
    }

    /// Membership sees this incarnation alive again (static discovery): sends flow again on
    /// the attached connection.
    pub(crate) fn revive(&self) {
        if self.is_attached() {
            let _ = self.state.compare_exchange(
                PeerState::Unreachable as u8,
                PeerState::Connected as u8,
                Ordering::AcqRel,
                Ordering::Acquire,
            );
        }
    }

    /// This incarnation is over (it restarted, or this node is shutting down).
    pub(crate) fn mark_gone(&self) {
        self.state.store(PeerState::Gone as u8, Ordering::Release);
        self.drop_queue(CallError::Gone, CallError::Gone);
        self.space.notify_waiters();
        self.disconnected.notify_one();
        if let Some(a) = lock(&self.attached).take() {
            a.retire.set();
        }
    }

    /// Drops what is queued (counting it) and fails every call: requests dropped here
    /// unwritten with `Unreachable` (certainly not delivered), requests already written with
    /// `sent` (they may have been), channel calls with `other`. One critical section, so no
    /// writer takes a batch between the decision and the drop.
    fn drop_queue(&self, sent: CallError, other: CallError) {
        let mut q = lock(&self.queue);
        let n = std::mem::take(&mut q.messages);
        q.buf.clear();
        q.urgent.clear();
        let split = q.calls.take_all_split();
        drop(q);
        calls::fail(split.unsent, CallError::Unreachable);
        calls::fail(split.sent, sent);
        calls::fail(split.other, other);
        if n > 0 {
            self.dropped.fetch_add(n as u64, Ordering::Relaxed);
            crate::metrics::messages_dropped("unreachable", n as u64);
            tracing::warn!(node = %self.id, messages = n, "dropped queued messages to an unreachable node");
        }
    }

    /// Counted frames waiting to be written.
    pub(crate) fn queued(&self) -> usize {
        lock(&self.queue).messages
    }

    /// Bytes waiting in the send queue, control frames included.
    pub(crate) fn queued_bytes(&self) -> usize {
        let q = lock(&self.queue);
        q.buf.len() + q.urgent.len()
    }

    /// Records that bytes arrived from this peer: its process is writing, so it is alive.
    /// (Completed writes prove nothing: the kernel buffers them for a hung process too.)
    pub(crate) fn note_progress(&self) {
        let nanos = self.created.elapsed().as_nanos() as u64;
        self.progress.store(nanos.max(1), Ordering::Relaxed);
    }

    /// When bytes last arrived from this peer.
    pub(crate) fn last_progress(&self) -> Option<Instant> {
        match self.progress.load(Ordering::Relaxed) {
            0 => None,
            n => Some(self.created + std::time::Duration::from_nanos(n)),
        }
    }
}

struct ForgetCall<'a> {
    peer: &'a Peer,
    correlation: u64,
}

impl Drop for ForgetCall<'_> {
    fn drop(&mut self) {
        self.peer.forget_call(self.correlation);
    }
}

/// Result of [`Peer::take_batch`].
#[derive(Debug)]
pub(crate) enum TakeBatch {
    Batch(BytesMut, usize),
    Empty,
    /// Another connection now carries this peer's traffic.
    Retired,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::calls::DATA_PLANE;
    use crate::wire::Payload;
    use std::collections::BTreeMap;

    fn peer(messages: usize) -> Peer {
        let limits = Limits {
            send_queue_messages: messages,
            ..Limits::default()
        };
        Peer::new(
            NodeInfo {
                id: NodeId::new("p", 1),
                addr: "127.0.0.1:1".parse().expect("addr"),
                role: NodeRole::Worker,
                labels: BTreeMap::new(),
            },
            limits,
        )
    }

    fn attached(conn: u64, dialer: &str) -> Attached {
        Attached {
            conn,
            dialer: NodeId::new(dialer, 1),
            retire: Arc::new(Signal::default()),
            done: Arc::new(Signal::default()),
        }
    }

    #[test]
    fn queue_is_bounded_in_messages() {
        let p = peer(2);
        assert!(p.try_push(1, |b| b.extend_from_slice(b"a")).is_ok());
        assert!(p.try_push(1, |b| b.extend_from_slice(b"b")).is_ok());
        assert_eq!(
            p.try_push(1, |b| b.extend_from_slice(b"c")),
            Err(PushError::Full)
        );
        p.push_control(|b| b.extend_from_slice(b"!"));
        p.attach(attached(7, "a"));
        match p.take_batch(7) {
            TakeBatch::Batch(bytes, n) => {
                assert_eq!(&bytes[..], b"ab!");
                assert_eq!(n, 2);
            }
            other => panic!("expected a batch, got {other:?}"),
        }
        p.batch_done();
        assert!(p.try_push(1, |b| b.extend_from_slice(b"c")).is_ok());
    }

    #[test]
    fn membership_frames_go_out_ahead_of_queued_messages() {
        let p = peer(10);
        assert!(p.try_push(1, |b| b.extend_from_slice(b"user")).is_ok());
        // Dropped rather than queued while no connection is attached, if asked to.
        assert!(p.push_channel(&MEMBERSHIP, b"hb", true).is_err());
        assert!(p.push_channel(&MEMBERSHIP, b"swim", false).is_ok());
        p.attach(attached(7, "a"));
        let mut expected = BytesMut::new();
        crate::wire::put_channel(&mut expected, MEMBERSHIP.kind, b"swim");
        expected.extend_from_slice(b"user");
        match p.take_batch(7) {
            TakeBatch::Batch(bytes, n) => {
                assert_eq!(&bytes[..], &expected[..]);
                assert_eq!(n, 1, "membership frames are not counted as messages");
            }
            other => panic!("expected a batch, got {other:?}"),
        }
    }

    #[test]
    fn only_the_attached_writer_drains() {
        let p = peer(10);
        p.attach(attached(1, "a"));
        assert!(p.try_push(1, |b| b.extend_from_slice(b"x")).is_ok());
        assert!(matches!(p.take_batch(2), TakeBatch::Retired));
        assert!(matches!(p.take_batch(1), TakeBatch::Batch(..)));
    }

    #[test]
    fn new_writer_waits_for_the_old_batch() {
        let p = peer(10);
        p.attach(attached(1, "b"));
        assert!(p.try_push(1, |b| b.extend_from_slice(b"x")).is_ok());
        assert!(matches!(p.take_batch(1), TakeBatch::Batch(..)));
        // A connection dialled by the smaller node replaces the current one.
        let loser = p.attach(attached(2, "a"));
        assert_eq!(loser.map(|l| l.conn), Some(1));
        assert!(p.try_push(1, |b| b.extend_from_slice(b"y")).is_ok());
        assert!(
            matches!(p.take_batch(2), TakeBatch::Empty),
            "old batch still being written"
        );
        p.batch_done();
        assert!(matches!(p.take_batch(2), TakeBatch::Batch(..)));
    }

    #[test]
    fn simultaneous_connections_keep_the_smaller_dialers() {
        let p = peer(10);
        assert!(p.attach(attached(1, "a")).is_none());
        let loser = p.attach(attached(2, "b"));
        assert_eq!(
            loser.map(|l| l.conn),
            Some(2),
            "b's connection loses to a's"
        );
        // Same dialer: the newer connection replaces the old one.
        let loser = p.attach(attached(3, "a"));
        assert_eq!(loser.map(|l| l.conn), Some(1));
    }

    const MEMBERSHIP: ChannelSpec = ChannelSpec {
        kind: 0x10,
        name: "membership",
        class: super::super::channel::QueueClass::Priority,
        reaches_down: true,
    };

    fn soon() -> tokio::time::Instant {
        tokio::time::Instant::now() + std::time::Duration::from_secs(5)
    }

    #[tokio::test]
    async fn detaching_fails_requests_in_flight() {
        let p = peer(10);
        p.attach(attached(1, "a"));
        let answer = p
            .call(DATA_PLANE, soon(), |_| {
                p.detach(1, true);
                async { Ok(()) }
            })
            .await;
        assert!(matches!(answer, Err(CallError::Gone)));
        assert_eq!(p.state(), PeerState::Connecting);
    }

    #[tokio::test]
    async fn requests_survive_a_retirement_the_peer_announced() {
        let p = peer(10);
        p.attach(attached(1, "a"));
        let answer = p
            .call(DATA_PLANE, soon(), |correlation| {
                // The peer retired connection 1 as a duplicate before its replacement arrived
                // here.
                p.detach(1, false);
                p.attach(attached(2, "a"));
                p.complete_call(
                    correlation,
                    DATA_PLANE,
                    Answer::Payload(Payload {
                        format: crate::codec::SerializationFormat::Bincode,
                        compressed: false,
                        bytes: bytes::Bytes::from_static(b"ok"),
                    }),
                );
                async { Ok(()) }
            })
            .await;
        assert!(
            answer.is_ok(),
            "the reply on the new connection completes it"
        );
    }

    fn request(
        p: &Peer,
        until: tokio::time::Instant,
    ) -> Result<(u64, oneshot::Receiver<Reply>), PushError> {
        p.start_request(until, 1, |b, _| b.extend_from_slice(b"r"))
    }

    #[test]
    fn a_request_is_queued_and_registered_together_or_not_at_all() {
        let p = peer(1);
        let (_, _rx) = request(&p, soon()).expect("room for one");
        assert_eq!(p.queued(), 1);
        assert_eq!(request(&p, soon()).err(), Some(PushError::Full));
        assert_eq!(
            lock(&p.queue).calls.len(),
            1,
            "a request that did not fit was not registered"
        );
    }

    #[tokio::test]
    async fn the_deadline_task_fails_a_request_at_its_deadline() {
        let p = peer(10);
        let now = tokio::time::Instant::now();
        let (_, rx) = request(&p, now + std::time::Duration::from_millis(10)).expect("queued");
        assert_eq!(
            p.expire_calls(now),
            Some(now + std::time::Duration::from_millis(10))
        );
        assert_eq!(
            p.expire_calls(now + std::time::Duration::from_millis(10)),
            None
        );
        assert!(matches!(rx.await, Ok(Err(CallError::Timeout))));
    }

    #[tokio::test]
    async fn a_gone_peer_fails_requests_in_flight_and_takes_no_more() {
        let p = peer(10);
        p.attach(attached(1, "a"));
        let (_, rx) = request(&p, soon()).expect("queued");
        assert!(matches!(p.take_batch(1), TakeBatch::Batch(..)));
        p.mark_gone();
        assert!(matches!(rx.await, Ok(Err(CallError::Gone))));
        assert_eq!(request(&p, soon()).err(), Some(PushError::Gone));
        assert_eq!(lock(&p.queue).calls.len(), 0);
    }

    #[test]
    fn a_node_declared_down_still_gets_membership_frames_on_its_open_connection() {
        let raft_like = ChannelSpec {
            kind: 0x11,
            name: "consensus",
            reaches_down: false,
            ..MEMBERSHIP
        };
        let p = peer(10);
        p.attach(attached(1, "a"));
        p.mark_down();
        assert_eq!(p.state(), PeerState::Unreachable);
        assert_eq!(MEMBERSHIP.send(&p, b"you are down"), Ok(()));
        assert_eq!(MEMBERSHIP.send_if_connected(&p, b"hb"), Ok(()));
        assert_eq!(raft_like.send(&p, b"append"), Err(PushError::Unreachable));
        assert_eq!(
            p.try_push(1, |b| b.extend_from_slice(b"x")),
            Err(PushError::Unreachable)
        );
        assert!(matches!(p.take_batch(1), TakeBatch::Batch(..)));
        // Without a connection, nothing goes: the node is unreachable for everyone.
        p.detach(1, true);
        assert_eq!(MEMBERSHIP.send(&p, b"x"), Err(PushError::Unreachable));
    }

    #[test]
    fn unreachable_peer_drops_and_counts_its_queue() {
        let p = peer(10);
        assert!(p.try_push(1, |b| b.extend_from_slice(b"x")).is_ok());
        p.mark_unreachable();
        assert_eq!(p.dropped.load(Ordering::Relaxed), 1);
        assert_eq!(
            p.try_push(1, |b| b.extend_from_slice(b"x")),
            Err(PushError::Unreachable)
        );
        p.attach(attached(1, "a"));
        assert_eq!(p.state(), PeerState::Connected);
    }

    #[tokio::test]
    async fn a_request_dropped_from_the_queue_unwritten_is_unreachable_not_gone() {
        let p = peer(10);
        p.attach(attached(1, "a"));
        let (_, written) = request(&p, soon()).expect("queued");
        assert!(matches!(p.take_batch(1), TakeBatch::Batch(..)));
        // The connection drops: the written request may have been handled.
        p.detach(1, true);
        assert!(matches!(written.await, Ok(Err(CallError::Gone))));
        // Issued after the crash: it waits in the queue for a next connection...
        let (_, queued) = request(&p, soon()).expect("queued");
        assert_eq!(lock(&p.queue).calls.len(), 1, "a lost connection keeps it");
        // ...until membership declares the node down and drops it unwritten.
        p.mark_down();
        assert!(matches!(queued.await, Ok(Err(CallError::Unreachable))));
        assert_eq!(p.dropped.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn a_request_still_queued_survives_a_lost_connection_and_is_written_on_the_next() {
        let p = peer(10);
        p.attach(attached(1, "a"));
        let (_, rx) = request(&p, soon()).expect("queued");
        p.detach(1, true);
        p.attach(attached(2, "a"));
        match p.take_batch(2) {
            TakeBatch::Batch(bytes, 1) => assert_eq!(&bytes[..], b"r"),
            other => panic!("expected the queued request, got {other:?}"),
        }
        p.mark_gone();
        assert!(
            matches!(rx.await, Ok(Err(CallError::Gone))),
            "once written it may have been handled"
        );
    }
}
