//! `self-healing`: named actors that come back after their node is killed.
//!
//! ```text
//! cargo run --release -p actix-cluster-examples --bin self-healing
//! ```
//!
//! Starts three nodes as child processes of itself (plaintext, on 127.0.0.1), joins them as a
//! member that hosts nothing, spawns ten named counters by `LeastLoaded` placement with the
//! `Always` restart policy, moves one of them to another node by live migration (its count
//! goes with it), kills (SIGKILL) the node that hosts the most of them, and shows every name
//! answering again from a survivor, with the time it took.

use std::collections::BTreeMap;
use std::error::Error;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use actix_cluster::placement::{Constraint, Placement, RestartPolicy, SpawnSpec};
use actix_cluster::prelude::*;
use actix_cluster::{NameEntry, RegistryConfig};
use actix_cluster_examples::process::NodeProcess;
use actix_cluster_examples::{
    Add, Counter, Get, child_or_no_arguments, init_tracing_or, wait_for_hosts,
};

const CLUSTER: &str = "self-healing";
const NODES: [&str; 3] = ["node-1", "node-2", "node-3"];
const ACTORS: usize = 10;
/// Bound on anything the example waits for; only reached when something is broken.
const DEADLINE: Duration = Duration::from_secs(20);

fn main() -> ExitCode {
    // Child mode: the nodes are copies of this program.
    if let Some(done) = child_or_no_arguments(
        "usage: self-healing (no arguments; RUST_LOG=info shows the nodes' logs)",
    ) {
        return done;
    }
    // Killing a node makes the others log warnings; they are expected here.
    init_tracing_or("error");
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("\nself-healing failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn Error>> {
    println!("== self-healing actors ==\n");
    let exe = std::env::current_exe()?;
    // Dropping `nodes` (on success or on any error) kills whatever is still running.
    let mut nodes: Vec<NodeProcess> = Vec::new();
    for name in NODES {
        let mut cmd = Command::new(&exe);
        cmd.arg("--child").args([
            "--name",
            name,
            "--listen",
            "127.0.0.1:0",
            "--cluster",
            CLUSTER,
            "--insecure-plaintext",
            "--exit-on-stdin-close",
        ]);
        if let Some(seed) = nodes.first() {
            cmd.args(["--seeds", &seed.addr().to_string()]);
        }
        // The plaintext warning and the warnings about the killed node are expected here.
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "error");
        }
        let node = NodeProcess::spawn(name, cmd, DEADLINE)?;
        println!(
            "{} is up at {} (pid {})",
            node.name(),
            node.addr(),
            node.id()
        );
        nodes.push(node);
    }
    let seed = nodes[0].addr().to_string();
    actix_rt::System::new().block_on(steps(&seed, &mut nodes))?;
    for node in &mut nodes {
        let _ = node.stop(DEADLINE);
    }
    Ok(())
}

async fn steps(seed: &str, nodes: &mut [NodeProcess]) -> Result<(), Box<dyn Error>> {
    // A member (claims need one) that does not register Counter, so it hosts none of them.
    let config = ClusterConfig::new()
        .node_name("spawner")
        .listen("127.0.0.1:0")
        .seed_nodes([seed])
        .registry(RegistryConfig::new().voters(3))
        .insecure_plaintext()
        .build()?;
    let system = ClusterSystem::new(CLUSTER, config).start().await?;
    let outcome = spawn_kill_watch(&system, nodes).await;
    system.shutdown().await;
    outcome
}

async fn spawn_kill_watch(
    system: &ClusterSystem,
    nodes: &mut [NodeProcess],
) -> Result<(), Box<dyn Error>> {
    wait_for_hosts(system, Counter::NAME, NODES.len(), DEADLINE).await?;
    println!("\nSpawning {ACTORS} counters/N by LeastLoaded, restart policy Always:");
    let mut addrs = Vec::new();
    for i in 0..ACTORS {
        let spec = SpawnSpec::new()
            .placement(Placement::LeastLoaded)
            .constraint(Constraint::new().capability(Counter::NAME))
            .name(format!("counters/{i}"))
            .restart(RestartPolicy::Always);
        let addr: RemoteAddr<Counter> = system.spawn(spec, |_| Counter::default()).await?;
        addr.send(Add(i as u64)).await?;
        addrs.push(addr);
    }
    print_table(&placement(system).await?);

    // A live migration: the counter moves with its count, and its name (and `addrs[9]`) follow.
    let last = &addrs[ACTORS - 1];
    let from = system
        .lookup_entry(&format!("counters/{}", ACTORS - 1))
        .await?;
    let to = NODES
        .iter()
        .find(|n| **n != from.node.name())
        .ok_or("no other node")?;
    let started = Instant::now();
    let moved = system.migrate(&from.name, to).await?;
    println!(
        "\nMigrated {} from {} to {} in {:.1} ms; it still counts {} (state moved with it).",
        from.name,
        from.node.name(),
        moved.node.name(),
        started.elapsed().as_secs_f64() * 1e3,
        last.send(Get).await?
    );
    let before = placement(system).await?;

    let mut hosted: BTreeMap<&str, usize> = BTreeMap::new();
    for e in &before {
        *hosted.entry(e.node.name()).or_default() += 1;
    }
    let (victim, count) = hosted
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(k, n)| ((*k).to_owned(), *n))
        .ok_or("no counter was placed")?;
    let process = nodes
        .iter_mut()
        .find(|n| n.name() == victim)
        .ok_or("the busiest node is not one of ours")?;
    process.kill()?;
    let killed = Instant::now();
    println!("\nKilled {victim} (SIGKILL), which hosted {count} of them. Asking every counter");
    println!("through the address spawn returned (it follows the name) until all answer:");

    let deadline = killed + DEADLINE;
    let mut answered = vec![None; addrs.len()];
    while answered.iter().any(Option::is_none) {
        if Instant::now() > deadline {
            return Err(format!("not every counter came back within {DEADLINE:?}").into());
        }
        for (i, addr) in addrs.iter().enumerate() {
            if answered[i].is_none()
                && addr
                    .send(Get)
                    .timeout(Duration::from_millis(300))
                    .await
                    .is_ok()
            {
                answered[i] = Some(killed.elapsed());
            }
        }
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    let after = placement(system).await?;
    print_table(&after);
    let slowest = answered.iter().flatten().max().copied().unwrap_or_default();
    println!(
        "\nAll {ACTORS} answer again; the last {:.2} s after the kill (failure detection, the",
        slowest.as_secs_f64()
    );
    println!(
        "restart; a killed process refuses connections, so no lease is waited out). Restarted counters"
    );
    println!(
        "begin again from the state they were spawned with, or moved with (a state store is the next step)."
    );
    Ok(())
}

async fn placement(system: &ClusterSystem) -> Result<Vec<NameEntry>, Box<dyn Error>> {
    Ok(system.list_names("counters/").await?)
}

fn print_table(entries: &[NameEntry]) {
    for e in entries {
        println!("    {:<12} on {}", e.name, e.node.name());
    }
}
