//! Real processes: three `node` example binaries form a cluster, an in-process client calls
//! each node's `counter`, one node is SIGKILLed, and the client gets a typed error for it
//! while the two others keep answering. Every child is killed if a test fails (the
//! `NodeProcess` guards), and each node also exits by itself if this process dies, since its
//! stdin (a pipe from here) closes.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use actix_cluster::prelude::*;
use actix_cluster::{ClusterConfigBuilder, Timeouts};
use actix_cluster_examples::process::{NodeProcess, example_binaries};
use actix_cluster_examples::{Add, COUNTER_NAME, Counter, Get};
use actix_cluster_testkit::{TEST_DEADLINE, TestCa, TestNode, plaintext, with_tls};

const NODES: [&str; 3] = ["node-1", "node-2", "node-3"];

/// Builds the `node` binary once per test run (see `example_binaries`) and returns its path.
fn node_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        example_binaries(&["node"])
            .expect("build node")
            .remove("node")
            .expect("cargo reported no `node` executable")
    })
}

/// Starts `node-1` (the seed), then `node-2` and `node-3` joining it; `security` gives each
/// node's TLS or plaintext flags.
fn start_nodes(cluster: &str, security: impl Fn(&str) -> Vec<String>) -> Vec<NodeProcess> {
    let mut nodes: Vec<NodeProcess> = Vec::new();
    for name in NODES {
        let mut cmd = Command::new(node_binary());
        cmd.args([
            "--name",
            name,
            "--listen",
            "127.0.0.1:0",
            "--cluster",
            cluster,
        ])
        .args(security(name))
        .arg("--exit-on-stdin-close");
        if let Some(seed) = nodes.first() {
            cmd.args(["--seeds", &seed.addr().to_string()]);
        }
        let node = NodeProcess::spawn(name, cmd, TEST_DEADLINE)
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        nodes.push(node);
    }
    nodes
}

/// A client node joined through `seed`; it gives up on a silent node sooner than the LAN
/// preset so that the unreachable case is exercised, not only the timeout.
fn client(cluster: &str, config: ClusterConfigBuilder, seed: &NodeProcess) -> TestNode {
    let mut timeouts = Timeouts::lan();
    timeouts.give_up_after = Duration::from_secs(3);
    let config = config
        .node_role(NodeRole::Client)
        .seed_nodes([seed.addr().to_string()])
        .timeouts(timeouts)
        .request_timeout(Duration::from_secs(5))
        .build()
        .expect("client config");
    TestNode::start(cluster, config, |b| b).expect("client node")
}

/// The scenario shared by the plaintext and TLS runs; `victim` is killed.
fn kill_one_node_and_keep_calling_the_others(
    mut nodes: Vec<NodeProcess>,
    client: TestNode,
    victim: &'static str,
) {
    let counters = client
        .run(|s| async move {
            assert!(
                s.wait_for_peers(NODES.len(), TEST_DEADLINE).await,
                "client did not connect to every node; members: {:?}",
                s.members()
            );
            let mut counters = Vec::new();
            for (i, name) in (1u64..).zip(NODES) {
                let counter = s.actor_on::<Counter>(name, COUNTER_NAME).await?;
                assert_eq!(counter.send(Add(i)).await?, i, "{name}'s counter");
                counters.push(counter);
            }
            Ok::<_, RemoteError>(counters)
        })
        .expect("client thread")
        .expect("every node's counter answers");

    let killed = nodes
        .iter_mut()
        .find(|n| n.name() == victim)
        .expect("victim is one of the nodes");
    killed.kill().expect("SIGKILL the victim");

    let (to_victim, to_others) = client
        .run(move |_| async move {
            let mut to_victim = None;
            let mut to_others = Vec::new();
            for (i, counter) in (1u64..).zip(counters) {
                let name = counter.node().name().to_owned();
                // The request's own deadline bounds the wait; the outcome must be an error.
                let reply = counter.send(Get).timeout(Duration::from_secs(5)).await;
                if name == victim {
                    to_victim = Some(reply);
                } else {
                    to_others.push((name, reply, i));
                }
            }
            (to_victim, to_others)
        })
        .expect("client thread");

    match to_victim.expect("the victim was called") {
        Err(
            e @ (RemoteError::NodeGone { .. }
            | RemoteError::NodeUnreachable { .. }
            | RemoteError::Timeout(_)),
        ) => println!("request to the killed {victim}: {e:?}"),
        other => panic!(
            "request to the killed {victim}: expected NodeGone, NodeUnreachable or Timeout, got {other:?}"
        ),
    }
    assert_eq!(to_others.len(), 2);
    for (name, reply, expected) in to_others {
        assert_eq!(reply, Ok(expected), "{name} must keep answering");
    }

    client.stop();
    for node in nodes.iter_mut().filter(|n| n.name() != victim) {
        let status = node.stop(TEST_DEADLINE).expect("wait for node");
        assert!(
            status.is_some_and(|s| s.success()),
            "{} did not shut down cleanly: {status:?}",
            node.name()
        );
    }
}

#[test]
fn plaintext_cluster_survives_a_sigkilled_node() {
    let cluster = "mp-plain";
    let nodes = start_nodes(cluster, |_| vec!["--insecure-plaintext".to_owned()]);
    let client = client(cluster, plaintext("client"), &nodes[0]);
    kill_one_node_and_keep_calling_the_others(nodes, client, "node-3");
}

#[test]
fn tls_cluster_survives_its_seed_being_sigkilled() {
    let cluster = "mp-tls";
    let certs = tempfile::tempdir().expect("temp dir");
    let ca = TestCa::new(cluster).expect("ca");
    ca.write_node_dirs(certs.path(), &NODES).expect("certs");
    let dir = certs.path().to_owned();
    let nodes = start_nodes(cluster, move |name| {
        vec!["--tls-dir".to_owned(), dir.join(name).display().to_string()]
    });
    let client = client(cluster, with_tls(&ca, "client").expect("cert"), &nodes[0]);
    // The seed is the only address anyone was given: the others must not depend on it.
    kill_one_node_and_keep_calling_the_others(nodes, client, "node-1");
}

#[test]
fn node_reports_bad_flags_with_code_2_and_start_errors_with_code_1() {
    let run = |args: &[&str]| {
        let out = Command::new(node_binary())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run node");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    let (code, stderr) = run(&["--name", "n1", "--listen", "127.0.0.1:0"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--insecure-plaintext"), "{stderr}");

    let (code, stderr) = run(&["--name", "n1", "--listen", "127.0.0.1:0", "--bogus"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("unknown option --bogus"), "{stderr}");

    let missing = tempfile::tempdir().expect("temp dir");
    let missing = missing.path().join("no-certs-here");
    let (code, stderr) = run(&[
        "--name",
        "n1",
        "--listen",
        "127.0.0.1:0",
        "--tls-dir",
        &missing.display().to_string(),
    ]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("error:"), "{stderr}");
}
