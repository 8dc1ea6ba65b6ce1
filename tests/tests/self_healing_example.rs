//! The `self-healing` example, run as a user runs it: three node processes, ten named
//! counters with the `Always` restart policy, one node SIGKILLed. The program checks itself
//! (every counter must answer again through its original address within its deadline) and
//! exits non-zero otherwise; this test also reads its report.

use std::process::Command;

use actix_cluster_examples::process::example_binaries;

#[test]
fn the_self_healing_example_brings_every_counter_back() {
    let bins = example_binaries(&["self-healing"]).expect("build the example");
    let out = Command::new(&bins["self-healing"])
        .output()
        .expect("run the example");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the example failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("All 10 answer again"), "{stdout}");
    // After the kill, no counter is listed on the killed node.
    let killed = stdout
        .lines()
        .find_map(|l| l.strip_prefix("Killed ")?.split(' ').next())
        .expect("the example names the node it killed")
        .to_owned();
    let after = stdout
        .split("until all answer:")
        .nth(1)
        .expect("the placement after the kill");
    let listed: Vec<&str> = after
        .lines()
        .filter(|l| l.trim_start().starts_with("counters/"))
        .collect();
    assert_eq!(listed.len(), 10, "{stdout}");
    assert!(
        listed.iter().all(|l| !l.ends_with(&format!("on {killed}"))),
        "{stdout}"
    );
}
