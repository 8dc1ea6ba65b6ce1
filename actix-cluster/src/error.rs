//! Errors of remote calls and of starting a node.
//!
//! One enum per operation: [`RemoteError`] for anything sent to an actor, [`TrySendError`] for
//! the non-waiting send that hands the message back, [`StartError`] for bringing a node up.
//! Configuration errors live with the config ([`crate::ConfigError`]).

use std::fmt;
use std::time::Duration;

use crate::codec::CodecError;
use crate::node::NodeId;

/// Why a remote call failed.
///
/// Unless a variant says otherwise, the message was **not** delivered. `NodeGone` and
/// `Timeout` are the exceptions: the request may or may not have been handled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RemoteError {
    /// No reply within the deadline. The request may still be handled later; its late reply
    /// is discarded.
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    /// The node could not be reached (never connected, or reconnecting failed for longer than
    /// the configured give-up time). Nothing was delivered.
    #[error("node {node} is unreachable")]
    NodeUnreachable {
        /// Node name as addressed.
        node: String,
    },
    /// The connection to the node dropped, or the node restarted as a new incarnation, while
    /// the request was in flight. It may or may not have been handled.
    #[error("node {node} is gone")]
    NodeGone {
        /// The node that was addressed.
        node: NodeId,
    },
    /// No node of that name is known to this node.
    #[error("no node named {0:?} is known")]
    UnknownNode(String),
    /// The addressed node does not host that actor (never existed, or it stopped and its id
    /// is not reused), or it has no actor under that local name.
    #[error("node {node} has no actor {actor}")]
    UnknownActor {
        /// Node name.
        node: String,
        /// Actor id or local name.
        actor: String,
    },
    /// The actor exists but is of another type than the address claims.
    #[error("actor {actor} on {node} has type {found}, expected {expected}")]
    ActorTypeMismatch {
        /// Node name.
        node: String,
        /// Actor id or local name.
        actor: String,
        /// Type the caller expected.
        expected: String,
        /// Type registered on the node.
        found: String,
    },
    /// The receiving node does not know this message type for that actor type (for example
    /// it runs an older build), or the actor type is not registered there for remote spawn.
    #[error("{actor_type} on the receiving node does not handle message {message:?}")]
    UnknownMessageType {
        /// Actor type's wire name.
        actor_type: String,
        /// Message's wire name or id.
        message: String,
    },
    /// Spawning failed: the target node has not registered this actor type
    /// (`ClusterSystem::new(..).register::<A>()`).
    #[error("node {node} cannot spawn {actor_type}: type not registered there")]
    ActorTypeNotRegistered {
        /// Node name.
        node: String,
        /// Actor type's wire name.
        actor_type: String,
    },
    /// The message or reply could not be serialized; nothing was sent.
    #[error("cannot encode: {0}")]
    Encode(String),
    /// The receiver could not decode the message, or we could not decode the reply.
    #[error("cannot decode: {0}")]
    Decode(String),
    /// The encoded payload exceeds the frame limit; nothing was sent.
    #[error("payload of {size} bytes exceeds the limit of {limit} bytes")]
    PayloadTooLarge {
        /// Payload size in bytes.
        size: u64,
        /// Configured maximum.
        limit: u64,
    },
    /// The per-node send queue is full. Only returned where the caller chose not to wait.
    #[error("send queue to node {node} is full")]
    QueueFull {
        /// Node name.
        node: String,
    },
    /// The actor stopped before it handled the message.
    #[error("actor stopped before handling the message")]
    ActorStopped,
    /// The handler panicked or its actor stopped while handling; the node keeps running.
    #[error("handler failed: {0}")]
    HandlerFailed(String),
    /// The local cluster system has shut down, or this address was used on a thread that runs
    /// no cluster node.
    #[error("the cluster system is not running")]
    SystemStopped,
}

impl RemoteError {
    pub(crate) fn from_codec(e: CodecError, decoding: bool) -> Self {
        match e {
            CodecError::TooLarge { size, limit } => RemoteError::PayloadTooLarge { size, limit },
            other if decoding => RemoteError::Decode(other.to_string()),
            other => RemoteError::Encode(other.to_string()),
        }
    }

    /// Whether the message is known not to have been handled, so that a retry cannot
    /// duplicate its effect.
    pub fn is_not_delivered(&self) -> bool {
        !matches!(
            self,
            RemoteError::Timeout(_) | RemoteError::NodeGone { .. } | RemoteError::HandlerFailed(_)
        )
    }
}

/// A send that would have had to wait. The message is handed back.
#[non_exhaustive]
pub enum TrySendError<M> {
    /// The per-node send queue is full; retry later or use a waiting send.
    Full(M),
    /// The message cannot be sent at all.
    Failed(M, RemoteError),
}

impl<M> TrySendError<M> {
    /// The message that was not sent.
    pub fn into_inner(self) -> M {
        match self {
            TrySendError::Full(m) | TrySendError::Failed(m, _) => m,
        }
    }

    /// The reason, as a [`RemoteError`].
    pub fn error(&self) -> RemoteError {
        match self {
            TrySendError::Full(_) => RemoteError::QueueFull {
                node: String::new(),
            },
            TrySendError::Failed(_, e) => e.clone(),
        }
    }
}

impl<M> fmt::Debug for TrySendError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySendError::Full(_) => f.write_str("Full(..)"),
            TrySendError::Failed(_, e) => f.debug_tuple("Failed").field(&"..").field(e).finish(),
        }
    }
}

impl<M> fmt::Display for TrySendError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySendError::Full(_) => f.write_str("send queue is full"),
            TrySendError::Failed(_, e) => e.fmt(f),
        }
    }
}

impl<M> std::error::Error for TrySendError<M> {}

/// Why a cluster node could not start. Nothing keeps running after this error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Address from the config.
        addr: std::net::SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// TLS material could not be turned into a working configuration.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// This node's certificate does not name this node.
    #[error("this node's certificate names {names:?}, not {node:?}")]
    CertificateName {
        /// Configured node name.
        node: String,
        /// Names in the certificate.
        names: Vec<String>,
    },
    /// `start` must run inside an actix `System` (for example under `#[actix::main]`).
    #[error("ClusterSystem::start must be called inside a running actix System")]
    NoSystem,
    /// Two registered actor or message types share a wire name or id.
    #[error("conflicting wire names: {0}")]
    Registry(String),
    /// The network arbiter stopped before it finished starting.
    #[error("the network thread stopped during start-up")]
    NetworkThread,
}
