//! Deterministic simulation of membership cores on a virtual network.
//!
//! One [`Membership`] core per node, a virtual clock (a base `Instant` plus an offset), a
//! seeded RNG and a priority queue of timed events (message deliveries, connection handshakes,
//! goodbyes and the cores' timers). Every random choice, the cores' included, derives from the
//! seed, so a failing run replays exactly.
//!
//! The network models the transport the driver uses:
//! - one connection per node pair, opened by the first non-best-effort send or by a `Dial`; the
//!   handshake takes a round trip, then both sides get `handle_connected` before any message;
//! - messages on a connection arrive in order (TCP), each after the link delay plus jitter, and
//!   each is lost with the configured probability;
//! - `best_effort` messages are dropped when the pair is not connected (heartbeats never open
//!   connections);
//! - a message for an older incarnation than the one at the address opens the connection to
//!   the new incarnation (the dial reaches whoever listens there) but is not delivered;
//! - partitions split nodes into groups that cannot reach each other: connections across groups
//!   break (`handle_disconnected` on both sides) and cannot be opened until the partition heals;
//! - every node dials its first seed (or master) when it starts, and again with backoff until
//!   connected, like the transport's seed loop;
//! - before each tick, the peers a node heard from since the previous one are reported with
//!   `handle_alive`, like the driver does;
//! - a crash drops the core and its timers and breaks its connections; a restart is a new core
//!   under the same name with a higher incarnation;
//! - a graceful shutdown sends a goodbye on every open connection, after what is queued;
//! - a paused node (SIGSTOP) keeps its connections open but handles nothing: what arrives for
//!   it and its timers wait, and all run, in order, when it resumes.
//!
//! Member events are recorded per observer, both as a log and as a per-observer view (the
//! member table rebuilt from events alone), which [`Sim::check_tables`] compares with the
//! cores' own tables.

mod centralized;
mod crash_detection;
mod determinism;
mod formation;
mod hostile_input;
mod leave;
mod no_false_suspicion;
mod partition;
mod restart;
mod static_mode;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::core::{Membership, Mode, Output, Settings, Target, Timer};
use super::phi::FailureDetectorConfig;
use super::types::{ClusterEvent, LoadReport, MemberState, MembershipConfig};
use crate::node::{NodeId, NodeInfo, NodeRole};

/// First incarnation of every node; a restart adds one.
const FIRST_INCARNATION: u64 = 1000;
/// The transport's seed loop backs off from this (LAN preset) ...
const BOOTSTRAP_BACKOFF: Duration = Duration::from_millis(50);
/// ... up to this.
const BOOTSTRAP_BACKOFF_MAX: Duration = Duration::from_secs(2);
/// Predicates are re-evaluated at most this often (in virtual time) while events happen.
const CHECK_EVERY: Duration = Duration::from_millis(10);

/// Shape of a simulated cluster.
#[derive(Debug, Clone)]
pub(super) struct SimConfig {
    pub(super) nodes: usize,
    pub(super) mode: Mode,
    /// In centralized mode, nodes `0..masters` are masters.
    pub(super) masters: usize,
    pub(super) seed: u64,
    /// Probability that any one message is lost.
    pub(super) loss: f64,
    /// One-way link delay; each message adds a uniform jitter in `0..=jitter`.
    pub(super) delay: Duration,
    pub(super) jitter: Duration,
    /// Nodes start at uniformly random times in `0..=start_spread`.
    pub(super) start_spread: Duration,
    pub(super) timing: MembershipConfig,
    pub(super) detector: FailureDetectorConfig,
}

impl SimConfig {
    /// Gossip mode with the LAN presets, 1 ms links with 1 ms of jitter, no loss.
    pub(super) fn lan(nodes: usize, seed: u64) -> Self {
        Self {
            nodes,
            mode: Mode::Gossip,
            masters: 0,
            seed,
            loss: 0.0,
            delay: Duration::from_millis(1),
            jitter: Duration::from_millis(1),
            start_spread: Duration::from_millis(200),
            timing: MembershipConfig::lan(),
            detector: FailureDetectorConfig::lan(),
        }
    }

    pub(super) fn loss(mut self, loss: f64) -> Self {
        self.loss = loss;
        self
    }

    pub(super) fn mode(mut self, mode: Mode, masters: usize) -> Self {
        self.mode = mode;
        self.masters = masters;
        self
    }
}

/// Kind of a recorded member event: the state its event announces.
pub(super) type Kind = MemberState;

/// One member event as an observer saw it.
#[derive(Debug, Clone)]
pub(super) struct Logged {
    pub(super) at: Duration,
    pub(super) observer: usize,
    pub(super) kind: Kind,
    pub(super) member: NodeId,
}

/// Counters, for the figures the tests print.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Stats {
    pub(super) sent: u64,
    pub(super) delivered: u64,
    pub(super) lost: u64,
    pub(super) unreachable: u64,
    pub(super) best_effort_dropped: u64,
    pub(super) connections: u64,
    pub(super) load_changes: u64,
}

struct Node {
    info: NodeInfo,
    settings: Settings,
    core: Option<Membership>,
    /// Bumped by every crash, shutdown and restart: timers of an earlier life are void.
    life: u64,
    /// Crashed or shut down (and not restarted): not expected to be alive.
    stopped: bool,
    /// The member table rebuilt from this node's events: name → (incarnation, state).
    view: HashMap<Arc<str>, (NodeId, MemberState)>,
    /// Peers that sent bytes since the last tick, and when last: the driver reports them
    /// with `handle_alive` before each tick.
    heard: HashMap<usize, u64>,
    /// Stopped (SIGSTOP): events for it wait in `held` until it resumes.
    paused: bool,
    held: Vec<Ev>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LinkState {
    Closed,
    /// Handshake in flight; completes at `ready_at`.
    Connecting,
    Open,
}

struct Link {
    state: LinkState,
    /// Bumped whenever the link closes: anything scheduled on an earlier epoch is void.
    epoch: u64,
    ready_at: u64,
    /// Delivery time of the last message per direction (low → high, high → low), for FIFO.
    last: [u64; 2],
}

enum Ev {
    Timer {
        node: usize,
        life: u64,
        timer: Timer,
    },
    Connect {
        pair: (usize, usize),
        epoch: u64,
    },
    Deliver {
        from: usize,
        to: usize,
        epoch: u64,
        body: Bytes,
    },
    Goodbye {
        from: usize,
        to: usize,
        epoch: u64,
    },
    /// The transport's seed loop: dial the first seed until connected, backing off.
    Bootstrap {
        node: usize,
        life: u64,
        backoff: Duration,
    },
}

struct Scheduled {
    at: u64,
    seq: u64,
    ev: Ev,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// A simulated cluster. See the module docs.
pub(super) struct Sim {
    cfg: SimConfig,
    rng: StdRng,
    base: Instant,
    now: u64,
    seq: u64,
    queue: BinaryHeap<Reverse<Scheduled>>,
    nodes: Vec<Node>,
    links: Vec<Link>,
    /// Partition group per node; nodes reach each other only within a group.
    group: Vec<u32>,
    by_addr: HashMap<SocketAddr, usize>,
    by_name: HashMap<Arc<str>, usize>,
    log: Vec<Logged>,
    dirty: bool,
    pub(super) stats: Stats,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn name_of(i: usize) -> String {
    format!("n{i:03}")
}

fn addr_of(i: usize) -> SocketAddr {
    let i = u32::try_from(i).unwrap_or(u32::MAX);
    SocketAddr::new(Ipv4Addr::from(0x0a00_0001 + i).into(), 7000)
}

impl Sim {
    /// Builds the cluster and schedules every node's start (first tick and a dial of the seed).
    pub(super) fn new(cfg: SimConfig) -> Self {
        let n = cfg.nodes;
        let addrs: Vec<SocketAddr> = (0..n).map(addr_of).collect();
        let masters: Vec<SocketAddr> = addrs[..cfg.masters.min(n)].to_vec();
        let seeds = match cfg.mode {
            Mode::Gossip => vec![addrs[0]],
            Mode::Static => addrs.clone(),
            Mode::Centralized => masters.clone(),
        };
        let nodes = (0..n)
            .map(|i| {
                let role = if cfg.mode == Mode::Centralized && i < cfg.masters {
                    NodeRole::Master
                } else {
                    NodeRole::Worker
                };
                Node {
                    info: NodeInfo {
                        id: NodeId::new(name_of(i), FIRST_INCARNATION),
                        addr: addrs[i],
                        role,
                        labels: Default::default(),
                    },
                    settings: Settings {
                        mode: cfg.mode,
                        seeds: seeds.clone(),
                        masters: masters.clone(),
                        detector: cfg.detector,
                        timing: cfg.timing,
                        capabilities: vec!["counter".into()],
                    },
                    core: None,
                    life: 0,
                    stopped: false,
                    view: HashMap::new(),
                    heard: HashMap::new(),
                    paused: false,
                    held: Vec::new(),
                }
            })
            .collect::<Vec<_>>();
        let links = (0..n * n)
            .map(|_| Link {
                state: LinkState::Closed,
                epoch: 0,
                ready_at: 0,
                last: [0; 2],
            })
            .collect();
        let by_addr = addrs.iter().enumerate().map(|(i, a)| (*a, i)).collect();
        let by_name = nodes
            .iter()
            .enumerate()
            .map(|(i, node)| (Arc::clone(node.info.id.name_arc()), i))
            .collect();
        let mut sim = Self {
            rng: StdRng::seed_from_u64(cfg.seed),
            cfg,
            base: Instant::now(),
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            nodes,
            links,
            group: vec![0; n],
            by_addr,
            by_name,
            log: Vec::new(),
            dirty: false,
            stats: Stats::default(),
        };
        for i in 0..n {
            let at = sim.rng.random_range(0..=nanos(sim.cfg.start_spread));
            sim.schedule(
                at,
                Ev::Timer {
                    node: i,
                    life: 0,
                    timer: Timer::Tick,
                },
            );
        }
        sim
    }

    // ----- time and queue -----

    pub(super) fn now(&self) -> Instant {
        self.base + Duration::from_nanos(self.now)
    }

    /// Virtual time since the start.
    pub(super) fn elapsed(&self) -> Duration {
        Duration::from_nanos(self.now)
    }

    fn schedule(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        self.queue.push(Reverse(Scheduled {
            at,
            seq: self.seq,
            ev,
        }));
    }

    fn sample_delay(&mut self) -> u64 {
        nanos(self.cfg.delay) + self.rng.random_range(0..=nanos(self.cfg.jitter))
    }

    /// Processes the next event; `false` when nothing is left.
    pub(super) fn step(&mut self) -> bool {
        let Some(Reverse(s)) = self.queue.pop() else {
            return false;
        };
        self.now = self.now.max(s.at);
        let for_node = match &s.ev {
            Ev::Timer { node, .. } | Ev::Bootstrap { node, .. } => Some(*node),
            Ev::Deliver { to, .. } | Ev::Goodbye { to, .. } => Some(*to),
            Ev::Connect { .. } => None,
        };
        if let Some(i) = for_node
            && self.nodes[i].paused
        {
            self.nodes[i].held.push(s.ev);
            return true;
        }
        match s.ev {
            Ev::Timer { node, life, timer } => {
                if self.nodes[node].life == life {
                    if self.nodes[node].core.is_none() && life == 0 {
                        // The node's first tick is its start.
                        self.start(node);
                    } else {
                        let heard = self.heard_since_tick(node, &timer);
                        let base = self.base;
                        self.input(node, |c, now| {
                            for (id, at) in &heard {
                                c.handle_alive(id, base + Duration::from_nanos(*at));
                            }
                            c.handle_timer(timer, now);
                        });
                    }
                }
            }
            Ev::Connect { pair, epoch } => self.complete_connect(pair, epoch),
            Ev::Deliver {
                from,
                to,
                epoch,
                body,
            } => {
                let pair = ordered(from, to);
                let link = &self.links[self.link_index(pair)];
                if link.epoch == epoch && link.state == LinkState::Open && self.alive(to) {
                    self.stats.delivered += 1;
                    self.nodes[to].heard.insert(from, self.now);
                    let info = self.nodes[from].info.clone();
                    self.input(to, |c, now| c.handle_message(&info, body, now));
                }
            }
            Ev::Bootstrap {
                node,
                life,
                backoff,
            } => {
                if self.nodes[node].life == life {
                    self.bootstrap(node, life, backoff);
                }
            }
            Ev::Goodbye { from, to, epoch } => {
                let pair = ordered(from, to);
                let link = &self.links[self.link_index(pair)];
                if link.epoch == epoch && link.state == LinkState::Open {
                    let id = self.nodes[from].info.id.clone();
                    self.input(to, |c, now| c.handle_goodbye(&id, now));
                    self.close(pair);
                }
            }
        }
        true
    }

    /// Runs until `pred` holds or `within` of virtual time has passed; returns how long it took.
    pub(super) fn run_until(
        &mut self,
        within: Duration,
        mut pred: impl FnMut(&Sim) -> bool,
    ) -> Option<Duration> {
        let start = self.now;
        let deadline = start + nanos(within);
        let mut last_check = start;
        if pred(self) {
            return Some(Duration::ZERO);
        }
        while self.queue.peek().is_some_and(|Reverse(s)| s.at <= deadline) {
            self.step();
            if self.dirty && self.now >= last_check + nanos(CHECK_EVERY) {
                self.dirty = false;
                last_check = self.now;
                if pred(self) {
                    return Some(Duration::from_nanos(self.now - start));
                }
            }
        }
        self.now = deadline;
        pred(self).then(|| Duration::from_nanos(deadline - start))
    }

    /// Runs for `d` of virtual time.
    pub(super) fn run_for(&mut self, d: Duration) {
        let deadline = self.now + nanos(d);
        while self.queue.peek().is_some_and(|Reverse(s)| s.at <= deadline) {
            self.step();
        }
        self.now = deadline;
    }

    // ----- nodes -----

    pub(super) fn len(&self) -> usize {
        self.nodes.len()
    }

    pub(super) fn alive(&self, i: usize) -> bool {
        self.nodes[i].core.is_some()
    }

    pub(super) fn id(&self, i: usize) -> &NodeId {
        &self.nodes[i].info.id
    }

    pub(super) fn core(&self, i: usize) -> Option<&Membership> {
        self.nodes[i].core.as_ref()
    }

    fn start(&mut self, i: usize) {
        let seed = self.cfg.seed ^ (i as u64).rotate_left(32) ^ self.nodes[i].info.id.incarnation();
        let node = &mut self.nodes[i];
        node.core = Some(Membership::new(
            node.info.clone(),
            node.settings.clone(),
            seed,
            self.base + Duration::from_nanos(self.now),
        ));
        self.drain(i);
        // Bootstrap: every node dials the first seed (or master) until connected.
        let life = self.nodes[i].life;
        self.bootstrap(i, life, BOOTSTRAP_BACKOFF);
    }

    /// Feeds node `i`'s core, then carries out its outputs.
    pub(super) fn input(&mut self, i: usize, f: impl FnOnce(&mut Membership, Instant)) {
        let now = self.now();
        let Some(core) = self.nodes[i].core.as_mut() else {
            return;
        };
        f(core, now);
        self.drain(i);
    }

    fn drain(&mut self, i: usize) {
        let now = self.now();
        loop {
            let Some(core) = self.nodes[i].core.as_mut() else {
                return;
            };
            let Some(out) = core.poll_output() else {
                return;
            };
            match out {
                Output::Send {
                    to,
                    body,
                    best_effort,
                } => self.send(i, &to, body, best_effort),
                Output::Timer { after, timer } => {
                    let life = self.nodes[i].life;
                    self.schedule(
                        self.now + nanos(after),
                        Ev::Timer {
                            node: i,
                            life,
                            timer,
                        },
                    );
                }
                Output::Event(ev) => self.record(i, ev),
                Output::Dial(addr) => self.dial(i, addr),
                Output::LoadDue => {
                    let load = LoadReport::new(i as u64, 0, Some(0.25));
                    core.set_local_load(load, now);
                }
            }
        }
    }

    /// Like the driver: before a tick, the peers that sent bytes since the previous one.
    fn heard_since_tick(&mut self, i: usize, timer: &Timer) -> Vec<(NodeId, u64)> {
        if *timer != Timer::Tick {
            return Vec::new();
        }
        let heard = std::mem::take(&mut self.nodes[i].heard);
        let mut heard: Vec<(NodeId, u64)> = heard
            .into_iter()
            .map(|(j, at)| (self.nodes[j].info.id.clone(), at))
            .collect();
        // HashMap order differs between runs: sort, so that a seed replays exactly.
        heard.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        heard
    }

    fn record(&mut self, observer: usize, ev: ClusterEvent) {
        let (kind, m) = match ev {
            ClusterEvent::MemberJoining(m) => (Kind::Joining, m),
            ClusterEvent::MemberUp(m) => (Kind::Up, m),
            ClusterEvent::MemberSuspect(m) => (Kind::Suspect, m),
            ClusterEvent::MemberDown(m) => (Kind::Down, m),
            ClusterEvent::MemberLeaving(m) => (Kind::Leaving, m),
            ClusterEvent::MemberLeft(m) => (Kind::Left, m),
            ClusterEvent::LoadChanged(_) => {
                self.stats.load_changes += 1;
                return;
            }
            ClusterEvent::Snapshot(_) => return,
        };
        assert_eq!(m.state, kind, "{kind:?} event carries state {}", m.state);
        self.nodes[observer]
            .view
            .insert(Arc::clone(m.id.name_arc()), (m.id.clone(), kind));
        self.log.push(Logged {
            at: self.elapsed(),
            observer,
            kind,
            member: m.id,
        });
        self.dirty = true;
    }

    /// Kills node `i`: its core and timers are gone, its connections break.
    pub(super) fn crash(&mut self, i: usize) {
        self.nodes[i].paused = false;
        self.nodes[i].held.clear();
        self.nodes[i].core = None;
        self.nodes[i].stopped = true;
        self.nodes[i].life += 1;
        for j in 0..self.nodes.len() {
            if j != i {
                self.close(ordered(i, j));
            }
        }
    }

    /// Stops node `i` as SIGSTOP does: its connections stay open (the kernel keeps them), but
    /// it handles nothing until [`resume`](Self::resume).
    pub(super) fn pause(&mut self, i: usize) {
        self.nodes[i].paused = true;
    }

    /// Lets a paused node run again: everything that waited for it runs now, in order.
    pub(super) fn resume(&mut self, i: usize) {
        self.nodes[i].paused = false;
        for ev in std::mem::take(&mut self.nodes[i].held) {
            self.schedule(self.now, ev);
        }
    }

    /// Crashes node `i` and runs until every live node sees it Down, at most `within`; panics
    /// with the cluster's summary if that does not happen. Returns the crashed incarnation and
    /// how long detection took.
    pub(super) fn crash_until_down(&mut self, i: usize, within: Duration) -> (NodeId, Duration) {
        let id = self.id(i).clone();
        self.crash(i);
        let took = self
            .run_until(within, |s| s.everyone_sees(&id, MemberState::Down))
            .unwrap_or_else(|| panic!("{id} was not seen Down everywhere: {}", self.summary()));
        (id, took)
    }

    /// Starts node `i` again under its name with the next incarnation.
    pub(super) fn restart(&mut self, i: usize) {
        if self.alive(i) {
            self.crash(i);
        }
        let node = &mut self.nodes[i];
        node.info.id = NodeId::new(name_of(i), node.info.id.incarnation() + 1);
        node.life += 1;
        node.stopped = false;
        node.view.clear();
        node.heard.clear();
        self.start(i);
    }

    /// Stops node `i` cleanly after a leave: a goodbye follows what is queued on each
    /// connection.
    pub(super) fn shutdown(&mut self, i: usize) {
        self.nodes[i].core = None;
        self.nodes[i].stopped = true;
        self.nodes[i].life += 1;
        for j in 0..self.nodes.len() {
            if j == i {
                continue;
            }
            let pair = ordered(i, j);
            let idx = self.link_index(pair);
            let dir = usize::from(i > j);
            let link = &mut self.links[idx];
            match link.state {
                LinkState::Open => {
                    let at = (link.last[dir] + 1).max(self.now + 1);
                    link.last[dir] = at;
                    let epoch = link.epoch;
                    self.schedule(
                        at,
                        Ev::Goodbye {
                            from: i,
                            to: j,
                            epoch,
                        },
                    );
                }
                LinkState::Connecting => self.close(pair),
                LinkState::Closed => {}
            }
        }
    }

    // ----- network -----

    /// Splits the cluster: each listed set becomes its own group; unlisted nodes stay in
    /// group 0. Connections across groups break.
    pub(super) fn partition(&mut self, sets: &[&[usize]]) {
        for (g, set) in sets.iter().enumerate() {
            for &i in *set {
                self.group[i] = u32::try_from(g + 1).unwrap_or(u32::MAX);
            }
        }
        let n = self.nodes.len();
        for a in 0..n {
            for b in a + 1..n {
                if self.group[a] != self.group[b] {
                    self.close((a, b));
                }
            }
        }
    }

    pub(super) fn heal(&mut self) {
        self.group.iter_mut().for_each(|g| *g = 0);
    }

    fn reachable(&self, a: usize, b: usize) -> bool {
        self.group[a] == self.group[b]
    }

    fn link_index(&self, (a, b): (usize, usize)) -> usize {
        a * self.nodes.len() + b
    }

    /// Opens the connection between `from` and `to` unless it is open or opening; `false` when
    /// `to` cannot be reached.
    fn connect(&mut self, from: usize, to: usize) -> bool {
        if from == to || !self.alive(to) || !self.reachable(from, to) {
            return false;
        }
        let pair = ordered(from, to);
        let idx = self.link_index(pair);
        if self.links[idx].state != LinkState::Closed {
            return true;
        }
        // A handshake is one round trip.
        let rtt = self.sample_delay() + self.sample_delay();
        let link = &mut self.links[idx];
        link.state = LinkState::Connecting;
        link.ready_at = self.now + rtt;
        link.last = [link.ready_at; 2];
        let epoch = link.epoch;
        let at = link.ready_at;
        self.schedule(at, Ev::Connect { pair, epoch });
        true
    }

    fn complete_connect(&mut self, pair: (usize, usize), epoch: u64) {
        let idx = self.link_index(pair);
        if self.links[idx].epoch != epoch || self.links[idx].state != LinkState::Connecting {
            return;
        }
        let (a, b) = pair;
        if !self.alive(a) || !self.alive(b) || !self.reachable(a, b) {
            self.close(pair);
            return;
        }
        self.links[idx].state = LinkState::Open;
        self.stats.connections += 1;
        let (ia, ib) = (self.nodes[a].info.clone(), self.nodes[b].info.clone());
        self.input(a, |c, now| c.handle_connected(&ib, now));
        self.input(b, |c, now| c.handle_connected(&ia, now));
    }

    /// Closes a link; both live ends hear of it if it was open.
    fn close(&mut self, pair: (usize, usize)) {
        let idx = self.link_index(pair);
        let link = &mut self.links[idx];
        let was_open = link.state == LinkState::Open;
        if link.state == LinkState::Closed {
            return;
        }
        link.state = LinkState::Closed;
        link.epoch += 1;
        if was_open {
            let (a, b) = pair;
            let (ida, idb) = (self.nodes[a].info.id.clone(), self.nodes[b].info.id.clone());
            self.input(a, |c, now| c.handle_disconnected(&idb, now));
            self.input(b, |c, now| c.handle_disconnected(&ida, now));
        }
    }

    fn bootstrap(&mut self, i: usize, life: u64, backoff: Duration) {
        let Some(&seed) = self.nodes[i]
            .settings
            .seeds
            .first()
            .and_then(|a| self.by_addr.get(a))
        else {
            return;
        };
        if seed == i || self.links[self.link_index(ordered(i, seed))].state == LinkState::Open {
            return;
        }
        self.connect(i, seed);
        self.schedule(
            self.now + nanos(backoff),
            Ev::Bootstrap {
                node: i,
                life,
                backoff: (backoff * 2).min(BOOTSTRAP_BACKOFF_MAX),
            },
        );
    }

    fn dial(&mut self, from: usize, addr: SocketAddr) {
        if let Some(&to) = self.by_addr.get(&addr) {
            self.connect(from, to);
        }
    }

    fn send(&mut self, from: usize, to: &Target, body: Bytes, best_effort: bool) {
        self.stats.sent += 1;

        let Some(&j) = self.by_name.get(to.id.name()) else {
            self.stats.unreachable += 1;
            return;
        };
        let idx = self.link_index(ordered(from, j));
        if best_effort {
            if self.links[idx].state != LinkState::Open {
                self.stats.best_effort_dropped += 1;
                return;
            }
        } else if !self.connect(from, j) {
            self.stats.unreachable += 1;
            return;
        }
        if self.nodes[j].info.id != to.id {
            // The dial reached a newer incarnation; the message was for the old one.
            self.stats.unreachable += 1;
            return;
        }
        if self.cfg.loss > 0.0 && self.rng.random_bool(self.cfg.loss) {
            self.stats.lost += 1;
            return;
        }
        let delay = self.sample_delay();
        let dir = usize::from(from > j);
        let link = &mut self.links[idx];
        let at = (self.now + delay).max(link.last[dir] + 1);
        link.last[dir] = at;
        let epoch = link.epoch;
        self.schedule(
            at,
            Ev::Deliver {
                from,
                to: j,
                epoch,
                body,
            },
        );
    }

    // ----- observations -----

    /// What `observer` believes about node `i`, from its events.
    pub(super) fn view(&self, observer: usize, i: usize) -> Option<&(NodeId, MemberState)> {
        self.nodes[observer].view.get(self.nodes[i].info.id.name())
    }

    /// Whether `observer` sees node `i`'s current incarnation in `state`.
    pub(super) fn sees(&self, observer: usize, i: usize, state: MemberState) -> bool {
        self.view(observer, i)
            .is_some_and(|(id, s)| *id == self.nodes[i].info.id && *s == state)
    }

    /// Every node that was not stopped has started and sees every other such node Up.
    pub(super) fn all_up(&self) -> bool {
        let live: Vec<usize> = (0..self.len())
            .filter(|&i| !self.nodes[i].stopped)
            .collect();
        live.iter().all(|&o| self.alive(o))
            && live.iter().all(|&o| {
                live.iter()
                    .all(|&i| i == o || self.sees(o, i, MemberState::Up))
            })
    }

    /// Every live node other than `id`'s own sees the incarnation `id` in `state`.
    pub(super) fn everyone_sees(&self, id: &NodeId, state: MemberState) -> bool {
        (0..self.len())
            .filter(|&o| self.alive(o) && self.nodes[o].info.id.name() != id.name())
            .all(|o| {
                self.nodes[o]
                    .view
                    .get(id.name())
                    .is_some_and(|(known, s)| known == id && *s == state)
            })
    }

    /// How many (observer, member) pairs are in each state, for failure messages.
    pub(super) fn summary(&self) -> String {
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for (o, node) in self.nodes.iter().enumerate() {
            if node.core.is_none() {
                continue;
            }
            for i in (0..self.len()).filter(|&i| i != o) {
                let k = match self.view(o, i) {
                    None => "unknown".to_string(),
                    Some((id, s)) if *id == self.nodes[i].info.id => s.to_string(),
                    Some((_, s)) => format!("old incarnation {s}"),
                };
                *counts.entry(k).or_default() += 1;
            }
        }
        format!("at {:?}: {counts:?}; {:?}", self.elapsed(), self.stats)
    }

    /// How each live node sees the node named like `id`, for failure messages.
    pub(super) fn describe(&self, id: &NodeId) -> String {
        let mut out = format!("at {:?}, {id} is seen as:", self.elapsed());
        for (o, node) in self.nodes.iter().enumerate() {
            if node.core.is_some() && node.info.id.name() != id.name() {
                let seen = node.view.get(id.name());
                out.push_str(&format!(" {o}:{seen:?}"));
            }
        }
        out
    }

    pub(super) fn log(&self) -> &[Logged] {
        &self.log
    }

    /// Checks every live core against the invariants: it lists itself exactly once, no name
    /// twice, and its table matches what its events said.
    pub(super) fn check_tables(&self) {
        let now = self.now();
        for (i, node) in self.nodes.iter().enumerate() {
            let Some(core) = node.core.as_ref() else {
                continue;
            };
            let members = core.members(now);
            let mut names: Vec<&str> = members.iter().map(|m| m.id.name()).collect();
            names.sort_unstable();
            let before = names.len();
            names.dedup();
            assert_eq!(before, names.len(), "node {i} lists a name twice");
            assert_eq!(
                members.iter().filter(|m| m.id == node.info.id).count(),
                1,
                "node {i} must list itself once"
            );
            for m in members
                .iter()
                .filter(|m| m.id.name() != node.info.id.name())
            {
                let seen = node.view.get(m.id.name());
                assert_eq!(
                    seen,
                    Some(&(m.id.clone(), m.state)),
                    "node {i}: table says {} is {}, events said {seen:?}",
                    m.id,
                    m.state
                );
            }
        }
    }

    /// Probe periods in `d`, for reporting convergence.
    pub(super) fn periods(&self, d: Duration) -> f64 {
        d.as_secs_f64() / self.cfg.timing.probe_period.as_secs_f64()
    }
}

fn ordered(a: usize, b: usize) -> (usize, usize) {
    if a < b { (a, b) } else { (b, a) }
}
