//! Request/reply over one peer: correlation ids, the table of calls waiting for an answer,
//! and their deadlines.
//!
//! One table per peer serves every protocol that asks and waits: remote requests (answered by
//! `Response`/`Error` frames), system requests (the same frames, to actor 0) and channel calls
//! such as Raft RPCs (answered by a frame of the channel's own kind). Ids come from one counter,
//! so they never collide across protocols, and each waiting call remembers which frame kind may
//! answer it: an answer of another kind is refused, so a peer cannot complete a Raft RPC with
//! a remote reply or the other way round. When the connection carrying the calls is lost, the
//! peer fails them all at once with the reason.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use tokio::sync::oneshot;

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

type Reply = Result<Answer, CallError>;

struct Waiting {
    /// The frame kind allowed to answer.
    kind: u8,
    tx: oneshot::Sender<Reply>,
}

/// The calls in flight to one peer.
#[derive(Default)]
pub(crate) struct Calls {
    waiting: Mutex<HashMap<u64, Waiting>>,
    next: AtomicU64,
}

impl std::fmt::Debug for Calls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Calls")
            .field("waiting", &self.lock().len())
            .finish()
    }
}

impl Calls {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Waiting>> {
        // Every critical section is one map operation: a panic cannot leave it half-done.
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes a call answered by frames of `kind`: registers it, lets `send` queue the request
    /// for the correlation id it is given, and waits for the answer until `until`.
    ///
    /// The call is registered before the request is queued (the answer may arrive before
    /// `send` returns) and forgotten when this future completes or is dropped, so a late answer
    /// finds nobody and is discarded.
    pub(crate) async fn call<F, Fut>(
        &self,
        kind: u8,
        until: tokio::time::Instant,
        send: F,
    ) -> Result<Answer, CallError>
    where
        F: FnOnce(u64) -> Fut,
        Fut: Future<Output = Result<(), PushError>>,
    {
        let correlation = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let (tx, rx) = oneshot::channel();
        self.lock().insert(correlation, Waiting { kind, tx });
        let _forget = Forget {
            calls: self,
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
    pub(crate) fn complete(&self, correlation: u64, kind: u8, answer: Answer) -> bool {
        let mut waiting = self.lock();
        match waiting.get(&correlation) {
            Some(w) if w.kind == kind => {}
            _ => return false,
        }
        let Some(w) = waiting.remove(&correlation) else {
            return false;
        };
        drop(waiting);
        w.tx.send(Ok(answer)).is_ok()
    }

    /// Fails every call in flight with `error`.
    pub(crate) fn fail_all(&self, error: CallError) {
        let waiting = std::mem::take(&mut *self.lock());
        for (_, w) in waiting {
            let _ = w.tx.send(Err(error));
        }
    }

    /// Calls waiting for an answer.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}

struct Forget<'a> {
    calls: &'a Calls,
    correlation: u64,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.calls.lock().remove(&self.correlation);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn soon() -> tokio::time::Instant {
        tokio::time::Instant::now() + Duration::from_secs(5)
    }

    #[tokio::test]
    async fn an_answer_of_the_calls_kind_completes_it() {
        let calls = Calls::default();
        let answer = calls
            .call(0x20, soon(), |c| {
                assert!(calls.complete(c, 0x20, Answer::Body(Bytes::from_static(b"ok"))));
                async { Ok(()) }
            })
            .await;
        assert!(matches!(answer, Ok(Answer::Body(b)) if &b[..] == b"ok"));
        assert_eq!(calls.len(), 0);
    }

    #[tokio::test]
    async fn an_answer_of_another_kind_is_refused() {
        let calls = Calls::default();
        let answer = calls
            .call(
                0x20,
                tokio::time::Instant::now() + Duration::from_millis(20),
                |c| {
                    assert!(!calls.complete(c, DATA_PLANE, Answer::Body(Bytes::new())));
                    async { Ok(()) }
                },
            )
            .await;
        assert!(matches!(answer, Err(CallError::Timeout)));
        assert_eq!(calls.len(), 0, "a timed-out call is forgotten");
    }

    #[tokio::test]
    async fn a_lost_connection_fails_every_call_in_flight() {
        let calls = Calls::default();
        let answer = calls
            .call(DATA_PLANE, soon(), |_| {
                calls.fail_all(CallError::Gone);
                async { Ok(()) }
            })
            .await;
        assert!(matches!(answer, Err(CallError::Gone)));
    }

    #[tokio::test]
    async fn a_request_that_cannot_be_queued_fails_with_the_peers_state() {
        let calls = Calls::default();
        let answer = calls
            .call(DATA_PLANE, soon(), |_| async {
                Err(PushError::Unreachable)
            })
            .await;
        assert!(matches!(answer, Err(CallError::Unreachable)));
        assert_eq!(calls.len(), 0);
    }
}
