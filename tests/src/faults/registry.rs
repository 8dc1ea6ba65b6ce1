//! The registry workload: concurrent clients registering, claiming, releasing and reading a
//! few names through `fault-node` processes while the nemesis strikes; then the history is
//! checked for linearizability and every heal for a bounded return of writes.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use super::accounts::{self, Update};
use super::activations::{self, Ping};
use super::checker::{self, Call, Operation, Releasable, Seen, Violation};
use super::hosts::Net;
use super::nemesis::{self, Fault, Rng, Step, Target};
use super::node::{self, Downs, Ledger, Node, NodeError, NodeSpec, lock};

/// Storage of every node's registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// In memory: every restart is a new Raft member.
    Ephemeral,
    /// On disk: a restart may keep its Raft state.
    Durable,
}

/// Who votes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    /// Every node may vote (3 voters among the nodes).
    Decentralized,
    /// The first three nodes are masters and the voters; the rest are workers.
    Centralized,
}

/// One run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Seed of the schedule and of the clients' choices.
    pub seed: u64,
    /// Nodes, one per host (at least 3).
    pub nodes: usize,
    /// Registry storage.
    pub storage: Storage,
    /// Who votes.
    pub architecture: Architecture,
    /// Faults in the schedule.
    pub faults: usize,
    /// Concurrent clients (spread over the nodes).
    pub clients: usize,
    /// Names the clients work on.
    pub names: usize,
    /// An operation with no answer after this long is recorded as unknown.
    pub op_timeout: Duration,
    /// After a heal, writes must succeed again within this long (and every supervised name
    /// answer again).
    pub recovery_bound: Duration,
    /// Supervised names (the self-healing workload); 0 runs the registry workload only.
    pub supervised: usize,
    /// Virtual accounts (the virtual actor workload, with their state in a `redis-server`
    /// the harness starts in the root namespace); 0 turns it off.
    pub accounts: usize,
}

/// What a run found.
#[derive(Debug, Clone)]
pub struct Report {
    /// `storage/architecture/seed`.
    pub label: String,
    /// The schedule, as printed before the run.
    pub schedule: Vec<String>,
    /// Operations checked.
    pub operations: usize,
    /// Of those: definite successes or definite refusals (`ok`, `NameTaken`, `NotFound`).
    pub answered: usize,
    /// Definite failures (no effect).
    pub failed: usize,
    /// Indeterminate (no answer, or one that does not say).
    pub unknown: usize,
    /// Faults injected.
    pub faults: usize,
    /// Time from each heal to the first successful write, in ms.
    pub recoveries_ms: Vec<u64>,
    /// Heals after which writes did not return within the bound.
    pub unrecovered: Vec<String>,
    /// Linearizability violations.
    pub violations: Vec<Violation>,
    /// Single-activation violations of the supervised names, and names not served again
    /// after a heal.
    pub activation_violations: Vec<String>,
    /// Pings of supervised names answered.
    pub pings: usize,
    /// Ledger overlaps explained by a paused process (counted, not failed; see
    /// [`activations`]).
    pub paused_overlaps: usize,
    /// Migrations of supervised names that moved, and ledger overlaps that were their
    /// handovers.
    pub migrations: u64,
    pub handovers: usize,
    /// Ledger overlaps with a move's target that never served (see [`activations`]).
    pub unserved_adoptions: usize,
    /// Updates sent to virtual accounts, and of those acknowledged.
    pub account_updates: usize,
    pub account_acks: usize,
    /// Run time.
    pub elapsed: Duration,
}

impl Report {
    /// No violation and every heal recovered in time.
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
            && self.unrecovered.is_empty()
            && self.activation_violations.is_empty()
    }
}

/// Why a run could not be carried out (as opposed to finding a violation).
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// A node did not start.
    #[error(transparent)]
    Node(#[from] NodeError),
    /// The hosts could not be set up or changed.
    #[error("hosts: {0}")]
    Hosts(String),
    /// The registry did not form in time at the start.
    #[error("the registry did not form within {0:?}")]
    NotFormed(Duration),
}

const PORT: u16 = 7000;
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// The registry of a fresh cluster takes a settle delay and an election.
const FORMATION: Duration = Duration::from_secs(30);

/// The running cluster: a slot per node (empty while killed).
struct Cluster<'a> {
    net: &'a Net,
    program: PathBuf,
    specs: Vec<NodeSpec>,
    nodes: RwLock<Vec<Option<Arc<Node>>>>,
    t0: Instant,
    releasable: Mutex<Vec<Releasable>>,
    /// Down verdicts the nodes reported.
    downs: Downs,
    history: Mutex<Vec<Operation>>,
    next_op: AtomicU64,
    op_timeout: Duration,
    /// Activation reports of supervised actors.
    ledger: Ledger,
    /// Pings of supervised names that were answered.
    pings: Mutex<Vec<Ping>>,
    /// Kills: (node, incarnation, time).
    kills: Mutex<Vec<(String, u64, u64)>>,
    /// Pauses: (node, from, to).
    pauses: Mutex<Vec<(String, u64, u64)>>,
    /// The supervised names.
    supervised: Vec<String>,
    /// Migrations of supervised names that moved.
    migrations: AtomicU64,
    /// The virtual accounts, and the updates sent to them.
    accounts: Vec<String>,
    updates: Mutex<Vec<Update>>,
}

/// A release may be committed a little before the line announcing the verdict behind it is
/// read (another node's verdict, or output buffered behind answers): releases count from this
/// long before the line.
const VERDICT_MARGIN: Duration = Duration::from_millis(500);

impl<'a> Cluster<'a> {
    /// `plan`'s nodes on `net`, not started yet, with their data under `data`.
    fn new(
        net: &'a Net,
        program: &Path,
        plan: &Plan,
        data: &Path,
        state_redis: Option<&str>,
    ) -> Self {
        Cluster {
            net,
            program: program.to_owned(),
            specs: specs(plan, net, data, state_redis),
            nodes: RwLock::new(vec![None; plan.nodes]),
            t0: Instant::now(),
            releasable: Mutex::new(Vec::new()),
            downs: Downs::default(),
            history: Mutex::new(Vec::new()),
            next_op: AtomicU64::new(1),
            op_timeout: plan.op_timeout,
            ledger: Ledger::default(),
            pings: Mutex::new(Vec::new()),
            kills: Mutex::new(Vec::new()),
            pauses: Mutex::new(Vec::new()),
            supervised: (0..plan.supervised).map(|i| format!("s{i}")).collect(),
            migrations: AtomicU64::new(0),
            accounts: (0..plan.accounts).map(|i| format!("a{i}")).collect(),
            updates: Mutex::new(Vec::new()),
        }
    }

    /// Sends a new update to virtual `account` through node `i` and records how it was
    /// answered; whether the answer was definite.
    fn update(&self, i: usize, account: &str) -> bool {
        let Some(node) = self.node(i) else {
            return false;
        };
        let id = self.next_op.fetch_add(1, Ordering::Relaxed);
        let rx = node.send(id, &format!("vadd {account} {id}"));
        let outcome = match rx.recv_timeout(self.op_timeout) {
            Ok((_, answer)) if answer.starts_with("ok applied") => accounts::Outcome::Acked,
            Ok((_, answer)) if answer.starts_with("fail ") => accounts::Outcome::Failed,
            _ => accounts::Outcome::Unknown,
        };
        lock(&self.updates).push(Update {
            account: account.to_owned(),
            op: id,
            outcome,
        });
        outcome != accounts::Outcome::Unknown
    }

    /// Virtual `account`'s saved updates, asked of each node in turn until one answers or
    /// `bound` passes.
    fn account_state(&self, account: &str, bound: Duration) -> Option<Vec<u64>> {
        let deadline = Instant::now() + bound;
        let mut attempt = 0;
        while Instant::now() < deadline {
            if let Some(node) = self.node(attempt % self.specs.len()) {
                let id = self.next_op.fetch_add(1, Ordering::Relaxed);
                let rx = node.send(id, &format!("vget {account}"));
                if let Ok((_, answer)) = rx.recv_timeout(self.op_timeout)
                    && let Some(ops) = answer.strip_prefix("ok ops ")
                {
                    return Some(if ops.trim() == "-" {
                        Vec::new()
                    } else {
                        ops.trim()
                            .split(',')
                            .filter_map(|o| o.parse().ok())
                            .collect()
                    });
                }
            }
            attempt += 1;
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// Every incarnation the run may have seen released, and since when: those that were
    /// killed, and those that any node declared Down or Left.
    fn releasable(&self) -> Vec<Releasable> {
        let mut all = self
            .releasable
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let downs = self.downs.lock().unwrap_or_else(|e| e.into_inner());
        for (at, node, incarnation) in downs.iter() {
            all.push(Releasable {
                node: node.clone(),
                incarnation: *incarnation,
                at: self.ns(at.checked_sub(VERDICT_MARGIN).unwrap_or(self.t0)),
            });
        }
        all
    }

    fn ns(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.t0).as_nanos() as u64
    }

    fn node(&self, i: usize) -> Option<Arc<Node>> {
        self.nodes.read().unwrap_or_else(|e| e.into_inner())[i].clone()
    }

    fn start(&self, i: usize) -> Result<(), NodeError> {
        let node = Node::start(
            self.net,
            &self.program,
            self.specs[i].clone(),
            START_TIMEOUT,
            &self.downs,
            &self.ledger,
        )?;
        self.nodes.write().unwrap_or_else(|e| e.into_inner())[i] = Some(Arc::new(node));
        Ok(())
    }

    /// From now on the names of node `i`'s current incarnation may be released: it is being
    /// killed (its Down verdicts may come only from nodes killed later).
    fn touched(&self, i: usize) {
        if let Some(n) = self.node(i) {
            let at = self.ns(Instant::now());
            lock(&self.kills).push((n.spec.name.clone(), n.incarnation, at));
            self.releasable
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(Releasable {
                    node: n.spec.name.clone(),
                    incarnation: n.incarnation,
                    at,
                });
        }
    }

    /// Runs one operation through node `i` and records it.
    fn operate(&self, i: usize, name: &str, call: Call) -> Option<Seen> {
        let node = self.node(i)?;
        let line = match &call {
            Call::Register(a) => format!("register {name} {}", slot_of(&node, a)?),
            Call::RegisterOrGet(a) => format!("register-or-get {name} {}", slot_of(&node, a)?),
            Call::Unregister => format!("unregister {name}"),
            Call::Lookup => format!("lookup {name}"),
        };
        let id = self.next_op.fetch_add(1, Ordering::Relaxed);
        let invoked = Instant::now();
        let rx = node.send(id, &line);
        let (completed, seen) = match rx.recv_timeout(self.op_timeout) {
            Ok((at, answer)) => (Some(self.ns(at)), node::seen(&answer)),
            Err(_) => (None, Seen::Unknown),
        };
        self.history
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Operation {
                id,
                name: name.to_owned(),
                call,
                invoked: self.ns(invoked),
                completed,
                seen: seen.clone(),
            });
        Some(seen)
    }

    /// Spawns every supervised name, through the nodes in turn, each until it is accepted
    /// or `bound` passes; `false` if one was not.
    fn spawn_supervised(&self, bound: Duration) -> bool {
        let deadline = Instant::now() + bound;
        for (k, name) in self.supervised.iter().enumerate() {
            let mut attempt = k;
            loop {
                if Instant::now() > deadline {
                    return false;
                }
                let Some(node) = self.node(attempt % self.specs.len()) else {
                    attempt += 1;
                    continue;
                };
                let id = self.next_op.fetch_add(1, Ordering::Relaxed);
                let rx = node.send(id, &format!("spawn {name}"));
                if let Ok((_, answer)) = rx.recv_timeout(self.op_timeout)
                    && answer.starts_with("ok spawned")
                {
                    break;
                }
                attempt += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        true
    }

    /// Pings supervised `name` through node `i`; records an answer; whether one came.
    fn ping(&self, i: usize, name: &str) -> bool {
        let Some(node) = self.node(i) else {
            return false;
        };
        let id = self.next_op.fetch_add(1, Ordering::Relaxed);
        let invoked = Instant::now();
        let rx = node.send(id, &format!("ping {name}"));
        let Ok((at, answer)) = rx.recv_timeout(self.op_timeout) else {
            return false;
        };
        let Some(answer) = answer.strip_prefix("ok pong ") else {
            return false;
        };
        let (activation, count) = Ping::parse_answer(answer);
        lock(&self.pings).push(Ping {
            name: name.to_owned(),
            invoked: self.ns(invoked),
            completed: self.ns(at),
            activation,
            count,
        });
        true
    }

    /// Asks node `i` to move supervised `name` to a random node; whether it moved.
    fn migrate(&self, i: usize, name: &str, rng: &mut Rng) -> bool {
        let Some(node) = self.node(i) else {
            return false;
        };
        let to = &self.specs[rng.below(self.specs.len() as u64) as usize].name;
        let id = self.next_op.fetch_add(1, Ordering::Relaxed);
        let rx = node.send(id, &format!("migrate {name} {to}"));
        let moved = rx
            .recv_timeout(self.op_timeout)
            .is_ok_and(|(_, answer)| answer.starts_with("ok migrated"));
        if moved {
            self.migrations.fetch_add(1, Ordering::Relaxed);
        }
        moved
    }

    /// Waits until every supervised name answers a ping (through the live nodes in turn), up
    /// to `bound`; the names that did not.
    fn all_served(&self, bound: Duration) -> Vec<String> {
        let deadline = Instant::now() + bound;
        let mut waiting: Vec<&String> = self.supervised.iter().collect();
        let mut k = 0usize;
        while !waiting.is_empty() && Instant::now() < deadline {
            waiting.retain(|name| {
                k += 1;
                !self.ping(k % self.specs.len(), name)
            });
            if !waiting.is_empty() {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        waiting.into_iter().cloned().collect()
    }

    /// The activations so far, from the ledger and the kills.
    fn spans(&self) -> Vec<activations::Span> {
        let ledger: Vec<(u64, String)> = lock(&self.ledger)
            .iter()
            .map(|(at, line)| (self.ns(*at), line.clone()))
            .collect();
        activations::spans(&ledger, &lock(&self.kills))
    }

    /// The registry leader as node `i` reports it (`status` command).
    fn leader(&self) -> Option<usize> {
        for i in 0..self.specs.len() {
            let Some(node) = self.node(i) else {
                continue;
            };
            let id = self.next_op.fetch_add(1, Ordering::Relaxed);
            let rx = node.send(id, "status");
            if let Ok((_, answer)) = rx.recv_timeout(Duration::from_secs(2)) {
                let words: Vec<&str> = answer.split_whitespace().collect();
                if let ["ok", "status", leader, ..] = words.as_slice() {
                    return self.specs.iter().position(|s| s.name == *leader);
                }
            }
        }
        None
    }
}

fn slot_of(node: &Node, actor: &checker::Actor) -> Option<usize> {
    node.slots.iter().position(|a| a == actor)
}

/// The node specifications of `plan` on `net`, data under `data`.
fn specs(plan: &Plan, net: &Net, data: &Path, state_redis: Option<&str>) -> Vec<NodeSpec> {
    let addrs = net.addrs();
    let addr = |i: usize| format!("{}:{PORT}", addrs[i]);
    let masters: Vec<String> = (0..plan.nodes.min(3)).map(addr).collect();
    (0..plan.nodes)
        .map(|i| {
            let seeds: Vec<String> = (0..plan.nodes).filter(|j| *j != i).map(addr).collect();
            let mut args = vec![
                "--cluster".to_owned(),
                "faults".to_owned(),
                "--seeds".to_owned(),
                seeds.join(","),
                "--voters".to_owned(),
                "3".to_owned(),
                "--slots".to_owned(),
                "3".to_owned(),
            ];
            if let Some(url) = state_redis {
                args.extend(["--state-redis".to_owned(), url.to_owned()]);
            }
            if plan.architecture == Architecture::Centralized {
                args.extend([
                    "--architecture".to_owned(),
                    "centralized".to_owned(),
                    "--masters".to_owned(),
                    masters.join(","),
                    "--role".to_owned(),
                    if i < 3 { "master" } else { "worker" }.to_owned(),
                ]);
            }
            NodeSpec {
                name: format!("n{i}"),
                host: i,
                port: PORT,
                args,
                data_dir: (plan.storage == Storage::Durable).then(|| data.join(format!("n{i}"))),
            }
        })
        .collect()
}

/// Runs `plan` on `net` with the `fault-node` binary `program`; `log` gets progress lines
/// (the schedule first).
pub fn run(
    net: &Net,
    program: &Path,
    plan: &Plan,
    log: &dyn Fn(&str),
) -> Result<Report, HarnessError> {
    let label = format!(
        "{}/{}/seed={}",
        match plan.storage {
            Storage::Ephemeral => "ephemeral",
            Storage::Durable => "durable",
        },
        match plan.architecture {
            Architecture::Decentralized => "decentralized",
            Architecture::Centralized => "centralized",
        },
        plan.seed
    );
    let steps = nemesis::schedule(
        plan.seed,
        plan.nodes,
        plan.storage == Storage::Durable,
        plan.faults,
    );
    let schedule: Vec<String> = steps.iter().map(ToString::to_string).collect();
    log(&format!("{label}: schedule"));
    for (i, s) in schedule.iter().enumerate() {
        log(&format!("  {i}: {s}"));
    }
    let data = tempfile::tempdir().map_err(|e| HarnessError::Hosts(format!("data dir: {e}")))?;
    // The accounts' state lives outside the nodes, where every one of them reaches it and no
    // fault cuts it off: in the root namespace.
    let redis = if plan.accounts > 0 {
        Some(
            actix_cluster_testkit::RedisServer::start(net.root_addr().into())
                .map_err(HarnessError::Hosts)?,
        )
    } else {
        None
    };
    let cluster = Cluster::new(
        net,
        program,
        plan,
        data.path(),
        redis.as_ref().map(actix_cluster_testkit::RedisServer::url),
    );
    let started = Instant::now();
    for i in 0..plan.nodes {
        cluster.start(i)?;
    }
    let all: Vec<usize> = (0..plan.nodes).collect();
    if cluster
        .first_write(&all, "formed", Instant::now(), FORMATION)
        .is_none()
    {
        return Err(HarnessError::NotFormed(FORMATION));
    }
    log(&format!("{label}: formed after {:?}", started.elapsed()));
    if !cluster.spawn_supervised(FORMATION) {
        return Err(HarnessError::NotFormed(FORMATION));
    }
    if plan.supervised > 0 {
        log(&format!(
            "{label}: {} supervised names spawned after {:?}",
            plan.supervised,
            started.elapsed()
        ));
    }

    let stop = AtomicBool::new(false);
    let mut recoveries_ms = Vec::new();
    let mut unrecovered = Vec::new();
    let mut activation_violations = Vec::new();
    let outcome: Result<(), HarnessError> = std::thread::scope(|scope| {
        for c in 0..plan.clients {
            let (cluster, stop) = (&cluster, &stop);
            let mut rng = Rng::new(plan.seed ^ (0x00C1_1E47 + c as u64));
            scope.spawn(move || client(cluster, stop, &mut rng, c % plan.nodes, plan.names));
        }
        let result = (|| {
            for (k, step) in steps.iter().enumerate() {
                std::thread::sleep(step.quiet);
                let touched = inject(&cluster, step)?;
                log(&format!("{label}: {k}: {} (nodes {touched:?})", step.fault));
                std::thread::sleep(step.lasts);
                heal(&cluster, step, &touched)?;
                let healed = Instant::now();
                match cluster.first_write(&all, &format!("heal{k}"), healed, plan.recovery_bound) {
                    Some(ms) => recoveries_ms.push(ms),
                    None => unrecovered.push(format!(
                        "no write within {:?} after healing step {k}: {step}",
                        plan.recovery_bound
                    )),
                }
                let lost = cluster.all_served(plan.recovery_bound);
                if !lost.is_empty() {
                    activation_violations.push(format!(
                        "not served within {:?} after healing step {k} ({step}): {lost:?}",
                        plan.recovery_bound
                    ));
                }
            }
            Ok(())
        })();
        stop.store(true, Ordering::Release);
        result
    });
    outcome?;
    // Every name once more, then exactly one activation of each (stops still on their way
    // through a pipe get a moment).
    let lost = cluster.all_served(plan.recovery_bound);
    if !lost.is_empty() {
        activation_violations.push(format!("not served at the end: {lost:?}"));
    }
    // Every account's saved updates, once every fault has healed.
    let finals: std::collections::BTreeMap<String, Option<Vec<u64>>> = cluster
        .accounts
        .iter()
        .map(|a| (a.clone(), cluster.account_state(a, plan.recovery_bound)))
        .collect();
    let updates = std::mem::take(&mut *lock(&cluster.updates));
    activation_violations.extend(
        accounts::check(&updates, &finals)
            .into_iter()
            .map(|v| format!("virtual account {v}")),
    );
    let mut single = Vec::new();
    let settle = Instant::now() + Duration::from_secs(5);
    while Instant::now() < settle {
        single = activations::not_single(&cluster.supervised, &cluster.spans());
        if single.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    activation_violations.extend(single.into_iter().map(|s| format!("at the end: {s}")));
    let spans = cluster.spans();
    cluster.stop_all();
    let pings = std::mem::take(&mut *lock(&cluster.pings));
    let verdict = activations::check(
        &pings,
        &spans,
        &lock(&cluster.pauses),
        LEDGER_TOLERANCE.as_nanos() as u64,
    );
    activation_violations.extend(verdict.violations);
    let history = std::mem::take(&mut *cluster.history.lock().unwrap_or_else(|e| e.into_inner()));
    let releasable = cluster.releasable();
    let checking = Instant::now();
    let violations = checker::check(&history, &releasable);
    log(&format!(
        "{label}: checked {} operations in {:.1} s",
        history.len(),
        checking.elapsed().as_secs_f64()
    ));
    let count = |f: fn(&Seen) -> bool| history.iter().filter(|o| f(&o.seen)).count();
    Ok(Report {
        label,
        schedule,
        operations: history.len(),
        answered: count(|s| !matches!(s, Seen::Failed | Seen::Unknown)),
        failed: count(|s| matches!(s, Seen::Failed)),
        unknown: count(|s| matches!(s, Seen::Unknown)),
        faults: steps.len(),
        recoveries_ms,
        unrecovered,
        violations,
        activation_violations,
        pings: pings.len(),
        paused_overlaps: verdict.paused_overlaps,
        migrations: cluster.migrations.load(Ordering::Relaxed),
        handovers: verdict.handovers,
        unserved_adoptions: verdict.unserved_adoptions,
        account_updates: updates.len(),
        account_acks: updates
            .iter()
            .filter(|u| u.outcome == accounts::Outcome::Acked)
            .count(),
        elapsed: started.elapsed(),
    })
}

/// How far apart two ledger lines about one moment may be read, from two nodes' pipes.
const LEDGER_TOLERANCE: Duration = Duration::from_millis(100);

/// After a failed operation a client waits this long before the next, doubling up to
/// [`BACKOFF_MAX`] while failures go on: a node that fails fast (`NoQuorum` on the minority
/// side) would otherwise be asked thousands of times a second, and the history would grow
/// past what the checker handles quickly without telling it anything new.
const BACKOFF_MIN: Duration = Duration::from_millis(5);
const BACKOFF_MAX: Duration = Duration::from_millis(80);

/// One client: random operations on a few names through node `home`, until `stop`.
fn client(cluster: &Cluster<'_>, stop: &AtomicBool, rng: &mut Rng, home: usize, names: usize) {
    let mut backoff = Duration::ZERO;
    while !stop.load(Ordering::Acquire) {
        if !backoff.is_zero() {
            std::thread::sleep(backoff);
        }
        let Some(node) = cluster.node(home) else {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        };
        if !cluster.accounts.is_empty() && rng.chance(0.2) {
            let account = &cluster.accounts[rng.below(cluster.accounts.len() as u64) as usize];
            backoff = if cluster.update(home, account) {
                Duration::ZERO
            } else {
                (backoff * 2).clamp(BACKOFF_MIN, BACKOFF_MAX)
            };
            continue;
        }
        if !cluster.supervised.is_empty() && rng.chance(0.25) {
            let name = &cluster.supervised[rng.below(cluster.supervised.len() as u64) as usize];
            // Now and then a live migration of it, while the others ping it.
            if rng.chance(0.08) {
                cluster.migrate(home, name, rng);
                continue;
            }
            backoff = if cluster.ping(home, name) {
                Duration::ZERO
            } else {
                (backoff * 2).clamp(BACKOFF_MIN, BACKOFF_MAX)
            };
            continue;
        }
        let name = format!("k{}", rng.below(names as u64));
        let slot = rng.below(node.slots.len() as u64) as usize;
        let actor = node.slots[slot].clone();
        let call = match rng.below(100) {
            0..35 => Call::Register(actor),
            35..55 => Call::RegisterOrGet(actor),
            55..70 => Call::Unregister,
            _ => Call::Lookup,
        };
        backoff = match cluster.operate(home, &name, call) {
            Some(Seen::Failed) => (backoff * 2).clamp(BACKOFF_MIN, BACKOFF_MAX),
            _ => Duration::ZERO,
        };
    }
}

fn resolve(cluster: &Cluster<'_>, target: Target) -> usize {
    match target {
        Target::Node(i) => i,
        Target::Leader => cluster.leader().unwrap_or(0),
    }
}

fn hosts(e: impl std::fmt::Display) -> HarnessError {
    HarnessError::Hosts(e.to_string())
}

/// Starts `step`'s fault; returns the nodes it touches.
fn inject(cluster: &Cluster<'_>, step: &Step) -> Result<Vec<usize>, HarnessError> {
    let net = cluster.net;
    let touched = match &step.fault {
        Fault::Kill { target, .. } => {
            let i = resolve(cluster, *target);
            cluster.touched(i);
            if let Some(n) = cluster.nodes.write().unwrap_or_else(|e| e.into_inner())[i].take() {
                n.kill();
            }
            vec![i]
        }
        Fault::Pause(target) => {
            let i = resolve(cluster, *target);
            if let Some(n) = cluster.node(i) {
                n.pause();
                let at = cluster.ns(Instant::now());
                // Until resumed: the heal closes the window.
                lock(&cluster.pauses).push((n.spec.name.clone(), at, u64::MAX));
            }
            vec![i]
        }
        Fault::Isolate(target) => {
            let i = resolve(cluster, *target);
            net.partition(&[i]).map_err(hosts)?;
            vec![i]
        }
        Fault::Partition { minority } => {
            net.partition(minority).map_err(hosts)?;
            (0..cluster.specs.len()).collect()
        }
        Fault::CutOneWay { from, to } => {
            net.cut(*from, *to).map_err(hosts)?;
            vec![*from, *to]
        }
        Fault::Loss { a, b, p } => {
            net.loss(*a, *b, *p).map_err(hosts)?;
            net.loss(*b, *a, *p).map_err(hosts)?;
            vec![*a, *b]
        }
        Fault::Delay { a, b, delay } => {
            net.delay(*a, *b, *delay).map_err(hosts)?;
            net.delay(*b, *a, *delay).map_err(hosts)?;
            vec![*a, *b]
        }
    };
    Ok(touched)
}

/// Ends `step`'s fault: links healed, paused nodes resumed, killed ones restarted.
fn heal(cluster: &Cluster<'_>, step: &Step, touched: &[usize]) -> Result<(), HarnessError> {
    cluster.net.heal().map_err(hosts)?;
    match &step.fault {
        Fault::Pause(_) => {
            for &i in touched {
                if let Some(n) = cluster.node(i) {
                    n.resume();
                    let at = cluster.ns(Instant::now());
                    for w in lock(&cluster.pauses).iter_mut() {
                        if w.0 == n.spec.name && w.2 == u64::MAX {
                            w.2 = at;
                        }
                    }
                }
            }
        }
        Fault::Kill { fresh, .. } => {
            for &i in touched {
                if *fresh && let Some(dir) = &cluster.specs[i].data_dir {
                    let _ = std::fs::remove_dir_all(dir);
                }
                cluster.start(i)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Failover and formation figures, measured on real hosts (see [`figures`]).
#[derive(Debug, Clone, Default)]
pub struct Figures {
    /// Cluster size → ms from the first node's start to the first accepted write.
    pub formation_ms: Vec<(usize, u64)>,
    /// Fault on the leader → ms from the fault to the first accepted write, one per run.
    pub unavailability_ms: Vec<(&'static str, Vec<u64>)>,
}

/// What a failover figure does to the leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LeaderFault {
    Kill,
    Isolate,
    Pause,
}

impl LeaderFault {
    fn name(self) -> &'static str {
        match self {
            LeaderFault::Kill => "kill -9 leader",
            LeaderFault::Isolate => "isolate leader",
            LeaderFault::Pause => "SIGSTOP leader",
        }
    }
}

impl Cluster<'_> {
    /// Sends a registration of a fresh name every 50 ms through the nodes of `via` in turn,
    /// without waiting for answers, until one is accepted or `bound` passes: the time from
    /// `since` to the first accepted one's answer. A write forwarded to a silent leader waits
    /// out its request timeout; the ones sent after it do not queue behind it.
    fn first_write(
        &self,
        via: &[usize],
        tag: &str,
        since: Instant,
        bound: Duration,
    ) -> Option<u64> {
        let mut waiting = Vec::new();
        let mut k = 0usize;
        let deadline = Instant::now() + bound;
        while Instant::now() < deadline {
            if let Some(node) = via.get(k % via.len().max(1)).and_then(|&i| self.node(i))
                && !node.slots.is_empty()
            {
                let id = self.next_op.fetch_add(1, Ordering::Relaxed);
                waiting.push(node.send(id, &format!("register probe/{tag}/{k} 0")));
            }
            k += 1;
            let tick = Instant::now() + Duration::from_millis(50);
            while Instant::now() < tick {
                for rx in &waiting {
                    if let Ok((at, answer)) = rx.try_recv()
                        && answer.starts_with("ok bound")
                    {
                        return Some(at.saturating_duration_since(since).as_millis() as u64);
                    }
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        None
    }

    fn stop_all(&self) {
        let nodes: Vec<Arc<Node>> = self
            .nodes
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
            .flatten()
            .collect();
        for n in &nodes {
            n.stop(Duration::from_secs(5));
        }
    }
}

/// Measures, on `net` (at least five hosts), the time from the first node's start to the
/// first accepted write with three and with five nodes, and the write unavailability after
/// `kill -9`, isolation and `SIGSTOP` of the registry leader of a five-node cluster, `runs`
/// times each. Each figure counts to the answer of the first write accepted afterwards, sent
/// through the other nodes every 50 ms.
pub fn figures(
    net: &Net,
    program: &Path,
    storage: Storage,
    runs: usize,
    log: &dyn Fn(&str),
) -> Result<Figures, HarnessError> {
    let mut out = Figures::default();
    let plan = |nodes| Plan {
        seed: 0,
        nodes,
        storage,
        architecture: Architecture::Decentralized,
        faults: 0,
        clients: 0,
        names: 1,
        op_timeout: Duration::from_secs(6),
        recovery_bound: Duration::from_secs(20),
        supervised: 0,
        accounts: 0,
    };
    for n in [3, 5] {
        let data =
            tempfile::tempdir().map_err(|e| HarnessError::Hosts(format!("data dir: {e}")))?;
        let plan = plan(n);
        let cluster = Cluster::new(net, program, &plan, data.path(), None);
        let started = Instant::now();
        for i in 0..n {
            cluster.start(i)?;
        }
        let all: Vec<usize> = (0..n).collect();
        let ms = cluster
            .first_write(&all, "formed", started, FORMATION)
            .ok_or(HarnessError::NotFormed(FORMATION))?;
        log(&format!(
            "formation of {n}: first accepted write {ms} ms after the first start"
        ));
        out.formation_ms.push((n, ms));
        cluster.stop_all();
    }
    let data = tempfile::tempdir().map_err(|e| HarnessError::Hosts(format!("data dir: {e}")))?;
    let plan = plan(5);
    let cluster = Cluster::new(net, program, &plan, data.path(), None);
    for i in 0..plan.nodes {
        cluster.start(i)?;
    }
    let all: Vec<usize> = (0..plan.nodes).collect();
    cluster
        .first_write(&all, "formed", Instant::now(), FORMATION)
        .ok_or(HarnessError::NotFormed(FORMATION))?;
    for fault in [LeaderFault::Kill, LeaderFault::Isolate, LeaderFault::Pause] {
        let mut figures = Vec::new();
        for run in 0..runs {
            // A settled cluster with a leader that every node follows.
            let leader = (0..50)
                .find_map(|_| {
                    let l = cluster.leader();
                    if l.is_none() {
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    l
                })
                .ok_or(HarnessError::NotFormed(Duration::from_secs(5)))?;
            std::thread::sleep(Duration::from_secs(1));
            let others: Vec<usize> = all.iter().copied().filter(|i| *i != leader).collect();
            let at = Instant::now();
            match fault {
                LeaderFault::Kill => {
                    if let Some(n) =
                        cluster.nodes.write().unwrap_or_else(|e| e.into_inner())[leader].take()
                    {
                        n.kill();
                    }
                }
                LeaderFault::Isolate => net.partition(&[leader]).map_err(hosts)?,
                LeaderFault::Pause => {
                    if let Some(n) = cluster.node(leader) {
                        n.pause();
                    }
                }
            }
            let ms =
                cluster.first_write(&others, &format!("{fault:?}{run}"), at, plan.recovery_bound);
            log(&format!(
                "{} (n{leader}), run {run}: writes resumed after {ms:?} ms",
                fault.name()
            ));
            figures.extend(ms);
            match fault {
                LeaderFault::Kill => cluster.start(leader)?,
                LeaderFault::Isolate => net.heal().map_err(hosts)?,
                LeaderFault::Pause => {
                    if let Some(n) = cluster.node(leader) {
                        n.resume();
                    }
                }
            }
            cluster
                .first_write(
                    &all,
                    &format!("healed{fault:?}{run}"),
                    Instant::now(),
                    plan.recovery_bound,
                )
                .ok_or(HarnessError::NotFormed(plan.recovery_bound))?;
        }
        out.unavailability_ms.push((fault.name(), figures));
    }
    cluster.stop_all();
    Ok(out)
}
