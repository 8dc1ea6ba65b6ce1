//! A node that cannot join because of a configuration mistake says so itself, at WARN, once
//! per seed and cause however often it redials: what is wrong and what to do.

#![allow(clippy::unwrap_used)]

use actix_cluster::{ClusterConfigBuilder, TlsConfig};
use actix_cluster_testkit::{TEST_DEADLINE, TestCa, TestNode, plaintext, with_tls};
use actix_cluster_tests::logs;
use actix_cluster_tests::{Counter, wait_until};

/// Redials the joining node must have made before the test counts its warnings.
const REDIALS: u64 = 4;

fn start(cluster: &str, config: ClusterConfigBuilder) -> TestNode {
    TestNode::start(cluster, config.build().unwrap(), |b| {
        b.register::<Counter>()
    })
    .unwrap()
}

/// Starts `joiner` against `seed`, lets it redial several times, and asserts that it logged
/// `text` about the seed exactly once.
fn assert_warned_once(seed: &TestNode, cluster: &str, joiner: ClusterConfigBuilder, text: &str) {
    logs::capture();
    let addr = seed.system().local_addr();
    let joiner = start(cluster, joiner.seed_nodes([addr.to_string()]));
    assert!(
        wait_until(TEST_DEADLINE, || {
            joiner.system().stats().handshakes_failed >= REDIALS
        }),
        "the joiner did not redial"
    );
    let lines = logs::warnings(&[&addr.to_string(), text]);
    assert_eq!(
        lines.len(),
        1,
        "expected one warning with {text:?}, got {lines:#?}"
    );
    drop(joiner);
}

#[test]
fn plaintext_joiner_of_a_tls_seed_warns_that_the_seed_speaks_tls() {
    let ca = TestCa::new("c").unwrap();
    let seed = start("c", with_tls(&ca, "seed").unwrap());
    assert_warned_once(
        &seed,
        "c",
        plaintext("joiner"),
        "speaks TLS; this node runs insecure plaintext: give this node the cluster's certificates",
    );
}

#[test]
fn tls_joiner_of_a_plaintext_seed_warns_that_the_seed_runs_plaintext() {
    let ca = TestCa::new("c").unwrap();
    let seed = start("c", plaintext("seed"));
    assert_warned_once(
        &seed,
        "c",
        with_tls(&ca, "joiner").unwrap(),
        "runs insecure plaintext; this node speaks TLS",
    );
}

#[test]
fn joiner_warns_that_the_seeds_certificate_is_not_from_its_ca() {
    let seeds_ca = TestCa::new("c").unwrap();
    let joiners_ca = TestCa::new("c").unwrap();
    let seed = start("c", with_tls(&seeds_ca, "seed").unwrap());
    assert_warned_once(
        &seed,
        "c",
        with_tls(&joiners_ca, "joiner").unwrap(),
        "is not signed by this node's CA",
    );
}

#[test]
fn joiner_whose_certificate_the_seed_refuses_warns_about_its_own_certificate() {
    let seeds_ca = TestCa::new("c").unwrap();
    let other_ca = TestCa::new("c").unwrap();
    let seed = start("c", with_tls(&seeds_ca, "seed").unwrap());
    // The joiner trusts the seed's CA, but its own certificate comes from another one.
    let cert = other_ca.issue("joiner").unwrap();
    let roots = format!("{}{}", seeds_ca.ca_pem(), other_ca.ca_pem());
    let tls = TlsConfig::from_pem(
        roots.as_bytes(),
        cert.cert_pem.as_bytes(),
        cert.key_pem.as_bytes(),
    )
    .unwrap();
    assert_warned_once(
        &seed,
        "c",
        plaintext("joiner").tls(tls),
        "refused this node's certificate",
    );
}

#[test]
fn joiner_of_another_cluster_warns_with_the_seeds_cluster_name() {
    let seed = start("alpha", plaintext("seed"));
    assert_warned_once(
        &seed,
        "beta",
        plaintext("joiner"),
        "belongs to cluster \"alpha\", this node to \"beta\": start this node with cluster name \"alpha\"",
    );
}
