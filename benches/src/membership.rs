//! The membership scenarios: how long an in-process cluster takes to form, how long a crash
//! takes to be seen, and whether an idle cluster suspects anyone.
//!
//! Every node is an [`actix_cluster_testkit::TestNode`] (its own thread and actix `System`, plus
//! its network thread), plaintext, with the LAN preset, gossip discovery and node 0 as the only
//! seed. Right after a node starts, a `Watcher` actor on its arbiter subscribes to its
//! [`ClusterEvent`]s and writes what it sees, stamped with the instant it handled each event,
//! on a [`Board`] shared by all nodes. The harness thread waits on that board with a deadline;
//! timings come from the watchers' stamps, not from when the harness thread woke up, so how
//! quickly the harness notices does not enter the figures.
//!
//! Subscribing rather than polling `members()` means a state that lasts less than a polling
//! interval is still seen, and the times are those of the events themselves.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_cluster::prelude::*;
use actix_cluster::{ClusterConfigBuilder, FailureDetectorConfig, MembershipConfig};
use actix_cluster_testkit::TestNode;

use crate::BenchResult;

/// How long the harness waits for `members()` to agree with the events once every watcher has
/// seen the cluster formed. Both read the same table, so any wait at all means a bug.
const MEMBERS_AGREE_DEADLINE: Duration = Duration::from_secs(2);

/// A node's configuration in every membership scenario: LAN preset, decentralized gossip,
/// plaintext on an OS-chosen loopback port.
pub fn lan_node(name: &str) -> ClusterConfigBuilder {
    ClusterConfig::lan()
        .node_name(name)
        .listen("127.0.0.1:0")
        .architecture(Architecture::Decentralized)
        .discovery(DiscoveryMethod::Gossip)
        .insecure_plaintext()
}

/// How many standard deviations past the expected heartbeat arrival the phi-accrual detector
/// reaches `threshold`, under the same logistic approximation of the normal tail that
/// `actix-cluster` uses (`phi = -log10 P`, `P = e^-z / (1 + e^-z)`,
/// `z = y (1.5976 + 0.070566 y²)`). About 5.22 for the LAN threshold of 8.
///
/// Solved by bisection because the approximation has no closed-form inverse; phi grows
/// monotonically with `y`, so bisection cannot miss.
pub fn phi_threshold_deviations(threshold: f64) -> f64 {
    let phi = |y: f64| {
        let z = y * (1.5976 + 0.070566 * y * y);
        // -ln P in the form that neither overflows nor underflows for large z.
        let minus_ln_p = if z > 0.0 {
            z + (-z).exp().ln_1p()
        } else {
            z.exp().ln_1p()
        };
        minus_ln_p / std::f64::consts::LN_10
    };
    let (mut lo, mut hi) = (0.0_f64, 1_000.0_f64);
    if threshold.is_nan() || threshold <= phi(lo) {
        return 0.0;
    }
    for _ in 0..200 {
        let mid = (lo + hi) / 2.0;
        if phi(mid) < threshold {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    (lo + hi) / 2.0
}

/// The configured detection bound that `detection` is compared with:
///
/// `heartbeat_interval + acceptable_pause + y(threshold) × min_std_deviation + suspect_to_down`
///
/// where `y` is [`phi_threshold_deviations`]. The first three terms are when phi crosses the
/// threshold after the last heartbeat, assuming the measured mean interval equals the
/// configured one and the measured deviation sits at its floor (loopback heartbeats are far
/// more regular than `min_std_deviation`); the last is how long a member stays Suspect before
/// it is declared Down. For the LAN preset: 250 + 250 + 5.22 × 100 + 800 ≈ 1,822 ms.
pub fn detection_bound(fd: &FailureDetectorConfig, membership: &MembershipConfig) -> Duration {
    fd.heartbeat_interval
        + fd.acceptable_pause
        + fd.min_std_deviation
            .mul_f64(phi_threshold_deviations(fd.threshold))
        + membership.suspect_to_down
}

/// What one node has seen.
#[derive(Debug, Default)]
struct View {
    /// Every member's latest state, as the events told it.
    states: HashMap<NodeId, MemberState>,
    /// Since when this node sees `expected` members Up; `None` while it does not.
    all_up_since: Option<Instant>,
    /// When this node first saw each member in each state (snapshot or event).
    first_seen: HashMap<(NodeId, MemberState), Instant>,
    /// Every event after the snapshot (load reports excluded), in arrival order: counts
    /// suspicions in a window, tells "nothing delivered" apart from "slow", and explains a
    /// false suspicion.
    log: Vec<(Instant, NodeId, MemberState)>,
}

impl View {
    fn up_count(&self) -> usize {
        self.states
            .values()
            .filter(|s| **s == MemberState::Up)
            .count()
    }
}

/// What every node of a cluster has seen, written by the watchers and read by the harness.
#[derive(Debug)]
pub struct Board {
    /// Cluster size: a node sees the cluster formed when this many members are Up.
    expected: usize,
    views: Mutex<Vec<View>>,
    changed: Condvar,
}

impl Board {
    fn new(nodes: usize) -> Self {
        Self {
            expected: nodes,
            views: Mutex::new((0..nodes).map(|_| View::default()).collect()),
            changed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<View>> {
        // A watcher that panicked mid-update leaves a view at worst one event behind; the
        // deadline then reports it, which beats poisoning the whole run.
        self.views.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn record(&self, node: usize, at: Instant, event: ClusterEvent) {
        let (changes, is_event) = match event {
            ClusterEvent::Snapshot(members) => (
                members.into_iter().map(|m| (m.id, m.state)).collect(),
                false,
            ),
            ClusterEvent::MemberJoining(m) => (vec![(m.id, MemberState::Joining)], true),
            ClusterEvent::MemberUp(m) => (vec![(m.id, MemberState::Up)], true),
            ClusterEvent::MemberSuspect(m) => (vec![(m.id, MemberState::Suspect)], true),
            ClusterEvent::MemberDown(m) => (vec![(m.id, MemberState::Down)], true),
            ClusterEvent::MemberLeaving(m) => (vec![(m.id, MemberState::Leaving)], true),
            ClusterEvent::MemberLeft(m) => (vec![(m.id, MemberState::Left)], true),
            // Load reports do not change anyone's state; new kinds of events neither, so far.
            _ => return,
        };
        let mut views = self.lock();
        let Some(view) = views.get_mut(node) else {
            return;
        };
        for (id, state) in changes {
            if is_event {
                view.log.push((at, id.clone(), state));
            }
            view.first_seen.entry((id.clone(), state)).or_insert(at);
            view.states.insert(id, state);
        }
        let all_up = view.up_count() >= self.expected;
        match (all_up, view.all_up_since) {
            (true, None) => view.all_up_since = Some(at),
            (false, Some(_)) => view.all_up_since = None,
            _ => {}
        }
        drop(views);
        self.changed.notify_all();
    }

    /// Waits until `check` returns `Some` or `deadline` passes (then `None`).
    fn wait<T>(&self, deadline: Instant, mut check: impl FnMut(&[View]) -> Option<T>) -> Option<T> {
        let mut views = self.lock();
        loop {
            if let Some(found) = check(&views) {
                return Some(found);
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            views = match self.changed.wait_timeout(views, deadline - now) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }

    /// Every Suspect and Down event the given nodes received in `window`, with how each
    /// suspicion ended, in node order.
    fn suspicions(&self, nodes: &[usize], window: &Range<Instant>) -> Suspicions {
        let views = self.lock();
        let mut out = Suspicions::default();
        for &i in nodes {
            let Some(view) = views.get(i) else {
                continue;
            };
            for (k, (at, id, state)) in view.log.iter().enumerate() {
                if !window.contains(at) {
                    continue;
                }
                match state {
                    MemberState::Suspect => {
                        out.suspect += 1;
                        let end = view.log[k + 1..]
                            .iter()
                            .find(|(_, other, s)| other == id && *s != MemberState::Suspect);
                        out.episodes.push(SuspectEpisode {
                            observer: i,
                            subject: id.name().to_owned(),
                            at: at.saturating_duration_since(window.start),
                            ended: end.map(|(t, _, s)| (*s, t.saturating_duration_since(*at))),
                        });
                    }
                    MemberState::Down => out.down += 1,
                    _ => {}
                }
            }
        }
        out
    }
}

/// Records a node's [`ClusterEvent`]s on the [`Board`].
#[derive(Debug)]
struct Watcher {
    board: Arc<Board>,
    node: usize,
}

impl Actor for Watcher {
    type Context = Context<Self>;
}

impl Handler<ClusterEvent> for Watcher {
    type Result = ();

    fn handle(&mut self, event: ClusterEvent, _: &mut Context<Self>) {
        // Stamped on arrival, before taking the board's lock, so contention with other
        // watchers does not delay the stamp.
        self.board.record(self.node, Instant::now(), event);
    }
}

/// Suspicion events counted across nodes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Suspicions {
    /// `MemberSuspect` events.
    pub suspect: u64,
    /// `MemberDown` events.
    pub down: u64,
    /// One entry per `MemberSuspect` event, to tell a slow heartbeat from a lost one.
    pub episodes: Vec<SuspectEpisode>,
}

/// One `MemberSuspect` event and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuspectEpisode {
    /// Index of the node that suspected (node `n{observer}`).
    pub observer: usize,
    /// Name of the suspected member.
    pub subject: String,
    /// From the start of the window to the event.
    pub at: Duration,
    /// The next state the observer saw the subject in, and how long after the suspicion;
    /// `None` if it was still Suspect when counted.
    pub ended: Option<(MemberState, Duration)>,
}

impl Suspicions {
    /// Both kinds together.
    pub fn total(&self) -> u64 {
        self.suspect + self.down
    }
}

/// The timings of one cluster's formation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Formation {
    /// Nodes in the cluster.
    pub nodes: usize,
    /// From starting node 0 until the last node's `start` returned and its watcher subscribed.
    pub start: Duration,
    /// From starting node 0 until every node saw all `nodes` members Up.
    pub all_up: Duration,
}

/// The timings of one crash.
#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    /// From the kill until each survivor saw the killed node Down, in node order.
    pub per_survivor: Vec<Duration>,
    /// From the kill until the first survivor saw it Suspect; `None` if every survivor went
    /// straight to Down.
    pub first_suspect: Option<Duration>,
}

impl Detection {
    /// The first survivor to see the node Down.
    pub fn min(&self) -> Duration {
        self.per_survivor.iter().copied().min().unwrap_or_default()
    }

    /// The last survivor to see the node Down: the detection time.
    pub fn max(&self) -> Duration {
        self.per_survivor.iter().copied().max().unwrap_or_default()
    }
}

/// An in-process cluster whose nodes all report to one [`Board`].
#[derive(Debug)]
pub struct Cluster {
    /// `None` once killed.
    nodes: Vec<Option<TestNode>>,
    ids: Vec<NodeId>,
    board: Arc<Board>,
    started: Instant,
    start_took: Duration,
}

impl Cluster {
    /// Starts `size` nodes named `n0`, `n1`, … of the cluster `cluster`, node 0 first and every
    /// other node seeded with node 0's address, each subscribed to its events right after its
    /// start.
    pub fn start(cluster: &str, size: usize) -> BenchResult<Self> {
        if size == 0 {
            return Err("a cluster needs at least one node".into());
        }
        let board = Arc::new(Board::new(size));
        let started = Instant::now();
        let mut nodes = Vec::with_capacity(size);
        let mut ids = Vec::with_capacity(size);
        let mut seed: Option<String> = None;
        for i in 0..size {
            let mut config = lan_node(&format!("n{i}"));
            if let Some(seed) = &seed {
                config = config.seed_nodes([seed.clone()]);
            }
            let node = TestNode::start(cluster, config.build()?, |s| s)?;
            if seed.is_none() {
                seed = Some(node.system().local_addr().to_string());
            }
            let watcher_board = Arc::clone(&board);
            node.run(move |s| async move {
                let watcher = Watcher {
                    board: watcher_board,
                    node: i,
                }
                .start();
                s.subscribe(watcher.recipient());
            })?;
            ids.push(node.system().node_id().clone());
            nodes.push(Some(node));
        }
        Ok(Self {
            nodes,
            ids,
            board,
            start_took: started.elapsed(),
            started,
        })
    }

    /// Number of nodes started (killed ones included).
    pub fn size(&self) -> usize {
        self.nodes.len()
    }

    /// Indexes of the nodes still running.
    fn alive(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].is_some())
            .collect()
    }

    /// Waits until every node sees all members Up at the same time and `members()` on every
    /// node agrees; the time is when the last node entered that state.
    pub fn wait_formed(&self, timeout: Duration) -> BenchResult<Formation> {
        let n = self.size();
        let formed = self
            .board
            .wait(self.started + self.start_took + timeout, |views| {
                views
                    .iter()
                    .map(|v| v.all_up_since)
                    .collect::<Option<Vec<Instant>>>()
                    .and_then(|since| since.into_iter().max())
            });
        let Some(last) = formed else {
            let views = self.board.lock();
            let ready = views.iter().filter(|v| v.all_up_since.is_some()).count();
            let fewest = views.iter().map(View::up_count).min().unwrap_or(0);
            let hint = if views.iter().all(|v| v.log.is_empty()) {
                " (no member event arrived after the snapshots: are membership events delivered?)"
            } else {
                ""
            };
            return Err(format!(
                "cluster of {n} did not form within {:.1} s: {ready} of {n} nodes saw all Up, \
                 the slowest saw {fewest} Up{hint}",
                timeout.as_secs_f64()
            )
            .into());
        };
        self.check_members_agree()?;
        Ok(Formation {
            nodes: n,
            start: self.start_took,
            all_up: last.saturating_duration_since(self.started),
        })
    }

    /// `members()` on every live node lists all of them Up. The events are the measurement;
    /// this checks they describe the same table the API returns.
    fn check_members_agree(&self) -> BenchResult<()> {
        let alive = self.alive();
        let deadline = Instant::now() + MEMBERS_AGREE_DEADLINE;
        loop {
            let lagging = alive.iter().copied().find(|&i| {
                self.nodes[i].as_ref().is_some_and(|node| {
                    let members = node.system().members();
                    alive.iter().any(|&j| {
                        !members
                            .iter()
                            .any(|m| m.id == self.ids[j] && m.state == MemberState::Up)
                    })
                })
            });
            let Some(i) = lagging else {
                return Ok(());
            };
            if Instant::now() >= deadline {
                return Err(format!(
                    "the events show every node Up, but n{i}'s members() does not after {:.1} s",
                    MEMBERS_AGREE_DEADLINE.as_secs_f64()
                )
                .into());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Crashes node `index` (its network thread stops without a goodbye, sockets close, and
    /// its actix system stops) and returns the instant just before.
    pub fn kill(&mut self, index: usize) -> BenchResult<Instant> {
        let node = self
            .nodes
            .get_mut(index)
            .and_then(Option::take)
            .ok_or_else(|| format!("node {index} does not exist or is already dead"))?;
        let at = Instant::now();
        node.kill();
        Ok(at)
    }

    /// Waits until every live node has seen node `victim`, killed at `killed_at`, Down.
    pub fn wait_down(
        &self,
        victim: usize,
        killed_at: Instant,
        timeout: Duration,
    ) -> BenchResult<Detection> {
        let id = self
            .ids
            .get(victim)
            .ok_or_else(|| format!("node {victim} does not exist"))?
            .clone();
        let survivors = self.alive();
        let down_key = (id.clone(), MemberState::Down);
        let suspect_key = (id.clone(), MemberState::Suspect);
        let since_kill = |at: &Instant| at.saturating_duration_since(killed_at);
        let seen = self.board.wait(killed_at + timeout, |views| {
            survivors
                .iter()
                .map(|&i| views.get(i)?.first_seen.get(&down_key).map(since_kill))
                .collect::<Option<Vec<Duration>>>()
        });
        let views = self.board.lock();
        let first_suspect = survivors
            .iter()
            .filter_map(|&i| views.get(i)?.first_seen.get(&suspect_key))
            .min()
            .map(since_kill);
        match seen {
            Some(per_survivor) => Ok(Detection {
                per_survivor,
                first_suspect,
            }),
            None => {
                let count = |key: &(NodeId, MemberState)| {
                    survivors
                        .iter()
                        .filter(|&&i| views.get(i).is_some_and(|v| v.first_seen.contains_key(key)))
                        .count()
                };
                Err(format!(
                    "{id} not seen Down by every survivor within {:.1} s of the kill: {} of {} \
                     saw it Down, {} saw it Suspect",
                    timeout.as_secs_f64(),
                    count(&down_key),
                    survivors.len(),
                    count(&suspect_key)
                )
                .into())
            }
        }
    }

    /// Suspect and Down events the live nodes received in `window`.
    pub fn suspicions(&self, window: &Range<Instant>) -> Suspicions {
        self.board.suspicions(&self.alive(), window)
    }

    /// Stops every live node gracefully, all at once: each waits for its goodbyes to be
    /// written, and one at a time that would add up for 50 nodes.
    pub fn stop(mut self) {
        let nodes: Vec<TestNode> = self.nodes.iter_mut().filter_map(Option::take).collect();
        std::thread::scope(|scope| {
            for node in nodes {
                scope.spawn(move || node.stop());
            }
        });
    }
}

/// Deadline for a cluster of `nodes` to form: generous, since reaching it means something is
/// broken rather than slow, yet bounded so that a broken build still finishes its run.
pub fn formation_deadline(nodes: usize) -> Duration {
    Duration::from_secs(5) + Duration::from_millis(250) * u32::try_from(nodes).unwrap_or(u32::MAX)
}

/// Deadline for every survivor to see a crash: five times the configured bound, at least 10 s.
pub fn detection_deadline(bound: Duration) -> Duration {
    (bound * 5).max(Duration::from_secs(10))
}

/// The `formation` scenario for one size: start, wait until formed, stop.
pub fn formation(cluster: &str, nodes: usize) -> BenchResult<Formation> {
    let c = Cluster::start(cluster, nodes)?;
    let formed = c.wait_formed(formation_deadline(nodes));
    c.stop();
    formed
}

/// One run of the `detection` scenario: form a cluster of `nodes`, let the failure detectors
/// collect `settle` worth of heartbeats, kill the last node (not the seed, so that rejoining
/// is not what is measured) and wait until every survivor sees it Down.
pub fn detection(
    cluster: &str,
    nodes: usize,
    settle: Duration,
    bound: Duration,
) -> BenchResult<Detection> {
    if nodes < 2 {
        return Err("detection needs a victim and a survivor".into());
    }
    let mut c = Cluster::start(cluster, nodes)?;
    let result = c.wait_formed(formation_deadline(nodes)).and_then(|_| {
        // A measured wait, not a hope: the detector's estimate after `settle` of heartbeats is
        // the steady state the bound assumes, rather than the seeded guess right after joining.
        std::thread::sleep(settle);
        let victim = nodes - 1;
        let killed_at = c.kill(victim)?;
        c.wait_down(victim, killed_at, detection_deadline(bound))
    });
    c.stop();
    result
}

/// The outcome of an idle run.
#[derive(Debug, Clone, PartialEq)]
pub struct IdleRun {
    /// Suspect and Down events across all nodes during the idle window.
    pub suspicions: Suspicions,
    /// Length of the idle window.
    pub idle: Duration,
}

/// The false-suspicion half of `detection`: form a cluster of `nodes`, then leave it alone
/// for `idle` and count the Suspect and Down events every node received meanwhile. Nobody
/// fails, so any such event is false.
pub fn idle(cluster: &str, nodes: usize, idle: Duration) -> BenchResult<IdleRun> {
    let c = Cluster::start(cluster, nodes)?;
    let result = c.wait_formed(formation_deadline(nodes)).map(|_| {
        let start = Instant::now();
        // The window itself is the measurement; nothing is awaited.
        std::thread::sleep(idle);
        let window = start..Instant::now();
        IdleRun {
            suspicions: c.suspicions(&window),
            idle: window.end - window.start,
        }
    });
    c.stop();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lan_threshold_is_reached_about_five_deviations_late() {
        let y = phi_threshold_deviations(8.0);
        assert!((5.1..5.35).contains(&y), "{y}");
        assert!(phi_threshold_deviations(10.0) > y);
        assert_eq!(phi_threshold_deviations(0.1), 0.0);
    }

    #[test]
    fn the_lan_bound_is_about_two_seconds() {
        let bound = detection_bound(&FailureDetectorConfig::lan(), &MembershipConfig::lan());
        let ms = bound.as_secs_f64() * 1000.0;
        assert!((1_700.0..1_950.0).contains(&ms), "{ms} ms");
    }
}
