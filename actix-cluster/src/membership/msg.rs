//! Membership messages: the body of a `Membership` frame, and foca's identity and codec.
//!
//! Every body starts with a one-byte tag. Decoding never panics and never allocates more than
//! the body's own size: counts are checked against the bytes left before anything is sized
//! from them. A body with an unknown tag is [`MsgError::UnknownTag`], which the core ignores
//! (later versions may add tags).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::types::{LoadReport, MemberState};
use crate::node::{NodeId, NodeRole};

const TAG_FOCA: u8 = 1;
const TAG_HEARTBEAT: u8 = 2;
const TAG_HEARTBEAT_ACK: u8 = 3;
const TAG_UPDATES: u8 = 4;
const TAG_META: u8 = 5;
const TAG_JOIN: u8 = 6;
const TAG_LEAVE: u8 = 7;

/// Capabilities a node may advertise, and bytes each may take.
const MAX_CAPABILITIES: usize = 1024;

/// Why a membership body was not understood. The body is dropped; the connection stays up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum MsgError {
    #[error("membership message truncated")]
    Truncated,
    #[error("malformed membership message: {0}")]
    Malformed(&'static str),
    #[error("unknown membership message tag {0}")]
    UnknownTag(u8),
}

/// What one node says about one member: enough to dial it and to order updates about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    pub(crate) id: NodeId,
    /// Bumped when the node rejoins after being declared down while it was alive.
    pub(crate) generation: u32,
    pub(crate) addr: SocketAddr,
    pub(crate) role: NodeRole,
    pub(crate) state: MemberState,
}

impl Record {
    /// Which of two records about one node is newer: a later incarnation or generation wins.
    pub(crate) fn version(&self) -> (u64, u32) {
        (self.id.incarnation(), self.generation)
    }
}

/// A decoded membership message.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Msg {
    /// A SWIM datagram for foca.
    Foca(Bytes),
    /// "Are you alive?" The receiver answers with the same sequence number.
    Heartbeat(u64),
    HeartbeatAck(u64),
    /// Centralized: member states pushed by a master.
    Updates(Vec<Record>),
    /// The sender's capabilities and load.
    Meta {
        capabilities: Vec<String>,
        load: LoadReport,
    },
    /// Centralized: a node registers with a master.
    Join(Record),
    /// The sender is leaving (`Leaving`) or has left (`Left`).
    Leave {
        state: MemberState,
        generation: u32,
    },
}

impl Msg {
    pub(crate) fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(64);
        match self {
            Msg::Foca(data) => {
                b.put_u8(TAG_FOCA);
                b.put_slice(data);
            }
            Msg::Heartbeat(seq) => {
                b.put_u8(TAG_HEARTBEAT);
                b.put_u64_le(*seq);
            }
            Msg::HeartbeatAck(seq) => {
                b.put_u8(TAG_HEARTBEAT_ACK);
                b.put_u64_le(*seq);
            }
            Msg::Updates(records) => {
                b.put_u8(TAG_UPDATES);
                let n = records.len().min(usize::from(u16::MAX));
                b.put_u16_le(n as u16);
                for r in &records[..n] {
                    put_record(&mut b, r);
                }
            }
            Msg::Meta { capabilities, load } => {
                b.put_u8(TAG_META);
                let caps: Vec<&String> = capabilities
                    .iter()
                    .filter(|c| c.len() <= usize::from(u8::MAX))
                    .take(MAX_CAPABILITIES)
                    .collect();
                b.put_u16_le(caps.len() as u16);
                for c in caps {
                    put_str8(&mut b, c);
                }
                b.put_u64_le(load.actors);
                b.put_u64_le(load.mailbox_backlog);
                b.put_f32_le(load.cpu.unwrap_or(f32::NAN));
            }
            Msg::Join(r) => {
                b.put_u8(TAG_JOIN);
                put_record(&mut b, r);
            }
            Msg::Leave { state, generation } => {
                b.put_u8(TAG_LEAVE);
                b.put_u8(state.to_u8());
                b.put_u32_le(*generation);
            }
        }
        b.freeze()
    }

    pub(crate) fn decode(mut body: Bytes) -> Result<Msg, MsgError> {
        let tag = take_u8(&mut body)?;
        let msg = match tag {
            TAG_FOCA => Msg::Foca(body),
            TAG_HEARTBEAT => Msg::Heartbeat(take_u64(&mut body)?),
            TAG_HEARTBEAT_ACK => Msg::HeartbeatAck(take_u64(&mut body)?),
            TAG_UPDATES => {
                let n = usize::from(take_u16(&mut body)?);
                // A record takes at least 20 bytes; refuse counts the body cannot hold
                // before sizing anything from them.
                if n * 20 > body.len() {
                    return Err(MsgError::Malformed("record count exceeds the body"));
                }
                let mut records = Vec::with_capacity(n);
                for _ in 0..n {
                    records.push(take_record(&mut body)?);
                }
                Msg::Updates(records)
            }
            TAG_META => {
                let n = usize::from(take_u16(&mut body)?);
                if n > MAX_CAPABILITIES || n > body.len() {
                    return Err(MsgError::Malformed("capability count exceeds the body"));
                }
                let mut capabilities = Vec::with_capacity(n);
                for _ in 0..n {
                    capabilities.push(take_str8(&mut body)?);
                }
                let actors = take_u64(&mut body)?;
                let mailbox_backlog = take_u64(&mut body)?;
                let cpu = take_f32(&mut body)?;
                let cpu = (cpu.is_finite() && cpu >= 0.0).then_some(cpu);
                Msg::Meta {
                    capabilities,
                    load: LoadReport::new(actors, mailbox_backlog, cpu),
                }
            }
            TAG_JOIN => Msg::Join(take_record(&mut body)?),
            TAG_LEAVE => {
                let state = MemberState::from_u8(take_u8(&mut body)?)
                    .ok_or(MsgError::Malformed("unknown member state"))?;
                if !matches!(state, MemberState::Leaving | MemberState::Left) {
                    return Err(MsgError::Malformed(
                        "leave with a state other than leaving/left",
                    ));
                }
                Msg::Leave {
                    state,
                    generation: take_u32(&mut body)?,
                }
            }
            other => return Err(MsgError::UnknownTag(other)),
        };
        Ok(msg)
    }
}

fn put_record(b: &mut BytesMut, r: &Record) {
    put_str8(b, r.id.name());
    b.put_u64_le(r.id.incarnation());
    b.put_u32_le(r.generation);
    put_addr(b, r.addr);
    b.put_u8(r.role.to_wire());
    b.put_u8(r.state.to_u8());
}

fn take_record(b: &mut Bytes) -> Result<Record, MsgError> {
    let name = take_str8(b)?;
    crate::node::validate_node_name(&name).map_err(|_| MsgError::Malformed("bad node name"))?;
    let incarnation = take_u64(b)?;
    let generation = take_u32(b)?;
    let addr = take_addr(b)?;
    let role = NodeRole::from_wire(take_u8(b)?).ok_or(MsgError::Malformed("unknown role"))?;
    let state =
        MemberState::from_u8(take_u8(b)?).ok_or(MsgError::Malformed("unknown member state"))?;
    Ok(Record {
        id: NodeId::new(name, incarnation),
        generation,
        addr,
        role,
        state,
    })
}

fn put_str8(b: &mut impl BufMut, s: &str) {
    // Callers only pass validated names (at most 255 bytes); cut defensively at a boundary.
    let mut end = s.len().min(usize::from(u8::MAX));
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    b.put_u8(end as u8);
    b.put_slice(&s.as_bytes()[..end]);
}

fn put_addr(b: &mut impl BufMut, addr: SocketAddr) {
    match addr.ip() {
        IpAddr::V4(ip) => {
            b.put_u8(4);
            b.put_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            b.put_u8(6);
            b.put_slice(&ip.octets());
        }
    }
    b.put_u16_le(addr.port());
}

fn need(b: &impl Buf, n: usize) -> Result<(), MsgError> {
    if b.remaining() < n {
        Err(MsgError::Truncated)
    } else {
        Ok(())
    }
}

fn take_u8(b: &mut impl Buf) -> Result<u8, MsgError> {
    need(b, 1)?;
    Ok(b.get_u8())
}

fn take_u16(b: &mut impl Buf) -> Result<u16, MsgError> {
    need(b, 2)?;
    Ok(b.get_u16_le())
}

fn take_u32(b: &mut impl Buf) -> Result<u32, MsgError> {
    need(b, 4)?;
    Ok(b.get_u32_le())
}

fn take_u64(b: &mut impl Buf) -> Result<u64, MsgError> {
    need(b, 8)?;
    Ok(b.get_u64_le())
}

fn take_f32(b: &mut impl Buf) -> Result<f32, MsgError> {
    need(b, 4)?;
    Ok(b.get_f32_le())
}

fn take_str8(b: &mut impl Buf) -> Result<String, MsgError> {
    let n = usize::from(take_u8(b)?);
    need(b, n)?;
    let mut v = vec![0; n];
    b.copy_to_slice(&mut v);
    String::from_utf8(v).map_err(|_| MsgError::Malformed("string is not utf-8"))
}

fn take_addr(b: &mut impl Buf) -> Result<SocketAddr, MsgError> {
    let ip = match take_u8(b)? {
        4 => {
            need(b, 4)?;
            let mut o = [0; 4];
            b.copy_to_slice(&mut o);
            IpAddr::V4(Ipv4Addr::from(o))
        }
        6 => {
            need(b, 16)?;
            let mut o = [0; 16];
            b.copy_to_slice(&mut o);
            IpAddr::V6(Ipv6Addr::from(o))
        }
        _ => return Err(MsgError::Malformed("unknown address family")),
    };
    Ok(SocketAddr::new(ip, take_u16(b)?))
}

/// A node as foca knows it. Two identities with one name are one node's incarnations (or
/// generations); the newer one wins.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct FocaId {
    pub(crate) name: Arc<str>,
    pub(crate) incarnation: u64,
    pub(crate) generation: u32,
    pub(crate) addr: SocketAddr,
    pub(crate) role: NodeRole,
    /// A function of `name`, kept so that foca's lookups cost nothing (see [`NameKey`]).
    key: NameKey,
}

/// What foca compares to decide that two identities are one node: a hash of its name.
///
/// foca finds a member by comparing the key of each update it applies with every known
/// member's, so the key is computed once per identity, and copying or comparing it costs
/// nothing (an `Arc<str>` key cost two atomic operations per member per update). It never
/// leaves the process. Two names with one hash would be taken for one node: with 64 bits that
/// does not happen by accident in cluster-sized name sets, and the only peers able to craft
/// names are authenticated members, which can declare any node down anyway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct NameKey(u64);

impl NameKey {
    fn of(name: &str) -> Self {
        use std::hash::{Hash, Hasher};
        let mut h = std::hash::DefaultHasher::new();
        name.hash(&mut h);
        NameKey(h.finish())
    }
}

impl FocaId {
    pub(crate) fn new(
        name: Arc<str>,
        incarnation: u64,
        generation: u32,
        addr: SocketAddr,
        role: NodeRole,
    ) -> Self {
        Self {
            key: NameKey::of(&name),
            name,
            incarnation,
            generation,
            addr,
            role,
        }
    }

    pub(crate) fn version(&self) -> (u64, u32) {
        (self.incarnation, self.generation)
    }

    /// A hash of the name, for digests of member lists.
    pub(crate) fn key_hash(&self) -> u64 {
        self.key.0
    }

    pub(crate) fn node_id(&self) -> NodeId {
        NodeId::new(self.name.to_string(), self.incarnation)
    }
}

impl foca::Identity for FocaId {
    type Addr = NameKey;

    /// A node that the cluster declared down while it was alive (a partition, a long pause)
    /// comes back as the next generation, without a restart.
    fn renew(&self) -> Option<Self> {
        Some(Self {
            generation: self.generation.wrapping_add(1),
            ..self.clone()
        })
    }

    fn addr(&self) -> NameKey {
        self.key
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.version() > adversary.version()
    }
}

/// foca's wire format for headers and member updates, in the same style as ours.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct FocaCodec;

impl FocaCodec {
    fn put_id(b: &mut impl BufMut, id: &FocaId) {
        put_str8(b, &id.name);
        b.put_u64_le(id.incarnation);
        b.put_u32_le(id.generation);
        put_addr(b, id.addr);
        b.put_u8(id.role.to_wire());
    }

    fn take_id(b: &mut impl Buf) -> Result<FocaId, MsgError> {
        let name = take_str8(b)?;
        crate::node::validate_node_name(&name).map_err(|_| MsgError::Malformed("bad node name"))?;
        let incarnation = take_u64(b)?;
        let generation = take_u32(b)?;
        let addr = take_addr(b)?;
        let role = NodeRole::from_wire(take_u8(b)?).ok_or(MsgError::Malformed("unknown role"))?;
        Ok(FocaId::new(
            name.into(),
            incarnation,
            generation,
            addr,
            role,
        ))
    }

    /// Encodes into a scratch buffer first: foca requires that nothing is written when the
    /// item does not fit.
    fn put_all(mut buf: impl BufMut, scratch: &[u8]) -> Result<(), MsgError> {
        if buf.remaining_mut() < scratch.len() {
            return Err(MsgError::Malformed("no room for the item"));
        }
        buf.put_slice(scratch);
        Ok(())
    }
}

/// The sender a SWIM datagram claims to come from (the first field of its header).
pub(crate) fn swim_sender(mut data: &[u8]) -> Result<FocaId, MsgError> {
    FocaCodec::take_id(&mut data)
}

impl foca::Codec<FocaId> for FocaCodec {
    type Error = MsgError;

    fn encode_header(
        &mut self,
        header: &foca::Header<FocaId>,
        buf: impl BufMut,
    ) -> Result<(), MsgError> {
        use foca::Message as M;
        let mut s = Vec::with_capacity(96);
        Self::put_id(&mut s, &header.src);
        s.put_u16_le(header.src_incarnation);
        Self::put_id(&mut s, &header.dst);
        match &header.message {
            M::Ping(n) => s.put_slice(&[1, *n]),
            M::Ack(n) => s.put_slice(&[2, *n]),
            M::PingReq {
                target,
                probe_number,
            } => {
                s.put_u8(3);
                Self::put_id(&mut s, target);
                s.put_u8(*probe_number);
            }
            M::IndirectPing {
                origin,
                probe_number,
            } => {
                s.put_u8(4);
                Self::put_id(&mut s, origin);
                s.put_u8(*probe_number);
            }
            M::IndirectAck {
                target,
                probe_number,
            } => {
                s.put_u8(5);
                Self::put_id(&mut s, target);
                s.put_u8(*probe_number);
            }
            M::ForwardedAck {
                origin,
                probe_number,
            } => {
                s.put_u8(6);
                Self::put_id(&mut s, origin);
                s.put_u8(*probe_number);
            }
            M::Announce => s.put_u8(7),
            M::Feed => s.put_u8(8),
            M::Gossip => s.put_u8(9),
            M::Broadcast => s.put_u8(10),
            M::TurnUndead => s.put_u8(11),
        }
        Self::put_all(buf, &s)
    }

    fn decode_header(&mut self, mut buf: impl Buf) -> Result<foca::Header<FocaId>, MsgError> {
        use foca::Message as M;
        let src = Self::take_id(&mut buf)?;
        let src_incarnation = take_u16(&mut buf)?;
        let dst = Self::take_id(&mut buf)?;
        let message = match take_u8(&mut buf)? {
            1 => M::Ping(take_u8(&mut buf)?),
            2 => M::Ack(take_u8(&mut buf)?),
            3 => M::PingReq {
                target: Self::take_id(&mut buf)?,
                probe_number: take_u8(&mut buf)?,
            },
            4 => M::IndirectPing {
                origin: Self::take_id(&mut buf)?,
                probe_number: take_u8(&mut buf)?,
            },
            5 => M::IndirectAck {
                target: Self::take_id(&mut buf)?,
                probe_number: take_u8(&mut buf)?,
            },
            6 => M::ForwardedAck {
                origin: Self::take_id(&mut buf)?,
                probe_number: take_u8(&mut buf)?,
            },
            7 => M::Announce,
            8 => M::Feed,
            9 => M::Gossip,
            10 => M::Broadcast,
            11 => M::TurnUndead,
            _ => return Err(MsgError::Malformed("unknown swim message")),
        };
        Ok(foca::Header {
            src,
            src_incarnation,
            dst,
            message,
        })
    }

    fn encode_member(
        &mut self,
        member: &foca::Member<FocaId>,
        buf: impl BufMut,
    ) -> Result<(), MsgError> {
        let mut s = Vec::with_capacity(48);
        Self::put_id(&mut s, member.id());
        s.put_u16_le(member.incarnation());
        s.put_u8(match member.state() {
            foca::State::Alive => 0,
            foca::State::Suspect => 1,
            foca::State::Down => 2,
        });
        Self::put_all(buf, &s)
    }

    fn decode_member(&mut self, mut buf: impl Buf) -> Result<foca::Member<FocaId>, MsgError> {
        let id = Self::take_id(&mut buf)?;
        let incarnation = take_u16(&mut buf)?;
        let state = match take_u8(&mut buf)? {
            0 => foca::State::Alive,
            1 => foca::State::Suspect,
            2 => foca::State::Down,
            _ => return Err(MsgError::Malformed("unknown swim member state")),
        };
        Ok(foca::Member::new(id, incarnation, state))
    }
}

/// Everything the membership core decodes from a peer, for the fuzz target: a membership
/// body; for a SWIM datagram, its claimed sender, then its header and member updates as foca
/// frames them. It must return for any `data`, never panic; a body that decodes must encode
/// back to itself.
#[cfg(fuzzing)]
pub(crate) fn fuzz_body(data: &[u8]) {
    let msg = match Msg::decode(Bytes::copy_from_slice(data)) {
        Ok(msg) => msg,
        Err(_) => return,
    };
    assert_eq!(
        Msg::decode(msg.encode()).as_ref(),
        Ok(&msg),
        "re-encoding changed it"
    );
    let Msg::Foca(datagram) = msg else {
        return;
    };
    let _ = swim_sender(&datagram);
    let mut codec = FocaCodec;
    let mut rest = &datagram[..];
    if foca::Codec::<FocaId>::decode_header(&mut codec, &mut rest).is_err() {
        return;
    }
    // foca 2's `handle_data`: a big-endian update count when two bytes or more are left.
    if rest.remaining() >= 2 {
        for _ in 0..rest.get_u16() {
            if foca::Codec::<FocaId>::decode_member(&mut codec, &mut rest).is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn record(name: &str, state: MemberState) -> Record {
        Record {
            id: NodeId::new(name, 7),
            generation: 2,
            addr: "10.0.0.1:7000".parse().expect("addr"),
            role: NodeRole::Worker,
            state,
        }
    }

    #[test]
    fn every_message_round_trips() {
        let msgs = vec![
            Msg::Foca(Bytes::from_static(b"swim")),
            Msg::Heartbeat(9),
            Msg::HeartbeatAck(u64::MAX),
            Msg::Updates(vec![
                record("a", MemberState::Up),
                record("b", MemberState::Down),
            ]),
            Msg::Meta {
                capabilities: vec!["counter".into(), "room".into()],
                load: LoadReport::new(3, 4, Some(0.5)),
            },
            Msg::Meta {
                capabilities: vec![],
                load: LoadReport::new(0, 0, None),
            },
            Msg::Join(record("c", MemberState::Joining)),
            Msg::Leave {
                state: MemberState::Left,
                generation: 1,
            },
        ];
        for m in msgs {
            assert_eq!(Msg::decode(m.encode()), Ok(m));
        }
    }

    #[test]
    fn a_huge_record_count_is_refused_before_allocating() {
        let mut b = BytesMut::new();
        b.put_u8(TAG_UPDATES);
        b.put_u16_le(u16::MAX);
        assert!(matches!(
            Msg::decode(b.freeze()),
            Err(MsgError::Malformed(_))
        ));
    }

    #[test]
    fn unknown_tags_are_reported_as_such() {
        assert_eq!(
            Msg::decode(Bytes::from_static(&[200, 1, 2])),
            Err(MsgError::UnknownTag(200))
        );
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Msg::decode(Bytes::from(data.clone()));
            let mut c = FocaCodec;
            let _ = foca::Codec::<FocaId>::decode_header(&mut c, &data[..]);
            let _ = foca::Codec::<FocaId>::decode_member(&mut c, &data[..]);
        }

        #[test]
        fn truncating_a_valid_message_never_panics(cut in 0usize..64) {
            let m = Msg::Updates(vec![record("a", MemberState::Up), record("bb", MemberState::Suspect)]);
            let bytes = m.encode();
            let cut = cut.min(bytes.len());
            let _ = Msg::decode(bytes.slice(..cut));
        }
    }
}
