//! Fault injection for tests (feature `fault-injection`): cuts the connections between this
//! node and chosen node names, in-process and without root, so that tests can partition a
//! cluster and heal it again.
//!
//! A block is checked only where connections are set up (before a dial, in the handshake on
//! both sides, and when a handshaken connection is attached), never per frame: builds with
//! the feature send messages exactly as builds without it. Cutting an existing connection
//! shuts its socket down at the OS level, so both nodes see what a real failure looks like
//! (an end of stream with no `GoAway`) and run their ordinary lost-connection paths.

use std::collections::{BTreeSet, HashMap};
use std::net::{Shutdown, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};

use super::conn::Stream;
use super::peer::Signal;
use super::{Transport, lock};

/// Which node names this node refuses, and the live connections it may have to cut.
#[derive(Debug, Default)]
pub(crate) struct FaultState {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    blocked: BTreeSet<String>,
    /// Every attached-or-attaching connection, by connection id. Kept under the same lock as
    /// `blocked` so that a connection is either refused by `admit` or cut by `block`, never
    /// missed by both when the two race.
    live: HashMap<u64, Live>,
}

#[derive(Debug)]
struct Live {
    node: String,
    /// A second handle on the connection's socket (the stream itself is split between the
    /// reader and writer tasks). `None` if duplicating it failed.
    socket: Option<std::net::TcpStream>,
    /// Fallback for a connection without a socket handle: an orderly close.
    retire: Arc<Signal>,
}

impl Live {
    fn cut(&self) {
        match &self.socket {
            // Both directions: the local reader sees end of stream at once, the peer sees
            // FIN, and anything either side still writes fails.
            Some(socket) => {
                if let Err(e) = socket.shutdown(Shutdown::Both) {
                    // Already closed by the other side: nothing left to cut.
                    tracing::debug!(node = %self.node, error = %e, "shutdown of a cut connection failed");
                }
            }
            None => self.retire.set(),
        }
    }
}

impl FaultState {
    fn inner(&self) -> MutexGuard<'_, Inner> {
        lock(&self.inner)
    }

    /// Whether connections to or from `node` are refused.
    pub(crate) fn is_blocked(&self, node: &str) -> bool {
        self.inner().blocked.contains(node)
    }

    /// Whether a dial to `addr` (expecting node `expected`, if known) must not even start:
    /// the expected node is blocked, or a known node listening at `addr` is. Refusing before
    /// the TCP connect matters because a dialer that only learns the name from the peer's
    /// hello has already let the peer complete its side of the handshake.
    pub(crate) fn refuses_dial(
        &self,
        transport: &Transport,
        addr: SocketAddr,
        expected: Option<&str>,
    ) -> bool {
        let inner = self.inner();
        if inner.blocked.is_empty() {
            return false;
        }
        if expected.is_some_and(|name| inner.blocked.contains(name)) {
            return true;
        }
        lock(&transport.peers)
            .values()
            .any(|p| p.addr() == addr && inner.blocked.contains(p.id.name()))
    }

    /// Records connection `conn` to `node` so that a later `block` can cut it; `false` if
    /// `node` is blocked already (the caller then drops the connection).
    pub(crate) fn admit(
        &self,
        conn: u64,
        node: &str,
        stream: &Stream,
        retire: &Arc<Signal>,
    ) -> bool {
        let mut inner = self.inner();
        if inner.blocked.contains(node) {
            return false;
        }
        let socket = match duplicate(stream.tcp()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(%node, conn, error = %e,
                    "cannot keep a handle on the socket; blocking this node closes the connection in an orderly way instead");
                None
            }
        };
        inner.live.insert(
            conn,
            Live {
                node: node.to_owned(),
                socket,
                retire: Arc::clone(retire),
            },
        );
        true
    }

    /// Forgets connection `conn` once its reader ended. This also closes the duplicate socket
    /// handle, which would otherwise keep the socket open after the connection closed.
    pub(crate) fn release(&self, conn: u64) {
        self.inner().live.remove(&conn);
    }
}

/// Releases connection `conn`'s entry when dropped: held by the connection's reader task, so
/// that the duplicate socket handle is closed even when the task is dropped unfinished (its
/// arbiter stopped, as in an in-process crash). Otherwise the duplicate would keep the
/// connection open, and the peer would see no crash at all.
pub(crate) struct Held {
    transport: Arc<Transport>,
    conn: u64,
}

impl Held {
    pub(crate) fn new(transport: Arc<Transport>, conn: u64) -> Self {
        Self { transport, conn }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.transport.faults.release(self.conn);
    }
}

fn duplicate(tcp: &tokio::net::TcpStream) -> std::io::Result<std::net::TcpStream> {
    #[cfg(unix)]
    {
        use std::os::fd::AsFd;
        Ok(tcp.as_fd().try_clone_to_owned()?.into())
    }
    #[cfg(windows)]
    {
        use std::os::windows::io::AsSocket;
        Ok(tcp.as_socket().try_clone_to_owned()?.into())
    }
    #[cfg(not(any(unix, windows)))]
    {
        let _ = tcp;
        Err(std::io::ErrorKind::Unsupported.into())
    }
}

/// Cuts and restores this node's connectivity to chosen nodes, by node name. Obtained from
/// [`ClusterSystem::faults`](crate::ClusterSystem::faults); clones share one set of blocks.
///
/// A block is one node's decision with effects in both directions: the blocking node closes
/// its connections to the blocked node at once, stops dialling it, and refuses its
/// handshakes, so the blocked node cannot reconnect either. Both sides handle the cut as any
/// lost connection: requests in flight fail with
/// [`RemoteError::NodeGone`](crate::RemoteError::NodeGone), queued messages wait for a
/// reconnect until membership declares the node Down (or `give_up_after` passes), and are
/// then dropped, their requests failing with
/// [`RemoteError::NodeUnreachable`](crate::RemoteError::NodeUnreachable).
/// After [`unblock`](Self::unblock) both sides reconnect on their own.
///
/// To partition a cluster, block each node of one side on every node of the other side (or
/// the reverse; blocking on both sides also works). Blocks are node names, so they also
/// apply to later incarnations of a restarted node.
///
/// Only with the `fault-injection` cargo feature, which is meant for tests.
///
/// ```no_run
/// # async fn demo(system: actix_cluster::ClusterSystem) {
/// let faults = system.faults();
/// faults.block("node-2");
/// assert_eq!(faults.blocked(), ["node-2"]);
/// // ... observe the cluster without node-2 ...
/// faults.heal();
/// # }
/// ```
#[derive(Clone)]
pub struct Faults {
    transport: Arc<Transport>,
}

impl std::fmt::Debug for Faults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Faults")
            .field("node", &self.transport.local.id)
            .field("blocked", &self.blocked())
            .finish()
    }
}

impl Faults {
    pub(crate) fn new(transport: Arc<Transport>) -> Self {
        Self { transport }
    }

    /// From now on, this node keeps, makes and accepts no connection to or from
    /// `node_name`; connections open now are closed at once, in both directions. Blocking a
    /// name already blocked, this node's own name, or a name no node has changes nothing
    /// else.
    pub fn block(&self, node_name: &str) {
        let state = &self.transport.faults;
        let mut inner = state.inner();
        if !inner.blocked.insert(node_name.to_owned()) {
            return;
        }
        let mut cut = 0usize;
        for live in inner.live.values().filter(|l| l.node == node_name) {
            live.cut();
            cut += 1;
        }
        drop(inner);
        tracing::info!(
            node = node_name,
            connections = cut,
            "fault injection: blocked"
        );
    }

    /// Lifts the block on `node_name`; both sides then reconnect through their usual
    /// reconnect and discovery paths. Does nothing if the name is not blocked.
    pub fn unblock(&self, node_name: &str) {
        if !self.transport.faults.inner().blocked.remove(node_name) {
            return;
        }
        tracing::info!(node = node_name, "fault injection: unblocked");
        self.redial(node_name);
    }

    /// Lifts every block.
    pub fn heal(&self) {
        let names = std::mem::take(&mut self.transport.faults.inner().blocked);
        if names.is_empty() {
            return;
        }
        tracing::info!(nodes = ?names, "fault injection: healed");
        for name in &names {
            self.redial(name);
        }
    }

    /// The blocked node names, sorted.
    pub fn blocked(&self) -> Vec<String> {
        self.transport
            .faults
            .inner()
            .blocked
            .iter()
            .cloned()
            .collect()
    }

    /// Cuts the reconnect backoff of the unblocked node's driver short, so that this side
    /// dials at once instead of after up to `reconnect_max`.
    fn redial(&self, node_name: &str) {
        if let Some(peer) = self.transport.peer_by_name(node_name) {
            peer.disconnected.notify_one();
        }
    }
}
