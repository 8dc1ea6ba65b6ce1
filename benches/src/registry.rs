//! The registry scenarios: how many registrations per second a 3-voter registry commits, how
//! long a cached lookup takes, and how long registrations stall when the Raft leader dies.
//!
//! Every node is an [`actix_cluster_testkit::TestNode`] configured like the membership
//! scenarios ([`lan_node`]: LAN preset, gossip, plaintext) plus a [`RegistryConfig`] with
//! [`VOTERS`] voters, ephemeral or durable (a temporary directory per node). Each node hosts
//! one [`Sink`], and every name registered from a node points at that node's sink: the
//! registry stores one location per name, and nothing is sent to the actor, so one actor
//! serves for any number of names.
//!
//! Registrations are made from all nodes at once; those made on a follower are forwarded to
//! the leader by the library, which is the path most callers take in a real cluster.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock, mpsc};
use std::time::{Duration, Instant};

use actix_cluster::prelude::*;
use actix_cluster::{NameEntry, RegistryConfig, RegistryError, RegistryStatus};
use actix_cluster_testkit::TestNode;
use futures::FutureExt;
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::actors::Sink;
use crate::baseline::rate;
use crate::latency::{Percentiles, Recorder};
use crate::membership::lan_node;
use crate::{BenchResult, median, ms, round};

/// Voters of every scenario's registry (the 3-voter cluster).
pub const VOTERS: usize = 3;

/// How long a registry may take to elect its first leader once the nodes run: the bootstrap
/// delay, one election and the members joining, with room for a slow machine. Reaching it
/// means the registry is broken, not slow.
pub const FORMATION_DEADLINE: Duration = Duration::from_secs(30);

/// How long every replica may take to list what a write run registered, after the last
/// registration returned. Replication lags commit by one heartbeat or append round.
const REPLICATION_DEADLINE: Duration = Duration::from_secs(15);

/// Pause between two status polls of a wait. Only how quickly the harness notices depends on
/// it; no figure is taken from a poll.
const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// How often the `registry_failover` scenario starts a new registration; bounds how late after
/// the registry recovers the first success can complete.
const ATTEMPT_INTERVAL: Duration = Duration::from_millis(5);

/// Registration attempts of the failover scenario allowed in flight at once: attempts sent to
/// the dead leader may each wait out the request timeout, and the harness must not pile up
/// tasks without bound if the registry never recovers.
const MAX_ATTEMPTS_IN_FLIGHT: usize = 2_000;

/// The registry settings of every scenario: [`RegistryConfig::new`] (LAN timing) with
/// [`VOTERS`] voters; storage is chosen per cluster.
pub fn registry_config() -> RegistryConfig {
    RegistryConfig::new().voters(VOTERS)
}

/// Whether a registry keeps its Raft state in memory or on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// [`RegistryConfig::ephemeral`].
    Ephemeral,
    /// [`RegistryConfig::durable`] in a fresh temporary directory per node.
    Durable,
}

impl Storage {
    /// `"ephemeral"` or `"durable"`, as in the JSON keys.
    pub fn as_str(self) -> &'static str {
        match self {
            Storage::Ephemeral => "ephemeral",
            Storage::Durable => "durable",
        }
    }
}

/// An in-process cluster whose members all hold a registry replica.
#[derive(Debug)]
pub struct RegistryCluster {
    /// `None` once killed.
    nodes: Vec<Option<TestNode>>,
    /// Node names, by index (kept for killed nodes, to name a dead leader).
    names: Vec<String>,
    /// Each node's sink, the target of the names registered from that node.
    sinks: Vec<RemoteAddr<Sink>>,
    config: RegistryConfig,
    /// Declared after `nodes` so that the directories are removed only after the nodes using
    /// them have stopped (fields drop in declaration order).
    _dirs: Vec<TempDir>,
}

/// The registry as the cluster agrees on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Formed {
    /// Index of the node every live node names as leader.
    pub leader: usize,
    /// The voters, by node name.
    pub voters: Vec<String>,
}

/// The outcome of one write run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WriteRun {
    /// Registrations that returned `Ok` (every one, or the run fails).
    pub registered: u64,
    /// Registrations in flight at once, across all nodes.
    pub in_flight: usize,
    /// From starting the first registration until the last returned.
    pub elapsed: Duration,
    /// `registered / elapsed`.
    pub per_s: f64,
}

/// The outcome of one lookup run: percentiles of each kind of lookup, measured in interleaved
/// rounds over the same keys in the same order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LookupRun {
    /// Distinct names looked up.
    pub keys: usize,
    /// Names in the node's replica (the keys and any others).
    pub table: usize,
    /// `system.lookup_entry(name)`, polled once.
    pub lookup_entry: Percentiles,
    /// `system.lookup::<Sink>(name)`, polled once: the entry plus building the address.
    pub lookup: Percentiles,
    /// The baseline: `HashMap<String, NameEntry>::get(name).cloned()` over the same keys.
    pub hashmap: Percentiles,
    /// Two `Instant::now()` calls with nothing between: the floor of every sample above.
    pub timer: Percentiles,
}

/// The outcome of one leader kill.
#[derive(Debug, Clone, PartialEq)]
pub struct Failover {
    /// From just before the kill until the first registration started after it returned `Ok`.
    pub took: Duration,
    /// Attempts started after the kill that returned before the first success, plus that one.
    pub attempts: u64,
    /// Failed attempts started after the kill, by kind of error.
    pub errors: BTreeMap<&'static str, u64>,
    /// The killed leader's node name.
    pub old_leader: String,
    /// The leader the surviving node names after the success, if it names one.
    pub new_leader: Option<String>,
    /// From just before the kill until the survivor's `registry_status()` first named another
    /// leader (checked every attempt interval, and at the first success, which then bounds
    /// it): how much of `took` the election was.
    pub elected: Option<Duration>,
}

impl RegistryCluster {
    /// Starts `size` nodes named `n0`, `n1`, … of the cluster `cluster`, node 0 first and every
    /// other node seeded with node 0's address, each hosting a [`Sink`]. Returns at once; see
    /// [`wait_formed`](Self::wait_formed).
    pub fn start(cluster: &str, size: usize, storage: Storage) -> BenchResult<Self> {
        if size < VOTERS {
            return Err(
                format!("a {VOTERS}-voter registry needs {VOTERS} nodes, not {size}").into(),
            );
        }
        let config = registry_config();
        let mut nodes = Vec::with_capacity(size);
        let mut names = Vec::with_capacity(size);
        let mut sinks = Vec::with_capacity(size);
        let mut dirs = Vec::new();
        let mut seed: Option<String> = None;
        for i in 0..size {
            let name = format!("n{i}");
            let registry = match storage {
                Storage::Ephemeral => config.clone(),
                Storage::Durable => {
                    let dir = tempfile::Builder::new()
                        .prefix(&format!("cluster-bench-{cluster}-{name}-"))
                        .tempdir()?;
                    let registry = config.clone().durable(dir.path());
                    dirs.push(dir);
                    registry
                }
            };
            let mut builder = lan_node(&name).registry(registry);
            if let Some(seed) = &seed {
                builder = builder.seed_nodes([seed.clone()]);
            }
            let node = TestNode::start(cluster, builder.build()?, |s| s)?;
            if seed.is_none() {
                seed = Some(node.system().local_addr().to_string());
            }
            sinks.push(node.run(|s| async move { s.start_actor(Sink::default()) })?);
            nodes.push(Some(node));
            names.push(name);
        }
        Ok(Self {
            nodes,
            names,
            sinks,
            config,
            _dirs: dirs,
        })
    }

    /// The registry settings every node runs with.
    pub fn config(&self) -> &RegistryConfig {
        &self.config
    }

    /// Indexes of the nodes still running.
    pub fn alive(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].is_some())
            .collect()
    }

    fn node(&self, index: usize) -> BenchResult<&TestNode> {
        self.nodes
            .get(index)
            .and_then(Option::as_ref)
            .ok_or_else(|| format!("node {index} does not exist or was killed").into())
    }

    /// `registry_status()` as node `index` answers it.
    pub fn status(&self, index: usize) -> BenchResult<Result<RegistryStatus, RegistryError>> {
        Ok(self
            .node(index)?
            .run(|s| async move { s.registry_status().await })?)
    }

    /// The index of the node a status names as leader. The status names nodes by name; an
    /// id's `Display` form is accepted too, so that either choice of the library works.
    fn index_of(&self, leader: &str) -> Option<usize> {
        self.names.iter().position(|n| n == leader).or_else(|| {
            self.nodes.iter().position(|node| {
                node.as_ref()
                    .is_some_and(|node| node.system().node_id().to_string() == leader)
            })
        })
    }

    /// Waits until every live node names the same live leader and `min(VOTERS, live nodes)`
    /// voters.
    pub fn wait_formed(&self, timeout: Duration) -> BenchResult<Formed> {
        let deadline = Instant::now() + timeout;
        let alive = self.alive();
        let want_voters = VOTERS.min(alive.len());
        loop {
            let mut seen = Vec::with_capacity(alive.len());
            for &i in &alive {
                seen.push((i, self.status(i)?));
            }
            let leaders: Vec<Option<&str>> = seen
                .iter()
                .map(|(_, s)| match s {
                    Ok(s) if s.voters.len() == want_voters => s.leader.as_deref(),
                    _ => None,
                })
                .collect();
            if let Some(Some(first)) = leaders.first()
                && leaders.iter().all(|l| *l == Some(*first))
                && let Some(leader) = self.index_of(first)
                && self.nodes[leader].is_some()
                && let Some((_, Ok(status))) = seen.first()
            {
                return Ok(Formed {
                    leader,
                    voters: status.voters.clone(),
                });
            }
            if Instant::now() >= deadline {
                let views: Vec<String> = seen
                    .iter()
                    .map(|(i, s)| match s {
                        Ok(s) => format!(
                            "{}: leader {:?}, {} voters",
                            self.names[*i],
                            s.leader,
                            s.voters.len()
                        ),
                        Err(e) => format!("{}: {e}", self.names[*i]),
                    })
                    .collect();
                return Err(format!(
                    "the registry did not agree on a leader with {want_voters} voters within \
                     {:.1} s ({})",
                    timeout.as_secs_f64(),
                    views.join("; ")
                )
                .into());
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// Registers the names `{prefix}0` … `{prefix}{names - 1}` with `in_flight` registrations
    /// outstanding at any time, spread over the live nodes (writer `w` runs on live node
    /// `w % live` and registers every name `n` with `n % in_flight == w`, one after the other).
    ///
    /// The clock runs from just before the first node is told to start until the last
    /// registration returned. Any failed registration fails the run. Afterwards (not timed),
    /// waits until every live node's replica lists all the names, so that the figure counts
    /// only registrations the whole cluster holds.
    pub fn write(&self, prefix: &str, names: u64, in_flight: usize) -> BenchResult<WriteRun> {
        let alive = self.alive();
        if alive.is_empty() || in_flight == 0 {
            return Err("a write run needs a live node and at least one writer".into());
        }
        let deadline = self.write_deadline(names);
        let started = Instant::now();
        let mut pending = Vec::with_capacity(alive.len());
        for (k, &i) in alive.iter().enumerate() {
            let writers: Vec<u64> = (k..in_flight)
                .step_by(alive.len())
                .map(|w| w as u64)
                .collect();
            let sink = self.sinks[i].clone();
            let prefix = prefix.to_owned();
            let stride = in_flight as u64;
            let done = self.node(i)?.run(move |s| async move {
                spawn_writers(s, sink, prefix, writers, stride, names)
            })?;
            pending.push((i, done));
        }
        let mut registered = 0;
        let mut last = started;
        for (i, done) in pending {
            let wait = deadline.saturating_duration_since(Instant::now());
            let node = done.recv_timeout(wait).map_err(|_| {
                format!(
                    "{}'s writers did not finish within {:.0} s",
                    self.names[i],
                    (deadline - started).as_secs_f64()
                )
            })?;
            if let Some(e) = node.error {
                return Err(format!(
                    "registration failed on {} after {} of its registrations: {e}",
                    self.names[i], node.registered
                )
                .into());
            }
            registered += node.registered;
            last = last.max(node.last);
        }
        let elapsed = last.saturating_duration_since(started);
        if registered != names {
            return Err(format!("{registered} of {names} registrations returned").into());
        }
        self.wait_listed(prefix, names)?;
        Ok(WriteRun {
            registered,
            in_flight,
            elapsed,
            per_s: rate(registered, elapsed),
        })
    }

    /// A deadline no working registry reaches: 60 s plus 1 ms per registration.
    fn write_deadline(&self, names: u64) -> Instant {
        Instant::now() + Duration::from_secs(60) + Duration::from_millis(names)
    }

    /// Waits until every live node lists `names` names under `prefix`.
    fn wait_listed(&self, prefix: &str, names: u64) -> BenchResult<()> {
        let deadline = Instant::now() + REPLICATION_DEADLINE;
        for i in self.alive() {
            loop {
                let p = prefix.to_owned();
                let listed = self
                    .node(i)?
                    .run(move |s| async move { s.list_names(&p).await.map(|l| l.len()) })?;
                match listed {
                    Ok(n) if n as u64 == names => break,
                    _ if Instant::now() >= deadline => {
                        return Err(format!(
                            "{}'s replica lists {} of the {names} names under {prefix:?} {:.0} s \
                             after they were registered",
                            self.names[i],
                            match listed {
                                Ok(n) => n.to_string(),
                                Err(e) => format!("none ({e})"),
                            },
                            REPLICATION_DEADLINE.as_secs_f64()
                        )
                        .into());
                    }
                    _ => std::thread::sleep(POLL_INTERVAL),
                }
            }
        }
        Ok(())
    }

    /// Cached lookup latency on node `index` over every name under `prefix` in its replica:
    /// `samples` lookups of each kind, in `rounds` interleaved rounds (`lookup_entry`,
    /// `lookup`, the `HashMap` baseline, the timer), keys in the same pseudo-random order for
    /// every kind.
    ///
    /// Each lookup future is polled exactly once (`now_or_never`): a lookup served from the
    /// local replica completes on its first poll, and one that does not fails the run rather
    /// than measuring something else.
    pub fn lookup_latency(
        &self,
        index: usize,
        prefix: &str,
        samples: u64,
        rounds: u64,
    ) -> BenchResult<LookupRun> {
        let prefix = prefix.to_owned();
        self.node(index)?
            .run(move |s| async move { measure_lookups(s, &prefix, samples, rounds.max(1)).await })?
            .map_err(Into::into)
    }

    /// Crashes node `index` (as [`TestNode::kill`]: no goodbye, sockets close, its actix
    /// system stops) and returns the instant just before.
    pub fn kill(&mut self, index: usize) -> BenchResult<Instant> {
        let node = self.take(index)?;
        let at = Instant::now();
        node.kill();
        Ok(at)
    }

    fn take(&mut self, index: usize) -> BenchResult<TestNode> {
        self.nodes
            .get_mut(index)
            .and_then(Option::take)
            .ok_or_else(|| format!("node {index} does not exist or is already dead").into())
    }

    /// Shuts node `index` down gracefully (a registry leader hands over first).
    pub fn shut_down(&mut self, index: usize) -> BenchResult<Instant> {
        let node = self.take(index)?;
        let at = Instant::now();
        node.stop();
        Ok(at)
    }

    /// Stops every live node gracefully, all at once, then removes the data directories.
    pub fn stop(mut self) {
        let nodes: Vec<TestNode> = self.nodes.iter_mut().filter_map(Option::take).collect();
        std::thread::scope(|scope| {
            for node in nodes {
                scope.spawn(move || node.stop());
            }
        });
    }
}

/// What one node's writers did.
#[derive(Debug)]
struct NodeWrites {
    registered: u64,
    /// When the node's last writer finished.
    last: Instant,
    /// The first failure, if any.
    error: Option<String>,
}

/// Spawns one task per writer on the current arbiter and returns a receiver for their joint
/// result: the caller (the harness thread) must not block the node's arbiter while they run.
fn spawn_writers(
    system: ClusterSystem,
    sink: RemoteAddr<Sink>,
    prefix: String,
    writers: Vec<u64>,
    stride: u64,
    names: u64,
) -> mpsc::Receiver<NodeWrites> {
    let (tx, rx) = mpsc::channel();
    let tasks: Vec<_> = writers
        .into_iter()
        .map(|w| {
            let (system, sink, prefix) = (system.clone(), sink.clone(), prefix.clone());
            actix_rt::spawn(async move {
                let mut done = 0u64;
                let mut n = w;
                while n < names {
                    let name = format!("{prefix}{n}");
                    if let Err(e) = system.register_name(&name, &sink).await {
                        return (done, Instant::now(), Some(format!("{name}: {e}")));
                    }
                    done += 1;
                    n += stride;
                }
                (done, Instant::now(), None)
            })
        })
        .collect();
    actix_rt::spawn(async move {
        let mut out = NodeWrites {
            registered: 0,
            last: Instant::now(),
            error: None,
        };
        for task in tasks {
            match task.await {
                Ok((done, last, error)) => {
                    out.registered += done;
                    out.last = out.last.max(last);
                    if out.error.is_none() {
                        out.error = error;
                    }
                }
                Err(e) => {
                    out.error
                        .get_or_insert_with(|| format!("writer task died: {e}"));
                }
            }
        }
        // The harness may have given up waiting; then nobody needs the result.
        let _ = tx.send(out);
    });
    rx
}

/// A fixed xorshift sequence of indexes into the key set: every kind of lookup visits the same
/// keys in the same order, and the order defeats the prefetcher as real lookups would.
#[derive(Debug, Clone)]
struct KeyOrder(u64);

impl KeyOrder {
    fn next(&mut self, len: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % len as u64) as usize
    }
}

/// Times `per_round` calls of `lookup` on the keys `order` picks, into `rec`; the first error
/// ends the run. Returns the order advanced past the keys it used.
fn time_lookups<T>(
    keys: &[String],
    mut order: KeyOrder,
    per_round: u64,
    rec: &mut Recorder,
    mut lookup: impl FnMut(&str) -> Result<T, String>,
) -> Result<KeyOrder, String> {
    for _ in 0..per_round {
        let key = std::hint::black_box(keys[order.next(keys.len())].as_str());
        let start = Instant::now();
        let found = lookup(key);
        let took = start.elapsed();
        std::hint::black_box(found?);
        rec.record(took);
    }
    Ok(order)
}

/// The body of [`RegistryCluster::lookup_latency`], on the node's arbiter.
async fn measure_lookups(
    system: ClusterSystem,
    prefix: &str,
    samples: u64,
    rounds: u64,
) -> Result<LookupRun, String> {
    let entries = system
        .list_names(prefix)
        .await
        .map_err(|e| format!("listing the names under {prefix:?}: {e}"))?;
    if entries.is_empty() {
        return Err(format!("no names under {prefix:?} to look up"));
    }
    let table = system
        .registry_status()
        .await
        .map_err(|e| format!("registry status: {e}"))?
        .names;
    let keys: Vec<String> = entries.iter().map(|e| e.name.clone()).collect();
    let map: HashMap<String, NameEntry> =
        entries.into_iter().map(|e| (e.name.clone(), e)).collect();
    let new = || Recorder::new().map_err(|e| e.to_string());
    let (mut entry_rec, mut addr_rec, mut map_rec, mut timer_rec) =
        (new()?, new()?, new()?, new()?);
    let per_round = samples.div_ceil(rounds);
    let mut order = KeyOrder(0x9E37_79B9_7F4A_7C15);
    for _ in 0..rounds {
        // Same keys, same order, for each kind within a round.
        time_lookups(
            &keys,
            order.clone(),
            per_round,
            &mut entry_rec,
            |key| match system.lookup_entry(key).now_or_never() {
                Some(Ok(entry)) => Ok(entry),
                Some(Err(e)) => Err(format!("lookup_entry({key:?}): {e}")),
                None => Err(not_local("lookup_entry")),
            },
        )?;
        time_lookups(
            &keys,
            order.clone(),
            per_round,
            &mut addr_rec,
            |key| match system.lookup::<Sink>(key).now_or_never() {
                Some(Ok(addr)) => Ok(addr),
                Some(Err(e)) => Err(format!("lookup({key:?}): {e}")),
                None => Err(not_local("lookup")),
            },
        )?;
        let next_order = time_lookups(&keys, order, per_round, &mut map_rec, |key| {
            map.get(key)
                .cloned()
                .ok_or_else(|| format!("{key:?} missing from the baseline map"))
        })?;

        for _ in 0..per_round {
            let start = Instant::now();
            timer_rec.record(start.elapsed());
        }
        order = next_order;
        // Let the arbiter run whatever else it hosts between rounds.
        tokio::task::yield_now().await;
    }
    Ok(LookupRun {
        keys: keys.len(),
        table,
        lookup_entry: entry_rec.percentiles(),
        lookup: addr_rec.percentiles(),
        hashmap: map_rec.percentiles(),
        timer: timer_rec.percentiles(),
    })
}

fn not_local(call: &str) -> String {
    format!(
        "{call} did not complete on its first poll: it is not served from the local replica, \
         so a cached-lookup latency cannot be measured"
    )
}

/// A short name for the kind of a registry error, for counting.
pub fn error_kind(e: &RegistryError) -> &'static str {
    match e {
        RegistryError::NameTaken { .. } => "name_taken",
        RegistryError::NotFound(_) => "not_found",
        RegistryError::TypeMismatch { .. } => "type_mismatch",
        RegistryError::InvalidName { .. } => "invalid_name",
        RegistryError::NoQuorum => "no_quorum",
        RegistryError::Timeout(_) => "timeout",
        RegistryError::NotFormed { .. } => "not_formed",
        RegistryError::Unavailable(_) => "unavailable",
        RegistryError::Create(_) => "create",
        RegistryError::Remote(_) => "remote",
        RegistryError::SystemStopped => "system_stopped",
        _ => "other",
    }
}

/// Deadline for registrations to resume after a leader kill: ten election timeouts (upper
/// bound), at least 10 s.
pub fn failover_deadline(config: &RegistryConfig) -> Duration {
    (config.election_timeout.1 * 10).max(Duration::from_secs(10))
}

/// How the leader of a `registry_failover` run goes away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// [`TestNode::kill`]: no goodbye; the others wait out its lease and elect.
    Crash,
    /// [`TestNode::stop`]: a graceful shutdown, in which the leader hands over first.
    Shutdown,
}

/// One run of the `registry_failover` scenario: a fresh cluster of [`VOTERS`] nodes, formed and
/// warmed up with a few registrations; then the leader is crashed with [`TestNode::kill`] (or
/// shut down, per `ending`) while a survivor starts a registration of a new name every 5 ms.
/// The figure is the time from just before the kill until the first registration *started
/// after the kill* returned `Ok`.
///
/// Attempts overlap rather than follow each other, so an attempt stuck on the dead leader
/// (until its request timeout) does not hide the recovery from later ones.
pub fn failover(cluster: &str, storage: Storage, ending: Ending) -> BenchResult<Failover> {
    let mut c = RegistryCluster::start(cluster, VOTERS, storage)?;
    let result = measure_failover(&mut c, ending);
    c.stop();
    result
}

fn measure_failover(c: &mut RegistryCluster, ending: Ending) -> BenchResult<Failover> {
    c.wait_formed(FORMATION_DEADLINE)?;
    // Every node's path to the leader (forwarding included) has carried a write before the
    // kill, so connection set-up is not part of the figure.
    c.write("warm/", 30, 3)?;
    let formed = c.wait_formed(FORMATION_DEADLINE)?;
    let old_leader = c.names[formed.leader].clone();
    let survivor = c
        .alive()
        .into_iter()
        .find(|&i| i != formed.leader)
        .ok_or("no node besides the leader")?;
    let sink = c.sinks[survivor].clone();
    let killed_at: Arc<OnceLock<Instant>> = Arc::new(OnceLock::new());
    let deadline = failover_deadline(c.config());
    let stamp = Arc::clone(&killed_at);
    let old = old_leader.clone();
    let done = c
        .node(survivor)?
        .run(move |s| async move { spawn_attempts(s, sink, old, stamp, deadline) })?;
    // The attempter is running (and succeeding) before the clock starts; only attempts that
    // start after this stamp count.
    let at = Instant::now();
    let _ = killed_at.set(at);
    match ending {
        Ending::Crash => c.kill(formed.leader)?,
        Ending::Shutdown => c.shut_down(formed.leader)?,
    };
    let outcome = done
        .recv_timeout(deadline + Duration::from_secs(5))
        .map_err(|_| "the surviving node's attempter did not report")??;
    let new_leader = match c.status(survivor)? {
        Ok(status) => status.leader,
        Err(_) => None,
    };
    Ok(Failover {
        took: outcome.succeeded.saturating_duration_since(at),
        attempts: outcome.attempts,
        errors: outcome.errors,
        old_leader,
        new_leader,
        elected: outcome.elected.map(|e| e.saturating_duration_since(at)),
    })
}

/// What the failover attempter saw after the kill.
#[derive(Debug)]
struct Attempts {
    /// When the first attempt started after the kill returned `Ok`.
    succeeded: Instant,
    attempts: u64,
    errors: BTreeMap<&'static str, u64>,
    /// When the survivor first named a leader other than the killed one.
    elected: Option<Instant>,
}

/// Starts the failover attempter on the current arbiter; the receiver gets its outcome, or an
/// error once `deadline` has passed since the kill without a success.
fn spawn_attempts(
    system: ClusterSystem,
    sink: RemoteAddr<Sink>,
    old_leader: String,
    killed_at: Arc<OnceLock<Instant>>,
    deadline: Duration,
) -> mpsc::Receiver<Result<Attempts, String>> {
    let (tx, rx) = mpsc::channel();
    actix_rt::spawn(async move {
        let outcome = attempt_until_success(system, sink, &old_leader, killed_at, deadline).await;
        let _ = tx.send(outcome);
    });
    rx
}

async fn attempt_until_success(
    system: ClusterSystem,
    sink: RemoteAddr<Sink>,
    old_leader: &str,
    killed_at: Arc<OnceLock<Instant>>,
    deadline: Duration,
) -> Result<Attempts, String> {
    type Done = (Instant, Instant, Result<(), &'static str>);
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<Done>();
    let mut ticker = tokio::time::interval(ATTEMPT_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut next = 0u64;
    let mut in_flight = 0usize;
    let mut attempts = 0u64;
    let mut errors: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut elected: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                if let Some(k) = killed_at.get()
                    && k.elapsed() >= deadline
                {
                    return Err(format!(
                        "no registration succeeded within {:.1} s of the leader kill \
                         ({attempts} attempts; errors: {errors:?})",
                        deadline.as_secs_f64()
                    ));
                }
                if elected.is_none()
                    && killed_at.get().is_some()
                    && let Ok(status) = system.registry_status().await
                    && status.leader.is_some_and(|l| l != old_leader)
                {
                    elected = Some(Instant::now());
                }
                if in_flight >= MAX_ATTEMPTS_IN_FLIGHT {
                    continue;
                }
                in_flight += 1;
                let name = format!("failover/{next}");
                next += 1;
                let (system, sink, done_tx) = (system.clone(), sink.clone(), done_tx.clone());
                actix_rt::spawn(async move {
                    let started = Instant::now();
                    let result = system
                        .register_name(&name, &sink)
                        .await
                        .map(drop)
                        .map_err(|e| error_kind(&e));
                    let _ = done_tx.send((started, Instant::now(), result));
                });
            }
            Some((started, finished, result)) = done_rx.recv() => {
                in_flight = in_flight.saturating_sub(1);
                let Some(&k) = killed_at.get() else { continue };
                if started < k {
                    continue;
                }
                attempts += 1;
                match result {
                    Ok(()) => {
                        // The success can land between two status checks; the leader it
                        // went through was known by then at the latest.
                        if elected.is_none()
                            && let Ok(status) = system.registry_status().await
                            && status.leader.is_some_and(|l| l != old_leader)
                        {
                            elected = Some(finished);
                        }
                        return Ok(Attempts {
                            succeeded: finished,
                            attempts,
                            errors,
                            elected,
                        });
                    }
                    Err(kind) => *errors.entry(kind).or_default() += 1,
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The scenarios as `cluster-bench` reports them.
// ---------------------------------------------------------------------------------------------

/// Sizes of one run of the registry scenarios.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// Measured registrations per `registry_write` run (each storage mode).
    pub names: u64,
    /// Unmeasured registrations before each `registry_write` run.
    pub warmup: u64,
    /// Registrations in flight at once, across the nodes.
    pub in_flight: usize,
    /// Names registered for the `registry_lookup` key set.
    pub lookup_names: u64,
    /// Recorded lookups of each kind in `registry_lookup`.
    pub lookup_samples: u64,
    /// `registry_lookup` runs each kind this many times in turn, splitting the samples.
    pub lookup_rounds: u64,
    /// Leader kills measured by `registry_failover`, each in a fresh cluster; the median is
    /// reported.
    pub failover_runs: usize,
}

impl Plan {
    /// `cluster-bench`'s full run.
    pub fn full() -> Self {
        Self {
            names: 100_000,
            warmup: 5_000,
            in_flight: 256,
            lookup_names: 10_000,
            lookup_samples: 1_000_000,
            lookup_rounds: 10,
            failover_runs: 3,
        }
    }

    /// `cluster-bench --quick`.
    pub fn quick() -> Self {
        Self {
            names: 10_000,
            warmup: 1_000,
            lookup_samples: 100_000,
            failover_runs: 1,
            ..Self::full()
        }
    }
}

/// The JSON objects of the three registry scenarios.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// `scenarios.registry_write`.
    pub write: Value,
    /// `scenarios.registry_lookup`.
    pub lookup: Value,
    /// `scenarios.registry_failover`.
    pub failover: Value,
}

/// Runs `registry_write` (an ephemeral and a durable cluster), `registry_lookup` (on the
/// ephemeral cluster, after its write run) and `registry_failover`, telling `progress` what
/// each measured. A scenario that fails reports `null` figures and an `error` string, and the
/// others still run, as the membership scenarios do.
pub fn scenarios(plan: &Plan, progress: &dyn Fn(&str)) -> Report {
    let ephemeral = cluster_runs(plan, Storage::Ephemeral, progress);
    let durable = cluster_runs(plan, Storage::Durable, progress);
    let per_s = |r: &Result<WriteRun, String>| r.as_ref().ok().map(|w| w.per_s.round());
    let ms_of = |r: &Result<WriteRun, String>| r.as_ref().ok().map(|w| round(ms(w.elapsed), 1));
    let error = |r: &Result<WriteRun, String>| r.as_ref().err().cloned();
    let ratio = match (&durable.write, &ephemeral.write) {
        (Ok(d), Ok(e)) if e.per_s > 0.0 => Some(round(d.per_s / e.per_s, 3)),
        _ => None,
    };
    let write = json!({
        "nodes": VOTERS,
        "voters": VOTERS,
        "in_flight": plan.in_flight,
        "names": plan.names,
        "ephemeral_per_s": per_s(&ephemeral.write),
        "durable_per_s": per_s(&durable.write),
        "ratio_durable_to_ephemeral": ratio,
        "ephemeral_ms": ms_of(&ephemeral.write),
        "durable_ms": ms_of(&durable.write),
        "ephemeral_error": error(&ephemeral.write),
        "durable_error": error(&durable.write),
    });
    let lookup = match ephemeral.lookup {
        Some(Ok(l)) => lookup_json(&l),
        Some(Err(e)) => lookup_null(e),
        None => lookup_null("the lookup run did not start".to_owned()),
    };
    Report {
        write,
        lookup,
        failover: failover_runs(plan, progress),
    }
}

/// One registry cluster's runs: the write run of its storage mode and, on the ephemeral
/// cluster only, the lookup run (lookups read the in-memory replica whatever the storage).
struct ClusterRuns {
    write: Result<WriteRun, String>,
    lookup: Option<Result<LookupRun, String>>,
}

fn cluster_runs(plan: &Plan, storage: Storage, progress: &dyn Fn(&str)) -> ClusterRuns {
    let name = storage.as_str();
    let with_lookup = storage == Storage::Ephemeral;
    let failed = |e: String| ClusterRuns {
        lookup: with_lookup.then(|| Err(e.clone())),
        write: Err(e),
    };
    let cluster = match RegistryCluster::start(&format!("registry-{name}"), VOTERS, storage) {
        Ok(c) => c,
        Err(e) => {
            progress(&format!("registry ({name}): FAILED to start: {e}"));
            return failed(format!("starting the cluster: {e}"));
        }
    };
    let formed = match cluster.wait_formed(FORMATION_DEADLINE) {
        Ok(f) => f,
        Err(e) => {
            progress(&format!("registry ({name}): FAILED to form: {e}"));
            cluster.stop();
            return failed(e.to_string());
        }
    };
    progress(&format!(
        "registry ({name}): leader n{}, voters {:?}",
        formed.leader, formed.voters
    ));
    let write = cluster
        .write("warm/", plan.warmup, plan.in_flight)
        .and_then(|_| cluster.write("bench/", plan.names, plan.in_flight))
        .map_err(|e| e.to_string());
    match &write {
        Ok(w) => progress(&format!(
            "registry_write ({name}): {:.0} registrations/s ({} in {:.2} s, {} in flight)",
            w.per_s,
            w.registered,
            w.elapsed.as_secs_f64(),
            w.in_flight
        )),
        Err(e) => progress(&format!("registry_write ({name}): FAILED: {e}")),
    }
    let lookup = with_lookup.then(|| {
        let run = lookup_run(plan, &cluster).map_err(|e| e.to_string());
        match &run {
            Ok(l) => progress(&format!(
                "registry_lookup: lookup_entry p50 {:.0} ns, p99 {:.0} ns, p99.9 {:.0} ns; \
                 lookup p50 {:.0} ns; HashMap get+clone p50 {:.0} ns; timer p50 {:.0} ns \
                 ({} keys, {} names in the replica, {} samples of each)",
                ns(l.lookup_entry.p50_us),
                ns(l.lookup_entry.p99_us),
                ns(l.lookup_entry.p999_us),
                ns(l.lookup.p50_us),
                ns(l.hashmap.p50_us),
                ns(l.timer.p50_us),
                l.keys,
                l.table,
                l.lookup_entry.samples
            )),
            Err(e) => progress(&format!("registry_lookup: FAILED: {e}")),
        }
        run
    });
    cluster.stop();
    ClusterRuns { write, lookup }
}

/// Registers the lookup key set and measures lookups on a follower: not the leader, whose
/// replica applies first, but where most lookups of a cluster happen.
fn lookup_run(plan: &Plan, cluster: &RegistryCluster) -> BenchResult<LookupRun> {
    let formed = cluster.wait_formed(FORMATION_DEADLINE)?;
    cluster.write("lookup/", plan.lookup_names, plan.in_flight)?;
    let follower = cluster
        .alive()
        .into_iter()
        .find(|&i| i != formed.leader)
        .ok_or("no follower to look up on")?;
    cluster.lookup_latency(follower, "lookup/", plan.lookup_samples, plan.lookup_rounds)
}

fn lookup_json(l: &LookupRun) -> Value {
    let kind = |p: &Percentiles| {
        json!({
            "p50_ns": ns(p.p50_us),
            "p99_ns": ns(p.p99_us),
            "p999_ns": ns(p.p999_us),
            "ratio_p50_to_hashmap": (l.hashmap.p50_us > 0.0)
                .then(|| round(p.p50_us / l.hashmap.p50_us, 3)),
        })
    };
    json!({
        "keys": l.keys,
        "table_names": l.table,
        "samples": l.lookup_entry.samples,
        "lookup_entry": kind(&l.lookup_entry),
        "lookup": kind(&l.lookup),
        "hashmap_clone": {
            "p50_ns": ns(l.hashmap.p50_us),
            "p99_ns": ns(l.hashmap.p99_us),
            "p999_ns": ns(l.hashmap.p999_us),
        },
        "timer_p50_ns": ns(l.timer.p50_us),
        "error": null,
    })
}

fn lookup_null(error: String) -> Value {
    json!({
        "keys": null, "table_names": null, "samples": null, "lookup_entry": null,
        "lookup": null, "hashmap_clone": null, "timer_p50_ns": null, "error": error,
    })
}

/// The `registry_failover` runs. A run that fails before any succeeded ends the repetitions,
/// since the next would most likely wait out the same deadline.
fn failover_runs(plan: &Plan, progress: &dyn Fn(&str)) -> Value {
    let mut crash = ending_runs(plan, Ending::Crash, progress);
    let graceful = ending_runs(plan, Ending::Shutdown, progress);
    if let Some(obj) = crash.as_object_mut() {
        obj.insert("graceful".into(), graceful);
    }
    crash
}

/// The runs of one [`Ending`].
fn ending_runs(plan: &Plan, ending: Ending, progress: &dyn Fn(&str)) -> Value {
    let (min, max) = registry_config().election_timeout;
    let (label, verb) = match ending {
        Ending::Crash => ("registry_failover", "killing"),
        Ending::Shutdown => ("registry_failover graceful", "shutting down"),
    };
    let mut runs: Vec<Failover> = Vec::new();
    let mut errors: Vec<String> = Vec::new();
    for run in 0..plan.failover_runs {
        let cluster = format!("registry-failover-{ending:?}-{run}").to_lowercase();
        match failover(&cluster, Storage::Ephemeral, ending) {
            Ok(f) => {
                progress(&format!(
                    "{label} run {}: a registration succeeded {:.0} ms after {verb} \
                     leader {} ({:.2} × the {:.0} ms upper election timeout; the survivor saw \
                     a new leader after {}; {} attempts, errors {:?}; new leader {:?})",
                    run + 1,
                    ms(f.took),
                    f.old_leader,
                    f.took.as_secs_f64() / max.as_secs_f64(),
                    ms(max),
                    f.elected
                        .map_or_else(|| "never".to_owned(), |e| format!("{:.0} ms", ms(e))),
                    f.attempts,
                    f.errors,
                    f.new_leader
                ));
                runs.push(f);
            }
            Err(e) => {
                progress(&format!("{label} run {}: FAILED: {e}", run + 1));
                errors.push(format!("run {}: {e}", run + 1));
                if runs.is_empty() {
                    break;
                }
            }
        }
    }
    let median_ms = median(runs.iter().map(|f| ms(f.took)).collect());
    let runs_json: Vec<Value> = runs
        .iter()
        .map(|f| {
            json!({
                "ms": round(ms(f.took), 1),
                "attempts": f.attempts,
                "errors": f.errors,
                "old_leader": f.old_leader,
                "new_leader": f.new_leader,
                "elected_ms": f.elected.map(|e| round(ms(e), 1)),
            })
        })
        .collect();
    json!({
        "ms": median_ms.map(|m| round(m, 1)),
        "election_timeout_min_ms": round(ms(min), 1),
        "election_timeout_max_ms": round(ms(max), 1),
        "ratio_to_election_timeout_min": median_ms.map(|m| round(m / ms(min), 3)),
        "ratio_to_election_timeout_max": median_ms.map(|m| round(m / ms(max), 3)),
        "runs": runs_json,
        "error": if errors.is_empty() { None } else { Some(errors.join("; ")) },
    })
}

/// Microseconds (as [`Percentiles`] holds them) to whole nanoseconds.
fn ns(us: f64) -> f64 {
    (us * 1_000.0).round()
}
