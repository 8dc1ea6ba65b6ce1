//! A graceful leave (`leave`, then `finish_leave`, then a clean shutdown) is seen as Leaving
//! then Left by every member, at once, and never as Down.

use std::time::Duration;

use super::{Kind, Sim, SimConfig};
use crate::membership::types::MemberState;

#[test]
fn a_graceful_leave_is_seen_as_left_everywhere_and_never_as_down() {
    let mut sim = Sim::new(SimConfig::lan(20, 0x5eed_0004));
    sim.run_until(Duration::from_secs(30), Sim::all_up)
        .expect("the cluster did not form");
    sim.run_for(Duration::from_secs(3));
    let leaver = 5;
    let id = sim.id(leaver).clone();
    let start = sim.elapsed();

    sim.input(leaver, |c, now| c.leave(now));
    assert_eq!(
        sim.core(leaver).map(|c| c.local_state()),
        Some(MemberState::Leaving)
    );
    let leaving = sim
        .run_until(Duration::from_secs(1), |s| {
            s.everyone_sees(&id, MemberState::Leaving)
        })
        .expect("not everyone saw the node Leaving");
    sim.input(leaver, |c, now| c.finish_leave(now));
    assert_eq!(
        sim.core(leaver).map(|c| c.local_state()),
        Some(MemberState::Left)
    );
    let left = sim
        .run_until(Duration::from_secs(1), |s| {
            s.everyone_sees(&id, MemberState::Left)
        })
        .expect("not everyone saw the node Left");
    // The node shuts down once `Left` is out: its peers get a goodbye on each connection.
    sim.shutdown(leaver);
    println!(
        "leave: Leaving everywhere {leaving:?} after leave, Left everywhere {left:?} after finish_leave"
    );

    // Long after, failure detection must not have turned Left into Down anywhere.
    sim.run_for(Duration::from_secs(20));
    assert!(sim.everyone_sees(&id, MemberState::Left));
    for o in (0..sim.len()).filter(|&o| o != leaver) {
        let seen: Vec<Kind> = sim
            .log()
            .iter()
            .filter(|l| l.observer == o && l.member == id && l.at >= start)
            .map(|l| l.kind)
            .collect();
        assert_eq!(
            seen,
            [Kind::Leaving, Kind::Left],
            "node {o} saw {id} go {seen:?}"
        );
    }
    assert!(sim.all_up(), "the others must stay Up: {}", sim.summary());
    sim.check_tables();
}
