//! The wire protocol, sans-IO: frame layout, encoding and an incremental decoder.
//!
//! Nothing here touches a socket, a clock or an actor. The transport feeds bytes read from a
//! connection into [`FrameDecoder::decode`] and writes what the `put_*` functions produce.
//! `docs/protocol.md` documents the layout byte by byte; keep the two in step.
//!
//! Every frame is `[u32 LE length][u8 kind][u8 flags][kind-specific header][payload]`, where
//! `length` counts everything after itself. The decoder checks `length` against the configured
//! maximum *before* reserving memory for the frame, and never panics on peer bytes: any
//! malformed input is a [`WireError`], after which the connection is closed.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::codec::SerializationFormat;
use crate::node::{NodeId, NodeInfo, NodeRole};

/// First bytes of every handshake, so that a stray client (or a TLS ClientHello sent to a
/// plaintext node) is recognised at once.
pub(crate) const MAGIC: [u8; 4] = *b"AXCL";
/// The protocol version this build speaks. Peers must speak the same version.
pub(crate) const PROTOCOL_VERSION: u16 = 1;
/// Size of the length prefix.
pub(crate) const LEN_PREFIX: usize = 4;
/// Kind and flags bytes, present in every frame.
const KIND_AND_FLAGS: usize = 2;
/// Largest tell/request header: actor (8) + message (4) + correlation (8).
pub(crate) const MAX_HEADER: usize = LEN_PREFIX + KIND_AND_FLAGS + 20;

/// Frame kinds of the transport itself. Kinds in [`CHANNEL_KINDS`] belong to the subsystems
/// above it (membership `0x1_`, consensus `0x2_`, placement and pub/sub from `0x3_` on): the
/// decoder hands their bodies up as [`Frame::Channel`] and the transport routes them to the
/// handler registered for the kind. Any other kind this version does not know is skipped, not
/// fatal, so that later versions can add kinds behind a handshake capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum FrameKind {
    Hello = 0x01,
    Tell = 0x02,
    Request = 0x03,
    Response = 0x04,
    Error = 0x05,
    Ping = 0x06,
    Pong = 0x07,
    Nodes = 0x08,
    GoAway = 0x09,
}

/// Frame kinds whose body is opaque to the wire layer and belongs to one subsystem's channel.
pub(crate) const CHANNEL_KINDS: std::ops::RangeInclusive<u8> = 0x10..=0x7f;

impl FrameKind {
    fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            0x01 => FrameKind::Hello,
            0x02 => FrameKind::Tell,
            0x03 => FrameKind::Request,
            0x04 => FrameKind::Response,
            0x05 => FrameKind::Error,
            0x06 => FrameKind::Ping,
            0x07 => FrameKind::Pong,
            0x08 => FrameKind::Nodes,
            0x09 => FrameKind::GoAway,
            _ => return None,
        })
    }
}

/// Flags bits 0-1: payload format (0 = none). Bit 2: payload is LZ4-compressed. Bits 3-7 are
/// reserved and must be zero.
const FLAG_FORMAT_MASK: u8 = 0b0000_0011;
const FLAG_LZ4: u8 = 0b0000_0100;
const FLAG_RESERVED: u8 = !(FLAG_FORMAT_MASK | FLAG_LZ4);

/// Hello flag: the sender runs mutual TLS on this connection.
const HELLO_TLS: u8 = 0b0000_0001;

/// Why a byte stream is not a valid frame sequence. Always fatal for the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum WireError {
    /// The length prefix announces more than the configured maximum; nothing was allocated.
    #[error("frame of {size} bytes exceeds the limit of {limit} bytes")]
    FrameTooLarge {
        /// Announced size.
        size: u64,
        /// Configured maximum.
        limit: u64,
    },
    /// The frame ends before a field it must contain.
    #[error("truncated {0} frame")]
    Truncated(&'static str),
    /// A field holds a value the protocol does not allow.
    #[error("malformed {kind} frame: {reason}")]
    Malformed {
        /// Frame kind being parsed.
        kind: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// A handshake did not start with the protocol's magic bytes.
    #[error("not an actix-cluster peer (first bytes {0:02x?})")]
    BadMagic([u8; 4]),
}

/// A user payload as it arrived: still encoded, perhaps compressed, sharing the read buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Payload {
    pub(crate) format: SerializationFormat,
    pub(crate) compressed: bool,
    pub(crate) bytes: Bytes,
}

/// The handshake each side sends first on a new connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Hello {
    pub(crate) version: u16,
    pub(crate) cluster: String,
    pub(crate) tls: bool,
    pub(crate) node: NodeInfo,
    /// Largest frame the sender accepts; peers never send it anything larger.
    pub(crate) max_frame_size: u32,
}

/// The frame limit assumed for a peer whose hello does not state one: the smallest limit
/// config validation allows, so that nothing sent to it can exceed what it accepts.
pub(crate) const MIN_MAX_FRAME_SIZE: u32 = 4096;

/// One decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Frame {
    Hello(Hello),
    Tell {
        actor: u64,
        message: u32,
        payload: Payload,
    },
    Request {
        actor: u64,
        message: u32,
        correlation: u64,
        payload: Payload,
    },
    Response {
        correlation: u64,
        payload: Payload,
    },
    Error {
        correlation: u64,
        code: u16,
        detail: String,
    },
    Ping {
        nonce: u64,
    },
    Pong {
        nonce: u64,
    },
    Nodes(Vec<NodeInfo>),
    GoAway {
        code: u16,
        reason: String,
    },
    /// A frame of a subsystem's channel (a kind in [`CHANNEL_KINDS`]): membership, the
    /// registry's Raft messages, and whatever registers next. Its body is parsed up there.
    Channel {
        kind: u8,
        body: Bytes,
    },
    /// A kind this version does not know; its bytes were skipped.
    Unknown {
        kind: u8,
    },
}

/// Incremental decoder. Feed it the connection's read buffer; it takes whole frames off the
/// front and leaves partial ones in place.
#[derive(Debug, Clone)]
pub(crate) struct FrameDecoder {
    max_frame_size: u32,
}

impl FrameDecoder {
    /// `max_frame_size` bounds the length prefix (bytes after it).
    pub(crate) fn new(max_frame_size: u32) -> Self {
        Self { max_frame_size }
    }

    /// Takes the next complete frame off `buf`.
    ///
    /// Returns `Ok(None)` when more bytes are needed; in that case it has reserved room for
    /// the rest of the announced frame, which it only does after checking the announced size.
    pub(crate) fn decode(&self, buf: &mut BytesMut) -> Result<Option<Frame>, WireError> {
        let Some(prefix) = buf.first_chunk::<LEN_PREFIX>() else {
            return Ok(None);
        };
        let len = u32::from_le_bytes(*prefix);
        if len > self.max_frame_size {
            return Err(WireError::FrameTooLarge {
                size: u64::from(len),
                limit: u64::from(self.max_frame_size),
            });
        }
        let len = len as usize;
        if len < KIND_AND_FLAGS {
            return Err(WireError::Truncated("any"));
        }
        let total = LEN_PREFIX + len;
        if buf.len() < total {
            buf.reserve(total - buf.len());
            return Ok(None);
        }
        buf.advance(LEN_PREFIX);
        let body = buf.split_to(len).freeze();
        parse_frame(body).map(Some)
    }
}

fn parse_frame(mut body: Bytes) -> Result<Frame, WireError> {
    let kind_byte = body.get_u8();
    let flags = body.get_u8();
    if CHANNEL_KINDS.contains(&kind_byte) {
        if flags & FLAG_RESERVED != 0 {
            return Err(WireError::Malformed {
                kind: "channel",
                reason: format!("reserved flag bits set ({flags:#010b})"),
            });
        }
        return Ok(Frame::Channel {
            kind: kind_byte,
            body,
        });
    }
    let Some(kind) = FrameKind::from_u8(kind_byte) else {
        return Ok(Frame::Unknown { kind: kind_byte });
    };
    let name = kind_name(kind);
    if flags & FLAG_RESERVED != 0 {
        return Err(WireError::Malformed {
            kind: name,
            reason: format!("reserved flag bits set ({flags:#010b})"),
        });
    }
    let mut r = Reader {
        buf: body,
        kind: name,
    };
    let frame = match kind {
        FrameKind::Hello => Frame::Hello(parse_hello(&mut r)?),
        FrameKind::Tell => Frame::Tell {
            actor: r.u64()?,
            message: r.u32()?,
            payload: r.payload(flags)?,
        },
        FrameKind::Request => Frame::Request {
            actor: r.u64()?,
            message: r.u32()?,
            correlation: r.u64()?,
            payload: r.payload(flags)?,
        },
        FrameKind::Response => Frame::Response {
            correlation: r.u64()?,
            payload: r.payload(flags)?,
        },
        FrameKind::Error => Frame::Error {
            correlation: r.u64()?,
            code: r.u16()?,
            detail: r.rest_utf8()?,
        },
        FrameKind::Ping => Frame::Ping { nonce: r.u64()? },
        FrameKind::Pong => Frame::Pong { nonce: r.u64()? },
        FrameKind::Nodes => {
            let count = r.u16()?;
            // Each node takes at least 12 bytes; a count the frame cannot hold is refused
            // before the vector is sized from it.
            if usize::from(count) * 12 > r.buf.len() {
                return Err(
                    r.malformed(format!("announces {count} nodes in {} bytes", r.buf.len()))
                );
            }
            let mut nodes = Vec::with_capacity(usize::from(count));
            for _ in 0..count {
                nodes.push(parse_node_info(&mut r)?);
            }
            r.finish()?;
            Frame::Nodes(nodes)
        }
        FrameKind::GoAway => Frame::GoAway {
            code: r.u16()?,
            reason: r.rest_utf8()?,
        },
    };
    Ok(frame)
}

fn parse_hello(r: &mut Reader) -> Result<Hello, WireError> {
    let magic: [u8; 4] = [r.u8()?, r.u8()?, r.u8()?, r.u8()?];
    if magic != MAGIC {
        return Err(WireError::BadMagic(magic));
    }
    let version = r.u16()?;
    let flags = r.u8()?;
    let cluster = r.str8()?;
    let node = parse_node_info(r)?;
    let max_frame_size = if r.buf.is_empty() {
        MIN_MAX_FRAME_SIZE
    } else {
        r.u32()?.max(MIN_MAX_FRAME_SIZE)
    };
    // Newer versions may append fields; they are ignored here, so the check is only that the
    // fields this version needs were present.
    Ok(Hello {
        version,
        cluster,
        tls: flags & HELLO_TLS != 0,
        node,
        max_frame_size,
    })
}

fn parse_node_info(r: &mut Reader) -> Result<NodeInfo, WireError> {
    let name = r.str8()?;
    let incarnation = r.u64()?;
    let addr_text = r.str8()?;
    let addr: SocketAddr = addr_text
        .parse()
        .map_err(|_| r.malformed(format!("bad socket address {addr_text:?}")))?;
    let role_byte = r.u8()?;
    let role = NodeRole::from_wire(role_byte)
        .ok_or_else(|| r.malformed(format!("unknown role {role_byte}")))?;
    let label_count = r.u8()?;
    let mut labels = BTreeMap::new();
    for _ in 0..label_count {
        let k = r.str8()?;
        let v = r.str8()?;
        labels.insert(k, v);
    }
    Ok(NodeInfo {
        id: NodeId::new(name, incarnation),
        addr,
        role,
        labels,
    })
}

fn kind_name(kind: FrameKind) -> &'static str {
    match kind {
        FrameKind::Hello => "hello",
        FrameKind::Tell => "tell",
        FrameKind::Request => "request",
        FrameKind::Response => "response",
        FrameKind::Error => "error",
        FrameKind::Ping => "ping",
        FrameKind::Pong => "pong",
        FrameKind::Nodes => "nodes",
        FrameKind::GoAway => "goaway",
    }
}

/// Bounds-checked reads over one frame body; every read can fail, none can panic.
struct Reader {
    buf: Bytes,
    kind: &'static str,
}

impl Reader {
    fn need(&self, n: usize) -> Result<(), WireError> {
        if self.buf.len() < n {
            Err(WireError::Truncated(self.kind))
        } else {
            Ok(())
        }
    }

    fn malformed(&self, reason: String) -> WireError {
        WireError::Malformed {
            kind: self.kind,
            reason,
        }
    }

    fn u8(&mut self) -> Result<u8, WireError> {
        self.need(1)?;
        Ok(self.buf.get_u8())
    }

    fn u16(&mut self) -> Result<u16, WireError> {
        self.need(2)?;
        Ok(self.buf.get_u16_le())
    }

    fn u32(&mut self) -> Result<u32, WireError> {
        self.need(4)?;
        Ok(self.buf.get_u32_le())
    }

    fn u64(&mut self) -> Result<u64, WireError> {
        self.need(8)?;
        Ok(self.buf.get_u64_le())
    }

    fn str8(&mut self) -> Result<String, WireError> {
        let len = usize::from(self.u8()?);
        self.need(len)?;
        let bytes = self.buf.split_to(len);
        String::from_utf8(bytes.to_vec())
            .map_err(|_| self.malformed("invalid utf-8 in a string".into()))
    }

    fn rest_utf8(&mut self) -> Result<String, WireError> {
        let bytes = std::mem::take(&mut self.buf);
        String::from_utf8(bytes.to_vec())
            .map_err(|_| self.malformed("invalid utf-8 in a string".into()))
    }

    fn payload(&mut self, flags: u8) -> Result<Payload, WireError> {
        let format = SerializationFormat::from_wire(flags & FLAG_FORMAT_MASK).ok_or_else(|| {
            self.malformed(format!(
                "unknown payload format {}",
                flags & FLAG_FORMAT_MASK
            ))
        })?;
        Ok(Payload {
            format,
            compressed: flags & FLAG_LZ4 != 0,
            bytes: std::mem::take(&mut self.buf),
        })
    }

    fn finish(&self) -> Result<(), WireError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(WireError::Malformed {
                kind: self.kind,
                reason: format!("{} unexpected trailing bytes", self.buf.len()),
            })
        }
    }
}

// ---------------------------------------------------------------------------------------
// Encoding. Each function appends one whole frame. Payload bytes are already encoded (and
// compressed, if `compressed`) by the caller, which keeps user serialization out of any lock.
// ---------------------------------------------------------------------------------------

fn payload_flags(format: SerializationFormat, compressed: bool) -> u8 {
    format.to_wire() | if compressed { FLAG_LZ4 } else { 0 }
}

/// Frame length for a body of `body` bytes; callers check the limit first, so this only
/// guards against a `usize` that does not fit the prefix at all.
fn frame_len(body: usize) -> u32 {
    u32::try_from(body).unwrap_or(u32::MAX)
}

/// Bytes a tell with `payload_len` bytes of payload occupies on the wire.
pub(crate) const fn tell_frame_len(payload_len: usize) -> usize {
    LEN_PREFIX + KIND_AND_FLAGS + 12 + payload_len
}

/// Bytes a request with `payload_len` bytes of payload occupies on the wire.
pub(crate) const fn request_frame_len(payload_len: usize) -> usize {
    LEN_PREFIX + KIND_AND_FLAGS + 20 + payload_len
}

/// Bytes a response with `payload_len` bytes of payload occupies on the wire.
pub(crate) const fn response_frame_len(payload_len: usize) -> usize {
    LEN_PREFIX + KIND_AND_FLAGS + 8 + payload_len
}

pub(crate) fn put_tell(
    buf: &mut BytesMut,
    actor: u64,
    message: u32,
    format: SerializationFormat,
    compressed: bool,
    payload: &[u8],
) {
    buf.reserve(tell_frame_len(payload.len()));
    buf.put_u32_le(frame_len(KIND_AND_FLAGS + 12 + payload.len()));
    buf.put_u8(FrameKind::Tell as u8);
    buf.put_u8(payload_flags(format, compressed));
    buf.put_u64_le(actor);
    buf.put_u32_le(message);
    buf.put_slice(payload);
}

pub(crate) fn put_request(
    buf: &mut BytesMut,
    actor: u64,
    message: u32,
    correlation: u64,
    format: SerializationFormat,
    compressed: bool,
    payload: &[u8],
) {
    buf.reserve(request_frame_len(payload.len()));
    buf.put_u32_le(frame_len(KIND_AND_FLAGS + 20 + payload.len()));
    buf.put_u8(FrameKind::Request as u8);
    buf.put_u8(payload_flags(format, compressed));
    buf.put_u64_le(actor);
    buf.put_u32_le(message);
    buf.put_u64_le(correlation);
    buf.put_slice(payload);
}

pub(crate) fn put_response(
    buf: &mut BytesMut,
    correlation: u64,
    format: SerializationFormat,
    compressed: bool,
    payload: &[u8],
) {
    buf.reserve(response_frame_len(payload.len()));
    buf.put_u32_le(frame_len(KIND_AND_FLAGS + 8 + payload.len()));
    buf.put_u8(FrameKind::Response as u8);
    buf.put_u8(payload_flags(format, compressed));
    buf.put_u64_le(correlation);
    buf.put_slice(payload);
}

/// Appends an error reply. `detail` is cut to 1 KiB at a character boundary: it is for
/// humans, and a peer must not be able to make us echo arbitrarily large strings.
pub(crate) fn put_error(buf: &mut BytesMut, correlation: u64, code: u16, detail: &str) {
    let detail = truncate_utf8(detail, 1024);
    buf.put_u32_le(frame_len(KIND_AND_FLAGS + 10 + detail.len()));
    buf.put_u8(FrameKind::Error as u8);
    buf.put_u8(0);
    buf.put_u64_le(correlation);
    buf.put_u16_le(code);
    buf.put_slice(detail.as_bytes());
}

pub(crate) fn put_ping(buf: &mut BytesMut, nonce: u64) {
    put_nonce(buf, FrameKind::Ping, nonce);
}

pub(crate) fn put_pong(buf: &mut BytesMut, nonce: u64) {
    put_nonce(buf, FrameKind::Pong, nonce);
}

fn put_nonce(buf: &mut BytesMut, kind: FrameKind, nonce: u64) {
    buf.put_u32_le(frame_len(KIND_AND_FLAGS + 8));
    buf.put_u8(kind as u8);
    buf.put_u8(0);
    buf.put_u64_le(nonce);
}

pub(crate) fn put_goaway(buf: &mut BytesMut, code: u16, reason: &str) {
    let reason = truncate_utf8(reason, 1024);
    buf.put_u32_le(frame_len(KIND_AND_FLAGS + 2 + reason.len()));
    buf.put_u8(FrameKind::GoAway as u8);
    buf.put_u8(0);
    buf.put_u16_le(code);
    buf.put_slice(reason.as_bytes());
}

pub(crate) fn put_hello(buf: &mut BytesMut, hello: &Hello) {
    let start = buf.len();
    buf.put_u32_le(0);
    buf.put_u8(FrameKind::Hello as u8);
    buf.put_u8(0);
    buf.put_slice(&MAGIC);
    buf.put_u16_le(hello.version);
    buf.put_u8(if hello.tls { HELLO_TLS } else { 0 });
    put_str8(buf, &hello.cluster);
    put_node_info(buf, &hello.node);
    buf.put_u32_le(hello.max_frame_size);
    patch_len(buf, start);
}

/// Bytes a channel frame with `body_len` bytes of body occupies on the wire.
pub(crate) const fn channel_frame_len(body_len: usize) -> usize {
    LEN_PREFIX + KIND_AND_FLAGS + body_len
}

/// Appends a frame of channel `kind` (one of [`CHANNEL_KINDS`]) carrying `body`.
pub(crate) fn put_channel(buf: &mut BytesMut, kind: u8, body: &[u8]) {
    debug_assert!(
        CHANNEL_KINDS.contains(&kind),
        "kind {kind:#04x} is no channel"
    );
    buf.reserve(channel_frame_len(body.len()));
    buf.put_u32_le(frame_len(KIND_AND_FLAGS + body.len()));
    buf.put_u8(kind);
    buf.put_u8(0);
    buf.put_slice(body);
}

/// Appends a `Nodes` frame listing at most `u16::MAX` nodes.
pub(crate) fn put_nodes<'a>(buf: &mut BytesMut, nodes: impl IntoIterator<Item = &'a NodeInfo>) {
    let start = buf.len();
    buf.put_u32_le(0);
    buf.put_u8(FrameKind::Nodes as u8);
    buf.put_u8(0);
    let count_at = buf.len();
    buf.put_u16_le(0);
    let mut count: u16 = 0;
    for node in nodes.into_iter().take(usize::from(u16::MAX)) {
        put_node_info(buf, node);
        count += 1;
    }
    buf[count_at..count_at + 2].copy_from_slice(&count.to_le_bytes());
    patch_len(buf, start);
}

fn patch_len(buf: &mut BytesMut, start: usize) {
    let len = frame_len(buf.len() - start - LEN_PREFIX);
    buf[start..start + LEN_PREFIX].copy_from_slice(&len.to_le_bytes());
}

fn put_node_info(buf: &mut BytesMut, node: &NodeInfo) {
    put_str8(buf, node.id.name());
    buf.put_u64_le(node.id.incarnation());
    put_str8(buf, &node.addr.to_string());
    buf.put_u8(node.role.to_wire());
    let labels: Vec<_> = node.labels.iter().take(usize::from(u8::MAX)).collect();
    buf.put_u8(labels.len() as u8);
    for (k, v) in labels {
        put_str8(buf, k);
        put_str8(buf, v);
    }
}

/// Strings on the wire are at most 255 bytes; longer ones are cut at a character boundary.
/// Config validation keeps names and labels within this, so cutting never happens in practice.
fn put_str8(buf: &mut BytesMut, s: &str) {
    let s = truncate_utf8(s, usize::from(u8::MAX));
    buf.put_u8(s.len() as u8);
    buf.put_slice(s.as_bytes());
}

fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests;
