//! Members: this node's member table, other nodes' tables, waiting for peers, and change
//! subscriptions; and the system request that answers other nodes' `members_of`.

use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use actix::Recipient;
use serde::{Deserialize, Serialize};

use super::ClusterSystem;
use crate::membership::driver::Driver;
use crate::membership::{ClusterEvent, Member, MemberState};
use crate::node::{NodeId, NodeRole};
use crate::remote::system::{self as sys, SystemRequestError};
use crate::remote::{RemoteContext, RemoteError};
use crate::transport::PeerState;

impl ClusterSystem {
    /// This node and every member it knows, with their state as this node sees it, sorted
    /// by node id.
    pub fn members(&self) -> Vec<Member> {
        members(self.remote(), self.node.membership.as_deref())
    }

    /// The member table as node `node` sees it: its own [`members`](Self::members), computed
    /// there and sent back (what `ctl status` prints). For this node's own name it is
    /// `self.members()`, without a round trip.
    ///
    /// # Errors
    /// - [`RemoteError::UnknownNode`]: no node of that name is known here;
    /// - [`RemoteError::Timeout`]: no answer within the configured request timeout;
    /// - [`RemoteError::NodeUnreachable`] or [`RemoteError::NodeGone`]: the node failed or
    ///   restarted before answering;
    /// - [`RemoteError::UnknownMessageType`]: the node runs a version without this request;
    /// - [`RemoteError::ReplyDecode`]: the answer was malformed.
    ///
    /// Nothing changes on either node.
    pub async fn members_of(&self, node: &str) -> Result<Vec<Member>, RemoteError> {
        if node == self.node_id().name() {
            return Ok(self.members());
        }
        let (id, addr) = self.peer_of(node)?;
        let remote = self.remote();
        let rows: Vec<MemberRow> = sys::ask(
            remote,
            id,
            addr,
            sys::id::MEMBERS,
            (),
            remote.request_timeout,
        )
        .await?;
        rows.into_iter().map(MemberRow::into_member).collect()
    }

    /// Waits until this node is connected to the node that listens at `addr` (as that node
    /// advertises itself) and returns its identity; `None` if `timeout` passes first. For a
    /// client that only knows a seed's address, such as `ctl status --seed ADDR`.
    pub async fn wait_for_addr(&self, addr: SocketAddr, timeout: Duration) -> Option<NodeId> {
        let deadline = Instant::now() + timeout;
        loop {
            let found = self
                .members()
                .into_iter()
                .find(|m| m.addr == addr && m.connected && m.id != *self.node_id());
            if let Some(m) = found {
                return Some(m.id);
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            // The member table has no change notification that covers every source (the
            // transport and the membership core both feed it); a short poll bounded by the
            // deadline costs nothing next to a handshake.
            tokio::time::sleep((deadline - now).min(Duration::from_millis(20))).await;
        }
    }

    /// Subscribes `subscriber` to membership changes. It first receives a
    /// [`ClusterEvent::Snapshot`] of the member table, then every change in order.
    ///
    /// A client node (role [`NodeRole::Client`](crate::NodeRole::Client)) is no member and
    /// only gets the snapshot.
    pub fn subscribe(&self, subscriber: Recipient<ClusterEvent>) {
        match &self.node.membership {
            Some(m) => m.subscribe(subscriber),
            None => subscriber.do_send(ClusterEvent::Snapshot(self.members())),
        }
    }

    /// Waits until this node is connected to at least `peers` other nodes; `false` if the
    /// deadline passes first.
    pub async fn wait_for_peers(&self, peers: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let changed = self.remote().transport.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let up = self.connected_peers();
            if up >= peers {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            // The poll interval only bounds how late a missed notification is noticed.
            let _ = tokio::time::timeout((deadline - now).min(Duration::from_millis(100)), changed)
                .await;
        }
    }
}

impl ClusterSystem {
    /// Connected peers as [`members`](Self::members) shows them, plus connected clients
    /// (which are no members), so that the table read right after a wait agrees with it.
    fn connected_peers(&self) -> usize {
        let transport = &self.remote().transport;
        let clients = transport
            .peers()
            .iter()
            .filter(|p| p.state() == PeerState::Connected && p.info().role == NodeRole::Client)
            .count();
        match &self.node.membership {
            Some(m) => {
                let me = self.node_id();
                let members = m.members();
                clients
                    + members
                        .iter()
                        .filter(|m| m.connected && m.id != *me)
                        .count()
            }
            None => transport
                .peers()
                .iter()
                .filter(|p| p.state() == PeerState::Connected)
                .count(),
        }
    }
}

/// This node's member table: the membership driver's on members; on a client, which is no
/// member, itself and the nodes it is connected to.
pub(super) fn members(remote: &RemoteContext, membership: Option<&Driver>) -> Vec<Member> {
    if let Some(m) = membership {
        return m.members();
    }
    let me = &remote.local;
    let mut own = Member::new(me.id.clone(), me.addr, me.role);
    own.labels = me.labels.clone();
    let mut out = vec![own];
    for p in remote.transport.peers() {
        let state = match p.state() {
            PeerState::Connected => MemberState::Up,
            PeerState::Connecting => MemberState::Joining,
            PeerState::Unreachable => MemberState::Suspect,
            PeerState::Gone => continue,
        };
        let info = p.info();
        out.push(Member {
            id: info.id,
            addr: info.addr,
            role: info.role,
            labels: info.labels,
            capabilities: Vec::new(),
            state,
            phi: 0.0,
            load: None,
            connected: p.state() == PeerState::Connected,
            queued: p.queued(),
        });
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}

/// Answers other nodes' `members_of` with the very table `members()` returns here. Holds the
/// node weakly: the request table lives inside it.
pub(super) fn register(
    remote: &Arc<RemoteContext>,
    membership: Option<&Arc<Driver>>,
) -> Result<(), SystemRequestError> {
    let ctx: Weak<RemoteContext> = Arc::downgrade(remote);
    let driver: Option<Weak<Driver>> = membership.map(Arc::downgrade);
    remote.system.request(sys::id::MEMBERS, move |_, (): ()| {
        let rows = match ctx.upgrade() {
            Some(ctx) => {
                let driver = driver.as_ref().and_then(Weak::upgrade);
                Ok(members(&ctx, driver.as_deref())
                    .iter()
                    .map(MemberRow::from_member)
                    .collect::<Vec<_>>())
            }
            None => Err(RemoteError::SystemStopped),
        };
        async move { rows }
    })
}

/// One row of a member table sent in reply to [`sys::id::MEMBERS`]. Enums travel as their wire
/// numbers, not as serde enums, so that a variant added later is a typed decode error on an
/// older node rather than a silently wrong row.
#[derive(Serialize, Deserialize)]
pub(crate) struct MemberRow {
    pub(crate) name: String,
    pub(crate) incarnation: u64,
    pub(crate) addr: std::net::SocketAddr,
    pub(crate) role: u8,
    pub(crate) labels: std::collections::BTreeMap<String, String>,
    pub(crate) capabilities: Vec<String>,
    pub(crate) state: u8,
    pub(crate) phi: f64,
    pub(crate) load: Option<crate::membership::LoadReport>,
    pub(crate) connected: bool,
    pub(crate) queued: u64,
}

impl MemberRow {
    pub(crate) fn from_member(m: &crate::membership::Member) -> Self {
        Self {
            name: m.id.name().to_owned(),
            incarnation: m.id.incarnation(),
            addr: m.addr,
            role: m.role.to_wire(),
            labels: m.labels.clone(),
            capabilities: m.capabilities.clone(),
            state: m.state.to_u8(),
            phi: m.phi,
            load: m.load,
            connected: m.connected,
            queued: m.queued as u64,
        }
    }

    /// Checks the row a peer sent and turns it back into a [`Member`](crate::membership::Member).
    pub(crate) fn into_member(self) -> Result<crate::membership::Member, RemoteError> {
        let role = crate::node::NodeRole::from_wire(self.role).ok_or_else(|| {
            RemoteError::ReplyDecode(format!("member {}: unknown role {}", self.name, self.role))
        })?;
        let state = crate::membership::MemberState::from_u8(self.state).ok_or_else(|| {
            RemoteError::ReplyDecode(format!(
                "member {}: unknown state {}",
                self.name, self.state
            ))
        })?;
        crate::node::validate_node_name(&self.name)
            .map_err(|e| RemoteError::ReplyDecode(format!("member name: {e}")))?;
        Ok(crate::membership::Member {
            id: NodeId::new(self.name, self.incarnation),
            addr: self.addr,
            role,
            labels: self.labels,
            capabilities: self.capabilities,
            state,
            phi: self.phi,
            load: self.load,
            connected: self.connected,
            queued: usize::try_from(self.queued).unwrap_or(usize::MAX),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{self, SerializationFormat};

    #[test]
    fn member_rows_round_trip_and_refuse_unknown_states() {
        let member = crate::membership::Member {
            id: NodeId::new("node-1", 42),
            addr: ([127, 0, 0, 1], 7001).into(),
            role: crate::node::NodeRole::Master,
            labels: [("zone".to_owned(), "a".to_owned())].into(),
            capabilities: vec!["examples.counter".into()],
            state: crate::membership::MemberState::Suspect,
            phi: 2.5,
            load: Some(crate::membership::LoadReport::new(3, 1, Some(0.5))),
            connected: true,
            queued: 7,
        };
        let bytes = codec::encode(
            SerializationFormat::Bincode,
            &vec![MemberRow::from_member(&member)],
        )
        .expect("encode");
        let rows: Vec<MemberRow> =
            codec::decode(SerializationFormat::Bincode, &bytes).expect("decode");
        let back: Result<Vec<_>, _> = rows.into_iter().map(MemberRow::into_member).collect();
        assert_eq!(back, Ok(vec![member.clone()]));

        let mut bad = MemberRow::from_member(&member);
        bad.state = 200;
        assert!(matches!(
            bad.into_member(),
            Err(RemoteError::ReplyDecode(_))
        ));
        let mut bad = MemberRow::from_member(&member);
        bad.name = "Not A Name".into();
        assert!(matches!(
            bad.into_member(),
            Err(RemoteError::ReplyDecode(_))
        ));
    }
}
