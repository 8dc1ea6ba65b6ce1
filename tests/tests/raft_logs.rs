//! What the application's log sees of the registry's consensus. openraft logs each failed
//! heartbeat at WARN (ten lines a second per unreachable member) and dumps whole Raft states at
//! INFO; the registry thread filters them: no openraft INFO at all, each openraft warning at most
//! once per 10 s, and one line of the registry's own with the number held back.
//!
//! This binary installs a global subscriber, so it holds this one test only.

use std::time::Duration;

use actix_cluster::RegistryConfig;
use actix_cluster_testkit::{TEST_DEADLINE, TestNode, plaintext};
use actix_cluster_tests::{logs, wait_until};

const HELD_BACK: &str = "repeated openraft warnings held back";

#[test]
fn a_dead_member_costs_a_few_lines_of_log_not_ten_a_second() {
    logs::capture();
    let registry = RegistryConfig::new().voters(3);
    let start = |name: &str, seed: Option<String>| {
        let mut config = plaintext(name).registry(registry.clone());
        if let Some(seed) = seed {
            config = config.seed_nodes([seed]);
        }
        TestNode::start("raft-logs", config.build().expect("config"), |b| b).expect("start")
    };
    let first = start("r0", None);
    let seed = first.system().local_addr().to_string();
    let mut nodes = vec![
        first,
        start("r1", Some(seed.clone())),
        start("r2", Some(seed)),
    ];
    let mut leader = None;
    assert!(
        wait_until(TEST_DEADLINE, || {
            leader = nodes[0]
                .run(|s| async move { s.registry_status().await })
                .ok()
                .and_then(Result::ok)
                .filter(|s| s.voters.len() == 3)
                .and_then(|s| s.leader);
            leader.is_some()
        }),
        "the registry did not form"
    );
    let leader = leader.expect("a leader");
    // A follower dies: the leader's heartbeats to it fail from now on.
    let follower = nodes
        .iter()
        .position(|n| n.system().node_id().name() != leader)
        .expect("a follower");
    nodes.remove(follower).kill();
    // Two reports of held-back warnings: the first comes with the first warning held back,
    // the second one window (10 s) later, counting a window's worth of failed heartbeats.
    let reports = || logs::lines(&[HELD_BACK]);
    assert!(
        wait_until(Duration::from_secs(40), || reports().len() >= 2),
        "no second report of held-back openraft warnings; openraft lines seen: {}",
        logs::lines(&[" openraft"]).len()
    );
    let openraft = logs::lines(&[" openraft"]);
    let infos = openraft.iter().filter(|l| l.contains(" INFO ")).count();
    assert_eq!(infos, 0, "openraft INFO lines passed: {openraft:#?}");
    let heartbeats = openraft
        .iter()
        .filter(|l| l.contains("failed to send a heartbeat"))
        .count();
    assert!(
        heartbeats <= 2,
        "{heartbeats} heartbeat warnings in about two windows: {openraft:#?}"
    );
    let second = &reports()[1];
    let held: u64 = second
        .split("repeated=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a count in {second:?}"));
    assert!(
        held >= 10,
        "a window of failed heartbeats is many warnings, not {held}: {second}"
    );
    for node in nodes {
        node.stop();
    }
}
