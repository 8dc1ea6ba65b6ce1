//! Live migration in in-process clusters: a named actor moves with its state while three
//! nodes send to it, and no message is lost or reordered; a supervised actor restarts from
//! the state it migrated with; a move that cannot happen is refused with a typed error and
//! changes nothing.

use std::collections::BTreeMap;
use std::time::Duration;

use actix::prelude::*;
use actix_cluster::placement::{Placement, RestartPolicy, SpawnSpec};
use actix_cluster::prelude::*;
use actix_cluster::{MigrateError, NameEntry, RegistryError};
use actix_cluster_testkit::{TEST_DEADLINE, TestNode};
use actix_cluster_tests::{three_voters, wait_until};
use serde::{Deserialize, Serialize};

/// Records every `Put` it handles, in order; that record is its state and moves with it.
#[derive(Serialize, Deserialize, Default)]
struct Tally {
    seen: Vec<(u32, u64)>,
}

impl Actor for Tally {
    type Context = Context<Self>;
}

#[derive(Message, Serialize, Deserialize)]
#[rtype(result = "()")]
struct Put {
    sender: u32,
    seq: u64,
}

impl Handler<Put> for Tally {
    type Result = ();
    fn handle(&mut self, m: Put, _: &mut Context<Self>) {
        self.seen.push((m.sender, m.seq));
    }
}

#[derive(Message, Serialize, Deserialize)]
#[rtype(result = "Vec<(u32, u64)>")]
struct Seen;

impl Handler<Seen> for Tally {
    type Result = MessageResult<Seen>;
    fn handle(&mut self, _: Seen, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.seen.clone())
    }
}

#[derive(Message, Serialize, Deserialize)]
#[rtype(result = "String")]
struct Where;

impl Handler<Where> for Tally {
    type Result = String;
    fn handle(&mut self, _: Where, _: &mut Context<Self>) -> String {
        std::thread::current().name().unwrap_or("?").to_owned()
    }
}

impl DistributedActor for Tally {
    const NAME: &'static str = "tests.tally";
    fn messages(m: &mut Messages<Self>) {
        m.handle::<Put>("put")
            .handle::<Seen>("seen")
            .handle::<Where>("where")
            .migratable();
    }
}

/// Like [`Tally`] but without `migratable()`.
#[derive(Serialize, Deserialize)]
struct Pinned;

impl Actor for Pinned {
    type Context = Context<Self>;
}

impl DistributedActor for Pinned {
    const NAME: &'static str = "tests.pinned";
    fn messages(_: &mut Messages<Self>) {}
}

/// Three nodes `<prefix>0..2` registering both types, ready when every node sees all Up with
/// the capabilities and a registry of three voters with a leader.
fn cluster(prefix: &str) -> Vec<TestNode> {
    three_voters(prefix, Tally::NAME, |b| {
        b.register::<Tally>().register::<Pinned>()
    })
}

fn spawn_tally(node: &TestNode, on: &str, name: &str, restart: RestartPolicy) -> RemoteAddr<Tally> {
    let spec = SpawnSpec::new()
        .placement(Placement::Node(on.into()))
        .name(name)
        .restart(restart);
    node.run(move |s| async move { s.spawn(spec, |_| Tally::default()).await })
        .expect("node thread")
        .expect("spawned")
}

fn migrate(node: &TestNode, name: &str, to: &str) -> Result<NameEntry, MigrateError> {
    let (name, to) = (name.to_owned(), to.to_owned());
    node.run(move |s| async move { s.migrate(&name, &to).await })
        .expect("node thread")
}

fn try_lookup(node: &TestNode, name: &str) -> Option<RemoteAddr<Tally>> {
    let name = name.to_owned();
    node.run(move |s| async move { s.lookup::<Tally>(&name).await })
        .expect("node thread")
        .ok()
}

fn seen(node: &TestNode, addr: &RemoteAddr<Tally>) -> Result<Vec<(u32, u64)>, RemoteError> {
    let addr = addr.clone();
    node.run(move |_| async move { addr.send(Seen).await })
        .expect("node thread")
}

fn at(node: &TestNode, addr: &RemoteAddr<Tally>) -> Result<String, RemoteError> {
    let addr = addr.clone();
    node.run(move |_| async move { addr.send(Where).await })
        .expect("node thread")
}

/// Sends `count` numbered tells from `node` through a named address, paced so that the
/// stream spans the migrations; a tell refused with a typed error (the actor is moving away
/// from this very node) is sent again. Returns the number of refusals.
fn stream(node: &TestNode, sender: u32, count: u64) -> u64 {
    node.run(move |s| async move {
        let addr = s
            .lookup_linearizable::<Tally>("mig/stream")
            .await
            .expect("registered");
        let mut refused = 0;
        for seq in 0..count {
            while addr.tell(Put { sender, seq }).await.is_err() {
                refused += 1;
                actix_rt::time::sleep(Duration::from_millis(1)).await;
            }
            if seq % 16 == 0 {
                actix_rt::time::sleep(Duration::from_millis(1)).await;
            }
        }
        refused
    })
    .expect("node thread")
}

#[test]
fn a_named_actor_migrates_with_its_state_while_three_nodes_send_and_nothing_is_lost_or_reordered() {
    let nodes = cluster("mg-s");
    let addr = spawn_tally(&nodes[0], "mg-s1", "mig/stream", RestartPolicy::Never);
    const COUNT: u64 = 1500;
    let progress = |n: usize| {
        assert!(
            wait_until(TEST_DEADLINE, || seen(&nodes[0], &addr)
                .is_ok_and(|s| s.len() >= n)),
            "the stream stalled before {n} messages"
        );
    };
    let refused = std::thread::scope(|scope| {
        let senders: Vec<_> = (0..3u32)
            .map(|i| {
                let node = &nodes[i as usize];
                scope.spawn(move || stream(node, i, COUNT))
            })
            .collect();
        // Away from the source of one sender, then onto the node of another.
        progress(600);
        let moved = migrate(&nodes[0], "mig/stream", "mg-s2").expect("first move");
        assert_eq!(moved.node.name(), "mg-s2");
        progress(2400);
        let moved = migrate(&nodes[2], "mig/stream", "mg-s0").expect("second move");
        assert_eq!(moved.node.name(), "mg-s0");
        senders
            .into_iter()
            .map(|s| s.join().expect("sender"))
            .sum::<u64>()
    });
    assert!(
        wait_until(TEST_DEADLINE, || seen(&nodes[1], &addr)
            .is_ok_and(|s| s.len() >= 3 * COUNT as usize)),
        "messages lost: {} of {}",
        seen(&nodes[1], &addr).map(|s| s.len()).unwrap_or(0),
        3 * COUNT
    );
    let all = seen(&nodes[1], &addr).expect("seen");
    assert_eq!(all.len(), 3 * COUNT as usize, "duplicates");
    let mut per_sender: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
    for (sender, seq) in all {
        per_sender.entry(sender).or_default().push(seq);
    }
    for (sender, seqs) in &per_sender {
        let expected: Vec<u64> = (0..COUNT).collect();
        assert!(
            seqs == &expected,
            "sender {sender}: order or completeness broken, first differences: {:?}",
            seqs.iter()
                .zip(&expected)
                .enumerate()
                .filter(|(_, (a, b))| a != b)
                .take(5)
                .collect::<Vec<_>>()
        );
    }
    assert_eq!(at(&nodes[1], &addr).expect("answers"), "node-mg-s0");
    eprintln!("local sends refused while the actor moved away from their node: {refused}");
    for n in nodes {
        n.stop();
    }
}

#[test]
fn a_supervised_actor_restarts_from_the_state_it_migrated_with() {
    let mut nodes = cluster("mg-r");
    let addr = spawn_tally(&nodes[0], "mg-r1", "mig/sup", RestartPolicy::Always);
    for seq in 0..10 {
        let addr = addr.clone();
        nodes[0]
            .run(move |_| async move { addr.tell(Put { sender: 7, seq }).await })
            .expect("node thread")
            .expect("told");
    }
    assert!(wait_until(TEST_DEADLINE, || seen(&nodes[0], &addr)
        .is_ok_and(|s| s.len() == 10)));
    migrate(&nodes[0], "mig/sup", "mg-r2").expect("moved");
    assert_eq!(at(&nodes[0], &addr).expect("answers"), "node-mg-r2");
    nodes.pop().expect("three nodes").kill();
    // Restarted on a survivor, from the state it had when it moved.
    assert!(
        wait_until(TEST_DEADLINE, || at(&nodes[0], &addr)
            .is_ok_and(|a| a != "node-mg-r2")),
        "mig/sup was not restarted"
    );
    // A lookup reads the node's own replica, which may not hold the new binding yet.
    let mut state = None;
    assert!(
        wait_until(TEST_DEADLINE, || {
            state = try_lookup(&nodes[1], "mig/sup").and_then(|a| seen(&nodes[1], &a).ok());
            state.is_some()
        }),
        "mig/sup is not bound in the second node's replica"
    );
    assert_eq!(state, Some((0..10).map(|seq| (7, seq)).collect::<Vec<_>>()));
    for n in nodes {
        n.stop();
    }
}

#[test]
fn a_move_that_cannot_happen_is_refused_with_a_typed_error_and_changes_nothing() {
    let nodes = cluster("mg-e");
    let addr = spawn_tally(&nodes[0], "mg-e1", "mig/err", RestartPolicy::Never);
    let before = nodes[0]
        .run(|s| async move { s.lookup_entry("mig/err").await })
        .expect("node thread")
        .expect("registered");
    assert!(matches!(
        migrate(&nodes[0], "mig/err", "nobody"),
        Err(MigrateError::Target { ref node, .. }) if node == "nobody"
    ));
    assert!(matches!(
        migrate(&nodes[2], "mig/none", "mg-e0"),
        Err(MigrateError::Registry(RegistryError::NotFound(_)))
    ));
    // Moving to where it is does nothing.
    assert_eq!(
        migrate(&nodes[2], "mig/err", "mg-e1").expect("no-op"),
        before
    );
    nodes[0]
        .run(|s| async move {
            s.spawn(
                SpawnSpec::new()
                    .placement(Placement::Node("mg-e2".into()))
                    .name("mig/pinned"),
                |_| Pinned,
            )
            .await
        })
        .expect("node thread")
        .expect("spawned");
    let refused = migrate(&nodes[1], "mig/pinned", "mg-e0");
    assert!(
        matches!(&refused, Err(MigrateError::NotMigratable { reason, .. }) if reason.contains("migratable()")),
        "{refused:?}"
    );
    // Nothing moved, and the actor still answers where it was.
    let after = nodes[0]
        .run(|s| async move { s.lookup_entry("mig/err").await })
        .expect("node thread")
        .expect("registered");
    assert_eq!(after, before);
    assert_eq!(at(&nodes[0], &addr).expect("answers"), "node-mg-e1");
    for n in nodes {
        n.stop();
    }
}
