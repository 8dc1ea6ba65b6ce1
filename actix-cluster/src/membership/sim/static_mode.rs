//! Static discovery (a fixed list of addresses, every node monitoring every other): the
//! cluster forms, a crashed node is seen Down, a restarted one comes back Up as its new
//! incarnation, and a node cut off by a partition is Down and then Up again (in static mode
//! Down is not final).

use std::time::Duration;

use super::{Sim, SimConfig};
use crate::membership::core::Mode;
use crate::membership::types::MemberState;

#[test]
fn static_discovery_forms_detects_crashes_and_takes_nodes_back() {
    let mut sim = Sim::new(SimConfig::lan(10, 0x5eed_0007).mode(Mode::Static, 0));
    let formed = sim
        .run_until(Duration::from_secs(30), Sim::all_up)
        .expect("the static cluster did not form");
    sim.run_for(Duration::from_secs(3));

    let victim = 3;
    let (_, down) = sim.crash_until_down(victim, Duration::from_secs(10));

    sim.restart(victim);
    let back = sim
        .run_until(Duration::from_secs(10), Sim::all_up)
        .unwrap_or_else(|| panic!("{} did not come back: {}", sim.id(victim), sim.summary()));

    let cut = 6;
    let id = sim.id(cut).clone();
    sim.partition(&[&[cut]]);
    let cut_down = sim
        .run_until(Duration::from_secs(10), |s| {
            s.everyone_sees(&id, MemberState::Down)
        })
        .unwrap_or_else(|| panic!("{id} was not seen Down: {}", sim.describe(&id)));
    sim.heal();
    let healed = sim
        .run_until(Duration::from_secs(10), Sim::all_up)
        .unwrap_or_else(|| panic!("{id} did not come back: {}", sim.summary()));
    assert_eq!(sim.id(cut), &id, "the same incarnation is Up again");
    println!(
        "static: formed {formed:?}, crash Down {down:?}, restart Up {back:?}, partitioned node Down {cut_down:?}, Up again {healed:?} after healing"
    );
    sim.check_tables();
}
