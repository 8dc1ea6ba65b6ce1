//! Node identity: who a process is in the cluster.
//!
//! A node is named by its operator (`"node-1"`); the name is what certificates bind and what
//! users address. A process also draws a random *incarnation* when it starts, so a node that
//! restarts under the same name is a different member: addresses and in-flight requests that
//! belonged to the old process fail with a typed error instead of reaching a stranger.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// The longest node name accepted (a DNS name, so that certificates can carry it).
pub const MAX_NODE_NAME_LEN: usize = 253;

/// Identity of one node process: its name and the incarnation drawn when the process started.
///
/// Two `NodeId`s with the same name and different incarnations are different members.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NodeId {
    name: Arc<str>,
    incarnation: u64,
}

impl NodeId {
    /// Creates an identity; the name is not validated here (see [`validate_node_name`]).
    pub fn new(name: impl Into<Arc<str>>, incarnation: u64) -> Self {
        Self {
            name: name.into(),
            incarnation,
        }
    }

    /// The operator-chosen node name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The incarnation drawn when this node's process started.
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    pub(crate) fn name_arc(&self) -> &Arc<str> {
        &self.name
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{:016x}", self.name, self.incarnation)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// What a node does in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub enum NodeRole {
    /// Hosts actors and takes part in placement (the default).
    #[default]
    Worker,
    /// Coordinates a centralized cluster; also hosts actors.
    Master,
    /// Joins to call others; hosts only the actors it starts itself and is never chosen by placement.
    Client,
}

impl NodeRole {
    pub(crate) fn to_wire(self) -> u8 {
        match self {
            NodeRole::Worker => 0,
            NodeRole::Master => 1,
            NodeRole::Client => 2,
        }
    }

    pub(crate) fn from_wire(b: u8) -> Option<Self> {
        Some(match b {
            0 => NodeRole::Worker,
            1 => NodeRole::Master,
            2 => NodeRole::Client,
            _ => return None,
        })
    }

    /// The lower-case name used in logs and command lines.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeRole::Worker => "worker",
            NodeRole::Master => "master",
            NodeRole::Client => "client",
        }
    }
}

impl fmt::Display for NodeRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for NodeRole {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "worker" => Ok(NodeRole::Worker),
            "master" => Ok(NodeRole::Master),
            "client" => Ok(NodeRole::Client),
            other => Err(format!(
                "unknown node role {other:?} (expected worker, master or client)"
            )),
        }
    }
}

/// How the cluster is organised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Architecture {
    /// Every node is a peer; membership spreads node to node (see [`DiscoveryMethod`](crate::DiscoveryMethod)).
    #[default]
    Decentralized,
    /// Master nodes (`master_nodes`) hold the authoritative member list: workers register
    /// with every master and heartbeat them, masters detect failures and push each change to
    /// every node. With several masters a worker keeps working while any one is reachable.
    Centralized,
}

/// Everything a node tells its peers about itself in the handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NodeInfo {
    /// Name and incarnation.
    pub(crate) id: NodeId,
    /// The address peers dial to reach this node.
    pub(crate) addr: SocketAddr,
    /// What the node does.
    pub(crate) role: NodeRole,
    /// Free-form operator labels (`zone=eu-1`), used by placement in later versions.
    pub(crate) labels: BTreeMap<String, String>,
}

/// Checks that `name` can serve as a node name: a DNS name made of lower-case ASCII letters,
/// digits, `-` and `.`, so that it can appear in a certificate's subjectAltName.
pub fn validate_node_name(name: &str) -> Result<(), String> {
    validate_dns_name("node name", name)
}

/// Checks that `name` can be a cluster name: the same DNS-style rules as a node name
/// (lower-case letters, digits, `-` and `.`; at most [`MAX_NODE_NAME_LEN`] bytes).
///
/// # Errors
///
/// What is wrong, naming the cluster name and the allowed characters.
pub fn validate_cluster_name(name: &str) -> Result<(), String> {
    validate_dns_name("cluster name", name)
}

/// `what` names the setting in the error: "node name" or "cluster name".
fn validate_dns_name(what: &str, name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("{what} is empty"));
    }
    if name.len() > MAX_NODE_NAME_LEN {
        return Err(format!(
            "{what} is {} bytes long, the limit is {MAX_NODE_NAME_LEN}",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '.'))
    {
        return Err(format!(
            "{what} {name:?} contains {c:?}; use lower-case letters, digits, '-' and '.'"
        ));
    }
    if name.split('.').any(|label| {
        label.is_empty() || label.len() > 63 || label.starts_with('-') || label.ends_with('-')
    }) {
        return Err(format!(
            "{what} {name:?} is not a valid DNS name (empty label, label over 63 bytes, or a label starting or ending with '-')"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_must_be_dns_names() {
        assert!(validate_node_name("node-1").is_ok());
        assert!(validate_node_name("a.b.c").is_ok());
        assert!(validate_node_name("").is_err());
        assert!(validate_node_name("Node").is_err());
        assert!(validate_node_name("-x").is_err());
        assert!(validate_node_name("a..b").is_err());
        let e = validate_cluster_name("Aearly1").expect_err("upper case");
        assert!(
            e.starts_with("cluster name \"Aearly1\" contains 'A'"),
            "{e}"
        );
        assert!(validate_node_name("a b").is_err());
        assert!(validate_node_name(&"a".repeat(64)).is_err());
    }

    #[test]
    fn restarted_node_is_a_different_identity() {
        assert_ne!(NodeId::new("n", 1), NodeId::new("n", 2));
        assert_eq!(NodeId::new("n", 1), NodeId::new("n", 1));
    }
}
