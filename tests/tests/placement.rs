//! Spawning by placement strategy in in-process clusters: where each strategy puts actors,
//! constraints and capabilities, consistent hashing agreed by every spawner, single
//! activation of a named spawn under concurrent spawners, and the acting master's decisions
//! in a centralized cluster.

use std::collections::BTreeMap;
use std::sync::Mutex;

use actix::prelude::*;
use actix_cluster::placement::{Constraint, Placement, PlacementError, SpawnSpec};
use actix_cluster::prelude::*;
use actix_cluster::{ClusterConfigBuilder, ClusterSystemBuilder, RegistryConfig, SpawnError};
use actix_cluster_testkit::{TEST_DEADLINE, TestNode, plaintext};
use actix_cluster_tests::wait_until;
use serde::{Deserialize, Serialize};

/// Every activation of a [`Placed`] in this process: (cluster, tag, node).
static ACTIVATIONS: Mutex<Vec<(String, String, String)>> = Mutex::new(Vec::new());

/// An actor that records where it runs.
#[derive(Serialize, Deserialize)]
struct Placed {
    cluster: String,
    tag: String,
    node: String,
}

impl Actor for Placed {
    type Context = Context<Self>;

    fn started(&mut self, _: &mut Context<Self>) {
        ACTIVATIONS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((self.cluster.clone(), self.tag.clone(), self.node.clone()));
    }
}

/// Which node runs the actor.
#[derive(Message, Serialize, Deserialize)]
#[rtype(result = "String")]
struct Where;

impl Handler<Where> for Placed {
    type Result = String;
    fn handle(&mut self, _: Where, _: &mut Context<Self>) -> String {
        self.node.clone()
    }
}

impl DistributedActor for Placed {
    const NAME: &'static str = "tests.placed";
    fn messages(m: &mut Messages<Self>) {
        m.handle::<Where>("where");
    }
}

/// The same actor, whose type places round-robin over members labelled `tier=app`.
#[derive(Serialize, Deserialize)]
struct AppPlaced(Placed);

impl Actor for AppPlaced {
    type Context = Context<Self>;
    fn started(&mut self, _: &mut Context<Self>) {
        ACTIVATIONS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((
                self.0.cluster.clone(),
                self.0.tag.clone(),
                self.0.node.clone(),
            ));
    }
}

impl Handler<Where> for AppPlaced {
    type Result = String;
    fn handle(&mut self, _: Where, _: &mut Context<Self>) -> String {
        self.0.node.clone()
    }
}

impl DistributedActor for AppPlaced {
    const NAME: &'static str = "tests.app-placed";
    fn messages(m: &mut Messages<Self>) {
        m.handle::<Where>("where");
    }
    fn placement() -> Placement {
        Placement::RoundRobin
    }
    fn placement_constraint() -> Constraint {
        Constraint::new().label("tier", "app")
    }
}

fn activations(cluster: &str) -> Vec<(String, String)> {
    ACTIVATIONS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .filter(|(c, _, _)| c == cluster)
        .map(|(_, tag, node)| (tag.clone(), node.clone()))
        .collect()
}

fn registering(b: ClusterSystemBuilder) -> ClusterSystemBuilder {
    b.register::<Placed>().register::<AppPlaced>()
}

/// `n` nodes `p0..` seeded from `p0`; `register[i]` says whether node i registers the
/// actor types; `tweak` adjusts each node's config. Returns once every node sees every node
/// Up with its capabilities and the registry has a leader.
fn cluster(
    name: &str,
    register: &[bool],
    tweak: impl Fn(usize, ClusterConfigBuilder) -> ClusterConfigBuilder,
) -> Vec<TestNode> {
    let registry = RegistryConfig::new().voters(3);
    let start = |i: usize, config: ClusterConfigBuilder| {
        let config = tweak(i, config.registry(registry.clone()))
            .build()
            .expect("config");
        if register[i] {
            TestNode::start(name, config, registering).expect("start")
        } else {
            TestNode::start(name, config, |b| b).expect("start")
        }
    };
    let first = start(0, plaintext("p0"));
    let seed = first.system().local_addr().to_string();
    let mut nodes = vec![first];
    for i in 1..register.len() {
        nodes.push(start(
            i,
            plaintext(&format!("p{i}")).seed_nodes([seed.clone()]),
        ));
    }
    wait_ready(&nodes, register);
    nodes
}

/// Waits until every node sees every node Up, with the capabilities it registered, and
/// knows the registry leader.
fn wait_ready(nodes: &[TestNode], register: &[bool]) {
    let n = nodes.len();
    let ready = |node: &TestNode| {
        let members = node.system().members();
        let up = members.len() == n
            && members.iter().all(|m| {
                let i = nodes
                    .iter()
                    .position(|x| x.system().node_id() == &m.id)
                    .unwrap_or(usize::MAX);
                m.state == MemberState::Up
                    && i < n
                    && (!register[i] || m.capabilities.iter().any(|c| c == Placed::NAME))
            });
        up && node
            .run(|s| async move { s.registry_status().await })
            .ok()
            .and_then(Result::ok)
            .is_some_and(|s| s.leader.is_some() && !s.changing_voters)
    };
    assert!(
        wait_until(TEST_DEADLINE, || nodes.iter().all(ready)),
        "cluster not ready: {:?}",
        nodes
            .iter()
            .map(|n| n.system().members())
            .collect::<Vec<_>>()
    );
}

/// Spawns `spec` from `node` with tag `tag`; the actor answers where it runs.
fn spawn(
    node: &TestNode,
    cluster: &str,
    tag: &str,
    spec: SpawnSpec,
) -> Result<(RemoteAddr<Placed>, String), SpawnError> {
    let (cluster, tag) = (cluster.to_owned(), tag.to_owned());
    node.run(move |s| async move {
        let addr = s
            .spawn(spec, |node| Placed {
                cluster,
                tag,
                node: node.name().to_owned(),
            })
            .await?;
        let at = addr.send(Where).await.expect("the spawned actor answers");
        Ok((addr, at))
    })
    .expect("node thread")
}

fn counts(places: impl IntoIterator<Item = String>) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for p in places {
        *out.entry(p).or_default() += 1;
    }
    out
}

#[test]
fn every_strategy_puts_actors_where_it_says() {
    let c = "place-strategies";
    let nodes = cluster(c, &[true, true, true], |_, b| b);
    let spec = |p: Placement| SpawnSpec::new().placement(p);

    // Local (the default) and Node.
    let (addr, at) = spawn(&nodes[1], c, "local", SpawnSpec::new()).expect("local");
    assert_eq!(at, "p1");
    assert_eq!(addr.node().name(), "p1");
    let (_, at) = spawn(&nodes[0], c, "node", spec(Placement::Node("p2".into()))).expect("node");
    assert_eq!(at, "p2");
    match spawn(&nodes[0], c, "nowhere", spec(Placement::Node("p9".into()))) {
        Err(SpawnError::Placement(PlacementError::NotEligible { node, .. })) => {
            assert_eq!(node, "p9")
        }
        other => panic!("expected NotEligible, got {:?}", other.map(|(_, at)| at)),
    }

    // RoundRobin from one spawner: each member in turn.
    let rr: Vec<String> = (0..6)
        .map(|i| {
            spawn(&nodes[0], c, &format!("rr{i}"), spec(Placement::RoundRobin))
                .expect("round robin")
                .1
        })
        .collect();
    assert_eq!(
        counts(rr.clone()),
        BTreeMap::from([("p0".into(), 2), ("p1".into(), 2), ("p2".into(), 2)]),
        "{rr:?}"
    );
    assert_ne!(rr[0], rr[1]);

    // Random: every member gets some of 30 (all on two: probability 3 * (2/3)^30 < 2e-5).
    let placed: Vec<String> = (0..30)
        .map(|i| {
            spawn(&nodes[2], c, &format!("random{i}"), spec(Placement::Random))
                .expect("random")
                .1
        })
        .collect();
    assert_eq!(counts(placed.clone()).len(), 3, "{placed:?}");

    // LeastLoaded: once p1 reports 100 actors, the lighter of any two members is never p1.
    let cluster = c.to_owned();
    nodes[1]
        .run(move |s| async move {
            for i in 0..100 {
                s.start_actor(Placed {
                    cluster: cluster.clone(),
                    tag: format!("load{i}"),
                    node: "p1".into(),
                });
            }
        })
        .expect("node thread");
    assert!(
        wait_until(TEST_DEADLINE, || nodes[2].system().members().iter().any(
            |m| { m.id.name() == "p1" && m.load.as_ref().is_some_and(|l| l.actors >= 100) }
        )),
        "p1's load report did not reach p2"
    );
    let placed: Vec<String> = (0..20)
        .map(|i| {
            spawn(
                &nodes[2],
                c,
                &format!("least{i}"),
                spec(Placement::LeastLoaded),
            )
            .expect("least loaded")
            .1
        })
        .collect();
    assert!(!placed.iter().any(|p| p == "p1"), "{placed:?}");
    assert_eq!(counts(placed.clone()).len(), 2, "{placed:?}");

    // ConsistentHash: every spawner finds the same owner for a key; keys spread.
    let owners: Vec<String> = (0..12)
        .map(|i| {
            let key = format!("user-{i}");
            let specs = || spec(Placement::ConsistentHash).key(key.clone());
            let (_, a) = spawn(&nodes[0], c, &key, specs()).expect("hash from p0");
            let (_, b) = spawn(&nodes[1], c, &key, specs()).expect("hash from p1");
            let (_, d) = spawn(&nodes[2], c, &key, specs()).expect("hash from p2");
            assert!(a == b && b == d, "key {key}: {a} {b} {d}");
            a
        })
        .collect();
    assert!(counts(owners.clone()).len() >= 2, "{owners:?}");
    match spawn(&nodes[0], c, "no-key", spec(Placement::ConsistentHash)) {
        Err(SpawnError::Placement(PlacementError::KeyRequired)) => {}
        other => panic!("expected KeyRequired, got {:?}", other.map(|(_, at)| at)),
    }
    for n in nodes {
        n.stop();
    }
}

#[test]
fn only_members_within_the_constraint_that_registered_the_type_host() {
    let c = "place-constraints";
    // p2 has not registered the actor types; p3 is not labelled tier=app.
    let nodes = cluster(c, &[true, true, false, true], |i, b| {
        b.label("tier", if i == 3 { "db" } else { "app" })
    });
    let rr = |n: &TestNode, tag: &str, spec: SpawnSpec| spawn(n, c, tag, spec).expect("spawn").1;

    // No label constraint: p2 lacks the capability, so p0, p1, p3 take turns.
    let any: Vec<String> = (0..6)
        .map(|i| {
            rr(
                &nodes[0],
                &format!("any{i}"),
                SpawnSpec::new().placement(Placement::RoundRobin),
            )
        })
        .collect();
    assert_eq!(
        counts(any.clone()),
        BTreeMap::from([("p0".into(), 2), ("p1".into(), 2), ("p3".into(), 2)]),
        "{any:?}"
    );

    // The type's own strategy and constraint (spawn_distributed): RoundRobin over tier=app.
    let typed: Vec<String> = (0..4)
        .map(|i| {
            let cluster = c.to_owned();
            nodes[3]
                .run(move |s| async move {
                    let actor = AppPlaced(Placed {
                        cluster,
                        tag: format!("typed{i}"),
                        node: String::new(),
                    });
                    let addr = actor
                        .spawn_distributed(&s)
                        .await
                        .expect("spawn_distributed");
                    addr.node().name().to_owned()
                })
                .expect("node thread")
        })
        .collect();
    assert_eq!(
        counts(typed.clone()),
        BTreeMap::from([("p0".into(), 2), ("p1".into(), 2)]),
        "{typed:?}"
    );

    // A constraint nobody meets is a typed error, and nothing starts.
    let before = activations(c).len();
    match spawn(
        &nodes[0],
        c,
        "none",
        SpawnSpec::new()
            .placement(Placement::Random)
            .constraint(Constraint::new().label("tier", "gpu")),
    ) {
        Err(SpawnError::Placement(PlacementError::NoEligibleMember { members })) => {
            assert_eq!(members, 4)
        }
        other => panic!(
            "expected NoEligibleMember, got {:?}",
            other.map(|(_, at)| at)
        ),
    }
    assert_eq!(activations(c).len(), before);
    for n in nodes {
        n.stop();
    }
}

#[test]
fn a_named_spawn_is_one_activation_whatever_the_number_of_spawners() {
    let c = "place-single";
    let nodes = cluster(c, &[true, true, true], |_, b| b);
    // Every node spawns each name four times at once, by Random placement.
    let names: Vec<String> = (0..5).map(|i| format!("single/{i}")).collect();
    let handles: Vec<_> = nodes
        .iter()
        .map(|node| {
            let names = names.clone();
            let cluster = c.to_owned();
            node.run(move |s| async move {
                let spawns = names.iter().flat_map(|name| {
                    (0..4).map(|_| {
                        let (s, cluster, name) = (s.clone(), cluster.clone(), name.clone());
                        async move {
                            let spec = SpawnSpec::new()
                                .placement(Placement::Random)
                                .name(name.clone());
                            let addr = s
                                .spawn(spec, |node| Placed {
                                    cluster,
                                    tag: name.clone(),
                                    node: node.name().to_owned(),
                                })
                                .await
                                .expect("named spawn");
                            assert_eq!(addr.registered_name(), Some(name.as_str()));
                            (name, addr.send(Where).await.expect("answers"))
                        }
                    })
                });
                futures::future::join_all(spawns).await
            })
            .expect("node thread")
        })
        .collect();
    let mut served: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, at) in handles.into_iter().flatten() {
        served.entry(name).or_default().push(at);
    }
    let activated = activations(c);
    for name in &names {
        let at = &served[name];
        assert_eq!(at.len(), 12);
        assert!(at.iter().all(|a| a == &at[0]), "{name} served from {at:?}");
        let count = activated.iter().filter(|(tag, _)| tag == name).count();
        assert_eq!(count, 1, "{name}: {count} activations: {activated:?}");
    }
    for n in nodes {
        n.stop();
    }
}

#[test]
fn in_a_centralized_cluster_the_acting_master_decides_round_robin_for_every_spawner() {
    let c = "place-central";
    let start = |config: ClusterConfigBuilder| {
        let config = config
            .architecture(Architecture::Centralized)
            .build()
            .expect("config");
        TestNode::start(c, config, registering).expect("start")
    };
    let master = start(plaintext("p0").node_role(NodeRole::Master));
    let addr = master.system().local_addr().to_string();
    let mut nodes = vec![master];
    for i in 1..4 {
        nodes.push(start(
            plaintext(&format!("p{i}")).master_nodes([addr.clone()]),
        ));
    }
    wait_ready(&nodes, &[true; 4]);
    // Two workers spawn in turn. Each one's own round-robin would start at the same place
    // (two actors on each of two nodes); the master's single position spreads them one each.
    let placed: Vec<String> = (0..4)
        .map(|i| {
            let spawner = &nodes[1 + i % 2];
            spawn(
                spawner,
                c,
                &format!("central{i}"),
                SpawnSpec::new().placement(Placement::RoundRobin),
            )
            .expect("spawn")
            .1
        })
        .collect();
    assert_eq!(counts(placed.clone()).len(), 4, "{placed:?}");
    for n in nodes {
        n.stop();
    }
}
