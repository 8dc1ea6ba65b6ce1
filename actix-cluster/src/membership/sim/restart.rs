//! A node that crashes and starts again under its name is a new incarnation: Up everywhere,
//! while the old incarnation is Down everywhere (each survivor reports `MemberDown` for it),
//! whether the restart beats failure detection or comes after it.

use std::time::Duration;

use super::{Kind, Sim, SimConfig};
use crate::membership::types::MemberState;
use crate::node::NodeId;

/// The new incarnation is Up everywhere and every survivor reported the old one Down.
fn replaced_everywhere(sim: &Sim, victim: usize, old: &NodeId) -> bool {
    let new = sim.id(victim).clone();
    sim.everyone_sees(&new, MemberState::Up)
        && (0..sim.len()).filter(|&o| o != victim).all(|o| {
            sim.log()
                .iter()
                .any(|l| l.observer == o && l.member == *old && l.kind == Kind::Down)
        })
}

/// The old incarnation never came back once declared Down.
fn old_incarnation_stays_down(sim: &Sim, old: &NodeId) {
    for o in 0..sim.len() {
        let mut down = false;
        for l in sim
            .log()
            .iter()
            .filter(|l| l.observer == o && l.member == *old)
        {
            assert!(
                !(down && l.kind != Kind::Left),
                "node {o} saw {old} {:?} after Down",
                l.kind
            );
            down |= l.kind == Kind::Down;
        }
    }
}

fn restart_after(crash_to_restart: Duration, seed: u64) -> Duration {
    let mut sim = Sim::new(SimConfig::lan(50, seed).loss(0.01));
    sim.run_until(Duration::from_secs(30), Sim::all_up)
        .expect("the cluster did not form");
    sim.run_for(Duration::from_secs(3));
    let victim = 7;
    let old = sim.id(victim).clone();
    sim.crash(victim);
    sim.run_for(crash_to_restart);
    sim.restart(victim);
    assert!(sim.id(victim).incarnation() > old.incarnation());
    let took = sim
        .run_until(Duration::from_secs(30), |s| {
            replaced_everywhere(s, victim, &old) && s.all_up()
        })
        .unwrap_or_else(|| panic!("{old} was not replaced everywhere: {}", sim.summary()));
    sim.run_for(Duration::from_secs(5));
    assert!(replaced_everywhere(&sim, victim, &old) && sim.all_up());
    old_incarnation_stays_down(&sim, &old);
    sim.check_tables();
    took
}

#[test]
fn a_node_restarted_before_detection_replaces_its_old_incarnation_everywhere() {
    let took = restart_after(Duration::from_millis(300), 0x5eed_0003);
    println!("restart after 300 ms: new incarnation Up and old Down everywhere after {took:?}");
}

#[test]
fn a_node_restarted_after_being_declared_down_comes_back_as_a_new_incarnation() {
    let took = restart_after(Duration::from_secs(5), 0x5eed_0013);
    println!("restart after 5 s: new incarnation Up and old Down everywhere after {took:?}");
}
