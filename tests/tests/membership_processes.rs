//! Real processes, both architectures: five `node` programs form a cluster from one seed and
//! every node's member table shows all five `up`; a SIGKILLed node is seen `down` by every
//! survivor within the LAN preset's bound, comes back under the same name as a new incarnation
//! that every node sees `up`, and a node that leaves gracefully is seen `left` (never `down`)
//! by every survivor. Tables are read both with `ClusterSystem::members_of` from an in-test
//! client node (polled, to time the transitions) and with the `ctl status --json` program.

use std::collections::{BTreeMap, HashMap};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use actix_cluster::prelude::*;
use actix_cluster_examples::process::{NodeProcess, example_binaries};
use actix_cluster_testkit::{TEST_DEADLINE, TestNode, plaintext};

const NAMES: [&str; 5] = ["node-1", "node-2", "node-3", "node-4", "node-5"];
/// SIGKILLed, then restarted. Never a seed or master.
const VICTIM: &str = "node-3";
/// Leaves gracefully. Never a seed or master.
const LEAVER: &str = "node-4";
/// What is asserted for crash detection with the LAN preset; the ~2 s it is tuned for is
/// measured by `cluster-bench`, and the time seen here is printed.
const DOWN_BOUND: Duration = Duration::from_secs(10);
/// Formation, rejoin and leave: generous, only reached when something is broken.
const CONVERGE: Duration = Duration::from_secs(20);

fn binaries() -> &'static HashMap<String, PathBuf> {
    static BINARIES: OnceLock<HashMap<String, PathBuf>> = OnceLock::new();
    BINARIES.get_or_init(|| example_binaries(&["node", "ctl"]).expect("build node and ctl"))
}

fn binary(name: &str) -> &'static PathBuf {
    &binaries()[name]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arch {
    /// SWIM gossip, one seed (`node-1`).
    Gossip,
    /// Two masters (`node-1`, `node-2`); the other nodes are workers.
    Centralized,
}

/// An address on loopback that nothing listens on right now, for a master, which must be
/// named in every node's `--masters` before it starts.
fn free_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr")
}

/// How the nodes of one test cluster are started.
struct Plan {
    arch: Arch,
    cluster: &'static str,
    /// Centralized: the masters' addresses, chosen before they start.
    masters: Vec<SocketAddr>,
}

impl Plan {
    fn new(arch: Arch, cluster: &'static str) -> Self {
        let masters = match arch {
            Arch::Gossip => Vec::new(),
            Arch::Centralized => vec![free_addr(), free_addr()],
        };
        Plan {
            arch,
            cluster,
            masters,
        }
    }

    fn masters_flag(&self) -> String {
        let list: Vec<String> = self.masters.iter().map(ToString::to_string).collect();
        list.join(",")
    }

    /// Starts node `name` listening on `listen`, joining through `seed` if given.
    fn start(&self, name: &str, listen: SocketAddr, seed: Option<SocketAddr>) -> NodeProcess {
        let mut cmd = Command::new(binary("node"));
        cmd.args(["--name", name, "--listen", &listen.to_string()])
            .args(["--cluster", self.cluster, "--insecure-plaintext"])
            .args(["--preset", "lan", "--exit-on-stdin-close"]);
        match self.arch {
            Arch::Gossip => {
                cmd.args(["--architecture", "decentralized", "--discovery", "gossip"]);
            }
            Arch::Centralized => {
                cmd.args(["--architecture", "centralized"])
                    .args(["--masters", &self.masters_flag()]);
                if self.masters.contains(&listen) {
                    cmd.args(["--role", "master"]);
                }
            }
        }
        // Centralized nodes are also given a seed: the masters are how they register, a seed
        // is how any node first connects, and the contract allows both.
        if let Some(seed) = seed.filter(|s| *s != listen) {
            cmd.args(["--seeds", &seed.to_string()]);
        }
        NodeProcess::spawn(name, cmd, TEST_DEADLINE).unwrap_or_else(|e| panic!("start {name}: {e}"))
    }

    /// Starts the five nodes: `node-1` first (the seed; with `node-2`, the masters).
    fn start_all(&self) -> BTreeMap<&'static str, NodeProcess> {
        let mut nodes = BTreeMap::new();
        let mut seed = None;
        for (i, name) in NAMES.into_iter().enumerate() {
            let listen = self
                .masters
                .get(i)
                .copied()
                .unwrap_or_else(|| "127.0.0.1:0".parse().expect("addr"));
            let node = self.start(name, listen, seed);
            seed.get_or_insert(node.addr());
            nodes.insert(name, node);
        }
        nodes
    }

    /// An in-test client node joined through `seed`, configured like the cluster.
    fn client(&self, seed: SocketAddr) -> TestNode {
        let mut config = plaintext("probe")
            .node_role(NodeRole::Client)
            .seed_nodes([seed.to_string()])
            // A survivor that does not answer must not eat the detection budget.
            .request_timeout(Duration::from_secs(2));
        if self.arch == Arch::Centralized {
            config = config
                .architecture(Architecture::Centralized)
                .master_nodes(self.masters.iter().map(ToString::to_string));
        }
        TestNode::start(self.cluster, config.build().expect("client config"), |b| b)
            .expect("client node")
    }
}

type Tables = BTreeMap<String, Result<Vec<Member>, RemoteError>>;

/// The member table of each of `nodes`, as each sees it, read with `members_of`.
fn tables(client: &TestNode, nodes: &[&str]) -> Tables {
    let nodes: Vec<String> = nodes.iter().map(|n| (*n).to_owned()).collect();
    client
        .run(|s| async move {
            let mut out = Tables::new();
            for n in nodes {
                let table = s.members_of(&n).await;
                out.insert(n, table);
            }
            out
        })
        .expect("client thread")
}

/// The row of member `id` in `table`.
fn row<'a>(table: &'a [Member], id: &NodeId) -> Option<&'a Member> {
    table.iter().find(|m| m.id == *id)
}

/// The row of the newest incarnation named `name` in `table`.
fn newest<'a>(table: &'a [Member], name: &str) -> Option<&'a Member> {
    table
        .iter()
        .filter(|m| m.id.name() == name)
        .max_by_key(|m| m.id.incarnation())
}

/// A compact view of tables for failure messages: `name#inc state` per row.
fn show(tables: &Tables) -> String {
    let mut out = String::new();
    for (node, table) in tables {
        out.push_str(&format!("\n  {node}: "));
        match table {
            Ok(rows) => {
                let cells: Vec<String> = rows
                    .iter()
                    .map(|m| format!("{} {}", m.id, m.state))
                    .collect();
                out.push_str(&cells.join(", "));
            }
            Err(e) => out.push_str(&format!("error {e:?}")),
        }
    }
    out
}

/// Polls the tables of `nodes` until `done` holds for every one of them, or `deadline` passes
/// (then panics with `what` and the last tables). `check` runs on every poll and may panic
/// on a state that must never be seen. Returns the time it took and the last tables.
fn poll_tables(
    client: &TestNode,
    nodes: &[&str],
    deadline: Duration,
    what: &str,
    mut check: impl FnMut(&str, &[Member]),
    mut done: impl FnMut(&str, &[Member]) -> bool,
) -> (Duration, BTreeMap<String, Vec<Member>>) {
    let started = Instant::now();
    loop {
        let last = tables(client, nodes);
        for (node, table) in &last {
            if let Ok(rows) = table {
                check(node, rows);
            }
        }
        let all = last
            .iter()
            .all(|(node, table)| table.as_ref().is_ok_and(|rows| done(node, rows)));
        if all {
            let ok = last
                .into_iter()
                .filter_map(|(n, t)| t.ok().map(|t| (n, t)))
                .collect();
            return (started.elapsed(), ok);
        }
        assert!(
            started.elapsed() < deadline,
            "{what}: not within {deadline:?}; tables:{}",
            show(&last)
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// The identity each node has in its own table.
fn own_ids(tables: &BTreeMap<String, Vec<Member>>) -> BTreeMap<String, NodeId> {
    tables
        .iter()
        .map(|(node, rows)| {
            let me = newest(rows, node).unwrap_or_else(|| panic!("{node} lists itself"));
            (node.clone(), me.id.clone())
        })
        .collect()
}

/// One member as `ctl status --json` prints it.
#[derive(Debug)]
struct CtlRow {
    name: String,
    incarnation: u64,
    state: String,
}

/// Runs `ctl status --json` against the node at `seed`, checks the shape of what it prints,
/// and returns the rows.
fn ctl_status(plan: &Plan, seed: SocketAddr) -> Vec<CtlRow> {
    let out = Command::new(binary("ctl"))
        .args(["status", "--json", "--insecure-plaintext", "--wait", "10"])
        .args(["--cluster", plan.cluster, "--seed", &seed.to_string()])
        .stdin(Stdio::null())
        .output()
        .expect("run ctl");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "ctl status --seed {seed} failed ({}): {}{stdout}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_str(&stdout).expect("ctl prints JSON");
    let top = doc.as_object().expect("a JSON object");
    assert_eq!(top.keys().collect::<Vec<_>>(), ["members"], "{stdout}");
    let members = top["members"].as_array().expect("members is an array");
    members
        .iter()
        .map(|m| {
            let m = m.as_object().expect("a member is an object");
            let mut keys: Vec<&str> = m.keys().map(String::as_str).collect();
            keys.sort_unstable();
            assert_eq!(
                keys,
                [
                    "addr",
                    "incarnation",
                    "load",
                    "name",
                    "phi",
                    "role",
                    "state"
                ],
                "{stdout}"
            );
            let state = m["state"].as_str().expect("state is a string").to_owned();
            assert!(
                ["joining", "up", "suspect", "down", "leaving", "left"].contains(&&*state),
                "state {state:?}"
            );
            assert!(
                m["addr"]
                    .as_str()
                    .is_some_and(|a| a.parse::<SocketAddr>().is_ok())
            );
            assert!(m["role"].is_string() && (m["phi"].is_number() || m["phi"].is_null()));
            let load = &m["load"];
            if !load.is_null() {
                let load = load.as_object().expect("load is an object or null");
                assert!(load["actors"].is_u64() && load["mailbox_backlog"].is_u64());
                assert!(load["cpu"].is_number() || load["cpu"].is_null());
            }
            CtlRow {
                name: m["name"].as_str().expect("name is a string").to_owned(),
                incarnation: m["incarnation"].as_u64().expect("incarnation is a u64"),
                state,
            }
        })
        .collect()
}

/// The state `ctl` reports for member `id`, if it lists it.
fn ctl_state<'a>(rows: &'a [CtlRow], id: &NodeId) -> Option<&'a str> {
    rows.iter()
        .find(|r| r.name == id.name() && r.incarnation == id.incarnation())
        .map(|r| r.state.as_str())
}

/// The whole story for one architecture.
fn crash_restart_and_leave(arch: Arch, cluster: &'static str) {
    let plan = Plan::new(arch, cluster);
    let started = Instant::now();
    let mut nodes = plan.start_all();
    let seed = nodes["node-1"].addr();
    let client = plan.client(seed);

    // 1. Formation: every node lists all five, each `up`, under the identity it has itself.
    let (took, formed) = poll_tables(
        &client,
        &NAMES,
        CONVERGE,
        "five nodes up everywhere",
        |_, _| {},
        |_, rows| {
            NAMES
                .iter()
                .all(|n| newest(rows, n).is_some_and(|m| m.state == MemberState::Up))
        },
    );
    let ids = own_ids(&formed);
    for (node, rows) in &formed {
        for id in ids.values() {
            assert_eq!(
                row(rows, id).map(|m| m.state),
                Some(MemberState::Up),
                "{node} sees {id}"
            );
        }
    }
    println!("[{cluster}] five nodes up everywhere after {took:?}");
    for name in NAMES {
        let rows = ctl_status(&plan, nodes[name].addr());
        for id in ids.values() {
            assert_eq!(
                ctl_state(&rows, id),
                Some("up"),
                "ctl via {name}: {id}; {rows:?}"
            );
        }
    }

    // 2. Crash: every survivor reports the victim `down` within the bound.
    let victim_id = ids[VICTIM].clone();
    let victim_addr = nodes[VICTIM].addr();
    let survivors: Vec<&str> = NAMES.into_iter().filter(|n| *n != VICTIM).collect();
    nodes
        .get_mut(VICTIM)
        .expect("victim")
        .kill()
        .expect("SIGKILL the victim");
    let (took, _) = poll_tables(
        &client,
        &survivors,
        DOWN_BOUND,
        "SIGKILLed node down on every survivor",
        |_, _| {},
        |_, rows| row(rows, &victim_id).is_some_and(|m| m.state == MemberState::Down),
    );
    println!("[{cluster}] SIGKILLed {VICTIM} seen down by every survivor after {took:?}");

    // 3. Restart under the same name and address: a new incarnation, `up` everywhere; the old
    //    one is never `up` again.
    let restarted = plan.start(VICTIM, victim_addr, Some(seed));
    nodes.insert(VICTIM, restarted);
    let (took, rejoined) = poll_tables(
        &client,
        &NAMES,
        CONVERGE,
        "restarted node up everywhere as a new incarnation",
        |node, rows| {
            if let Some(old) = row(rows, &victim_id) {
                assert!(
                    old.state.is_final(),
                    "{node} shows the killed incarnation {victim_id} as {}",
                    old.state
                );
            }
        },
        |_, rows| {
            newest(rows, VICTIM).is_some_and(|m| {
                m.id.incarnation() > victim_id.incarnation() && m.state == MemberState::Up
            }) && NAMES
                .iter()
                .all(|n| newest(rows, n).is_some_and(|m| m.state == MemberState::Up))
        },
    );
    let new_victim = own_ids(&rejoined)[VICTIM].clone();
    for (node, rows) in &rejoined {
        assert_eq!(
            newest(rows, VICTIM).map(|m| &m.id),
            Some(&new_victim),
            "{node} sees the incarnation the restarted node has"
        );
    }
    println!("[{cluster}] restarted {VICTIM} ({new_victim}) up everywhere after {took:?}");

    // 4. Graceful leave: every survivor reports `left`, and never `down`.
    let leaver_id = ids[LEAVER].clone();
    let status = nodes
        .get_mut(LEAVER)
        .expect("leaver")
        .leave(TEST_DEADLINE)
        .expect("ask the node to leave");
    assert!(
        status.is_some_and(|s| s.success()),
        "{LEAVER} did not exit 0 after leaving: {status:?}"
    );
    let stayers: Vec<&str> = NAMES.into_iter().filter(|n| *n != LEAVER).collect();
    let (took, _) = poll_tables(
        &client,
        &stayers,
        CONVERGE,
        "left node left on every survivor",
        |node, rows| {
            if let Some(m) = row(rows, &leaver_id) {
                assert_ne!(
                    m.state,
                    MemberState::Down,
                    "{node} reports the node that left gracefully as down"
                );
            }
        },
        |_, rows| row(rows, &leaver_id).is_some_and(|m| m.state == MemberState::Left),
    );
    println!("[{cluster}] {LEAVER} seen left by every survivor after {took:?}");

    // 5. The operator's view agrees.
    let rows = ctl_status(&plan, seed);
    assert_eq!(ctl_state(&rows, &leaver_id), Some("left"), "{rows:?}");
    assert_eq!(ctl_state(&rows, &new_victim), Some("up"), "{rows:?}");
    if let Some(old) = ctl_state(&rows, &victim_id) {
        assert_eq!(old, "down", "{rows:?}");
    }

    client.stop();
    for (name, node) in &mut nodes {
        if *name == LEAVER {
            continue;
        }
        let status = node.stop(TEST_DEADLINE).expect("wait for node");
        assert!(
            status.is_some_and(|s| s.success()),
            "{name} did not shut down cleanly: {status:?}"
        );
    }
    println!("[{cluster}] whole run took {:?}", started.elapsed());
}

#[test]
fn gossip_cluster_sees_crash_down_restart_up_and_leave_left() {
    crash_restart_and_leave(Arch::Gossip, "mp-gossip");
}

#[test]
fn centralized_cluster_sees_crash_down_restart_up_and_leave_left() {
    crash_restart_and_leave(Arch::Centralized, "mp-central");
}

#[test]
fn node_refuses_bad_membership_flags_with_code_2() {
    for (args, why) in [
        (&["--architecture", "mesh"][..], "--architecture"),
        (&["--discovery", "dns"][..], "--discovery"),
        (&["--preset", "fast"][..], "--preset"),
        (&["--architecture", "centralized"][..], "--masters"),
        (
            &["--cluster", "Aearly1"][..],
            "--cluster: cluster name \"Aearly1\" contains 'A'; use lower-case letters, digits, '-' and '.'",
        ),
    ] {
        let out = Command::new(binary("node"))
            .args([
                "--name",
                "n1",
                "--listen",
                "127.0.0.1:0",
                "--insecure-plaintext",
            ])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run node");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(why), "{args:?}: {stderr}");
    }
}

#[test]
fn ctl_reports_usage_errors_with_code_2_and_an_unreachable_seed_with_code_1() {
    let run = |args: &[&str]| {
        let out = Command::new(binary("ctl"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run ctl");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stderr) = run(&["frobnicate"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("unknown command"), "{stderr}");

    let (code, stderr) = run(&["status", "--insecure-plaintext"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--seed"), "{stderr}");

    let (code, stderr) = run(&[
        "status",
        "--seed",
        "127.0.0.1:1",
        "--insecure-plaintext",
        "--cluster",
        "Aearly1",
    ]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("--cluster: cluster name \"Aearly1\" contains 'A'"),
        "{stderr}"
    );

    // Nothing listens there: ctl must give up at its deadline with a message, not hang.
    let nobody = free_addr().to_string();
    let (code, stderr) = run(&[
        "status",
        "--seed",
        &nobody,
        "--insecure-plaintext",
        "--wait",
        "1",
    ]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("no connection"), "{stderr}");
}
