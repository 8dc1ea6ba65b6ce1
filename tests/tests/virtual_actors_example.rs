//! The `virtual-actors` example, run as a user runs it: three node processes sharing a
//! `redis-server` (Debian's package, which `.ci/run` installs), `Player/42` called from two
//! members, passivated, reactivated, and brought back after its node is SIGKILLed. The
//! program checks itself (17 points at the end) and exits non-zero otherwise; this test also
//! reads its report.

use std::process::Command;

use actix_cluster_examples::process::example_binaries;

#[test]
fn the_virtual_actors_example_keeps_every_point() {
    let bins = example_binaries(&["virtual-actors"]).expect("build the example");
    let out = Command::new(&bins["virtual-actors"])
        .output()
        .expect("run the example");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the example failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("(the same activation)"), "{stdout}");
    assert!(stdout.contains("-> 16 points"), "{stdout}");
    assert!(stdout.contains("-> 17 points"), "{stdout}");
    // Answered at the end by another node than the killed one.
    let killed = stdout
        .lines()
        .find_map(|l| l.strip_prefix("Killed ")?.split(' ').next())
        .expect("the example names the node it killed")
        .to_owned();
    let last = stdout
        .lines()
        .rfind(|l| l.contains("-> 17 points"))
        .expect("the last answer");
    assert!(!last.contains(&format!("on {killed},")), "{stdout}");
}
