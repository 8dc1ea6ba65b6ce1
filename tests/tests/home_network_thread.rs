//! `NetworkThread::Home`: a node whose network I/O runs on the arbiter that started it works
//! like one with a network thread of its own — remote spawn, typed replies, tells in order,
//! a crash seen by its peer, and a clean shutdown that leaves the shared arbiter running.

use std::time::Duration;

use actix_cluster::prelude::*;
use actix_cluster::{MemberState, NetworkThread};
use actix_cluster_testkit::{TestNode, plaintext};
use actix_cluster_tests::{Add, Counter, Get, wait_until};

fn home_node(name: &str, seed: Option<String>) -> TestNode {
    let mut config = plaintext(name).network_thread(NetworkThread::Home);
    if let Some(seed) = seed {
        config = config.seed_nodes([seed]);
    }
    TestNode::start("home-net", config.build().expect("config"), |b| {
        b.register::<Counter>()
    })
    .expect("node")
}

#[test]
fn nodes_whose_network_shares_the_home_arbiter_exchange_typed_messages() {
    let a = home_node("a", None);
    let b = home_node("b", Some(a.system().local_addr().to_string()));
    let result = b
        .run(|s| async move {
            assert!(
                s.wait_for_peers(1, Duration::from_secs(10)).await,
                "b never connected to a"
            );
            let there = s
                .remote_actor::<Counter>("a", |_| Counter { n: 10 })
                .await?;
            let v = there.send(Add(5)).await?;
            for _ in 0..100 {
                there.tell(Add(1)).await?;
            }
            let w = there.send(Get).await?;
            Ok::<_, RemoteError>((v, w))
        })
        .expect("run");
    assert_eq!(result, Ok((15, 115)));
    // The shared arbiter keeps running after the node on it shut down.
    b.run(|s| async move { s.shutdown().await })
        .expect("shutdown");
    let still_runs = b.run(|_| async { 7 }).expect("arbiter alive");
    assert_eq!(still_runs, 7);
    a.stop();
}

#[test]
fn a_crashed_node_on_a_shared_arbiter_is_declared_down_by_its_peer() {
    let a = home_node("a", None);
    let b = home_node("b", Some(a.system().local_addr().to_string()));
    let connected = b
        .run(|s| async move { s.wait_for_peers(1, Duration::from_secs(10)).await })
        .expect("run");
    assert!(connected, "b never connected to a");
    b.system().kill_for_tests();
    let down = wait_until(Duration::from_secs(20), || {
        a.system()
            .members()
            .iter()
            .any(|m| m.id.name() == "b" && m.state == MemberState::Down)
    });
    assert!(
        down,
        "a never declared the crashed b down: {:?}",
        a.system().members()
    );
    a.stop();
}
