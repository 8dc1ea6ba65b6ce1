//! Rebalancing when a node joins: supervised consistent-hash actors whose owner on the ring
//! changed move to the new node with their state, and the others stay where they are.

use actix::prelude::*;
use actix_cluster::placement::{Constraint, Input, Placement, Placer, RestartPolicy, SpawnSpec};
use actix_cluster::prelude::*;
use actix_cluster::{NameEntry, RegistryConfig};
use actix_cluster_testkit::{TEST_DEADLINE, TestNode, plaintext};
use actix_cluster_tests::{three_voters, wait_until};
use serde::{Deserialize, Serialize};

/// A counter whose count is its state.
#[derive(Serialize, Deserialize)]
struct Shard {
    count: u64,
}

impl Actor for Shard {
    type Context = Context<Self>;
}

#[derive(Message, Serialize, Deserialize)]
#[rtype(result = "u64")]
struct Bump;

impl Handler<Bump> for Shard {
    type Result = u64;
    fn handle(&mut self, _: Bump, _: &mut Context<Self>) -> u64 {
        self.count += 1;
        self.count
    }
}

impl DistributedActor for Shard {
    const NAME: &'static str = "tests.shard";
    fn messages(m: &mut Messages<Self>) {
        m.handle::<Bump>("bump").migratable();
    }
    fn placement() -> Placement {
        Placement::ConsistentHash
    }
    fn rebalance() -> bool {
        true
    }
}

const SHARDS: usize = 30;

fn name(i: usize) -> String {
    format!("shard/{i}")
}

fn entries(node: &TestNode) -> Vec<NameEntry> {
    node.run(|s| async move { s.list_names("shard/").await })
        .expect("node thread")
        .unwrap_or_default()
}

/// Where the ring puts `name` among the members `node` sees.
fn owner(node: &TestNode, name: &str) -> Option<String> {
    let members = node.system().members();
    let constraint = Constraint::new().capability(Shard::NAME);
    Placer::new(0)
        .choose(
            &Placement::ConsistentHash,
            &Input {
                members: &members,
                me: node.system().node_id().name(),
                constraint: &constraint,
                key: Some(name.as_bytes()),
            },
        )
        .ok()
        .map(|n| n.name().to_owned())
}

#[test]
fn a_joining_node_takes_over_the_consistent_hash_actors_it_now_owns_with_their_state() {
    let mut nodes = three_voters("rb", Shard::NAME, |b| b.register::<Shard>());
    for i in 0..SHARDS {
        let addr = nodes[0]
            .run(move |s| async move {
                s.spawn(
                    SpawnSpec::new()
                        .name(name(i))
                        .restart(RestartPolicy::Always),
                    |_| Shard { count: 0 },
                )
                .await
            })
            .expect("node thread")
            .expect("spawned");
        // Each shard counts to i + 1 before the join.
        for _ in 0..=i {
            let addr = addr.clone();
            nodes[0]
                .run(move |_| async move { addr.send(Bump).await })
                .expect("node thread")
                .expect("bumped");
        }
    }
    let before = entries(&nodes[0]);
    assert_eq!(before.len(), SHARDS);
    assert!(before.iter().all(|e| e.node.name() != "rb3"));

    let seed = nodes[0].system().local_addr().to_string();
    let config = plaintext("rb3")
        .seed_nodes([seed])
        .registry(RegistryConfig::new().voters(3))
        .build()
        .expect("config");
    nodes.push(TestNode::start("rb", config, |b| b.register::<Shard>()).expect("start"));

    // Every shard ends up at its owner on the new ring, and some of them on the new node.
    let settled = |nodes: &[TestNode]| {
        let now = entries(&nodes[1]);
        now.len() == SHARDS
            && now
                .iter()
                .all(|e| owner(&nodes[1], &e.name).as_deref() == Some(e.node.name()))
            && nodes[1].system().members().len() == 4
    };
    assert!(
        wait_until(TEST_DEADLINE, || settled(&nodes)),
        "not rebalanced: {:?}",
        entries(&nodes[1])
            .iter()
            .map(|e| (
                e.name.clone(),
                e.node.name().to_owned(),
                owner(&nodes[1], &e.name)
            ))
            .collect::<Vec<_>>()
    );
    let after = entries(&nodes[1]);
    let moved: Vec<&NameEntry> = after.iter().filter(|e| e.node.name() == "rb3").collect();
    assert!(!moved.is_empty(), "the new node owns nothing: {after:?}");
    // Only the shards the new node owns moved; the others kept their registration.
    for e in &after {
        let old = before.iter().find(|b| b.name == e.name).expect("known");
        if e.node.name() != "rb3" {
            assert_eq!(e, old, "{} moved although its owner did not change", e.name);
        }
    }
    // Moved, not restarted: every shard goes on counting from where it was.
    for i in 0..SHARDS {
        let count = nodes[0]
            .run(move |s| async move {
                let addr = s
                    .lookup_linearizable::<Shard>(&name(i))
                    .await
                    .map_err(|e| e.to_string())?;
                addr.send(Bump).await.map_err(|e| e.to_string())
            })
            .expect("node thread")
            .expect("answers");
        assert_eq!(count, i as u64 + 2, "shard {i}");
    }
    for n in nodes {
        n.stop();
    }
}
