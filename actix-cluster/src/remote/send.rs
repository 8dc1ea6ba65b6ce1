//! The send path: encode once on the caller's thread, queue the frame on the peer, and for
//! requests wait for the answer through the peer's call table.

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::oneshot;

use super::context::{RemoteContext, with_scope};
use super::error::{RemoteError, error_from_wire};
use super::local::plain_bytes;
use crate::codec::{self, SerializationFormat};
use crate::node::NodeId;
use crate::transport::{Answer, CallError, Peer, PushError, Reply};
use crate::wire;

/// Where an address points, and the node it is used from.
pub(crate) struct Endpoint {
    pub(crate) node: NodeId,
    pub(crate) node_addr: SocketAddr,
    pub(crate) actor: u64,
    /// The node this address is used from; `None` for an address decoded outside any node.
    core: Option<Arc<RemoteContext>>,
    peer: OnceLock<Arc<Peer>>,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.node, self.actor)
    }
}

impl Endpoint {
    pub(crate) fn new(
        node: NodeId,
        node_addr: SocketAddr,
        actor: u64,
        core: Option<Arc<RemoteContext>>,
    ) -> Self {
        Self {
            node,
            node_addr,
            actor,
            core,
            peer: OnceLock::new(),
        }
    }

    /// The node this address is used from, fixed when the address was made (for an address
    /// decoded from a message: the node that received it).
    pub(crate) fn core(&self) -> Result<&Arc<RemoteContext>, RemoteError> {
        self.core.as_ref().ok_or(RemoteError::SystemStopped)
    }

    pub(super) fn is_local(&self, core: &RemoteContext) -> bool {
        core.local.id == self.node
    }

    fn peer(&self, core: &Arc<RemoteContext>) -> Result<&Arc<Peer>, RemoteError> {
        if let Some(p) = self.peer.get() {
            return Ok(p);
        }
        if core.is_stopped() {
            return Err(RemoteError::SystemStopped);
        }
        // A peer object is per incarnation and never reused for another, so caching it is
        // safe: a restarted node is a new object and this one reports `Gone`.
        let p = core
            .transport
            .peer_for_id(&self.node, self.node_addr)
            .ok_or_else(|| RemoteError::NodeGone {
                node: self.node.clone(),
            })?;
        Ok(self.peer.get_or_init(|| p))
    }

    /// Queues a tell without waiting. `Err(None)` means the queue is full.
    pub(super) fn try_tell<M: Serialize>(
        &self,
        message: u32,
        format: SerializationFormat,
        msg: &M,
    ) -> Result<(), Option<RemoteError>> {
        let core = self.core()?;
        let peer = self.peer(core)?;
        let limits = &core.limits;
        with_payload(
            format,
            msg,
            limits,
            peer.max_frame(),
            |payload, compressed| {
                peer.try_push(wire::tell_frame_len(payload.len()), |b| {
                    wire::put_tell(b, self.actor, message, format, compressed, payload)
                })
            },
        )?
        .map_err(|e| match e {
            PushError::Full => None,
            other => Some(push_error(other, peer)),
        })
    }

    /// Queues a tell, waiting for room in the node's send queue.
    pub(super) async fn tell<M: Serialize>(
        &self,
        message: u32,
        format: SerializationFormat,
        msg: M,
    ) -> Result<(), RemoteError> {
        match self.try_tell(message, format, &msg) {
            Err(None) => {}
            other => return other.map_err(|e| e.unwrap_or(RemoteError::SystemStopped)),
        }
        let core = self.core()?;
        let peer = self.peer(core)?;
        let (payload, compressed) = encode_owned(format, &msg, &core.limits, peer.max_frame())?;
        drop(msg);
        peer.push(wire::tell_frame_len(payload.len()), |b| {
            wire::put_tell(b, self.actor, message, format, compressed, &payload)
        })
        .await
        .map_err(|e| push_error(e, peer))
    }

    /// Starts a request without waiting: encodes `msg` (into this thread's scratch buffers)
    /// and registers and queues it in one critical section of the peer. `Ok(None)` when the
    /// send queue is full (the caller waits for room with [`request`](Self::request)).
    pub(super) fn start_request<M: Serialize>(
        &self,
        message: u32,
        format: SerializationFormat,
        msg: &M,
        until: tokio::time::Instant,
    ) -> Result<Option<Pending>, RemoteError> {
        let core = self.core()?;
        let peer = self.peer(core)?;
        let started = with_payload(
            format,
            msg,
            &core.limits,
            peer.max_frame(),
            |payload, compressed| {
                peer.start_request(
                    until,
                    wire::request_frame_len(payload.len()),
                    |b, correlation| {
                        self.put_request(b, correlation, message, format, compressed, payload);
                    },
                )
            },
        )?;
        match started {
            Ok((correlation, rx)) => Ok(Some(Pending::new(peer, correlation, rx))),
            Err(PushError::Full) => Ok(None),
            Err(e) => Err(push_error(e, peer)),
        }
    }

    /// Appends this endpoint's request frame for call `correlation`.
    fn put_request(
        &self,
        b: &mut bytes::BytesMut,
        correlation: u64,
        message: u32,
        format: SerializationFormat,
        compressed: bool,
        payload: &[u8],
    ) {
        wire::put_request(
            b,
            self.actor,
            message,
            correlation,
            format,
            compressed,
            payload,
        );
    }

    /// Sends a request and decodes its reply, waiting for room in the send queue if needed;
    /// fails with `Timeout` after `timeout`.
    pub(crate) async fn request<M: Serialize, R: DeserializeOwned>(
        &self,
        message: u32,
        format: SerializationFormat,
        msg: M,
        timeout: Duration,
    ) -> Result<R, RemoteError> {
        let until = tokio::time::Instant::now() + timeout;
        let pending = match self.start_request(message, format, &msg, until)? {
            Some(p) => p,
            None => {
                self.start_waiting(message, format, msg, until, timeout)
                    .await?
            }
        };
        let answer = pending.await;
        self.finish(answer, timeout)
    }

    /// The slow path of a request: the queue was full, so the request is encoded once and
    /// queued as soon as there is room, within the deadline.
    async fn start_waiting<M: Serialize>(
        &self,
        message: u32,
        format: SerializationFormat,
        msg: M,
        until: tokio::time::Instant,
        timeout: Duration,
    ) -> Result<Pending, RemoteError> {
        let core = self.core()?;
        let peer = self.peer(core)?;
        let (payload, compressed) = encode_owned(format, &msg, &core.limits, peer.max_frame())?;
        drop(msg);
        self.queue_request(peer, message, format, compressed, &payload, until, timeout)
            .await
    }

    /// Queues an encoded request as soon as there is room, within `until`.
    #[allow(clippy::too_many_arguments)]
    async fn queue_request(
        &self,
        peer: &Arc<Peer>,
        message: u32,
        format: SerializationFormat,
        compressed: bool,
        payload: &[u8],
        until: tokio::time::Instant,
        timeout: Duration,
    ) -> Result<Pending, RemoteError> {
        let len = wire::request_frame_len(payload.len());
        let started = peer
            .when_room(Some(until), || {
                peer.start_request(until, len, |b, correlation| {
                    self.put_request(b, correlation, message, format, compressed, payload);
                })
            })
            .await;
        match started {
            Ok((correlation, rx)) => Ok(Pending::new(peer, correlation, rx)),
            // Still full at the deadline.
            Err(PushError::Full) => Err(RemoteError::Timeout(timeout)),
            Err(e) => Err(push_error(e, peer)),
        }
    }

    /// Turns the answer to a request into its reply: decoded (addresses inside it bound to
    /// the node that asked), or the error the other node raised, or the transport's failure.
    pub(super) fn finish<R: DeserializeOwned>(
        &self,
        answer: Result<Answer, CallError>,
        timeout: Duration,
    ) -> Result<R, RemoteError> {
        let core = self.core()?;
        let payload = match answer {
            Ok(Answer::Payload(p)) => p,
            Ok(Answer::Error { code, detail }) => {
                return Err(core
                    .actors
                    .explain(error_from_wire(&self.node, code, detail)));
            }
            Ok(Answer::Body(_)) => {
                return Err(RemoteError::ReplyDecode(
                    "a channel frame answered a request".into(),
                ));
            }
            Err(e) => {
                let peer = self.peer(core)?;
                return Err(call_error(e, peer, timeout));
            }
        };
        // Whatever fails from here on, the handler has run.
        let bytes = plain_bytes(&payload, core.limits.max_frame_size as usize)
            .map_err(|e| RemoteError::from_reply_codec(e, true))?;
        with_scope(core, || codec::decode(payload.format, &bytes))
            .map_err(|e| RemoteError::from_reply_codec(e, true))
    }
}

impl Endpoint {
    /// Queues a tell whose payload is already encoded (`plain`, uncompressed), waiting for
    /// room: how a moved actor's messages are forwarded.
    pub(crate) async fn push_raw_tell(
        &self,
        message: u32,
        format: SerializationFormat,
        plain: &[u8],
    ) -> Result<(), RemoteError> {
        let core = self.core()?;
        let peer = self.peer(core)?;
        let (payload, compressed) = raw_payload(plain, &core.limits, peer.max_frame())?;
        peer.push(wire::tell_frame_len(payload.len()), |b| {
            wire::put_tell(b, self.actor, message, format, compressed, &payload)
        })
        .await
        .map_err(|e| push_error(e, peer))
    }

    /// Queues a request whose payload is already encoded, waiting for room until `timeout`.
    pub(crate) async fn start_raw_request(
        &self,
        message: u32,
        format: SerializationFormat,
        plain: &[u8],
        timeout: Duration,
    ) -> Result<Pending, RemoteError> {
        let core = self.core()?;
        let peer = self.peer(core)?;
        let (payload, compressed) = raw_payload(plain, &core.limits, peer.max_frame())?;
        let until = tokio::time::Instant::now() + timeout;
        self.queue_request(peer, message, format, compressed, &payload, until, timeout)
            .await
    }

    /// The plain bytes of the reply to a raw request, or the error it was answered with.
    pub(crate) fn finish_raw(
        &self,
        answer: Result<Answer, CallError>,
        timeout: Duration,
    ) -> Result<Vec<u8>, RemoteError> {
        let core = self.core()?;
        match answer {
            Ok(Answer::Payload(p)) => plain_bytes(&p, core.limits.max_frame_size as usize)
                .map(std::borrow::Cow::into_owned)
                .map_err(|e| RemoteError::from_reply_codec(e, true)),
            Ok(Answer::Error { code, detail }) => Err(error_from_wire(&self.node, code, detail)),
            Ok(Answer::Body(_)) => Err(RemoteError::ReplyDecode(
                "a channel frame answered a request".into(),
            )),
            Err(e) => Err(call_error(e, self.peer(core)?, timeout)),
        }
    }
}

/// An encoded payload made ready to send again: compressed when worthwhile, and checked
/// against the frame limit.
fn raw_payload<'a>(
    plain: &'a [u8],
    limits: &crate::limits::Limits,
    max_frame: u32,
) -> Result<(std::borrow::Cow<'a, [u8]>, bool), RemoteError> {
    let mut packed = Vec::new();
    let (body, compressed) = match limits.compression_threshold {
        Some(t) if plain.len() >= t && codec::compress_into(plain, &mut packed) => {
            (std::borrow::Cow::Owned(packed), true)
        }
        _ => (std::borrow::Cow::Borrowed(plain), false),
    };
    if wire::request_frame_len(body.len()) - wire::LEN_PREFIX > max_frame as usize {
        return Err(RemoteError::PayloadTooLarge {
            size: plain.len() as u64,
            limit: u64::from(max_frame),
        });
    }
    Ok((body, compressed))
}

/// A request queued and registered with its peer, waiting for its answer (or its deadline,
/// which the peer's deadline task enforces). Dropping it before the answer forgets the call,
/// so a late answer finds nobody. Polling it takes no lock.
pub(crate) struct Pending {
    peer: Arc<Peer>,
    correlation: u64,
    rx: oneshot::Receiver<Reply>,
    done: bool,
}

impl Pending {
    fn new(peer: &Arc<Peer>, correlation: u64, rx: oneshot::Receiver<Reply>) -> Self {
        Self {
            peer: Arc::clone(peer),
            correlation,
            rx,
            done: false,
        }
    }
}

impl fmt::Debug for Pending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pending({}#{})", self.peer.id, self.correlation)
    }
}

impl Future for Pending {
    type Output = Result<Answer, CallError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let answer = ready!(Pin::new(&mut self.rx).poll(cx));
        self.done = true;
        // A dropped sender means the table was torn down with the peer.
        Poll::Ready(answer.unwrap_or(Err(CallError::Gone)))
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.done {
            self.peer.forget_call(self.correlation);
        }
    }
}

/// The remote error for a frame the transport would not queue.
pub(crate) fn push_error(e: PushError, peer: &Peer) -> RemoteError {
    match e {
        PushError::Full => RemoteError::QueueFull {
            node: peer.id.name().to_owned(),
        },
        PushError::Unreachable => RemoteError::NodeUnreachable {
            node: peer.id.name().to_owned(),
        },
        PushError::Gone => RemoteError::NodeGone {
            node: peer.id.clone(),
        },
    }
}

/// The remote error for a call the transport could not complete.
pub(crate) fn call_error(e: CallError, peer: &Peer, timeout: Duration) -> RemoteError {
    match e {
        CallError::Full => push_error(PushError::Full, peer),
        CallError::Unreachable => push_error(PushError::Unreachable, peer),
        CallError::Gone => push_error(PushError::Gone, peer),
        CallError::Timeout => RemoteError::Timeout(timeout),
    }
}

#[derive(Default)]
struct Scratch {
    plain: Vec<u8>,
    packed: Vec<u8>,
}

thread_local! {
    /// Reused encode buffers: a tell costs no allocation once the buffers have grown.
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Scratch buffers above this are released after use rather than kept per thread.
const SCRATCH_KEEP: usize = 1 << 20;

/// Encodes `msg` (compressing when worthwhile), checks the frame limit, and hands the bytes
/// to `f` without allocating.
fn with_payload<M: Serialize, R>(
    format: SerializationFormat,
    msg: &M,
    limits: &crate::limits::Limits,
    max_frame: u32,
    f: impl FnOnce(&[u8], bool) -> R,
) -> Result<R, RemoteError> {
    SCRATCH.with(|cell| {
        let mut fresh = Scratch::default();
        // Re-entrancy (a Serialize impl that sends) gets fresh buffers instead of a panic.
        let mut borrowed = cell.try_borrow_mut().ok();
        let s = borrowed.as_deref_mut().unwrap_or(&mut fresh);
        s.plain.clear();
        s.packed.clear();
        let result = encode_checked(format, msg, limits, max_frame, s).map(|compressed| {
            let body = if compressed { &s.packed } else { &s.plain };
            f(body, compressed)
        });
        if s.plain.capacity() > SCRATCH_KEEP {
            s.plain = Vec::new();
        }
        if s.packed.capacity() > SCRATCH_KEEP {
            s.packed = Vec::new();
        }
        result
    })
}

fn encode_owned<M: Serialize>(
    format: SerializationFormat,
    msg: &M,
    limits: &crate::limits::Limits,
    max_frame: u32,
) -> Result<(Vec<u8>, bool), RemoteError> {
    let mut s = Scratch::default();
    let compressed = encode_checked(format, msg, limits, max_frame, &mut s)?;
    Ok((if compressed { s.packed } else { s.plain }, compressed))
}

fn encode_checked<M: Serialize>(
    format: SerializationFormat,
    msg: &M,
    limits: &crate::limits::Limits,
    max_frame: u32,
    s: &mut Scratch,
) -> Result<bool, RemoteError> {
    codec::encode_into(format, msg, &mut s.plain).map_err(|e| RemoteError::from_codec(e, false))?;
    let compressed = matches!(limits.compression_threshold, Some(t) if s.plain.len() >= t)
        && codec::compress_into(&s.plain, &mut s.packed);
    let len = if compressed {
        s.packed.len()
    } else {
        s.plain.len()
    };
    // The largest header (a request's) must fit too, within the receiver's limit as well as
    // ours: a frame the receiver refuses would cost the whole connection.
    if wire::request_frame_len(len) - wire::LEN_PREFIX > max_frame as usize {
        return Err(RemoteError::PayloadTooLarge {
            size: s.plain.len() as u64,
            limit: u64::from(max_frame),
        });
    }
    Ok(compressed)
}
