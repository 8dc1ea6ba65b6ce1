//! 100 nodes joining through one seed over links that lose 5% of messages all see each other
//! Up within a bounded number of SWIM probe periods.

use std::time::Duration;

use super::{Sim, SimConfig};

/// Upper bound on formation, in probe periods, from the first node's start (nodes start
/// within the first 200 ms).
const MAX_PERIODS: f64 = 30.0;

#[test]
fn hundred_nodes_with_five_percent_loss_see_each_other_up_within_bounded_periods() {
    for seed in [0x5eed_0001, 0x5eed_0011, 0x5eed_0021] {
        let mut sim = Sim::new(SimConfig::lan(100, seed).loss(0.05));
        let took = sim
            .run_until(Duration::from_secs(60), Sim::all_up)
            .unwrap_or_else(|| panic!("100 nodes did not converge: {}", sim.summary()));
        let periods = sim.periods(took);
        println!(
            "formation (seed {seed:#x}): 100 nodes, 5% loss, all Up after {took:?} = {periods:.1} probe periods ({} messages, {} lost)",
            sim.stats.sent, sim.stats.lost
        );
        assert!(
            periods <= MAX_PERIODS,
            "took {periods:.1} probe periods (bound {MAX_PERIODS})"
        );
        sim.check_tables();
    }
}
