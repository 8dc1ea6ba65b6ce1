//! Connections between nodes: listener, dialer, handshake, one connection per node pair,
//! reconnects with backoff, and the bounded per-node send queues.
//!
//! Everything here runs on the node's network arbiter, a thread of its own; user actors never
//! share it. Senders on other threads only touch a [`Peer`]'s queue (a short mutex hold) and
//! wake its writer. This layer knows nothing about actors, names or their errors: complete
//! frames addressed to actors go to the [`Inbound`] the remote layer provides, frames of the
//! subsystems above go to their [`channel`]s, answers complete [`calls`], and every failure is
//! reported as this layer's own error ([`PushError`], [`CallError`]).

mod admission;
pub(crate) mod calls;
pub(crate) mod channel;
mod conn;
mod diagnose;
#[cfg(feature = "fault-injection")]
pub(crate) mod faults;
pub(crate) mod peer;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use actix_rt::ArbiterHandle;
use futures::future::LocalBoxFuture;
use rand::RngExt;
use tokio::net::TcpListener;
use tokio::sync::Notify;

pub(crate) use calls::{Answer, CallError, Reply};
pub(crate) use channel::{
    Channel, ChannelError, ChannelSpec, Channels, PeerEvent, PeerObserver, QueueClass,
};
pub(crate) use peer::{Peer, PeerState, PushError, Signal};

use crate::limits::{Limits, Timeouts};
use crate::node::{NodeId, NodeInfo};
use crate::tls::TlsContext;
use crate::wire::{self, Frame};
use conn::Handshaken;
use peer::Attached;

/// Shortest gap between two log lines about the same kind of hostile-connection event.
const HOSTILE_LOG_INTERVAL: Duration = Duration::from_secs(1);
/// Handshakes in progress from one source address; more are closed at once. Without it, a
/// single host holding silent connections open could take every slot above and keep real
/// nodes from joining. A real node opens at most two at a time (a dial and a redial).
const MAX_HANDSHAKES_PER_IP: usize = 8;

/// Receives frames addressed to actors. Implemented by the remote layer.
pub(crate) trait Inbound: Send + Sync + 'static {
    /// Per-connection dispatch state (for example a cache of actor lookups).
    fn connection(self: Arc<Self>) -> Box<dyn ConnectionDispatch>;
}

/// Dispatches the `Tell` and `Request` frames of one connection, in arrival order.
pub(crate) trait ConnectionDispatch {
    /// Delivers one frame. A returned future means the target cannot take more right now;
    /// the connection reads nothing further until it completes.
    fn dispatch(&mut self, peer: &Arc<Peer>, frame: Frame) -> Option<LocalBoxFuture<'static, ()>>;
}

/// What the transport needs from the node's configuration.
#[derive(Debug, Clone)]
pub(crate) struct TransportConfig {
    pub(crate) limits: Limits,
    pub(crate) timeouts: Timeouts,
    /// Dialled at start until each answers once.
    pub(crate) seed_nodes: Vec<SocketAddr>,
}

/// Why a connection attempt failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HandshakeError {
    #[error("connect failed: {0}")]
    Connect(std::io::Error),
    #[error("i/o error during handshake: {0}")]
    Io(std::io::Error),
    #[error("handshake timed out")]
    Timeout,
    /// Kept as the I/O error so that the rustls error inside can be classified.
    #[error("tls handshake failed: {0}")]
    Tls(std::io::Error),
    #[error("peer speaks TLS but this node runs insecure plaintext")]
    TlsPeer,
    #[error("peer certificate: {0}")]
    Certificate(String),
    #[error("peer claims to be {claimed:?} but its certificate names {certified:?}")]
    CertificateMismatch {
        claimed: String,
        certified: Vec<String>,
    },
    #[error("expected node {expected:?}, reached {found:?}")]
    UnexpectedNode { expected: String, found: String },
    #[error("peer speaks protocol version {theirs}, this node {ours}")]
    Version { ours: u16, theirs: u16 },
    #[error("peer belongs to cluster {theirs:?}, this node to {ours:?}")]
    WrongCluster { ours: String, theirs: String },
    #[error("another process already uses node name {0:?}")]
    DuplicateName(String),
    #[error("connected to itself")]
    SelfConnection,
    #[error("peer refused the handshake: {0}")]
    Rejected(String),
    #[error("peer closed the connection during the handshake")]
    Closed,
    #[error("protocol error during handshake: {0}")]
    Protocol(String),
    #[cfg(feature = "fault-injection")]
    #[error("fault injection blocks connections with {0}")]
    Blocked(String),
}

/// Counters of the network side, readable through `ClusterSystem::stats`.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) bytes_written: AtomicU64,
    pub(crate) bytes_read: AtomicU64,
    pub(crate) messages_sent: AtomicU64,
    pub(crate) frames_received: AtomicU64,
    pub(crate) connections_established: AtomicU64,
    pub(crate) handshakes_failed: AtomicU64,
    /// Inbound handshakes closed to make room for newer ones.
    pub(crate) handshakes_evicted: AtomicU64,
    /// Inbound connections closed at once because `max_connections` were established.
    pub(crate) connections_refused: AtomicU64,
    /// Connections closed for holding the largest partial frame over the memory budget.
    pub(crate) closed_over_budget: AtomicU64,
}

/// The network side of one node.
pub(crate) struct Transport {
    pub(crate) cluster: String,
    pub(crate) local: NodeInfo,
    pub(crate) config: TransportConfig,
    pub(crate) tls: Option<TlsContext>,
    pub(crate) stats: Stats,
    net: ArbiterHandle,
    peers: Mutex<HashMap<Arc<str>, Arc<Peer>>>,
    next_conn: AtomicU64,
    pub(crate) shutdown: Signal,
    /// Set with `shutdown` when the node simulates a crash: connections close without a
    /// goodbye.
    pub(crate) aborted: std::sync::atomic::AtomicBool,
    /// Notified whenever a peer connects or disconnects.
    pub(crate) changed: Notify,
    admission: Arc<admission::Admission>,
    hostile_log: admission::LogLimiter,
    handshakes_by_ip: Mutex<HashMap<std::net::IpAddr, usize>>,
    open: std::sync::atomic::AtomicUsize,
    /// Configuration mistakes already reported per dialled address.
    reported: Mutex<diagnose::Reported>,
    /// Which subsystem handles each channel frame kind, and who follows peer events.
    pub(crate) channels: Channels,
    /// Node names this node refuses to talk to, set by tests through `ClusterSystem::faults`.
    #[cfg(feature = "fault-injection")]
    pub(crate) faults: faults::FaultState,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("local", &self.local.id)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Transport {
    pub(crate) fn new(
        cluster: String,
        local: NodeInfo,
        config: TransportConfig,
        tls: Option<TlsContext>,
        net: ArbiterHandle,
    ) -> Self {
        let limits = config.limits;
        Self {
            cluster,
            local,
            config,
            tls,
            stats: Stats::default(),
            net,
            peers: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(1),
            shutdown: Signal::default(),
            aborted: std::sync::atomic::AtomicBool::new(false),
            changed: Notify::new(),
            admission: Arc::new(admission::Admission::new(&limits)),
            hostile_log: admission::LogLimiter::new(HOSTILE_LOG_INTERVAL),
            handshakes_by_ip: Mutex::new(HashMap::new()),
            open: std::sync::atomic::AtomicUsize::new(0),
            reported: Mutex::new(diagnose::Reported::default()),
            channels: Channels::new(),
            #[cfg(feature = "fault-injection")]
            faults: faults::FaultState::default(),
        }
    }

    /// Runs `make()` on the network arbiter. The future itself need not be `Send`.
    fn spawn<F, Fut>(&self, make: F)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        // Fails only once the arbiter stopped, i.e. during shutdown, when nothing is wanted.
        let _ = self.net.spawn_fn(move || {
            actix_rt::spawn(make());
        });
    }

    /// Registers the handler of a subsystem's channel. Before [`start`](Self::start) only.
    pub(crate) fn register_channel(
        &self,
        spec: ChannelSpec,
        handler: Arc<dyn Channel>,
    ) -> Result<(), ChannelError> {
        self.channels.register(spec, handler)
    }

    /// Registers the receiver of tells and requests (the remote layer). Before
    /// [`start`](Self::start) only.
    pub(crate) fn register_inbound(&self, inbound: Arc<dyn Inbound>) -> Result<(), ChannelError> {
        self.channels.set_inbound(inbound)
    }

    /// Registers a follower of peer events. Before [`start`](Self::start) only.
    pub(crate) fn observe_peers(
        &self,
        observer: Arc<dyn PeerObserver>,
    ) -> Result<(), ChannelError> {
        self.channels.observe(observer)
    }

    /// Starts accepting on `listener` and dialling the seeds; the channel table is sealed
    /// first. Call on the network arbiter.
    pub(crate) fn start(self: &Arc<Self>, listener: TcpListener) {
        self.channels.seal();
        let this = Arc::clone(self);
        actix_rt::spawn(async move { this.accept_loop(listener).await });
        for &seed in &self.config.seed_nodes {
            if seed == self.local.addr {
                continue;
            }
            let this = Arc::clone(self);
            actix_rt::spawn(async move { this.dial_seed(seed).await });
        }
    }

    async fn accept_loop(self: Arc<Self>, listener: TcpListener) {
        loop {
            let accepted = tokio::select! {
                r = listener.accept() => r,
                () = self.shutdown.wait() => return,
            };
            let (tcp, from) = match accepted {
                Ok(x) => x,
                Err(e) => {
                    // Usually EMFILE: back off instead of spinning, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Some(ip_slot) = IpSlot::take(&self, from.ip()) else {
                self.handshake_failed();
                self.hostile(
                    "per_ip",
                    &format_args!(
                        "{from}: too many handshakes in progress from this address; closing"
                    ),
                );
                continue;
            };
            let slot = match self.admission.admit(self.open_connections()) {
                Ok((slot, evicted)) => {
                    if evicted > 0 {
                        self.count_hostile(
                            &self.stats.handshakes_evicted,
                            "handshake_evicted",
                            evicted,
                        );
                        self.hostile(
                            "handshake_evicted",
                            &format_args!(
                                "handshake table full: closed the oldest handshake to admit {from}"
                            ),
                        );
                    }
                    slot
                }
                Err(refusal) => {
                    self.count_hostile(&self.stats.connections_refused, "connection_refused", 1);
                    self.hostile(
                        "connection_refused",
                        &format_args!("{from}: refused: {refusal}"),
                    );
                    continue;
                }
            };
            let this = Arc::clone(&self);
            actix_rt::spawn(async move {
                let _ip_slot = ip_slot;
                let accepted = tokio::select! {
                    r = conn::accept(&this, tcp) => r,
                    // The socket is dropped with the accept future: the connection closes.
                    () = slot.evicted() => return,
                };
                drop(slot);
                match accepted {
                    Ok(h) => {
                        let dialer = h.peer.id.clone();
                        this.establish(h, dialer);
                    }
                    Err(e) => {
                        this.handshake_failed();
                        this.hostile(
                            "handshake_refused",
                            &format_args!("{from}: inbound handshake refused: {e}"),
                        );
                    }
                }
            });
        }
    }

    /// Dials a seed until it answers once; afterwards that node's own driver keeps the
    /// connection up. A lone node thus keeps trying until its seeds come up.
    async fn dial_seed(self: Arc<Self>, seed: SocketAddr) {
        let t = self.config.timeouts;
        let mut backoff = t.reconnect_min;
        loop {
            if self.shutdown.is_set() {
                return;
            }
            let known = lock(&self.peers)
                .values()
                .any(|p| p.addr() == seed && p.is_attached());
            if known {
                return;
            }
            match self.dial(seed, None).await {
                Ok(h) => {
                    let dialer = self.local.id.clone();
                    self.establish(h, dialer);
                    return;
                }
                Err(HandshakeError::SelfConnection) => return,
                Err(e) => {
                    self.handshake_failed();
                    tracing::debug!(%seed, error = %e, "seed not reachable yet");
                }
            }
            tokio::select! {
                () = tokio::time::sleep(jitter(backoff)) => {}
                () = self.shutdown.wait() => return,
            }
            backoff = (backoff * 2).min(t.reconnect_max);
        }
    }

    /// Dials `addr`; a failure caused by a configuration mistake is logged at WARN, once per
    /// address and cause (retries would otherwise repeat it every few seconds).
    async fn dial(
        &self,
        addr: SocketAddr,
        expected: Option<&str>,
    ) -> Result<Handshaken, HandshakeError> {
        let result = conn::dial(self, addr, expected).await;
        match &result {
            Ok(_) => lock(&self.reported).connected(addr),
            Err(e) => {
                if let Some(cause) = diagnose::Misconfig::classify(e, self.tls.is_some())
                    && let Some(line) = lock(&self.reported).failed(addr, cause)
                {
                    tracing::warn!(%addr, error = %e, "{line}");
                }
            }
        }
        result
    }

    /// Keeps one peer connected: redials with exponential backoff and jitter whenever it has
    /// no connection, and declares it unreachable after `give_up_after`.
    async fn drive(self: Arc<Self>, peer: Arc<Peer>) {
        let t = self.config.timeouts;
        let mut backoff = t.reconnect_min;
        // Whether this disconnection's evidence of death was reported already.
        let mut reported = false;
        loop {
            if self.shutdown.is_set() || peer.state() == PeerState::Gone {
                return;
            }
            // Clients dial in when they need to; nobody dials them.
            if peer.is_attached() || peer.dials_in_only() {
                backoff = t.reconnect_min;
                reported = false;
                tokio::select! {
                    () = peer.disconnected.notified() => {}
                    () = self.shutdown.wait() => return,
                }
                continue;
            }
            match self.dial(peer.addr(), Some(peer.id.name())).await {
                Ok(h) if h.peer.id == peer.id => {
                    let dialer = self.local.id.clone();
                    self.establish(h, dialer);
                    continue;
                }
                Ok(h) => {
                    // The node restarted: a new incarnation answers at the old address.
                    self.report_gone(&peer, &mut reported);
                    let dialer = self.local.id.clone();
                    self.establish(h, dialer);
                    if peer.state() == PeerState::Gone {
                        return;
                    }
                }
                Err(e) => {
                    tracing::debug!(node = %peer.id, error = %e, "reconnect failed");
                    if matches!(&e, HandshakeError::Connect(io)
                        if io.kind() == std::io::ErrorKind::ConnectionRefused)
                    {
                        self.report_gone(&peer, &mut reported);
                    }
                }
            }
            if peer.down_for().is_some_and(|d| d >= t.give_up_after) {
                peer.mark_unreachable();
                self.changed.notify_waiters();
            }
            tokio::select! {
                () = tokio::time::sleep(jitter(backoff)) => {}
                () = self.shutdown.wait() => return,
                // Retired (gone) meanwhile: stop at once instead of after the backoff. An
                // inbound connection that attached meanwhile is noticed at the top of the loop.
                () = peer.disconnected.notified() => {}
            }
            backoff = (backoff * 2).min(t.reconnect_max);
        }
    }

    /// The deadline task of one peer: fails calls whose deadline passed. Sleeps until the
    /// earliest deadline, or until a call with an earlier one is registered; ends with the
    /// peer's incarnation (whose calls are failed when it is marked gone) or the node.
    async fn expire_calls(self: Arc<Self>, peer: Arc<Peer>) {
        loop {
            let mut moved = std::pin::pin!(peer.deadline_moved.notified());
            moved.as_mut().enable();
            let next = peer.expire_calls(tokio::time::Instant::now());
            if peer.state() == PeerState::Gone {
                return;
            }
            let sleep = async {
                match next {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = sleep => {}
                () = moved => {}
                () = self.shutdown.wait() => return,
            }
        }
    }

    /// Finds or creates the peer for `info`. A newer incarnation replaces (and retires) the
    /// old one; an older incarnation than the one known is refused with `None`.
    fn peer_for(self: &Arc<Self>, info: &NodeInfo) -> Option<Arc<Peer>> {
        // A node never dials itself (a master's table, or a rejoin's event, names it too).
        if info.id.name() == self.local.id.name() {
            return None;
        }
        let mut peers = lock(&self.peers);
        if let Some(existing) = peers.get(info.id.name()) {
            if existing.id == info.id && existing.state() != PeerState::Gone {
                if existing.addr() != info.addr {
                    existing.update_info(info.clone());
                }
                return Some(Arc::clone(existing));
            }
            if existing.id.incarnation() > info.id.incarnation() {
                return None;
            }
            if existing.id != info.id {
                tracing::info!(old = %existing.id, new = %info.id, "node restarted");
            }
            existing.mark_gone();
        }
        let peer = Arc::new(Peer::new(info.clone(), self.config.limits));
        peers.insert(Arc::clone(info.id.name_arc()), Arc::clone(&peer));
        drop(peers);
        let (this, p) = (Arc::clone(self), Arc::clone(&peer));
        self.spawn(move || this.drive(p));
        let (this, p) = (Arc::clone(self), Arc::clone(&peer));
        self.spawn(move || this.expire_calls(p));
        self.changed.notify_waiters();
        Some(peer)
    }

    /// Attaches a handshaken connection to its peer and starts its reader and writer.
    fn establish(self: &Arc<Self>, h: Handshaken, dialer: NodeId) {
        let Some(peer) = self.peer_for(&h.peer) else {
            tracing::info!(node = %h.peer.id, "refusing a connection from an outdated incarnation");
            return;
        };
        if self.shutdown.is_set() {
            return;
        }
        peer.set_peer_max_frame(h.peer_max_frame);
        let conn = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let retire = Arc::new(Signal::default());
        let done = Arc::new(Signal::default());
        // Checked again after the handshake (and registered for cutting under the same lock):
        // a block may have been set while this connection was handshaking.
        #[cfg(feature = "fault-injection")]
        if !self
            .faults
            .admit(conn, h.peer.id.name(), &h.stream, &retire)
        {
            tracing::info!(node = %h.peer.id, conn, "fault injection: dropping a connection to a blocked node");
            return;
        }
        let attached = Attached {
            conn,
            dialer,
            retire: Arc::clone(&retire),
            done: Arc::clone(&done),
        };
        let (rd, wr) = tokio::io::split(h.stream);
        let open = self.open.fetch_add(1, Ordering::AcqRel) + 1;
        crate::metrics::connections_open(open);
        let loser = peer.attach(attached);
        let lost = loser.as_ref().is_some_and(|l| l.conn == conn);
        // When this connection replaces a live one, frames the peer sent on the old one must
        // be dispatched first, or a message could overtake an earlier one from the same sender.
        let predecessor = loser.filter(|l| l.conn != conn).map(|l| l.done);
        if lost {
            retire.set();
        } else {
            self.stats
                .connections_established
                .fetch_add(1, Ordering::Relaxed);
            crate::metrics::connection_established();
            tracing::info!(node = %peer.id, conn, "connected");
            let known: Vec<NodeInfo> = self.known_nodes();
            peer.push_control(|b| wire::put_nodes(b, known.iter()));
            // Two nodes that join through us at the same moment may each get a list that
            // lacks the other; passing every new connection on to the connected peers closes
            // that gap.
            if !peer.dials_in_only() {
                let joined = [peer.info()];
                for other in self.peers() {
                    if !Arc::ptr_eq(&other, &peer) && other.state() == PeerState::Connected {
                        other.push_control(|b| wire::put_nodes(b, joined.iter()));
                    }
                }
            }
            // Observers first: whoever wakes on `changed` finds their tables (the member
            // table among them) already showing the new peer.
            self.channels.notify(&peer, PeerEvent::Connected);
            self.changed.notify_waiters();
        }
        // A losing connection still runs both halves: its writer sends GoAway at once, and its
        // reader drains whatever the peer sent before it saw the same decision.
        let (this, p, r) = (Arc::clone(self), Arc::clone(&peer), Arc::clone(&retire));
        actix_rt::spawn(async move {
            if let Err(e) = conn::run_writer(this, p, conn, wr, r).await {
                tracing::debug!(conn, error = %e, "writer stopped");
            }
        });
        let this = Arc::clone(self);
        let budget = self.admission.share(conn);
        #[cfg(feature = "fault-injection")]
        let held = faults::Held::new(Arc::clone(self), conn);
        actix_rt::spawn(async move {
            #[cfg(feature = "fault-injection")]
            let held = held;
            let result = conn::run_reader(
                Arc::clone(&this),
                Arc::clone(&peer),
                rd,
                h.leftover,
                Arc::clone(&retire),
                predecessor,
                budget,
            )
            .await;
            done.set();
            #[cfg(feature = "fault-injection")]
            drop(held);
            match &result {
                Ok(_) => tracing::debug!(node = %peer.id, conn, "connection closed"),
                Err(e) => tracing::info!(node = %peer.id, conn, error = %e, "connection lost"),
            }
            retire.set();
            // A peer that retires a connection as a duplicate has already switched to another
            // one, which may simply not have finished its handshake here yet: replies to the
            // requests in flight will arrive on it. Failing them now would report a healthy
            // node as gone; they stay bounded by their own deadline and by `give_up_after`.
            let replaced = matches!(result, Ok(Some(conn::goaway::DUPLICATE)));
            peer.detach(conn, !replaced);
            if peer.dials_in_only() && !peer.is_attached() {
                // Nobody redials a client; if it comes back it is attached to a fresh peer.
                peer.mark_gone();
            }
            if !peer.is_attached() {
                this.channels.notify(&peer, PeerEvent::Disconnected);
            }
            let open = this.open.fetch_sub(1, Ordering::AcqRel) - 1;
            crate::metrics::connections_open(open);
            this.changed.notify_waiters();
        });
    }

    /// Tells the observers, once per disconnection, that `peer`'s process is gone.
    fn report_gone(&self, peer: &Arc<Peer>, reported: &mut bool) {
        if !std::mem::replace(reported, true) {
            self.channels.notify(peer, PeerEvent::ProcessGone);
        }
    }

    /// Dials `addr` once in the background unless a live peer is already there; used to
    /// re-announce to seeds and masters.
    pub(crate) fn dial_once(self: &Arc<Self>, addr: SocketAddr) {
        if addr == self.local.addr || self.shutdown.is_set() {
            return;
        }
        let live = lock(&self.peers)
            .values()
            .any(|p| p.addr() == addr && p.is_attached());
        if live {
            return;
        }
        let this = Arc::clone(self);
        self.spawn(move || async move {
            match this.dial(addr, None).await {
                Ok(h) => {
                    let dialer = this.local.id.clone();
                    this.establish(h, dialer);
                }
                Err(e) => {
                    this.handshake_failed();
                    tracing::debug!(%addr, error = %e, "re-announce dial failed");
                }
            }
        });
    }

    /// The peer for a node named by the membership layer: known, or learnt (and dialled) now.
    pub(crate) fn peer_for_member(
        self: &Arc<Self>,
        id: &NodeId,
        addr: SocketAddr,
        role: crate::node::NodeRole,
    ) -> Option<Arc<Peer>> {
        if let Some(p) = self.peer_by_name(id.name())
            && p.id == *id
            && p.state() != PeerState::Gone
        {
            return Some(p);
        }
        if self.shutdown.is_set() {
            return None;
        }
        let info = NodeInfo {
            id: id.clone(),
            addr,
            role,
            labels: Default::default(),
        };
        self.peer_for(&info)
    }

    /// Learns nodes from a peer's list; unknown ones get a driver that dials them.
    pub(crate) fn learn_nodes(self: &Arc<Self>, nodes: Vec<NodeInfo>) {
        for info in nodes {
            if info.id.name() == self.local.id.name() {
                continue;
            }
            let known = lock(&self.peers)
                .get(info.id.name())
                .is_some_and(|p| p.id.incarnation() >= info.id.incarnation());
            if !known {
                self.peer_for(&info);
            }
        }
    }

    /// Every peer worth telling others about: not gone, and not a client (clients dial in
    /// when they need to, so advertising them would only make others dial dead clients).
    pub(crate) fn known_nodes(&self) -> Vec<NodeInfo> {
        lock(&self.peers)
            .values()
            .filter(|p| p.state() != PeerState::Gone && !p.dials_in_only())
            .map(|p| p.info())
            .collect()
    }

    /// The current incarnation of the node named `name`.
    pub(crate) fn peer_by_name(&self, name: &str) -> Option<Arc<Peer>> {
        lock(&self.peers).get(name).cloned()
    }

    /// The peer for an address that arrived inside a message: known, or learnt now.
    pub(crate) fn peer_for_id(
        self: &Arc<Self>,
        id: &NodeId,
        addr: SocketAddr,
    ) -> Option<Arc<Peer>> {
        if let Some(p) = self.peer_by_name(id.name()) {
            if p.id == *id {
                return Some(p);
            }
            if p.id.incarnation() > id.incarnation() {
                return None;
            }
        }
        let info = NodeInfo {
            id: id.clone(),
            addr,
            role: crate::node::NodeRole::Worker,
            labels: Default::default(),
        };
        self.peer_for(&info)
    }

    /// All peers, for the member table.
    pub(crate) fn peers(&self) -> Vec<Arc<Peer>> {
        lock(&self.peers).values().cloned().collect()
    }

    /// Logs a hostile-connection event at WARN, at most one line per kind and interval; the
    /// line says how many of its kind were not logged since the previous one.
    fn hostile(&self, kind: &'static str, what: &std::fmt::Arguments<'_>) {
        if let Some(suppressed) = self.hostile_log.allow(kind, tokio::time::Instant::now()) {
            tracing::warn!(local = %self.local.addr, kind, suppressed, "{what}");
        }
    }

    fn count_hostile(&self, counter: &AtomicU64, event: &'static str, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
        crate::metrics::admission(event, n as u64);
    }

    /// Counts and (rate-limited) logs a connection closed by the inbound memory budget.
    fn over_budget(&self, peer: &Peer) {
        self.count_hostile(&self.stats.closed_over_budget, "over_budget", 1);
        self.hostile(
            "over_budget",
            &format_args!(
                "inbound memory over budget: closed the connection of {} holding the largest partial frame",
                peer.id
            ),
        );
    }

    /// Inbound handshakes in progress.
    pub(crate) fn handshaking(&self) -> usize {
        self.admission.handshaking()
    }

    fn handshake_failed(&self) {
        self.stats.handshakes_failed.fetch_add(1, Ordering::Relaxed);
        crate::metrics::handshake_failed();
    }

    /// Connections whose reader is still running.
    pub(crate) fn open_connections(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Like [`shutdown`](Self::shutdown), but connections close without a `GoAway`, as a
    /// crashed process's would (tests that crash a node in-process).
    #[cfg(feature = "fault-injection")]
    pub(crate) fn abort(&self) {
        self.aborted.store(true, Ordering::Release);
        self.shutdown();
    }

    /// Stops accepting and dialling and retires every connection (each sends `GoAway`).
    pub(crate) fn shutdown(&self) {
        self.shutdown.set();
        for peer in self.peers() {
            peer.mark_gone();
        }
        self.changed.notify_waiters();
    }
}

/// One in-progress handshake from an address, released on drop.
struct IpSlot {
    transport: Arc<Transport>,
    ip: std::net::IpAddr,
}

impl IpSlot {
    fn take(transport: &Arc<Transport>, ip: std::net::IpAddr) -> Option<Self> {
        let mut by_ip = lock(&transport.handshakes_by_ip);
        let n = by_ip.entry(ip).or_insert(0);
        // Loopback is exempt: in-process and single-host clusters dial from one address, many
        // nodes at once, and a local attacker has easier ways to hurt the node.
        if *n >= MAX_HANDSHAKES_PER_IP && !ip.is_loopback() {
            return None;
        }
        *n += 1;
        Some(Self {
            transport: Arc::clone(transport),
            ip,
        })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut by_ip = lock(&self.transport.handshakes_by_ip);
        if let Some(n) = by_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                by_ip.remove(&self.ip);
            }
        }
    }
}

/// A delay drawn uniformly from `[d/2, d]`, so that nodes that lost each other at the same
/// moment do not redial in lockstep.
fn jitter(d: Duration) -> Duration {
    let half = d / 2;
    half + Duration::from_nanos(rand::rng().random_range(0..=half.as_nanos() as u64))
}
