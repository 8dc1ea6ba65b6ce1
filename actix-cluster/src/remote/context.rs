//! What the remote layer needs of its node, and nothing more: the node's identity, the
//! transport, the actor table, limits and timeouts, the system request table, and the
//! interface through which named addresses resolve.
//!
//! Every address is bound to one [`RemoteContext`] — the node it is used from — when it is
//! made. An address decoded from a message is bound to the node whose connection delivered
//! the message (or whose call received the reply): the remote layer decodes inside a
//! [`decode scope`](with_scope) naming that node. That scope is the only per-thread state in
//! the library: it is set for the duration of one decode call and never consulted to find
//! "the node of this thread", so several nodes in one process (or on one thread) never mix.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use super::local::LocalActors;
use super::named::NameResolver;
use super::system::SystemRequests;
use crate::codec::SerializationFormat;
use crate::limits::Limits;
use crate::node::NodeInfo;
use crate::transport::Transport;

/// The remote layer's view of one node.
pub(crate) struct RemoteContext {
    /// This node: identity, advertised address, role.
    pub(crate) local: NodeInfo,
    pub(crate) transport: Arc<Transport>,
    pub(crate) actors: Arc<LocalActors>,
    pub(crate) limits: Limits,
    /// Default deadline of requests.
    pub(crate) request_timeout: Duration,
    /// Format for actor types that do not choose one.
    pub(crate) default_format: SerializationFormat,
    /// Requests and tells to actor 0, the node itself.
    pub(crate) system: SystemRequests,
    /// Where named addresses look their name up (the registry's local replica).
    pub(crate) names: Arc<dyn NameResolver>,
    /// What owns this context, set once by the layer that builds the node: how a handle of
    /// a layer above (a virtual actor's, which needs the whole node) is decoded.
    pub(crate) owner: std::sync::OnceLock<std::sync::Weak<dyn std::any::Any + Send + Sync>>,
    stopped: AtomicBool,
    dropped_full: AtomicU64,
    dropped_failed: AtomicU64,
}

impl std::fmt::Debug for RemoteContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteContext")
            .field("local", &self.local.id)
            .finish_non_exhaustive()
    }
}

impl RemoteContext {
    pub(crate) fn new(
        transport: Arc<Transport>,
        actors: Arc<LocalActors>,
        request_timeout: Duration,
        default_format: SerializationFormat,
        names: Arc<dyn NameResolver>,
    ) -> Arc<Self> {
        Arc::new(Self {
            local: transport.local.clone(),
            limits: transport.config.limits,
            transport,
            actors,
            request_timeout,
            default_format,
            system: SystemRequests::new(),
            names,
            owner: std::sync::OnceLock::new(),
            stopped: AtomicBool::new(false),
            dropped_full: AtomicU64::new(0),
            dropped_failed: AtomicU64::new(0),
        })
    }

    pub(crate) fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    /// Marks the node stopped: addresses bound to it fail with `SystemStopped` from now on.
    /// Returns whether it was running.
    pub(crate) fn stop(&self) -> bool {
        !self.stopped.swap(true, Ordering::AcqRel)
    }

    /// Counts a message `do_send` dropped (`reason` is `queue_full` or `send_failed`).
    pub(crate) fn count_dropped(&self, reason: &'static str) {
        let counter = if reason == "queue_full" {
            &self.dropped_full
        } else {
            &self.dropped_failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
        crate::metrics::messages_dropped(reason, 1);
    }

    /// Messages `do_send` dropped since start.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped_full.load(Ordering::Relaxed) + self.dropped_failed.load(Ordering::Relaxed)
    }
}

/// The node of the decode in progress on this thread. Kept between decodes (inactive) so that
/// the common case, one node decoding message after message, costs no reference counting: the
/// pointer is compared and a flag set. Weak, so a stopped node is not kept alive by a thread.
struct Scope {
    node: Weak<RemoteContext>,
    active: bool,
}

thread_local! {
    static SCOPE: RefCell<Scope> = const {
        RefCell::new(Scope {
            node: Weak::new(),
            active: false,
        })
    };
}

/// Runs `decode` with `ctx` as the node that addresses decoded inside it are bound to.
/// Scopes nest (a decode inside a decode restores the outer node afterwards).
pub(crate) fn with_scope<T>(ctx: &Arc<RemoteContext>, decode: impl FnOnce() -> T) -> T {
    struct Restore {
        active: bool,
        /// The outer node, when this scope replaced it.
        node: Option<Weak<RemoteContext>>,
    }
    impl Drop for Restore {
        fn drop(&mut self) {
            let node = self.node.take();
            SCOPE.with(|s| {
                let mut s = s.borrow_mut();
                s.active = self.active;
                if let Some(node) = node {
                    s.node = node;
                }
            });
        }
    }
    let _restore = SCOPE.with(|s| {
        let mut s = s.borrow_mut();
        let same = std::ptr::eq(s.node.as_ptr(), Arc::as_ptr(ctx));
        let node = (!same).then(|| std::mem::replace(&mut s.node, Arc::downgrade(ctx)));
        Restore {
            active: std::mem::replace(&mut s.active, true),
            node,
        }
    });
    decode()
}

/// The node of the decode in progress, for `Deserialize` impls of addresses. `None` outside
/// a decode the remote layer runs (an address decoded by user code is unbound: using it
/// fails with `SystemStopped`).
pub(crate) fn decoding_for() -> Option<Arc<RemoteContext>> {
    SCOPE.with(|s| {
        let s = s.borrow();
        if s.active { s.node.upgrade() } else { None }
    })
}
