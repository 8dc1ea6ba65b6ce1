//! A `RemoteAddr` obtained from a cluster-wide name follows the name: after the actor is
//! unregistered (or stops) and another actor is registered under the same name on another
//! node, the very same address held by a third node reaches the new actor, with no new lookup.

use actix_cluster::prelude::*;
use actix_cluster::{ClusterConfigBuilder, ClusterSystemBuilder, RegistryConfig, RegistryError};
use actix_cluster_testkit::{TEST_DEADLINE, TestNode, plaintext};
use actix_cluster_tests::{Add, Counter, Halt, Mortal, Ping, wait_until};

fn setup(b: ClusterSystemBuilder) -> ClusterSystemBuilder {
    b
}

fn start(cluster: &str, config: ClusterConfigBuilder) -> TestNode {
    TestNode::start(cluster, config.build().expect("config"), setup).expect("start")
}

/// Three nodes `a`, `b`, `c` seeded from `a`, each a registry voter; returns once every node
/// sees a leader and all three voters.
fn cluster(name: &str) -> [TestNode; 3] {
    let registry = RegistryConfig::new().voters(3);
    let a = start(name, plaintext("a").registry(registry.clone()));
    let seed = a.system().local_addr().to_string();
    let b = start(
        name,
        plaintext("b")
            .seed_nodes([seed.clone()])
            .registry(registry.clone()),
    );
    let c = start(name, plaintext("c").seed_nodes([seed]).registry(registry));
    let nodes = [a, b, c];
    assert!(
        wait_until(TEST_DEADLINE, || nodes.iter().all(|node| {
            node.run(|s| async move { s.registry_status().await })
                .ok()
                .and_then(Result::ok)
                .is_some_and(|st| st.leader.is_some() && st.voters.len() == 3)
        })),
        "registry did not form"
    );
    nodes
}

/// Registers `addr` as `name` from `node`, retrying while the registry refuses (not formed
/// yet, or the previous owner's release not yet committed); returns the last result.
fn register_until_ok<A: DistributedActor>(
    node: &TestNode,
    name: &str,
    addr: &RemoteAddr<A>,
) -> Result<(), RegistryError> {
    let mut last = Ok(());
    let ok = wait_until(TEST_DEADLINE, || {
        let (name, addr) = (name.to_owned(), addr.clone());
        last = node
            .run(move |s| async move { s.register_name(&name, &addr).await.map(drop) })
            .expect("node answers");
        last.is_ok()
    });
    if ok { Ok(()) } else { last }
}

/// Looks `name` up on `node` until its replica has it.
fn lookup_until_found<A: DistributedActor>(node: &TestNode, name: &str) -> RemoteAddr<A> {
    let mut found = None;
    assert!(
        wait_until(TEST_DEADLINE, || {
            let name = name.to_owned();
            found = node
                .run(move |s| async move { s.lookup::<A>(&name).await })
                .expect("node answers")
                .ok();
            found.is_some()
        }),
        "{name} never became visible on {}",
        node.system().node_id()
    );
    found.expect("found")
}

/// Waits until `node`'s replica has `name` registered to an actor on the node named `owner`.
fn wait_for_owner(node: &TestNode, name: &str, owner: &str) {
    let mut last = None;
    assert!(
        wait_until(TEST_DEADLINE, || {
            let name = name.to_owned();
            last = Some(
                node.run(move |s| async move { s.lookup_entry(&name).await })
                    .expect("node answers"),
            );
            matches!(&last, Some(Ok(e)) if e.node.name() == owner)
        }),
        "{} never saw {name} on {owner}: {last:?}",
        node.system().node_id()
    );
}

fn add(node: &TestNode, addr: &RemoteAddr<Counter>, n: u64) -> Result<u64, RemoteError> {
    let addr = addr.clone();
    node.run(move |_| async move { addr.send(Add(n)).await })
        .expect("node answers")
}

fn ping(node: &TestNode, addr: &RemoteAddr<Mortal>) -> Result<(), RemoteError> {
    let addr = addr.clone();
    node.run(move |_| async move { addr.send(Ping).await })
        .expect("node answers")
}

#[test]
fn address_looked_up_by_name_reaches_the_actor_registered_after_a_move() {
    let [a, b, c] = cluster("named-addr-move");
    let first = a
        .run(|s| async move { s.start_actor(Counter::default()) })
        .expect("start on a");
    register_until_ok(&a, "svc/counter", &first).expect("register on a");

    let held: RemoteAddr<Counter> = lookup_until_found(&c, "svc/counter");
    assert_eq!(held.registered_name(), Some("svc/counter"));
    assert_eq!(add(&c, &held, 1), Ok(1), "reaches a's counter");

    let released = a
        .run(|s| async move { s.unregister_name("svc/counter").await })
        .expect("a answers")
        .expect("unregister");
    assert!(released.is_some(), "the name was registered");
    // Unregistered: the address keeps its last target, which still runs.
    assert_eq!(
        add(&c, &held, 1),
        Ok(2),
        "still a's counter while unregistered"
    );

    let second = b
        .run(|s| async move { s.start_actor(Counter { n: 100 }) })
        .expect("start on b");
    register_until_ok(&b, "svc/counter", &second).expect("register on b");

    // Once c's replica has applied the new registration, the very next send through the same
    // address reaches b's counter (which counts from 100), and a's counter sees nothing more.
    wait_for_owner(&c, "svc/counter", "b");
    // Not used since the move: its target as last resolved is still a's counter, node and
    // actor id from that one registration.
    assert_eq!(
        held.resolved_target(),
        (first.node(), first.actor_id()),
        "last resolved target, without asking the registry"
    );
    assert_eq!(add(&c, &held, 1), Ok(101), "reaches b's counter");
    assert_eq!(held.resolved_target(), (second.node(), second.actor_id()));
    assert_eq!(held.node().name(), "b");
    assert_eq!(held.actor_id(), second.actor_id());
    assert!(held == second);
    // The old actor saw nothing after the move.
    assert_eq!(add(&a, &first, 0), Ok(2));
}

#[test]
fn address_looked_up_by_name_follows_it_after_its_actor_stops() {
    let [a, b, c] = cluster("named-addr-stop");
    let first = a
        .run(|s| async move { s.start_actor(Mortal) })
        .expect("start on a");
    register_until_ok(&a, "svc/mortal", &first).expect("register on a");

    let held: RemoteAddr<Mortal> = lookup_until_found(&c, "svc/mortal");
    assert_eq!(ping(&c, &held), Ok(()));

    let halt = held.clone();
    c.run(move |_| async move { halt.send(Halt).await })
        .expect("c answers")
        .expect("halt");
    // The stopped actor's name is released; until another actor takes it, sends fail with the
    // typed error of a stopped actor.
    let mut last = None;
    assert!(
        wait_until(TEST_DEADLINE, || {
            last = Some(ping(&c, &held));
            matches!(
                last,
                Some(Err(
                    RemoteError::ActorStopped | RemoteError::UnknownActor { .. }
                ))
            )
        }),
        "ping after the stop: {last:?}"
    );

    let second = b
        .run(|s| async move { s.start_actor(Mortal) })
        .expect("start on b");
    // Retried until the release of the stopped actor's registration has committed.
    register_until_ok(&b, "svc/mortal", &second).expect("register on b");

    wait_for_owner(&c, "svc/mortal", "b");
    assert_eq!(ping(&c, &held), Ok(()), "reaches b's actor");
    assert_eq!(held.node().name(), "b");
    assert!(held == second);
}
