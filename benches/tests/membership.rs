//! The membership scenarios measure what they claim: a formation is only reported once every
//! node saw every member Up, a crash only once every survivor saw it Down, and an idle window
//! counts events instead of failing. No timing is asserted.

use std::time::Duration;

use actix_cluster_benches::membership::{self, Cluster};

#[test]
fn formation_waits_until_every_node_sees_every_member_up() {
    let cluster = Cluster::start("bench-form", 3).expect("start");
    let formed = cluster
        .wait_formed(membership::formation_deadline(3))
        .expect("formed");
    assert_eq!(formed.nodes, 3);
    assert!(formed.all_up >= Duration::ZERO);
    cluster.stop();
}

#[test]
fn detection_reports_one_time_per_survivor() {
    let config = membership::lan_node("n0").build().expect("config");
    let bound = membership::detection_bound(config.failure_detector(), config.membership());
    let crash = membership::detection("bench-crash", 3, Duration::from_millis(500), bound)
        .expect("every survivor sees the crash");
    assert_eq!(crash.per_survivor.len(), 2);
    assert!(crash.min() <= crash.max());
}

#[test]
fn an_idle_cluster_is_counted_over_the_whole_window() {
    let window = Duration::from_secs(1);
    let run = membership::idle("bench-idle", 3, window).expect("idle run");
    assert!(run.idle >= window);
}
