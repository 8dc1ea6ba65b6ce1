//! `virtual-actors`: a player that always exists, addressed by id.
//!
//! ```text
//! cargo run --release -p actix-cluster-examples --bin virtual-actors
//! ```
//!
//! Needs `redis-server` on the PATH (Debian: `apt install redis-server`): the player's points
//! are kept in a Redis server that the nodes share, started by the example on a free loopback
//! port and stopped with it. Starts three nodes as child processes of itself, joins two
//! members of its own that host nothing (`web-1`, `web-2`), and with `Player/42`:
//! calls it from both (one activation answers both), waits for it to passivate when idle,
//! calls it again (activated again, from its saved points), kills (SIGKILL) the node that
//! hosts it, and calls it once more: a survivor activates it with every point it had.

use std::error::Error;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use actix_cluster::prelude::*;
use actix_cluster::virtual_actor::{VirtualAddr, activation_name};
use actix_cluster::{RegistryConfig, RegistryError};
use actix_cluster_examples::process::NodeProcess;
use actix_cluster_examples::{
    AddPoints, PLAYER_IDLE, Player, child_or_no_arguments, init_tracing_or, wait_for_hosts,
};
use actix_cluster_testkit::RedisServer;

const CLUSTER: &str = "virtual-actors";
const NODES: [&str; 3] = ["node-1", "node-2", "node-3"];
const PLAYER: &str = "42";
/// Bound on anything the example waits for; only reached when something is broken.
const DEADLINE: Duration = Duration::from_secs(20);

fn main() -> ExitCode {
    if let Some(done) = child_or_no_arguments(
        "usage: virtual-actors (no arguments; needs redis-server; RUST_LOG=info shows the nodes' logs)",
    ) {
        return done;
    }
    init_tracing_or("error");
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("\nvirtual-actors failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn Error>> {
    println!("== virtual actors ==\n");
    // The players' points live in a redis-server of the example's own, stopped with it.
    let redis = RedisServer::start([127, 0, 0, 1].into())?;
    println!("redis-server for the players' points at {}", redis.url());
    let exe = std::env::current_exe()?;
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
            "--state-redis",
            redis.url(),
        ]);
        if let Some(seed) = nodes.first() {
            cmd.args(["--seeds", &seed.addr().to_string()]);
        }
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

/// A member that hosts no players: it can call them (and claim their names) all the same.
async fn caller(name: &str, seed: &str) -> Result<ClusterSystem, Box<dyn Error>> {
    let config = ClusterConfig::new()
        .node_name(name)
        .listen("127.0.0.1:0")
        .seed_nodes([seed])
        .registry(RegistryConfig::new().voters(3))
        .insecure_plaintext()
        .build()?;
    Ok(ClusterSystem::new(CLUSTER, config).start().await?)
}

async fn steps(seed: &str, nodes: &mut [NodeProcess]) -> Result<(), Box<dyn Error>> {
    let web1 = caller("web-1", seed).await?;
    let web2 = caller("web-2", seed).await?;
    let outcome = play(&web1, &web2, nodes).await;
    web1.shutdown().await;
    web2.shutdown().await;
    outcome
}

async fn add(player: &VirtualAddr<Player>, points: u64) -> Result<(u64, String), Box<dyn Error>> {
    Ok(player.send(AddPoints(points)).await??)
}

async fn play(
    web1: &ClusterSystem,
    web2: &ClusterSystem,
    nodes: &mut [NodeProcess],
) -> Result<(), Box<dyn Error>> {
    wait_for_hosts(web1, Player::NAME, NODES.len(), DEADLINE).await?;
    // Handles cost nothing to make: no round trip, no activation yet.
    let from1 = web1.get::<Player>(PLAYER);
    let from2 = web2.get::<Player>(PLAYER);

    println!("\nweb-1 and web-2 call Player/{PLAYER}; the first call activates it:");
    let started = Instant::now();
    let (total, host) = add(&from1, 10).await?;
    println!(
        "    web-1: +10 -> {total} points, on {host} (first call, activation included: {:.1} ms)",
        started.elapsed().as_secs_f64() * 1e3
    );
    let (total, host2) = add(&from2, 5).await?;
    println!("    web-2: +5  -> {total} points, on {host2} (the same activation)");

    println!(
        "\nNo message for {} s: it saves, stops and releases its name.",
        PLAYER_IDLE.as_secs()
    );
    let name = activation_name(Player::NAME, PLAYER);
    let idle_since = Instant::now();
    loop {
        match web1.lookup_entry(&name).await {
            Err(RegistryError::NotFound(_)) => break,
            _ if idle_since.elapsed() > DEADLINE => {
                return Err("the player was not passivated in time".into());
            }
            _ => actix_rt::time::sleep(Duration::from_millis(50)).await,
        }
    }
    println!(
        "    passivated {:.1} s after its last message",
        idle_since.elapsed().as_secs_f64()
    );
    let (total, host) = add(&from2, 1).await?;
    println!(
        "    web-2: +1  -> {total} points, on {host} (activated again, from its saved points)"
    );

    let victim = nodes
        .iter_mut()
        .find(|n| n.name() == host)
        .ok_or("the player's node is not one of ours")?;
    victim.kill()?;
    let killed = Instant::now();
    println!("\nKilled {host} (SIGKILL). web-1 calls again until a survivor answers:");
    let (total, survivor) = loop {
        match add(&from1, 1).await {
            Ok(answer) => break answer,
            Err(_) if killed.elapsed() < DEADLINE => {
                actix_rt::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(format!("the player did not come back: {e}").into()),
        }
    };
    println!(
        "    web-1: +1  -> {total} points, on {survivor}, {:.2} s after the kill: every point kept",
        killed.elapsed().as_secs_f64()
    );
    if total != 17 {
        return Err(format!("expected 17 points, the player has {total}").into());
    }
    Ok(())
}
