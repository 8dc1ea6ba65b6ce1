//! Limits and timeouts: the bounds every layer works within.
//!
//! A leaf module: the transport, the remote layer and the configuration all read these, so
//! they live below all of them. [`ClusterConfig`](crate::ClusterConfig) carries one of each and
//! validates them.

use std::time::Duration;

/// Size limits. Every queue and buffer the network side keeps is bounded by one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Largest frame accepted or sent, in bytes after the 4-byte length prefix. Also bounds a
    /// decompressed payload. Default 16 MiB.
    pub max_frame_size: u32,
    /// Messages that may wait in the send queue to one node. Default 65,536.
    pub send_queue_messages: usize,
    /// Bytes that may wait in the send queue to one node. Default 64 MiB; at least one frame.
    pub send_queue_bytes: usize,
    /// Mailbox capacity of actors the cluster starts (actix's default of 16 makes network
    /// ingress stall on every short burst). Default 1,024.
    pub mailbox_capacity: usize,
    /// Payloads at least this large are LZ4-compressed when that saves space. Default 32 KiB;
    /// `None` disables compression.
    pub compression_threshold: Option<usize>,
    /// Connections open at once: established ones (inbound and outbound) plus inbound ones
    /// still in the handshake. When full, the oldest inbound handshake is closed to make room;
    /// with no handshake to close, the new connection is. Default 1,024; at least 2.
    pub max_connections: usize,
    /// Inbound handshakes in progress at once; when full, the oldest is closed to make room
    /// (a real handshake completes in milliseconds, so the oldest is the likeliest stalled).
    /// Default 256; at least 1, at most `max_connections`.
    pub max_handshakes: usize,
    /// Bytes of partially received frames all connections together may hold. Over it, the
    /// connection holding the largest partial frame is closed. Default 128 MiB; at least one
    /// frame of `max_frame_size`.
    pub inbound_memory_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_frame_size: 16 << 20,
            send_queue_messages: 65_536,
            send_queue_bytes: 64 << 20,
            mailbox_capacity: 1024,
            compression_threshold: Some(32 << 10),
            max_connections: 1024,
            max_handshakes: 256,
            inbound_memory_bytes: 128 << 20,
        }
    }
}

/// Timeouts and intervals of the network side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Timeouts {
    /// Default deadline of `send()`; each call can override it.
    pub request: Duration,
    /// TCP connect deadline.
    pub connect: Duration,
    /// Deadline for TLS plus the cluster handshake on a new connection.
    pub handshake: Duration,
    /// How often an idle connection is pinged.
    pub ping_interval: Duration,
    /// A connection that has read nothing for this long is closed as dead.
    pub idle_timeout: Duration,
    /// First reconnect delay; doubles per failed attempt, with jitter.
    pub reconnect_min: Duration,
    /// Longest reconnect delay.
    pub reconnect_max: Duration,
    /// After this long without a connection, a node is unreachable: its queued messages are
    /// dropped (and counted) and sends to it fail at once until it is reachable again.
    pub give_up_after: Duration,
}

impl Timeouts {
    /// Loopback and LAN: failures surface within seconds.
    pub fn lan() -> Self {
        Self {
            request: Duration::from_secs(5),
            connect: Duration::from_secs(2),
            handshake: Duration::from_secs(5),
            ping_interval: Duration::from_millis(500),
            idle_timeout: Duration::from_secs(3),
            reconnect_min: Duration::from_millis(50),
            reconnect_max: Duration::from_secs(2),
            give_up_after: Duration::from_secs(10),
        }
    }

    /// Links with long pauses (WAN, overloaded hosts): slower to give up, fewer false alarms.
    pub fn conservative() -> Self {
        Self {
            request: Duration::from_secs(30),
            connect: Duration::from_secs(10),
            handshake: Duration::from_secs(15),
            ping_interval: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(20),
            reconnect_min: Duration::from_millis(200),
            reconnect_max: Duration::from_secs(10),
            give_up_after: Duration::from_secs(120),
        }
    }
}

impl Default for Timeouts {
    fn default() -> Self {
        Self::lan()
    }
}
