//! Why a node could not start.

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
    /// The cluster name is not a DNS-style name (lower-case letters, digits, `-` and `.`).
    #[error("{reason}")]
    InvalidClusterName {
        /// The name given to [`ClusterSystem::new`](crate::ClusterSystem::new).
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Registered actor types, or the messages of one type, share a wire name or id. Each
    /// entry says which.
    #[error("conflicting wire names: {}", .0.join("; "))]
    ConflictingWireNames(Vec<String>),
    /// The same actor type was registered twice with
    /// [`ClusterSystemBuilder::register`](crate::ClusterSystemBuilder::register).
    #[error("actor type name {0:?} registered twice")]
    DuplicateActorType(String),
    /// The registry's storage could not be opened (a durable data directory that cannot be
    /// read or written, or is in use by another process).
    #[error("registry storage: {0}")]
    RegistryStorage(#[source] std::io::Error),
    /// The default state store (`state.redb` in the registry's durable data directory) could
    /// not be opened: the directory cannot be written, or another process uses it.
    #[error("state storage: {0}")]
    StateStorage(#[source] std::io::Error),
    /// A subsystem could not plug into the node: a bug in this crate, reported instead of a
    /// panic.
    #[error("internal wiring of the node failed: {0}")]
    Wiring(String),
    /// The network arbiter stopped before it finished starting.
    #[error("the network thread stopped during start-up")]
    NetworkThread,
}
