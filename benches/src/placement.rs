//! `placement`: what one placement decision costs over a table of 100 members, next to a
//! `HashMap` lookup of a member by name (cloning its id) over the same table, and how evenly
//! `LeastLoaded` and `ConsistentHash` spread 10,000 actors over 10 members.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use actix_cluster::placement::{Constraint, Input, Placement, Placer};
use actix_cluster::{LoadReport, Member, NodeId, NodeRole};
use serde_json::{Value, json};

use crate::latency::{Percentiles, Recorder};
use crate::{BenchResult, round};

/// Members in the decision table.
pub const MEMBERS: usize = 100;

fn table(n: usize) -> Vec<Member> {
    (0..n)
        .map(|i| {
            let mut m = Member::new(
                NodeId::new(format!("node-{i:03}"), 1),
                ([127, 0, 0, 1], 7000 + i as u16).into(),
                NodeRole::Worker,
            );
            m.load = Some(LoadReport::new((i * 37 % 101) as u64, 0, None));
            m
        })
        .collect()
}

/// Decision latency of each strategy and of the baseline, `samples` each, interleaved in
/// rounds so that all see the same machine.
pub fn decisions(samples: usize) -> BenchResult<Value> {
    let members = table(MEMBERS);
    let by_name: HashMap<String, Member> = members
        .iter()
        .map(|m| (m.id.name().to_owned(), m.clone()))
        .collect();
    let names: Vec<String> = by_name.keys().cloned().collect();
    let constraint = Constraint::new();
    let strategies = [
        ("round_robin", Placement::RoundRobin),
        ("random", Placement::Random),
        ("least_loaded", Placement::LeastLoaded),
        ("consistent_hash", Placement::ConsistentHash),
    ];
    let mut placer = Placer::new(0x5eed);
    let mut recorders: Vec<Recorder> = strategies
        .iter()
        .map(|_| Recorder::new())
        .collect::<BenchResult<_>>()?;
    let mut baseline = Recorder::new()?;
    let rounds = 10;
    let per_round = samples.div_ceil(rounds);
    let mut sink = 0usize;
    for round_no in 0..rounds {
        for ((_, strategy), rec) in strategies.iter().zip(recorders.iter_mut()) {
            for i in 0..per_round {
                let key = ((round_no * per_round + i) as u64).to_le_bytes();
                let input = Input {
                    members: &members,
                    me: "node-000",
                    constraint: &constraint,
                    key: Some(&key),
                };
                let start = Instant::now();
                let chosen = placer.choose(strategy, &input);
                rec.record(start.elapsed());
                sink ^= chosen.map_or(0, |id| id.name().len());
            }
        }
        for i in 0..per_round {
            let name = &names[(round_no * per_round + i) % names.len()];
            let start = Instant::now();
            let id = by_name.get(name).map(|m| m.id.clone());
            baseline.record(start.elapsed());
            sink ^= id.map_or(0, |id| id.name().len());
        }
    }
    std::hint::black_box(sink);
    let base = baseline.percentiles();
    let ns = |p: &Percentiles| (p.p50_us * 1e3, p.p99_us * 1e3);
    let mut out = serde_json::Map::new();
    for ((name, _), rec) in strategies.iter().zip(&recorders) {
        let (p50, p99) = ns(&rec.percentiles());
        out.insert(
            (*name).into(),
            json!({
                "p50_ns": round(p50, 0),
                "p99_ns": round(p99, 0),
                "ratio_p50_to_hashmap": round(p50 / (base.p50_us * 1e3).max(1.0), 2),
            }),
        );
    }
    let (p50, p99) = ns(&base);
    out.insert(
        "baseline_hashmap_get".into(),
        json!({ "p50_ns": round(p50, 0), "p99_ns": round(p99, 0) }),
    );
    out.insert("members".into(), json!(MEMBERS));
    Ok(Value::Object(out))
}

/// Max/mean actors per member after placing `actors` on `nodes` members, for `LeastLoaded`
/// (each choice adds one actor to the chosen member's report, as its next report would) and
/// `ConsistentHash` (keys `actor/<i>`).
pub fn spread(nodes: usize, actors: usize) -> Value {
    let mut members = table(nodes);
    for m in &mut members {
        m.load = Some(LoadReport::new(0, 0, None));
    }
    let constraint = Constraint::new();
    let mut placer = Placer::new(0x5eed);
    let mut hashed: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..actors {
        let key = format!("actor/{i}");
        let input = Input {
            members: &members,
            me: "node-000",
            constraint: &constraint,
            key: Some(key.as_bytes()),
        };
        if let Ok(id) = placer.choose(&Placement::ConsistentHash, &input) {
            *hashed.entry(id.name().to_owned()).or_default() += 1;
        }
        if let Ok(id) = placer.choose(&Placement::LeastLoaded, &input)
            && let Some(load) = members
                .iter_mut()
                .find(|m| m.id == id)
                .and_then(|m| m.load.as_mut())
        {
            load.actors += 1;
        }
    }
    let mean = actors as f64 / nodes as f64;
    let least = members
        .iter()
        .filter_map(|m| m.load.as_ref())
        .map(|l| l.actors)
        .max()
        .unwrap_or(0);
    let hash = hashed.values().copied().max().unwrap_or(0);
    json!({
        "nodes": nodes,
        "actors": actors,
        "least_loaded_max_over_mean": round(least as f64 / mean, 3),
        "consistent_hash_max_over_mean": round(hash as f64 / mean, 3),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_placement_figures_are_computed_for_every_strategy() {
        let d = decisions(2_000).expect("decisions");
        for s in ["round_robin", "random", "least_loaded", "consistent_hash"] {
            assert!(d[s]["p50_ns"].as_f64().is_some_and(|v| v > 0.0), "{s}: {d}");
        }
        let s = spread(10, 10_000);
        for k in [
            "least_loaded_max_over_mean",
            "consistent_hash_max_over_mean",
        ] {
            assert!(
                s[k].as_f64().is_some_and(|v| (1.0..=1.25).contains(&v)),
                "{k}: {s}"
            );
        }
    }
}
