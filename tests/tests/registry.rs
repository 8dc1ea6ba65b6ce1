//! The cluster-wide registry in in-process clusters: a name means one actor on every node,
//! through leader crashes, partitions (the minority never accepts a registration), races of
//! `register_name_or_get`, voter replacement and the death of a name's node or actor.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use actix_cluster::prelude::*;
use actix_cluster::{
    ClusterConfigBuilder, ClusterSystemBuilder, NameEntry, NameEvent, RegistryConfig,
    RegistryError, RegistryStatus,
};
use actix_cluster_testkit::{TEST_DEADLINE, TestNode, plaintext};
use actix_cluster_tests::{
    Add, Counter, Get, Halt, Mortal, centralized, heal, partition, wait_until,
};

fn setup(b: ClusterSystemBuilder) -> ClusterSystemBuilder {
    b
}

fn start(cluster: &str, config: ClusterConfigBuilder) -> TestNode {
    TestNode::start(cluster, config.build().expect("config"), setup).expect("start")
}

fn status(node: &TestNode) -> Option<RegistryStatus> {
    node.run(|s| async move { s.registry_status().await })
        .ok()?
        .ok()
}

/// `n` nodes `r0..`, seeded from the first, registry with `voters` voters; returns once every
/// node sees all members Up and the registry has its full voter set on every node.
fn cluster(name: &str, n: usize, voters: usize) -> Vec<TestNode> {
    cluster_with(name, n, voters, |c| c)
}

fn cluster_with(
    name: &str,
    n: usize,
    voters: usize,
    tweak: impl Fn(ClusterConfigBuilder) -> ClusterConfigBuilder,
) -> Vec<TestNode> {
    let registry = RegistryConfig::new().voters(voters);
    let first = start(name, tweak(plaintext("r0").registry(registry.clone())));
    let seed = first.system().local_addr().to_string();
    let mut nodes = vec![first];
    for i in 1..n {
        nodes.push(start(
            name,
            tweak(
                plaintext(&format!("r{i}"))
                    .seed_nodes([seed.clone()])
                    .registry(registry.clone()),
            ),
        ));
    }
    let want = voters.min(n);
    assert!(
        wait_until(TEST_DEADLINE, || nodes.iter().all(|node| {
            status(node).is_some_and(|s| {
                s.voters.len() == want
                    && !s.changing_voters
                    && s.voters.len() + s.learners.len() == n
                    && s.leader.is_some()
            })
        })),
        "registry did not form: {:?}",
        nodes.iter().map(status).collect::<Vec<_>>()
    );
    nodes
}

fn index_of(nodes: &[TestNode], name: &str) -> usize {
    nodes
        .iter()
        .position(|n| n.system().node_id().name() == name)
        .expect("node by name")
}

fn leader(nodes: &[TestNode]) -> usize {
    let mut found = None;
    assert!(
        wait_until(TEST_DEADLINE, || {
            found = status(&nodes[0]).and_then(|s| s.leader);
            found.is_some()
        }),
        "no leader"
    );
    index_of(nodes, &found.expect("leader"))
}

fn start_counter(node: &TestNode) -> RemoteAddr<Counter> {
    node.run(|s| async move { s.start_actor(Counter::default()) })
        .expect("start counter")
}

fn register(
    node: &TestNode,
    name: &str,
    addr: &RemoteAddr<Counter>,
) -> Result<NameEntry, RegistryError> {
    let (name, addr) = (name.to_owned(), addr.clone());
    node.run(move |s| async move { s.register_name(&name, &addr).await })
        .expect("node answers")
}

fn lookup_entry(node: &TestNode, name: &str) -> Result<NameEntry, RegistryError> {
    let name = name.to_owned();
    node.run(move |s| async move { s.lookup_entry(&name).await })
        .expect("node answers")
}

/// Registers names from a node other than the leader until one succeeds.
fn wait_writable(nodes: &[&TestNode], via: usize, tag: &str) {
    let addr = start_counter(nodes[via]);
    let mut i = 0;
    let mut last = None;
    assert!(
        wait_until(TEST_DEADLINE, || {
            i += 1;
            let name = format!("{tag}/{i}");
            let (name, addr) = (name.clone(), addr.clone());
            let r = nodes[via]
                .run(move |s| async move { s.register_name(&name, &addr).await })
                .expect("node answers");
            let ok = r.is_ok();
            last = Some(r);
            ok
        }),
        "writes did not resume: {last:?}"
    );
}

fn leader_kill_then_writes_resume(cluster_name: &str, n: usize) {
    let mut nodes = cluster(cluster_name, n, n.min(5));
    let a = start_counter(&nodes[1]);
    let entry = register(&nodes[2], "svc/a", &a).expect("register");
    // Every replica has it.
    assert!(wait_until(TEST_DEADLINE, || nodes
        .iter()
        .all(|n| lookup_entry(n, "svc/a").as_ref() == Ok(&entry))));
    let l = leader(&nodes);
    nodes.remove(l).kill();
    let refs: Vec<&TestNode> = nodes.iter().collect();
    wait_writable(&refs, 0, "after-kill");
    // The name survived the leader (unless it lived on the leader, which it did not).
    if entry.node.name() != format!("r{l}") {
        let found = lookup_entry(&nodes[0], "svc/a");
        assert_eq!(found.map(|e| e.version), Ok(entry.version));
    }
}

#[test]
fn three_nodes_resume_writes_after_the_leader_is_killed() {
    leader_kill_then_writes_resume("reg-kill3", 3);
}

#[test]
fn five_nodes_resume_writes_after_the_leader_is_killed() {
    leader_kill_then_writes_resume("reg-kill5", 5);
}

#[test]
fn a_name_means_one_actor_and_lookups_reach_it_from_every_node() {
    let nodes = cluster("reg-basic", 3, 3);
    let a = start_counter(&nodes[0]);
    let b = start_counter(&nodes[1]);
    let first = register(&nodes[1], "counter/main", &a).expect("register");
    // Same actor again: the same registration.
    assert_eq!(register(&nodes[2], "counter/main", &a), Ok(first.clone()));
    // Another actor: taken.
    assert!(matches!(
        register(&nodes[2], "counter/main", &b),
        Err(RegistryError::NameTaken { .. })
    ));
    for node in &nodes {
        let total = node
            .run(|s| async move {
                let found: RemoteAddr<Counter> = s.lookup_linearizable("counter/main").await?;
                found.send(Add(1)).await.map_err(RegistryError::Remote)
            })
            .expect("node answers")
            .expect("lookup and send");
        assert!(total >= 1);
    }
    let got = nodes[2]
        .run(|s| async move {
            let c: RemoteAddr<Counter> = s.lookup("counter/main").await?;
            c.send(Get).await.map_err(RegistryError::Remote)
        })
        .expect("node answers");
    assert_eq!(got, Ok(3));
    // Wrong type and unknown names are typed errors.
    let wrong = nodes[0]
        .run(|s| async move { s.lookup::<Mortal>("counter/main").await.map(|_| ()) })
        .expect("node answers");
    assert!(matches!(wrong, Err(RegistryError::TypeMismatch { .. })));
    assert_eq!(
        lookup_entry(&nodes[0], "nobody"),
        Err(RegistryError::NotFound("nobody".into()))
    );
    let listed = nodes[2]
        .run(|s| async move { s.list_names("counter/").await })
        .expect("node answers")
        .expect("list");
    assert_eq!(listed.len(), 1);
    // Unregister frees it for another actor.
    let removed = nodes[0]
        .run(|s| async move { s.unregister_name("counter/main").await })
        .expect("node answers")
        .expect("unregister");
    assert_eq!(removed.map(|e| e.version), Some(first.version));
    let moved = register(&nodes[0], "counter/main", &b).expect("re-register");
    assert!(moved.version > first.version);
}

#[test]
fn a_partitioned_minority_never_registers_and_every_name_has_one_owner_after_healing() {
    let nodes = cluster("reg-part", 5, 5);
    let refs: Vec<&TestNode> = nodes.iter().collect();
    let l = leader(&nodes);
    // Put the current leader in the minority, the harder case: the majority must elect.
    let minority: Vec<usize> = std::iter::once(l)
        .chain((0..5).filter(|&i| i != l).take(1))
        .collect();
    let majority: Vec<usize> = (0..5).filter(|i| !minority.contains(i)).collect();
    partition(&refs, &minority, &majority);

    // The minority fails with NoQuorum (or, while it has not yet noticed, a timeout); it
    // never succeeds.
    let m = minority[1];
    let addr = start_counter(&nodes[m]);
    let mut minority_errors = Vec::new();
    for i in 0..3 {
        let r = register(&nodes[m], &format!("split/{i}"), &addr);
        assert!(r.is_err(), "minority accepted a registration: {r:?}");
        minority_errors.push(r);
    }
    assert!(
        wait_until(TEST_DEADLINE, || matches!(
            register(&nodes[m], "split/late", &addr),
            Err(RegistryError::NoQuorum)
        )),
        "the minority never reported NoQuorum: {minority_errors:?}"
    );

    // The majority elects a leader and keeps registering.
    let majority_refs: Vec<&TestNode> = majority.iter().map(|&i| &nodes[i]).collect();
    wait_writable(&majority_refs, 0, "majority");
    let winner = start_counter(&nodes[majority[1]]);
    register(&nodes[majority[1]], "split/0", &winner).expect("majority registers");

    heal(&refs);
    // After healing every node agrees on every name, and the minority's attempts left
    // nothing behind.
    let agreed = || {
        let views: Vec<Vec<NameEntry>> = nodes
            .iter()
            .map(|n| {
                n.run(|s| async move { s.list_names("").await })
                    .ok()
                    .and_then(Result::ok)
                    .unwrap_or_default()
            })
            .collect();
        views.windows(2).all(|w| w[0] == w[1]) && !views[0].is_empty()
    };
    assert!(
        wait_until(TEST_DEADLINE, agreed),
        "replicas disagree after healing"
    );
    let owner = lookup_entry(&nodes[m], "split/0").expect("split/0");
    assert_eq!(owner.node, *nodes[majority[1]].system().node_id());
    for i in 1..3 {
        assert_eq!(
            lookup_entry(&nodes[0], &format!("split/{i}")),
            Err(RegistryError::NotFound(format!("split/{i}")))
        );
    }
}

static CREATED: AtomicUsize = AtomicUsize::new(0);

/// Per name, every (node, actor id) a caller got back.
type Owners = HashMap<String, BTreeSet<(String, u64)>>;

#[test]
fn five_nodes_racing_register_name_or_get_create_exactly_one_actor_per_name() {
    let nodes = cluster("reg-race", 5, 3);
    let names: Vec<String> = (0..100).map(|i| format!("race/{i}")).collect();
    let results: Arc<Mutex<Owners>> = Arc::default();
    std::thread::scope(|scope| {
        for node in &nodes {
            let names = names.clone();
            let results = Arc::clone(&results);
            scope.spawn(move || {
                let got = node
                    .run(move |s| async move {
                        let calls = names.iter().map(|name| {
                            let s = s.clone();
                            let name = name.clone();
                            async move {
                                let maker = s.clone();
                                let r = s
                                    .register_name_or_get(&name, move || async move {
                                        CREATED.fetch_add(1, Ordering::SeqCst);
                                        Ok(maker.start_actor(Counter::default()))
                                    })
                                    .await;
                                (name, r.map(|a| (a.node().name().to_owned(), a.actor_id())))
                            }
                        });
                        futures::future::join_all(calls).await
                    })
                    .expect("node answers");
                let mut results = results.lock().expect("results");
                for (name, r) in got {
                    let owner = r.expect("register_name_or_get");
                    results.entry(name).or_default().insert(owner);
                }
            });
        }
    });
    assert_eq!(CREATED.load(Ordering::SeqCst), 100, "actors created");
    let results = results.lock().expect("results");
    assert_eq!(results.len(), 100);
    for (name, owners) in results.iter() {
        assert_eq!(
            owners.len(),
            1,
            "{name} resolved to several actors: {owners:?}"
        );
    }
}

#[test]
fn a_dead_voter_is_replaced_by_a_spare_without_operator_action() {
    let mut nodes = cluster("reg-spare", 5, 3);
    let before = status(&nodes[0]).expect("status");
    let l = before.leader.clone().expect("leader");
    let victim = before
        .voters
        .iter()
        .find(|v| **v != l)
        .expect("a follower voter")
        .clone();
    let i = index_of(&nodes, &victim);
    nodes.remove(i).kill();
    assert!(
        wait_until(TEST_DEADLINE, || status(&nodes[0]).is_some_and(|s| {
            s.voters.len() == 3 && !s.changing_voters && !s.voters.contains(&victim)
        })),
        "voter {victim} was not replaced: {:?}",
        status(&nodes[0])
    );
    let refs: Vec<&TestNode> = nodes.iter().collect();
    wait_writable(&refs, 0, "after-replace");
}

/// Five voters, the leader and one more voter killed: every status the survivors report while
/// writes resume (and after) still lists five voters. A new leader that has not yet heard the
/// others' Raft ids once shrank the set to itself.
#[test]
fn the_voter_set_never_shrinks_below_its_live_voters_when_two_of_five_die() {
    let mut nodes = cluster("reg-no-shrink", 5, 5);
    let before = status(&nodes[0]).expect("status");
    let l = before.leader.clone().expect("leader");
    let other = before
        .voters
        .iter()
        .find(|v| **v != l)
        .expect("another voter")
        .clone();
    for victim in [&l, &other] {
        let i = index_of(&nodes, victim);
        nodes.remove(i).kill();
    }
    let refs: Vec<&TestNode> = nodes.iter().collect();
    let addr = start_counter(refs[0]);
    let mut seen = Vec::new();
    let mut i = 0;
    let resumed = wait_until(TEST_DEADLINE, || {
        for node in &refs {
            if let Some(s) = status(node) {
                seen.push(s);
            }
        }
        i += 1;
        let (name, addr) = (format!("no-shrink/{i}"), addr.clone());
        refs[0]
            .run(move |s| async move { s.register_name(&name, &addr).await })
            .expect("node answers")
            .is_ok()
    });
    assert!(resumed, "writes did not resume: {:?}", seen.last());
    for node in &refs {
        seen.extend(status(node));
    }
    for s in &seen {
        // No spare exists (all five were voters): the dead two stay voters.
        assert_eq!(s.voters.len(), 5, "the voter set shrank: {s:?}");
        assert!(s.voters.contains(&l) && s.voters.contains(&other), "{s:?}");
    }
}

#[test]
fn names_are_released_when_their_node_dies_or_their_actor_stops() {
    let mut nodes = cluster("reg-release", 3, 3);
    // Actor stops: its name goes.
    let mortal = nodes[1]
        .run(|s| async move { s.start_actor(Mortal) })
        .expect("start");
    let (m2, m3) = (mortal.clone(), mortal.clone());
    nodes[0]
        .run(move |s| async move { s.register_name("mortal", &m2).await })
        .expect("node answers")
        .expect("register");
    nodes[1]
        .run(move |_| async move { m3.send(Halt).await })
        .expect("node answers")
        .expect("halt");
    assert!(
        wait_until(TEST_DEADLINE, || matches!(
            lookup_entry(&nodes[0], "mortal"),
            Err(RegistryError::NotFound(_))
        )),
        "the stopped actor's name was not released"
    );
    // Node dies: its names go, on every surviving node.
    let l = leader(&nodes);
    let victim = (0..3).find(|&i| i != l).expect("a follower");
    let a = start_counter(&nodes[victim]);
    register(&nodes[l], "doomed", &a).expect("register");
    nodes.remove(victim).kill();
    assert!(
        wait_until(TEST_DEADLINE, || nodes.iter().all(|n| matches!(
            lookup_entry(n, "doomed"),
            Err(RegistryError::NotFound(_))
        ))),
        "the dead node's name was not released"
    );
}

/// Collects name events.
struct Events(Arc<Mutex<Vec<NameEvent>>>);

impl Actor for Events {
    type Context = Context<Self>;
}

impl Handler<NameEvent> for Events {
    type Result = ();
    fn handle(&mut self, ev: NameEvent, _: &mut Context<Self>) {
        self.0.lock().expect("events").push(ev);
    }
}

#[test]
fn watchers_get_a_snapshot_then_registrations_and_releases_under_their_prefix() {
    let nodes = cluster("reg-watch", 3, 3);
    let a = start_counter(&nodes[0]);
    register(&nodes[0], "w/before", &a).expect("register");
    assert!(wait_until(TEST_DEADLINE, || lookup_entry(
        &nodes[2], "w/before"
    )
    .is_ok()));
    let log: Arc<Mutex<Vec<NameEvent>>> = Arc::default();
    let sink = Arc::clone(&log);
    nodes[2]
        .run(move |s| async move {
            let events = Events(sink).start();
            s.watch_names("w/", events.recipient())
        })
        .expect("node answers")
        .expect("watch");
    register(&nodes[1], "w/after", &a).expect("register");
    register(&nodes[1], "other", &a).expect("register");
    nodes[1]
        .run(|s| async move { s.unregister_name("w/before").await })
        .expect("node answers")
        .expect("unregister");
    assert!(wait_until(TEST_DEADLINE, || log.lock().expect("log").len() >= 3));
    let log = log.lock().expect("log");
    assert!(matches!(&log[0], NameEvent::Snapshot(s) if s.len() == 1 && s[0].name == "w/before"));
    assert!(matches!(&log[1], NameEvent::Registered(e) if e.name == "w/after"));
    assert!(matches!(&log[2], NameEvent::Released { entry, .. } if entry.name == "w/before"));
    assert_eq!(log.len(), 3, "an event outside the prefix leaked: {log:?}");
}

#[test]
fn client_nodes_register_and_look_up_through_a_member() {
    let nodes = cluster("reg-client", 3, 3);
    let seed = nodes[0].system().local_addr().to_string();
    let client = start(
        "reg-client",
        plaintext("client")
            .node_role(NodeRole::Client)
            .seed_nodes([seed]),
    );
    let a = start_counter(&nodes[1]);
    let a2 = a.clone();
    let entry = client
        .run(move |s| async move {
            s.wait_for_peers(1, TEST_DEADLINE).await;
            s.register_name("from-client", &a2).await
        })
        .expect("client answers")
        .expect("register from client");
    assert!(wait_until(TEST_DEADLINE, || lookup_entry(
        &nodes[2],
        "from-client"
    ) == Ok(entry.clone())));
    let value = client
        .run(|s| async move {
            let c: RemoteAddr<Counter> = s.lookup_linearizable("from-client").await?;
            c.send(Add(7)).await.map_err(RegistryError::Remote)
        })
        .expect("client answers");
    assert_eq!(value, Ok(7));
    // Client-hosted actors cannot hold names: nothing could release them.
    let own = client
        .run(|s| async move {
            let mine = s.start_actor(Counter::default());
            s.register_name("client-owned", &mine).await
        })
        .expect("client answers");
    assert!(matches!(own, Err(RegistryError::Unavailable(_))));
    // Nor can a client hold a claim: nothing would release it if the client died.
    let claimed = client
        .run(|s| async move {
            let maker = s.clone();
            s.register_name_or_get("client-claim", move || async move {
                Ok(maker.start_actor(Counter::default()))
            })
            .await
            .map(|_| ())
        })
        .expect("client answers");
    assert!(matches!(claimed, Err(RegistryError::Unavailable(_))));
    assert_eq!(
        lookup_entry(&nodes[0], "client-claim"),
        Err(RegistryError::NotFound("client-claim".into()))
    );
}

#[test]
fn in_a_centralized_cluster_the_master_holds_the_registry_and_workers_keep_a_replica() {
    let nodes = centralized("reg-central", 2);
    // One master: it is the single authority; workers are learners, never voters.
    assert!(
        wait_until(TEST_DEADLINE, || nodes.iter().all(|n| status(n)
            .is_some_and(|s| {
                s.voters == ["master"]
                    && s.learners == ["w0", "w1"]
                    && s.leader.as_deref() == Some("master")
            }))),
        "{:?}",
        nodes.iter().map(status).collect::<Vec<_>>()
    );
    let a = start_counter(&nodes[1]);
    let entry =
        register(&nodes[2], "central/a", &a).expect("a worker registers through the master");
    // Every worker's local replica (its cache) gets it without asking anyone.
    assert!(wait_until(TEST_DEADLINE, || nodes
        .iter()
        .all(|n| lookup_entry(n, "central/a").as_ref() == Ok(&entry))));
}

/// A client node seeded with `nodes[seed]`, once it is connected to every node.
fn client_connected_to_all(cluster: &str, nodes: &[TestNode], seed: usize) -> TestNode {
    let seed = nodes[seed].system().local_addr().to_string();
    let client = start(
        cluster,
        plaintext("client")
            .node_role(NodeRole::Client)
            .seed_nodes([seed]),
    );
    let want = nodes.len();
    let connected = client
        .run(move |s| async move { s.wait_for_peers(want, TEST_DEADLINE).await })
        .expect("client answers");
    assert!(connected, "the client did not reach every member");
    client
}

#[test]
fn a_client_reads_the_replica_of_the_seed_it_was_given() {
    let nodes = cluster("reg-seed", 3, 3);
    let refs: Vec<&TestNode> = nodes.iter().collect();
    let client = client_connected_to_all("reg-seed", &nodes, 2);
    // r2 falls behind the others; the client stays connected to all three.
    partition(&refs, &[2], &[0, 1]);
    let majority: Vec<&TestNode> = vec![&nodes[0], &nodes[1]];
    wait_writable(&majority, 0, "behind-r2");
    assert!(!lookup_list(&nodes[0], "behind-r2/").is_empty());
    assert!(
        lookup_list(&client, "behind-r2/").is_empty(),
        "the client answered from a replica other than its seed's"
    );
    heal(&refs);
}

fn lookup_list(node: &TestNode, prefix: &str) -> Vec<NameEntry> {
    let prefix = prefix.to_owned();
    node.run(move |s| async move { s.list_names(&prefix).await })
        .expect("node answers")
        .expect("list")
}

#[test]
fn a_new_member_catches_up_from_a_snapshot_many_times_larger_than_a_frame() {
    const NAMES: usize = 5000;
    const MAX_FRAME: u32 = 64 << 10;
    const LONG: &str =
        "a-name-long-enough-to-make-the-snapshot-many-frames-long-a-name-long-enough";
    let small = |c: ClusterConfigBuilder| {
        let mut registry = RegistryConfig::new().voters(3);
        // Compact often, so that the log a newcomer would need is gone and only a snapshot
        // can bring it up to date.
        registry.snapshot_every = 100;
        c.max_frame_size(MAX_FRAME).registry(registry)
    };
    let nodes = cluster_with("reg-snapshot", 3, 3, small);
    let addr = start_counter(&nodes[1]);
    let registered = nodes[1]
        .run(move |s| async move {
            let names: Vec<String> = (0..NAMES)
                .map(|i| format!("snapshot/{i:05}/{LONG}"))
                .collect();
            // In waves, so that a slow (debug, shared) machine stays within the request timeout.
            let mut results = Vec::with_capacity(NAMES);
            for wave in names.chunks(250) {
                let calls = wave.iter().map(|n| s.register_name(n, &addr));
                results.extend(futures::future::join_all(calls).await);
            }
            results
        })
        .expect("node answers");
    assert!(registered.iter().all(Result::is_ok), "{registered:?}");
    let seed = nodes[0].system().local_addr().to_string();
    let late = start("reg-snapshot", small(plaintext("r3").seed_nodes([seed])));
    assert!(
        wait_until(TEST_DEADLINE, || status(&late)
            .is_some_and(|s| s.names == NAMES)),
        "the newcomer did not catch up: {:?}",
        status(&late)
    );
    let entry = lookup_entry(&late, &format!("snapshot/04999/{LONG}")).expect("replicated");
    assert_eq!(&entry.node, nodes[1].system().node_id());
    // The snapshot it received was far larger than one frame.
    let snapshot_bytes = NAMES * LONG.len();
    assert!(snapshot_bytes > 5 * MAX_FRAME as usize);
}

#[test]
fn a_client_reads_through_another_member_when_its_seed_is_cut_off_or_dies() {
    let mut nodes = cluster("reg-seed-fails", 3, 3);
    let client = client_connected_to_all("reg-seed-fails", &nodes, 2);
    let a = start_counter(&nodes[0]);
    let entry = register(&nodes[0], "kept", &a).expect("register");
    assert!(wait_until(TEST_DEADLINE, || lookup_entry(&client, "kept")
        == Ok(entry.clone())));

    // The network between the client and its seed fails (the fault injection cuts the
    // connection; the client still lists the seed first): another member answers the read.
    let mut all: Vec<&TestNode> = nodes.iter().collect();
    all.push(&client);
    partition(&all, &[3], &[2]);
    assert_eq!(
        lookup_entry(&client, "kept").map(|e| e.version),
        Ok(entry.version)
    );
    heal(&all);

    // The seed dies: reads right after it go elsewhere.
    nodes.remove(2).kill();
    let results = client
        .run(|s| async move {
            let mut results = Vec::new();
            for _ in 0..20 {
                results.push(s.lookup_entry("kept").await.map(|e| e.version));
            }
            results
        })
        .expect("client answers");
    assert!(
        results.iter().all(|r| r == &Ok(entry.version)),
        "{results:?}"
    );
}

#[test]
fn a_leader_that_shuts_down_hands_leadership_over_first() {
    let mut nodes = cluster("reg-handoff", 3, 3);
    let a = start_counter(&nodes[0]);
    register(&nodes[0], "before-handoff", &a).expect("register");
    let l = leader(&nodes);
    let old = nodes[l].system().node_id().name().to_owned();
    nodes.remove(l).stop();
    // When the shutdown returns another voter already leads: nobody waits out the old
    // leader's lease and an election timeout.
    let leads_itself = |n: &TestNode| {
        status(n).is_some_and(|s| s.leader.as_deref() == Some(n.system().node_id().name()))
    };
    assert!(
        nodes.iter().any(leads_itself),
        "no survivor leads right after {old} shut down: {:?}",
        nodes.iter().map(status).collect::<Vec<_>>()
    );
    let refs: Vec<&TestNode> = nodes.iter().collect();
    wait_writable(&refs, 0, "after-handoff");
    assert!(lookup_entry(&nodes[1], "before-handoff").is_ok());
}

#[test]
fn a_crashed_leader_is_replaced_without_waiting_out_its_lease() {
    // Election timeouts so long that waiting out the lease and a timeout (90 s or more) would
    // miss the test deadline: only the evidence that the leader's process is gone (its port
    // refuses connections) lets the others elect in time.
    let patient = |c: ClusterConfigBuilder| {
        let mut registry = RegistryConfig::new().voters(3);
        registry.election_timeout = (Duration::from_secs(40), Duration::from_secs(50));
        registry.request_timeout = Duration::from_secs(55);
        registry.restart_fence = Duration::from_secs(100);
        c.registry(registry)
    };
    assert!(Duration::from_secs(90) > TEST_DEADLINE);
    let mut nodes = cluster_with("reg-gone", 3, 3, patient);
    let a = start_counter(&nodes[0]);
    register(&nodes[0], "before-crash", &a).expect("register");
    let l = leader(&nodes);
    nodes.remove(l).kill();
    let b = start_counter(&nodes[0]);
    let written = nodes[0]
        .run(move |s| async move {
            // Every attempt, not only the start of the last one, ends by the deadline (within
            // the harness's own bound on `run`).
            let deadline = actix_rt::time::Instant::now() + TEST_DEADLINE / 2;
            let mut attempt = 0;
            loop {
                let name = format!("after-crash/{attempt}");
                let left = deadline.saturating_duration_since(actix_rt::time::Instant::now());
                let result = actix_rt::time::timeout(left, s.register_name(&name, &b)).await;
                match result {
                    Ok(Ok(_)) => return Ok(attempt),
                    Ok(Err(_)) => attempt += 1,
                    Err(_) => return Err(format!("no registration after {attempt} attempts")),
                }
                actix_rt::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .expect("node answers");
    assert!(written.is_ok(), "{written:?}");
}
