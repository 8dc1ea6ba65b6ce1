//! Addresses that follow a cluster-wide name. The registry above this layer implements
//! [`NameResolver`] over its local replica; a named address asks it before each send and moves
//! to a newer registration of its name.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use super::actor::DistributedActor;
use super::addr::Resolved;
use super::context::RemoteContext;
use super::send::Endpoint;
use crate::node::NodeId;

/// Where a name's current registration points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NameLocation {
    pub(crate) node: NodeId,
    pub(crate) node_addr: SocketAddr,
    /// Wire name of the registered actor's type.
    pub(crate) actor_type: String,
    pub(crate) actor_id: u64,
    /// Registration version (registry log index): higher is newer.
    pub(crate) version: u64,
}

/// Looks names up for named addresses. Implemented by the registry over its local replica.
pub(crate) trait NameResolver: Send + Sync + 'static {
    /// The registration of `name` in this node's replica if it is newer than `version`.
    /// `None` when it is not, when the name is unregistered, and on nodes without a replica:
    /// in every case the address keeps its target. Called on every send of a named address,
    /// so the common answer (nothing newer) must not allocate.
    fn newer_than(&self, name: &str, version: u64) -> Option<NameLocation>;
}

/// The target of an address obtained by name, and the registration it was resolved from.
pub(super) struct NameBinding<A: DistributedActor> {
    pub(super) name: Arc<str>,
    current: RwLock<Current<A>>,
}

struct Current<A: DistributedActor> {
    /// Registration version (registry log index) `resolved` came from.
    version: u64,
    resolved: Arc<Resolved<A>>,
}

impl<A: DistributedActor> NameBinding<A> {
    pub(super) fn new(name: Arc<str>, version: u64, resolved: Resolved<A>) -> Self {
        Self {
            name,
            current: RwLock::new(Current {
                version,
                resolved: Arc::new(resolved),
            }),
        }
    }

    /// The target as last resolved, and its version, without consulting the registry.
    pub(super) fn held(&self) -> (u64, Arc<Resolved<A>>) {
        let c = self.current.read().unwrap_or_else(|e| e.into_inner());
        (c.version, Arc::clone(&c.resolved))
    }

    /// The target the name means now according to this node's replica, and its version.
    pub(super) fn resolve(&self) -> (u64, Arc<Resolved<A>>) {
        let held = self.held();
        // No node on this thread (an address deserialized off-node): nothing to ask.
        let Ok(core) = held.1.ep.core() else {
            return held;
        };
        // `None` both when the name is unregistered and on client nodes (no replica): either
        // way the last target stays, as documented on `RemoteAddr`.
        let Some(entry) = core.names.newer_than(&self.name, held.0) else {
            return held;
        };
        let core = Arc::clone(core);
        self.follow(&entry, Some(core))
    }

    /// Moves to `entry` if it is a newer registration of an actor of type `A`; returns the
    /// target in effect afterwards and its version. `core` is the node the new endpoint is
    /// used from.
    pub(super) fn follow(
        &self,
        entry: &NameLocation,
        core: Option<Arc<RemoteContext>>,
    ) -> (u64, Arc<Resolved<A>>) {
        if entry.actor_type != A::NAME {
            tracing::debug!(
                name = %self.name,
                version = entry.version,
                found = %entry.actor_type,
                expected = A::NAME,
                "named address not following a registration of another actor type"
            );
            return self.held();
        }
        let mut c = self.current.write().unwrap_or_else(|e| e.into_inner());
        // Checked again under the write lock: another sender may have moved it meanwhile, to
        // this registration or to a later one, and versions only ever go up.
        if entry.version > c.version {
            let ep = &c.resolved.ep;
            let moved = ep.node != entry.node || ep.actor != entry.actor_id;
            if moved {
                tracing::debug!(
                    name = %self.name,
                    version = entry.version,
                    from = ?ep,
                    to = %format_args!("{}/{}", entry.node, entry.actor_id),
                    "named address follows its name"
                );
                c.resolved = Arc::new(Resolved::new(Endpoint::new(
                    entry.node.clone(),
                    entry.node_addr,
                    entry.actor_id,
                    core,
                )));
            }
            // Same actor registered again (after a release): keep the cached peer and mailbox.
            c.version = entry.version;
        }
        (c.version, Arc::clone(&c.resolved))
    }
}
