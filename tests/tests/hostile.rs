//! A node survives hostile bytes on a raw TCP connection (garbage, truncated frames, an
//! oversized length prefix, an LZ4 bomb, malformed Raft frames) and keeps serving its
//! well-behaved peers.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::io::Write;
use std::net::{Shutdown, TcpStream};

use actix_cluster::RegistryConfig;
use actix_cluster::prelude::*;
use actix_cluster_testkit::{TEST_DEADLINE, TestNode, plaintext};
use actix_cluster_tests::raw::{self, RawFrame};
use actix_cluster_tests::{Add, Counter, up_peers, wait_until};

const CLUSTER: &str = "hostile";

/// Node `a` hosting a counter named `counter`, and a well-behaved peer `b` connected to it.
struct Setup {
    a: TestNode,
    b: TestNode,
    counter: u64,
}

impl Setup {
    fn new() -> Self {
        // Two nodes: the registry forms with one voter, as a development cluster's does.
        let registry = || RegistryConfig::new().bootstrap_expect(1);
        let a = TestNode::start(
            CLUSTER,
            plaintext("a").registry(registry()).build().unwrap(),
            |b| b,
        )
        .unwrap();
        let counter = a
            .run(|s| async move {
                let c = s.start_actor(Counter::default());
                s.register_local_name("counter", &c).map(|()| c.actor_id())
            })
            .unwrap()
            .unwrap();
        let seed = a.system().local_addr().to_string();
        let b = TestNode::start(
            CLUSTER,
            plaintext("b")
                .seed_nodes([seed])
                .registry(registry())
                .build()
                .unwrap(),
            |b| b,
        )
        .unwrap();
        let up = b
            .run(|s| async move { s.wait_for_peers(1, TEST_DEADLINE).await })
            .unwrap();
        assert!(up, "b never connected to a");
        Self { a, b, counter }
    }

    fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.a.system().local_addr()).unwrap();
        // Only reached if the node neither answers nor closes: the test then fails, not hangs.
        s.set_read_timeout(Some(TEST_DEADLINE)).unwrap();
        s
    }

    /// A raw connection that completed the handshake as node `name`.
    fn handshaken(&self, name: &str) -> TcpStream {
        let mut s = self.connect();
        s.write_all(&raw::hello(CLUSTER, name, 1, "127.0.0.1:1", false))
            .unwrap();
        let hello = raw::read_until(&mut s, raw::HELLO).unwrap();
        assert!(hello.body.starts_with(b"AXCL"), "{hello:?}");
        s
    }

    fn handshakes_failed(&self) -> u64 {
        self.a.system().stats().handshakes_failed
    }

    /// b still gets correct replies from a's counter over the connection it had all along.
    fn assert_still_serves(&self) {
        let connections = self.b.system().stats().connections_established;
        let (first, second) = self
            .b
            .run(|s| async move {
                let counter = s.actor_on::<Counter>("a", "counter").await?;
                let first = counter.send(Add(1)).await?;
                Ok::<_, RemoteError>((first, counter.send(Add(1)).await?))
            })
            .unwrap()
            .unwrap();
        assert_eq!(second, first + 1);
        assert!(up_peers(self.b.system()).contains(&"a".to_owned()));
        assert_eq!(
            self.b.system().stats().connections_established,
            connections,
            "b's connection to a was disturbed"
        );
    }
}

/// Deterministic pseudo-random bytes.
fn garbage(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 56) as u8
        })
        .collect()
}

fn assert_closed_by_node(s: &mut TcpStream) {
    match raw::read_to_close(s) {
        Ok(kinds) => assert!(
            // Only what a node sends unprompted may arrive before the close.
            kinds.iter().all(|k| raw::UNPROMPTED.contains(k)),
            "the node answered hostile bytes with frames {kinds:02x?}"
        ),
        Err(e) => panic!("the node kept the connection open: {e}"),
    }
}

#[test]
fn garbage_bytes_close_that_connection_and_the_node_keeps_serving() {
    let t = Setup::new();
    for (i, bytes) in [
        garbage(4096, 1),
        garbage(4096, 2),
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(),
        // A length that fits, then a kind that is no hello.
        raw::frame(0x7f, 0, &garbage(64, 3)),
    ]
    .into_iter()
    .enumerate()
    {
        let failed = t.handshakes_failed();
        let mut s = t.connect();
        // The node may close before it read everything; a failed write is fine.
        let _ = s.write_all(&bytes);
        assert_closed_by_node(&mut s);
        assert!(
            wait_until(TEST_DEADLINE, || t.handshakes_failed() > failed),
            "case {i}: refusal not counted"
        );
        t.assert_still_serves();
    }
}

#[test]
fn truncated_hello_then_close_leaves_the_node_serving() {
    let t = Setup::new();
    let failed = t.handshakes_failed();
    let mut s = t.connect();
    let hello = raw::hello(CLUSTER, "raw-truncated", 1, "127.0.0.1:1", false);
    s.write_all(&hello[..hello.len() / 2]).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    assert_closed_by_node(&mut s);
    assert!(wait_until(TEST_DEADLINE, || t.handshakes_failed() > failed));
    t.assert_still_serves();
}

#[test]
fn truncated_frame_after_the_handshake_then_close_leaves_the_node_serving() {
    let t = Setup::new();
    let mut s = t.handshaken("raw-truncated");
    let tell = raw::tell(t.counter, raw::message_id("add"), raw::FORMAT_BINCODE, &[5]);
    s.write_all(&tell[..tell.len() - 3]).unwrap();
    drop(s);
    assert!(
        wait_until(TEST_DEADLINE, || !up_peers(t.a.system())
            .contains(&"raw-truncated".to_owned())),
        "a still counts the closed connection as up"
    );
    t.assert_still_serves();
    let value =
        t.b.run(|s| async move {
            s.actor_on::<Counter>("a", "counter")
                .await?
                .send(Add(0))
                .await
        })
        .unwrap()
        .unwrap();
    assert_eq!(value, 2, "the truncated tell must not have been delivered");
}

#[test]
fn oversized_length_prefix_before_the_handshake_is_refused_without_allocating() {
    let t = Setup::new();
    let failed = t.handshakes_failed();
    let mut s = t.connect();
    s.write_all(&u32::MAX.to_le_bytes()).unwrap();
    s.write_all(&[raw::HELLO, 0]).unwrap();
    assert_closed_by_node(&mut s);
    assert!(wait_until(TEST_DEADLINE, || t.handshakes_failed() > failed));
    t.assert_still_serves();
}

#[test]
fn oversized_length_prefix_after_the_handshake_closes_that_connection_only() {
    let t = Setup::new();
    let mut s = t.handshaken("raw-oversized");
    s.write_all(&u32::MAX.to_le_bytes()).unwrap();
    s.write_all(&[raw::TELL, raw::FORMAT_BINCODE]).unwrap();
    // The node closes without waiting for 4 GiB that will never come.
    assert_closed_by_node(&mut s);
    t.assert_still_serves();
}

#[test]
fn lz4_bomb_is_refused_and_the_connection_and_node_keep_serving() {
    let t = Setup::new();
    let mut s = t.handshaken("raw-bomb");
    let add = raw::message_id("add");
    let bomb = raw::lz4_bomb(u32::MAX);
    let flags = raw::FORMAT_BINCODE | raw::FLAG_LZ4;

    let undeliverable = t.a.system().stats().messages_undeliverable;
    s.write_all(&raw::tell(t.counter, add, flags, &bomb))
        .unwrap();
    assert!(
        wait_until(TEST_DEADLINE, || {
            t.a.system().stats().messages_undeliverable > undeliverable
        }),
        "the bomb tell was neither delivered nor counted as undeliverable"
    );

    // As a request it is answered with the typed error, on the same connection.
    s.write_all(&raw::request(t.counter, add, 41, flags, &bomb))
        .unwrap();
    let RawFrame { body, .. } = raw::read_until(&mut s, raw::ERROR).unwrap();
    assert_eq!(body[..8], 41u64.to_le_bytes(), "correlation");
    assert_eq!(body[8..10], raw::CODE_TOO_LARGE.to_le_bytes(), "error code");

    // A well-formed request on the same connection still works: bincode `Add(7)` is one
    // varint byte, and so is the reply while the counter stays below 251.
    s.write_all(&raw::request(t.counter, add, 42, raw::FORMAT_BINCODE, &[7]))
        .unwrap();
    let RawFrame { flags, body, .. } = raw::read_until(&mut s, raw::RESPONSE).unwrap();
    assert_eq!(flags, raw::FORMAT_BINCODE);
    assert_eq!(body[..8], 42u64.to_le_bytes(), "correlation");
    assert_eq!(body[8..], [7], "the counter saw neither bomb");

    t.assert_still_serves();
}

#[test]
fn malformed_raft_frames_are_dropped_and_the_connection_and_registry_keep_working() {
    let t = Setup::new();
    // Requests must name a's Raft id to get past the identity check to the chunk decoder.
    let mut raft_id = None;
    let formed = wait_until(TEST_DEADLINE, || {
        raft_id =
            t.a.run(|s| async move { s.registry_status().await })
                .unwrap()
                .ok()
                .filter(|st| st.leader.is_some())
                .and_then(|st| st.raft_id);
        raft_id.is_some()
    });
    assert!(formed, "the registry of a and b never formed");
    let to = raft_id.unwrap();
    let mut s = t.handshaken("raw-raft");
    // Shorter than the Raft header, then every tag (the retired request without ids,
    // response, request, unknown) with every rpc (known and unknown) and a body that is not a
    // valid message.
    let mut bodies = vec![Vec::new(), vec![3], garbage(9, 1), garbage(25, 2)];
    for tag in [1u8, 2, 3, 7] {
        for rpc in [1u8, 2, 3, 4, 5, 9] {
            let mut body = vec![tag];
            body.extend_from_slice(&u64::from(rpc).to_le_bytes());
            body.push(rpc);
            body.extend(garbage(40, u64::from(tag) << 8 | u64::from(rpc)));
            bodies.push(body);
        }
    }
    // Snapshot chunks (rpc 5): shorter than a chunk header, a declared size far over the limit,
    // a chunk of a transfer never started, and one that overruns its declared size.
    let chunk = |correlation: u64, transfer: u64, offset: u64, total: u64, data: &[u8]| {
        let mut body = vec![3u8];
        body.extend_from_slice(&correlation.to_le_bytes());
        body.push(5);
        for field in [0, to, transfer, offset, total] {
            body.extend_from_slice(&field.to_le_bytes());
        }
        body.extend_from_slice(data);
        body
    };
    let mut short_chunk = vec![3, 0, 0, 0, 0, 0, 0, 0, 0, 5];
    short_chunk.extend_from_slice(&0u64.to_le_bytes());
    short_chunk.extend_from_slice(&to.to_le_bytes());
    short_chunk.extend_from_slice(&[1, 2, 3]);
    bodies.push(short_chunk);
    bodies.push(chunk(901, 1, 0, u64::MAX, &[0; 16]));
    bodies.push(chunk(902, 2, 4096, 8192, &[0; 16]));
    bodies.push(chunk(903, 3, 0, 4, &[0; 16]));
    // A vote request for a Raft member that a is not (a former self it has no state of).
    let mut stale = vec![3u8];
    stale.extend_from_slice(&904u64.to_le_bytes());
    stale.push(2);
    stale.extend_from_slice(&0u64.to_le_bytes());
    stale.extend_from_slice(&to.wrapping_add(1).to_le_bytes());
    stale.extend(garbage(40, 904));
    bodies.push(stale);
    for body in &bodies {
        s.write_all(&raw::frame(raw::RAFT, 0, body)).unwrap();
    }
    // Each refused chunk is answered with the reason (the sender's transfer fails with it).
    let mut refusals = HashMap::new();
    while !(refusals.contains_key(&903u64) && refusals.contains_key(&904u64)) {
        let f = raw::read_frame(&mut s).unwrap();
        if f.kind == raw::RAFT && f.body.len() > 10 && f.body[0] == 2 {
            let correlation = u64::from_le_bytes(f.body[1..9].try_into().unwrap());
            refusals.insert(
                correlation,
                String::from_utf8_lossy(&f.body[10..]).into_owned(),
            );
        }
    }
    for (correlation, reason) in [
        (901, "exceeds this node's limit"),
        (902, "no transfer 2 in progress"),
        (903, "ends past its declared size"),
        (904, "raft identity mismatch"),
    ] {
        let got = refusals.get(&correlation).map(String::as_str).unwrap_or("");
        assert!(got.contains(reason), "chunk {correlation}: {got:?}");
    }

    // The same connection still carries requests: Raft garbage is dropped, not fatal.
    let add = raw::message_id("add");
    s.write_all(&raw::request(t.counter, add, 43, raw::FORMAT_BINCODE, &[5]))
        .unwrap();
    let RawFrame { body, .. } = raw::read_until(&mut s, raw::RESPONSE).unwrap();
    assert_eq!(body[..8], 43u64.to_le_bytes(), "correlation");
    assert_eq!(body[8..], [5]);

    // And the registry between a and b still takes registrations.
    let registered = wait_until(TEST_DEADLINE, || {
        t.b.run(|s| async move {
            let c = s.start_actor(Counter::default());
            s.register_name("after-raft-garbage", &c).await
        })
        .unwrap()
        .is_ok()
    });
    assert!(
        registered,
        "the registry stopped taking registrations: {:?}",
        t.a.run(|s| async move { s.registry_status().await })
            .unwrap()
    );
    t.assert_still_serves();
}
