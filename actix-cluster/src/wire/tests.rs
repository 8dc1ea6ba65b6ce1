use super::*;
use proptest::prelude::*;

const LIMIT: u32 = 1 << 20;

fn node_info() -> impl Strategy<Value = NodeInfo> {
    (
        "[a-z][a-z0-9-]{0,20}",
        any::<u64>(),
        any::<[u8; 4]>(),
        any::<u16>(),
        0u8..3,
        proptest::collection::btree_map("[a-z]{1,8}", "[a-z0-9]{0,8}", 0..3),
    )
        .prop_map(|(name, inc, ip, port, role, labels)| NodeInfo {
            id: NodeId::new(name, inc),
            addr: SocketAddr::from((ip, port)),
            role: NodeRole::from_wire(role).expect("role in range"),
            labels,
        })
}

fn payload() -> impl Strategy<Value = Payload> {
    (
        1u8..=3,
        any::<bool>(),
        proptest::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(|(format, compressed, bytes)| Payload {
            format: SerializationFormat::from_wire(format).expect("format in range"),
            compressed,
            bytes: Bytes::from(bytes),
        })
}

fn frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        (
            "[a-z-]{0,30}",
            any::<bool>(),
            node_info(),
            MIN_MAX_FRAME_SIZE..
        )
            .prop_map(|(cluster, tls, node, max_frame_size)| {
                Frame::Hello(Hello {
                    version: PROTOCOL_VERSION,
                    cluster,
                    tls,
                    node,
                    max_frame_size,
                })
            }),
        (any::<u64>(), any::<u32>(), payload()).prop_map(|(actor, message, payload)| Frame::Tell {
            actor,
            message,
            payload
        }),
        (any::<u64>(), any::<u32>(), any::<u64>(), payload()).prop_map(
            |(actor, message, correlation, payload)| Frame::Request {
                actor,
                message,
                correlation,
                payload
            }
        ),
        (any::<u64>(), payload()).prop_map(|(correlation, payload)| Frame::Response {
            correlation,
            payload
        }),
        (any::<u64>(), any::<u16>(), ".{0,40}").prop_map(|(correlation, code, detail)| {
            Frame::Error {
                correlation,
                code,
                detail,
            }
        }),
        any::<u64>().prop_map(|nonce| Frame::Ping { nonce }),
        any::<u64>().prop_map(|nonce| Frame::Pong { nonce }),
        proptest::collection::vec(node_info(), 0..5).prop_map(Frame::Nodes),
        (any::<u16>(), ".{0,40}").prop_map(|(code, reason)| Frame::GoAway { code, reason }),
        (CHANNEL_KINDS, proptest::collection::vec(any::<u8>(), 0..64)).prop_map(|(kind, b)| {
            Frame::Channel {
                kind,
                body: Bytes::from(b),
            }
        }),
    ]
}

fn encode(frame: &Frame, buf: &mut BytesMut) {
    match frame {
        Frame::Hello(h) => put_hello(buf, h),
        Frame::Channel { kind, body } => put_channel(buf, *kind, body),
        Frame::Tell {
            actor,
            message,
            payload,
        } => put_tell(
            buf,
            *actor,
            *message,
            payload.format,
            payload.compressed,
            &payload.bytes,
        ),
        Frame::Request {
            actor,
            message,
            correlation,
            payload,
        } => put_request(
            buf,
            *actor,
            *message,
            *correlation,
            payload.format,
            payload.compressed,
            &payload.bytes,
        ),
        Frame::Response {
            correlation,
            payload,
        } => put_response(
            buf,
            *correlation,
            payload.format,
            payload.compressed,
            &payload.bytes,
        ),
        Frame::Error {
            correlation,
            code,
            detail,
        } => put_error(buf, *correlation, *code, detail),
        Frame::Ping { nonce } => put_ping(buf, *nonce),
        Frame::Pong { nonce } => put_pong(buf, *nonce),
        Frame::Nodes(nodes) => put_nodes(buf, nodes),
        Frame::GoAway { code, reason } => put_goaway(buf, *code, reason),
        Frame::Unknown { .. } => unreachable!("never generated"),
    }
}

fn decode_all(decoder: &FrameDecoder, buf: &mut BytesMut) -> Result<Vec<Frame>, WireError> {
    let mut out = Vec::new();
    while let Some(frame) = decoder.decode(buf)? {
        out.push(frame);
    }
    Ok(out)
}

proptest! {
    #[test]
    fn frames_round_trip(frames in proptest::collection::vec(frame(), 1..8)) {
        let mut buf = BytesMut::new();
        for f in &frames {
            encode(f, &mut buf);
        }
        let decoded = decode_all(&FrameDecoder::new(LIMIT), &mut buf).expect("valid frames");
        prop_assert_eq!(decoded, frames);
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn byte_at_a_time_feeding_matches_whole_feeding(frames in proptest::collection::vec(frame(), 1..4)) {
        let mut whole = BytesMut::new();
        for f in &frames {
            encode(f, &mut whole);
        }
        let decoder = FrameDecoder::new(LIMIT);
        let mut partial = BytesMut::new();
        let mut decoded = Vec::new();
        for b in whole.iter() {
            partial.put_u8(*b);
            while let Some(f) = decoder.decode(&mut partial).expect("valid frames") {
                decoded.push(f);
            }
        }
        prop_assert_eq!(decoded, frames);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut buf = BytesMut::from(&bytes[..]);
        let _ = decode_all(&FrameDecoder::new(1024), &mut buf);
    }

    #[test]
    fn corrupting_a_valid_frame_never_panics(f in frame(), at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut buf = BytesMut::new();
        encode(&f, &mut buf);
        let i = at.index(buf.len());
        buf[i] = byte;
        let _ = decode_all(&FrameDecoder::new(LIMIT), &mut buf);
    }

    #[test]
    fn truncated_frames_wait_for_more_bytes(f in frame(), cut in any::<prop::sample::Index>()) {
        let mut buf = BytesMut::new();
        encode(&f, &mut buf);
        let cut = cut.index(buf.len());
        buf.truncate(cut);
        prop_assert_eq!(FrameDecoder::new(LIMIT).decode(&mut buf), Ok(None));
    }
}

#[test]
fn oversized_length_prefix_is_refused_before_allocating() {
    let mut buf = BytesMut::from(&u32::MAX.to_le_bytes()[..]);
    let capacity = buf.capacity();
    assert_eq!(
        FrameDecoder::new(LIMIT).decode(&mut buf),
        Err(WireError::FrameTooLarge {
            size: u64::from(u32::MAX),
            limit: u64::from(LIMIT)
        })
    );
    assert_eq!(
        buf.capacity(),
        capacity,
        "no memory reserved for a refused frame"
    );
}

#[test]
fn eight_byte_tell_fits_the_wire_budget() {
    let mut buf = BytesMut::new();
    put_tell(
        &mut buf,
        1,
        2,
        SerializationFormat::Bincode,
        false,
        &[0u8; 8],
    );
    assert_eq!(buf.len(), tell_frame_len(8));
    assert!(buf.len() <= 32, "an 8-byte tell takes {} bytes", buf.len());
}

#[test]
fn unknown_kinds_are_skipped_not_fatal() {
    let mut buf = BytesMut::new();
    buf.put_u32_le(5);
    buf.put_u8(0x81);
    buf.put_u8(0);
    buf.put_slice(b"abc");
    put_ping(&mut buf, 9);
    let frames = decode_all(&FrameDecoder::new(LIMIT), &mut buf).expect("valid");
    assert_eq!(
        frames,
        vec![Frame::Unknown { kind: 0x81 }, Frame::Ping { nonce: 9 }]
    );
}

#[test]
fn channel_kinds_carry_their_body_up_whether_or_not_anyone_handles_them() {
    // 0x21 has no handler in this version; the transport skips it after the decoder hands it
    // up, exactly as it skips an unknown kind.
    let mut buf = BytesMut::new();
    buf.put_u32_le(5);
    buf.put_u8(0x21);
    buf.put_u8(0);
    buf.put_slice(b"abc");
    let frames = decode_all(&FrameDecoder::new(LIMIT), &mut buf).expect("valid");
    assert_eq!(
        frames,
        vec![Frame::Channel {
            kind: 0x21,
            body: Bytes::from_static(b"abc")
        }]
    );
}

#[test]
fn reserved_flags_and_unknown_formats_are_rejected() {
    let mut buf = BytesMut::new();
    put_tell(&mut buf, 1, 2, SerializationFormat::Json, false, b"1");
    buf[5] |= 0b1000_0000;
    assert!(matches!(
        FrameDecoder::new(LIMIT).decode(&mut buf),
        Err(WireError::Malformed { .. })
    ));

    let mut buf = BytesMut::new();
    put_tell(&mut buf, 1, 2, SerializationFormat::Json, false, b"1");
    buf[5] &= !FLAG_FORMAT_MASK;
    assert!(matches!(
        FrameDecoder::new(LIMIT).decode(&mut buf),
        Err(WireError::Malformed { .. })
    ));
}

#[test]
fn tls_client_hello_is_not_a_hello() {
    // A TLS record header followed by a handshake: what a TLS dialer sends to a plaintext node.
    let mut buf = BytesMut::from(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc][..]);
    let err = FrameDecoder::new(LIMIT)
        .decode(&mut buf)
        .expect_err("must fail");
    assert!(matches!(err, WireError::FrameTooLarge { .. }));
}

#[test]
fn nodes_frame_with_impossible_count_is_refused() {
    let mut buf = BytesMut::new();
    buf.put_u32_le(4);
    buf.put_u8(FrameKind::Nodes as u8);
    buf.put_u8(0);
    buf.put_u16_le(u16::MAX);
    assert!(matches!(
        FrameDecoder::new(LIMIT).decode(&mut buf),
        Err(WireError::Malformed { .. })
    ));
}
