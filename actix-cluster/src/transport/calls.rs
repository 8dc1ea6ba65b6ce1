//! Request/reply over one peer: correlation ids, the calls waiting for an answer, and their
//! deadlines.
//!
//! One table per peer serves every protocol that asks and waits: remote requests (answered by
//! `Response`/`Error` frames), system requests (the same frames, to actor 0) and channel calls
//! such as Raft RPCs (answered by a frame of the channel's own kind). Ids come from one counter,
//! so they never collide across protocols, and each waiting call remembers which frame kind may
//! answer it: an answer of another kind is refused, so a peer cannot complete a Raft RPC with a
//! remote reply or the other way round. When the connection carrying the calls is lost, the
//! peer fails them all at once with the reason.
//!
//! The table lives under the peer's queue lock, so a request is registered and queued in one
//! critical section: the request path takes one lock and no timer. Deadlines are kept in the
//! table, ordered; the peer's deadline task (see `Transport::expire_calls`) sleeps until the
//! earliest and fails what has expired with [`CallError::Timeout`]. With one timeout for all
//! requests, deadlines arrive in order and a new call never wakes that task.

use std::collections::{BTreeSet, HashMap};

use bytes::Bytes;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::peer::PushError;
use crate::wire::{FrameKind, Payload};

/// The answer kind of calls answered by `Response` and `Error` frames (remote and system
/// requests).
pub(crate) const DATA_PLANE: u8 = FrameKind::Response as u8;

/// What answered a call.
#[derive(Debug)]
pub(crate) enum Answer {
    /// A `Response` frame's payload.
    Payload(Payload),
    /// An `Error` frame: the remote layer's code and detail, which only it interprets.
    Error { code: u16, detail: String },
    /// The body of a channel frame.
    Body(Bytes),
}

/// Why a call got no answer. The transport's own reasons; the layer that made the call turns
/// them into its error type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum CallError {
    /// The peer's send queue was full and the call chose not to wait. Nothing was sent.
    #[error("send queue is full")]
    Full,
    /// The peer could not be reached for longer than `give_up_after`. Nothing was sent, or
    /// what was queued was dropped unsent.
    #[error("node is unreachable")]
    Unreachable,
    /// The connection was lost, or the peer's incarnation declared down or gone, while the
    /// call was in flight: it may or may not have been handled.
    #[error("node is gone")]
    Gone,
    /// No answer before the deadline; the request may still be handled later.
    #[error("no answer before the deadline")]
    Timeout,
}

impl From<PushError> for CallError {
    fn from(e: PushError) -> Self {
        match e {
            PushError::Full => CallError::Full,
            PushError::Unreachable => CallError::Unreachable,
            PushError::Gone => CallError::Gone,
        }
    }
}

/// What a caller waits on.
pub(crate) type Reply = Result<Answer, CallError>;

struct Waiting {
    /// The frame kind allowed to answer.
    kind: u8,
    tx: oneshot::Sender<Reply>,
    /// When the table itself fails the call; `None` when the caller keeps its own timer.
    until: Option<Instant>,
    /// Registered together with its request frame in the peer's send queue
    /// ([`Peer::start_request`](super::peer::Peer::start_request)), so whether the frame was
    /// handed to a writer is known from its id.
    queued: bool,
}

/// The calls of a table, by what is known about their request; see
/// [`CallTable::take_all_split`].
#[derive(Default)]
pub(crate) struct SplitCalls {
    pub(crate) unsent: Vec<oneshot::Sender<Reply>>,
    pub(crate) sent: Vec<oneshot::Sender<Reply>>,
    pub(crate) other: Vec<oneshot::Sender<Reply>>,
}

/// The calls in flight to one peer. Plain data: the peer guards it with its queue lock.
#[derive(Default)]
pub(crate) struct CallTable {
    waiting: HashMap<u64, Waiting>,
    deadlines: BTreeSet<(Instant, u64)>,
    next: u64,
    /// Every queued call with an id up to this one had its request frame taken by a writer
    /// (it may have reached the peer); a queued call above it is still in the send queue.
    taken_upto: u64,
}

impl std::fmt::Debug for CallTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallTable")
            .field("waiting", &self.waiting.len())
            .finish()
    }
}

impl CallTable {
    /// Registers a call answered by frames of `kind`; returns its correlation id, the receiver
    /// of its answer, and whether `until` is now the earliest deadline (the deadline task must
    /// be told).
    pub(crate) fn register(
        &mut self,
        kind: u8,
        until: Option<Instant>,
    ) -> (u64, oneshot::Receiver<Reply>, bool) {
        let correlation = self.next_id();
        let (rx, earliest) = self.insert(correlation, kind, until, false);
        (correlation, rx, earliest)
    }

    /// The id the next call gets; a caller that writes its request before registering it (so
    /// that a request that does not fit is never registered) takes it first.
    pub(crate) fn next_id(&mut self) -> u64 {
        self.next += 1;
        self.next
    }

    /// Registers call `correlation` (from [`next_id`](Self::next_id)); see
    /// [`register`](Self::register). `queued`: its request frame was appended to the send
    /// queue in the same critical section.
    pub(crate) fn insert(
        &mut self,
        correlation: u64,
        kind: u8,
        until: Option<Instant>,
        queued: bool,
    ) -> (oneshot::Receiver<Reply>, bool) {
        let (tx, rx) = oneshot::channel();
        let earliest = until.is_some_and(|u| self.deadlines.first().is_none_or(|(d, _)| u < *d));
        if let Some(u) = until {
            self.deadlines.insert((u, correlation));
        }
        self.waiting.insert(
            correlation,
            Waiting {
                kind,
                tx,
                until,
                queued,
            },
        );
        (rx, earliest)
    }

    fn take(&mut self, correlation: u64) -> Option<Waiting> {
        let w = self.waiting.remove(&correlation)?;
        if let Some(u) = w.until {
            self.deadlines.remove(&(u, correlation));
        }
        Some(w)
    }

    /// Takes call `correlation` if it waits for an answer of `kind`; the caller delivers it
    /// outside the lock. `None` for an unknown id (late, cancelled, never made) or an answer of
    /// the wrong kind.
    pub(crate) fn take_for(
        &mut self,
        correlation: u64,
        kind: u8,
    ) -> Option<oneshot::Sender<Reply>> {
        if self.waiting.get(&correlation)?.kind != kind {
            return None;
        }
        self.take(correlation).map(|w| w.tx)
    }

    /// Forgets a call whose caller gave up.
    pub(crate) fn forget(&mut self, correlation: u64) {
        self.take(correlation);
    }

    /// Records that a writer took the whole send queue: the frames of every call registered
    /// so far are on their way.
    pub(crate) fn mark_taken(&mut self) {
        self.taken_upto = self.next;
    }

    /// Whether call `correlation`'s request frame is still in the send queue.
    fn unsent(&self, correlation: u64, w: &Waiting) -> bool {
        w.queued && correlation > self.taken_upto
    }

    /// Takes every call whose request may have reached the peer, leaving those whose frame
    /// is still in the send queue (a next connection writes them).
    pub(crate) fn take_sent(&mut self) -> Vec<oneshot::Sender<Reply>> {
        let sent: Vec<u64> = self
            .waiting
            .iter()
            .filter(|(c, w)| !self.unsent(**c, w))
            .map(|(c, _)| *c)
            .collect();
        sent.into_iter()
            .filter_map(|c| self.take(c))
            .map(|w| w.tx)
            .collect()
    }

    /// Takes every call, split three ways: queued requests whose frame is still in the send
    /// queue (never written: when the queue is dropped with them, they were certainly not
    /// delivered), queued requests a writer took, and calls whose frames travel on their own
    /// (channel calls).
    pub(crate) fn take_all_split(&mut self) -> SplitCalls {
        self.deadlines.clear();
        let mut split = SplitCalls::default();
        let taken_upto = self.taken_upto;
        for (c, w) in self.waiting.drain() {
            match (w.queued, c > taken_upto) {
                (true, true) => split.unsent.push(w.tx),
                (true, false) => split.sent.push(w.tx),
                (false, _) => split.other.push(w.tx),
            }
        }
        split
    }

    /// Takes the calls whose deadline is at or before `now`, and returns the next deadline.
    pub(crate) fn take_expired(
        &mut self,
        now: Instant,
    ) -> (Vec<oneshot::Sender<Reply>>, Option<Instant>) {
        let mut expired = Vec::new();
        while let Some(&(until, correlation)) = self.deadlines.first() {
            if until > now {
                return (expired, Some(until));
            }
            self.deadlines.pop_first();
            if let Some(w) = self.waiting.remove(&correlation) {
                expired.push(w.tx);
            }
        }
        (expired, None)
    }

    /// Calls waiting for an answer.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.waiting.len()
    }
}

/// Fails the calls taken out of the table with `error`.
pub(crate) fn fail(calls: Vec<oneshot::Sender<Reply>>, error: CallError) {
    for tx in calls {
        let _ = tx.send(Err(error));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn an_answer_is_taken_only_by_the_kind_that_may_answer() {
        let mut t = CallTable::default();
        let (c, _rx, _) = t.register(0x20, None);
        assert!(t.take_for(c, DATA_PLANE).is_none());
        assert!(t.take_for(c, 0x20).is_some());
        assert!(t.take_for(c, 0x20).is_none(), "taken once");
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn deadlines_expire_in_order_and_a_later_one_is_not_the_earliest() {
        let mut t = CallTable::default();
        let now = Instant::now();
        let (a, _ra, first) = t.register(DATA_PLANE, Some(now + Duration::from_millis(10)));
        let (_b, _rb, second) = t.register(DATA_PLANE, Some(now + Duration::from_millis(20)));
        assert!(first, "the first deadline is the earliest");
        assert!(!second, "a later deadline needs no wake-up");
        let (expired, next) = t.take_expired(now + Duration::from_millis(15));
        assert_eq!(expired.len(), 1);
        assert_eq!(next, Some(now + Duration::from_millis(20)));
        assert!(
            t.take_for(a, DATA_PLANE).is_none(),
            "expired calls are gone"
        );
        t.forget(_b);
        let (expired, next) = t.take_expired(now + Duration::from_secs(1));
        assert!(expired.is_empty());
        assert_eq!(next, None);
    }

    #[test]
    fn ids_never_repeat() {
        let mut t = CallTable::default();
        let (a, _, _) = t.register(DATA_PLANE, None);
        t.forget(a);
        let (b, _, _) = t.register(0x20, None);
        assert_ne!(a, b);
    }

    #[test]
    fn calls_whose_frame_no_writer_took_are_told_apart() {
        let mut t = CallTable::default();
        let a = t.next_id();
        let _ra = t.insert(a, DATA_PLANE, None, true);
        t.mark_taken();
        let b = t.next_id();
        let _rb = t.insert(b, DATA_PLANE, None, true);
        // A channel call's frame is pushed separately: never counted as unsent.
        let (_c, _rc, _) = t.register(0x20, None);
        let sent = t.take_sent();
        assert_eq!(
            sent.len(),
            2,
            "a's frame was taken; the channel call may be out"
        );
        assert_eq!(t.len(), 1, "b stays for the next connection");
        let split = t.take_all_split();
        assert_eq!(
            (split.unsent.len(), split.sent.len(), split.other.len()),
            (1, 0, 0)
        );
    }
}
