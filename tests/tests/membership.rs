//! Membership in in-process clusters: every architecture forms, detects a crash as Down,
//! sees a graceful leave as Left, and takes a restarted node back as a new incarnation;
//! subscribers get a snapshot first and then every change.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use actix_cluster::prelude::*;
use actix_cluster::{ClusterConfigBuilder, ClusterSystemBuilder};
use actix_cluster_testkit::{TEST_DEADLINE, TestNode, plaintext};
use actix_cluster_tests::{centralized, heal, partition, wait_until};

/// Bound on detection in these tests: generous, since CI machines stall; the tight figure
/// (about 2 s with the LAN preset) is measured by `cluster-bench`, not asserted.
const DETECTION_DEADLINE: Duration = Duration::from_secs(15);

fn setup(b: ClusterSystemBuilder) -> ClusterSystemBuilder {
    b
}

fn start(cluster: &str, config: ClusterConfigBuilder) -> TestNode {
    TestNode::start(cluster, config.build().expect("config"), setup).expect("start")
}

fn state_of(system: &ClusterSystem, name: &str) -> Option<(u64, MemberState)> {
    system
        .members()
        .into_iter()
        .find(|m| m.id.name() == name)
        .map(|m| (m.id.incarnation(), m.state))
}

fn all_up(nodes: &[&TestNode], n: usize) -> bool {
    nodes.iter().all(|node| {
        let m = node.system().members();
        m.len() == n && m.iter().all(|m| m.state == MemberState::Up)
    })
}

/// `n` nodes named `n0..`, all seeded from the first; waits until every node sees all Up.
fn cluster(
    name: &str,
    n: usize,
    tweak: impl Fn(ClusterConfigBuilder) -> ClusterConfigBuilder,
) -> Vec<TestNode> {
    let first = start(name, tweak(plaintext("n0")));
    let seed = first.system().local_addr().to_string();
    let mut nodes = vec![first];
    for i in 1..n {
        nodes.push(start(
            name,
            tweak(plaintext(&format!("n{i}")).seed_nodes([seed.clone()])),
        ));
    }
    let refs: Vec<&TestNode> = nodes.iter().collect();
    assert!(
        wait_until(TEST_DEADLINE, || all_up(&refs, n)),
        "cluster did not form: {:?}",
        nodes
            .iter()
            .map(|n| n.system().members())
            .collect::<Vec<_>>()
    );
    nodes
}

/// Collects the cluster events an actor receives.
struct EventLog(Arc<Mutex<Vec<ClusterEvent>>>);

impl Actor for EventLog {
    type Context = Context<Self>;
}

impl Handler<ClusterEvent> for EventLog {
    type Result = ();
    fn handle(&mut self, ev: ClusterEvent, _: &mut Context<Self>) {
        self.0.lock().expect("log").push(ev);
    }
}

fn subscribe(node: &TestNode) -> Arc<Mutex<Vec<ClusterEvent>>> {
    let log = Arc::new(Mutex::new(Vec::new()));
    let l = Arc::clone(&log);
    node.run(move |s| async move {
        let addr = EventLog(l).start();
        s.subscribe(addr.recipient());
    })
    .expect("subscribe");
    log
}

fn crash_is_seen_down_by_every_survivor(nodes: Vec<TestNode>) {
    let mut nodes = nodes;
    let victim = nodes.pop().expect("victim");
    let name = victim.system().node_id().name().to_owned();
    victim.kill();
    for node in &nodes {
        assert!(
            wait_until(DETECTION_DEADLINE, || {
                state_of(node.system(), &name).is_some_and(|(_, s)| s == MemberState::Down)
            }),
            "{} does not see {name} down: {:?}",
            node.system().node_id(),
            node.system().members()
        );
    }
}

#[test]
fn gossip_subscriber_gets_the_snapshot_then_a_crash_as_down() {
    let nodes = cluster("m-gossip-crash", 4, |b| b);
    let log = subscribe(&nodes[0]);
    let victim = nodes[3].system().node_id().clone();
    crash_is_seen_down_by_every_survivor(nodes.into_iter().collect());
    let events = log.lock().expect("log").clone();
    match events.first() {
        Some(ClusterEvent::Snapshot(members)) => assert_eq!(members.len(), 4),
        other => panic!("first event is not the snapshot: {other:?}"),
    }
    assert!(
        events
            .iter()
            .any(|e| matches!(e, ClusterEvent::MemberDown(m) if m.id == victim)),
        "{events:?}"
    );
}

#[test]
fn static_discovery_sees_a_crash_as_down() {
    let nodes = cluster("m-static-crash", 3, |b| {
        b.discovery(DiscoveryMethod::Static)
    });
    crash_is_seen_down_by_every_survivor(nodes);
}

#[test]
fn centralized_workers_register_with_the_master_and_crashes_are_pushed_to_all() {
    let nodes = centralized("m-central", 3);
    let refs: Vec<&TestNode> = nodes.iter().collect();
    assert!(
        wait_until(TEST_DEADLINE, || all_up(&refs, 4)),
        "{:?}",
        nodes
            .iter()
            .map(|n| n.system().members())
            .collect::<Vec<_>>()
    );
    crash_is_seen_down_by_every_survivor(nodes);
}

#[test]
fn graceful_leave_is_seen_as_left_not_down() {
    let mut nodes = cluster("m-leave", 3, |b| b);
    let leaver = nodes.pop().expect("leaver");
    let name = leaver.system().node_id().name().to_owned();
    let logs: Vec<_> = nodes.iter().map(subscribe).collect();
    leaver
        .run(|s| async move { s.leave().await })
        .expect("leave");
    for node in &nodes {
        assert!(
            wait_until(TEST_DEADLINE, || {
                state_of(node.system(), &name).is_some_and(|(_, s)| s == MemberState::Left)
            }),
            "{:?}",
            node.system().members()
        );
    }
    for log in logs {
        let events = log.lock().expect("log").clone();
        assert!(
            !events
                .iter()
                .any(|e| matches!(e, ClusterEvent::MemberDown(m) if m.id.name() == name)),
            "a leaving node must not be reported down: {events:?}"
        );
    }
    drop(leaver);
}

#[test]
fn restarted_node_is_a_new_incarnation_up_everywhere() {
    let mut nodes = cluster("m-restart", 3, |b| b);
    let old = nodes.pop().expect("old");
    let old_id = old.system().node_id().clone();
    let seed = nodes[0].system().local_addr().to_string();
    old.kill();
    let new = start("m-restart", plaintext(old_id.name()).seed_nodes([seed]));
    let new_inc = new.system().node_id().incarnation();
    assert!(new_inc > old_id.incarnation());
    for node in &nodes {
        assert!(
            wait_until(DETECTION_DEADLINE, || {
                state_of(node.system(), old_id.name()) == Some((new_inc, MemberState::Up))
            }),
            "{:?}",
            node.system().members()
        );
    }
}

/// When a partition heals, the isolated node's gossip says the majority's nodes are Down.
/// Nodes of the majority that never lost each other must not take that as a Down of one
/// another (it would fail the requests between them, and the registry would release the names
/// of their actors): they suspect each other at most, until the accused rejoins.
#[test]
fn a_healed_partition_does_not_down_the_majority_to_itself() {
    let nodes = cluster("m-heal", 3, |b| b);
    let refs: Vec<&TestNode> = nodes.iter().collect();
    let logs = [subscribe(&nodes[0]), subscribe(&nodes[1])];
    let names: Vec<String> = nodes
        .iter()
        .map(|n| n.system().node_id().name().to_owned())
        .collect();
    partition(&refs, &[0, 1], &[2]);
    let sees_down = |observer: usize, member: usize| {
        state_of(nodes[observer].system(), &names[member])
            .is_some_and(|(_, s)| s == MemberState::Down)
    };
    assert!(
        wait_until(DETECTION_DEADLINE, || sees_down(0, 2)
            && sees_down(1, 2)
            && sees_down(2, 0)
            && sees_down(2, 1)),
        "the sides did not see each other Down: {:?}",
        nodes
            .iter()
            .map(|n| n.system().members())
            .collect::<Vec<_>>()
    );
    heal(&refs);
    assert!(
        wait_until(TEST_DEADLINE, || all_up(&refs, 3)),
        "the sides did not merge back: {:?}",
        nodes
            .iter()
            .map(|n| n.system().members())
            .collect::<Vec<_>>()
    );
    for (observer, other) in [(0, 1), (1, 0)] {
        let events = logs[observer].lock().expect("log").clone();
        let downed: Vec<_> = events
            .iter()
            .filter(|e| matches!(e, ClusterEvent::MemberDown(m) if m.id.name() == names[other]))
            .collect();
        assert!(
            downed.is_empty(),
            "{} saw {} Down: {downed:?}",
            names[observer],
            names[other]
        );
    }
    for n in nodes {
        n.stop();
    }
}
