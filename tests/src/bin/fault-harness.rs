//! `fault-harness [--seed N] [--faults N] [--storage ephemeral|durable|both]
//! [--architecture decentralized|centralized|both] [--nodes N] [--clients N] [--names N]
//! [--supervised N] [--accounts N]`
//! `fault-harness --figures [--runs N] [--storage ephemeral|durable]`
//!
//! Runs the registry workload, the self-healing workload on `--supervised` names (default
//! 20; 0 turns it off), and the virtual actor workload on `--accounts` accounts (default 0;
//! needs `redis-server`), under a seeded fault schedule on network-namespace hosts (needs root)
//! and prints one JSON object per mode; exits 1 if any mode found a violation or a heal after
//! which writes, or a supervised name, did not return. `cargo test --test faults` runs a bounded schedule; this
//! runs longer ones (`--faults 40` is about ten minutes per mode).
//!
//! `--figures` measures instead: the time from the first node's start to the first accepted
//! write (3 and 5 nodes), and write unavailability after `kill -9`, isolation and `SIGSTOP` of
//! the registry leader (5 nodes, `--runs` times each, default 3); one JSON object.

use std::process::ExitCode;
use std::time::Duration;

use actix_cluster_tests::faults::hosts::Net;
use actix_cluster_tests::faults::registry::{self, Architecture, Plan, Storage};

struct Options {
    seed: u64,
    faults: usize,
    nodes: usize,
    clients: usize,
    names: usize,
    supervised: usize,
    accounts: usize,
    storages: Vec<Storage>,
    architectures: Vec<Architecture>,
    figures: bool,
    runs: usize,
}

fn parse() -> Result<Options, String> {
    let mut o = Options {
        seed: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_secs()),
        faults: 20,
        nodes: 5,
        clients: 5,
        names: 4,
        supervised: 20,
        accounts: 0,
        storages: vec![Storage::Ephemeral, Storage::Durable],
        architectures: vec![Architecture::Decentralized, Architecture::Centralized],
        figures: false,
        runs: 3,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        let number = |v: String| {
            v.parse::<u64>()
                .map_err(|_| format!("{flag} {v:?}: not a number"))
        };
        match flag.as_str() {
            "--seed" => o.seed = number(value()?)?,
            "--faults" => o.faults = number(value()?)? as usize,
            "--nodes" => o.nodes = (number(value()?)? as usize).max(3),
            "--clients" => o.clients = (number(value()?)? as usize).max(1),
            "--names" => o.names = (number(value()?)? as usize).max(1),
            "--supervised" => o.supervised = number(value()?)? as usize,
            "--accounts" => o.accounts = number(value()?)? as usize,
            "--runs" => o.runs = (number(value()?)? as usize).max(1),
            "--figures" => o.figures = true,
            "--storage" => {
                o.storages = match value()?.as_str() {
                    "ephemeral" => vec![Storage::Ephemeral],
                    "durable" => vec![Storage::Durable],
                    "both" => vec![Storage::Ephemeral, Storage::Durable],
                    v => return Err(format!("--storage {v:?}: ephemeral, durable or both")),
                }
            }
            "--architecture" => {
                o.architectures = match value()?.as_str() {
                    "decentralized" => vec![Architecture::Decentralized],
                    "centralized" => vec![Architecture::Centralized],
                    "both" => vec![Architecture::Decentralized, Architecture::Centralized],
                    v => {
                        return Err(format!(
                            "--architecture {v:?}: decentralized, centralized or both"
                        ));
                    }
                }
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(o)
}

fn main() -> ExitCode {
    let o = match parse() {
        Ok(o) => o,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("fault-harness: {e}");
            }
            eprintln!(
                "usage: fault-harness [--seed N] [--faults N] [--storage ephemeral|durable|both] \
                 [--architecture decentralized|centralized|both] [--nodes N] [--clients N] \
                 [--names N] [--supervised N] [--accounts N]\n       fault-harness --figures [--runs N] [--storage ephemeral|durable]"
            );
            return ExitCode::from(2);
        }
    };
    let program = match std::env::current_exe() {
        Ok(me) => me.with_file_name("fault-node"),
        Err(e) => {
            eprintln!("fault-harness: {e}");
            return ExitCode::FAILURE;
        }
    };
    if o.figures {
        return figures(&o, &program);
    }
    eprintln!(
        "fault-harness: seed {} (replay with --seed {})",
        o.seed, o.seed
    );
    let mut failed = false;
    for (k, storage) in o.storages.iter().enumerate() {
        for (j, architecture) in o.architectures.iter().enumerate() {
            let plan = Plan {
                seed: o.seed,
                nodes: o.nodes,
                storage: *storage,
                architecture: *architecture,
                faults: o.faults,
                clients: o.clients,
                names: o.names,
                op_timeout: Duration::from_secs(6),
                recovery_bound: Duration::from_secs(20),
                supervised: o.supervised,
                accounts: o.accounts,
            };
            let run = format!("{}h{k}{j}", std::process::id() % 10_000);
            let net = match Net::create(&run, plan.nodes) {
                Ok(n) => n,
                Err(e) => {
                    eprintln!("fault-harness: network namespaces (needs root): {e}");
                    return ExitCode::FAILURE;
                }
            };
            match registry::run(&net, &program, &plan, &|line| eprintln!("{line}")) {
                Ok(r) => {
                    failed |= !r.passed();
                    let violations: Vec<_> = r
                        .violations
                        .iter()
                        .map(|v| {
                            serde_json::json!({
                                "name": v.name,
                                "at_operation": v.at_operation,
                                "operations": v.operations,
                            })
                        })
                        .collect();
                    println!(
                        "{}",
                        serde_json::json!({
                            "mode": r.label,
                            "seed": o.seed,
                            "schedule": r.schedule,
                            "operations": r.operations,
                            "answered": r.answered,
                            "failed": r.failed,
                            "unknown": r.unknown,
                            "faults": r.faults,
                            "recoveries_ms": r.recoveries_ms,
                            "unrecovered": r.unrecovered,
                            "violations": violations,
                            "pings": r.pings,
                            "activation_violations": r.activation_violations,
                            "paused_overlaps": r.paused_overlaps,
                            "account_updates": r.account_updates,
                            "account_acks": r.account_acks,
                            "migrations": r.migrations,
                            "handovers": r.handovers,
                            "unserved_adoptions": r.unserved_adoptions,
                            "elapsed_s": r.elapsed.as_secs_f64(),
                        })
                    );
                }
                Err(e) => {
                    eprintln!("fault-harness: {e}");
                    failed = true;
                }
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn figures(o: &Options, program: &std::path::Path) -> ExitCode {
    let storage = o.storages.first().copied().unwrap_or(Storage::Ephemeral);
    let net = match Net::create(&format!("{}f", std::process::id() % 10_000), 5) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("fault-harness: network namespaces (needs root): {e}");
            return ExitCode::FAILURE;
        }
    };
    match registry::figures(&net, program, storage, o.runs, &|line| eprintln!("{line}")) {
        Ok(f) => {
            let median = |v: &[u64]| {
                let mut v = v.to_vec();
                v.sort_unstable();
                v.get(v.len() / 2).copied()
            };
            let formation: serde_json::Map<String, serde_json::Value> = f
                .formation_ms
                .iter()
                .map(|(n, ms)| (format!("nodes_{n}"), serde_json::json!(ms)))
                .collect();
            let unavailability: serde_json::Map<String, serde_json::Value> = f
                .unavailability_ms
                .iter()
                .map(|(fault, runs)| {
                    (
                        (*fault).to_owned(),
                        serde_json::json!({ "runs_ms": runs, "median_ms": median(runs) }),
                    )
                })
                .collect();
            println!(
                "{}",
                serde_json::json!({
                    "storage": format!("{storage:?}").to_lowercase(),
                    "first_write_after_start_ms": formation,
                    "write_unavailability": unavailability,
                })
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("fault-harness: {e}");
            ExitCode::FAILURE
        }
    }
}
