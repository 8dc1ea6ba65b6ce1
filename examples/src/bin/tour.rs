//! `tour`: a guided walk through actix-cluster, in one command:
//!
//! ```text
//! cargo run --release -p actix-cluster-examples --bin tour
//! ```
//!
//! It starts three nodes as child processes of itself (real processes, mutual TLS with a CA it
//! generates into a temporary directory), joins them as a client node, and shows remote spawn,
//! tell, ask, name lookup, typed errors, and what callers see when a node is killed. Every
//! child is killed if the tour fails half-way.

use std::error::Error;
use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_cluster::Timeouts;
use actix_cluster::prelude::*;
use actix_cluster_examples::process::NodeProcess;
use actix_cluster_examples::{
    Add, COUNTER_NAME, Counter, Get, child_or_no_arguments, error_kind, init_tracing_or,
    wait_for_node,
};
use actix_cluster_testkit::TestCa;
use serde::{Deserialize, Serialize};

const CLUSTER: &str = "tour";
const CLIENT: &str = "tour-client";
const NODES: [&str; 3] = ["node-1", "node-2", "node-3"];
/// Bound on anything the tour waits for; only reached when something is broken.
const DEADLINE: Duration = Duration::from_secs(10);

const USAGE: &str = "\
usage: tour

Starts a 3-node actix-cluster on 127.0.0.1 as child processes (mutual TLS, throwaway CA),
joins it as a client, and explains each step on stdout. Takes no arguments; set RUST_LOG
(for example RUST_LOG=info) to see what the nodes log on stderr.";

/// A second actor type, only to show what happens when an address claims the wrong type.
#[derive(Debug, Serialize, Deserialize)]
struct Greeter;

impl Actor for Greeter {
    type Context = Context<Self>;
}

#[derive(Debug, Message, Serialize, Deserialize)]
#[rtype(result = "String")]
struct Greet(String);

impl Handler<Greet> for Greeter {
    type Result = String;
    fn handle(&mut self, m: Greet, _: &mut Context<Self>) -> String {
        format!("hello, {}", m.0)
    }
}

impl DistributedActor for Greeter {
    const NAME: &'static str = "examples.greeter";
    fn messages(m: &mut Messages<Self>) {
        m.handle::<Greet>("greet");
    }
}

fn main() -> ExitCode {
    // Child mode: the tour runs its nodes as copies of itself, so it needs no other binary.
    if let Some(done) = child_or_no_arguments(USAGE) {
        return done;
    }
    // The tour provokes failures on purpose; their warnings would read like the tour failing.
    init_tracing_or("error");
    let started = Instant::now();
    match tour() {
        Ok(()) => {
            println!(
                "\nThe tour is over ({:.1} s). Next: docs/examples.md shows how to run `node` and `call` yourself.",
                started.elapsed().as_secs_f64()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("\ntour failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn tour() -> Result<(), Box<dyn Error>> {
    println!("== actix-cluster tour ==\n");
    println!("Step 0. Generating a cluster CA and one certificate per node (each names its node),");
    let certs = tempfile::tempdir()?;
    let ca = TestCa::new(CLUSTER)?;
    let mut names = NODES.to_vec();
    names.push(CLIENT);
    ca.write_node_dirs(certs.path(), &names)?;
    println!("        then starting three nodes as child processes, joined over mutual TLS.");

    let exe = std::env::current_exe()?;
    // Dropping `nodes` (on success or on any error) kills whatever is still running.
    let mut nodes: Vec<NodeProcess> = Vec::new();
    for name in NODES {
        let seed = nodes.first().map(|n: &NodeProcess| n.addr().to_string());
        let node = spawn_node(&exe, certs.path(), name, seed.as_deref())?;
        println!(
            "        {} is up at {} (pid {})",
            node.name(),
            node.addr(),
            node.id()
        );
        nodes.push(node);
    }
    let seed = nodes[0].addr().to_string();

    actix_rt::System::new().block_on(client_steps(certs.path(), &seed, &mut nodes))?;

    println!("\nStep 7. Shutting the remaining nodes down gracefully (they leave the cluster");
    println!("        and tell their peers) and waiting for their processes to exit.");
    for node in nodes.iter_mut().filter(|n| n.name() != "node-3") {
        match node.stop(DEADLINE)? {
            Some(status) if status.success() => println!("        {} exited cleanly", node.name()),
            Some(status) => return Err(format!("{} exited with {status}", node.name()).into()),
            None => return Err(format!("{} did not exit in time; killed", node.name()).into()),
        }
    }
    Ok(())
}

fn spawn_node(
    exe: &Path,
    certs: &Path,
    name: &str,
    seed: Option<&str>,
) -> Result<NodeProcess, Box<dyn Error>> {
    let mut cmd = Command::new(exe);
    cmd.arg("--child")
        .args([
            "--name",
            name,
            "--listen",
            "127.0.0.1:0",
            "--cluster",
            CLUSTER,
        ])
        .arg("--tls-dir")
        .arg(certs.join(name))
        .arg("--exit-on-stdin-close");
    if let Some(seed) = seed {
        cmd.args(["--seeds", seed]);
    }
    Ok(NodeProcess::spawn(name, cmd, DEADLINE)?)
}

async fn client_steps(
    certs: &Path,
    seed: &str,
    nodes: &mut [NodeProcess],
) -> Result<(), Box<dyn Error>> {
    // Give up on a silent node after 2 s instead of the LAN preset's 10 s, so step 6 is quick.
    let mut timeouts = Timeouts::lan();
    timeouts.reconnect_max = Duration::from_millis(500);
    timeouts.give_up_after = Duration::from_secs(2);
    let config = ClusterConfig::new()
        .node_name(CLIENT)
        .node_role(NodeRole::Client)
        .listen("127.0.0.1:0")
        .seed_nodes([seed])
        .tls(TlsConfig::from_dir(certs.join(CLIENT))?)
        .timeouts(timeouts)
        .build()?;
    let system = ClusterSystem::new(CLUSTER, config).start().await?;
    let outcome = steps(&system, nodes).await;
    system.shutdown().await;
    outcome
}

async fn steps(system: &ClusterSystem, nodes: &mut [NodeProcess]) -> Result<(), Box<dyn Error>> {
    println!("\nStep 1. This process joins too, as a client node named {CLIENT:?}: it only knows");
    println!("        node-1's address and learns the others from it. Members it sees:");
    if !system.wait_for_peers(NODES.len(), DEADLINE).await {
        return Err(format!("not connected to all nodes within {DEADLINE:?}").into());
    }
    for m in system.members() {
        println!(
            "        - {:<12} {:<16} {:<7} {:?}",
            m.id.name(),
            m.addr,
            m.role,
            m.state
        );
    }

    println!(
        "\nStep 2. Remote spawn: build a Counter {{ n: 100 }} here, ship its serialized state"
    );
    println!("        to node-2 and start it there.");
    let spawned = system
        .remote_actor::<Counter>("node-2", |_| Counter { n: 100 })
        .await?;
    println!(
        "        got a RemoteAddr<Counter> for actor {} on {}",
        spawned.actor_id(),
        spawned.node()
    );

    println!("\nStep 3. Tell (fire and forget) and ask (typed reply) that actor.");
    spawned.do_send(Add(1));
    println!("        do_send(Add(1))   queued, no reply, never waits");
    spawned.tell(Add(2)).await?;
    println!("        tell(Add(2))      waited for room in the send queue, no reply");
    let v: u64 = spawned.send(Add(3)).await?;
    println!("        send(Add(3))   -> {v}   (100 + 1 + 2 + 3: messages arrive in send order)");
    let v: u64 = spawned.send(Get).await?;
    println!("        send(Get)      -> {v}");

    println!("\nStep 4. Find an actor by name: every node started a Counter and registered it");
    println!("        as {COUNTER_NAME:?}. Resolve it on node-3 and ask it.");
    let counter3 = system.actor_on::<Counter>("node-3", COUNTER_NAME).await?;
    let v = counter3.send(Add(7)).await?;
    println!("        node-3/{COUNTER_NAME} send(Add(7)) -> {v}");

    println!("\nStep 5. Mistakes come back as typed errors (RemoteError), not hangs or panics:");
    match system.actor_on::<Counter>("node-3", "no-such-actor").await {
        Err(e @ RemoteError::UnknownActor { .. }) => {
            println!("        unknown name    -> {}: {e}", error_kind(&e));
        }
        other => return Err(format!("expected UnknownActor, got {other:?}").into()),
    }
    match system.actor_on::<Greeter>("node-3", COUNTER_NAME).await {
        Err(e @ RemoteError::ActorTypeMismatch { .. }) => {
            println!("        wrong type      -> {}: {e}", error_kind(&e));
        }
        other => return Err(format!("expected ActorTypeMismatch, got {other:?}").into()),
    }
    match system.remote_actor::<Greeter>("node-2", |_| Greeter).await {
        Err(e) => println!("        not spawnable   -> {}: {e}", error_kind(&e)),
        Ok(_) => return Err("node-2 spawned a Greeter it never registered".into()),
    }
    match system.actor_on::<Counter>("node-9", COUNTER_NAME).await {
        Err(e) => println!("        unknown node    -> {}: {e}", error_kind(&e)),
        Ok(_) => return Err("found a counter on a node that does not exist".into()),
    }

    println!("\nStep 6. Crash: SIGKILL node-3 (no goodbye), then ask its counter again.");
    let node3 = nodes
        .iter_mut()
        .find(|n| n.name() == "node-3")
        .ok_or("node-3 is not running")?;
    let status = node3.kill()?;
    println!("        node-3 (pid {}) killed: {status}", node3.id());
    let asked = Instant::now();
    let outcome = counter3.send(Get).timeout(DEADLINE).await;
    let took = asked.elapsed();
    match outcome {
        Err(e) => {
            println!(
                "        send(Get) to node-3 -> {}: {e}   (after {} ms)",
                error_kind(&e),
                took.as_millis()
            );
            println!(
                "        The caller learns the node is down from a typed error within a bounded"
            );
            println!(
                "        time (here the client's 2 s give-up setting), instead of waiting forever."
            );
        }
        Ok(v) => return Err(format!("a killed node answered {v}").into()),
    }
    let v = spawned.send(Get).await?;
    println!("        meanwhile node-2 still answers: send(Get) -> {v}");
    if !wait_for_node(system, "node-2", DEADLINE).await {
        return Err("lost node-2".into());
    }
    for m in system.members() {
        println!("        - {:<12} {:?}", m.id.name(), m.state);
    }
    Ok(())
}
