//! Heartbeats feed a phi-accrual detector per peer: a live peer stays below the suspicion
//! threshold, a crashed one rises above it within the LAN preset's bound.

use std::time::{Duration, Instant};

use actix_cluster::{FailureDetectorConfig, Member};
use actix_cluster_testkit::{TestNode, plaintext};
use actix_cluster_tests::wait_until;

fn member<'a>(members: &'a [Member], name: &str) -> Option<&'a Member> {
    members.iter().find(|m| m.id.name() == name)
}

#[test]
fn live_peer_stays_trusted_and_crashed_peer_becomes_suspect() {
    let threshold = FailureDetectorConfig::lan().threshold;
    let a = TestNode::start("phi", plaintext("a").build().expect("config"), |b| b).expect("node a");
    let seed = a.system().local_addr().to_string();
    let b = TestNode::start(
        "phi",
        plaintext("b").seed_nodes([seed]).build().expect("config"),
        |b| b,
    )
    .expect("node b");
    assert!(
        wait_until(Duration::from_secs(20), || a.system().members().len() == 2),
        "a never saw b"
    );
    // Watch a live peer over several heartbeat intervals (500 ms in the LAN preset): phi
    // must never reach the threshold. This observes a property over a window; it does not
    // wait in the hope that something happens.
    let watch_until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < watch_until {
        let members = a.system().members();
        let phi = member(&members, "b").map_or(f64::INFINITY, |m| m.phi);
        assert!(phi < threshold, "live peer suspected: phi {phi}");
        std::thread::sleep(Duration::from_millis(20));
    }

    b.kill();
    let suspected = wait_until(Duration::from_secs(20), || {
        member(&a.system().members(), "b").is_some_and(|m| m.phi > threshold)
    });
    assert!(suspected, "a crashed peer must cross the phi threshold");
    a.stop();
}
