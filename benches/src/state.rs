//! State store figures: saves per second into the embedded (redb) store with many saves in
//! flight, as the actors of a node checkpoint at once, next to the same store with one save at
//! a time (every save its own fsync) and to the in-memory store (no disk at all), measured in
//! the same run. The first over the second is what group commit buys.

use std::time::{Duration, Instant};

use actix_cluster::state::{Expect, MemoryStore, RedbStore, StateStore};
use serde_json::{Value, json};

use crate::{BenchResult, round};

/// What the state scenarios run.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Saves in the grouped runs.
    pub saves: usize,
    /// Saves in flight at once in the grouped runs (one key each, like one actor each).
    pub in_flight: usize,
    /// Saves in the one-at-a-time run (each waits for its fsync).
    pub sequential_saves: usize,
    /// Bytes per saved value.
    pub value_len: usize,
}

/// One run's figures.
#[derive(Debug, Clone, Copy)]
pub struct SaveRun {
    /// Saves completed.
    pub saves: usize,
    /// Saves per second.
    pub saves_per_s: f64,
    /// Commits (fsyncs) the store made, if it counts them.
    pub commits: Option<u64>,
}

impl SaveRun {
    fn json(&self, in_flight: usize) -> Value {
        json!({
            "in_flight": in_flight,
            "saves": self.saves,
            "saves_per_s": round(self.saves_per_s, 0),
            "commits": self.commits,
            "saves_per_commit": self.commits.map(|c| round(self.saves as f64 / c.max(1) as f64, 1)),
        })
    }
}

/// `saves` saves of `value_len` bytes with `in_flight` at once, each of its own key (`Any`, the
/// same token), on a current-thread runtime (the store's writer is its own thread).
fn saves(
    store: &dyn StateStore,
    saves: usize,
    in_flight: usize,
    value_len: usize,
) -> BenchResult<Duration> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let per_key = saves.div_ceil(in_flight.max(1));
        let started = Instant::now();
        let workers = (0..in_flight).map(|k| {
            let value = vec![k as u8; value_len];
            async move {
                let key = format!("bench/{k:05}");
                for _ in 0..per_key {
                    store.put(&key, value.clone(), Expect::Any, 1).await?;
                }
                Ok::<(), actix_cluster::state::StateError>(())
            }
        });
        for r in futures::future::join_all(workers).await {
            r?;
        }
        Ok(started.elapsed())
    })
}

fn run(
    store: &dyn StateStore,
    n: usize,
    in_flight: usize,
    value_len: usize,
) -> BenchResult<SaveRun> {
    let n = n.div_ceil(in_flight.max(1)) * in_flight.max(1);
    let took = saves(store, n, in_flight, value_len)?;
    Ok(SaveRun {
        saves: n,
        saves_per_s: n as f64 / took.as_secs_f64().max(1e-9),
        commits: None,
    })
}

/// The state scenarios as one JSON object; a scenario that fails is reported as an error
/// string and the others still run.
pub fn scenarios(plan: &Plan, progress: &dyn Fn(&str)) -> Value {
    let embedded = |n: usize, in_flight: usize| -> BenchResult<SaveRun> {
        let dir = tempfile::tempdir()?;
        let store = RedbStore::open(dir.path())?;
        let mut r = run(&store, n, in_flight, plan.value_len)?;
        r.commits = Some(store.commits());
        Ok(r)
    };
    let grouped = embedded(plan.saves, plan.in_flight);
    let sequential = embedded(plan.sequential_saves, 1);
    let memory = run(
        &MemoryStore::new(),
        plan.saves,
        plan.in_flight,
        plan.value_len,
    );
    let show = |name: &str, r: &BenchResult<SaveRun>| match r {
        Ok(r) => progress(&format!(
            "{name}: {:.0} saves/s ({} saves{})",
            r.saves_per_s,
            r.saves,
            r.commits
                .map(|c| format!(", {c} commits"))
                .unwrap_or_default()
        )),
        Err(e) => progress(&format!("{name}: FAILED: {e}")),
    };
    show("state save, embedded, grouped", &grouped);
    show("state save, embedded, one at a time", &sequential);
    show("state save, in memory", &memory);
    let figure = |r: &BenchResult<SaveRun>, in_flight: usize| match r {
        Ok(r) => r.json(in_flight),
        Err(e) => json!({ "error": e.to_string() }),
    };
    let ratio = match (&grouped, &sequential) {
        (Ok(g), Ok(s)) => Some(round(g.saves_per_s / s.saves_per_s.max(1e-9), 1)),
        _ => None,
    };
    json!({
        "state_save_embedded": figure(&grouped, plan.in_flight),
        "state_save_embedded_one_at_a_time": figure(&sequential, 1),
        "state_save_memory": figure(&memory, plan.in_flight),
        "grouped_over_one_at_a_time": ratio,
        "value_bytes": plan.value_len,
    })
}
