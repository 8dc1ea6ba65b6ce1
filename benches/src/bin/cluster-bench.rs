//! `cluster-bench [--quick]`: runs the baselines and the cluster scenarios and prints one JSON
//! object on stdout. Progress goes to stderr, so `cluster-bench > result.json` stays parseable.
//! See `docs/benchmarks.md` for what each figure means.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use actix_cluster::NetworkThread;
use actix_cluster_benches::baseline::{self, RawRtt};
use actix_cluster_benches::cpu;
use actix_cluster_benches::latency::{Percentiles, Recorder};
use actix_cluster_benches::membership::{self, Detection};
use actix_cluster_benches::scenario::{Pair, PipelinedRun, Security, TellRun};
use actix_cluster_benches::{BenchResult, median, ms, round};
use actix_cluster_benches::{healing, placement, registry, state, virtual_actors};
use serde_json::{Value, json};

/// Latency runs are split into this many rounds, alternating raw TCP, plain and TLS.
const LATENCY_ROUNDS: u64 = 10;
/// Suspicions of the idle run listed one by one (the count covers all of them).
const MAX_LISTED_SUSPICIONS: usize = 20;
/// Requests kept outstanding by `ask_pipelined_plain`.
const PIPELINED_IN_FLIGHT: usize = 64;
/// Payload bytes of a `Tell1k` and of a frame of the 1 KiB raw stream.
const PAYLOAD_1K: f64 = 1024.0;

/// Sizes of one run.
#[derive(Debug, Clone, Copy)]
struct Plan {
    quick: bool,
    /// One-way messages per throughput run (baselines included).
    messages: u64,
    /// Unrecorded one-way messages before each throughput run.
    tell_warmup: u64,
    /// Recorded requests per latency run (a multiple of `2 * LATENCY_ROUNDS`).
    requests: u64,
    /// Unrecorded requests before each latency run and before the pipelined ask run.
    ask_warmup: u64,
    /// Requests of the pipelined ask run (`PIPELINED_IN_FLIGHT` outstanding).
    pipelined_requests: u64,
    /// Cluster sizes of the `formation` scenario.
    formation_sizes: &'static [usize],
    /// Nodes of each `detection` cluster.
    detection_nodes: usize,
    /// Crashes measured, each in a fresh cluster; the median is reported.
    detection_runs: usize,
    /// How long a formed cluster runs before the crash, so the detectors are in steady state.
    detection_settle: Duration,
    /// Nodes of the idle (false suspicion) cluster.
    idle_nodes: usize,
    /// Length of the idle window.
    idle: Duration,
    /// Sizes of the registry scenarios.
    registry: registry::Plan,
    /// Timed decisions per placement strategy.
    placement_samples: usize,
    /// Supervised actors on the killed node of `restart_after_kill` (the issue asks >= 20).
    kill_actors: usize,
    /// Supervised actors on the leaving node of `restart_after_leave`.
    leave_actors: usize,
    /// Fresh clusters of each self-healing recovery scenario; the median is reported.
    healing_runs: usize,
    /// Moves of the `migration_pause` scenario.
    migration_moves: usize,
    /// Sizes of the state store scenarios.
    state: state::Plan,
    /// Sizes of the virtual actor scenarios.
    virtuals: virtual_actors::Plan,
}

impl Plan {
    fn new(quick: bool) -> Self {
        if quick {
            Self {
                quick,
                messages: 100_000,
                tell_warmup: 10_000,
                requests: 20_000,
                ask_warmup: 2_000,
                pipelined_requests: 20_000,
                formation_sizes: &[10],
                detection_nodes: 4,
                detection_runs: 1,
                detection_settle: Duration::from_secs(1),
                idle_nodes: 10,
                idle: Duration::from_secs(5),
                registry: registry::Plan::quick(),
                placement_samples: 20_000,
                kill_actors: 24,
                leave_actors: 100,
                healing_runs: 1,
                migration_moves: 10,
                state: state::Plan {
                    saves: 20_000,
                    in_flight: 256,
                    sequential_saves: 200,
                    value_len: 256,
                },
                virtuals: virtual_actors::Plan {
                    cold: 500,
                    warm: 5_000,
                    activations: 2_000,
                    in_flight: 64,
                },
            }
        } else {
            Self {
                quick,
                messages: 1_000_000,
                tell_warmup: 50_000,
                requests: 100_000,
                ask_warmup: 5_000,
                pipelined_requests: 200_000,
                formation_sizes: &[10, 20, 50],
                detection_nodes: 6,
                detection_runs: 3,
                detection_settle: Duration::from_secs(1),
                idle_nodes: 10,
                idle: Duration::from_secs(60),
                registry: registry::Plan::full(),
                placement_samples: 200_000,
                kill_actors: 24,
                leave_actors: 100,
                healing_runs: 3,
                migration_moves: 40,
                state: state::Plan {
                    saves: 200_000,
                    in_flight: 256,
                    sequential_saves: 1_000,
                    value_len: 256,
                },
                virtuals: virtual_actors::Plan {
                    cold: 2_000,
                    warm: 20_000,
                    activations: 20_000,
                    in_flight: 64,
                },
            }
        }
    }
}

fn main() -> ExitCode {
    let mut quick = false;
    let mut only_healing = false;
    let mut only_state = false;
    let mut only_virtual = false;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--quick" => quick = true,
            "--only-self-healing" => only_healing = true,
            "--only-state" => only_state = true,
            "--only-virtual" => only_virtual = true,
            "-h" | "--help" => {
                eprintln!(
                    "usage: cluster-bench [--quick] [--only-self-healing | --only-state | \
                     --only-virtual]\n\nPrints one JSON object with the baselines and the \
                     cluster scenarios (or only the self-healing ones, the state store ones, or \
                     the virtual actor ones); see docs/benchmarks.md."
                );
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("cluster-bench: unknown argument {other:?} (try --help)");
                return ExitCode::from(2);
            }
        }
    }
    let plan = Plan::new(quick);
    if only_state {
        println!(
            "{:#}",
            json!({ "scenarios": state::scenarios(&plan.state, &progress), "machine": machine() })
        );
        return ExitCode::SUCCESS;
    }
    if only_virtual {
        println!(
            "{:#}",
            json!({ "scenarios": virtual_actors::scenarios(&plan.virtuals, &progress), "machine": machine() })
        );
        return ExitCode::SUCCESS;
    }
    if only_healing {
        println!(
            "{:#}",
            json!({ "scenarios": self_healing(&plan), "machine": machine() })
        );
        return ExitCode::SUCCESS;
    }
    match run(plan) {
        Ok(report) => {
            println!("{report:#}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cluster-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(plan: Plan) -> BenchResult<Value> {
    let started = Instant::now();
    let n = plan.messages;
    progress(&format!(
        "{} run: {n} messages per throughput run, {} requests per latency run",
        if plan.quick { "quick" } else { "full" },
        plan.requests
    ));

    let local_run = baseline::local_do_send_run(n)?;
    let local = local_run.msgs_per_s;
    progress(&format!("baseline local do_send: {local:.0} msg/s"));
    let raw_stream = baseline::raw_tcp_stream(n)?;
    progress(&format!("baseline raw TCP stream: {raw_stream:.0} msg/s"));
    // Reported as null with an error string if it fails, like every figure added after the
    // first baselines; the run goes on.
    let raw_1k = baseline::raw_tcp_stream_1k(n).map_err(|e| e.to_string());
    match &raw_1k {
        Ok(r) => progress(&format!(
            "baseline raw TCP stream, 1 KiB payloads: {r:.0} msg/s ({:.3} GB/s of payload)",
            r * PAYLOAD_1K / 1e9
        )),
        Err(e) => progress(&format!(
            "baseline raw TCP stream, 1 KiB payloads: FAILED: {e}"
        )),
    }

    let plain = Pair::start(Security::Plain)?;
    let tls = Pair::start(Security::Tls)?;
    let tell_plain = plain.tell_8b(plan.tell_warmup, n)?;
    report_tell("tell_plain", &tell_plain);
    let tell_1k = plain.tell_1k(plan.tell_warmup, n)?;
    report_tell("tell_1k_plain", &tell_1k);
    let tell_1k_bytes = plain.tell_1k_bytes(plan.tell_warmup, n)?;
    report_tell("tell_1k_bytes_plain", &tell_1k_bytes);
    let tell_tls = tls.tell_8b(plan.tell_warmup, n)?;
    report_tell("tell_tls", &tell_tls);

    // Latency rounds are interleaved so the raw baseline and both ask scenarios see the same
    // machine state: on a small VM the cost of waking an idle vCPU changes by 10x over seconds,
    // and a baseline measured before a scenario would compare two different machines.
    // The opt-in topology: each node's network I/O on the arbiter of its actors. Started after
    // the throughput runs, so that its idle nodes are not part of those.
    let home = Pair::start_on(Security::Plain, NetworkThread::Home)?;
    let raw = RawRtt::start()?;
    raw.warm_up(plan.ask_warmup)?;
    let relay = RawRtt::start_relay()?;
    relay.warm_up(plan.ask_warmup)?;
    let mut ask_plain = plain.ask(Recorder::new()?, plan.ask_warmup, 0)?;
    let mut ask_tls = tls.ask(Recorder::new()?, plan.ask_warmup, 0)?;
    let mut ask_home = home.ask(Recorder::new()?, plan.ask_warmup, 0)?;
    let per_round = plan.requests / LATENCY_ROUNDS;
    let (half, rest) = (per_round / 2, per_round - per_round / 2);
    // Process CPU time of the ask_plain rounds only, summed; the other threads wait meanwhile.
    let mut ask_plain_cpu = Some(Duration::ZERO);
    for _ in 0..LATENCY_ROUNDS {
        raw.round(half)?;
        relay.round(half)?;
        let cpu_before = cpu::process_cpu_time();
        ask_plain = plain.ask(ask_plain, 0, per_round)?;
        ask_plain_cpu = ask_plain_cpu
            .zip(cpu::since(cpu_before))
            .map(|(sum, round)| sum + round);
        raw.round(rest)?;
        relay.round(rest)?;
        ask_tls = tls.ask(ask_tls, 0, per_round)?;
        ask_home = home.ask(ask_home, 0, per_round)?;
    }
    let raw_rtt = raw.finish()?;
    let relay_rtt = relay.finish()?;
    progress(&format!(
        "baseline raw TCP RTT: p50 {:.1} µs, p99 {:.1} µs; relayed through 4 threads: p50 {:.1} \
         µs, p99 {:.1} µs",
        raw_rtt.p50_us, raw_rtt.p99_us, relay_rtt.p50_us, relay_rtt.p99_us
    ));
    let (ask_plain, ask_tls) = (ask_plain.percentiles(), ask_tls.percentiles());
    let ask_home = ask_home.percentiles();
    report_ask("ask_plain", &ask_plain);
    report_ask("ask_tls", &ask_tls);
    report_ask("ask_plain_home_thread", &ask_home);
    // The same throughput runs in the opt-in topology, after its latency rounds.
    let tell_home = home.tell_8b(plan.tell_warmup, n)?;
    report_tell("tell_plain_home_thread", &tell_home);
    let pipelined = |pair: &Pair, name: &str| {
        let run = pair
            .ask_pipelined(
                PIPELINED_IN_FLIGHT,
                plan.ask_warmup,
                plan.pipelined_requests,
            )
            .map_err(|e| e.to_string());
        report_pipelined(name, &run);
        run
    };
    let pipelined_home = pipelined(&home, "ask_pipelined_plain_home_thread");
    home.stop();
    // After the latency rounds, so that flooding the pair cannot change the machine state they
    // are measured in.
    let pipelined = pipelined(&plain, "ask_pipelined_plain");
    plain.stop();
    tls.stop();

    let formation = formation(&plan)?;
    let detection = detection(&plan)?;
    let registry = registry::scenarios(&plan.registry, &progress);
    let placement_decisions = placement::decisions(plan.placement_samples)
        .unwrap_or_else(|e| json!({ "error": e.to_string() }));
    let placement_spread = placement::spread(10, 10_000);
    let healing = self_healing(&plan);
    let state_saves = state::scenarios(&plan.state, &progress);
    let virtuals = virtual_actors::scenarios(&plan.virtuals, &progress);
    progress(&format!(
        "placement: decisions over {} members {placement_decisions}; spread {placement_spread}",
        placement::MEMBERS
    ));

    let tell = |run: &TellRun| {
        json!({
            "msgs_per_s": run.msgs_per_s.round(),
            "ratio_to_local_do_send": round(run.msgs_per_s / local, 3),
        })
    };
    let ask = |p: &Percentiles| {
        json!({
            "p50_us": round(p.p50_us, 1),
            "p99_us": round(p.p99_us, 1),
            "p999_us": round(p.p999_us, 1),
            "ratio_p50_to_raw_tcp": round(p.p50_us / raw_rtt.p50_us, 3),
            "ratio_p50_to_relay": round(p.p50_us / relay_rtt.p50_us, 3),
        })
    };
    let raw_1k_ok = raw_1k.as_ref().ok().copied();
    let tell_1k_json = |run: &TellRun| {
        json!({
            "msgs_per_s": run.msgs_per_s.round(),
            "ratio_to_local_do_send": round(run.msgs_per_s / local, 3),
            "payload_gb_per_s": round(run.msgs_per_s * PAYLOAD_1K / 1e9, 3),
            "ratio_to_raw_framed_1k": raw_1k_ok
                .filter(|r| *r > 0.0)
                .map(|r| round(run.msgs_per_s / r, 3)),
        })
    };
    let pipelined_done = completed(&pipelined, plan.pipelined_requests);
    let pipelined_json_home = pipelined_json(
        &pipelined_home,
        completed(&pipelined_home, plan.pipelined_requests),
        tell_home.msgs_per_s,
    );
    let pipelined_json = pipelined_json(&pipelined, pipelined_done, tell_plain.msgs_per_s);
    let cpu_json = cpu_per_message(
        &local_run,
        &tell_plain,
        ask_plain_cpu,
        per_round * LATENCY_ROUNDS,
        pipelined_done,
    );
    let wire_bytes = tell_plain.bytes_written as f64 / tell_plain.sent as f64;
    progress(&format!("done in {:.1} s", started.elapsed().as_secs_f64()));
    Ok(json!({
        "baselines": {
            "local_do_send_msgs_per_s": local.round(),
            "raw_tcp_msgs_per_s": raw_stream.round(),
            "raw_tcp_rtt_p50_us": round(raw_rtt.p50_us, 1),
            "raw_tcp_relay_rtt_p50_us": round(relay_rtt.p50_us, 1),
            "raw_framed_1k_msgs_per_s": raw_1k_ok.map(f64::round),
            "raw_framed_1k_payload_gb_per_s": raw_1k_ok.map(|r| round(r * PAYLOAD_1K / 1e9, 3)),
            "raw_framed_1k_error": raw_1k.as_ref().err(),
        },
        "scenarios": {
            "tell_plain": tell(&tell_plain),
            "tell_tls": tell(&tell_tls),
            "tell_1k_plain": tell_1k_json(&tell_1k),
            "tell_1k_bytes_plain": tell_1k_json(&tell_1k_bytes),
            "tell_plain_home_thread": tell(&tell_home),
            "ask_plain": ask(&ask_plain),
            "ask_tls": ask(&ask_tls),
            "ask_plain_home_thread": ask(&ask_home),
            "ask_pipelined_plain": pipelined_json,
            "ask_pipelined_plain_home_thread": pipelined_json_home,
            "cpu_per_message": cpu_json,
            "wire_bytes_per_8b_tell": round(wire_bytes, 2),
            "formation": formation,
            "detection": detection,
            "registry_write": registry.write,
            "registry_lookup": registry.lookup,
            "registry_failover": registry.failover,
            "placement_decision": placement_decisions,
            "placement_spread": placement_spread,
            "restart_after_kill": healing["restart_after_kill"],
            "restart_after_leave": healing["restart_after_leave"],
            "migration_pause": healing["migration_pause"],
            "state_save": state_saves,
            "virtual_actor_latency": virtuals["virtual_actor_latency"],
            "virtual_actor_activations": virtuals["virtual_actor_activations"],
        },
        "machine": machine(),
        "config": {
            "messages": n,
            "requests": plan.requests,
            "pipelined_requests": plan.pipelined_requests,
            "quick": plan.quick,
            "elapsed_s": round(started.elapsed().as_secs_f64(), 1),
        },
    }))
}

/// The self-healing scenarios ([`healing`]).
fn self_healing(plan: &Plan) -> Value {
    json!({
        "restart_after_kill": healing::after_kill(plan.kill_actors, plan.healing_runs, &progress),
        "restart_after_leave": healing::after_leave(plan.leave_actors, plan.healing_runs, &progress),
        "migration_pause": healing::migration_pause(plan.migration_moves, &progress),
    })
}

/// A pipelined run that started every planned request and got answers; one that stopped
/// starting requests has no figures, only its error.
fn completed(run: &Result<PipelinedRun, String>, planned: u64) -> Option<&PipelinedRun> {
    run.as_ref()
        .ok()
        .filter(|run| run.sent == planned && run.completed > 0)
}

/// `ask_pipelined_plain`: the figure is `null` (with the error) if the run failed or stopped
/// starting requests; a run that completed with some failed requests keeps its figure, which
/// counts only the answered ones, and names the failures in `error`.
fn pipelined_json(
    run: &Result<PipelinedRun, String>,
    done: Option<&PipelinedRun>,
    tell_8b: f64,
) -> Value {
    match run {
        Ok(run) => {
            let figure = done.map(|run| run.requests_per_s);
            json!({
                "requests_per_s": figure.map(f64::round),
                "in_flight": run.in_flight,
                "ratio_to_tell_8b": figure
                    .filter(|_| tell_8b > 0.0)
                    .map(|r| round(r / tell_8b, 3)),
                "requests": run.sent,
                "completed": run.completed,
                "failed": run.failed,
                "error": run.first_error,
            })
        }
        Err(e) => json!({
            "requests_per_s": null,
            "in_flight": PIPELINED_IN_FLIGHT,
            "ratio_to_tell_8b": null,
            "requests": null,
            "completed": null,
            "failed": null,
            "error": e,
        }),
    }
}

/// `cpu_per_message`: process CPU time (user plus system, all threads) over each measured
/// window divided by the messages processed in it, in nanoseconds, and each cluster figure as a
/// multiple of the local `do_send` one. A figure that cannot be computed is `null`, and `error`
/// says why.
fn cpu_per_message(
    local: &baseline::LocalRun,
    tell: &TellRun,
    ask_cpu: Option<Duration>,
    asks: u64,
    pipelined: Option<&PipelinedRun>,
) -> Value {
    let local_ns = cpu::per_message_ns(local.cpu, local.processed);
    let tell_ns = cpu::per_message_ns(tell.cpu, tell.processed);
    let ask_ns = cpu::per_message_ns(ask_cpu, asks);
    let pipelined_ns = pipelined.and_then(|run| cpu::per_message_ns(run.cpu, run.completed));
    let ratio = |ns: Option<f64>| {
        ns.zip(local_ns.filter(|l| *l > 0.0))
            .map(|(ns, l)| round(ns / l, 2))
    };
    let mut errors = Vec::new();
    if cpu::process_cpu_time().is_none() {
        errors.push(cpu::UNAVAILABLE.to_owned());
    } else if pipelined_ns.is_none() {
        errors.push("ask_pipelined_ns: ask_pipelined_plain failed (see its error)".to_owned());
    }
    let out = json!({
        "tell_ns": tell_ns.map(|v| round(v, 1)),
        "ask_ns": ask_ns.map(|v| round(v, 1)),
        "ask_pipelined_ns": pipelined_ns.map(|v| round(v, 1)),
        "local_do_send_ns": local_ns.map(|v| round(v, 1)),
        "tell_ratio_to_local": ratio(tell_ns),
        "ask_ratio_to_local": ratio(ask_ns),
        "ask_pipelined_ratio_to_local": ratio(pipelined_ns),
        "error": if errors.is_empty() { None } else { Some(errors.join("; ")) },
    });
    progress(&format!(
        "CPU per message (ns, user+sys of the whole process): tell {}, ask {}, pipelined ask \
         {}, local do_send {}",
        show(tell_ns),
        show(ask_ns),
        show(pipelined_ns),
        show(local_ns)
    ));
    out
}

fn show(ns: Option<f64>) -> String {
    ns.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.0}"))
}

/// The `formation` scenario at every planned size. A size that fails is reported as `null`
/// figures with an `error` string, and the other sizes still run.
fn formation(plan: &Plan) -> BenchResult<Value> {
    let config = membership::lan_node("n0").build()?;
    let period = config.membership().probe_period;
    let mut out = serde_json::Map::new();
    out.insert("probe_period_ms".into(), json!(ms(period)));
    for &nodes in plan.formation_sizes {
        let result = match membership::formation(&format!("formation-{nodes}"), nodes) {
            Ok(f) => {
                progress(&format!(
                    "formation of {nodes}: all Up everywhere after {:.0} ms ({:.1} probe \
                     periods; starting the nodes took {:.0} ms)",
                    ms(f.all_up),
                    f.all_up.as_secs_f64() / period.as_secs_f64(),
                    ms(f.start)
                ));
                json!({
                    "ms": round(ms(f.all_up), 1),
                    "start_ms": round(ms(f.start), 1),
                    "protocol_periods": round(f.all_up.as_secs_f64() / period.as_secs_f64(), 2),
                    "error": null,
                })
            }
            Err(e) => {
                progress(&format!("formation of {nodes}: FAILED: {e}"));
                json!({ "ms": null, "start_ms": null, "protocol_periods": null,
                        "error": e.to_string() })
            }
        };
        out.insert(format!("nodes_{nodes}"), result);
    }
    Ok(Value::Object(out))
}

/// The `detection` scenario: crash detection, repeated, and false suspicions while idle.
/// Failures become `null` figures with an error string, as in [`formation`].
fn detection(plan: &Plan) -> BenchResult<Value> {
    let config = membership::lan_node("n0").build()?;
    let bound = membership::detection_bound(config.failure_detector(), config.membership());
    let mut runs: Vec<Detection> = Vec::new();
    let mut errors: Vec<String> = Vec::new();
    for run in 0..plan.detection_runs {
        match membership::detection(
            &format!("detection-{run}"),
            plan.detection_nodes,
            plan.detection_settle,
            bound,
        ) {
            Ok(d) => {
                progress(&format!(
                    "detection run {}: every survivor saw the crash Down after {:.0} ms (first \
                     after {:.0} ms; first Suspect after {}); bound {:.0} ms",
                    run + 1,
                    ms(d.max()),
                    ms(d.min()),
                    d.first_suspect
                        .map_or_else(|| "never".to_owned(), |s| format!("{:.0} ms", ms(s))),
                    ms(bound)
                ));
                runs.push(d);
            }
            Err(e) => {
                progress(&format!("detection run {}: FAILED: {e}", run + 1));
                errors.push(format!("run {}: {e}", run + 1));
                // Without a single success the next run would most likely fail the same way
                // after the same deadline; stop rather than spend it again.
                if runs.is_empty() {
                    break;
                }
            }
        }
    }
    let median_ms = median(runs.iter().map(|d| ms(d.max())).collect());
    let runs_json: Vec<Value> = runs
        .iter()
        .map(|d| {
            json!({
                "min_ms": round(ms(d.min()), 1),
                "max_ms": round(ms(d.max()), 1),
                "first_suspect_ms": d.first_suspect.map(|s| round(ms(s), 1)),
            })
        })
        .collect();

    let (false_suspicions, idle_seconds, idle_events, idle_error) =
        match membership::idle("idle", plan.idle_nodes, plan.idle) {
            Ok(r) => {
                progress(&format!(
                    "idle {} nodes for {:.1} s: {} Suspect and {} Down events",
                    plan.idle_nodes,
                    r.idle.as_secs_f64(),
                    r.suspicions.suspect,
                    r.suspicions.down
                ));
                let events: Vec<Value> = r
                    .suspicions
                    .episodes
                    .iter()
                    .take(MAX_LISTED_SUSPICIONS)
                    .map(|e| {
                        let (then, after) = match e.ended {
                            Some((state, after)) => {
                                (Some(state.as_str()), Some(round(ms(after), 1)))
                            }
                            None => (None, None),
                        };
                        progress(&format!(
                            "  n{} suspected {} at {:.2} s; {}",
                            e.observer,
                            e.subject,
                            e.at.as_secs_f64(),
                            match (then, after) {
                                (Some(t), Some(a)) => format!("{t} {a:.0} ms later"),
                                _ => "still suspect at the end".to_owned(),
                            }
                        ));
                        json!({
                            "observer": format!("n{}", e.observer),
                            "subject": e.subject,
                            "at_s": round(e.at.as_secs_f64(), 3),
                            "then": then,
                            "after_ms": after,
                        })
                    })
                    .collect();
                (
                    Some(r.suspicions.total()),
                    r.idle.as_secs_f64(),
                    events,
                    None::<String>,
                )
            }
            Err(e) => {
                progress(&format!("idle run: FAILED: {e}"));
                (
                    None,
                    plan.idle.as_secs_f64(),
                    Vec::new(),
                    Some(e.to_string()),
                )
            }
        };

    Ok(json!({
        "nodes": plan.detection_nodes,
        "ms": median_ms.map(|m| round(m, 1)),
        "expected_ms": round(ms(bound), 1),
        "ratio_to_expected": median_ms.map(|m| round(m / ms(bound), 3)),
        "runs": runs_json,
        "error": if errors.is_empty() { None } else { Some(errors.join("; ")) },
        "false_suspicions": false_suspicions,
        "false_suspicion_events": idle_events,
        "idle_nodes": plan.idle_nodes,
        "idle_seconds": round(idle_seconds, 1),
        "idle_error": idle_error,
    }))
}

fn report_tell(name: &str, run: &TellRun) {
    progress(&format!(
        "{name}: {:.0} msg/s ({} of {} processed in {:.2} s, {:.1} bytes written per message)",
        run.msgs_per_s,
        run.processed,
        run.sent,
        run.elapsed.as_secs_f64(),
        run.bytes_written as f64 / run.sent as f64
    ));
    if run.processed != run.sent {
        progress(&format!(
            "{name}: WARNING {} messages were not processed",
            run.sent.saturating_sub(run.processed)
        ));
    }
}

fn report_pipelined(name: &str, run: &Result<PipelinedRun, String>) {
    match run {
        Ok(run) => {
            progress(&format!(
                "{name}: {:.0} requests/s with {} in flight ({} of {} answered in {:.2} s)",
                run.requests_per_s,
                run.in_flight,
                run.completed,
                run.sent,
                run.elapsed.as_secs_f64()
            ));
            if let Some(e) = &run.first_error {
                progress(&format!("{name}: WARNING {e}"));
            }
        }
        Err(e) => progress(&format!("{name}: FAILED: {e}")),
    }
}

fn report_ask(name: &str, p: &Percentiles) {
    progress(&format!(
        "{name}: p50 {:.1} µs, p99 {:.1} µs, p99.9 {:.1} µs over {} requests",
        p.p50_us, p.p99_us, p.p999_us, p.samples
    ));
}

fn progress(line: &str) {
    eprintln!("[cluster-bench] {line}");
}

/// What the figures were measured on; the ratios only make sense next to the core count.
fn machine() -> Value {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, model)| model.trim().to_owned())
        });
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .ok()
        .map(|s| s.trim().to_owned());
    json!({
        "cores": cores,
        "cpu": cpu,
        "os": std::env::consts::OS,
        "arch": std::env::consts::ARCH,
        "kernel": kernel,
        "profile": if cfg!(debug_assertions) { "debug" } else { "release" },
    })
}
