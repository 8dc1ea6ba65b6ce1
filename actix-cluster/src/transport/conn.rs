//! One connection: the stream (TCP or TLS over TCP), the cluster handshake, and the reader
//! and writer tasks that move frames between the socket and the peer's queue.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf, ReadHalf, WriteHalf};
use tokio::net::TcpStream;

use super::admission::BudgetShare;
use super::calls::{Answer, DATA_PLANE};
use super::channel::PeerEvent;
use super::peer::{Peer, Signal, TakeBatch};
use super::{HandshakeError, Transport};
use crate::node::{NodeInfo, validate_node_name};
use crate::tls;
use crate::wire::{self, Frame, FrameDecoder, Hello};

/// GoAway codes. The reason text is for humans; the code is for programs.
pub(crate) mod goaway {
    /// Another connection to the same node was kept.
    pub(crate) const DUPLICATE: u16 = 1;
    /// The node is shutting down.
    pub(crate) const SHUTDOWN: u16 = 2;
    /// The peer's handshake was refused (wrong cluster, version, name, certificate).
    pub(crate) const REJECTED: u16 = 3;
    /// The peer's hello named another cluster; the reason is this node's cluster name, so that
    /// the refused node can say which cluster it reached.
    pub(crate) const WRONG_CLUSTER: u16 = 4;
}

/// Largest handshake frame accepted, so that a stray client cannot make a node reserve the
/// full frame limit before it has even identified itself.
const HANDSHAKE_FRAME_LIMIT: u32 = 16 << 10;

/// A plain or TLS-wrapped TCP stream.
#[derive(Debug)]
pub(crate) enum Stream {
    Plain(TcpStream),
    Client(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    Server(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Client(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Stream::Server(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Client(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Stream::Server(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Client(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Stream::Server(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Client(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Stream::Server(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

impl Stream {
    /// The TCP socket under any TLS layer.
    #[cfg(feature = "fault-injection")]
    pub(crate) fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Client(s) => s.get_ref().0,
            Stream::Server(s) => s.get_ref().0,
        }
    }

    fn peer_certificate_names(&self) -> Result<Option<Vec<String>>, HandshakeError> {
        let certs = match self {
            Stream::Plain(_) => return Ok(None),
            Stream::Client(s) => s.get_ref().1.peer_certificates(),
            Stream::Server(s) => s.get_ref().1.peer_certificates(),
        };
        tls::peer_names(certs)
            .map(Some)
            .map_err(|e| HandshakeError::Certificate(e.to_string()))
    }
}

/// A connection that passed the handshake, ready to be attached to its peer.
#[derive(Debug)]
pub(crate) struct Handshaken {
    pub(crate) stream: Stream,
    pub(crate) peer: NodeInfo,
    /// Largest frame the peer accepts.
    pub(crate) peer_max_frame: u32,
    /// Bytes read past the handshake (the peer may pipeline frames right after its hello).
    pub(crate) leftover: BytesMut,
}

/// TCP connect, TLS (if configured) and the hello exchange, as the dialling side.
pub(crate) async fn dial(
    transport: &Transport,
    addr: std::net::SocketAddr,
    expected: Option<&str>,
) -> Result<Handshaken, HandshakeError> {
    #[cfg(feature = "fault-injection")]
    if transport.faults.refuses_dial(transport, addr, expected) {
        return Err(HandshakeError::Blocked(
            expected.map_or_else(|| addr.to_string(), str::to_owned),
        ));
    }
    let timeouts = transport.config.timeouts;
    let tcp = tokio::time::timeout(timeouts.connect, TcpStream::connect(addr))
        .await
        .map_err(|_| HandshakeError::Timeout)?
        .map_err(HandshakeError::Connect)?;
    let _ = tcp.set_nodelay(true);
    tokio::time::timeout(timeouts.handshake, async {
        let stream = match &transport.tls {
            None => Stream::Plain(tcp),
            Some(ctx) => {
                let name = tls::dial_server_name(expected);
                let s = ctx
                    .connector
                    .connect(name, tcp)
                    .await
                    .map_err(HandshakeError::Tls)?;
                Stream::Client(Box::new(s))
            }
        };
        exchange_hellos(transport, stream, true, expected).await
    })
    .await
    .map_err(|_| HandshakeError::Timeout)?
}

/// TLS (if configured) and the hello exchange, as the accepting side.
pub(crate) async fn accept(
    transport: &Transport,
    tcp: TcpStream,
) -> Result<Handshaken, HandshakeError> {
    let _ = tcp.set_nodelay(true);
    tokio::time::timeout(transport.config.timeouts.handshake, async {
        let stream = match &transport.tls {
            None => Stream::Plain(tcp),
            Some(ctx) => {
                let s = ctx
                    .acceptor
                    .accept(tcp)
                    .await
                    .map_err(HandshakeError::Tls)?;
                Stream::Server(Box::new(s))
            }
        };
        exchange_hellos(transport, stream, false, None).await
    })
    .await
    .map_err(|_| HandshakeError::Timeout)?
}

/// The dialler speaks first; the acceptor checks the hello before revealing anything about
/// itself, and answers a refused one with a `GoAway` that says why.
async fn exchange_hellos(
    transport: &Transport,
    mut stream: Stream,
    dialer: bool,
    expected: Option<&str>,
) -> Result<Handshaken, HandshakeError> {
    let mut buf = BytesMut::with_capacity(1024);
    if dialer {
        send_hello(transport, &mut stream).await?;
    }
    let plaintext = transport.tls.is_none();
    let hello = match read_handshake_frame(&mut stream, &mut buf, plaintext).await {
        Ok(Frame::Hello(h)) => h,
        Ok(Frame::GoAway { code, reason }) if code == goaway::WRONG_CLUSTER => {
            return Err(HandshakeError::WrongCluster {
                ours: transport.cluster.clone(),
                theirs: reason,
            });
        }
        Ok(Frame::GoAway { code: _, reason }) => return Err(HandshakeError::Rejected(reason)),
        Ok(_) => return Err(HandshakeError::Protocol("expected a hello frame".into())),
        Err(HandshakeError::TlsPeer) if !dialer => {
            // A TLS dialer reads this frame as a record of an invalid content type, which is
            // how it tells a plaintext node from one that just closed.
            let mut out = BytesMut::new();
            wire::put_goaway(
                &mut out,
                goaway::REJECTED,
                "this node runs insecure plaintext and does not speak TLS",
            );
            refuse(&mut stream, &out).await;
            return Err(HandshakeError::TlsPeer);
        }
        Err(e) => return Err(e),
    };
    if let Err(e) = check_hello(transport, &stream, &hello, expected) {
        if matches!(e, HandshakeError::SelfConnection) && !dialer {
            // Answer with our own hello: the dialer (this very node) then recognises itself
            // and stops dialling that address, instead of retrying a refusal forever.
            let _ = send_hello(transport, &mut stream).await;
            let _ = stream.shutdown().await;
            return Err(e);
        }
        let mut out = BytesMut::new();
        match &e {
            HandshakeError::WrongCluster { .. } => {
                wire::put_goaway(&mut out, goaway::WRONG_CLUSTER, &transport.cluster);
            }
            _ => wire::put_goaway(&mut out, goaway::REJECTED, &e.to_string()),
        }
        // Best effort: the connection is refused whether or not the peer reads why.
        let _ = stream.write_all(&out).await;
        let _ = stream.shutdown().await;
        return Err(e);
    }
    if !dialer {
        send_hello(transport, &mut stream).await?;
    }
    Ok(Handshaken {
        stream,
        peer_max_frame: hello.max_frame_size,
        peer: hello.node,
        leftover: buf,
    })
}

/// Writes a refusal, closes the sending direction and reads until the peer closes (bounded):
/// closing with unread bytes would reset the connection, and a reset may discard the refusal
/// before the peer reads it.
async fn refuse(stream: &mut Stream, refusal: &[u8]) {
    let _ = stream.write_all(refusal).await;
    let _ = stream.shutdown().await;
    let mut sink = [0u8; 1024];
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let mut left = 64usize << 10;
        while left > 0 {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    })
    .await;
}

async fn send_hello(transport: &Transport, stream: &mut Stream) -> Result<(), HandshakeError> {
    let mut out = BytesMut::new();
    wire::put_hello(
        &mut out,
        &Hello {
            version: wire::PROTOCOL_VERSION,
            cluster: transport.cluster.clone(),
            tls: transport.tls.is_some(),
            node: transport.local.clone(),
            max_frame_size: transport.config.limits.max_frame_size,
        },
    );
    stream.write_all(&out).await.map_err(HandshakeError::Io)?;
    stream.flush().await.map_err(HandshakeError::Io)
}

async fn read_handshake_frame(
    stream: &mut Stream,
    buf: &mut BytesMut,
    plaintext: bool,
) -> Result<Frame, HandshakeError> {
    let decoder = FrameDecoder::new(HANDSHAKE_FRAME_LIMIT);
    loop {
        // A TLS record starts with a content type (0x14..=0x17: a ClientHello from a TLS
        // dialer, an alert from a TLS acceptor that could not parse our hello) and version
        // 0x03 0x0X. Say so instead of "frame too large".
        // A valid handshake frame has a zero third byte (its length is below 64 KiB).
        if plaintext
            && buf.len() >= 3
            && (0x14..=0x17).contains(&buf[0])
            && buf[1] == 0x03
            && (0x01..=0x04).contains(&buf[2])
        {
            return Err(HandshakeError::TlsPeer);
        }
        match decoder.decode(buf) {
            Ok(Some(frame)) => return Ok(frame),
            Ok(None) => {}
            Err(e) => return Err(HandshakeError::Protocol(e.to_string())),
        }
        let n = stream.read_buf(buf).await.map_err(HandshakeError::Io)?;
        if n == 0 {
            return Err(HandshakeError::Closed);
        }
    }
}

fn check_hello(
    transport: &Transport,
    stream: &Stream,
    hello: &Hello,
    expected: Option<&str>,
) -> Result<(), HandshakeError> {
    if hello.version != wire::PROTOCOL_VERSION {
        return Err(HandshakeError::Version {
            ours: wire::PROTOCOL_VERSION,
            theirs: hello.version,
        });
    }
    if hello.cluster != transport.cluster {
        return Err(HandshakeError::WrongCluster {
            ours: transport.cluster.clone(),
            theirs: hello.cluster.clone(),
        });
    }
    if hello.tls != transport.tls.is_some() {
        return Err(HandshakeError::Protocol(
            "peer and this node disagree about TLS".into(),
        ));
    }
    let name = hello.node.id.name();
    validate_node_name(name).map_err(HandshakeError::Protocol)?;
    if let Some(names) = stream.peer_certificate_names()?
        && !names.iter().any(|n| n == name)
    {
        return Err(HandshakeError::CertificateMismatch {
            claimed: name.to_owned(),
            certified: names,
        });
    }
    // After the certificate check, so that a block applies to the authenticated name.
    #[cfg(feature = "fault-injection")]
    if transport.faults.is_blocked(name) {
        return Err(HandshakeError::Blocked(name.to_owned()));
    }
    if let Some(expected) = expected
        && expected != name
    {
        return Err(HandshakeError::UnexpectedNode {
            expected: expected.to_owned(),
            found: name.to_owned(),
        });
    }
    if name == transport.local.id.name() {
        return Err(if hello.node.id == transport.local.id {
            HandshakeError::SelfConnection
        } else {
            HandshakeError::DuplicateName(name.to_owned())
        });
    }
    Ok(())
}

/// Writes the peer's queue to the socket, one batch per write, until the connection is
/// retired or fails. Pings when nothing was written for a ping interval.
pub(crate) async fn run_writer(
    transport: Arc<Transport>,
    peer: Arc<Peer>,
    conn: u64,
    mut wr: WriteHalf<Stream>,
    retire: Arc<Signal>,
) -> io::Result<()> {
    let ping_interval = transport.config.timeouts.ping_interval;
    let result = write_loop(&transport, &peer, conn, &mut wr, &retire, ping_interval).await;
    // Hand the wake-up on: if this writer consumed a notification meant for its successor,
    // the successor would otherwise sleep on a non-empty queue.
    peer.data_ready.notify_one();
    if transport.aborted.load(Ordering::Acquire) {
        // A simulated crash: the socket just closes.
        let _ = wr.shutdown().await;
        return result;
    }
    let mut out = BytesMut::new();
    if transport.shutdown.is_set() {
        wire::put_goaway(&mut out, goaway::SHUTDOWN, "node shutting down");
    } else {
        wire::put_goaway(&mut out, goaway::DUPLICATE, "connection retired");
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = wr.write_all(&out).await;
        let _ = wr.shutdown().await;
    })
    .await;
    result
}

async fn write_loop(
    transport: &Transport,
    peer: &Peer,
    conn: u64,
    wr: &mut WriteHalf<Stream>,
    retire: &Signal,
    ping_interval: Duration,
) -> io::Result<()> {
    // Pings are heartbeats for the peer's failure detector, so they go out at a steady
    // interval whether or not data flows; a busy writer checks the deadline between batches.
    let mut ping_nonce = 0u64;
    let mut next_ping = tokio::time::Instant::now() + ping_interval;
    loop {
        let now = tokio::time::Instant::now();
        if now >= next_ping {
            ping_nonce += 1;
            let nonce = ping_nonce;
            peer.push_control(|b| wire::put_ping(b, nonce));
            next_ping = now + ping_interval;
        }
        match peer.take_batch(conn) {
            TakeBatch::Retired => return Ok(()),
            TakeBatch::Batch(bytes, messages) => {
                let res = async {
                    wr.write_all(&bytes).await?;
                    wr.flush().await
                }
                .await;
                peer.batch_done();
                res?;
                transport
                    .stats
                    .bytes_written
                    .fetch_add(bytes.len() as u64, Ordering::Relaxed);
                transport
                    .stats
                    .messages_sent
                    .fetch_add(messages as u64, Ordering::Relaxed);
                // Per batch, not per message: with a recorder installed each call is a lookup.
                crate::metrics::bytes_written(bytes.len() as u64);
                crate::metrics::messages_sent(messages as u64);
                continue;
            }
            TakeBatch::Empty => {}
        }
        tokio::select! {
            () = peer.data_ready.notified() => {}
            () = retire.wait() => return Ok(()),
            () = tokio::time::sleep_until(next_ping) => {}
        }
    }
}

/// Reads frames until the connection fails, closes, or stays silent past the idle timeout.
/// Returns `Ok` for an orderly close (EOF after a `GoAway`, or a retirement), with the code of
/// the peer's `GoAway` if it sent one.
pub(crate) async fn run_reader(
    transport: Arc<Transport>,
    peer: Arc<Peer>,
    mut rd: ReadHalf<Stream>,
    buf: BytesMut,
    retire: Arc<Signal>,
    predecessor: Option<Arc<Signal>>,
    budget: BudgetShare,
) -> Result<Option<u16>, ConnError> {
    let result = read_loop(
        &transport,
        &peer,
        &mut rd,
        buf,
        &retire,
        predecessor,
        &budget,
    )
    .await;
    if matches!(result, Err(ConnError::OverBudget)) {
        transport.over_budget(&peer);
    }
    result
}

async fn read_loop(
    transport: &Arc<Transport>,
    peer: &Arc<Peer>,
    rd: &mut ReadHalf<Stream>,
    mut buf: BytesMut,
    retire: &Signal,
    predecessor: Option<Arc<Signal>>,
    budget: &BudgetShare,
) -> Result<Option<u16>, ConnError> {
    let decoder = FrameDecoder::new(transport.config.limits.max_frame_size);
    let idle = transport.config.timeouts.idle_timeout;
    if let Some(previous) = predecessor {
        // Bounded: the retired connection ends within an idle timeout even if the peer never
        // closes it, so waiting longer would only stall this one.
        let _ = tokio::time::timeout(idle, previous.wait()).await;
    }
    let mut dispatch = transport
        .channels
        .inbound()
        .map(|i| Arc::clone(i).connection());
    let mut goaway = false;
    let mut peer_goaway = None;
    loop {
        while let Some(frame) = decoder.decode(&mut buf).map_err(ConnError::Wire)? {
            transport
                .stats
                .frames_received
                .fetch_add(1, Ordering::Relaxed);
            match frame {
                Frame::Tell { .. } | Frame::Request { .. } => {
                    let Some(dispatch) = dispatch.as_mut() else {
                        continue;
                    };
                    if let Some(wait) = dispatch.dispatch(peer, frame) {
                        // Backpressure: the target's mailbox is full. Reading stops here, so
                        // the peer's writer blocks on TCP and its senders on their queue.
                        wait.await;
                    }
                }
                // A late answer (its caller gave up) finds nobody and is dropped.
                Frame::Response {
                    correlation,
                    payload,
                } => {
                    peer.complete_call(correlation, DATA_PLANE, Answer::Payload(payload));
                }
                Frame::Error {
                    correlation,
                    code,
                    detail,
                } => {
                    peer.complete_call(correlation, DATA_PLANE, Answer::Error { code, detail });
                }
                Frame::Ping { nonce } => {
                    peer.push_control(|b| wire::put_pong(b, nonce));
                }
                Frame::Channel { kind, body } => {
                    if !transport.channels.deliver(peer, kind, body) {
                        tracing::debug!(node = %peer.id, kind, "skipping a frame of a channel nobody handles");
                    }
                }
                Frame::Pong { .. } => {}
                Frame::Nodes(nodes) => transport.learn_nodes(nodes),
                Frame::GoAway { code, reason } => {
                    tracing::debug!(node = %peer.id, code, %reason, "peer closes connection");
                    goaway = true;
                    peer_goaway = Some(code);
                    if code == goaway::SHUTDOWN {
                        // This incarnation left for good (a restart is a new incarnation):
                        // fail its requests now and stop redialling it.
                        peer.mark_gone();
                        transport.channels.notify(peer, PeerEvent::Goodbye);
                        transport.changed.notify_waiters();
                    }
                }
                Frame::Hello(_) => return Err(ConnError::Protocol("hello after the handshake")),
                Frame::Unknown { kind } => {
                    tracing::debug!(node = %peer.id, kind, "skipping frame of unknown kind");
                }
            }
        }
        // What is left is the start of a frame still arriving: it counts against the budget.
        if !budget.hold(buf.len()) {
            return Err(ConnError::OverBudget);
        }
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(64 << 10);
        }
        let read = tokio::select! {
            r = tokio::time::timeout(idle, rd.read_buf(&mut buf)) => r,
            // A retired connection keeps reading until the peer's GoAway and EOF, so frames
            // it already sent on this connection are not lost.
            () = retire.wait(), if !goaway => { goaway = true; continue; }
            () = budget.closed() => return Err(ConnError::OverBudget),
        };
        match read {
            Err(_) => return Err(ConnError::Idle(idle)),
            Ok(Err(e)) => return Err(ConnError::Io(e)),
            Ok(Ok(0)) if goaway => return Ok(peer_goaway),
            Ok(Ok(0)) => return Err(ConnError::Closed),
            Ok(Ok(n)) => {
                peer.note_progress();
                transport
                    .stats
                    .bytes_read
                    .fetch_add(n as u64, Ordering::Relaxed);
                crate::metrics::bytes_read(n as u64);
            }
        }
    }
}

/// Why an established connection ended.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnError {
    #[error("i/o error: {0}")]
    Io(io::Error),
    #[error("peer closed the connection")]
    Closed,
    #[error("nothing read for {0:?}")]
    Idle(Duration),
    #[error("protocol error: {0}")]
    Wire(wire::WireError),
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    #[error("closed: its partial frame was the largest when inbound memory ran over budget")]
    OverBudget,
}
