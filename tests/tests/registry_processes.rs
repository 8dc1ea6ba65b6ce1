//! Real processes, cluster-wide registry: three `node` programs form a Raft registry by
//! themselves; names registered with `ctl register` are listed by `ctl names --json` on every
//! node, a taken name is refused and an identical registration is idempotent. After the
//! registry leader's process is SIGKILLed, every name hosted on a survivor stays resolvable
//! with its version, the dead node's name is released, a new leader is elected among the
//! survivors and new registrations succeed. In durable mode (`--data-dir`), a SIGKILLed
//! follower restarted on its data directory catches up with the names registered while it
//! was down. A leader stopped gracefully hands leadership to a survivor before it exits.
//! Everything is observed through the `ctl` program, as an operator would.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use actix_cluster_examples::process::{NodeProcess, example_binaries};
use actix_cluster_testkit::TEST_DEADLINE;

const NODES: [&str; 3] = ["node-1", "node-2", "node-3"];
/// Registry formation, failover, release and catch-up: generous, only reached when
/// something is broken; the time each one took is printed.
const CONVERGE: Duration = Duration::from_secs(30);
/// Between two polls of `ctl`; each run is itself a client join of a few tens of ms.
const POLL: Duration = Duration::from_millis(100);
/// `Counter::NAME` of the examples, what every registered `counter` is.
const COUNTER_TYPE: &str = "examples.counter";

fn binaries() -> &'static HashMap<String, PathBuf> {
    static BINARIES: OnceLock<HashMap<String, PathBuf>> = OnceLock::new();
    BINARIES.get_or_init(|| example_binaries(&["node", "ctl"]).expect("build node and ctl"))
}

fn binary(name: &str) -> &'static PathBuf {
    &binaries()[name]
}

/// A three-node cluster of `node` processes, one cluster name per test.
struct Cluster {
    name: &'static str,
    /// Declared before `data`: on an early panic the nodes are killed before their data
    /// directories are removed.
    nodes: BTreeMap<&'static str, NodeProcess>,
    /// Durable mode: each node's `--data-dir` is `<dir>/<node name>`.
    data: Option<tempfile::TempDir>,
    seed: Option<SocketAddr>,
}

impl Cluster {
    fn new(name: &'static str, durable: bool) -> Self {
        Cluster {
            name,
            nodes: BTreeMap::new(),
            data: durable.then(|| tempfile::tempdir().expect("temporary data directory")),
            seed: None,
        }
    }

    fn data_dir(&self, node: &str) -> Option<PathBuf> {
        self.data.as_ref().map(|d| d.path().join(node))
    }

    /// Starts `node` listening on `listen`; every node but the first joins through the first.
    fn start(&mut self, node: &'static str, listen: SocketAddr) {
        let mut cmd = Command::new(binary("node"));
        cmd.args(["--name", node, "--listen", &listen.to_string()])
            .args(["--cluster", self.name, "--insecure-plaintext"])
            .args(["--preset", "lan", "--exit-on-stdin-close"])
            .args(["--registry-voters", "3"]);
        if let Some(dir) = self.data_dir(node) {
            cmd.arg("--data-dir").arg(dir);
        }
        if let Some(seed) = self.seed.filter(|s| *s != listen) {
            cmd.args(["--seeds", &seed.to_string()]);
        }
        let process = NodeProcess::spawn(node, cmd, TEST_DEADLINE)
            .unwrap_or_else(|e| panic!("start {node}: {e}"));
        self.seed.get_or_insert(process.addr());
        self.nodes.insert(node, process);
    }

    fn start_all(&mut self) {
        let any_port: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        for node in NODES {
            self.start(node, any_port);
        }
    }

    fn addr(&self, node: &str) -> SocketAddr {
        self.nodes[node].addr()
    }

    fn kill(&mut self, node: &str) {
        self.nodes
            .get_mut(node)
            .unwrap_or_else(|| panic!("{node} runs"))
            .kill()
            .unwrap_or_else(|e| panic!("SIGKILL {node}: {e}"));
    }

    /// Stops every running node gracefully and checks that each exits 0.
    fn stop(mut self) {
        for (node, process) in &mut self.nodes {
            let status = process.stop(TEST_DEADLINE).expect("wait for node");
            assert!(
                status.is_some_and(|s| s.success()),
                "{node} did not shut down cleanly: {status:?}"
            );
        }
    }

    /// Runs `ctl COMMAND ARGS` against the node at `via`.
    fn ctl(&self, command: &str, via: SocketAddr, args: &[&str]) -> Output {
        Command::new(binary("ctl"))
            .arg(command)
            .args(args)
            .args(["--seed", &via.to_string(), "--cluster", self.name])
            .args(["--insecure-plaintext", "--wait", "10"])
            .stdin(Stdio::null())
            .output()
            .expect("run ctl")
    }

    /// `ctl registry --json` through `via`.
    fn registry(&self, via: SocketAddr) -> Result<RegistryView, String> {
        let out = self.ctl("registry", via, &["--json"]);
        let stdout = succeeded(&out)?;
        Ok(parse_registry(&stdout))
    }

    /// `ctl registry ARGS` through `via` that must fail as refused, with `why` in the reason.
    fn refused(&self, via: SocketAddr, args: &[&str], why: &str) {
        let out = self.ctl("registry", via, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{args:?} was not refused: {stderr}"
        );
        assert!(
            stderr.contains("Refused") && stderr.contains(why),
            "{args:?}: {stderr}"
        );
        println!("{args:?} refused: {}", stderr.trim_end());
    }

    /// `ctl names --json` through `via`: name → row.
    fn names(&self, via: SocketAddr) -> Result<BTreeMap<String, NameRow>, String> {
        let out = self.ctl("names", via, &["--json"]);
        let stdout = succeeded(&out)?;
        Ok(parse_names(&stdout))
    }

    /// `ctl register NAME --node NODE` through `via`.
    fn register(&self, via: SocketAddr, name: &str, node: &str) -> Result<Registered, String> {
        let out = self.ctl("register", via, &[name, "--node", node]);
        let stdout = succeeded(&out)?;
        Ok(parse_registered(&stdout, name, node))
    }

    /// Polls `ctl registry` through `via` until it names a leader among `leaders` and the
    /// voters are exactly [`NODES`]; returns that view.
    fn wait_for_leader(&self, via: SocketAddr, leaders: &[&str], what: &str) -> RegistryView {
        poll(what, || {
            let view = self.registry(via)?;
            let leader_ok = view.leader.as_deref().is_some_and(|l| leaders.contains(&l));
            let mut voters = view.voters.clone();
            voters.sort_unstable();
            if leader_ok && voters == NODES {
                Ok(view)
            } else {
                Err(format!("registry view {view:?}"))
            }
        })
    }
}

/// The stdout of a successful `ctl` run, or a description of the failure.
fn succeeded(out: &Output) -> Result<String, String> {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "ctl failed ({}): {}{stdout}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim_end()
        ))
    }
}

/// Calls `attempt` until it returns `Ok`, at most [`CONVERGE`]; panics with `what` and the
/// last failure after that. Prints how long it took.
fn poll<T>(what: &str, mut attempt: impl FnMut() -> Result<T, String>) -> T {
    let started = Instant::now();
    loop {
        match attempt() {
            Ok(value) => {
                println!("{what}: after {:?}", started.elapsed());
                return value;
            }
            Err(last) => {
                assert!(
                    started.elapsed() < CONVERGE,
                    "{what}: not within {CONVERGE:?}; last: {last}"
                );
            }
        }
        std::thread::sleep(POLL);
    }
}

/// `ctl registry --json`.
#[derive(Debug, Clone)]
struct RegistryView {
    leader: Option<String>,
    voters: Vec<String>,
    learners: Vec<String>,
    applied: u64,
}

fn parse_registry(stdout: &str) -> RegistryView {
    let doc: serde_json::Value = serde_json::from_str(stdout).expect("ctl prints JSON");
    let top = doc.as_object().expect("a JSON object");
    assert_eq!(
        top.keys().collect::<Vec<_>>(),
        [
            "applied", "last_log", "leader", "learners", "names", "raft_id", "term", "voters"
        ],
        "{stdout}"
    );
    let nodes = |key: &str| -> Vec<String> {
        top[key]
            .as_array()
            .unwrap_or_else(|| panic!("{key} is an array: {stdout}"))
            .iter()
            .map(|n| n.as_str().expect("a node name").to_owned())
            .collect()
    };
    assert!(top["names"].is_u64(), "{stdout}");
    RegistryView {
        leader: match &top["leader"] {
            serde_json::Value::Null => None,
            l => Some(l.as_str().expect("leader is a string or null").to_owned()),
        },
        voters: nodes("voters"),
        learners: nodes("learners"),
        applied: top["applied"].as_u64().expect("applied is a u64"),
    }
}

/// One row of `ctl names --json`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct NameRow {
    node: String,
    incarnation: u64,
    actor_id: u64,
    version: u64,
}

fn parse_names(stdout: &str) -> BTreeMap<String, NameRow> {
    let doc: serde_json::Value = serde_json::from_str(stdout).expect("ctl prints JSON");
    let top = doc.as_object().expect("a JSON object");
    assert_eq!(top.keys().collect::<Vec<_>>(), ["names"], "{stdout}");
    let rows = top["names"].as_array().expect("names is an array");
    let mut out = BTreeMap::new();
    let mut previous: Option<String> = None;
    for row in rows {
        let row = row.as_object().expect("a name is an object");
        let mut keys: Vec<&str> = row.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "actor_id",
                "actor_type",
                "incarnation",
                "name",
                "node",
                "version"
            ],
            "{stdout}"
        );
        assert_eq!(row["actor_type"], COUNTER_TYPE, "{stdout}");
        let name = row["name"].as_str().expect("name is a string").to_owned();
        // Documented order: by name.
        assert!(
            previous.as_ref().is_none_or(|p| *p < name),
            "names out of order: {stdout}"
        );
        previous = Some(name.clone());
        let u64_field = |key: &str| {
            row[key]
                .as_u64()
                .unwrap_or_else(|| panic!("{key}: {stdout}"))
        };
        out.insert(
            name,
            NameRow {
                node: row["node"].as_str().expect("node is a string").to_owned(),
                incarnation: u64_field("incarnation"),
                actor_id: u64_field("actor_id"),
                version: u64_field("version"),
            },
        );
    }
    out
}

/// What `ctl register` printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Registered {
    actor_id: u64,
    version: u64,
}

/// Parses `registered NAME -> NODE/<actor id> version V`.
fn parse_registered(stdout: &str, name: &str, node: &str) -> Registered {
    let line = stdout.trim_end();
    let rest = line
        .strip_prefix(&format!("registered {name} -> {node}/"))
        .unwrap_or_else(|| panic!("unexpected ctl register output {line:?}"));
    let (actor, version) = rest
        .split_once(" version ")
        .unwrap_or_else(|| panic!("unexpected ctl register output {line:?}"));
    Registered {
        actor_id: actor.parse().expect("actor id"),
        version: version.parse().expect("version"),
    }
}

/// Checks that `view` holds exactly `expected` (name → hosting node and version).
fn holds_exactly(
    view: &BTreeMap<String, NameRow>,
    expected: &BTreeMap<String, (&str, Registered)>,
) -> Result<(), String> {
    let actual: BTreeMap<&str, (&str, u64, u64)> = view
        .iter()
        .map(|(n, r)| (n.as_str(), (r.node.as_str(), r.actor_id, r.version)))
        .collect();
    let wanted: BTreeMap<&str, (&str, u64, u64)> = expected
        .iter()
        .map(|(n, (node, r))| (n.as_str(), (*node, r.actor_id, r.version)))
        .collect();
    if actual == wanted {
        Ok(())
    } else {
        Err(format!("names {actual:?}, expected {wanted:?}"))
    }
}

#[test]
fn names_survive_a_sigkilled_registry_leader_and_new_registrations_succeed() {
    let mut cluster = Cluster::new("reg-failover", false);
    cluster.start_all();
    let seed = cluster.addr("node-1");

    // 1. The registry forms by itself: three voters, a leader.
    let formed = cluster.wait_for_leader(seed, &NODES, "registry formed with three voters");

    // 2. One name per node, each bound to that node's `counter`; versions grow.
    let mut expected: BTreeMap<String, (&str, Registered)> = BTreeMap::new();
    let mut last_version = formed.applied;
    for node in NODES {
        let name = format!("svc/{node}");
        let reg = cluster
            .register(seed, &name, node)
            .unwrap_or_else(|e| panic!("register {name}: {e}"));
        assert!(
            reg.version > last_version,
            "{name}: {reg:?} after {last_version}"
        );
        last_version = reg.version;
        expected.insert(name, (node, reg));
    }

    // 3. A taken name is refused; the same registration again is idempotent.
    let out = cluster.ctl("register", seed, &["svc/node-1", "--node", "node-2"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("NameTaken"), "{stderr}");
    let again = cluster
        .register(seed, "svc/node-1", "node-1")
        .expect("registering the same actor again");
    assert_eq!(again, expected["svc/node-1"].1);

    // 4. Every node's view lists all of them with their versions.
    for node in NODES {
        poll(&format!("all names listed through {node}"), || {
            holds_exactly(&cluster.names(cluster.addr(node))?, &expected)
        });
    }

    // 5. SIGKILL the leader.
    let leader = cluster
        .registry(seed)
        .expect("registry status")
        .leader
        .expect("a leader");
    let leader: &'static str = NODES
        .into_iter()
        .find(|n| *n == leader)
        .unwrap_or_else(|| panic!("leader {leader:?} is one of the nodes"));
    let survivors: Vec<&'static str> = NODES.into_iter().filter(|n| *n != leader).collect();
    let via = cluster.addr(survivors[0]);
    println!(
        "SIGKILL registry leader {leader}; asking through {}",
        survivors[0]
    );
    cluster.kill(leader);
    let killed_at = Instant::now();

    // 6. A new registration succeeds once a survivor leads; what survivors host never
    //    disappears meanwhile.
    let survivor_names: BTreeMap<String, (&str, Registered)> = expected
        .iter()
        .filter(|(_, (node, _))| *node != leader)
        .map(|(n, v)| (n.clone(), *v))
        .collect();
    let fresh = poll("a registration after the leader kill", || {
        let view = cluster.names(via)?;
        for (name, (node, reg)) in &survivor_names {
            let row = view.get(name);
            assert!(
                row.is_some_and(|r| r.node == *node && r.version == reg.version),
                "{name} on survivor {node} lost or changed after the leader kill: {row:?}"
            );
        }
        cluster.register(via, "svc/after-failover", survivors[1])
    });
    println!(
        "writes resumed {:?} after the leader kill",
        killed_at.elapsed()
    );
    assert!(
        fresh.version > last_version,
        "{fresh:?} after {last_version}"
    );

    // 7. A survivor leads now (the dead node stays a voter: there is no spare member to
    //    replace it with), and the dead leader's name is released with its node.
    let new = cluster.wait_for_leader(via, &survivors, "a survivor leads");
    println!("new registry leader: {:?}", new.leader);
    let mut after = survivor_names.clone();
    after.insert("svc/after-failover".to_owned(), (survivors[1], fresh));
    for node in &survivors {
        poll(
            &format!("dead leader's name released, as seen through {node}"),
            || holds_exactly(&cluster.names(cluster.addr(node))?, &after),
        );
    }

    // 8. The released name can be taken by a survivor's actor.
    let released = format!("svc/{leader}");
    let moved = cluster
        .register(via, &released, survivors[0])
        .unwrap_or_else(|e| panic!("re-register {released}: {e}"));
    assert!(moved.version > fresh.version, "{moved:?} after {fresh:?}");

    cluster.nodes.remove(leader);
    cluster.stop();
}

/// The scenario of issue 10: the first acknowledged registration, then `kill -9` of the
/// first node at once. The registry formed with all three nodes as voters, so the name is on
/// a majority and the other two keep it, elect a leader and take new registrations; the dead
/// node stays a voter (there is no spare to replace it with).
#[test]
fn the_first_acknowledged_registration_survives_a_sigkill_of_the_first_node() {
    let mut cluster = Cluster::new("reg-first-write", false);
    cluster.start_all();
    let via = cluster.addr("node-2");
    // `ctl` itself retries while the registry forms; the loop covers a slow start.
    let first = poll("the first registration", || {
        cluster.register(via, "bars/a", "node-2")
    });
    cluster.kill("node-1");
    let killed_at = Instant::now();
    let fresh = poll("a registration after the first node's kill", || {
        let names = cluster.names(via)?;
        let row = names.get("bars/a");
        assert!(
            row.is_some_and(|r| r.node == "node-2" && r.version == first.version),
            "the acknowledged bars/a is gone or changed: {row:?}"
        );
        cluster.register(via, "bars/b", "node-3")
    });
    println!(
        "writes resumed {:?} after the kill of node-1",
        killed_at.elapsed()
    );
    assert!(fresh.version > first.version, "{fresh:?} after {first:?}");
    for node in ["node-2", "node-3"] {
        let view = poll(&format!("three voters as seen through {node}"), || {
            let view = cluster.registry(cluster.addr(node))?;
            if view.leader.as_deref().is_some_and(|l| l != "node-1") {
                Ok(view)
            } else {
                Err(format!("no live leader yet: {view:?}"))
            }
        });
        let mut voters = view.voters.clone();
        voters.sort_unstable();
        assert_eq!(voters, NODES, "through {node}: {view:?}");
    }
    cluster.nodes.remove("node-1");
    cluster.stop();
}

/// Operator actions on a 3-voter registry with one voter SIGKILLed: recovery is refused while
/// a quorum answers, removing a live voter is refused, removing the dead one leaves the two
/// live voters, and the registry keeps accepting writes. When one of those two is lost as
/// well, recovery from the other brings writes back with its names.
#[test]
fn an_operator_removes_a_dead_voter_and_later_recovers_the_registry_from_the_last_one() {
    let mut cluster = Cluster::new("reg-remove-voter", false);
    cluster.start_all();
    let via = cluster.addr("node-2");
    cluster.wait_for_leader(via, &NODES, "registry formed");
    cluster.kill("node-1");
    cluster.nodes.remove("node-1");
    poll("a registration after the kill of node-1", || {
        cluster.register(via, "svc/a", "node-2")
    });
    cluster.refused(via, &["recover", "--from", "node-2"], "quorum");
    cluster.refused(via, &["remove-voter", "node-3"], "alive");
    cluster.refused(via, &["remove-voter", "node-9"], "not a voter");
    // node-1 may still be Suspect (alive) for a moment after its kill: retried until Down.
    let out = poll("node-1 removed from the voters", || {
        succeeded(&cluster.ctl("registry", via, &["remove-voter", "node-1", "--json"]))
    });
    let view = parse_registry(&out);
    assert_eq!(view.voters, ["node-2", "node-3"], "{out}");
    poll("a registration with two voters", || {
        cluster.register(cluster.addr("node-3"), "svc/b", "node-3")
    });
    let view = cluster
        .registry(cluster.addr("node-3"))
        .expect("node-3 answers");
    assert_eq!(view.voters, ["node-2", "node-3"], "{view:?}");
    assert!(
        view.learners.is_empty(),
        "the removed voter is gone: {view:?}"
    );
    // Losing node-3 too leaves one of two voters: no quorum, until the operator re-forms the
    // registry from node-2's replica (in memory: ephemeral storage).
    let svc_a = cluster.names(via).expect("node-2 answers")["svc/a"].clone();
    cluster.kill("node-3");
    cluster.nodes.remove("node-3");
    let out = cluster.ctl("registry", via, &["recover", "--from", "node-2"]);
    println!("{}", succeeded(&out).expect("recovery from node-2"));
    poll("a registration after recovery", || {
        cluster.register(via, "svc/c", "node-2")
    });
    let names = cluster.names(via).expect("node-2 answers");
    assert_eq!(names.get("svc/a"), Some(&svc_a), "{names:?}");
    let view = cluster.registry(via).expect("node-2 answers");
    assert_eq!(view.voters, ["node-2"], "{view:?}");
    cluster.stop();
}

/// The Raft identity reproduction of issue 10: durable voters node-1..3 and learner node-4;
/// `kill -9` node-3; a registration acknowledged by node-1 and node-2; `kill -9` both; node-1
/// and node-2 restarted **without** their data, node-3 with its data. The restarted nodes are
/// new Raft members that refuse requests for their former ids, so node-3 cannot assemble the
/// old quorum: the registry stays unavailable instead of electing a leader that lacks the
/// acknowledged name, and node-4's replica keeps it.
#[test]
fn voters_restarted_without_their_state_never_answer_as_their_former_selves_until_an_operator_recovers()
 {
    let mut cluster = Cluster::new("reg-identity", true);
    cluster.start_all();
    let seed = cluster.addr("node-1");
    cluster.wait_for_leader(seed, &NODES, "durable registry formed");
    let any_port: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    cluster.start("node-4", any_port);
    let learner = cluster.addr("node-4");
    poll("node-4 is a learner", || {
        let view = cluster.registry(learner)?;
        if view.learners == ["node-4"] && view.voters.len() == 3 {
            Ok(())
        } else {
            Err(format!("{view:?}"))
        }
    });
    let addrs: BTreeMap<&str, SocketAddr> =
        NODES.into_iter().map(|n| (n, cluster.addr(n))).collect();
    cluster.kill("node-3");
    let acked = poll("n/1 acknowledged with node-3 down", || {
        cluster.register(learner, "n/1", "node-4")
    });
    poll("node-4's replica holds n/1", || {
        let names = cluster.names(learner)?;
        if names.get("n/1").is_some_and(|r| r.version == acked.version) {
            Ok(())
        } else {
            Err(format!("{names:?}"))
        }
    });
    cluster.kill("node-1");
    cluster.kill("node-2");
    for node in ["node-1", "node-2", "node-3"] {
        cluster.nodes.remove(node);
    }
    for node in ["node-1", "node-2"] {
        let dir = cluster.data_dir(node).expect("durable mode");
        std::fs::remove_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    }
    for node in ["node-1", "node-2", "node-3"] {
        cluster.start(node, addrs[node]);
    }
    // A safety property, so it is watched for a bounded time: ten election timeouts and more.
    // Every attempt to take n/1 for another node must fail, and n/1 must stay where it was.
    let watch_until = Instant::now() + Duration::from_secs(10);
    let mut attempts = 0;
    while Instant::now() < watch_until {
        attempts += 1;
        let taken = cluster.register(addrs["node-1"], "n/1", "node-1");
        assert!(
            taken.is_err(),
            "n/1 was registered again after the acknowledged registration was lost: {taken:?}"
        );
        let names = cluster.names(learner).expect("node-4 answers");
        assert!(
            names
                .get("n/1")
                .is_some_and(|r| r.node == "node-4" && r.version == acked.version),
            "node-4 lost or changed the acknowledged n/1: {names:?}"
        );
        let view = cluster.registry(addrs["node-3"]);
        assert!(
            view.as_ref().is_ok_and(|v| v.leader.is_none()),
            "node-3 found a quorum among voters that lost their state: {view:?}"
        );
    }
    println!("{attempts} attempts refused while the old voters' state was gone");
    // The operator recovers. node-3 kept its state but missed n/1: refused in favour of
    // node-4, whose replica is the most up to date.
    cluster.refused(
        learner,
        &["recover", "--from", "node-3"],
        "node-4 holds a longer registry log",
    );
    let out = cluster.ctl("registry", learner, &["recover", "--from", "node-4"]);
    let report = succeeded(&out).expect("recovery from node-4");
    println!("{report}");
    let recovered_at = Instant::now();
    let again = poll("a registration after recovery", || {
        cluster.register(addrs["node-1"], "n/2", "node-1")
    });
    println!("writes resumed {:?} after recovery", recovered_at.elapsed());
    assert!(again.version > acked.version, "{again:?} after {acked:?}");
    for node in ["node-1", "node-2", "node-3"] {
        poll(
            &format!("{node}'s replica holds n/1 after recovery"),
            || {
                let names = cluster.names(addrs[node])?;
                match names.get("n/1") {
                    Some(r) if r.node == "node-4" && r.version == acked.version => Ok(()),
                    Some(r) => panic!("the acknowledged n/1 changed in recovery: {r:?}"),
                    None => Err(format!("{names:?}")),
                }
            },
        );
    }
    poll("three voters again after recovery", || {
        let view = cluster.registry(learner)?;
        if view.voters.len() == 3 && view.voters.contains(&"node-4".to_owned()) {
            Ok(view)
        } else {
            Err(format!("{view:?}"))
        }
    });
    for node in ["node-1", "node-2", "node-3", "node-4"] {
        if let Some(mut p) = cluster.nodes.remove(node) {
            let _ = p.kill();
        }
    }
}

#[test]
fn durable_follower_restarted_on_its_data_dir_catches_up() {
    let mut cluster = Cluster::new("reg-durable", true);
    cluster.start_all();
    let seed = cluster.addr("node-1");
    let formed = cluster.wait_for_leader(seed, &NODES, "durable registry formed");
    let leader = formed.leader.clone().expect("a leader");

    // The victim is a follower; the others keep the quorum while it is down.
    let victim: &'static str = NODES
        .into_iter()
        .find(|n| *n != leader)
        .expect("a follower");
    let others: Vec<&'static str> = NODES.into_iter().filter(|n| *n != victim).collect();
    let via = cluster.addr(others[0]);
    let victim_addr = cluster.addr(victim);

    // 1. Names hosted by the others, and one by the victim; all applied on the victim.
    let mut expected: BTreeMap<String, (&str, Registered)> = BTreeMap::new();
    for node in &others {
        let name = format!("early/{node}");
        let reg = cluster
            .register(via, &name, node)
            .unwrap_or_else(|e| panic!("register {name}: {e}"));
        expected.insert(name, (*node, reg));
    }
    let victims_name = format!("early/{victim}");
    let reg = cluster
        .register(via, &victims_name, victim)
        .unwrap_or_else(|e| panic!("register {victims_name}: {e}"));
    let mut before_kill = expected.clone();
    before_kill.insert(victims_name.clone(), (victim, reg));
    poll("the victim's view holds every early name", || {
        holds_exactly(&cluster.names(victim_addr)?, &before_kill)
    });
    let data = cluster.data_dir(victim).expect("durable mode");
    assert!(
        dir_has_files(&data),
        "{victim} wrote nothing to {}",
        data.display()
    );

    // 2. SIGKILL it; the majority keeps registering, and releases the victim's name with
    //    its node.
    println!("SIGKILL follower {victim}");
    cluster.kill(victim);
    for node in &others {
        let name = format!("late/{node}");
        let reg = poll(&format!("register {name} while {victim} is down"), || {
            cluster.register(via, &name, node)
        });
        expected.insert(name, (*node, reg));
    }
    poll(&format!("{victims_name} released with its node"), || {
        holds_exactly(&cluster.names(via)?, &expected)
    });

    // 3. Restarted on the same data directory (and address), it catches up: its view holds
    //    exactly what the majority holds, and it is still a voter.
    cluster.nodes.remove(victim);
    cluster.start(victim, victim_addr);
    poll(&format!("restarted {victim} caught up"), || {
        holds_exactly(&cluster.names(victim_addr)?, &expected)
    });
    let view = cluster.wait_for_leader(victim_addr, &NODES, "three voters after the restart");
    assert!(view.learners.is_empty(), "{view:?}");

    // 4. It takes registrations again, for its new `counter` too.
    let back = poll(&format!("register through restarted {victim}"), || {
        cluster.register(victim_addr, &victims_name, victim)
    });
    assert!(
        back.version > reg.version,
        "{victims_name}: {back:?} after {reg:?}"
    );

    cluster.stop();
}

fn dir_has_files(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some())
}

#[test]
fn ctl_registry_commands_refuse_bad_command_lines_with_code_2() {
    let run = |program: &str, args: &[&str]| {
        let out = Command::new(binary(program))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("run {program}: {e}"));
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // Nothing listens on port 1: a command line that passed parsing would fail with code 1.
    let seed = [
        "--seed",
        "127.0.0.1:1",
        "--insecure-plaintext",
        "--wait",
        "1",
    ];
    for (args, why) in [
        (vec!["register", "--node", "node-1"], "NAME"),
        (vec!["register", "a"], "--node"),
        (
            vec!["register", "a", "b", "--node", "node-1"],
            "unexpected argument",
        ),
        (vec!["names", "extra"], "unexpected argument"),
        (vec!["names", "--prefix"], "--prefix needs a value"),
        (
            vec!["registry", "--node", "node-1"],
            "unknown option --node",
        ),
        (vec!["registry", "remove-voter"], "NODE"),
        (
            vec!["registry", "remove-voter", "a", "b"],
            "unexpected argument",
        ),
        (vec!["registry", "recover"], "--from"),
        (vec!["registry", "--from", "a"], "--from belongs"),
        (vec!["registry", "rebuild"], "unknown registry subcommand"),
    ] {
        // The connection flags go between the command and its own arguments, so that a
        // value-less flag at the end is really at the end.
        let (code, stderr) = run("ctl", &[&args[..1], &seed[..], &args[1..]].concat());
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(why), "{args:?}: {stderr}");
    }
    for (args, why) in [
        (&["--registry-voters", "4"][..], "--registry-voters"),
        (&["--data-dir", ""][..], "--data-dir"),
    ] {
        let base = [
            "--name",
            "n1",
            "--listen",
            "127.0.0.1:0",
            "--insecure-plaintext",
        ];
        let (code, stderr) = run("node", &[&base[..], args].concat());
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(why), "{args:?}: {stderr}");
    }
}

#[test]
fn a_registry_leader_that_stops_gracefully_hands_over_before_it_exits() {
    let mut cluster = Cluster::new("reg-handoff", false);
    cluster.start_all();
    let seed = cluster.addr("node-1");
    let formed = cluster.wait_for_leader(seed, &NODES, "registry formed with three voters");
    let leader: &'static str = NODES
        .into_iter()
        .find(|n| formed.leader.as_deref() == Some(*n))
        .expect("the leader is one of the nodes");
    let survivors: Vec<&'static str> = NODES.into_iter().filter(|n| *n != leader).collect();
    cluster
        .register(seed, "svc/before", survivors[0])
        .expect("register before the stop");

    // Stop the leader as a supervisor would (its stdin closes: a graceful shutdown).
    let mut process = cluster.nodes.remove(leader).expect("the leader runs");
    let status = process.stop(TEST_DEADLINE).expect("wait for the leader");
    assert!(status.is_some_and(|s| s.success()), "{leader}: {status:?}");

    // The hand-off finished before the process exited: the first look, without retrying,
    // already finds a survivor leading.
    let views: Vec<RegistryView> = survivors
        .iter()
        .map(|n| cluster.registry(cluster.addr(n)).expect("registry status"))
        .collect();
    assert!(
        views
            .iter()
            .any(|v| v.leader.as_deref().is_some_and(|l| survivors.contains(&l))),
        "no survivor leads right after {leader} exited: {views:?}"
    );
    let via = cluster.addr(survivors[0]);
    let after = cluster
        .register(via, "svc/after", survivors[1])
        .expect("register after the hand-off");
    assert!(
        cluster
            .names(via)
            .expect("names")
            .contains_key("svc/before")
    );
    assert!(after.version > 0);
    cluster.stop();
}
