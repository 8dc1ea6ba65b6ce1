//! Cluster configuration: a builder with named presets and a validating `build()`.
//!
//! ```
//! use actix_cluster::{ClusterConfig, ConfigError};
//!
//! let config = ClusterConfig::new()
//!     .node_name("node-1")
//!     .listen("127.0.0.1:0")
//!     .seed_nodes(["127.0.0.1:7000"])
//!     .insecure_plaintext() // tests only: production uses .tls(TlsConfig::from_dir(..)?)
//!     .build()?;
//! assert_eq!(config.node_name(), "node-1");
//!
//! // Mistakes are typed errors, not panics.
//! let err = ClusterConfig::new().node_name("node-1").listen("nowhere").insecure_plaintext().build();
//! assert!(matches!(err, Err(ConfigError::InvalidAddress { .. })));
//! # Ok::<(), ConfigError>(())
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use crate::codec::SerializationFormat;
use crate::limits::{Limits, Timeouts};
use crate::membership::{FailureDetectorConfig, MembershipConfig};
use crate::node::{Architecture, NodeRole, validate_node_name};
use crate::registry::RegistryConfig;
use crate::tls::TlsConfig;

/// How nodes find each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum DiscoveryMethod {
    /// Dial the seed nodes, exchange the lists of known nodes, connect to every node learnt;
    /// each node monitors every other with heartbeats and decides on its own. Nodes that come
    /// back are Up again.
    Static,
    /// SWIM gossip (probe, indirect probe, suspicion, refutation), carried over the nodes'
    /// mutually authenticated connections. Scales to large clusters.
    #[default]
    Gossip,
}

/// Which thread runs a node's network I/O (connections, frame decoding, dispatch to local
/// actors, membership timers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum NetworkThread {
    /// A thread of the node's own (an actix arbiter started by `start`), never shared with
    /// user actors. Every message between a caller and the network crosses threads, but a busy
    /// actor can never delay heartbeats or other actors' traffic. The default.
    #[default]
    Dedicated,
    /// The arbiter that awaited `start` (the node's home), where actors that other nodes spawn
    /// here run too. For latency-bound deployments whose actors and callers live on that
    /// arbiter: a request and its reply then cross no thread on either node, as with a raw
    /// socket ping-pong. The price: the network waits while an actor on that arbiter runs, so
    /// a slow handler delays every peer's traffic and heartbeats (keep handlers short, or the
    /// failure detector may suspect this node), and throughput is bounded by one thread.
    Home,
}

/// How connections between nodes are secured.
#[derive(Debug, Clone)]
pub(crate) enum Security {
    /// Mutual TLS with the cluster CA; each peer's certificate must name the node it claims.
    Tls(TlsConfig),
    /// No encryption and no authentication. Only through [`ClusterConfigBuilder::insecure_plaintext`].
    InsecurePlaintext,
}

/// Why a configuration was refused. Nothing was started.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// `node_name` was not set.
    #[error("node_name is required")]
    MissingNodeName,
    /// The node or cluster name is not usable (see [`crate::validate_node_name`]).
    #[error("invalid name: {0}")]
    InvalidName(String),
    /// An address did not parse as `ip:port`.
    #[error("invalid {field} address {value:?}: expected ip:port")]
    InvalidAddress {
        /// Which setting.
        field: &'static str,
        /// What was given.
        value: String,
    },
    /// The listen address is unspecified (`0.0.0.0`), so peers need an advertised address.
    #[error("listen address {0} is unspecified; set advertise_addr to the address peers dial")]
    AdvertiseRequired(SocketAddr),
    /// Neither TLS nor the plaintext opt-in was chosen.
    #[error(
        "no transport security chosen: call .tls(..) or, for tests only, .insecure_plaintext()"
    )]
    NoTransportSecurity,
    /// A limit is out of its allowed range.
    #[error("{field} = {value} is out of range: {reason}")]
    InvalidLimit {
        /// Which setting.
        field: &'static str,
        /// Given value.
        value: u64,
        /// Allowed range.
        reason: &'static str,
    },
    /// Timeouts contradict each other or are zero.
    #[error("invalid timeouts: {0}")]
    InvalidTimeouts(&'static str),
    /// The failure detector settings are unusable.
    #[error("invalid failure detector settings: {0}")]
    InvalidFailureDetector(&'static str),
    /// A label key or value is too long or there are too many labels.
    #[error("invalid label: {0}")]
    InvalidLabel(String),
    /// The membership timing is unusable.
    #[error("invalid membership settings: {0}")]
    InvalidMembership(&'static str),
    /// `Architecture::Centralized` without any `master_nodes`, on a node that is no master.
    #[error("a centralized cluster needs at least one address in master_nodes")]
    NoMasters,
    /// The registry settings are unusable (see [`RegistryConfig::validate`]).
    #[error("invalid registry settings: {0}")]
    InvalidRegistry(String),
}

/// A validated configuration. Create one with [`ClusterConfig::new`] (or a preset) and
/// [`ClusterConfigBuilder::build`].
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub(crate) architecture: Architecture,
    pub(crate) node_name: String,
    pub(crate) role: NodeRole,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) listen: SocketAddr,
    pub(crate) advertise: Option<SocketAddr>,
    pub(crate) seed_nodes: Vec<SocketAddr>,
    pub(crate) master_nodes: Vec<SocketAddr>,
    pub(crate) discovery: DiscoveryMethod,
    pub(crate) security: Security,
    pub(crate) serialization: SerializationFormat,
    pub(crate) limits: Limits,
    pub(crate) timeouts: Timeouts,
    pub(crate) failure_detector: FailureDetectorConfig,
    pub(crate) membership: MembershipConfig,
    pub(crate) registry: RegistryConfig,
    pub(crate) network_thread: NetworkThread,
}

impl ClusterConfig {
    /// A builder with the LAN preset. Same as [`ClusterConfig::lan`].
    #[allow(clippy::new_ret_no_self)]
    pub fn new() -> ClusterConfigBuilder {
        Self::lan()
    }

    /// Preset for loopback and LAN clusters: failures surface within seconds.
    pub fn lan() -> ClusterConfigBuilder {
        ClusterConfigBuilder::with_timeouts(
            Timeouts::lan(),
            FailureDetectorConfig::lan(),
            MembershipConfig::lan(),
        )
    }

    /// Preset for slow or lossy links: long timeouts, patient reconnects.
    pub fn conservative() -> ClusterConfigBuilder {
        ClusterConfigBuilder::with_timeouts(
            Timeouts::conservative(),
            FailureDetectorConfig::conservative(),
            MembershipConfig::conservative(),
        )
    }

    /// This node's name.
    pub fn node_name(&self) -> &str {
        &self.node_name
    }

    /// The address to bind.
    pub fn listen_addr(&self) -> SocketAddr {
        self.listen
    }

    /// Seed nodes dialled at start.
    pub fn seed_nodes(&self) -> &[SocketAddr] {
        &self.seed_nodes
    }

    /// Decentralized or centralized.
    pub fn architecture(&self) -> Architecture {
        self.architecture
    }

    /// How nodes find each other.
    pub fn discovery(&self) -> DiscoveryMethod {
        self.discovery
    }

    /// Master nodes of a centralized cluster.
    pub fn master_nodes(&self) -> &[SocketAddr] {
        &self.master_nodes
    }

    /// Failure detector tuning.
    pub fn failure_detector(&self) -> &FailureDetectorConfig {
        &self.failure_detector
    }

    /// Registry settings.
    pub fn registry(&self) -> &RegistryConfig {
        &self.registry
    }

    /// Membership protocol timing.
    pub fn membership(&self) -> &MembershipConfig {
        &self.membership
    }

    /// This node's role.
    pub fn node_role(&self) -> NodeRole {
        self.role
    }

    /// Size limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Timeouts.
    pub fn timeouts(&self) -> &Timeouts {
        &self.timeouts
    }

    /// Default payload format for actors that do not choose one.
    pub fn serialization_format(&self) -> SerializationFormat {
        self.serialization
    }

    /// Which thread runs the node's network I/O.
    pub fn network_thread(&self) -> NetworkThread {
        self.network_thread
    }

    /// Whether connections use mutual TLS.
    pub fn is_tls(&self) -> bool {
        matches!(self.security, Security::Tls(_))
    }
}

/// Builds a [`ClusterConfig`]. Setters take plain values (addresses as strings); everything is
/// checked in [`build`](Self::build), which reports the first problem found.
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until .build() is called"]
pub struct ClusterConfigBuilder {
    architecture: Architecture,
    node_name: Option<String>,
    role: NodeRole,
    labels: BTreeMap<String, String>,
    listen: String,
    advertise: Option<String>,
    seed_nodes: Vec<String>,
    master_nodes: Vec<String>,
    discovery: DiscoveryMethod,
    security: Option<Security>,
    serialization: SerializationFormat,
    limits: Limits,
    timeouts: Timeouts,
    failure_detector: FailureDetectorConfig,
    membership: MembershipConfig,
    registry: RegistryConfig,
    network_thread: NetworkThread,
}

impl ClusterConfigBuilder {
    fn with_timeouts(
        timeouts: Timeouts,
        failure_detector: FailureDetectorConfig,
        membership: MembershipConfig,
    ) -> Self {
        Self {
            architecture: Architecture::default(),
            node_name: None,
            role: NodeRole::default(),
            labels: BTreeMap::new(),
            listen: "127.0.0.1:0".into(),
            advertise: None,
            seed_nodes: Vec::new(),
            master_nodes: Vec::new(),
            discovery: DiscoveryMethod::default(),
            security: None,
            serialization: SerializationFormat::default(),
            limits: Limits::default(),
            timeouts,
            failure_detector,
            membership,
            registry: RegistryConfig::new(),
            network_thread: NetworkThread::default(),
        }
    }

    /// Decentralized (default) or centralized.
    pub fn architecture(mut self, architecture: Architecture) -> Self {
        self.architecture = architecture;
        self
    }

    /// This node's name: a DNS name that its certificate carries. Required.
    pub fn node_name(mut self, name: impl Into<String>) -> Self {
        self.node_name = Some(name.into());
        self
    }

    /// Worker (default), master or client.
    pub fn node_role(mut self, role: NodeRole) -> Self {
        self.role = role;
        self
    }

    /// Adds an operator label such as `zone=eu-1`.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Address to bind, `ip:port`. Port 0 picks a free port. Default `127.0.0.1:0`.
    pub fn listen(mut self, addr: impl Into<String>) -> Self {
        self.listen = addr.into();
        self
    }

    /// Address peers dial, when it differs from the bound one (NAT, `0.0.0.0`).
    pub fn advertise_addr(mut self, addr: impl Into<String>) -> Self {
        self.advertise = Some(addr.into());
        self
    }

    /// Nodes dialled at start to join the cluster.
    pub fn seed_nodes<I, S>(mut self, seeds: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.seed_nodes = seeds.into_iter().map(Into::into).collect();
        self
    }

    /// Master nodes of a centralized cluster.
    pub fn master_nodes<I, S>(mut self, masters: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.master_nodes = masters.into_iter().map(Into::into).collect();
        self
    }

    /// Static (default) or gossip discovery.
    pub fn discovery(mut self, discovery: DiscoveryMethod) -> Self {
        self.discovery = discovery;
        self
    }

    /// Mutual TLS with the cluster CA: the production setting.
    pub fn tls(mut self, tls: TlsConfig) -> Self {
        self.security = Some(Security::Tls(tls));
        self
    }

    /// Plaintext, unauthenticated connections: anyone who can reach the port can send
    /// messages to your actors. For tests and benchmarks on a trusted host only.
    pub fn insecure_plaintext(mut self) -> Self {
        self.security = Some(Security::InsecurePlaintext);
        self
    }

    /// Format for actors that do not choose one. Default bincode.
    pub fn serialization_format(mut self, format: SerializationFormat) -> Self {
        self.serialization = format;
        self
    }

    /// Replaces all size limits.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Largest frame, in bytes.
    pub fn max_frame_size(mut self, bytes: u32) -> Self {
        self.limits.max_frame_size = bytes;
        self
    }

    /// Bound of each per-node send queue, in messages and in bytes.
    pub fn send_queue(mut self, messages: usize, bytes: usize) -> Self {
        self.limits.send_queue_messages = messages;
        self.limits.send_queue_bytes = bytes;
        self
    }

    /// Mailbox capacity of actors the cluster starts.
    pub fn mailbox_capacity(mut self, capacity: usize) -> Self {
        self.limits.mailbox_capacity = capacity;
        self
    }

    /// LZ4 threshold in bytes, or `None` to never compress.
    pub fn compression_threshold(mut self, bytes: Option<usize>) -> Self {
        self.limits.compression_threshold = bytes;
        self
    }

    /// Replaces all timeouts.
    pub fn timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// Default deadline of `send()`.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.timeouts.request = timeout;
        self
    }

    /// Replaces the failure detector tuning (threshold, heartbeat interval, acceptable pause,
    /// minimum standard deviation).
    pub fn failure_detector(mut self, config: FailureDetectorConfig) -> Self {
        self.failure_detector = config;
        self
    }

    /// Replaces the membership protocol timing.
    pub fn membership(mut self, config: MembershipConfig) -> Self {
        self.membership = config;
        self
    }

    /// Settings of the cluster-wide name registry (voters, durable or ephemeral storage).
    pub fn registry(mut self, config: RegistryConfig) -> Self {
        self.registry = config;
        self
    }

    /// Which thread runs the node's network I/O; [`NetworkThread::Dedicated`] by default.
    pub fn network_thread(mut self, thread: NetworkThread) -> Self {
        self.network_thread = thread;
        self
    }

    /// Checks everything and returns the configuration, or the first problem found.
    pub fn build(self) -> Result<ClusterConfig, ConfigError> {
        let node_name = self.node_name.ok_or(ConfigError::MissingNodeName)?;
        validate_node_name(&node_name).map_err(ConfigError::InvalidName)?;
        let listen = parse_addr("listen", &self.listen)?;
        let advertise = self
            .advertise
            .as_deref()
            .map(|a| parse_addr("advertise", a))
            .transpose()?;
        let advertised = advertise.unwrap_or(listen);
        if advertised.ip().is_unspecified() {
            return Err(ConfigError::AdvertiseRequired(listen));
        }
        let seed_nodes = parse_addrs("seed", &self.seed_nodes)?;
        let master_nodes = parse_addrs("master", &self.master_nodes)?;
        let security = self.security.ok_or(ConfigError::NoTransportSecurity)?;
        // A master may start before it knows its own port; every other node needs addresses.
        if self.architecture == Architecture::Centralized
            && master_nodes.is_empty()
            && self.role != NodeRole::Master
        {
            return Err(ConfigError::NoMasters);
        }
        validate_labels(&self.labels)?;
        validate_limits(&self.limits)?;
        validate_timeouts(&self.timeouts)?;
        validate_failure_detector(&self.failure_detector)?;
        validate_membership(&self.membership)?;
        self.registry
            .validate()
            .map_err(ConfigError::InvalidRegistry)?;
        Ok(ClusterConfig {
            architecture: self.architecture,
            node_name,
            role: self.role,
            labels: self.labels,
            listen,
            advertise,
            seed_nodes,
            master_nodes,
            discovery: self.discovery,
            security,
            serialization: self.serialization,
            limits: self.limits,
            timeouts: self.timeouts,
            failure_detector: self.failure_detector,
            membership: self.membership,
            registry: self.registry,
            network_thread: self.network_thread,
        })
    }
}

fn validate_failure_detector(fd: &FailureDetectorConfig) -> Result<(), ConfigError> {
    if !(fd.threshold.is_finite() && fd.threshold > 0.0) {
        return Err(ConfigError::InvalidFailureDetector(
            "threshold must be a positive number",
        ));
    }
    if fd.window < 2 {
        return Err(ConfigError::InvalidFailureDetector(
            "window must hold at least 2 intervals",
        ));
    }
    if fd.min_std_deviation.is_zero()
        || fd.first_heartbeat_estimate.is_zero()
        || fd.heartbeat_interval.is_zero()
    {
        return Err(ConfigError::InvalidFailureDetector(
            "min_std_deviation, first_heartbeat_estimate and heartbeat_interval must be above zero",
        ));
    }
    Ok(())
}

fn validate_membership(m: &MembershipConfig) -> Result<(), ConfigError> {
    let nonzero = [
        m.probe_period,
        m.probe_rtt,
        m.gossip_interval,
        m.suspect_to_down,
        m.reannounce_interval,
        m.load_interval,
    ];
    if nonzero.iter().any(Duration::is_zero) {
        return Err(ConfigError::InvalidMembership(
            "every membership interval must be above zero",
        ));
    }
    if m.probe_rtt >= m.probe_period {
        return Err(ConfigError::InvalidMembership(
            "probe_rtt must be below probe_period",
        ));
    }
    Ok(())
}

fn parse_addr(field: &'static str, value: &str) -> Result<SocketAddr, ConfigError> {
    value.parse().map_err(|_| ConfigError::InvalidAddress {
        field,
        value: value.to_owned(),
    })
}

fn parse_addrs(field: &'static str, values: &[String]) -> Result<Vec<SocketAddr>, ConfigError> {
    values.iter().map(|v| parse_addr(field, v)).collect()
}

fn validate_labels(labels: &BTreeMap<String, String>) -> Result<(), ConfigError> {
    if labels.len() > usize::from(u8::MAX) {
        return Err(ConfigError::InvalidLabel(format!(
            "{} labels, at most 255",
            labels.len()
        )));
    }
    for (k, v) in labels {
        if k.is_empty() || k.len() > 255 || v.len() > 255 {
            return Err(ConfigError::InvalidLabel(format!(
                "{k:?}={v:?}: keys are 1-255 bytes, values at most 255"
            )));
        }
    }
    Ok(())
}

fn validate_limits(l: &Limits) -> Result<(), ConfigError> {
    let range = |field, value: u64, ok: bool, reason| {
        if ok {
            Ok(())
        } else {
            Err(ConfigError::InvalidLimit {
                field,
                value,
                reason,
            })
        }
    };
    range(
        "max_frame_size",
        u64::from(l.max_frame_size),
        (4096..=1 << 30).contains(&l.max_frame_size),
        "4 KiB to 1 GiB",
    )?;
    range(
        "send_queue_messages",
        l.send_queue_messages as u64,
        l.send_queue_messages >= 1,
        "at least 1",
    )?;
    range(
        "send_queue_bytes",
        l.send_queue_bytes as u64,
        l.send_queue_bytes >= l.max_frame_size as usize + crate::wire::MAX_HEADER,
        "must hold at least one frame of max_frame_size",
    )?;
    range(
        "max_connections",
        l.max_connections as u64,
        l.max_connections >= 2,
        "at least 2",
    )?;
    range(
        "max_handshakes",
        l.max_handshakes as u64,
        (1..=l.max_connections).contains(&l.max_handshakes),
        "at least 1, at most max_connections",
    )?;
    range(
        "inbound_memory_bytes",
        l.inbound_memory_bytes as u64,
        l.inbound_memory_bytes >= l.max_frame_size as usize + crate::wire::MAX_HEADER,
        "must hold at least one frame of max_frame_size",
    )?;
    range(
        "mailbox_capacity",
        l.mailbox_capacity as u64,
        l.mailbox_capacity >= 1,
        "at least 1",
    )?;
    if let Some(t) = l.compression_threshold {
        range(
            "compression_threshold",
            t as u64,
            t >= 64,
            "at least 64 bytes",
        )?;
    }
    Ok(())
}

fn validate_timeouts(t: &Timeouts) -> Result<(), ConfigError> {
    let all = [
        t.request,
        t.connect,
        t.handshake,
        t.ping_interval,
        t.idle_timeout,
        t.reconnect_min,
        t.reconnect_max,
        t.give_up_after,
    ];
    if all.iter().any(Duration::is_zero) {
        return Err(ConfigError::InvalidTimeouts("no timeout may be zero"));
    }
    if t.idle_timeout < t.ping_interval * 2 {
        return Err(ConfigError::InvalidTimeouts(
            "idle_timeout must be at least twice ping_interval, or healthy idle links are closed",
        ));
    }
    if t.reconnect_min > t.reconnect_max {
        return Err(ConfigError::InvalidTimeouts(
            "reconnect_min must not exceed reconnect_max",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> ClusterConfigBuilder {
        ClusterConfig::new().node_name("n1").insecure_plaintext()
    }

    #[test]
    fn registry_settings_are_checked() {
        let bad = [
            RegistryConfig::new().voters(2),
            RegistryConfig::new().max_snapshot_bytes(1 << 10),
            RegistryConfig::new().max_snapshot_bytes(1 << 30),
            RegistryConfig {
                election_timeout: (Duration::from_millis(900), Duration::from_millis(600)),
                ..RegistryConfig::new()
            },
        ];
        for registry in bad {
            let refused = base().registry(registry.clone()).build();
            assert!(
                matches!(refused, Err(ConfigError::InvalidRegistry(_))),
                "{registry:?}: {refused:?}"
            );
        }
        let fine = RegistryConfig::new()
            .voters(5)
            .max_snapshot_bytes(1000 << 20);
        assert!(base().registry(fine).build().is_ok());
    }

    #[test]
    fn defaults_build() {
        let c = base().build().expect("valid");
        assert_eq!(c.listen_addr().port(), 0);
        assert!(!c.is_tls());
    }

    #[test]
    fn missing_security_is_refused() {
        let err = ClusterConfig::new().node_name("n1").build();
        assert_eq!(err.err(), Some(ConfigError::NoTransportSecurity));
    }

    #[test]
    fn missing_or_bad_names_are_refused() {
        assert_eq!(
            ClusterConfig::new().insecure_plaintext().build().err(),
            Some(ConfigError::MissingNodeName)
        );
        assert!(matches!(
            base().node_name("Bad Name").build(),
            Err(ConfigError::InvalidName(_))
        ));
    }

    #[test]
    fn bad_addresses_are_refused() {
        assert!(matches!(
            base().seed_nodes(["x:1"]).build(),
            Err(ConfigError::InvalidAddress { field: "seed", .. })
        ));
        assert_eq!(
            base().listen("0.0.0.0:7000").build().err(),
            Some(ConfigError::AdvertiseRequired(
                "0.0.0.0:7000".parse().expect("addr")
            ))
        );
        assert!(
            base()
                .listen("0.0.0.0:7000")
                .advertise_addr("10.0.0.1:7000")
                .build()
                .is_ok()
        );
    }

    #[test]
    fn limits_are_checked() {
        assert!(matches!(
            base().max_frame_size(10).build(),
            Err(ConfigError::InvalidLimit {
                field: "max_frame_size",
                ..
            })
        ));
        assert!(matches!(
            base().send_queue(0, 1 << 30).build(),
            Err(ConfigError::InvalidLimit {
                field: "send_queue_messages",
                ..
            })
        ));
        assert!(matches!(
            base().send_queue(10, 1024).build(),
            Err(ConfigError::InvalidLimit {
                field: "send_queue_bytes",
                ..
            })
        ));
        let admission = |f: fn(&mut Limits)| {
            let mut l = Limits::default();
            f(&mut l);
            match base().limits(l).build() {
                Err(ConfigError::InvalidLimit { field, .. }) => Some(field),
                _ => None,
            }
        };
        assert_eq!(
            admission(|l| l.max_connections = 1),
            Some("max_connections")
        );
        assert_eq!(admission(|l| l.max_handshakes = 0), Some("max_handshakes"));
        assert_eq!(
            admission(|l| l.max_handshakes = l.max_connections + 1),
            Some("max_handshakes")
        );
        assert_eq!(
            admission(|l| l.inbound_memory_bytes = l.max_frame_size as usize),
            Some("inbound_memory_bytes")
        );
        assert_eq!(admission(|_| {}), None);
    }

    #[test]
    fn contradictory_timeouts_are_refused() {
        let mut t = Timeouts::lan();
        t.idle_timeout = t.ping_interval;
        assert!(matches!(
            base().timeouts(t).build(),
            Err(ConfigError::InvalidTimeouts(_))
        ));
        assert!(matches!(
            base().request_timeout(Duration::ZERO).build(),
            Err(ConfigError::InvalidTimeouts(_))
        ));
    }

    #[test]
    fn centralized_without_masters_is_refused() {
        assert_eq!(
            base().architecture(Architecture::Centralized).build().err(),
            Some(ConfigError::NoMasters)
        );
        let ok = base()
            .architecture(Architecture::Centralized)
            .master_nodes(["127.0.0.1:7000"])
            .discovery(DiscoveryMethod::Static)
            .build();
        assert!(ok.is_ok(), "{ok:?}");
    }

    #[test]
    fn contradictory_membership_timing_is_refused() {
        let mut m = MembershipConfig::lan();
        m.probe_rtt = m.probe_period;
        assert!(matches!(
            base().membership(m).build(),
            Err(ConfigError::InvalidMembership(_))
        ));
        let mut m = MembershipConfig::lan();
        m.suspect_to_down = Duration::ZERO;
        assert!(matches!(
            base().membership(m).build(),
            Err(ConfigError::InvalidMembership(_))
        ));
    }

    #[test]
    fn unusable_failure_detector_is_refused() {
        let fd = FailureDetectorConfig {
            threshold: f64::NAN,
            ..FailureDetectorConfig::lan()
        };
        assert!(matches!(
            base().failure_detector(fd).build(),
            Err(ConfigError::InvalidFailureDetector(_))
        ));
        let fd = FailureDetectorConfig {
            window: 1,
            ..FailureDetectorConfig::lan()
        };
        assert!(matches!(
            base().failure_detector(fd).build(),
            Err(ConfigError::InvalidFailureDetector(_))
        ));
    }

    #[test]
    fn presets_validate() {
        for preset in [ClusterConfig::lan(), ClusterConfig::conservative()] {
            preset
                .node_name("n1")
                .insecure_plaintext()
                .build()
                .expect("preset is valid");
        }
    }
}
