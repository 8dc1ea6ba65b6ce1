//! Centralized mode: workers register with the masters, masters monitor everyone and push
//! every change. With one master and with two, the cluster forms, a crashed worker is seen
//! Down everywhere and its restart Up; with two masters, the cluster keeps working when one
//! master crashes: workers still get updates (a later worker crash is seen Down everywhere).

use std::time::Duration;

use super::{Sim, SimConfig};
use crate::membership::core::Mode;
use crate::membership::types::MemberState;

fn crash_and_restart(sim: &mut Sim, victim: usize) -> (Duration, Duration) {
    let (old, down) = sim.crash_until_down(victim, Duration::from_secs(10));
    sim.restart(victim);
    let back = sim
        .run_until(Duration::from_secs(10), |s| {
            s.all_up()
                && (0..s.len())
                    .filter(|&o| o != victim && s.alive(o))
                    .all(|o| {
                        s.log().iter().any(|l| {
                            l.observer == o && l.member == old && l.kind == super::Kind::Down
                        })
                    })
        })
        .unwrap_or_else(|| panic!("{} did not come back: {}", sim.id(victim), sim.summary()));
    (down, back)
}

#[test]
fn one_master_forms_the_cluster_and_reports_crashes_and_restarts() {
    let mut sim = Sim::new(SimConfig::lan(10, 0x5eed_0008).mode(Mode::Centralized, 1));
    let formed = sim
        .run_until(Duration::from_secs(30), Sim::all_up)
        .unwrap_or_else(|| panic!("the cluster did not form: {}", sim.summary()));
    sim.run_for(Duration::from_secs(3));
    let (down, back) = crash_and_restart(&mut sim, 5);
    println!(
        "centralized, 1 master: formed {formed:?}, worker crash Down everywhere {down:?}, restart Up {back:?}"
    );
    sim.check_tables();
}

#[test]
fn with_two_masters_workers_keep_getting_updates_when_one_master_crashes() {
    let mut sim = Sim::new(SimConfig::lan(10, 0x5eed_0009).mode(Mode::Centralized, 2));
    let formed = sim
        .run_until(Duration::from_secs(30), Sim::all_up)
        .unwrap_or_else(|| panic!("the cluster did not form: {}", sim.summary()));
    sim.run_for(Duration::from_secs(3));
    let (down, back) = crash_and_restart(&mut sim, 5);

    let (_, master_down) = sim.crash_until_down(0, Duration::from_secs(10));
    sim.run_for(Duration::from_secs(3));
    // Only the other master can tell the workers now.
    let (later_down, later_back) = crash_and_restart(&mut sim, 7);

    sim.restart(0);
    let master_back = sim
        .run_until(Duration::from_secs(10), Sim::all_up)
        .unwrap_or_else(|| panic!("the restarted master did not come back: {}", sim.summary()));
    println!(
        "centralized, 2 masters: formed {formed:?}, worker crash Down {down:?} / restart Up {back:?}; master crash Down {master_down:?}; then worker crash Down {later_down:?} / restart Up {later_back:?}; master restart Up {master_back:?}"
    );
    sim.check_tables();
}

#[test]
fn a_partitioned_worker_and_master_are_down_and_come_back_after_healing() {
    let mut sim = Sim::new(SimConfig::lan(8, 0x5eed_000a).mode(Mode::Centralized, 2));
    sim.run_until(Duration::from_secs(30), Sim::all_up)
        .unwrap_or_else(|| panic!("the cluster did not form: {}", sim.summary()));
    sim.run_for(Duration::from_secs(3));

    // A worker cut off from everyone: Down everywhere, then Up again (same process, next
    // generation) once reachable.
    let worker = sim.id(4).clone();
    sim.partition(&[&[4]]);
    let down = sim
        .run_until(Duration::from_secs(10), |s| {
            s.everyone_sees(&worker, MemberState::Down)
        })
        .unwrap_or_else(|| panic!("{worker} was not seen Down: {}", sim.describe(&worker)));
    sim.heal();
    let back = sim
        .run_until(Duration::from_secs(20), Sim::all_up)
        .unwrap_or_else(|| panic!("{worker} did not come back: {}", sim.summary()));
    assert_eq!(sim.id(4), &worker);

    // A master cut off from everyone: the other master carries on; back after healing.
    let master = sim.id(0).clone();
    sim.partition(&[&[0]]);
    let master_down = sim
        .run_until(Duration::from_secs(10), |s| {
            s.everyone_sees(&master, MemberState::Down)
        })
        .unwrap_or_else(|| panic!("{master} was not seen Down: {}", sim.describe(&master)));
    sim.heal();
    let master_back = sim
        .run_until(Duration::from_secs(20), Sim::all_up)
        .unwrap_or_else(|| panic!("{master} did not come back: {}", sim.summary()));
    println!(
        "centralized, 2 masters, partitions: worker Down {down:?} / Up again {back:?} after healing; master Down {master_down:?} / Up again {master_back:?}"
    );
    sim.check_tables();
}

/// A paused process keeps its connections: nothing breaks that a reconnect could repair. A
/// master paused until everyone has declared it Down must learn that it was, and come back
/// Up everywhere as its next generation once it runs again.
#[test]
fn a_master_paused_until_it_is_down_everywhere_comes_back_up_everywhere() {
    let mut sim = Sim::new(SimConfig::lan(5, 0x5eed_000b).mode(Mode::Centralized, 3));
    sim.run_until(Duration::from_secs(30), Sim::all_up)
        .unwrap_or_else(|| panic!("the cluster did not form: {}", sim.summary()));
    sim.run_for(Duration::from_secs(3));
    let master = sim.id(1).clone();
    sim.pause(1);
    let down = sim
        .run_until(Duration::from_secs(10), |s| {
            s.everyone_sees(&master, MemberState::Down)
        })
        .unwrap_or_else(|| panic!("{master} was not seen Down: {}", sim.describe(&master)));
    sim.resume(1);
    let back = sim
        .run_until(Duration::from_secs(20), Sim::all_up)
        .unwrap_or_else(|| panic!("{master} did not come back: {}", sim.describe(&master)));
    println!("centralized, paused master: Down everywhere {down:?}, Up again {back:?}");
    sim.check_tables();
}

/// Paused only until the first node declares it Down: the others may still have it
/// Suspect, and take it back when it answers. Whoever declared it Down must not keep it so.
#[test]
fn a_master_paused_until_one_node_downs_it_comes_back_up_everywhere() {
    for seed in 0..8u64 {
        let mut sim = Sim::new(SimConfig::lan(5, 0x5eed_0100 + seed).mode(Mode::Centralized, 3));
        sim.run_until(Duration::from_secs(30), Sim::all_up)
            .unwrap_or_else(|| panic!("the cluster did not form: {}", sim.summary()));
        sim.run_for(Duration::from_secs(3));
        let master = sim.id(1).clone();
        sim.pause(1);
        sim.run_until(Duration::from_secs(10), |s| {
            (0..s.len()).any(|o| {
                o != 1
                    && s.view(o, 1)
                        .is_some_and(|(id, st)| *id == master && *st == MemberState::Down)
            })
        })
        .unwrap_or_else(|| panic!("{master} was not seen Down: {}", sim.describe(&master)));
        sim.resume(1);
        sim.run_until(Duration::from_secs(20), Sim::all_up)
            .unwrap_or_else(|| {
                panic!(
                    "seed {seed}: {master} did not come back: {}",
                    sim.describe(&master)
                )
            });
        sim.check_tables();
    }
}

/// The same for a worker: the masters' word that it is Down reaches it over the connection
/// that stayed open, and it rejoins.
#[test]
fn a_worker_paused_until_it_is_down_everywhere_comes_back_up_everywhere() {
    let mut sim = Sim::new(SimConfig::lan(5, 0x5eed_000c).mode(Mode::Centralized, 3));
    sim.run_until(Duration::from_secs(30), Sim::all_up)
        .unwrap_or_else(|| panic!("the cluster did not form: {}", sim.summary()));
    sim.run_for(Duration::from_secs(3));
    let worker = sim.id(4).clone();
    sim.pause(4);
    sim.run_until(Duration::from_secs(10), |s| {
        s.everyone_sees(&worker, MemberState::Down)
    })
    .unwrap_or_else(|| panic!("{worker} was not seen Down: {}", sim.describe(&worker)));
    sim.resume(4);
    sim.run_until(Duration::from_secs(20), Sim::all_up)
        .unwrap_or_else(|| panic!("{worker} did not come back: {}", sim.describe(&worker)));
    sim.check_tables();
}
