//! The self-healing scenarios: how long supervised named actors take to answer again after
//! their node crashes (next to the membership detection time of the same run) or leaves, and
//! what a live migration adds to the latency of requests in flight.
//!
//! Every cluster is five in-process [`TestNode`]s with the LAN preset ([`lan_node`]) and a
//! 3-voter registry; the actors run on the last node, `n4`, which is no voter, so its loss
//! costs no leader election and the figure is detection plus restart. An observer on `n0`
//! asks every actor where it runs, through the named address a caller would hold.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_cluster::RegistryConfig;
use actix_cluster::placement::{Placement, RestartPolicy, SpawnSpec};
use actix_cluster::prelude::*;
use actix_cluster_testkit::TestNode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::latency::{Percentiles, Recorder};
use crate::membership::lan_node;
use crate::{BenchResult, median, ms, round};

/// Nodes of each cluster.
const NODES: usize = 5;
/// The node that hosts the actors and goes away.
const VICTIM: &str = "n4";
/// How long a scenario may wait for every actor to answer again; reaching it means broken.
const DEADLINE: Duration = Duration::from_secs(30);
/// How long one "where are you" may take before it counts as no answer.
const ASK_TIMEOUT: Duration = Duration::from_millis(200);

/// A supervised actor that says where it runs and carries a count (its migrated state).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Keeper {
    count: u64,
}

impl Actor for Keeper {
    type Context = Context<Self>;
}

/// Asks where the actor runs: the name of its node's thread (`node-<name>`).
#[derive(Debug, Clone, Copy, Message, Serialize, Deserialize)]
#[rtype(result = "String")]
pub struct Where;

impl Handler<Where> for Keeper {
    type Result = String;
    fn handle(&mut self, _: Where, _: &mut Context<Self>) -> String {
        self.count += 1;
        std::thread::current().name().unwrap_or("?").to_owned()
    }
}

impl DistributedActor for Keeper {
    const NAME: &'static str = "bench.keeper";
    fn messages(m: &mut Messages<Self>) {
        m.handle::<Where>("where").migratable();
    }
}

/// A formed five-node cluster, every node able to host [`Keeper`].
struct Cluster {
    nodes: Vec<Option<TestNode>>,
}

impl Cluster {
    fn start(cluster: &str) -> BenchResult<Self> {
        let mut nodes = Vec::with_capacity(NODES);
        let mut seed: Option<String> = None;
        for i in 0..NODES {
            let mut b = lan_node(&format!("n{i}")).registry(RegistryConfig::new().voters(3));
            if let Some(seed) = &seed {
                b = b.seed_nodes([seed.clone()]);
            }
            let node = TestNode::start(cluster, b.build()?, |s| s.register::<Keeper>())?;
            seed.get_or_insert_with(|| node.system().local_addr().to_string());
            nodes.push(Some(node));
        }
        let c = Self { nodes };
        let end = Instant::now() + DEADLINE;
        while !c.formed() {
            if Instant::now() > end {
                return Err("the cluster did not form".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(c)
    }

    fn node(&self, i: usize) -> BenchResult<&TestNode> {
        self.nodes
            .get(i)
            .and_then(Option::as_ref)
            .ok_or_else(|| format!("node {i} is gone").into())
    }

    fn formed(&self) -> bool {
        self.nodes.iter().flatten().all(|n| {
            let members = n.system().members();
            members.len() == NODES
                && members.iter().all(|m| {
                    m.state == MemberState::Up && m.capabilities.iter().any(|c| c == Keeper::NAME)
                })
                && n.run(|s| async move { s.registry_status().await })
                    .ok()
                    .and_then(Result::ok)
                    .is_some_and(|s| s.leader.is_some() && s.voters.len() == 3)
        })
    }

    /// Spawns `count` supervised actors `heal/<i>` on the victim, from `n0`.
    fn spawn(&self, count: usize, placement: Placement) -> BenchResult<()> {
        self.node(0)?
            .run(move |s| async move {
                for i in 0..count {
                    let spec = SpawnSpec::new()
                        .placement(placement.clone())
                        .name(format!("heal/{i}"))
                        .restart(RestartPolicy::Always);
                    s.spawn(spec, |_| Keeper::default())
                        .await
                        .map_err(|e| e.to_string())?;
                }
                Ok::<_, String>(())
            })?
            .map_err(Into::into)
    }

    fn take(&mut self, i: usize) -> BenchResult<TestNode> {
        self.nodes
            .get_mut(i)
            .and_then(Option::take)
            .ok_or_else(|| format!("node {i} is gone").into())
    }

    fn stop(mut self) {
        let nodes: Vec<TestNode> = self.nodes.iter_mut().filter_map(Option::take).collect();
        std::thread::scope(|scope| {
            for node in nodes {
                scope.spawn(move || node.stop());
            }
        });
    }
}

/// When each actor first answered from a node other than the victim, and when `n0` first saw
/// the victim Suspect and Down (or Left, or gone from its table), each after `start`.
struct Recovery {
    answered: Vec<Duration>,
    suspected: Option<Duration>,
    detected: Option<Duration>,
}

/// From `n0`: asks every actor where it runs every few milliseconds, from `start` (once set)
/// until each has answered from a survivor.
fn observe(
    node: &TestNode,
    count: usize,
    start: Arc<OnceLock<Instant>>,
) -> BenchResult<std::sync::mpsc::Receiver<Result<Recovery, String>>> {
    let (tx, rx) = std::sync::mpsc::channel();
    node.run(move |s| async move {
        actix_rt::spawn(async move {
            let mut addrs = Vec::with_capacity(count);
            for i in 0..count {
                match s.lookup_linearizable::<Keeper>(&format!("heal/{i}")).await {
                    Ok(a) => addrs.push(a),
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                        return;
                    }
                }
            }
            let start = loop {
                if let Some(at) = start.get() {
                    break *at;
                }
                actix_rt::time::sleep(Duration::from_millis(1)).await;
            };
            let mut answered: Vec<Option<Duration>> = vec![None; count];
            let (mut suspected, mut detected) = (None, None);
            let victim = format!("node-{VICTIM}");
            while start.elapsed() < DEADLINE {
                let state = s
                    .members()
                    .into_iter()
                    .find(|m| m.id.name() == VICTIM)
                    .map(|m| m.state);
                if suspected.is_none() && state != Some(MemberState::Up) {
                    suspected = Some(start.elapsed());
                }
                if detected.is_none()
                    && !matches!(state, Some(MemberState::Up | MemberState::Suspect))
                {
                    detected = Some(start.elapsed());
                }
                let pending: Vec<usize> = (0..count).filter(|&i| answered[i].is_none()).collect();
                if pending.is_empty() && detected.is_some() {
                    break;
                }
                let asks = pending.iter().map(|&i| {
                    let a = addrs[i].clone();
                    async move { (i, a.send(Where).timeout(ASK_TIMEOUT).await) }
                });
                for (i, at) in futures::future::join_all(asks).await {
                    if at.is_ok_and(|at| at != victim) {
                        answered[i] = Some(start.elapsed());
                    }
                }
                actix_rt::time::sleep(Duration::from_millis(2)).await;
            }
            let done: Vec<Duration> = answered.iter().flatten().copied().collect();
            let _ = tx.send(if done.len() == count {
                Ok(Recovery {
                    answered: done,
                    suspected,
                    detected,
                })
            } else {
                Err(format!(
                    "{} of {count} actors did not answer again within {DEADLINE:?}",
                    count - done.len()
                ))
            });
        });
    })?;
    Ok(rx)
}

/// How the victim goes away.
#[derive(Debug, Clone, Copy)]
enum Ending {
    Kill,
    Leave,
}

fn recovery(cluster: &str, count: usize, ending: Ending) -> BenchResult<Recovery> {
    let mut c = Cluster::start(cluster)?;
    let result = (|| {
        c.spawn(count, Placement::Node(VICTIM.into()))?;
        let start = Arc::new(OnceLock::new());
        let rx = observe(c.node(0)?, count, Arc::clone(&start))?;
        // The observer has resolved every name before the clock starts.
        std::thread::sleep(Duration::from_millis(300));
        let victim = c.take(NODES - 1)?;
        let _ = start.set(Instant::now());
        match ending {
            Ending::Kill => victim.kill(),
            Ending::Leave => victim.stop(),
        }
        rx.recv_timeout(DEADLINE + Duration::from_secs(5))
            .map_err(|_| "the observer did not report")?
            .map_err(Into::into)
    })();
    c.stop();
    result
}

fn quantile(mut d: Vec<Duration>, q: f64) -> Option<f64> {
    d.sort();
    let i = ((d.len() as f64 - 1.0) * q).round() as usize;
    d.get(i).map(|d| ms(*d))
}

/// `restart_after_kill`: `actors` supervised actors on a node that is killed; median over
/// `runs` fresh clusters of the per-run p50 (and of the detection time, and their ratio).
pub fn after_kill(actors: usize, runs: usize, progress: &dyn Fn(&str)) -> Value {
    let mut p50s = Vec::new();
    let mut maxes = Vec::new();
    let mut detections = Vec::new();
    let mut suspicions = Vec::new();
    let mut ratios = Vec::new();
    let mut errors = Vec::new();
    for run in 0..runs {
        match recovery(&format!("heal-kill-{run}"), actors, Ending::Kill) {
            Ok(r) => {
                let p50 = quantile(r.answered.clone(), 0.5);
                let max = quantile(r.answered, 1.0);
                let det = r.detected.map(ms);
                suspicions.extend(r.suspected.map(ms));
                progress(&format!(
                    "restart_after_kill run {run}: p50 {p50:?} ms, max {max:?} ms, Down after \
                     {det:?} ms (Suspect after {:?} ms)",
                    r.suspected.map(ms)
                ));
                if let (Some(p), Some(d)) = (p50, det) {
                    ratios.push(p / d);
                }
                p50s.extend(p50);
                maxes.extend(max);
                detections.extend(det);
            }
            Err(e) => {
                progress(&format!("restart_after_kill run {run}: FAILED: {e}"));
                errors.push(e.to_string());
            }
        }
    }
    json!({
        "actors": actors,
        "runs": runs,
        "p50_ms": median(p50s).map(|v| round(v, 1)),
        "max_ms": median(maxes).map(|v| round(v, 1)),
        "detection_ms": median(detections).map(|v| round(v, 1)),
        "suspect_ms": median(suspicions).map(|v| round(v, 1)),
        "ratio_p50_to_detection": median(ratios).map(|v| round(v, 3)),
        "errors": errors,
    })
}

/// `restart_after_leave`: `actors` supervised actors on a node that leaves gracefully; the
/// time until the last of them answers from a survivor, median over `runs`.
pub fn after_leave(actors: usize, runs: usize, progress: &dyn Fn(&str)) -> Value {
    let mut alls = Vec::new();
    let mut p50s = Vec::new();
    let mut errors = Vec::new();
    for run in 0..runs {
        match recovery(&format!("heal-leave-{run}"), actors, Ending::Leave) {
            Ok(r) => {
                let p50 = quantile(r.answered.clone(), 0.5);
                let all = quantile(r.answered, 1.0);
                progress(&format!(
                    "restart_after_leave run {run}: p50 {p50:?} ms, all {all:?} ms"
                ));
                p50s.extend(p50);
                alls.extend(all);
            }
            Err(e) => {
                progress(&format!("restart_after_leave run {run}: FAILED: {e}"));
                errors.push(e.to_string());
            }
        }
    }
    json!({
        "actors": actors,
        "runs": runs,
        "all_serving_ms": median(alls).map(|v| round(v, 1)),
        "p50_ms": median(p50s).map(|v| round(v, 1)),
        "errors": errors,
    })
}

/// `migration_pause`: one caller on `n0` keeps one request in flight to a named actor that
/// is moved between `n1` and `n2` every `interval`; its round trips while moves happen, next to
/// rounds without moves in the same cluster (interleaved), and the duration of the moves.
pub fn migration_pause(moves: usize, progress: &dyn Fn(&str)) -> Value {
    match pause(moves) {
        Ok(v) => {
            progress(&format!("migration_pause: {v}"));
            v
        }
        Err(e) => {
            progress(&format!("migration_pause: FAILED: {e}"));
            json!({ "error": e.to_string() })
        }
    }
}

fn pause(moves: usize) -> BenchResult<Value> {
    let c = Cluster::start("heal-move")?;
    let result = (|| {
        c.spawn(1, Placement::Node("n1".into()))?;
        let (quiet, moving, took) = c.node(0)?.run(move |s| async move {
            let addr = s
                .lookup_linearizable::<Keeper>("heal/0")
                .await
                .map_err(|e| e.to_string())?;
            let mut quiet = Recorder::new().map_err(|e| e.to_string())?;
            let mut moving = Recorder::new().map_err(|e| e.to_string())?;
            let mut took = Vec::with_capacity(moves);
            for round in 0..moves {
                // A quiet round: the same caller, no move.
                let until = Instant::now() + Duration::from_millis(40);
                while Instant::now() < until {
                    let t = Instant::now();
                    addr.send(Where).await.map_err(|e| e.to_string())?;
                    quiet.record(t.elapsed());
                }
                // A round with a move in the middle of the caller's requests.
                let to = if round % 2 == 0 { "n2" } else { "n1" };
                let s2 = s.clone();
                let to2 = to.to_owned();
                let mv = actix_rt::spawn(async move {
                    let t = Instant::now();
                    s2.migrate("heal/0", &to2).await.map(|_| t.elapsed())
                });
                while !mv.is_finished() {
                    let t = Instant::now();
                    addr.send(Where).await.map_err(|e| e.to_string())?;
                    moving.record(t.elapsed());
                }
                let d = mv
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())?;
                took.push(d);
                // Requests right after the move (senders following the name, the target's
                // gate opening) belong to it too.
                let until = Instant::now() + Duration::from_millis(10);
                while Instant::now() < until {
                    let t = Instant::now();
                    addr.send(Where).await.map_err(|e| e.to_string())?;
                    moving.record(t.elapsed());
                }
            }
            Ok::<_, String>((quiet.percentiles(), moving.percentiles(), took))
        })??;
        let json_p = |p: &Percentiles| {
            json!({
                "p50_us": round(p.p50_us, 1),
                "p99_us": round(p.p99_us, 1),
                "samples": p.samples,
            })
        };
        Ok(json!({
            "moves": moves,
            "quiet": json_p(&quiet),
            "during_moves": json_p(&moving),
            "added_p50_us": round(moving.p50_us - quiet.p50_us, 1),
            "added_p99_us": round(moving.p99_us - quiet.p99_us, 1),
            "move_p50_ms": quantile(took.clone(), 0.5).map(|v| round(v, 2)),
            "move_max_ms": quantile(took, 1.0).map(|v| round(v, 2)),
        }))
    })();
    c.stop();
    result
}
