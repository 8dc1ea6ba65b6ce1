//! Restart policies in in-process clusters: a supervised actor comes back when it stops or
//! its node dies, keeps its name (and named addresses follow it), and an exhausted policy
//! leaves a typed terminal state.

use std::sync::Mutex;
use std::time::Duration;

use actix::prelude::*;
use actix_cluster::placement::{Placement, RestartPolicy, SpawnSpec};
use actix_cluster::prelude::*;
use actix_cluster::{NameEntry, RegistryError, SpawnError};
use actix_cluster_testkit::{TEST_DEADLINE, TestNode};
use actix_cluster_tests::{heal, partition, three_voters, wait_until};
use serde::{Deserialize, Serialize};

/// Every activation in this process: (tag, the thread it started on, i.e. `node-<name>`).
static ACTIVATIONS: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

/// Starts and stops in the order they happened: (tag, thread, started).
static LEDGER: Mutex<Vec<(String, String, bool)>> = Mutex::new(Vec::new());

fn ledger(tag: &str, started: bool) {
    LEDGER
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push((tag.to_owned(), thread(), started));
}

/// The most activations of `tag` alive at once, by the ledger; and how many stopped.
fn overlap(tag: &str) -> (usize, usize) {
    let ledger = LEDGER
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let (mut live, mut most, mut stopped) = (0usize, 0usize, 0usize);
    for (_, _, started) in ledger.iter().filter(|(t, ..)| t == tag) {
        if *started {
            live += 1;
            most = most.max(live);
        } else {
            live = live.saturating_sub(1);
            stopped += 1;
        }
    }
    (most, stopped)
}

fn thread() -> String {
    std::thread::current().name().unwrap_or("?").to_owned()
}

/// A supervised actor: records its activations and answers where it runs.
#[derive(Serialize, Deserialize)]
struct Sup {
    tag: String,
}

impl Actor for Sup {
    type Context = Context<Self>;
    fn started(&mut self, _: &mut Context<Self>) {
        ACTIVATIONS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((self.tag.clone(), thread()));
        ledger(&self.tag, true);
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        ledger(&self.tag, false);
    }
}

#[derive(Message, Serialize, Deserialize)]
#[rtype(result = "String")]
struct Where;

impl Handler<Where> for Sup {
    type Result = String;
    fn handle(&mut self, _: Where, _: &mut Context<Self>) -> String {
        thread()
    }
}

/// Stops the actor (a failure, for its restart policy).
#[derive(Message, Serialize, Deserialize)]
#[rtype(result = "()")]
struct Crash;

impl Handler<Crash> for Sup {
    type Result = ();
    fn handle(&mut self, _: Crash, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

impl DistributedActor for Sup {
    const NAME: &'static str = "tests.sup";
    fn messages(m: &mut Messages<Self>) {
        m.handle::<Where>("where").handle::<Crash>("crash");
    }
}

fn activations(tag: &str) -> Vec<String> {
    ACTIVATIONS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .filter(|(t, _)| t == tag)
        .map(|(_, at)| at.clone())
        .collect()
}

/// Three nodes `<prefix>0..2`, every one registering [`Sup`], once each sees all Up with
/// the capability and the registry has a leader and three voters.
fn cluster(prefix: &str) -> Vec<TestNode> {
    three_voters(prefix, Sup::NAME, |b| b.register::<Sup>())
}

fn spawn(node: &TestNode, spec: SpawnSpec, tag: &str) -> Result<RemoteAddr<Sup>, SpawnError> {
    let tag = tag.to_owned();
    node.run(move |s| async move { s.spawn(spec, |_| Sup { tag }).await })
        .expect("node thread")
}

fn entry(node: &TestNode, name: &str) -> Result<NameEntry, RegistryError> {
    let name = name.to_owned();
    node.run(move |s| async move { s.lookup_entry(&name).await })
        .expect("node thread")
}

fn ask(node: &TestNode, addr: &RemoteAddr<Sup>) -> Result<String, RemoteError> {
    let addr = addr.clone();
    node.run(move |_| async move { addr.send(Where).await })
        .expect("node thread")
}

fn crash(node: &TestNode, addr: &RemoteAddr<Sup>) {
    let addr = addr.clone();
    node.run(move |_| async move { addr.tell(Crash).await })
        .expect("node thread")
        .expect("crash delivered");
}

#[test]
fn a_supervised_actor_whose_node_dies_comes_back_elsewhere_under_its_name() {
    let mut nodes = cluster("sv-down");
    let spec = SpawnSpec::new()
        .placement(Placement::Node("sv-down2".into()))
        .name("svc/down")
        .restart(RestartPolicy::Always);
    let addr = spawn(&nodes[0], spec, "down").expect("spawn");
    assert_eq!(addr.registered_name(), Some("svc/down"));
    assert_eq!(ask(&nodes[0], &addr).expect("answers"), "node-sv-down2");
    let before = entry(&nodes[0], "svc/down").expect("registered");

    nodes.pop().expect("three nodes").kill();
    // The same address (it follows the name) answers from a survivor.
    let mut at = String::new();
    assert!(
        wait_until(TEST_DEADLINE, || {
            ask(&nodes[0], &addr).is_ok_and(|a| {
                at = a;
                true
            })
        }),
        "svc/down was not restarted: {:?}",
        entry(&nodes[0], "svc/down")
    );
    assert!(at == "node-sv-down0" || at == "node-sv-down1", "{at}");
    // Every replica learns the new registration (this one may lag the leader).
    assert!(
        wait_until(TEST_DEADLINE, || entry(&nodes[1], "svc/down")
            .is_ok_and(|e| e.version > before.version)),
        "{:?}",
        entry(&nodes[1], "svc/down")
    );
    let after = entry(&nodes[1], "svc/down").expect("registered again");
    assert_eq!(format!("node-{}", after.node.name()), at);
    assert_eq!(activations("down").len(), 2, "{:?}", activations("down"));
    for n in nodes {
        n.stop();
    }
}

#[test]
fn a_supervised_actor_that_stops_is_restarted_on_its_own_node_until_its_policy_is_exhausted() {
    let nodes = cluster("sv-stop");
    let spec = SpawnSpec::new()
        .placement(Placement::Node("sv-stop1".into()))
        .name("svc/stop")
        .restart(RestartPolicy::OnFailure {
            max_restarts: 2,
            within: Duration::from_secs(600),
            backoff: Duration::from_millis(20),
        });
    let addr = spawn(&nodes[0], spec, "stop").expect("spawn");
    let mut version = entry(&nodes[0], "svc/stop").expect("registered").version;
    for restart in 1..=2 {
        crash(&nodes[0], &addr);
        // Restarted on the same (live) node, under a new registration.
        assert!(
            wait_until(TEST_DEADLINE, || entry(&nodes[2], "svc/stop")
                .is_ok_and(|e| e.version > version && e.node.name() == "sv-stop1")),
            "restart {restart} did not happen: {:?}",
            entry(&nodes[2], "svc/stop")
        );
        version = entry(&nodes[2], "svc/stop").expect("registered").version;
        assert_eq!(ask(&nodes[0], &addr).expect("answers"), "node-sv-stop1");
    }
    assert_eq!(activations("stop"), ["node-sv-stop1"; 3]);
    // The third failure exhausts the policy: a typed terminal state on every node.
    crash(&nodes[0], &addr);
    for n in &nodes {
        assert!(
            wait_until(TEST_DEADLINE, || matches!(
                entry(n, "svc/stop"),
                Err(RegistryError::RestartsExhausted { restarts: 2, .. })
            )),
            "{:?}",
            entry(n, "svc/stop")
        );
    }
    assert_eq!(activations("stop").len(), 3);
    // Unregistering ends the terminal state; the name may be spawned anew.
    nodes[0]
        .run(|s| async move { s.unregister_name("svc/stop").await })
        .expect("node thread")
        .expect("unregistered");
    assert!(matches!(
        entry(&nodes[0], "svc/stop"),
        Err(RegistryError::NotFound(_))
    ));
    for n in nodes {
        n.stop();
    }
}

#[test]
fn a_partitioned_node_stops_its_supervised_actor_before_the_majority_restarts_it() {
    let nodes = cluster("sv-part");
    let spec = SpawnSpec::new()
        .placement(Placement::Node("sv-part2".into()))
        .name("svc/part")
        .restart(RestartPolicy::Always);
    let addr = spawn(&nodes[0], spec, "part").expect("spawn");
    assert_eq!(ask(&nodes[0], &addr).expect("answers"), "node-sv-part2");
    let before = entry(&nodes[0], "svc/part").expect("registered").version;

    let refs: Vec<&TestNode> = nodes.iter().collect();
    partition(&refs, &[0, 1], &[2]);
    // The majority restarts it on one of its own nodes...
    assert!(
        wait_until(TEST_DEADLINE, || entry(&nodes[0], "svc/part")
            .is_ok_and(|e| e.version > before && e.node.name() != "sv-part2")),
        "not restarted on the majority side: {:?}",
        entry(&nodes[0], "svc/part")
    );
    assert!(ask(&nodes[0], &addr).is_ok_and(|at| at != "node-sv-part2"));
    // ...and the minority side stopped its activation first: never two at once.
    assert!(
        wait_until(TEST_DEADLINE, || overlap("part").1 >= 1),
        "the minority side's actor kept running; it sees {:?}, registry {:?}, entry {:?}",
        nodes[2]
            .system()
            .members()
            .iter()
            .map(|m| (m.id.name().to_owned(), m.state))
            .collect::<Vec<_>>(),
        nodes[2].run(|s| async move { s.registry_status().await }),
        entry(&nodes[2], "svc/part")
    );
    assert_eq!(
        overlap("part").0,
        1,
        "{:?}",
        LEDGER.lock().map(|l| l.clone())
    );

    heal(&refs);
    // After the heal the name still means the majority's activation, the only one alive.
    assert!(
        wait_until(TEST_DEADLINE, || entry(&nodes[2], "svc/part")
            .is_ok_and(|e| e.version > before && e.node.name() != "sv-part2")),
        "{:?}",
        entry(&nodes[2], "svc/part")
    );
    assert_eq!(overlap("part").0, 1);
    assert_eq!(activations("part").len(), 2, "{:?}", activations("part"));
    for n in nodes {
        n.stop();
    }
}

#[test]
fn a_restart_policy_needs_a_name() {
    let nodes = cluster("sv-name");
    match spawn(
        &nodes[0],
        SpawnSpec::new().restart(RestartPolicy::Always),
        "nameless",
    ) {
        Err(SpawnError::RestartNeedsName) => {}
        other => panic!(
            "expected RestartNeedsName, got {:?}",
            other.map(|a| a.node())
        ),
    }
    assert!(activations("nameless").is_empty());
    for n in nodes {
        n.stop();
    }
}
