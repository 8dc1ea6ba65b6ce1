//! A crashed node is seen Down by every survivor within a bound of virtual time; with the LAN
//! presets that is about 2 s.

use std::time::Duration;

use super::{Sim, SimConfig};

/// Upper bound on detection with the LAN presets (the target is about 2 s).
const BOUND: Duration = Duration::from_secs(3);

#[test]
fn a_crashed_node_is_seen_down_everywhere_within_the_lan_bound() {
    let mut sim = Sim::new(SimConfig::lan(100, 0x5eed_0005).loss(0.01));
    sim.run_until(Duration::from_secs(30), Sim::all_up)
        .expect("the cluster did not form");
    sim.run_for(Duration::from_secs(5));
    let mut times = Vec::new();
    for victim in [37, 0, 82] {
        let (_, took) = sim.crash_until_down(victim, Duration::from_secs(30));
        times.push(took);
        sim.run_for(Duration::from_secs(3));
    }
    println!("crash detection (100 nodes, 1% loss): Down everywhere after {times:?}");
    for t in &times {
        assert!(*t <= BOUND, "detection took {t:?} (bound {BOUND:?})");
    }
    sim.check_tables();
}
