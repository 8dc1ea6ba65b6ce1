//! Actors, messages and helpers shared by the cross-node tests.

use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_cluster::prelude::*;
use serde::{Deserialize, Serialize};

pub mod faults;
pub mod logs;
pub mod raw;

/// Polls `cond` until it holds or `deadline` passes; returns whether it held.
///
/// For conditions only observable by polling (counters, member lists) from a test thread.
pub fn wait_until(deadline: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + deadline;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Names of the other members `system` is connected to, sorted.
pub fn up_peers(system: &ClusterSystem) -> Vec<String> {
    let me = system.node_id().name().to_owned();
    let mut names = system
        .members()
        .into_iter()
        .filter(|m| m.connected && m.id.name() != me)
        .map(|m| m.id.name().to_owned())
        .collect::<Vec<_>>();
    names.sort();
    names
}

/// A counter, the test suite's work horse.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Counter {
    /// Current value.
    pub n: u64,
}

impl Actor for Counter {
    type Context = Context<Self>;
}

/// Adds to the counter and returns the new value.
#[derive(Debug, Message, Serialize, Deserialize)]
#[rtype(result = "u64")]
pub struct Add(pub u64);

/// Returns the current value.
#[derive(Debug, Message, Serialize, Deserialize)]
#[rtype(result = "u64")]
pub struct Get;

/// Sleeps in the actor before answering, to make it slow.
#[derive(Debug, Message, Serialize, Deserialize)]
#[rtype(result = "()")]
pub struct Sleep(pub Duration);

/// Panics in the handler.
#[derive(Debug, Message, Serialize, Deserialize)]
#[rtype(result = "u64")]
pub struct Explode;

/// Records the sequence number; replies with every number seen so far, in order.
#[derive(Debug, Message, Serialize, Deserialize)]
#[rtype(result = "()")]
pub struct Seq(pub u64);

/// Returns the recorded sequence numbers.
#[derive(Debug, Message, Serialize, Deserialize)]
#[rtype(result = "Vec<u64>")]
pub struct Seen;

/// A message the `Counter` handles locally but never declared for remote use.
#[derive(Debug, Message, Serialize, Deserialize)]
#[rtype(result = "u64")]
pub struct Undeclared;

impl Handler<Add> for Counter {
    type Result = u64;
    fn handle(&mut self, m: Add, _: &mut Context<Self>) -> u64 {
        self.n += m.0;
        self.n
    }
}

impl Handler<Get> for Counter {
    type Result = u64;
    fn handle(&mut self, _: Get, _: &mut Context<Self>) -> u64 {
        self.n
    }
}

impl Handler<Sleep> for Counter {
    type Result = ();
    fn handle(&mut self, m: Sleep, _: &mut Context<Self>) {
        // Deliberately blocks the actor's thread: the point is a slow consumer.
        std::thread::sleep(m.0);
    }
}

impl Handler<Explode> for Counter {
    type Result = u64;
    fn handle(&mut self, _: Explode, _: &mut Context<Self>) -> u64 {
        panic!("handler panicked on purpose");
    }
}

impl Handler<Undeclared> for Counter {
    type Result = u64;
    fn handle(&mut self, _: Undeclared, _: &mut Context<Self>) -> u64 {
        0
    }
}

impl DistributedActor for Counter {
    const NAME: &'static str = "tests.counter";
    fn messages(m: &mut Messages<Self>) {
        m.handle::<Add>("add")
            .handle::<Get>("get")
            .handle::<Sleep>("sleep")
            .handle::<Explode>("explode")
            .handle::<Delay>("delay")
            .handle::<Blob>("blob")
            .handle::<WaitForGate>("wait-for-gate")
            .handle::<AddUnencodable>("add-unencodable");
    }
}

/// Adds to the counter, like [`Add`], but answers with a reply that cannot be serialized: the
/// handler runs and only the reply fails.
#[derive(Debug, Message, Serialize, Deserialize)]
#[rtype(result = "Unencodable")]
pub struct AddUnencodable(pub u64);

/// A reply whose `Serialize` always fails.
#[derive(Debug, Deserialize)]
pub struct Unencodable;

impl Serialize for Unencodable {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom(
            "this reply refuses to be encoded",
        ))
    }
}

impl Handler<AddUnencodable> for Counter {
    type Result = MessageResult<AddUnencodable>;
    fn handle(&mut self, m: AddUnencodable, _: &mut Context<Self>) -> Self::Result {
        self.n += m.0;
        MessageResult(Unencodable)
    }
}

/// The same wire type as [`Counter`] from a build that disagrees on the reply of `"add"`: it
/// expects text where [`Counter`] answers a number, so the reply cannot be decoded.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct MisreadCounter;

impl Actor for MisreadCounter {
    type Context = Context<Self>;
}

/// [`Add`] on the wire, with a reply type that does not match [`Counter`]'s.
#[derive(Debug, Message, Serialize, Deserialize)]
#[rtype(result = "String")]
pub struct AddReadAsText(pub u64);

impl Handler<AddReadAsText> for MisreadCounter {
    type Result = String;
    fn handle(&mut self, m: AddReadAsText, _: &mut Context<Self>) -> String {
        m.0.to_string()
    }
}

impl DistributedActor for MisreadCounter {
    const NAME: &'static str = Counter::NAME;
    fn messages(m: &mut Messages<Self>) {
        m.handle::<AddReadAsText>("add");
    }
}

/// Records `Seq` numbers in arrival order.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Recorder {
    /// Numbers seen.
    pub seen: Vec<u64>,
}

impl Actor for Recorder {
    type Context = Context<Self>;
}

impl Handler<Seq> for Recorder {
    type Result = ();
    fn handle(&mut self, m: Seq, _: &mut Context<Self>) {
        self.seen.push(m.0);
    }
}

impl Handler<Seen> for Recorder {
    type Result = MessageResult<Seen>;
    fn handle(&mut self, _: Seen, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.seen.clone())
    }
}

impl DistributedActor for Recorder {
    const NAME: &'static str = "tests.recorder";
    fn messages(m: &mut Messages<Self>) {
        m.handle::<Seq>("seq").handle::<Seen>("seen");
    }
}

/// Answers after an asynchronous delay. Unlike [`Sleep`] it leaves the actor's thread free,
/// so the node keeps running (and can be killed) while the request is in flight.
#[derive(Debug, Message, Serialize, Deserialize)]
#[rtype(result = "()")]
pub struct Delay(pub Duration);

/// Counts as one event (adds one to the counter) and returns the new value; the bytes are
/// ballast that make the message as large as a test needs.
#[derive(Debug, Message, Serialize, Deserialize)]
#[rtype(result = "u64")]
pub struct Blob(pub Vec<u8>);

impl Handler<Delay> for Counter {
    type Result = ResponseFuture<()>;
    fn handle(&mut self, m: Delay, _: &mut Context<Self>) -> Self::Result {
        Box::pin(tokio::time::sleep(m.0))
    }
}

impl Handler<Blob> for Counter {
    type Result = u64;
    fn handle(&mut self, _: Blob, _: &mut Context<Self>) -> u64 {
        self.n += 1;
        self.n
    }
}

/// The same wire type as [`Counter`] (same `NAME`) from a newer build that also declares
/// [`Undeclared`]: what a node running that build sends, an older `Counter` does not know.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct NewerCounter {
    /// Current value.
    pub n: u64,
}

impl Actor for NewerCounter {
    type Context = Context<Self>;
}

impl Handler<Add> for NewerCounter {
    type Result = u64;
    fn handle(&mut self, m: Add, _: &mut Context<Self>) -> u64 {
        self.n += m.0;
        self.n
    }
}

impl Handler<Undeclared> for NewerCounter {
    type Result = u64;
    fn handle(&mut self, _: Undeclared, _: &mut Context<Self>) -> u64 {
        0
    }
}

impl DistributedActor for NewerCounter {
    const NAME: &'static str = Counter::NAME;
    fn messages(m: &mut Messages<Self>) {
        m.handle::<Add>("add").handle::<Undeclared>("undeclared");
    }
}

/// Forwards work to a [`Counter`] whose address arrives inside the message, wherever that
/// counter lives.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Relay;

impl Actor for Relay {
    type Context = Context<Self>;
}

/// Asks the relay to add `add` to the counter at `target`.
#[derive(Debug, Message, Serialize, Deserialize)]
#[rtype(result = "Result<Relayed, String>")]
pub struct RelayAdd {
    /// The counter, typically on a node the relay's caller is not.
    pub target: RemoteAddr<Counter>,
    /// Amount to add.
    pub add: u64,
}

/// What the relay saw when it forwarded a [`RelayAdd`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Relayed {
    /// The counter's reply to the forwarded `Add`.
    pub total: u64,
    /// Whether the relay's node found the counter to be one of its own actors.
    pub delivered_locally: bool,
}

impl Handler<RelayAdd> for Relay {
    type Result = ResponseFuture<Result<Relayed, String>>;
    fn handle(&mut self, m: RelayAdd, _: &mut Context<Self>) -> Self::Result {
        let delivered_locally = m.target.local_addr().is_some();
        Box::pin(async move {
            let total = m.target.send(Add(m.add)).await.map_err(|e| e.to_string())?;
            Ok(Relayed {
                total,
                delivered_locally,
            })
        })
    }
}

impl DistributedActor for Relay {
    const NAME: &'static str = "tests.relay";
    fn messages(m: &mut Messages<Self>) {
        m.handle::<RelayAdd>("relay-add");
    }
}

/// Blocks the actor's thread until the test opens the gate of this name with [`open_gate`]
/// (or [`actix_cluster_testkit::TEST_DEADLINE`] passes): a consumer that is stalled for
/// exactly as long as a test needs, with no guessing at durations.
///
/// The gates are process-wide, which works because test nodes share the test's process; use
/// a name no other test uses.
#[derive(Debug, Message, Serialize, Deserialize)]
#[rtype(result = "()")]
pub struct WaitForGate(pub String);

static GATES: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
static GATE_OPENED: std::sync::Condvar = std::sync::Condvar::new();

/// Opens the gate `name`: every actor waiting on it, now or later, proceeds.
pub fn open_gate(name: &str) {
    let mut open = GATES.lock().unwrap_or_else(|e| e.into_inner());
    open.push(name.to_owned());
    GATE_OPENED.notify_all();
}

impl Handler<WaitForGate> for Counter {
    type Result = ();
    fn handle(&mut self, m: WaitForGate, _: &mut Context<Self>) {
        let open = GATES.lock().unwrap_or_else(|e| e.into_inner());
        // Deliberately blocks the actor's thread, like `Sleep`, but until told to stop.
        let _ = GATE_OPENED.wait_timeout_while(open, actix_cluster_testkit::TEST_DEADLINE, |o| {
            !o.contains(&m.0)
        });
    }
}

/// An actor that stops itself on [`Halt`]: the target of the watch tests.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Mortal;

impl Actor for Mortal {
    type Context = Context<Self>;
}

/// Makes a [`Mortal`] stop itself after answering.
#[derive(Debug, Message, Serialize, Deserialize)]
#[rtype(result = "()")]
pub struct Halt;

/// Answers while the [`Mortal`] runs; fails once it stopped.
#[derive(Debug, Message, Serialize, Deserialize)]
#[rtype(result = "()")]
pub struct Ping;

impl Handler<Halt> for Mortal {
    type Result = ();
    fn handle(&mut self, _: Halt, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

impl Handler<Ping> for Mortal {
    type Result = ();
    fn handle(&mut self, _: Ping, _: &mut Context<Self>) {}
}

impl DistributedActor for Mortal {
    const NAME: &'static str = "tests.mortal";
    fn messages(m: &mut Messages<Self>) {
        m.handle::<Halt>("halt").handle::<Ping>("ping");
    }
}

/// Partitions `nodes[a]` from `nodes[b]` (indexes into `nodes`): every node of each side
/// blocks every node of the other, so no connection between the sides survives or forms
/// until [`heal`]. Connections within each side are untouched.
pub fn partition(nodes: &[&actix_cluster_testkit::TestNode], a: &[usize], b: &[usize]) {
    for (from, to) in [(a, b), (b, a)] {
        for &i in from {
            let faults = nodes[i].system().faults();
            for &j in to {
                faults.block(nodes[j].system().node_id().name());
            }
        }
    }
}

/// Lifts every block on every node of `nodes`; the nodes reconnect on their own.
pub fn heal(nodes: &[&actix_cluster_testkit::TestNode]) {
    for node in nodes {
        node.system().faults().heal();
    }
}

/// A centralized cluster of plaintext nodes with no actor types registered: one master named
/// `master`, then `workers` workers `w0..` that know it as their master. Returns them in that
/// order, started but not waited on.
pub fn centralized(cluster: &str, workers: usize) -> Vec<actix_cluster_testkit::TestNode> {
    use actix_cluster::{Architecture, NodeRole};
    use actix_cluster_testkit::{TestNode, plaintext};
    let start = |config: actix_cluster::ClusterConfigBuilder| {
        let config = config.architecture(Architecture::Centralized);
        TestNode::start(cluster, config.build().expect("config"), |b| b).expect("start")
    };
    let master = start(plaintext("master").node_role(NodeRole::Master));
    let addr = master.system().local_addr().to_string();
    let mut nodes = vec![master];
    for i in 0..workers {
        nodes.push(start(
            plaintext(&format!("w{i}")).master_nodes([addr.clone()]),
        ));
    }
    nodes
}

/// Three nodes `<prefix>0..2` with a registry of three voters, each set up by `setup` (which
/// registers actor types); returned once every node sees all three Up with capability
/// `capability` and the registry has a leader and three voters.
pub fn three_voters(
    prefix: &str,
    capability: &str,
    setup: fn(actix_cluster::ClusterSystemBuilder) -> actix_cluster::ClusterSystemBuilder,
) -> Vec<actix_cluster_testkit::TestNode> {
    use actix_cluster_testkit::{TEST_DEADLINE, TestNode, plaintext};
    let start = |config: actix_cluster::ClusterConfigBuilder| {
        let config = config
            .registry(actix_cluster::RegistryConfig::new().voters(3))
            .build()
            .expect("config");
        TestNode::start(prefix, config, setup).expect("start")
    };
    let first = start(plaintext(&format!("{prefix}0")));
    let seed = first.system().local_addr().to_string();
    let mut nodes = vec![first];
    for i in 1..3 {
        nodes.push(start(
            plaintext(&format!("{prefix}{i}")).seed_nodes([seed.clone()]),
        ));
    }
    assert!(
        wait_until(TEST_DEADLINE, || nodes.iter().all(|n| {
            let members = n.system().members();
            members.len() == 3
                && members.iter().all(|m| {
                    m.state == MemberState::Up && m.capabilities.iter().any(|c| c == capability)
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
