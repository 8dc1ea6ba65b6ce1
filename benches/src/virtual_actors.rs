//! Virtual actor figures, each next to a baseline measured in the same run: the first call to
//! a cold identity (claim, activation on another node with its state read from and fenced in
//! the embedded store, bind) and calls to an active one, both next to a plain `RemoteAddr` ask
//! to an actor on that same node; and activations per second with many first calls in flight.
//!
//! Three in-process nodes with the LAN preset, a 3-voter registry and a `RedbStore` each; every
//! identity is placed on `v1` and every call is made from `v0`, so each figure crosses the
//! same connection.

use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_cluster::RegistryConfig;
use actix_cluster::placement::{Placement, SpawnSpec};
use actix_cluster::prelude::*;
use actix_cluster::state::{PersistentState, RedbStore};
use actix_cluster::virtual_actor::{Checkpoint, VirtualActor};
use actix_cluster_testkit::TestNode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::latency::{Percentiles, Recorder};
use crate::membership::lan_node;
use crate::{BenchResult, round};

const NODES: usize = 3;
const HOST: &str = "v1";
const DEADLINE: Duration = Duration::from_secs(30);

/// What the virtual actor scenarios run.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// First calls to cold identities (latency).
    pub cold: usize,
    /// Calls to an active identity, and plain asks (latency), each.
    pub warm: usize,
    /// Identities activated for the throughput figure.
    pub activations: usize,
    /// First calls in flight at once in the throughput run.
    pub in_flight: usize,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Count {
    n: u64,
}

impl PersistentState for Count {}

/// The virtual actor: a counter.
struct Tally {
    count: Count,
}

impl Actor for Tally {
    type Context = Context<Self>;
}

#[derive(Debug, Clone, Copy, Message, Serialize, Deserialize)]
#[rtype(result = "u64")]
struct Inc;

impl Handler<Inc> for Tally {
    type Result = u64;
    fn handle(&mut self, _: Inc, _: &mut Context<Self>) -> u64 {
        self.count.n += 1;
        self.count.n
    }
}

impl DistributedActor for Tally {
    const NAME: &'static str = "bench.tally";
    fn messages(m: &mut Messages<Self>) {
        m.handle::<Inc>("inc");
    }
}

impl VirtualActor for Tally {
    type State = Count;
    fn activate(_: &str, count: Count, _: Checkpoint<Count>) -> Self {
        Tally { count }
    }
    fn activation_placement() -> Placement {
        Placement::Node(HOST.into())
    }
}

/// The baseline: the same counter, a plain distributed actor.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Plain {
    n: u64,
}

impl Actor for Plain {
    type Context = Context<Self>;
}

impl Handler<Inc> for Plain {
    type Result = u64;
    fn handle(&mut self, _: Inc, _: &mut Context<Self>) -> u64 {
        self.n += 1;
        self.n
    }
}

impl DistributedActor for Plain {
    const NAME: &'static str = "bench.plain";
    fn messages(m: &mut Messages<Self>) {
        m.handle::<Inc>("inc");
    }
}

struct Cluster {
    nodes: Vec<TestNode>,
    _dirs: Vec<tempfile::TempDir>,
}

impl Cluster {
    fn start() -> BenchResult<Self> {
        let mut nodes = Vec::new();
        let mut dirs = Vec::new();
        let mut seed: Option<String> = None;
        for i in 0..NODES {
            let dir = tempfile::tempdir()?;
            let store = RedbStore::open(dir.path())?;
            dirs.push(dir);
            let mut b = lan_node(&format!("v{i}")).registry(RegistryConfig::new().voters(3));
            if let Some(seed) = &seed {
                b = b.seed_nodes([seed.clone()]);
            }
            let node = TestNode::start("bench-virtual", b.build()?, move |s| {
                s.register_virtual::<Tally>()
                    .register::<Plain>()
                    .state_store(store)
            })?;
            seed.get_or_insert_with(|| node.system().local_addr().to_string());
            nodes.push(node);
        }
        let end = Instant::now() + DEADLINE;
        while !nodes.iter().all(|n| {
            n.system().members().len() == NODES
                && n.system()
                    .members()
                    .iter()
                    .all(|m| m.state == MemberState::Up && !m.capabilities.is_empty())
                && n.run(|s| async move { s.registry_status().await })
                    .ok()
                    .and_then(Result::ok)
                    .is_some_and(|s| s.leader.is_some() && s.voters.len() == 3)
        }) {
            if Instant::now() > end {
                return Err("the cluster did not form".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Self { nodes, _dirs: dirs })
    }

    fn stop(self) {
        for n in self.nodes {
            n.stop();
        }
    }
}

/// Latencies of cold first calls, calls to an active identity and plain asks, interleaved in
/// rounds so that all three see the same machine.
fn latencies(c: &Cluster, plan: &Plan) -> BenchResult<(Percentiles, Percentiles, Percentiles)> {
    let (cold, warm) = (plan.cold, plan.warm);
    let result = c.nodes[0].run(move |s| async move {
        let plain: RemoteAddr<Plain> = s
            .spawn(
                SpawnSpec::new().placement(Placement::Node(HOST.into())),
                |_| Plain::default(),
            )
            .await
            .map_err(|e| e.to_string())?;
        let active = s.get::<Tally>("bench/warm");
        active.send(Inc).await.map_err(|e| e.to_string())?;
        for _ in 0..100 {
            plain.send(Inc).await.map_err(|e| e.to_string())?;
            active.send(Inc).await.map_err(|e| e.to_string())?;
        }
        let (mut r_cold, mut r_warm, mut r_plain) = (
            Recorder::new().map_err(|e| e.to_string())?,
            Recorder::new().map_err(|e| e.to_string())?,
            Recorder::new().map_err(|e| e.to_string())?,
        );
        let rounds = 10;
        let (cold_per, warm_per) = (cold.div_ceil(rounds), warm.div_ceil(rounds));
        for round in 0..rounds {
            for i in 0..cold_per {
                let addr = s.get::<Tally>(format!("bench/cold/{round}/{i}"));
                let start = Instant::now();
                addr.send(Inc).await.map_err(|e| e.to_string())?;
                r_cold.record(start.elapsed());
            }
            for _ in 0..warm_per {
                let start = Instant::now();
                active.send(Inc).await.map_err(|e| e.to_string())?;
                r_warm.record(start.elapsed());
                let start = Instant::now();
                plain.send(Inc).await.map_err(|e| e.to_string())?;
                r_plain.record(start.elapsed());
            }
        }
        Ok::<_, String>((
            r_cold.percentiles(),
            r_warm.percentiles(),
            r_plain.percentiles(),
        ))
    })?;
    Ok(result?)
}

/// Activations per second with `in_flight` first calls at once, and the host's resident
/// memory per activation (the whole process's growth over the run, divided).
fn activations(c: &Cluster, plan: &Plan) -> BenchResult<(f64, Option<f64>)> {
    let (n, in_flight) = (plan.activations, plan.in_flight);
    let rss_before = rss_bytes();
    let took = c.nodes[0].run(move |s| async move {
        let start = Instant::now();
        let mut next = 0usize;
        let mut running = futures::stream::FuturesUnordered::new();
        use futures::StreamExt;
        while next < n || !running.is_empty() {
            while next < n && running.len() < in_flight {
                let addr = s.get::<Tally>(format!("bench/many/{next}"));
                running.push(async move { addr.send(Inc).await.map(|_| ()) });
                next += 1;
            }
            if let Some(r) = running.next().await {
                r.map_err(|e| e.to_string())?;
            }
        }
        Ok::<_, String>(start.elapsed())
    })??;
    let per = rss_before
        .zip(rss_bytes())
        .map(|(b, a)| a.saturating_sub(b) as f64 / n.max(1) as f64);
    Ok((n as f64 / took.as_secs_f64().max(1e-9), per))
}

/// This process's resident set, from `/proc/self/status` (`None` elsewhere).
fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb * 1024)
}

fn pct(p: &Percentiles) -> Value {
    json!({ "p50_us": round(p.p50_us, 1), "p99_us": round(p.p99_us, 1), "samples": p.samples })
}

/// The virtual actor figures as JSON (an `error` field where a run failed).
pub fn scenarios(plan: &Plan, progress: &dyn Fn(&str)) -> Value {
    let cluster = match Cluster::start() {
        Ok(c) => c,
        Err(e) => return json!({ "virtual_actors": { "error": e.to_string() } }),
    };
    let lat = latencies(&cluster, plan);
    let thr = activations(&cluster, plan);
    cluster.stop();
    let latency = match &lat {
        Ok((cold, warm, plain)) => {
            progress(&format!(
                "virtual actor, cold first call: p50 {:.0} us ({:.1}x a plain ask, p50 {:.0} us); active: p50 {:.0} us ({:.2}x)",
                cold.p50_us,
                cold.p50_us / plain.p50_us.max(1e-9),
                plain.p50_us,
                warm.p50_us,
                warm.p50_us / plain.p50_us.max(1e-9)
            ));
            json!({
                "cold_first_call": pct(cold),
                "active_call": pct(warm),
                "plain_ask_baseline": pct(plain),
                "cold_p50_over_plain_p50": round(cold.p50_us / plain.p50_us.max(1e-9), 2),
                "active_p50_over_plain_p50": round(warm.p50_us / plain.p50_us.max(1e-9), 2),
            })
        }
        Err(e) => json!({ "error": e.to_string() }),
    };
    let throughput = match &thr {
        Ok((per_s, rss)) => {
            progress(&format!(
                "virtual actor activations: {per_s:.0}/s with {} in flight",
                plan.in_flight
            ));
            json!({
                "activations": plan.activations,
                "in_flight": plan.in_flight,
                "activations_per_s": round(*per_s, 0),
                "rss_bytes_per_activation": rss.map(|b| round(b, 0)),
            })
        }
        Err(e) => json!({ "error": e.to_string() }),
    };
    json!({ "virtual_actor_latency": latency, "virtual_actor_activations": throughput })
}
