//! Raft RPCs over the cluster transport, as `Raft` frames (kind `0x20`) on the existing mTLS
//! connections: no second port, no second handshake, and the same peer authentication.
//!
//! Frame body: `tag u8` (3 request, 2 response) · `correlation u64 LE` · `rpc u8`, then for a
//! request the sender's and the intended receiver's Raft ids (`u64 LE` each), then bincode of
//! the openraft message (a response carries `Result<Response, String>`). A malformed body is
//! counted and dropped; the caller's RPC then times out and openraft retries.
//!
//! Raft ids are checked, not names: a request for another Raft id than the receiver's is
//! refused with an error reply (the sender sees the member as unreachable). A node that
//! restarted without its Raft state has a new id, so it never answers as its former self: the
//! old member stays silent until the leader replaces it (see `node::plan`).
//!
//! Snapshots travel in chunks (rpc 5, [`super::transfer`]), one request per chunk and one
//! chunk in flight, so a snapshot of any size up to the receiver's limit crosses connections
//! whose frame limit is far smaller.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use openraft::async_runtime::WatchReceiver;
use openraft::error::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::type_config::alias::{SnapshotMetaOf, SnapshotOf, VoteOf};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::store::StateMachine;
use super::transfer::{self, Assembly, Chunk};
use super::{RaftNode, TypeConfig};
use crate::codec::{self, SerializationFormat};
use crate::node::NodeId;
use crate::transport::{self, ChannelSpec, Peer, QueueClass, Transport};

pub(super) type Raft = openraft::Raft<TypeConfig, StateMachine>;

/// Raft frames. Small ones (votes, heartbeats, replies) take the priority lane, so that a
/// backlog of user messages cannot delay them into an election; log batches and snapshot
/// chunks queue behind user messages within the byte bound.
pub(crate) const CHANNEL: ChannelSpec = ChannelSpec {
    kind: 0x20,
    name: "raft",
    class: QueueClass::PriorityUpTo(64 << 10),
    // A node declared down keeps its actors only while it hears from a working leader (see
    // `registry/supervise.rs`): consensus frames must not keep reaching it.
    reaches_down: false,
};

// 1 was a request without Raft ids, before identities were checked; never reused.
const TAG_REQUEST: u8 = 3;
const TAG_RESPONSE: u8 = 2;
/// Starts the error of a reply that refuses a request addressed to another Raft id.
const REFUSED: &str = "raft identity mismatch";
const RPC_APPEND: u8 = 1;
const RPC_VOTE: u8 = 2;
const RPC_PRE_VOTE: u8 = 3;
// 4 was a whole snapshot in one frame, before snapshots were chunked; never reused.
const RPC_SNAPSHOT_CHUNK: u8 = 5;
const RPC_TRANSFER_LEADER: u8 = 6;
/// Bytes before the bincode body of a response.
const HEADER: usize = 1 + 8 + 1;
/// Bytes before the body of a request: the header and both Raft ids.
const REQUEST_HEADER: usize = HEADER + 16;
/// Largest snapshot chunk request body; smaller when the peer's frame limit is.
const MAX_CHUNK_BODY: usize = 1 << 20;
/// An unfinished snapshot transfer with no chunk for this long is dropped by the receiver.
const TRANSFER_IDLE: Duration = Duration::from_secs(60);

type SnapshotRequest = (VoteOf<TypeConfig>, SnapshotMetaOf<TypeConfig>, Vec<u8>);

/// Both ends of the Raft RPCs of one node: the client side (calls ride the peer's call table) and the server
/// side's handle on the local `Raft`.
pub(crate) struct RaftWire {
    transport: Weak<Transport>,
    raft: Mutex<Option<Raft>>,
    /// This node's Raft id, set with `raft`.
    id: OnceLock<u64>,
    runtime: tokio::runtime::Handle,
    /// Snapshot transfer ids.
    next_transfer: AtomicU64,
    /// Snapshots arriving in chunks, one per sending node at most.
    incoming: Mutex<Assembly<NodeId>>,
    /// Malformed or unexpected frames dropped.
    pub(crate) dropped: AtomicU64,
    /// When this node last accepted entries (or a heartbeat) from a leader.
    leader_contact: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for RaftWire {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftWire").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A frame body: the header, then `payload`.
fn frame(tag: u8, correlation: u64, rpc: u8, payload: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(HEADER + payload.len());
    b.put_u8(tag);
    b.put_u64_le(correlation);
    b.put_u8(rpc);
    b.put_slice(payload);
    b.freeze()
}

/// A request frame body: the header, the Raft ids of sender and receiver, then `payload`.
fn request_frame(correlation: u64, rpc: u8, from: u64, to: u64, payload: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(REQUEST_HEADER + payload.len());
    b.put_u8(TAG_REQUEST);
    b.put_u64_le(correlation);
    b.put_u8(rpc);
    b.put_u64_le(from);
    b.put_u64_le(to);
    b.put_slice(payload);
    b.freeze()
}

fn encode<T: Serialize>(tag: u8, correlation: u64, rpc: u8, value: &T) -> Option<Bytes> {
    let mut body = Vec::with_capacity(64);
    codec::encode_into(SerializationFormat::Bincode, value, &mut body).ok()?;
    Some(frame(tag, correlation, rpc, &body))
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    codec::decode(SerializationFormat::Bincode, bytes).map_err(|e| e.to_string())
}

/// A `Raft` frame body with its header read; the payload is decoded where it is handled
/// ([`Request::decode`], [`Chunk::parse`], or the waiting call's response type).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Frame {
    /// A snapshot chunk request for Raft id `to`: a [`Chunk`] body.
    SnapshotChunk {
        correlation: u64,
        to: u64,
        body: Bytes,
    },
    /// Any other request for Raft id `to`: `rpc` says how to decode `body`.
    Request {
        correlation: u64,
        rpc: u8,
        to: u64,
        body: Bytes,
    },
    /// A reply to the call waiting on `correlation`: a bincode `Result<Response, String>`.
    Response { correlation: u64, body: Bytes },
}

/// Why a `Raft` frame body was dropped before its payload was looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
enum FrameError {
    #[error("short frame")]
    Short,
    #[error("unknown tag {0}")]
    UnknownTag(u8),
}

impl Frame {
    fn parse(mut body: Bytes) -> Result<Self, FrameError> {
        if body.len() < HEADER {
            return Err(FrameError::Short);
        }
        let tag = body.get_u8();
        let correlation = body.get_u64_le();
        let rpc = body.get_u8();
        match tag {
            TAG_REQUEST => {
                if body.len() < REQUEST_HEADER - HEADER {
                    return Err(FrameError::Short);
                }
                // The sender's id travels for operators reading a capture; only the
                // receiver's is checked.
                let _from = body.get_u64_le();
                let to = body.get_u64_le();
                Ok(if rpc == RPC_SNAPSHOT_CHUNK {
                    Frame::SnapshotChunk {
                        correlation,
                        to,
                        body,
                    }
                } else {
                    Frame::Request {
                        correlation,
                        rpc,
                        to,
                        body,
                    }
                })
            }
            TAG_RESPONSE => Ok(Frame::Response { correlation, body }),
            other => Err(FrameError::UnknownTag(other)),
        }
    }
}

/// A request other than a snapshot chunk, decoded and ready for the local `Raft`.
#[derive(Debug)]
enum Request {
    Append(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<TypeConfig>),
    PreVote(VoteRequest<TypeConfig>),
    TransferLeader(TransferLeaderRequest<TypeConfig>),
}

impl Request {
    /// Decodes the body of a request for `rpc`; `None` for an unknown rpc or a body that does
    /// not decode as its type.
    fn decode(rpc: u8, body: &[u8]) -> Option<Self> {
        match rpc {
            RPC_APPEND => decode(body).ok().map(Request::Append),
            RPC_VOTE => decode(body).ok().map(Request::Vote),
            RPC_PRE_VOTE => decode(body).ok().map(Request::PreVote),
            RPC_TRANSFER_LEADER => decode(body).ok().map(Request::TransferLeader),
            _ => None,
        }
    }
}

/// Everything this module decodes from a peer, as the receiving side would, for the fuzz
/// target: it must return for any `data`, never panic.
#[cfg(fuzzing)]
pub(crate) fn fuzz_frame(data: &[u8], max_snapshot: u64) {
    match Frame::parse(Bytes::copy_from_slice(data)) {
        Ok(Frame::SnapshotChunk { body, .. }) => {
            let Some(chunk) = Chunk::parse(&body) else {
                return;
            };
            let mut incoming = Assembly::new(max_snapshot, TRANSFER_IDLE);
            let _ = incoming.accept((), chunk, Instant::now());
            // A one-chunk snapshot's bytes are its chunk's data: decoding them whatever the
            // chunk's declared size spares the fuzzer guessing a length to reach the decoder.
            let _ = decode::<SnapshotRequest>(chunk.data);
        }
        Ok(Frame::Request { rpc, body, .. }) => {
            let _ = Request::decode(rpc, &body);
        }
        Ok(Frame::Response { body, .. }) => {
            // A live call decodes the type it waits for, whatever the frame's rpc says.
            let _ = decode::<Result<AppendEntriesResponse<TypeConfig>, String>>(&body);
            let _ = decode::<Result<VoteResponse<TypeConfig>, String>>(&body);
            let _ = decode::<Result<TransferLeaderResponse<TypeConfig>, String>>(&body);
            let _ = decode::<Result<Option<SnapshotResponse<TypeConfig>>, String>>(&body);
        }
        Err(_) => {}
    }
}

impl RaftWire {
    /// `max_snapshot` bounds the snapshots this node accepts (their declared size is checked
    /// before any byte is kept).
    pub(crate) fn new(
        transport: &Arc<Transport>,
        runtime: tokio::runtime::Handle,
        max_snapshot: u64,
    ) -> Arc<Self> {
        Arc::new(Self {
            transport: Arc::downgrade(transport),
            raft: Mutex::new(None),
            id: OnceLock::new(),
            runtime,
            next_transfer: AtomicU64::new(1),
            incoming: Mutex::new(Assembly::new(max_snapshot, TRANSFER_IDLE)),
            dropped: AtomicU64::new(0),
            leader_contact: Mutex::new(None),
        })
    }

    /// Connects the server side once the local `Raft` exists (and again when registry
    /// recovery restarted it, under the same id); requests before that are dropped (the
    /// caller retries).
    pub(super) fn set_raft(&self, raft: Raft, id: u64) {
        let _ = self.id.set(id);
        *self.raft.lock().unwrap_or_else(|e| e.into_inner()) = Some(raft);
    }

    /// The local `Raft`, once started.
    fn local_raft(&self) -> Option<Raft> {
        self.raft.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Whether a request for Raft id `to` is for this node; if not, refuses it with a reply
    /// that names both ids.
    fn addressed_here(&self, peer: &Peer, correlation: u64, rpc: u8, to: u64) -> bool {
        let Some(&me) = self.id.get() else {
            return false;
        };
        if to == me {
            return true;
        }
        tracing::debug!(from = %peer.id, to, me, "raft request for another member refused");
        crate::metrics::registry_frame_dropped();
        self.reply::<()>(
            peer,
            correlation,
            rpc,
            &Err(format!(
                "{REFUSED}: this node is Raft member {me}, not {to} (it restarted without \
                 its Raft state, or the sender's membership is stale)"
            )),
        );
        false
    }

    fn drop_frame(&self, why: &str) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
        crate::metrics::registry_frame_dropped();
        tracing::debug!("raft frame dropped: {why}");
    }

    /// Sends one request to `node` and waits for its reply within `ttl`.
    async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        node: &Addressee,
        rpc: u8,
        req: &Req,
        ttl: Duration,
    ) -> Result<Resp, CallError> {
        let mut payload = Vec::with_capacity(64);
        codec::encode_into(SerializationFormat::Bincode, req, &mut payload)
            .map_err(|e| CallError::Network(format!("request did not encode: {e}")))?;
        self.call_raw(node, rpc, &payload, ttl, false).await
    }

    /// Sends one request whose body after the header is `payload`. `wait_for_room`: a full
    /// send queue is waited on within `ttl` rather than failing the call at once.
    async fn call_raw<Resp: DeserializeOwned>(
        &self,
        node: &Addressee,
        rpc: u8,
        payload: &[u8],
        ttl: Duration,
        wait_for_room: bool,
    ) -> Result<Resp, CallError> {
        let until = tokio::time::Instant::now() + ttl;
        let from = *self
            .id
            .get()
            .ok_or_else(|| CallError::Unreachable("raft not started".into()))?;
        let peer = self.peer(&node.node)?;
        // A frame over the peer's limit would cost the whole connection.
        if REQUEST_HEADER + payload.len() + crate::wire::MAX_HEADER > peer.max_frame() as usize {
            return Err(CallError::Network(format!(
                "raft message of {} bytes exceeds the frame limit",
                payload.len()
            )));
        }
        let reply = CHANNEL
            .call(&peer, until, wait_for_room, |correlation| {
                request_frame(correlation, rpc, from, node.id, payload)
            })
            .await
            .map_err(|e| match e {
                transport::CallError::Timeout => CallError::Timeout,
                // Lost in flight: like a timeout, openraft retries.
                transport::CallError::Gone => CallError::Network("connection lost".into()),
                transport::CallError::Full | transport::CallError::Unreachable => {
                    CallError::Unreachable(format!(
                        "{} is down or its queue is full",
                        node.node.name
                    ))
                }
            })?;
        let result: Result<Resp, String> = decode(&reply).map_err(CallError::Network)?;
        result.map_err(remote_error)
    }

    /// The connection to `node`, dialing it if we have never met it (the retry then finds it).
    fn peer(&self, node: &RaftNode) -> Result<Arc<Peer>, CallError> {
        let transport = self
            .transport
            .upgrade()
            .ok_or_else(|| CallError::Unreachable("node stopped".into()))?;
        match transport.peer_by_name(&node.name) {
            Some(p) => Ok(p),
            None => {
                if let Ok(addr) = node.addr.parse() {
                    transport.dial_once(addr);
                }
                Err(CallError::Unreachable(format!(
                    "{} not connected",
                    node.name
                )))
            }
        }
    }

    /// Sends a snapshot as a sequence of chunks, each acknowledged before the next; the last
    /// one's reply is the receiver's install result.
    async fn send_snapshot(
        &self,
        node: &Addressee,
        req: &SnapshotRequest,
        ttl: Duration,
    ) -> Result<SnapshotResponse<TypeConfig>, CallError> {
        let mut bytes = Vec::new();
        codec::encode_into(SerializationFormat::Bincode, req, &mut bytes)
            .map_err(|e| CallError::Network(format!("snapshot did not encode: {e}")))?;
        let max_body = (self.peer(&node.node)?.max_frame() as usize)
            .saturating_sub(crate::wire::MAX_HEADER + REQUEST_HEADER)
            .min(MAX_CHUNK_BODY);
        let transfer = self.next_transfer.fetch_add(1, Ordering::Relaxed);
        let mut body = Vec::with_capacity(max_body);
        let mut chunks = transfer::chunks(transfer, &bytes, max_body).peekable();
        while let Some(chunk) = chunks.next() {
            body.clear();
            chunk.write(&mut body);
            let reply: Option<SnapshotResponse<TypeConfig>> = self
                .call_raw(node, RPC_SNAPSHOT_CHUNK, &body, ttl, true)
                .await?;
            match (reply, chunks.peek().is_none()) {
                (None, false) => {}
                (Some(done), true) => return Ok(done),
                (None, true) => break,
                (Some(_), false) => {
                    return Err(CallError::Network(
                        "receiver installed the snapshot before its last chunk".into(),
                    ));
                }
            }
        }
        Err(CallError::Network(
            "receiver did not install the snapshot after its last chunk".into(),
        ))
    }

    /// Takes one snapshot chunk. Every chunk but the last is acknowledged at once; the last
    /// one's snapshot is installed on the Raft runtime and answered with the result.
    fn snapshot_chunk(self: &Arc<Self>, peer: &Arc<Peer>, correlation: u64, body: &[u8]) {
        let Some(raft) = self.local_raft() else {
            self.drop_frame("raft not started");
            return;
        };
        let Some(chunk) = Chunk::parse(body) else {
            self.drop_frame("short snapshot chunk");
            return;
        };
        // Only a Raft leader sends snapshots, and client nodes are never members.
        if peer.dials_in_only() {
            self.drop_frame("snapshot chunk from a client node");
            return;
        }
        let from = &peer.id;
        let accepted = lock(&self.incoming).accept(from.clone(), chunk, Instant::now());
        let bytes = match accepted {
            Ok(None) => {
                self.reply::<Option<()>>(peer, correlation, RPC_SNAPSHOT_CHUNK, &Ok(None));
                return;
            }
            Ok(Some(bytes)) => bytes,
            Err(e) => {
                tracing::warn!(%from, "registry snapshot chunk refused: {e}");
                self.reply::<Option<()>>(
                    peer,
                    correlation,
                    RPC_SNAPSHOT_CHUNK,
                    &Err(e.to_string()),
                );
                return;
            }
        };
        let peer = Arc::clone(peer);
        let this = Arc::clone(self);
        self.runtime.spawn(async move {
            let result = match decode::<SnapshotRequest>(&bytes) {
                Ok((vote, meta, data)) => {
                    let snapshot = SnapshotOf::<TypeConfig, Vec<u8>> {
                        meta,
                        snapshot: data,
                    };
                    raft.install_full_snapshot(vote, snapshot)
                        .await
                        .map(Some)
                        .map_err(|e| e.to_string())
                }
                Err(e) => Err(format!("snapshot did not decode: {e}")),
            };
            if result.is_ok() {
                crate::metrics::registry_snapshot_received();
            }
            this.reply(&peer, correlation, RPC_SNAPSHOT_CHUNK, &result);
        });
    }

    /// How long ago this node last accepted entries or a heartbeat from a leader.
    pub(crate) fn since_leader_contact(&self) -> Option<Duration> {
        lock(&self.leader_contact).map(|t| t.elapsed())
    }

    /// Forgets an unfinished snapshot transfer that has been idle too long (called from the
    /// registry's periodic round, so that an abandoned transfer's memory is freed even if no
    /// other snapshot ever arrives).
    pub(crate) fn sweep_transfers(&self) {
        lock(&self.incoming).sweep(Instant::now());
    }

    /// Queues a response; a full queue or a gone peer drops it (the requester times out).
    fn reply<T: Serialize>(
        &self,
        peer: &Peer,
        correlation: u64,
        rpc: u8,
        result: &Result<T, String>,
    ) {
        match encode(TAG_RESPONSE, correlation, rpc, result) {
            Some(bytes) if CHANNEL.send(peer, &bytes).is_ok() => {}
            Some(_) => self.drop_frame("reply: peer down or queue full"),
            None => self.drop_frame("reply did not encode"),
        }
    }

    fn serve(self: &Arc<Self>, peer: &Arc<Peer>, correlation: u64, rpc: u8, body: Bytes) {
        let Some(raft) = self.local_raft() else {
            self.drop_frame("raft not started");
            return;
        };
        let peer = Arc::clone(peer);
        let this = Arc::clone(self);
        // Raft's API is only driven from its own runtime; replies go straight to the peer's
        // queue, which is thread-safe.
        self.runtime.spawn(async move {
            let reply: Option<Bytes> = match Request::decode(rpc, &body) {
                Some(Request::Append(r)) => {
                    let result = raft.append_entries(r).await;
                    if result.as_ref().is_ok_and(|r| {
                        matches!(
                            r,
                            AppendEntriesResponse::Success
                                | AppendEntriesResponse::PartialSuccess(_)
                                | AppendEntriesResponse::Conflict
                        )
                    }) {
                        *lock(&this.leader_contact) = Some(Instant::now());
                    }
                    encode_response(correlation, rpc, result)
                }
                Some(Request::Vote(r)) => encode_response(correlation, rpc, raft.vote(r).await),
                Some(Request::PreVote(r)) => {
                    encode_response(correlation, rpc, raft.pre_vote(r).await)
                }
                Some(Request::TransferLeader(r)) => {
                    encode_response(correlation, rpc, raft.handle_transfer_leader(r).await)
                }
                None => None,
            };
            match reply {
                Some(bytes) if CHANNEL.send(&peer, &bytes).is_ok() => {}
                Some(_) => this.drop_frame("reply: peer down or queue full"),
                None => this.drop_frame("undecodable request or unknown rpc"),
            }
        });
    }
}

/// The error a member answered with: a refusal for another Raft id makes the member
/// unreachable to openraft (it backs off), anything else is the remote call's failure.
fn remote_error(e: String) -> CallError {
    if e.starts_with(REFUSED) {
        CallError::Unreachable(e)
    } else {
        CallError::Remote(e)
    }
}

/// Encodes a request's result as the response frame body; `None` if it does not encode (never
/// expected).
fn encode_response<Resp: Serialize, E: std::fmt::Display>(
    correlation: u64,
    rpc: u8,
    result: Result<Resp, E>,
) -> Option<Bytes> {
    encode(
        TAG_RESPONSE,
        correlation,
        rpc,
        &result.map_err(|e| e.to_string()),
    )
}

impl RaftWire {
    /// A Raft frame from `peer` (the registry's channel handler passes them on).
    pub(crate) fn on_frame(self: &Arc<Self>, peer: &Arc<Peer>, body: Bytes) {
        match Frame::parse(body) {
            Ok(Frame::SnapshotChunk {
                correlation,
                to,
                body,
            }) => {
                if self.addressed_here(peer, correlation, RPC_SNAPSHOT_CHUNK, to) {
                    self.snapshot_chunk(peer, correlation, &body)
                }
            }
            Ok(Frame::Request {
                correlation,
                rpc,
                to,
                body,
            }) => {
                if self.addressed_here(peer, correlation, rpc, to) {
                    self.serve(peer, correlation, rpc, body)
                }
            }
            Ok(Frame::Response { correlation, body }) => {
                if !CHANNEL.complete(peer, correlation, body) {
                    self.drop_frame("late or unknown response");
                }
            }
            Err(FrameError::Short) => self.drop_frame("short frame"),
            Err(FrameError::UnknownTag(_)) => self.drop_frame("unknown tag"),
        }
    }

    /// If `peer` led the registry, this voter stops honouring its lease and asks the others
    /// for their votes at once (pre-vote first, so a live leader is never deposed): the
    /// lease exists so that a leader that merely went quiet keeps its place, and a process
    /// that is certainly gone has none to keep. Silence still waits out lease and timeout.
    pub(crate) fn process_gone(&self, peer: &Arc<Peer>) {
        let Some(raft) = self.local_raft() else {
            return;
        };
        let name = peer.id.name().to_owned();
        self.runtime.spawn(async move {
            let (vote, leader) = {
                let m = raft.metrics();
                let m = m.borrow_watched();
                let membership = m.membership_config.membership();
                let Some(leader) = m.current_leader.filter(|l| *l != m.id) else {
                    return;
                };
                let leads = membership.get_node(&leader).is_some_and(|n| n.name == name);
                if !leads || !membership.voter_ids().any(|v| v == m.id) {
                    return;
                }
                (m.vote, leader)
            };
            tracing::info!(leader = %name, "registry leader's process is gone; electing at once");
            // A transfer notice naming another node only ends this node's lease on `vote`
            // (and is ignored if the vote has moved on meanwhile).
            // The lease stays off until the vote changes (openraft re-arms it only then): if the
            // leader was alive after all, this voter alone grants votes without it, but a
            // candidate still needs a quorum, whose members still hold their leases.
            let notice = TransferLeaderRequest::new(vote, leader, None);
            if raft.handle_transfer_leader(notice).await.is_err() {
                return;
            }
            let unchanged = {
                let m = raft.metrics();
                let m = m.borrow_watched();
                m.vote == vote && m.current_leader == Some(leader)
            };
            if unchanged {
                let _ = raft.trigger().elect(true).await;
            }
        });
    }
}

#[derive(Debug, thiserror::Error)]
enum CallError {
    #[error("unreachable: {0}")]
    Unreachable(String),
    #[error("timed out")]
    Timeout,
    #[error("network: {0}")]
    Network(String),
    #[error("remote raft error: {0}")]
    Remote(String),
}

impl CallError {
    fn into_rpc(self) -> RPCError<TypeConfig> {
        match self {
            CallError::Unreachable(s) => RPCError::Unreachable(Unreachable::from_string(s)),
            other => RPCError::Network(NetworkError::from_string(other)),
        }
    }

    fn into_streaming(self) -> StreamingError<TypeConfig> {
        match self {
            CallError::Unreachable(s) => StreamingError::Unreachable(Unreachable::from_string(s)),
            other => StreamingError::Network(NetworkError::from_string(other)),
        }
    }
}

/// Makes one [`Client`] per target for openraft.
#[derive(Debug, Clone)]
pub(crate) struct Factory {
    pub(crate) wire: Arc<RaftWire>,
}

impl RaftNetworkFactory<TypeConfig> for Factory {
    type Network = Client;

    async fn new_client(&mut self, target: u64, node: &RaftNode) -> Client {
        Client {
            wire: Arc::clone(&self.wire),
            node: Addressee {
                id: target,
                node: node.clone(),
            },
        }
    }
}

/// The member a request is for: its Raft id (checked by the receiver) and its node (by which
/// the transport routes).
#[derive(Debug, Clone)]
struct Addressee {
    id: u64,
    node: RaftNode,
}

/// openraft's connection to one member.
#[derive(Debug)]
pub(crate) struct Client {
    wire: Arc<RaftWire>,
    node: Addressee,
}

impl RaftNetworkV2<TypeConfig> for Client {
    type SnapshotData = Vec<u8>;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.wire
            .call(&self.node, RPC_APPEND, &rpc, option.hard_ttl())
            .await
            .map_err(CallError::into_rpc)
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.wire
            .call(&self.node, RPC_VOTE, &rpc, option.hard_ttl())
            .await
            .map_err(CallError::into_rpc)
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.wire
            .call(&self.node, RPC_PRE_VOTE, &rpc, option.hard_ttl())
            .await
            .map_err(CallError::into_rpc)
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.wire
            .call(&self.node, RPC_TRANSFER_LEADER, &req, option.hard_ttl())
            .await
            .map_err(CallError::into_rpc)
    }

    async fn full_snapshot(
        &mut self,
        vote: VoteOf<TypeConfig>,
        snapshot: SnapshotOf<TypeConfig, Vec<u8>>,
        cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let req: SnapshotRequest = (vote, snapshot.meta, snapshot.snapshot);
        // Per chunk; the last one includes the receiver's install.
        let ttl = option.hard_ttl().max(Duration::from_secs(10));
        tokio::select! {
            closed = cancel => Err(StreamingError::Closed(closed)),
            r = self.wire.send_snapshot(&self.node, &req, ttl) => r.map_err(CallError::into_streaming),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Vote = VoteOf<TypeConfig>;

    #[test]
    fn a_frame_body_is_split_into_header_ids_and_payload() {
        let vote = VoteRequest::<TypeConfig>::new(Vote::new(3, 1), None);
        let mut payload = Vec::new();
        codec::encode_into(SerializationFormat::Bincode, &vote, &mut payload).expect("encodes");
        let body = request_frame(42, RPC_PRE_VOTE, 5, 6, &payload);
        let Ok(Frame::Request {
            correlation: 42,
            rpc: RPC_PRE_VOTE,
            to: 6,
            body,
        }) = Frame::parse(body)
        else {
            panic!("not a pre-vote request for Raft id 6");
        };
        let Some(Request::PreVote(back)) = Request::decode(RPC_PRE_VOTE, &body) else {
            panic!("pre-vote body did not decode");
        };
        assert_eq!(back, vote);

        let chunk = request_frame(7, RPC_SNAPSHOT_CHUNK, 5, 6, b"chunk");
        assert_eq!(
            Frame::parse(chunk),
            Ok(Frame::SnapshotChunk {
                correlation: 7,
                to: 6,
                body: Bytes::from_static(b"chunk")
            })
        );
        let reply = frame(TAG_RESPONSE, 9, RPC_VOTE, b"reply");
        assert_eq!(
            Frame::parse(reply),
            Ok(Frame::Response {
                correlation: 9,
                body: Bytes::from_static(b"reply")
            })
        );
    }

    #[test]
    fn short_frames_and_unknown_tags_are_refused() {
        let whole = request_frame(1, RPC_VOTE, 5, 6, &[]);
        assert_eq!(whole.len(), REQUEST_HEADER);
        for cut in 0..REQUEST_HEADER {
            assert_eq!(Frame::parse(whole.slice(..cut)), Err(FrameError::Short));
        }
        // Tag 1, a request without Raft ids from before they were checked, is refused.
        for tag in [1, 4] {
            assert_eq!(
                Frame::parse(frame(tag, 1, RPC_VOTE, &[0; 16])),
                Err(FrameError::UnknownTag(tag))
            );
        }
    }

    #[test]
    fn a_refusal_reads_as_an_unreachable_member() {
        let refusal: Result<(), String> = Err(format!("{REFUSED}: this node is Raft member 1"));
        let mut body = Vec::new();
        codec::encode_into(SerializationFormat::Bincode, &refusal, &mut body).expect("encodes");
        // Whatever the caller waits for, the refusal decodes as its error.
        let got: Result<VoteResponse<TypeConfig>, String> = decode(&body).expect("decodes");
        let err = got.map_err(remote_error).expect_err("a refusal");
        assert!(matches!(err, CallError::Unreachable(_)), "{err:?}");
        assert!(matches!(remote_error("other".into()), CallError::Remote(_)));
    }

    #[test]
    fn unknown_rpcs_and_undecodable_bodies_decode_to_nothing() {
        let vote = VoteRequest::<TypeConfig>::new(Vote::new(3, 1), None);
        let mut body = Vec::new();
        codec::encode_into(SerializationFormat::Bincode, &vote, &mut body).expect("encodes");
        assert!(Request::decode(RPC_VOTE, &body).is_some());
        // rpc 4 (a whole snapshot, before chunking) is retired; chunks are not decoded here.
        for rpc in [0, 4, RPC_SNAPSHOT_CHUNK, 7, u8::MAX] {
            assert!(Request::decode(rpc, &body).is_none(), "rpc {rpc}");
        }
        assert!(Request::decode(RPC_VOTE, &body[..body.len() - 1]).is_none());
        body.push(0);
        assert!(Request::decode(RPC_VOTE, &body).is_none(), "trailing byte");
    }
}
