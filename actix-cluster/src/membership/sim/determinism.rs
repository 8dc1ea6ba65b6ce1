//! The simulation is deterministic: one seed replays the same run, event for event, so a
//! failing seed can be studied at leisure.

use std::time::Duration;

use super::{Sim, SimConfig};

fn run(seed: u64) -> Vec<String> {
    let mut sim = Sim::new(SimConfig::lan(20, seed).loss(0.05));
    sim.run_for(Duration::from_secs(3));
    sim.crash(4);
    sim.run_for(Duration::from_secs(3));
    sim.restart(4);
    sim.partition(&[&[7, 8]]);
    sim.run_for(Duration::from_secs(4));
    sim.heal();
    sim.run_for(Duration::from_secs(4));
    sim.log()
        .iter()
        .map(|l| format!("{:?} {} {:?} {}", l.at, l.observer, l.kind, l.member))
        .collect()
}

#[test]
fn the_same_seed_replays_the_same_run() {
    let a = run(0x5eed_000b);
    assert!(
        a.len() > 100,
        "too little happened to compare: {} events",
        a.len()
    );
    assert_eq!(a, run(0x5eed_000b));
    assert_ne!(a, run(0x5eed_000c), "another seed should give another run");
}
