//! Virtual actors in in-process clusters: one activation per identity however many nodes
//! call it at once; state that survives passivation (idle, or told to), deletion, and the
//! crash of the hosting node (with a store the nodes share); handles built without a round
//! trip.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use actix::prelude::*;
use actix_cluster::prelude::*;
use actix_cluster::state::{MemoryStore, PersistentState, StateStore};
use actix_cluster::virtual_actor::{Checkpoint, VirtualActor, VirtualError};
use actix_cluster::{RegistryConfig, RegistryError};
use actix_cluster_testkit::{TEST_DEADLINE, TestNode, plaintext};
use actix_cluster_tests::{heal, partition, wait_until};
use serde::{Deserialize, Serialize};

/// Activations started per identity, across every node of the process.
fn activations() -> &'static Mutex<HashMap<String, usize>> {
    static A: OnceLock<Mutex<HashMap<String, usize>>> = OnceLock::new();
    A.get_or_init(Mutex::default)
}

fn count_activation(id: &str) {
    *activations()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .entry(id.to_owned())
        .or_default() += 1;
}

fn activations_of(id: &str) -> usize {
    activations()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(id)
        .copied()
        .unwrap_or(0)
}

#[derive(Default, Serialize, Deserialize, Debug, PartialEq)]
struct Score {
    points: u64,
}

impl PersistentState for Score {}

/// Saves after every message: an acknowledged `Add` is in the store.
struct Player {
    score: Score,
    checkpoint: Checkpoint<Score>,
}

impl Actor for Player {
    type Context = Context<Self>;
}

#[derive(Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<u64, String>")]
struct Add(u64);

impl Handler<Add> for Player {
    type Result = ResponseFuture<Result<u64, String>>;
    fn handle(&mut self, m: Add, _: &mut Context<Self>) -> Self::Result {
        self.score.points += m.0;
        let points = self.score.points;
        let saved = self.checkpoint.save(&self.score);
        Box::pin(async move {
            saved.await.map_err(|e| e.to_string())?;
            Ok(points)
        })
    }
}

#[derive(Clone, Message, Serialize, Deserialize)]
#[rtype(result = "(u64, String)")]
struct Get;

impl Handler<Get> for Player {
    type Result = MessageResult<Get>;
    fn handle(&mut self, _: Get, _: &mut Context<Self>) -> Self::Result {
        let node = std::thread::current().name().unwrap_or("?").to_owned();
        MessageResult((self.score.points, node))
    }
}

impl DistributedActor for Player {
    const NAME: &'static str = "tests.player";
    fn messages(m: &mut Messages<Self>) {
        m.handle::<Add>("add").handle::<Get>("get");
    }
}

impl VirtualActor for Player {
    type State = Score;
    fn activate(id: &str, score: Score, checkpoint: Checkpoint<Score>) -> Self {
        count_activation(id);
        Player { score, checkpoint }
    }
}

/// Saves nothing itself: its state is saved when it passivates, which it does after 300 ms
/// without a message.
struct Napper {
    score: Score,
}

impl Actor for Napper {
    type Context = Context<Self>;
}

impl Handler<Add> for Napper {
    type Result = Result<u64, String>;
    fn handle(&mut self, m: Add, _: &mut Context<Self>) -> Self::Result {
        self.score.points += m.0;
        Ok(self.score.points)
    }
}

impl DistributedActor for Napper {
    const NAME: &'static str = "tests.napper";
    fn messages(m: &mut Messages<Self>) {
        m.handle::<Add>("add");
    }
}

static NAPPER_PASSIVATIONS: AtomicUsize = AtomicUsize::new(0);

impl VirtualActor for Napper {
    type State = Score;
    fn activate(id: &str, score: Score, _: Checkpoint<Score>) -> Self {
        count_activation(id);
        Napper { score }
    }
    fn passivating(&mut self) -> Option<Score> {
        NAPPER_PASSIVATIONS.fetch_add(1, Ordering::SeqCst);
        Some(std::mem::take(&mut self.score))
    }
    fn idle_timeout() -> Duration {
        Duration::from_millis(300)
    }
}

/// A plain actor that is handed a player's handle inside a message and calls it.
struct Referee;

impl Actor for Referee {
    type Context = Context<Self>;
}

#[derive(Message, Serialize, Deserialize)]
#[rtype(result = "Result<u64, String>")]
struct Award {
    player: actix_cluster::virtual_actor::VirtualAddr<Player>,
    points: u64,
}

impl Handler<Award> for Referee {
    type Result = ResponseFuture<Result<u64, String>>;
    fn handle(&mut self, m: Award, _: &mut Context<Self>) -> Self::Result {
        Box::pin(async move {
            m.player
                .send(Add(m.points))
                .await
                .map_err(|e| e.to_string())?
        })
    }
}

impl DistributedActor for Referee {
    const NAME: &'static str = "tests.referee";
    fn messages(m: &mut Messages<Self>) {
        m.handle::<Award>("award");
    }
}

/// Records its reminders' ticks.
struct Alarm;

impl Actor for Alarm {
    type Context = Context<Self>;
}

impl Handler<Add> for Alarm {
    type Result = Result<u64, String>;
    fn handle(&mut self, _: Add, _: &mut Context<Self>) -> Self::Result {
        Ok(0)
    }
}

impl DistributedActor for Alarm {
    const NAME: &'static str = "tests.alarm";
    fn messages(m: &mut Messages<Self>) {
        m.handle::<Add>("add");
    }
}

/// Reminder ticks delivered, by reminder name, across the process.
fn ticks() -> &'static Mutex<HashMap<String, usize>> {
    static T: OnceLock<Mutex<HashMap<String, usize>>> = OnceLock::new();
    T.get_or_init(Mutex::default)
}

fn ticks_of(name: &str) -> usize {
    ticks()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(name)
        .copied()
        .unwrap_or(0)
}

impl VirtualActor for Alarm {
    type State = Score;
    fn activate(id: &str, _: Score, _: Checkpoint<Score>) -> Self {
        count_activation(id);
        Alarm
    }
    fn on_reminder(&mut self, name: &str, _: &mut Context<Self>) {
        *ticks()
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(name.to_owned())
            .or_default() += 1;
    }
}

/// Saves every third message (`Checkpoint::save_every`).
struct Batcher {
    score: Score,
    checkpoint: Checkpoint<Score>,
}

impl Actor for Batcher {
    type Context = Context<Self>;
}

impl Handler<Add> for Batcher {
    type Result = ResponseFuture<Result<u64, String>>;
    fn handle(&mut self, m: Add, _: &mut Context<Self>) -> Self::Result {
        self.score.points += m.0;
        let points = self.score.points;
        let saved = self.checkpoint.save_every(3, &self.score);
        Box::pin(async move {
            if let Some(saved) = saved {
                saved.await.map_err(|e| e.to_string())?;
            }
            Ok(points)
        })
    }
}

impl DistributedActor for Batcher {
    const NAME: &'static str = "tests.batcher";
    fn messages(m: &mut Messages<Self>) {
        m.handle::<Add>("add");
    }
}

impl VirtualActor for Batcher {
    type State = Score;
    fn activate(_: &str, score: Score, checkpoint: Checkpoint<Score>) -> Self {
        Batcher { score, checkpoint }
    }
}

/// Saved when it passivates; all activations on `va-lru1`.
struct Keeper {
    score: Score,
}

impl Actor for Keeper {
    type Context = Context<Self>;
}

impl Handler<Add> for Keeper {
    type Result = Result<u64, String>;
    fn handle(&mut self, m: Add, _: &mut Context<Self>) -> Self::Result {
        self.score.points += m.0;
        Ok(self.score.points)
    }
}

impl DistributedActor for Keeper {
    const NAME: &'static str = "tests.keeper";
    fn messages(m: &mut Messages<Self>) {
        m.handle::<Add>("add");
    }
}

impl VirtualActor for Keeper {
    type State = Score;
    fn activate(id: &str, score: Score, _: Checkpoint<Score>) -> Self {
        count_activation(id);
        Keeper { score }
    }
    fn passivating(&mut self) -> Option<Score> {
        Some(std::mem::take(&mut self.score))
    }
    fn activation_placement() -> actix_cluster::placement::Placement {
        actix_cluster::placement::Placement::Node("va-lru1".into())
    }
}

/// Three nodes `<prefix>0..2` hosting both types and sharing `store`, ready when every node
/// sees all three Up and the registry has a leader and three voters.
fn cluster(prefix: &str, store: &MemoryStore) -> Vec<TestNode> {
    cluster_with(prefix, store, None)
}

/// [`cluster`], each node hosting at most `limit` activations.
fn cluster_with(prefix: &str, store: &MemoryStore, limit: Option<usize>) -> Vec<TestNode> {
    let start = |name: String, seed: Option<String>| {
        let mut config = plaintext(&name).registry(RegistryConfig::new().voters(3));
        if let Some(seed) = seed {
            config = config.seed_nodes([seed]);
        }
        let store = store.clone();
        TestNode::start(prefix, config.build().expect("config"), move |b| {
            let b = b
                .register_virtual::<Player>()
                .register_virtual::<Napper>()
                .register_virtual::<Keeper>()
                .register_virtual::<Batcher>()
                .register_virtual::<Alarm>()
                .state_store(store);
            match limit {
                Some(l) => b.virtual_activation_limit(l),
                None => b,
            }
        })
        .expect("start")
    };
    let first = start(format!("{prefix}0"), None);
    let seed = first.system().local_addr().to_string();
    let mut nodes = vec![first];
    for i in 1..3 {
        nodes.push(start(format!("{prefix}{i}"), Some(seed.clone())));
    }
    assert!(
        wait_until(TEST_DEADLINE, || nodes.iter().all(|n| {
            let members = n.system().members();
            members.len() == 3
                && members.iter().all(|m| {
                    m.state == MemberState::Up && m.capabilities.iter().any(|c| c == Player::NAME)
                })
                && n.run(|s| async move { s.registry_status().await })
                    .ok()
                    .and_then(Result::ok)
                    .is_some_and(|s| s.leader.is_some() && s.voters.len() == 3)
        })),
        "cluster {prefix} not ready"
    );
    nodes
}

fn add<A>(node: &TestNode, id: &str, n: u64) -> Result<u64, VirtualError>
where
    A: VirtualActor + Handler<Add>,
    A::Context: actix::dev::ToEnvelope<A, Add>,
{
    let id = id.to_owned();
    node.run(move |s| async move { s.get::<A>(id).send(Add(n)).await })
        .expect("node thread")
        .map(|r| r.expect("saved"))
}

/// Like [`add`], with the actor's own answer (an error when its save was refused).
fn try_add(node: &TestNode, id: &str, n: u64) -> Result<Result<u64, String>, VirtualError> {
    let id = id.to_owned();
    node.run(move |s| async move { s.get::<Player>(id).send(Add(n)).await })
        .expect("node thread")
}

fn host_of(nodes: &[TestNode], id: &str) -> usize {
    let (_, host) = get(&nodes[0], id).expect("answers");
    nodes
        .iter()
        .position(|n| host == format!("node-{}", n.system().node_id().name()))
        .expect("hosted by a node of the cluster")
}

fn get(node: &TestNode, id: &str) -> Result<(u64, String), VirtualError> {
    let id = id.to_owned();
    node.run(move |s| async move { s.get::<Player>(id).send(Get).await })
        .expect("node thread")
}

fn bound(node: &TestNode, name: &str) -> bool {
    let name = name.to_owned();
    !matches!(
        node.run(move |s| async move { s.lookup_entry(&name).await })
            .expect("node thread"),
        Err(RegistryError::NotFound(_))
    )
}

#[test]
fn one_activation_however_many_nodes_call_an_identity_at_once() {
    let nodes = cluster("va-one", &MemoryStore::new());
    let id = "va-one/42";
    std::thread::scope(|scope| {
        for node in &nodes {
            scope.spawn(move || {
                for _ in 0..10 {
                    add::<Player>(node, id, 1).expect("added");
                }
            });
        }
    });
    assert_eq!(get(&nodes[0], id).expect("answers").0, 30);
    assert_eq!(activations_of(id), 1, "one activation for the identity");
    // A handle is built without a round trip, and a second identity is another actor.
    assert_eq!(add::<Player>(&nodes[2], "va-one/43", 5).expect("added"), 5);
    assert_eq!(get(&nodes[1], id).expect("answers").0, 30);
    for n in nodes {
        n.stop();
    }
}

#[test]
fn an_idle_activation_passivates_and_the_next_message_finds_its_state() {
    let nodes = cluster("va-idle", &MemoryStore::new());
    let id = "va-idle/7";
    let name = "virtual/tests.napper/va-idle/7";
    let hosted = || -> usize { nodes.iter().map(|n| n.system().local_actor_count()).sum() };
    let before = hosted();
    assert_eq!(add::<Napper>(&nodes[0], id, 5).expect("added"), 5);
    assert_eq!(add::<Napper>(&nodes[1], id, 2).expect("added"), 7);
    assert_eq!(activations_of(id), 1);
    assert_eq!(hosted(), before + 1);
    // Idle for 300 ms: it saves, stops and releases its name, and its node forgets it.
    assert!(
        wait_until(TEST_DEADLINE, || !bound(&nodes[2], name)),
        "the idle activation was not passivated"
    );
    assert!(
        wait_until(TEST_DEADLINE, || hosted() == before),
        "the passivated activation is still in its node's actor table"
    );
    assert!(NAPPER_PASSIVATIONS.load(Ordering::SeqCst) >= 1);
    assert_eq!(add::<Napper>(&nodes[2], id, 1).expect("added"), 8);
    assert_eq!(
        activations_of(id),
        2,
        "activated again, from its saved state"
    );
    for n in nodes {
        n.stop();
    }
}

#[test]
fn deactivate_keeps_the_state_and_delete_removes_it() {
    let nodes = cluster("va-del", &MemoryStore::new());
    let id = "va-del/1";
    assert_eq!(add::<Player>(&nodes[0], id, 3).expect("added"), 3);
    let deactivated = {
        let id = id.to_owned();
        nodes[1]
            .run(move |s| async move { s.get::<Player>(id).deactivate().await })
            .expect("node thread")
            .expect("deactivated")
    };
    assert!(deactivated);
    assert_eq!(add::<Player>(&nodes[2], id, 1).expect("added"), 4);
    assert_eq!(activations_of(id), 2);
    {
        let id = id.to_owned();
        nodes[0]
            .run(move |s| async move { s.get::<Player>(id).delete().await })
            .expect("node thread")
            .expect("deleted");
    }
    assert_eq!(
        add::<Player>(&nodes[1], id, 1).expect("added"),
        1,
        "starts afresh"
    );
    for n in nodes {
        n.stop();
    }
}

#[test]
fn the_state_survives_the_crash_of_the_hosting_node() {
    let store = MemoryStore::new();
    let mut nodes = cluster("va-crash", &store);
    let id = "va-crash/9";
    assert_eq!(add::<Player>(&nodes[0], id, 4).expect("added"), 4);
    let victim = host_of(&nodes, id);
    nodes.remove(victim).kill();
    // Answering again, from a survivor, with every acknowledged update.
    let mut points = None;
    assert!(
        wait_until(TEST_DEADLINE * 2, || {
            points = add::<Player>(&nodes[0], id, 1).ok();
            points.is_some()
        }),
        "the identity did not answer again after its node died"
    );
    assert_eq!(points, Some(5));
    assert_eq!(get(&nodes[1], id).expect("answers").0, 5);
    for n in nodes {
        n.stop();
    }
}

/// The old activation is cut off with its node; the majority activates the identity anew.
/// The old one stops once its node sees no majority, and a message that reaches it before
/// that cannot save (the new activation fenced the key): nothing it is asked is acknowledged,
/// and the state is the majority's.
#[test]
fn an_activation_cut_off_by_a_partition_cannot_overwrite_its_successor() {
    let nodes = cluster("va-fence", &MemoryStore::new());
    let id = "va-fence/5";
    assert_eq!(add::<Player>(&nodes[0], id, 1).expect("added"), 1);
    let old = host_of(&nodes, id);
    // A handle on the host that has reached the activation: it keeps going there (a fresh
    // handle on the minority side would first have to confirm the name with a majority).
    let handle = nodes[old]
        .run(move |s| async move {
            let h = s.get::<Player>(id);
            h.send(Get).await.map(|_| h)
        })
        .expect("node thread")
        .expect("reached");
    let others: Vec<usize> = (0..3).filter(|&i| i != old).collect();
    let refs: Vec<&TestNode> = nodes.iter().collect();
    let hosted = nodes[old].system().local_actor_count();
    partition(&refs, &[old], &others);
    // Fencing: a node that sees no majority stops its activations.
    assert!(
        wait_until(TEST_DEADLINE, || nodes[old].system().local_actor_count()
            < hosted),
        "the cut-off activation was not stopped"
    );
    // The majority sees the host Down, releases the name and activates the identity again.
    let mut points = None;
    assert!(
        wait_until(TEST_DEADLINE * 2, || {
            points = try_add(&nodes[others[0]], id, 10).ok().and_then(Result::ok);
            points.is_some()
        }),
        "the majority did not activate the identity again"
    );
    assert_eq!(points, Some(11));
    // On the minority side the old activation has been stopped (its node sees no majority),
    // or, if a message reaches it first, cannot save: either way nothing is acknowledged.
    let refused = nodes[old]
        .run(move |_| async move { handle.send(Add(100)).await })
        .expect("node thread");
    assert!(
        match &refused {
            Ok(Err(e)) => e.contains("fenc") || e.contains("conflict") || e.contains("newer"),
            Ok(Ok(_)) => false,
            Err(e) => e.is_not_delivered(),
        },
        "{refused:?}"
    );
    heal(&refs);
    let mut state = None;
    assert!(
        wait_until(TEST_DEADLINE * 2, || {
            state = get(&nodes[others[1]], id).ok().map(|(p, _)| p);
            state == Some(11)
        }),
        "state after healing: {state:?}"
    );
    assert_eq!(activations_of(id), 2);
    for n in nodes {
        n.stop();
    }
}

#[test]
fn a_client_node_invokes_an_identity_through_a_member() {
    let nodes = cluster("va-cli", &MemoryStore::new());
    let seed = nodes[1].system().local_addr().to_string();
    let client = TestNode::start(
        "va-cli",
        plaintext("va-cli-client")
            .node_role(NodeRole::Client)
            .seed_nodes([seed])
            .build()
            .expect("config"),
        |b| b,
    )
    .expect("start");
    assert!(
        client
            .run(|s| async move { s.wait_for_peers(3, TEST_DEADLINE).await })
            .expect("client answers"),
        "the client did not reach every member"
    );
    let id = "va-cli/3";
    assert_eq!(add::<Player>(&client, id, 2).expect("added"), 2);
    assert_eq!(add::<Player>(&client, id, 2).expect("added"), 4);
    assert_eq!(get(&nodes[0], id).expect("answers").0, 4);
    assert_eq!(activations_of(id), 1);
    client.stop();
    for n in nodes {
        n.stop();
    }
}

#[test]
fn at_the_activation_limit_the_least_recently_used_activation_makes_room() {
    let nodes = cluster_with("va-lru", &MemoryStore::new(), Some(2));
    let keeper = |id: &str| format!("virtual/tests.keeper/{id}");
    assert_eq!(add::<Keeper>(&nodes[0], "lru/a", 1).expect("added"), 1);
    std::thread::sleep(Duration::from_millis(30));
    assert_eq!(add::<Keeper>(&nodes[0], "lru/b", 2).expect("added"), 2);
    std::thread::sleep(Duration::from_millis(30));
    // `a` is used again: `b` is now the least recently used.
    assert_eq!(add::<Keeper>(&nodes[2], "lru/a", 1).expect("added"), 2);
    std::thread::sleep(Duration::from_millis(30));
    assert_eq!(add::<Keeper>(&nodes[1], "lru/c", 3).expect("added"), 3);
    assert!(
        wait_until(TEST_DEADLINE, || !bound(&nodes[0], &keeper("lru/b"))),
        "the least recently used activation was not passivated"
    );
    assert!(bound(&nodes[0], &keeper("lru/a")));
    // Passivated with its state: it comes back where it was.
    assert_eq!(add::<Keeper>(&nodes[0], "lru/b", 1).expect("added"), 3);
    assert_eq!(activations_of("lru/b"), 2);
    assert_eq!(activations_of("lru/a"), 1);
    for n in nodes {
        n.stop();
    }
}

#[test]
fn save_every_saves_on_every_nth_message() {
    let store = MemoryStore::new();
    let nodes = cluster("va-every", &store);
    let saved = || {
        let store = store.clone();
        nodes[0]
            .run(move |_| async move { store.get("tests.batcher/b").await })
            .expect("node thread")
            .expect("read")
            .map(|s| {
                actix_cluster::state::decode_state::<Score>("tests.batcher/b", &s.data)
                    .expect("decodes")
                    .points
            })
    };
    for i in 1..=5 {
        assert_eq!(add::<Batcher>(&nodes[1], "b", 1).expect("added"), i);
        // Activation wrote the initial state; the 3rd message saved 3.
        let want = if i < 3 { 0 } else { 3 };
        assert_eq!(saved(), Some(want), "after message {i}");
    }
    for n in nodes {
        n.stop();
    }
}

#[test]
fn a_handle_travels_in_a_message_and_works_on_the_receiving_node() {
    let nodes = cluster("va-ser", &MemoryStore::new());
    nodes[2]
        .run(|s| async move {
            let referee = s.start_actor(Referee);
            s.register_local_name("referee", &referee)
        })
        .expect("node thread")
        .expect("named");
    let awarded = nodes[0]
        .run(|s| async move {
            let referee = s.actor_on::<Referee>("va-ser2", "referee").await?;
            let player = s.get::<Player>("va-ser/7");
            referee.send(Award { player, points: 5 }).await
        })
        .expect("node thread")
        .expect("sent");
    assert_eq!(awarded, Ok(5));
    assert_eq!(get(&nodes[1], "va-ser/7").expect("answers").0, 5);
    // Outside a node, a handle does not decode.
    let wire = serde_json::to_string(&serde_json::json!({"actor_type": "tests.player", "id": "x"}))
        .expect("json");
    assert!(
        serde_json::from_str::<actix_cluster::virtual_actor::VirtualAddr<Player>>(&wire).is_err()
    );
    for n in nodes {
        n.stop();
    }
}

#[test]
fn a_reminder_wakes_its_passivated_identity_once_per_tick_until_dropped() {
    let nodes = cluster("va-rem", &MemoryStore::new());
    let id = "va-rem/1";
    let (set, deactivated) = {
        let id = id.to_owned();
        nodes[1]
            .run(move |s| async move {
                let alarm = s.get::<Alarm>(id);
                alarm.send(Add(0)).await.map_err(|e| e.to_string())??;
                alarm
                    .set_reminder("va-rem-tick", Duration::from_millis(500))
                    .await
                    .map_err(|e| e.to_string())?;
                let deactivated = alarm.deactivate().await.map_err(|e| e.to_string())?;
                Ok::<_, String>((alarm.reminders(), deactivated))
            })
            .expect("node thread")
            .expect("set")
    };
    assert!(deactivated);
    assert_eq!(
        set,
        vec![("va-rem-tick".to_owned(), Duration::from_millis(500))]
    );
    let started = std::time::Instant::now();
    // The first tick activates it again: it was passivated.
    assert!(
        wait_until(TEST_DEADLINE, || ticks_of("va-rem-tick") >= 1),
        "the reminder did not fire"
    );
    assert_eq!(activations_of(id), 2, "the reminder woke the identity");
    assert!(wait_until(TEST_DEADLINE, || ticks_of("va-rem-tick") >= 4));
    // Once per tick, whichever node leads: never more than the ticks that fell due.
    let elapsed = started.elapsed().as_millis() as usize;
    assert!(
        ticks_of("va-rem-tick") <= elapsed / 500 + 2,
        "{} ticks in {elapsed} ms",
        ticks_of("va-rem-tick")
    );
    {
        let id = id.to_owned();
        nodes[2]
            .run(move |s| async move { s.get::<Alarm>(id).drop_reminder("va-rem-tick").await })
            .expect("node thread")
            .expect("dropped");
    }
    std::thread::sleep(Duration::from_millis(600));
    let after_drop = ticks_of("va-rem-tick");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        ticks_of("va-rem-tick"),
        after_drop,
        "fired after it was dropped"
    );
    for n in nodes {
        n.stop();
    }
}

#[test]
fn an_unregistered_type_is_a_typed_error() {
    let nodes = cluster("va-err", &MemoryStore::new());
    struct Stranger;
    impl Actor for Stranger {
        type Context = Context<Self>;
    }
    impl Handler<Add> for Stranger {
        type Result = Result<u64, String>;
        fn handle(&mut self, _: Add, _: &mut Context<Self>) -> Self::Result {
            Ok(0)
        }
    }
    impl DistributedActor for Stranger {
        const NAME: &'static str = "tests.stranger";
        fn messages(m: &mut Messages<Self>) {
            m.handle::<Add>("add");
        }
    }
    impl VirtualActor for Stranger {
        type State = Score;
        fn activate(_: &str, _: Score, _: Checkpoint<Score>) -> Self {
            Stranger
        }
    }
    let err = add::<Stranger>(&nodes[0], "x", 1).expect_err("nobody hosts it");
    assert!(matches!(err, VirtualError::Placement(_)), "{err:?}");
    assert!(err.is_not_delivered());
    for n in nodes {
        n.stop();
    }
}
