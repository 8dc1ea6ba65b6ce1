//! Two nodes that dial each other at the same moment settle on one connection between them,
//! and messages from one sender still arrive in send order across the switch-over.

use std::net::TcpListener;
use std::time::Duration;

use actix_cluster_testkit::{TEST_DEADLINE, TestNode, plaintext};
use actix_cluster_tests::{Recorder, Seen, Seq};

/// A port that was free a moment ago. Both nodes must know each other's address before
/// either starts, so each gets the other as a seed and both dial at once.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn start_pair(cluster: &'static str) -> (TestNode, TestNode) {
    let (pa, pb) = (free_port(), free_port());
    let config = |name: &str, port: u16, seed: u16| {
        plaintext(name)
            .listen(format!("127.0.0.1:{port}"))
            .seed_nodes([format!("127.0.0.1:{seed}")])
            .build()
            .expect("config")
    };
    let (ca, cb) = (config("a", pa, pb), config("b", pb, pa));
    let tb = std::thread::spawn(move || TestNode::start(cluster, cb, |b| b.register::<Recorder>()));
    let a = TestNode::start(cluster, ca, |b| b.register::<Recorder>()).expect("node a");
    let b = tb.join().expect("thread").expect("node b");
    (a, b)
}

#[test]
fn simultaneous_dials_keep_send_order() {
    for round in 0..5 {
        let (a, b) = start_pair("simultaneous");
        let seen = a
            .run(|s| async move {
                assert!(
                    s.wait_for_peers(1, TEST_DEADLINE).await,
                    "a never connected"
                );
                let r = s
                    .remote_actor::<Recorder>("b", |_| Recorder::default())
                    .await?;
                for i in 0..2000u64 {
                    r.tell(Seq(i)).await?;
                }
                r.send(Seen).timeout(Duration::from_secs(30)).await
            })
            .expect("run")
            .expect("messages delivered");
        assert_eq!(
            seen,
            (0..2000).collect::<Vec<_>>(),
            "round {round}: order broken"
        );
        for node in [&a, &b] {
            let up = node
                .system()
                .members()
                .iter()
                .filter(|m| m.state == actix_cluster::MemberState::Up)
                .count();
            assert_eq!(up, 2, "round {round}: both nodes see each other up");
        }
        eprintln!(
            "round {round}: handshakes completed a={} b={}",
            a.system().stats().connections_established,
            b.system().stats().connections_established
        );
        a.stop();
        b.stop();
    }
}
