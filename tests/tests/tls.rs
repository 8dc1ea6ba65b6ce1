//! Mutual TLS admits exactly the nodes whose certificate comes from the cluster CA and names
//! the node they claim to be; anything else is refused at the handshake.

#![allow(clippy::unwrap_used)]

use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use actix_cluster::prelude::*;
use actix_cluster::{ClusterConfig, ClusterConfigBuilder, StartError};
use actix_cluster_testkit::{
    NodeCert, TEST_DEADLINE, TestCa, TestNode, TestNodeError, plaintext, with_tls,
};
use actix_cluster_tests::raw;
use actix_cluster_tests::{Add, Counter, up_peers, wait_until};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

const CLUSTER: &str = "secure";

/// How long a refused node is given to (wrongly) connect before the test concludes it did not.
const REFUSAL_WINDOW: Duration = Duration::from_secs(1);

fn start(config: ClusterConfigBuilder, seed: Option<&TestNode>) -> TestNode {
    let config = match seed {
        Some(s) => config.seed_nodes([s.system().local_addr().to_string()]),
        None => config,
    };
    TestNode::start(CLUSTER, config.build().unwrap(), |b| {
        b.register::<Counter>()
    })
    .unwrap()
}

fn handshakes_failed(node: &TestNode) -> u64 {
    node.system().stats().handshakes_failed
}

/// `dialer` (seeded with `acceptor`) must fail the handshake: the acceptor counts it, and
/// neither side ever sees the other as connected.
fn assert_refused(acceptor: &TestNode, dialer: &TestNode) {
    assert!(
        wait_until(TEST_DEADLINE, || handshakes_failed(acceptor) > 0),
        "the acceptor never counted a failed handshake"
    );
    let connected = dialer
        .run(|s| async move { s.wait_for_peers(1, REFUSAL_WINDOW).await })
        .unwrap();
    assert!(!connected, "the dialer connected");
    assert_eq!(up_peers(acceptor.system()), Vec::<String>::new());
    assert_eq!(up_peers(dialer.system()), Vec::<String>::new());
    assert_eq!(acceptor.system().stats().connections_established, 0);
}

#[test]
fn nodes_with_certificates_of_the_same_ca_connect_and_exchange_messages() {
    let ca = TestCa::new(CLUSTER).unwrap();
    let a = start(with_tls(&ca, "a").unwrap(), None);
    let b = start(with_tls(&ca, "b").unwrap(), Some(&a));
    let totals = b
        .run(|s| async move {
            assert!(
                s.wait_for_peers(1, TEST_DEADLINE).await,
                "b never connected"
            );
            let there = s.remote_actor::<Counter>("a", |_| Counter { n: 1 }).await?;
            let first = there.send(Add(2)).await?;
            Ok::<_, RemoteError>((first, there.send(Add(3)).await?))
        })
        .unwrap();
    assert_eq!(totals, Ok((3, 6)));
    assert_eq!(handshakes_failed(&a), 0);
    assert_eq!(handshakes_failed(&b), 0);
}

#[test]
fn node_with_a_certificate_of_another_ca_is_refused() {
    let ours = TestCa::new(CLUSTER).unwrap();
    let theirs = TestCa::new(CLUSTER).unwrap();
    let a = start(with_tls(&ours, "a").unwrap(), None);
    let b = start(with_tls(&theirs, "b").unwrap(), Some(&a));
    assert_refused(&a, &b);
}

#[test]
fn node_whose_certificate_names_another_node_fails_to_start() {
    let ca = TestCa::new(CLUSTER).unwrap();
    let cert = ca.issue("x").unwrap();
    let tls = TlsConfig::from_pem(
        ca.ca_pem().as_bytes(),
        cert.cert_pem.as_bytes(),
        cert.key_pem.as_bytes(),
    )
    .unwrap();
    let config = ClusterConfig::new()
        .node_name("b")
        .listen("127.0.0.1:0")
        .tls(tls)
        .build()
        .unwrap();
    match TestNode::start(CLUSTER, config, |b| b) {
        Err(TestNodeError::Start(StartError::CertificateName { node, names })) => {
            assert_eq!((node.as_str(), names), ("b", vec!["x".to_owned()]));
        }
        other => panic!("expected a certificate name error, got {other:?}"),
    }
}

/// A TLS client presenting `cert`, which dials `addr` expecting the node `server`; what a
/// peer that lies about its name looks like from the inside.
fn raw_tls_client(
    ca: &TestCa,
    cert: &NodeCert,
    server: &str,
    addr: SocketAddr,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca.ca_pem().as_bytes()).unwrap())
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(
            vec![CertificateDer::from_pem_slice(cert.cert_pem.as_bytes()).unwrap()],
            PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).unwrap(),
        )
        .unwrap();
    let name = ServerName::try_from(server.to_owned()).unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(TEST_DEADLINE)).unwrap();
    rustls::StreamOwned::new(conn, tcp)
}

#[test]
fn peer_claiming_a_name_its_certificate_does_not_carry_is_refused() {
    use std::io::Write as _;

    let ca = TestCa::new(CLUSTER).unwrap();
    let a = start(with_tls(&ca, "a").unwrap(), None);
    let addr = a.system().local_addr();
    let x = ca.issue("x").unwrap();

    // Control: the same client telling the truth is admitted, so the refusal below is about
    // the claimed name and nothing else.
    let mut honest = raw_tls_client(&ca, &x, "a", addr);
    honest
        .write_all(&raw::hello(CLUSTER, "x", 1, "127.0.0.1:1", true))
        .unwrap();
    let hello = raw::read_until(&mut honest, raw::HELLO).unwrap();
    assert!(hello.body.starts_with(b"AXCL"));
    assert!(wait_until(TEST_DEADLINE, || up_peers(a.system()) == ["x"]));
    drop(honest);

    let failed = handshakes_failed(&a);
    let mut liar = raw_tls_client(&ca, &x, "a", addr);
    liar.write_all(&raw::hello(CLUSTER, "y", 1, "127.0.0.1:1", true))
        .unwrap();
    let kinds = raw::read_to_close(&mut liar).unwrap();
    assert_eq!(kinds, [raw::GOAWAY], "the node must say no and close");
    assert!(wait_until(TEST_DEADLINE, || handshakes_failed(&a) > failed));
    assert!(
        !a.system().members().iter().any(|m| m.id.name() == "y"),
        "a learnt a node that never proved its name"
    );
}

#[test]
fn plaintext_node_dialing_a_tls_node_is_refused() {
    let ca = TestCa::new(CLUSTER).unwrap();
    let a = start(with_tls(&ca, "a").unwrap(), None);
    let b = start(plaintext("b"), Some(&a));
    assert_refused(&a, &b);
}

#[test]
fn tls_node_dialing_a_plaintext_node_is_refused() {
    let ca = TestCa::new(CLUSTER).unwrap();
    let a = start(plaintext("a"), None);
    let b = start(with_tls(&ca, "b").unwrap(), Some(&a));
    assert_refused(&a, &b);
}
