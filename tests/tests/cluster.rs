//! In-process three-node clusters: static discovery connects every pair, and actors are
//! spawned, named, addressed and called across nodes, with per-sender ordering.

#![allow(clippy::unwrap_used)]

use actix_cluster::MemberState;
use actix_cluster::prelude::*;
use actix_cluster_testkit::{TEST_DEADLINE, TestNode, plaintext};
use actix_cluster_tests::{
    Add, Counter, Get, Recorder, Relay, RelayAdd, Relayed, Seen, Seq, up_peers, wait_until,
};

const NAMES: [&str; 3] = ["a", "b", "c"];

/// Nodes a, b and c; b and c only know a as a seed. Returns once every node sees the other two.
fn three_nodes(cluster: &str) -> [TestNode; 3] {
    let setup = |b: actix_cluster::ClusterSystemBuilder| {
        b.register::<Counter>()
            .register::<Recorder>()
            .register::<Relay>()
    };
    let a = TestNode::start(cluster, plaintext("a").build().unwrap(), setup).unwrap();
    let seed = a.system().local_addr().to_string();
    let b = TestNode::start(
        cluster,
        plaintext("b").seed_nodes([seed.clone()]).build().unwrap(),
        setup,
    )
    .unwrap();
    let c = TestNode::start(
        cluster,
        plaintext("c").seed_nodes([seed]).build().unwrap(),
        setup,
    )
    .unwrap();
    for node in [&a, &b, &c] {
        let connected = node
            .run(|s| async move { s.wait_for_peers(2, TEST_DEADLINE).await })
            .unwrap();
        assert!(
            connected,
            "{} sees only {:?}",
            node.system().node_id(),
            up_peers(node.system())
        );
    }
    [a, b, c]
}

#[test]
fn node_that_only_knows_the_seed_connects_to_every_member() {
    let [a, b, c] = three_nodes("discovery");
    // c was never told about b: it can only have learnt b from a's node list.
    assert_eq!(up_peers(c.system()), ["a", "b"]);
    assert_eq!(up_peers(b.system()), ["a", "c"]);
    assert_eq!(up_peers(a.system()), ["b", "c"]);
}

#[test]
fn members_lists_all_three_nodes_up_on_every_node() {
    let nodes = three_nodes("members");
    for node in &nodes {
        // Connected is not yet Up: membership confirms each node first.
        let all_up = wait_until(TEST_DEADLINE, || {
            let m = node.system().members();
            m.len() == 3 && m.iter().all(|m| m.state == MemberState::Up)
        });
        assert!(all_up, "{:?}", node.system().members());
        let members = node.system().members();
        let names: Vec<&str> = members.iter().map(|m| m.id.name()).collect();
        assert_eq!(names, NAMES, "members of {}", node.system().node_id());
        for m in &members {
            assert_eq!(m.state, MemberState::Up, "{m:?}");
        }
        // Every node reports the others under the identity they announced themselves.
        for other in &nodes {
            let id = other.system().node_id();
            let row = members.iter().find(|m| &m.id == id);
            assert!(row.is_some(), "{id} missing from {members:?}");
            assert_eq!(row.unwrap().addr, other.system().local_addr());
        }
    }
}

#[test]
fn every_node_spawns_actors_on_every_other_node() {
    let nodes = three_nodes("spawn");
    for (i, from) in nodes.iter().enumerate() {
        for (j, to) in NAMES.iter().enumerate() {
            if i == j {
                continue;
            }
            let start = (10 * i + j) as u64;
            let (host, total, again) = from
                .run(move |s| async move {
                    let there = s
                        .remote_actor::<Counter>(to, |_| Counter { n: start })
                        .await?;
                    let total = there.send(Add(1)).await?;
                    there.do_send(Add(1));
                    let again = there.send(Get).await?;
                    Ok::<_, RemoteError>((there.node().name().to_owned(), total, again))
                })
                .unwrap()
                .unwrap();
            assert_eq!(host, *to);
            assert_eq!((total, again), (start + 1, start + 2));
        }
    }
    // Each node hosts the two counters the others spawned there.
    for node in &nodes {
        assert_eq!(node.system().local_actor_count(), 2);
    }
}

/// An actor that keeps its node's handle, as [`ClusterSystemBuilder::local_actor`] hands it.
struct Home {
    system: ClusterSystem,
}

impl actix::Actor for Home {
    type Context = actix::Context<Self>;
}

#[derive(serde::Serialize, serde::Deserialize)]
struct WhereAmI;

impl actix::Message for WhereAmI {
    type Result = String;
}

impl actix::Handler<WhereAmI> for Home {
    type Result = String;
    fn handle(&mut self, _: WhereAmI, _: &mut actix::Context<Self>) -> String {
        self.system.node_id().name().to_owned()
    }
}

impl DistributedActor for Home {
    const NAME: &'static str = "tests.home";
    fn messages(m: &mut Messages<Self>) {
        m.handle::<WhereAmI>("where-am-i");
    }
}

/// Actors the builder starts exist before the node is visible: a peer that has just seen it
/// resolves them at once, and each one got its own node's handle.
#[test]
fn actors_started_by_the_builder_are_there_as_soon_as_the_node_is_seen() {
    let seed_node =
        TestNode::start("builder-actors", plaintext("a").build().unwrap(), |b| b).unwrap();
    let seed = seed_node.system().local_addr().to_string();
    let _b = TestNode::start(
        "builder-actors",
        plaintext("b").seed_nodes([seed]).build().unwrap(),
        |builder| {
            builder
                .local_actor("counter", |_| Counter { n: 7 })
                .local_actor("home", |system| Home {
                    system: system.clone(),
                })
        },
    )
    .unwrap();
    let (total, home) = seed_node
        .run(|s| async move {
            assert!(s.wait_for_peers(1, TEST_DEADLINE).await, "b never seen");
            let counter = s.actor_on::<Counter>("b", "counter").await?;
            let home = s.actor_on::<Home>("b", "home").await?;
            Ok::<_, RemoteError>((counter.send(Get).await?, home.send(WhereAmI).await?))
        })
        .unwrap()
        .unwrap();
    assert_eq!(total, 7);
    assert_eq!(
        home, "b",
        "the actor reached its own node through the handle it was given"
    );
}

#[test]
fn local_names_resolve_from_every_other_node() {
    let [a, b, c] = three_nodes("names");
    b.run(|s| async move {
        let counter = s.start_actor(Counter { n: 100 });
        s.register_local_name("counter", &counter)
    })
    .unwrap()
    .unwrap();
    for (node, add) in [(&a, 1), (&c, 10)] {
        let total = node
            .run(move |s| async move {
                let counter = s.actor_on::<Counter>("b", "counter").await?;
                counter.send(Add(add)).await
            })
            .unwrap()
            .unwrap();
        assert!(total == 101 || total == 111, "got {total}");
    }
    let total = b
        .run(|s| async move { s.actor_on::<Counter>("b", "counter").await?.send(Get).await })
        .unwrap()
        .unwrap();
    assert_eq!(total, 111);
}

#[test]
fn tells_from_one_sender_arrive_in_send_order() {
    const N: u64 = 10_000;
    let [a, _b, _c] = three_nodes("order");
    let seen = a
        .run(|s| async move {
            let recorder = s
                .remote_actor::<Recorder>("b", |_| Recorder::default())
                .await?;
            for i in 0..N {
                recorder.tell(Seq(i)).await?;
            }
            recorder.send(Seen).timeout(TEST_DEADLINE).await
        })
        .unwrap()
        .unwrap();
    assert_eq!(seen.len(), N as usize, "messages lost or duplicated");
    let first_out_of_order = seen.iter().enumerate().find(|(i, v)| *i as u64 != **v);
    assert_eq!(first_out_of_order, None);
}

#[test]
fn address_sent_to_a_third_node_reaches_the_actor_from_there() {
    let [a, b, c] = three_nodes("forward");
    let relayed = a
        .run(|s| async move {
            let counter = s
                .remote_actor::<Counter>("b", |_| Counter { n: 40 })
                .await?;
            let relay = s.remote_actor::<Relay>("c", |_| Relay).await?;
            relay
                .send(RelayAdd {
                    target: counter,
                    add: 2,
                })
                .await
        })
        .unwrap()
        .unwrap();
    assert_eq!(
        relayed,
        Ok(Relayed {
            total: 42,
            delivered_locally: false
        })
    );
    // The counter really lives on b, and c reached it over its own connection to b.
    assert_eq!(b.system().local_actor_count(), 1);
    assert_eq!(c.system().local_actor_count(), 1);
}

#[test]
fn address_pointing_at_the_receiving_node_delivers_locally() {
    let [a, _b, _c] = three_nodes("loopback");
    let (relayed, total) = a
        .run(|s| async move {
            let counter = s.remote_actor::<Counter>("c", |_| Counter { n: 7 }).await?;
            let relay = s.remote_actor::<Relay>("c", |_| Relay).await?;
            let relayed = relay
                .send(RelayAdd {
                    target: counter.clone(),
                    add: 1,
                })
                .await?;
            Ok::<_, RemoteError>((relayed, counter.send(Get).await?))
        })
        .unwrap()
        .unwrap();
    assert_eq!(
        relayed,
        Ok(Relayed {
            total: 8,
            delivered_locally: true
        })
    );
    assert_eq!(total, 8);
}
