//! A healthy cluster raises no false alarm: 20 nodes on loss-free links with small jitter run
//! for 60 s of virtual time without a single `MemberSuspect` or `MemberDown` event.

use std::time::Duration;

use super::{Kind, Sim, SimConfig};

#[test]
fn a_healthy_cluster_raises_no_suspicion_in_sixty_seconds() {
    let mut sim = Sim::new(SimConfig::lan(20, 0x5eed_0006));
    sim.run_until(Duration::from_secs(30), Sim::all_up)
        .expect("the cluster did not form");
    sim.run_for(Duration::from_secs(60));
    let alarms: Vec<_> = sim
        .log()
        .iter()
        .filter(|l| matches!(l.kind, Kind::Suspect | Kind::Down))
        .collect();
    println!(
        "no false suspicion: 20 nodes, {:?} of virtual time, {} suspicions ({:?})",
        sim.elapsed(),
        alarms.len(),
        sim.stats
    );
    assert!(alarms.is_empty(), "false alarms: {alarms:?}");
    assert!(sim.all_up());
    sim.check_tables();
}
