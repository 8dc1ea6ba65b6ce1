//! `call`: joins a cluster as a client node and calls the `counter` actor of one node.
//!
//! ```text
//! call --seeds 127.0.0.1:7001 --insecure-plaintext --node node-2 add 5 --repeat 1000
//! ```

use std::error::Error;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use actix_cluster::prelude::*;
use actix_cluster_examples::args::{Args, UsageError};
use actix_cluster_examples::{
    Add, COUNTER_NAME, Counter, Get, Security, error_kind, init_tracing, wait_for_node,
};

const USAGE: &str = "\
usage: call --seeds IP:PORT,... --node NAME (--tls-dir DIR | --insecure-plaintext)
            [--cluster NAME] [--name NAME] [--repeat K] [--wait SECS] (add N | get)

Joins the cluster as a client node, finds the actor registered as `counter` on node NAME,
and sends it `add N` or `get` K times, one request at a time. Prints each reply (only the
last if K > 10) and the throughput.

  --seeds LIST            comma-separated addresses of cluster nodes
  --node NAME             the node whose `counter` to call
  --cluster NAME          cluster name (default: demo)
  --tls-dir DIR           mutual TLS; DIR must hold a certificate for this client's name
  --insecure-plaintext    no TLS (the nodes must run without TLS too)
  --name NAME             this client's node name (default: the name in the TLS
                          certificate, or call-<pid> without TLS)
  --repeat K              number of calls (default: 1)
  --wait SECS             how long to wait for a connection to NAME (default: 10)";

/// What to send to the counter.
#[derive(Debug, Clone, Copy)]
enum Op {
    Add(u64),
    Get,
}

#[derive(Debug)]
struct Options {
    seeds: Vec<String>,
    node: String,
    cluster: String,
    security: Security,
    name: Option<String>,
    repeat: u64,
    wait: Duration,
    op: Op,
}

fn parse() -> Result<Options, UsageError> {
    let args = Args::parse(
        std::env::args().skip(1),
        &[
            "--seeds",
            "--node",
            "--cluster",
            "--tls-dir",
            "--name",
            "--repeat",
            "--wait",
        ],
        &["--insecure-plaintext"],
    )?;
    let op = match args.positionals() {
        [get] if get == "get" => Op::Get,
        [add, n] if add == "add" => Op::Add(
            n.parse()
                .map_err(|e| UsageError::invalid(format!("add {n:?}: {e}")))?,
        ),
        [] => return Err(UsageError::invalid("say what to send: `add N` or `get`")),
        other => {
            return Err(UsageError::invalid(format!(
                "expected `add N` or `get`, got {:?}",
                other.join(" ")
            )));
        }
    };
    let seeds = args.list("--seeds");
    if seeds.is_empty() {
        return Err(UsageError::invalid("--seeds is required"));
    }
    let repeat = args.parsed("--repeat")?.unwrap_or(1);
    if repeat == 0 {
        return Err(UsageError::invalid("--repeat must be at least 1"));
    }
    Ok(Options {
        seeds,
        node: args.required("--node")?.to_owned(),
        cluster: args.cluster()?,
        security: Security::from_args(&args)?,
        name: args.value("--name").map(str::to_owned),
        repeat,
        wait: Duration::from_secs(args.parsed("--wait")?.unwrap_or(10)),
        op,
    })
}

fn main() -> ExitCode {
    init_tracing();
    let options = match parse() {
        Ok(o) => o,
        Err(e) => return e.report(USAGE),
    };
    match actix_rt::System::new().block_on(run(options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(o: Options) -> Result<(), Box<dyn Error>> {
    let mut builder = ClusterConfig::new()
        .node_role(NodeRole::Client)
        .listen("127.0.0.1:0")
        .seed_nodes(o.seeds.iter().cloned());
    builder = o.security.apply(builder)?;
    let name = match (&o.name, &o.security) {
        (Some(name), _) => name.clone(),
        // Peers check that the certificate names the node, so the certificate decides.
        (None, Security::TlsDir(dir)) => TlsConfig::from_dir(dir)?
            .certificate_names()?
            .into_iter()
            .next()
            .ok_or("the certificate names no node")?,
        (None, Security::Plaintext) => format!("call-{}", std::process::id()),
    };
    let config = builder.node_name(&name).build()?;
    let system = ClusterSystem::new(&o.cluster, config).start().await?;
    let outcome = call(&system, &o).await;
    system.shutdown().await;
    outcome
}

async fn call(system: &ClusterSystem, o: &Options) -> Result<(), Box<dyn Error>> {
    if !wait_for_node(system, &o.node, o.wait).await {
        let known: Vec<String> = system
            .members()
            .iter()
            .map(|m| format!("{} {:?}", m.id.name(), m.state))
            .collect();
        return Err(format!(
            "no connection to node {:?} within {:?} (members seen: {})",
            o.node,
            o.wait,
            known.join(", ")
        )
        .into());
    }
    let counter = system
        .actor_on::<Counter>(&o.node, COUNTER_NAME)
        .await
        .map_err(typed)?;
    let started = Instant::now();
    for i in 1..=o.repeat {
        let reply = match o.op {
            Op::Add(n) => counter.send(Add(n)).await,
            Op::Get => counter.send(Get).await,
        }
        .map_err(typed)?;
        if o.repeat <= 10 || i == o.repeat {
            println!("{reply}");
        }
    }
    let elapsed = started.elapsed();
    let per_s = o.repeat as f64 / elapsed.as_secs_f64().max(f64::MIN_POSITIVE);
    println!(
        "{} calls in {:.1} ms ({per_s:.0} calls/s)",
        o.repeat,
        elapsed.as_secs_f64() * 1e3
    );
    Ok(())
}

/// Prefixes the variant name, so the output can be matched against the docs of `RemoteError`.
fn typed(e: RemoteError) -> Box<dyn Error> {
    format!("{}: {e}", error_kind(&e)).into()
}
