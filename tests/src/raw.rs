//! Hand-built frames for tests that talk to a node without the library: hostile peers, and
//! TLS peers presenting one identity while claiming another.
//!
//! Written from `docs/protocol.md` on purpose rather than by calling the library's encoder,
//! so that the tests check the documented format and not the encoder against itself.

use std::io::{self, Read};

/// Frame kind of the handshake.
pub const HELLO: u8 = 0x01;
/// Frame kind of a one-way message.
pub const TELL: u8 = 0x02;
/// Frame kind of a request.
pub const REQUEST: u8 = 0x03;
/// Frame kind of a reply.
pub const RESPONSE: u8 = 0x04;
/// Frame kind of an error reply.
pub const ERROR: u8 = 0x05;
/// Frame kind of a liveness probe.
pub const PING: u8 = 0x06;
/// Frame kind of the node list.
pub const NODES: u8 = 0x08;
/// Frame kind of a connection close notice.
pub const GOAWAY: u8 = 0x09;
/// Frame kind of a membership message (SWIM, heartbeats, load reports).
pub const MEMBERSHIP: u8 = 0x10;

/// Frame kind of a registry (Raft) message.
pub const RAFT: u8 = 0x20;

/// Frames a node sends on its own, unprompted, on any connection.
pub const UNPROMPTED: [u8; 4] = [PING, NODES, GOAWAY, MEMBERSHIP];

/// Payload flag: bincode.
pub const FORMAT_BINCODE: u8 = 1;
/// Payload flag: LZ4-compressed (`[u32 LE plain size][lz4 block]`).
pub const FLAG_LZ4: u8 = 0b100;

/// Error code a node answers a request with when a payload exceeds its limits.
pub const CODE_TOO_LARGE: u16 = 6;

/// One frame as read off a socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFrame {
    /// Kind byte.
    pub kind: u8,
    /// Flags byte.
    pub flags: u8,
    /// Everything after kind and flags.
    pub body: Vec<u8>,
}

/// `[u32 LE length][kind][flags][body]`.
pub fn frame(kind: u8, flags: u8, body: &[u8]) -> Vec<u8> {
    let len = u32::try_from(body.len() + 2).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(body.len() + 6);
    out.extend_from_slice(&len.to_le_bytes());
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(body);
    out
}

fn put_str8(out: &mut Vec<u8>, s: &str) {
    out.push(u8::try_from(s.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(s.as_bytes());
}

/// A version-1 hello from worker node `node` (no labels) of `cluster`, advertising `addr`.
pub fn hello(cluster: &str, node: &str, incarnation: u64, addr: &str, tls: bool) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(b"AXCL");
    body.extend_from_slice(&1u16.to_le_bytes());
    body.push(u8::from(tls));
    put_str8(&mut body, cluster);
    put_str8(&mut body, node);
    body.extend_from_slice(&incarnation.to_le_bytes());
    put_str8(&mut body, addr);
    body.push(0); // role: worker
    body.push(0); // no labels
    frame(HELLO, 0, &body)
}

/// A tell to `actor` of message `message` with an already encoded payload.
pub fn tell(actor: u64, message: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(12 + payload.len());
    body.extend_from_slice(&actor.to_le_bytes());
    body.extend_from_slice(&message.to_le_bytes());
    body.extend_from_slice(payload);
    frame(TELL, flags, &body)
}

/// A request to `actor` of message `message` with an already encoded payload.
pub fn request(actor: u64, message: u32, correlation: u64, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(20 + payload.len());
    body.extend_from_slice(&actor.to_le_bytes());
    body.extend_from_slice(&message.to_le_bytes());
    body.extend_from_slice(&correlation.to_le_bytes());
    body.extend_from_slice(payload);
    frame(REQUEST, flags, &body)
}

/// The wire id of a message declared under `name`: 32-bit FNV-1a of the name.
pub fn message_id(name: &str) -> u32 {
    name.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// An LZ4 payload that declares `declared` plain bytes but carries only a few: a bomb if the
/// receiver allocated what it is told before checking it against its limits.
pub fn lz4_bomb(declared: u32) -> Vec<u8> {
    let mut out = declared.to_le_bytes().to_vec();
    // A literal-only LZ4 sequence; its content does not matter, the declared size does.
    out.extend_from_slice(&[0x10, 0x00]);
    out
}

/// Reads one whole frame. Frames larger than 16 MiB are refused as an `InvalidData` error.
pub fn read_frame(r: &mut impl Read) -> io::Result<RawFrame> {
    let mut prefix = [0u8; 4];
    r.read_exact(&mut prefix)?;
    let len = u32::from_le_bytes(prefix) as usize;
    if !(2..=16 << 20).contains(&len) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame length {len}"),
        ));
    }
    let mut rest = vec![0u8; len];
    r.read_exact(&mut rest)?;
    Ok(RawFrame {
        kind: rest[0],
        flags: rest[1],
        body: rest[2..].to_vec(),
    })
}

/// Reads frames until one of kind `kind`, skipping the ones a node sends unprompted (pings
/// and node lists). Any other kind is returned as an `InvalidData` error naming it.
pub fn read_until(r: &mut impl Read, kind: u8) -> io::Result<RawFrame> {
    loop {
        let f = read_frame(r)?;
        if f.kind == kind {
            return Ok(f);
        }
        if !UNPROMPTED.contains(&f.kind) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("expected frame kind {kind:#04x}, got {f:?}"),
            ));
        }
    }
}

/// Reads until the peer closes the connection (EOF or reset), discarding what arrives.
/// Returns the kinds of the frames seen on the way, or the read error that is not a close.
pub fn read_to_close(r: &mut impl Read) -> io::Result<Vec<u8>> {
    let mut kinds = Vec::new();
    loop {
        match read_frame(r) {
            Ok(f) => kinds.push(f.kind),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::UnexpectedEof
                        | io::ErrorKind::ConnectionReset
                        | io::ErrorKind::ConnectionAborted
                        | io::ErrorKind::BrokenPipe
                ) =>
            {
                return Ok(kinds);
            }
            Err(e) => return Err(e),
        }
    }
}
