//! A partition of 10 nodes out of 100 is seen Down by the 90 others (and the 10 see the 90
//! Down); once the partition heals, both sides merge back and everyone sees all 100 Up.
//!
//! The merge relies on SWIM's periodic announce to Down members, on identities renewed
//! (a generation bump) by nodes that learn the other side declared them Down, and on the
//! core dialling its seeds again while it has no live connection to them.

use std::time::Duration;

use super::{Sim, SimConfig};
use crate::membership::types::MemberState;

/// Bounds on each phase, in virtual time.
const SPLIT_BOUND: Duration = Duration::from_secs(10);
const MERGE_BOUND: Duration = Duration::from_secs(20);

fn sees_all_down(sim: &Sim, observers: &[usize], members: &[usize]) -> bool {
    observers
        .iter()
        .all(|&o| members.iter().all(|&i| sim.sees(o, i, MemberState::Down)))
}

#[test]
fn a_partitioned_minority_is_seen_down_and_merges_back_after_healing() {
    let mut sim = Sim::new(SimConfig::lan(100, 0x5eed_0002).loss(0.01));
    sim.run_until(Duration::from_secs(30), Sim::all_up)
        .unwrap_or_else(|| panic!("the cluster did not form: {}", sim.summary()));
    sim.run_for(Duration::from_secs(2));

    // The minority does not hold the seed: it must find the majority again by itself.
    let minority: Vec<usize> = (90..100).collect();
    let majority: Vec<usize> = (0..90).collect();
    sim.partition(&[&minority]);
    let majority_sees = sim
        .run_until(SPLIT_BOUND, |s| sees_all_down(s, &majority, &minority))
        .unwrap_or_else(|| panic!("the 90 did not see the 10 Down: {}", sim.summary()));
    let minority_sees = majority_sees
        + sim
            .run_until(SPLIT_BOUND, |s| sees_all_down(s, &minority, &majority))
            .unwrap_or_else(|| panic!("the 10 did not see the 90 Down: {}", sim.summary()));
    sim.check_tables();

    sim.heal();
    let merged = sim
        .run_until(MERGE_BOUND, Sim::all_up)
        .unwrap_or_else(|| panic!("the sides did not merge back: {}", sim.summary()));
    println!(
        "partition 90/10 (1% loss): the 90 see the 10 Down after {majority_sees:?}, the 10 see the 90 Down after {minority_sees:?}; healed, all 100 Up again after {merged:?} = {:.1} probe periods",
        sim.periods(merged)
    );
    sim.check_tables();
}
