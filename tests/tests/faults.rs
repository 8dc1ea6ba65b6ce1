//! The fault-injecting transport (`ClusterSystem::faults`, feature `fault-injection`): a
//! partition between named nodes of an in-process cluster cuts every connection across it,
//! membership on each side declares the other Down, requests across fail with typed errors,
//! and after healing the nodes reconnect and rejoin on their own.

use std::sync::mpsc;
use std::time::Duration;

use actix_cluster::prelude::*;
use actix_cluster::{ClusterConfigBuilder, ClusterSystemBuilder};
use actix_cluster_testkit::{TEST_DEADLINE, TestNode, plaintext};
use actix_cluster_tests::{Add, Counter, Delay, heal, partition, up_peers, wait_until};

/// Bound on failure detection here: generous for slow CI machines; the LAN preset's real
/// figure (a few seconds) is measured by `cluster-bench`, not asserted.
const DETECTION_DEADLINE: Duration = Duration::from_secs(30);

fn setup(b: ClusterSystemBuilder) -> ClusterSystemBuilder {
    b.register::<Counter>()
}

fn start(cluster: &str, config: ClusterConfigBuilder) -> TestNode {
    TestNode::start(cluster, config.build().expect("config"), setup).expect("start")
}

fn name(node: &TestNode) -> String {
    node.system().node_id().name().to_owned()
}

fn state_of(observer: &TestNode, name: &str) -> Option<MemberState> {
    observer
        .system()
        .members()
        .into_iter()
        .find(|m| m.id.name() == name)
        .map(|m| m.state)
}

fn all_up(nodes: &[&TestNode]) -> bool {
    nodes.iter().all(|node| {
        let m = node.system().members();
        m.len() == nodes.len() && m.iter().all(|m| m.state == MemberState::Up)
    })
}

/// Every node's member table, one line each, for failure messages.
fn member_tables(nodes: &[&TestNode]) -> Vec<String> {
    nodes
        .iter()
        .map(|n| {
            let rows: Vec<String> = n
                .system()
                .members()
                .into_iter()
                .map(|m| format!("{} {:?} connected={}", m.id, m.state, m.connected))
                .collect();
            format!("{}: {}", name(n), rows.join(", "))
        })
        .collect()
}

/// `n` gossip nodes named `n0..`, all seeded from `n0`; returns once every node sees all Up.
fn gossip_cluster(cluster: &str, n: usize) -> Vec<TestNode> {
    let first = start(cluster, plaintext("n0"));
    let seed = first.system().local_addr().to_string();
    let mut nodes = vec![first];
    for i in 1..n {
        nodes.push(start(
            cluster,
            plaintext(&format!("n{i}")).seed_nodes([seed.clone()]),
        ));
    }
    let refs: Vec<&TestNode> = nodes.iter().collect();
    assert!(
        wait_until(TEST_DEADLINE, || all_up(&refs)),
        "cluster did not form: {:?}",
        member_tables(&refs)
    );
    nodes
}

/// Waits until every observer sees every target in `state`.
fn assert_sees(
    observers: &[&TestNode],
    targets: &[&TestNode],
    state: MemberState,
    within: Duration,
) {
    for observer in observers {
        for target in targets {
            let target = name(target);
            assert!(
                wait_until(within, || state_of(observer, &target) == Some(state)),
                "{} does not see {target} {state:?}: {:?}",
                name(observer),
                observer.system().members()
            );
        }
    }
}

/// A counter started on `host`, addressed from `caller`.
fn counter_on(caller: &TestNode, host: &TestNode) -> RemoteAddr<Counter> {
    let host = name(host);
    caller
        .run(move |s| async move {
            s.remote_actor::<Counter>(&host, |_| Counter::default())
                .await
        })
        .expect("caller thread")
        .expect("counter started")
}

/// `counter.send(Add(1))` from `caller`'s thread.
fn add_one(caller: &TestNode, counter: &RemoteAddr<Counter>) -> Result<u64, RemoteError> {
    let counter = counter.clone();
    caller
        .run(move |_| async move { counter.send(Add(1)).await })
        .expect("caller thread")
}

fn is_cut_off(e: &RemoteError) -> bool {
    matches!(
        e,
        RemoteError::NodeGone { .. } | RemoteError::NodeUnreachable { .. }
    )
}

#[test]
fn partition_of_two_and_three_sees_each_side_down_and_heal_brings_all_back_up() {
    let nodes = gossip_cluster("faults-split", 5);
    let refs: Vec<&TestNode> = nodes.iter().collect();
    let (minority, majority) = ([0, 1], [2, 3, 4]);
    let (left, right): (Vec<&TestNode>, Vec<&TestNode>) = (
        minority.map(|i| refs[i]).into(),
        majority.map(|i| refs[i]).into(),
    );

    let across = counter_on(refs[0], refs[4]);
    let back = counter_on(refs[4], refs[1]);
    assert_eq!(add_one(refs[0], &across).expect("before the partition"), 1);
    assert_eq!(add_one(refs[4], &back).expect("before the partition"), 1);

    // A request in flight when the partition starts: its connection is cut, so it must fail
    // with a typed error long before its own deadline (the handler would answer only after
    // the whole test deadline).
    let (in_flight_tx, in_flight) = mpsc::channel();
    let slow = across.clone();
    refs[0]
        .run(move |_| async move {
            actix_rt::spawn(async move {
                let r = slow
                    .send(Delay(TEST_DEADLINE))
                    .timeout(TEST_DEADLINE * 2)
                    .await;
                let _ = in_flight_tx.send(r);
            });
        })
        .expect("caller thread");

    partition(&refs, &minority, &majority);
    for node in &left {
        let blocked = node.system().faults().blocked();
        assert_eq!(blocked, ["n2", "n3", "n4"], "blocks on {}", name(node));
    }

    let in_flight = in_flight
        .recv_timeout(DETECTION_DEADLINE)
        .expect("the request in flight was neither answered nor failed");
    match in_flight {
        Err(e) => assert!(is_cut_off(&e), "in-flight request failed with {e:?}"),
        Ok(()) => panic!("a request across the partition was answered"),
    }

    assert_sees(&left, &right, MemberState::Down, DETECTION_DEADLINE);
    assert_sees(&right, &left, MemberState::Down, DETECTION_DEADLINE);
    // Each side keeps its own members and its connections among them.
    assert_sees(&left, &left, MemberState::Up, TEST_DEADLINE);
    assert_sees(&right, &right, MemberState::Up, TEST_DEADLINE);
    assert_eq!(up_peers(refs[0].system()), ["n1"]);
    assert_eq!(up_peers(refs[4].system()), ["n2", "n3"]);

    // Down members take no requests: both directions fail at once with a typed error.
    let e = add_one(refs[0], &across).expect_err("minority reached the majority");
    assert!(is_cut_off(&e), "{e:?}");
    let e = add_one(refs[4], &back).expect_err("majority reached the minority");
    assert!(is_cut_off(&e), "{e:?}");

    heal(&refs);
    for node in &refs {
        assert!(node.system().faults().blocked().is_empty());
    }
    assert!(
        wait_until(TEST_DEADLINE, || all_up(&refs)
            && refs.iter().all(|n| up_peers(n.system()).len() == 4)),
        "the cluster did not heal: {:?}",
        member_tables(&refs)
    );
    // The same addresses work again: the counters kept their state on their nodes.
    assert_eq!(add_one(refs[0], &across).expect("after healing"), 2);
    assert_eq!(add_one(refs[4], &back).expect("after healing"), 2);
}

#[test]
fn one_node_blocking_another_also_keeps_the_other_from_reconnecting() {
    let nodes = gossip_cluster("faults-one-sided", 2);
    let (a, b) = (&nodes[0], &nodes[1]);
    let counter = counter_on(b, a);
    assert_eq!(add_one(b, &counter).expect("before the block"), 1);

    a.system().faults().block("n1");
    assert_eq!(a.system().faults().blocked(), ["n1"]);
    assert!(
        b.system().faults().blocked().is_empty(),
        "the block is a's decision alone"
    );

    // b did not block anyone, yet loses its connection and then sees a Down.
    assert!(
        wait_until(DETECTION_DEADLINE, || up_peers(a.system()).is_empty()
            && up_peers(b.system()).is_empty()),
        "the connection survived the block: {:?}",
        member_tables(&[a, b])
    );
    assert_sees(&[b], &[a], MemberState::Down, DETECTION_DEADLINE);
    assert_sees(&[a], &[b], MemberState::Down, DETECTION_DEADLINE);

    // b keeps redialling (its transport and its seed re-announcement both do) and a refuses
    // each handshake. Watch several refusals go by: no connection forms in either direction
    // meanwhile. a dials nobody (it has no seeds and refuses to dial b), so every failed
    // handshake it counts is one of b's attempts.
    let (a_before, b_before) = (a.system().stats(), b.system().stats());
    assert!(
        wait_until(TEST_DEADLINE, || a.system().stats().handshakes_failed
            >= a_before.handshakes_failed + 3),
        "b stopped trying to reconnect: {:?}",
        a.system().stats()
    );
    assert_eq!(
        b.system().stats().connections_established,
        b_before.connections_established,
        "b reconnected to the node that blocked it"
    );
    assert_eq!(
        a.system().stats().connections_established,
        a_before.connections_established,
        "a connected to the node it blocked"
    );
    let e = add_one(b, &counter).expect_err("b reached a through the block");
    assert!(is_cut_off(&e), "{e:?}");

    a.system().faults().unblock("n1");
    assert!(a.system().faults().blocked().is_empty());
    assert!(
        wait_until(TEST_DEADLINE, || all_up(&[a, b])
            && up_peers(a.system()) == ["n1"]
            && up_peers(b.system()) == ["n0"]),
        "a and b did not reconnect: {:?}",
        member_tables(&[a, b])
    );
    assert_eq!(add_one(b, &counter).expect("after unblocking"), 2);
}
