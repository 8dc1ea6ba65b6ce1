//! The registry scenarios measure what they claim: a write run counts only registrations every
//! replica lists, a lookup run records every sample it was asked for, a failover is timed
//! from the kill to a registration started after it, and the report carries every key
//! `.ci/run` and `docs/benchmarks.md` name. No timing is asserted.

use std::time::Duration;

use actix_cluster_benches::registry::{self, Ending, Plan, RegistryCluster, Storage};
use serde_json::Value;

/// A plan small enough for a debug build: the same code paths as `--quick`, a fraction of the
/// work.
fn tiny() -> Plan {
    Plan {
        names: 200,
        warmup: 20,
        in_flight: 32,
        lookup_names: 200,
        lookup_samples: 2_000,
        lookup_rounds: 2,
        failover_runs: 1,
    }
}

fn field<'a>(obj: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(obj, |v, key| {
        v.get(key)
            .unwrap_or_else(|| panic!("{path}: no {key:?} in {v}"))
    })
}

#[test]
fn the_report_has_every_key_and_no_scenario_failed() {
    let report = registry::scenarios(&tiny(), &|line| eprintln!("{line}"));

    for key in [
        "nodes",
        "voters",
        "in_flight",
        "names",
        "ephemeral_per_s",
        "durable_per_s",
        "ratio_durable_to_ephemeral",
        "ephemeral_ms",
        "durable_ms",
        "ephemeral_error",
        "durable_error",
    ] {
        field(&report.write, key);
    }
    assert_eq!(field(&report.write, "ephemeral_error"), &Value::Null);
    assert_eq!(field(&report.write, "durable_error"), &Value::Null);
    assert!(
        field(&report.write, "ephemeral_per_s")
            .as_f64()
            .expect("number")
            > 0.0
    );
    assert!(
        field(&report.write, "durable_per_s")
            .as_f64()
            .expect("number")
            > 0.0
    );

    assert_eq!(field(&report.lookup, "error"), &Value::Null);
    for key in [
        "keys",
        "table_names",
        "samples",
        "lookup_entry.p50_ns",
        "lookup_entry.p99_ns",
        "lookup_entry.p999_ns",
        "lookup_entry.ratio_p50_to_hashmap",
        "lookup.p50_ns",
        "lookup.ratio_p50_to_hashmap",
        "hashmap_clone.p50_ns",
        "timer_p50_ns",
    ] {
        field(&report.lookup, key);
    }
    assert_eq!(field(&report.lookup, "keys").as_u64(), Some(200));
    assert_eq!(field(&report.lookup, "samples").as_u64(), Some(2_000));

    assert_eq!(field(&report.failover, "error"), &Value::Null);
    for key in [
        "ms",
        "election_timeout_min_ms",
        "election_timeout_max_ms",
        "ratio_to_election_timeout_min",
        "ratio_to_election_timeout_max",
        "runs",
    ] {
        field(&report.failover, key);
    }
    assert_eq!(
        field(&report.failover, "runs").as_array().map(Vec::len),
        Some(1)
    );
    let graceful = field(&report.failover, "graceful");
    assert_eq!(field(graceful, "error"), &Value::Null);
    assert_eq!(field(graceful, "runs").as_array().map(Vec::len), Some(1));
    assert!(field(graceful, "ms").as_f64().is_some());
}

#[test]
fn a_write_run_counts_every_registration_once_and_a_repeat_is_not_new() {
    let cluster = RegistryCluster::start("bench-reg-write", 3, Storage::Ephemeral).expect("start");
    cluster
        .wait_formed(registry::FORMATION_DEADLINE)
        .expect("formed");
    let run = cluster.write("w/", 90, 7).expect("write run");
    assert_eq!(run.registered, 90);
    assert_eq!(run.in_flight, 7);
    assert!(run.elapsed > Duration::ZERO);
    // Same names, same sinks: every registration returns the existing entry, and the replicas
    // still list exactly 90 names, which `write` checks before returning.
    let again = cluster.write("w/", 90, 7).expect("repeat");
    assert_eq!(again.registered, 90);
    cluster.stop();
}

#[test]
fn a_failover_is_timed_from_the_kill_or_shutdown_of_the_leader() {
    for (cluster, ending) in [
        ("bench-reg-failover", Ending::Crash),
        ("bench-reg-handoff", Ending::Shutdown),
    ] {
        let f = registry::failover(cluster, Storage::Ephemeral, ending).expect("failover");
        assert!(f.attempts >= 1);
        assert!(f.took > Duration::ZERO);
        assert_ne!(f.new_leader.as_deref(), Some(f.old_leader.as_str()));
    }
}
